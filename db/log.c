/*
** db/log.c — the run logger: buffered appends, a background flusher,
** batched transactions, per-run aggregates.
**
** The caller's hot path (the engine's route callback) must stay cheap, so
** db_log_route only encodes the record into a byte arena (a few memcpy) and
** adds its weights to the in-memory layer×expert aggregates.  There are two
** batches: the caller fills one while the flusher thread writes the other in
** one BEGIN IMMEDIATE … COMMIT with prepared statements.  When the caller's
** batch is full and the flusher is still busy, the caller waits (back
** pressure) rather than grow memory without bound.
**
** The final transaction (db_log_finish, on the caller's thread after the
** flusher has stopped) writes the last rows, the aggregates and the status
** together: a run reads as 'complete' only when everything of it is there.
** A failed flush is sticky: later appends return its status and the run can
** only be finished as failed.
**
** Arena records (host byte order for the headers, blob bytes already in
** their stored encoding so the flusher binds them without copying):
**   token: TokRec, then piece_len bytes, padded to 8
**   route: RouteRec, experts (k × width), weights (k × 4), [scores k × 4],
**          [logits n_expert × 4], padded to 8
*/
#include "db/db_int.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    int32_t pos, token, is_prompt, piece_len, n_top;
    float logprob;
    int32_t top_ids[DB_TOP_MAX];
    float top_lp[DB_TOP_MAX];
} TokRec;

enum { RR_SCORES = 1, RR_LOGITS = 2 };

typedef struct {
    int32_t pos, layer, is_prompt, k, has;
    float shared_gate;
} RouteRec;

typedef struct {
    uint8_t *a;             /* records, back to back */
    size_t n, cap;          /* bytes used / allocated */
    int n_tok, n_route;
} Batch;

struct DbLog {
    sqlite3 *h;             /* own connection; used by one thread at a time */
    int64_t run;
    int flags;              /* DB_RUN_* */
    int n_layer, n_expert, width;
    int flush_every;

    /* aggregates, n_layer × n_expert, touched by the caller only */
    int64_t *cnt, *cnt_p;
    double *w, *w_p;
    int n_prompt, n_gen;    /* tokens appended */

    Batch b[2];
    int cur;                /* the caller fills b[cur] */
    int pending;            /* batch handed to the flusher, -1 = none */
    int quit;
    pthread_t th;
    int th_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int failed;      /* set once by the flusher */
    DbErr ferr;             /* the flush error (under mu) */

    /* prepared statements on h */
    sqlite3_stmt *ins_tok, *ins_route, *ins_load, *upd_progress;
    int stored_prompt, stored_gen;  /* tokens committed (flusher/finish) */
    double last_hand_off;           /* monotonic seconds */
};

/* Seconds after which a partly filled batch is written if the flusher is
** idle. */
#define DB_LOG_MAX_AGE 0.25

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- arena ------------------------------------------------------------- */

static uint8_t *batch_reserve(Batch *b, size_t need)
{
    need = (need + 7) & ~(size_t)7;
    if (b->n + need > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->n + need)
            cap *= 2;
        uint8_t *a = realloc(b->a, cap);
        if (!a)
            return NULL;
        b->a = a;
        b->cap = cap;
    }
    uint8_t *p = b->a + b->n;
    b->n += need;
    return p;
}

static void batch_reset(Batch *b)
{
    b->n = 0;
    b->n_tok = 0;
    b->n_route = 0;
}

/* ---- writing a batch --------------------------------------------------- */

