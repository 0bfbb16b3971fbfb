/*
** db/db.c — opening a routing database: connections, schema migrations,
** recovery of runs whose writer died, model registration, errors.
**
** A database file carries its schema version in PRAGMA user_version.  The
** migrations below are applied in order, each taking version i to i+1,
** all inside one BEGIN IMMEDIATE transaction so that two processes opening
** an old file at once cannot both migrate it and a failed migration leaves
** the file as it was.  Before anything is written the file is checked: a
** file that is not SQLite (SQLITE_NOTADB at the first read), a SQLite file
** that is not ours (tables but user_version 0) and a newer schema are all
** refused without touching the file.
**
** Recovery: every run records the writer that is logging it as
** "pid:starttime:random" (starttime from /proc/PID/stat, so a recycled pid
** is not mistaken for the writer).  A writable open marks 'running' runs
** whose writer process is gone as 'interrupted'.  Runs of a live process,
** including this one, are left alone.
*/
#include "db/db_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------ */

const char *db_status_str(DbStatus s)
{
    switch (s) {
    case DB_OK: return "ok";
    case DB_E_IO: return "i/o error";
    case DB_E_NOMEM: return "out of memory";
    case DB_E_NOTDB: return "not a database";
    case DB_E_VERSION: return "unsupported schema version";
    case DB_E_READONLY: return "read-only";
    case DB_E_FULL: return "disk full";
    case DB_E_BUSY: return "database busy";
    case DB_E_CORRUPT: return "database corrupt";
    case DB_E_ARG: return "bad argument";
    case DB_E_NOTFOUND: return "not found";
    case DB_E_SQL: return "sql error";
    }
    return "unknown status";
}

const char *db_run_status_str(DbRunStatus s)
{
    switch (s) {
    case DB_RUN_RUNNING: return "running";
    case DB_RUN_COMPLETE: return "complete";
    case DB_RUN_FAILED: return "failed";
    case DB_RUN_INTERRUPTED: return "interrupted";
    }
    return "unknown";
}

DbStatus db_err_set(DbErr *err, DbStatus status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->status = status;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* SQLite often loses the errno of a failed write (EFBIG, ENOSPC): look
** at the file system and the size limit ourselves.  Returns a description
** when the disk or the file size limit is the likely cause, else NULL. */
static const char *full_cause(sqlite3 *h)
{
    const char *path = h ? sqlite3_db_filename(h, "main") : NULL;
    if (!path || !*path)
        return NULL;
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        char wal[4200];
        struct stat sb;
        snprintf(wal, sizeof wal, "%s-wal", path);
        rlim_t big = 0;
        if (stat(path, &sb) == 0)
            big = (rlim_t)sb.st_size;
        if (stat(wal, &sb) == 0 && (rlim_t)sb.st_size > big)
            big = (rlim_t)sb.st_size;
        if (big + (1 << 16) >= rl.rlim_cur)
            return "file size limit reached (ulimit -f)";
    }
    struct statvfs vs;
    if (statvfs(path, &vs) == 0 && (uint64_t)vs.f_bavail * vs.f_frsize < (1u << 20))
        return "no space left on the device";
    return NULL;
}

DbStatus db_err_sqlite(DbErr *err, sqlite3 *h, int rc, const char *what)
{
    int prim = rc & 0xff;
    int sys = h ? sqlite3_system_errno(h) : 0;
    DbStatus s;
    switch (prim) {
    case SQLITE_NOTADB: s = DB_E_NOTDB; break;
    case SQLITE_FULL: s = DB_E_FULL; break;
    case SQLITE_READONLY: s = DB_E_READONLY; break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: s = DB_E_BUSY; break;
    case SQLITE_CORRUPT: s = DB_E_CORRUPT; break;
    case SQLITE_NOMEM: s = DB_E_NOMEM; break;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE: s = DB_E_ARG; break;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
        s = DB_E_IO;
        if (sys == ENOSPC || sys == EFBIG || sys == EDQUOT)
            s = DB_E_FULL;
        else if (sys == EACCES || sys == EROFS || sys == EPERM)
            s = DB_E_READONLY;
        break;
    default: s = DB_E_SQL; break;
    }
    const char *m = h ? sqlite3_errmsg(h) : sqlite3_errstr(rc);
    if (prim == SQLITE_IOERR || prim == SQLITE_FULL) {
        const char *cause = full_cause(h);
        if (cause)
            return db_err_set(err, DB_E_FULL, "%s: %s (%s)", what, m, cause);
    }
    if (sys && (prim == SQLITE_IOERR || prim == SQLITE_CANTOPEN ||
                prim == SQLITE_FULL || prim == SQLITE_READONLY))
        return db_err_set(err, s, "%s: %s (%s)", what, m, strerror(sys));
    return db_err_set(err, s, "%s: %s", what, m);
}

