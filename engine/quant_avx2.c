/*
** engine/quant_avx2.c — AVX2 + FMA + F16C kernels for engine/quant.c.
**
** Compiled for any x86-64 (every function carries a target attribute, no
** -march flag), called only after engine/quant.c has checked the CPU.  The
** F32-activation dots unpack each block to 8-float vectors and accumulate
** with FMA in several independent registers; blocks with a single scale
** accumulate sum(q * x) first and apply the scale once per block.  The
** Q8-activation dots use the maddubs sign trick (unsigned x signed bytes to
** int16 pairs, then madd to int32), as llama.cpp's AVX2 code does.
*/
#include "engine/quant.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)

#include <immintrin.h>
#include <string.h>

#define T2 __attribute__((target("avx2,fma,f16c")))
#define QROUND (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

T2 static inline float h2f(const uint8_t *p)
{
    return _cvtsh_ss(eng_rd16(p));
}

T2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

T2 static inline int hsum_i32_8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

/* int8 lanes 0..7 / 8..15 of v as 8 floats */
T2 static inline __m256 lo8f(__m128i v)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
}

T2 static inline __m256 hi8f(__m128i v)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(v, v)));
}

/* sum(q[j] * x[j]) for 32 int8 values given as two halves, in 8 lanes */
T2 static inline __m256 dot32(__m128i q0, __m128i q1, const float *x)
{
    __m256 a = _mm256_mul_ps(lo8f(q0), _mm256_loadu_ps(x));
    __m256 b = _mm256_mul_ps(hi8f(q0), _mm256_loadu_ps(x + 8));
    a = _mm256_fmadd_ps(lo8f(q1), _mm256_loadu_ps(x + 16), a);
    b = _mm256_fmadd_ps(hi8f(q1), _mm256_loadu_ps(x + 24), b);
    return _mm256_add_ps(a, b);
}

/* sum(q[j] * x[j]) for 16 int8 values, in 8 lanes */
T2 static inline __m256 dot16(__m128i q, const float *x)
{
    __m256 a = _mm256_mul_ps(lo8f(q), _mm256_loadu_ps(x));
    return _mm256_fmadd_ps(hi8f(q), _mm256_loadu_ps(x + 8), a);
}

/* 32 bits -> 32 bytes, 0xFF where the bit is set (byte j <-> bit j) */
T2 static inline __m256i bits_to_bytes(uint32_t bits)
{
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                           0x0101010101010101LL, 0);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), shuf);
    const __m256i sel = _mm256_set1_epi64x(0x8040201008040201LL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
}

/* ---- F32 / F16 / BF16 ---------------------------------------------------- */

T2 static float dot_f32(const void *row, const float *x, int64_t n)
{
    const float *w = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        s += w[i] * x[i];
    return s;
}

T2 static inline __m256 ld_f16(const uint8_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

T2 static inline __m256 ld_bf16(const uint8_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

#define HALF_DOT(name, load, conv)                                              \
    T2 static float name(const void *row, const float *x, int64_t n)            \
    {                                                                           \
        const uint8_t *w = row;                                                 \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;             \
        int64_t i = 0;                                                          \
        for (; i + 32 <= n; i += 32) {                                          \
            a0 = _mm256_fmadd_ps(load(w + 2 * i), _mm256_loadu_ps(x + i), a0);  \
            a1 = _mm256_fmadd_ps(load(w + 2 * i + 16), _mm256_loadu_ps(x + i + 8), a1); \
            a2 = _mm256_fmadd_ps(load(w + 2 * i + 32), _mm256_loadu_ps(x + i + 16), a2); \
            a3 = _mm256_fmadd_ps(load(w + 2 * i + 48), _mm256_loadu_ps(x + i + 24), a3); \
        }                                                                       \
        for (; i + 8 <= n; i += 8)                                              \
            a0 = _mm256_fmadd_ps(load(w + 2 * i), _mm256_loadu_ps(x + i), a0);  \
        float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))); \
        for (; i < n; i++)                                                      \
            s += conv(eng_rd16(w + 2 * i)) * x[i];                                  \
        return s;                                                               \
    }

HALF_DOT(dot_f16, ld_f16, eng_f16_to_f32)
HALF_DOT(dot_bf16, ld_bf16, eng_bf16_to_f32)

T2 static void deq_f16(const void *src, float *y, int64_t n)
{
    const uint8_t *p = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, ld_f16(p + 2 * i));
    for (; i < n; i++)
        y[i] = eng_f16_to_f32(eng_rd16(p + 2 * i));
}

/* ---- 32-value blocks with one scale --------------------------------------- */

