/*
** engine/quant_avx512.c — AVX-512 kernels for engine/quant.c.
**
** Needs AVX-512 F/BW/VL/DQ (+ VNNI for the Q8-activation dots); compiled for
** any x86-64 through target attributes and called only after engine/quant.c
** has checked the CPU.
**
** Each weight type has an "unpack" step that turns a block (or 64 values of
** a K-quant super-block) into 16-float vectors that are bit-identical to the
** scalar dequantization: 4-bit codes index a 16- or 32-entry table of
** already-scaled floats with one permute (table = code value * d, rounded
** exactly as ggml rounds it), 6- and 8-bit codes are converted and scaled.
** eng_dequant stores those vectors; eng_qdot multiplies them into several
** independent FMA accumulators, so both stay bit-exact resp. equal to
** dequantize-then-dot up to the order of additions.
**
** The Q8-activation dots multiply bytes with VPDPBUSD (unsigned x signed,
** four products summed into each int32 lane), two blocks per 512-bit
** register, and scale each block's lanes by d_w * d_x in F32.
*/
#include "engine/quant.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)

#include <immintrin.h>
#include <string.h>

#define T5 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define T5I T5 __attribute__((always_inline))

T5 static inline float h2f(const uint8_t *p)
{
    return _cvtsh_ss(eng_rd16(p));
}

T5 static inline __m512i ld16u8(const uint8_t *p)
{
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}

T5 static inline __m512 iota16(float base)
{
    return _mm512_add_ps(_mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_ps(base));
}

/* ---- F32 / F16 / BF16 ------------------------------------------------------ */

T5 static inline __m512 ld_f16(const uint8_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

T5 static inline __m512 ld_bf16(const uint8_t *p)
{
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

T5 static inline __m512 ld_f16_mask(const uint8_t *p, __mmask16 k)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p));
}

T5 static inline __m512 ld_bf16_mask(const uint8_t *p, __mmask16 k)
{
    __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

T5 static float dot_f32(const void *row, const float *x, int64_t n)
{
    const float *w = row;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, w + i), _mm512_maskz_loadu_ps(k, x + i), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

#define HALF_KERNELS(dotname, deqname, load, loadm)                                 \
    T5 static float dotname(const void *row, const float *x, int64_t n)             \
    {                                                                               \
        const uint8_t *w = row;                                                     \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                 \
        int64_t i = 0;                                                              \
        for (; i + 64 <= n; i += 64) {                                              \
            a0 = _mm512_fmadd_ps(load(w + 2 * i), _mm512_loadu_ps(x + i), a0);      \
            a1 = _mm512_fmadd_ps(load(w + 2 * i + 32), _mm512_loadu_ps(x + i + 16), a1); \
            a2 = _mm512_fmadd_ps(load(w + 2 * i + 64), _mm512_loadu_ps(x + i + 32), a2); \
            a3 = _mm512_fmadd_ps(load(w + 2 * i + 96), _mm512_loadu_ps(x + i + 48), a3); \
        }                                                                           \
        for (; i < n; i += 16) {                                                    \
            __mmask16 k = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);  \
            a0 = _mm512_fmadd_ps(loadm(w + 2 * i, k), _mm512_maskz_loadu_ps(k, x + i), a0); \
        }                                                                           \
        return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))); \
    }                                                                               \
    T5 static void deqname(const void *src, float *y, int64_t n)                    \
    {                                                                               \
        const uint8_t *w = src;                                                     \
        for (int64_t i = 0; i < n; i += 16) {                                       \
            __mmask16 k = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);  \
            _mm512_mask_storeu_ps(y + i, k, loadm(w + 2 * i, k));                   \
        }                                                                           \
    }

HALF_KERNELS(dot_f16, deq_f16, ld_f16, ld_f16_mask)
HALF_KERNELS(dot_bf16, deq_bf16, ld_bf16, ld_bf16_mask)

/* ---- unpack steps: exact dequantized vectors ----------------------------- */

