/*
** engine/forward.c — the forward pass: a batch of tokens through every layer,
** with a KV cache, reporting each MoE routing decision to the route callback.
**
** One function per step, top to bottom in eng_decode():
**   embed → per layer { rmsnorm → attention (q/k/v, q/k norms, RoPE, KV
**   cache, causal / sliding-window softmax with optional sinks, output) →
**   residual → rmsnorm → dense FFN or MoE (router, eng_route(), experts run
**   on the tokens routed to them, shared expert) → residual } → final norm →
**   logits.
** Activations are F32; weights stay in their file type and are read by the
** kernels in quant.c (eng_qdot for one token, a dequantized row reused
** across the batch otherwise).  All scratch memory is allocated in
** eng_ctx_new(); eng_decode() never allocates.  Parallelism lives in the
** matmul and attention kernels (a persistent thread pool).
*/
#include "engine/model.h"
#include "engine/pool.h"
#include "engine/qtypes.h"
#include "engine/quant.h"
#include "engine/route.h"

#include <cblas.h>
#undef I   /* <complex.h>, pulled in by cblas.h, defines I */

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* One matrix product of a fused batch: Y[t][r] = W_r . X[t], t < n. */
typedef struct {
    const Mat *W;
    const float *X;
    int ldx;
    float *Y;
    int ldy;
    int n;
    const uint8_t *xq;  /* set by mm_multi: X quantized to Q8_0/Q8_1 (qact) */
} MmSpec;

struct EngCtx {
    const EngModel *m;
    int n_ctx, n_batch, n_threads;
    EngPool *pool;
    int pos;
    int kv_k, kv_v;             /* floats per position per layer in the cache */
    float *kc, *vc;             /* (n_layer, n_ctx, kv_k), (n_layer, n_ctx, kv_v) */
    /* scratch, n_batch rows each */
    float *x;                   /* (B, E) residual stream */
    float *xn;                  /* (B, E) normed input of a block */
    float *q;                   /* (B, H*hk) */
    float *k, *v;               /* (B, kv_k), (B, kv_v) */
    float *att;                 /* (B, H*hv) attention output before wo */
    float *t1, *t2;             /* (B, tmp_w) MLA intermediates */
    int tmp_w;
    float *ffo;                 /* (B, E) FFN / attention projection output */
    float *rl;                  /* (B, n_expert) router logits */
    float *sc;                  /* (n_threads, sc_w) attention scores */
    size_t sc_w;                /* floats of score scratch per thread */
    float *dq;                  /* (n_threads, MM_RB, dq_w) dequantized rows */
    int dq_w;
    /* MoE */
    int32_t *sel;               /* (B, n_expert) chosen experts */
    float *selw, *sels;         /* (B, n_expert) weights, scores */
    int *selk;                  /* (B) */
    int *ex_cnt;                /* (n_expert) tokens routed this batch */
    int *ex_tok;                /* (n_expert, B) token index */
    float *ex_w;                /* (n_expert, B) weight */
    float *xg, *hg, *hu, *yo;   /* (B, E) (B, n_ff_max) (B, n_ff_max) (B, E) */
    float *shg;                 /* (B) shared-expert gate */
    int exp_rows;               /* rows of xg/hg/hu/yo: n_batch * k */
    RouteScratch rs;
    float *logits;              /* (n_vocab) last position */
    EngIv *ivs;
    int n_ivs;
    const EngQKernels *kern;    /* the CPU's kernel table */
    MmSpec *specs;              /* (3 * n_expert + 4) fused products */
    int qact;                   /* quantize activations as llama.cpp does */
    uint8_t *xq;                /* quantized activations of the products */
    size_t xq_cap;              /* bytes */
    EngRouteFn route_fn;
    void *route_user;
};

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

/* ---- kernels ----------------------------------------------------------- */

static float vec_get(const Mat *m, int64_t i) { return eng_mat_get_f32(m, i); }

/* y = x / rms(x) * w   (w may be NULL) */
static void rmsnorm(float *y, const float *x, const Mat *w, int n, float eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (double)(x[i] * x[i]);
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    if (w && w->type == QT_F32) {
        const float *wf = (const float *)(const void *)w->data;
        for (int i = 0; i < n; i++) {
            float wv;
            memcpy(&wv, wf + i, 4);
            y[i] = x[i] * scale * wv;
        }
    } else {
        for (int i = 0; i < n; i++)
            y[i] = x[i] * scale * (w ? vec_get(w, i) : 1.0f);
    }
}

static void add_bias(float *y, const Mat *b, int n)
{
    if (!b->data)
        return;
    for (int i = 0; i < n; i++)
        y[i] += vec_get(b, i);
}

static float silu(float x) { return x / (1.0f + expf(-x)); }

typedef struct {
    EngCtx *c;
    const MmSpec *s;
    int ns;
    int64_t total;      /* cost units: sum of rows * n * ncols */
} MmJob;

#define MM_RB 32        /* weight rows dequantized per sgemm block */
#define MM_BLAS_MIN 6   /* tokens from which sgemm beats row-by-row dots */