T2 static float dot_q8_0(const void *row, const float *x, int64_t nb)
{
    const uint8_t *b = row;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2, b += 68, x += 64) {
        __m256 t0 = dot32(_mm_loadu_si128((const __m128i *)(b + 2)),
                          _mm_loadu_si128((const __m128i *)(b + 18)), x);
        __m256 t1 = dot32(_mm_loadu_si128((const __m128i *)(b + 36)),
                          _mm_loadu_si128((const __m128i *)(b + 52)), x + 32);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b)), t0, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b + 34)), t1, acc1);
    }
    if (i < nb) {
        __m256 t0 = dot32(_mm_loadu_si128((const __m128i *)(b + 2)),
                          _mm_loadu_si128((const __m128i *)(b + 18)), x);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b)), t0, acc0);
    }
    return hsum8(_mm256_add_ps(acc0, acc1));
}

/* Nibbles of 16 bytes through a 16-entry int8 table: values 0..15 (low
** nibbles) in *lo, 16..31 (high nibbles) in *hi. */
T2 static inline void nibbles_lut(const uint8_t *q, __m128i lut, __m128i *lo, __m128i *hi)
{
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m128i v = _mm_loadu_si128((const __m128i *)q);
    *lo = _mm_shuffle_epi8(lut, _mm_and_si128(v, m4));
    *hi = _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(v, 4), m4));
}

/* Blocks of `size` bytes: scale at byte 0 (f16, or E8M0 when e8m0), 16
** nibble bytes at `qoff`, mapped through `lut`. */
T2 static inline float dot_nib_lut(const uint8_t *b, const float *x, int64_t nb,
                                   int size, int qoff, __m128i lut, int e8m0)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (int64_t i = 0; i < nb; i++, b += size, x += 32) {
        __m128i lo, hi;
        nibbles_lut(b + qoff, lut, &lo, &hi);
        __m256 t = dot32(lo, hi, x);
        float d = e8m0 ? eng_e8m0_half(b[0]) : h2f(b);
        if (i & 1)
            acc1 = _mm256_fmadd_ps(_mm256_set1_ps(d), t, acc1);
        else
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d), t, acc0);
    }
    return hsum8(_mm256_add_ps(acc0, acc1));
}

T2 static float dot_q4_0(const void *row, const float *x, int64_t nb)
{
    const __m128i lut = _mm_setr_epi8(-8, -7, -6, -5, -4, -3, -2, -1,
                                      0, 1, 2, 3, 4, 5, 6, 7);
    return dot_nib_lut(row, x, nb, 18, 2, lut, 0);
}

T2 static float dot_mxfp4(const void *row, const float *x, int64_t nb)
{
    const __m128i lut = _mm_loadu_si128((const __m128i *)eng_mxfp4_values);
    return dot_nib_lut(row, x, nb, 17, 1, lut, 1);
}

/* Q4_1: d * sum(q x) + m * sum(x) */
T2 static float dot_q4_1(const void *row, const float *x, int64_t nb)
{
    const uint8_t *b = row;
    const __m128i lut = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m256 accd = _mm256_setzero_ps(), accm = accd;
    for (int64_t i = 0; i < nb; i++, b += 20, x += 32) {
        __m128i lo, hi;
        nibbles_lut(b + 4, lut, &lo, &hi);
        __m256 t = dot32(lo, hi, x);
        __m256 sx = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8)),
                                  _mm256_add_ps(_mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24)));
        accd = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b)), t, accd);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b + 2)), sx, accm);
    }
    return hsum8(_mm256_add_ps(accd, accm));
}

/* 5-bit values of a Q5 block as 32 bytes (0..31), minus `off` */
T2 static inline void q5_values(const uint8_t *qh, const uint8_t *qs, int off,
                                __m128i *lo, __m128i *hi)
{
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    __m256i nib = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4),
                                   _mm_and_si128(v, m4));
    __m256i hb = _mm256_and_si256(bits_to_bytes(eng_rd32(qh)), _mm256_set1_epi8(0x10));
    __m256i q = _mm256_sub_epi8(_mm256_or_si256(nib, hb), _mm256_set1_epi8((char)off));
    *lo = _mm256_castsi256_si128(q);
    *hi = _mm256_extracti128_si256(q, 1);
}

T2 static float dot_q5_0(const void *row, const float *x, int64_t nb)
{
    const uint8_t *b = row;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (int64_t i = 0; i < nb; i++, b += 22, x += 32) {
        __m128i lo, hi;
        q5_values(b + 2, b + 6, 16, &lo, &hi);
        __m256 t = dot32(lo, hi, x);
        if (i & 1)
            acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b)), t, acc1);
        else
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b)), t, acc0);
    }
    return hsum8(_mm256_add_ps(acc0, acc1));
}

