/*
** db/read.c — the read API: runs, tokens, routes, expert hits, tags, load.
**
** Every reader is a prepared statement stepped row by row into a callback,
** so memory stays constant whatever the size of a run.  Blobs read from the
** file are checked against their declared sizes before they are decoded:
** a malformed row gives DB_E_CORRUPT naming the run, position and layer.
** Load heatmaps read only the per-run aggregates (table load), never routes.
*/
#include "db/db_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

static DbRunStatus parse_status(const char *s)
{
    if (!strcmp(s, "complete"))
        return DB_RUN_COMPLETE;
    if (!strcmp(s, "failed"))
        return DB_RUN_FAILED;
    if (!strcmp(s, "interrupted"))
        return DB_RUN_INTERRUPTED;
    return DB_RUN_RUNNING;
}

/* ---- runs -------------------------------------------------------------- */

#define RUN_COLS                                                             \
    "r.id, r.model, r.parent, m.name, m.path, m.arch, r.tag, r.prompt,"      \
    " r.prompt_fmt, r.interventions, r.iv_json, r.created_at,"                \
    " r.finished_at, r.error, r.status, r.seed, r.temp, r.top_p, r.top_k,"   \
    " r.greedy, r.n_predict, r.n_ctx, r.flags, m.n_layer, m.n_expert, m.k,"  \
    " r.n_prompt, r.n_gen, r.t_prompt_ms, r.t_gen_ms, r.source, r.n_counted"

static void run_from_row(sqlite3_stmt *st, DbRun *r)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    r->model = sqlite3_column_int64(st, 1);
    r->parent = sqlite3_column_int64(st, 2);
    r->model_name = col_text(st, 3);
    r->model_path = col_text(st, 4);
    r->arch = col_text(st, 5);
    r->tag = sqlite3_column_type(st, 6) == SQLITE_NULL ? NULL : col_text(st, 6);
    r->prompt = col_text(st, 7);
    r->prompt_fmt = col_text(st, 8);
    r->iv_text = col_text(st, 9);
    r->iv_json = col_text(st, 10);
    r->created_at = col_text(st, 11);
    r->finished_at = col_text(st, 12);
    r->error = sqlite3_column_type(st, 13) == SQLITE_NULL ? NULL : col_text(st, 13);
    r->status = parse_status(col_text(st, 14));
    r->seed = (uint64_t)sqlite3_column_int64(st, 15);
    r->temp = sqlite3_column_double(st, 16);
    r->top_p = sqlite3_column_double(st, 17);
    r->top_k = sqlite3_column_int(st, 18);
    r->greedy = sqlite3_column_int(st, 19);
    r->n_predict = sqlite3_column_int(st, 20);
    r->n_ctx = sqlite3_column_int(st, 21);
    r->flags = sqlite3_column_int(st, 22);
    r->n_layer = sqlite3_column_int(st, 23);
    r->n_expert = sqlite3_column_int(st, 24);
    r->k = sqlite3_column_int(st, 25);
    r->n_prompt = sqlite3_column_int(st, 26);
    r->n_gen = sqlite3_column_int(st, 27);
    r->t_prompt_ms = sqlite3_column_double(st, 28);
    r->t_gen_ms = sqlite3_column_double(st, 29);
    r->source = sqlite3_column_type(st, 30) == SQLITE_NULL ? NULL : col_text(st, 30);
    r->n_counted = sqlite3_column_int64(st, 31);
}

DbStatus db_runs(Db *db, const DbSel *sel, DbRunFn fn, void *user, DbErr *err)
{
    char sql[1024] = "SELECT " RUN_COLS " FROM runs r LEFT JOIN models m ON m.id = r.model"
                     " WHERE ";
    db_sel_where(sel, sql, sizeof sql);
    strncat(sql, " ORDER BY r.id", sizeof sql - strlen(sql) - 1);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->h, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = db_sel_bind(st, sel);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        DbRun r;
        run_from_row(st, &r);
        rc = SQLITE_OK;
        if (fn(user, &r))
            break;
    }
    DbStatus s = DB_OK;
    if (rc != SQLITE_OK && rc != SQLITE_DONE)
        s = db_err_sqlite(err, db->h, rc, "listing runs");
    sqlite3_finalize(st);
    return s;
}

