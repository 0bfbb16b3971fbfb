/*
** db/import_export.c — our own runs written as a moetrace v1 directory
** (docs/moetrace.md), the format db/import.c reads, so that moescope runs
** can be analysed by the same scripts as traces from vLLM or SGLang, and so
** that export → import is a round trip that tests both sides.
**
** The runs are written one after another: a run's tokens and routes are
** gathered in memory (one run is small next to a whole trace), then
** appended to index.npy / experts.npy / weights.npy.  The NPY headers are
** written first with a row count of 0 and rewritten at the end with the
** real count; their fixed size (DB_NPY_HDR) keeps the data in place.  Every
** file goes into DIR.tmp, renamed to DIR only when all of it is written.
**
** A first pass over the routes finds the layers that have routes (the
** trace's moe_layers) and the largest k (a top-k override may choose more
** experts than the model's k).  Router logits and selection scores are not
** exported.
*/
#include "db/db_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    int64_t id;
    int64_t model;
    int flags;
    int64_t n_counted;      /* count-only runs */
    char *prompt;
} ExRun;

typedef struct {
    ExRun *a;
    int n, cap;
    int64_t model;
    int n_layer, n_expert, k;
    char *model_name, *arch;
    char engine[32];        /* meta "source": the engine of runs.source when
                               every run has the same one, else "moescope" */
    int engine_mixed;
    int mixed;              /* runs of more than one model */
    int n_skipped;          /* not complete */
} RunList;

static int collect_run(void *user, const DbRun *r)
{
    RunList *l = user;
    if (r->status != DB_RUN_COMPLETE) {
        l->n_skipped++;
        return 0;
    }
    if (l->n && r->model != l->model) {
        l->mixed = 1;
        return 1;
    }
    if (!l->n) {
        l->model = r->model;
        l->n_layer = r->n_layer;
        l->n_expert = r->n_expert;
        l->k = r->k;
        l->model_name = strdup(r->model_name);
        l->arch = strdup(r->arch);
        if (!l->model_name || !l->arch)
            return 1;
    }
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        ExRun *a = realloc(l->a, (size_t)cap * sizeof *a);
        if (!a)
            return 1;
        l->a = a;
        l->cap = cap;
    }
    /* the engine part of runs.source ("vllm" of "vllm:/data/t"); our own
    ** runs (source NULL) count as "moescope" */
    char eng[32] = "moescope";
    if (r->source) {
        size_t n = strcspn(r->source, ":");
        if (n > 0 && n < sizeof eng) {
            memcpy(eng, r->source, n);
            eng[n] = 0;
        }
    }
    if (!l->n)
        snprintf(l->engine, sizeof l->engine, "%s", eng);
    else if (strcmp(l->engine, eng) != 0)
        l->engine_mixed = 1;
    ExRun *e = &l->a[l->n];
    e->id = r->id;
    e->model = r->model;
    e->flags = r->flags;
    e->n_counted = r->n_counted;
    e->prompt = strdup(r->prompt);
    if (!e->prompt)
        return 1;
    l->n++;
    return 0;
}

/* ---- pass 1: layers and k ------------------------------------------------- */

typedef struct {
    uint8_t *layer_used;    /* n_layer */
    int n_layer;
    int max_k;
    int bad_layer;
} Shape;

static int shape_route(void *user, int64_t run, const DbRoute *r)
{
    Shape *s = user;
    (void)run;
    if (r->layer < 0 || r->layer >= s->n_layer) {
        s->bad_layer = 1;
        return 1;
    }
    s->layer_used[r->layer] = 1;
    if (r->k > s->max_k)
        s->max_k = r->k;
    return 0;
}

/* ---- pass 2: one run at a time ------------------------------------------------ */

typedef struct {
    int32_t *pos, *tok;
    int n, cap;
    int prompt_len, bad_prompt, seen_gen;
    /* rows of this run, n × n_moe × K */
    int16_t *ex;
    float *w;
    int *slot_of_layer;     /* n_layer → index in moe_layers, -1 */
    int n_moe, K;
    int bad_pos;
} RunBuf;

