/*
** analysis/diff.c — what changed between two runs (typically a run and its
** steered re-run): where the text diverges, how often each layer picked a
** different expert set over the shared prefix, the load delta, and how the
** chosen tokens' logprobs moved.
**
** Rows are aligned by index (row i = position i of each run).  The common
** prefix is the longest run of equal tokens from the start; only there are
** expert sets and logprobs comparable, since afterwards the contexts differ.
*/
#include "analysis/an.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/an_int.h"

void an_diff_free(AnDiff *d)
{
    if (!d)
        return;
    free(d->n_cmp);
    free(d->n_changed);
    free(d->load_delta);
    free(d);
}

/* 1 when the chosen sets of row i (table a) and row j (table b) in layer l
** differ as sets (order ignored). */
static int set_changed(const AnRoutes *a, int64_t i, const AnRoutes *b, int64_t j, int l)
{
    const size_t L = (size_t)a->n_layer;
    int ka = a->n_chosen[(size_t)i * L + (size_t)l], kb = b->n_chosen[(size_t)j * L + (size_t)l];
    if (ka != kb)
        return 1;
    const uint16_t *ea = a->experts + ((size_t)i * L + (size_t)l) * (size_t)a->k_max;
    const uint16_t *eb = b->experts + ((size_t)j * L + (size_t)l) * (size_t)b->k_max;
    for (int x = 0; x < ka; x++) {
        int found = 0;
        for (int y = 0; y < kb && !found; y++)
            found = ea[x] == eb[y];
        if (!found)
            return 1;
    }
    return 0;
}

AnDiff *an_diff(const AnRoutes *a, const AnRoutes *b, AnErr *err)
{
    if (a->n_layer != b->n_layer || a->n_expert != b->n_expert) {
        an_fail(err, AN_E_ARG, "an_diff: run A has %d layers × %d experts, run B %d × %d",
                a->n_layer, a->n_expert, b->n_layer, b->n_expert);
        return NULL;
    }
    const size_t L = (size_t)a->n_layer, E = (size_t)a->n_expert;
    AnDiff *d = calloc(1, sizeof *d);
    AnLoad *la = NULL, *lb = NULL;
    if (d) {
        d->n_cmp = calloc((size_t)AN_NSPLIT * L, sizeof *d->n_cmp);
        d->n_changed = calloc((size_t)AN_NSPLIT * L, sizeof *d->n_changed);
        d->load_delta = calloc((size_t)AN_NSPLIT * L * E, sizeof *d->load_delta);
    }
    if (!d || !d->n_cmp || !d->n_changed || !d->load_delta) {
        an_diff_free(d);
        an_fail(err, AN_E_NOMEM, "an_diff: out of memory");
        return NULL;
    }
    d->n_layer = (int)L;
    d->n_expert = (int)E;
    d->n_pos_a = a->n_pos;
    d->n_pos_b = b->n_pos;
    int64_t n = a->n_pos < b->n_pos ? a->n_pos : b->n_pos;
    int64_t m = 0;
    while (m < n && a->token[m] == b->token[m])
        m++;
    d->n_common = m;
    d->first_div = -1;
    d->tok_a = d->tok_b = -1;
    d->lp_a = d->lp_b = NAN;
    if (m < a->n_pos || m < b->n_pos) {
        d->first_div = m;
        if (m < a->n_pos) {
            d->tok_a = a->token[m];
            d->lp_a = a->logprob[m];
        }
        if (m < b->n_pos) {
            d->tok_b = b->token[m];
            d->lp_b = b->logprob[m];
        }
        d->div_in_prompt = m < n && a->is_prompt[m] && b->is_prompt[m];
    }
    /* expert sets and logprobs over the common prefix */
    double lp_sum = 0, lp_max = 0;
    for (int64_t i = 0; i < m; i++) {
        size_t sp = a->is_prompt[i] ? AN_SPLIT_PROMPT : AN_SPLIT_GEN;
        for (size_t l = 0; l < L; l++) {
            if (!a->n_chosen[(size_t)i * L + l] || !b->n_chosen[(size_t)i * L + l])
                continue;
            int ch = set_changed(a, i, b, i, (int)l);
            d->n_cmp[sp * L + l]++;
            d->n_changed[sp * L + l] += ch;
            d->n_cmp[l]++;
            d->n_changed[l] += ch;
        }
        if (!a->is_prompt[i] && !b->is_prompt[i] && isfinite(a->logprob[i]) &&
            isfinite(b->logprob[i])) {
            double dl = (double)b->logprob[i] - (double)a->logprob[i];
            lp_sum += dl;
            if (fabs(dl) > lp_max)
                lp_max = fabs(dl);
            d->n_lp++;
        }
    }
    d->lp_mean_delta = d->n_lp ? lp_sum / (double)d->n_lp : NAN;
    d->lp_max_abs = d->n_lp ? lp_max : NAN;
    /* load delta over every position of each run */
    la = an_load_from_routes(a, -1, err);
    lb = la ? an_load_from_routes(b, -1, err) : NULL;
    if (!la || !lb) {
        an_load_free(la);
        an_diff_free(d);
        return NULL;
    }
    for (size_t q = 0; q < (size_t)AN_NSPLIT * L * E; q++)
        d->load_delta[q] = la->count[q] - lb->count[q];
    an_load_free(la);
    an_load_free(lb);
    return d;
}
