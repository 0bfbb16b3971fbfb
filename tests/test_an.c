/*
** tests/test_an.c — the analysis core against small tables worked out by
** hand (the arithmetic is in the comments), plus the degenerate cases: no
** tokens, one expert, k = n_expert, zero counts, identical run sets.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/an.h"

/* Compare two arrays within tol; print the largest difference seen. */
static void near_arr(const double *got, const double *want, int n, double tol, const char *what)
{
    double worst = 0;
    int at = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs(got[i] - want[i]);
        if (isnan(got[i]) != isnan(want[i]))
            d = INFINITY;
        else if (isnan(got[i]))
            d = 0;
        if (d > worst) {
            worst = d;
            at = i;
        }
    }
    printf("    %s: largest difference %.3g (index %d)\n", what, worst, at);
    if (worst > tol)
        fail_msg("%s: index %d got %.9g want %.9g (tol %g)", what, at, got[at], want[at], tol);
}

static void near(double got, double want, double tol, const char *what)
{
    near_arr(&got, &want, 1, tol, what);
}

/* ---- balance ---------------------------------------------------------- */

static void test_balance_skewed_load_matches_hand_values(void **st)
{
    (void)st;
    /* c = [6,2,0,0], n = 4: total 8, mean 2.
    ** shares .75 .25 → H = −(.75 ln .75 + .25 ln .25) = 0.562335, / ln 4 = 0.405639
    ** deviations 4 0 −2 −2 → var = (16+0+4+4)/4 = 6, cv = √6 / 2 = 1.224745
    ** MaxVio = 6/2 − 1 = 2
    ** Gini: Σ_ij |ci − cj| = 2·(4+6+6+2+2+0) = 40, / (2·16·2) = 0.625 */
    int64_t c[4] = { 6, 2, 0, 0 };
    AnLayerStats ls;
    an_balance(c, 4, &ls);
    double got[4] = { ls.entropy, ls.cv, ls.maxvio, ls.gini };
    double want[4] = { 0.4056390622, 1.2247448714, 2.0, 0.625 };
    near_arr(got, want, 4, 1e-9, "entropy/cv/maxvio/gini");
    assert_int_equal(ls.n_unused, 2);
    assert_int_equal(ls.n_assign, 8);
}

static void test_balance_even_load_is_perfect(void **st)
{
    (void)st;
    /* [3,3,3]: shares 1/3 → H/ln3 = 1; no deviation → cv 0, MaxVio 0, Gini 0 */
    int64_t c[3] = { 3, 3, 3 };
    AnLayerStats ls;
    an_balance(c, 3, &ls);
    double got[4] = { ls.entropy, ls.cv, ls.maxvio, ls.gini };
    double want[4] = { 1, 0, 0, 0 };
    near_arr(got, want, 4, 1e-12, "even load");
    assert_int_equal(ls.n_unused, 0);
}

static void test_balance_one_expert_is_even(void **st)
{
    (void)st;
    int64_t c[1] = { 5 };
    AnLayerStats ls;
    an_balance(c, 1, &ls);
    double got[4] = { ls.entropy, ls.cv, ls.maxvio, ls.gini };
    double want[4] = { 1, 0, 0, 0 };
    near_arr(got, want, 4, 1e-12, "one expert");
}

static void test_balance_no_tokens_gives_nan_not_crash(void **st)
{
    (void)st;
    int64_t c[2] = { 0, 0 };
    AnLayerStats ls;
    an_balance(c, 2, &ls);
    assert_true(isnan(ls.entropy) && isnan(ls.cv) && isnan(ls.maxvio) && isnan(ls.gini));
    assert_int_equal(ls.n_unused, 2);
}

/* ---- the small routes table ------------------------------------------ */

/* 2 layers × 4 experts, top-2, one run:
**   row pos tok  split  L0      L1
**    0   0   7  prompt {0,1}   {2,3}
**    1   1   7  prompt {0,2}   {2,0}
**    2   2   9  gen    {1,0}   {3,2}
**    3   3   7  gen    {0,1}   {3,1}
** weights: every first choice 0.75, second 0.25. */
static AnRoutes *small_table(void)
{
    static const int32_t ex[4][2][2] = {
        { { 0, 1 }, { 2, 3 } }, { { 0, 2 }, { 2, 0 } },
        { { 1, 0 }, { 3, 2 } }, { { 0, 1 }, { 3, 1 } },
    };
    static const int32_t tok[4] = { 7, 7, 9, 7 };
    static const float w[2] = { 0.75f, 0.25f };
    AnErr err;
    AnRoutes *r = an_routes_new(2, 4, 2, 0, AN_GATE_SOFTMAX, 0, &err);
    assert_non_null(r);
    for (int i = 0; i < 4; i++) {
        int64_t row = an_routes_add_pos(r, 0, i, tok[i], i < 2, i < 2 ? NAN : -1.0f * i, &err);
        assert_int_equal(row, i);
        for (int l = 0; l < 2; l++)
            assert_int_equal(an_routes_set(r, row, l, 2, ex[i][l], w, NULL, &err), AN_OK);
    }
    return r;
}