static int buf_token(void *user, int64_t run, const DbToken *t)
{
    RunBuf *b = user;
    (void)run;
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 1024;
        int32_t *p = realloc(b->pos, (size_t)cap * sizeof *p);
        if (!p)
            return 1;
        b->pos = p;
        int32_t *q = realloc(b->tok, (size_t)cap * sizeof *q);
        if (!q)
            return 1;
        b->tok = q;
        b->cap = cap;
    }
    b->pos[b->n] = t->pos;
    b->tok[b->n] = t->token;
    b->n++;
    if (t->is_prompt && b->seen_gen)
        b->bad_prompt = 1;
    if (!t->is_prompt)
        b->seen_gen = 1;
    else if (t->pos + 1 > b->prompt_len)
        b->prompt_len = t->pos + 1;
    return 0;
}

static int buf_route(void *user, int64_t run, const DbRoute *r)
{
    RunBuf *b = user;
    (void)run;
    /* tokens are in position order: binary search */
    int lo = 0, hi = b->n - 1, at = -1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (b->pos[mid] == r->pos) {
            at = mid;
            break;
        }
        if (b->pos[mid] < r->pos)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    int j = r->layer >= 0 ? b->slot_of_layer[r->layer] : -1;
    if (at < 0 || j < 0 || r->k > b->K) {
        b->bad_pos = r->pos + 1;
        return 1;
    }
    size_t base = ((size_t)at * (size_t)b->n_moe + (size_t)j) * (size_t)b->K;
    for (int i = 0; i < r->k; i++) {
        b->ex[base + (size_t)i] = (int16_t)r->experts[i];
        b->w[base + (size_t)i] = r->weights[i];
    }
    return 0;
}

static DbStatus put(FILE *f, const void *p, size_t n, const char *name, DbErr *err)
{
    if (n && fwrite(p, 1, n, f) != n)
        return db_err_set(err, DB_E_IO, "writing '%s': %s", name, strerror(errno));
    return DB_OK;
}

/* Little-endian int64 / int16 / float32 rows. */
static DbStatus put_i64(FILE *f, const int64_t *v, int n, const char *name, DbErr *err)
{
    uint8_t b[24];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 8; j++)
            b[8 * i + j] = (uint8_t)((uint64_t)v[i] >> (8 * j));
    return put(f, b, (size_t)n * 8, name, err);
}

static DbStatus put_i16s(FILE *f, const int16_t *v, size_t n, const char *name, DbErr *err)
{
    if (db_host_le())
        return put(f, v, n * 2, name, err);
    for (size_t i = 0; i < n; i++) {
        uint8_t b[2] = { (uint8_t)v[i], (uint8_t)((uint16_t)v[i] >> 8) };
        DbStatus s = put(f, b, 2, name, err);
        if (s != DB_OK)
            return s;
    }
    return DB_OK;
}

static DbStatus put_f32s(FILE *f, const float *v, size_t n, const char *name, DbErr *err)
{
    uint8_t b[4 * 256];
    for (size_t i = 0; i < n; i += 256) {
        int m = n - i < 256 ? (int)(n - i) : 256;
        db_put_f32(b, v + i, m);
        DbStatus s = put(f, b, (size_t)m * 4, name, err);
        if (s != DB_OK)
            return s;
    }
    return DB_OK;
}

typedef struct {
    FILE *f;
    char path[4200];
} OutFile;

static DbStatus out_open(OutFile *o, const char *dir, const char *name, DbErr *err)
{
    snprintf(o->path, sizeof o->path, "%s/%s", dir, name);
    o->f = fopen(o->path, "wb");
    if (!o->f)
        return db_err_set(err, DB_E_IO, "cannot create '%s': %s", o->path, strerror(errno));
    return DB_OK;
}

static DbStatus out_header(OutFile *o, const char *descr, int ndim, const uint64_t *shape,
                           DbErr *err)
{
    if (fseek(o->f, 0, SEEK_SET) != 0)
        return db_err_set(err, DB_E_IO, "seeking in '%s': %s", o->path, strerror(errno));
    DbStatus s = db_npy_write_header(o->f, descr, ndim, shape, err);
    if (s != DB_OK && err) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n, " ('%s')", o->path);
    }
    return s;
}

