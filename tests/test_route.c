/*
** tests/test_route.c — interventions (DESIGN.md "Routing and interventions")
** and sampling, on the fixture models.
**
** Layer 0's router input does not depend on any routing decision, so its
** expected routes under an intervention follow from llama.cpp's reference
** router logits by hand: that is what these tests compute and compare.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>

#include "engine/eng.h"
#include "tests/ref.h"

#define FX "tests/data/fixtures/"
#define MAXP 64

typedef struct {
    int seen, k;
    int32_t experts[16];
    float weights[16], scores[16];
} Cap;

static Cap cap[MAXP][REF_MAX_LAYERS];

static void on_route(void *u, const EngRoute *r)
{
    (void)u;
    if (r->pos >= MAXP)
        return;
    Cap *c = &cap[r->pos][r->layer];
    c->seen = 1;
    c->k = r->k;
    for (int j = 0; j < r->k && j < 16; j++) {
        c->experts[j] = r->experts[j];
        c->weights[j] = r->weights[j];
        c->scores[j] = r->scores[j];
    }
}

typedef struct {
    EngModel *m;
    Ref *ref;
} Fx;

static Fx open_fx(const char *name, const char *file)
{
    char p[256];
    Fx f;
    EngErr err = { 0 };
    snprintf(p, sizeof p, FX "%s/%s", name, file);
    f.m = eng_model_open(p, &err);
    if (!f.m)
        fail_msg("%s", err.msg);
    snprintf(p, sizeof p, FX "%s/ref.txt", name);
    f.ref = ref_load(p);
    assert_non_null(f.ref);
    return f;
}

static void close_fx(Fx *f)
{
    eng_model_close(f->m);
    free(f->ref);
}

/* Evaluate case ci's prompt (then n_gen greedy tokens) with ivs; routes land
** in cap[][], the final logits in *logits_out (n_vocab, may be NULL). */
static void eval(Fx *f, int ci, const EngIv *ivs, int n_ivs, int n_gen, float *logits_out)
{
    EngErr err = { 0 };
    EngCtxParams cp = { .n_ctx = 256, .n_threads = 2, .n_batch = 64 };
    EngCtx *c = eng_ctx_new(f->m, &cp, &err);
    assert_non_null(c);
    memset(cap, 0, sizeof cap);
    eng_ctx_set_route_fn(c, on_route, NULL);
    assert_int_equal(eng_ctx_set_ivs(c, ivs, n_ivs, &err), ENG_OK);
    RefCase *rc = &f->ref->cases[ci];
    int32_t t[REF_MAX_TOK];
    for (int i = 0; i < rc->n_tokens; i++)
        t[i] = rc->tokens[i];
    assert_int_equal(eng_decode(c, t, rc->n_tokens, 1, NULL, &err), ENG_OK);
    int V = eng_model_info(f->m)->n_vocab;
    for (int g = 0; g < n_gen; g++) {
        const float *l = eng_ctx_logits(c);
        int32_t b = 0;
        for (int v = 1; v < V; v++)
            if (l[v] > l[b])
                b = v;
        assert_int_equal(eng_decode(c, &b, 1, 0, NULL, &err), ENG_OK);
    }
    if (logits_out)
        memcpy(logits_out, eng_ctx_logits(c), (size_t)V * sizeof(float));
    eng_ctx_free(c);
}

static int has(const Cap *c, int e)
{
    for (int j = 0; j < c->k; j++)
        if (c->experts[j] == e)
            return 1;
    return 0;
}

/* ---- bias 0 is the identity, bit for bit ------------------------------ */

static void check_bias_zero(const char *name, const char *file)
{
    Fx f = open_fx(name, file);
    const EngInfo *I = eng_model_info(f.m);
    int V = I->n_vocab;
    float *a = malloc((size_t)V * 4), *b = malloc((size_t)V * 4);
    static Cap base[MAXP][REF_MAX_LAYERS];
    eval(&f, 0, NULL, 0, 4, a);
    memcpy(base, cap, sizeof cap);
    EngIv ivs[64];
    int n = 0;
    for (int e = 0; e < I->n_expert; e++) {
        EngIv iv = { .kind = ENG_IV_BIAS, .layer = -1, .expert = e, .value = 0.0f };
        ivs[n++] = iv;
    }
    eval(&f, 0, ivs, n, 4, b);
    assert_memory_equal(a, b, (size_t)V * 4);
    assert_memory_equal(base, cap, sizeof cap);
    free(a);
    free(b);
    close_fx(&f);
}

