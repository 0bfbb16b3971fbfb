/*
** db/db.h — moescope's routing database: the one public header of db/.
**
** Every run of a model (one prompt + settings + interventions → tokens) is
** recorded in a SQLite file: the tokens with their log-probabilities, the
** route of every token through every MoE layer (experts in selection order,
** weights applied, optionally selection scores and router logits) and, per
** run, aggregates per layer×expert so that heatmaps never scan raw routes.
** db/README.md documents the tables and blob encodings for external readers.
**
** The db layer knows nothing of the engine: it receives plain records.
**
** Objects and lifetimes:
**   Db     — one connection to a database file (db_open/db_close).  Readers
**            use it; a Db is not thread-safe: one per thread.  In WAL mode
**            readers never block the writer and vice versa.
**   DbLog  — the writer of one run (db_log_begin → db_log_finish).  It owns a
**            second connection and a background flusher thread: appending a
**            token or a route copies the record into an in-memory buffer;
**            full buffers are written by the flusher in one
**            BEGIN IMMEDIATE … COMMIT each.  The run's status becomes
**            'complete' (or 'failed') only in the transaction that writes its
**            last rows and its aggregates, so a reader never sees a partial
**            run as complete.  Runs left 'running' by a writer that died are
**            marked 'interrupted' by the next writable db_open.
**
** Errors: functions return a DbStatus (DB_OK == 0) and fill a DbErr whose
** message names the file, the field or value at fault and what was expected.
** Nothing here calls exit() or abort() on bad input.  Every DbErr pointer may
** be NULL.
*/
#ifndef DB_H
#define DB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- errors ---------------------------------------------------------- */

typedef enum {
    DB_OK = 0,
    DB_E_IO,        /* cannot open/create/read/write the file */
    DB_E_NOMEM,     /* allocation failed */
    DB_E_NOTDB,     /* the file is not a SQLite database (it is left untouched) */
    DB_E_VERSION,   /* schema newer than this program (file left untouched) */
    DB_E_READONLY,  /* the file or its directory is not writable */
    DB_E_FULL,      /* disk full or file size limit reached */
    DB_E_BUSY,      /* another connection held a lock past the busy timeout */
    DB_E_CORRUPT,   /* SQLite reports a malformed database */
    DB_E_ARG,       /* bad argument from the caller (names the field) */
    DB_E_NOTFOUND,  /* no such run / model */
    DB_E_SQL,       /* any other SQLite failure */
} DbStatus;

typedef struct {
    DbStatus status;
    char msg[512];
} DbErr;

/* Human-readable name of a status ("not a database", ...).  Can't fail. */
const char *db_status_str(DbStatus s);

/* ---- opening --------------------------------------------------------- */

enum {
    DB_OPEN_CREATE   = 1,   /* create the file if missing */
    DB_OPEN_READONLY = 2,   /* no writes; no migration, no recovery marking */
};

/* The schema version this program writes (PRAGMA user_version). */
#define DB_SCHEMA_VERSION 4

typedef struct Db Db;

/* Open (and with DB_OPEN_CREATE create) a database.  A writable open sets
** WAL mode and a busy timeout, migrates an older schema to
** DB_SCHEMA_VERSION in one transaction, and marks runs left 'running' by a
** dead writer as 'interrupted'.  A file that is not a database gives
** DB_E_NOTDB and a newer schema DB_E_VERSION; neither file is modified.
** Returns NULL with err filled on failure. */
Db *db_open(const char *path, int flags, DbErr *err);
/* Close; accepts NULL.  Logs begun on this Db must be finished first. */
void db_close(Db *db);
const char *db_path(const Db *db);       /* the path given to db_open */

/* ---- models ---------------------------------------------------------- */

typedef struct {
    int64_t id;             /* filled by db_model_register / readers */
    const char *path;
    const char *name;       /* general.name, may be "" */
    const char *arch;       /* general.architecture */
    uint64_t file_size;
    uint64_t hash;          /* db_file_hash() of the file */
    int n_layer, n_expert, k;
} DbModel;

/* A fast content fingerprint of a model file: FNV-1a 64 over the file size,
** the first 8 MiB (the GGUF header: metadata and tensor table) and the last
** 1 MiB.  Milliseconds for multi-GB files.  Fills *hash and *size. */
DbStatus db_file_hash(const char *path, uint64_t *hash, uint64_t *size,
                      DbErr *err);