static DbStatus out_close(OutFile *o, DbErr *err)
{
    if (!o->f)
        return DB_OK;
    int bad = fclose(o->f) != 0;
    o->f = NULL;
    if (bad)
        return db_err_set(err, DB_E_IO, "writing '%s': %s", o->path, strerror(errno));
    return DB_OK;
}

/* Remove dir.tmp and what it holds (only our file names). */
static void remove_tmp(const char *tmp)
{
    static const char *const names[] = { "meta.json", "index.npy", "experts.npy",
                                         "weights.npy", "counts.npy" };
    char p[4200];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", tmp, names[i]);
        unlink(p);
    }
    rmdir(tmp);
}

/* meta.json of the trace in dir; a count trace when tokens is not NULL
** (tokens[i] per run instead of prompt_len[i]). */
static DbStatus write_meta(const char *dir, const RunList *l, const int *moe, int n_moe,
                           const int *prompt_len, const int64_t *tokens, DbErr *err)
{
    json_t *m = json_object();
    json_t *ml = json_array(), *sq = json_array();
    int ok = m && ml && sq;
    ok = ok && !json_object_set_new(m, "format", json_string("moetrace"));
    ok = ok && !json_object_set_new(m, "version", json_integer(1));
    ok = ok && !json_object_set_new(m, "model", json_string(l->model_name));
    ok = ok && !json_object_set_new(m, "arch", json_string(l->arch));
    ok = ok && !json_object_set_new(m, "source", json_string(l->engine_mixed || !l->engine[0]
                                                                 ? "moescope" : l->engine));
    ok = ok && !json_object_set_new(m, "num_layers", json_integer(l->n_layer));
    ok = ok && !json_object_set_new(m, "num_experts", json_integer(l->n_expert));
    ok = ok && !json_object_set_new(m, "top_k", json_integer(l->k));
    ok = ok && !json_object_set_new(m, "id_space", json_string("logical"));
    if (tokens)
        ok = ok && !json_object_set_new(m, "kind", json_string("counts"));
    for (int i = 0; ok && i < n_moe; i++)
        ok = !json_array_append_new(ml, json_integer(moe[i]));
    for (int i = 0; ok && i < l->n; i++) {
        json_t *s = json_object();
        ok = s && !json_object_set_new(s, "id", json_integer(l->a[i].id)) &&
             !json_object_set_new(s, tokens ? "tokens" : "prompt_len",
                                  json_integer(tokens ? tokens[i] : prompt_len[i])) &&
             !json_object_set_new(s, "text", json_stringn_nocheck(l->a[i].prompt,
                                                                  strlen(l->a[i].prompt)));
        if (s)
            ok = ok && !json_array_append_new(sq, s);
    }
    if (ok) {
        ok = !json_object_set(m, "moe_layers", ml) && !json_object_set(m, "sequences", sq);
    }
    DbStatus s = DB_OK;
    char p[4200];
    snprintf(p, sizeof p, "%s/meta.json", dir);
    if (!ok)
        s = db_err_set(err, DB_E_NOMEM, "building '%s': out of memory", p);
    else if (json_dump_file(m, p, JSON_INDENT(1) | JSON_ENSURE_ASCII) != 0)
        s = db_err_set(err, DB_E_IO, "writing '%s': %s", p, strerror(errno));
    json_decref(ml);
    json_decref(sq);
    json_decref(m);
    return s;
}

