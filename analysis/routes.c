/*
** analysis/routes.c — AnRoutes, the in-memory route table every statistic
** reads, and AnLoad, its per layer×expert count summary.
**
** Rows are positions; per-layer data sits in fixed-stride arrays so a scan
** over positions walks memory forward.  Experts are uint16 (n_expert ≤
** 65535) to keep a million-position, 16-layer, top-8 table at 256 MB of ids.
*/
#include "analysis/an.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "analysis/an_int.h"

const char *an_status_str(AnStatus s)
{
    switch (s) {
    case AN_OK: return "ok";
    case AN_E_NOMEM: return "out of memory";
    case AN_E_ARG: return "bad argument";
    case AN_E_DATA: return "bad data";
    case AN_E_DB: return "database error";
    case AN_E_NOTFOUND: return "not found";
    }
    return "unknown status";
}

const char *an_split_name(int split)
{
    static const char *names[AN_NSPLIT] = { "all", "prompt", "gen" };
    if (split < 0 || split >= AN_NSPLIT)
        return NULL;
    return names[split];
}

AnStatus an_fail(AnErr *err, AnStatus st, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->status = st;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* ---- AnRoutes -------------------------------------------------------- */

/* Ask for transparent huge pages on the 2 MB-aligned interior of a large
** array.  Specialization reads rows in token order, i.e. scattered over
** hundreds of MB; with 4 KB pages nearly every row is a TLB miss (and a
** costly nested page walk under virtualisation).  Advisory: errors are
** ignored. */
void an_hint_huge(void *p, size_t bytes)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t HP = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + HP - 1) & ~(HP - 1);
    uintptr_t b = ((uintptr_t)p + bytes) & ~(HP - 1);
    if (b > a)
        madvise((void *)a, b - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}

static int routes_grow(AnRoutes *r, int64_t want)
{
    if (want <= r->cap)
        return 0;
    int64_t cap = r->cap ? r->cap : 64;
    while (cap < want)
        cap *= 2;
    size_t L = (size_t)r->n_layer, K = (size_t)r->k_max, E = (size_t)r->n_expert;
    size_t n = (size_t)cap;
    void *p;
#define GROW(field, count) \
    do { \
        p = realloc(r->field, (count) * sizeof *r->field); \
        if (!p) \
            return -1; \
        r->field = p; \
    } while (0)
    GROW(run, n);
    GROW(pos, n);
    GROW(token, n);
    GROW(is_prompt, n);
    GROW(logprob, n);
    GROW(n_chosen, n * L);
    GROW(experts, n * L * K);
    GROW(weights, n * L * K);
    if (r->has_logits)
        GROW(logits, n * L * E);
#undef GROW
    an_hint_huge(r->n_chosen, n * L);
    an_hint_huge(r->experts, n * L * K * sizeof *r->experts);
    an_hint_huge(r->weights, n * L * K * sizeof *r->weights);
    if (r->has_logits)
        an_hint_huge(r->logits, n * L * E * sizeof *r->logits);
    r->cap = cap;
    return 0;
}

AnRoutes *an_routes_new(int n_layer, int n_expert, int k_max, int has_logits,
                        AnGating gating, int64_t cap_hint, AnErr *err)
{
    if (n_layer < 1 || n_layer > 4096) {
        an_fail(err, AN_E_ARG, "an_routes_new: n_layer %d, expected 1..4096", n_layer);
        return NULL;
    }
    if (n_expert < 1 || n_expert > 65535) {
        an_fail(err, AN_E_ARG, "an_routes_new: n_expert %d, expected 1..65535", n_expert);
        return NULL;
    }
    if (k_max < 1 || k_max > n_expert || k_max > 255) {
        an_fail(err, AN_E_ARG, "an_routes_new: k_max %d, expected 1..min(n_expert=%d, 255)",
                k_max, n_expert);
        return NULL;
    }
    if (gating < AN_GATE_SOFTMAX || gating > AN_GATE_SOFTMAX_TOPK) {
        an_fail(err, AN_E_ARG, "an_routes_new: gating %d unknown", (int)gating);
        return NULL;
    }
    AnRoutes *r = calloc(1, sizeof *r);
    if (!r) {
        an_fail(err, AN_E_NOMEM, "an_routes_new: out of memory");
        return NULL;
    }
    r->n_layer = n_layer;
    r->n_expert = n_expert;
    r->k_max = k_max;
    r->has_logits = has_logits ? 1 : 0;
    r->gating = gating;
    if (cap_hint > 0 && routes_grow(r, cap_hint)) {
        an_routes_free(r);
        an_fail(err, AN_E_NOMEM, "an_routes_new: out of memory for %lld rows",
                (long long)cap_hint);
        return NULL;
    }
    return r;
}

