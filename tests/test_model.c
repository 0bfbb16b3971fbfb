/*
** tests/test_model.c — what eng_model_open() demands of a well-formed GGUF
** before the forward pass may trust it: the architecture's required keys
** and tensors with the right shapes, sane counts, weight types the kernels
** support.  Each case rewrites a fixture with one defect (keys dropped or
** changed, a tensor reshaped, retyped or removed) and checks the error
** status and that the message names the culprit.  Plus `info` summaries of
** every fixture.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/eng.h"
#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "engine/qtypes.h"

typedef struct {
    const char *drop_key;       /* leave this key out */
    const char *u32_key;        /* set this key to u32 value */
    uint32_t u32_val;
    const char *drop_tensor;
    const char *retype_tensor;  /* declare as this type (random bytes) */
    uint32_t new_type;
    const char *reshape_tensor; /* ne[0] halved */
} Edit;

typedef struct {
    const Gguf *g;
    int *src;
    const Edit *e;
} Fill;

static int fill(void *user, int i, uint8_t *buf, uint64_t n)
{
    Fill *f = user;
    const GgufTensor *t = &f->g->tensors[f->src[i]];
    if (n <= t->nbytes)
        memcpy(buf, t->data, (size_t)n);
    else
        memset(buf, 0, (size_t)n);
    if (f->e->retype_tensor && !strcmp(t->name, f->e->retype_tensor))
        for (uint64_t k = 0; k < n; k++)
            buf[k] = (uint8_t)(k * 131 + 7);
    return 0;
}

/* Write fixture `src` with edit e applied to `dst`. */
static void rewrite(const char *src, const char *dst, const Edit *e)
{
    Gguf *g = NULL;
    char err[512];
    assert_int_equal(gguf_open(src, &g, err, sizeof err), GGUF_OK);
    EngGw *w = eng_gw_new();
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const GgufKV *kv = &g->kv[i];
        if (e->drop_key && gguf_str_eq(kv->key, e->drop_key))
            continue;
        if (e->u32_key && gguf_str_eq(kv->key, e->u32_key))
            continue;
        if (gguf_str_eq(kv->key, "general.alignment"))
            continue;
        eng_gw_copy_kv(w, kv);
    }
    if (e->u32_key)
        eng_gw_u32(w, e->u32_key, e->u32_val);
    int *map = calloc((size_t)g->n_tensors, sizeof *map);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const GgufTensor *t = &g->tensors[i];
        if (e->drop_tensor && !strcmp(t->name, e->drop_tensor))
            continue;
        uint32_t type = t->type;
        int64_t ne[4] = { t->ne[0], t->ne[1], t->ne[2], t->ne[3] };
        if (e->retype_tensor && !strcmp(t->name, e->retype_tensor))
            type = e->new_type;
        if (e->reshape_tensor && !strcmp(t->name, e->reshape_tensor))
            ne[0] /= 2;
        int idx = eng_gw_tensor(w, t->name, type, (int)t->n_dims, ne);
        assert_true(idx >= 0);
        map[idx] = (int)i;
    }
    Fill f = { g, map, e };
    assert_int_equal(eng_gw_write(w, dst, fill, &f, err, sizeof err), 0);
    free(map);
    eng_gw_free(w);
    gguf_free(g);
}

static void expect(const char *fixture, const Edit *e, EngStatus st, const char *needle)
{
    char dst[] = "/tmp/moescope-test-model-XXXXXX";
    int fd = mkstemp(dst);
    assert_true(fd >= 0);
    close(fd);
    rewrite(fixture, dst, e);
    EngErr err = { 0 };
    EngModel *m = eng_model_open(dst, &err);
    unlink(dst);
    if (st == ENG_OK) {
        if (!m)
            fail_msg("expected success, got: %s", err.msg);
        eng_model_close(m);
        return;
    }
    if (m)
        fail_msg("expected '%s', the model loaded", needle);
    assert_int_equal(err.status, st);
    if (!strstr(err.msg, needle))
        fail_msg("message lacks '%s': %s", needle, err.msg);
}

#define MIX "tests/data/fixtures/mixtral/mixtral-f32.gguf"
#define DS "tests/data/fixtures/deepseek2/deepseek2-f32.gguf"
#define GLM "tests/data/fixtures/glm4moe/glm4moe-f32.gguf"

static void test_model_unchanged_rewrite_loads(void **s)
{
    (void)s;
    Edit e = { 0 };
    expect(MIX, &e, ENG_OK, NULL);
    expect(DS, &e, ENG_OK, NULL);
}

static void test_model_missing_required_key_named(void **s)
{
    (void)s;
    Edit e = { .drop_key = "llama.expert_count" };
    expect(MIX, &e, ENG_E_MODEL, "'llama.expert_count' is missing");
    Edit e2 = { .drop_key = "llama.embedding_length" };
    expect(MIX, &e2, ENG_E_MODEL, "'llama.embedding_length' is missing");
    Edit e3 = { .drop_key = "general.architecture" };
    expect(MIX, &e3, ENG_E_MODEL, "general.architecture");
    Edit e4 = { .drop_key = "deepseek2.attention.kv_lora_rank" };
    expect(DS, &e4, ENG_E_MODEL, "kv_lora_rank");
}