/* Count-only runs as a count trace: counts.npy [runs, moe_layers,
** n_expert] int64 from their load rows, "tokens" = runs.n_counted; written
** under tmp (created here), which the caller renames or removes. */
static DbStatus export_counts(Db *db, const RunList *l, const char *tmp, DbErr *err)
{
    const size_t L = (size_t)l->n_layer, E = (size_t)l->n_expert;
    int64_t *c = calloc((size_t)l->n * L * E, sizeof *c);
    int64_t *tokens = calloc((size_t)l->n, sizeof *tokens);
    uint8_t *used = calloc(L ? L : 1, 1);
    int *moe = malloc((L ? L : 1) * sizeof *moe);
    DbStatus s = c && tokens && used && moe ? DB_OK
                                            : db_err_set(err, DB_E_NOMEM, "export moetrace: "
                                                         "out of memory");
    for (int i = 0; s == DB_OK && i < l->n; i++) {
        DbLoad ld;
        DbSel one = { .run = l->a[i].id };
        if ((s = db_load(db, &one, &ld, err)) != DB_OK)
            break;
        for (size_t la = 0; la < L && la < (size_t)ld.n_layer; la++)
            for (size_t e = 0; e < E && e < (size_t)ld.n_expert; e++) {
                int64_t n = ld.count[la * (size_t)ld.n_expert + e];
                c[((size_t)i * L + la) * E + e] = n;
                used[la] |= n != 0;
            }
        tokens[i] = l->a[i].n_counted;
        db_load_free(&ld);
    }
    int n_moe = 0;
    for (size_t la = 0; s == DB_OK && la < L; la++)
        if (used[la])
            moe[n_moe++] = (int)la;
    if (s == DB_OK && !n_moe)
        s = db_err_set(err, DB_E_NOTFOUND, "export moetrace: the runs selected have no counts");
    if (s == DB_OK && mkdir(tmp, 0777) != 0)
        s = db_err_set(err, DB_E_IO, "cannot create '%s': %s", tmp, strerror(errno));
    OutFile fc = { 0 };
    uint64_t sh[3] = { (uint64_t)l->n, (uint64_t)n_moe, (uint64_t)E };
    if (s == DB_OK)
        s = out_open(&fc, tmp, "counts.npy", err);
    if (s == DB_OK)
        s = out_header(&fc, "<i8", 3, sh, err);
    for (int i = 0; s == DB_OK && i < l->n; i++)
        for (int j = 0; s == DB_OK && j < n_moe; j++)
            for (size_t e = 0; s == DB_OK && e < E; e++)
                s = put_i64(fc.f, &c[((size_t)i * L + (size_t)moe[j]) * E + e], 1, fc.path, err);
    DbStatus c1 = out_close(&fc, s == DB_OK ? err : NULL);
    if (s == DB_OK)
        s = c1;
    if (s == DB_OK)
        s = write_meta(tmp, l, moe, n_moe, NULL, tokens, err);
    free(c);
    free(tokens);
    free(used);
    free(moe);
    return s;
}

