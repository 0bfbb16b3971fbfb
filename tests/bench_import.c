/*
** tests/bench_import.c — moetrace import throughput: a generated vLLM-like
** DeepSeek-V3-shaped trace (61 layers of which 58 MoE, 256 experts, top-8,
** no weights) of MOESCOPE_BENCH_IMPORT_TOKENS tokens (default 200000) in
** sequences of 2000 tokens, checked and imported into a fresh database.
** Prints tokens/s for the check and the import, the time extrapolated to
** 10M tokens, the database size and the peak RSS (which must not grow with
** the trace: the NPY files are mapped, DbLog batches are bounded).
*/
#include "db/db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int main(void)
{
    enum { L = 61, DENSE = 3, E = 256, K = 8, SEQ = 2000 };
    const int n_moe = L - DENSE;
    long n = 200000;
    const char *env = getenv("MOESCOPE_BENCH_IMPORT_TOKENS");
    if (env && atol(env) >= SEQ)
        n = atol(env) / SEQ * SEQ;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/moescope-bench-import-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char tr[128], p[256], dbp[128];
    snprintf(tr, sizeof tr, "%s/trace", dir);
    snprintf(dbp, sizeof dbp, "%s/bench.db", dir);
    mkdir(tr, 0777);

    /* meta.json */
    long n_seq = n / SEQ;
    snprintf(p, sizeof p, "%s/meta.json", tr);
    FILE *f = fopen(p, "w");
    if (!f) {
        perror(p);
        return 1;
    }
    fprintf(f, "{\"format\": \"moetrace\", \"version\": 1, \"model\": \"synthetic-dsv3\","
               " \"source\": \"vllm\", \"num_layers\": %d, \"num_experts\": %d, \"top_k\": %d,"
               " \"id_space\": \"logical\", \"moe_layers\": [", L, E, K);
    for (int l = DENSE; l < L; l++)
        fprintf(f, "%s%d", l > DENSE ? ", " : "", l);
    fprintf(f, "], \"sequences\": [");
    for (long s = 0; s < n_seq; s++)
        fprintf(f, "%s{\"id\": %ld, \"prompt_len\": 500}", s ? ", " : "", s);
    fprintf(f, "]}\n");
    fclose(f);

    /* index.npy and experts.npy, written in chunks */
    DbErr err = { 0 };
    uint64_t si[2] = { (uint64_t)n, 3 }, se[3] = { (uint64_t)n, (uint64_t)n_moe, K };
    snprintf(p, sizeof p, "%s/index.npy", tr);
    FILE *fi = fopen(p, "wb");
    snprintf(p, sizeof p, "%s/experts.npy", tr);
    FILE *fe = fopen(p, "wb");
    if (!fi || !fe || db_npy_write_header(fi, "<i8", 2, si, &err) != DB_OK ||
        db_npy_write_header(fe, "<i2", 3, se, &err) != DB_OK) {
        fprintf(stderr, "bench_import: cannot write the trace: %s\n", err.msg);
        return 1;
    }
    uint64_t rng = 1;
    int16_t row[58 * K];
    for (long i = 0; i < n; i++) {
        int64_t ix[3] = { i / SEQ, i % SEQ, (int64_t)(i * 7919 % 129280) };
        fwrite(ix, sizeof ix, 1, fi);
        for (int j = 0; j < n_moe; j++) {
            /* k distinct experts: a random start and stride */
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            int start = (int)(rng >> 40) % E, stride = 1 + 2 * (int)((rng >> 20) % 16);
            for (int q = 0; q < K; q++)
                row[j * K + q] = (int16_t)((start + q * stride) % E);
        }
        fwrite(row, sizeof row, 1, fe);
    }
    if (fclose(fi) != 0 || fclose(fe) != 0) {
        perror("bench_import: writing the trace");
        return 1;
    }

    double t0 = now();
    DbTrace *t = db_trace_open(tr, &err);
    if (!t) {
        fprintf(stderr, "bench_import: %s\n", err.msg);
        return 1;
    }
    double t1 = now();
    Db *db = db_open(dbp, DB_OPEN_CREATE, &err);
    DbImportOpts o = { .tag = "bench" };
    if (!db || db_import(db, t, &o, NULL, NULL, &err) != DB_OK) {
        fprintf(stderr, "bench_import: %s\n", err.msg);
        return 1;
    }
    double t2 = now();
    db_close(db);
    db_trace_close(t);
    struct stat sb;
    stat(dbp, &sb);
    double rate = (double)n / (t2 - t0);
    printf("bench_import: %ld tokens x %d MoE layers x top-%d (%ld routes), %ld sequences\n", n,
           n_moe, K, n * n_moe, n_seq);
    printf("  check  %.2f s (%.0f tokens/s)\n", t1 - t0, (double)n / (t1 - t0));
    printf("  import %.2f s (%.0f tokens/s, %.0f routes/s)\n", t2 - t1, (double)n / (t2 - t1),
           (double)n * n_moe / (t2 - t1));
    printf("  total  %.0f tokens/s -> 10M tokens in %.1f min (extrapolated)\n", rate,
           1e7 / rate / 60.0);
    printf("  database %.1f MB (%.0f bytes/route), peak RSS %.1f MB\n",
           (double)sb.st_size / 1e6, (double)sb.st_size / ((double)n * n_moe),
           (double)peak_rss_kb() / 1024.0);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_import: cleanup of %s failed\n", dir);
    return 0;
}