static void test_bias_zero_mixtral_bit_identical(void **s) { (void)s; check_bias_zero("mixtral", "mixtral-f32.gguf"); }
static void test_bias_zero_deepseek2_bit_identical(void **s) { (void)s; check_bias_zero("deepseek2", "deepseek2-f32.gguf"); }
static void test_bias_zero_gptoss_bit_identical(void **s) { (void)s; check_bias_zero("gpt-oss", "gpt-oss-f32.gguf"); }

/* ---- disable: the next-best expert comes in, weights per the arch ------ */

/* Expected softmax-gated route at layer L with expert `dis` removed:
** the k best remaining logits; w = exp(l_j) / Z with Z over the remaining
** experts (olmoe, qwen2moe) or over the chosen ones (renormalising archs). */
static void check_disable_softmax(const char *name, const char *file, int renorm)
{
    Fx f = open_fx(name, file);
    const EngInfo *I = eng_model_info(f.m);
    int L = 0;
    while (!eng_layer_is_moe(f.m, L))
        L++;
    RefCase *rc = &f.ref->cases[0];
    /* disable the expert llama.cpp ranks first at position 1 */
    int dis = rc->route[1][L].experts[0];
    EngIv iv = { .kind = ENG_IV_DISABLE, .layer = L, .expert = dis };
    eval(&f, 0, &iv, 1, 0, NULL);
    int n_changed = 0;
    for (int p = 0; p < rc->n_tokens && p < MAXP; p++) {
        const float *l = rc->route[p][L].logits;
        int k = I->n_expert_used;
        int chosen[16];
        int used[64] = { 0 };
        used[dis] = 1;
        for (int j = 0; j < k; j++) {
            int b = -1;
            for (int e = 0; e < I->n_expert; e++)
                if (!used[e] && (b < 0 || l[e] > l[b]))
                    b = e;
            used[b] = 1;
            chosen[j] = b;
        }
        double mx = -1e30, z_all = 0, z_sel = 0;
        for (int e = 0; e < I->n_expert; e++)
            if (e != dis && l[e] > mx)
                mx = l[e];
        for (int e = 0; e < I->n_expert; e++)
            if (e != dis)
                z_all += exp(l[e] - mx);
        for (int j = 0; j < k; j++)
            z_sel += exp(l[chosen[j]] - mx);
        Cap *c = &cap[p][L];
        assert_int_equal(c->k, k);
        assert_false(has(c, dis));
        for (int j = 0; j < k; j++) {
            assert_int_equal(c->experts[j], chosen[j]);   /* descending order too */
            double w = exp(l[chosen[j]] - mx) / (renorm ? z_sel : z_all);
            if (!ref_close(c->weights[j], w, 1e-4, 1e-5))
                fail_msg("%s pos %d expert %d: weight %.7g, expected %.7g", name, p, chosen[j],
                         c->weights[j], w);
        }
        int was_there = 0;
        for (int j = 0; j < rc->route[p][L].k; j++)
            was_there |= rc->route[p][L].experts[j] == dis;
        n_changed += was_there;
    }
    assert_true(n_changed > 0);   /* the test did exercise a replacement */
    close_fx(&f);
}

static void test_disable_mixtral_next_best_renormalised(void **s) { (void)s; check_disable_softmax("mixtral", "mixtral-f32.gguf", 1); }
static void test_disable_olmoe_next_best_not_renormalised(void **s) { (void)s; check_disable_softmax("olmoe", "olmoe-f32.gguf", 0); }
static void test_disable_qwen3moe_next_best_renormalised(void **s) { (void)s; check_disable_softmax("qwen3moe", "qwen3moe-f32.gguf", 1); }