/* Q8_0: w = q * d */
T5 static inline void unpack_q8_0(const uint8_t *b, __m512 w[2])
{
    __m512 d = _mm512_set1_ps(h2f(b));
    __m512 q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2))));
    __m512 q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 18))));
    w[0] = _mm512_mul_ps(q0, d);
    w[1] = _mm512_mul_ps(q1, d);
}

/* 16 nibble bytes through a 16-float table: low nibbles -> w[0], high -> w[1] */
T5 static inline void unpack_nib16(const uint8_t *q, __m512 tab, __m512 w[2])
{
    __m512i v = ld16u8(q);
    w[0] = _mm512_permutexvar_ps(v, tab);  /* uses index bits 0..3 */
    w[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tab);
}

/* Q4_0: w = (q - 8) * d */
T5 static inline void unpack_q4_0(const uint8_t *b, __m512 w[2])
{
    unpack_nib16(b + 2, _mm512_mul_ps(iota16(-8.0f), _mm512_set1_ps(h2f(b))), w);
}

/* Q4_1: w = q * d + m */
T5 static inline void unpack_q4_1(const uint8_t *b, __m512 w[2])
{
    __m512 tab = _mm512_add_ps(_mm512_mul_ps(iota16(0.0f), _mm512_set1_ps(h2f(b))),
                               _mm512_set1_ps(h2f(b + 2)));
    unpack_nib16(b + 4, tab, w);
}

/* MXFP4: w = K[q] * 2^(e-128) */
T5 static inline void unpack_mxfp4(const uint8_t *b, __m512 w[2])
{
    __m512 k = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
        _mm_loadu_si128((const __m128i *)eng_mxfp4_values)));
    unpack_nib16(b + 1, _mm512_mul_ps(k, _mm512_set1_ps(eng_e8m0_half(b[0]))), w);
}

/* 5-bit codes: nibbles of 16 bytes plus bit 4 from qh (bit j <-> value j)
** through a 32-float table (tab0: codes 0..15, tab1: 16..31) */
T5 static inline void unpack_q5(uint32_t qh, const uint8_t *qs, __m512 tab0, __m512 tab1,
                                __m512 w[2])
{
    const __m512i c15 = _mm512_set1_epi32(15), c16 = _mm512_set1_epi32(16);
    __m512i v = ld16u8(qs);
    __m512i lo = _mm512_and_si512(v, c15);
    __m512i hi = _mm512_srli_epi32(v, 4);
    lo = _mm512_mask_or_epi32(lo, (__mmask16)(qh & 0xFFFF), lo, c16);
    hi = _mm512_mask_or_epi32(hi, (__mmask16)(qh >> 16), hi, c16);
    w[0] = _mm512_permutex2var_ps(tab0, lo, tab1);
    w[1] = _mm512_permutex2var_ps(tab0, hi, tab1);
}

/* Q5_0: w = (q - 16) * d */
T5 static inline void unpack_q5_0(const uint8_t *b, __m512 w[2])
{
    __m512 d = _mm512_set1_ps(h2f(b));
    unpack_q5(eng_rd32(b + 2), b + 6, _mm512_mul_ps(iota16(-16.0f), d),
              _mm512_mul_ps(iota16(0.0f), d), w);
}

/* Q5_1: w = q * d + m */
T5 static inline void unpack_q5_1(const uint8_t *b, __m512 w[2])
{
    __m512 d = _mm512_set1_ps(h2f(b)), m = _mm512_set1_ps(h2f(b + 2));
    unpack_q5(eng_rd32(b + 4), b + 8, _mm512_add_ps(_mm512_mul_ps(iota16(0.0f), d), m),
              _mm512_add_ps(_mm512_mul_ps(iota16(16.0f), d), m), w);
}

