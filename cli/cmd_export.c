/*
** cli/cmd_export.c — `moescope export`: stream runs, tokens, routes or load
** from a routing database as JSONL or CSV.
**
** With -o FILE the output is written to FILE.tmp and renamed into place only
** when the export succeeded, so a failed export never leaves a truncated
** file under the name asked for.
*/
#include "cli/cmds.h"
#include "db/db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
        "usage: moescope export --db FILE (--run ID | --tag NAME | --all)\n"
        "                       --format csv|jsonl [--what runs|tokens|routes|load]\n"
        "                       [-o FILE]\n"
        "       moescope export --db FILE (--run ID | --tag NAME | --all)\n"
        "                       --format moetrace -o DIR\n"
        "  moetrace: the runs (of one model) as a moetrace v1 trace directory DIR\n"
        "            (docs/moetrace.md); moescope import reads it back\n"
        "  --what   what to write (default routes); see db/README.md for fields\n"
        "  -o FILE  write to FILE instead of standard output\n");
}

/* The value after option argv[*i], or NULL with a message. */
static const char *value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "moescope export: option %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

/* --format moetrace: a trace directory, written through DIR.tmp. */
static int export_moetrace(const char *db_path, long long run, const char *tag,
                           const char *dir)
{
    if (!dir) {
        fprintf(stderr, "moescope export: --format moetrace needs -o DIR (a new directory)\n");
        return 2;
    }
    DbErr err = { 0 };
    Db *db = db_open(db_path, DB_OPEN_READONLY, &err);
    if (!db) {
        fprintf(stderr, "moescope export: %s\n", err.msg);
        return 1;
    }
    DbSel sel = { 0 };
    sel.run = run;
    sel.tag = run > 0 ? NULL : tag;
    DbStatus s = db_export_moetrace(db, &sel, dir, &err);
    db_close(db);
    if (s != DB_OK) {
        fprintf(stderr, "moescope export: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int cli_cmd_export(int argc, char **argv)
{
    const char *db_path = NULL, *tag = NULL, *fmt_s = NULL, *what_s = "routes";
    const char *out_path = NULL;
    long long run = 0;
    int all = 0, n_sel = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--db")) {
            if (!(db_path = value(argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--run")) {
            const char *v = value(argc, argv, &i);
            char *end = NULL;
            if (!v)
                return 2;
            errno = 0;
            run = strtoll(v, &end, 10);
            if (errno || end == v || *end || run <= 0) {
                fprintf(stderr, "moescope export: --run '%s': expected a run id > 0\n", v);
                return 2;
            }
            n_sel++;
        } else if (!strcmp(a, "--tag")) {
            if (!(tag = value(argc, argv, &i)))
                return 2;
            n_sel++;
        } else if (!strcmp(a, "--all")) {
            all = 1;
            n_sel++;
        } else if (!strcmp(a, "--format")) {
            if (!(fmt_s = value(argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--what")) {
            if (!(what_s = value(argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(out_path = value(argc, argv, &i)))
                return 2;
        } else {
            fprintf(stderr, "moescope export: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!db_path) {
        fprintf(stderr, "moescope export: --db FILE is required\n");
        usage(stderr);
        return 2;
    }
    if (n_sel != 1) {
        fprintf(stderr, "moescope export: give exactly one of --run ID, --tag NAME, --all "
                "(got %d)\n", n_sel);
        return 2;
    }
    DbFormat fmt;
    if (fmt_s && !strcmp(fmt_s, "moetrace"))
        return export_moetrace(db_path, run, tag, out_path);
    if (fmt_s && !strcmp(fmt_s, "jsonl"))
        fmt = DB_FMT_JSONL;
    else if (fmt_s && !strcmp(fmt_s, "csv"))
        fmt = DB_FMT_CSV;
    else {
        fprintf(stderr, "moescope export: --format '%s': expected csv, jsonl or moetrace\n",
                fmt_s ? fmt_s : "(missing)");
        return 2;
    }
    DbWhat what;
    if (!strcmp(what_s, "routes"))
        what = DB_WHAT_ROUTES;
    else if (!strcmp(what_s, "tokens"))
        what = DB_WHAT_TOKENS;
    else if (!strcmp(what_s, "load"))
        what = DB_WHAT_LOAD;
    else if (!strcmp(what_s, "runs"))
        what = DB_WHAT_RUNS;
    else {
        fprintf(stderr, "moescope export: --what '%s': expected runs, tokens, routes or "
                "load\n", what_s);
        return 2;
    }

    DbErr err = { 0 };
    Db *db = db_open(db_path, DB_OPEN_READONLY, &err);
    if (!db) {
        fprintf(stderr, "moescope export: %s\n", err.msg);
        return 1;
    }
    DbSel sel = { 0 };
    (void)all;
    if (run > 0) {
        DbRun r;
        if (db_run_get(db, run, &r, &err) != DB_OK) {
            fprintf(stderr, "moescope export: --run %lld: %s\n", run, err.msg);
            db_close(db);
            return 1;
        }
        db_run_free(&r);
        sel.run = run;
    } else if (tag) {
        sel.tag = tag;
    }

    FILE *out = stdout;
    char *tmp = NULL;
    if (out_path) {
        size_t n = strlen(out_path) + 5;
        tmp = malloc(n);
        if (!tmp) {
            fprintf(stderr, "moescope export: out of memory\n");
            db_close(db);
            return 1;
        }
        snprintf(tmp, n, "%s.tmp", out_path);
        out = fopen(tmp, "w");
        if (!out) {
            fprintf(stderr, "moescope export: cannot write '%s': %s\n", tmp, strerror(errno));
            free(tmp);
            db_close(db);
            return 1;
        }
    }
    DbStatus s = db_export(db, &sel, what, fmt, out, &err);
    int rc = 0;
    if (s != DB_OK) {
        fprintf(stderr, "moescope export: %s%s%s\n", err.msg, out_path ? " writing " : "",
                out_path ? out_path : "");
        rc = 1;
    }
    if (out_path) {
        if (fclose(out) != 0 && rc == 0) {
            fprintf(stderr, "moescope export: writing '%s': %s\n", tmp, strerror(errno));
            rc = 1;
        }
        if (rc == 0 && rename(tmp, out_path) != 0) {
            fprintf(stderr, "moescope export: renaming '%s' to '%s': %s\n", tmp, out_path,
                    strerror(errno));
            rc = 1;
        }
        if (rc != 0)
            remove(tmp);
        free(tmp);
    }
    db_close(db);
    return rc;
}
