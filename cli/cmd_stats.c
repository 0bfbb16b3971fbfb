/*
** cli/cmd_stats.c — `moescope stats`: per layer×expert load and the balance
** statistics of a run, a tag or the whole database; with --routes also the
** router entropy, top-1 probability, vocabulary specialization and top
** tokens per expert; with --pairs also co-activation and transitions.
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
        "usage: moescope stats --db FILE [--run ID | --tag NAME] [--format table|csv|json]\n"
        "                      [--routes] [--pairs] [--min-occ N] [--top-tokens N]\n"
        "  default      load, share, weight mass per layer×expert and per layer the\n"
        "               load entropy (normalised), CV, MaxVio, Gini, experts never\n"
        "               chosen — from the per-run aggregates of complete runs (fast)\n"
        "  --routes     also read the raw routes: mean router entropy and top-1\n"
        "               probability (runs logged with router logits), OLMoE vocabulary\n"
        "               specialization and the top tokens of each expert\n"
        "  --pairs      also co-activation P(b|a) and layer-to-layer transitions\n"
        "               (implies --routes)\n"
        "  --min-occ N  token ids seen fewer times are left out of specialization\n"
        "               and top tokens (default 10)\n"
        "  --top-tokens N  tokens kept per expert (default 5)\n"
        "every statistic is given for all, prompt and generated positions\n");
}

/* A positive integer option value, or -1 with a message naming it. */
static long long pos_int(const char *opt, const char *v, long long max)
{
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < 1 || x > max) {
        fprintf(stderr, "moescope stats: %s '%s': expected an integer 1..%lld\n", opt, v, max);
        return -1;
    }
    return x;
}

int cli_cmd_stats(int argc, char **argv)
{
    const char *db_path = "moescope.db", *tag = NULL, *fmt_s = "table";
    long long run = 0;
    AnStatsParams p = { 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--db")) {
            if (!(db_path = cli_opt_value("stats", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--run")) {
            if (!(v = cli_opt_value("stats", argc, argv, &i)) || (run = pos_int("--run", v, INT64_MAX)) < 0)
                return 2;
        } else if (!strcmp(a, "--tag")) {
            if (!(tag = cli_opt_value("stats", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--format")) {
            if (!(fmt_s = cli_opt_value("stats", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--routes")) {
            p.want_routes = 1;
        } else if (!strcmp(a, "--pairs")) {
            p.want_pairs = 1;
        } else if (!strcmp(a, "--min-occ")) {
            long long x;
            if (!(v = cli_opt_value("stats", argc, argv, &i)) || (x = pos_int("--min-occ", v, 1 << 30)) < 0)
                return 2;
            p.min_occ = (int)x;
        } else if (!strcmp(a, "--top-tokens")) {
            long long x;
            if (!(v = cli_opt_value("stats", argc, argv, &i)) || (x = pos_int("--top-tokens", v, 1000)) < 0)
                return 2;
            p.n_top_tok = (int)x;
        } else {
            fprintf(stderr, "moescope stats: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (run > 0 && tag) {
        fprintf(stderr, "moescope stats: --run and --tag exclude each other\n");
        return 2;
    }
    int fmt = an_format_parse(fmt_s);
    if (fmt < 0) {
        fprintf(stderr, "moescope stats: --format '%s': expected table, csv or json\n", fmt_s);
        return 2;
    }
    DbErr de = { 0 };
    Db *db = db_open(db_path, DB_OPEN_READONLY, &de);
    if (!db) {
        fprintf(stderr, "moescope stats: --db %s: %s\n", db_path, de.msg);
        return 1;
    }
    AnStats *s = NULL;
    AnDbInfo info;
    AnErr err = { 0 };
    AnStatus st = an_db_stats(db, db_path, run, tag, &p, &s, &info, &err);
    int rc = 0;
    if (st) {
        fprintf(stderr, "moescope stats: %s\n", err.msg);
        rc = 1;
    } else {
        AnLabels lb = an_db_labels(&info);
        if (an_write_stats(stdout, s, (AnFormat)fmt, &lb) || fflush(stdout)) {
            fprintf(stderr, "moescope stats: writing the output failed\n");
            rc = 1;
        }
        if (fmt == AN_FMT_TABLE && !s->has_routes && !info.n_counts_only)
            fprintf(stderr, "(router entropy, top-1 probability, specialization: add --routes)\n");
        if (info.n_skipped)
            fprintf(stderr, "moescope stats: %d run(s) left out: not complete\n", info.n_skipped);
    }
    an_stats_free(s);
    an_db_info_done(&info);
    db_close(db);
    return rc;
}
