/*
** tests/test_db.c — the routing database: round trips through the logger,
** the readers and the export (JSONL parsed back, CSV quoting), schema
** migration and refusal of newer files, bad input (not a database, a
** foreign SQLite file, a read-only directory, bad records), recovery of
** runs whose writer died.
**
** Crash safety, concurrent readers and a full disk are in test_db_crash.c.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/tmpdir.h"

#include "db/db.h"
#include "db/db_int.h"
#include "cli/cmds.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- fixtures and synthetic data --------------------------------------- */

/* Deterministic route: k distinct experts, weights summing to ~1, scores,
** logits. */
static void synth_route(uint64_t seed, int pos, int layer, int n_expert, int k,
                        int32_t *ex, float *w, float *sc, float *lg)
{
    uint64_t s = mix(seed ^ ((uint64_t)pos << 20) ^ ((uint64_t)layer << 44));
    int n = 0;
    while (n < k) {
        s = mix(s);
        int e = (int)(s % (uint64_t)n_expert), dup = 0;
        for (int i = 0; i < n; i++)
            dup |= ex[i] == e;
        if (!dup)
            ex[n++] = e;
    }
    float sum = 0;
    for (int i = 0; i < k; i++) {
        w[i] = (float)((mix(s + (uint64_t)i) >> 40) + 1) / (float)(1 << 24);
        sum += w[i];
    }
    for (int i = 0; i < k; i++) {
        w[i] /= sum;
        if (sc)
            sc[i] = w[i] * 0.5f + 0.125f;
    }
    for (int e = 0; lg && e < n_expert; e++)
        lg[e] = (float)((int64_t)(mix(s ^ (uint64_t)e) >> 44) - (1 << 19)) / 65536.0f;
}

enum { NL = 4, NE = 64, K = 8 };

static int64_t add_model(Db *db, int n_layer, int n_expert, int k, uint64_t hash)
{
    DbModel m = { 0, "models/synthetic.gguf", "synthetic", "olmoe", 123456789, hash,
                  n_layer, n_expert, k };
    DbErr err = { 0 };
    DbStatus s = db_model_register(db, &m, &err);
    if (s != DB_OK)
        fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(s, DB_OK);
    return m.id;
}

/* Pieces that exercise escaping: quotes, backslash, newline, tab, a control
** char, UTF-8, an invalid byte, a comma. */
static const char *const pieces[] = {
    "\xe2\x96\x81" "And", "\"q\"", "a\\b", "line\nbreak", "\ttab", "\x01", "caf\xc3\xa9",
    "bad\xff" "byte", "a,b", "",
};
#define N_PIECES ((int)(sizeof pieces / sizeof pieces[0]))

/* Log one run of n tokens (n_prompt of them prompt), every layer routed.
** Returns the run id. */
static int64_t log_run(Db *db, int64_t model, const char *tag, uint64_t seed, int n,
                       int n_prompt, int flags, int flush_every)
{
    DbRunInfo ri = { .model = model, .tag = tag, .prompt = "the prompt \"x\"\n",
                     .prompt_fmt = "<s> the prompt", .iv_text = "disable 2:11 (all)",
                     .iv_json = "[{\"kind\":\"disable\",\"layer\":2,\"expert\":11}]",
                     .seed = seed, .temp = 0.8f, .top_p = 0.95f, .top_k = 40,
                     .n_predict = n - n_prompt, .n_ctx = 4096, .flags = flags };
    DbErr err = { 0 };
    DbLog *lg = db_log_begin(db, &ri, flush_every, &err);
    if (!lg)
        fprintf(stderr, "%s\n", err.msg);
    assert_non_null(lg);
    int64_t id = db_log_run_id(lg);
    for (int p = 0; p < n; p++) {
        DbToken t = { .pos = p, .token = (int32_t)(seed * 31 + (uint64_t)p) % 4096,
                      .is_prompt = p < n_prompt, .piece = pieces[p % N_PIECES],
                      .piece_len = -1, .logprob = p < n_prompt ? NAN : -0.25f * (float)p,
                      .n_top = 5 };
        for (int i = 0; i < 5; i++) {
            t.top_ids[i] = p + i;
            t.top_lp[i] = -1.0f / 3.0f * (float)(i + 1) - (float)p * 1e-3f;
        }
        assert_int_equal(db_log_token(lg, &t), DB_OK);
        for (int l = 0; l < NL; l++) {
            int32_t ex[K];
            float w[K], sc[K], lgt[NE];
            synth_route(seed, p, l, NE, K, ex, w, sc, lgt);
            DbRoute r = { .pos = p, .layer = l, .is_prompt = p < n_prompt, .k = K,
                          .experts = ex, .weights = w, .scores = sc, .logits = lgt,
                          .shared_gate = l == 1 ? 0.5f : NAN };
            assert_int_equal(db_log_route(lg, &r), DB_OK);
        }
    }
    DbRunStats st = { n_prompt, n - n_prompt, 12.5, 40.25, NULL };
    DbStatus s = db_log_finish(lg, DB_RUN_COMPLETE, &st, &err);
    if (s != DB_OK)
        fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(s, DB_OK);
    return id;
}

/* ---- round trip through the readers ------------------------------------- */

typedef struct {
    uint64_t seed;
    int n, n_prompt, flags;
    int seen;
    int n_bad;
    float max_diff;
} Check;

static int check_token(void *user, int64_t run, const DbToken *t)
{
    Check *c = user;
    (void)run;
    const char *want = pieces[t->pos % N_PIECES];
    if (t->pos != c->seen || t->token != (int32_t)(c->seed * 31 + (uint64_t)t->pos) % 4096 ||
        t->is_prompt != (t->pos < c->n_prompt) || t->piece_len != (int)strlen(want) ||
        memcmp(t->piece, want, strlen(want)) != 0 || t->n_top != 5)
        c->n_bad++;
    if (t->pos < c->n_prompt ? !isnan(t->logprob) : t->logprob != -0.25f * (float)t->pos)
        c->n_bad++;
    for (int i = 0; i < t->n_top; i++)
        if (t->top_ids[i] != t->pos + i ||
            t->top_lp[i] != -1.0f / 3.0f * (float)(i + 1) - (float)t->pos * 1e-3f)
            c->n_bad++;
    c->seen++;
    return 0;
}

static int check_route(void *user, int64_t run, const DbRoute *r)
{
    Check *c = user;
    (void)run;
    int32_t ex[K];
    float w[K], sc[K], lgt[NE];
    synth_route(c->seed, r->pos, r->layer, NE, K, ex, w, sc, lgt);
    if (r->k != K || r->is_prompt != (r->pos < c->n_prompt))
        c->n_bad++;
    for (int i = 0; i < K && r->k == K; i++) {
        if (r->experts[i] != ex[i])
            c->n_bad++;
        float d = fabsf(r->weights[i] - w[i]);
        if (d > c->max_diff)
            c->max_diff = d;
    }
    if ((c->flags & DB_RUN_SCORES) ? !r->scores || memcmp(r->scores, sc, sizeof sc)
                                   : r->scores != NULL)
        c->n_bad++;
    if ((c->flags & DB_RUN_LOGITS) ? !r->logits || r->n_logits != NE ||
                                         memcmp(r->logits, lgt, sizeof lgt)
                                   : r->logits != NULL)
        c->n_bad++;
    if (r->layer == 1 ? r->shared_gate != 0.5f : !isnan(r->shared_gate))
        c->n_bad++;
    c->seen++;
    return 0;
}

typedef struct {
    int n, bad;
    int64_t run;
} HitAcc;

