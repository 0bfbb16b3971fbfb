/*
** cli/cmd_import.c — `moescope import`: a moetrace v1 trace (a directory or
** a .jsonl file, docs/moetrace.md) into a routing database, one run per
** sequence, tagged so that stats, contrast and the TUI select it.
**
** The whole trace is checked before the database is even opened: a bad
** trace exits with the file, field and value at fault and the database is
** not touched (not even created).  Token text comes from --vocab MODEL.gguf
** when given; the imported runs are flagged as imported (read-only for
** steering: their model is not here).
*/
#include "db/db.h"
#include "engine/eng.h"
#include "cli/cmds.h"
#include "cli/opts.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
        "usage: moescope import DIR|FILE.jsonl --db FILE --tag NAME [--vocab MODEL.gguf]\n"
        "                       [--quiet]\n"
        "  DIR|FILE       a moetrace v1 trace (docs/moetrace.md; tools/moetrace_convert.py\n"
        "                 makes one from vLLM, SGLang or Hugging Face outputs)\n"
        "  --db FILE      the routing database (created if missing)\n"
        "  --tag NAME     run set of the imported runs\n"
        "  --vocab GGUF   fill token text from this model's vocabulary\n"
        "  --quiet        no progress on stderr\n");
}

typedef struct {
    struct timespec t0, last;
    int quiet;
} Progress;

static double since(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + 1e-9 * (double)(b->tv_nsec - a->tv_nsec);
}

static int on_progress(void *user, int64_t done, int64_t total)
{
    Progress *p = user;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (p->quiet || (done < total && since(&p->last, &now) < 1.0))
        return 0;
    p->last = now;
    double dt = since(&p->t0, &now);
    fprintf(stderr, "moescope import: %lld / %lld tokens (%.0f%%), %.0f tokens/s\n",
            (long long)done, (long long)total, total ? 100.0 * (double)done / (double)total : 100.0,
            dt > 0 ? (double)done / dt : 0.0);
    return 0;
}

static const char *vocab_piece(void *user, int32_t id, size_t *len)
{
    return eng_token_str(user, id, len);
}

int cli_cmd_import(int argc, char **argv)
{
    const char *src = NULL, *db_path = NULL, *tag = NULL, *vocab = NULL;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--db")) {
            if (!(db_path = cli_opt_value("import", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--tag")) {
            if (!(tag = cli_opt_value("import", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--vocab")) {
            if (!(vocab = cli_opt_value("import", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "moescope import: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (src) {
            fprintf(stderr, "moescope import: one trace at a time (got '%s' and '%s')\n", src, a);
            return 2;
        } else {
            src = a;
        }
    }
    if (!src || !db_path || !tag || !tag[0]) {
        fprintf(stderr, "moescope import: %s is required\n",
                !src ? "a trace (DIR or FILE.jsonl)" : !db_path ? "--db FILE" : "--tag NAME");
        usage(stderr);
        return 2;
    }

    DbErr err = { 0 };
    if (!quiet)
        fprintf(stderr, "moescope import: checking '%s'\n", src);
    DbTrace *t = db_trace_open(src, &err);
    if (!t) {
        fprintf(stderr, "moescope import: %s (nothing imported)\n", err.msg);
        return 1;
    }
    const DbTraceInfo *I = db_trace_info(t);
    EngModel *m = NULL;
    if (vocab) {
        EngErr ee;
        memset(&ee, 0, sizeof ee);
        m = eng_model_open(vocab, &ee);
        if (!m) {
            fprintf(stderr, "moescope import: --vocab '%s': %s (nothing imported)\n", vocab,
                    ee.msg);
            db_trace_close(t);
            return 1;
        }
    }
    Db *db = db_open(db_path, DB_OPEN_CREATE, &err);
    if (!db) {
        fprintf(stderr, "moescope import: %s\n", err.msg);
        eng_model_close(m);
        db_trace_close(t);
        return 1;
    }
    Progress p = { .quiet = quiet };
    clock_gettime(CLOCK_MONOTONIC, &p.t0);
    p.last = p.t0;
    DbImportOpts o = { 0 };
    o.tag = tag;
    o.piece = m ? vocab_piece : NULL;
    o.piece_user = m;
    o.progress = on_progress;
    o.progress_user = &p;
    int64_t first = 0, last = 0;
    DbStatus s = db_import(db, t, &o, &first, &last, &err);
    int rc = 0;
    if (s != DB_OK) {
        fprintf(stderr, "moescope import: %s (database left as it was)\n", err.msg);
        rc = 1;
    } else {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (I->counts_only)
            printf("imported %d count-only run%s %lld..%lld (tag '%s'): per-layer expert counts "
                   "of %lld tokens, no tokens or routes (token views not available), model '%s' "
                   "(%d layers, %d MoE, %d experts, top-%d), source '%s', %.1f s\n",
                   I->n_seq, I->n_seq == 1 ? "" : "s", (long long)first, (long long)last, tag,
                   (long long)I->n_tokens, I->model, I->num_layers, I->n_moe, I->num_experts,
                   I->top_k, I->source, since(&p.t0, &now));
        else
            printf("imported %d sequence%s as runs %lld..%lld (tag '%s'): %lld tokens, model "
                   "'%s' (%d layers, %d MoE, %d experts, top-%d), source '%s'%s, %.1f s\n",
                   I->n_seq, I->n_seq == 1 ? "" : "s", (long long)first, (long long)last, tag,
                   (long long)I->n_tokens, I->model, I->num_layers, I->n_moe, I->num_experts,
                   I->top_k, I->source, I->has_weights ? "" : ", no gate weights (1/k stored)",
                   since(&p.t0, &now));
    }
    db_close(db);
    eng_model_close(m);
    db_trace_close(t);
    return rc;
}