static void mm_rows(EngCtx *c, const MmSpec *s, int64_t r0, int64_t r1, int tid)
{
    const Mat *W = s->W;
    int64_t nc = W->ncols;
    const EngQKernels *K = c->kern;
    int64_t nb = nc / eng_qtraits(W->type)->blck;
    if (s->xq) {
        /* llama.cpp's arithmetic: integer dots with the quantized activations */
        EngQ8DotFn dot8 = K->dot8[W->type];
        size_t xs = (size_t)(nc / 32) * (size_t)(eng_q8act_type(W->type) == QT_Q8_1 ? 36 : 34);
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = W->data + (uint64_t)r * W->row_bytes;
            for (int t = 0; t < s->n; t++)
                s->Y[(size_t)t * (size_t)s->ldy + (size_t)r] = dot8(row, s->xq + (size_t)t * xs, nb);
        }
        return;
    }
    if (s->n == 1) {
        EngQDotFn dot = K->dot[W->type];
        for (int64_t r = r0; r < r1; r++)
            s->Y[r] = dot(W->data + (uint64_t)r * W->row_bytes, s->X, nb);
        return;
    }
    float *buf = c->dq + (size_t)tid * (size_t)c->dq_w * MM_RB;
    if (s->n < MM_BLAS_MIN) {
        EngQDotFn dotf = K->dot[QT_F32];
        for (int64_t r = r0; r < r1; r++) {
            const float *row = buf;
            if (W->type == QT_F32)
                row = (const float *)(const void *)(W->data + (uint64_t)r * W->row_bytes);
            else
                K->deq[W->type](W->data + (uint64_t)r * W->row_bytes, buf, nb);
            for (int t = 0; t < s->n; t++)
                s->Y[(size_t)t * (size_t)s->ldy + (size_t)r] =
                    dotf(row, s->X + (size_t)t * (size_t)s->ldx, nc);
        }
        return;
    }
    for (int64_t rb = r0; rb < r1; rb += MM_RB) {
        int m = (int)(r1 - rb < MM_RB ? r1 - rb : MM_RB);
        const float *A = buf;
        if (W->type == QT_F32) {
            A = (const float *)(const void *)(W->data + (uint64_t)rb * W->row_bytes);
        } else {
            for (int i = 0; i < m; i++)
                K->deq[W->type](W->data + (uint64_t)(rb + i) * W->row_bytes,
                                buf + (size_t)i * (size_t)nc, nb);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->n, m, (int)nc, 1.0f, s->X,
                    s->ldx, A, (int)nc, 0.0f, s->Y + rb, s->ldy);
    }
}

static int64_t spec_row_cost(const MmSpec *s) { return (int64_t)s->n * s->W->ncols; }

static void mm_task(void *arg, int ith, int nth, int tid)
{
    MmJob *j = arg;
    int64_t lo = j->total * ith / nth, hi = j->total * (ith + 1) / nth;
    int64_t base = 0;
    for (int i = 0; i < j->ns && base < hi; i++) {
        const MmSpec *s = &j->s[i];
        int64_t rc = spec_row_cost(s);
        int64_t cost = rc * s->W->nrows;
        if (base + cost > lo && rc > 0) {
            int64_t a = lo > base ? (lo - base + rc - 1) / rc : 0;
            int64_t b = hi < base + cost ? (hi - base + rc - 1) / rc : s->W->nrows;
            if (a < b)
                mm_rows(j->c, s, a, b, tid);
        }
        base += cost;
    }
}

/* Run several independent products as one parallel job (one pool dispatch);
** rows are split between threads in proportion to their cost. */
/* With qact, quantize each product's input rows once (per activation type
** the weight needs) into c->xq; products whose weights have no integer
** kernel (F32, F16, BF16, K-quants) keep F32 activations. */
static void mm_quantize(EngCtx *c, MmSpec *s, int ns)
{
    size_t used = 0;
    for (int i = 0; i < ns; i++) {
        s[i].xq = NULL;
        int at = eng_q8act_type(s[i].W->type);
        if (at < 0 || s[i].W->ncols % 32)
            continue;
        size_t xs = (size_t)(s[i].W->ncols / 32) * (size_t)(at == QT_Q8_1 ? 36 : 34);
        size_t need = xs * (size_t)s[i].n;
        if (used + need > c->xq_cap)
            continue;   /* does not fit: this product stays F32 */
        uint8_t *dst = c->xq + used;
        /* products that share their input (q/k/v, gate/up) share the copy */
        int shared = 0;
        for (int j = 0; j < i; j++)
            if (s[j].xq && s[j].X == s[i].X && s[j].n == s[i].n && s[j].ldx == s[i].ldx &&
                s[j].W->ncols == s[i].W->ncols && eng_q8act_type(s[j].W->type) == at) {
                s[i].xq = s[j].xq;
                shared = 1;
                break;
            }
        if (shared)
            continue;
        for (int t = 0; t < s[i].n; t++) {
            const float *x = s[i].X + (size_t)t * (size_t)s[i].ldx;
            if (at == QT_Q8_1)
                c->kern->quant_q8_1(x, dst + (size_t)t * xs, s[i].W->ncols / 32);
            else
                c->kern->quant_q8_0(x, dst + (size_t)t * xs, s[i].W->ncols / 32);
        }
        s[i].xq = dst;
        used += need;
    }
}

/* Chunks for a job of the given cost: several per thread (so a thread that
** loses its core holds up only a small piece), none too small to pay for
** taking it. */
static int mm_chunks(const EngCtx *c, int64_t total)
{
    int64_t n = total / 131072;
    int64_t max = 4 * (int64_t)c->n_threads;
    if (n > max)
        n = max;
    if (n < c->n_threads)
        n = c->n_threads;
    return (int)n;
}

static void mm_multi(EngCtx *c, MmSpec *s, int ns)
{
    if (c->qact)
        mm_quantize(c, s, ns);
    else
        for (int i = 0; i < ns; i++)
            s[i].xq = NULL;
    MmJob j = { c, s, ns, 0 };
    for (int i = 0; i < ns; i++)
        j.total += spec_row_cost(&s[i]) * s[i].W->nrows;
    /* below ~25 us of work a dispatch costs more than it saves */
    if (j.total < 262144 || c->n_threads == 1)
        mm_task(&j, 0, 1, 0);
    else
        eng_pool_run(c->pool, mm_task, &j, mm_chunks(c, j.total));
}

static void matmul(EngCtx *c, const Mat *W, const float *X, int n, int ldx, float *Y, int ldy)
{
    MmSpec s = { W, X, ldx, Y, ldy, n, NULL };
    mm_multi(c, &s, 1);
}