/* Q4_K / Q5_K: values 64k .. 64k+63 of a super-block.  Sub-block 2k uses
** the low nibbles of qs[32k .. 32k+31], 2k+1 the high nibbles;
** w = (d * sc) * q - (dmin * m). */
T5 static inline void k_tables(const uint8_t *b, int k, float d, float dmin,
                               __m512 *d1, __m512 *m1, __m512 *d2, __m512 *m2)
{
    uint8_t sc, m;
    eng_k4_scale_min(2 * k, b + 4, &sc, &m);
    *d1 = _mm512_set1_ps(d * sc);
    *m1 = _mm512_set1_ps(dmin * m);
    eng_k4_scale_min(2 * k + 1, b + 4, &sc, &m);
    *d2 = _mm512_set1_ps(d * sc);
    *m2 = _mm512_set1_ps(dmin * m);
}

/* (d1 * code - m1) for codes base .. base+15: exact (as ggml rounds it) for
** dequantization, one fused multiply-subtract for dot products. */
T5I static inline __m512 k_table(float base, __m512 d1, __m512 m1, int exact)
{
    if (exact)
        return _mm512_sub_ps(_mm512_mul_ps(iota16(base), d1), m1);
    return _mm512_fmsub_ps(iota16(base), d1, m1);
}

T5I static inline void unpack_q4_k(const uint8_t *b, int k, float d, float dmin, int exact,
                                   __m512 w[4])
{
    __m512 d1, m1, d2, m2;
    k_tables(b, k, d, dmin, &d1, &m1, &d2, &m2);
    __m512 t1 = k_table(0.0f, d1, m1, exact);
    __m512 t2 = k_table(0.0f, d2, m2, exact);
    const uint8_t *q = b + 16 + 32 * k;
    __m512i v0 = ld16u8(q), v1 = ld16u8(q + 16);
    w[0] = _mm512_permutexvar_ps(v0, t1);
    w[1] = _mm512_permutexvar_ps(v1, t1);
    w[2] = _mm512_permutexvar_ps(_mm512_srli_epi32(v0, 4), t2);
    w[3] = _mm512_permutexvar_ps(_mm512_srli_epi32(v1, 4), t2);
}

/* Q5_K: the 5-bit codes of the 64 values are built as bytes (low nibble,
** plus 16 where the qh bit of the sub-block is set), then index 32-entry
** tables. */
T5I static inline void unpack_q5_k(const uint8_t *b, int k, float d, float dmin, int exact,
                                   __m512 w[4])
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), c16 = _mm256_set1_epi8(16);
    __m512 d1, m1, d2, m2;
    k_tables(b, k, d, dmin, &d1, &m1, &d2, &m2);
    __m512 t1a = k_table(0.0f, d1, m1, exact), t1b = k_table(16.0f, d1, m1, exact);
    __m512 t2a = k_table(0.0f, d2, m2, exact), t2b = k_table(16.0f, d2, m2, exact);
    __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 16));
    __mmask32 h1 = _mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(1 << (2 * k))));
    __mmask32 h2 = _mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(2 << (2 * k))));
    __m256i v = _mm256_loadu_si256((const __m256i *)(b + 48 + 32 * k));
    __m256i lo = _mm256_and_si256(v, m4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    lo = _mm256_mask_add_epi8(lo, h1, lo, c16);
    hi = _mm256_mask_add_epi8(hi, h2, hi, c16);
    w[0] = _mm512_permutex2var_ps(t1a, _mm512_cvtepu8_epi32(_mm256_castsi256_si128(lo)), t1b);
    w[1] = _mm512_permutex2var_ps(t1a, _mm512_cvtepu8_epi32(_mm256_extracti128_si256(lo, 1)), t1b);
    w[2] = _mm512_permutex2var_ps(t2a, _mm512_cvtepu8_epi32(_mm256_castsi256_si128(hi)), t2b);
    w[3] = _mm512_permutex2var_ps(t2a, _mm512_cvtepu8_epi32(_mm256_extracti128_si256(hi, 1)), t2b);
}