/* ---- schema ------------------------------------------------------------ */

/* Version 1: models, runs, tokens, routes, per-run load. */
static const char schema_v1[] =
    "CREATE TABLE models("
    " id INTEGER PRIMARY KEY,"
    " path TEXT NOT NULL,"
    " name TEXT NOT NULL DEFAULT '',"
    " arch TEXT NOT NULL DEFAULT '',"
    " file_size INTEGER NOT NULL,"
    " hash TEXT NOT NULL,"
    " n_layer INTEGER NOT NULL,"
    " n_expert INTEGER NOT NULL,"
    " k INTEGER NOT NULL,"
    " UNIQUE(hash, file_size));"
    "CREATE TABLE runs("
    " id INTEGER PRIMARY KEY,"
    " model INTEGER NOT NULL REFERENCES models(id),"
    " parent INTEGER REFERENCES runs(id),"
    " tag TEXT,"
    " prompt TEXT NOT NULL DEFAULT '',"
    " prompt_fmt TEXT NOT NULL DEFAULT '',"
    " interventions TEXT NOT NULL DEFAULT '',"
    " seed INTEGER NOT NULL DEFAULT 0,"
    " temp REAL, top_p REAL, top_k INTEGER, greedy INTEGER,"
    " n_predict INTEGER, n_ctx INTEGER,"
    " status TEXT NOT NULL CHECK(status IN"
    "   ('running','complete','failed','interrupted')),"
    " n_prompt INTEGER NOT NULL DEFAULT 0,"
    " n_gen INTEGER NOT NULL DEFAULT 0,"
    " t_prompt_ms REAL, t_gen_ms REAL,"
    " created_at TEXT NOT NULL,"
    " finished_at TEXT,"
    " writer TEXT);"
    "CREATE INDEX runs_tag ON runs(tag);"
    "CREATE INDEX runs_running ON runs(status) WHERE status = 'running';"
    "CREATE TABLE tokens("
    " run INTEGER NOT NULL, pos INTEGER NOT NULL,"
    " token INTEGER NOT NULL, piece TEXT NOT NULL,"
    " is_prompt INTEGER NOT NULL, logprob REAL,"
    " top_ids BLOB, top_lp BLOB,"
    " PRIMARY KEY(run, pos)) WITHOUT ROWID;"
    "CREATE TABLE routes("
    " run INTEGER NOT NULL, pos INTEGER NOT NULL, layer INTEGER NOT NULL,"
    " is_prompt INTEGER NOT NULL, k INTEGER NOT NULL,"
    " experts BLOB NOT NULL, weights BLOB NOT NULL,"
    " scores BLOB, logits BLOB,"
    " PRIMARY KEY(run, pos, layer)) WITHOUT ROWID;"
    "CREATE TABLE load("
    " run INTEGER NOT NULL, layer INTEGER NOT NULL, expert INTEGER NOT NULL,"
    " n INTEGER NOT NULL, w REAL NOT NULL,"
    " n_prompt INTEGER NOT NULL, w_prompt REAL NOT NULL,"
    " PRIMARY KEY(run, layer, expert)) WITHOUT ROWID;";