static int write_token(DbLog *lg, const uint8_t *p, size_t *adv)
{
    TokRec t;
    memcpy(&t, p, sizeof t);
    const uint8_t *piece = p + sizeof t;
    uint8_t top_ids[DB_TOP_MAX * 4], top_lp[DB_TOP_MAX * 4];
    sqlite3_stmt *st = lg->ins_tok;

    *adv = (sizeof t + (size_t)t.piece_len + 7) & ~(size_t)7;
    sqlite3_bind_int(st, 2, t.pos);
    sqlite3_bind_int(st, 3, t.token);
    sqlite3_bind_text(st, 4, (const char *)piece, t.piece_len, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, t.is_prompt);
    if (isnan(t.logprob))
        sqlite3_bind_null(st, 6);
    else
        sqlite3_bind_double(st, 6, t.logprob);
    if (t.n_top > 0) {
        db_put_u32le(top_ids, (const uint32_t *)(const void *)t.top_ids, t.n_top);
        db_put_f32(top_lp, t.top_lp, t.n_top);
        sqlite3_bind_blob(st, 7, top_ids, t.n_top * 4, SQLITE_STATIC);
        sqlite3_bind_blob(st, 8, top_lp, t.n_top * 4, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(st, 7);
        sqlite3_bind_null(st, 8);
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) {
        if (t.is_prompt)
            lg->stored_prompt++;
        else
            lg->stored_gen++;
    }
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int write_route(DbLog *lg, const uint8_t *p, size_t *adv)
{
    RouteRec r;
    memcpy(&r, p, sizeof r);
    const uint8_t *q = p + sizeof r;
    size_t ne = (size_t)r.k * (size_t)lg->width, nw = (size_t)r.k * 4;
    size_t ns = (r.has & RR_SCORES) ? nw : 0;
    size_t nl = (r.has & RR_LOGITS) ? (size_t)lg->n_expert * 4 : 0;
    sqlite3_stmt *st = lg->ins_route;

    *adv = (sizeof r + ne + nw + ns + nl + 7) & ~(size_t)7;
    sqlite3_bind_int(st, 2, r.pos);
    sqlite3_bind_int(st, 3, r.layer);
    sqlite3_bind_int(st, 4, r.is_prompt);
    sqlite3_bind_int(st, 5, r.k);
    sqlite3_bind_blob(st, 6, q, (int)ne, SQLITE_STATIC);
    sqlite3_bind_blob(st, 7, q + ne, (int)nw, SQLITE_STATIC);
    if (ns)
        sqlite3_bind_blob(st, 8, q + ne + nw, (int)ns, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 8);
    if (nl)
        sqlite3_bind_blob(st, 9, q + ne + nw + ns, (int)nl, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 9);
    if (isnan(r.shared_gate))
        sqlite3_bind_null(st, 10);
    else
        sqlite3_bind_double(st, 10, r.shared_gate);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Write the records of b; with final set, also the aggregates and the end
** status, all in one transaction.  Returns DB_OK or fills err. */
static DbStatus write_batch(DbLog *lg, Batch *b, int final, DbRunStatus status,
                            const DbRunStats *stats, DbErr *err)
{
    sqlite3 *h = lg->h;
    int saved_prompt = lg->stored_prompt, saved_gen = lg->stored_gen;
    int rc = sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    const char *what = "starting a write transaction";

    /* records in arena order: tokens and routes interleaved */
    size_t off = 0;
    int n_tok = 0, n_route = 0;
    while (rc == SQLITE_OK && off < b->n) {
        size_t adv = 0;
        int32_t kind;
        memcpy(&kind, b->a + off, 4);
        if (kind == 0) {
            what = "writing a token";
            rc = write_token(lg, b->a + off + 8, &adv);
            n_tok++;
        } else {
            what = "writing a route";
            rc = write_route(lg, b->a + off + 8, &adv);
            n_route++;
        }
        off += 8 + adv;
    }
    if (rc == SQLITE_OK && final) {
        what = "writing the aggregates";
        sqlite3_stmt *st = lg->ins_load;
        for (int l = 0; l < lg->n_layer && rc == SQLITE_OK; l++)
            for (int e = 0; e < lg->n_expert && rc == SQLITE_OK; e++) {
                size_t i = (size_t)l * (size_t)lg->n_expert + (size_t)e;
                if (!lg->cnt[i])
                    continue;
                sqlite3_bind_int(st, 2, l);
                sqlite3_bind_int(st, 3, e);
                sqlite3_bind_int64(st, 4, lg->cnt[i]);
                sqlite3_bind_double(st, 5, lg->w[i]);
                sqlite3_bind_int64(st, 6, lg->cnt_p[i]);
                sqlite3_bind_double(st, 7, lg->w_p[i]);
                rc = sqlite3_step(st);
                sqlite3_reset(st);
                if (rc == SQLITE_DONE)
                    rc = SQLITE_OK;
            }
    }
    if (rc == SQLITE_OK) {
        what = "updating the run";
        sqlite3_stmt *st = NULL;
        if (final) {
            rc = sqlite3_prepare_v2(h,
                "UPDATE runs SET status = ?2, n_prompt = ?3, n_gen = ?4,"
                " t_prompt_ms = ?5, t_gen_ms = ?6, error = ?7,"
                " finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
                " WHERE id = ?1", -1, &st, NULL);
            if (rc == SQLITE_OK) {
                sqlite3_bind_text(st, 2, db_run_status_str(status), -1, SQLITE_STATIC);
                if (stats) {
                    sqlite3_bind_double(st, 5, stats->t_prompt_ms);
                    sqlite3_bind_double(st, 6, stats->t_gen_ms);
                    if (stats->error)
                        sqlite3_bind_text(st, 7, stats->error, -1, SQLITE_TRANSIENT);
                }
            }
        } else {
            st = lg->upd_progress;
        }
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, lg->run);
            sqlite3_bind_int(st, 3, lg->stored_prompt);
            sqlite3_bind_int(st, 4, lg->stored_gen);
            rc = sqlite3_step(st);
            if (rc == SQLITE_DONE)
                rc = SQLITE_OK;
        }
        if (final)
            sqlite3_finalize(st);
        else
            sqlite3_reset(st);
    }
    if (rc == SQLITE_OK) {
        what = "committing";
        rc = sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        char msg[160];
        snprintf(msg, sizeof msg, "logging run %lld: %s (batch of %d tokens, %d routes)",
                 (long long)lg->run, what, n_tok, n_route);
        DbStatus s = db_err_sqlite(err, h, rc, msg);
        if (!sqlite3_get_autocommit(h))
            sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
        lg->stored_prompt = saved_prompt;
        lg->stored_gen = saved_gen;
        return s;
    }
    return DB_OK;
}

/* ---- the flusher thread ------------------------------------------------ */

static void *flusher(void *arg)
{
    DbLog *lg = arg;
    pthread_mutex_lock(&lg->mu);
    for (;;) {
        while (lg->pending < 0 && !lg->quit)
            pthread_cond_wait(&lg->cv, &lg->mu);
        if (lg->pending < 0)
            break;
        Batch *b = &lg->b[lg->pending];
        pthread_mutex_unlock(&lg->mu);
        DbErr e;
        DbStatus s = atomic_load(&lg->failed) ? DB_OK
                                              : write_batch(lg, b, 0, DB_RUN_RUNNING, NULL, &e);
        pthread_mutex_lock(&lg->mu);
        if (s != DB_OK) {
            lg->ferr = e;
            atomic_store(&lg->failed, 1);
        }
        batch_reset(b);
        lg->pending = -1;
        pthread_cond_broadcast(&lg->cv);
    }
    pthread_mutex_unlock(&lg->mu);
    return NULL;
}

/* Hand the caller's batch to the flusher (waiting for the previous one). */
static DbStatus hand_off(DbLog *lg)
{
    pthread_mutex_lock(&lg->mu);
    while (lg->pending >= 0)
        pthread_cond_wait(&lg->cv, &lg->mu);
    DbStatus s = atomic_load(&lg->failed) ? lg->ferr.status : DB_OK;
    if (s == DB_OK) {
        lg->pending = lg->cur;
        lg->cur ^= 1;
        pthread_cond_broadcast(&lg->cv);
    }
    pthread_mutex_unlock(&lg->mu);
    return s;
}

static void wait_idle(DbLog *lg)
{
    pthread_mutex_lock(&lg->mu);
    while (lg->pending >= 0)
        pthread_cond_wait(&lg->cv, &lg->mu);
    pthread_mutex_unlock(&lg->mu);
}

/* ---- begin ------------------------------------------------------------- */

static void log_free(DbLog *lg)
{
    if (!lg)
        return;
    if (lg->th_started) {
        pthread_mutex_lock(&lg->mu);
        lg->quit = 1;
        pthread_cond_broadcast(&lg->cv);
        pthread_mutex_unlock(&lg->mu);
        pthread_join(lg->th, NULL);
        pthread_mutex_destroy(&lg->mu);
        pthread_cond_destroy(&lg->cv);
    }
    sqlite3_finalize(lg->ins_tok);
    sqlite3_finalize(lg->ins_route);
    sqlite3_finalize(lg->ins_load);
    sqlite3_finalize(lg->upd_progress);
    sqlite3_close(lg->h);
    free(lg->b[0].a);
    free(lg->b[1].a);
    free(lg->cnt);
    free(lg->cnt_p);
    free(lg->w);
    free(lg->w_p);
    free(lg);
}

static int prepare_all(DbLog *lg)
{
    int rc = sqlite3_prepare_v3(lg->h,
        "INSERT INTO tokens(run, pos, token, piece, is_prompt, logprob, top_ids, top_lp)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", -1, SQLITE_PREPARE_PERSISTENT,
        &lg->ins_tok, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(lg->h,
            "INSERT INTO routes(run, pos, layer, is_prompt, k, experts, weights,"
            " scores, logits, shared_gate) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            -1, SQLITE_PREPARE_PERSISTENT, &lg->ins_route, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(lg->h,
            "INSERT INTO load(run, layer, expert, n, w, n_prompt, w_prompt)"
            " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)", -1, SQLITE_PREPARE_PERSISTENT,
            &lg->ins_load, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(lg->h,
            "UPDATE runs SET n_prompt = ?3, n_gen = ?4 WHERE id = ?1", -1,
            SQLITE_PREPARE_PERSISTENT, &lg->upd_progress, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(lg->ins_tok, 1, lg->run);
        sqlite3_bind_int64(lg->ins_route, 1, lg->run);
        sqlite3_bind_int64(lg->ins_load, 1, lg->run);
    }
    return rc;
}

DbLog *db_log_begin(Db *db, const DbRunInfo *ri, int flush_every, DbErr *err)
{
    if (db->flags & DB_OPEN_READONLY) {
        db_err_set(err, DB_E_READONLY, "db_log_begin: database '%s' was opened read-only",
                   db->path);
        return NULL;
    }
    DbLog *lg = calloc(1, sizeof *lg);
    if (!lg) {
        db_err_set(err, DB_E_NOMEM, "db_log_begin: out of memory");
        return NULL;
    }
    lg->flags = ri->flags;
    lg->flush_every = flush_every > 0 ? flush_every : 16384;
    lg->pending = -1;
    int version = 0;
    lg->h = db_connect(db->path, db->flags & ~DB_OPEN_CREATE, &version, err);
    if (!lg->h)
        goto fail;

    /* the model gives the shape */
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(lg->h, "SELECT n_layer, n_expert FROM models WHERE id = ?",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, ri->model);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            lg->n_layer = sqlite3_column_int(st, 0);
            lg->n_expert = sqlite3_column_int(st, 1);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            sqlite3_finalize(st);
            db_err_set(err, DB_E_NOTFOUND, "db_log_begin: no model with id %lld in '%s'",
                       (long long)ri->model, db->path);
            goto fail;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) {
        db_err_sqlite(err, lg->h, rc, "db_log_begin: reading the model");
        goto fail;
    }
    lg->width = db_expert_width(lg->n_expert);
    size_t cells = (size_t)lg->n_layer * (size_t)lg->n_expert;
    lg->cnt = calloc(cells, sizeof *lg->cnt);
    lg->cnt_p = calloc(cells, sizeof *lg->cnt_p);
    lg->w = calloc(cells, sizeof *lg->w);
    lg->w_p = calloc(cells, sizeof *lg->w_p);
    if (!lg->cnt || !lg->cnt_p || !lg->w || !lg->w_p) {
        db_err_set(err, DB_E_NOMEM, "db_log_begin: out of memory for %zu aggregates", cells);
        goto fail;
    }

    /* the run row, committed now so its id is visible */
    char writer[96];
    db_writer_id(writer, sizeof writer);
    const char *iv_json = ri->iv_json ? ri->iv_json : "[]";
    rc = sqlite3_prepare_v2(lg->h,
        "INSERT INTO runs(model, parent, tag, prompt, prompt_fmt, interventions,"
        " iv_json, seed, temp, top_p, top_k, greedy, n_predict, n_ctx, flags,"
        " status, created_at, writer, source)"
        " SELECT ?1, ?2, ?3, ?4, ?5, ?6, json(?7), ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
        " ?15, 'running', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?16, ?17"
        " WHERE json_valid(?7) AND json_type(?7) = 'array'", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        if (ri->parent > 0)
            sqlite3_bind_int64(st, 2, ri->parent);
        sqlite3_bind_int64(st, 1, ri->model);
        if (ri->tag)
            sqlite3_bind_text(st, 3, ri->tag, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, ri->prompt ? ri->prompt : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, ri->prompt_fmt ? ri->prompt_fmt : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, ri->iv_text ? ri->iv_text : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, iv_json, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 8, (sqlite3_int64)ri->seed);
        sqlite3_bind_double(st, 9, ri->temp);
        sqlite3_bind_double(st, 10, ri->top_p);
        sqlite3_bind_int(st, 11, ri->top_k);
        sqlite3_bind_int(st, 12, ri->greedy);
        sqlite3_bind_int(st, 13, ri->n_predict);
        sqlite3_bind_int(st, 14, ri->n_ctx);
        sqlite3_bind_int(st, 15, ri->flags);
        sqlite3_bind_text(st, 16, writer, -1, SQLITE_STATIC);
        if (ri->source)
            sqlite3_bind_text(st, 17, ri->source, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) {
        db_err_sqlite(err, lg->h, rc, "db_log_begin: inserting the run");
        goto fail;
    }
    if (sqlite3_changes(lg->h) != 1) {
        db_err_set(err, DB_E_ARG, "db_log_begin: iv_json is not a JSON array: '%.200s'",
                   iv_json);
        goto fail;
    }
    lg->run = sqlite3_last_insert_rowid(lg->h);
    rc = prepare_all(lg);
    if (rc != SQLITE_OK) {
        db_err_sqlite(err, lg->h, rc, "db_log_begin: preparing statements");
        goto fail;
    }
    if (pthread_mutex_init(&lg->mu, NULL) != 0) {
        db_err_set(err, DB_E_NOMEM, "db_log_begin: cannot create a mutex");
        goto fail;
    }
    if (pthread_cond_init(&lg->cv, NULL) != 0) {
        pthread_mutex_destroy(&lg->mu);
        db_err_set(err, DB_E_NOMEM, "db_log_begin: cannot create a condition variable");
        goto fail;
    }
    if (pthread_create(&lg->th, NULL, flusher, lg) != 0) {
        pthread_mutex_destroy(&lg->mu);
        pthread_cond_destroy(&lg->cv);
        db_err_set(err, DB_E_NOMEM, "db_log_begin: cannot start the flusher thread");
        goto fail;
    }
    /* size both batches for a typical full batch up front: no growth (and
    ** no page faults) on the caller's path once logging runs */
    size_t want = (size_t)lg->flush_every * (8 + sizeof(RouteRec) + 48);
    for (int i = 0; i < 2; i++) {
        if (batch_reserve(&lg->b[i], want))
            batch_reset(&lg->b[i]);
    }
    lg->th_started = 1;
    lg->last_hand_off = mono_s();
    return lg;
fail:
    if (lg->run > 0)
        sqlite3_exec(lg->h, "UPDATE runs SET status = 'failed' WHERE id = last_insert_rowid()",
                     NULL, NULL, NULL);
    log_free(lg);
    return NULL;
}

int64_t db_log_run_id(const DbLog *lg)
{
    return lg->run;
}

/* ---- appending --------------------------------------------------------- */

/* A full batch is handed off (waiting if need be).  A batch older than
** DB_LOG_MAX_AGE is handed off only if the flusher is idle: readers then
** see a slow run's progress without the caller ever waiting for it. */
static DbStatus maybe_hand_off(DbLog *lg)
{
    Batch *b = &lg->b[lg->cur];
    int n = b->n_tok + b->n_route;
    if (n >= lg->flush_every) {
        lg->last_hand_off = mono_s();
        return hand_off(lg);
    }
    if ((n & 255) != 0)
        return DB_OK;
    double now = mono_s();
    if (now - lg->last_hand_off < DB_LOG_MAX_AGE)
        return DB_OK;
    DbStatus s = DB_OK;
    pthread_mutex_lock(&lg->mu);
    if (atomic_load(&lg->failed)) {
        s = lg->ferr.status;
    } else if (lg->pending < 0) {
        lg->pending = lg->cur;
        lg->cur ^= 1;
        lg->last_hand_off = now;
        pthread_cond_broadcast(&lg->cv);
    }
    pthread_mutex_unlock(&lg->mu);
    return s;
}

DbStatus db_log_token(DbLog *lg, const DbToken *t)
{
    if (atomic_load(&lg->failed))
        return lg->ferr.status;
    int plen = t->piece ? (t->piece_len >= 0 ? t->piece_len : (int)strlen(t->piece)) : 0;
    if (t->pos < 0 || t->n_top < 0 || t->n_top > DB_TOP_MAX || plen > (1 << 20))
        return DB_E_ARG;
    Batch *b = &lg->b[lg->cur];
    uint8_t *p = batch_reserve(b, 8 + sizeof(TokRec) + (size_t)plen);
    if (!p)
        return DB_E_NOMEM;
    TokRec r;
    memset(&r, 0, sizeof r);
    r.pos = t->pos;
    r.token = t->token;
    r.is_prompt = t->is_prompt ? 1 : 0;
    r.piece_len = plen;
    r.n_top = t->n_top;
    r.logprob = t->logprob;
    memcpy(r.top_ids, t->top_ids, (size_t)t->n_top * sizeof r.top_ids[0]);
    memcpy(r.top_lp, t->top_lp, (size_t)t->n_top * sizeof r.top_lp[0]);
    int32_t kind[2] = { 0, 0 };
    memcpy(p, kind, 8);
    memcpy(p + 8, &r, sizeof r);
    if (plen)
        memcpy(p + 8 + sizeof r, t->piece, (size_t)plen);
    b->n_tok++;
    if (r.is_prompt)
        lg->n_prompt++;
    else
        lg->n_gen++;
    return maybe_hand_off(lg);
}

DbStatus db_log_route(DbLog *lg, const DbRoute *r)
{
    if (atomic_load(&lg->failed))
        return lg->ferr.status;
    if (r->pos < 0 || r->layer < 0 || r->layer >= lg->n_layer || r->k <= 0 ||
        r->k > lg->n_expert || !r->experts || !r->weights)
        return DB_E_ARG;
    for (int i = 0; i < r->k; i++)
        if (r->experts[i] < 0 || r->experts[i] >= lg->n_expert)
            return DB_E_ARG;
    int has = 0;
    if ((lg->flags & DB_RUN_SCORES) && r->scores)
        has |= RR_SCORES;
    if ((lg->flags & DB_RUN_LOGITS) && r->logits)
        has |= RR_LOGITS;
    size_t ne = (size_t)r->k * (size_t)lg->width, nw = (size_t)r->k * 4;
    size_t ns = (has & RR_SCORES) ? nw : 0;
    size_t nl = (has & RR_LOGITS) ? (size_t)lg->n_expert * 4 : 0;
    Batch *b = &lg->b[lg->cur];
    uint8_t *p = batch_reserve(b, 8 + sizeof(RouteRec) + ne + nw + ns + nl);
    if (!p)
        return DB_E_NOMEM;
    RouteRec h = { r->pos, r->layer, r->is_prompt ? 1 : 0, r->k, has, r->shared_gate };
    int32_t kind[2] = { 1, 0 };
    memcpy(p, kind, 8);
    memcpy(p + 8, &h, sizeof h);
    uint8_t *q = p + 8 + sizeof h;
    db_put_experts(q, r->experts, r->k, lg->width);
    db_put_f32(q + ne, r->weights, r->k);
    if (ns)
        db_put_f32(q + ne + nw, r->scores, r->k);
    if (nl)
        db_put_f32(q + ne + nw + ns, r->logits, lg->n_expert);
    b->n_route++;

    size_t row = (size_t)r->layer * (size_t)lg->n_expert;
    for (int i = 0; i < r->k; i++) {
        size_t c = row + (size_t)r->experts[i];
        lg->cnt[c]++;
        lg->w[c] += r->weights[i];
        if (h.is_prompt) {
            lg->cnt_p[c]++;
            lg->w_p[c] += r->weights[i];
        }
    }
    return maybe_hand_off(lg);
}

DbStatus db_log_flush(DbLog *lg, DbErr *err)
{
    DbStatus s = DB_OK;
    if (lg->b[lg->cur].n)
        s = hand_off(lg);
    wait_idle(lg);
    if (s == DB_OK && atomic_load(&lg->failed))
        s = lg->ferr.status;
    if (s != DB_OK) {
        if (atomic_load(&lg->failed)) {
            if (err)
                *err = lg->ferr;
        } else {
            db_err_set(err, s, "logging run %lld: %s", (long long)lg->run, db_status_str(s));
        }
    }
    return s;
}

/* ---- finish ------------------------------------------------------------ */

DbStatus db_log_finish(DbLog *lg, DbRunStatus status, const DbRunStats *st, DbErr *err)
{
    if (!lg)
        return db_err_set(err, DB_E_ARG, "db_log_finish: no log");
    wait_idle(lg);
    /* stop the flusher: from here on the connection is ours */
    pthread_mutex_lock(&lg->mu);
    lg->quit = 1;
    pthread_cond_broadcast(&lg->cv);
    pthread_mutex_unlock(&lg->mu);
    pthread_join(lg->th, NULL);
    lg->th_started = 0;
    pthread_mutex_destroy(&lg->mu);
    pthread_cond_destroy(&lg->cv);

    DbStatus s = DB_OK;
    if (status != DB_RUN_COMPLETE && status != DB_RUN_FAILED)
        s = db_err_set(err, DB_E_ARG, "db_log_finish: status must be complete or failed, "
                       "got %s", db_run_status_str(status));
    else if (atomic_load(&lg->failed)) {
        if (err)
            *err = lg->ferr;
        s = lg->ferr.status;
    }
    if (s == DB_OK)
        s = write_batch(lg, &lg->b[lg->cur], 1, status, st, err);
    if (s != DB_OK) {
        /* the rows could not all be written: the run can't be complete;
        ** mark it failed if the file still takes a small write */
        const char *why = err ? err->msg : db_status_str(s);
        sqlite3_stmt *u = NULL;
        if (sqlite3_prepare_v2(lg->h, "UPDATE runs SET status = 'failed', error = ?2,"
                               " finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
                               " WHERE id = ?1", -1, &u, NULL) == SQLITE_OK) {
            sqlite3_bind_int64(u, 1, lg->run);
            sqlite3_bind_text(u, 2, why, -1, SQLITE_TRANSIENT);
            sqlite3_step(u);
        }
        sqlite3_finalize(u);
    }
    log_free(lg);
    return s;
}