static void test_load_small_table_counts_match_hand(void **st)
{
    (void)st;
    AnErr err;
    AnRoutes *r = small_table();
    AnLoad *ld = an_load_from_routes(r, -1, &err);
    assert_non_null(ld);
    /* all, L0: e0 rows 0,1,2,3 = 4; e1 rows 0,2,3 = 3; e2 row 1 = 1; e3 0
    ** all, L1: e0 row 1; e1 row 3; e2 rows 0,1,2 = 3; e3 rows 0,2,3 = 3
    ** prompt L0 (rows 0,1): e0 2, e1 1, e2 1;  gen L0 (rows 2,3): e0 2, e1 2 */
    double got[16], want[16] = { 4, 3, 1, 0, 1, 1, 3, 3, 2, 1, 1, 0, 2, 2, 0, 0 };
    for (int i = 0; i < 8; i++)
        got[i] = (double)ld->count[i];
    for (int i = 0; i < 4; i++) {
        got[8 + i] = (double)ld->count[1 * 8 + i];  /* prompt, L0 */
        got[12 + i] = (double)ld->count[2 * 8 + i]; /* gen, L0 */
    }
    near_arr(got, want, 16, 0, "load counts");
    /* mass L0 e0: first choice in rows 0,1,3 (0.75 each), second in row 2
    ** (0.25) = 2.5; e1: 0.25 + 0.75 + 0.25 = 1.25 */
    near(ld->mass[0], 2.5, 1e-6, "mass L0 e0");
    near(ld->mass[1], 1.25, 1e-6, "mass L0 e1");
    assert_int_equal(ld->n_pos[AN_SPLIT_ALL], 4);
    assert_int_equal(ld->n_pos[AN_SPLIT_PROMPT], 2);
    assert_int_equal(ld->n_routed[1], 4);
    an_load_free(ld);
    an_routes_free(r);
}

static void test_pairs_small_table_coact_and_transitions_match_hand(void **st)
{
    (void)st;
    AnErr err;
    AnRoutes *r = small_table();
    double C[16], T[16], P[16];
    assert_int_equal(an_coact(r, AN_SPLIT_ALL, 0, C, &err), AN_OK);
    /* L0 sets {0,1} {0,2} {1,0} {0,1}:
    **   C00 4, C01 3 (rows 0,2,3), C02 1, C11 3, C12 0, C22 1, row/col 3 zero */
    double wantC[16] = { 4, 3, 1, 0, 3, 3, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0 };
    near_arr(C, wantC, 16, 0, "coact L0");
    /* P(1|0) = 3/4, P(0|1) = 3/3, P(0|2) = 1/1, P(·|3) undefined */
    an_cond_prob(C, 4, P);
    near(P[0 * 4 + 1], 0.75, 1e-12, "P(1|0)");
    near(P[1 * 4 + 0], 1.0, 1e-12, "P(0|1)");
    assert_true(isnan(P[3 * 4 + 0]));
    assert_int_equal(an_transitions(r, AN_SPLIT_ALL, 0, T, &err), AN_OK);
    /* pairs (L0 expert, L1 expert) per row:
    **   row0 {0,1}×{2,3}: 02 03 12 13      row1 {0,2}×{2,0}: 02 00 22 20
    **   row2 {1,0}×{3,2}: 13 12 03 02      row3 {0,1}×{3,1}: 03 01 13 11
    **   T02 = 3, T03 = 3, T12 = 2, T13 = 3, T00 = T01 = T11 = T20 = T22 = 1 */
    double wantT[16] = { 1, 1, 3, 3, 0, 1, 2, 3, 1, 0, 1, 0, 0, 0, 0, 0 };
    near_arr(T, wantT, 16, 0, "transitions L0→L1");
    /* generated rows only (2,3): T: 13 12 03 02 | 03 01 13 11 */
    assert_int_equal(an_transitions(r, AN_SPLIT_GEN, 0, T, &err), AN_OK);
    double wantG[16] = { 0, 1, 1, 2, 0, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0 };
    near_arr(T, wantG, 16, 0, "transitions gen");
    /* bad layer for a transition is an argument error naming the range */
    assert_int_equal(an_transitions(r, AN_SPLIT_ALL, 1, T, &err), AN_E_ARG);
    assert_non_null(strstr(err.msg, "layer 1"));
    an_routes_free(r);
}