T2 static float dot_q5_1(const void *row, const float *x, int64_t nb)
{
    const uint8_t *b = row;
    __m256 accd = _mm256_setzero_ps(), accm = accd;
    for (int64_t i = 0; i < nb; i++, b += 24, x += 32) {
        __m128i lo, hi;
        q5_values(b + 4, b + 8, 0, &lo, &hi);
        __m256 t = dot32(lo, hi, x);
        __m256 sx = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8)),
                                  _mm256_add_ps(_mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24)));
        accd = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b)), t, accd);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b + 2)), sx, accm);
    }
    return hsum8(_mm256_add_ps(accd, accm));
}

/* ---- K-quants ------------------------------------------------------------ */

/* sum over 32 values of (q * d1 - m1) * x, q unsigned bytes in two halves */
T2 static inline __m256 dot32_affine(__m128i q0, __m128i q1, const float *x,
                                     __m256 vd, __m256 vm, __m256 acc)
{
    acc = _mm256_fmadd_ps(_mm256_fmsub_ps(lo8f(q0), vd, vm), _mm256_loadu_ps(x), acc);
    acc = _mm256_fmadd_ps(_mm256_fmsub_ps(hi8f(q0), vd, vm), _mm256_loadu_ps(x + 8), acc);
    acc = _mm256_fmadd_ps(_mm256_fmsub_ps(lo8f(q1), vd, vm), _mm256_loadu_ps(x + 16), acc);
    acc = _mm256_fmadd_ps(_mm256_fmsub_ps(hi8f(q1), vd, vm), _mm256_loadu_ps(x + 24), acc);
    return acc;
}

T2 static float dot_q4_k(const void *row, const float *x, int64_t nb)
{
    const uint8_t *b = row;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (int64_t i = 0; i < nb; i++, b += 144) {
        float d = h2f(b), dmin = h2f(b + 2);
        const uint8_t *q = b + 16;
        for (int k = 0; k < 4; k++, q += 32, x += 64) {
            uint8_t sc, m;
            eng_k4_scale_min(2 * k, b + 4, &sc, &m);
            __m256 d1 = _mm256_set1_ps(d * sc), m1 = _mm256_set1_ps(dmin * m);
            eng_k4_scale_min(2 * k + 1, b + 4, &sc, &m);
            __m256 d2 = _mm256_set1_ps(d * sc), m2 = _mm256_set1_ps(dmin * m);
            __m128i va = _mm_loadu_si128((const __m128i *)q);
            __m128i vb = _mm_loadu_si128((const __m128i *)(q + 16));
            acc0 = dot32_affine(_mm_and_si128(va, m4), _mm_and_si128(vb, m4), x, d1, m1, acc0);
            acc1 = dot32_affine(_mm_and_si128(_mm_srli_epi16(va, 4), m4),
                                _mm_and_si128(_mm_srli_epi16(vb, 4), m4), x + 32, d2, m2, acc1);
        }
    }
    return hsum8(_mm256_add_ps(acc0, acc1));
}

T2 static float dot_q5_k(const void *row, const float *x, int64_t nb)
{
    const uint8_t *b = row;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i b4 = _mm256_set1_epi8(0x10);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (int64_t i = 0; i < nb; i++, b += 176) {
        float d = h2f(b), dmin = h2f(b + 2);
        __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 16));
        const uint8_t *q = b + 48;
        for (int k = 0; k < 4; k++, q += 32, x += 64) {
            uint8_t sc, m;
            eng_k4_scale_min(2 * k, b + 4, &sc, &m);
            __m256 d1 = _mm256_set1_ps(d * sc), m1 = _mm256_set1_ps(dmin * m);
            eng_k4_scale_min(2 * k + 1, b + 4, &sc, &m);
            __m256 d2 = _mm256_set1_ps(d * sc), m2 = _mm256_set1_ps(dmin * m);
            __m256i v = _mm256_loadu_si256((const __m256i *)q);
            /* bit 2k of qh[l] -> 0x10 for sub-block 2k, bit 2k+1 for 2k+1 */
            __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * k), 4), b4);
            __m256i h2 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * k + 1), 4), b4);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(v, m4), h1);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), h2);
            acc0 = dot32_affine(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1),
                                x, d1, m1, acc0);
            acc1 = dot32_affine(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1),
                                x + 32, d2, m2, acc1);
        }
    }
    return hsum8(_mm256_add_ps(acc0, acc1));
}