/* Decoding one byte of a blob in plain SQL (no extension needed): hex() of
** the byte, then each hex digit's place in '0123456789ABCDEF'. */
#define BYTE_AT(blob, idx)                                                   \
    "((instr('0123456789ABCDEF', substr(hex(substr(" blob ", " idx ", 1)), 1, 1)) - 1) * 16 + " \
    "instr('0123456789ABCDEF', substr(hex(substr(" blob ", " idx ", 1)), 2, 1)) - 1)"

/* Version 2: the interventions as JSON, the run's storage flags, the reason
** of a failure, the shared-expert gate; per-tag load kept by triggers so a
** tag's heatmap reads n_layer × n_expert rows whatever the number of runs;
** deleting a run deletes its rows; views that decode expert ids for
** plain-SQL users. */
static const char schema_v2[] =
    "ALTER TABLE runs ADD COLUMN iv_json TEXT NOT NULL DEFAULT '[]';"
    "ALTER TABLE runs ADD COLUMN flags INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE runs ADD COLUMN error TEXT;"
    "ALTER TABLE routes ADD COLUMN shared_gate REAL;"
    "CREATE TABLE tag_load("
    " tag TEXT NOT NULL, layer INTEGER NOT NULL, expert INTEGER NOT NULL,"
    " n INTEGER NOT NULL, w REAL NOT NULL,"
    " n_prompt INTEGER NOT NULL, w_prompt REAL NOT NULL,"
    " PRIMARY KEY(tag, layer, expert)) WITHOUT ROWID;"
    "INSERT INTO tag_load SELECT r.tag, l.layer, l.expert, sum(l.n), sum(l.w),"
    " sum(l.n_prompt), sum(l.w_prompt) FROM load l JOIN runs r ON r.id = l.run"
    " WHERE r.status = 'complete' AND r.tag IS NOT NULL"
    " GROUP BY r.tag, l.layer, l.expert;"
    /* a run becoming complete (its load rows are already written) */
    "CREATE TRIGGER tag_load_add AFTER UPDATE OF status ON runs"
    " WHEN new.status = 'complete' AND old.status <> 'complete' AND new.tag IS NOT NULL"
    " BEGIN"
    "  INSERT INTO tag_load SELECT new.tag, layer, expert, n, w, n_prompt, w_prompt"
    "   FROM load WHERE run = new.id AND true"
    "   ON CONFLICT(tag, layer, expert) DO UPDATE SET n = n + excluded.n,"
    "    w = w + excluded.w, n_prompt = n_prompt + excluded.n_prompt,"
    "    w_prompt = w_prompt + excluded.w_prompt;"
    " END;"
    /* a complete run leaving a tag: retagged, or its status changed back */
    "CREATE TRIGGER tag_load_sub AFTER UPDATE OF status, tag ON runs"
    " WHEN old.status = 'complete' AND old.tag IS NOT NULL"
    "  AND (new.status <> 'complete' OR new.tag IS NOT old.tag)"
    " BEGIN"
    "  UPDATE tag_load SET n = tag_load.n - l.n, w = tag_load.w - l.w,"
    "   n_prompt = tag_load.n_prompt - l.n_prompt,"
    "   w_prompt = tag_load.w_prompt - l.w_prompt FROM load l"
    "   WHERE l.run = old.id AND tag_load.tag = old.tag"
    "   AND tag_load.layer = l.layer AND tag_load.expert = l.expert;"
    "  DELETE FROM tag_load WHERE tag = old.tag AND n <= 0;"
    " END;"
    "CREATE TRIGGER tag_load_retag AFTER UPDATE OF tag ON runs"
    " WHEN new.status = 'complete' AND old.status = 'complete' AND new.tag IS NOT NULL"
    "  AND new.tag IS NOT old.tag"
    " BEGIN"
    "  INSERT INTO tag_load SELECT new.tag, layer, expert, n, w, n_prompt, w_prompt"
    "   FROM load WHERE run = new.id AND true"
    "   ON CONFLICT(tag, layer, expert) DO UPDATE SET n = n + excluded.n,"
    "    w = w + excluded.w, n_prompt = n_prompt + excluded.n_prompt,"
    "    w_prompt = w_prompt + excluded.w_prompt;"
    " END;"
    "CREATE TRIGGER run_delete AFTER DELETE ON runs"
    " BEGIN"
    "  UPDATE tag_load SET n = tag_load.n - l.n, w = tag_load.w - l.w,"
    "   n_prompt = tag_load.n_prompt - l.n_prompt,"
    "   w_prompt = tag_load.w_prompt - l.w_prompt FROM load l"
    "   WHERE old.status = 'complete' AND l.run = old.id AND tag_load.tag = old.tag"
    "   AND tag_load.layer = l.layer AND tag_load.expert = l.expert;"
    "  DELETE FROM tag_load WHERE tag = old.tag AND n <= 0;"
    "  DELETE FROM load WHERE run = old.id;"
    "  DELETE FROM routes WHERE run = old.id;"
    "  DELETE FROM tokens WHERE run = old.id;"
    " END;"
    /* one row per chosen expert; the k slots come from json_each over a
    ** k-element array built per row, so the view costs O(k) per route */
    "CREATE VIEW route_experts AS"
    " SELECT r.run AS run, r.pos AS pos, r.layer AS layer,"
    "  r.is_prompt AS is_prompt, s.key AS rank,"
    "  CASE length(r.experts) / r.k"
    "   WHEN 1 THEN " BYTE_AT("r.experts", "s.key + 1")
    "   ELSE " BYTE_AT("r.experts", "2 * s.key + 1")
    "    + 256 * " BYTE_AT("r.experts", "2 * s.key + 2")
    "  END AS expert"
    " FROM routes r, json_each('[' || substr(replace(hex(zeroblob(r.k)), '00', '0,'),"
    "  1, 2 * r.k - 1) || ']') s;"
    "CREATE VIEW run_load AS"
    " SELECT r.tag AS tag, l.run AS run, l.layer AS layer, l.expert AS expert,"
    "  l.n AS n, l.w AS w, l.n_prompt AS n_prompt, l.w_prompt AS w_prompt"
    " FROM load l JOIN runs r ON r.id = l.run WHERE r.status = 'complete';";