/* RoPE on one head vector, rotating the first n_rot dims: adjacent pairs
** (normal) or the two halves (NEOX); YaRN as ggml's rope_yarn(). */
static void rope(const EngModel *m, float *v, int n_rot, int pos, int neox)
{
    int half = n_rot / 2;
    float fs = m->rope_freq_scale, ext = m->rope_ext_factor;
    for (int i = 0; i < half; i++) {
        float theta_extrap = (float)pos * m->inv_freq[i];
        float theta = fs * theta_extrap;
        float mscale = m->rope_attn_factor;
        if (ext != 0.0f) {
            float lo = m->yarn_corr[0], hi = m->yarn_corr[1];
            float y = ((float)i - lo) / (hi - lo > 0.001f ? hi - lo : 0.001f);
            float ramp = (1.0f - (y < 0 ? 0 : y > 1 ? 1 : y)) * ext;
            theta = theta * (1 - ramp) + theta_extrap * ramp;
            mscale *= 1.0f + 0.1f * logf(1.0f / fs);
        }
        float cs = cosf(theta) * mscale, sn = sinf(theta) * mscale;
        int a = neox ? i : 2 * i;
        int b = neox ? i + half : 2 * i + 1;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs - x1 * sn;
        v[b] = x0 * sn + x1 * cs;
    }
}

/* ---- attention --------------------------------------------------------- */

typedef struct {
    EngCtx *c;
    int il, B, pos0;
    const Layer *ly;
} AttJob;

/* Softmax of one row of scaled scores over keys lo..p, with an optional
** sink logit that takes probability mass; entries outside are zeroed when
** zero_out (the sgemm path multiplies the whole row). */
static void att_softmax(float *sc, int lo, int p, int n_row, int has_sink, float sink, int zero_out)
{
    float mx = has_sink ? sink : -INFINITY;
    for (int s = lo; s <= p; s++)
        if (sc[s] > mx)
            mx = sc[s];
    double sum = has_sink ? (double)expf(sink - mx) : 0.0;
    for (int s = lo; s <= p; s++) {
        sc[s] = expf(sc[s] - mx);
        sum += sc[s];
    }
    float inv = (float)(1.0 / sum);
    for (int s = lo; s <= p; s++)
        sc[s] *= inv;
    if (zero_out) {
        for (int s = 0; s < lo; s++)
            sc[s] = 0;
        for (int s = p + 1; s < n_row; s++)
            sc[s] = 0;
    }
}

static int att_lo(const EngModel *m, const Layer *ly, int p)
{
    return (ly->swa && m->n_swa > 0 && p - m->n_swa + 1 > 0) ? p - m->n_swa + 1 : 0;
}

/* One token at a time (decode, small batches): work items are (token, head). */
static void att_task(void *arg, int ith, int nth, int tid)
{
    AttJob *j = arg;
    EngCtx *c = j->c;
    const EngModel *m = c->m;
    const EngInfo *I = &m->info;
    int H = I->n_head, hk = I->head_dim_k, hv = I->head_dim_v;
    int grp = I->n_head / I->n_head_kv;
    int mla = I->arch == ENG_ARCH_DEEPSEEK2;
    const float *kc = c->kc + (size_t)j->il * (size_t)c->n_ctx * (size_t)c->kv_k;
    const float *vc = c->vc + (size_t)j->il * (size_t)c->n_ctx * (size_t)c->kv_v;
    float *sc = c->sc + (size_t)tid * (size_t)c->sc_w;
    int total = j->B * H;
    for (int w = ith; w < total; w += nth) {
        int t = w / H, h = w % H;
        int p = j->pos0 + t;
        int hkv = mla ? h : h / grp;
        const float *q = c->q + (size_t)t * (size_t)(H * hk) + (size_t)h * (size_t)hk;
        int lo = att_lo(m, j->ly, p);
        int n = p - lo + 1;
        /* scores over keys lo..p, then output = V^T softmax(scores) */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n, hk, m->kq_scale,
                    kc + (size_t)lo * (size_t)c->kv_k + (size_t)hkv * (size_t)hk, c->kv_k, q, 1,
                    0.0f, sc + lo, 1);
        int has_sink = j->ly->sinks.data != NULL;
        att_softmax(sc, lo, p, p + 1, has_sink, has_sink ? vec_get(&j->ly->sinks, h) : 0, 0);
        float *o = c->att + (size_t)t * (size_t)(H * hv) + (size_t)h * (size_t)hv;
        cblas_sgemv(CblasRowMajor, CblasTrans, n, hv, 1.0f,
                    vc + (size_t)lo * (size_t)c->kv_v + (size_t)hkv * (size_t)hv, c->kv_v,
                    sc + lo, 1, 0.0f, o, 1);
    }
}

/* Prompt batches: per head, scores = Q K^T and output = softmax(scores) V as
** two sgemm calls over blocks of rows that fit the per-thread scratch. */
static void att_task_gemm(void *arg, int ith, int nth, int tid)
{
    AttJob *j = arg;
    EngCtx *c = j->c;
    const EngModel *m = c->m;
    const EngInfo *I = &m->info;
    int H = I->n_head, hk = I->head_dim_k, hv = I->head_dim_v;
    int grp = I->n_head / I->n_head_kv;
    int mla = I->arch == ENG_ARCH_DEEPSEEK2;
    const float *kc = c->kc + (size_t)j->il * (size_t)c->n_ctx * (size_t)c->kv_k;
    const float *vc = c->vc + (size_t)j->il * (size_t)c->n_ctx * (size_t)c->kv_v;
    float *S = c->sc + (size_t)tid * (size_t)c->sc_w;
    int P = j->pos0 + j->B;
    int rows = (int)(c->sc_w / (size_t)P);
    if (rows < 1)
        rows = 1;
    for (int h = ith; h < H; h += nth) {
        int hkv = mla ? h : h / grp;
        int has_sink = j->ly->sinks.data != NULL;
        float sink = has_sink ? vec_get(&j->ly->sinks, h) : 0;
        for (int t0 = 0; t0 < j->B; t0 += rows) {
            int nb = j->B - t0 < rows ? j->B - t0 : rows;
            int pmax = j->pos0 + t0 + nb;   /* keys any row of this block sees */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, pmax, hk, m->kq_scale,
                        c->q + (size_t)t0 * (size_t)(H * hk) + (size_t)h * (size_t)hk, H * hk,
                        kc + (size_t)hkv * (size_t)hk, c->kv_k, 0.0f, S, pmax);
            for (int r = 0; r < nb; r++) {
                int p = j->pos0 + t0 + r;
                att_softmax(S + (size_t)r * (size_t)pmax, att_lo(m, j->ly, p), p, pmax, has_sink, sink, 1);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hv, pmax, 1.0f, S, pmax,
                        vc + (size_t)hkv * (size_t)hv, c->kv_v, 0.0f,
                        c->att + (size_t)t0 * (size_t)(H * hv) + (size_t)h * (size_t)hv, H * hv);
        }
    }
}