static void test_stats_small_table_specialization_matches_hand(void **st)
{
    (void)st;
    AnErr err;
    AnRoutes *r = small_table();
    AnStatsParams p = { .want_routes = 1, .want_pairs = 1, .min_occ = 3, .n_top_tok = 2 };
    AnStats *s = an_stats_compute(r, &p, &err);
    assert_non_null(s);
    /* token 7 (rows 0,1,3) is the only id seen >= 3 times.
    **   L0: e0 in all 3 → 3/3 = 1;  L1: e2 rows 0,1 and e3 rows 0,3 → 2/3
    ** prompt split: token 7 occurs twice (< 3) → undefined */
    const AnLayerStats *all0 = &s->layer[0], *all1 = &s->layer[1];
    near(all0->vocab_spec, 1.0, 1e-12, "spec L0");
    near(all1->vocab_spec, 2.0 / 3.0, 1e-12, "spec L1");
    assert_int_equal(all0->n_vocab_ids, 1);
    assert_true(isnan(s->layer[1 * 2 + 0].vocab_spec));
    /* top tokens of L1 expert 3 (all): token 7, N(7,3) = 2 of N(7) = 3 */
    const AnTopTok *t = s->top + ((size_t)(0 * 2 + 1) * 4 + 3) * 2;
    assert_int_equal(t[0].token, 7);
    assert_int_equal(t[0].count, 2);
    assert_int_equal(t[0].occ, 3);
    assert_int_equal(t[1].token, -1);
    /* co-activation for "all" is prompt + gen: C00 = 4 as by hand */
    near(s->coact[0], 4, 0, "stats coact all C00");
    /* no logits stored: router statistics undefined */
    assert_false(s->has_router);
    assert_true(isnan(all0->router_entropy));
    /* balance of L0 (counts 4,3,1,0): mean 2, MaxVio = 4/2 − 1 = 1 */
    near(all0->maxvio, 1.0, 1e-12, "maxvio L0");
    assert_int_equal(all0->n_unused, 1);
    an_stats_free(s);

    /* min_occ 1: token 9 (row 2) counts too: L1 {3,2} → 1/1;
    ** L1 mean = (2/3 + 1) / 2 = 0.833333 */
    p.min_occ = 1;
    s = an_stats_compute(r, &p, &err);
    assert_non_null(s);
    near(s->layer[1].vocab_spec, 5.0 / 6.0, 1e-12, "spec L1 min_occ 1");
    assert_int_equal(s->layer[1].n_vocab_ids, 2);
    an_stats_free(s);
    an_routes_free(r);
}

static void test_stats_router_entropy_softmax_and_sigmoid_match_hand(void **st)
{
    (void)st;
    AnErr err;
    AnRoutes *r = an_routes_new(1, 4, 1, 1, AN_GATE_SOFTMAX, 0, &err);
    assert_non_null(r);
    /* logits [0,0,0,0] → uniform: H = ln 4 = 1.386294, top-1 0.25
    ** logits [ln 3,0,0,0] → p = (1/2, 1/6, 1/6, 1/6):
    **   H = −(½ ln ½ + 3·(1/6) ln(1/6)) = 1.242453, top-1 0.5
    ** means: H = 1.314374, top-1 = 0.375 */
    float lg0[4] = { 0, 0, 0, 0 }, lg1[4] = { logf(3.0f), 0, 0, 0 };
    int32_t e0 = 0;
    float w = 1;
    an_routes_add_pos(r, 0, 0, 1, 1, NAN, &err);
    an_routes_add_pos(r, 0, 1, 2, 0, -0.5f, &err);
    assert_int_equal(an_routes_set(r, 0, 0, 1, &e0, &w, lg0, &err), AN_OK);
    assert_int_equal(an_routes_set(r, 1, 0, 1, &e0, &w, lg1, &err), AN_OK);
    AnStatsParams p = { .want_routes = 1 };
    AnStats *s = an_stats_compute(r, &p, &err);
    assert_non_null(s);
    double got[6] = { s->layer[0].router_entropy, s->layer[0].top1_prob,
                      s->layer[1].router_entropy, s->layer[1].top1_prob,
                      s->layer[2].router_entropy, s->layer[2].top1_prob };
    double want[6] = { 1.3143738430, 0.375, 1.3862943611, 0.25, 1.2424533249, 0.5 };
    near_arr(got, want, 6, 1e-6, "router entropy / top-1 (all, prompt, gen)");
    an_stats_free(s);
    an_routes_free(r);

    /* sigmoid gating, logits [0, 0]: σ = ½ each, normalised ½ ½ → H = ln 2 */
    r = an_routes_new(1, 2, 1, 1, AN_GATE_SIGMOID, 0, &err);
    float lg[2] = { 0, 0 };
    an_routes_add_pos(r, 0, 0, 1, 0, NAN, &err);
    assert_int_equal(an_routes_set(r, 0, 0, 1, &e0, &w, lg, &err), AN_OK);
    s = an_stats_compute(r, &p, &err);
    assert_non_null(s);
    near(s->layer[0].router_entropy, log(2.0), 1e-9, "sigmoid H");
    near(s->layer[0].top1_prob, 0.5, 1e-9, "sigmoid top-1");
    an_stats_free(s);
    an_routes_free(r);
}

static void test_stats_k_equals_n_expert_is_even_and_fully_coactive(void **st)
{
    (void)st;
    AnErr err;
    AnRoutes *r = an_routes_new(2, 3, 3, 0, AN_GATE_SOFTMAX, 0, &err);
    int32_t ex[3] = { 2, 0, 1 };
    for (int i = 0; i < 12; i++) {
        an_routes_add_pos(r, 0, i, 5, i < 4, NAN, &err);
        for (int l = 0; l < 2; l++)
            assert_int_equal(an_routes_set(r, i, l, 3, ex, NULL, NULL, &err), AN_OK);
    }
    AnStats *s = an_stats_compute(r, NULL, &err);
    assert_non_null(s);
    /* every expert chosen by all 12 positions: even load, nothing unused,
    ** C[a][b] = 12 for every pair, token 5 (12 ≥ 10 times) goes to every
    ** expert every time → specialization 12/12 = 1 */
    double got[5] = { s->layer[0].entropy, s->layer[0].gini, s->layer[0].cv,
                      s->coact[0 * 9 + 1 * 3 + 2], s->layer[1].vocab_spec };
    double want[5] = { 1, 0, 0, 12, 1 };
    near_arr(got, want, 5, 1e-12, "k = n_expert");
    assert_int_equal(s->layer[0].n_unused, 0);
    /* transitions: every pair 12 */
    near(s->trans[2 * 3 + 1], 12, 0, "transition 2→1");
    an_stats_free(s);
    an_routes_free(r);
}