typedef struct {
    DbRun *out;
    int found, nomem;
} RunCopy;

static char *dup_or_null(const char *s, int *nomem)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *nomem = 1;
    return d;
}

static int copy_run(void *user, const DbRun *r)
{
    RunCopy *c = user;
    *c->out = *r;
    c->out->model_name = dup_or_null(r->model_name, &c->nomem);
    c->out->model_path = dup_or_null(r->model_path, &c->nomem);
    c->out->arch = dup_or_null(r->arch, &c->nomem);
    c->out->tag = dup_or_null(r->tag, &c->nomem);
    c->out->prompt = dup_or_null(r->prompt, &c->nomem);
    c->out->prompt_fmt = dup_or_null(r->prompt_fmt, &c->nomem);
    c->out->iv_text = dup_or_null(r->iv_text, &c->nomem);
    c->out->iv_json = dup_or_null(r->iv_json, &c->nomem);
    c->out->created_at = dup_or_null(r->created_at, &c->nomem);
    c->out->finished_at = dup_or_null(r->finished_at, &c->nomem);
    c->out->error = dup_or_null(r->error, &c->nomem);
    c->out->source = dup_or_null(r->source, &c->nomem);
    c->found = 1;
    return 1;
}

void db_run_free(DbRun *r)
{
    if (!r)
        return;
    free((char *)r->model_name);
    free((char *)r->model_path);
    free((char *)r->arch);
    free((char *)r->tag);
    free((char *)r->prompt);
    free((char *)r->prompt_fmt);
    free((char *)r->iv_text);
    free((char *)r->iv_json);
    free((char *)r->created_at);
    free((char *)r->finished_at);
    free((char *)r->error);
    free((char *)r->source);
    memset(r, 0, sizeof *r);
}

DbStatus db_run_get(Db *db, int64_t run, DbRun *out, DbErr *err)
{
    memset(out, 0, sizeof *out);
    if (run <= 0)
        return db_err_set(err, DB_E_ARG, "db_run_get: run id %lld: expected > 0",
                          (long long)run);
    DbSel sel = { .run = run };
    RunCopy c = { out, 0, 0 };
    DbStatus s = db_runs(db, &sel, copy_run, &c, err);
    if (s != DB_OK)
        return s;
    if (c.nomem) {
        db_run_free(out);
        return db_err_set(err, DB_E_NOMEM, "db_run_get: out of memory");
    }
    if (!c.found)
        return db_err_set(err, DB_E_NOTFOUND, "no run %lld in '%s'", (long long)run,
                          db->path);
    return DB_OK;
}

/* ---- tokens ------------------------------------------------------------ */

DbStatus db_tokens(Db *db, int64_t run, DbTokenFn fn, void *user, DbErr *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->h,
        "SELECT pos, token, piece, is_prompt, logprob, top_ids, top_lp FROM tokens"
        " WHERE run = ?1 ORDER BY pos", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 1, run);
    DbStatus s = DB_OK;
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        DbToken t;
        memset(&t, 0, sizeof t);
        rc = SQLITE_OK;
        t.pos = sqlite3_column_int(st, 0);
        t.token = sqlite3_column_int(st, 1);
        t.piece = (const char *)sqlite3_column_text(st, 2);
        t.piece_len = sqlite3_column_bytes(st, 2);
        if (!t.piece)
            t.piece = "";
        t.is_prompt = sqlite3_column_int(st, 3);
        t.logprob = sqlite3_column_type(st, 4) == SQLITE_NULL
                        ? NAN : (float)sqlite3_column_double(st, 4);
        const uint8_t *bi = sqlite3_column_blob(st, 5);
        int ni = sqlite3_column_bytes(st, 5);
        const uint8_t *bl = sqlite3_column_blob(st, 6);
        int nl = sqlite3_column_bytes(st, 6);
        if (ni != nl || ni % 4 || ni / 4 > DB_TOP_MAX) {
            s = db_err_set(err, DB_E_CORRUPT,
                           "run %lld pos %d: top_ids/top_lp blobs of %d/%d bytes, "
                           "expected equal multiples of 4 up to %d", (long long)run,
                           t.pos, ni, nl, 4 * DB_TOP_MAX);
            break;
        }
        t.n_top = ni / 4;
        if (t.n_top) {
            db_get_u32le((uint32_t *)(void *)t.top_ids, bi, t.n_top);
            db_get_f32(t.top_lp, bl, t.n_top);
        }
        if (fn(user, run, &t))
            break;
    }
    if (s == DB_OK && rc != SQLITE_OK && rc != SQLITE_DONE)
        s = db_err_sqlite(err, db->h, rc, "reading tokens");
    sqlite3_finalize(st);
    return s;
}

