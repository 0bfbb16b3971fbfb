/*
** engine/model.c — open a GGUF file as an MoE model.
**
** Reads the architecture's hyperparameters from the `<arch>.*` keys, finds
** every tensor the forward pass needs and checks its shape and type against
** those hyperparameters, so that forward.c can trust what it is given: a
** file that passes eng_model_open() cannot make the forward pass read out of
** bounds.  Which keys and tensors an architecture has follows llama.cpp
** (src/llama-model.cpp, llama-arch.cpp) for the eight MoE families below.
*/
#include "engine/model.h"
#include "engine/qtypes.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *arch_names[ENG_ARCH_COUNT] = {
    [ENG_ARCH_LLAMA] = "llama",         [ENG_ARCH_OLMOE] = "olmoe",
    [ENG_ARCH_QWEN2MOE] = "qwen2moe",   [ENG_ARCH_GRANITEMOE] = "granitemoe",
    [ENG_ARCH_DEEPSEEK2] = "deepseek2", [ENG_ARCH_QWEN3MOE] = "qwen3moe",
    [ENG_ARCH_GPTOSS] = "gpt-oss",      [ENG_ARCH_GLM4MOE] = "glm4moe",
};

const char *eng_status_str(EngStatus s)
{
    switch (s) {
    case ENG_OK: return "ok";
    case ENG_E_IO: return "i/o error";
    case ENG_E_NOMEM: return "out of memory";
    case ENG_E_FORMAT: return "malformed file";
    case ENG_E_UNSUPPORTED: return "unsupported";
    case ENG_E_MODEL: return "invalid model";
    case ENG_E_ARG: return "bad argument";
    case ENG_E_CTX: return "context full";
    }
    return "?";
}

static EngStatus seterr(EngErr *err, EngStatus s, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->status = s;
        err->detail = 0;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return s;
}

float eng_mat_get_f32(const Mat *m, int64_t i)
{
    if (m->type == QT_F32) {
        float v;
        memcpy(&v, m->data + 4 * i, 4);
        return v;
    }
    uint16_t h;
    memcpy(&h, m->data + 2 * i, 2);
    return m->type == QT_F16 ? eng_f16_to_f32(h) : eng_bf16_to_f32(h);
}

/* ---- key access -------------------------------------------------------- */

typedef struct {
    EngModel *m;
    const char *path;
    const char *arch;
    EngErr *err;
} Ld;

static int key_int(Ld *L, const char *suffix, int required, int64_t lo,
                   int64_t hi, int64_t def, int *out)
{
    char key[160];
    int64_t v;
    snprintf(key, sizeof key, "%s.%s", L->arch, suffix);
    int r = gguf_get_int(L->m->g, key, &v);
    if (r == 0) {
        if (required) {
            seterr(L->err, ENG_E_MODEL, "%s: required key '%s' is missing", L->path, key);
            return -1;
        }
        *out = (int)def;
        return 0;
    }
    if (r < 0) {
        seterr(L->err, ENG_E_MODEL, "%s: key '%s' has type %s, expected an integer",
               L->path, key, gguf_type_name(gguf_find(L->m->g, key)->type));
        return -1;
    }
    if (v < lo || v > hi) {
        seterr(L->err, ENG_E_MODEL, "%s: key '%s' = %lld, expected %lld..%lld",
               L->path, key, (long long)v, (long long)lo, (long long)hi);
        return -1;
    }
    *out = (int)v;
    return 1;
}

static int key_float(Ld *L, const char *suffix, double def, float *out)
{
    char key[160];
    double v;
    snprintf(key, sizeof key, "%s.%s", L->arch, suffix);
    int r = gguf_get_float(L->m->g, key, &v);
    if (r == 0) {
        *out = (float)def;
        return 0;
    }
    if (r < 0 || !isfinite(v)) {
        seterr(L->err, ENG_E_MODEL, "%s: key '%s' is not a finite float", L->path, key);
        return -1;
    }
    *out = (float)v;
    return 1;
}

static int key_bool(Ld *L, const char *suffix, int def, int *out)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", L->arch, suffix);
    int r = gguf_get_bool(L->m->g, key, out);
    if (r == 0) {
        *out = def;
        return 0;
    }
    if (r < 0) {
        seterr(L->err, ENG_E_MODEL, "%s: key '%s' is not a bool", L->path, key);
        return -1;
    }
    return 1;
}

/* ---- tensor access ----------------------------------------------------- */