static void test_stats_one_expert_layer_is_defined(void **st)
{
    (void)st;
    AnErr err;
    AnRoutes *r = an_routes_new(1, 1, 1, 0, AN_GATE_SOFTMAX, 0, &err);
    int32_t e = 0;
    for (int i = 0; i < 3; i++) {
        an_routes_add_pos(r, 0, i, i, 0, NAN, &err);
        an_routes_set(r, i, 0, 1, &e, NULL, NULL, &err);
    }
    AnStats *s = an_stats_compute(r, NULL, &err);
    assert_non_null(s);
    near(s->layer[0].entropy, 1, 0, "one-expert entropy");
    near(s->layer[0].maxvio, 0, 0, "one-expert maxvio");
    near(s->coact[0], 3, 0, "one-expert coact");
    /* no id seen 10 times: specialization undefined, not garbage */
    assert_true(isnan(s->layer[0].vocab_spec));
    an_stats_free(s);
    an_routes_free(r);
}

static void test_stats_empty_table_is_defined_and_prints_no_nan(void **st)
{
    (void)st;
    AnErr err;
    AnRoutes *r = an_routes_new(2, 4, 2, 1, AN_GATE_SOFTMAX, 0, &err);
    AnStats *s = an_stats_compute(r, NULL, &err);
    assert_non_null(s);
    assert_int_equal(s->load->n_pos[0], 0);
    assert_true(isnan(s->layer[0].entropy));
    assert_true(isnan(s->layer[0].router_entropy));
    assert_int_equal(s->layer[0].n_unused, 4);
    for (int fmt = AN_FMT_TABLE; fmt <= AN_FMT_JSON; fmt++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        assert_int_equal(an_write_stats(f, s, (AnFormat)fmt, NULL), 0);
        fclose(f);
        assert_null(strstr(buf, "nan"));
        assert_null(strstr(buf, "inf"));
        if (fmt == AN_FMT_JSON)
            assert_non_null(strstr(buf, "\"entropy\":null"));
        if (fmt == AN_FMT_TABLE)
            assert_non_null(strstr(buf, " -"));
        free(buf);
    }
    an_stats_free(s);
    /* diff of two empty runs: nothing diverges */
    AnRoutes *r2 = an_routes_new(2, 4, 2, 0, AN_GATE_SOFTMAX, 0, &err);
    AnDiff *d = an_diff(r, r2, &err);
    assert_non_null(d);
    assert_int_equal(d->first_div, -1);
    assert_true(isnan(d->lp_mean_delta));
    an_diff_free(d);
    an_routes_free(r2);
    an_routes_free(r);
}

static void test_routes_bad_expert_is_rejected_with_message(void **st)
{
    (void)st;
    AnErr err;
    AnRoutes *r = an_routes_new(1, 4, 2, 0, AN_GATE_SOFTMAX, 0, &err);
    an_routes_add_pos(r, 0, 0, 1, 1, NAN, &err);
    int32_t bad[2] = { 1, 4 }, dup[2] = { 2, 2 };
    assert_int_equal(an_routes_set(r, 0, 0, 2, bad, NULL, NULL, &err), AN_E_DATA);
    assert_non_null(strstr(err.msg, "expert 4"));
    assert_int_equal(an_routes_set(r, 0, 0, 2, dup, NULL, NULL, &err), AN_E_DATA);
    assert_non_null(strstr(err.msg, "twice"));
    assert_null(an_routes_new(0, 4, 2, 0, AN_GATE_SOFTMAX, 0, &err));
    assert_non_null(strstr(err.msg, "n_layer 0"));
    an_routes_free(r);
}

static void test_routes_wider_route_widens_table_and_keeps_rows(void **st)
{
    (void)st;
    AnErr err;
    /* k_max 1, then a row with 3 experts (a top-k override): the table
    ** re-lays its arrays with stride 3 and row 0 keeps its single expert */
    AnRoutes *r = an_routes_new(2, 4, 1, 0, AN_GATE_SOFTMAX, 0, &err);
    int32_t one = 2, three[3] = { 3, 0, 1 };
    float w1 = 1.0f, w3[3] = { 0.5f, 0.3f, 0.2f };
    an_routes_add_pos(r, 0, 0, 1, 1, NAN, &err);
    an_routes_add_pos(r, 0, 1, 1, 0, NAN, &err);
    assert_int_equal(an_routes_set(r, 0, 1, 1, &one, &w1, NULL, &err), AN_OK);
    assert_int_equal(an_routes_set(r, 1, 0, 3, three, w3, NULL, &err), AN_OK);
    assert_int_equal(r->k_max, 3);
    assert_int_equal(r->experts[(0 * 2 + 1) * 3], 2);
    assert_int_equal(r->experts[(1 * 2 + 0) * 3 + 2], 1);
    near(r->weights[(1 * 2 + 0) * 3 + 1], 0.3, 1e-7, "widened weight");
    /* loads see both: layer 0 e3 e0 e1 once; layer 1 e2 once */
    AnLoad *ld = an_load_from_routes(r, -1, &err);
    assert_int_equal(ld->count[0 * 4 + 3], 1);
    assert_int_equal(ld->count[1 * 4 + 2], 1);
    an_load_free(ld);
    /* more experts than exist is still an error */
    int32_t five[5] = { 0, 1, 2, 3, 0 };
    assert_int_equal(an_routes_set(r, 0, 0, 5, five, NULL, NULL, &err), AN_E_DATA);
    an_routes_free(r);
}

