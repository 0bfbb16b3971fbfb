/*
** tests/bench_quant.c — single-thread matrix-vector throughput of eng_qdot.
**
** For each weight type: a 4096 x 4096 matrix of random blocks (sane scales)
** times one F32 vector, one eng_qdot per row, repeated until at least 0.25 s
** have passed; the fastest repetition counts (the machine is shared, so
** the minimum is the kernel's speed).  Prints, per code path, ms per product, GB/s of weight bytes
** streamed and GFLOP/s (2 flops per weight).  The Q8-activation rows include
** quantizing the vector once per product.  Run by `make bench`; results
** depend on the machine (caches, memory bandwidth), so nothing is asserted.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/qtypes.h"
#include "engine/quant.h"

#define COLS 4096
#define MAX_ROWS 4096
#define CACHE_BYTES (512 * 1024)   /* matrix size for the cache-resident run */

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static float rndf(void)
{
    return (float)((double)(rnd() >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

/* Random codes with finite, moderate scales at the type's scale offsets. */
static void fill(uint32_t type, uint8_t *m, uint64_t bytes)
{
    const EngQTraits *t = eng_qtraits(type);
    for (uint64_t i = 0; i < bytes; i++)
        m[i] = (uint8_t)rnd();
    for (uint64_t off = 0; off < bytes; off += (uint64_t)t->size) {
        uint8_t *b = m + off;
        switch (type) {
        case QT_F32: {
            float v = rndf();
            memcpy(b, &v, 4);
            break;
        }
        case QT_F16:
            put16(b, eng_f32_to_f16(rndf()));
            break;
        case QT_BF16:
            put16(b, (uint16_t)(0x3C00 + rnd() % 0x0400));
            break;
        case QT_Q6_K:
            put16(b + 208, eng_f32_to_f16(0.01f));
            break;
        case QT_MXFP4:
            b[0] = 120;
            break;
        default:
            put16(b, eng_f32_to_f16(0.02f));
            if (type == QT_Q4_1 || type == QT_Q5_1 || type == QT_Q4_K || type == QT_Q5_K)
                put16(b + 2, eng_f32_to_f16(0.01f));
            break;
        }
    }
}

typedef struct {
    double ms, gbs, gflops;
} Result;

static volatile float sink;

static Result run_f32act(EngQLevel lvl, uint32_t type, const uint8_t *m, uint64_t rowb,
                         int ROWS, const float *x, float *y)
{
    int reps = 0;
    double t0 = now(), best = 1e30;
    do {
        double t1 = now();
        for (int r = 0; r < ROWS; r++)
            eng_qdot_at(lvl, type, m + (uint64_t)r * rowb, x, COLS, &y[r]);
        t1 = now() - t1;
        best = t1 < best ? t1 : best;
        reps++;
    } while (now() - t0 < 0.25 || reps < 3);
    sink = y[0];
    double per = best;
    Result res = { per * 1e3, (double)rowb * ROWS / per / 1e9, 2.0 * ROWS * COLS / per / 1e9 };
    return res;
}

static Result run_q8act(EngQLevel lvl, uint32_t type, const uint8_t *m, uint64_t rowb,
                        int ROWS, const float *x, uint8_t *xq, float *y)
{
    int reps = 0;
    uint32_t at = (uint32_t)eng_q8act_type(type);
    double t0 = now(), best = 1e30;
    do {
        double t1 = now();
        eng_quantize_act_at(lvl, at, x, xq, COLS);
        for (int r = 0; r < ROWS; r++)
            eng_qdot_q8act_at(lvl, type, m + (uint64_t)r * rowb, xq, COLS, &y[r]);
        t1 = now() - t1;
        best = t1 < best ? t1 : best;
        reps++;
    } while (now() - t0 < 0.25 || reps < 3);
    sink = y[0];
    double per = best;
    Result res = { per * 1e3, (double)rowb * ROWS / per / 1e9, 2.0 * ROWS * COLS / per / 1e9 };
    return res;
}

/* One table: every type, every path, matrices of `rows` rows (0: as many
** rows as fit in CACHE_BYTES). */
static int bench_table(const uint32_t *types, size_t ntypes, int rows_fixed, const float *x,
                       float *y, uint8_t *xq)
{
    printf("%-6s %-5s %-13s %-6s %10s %9s %9s\n", "type", "rows", "activations", "path",
           "ms/matvec", "GB/s", "GFLOP/s");
    for (size_t ti = 0; ti < ntypes; ti++) {
        uint32_t type = types[ti];
        uint64_t rowb = eng_qrow_bytes(type, COLS);
        int rows = rows_fixed ? rows_fixed : (int)(CACHE_BYTES / rowb);
        uint8_t *m = aligned_alloc(64, (rowb * rows + 63) / 64 * 64);
        if (!m) {
            fprintf(stderr, "bench_quant: out of memory for %s\n", eng_qtraits(type)->name);
            return 1;
        }
        fill(type, m, rowb * rows);
        for (int lvl = 0; lvl < ENG_QLEVEL_COUNT; lvl++) {
            if (!eng_qlevel_supported((EngQLevel)lvl))
                continue;
            Result r = run_f32act((EngQLevel)lvl, type, m, rowb, rows, x, y);
            printf("%-6s %-5d %-13s %-6s %10.3f %9.2f %9.2f\n", eng_qtraits(type)->name, rows,
                   "f32", eng_qlevel_name((EngQLevel)lvl), r.ms, r.gbs, r.gflops);
        }
        if (eng_q8act_type(type) >= 0) {
            const char *act = eng_q8act_type(type) == QT_Q8_1 ? "q8_1 (int8)" : "q8_0 (int8)";
            for (int lvl = 0; lvl < ENG_QLEVEL_COUNT; lvl++) {
                if (!eng_qlevel_supported((EngQLevel)lvl))
                    continue;
                Result r = run_q8act((EngQLevel)lvl, type, m, rowb, rows, x, xq, y);
                printf("%-6s %-5d %-13s %-6s %10.3f %9.2f %9.2f\n", eng_qtraits(type)->name,
                       rows, act, eng_qlevel_name((EngQLevel)lvl), r.ms, r.gbs, r.gflops);
            }
        }
        free(m);
    }
    return 0;
}

int main(void)
{
    const uint32_t types[] = {
        QT_F32, QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
        QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_MXFP4,
    };
    size_t ntypes = sizeof types / sizeof types[0];
    float *x = malloc(COLS * sizeof(float));
    float *y = malloc(MAX_ROWS * sizeof(float));
    uint8_t *xq = malloc((COLS / 32) * ENG_Q8_1_BYTES);
    if (!x || !y || !xq) {
        fprintf(stderr, "bench_quant: out of memory\n");
        return 1;
    }
    for (int i = 0; i < COLS; i++)
        x[i] = rndf();

    printf("eng_qdot matrix-vector, 1 thread, best path: %s\n", eng_qlevel_name(eng_qlevel_best()));
    printf("\n1. %d x %d matrix (weights stream from memory / L3)\n", MAX_ROWS, COLS);
    if (bench_table(types, ntypes, MAX_ROWS, x, y, xq))
        return 1;
    printf("\n2. cache-resident: as many rows of %d as fit in %d KiB (kernel speed)\n", COLS,
           CACHE_BYTES / 1024);
    if (bench_table(types, ntypes, 0, x, y, xq))
        return 1;
    free(x);
    free(y);
    free(xq);
    return 0;
}
