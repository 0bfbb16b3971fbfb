/*
** tests/test_db_crash.c — reliability of the routing database under
** failure: a writer killed with SIGKILL at many different moments, a reader
** polling at 10 Hz while the writer logs, and a full disk; the first two
** also for the importer's bulk log (many runs per transaction, checkpoints
** on their own thread).
**
** The child writers log synthetic runs whose content is a function of a
** seed written into the run's prompt ("seed=S n=N"), so after each kill the
** parent can check every run that reads as complete against what the child
** wrote, row by row.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/tmpdir.h"

#include "db/db.h"
#include "db/db_int.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { NL = 4, NE = 64, K = 8 };

static void synth_route(uint64_t seed, int pos, int layer, int32_t *ex, float *w)
{
    uint64_t s = mix(seed ^ ((uint64_t)pos << 20) ^ ((uint64_t)layer << 44));
    int n = 0;
    while (n < K) {
        s = mix(s);
        int e = (int)(s % NE), dup = 0;
        for (int i = 0; i < n; i++)
            dup |= ex[i] == e;
        if (!dup)
            ex[n++] = e;
    }
    for (int i = 0; i < K; i++)
        w[i] = (float)((mix(s + (uint64_t)i) >> 40) + 1) / (float)(1 << 24);
}

static int run_len(uint64_t seed)
{
    return 100 + (int)(mix(seed) % 400);
}

static int64_t add_model(Db *db)
{
    DbModel m = { 0, "synthetic.gguf", "synthetic", "olmoe", 1000, 0x5eed, NL, NE, K };
    DbErr err = { 0 };
    assert_int_equal(db_model_register(db, &m, &err), DB_OK);
    return m.id;
}

/* The tokens and routes of synthetic run `seed` (n = run_len(seed) tokens)
** appended to lg. */
static DbStatus synth_rows(DbLog *lg, uint64_t seed)
{
    int n = run_len(seed), n_prompt = 10;
    DbStatus s = DB_OK;
    float lgt[NE];
    for (int e = 0; e < NE; e++)
        lgt[e] = (float)e * 0.25f;
    for (int p = 0; p < n && s == DB_OK; p++) {
        DbToken t = { .pos = p, .token = p * 7, .is_prompt = p < n_prompt, .piece = "tok",
                      .piece_len = 3, .logprob = -0.5f, .n_top = 5 };
        s = db_log_token(lg, &t);
        for (int l = 0; l < NL && s == DB_OK; l++) {
            int32_t ex[K];
            float w[K];
            synth_route(seed, p, l, ex, w);
            DbRoute r = { .pos = p, .layer = l, .is_prompt = p < n_prompt, .k = K,
                          .experts = ex, .weights = w, .logits = lgt, .shared_gate = NAN };
            s = db_log_route(lg, &r);
        }
    }
    return s;
}

static void synth_prompt(char *buf, size_t cap, uint64_t seed)
{
    snprintf(buf, cap, "seed=%llu n=%d", (unsigned long long)seed, run_len(seed));
}

/* Log one synthetic run; returns DB_OK or the first error (err filled). */
static DbStatus log_synth(Db *db, int64_t model, const char *tag, uint64_t seed,
                          int flush_every, int logits, int *ready_fd, DbErr *err)
{
    char prompt[64];
    synth_prompt(prompt, sizeof prompt, seed);
    DbRunInfo ri = { .model = model, .tag = tag, .prompt = prompt, .seed = seed,
                     .flags = logits ? DB_RUN_LOGITS : 0 };
    DbLog *lg = db_log_begin(db, &ri, flush_every, err);
    if (!lg)
        return err->status;
    if (ready_fd && *ready_fd >= 0) {
        /* tell the parent a run is under way: its clock starts now */
        ssize_t w = write(*ready_fd, "r", 1);   /* the parent may not listen */
        (void)w;
        close(*ready_fd);
        *ready_fd = -1;
    }
    DbStatus s = synth_rows(lg, seed);
    DbErr e2 = { 0 };
    DbStatus f = db_log_finish(lg, s == DB_OK ? DB_RUN_COMPLETE : DB_RUN_FAILED, NULL, &e2);
    if (s == DB_OK && f != DB_OK) {
        *err = e2;
        s = f;
    } else if (s != DB_OK) {
        *err = e2;               /* the sticky flush error, with its message */
    }
    return s;
}

