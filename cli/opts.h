/*
** cli/opts.h — small helpers for the subcommands' option parsing: typed
** values with range checks and messages that name the option and value.
*/
#ifndef CLI_OPTS_H
#define CLI_OPTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Each returns 0 on success, or prints "moescope CMD: OPT: ..." to stderr
** and returns -1. */
int cli_opt_int(const char *cmd, const char *opt, const char *val, long lo, long hi, long *out);
int cli_opt_float(const char *cmd, const char *opt, const char *val, double lo, double hi, double *out);
int cli_opt_u64(const char *cmd, const char *opt, const char *val, uint64_t *out);

/* The value of option argv[*i] (advancing *i), or NULL after printing
** "OPT needs a value". */
const char *cli_opt_value(const char *cmd, int argc, char **argv, int *i);

/* Print s with control characters escaped (\n, \t, \xHH) to f. */
void cli_opt_print_escaped(FILE *f, const char *s, size_t n);

#endif