/* Hits of expert 5 in layer 2 of the seed-7 run (37 prompt tokens). */
static int hit_cb(void *u, int64_t r, int32_t pos, int rank, float wt, int ip)
{
    HitAcc *acc = u;
    int32_t ex[K];
    float w[K];
    synth_route(7, pos, 2, NE, K, ex, w, NULL, NULL);
    if (r != acc->run || rank < 0 || rank >= K || ex[rank] != 5 || w[rank] != wt ||
        ip != (pos < 37))
        acc->bad++;
    acc->n++;
    return 0;
}

static void test_db_roundtrip_tokens_routes_load_equal_written(void **state)
{
    Tmp *t = *state;
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    int64_t m = add_model(db, NL, NE, K, 42);
    int n = 300, n_prompt = 37;
    int64_t run = log_run(db, m, "rt", 7, n, n_prompt, DB_RUN_SCORES | DB_RUN_LOGITS, 50);
    int64_t run2 = log_run(db, m, "rt", 8, 20, 5, 0, 0);

    Check c = { .seed = 7, .n = n, .n_prompt = n_prompt,
                .flags = DB_RUN_SCORES | DB_RUN_LOGITS };
    assert_int_equal(db_tokens(db, run, check_token, &c, &err), DB_OK);
    assert_int_equal(c.seen, n);
    assert_int_equal(c.n_bad, 0);
    c.seen = 0;
    assert_int_equal(db_routes(db, run, 0, -1, -1, check_route, &c, &err), DB_OK);
    printf("route weights: largest difference written vs read %g\n", c.max_diff);
    assert_int_equal(c.seen, n * NL);
    assert_int_equal(c.n_bad, 0);
    assert_true(c.max_diff == 0.0f);

    /* default batches: routes go through the multi-row INSERT (128 rows a
    ** statement), with scores, logits and shared gates, or without scores
    ** and logits; both read back exactly */
    for (int f = 0; f < 2; f++) {
        int flags = f ? 0 : DB_RUN_SCORES | DB_RUN_LOGITS;
        int64_t r3 = log_run(db, m, "rt3", 9 + (uint64_t)f, n, n_prompt, flags, 0);
        Check c3 = { .seed = 9 + (uint64_t)f, .n = n, .n_prompt = n_prompt, .flags = flags };
        assert_int_equal(db_routes(db, r3, 0, -1, -1, check_route, &c3, &err), DB_OK);
        assert_int_equal(c3.seen, n * NL);
        assert_int_equal(c3.n_bad, 0);
        assert_true(c3.max_diff == 0.0f);
        c3.seen = 0;
        assert_int_equal(db_tokens(db, r3, check_token, &c3, &err), DB_OK);
        assert_int_equal(c3.seen, n);
        assert_int_equal(c3.n_bad, 0);
    }

    /* the route of one token through all layers */
    c.seen = 0;
    assert_int_equal(db_routes(db, run, 100, 100, -1, check_route, &c, &err), DB_OK);
    assert_int_equal(c.seen, NL);
    Check c2 = { .seed = 8, .n = 20, .n_prompt = 5, .flags = 0 };
    assert_int_equal(db_routes(db, run2, 0, -1, 2, check_route, &c2, &err), DB_OK);
    assert_int_equal(c2.seen, 20);
    assert_int_equal(c2.n_bad, 0);

    /* aggregates equal a recount of the synthetic routes */
    int64_t cnt[NL][NE] = { { 0 } }, cntp[NL][NE] = { { 0 } };
    double wsum[NL][NE] = { { 0 } };
    for (int p = 0; p < n; p++)
        for (int l = 0; l < NL; l++) {
            int32_t ex[K];
            float w[K];
            synth_route(7, p, l, NE, K, ex, w, NULL, NULL);
            for (int i = 0; i < K; i++) {
                cnt[l][ex[i]]++;
                wsum[l][ex[i]] += w[i];
                cntp[l][ex[i]] += p < n_prompt;
            }
        }
    DbSel sel = { .run = run };
    DbLoad ld;
    assert_int_equal(db_load(db, &sel, &ld, &err), DB_OK);
    assert_int_equal(ld.n_layer, NL);
    assert_int_equal(ld.n_expert, NE);
    assert_int_equal(ld.n_runs, 1);
    assert_int_equal(ld.n_prompt, n_prompt);
    assert_int_equal(ld.n_gen, n - n_prompt);
    double maxd = 0;
    for (int l = 0; l < NL; l++)
        for (int e = 0; e < NE; e++) {
            assert_int_equal(ld.count[l * NE + e], cnt[l][e]);
            assert_int_equal(ld.count_prompt[l * NE + e], cntp[l][e]);
            double d = fabs(ld.weight[l * NE + e] - wsum[l][e]);
            maxd = d > maxd ? d : maxd;
        }
    printf("load weight mass: largest difference %g\n", maxd);
    assert_true(maxd < 1e-9);
    db_load_free(&ld);

    /* tag load = sum of the two runs */
    DbSel tag = { .tag = "rt" };
    assert_int_equal(db_load(db, &tag, &ld, &err), DB_OK);
    assert_int_equal(ld.n_runs, 2);
    int64_t total = 0;
    for (int e = 0; e < NE; e++)
        total += ld.count[3 * NE + e];
    assert_int_equal(total, (int64_t)(n + 20) * K);
    db_load_free(&ld);

    /* tokens routed to one expert = the count in the aggregates */
    DbSel one = { .run = run };
    HitAcc acc = { 0, 0, run };
    assert_int_equal(db_expert_hits(db, &one, 2, 5, hit_cb, &acc, &err), DB_OK);
    assert_int_equal(acc.n, cnt[2][5]);
    assert_int_equal(acc.bad, 0);

    /* the run row */
    DbRun r;
    assert_int_equal(db_run_get(db, run, &r, &err), DB_OK);
    assert_int_equal(r.status, DB_RUN_COMPLETE);
    assert_string_equal(r.tag, "rt");
    assert_string_equal(r.prompt, "the prompt \"x\"\n");
    assert_string_equal(r.iv_text, "disable 2:11 (all)");
    assert_string_equal(r.iv_json, "[{\"kind\":\"disable\",\"layer\":2,\"expert\":11}]");
    assert_int_equal(r.n_prompt, n_prompt);
    assert_int_equal(r.n_gen, n - n_prompt);
    assert_int_equal(r.n_layer, NL);
    assert_int_equal(r.seed, 7);
    assert_true(r.t_gen_ms == 40.25);
    assert_true(fabs(r.temp - 0.8) < 1e-6);
    db_run_free(&r);
    assert_int_equal(db_run_get(db, 999, &r, &err), DB_E_NOTFOUND);
    db_close(db);
}

/* ---- export: JSONL parsed back ----------------------------------------- */

/* A minimal JSON reader for the shapes export writes. */
typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } JType;
typedef struct JVal {
    JType t;
    double num;
    char *str;                  /* J_STR (decoded), J_NUM (raw text) */
    int n;
    struct JVal *items;         /* J_ARR / J_OBJ values */
    char **keys;                /* J_OBJ */
} JVal;

static const char *jp_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static const char *jp_val(const char *p, JVal *v);