/* Version 3: where a run's routes come from.  NULL = recorded by moescope's
** engine; otherwise "<engine>:<trace path>" of an imported trace (e.g.
** "vllm:/data/dsv3-trace", "moetrace:/data/trace.jsonl").  Runs imported
** under version 2 (flag 4 = imported) are known to be imported but not from
** where: they get "moetrace", so that source IS NULL means "our engine". */
static const char schema_v3[] =
    "ALTER TABLE runs ADD COLUMN source TEXT;"
    "UPDATE runs SET source = 'moetrace' WHERE flags & 4;";

/* Version 4: runs imported as per layer×expert counts without tokens (flag
** 16, DB_RUN_COUNTS_ONLY: SGLang per_pass / stat dumps, EPLB load records)
** keep in n_counted how many tokens every MoE layer counted — what the
** per-layer shares and contrasts divide by, since they have no token rows.
** NULL for every other run. */
static const char schema_v4[] =
    "ALTER TABLE runs ADD COLUMN n_counted INTEGER;";

static const char *const migrations[DB_SCHEMA_VERSION] = { schema_v1, schema_v2, schema_v3,
                                                           schema_v4 };

DbStatus db_schema_migrate(sqlite3 *h, int from, int to, DbErr *err)
{
    if (from < 0 || to > DB_SCHEMA_VERSION || from > to)
        return db_err_set(err, DB_E_ARG,
                          "db_schema_migrate: cannot go from version %d to %d "
                          "(known: 0..%d)", from, to, DB_SCHEMA_VERSION);
    for (int v = from; v < to; v++) {
        int rc = sqlite3_exec(h, migrations[v], NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            char what[96];
            snprintf(what, sizeof what, "migrating schema %d -> %d", v, v + 1);
            return db_err_sqlite(err, h, rc, what);
        }
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", to);
    int rc = sqlite3_exec(h, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return db_err_sqlite(err, h, rc, "setting user_version");
    return DB_OK;
}

/* ---- connections ------------------------------------------------------- */

static int query_int(sqlite3 *h, const char *sql, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(h, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int(st, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            *out = 0;
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

sqlite3 *db_connect(const char *path, int flags, int *version, DbErr *err)
{
    sqlite3 *h = NULL;
    int ro = flags & DB_OPEN_READONLY;
    /* one thread at a time per connection (Db and DbLog contracts) */
    int oflags = (ro ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX;
    struct stat sb;

    if (!path || !*path) {
        db_err_set(err, DB_E_ARG, "db_open: empty database path");
        return NULL;
    }
    if (stat(path, &sb) != 0) {
        if (errno != ENOENT || ro || !(flags & DB_OPEN_CREATE)) {
            db_err_set(err, DB_E_IO, "database '%s': %s", path, strerror(errno));
            return NULL;
        }
        /* say plainly why a new file cannot be made */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (!slash)
            snprintf(dir, sizeof dir, ".");
        else if (slash == dir)
            dir[1] = 0;
        else
            *slash = 0;
        if (access(dir, W_OK) != 0) {
            db_err_set(err, errno == ENOENT ? DB_E_IO : DB_E_READONLY,
                       "cannot create database '%s': directory '%s': %s", path, dir,
                       errno == ENOENT ? "does not exist" : "not writable");
            return NULL;
        }
        oflags |= SQLITE_OPEN_CREATE;
    } else if (!S_ISREG(sb.st_mode)) {
        db_err_set(err, DB_E_NOTDB, "database '%s': not a regular file", path);
        return NULL;
    }

    int rc = sqlite3_open_v2(path, &h, oflags, NULL);
    if (rc != SQLITE_OK) {
        char what[600];
        snprintf(what, sizeof what, "cannot %s database '%s'",
                 (oflags & SQLITE_OPEN_CREATE) ? "create" : "open", path);
        db_err_sqlite(err, h, rc, what);
        if (err && err->status == DB_E_READONLY && (oflags & SQLITE_OPEN_CREATE))
            snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg),
                     "; is the directory writable?");
        sqlite3_close(h);
        return NULL;
    }
    sqlite3_extended_result_codes(h, 1);
    sqlite3_busy_timeout(h, DB_BUSY_MS);

    /* The first read: a non-SQLite file fails here, before any write. */
    rc = query_int(h, "PRAGMA user_version", version);
    if (rc == SQLITE_OK) {
        int n_tables = 0;
        rc = query_int(h, "SELECT count(*) FROM sqlite_master", &n_tables);
        if (rc == SQLITE_OK && *version == 0 && n_tables > 0) {
            db_err_set(err, DB_E_NOTDB,
                       "database '%s' is a SQLite file but not a moescope "
                       "database (user_version 0 with %d schema objects); "
                       "left untouched", path, n_tables);
            sqlite3_close(h);
            return NULL;
        }
    }
    if (rc != SQLITE_OK) {
        char what[600];
        snprintf(what, sizeof what, "database '%s'", path);
        db_err_sqlite(err, h, rc, what);
        if (err && err->status == DB_E_NOTDB)
            snprintf(err->msg, sizeof err->msg,
                     "'%s' is not a SQLite database (file left untouched)", path);
        else if (err && (err->status == DB_E_IO || err->status == DB_E_READONLY))
            snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg),
                     "; a WAL database needs its directory writable for the "
                     "-wal and -shm files");
        sqlite3_close(h);
        return NULL;
    }
    if (*version > DB_SCHEMA_VERSION) {
        db_err_set(err, DB_E_VERSION,
                   "database '%s' has schema version %d, newer than this "
                   "moescope supports (%d): use a newer moescope (file left "
                   "untouched)", path, *version, DB_SCHEMA_VERSION);
        sqlite3_close(h);
        return NULL;
    }
    if (ro && *version < DB_SCHEMA_VERSION) {
        db_err_set(err, DB_E_VERSION,
                   "database '%s' has schema version %d, older than %d: open "
                   "it once with a writing command (e.g. moescope run) to "
                   "migrate it", path, *version, DB_SCHEMA_VERSION);
        sqlite3_close(h);
        return NULL;
    }
    if (!ro && *version == 0) {
        /* a new file: bigger pages suit long runs of small route rows (must
        ** be set before WAL mode and the first table) */
        sqlite3_exec(h, "PRAGMA page_size = 16384", NULL, NULL, NULL);
    }
    if (!ro) {
        char mode[16] = "";
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(h, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            snprintf(mode, sizeof mode, "%s", (const char *)sqlite3_column_text(st, 0));
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        if (rc == SQLITE_OK && strcmp(mode, "wal") != 0) {
            db_err_set(err, DB_E_IO, "database '%s': cannot switch to WAL "
                       "journal mode (got '%s')", path, mode);
            sqlite3_close(h);
            return NULL;
        }
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(h, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            char what[600];
            snprintf(what, sizeof what, "database '%s': setting WAL mode", path);
            db_err_sqlite(err, h, rc, what);
            sqlite3_close(h);
            return NULL;
        }
    }
    return h;
}

/* ---- writer identity --------------------------------------------------- */

/* Start time of a process in clock ticks since boot (field 22 of
** /proc/PID/stat), 0 if unknown. */
static unsigned long long proc_start(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    /* fields after the command: state is field 3, starttime field 22 */
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p + 1, ' ');
    }
    if (!p)
        return 0;
    return strtoull(p + 1, NULL, 10);
}

void db_writer_id(char *buf, size_t cap)
{
    long pid = (long)getpid();
    uint64_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, &r, sizeof r) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = (uint64_t)ts.tv_nsec * 6364136223846793005ull ^ (uint64_t)ts.tv_sec ^
            (uint64_t)pid << 32;
    }
    if (fd >= 0)
        close(fd);
    snprintf(buf, cap, "%ld:%llu:%016llx", pid, proc_start(pid),
             (unsigned long long)r);
}

