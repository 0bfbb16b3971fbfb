/*
** analysis/pairs.c — co-activation within a layer and transitions between
** consecutive MoE layers, as matrix products on OpenBLAS.
**
** For a split and layer, A is the position×expert 0/1 matrix of chosen sets.
** Co-activation C = AᵀA (cblas_ssyrk), transitions T = A_lᵀ A_{l+1}
** (cblas_sgemm).  Positions are taken in chunks of CHUNK rows so the 0/1
** matrices stay small; each chunk's float product is exact (counts below
** 2^24) and is added into double accumulators, so totals stay exact for any
** number of positions.
*/
#include "analysis/an.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/an_int.h"

enum { CHUNK = 1024 };   /* rows: 256 KB of 0/1 floats at 64 experts, L2-sized */

/* Write v at the chosen experts of row i, layer l (1 to mark, 0 to clear:
** clearing only what was set keeps the chunk buffers zero between chunks
** without a full memset). */
static void set_row(const AnRoutes *r, int64_t i, int l, float *row, float v)
{
    const size_t L = (size_t)r->n_layer, K = (size_t)r->k_max;
    int k = r->n_chosen[(size_t)i * L + (size_t)l];
    const uint16_t *ex = r->experts + ((size_t)i * L + (size_t)l) * K;
    for (int j = 0; j < k; j++)
        row[ex[j]] = v;
}

static AnStatus check(const AnRoutes *r, int split, int l, int need_next, const char *fn,
                      AnErr *err)
{
    if (split < 0 || split >= AN_NSPLIT)
        return an_fail(err, AN_E_ARG, "%s: split %d, expected 0..%d", fn, split, AN_NSPLIT - 1);
    int hi = r->n_layer - 1 - (need_next ? 1 : 0);
    if (l < 0 || l > hi)
        return an_fail(err, AN_E_ARG, "%s: layer %d, expected 0..%d", fn, l, hi);
    return AN_OK;
}

AnStatus an_coact(const AnRoutes *r, int split, int l, double *C, AnErr *err)
{
    AnStatus st = check(r, split, l, 0, "an_coact", err);
    if (st)
        return st;
    const int E = r->n_expert;
    const size_t L = (size_t)r->n_layer, EE = (size_t)E * (size_t)E;
    float *A = malloc((size_t)CHUNK * (size_t)E * sizeof *A);
    float *Cf = malloc(EE * sizeof *Cf);
    int64_t *src = malloc((size_t)CHUNK * sizeof *src);
    if (!A || !Cf || !src) {
        free(A);
        free(Cf);
        free(src);
        return an_fail(err, AN_E_NOMEM, "an_coact: out of memory");
    }
    memset(C, 0, EE * sizeof *C);
    memset(A, 0, (size_t)CHUNK * (size_t)E * sizeof *A);
    int64_t i = 0;
    while (i < r->n_pos) {
        int rows = 0;
        for (; i < r->n_pos && rows < CHUNK; i++) {
            if (!an_in_split(r, i, split) || !r->n_chosen[(size_t)i * L + (size_t)l])
                continue;
            set_row(r, i, l, A + (size_t)rows * (size_t)E, 1.0f);
            src[rows++] = i;
        }
        if (!rows)
            break;
        /* Cf (upper) = Aᵀ A over this chunk */
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, E, rows, 1.0f, A, E, 0.0f, Cf, E);
        for (int a = 0; a < E; a++)
            for (int b = a; b < E; b++)
                C[(size_t)a * (size_t)E + (size_t)b] += Cf[(size_t)a * (size_t)E + (size_t)b];
        for (int q = 0; q < rows; q++)
            set_row(r, src[q], l, A + (size_t)q * (size_t)E, 0.0f);
    }
    for (int a = 0; a < E; a++)
        for (int b = 0; b < a; b++)
            C[(size_t)a * (size_t)E + (size_t)b] = C[(size_t)b * (size_t)E + (size_t)a];
    free(A);
    free(Cf);
    free(src);
    return AN_OK;
}

AnStatus an_transitions(const AnRoutes *r, int split, int l, double *T, AnErr *err)
{
    AnStatus st = check(r, split, l, 1, "an_transitions", err);
    if (st)
        return st;
    const int E = r->n_expert;
    const size_t L = (size_t)r->n_layer, EE = (size_t)E * (size_t)E;
    float *A = malloc((size_t)CHUNK * (size_t)E * sizeof *A);
    float *B = malloc((size_t)CHUNK * (size_t)E * sizeof *B);
    float *Tf = malloc(EE * sizeof *Tf);
    int64_t *src = malloc((size_t)CHUNK * sizeof *src);
    if (!A || !B || !Tf || !src) {
        free(A);
        free(B);
        free(Tf);
        free(src);
        return an_fail(err, AN_E_NOMEM, "an_transitions: out of memory");
    }
    memset(T, 0, EE * sizeof *T);
    memset(A, 0, (size_t)CHUNK * (size_t)E * sizeof *A);
    memset(B, 0, (size_t)CHUNK * (size_t)E * sizeof *B);
    int64_t i = 0;
    while (i < r->n_pos) {
        int rows = 0;
        for (; i < r->n_pos && rows < CHUNK; i++) {
            const uint8_t *nc = r->n_chosen + (size_t)i * L;
            if (!an_in_split(r, i, split) || !nc[l] || !nc[l + 1])
                continue;
            set_row(r, i, l, A + (size_t)rows * (size_t)E, 1.0f);
            set_row(r, i, l + 1, B + (size_t)rows * (size_t)E, 1.0f);
            src[rows++] = i;
        }
        if (!rows)
            break;
        /* Tf = A_lᵀ A_{l+1} over this chunk */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, E, E, rows, 1.0f, A, E, B, E,
                    0.0f, Tf, E);
        for (size_t q = 0; q < EE; q++)
            T[q] += Tf[q];
        for (int q = 0; q < rows; q++) {
            set_row(r, src[q], l, A + (size_t)q * (size_t)E, 0.0f);
            set_row(r, src[q], l + 1, B + (size_t)q * (size_t)E, 0.0f);
        }
    }
    free(A);
    free(B);
    free(Tf);
    free(src);
    return AN_OK;
}

void an_cond_prob(const double *C, int n, double *P)
{
    for (int a = 0; a < n; a++) {
        double d = C[(size_t)a * (size_t)n + (size_t)a];
        for (int b = 0; b < n; b++)
            P[(size_t)a * (size_t)n + (size_t)b] =
                d > 0 ? C[(size_t)a * (size_t)n + (size_t)b] / d : NAN;
    }
}
