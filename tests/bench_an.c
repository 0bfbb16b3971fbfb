/*
** tests/bench_an.c — speed of the analysis core on a synthetic log of
** 1M positions × 16 MoE layers × top-8 of 64 experts (the scale of the
** database issue's synthetic log).
**
** Measured on in-memory data (building the table is not timed):
**   stats     load, balance, vocabulary specialization, top tokens — the
**             `moescope stats` core; best of 3, target < 1 s of CPU (it is
**             single-threaded: CPU time = wall time on a core of its own),
**             the bench fails above it
**   pairs     co-activation (ssyrk) and transitions (sgemm), every layer
**   contrast  100 runs split 50/50, 1000 run permutations
**   diff      two 10k-position runs
** Tokens follow a Zipf-like law over 32k ids; half of each route is drawn
** from a token-dependent block of experts so specialization is non-trivial.
**
** End to end: the bench then writes the same kind of log into a database
** (BENCH_AN_DB_TOKENS positions, default 1M, in runs of 1000 under tag "a",
** plus a tenth as many under tag "b"; in BENCH_AN_DB_DIR, default /tmp,
** removed after) and times the subcommands' work from the open database to
** the formatted output: stats of tag a (1M positions, aggregates; target
** < 1 s, the bench fails above it) and of the whole database, contrast b
** vs a, stats --pairs of one run from raw routes, diff of two runs.
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "analysis/an.h"
#include "db/db.h"

#include <unistd.h>

enum { N_POS = 1000000, N_LAYER = 16, N_EXPERT = 64, K = 8, N_VOCAB = 32000, N_RUN = 100 };

static uint64_t rng = 0x1234567887654321ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the process (all threads): shown next to the wall time so a
** slow figure on a busy shared machine can be told from a slow program. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One synthetic route: K distinct experts, half from a token-dependent
** block. */
static void synth_route(int32_t tok, int l, int32_t *ex)
{
    uint64_t mask = 0;
    int base = (int)((uint32_t)(tok * 7 + l * 13) % N_EXPERT);
    for (int j = 0; j < K;) {
        uint64_t x = next();
        int e = (x & 1) ? (base + (int)((x >> 1) % 8)) % N_EXPERT : (int)((x >> 8) % N_EXPERT);
        if (mask >> e & 1)
            continue;
        mask |= 1ull << e;
        ex[j++] = e;
    }
}

static int32_t synth_token(void)
{
    /* Zipf-like: id = floor(N_VOCAB^u) − 1 for uniform u */
    double u = (double)(next() >> 11) / 9007199254740992.0;
    return (int32_t)pow(N_VOCAB, u) - 1;
}