static const char *jp_str(const char *p, char **out)
{
    if (*p != '"')
        return NULL;
    p++;
    size_t cap = 64, n = 0;
    char *s = malloc(cap);
    while (*p && *p != '"') {
        if (n + 8 > cap)
            s = realloc(s, cap *= 2);
        if (*p == '\\') {
            p++;
            switch (*p) {
            case 'n': s[n++] = '\n'; break;
            case 't': s[n++] = '\t'; break;
            case 'r': s[n++] = '\r'; break;
            case 'b': s[n++] = '\b'; break;
            case 'f': s[n++] = '\f'; break;
            case 'u': {
                unsigned c = 0;
                if (sscanf(p + 1, "%4x", &c) != 1 || c >= 0x80) {
                    free(s);
                    return NULL;
                }
                s[n++] = (char)c;
                p += 4;
                break;
            }
            default: s[n++] = *p;
            }
            p++;
        } else {
            if ((unsigned char)*p < 0x20) {
                free(s);
                return NULL;
            }
            s[n++] = *p++;
        }
    }
    if (*p != '"') {
        free(s);
        return NULL;
    }
    s[n] = 0;
    *out = s;
    return p + 1;
}

static const char *jp_val(const char *p, JVal *v)
{
    memset(v, 0, sizeof *v);
    p = jp_ws(p);
    if (*p == '"') {
        v->t = J_STR;
        return jp_str(p, &v->str);
    }
    if (!strncmp(p, "null", 4)) {
        v->t = J_NULL;
        return p + 4;
    }
    if (!strncmp(p, "true", 4) || !strncmp(p, "false", 5)) {
        v->t = J_BOOL;
        v->num = *p == 't';
        return p + (*p == 't' ? 4 : 5);
    }
    if (*p == '[' || *p == '{') {
        int obj = *p == '{';
        char close = obj ? '}' : ']';
        v->t = obj ? J_OBJ : J_ARR;
        p = jp_ws(p + 1);
        int cap = 0;
        while (*p && *p != close) {
            if (v->n == cap) {
                cap = cap ? cap * 2 : 8;
                v->items = realloc(v->items, (size_t)cap * sizeof *v->items);
                v->keys = realloc(v->keys, (size_t)cap * sizeof *v->keys);
            }
            v->keys[v->n] = NULL;
            if (obj) {
                p = jp_str(p, &v->keys[v->n]);
                if (!p)
                    return NULL;
                p = jp_ws(p);
                if (*p++ != ':')
                    return NULL;
            }
            p = jp_val(p, &v->items[v->n]);
            if (!p)
                return NULL;
            v->n++;
            p = jp_ws(p);
            if (*p == ',')
                p = jp_ws(p + 1);
            else if (*p != close)
                return NULL;
        }
        return *p == close ? p + 1 : NULL;
    }
    char *end = NULL;
    v->t = J_NUM;
    v->num = strtod(p, &end);
    if (end == p)
        return NULL;
    v->str = strndup(p, (size_t)(end - p));
    return end;
}