/* Find the model with the same (hash, file_size) or insert it; m->id is set.
** A known model whose path changed gets the new path. */
DbStatus db_model_register(Db *db, DbModel *m, DbErr *err);

/* ---- writing a run --------------------------------------------------- */

/* Run flags (runs.flags). */
enum {
    DB_RUN_SCORES     = 1,  /* store the k selection scores of each route */
    DB_RUN_LOGITS     = 2,  /* store the n_expert router logits (the bulk) */
    DB_RUN_IMPORTED   = 4,  /* routes come from a trace (runs.source says
                               which), not from our engine: read-only for
                               steering (the model file is not here) */
    DB_RUN_NO_WEIGHTS = 8,  /* the trace had no gate weights: each route
                               stores 1/k per expert, so weight mass =
                               count/k and only counts are meaningful */
    DB_RUN_COUNTS_ONLY = 16,/* imported per layer×expert counts without
                               tokens (SGLang per_pass / stat dumps, EPLB
                               load records): the run has load rows and
                               runs.n_counted, no tokens and no routes;
                               token views (routes, tokens, prompt/gen
                               splits, diffs) are not available */
};

typedef struct {
    int64_t model;          /* id from db_model_register */
    int64_t parent;         /* run this one re-runs with changes, 0 = none */
    const char *tag;        /* run set name, may be NULL */
    const char *prompt;     /* raw prompt text */
    const char *prompt_fmt; /* the prompt as fed to the model (template) */
    const char *iv_text;    /* interventions as the command line says them,
                               one per line; NULL/"" = none */
    const char *iv_json;    /* the same as a JSON array; NULL = "[]".  Must be
                               valid JSON (checked). */
    uint64_t seed;
    float temp, top_p;
    int top_k, greedy;
    int n_predict;          /* generation budget asked for */
    int n_ctx;
    int flags;              /* DB_RUN_* */
    const char *source;     /* NULL = recorded by our engine; else where the
                               routes come from, "<engine>:<path>" (e.g.
                               "vllm:/data/trace"); stored in runs.source */
    int64_t n_counted;      /* DB_RUN_COUNTS_ONLY runs: tokens counted in
                               every MoE layer (runs.n_counted); else 0 */
} DbRunInfo;

#define DB_TOP_MAX 8        /* alternatives stored per token (top-5 usual) */

typedef struct {
    int32_t pos;
    int32_t token;
    int is_prompt;
    const char *piece;      /* the token's text (NULL = ""); need not be
                               valid UTF-8 */
    int piece_len;          /* bytes; -1 = strlen(piece) */
    float logprob;          /* of the chosen token; NAN = unknown (prompt) */
    int n_top;              /* 0..DB_TOP_MAX */
    int32_t top_ids[DB_TOP_MAX];
    float top_lp[DB_TOP_MAX];
} DbToken;

typedef struct {
    int32_t pos;
    int32_t layer;          /* absolute layer, 0..n_layer-1 */
    int is_prompt;          /* 1 for a prompt position */
    int k;                  /* experts chosen, 1..n_expert */
    const int32_t *experts; /* k ids in selection order */
    const float *weights;   /* k weights applied */
    const float *scores;    /* k selection scores or NULL */
    const float *logits;    /* n_expert router logits or NULL */
    int n_logits;           /* readers: count of logits; ignored when
                               writing (it is the model's n_expert) */
    float shared_gate;      /* NAN = no shared expert */
} DbRoute;

typedef struct {
    int n_prompt, n_gen;    /* tokens */
    double t_prompt_ms, t_gen_ms;
    const char *error;      /* for DB_RUN_FAILED: why (may be NULL) */
} DbRunStats;

typedef enum {
    DB_RUN_RUNNING = 0,
    DB_RUN_COMPLETE,
    DB_RUN_FAILED,
    DB_RUN_INTERRUPTED,
} DbRunStatus;

const char *db_run_status_str(DbRunStatus s);   /* "complete", ... */

typedef struct DbLog DbLog;

