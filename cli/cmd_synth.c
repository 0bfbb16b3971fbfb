/*
** cli/cmd_synth.c — `moescope synth`: write a GGUF model with random weights
** for a given MoE architecture and size, so speed, memory and the app can be
** tried at OLMoE-, Mixtral-, Qwen3- or DeepSeek-like scales without
** downloading weights; or (--from MODEL) rewrite an existing model with its
** matrices converted to another type.
**
** Weights are N(0, 1/sqrt(fan_in)) from a seeded generator (so the residual
** stream stays well scaled and routing is non-degenerate), norms 1, biases
** small.  The tokenizer is a synthetic SentencePiece vocabulary: <unk> <s>
** </s>, the 256 byte tokens, then made-up pieces.  Tensors are generated
** one at a time while the file is written: memory stays at one tensor.
*/
#include "cli/cmds.h"
#include "cli/opts.h"
#include "engine/eng.h"
#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "engine/qtypes.h"
#include "engine/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *arch;
    int layers, experts, k, embd, ff, heads, kv_heads, vocab, dense, shared, ctx;
    uint32_t type;
    uint64_t seed;
    /* per tensor: kind of init */
    int *init;   /* 0 random matrix, 1 ones (norm), 2 small (bias) */
    int *fan_in;
    /* --from */
    Gguf *src;
    int *src_idx;
} Synth;

/* ---- random numbers --------------------------------------------------- */

static uint64_t sm64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void gauss_fill(float *v, int64_t n, uint64_t seed, float scale)
{
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i += 2) {
        double u1 = ((double)(sm64(&s) >> 11) + 0.5) * 0x1.0p-53;
        double u2 = (double)(sm64(&s) >> 11) * 0x1.0p-53;
        double r = sqrt(-2.0 * log(u1)) * scale;
        v[i] = (float)(r * cos(6.283185307179586 * u2));
        if (i + 1 < n)
            v[i + 1] = (float)(r * sin(6.283185307179586 * u2));
    }
}

/* ---- quantizing weights ------------------------------------------------- */