/* Log synthetic runs seed0, seed0+1, ... through one bulk log (the
** importer's path) with small batches, so that runs span batches and
** batches hold the end of one run and the start of the next, and with
** checkpoints asked for after nearly every commit.  n_runs < 0: until
** *stop is set (or forever).  Returns the first error. */
static DbStatus bulk_synth(Db *db, int64_t model, const char *tag, uint64_t seed0, int n_runs,
                           atomic_int *stop, int *ready_fd, int *n_done, DbErr *err)
{
    DbLog *lg = db_log_bulk_begin(db, model, 300, err);
    if (!lg)
        return err->status;
    db_log_set_checkpoints(lg, 4, 32);
    if (ready_fd && *ready_fd >= 0) {
        ssize_t w = write(*ready_fd, "r", 1);
        (void)w;
        close(*ready_fd);
        *ready_fd = -1;
    }
    DbStatus s = DB_OK;
    int j = 0;
    for (; s == DB_OK && (n_runs < 0 || j < n_runs) && !(stop && atomic_load(stop)); j++) {
        char prompt[64];
        synth_prompt(prompt, sizeof prompt, seed0 + (uint64_t)j);
        DbRunInfo ri = { .model = model, .tag = tag, .prompt = prompt,
                         .seed = seed0 + (uint64_t)j, .flags = DB_RUN_IMPORTED,
                         .source = "moetrace:/synthetic" };
        s = db_log_bulk_run(lg, &ri);
        if (s == DB_OK)
            s = synth_rows(lg, seed0 + (uint64_t)j);
        if (s == DB_OK)
            s = db_log_bulk_end(lg, DB_RUN_COMPLETE, NULL);
    }
    if (n_done)
        *n_done = j;
    DbErr e2 = { 0 };
    DbStatus f = db_log_bulk_finish(lg, NULL, NULL, &e2);
    if (f != DB_OK) {
        *err = e2;
        s = f;
    }
    return s;
}

/* ---- verification of complete runs ------------------------------------- */

typedef struct {
    uint64_t seed;
    int n, bad;
} Verify;

static int verify_route(void *user, int64_t run, const DbRoute *r)
{
    Verify *v = user;
    (void)run;
    int32_t ex[K];
    float w[K];
    synth_route(v->seed, r->pos, r->layer, ex, w);
    if (r->k != K || memcmp(r->experts, ex, sizeof ex) || memcmp(r->weights, w, sizeof w))
        v->bad++;
    v->n++;
    return 0;
}

static int64_t q_int(sqlite3 *h, const char *sql, int64_t arg)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, arg);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

static void assert_integrity_ok(Db *db)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db->h, "PRAGMA integrity_check", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
}

/* Check one complete run row by row against its seed.  Returns errors. */
static int verify_run(Db *db, int64_t run)
{
    DbRun r;
    DbErr err = { 0 };
    if (db_run_get(db, run, &r, &err) != DB_OK)
        return 1;
    unsigned long long seed = 0;
    int n = 0, bad = 0;
    if (sscanf(r.prompt, "seed=%llu n=%d", &seed, &n) != 2 || n != run_len(seed))
        bad++;
    bad += r.n_prompt + r.n_gen != n;
    bad += q_int(db->h, "SELECT count(*) FROM tokens WHERE run = ?1", run) != n;
    bad += q_int(db->h, "SELECT count(*) FROM routes WHERE run = ?1", run) != (int64_t)n * NL;
    bad += q_int(db->h, "SELECT sum(n) FROM load WHERE run = ?1", run) != (int64_t)n * NL * K;
    Verify v = { seed, 0, 0 };
    if (db_routes(db, run, 0, -1, -1, verify_route, &v, &err) != DB_OK)
        bad++;
    bad += v.n != n * NL || v.bad;
    db_run_free(&r);
    return bad;
}

/* ---- (a) SIGKILL at many moments --------------------------------------- */