/* Start logging a run: inserts it with status 'running' (committed at once,
** so the run id is visible) and starts the flusher.  The DbLog has its own
** connection to db's file (the one a finished log left parked on db, else a
** new one) and uses nothing else of db but its path, flags and spare
** buffers (under a mutex): a background thread may log while another
** thread reads through db.  The model's n_layer and n_expert give the shape that
** routes are checked against and that sizes the aggregates.  flush_every =
** records (tokens + routes) per batch, 0 = 16384 (~1.3 MB).  Returns NULL with err
** filled on failure.  A batch is also written once it is 0.25 s old if
** the flusher is idle, so readers follow a slow run's progress. */
DbLog *db_log_begin(Db *db, const DbRunInfo *ri, int flush_every, DbErr *err);
int64_t db_log_run_id(const DbLog *lg);  /* the run of a db_log_begin log */

/* Append a token / a route: copies it into the buffer and updates the
** aggregates; when the buffer holds flush_every records it is handed to the
** flusher (this blocks only if the previous batch is still being written).
** Returns DB_E_ARG for a record outside the run's shape, or the sticky error
** of a failed flush (then the run can only be finished as failed).  Pointers
** in the record are not kept.  (pos) per token and (pos, layer) per route
** must be unique within a run: a duplicate makes its batch fail. */
DbStatus db_log_token(DbLog *lg, const DbToken *t);
DbStatus db_log_route(DbLog *lg, const DbRoute *r);

/* Write what is buffered now (waits for it).  Optional: batches flush by
** themselves. */
DbStatus db_log_flush(DbLog *lg, DbErr *err);

/* Finish the run: writes the last rows, the aggregates and the status
** (DB_RUN_COMPLETE or DB_RUN_FAILED) with the stats in one transaction,
** then frees lg (always, even on error).  If writing fails the run stays
** not complete and err says why.  st may be NULL. */
DbStatus db_log_finish(DbLog *lg, DbRunStatus status, const DbRunStats *st,
                       DbErr *err);

/* ---- reading --------------------------------------------------------- */

typedef struct {
    int64_t id, model, parent;
    const char *model_name, *model_path, *arch;
    const char *tag, *prompt, *prompt_fmt, *iv_text, *iv_json;
    const char *created_at, *finished_at;   /* ISO 8601 UTC; finished may be "" */
    const char *error;
    const char *source;                     /* NULL = our engine, else the
                                               trace it was imported from */
    DbRunStatus status;
    uint64_t seed;
    double temp, top_p;
    int top_k, greedy, n_predict, n_ctx, flags;
    int n_layer, n_expert, k;               /* from the model */
    int n_prompt, n_gen;                    /* tokens stored (running: so far) */
    int64_t n_counted;                      /* DB_RUN_COUNTS_ONLY: tokens
                                               counted per MoE layer, else 0 */
    double t_prompt_ms, t_gen_ms;
} DbRun;

/* Which runs: one run, all runs with a tag, or everything. */
typedef struct {
    int64_t run;            /* > 0: this run */
    const char *tag;        /* else if non-NULL: runs with this tag */
    int64_t model;          /* else/also if > 0: runs of this model */
} DbSel;

/* Callbacks return 0 to go on, non-zero to stop (the function then returns
** DB_OK).  Pointers they receive are valid only during the call. */
typedef int (*DbRunFn)(void *user, const DbRun *r);
typedef int (*DbTokenFn)(void *user, int64_t run, const DbToken *t);
typedef int (*DbRouteFn)(void *user, int64_t run, const DbRoute *r);
typedef int (*DbTagFn)(void *user, const char *tag, int n_runs);
/* one token routed to an expert: its position, rank in the selection
** (0 = first chosen) and the weight it received */
typedef int (*DbHitFn)(void *user, int64_t run, int32_t pos, int rank,
                       float weight, int is_prompt);

/* Runs matching sel (NULL = all), in id order. */
DbStatus db_runs(Db *db, const DbSel *sel, DbRunFn fn, void *user, DbErr *err);
/* One run, copied into *out; free with db_run_free.  DB_E_NOTFOUND if none. */
DbStatus db_run_get(Db *db, int64_t run, DbRun *out, DbErr *err);
void db_run_free(DbRun *r);              /* frees the strings; accepts NULL */