/* Q6_K: 128 values (half n of a super-block); w[j] covers values 16j..16j+15
** of the half, with scale sc[j / 2 ... ] as ggml: w = (d * sc) * (q - 32). */
T5 static inline void unpack_q6_k(const uint8_t *b, int n, float d, __m512 w[8])
{
    const uint8_t *ql = b + 64 * n, *qh = b + 128 + 32 * n;
    const int8_t *sc = (const int8_t *)(b + 192) + 8 * n;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i c32 = _mm256_set1_epi8(32);
    __m256i a = _mm256_loadu_si256((const __m256i *)ql);
    __m256i c = _mm256_loadu_si256((const __m256i *)(ql + 32));
    __m256i h = _mm256_loadu_si256((const __m256i *)qh);
    __m256i q[4];
    q[0] = _mm256_or_si256(_mm256_and_si256(a, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
    q[1] = _mm256_or_si256(_mm256_and_si256(c, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), m4), _mm256_and_si256(h, m30));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(c, 4), m4),
                           _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
    for (int j = 0; j < 4; j++) {
        __m256i s = _mm256_sub_epi8(q[j], c32);
        __m512 f0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(s)));
        __m512 f1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(s, 1)));
        w[2 * j] = _mm512_mul_ps(_mm512_set1_ps(d * sc[2 * j]), f0);
        w[2 * j + 1] = _mm512_mul_ps(_mm512_set1_ps(d * sc[2 * j + 1]), f1);
    }
}

/* ---- drivers ---------------------------------------------------------- */

#define BLOCK32_KERNELS(dotname, deqname, size, unpack)                             \
    T5 static float dotname(const void *row, const float *x, int64_t nb)            \
    {                                                                               \
        const uint8_t *b = row;                                                     \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                 \
        __m512 w[2], v[2];                                                          \
        int64_t i = 0;                                                              \
        for (; i + 2 <= nb; i += 2, b += 2 * (size), x += 64) {                     \
            unpack(b, w);                                                           \
            unpack(b + (size), v);                                                  \
            a0 = _mm512_fmadd_ps(w[0], _mm512_loadu_ps(x), a0);                     \
            a1 = _mm512_fmadd_ps(w[1], _mm512_loadu_ps(x + 16), a1);                \
            a2 = _mm512_fmadd_ps(v[0], _mm512_loadu_ps(x + 32), a2);                \
            a3 = _mm512_fmadd_ps(v[1], _mm512_loadu_ps(x + 48), a3);                \
        }                                                                           \
        if (i < nb) {                                                               \
            unpack(b, w);                                                           \
            a0 = _mm512_fmadd_ps(w[0], _mm512_loadu_ps(x), a0);                     \
            a1 = _mm512_fmadd_ps(w[1], _mm512_loadu_ps(x + 16), a1);                \
        }                                                                           \
        return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))); \
    }                                                                               \
    T5 static void deqname(const void *src, float *y, int64_t nb)                   \
    {                                                                               \
        const uint8_t *b = src;                                                     \
        __m512 w[2];                                                                \
        for (int64_t i = 0; i < nb; i++, b += (size), y += 32) {                    \
            unpack(b, w);                                                           \
            _mm512_storeu_ps(y, w[0]);                                              \
            _mm512_storeu_ps(y + 16, w[1]);                                         \
        }                                                                           \
    }

BLOCK32_KERNELS(dot_q8_0, deq_q8_0, 34, unpack_q8_0)
BLOCK32_KERNELS(dot_q4_0, deq_q4_0, 18, unpack_q4_0)
BLOCK32_KERNELS(dot_q4_1, deq_q4_1, 20, unpack_q4_1)
BLOCK32_KERNELS(dot_q5_0, deq_q5_0, 22, unpack_q5_0)
BLOCK32_KERNELS(dot_q5_1, deq_q5_1, 24, unpack_q5_1)
BLOCK32_KERNELS(dot_mxfp4, deq_mxfp4, 17, unpack_mxfp4)

