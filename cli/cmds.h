/*
** cli/cmds.h — one function per moescope subcommand.  Each takes the
** arguments after the subcommand name (argv[0] is the subcommand) and
** returns the process exit status: 0 success, 1 failure at run time,
** 2 bad usage.  Errors go to stderr naming the argument/file at fault.
*/
#ifndef CLI_CMDS_H
#define CLI_CMDS_H

int cli_cmd_info(int argc, char **argv);
int cli_cmd_run(int argc, char **argv);
int cli_cmd_stats(int argc, char **argv);
int cli_cmd_contrast(int argc, char **argv);
int cli_cmd_diff(int argc, char **argv);
int cli_cmd_eval(int argc, char **argv);
int cli_cmd_ppl(int argc, char **argv);
int cli_cmd_export(int argc, char **argv);
int cli_cmd_import(int argc, char **argv);
int cli_cmd_synth(int argc, char **argv);
int cli_cmd_tui(int argc, char **argv);

#endif