T2 static float dot_q6_k(const void *row, const float *x, int64_t nb)
{
    const uint8_t *b = row;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m128i m30 = _mm_set1_epi8(0x30);
    const __m128i c32 = _mm_set1_epi8(32);
    __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(),
                      _mm256_setzero_ps(), _mm256_setzero_ps() };
    for (int64_t i = 0; i < nb; i++, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = h2f(b + 208);
        for (int n = 0; n < 2; n++, ql += 64, qh += 32, sc += 8, x += 128) {
            for (int l0 = 0; l0 < 32; l0 += 16) {
                int is = l0 / 16;
                __m128i a = _mm_loadu_si128((const __m128i *)(ql + l0));
                __m128i c = _mm_loadu_si128((const __m128i *)(ql + l0 + 32));
                __m128i h = _mm_loadu_si128((const __m128i *)(qh + l0));
                __m128i q1 = _mm_or_si128(_mm_and_si128(a, m4), _mm_and_si128(_mm_slli_epi16(h, 4), m30));
                __m128i q2 = _mm_or_si128(_mm_and_si128(c, m4), _mm_and_si128(_mm_slli_epi16(h, 2), m30));
                __m128i q3 = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(a, 4), m4), _mm_and_si128(h, m30));
                __m128i q4 = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(c, 4), m4),
                                          _mm_and_si128(_mm_srli_epi16(h, 2), m30));
                acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(d * sc[is]),
                                         dot16(_mm_sub_epi8(q1, c32), x + l0), acc[0]);
                acc[1] = _mm256_fmadd_ps(_mm256_set1_ps(d * sc[is + 2]),
                                         dot16(_mm_sub_epi8(q2, c32), x + l0 + 32), acc[1]);
                acc[2] = _mm256_fmadd_ps(_mm256_set1_ps(d * sc[is + 4]),
                                         dot16(_mm_sub_epi8(q3, c32), x + l0 + 64), acc[2]);
                acc[3] = _mm256_fmadd_ps(_mm256_set1_ps(d * sc[is + 6]),
                                         dot16(_mm_sub_epi8(q4, c32), x + l0 + 96), acc[3]);
            }
        }
    }
    return hsum8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

/* ---- activation quantization ----------------------------------------------- */

/* One block of 32 floats -> 32 int8 at q; returns d, sets *sum */
T2 static inline float quant_block(const float *x, int8_t *q, int *sum)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                              _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(mx, 1), _mm256_castps256_ps128(mx));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    float d = amax / 127.f;
    __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, id), QROUND));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, id), QROUND));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, id), QROUND));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, id), QROUND));
    *sum = hsum_i32_8(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    /* pack to int8 and undo the lane interleave of the packs */
    __m256i p01 = _mm256_packs_epi32(i0, i1), p23 = _mm256_packs_epi32(i2, i3);
    __m256i p = _mm256_packs_epi16(p01, p23);
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, p);
    return d;
}

T2 static void quant_q8_0(const float *x, void *dst, int64_t nb)
{
    uint8_t *b = dst;
    for (int64_t i = 0; i < nb; i++, b += 34, x += 32) {
        int sum;
        float d = quant_block(x, (int8_t *)(b + 2), &sum);
        uint16_t h = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        memcpy(b, &h, 2);
    }
}

T2 static void quant_q8_1(const float *x, void *dst, int64_t nb)
{
    uint8_t *b = dst;
    for (int64_t i = 0; i < nb; i++, b += 36, x += 32) {
        int sum;
        float d = quant_block(x, (int8_t *)(b + 4), &sum);
        uint16_t h = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        uint16_t s = _cvtss_sh(d * (float)sum, _MM_FROUND_TO_NEAREST_INT);
        memcpy(b, &h, 2);
        memcpy(b + 2, &s, 2);
    }
}

/* ---- integer dots with Q8 activations -------------------------------------- */