static void quant_q4_0(const float *x, uint8_t *dst, int64_t n)
{
    for (int64_t b = 0; b < n / 32; b++) {
        const float *v = x + b * 32;
        float amax = 0, mx = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(v[j]) > amax) {
                amax = fabsf(v[j]);
                mx = v[j];
            }
        float d = mx / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t *o = dst + b * 18;
        uint16_t h = eng_f32_to_f16(d);
        memcpy(o, &h, 2);
        for (int j = 0; j < 16; j++) {
            int q0 = (int)(v[j] * id + 8.5f), q1 = (int)(v[j + 16] * id + 8.5f);
            q0 = q0 > 15 ? 15 : q0 < 0 ? 0 : q0;
            q1 = q1 > 15 ? 15 : q1 < 0 ? 0 : q1;
            o[2 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Convert n floats to type t at dst. */
static int encode(uint32_t t, const float *x, uint8_t *dst, int64_t n)
{
    switch (t) {
    case QT_F32: memcpy(dst, x, (size_t)n * 4); return 0;
    case QT_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = eng_f32_to_f16(x[i]);
            memcpy(dst + 2 * i, &h, 2);
        }
        return 0;
    case QT_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            u += 0x7fff + ((u >> 16) & 1);   /* round to nearest even */
            uint16_t h = (uint16_t)(u >> 16);
            memcpy(dst + 2 * i, &h, 2);
        }
        return 0;
    case QT_Q8_0: eng_quantize_q8_0_act(x, dst, n); return 0;
    case QT_Q4_0: quant_q4_0(x, dst, n); return 0;
    }
    return -1;
}

static const struct { const char *name; uint32_t t; } types[] = {
    { "f32", QT_F32 }, { "f16", QT_F16 }, { "bf16", QT_BF16 }, { "q8_0", QT_Q8_0 }, { "q4_0", QT_Q4_0 },
};

/* ---- tensor declarations ----------------------------------------------- */

typedef struct {
    EngGw *w;
    Synth *s;
    int err;
} Decl;

static void T(Decl *d, const char *name, int init, int fan_in, int n_dims, int64_t a, int64_t b,
              int64_t c)
{
    int64_t ne[3] = { a, b, c };
    /* matrices take the chosen type when their rows fit its blocks */
    uint32_t t = QT_F32;
    if (n_dims >= 2 && init == 0) {
        const EngQTraits *tr = eng_qtraits(d->s->type);
        t = (a % tr->blck == 0) ? d->s->type : QT_F16;
    }
    int i = eng_gw_tensor(d->w, name, t, n_dims, ne);
    if (i < 0) {
        d->err = 1;
        return;
    }
    d->s->init[i] = init;
    d->s->fan_in[i] = fan_in;
}

static void L(Decl *d, int il, const char *suffix, int init, int fan_in, int n_dims, int64_t a,
              int64_t b, int64_t c)
{
    char nm[96];
    snprintf(nm, sizeof nm, "blk.%d.%s", il, suffix);
    T(d, nm, init, fan_in, n_dims, a, b, c);
}

static int declare(Synth *s, EngGw *w)
{
    Decl D = { w, s, 0 }, *d = &D;
    const char *a = s->arch;
    int E = s->embd, H = s->heads, Hkv = s->kv_heads, hd = E / H, X = s->experts, F = s->ff;
    int is_ds = !strcmp(a, "deepseek2"), is_glm = !strcmp(a, "glm4moe"),
        is_oss = !strcmp(a, "gpt-oss"), is_q3 = !strcmp(a, "qwen3moe"),
        is_q2 = !strcmp(a, "qwen2moe"), is_olmoe = !strcmp(a, "olmoe");
    char k[128];
#define KEY(suffix) (snprintf(k, sizeof k, "%s.%s", a, suffix), k)
    eng_gw_str(w, "general.architecture", a);
    eng_gw_str(w, "general.name", "moescope-synth");
    eng_gw_u32(w, KEY("vocab_size"), (uint32_t)s->vocab);
    eng_gw_u32(w, KEY("context_length"), (uint32_t)s->ctx);
    eng_gw_u32(w, KEY("embedding_length"), (uint32_t)E);
    eng_gw_u32(w, KEY("block_count"), (uint32_t)s->layers);
    eng_gw_u32(w, KEY("feed_forward_length"), (uint32_t)(s->dense ? 3 * F : F));
    eng_gw_u32(w, KEY("expert_feed_forward_length"), (uint32_t)F);
    eng_gw_u32(w, KEY("attention.head_count"), (uint32_t)H);
    eng_gw_u32(w, KEY("attention.head_count_kv"), (uint32_t)(is_ds ? H : Hkv));
    eng_gw_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
    eng_gw_f32(w, KEY("rope.freq_base"), 10000.0f);
    eng_gw_u32(w, KEY("expert_count"), (uint32_t)X);
    eng_gw_u32(w, KEY("expert_used_count"), (uint32_t)s->k);
    if (s->dense)
        eng_gw_u32(w, KEY("leading_dense_block_count"), (uint32_t)s->dense);
    if (s->shared)
        eng_gw_u32(w, KEY("expert_shared_count"), (uint32_t)s->shared);
    int hk = hd, hv = hd, kvl = 0, rope = hd, nope = 0;
    if (is_ds) {
        kvl = E / 4 > 64 ? 512 < E / 4 ? 512 : E / 4 : 64;
        rope = 64 < hd / 2 ? 64 : hd / 2 - (hd / 2) % 2;
        nope = hd;
        hk = nope + rope;
        hv = hd;
        eng_gw_u32(w, KEY("attention.kv_lora_rank"), (uint32_t)kvl);
        eng_gw_u32(w, KEY("attention.key_length"), (uint32_t)hk);
        eng_gw_u32(w, KEY("attention.value_length"), (uint32_t)hv);
        eng_gw_u32(w, KEY("rope.dimension_count"), (uint32_t)rope);
    }
    if (is_ds || is_glm) {
        eng_gw_u32(w, KEY("expert_gating_func"), 2);
        eng_gw_f32(w, KEY("expert_weights_scale"), 2.5f);
        eng_gw_bool(w, KEY("expert_weights_norm"), 1);
    }
    if (is_oss)
        eng_gw_u32(w, KEY("attention.sliding_window"), 128);
    if (is_q3 || is_oss || is_glm) {
        eng_gw_u32(w, KEY("attention.key_length"), (uint32_t)hd);
        eng_gw_u32(w, KEY("attention.value_length"), (uint32_t)hd);
    }
#undef KEY
    /* tokenizer */
    int V = s->vocab;
    char **toks = calloc((size_t)V, sizeof *toks);
    float *scores = calloc((size_t)V, sizeof *scores);
    int32_t *tt = calloc((size_t)V, sizeof *tt);
    if (!toks || !scores || !tt) {
        free(toks);
        free(scores);
        free(tt);
        return -1;
    }
    for (int i = 0; i < V; i++) {
        char b[32];
        if (i == 0)
            snprintf(b, sizeof b, "<unk>");
        else if (i == 1)
            snprintf(b, sizeof b, "<s>");
        else if (i == 2)
            snprintf(b, sizeof b, "</s>");
        else if (i < 259)
            snprintf(b, sizeof b, "<0x%02X>", i - 3);
        else {
            /* "\xe2\x96\x81" is U+2581, the SentencePiece space */
            int x = i - 259, o = 0;
            o += snprintf(b, sizeof b, "%s", (x & 1) ? "\xe2\x96\x81" : "");
            x >>= 1;
            do {
                b[o++] = (char)('a' + x % 26);
                x /= 26;
            } while (x && o < 28);
            b[o] = 0;
        }
        toks[i] = strdup(b);
        scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
        tt[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    eng_gw_str(w, "tokenizer.ggml.model", "llama");
    eng_gw_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, V);
    eng_gw_arr_f32(w, "tokenizer.ggml.scores", scores, V);
    eng_gw_arr_i32(w, "tokenizer.ggml.token_type", tt, V);
    eng_gw_u32(w, "tokenizer.ggml.bos_token_id", 1);
    eng_gw_u32(w, "tokenizer.ggml.eos_token_id", 2);
    eng_gw_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    for (int i = 0; i < V; i++)
        free(toks[i]);
    free(toks);
    free(scores);
    free(tt);

    T(d, "token_embd.weight", 0, 1, 2, E, V, 0);
    T(d, "output_norm.weight", 1, 0, 1, E, 0, 0);
    T(d, "output.weight", 0, E, 2, E, V, 0);
    for (int il = 0; il < s->layers; il++) {
        L(d, il, "attn_norm.weight", 1, 0, 1, E, 0, 0);
        if (is_ds) {
            L(d, il, "attn_q.weight", 0, E, 2, E, (int64_t)H * hk, 0);
            L(d, il, "attn_kv_a_mqa.weight", 0, E, 2, E, kvl + rope, 0);
            L(d, il, "attn_kv_a_norm.weight", 1, 0, 1, kvl, 0, 0);
            L(d, il, "attn_kv_b.weight", 0, kvl, 2, kvl, (int64_t)H * (nope + hv), 0);
        } else {
            L(d, il, "attn_q.weight", 0, E, 2, E, (int64_t)H * hd, 0);
            L(d, il, "attn_k.weight", 0, E, 2, E, (int64_t)Hkv * hd, 0);
            L(d, il, "attn_v.weight", 0, E, 2, E, (int64_t)Hkv * hd, 0);
            if (is_q2 || is_oss || is_glm) {
                L(d, il, "attn_q.bias", 2, 0, 1, (int64_t)H * hd, 0, 0);
                L(d, il, "attn_k.bias", 2, 0, 1, (int64_t)Hkv * hd, 0, 0);
                L(d, il, "attn_v.bias", 2, 0, 1, (int64_t)Hkv * hd, 0, 0);
            }
            if (is_olmoe) {
                L(d, il, "attn_q_norm.weight", 1, 0, 1, (int64_t)H * hd, 0, 0);
                L(d, il, "attn_k_norm.weight", 1, 0, 1, (int64_t)Hkv * hd, 0, 0);
            }
            if (is_q3) {
                L(d, il, "attn_q_norm.weight", 1, 0, 1, hd, 0, 0);
                L(d, il, "attn_k_norm.weight", 1, 0, 1, hd, 0, 0);
            }
            if (is_oss)
                L(d, il, "attn_sinks.weight", 2, 0, 1, H, 0, 0);
        }
        L(d, il, "attn_output.weight", 0, H * hv, 2, (int64_t)H * hv, E, 0);
        if (is_oss)
            L(d, il, "attn_output.bias", 2, 0, 1, E, 0, 0);
        L(d, il, (is_oss || is_glm) ? "post_attention_norm.weight" : "ffn_norm.weight", 1, 0, 1, E, 0, 0);
        if (il < s->dense) {
            L(d, il, "ffn_gate.weight", 0, E, 2, E, 3 * F, 0);
            L(d, il, "ffn_up.weight", 0, E, 2, E, 3 * F, 0);
            L(d, il, "ffn_down.weight", 0, 3 * F, 2, 3 * F, E, 0);
            continue;
        }
        L(d, il, "ffn_gate_inp.weight", 0, E, 2, E, X, 0);
        if (is_oss)
            L(d, il, "ffn_gate_inp.bias", 2, 0, 1, X, 0, 0);
        if (is_ds || is_glm)
            L(d, il, "exp_probs_b.bias", 2, 0, 1, X, 0, 0);
        L(d, il, "ffn_gate_exps.weight", 0, E, 3, E, F, X);
        L(d, il, "ffn_up_exps.weight", 0, E, 3, E, F, X);
        L(d, il, "ffn_down_exps.weight", 0, F, 3, F, E, X);
        if (is_oss) {
            L(d, il, "ffn_gate_exps.bias", 2, 0, 2, F, X, 0);
            L(d, il, "ffn_up_exps.bias", 2, 0, 2, F, X, 0);
            L(d, il, "ffn_down_exps.bias", 2, 0, 2, E, X, 0);
        }
        if (s->shared || is_q2) {
            int sh = F * (s->shared ? s->shared : 1);
            L(d, il, "ffn_gate_shexp.weight", 0, E, 2, E, sh, 0);
            L(d, il, "ffn_up_shexp.weight", 0, E, 2, E, sh, 0);
            L(d, il, "ffn_down_shexp.weight", 0, sh, 2, sh, E, 0);
            if (is_q2)
                L(d, il, "ffn_gate_inp_shexp.weight", 0, E, 1, E, 0, 0);
        }
    }
    return d->err ? -1 : 0;
}

typedef struct {
    Synth *s;
    EngGw *w;
    uint32_t *type;
    int64_t *nel;
    int n;
    float *tmp;
    int done;
    uint64_t bytes_done, bytes_total;
} Gen;

static int gen_fill(void *user, int i, uint8_t *buf, uint64_t nbytes)
{
    Gen *g = user;
    Synth *s = g->s;
    int64_t n = g->nel[i];
    const int64_t chunk = 1 << 20;
    const EngQTraits *tr = eng_qtraits(g->type[i]);
    for (int64_t off = 0; off < n; off += chunk) {
        int64_t m = n - off < chunk ? n - off : chunk;
        float *v = g->tmp;
        if (s->src) {
            const GgufTensor *t = &s->src->tensors[s->src_idx[i]];
            const EngQTraits *st = eng_qtraits(t->type);
            eng_dequant(t->type, t->data + (uint64_t)off / (uint64_t)st->blck * (uint64_t)st->size, v, m);
        } else if (s->init[i] == 1) {
            for (int64_t j = 0; j < m; j++)
                v[j] = 1.0f;
        } else {
            uint64_t seed = s->seed * 1000003ULL + (uint64_t)i * 7919ULL + (uint64_t)off;
            float sc = s->init[i] == 2 ? 0.02f : 1.0f / sqrtf((float)(s->fan_in[i] > 0 ? s->fan_in[i] : 1));
            gauss_fill(v, m, seed, sc);
        }
        if (encode(g->type[i], v, buf + (uint64_t)off / (uint64_t)tr->blck * (uint64_t)tr->size, m) < 0)
            return -1;
    }
    (void)nbytes;
    g->bytes_done += nbytes;
    if (isatty(2) || g->done++ % 64 == 0)
        fprintf(stderr, "\r  %.0f / %.0f MB", (double)g->bytes_done / 1e6, (double)g->bytes_total / 1e6);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: moescope synth --arch A [size options] [--type T] -o FILE.gguf\n"
        "       moescope synth --from MODEL --type T -o FILE.gguf\n"
        "  Write a model with random weights (for speed and scale tests), or rewrite\n"
        "  MODEL with its matrices converted to type T.\n\n"
        "  --arch A       olmoe, llama (Mixtral), qwen2moe, qwen3moe, deepseek2, glm4moe, gpt-oss\n"
        "  --layers N     layers (default 4)          --experts N  experts per layer (16)\n"
        "  --k N          experts per token (2)       --embd N     model width (256)\n"
        "  --ff N         expert FFN width (256)      --heads N    attention heads (8)\n"
        "  --kv-heads N   (default heads)             --vocab N    vocabulary (4096)\n"
        "  --dense N      leading dense layers (0)    --shared N   shared experts (0)\n"
        "  --type T       f32, f16, bf16, q8_0, q4_0 (default q8_0)\n"
        "  --seed S       (default 1)                 --ctx N      context length (4096)\n");
}

static int parse_type(const char *v, uint32_t *t)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(v, types[i].name)) {
            *t = types[i].t;
            return 0;
        }
    fprintf(stderr, "moescope synth: --type '%s': expected f32, f16, bf16, q8_0 or q4_0\n", v);
    return -1;
}