/* ---- routes ------------------------------------------------------------ */

/* Scratch for decoding one route, grown as needed. */
typedef struct {
    int32_t *experts;
    float *weights, *scores, *logits;
    int cap_k, cap_l;
} RouteBuf;

static int route_buf_fit(RouteBuf *b, int k, int n_logits)
{
    if (k > b->cap_k) {
        int32_t *e = realloc(b->experts, (size_t)k * sizeof *e);
        if (e)
            b->experts = e;
        float *w = realloc(b->weights, (size_t)k * sizeof *w);
        if (w)
            b->weights = w;
        float *s = realloc(b->scores, (size_t)k * sizeof *s);
        if (s)
            b->scores = s;
        if (!e || !w || !s)
            return 0;
        b->cap_k = k;
    }
    if (n_logits > b->cap_l) {
        float *l = realloc(b->logits, (size_t)n_logits * sizeof *l);
        if (!l)
            return 0;
        b->logits = l;
        b->cap_l = n_logits;
    }
    return 1;
}

static void route_buf_free(RouteBuf *b)
{
    free(b->experts);
    free(b->weights);
    free(b->scores);
    free(b->logits);
}

/* Decode columns c.. (k, experts, weights, scores, logits) of st into r.
** Returns DB_OK or DB_E_CORRUPT / DB_E_NOMEM with err filled. */
static DbStatus decode_route(sqlite3_stmt *st, int c, int64_t run, RouteBuf *b,
                             DbRoute *r, DbErr *err)
{
    int k = sqlite3_column_int(st, c);
    const uint8_t *be = sqlite3_column_blob(st, c + 1);
    int ne = sqlite3_column_bytes(st, c + 1);
    const uint8_t *bw = sqlite3_column_blob(st, c + 2);
    int nw = sqlite3_column_bytes(st, c + 2);
    const uint8_t *bs = sqlite3_column_blob(st, c + 3);
    int ns = sqlite3_column_bytes(st, c + 3);
    const uint8_t *bl = sqlite3_column_blob(st, c + 4);
    int nl = sqlite3_column_bytes(st, c + 4);
    if (k <= 0 || k > 65536 || (ne != k && ne != 2 * k) || nw != 4 * k ||
        (ns && ns != 4 * k) || nl % 4)
        return db_err_set(err, DB_E_CORRUPT,
                          "run %lld pos %d layer %d: route blobs do not match k=%d "
                          "(experts %d bytes, weights %d, scores %d, logits %d; "
                          "expected k or 2k, 4k, 0 or 4k, a multiple of 4)",
                          (long long)run, r->pos, r->layer, k, ne, nw, ns, nl);
    if (!route_buf_fit(b, k, nl / 4))
        return db_err_set(err, DB_E_NOMEM, "decoding a route: out of memory");
    int width = ne / k;
    for (int i = 0; i < k; i++)
        b->experts[i] = db_get_expert(be, i, width);
    db_get_f32(b->weights, bw, k);
    r->k = k;
    r->experts = b->experts;
    r->weights = b->weights;
    r->scores = NULL;
    r->logits = NULL;
    if (ns) {
        db_get_f32(b->scores, bs, k);
        r->scores = b->scores;
    }
    if (nl) {
        db_get_f32(b->logits, bl, nl / 4);
        r->logits = b->logits;
        r->n_logits = nl / 4;
    }
    return DB_OK;
}