/* q, k, v for the batch (standard attention), written into c->q and the
** cache at positions pos0..pos0+B-1. */
static void qkv_standard(EngCtx *c, const Layer *ly, int il, int B, int pos0)
{
    const EngModel *m = c->m;
    const EngInfo *I = &m->info;
    int H = I->n_head, Hkv = I->n_head_kv, hk = I->head_dim_k, hv = I->head_dim_v;
    int E = I->n_embd;
    MmSpec qkv[3] = { { &ly->wq, c->xn, E, c->q, H * hk, B, NULL },
                      { &ly->wk, c->xn, E, c->k, c->kv_k, B, NULL },
                      { &ly->wv, c->xn, E, c->v, c->kv_v, B, NULL } };
    mm_multi(c, qkv, 3);
    for (int t = 0; t < B; t++) {
        float *q = c->q + (size_t)t * (size_t)(H * hk);
        float *k = c->k + (size_t)t * (size_t)c->kv_k;
        float *v = c->v + (size_t)t * (size_t)c->kv_v;
        add_bias(q, &ly->bq, H * hk);
        add_bias(k, &ly->bk, Hkv * hk);
        add_bias(v, &ly->bv, Hkv * hv);
        if (ly->q_norm.data) {
            if (m->qk_norm_per_head) {
                for (int h = 0; h < H; h++)
                    rmsnorm(q + h * hk, q + h * hk, &ly->q_norm, hk, I->norm_eps);
                for (int h = 0; h < Hkv; h++)
                    rmsnorm(k + h * hk, k + h * hk, &ly->k_norm, hk, I->norm_eps);
            } else {
                rmsnorm(q, q, &ly->q_norm, H * hk, I->norm_eps);
                rmsnorm(k, k, &ly->k_norm, Hkv * hk, I->norm_eps);
            }
        }
        int p = pos0 + t;
        for (int h = 0; h < H; h++)
            rope(m, q + h * hk, I->n_rot, p, m->rope_neox);
        for (int h = 0; h < Hkv; h++)
            rope(m, k + h * hk, I->n_rot, p, m->rope_neox);
        float *kd = c->kc + ((size_t)il * (size_t)c->n_ctx + (size_t)p) * (size_t)c->kv_k;
        float *vd = c->vc + ((size_t)il * (size_t)c->n_ctx + (size_t)p) * (size_t)c->kv_v;
        memcpy(kd, k, (size_t)c->kv_k * sizeof(float));
        memcpy(vd, v, (size_t)c->kv_v * sizeof(float));
    }
}

/* DeepSeek-2 multi-head latent attention, computed in its expanded form:
** per head k = [k_nope | k_pe] (k_pe shared by the heads), v per head. */
static void qkv_mla(EngCtx *c, const Layer *ly, int il, int B, int pos0)
{
    const EngModel *m = c->m;
    const EngInfo *I = &m->info;
    int H = I->n_head, hk = I->head_dim_k, hv = I->head_dim_v, E = I->n_embd;
    int nope = m->qk_nope, rp = m->qk_rope, kvl = m->kv_lora_rank;
    if (m->q_lora_rank > 0) {
        matmul(c, &ly->wq_a, c->xn, B, E, c->t1, c->tmp_w);
        for (int t = 0; t < B; t++)
            rmsnorm(c->t1 + (size_t)t * (size_t)c->tmp_w, c->t1 + (size_t)t * (size_t)c->tmp_w,
                    &ly->q_a_norm, m->q_lora_rank, I->norm_eps);
        matmul(c, &ly->wq_b, c->t1, B, c->tmp_w, c->q, H * hk);
    } else {
        matmul(c, &ly->wq, c->xn, B, E, c->q, H * hk);
    }
    matmul(c, &ly->wkv_a, c->xn, B, E, c->t1, c->tmp_w);   /* [kv_c | k_pe] */
    for (int t = 0; t < B; t++) {
        float *a = c->t1 + (size_t)t * (size_t)c->tmp_w;
        rmsnorm(a, a, &ly->kv_a_norm, kvl, I->norm_eps);
    }
    if (ly->wkv_b.data) {
        matmul(c, &ly->wkv_b, c->t1, B, c->tmp_w, c->t2, c->tmp_w);  /* per head [k_nope | v] */
    } else {
        /* split form: v_h = Wv_h kv_c; k_nope_h = Wk_h^T kv_c (Wk_h rows are
        ** kv_lora rows of qk_nope values) */
        float *row = c->dq;
        for (int t = 0; t < B; t++) {
            const float *kvc = c->t1 + (size_t)t * (size_t)c->tmp_w;
            float *dst = c->t2 + (size_t)t * (size_t)c->tmp_w;
            for (int h = 0; h < H; h++) {
                float *kn = dst + (size_t)h * (size_t)(nope + hv);
                memset(kn, 0, (size_t)nope * sizeof(float));
                for (int r = 0; r < kvl; r++) {
                    const uint8_t *src = ly->wk_b.data +
                        ((uint64_t)h * (uint64_t)kvl + (uint64_t)r) * ly->wk_b.row_bytes;
                    eng_dequant(ly->wk_b.type, src, row, nope);
                    for (int i = 0; i < nope; i++)
                        kn[i] += kvc[r] * row[i];
                }
                for (int i = 0; i < hv; i++) {
                    const uint8_t *src = ly->wv_b.data +
                        ((uint64_t)h * (uint64_t)hv + (uint64_t)i) * ly->wv_b.row_bytes;
                    kn[nope + i] = eng_qdot(ly->wv_b.type, src, kvc, kvl);
                }
            }
        }
    }
    for (int t = 0; t < B; t++) {
        int p = pos0 + t;
        float *q = c->q + (size_t)t * (size_t)(H * hk);
        float *a = c->t1 + (size_t)t * (size_t)c->tmp_w;
        float *kv = c->t2 + (size_t)t * (size_t)c->tmp_w;
        float *kpe = a + kvl;
        rope(m, kpe, rp, p, m->rope_neox);
        float *kd = c->kc + ((size_t)il * (size_t)c->n_ctx + (size_t)p) * (size_t)c->kv_k;
        float *vd = c->vc + ((size_t)il * (size_t)c->n_ctx + (size_t)p) * (size_t)c->kv_v;
        for (int h = 0; h < H; h++) {
            rope(m, q + h * hk + nope, rp, p, m->rope_neox);
            const float *src = kv + (size_t)h * (size_t)(nope + hv);
            memcpy(kd + h * hk, src, (size_t)nope * sizeof(float));
            memcpy(kd + h * hk + nope, kpe, (size_t)rp * sizeof(float));
            memcpy(vd + h * hv, src + nope, (size_t)hv * sizeof(float));
        }
    }
}