int cli_cmd_synth(int argc, char **argv)
{
    Synth s = { 0 };
    s.arch = NULL;
    s.layers = 4;
    s.experts = 16;
    s.k = 2;
    s.embd = 256;
    s.ff = 256;
    s.heads = 8;
    s.kv_heads = 0;
    s.vocab = 4096;
    s.ctx = 4096;
    s.seed = 1;
    s.type = QT_Q8_0;
    const char *out = NULL, *from = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long l;
        struct { const char *opt; int *dst; long lo, hi; } ints[] = {
            { "--layers", &s.layers, 1, ENG_MAX_LAYERS }, { "--experts", &s.experts, 1, 1024 },
            { "--k", &s.k, 1, 1024 }, { "--embd", &s.embd, 32, 65536 }, { "--ff", &s.ff, 32, 1 << 18 },
            { "--heads", &s.heads, 1, 1024 }, { "--kv-heads", &s.kv_heads, 1, 1024 },
            { "--vocab", &s.vocab, 260, 1 << 20 }, { "--dense", &s.dense, 0, ENG_MAX_LAYERS },
            { "--shared", &s.shared, 0, 64 }, { "--ctx", &s.ctx, 16, 1 << 20 },
        };
        int hit = 0;
        for (size_t j = 0; j < sizeof ints / sizeof ints[0]; j++)
            if (!strcmp(a, ints[j].opt)) {
                if (!(v = cli_opt_value("synth", argc, argv, &i)) ||
                    cli_opt_int("synth", a, v, ints[j].lo, ints[j].hi, &l) < 0)
                    return 2;
                *ints[j].dst = (int)l;
                hit = 1;
            }
        if (hit)
            continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--arch")) {
            if (!(s.arch = cli_opt_value("synth", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--type")) {
            if (!(v = cli_opt_value("synth", argc, argv, &i)) || parse_type(v, &s.type) < 0)
                return 2;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = cli_opt_value("synth", argc, argv, &i)) || cli_opt_u64("synth", a, v, &s.seed) < 0)
                return 2;
        } else if (!strcmp(a, "-o")) {
            if (!(out = cli_opt_value("synth", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--from")) {
            if (!(from = cli_opt_value("synth", argc, argv, &i)))
                return 2;
        } else {
            fprintf(stderr, "moescope synth: unknown argument '%s' (see moescope synth --help)\n", a);
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "moescope synth: -o FILE.gguf is required\n");
        return 2;
    }
    if (!from && !s.arch) {
        fprintf(stderr, "moescope synth: give --arch (or --from MODEL)\n");
        return 2;
    }
    static const char *archs[] = { "olmoe", "llama", "qwen2moe", "qwen3moe", "deepseek2", "glm4moe", "gpt-oss" };
    if (!from) {
        int ok = 0;
        for (size_t j = 0; j < sizeof archs / sizeof archs[0]; j++)
            ok |= !strcmp(s.arch, archs[j]);
        if (!ok) {
            fprintf(stderr, "moescope synth: --arch '%s': expected olmoe, llama, qwen2moe, qwen3moe, "
                            "deepseek2, glm4moe or gpt-oss\n", s.arch);
            return 2;
        }
        if (!s.kv_heads)
            s.kv_heads = s.heads;
        if (s.k > s.experts || s.embd % s.heads || (s.embd / s.heads) % 2 || s.heads % s.kv_heads ||
            s.dense >= s.layers) {
            fprintf(stderr, "moescope synth: inconsistent sizes: need k <= experts (%d > %d?), "
                            "embd divisible by heads into an even head size (%d / %d), heads "
                            "divisible by kv-heads, dense < layers\n",
                    s.k, s.experts, s.embd, s.heads);
            return 2;
        }
    }
    EngGw *w = eng_gw_new();
    char err[600];
    int rc = 1;
    Gen g = { 0 };
    if (!w) {
        fprintf(stderr, "moescope synth: out of memory\n");
        return 1;
    }
    int maxt = from ? 0 : 16 + s.layers * 32;
    if (from) {
        GgufError ge = gguf_open(from, &s.src, err, sizeof err);
        if (ge) {
            fprintf(stderr, "moescope synth: %s\n", err);
            goto done;
        }
        maxt = (int)s.src->n_tensors;
        for (uint64_t i = 0; i < s.src->n_kv; i++) {
            const GgufKV *kv = &s.src->kv[i];
            if (gguf_str_eq(kv->key, "general.alignment"))
                continue;
            if (gguf_str_eq(kv->key, "general.file_type"))
                continue;
            eng_gw_copy_kv(w, kv);
        }
    }
    s.init = calloc((size_t)maxt + 1, sizeof(int));
    s.fan_in = calloc((size_t)maxt + 1, sizeof(int));
    s.src_idx = calloc((size_t)maxt + 1, sizeof(int));
    if (!s.init || !s.fan_in || !s.src_idx) {
        fprintf(stderr, "moescope synth: out of memory\n");
        goto done;
    }
    if (from) {
        for (uint64_t i = 0; i < s.src->n_tensors; i++) {
            const GgufTensor *t = &s.src->tensors[i];
            const EngQTraits *tr = eng_qtraits(t->type);
            if (!tr->weight) {
                fprintf(stderr, "moescope synth: %s: tensor '%s' has type %s, which cannot be converted\n",
                        from, t->name, tr->name);
                goto done;
            }
            uint32_t nt = t->n_dims >= 2 && t->ne[0] % eng_qtraits(s.type)->blck == 0 ? s.type
                          : t->type == QT_F32 || t->n_dims < 2 ? QT_F32 : QT_F16;
            int idx = eng_gw_tensor(w, t->name, nt, (int)t->n_dims, t->ne);
            if (idx < 0) {
                fprintf(stderr, "moescope synth: %s: cannot declare tensor '%s'\n", out, t->name);
                goto done;
            }
            s.src_idx[idx] = (int)i;
        }
    } else if (declare(&s, w) < 0) {
        fprintf(stderr, "moescope synth: cannot build the tensor list (out of memory or a bad size)\n");
        goto done;
    }
    g.s = &s;
    g.w = w;
    g.n = maxt;
    g.type = calloc((size_t)maxt + 1, sizeof *g.type);
    g.nel = calloc((size_t)maxt + 1, sizeof *g.nel);
    g.tmp = malloc(((size_t)1 << 20) * sizeof(float));
    if (!g.type || !g.nel || !g.tmp) {
        fprintf(stderr, "moescope synth: out of memory\n");
        goto done;
    }
    for (int i = 0; i < maxt; i++)
        if (eng_gw_tensor_info(w, i, &g.type[i], &g.nel[i]) < 0)
            break;
    g.bytes_total = eng_gw_total_bytes(w);
    fprintf(stderr, "moescope synth: writing %s (%.1f MB)\n", out, (double)g.bytes_total / 1e6);
    if (eng_gw_write(w, out, gen_fill, &g, err, sizeof err) < 0) {
        fprintf(stderr, "\nmoescope synth: %s\n", err);
        goto done;
    }
    fprintf(stderr, "\n");
    /* prove the result loads */
    EngErr ee = { 0 };
    EngModel *m = eng_model_open(out, &ee);
    if (!m) {
        fprintf(stderr, "moescope synth: the written file does not load: %s\n", ee.msg);
        goto done;
    }
    eng_model_describe(m, stdout, 0);
    eng_model_close(m);
    rc = 0;
done:
    eng_gw_free(w);
    gguf_free(s.src);
    free(s.init);
    free(s.fan_in);
    free(s.src_idx);
    free(g.type);
    free(g.nel);
    free(g.tmp);
    return rc;
}