static void jfree(JVal *v)
{
    for (int i = 0; i < v->n; i++) {
        jfree(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
}

static const JVal *jget(const JVal *o, const char *key)
{
    for (int i = 0; o->t == J_OBJ && i < o->n; i++)
        if (!strcmp(o->keys[i], key))
            return &o->items[i];
    return NULL;
}

/* Parse "{...}\n" strictly: the whole line must be one object. */
static int jparse_line(const char *line, JVal *v)
{
    const char *e = jp_val(line, v);
    if (!e)
        return 0;
    e = jp_ws(e);
    return (*e == '\n' || *e == 0) && v->t == J_OBJ;
}

static FILE *export_to_tmp(Db *db, const DbSel *sel, DbWhat what, DbFormat fmt)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    DbErr err = { 0 };
    DbStatus s = db_export(db, sel, what, fmt, f, &err);
    if (s != DB_OK)
        fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(s, DB_OK);
    rewind(f);
    return f;
}

/* What the export makes of a piece: invalid UTF-8 bytes become U+FFFD. */
static void expected_text(const char *piece, char *out)
{
    for (const unsigned char *p = (const unsigned char *)piece; *p; p++) {
        if (*p == 0xff) {
            memcpy(out, "\xEF\xBF\xBD", 3);
            out += 3;
        } else {
            *out++ = (char)*p;
        }
    }
    *out = 0;
}

static void test_db_export_jsonl_parses_back_equal(void **state)
{
    Tmp *t = *state;
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    int64_t m = add_model(db, NL, NE, K, 43);
    int n = 120, n_prompt = 11;
    int64_t run = log_run(db, m, "ex", 99, n, n_prompt, DB_RUN_LOGITS, 0);
    log_run(db, m, "other", 5, 10, 2, 0, 0);
    DbSel sel = { .run = run };
    char *line = NULL;
    size_t cap = 0;
    int rows = 0, bad = 0;

    /* routes */
    FILE *f = export_to_tmp(db, &sel, DB_WHAT_ROUTES, DB_FMT_JSONL);
    while (getline(&line, &cap, f) > 0) {
        JVal v;
        assert_true(jparse_line(line, &v));
        const JVal *jr = jget(&v, "run"), *jp = jget(&v, "pos"), *jl = jget(&v, "layer");
        const JVal *je = jget(&v, "experts"), *jw = jget(&v, "weights");
        const JVal *jg = jget(&v, "logits");
        assert_non_null(jr);
        assert_non_null(jp);
        assert_non_null(jl);
        assert_non_null(je);
        assert_non_null(jw);
        assert_non_null(jg);
        assert_null(jget(&v, "scores"));
        int32_t ex[K];
        float w[K], lgt[NE];
        synth_route(99, (int)jp->num, (int)jl->num, NE, K, ex, w, NULL, lgt);
        bad += jr->num != (double)run || je->n != K || jw->n != K || jg->n != NE;
        for (int i = 0; i < K && je->n == K && jw->n == K; i++) {
            bad += je->items[i].num != ex[i];
            bad += strtof(jw->items[i].str, NULL) != w[i];     /* %.9g round-trips */
        }
        for (int e = 0; e < NE && jg->n == NE; e++)
            bad += strtof(jg->items[e].str, NULL) != lgt[e];
        rows++;
        jfree(&v);
    }
    fclose(f);
    assert_int_equal(rows, n * NL);
    assert_int_equal(bad, 0);

    /* tokens */
    rows = 0;
    f = export_to_tmp(db, &sel, DB_WHAT_TOKENS, DB_FMT_JSONL);
    while (getline(&line, &cap, f) > 0) {
        JVal v;
        assert_true(jparse_line(line, &v));
        int p = (int)jget(&v, "pos")->num;
        char want[64];
        expected_text(pieces[p % N_PIECES], want);
        const JVal *jt = jget(&v, "text"), *jlp = jget(&v, "logprob");
        const JVal *jtop = jget(&v, "top"), *jpr = jget(&v, "prompt");
        assert_non_null(jt);
        assert_non_null(jtop);
        assert_non_null(jpr);
        bad += p != rows || strcmp(jt->str, want) != 0;
        bad += jget(&v, "token")->num != (double)((int32_t)(99 * 31 + (uint64_t)p) % 4096);
        bad += jpr->t != J_BOOL || jpr->num != (p < n_prompt);
        if (p < n_prompt)
            bad += jlp->t != J_NULL;
        else
            bad += strtof(jlp->str, NULL) != -0.25f * (float)p;
        bad += jtop->n != 5;
        for (int i = 0; i < jtop->n; i++) {
            bad += jtop->items[i].n != 2 || jtop->items[i].items[0].num != p + i;
            bad += strtof(jtop->items[i].items[1].str, NULL) !=
                   -1.0f / 3.0f * (float)(i + 1) - (float)p * 1e-3f;
        }
        rows++;
        jfree(&v);
    }
    fclose(f);
    assert_int_equal(rows, n);
    assert_int_equal(bad, 0);

    /* load: counts sum to n × k per layer */
    rows = 0;
    int64_t per_layer[NL] = { 0 };
    f = export_to_tmp(db, &sel, DB_WHAT_LOAD, DB_FMT_JSONL);
    while (getline(&line, &cap, f) > 0) {
        JVal v;
        assert_true(jparse_line(line, &v));
        assert_non_null(jget(&v, "weight"));
        assert_non_null(jget(&v, "prompt_count"));
        per_layer[(int)jget(&v, "layer")->num] += (int64_t)jget(&v, "count")->num;
        rows++;
        jfree(&v);
    }
    fclose(f);
    for (int l = 0; l < NL; l++)
        assert_int_equal(per_layer[l], (int64_t)n * K);

    /* runs: --all gives both, the JSON interventions embedded as JSON */
    rows = 0;
    f = export_to_tmp(db, NULL, DB_WHAT_RUNS, DB_FMT_JSONL);
    while (getline(&line, &cap, f) > 0) {
        JVal v;
        assert_true(jparse_line(line, &v));
        assert_string_equal(jget(&v, "status")->str, "complete");
        assert_string_equal(jget(&v, "prompt")->str, "the prompt \"x\"\n");
        const JVal *iv = jget(&v, "interventions_json");
        assert_non_null(iv);
        assert_int_equal(iv->t, J_ARR);
        assert_int_equal(jget(&iv->items[0], "expert")->num, 11);
        assert_int_equal(jget(&v, "parent")->t, J_NULL);
        rows++;
        jfree(&v);
    }
    fclose(f);
    assert_int_equal(rows, 2);
    free(line);
    db_close(db);
}

/* ---- export: CSV ------------------------------------------------------- */

static void test_db_export_csv_quoted_one_line_per_row(void **state)
{
    Tmp *t = *state;
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    int64_t m = add_model(db, NL, NE, K, 44);
    int64_t run = log_run(db, m, "csv", 3, 2 * N_PIECES, 4, 0, 0);
    DbSel sel = { .tag = "csv" };
    FILE *f = export_to_tmp(db, &sel, DB_WHAT_TOKENS, DB_FMT_CSV);
    char *line = NULL;
    size_t cap = 0;
    assert_true(getline(&line, &cap, f) > 0);
    assert_string_equal(line, "run,pos,token,text,prompt,logprob,top\n");
    int rows = 0;
    while (getline(&line, &cap, f) > 0) {
        int p = rows;
        char want[64];
        expected_text(pieces[p % N_PIECES], want);
        /* the CSV cell: JSON escapes inside, quotes doubled */
        char cell[160], *o = cell;
        *o++ = '"';
        for (const char *s = want; *s; s++) {
            switch (*s) {
            case '"': o += sprintf(o, "\"\""); break;
            case '\\': o += sprintf(o, "\\\\"); break;
            case '\n': o += sprintf(o, "\\n"); break;
            case '\t': o += sprintf(o, "\\t"); break;
            case '\x01': o += sprintf(o, "\\u0001"); break;
            default: *o++ = *s;
            }
        }
        *o++ = '"';
        *o = 0;
        char head[64];
        snprintf(head, sizeof head, "%lld,%d,%d,", (long long)run, p,
                 (int)((int32_t)(3 * 31 + (uint64_t)p) % 4096));
        assert_memory_equal(line, head, strlen(head));
        assert_memory_equal(line + strlen(head), cell, strlen(cell));
        const char *rest = line + strlen(head) + strlen(cell);
        /* prompt flag, empty logprob for prompt tokens, pairs for top */
        if (p < 4)
            assert_memory_equal(rest, ",true,,", 7);
        else
            assert_memory_equal(rest, ",false,-", 8);
        assert_non_null(strstr(rest, " "));
        rows++;
    }
    assert_int_equal(rows, 2 * N_PIECES);
    fclose(f);

    f = export_to_tmp(db, &sel, DB_WHAT_ROUTES, DB_FMT_CSV);
    assert_true(getline(&line, &cap, f) > 0);
    assert_string_equal(line, "run,pos,layer,experts,weights,scores,logits,shared_gate\n");
    assert_true(getline(&line, &cap, f) > 0);
    int32_t ex[K];
    float w[K];
    synth_route(3, 0, 0, NE, K, ex, w, NULL, NULL);
    char want[256];
    int o = snprintf(want, sizeof want, "%lld,0,0,", (long long)run);
    for (int i = 0; i < K; i++)
        o += snprintf(want + o, sizeof want - (size_t)o, "%s%d", i ? " " : "", ex[i]);
    want[o++] = ',';
    for (int i = 0; i < K; i++)
        o += snprintf(want + o, sizeof want - (size_t)o, "%s%.9g", i ? " " : "", w[i]);
    snprintf(want + o, sizeof want - (size_t)o, ",,,\n");
    assert_string_equal(line, want);
    fclose(f);
    free(line);
    db_close(db);
}

/* ---- opening bad files -------------------------------------------------- */

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *b = malloc(1 << 16);
    *n = fread(b, 1, 1 << 16, f);
    fclose(f);
    return b;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void test_db_open_not_a_database_refused_untouched(void **state)
{
    Tmp *t = *state;
    FILE *f = fopen(t->path, "wb");
    assert_non_null(f);
    for (int i = 0; i < 3000; i++)
        fprintf(f, "this is not a database, line %d\n", i);
    fclose(f);
    size_t n0, n1;
    char *before = slurp(t->path, &n0);
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_null(db);
    assert_int_equal(err.status, DB_E_NOTDB);
    printf("message: %s\n", err.msg);
    assert_non_null(strstr(err.msg, t->path));
    assert_non_null(strstr(err.msg, "not a SQLite database"));
    char *after = slurp(t->path, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    char side[160];
    snprintf(side, sizeof side, "%s-wal", t->path);
    assert_false(exists(side));
    free(before);
    free(after);

    /* a SQLite file of someone else */
    sqlite3 *h;
    char other[160];
    snprintf(other, sizeof other, "%s/other.db", t->dir);
    assert_int_equal(sqlite3_open(other, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "CREATE TABLE x(a); INSERT INTO x VALUES(1)", 0, 0, 0),
                     SQLITE_OK);
    sqlite3_close(h);
    db = db_open(other, 0, &err);
    assert_null(db);
    assert_int_equal(err.status, DB_E_NOTDB);
    assert_non_null(strstr(err.msg, "not a moescope database"));

    /* a missing file without DB_OPEN_CREATE */
    char missing[160];
    snprintf(missing, sizeof missing, "%s/missing.db", t->dir);
    db = db_open(missing, 0, &err);
    assert_null(db);
    assert_int_equal(err.status, DB_E_IO);
    assert_false(exists(missing));
}

static void test_db_open_newer_version_refused_untouched(void **state)
{
    Tmp *t = *state;
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    assert_int_equal(sqlite3_exec(db->h, "PRAGMA user_version = 99", 0, 0, 0), SQLITE_OK);
    db_close(db);
    size_t n0, n1;
    char *before = slurp(t->path, &n0);
    db = db_open(t->path, 0, &err);
    assert_null(db);
    assert_int_equal(err.status, DB_E_VERSION);
    printf("message: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "99"));
    assert_non_null(strstr(err.msg, "newer"));
    char *after = slurp(t->path, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before);
    free(after);
}

typedef struct {
    int n, ok;
} RouteAcc;

/* The two routes of the version-1 file. */
static int route_cb(void *u, int64_t run, const DbRoute *rt)
{
    RouteAcc *acc = u;
    (void)run;
    if (rt->pos == 0)
        acc->ok &= rt->k == 2 && rt->experts[0] == 3 && rt->experts[1] == 1 &&
                   rt->weights[0] == 0.75f && rt->weights[1] == 0.25f && rt->is_prompt;
    else
        acc->ok &= rt->experts[0] == 0 && rt->experts[1] == 2 && rt->weights[1] == 0.5f &&
                   isnan(rt->shared_gate);
    acc->n++;
    return 0;
}

/* A version-1 file (as the first release wrote it) with one complete run is
** migrated on open and reads back through the current API. */
static void test_db_migrate_v1_file_upgraded_data_kept(void **state)
{
    Tmp *t = *state;
    sqlite3 *h;
    DbErr err = { 0 };
    assert_int_equal(sqlite3_open(t->path, &h), SQLITE_OK);
    assert_int_equal(db_schema_migrate(h, 0, 1, &err), DB_OK);
    const char *rows =
        "INSERT INTO models VALUES(1, 'm.gguf', 'm', 'olmoe', 10, '00000000000000aa', 2, 4, 2);"
        "INSERT INTO runs(id, model, tag, prompt, status, n_prompt, n_gen, created_at)"
        " VALUES(1, 1, 'old', 'hello', 'complete', 1, 1, '2025-01-01T00:00:00Z');"
        "INSERT INTO tokens VALUES(1, 0, 5, 'he', 1, NULL, NULL, NULL);"
        "INSERT INTO tokens VALUES(1, 1, 6, 'llo', 0, -0.5, NULL, NULL);"
        "INSERT INTO routes VALUES(1, 0, 0, 1, 2, x'0301', x'0000403f0000803e', NULL, NULL);"
        "INSERT INTO routes VALUES(1, 1, 0, 0, 2, x'0002', x'0000003f0000003f', NULL, NULL);"
        "INSERT INTO load VALUES(1, 0, 3, 1, 0.75, 1, 0.75);";
    assert_int_equal(sqlite3_exec(h, rows, 0, 0, 0), SQLITE_OK);
    sqlite3_close(h);

    Db *db = db_open(t->path, 0, &err);
    if (!db)
        fprintf(stderr, "%s\n", err.msg);
    assert_non_null(db);
    int v = -1;
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db->h, "PRAGMA user_version", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    assert_int_equal(v, DB_SCHEMA_VERSION);

    DbRun r;
    assert_int_equal(db_run_get(db, 1, &r, &err), DB_OK);
    assert_int_equal(r.status, DB_RUN_COMPLETE);
    assert_string_equal(r.iv_json, "[]");
    assert_string_equal(r.prompt, "hello");
    db_run_free(&r);
    RouteAcc acc = { 0, 1 };
    assert_int_equal(db_routes(db, 1, 0, -1, -1, route_cb, &acc, &err), DB_OK);
    assert_int_equal(acc.n, 2);
    assert_true(acc.ok);
    /* the decoding view works on migrated rows */
    sqlite3_prepare_v2(db->h, "SELECT group_concat(expert, ' ') FROM (SELECT expert FROM"
                       " route_experts WHERE run = 1 ORDER BY pos, rank)", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "3 1 0 2");
    sqlite3_finalize(st);
    db_close(db);

    /* and it is now writable with the current logger */
    db = db_open(t->path, 0, &err);
    assert_non_null(db);
    int64_t m = add_model(db, NL, NE, K, 77);
    log_run(db, m, "new", 1, 5, 1, 0, 0);
    db_close(db);
}

/* A version-2 file as the previous release wrote it (through the migrations
** of that release): an engine run and an imported run (flag 4).  Opening
** migrates it to the current version: runs.source exists, NULL for the
** engine run, "moetrace" for the imported one; the data reads back; a run
** logged afterwards stores its source.  A newer file is refused (tested
** above with version 99; here with the next version). */
static void test_db_migrate_v2_file_source_added(void **state)
{
    Tmp *t = *state;
    sqlite3 *h;
    DbErr err = { 0 };
    assert_int_equal(sqlite3_open(t->path, &h), SQLITE_OK);
    assert_int_equal(db_schema_migrate(h, 0, 2, &err), DB_OK);
    const char *rows =
        "INSERT INTO models VALUES(1, 'm.gguf', 'm', 'olmoe', 10, '00000000000000aa', 2, 4, 2);"
        "INSERT INTO runs(id, model, tag, prompt, status, n_prompt, n_gen, created_at, flags)"
        " VALUES(1, 1, 'old', 'hello', 'complete', 1, 0, '2025-01-01T00:00:00Z', 0);"
        "INSERT INTO runs(id, model, tag, prompt, status, n_prompt, n_gen, created_at, flags)"
        " VALUES(2, 1, 'imp', '', 'complete', 1, 0, '2025-01-01T00:00:00Z', 12);"
        "INSERT INTO tokens VALUES(1, 0, 5, 'he', 1, NULL, NULL, NULL);"
        "INSERT INTO routes VALUES(1, 0, 0, 1, 2, x'0301', x'0000403f0000803e', NULL, NULL,"
        " NULL);";
    assert_int_equal(sqlite3_exec(h, rows, 0, 0, 0), SQLITE_OK);
    sqlite3_close(h);

    Db *db = db_open(t->path, 0, &err);
    if (!db)
        fail_msg("%s", err.msg);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db->h, "PRAGMA user_version", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), DB_SCHEMA_VERSION);
    sqlite3_finalize(st);
    DbRun r;
    assert_int_equal(db_run_get(db, 1, &r, &err), DB_OK);
    assert_null(r.source);
    assert_false(r.flags & DB_RUN_IMPORTED);
    assert_string_equal(r.prompt, "hello");
    db_run_free(&r);
    assert_int_equal(db_run_get(db, 2, &r, &err), DB_OK);
    assert_non_null(r.source);
    assert_string_equal(r.source, "moetrace");
    assert_true(r.flags & DB_RUN_IMPORTED);
    assert_true(r.flags & DB_RUN_NO_WEIGHTS);
    db_run_free(&r);
    RouteAcc acc = { 0, 1 };
    assert_int_equal(db_routes(db, 1, 0, -1, -1, route_cb, &acc, &err), DB_OK);
    assert_int_equal(acc.n, 1);
    assert_true(acc.ok);

    /* a new run records its source */
    DbRunInfo ri = { 0 };
    ri.model = 1;
    ri.source = "sglang:/data/trace";
    ri.flags = DB_RUN_IMPORTED;
    DbLog *lg = db_log_begin(db, &ri, 0, &err);
    assert_non_null(lg);
    int64_t id = db_log_run_id(lg);
    assert_int_equal(db_log_finish(lg, DB_RUN_COMPLETE, NULL, &err), DB_OK);
    assert_int_equal(db_run_get(db, id, &r, &err), DB_OK);
    assert_string_equal(r.source, "sglang:/data/trace");
    db_run_free(&r);

    /* one version beyond this program: refused, named */
    char sql[64], want[32];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", DB_SCHEMA_VERSION + 1);
    snprintf(want, sizeof want, "version %d", DB_SCHEMA_VERSION + 1);
    assert_int_equal(sqlite3_exec(db->h, sql, 0, 0, 0), SQLITE_OK);
    db_close(db);
    db = db_open(t->path, 0, &err);
    assert_null(db);
    assert_int_equal(err.status, DB_E_VERSION);
    assert_non_null(strstr(err.msg, want));
}

/* A version-3 file (before count-only runs): an imported run with tokens.
** Opening migrates it: runs.n_counted exists and is NULL (0 in DbRun) for
** it, the run and its load read back unchanged; a count-only run logged
** afterwards through a bulk log keeps its n_counted and its load rows, and
** db_load reports it (n_counts_only, n_counted). */
static void test_db_migrate_v3_file_n_counted_added(void **state)
{
    Tmp *t = *state;
    sqlite3 *h;
    DbErr err = { 0 };
    assert_int_equal(sqlite3_open(t->path, &h), SQLITE_OK);
    assert_int_equal(db_schema_migrate(h, 0, 3, &err), DB_OK);
    const char *rows =
        "INSERT INTO models VALUES(1, '', 'm', 'olmoe', 0, '00000000000000bb', 2, 4, 2);"
        "INSERT INTO runs(id, model, tag, prompt, status, n_prompt, n_gen, created_at, flags,"
        " source) VALUES(1, 1, 'imp', '', 'complete', 1, 0, '2025-01-01T00:00:00Z', 12,"
        " 'vllm:/t');"
        "INSERT INTO load VALUES(1, 1, 3, 1, 0.5, 1, 0.5);"
        "INSERT INTO load VALUES(1, 1, 0, 1, 0.5, 1, 0.5);";
    assert_int_equal(sqlite3_exec(h, rows, 0, 0, 0), SQLITE_OK);
    sqlite3_close(h);

    Db *db = db_open(t->path, 0, &err);
    if (!db)
        fail_msg("%s", err.msg);
    DbRun r;
    assert_int_equal(db_run_get(db, 1, &r, &err), DB_OK);
    assert_int_equal(r.n_counted, 0);
    assert_false(r.flags & DB_RUN_COUNTS_ONLY);
    assert_string_equal(r.source, "vllm:/t");
    db_run_free(&r);

    DbLog *lg = db_log_bulk_begin(db, 1, 0, &err);
    assert_non_null(lg);
    DbRunInfo ri = { .model = 1, .tag = "cnt", .source = "sglang:/d",
                     .flags = DB_RUN_IMPORTED | DB_RUN_NO_WEIGHTS | DB_RUN_COUNTS_ONLY,
                     .n_counted = 5 };
    assert_int_equal(db_log_bulk_run(lg, &ri), DB_OK);
    int64_t n[4] = { 4, 0, 3, 3 };
    double w[4] = { 2, 0, 1.5, 1.5 };
    assert_int_equal(db_log_bulk_load(lg, 1, n, w), DB_OK);
    int64_t bad[4] = { 1, -1, 0, 0 };
    assert_int_equal(db_log_bulk_load(lg, 1, bad, w), DB_E_ARG);
    assert_int_equal(db_log_bulk_load(lg, 2, n, w), DB_E_ARG);     /* layer outside */
    assert_int_equal(db_log_bulk_end(lg, DB_RUN_COMPLETE, NULL), DB_OK);
    int64_t first = 0, last = 0;
    assert_int_equal(db_log_bulk_finish(lg, &first, &last, &err), DB_OK);
    assert_int_equal(first, 2);
    assert_int_equal(db_run_get(db, 2, &r, &err), DB_OK);
    assert_int_equal(r.n_counted, 5);
    assert_true(r.flags & DB_RUN_COUNTS_ONLY);
    assert_int_equal(r.n_prompt + r.n_gen, 0);
    db_run_free(&r);
    DbLoad ld;
    DbSel sel = { .tag = "cnt" };
    assert_int_equal(db_load(db, &sel, &ld, &err), DB_OK);
    assert_int_equal(ld.n_runs, 1);
    assert_int_equal(ld.n_counts_only, 1);
    assert_int_equal(ld.n_counted, 5);
    assert_int_equal(ld.count[1 * 4 + 0], 4);
    assert_int_equal(ld.count[1 * 4 + 2], 3);
    assert_int_equal(ld.count_prompt[1 * 4 + 0], 0);
    assert_true(ld.weight[1 * 4 + 3] == 1.5);
    db_load_free(&ld);
    /* a count-only run without its flag cannot take counts */
    lg = db_log_bulk_begin(db, 1, 0, &err);
    DbRunInfo plain = { .model = 1, .tag = "x", .flags = DB_RUN_IMPORTED };
    assert_int_equal(db_log_bulk_run(lg, &plain), DB_OK);
    assert_int_equal(db_log_bulk_load(lg, 1, n, w), DB_E_ARG);
    assert_int_equal(db_log_bulk_finish(lg, NULL, NULL, &err), DB_OK);
    db_close(db);
}

/* A read-only directory: creating a database there fails with a message
** naming the file; an existing database there cannot be opened for writing
** (WAL needs its side files) and is left intact.  As root, the attempt runs
** in a child that drops to an unprivileged user. */
static void test_db_open_readonly_dir_clear_error_data_intact(void **state)
{
    Tmp *t = *state;
    char sub[160], newdb[200], olddb[200];
    snprintf(sub, sizeof sub, "%s/ro", t->dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(newdb, sizeof newdb, "%s/new.db", sub);
    snprintf(olddb, sizeof olddb, "%s/old.db", sub);
    DbErr err = { 0 };
    Db *db = db_open(olddb, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    int64_t m = add_model(db, NL, NE, K, 45);
    int64_t run = log_run(db, m, "keep", 11, 30, 3, 0, 0);
    db_close(db);
    assert_int_equal(chmod(t->dir, 0755), 0);
    assert_int_equal(chmod(sub, 0555), 0);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        DbErr e = { 0 };
        Db *d = db_open(newdb, DB_OPEN_CREATE, &e);
        if (d || (e.status != DB_E_READONLY && e.status != DB_E_IO) || !strstr(e.msg, newdb))
            _exit(4);
        fprintf(stderr, "create in read-only dir: %s\n", e.msg);
        d = db_open(olddb, 0, &e);
        if (d)
            _exit(5);
        if (!strstr(e.msg, olddb))
            _exit(6);
        fprintf(stderr, "open in read-only dir: %s\n", e.msg);
        _exit(0);
    }
    int ws = 0;
    waitpid(pid, &ws, 0);
    assert_true(WIFEXITED(ws));
    if (WEXITSTATUS(ws) == 3)
        skip();
    assert_int_equal(WEXITSTATUS(ws), 0);
    assert_false(exists(newdb));
    assert_int_equal(chmod(sub, 0755), 0);
    db = db_open(olddb, 0, &err);
    assert_non_null(db);
    DbRun r;
    assert_int_equal(db_run_get(db, run, &r, &err), DB_OK);
    assert_int_equal(r.status, DB_RUN_COMPLETE);
    assert_int_equal(r.n_gen, 27);
    db_run_free(&r);
    db_close(db);
}

/* ---- logging edge cases ------------------------------------------------- */

static void test_db_log_bad_records_rejected_run_still_finishes(void **state)
{
    Tmp *t = *state;
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    int64_t m = add_model(db, NL, NE, K, 46);
    DbRunInfo ri = { .model = m, .iv_json = "{not json" };
    assert_null(db_log_begin(db, &ri, 0, &err));
    assert_int_equal(err.status, DB_E_ARG);
    assert_non_null(strstr(err.msg, "iv_json"));
    ri.iv_json = NULL;
    ri.model = 12345;
    assert_null(db_log_begin(db, &ri, 0, &err));
    assert_int_equal(err.status, DB_E_NOTFOUND);
    ri.model = m;
    DbLog *lg = db_log_begin(db, &ri, 0, &err);
    assert_non_null(lg);
    int32_t ex[2] = { 1, NE };
    float w[2] = { 0.5f, 0.5f };
    DbRoute r = { .pos = 0, .layer = 0, .k = 2, .experts = ex, .weights = w,
                  .shared_gate = NAN };
    assert_int_equal(db_log_route(lg, &r), DB_E_ARG);       /* expert out of range */
    ex[1] = 2;
    r.layer = NL;
    assert_int_equal(db_log_route(lg, &r), DB_E_ARG);       /* layer out of range */
    r.layer = 0;
    r.k = NE + 1;
    assert_int_equal(db_log_route(lg, &r), DB_E_ARG);       /* k out of range */
    r.k = 2;
    assert_int_equal(db_log_route(lg, &r), DB_OK);
    DbToken tk = { .pos = 0, .n_top = DB_TOP_MAX + 1 };
    assert_int_equal(db_log_token(lg, &tk), DB_E_ARG);
    int64_t run = db_log_run_id(lg);
    DbRunStats st = { .error = "sampler failed" };
    assert_int_equal(db_log_finish(lg, DB_RUN_FAILED, &st, &err), DB_OK);
    DbRun rr;
    assert_int_equal(db_run_get(db, run, &rr, &err), DB_OK);
    assert_int_equal(rr.status, DB_RUN_FAILED);
    assert_string_equal(rr.error, "sampler failed");
    db_run_free(&rr);
    /* failed runs do not count in the load */
    DbLoad ld;
    assert_int_equal(db_load(db, NULL, &ld, &err), DB_OK);
    assert_int_equal(ld.n_runs, 0);
    db_load_free(&ld);
    db_close(db);
}

static int get_first(void *u, const DbRun *x)
{
    DbRun *r = u;
    r->id = x->id;
    r->status = x->status;
    return 1;
}

/* A writer that dies leaves its run 'running'; the next writable open marks
** it interrupted.  A run of a live writer (this process) is left alone. */
static void test_db_dead_writer_run_marked_interrupted_on_open(void **state)
{
    Tmp *t = *state;
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    int64_t m = add_model(db, NL, NE, K, 47);
    db_close(db);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        DbErr e;
        Db *d = db_open(t->path, 0, &e);
        DbRunInfo ri = { .model = m, .tag = "dead" };
        DbLog *lg = d ? db_log_begin(d, &ri, 16, &e) : NULL;
        if (!lg)
            _exit(2);
        for (int p = 0; p < 100; p++) {
            DbToken tk = { .pos = p, .token = p, .piece = "x", .piece_len = 1,
                           .logprob = -1 };
            db_log_token(lg, &tk);
        }
        db_log_flush(lg, &e);
        _exit(0);                /* dies without finishing */
    }
    int ws;
    waitpid(pid, &ws, 0);
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);

    db = db_open(t->path, DB_OPEN_READONLY, &err);
    assert_non_null(db);
    DbSel sel = { .tag = "dead" };
    DbRun r;
    r.id = 0;
    assert_int_equal(db_runs(db, &sel, get_first, &r, &err), DB_OK);
    assert_int_equal(r.status, DB_RUN_RUNNING);     /* read-only opens change nothing */
    db_close(db);

    db = db_open(t->path, 0, &err);
    assert_non_null(db);
    DbRun got;
    assert_int_equal(db_run_get(db, r.id, &got, &err), DB_OK);
    assert_int_equal(got.status, DB_RUN_INTERRUPTED);
    assert_int_equal(got.n_prompt + got.n_gen, 100);
    db_run_free(&got);

    /* a live writer in this process: another open leaves its run alone */
    DbRunInfo ri = { .model = m, .tag = "live" };
    DbLog *lg = db_log_begin(db, &ri, 0, &err);
    assert_non_null(lg);
    Db *db2 = db_open(t->path, 0, &err);
    assert_non_null(db2);
    assert_int_equal(db_run_get(db2, db_log_run_id(lg), &got, &err), DB_OK);
    assert_int_equal(got.status, DB_RUN_RUNNING);
    db_run_free(&got);
    db_close(db2);
    assert_int_equal(db_log_finish(lg, DB_RUN_COMPLETE, NULL, &err), DB_OK);
    db_close(db);
}

