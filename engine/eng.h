/*
** engine/eng.h — the public face of moescope's inference engine.
**
** The engine runs a Mixture-of-Experts GGUF model on the CPU, exactly as
** llama.cpp computes it, and reports every routing decision through a
** callback: for each position and each MoE layer, the router logits, the
** experts chosen (in selection order), their selection scores and the weights
** actually applied.  It does no I/O during a forward pass; what to do with a
** route is the caller's business (the db layer logs it, tests compare it).
**
** Objects and lifetimes:
**   EngModel  — an opened GGUF file: metadata, tokenizer, weight views into
**               the mmapped file.  Immutable after open, shareable by threads.
**   EngCtx    — one inference stream over a model: KV cache, scratch, the
**               thread pool, interventions.  Not thread-safe; one per thread.
**   EngSampler— sampling settings + RNG state.
**
** Errors: functions return an EngStatus (ENG_OK == 0) or NULL, and fill an
** EngErr with a message that names the file, field, value and what was
** expected.  Nothing here calls exit() or abort() on bad input.
*/
#ifndef ENG_H
#define ENG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- errors ---------------------------------------------------------- */

typedef enum {
    ENG_OK = 0,
    ENG_E_IO,           /* open/stat/mmap failed */
    ENG_E_NOMEM,        /* allocation failed */
    ENG_E_FORMAT,       /* the GGUF file is malformed (see EngErr.detail) */
    ENG_E_UNSUPPORTED,  /* well-formed but not something we run (arch, type) */
    ENG_E_MODEL,        /* required key/tensor missing or of the wrong shape */
    ENG_E_ARG,          /* bad argument from the caller (e.g. an L:E spec) */
    ENG_E_CTX,          /* context full, position out of range */
} EngStatus;

typedef struct {
    EngStatus status;
    int detail;         /* finer code, e.g. a GgufError for ENG_E_FORMAT */
    char msg[512];
} EngErr;

/* Human-readable name of a status ("format error", ...). Can't fail. */
const char *eng_status_str(EngStatus s);

/* ---- model ----------------------------------------------------------- */

typedef enum {
    ENG_ARCH_LLAMA = 0,  /* Mixtral-style (llama with experts) */
    ENG_ARCH_OLMOE,
    ENG_ARCH_QWEN2MOE,
    ENG_ARCH_GRANITEMOE,
    ENG_ARCH_DEEPSEEK2,
    ENG_ARCH_QWEN3MOE,
    ENG_ARCH_GPTOSS,
    ENG_ARCH_GLM4MOE,
    ENG_ARCH_COUNT
} EngArch;

typedef enum {
    ENG_GATE_SOFTMAX = 0,     /* softmax over all router logits */
    ENG_GATE_SIGMOID,         /* sigmoid per expert (deepseek2, glm4moe) */
    ENG_GATE_SOFTMAX_TOPK,    /* softmax over the selected logits (gpt-oss) */
} EngGating;

typedef enum { ENG_TOK_SPM = 0, ENG_TOK_BPE } EngTokKind;

#define ENG_MAX_LAYERS 512

typedef struct {
    EngArch arch;
    const char *arch_name;    /* GGUF general.architecture */
    char name[128];           /* general.name, control chars escaped */
    uint64_t file_size;
    int n_vocab, n_embd, n_layer, n_ctx_train;
    int n_head, n_head_kv, head_dim_k, head_dim_v, n_rot;
    int n_expert, n_expert_used, n_expert_shared;
    int n_ff, n_ff_exp, n_ff_shexp;
    int n_dense_lead;         /* leading dense layers (deepseek2, glm4moe) */
    EngGating gating;
    int norm_topk;            /* weights renormalised over the chosen set */
    float expert_weights_scale;
    int has_sel_bias;         /* exp_probs_b or router bias changes selection */
    int has_shared_gate;      /* qwen2moe: sigmoid-gated shared expert */
    float rope_base, norm_eps;
    EngTokKind tok_kind;
    const char *tok_pre;      /* pre-tokenizer name (BPE) or "" */
    int bos_id, eos_id, add_bos;
    uint64_t n_params;        /* elements over all tensors */
    const char *file_type;    /* e.g. "Q8_0" (most common matrix type) */
} EngInfo;