int db_writer_alive(const char *id)
{
    long pid = 0;
    unsigned long long start = 0;
    if (!id || sscanf(id, "%ld:%llu:", &pid, &start) != 2 || pid <= 0)
        return 0;
    if (pid == (long)getpid())
        return 1;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return 0;
    unsigned long long now = proc_start(pid);
    if (now && start && now != start)
        return 0;                       /* the pid was recycled */
    return 1;
}

/* Mark the runs of dead writers as interrupted.  The check reads first and
** takes the write lock only when there is something to mark, so opening a
** database while a writer is busy never waits for it. */
static DbStatus recover_runs(Db *db, DbErr *err)
{
    sqlite3 *h = db->h;
    sqlite3_stmt *st = NULL;
    int64_t dead[64];
    int n_dead = 0, more = 0;
    int rc = sqlite3_prepare_v2(h, "SELECT id, writer FROM runs WHERE status = 'running'",
                                -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        if (db_writer_alive((const char *)sqlite3_column_text(st, 1)))
            continue;
        if (n_dead == (int)(sizeof dead / sizeof dead[0])) {
            more = 1;           /* the rest on the next open */
            break;
        }
        dead[n_dead++] = sqlite3_column_int64(st, 0);
    }
    if (rc == SQLITE_DONE)
        rc = SQLITE_OK;
    sqlite3_finalize(st);
    st = NULL;
    if (rc == SQLITE_OK && n_dead > 0)
        rc = sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK && n_dead > 0)
        rc = sqlite3_prepare_v2(h, "UPDATE runs SET status = 'interrupted', "
                                "finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                                "WHERE id = ? AND status = 'running'", -1, &st, NULL);
    for (int i = 0; rc == SQLITE_OK && i < n_dead; i++) {
        sqlite3_bind_int64(st, 1, dead[i]);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK && n_dead > 0)
        rc = sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        DbStatus s = db_err_sqlite(err, h, rc, "recovering interrupted runs");
        if (!sqlite3_get_autocommit(h))
            sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
        return s;
    }
    if (more)
        return recover_runs(db, err);
    return DB_OK;
}