static void test_db_model_register_same_hash_same_id(void **state)
{
    Tmp *t = *state;
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    /* the hash of a file: stable, changes with content */
    char mp[200];
    snprintf(mp, sizeof mp, "%s/model.bin", t->dir);
    FILE *f = fopen(mp, "wb");
    for (int i = 0; i < 100000; i++)
        fputc(i & 0xff, f);
    fclose(f);
    uint64_t h1, h2, sz;
    assert_int_equal(db_file_hash(mp, &h1, &sz, &err), DB_OK);
    assert_int_equal(sz, 100000);
    assert_int_equal(db_file_hash(mp, &h2, &sz, &err), DB_OK);
    assert_true(h1 == h2);
    f = fopen(mp, "r+b");
    fseek(f, 500, SEEK_SET);
    fputc(0xAA, f);
    fclose(f);
    assert_int_equal(db_file_hash(mp, &h2, &sz, &err), DB_OK);
    assert_true(h1 != h2);
    snprintf(mp, sizeof mp, "%s/none.bin", t->dir);
    assert_int_equal(db_file_hash(mp, &h2, &sz, &err), DB_E_IO);
    assert_non_null(strstr(err.msg, mp));

    DbModel a = { 0, "a.gguf", "A", "olmoe", 10, h1, 6, 16, 2 };
    DbModel b = a;
    b.path = "moved/a.gguf";
    assert_int_equal(db_model_register(db, &a, &err), DB_OK);
    assert_int_equal(db_model_register(db, &b, &err), DB_OK);
    assert_int_equal(a.id, b.id);
    DbModel c = a;
    c.n_expert = 8;
    assert_int_equal(db_model_register(db, &c, &err), DB_E_ARG);
    c.k = 0;
    assert_int_equal(db_model_register(db, &c, &err), DB_E_ARG);
    db_close(db);
}