static void child_writer(const char *path, int64_t model, int iter, int bulk, int ready_fd)
{
    DbErr err = { 0 };
    signal(SIGPIPE, SIG_IGN);
    Db *db = db_open(path, 0, &err);
    if (!db)
        _exit(2);
    if (bulk) {
        bulk_synth(db, model, "crash", (uint64_t)iter * 100000, -1, NULL, &ready_fd, NULL,
                   &err);
        _exit(3);
    }
    for (int j = 0; j < 100000; j++) {
        if (log_synth(db, model, "crash", (uint64_t)iter * 100000 + (uint64_t)j, 64, 0,
                      &ready_fd, &err) != DB_OK)
            _exit(3);
    }
    _exit(0);
}

/* Kill a child writer KILLS times at different moments; after each, the
** database is checked as the next user would find it. */
static void sigkill_loop(Tmp *t, int bulk)
{
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    int64_t model = add_model(db);
    db_close(db);

    enum { KILLS = 60 };
    unsigned rng = 20240611;
    int verified_upto = 0;          /* runs with id <= this were verified */
    int n_complete = 0, n_interrupted = 0, n_mid_run = 0;
    int64_t prev_complete_tokens = 0;
    int delays[KILLS];
    for (int it = 0; it < KILLS; it++) {
        /* a different moment each time: 0 .. 80 ms after the child's first
        ** run began (one kill in ten lands before that, while it opens) */
        int delay = (int)(rand_r(&rng) % 80000);
        int early = rand_r(&rng) % 10 == 0;
        delays[it] = delay;
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            child_writer(t->path, model, it, bulk, pfd[1]);
        }
        close(pfd[1]);
        char c;
        if (!early && read(pfd[0], &c, 1) != 1)
            fail_msg("kill %d: the child died before its first run", it);
        close(pfd[0]);
        usleep((useconds_t)delay);
        kill(pid, SIGKILL);
        int ws = 0;
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        if (!WIFSIGNALED(ws) || WTERMSIG(ws) != SIGKILL)
            fail_msg("kill %d: child exited with %d before the kill", it, WEXITSTATUS(ws));

        /* the next open recovers */
        db = db_open(t->path, 0, &err);
        if (!db)
            fail_msg("kill %d: reopen failed: %s", it, err.msg);
        assert_integrity_ok(db);
        assert_int_equal(q_int(db->h, "SELECT count(*) FROM runs WHERE status = 'running'", 0),
                         0);
        /* every complete run is whole; earlier ones are still whole */
        int64_t max_id = q_int(db->h, "SELECT max(id) FROM runs", 0);
        for (int64_t id = verified_upto + 1; id <= max_id; id++) {
            int64_t complete = q_int(db->h, "SELECT status = 'complete' FROM runs WHERE id = ?1",
                                     id);
            if (complete == 1) {
                int bad = verify_run(db, id);
                if (bad)
                    fail_msg("kill %d: complete run %lld has %d discrepancies", it,
                             (long long)id, bad);
                n_complete++;
            } else {
                n_interrupted++;
                if (q_int(db->h, "SELECT count(*) FROM tokens WHERE run = ?1", id) > 0)
                    n_mid_run++;
            }
        }
        verified_upto = (int)max_id;
        int64_t ct = q_int(db->h, "SELECT count(*) FROM tokens WHERE run IN"
                           " (SELECT id FROM runs WHERE status = 'complete')", 0);
        int64_t want = q_int(db->h, "SELECT sum(n_prompt + n_gen) FROM runs WHERE status ="
                             " 'complete'", 0);
        assert_true(ct == want || (ct == 0 && want == -1));
        assert_true(ct >= prev_complete_tokens);
        prev_complete_tokens = ct;
        db_close(db);
    }
    int distinct = 0;
    for (int i = 0; i < KILLS; i++) {
        int dup = 0;
        for (int j = 0; j < i; j++)
            dup |= delays[j] == delays[i];
        distinct += !dup;
    }
    printf("%s: %d kills (%d distinct moments): %d complete runs verified row by row, "
           "%d interrupted (%d with rows written)\n", bulk ? "bulk log" : "run log", KILLS,
           distinct, n_complete, n_interrupted, n_mid_run);
    assert_int_equal(distinct, KILLS);
    assert_true(n_complete > 0);
    assert_true(n_mid_run >= KILLS / 3);
}