/* Find tensor `name`; check its dims equal ne0 x ne1 x ne2 (ne1/ne2 = 0 means
** "1-D"/"2-D") and that its type is one the kernels support.  Absent and not
** required: out->data = NULL, returns 0. */
static int get_t(Ld *L, const char *name, int required, int64_t ne0, int64_t ne1,
                 int64_t ne2, Mat *out, const GgufTensor **tout)
{
    const GgufTensor *t = gguf_tensor(L->m->g, name);
    memset(out, 0, sizeof *out);
    if (!t) {
        if (required) {
            seterr(L->err, ENG_E_MODEL, "%s: required tensor '%s' is missing", L->path, name);
            return -1;
        }
        return 0;
    }
    /* ne1 < 0: any number of rows (the vocabulary size comes from here) */
    int64_t want[3] = { ne0, ne1 < 0 ? t->ne[1] : ne1 ? ne1 : 1, ne2 ? ne2 : 1 };
    if (ne1 < 0 && t->ne[1] < 1)
        want[1] = 1;
    if (t->ne[0] != want[0] || t->ne[1] != want[1] || t->ne[2] != want[2] || t->ne[3] != 1) {
        seterr(L->err, ENG_E_MODEL,
               "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld, %lld]",
               L->path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
               (long long)t->ne[3], (long long)want[0], (long long)want[1], (long long)want[2]);
        return -1;
    }
    const EngQTraits *tr = eng_qtraits(t->type);
    if (!tr || !tr->weight) {
        seterr(L->err, ENG_E_UNSUPPORTED,
               "%s: tensor '%s' has type %s, which moescope cannot compute with "
               "(supported: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K MXFP4)",
               L->path, name, tr ? tr->name : "?");
        return -1;
    }
    out->data = t->data;
    out->type = t->type;
    out->ncols = t->ne[0];
    out->nrows = t->ne[1] * t->ne[2];
    out->row_bytes = eng_qrow_bytes(t->type, t->ne[0]);
    if (tout)
        *tout = t;
    return 1;
}

/* 1-D vectors read element-wise by the forward pass must be F32/F16/BF16. */
static int get_vec(Ld *L, const char *name, int required, int64_t n, Mat *out)
{
    int r = get_t(L, name, required, n, 0, 0, out, NULL);
    if (r == 1 && out->type != QT_F32 && out->type != QT_F16 && out->type != QT_BF16) {
        seterr(L->err, ENG_E_UNSUPPORTED, "%s: tensor '%s' has type %s, expected F32, F16 or BF16",
               L->path, name, eng_qtraits(out->type)->name);
        return -1;
    }
    return r;
}

static int get_l(Ld *L, int il, const char *suffix, int required, int64_t ne0,
                 int64_t ne1, Mat *out)
{
    char name[GGUF_MAX_NAME + 32];
    snprintf(name, sizeof name, "blk.%d.%s", il, suffix);
    if (ne1 == 0)
        return get_vec(L, name, required, ne0, out);
    return get_t(L, name, required, ne0, ne1, 0, out, NULL);
}

/* Expert weights: a 3-D tensor blk.N.<kind>_exps.weight (ne0 x ne1 x
** n_expert), or (old Mixtral files) n_expert tensors blk.N.<kind>.E.weight. */
static int get_experts(Ld *L, int il, const char *kind, int64_t ne0, int64_t ne1,
                       Mat *mats)
{
    const EngInfo *I = &L->m->info;
    char name[GGUF_MAX_NAME + 32];
    Mat all;
    snprintf(name, sizeof name, "blk.%d.%s_exps.weight", il, kind);
    if (gguf_tensor(L->m->g, name)) {
        if (get_t(L, name, 1, ne0, ne1, I->n_expert, &all, NULL) < 0)
            return -1;
        for (int e = 0; e < I->n_expert; e++) {
            mats[e] = all;
            mats[e].nrows = ne1;
            mats[e].data = all.data + (uint64_t)e * (uint64_t)ne1 * all.row_bytes;
        }
        return 0;
    }
    for (int e = 0; e < I->n_expert; e++) {
        snprintf(name, sizeof name, "blk.%d.%s.%d.weight", il, kind, e);
        if (!gguf_tensor(L->m->g, name)) {
            seterr(L->err, ENG_E_MODEL,
                   "%s: layer %d has neither 'blk.%d.%s_exps.weight' nor '%s'",
                   L->path, il, il, kind, name);
            return -1;
        }
        if (get_t(L, name, 1, ne0, ne1, 0, &mats[e], NULL) < 0)
            return -1;
    }
    return 0;
}

/* Expert biases (gpt-oss): blk.N.<kind>_exps.bias, (n x n_expert). */
static int get_expert_bias(Ld *L, int il, const char *kind, int64_t n, Mat *mats)
{
    char name[GGUF_MAX_NAME + 32];
    Mat all;
    snprintf(name, sizeof name, "blk.%d.%s_exps.bias", il, kind);
    if (get_t(L, name, 1, n, L->m->info.n_expert, 0, &all, NULL) < 0)
        return -1;
    if (all.type != QT_F32) {
        seterr(L->err, ENG_E_UNSUPPORTED, "%s: tensor '%s' must be F32", L->path, name);
        return -1;
    }
    for (int e = 0; e < L->m->info.n_expert; e++) {
        mats[e] = all;
        mats[e].nrows = 1;
        mats[e].data = all.data + (uint64_t)e * all.row_bytes;
    }
    return 0;
}

/* ---- hyperparameters --------------------------------------------------- */