static void attention(EngCtx *c, const Layer *ly, int il, int B, int pos0)
{
    const EngInfo *I = &c->m->info;
    if (I->arch == ENG_ARCH_DEEPSEEK2)
        qkv_mla(c, ly, il, B, pos0);
    else
        qkv_standard(c, ly, il, B, pos0);
    AttJob j = { c, il, B, pos0, ly };
    EngPoolFn fn = B >= 4 ? att_task_gemm : att_task;
    if ((long)B * (pos0 + B) * I->n_head * I->head_dim_k < 65536 || c->n_threads == 1)
        fn(&j, 0, 1, 0);
    else
        eng_pool_run(c->pool, fn, &j, B >= 4 ? I->n_head : 2 * c->n_threads);
    matmul(c, &ly->wo, c->att, B, I->n_head * I->head_dim_v, c->ffo, I->n_embd);
    for (int t = 0; t < B; t++)
        add_bias(c->ffo + (size_t)t * (size_t)I->n_embd, &ly->bo, I->n_embd);
}

/* ---- feed-forward ------------------------------------------------------ */

/* gpt-oss activation: biases and the clamped SwiGLU (alpha 1.702, limit 7) */
static void act_oai(const Layer *ly, int e, float *hg, const float *hu, int nf)
{
    for (int i = 0; i < nf; i++) {
        float gv = hg[i] + vec_get(&ly->gate_eb[e], i);
        float uv = hu[i] + vec_get(&ly->up_eb[e], i);
        gv = gv > 7.0f ? 7.0f : gv;
        uv = uv > 7.0f ? 7.0f : uv < -7.0f ? -7.0f : uv;
        hg[i] = gv / (1.0f + expf(-1.702f * gv)) * (uv + 1.0f);
    }
}

static void act_silu(float *hg, const float *hu, int nf)
{
    for (int i = 0; i < nf; i++)
        hg[i] = silu(hg[i]) * hu[i];
}

/* y = down(silu(gate x) * up x) for n rows of x (ld E); h buffers ld n_ff_max */
static void ffn_swiglu(EngCtx *c, const Mat *g, const Mat *u, const Mat *d, const float *x,
                       int n, float *y)
{
    int E = c->m->info.n_embd, F = c->m->n_ff_max;
    int nf = (int)g->nrows;
    MmSpec gu[2] = { { g, x, E, c->hg, F, n, NULL }, { u, x, E, c->hu, F, n, NULL } };
    mm_multi(c, gu, 2);
    for (int t = 0; t < n; t++)
        act_silu(c->hg + (size_t)t * (size_t)F, c->hu + (size_t)t * (size_t)F, nf);
    matmul(c, d, c->hg, n, F, y, E);
}

/* Run the experts chosen in this batch.  Tokens routed to an expert are
** gathered into consecutive rows; experts are processed in groups whose
** rows fit the scratch (n_batch * k rows), each group as two fused parallel
** products (all gate+up, then all down), then scattered back weighted. */
static void moe_experts(EngCtx *c, const Layer *ly, int B)
{
    const EngInfo *I = &c->m->info;
    int E = I->n_embd, NE = I->n_expert, F = c->m->n_ff_max;
    int cap = c->exp_rows;
    int e0 = 0;
    while (e0 < NE) {
        int rows = 0, e1 = e0, ns = 0;
        while (e1 < NE && rows + c->ex_cnt[e1] <= cap)
            rows += c->ex_cnt[e1++];
        /* gather and build gate/up products */
        int off = 0;
        for (int e = e0; e < e1; e++) {
            int n = c->ex_cnt[e];
            if (!n)
                continue;
            const int *tok = c->ex_tok + (size_t)e * B;
            for (int i = 0; i < n; i++)
                memcpy(c->xg + (size_t)(off + i) * E, c->xn + (size_t)tok[i] * E,
                       (size_t)E * sizeof(float));
            MmSpec g = { &ly->gate_e[e], c->xg + (size_t)off * E, E, c->hg + (size_t)off * F, F, n, NULL };
            MmSpec u = { &ly->up_e[e], c->xg + (size_t)off * E, E, c->hu + (size_t)off * F, F, n, NULL };
            c->specs[ns++] = g;
            c->specs[ns++] = u;
            off += n;
        }
        mm_multi(c, c->specs, ns);
        ns = 0;
        off = 0;
        for (int e = e0; e < e1; e++) {
            int n = c->ex_cnt[e];
            if (!n)
                continue;
            int nf = (int)ly->gate_e[e].nrows;
            for (int i = 0; i < n; i++) {
                float *hg = c->hg + (size_t)(off + i) * F;
                const float *hu = c->hu + (size_t)(off + i) * F;
                if (ly->gate_eb)
                    act_oai(ly, e, hg, hu, nf);
                else
                    act_silu(hg, hu, nf);
            }
            MmSpec d = { &ly->down_e[e], c->hg + (size_t)off * F, F, c->yo + (size_t)off * E, E, n, NULL };
            c->specs[ns++] = d;
            off += n;
        }
        mm_multi(c, c->specs, ns);
        off = 0;
        for (int e = e0; e < e1; e++) {
            int n = c->ex_cnt[e];
            const int *tok = c->ex_tok + (size_t)e * B;
            const float *w = c->ex_w + (size_t)e * B;
            for (int i = 0; i < n; i++) {
                float *dst = c->ffo + (size_t)tok[i] * E;
                const float *src = c->yo + (size_t)(off + i) * E;
                if (ly->down_eb)
                    for (int d = 0; d < E; d++)
                        dst[d] += w[i] * (src[d] + vec_get(&ly->down_eb[e], d));
                else
                    for (int d = 0; d < E; d++)
                        dst[d] += w[i] * src[d];
            }
            off += n;
        }
        e0 = e1;
    }
}