DbStatus db_routes(Db *db, int64_t run, int32_t pos_from, int32_t pos_to, int layer,
                   DbRouteFn fn, void *user, DbErr *err)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT pos, layer, is_prompt, shared_gate, k, experts, weights, scores,"
             " logits FROM routes WHERE run = ?1 AND pos >= ?2 AND pos <= ?3%s"
             " ORDER BY pos, layer", layer >= 0 ? " AND layer = ?4" : "");
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->h, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run);
        sqlite3_bind_int(st, 2, pos_from);
        sqlite3_bind_int(st, 3, pos_to < 0 ? INT32_MAX : pos_to);
        if (layer >= 0)
            sqlite3_bind_int(st, 4, layer);
    }
    RouteBuf b = { 0 };
    DbStatus s = DB_OK;
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        DbRoute r;
        memset(&r, 0, sizeof r);
        rc = SQLITE_OK;
        r.pos = sqlite3_column_int(st, 0);
        r.layer = sqlite3_column_int(st, 1);
        r.is_prompt = sqlite3_column_int(st, 2);
        r.shared_gate = sqlite3_column_type(st, 3) == SQLITE_NULL
                            ? NAN : (float)sqlite3_column_double(st, 3);
        s = decode_route(st, 4, run, &b, &r, err);
        if (s != DB_OK)
            break;
        if (fn(user, run, &r))
            break;
    }
    if (s == DB_OK && rc != SQLITE_OK && rc != SQLITE_DONE)
        s = db_err_sqlite(err, db->h, rc, "reading routes");
    sqlite3_finalize(st);
    route_buf_free(&b);
    return s;
}

DbStatus db_expert_hits(Db *db, const DbSel *sel, int layer, int expert,
                        DbHitFn fn, void *user, DbErr *err)
{
    char sql[1024] = "SELECT x.run, x.pos, x.is_prompt, x.experts, x.weights, x.k"
                     " FROM runs r JOIN routes x ON x.run = r.id"
                     " WHERE x.layer = ?1 AND ";
    db_sel_where(sel, sql, sizeof sql);
    strncat(sql, " ORDER BY x.run, x.pos", sizeof sql - strlen(sql) - 1);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->h, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 1, layer);
    if (rc == SQLITE_OK)
        rc = db_sel_bind(st, sel);
    DbStatus s = DB_OK;
    int stop = 0;
    while (!stop && rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        int64_t run = sqlite3_column_int64(st, 0);
        int pos = sqlite3_column_int(st, 1);
        int k = sqlite3_column_int(st, 5);
        const uint8_t *be = sqlite3_column_blob(st, 3);
        int ne = sqlite3_column_bytes(st, 3);
        const uint8_t *bw = sqlite3_column_blob(st, 4);
        int nw = sqlite3_column_bytes(st, 4);
        if (k <= 0 || (ne != k && ne != 2 * k) || nw != 4 * k) {
            s = db_err_set(err, DB_E_CORRUPT,
                           "run %lld pos %d layer %d: route blobs do not match k=%d "
                           "(experts %d bytes, weights %d)", (long long)run, pos,
                           layer, k, ne, nw);
            break;
        }
        int width = ne / k;
        for (int i = 0; i < k; i++) {
            if (db_get_expert(be, i, width) != expert)
                continue;
            float w;
            db_get_f32(&w, bw + 4 * i, 1);
            if (fn(user, run, pos, i, w, sqlite3_column_int(st, 2)))
                stop = 1;
            break;
        }
    }
    if (s == DB_OK && rc != SQLITE_OK && rc != SQLITE_DONE)
        s = db_err_sqlite(err, db->h, rc, "reading expert hits");
    sqlite3_finalize(st);
    return s;
}

DbStatus db_tags(Db *db, DbTagFn fn, void *user, DbErr *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->h,
        "SELECT tag, count(*) FROM runs WHERE tag IS NOT NULL GROUP BY tag ORDER BY tag",
        -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        if (fn(user, col_text(st, 0), sqlite3_column_int(st, 1)))
            break;
    }
    DbStatus s = DB_OK;
    if (rc != SQLITE_OK && rc != SQLITE_DONE)
        s = db_err_sqlite(err, db->h, rc, "listing tags");
    sqlite3_finalize(st);
    return s;
}

/* ---- load -------------------------------------------------------------- */

void db_load_free(DbLoad *l)
{
    if (!l)
        return;
    free(l->count);
    free(l->weight);
    free(l->count_prompt);
    free(l->weight_prompt);
    memset(l, 0, sizeof *l);
}

static DbStatus load_read(Db *db, const DbSel *sel, DbLoad *out, DbErr *err);