static void test_model_bad_counts_refused(void **s)
{
    (void)s;
    Edit e = { .u32_key = "llama.expert_used_count", .u32_val = 9 };
    expect(MIX, &e, ENG_E_MODEL, "expert_used_count = 9, expected 1..8");
    Edit e2 = { .u32_key = "llama.block_count", .u32_val = 0 };
    expect(MIX, &e2, ENG_E_MODEL, "block_count' = 0");
    Edit e3 = { .u32_key = "llama.block_count", .u32_val = 3 };   /* blk.2.* missing */
    expect(MIX, &e3, ENG_E_MODEL, "blk.2.attn_norm.weight' is missing");
    Edit e4 = { .u32_key = "llama.attention.head_count_kv", .u32_val = 3 };
    expect(MIX, &e4, ENG_E_MODEL, "not a multiple of head_count_kv 3");
    Edit e5 = { .u32_key = "llama.expert_count", .u32_val = 0 };
    expect(MIX, &e5, ENG_E_UNSUPPORTED, "dense model");
    Edit e6 = { .u32_key = "glm4moe.leading_dense_block_count", .u32_val = 7 };
    expect(GLM, &e6, ENG_E_MODEL, "leading_dense_block_count 7");
    Edit e7 = { .u32_key = "llama.rope.dimension_count", .u32_val = 65 };
    expect(MIX, &e7, ENG_E_MODEL, "rope.dimension_count");
}

static void test_model_tensor_shape_and_presence_checked(void **s)
{
    (void)s;
    Edit e = { .drop_tensor = "blk.1.ffn_up_exps.weight" };
    expect(MIX, &e, ENG_E_MODEL, "ffn_up_exps.weight");
    Edit e2 = { .reshape_tensor = "blk.0.attn_k.weight" };
    expect(MIX, &e2, ENG_E_MODEL, "'blk.0.attn_k.weight' has shape [128, 128");
    Edit e3 = { .drop_tensor = "blk.1.exp_probs_b.bias" };   /* optional: loads */
    expect(DS, &e3, ENG_OK, NULL);
    Edit e4 = { .drop_tensor = "blk.0.ffn_gate_inp.weight" };
    expect(MIX, &e4, ENG_E_MODEL, "blk.0.ffn_gate_inp.weight' is missing");
}

static void test_model_unsupported_type_named_at_load(void **s)
{
    (void)s;
    Edit e = { .retype_tensor = "blk.0.ffn_gate_exps.weight", .new_type = QT_Q2_K };
    expect(MIX, &e, ENG_E_UNSUPPORTED, "'blk.0.ffn_gate_exps.weight' has type Q2_K");
    Edit e2 = { .retype_tensor = "blk.1.attn_q.weight", .new_type = QT_IQ4_XS };
    expect(MIX, &e2, ENG_E_UNSUPPORTED, "'blk.1.attn_q.weight' has type IQ4_XS");
    Edit e3 = { .retype_tensor = "blk.0.attn_v.weight", .new_type = QT_Q3_K };
    expect(MIX, &e3, ENG_E_UNSUPPORTED, "has type Q3_K");
}

static void test_model_unknown_arch_lists_supported(void **s)
{
    (void)s;
    /* dropping the key then re-adding a string is not in Edit: use the dense
    ** tokenizer-only GGUF, which declares arch llama with no tensors */
    EngErr err = { 0 };
    EngModel *m = eng_model_open("tests/data/tokenizer/ggml-vocab-gpt-2.gguf", &err);
    assert_null(m);
    assert_true(err.status == ENG_E_UNSUPPORTED || err.status == ENG_E_MODEL);
    assert_non_null(strstr(err.msg, "ggml-vocab-gpt-2.gguf"));
}

/* `moescope info` summaries: the facts each fixture README row states */
static void test_model_describe_every_fixture(void **s)
{
    (void)s;
    static const struct { const char *file, *want[4]; } fx[] = {
        { "mixtral/mixtral-f32.gguf", { "architecture  llama", "8 per layer, top-2", "SentencePiece", "renormalised over the top-k" } },
        { "olmoe/olmoe-f32.gguf", { "architecture  olmoe", "16 per layer, top-4", "pre gpt-2", "not renormalised" } },
        { "qwen2moe/qwen2moe-q4_k_m.gguf", { "architecture  qwen2moe", "shared expert FFN 64 (sigmoid-gated)", "Q5_0", "rope 16 dims neox" } },
        { "granitemoe/granitemoe-f16.gguf", { "architecture  granitemoe", "8 per layer, top-2", "F16", "" } },
        { "deepseek2/deepseek2-f32.gguf", { "3 (2 MoE, first 1 dense)", "MLA q_lora 32 kv_lora 32", "sigmoid", "scaled x2.5" } },
        { "qwen3moe/qwen3moe-q8_0.gguf", { "architecture  qwen3moe", "head dim 32/32", "Q8_0", "16 per layer, top-4" } },
        { "gpt-oss/gpt-oss-mxfp4.gguf", { "architecture  gpt-oss", "sliding window 8", "MXFP4", "softmax over the selected" } },
        { "glm4moe/glm4moe-f32.gguf", { "layers        3 (2 MoE, first 1 dense)", "rope 16 dims neox", "selection bias", "shared expert FFN 32" } },
    };
    for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/data/fixtures/%s", fx[i].file);
        EngErr err = { 0 };
        EngModel *m = eng_model_open(path, &err);
        if (!m)
            fail_msg("%s: %s", path, err.msg);
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        eng_model_describe(m, f, 0);
        fclose(f);
        for (int k = 0; k < 4; k++)
            if (fx[i].want[k][0] && !strstr(buf, fx[i].want[k]))
                fail_msg("%s: info lacks '%s':\n%s", path, fx[i].want[k], buf);
        free(buf);
        eng_model_close(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_unchanged_rewrite_loads),
        cmocka_unit_test(test_model_missing_required_key_named),
        cmocka_unit_test(test_model_bad_counts_refused),
        cmocka_unit_test(test_model_tensor_shape_and_presence_checked),
        cmocka_unit_test(test_model_unsupported_type_named_at_load),
        cmocka_unit_test(test_model_unknown_arch_lists_supported),
        cmocka_unit_test(test_model_describe_every_fixture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
