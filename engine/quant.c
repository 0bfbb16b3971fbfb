/*
** engine/quant.c — dequantization and dot products over ggml-quantized rows.
**
** A weight row is a sequence of blocks in one of ggml's formats (layouts and
** formulas as ggml-common.h / ggml-quants.c define them; every block starts
** with little-endian f16 scales).  This file holds:
**
**   - the scalar reference kernel of every weight type (eng_dequant_ref,
**     eng_qdot_ref).  The dot products dequantize a few blocks into a stack
**     buffer and accumulate in 8 float lanes, so the scalar path is also a
**     usable fallback on an x86-64 without AVX2;
**   - f16 / bf16 conversions (exact, round-to-nearest-even for f32 -> f16);
**   - activation quantization to Q8_0/Q8_1 and the integer reference dots;
**   - the dispatcher: the best SIMD level is chosen once from CPUID, and a
**     merged kernel table (SIMD entry where there is one, scalar otherwise)
**     serves eng_qdot / eng_dequant / eng_qdot_q8act.
**
** Dequantization is bit-exact with ggml on every path (products and sums in
** the order ggml writes them, no fused multiply-add).  Dot products differ
** between paths only by float rounding: the order of additions and, in the
** SIMD paths, fused multiply-adds.
*/
#include "engine/quant.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

/* ---- small helpers ----------------------------------------------------- */

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t bits_from_f32(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

const int8_t eng_mxfp4_values[16] = {
    0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12
};

/* ---- f16 / bf16 ------------------------------------------------------------ */

float eng_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;

    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * 0x1p-24f;
        return f32_from_bits(bits_from_f32(v) | sign);
    }
    if (exp == 31) {
        /* inf, or NaN made quiet with its payload kept (as F16C does) */
        uint32_t quiet = man ? 0x400000u : 0;
        return f32_from_bits(sign | 0x7F800000u | quiet | (man << 13));
    }
    return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t eng_f32_to_f16(float f)
{
    uint32_t x = bits_from_f32(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t a = x & 0x7FFFFFFFu;

    if (a > 0x7F800000u)  /* NaN: quiet, top payload bits kept */
        return (uint16_t)(sign | 0x7E00 | ((a >> 13) & 0x3FF));
    if (a >= 0x477FF000u) /* >= 65520 rounds to infinity */
        return (uint16_t)(sign | 0x7C00);
    if (a >= 0x38800000u) {
        /* normal: rebias, round the 13 dropped bits to nearest even */
        uint32_t r = a - (112u << 23) + 0xFFFu + ((a >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    /* f16 subnormal or zero: units of 2^-24 */
    uint32_t e = a >> 23;
    if (e < 101)          /* below 2^-25: rounds to zero */
        return sign;
    uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
    uint32_t shift = 126 - e;   /* 14..25 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1)))
        q++;
    return (uint16_t)(sign | q);
}

float eng_bf16_to_f32(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

/* ---- scalar dequantization (nb blocks each) ------------------------------ */

static void deq_f32(const void *src, float *y, int64_t nb)
{
    memcpy(y, src, (size_t)nb * sizeof(float));
}

static void deq_f16(const void *src, float *y, int64_t nb)
{
    const uint8_t *p = src;
    for (int64_t i = 0; i < nb; i++)
        y[i] = eng_f16_to_f32(eng_rd16(p + 2 * i));
}

static void deq_bf16(const void *src, float *y, int64_t nb)
{
    const uint8_t *p = src;
    for (int64_t i = 0; i < nb; i++)
        y[i] = eng_bf16_to_f32(eng_rd16(p + 2 * i));
}

/* Q8_0: d (f16), qs[32] int8.  y = q * d */
static void deq_q8_0(const void *src, float *y, int64_t nb)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < nb; i++, b += 34, y += 32) {
        float d = eng_f16_to_f32(eng_rd16(b));
        const int8_t *q = (const int8_t *)(b + 2);
        for (int j = 0; j < 32; j++)
            y[j] = q[j] * d;
    }
}

/* Q4_0: d, qs[16]; value j = low nibble of qs[j], j+16 = high nibble;
** y = (q - 8) * d */
static void deq_q4_0(const void *src, float *y, int64_t nb)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < nb; i++, b += 18, y += 32) {
        float d = eng_f16_to_f32(eng_rd16(b));
        const uint8_t *q = b + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = ((q[j] & 0xF) - 8) * d;
            y[j + 16] = ((q[j] >> 4) - 8) * d;
        }
    }
}

