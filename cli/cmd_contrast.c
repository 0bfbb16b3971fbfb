/*
** cli/cmd_contrast.c — `moescope contrast`: which experts are activated
** more (or less) by the runs of tag A than by those of tag B: risk
** difference, log odds ratio, confidence intervals, a permutation test over
** whole runs and Benjamini–Hochberg q-values; --emit-interventions turns the
** top experts into a --disable (or --force) list for run, eval or ppl.
*/
#include "cli/cmds.h"
#include "cli/opts.h"
#include "analysis/an.h"
#include "db/db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
        "usage: moescope contrast --db FILE --a TAG --b TAG [--top N] [--min-count N]\n"
        "                         [--perm N] [--seed S] [--split all|prompt|gen]\n"
        "                         [--emit-interventions [--force]] [--format table|csv|json]\n"
        "  --top N        rows shown / experts emitted, ranked by |Δ| (default 20)\n"
        "  --min-count N  test a layer×expert only when chosen >= N times in A and B\n"
        "                 together (default 10)\n"
        "  --perm N       permutations of whole runs between A and B (default 1000;\n"
        "                 0 = no p-values)\n"
        "  --seed S       permutation seed (default 1)\n"
        "  --split        which positions count (default all)\n"
        "  --emit-interventions  print the top experts more active in A as\n"
        "                 --disable L:E,... (with --force: --force L:E,...) instead of\n"
        "                 the table\n");
}

/* A non-negative integer option value in 0..max, or -1 with a message. */
static long long nonneg(const char *opt, const char *v, long long max)
{
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < 0 || x > max) {
        fprintf(stderr, "moescope contrast: %s '%s': expected an integer 0..%lld\n", opt, v, max);
        return -1;
    }
    return x;
}

int cli_cmd_contrast(int argc, char **argv)
{
    const char *db_path = "moescope.db", *tag_a = NULL, *tag_b = NULL, *fmt_s = "table";
    long long top = 20;
    int emit = 0, force = 0;
    AnContrastParams p = { .split = AN_SPLIT_ALL, .min_count = 10, .n_perm = 1000, .seed = 1 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long long x;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--db")) {
            if (!(db_path = cli_opt_value("contrast", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--a")) {
            if (!(tag_a = cli_opt_value("contrast", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--b")) {
            if (!(tag_b = cli_opt_value("contrast", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--top")) {
            if (!(v = cli_opt_value("contrast", argc, argv, &i)) || (top = nonneg("--top", v, 1 << 30)) < 0)
                return 2;
        } else if (!strcmp(a, "--min-count")) {
            if (!(v = cli_opt_value("contrast", argc, argv, &i)) || (x = nonneg("--min-count", v, INT64_MAX)) < 0)
                return 2;
            p.min_count = x;
        } else if (!strcmp(a, "--perm")) {
            if (!(v = cli_opt_value("contrast", argc, argv, &i)) || (x = nonneg("--perm", v, 100000000)) < 0)
                return 2;
            p.n_perm = (int)x;
        } else if (!strcmp(a, "--seed")) {
            char *end = NULL;
            if (!(v = cli_opt_value("contrast", argc, argv, &i)))
                return 2;
            errno = 0;
            unsigned long long sd = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-') {
                fprintf(stderr, "moescope contrast: --seed '%s': expected an unsigned integer\n", v);
                return 2;
            }
            p.seed = sd;
        } else if (!strcmp(a, "--split")) {
            if (!(v = cli_opt_value("contrast", argc, argv, &i)))
                return 2;
            p.split = -1;
            for (int s = 0; s < AN_NSPLIT; s++)
                if (!strcmp(v, an_split_name(s)))
                    p.split = s;
            if (p.split < 0) {
                fprintf(stderr, "moescope contrast: --split '%s': expected all, prompt or gen\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--emit-interventions")) {
            emit = 1;
        } else if (!strcmp(a, "--force")) {
            force = 1;
        } else if (!strcmp(a, "--format")) {
            if (!(fmt_s = cli_opt_value("contrast", argc, argv, &i)))
                return 2;
        } else {
            fprintf(stderr, "moescope contrast: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!tag_a || !tag_b) {
        fprintf(stderr, "moescope contrast: %s is required\n", !tag_a ? "--a TAG" : "--b TAG");
        usage(stderr);
        return 2;
    }
    if (force && !emit) {
        fprintf(stderr, "moescope contrast: --force only goes with --emit-interventions\n");
        return 2;
    }
    int fmt = an_format_parse(fmt_s);
    if (fmt < 0) {
        fprintf(stderr, "moescope contrast: --format '%s': expected table, csv or json\n", fmt_s);
        return 2;
    }
    DbErr de = { 0 };
    Db *db = db_open(db_path, DB_OPEN_READONLY, &de);
    if (!db) {
        fprintf(stderr, "moescope contrast: --db %s: %s\n", db_path, de.msg);
        return 1;
    }
    AnContrast *c = NULL;
    AnDbInfo info;
    AnErr err = { 0 };
    int rc = 0;
    if (an_db_contrast(db, db_path, tag_a, tag_b, &p, &c, &info, &err)) {
        fprintf(stderr, "moescope contrast: %s\n", err.msg);
        rc = 1;
    } else if (emit) {
        if (an_contrast_interventions(c, (int)top, force, info.layer_of, stdout) == 0) {
            fprintf(stderr, "moescope contrast: no expert is more active in '%s' than in '%s' "
                    "(with --min-count %lld)\n", tag_a, tag_b, (long long)p.min_count);
            rc = 1;
        }
    } else {
        AnLabels lb = an_db_labels(&info);
        if (an_write_contrast(stdout, c, (int)top, (AnFormat)fmt, &lb) || fflush(stdout)) {
            fprintf(stderr, "moescope contrast: writing the output failed\n");
            rc = 1;
        }
    }
    if (!rc && info.n_skipped)
        fprintf(stderr, "moescope contrast: %d run(s) left out: not complete\n", info.n_skipped);
    an_contrast_free(c);
    an_db_info_done(&info);
    db_close(db);
    return rc;
}