/* sigmoid gating (deepseek2): the disabled expert leaves selection and the
** normalisation; weights = sigmoid(l_j) / sum over chosen, times 2.5 */
static void test_disable_deepseek2_sigmoid_renormalised_scaled(void **s)
{
    (void)s;
    Fx f = open_fx("deepseek2", "deepseek2-f32.gguf");
    const EngInfo *I = eng_model_info(f.m);
    int L = I->n_dense_lead;
    RefCase *rc = &f.ref->cases[0];
    int dis = rc->route[1][L].experts[0];
    EngIv iv = { .kind = ENG_IV_DISABLE, .layer = L, .expert = dis };
    eval(&f, 0, &iv, 1, 0, NULL);
    for (int p = 0; p < rc->n_tokens && p < MAXP; p++) {
        Cap *c = &cap[p][L];
        assert_int_equal(c->k, I->n_expert_used);
        assert_false(has(c, dis));
        double sum = 0;
        for (int j = 0; j < c->k; j++)
            sum += 1.0 / (1.0 + exp(-rc->route[p][L].logits[c->experts[j]]));
        for (int j = 0; j < c->k; j++) {
            double w = 2.5 / (1.0 + exp(-rc->route[p][L].logits[c->experts[j]])) / sum;
            assert_true(ref_close(c->weights[j], w, 1e-4, 1e-5));
        }
        /* the selection score includes exp_probs_b: scores descend */
        for (int j = 1; j < c->k; j++)
            assert_true(c->scores[j - 1] >= c->scores[j]);
    }
    close_fx(&f);
}

/* ---- force and scopes -------------------------------------------------- */

static void test_force_every_position_in_scope_keeps_expert(void **s)
{
    (void)s;
    Fx f = open_fx("mixtral", "mixtral-f32.gguf");
    RefCase *rc = &f.ref->cases[0];
    /* an expert llama.cpp never picks at layer 1 position 0 */
    int e = 0;
    while (e == rc->route[0][1].experts[0] || e == rc->route[0][1].experts[1])
        e++;
    EngIv iv = { .kind = ENG_IV_FORCE, .layer = -1, .expert = e };
    eval(&f, 0, &iv, 1, 5, NULL);
    for (int p = 0; p < rc->n_tokens + 5 && p < MAXP; p++)
        for (int L = 0; L < 2; L++) {
            Cap *c = &cap[p][L];
            assert_true(c->seen);
            assert_int_equal(c->k, 2);
            assert_true(has(c, e));
        }
    close_fx(&f);
}

static void test_scope_gen_leaves_prompt_routes_unchanged(void **s)
{
    (void)s;
    Fx f = open_fx("olmoe", "olmoe-f32.gguf");
    static Cap base[MAXP][REF_MAX_LAYERS];
    eval(&f, 0, NULL, 0, 6, NULL);
    memcpy(base, cap, sizeof cap);
    int n = f.ref->cases[0].n_tokens;
    EngIv iv = { .kind = ENG_IV_FORCE, .layer = 1, .expert = 3, .scope = ENG_SCOPE_GEN };
    eval(&f, 0, &iv, 1, 6, NULL);
    assert_memory_equal(base, cap, (size_t)n * sizeof cap[0]);
    for (int p = n; p < n + 6; p++)
        assert_true(has(&cap[p][1], 3));
    /* from:T — positions before T unchanged, from T on forced */
    int T = 10;
    EngIv iv2 = { .kind = ENG_IV_FORCE, .layer = 1, .expert = 3, .scope = ENG_SCOPE_FROM, .from_pos = T };
    eval(&f, 0, &iv2, 1, 0, NULL);
    assert_memory_equal(base, cap, (size_t)T * sizeof cap[0]);
    for (int p = T; p < n; p++)
        assert_true(has(&cap[p][1], 3));
    /* prompt scope: generated positions free of it */
    EngIv iv3 = { .kind = ENG_IV_FORCE, .layer = 1, .expert = 3, .scope = ENG_SCOPE_PROMPT };
    eval(&f, 0, &iv3, 1, 3, NULL);
    for (int p = 0; p < n; p++)
        assert_true(has(&cap[p][1], 3));
    close_fx(&f);
}

/* ---- top-k and top-p ---------------------------------------------------- */

static void test_topk_all_experts_weights_sum_to_one(void **s)
{
    (void)s;
    Fx f = open_fx("mixtral", "mixtral-f32.gguf");
    EngIv iv = { .kind = ENG_IV_TOPK, .layer = -1, .value = 8 };
    eval(&f, 0, &iv, 1, 0, NULL);
    for (int p = 0; p < f.ref->cases[0].n_tokens; p++)
        for (int L = 0; L < 2; L++) {
            Cap *c = &cap[p][L];
            assert_int_equal(c->k, 8);
            double sum = 0;
            for (int j = 0; j < 8; j++)
                sum += c->weights[j];
            assert_true(fabs(sum - 1.0) < 1e-5);
        }
    close_fx(&f);
}

