/*
** analysis/stats.c — per-layer load balance, router entropy and OLMoE
** vocabulary specialization over an AnRoutes table.
**
** Shape of the work: one pass over positions counts the load (an AnLoad);
** router entropy is a second pass over the logits when they were stored;
** specialization sorts positions by token id (counting sort) and walks each
** token's occurrences with a small per-layer×expert scratch table, so no
** vocabulary-sized matrix is ever allocated.  Co-activation and transitions
** (OpenBLAS) live in pairs.c.
*/
#include "analysis/an.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/an_int.h"

/* ---- balance of one layer ------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void an_balance(const int64_t *c, int n, AnLayerStats *out)
{
    int64_t total = 0;
    int unused = 0;
    int64_t mx = 0;
    for (int e = 0; e < n; e++) {
        total += c[e];
        if (c[e] == 0)
            unused++;
        if (c[e] > mx)
            mx = c[e];
    }
    out->n_assign = total;
    out->n_unused = unused;
    if (total == 0 || n < 1) {
        out->entropy = NAN;
        out->cv = NAN;
        out->maxvio = NAN;
        out->gini = NAN;
        return;
    }
    double mean = (double)total / n;
    double h = 0, var = 0;
    for (int e = 0; e < n; e++) {
        double sh = (double)c[e] / (double)total;
        if (sh > 0)
            h -= sh * log(sh);
        double d = (double)c[e] - mean;
        var += d * d;
    }
    /* One expert: all load on it is as even as it gets. */
    out->entropy = n > 1 ? h / log((double)n) : 1.0;
    out->cv = sqrt(var / n) / mean;
    out->maxvio = (double)mx / mean - 1.0;
    /* Gini from the ascending order: G = Σ_i (2i − n − 1) c_(i) / (n Σ c),
    ** i = 1..n — equal to Σ_i Σ_j |c_i − c_j| / (2 n² mean). */
    int64_t stackbuf[256];
    int64_t *sorted = n <= 256 ? stackbuf : malloc((size_t)n * sizeof *sorted);
    if (!sorted) {
        /* O(n²) fallback keeps the function infallible. */
        double s = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                s += fabs((double)c[i] - (double)c[j]);
        out->gini = s / (2.0 * n * (double)n * mean);
        return;
    }
    memcpy(sorted, c, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_i64);
    double g = 0;
    for (int i = 0; i < n; i++)
        g += (double)(2 * (i + 1) - n - 1) * (double)sorted[i];
    out->gini = g / ((double)n * (double)total);
    if (sorted != stackbuf)
        free(sorted);
}

/* ---- router distribution --------------------------------------------- */

double an_router_dist(const float *logits, int n, AnGating g, double *pmax)
{
    double h = 0, mx = 0;
    if (g == AN_GATE_SIGMOID) {
        double sum = 0;
        for (int e = 0; e < n; e++)
            sum += 1.0 / (1.0 + exp(-(double)logits[e]));
        for (int e = 0; e < n; e++) {
            double p = 1.0 / (1.0 + exp(-(double)logits[e])) / sum;
            if (p > 0)
                h -= p * log(p);
            if (p > mx)
                mx = p;
        }
    } else {
        /* softmax: H = log Z − Σ p·(l − m), with Z = Σ exp(l − m) */
        double m = logits[0];
        for (int e = 1; e < n; e++)
            if (logits[e] > m)
                m = logits[e];
        double z = 0, s = 0;
        for (int e = 0; e < n; e++) {
            double x = (double)logits[e] - m;
            double ex = exp(x);
            z += ex;
            s += ex * x;
        }
        h = log(z) - s / z;
        mx = 1.0 / z;
        if (h < 0)
            h = 0;
    }
    *pmax = mx;
    return h;
}

/* ---- stats object ----------------------------------------------------- */