static void moe(EngCtx *c, const Layer *ly, int il, int B, int pos0, int is_prompt,
                const int32_t *tokens)
{
    const EngModel *m = c->m;
    const EngInfo *I = &m->info;
    int E = I->n_embd, NE = I->n_expert;

    matmul(c, &ly->gate_inp, c->xn, B, E, c->rl, NE);
    memset(c->ex_cnt, 0, (size_t)NE * sizeof(int));
    for (int t = 0; t < B; t++) {
        RouteOut ro = { 0, c->sel + (size_t)t * NE, c->sels + (size_t)t * NE,
                        c->selw + (size_t)t * NE };
        const float *lg = c->rl + (size_t)t * NE;
        eng_route(m, il, pos0 + t, is_prompt, lg, c->ivs, c->n_ivs, &c->rs, &ro);
        c->selk[t] = ro.k;
        for (int j = 0; j < ro.k; j++) {
            int e = ro.experts[j];
            int s = c->ex_cnt[e]++;
            c->ex_tok[(size_t)e * B + s] = t;
            c->ex_w[(size_t)e * B + s] = ro.weights[j];
        }
    }
    /* shared-expert gate (qwen2moe) */
    for (int t = 0; t < B; t++)
        c->shg[t] = ly->gate_sh.data ? 1.0f : 0.0f;
    if (ly->gate_inp_sh.data)
        for (int t = 0; t < B; t++) {
            float g = eng_qdot(ly->gate_inp_sh.type, ly->gate_inp_sh.data,
                               c->xn + (size_t)t * E, E);
            c->shg[t] = 1.0f / (1.0f + expf(-g));
        }
    if (c->route_fn)
        for (int t = 0; t < B; t++) {
            EngRoute r = { pos0 + t, il, is_prompt, NE, c->selk[t],
                           c->rl + (size_t)t * NE, c->sel + (size_t)t * NE,
                           c->sels + (size_t)t * NE, c->selw + (size_t)t * NE,
                           c->shg[t], tokens + t };
            c->route_fn(c->route_user, &r);
        }

    memset(c->ffo, 0, (size_t)B * E * sizeof(float));
    moe_experts(c, ly, B);
    if (ly->gate_sh.data) {
        ffn_swiglu(c, &ly->gate_sh, &ly->up_sh, &ly->down_sh, c->xn, B, c->yo);
        for (int t = 0; t < B; t++)
            for (int d = 0; d < E; d++)
                c->ffo[(size_t)t * E + d] += c->shg[t] * c->yo[(size_t)t * E + d];
    }
}

/* ---- context ----------------------------------------------------------- */

static size_t nz(size_t n) { return n ? n : 1; }

static int ctx_alloc(EngCtx *c)
{
    const EngModel *m = c->m;
    const EngInfo *I = &m->info;
    size_t B = (size_t)c->n_batch, E = (size_t)I->n_embd, NE = (size_t)I->n_expert;
    size_t H = (size_t)I->n_head;
    if (I->arch == ENG_ARCH_DEEPSEEK2) {
        c->kv_k = I->n_head * I->head_dim_k;
        c->kv_v = I->n_head * I->head_dim_v;
        int w = m->q_lora_rank;
        if (m->kv_lora_rank + m->qk_rope > w)
            w = m->kv_lora_rank + m->qk_rope;
        if (I->n_head * (m->qk_nope + I->head_dim_v) > w)
            w = I->n_head * (m->qk_nope + I->head_dim_v);
        c->tmp_w = w;
    } else {
        c->kv_k = I->n_head_kv * I->head_dim_k;
        c->kv_v = I->n_head_kv * I->head_dim_v;
        c->tmp_w = 1;
    }
    size_t F = (size_t)m->n_ff_max;
    size_t kvsz = (size_t)I->n_layer * (size_t)c->n_ctx;
    int dqw = I->n_embd;
    if (m->n_ff_max > dqw)
        dqw = m->n_ff_max;
    if (I->n_head * I->head_dim_v > dqw)
        dqw = I->n_head * I->head_dim_v;
    if (c->tmp_w > dqw)
        dqw = c->tmp_w;
    if (m->qk_nope > dqw)
        dqw = m->qk_nope;
    c->dq_w = dqw;
    /* attention scores: one row of n_ctx, or blocks of rows for sgemm (up to 4 MB) */
    c->sc_w = (size_t)c->n_batch * (size_t)c->n_ctx;
    if (c->sc_w > ((size_t)1 << 20))
        c->sc_w = (size_t)1 << 20;
    if (c->sc_w < (size_t)c->n_ctx)
        c->sc_w = (size_t)c->n_ctx;
    c->exp_rows = c->n_batch * (I->n_expert_used > 1 ? I->n_expert_used : 1);
    size_t R = (size_t)c->exp_rows;
    /* quantized activations: every row of a fused batch of products (all
    ** expert groups of a batch share at most n_batch * k rows of E or F) */
    c->xq_cap = c->qact ? (size_t)(R + (size_t)B * 4) * (size_t)(dqw / 32 + 1) * 36 * 2 : 0;
#define A(p, n) (((p) = calloc(nz(n), sizeof *(p))) == NULL)
    if (A(c->kc, kvsz * (size_t)c->kv_k) || A(c->vc, kvsz * (size_t)c->kv_v) ||
        A(c->x, B * E) || A(c->xn, B * E) || A(c->q, B * H * (size_t)I->head_dim_k) ||
        A(c->k, B * (size_t)c->kv_k) || A(c->v, B * (size_t)c->kv_v) ||
        A(c->att, B * H * (size_t)I->head_dim_v) || A(c->t1, B * (size_t)c->tmp_w) ||
        A(c->t2, B * (size_t)c->tmp_w) || A(c->ffo, B * E) || A(c->rl, B * NE) ||
        A(c->sc, (size_t)c->n_threads * c->sc_w) ||
        A(c->dq, (size_t)c->n_threads * (size_t)dqw * MM_RB) || A(c->sel, B * NE) ||
        A(c->selw, B * NE) || A(c->sels, B * NE) || A(c->selk, B) || A(c->ex_cnt, NE) ||
        A(c->ex_tok, NE * B) || A(c->ex_w, NE * B) || A(c->xg, R * E) || A(c->hg, R * F) ||
        A(c->hu, R * F) || A(c->yo, R * E) || A(c->specs, 3 * NE + 4) ||
        (c->qact && A(c->xq, c->xq_cap)) || A(c->shg, B) || A(c->rs.l, NE) ||
        A(c->rs.p, NE) || A(c->rs.sc, NE) || A(c->rs.mass, NE) || A(c->rs.flags, NE) ||
        A(c->logits, (size_t)I->n_vocab))
        return -1;
#undef A
    return 0;
}

