/*
** engine/quant.h — internal interface of the quantized-row kernels.
**
** engine/qtypes.h declares what the rest of the engine uses: eng_dequant and
** eng_qdot, dispatched at run time to the best code path this CPU has.  This
** header exposes the layers underneath, for the engine's faster paths and for
** the tests:
**
**   - code-path levels (scalar, AVX2+FMA+F16C, AVX-512 F/BW/VL/DQ/VNNI), each
**     callable directly so tests can compare every path with the scalar
**     reference on the same machine;
**   - activation quantization to Q8_0 / Q8_1 blocks and integer dot products
**     of Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/MXFP4 weight rows with them.  This is the
**     arithmetic llama.cpp's CPU backend really does (it converts the
**     activation vector to the weight type's "vec_dot" type first), so an
**     engine using it reproduces llama.cpp's quantized results rather than
**     the dequantize-to-F32 ones.
**
** The per-level kernel tables live in engine/quant_avx2.c and
** engine/quant_avx512.c; engine/quant.c holds the scalar code, the
** conversions and the dispatch.
*/
#ifndef ENG_QUANT_H
#define ENG_QUANT_H

#include <stdint.h>
#include <string.h>
#include <string.h>

#include "engine/qtypes.h"

/* ---- code paths ------------------------------------------------------ */

typedef enum {
    ENG_QLEVEL_SCALAR = 0,  /* portable C, the reference */
    ENG_QLEVEL_AVX2,        /* AVX2 + FMA + F16C */
    ENG_QLEVEL_AVX512,      /* AVX-512 F, BW, VL, DQ and VNNI */
    ENG_QLEVEL_COUNT
} EngQLevel;

/* Best level this CPU (and OS) supports; decided once.  Can't fail. */
EngQLevel eng_qlevel_best(void);

/* 1 if this CPU can run level `lvl`, else 0. */
int eng_qlevel_supported(EngQLevel lvl);

/* "scalar", "avx2", "avx512"; "?" for an unknown level. */
const char *eng_qlevel_name(EngQLevel lvl);

/* The kernels of one level.  A NULL entry means "no kernel for this type at
** this level"; the dispatcher then uses the scalar one.  `nb` is a count of
** blocks (of values for F32/F16/BF16). */
typedef float (*EngQDotFn)(const void *row, const float *x, int64_t nb);
typedef void (*EngQDeqFn)(const void *src, float *dst, int64_t nb);
typedef float (*EngQ8DotFn)(const void *row, const void *xq, int64_t nb);
typedef void (*EngQ8QuantFn)(const float *x, void *dst, int64_t nb);

typedef struct {
    EngQDotFn dot[QT_COUNT];
    EngQDeqFn deq[QT_COUNT];
    EngQ8DotFn dot8[QT_COUNT];   /* weight type -> dot with Q8_0/Q8_1 blocks */
    EngQ8QuantFn quant_q8_0;     /* activations -> Q8_0 */
    EngQ8QuantFn quant_q8_1;     /* activations -> Q8_1 */
} EngQKernels;

/* Kernel tables of the SIMD levels, or NULL when this build has none
** (non-x86 compiler).  They do not check the CPU: see eng_qlevel_supported. */
const EngQKernels *eng_qkernels_avx2(void);
const EngQKernels *eng_qkernels_avx512(void);

/* The complete table of a level as the dispatcher uses it: every weight
** type has a dot and a dequant entry (scalar where the level has none).
** NULL if the CPU lacks the level.  For hot loops that call a kernel per
** row and want to skip the per-call dispatch. */
const EngQKernels *eng_qkernels_merged(EngQLevel lvl);

/* eng_qdot / eng_dequant / eng_qdot_q8act on an explicit level.  Return 0,
** or -1 (nothing written) if the CPU lacks the level, the type is not a
** weight type, or n is not a multiple of the type's block size. */
int eng_qdot_at(EngQLevel lvl, uint32_t type, const void *row, const float *x,
                int64_t n, float *out);
int eng_dequant_at(EngQLevel lvl, uint32_t type, const void *src, float *dst,
                   int64_t n);
int eng_qdot_q8act_at(EngQLevel lvl, uint32_t type, const void *row,
                      const void *xq, int64_t n, float *out);
int eng_quantize_act_at(EngQLevel lvl, uint32_t act_type, const float *x,
                        void *dst, int64_t n);

/* ---- activation quantization and integer dots ------------------------ */

/* Q8_1 block as ggml stores it: d (f16), s = d * sum(qs) (f16), 32 int8. */
#define ENG_Q8_1_BYTES 36
/* Q8_0 block: d (f16), 32 int8. */
#define ENG_Q8_0_BYTES 34

/* Activation type the integer dot of weight type `type` needs: QT_Q8_0
** (Q8_0, Q4_0, Q5_0, MXFP4 weights), QT_Q8_1 (Q4_1, Q5_1), or -1 when
** eng_qdot_q8act has no kernel for `type`. */
int eng_q8act_type(uint32_t type);

/* Quantize n floats (n a multiple of 32) to n/32 Q8_0 blocks in dst
** (34 bytes each), exactly as llama.cpp's x86 quantize_row_q8_0:
** d = amax/127 (stored as f16), q = round-half-even(x * (127/amax)).
** Every code path gives identical bytes.  x must be finite; if n is not a
** multiple of 32 nothing is written (the caller's invariant). */
void eng_quantize_q8_0_act(const float *x, void *dst, int64_t n);

/* Same to Q8_1 blocks (36 bytes each), also storing s = d * sum(q) (f16),
** as llama.cpp's quantize_row_q8_1 (the activations of Q4_1/Q5_1 dots). */
void eng_quantize_q8_1_act(const float *x, void *dst, int64_t n);

/* Dot product of a weight row of `type` with activations quantized by the
** function above for eng_q8act_type(type).  Integer products per block,
** scaled per block in F32, as llama.cpp's ggml_vec_dot_<type>_q8_<0|1>.
** Returns NaN if `type` has no such kernel or n is not a multiple of 32. */
float eng_qdot_q8act(uint32_t type, const void *row, const void *xq, int64_t n);

/* Scalar reference of the above. */
float eng_qdot_q8act_ref(uint32_t type, const void *row, const void *xq,
                         int64_t n);

/* ---- helpers shared by the kernel files ------------------------------ */

/* Little-endian 16/32-bit fields of a block, at any alignment. */
static inline uint16_t eng_rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint32_t eng_rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* 2^(e-128) for an E8M0 exponent byte: the MXFP4 block scale (half of the
** OCP scale, because the value table holds doubled E2M1 values).  e = 0, 1
** give f32 subnormals, as ggml's GGML_E8M0_TO_FP32_HALF. */
static inline float eng_e8m0_half(uint8_t e)
{
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Q4_K/Q5_K: the 6-bit scale and min of sub-block j (0..7) from the 12
** packed bytes q (ggml's get_scale_min_k4). */
static inline void eng_k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* The MXFP4 value table: doubled E2M1 values. */
extern const int8_t eng_mxfp4_values[16];

#endif