/* RoPE frequency scaling as llama.cpp applies it (ggml_rope_ext): none,
** linear (positions divided by the factor) or YaRN (per-dimension mix of
** interpolation and extrapolation, beta_fast 32 / beta_slow 1, magnitude
** scale 1 + 0.1 ln(factor)).  DeepSeek-2 moves YaRN's magnitude scale into
** the attention scale, with its yarn_log_multiplier. */
static int load_rope_scaling(Ld *L)
{
    EngModel *m = L->m;
    EngInfo *I = &m->info;
    char key[160];
    GgufStr st = { "none", 4 };
    float factor = 0.0f, lin = 0.0f, log_mul = 0.0f;
    int n_orig = 0;
    snprintf(key, sizeof key, "%s.rope.scaling.type", L->arch);
    int r = gguf_get_str(m->g, key, &st);
    if (r < 0) {
        seterr(L->err, ENG_E_MODEL, "%s: key '%s' is not a string", L->path, key);
        return -1;
    }
    if (key_float(L, "rope.scaling.factor", 0.0, &factor) < 0 ||
        key_float(L, "rope.scale_linear", 0.0, &lin) < 0 ||
        key_float(L, "rope.scaling.yarn_log_multiplier", 0.0, &log_mul) < 0 ||
        key_int(L, "rope.scaling.original_context_length", 0, 1, 1 << 24, I->n_ctx_train, &n_orig) < 0)
        return -1;
    if (factor == 0.0f && lin != 0.0f)
        factor = lin;
    m->rope_freq_scale = 1.0f;
    m->rope_ext_factor = 0.0f;
    m->rope_attn_factor = 1.0f;
    if (gguf_str_eq(st, "none") || factor == 0.0f || factor == 1.0f) {
        /* no scaling */
    } else if (gguf_str_eq(st, "linear")) {
        m->rope_freq_scale = 1.0f / factor;
    } else if (gguf_str_eq(st, "yarn")) {
        if (!(factor > 0.0f)) {
            seterr(L->err, ENG_E_MODEL, "%s: rope.scaling.factor %g must be > 0", L->path, factor);
            return -1;
        }
        m->rope_freq_scale = 1.0f / factor;
        m->rope_ext_factor = 1.0f;
        int nd = I->n_rot;
        float b = I->rope_base;
        float lo = floorf((float)nd * logf((float)n_orig / (32.0f * 2.0f * (float)M_PI)) / (2.0f * logf(b)));
        float hi = ceilf((float)nd * logf((float)n_orig / (1.0f * 2.0f * (float)M_PI)) / (2.0f * logf(b)));
        m->yarn_corr[0] = lo > 0 ? lo : 0;
        m->yarn_corr[1] = hi < nd - 1 ? hi : (float)(nd - 1);
        if (I->arch == ENG_ARCH_DEEPSEEK2) {
            float ms = 1.0f + log_mul * logf(factor);
            m->kq_scale *= ms * ms;
            m->rope_attn_factor = 1.0f / (1.0f + 0.1f * logf(factor));
        }
    } else {
        char nb[64];
        snprintf(nb, sizeof nb, "%.*s", (int)(st.len < 40 ? st.len : 40), st.ptr);
        seterr(L->err, ENG_E_UNSUPPORTED,
               "%s: rope scaling type '%s' is not supported (supported: none, linear, yarn)",
               L->path, nb);
        return -1;
    }
    m->inv_freq = malloc((size_t)(I->n_rot / 2 + 1) * sizeof(float));
    if (!m->inv_freq) {
        seterr(L->err, ENG_E_NOMEM, "%s: out of memory", L->path);
        return -1;
    }
    /* as ggml: theta_scale = base^(-2/n_dims), theta_i = theta_scale^i */
    float theta_scale = powf(I->rope_base, -2.0f / (float)I->n_rot);
    float th = 1.0f;
    for (int i = 0; i < I->n_rot / 2; i++) {
        m->inv_freq[i] = th;
        th *= theta_scale;
    }
    return 0;
}