typedef struct EngModel EngModel;

/* Open and validate a GGUF model.  Returns NULL and fills err on failure:
** the file is untrusted, every field is checked before use.  The model keeps
** the file mmapped until eng_model_close(). */
EngModel *eng_model_open(const char *path, EngErr *err);
void eng_model_close(EngModel *m);                  /* accepts NULL */
const EngInfo *eng_model_info(const EngModel *m);   /* can't fail */
int eng_layer_is_moe(const EngModel *m, int layer); /* 1 if routed */

/* Write a multi-line human summary (moescope info) to f: metadata, tensor
** types and counts.  Strings from the file are printed with control
** characters escaped. */
void eng_model_describe(const EngModel *m, FILE *f, int verbose);

/* ---- tokenizer ------------------------------------------------------- */

/* Tokenize len bytes of text.  add_special adds BOS/EOS as the file says;
** parse_special recognises special-token text (<|endoftext|>...).
** Writes at most cap ids and returns the number of tokens the text needs
** (which may exceed cap: call again with a bigger buffer), or -1 with err
** filled on failure. */
int eng_tokenize(const EngModel *m, const char *text, size_t len,
                 int add_special, int parse_special,
                 int32_t *out, int cap, EngErr *err);

/* The raw vocabulary string of a token (as stored in the file, e.g. "▁the",
** "Ġthe", "<0x0A>").  NULL for an id out of range.  *len receives its length. */
const char *eng_token_str(const EngModel *m, int32_t id, size_t *len);

/* The bytes a token stands for in text (▁ → space, <0x0A> → "\n", byte-level
** BPE unmapped; control tokens give "").  Writes at most cap bytes, returns
** the full length. */
int eng_token_to_bytes(const EngModel *m, int32_t id, char *buf, int cap);

/* The file's tokenizer.chat_template (not NUL-terminated), or NULL. */
const char *eng_model_chat_template(const EngModel *m, size_t *len);

/* 1 if id ends generation (EOS, EOT, <|im_end|> ...). */
int eng_token_is_eog(const EngModel *m, int32_t id);

/* ---- interventions --------------------------------------------------- */

typedef enum {
    ENG_IV_BIAS = 0,    /* l[e] += value */
    ENG_IV_DISABLE,     /* e never chosen */
    ENG_IV_FORCE,       /* e always chosen */
    ENG_IV_TOPK,        /* k' experts instead of the model's k (value = k') */
    ENG_IV_TOPP,        /* smallest set with mass >= value, at most cap */
} EngIvKind;

typedef enum {
    ENG_SCOPE_ALL = 0,
    ENG_SCOPE_PROMPT,   /* prompt (prefill) positions only */
    ENG_SCOPE_GEN,      /* generated positions only */
    ENG_SCOPE_FROM,     /* positions >= from_pos */
} EngScope;

typedef struct {
    EngIvKind kind;
    int layer;          /* absolute layer, -1 = every MoE layer */
    int expert;         /* ignored for TOPK/TOPP */
    float value;        /* bias, k' (TOPK), p (TOPP) */
    int cap;            /* TOPP: max experts (0 = n_expert) */
    EngScope scope;
    int from_pos;       /* ENG_SCOPE_FROM */
} EngIv;

/* Parse a command-line list "L:E,L:E" (disable/force), "L:E=B,…" (bias);
** L may be '*'.  Appends to out (at most cap entries), returns the count
** added or -1 with err naming the bad item and the valid ranges for m. */
int eng_iv_parse(const EngModel *m, EngIvKind kind, const char *spec,
                 EngIv *out, int cap, EngErr *err);
/* Parse a scope "all|prompt|gen|from:T" into scope/from_pos; -1 on error. */
int eng_scope_parse(const char *s, EngScope *scope, int *from_pos, EngErr *err);
/* Format one intervention as the command line would say it, e.g.
** "disable 2:11 (all)".  Returns bytes written (snprintf semantics). */
int eng_iv_format(const EngIv *iv, char *buf, size_t cap);