static AnStats *stats_alloc(const AnLoad *ld, int n_top, int min_occ, int pairs, AnErr *err)
{
    AnStats *s = calloc(1, sizeof *s);
    if (!s)
        goto nomem;
    s->n_layer = ld->n_layer;
    s->n_expert = ld->n_expert;
    s->n_top_tok = n_top;
    s->min_occ = min_occ;
    size_t L = (size_t)ld->n_layer, E = (size_t)ld->n_expert;
    s->layer = calloc((size_t)AN_NSPLIT * L, sizeof *s->layer);
    if (!s->layer)
        goto nomem;
    if (n_top > 0) {
        s->top = malloc((size_t)AN_NSPLIT * L * E * (size_t)n_top * sizeof *s->top);
        if (!s->top)
            goto nomem;
        for (size_t i = 0; i < (size_t)AN_NSPLIT * L * E * (size_t)n_top; i++)
            s->top[i] = (AnTopTok){ .token = -1 };
    }
    if (pairs) {
        s->coact = calloc((size_t)AN_NSPLIT * L * E * E, sizeof *s->coact);
        s->trans = calloc((size_t)AN_NSPLIT * (L > 1 ? L - 1 : 1) * E * E, sizeof *s->trans);
        if (!s->coact || !s->trans)
            goto nomem;
    }
    s->load = an_load_new(ld->n_layer, ld->n_expert, err);
    if (!s->load) {
        an_stats_free(s);
        return NULL;
    }
    if (an_load_add(s->load, ld, err)) {
        an_stats_free(s);
        return NULL;
    }
    for (int sp = 0; sp < AN_NSPLIT; sp++)
        for (size_t l = 0; l < L; l++) {
            AnLayerStats *ls = &s->layer[(size_t)sp * L + l];
            ls->n_tok = ld->n_routed[(size_t)sp * L + l];
            an_balance(ld->count + ((size_t)sp * L + l) * E, (int)E, ls);
            ls->router_entropy = NAN;
            ls->top1_prob = NAN;
            ls->vocab_spec = NAN;
        }
    return s;
nomem:
    an_stats_free(s);
    an_fail(err, AN_E_NOMEM, "an_stats: out of memory");
    return NULL;
}

AnStats *an_stats_from_load(const AnLoad *ld, AnErr *err)
{
    return stats_alloc(ld, 0, 0, 0, err);
}

void an_stats_free(AnStats *s)
{
    if (!s)
        return;
    an_load_free(s->load);
    free(s->layer);
    free(s->top);
    free(s->coact);
    free(s->trans);
    free(s);
}

static void router_stats(const AnRoutes *r, AnStats *s)
{
    const size_t L = (size_t)r->n_layer, E = (size_t)r->n_expert;
    double *hs = calloc((size_t)AN_NSPLIT * L * 2, sizeof *hs);
    int64_t *ns = calloc((size_t)AN_NSPLIT * L, sizeof *ns);
    if (!hs || !ns) {
        free(hs);
        free(ns);
        return;   /* router fields stay NAN; memory errors surface elsewhere */
    }
    for (int64_t i = 0; i < r->n_pos; i++) {
        size_t sp = r->is_prompt[i] ? AN_SPLIT_PROMPT : AN_SPLIT_GEN;
        for (size_t l = 0; l < L; l++) {
            if (!r->n_chosen[(size_t)i * L + l])
                continue;
            double pmax;
            double h = an_router_dist(r->logits + ((size_t)i * L + l) * E, (int)E,
                                      r->gating, &pmax);
            hs[(sp * L + l) * 2] += h;
            hs[(sp * L + l) * 2 + 1] += pmax;
            ns[sp * L + l]++;
        }
    }
    for (size_t l = 0; l < L; l++) {
        for (int k = 0; k < 2; k++)
            hs[l * 2 + (size_t)k] = hs[(L + l) * 2 + (size_t)k] + hs[(2 * L + l) * 2 + (size_t)k];
        ns[l] = ns[L + l] + ns[2 * L + l];
    }
    for (size_t i = 0; i < (size_t)AN_NSPLIT * L; i++) {
        AnLayerStats *ls = &s->layer[i];
        ls->n_router = ns[i];
        ls->router_entropy = ns[i] ? hs[i * 2] / (double)ns[i] : NAN;
        ls->top1_prob = ns[i] ? hs[i * 2 + 1] / (double)ns[i] : NAN;
    }
    s->has_router = 1;
    free(hs);
    free(ns);
}

/* ---- vocabulary specialization --------------------------------------- */

/* Insert a candidate into the ascending-rank list top[0..n-1] (best first). */
static void top_insert(AnTopTok *top, int n, int32_t tok, int32_t cnt, int32_t occ)
{
    float share = (float)cnt / (float)occ;
    int at = n;
    while (at > 0) {
        const AnTopTok *t = &top[at - 1];
        int better = t->token < 0 || share > t->share ||
                     (share == t->share && (cnt > t->count ||
                                            (cnt == t->count && tok < t->token)));
        if (!better)
            break;
        at--;
    }
    if (at >= n)
        return;
    memmove(top + at + 1, top + at, (size_t)(n - at - 1) * sizeof *top);
    top[at] = (AnTopTok){ .token = tok, .count = cnt, .occ = occ, .share = share };
}

