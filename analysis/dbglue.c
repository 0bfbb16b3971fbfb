/*
** analysis/dbglue.c — fills the analysis core's tables from a moescope
** database through db/db.h (the read API only; no SQL here).
**
** Layers: the database stores absolute layer numbers; the core works on the
** MoE layers only (a model may lead with dense layers).  The MoE layers are
** those with load in the aggregates, or, for a run without aggregates (not
** complete), those routed at its position 0 — every position is routed in
** every MoE layer.  AnDbInfo.layer_of maps back for printing.
**
** Which runs: statistics and contrasts read the per-run aggregates, which
** exist for complete runs only; runs still running, failed or interrupted
** are counted in AnDbInfo.n_skipped.  A selection with no complete run at
** all falls back to reading its raw routes.
**
** Count-only runs (imported SGLang per_pass / stat dumps, EPLB load
** records: per-layer expert counts, no tokens) add their load and their
** n_counted tokens to the "all" split; the prompt/gen splits are then not
** known (AnLoad.no_split), and anything that needs tokens or routes says
** "token views not available" for them instead of leaving them out.
*/
#include "analysis/an.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/an_int.h"

/* ---- token id → text ------------------------------------------------- */

typedef struct {
    size_t cap, n;      /* cap is a power of two */
    int32_t *key;
    char **val;
    uint8_t *used;
} TokMap;

static void tokmap_free(TokMap *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->used[i])
            free(m->val[i]);
    free(m->key);
    free(m->val);
    free(m->used);
    free(m);
}

static size_t tok_hash(int32_t id, size_t cap)
{
    uint64_t x = (uint64_t)(uint32_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 20) & (cap - 1);
}

static const char *tokmap_get(const TokMap *m, int32_t id)
{
    if (!m || !m->cap)
        return NULL;
    for (size_t i = tok_hash(id, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (!m->used[i])
            return NULL;
        if (m->key[i] == id)
            return m->val[i];
    }
}

static int tokmap_grow(TokMap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    TokMap n = { cap, 0, calloc(cap, sizeof(int32_t)), calloc(cap, sizeof(char *)),
                 calloc(cap, 1) };
    if (!n.key || !n.val || !n.used) {
        free(n.key);
        free(n.val);
        free(n.used);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->used[i])
            continue;
        size_t j = tok_hash(m->key[i], cap);
        while (n.used[j])
            j = (j + 1) & (cap - 1);
        n.used[j] = 1;
        n.key[j] = m->key[i];
        n.val[j] = m->val[i];
        n.n++;
    }
    free(m->key);
    free(m->val);
    free(m->used);
    *m = n;
    return 0;
}