void eng_ctx_free(EngCtx *c)
{
    if (!c)
        return;
    eng_pool_free(c->pool);
    void *bufs[] = { c->kc, c->vc, c->x, c->xn, c->q, c->k, c->v, c->att, c->t1, c->t2,
                     c->ffo, c->rl, c->sc, c->dq, c->sel, c->selw, c->sels, c->selk,
                     c->ex_cnt, c->ex_tok, c->ex_w, c->xg, c->hg, c->hu, c->yo, c->shg,
                     c->rs.l, c->rs.p, c->rs.sc, c->rs.mass, c->rs.flags, c->logits, c->ivs,
                     c->specs, c->xq };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(c);
}

/* Map the weights in before the first forward pass: faulting 4 KB pages in
** one by one during decode costs more than the arithmetic on a multi-GB
** model.  Only when the file fits comfortably in RAM (else the kernel pages
** it in as needed); failure is harmless (an older kernel). */
static void prefault_weights(const EngModel *m)
{
    if (!m->g->map || m->g->map_size == 0)
        return;
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || psz <= 0 || (double)m->g->map_size > 0.5 * (double)pages * (double)psz)
        return;
#ifdef MADV_POPULATE_READ
    if (madvise(m->g->map, (size_t)m->g->map_size, MADV_POPULATE_READ) == 0)
        return;
#endif
    madvise(m->g->map, (size_t)m->g->map_size, MADV_WILLNEED);
}

EngCtx *eng_ctx_new(const EngModel *m, const EngCtxParams *p, EngErr *err)
{
    EngCtx *c = calloc(1, sizeof *c);
    if (!c) {
        seterr(err, ENG_E_NOMEM, "out of memory");
        return NULL;
    }
    c->m = m;
    int n_ctx = p ? p->n_ctx : 0;
    if (n_ctx <= 0)
        n_ctx = m->info.n_ctx_train < 4096 ? m->info.n_ctx_train : 4096;
    c->n_ctx = n_ctx;
    c->n_threads = p && p->n_threads > 0 ? p->n_threads : 2;
    if (c->n_threads > 256)
        c->n_threads = 256;
    c->n_batch = p && p->n_batch > 0 ? p->n_batch : 256;
    c->qact = p ? p->qact : 0;
    if (c->n_batch > c->n_ctx)
        c->n_batch = c->n_ctx;
    if (ctx_alloc(c) < 0) {
        seterr(err, ENG_E_NOMEM, "out of memory for a context of %d positions", n_ctx);
        eng_ctx_free(c);
        return NULL;
    }
    prefault_weights(m);
    c->kern = eng_qkernels_merged(eng_qlevel_best());
    /* our threads split the work; OpenBLAS must not add its own */
    openblas_set_num_threads(1);
    c->pool = eng_pool_new(c->n_threads);
    if (!c->pool) {
        seterr(err, ENG_E_NOMEM, "cannot start %d threads", c->n_threads);
        eng_ctx_free(c);
        return NULL;
    }
    return c;
}

void eng_ctx_set_route_fn(EngCtx *c, EngRouteFn fn, void *user)
{
    c->route_fn = fn;
    c->route_user = user;
}

void eng_ctx_reset(EngCtx *c) { c->pos = 0; }
int eng_ctx_pos(const EngCtx *c) { return c->pos; }
int eng_ctx_n_ctx(const EngCtx *c) { return c->n_ctx; }
const float *eng_ctx_logits(const EngCtx *c) { return c->logits; }