/* ---- open / close ------------------------------------------------------ */

Db *db_open(const char *path, int flags, DbErr *err)
{
    int version = 0;
    sqlite3 *h = db_connect(path, flags, &version, err);
    if (!h)
        return NULL;
    Db *db = calloc(1, sizeof *db);
    char *p = strdup(path);
    if (!db || !p) {
        free(db);
        free(p);
        sqlite3_close(h);
        db_err_set(err, DB_E_NOMEM, "db_open '%s': out of memory", path);
        return NULL;
    }
    if (pthread_mutex_init(&db->mu, NULL) != 0) {
        free(db);
        free(p);
        sqlite3_close(h);
        db_err_set(err, DB_E_NOMEM, "db_open '%s': cannot create a mutex", path);
        return NULL;
    }
    db->h = h;
    db->path = p;
    db->flags = flags;
    if (flags & DB_OPEN_READONLY)
        return db;

    if (version < DB_SCHEMA_VERSION) {
        int rc = sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            db_err_sqlite(err, h, rc, "starting schema migration");
            goto fail;
        }
        /* another process may have migrated while we waited for the lock */
        rc = query_int(h, "PRAGMA user_version", &version);
        DbStatus s = rc == SQLITE_OK ? DB_OK : db_err_sqlite(err, h, rc, "schema version");
        if (s == DB_OK && version < DB_SCHEMA_VERSION)
            s = db_schema_migrate(h, version, DB_SCHEMA_VERSION, err);
        if (s == DB_OK) {
            rc = sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
            if (rc != SQLITE_OK)
                s = db_err_sqlite(err, h, rc, "committing schema migration");
        }
        if (s != DB_OK) {
            sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
            if (err) {
                size_t n = strlen(err->msg);
                snprintf(err->msg + n, sizeof err->msg - n, " (database '%.200s' unchanged)",
                         path);
            }
            goto fail;
        }
    }
    if (recover_runs(db, err) != DB_OK)
        goto fail;
    return db;