#define KQUANT_KERNELS(dotname, deqname, size, unpack)                              \
    T5 static float dotname(const void *row, const float *x, int64_t nb)            \
    {                                                                               \
        const uint8_t *b = row;                                                     \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                 \
        __m512 w[4];                                                                \
        for (int64_t i = 0; i < nb; i++, b += (size)) {                             \
            float d = h2f(b), dmin = h2f(b + 2);                                    \
            for (int k = 0; k < 4; k++, x += 64) {                                  \
                unpack(b, k, d, dmin, 0, w);                                        \
                a0 = _mm512_fmadd_ps(w[0], _mm512_loadu_ps(x), a0);                 \
                a1 = _mm512_fmadd_ps(w[1], _mm512_loadu_ps(x + 16), a1);            \
                a2 = _mm512_fmadd_ps(w[2], _mm512_loadu_ps(x + 32), a2);            \
                a3 = _mm512_fmadd_ps(w[3], _mm512_loadu_ps(x + 48), a3);            \
            }                                                                       \
        }                                                                           \
        return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))); \
    }                                                                               \
    T5 static void deqname(const void *src, float *y, int64_t nb)                   \
    {                                                                               \
        const uint8_t *b = src;                                                     \
        __m512 w[4];                                                                \
        for (int64_t i = 0; i < nb; i++, b += (size)) {                             \
            float d = h2f(b), dmin = h2f(b + 2);                                    \
            for (int k = 0; k < 4; k++, y += 64) {                                  \
                unpack(b, k, d, dmin, 1, w);                                        \
                for (int j = 0; j < 4; j++)                                         \
                    _mm512_storeu_ps(y + 16 * j, w[j]);                             \
            }                                                                       \
        }                                                                           \
    }

KQUANT_KERNELS(dot_q4_k, deq_q4_k, 144, unpack_q4_k)
KQUANT_KERNELS(dot_q5_k, deq_q5_k, 176, unpack_q5_k)