static void test_db_sigkill_writer_complete_runs_intact(void **state)
{
    sigkill_loop(*state, 0);
}

/* The same with the importer's bulk log: many runs per transaction, runs
** begun and ended inside batches, checkpoints running all the time. */
static void test_db_sigkill_bulk_writer_complete_runs_intact(void **state)
{
    sigkill_loop(*state, 1);
}

/* ---- (b) a reader at 10 Hz while the writer logs ----------------------- */

typedef struct {
    const char *path;
    atomic_int done;
    int polls, errors, busy, inconsistent;
    double max_ms;
    char first_error[sizeof(((DbErr *)0)->msg)];
} Reader;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void *reader_main(void *arg)
{
    Reader *r = arg;
    DbErr err = { 0 };
    Db *db = db_open(r->path, DB_OPEN_READONLY, &err);
    if (!db) {
        r->errors++;
        snprintf(r->first_error, sizeof r->first_error, "%s", err.msg);
        return NULL;
    }
    sqlite3_busy_timeout(db->h, 0);     /* any lock conflict surfaces as BUSY */
    while (!atomic_load(&r->done)) {
        double t0 = now_ms();
        DbSel sel = { .tag = "live" };
        DbLoad ld;
        DbStatus s = db_load(db, &sel, &ld, &err);
        if (s == DB_OK) {
            /* a complete run is whole: every layer has k routes per token */
            for (int l = 0; l < ld.n_layer; l++) {
                int64_t sum = 0;
                for (int e = 0; e < ld.n_expert; e++)
                    sum += ld.count[l * ld.n_expert + e];
                if (sum != (ld.n_prompt + ld.n_gen) * K)
                    r->inconsistent++;
            }
            db_load_free(&ld);
        }
        double dt = now_ms() - t0;
        if (dt > r->max_ms)
            r->max_ms = dt;
        if (s != DB_OK) {
            r->errors++;
            r->busy += s == DB_E_BUSY;
            if (!r->first_error[0])
                snprintf(r->first_error, sizeof r->first_error, "%s", err.msg);
        }
        r->polls++;
        usleep(100000);
    }
    db_close(db);
    return NULL;
}

static void test_db_reader_polls_while_writer_logs_no_busy(void **state)
{
    Tmp *t = *state;
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    int64_t model = add_model(db);
    Reader rd = { .path = t->path };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reader_main, &rd), 0);
    double t0 = now_ms();
    int runs = 0, werr = 0;
    while (now_ms() - t0 < 1500 || runs < 3) {
        if (log_synth(db, model, "live", (uint64_t)runs, 256, 1, NULL, &err) != DB_OK) {
            fprintf(stderr, "writer: %s\n", err.msg);
            werr++;
        }
        runs++;
    }
    atomic_store(&rd.done, 1);
    pthread_join(th, NULL);
    printf("writer: %d runs, %d errors; reader: %d polls, %d errors (%d busy), "
           "%d inconsistent, slowest poll %.1f ms\n", runs, werr, rd.polls, rd.errors,
           rd.busy, rd.inconsistent, rd.max_ms);
    if (rd.first_error[0])
        printf("reader error: %s\n", rd.first_error);
    assert_int_equal(werr, 0);
    assert_int_equal(rd.errors, 0);
    assert_int_equal(rd.inconsistent, 0);
    assert_true(rd.polls >= 10);
    DbSel sel = { .tag = "live" };
    DbLoad ld;
    assert_int_equal(db_load(db, &sel, &ld, &err), DB_OK);
    assert_int_equal(ld.n_runs, runs);
    db_load_free(&ld);
    db_close(db);
}

