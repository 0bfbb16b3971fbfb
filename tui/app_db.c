/*
** tui/app_db.c — the app's data source over the routing database.
**
** Fills the app's model from db/db.h's read API: the run list (db_runs),
** per-run and per-tag aggregates (db_load: never raw routes) and the tokens
** of one run with their routes (db_tokens + db_routes).  The connection is
** the UI thread's own; a live run logs through a second connection, and WAL
** keeps the two from blocking each other.
*/
#include "tui/app.h"
#include "analysis/an.h"
#include "db/db.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Db *db;
    char path[1024];
} DbSrc;

static void put_err(char *err, size_t cap, const char *what, const DbErr *e)
{
    snprintf(err, cap, "%s: %s", what, e->msg[0] ? e->msg : db_status_str(e->status));
}

typedef struct {
    TuiRunList *out;
    int nomem;
} RunsCtx;

static int run_cb(void *user, const DbRun *r)
{
    RunsCtx *c = user;
    TuiRun t;
    memset(&t, 0, sizeof t);
    t.id = r->id;
    t.parent = r->parent;
    snprintf(t.tag, sizeof t.tag, "%s", r->tag ? r->tag : "");
    const char *mp = r->model_path ? r->model_path : "";
    const char *base = strrchr(mp, '/');
    snprintf(t.model, sizeof t.model, "%s", r->model_name && r->model_name[0] ? r->model_name : base ? base + 1 : mp);
    t.prompt = (char *)(r->prompt ? r->prompt : "");
    /* one intervention per line → one line joined by ", " */
    char ivs[512];
    size_t o = 0;
    const char *s = r->iv_text ? r->iv_text : "";
    ivs[0] = 0;
    while (*s && o + 3 < sizeof ivs) {
        if (*s == '\n') {
            if (s[1])
                o += (size_t)snprintf(ivs + o, sizeof ivs - o, ", ");
        } else {
            ivs[o++] = *s;
            ivs[o] = 0;
        }
        s++;
    }
    t.ivs = ivs;
    t.n_tok = r->n_prompt + r->n_gen;
    t.n_prompt = r->n_prompt;
    snprintf(t.status, sizeof t.status, "%s", db_run_status_str(r->status));
    /* "2026-11-26T04:30:00Z" → "2026-11-26 04:30" */
    snprintf(t.date, sizeof t.date, "%.16s", r->created_at ? r->created_at : "");
    if (strlen(t.date) > 10 && t.date[10] == 'T')
        t.date[10] = ' ';
    if (tui_runs_push(c->out, &t)) {
        c->nomem = 1;
        return 1;
    }
    return 0;
}

static int src_list_runs(void *self, TuiRunList *out, char *err, size_t cap)
{
    DbSrc *s = self;
    DbErr e = { 0 };
    RunsCtx c = { out, 0 };
    if (db_runs(s->db, NULL, run_cb, &c, &e) != DB_OK) {
        put_err(err, cap, "listing runs", &e);
        return -1;
    }
    if (c.nomem) {
        snprintf(err, cap, "listing runs: out of memory");
        return -1;
    }
    return 0;
}

/* Add a DbLoad into a TuiAgg of the same shape (sign +1 or -1). */
static int agg_add_load(TuiAgg *a, const DbLoad *l, int sign)
{
    if (l->n_layer != a->n_layer || l->n_expert != a->n_expert)
        return -1;
    size_t n = (size_t)l->n_layer * (size_t)l->n_expert;
    for (size_t i = 0; i < n; i++) {
        a->cnt[i] += (float)sign * (float)l->count[i];
        a->wt[i] += (float)sign * (float)l->weight[i];
        a->cnt_p[i] += (float)sign * (float)l->count_prompt[i];
        a->wt_p[i] += (float)sign * (float)l->weight_prompt[i];
    }
    a->n_tok += sign * (int)(l->n_prompt + l->n_gen + l->n_counted);
    a->n_prompt += sign * (int)l->n_prompt;
    a->n_counted += sign * (int)l->n_counted;
    return 0;
}

static int run_k(Db *db, int64_t run)
{
    DbRun r;
    if (db_run_get(db, run, &r, NULL) != DB_OK)
        return 0;
    int k = r.k;
    db_run_free(&r);
    return k;
}

