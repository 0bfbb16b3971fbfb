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
** their stored encoding so the flusher binds them without copying), each
** after an 8-byte kind word:
**   token: TokRec, then piece_len bytes, padded to 8
**   route: RouteRec, experts (k × width), weights (k × 4), [scores k × 4],
**          [logits n_expert × 4], padded to 8
**   begin: BeginRec, then its strings (bulk logs only: a new run)
**   end:   EndRec, its error string, then n_cells LoadCell (the run's
**          aggregates) — the run's last record
** A run's end record is written in the same transaction as the rest of its
** batch, so its status, aggregates and last rows commit together.
**
** Speed: routes are the bulk (one row per token per MoE layer).  They are
** inserted ROUTE_ROWS at a time through one multi-row INSERT: one statement
** step per ROUTE_ROWS rows instead of one per row, and the table cursor stays
** on the right-most leaf between rows, where every new key goes (SQLite then
** skips the descent from the root).  This is about 1.5× the rows per CPU
** second of one INSERT per row.  Tokens (one per n_layer routes) go one by
** one.
**
** A finished run log parks its connection (with its prepared statements and
** warm page cache) and its batch buffers on its Db; the next log on that Db
** takes them, so many short runs in one process (eval) pay no connect,
** prepare or page faults per run.
**
** Bulk logs (db_log_bulk_begin, db/db_int.h: the importer) carry many runs
** through one connection and one flusher: a run's begin and end are records
** in the stream, so runs follow each other without the caller waiting, and
** one transaction holds the rows of as many runs as fit in a batch.
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

/* Record kinds (the first int32 of a record's 8-byte kind word). */
enum { REC_TOKEN = 0, REC_ROUTE = 1, REC_BEGIN = 2, REC_END = 3 };

/* A run to insert (bulk logs); the strings follow, each len bytes (-1 =
** NULL), in the order of BEGIN_STRINGS. */
enum { BS_TAG, BS_PROMPT, BS_PROMPT_FMT, BS_IV_TEXT, BS_IV_JSON, BS_SOURCE, BEGIN_STRINGS };
typedef struct {
    int64_t parent;
    uint64_t seed;
    int64_t n_counted;
    float temp, top_p;
    int32_t top_k, greedy, n_predict, n_ctx, flags;
    int32_t len[BEGIN_STRINGS];
} BeginRec;

/* The end of a run: status and stats, then the error string (error_len
** bytes, -1 = NULL), then n_cells aggregates. */
typedef struct {
    int32_t status, has_stats, error_len, n_cells;
    double t_prompt_ms, t_gen_ms;
} EndRec;

typedef struct {
    int32_t layer, expert;
    int64_t n, n_p;
    double w, w_p;
} LoadCell;

/* Largest batch buffer a finished log leaves on its Db for the next one. */
#define SPARE_MAX (4u << 20)

/* Routes per multi-row INSERT (capped by the connection's variable limit:
** 10 × rows parameters). */
#define ROUTE_ROWS 128

typedef struct {
    uint8_t *a;             /* records, back to back */
    size_t n, cap;          /* bytes used / allocated */
    int n_tok, n_route;
    int n_ctl;              /* begin and end records */
} Batch;

struct DbLog {
    sqlite3 *h;             /* own connection; used by one thread at a time */
    int64_t run;            /* the run being written (bulk: by the flusher;
                               0 between runs) */
    int64_t model;
    int bulk;               /* many runs, begun and ended by records */
    int open;               /* caller side: a run is open for appends */
    int64_t first, last;    /* bulk: ids of the first and last run inserted */
    char writer[96];        /* runs.writer of this process */
    int flags;              /* DB_RUN_* of the run being appended */
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
    int sync_made;          /* mu and cv initialised */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int failed;      /* set once by the flusher */

    /* the checkpointer: a thread with its own connection that copies the
    ** WAL into the database file while the flusher goes on writing */
    char *path;             /* the database, for its connection */
    Db *db;                 /* for its spare batch buffers */
    int db_flags;
    atomic_int wal_frames;  /* frames in the WAL after our last commit */
    pthread_t ck_th;
    int ck_started;
    pthread_mutex_t ck_mu;
    pthread_cond_t ck_cv;
    int ck_made;            /* ck_mu and ck_cv initialised */
    int64_t ck_req, ck_done;    /* passes asked for / finished */
    int ck_quit, ck_dead;   /* stop; its connection failed (checkpoint inline) */
    int ck_start, ck_wait;  /* WAL frames: ask for a pass / wait for it */
    DbErr ferr;             /* the flush error (under mu) */

    /* prepared statements on h */
    sqlite3_stmt *ins_tok, *ins_route, *ins_load, *upd_progress, *upd_end, *ins_run;
    sqlite3_stmt *ins_routes;       /* route_rows rows at once */
    sqlite3_stmt *ins_routes_lean;  /* the same without scores, logits and
                                       shared_gate (left NULL) */
    int route_rows;
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

static void batch_free(Batch *b)
{
    free(b->a);
    b->a = NULL;
    b->cap = 0;
}

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
    b->n_ctl = 0;
}

/* ---- checkpoints ------------------------------------------------------- */

/* A WAL database is written twice: each commit appends pages to the WAL, and
** a checkpoint copies them into the database file.  SQLite's automatic
** checkpoint runs on the committing connection, so on a logger it took
** about a third of the flusher's time.  Here the logger's connection has
** no automatic checkpoint; after a commit that leaves CK_START frames or
** more in the WAL, the flusher asks the checkpointer thread for a PASSIVE
** pass (it never blocks readers or the writer) and goes on writing.  The
** WAL can only start again from its beginning when a write transaction
** finds every frame copied, which a writer that never pauses would not
** see: past CK_WAIT frames the flusher waits for a pass that began after
** its commit, so its next transaction restarts the WAL.  If the
** checkpointer's connection can't be opened, the flusher checkpoints
** inline as SQLite would have. */
#define CK_START 1024
#define CK_WAIT 8192