/* Tokens of a run in position order. */
DbStatus db_tokens(Db *db, int64_t run, DbTokenFn fn, void *user, DbErr *err);
/* Routes of a run with pos_from <= pos <= pos_to (pos_to < 0: to the end),
** in (pos, layer) order; layer >= 0 keeps only that layer.  The route of one
** token through all layers is db_routes(db, run, p, p, -1, ...). */
DbStatus db_routes(Db *db, int64_t run, int32_t pos_from, int32_t pos_to,
                   int layer, DbRouteFn fn, void *user, DbErr *err);
/* Tokens of the runs in sel routed to expert in layer, in (run, pos) order. */
DbStatus db_expert_hits(Db *db, const DbSel *sel, int layer, int expert,
                        DbHitFn fn, void *user, DbErr *err);
/* Tags with their number of runs, by name. */
DbStatus db_tags(Db *db, DbTagFn fn, void *user, DbErr *err);

/* Per layer×expert load summed over the complete runs in sel, from the
** aggregates (no raw routes are read).  Arrays are n_layer*n_expert, index
** layer*n_expert + expert; n_layer/n_expert are the largest of the models
** involved.  Free with db_load_free. */
typedef struct {
    int n_layer, n_expert;
    int n_runs;
    int64_t n_prompt, n_gen;        /* tokens in those runs */
    int n_counts_only;              /* of those runs, DB_RUN_COUNTS_ONLY
                                       ones: their prompt/generated split
                                       is unknown (load n_prompt = 0) */
    int64_t n_counted;              /* tokens counted in each MoE layer by
                                       the count-only runs */
    int64_t *count;                 /* tokens routed */
    double *weight;                 /* weight mass */
    int64_t *count_prompt;          /* of which prompt tokens */
    double *weight_prompt;
} DbLoad;

DbStatus db_load(Db *db, const DbSel *sel, DbLoad *out, DbErr *err);
void db_load_free(DbLoad *l);           /* accepts NULL */

/* ---- export ---------------------------------------------------------- */

typedef enum { DB_FMT_JSONL = 0, DB_FMT_CSV } DbFormat;
typedef enum { DB_WHAT_ROUTES = 0, DB_WHAT_TOKENS, DB_WHAT_LOAD, DB_WHAT_RUNS } DbWhat;

/* Stream the selected runs' rows to out in constant memory.  JSONL field
** names and CSV columns are documented in db/README.md.  Strings are
** JSON-escaped (control characters as \n \t \u00XX, invalid UTF-8 bytes as
** U+FFFD); floats print with %.9g (float32 round-trips).  Returns DB_E_IO
** if writing to out fails. */
DbStatus db_export(Db *db, const DbSel *sel, DbWhat what, DbFormat fmt,
                   FILE *out, DbErr *err);

/* ---- import (moetrace) ---- */
/* Reading and writing moetrace v1 routing traces (docs/moetrace.md): traces
** of models served elsewhere (vLLM, SGLang, Hugging Face) imported as runs,
** and our own runs exported in the same format.  db/import*.c. */

/* An NPY array (format versions 1-3), validated and mapped read-only.
** Supported dtypes: '<i2' '<i4' '<i8' '|u1' '<u2' '<f2' '<f4' and their
** big-endian forms ('>'); C order only; at most DB_NPY_MAX_DIM dimensions;
** the data must fill the rest of the file exactly. */
#define DB_NPY_MAX_DIM 8

typedef struct {
    char name[256];         /* file name used in messages */
    char descr[8];          /* e.g. "<i2" */
    char kind;              /* 'i' signed, 'u' unsigned, 'f' float */
    int itemsize;           /* 1, 2, 4 or 8 */
    int swap;               /* stored byte order differs from the host's */
    int ndim;
    uint64_t shape[DB_NPY_MAX_DIM];
    uint64_t count;         /* product of shape */
    const uint8_t *data;    /* count * itemsize bytes */
    void *map;              /* mmap of the file (db_npy_open), else NULL */
    size_t map_len;
} DbNpy;

/* Validate an in-memory NPY image of len bytes; a->data points into buf.
** name is used in messages.  Errors (DB_E_ARG) name the file, the field
** and the value found against what was expected.  Can't allocate. */
DbStatus db_npy_parse(DbNpy *a, const uint8_t *buf, size_t len, const char *name,
                      DbErr *err);