static int src_load_agg(void *self, const int64_t *runs, int n, TuiAgg *out, char *err, size_t cap)
{
    DbSrc *s = self;
    memset(out, 0, sizeof *out);
    for (int i = 0; i < n; i++) {
        DbErr e = { 0 };
        DbLoad l;
        DbSel sel = { .run = runs[i] };
        if (db_load(s->db, &sel, &l, &e) != DB_OK) {
            put_err(err, cap, "reading load", &e);
            tui_agg_done(out);
            return -1;
        }
        if (l.n_runs == 0) {
            db_load_free(&l);
            snprintf(err, cap, "run %lld is not complete: nothing to show yet", (long long)runs[i]);
            tui_agg_done(out);
            return -1;
        }
        if (!out->cnt && tui_agg_init(out, l.n_layer, l.n_expert, run_k(s->db, runs[i]))) {
            db_load_free(&l);
            snprintf(err, cap, "reading load: out of memory");
            return -1;
        }
        int bad = agg_add_load(out, &l, 1);
        db_load_free(&l);
        if (bad) {
            snprintf(err, cap, "run %lld has a different model shape from run %lld: open them separately",
                     (long long)runs[i], (long long)runs[0]);
            tui_agg_done(out);
            return -1;
        }
    }
    return 0;
}

static int src_load_tag_agg(void *self, const char *tag, int not, TuiAgg *out, char *err, size_t cap)
{
    DbSrc *s = self;
    DbErr e = { 0 };
    DbLoad in, all;
    DbSel sel = { .tag = tag };
    memset(out, 0, sizeof *out);
    if (db_load(s->db, &sel, &in, &e) != DB_OK) {
        put_err(err, cap, "reading load", &e);
        return -1;
    }
    if (!not) {
        int rc = 0;
        if (in.n_layer > 0 && tui_agg_init(out, in.n_layer, in.n_expert, 0) == 0)
            agg_add_load(out, &in, 1);
        else {
            snprintf(err, cap, "no complete runs with tag %s", tag);
            rc = -1;
        }
        db_load_free(&in);
        return rc;
    }
    if (db_load(s->db, NULL, &all, &e) != DB_OK) {
        db_load_free(&in);
        put_err(err, cap, "reading load", &e);
        return -1;
    }
    int rc = -1;
    if (all.n_layer > 0 && tui_agg_init(out, all.n_layer, all.n_expert, 0) == 0) {
        agg_add_load(out, &all, 1);
        if (in.n_layer == 0 || agg_add_load(out, &in, -1) == 0)
            rc = 0;
        else
            snprintf(err, cap, "runs with tag %s have another model shape than the rest", tag);
    } else {
        snprintf(err, cap, "no complete runs in the database");
    }
    if (rc)
        tui_agg_done(out);
    db_load_free(&in);
    db_load_free(&all);
    return rc;
}

typedef struct {
    TuiTokens *t;
    int bad;
} TokCtx;

static int tok_cb(void *user, int64_t run, const DbToken *t)
{
    (void)run;
    TokCtx *c = user;
    size_t len = t->piece_len >= 0 ? (size_t)t->piece_len : strlen(t->piece);
    /* positions are dense from 0; anything else means a gap in the run */
    if (t->pos != c->t->n || tui_tokens_push(c->t, t->token, t->piece, len, t->is_prompt, t->logprob) < 0) {
        c->bad = 1;
        return 1;
    }
    return 0;
}

static int route_cb(void *user, int64_t run, const DbRoute *r)
{
    (void)run;
    TokCtx *c = user;
    tui_tokens_set_route(c->t, r->pos, r->layer, r->experts, r->weights, r->k, r->logits);
    return 0;
}

