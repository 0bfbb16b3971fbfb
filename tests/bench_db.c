/*
** tests/bench_db.c — speed of the routing database (make bench).
**
** 1. A synthetic log of 1M tokens × 16 layers × top-8 of 64 experts through
**    the public API (1000 runs of 1000 tokens under one tag): write time,
**    route records per second, bytes per token, file size.
** 2. The heatmap query: per-layer×expert load of the tag (target < 100 ms).
** 3. The append cost per record on the caller's thread (what the engine's
**    route callback pays), measured separately with the flusher busy.
**
** BENCH_DB_TOKENS overrides the token count (e.g. for a quick look);
** BENCH_DB_DIR the directory of the database (default /tmp).
*/
#include "db/db.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { NL = 16, NE = 64, K = 8, TOKENS_PER_RUN = 1000 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A skewed synthetic router: expert e is chosen with weight ~ 1/(1+e%16). */
static void synth(uint64_t s, int32_t *ex, float *w)
{
    int n = 0;
    while (n < K) {
        s = mix(s);
        int e = (int)(s % NE), dup = 0;
        if ((int)((s >> 32) % 16) < e % 16)
            continue;
        for (int i = 0; i < n; i++)
            dup |= ex[i] == e;
        if (!dup)
            ex[n++] = e;
    }
    float sum = 0;
    for (int i = 0; i < K; i++)
        sum += w[i] = (float)((mix(s + (uint64_t)i) >> 40) + 1);
    for (int i = 0; i < K; i++)
        w[i] /= sum;
}

static long long file_size(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 ? (long long)sb.st_size : 0;
}