static int cmp_tok_idx(const void *a, const void *b)
{
    const int64_t *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]) ? (x[0] > y[0]) - (x[0] < y[0])
                                         : (x[1] > y[1]) - (x[1] < y[1]);
}

/* Row indices ordered by token id (stable), with the row's prompt flag in
** bit 62 (ORDER_PROMPT) so the specialization pass needs not fetch it,
** and the token of each sorted slot in *stok.  Counting sort when the id
** range is small, else qsort of (token, row) pairs.  NULL on no memory. */
#define ORDER_PROMPT ((int64_t)1 << 62)

/* how many rows ahead the specialization pass prefetches (16, 32 and 64
** measured alike) */
enum { PF_AHEAD = 16 };

static int64_t *rows_by_token(const AnRoutes *r, int32_t **stok)
{
    int64_t n = r->n_pos;
    int64_t *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    *stok = malloc((size_t)(n ? n : 1) * sizeof **stok);
    if (!order || !*stok) {
        free(order);
        free(*stok);
        *stok = NULL;
        return NULL;
    }
    int32_t lo = INT32_MAX, hi = INT32_MIN;
    for (int64_t i = 0; i < n; i++) {
        if (r->token[i] < lo)
            lo = r->token[i];
        if (r->token[i] > hi)
            hi = r->token[i];
    }
    int64_t range = n ? (int64_t)hi - lo + 1 : 0;
    if (range <= 4 * n + 65536) {
        int64_t *start = calloc((size_t)range + 1, sizeof *start);
        if (!start) {
            free(order);
            free(*stok);
            *stok = NULL;
            return NULL;
        }
        for (int64_t i = 0; i < n; i++)
            start[r->token[i] - lo + 1]++;
        for (int64_t v = 0; v < range; v++)
            start[v + 1] += start[v];
        for (int64_t i = 0; i < n; i++) {
            int64_t at = start[r->token[i] - lo]++;
            order[at] = i | (r->is_prompt[i] ? ORDER_PROMPT : 0);
            (*stok)[at] = r->token[i];
        }
        free(start);
        return order;
    }
    int64_t *pairs = malloc((size_t)n * 2 * sizeof *pairs);
    if (!pairs) {
        free(order);
        free(*stok);
        *stok = NULL;
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        pairs[2 * i] = r->token[i];
        pairs[2 * i + 1] = i;
    }
    qsort(pairs, (size_t)n, 2 * sizeof *pairs, cmp_tok_idx);
    for (int64_t g = 0; g < n; g++) {
        int64_t i = pairs[2 * g + 1];
        order[g] = i | (r->is_prompt[i] ? ORDER_PROMPT : 0);
        (*stok)[g] = (int32_t)pairs[2 * g];
    }
    free(pairs);
    return order;
}

/* The specialization work for the MoE layers [l0, l1), with its own
** scratch, over the rows in token order. */
typedef struct {
    const AnRoutes *r;
    AnStats *s;
    const int64_t *order;
    const int32_t *stok;
    const uint8_t *ex8;     /* (n_pos, n_layer, k_max) experts as bytes, 0xFF
                               past a route's end; NULL: read r directly */
    size_t l0, l1;
    int nomem;
} VocabJob;

/* The experts as one byte each (n_expert ≤ 255), unused slots 0xFF, so a
** row is k_max·n_layer bytes with no separate route-size array: half the
** cache lines per scattered row read.  Built by one sequential pass.
** NULL on no memory or too many experts. */
static uint8_t *experts_as_bytes(const AnRoutes *r)
{
    const size_t L = (size_t)r->n_layer, K = (size_t)r->k_max, n = (size_t)r->n_pos;
    if (r->n_expert > 255 || n == 0)
        return NULL;
    uint8_t *b = malloc(n * L * K);
    if (!b)
        return NULL;
    an_hint_huge(b, n * L * K);
    for (size_t i = 0; i < n * L; i++) {
        int k = r->n_chosen[i];
        const uint16_t *ex = r->experts + i * K;
        uint8_t *d = b + i * K;
        for (size_t j = 0; j < K; j++)
            d[j] = (int)j < k ? (uint8_t)ex[j] : 0xFF;
    }
    return b;
}