static int load_hparams(Ld *L)
{
    EngModel *m = L->m;
    EngInfo *I = &m->info;
    EngArch a = I->arch;
    int n_block = 0, nextn = 0;

    if (key_int(L, "embedding_length", 1, 1, 1 << 16, 0, &I->n_embd) < 0 ||
        key_int(L, "block_count", 1, 1, ENG_MAX_LAYERS, 0, &n_block) < 0 ||
        key_int(L, "attention.head_count", 1, 1, 4096, 0, &I->n_head) < 0 ||
        key_int(L, "attention.head_count_kv", 0, 1, 4096, I->n_head, &I->n_head_kv) < 0 ||
        key_int(L, "context_length", 0, 1, 1 << 24, 4096, &I->n_ctx_train) < 0 ||
        key_int(L, "expert_count", 1, 0, 4096, 0, &I->n_expert) < 0 ||
        key_int(L, "expert_used_count", 1, 0, 4096, 0, &I->n_expert_used) < 0 ||
        key_int(L, "feed_forward_length", 0, 0, 1 << 20, 0, &I->n_ff) < 0 ||
        key_int(L, "expert_shared_count", 0, 0, 4096, 0, &I->n_expert_shared) < 0 ||
        key_int(L, "leading_dense_block_count", 0, 0, ENG_MAX_LAYERS, 0, &I->n_dense_lead) < 0 ||
        key_int(L, "nextn_predict_layers", 0, 0, ENG_MAX_LAYERS, 0, &nextn) < 0)
        return -1;
    if (I->n_expert < 1) {
        seterr(L->err, ENG_E_UNSUPPORTED,
               "%s: %s.expert_count is %d: this is a dense model, moescope needs experts",
               L->path, L->arch, I->n_expert);
        return -1;
    }
    if (I->n_expert_used < 1 || I->n_expert_used > I->n_expert) {
        seterr(L->err, ENG_E_MODEL, "%s: %s.expert_used_count = %d, expected 1..%d (expert_count)",
               L->path, L->arch, I->n_expert_used, I->n_expert);
        return -1;
    }
    if (I->n_head % I->n_head_kv != 0) {
        seterr(L->err, ENG_E_MODEL, "%s: head_count %d is not a multiple of head_count_kv %d",
               L->path, I->n_head, I->n_head_kv);
        return -1;
    }
    if (nextn >= n_block) {
        seterr(L->err, ENG_E_MODEL, "%s: nextn_predict_layers %d >= block_count %d", L->path,
               nextn, n_block);
        return -1;
    }
    I->n_layer = n_block - nextn;
    if (I->n_dense_lead > I->n_layer) {
        seterr(L->err, ENG_E_MODEL, "%s: leading_dense_block_count %d > layers %d", L->path,
               I->n_dense_lead, I->n_layer);
        return -1;
    }
    int hd = I->n_embd / I->n_head;
    if (key_int(L, "attention.key_length", 0, 1, 1 << 12, hd, &I->head_dim_k) < 0 ||
        key_int(L, "attention.value_length", 0, 1, 1 << 12, I->head_dim_k, &I->head_dim_v) < 0)
        return -1;
    if (a == ENG_ARCH_DEEPSEEK2) {
        if (key_int(L, "attention.q_lora_rank", 0, 0, 1 << 16, 0, &m->q_lora_rank) < 0 ||
            key_int(L, "attention.kv_lora_rank", 1, 1, 1 << 16, 0, &m->kv_lora_rank) < 0 ||
            key_int(L, "rope.dimension_count", 1, 2, I->head_dim_k, 0, &m->qk_rope) < 0)
            return -1;
        m->qk_nope = I->head_dim_k - m->qk_rope;
        I->n_rot = m->qk_rope;
        if (m->qk_nope < 0 || m->qk_rope % 2) {
            seterr(L->err, ENG_E_MODEL, "%s: rope.dimension_count %d does not fit key_length %d",
                   L->path, m->qk_rope, I->head_dim_k);
            return -1;
        }
    } else if (key_int(L, "rope.dimension_count", 0, 2, I->head_dim_k, I->head_dim_k,
                       &I->n_rot) < 0) {
        return -1;
    }
    if (I->n_rot % 2) {
        seterr(L->err, ENG_E_MODEL, "%s: rope.dimension_count %d is odd", L->path, I->n_rot);
        return -1;
    }
    if (key_float(L, "attention.layer_norm_rms_epsilon", 1e-6, &I->norm_eps) < 0 ||
        key_float(L, "rope.freq_base", 10000.0, &I->rope_base) < 0 ||
        key_float(L, "expert_weights_scale", 1.0, &I->expert_weights_scale) < 0)
        return -1;
    if (!(I->norm_eps > 0) || !(I->rope_base > 0)) {
        seterr(L->err, ENG_E_MODEL, "%s: rms epsilon %g / rope base %g must be positive",
               L->path, I->norm_eps, I->rope_base);
        return -1;
    }
    m->f_embedding_scale = m->f_residual_scale = m->f_logit_scale = 1.0f;
    m->f_attention_scale = 0.0f;
    if (a == ENG_ARCH_GRANITEMOE) {
        if (key_float(L, "embedding_scale", 1.0, &m->f_embedding_scale) < 0 ||
            key_float(L, "residual_scale", 1.0, &m->f_residual_scale) < 0 ||
            key_float(L, "attention.scale", 0.0, &m->f_attention_scale) < 0 ||
            key_float(L, "logit_scale", 1.0, &m->f_logit_scale) < 0)
            return -1;
        if (m->f_logit_scale == 0.0f) {
            seterr(L->err, ENG_E_MODEL, "%s: granitemoe.logit_scale is 0", L->path);
            return -1;
        }
    }
    m->rope_neox = !(a == ENG_ARCH_LLAMA || a == ENG_ARCH_GRANITEMOE || a == ENG_ARCH_DEEPSEEK2);
    m->qk_norm_per_head = a == ENG_ARCH_QWEN3MOE;

    /* routing */
    I->gating = ENG_GATE_SOFTMAX;
    I->norm_topk = 0;
    switch (a) {
    case ENG_ARCH_LLAMA:
    case ENG_ARCH_GRANITEMOE:
    case ENG_ARCH_QWEN3MOE:
        I->norm_topk = 1;
        break;
    case ENG_ARCH_GPTOSS:
        I->gating = ENG_GATE_SOFTMAX_TOPK;
        I->norm_topk = 1;
        I->has_sel_bias = 1;
        break;
    case ENG_ARCH_DEEPSEEK2:
    case ENG_ARCH_GLM4MOE: {
        int gf = 0;
        if (key_int(L, "expert_gating_func", 0, 0, 2,
                    a == ENG_ARCH_GLM4MOE ? 2 : 1, &gf) < 0 ||
            key_bool(L, "expert_weights_norm", a == ENG_ARCH_GLM4MOE, &I->norm_topk) < 0)
            return -1;
        I->gating = gf == 2 ? ENG_GATE_SIGMOID : ENG_GATE_SOFTMAX;
        break;
    }
    default:
        break;
    }
    if (a == ENG_ARCH_GPTOSS) {
        if (key_int(L, "attention.sliding_window", 0, 0, 1 << 24, 0, &m->n_swa) < 0)
            return -1;
    }
    /* attention scale */
    if (m->f_attention_scale != 0.0f)
        m->kq_scale = m->f_attention_scale;
    else
        m->kq_scale = 1.0f / sqrtf((float)I->head_dim_k);
    return load_rope_scaling(L);
}

/* ---- tensors ----------------------------------------------------------- */