/* Q4_1: d, m, qs[16]; y = q * d + m */
static void deq_q4_1(const void *src, float *y, int64_t nb)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < nb; i++, b += 20, y += 32) {
        float d = eng_f16_to_f32(eng_rd16(b));
        float m = eng_f16_to_f32(eng_rd16(b + 2));
        const uint8_t *q = b + 4;
        for (int j = 0; j < 16; j++) {
            y[j] = (q[j] & 0xF) * d + m;
            y[j + 16] = (q[j] >> 4) * d + m;
        }
    }
}

/* Q5_0: d, qh (u32: bit j = 5th bit of value j), qs[16];
** y = (q5 - 16) * d */
static void deq_q5_0(const void *src, float *y, int64_t nb)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < nb; i++, b += 22, y += 32) {
        float d = eng_f16_to_f32(eng_rd16(b));
        uint32_t qh = eng_rd32(b + 2);
        const uint8_t *q = b + 6;
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (((q[j] & 0xF) | h0) - 16) * d;
            y[j + 16] = (((q[j] >> 4) | h1) - 16) * d;
        }
    }
}

/* Q5_1: d, m, qh, qs[16]; y = q5 * d + m */
static void deq_q5_1(const void *src, float *y, int64_t nb)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < nb; i++, b += 24, y += 32) {
        float d = eng_f16_to_f32(eng_rd16(b));
        float m = eng_f16_to_f32(eng_rd16(b + 2));
        uint32_t qh = eng_rd32(b + 4);
        const uint8_t *q = b + 8;
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = ((q[j] & 0xF) | h0) * d + m;
            y[j + 16] = ((q[j] >> 4) | h1) * d + m;
        }
    }
}