/* Write the end-to-end database; returns 0 or -1 with a message. */
static int write_db(const char *path, long n_tok)
{
    DbErr err = { 0 };
    Db *db = db_open(path, DB_OPEN_CREATE, &err);
    if (!db) {
        fprintf(stderr, "bench_an: %s\n", err.msg);
        return -1;
    }
    DbModel m = { 0, "synthetic-16x64.gguf", "synthetic", "olmoe", 1, 0xa11, N_LAYER, N_EXPERT, K };
    if (db_model_register(db, &m, &err) != DB_OK) {
        fprintf(stderr, "bench_an: %s\n", err.msg);
        db_close(db);
        return -1;
    }
    int32_t ex[N_LAYER][K];
    float w[K];
    for (int j = 0; j < K; j++)
        w[j] = 1.0f / K;
    long n_runs_a = (n_tok + 999) / 1000, n_runs = n_runs_a + (n_runs_a + 9) / 10;
    for (long r = 0; r < n_runs; r++) {
        int in_b = r >= n_runs_a;
        DbRunInfo ri = { .model = m.id, .tag = in_b ? "b" : "a", .prompt = "synthetic" };
        DbLog *lg = db_log_begin(db, &ri, 0, &err);
        if (!lg) {
            fprintf(stderr, "bench_an: %s\n", err.msg);
            db_close(db);
            return -1;
        }
        long n = !in_b && n_tok - r * 1000 < 1000 ? n_tok - r * 1000 : 1000;
        DbStatus s = DB_OK;
        for (long p = 0; p < n && s == DB_OK; p++) {
            DbToken t = { .pos = (int32_t)p, .token = synth_token(), .is_prompt = p < 50,
                          .piece = "x", .piece_len = 1, .logprob = -1.0f };
            s = db_log_token(lg, &t);
            for (int l = 0; l < N_LAYER && s == DB_OK; l++) {
                /* in layer 3 a quarter of tag b's routes follow token 0's expert
                ** block (39..46): something for contrast to find */
                synth_route(in_b && l == 3 && (next() & 3) == 0 ? 0 : t.token, l, ex[l]);
                DbRoute rt = { .pos = (int32_t)p, .layer = l, .is_prompt = p < 50, .k = K,
                               .experts = ex[l], .weights = w, .shared_gate = NAN };
                s = db_log_route(lg, &rt);
            }
        }
        if (db_log_finish(lg, s == DB_OK ? DB_RUN_COMPLETE : DB_RUN_FAILED, NULL, &err) != DB_OK ||
            s != DB_OK) {
            fprintf(stderr, "bench_an: writing the database failed: %s\n", err.msg);
            db_close(db);
            return -1;
        }
    }
    db_close(db);
    return 0;
}

