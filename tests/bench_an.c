/*
** tests/bench_an.c — speed of the analysis core on a synthetic log of
** 1M positions × 16 MoE layers × top-8 of 64 experts (the scale of the
** database issue's synthetic log).
**
** Measured on in-memory data (building the table is not timed):
**   stats     load, balance, vocabulary specialization, top tokens — the
**             `moescope stats` core; target < 1 s, the bench fails above it
**   pairs     co-activation (ssyrk) and transitions (sgemm), every layer
**   contrast  100 runs split 50/50, 1000 run permutations
**   diff      two 10k-position runs
** Tokens follow a Zipf-like law over 32k ids; half of each route is drawn
** from a token-dependent block of experts so specialization is non-trivial.
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "analysis/an.h"

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

/* CPU time of this thread: the stats core is single-threaded, so this is
** its wall time on an idle machine, and it does not count the time other
** processes on a shared machine take from it. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void)
{
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
        /* Zipf-like: id = floor(N_VOCAB^u) − 1 for uniform u */
        double u = (double)(next() >> 11) / 9007199254740992.0;
        int32_t tok = (int32_t)pow(N_VOCAB, u) - 1;
        int run = i / (N_POS / N_RUN);
        int pos = i % (N_POS / N_RUN);
        int64_t row = an_routes_add_pos(r, run, pos, tok, pos < 200, -1.0f, &err);
        for (int l = 0; l < N_LAYER; l++) {
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
    an_load_free(lall);

    /* stats core */
    AnStatsParams p = { .want_routes = 1, .want_pairs = 0 };
    t0 = now();
    double c0 = cpu_now();
    AnStats *s = an_stats_compute(r, &p, &err);
    double t_stats = cpu_now() - c0, w_stats = now() - t0;
    if (!s) {
        fprintf(stderr, "bench_an: %s\n", err.msg);
        return 1;
    }
    printf("bench_an: stats (load, balance, specialization, top tokens; 3 splits): %.3f s CPU, "
           "%.3f s wall  [layer 0: entropy %.4f, gini %.4f, vocab spec %.4f over %d ids]\n",
           t_stats, w_stats, s->layer[0].entropy, s->layer[0].gini, s->layer[0].vocab_spec,
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

    if (t_stats >= 1.0) {
        fprintf(stderr, "bench_an: stats took %.3f s CPU, target < 1 s\n", t_stats);
        return 1;
    }
    return 0;
}
