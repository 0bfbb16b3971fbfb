/*
** engine/sample.c — choosing the next token from logits.
**
** Greedy is argmax (ties: lower id, as llama.cpp).  Otherwise: temperature,
** then top-k, then top-p (nucleus), then a draw from the renormalised
** distribution with a xoshiro128++-style generator seeded by splitmix64, so a
** seed fixes the text on every machine.
*/
#include "engine/eng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoroshiro128++ */
static uint64_t next_u64(EngSampler *s)
{
    uint64_t s0 = s->s[0], s1 = s->s[1];
    uint64_t r = rotl(s0 + s1, 17) + s0;
    s1 ^= s0;
    s->s[0] = rotl(s0, 49) ^ s1 ^ (s1 << 21);
    s->s[1] = rotl(s1, 28);
    return r;
}

static double next_unit(EngSampler *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

EngStatus eng_sampler_init(EngSampler *s, const EngSampleParams *p, int n_vocab)
{
    memset(s, 0, sizeof *s);
    s->p = *p;
    s->n = n_vocab;
    uint64_t x = p->seed;
    s->s[0] = splitmix(&x);
    s->s[1] = splitmix(&x);
    s->buf = malloc((size_t)n_vocab * sizeof(float));
    s->idx = malloc((size_t)n_vocab * sizeof(int));
    if (!s->buf || !s->idx) {
        eng_sampler_done(s);
        return ENG_E_NOMEM;
    }
    return ENG_OK;
}

void eng_sampler_done(EngSampler *s)
{
    free(s->buf);
    free(s->idx);
    s->buf = NULL;
    s->idx = NULL;
}

static int32_t argmax(const float *l, int n)
{
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b])
            b = i;
    return b;
}

static const float *cmp_vals;
static int cmp_desc(const void *a, const void *b)
{
    float x = cmp_vals[*(const int *)a], y = cmp_vals[*(const int *)b];
    if (x != y)
        return x < y ? 1 : -1;
    return *(const int *)a - *(const int *)b;
}

/* partial selection: move the k largest of buf[idx[0..n)] to the front,
** sorted descending (k small: selection; large: qsort) */
static void top_sorted(const float *v, int *idx, int n, int k)
{
    if (k >= n / 4) {
        cmp_vals = v;
        qsort(idx, (size_t)n, sizeof *idx, cmp_desc);
        return;
    }
    for (int i = 0; i < k; i++) {
        int b = i;
        for (int j = i + 1; j < n; j++)
            if (v[idx[j]] > v[idx[b]] || (v[idx[j]] == v[idx[b]] && idx[j] < idx[b]))
                b = j;
        int t = idx[i];
        idx[i] = idx[b];
        idx[b] = t;
    }
}

int32_t eng_sample(EngSampler *s, const float *logits)
{
    int n = s->n;
    const EngSampleParams *p = &s->p;
    if (p->greedy || p->temp <= 0.0f)
        return argmax(logits, n);
    float *v = s->buf;
    int *idx = s->idx;
    for (int i = 0; i < n; i++) {
        v[i] = logits[i] / p->temp;
        idx[i] = i;
    }
    int m = n;
    int k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    int need_sort = k < n || (p->top_p > 0.0f && p->top_p < 1.0f);
    if (need_sort) {
        top_sorted(v, idx, n, k);
        m = k;
    }
    float mx = -INFINITY;
    for (int i = 0; i < m; i++)
        if (v[idx[i]] > mx)
            mx = v[idx[i]];
    double sum = 0;
    for (int i = 0; i < m; i++) {
        v[idx[i]] = expf(v[idx[i]] - mx);
        sum += v[idx[i]];
    }
    if (p->top_p > 0.0f && p->top_p < 1.0f) {
        if (m == n && k == n) {
            cmp_vals = v;
            qsort(idx, (size_t)m, sizeof *idx, cmp_desc);
        }
        double acc = 0;
        int keep = m;
        for (int i = 0; i < m; i++) {
            acc += v[idx[i]] / sum;
            if (acc >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        m = keep;
        sum = 0;
        for (int i = 0; i < m; i++)
            sum += v[idx[i]];
    }
    double r = next_unit(s) * sum;
    double acc = 0;
    for (int i = 0; i < m; i++) {
        acc += v[idx[i]];
        if (r < acc)
            return idx[i];
    }
    return idx[m - 1];
}

float eng_logprobs(const float *logits, int n, int32_t chosen, int n_top, int32_t *top_ids,
                   float *top_lp)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (logits[i] > mx)
            mx = logits[i];
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += exp((double)(logits[i] - mx));
    float lse = mx + (float)log(sum);
    /* top n_top by insertion into a small sorted list (ties: lower id) */
    int have = 0;
    for (int i = 0; i < n && n_top > 0; i++) {
        if (have == n_top && logits[i] <= top_lp[have - 1])
            continue;
        int j = have < n_top ? have++ : n_top - 1;
        while (j > 0 && logits[i] > top_lp[j - 1]) {
            top_lp[j] = top_lp[j - 1];
            top_ids[j] = top_ids[j - 1];
            j--;
        }
        top_lp[j] = logits[i];
        top_ids[j] = i;
    }
    for (int j = 0; j < have; j++)
        top_lp[j] -= lse;
    for (int j = have; j < n_top; j++) {
        top_ids[j] = -1;
        top_lp[j] = -INFINITY;
    }
    return logits[chosen] - lse;
}
