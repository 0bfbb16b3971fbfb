/*
** db/db_int.h — internals shared by the db/ sources (and the db tests):
** the Db struct, error helpers, the schema migrations and the blob codecs.
** Not part of the public API; callers outside db/ and tests use db/db.h.
*/
#ifndef DB_INT_H
#define DB_INT_H

#include "db/db.h"

#include <pthread.h>
#include <sqlite3.h>
#include <string.h>

struct Db {
    sqlite3 *h;
    char *path;
    int flags;              /* DB_OPEN_* */
    /* batch buffers of finished logs, for the next log on this Db: its
    ** appends then write to pages already mapped (db/log.c); under mu, as
    ** logs may run on other threads than the Db's */
    pthread_mutex_t mu;
    void *spare[2];
    size_t spare_cap[2];
    void *spare_conn;       /* a finished run log's connection (db/log.c) */
};

/* Close a parked log connection (Db.spare_conn); accepts NULL. */
void db_log_conn_free(void *conn);

/* Busy timeout of every connection, milliseconds. */
#define DB_BUSY_MS 30000

/* Fill err (may be NULL) with status and a printf message; returns status. */
DbStatus db_err_set(DbErr *err, DbStatus status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Map a SQLite result code on h to a DbStatus and fill err with
** "<what>: <sqlite message>" (plus the OS error where there is one).
** Returns the status. */
DbStatus db_err_sqlite(DbErr *err, sqlite3 *h, int rc, const char *what);

/* Open a connection to path with the pragmas every connection needs (busy
** timeout, extended codes).  Writable: WAL + synchronous=NORMAL.  Reads the
** schema version into *version.  NOTDB/VERSION checks happen here. */
sqlite3 *db_connect(const char *path, int flags, int *version, DbErr *err);

/* Migrate h from schema version `from` up to `to` (1..DB_SCHEMA_VERSION) in
** the caller's transaction; sets user_version.  Exposed so tests can build
** files of an older version. */
DbStatus db_schema_migrate(sqlite3 *h, int from, int to, DbErr *err);

/* The writer identity recorded in runs.writer: "pid:starttime:random". */
void db_writer_id(char *buf, size_t cap);
/* 1 if the process that wrote id may still be running, 0 if it is gone. */
int db_writer_alive(const char *id);

/* ---- bulk logs (the importer) ------------------------------------------ */

/* A DbLog that carries many runs of one model through one connection and
** one flusher thread (db/log.c).  db_log_bulk_run starts a run (its row is
** inserted by the flusher, in the transaction of the batch it falls in);
** db_log_token / db_log_route append to it as usual; db_log_bulk_end queues
** its aggregates and status, which commit with its last rows.  The caller
** never waits at a run boundary, and one transaction holds the rows of as
** many runs as fit in flush_every records.  Run ids are known only once
** written: db_log_bulk_finish gives the first and last.
**
** db_log_bulk_run: DB_E_ARG if a run is open or ri->model is not the log's
** model.  db_log_bulk_end: DB_E_ARG if no run is open.  Both return the
** sticky error of a failed batch.  db_log_bulk_finish ends an open run as
** failed, writes what is buffered, stops the flusher and frees lg (always);
** *first / *last (may be NULL) get the ids of the first and last run
** inserted by committed batches, 0 if none. */
DbLog *db_log_bulk_begin(Db *db, int64_t model, int flush_every, DbErr *err);
DbStatus db_log_bulk_run(DbLog *lg, const DbRunInfo *ri);
DbStatus db_log_bulk_end(DbLog *lg, DbRunStatus status, const DbRunStats *st);
DbStatus db_log_bulk_finish(DbLog *lg, int64_t *first, int64_t *last, DbErr *err);
/* Add per-expert counts n[n_expert] and weight mass w[n_expert] of one
** layer to the aggregates of the open run, which must be flagged
** DB_RUN_COUNTS_ONLY (it has no token or route records; its load rows are
** these sums, all counted as generated: n_prompt = 0).  DB_E_ARG for a
** layer outside the model, a negative count or weight, or no such run. */
DbStatus db_log_bulk_load(DbLog *lg, int layer, const int64_t *n, const double *w);

/* WAL frames after a commit of lg from which the checkpointer is asked for
** a pass / the flusher waits for it (db/log.c; defaults 1024 and 8192).
** For tests that want checkpoints to run all the time.  Call right after
** db_log_begin / db_log_bulk_begin. */
void db_log_set_checkpoints(DbLog *lg, int start_frames, int wait_frames);

/* ---- blob codecs (little-endian, see db/README.md) --------------------- */

static inline int db_host_le(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static inline void db_put_u32le(uint8_t *dst, const uint32_t *src, int n)
{
    if (db_host_le()) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    for (int i = 0; i < n; i++) {
        dst[4 * i + 0] = (uint8_t)(src[i]);
        dst[4 * i + 1] = (uint8_t)(src[i] >> 8);
        dst[4 * i + 2] = (uint8_t)(src[i] >> 16);
        dst[4 * i + 3] = (uint8_t)(src[i] >> 24);
    }
}

static inline void db_get_u32le(uint32_t *dst, const uint8_t *src, int n)
{
    if (db_host_le()) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    for (int i = 0; i < n; i++)
        dst[i] = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 |
                 (uint32_t)src[4 * i + 2] << 16 | (uint32_t)src[4 * i + 3] << 24;
}

/* float32 and int32 arrays share the u32 codec (bit patterns). */
static inline void db_put_f32(uint8_t *dst, const float *src, int n)
{
    db_put_u32le(dst, (const uint32_t *)(const void *)src, n);
}
static inline void db_get_f32(float *dst, const uint8_t *src, int n)
{
    db_get_u32le((uint32_t *)(void *)dst, src, n);
}

/* Expert ids: one byte each when the model has <= 256 experts, else two
** (little-endian).  The width of a stored blob is length / k. */
static inline int db_expert_width(int n_expert) { return n_expert <= 256 ? 1 : 2; }

static inline void db_put_experts(uint8_t *dst, const int32_t *e, int k, int width)
{
    for (int i = 0; i < k; i++) {
        if (width == 1) {
            dst[i] = (uint8_t)e[i];
        } else {
            dst[2 * i] = (uint8_t)e[i];
            dst[2 * i + 1] = (uint8_t)(e[i] >> 8);
        }
    }
}

static inline int32_t db_get_expert(const uint8_t *src, int i, int width)
{
    if (width == 1)
        return src[i];
    return (int32_t)src[2 * i] | (int32_t)src[2 * i + 1] << 8;
}

/* ---- selections -------------------------------------------------------- */

/* Append to sql (cap bytes) the WHERE condition on runs alias r for sel
** ("1" when sel is NULL or empty), using parameters ?91..?93. */
void db_sel_where(const DbSel *sel, char *sql, size_t cap);
/* Bind the parameters db_sel_where used.  Returns a SQLite code. */
int db_sel_bind(sqlite3_stmt *st, const DbSel *sel);

#endif
