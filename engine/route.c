/*
** engine/route.c — expert selection and interventions.
**
** For one token in one MoE layer, with router logits l (n_expert values):
**   1. bias     l[e] += b
**   2. disable  e is excluded from selection and from the weight formula
**               (softmax: l[e] = -inf before the softmax, so the others are
**               renormalised; sigmoid: p[e] = 0 and never selected)
**   3. force    e is always chosen; the other k - n_forced slots go to the
**               best-scoring other experts
**   4. top-k'   k' experts instead of k;  top-p: the smallest set, in score
**               order, whose gate probability mass reaches p (at most cap)
** Then the weights follow the architecture (softmax → p_j, optionally
** renormalised over the chosen set; sigmoid → sigmoid(l_j), normalised,
** times the scale; gpt-oss → softmax over the chosen logits).  The selection
** score orders the choice: p for softmax gating, sigmoid + exp_probs_b for
** sigmoid gating, logit + router bias for gpt-oss.  The chosen experts are
** reported in descending score order, as llama.cpp's top-k returns them.
**
** With no intervention in scope every step reduces to llama.cpp's
** computation exactly (a bias of 0 adds 0.0f: bit-for-bit the same).
*/
#include "engine/route.h"

#include <math.h>
#include <string.h>

enum { F_DIS = 1, F_FORCE = 2, F_CHOSEN = 4 };

int eng_iv_applies(const EngIv *iv, int layer, int pos, int is_prompt)
{
    if (iv->layer >= 0 && iv->layer != layer)
        return 0;
    switch (iv->scope) {
    case ENG_SCOPE_ALL: return 1;
    case ENG_SCOPE_PROMPT: return is_prompt;
    case ENG_SCOPE_GEN: return !is_prompt;
    case ENG_SCOPE_FROM: return pos >= iv->from_pos;
    }
    return 0;
}

static void softmax_masked(const float *l, const uint8_t *flags, float *p, int n)
{
    float mx = -INFINITY;
    for (int e = 0; e < n; e++)
        if (!(flags[e] & F_DIS) && l[e] > mx)
            mx = l[e];
    double sum = 0;
    for (int e = 0; e < n; e++) {
        p[e] = (flags[e] & F_DIS) ? 0.0f : expf(l[e] - mx);
        sum += p[e];
    }
    float inv = sum > 0 ? (float)(1.0 / sum) : 0.0f;
    for (int e = 0; e < n; e++)
        p[e] *= inv;
}

/* index of the best not-yet-chosen expert among those with flag mask
** (`want` flags set, `skip` flags clear); ties go to the lower id. */
static int best(const float *sc, const uint8_t *flags, int n, int want, int skip)
{
    int b = -1;
    for (int e = 0; e < n; e++) {
        if ((flags[e] & want) != want || (flags[e] & skip))
            continue;
        if (b < 0 || sc[e] > sc[b])
            b = e;
    }
    return b;
}