static int bench(const char *path, long n_tokens, int flush_every)
{
    char side[600];
    DbErr err = { 0 };
    Db *db = db_open(path, DB_OPEN_CREATE, &err);
    if (!db) {
        fprintf(stderr, "bench_db: %s\n", err.msg);
        return 1;
    }
    DbModel m = { 0, "synthetic-16x64.gguf", "synthetic", "olmoe", 1, 0xbe4c, NL, NE, K };
    if (db_model_register(db, &m, &err) != DB_OK) {
        fprintf(stderr, "bench_db: %s\n", err.msg);
        return 1;
    }

    /* 1. the write */
    long n_runs = (n_tokens + TOKENS_PER_RUN - 1) / TOKENS_PER_RUN;
    double t0 = now_s(), t_append = 0;
    long long n_records = 0;
    for (long r = 0; r < n_runs; r++) {
        DbRunInfo ri = { .model = m.id, .tag = r % 10 ? "bench" : "other",
                         .prompt = "synthetic", .seed = (uint64_t)r };
        DbLog *lg = db_log_begin(db, &ri, flush_every, &err);
        if (!lg) {
            fprintf(stderr, "bench_db: %s\n", err.msg);
            return 1;
        }
        long n = n_tokens - r * TOKENS_PER_RUN;
        n = n > TOKENS_PER_RUN ? TOKENS_PER_RUN : n;
        for (long p = 0; p < n; p++) {
            DbToken t = { .pos = (int32_t)p, .token = (int32_t)(p * 31 % 50000),
                          .is_prompt = p < 50, .piece = "tok", .piece_len = 3,
                          .logprob = -1.5f, .n_top = 5 };
            for (int i = 0; i < 5; i++) {
                t.top_ids[i] = (int32_t)p + i;
                t.top_lp[i] = -1.5f - (float)i;
            }
            /* the engine computes between routes: measure only our calls */
            int32_t ex[NL][K];
            float w[NL][K];
            for (int l = 0; l < NL; l++)
                synth(mix((uint64_t)r << 40 ^ (uint64_t)p << 8 ^ (uint64_t)l), ex[l], w[l]);
            double a0 = now_s();
            DbStatus s = db_log_token(lg, &t);
            for (int l = 0; l < NL && s == DB_OK; l++) {
                DbRoute rt = { .pos = (int32_t)p, .layer = l, .is_prompt = p < 50, .k = K,
                               .experts = ex[l], .weights = w[l], .shared_gate = NAN };
                s = db_log_route(lg, &rt);
            }
            t_append += now_s() - a0;
            if (s != DB_OK) {
                fprintf(stderr, "bench_db: append failed: %s\n", db_status_str(s));
                return 1;
            }
            n_records += 1 + NL;
        }
        if (db_log_finish(lg, DB_RUN_COMPLETE, NULL, &err) != DB_OK) {
            fprintf(stderr, "bench_db: %s\n", err.msg);
            return 1;
        }
    }
    double t_write = now_s() - t0;
    /* the last close checkpoints the WAL into the file and removes it */
    db_close(db);
    snprintf(side, sizeof side, "%s-wal", path);
    long long size = file_size(path) + file_size(side);
    db = db_open(path, 0, &err);
    if (!db) {
        fprintf(stderr, "bench_db: %s\n", err.msg);
        return 1;
    }
    printf("write: %ld tokens x %d layers x top-%d of %d experts in %ld runs: %.2f s\n",
           n_tokens, NL, K, NE, n_runs, t_write);
    printf("  route records/s: %.0f  (all records/s %.0f)\n",
           (double)n_tokens * NL / t_write, (double)n_records / t_write);
    printf("  db file size: %.1f MB, %.1f bytes per token (%.1f per route record)\n",
           (double)size / 1e6, (double)size / (double)n_tokens,
           (double)size / (double)n_tokens / NL);
    printf("  caller-side time in db_log_*: %.0f ns per record on average (including "
           "waits when the writer fell behind)\n", t_append * 1e9 / (double)n_records);

    /* 2. the heatmap query, on a fresh reader connection */
    Db *rd = db_open(path, DB_OPEN_READONLY, &err);
    if (!rd) {
        fprintf(stderr, "bench_db: %s\n", err.msg);
        return 1;
    }
    DbSel sel = { .tag = "bench" };
    double best = 1e9;
    DbLoad ld;
    for (int i = 0; i < 5; i++) {
        double q0 = now_s();
        if (db_load(rd, &sel, &ld, &err) != DB_OK) {
            fprintf(stderr, "bench_db: %s\n", err.msg);
            return 1;
        }
        double dt = now_s() - q0;
        best = dt < best ? dt : best;
        if (i < 4)
            db_load_free(&ld);
    }
    int64_t total = 0;
    for (int i = 0; i < ld.n_layer * ld.n_expert; i++)
        total += ld.count[i];
    printf("heatmap query (load of tag 'bench': %d runs, %lld tokens): %.2f ms "
           "(best of 5; target < 100 ms)\n", ld.n_runs,
           (long long)(ld.n_prompt + ld.n_gen), best * 1e3);
    if (total != (ld.n_prompt + ld.n_gen) * NL * K) {
        fprintf(stderr, "bench_db: load sums to %lld, expected %lld\n", (long long)total,
                (long long)((ld.n_prompt + ld.n_gen) * NL * K));
        return 1;
    }
    db_load_free(&ld);

    db_close(rd);

    /* 3. append cost alone: batches of 16000 route records that never fill
    ** the default 16384-record buffer, so this is the copy + aggregate
    ** update the engine's route callback pays, without any flush wait */
    {
        enum { REPS = 10, N = 16000 };
        double per[REPS];
        int32_t ex[K];
        float w[K];
        synth(1, ex, w);
        for (int rep = 0; rep < REPS; rep++) {
            DbRunInfo ri = { .model = m.id, .tag = "append" };
            DbLog *lg = db_log_begin(db, &ri, 0, &err);
            if (!lg) {
                fprintf(stderr, "bench_db: %s\n", err.msg);
                return 1;
            }
            double a0 = now_s();
            for (long p = 0; p < N; p++) {
                DbRoute rt = { .pos = (int32_t)(p / NL), .layer = (int)(p % NL), .k = K,
                               .experts = ex, .weights = w, .shared_gate = NAN };
                if (db_log_route(lg, &rt) != DB_OK)
                    return 1;
            }
            per[rep] = (now_s() - a0) * 1e9 / N;
            if (db_log_finish(lg, DB_RUN_COMPLETE, NULL, &err) != DB_OK) {
                fprintf(stderr, "bench_db: %s\n", err.msg);
                return 1;
            }
        }
        for (int i = 1; i < REPS; i++)
            for (int j = i; j > 0 && per[j] < per[j - 1]; j--) {
                double x = per[j];
                per[j] = per[j - 1];
                per[j - 1] = x;
            }
        printf("append: %.0f ns per route record on the caller's thread (median of %d x "
               "%d, best %.0f ns; buffer copy + aggregates, no flush wait)\n",
               per[REPS / 2], REPS, N, per[0]);
    }
    db_close(db);
    return 0;
}

int main(void)
{
    long n_tokens = 1000000;
    const char *env = getenv("BENCH_DB_TOKENS");
    if (env && atol(env) > 0)
        n_tokens = atol(env);
    int flush_every = getenv("BENCH_DB_FLUSH") ? atoi(getenv("BENCH_DB_FLUSH")) : 0;
    const char *dir = getenv("BENCH_DB_DIR") ? getenv("BENCH_DB_DIR") : "/tmp";
    char path[512], side[600];
    snprintf(path, sizeof path, "%s/moescope-bench-%ld.db", dir, (long)getpid());
    int rc = bench(path, n_tokens, flush_every);
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    return rc;
}