static int load_tensors(Ld *L)
{
    EngModel *m = L->m;
    EngInfo *I = &m->info;
    EngArch a = I->arch;
    const GgufTensor *te;
    int64_t E = I->n_embd;

    if (get_t(L, "token_embd.weight", 1, E, -1, 0, &m->tok_embd, &te) < 0)
        return -1;
    I->n_vocab = (int)m->tok_embd.nrows;
    if (te->ne[1] < 1 || te->ne[1] > (1 << 24)) {
        seterr(L->err, ENG_E_MODEL, "%s: token_embd.weight has %lld rows (vocabulary size)",
               L->path, (long long)te->ne[1]);
        return -1;
    }
    if (get_vec(L, "output_norm.weight", 1, E, &m->output_norm) < 0 ||
        get_t(L, "output.weight", a == ENG_ARCH_GPTOSS, E, I->n_vocab, 0, &m->output, NULL) < 0)
        return -1;
    if (!m->output.data)
        m->output = m->tok_embd;  /* tied embeddings */

    m->layers = calloc((size_t)I->n_layer, sizeof(Layer));
    /* up to 6 per-expert arrays per layer (weights + gpt-oss biases) */
    m->exp_mats = calloc((size_t)I->n_layer * 6 * (size_t)I->n_expert, sizeof(Mat));
    if (!m->layers || !m->exp_mats) {
        seterr(L->err, ENG_E_NOMEM, "%s: out of memory for %d layers", L->path, I->n_layer);
        return -1;
    }
    int hk = I->head_dim_k, hv = I->head_dim_v, H = I->n_head, Hkv = I->n_head_kv;
    int n_ff_exp = -1, n_ff_sh = 0, n_ff_dense = 0;

    for (int il = 0; il < I->n_layer; il++) {
        Layer *ly = &m->layers[il];
        Mat *em = m->exp_mats + (size_t)il * 6 * (size_t)I->n_expert;
        ly->gate_e = em;
        ly->up_e = em + I->n_expert;
        ly->down_e = em + 2 * I->n_expert;
        ly->is_moe = il >= I->n_dense_lead;
        ly->swa = a == ENG_ARCH_GPTOSS && m->n_swa > 0 && il % 2 == 0;

        if (get_l(L, il, "attn_norm.weight", 1, E, 0, &ly->attn_norm) < 0)
            return -1;
        if (a == ENG_ARCH_DEEPSEEK2) {
            int kvl = m->kv_lora_rank;
            if (m->q_lora_rank > 0) {
                if (get_l(L, il, "attn_q_a.weight", 1, E, m->q_lora_rank, &ly->wq_a) < 0 ||
                    get_l(L, il, "attn_q_a_norm.weight", 1, m->q_lora_rank, 0, &ly->q_a_norm) < 0 ||
                    get_l(L, il, "attn_q_b.weight", 1, m->q_lora_rank, (int64_t)H * hk, &ly->wq_b) < 0)
                    return -1;
            } else if (get_l(L, il, "attn_q.weight", 1, E, (int64_t)H * hk, &ly->wq) < 0) {
                return -1;
            }
            if (get_l(L, il, "attn_kv_a_mqa.weight", 1, E, kvl + m->qk_rope, &ly->wkv_a) < 0 ||
                get_l(L, il, "attn_kv_a_norm.weight", 1, kvl, 0, &ly->kv_a_norm) < 0)
                return -1;
            char nm[96];
            snprintf(nm, sizeof nm, "blk.%d.attn_kv_b.weight", il);
            if (gguf_tensor(m->g, nm)) {
                if (get_l(L, il, "attn_kv_b.weight", 1, kvl, (int64_t)H * (m->qk_nope + hv), &ly->wkv_b) < 0)
                    return -1;
            } else {
                /* newer files split kv_b: attn_k_b (qk_nope, kv_lora, H) and
                ** attn_v_b (kv_lora, hv, H) */
                Mat kb, vb;
                snprintf(nm, sizeof nm, "blk.%d.attn_k_b.weight", il);
                if (get_t(L, nm, 1, m->qk_nope, kvl, H, &kb, NULL) < 0)
                    return -1;
                snprintf(nm, sizeof nm, "blk.%d.attn_v_b.weight", il);
                if (get_t(L, nm, 1, kvl, hv, H, &vb, NULL) < 0)
                    return -1;
                ly->wk_b = kb;
                ly->wv_b = vb;
            }
        } else {
            int bias_req = a == ENG_ARCH_GPTOSS;
            if (get_l(L, il, "attn_q.weight", 1, E, (int64_t)H * hk, &ly->wq) < 0 ||
                get_l(L, il, "attn_k.weight", 1, E, (int64_t)Hkv * hk, &ly->wk) < 0 ||
                get_l(L, il, "attn_v.weight", 1, E, (int64_t)Hkv * hv, &ly->wv) < 0 ||
                get_l(L, il, "attn_q.bias", bias_req, (int64_t)H * hk, 0, &ly->bq) < 0 ||
                get_l(L, il, "attn_k.bias", bias_req, (int64_t)Hkv * hk, 0, &ly->bk) < 0 ||
                get_l(L, il, "attn_v.bias", bias_req, (int64_t)Hkv * hv, 0, &ly->bv) < 0)
                return -1;
            if (a == ENG_ARCH_OLMOE) {
                if (get_l(L, il, "attn_q_norm.weight", 1, (int64_t)H * hk, 0, &ly->q_norm) < 0 ||
                    get_l(L, il, "attn_k_norm.weight", 1, (int64_t)Hkv * hk, 0, &ly->k_norm) < 0)
                    return -1;
            } else if (a == ENG_ARCH_QWEN3MOE || a == ENG_ARCH_GLM4MOE) {
                int req = a == ENG_ARCH_QWEN3MOE;
                if (get_l(L, il, "attn_q_norm.weight", req, hk, 0, &ly->q_norm) < 0 ||
                    get_l(L, il, "attn_k_norm.weight", req, hk, 0, &ly->k_norm) < 0)
                    return -1;
                if (a == ENG_ARCH_GLM4MOE && ly->q_norm.data)
                    m->qk_norm_per_head = 1;
            }
            if (a == ENG_ARCH_GPTOSS &&
                get_l(L, il, "attn_sinks.weight", 1, H, 0, &ly->sinks) < 0)
                return -1;
        }
        if (get_l(L, il, "attn_output.weight", 1, (int64_t)H * hv, E, &ly->wo) < 0 ||
            get_l(L, il, "attn_output.bias", a == ENG_ARCH_GPTOSS, E, 0, &ly->bo) < 0)
            return -1;
        const char *fnorm = (a == ENG_ARCH_GPTOSS || a == ENG_ARCH_GLM4MOE)
                                ? "post_attention_norm.weight" : "ffn_norm.weight";
        if (get_l(L, il, fnorm, 1, E, 0, &ly->ffn_norm) < 0)
            return -1;

        if (!ly->is_moe) {
            char nm[96];
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate.weight", il);
            const GgufTensor *t = gguf_tensor(m->g, nm);
            int nff = t ? (int)t->ne[1] : I->n_ff;
            if (get_l(L, il, "ffn_gate.weight", 1, E, nff, &ly->ffn_gate) < 0 ||
                get_l(L, il, "ffn_up.weight", 1, E, nff, &ly->ffn_up) < 0 ||
                get_l(L, il, "ffn_down.weight", 1, nff, E, &ly->ffn_down) < 0)
                return -1;
            if (nff > n_ff_dense)
                n_ff_dense = nff;
            continue;
        }
        if (get_l(L, il, "ffn_gate_inp.weight", 1, E, I->n_expert, &ly->gate_inp) < 0)
            return -1;
        if (a == ENG_ARCH_GPTOSS &&
            get_l(L, il, "ffn_gate_inp.bias", 1, I->n_expert, 0, &ly->gate_inp_b) < 0)
            return -1;
        if ((a == ENG_ARCH_DEEPSEEK2 || a == ENG_ARCH_GLM4MOE) &&
            get_l(L, il, "exp_probs_b.bias", 0, I->n_expert, 0, &ly->exp_probs_b) < 0)
            return -1;
        if (ly->exp_probs_b.data)
            I->has_sel_bias = 1;
        /* expert width from the tensor itself */
        if (n_ff_exp < 0) {
            char nm[96];
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_exps.weight", il);
            const GgufTensor *t = gguf_tensor(m->g, nm);
            if (!t) {
                snprintf(nm, sizeof nm, "blk.%d.ffn_gate.0.weight", il);
                t = gguf_tensor(m->g, nm);
            }
            if (!t) {
                seterr(L->err, ENG_E_MODEL, "%s: layer %d has no expert tensors", L->path, il);
                return -1;
            }
            n_ff_exp = (int)t->ne[1];
            if (n_ff_exp < 1) {
                seterr(L->err, ENG_E_MODEL, "%s: expert FFN width %d", L->path, n_ff_exp);
                return -1;
            }
        }
        if (get_experts(L, il, "ffn_gate", E, n_ff_exp, ly->gate_e) < 0 ||
            get_experts(L, il, "ffn_up", E, n_ff_exp, ly->up_e) < 0 ||
            get_experts(L, il, "ffn_down", n_ff_exp, E, ly->down_e) < 0)
            return -1;
        if (a == ENG_ARCH_GPTOSS) {
            ly->gate_eb = em + 3 * I->n_expert;
            ly->up_eb = em + 4 * I->n_expert;
            ly->down_eb = em + 5 * I->n_expert;
            if (get_expert_bias(L, il, "ffn_gate", n_ff_exp, ly->gate_eb) < 0 ||
                get_expert_bias(L, il, "ffn_up", n_ff_exp, ly->up_eb) < 0 ||
                get_expert_bias(L, il, "ffn_down", E, ly->down_eb) < 0)
                return -1;
        }
        /* shared expert(s) */
        {
            char nm[96];
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_shexp.weight", il);
            const GgufTensor *t = gguf_tensor(m->g, nm);
            int need_sh = a == ENG_ARCH_QWEN2MOE ||
                          ((a == ENG_ARCH_DEEPSEEK2 || a == ENG_ARCH_GLM4MOE) && I->n_expert_shared > 0);
            if (t || need_sh) {
                int nsh = t ? (int)t->ne[1] : 0;
                if (get_l(L, il, "ffn_gate_shexp.weight", 1, E, nsh, &ly->gate_sh) < 0 ||
                    get_l(L, il, "ffn_up_shexp.weight", 1, E, nsh, &ly->up_sh) < 0 ||
                    get_l(L, il, "ffn_down_shexp.weight", 1, nsh, E, &ly->down_sh) < 0)
                    return -1;
                if (a == ENG_ARCH_QWEN2MOE) {
                    Mat g1;
                    snprintf(nm, sizeof nm, "blk.%d.ffn_gate_inp_shexp.weight", il);
                    if (get_t(L, nm, 0, E, 0, 0, &g1, NULL) < 0)
                        return -1;
                    ly->gate_inp_sh = g1;
                    if (g1.data)
                        I->has_shared_gate = 1;
                }
                if (nsh > n_ff_sh)
                    n_ff_sh = nsh;
            }
        }
    }
    I->n_ff_exp = n_ff_exp < 0 ? 0 : n_ff_exp;
    I->n_ff_shexp = n_ff_sh;
    if (n_ff_dense > I->n_ff)
        I->n_ff = n_ff_dense;
    m->n_ff_max = I->n_ff_exp;
    if (n_ff_sh > m->n_ff_max)
        m->n_ff_max = n_ff_sh;
    if (n_ff_dense > m->n_ff_max)
        m->n_ff_max = n_ff_dense;
    return 0;
}