static int count_tag(void *u, const char *tag, int n)
{
    int *acc = u;
    if (!strcmp(tag, "a"))
        acc[0] = n;
    if (!strcmp(tag, "b"))
        acc[1] = n;
    acc[2]++;
    return 0;
}

static int count_run(void *u, const DbRun *r)
{
    (void)r;
    (*(int *)u)++;
    return 0;
}

static void test_db_list_runs_and_tags_filtered(void **state)
{
    Tmp *t = *state;
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    int64_t m1 = add_model(db, NL, NE, K, 48);
    int64_t m2 = add_model(db, NL, NE, K, 49);
    log_run(db, m1, "a", 1, 3, 1, 0, 0);
    log_run(db, m1, "b", 2, 3, 1, 0, 0);
    log_run(db, m2, "a", 3, 3, 1, 0, 0);
    log_run(db, m2, NULL, 4, 3, 1, 0, 0);
    int acc[3] = { 0, 0, 0 };
    assert_int_equal(db_tags(db, count_tag, acc, &err), DB_OK);
    assert_int_equal(acc[0], 2);
    assert_int_equal(acc[1], 1);
    assert_int_equal(acc[2], 2);
    int n = 0;
    DbSel s1 = { .tag = "a" };
    assert_int_equal(db_runs(db, &s1, count_run, &n, &err), DB_OK);
    assert_int_equal(n, 2);
    n = 0;
    DbSel s2 = { .model = m2 };
    assert_int_equal(db_runs(db, &s2, count_run, &n, &err), DB_OK);
    assert_int_equal(n, 2);
    n = 0;
    DbSel s3 = { .tag = "a", .model = m2 };
    assert_int_equal(db_runs(db, &s3, count_run, &n, &err), DB_OK);
    assert_int_equal(n, 1);
    n = 0;
    assert_int_equal(db_runs(db, NULL, count_run, &n, &err), DB_OK);
    assert_int_equal(n, 4);

    /* the per-tag load follows deletes and retags made in plain SQL */
    DbLoad ld;
    assert_int_equal(db_load(db, &s1, &ld, &err), DB_OK);
    assert_int_equal(ld.n_runs, 2);
    int64_t before = 0;
    for (int i = 0; i < NL * NE; i++)
        before += ld.count[i];
    assert_int_equal(before, 2 * 3 * NL * K);
    db_load_free(&ld);
    assert_int_equal(sqlite3_exec(db->h, "UPDATE runs SET tag = 'b' WHERE id = 1", 0, 0, 0),
                     SQLITE_OK);
    assert_int_equal(db_load(db, &s1, &ld, &err), DB_OK);
    int64_t after = 0;
    for (int i = 0; i < NL * NE; i++)
        after += ld.count[i];
    assert_int_equal(after, 3 * NL * K);
    db_load_free(&ld);
    DbSel sb = { .tag = "b" };
    assert_int_equal(db_load(db, &sb, &ld, &err), DB_OK);
    after = 0;
    for (int i = 0; i < NL * NE; i++)
        after += ld.count[i];
    assert_int_equal(after, 2 * 3 * NL * K);
    db_load_free(&ld);
    assert_int_equal(sqlite3_exec(db->h, "DELETE FROM runs WHERE tag = 'b'", 0, 0, 0),
                     SQLITE_OK);
    assert_int_equal(db_load(db, &sb, &ld, &err), DB_OK);
    assert_int_equal(ld.n_runs, 0);
    for (int i = 0; i < ld.n_layer * ld.n_expert; i++)
        assert_int_equal(ld.count[i], 0);
    db_load_free(&ld);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db->h, "SELECT (SELECT count(*) FROM tag_load WHERE tag = 'b') +"
                       " (SELECT count(*) FROM routes WHERE run IN (1, 2)) +"
                       " (SELECT count(*) FROM tokens WHERE run IN (1, 2)) +"
                       " (SELECT count(*) FROM load WHERE run IN (1, 2))", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 0);
    sqlite3_finalize(st);
    db_close(db);
}

