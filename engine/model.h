/*
** engine/model.h — internal: the loaded model (hyperparameters + weight views)
** shared by model.c (loading, validation) and forward.c (the forward pass).
**
** Weights are views into the mmapped GGUF file, never copies.  A Mat is one
** 2-D matrix: nrows rows of ncols values each, row r at data + r*row_bytes,
** and y = W x means y[r] = dot(row r, x).  Expert weights are one Mat per
** expert (views into a 3-D tensor, or separate tensors in old Mixtral files).
*/
#ifndef ENG_MODEL_H
#define ENG_MODEL_H

#include "engine/eng.h"
#include "engine/gguf.h"
#include "engine/tok.h"

typedef struct {
    const uint8_t *data;   /* NULL when the tensor is absent */
    uint32_t type;
    int64_t ncols, nrows;
    uint64_t row_bytes;
} Mat;

typedef struct {
    /* attention */
    Mat attn_norm;              /* (n_embd) */
    Mat wq, wk, wv, wo;         /* (n_embd -> n_head*hd_k), ..., (n_head*hd_v -> n_embd) */
    Mat bq, bk, bv, bo;         /* biases, optional */
    Mat q_norm, k_norm;         /* olmoe: full q/k; qwen3moe: per head */
    Mat sinks;                  /* gpt-oss: (n_head) */
    /* MLA (deepseek2) */
    Mat wq_a, q_a_norm, wq_b;   /* q LoRA, or wq when q_lora_rank == 0 */
    Mat wkv_a, kv_a_norm, wkv_b;
    Mat wk_b, wv_b;             /* split form: (qk_nope x kv_lora) and (kv_lora -> hv) per head */
    /* feed-forward */
    Mat ffn_norm;               /* ffn_norm or post_attention_norm */
    Mat ffn_gate, ffn_up, ffn_down;          /* dense layer */
    Mat gate_inp, gate_inp_b, exp_probs_b;   /* router (n_embd -> n_expert) */
    Mat *gate_e, *up_e, *down_e;             /* n_expert each */
    Mat *gate_eb, *up_eb, *down_eb;          /* gpt-oss expert biases */
    Mat gate_sh, up_sh, down_sh, gate_inp_sh;/* shared expert(s) */
    int is_moe;
    int swa;                    /* sliding-window layer */
} Layer;

struct EngModel {
    Gguf *g;
    EngInfo info;
    EngTok *tok;
    char path[1024];
    Mat tok_embd, output_norm, output;
    Layer *layers;              /* info.n_layer */
    Mat *exp_mats;              /* storage behind the per-expert arrays */
    /* arch details */
    int rope_neox;
    int q_lora_rank, kv_lora_rank, qk_nope, qk_rope;
    int qk_norm_per_head;       /* qwen3moe */
    float f_embedding_scale, f_residual_scale, f_attention_scale, f_logit_scale;
    int n_swa;                  /* sliding window (0 = none) */
    float kq_scale;
    /* RoPE: inv_freq[i] = base^(-2i/n_rot); YaRN when ext_factor != 0 */
    float *inv_freq;            /* n_rot/2 */
    float rope_freq_scale;      /* 1/factor (1 = no scaling) */
    float rope_ext_factor, rope_attn_factor;
    float yarn_corr[2];         /* ramp start/end dims */
    int n_ff_max;               /* largest FFN width of any kind */
};

float eng_mat_get_f32(const Mat *m, int64_t i);   /* element i of a 1-D F32/F16 tensor */

#endif