void an_routes_free(AnRoutes *r)
{
    if (!r)
        return;
    free(r->run);
    free(r->pos);
    free(r->token);
    free(r->is_prompt);
    free(r->logprob);
    free(r->n_chosen);
    free(r->experts);
    free(r->weights);
    free(r->logits);
    free(r);
}

int64_t an_routes_add_pos(AnRoutes *r, int run, int pos, int32_t token,
                          int is_prompt, float logprob, AnErr *err)
{
    if (run < 0) {
        an_fail(err, AN_E_ARG, "an_routes_add_pos: run index %d, expected >= 0", run);
        return -1;
    }
    if (routes_grow(r, r->n_pos + 1)) {
        an_fail(err, AN_E_NOMEM, "an_routes_add_pos: out of memory at row %lld",
                (long long)r->n_pos);
        return -1;
    }
    int64_t i = r->n_pos++;
    size_t L = (size_t)r->n_layer, K = (size_t)r->k_max;
    r->run[i] = run;
    r->pos[i] = pos;
    r->token[i] = token;
    r->is_prompt[i] = is_prompt ? 1 : 0;
    r->logprob[i] = logprob;
    memset(r->n_chosen + (size_t)i * L, 0, L);
    memset(r->experts + (size_t)i * L * K, 0, L * K * sizeof *r->experts);
    memset(r->weights + (size_t)i * L * K, 0, L * K * sizeof *r->weights);
    if (r->has_logits)
        memset(r->logits + (size_t)i * L * r->n_expert, 0,
               L * (size_t)r->n_expert * sizeof *r->logits);
    if (run >= r->n_run)
        r->n_run = run + 1;
    return i;
}

/* Re-lay the expert and weight arrays with a wider stride k (a run whose
** top-k was overridden upward).  -1 on no memory (table unchanged). */
static int routes_widen(AnRoutes *r, int k)
{
    size_t rows = (size_t)(r->cap ? r->cap : 1) * (size_t)r->n_layer;
    size_t K0 = (size_t)r->k_max, K1 = (size_t)k;
    uint16_t *ex = calloc(rows * K1, sizeof *ex);
    float *w = calloc(rows * K1, sizeof *w);
    if (!ex || !w) {
        free(ex);
        free(w);
        return -1;
    }
    for (size_t q = 0; q < (size_t)r->n_pos * (size_t)r->n_layer; q++) {
        memcpy(ex + q * K1, r->experts + q * K0, K0 * sizeof *ex);
        memcpy(w + q * K1, r->weights + q * K0, K0 * sizeof *w);
    }
    free(r->experts);
    free(r->weights);
    r->experts = ex;
    r->weights = w;
    r->k_max = k;
    an_hint_huge(r->experts, rows * K1 * sizeof *ex);
    an_hint_huge(r->weights, rows * K1 * sizeof *w);
    return 0;
}

AnStatus an_routes_set(AnRoutes *r, int64_t i, int l, int k,
                       const int32_t *experts, const float *weights,
                       const float *logits, AnErr *err)
{
    if (i < 0 || i >= r->n_pos)
        return an_fail(err, AN_E_ARG, "an_routes_set: row %lld, expected 0..%lld",
                       (long long)i, (long long)r->n_pos - 1);
    if (l < 0 || l >= r->n_layer)
        return an_fail(err, AN_E_ARG, "an_routes_set: layer %d, expected 0..%d", l,
                       r->n_layer - 1);
    if (k < 1 || k > r->n_expert || k > 255)
        return an_fail(err, AN_E_DATA, "an_routes_set: row %lld layer %d: %d experts chosen, "
                       "expected 1..%d", (long long)i, l, k,
                       r->n_expert < 255 ? r->n_expert : 255);
    if (k > r->k_max && routes_widen(r, k))
        return an_fail(err, AN_E_NOMEM, "an_routes_set: out of memory widening to %d experts "
                       "per route", k);
    for (int j = 0; j < k; j++) {
        if (experts[j] < 0 || experts[j] >= r->n_expert)
            return an_fail(err, AN_E_DATA, "an_routes_set: row %lld layer %d: expert %d, "
                           "expected 0..%d", (long long)i, l, (int)experts[j],
                           r->n_expert - 1);
        for (int m = 0; m < j; m++)
            if (experts[m] == experts[j])
                return an_fail(err, AN_E_DATA, "an_routes_set: row %lld layer %d: expert %d "
                               "chosen twice", (long long)i, l, (int)experts[j]);
    }
    size_t L = (size_t)r->n_layer, K = (size_t)r->k_max;
    size_t base = ((size_t)i * L + (size_t)l) * K;
    r->n_chosen[(size_t)i * L + (size_t)l] = (uint8_t)k;
    for (int j = 0; j < k; j++) {
        r->experts[base + (size_t)j] = (uint16_t)experts[j];
        r->weights[base + (size_t)j] = weights ? weights[j] : 0.0f;
    }
    if (r->has_logits && logits)
        memcpy(r->logits + ((size_t)i * L + (size_t)l) * (size_t)r->n_expert, logits,
               (size_t)r->n_expert * sizeof *logits);
    return AN_OK;
}

