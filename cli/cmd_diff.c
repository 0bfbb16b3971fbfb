/*
** cli/cmd_diff.c — `moescope diff RUN_A RUN_B`: where two runs' texts
** diverge, how often each layer chose a different expert set over their
** common prefix, the load delta and the change of the chosen tokens'
** logprobs.
*/
#include "cli/cmds.h"
#include "analysis/an.h"
#include "db/db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
        "usage: moescope diff --db FILE RUN_A RUN_B [--format table|csv|json]\n"
        "  compares run B against run A position by position: first diverging\n"
        "  token, share of common-prefix positions whose expert set changed (per\n"
        "  layer; all, prompt, generated), load delta A − B, logprob change B − A\n");
}

int cli_cmd_diff(int argc, char **argv)
{
    const char *db_path = "moescope.db", *fmt_s = "table";
    long long ids[2];
    int n_ids = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--db") || !strcmp(a, "--format")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moescope diff: option %s needs a value\n", a);
                return 2;
            }
            if (!strcmp(a, "--db"))
                db_path = argv[++i];
            else
                fmt_s = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "moescope diff: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            char *end = NULL;
            errno = 0;
            long long x = strtoll(a, &end, 10);
            if (errno || end == a || *end || x <= 0) {
                fprintf(stderr, "moescope diff: run '%s': expected a run id > 0\n", a);
                return 2;
            }
            if (n_ids == 2) {
                fprintf(stderr, "moescope diff: more than two runs given ('%s')\n", a);
                return 2;
            }
            ids[n_ids++] = x;
        }
    }
    if (n_ids != 2) {
        fprintf(stderr, "moescope diff: expected two run ids, got %d\n", n_ids);
        usage(stderr);
        return 2;
    }
    int fmt = an_format_parse(fmt_s);
    if (fmt < 0) {
        fprintf(stderr, "moescope diff: --format '%s': expected table, csv or json\n", fmt_s);
        return 2;
    }
    DbErr de = { 0 };
    Db *db = db_open(db_path, DB_OPEN_READONLY, &de);
    if (!db) {
        fprintf(stderr, "moescope diff: --db %s: %s\n", db_path, de.msg);
        return 1;
    }
    AnDiff *d = NULL;
    AnDbInfo info;
    AnErr err = { 0 };
    int rc = 0;
    if (an_db_diff(db, db_path, ids[0], ids[1], &d, &info, &err)) {
        fprintf(stderr, "moescope diff: %s\n", err.msg);
        rc = 1;
    } else {
        AnLabels lb = an_db_labels(&info);
        if (an_write_diff(stdout, d, (AnFormat)fmt, &lb) || fflush(stdout)) {
            fprintf(stderr, "moescope diff: writing the output failed\n");
            rc = 1;
        }
    }
    an_diff_free(d);
    an_db_info_done(&info);
    db_close(db);
    return rc;
}