/* Q4_K: d, dmin, scales[12] (8 six-bit scales + 8 six-bit mins), qs[128].
** Each 64 values: 32 bytes; low nibbles are sub-block 2k, high 2k+1.
** y = (d * sc) * q - (dmin * m) */
static void deq_q4_k(const void *src, float *y, int64_t nb)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < nb; i++, b += 144) {
        float d = eng_f16_to_f32(eng_rd16(b));
        float dmin = eng_f16_to_f32(eng_rd16(b + 2));
        const uint8_t *scales = b + 4;
        const uint8_t *q = b + 16;
        for (int k = 0; k < 4; k++, q += 32) {
            uint8_t sc, m;
            eng_k4_scale_min(2 * k, scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            eng_k4_scale_min(2 * k + 1, scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

/* Q5_K: d, dmin, scales[12], qh[32], qs[128].  Sub-block s takes its 5th
** bit from bit s of qh[l]. */
static void deq_q5_k(const void *src, float *y, int64_t nb)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < nb; i++, b += 176) {
        float d = eng_f16_to_f32(eng_rd16(b));
        float dmin = eng_f16_to_f32(eng_rd16(b + 2));
        const uint8_t *scales = b + 4;
        const uint8_t *qh = b + 16;
        const uint8_t *ql = b + 48;
        for (int k = 0; k < 4; k++, ql += 32) {
            uint8_t sc, m;
            uint8_t u1 = (uint8_t)(1u << (2 * k)), u2 = (uint8_t)(2u << (2 * k));
            eng_k4_scale_min(2 * k, scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            eng_k4_scale_min(2 * k + 1, scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

/* Q6_K: ql[128], qh[64], scales[16] int8, d.  Per 128 values, l < 32:
** value l      = ql[l] low  | qh[l] bits 0-1 << 4, scale sc[l/16]
** value l + 32 = ql[l+32] low  | bits 2-3, scale sc[l/16 + 2]
** value l + 64 = ql[l] high | bits 4-5, scale sc[l/16 + 4]
** value l + 96 = ql[l+32] high | bits 6-7, scale sc[l/16 + 6]
** y = d * sc * (q - 32) */
static void deq_q6_k(const void *src, float *y, int64_t nb)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < nb; i++, b += 210) {
        const uint8_t *ql = b;
        const uint8_t *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = eng_f16_to_f32(eng_rd16(b + 208));
        for (int n = 0; n < 2; n++, ql += 64, qh += 32, sc += 8, y += 128) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[is] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

/* MXFP4: e (E8M0), qs[16]; value j = K[low nibble], j+16 = K[high nibble],
** y = K * 2^(e-128) */
static void deq_mxfp4(const void *src, float *y, int64_t nb)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < nb; i++, b += 17, y += 32) {
        float d = eng_e8m0_half(b[0]);
        const uint8_t *q = b + 1;
        for (int j = 0; j < 16; j++) {
            y[j] = eng_mxfp4_values[q[j] & 0xF] * d;
            y[j + 16] = eng_mxfp4_values[q[j] >> 4] * d;
        }
    }
}

/* ---- scalar dot products: dequantize a chunk, accumulate in 8 lanes ------ */

#define DOT_CHUNK 256

static float dot_chunks(EngQDeqFn deq, int blck, int size, const void *row,
                        const float *x, int64_t nb)
{
    float buf[DOT_CHUNK];
    float acc[8] = { 0 };
    const uint8_t *p = row;
    int64_t per = DOT_CHUNK / blck;

    for (int64_t i = 0; i < nb; i += per) {
        int64_t nblk = nb - i < per ? nb - i : per;
        int64_t nv = nblk * blck;
        deq(p + i * size, buf, nblk);
        const float *xv = x + i * blck;
        int64_t j = 0;
        for (; j + 8 <= nv; j += 8)
            for (int k = 0; k < 8; k++)
                acc[k] += buf[j + k] * xv[j + k];
        for (; j < nv; j++)
            acc[0] += buf[j] * xv[j];
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
           ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

#define SCALAR_DOT(name, deqfn, blck, size)                                  \
    static float name(const void *row, const float *x, int64_t nb)          \
    {                                                                        \
        return dot_chunks(deqfn, blck, size, row, x, nb);                    \
    }

SCALAR_DOT(dot_f32, deq_f32, 1, 4)
SCALAR_DOT(dot_f16, deq_f16, 1, 2)
SCALAR_DOT(dot_bf16, deq_bf16, 1, 2)
SCALAR_DOT(dot_q8_0, deq_q8_0, 32, 34)
SCALAR_DOT(dot_q4_0, deq_q4_0, 32, 18)
SCALAR_DOT(dot_q4_1, deq_q4_1, 32, 20)
SCALAR_DOT(dot_q5_0, deq_q5_0, 32, 22)
SCALAR_DOT(dot_q5_1, deq_q5_1, 32, 24)
SCALAR_DOT(dot_q4_k, deq_q4_k, 256, 144)
SCALAR_DOT(dot_q5_k, deq_q5_k, 256, 176)
SCALAR_DOT(dot_q6_k, deq_q6_k, 256, 210)
SCALAR_DOT(dot_mxfp4, deq_mxfp4, 32, 17)

/* ---- activation quantization (scalar) ------------------------------------ */

/* Round half to even, independent of the FPU rounding mode. |v| < 2^22. */
static int round_even(float v)
{
    float t = floorf(v);
    float diff = v - t;
    int i = (int)t;
    if (diff > 0.5f || (diff == 0.5f && (i & 1)))
        i++;
    return i;
}

/* One block of 32: amax, d = amax/127, q = round(x * 127/amax).  Returns d
** and the sum of the quants. */
static float quant_block_q8(const float *x, int8_t *q, int *sum)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) {
        float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
    }
    float d = amax / 127.f;
    float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int s = 0;
    for (int j = 0; j < 32; j++) {
        int v = round_even(x[j] * id);
        v = v > 127 ? 127 : v < -128 ? -128 : v;
        q[j] = (int8_t)v;
        s += v;
    }
    *sum = s;
    return d;
}

static void quant_q8_0_scalar(const float *x, void *dst, int64_t nb)
{
    uint8_t *b = dst;
    for (int64_t i = 0; i < nb; i++, b += 34, x += 32) {
        int sum;
        float d = quant_block_q8(x, (int8_t *)(b + 2), &sum);
        uint16_t h = eng_f32_to_f16(d);
        memcpy(b, &h, 2);
    }
}

static void quant_q8_1_scalar(const float *x, void *dst, int64_t nb)
{
    uint8_t *b = dst;
    for (int64_t i = 0; i < nb; i++, b += 36, x += 32) {
        int sum;
        float d = quant_block_q8(x, (int8_t *)(b + 4), &sum);
        uint16_t h = eng_f32_to_f16(d);
        uint16_t s = eng_f32_to_f16(d * (float)sum);
        memcpy(b, &h, 2);
        memcpy(b + 2, &s, 2);
    }
}

/* ---- integer dots with Q8 activations (scalar, ggml's generic code) ------ */

static float dot8_q8_0(const void *row, const void *xq, int64_t nb)
{
    const uint8_t *w = row, *a = xq;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++, w += 34, a += 34) {
        const int8_t *qw = (const int8_t *)(w + 2), *qa = (const int8_t *)(a + 2);
        int sumi = 0;
        for (int j = 0; j < 32; j++)
            sumi += qw[j] * qa[j];
        sumf += sumi * (eng_f16_to_f32(eng_rd16(w)) * eng_f16_to_f32(eng_rd16(a)));
    }
    return sumf;
}

static float dot8_q4_0(const void *row, const void *xq, int64_t nb)
{
    const uint8_t *w = row, *a = xq;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++, w += 18, a += 34) {
        const uint8_t *qw = w + 2;
        const int8_t *qa = (const int8_t *)(a + 2);
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi += ((qw[j] & 0xF) - 8) * qa[j] + ((qw[j] >> 4) - 8) * qa[j + 16];
        sumf += sumi * (eng_f16_to_f32(eng_rd16(w)) * eng_f16_to_f32(eng_rd16(a)));
    }
    return sumf;
}

static float dot8_q4_1(const void *row, const void *xq, int64_t nb)
{
    const uint8_t *w = row, *a = xq;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++, w += 20, a += 36) {
        const uint8_t *qw = w + 4;
        const int8_t *qa = (const int8_t *)(a + 4);
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi += (qw[j] & 0xF) * qa[j] + (qw[j] >> 4) * qa[j + 16];
        float dd = eng_f16_to_f32(eng_rd16(w)) * eng_f16_to_f32(eng_rd16(a));
        sumf += dd * sumi + eng_f16_to_f32(eng_rd16(w + 2)) * eng_f16_to_f32(eng_rd16(a + 2));
    }
    return sumf;
}

static float dot8_q5_0(const void *row, const void *xq, int64_t nb)
{
    const uint8_t *w = row, *a = xq;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++, w += 22, a += 34) {
        uint32_t qh = eng_rd32(w + 2);
        const uint8_t *qw = w + 6;
        const int8_t *qa = (const int8_t *)(a + 2);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1) << 4;
            sumi += (((qw[j] & 0xF) | h0) - 16) * qa[j] +
                    (((qw[j] >> 4) | h1) - 16) * qa[j + 16];
        }
        sumf += sumi * (eng_f16_to_f32(eng_rd16(w)) * eng_f16_to_f32(eng_rd16(a)));
    }
    return sumf;
}