/* ---- routes ---------------------------------------------------------- */

typedef struct {
    int pos;                /* absolute position in the sequence */
    int layer;              /* absolute layer index */
    int is_prompt;          /* 1 for prefill positions */
    int n_expert;
    int k;                  /* number chosen (may differ from model k) */
    const float *logits;    /* n_expert router logits W_gate.x (no bias,
                               before interventions) */
    const int32_t *experts; /* k chosen experts in selection order */
    const float *scores;    /* k selection scores (after interventions:
                               prob for softmax, sigmoid+bias, logit+bias) */
    const float *weights;   /* k weights applied to the expert outputs */
    float shared_gate;      /* qwen2moe shared-expert gate, 1 if ungated
                               shared experts, 0 if none */
    const int32_t *token;   /* the token at pos (pointer to one id) */
} EngRoute;

/* Called once per (position, MoE layer), positions in increasing order per
** layer batch.  Pointers are valid only during the call. */
typedef void (*EngRouteFn)(void *user, const EngRoute *r);

/* ---- inference context ----------------------------------------------- */

typedef struct {
    int n_ctx;          /* max positions (0 = min(model n_ctx_train, 4096)) */
    int n_threads;      /* 0 = 2 */
    int n_batch;        /* prompt chunk (0 = 256) */
    int qact;           /* 1: quantize activations to Q8_0/Q8_1 for the weight
                           types that have integer kernels (Q8_0, Q4_0, Q4_1,
                           Q5_0, Q5_1, MXFP4), as llama.cpp's CPU backend does:
                           faster, and llama.cpp's own arithmetic.  0 (default):
                           F32 activations, equal to llama.cpp on the weights
                           dequantized to F32. */
} EngCtxParams;

typedef struct EngCtx EngCtx;

EngCtx *eng_ctx_new(const EngModel *m, const EngCtxParams *p, EngErr *err);
void eng_ctx_free(EngCtx *c);                 /* accepts NULL */
void eng_ctx_set_route_fn(EngCtx *c, EngRouteFn fn, void *user);
/* Replace the interventions (copied).  Validates layers/experts against the
** model; returns ENG_E_ARG with err filled on a bad one. */
EngStatus eng_ctx_set_ivs(EngCtx *c, const EngIv *ivs, int n, EngErr *err);
/* Forget the sequence (KV cache) and start at position 0. */
void eng_ctx_reset(EngCtx *c);
int eng_ctx_pos(const EngCtx *c);             /* positions evaluated so far */
int eng_ctx_n_ctx(const EngCtx *c);

/* Evaluate n tokens at positions pos..pos+n-1 (pos = eng_ctx_pos()).
** is_prompt marks them for scopes and route records.  If all_logits is not
** NULL it receives n × n_vocab logits; the last position's logits are always
** available from eng_ctx_logits().  Returns ENG_E_CTX when the context is
** full. */
EngStatus eng_decode(EngCtx *c, const int32_t *tokens, int n, int is_prompt,
                     float *all_logits, EngErr *err);
const float *eng_ctx_logits(const EngCtx *c); /* n_vocab floats */

/* ---- sampling -------------------------------------------------------- */

typedef struct {
    float temp;         /* <= 0 or greedy: argmax */
    int top_k;          /* 0 = off */
    float top_p;        /* 1 = off */
    uint64_t seed;
    int greedy;
} EngSampleParams;

typedef struct { uint64_t s[2]; EngSampleParams p; float *buf; int *idx; int n; } EngSampler;

EngStatus eng_sampler_init(EngSampler *s, const EngSampleParams *p, int n_vocab);
void eng_sampler_done(EngSampler *s);
/* Choose the next token.  Deterministic for a given seed and logits. */
int32_t eng_sample(EngSampler *s, const float *logits);
/* log-softmax of the chosen id and the top n alternatives (ids descending by
** logit); returns the chosen token's logprob. */
float eng_logprobs(const float *logits, int n_vocab, int32_t chosen,
                   int n_top, int32_t *top_ids, float *top_lp);

#endif