void eng_route(const EngModel *m, int layer, int pos, int is_prompt, const float *logits,
               const EngIv *ivs, int n_ivs, RouteScratch *s, RouteOut *out)
{
    const EngInfo *I = &m->info;
    const Layer *ly = &m->layers[layer];
    int n = I->n_expert;
    int k = I->n_expert_used;
    float top_p = 0.0f;
    int cap = n;
    float *l = s->l, *p = s->p, *sc = s->sc;
    uint8_t *flags = s->flags;

    memcpy(l, logits, (size_t)n * sizeof(float));
    memset(flags, 0, (size_t)n);
    if (ly->gate_inp_b.data)
        for (int e = 0; e < n; e++)
            l[e] += eng_mat_get_f32(&ly->gate_inp_b, e);

    /* 1. bias, then collect disable/force/top-k/top-p */
    for (int i = 0; i < n_ivs; i++) {
        const EngIv *iv = &ivs[i];
        if (!eng_iv_applies(iv, layer, pos, is_prompt))
            continue;
        switch (iv->kind) {
        case ENG_IV_BIAS: l[iv->expert] += iv->value; break;
        case ENG_IV_DISABLE: flags[iv->expert] |= F_DIS; break;
        case ENG_IV_FORCE: flags[iv->expert] |= F_FORCE; break;
        case ENG_IV_TOPK: k = (int)iv->value; top_p = 0.0f; break;
        case ENG_IV_TOPP:
            top_p = iv->value;
            cap = iv->cap > 0 && iv->cap < n ? iv->cap : n;
            break;
        }
    }
    int n_avail = 0, n_forced = 0;
    for (int e = 0; e < n; e++) {
        if (flags[e] & F_DIS)
            flags[e] &= (uint8_t)~F_FORCE;   /* validated away; be safe */
        n_avail += !(flags[e] & F_DIS);
        n_forced += (flags[e] & F_FORCE) != 0;
    }

    /* 2. gate probabilities and selection scores */
    switch (I->gating) {
    case ENG_GATE_SOFTMAX:
        softmax_masked(l, flags, p, n);
        for (int e = 0; e < n; e++)
            sc[e] = p[e];
        break;
    case ENG_GATE_SIGMOID:
        for (int e = 0; e < n; e++) {
            p[e] = (flags[e] & F_DIS) ? 0.0f : 1.0f / (1.0f + expf(-l[e]));
            sc[e] = p[e];
            if (ly->exp_probs_b.data)
                sc[e] += eng_mat_get_f32(&ly->exp_probs_b, e);
        }
        break;
    case ENG_GATE_SOFTMAX_TOPK:
        softmax_masked(l, flags, p, n);   /* only used as mass for top-p */
        for (int e = 0; e < n; e++)
            sc[e] = l[e];
        break;
    }
    for (int e = 0; e < n; e++)
        if (flags[e] & F_DIS)
            sc[e] = -INFINITY;

    /* 3. choose: forced experts first, then the best others */
    int nsel = 0;
    if (top_p > 0.0f) {
        float *mass = s->mass;
        double tot = 0;
        for (int e = 0; e < n; e++)
            tot += p[e];
        for (int e = 0; e < n; e++)
            mass[e] = tot > 0 ? (float)(p[e] / tot) : 0.0f;
        double acc = 0;
        int e;
        while (nsel < n_avail && nsel < cap &&
               ((e = best(sc, flags, n, F_FORCE, F_CHOSEN | F_DIS)) >= 0)) {
            flags[e] |= F_CHOSEN;
            acc += mass[e];
            nsel++;
        }
        while (nsel < n_avail && nsel < cap && acc < top_p &&
               (e = best(sc, flags, n, 0, F_CHOSEN | F_DIS)) >= 0) {
            flags[e] |= F_CHOSEN;
            acc += mass[e];
            nsel++;
        }
    } else {
        if (k > n_avail)
            k = n_avail;
        if (n_forced > k)
            k = n_forced;
        int e;
        while (nsel < k && (e = best(sc, flags, n, F_FORCE, F_CHOSEN | F_DIS)) >= 0) {
            flags[e] |= F_CHOSEN;
            nsel++;
        }
        while (nsel < k && (e = best(sc, flags, n, 0, F_CHOSEN | F_DIS)) >= 0) {
            flags[e] |= F_CHOSEN;
            nsel++;
        }
    }
    /* report in descending score order (ties: lower id) */
    out->k = 0;
    for (int j = 0; j < nsel; j++) {
        int b = -1;
        for (int e = 0; e < n; e++)
            if ((flags[e] & F_CHOSEN) && (b < 0 || sc[e] > sc[b]))
                b = e;
        flags[b] &= (uint8_t)~F_CHOSEN;
        out->experts[out->k] = b;
        out->scores[out->k] = sc[b];
        out->k++;
    }

    /* 4. weights */
    int kk = out->k;
    if (I->gating == ENG_GATE_SOFTMAX_TOPK) {
        float mx = -INFINITY;
        for (int j = 0; j < kk; j++)
            if (l[out->experts[j]] > mx)
                mx = l[out->experts[j]];
        float sum = 0;
        for (int j = 0; j < kk; j++) {
            out->weights[j] = expf(l[out->experts[j]] - mx);
            sum += out->weights[j];
        }
        for (int j = 0; j < kk; j++)
            out->weights[j] /= sum;
        return;
    }
    float sum = 0;
    for (int j = 0; j < kk; j++) {
        out->weights[j] = p[out->experts[j]];
        sum += out->weights[j];
    }
    if (I->norm_topk) {
        if (sum < 6.103515625e-5f)   /* llama.cpp clamps the sum (smallest F16 normal) */
            sum = 6.103515625e-5f;
        for (int j = 0; j < kk; j++)
            out->weights[j] /= sum;
    }
    if (I->expert_weights_scale != 1.0f)
        for (int j = 0; j < kk; j++)
            out->weights[j] *= I->expert_weights_scale;
}