void db_log_set_checkpoints(DbLog *lg, int start_frames, int wait_frames)
{
    lg->ck_start = start_frames > 0 ? start_frames : CK_START;
    lg->ck_wait = wait_frames > lg->ck_start ? wait_frames : 8 * lg->ck_start;
}

static int wal_hook(void *user, sqlite3 *h, const char *db_name, int n_frames)
{
    DbLog *lg = user;
    (void)h;
    (void)db_name;
    atomic_store(&lg->wal_frames, n_frames);
    return SQLITE_OK;
}

static void *checkpointer(void *arg)
{
    DbLog *lg = arg;
    int version = 0;
    sqlite3 *h = db_connect(lg->path, lg->db_flags & ~DB_OPEN_CREATE, &version, NULL);
    if (h)
        sqlite3_wal_autocheckpoint(h, 0);
    pthread_mutex_lock(&lg->ck_mu);
    if (!h)
        lg->ck_dead = 1;
    for (;;) {
        while (!lg->ck_quit && !lg->ck_dead && lg->ck_done >= lg->ck_req)
            pthread_cond_wait(&lg->ck_cv, &lg->ck_mu);
        if (lg->ck_quit || lg->ck_dead)
            break;
        int64_t target = lg->ck_req;
        pthread_mutex_unlock(&lg->ck_mu);
        sqlite3_wal_checkpoint_v2(h, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&lg->ck_mu);
        lg->ck_done = target;
        pthread_cond_broadcast(&lg->ck_cv);
    }
    lg->ck_done = lg->ck_req;          /* nobody waits for a dead checkpointer */
    pthread_cond_broadcast(&lg->ck_cv);
    pthread_mutex_unlock(&lg->ck_mu);
    sqlite3_close(h);
    return NULL;
}

