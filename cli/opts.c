/*
** cli/opts.c — option value parsing with clear messages.
*/
#include "cli/opts.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int cli_opt_int(const char *cmd, const char *opt, const char *val, long lo, long hi, long *out)
{
    char *e;
    errno = 0;
    long v = strtol(val, &e, 10);
    if (e == val || *e || errno) {
        fprintf(stderr, "moescope %s: %s: '%s' is not a whole number\n", cmd, opt, val);
        return -1;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "moescope %s: %s: %ld out of range %ld..%ld\n", cmd, opt, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_opt_float(const char *cmd, const char *opt, const char *val, double lo, double hi, double *out)
{
    char *e;
    errno = 0;
    double v = strtod(val, &e);
    if (e == val || *e || errno || !isfinite(v)) {
        fprintf(stderr, "moescope %s: %s: '%s' is not a number\n", cmd, opt, val);
        return -1;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "moescope %s: %s: %g out of range %g..%g\n", cmd, opt, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_opt_u64(const char *cmd, const char *opt, const char *val, uint64_t *out)
{
    char *e;
    errno = 0;
    if (val[0] == '-') {
        fprintf(stderr, "moescope %s: %s: '%s' must not be negative\n", cmd, opt, val);
        return -1;
    }
    unsigned long long v = strtoull(val, &e, 10);
    if (e == val || *e || errno) {
        fprintf(stderr, "moescope %s: %s: '%s' is not a whole number\n", cmd, opt, val);
        return -1;
    }
    *out = v;
    return 0;
}

const char *cli_opt_value(const char *cmd, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "moescope %s: %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

void cli_opt_print_escaped(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c == '\\')
            fputs("\\\\", f);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
}