static void vocab_layers(VocabJob *jb)
{
    const AnRoutes *r = jb->r;
    AnStats *s = jb->s;
    const int64_t *order = jb->order;
    const int32_t *stok = jb->stok;
    const uint8_t *ex8 = jb->ex8;
    const size_t L = (size_t)r->n_layer, E = (size_t)r->n_expert, K = (size_t)r->k_max;
    const size_t l0 = jb->l0, l1 = jb->l1;
    const int ntop = s->n_top_tok, min_occ = s->min_occ;
    /* Scratch per token id: counts [prompt|gen][l][e], occurrences
    ** [split][l], max count [split][l]; sums of specialization per split×l. */
    int32_t *cnt = calloc(2 * L * E, sizeof *cnt);
    int32_t *occ = calloc((size_t)AN_NSPLIT * L, sizeof *occ);
    int32_t *mx = calloc((size_t)AN_NSPLIT * L, sizeof *mx);
    double *spec = calloc((size_t)AN_NSPLIT * L, sizeof *spec);
    int *nid = calloc((size_t)AN_NSPLIT * L, sizeof *nid);
    /* one spare slot: the branch-free append below always writes */
    uint32_t *touched = malloc((L * E + 1) * sizeof *touched);
    if (!cnt || !occ || !mx || !spec || !nid || !touched) {
        jb->nomem = 1;
        goto done;
    }
    /* the bytes of a row's experts in this layer range, for prefetching */
    const size_t pf0 = l0 * K * sizeof *r->experts, pf1 = l1 * K * sizeof *r->experts;
    int64_t g0 = 0;
    while (g0 < r->n_pos) {
        int32_t tok = stok[g0];
        int64_t g1 = g0;
        while (g1 < r->n_pos && stok[g1] == tok)
            g1++;
        /* pass 1: count this id's occurrences per split, layer, expert and
        ** list each (l, e) the id touches once */
        int nt = 0;
        for (int64_t g = g0; g < g1; g++) {
            size_t i = (size_t)(order[g] & ~ORDER_PROMPT);
            size_t h = order[g] & ORDER_PROMPT ? 0 : 1;
            if (ex8) {
                if (g + PF_AHEAD < g1) {
                    /* rows are scattered: fetch one PF_AHEAD rows ahead */
                    size_t ahead = (size_t)(order[g + PF_AHEAD] & ~ORDER_PROMPT);
                    for (size_t b = l0 * K; b < l1 * K; b += 64)
                        __builtin_prefetch(ex8 + ahead * L * K + b);
                }
                for (size_t l = l0; l < l1; l++) {
                    const uint8_t *ex = ex8 + (i * L + l) * K;
                    if (ex[0] == 0xFF)
                        continue;
                    occ[(h + 1) * L + l]++;
                    for (size_t j = 0; j < K && ex[j] != 0xFF; j++) {
                        size_t q = l * E + ex[j];
                        /* branch-free "first touch": the test is data
                        ** dependent and mispredicts on rare tokens */
                        touched[nt] = (uint32_t)q;
                        nt += (cnt[q] | cnt[L * E + q]) == 0;
                        cnt[h * L * E + q]++;
                    }
                }
                continue;
            }
            if (g + 16 < g1) {
                /* rows are scattered: fetch the one 16 ahead */
                size_t ahead = (size_t)(order[g + 16] & ~ORDER_PROMPT);
                const char *pe = (const char *)(r->experts + ahead * L * K);
                for (size_t b = pf0; b < pf1; b += 64)
                    __builtin_prefetch(pe + b);
                __builtin_prefetch(r->n_chosen + ahead * L + l0);
            }
            for (size_t l = l0; l < l1; l++) {
                int k = r->n_chosen[i * L + l];
                if (!k)
                    continue;
                occ[(h + 1) * L + l]++;
                const uint16_t *ex = r->experts + (i * L + l) * K;
                for (int j = 0; j < k; j++) {
                    size_t q = l * E + ex[j];
                    if (cnt[q] == 0 && cnt[L * E + q] == 0)
                        touched[nt++] = (uint32_t)q;
                    cnt[h * L * E + q]++;
                }
            }
        }
        for (size_t l = l0; l < l1; l++)
            occ[l] = occ[L + l] + occ[2 * L + l];
        /* pass 2 over the touched (l, e): per-layer max, top-token offers,
        ** and the scratch counts back to zero */
        for (int t = 0; t < nt; t++) {
            size_t q = touched[t], l = q / E, e = q % E;
            int32_t cp = cnt[q], cg = cnt[L * E + q];
            int32_t c3[AN_NSPLIT] = { cp + cg, cp, cg };
            for (size_t sp = 0; sp < AN_NSPLIT; sp++) {
                if (c3[sp] == 0)
                    continue;
                if (c3[sp] > mx[sp * L + l])
                    mx[sp * L + l] = c3[sp];
                int32_t o = occ[sp * L + l];
                if (ntop > 0 && o >= min_occ) {
                    AnTopTok *top = s->top + ((sp * L + l) * E + e) * (size_t)ntop;
                    const AnTopTok *last = &top[ntop - 1];
                    /* quick reject: share below the last kept one's
                    ** (c/o < count/occ, compared without dividing) */
                    if (last->token >= 0 &&
                        (int64_t)c3[sp] * last->occ < (int64_t)last->count * o)
                        continue;
                    top_insert(top, ntop, tok, c3[sp], o);
                }
            }
            cnt[q] = 0;
            cnt[L * E + q] = 0;
        }
        for (size_t sp = 0; sp < AN_NSPLIT; sp++)
            for (size_t l = l0; l < l1; l++) {
                size_t q = sp * L + l;
                if (occ[q] >= min_occ && occ[q] > 0) {
                    spec[q] += (double)mx[q] / (double)occ[q];
                    nid[q]++;
                }
                occ[q] = 0;
                mx[q] = 0;
            }
        g0 = g1;
    }
    for (size_t sp = 0; sp < AN_NSPLIT; sp++)
        for (size_t l = l0; l < l1; l++) {
            size_t q = sp * L + l;
            s->layer[q].n_vocab_ids = nid[q];
            s->layer[q].vocab_spec = nid[q] ? spec[q] / nid[q] : NAN;
        }
done:
    free(cnt);
    free(occ);
    free(mx);
    free(spec);
    free(nid);
    free(touched);
}