EngStatus eng_ctx_set_ivs(EngCtx *c, const EngIv *ivs, int n, EngErr *err)
{
    const EngInfo *I = &c->m->info;
    for (int i = 0; i < n; i++) {
        const EngIv *iv = &ivs[i];
        char desc[96];
        eng_iv_format(iv, desc, sizeof desc);
        if (iv->layer < -1 || iv->layer >= I->n_layer)
            return seterr(err, ENG_E_ARG, "intervention '%s': layer %d out of range 0..%d",
                          desc, iv->layer, I->n_layer - 1);
        if (iv->layer >= 0 && !c->m->layers[iv->layer].is_moe)
            return seterr(err, ENG_E_ARG, "intervention '%s': layer %d is a dense layer (MoE layers: %d..%d)",
                          desc, iv->layer, I->n_dense_lead, I->n_layer - 1);
        if ((iv->kind == ENG_IV_BIAS || iv->kind == ENG_IV_DISABLE || iv->kind == ENG_IV_FORCE) &&
            (iv->expert < 0 || iv->expert >= I->n_expert))
            return seterr(err, ENG_E_ARG, "intervention '%s': expert %d out of range 0..%d",
                          desc, iv->expert, I->n_expert - 1);
        if (iv->kind == ENG_IV_BIAS && !isfinite(iv->value))
            return seterr(err, ENG_E_ARG, "intervention '%s': bias must be finite", desc);
        if (iv->kind == ENG_IV_TOPK && (iv->value < 1 || iv->value > I->n_expert ||
                                        iv->value != floorf(iv->value)))
            return seterr(err, ENG_E_ARG, "top-k %g out of range 1..%d", iv->value, I->n_expert);
        if (iv->kind == ENG_IV_TOPP && !(iv->value > 0.0f && iv->value <= 1.0f))
            return seterr(err, ENG_E_ARG, "top-p %g out of range (0, 1]", iv->value);
        if (iv->scope == ENG_SCOPE_FROM && iv->from_pos < 0)
            return seterr(err, ENG_E_ARG, "scope from:%d must be >= 0", iv->from_pos);
        if (iv->kind == ENG_IV_FORCE)
            for (int j = 0; j < n; j++)
                if (ivs[j].kind == ENG_IV_DISABLE && ivs[j].expert == iv->expert &&
                    (ivs[j].layer == iv->layer || ivs[j].layer < 0 || iv->layer < 0))
                    return seterr(err, ENG_E_ARG,
                                  "expert %d is both forced and disabled in layer %s", iv->expert,
                                  iv->layer < 0 ? "*" : "(same)");
    }
    EngIv *cp = NULL;
    if (n > 0) {
        cp = malloc((size_t)n * sizeof *cp);
        if (!cp)
            return seterr(err, ENG_E_NOMEM, "out of memory");
        memcpy(cp, ivs, (size_t)n * sizeof *cp);
    }
    free(c->ivs);
    c->ivs = cp;
    c->n_ivs = n;
    return ENG_OK;
}

/* ---- decode ------------------------------------------------------------ */

static void embed(EngCtx *c, const int32_t *tokens, int B)
{
    const EngModel *m = c->m;
    int E = m->info.n_embd;
    for (int t = 0; t < B; t++) {
        float *x = c->x + (size_t)t * E;
        eng_dequant(m->tok_embd.type, m->tok_embd.data + (uint64_t)tokens[t] * m->tok_embd.row_bytes,
                    x, E);
        if (m->f_embedding_scale != 1.0f)
            for (int d = 0; d < E; d++)
                x[d] *= m->f_embedding_scale;
    }
}

static void residual(EngCtx *c, int B)
{
    int E = c->m->info.n_embd;
    float rs = c->m->f_residual_scale;
    for (size_t i = 0; i < (size_t)B * E; i++)
        c->x[i] += rs == 1.0f ? c->ffo[i] : c->ffo[i] * rs;
}

static void output(EngCtx *c, int B, float *all_logits)
{
    const EngModel *m = c->m;
    int E = m->info.n_embd, V = m->info.n_vocab;
    int t0 = all_logits ? 0 : B - 1;
    int n = B - t0;
    for (int t = t0; t < B; t++)
        rmsnorm(c->xn + (size_t)(t - t0) * E, c->x + (size_t)t * E, &m->output_norm, E,
                m->info.norm_eps);
    float *dst = all_logits ? all_logits : c->logits;
    matmul(c, &m->output, c->xn, n, E, dst, V);
    if (m->f_logit_scale != 1.0f)
        for (size_t i = 0; i < (size_t)n * V; i++)
            dst[i] /= m->f_logit_scale;
    if (all_logits)
        memcpy(c->logits, all_logits + (size_t)(n - 1) * V, (size_t)V * sizeof(float));
}

static void decode_batch(EngCtx *c, const int32_t *tokens, int B, int is_prompt, float *all_logits)
{
    const EngModel *m = c->m;
    const EngInfo *I = &m->info;
    int E = I->n_embd;
    int pos0 = c->pos;
    embed(c, tokens, B);
    for (int il = 0; il < I->n_layer; il++) {
        const Layer *ly = &m->layers[il];
        for (int t = 0; t < B; t++)
            rmsnorm(c->xn + (size_t)t * E, c->x + (size_t)t * E, &ly->attn_norm, E, I->norm_eps);
        attention(c, ly, il, B, pos0);
        residual(c, B);
        for (int t = 0; t < B; t++)
            rmsnorm(c->xn + (size_t)t * E, c->x + (size_t)t * E, &ly->ffn_norm, E, I->norm_eps);
        if (ly->is_moe)
            moe(c, ly, il, B, pos0, is_prompt, tokens);
        else
            ffn_swiglu(c, &ly->ffn_gate, &ly->ffn_up, &ly->ffn_down, c->xn, B, c->ffo);
        residual(c, B);
    }
    output(c, B, all_logits);
    c->pos += B;
}

EngStatus eng_decode(EngCtx *c, const int32_t *tokens, int n, int is_prompt, float *all_logits,
                     EngErr *err)
{
    const EngInfo *I = &c->m->info;
    if (n <= 0)
        return seterr(err, ENG_E_ARG, "eng_decode: no tokens");
    if (n > c->n_ctx - c->pos)
        return seterr(err, ENG_E_CTX, "context full: %d positions used, %d more requested, n_ctx %d",
                      c->pos, n, c->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= I->n_vocab)
            return seterr(err, ENG_E_ARG, "token id %d out of range 0..%d", tokens[i],
                          I->n_vocab - 1);
    for (int off = 0; off < n; off += c->n_batch) {
        int B = n - off < c->n_batch ? n - off : c->n_batch;
        decode_batch(c, tokens + off, B, is_prompt,
                     all_logits ? all_logits + (size_t)off * (size_t)I->n_vocab : NULL);
    }
    return ENG_OK;
}