static float dot8_q5_1(const void *row, const void *xq, int64_t nb)
{
    const uint8_t *w = row, *a = xq;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++, w += 24, a += 36) {
        uint32_t qh = eng_rd32(w + 4);
        const uint8_t *qw = w + 8;
        const int8_t *qa = (const int8_t *)(a + 4);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1) << 4;
            sumi += ((qw[j] & 0xF) | h0) * qa[j] + ((qw[j] >> 4) | h1) * qa[j + 16];
        }
        float dd = eng_f16_to_f32(eng_rd16(w)) * eng_f16_to_f32(eng_rd16(a));
        sumf += dd * sumi + eng_f16_to_f32(eng_rd16(w + 2)) * eng_f16_to_f32(eng_rd16(a + 2));
    }
    return sumf;
}

static float dot8_mxfp4(const void *row, const void *xq, int64_t nb)
{
    const uint8_t *w = row, *a = xq;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++, w += 17, a += 34) {
        const uint8_t *qw = w + 1;
        const int8_t *qa = (const int8_t *)(a + 2);
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi += eng_mxfp4_values[qw[j] & 0xF] * qa[j] +
                    eng_mxfp4_values[qw[j] >> 4] * qa[j + 16];
        sumf += (eng_e8m0_half(w[0]) * eng_f16_to_f32(eng_rd16(a))) * sumi;
    }
    return sumf;
}

/* ---- kernel tables and dispatch -------------------------------------------- */