DbStatus db_load(Db *db, const DbSel *sel, DbLoad *out, DbErr *err)
{
    memset(out, 0, sizeof *out);
    /* both statements read one snapshot: a run completing in between must
    ** not be half counted */
    int own_txn = sqlite3_get_autocommit(db->h);
    if (own_txn) {
        int rc0 = sqlite3_exec(db->h, "BEGIN", NULL, NULL, NULL);
        if (rc0 != SQLITE_OK)
            return db_err_sqlite(err, db->h, rc0, "reading load");
    }
    DbStatus s = load_read(db, sel, out, err);
    if (own_txn)
        sqlite3_exec(db->h, s == DB_OK ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
    return s;
}

static DbStatus load_read(Db *db, const DbSel *sel, DbLoad *out, DbErr *err)
{
    char sql[1024] = "SELECT max(m.n_layer), max(m.n_expert), count(*), sum(r.n_prompt),"
                     " sum(r.n_gen), sum(r.flags & 16 <> 0), sum(coalesce(r.n_counted, 0))"
                     " FROM runs r JOIN models m ON m.id = r.model"
                     " WHERE r.status = 'complete' AND ";
    db_sel_where(sel, sql, sizeof sql);
    sqlite3_stmt *st = NULL;
    DbStatus s = DB_OK;
    int rc = sqlite3_prepare_v2(db->h, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = db_sel_bind(st, sel);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        out->n_layer = sqlite3_column_int(st, 0);
        out->n_expert = sqlite3_column_int(st, 1);
        out->n_runs = sqlite3_column_int(st, 2);
        out->n_prompt = sqlite3_column_int64(st, 3);
        out->n_gen = sqlite3_column_int64(st, 4);
        out->n_counts_only = sqlite3_column_int(st, 5);
        out->n_counted = sqlite3_column_int64(st, 6);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc != SQLITE_OK)
        return db_err_sqlite(err, db->h, rc, "reading load");
    size_t cells = (size_t)out->n_layer * (size_t)out->n_expert;
    if (cells) {
        out->count = calloc(cells, sizeof *out->count);
        out->weight = calloc(cells, sizeof *out->weight);
        out->count_prompt = calloc(cells, sizeof *out->count_prompt);
        out->weight_prompt = calloc(cells, sizeof *out->weight_prompt);
        if (!out->count || !out->weight || !out->count_prompt || !out->weight_prompt) {
            db_load_free(out);
            return db_err_set(err, DB_E_NOMEM, "reading load: out of memory");
        }
    }
    if (sel && sel->run <= 0 && sel->tag && sel->model <= 0) {
        /* a whole tag: the per-tag sums the triggers keep */
        snprintf(sql, sizeof sql, "SELECT layer, expert, n, w, n_prompt, w_prompt"
                 " FROM tag_load WHERE tag = ?92");
    } else {
        /* sum in C: the rows arrive in (run, layer, expert) order, no sort */
        snprintf(sql, sizeof sql,
                 "SELECT l.layer, l.expert, l.n, l.w, l.n_prompt, l.w_prompt"
                 " FROM runs r JOIN load l ON l.run = r.id WHERE r.status = 'complete' AND ");
        db_sel_where(sel, sql, sizeof sql);
    }
    rc = sqlite3_prepare_v2(db->h, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = db_sel_bind(st, sel);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        int l = sqlite3_column_int(st, 0), e = sqlite3_column_int(st, 1);
        if (l < 0 || l >= out->n_layer || e < 0 || e >= out->n_expert) {
            s = db_err_set(err, DB_E_CORRUPT, "load row (layer %d, expert %d) outside "
                           "the models' %d layers x %d experts", l, e, out->n_layer,
                           out->n_expert);
            break;
        }
        size_t i = (size_t)l * (size_t)out->n_expert + (size_t)e;
        out->count[i] += sqlite3_column_int64(st, 2);
        out->weight[i] += sqlite3_column_double(st, 3);
        out->count_prompt[i] += sqlite3_column_int64(st, 4);
        out->weight_prompt[i] += sqlite3_column_double(st, 5);
    }
    if (s == DB_OK && rc != SQLITE_OK && rc != SQLITE_DONE)
        s = db_err_sqlite(err, db->h, rc, "reading load");
    sqlite3_finalize(st);
    if (s != DB_OK)
        db_load_free(out);
    return s;
}