static int src_load_tokens(void *self, int64_t run, TuiTokens *out, char *err, size_t cap)
{
    DbSrc *s = self;
    DbErr e = { 0 };
    DbRun r;
    if (db_run_get(s->db, run, &r, &e) != DB_OK) {
        put_err(err, cap, "reading run", &e);
        return -1;
    }
    int rc = tui_tokens_init(out, r.n_layer, r.n_expert, r.k > 0 ? r.k : 1, (r.flags & DB_RUN_LOGITS) != 0);
    db_run_free(&r);
    if (rc) {
        snprintf(err, cap, "run %lld: bad shape", (long long)run);
        return -1;
    }
    TokCtx c = { out, 0 };
    if (db_tokens(s->db, run, tok_cb, &c, &e) != DB_OK || c.bad) {
        if (c.bad)
            snprintf(err, cap, "run %lld: tokens are not at positions 0..n-1", (long long)run);
        else
            put_err(err, cap, "reading tokens", &e);
        tui_tokens_done(out);
        return -1;
    }
    if (db_routes(s->db, run, 0, -1, -1, route_cb, &c, &e) != DB_OK) {
        put_err(err, cap, "reading routes", &e);
        tui_tokens_done(out);
        return -1;
    }
    return 0;
}

/* Contrast from the analysis module: one load per run, a permutation test
** over runs, BH q-values; rows are mapped back to absolute layers. */
static int src_contrast(void *self, const char *tag_a, const char *tag_b, TuiCi *out,
                        char *err, size_t cap)
{
    DbSrc *s = self;
    AnErr ae = { 0 };
    AnDbInfo info;
    memset(&info, 0, sizeof info);
    memset(out, 0, sizeof *out);
    AnContrastParams p = { .split = AN_SPLIT_ALL, .min_count = 1, .n_perm = 1000, .seed = 1 };
    AnContrast *c = NULL;
    if (an_db_contrast(s->db, s->path, tag_a, tag_b, &p, &c, &info, &ae) != AN_OK) {
        snprintf(err, cap, "contrast: %s", ae.msg);
        an_db_info_done(&info);
        return -1;
    }
    int nl = 0;
    for (int i = 0; i < info.n_layer; i++)
        if (info.layer_of && info.layer_of[i] + 1 > nl)
            nl = info.layer_of[i] + 1;
    if (!info.layer_of)
        nl = c->n_layer;
    size_t n = (size_t)nl * (size_t)c->n_expert;
    out->n_layer = nl;
    out->n_expert = c->n_expert;
    out->n_perm = c->n_perm;
    out->delta = calloc(n ? n : 1, sizeof(float));
    out->lo = calloc(n ? n : 1, sizeof(float));
    out->hi = calloc(n ? n : 1, sizeof(float));
    out->q = calloc(n ? n : 1, sizeof(float));
    out->has = calloc(n ? n : 1, 1);
    int rc = 0;
    if (!out->delta || !out->lo || !out->hi || !out->q || !out->has) {
        snprintf(err, cap, "contrast: out of memory");
        tui_ci_done(out);
        rc = -1;
    } else {
        for (int r = 0; r < c->n_row; r++) {
            const AnContrastRow *row = &c->row[r];
            int l = info.layer_of ? info.layer_of[row->layer] : row->layer;
            if (l < 0 || l >= nl || row->expert < 0 || row->expert >= c->n_expert)
                continue;
            size_t i = (size_t)l * (size_t)c->n_expert + (size_t)row->expert;
            out->delta[i] = (float)row->delta;
            out->lo[i] = (float)row->delta_lo;
            out->hi[i] = (float)row->delta_hi;
            out->q[i] = (float)row->q_value;
            out->has[i] = 1;
        }
    }
    an_contrast_free(c);
    an_db_info_done(&info);
    return rc;
}

static void src_close(void *self)
{
    DbSrc *s = self;
    if (!s)
        return;
    db_close(s->db);
    free(s);
}

int tui_db_source_open(TuiSource *src, const char *path, int create, char *err, size_t cap)
{
    DbErr e = { 0 };
    memset(src, 0, sizeof *src);
    DbSrc *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    s->db = db_open(path, create ? DB_OPEN_CREATE : 0, &e);
    if (!s->db) {
        put_err(err, cap, path, &e);
        free(s);
        return -1;
    }
    src->self = s;
    src->list_runs = src_list_runs;
    src->load_agg = src_load_agg;
    src->load_tag_agg = src_load_tag_agg;
    src->load_tokens = src_load_tokens;
    src->close = src_close;
    src->contrast = src_contrast;
    snprintf(s->path, sizeof s->path, "%s", path);
    return 0;
}