/* More than 256 experts: ids stored as two bytes, read back and decoded by
** the route_experts view alike. */
static int wide_cb(void *u, int64_t run, const DbRoute *r)
{
    int *ok = u;
    (void)run;
    *ok = r->k == 3 && r->experts[0] == 299 && r->experts[1] == 256 && r->experts[2] == 1 &&
          r->weights[2] == 0.125f;
    return 0;
}

static void test_db_wide_expert_ids_roundtrip(void **state)
{
    Tmp *t = *state;
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    int64_t m = add_model(db, 2, 300, 3, 51);
    DbRunInfo ri = { .model = m };
    DbLog *lg = db_log_begin(db, &ri, 0, &err);
    assert_non_null(lg);
    int32_t ex[3] = { 299, 256, 1 };
    float w[3] = { 0.5f, 0.375f, 0.125f };
    DbRoute r = { .pos = 0, .layer = 1, .k = 3, .experts = ex, .weights = w,
                  .shared_gate = NAN };
    assert_int_equal(db_log_route(lg, &r), DB_OK);
    int64_t run = db_log_run_id(lg);
    assert_int_equal(db_log_finish(lg, DB_RUN_COMPLETE, NULL, &err), DB_OK);
    int ok = 0;
    assert_int_equal(db_routes(db, run, 0, 0, -1, wide_cb, &ok, &err), DB_OK);
    assert_true(ok);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db->h, "SELECT group_concat(expert, ' '), length(experts)"
                       " FROM (SELECT e.expert, x.experts FROM route_experts e JOIN routes x"
                       " USING (run, pos, layer) ORDER BY rank)", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "299 256 1");
    assert_int_equal(sqlite3_column_int(st, 1), 6);
    sqlite3_finalize(st);
    DbLoad ld;
    assert_int_equal(db_load(db, NULL, &ld, &err), DB_OK);
    assert_int_equal(ld.count[1 * 300 + 299], 1);
    assert_int_equal(ld.count[1 * 300 + 256], 1);
    db_load_free(&ld);
    db_close(db);
}