static void test_stats_large_table_specialization_matches_brute_force(void **st)
{
    (void)st;
    /* 70000 positions (the size where the pass is split over two threads),
    ** 4 layers × 6 experts, top-2, 50 token ids: compare with a direct
    ** count N[x][l][e] in the test */
    enum { NP = 70000, NL = 4, NE = 6, NV = 50 };
    static int32_t N[NV][NL][NE], occ[NV];
    memset(N, 0, sizeof N);
    memset(occ, 0, sizeof occ);
    AnErr err;
    AnRoutes *r = an_routes_new(NL, NE, 2, 0, AN_GATE_SOFTMAX, NP, &err);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < NP; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int32_t tok = (int32_t)(x % NV);
        an_routes_add_pos(r, 0, i, tok, 0, NAN, &err);
        occ[tok]++;
        for (int l = 0; l < NL; l++) {
            int32_t ex[2] = { (int32_t)((tok + l + (x >> 20) % 2) % NE), 0 };
            ex[1] = (ex[0] + 1 + (int32_t)((x >> 30) % (NE - 1))) % NE;
            assert_int_equal(an_routes_set(r, i, l, 2, ex, NULL, NULL, &err), AN_OK);
            N[tok][l][ex[0]]++;
            N[tok][l][ex[1]]++;
        }
    }
    AnStatsParams p = { .want_routes = 1, .n_top_tok = 1 };
    AnStats *s = an_stats_compute(r, &p, &err);
    assert_non_null(s);
    double got[NL], want[NL];
    for (int l = 0; l < NL; l++) {
        double sum = 0;
        for (int v = 0; v < NV; v++) {
            int mx = 0;
            for (int e = 0; e < NE; e++)
                mx = N[v][l][e] > mx ? N[v][l][e] : mx;
            sum += (double)mx / occ[v];
        }
        want[l] = sum / NV;
        got[l] = s->layer[l].vocab_spec;
        assert_int_equal(s->layer[l].n_vocab_ids, NV);
    }
    near_arr(got, want, NL, 1e-12, "specialization vs brute force");
    /* top token of layer 3, expert 0: the id with the largest N/occ */
    int best = -1;
    double bs = -1;
    for (int v = 0; v < NV; v++) {
        double sh = (double)N[v][3][0] / occ[v];
        if (sh > bs + 1e-12) {
            bs = sh;
            best = v;
        }
    }
    const AnTopTok *t = s->top + (size_t)(3 * NE + 0);
    assert_int_equal(t->token, best);
    an_stats_free(s);
    an_routes_free(r);
}

static void test_stats_many_experts_use_wide_path_and_match_hand(void **st)
{
    (void)st;
    AnErr err;
    /* 300 experts (ids don't fit a byte): token 7 ten times, routed to
    ** {299, 0} and {299, 1} alternately → N(7,299) = 10 → specialization
    ** 10/10 = 1; N(7,0) = N(7,1) = 5 → share .5 for experts 0 and 1 */
    AnRoutes *r = an_routes_new(1, 300, 2, 0, AN_GATE_SOFTMAX, 0, &err);
    for (int i = 0; i < 10; i++) {
        int32_t ex[2] = { 299, i % 2 };
        an_routes_add_pos(r, 0, i, 7, 0, NAN, &err);
        assert_int_equal(an_routes_set(r, i, 0, 2, ex, NULL, NULL, &err), AN_OK);
    }
    AnStatsParams p = { .want_routes = 1, .n_top_tok = 1 };
    AnStats *s = an_stats_compute(r, &p, &err);
    assert_non_null(s);
    near(s->layer[0].vocab_spec, 1.0, 0, "specialization, 300 experts");
    assert_int_equal(s->top[299].token, 7);
    near(s->top[1].share, 0.5, 1e-7, "share expert 1");
    assert_int_equal(s->layer[0].n_unused, 297);
    an_stats_free(s);
    an_routes_free(r);
}

/* ---- contrast --------------------------------------------------------- */

/* One layer, two experts, top-1, 10 positions per run:
**   A: a1 e0 8 e1 2;  a2 e0 6 e1 4        B: b1 e0 2 e1 8;  b2 e0 4 e1 6 */
static AnLoad *run_load(int64_t c0, int64_t c1, int64_t n)
{
    AnLoad *ld = an_load_new(1, 2, NULL);
    ld->n_pos[0] = ld->n_pos[2] = n;
    ld->n_routed[0] = ld->n_routed[2] = n;
    ld->count[0] = ld->count[4] = c0;
    ld->count[1] = ld->count[5] = c1;
    return ld;
}