fail:
    db_close(db);
    return NULL;
}

void db_close(Db *db)
{
    if (!db)
        return;
    db_log_conn_free(db->spare_conn);
    sqlite3_close(db->h);
    free(db->spare[0]);
    free(db->spare[1]);
    pthread_mutex_destroy(&db->mu);
    free(db->path);
    free(db);
}

const char *db_path(const Db *db)
{
    return db->path;
}

/* ---- models ------------------------------------------------------------ */

#define HASH_HEAD (8u << 20)
#define HASH_TAIL (1u << 20)

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

DbStatus db_file_hash(const char *path, uint64_t *hash, uint64_t *size, DbErr *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return db_err_set(err, DB_E_IO, "model file '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        fclose(f);
        return db_err_set(err, DB_E_IO, "model file '%s': %s", path, strerror(errno));
    }
    uint64_t sz = (uint64_t)sb.st_size;
    uint64_t h = 0xcbf29ce484222325ull;
    uint8_t szb[8];
    for (int i = 0; i < 8; i++)
        szb[i] = (uint8_t)(sz >> (8 * i));
    h = fnv1a(h, szb, 8);

    enum { CHUNK = 1 << 16 };
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        fclose(f);
        return db_err_set(err, DB_E_NOMEM, "hashing '%s': out of memory", path);
    }
    uint64_t head = sz < HASH_HEAD ? sz : HASH_HEAD;
    uint64_t tail_off = sz > HASH_HEAD + HASH_TAIL ? sz - HASH_TAIL : head;
    DbStatus s = DB_OK;
    for (int part = 0; part < 2 && s == DB_OK; part++) {
        uint64_t off = part == 0 ? 0 : tail_off;
        uint64_t end = part == 0 ? head : sz;
        if (off >= end)
            continue;
        if (fseeko(f, (off_t)off, SEEK_SET) != 0) {
            s = db_err_set(err, DB_E_IO, "hashing '%s': seek: %s", path, strerror(errno));
            break;
        }
        while (off < end) {
            size_t want = end - off < CHUNK ? (size_t)(end - off) : CHUNK;
            size_t got = fread(buf, 1, want, f);
            if (got != want) {
                s = db_err_set(err, DB_E_IO, "hashing '%s': short read at %llu",
                               path, (unsigned long long)off);
                break;
            }
            h = fnv1a(h, buf, got);
            off += got;
        }
    }
    free(buf);
    fclose(f);
    if (s == DB_OK) {
        *hash = h;
        *size = sz;
    }
    return s;
}

