/*
** analysis/contrast.c — which experts separate run set A from run set B.
**
** For every layer×expert: activation frequency p = (positions whose chosen
** set contains e) / (positions routed in the layer), pooled over the runs of
** a set; risk difference Δ = pA − pB (SteerMoE, MoTE's fTRI) with the
** Newcombe hybrid-score 95 % interval (Newcombe 1998, method 10: Wilson
** intervals of pA and pB combined), the log odds ratio with 0.5 added to
** each cell and its Wald 95 % interval.  These intervals treat positions as
** independent; positions of one run are not, so significance comes from the
** permutation test, which shuffles whole runs between A and B (set sizes
** kept, fixed seed) and reports p = (1 + #{|Δ*| ≥ |Δ|}) / (1 + n_perm).
** Benjamini–Hochberg q-values are taken over the rows that pass the
** minimum count (countA + countB ≥ min_count).  Rows are ranked by |Δ|.
*/
#include "analysis/an.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/an_int.h"

static const double Z95 = 1.959963984540054;

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform integer in [0, n) without modulo bias. */
static uint64_t rand_below(uint64_t *s, uint64_t n)
{
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = splitmix64(s);
    while (x >= lim);
    return x % n;
}

static void wilson(double p, double n, double *lo, double *hi)
{
    double z2 = Z95 * Z95;
    double den = 1.0 + z2 / n;
    double c = (p + z2 / (2.0 * n)) / den;
    double h = Z95 / den * sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n));
    *lo = c - h < 0 ? 0 : c - h;
    *hi = c + h > 1 ? 1 : c + h;
}

static int cmp_rank(const void *x, const void *y)
{
    const AnContrastRow *a = x, *b = y;
    double da = fabs(a->delta), db = fabs(b->delta);
    if (da != db)
        return da < db ? 1 : -1;
    int an = isnan(a->p_value), bn = isnan(b->p_value);
    if (!an && !bn && a->p_value != b->p_value)
        return a->p_value < b->p_value ? -1 : 1;
    if (a->layer != b->layer)
        return a->layer - b->layer;
    return a->expert - b->expert;
}

typedef struct {
    double p;
    int i;
} PIdx;

static int cmp_pidx(const void *x, const void *y)
{
    const PIdx *a = x, *b = y;
    if (a->p != b->p)
        return a->p < b->p ? -1 : 1;
    return a->i - b->i;
}

AnStatus an_bh(const double *p, int n, double *q, AnErr *err)
{
    if (n <= 0)
        return AN_OK;
    PIdx *by = malloc((size_t)n * sizeof *by);
    if (!by)
        return an_fail(err, AN_E_NOMEM, "an_bh: out of memory");
    for (int i = 0; i < n; i++)
        by[i] = (PIdx){ p[i], i };
    qsort(by, (size_t)n, sizeof *by, cmp_pidx);
    double run = 1.0;
    for (int i = n - 1; i >= 0; i--) {
        double v = by[i].p * n / (i + 1);
        if (v < run)
            run = v;
        q[by[i].i] = run;
    }
    free(by);
    return AN_OK;
}

/* q-values of the rows' p-values. */
static AnStatus bh_rows(AnContrastRow *row, int n, AnErr *err)
{
    double *p = malloc((size_t)(n ? n : 1) * 2 * sizeof *p);
    if (!p)
        return an_fail(err, AN_E_NOMEM, "an_contrast: out of memory");
    for (int i = 0; i < n; i++)
        p[i] = row[i].p_value;
    AnStatus st = an_bh(p, n, p + n, err);
    for (int i = 0; i < n && !st; i++)
        row[i].q_value = p[n + i];
    free(p);
    return st;
}

void an_contrast_free(AnContrast *c)
{
    if (!c)
        return;
    free(c->row);
    free(c);
}