static void test_topp_small_p_routes_to_top1_only(void **s)
{
    (void)s;
    Fx f = open_fx("olmoe", "olmoe-f32.gguf");
    RefCase *rc = &f.ref->cases[0];
    EngIv iv = { .kind = ENG_IV_TOPP, .layer = 0, .value = 0.01f };
    eval(&f, 0, &iv, 1, 0, NULL);
    for (int p = 0; p < rc->n_tokens; p++) {
        assert_int_equal(cap[p][0].k, 1);
        assert_int_equal(cap[p][0].experts[0], rc->route[p][0].experts[0]);
    }
    /* p = 1 with a cap of 3: three experts each */
    EngIv iv2 = { .kind = ENG_IV_TOPP, .layer = 0, .value = 1.0f, .cap = 3 };
    eval(&f, 0, &iv2, 1, 0, NULL);
    for (int p = 0; p < rc->n_tokens; p++)
        assert_int_equal(cap[p][0].k, 3);
    close_fx(&f);
}

/* a large positive bias forces an expert in by the normal rule */
static void test_bias_large_brings_expert_in(void **s)
{
    (void)s;
    Fx f = open_fx("olmoe", "olmoe-f32.gguf");
    EngIv iv = { .kind = ENG_IV_BIAS, .layer = 0, .expert = 7, .value = 50.0f };
    eval(&f, 0, &iv, 1, 0, NULL);
    for (int p = 0; p < f.ref->cases[0].n_tokens; p++) {
        assert_int_equal(cap[p][0].experts[0], 7);
        assert_true(cap[p][0].weights[0] > 0.99f);   /* softmax mass all on it */
    }
    close_fx(&f);
}

/* ---- parsing and validation -------------------------------------------- */

static void test_iv_parse_bad_items_name_the_argument(void **s)
{
    (void)s;
    Fx f = open_fx("deepseek2", "deepseek2-f32.gguf");
    EngIv out[16];
    EngErr err = { 0 };
    assert_int_equal(eng_iv_parse(f.m, ENG_IV_DISABLE, "1:3,*:7", out, 16, &err), 2);
    assert_int_equal(out[0].layer, 1);
    assert_int_equal(out[0].expert, 3);
    assert_int_equal(out[1].layer, -1);
    assert_int_equal(out[1].expert, 7);
    assert_int_equal(eng_iv_parse(f.m, ENG_IV_BIAS, "2:1=-1.5", out, 16, &err), 1);
    assert_true(out[0].value == -1.5f);
    const char *bad[] = { "9:1", "1:8", "0:1", "x:1", "1:", "1:2,", "12", "1:2=3", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = 0;
        assert_int_equal(eng_iv_parse(f.m, ENG_IV_DISABLE, bad[i], out, 16, &err), -1);
        assert_true(strstr(err.msg, "--disable") != NULL);
    }
    assert_int_equal(eng_iv_parse(f.m, ENG_IV_DISABLE, "9:1", out, 16, &err), -1);
    assert_non_null(strstr(err.msg, "layer 9 out of range 0..2"));
    assert_int_equal(eng_iv_parse(f.m, ENG_IV_DISABLE, "0:1", out, 16, &err), -1);
    assert_non_null(strstr(err.msg, "dense"));
    assert_int_equal(eng_iv_parse(f.m, ENG_IV_BIAS, "1:2=nan", out, 16, &err), -1);
    EngScope sc;
    int from;
    assert_int_equal(eng_scope_parse("from:12", &sc, &from, &err), 0);
    assert_int_equal(sc, ENG_SCOPE_FROM);
    assert_int_equal(from, 12);
    assert_int_equal(eng_scope_parse("later", &sc, &from, &err), -1);
    /* force + disable of the same expert is refused */
    EngCtx *c = eng_ctx_new(f.m, NULL, &err);
    EngIv both[2] = { { .kind = ENG_IV_FORCE, .layer = 1, .expert = 2 },
                      { .kind = ENG_IV_DISABLE, .layer = 1, .expert = 2 } };
    assert_int_equal(eng_ctx_set_ivs(c, both, 2, &err), ENG_E_ARG);
    EngIv tk = { .kind = ENG_IV_TOPK, .layer = -1, .value = 9 };
    assert_int_equal(eng_ctx_set_ivs(c, &tk, 1, &err), ENG_E_ARG);
    eng_ctx_free(c);
    close_fx(&f);
}