/* The reader again, against the importer's bulk log with checkpoints asked
** for after nearly every commit (and the writer waiting for them). */
static void test_db_reader_polls_while_bulk_writer_logs_no_busy(void **state)
{
    Tmp *t = *state;
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    int64_t model = add_model(db);
    Reader rd = { .path = t->path };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reader_main, &rd), 0);
    double t0 = now_ms();
    int runs = 0, werr = 0;
    while (now_ms() - t0 < 1500 || runs < 6) {
        int n = 0;
        if (bulk_synth(db, model, "live", 1000 + (uint64_t)runs, 3, NULL, NULL, &n, &err) !=
            DB_OK) {
            fprintf(stderr, "bulk writer: %s\n", err.msg);
            werr++;
        }
        runs += n;
    }
    atomic_store(&rd.done, 1);
    pthread_join(th, NULL);
    printf("bulk writer: %d runs, %d errors; reader: %d polls, %d errors (%d busy), "
           "%d inconsistent, slowest poll %.1f ms\n", runs, werr, rd.polls, rd.errors,
           rd.busy, rd.inconsistent, rd.max_ms);
    if (rd.first_error[0])
        printf("reader error: %s\n", rd.first_error);
    assert_int_equal(werr, 0);
    assert_int_equal(rd.errors, 0);
    assert_int_equal(rd.inconsistent, 0);
    assert_true(rd.polls >= 10);
    DbSel sel = { .tag = "live" };
    DbLoad ld;
    assert_int_equal(db_load(db, &sel, &ld, &err), DB_OK);
    assert_int_equal(ld.n_runs, runs);
    db_load_free(&ld);
    for (int64_t id = 1; id <= runs; id++)
        assert_int_equal(verify_run(db, id), 0);
    db_close(db);
}

/* ---- (c) a full disk ---------------------------------------------------- */

static void test_db_full_disk_clear_error_data_intact(void **state)
{
    Tmp *t = *state;
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    int64_t model = add_model(db);
    assert_int_equal(log_synth(db, model, "keep", 1, 0, 0, NULL, &err), DB_OK);
    db_close(db);
    struct stat sb;
    assert_int_equal(stat(t->path, &sb), 0);

    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = { (rlim_t)sb.st_size + (256 << 10), (rlim_t)sb.st_size + (256 << 10) };
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(2);
        DbErr e = { 0 };
        Db *d = db_open(t->path, 0, &e);
        if (!d)
            _exit(3);
        /* 20 runs with logits: several MB, far past the limit */
        DbStatus s = DB_OK;
        for (int i = 0; i < 20 && s == DB_OK; i++)
            s = log_synth(d, model, "big", 100 + (uint64_t)i, 512, 1, NULL, &e);
        if (write(pfd[1], e.msg, strlen(e.msg)) < 0)
            _exit(4);
        db_close(d);
        _exit(s == DB_E_FULL ? 0 : 10 + (int)s);
    }
    close(pfd[1]);
    char msg[600] = "";
    ssize_t n = read(pfd[0], msg, sizeof msg - 1);
    msg[n > 0 ? n : 0] = 0;
    close(pfd[0]);
    int ws = 0;
    waitpid(pid, &ws, 0);
    printf("full disk: %s\n", msg);
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 0);
    assert_non_null(strstr(msg, "logging run"));

    db = db_open(t->path, 0, &err);
    assert_non_null(db);
    assert_integrity_ok(db);
    /* the run logged before is whole; none of the big ones reads as complete
    ** unless it is whole too */
    assert_int_equal(verify_run(db, 1), 0);
    int64_t max_id = q_int(db->h, "SELECT max(id) FROM runs", 0);
    int n_failed = 0;
    for (int64_t id = 2; id <= max_id; id++) {
        if (q_int(db->h, "SELECT status = 'complete' FROM runs WHERE id = ?1", id) == 1)
            assert_int_equal(verify_run(db, id), 0);
        else
            n_failed++;
    }
    assert_true(n_failed >= 1);
    assert_int_equal(q_int(db->h, "SELECT count(*) FROM runs WHERE status = 'running'", 0), 0);
    db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_db_sigkill_writer_complete_runs_intact,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_sigkill_bulk_writer_complete_runs_intact,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_reader_polls_while_bulk_writer_logs_no_busy,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_reader_polls_while_writer_logs_no_busy,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_db_full_disk_clear_error_data_intact,
                                        tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