/* The end-to-end part; returns the seconds of `stats` over everything, or
** -1 on failure. */
static double bench_db(void)
{
    long n_tok = 1000000;
    const char *env = getenv("BENCH_AN_DB_TOKENS");
    if (env && atol(env) > 0)
        n_tok = atol(env);
    const char *dir = getenv("BENCH_AN_DB_DIR") ? getenv("BENCH_AN_DB_DIR") : "/tmp";
    char path[512], side[600];
    snprintf(path, sizeof path, "%s/moescope-bench-an-%ld.db", dir, (long)getpid());
    double t0 = now();
    if (write_db(path, n_tok))
        return -1;
    printf("bench_an: wrote %ld positions under tag a and a tenth of that under tag b to %s "
           "in %.1f s (not timed below)\n", n_tok, path, now() - t0);
    DbErr de = { 0 };
    Db *db = db_open(path, DB_OPEN_READONLY, &de);
    FILE *null = fopen("/dev/null", "w");
    double t_tag = -1;
    if (!db || !null) {
        fprintf(stderr, "bench_an: reopening %s failed\n", path);
    } else {
        AnErr err = { 0 };
        AnDbInfo info;
        AnStats *s = NULL;
        const char *what[2] = { "a", NULL };
        for (int i = 0; i < 2; i++) {
            t0 = now();
            AnStatus st = an_db_stats(db, path, 0, what[i], NULL, &s, &info, &err);
            AnLabels lb = an_db_labels(&info);
            if (!st)
                an_write_stats(null, s, AN_FMT_TABLE, &lb);
            double t = now() - t0;
            printf("bench_an: e2e stats %s%s%s (%lld positions, aggregates): %.3f s%s%s\n",
                   what[i] ? "--tag " : "(all runs)", what[i] ? what[i] : "", "",
                   s ? (long long)s->load->n_pos[0] : 0LL, t, st ? " FAILED: " : "",
                   st ? err.msg : "");
            if (i == 0)
                t_tag = st ? -1 : t;
            an_stats_free(s);
            an_db_info_done(&info);
        }
        AnContrast *c = NULL;
        AnContrastParams cp = { .min_count = 10, .n_perm = 1000, .seed = 1 };
        t0 = now();
        AnStatus st = an_db_contrast(db, path, "b", "a", &cp, &c, &info, &err);
        if (!st)
            an_write_contrast(null, c, 20, AN_FMT_TABLE, NULL);
        printf("bench_an: e2e contrast b vs a (1000 permutations): %.3f s%s%s",
               now() - t0, st ? " FAILED: " : "", st ? err.msg : "");
        if (!st && c->n_row)
            printf("  [top: layer %d expert %d, Δ %.4f, q %.4f]", info.layer_of[c->row[0].layer],
                   c->row[0].expert, c->row[0].delta, c->row[0].q_value);
        printf("\n");
        an_contrast_free(c);
        an_db_info_done(&info);
        AnStatsParams rp = { .want_routes = 1, .want_pairs = 1 };
        t0 = now();
        st = an_db_stats(db, path, 1, NULL, &rp, &s, &info, &err);
        printf("bench_an: e2e stats --run 1 --pairs (1000 positions from raw routes): %.3f s%s%s\n",
               now() - t0, st ? " FAILED: " : "", st ? err.msg : "");
        an_stats_free(s);
        an_db_info_done(&info);
        AnDiff *d = NULL;
        t0 = now();
        st = an_db_diff(db, path, 1, 3, &d, &info, &err);
        printf("bench_an: e2e diff 1 3: %.3f s%s%s\n", now() - t0, st ? " FAILED: " : "",
               st ? err.msg : "");
        an_diff_free(d);
        an_db_info_done(&info);
    }
    if (null)
        fclose(null);
    db_close(db);
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    return t_tag;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);   /* progress shows when piped */
    AnErr err;
    double t0 = now();
    AnRoutes *r = an_routes_new(N_LAYER, N_EXPERT, K, 0, AN_GATE_SOFTMAX, N_POS, &err);
    if (!r) {
        fprintf(stderr, "bench_an: %s\n", err.msg);
        return 1;
    }
    int32_t ex[K];
    float w[K];
    for (int j = 0; j < K; j++)
        w[j] = 1.0f / K;
    for (int i = 0; i < N_POS; i++) {
        int32_t tok = synth_token();
        int run = i / (N_POS / N_RUN);
        int pos = i % (N_POS / N_RUN);
        int64_t row = an_routes_add_pos(r, run, pos, tok, pos < 200, -1.0f, &err);
        for (int l = 0; l < N_LAYER; l++) {
            synth_route(tok, l, ex);
            if (an_routes_set(r, row, l, K, ex, w, NULL, &err)) {
                fprintf(stderr, "bench_an: %s\n", err.msg);
                return 1;
            }
        }
    }
    printf("bench_an: built %d positions × %d layers × top-%d of %d in %.2f s (not timed below)\n",
           N_POS, N_LAYER, K, N_EXPERT, now() - t0);

    /* its first step alone: the load table */
    double c1 = cpu_now();
    AnLoad *lall = an_load_from_routes(r, -1, &err);
    printf("bench_an: load table alone: %.3f s CPU\n", cpu_now() - c1);
    fflush(stdout);
    an_load_free(lall);

    /* stats core */
    AnStatsParams p = { .want_routes = 1, .want_pairs = 0 };
    /* best of 3: the machine is shared, a run can lose the CPU midway */
    AnStats *s = NULL;
    double c_stats = 0, t_stats = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        an_stats_free(s);
        t0 = now();
        double c0 = cpu_now();
        s = an_stats_compute(r, &p, &err);
        if (!s) {
            fprintf(stderr, "bench_an: %s\n", err.msg);
            return 1;
        }
        if (now() - t0 < t_stats) {
            t_stats = now() - t0;
            c_stats = cpu_now() - c0;
        }
    }
    printf("bench_an: stats (load, balance, specialization, top tokens; 3 splits; best of 3): "
           "%.3f s (CPU %.3f s)  [layer 0: entropy %.4f, gini %.4f, vocab spec %.4f over %d ids]\n",
           t_stats, c_stats, s->layer[0].entropy, s->layer[0].gini, s->layer[0].vocab_spec,
           s->layer[0].n_vocab_ids);
    an_stats_free(s);

    /* co-activation + transitions on OpenBLAS */
    double *C = malloc(sizeof(double) * N_EXPERT * N_EXPERT);
    t0 = now();
    for (int l = 0; l < N_LAYER; l++)
        an_coact(r, AN_SPLIT_ALL, l, C, &err);
    double t_coact = now() - t0;
    t0 = now();
    for (int l = 0; l + 1 < N_LAYER; l++)
        an_transitions(r, AN_SPLIT_ALL, l, C, &err);
    double t_trans = now() - t0;
    printf("bench_an: co-activation 16 layers (ssyrk): %.3f s; transitions 15 layer pairs "
           "(sgemm): %.3f s\n", t_coact, t_trans);
    free(C);

    /* contrast over 100 runs */
    t0 = now();
    AnLoad *runs[N_RUN];
    for (int i = 0; i < N_RUN; i++)
        runs[i] = an_load_from_routes(r, i, &err);
    double t_loads = now() - t0;
    AnContrastParams cp = { .n_perm = 1000, .seed = 1, .min_count = 10 };
    t0 = now();
    AnContrast *c = an_contrast((const AnLoad *const *)runs, N_RUN / 2,
                                (const AnLoad *const *)runs + N_RUN / 2, N_RUN / 2, &cp, &err);
    double t_con = now() - t0;
    printf("bench_an: per-run loads (100 runs): %.3f s; contrast 50 vs 50 runs, 1000 "
           "permutations: %.3f s (%d rows)\n", t_loads, t_con, c ? c->n_row : -1);
    an_contrast_free(c);
    for (int i = 0; i < N_RUN; i++)
        an_load_free(runs[i]);

    /* diff of two 10k-position runs */
    AnRoutes *a = an_routes_new(N_LAYER, N_EXPERT, K, 0, AN_GATE_SOFTMAX, 10000, &err);
    AnRoutes *b = an_routes_new(N_LAYER, N_EXPERT, K, 0, AN_GATE_SOFTMAX, 10000, &err);
    for (int i = 0; i < 10000; i++) {
        an_routes_add_pos(a, 0, i, r->token[i], r->is_prompt[i], -1.0f, &err);
        an_routes_add_pos(b, 0, i, r->token[i + 10000], r->is_prompt[i], -1.5f, &err);
        for (int l = 0; l < N_LAYER; l++) {
            for (int j = 0; j < K; j++)
                ex[j] = r->experts[((size_t)i * N_LAYER + (size_t)l) * K + (size_t)j];
            an_routes_set(a, i, l, K, ex, w, NULL, &err);
            for (int j = 0; j < K; j++)
                ex[j] = r->experts[((size_t)(i + 10000) * N_LAYER + (size_t)l) * K + (size_t)j];
            an_routes_set(b, i, l, K, ex, w, NULL, &err);
        }
    }
    t0 = now();
    AnDiff *d = an_diff(a, b, &err);
    printf("bench_an: diff of two 10k-position runs: %.4f s\n", now() - t0);
    an_diff_free(d);
    an_routes_free(a);
    an_routes_free(b);
    an_routes_free(r);

    double t_e2e = bench_db();
    /* The core is single-threaded, so its CPU time is its wall time on a
    ** core of its own; the wall time on this shared 2-core machine also
    ** holds whatever ran beside it.  The target is checked on the former. */
    if (c_stats >= 1.0) {
        fprintf(stderr, "bench_an: stats took %.3f s of CPU (%.3f s wall), target < 1 s\n",
                c_stats, t_stats);
        return 1;
    }
    if (t_e2e < 0 || t_e2e >= 1.0) {
        fprintf(stderr, "bench_an: end-to-end stats %s, target < 1 s\n",
                t_e2e < 0 ? "failed" : "too slow");
        return 1;
    }
    return 0;
}