/* Map and validate an NPY file (DB_E_IO if it can't be read). */
DbStatus db_npy_open(DbNpy *a, const char *path, DbErr *err);
void db_npy_close(DbNpy *a);            /* accepts a zeroed or closed array */
/* Element i (flat, C order) as an integer / a double; i < a->count. */
int64_t db_npy_int(const DbNpy *a, uint64_t i);
double db_npy_float(const DbNpy *a, uint64_t i);
/* IEEE half to float.  Can't fail. */
float db_half_to_float(uint16_t h);

/* Write an NPY version 1 header of exactly DB_NPY_HDR bytes for a C-order
** array of descr and shape; writing it again later with the final shape
** (fseek to the start) keeps the data in place.  DB_E_IO on failure. */
#define DB_NPY_HDR 128
DbStatus db_npy_write_header(FILE *f, const char *descr, int ndim,
                             const uint64_t *shape, DbErr *err);

/* A moetrace v1 trace (a directory or a .jsonl file), opened and checked
** completely before anything is written: meta.json fields, NPY headers,
** shapes against each other and against the file sizes, every expert id
** (-1 or 0..num_experts-1, no repeats within a route), index rows grouped
** by sequence with increasing positions.  A count trace ("kind": "counts",
** directory form) holds counts.npy [sequences, moe_layers, num_experts]
** instead: counts >= 0, each layer's sum = the sequence's "tokens" × top_k.
** Memory stays bounded: the NPY files are mapped, a JSONL file is read line
** by line. */
typedef struct DbTrace DbTrace;

typedef struct {
    const char *model, *arch, *source;  /* from meta.json ("" if absent) */
    int num_layers, num_experts, top_k;
    int n_moe, k_slots;             /* moe_layers count; experts' last dim */
    const int *moe_layers;          /* n_moe absolute layer indices */
    int has_weights, has_logits;
    int counts_only;                /* meta.json "kind": "counts": per
                                       sequence layer×expert counts
                                       (counts.npy), no tokens */
    int64_t n_tokens;               /* rows; count traces: tokens counted */
    int n_seq;
} DbTraceInfo;

DbTrace *db_trace_open(const char *path, DbErr *err);
void db_trace_close(DbTrace *t);        /* accepts NULL */
const DbTraceInfo *db_trace_info(const DbTrace *t);

/* Token text for imported tokens (e.g. from a GGUF vocabulary): returns
** the bytes of id and their length in *len, or NULL if unknown. */
typedef const char *(*DbPieceFn)(void *user, int32_t id, size_t *len);
/* Progress: tokens done of total; return non-zero to cancel the import. */
typedef int (*DbProgressFn)(void *user, int64_t done, int64_t total);

typedef struct {
    const char *tag;        /* run set name of the imported runs */
    DbPieceFn piece;        /* NULL = empty token text */
    void *piece_user;
    DbProgressFn progress;  /* NULL = silent */
    void *progress_user;
    int flush_every;        /* records per batch (one transaction), 0 = about
                               10 MB: 131072 without logits */
} DbImportOpts;

/* Import every sequence of t as one complete run (DB_RUN_IMPORTED, plus
** DB_RUN_NO_WEIGHTS when the trace has no weights; a count trace's runs are
** DB_RUN_COUNTS_ONLY | DB_RUN_NO_WEIGHTS with load rows only, weight mass
** count/k and runs.n_counted = its "tokens") of a model row built
** from meta.json (no file: path "", file_size 0, hash of the model name and
** shape).  All or nothing: if any write fails or the progress callback
** cancels, the runs already written, their rows and a model row this call
** created are deleted again.  The ids of the first and last run are stored
** in *first and *last (either may be NULL). */
DbStatus db_import(Db *db, DbTrace *t, const DbImportOpts *o, int64_t *first,
                   int64_t *last, DbErr *err);

/* Delete runs first..last (ids) with their tokens, routes and load rows in
** one transaction; used to undo a partial import.  Only runs flagged
** DB_RUN_IMPORTED are touched. */
DbStatus db_import_discard(Db *db, int64_t first, int64_t last, DbErr *err);

/* Write the complete runs in sel as a moetrace v1 directory dir (created;
** it must not exist): all runs must be of one model.  Streams run by run;
** written under dir.tmp and renamed when complete. */
DbStatus db_export_moetrace(Db *db, const DbSel *sel, const char *dir, DbErr *err);

/* ---- end import (moetrace) -------------------------------------------- */

#endif