/* sum of w[j] * a[j] over 32 signed bytes, in 8 int32 lanes (as floats) */
T2 static inline __m256 mul_sum_i8(__m256i w, __m256i a)
{
    __m256i aw = _mm256_sign_epi8(w, w);
    __m256i sa = _mm256_sign_epi8(a, w);
    __m256i p16 = _mm256_maddubs_epi16(aw, sa);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* unsigned w (0..127) times signed a */
T2 static inline __m256 mul_sum_u8i8(__m256i w, __m256i a)
{
    __m256i p16 = _mm256_maddubs_epi16(w, a);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

T2 static inline __m256i nib32(const uint8_t *q)
{
    __m128i v = _mm_loadu_si128((const __m128i *)q);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
}

T2 static inline __m256i ld256(const uint8_t *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

T2 static float dot8_q8_0(const void *row, const void *xq, int64_t nb)
{
    const uint8_t *w = row, *a = xq;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, w += 34, a += 34) {
        __m256 d = _mm256_set1_ps(h2f(w) * h2f(a));
        acc = _mm256_fmadd_ps(d, mul_sum_i8(ld256(w + 2), ld256(a + 2)), acc);
    }
    return hsum8(acc);
}

T2 static float dot8_q4_0(const void *row, const void *xq, int64_t nb)
{
    const uint8_t *w = row, *a = xq;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, w += 18, a += 34) {
        __m256 d = _mm256_set1_ps(h2f(w) * h2f(a));
        __m256i q = _mm256_sub_epi8(nib32(w + 2), _mm256_set1_epi8(8));
        acc = _mm256_fmadd_ps(d, mul_sum_i8(q, ld256(a + 2)), acc);
    }
    return hsum8(acc);
}

T2 static float dot8_q4_1(const void *row, const void *xq, int64_t nb)
{
    const uint8_t *w = row, *a = xq;
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    for (int64_t i = 0; i < nb; i++, w += 20, a += 36) {
        summs += h2f(w + 2) * h2f(a + 2);
        __m256 d = _mm256_set1_ps(h2f(w) * h2f(a));
        acc = _mm256_fmadd_ps(d, mul_sum_u8i8(nib32(w + 4), ld256(a + 4)), acc);
    }
    return hsum8(acc) + summs;
}

T2 static inline __m256i q5_bytes(const uint8_t *qh, const uint8_t *qs)
{
    __m256i hb = _mm256_and_si256(bits_to_bytes(eng_rd32(qh)), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(nib32(qs), hb);
}

T2 static float dot8_q5_0(const void *row, const void *xq, int64_t nb)
{
    const uint8_t *w = row, *a = xq;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, w += 22, a += 34) {
        __m256 d = _mm256_set1_ps(h2f(w) * h2f(a));
        __m256i q = _mm256_sub_epi8(q5_bytes(w + 2, w + 6), _mm256_set1_epi8(16));
        acc = _mm256_fmadd_ps(d, mul_sum_i8(q, ld256(a + 2)), acc);
    }
    return hsum8(acc);
}

T2 static float dot8_q5_1(const void *row, const void *xq, int64_t nb)
{
    const uint8_t *w = row, *a = xq;
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    for (int64_t i = 0; i < nb; i++, w += 24, a += 36) {
        summs += h2f(w + 2) * h2f(a + 2);
        __m256 d = _mm256_set1_ps(h2f(w) * h2f(a));
        acc = _mm256_fmadd_ps(d, mul_sum_u8i8(q5_bytes(w + 4, w + 8), ld256(a + 4)), acc);
    }
    return hsum8(acc) + summs;
}

T2 static float dot8_mxfp4(const void *row, const void *xq, int64_t nb)
{
    const uint8_t *w = row, *a = xq;
    const __m256i lut = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)eng_mxfp4_values));
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, w += 17, a += 34) {
        __m256 d = _mm256_set1_ps(eng_e8m0_half(w[0]) * h2f(a));
        __m256i q = _mm256_shuffle_epi8(lut, nib32(w + 1));
        acc = _mm256_fmadd_ps(d, mul_sum_i8(q, ld256(a + 2)), acc);
    }
    return hsum8(acc);
}

static const EngQKernels k_avx2 = {
    .dot = {
        [QT_F32] = dot_f32, [QT_F16] = dot_f16, [QT_BF16] = dot_bf16,
        [QT_Q8_0] = dot_q8_0, [QT_Q4_0] = dot_q4_0, [QT_Q4_1] = dot_q4_1,
        [QT_Q5_0] = dot_q5_0, [QT_Q5_1] = dot_q5_1, [QT_Q4_K] = dot_q4_k,
        [QT_Q5_K] = dot_q5_k, [QT_Q6_K] = dot_q6_k, [QT_MXFP4] = dot_mxfp4,
    },
    .deq = { [QT_F16] = deq_f16 },
    .dot8 = {
        [QT_Q8_0] = dot8_q8_0, [QT_Q4_0] = dot8_q4_0, [QT_Q4_1] = dot8_q4_1,
        [QT_Q5_0] = dot8_q5_0, [QT_Q5_1] = dot8_q5_1, [QT_MXFP4] = dot8_mxfp4,
    },
    .quant_q8_0 = quant_q8_0,
    .quant_q8_1 = quant_q8_1,
};

const EngQKernels *eng_qkernels_avx2(void)
{
    return &k_avx2;
}

#else

const EngQKernels *eng_qkernels_avx2(void)
{
    return NULL;
}

#endif