DbStatus db_model_register(Db *db, DbModel *m, DbErr *err)
{
    if (!m->path || m->n_layer <= 0 || m->n_expert <= 0 || m->n_expert > 65536 ||
        m->k <= 0 || m->k > m->n_expert)
        return db_err_set(err, DB_E_ARG,
                          "db_model_register: bad model (path %s, n_layer %d, "
                          "n_expert %d, k %d): expected a path, n_layer > 0, "
                          "1 <= n_expert <= 65536, 1 <= k <= n_expert",
                          m->path ? m->path : "(null)", m->n_layer, m->n_expert, m->k);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)m->hash);
    sqlite3 *h = db->h;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(h,
        "INSERT INTO models(path, name, arch, file_size, hash, n_layer, n_expert, k)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        " ON CONFLICT(hash, file_size) DO UPDATE SET path = excluded.path"
        " RETURNING id, n_layer, n_expert, k", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, m->path, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, m->name ? m->name : "", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, m->arch ? m->arch : "", -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)m->file_size);
        sqlite3_bind_text(st, 5, hex, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 6, m->n_layer);
        sqlite3_bind_int(st, 7, m->n_expert);
        sqlite3_bind_int(st, 8, m->k);
        rc = sqlite3_step(st);
    }
    DbStatus s = DB_OK;
    if (rc == SQLITE_ROW) {
        m->id = sqlite3_column_int64(st, 0);
        if (sqlite3_column_int(st, 1) != m->n_layer ||
            sqlite3_column_int(st, 2) != m->n_expert)
            s = db_err_set(err, DB_E_ARG,
                           "db_model_register: model '%s' has the same hash and size "
                           "as model %lld but a different shape (%d layers x %d "
                           "experts stored, %d x %d given)", m->path,
                           (long long)m->id, sqlite3_column_int(st, 1),
                           sqlite3_column_int(st, 2), m->n_layer, m->n_expert);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    if (s == DB_OK && rc != SQLITE_OK)
        s = db_err_sqlite(err, h, rc, "registering model");
    sqlite3_finalize(st);
    return s;
}

/* ---- selections -------------------------------------------------------- */

void db_sel_where(const DbSel *sel, char *sql, size_t cap)
{
    size_t n = strlen(sql);
    if (!sel || (sel->run <= 0 && !sel->tag && sel->model <= 0)) {
        snprintf(sql + n, cap - n, "1");
        return;
    }
    if (sel->run > 0)
        n += (size_t)snprintf(sql + n, cap - n, "r.id = ?91");
    else if (sel->tag)
        n += (size_t)snprintf(sql + n, cap - n, "r.tag = ?92");
    else
        n += (size_t)snprintf(sql + n, cap - n, "1");
    if (sel->model > 0 && n < cap)
        snprintf(sql + n, cap - n, " AND r.model = ?93");
}

int db_sel_bind(sqlite3_stmt *st, const DbSel *sel)
{
    int rc = SQLITE_OK;
    if (!sel)
        return rc;
    if (sel->run > 0)
        rc = sqlite3_bind_int64(st, 91, sel->run);
    else if (sel->tag)
        rc = sqlite3_bind_text(st, 92, sel->tag, -1, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK && sel->model > 0)
        rc = sqlite3_bind_int64(st, 93, sel->model);
    return rc;
}