static const char *most_common_type(const Gguf *g)
{
    uint64_t bytes[QT_COUNT] = { 0 };
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].n_dims >= 2 && g->tensors[i].type < QT_COUNT)
            bytes[g->tensors[i].type] += g->tensors[i].nbytes;
    int best = 0;
    for (int t = 1; t < QT_COUNT; t++)
        if (bytes[t] > bytes[best])
            best = t;
    const EngQTraits *tr = eng_qtraits((uint32_t)best);
    return tr ? tr->name : "?";
}

static void escape_into(char *dst, size_t cap, const char *s, uint64_t n)
{
    size_t o = 0;
    for (uint64_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", c);
        else
            dst[o++] = (char)c;
    }
    dst[o] = 0;
}

EngModel *eng_model_open(const char *path, EngErr *err)
{
    EngModel *m = calloc(1, sizeof *m);
    if (!m) {
        seterr(err, ENG_E_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    snprintf(m->path, sizeof m->path, "%s", path);
    char gerr[512];
    GgufError ge = gguf_open(path, &m->g, gerr, sizeof gerr);
    if (ge != GGUF_OK) {
        seterr(err, ge == GGUF_E_IO ? ENG_E_IO : ge == GGUF_E_NOMEM ? ENG_E_NOMEM : ENG_E_FORMAT,
               "%s", gerr);
        if (err)
            err->detail = (int)ge;
        free(m);
        return NULL;
    }
    EngInfo *I = &m->info;
    I->file_size = m->g->size;
    GgufStr as;
    int r = gguf_get_str(m->g, "general.architecture", &as);
    if (r != 1) {
        seterr(err, ENG_E_MODEL, "%s: key 'general.architecture' is %s", path,
               r == 0 ? "missing" : "not a string");
        goto fail;
    }
    I->arch = ENG_ARCH_COUNT;
    for (int a = 0; a < ENG_ARCH_COUNT; a++)
        if (gguf_str_eq(as, arch_names[a]))
            I->arch = (EngArch)a;
    if (I->arch == ENG_ARCH_COUNT) {
        char nb[128];
        escape_into(nb, sizeof nb, as.ptr, as.len);
        seterr(err, ENG_E_UNSUPPORTED,
               "%s: architecture '%s' is not supported (supported: llama (with experts), olmoe, "
               "qwen2moe, granitemoe, deepseek2, qwen3moe, gpt-oss, glm4moe)", path, nb);
        goto fail;
    }
    I->arch_name = arch_names[I->arch];
    GgufStr ns;
    if (gguf_get_str(m->g, "general.name", &ns) == 1)
        escape_into(I->name, sizeof I->name, ns.ptr, ns.len);
    Ld L = { m, path, I->arch_name, err };
    if (load_hparams(&L) < 0 || load_tensors(&L) < 0)
        goto fail;

    EngErr terr = { 0 };
    m->tok = eng_tok_new(m->g, &terr);
    if (!m->tok) {
        seterr(err, terr.status ? terr.status : ENG_E_MODEL, "%s: %s", path, terr.msg);
        goto fail;
    }
    if (eng_tok_n_vocab(m->tok) != I->n_vocab) {
        seterr(err, ENG_E_MODEL,
               "%s: tokenizer has %d tokens but token_embd.weight has %d rows", path,
               eng_tok_n_vocab(m->tok), I->n_vocab);
        goto fail;
    }
    I->tok_kind = eng_tok_kind(m->tok);
    I->tok_pre = eng_tok_pre(m->tok);
    I->bos_id = eng_tok_bos(m->tok);
    I->eos_id = eng_tok_eos(m->tok);
    I->add_bos = eng_tok_add_bos(m->tok);
    I->file_type = most_common_type(m->g);
    for (uint64_t i = 0; i < m->g->n_tensors; i++)
        I->n_params += (uint64_t)m->g->tensors[i].nelem;
    return m;
fail:
    eng_model_close(m);
    return NULL;
}

void eng_model_close(EngModel *m)
{
    if (!m)
        return;
    eng_tok_free(m->tok);
    free(m->inv_freq);
    free(m->layers);
    free(m->exp_mats);
    gguf_free(m->g);
    free(m);
}

const EngInfo *eng_model_info(const EngModel *m) { return &m->info; }

int eng_layer_is_moe(const EngModel *m, int layer)
{
    return layer >= 0 && layer < m->info.n_layer && m->layers[layer].is_moe;
}

/* ---- tokenizer pass-through ------------------------------------------- */

int eng_tokenize(const EngModel *m, const char *text, size_t len, int add_special,
                 int parse_special, int32_t *out, int cap, EngErr *err)
{
    return eng_tok_encode(m->tok, text, len, add_special, parse_special, out, cap, err);
}

const char *eng_token_str(const EngModel *m, int32_t id, size_t *len)
{
    return eng_tok_str(m->tok, id, len);
}

int eng_token_to_bytes(const EngModel *m, int32_t id, char *buf, int cap)
{
    return eng_tok_to_bytes(m->tok, id, buf, cap);
}

int eng_token_is_eog(const EngModel *m, int32_t id)
{
    return eng_tok_is_eog(m->tok, id);
}

/* ---- describe ---------------------------------------------------------- */

static const char *gating_name(EngGating g)
{
    switch (g) {
    case ENG_GATE_SOFTMAX: return "softmax";
    case ENG_GATE_SIGMOID: return "sigmoid";
    case ENG_GATE_SOFTMAX_TOPK: return "softmax over the selected";
    }
    return "?";
}

void eng_model_describe(const EngModel *m, FILE *f, int verbose)
{
    const EngInfo *I = &m->info;
    int n_moe = 0;
    for (int il = 0; il < I->n_layer; il++)
        n_moe += m->layers[il].is_moe;
    fprintf(f, "file          %s (%.1f MB)\n", m->path, (double)I->file_size / 1e6);
    fprintf(f, "name          %s\n", I->name[0] ? I->name : "(none)");
    fprintf(f, "architecture  %s\n", I->arch_name);
    fprintf(f, "parameters    %llu (%.1fM)\n", (unsigned long long)I->n_params,
            (double)I->n_params / 1e6);
    fprintf(f, "weights       mostly %s\n", I->file_type);
    fprintf(f, "layers        %d (%d MoE", I->n_layer, n_moe);
    if (I->n_dense_lead)
        fprintf(f, ", first %d dense", I->n_dense_lead);
    fprintf(f, ")\n");
    fprintf(f, "embedding     %d\n", I->n_embd);
    fprintf(f, "attention     %d heads, %d kv heads, head dim %d/%d, rope %d dims %s base %g",
            I->n_head, I->n_head_kv, I->head_dim_k, I->head_dim_v, I->n_rot,
            m->rope_neox ? "neox" : "normal", I->rope_base);
    if (I->arch == ENG_ARCH_DEEPSEEK2)
        fprintf(f, ", MLA q_lora %d kv_lora %d", m->q_lora_rank, m->kv_lora_rank);
    if (m->n_swa)
        fprintf(f, ", sliding window %d on even layers, sinks", m->n_swa);
    fprintf(f, "\n");
    fprintf(f, "experts       %d per layer, top-%d, expert FFN %d\n", I->n_expert,
            I->n_expert_used, I->n_ff_exp);
    if (I->n_ff_shexp)
        fprintf(f, "shared expert FFN %d (%s)\n", I->n_ff_shexp,
                I->has_shared_gate ? "sigmoid-gated" : "ungated");
    fprintf(f, "routing       %s, weights %s", gating_name(I->gating),
            I->gating == ENG_GATE_SOFTMAX_TOPK ? "softmax of the selected"
            : I->norm_topk ? "renormalised over the top-k" : "not renormalised");
    if (I->expert_weights_scale != 1.0f)
        fprintf(f, ", scaled x%g", I->expert_weights_scale);
    if (I->has_sel_bias)
        fprintf(f, ", selection bias");
    fprintf(f, "\n");
    fprintf(f, "context       %d (trained)\n", I->n_ctx_train);
    fprintf(f, "tokenizer     %s%s%s, %d tokens, bos %d%s, eos %d\n",
            I->tok_kind == ENG_TOK_SPM ? "SentencePiece (llama)" : "byte-level BPE (gpt2)",
            I->tok_pre && I->tok_pre[0] ? ", pre " : "", I->tok_pre ? I->tok_pre : "",
            I->n_vocab, I->bos_id, I->add_bos ? " (added)" : "", I->eos_id);
    /* tensor types */
    uint64_t cnt[QT_COUNT] = { 0 }, bytes[QT_COUNT] = { 0 };
    for (uint64_t i = 0; i < m->g->n_tensors; i++) {
        uint32_t t = m->g->tensors[i].type;
        if (t < QT_COUNT) {
            cnt[t]++;
            bytes[t] += m->g->tensors[i].nbytes;
        }
    }
    fprintf(f, "tensor types ");
    for (int t = 0; t < QT_COUNT; t++)
        if (cnt[t])
            fprintf(f, " %s x%llu (%.1f MB)", eng_qtraits((uint32_t)t)->name,
                    (unsigned long long)cnt[t], (double)bytes[t] / 1e6);
    fprintf(f, "\n");
    fprintf(f, "gguf          v%u, %llu tensors, %llu keys, alignment %u\n", m->g->version,
            (unsigned long long)m->g->n_tensors, (unsigned long long)m->g->n_kv, m->g->alignment);
    if (verbose) {
        for (uint64_t i = 0; i < m->g->n_tensors; i++) {
            const GgufTensor *t = &m->g->tensors[i];
            char nb[GGUF_MAX_NAME * 4 + 8];
            escape_into(nb, sizeof nb, t->name, strlen(t->name));
            fprintf(f, "  %-40s %-6s [%lld, %lld, %lld]\n", nb, eng_qtraits(t->type)->name,
                    (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2]);
        }
    }
}