T5 static float dot_q6_k(const void *row, const float *x, int64_t nb)
{
    const uint8_t *b = row;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m512 w[8];
    for (int64_t i = 0; i < nb; i++, b += 210) {
        float d = h2f(b + 208);
        for (int n = 0; n < 2; n++, x += 128) {
            unpack_q6_k(b, n, d, w);
            /* w[2j], w[2j+1] are values 32j .. 32j+31 of this half */
            a0 = _mm512_fmadd_ps(w[0], _mm512_loadu_ps(x), a0);
            a1 = _mm512_fmadd_ps(w[1], _mm512_loadu_ps(x + 16), a1);
            a2 = _mm512_fmadd_ps(w[2], _mm512_loadu_ps(x + 32), a2);
            a3 = _mm512_fmadd_ps(w[3], _mm512_loadu_ps(x + 48), a3);
            a0 = _mm512_fmadd_ps(w[4], _mm512_loadu_ps(x + 64), a0);
            a1 = _mm512_fmadd_ps(w[5], _mm512_loadu_ps(x + 80), a1);
            a2 = _mm512_fmadd_ps(w[6], _mm512_loadu_ps(x + 96), a2);
            a3 = _mm512_fmadd_ps(w[7], _mm512_loadu_ps(x + 112), a3);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

T5 static void deq_q6_k(const void *src, float *y, int64_t nb)
{
    const uint8_t *b = src;
    __m512 w[8];
    for (int64_t i = 0; i < nb; i++, b += 210) {
        float d = h2f(b + 208);
        for (int n = 0; n < 2; n++, y += 128) {
            unpack_q6_k(b, n, d, w);
            for (int j = 0; j < 8; j++)
                _mm512_storeu_ps(y + 16 * j, w[j]);
        }
    }
}

/* ---- integer dots with Q8 activations (VNNI) -------------------------------- */

T5 static inline __m256i ld256(const uint8_t *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* 32 bytes of block A in the low half, block B in the high half */
T5 static inline __m512i pair(__m256i a, __m256i b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

/* four f16 values at p, p + stride, ... as floats */
T5 static inline __m128 h4(const uint8_t *p, int stride)
{
    __m128i h = _mm_setr_epi16((short)eng_rd16(p), (short)eng_rd16(p + stride),
                               (short)eng_rd16(p + 2 * stride), (short)eng_rd16(p + 3 * stride),
                               0, 0, 0, 0);
    return _mm_cvtph_ps(h);
}

T5 static inline __m256i nib32(const uint8_t *q)
{
    __m128i v = _mm_loadu_si128((const __m128i *)q);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
}

/* 32 bits -> 32 bytes: 0x10 where the bit is set */
T5 static inline __m256i bit4_bytes(uint32_t bits)
{
    return _mm256_maskz_mov_epi8((__mmask32)bits, _mm256_set1_epi8(0x10));
}

/* How the weight codes multiply the activation bytes. */
enum {
    DP_SIGNED,   /* signed codes: |w| times a with w's sign */
    DP_OFF8,     /* unsigned codes, value = code - 8 */
    DP_OFF16,    /* unsigned codes, value = code - 16 */
    DP_UNSIGNED  /* unsigned codes, value = code */
};

T5I static inline __m512i dp(int kind, __m512i w, __m512i a)
{
    const __m512i z = _mm512_setzero_si512();
    if (kind == DP_SIGNED) {
        __mmask64 neg = _mm512_movepi8_mask(w);
        __m512i sa = _mm512_mask_sub_epi8(a, neg, z, a);
        return _mm512_dpbusd_epi32(z, _mm512_abs_epi8(w), sa);
    }
    __m512i p = _mm512_dpbusd_epi32(z, w, a);
    if (kind == DP_OFF8)
        p = _mm512_sub_epi32(p, _mm512_dpbusd_epi32(z, _mm512_set1_epi8(8), a));
    if (kind == DP_OFF16)
        p = _mm512_sub_epi32(p, _mm512_dpbusd_epi32(z, _mm512_set1_epi8(16), a));
    return p;
}

typedef __m256i (*CodesFn)(const uint8_t *w);

/* Weight row of nb blocks of `ws` bytes (codes() gives the 32 code bytes of
** one block) times Q8_0 (affine = 0) or Q8_1 (affine = 1: adds m_w * s_a)
** activations.  Four blocks per step: two 512-bit VNNI products, the eight
** int32 partial sums of each block scaled by d_w * d_a in F32. */
T5I static inline float dot8_run(const uint8_t *w, const uint8_t *a, int64_t nb, int ws,
                                 int kind, int affine, int e8m0, CodesFn codes)
{
    const int as = affine ? 36 : 34, qa = affine ? 4 : 2;
    const __m512i lo2 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i hi2 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
    __m128 summs = _mm_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4, w += 4 * ws, a += 4 * as) {
        __m512i p0 = dp(kind, pair(codes(w), codes(w + ws)),
                        pair(ld256(a + qa), ld256(a + as + qa)));
        __m512i p1 = dp(kind, pair(codes(w + 2 * ws), codes(w + 3 * ws)),
                        pair(ld256(a + 2 * as + qa), ld256(a + 3 * as + qa)));
        __m128 wd = e8m0 ? _mm_setr_ps(eng_e8m0_half(w[0]), eng_e8m0_half(w[ws]),
                                       eng_e8m0_half(w[2 * ws]), eng_e8m0_half(w[3 * ws]))
                         : h4(w, ws);
        __m512 dd = _mm512_castps128_ps512(_mm_mul_ps(wd, h4(a, as)));
        acc0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(lo2, dd), _mm512_cvtepi32_ps(p0), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(hi2, dd), _mm512_cvtepi32_ps(p1), acc1);
        if (affine)
            summs = _mm_fmadd_ps(h4(w + 2, ws), h4(a + 2, as), summs);
    }
    float r = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if (affine) {
        summs = _mm_add_ps(summs, _mm_movehl_ps(summs, summs));
        r += _mm_cvtss_f32(_mm_add_ss(summs, _mm_movehdup_ps(summs)));
    }
    for (; i < nb; i++, w += ws, a += as) {
        __m512i p = dp(kind, _mm512_zextsi256_si512(codes(w)),
                       _mm512_zextsi256_si512(ld256(a + qa)));
        float wd = e8m0 ? eng_e8m0_half(w[0]) : h2f(w);
        r += (wd * h2f(a)) * (float)_mm512_reduce_add_epi32(p);
        if (affine)
            r += h2f(w + 2) * h2f(a + 2);
    }
    return r;
}

T5 static inline __m256i codes_q8_0(const uint8_t *w)
{
    return ld256(w + 2);
}

T5 static inline __m256i codes_q4_0(const uint8_t *w)
{
    return nib32(w + 2);
}

T5 static inline __m256i codes_q4_1(const uint8_t *w)
{
    return nib32(w + 4);
}

T5 static inline __m256i codes_q5_0(const uint8_t *w)
{
    return _mm256_or_si256(nib32(w + 6), bit4_bytes(eng_rd32(w + 2)));
}

T5 static inline __m256i codes_q5_1(const uint8_t *w)
{
    return _mm256_or_si256(nib32(w + 8), bit4_bytes(eng_rd32(w + 4)));
}

T5 static inline __m256i codes_mxfp4(const uint8_t *w)
{
    const __m256i lut = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)eng_mxfp4_values));
    return _mm256_shuffle_epi8(lut, nib32(w + 1));
}