/* After each commit of the logger's connection (flusher or finishing
** thread). */
static void after_commit(DbLog *lg)
{
    int frames = atomic_load(&lg->wal_frames);
    if (!lg->bulk || frames < lg->ck_start)
        return;
    if (!lg->ck_made) {
        if (pthread_mutex_init(&lg->ck_mu, NULL) != 0)
            goto inline_ck;
        if (pthread_cond_init(&lg->ck_cv, NULL) != 0) {
            pthread_mutex_destroy(&lg->ck_mu);
            goto inline_ck;
        }
        lg->ck_made = 1;
        if (pthread_create(&lg->ck_th, NULL, checkpointer, lg) != 0)
            lg->ck_dead = 1;
        else
            lg->ck_started = 1;
    }
    pthread_mutex_lock(&lg->ck_mu);
    if (lg->ck_dead) {
        pthread_mutex_unlock(&lg->ck_mu);
        goto inline_ck;
    }
    int64_t mine = ++lg->ck_req;
    pthread_cond_broadcast(&lg->ck_cv);
    if (frames >= lg->ck_wait)
        while (lg->ck_done < mine)
            pthread_cond_wait(&lg->ck_cv, &lg->ck_mu);
    pthread_mutex_unlock(&lg->ck_mu);
    return;
inline_ck:
    if (frames >= lg->ck_wait / 8)
        sqlite3_wal_checkpoint_v2(lg->h, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
}

static void stop_checkpointer(DbLog *lg)
{
    if (lg->ck_started) {
        pthread_mutex_lock(&lg->ck_mu);
        lg->ck_quit = 1;
        pthread_cond_broadcast(&lg->ck_cv);
        pthread_mutex_unlock(&lg->ck_mu);
        pthread_join(lg->ck_th, NULL);
        lg->ck_started = 0;
    }
    if (lg->ck_made) {
        pthread_mutex_destroy(&lg->ck_mu);
        pthread_cond_destroy(&lg->ck_cv);
        lg->ck_made = 0;
    }
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

/* Bytes of the route record at p (after its kind word), padded. */
static size_t route_size(const DbLog *lg, const RouteRec *r)
{
    size_t ne = (size_t)r->k * (size_t)lg->width, nw = (size_t)r->k * 4;
    size_t ns = (r->has & RR_SCORES) ? nw : 0;
    size_t nl = (r->has & RR_LOGITS) ? (size_t)lg->n_expert * 4 : 0;
    return (sizeof *r + ne + nw + ns + nl + 7) & ~(size_t)7;
}

/* Bind the route record at p to parameters base+1 .. base+9 of st (pos,
** layer, is_prompt, k, experts, weights, scores, logits, shared_gate). */
static void bind_route(const DbLog *lg, sqlite3_stmt *st, int base, const uint8_t *p)
{
    RouteRec r;
    memcpy(&r, p, sizeof r);
    const uint8_t *q = p + sizeof r;
    size_t ne = (size_t)r.k * (size_t)lg->width, nw = (size_t)r.k * 4;
    size_t ns = (r.has & RR_SCORES) ? nw : 0;
    size_t nl = (r.has & RR_LOGITS) ? (size_t)lg->n_expert * 4 : 0;
    sqlite3_bind_int(st, base + 1, r.pos);
    sqlite3_bind_int(st, base + 2, r.layer);
    sqlite3_bind_int(st, base + 3, r.is_prompt);
    sqlite3_bind_int(st, base + 4, r.k);
    sqlite3_bind_blob(st, base + 5, q, (int)ne, SQLITE_STATIC);
    sqlite3_bind_blob(st, base + 6, q + ne, (int)nw, SQLITE_STATIC);
    if (ns)
        sqlite3_bind_blob(st, base + 7, q + ne + nw, (int)ns, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, base + 7);
    if (nl)
        sqlite3_bind_blob(st, base + 8, q + ne + nw + ns, (int)nl, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, base + 8);
    if (isnan(r.shared_gate))
        sqlite3_bind_null(st, base + 9);
    else
        sqlite3_bind_double(st, base + 9, r.shared_gate);
}

/* Insert the n route records at rec[]: full groups of route_rows through
** the multi-row statement, the rest one by one. */
static int write_routes(DbLog *lg, const uint8_t *const *rec, int n)
{
    int rc = SQLITE_OK, i = 0;
    int lean = lg->ins_routes_lean && n == lg->route_rows;
    for (int j = 0; j < n && lean; j++) {
        RouteRec r;
        memcpy(&r, rec[j], sizeof r);
        lean = !r.has && isnan(r.shared_gate);
    }
    if (lean) {
        /* ?1 = run, then 6 per row: pos, layer, is_prompt, k, experts, weights */
        sqlite3_stmt *st = lg->ins_routes_lean;
        sqlite3_bind_int64(st, 1, lg->run);
        for (; i < n; i++) {
            RouteRec r;
            memcpy(&r, rec[i], sizeof r);
            const uint8_t *q = rec[i] + sizeof r;
            int b = 2 + 6 * i, ne = r.k * lg->width;
            sqlite3_bind_int(st, b, r.pos);
            sqlite3_bind_int(st, b + 1, r.layer);
            sqlite3_bind_int(st, b + 2, r.is_prompt);
            sqlite3_bind_int(st, b + 3, r.k);
            sqlite3_bind_blob(st, b + 4, q, ne, SQLITE_STATIC);
            sqlite3_bind_blob(st, b + 5, q + ne, r.k * 4, SQLITE_STATIC);
        }
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    if (lg->ins_routes && n == lg->route_rows) {
        for (; i < n; i++) {
            sqlite3_bind_int64(lg->ins_routes, 1 + 10 * i, lg->run);
            bind_route(lg, lg->ins_routes, 1 + 10 * i, rec[i]);
        }
        rc = sqlite3_step(lg->ins_routes);
        sqlite3_reset(lg->ins_routes);
        return rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    for (; i < n && rc == SQLITE_OK; i++) {
        bind_route(lg, lg->ins_route, 1, rec[i]);
        rc = sqlite3_step(lg->ins_route);
        sqlite3_reset(lg->ins_route);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    return rc;
}

/* Point the per-run statements at run id. */
static void bind_run_id(DbLog *lg, int64_t id)
{
    lg->run = id;
    sqlite3_bind_int64(lg->ins_tok, 1, id);
    sqlite3_bind_int64(lg->ins_route, 1, id);
    sqlite3_bind_int64(lg->ins_load, 1, id);
}

/* Bind a run's row to ins_run (the strings are not copied: they must live
** until the step).  Parameters as in prepare_all. */
static void bind_run(sqlite3_stmt *st, int64_t model, const DbRunInfo *ri, const char *writer)
{
    const char *iv_json = ri->iv_json ? ri->iv_json : "[]";
    sqlite3_clear_bindings(st);
    sqlite3_bind_int64(st, 1, model);
    if (ri->parent > 0)
        sqlite3_bind_int64(st, 2, ri->parent);
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
    if (ri->flags & DB_RUN_COUNTS_ONLY)
        sqlite3_bind_int64(st, 18, ri->n_counted);
}

/* Insert the run described by the begin record at p; it becomes the run
** being written.  SQLITE_CONSTRAINT when iv_json is not a JSON array. */
static int write_begin(DbLog *lg, const uint8_t *p, size_t *adv)
{
    BeginRec b;
    memcpy(&b, p, sizeof b);
    const char *str[BEGIN_STRINGS];
    /* the strings are stored NUL-terminated (len excludes the NUL) */
    const char *q = (const char *)p + sizeof b;
    size_t n = sizeof b;
    for (int i = 0; i < BEGIN_STRINGS; i++) {
        str[i] = b.len[i] < 0 ? NULL : q;
        if (b.len[i] >= 0) {
            q += b.len[i] + 1;
            n += (size_t)b.len[i] + 1;
        }
    }
    *adv = (n + 7) & ~(size_t)7;
    DbRunInfo ri = { 0 };
    ri.parent = b.parent;
    ri.tag = str[BS_TAG];
    ri.prompt = str[BS_PROMPT];
    ri.prompt_fmt = str[BS_PROMPT_FMT];
    ri.iv_text = str[BS_IV_TEXT];
    ri.iv_json = str[BS_IV_JSON];
    ri.source = str[BS_SOURCE];
    ri.seed = b.seed;
    ri.temp = b.temp;
    ri.top_p = b.top_p;
    ri.top_k = b.top_k;
    ri.greedy = b.greedy;
    ri.n_predict = b.n_predict;
    ri.n_ctx = b.n_ctx;
    ri.flags = b.flags;
    ri.n_counted = b.n_counted;
    bind_run(lg->ins_run, lg->model, &ri, lg->writer);
    int rc = sqlite3_step(lg->ins_run);
    sqlite3_reset(lg->ins_run);
    if (rc != SQLITE_DONE)
        return rc;
    if (sqlite3_changes(lg->h) != 1)
        return SQLITE_CONSTRAINT;
    int64_t id = sqlite3_last_insert_rowid(lg->h);
    bind_run_id(lg, id);
    if (!lg->first)
        lg->first = id;
    lg->last = id;
    lg->stored_prompt = 0;
    lg->stored_gen = 0;
    return SQLITE_OK;
}

/* The end record at p: the run's aggregates and its status. */
static int write_end(DbLog *lg, const uint8_t *p, size_t *adv)
{
    EndRec e;
    memcpy(&e, p, sizeof e);
    const char *error = e.error_len < 0 ? NULL : (const char *)p + sizeof e;
    size_t off = (sizeof e + (size_t)(e.error_len < 0 ? 0 : e.error_len + 1) + 7) & ~(size_t)7;
    *adv = off + (size_t)e.n_cells * sizeof(LoadCell);
    int rc = SQLITE_OK;
    sqlite3_stmt *st = lg->ins_load;
    for (int i = 0; i < e.n_cells && rc == SQLITE_OK; i++) {
        LoadCell c;
        memcpy(&c, p + off + (size_t)i * sizeof c, sizeof c);
        sqlite3_bind_int(st, 2, c.layer);
        sqlite3_bind_int(st, 3, c.expert);
        sqlite3_bind_int64(st, 4, c.n);
        sqlite3_bind_double(st, 5, c.w);
        sqlite3_bind_int64(st, 6, c.n_p);
        sqlite3_bind_double(st, 7, c.w_p);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK)
        return rc;
    st = lg->upd_end;
    sqlite3_clear_bindings(st);
    sqlite3_bind_int64(st, 1, lg->run);
    sqlite3_bind_text(st, 2, db_run_status_str((DbRunStatus)e.status), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, lg->stored_prompt);
    sqlite3_bind_int(st, 4, lg->stored_gen);
    if (e.has_stats) {
        sqlite3_bind_double(st, 5, e.t_prompt_ms);
        sqlite3_bind_double(st, 6, e.t_gen_ms);
    }
    if (error)
        sqlite3_bind_text(st, 7, error, e.error_len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (lg->bulk)
        bind_run_id(lg, 0);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Write the records of b in one transaction.  A run whose end record is in
** b becomes complete (or failed) in this transaction, with its last rows.
** Returns DB_OK or fills err. */
static DbStatus write_batch(DbLog *lg, Batch *b, DbErr *err)
{
    sqlite3 *h = lg->h;
    int saved_prompt = lg->stored_prompt, saved_gen = lg->stored_gen;
    int64_t saved_run = lg->run, saved_first = lg->first, saved_last = lg->last;
    int rc = sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    const char *what = "starting a write transaction";
    const uint8_t *pend[ROUTE_ROWS];
    int n_pend = 0;

    /* records in arena order; routes wait in pend[] until a group is full
    ** or a run boundary comes */
    size_t off = 0;
    int n_tok = 0, n_route = 0;
    while (rc == SQLITE_OK && off < b->n) {
        size_t adv = 0;
        int32_t kind;
        const uint8_t *p = b->a + off + 8;
        memcpy(&kind, b->a + off, 4);
        if (kind == REC_ROUTE) {
            RouteRec r;
            memcpy(&r, p, sizeof r);
            adv = route_size(lg, &r);
            pend[n_pend++] = p;
            n_route++;
            if (n_pend == lg->route_rows) {
                what = "writing routes";
                rc = write_routes(lg, pend, n_pend);
                n_pend = 0;
            }
        } else if (kind == REC_TOKEN) {
            /* tokens go at once; the routes around them keep gathering */
            what = "writing a token";
            rc = write_token(lg, p, &adv);
            n_tok++;
        } else {
            /* a run boundary: the routes gathered belong to the run before */
            if (n_pend) {
                what = "writing routes";
                rc = write_routes(lg, pend, n_pend);
                n_pend = 0;
                if (rc != SQLITE_OK)
                    break;
            }
            if (kind == REC_BEGIN) {
                what = "inserting a run";
                rc = write_begin(lg, p, &adv);
            } else {
                what = "writing the aggregates and the status";
                rc = write_end(lg, p, &adv);
            }
        }
        off += 8 + adv;
    }
    if (rc == SQLITE_OK && n_pend) {
        what = "writing routes";
        rc = write_routes(lg, pend, n_pend);
    }
    if (rc == SQLITE_OK && lg->run > 0 && (n_tok || n_route)) {
        /* a run still open: its progress, for readers following it */
        what = "updating the run";
        sqlite3_stmt *st = lg->upd_progress;
        sqlite3_bind_int64(st, 1, lg->run);
        sqlite3_bind_int(st, 3, lg->stored_prompt);
        sqlite3_bind_int(st, 4, lg->stored_gen);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    if (rc == SQLITE_OK) {
        what = "committing";
        rc = sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            after_commit(lg);
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
        lg->first = saved_first;
        lg->last = saved_last;
        if (lg->run != saved_run)
            bind_run_id(lg, saved_run);
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
        DbStatus s = atomic_load(&lg->failed) ? DB_OK : write_batch(lg, b, &e);
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

static void stop_flusher(DbLog *lg)
{
    if (!lg->th_started)
        return;
    pthread_mutex_lock(&lg->mu);
    lg->quit = 1;
    pthread_cond_broadcast(&lg->cv);
    pthread_mutex_unlock(&lg->mu);
    pthread_join(lg->th, NULL);
    lg->th_started = 0;
}

/* A run log's connection with its prepared statements, parked on its Db
** between runs: the next run's log starts without opening a connection or
** preparing statements, and its page cache is warm (a new connection's
** cache is fresh memory: page faults on every page the flusher fills). */
typedef struct {
    sqlite3 *h;
    sqlite3_stmt *ins_tok, *ins_route, *ins_routes, *ins_routes_lean, *ins_load,
        *upd_progress, *upd_end, *ins_run;
    int route_rows;
} LogConn;

void db_log_conn_free(void *p)
{
    LogConn *c = p;
    if (!c)
        return;
    sqlite3_finalize(c->ins_tok);
    sqlite3_finalize(c->ins_route);
    sqlite3_finalize(c->ins_routes);
    sqlite3_finalize(c->ins_routes_lean);
    sqlite3_finalize(c->ins_load);
    sqlite3_finalize(c->upd_progress);
    sqlite3_finalize(c->upd_end);
    sqlite3_finalize(c->ins_run);
    sqlite3_close(c->h);
    free(c);
}

/* Park lg's connection on its Db if the Db has none parked and the
** connection is clean (no transaction open, no failure).  The statements'
** bindings are cleared: they may point into lg's batches. */
static void park_conn(DbLog *lg)
{
    if (lg->bulk || !lg->db || !lg->h || !lg->ins_run || atomic_load(&lg->failed) ||
        !sqlite3_get_autocommit(lg->h))
        return;
    LogConn *c = malloc(sizeof *c);
    if (!c)
        return;
    pthread_mutex_lock(&lg->db->mu);
    if (lg->db->spare_conn) {
        pthread_mutex_unlock(&lg->db->mu);
        free(c);
        return;
    }
    sqlite3_stmt *all[] = { lg->ins_tok, lg->ins_route, lg->ins_routes, lg->ins_routes_lean,
                            lg->ins_load, lg->upd_progress, lg->upd_end, lg->ins_run };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        sqlite3_reset(all[i]);
        sqlite3_clear_bindings(all[i]);
    }
    *c = (LogConn){ lg->h, lg->ins_tok, lg->ins_route, lg->ins_routes, lg->ins_routes_lean,
                    lg->ins_load, lg->upd_progress, lg->upd_end, lg->ins_run, lg->route_rows };
    lg->db->spare_conn = c;
    pthread_mutex_unlock(&lg->db->mu);
    lg->h = NULL;
    lg->ins_tok = lg->ins_route = lg->ins_routes = lg->ins_routes_lean = NULL;
    lg->ins_load = lg->upd_progress = lg->upd_end = lg->ins_run = NULL;
}

/* Take the connection parked on db, if any: 1 if lg got it. */
static int unpark_conn(DbLog *lg, Db *db)
{
    pthread_mutex_lock(&db->mu);
    LogConn *c = db->spare_conn;
    db->spare_conn = NULL;
    pthread_mutex_unlock(&db->mu);
    if (!c)
        return 0;
    lg->h = c->h;
    lg->ins_tok = c->ins_tok;
    lg->ins_route = c->ins_route;
    lg->ins_routes = c->ins_routes;
    lg->ins_routes_lean = c->ins_routes_lean;
    lg->ins_load = c->ins_load;
    lg->upd_progress = c->upd_progress;
    lg->upd_end = c->upd_end;
    lg->ins_run = c->ins_run;
    lg->route_rows = c->route_rows;
    free(c);
    return 1;
}

static void log_free(DbLog *lg)
{
    if (!lg)
        return;
    stop_flusher(lg);
    if (lg->sync_made) {
        pthread_mutex_destroy(&lg->mu);
        pthread_cond_destroy(&lg->cv);
    }
    stop_checkpointer(lg);
    park_conn(lg);
    sqlite3_finalize(lg->ins_tok);
    sqlite3_finalize(lg->ins_route);
    sqlite3_finalize(lg->ins_routes);
    sqlite3_finalize(lg->ins_routes_lean);
    sqlite3_finalize(lg->ins_load);
    sqlite3_finalize(lg->upd_progress);
    sqlite3_finalize(lg->upd_end);
    sqlite3_finalize(lg->ins_run);
    sqlite3_close(lg->h);
    free(lg->path);
    /* engine-sized batch buffers go back to the Db for the next log */
    if (lg->db) {
        pthread_mutex_lock(&lg->db->mu);
        for (int i = 0; i < 2; i++) {
            if (lg->b[i].a && lg->b[i].cap <= SPARE_MAX && !lg->db->spare[i]) {
                lg->db->spare[i] = lg->b[i].a;
                lg->db->spare_cap[i] = lg->b[i].cap;
                lg->b[i].a = NULL;
            }
        }
        pthread_mutex_unlock(&lg->db->mu);
    }
    batch_free(&lg->b[0]);
    batch_free(&lg->b[1]);
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
    if (rc == SQLITE_OK) {
        /* VALUES(?,?,...), (?,?,...), ...: ten anonymous parameters per row
        ** (numbered ones cost a linear lookup each while preparing) */
        int rows = ROUTE_ROWS;
        int max_var = sqlite3_limit(lg->h, SQLITE_LIMIT_VARIABLE_NUMBER, -1);
        if (10 * rows > max_var)
            rows = max_var / 10;
        lg->route_rows = rows > 1 ? rows : 1;
        if (rows > 1) {
            size_t cap = 160 + (size_t)rows * 64;
            char *sql = malloc(cap);
            if (!sql)
                return SQLITE_NOMEM;
            size_t n = (size_t)snprintf(sql, cap,
                "INSERT INTO routes(run, pos, layer, is_prompt, k, experts, weights,"
                " scores, logits, shared_gate) VALUES");
            for (int r = 0; r < rows; r++)
                n += (size_t)snprintf(sql + n, cap - n, "%s(?,?,?,?,?,?,?,?,?,?)",
                                      r ? "," : "");
            rc = sqlite3_prepare_v3(lg->h, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                    &lg->ins_routes, NULL);
            /* routes without scores, logits, shared gate (most of them):
            ** 6 parameters per row and the run id once as ?1 (one numbered
            ** parameter is cheap to prepare) */
            n = (size_t)snprintf(sql, cap, "INSERT INTO routes(run, pos, layer, is_prompt, k,"
                                 " experts, weights) VALUES");
            for (int r = 0; r < rows; r++)
                n += (size_t)snprintf(sql + n, cap - n, "%s(?1,?,?,?,?,?,?)", r ? "," : "");
            if (rc == SQLITE_OK)
                rc = sqlite3_prepare_v3(lg->h, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                        &lg->ins_routes_lean, NULL);
            free(sql);
        }
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(lg->h,
            "INSERT INTO load(run, layer, expert, n, w, n_prompt, w_prompt)"
            " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)", -1, SQLITE_PREPARE_PERSISTENT,
            &lg->ins_load, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(lg->h,
            "UPDATE runs SET n_prompt = ?3, n_gen = ?4 WHERE id = ?1", -1,
            SQLITE_PREPARE_PERSISTENT, &lg->upd_progress, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(lg->h,
            "UPDATE runs SET status = ?2, n_prompt = ?3, n_gen = ?4,"
            " t_prompt_ms = ?5, t_gen_ms = ?6, error = ?7,"
            " finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
            " WHERE id = ?1", -1, SQLITE_PREPARE_PERSISTENT, &lg->upd_end, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(lg->h,
            "INSERT INTO runs(model, parent, tag, prompt, prompt_fmt, interventions,"
            " iv_json, seed, temp, top_p, top_k, greedy, n_predict, n_ctx, flags,"
            " status, created_at, writer, source, n_counted)"
            " SELECT ?1, ?2, ?3, ?4, ?5, ?6, json(?7), ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
            " ?15, 'running', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?16, ?17, ?18"
            " WHERE json_valid(?7) AND json_type(?7) = 'array'", -1,
            SQLITE_PREPARE_PERSISTENT, &lg->ins_run, NULL);
    return rc;
}

/* A bulk log's connection (the importer: hundreds of millions of rows):
** a bigger page cache than readers need (a 10 MB batch commits without
** spilling), no automatic checkpoint (the checkpointer thread does them, see
** above), and a WAL file cut back to the size it reaches between restarts.
** A run's log (the engine: thousands of rows per second at most, and many
** short runs per process in eval) keeps SQLite's automatic checkpoint on
** its flusher: a thread and a connection more per run would cost more than
** they save.  All per connection: nothing changes for readers.  Failing to
** set them is not an error. */
static void tune_writer(DbLog *lg)
{
    if (!lg->bulk)
        return;
    sqlite3_exec(lg->h, "PRAGMA cache_size = -32768", NULL, NULL, NULL);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA journal_size_limit = %d", (CK_WAIT + CK_START) * 16384);
    sqlite3_exec(lg->h, sql, NULL, NULL, NULL);
    sqlite3_wal_hook(lg->h, wal_hook, lg);
}

/* A logger of model `model` with its connection, statements and
** aggregates, no run and no thread yet. */
static DbLog *log_open(Db *db, int64_t model, int flush_every, int bulk, const char *who,
                       DbErr *err)
{
    if (db->flags & DB_OPEN_READONLY) {
        db_err_set(err, DB_E_READONLY, "%s: database '%s' was opened read-only", who,
                   db->path);
        return NULL;
    }
    DbLog *lg = calloc(1, sizeof *lg);
    if (!lg) {
        db_err_set(err, DB_E_NOMEM, "%s: out of memory", who);
        return NULL;
    }
    lg->model = model;
    lg->bulk = bulk;
    lg->db = db;
    lg->db_flags = db->flags;
    lg->path = strdup(db->path);
    if (!lg->path) {
        db_err_set(err, DB_E_NOMEM, "%s: out of memory", who);
        goto fail;
    }
    lg->flush_every = flush_every > 0 ? flush_every : 16384;
    lg->pending = -1;
    lg->ck_start = CK_START;
    lg->ck_wait = CK_WAIT;
    db_writer_id(lg->writer, sizeof lg->writer);
    int version = 0, reused = !bulk && unpark_conn(lg, db);
    if (!reused) {
        lg->h = db_connect(db->path, db->flags & ~DB_OPEN_CREATE, &version, err);
        if (!lg->h)
            goto fail;
        tune_writer(lg);
    }

    /* the model gives the shape */
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(lg->h, "SELECT n_layer, n_expert FROM models WHERE id = ?",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, model);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            lg->n_layer = sqlite3_column_int(st, 0);
            lg->n_expert = sqlite3_column_int(st, 1);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            sqlite3_finalize(st);
            db_err_set(err, DB_E_NOTFOUND, "%s: no model with id %lld in '%s'", who,
                       (long long)model, db->path);
            goto fail;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) {
        db_err_sqlite(err, lg->h, rc, "reading the model");
        goto fail;
    }
    lg->width = db_expert_width(lg->n_expert);
    size_t cells = (size_t)lg->n_layer * (size_t)lg->n_expert;
    lg->cnt = calloc(cells, sizeof *lg->cnt);
    lg->cnt_p = calloc(cells, sizeof *lg->cnt_p);
    lg->w = calloc(cells, sizeof *lg->w);
    lg->w_p = calloc(cells, sizeof *lg->w_p);
    if (!lg->cnt || !lg->cnt_p || !lg->w || !lg->w_p) {
        db_err_set(err, DB_E_NOMEM, "%s: out of memory for %zu aggregates", who, cells);
        goto fail;
    }
    rc = reused ? SQLITE_OK : prepare_all(lg);
    if (rc != SQLITE_OK) {
        db_err_sqlite(err, lg->h, rc, "preparing statements");
        goto fail;
    }
    return lg;
fail:
    if (err) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        if (strncmp(msg, who, strlen(who)) != 0)
            snprintf(err->msg, sizeof err->msg, "%s: %.400s", who, msg);
    }
    log_free(lg);
    return NULL;
}

/* Start the flusher thread. */
static DbStatus start_flusher(DbLog *lg, const char *who, DbErr *err)
{
    if (pthread_mutex_init(&lg->mu, NULL) != 0)
        return db_err_set(err, DB_E_NOMEM, "%s: cannot create a mutex", who);
    if (pthread_cond_init(&lg->cv, NULL) != 0) {
        pthread_mutex_destroy(&lg->mu);
        return db_err_set(err, DB_E_NOMEM, "%s: cannot create a condition variable", who);
    }
    lg->sync_made = 1;
    if (pthread_create(&lg->th, NULL, flusher, lg) != 0)
        return db_err_set(err, DB_E_NOMEM, "%s: cannot start the flusher thread", who);
    lg->th_started = 1;
    /* size both batches for a typical full batch up front: no growth on
    ** the caller's path once logging runs; buffers a finished log left on
    ** the Db are taken first (their pages are mapped already, so appends
    ** take no page faults) */
    size_t want = (size_t)lg->flush_every * (8 + sizeof(RouteRec) + 48);
    pthread_mutex_lock(&lg->db->mu);
    for (int i = 0; i < 2; i++) {
        if (lg->db->spare[i] && lg->db->spare_cap[i] >= want) {
            lg->b[i].a = lg->db->spare[i];
            lg->b[i].cap = lg->db->spare_cap[i];
            lg->db->spare[i] = NULL;
            lg->db->spare_cap[i] = 0;
        }
    }
    pthread_mutex_unlock(&lg->db->mu);
    for (int i = 0; i < 2; i++) {
        if (batch_reserve(&lg->b[i], want))
            batch_reset(&lg->b[i]);
    }
    lg->last_hand_off = mono_s();
    return DB_OK;
}

DbLog *db_log_begin(Db *db, const DbRunInfo *ri, int flush_every, DbErr *err)
{
    DbLog *lg = log_open(db, ri->model, flush_every, 0, "db_log_begin", err);
    if (!lg)
        return NULL;
    lg->flags = ri->flags;

    /* the run row, committed now so its id is visible */
    bind_run(lg->ins_run, ri->model, ri, lg->writer);
    int rc = sqlite3_step(lg->ins_run);
    sqlite3_reset(lg->ins_run);
    if (rc != SQLITE_DONE) {
        db_err_sqlite(err, lg->h, rc, "db_log_begin: inserting the run");
        goto fail;
    }
    if (sqlite3_changes(lg->h) != 1) {
        db_err_set(err, DB_E_ARG, "db_log_begin: iv_json is not a JSON array: '%.200s'",
                   ri->iv_json);
        goto fail;
    }
    bind_run_id(lg, sqlite3_last_insert_rowid(lg->h));
    if (start_flusher(lg, "db_log_begin", err) != DB_OK)
        goto fail;
    lg->open = 1;
    return lg;
fail:
    if (lg->run > 0) {
        char sql[96];
        snprintf(sql, sizeof sql, "UPDATE runs SET status = 'failed' WHERE id = %lld",
                 (long long)lg->run);
        sqlite3_exec(lg->h, sql, NULL, NULL, NULL);
    }
    log_free(lg);
    return NULL;
}

int64_t db_log_run_id(const DbLog *lg)
{
    return lg->run;
}

DbLog *db_log_bulk_begin(Db *db, int64_t model, int flush_every, DbErr *err)
{
    DbLog *lg = log_open(db, model, flush_every, 1, "db_log_bulk_begin", err);
    if (!lg)
        return NULL;
    if (start_flusher(lg, "db_log_bulk_begin", err) != DB_OK) {
        log_free(lg);
        return NULL;
    }
    return lg;
}

/* ---- appending --------------------------------------------------------- */

/* A full batch is handed off (waiting if need be).  A batch older than
** DB_LOG_MAX_AGE is handed off only if the flusher is idle: readers then
** see a slow run's progress without the caller ever waiting for it. */
static DbStatus maybe_hand_off(DbLog *lg)
{
    Batch *b = &lg->b[lg->cur];
    int n = b->n_tok + b->n_route + b->n_ctl;
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
    if (!lg->open || t->pos < 0 || t->n_top < 0 || t->n_top > DB_TOP_MAX || plen > (1 << 20))
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
    int32_t kind[2] = { REC_TOKEN, 0 };
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
    if (!lg->open || r->pos < 0 || r->layer < 0 || r->layer >= lg->n_layer || r->k <= 0 ||
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
    int32_t kind[2] = { REC_ROUTE, 0 };
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

/* ---- run boundaries ---------------------------------------------------- */

/* Append the begin record of run ri (bulk logs). */
static DbStatus append_begin(DbLog *lg, const DbRunInfo *ri)
{
    const char *str[BEGIN_STRINGS];
    str[BS_TAG] = ri->tag;
    str[BS_PROMPT] = ri->prompt;
    str[BS_PROMPT_FMT] = ri->prompt_fmt;
    str[BS_IV_TEXT] = ri->iv_text;
    str[BS_IV_JSON] = ri->iv_json;
    str[BS_SOURCE] = ri->source;
    BeginRec h;
    memset(&h, 0, sizeof h);
    size_t need = 8 + sizeof h;
    for (int i = 0; i < BEGIN_STRINGS; i++) {
        size_t n = str[i] ? strlen(str[i]) : 0;
        if (n > (1u << 30))
            return DB_E_ARG;
        h.len[i] = str[i] ? (int32_t)n : -1;
        need += str[i] ? n + 1 : 0;
    }
    h.parent = ri->parent;
    h.seed = ri->seed;
    h.temp = ri->temp;
    h.top_p = ri->top_p;
    h.top_k = ri->top_k;
    h.greedy = ri->greedy;
    h.n_predict = ri->n_predict;
    h.n_ctx = ri->n_ctx;
    h.flags = ri->flags;
    h.n_counted = ri->n_counted;
    uint8_t *p = batch_reserve(&lg->b[lg->cur], need);
    if (!p)
        return DB_E_NOMEM;
    int32_t kind[2] = { REC_BEGIN, 0 };
    memcpy(p, kind, 8);
    memcpy(p + 8, &h, sizeof h);
    uint8_t *q = p + 8 + sizeof h;
    for (int i = 0; i < BEGIN_STRINGS; i++) {
        if (h.len[i] < 0)
            continue;
        memcpy(q, str[i], (size_t)h.len[i] + 1);
        q += h.len[i] + 1;
    }
    lg->b[lg->cur].n_ctl++;
    return DB_OK;
}

/* Append the end record of the open run: its status, stats and aggregates;
** the aggregates start again from zero. */
static DbStatus append_end(DbLog *lg, DbRunStatus status, const DbRunStats *st)
{
    size_t cells = (size_t)lg->n_layer * (size_t)lg->n_expert;
    int n_cells = 0;
    for (size_t i = 0; i < cells; i++)
        n_cells += lg->cnt[i] != 0;
    EndRec e;
    memset(&e, 0, sizeof e);
    e.status = (int32_t)status;
    e.has_stats = st != NULL;
    e.error_len = st && st->error ? (int32_t)strnlen(st->error, 4096) : -1;
    e.n_cells = n_cells;
    if (st) {
        e.t_prompt_ms = st->t_prompt_ms;
        e.t_gen_ms = st->t_gen_ms;
    }
    size_t head = (sizeof e + (size_t)(e.error_len < 0 ? 0 : e.error_len + 1) + 7) & ~(size_t)7;
    uint8_t *p = batch_reserve(&lg->b[lg->cur], 8 + head + (size_t)n_cells * sizeof(LoadCell));
    if (!p)
        return DB_E_NOMEM;
    int32_t kind[2] = { REC_END, 0 };
    memcpy(p, kind, 8);
    memcpy(p + 8, &e, sizeof e);
    if (e.error_len >= 0) {
        memcpy(p + 8 + sizeof e, st->error, (size_t)e.error_len);
        p[8 + sizeof e + (size_t)e.error_len] = 0;
    }
    uint8_t *q = p + 8 + head;
    for (size_t i = 0; i < cells; i++) {
        if (!lg->cnt[i])
            continue;
        LoadCell c = { (int32_t)(i / (size_t)lg->n_expert), (int32_t)(i % (size_t)lg->n_expert),
                       lg->cnt[i], lg->cnt_p[i], lg->w[i], lg->w_p[i] };
        memcpy(q, &c, sizeof c);
        q += sizeof c;
    }
    memset(lg->cnt, 0, cells * sizeof *lg->cnt);
    memset(lg->cnt_p, 0, cells * sizeof *lg->cnt_p);
    memset(lg->w, 0, cells * sizeof *lg->w);
    memset(lg->w_p, 0, cells * sizeof *lg->w_p);
    lg->n_prompt = 0;
    lg->n_gen = 0;
    lg->b[lg->cur].n_ctl++;
    return DB_OK;
}

/* ---- finish ------------------------------------------------------------ */

DbStatus db_log_finish(DbLog *lg, DbRunStatus status, const DbRunStats *st, DbErr *err)
{
    if (!lg)
        return db_err_set(err, DB_E_ARG, "db_log_finish: no log");
    if (lg->bulk) {
        db_err_set(err, DB_E_ARG, "db_log_finish: a bulk log ends with db_log_bulk_finish");
        return db_log_bulk_finish(lg, NULL, NULL, NULL);
    }
    wait_idle(lg);
    /* stop the flusher: from here on the connection is ours */
    stop_flusher(lg);

    DbStatus s = DB_OK;
    if (status != DB_RUN_COMPLETE && status != DB_RUN_FAILED)
        s = db_err_set(err, DB_E_ARG, "db_log_finish: status must be complete or failed, "
                       "got %s", db_run_status_str(status));
    else if (atomic_load(&lg->failed)) {
        if (err)
            *err = lg->ferr;
        s = lg->ferr.status;
    }
    if (s == DB_OK && append_end(lg, status, st) != DB_OK)
        s = db_err_set(err, DB_E_NOMEM, "logging run %lld: out of memory for the aggregates",
                       (long long)lg->run);
    if (s == DB_OK)
        s = write_batch(lg, &lg->b[lg->cur], err);
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

/* ---- bulk logs --------------------------------------------------------- */

DbStatus db_log_bulk_run(DbLog *lg, const DbRunInfo *ri)
{
    if (atomic_load(&lg->failed))
        return lg->ferr.status;
    if (!lg->bulk || lg->open || ri->model != lg->model)
        return DB_E_ARG;
    DbStatus s = append_begin(lg, ri);
    if (s != DB_OK)
        return s;
    lg->flags = ri->flags;
    lg->open = 1;
    return maybe_hand_off(lg);
}

DbStatus db_log_bulk_end(DbLog *lg, DbRunStatus status, const DbRunStats *st)
{
    if (atomic_load(&lg->failed))
        return lg->ferr.status;
    if (!lg->bulk || !lg->open || (status != DB_RUN_COMPLETE && status != DB_RUN_FAILED))
        return DB_E_ARG;
    DbStatus s = append_end(lg, status, st);
    if (s != DB_OK)
        return s;
    lg->open = 0;
    return maybe_hand_off(lg);
}

DbStatus db_log_bulk_load(DbLog *lg, int layer, const int64_t *n, const double *w)
{
    if (atomic_load(&lg->failed))
        return lg->ferr.status;
    if (!lg->bulk || !lg->open || !(lg->flags & DB_RUN_COUNTS_ONLY) || layer < 0 ||
        layer >= lg->n_layer || !n || !w)
        return DB_E_ARG;
    size_t row = (size_t)layer * (size_t)lg->n_expert;
    for (int e = 0; e < lg->n_expert; e++)
        if (n[e] < 0 || !(w[e] >= 0))
            return DB_E_ARG;
    for (int e = 0; e < lg->n_expert; e++) {
        lg->cnt[row + (size_t)e] += n[e];
        lg->w[row + (size_t)e] += w[e];
    }
    return DB_OK;
}

DbStatus db_log_bulk_finish(DbLog *lg, int64_t *first, int64_t *last, DbErr *err)
{
    if (!lg)
        return db_err_set(err, DB_E_ARG, "db_log_bulk_finish: no log");
    DbStatus s = DB_OK;
    if (lg->open && !atomic_load(&lg->failed)) {
        DbRunStats st = { 0 };
        st.error = "the bulk log was finished with this run still open";
        s = db_log_bulk_end(lg, DB_RUN_FAILED, &st);
    }
    if (s == DB_OK && lg->b[lg->cur].n)
        s = hand_off(lg);
    wait_idle(lg);
    stop_flusher(lg);
    if (atomic_load(&lg->failed)) {
        if (err)
            *err = lg->ferr;
        s = lg->ferr.status;
    } else if (s != DB_OK) {
        db_err_set(err, s, "bulk log: %s", db_status_str(s));
    }
    if (first)
        *first = lg->first;
    if (last)
        *last = lg->last;
    log_free(lg);
    return s;
}