DbStatus db_export_moetrace(Db *db, const DbSel *sel, const char *dir, DbErr *err)
{
    RunList l = { 0 };
    Shape sh = { 0 };
    RunBuf b = { 0 };
    OutFile fi = { 0 }, fe = { 0 }, fw = { 0 };
    int *moe = NULL, *plen = NULL;
    char tmp[4096];
    int made_tmp = 0;
    struct stat sb;

    if (strlen(dir) + 5 > sizeof tmp)
        return db_err_set(err, DB_E_ARG, "export moetrace: directory name of %zu bytes is "
                          "too long", strlen(dir));
    DbStatus s = db_runs(db, sel, collect_run, &l, err);
    if (s == DB_OK && l.mixed)
        s = db_err_set(err, DB_E_ARG, "export moetrace: the runs selected belong to more than "
                       "one model (a trace holds one model): select by --run or a tag of "
                       "one model");
    else if (s == DB_OK && !l.n)
        s = db_err_set(err, DB_E_NOTFOUND, "export moetrace: no complete runs selected "
                       "(%d not complete)", l.n_skipped);
    else if (s == DB_OK && (l.n_expert > 32767))
        s = db_err_set(err, DB_E_ARG, "export moetrace: %d experts do not fit int16 ids",
                       l.n_expert);
    else if (s == DB_OK && (!l.model_name || !l.arch || l.n < 0))
        s = db_err_set(err, DB_E_NOMEM, "export moetrace: out of memory");
    if (s == DB_OK && stat(dir, &sb) == 0)
        s = db_err_set(err, DB_E_ARG, "export moetrace: '%s' exists already (give a new "
                       "directory)", dir);
    int n_counts = 0;
    for (int i = 0; i < l.n; i++)
        n_counts += (l.a[i].flags & DB_RUN_COUNTS_ONLY) != 0;
    if (s == DB_OK && n_counts && n_counts < l.n)
        s = db_err_set(err, DB_E_ARG, "export moetrace: %d of the %d runs selected are "
                       "count-only (imported per-layer counts, no tokens) and the others have "
                       "tokens: a trace holds one kind; select them apart (--run or a tag)",
                       n_counts, l.n);
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    if (s == DB_OK && n_counts) {
        if (stat(tmp, &sb) == 0)
            remove_tmp(tmp);
        s = export_counts(db, &l, tmp, err);
        if (s == DB_OK && rename(tmp, dir) != 0)
            s = db_err_set(err, DB_E_IO, "renaming '%s' to '%s': %s", tmp, dir,
                           strerror(errno));
        if (s != DB_OK)
            remove_tmp(tmp);
        for (int i = 0; i < l.n; i++)
            free(l.a[i].prompt);
        free(l.a);
        free(l.model_name);
        free(l.arch);
        return s;
    }

    /* pass 1 */
    if (s == DB_OK) {
        sh.n_layer = l.n_layer;
        sh.layer_used = calloc((size_t)l.n_layer, 1);
        if (!sh.layer_used)
            s = db_err_set(err, DB_E_NOMEM, "export moetrace: out of memory");
    }
    for (int i = 0; s == DB_OK && i < l.n; i++) {
        s = db_routes(db, l.a[i].id, 0, -1, -1, shape_route, &sh, err);
        if (s == DB_OK && sh.bad_layer)
            s = db_err_set(err, DB_E_CORRUPT, "export moetrace: run %lld has a route of a "
                           "layer outside its model", (long long)l.a[i].id);
    }
    int n_moe = 0;
    if (s == DB_OK) {
        moe = malloc((size_t)l.n_layer * sizeof *moe);
        b.slot_of_layer = malloc((size_t)l.n_layer * sizeof *b.slot_of_layer);
        plen = calloc((size_t)l.n, sizeof *plen);
        if (!moe || !b.slot_of_layer || !plen)
            s = db_err_set(err, DB_E_NOMEM, "export moetrace: out of memory");
    }
    for (int i = 0; s == DB_OK && i < l.n_layer; i++) {
        b.slot_of_layer[i] = sh.layer_used[i] ? n_moe : -1;
        if (sh.layer_used[i])
            moe[n_moe++] = i;
    }
    if (s == DB_OK && !n_moe)
        s = db_err_set(err, DB_E_NOTFOUND, "export moetrace: the runs selected have no routes");
    b.n_moe = n_moe;
    b.K = sh.max_k;

    int weights = 0;
    for (int i = 0; i < l.n; i++)
        if (!(l.a[i].flags & DB_RUN_NO_WEIGHTS))
            weights = 1;

    /* the files, headers first */
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    if (s == DB_OK) {
        if (stat(tmp, &sb) == 0)
            remove_tmp(tmp);
        if (mkdir(tmp, 0777) != 0)
            s = db_err_set(err, DB_E_IO, "cannot create '%s': %s", tmp, strerror(errno));
        else
            made_tmp = 1;
    }
    uint64_t n_rows = 0;
    uint64_t shi[2] = { 0, 3 }, she[3] = { 0, (uint64_t)n_moe, (uint64_t)b.K };
    if (s == DB_OK)
        s = out_open(&fi, tmp, "index.npy", err);
    if (s == DB_OK)
        s = out_open(&fe, tmp, "experts.npy", err);
    if (s == DB_OK && weights)
        s = out_open(&fw, tmp, "weights.npy", err);
    if (s == DB_OK)
        s = out_header(&fi, "<i8", 2, shi, err);
    if (s == DB_OK)
        s = out_header(&fe, "<i2", 3, she, err);
    if (s == DB_OK && weights)
        s = out_header(&fw, "<f4", 3, she, err);

    /* pass 2 */
    for (int i = 0; s == DB_OK && i < l.n; i++) {
        int64_t run = l.a[i].id;
        b.n = 0;
        b.prompt_len = 0;
        b.bad_pos = 0;
        b.bad_prompt = 0;
        b.seen_gen = 0;
        s = db_tokens(db, run, buf_token, &b, err);
        if (s != DB_OK)
            break;
        for (int t = 0; t < b.n; t++)
            if (t > 0 && b.pos[t] <= b.pos[t - 1])
                s = db_err_set(err, DB_E_CORRUPT, "export moetrace: run %lld: tokens not in "
                               "position order", (long long)run);
        size_t cells = (size_t)b.n * (size_t)n_moe * (size_t)b.K;
        free(b.ex);
        free(b.w);
        b.ex = malloc(cells ? cells * sizeof *b.ex : 1);
        b.w = calloc(cells ? cells : 1, sizeof *b.w);
        if (s == DB_OK && (!b.ex || !b.w))
            s = db_err_set(err, DB_E_NOMEM, "export moetrace: out of memory for run %lld "
                           "(%d tokens)", (long long)run, b.n);
        if (s != DB_OK)
            break;
        for (size_t c = 0; c < cells; c++)
            b.ex[c] = -1;
        s = db_routes(db, run, 0, -1, -1, buf_route, &b, err);
        if (s == DB_OK && b.bad_pos)
            s = db_err_set(err, DB_E_CORRUPT, "export moetrace: run %lld has a route at pos "
                           "%d without a token", (long long)run, b.bad_pos - 1);
        /* the format marks the prompt by position: prompt tokens first */
        if (s == DB_OK && b.bad_prompt)
            s = db_err_set(err, DB_E_ARG, "export moetrace: run %lld has a prompt token "
                           "after a generated one (the format needs the prompt first)",
                           (long long)run);
        plen[i] = b.prompt_len;
        for (int t = 0; s == DB_OK && t < b.n; t++) {
            int64_t row[3] = { run, b.pos[t], b.tok[t] };
            s = put_i64(fi.f, row, 3, fi.path, err);
        }
        if (s == DB_OK)
            s = put_i16s(fe.f, b.ex, cells, fe.path, err);
        if (s == DB_OK && weights)
            s = put_f32s(fw.f, b.w, cells, fw.path, err);
        n_rows += (uint64_t)b.n;
    }
    shi[0] = she[0] = n_rows;
    if (s == DB_OK)
        s = out_header(&fi, "<i8", 2, shi, err);
    if (s == DB_OK)
        s = out_header(&fe, "<i2", 3, she, err);
    if (s == DB_OK && weights)
        s = out_header(&fw, "<f4", 3, she, err);
    DbStatus c1 = out_close(&fi, s == DB_OK ? err : NULL);
    DbStatus c2 = out_close(&fe, s == DB_OK && c1 == DB_OK ? err : NULL);
    DbStatus c3 = out_close(&fw, s == DB_OK && c1 == DB_OK && c2 == DB_OK ? err : NULL);
    if (s == DB_OK)
        s = c1 != DB_OK ? c1 : c2 != DB_OK ? c2 : c3;
    if (s == DB_OK)
        s = write_meta(tmp, &l, moe, n_moe, plen, NULL, err);
    if (s == DB_OK && rename(tmp, dir) != 0)
        s = db_err_set(err, DB_E_IO, "renaming '%s' to '%s': %s", tmp, dir, strerror(errno));
    if (s != DB_OK && made_tmp)
        remove_tmp(tmp);

    for (int i = 0; i < l.n; i++)
        free(l.a[i].prompt);
    free(l.a);
    free(l.model_name);
    free(l.arch);
    free(sh.layer_used);
    free(b.pos);
    free(b.tok);
    free(b.ex);
    free(b.w);
    free(b.slot_of_layer);
    free(moe);
    free(plen);
    return s;
}
