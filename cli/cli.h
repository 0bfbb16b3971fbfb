/*
** cli/cli.h — the moescope command line: one binary, one subcommand per
** cli/cmd_*.c (the full-screen app itself lives in tui/).
*/
#ifndef CLI_H
#define CLI_H

/* Run the moescope command line; returns the process exit status. */
int cli_main(int argc, char **argv);

#endif