/* ---- AnLoad ---------------------------------------------------------- */

AnLoad *an_load_new(int n_layer, int n_expert, AnErr *err)
{
    if (n_layer < 1 || n_expert < 1 || n_expert > 65535 || n_layer > 4096) {
        an_fail(err, AN_E_ARG, "an_load_new: shape %d layers × %d experts, expected "
                "1..4096 × 1..65535", n_layer, n_expert);
        return NULL;
    }
    AnLoad *ld = calloc(1, sizeof *ld);
    size_t LE = (size_t)n_layer * (size_t)n_expert;
    if (ld) {
        ld->n_layer = n_layer;
        ld->n_expert = n_expert;
        ld->n_routed = calloc((size_t)AN_NSPLIT * (size_t)n_layer, sizeof *ld->n_routed);
        ld->count = calloc((size_t)AN_NSPLIT * LE, sizeof *ld->count);
        ld->mass = calloc((size_t)AN_NSPLIT * LE, sizeof *ld->mass);
    }
    if (!ld || !ld->n_routed || !ld->count || !ld->mass) {
        an_load_free(ld);
        an_fail(err, AN_E_NOMEM, "an_load_new: out of memory");
        return NULL;
    }
    return ld;
}

void an_load_free(AnLoad *ld)
{
    if (!ld)
        return;
    free(ld->n_routed);
    free(ld->count);
    free(ld->mass);
    free(ld);
}

AnStatus an_load_add(AnLoad *dst, const AnLoad *src, AnErr *err)
{
    if (dst->n_layer != src->n_layer || dst->n_expert != src->n_expert)
        return an_fail(err, AN_E_ARG, "an_load_add: shape %d×%d added to %d×%d",
                       src->n_layer, src->n_expert, dst->n_layer, dst->n_expert);
    size_t nl = (size_t)AN_NSPLIT * (size_t)dst->n_layer;
    size_t n = nl * (size_t)dst->n_expert;
    for (int s = 0; s < AN_NSPLIT; s++)
        dst->n_pos[s] += src->n_pos[s];
    dst->no_split |= src->no_split;
    for (size_t i = 0; i < nl; i++)
        dst->n_routed[i] += src->n_routed[i];
    for (size_t i = 0; i < n; i++) {
        dst->count[i] += src->count[i];
        dst->mass[i] += src->mass[i];
    }
    return AN_OK;
}

AnLoad *an_load_from_routes(const AnRoutes *r, int run, AnErr *err)
{
    AnLoad *ld = an_load_new(r->n_layer, r->n_expert, err);
    if (!ld)
        return NULL;
    const size_t L = (size_t)r->n_layer, K = (size_t)r->k_max, E = (size_t)r->n_expert;
    /* Count prompt and generated rows; "all" is their sum afterwards. */
    for (int64_t i = 0; i < r->n_pos; i++) {
        if (run >= 0 && r->run[i] != run)
            continue;
        int s = r->is_prompt[i] ? AN_SPLIT_PROMPT : AN_SPLIT_GEN;
        ld->n_pos[s]++;
        int64_t *nr = ld->n_routed + (size_t)s * L;
        int64_t *cnt = ld->count + (size_t)s * L * E;
        double *mass = ld->mass + (size_t)s * L * E;
        const uint8_t *nc = r->n_chosen + (size_t)i * L;
        const uint16_t *ex = r->experts + (size_t)i * L * K;
        const float *w = r->weights + (size_t)i * L * K;
        for (size_t l = 0; l < L; l++) {
            int k = nc[l];
            if (!k)
                continue;
            nr[l]++;
            for (int j = 0; j < k; j++) {
                size_t e = ex[l * K + (size_t)j];
                cnt[l * E + e]++;
                mass[l * E + e] += w[l * K + (size_t)j];
            }
        }
    }
    ld->n_pos[AN_SPLIT_ALL] = ld->n_pos[AN_SPLIT_PROMPT] + ld->n_pos[AN_SPLIT_GEN];
    for (size_t l = 0; l < L; l++)
        ld->n_routed[l] = ld->n_routed[L + l] + ld->n_routed[2 * L + l];
    for (size_t i = 0; i < L * E; i++) {
        ld->count[i] = ld->count[L * E + i] + ld->count[2 * L * E + i];
        ld->mass[i] = ld->mass[L * E + i] + ld->mass[2 * L * E + i];
    }
    return ld;
}