T5 static float dot8_q8_0(const void *row, const void *xq, int64_t nb)
{
    return dot8_run(row, xq, nb, 34, DP_SIGNED, 0, 0, codes_q8_0);
}

T5 static float dot8_q4_0(const void *row, const void *xq, int64_t nb)
{
    return dot8_run(row, xq, nb, 18, DP_OFF8, 0, 0, codes_q4_0);
}

T5 static float dot8_q5_0(const void *row, const void *xq, int64_t nb)
{
    return dot8_run(row, xq, nb, 22, DP_OFF16, 0, 0, codes_q5_0);
}

T5 static float dot8_q4_1(const void *row, const void *xq, int64_t nb)
{
    return dot8_run(row, xq, nb, 20, DP_UNSIGNED, 1, 0, codes_q4_1);
}

T5 static float dot8_q5_1(const void *row, const void *xq, int64_t nb)
{
    return dot8_run(row, xq, nb, 24, DP_UNSIGNED, 1, 0, codes_q5_1);
}

T5 static float dot8_mxfp4(const void *row, const void *xq, int64_t nb)
{
    return dot8_run(row, xq, nb, 17, DP_SIGNED, 0, 1, codes_mxfp4);
}

static const EngQKernels k_avx512 = {
    .dot = {
        [QT_F32] = dot_f32, [QT_F16] = dot_f16, [QT_BF16] = dot_bf16,
        [QT_Q8_0] = dot_q8_0, [QT_Q4_0] = dot_q4_0, [QT_Q4_1] = dot_q4_1,
        [QT_Q5_0] = dot_q5_0, [QT_Q5_1] = dot_q5_1, [QT_Q4_K] = dot_q4_k,
        [QT_Q5_K] = dot_q5_k, [QT_Q6_K] = dot_q6_k, [QT_MXFP4] = dot_mxfp4,
    },
    .deq = {
        [QT_F16] = deq_f16, [QT_BF16] = deq_bf16,
        [QT_Q8_0] = deq_q8_0, [QT_Q4_0] = deq_q4_0, [QT_Q4_1] = deq_q4_1,
        [QT_Q5_0] = deq_q5_0, [QT_Q5_1] = deq_q5_1, [QT_Q4_K] = deq_q4_k,
        [QT_Q5_K] = deq_q5_k, [QT_Q6_K] = deq_q6_k, [QT_MXFP4] = deq_mxfp4,
    },
    .dot8 = {
        [QT_Q8_0] = dot8_q8_0, [QT_Q4_0] = dot8_q4_0, [QT_Q4_1] = dot8_q4_1,
        [QT_Q5_0] = dot8_q5_0, [QT_Q5_1] = dot8_q5_1, [QT_MXFP4] = dot8_mxfp4,
    },
};

const EngQKernels *eng_qkernels_avx512(void)
{
    return &k_avx512;
}

#else

const EngQKernels *eng_qkernels_avx512(void)
{
    return NULL;
}

#endif