/* Specialization and top tokens over every layer, single-threaded: the
** pass is bound by scattered memory reads, and splitting it over the two
** cores of a machine shared with other work made it slower (each thread
** re-fetches the rows). */
static AnStatus vocab_stats(const AnRoutes *r, AnStats *s, AnErr *err)
{
    int32_t *stok = NULL;
    int64_t *order = rows_by_token(r, &stok);
    if (!order)
        return an_fail(err, AN_E_NOMEM, "an_stats_compute: out of memory for specialization");
    uint8_t *ex8 = experts_as_bytes(r);   /* NULL: the slower direct reads */
    VocabJob jb = { r, s, order, stok, ex8, 0, (size_t)r->n_layer, 0 };
    vocab_layers(&jb);
    free(ex8);
    free(order);
    free(stok);
    if (jb.nomem)
        return an_fail(err, AN_E_NOMEM, "an_stats_compute: out of memory for specialization");
    return AN_OK;
}

AnStats *an_stats_compute(const AnRoutes *r, const AnStatsParams *p, AnErr *err)
{
    AnStatsParams def = { .want_routes = 1, .want_pairs = 1 };
    if (!p)
        p = &def;
    int min_occ = p->min_occ > 0 ? p->min_occ : 10;
    int n_top = p->want_routes ? (p->n_top_tok > 0 ? p->n_top_tok : 5) : 0;
    AnLoad *ld = an_load_from_routes(r, -1, err);
    if (!ld)
        return NULL;
    AnStats *s = stats_alloc(ld, n_top, min_occ, p->want_pairs, err);
    an_load_free(ld);
    if (!s)
        return NULL;
    if (p->want_routes) {
        if (r->has_logits)
            router_stats(r, s);
        if (vocab_stats(r, s, err)) {
            an_stats_free(s);
            return NULL;
        }
        s->has_routes = 1;
    }
    if (p->want_pairs) {
        size_t EE = (size_t)r->n_expert * (size_t)r->n_expert;
        /* prompt and generated separately; "all" is their sum */
        for (int sp = AN_SPLIT_PROMPT; sp < AN_NSPLIT; sp++)
            for (int l = 0; l < r->n_layer; l++) {
                if (an_coact(r, sp, l, s->coact + ((size_t)sp * (size_t)r->n_layer + (size_t)l) * EE,
                             err) ||
                    (l + 1 < r->n_layer &&
                     an_transitions(r, sp, l, s->trans + ((size_t)sp * (size_t)(r->n_layer - 1) +
                                                          (size_t)l) * EE, err))) {
                    an_stats_free(s);
                    return NULL;
                }
            }
        size_t nc = (size_t)r->n_layer * EE, nt = (size_t)(r->n_layer - 1) * EE;
        for (size_t i = 0; i < nc; i++)
            s->coact[i] = s->coact[nc + i] + s->coact[2 * nc + i];
        for (size_t i = 0; i < nt; i++)
            s->trans[i] = s->trans[nt + i] + s->trans[2 * nt + i];
        s->has_pairs = 1;
    }
    return s;
}