/* Store a printable copy of a token's text (control bytes escaped, at most
** ~40 bytes) unless the id is known.  -1 on no memory. */
static int tokmap_put(TokMap *m, int32_t id, const char *piece, int len)
{
    if (tokmap_get(m, id))
        return 0;
    if ((m->n + 1) * 2 > m->cap && tokmap_grow(m))
        return -1;
    char buf[64];
    size_t o = 0;
    if (len < 0)
        len = piece ? (int)strlen(piece) : 0;
    for (int i = 0; i < len && o + 5 < sizeof buf; i++) {
        unsigned char c = (unsigned char)piece[i];
        if (c == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else if (c == '\t') {
            buf[o++] = '\\';
            buf[o++] = 't';
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(buf + o, sizeof buf - o, "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o] = 0;
    char *v = strdup(buf);
    if (!v)
        return -1;
    size_t j = tok_hash(id, m->cap);
    while (m->used[j])
        j = (j + 1) & (m->cap - 1);
    m->used[j] = 1;
    m->key[j] = id;
    m->val[j] = v;
    m->n++;
    return 0;
}

static int tok_text_cb(void *user, int32_t id, char *buf, size_t cap)
{
    const char *t = tokmap_get(user, id);
    if (t)
        return snprintf(buf, cap, "'%s'", t);
    return snprintf(buf, cap, "#%d", (int)id);
}

void an_db_info_done(AnDbInfo *info)
{
    if (!info)
        return;
    free(info->layer_of);
    tokmap_free(info->tok_map);
    memset(info, 0, sizeof *info);
}

AnLabels an_db_labels(const AnDbInfo *info)
{
    AnLabels lb = { .layer_of = info->layer_of, .title = info->title };
    if (info->tok_map) {
        lb.tok_text = tok_text_cb;
        lb.tok_user = info->tok_map;
    }
    return lb;
}

/* ---- runs -------------------------------------------------------------- */

typedef struct {
    int64_t id;
    DbRunStatus status;
    int n_layer, n_expert, k, flags;
    int64_t n_pos;
    char arch[32];
    char source[96];        /* runs.source, for messages ("" = our engine) */
} RunRec;

typedef struct {
    RunRec *v;
    int n, cap, nomem;
} RunList;

static void rec_from(const DbRun *r, RunRec *x);

static int run_cb(void *user, const DbRun *r)
{
    RunList *L = user;
    if (L->n == L->cap) {
        int cap = L->cap ? L->cap * 2 : 16;
        RunRec *v = realloc(L->v, (size_t)cap * sizeof *v);
        if (!v) {
            L->nomem = 1;
            return 1;
        }
        L->v = v;
        L->cap = cap;
    }
    rec_from(r, &L->v[L->n++]);
    return 0;
}

static void rec_from(const DbRun *r, RunRec *x)
{
    x->id = r->id;
    x->status = r->status;
    x->n_layer = r->n_layer;
    x->n_expert = r->n_expert;
    x->k = r->k;
    x->flags = r->flags;
    x->n_pos = (int64_t)r->n_prompt + r->n_gen;
    snprintf(x->arch, sizeof x->arch, "%s", r->arch ? r->arch : "");
    snprintf(x->source, sizeof x->source, "%s", r->source ? r->source : "");
}

/* AN_E_ARG for a count-only run where tokens or routes are needed. */
static AnStatus no_token_views(AnErr *err, const RunRec *x, const char *what)
{
    return an_fail(err, AN_E_ARG, "%s: run %" PRId64 " is count-only (per-layer expert counts "
                   "imported from %s, no tokens): token views not available", what, x->id,
                   x->source[0] ? x->source : "a count trace");
}

/* Append to the title how many runs are count-only: only the load over all
** positions includes them. */
static void note_counts_only(AnDbInfo *info, const RunRec *v, int n, const RunRec *v2, int n2)
{
    int nc = 0;
    for (int i = 0; i < n; i++)
        nc += (v[i].flags & DB_RUN_COUNTS_ONLY) != 0;
    for (int i = 0; i < n2; i++)
        nc += (v2[i].flags & DB_RUN_COUNTS_ONLY) != 0;
    info->n_counts_only = nc;
    if (nc == 0)
        return;
    size_t len = strlen(info->title);
    snprintf(info->title + len, sizeof info->title - len,
             "; %d count-only run%s (per-layer counts without tokens): prompt/gen splits and "
             "token views not available", nc, nc == 1 ? "" : "s");
}

static AnStatus db_fail(AnErr *err, const char *what, const DbErr *de)
{
    return an_fail(err, de->status == DB_E_NOMEM ? AN_E_NOMEM : AN_E_DB, "%s: %s", what,
                   de->msg);
}

static AnStatus list_runs(Db *db, const DbSel *sel, RunList *out, AnErr *err)
{
    DbErr de = { 0 };
    memset(out, 0, sizeof *out);
    if (db_runs(db, sel, run_cb, out, &de) != DB_OK) {
        free(out->v);
        memset(out, 0, sizeof *out);
        return db_fail(err, "listing runs", &de);
    }
    if (out->nomem) {
        free(out->v);
        memset(out, 0, sizeof *out);
        return an_fail(err, AN_E_NOMEM, "listing runs: out of memory");
    }
    return AN_OK;
}

/* Append to the title when some runs come from traces without gate weights:
** their weight mass is 1/k per chosen expert, not a measurement. */
static void note_no_weights(AnDbInfo *info, const RunRec *v, int n, const RunRec *v2, int n2)
{
    int nw = 0;
    for (int i = 0; i < n; i++)
        nw += (v[i].flags & DB_RUN_NO_WEIGHTS) != 0;
    for (int i = 0; i < n2; i++)
        nw += (v2[i].flags & DB_RUN_NO_WEIGHTS) != 0;
    if (nw == 0)
        return;
    size_t len = strlen(info->title);
    snprintf(info->title + len, sizeof info->title - len,
             "; %d imported run%s without gate weights: weight mass there is 1/k per expert",
             nw, nw == 1 ? "" : "s");
}

static AnGating gating_of(const char *arch)
{
    if (!strcmp(arch, "deepseek2") || !strcmp(arch, "glm4moe"))
        return AN_GATE_SIGMOID;
    if (!strcmp(arch, "gpt-oss"))
        return AN_GATE_SOFTMAX_TOPK;
    return AN_GATE_SOFTMAX;
}

/* ---- layers ------------------------------------------------------------ */

typedef struct {
    int n_layer;
    uint8_t *seen;      /* (n_layer) */
    int bad;
} LayerSeen;

static int layer_cb(void *user, int64_t run, const DbRoute *r)
{
    (void)run;
    LayerSeen *ls = user;
    if (r->layer < 0 || r->layer >= ls->n_layer) {
        ls->bad = 1;
        return 1;
    }
    ls->seen[r->layer] = 1;
    return 0;
}

/* Mark the layers routed at position 0 of run into seen[]. */
static AnStatus layers_of_run(Db *db, int64_t run, int n_layer, uint8_t *seen, AnErr *err)
{
    LayerSeen ls = { n_layer, seen, 0 };
    DbErr de = { 0 };
    if (db_routes(db, run, 0, 0, -1, layer_cb, &ls, &de) != DB_OK)
        return db_fail(err, "reading routes", &de);
    if (ls.bad)
        return an_fail(err, AN_E_DATA, "run %" PRId64 ": a route's layer is outside 0..%d", run,
                       n_layer - 1);
    return AN_OK;
}

/* layer_of from a seen[] mask; every layer when none is seen. */
static AnStatus set_layers(AnDbInfo *info, const uint8_t *seen, int n_layer, AnErr *err)
{
    int n = 0;
    for (int l = 0; l < n_layer; l++)
        n += seen[l] != 0;
    int all = n == 0;
    if (all)
        n = n_layer;
    free(info->layer_of);
    info->layer_of = malloc((size_t)(n ? n : 1) * sizeof *info->layer_of);
    if (!info->layer_of)
        return an_fail(err, AN_E_NOMEM, "out of memory");
    info->n_layer = 0;
    for (int l = 0; l < n_layer; l++)
        if (all || seen[l])
            info->layer_of[info->n_layer++] = l;
    return AN_OK;
}

/* An AnLoad over info's layers from a DbLoad.  Every position is routed in
** every MoE layer, so positions routed = tokens of the runs. */
static AnLoad *load_from_db(const DbLoad *dl, const AnDbInfo *info, int n_expert, AnErr *err)
{
    AnLoad *ld = an_load_new(info->n_layer, n_expert, err);
    if (!ld)
        return NULL;
    const size_t L = (size_t)info->n_layer, E = (size_t)n_expert;
    ld->n_pos[AN_SPLIT_PROMPT] = dl->n_prompt;
    ld->n_pos[AN_SPLIT_GEN] = dl->n_gen;
    /* count-only runs: n_counted tokens in every MoE layer, split unknown */
    ld->n_pos[AN_SPLIT_ALL] = dl->n_prompt + dl->n_gen + dl->n_counted;
    ld->no_split = dl->n_counts_only > 0;
    for (size_t l = 0; l < L; l++) {
        int al = info->layer_of[l];
        for (int sp = 0; sp < AN_NSPLIT; sp++)
            ld->n_routed[(size_t)sp * L + l] = ld->n_pos[sp];
        if (al >= dl->n_layer)
            continue;
        for (size_t e = 0; e < E && e < (size_t)dl->n_expert; e++) {
            size_t src = (size_t)al * (size_t)dl->n_expert + e;
            int64_t c = dl->count[src], cp = dl->count_prompt[src];
            double w = dl->weight[src], wp = dl->weight_prompt[src];
            ld->count[l * E + e] = c;
            ld->count[(L + l) * E + e] = cp;
            ld->count[(2 * L + l) * E + e] = c - cp;
            ld->mass[l * E + e] = w;
            ld->mass[(L + l) * E + e] = wp;
            ld->mass[(2 * L + l) * E + e] = w - wp;
        }
    }
    return ld;
}

/* Positions without a route: the engine samples the last generated token
** but never evaluates it, so the last position of a run may have no route.
** Looks it up (one indexed read) and subtracts it from ld's routed counts
** of the run's last split. */
static int count_cb(void *user, int64_t run, const DbRoute *r)
{
    (void)run;
    (void)r;
    ++*(int *)user;
    return 0;
}

static AnStatus fix_tail(Db *db, const RunRec *rr, const AnDbInfo *info, AnLoad *ld, AnErr *err)
{
    if (rr->n_pos <= 0 || info->n_layer < 1)
        return AN_OK;
    int n = 0;
    DbErr de = { 0 };
    int32_t last = (int32_t)(rr->n_pos - 1);
    if (db_routes(db, rr->id, last, last, info->layer_of[0], count_cb, &n, &de) != DB_OK)
        return db_fail(err, "reading routes", &de);
    if (n)
        return AN_OK;
    /* the last position is generated when the run generated anything */
    DbRun dr;
    if (db_run_get(db, rr->id, &dr, &de) != DB_OK)
        return db_fail(err, "reading a run", &de);
    int sp = dr.n_gen > 0 ? AN_SPLIT_GEN : AN_SPLIT_PROMPT;
    db_run_free(&dr);
    const size_t L = (size_t)ld->n_layer;
    for (size_t l = 0; l < L; l++) {
        if (ld->n_routed[(size_t)sp * L + l] > 0)
            ld->n_routed[(size_t)sp * L + l]--;
        if (ld->n_routed[l] > 0)
            ld->n_routed[l]--;
    }
    return AN_OK;
}

/* ---- routes + tokens --------------------------------------------------- */

typedef struct {
    AnRoutes *r;
    int run_idx;
    int64_t *row_of;        /* pos → row, −1 none */
    int64_t n_row_of;
    const int *comp;        /* absolute layer → compact, −1 not MoE */
    int n_layer_abs;
    TokMap *tm;
    AnErr *err;
    AnStatus st;
    int64_t run_id;
} Fill;

static int fill_token(void *user, int64_t run, const DbToken *t)
{
    (void)run;
    Fill *f = user;
    if (t->pos < 0) {
        f->st = an_fail(f->err, AN_E_DATA, "run %" PRId64 ": token at position %d", f->run_id,
                        (int)t->pos);
        return 1;
    }
    if (t->pos >= f->n_row_of) {
        int64_t cap = f->n_row_of ? f->n_row_of : 1024;
        while (cap <= t->pos)
            cap *= 2;
        int64_t *v = realloc(f->row_of, (size_t)cap * sizeof *v);
        if (!v) {
            f->st = an_fail(f->err, AN_E_NOMEM, "reading tokens: out of memory");
            return 1;
        }
        for (int64_t i = f->n_row_of; i < cap; i++)
            v[i] = -1;
        f->row_of = v;
        f->n_row_of = cap;
    }
    int64_t row = an_routes_add_pos(f->r, f->run_idx, t->pos, t->token, t->is_prompt,
                                    t->logprob, f->err);
    if (row < 0) {
        f->st = f->err ? f->err->status : AN_E_NOMEM;
        return 1;
    }
    f->row_of[t->pos] = row;
    if (f->tm && tokmap_put(f->tm, t->token, t->piece, t->piece_len)) {
        f->st = an_fail(f->err, AN_E_NOMEM, "reading tokens: out of memory");
        return 1;
    }
    return 0;
}

static int fill_route(void *user, int64_t run, const DbRoute *rt)
{
    (void)run;
    Fill *f = user;
    if (rt->layer < 0 || rt->layer >= f->n_layer_abs || f->comp[rt->layer] < 0) {
        f->st = an_fail(f->err, AN_E_DATA, "run %" PRId64 ": route at position %d in layer %d, "
                        "which is not one of the run's MoE layers", f->run_id, (int)rt->pos,
                        (int)rt->layer);
        return 1;
    }
    if (rt->pos < 0 || rt->pos >= f->n_row_of || f->row_of[rt->pos] < 0) {
        f->st = an_fail(f->err, AN_E_DATA, "run %" PRId64 ": route at position %d has no token",
                        f->run_id, (int)rt->pos);
        return 1;
    }
    f->st = an_routes_set(f->r, f->row_of[rt->pos], f->comp[rt->layer], rt->k, rt->experts,
                          rt->weights, rt->logits, f->err);
    return f->st != AN_OK;
}

AnRoutes *an_db_routes(Db *db, const char *path, const int64_t *runs, int n, AnDbInfo *info,
                       AnErr *err)
{
    if (n < 1) {
        an_fail(err, AN_E_ARG, "an_db_routes: no runs");
        return NULL;
    }
    RunRec *rr = calloc((size_t)n, sizeof *rr);
    if (!rr) {
        an_fail(err, AN_E_NOMEM, "out of memory");
        return NULL;
    }
    int64_t total = 0;
    int has_logits = 1;
    for (int i = 0; i < n; i++) {
        DbRun dr;
        DbErr de = { 0 };
        DbStatus ds = db_run_get(db, runs[i], &dr, &de);
        if (ds == DB_E_NOTFOUND) {
            an_fail(err, AN_E_NOTFOUND, "run %" PRId64 " is not in %s", runs[i], path);
            free(rr);
            return NULL;
        }
        if (ds != DB_OK) {
            db_fail(err, "reading a run", &de);
            free(rr);
            return NULL;
        }
        rec_from(&dr, &rr[i]);
        db_run_free(&dr);
        if (rr[i].flags & DB_RUN_COUNTS_ONLY) {
            no_token_views(err, &rr[i], "reading routes");
            free(rr);
            return NULL;
        }
        total += rr[i].n_pos;
        has_logits &= (rr[i].flags & DB_RUN_LOGITS) != 0;
        if (rr[i].n_layer != rr[0].n_layer || rr[i].n_expert != rr[0].n_expert) {
            an_fail(err, AN_E_DATA, "run %" PRId64 " has %d layers × %d experts, run %" PRId64
                    " has %d × %d: runs of different model shapes can't be pooled", rr[i].id,
                    rr[i].n_layer, rr[i].n_expert, rr[0].id, rr[0].n_layer, rr[0].n_expert);
            free(rr);
            return NULL;
        }
    }
    const int LA = rr[0].n_layer > 0 ? rr[0].n_layer : 1, E = rr[0].n_expert;
    if (E < 1) {
        an_fail(err, AN_E_DATA, "run %" PRId64 ": model has %d experts", rr[0].id, E);
        free(rr);
        return NULL;
    }
    if (info->n_layer == 0) {
        uint8_t *seen = calloc((size_t)LA, 1);
        AnStatus st = seen ? AN_OK : an_fail(err, AN_E_NOMEM, "out of memory");
        for (int i = 0; i < n && !st; i++)
            st = layers_of_run(db, runs[i], LA, seen, err);
        if (!st)
            st = set_layers(info, seen, LA, err);
        free(seen);
        if (st) {
            free(rr);
            return NULL;
        }
    }
    if (!info->tok_map) {
        info->tok_map = calloc(1, sizeof(TokMap));
        if (!info->tok_map) {
            an_fail(err, AN_E_NOMEM, "out of memory");
            free(rr);
            return NULL;
        }
    }
    int *comp = malloc((size_t)LA * sizeof *comp);
    int k = rr[0].k > 0 && rr[0].k <= E ? rr[0].k : 1;
    AnRoutes *r = comp ? an_routes_new(info->n_layer, E, k > 255 ? 255 : k, has_logits,
                                       gating_of(rr[0].arch), total, err)
                       : NULL;
    if (!r) {
        if (!comp)
            an_fail(err, AN_E_NOMEM, "out of memory");
        free(comp);
        free(rr);
        return NULL;
    }
    for (int l = 0; l < LA; l++)
        comp[l] = -1;
    for (int l = 0; l < info->n_layer; l++)
        if (info->layer_of[l] < LA)
            comp[info->layer_of[l]] = l;
    Fill f = { .r = r, .comp = comp, .n_layer_abs = LA, .tm = info->tok_map, .err = err };
    for (int i = 0; i < n && f.st == AN_OK; i++) {
        DbErr de = { 0 };
        f.run_idx = i;
        f.run_id = runs[i];
        for (int64_t p = 0; p < f.n_row_of; p++)
            f.row_of[p] = -1;
        if (db_tokens(db, runs[i], fill_token, &f, &de) != DB_OK) {
            f.st = db_fail(err, "reading tokens", &de);
            break;
        }
        if (f.st)
            break;
        if (db_routes(db, runs[i], 0, -1, -1, fill_route, &f, &de) != DB_OK)
            f.st = db_fail(err, "reading routes", &de);
    }
    free(f.row_of);
    free(comp);
    free(rr);
    if (f.st) {
        an_routes_free(r);
        return NULL;
    }
    return r;
}

/* ---- stats ------------------------------------------------------------- */

AnStatus an_db_stats(Db *db, const char *path, int64_t run, const char *tag,
                     const AnStatsParams *p, AnStats **out, AnDbInfo *info, AnErr *err)
{
    AnStatsParams def = { 0 };
    if (!p)
        p = &def;
    *out = NULL;
    memset(info, 0, sizeof *info);
    DbSel sel = { .run = run > 0 ? run : 0, .tag = run > 0 ? NULL : tag };
    RunList rl;
    AnStatus st = list_runs(db, &sel, &rl, err);
    if (st)
        return st;
    if (rl.n == 0) {
        free(rl.v);
        if (run > 0)
            return an_fail(err, AN_E_NOTFOUND, "run %" PRId64 " is not in %s", run, path);
        if (tag)
            return an_fail(err, AN_E_NOTFOUND, "tag '%s' has no runs in %s", tag, path);
        return an_fail(err, AN_E_NOTFOUND, "%s has no runs", path);
    }
    int n_complete = 0;
    for (int i = 0; i < rl.n; i++)
        n_complete += rl.v[i].status == DB_RUN_COMPLETE;
    if (run > 0)
        snprintf(info->title, sizeof info->title, "run %" PRId64 " (%s, %" PRId64 " positions)",
                 run, db_run_status_str(rl.v[0].status), rl.v[0].n_pos);
    else if (tag)
        snprintf(info->title, sizeof info->title, "tag '%s': %d complete runs", tag, n_complete);
    else
        snprintf(info->title, sizeof info->title, "all runs: %d complete", n_complete);
    note_no_weights(info, rl.v, rl.n, NULL, 0);
    note_counts_only(info, rl.v, rl.n, NULL, 0);
    int use_routes = p->want_routes || p->want_pairs || n_complete == 0;
    for (int i = 0; use_routes && i < rl.n; i++)
        if (rl.v[i].flags & DB_RUN_COUNTS_ONLY) {
            st = no_token_views(err, &rl.v[i], p->want_pairs ? "--pairs" : "--routes");
            free(rl.v);
            return st;
        }
    if (!use_routes) {
        DbLoad dl;
        DbErr de = { 0 };
        if (db_load(db, &sel, &dl, &de) != DB_OK) {
            free(rl.v);
            return db_fail(err, "reading load", &de);
        }
        uint8_t *seen = calloc((size_t)(dl.n_layer > 0 ? dl.n_layer : 1), 1);
        if (!seen) {
            db_load_free(&dl);
            free(rl.v);
            return an_fail(err, AN_E_NOMEM, "out of memory");
        }
        for (int l = 0; l < dl.n_layer; l++)
            for (int e = 0; e < dl.n_expert; e++)
                if (dl.count[(size_t)l * (size_t)dl.n_expert + (size_t)e])
                    seen[l] = 1;
        st = set_layers(info, seen, dl.n_layer > 0 ? dl.n_layer : 1, err);
        free(seen);
        AnLoad *ld = st ? NULL : load_from_db(&dl, info, dl.n_expert > 0 ? dl.n_expert : 1, err);
        for (int i = 0; ld && i < rl.n; i++)
            if (rl.v[i].status == DB_RUN_COMPLETE && fix_tail(db, &rl.v[i], info, ld, err)) {
                an_load_free(ld);
                ld = NULL;
            }
        info->n_runs = dl.n_runs;
        db_load_free(&dl);
        if (ld) {
            *out = an_stats_from_load(ld, err);
            an_load_free(ld);
        }
        info->n_skipped = rl.n - n_complete;
        free(rl.v);
        return *out ? AN_OK : (err ? err->status : AN_E_NOMEM);
    }
    /* raw routes of the complete runs (or of all, when none is complete) */
    int64_t *ids = malloc((size_t)rl.n * sizeof *ids);
    int n_ids = 0;
    for (int i = 0; ids && i < rl.n; i++)
        if (n_complete == 0 || rl.v[i].status == DB_RUN_COMPLETE)
            ids[n_ids++] = rl.v[i].id;
    info->n_runs = n_ids;
    info->n_skipped = rl.n - n_ids;
    free(rl.v);
    if (!ids)
        return an_fail(err, AN_E_NOMEM, "out of memory");
    AnRoutes *r = an_db_routes(db, path, ids, n_ids, info, err);
    free(ids);
    if (!r)
        return err ? err->status : AN_E_DB;
    AnStatsParams q = *p;
    q.want_routes = 1;
    *out = an_stats_compute(r, &q, err);
    an_routes_free(r);
    return *out ? AN_OK : (err ? err->status : AN_E_NOMEM);
}

/* ---- contrast ---------------------------------------------------------- */

/* Complete runs of a tag, or of several tags given as "a,b,c" (a run set
** made of tags: "math" against "english,german,c,python");
** AN_E_NOTFOUND naming the tag when it has none. */
static AnStatus tag_runs(Db *db, const char *path, const char *tag, RunList *rl, int *n_skip,
                         AnErr *err)
{
    memset(rl, 0, sizeof *rl);
    const char *p = tag;
    do {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char one[256];
        if (len == 0 || len >= sizeof one)
            return an_fail(err, AN_E_ARG, "tag list '%s': empty or over-long tag", tag);
        memcpy(one, p, len);
        one[len] = 0;
        DbSel sel = { .tag = one };
        RunList part;
        AnStatus st = list_runs(db, &sel, &part, err);
        if (st) {
            free(rl->v);
            memset(rl, 0, sizeof *rl);
            return st;
        }
        if (part.n == 0 && comma) {
            free(part.v);
            free(rl->v);
            memset(rl, 0, sizeof *rl);
            return an_fail(err, AN_E_NOTFOUND, "tag '%s' (in '%s') has no runs in %s", one, tag, path);
        }
        for (int i = 0; i < part.n; i++) {
            if (rl->n == rl->cap) {
                int cap = rl->cap ? rl->cap * 2 : 16;
                RunRec *v = realloc(rl->v, (size_t)cap * sizeof *v);
                if (!v) {
                    free(part.v);
                    free(rl->v);
                    memset(rl, 0, sizeof *rl);
                    return an_fail(err, AN_E_NOMEM, "listing runs: out of memory");
                }
                rl->v = v;
                rl->cap = cap;
            }
            rl->v[rl->n++] = part.v[i];
        }
        free(part.v);
        p = comma ? comma + 1 : NULL;
    } while (p);
    int n = 0;
    for (int i = 0; i < rl->n; i++)
        if (rl->v[i].status == DB_RUN_COMPLETE)
            rl->v[n++] = rl->v[i];
    *n_skip = rl->n - n;
    int had = rl->n;
    rl->n = n;
    if (n == 0) {
        free(rl->v);
        rl->v = NULL;
        if (had)
            return an_fail(err, AN_E_NOTFOUND, "tag '%s' has no complete runs in %s (%d not "
                           "complete)", tag, path, had);
        return an_fail(err, AN_E_NOTFOUND, "tag '%s' has no runs in %s", tag, path);
    }
    return AN_OK;
}

AnStatus an_db_contrast(Db *db, const char *path, const char *tag_a, const char *tag_b,
                        const AnContrastParams *p, AnContrast **out, AnDbInfo *info, AnErr *err)
{
    *out = NULL;
    memset(info, 0, sizeof *info);
    RunList ra = { 0 }, rb = { 0 };
    int skip_a = 0, skip_b = 0;
    AnStatus st = tag_runs(db, path, tag_a, &ra, &skip_a, err);
    if (!st)
        st = tag_runs(db, path, tag_b, &rb, &skip_b, err);
    if (st) {
        free(ra.v);
        free(rb.v);
        return st;
    }
    const size_t N = (size_t)ra.n + (size_t)rb.n;   /* both ≥ 1 here */
    const RunRec *first = &ra.v[0];
    for (int i = 0; i < (int)N && !st && p && p->split != AN_SPLIT_ALL; i++) {
        const RunRec *x = i < ra.n ? &ra.v[i] : &rb.v[i - ra.n];
        if (x->flags & DB_RUN_COUNTS_ONLY) {
            char what[64];
            snprintf(what, sizeof what, "--split %s (tag '%s')", an_split_name(p->split),
                     i < ra.n ? tag_a : tag_b);
            st = no_token_views(err, x, what);
            size_t n = strlen(err ? err->msg : "");
            if (err)
                snprintf(err->msg + n, sizeof err->msg - n, "; use --split all");
        }
    }
    for (int i = 0; i < (int)N && !st; i++) {
        const RunRec *x = i < ra.n ? &ra.v[i] : &rb.v[i - ra.n];
        if (x->n_layer != first->n_layer || x->n_expert != first->n_expert)
            st = an_fail(err, AN_E_DATA, "run %" PRId64 " (tag '%s') has %d layers × %d "
                         "experts, run %" PRId64 " (tag '%s') has %d × %d: contrast needs one "
                         "model shape", x->id, i < ra.n ? tag_a : tag_b, x->n_layer,
                         x->n_expert, first->id, tag_a, first->n_layer, first->n_expert);
    }
    DbLoad *dl = st ? NULL : calloc(N, sizeof *dl);
    AnLoad **ld = st ? NULL : calloc(N, sizeof *ld);
    uint8_t *seen = st ? NULL : calloc((size_t)(first->n_layer > 0 ? first->n_layer : 1), 1);
    if (!st && (!dl || !ld || !seen))
        st = an_fail(err, AN_E_NOMEM, "out of memory");
    for (int i = 0; i < (int)N && !st; i++) {
        DbSel sel = { .run = i < ra.n ? ra.v[i].id : rb.v[i - ra.n].id };
        DbErr de = { 0 };
        if (db_load(db, &sel, &dl[i], &de) != DB_OK) {
            st = db_fail(err, "reading load", &de);
            break;
        }
        for (int l = 0; l < dl[i].n_layer && l < first->n_layer; l++)
            for (int e = 0; e < dl[i].n_expert; e++)
                if (dl[i].count[(size_t)l * (size_t)dl[i].n_expert + (size_t)e])
                    seen[l] = 1;
    }
    if (!st)
        st = set_layers(info, seen, first->n_layer > 0 ? first->n_layer : 1, err);
    for (int i = 0; i < (int)N && !st; i++) {
        if (!(ld[i] = load_from_db(&dl[i], info, first->n_expert > 0 ? first->n_expert : 1, err)))
            st = err ? err->status : AN_E_NOMEM;
        else
            st = fix_tail(db, i < ra.n ? &ra.v[i] : &rb.v[i - ra.n], info, ld[i], err);
    }
    if (!st) {
        *out = an_contrast((const AnLoad *const *)ld, ra.n, (const AnLoad *const *)ld + ra.n,
                           rb.n, p, err);
        if (!*out)
            st = err ? err->status : AN_E_NOMEM;
    }
    info->n_runs = ra.n;
    info->n_runs_b = rb.n;
    info->n_skipped = skip_a + skip_b;
    snprintf(info->title, sizeof info->title, "contrast A = tag '%s' (%d runs) vs B = tag '%s' "
             "(%d runs)", tag_a, ra.n, tag_b, rb.n);
    note_no_weights(info, ra.v, ra.n, rb.v, rb.n);
    note_counts_only(info, ra.v, ra.n, rb.v, rb.n);
    for (int i = 0; dl && i < (int)N; i++)
        db_load_free(&dl[i]);
    for (int i = 0; ld && i < (int)N; i++)
        an_load_free(ld[i]);
    free(dl);
    free(ld);
    free(seen);
    free(ra.v);
    free(rb.v);
    return st;
}

/* ---- diff -------------------------------------------------------------- */

AnStatus an_db_diff(Db *db, const char *path, int64_t run_a, int64_t run_b, AnDiff **out,
                    AnDbInfo *info, AnErr *err)
{
    *out = NULL;
    memset(info, 0, sizeof *info);
    int64_t both[2] = { run_a, run_b };
    /* detect MoE layers over both runs, then read each run alone */
    AnRoutes *ra = an_db_routes(db, path, both, 1, info, err);
    if (!ra)
        return err ? err->status : AN_E_DB;
    AnRoutes *rb = an_db_routes(db, path, both + 1, 1, info, err);
    if (!rb) {
        an_routes_free(ra);
        return err ? err->status : AN_E_DB;
    }
    if (ra->n_expert != rb->n_expert) {
        an_routes_free(ra);
        an_routes_free(rb);
        return an_fail(err, AN_E_DATA, "run %" PRId64 " has %d experts per layer, run %" PRId64
                       " has %d: not comparable", run_a, ra->n_expert, run_b, rb->n_expert);
    }
    *out = an_diff(ra, rb, err);
    info->n_runs = 2;
    snprintf(info->title, sizeof info->title, "diff A = run %" PRId64 ", B = run %" PRId64,
             run_a, run_b);
    an_routes_free(ra);
    an_routes_free(rb);
    return *out ? AN_OK : (err ? err->status : AN_E_NOMEM);
}