static void test_contrast_two_sets_match_hand_values(void **st)
{
    (void)st;
    AnErr err;
    AnLoad *a[2] = { run_load(8, 2, 10), run_load(6, 4, 10) };
    AnLoad *b[2] = { run_load(2, 8, 10), run_load(4, 6, 10) };
    AnContrastParams p = { .split = AN_SPLIT_ALL, .n_perm = 20000, .seed = 42 };
    AnContrast *c = an_contrast((const AnLoad *const *)a, 2, (const AnLoad *const *)b, 2, &p, &err);
    assert_non_null(c);
    assert_int_equal(c->n_row, 2);
    /* e0: pA = 14/20 = .7, pB = 6/20 = .3, Δ = .4
    ** Wilson(.7, 20) = [.481027, .854523], Wilson(.3, 20) = [.145477, .518973]
    ** Newcombe: Δ − √((.7−.481027)² + (.518973−.3)²) = .090326
    **           Δ + √((.854523−.7)² + (.3−.145477)²) = .618528
    ** LOR = ln(14.5·14.5 / (6.5·6.5)) = 1.604693,
    **   SE = √(2/14.5 + 2/6.5) = .667550, CI 1.604693 ± 1.959964·SE
    ** permutations: of the 6 ways to split 4 runs 2/2, Δ* ∈ {.4, −.4, 0, .2,
    **   −.2, 0}: |Δ*| ≥ .4 in 2 of 6 → p → 1/3 */
    const AnContrastRow *w = c->row[0].expert == 0 ? &c->row[0] : &c->row[1];
    double got[8] = { w->p_a, w->p_b, w->delta, w->delta_lo, w->delta_hi,
                      w->lor, w->lor_lo, w->lor_hi };
    double want[8] = { .7, .3, .4, .0903256705, .6185281760, 1.6046929450, .2963184885,
                       2.9130674016 };
    near_arr(got, want, 8, 1e-8, "contrast e0");
    near(w->p_value, 1.0 / 3.0, 0.01, "permutation p e0");
    /* e1 mirrors e0: Δ = −.4, the same |Δ| and p; BH over 2 equal p: q = p */
    const AnContrastRow *v = w == &c->row[0] ? &c->row[1] : &c->row[0];
    near(v->delta, -.4, 1e-12, "delta e1");
    near(v->p_value, w->p_value, 0, "p e1 = p e0");
    near(v->q_value, v->p_value, 1e-12, "q e1");
    /* interventions: only Δ > 0 rows, i.e. 0:0 */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(an_contrast_interventions(c, 5, 0, NULL, f), 1);
    int lay[1] = { 3 };
    assert_int_equal(an_contrast_interventions(c, 5, 1, lay, f), 1);
    fclose(f);
    assert_string_equal(buf, "--disable 0:0\n--force 3:0\n");
    free(buf);
    /* same seed → same p */
    AnContrast *c2 = an_contrast((const AnLoad *const *)a, 2, (const AnLoad *const *)b, 2, &p, &err);
    near(c2->row[0].p_value, c->row[0].p_value, 0, "reproducible p");
    an_contrast_free(c2);
    an_contrast_free(c);
    for (int i = 0; i < 2; i++) {
        an_load_free(a[i]);
        an_load_free(b[i]);
    }
}

static void test_contrast_unequal_set_sizes_permute_both_ways(void **st)
{
    (void)st;
    AnErr err;
    /* A: three runs with e0 5 of 10; B: one run with e0 9 of 10.
    **   Δ = 15/30 − 9/10 = −.4.  A permutation picks which run is "B":
    **   the 9-run (1 in 4) gives Δ* = −.4, a 5-run gives 19/30 − 5/10 = .1333
    **   → p → 1/4.  Swapping the sets flips Δ and keeps p (the smaller side
    **   is summed on the other branch). */
    AnLoad *a[3] = { run_load(5, 5, 10), run_load(5, 5, 10), run_load(5, 5, 10) };
    AnLoad *b[1] = { run_load(9, 1, 10) };
    AnContrastParams p = { .n_perm = 20000, .seed = 9 };
    AnContrast *c = an_contrast((const AnLoad *const *)a, 3, (const AnLoad *const *)b, 1, &p, &err);
    AnContrast *d = an_contrast((const AnLoad *const *)b, 1, (const AnLoad *const *)a, 3, &p, &err);
    assert_non_null(c);
    assert_non_null(d);
    const AnContrastRow *wc = c->row[0].expert == 0 ? &c->row[0] : &c->row[1];
    const AnContrastRow *wd = d->row[0].expert == 0 ? &d->row[0] : &d->row[1];
    near(wc->delta, -0.4, 1e-12, "delta A(3) vs B(1)");
    near(wd->delta, 0.4, 1e-12, "delta A(1) vs B(3)");
    near(wc->p_value, 0.25, 0.015, "p A(3) vs B(1)");
    near(wd->p_value, 0.25, 0.01, "p A(1) vs B(3)");
    an_contrast_free(c);
    an_contrast_free(d);
    for (int i = 0; i < 3; i++)
        an_load_free(a[i]);
    an_load_free(b[0]);
}