AnContrast *an_contrast(const AnLoad *const *runs_a, int n_a, const AnLoad *const *runs_b,
                        int n_b, const AnContrastParams *p, AnErr *err)
{
    AnContrastParams def = { 0 };
    if (!p)
        p = &def;
    if (n_a < 1 || n_b < 1) {
        an_fail(err, AN_E_ARG, "an_contrast: set %s has no runs", n_a < 1 ? "A" : "B");
        return NULL;
    }
    if (p->split < 0 || p->split >= AN_NSPLIT || p->n_perm < 0 || p->min_count < 0) {
        an_fail(err, AN_E_ARG, "an_contrast: split %d / n_perm %d / min_count %lld out of range",
                p->split, p->n_perm, (long long)p->min_count);
        return NULL;
    }
    const int L = runs_a[0]->n_layer, E = runs_a[0]->n_expert, N = n_a + n_b;
    const size_t LE = (size_t)L * (size_t)E;
    for (int i = 0; i < N; i++) {
        const AnLoad *ld = i < n_a ? runs_a[i] : runs_b[i - n_a];
        if (ld->n_layer != L || ld->n_expert != E) {
            an_fail(err, AN_E_ARG, "an_contrast: run %d of set %s has %d layers × %d experts, "
                    "the first run of A has %d × %d", i < n_a ? i : i - n_a,
                    i < n_a ? "A" : "B", ld->n_layer, ld->n_expert, L, E);
            return NULL;
        }
    }
    AnContrast *c = calloc(1, sizeof *c);
    int64_t *tot_c = calloc(LE, sizeof *tot_c), *tot_n = calloc((size_t)L, sizeof *tot_n);
    int64_t *sa_c = calloc(LE, sizeof *sa_c), *sa_n = calloc((size_t)L, sizeof *sa_n);
    int64_t *exceed = calloc(LE, sizeof *exceed);
    double *dobs = calloc(LE, sizeof *dobs);
    int *perm = malloc((size_t)N * sizeof *perm);
    const AnLoad **all = malloc((size_t)N * sizeof *all);
    if (!c || !tot_c || !tot_n || !sa_c || !sa_n || !exceed || !dobs || !perm || !all) {
        an_fail(err, AN_E_NOMEM, "an_contrast: out of memory");
        goto fail;
    }
    c->n_layer = L;
    c->n_expert = E;
    c->n_runs_a = n_a;
    c->n_runs_b = n_b;
    c->n_perm = p->n_perm;
    c->split = p->split;
    c->min_count = p->min_count;
    c->seed = p->seed;
    const size_t so = (size_t)p->split;
    for (int i = 0; i < N; i++) {
        all[i] = i < n_a ? runs_a[i] : runs_b[i - n_a];
        const int64_t *cnt = all[i]->count + so * LE, *nr = all[i]->n_routed + so * (size_t)L;
        for (size_t q = 0; q < LE; q++)
            tot_c[q] += cnt[q];
        for (int l = 0; l < L; l++)
            tot_n[l] += nr[l];
        if (i < n_a) {
            for (size_t q = 0; q < LE; q++)
                sa_c[q] += cnt[q];
            for (int l = 0; l < L; l++)
                sa_n[l] += nr[l];
        }
    }
    c->row = malloc((LE ? LE : 1) * sizeof *c->row);
    if (!c->row) {
        an_fail(err, AN_E_NOMEM, "an_contrast: out of memory");
        goto fail;
    }
    /* observed statistics */
    for (int l = 0; l < L; l++) {
        int64_t na = sa_n[l], nb = tot_n[l] - sa_n[l];
        for (int e = 0; e < E; e++) {
            size_t q = (size_t)l * (size_t)E + (size_t)e;
            int64_t a = sa_c[q], b = tot_c[q] - sa_c[q];
            dobs[q] = NAN;
            if (na == 0 || nb == 0 || a + b < p->min_count)
                continue;
            AnContrastRow *w = &c->row[c->n_row++];
            w->layer = l;
            w->expert = e;
            w->count_a = a;
            w->n_a = na;
            w->count_b = b;
            w->n_b = nb;
            w->p_a = (double)a / (double)na;
            w->p_b = (double)b / (double)nb;
            w->delta = w->p_a - w->p_b;
            dobs[q] = w->delta;
            double l1, u1, l2, u2;
            wilson(w->p_a, (double)na, &l1, &u1);
            wilson(w->p_b, (double)nb, &l2, &u2);
            w->delta_lo = w->delta - sqrt((w->p_a - l1) * (w->p_a - l1) + (u2 - w->p_b) * (u2 - w->p_b));
            w->delta_hi = w->delta + sqrt((u1 - w->p_a) * (u1 - w->p_a) + (w->p_b - l2) * (w->p_b - l2));
            double ca = a + 0.5, cb = (double)(na - a) + 0.5;
            double cc = b + 0.5, cd = (double)(nb - b) + 0.5;
            w->lor = log(ca * cd / (cb * cc));
            double se = sqrt(1 / ca + 1 / cb + 1 / cc + 1 / cd);
            w->lor_lo = w->lor - Z95 * se;
            w->lor_hi = w->lor + Z95 * se;
            w->p_value = NAN;
            w->q_value = NAN;
        }
    }
    /* permutation test over whole runs */
    if (p->n_perm > 0 && c->n_row > 0) {
        uint64_t state = p->seed;
        for (int i = 0; i < N; i++)
            perm[i] = i;
        for (int t = 0; t < p->n_perm; t++) {
            for (int i = N - 1; i > 0; i--) {
                int j = (int)rand_below(&state, (uint64_t)i + 1);
                int x = perm[i];
                perm[i] = perm[j];
                perm[j] = x;
            }
            /* sum the smaller side; the other is the total minus it */
            int small_b = n_b < n_a, i0 = small_b ? n_a : 0, i1 = small_b ? N : n_a;
            memset(sa_c, 0, LE * sizeof *sa_c);
            memset(sa_n, 0, (size_t)L * sizeof *sa_n);
            for (int i = i0; i < i1; i++) {
                const AnLoad *ld = all[perm[i]];
                const int64_t *cnt = ld->count + so * LE, *nr = ld->n_routed + so * (size_t)L;
                for (size_t q = 0; q < LE; q++)
                    sa_c[q] += cnt[q];
                for (int l = 0; l < L; l++)
                    sa_n[l] += nr[l];
            }
            if (small_b) {
                for (size_t q = 0; q < LE; q++)
                    sa_c[q] = tot_c[q] - sa_c[q];
                for (int l = 0; l < L; l++)
                    sa_n[l] = tot_n[l] - sa_n[l];
            }
            for (int l = 0; l < L; l++) {
                int64_t na = sa_n[l], nb = tot_n[l] - sa_n[l];
                for (int e = 0; e < E; e++) {
                    size_t q = (size_t)l * (size_t)E + (size_t)e;
                    if (isnan(dobs[q]))
                        continue;
                    /* A permutation that leaves a side without positions in
                    ** this layer has no Δ; it counts as not exceeding. */
                    if (na == 0 || nb == 0)
                        continue;
                    double d = (double)sa_c[q] / (double)na -
                               (double)(tot_c[q] - sa_c[q]) / (double)nb;
                    if (fabs(d) >= fabs(dobs[q]) - 1e-12)
                        exceed[q]++;
                }
            }
        }
        for (int i = 0; i < c->n_row; i++) {
            AnContrastRow *w = &c->row[i];
            size_t q = (size_t)w->layer * (size_t)E + (size_t)w->expert;
            w->p_value = (1.0 + (double)exceed[q]) / (1.0 + p->n_perm);
        }
        if (bh_rows(c->row, c->n_row, err))
            goto fail;
    }
    qsort(c->row, (size_t)c->n_row, sizeof *c->row, cmp_rank);
    free(tot_c);
    free(tot_n);
    free(sa_c);
    free(sa_n);
    free(exceed);
    free(dobs);
    free(perm);
    free(all);
    return c;
fail:
    an_contrast_free(c);
    free(tot_c);
    free(tot_n);
    free(sa_c);
    free(sa_n);
    free(exceed);
    free(dobs);
    free(perm);
    free(all);
    return NULL;
}

int an_contrast_interventions(const AnContrast *c, int top, int force, const int *layer_of,
                              FILE *f)
{
    int n = 0;
    for (int i = 0; i < c->n_row && (top <= 0 || n < top); i++) {
        const AnContrastRow *w = &c->row[i];
        if (!(w->delta > 0))
            continue;
        fprintf(f, "%s%d:%d", n ? "," : (force ? "--force " : "--disable "),
                layer_of ? layer_of[w->layer] : w->layer, w->expert);
        n++;
    }
    if (n)
        fputc('\n', f);
    return n;
}