/* ---- moescope export ---------------------------------------------------- */

static int run_export(char *a0, ...)
{
    char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, a0);
    for (char *a = a0; a && argc < 15; a = va_arg(ap, char *))
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    return cli_cmd_export(argc, argv);
}

static void test_db_cmd_export_writes_file_and_reports_errors(void **state)
{
    Tmp *t = *state;
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    int64_t m = add_model(db, NL, NE, K, 50);
    log_run(db, m, "cli", 1, 12, 2, 0, 0);
    db_close(db);
    char out[200], tmp[210], missing[200];
    snprintf(out, sizeof out, "%s/out.jsonl", t->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    snprintf(missing, sizeof missing, "%s/none.db", t->dir);

    assert_int_equal(run_export("export", "--db", t->path, "--tag", "cli", "--format", "jsonl",
                                "--what", "tokens", "-o", out, NULL), 0);
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    int lines = 0;
    char buf[512];
    while (fgets(buf, sizeof buf, f))
        lines++;
    fclose(f);
    assert_int_equal(lines, 12);
    assert_false(exists(tmp));
    assert_int_equal(run_export("export", "--db", t->path, "--run", "1", "--format", "csv",
                                "--what", "load", "-o", out, NULL), 0);
    /* usage errors: 2 */
    assert_int_equal(run_export("export", "--db", t->path, "--format", "csv", NULL), 2);
    assert_int_equal(run_export("export", "--db", t->path, "--all", "--run", "1",
                                "--format", "csv", NULL), 2);
    assert_int_equal(run_export("export", "--db", t->path, "--all", "--format", "xml", NULL),
                     2);
    assert_int_equal(run_export("export", "--db", t->path, "--all", "--format", "csv",
                                "--what", "experts", NULL), 2);
    assert_int_equal(run_export("export", "--db", t->path, "--run", "x1", "--format", "csv",
                                NULL), 2);
    /* run-time errors: 1, and no output file left behind */
    assert_int_equal(run_export("export", "--db", missing, "--all", "--format", "csv", NULL),
                     1);
    assert_false(exists(missing));
    char out2[200];
    snprintf(out2, sizeof out2, "%s/out2.csv", t->dir);
    assert_int_equal(run_export("export", "--db", t->path, "--run", "99", "--format", "csv",
                                "-o", out2, NULL), 1);
    assert_false(exists(out2));
    snprintf(out2, sizeof out2, "%s/no/such/dir.csv", t->dir);
    assert_int_equal(run_export("export", "--db", t->path, "--all", "--format", "csv",
                                "-o", out2, NULL), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_db_roundtrip_tokens_routes_load_equal_written,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_export_jsonl_parses_back_equal,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_export_csv_quoted_one_line_per_row,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_open_not_a_database_refused_untouched,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_open_newer_version_refused_untouched,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_migrate_v1_file_upgraded_data_kept,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_migrate_v3_file_n_counted_added, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_migrate_v2_file_source_added, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_open_readonly_dir_clear_error_data_intact,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_log_bad_records_rejected_run_still_finishes,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_dead_writer_run_marked_interrupted_on_open,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_model_register_same_hash_same_id,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_list_runs_and_tags_filtered,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_wide_expert_ids_roundtrip,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_cmd_export_writes_file_and_reports_errors,
                                        tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