static const EngQKernels k_scalar = {
    .dot = {
        [QT_F32] = dot_f32, [QT_F16] = dot_f16, [QT_BF16] = dot_bf16,
        [QT_Q8_0] = dot_q8_0, [QT_Q4_0] = dot_q4_0, [QT_Q4_1] = dot_q4_1,
        [QT_Q5_0] = dot_q5_0, [QT_Q5_1] = dot_q5_1, [QT_Q4_K] = dot_q4_k,
        [QT_Q5_K] = dot_q5_k, [QT_Q6_K] = dot_q6_k, [QT_MXFP4] = dot_mxfp4,
    },
    .deq = {
        [QT_F32] = deq_f32, [QT_F16] = deq_f16, [QT_BF16] = deq_bf16,
        [QT_Q8_0] = deq_q8_0, [QT_Q4_0] = deq_q4_0, [QT_Q4_1] = deq_q4_1,
        [QT_Q5_0] = deq_q5_0, [QT_Q5_1] = deq_q5_1, [QT_Q4_K] = deq_q4_k,
        [QT_Q5_K] = deq_q5_k, [QT_Q6_K] = deq_q6_k, [QT_MXFP4] = deq_mxfp4,
    },
    .dot8 = {
        [QT_Q8_0] = dot8_q8_0, [QT_Q4_0] = dot8_q4_0, [QT_Q4_1] = dot8_q4_1,
        [QT_Q5_0] = dot8_q5_0, [QT_Q5_1] = dot8_q5_1, [QT_MXFP4] = dot8_mxfp4,
    },
    .quant_q8_0 = quant_q8_0_scalar,
    .quant_q8_1 = quant_q8_1_scalar,
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static EngQLevel g_best = ENG_QLEVEL_SCALAR;
static int g_supported[ENG_QLEVEL_COUNT];
static EngQKernels g_merged[ENG_QLEVEL_COUNT];

/* Copy the non-NULL entries of `simd` over `k`. */
static void overlay(EngQKernels *k, const EngQKernels *simd)
{
    if (!simd)
        return;
    for (int t = 0; t < QT_COUNT; t++) {
        if (simd->dot[t])
            k->dot[t] = simd->dot[t];
        if (simd->deq[t])
            k->deq[t] = simd->deq[t];
        if (simd->dot8[t])
            k->dot8[t] = simd->dot8[t];
    }
    if (simd->quant_q8_0)
        k->quant_q8_0 = simd->quant_q8_0;
    if (simd->quant_q8_1)
        k->quant_q8_1 = simd->quant_q8_1;
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <cpuid.h>

/* F16C: CPUID leaf 1, ECX bit 29 (not every compiler's
** __builtin_cpu_supports knows the name).  Its register state is AVX's,
** which the avx2 check already requires the OS to enable. */
static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    return (c >> 29) & 1;
}
#endif

static void detect_once(void)
{
    g_supported[ENG_QLEVEL_SCALAR] = 1;
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    g_supported[ENG_QLEVEL_AVX2] = eng_qkernels_avx2() != NULL &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        cpu_has_f16c();
    g_supported[ENG_QLEVEL_AVX512] = eng_qkernels_avx512() != NULL &&
        g_supported[ENG_QLEVEL_AVX2] &&
        __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vnni");
#endif
    /* each level: scalar entries, overlaid by every level up to it */
    g_merged[ENG_QLEVEL_SCALAR] = k_scalar;
    g_merged[ENG_QLEVEL_AVX2] = k_scalar;
    overlay(&g_merged[ENG_QLEVEL_AVX2], eng_qkernels_avx2());
    g_merged[ENG_QLEVEL_AVX512] = g_merged[ENG_QLEVEL_AVX2];
    overlay(&g_merged[ENG_QLEVEL_AVX512], eng_qkernels_avx512());
    for (int l = ENG_QLEVEL_COUNT - 1; l >= 0; l--) {
        if (g_supported[l]) {
            g_best = (EngQLevel)l;
            break;
        }
    }
}

static const EngQKernels *kernels(EngQLevel lvl)
{
    pthread_once(&g_once, detect_once);
    return &g_merged[lvl];
}

EngQLevel eng_qlevel_best(void)
{
    pthread_once(&g_once, detect_once);
    return g_best;
}

int eng_qlevel_supported(EngQLevel lvl)
{
    pthread_once(&g_once, detect_once);
    return lvl >= 0 && lvl < ENG_QLEVEL_COUNT && g_supported[lvl];
}

const char *eng_qlevel_name(EngQLevel lvl)
{
    switch (lvl) {
    case ENG_QLEVEL_SCALAR: return "scalar";
    case ENG_QLEVEL_AVX2: return "avx2";
    case ENG_QLEVEL_AVX512: return "avx512";
    default: return "?";
    }
}

/* Number of blocks in n values of a weight type, or -1 if the type has no
** kernel or n is not a whole number of blocks. */
static int64_t weight_blocks(uint32_t type, int64_t n)
{
    const EngQTraits *t = eng_qtraits(type);
    if (!t || !t->weight || n < 0 || n % t->blck != 0)
        return -1;
    return n / t->blck;
}

int eng_qdot_at(EngQLevel lvl, uint32_t type, const void *row, const float *x,
                int64_t n, float *out)
{
    int64_t nb = weight_blocks(type, n);
    if (nb < 0 || !eng_qlevel_supported(lvl))
        return -1;
    *out = kernels(lvl)->dot[type](row, x, nb);
    return 0;
}

int eng_dequant_at(EngQLevel lvl, uint32_t type, const void *src, float *dst,
                   int64_t n)
{
    int64_t nb = weight_blocks(type, n);
    if (nb < 0 || !eng_qlevel_supported(lvl))
        return -1;
    kernels(lvl)->deq[type](src, dst, nb);
    return 0;
}

float eng_qdot(uint32_t type, const void *row, const float *x, int64_t n)
{
    float r;
    return eng_qdot_at(eng_qlevel_best(), type, row, x, n, &r) == 0 ? r : NAN;
}

float eng_qdot_ref(uint32_t type, const void *row, const float *x, int64_t n)
{
    float r;
    return eng_qdot_at(ENG_QLEVEL_SCALAR, type, row, x, n, &r) == 0 ? r : NAN;
}

/* Unsupported type or bad n: dst gets n NaNs (so misuse shows in results). */
void eng_dequant(uint32_t type, const void *src, float *dst, int64_t n)
{
    if (eng_dequant_at(eng_qlevel_best(), type, src, dst, n) != 0)
        for (int64_t i = 0; i < n; i++)
            dst[i] = NAN;
}

void eng_dequant_ref(uint32_t type, const void *src, float *dst, int64_t n)
{
    if (eng_dequant_at(ENG_QLEVEL_SCALAR, type, src, dst, n) != 0)
        for (int64_t i = 0; i < n; i++)
            dst[i] = NAN;
}

/* ---- Q8 activations: public entry points ---------------------------------- */

int eng_q8act_type(uint32_t type)
{
    switch (type) {
    case QT_Q8_0: case QT_Q4_0: case QT_Q5_0: case QT_MXFP4:
        return QT_Q8_0;
    case QT_Q4_1: case QT_Q5_1:
        return QT_Q8_1;
    default:
        return -1;
    }
}

int eng_quantize_act_at(EngQLevel lvl, uint32_t act_type, const float *x,
                        void *dst, int64_t n)
{
    if (n < 0 || n % 32 != 0 || !eng_qlevel_supported(lvl))
        return -1;
    if (act_type == QT_Q8_0)
        kernels(lvl)->quant_q8_0(x, dst, n / 32);
    else if (act_type == QT_Q8_1)
        kernels(lvl)->quant_q8_1(x, dst, n / 32);
    else
        return -1;
    return 0;
}

void eng_quantize_q8_0_act(const float *x, void *dst, int64_t n)
{
    eng_quantize_act_at(eng_qlevel_best(), QT_Q8_0, x, dst, n);
}

void eng_quantize_q8_1_act(const float *x, void *dst, int64_t n)
{
    eng_quantize_act_at(eng_qlevel_best(), QT_Q8_1, x, dst, n);
}

int eng_qdot_q8act_at(EngQLevel lvl, uint32_t type, const void *row,
                      const void *xq, int64_t n, float *out)
{
    if (eng_q8act_type(type) < 0 || n < 0 || n % 32 != 0 ||
        !eng_qlevel_supported(lvl))
        return -1;
    *out = kernels(lvl)->dot8[type](row, xq, n / 32);
    return 0;
}

float eng_qdot_q8act(uint32_t type, const void *row, const void *xq, int64_t n)
{
    float r;
    return eng_qdot_q8act_at(eng_qlevel_best(), type, row, xq, n, &r) == 0 ? r : NAN;
}

float eng_qdot_q8act_ref(uint32_t type, const void *row, const void *xq,
                         int64_t n)
{
    float r;
    return eng_qdot_q8act_at(ENG_QLEVEL_SCALAR, type, row, xq, n, &r) == 0 ? r : NAN;
}

const EngQKernels *eng_qkernels_merged(EngQLevel lvl)
{
    if (!eng_qlevel_supported(lvl))
        return NULL;
    return kernels(lvl);
}