/* ---- sampling ------------------------------------------------------------ */

static void test_sampler_same_seed_same_tokens(void **s)
{
    (void)s;
    enum { V = 1000 };
    static float logits[V];
    for (int i = 0; i < V; i++)
        logits[i] = (float)sin(i * 0.37) * 2.0f;
    EngSampleParams p = { .temp = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 42 };
    EngSampler a, b, c;
    eng_sampler_init(&a, &p, V);
    eng_sampler_init(&b, &p, V);
    p.seed = 43;
    eng_sampler_init(&c, &p, V);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        int32_t x = eng_sample(&a, logits), y = eng_sample(&b, logits), z = eng_sample(&c, logits);
        assert_int_equal(x, y);
        differ += x != z;
        assert_true(x >= 0 && x < V);
    }
    assert_true(differ > 50);
    eng_sampler_done(&a);
    eng_sampler_done(&b);
    eng_sampler_done(&c);
}

static void test_sampler_greedy_and_topk1_give_argmax(void **s)
{
    (void)s;
    float logits[6] = { 0.1f, 2.0f, 3.5f, 3.5f, -1.0f, 0.0f };
    EngSampleParams p = { .temp = 0.8f, .top_k = 1, .top_p = 1.0f, .seed = 7 };
    EngSampler a;
    eng_sampler_init(&a, &p, 6);
    for (int i = 0; i < 20; i++)
        assert_int_equal(eng_sample(&a, logits), 2);   /* tie: lower id */
    eng_sampler_done(&a);
    p.greedy = 1;
    eng_sampler_init(&a, &p, 6);
    assert_int_equal(eng_sample(&a, logits), 2);
    eng_sampler_done(&a);
    /* top-p 0.5 keeps only the two 3.5 tokens (each ~0.4 of the mass) */
    p.greedy = 0;
    p.top_k = 0;
    p.top_p = 0.5f;
    p.temp = 1.0f;
    eng_sampler_init(&a, &p, 6);
    for (int i = 0; i < 200; i++) {
        int32_t t = eng_sample(&a, logits);
        assert_true(t == 2 || t == 3);
    }
    eng_sampler_done(&a);
}

static void test_logprobs_top_sorted_and_normalised(void **s)
{
    (void)s;
    float logits[5] = { 1.0f, 3.0f, 2.0f, 3.0f, -2.0f };
    int32_t ids[3];
    float lp[3];
    float chosen = eng_logprobs(logits, 5, 2, 3, ids, lp);
    double z = exp(1.0) + 2 * exp(3.0) + exp(2.0) + exp(-2.0);
    assert_true(fabs(chosen - (2.0 - log(z))) < 1e-5);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 3);
    assert_int_equal(ids[2], 2);
    assert_true(fabs(lp[0] - (3.0 - log(z))) < 1e-5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bias_zero_mixtral_bit_identical),
        cmocka_unit_test(test_bias_zero_deepseek2_bit_identical),
        cmocka_unit_test(test_bias_zero_gptoss_bit_identical),
        cmocka_unit_test(test_disable_mixtral_next_best_renormalised),
        cmocka_unit_test(test_disable_olmoe_next_best_not_renormalised),
        cmocka_unit_test(test_disable_qwen3moe_next_best_renormalised),
        cmocka_unit_test(test_disable_deepseek2_sigmoid_renormalised_scaled),
        cmocka_unit_test(test_force_every_position_in_scope_keeps_expert),
        cmocka_unit_test(test_scope_gen_leaves_prompt_routes_unchanged),
        cmocka_unit_test(test_topk_all_experts_weights_sum_to_one),
        cmocka_unit_test(test_topp_small_p_routes_to_top1_only),
        cmocka_unit_test(test_bias_large_brings_expert_in),
        cmocka_unit_test(test_iv_parse_bad_items_name_the_argument),
        cmocka_unit_test(test_sampler_same_seed_same_tokens),
        cmocka_unit_test(test_sampler_greedy_and_topk1_give_argmax),
        cmocka_unit_test(test_logprobs_top_sorted_and_normalised),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