static void test_contrast_identical_sets_give_zero_delta_and_p_one(void **st)
{
    (void)st;
    AnErr err;
    AnLoad *a[2] = { run_load(8, 2, 10), run_load(6, 4, 10) };
    AnContrastParams p = { .n_perm = 200, .seed = 1 };
    AnContrast *c = an_contrast((const AnLoad *const *)a, 2, (const AnLoad *const *)a, 2, &p, &err);
    assert_non_null(c);
    for (int i = 0; i < c->n_row; i++) {
        near(c->row[i].delta, 0, 0, "delta identical");
        near(c->row[i].lor, 0, 1e-12, "lor identical");
        near(c->row[i].p_value, 1, 0, "p identical");
        near(c->row[i].q_value, 1, 0, "q identical");
    }
    an_contrast_free(c);
    an_load_free(a[0]);
    an_load_free(a[1]);
}

static void test_contrast_zero_counts_and_min_count_threshold(void **st)
{
    (void)st;
    AnErr err;
    /* expert 1 never chosen in either set: pA = pB = 0, Δ = 0,
    ** Wilson(0, 20) = [0, .161125] → Newcombe CI [−.161125, .161125],
    ** LOR = ln(.5·20.5 / (20.5·.5)) = 0, p = 1 */
    AnLoad *a[1] = { run_load(20, 0, 20) };
    AnLoad *b[1] = { run_load(20, 0, 20) };
    AnContrastParams p = { .n_perm = 50, .seed = 7 };
    AnContrast *c = an_contrast((const AnLoad *const *)a, 1, (const AnLoad *const *)b, 1, &p, &err);
    assert_non_null(c);
    assert_int_equal(c->n_row, 2);
    const AnContrastRow *z = c->row[0].expert == 1 ? &c->row[0] : &c->row[1];
    double got[5] = { z->delta, z->delta_lo, z->delta_hi, z->lor, z->p_value };
    double want[5] = { 0, -.1611251581, .1611251581, 0, 1 };
    near_arr(got, want, 5, 1e-8, "zero-count row");
    an_contrast_free(c);
    /* min count 1 drops the never-chosen expert */
    p.min_count = 1;
    c = an_contrast((const AnLoad *const *)a, 1, (const AnLoad *const *)b, 1, &p, &err);
    assert_int_equal(c->n_row, 1);
    assert_int_equal(c->row[0].expert, 0);
    an_contrast_free(c);
    /* empty set B is an error naming the set */
    assert_null(an_contrast((const AnLoad *const *)a, 1, NULL, 0, &p, &err));
    assert_non_null(strstr(err.msg, "set B"));
    /* runs without positions: nothing testable, output still defined */
    AnLoad *e[1] = { an_load_new(1, 2, NULL) };
    c = an_contrast((const AnLoad *const *)e, 1, (const AnLoad *const *)e, 1, &p, &err);
    assert_non_null(c);
    assert_int_equal(c->n_row, 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(an_write_contrast(f, c, 10, AN_FMT_TABLE, NULL), 0);
    fclose(f);
    assert_non_null(strstr(buf, "no layer×expert"));
    free(buf);
    an_contrast_free(c);
    an_load_free(e[0]);
    an_load_free(a[0]);
    an_load_free(b[0]);
}

static void test_bh_known_pvalues_match_hand(void **st)
{
    (void)st;
    /* p = .01 .04 .03 .20, m = 4; ascending .01 .03 .04 .20:
    **   raw p·m/rank = .04 .06 .053333 .20; running min from the top:
    **   .20 → .053333 → .053333 → .04  (back in input order below) */
    double p[4] = { .01, .04, .03, .20 }, q[4];
    assert_int_equal(an_bh(p, 4, q, NULL), AN_OK);
    double want[4] = { .04, .0533333333, .0533333333, .20 };
    near_arr(q, want, 4, 1e-9, "BH q");
}

/* ---- diff ------------------------------------------------------------- */

static void test_diff_two_runs_match_hand(void **st)
{
    (void)st;
    AnErr err;
    /* 1 layer, 3 experts, top-2.
    **   pos  A tok/set/lp      B tok/set/lp     prompt
    **    0   1 {0,1}  -        1 {1,0}  -       yes   same set (order differs)
    **    1   2 {0,1}  -        2 {0,2}  -       yes   changed
    **    2   3 {1,2} -1.0      3 {1,2} -1.5     no    same; Δlp = −0.5
    **    3   4 {0,2} -2.0      5 {1,2} -0.5     no    tokens differ: first divergence
    ** common prefix 3; changed: prompt 1/2, gen 0/1, all 1/3
    ** load A: e0 3 (rows 0,1,3), e1 3 (0,1,2), e2 2 (2,3)
    **      B: e0 2 (0,1),       e1 3 (0,2,3), e2 3 (1,2,3) → A − B = +1, 0, −1 */
    static const int32_t sa[4][2] = { { 0, 1 }, { 0, 1 }, { 1, 2 }, { 0, 2 } };
    static const int32_t sb[4][2] = { { 1, 0 }, { 0, 2 }, { 1, 2 }, { 1, 2 } };
    int32_t ta[4] = { 1, 2, 3, 4 }, tb[4] = { 1, 2, 3, 5 };
    float la[4] = { NAN, NAN, -1.0f, -2.0f }, lb[4] = { NAN, NAN, -1.5f, -0.5f };
    AnRoutes *a = an_routes_new(1, 3, 2, 0, AN_GATE_SOFTMAX, 0, &err);
    AnRoutes *b = an_routes_new(1, 3, 2, 0, AN_GATE_SOFTMAX, 0, &err);
    for (int i = 0; i < 4; i++) {
        an_routes_add_pos(a, 0, i, ta[i], i < 2, la[i], &err);
        an_routes_add_pos(b, 0, i, tb[i], i < 2, lb[i], &err);
        an_routes_set(a, i, 0, 2, sa[i], NULL, NULL, &err);
        an_routes_set(b, i, 0, 2, sb[i], NULL, NULL, &err);
    }
    AnDiff *d = an_diff(a, b, &err);
    assert_non_null(d);
    assert_int_equal(d->n_common, 3);
    assert_int_equal(d->first_div, 3);
    assert_int_equal(d->div_in_prompt, 0);
    assert_int_equal(d->tok_a, 4);
    assert_int_equal(d->tok_b, 5);
    double got[12] = { (double)d->n_changed[0], (double)d->n_cmp[0], (double)d->n_changed[1],
                       (double)d->n_cmp[1], (double)d->n_changed[2], (double)d->n_cmp[2],
                       d->lp_mean_delta, d->lp_max_abs, (double)d->load_delta[0],
                       (double)d->load_delta[1], (double)d->load_delta[2], d->lp_b };
    double want[12] = { 1, 3, 1, 2, 0, 1, -0.5, 0.5, 1, 0, -1, -0.5 };
    near_arr(got, want, 12, 1e-6, "diff");
    /* a run against itself: no divergence, nothing changed */
    AnDiff *same = an_diff(a, a, &err);
    assert_int_equal(same->first_div, -1);
    assert_int_equal(same->n_changed[0], 0);
    near(same->lp_mean_delta, 0, 0, "self lp delta");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(an_write_diff(f, d, AN_FMT_JSON, NULL), 0);
    fclose(f);
    assert_non_null(strstr(buf, "\"first_divergence\":{\"pos\":3"));
    assert_null(strstr(buf, "nan"));
    free(buf);
    an_diff_free(same);
    an_diff_free(d);
    an_routes_free(a);
    an_routes_free(b);
}

/* ---- writers ---------------------------------------------------------- */

static void test_write_stats_csv_has_tidy_rows(void **st)
{
    (void)st;
    AnErr err;
    AnRoutes *r = small_table();
    AnStats *s = an_stats_compute(r, NULL, &err);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int lay[2] = { 1, 3 };
    AnLabels lb = { .layer_of = lay };
    assert_int_equal(an_write_stats(f, s, AN_FMT_CSV, &lb), 0);
    fclose(f);
    assert_true(!strncmp(buf, "table,split,layer,i,j,metric,value\n", 35));
    /* layer 0 is printed as absolute layer 1; count of expert 0 = 4 */
    assert_non_null(strstr(buf, "load,all,1,0,,count,4\n"));
    assert_non_null(strstr(buf, "coact,all,1,0,1,p_b_given_a,0.75\n"));
    assert_non_null(strstr(buf, "transition,all,1,0,2,count,3\n"));
    assert_null(strstr(buf, "nan"));
    free(buf);
    an_stats_free(s);
    an_routes_free(r);
}

static void test_format_parse_known_and_unknown(void **st)
{
    (void)st;
    assert_int_equal(an_format_parse("table"), AN_FMT_TABLE);
    assert_int_equal(an_format_parse("csv"), AN_FMT_CSV);
    assert_int_equal(an_format_parse("json"), AN_FMT_JSON);
    assert_int_equal(an_format_parse("xml"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_balance_skewed_load_matches_hand_values),
        cmocka_unit_test(test_balance_even_load_is_perfect),
        cmocka_unit_test(test_balance_one_expert_is_even),
        cmocka_unit_test(test_balance_no_tokens_gives_nan_not_crash),
        cmocka_unit_test(test_load_small_table_counts_match_hand),
        cmocka_unit_test(test_pairs_small_table_coact_and_transitions_match_hand),
        cmocka_unit_test(test_stats_small_table_specialization_matches_hand),
        cmocka_unit_test(test_stats_router_entropy_softmax_and_sigmoid_match_hand),
        cmocka_unit_test(test_stats_k_equals_n_expert_is_even_and_fully_coactive),
        cmocka_unit_test(test_stats_one_expert_layer_is_defined),
        cmocka_unit_test(test_stats_large_table_specialization_matches_brute_force),
        cmocka_unit_test(test_stats_many_experts_use_wide_path_and_match_hand),
        cmocka_unit_test(test_stats_empty_table_is_defined_and_prints_no_nan),
        cmocka_unit_test(test_routes_bad_expert_is_rejected_with_message),
        cmocka_unit_test(test_routes_wider_route_widens_table_and_keeps_rows),
        cmocka_unit_test(test_contrast_two_sets_match_hand_values),
        cmocka_unit_test(test_contrast_unequal_set_sizes_permute_both_ways),
        cmocka_unit_test(test_contrast_identical_sets_give_zero_delta_and_p_one),
        cmocka_unit_test(test_contrast_zero_counts_and_min_count_threshold),
        cmocka_unit_test(test_bh_known_pvalues_match_hand),
        cmocka_unit_test(test_diff_two_runs_match_hand),
        cmocka_unit_test(test_write_stats_csv_has_tidy_rows),
        cmocka_unit_test(test_format_parse_known_and_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
