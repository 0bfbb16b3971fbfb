/*
** tests/test_quant.c — the quantized-row kernels (engine/quant.c and its
** SIMD files).
**
** 1. One block per weight type built byte by byte, with the expected floats
**    worked out by hand in the comments (scales, mins, nibbles, high bits,
**    the K-quants' 6-bit packed scales).
** 2. Every code path this CPU has (scalar, AVX2, AVX-512) against the scalar
**    reference on thousands of random blocks: dequantization bit-exact, dot
**    products within float rounding of a double-precision dot.
** 3. f16 / bf16 conversions: subnormals, infinities, NaN, ties.
** 4. Activation quantization to Q8_0/Q8_1 and the integer dots.
** 5. The fixtures quantized by llama.cpp's llama-quantize: every quantized
**    tensor, dequantized, is within its type's quantization error of the
**    same tensor in the F32 file (a wrong layout gives errors near 100%).
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/gguf.h"
#include "engine/qtypes.h"
#include "engine/quant.h"

/* ---- helpers ---------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

/* uniform in [-1, 1) */
static float rndf(void)
{
    return (float)((double)(rnd() >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Compare n floats with a hand-made expectation; print the first mismatch. */
static void expect_floats(const char *what, const float *got, const float *want, int n)
{
    for (int i = 0; i < n; i++) {
        if (got[i] != want[i]) {
            print_error("%s: value %d = %.9g, expected %.9g\n", what, i, got[i], want[i]);
            fail();
        }
    }
}

/* Dequantize one hand-built block at every level; each must give `want`. */
static void check_block(uint32_t type, const uint8_t *blk, const float *want, int n)
{
    float got[256];
    char what[64];
    for (int lvl = 0; lvl < ENG_QLEVEL_COUNT; lvl++) {
        if (!eng_qlevel_supported((EngQLevel)lvl))
            continue;
        memset(got, 0xAB, sizeof got);
        assert_int_equal(eng_dequant_at((EngQLevel)lvl, type, blk, got, n), 0);
        snprintf(what, sizeof what, "%s dequant (%s)", eng_qtraits(type)->name,
                 eng_qlevel_name((EngQLevel)lvl));
        expect_floats(what, got, want, n);
    }
    /* the dot with x = e_i picks value i; with x = 1 it sums the block */
    float x[256];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = 1.0f;
        sum += want[i];
    }
    for (int lvl = 0; lvl < ENG_QLEVEL_COUNT; lvl++) {
        float r;
        if (!eng_qlevel_supported((EngQLevel)lvl))
            continue;
        assert_int_equal(eng_qdot_at((EngQLevel)lvl, type, blk, x, n, &r), 0);
        if (fabs(r - sum) > 1e-6 * (1.0 + fabs(sum))) {
            print_error("%s dot with ones (%s) = %.9g, expected %.9g\n",
                        eng_qtraits(type)->name, eng_qlevel_name((EngQLevel)lvl), r, sum);
            fail();
        }
    }
}

/* ---- 1. hand-built blocks --------------------------------------------- */

static void test_dequant_f32_f16_bf16_hand_values_exact(void **state)
{
    (void)state;
    /* F32: the bytes of 1.5f and -0.25f */
    float fv[2] = { 1.5f, -0.25f };
    check_block(QT_F32, (const uint8_t *)fv, fv, 2);

    /* F16: 0x3C00 = 1.0; 0xC000 = -2.0; 0x3555 = 0x155 * 2^-10 * 2^-1 + 2^-2
    ** = (1 + 341/1024) / 4 = 0.333251953125; 0x0001 = 2^-24 (subnormal) */
    uint8_t h[8];
    put16(h, 0x3C00);
    put16(h + 2, 0xC000);
    put16(h + 4, 0x3555);
    put16(h + 6, 0x0001);
    float hw[4] = { 1.0f, -2.0f, 0.333251953125f, 0x1p-24f };
    check_block(QT_F16, h, hw, 4);

    /* BF16: the top 16 bits of an f32: 0x3F80 = 1.0, 0xC0A0 = -5.0,
    ** 0x3E20 = 0.15625 */
    uint8_t bb[6];
    put16(bb, 0x3F80);
    put16(bb + 2, 0xC0A0);
    put16(bb + 4, 0x3E20);
    float bw[3] = { 1.0f, -5.0f, 0.15625f };
    check_block(QT_BF16, bb, bw, 3);
}

static void test_dequant_q8_0_hand_block_exact(void **state)
{
    (void)state;
    uint8_t b[34] = { 0 };
    put16(b, 0x3800);            /* d = 0.5 */
    int8_t *q = (int8_t *)(b + 2);
    q[0] = 2;                    /* 2 * 0.5 = 1 */
    q[1] = -3;                   /* -1.5 */
    q[5] = -128;                 /* -64 */
    q[31] = 127;                 /* 63.5 */
    float w[32] = { 0 };
    w[0] = 1.0f;
    w[1] = -1.5f;
    w[5] = -64.0f;
    w[31] = 63.5f;
    check_block(QT_Q8_0, b, w, 32);
}

static void test_dequant_q4_0_hand_block_exact(void **state)
{
    (void)state;
    uint8_t b[18];
    put16(b, 0x4000);            /* d = 2 */
    memset(b + 2, 0x88, 16);     /* code 8 everywhere: (8 - 8) * 2 = 0 */
    b[2] = 0xA3;                 /* value 0: (3 - 8) * 2 = -10; value 16: (10 - 8) * 2 = 4 */
    b[17] = 0x0F;                /* value 15: (15 - 8) * 2 = 14; value 31: (0 - 8) * 2 = -16 */
    float w[32] = { 0 };
    w[0] = -10.0f;
    w[16] = 4.0f;
    w[15] = 14.0f;
    w[31] = -16.0f;
    check_block(QT_Q4_0, b, w, 32);
}

static void test_dequant_q4_1_hand_block_exact(void **state)
{
    (void)state;
    uint8_t b[20];
    put16(b, 0x3800);            /* d = 0.5 */
    put16(b + 2, 0xBC00);        /* m = -1 */
    memset(b + 4, 0, 16);        /* code 0: 0 * 0.5 - 1 = -1 */
    b[4] = 0x5F;                 /* value 0: 15 * 0.5 - 1 = 6.5; value 16: 5 * 0.5 - 1 = 1.5 */
    float w[32];
    for (int i = 0; i < 32; i++)
        w[i] = -1.0f;
    w[0] = 6.5f;
    w[16] = 1.5f;
    check_block(QT_Q4_1, b, w, 32);
}

static void test_dequant_q5_0_hand_block_exact(void **state)
{
    (void)state;
    uint8_t b[22] = { 0 };
    put16(b, 0x3C00);            /* d = 1 */
    /* qh: bit 0 (value 0) and bit 17 (value 17) */
    uint32_t qh = (1u << 0) | (1u << 17);
    memcpy(b + 2, &qh, 4);
    b[6] = 0x21;                 /* value 0: (1 | 16) - 16 = 1; value 16: 2 - 16 = -14 */
    b[7] = 0x3F;                 /* value 1: 15 - 16 = -1; value 17: (3 | 16) - 16 = 3 */
    float w[32];
    for (int i = 0; i < 32; i++)
        w[i] = -16.0f;           /* code 0, no high bit: 0 - 16 */
    w[0] = 1.0f;
    w[16] = -14.0f;
    w[1] = -1.0f;
    w[17] = 3.0f;
    check_block(QT_Q5_0, b, w, 32);
}

static void test_dequant_q5_1_hand_block_exact(void **state)
{
    (void)state;
    uint8_t b[24] = { 0 };
    put16(b, 0x3400);            /* d = 0.25 */
    put16(b + 2, 0x4000);        /* m = 2 */
    uint32_t qh = 1u << 31;      /* value 31 gets bit 4 */
    memcpy(b + 4, &qh, 4);
    b[8 + 15] = 0xF0;            /* value 15: 0 * 0.25 + 2 = 2; value 31: (15 | 16) * 0.25 + 2 = 9.75 */
    b[8 + 3] = 0x07;             /* value 3: 7 * 0.25 + 2 = 3.75 */
    float w[32];
    for (int i = 0; i < 32; i++)
        w[i] = 2.0f;
    w[31] = 9.75f;
    w[3] = 3.75f;
    check_block(QT_Q5_1, b, w, 32);
}

static void test_dequant_mxfp4_hand_block_exact(void **state)
{
    (void)state;
    uint8_t b[17] = { 0 };
    b[0] = 130;                  /* scale 2^(130 - 128) = 4 */
    b[1] = 0x97;                 /* value 0: K[7] = 12 -> 48; value 16: K[9] = -1 -> -4 */
    b[16] = 0xF5;                /* value 15: K[5] = 6 -> 24; value 31: K[15] = -12 -> -48 */
    b[2] = 0x08;                 /* value 1: K[8] = 0 (negative zero code) -> 0 */
    float w[32] = { 0 };         /* code 0 -> 0 */
    w[0] = 48.0f;
    w[16] = -4.0f;
    w[15] = 24.0f;
    w[31] = -48.0f;
    check_block(QT_MXFP4, b, w, 32);

    /* e = 0: scale 2^-128, an f32 subnormal; code 1 -> 2^-128, code 7 -> 12 * 2^-128 */
    memset(b, 0, sizeof b);
    b[1] = 0x71;
    float w2[32] = { 0 };
    w2[0] = 0x1p-128f;
    w2[16] = 12.0f * 0x1p-128f;
    check_block(QT_MXFP4, b, w2, 32);
}

/* Q4_K super-block: d = 1, dmin = 0.5; chosen (scale, min) pairs:
**   sub-block 0: sc 1,  m 2     sub-block 1: sc 63, m 0
**   sub-block 4: sc 40 = 0b10'1000, m 33 = 0b10'0001      others 0, 0
** Packing (ggml get_scale_min_k4): j < 4: sc = scales[j] & 63,
** m = scales[j+4] & 63; j >= 4: sc = (scales[j+4] & 15) | (scales[j-4] >> 6) << 4,
** m = (scales[j+4] >> 4) | (scales[j] >> 6) << 4.  So
**   scales[0] = 1 | 2 << 6 = 0x81   (sc0 = 1, top bits of sc4 = 0b10)
**   scales[1] = 63 = 0x3F
**   scales[4] = 2 | 2 << 6 = 0x82   (m0 = 2, top bits of m4 = 0b10)
**   scales[8] = 8 | 1 << 4 = 0x18   (low nibbles of sc4 = 8 and m4 = 1) */
static void test_dequant_q4_k_hand_block_exact(void **state)
{
    (void)state;
    uint8_t b[144] = { 0 };
    put16(b, 0x3C00);
    put16(b + 2, 0x3800);
    uint8_t *sc = b + 4, *qs = b + 16;
    sc[0] = 0x81;
    sc[1] = 0x3F;
    sc[4] = 0x82;
    sc[8] = 0x18;
    qs[0] = 0x5A;   /* value 0 (sub 0): 1 * 1 * 10 - 0.5 * 2 = 9; value 32 (sub 1): 63 * 5 - 0 = 315 */
    qs[64] = 0x07;  /* value 128 (sub 4): 1 * 40 * 7 - 0.5 * 33 = 263.5; value 160 (sub 5): 0 */
    float w[256] = { 0 };
    for (int i = 0; i < 32; i++)
        w[i] = -1.0f;        /* sub 0, code 0: 0 - 0.5 * 2 */
    for (int i = 128; i < 160; i++)
        w[i] = -16.5f;       /* sub 4, code 0: 0 - 0.5 * 33 */
    w[0] = 9.0f;
    w[32] = 315.0f;
    w[128] = 263.5f;
    check_block(QT_Q4_K, b, w, 256);
}

/* Q5_K super-block: d = 0.5, dmin = 1; (scale, min):
**   sub 0: 2, 1     sub 3: 4, 3     sub 6: 17 = 0b01'0001, 50 = 0b11'0010
**   scales[0] = 2, scales[4] = 1, scales[3] = 4, scales[7] = 3,
**   scales[2] = 1 << 6 = 0x40 (top bits of sc6), scales[6] = 3 << 6 = 0xC0
**   (top bits of m6), scales[10] = 1 | 2 << 4 = 0x21 (low nibbles of sc6, m6).
** Fifth bit of value l of sub-block s: bit s of qh[l]. */
static void test_dequant_q5_k_hand_block_exact(void **state)
{
    (void)state;
    uint8_t b[176] = { 0 };
    put16(b, 0x3800);
    put16(b + 2, 0x3C00);
    uint8_t *sc = b + 4, *qh = b + 16, *ql = b + 48;
    sc[0] = 2;
    sc[4] = 1;
    sc[3] = 4;
    sc[7] = 3;
    sc[2] = 0x40;
    sc[6] = 0xC0;
    sc[10] = 0x21;
    ql[0] = 0x03;        /* value 0 (sub 0, low nibble 3) */
    qh[0] = 0x01;        /*   + 16 -> 19: 0.5 * 2 * 19 - 1 * 1 = 18 */
    ql[32 + 5] = 0xE0;   /* value 96 + 5 (sub 3: chunk 1, high nibble 14) */
    qh[5] = 0x08;        /*   + 16 -> 30: 0.5 * 4 * 30 - 1 * 3 = 57 */
    ql[96 + 31] = 0x0F;  /* value 192 + 31 (sub 6: chunk 3, low nibble 15), no bit:
                         **   0.5 * 17 * 15 - 50 = 77.5 */
    qh[30] = 0x40;       /* value 192 + 30: code 0 + 16: 0.5 * 17 * 16 - 50 = 136 - 50 = 86 */
    float w[256] = { 0 };
    for (int i = 0; i < 32; i++)
        w[i] = -1.0f;          /* sub 0, code 0 */
    for (int i = 96; i < 128; i++)
        w[i] = -3.0f;          /* sub 3, code 0 */
    for (int i = 192; i < 224; i++)
        w[i] = -50.0f;         /* sub 6, code 0 */
    w[0] = 18.0f;
    w[101] = 57.0f;
    w[223] = 77.5f;
    w[222] = 86.0f;
    check_block(QT_Q5_K, b, w, 256);
}

/* Q6_K super-block: d = 0.25 (f16 at byte 208), int8 scales at 192:
**   sc[0] = 3, sc[2] = -2, sc[5] = 10, sc[15] = -1, others 0.
** Per half n (128 values), l < 32, is = l / 16:
**   value l      = (ql[l] & 15)      | (qh[l] & 3) << 4,        scale sc[is]
**   value l + 32 = (ql[l + 32] & 15) | (qh[l] >> 2 & 3) << 4,   scale sc[is + 2]
**   value l + 64 = (ql[l] >> 4)      | (qh[l] >> 4 & 3) << 4,   scale sc[is + 4]
**   value l + 96 = (ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4,   scale sc[is + 6]
** each minus 32, times d * sc. */
static void test_dequant_q6_k_hand_block_exact(void **state)
{
    (void)state;
    uint8_t b[210] = { 0 };
    uint8_t *ql = b, *qh = b + 128;
    int8_t *sc = (int8_t *)(b + 192);
    put16(b + 208, 0x3400);
    sc[0] = 3;
    sc[2] = -2;
    sc[5] = 10;
    sc[15] = -1;
    ql[0] = 0x05;
    qh[0] = 0x02;         /* value 0: (5 | 2 << 4) - 32 = 5 -> 0.25 * 3 * 5 = 3.75 */
    ql[17] = 0xF0;
    qh[17] = 0x30;        /* value 64 + 17: (15 | 3 << 4) - 32 = 31 -> 0.25 * 10 * 31 = 77.5 */
    ql[64 + 32 + 31] = 0x10;
    qh[32 + 31] = 0x40;   /* value 128 + 96 + 31 (half 1, sc[8 + 1 + 6] = sc[15]):
                          ** (1 | 1 << 4) - 32 = -15 -> 0.25 * -1 * -15 = 3.75 */
    float w[256] = { 0 };
    for (int i = 0; i < 16; i++)
        w[i] = -24.0f;         /* sc[0], code 0: 0.25 * 3 * -32 */
    for (int i = 32; i < 48; i++)
        w[i] = 16.0f;          /* sc[2]: 0.25 * -2 * -32 */
    for (int i = 80; i < 96; i++)
        w[i] = -80.0f;         /* sc[5]: 0.25 * 10 * -32 */
    for (int i = 240; i < 256; i++)
        w[i] = 8.0f;           /* sc[15]: 0.25 * -1 * -32 */
    w[0] = 3.75f;
    w[81] = 77.5f;
    w[255] = 3.75f;
    check_block(QT_Q6_K, b, w, 256);
}

/* ---- 2. every code path against the scalar reference ------------------ */

/* Random row: random code bytes, then sane scales (finite f16 of moderate
** size; E8M0 exponents near 128) so that dots stay finite. */
static void random_row(uint32_t type, uint8_t *row, int64_t n)
{
    const EngQTraits *t = eng_qtraits(type);
    int64_t nb = n / t->blck;
    uint64_t bytes = eng_qrow_bytes(type, n);
    for (uint64_t i = 0; i < bytes; i++)
        row[i] = (uint8_t)rnd();
    for (int64_t i = 0; i < nb; i++) {
        uint8_t *b = row + i * t->size;
        switch (type) {
        case QT_F32: {
            float v = rndf();
            memcpy(b, &v, 4);
            break;
        }
        case QT_F16:
            put16(b, eng_f32_to_f16(rndf()));
            break;
        case QT_BF16:
            put16(b, (uint16_t)(bits_of(rndf()) >> 16));
            break;
        case QT_Q8_0: case QT_Q4_0: case QT_Q5_0:
            put16(b, eng_f32_to_f16(rndf() * 0.05f));
            break;
        case QT_Q4_1: case QT_Q5_1: case QT_Q4_K: case QT_Q5_K:
            put16(b, eng_f32_to_f16(rndf() * 0.05f));
            put16(b + 2, eng_f32_to_f16(rndf() * 0.05f));
            break;
        case QT_Q6_K:
            put16(b + 208, eng_f32_to_f16(rndf() * 0.01f));
            break;
        case QT_MXFP4:
            b[0] = (uint8_t)(120 + rnd() % 16);
            break;
        default:
            fail();
        }
    }
}

static const uint32_t weight_types[] = {
    QT_F32, QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
    QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_MXFP4,
};
#define N_WTYPES (sizeof weight_types / sizeof weight_types[0])

/* Rows of n values, nrows of them: dequant at each level must be
** bit-identical to the reference; each level's dot within 2e-5 * sum|w x|
** of a double-precision dot of the reference dequantization. */
static void compare_paths(uint32_t type, int64_t n, int nrows)
{
    uint64_t rb = eng_qrow_bytes(type, n);
    uint8_t *row = malloc(rb);
    float *x = malloc(n * sizeof(float));
    float *ref = malloc(n * sizeof(float));
    float *got = malloc(n * sizeof(float));
    assert_non_null(row);
    assert_non_null(x);
    assert_non_null(ref);
    assert_non_null(got);
    double max_abs[ENG_QLEVEL_COUNT] = { 0 }, max_rel[ENG_QLEVEL_COUNT] = { 0 };
    int64_t deq_mismatch[ENG_QLEVEL_COUNT] = { 0 };

    for (int r = 0; r < nrows; r++) {
        random_row(type, row, n);
        for (int64_t i = 0; i < n; i++)
            x[i] = rndf();
        eng_dequant_ref(type, row, ref, n);
        double exact = 0.0, mag = 0.0;
        for (int64_t i = 0; i < n; i++) {
            exact += (double)ref[i] * x[i];
            mag += fabs((double)ref[i] * x[i]);
        }
        for (int lvl = 0; lvl < ENG_QLEVEL_COUNT; lvl++) {
            if (!eng_qlevel_supported((EngQLevel)lvl))
                continue;
            assert_int_equal(eng_dequant_at((EngQLevel)lvl, type, row, got, n), 0);
            if (memcmp(got, ref, n * sizeof(float)) != 0)
                deq_mismatch[lvl]++;
            float d;
            assert_int_equal(eng_qdot_at((EngQLevel)lvl, type, row, x, n, &d), 0);
            double ad = fabs(d - exact);
            double rel = ad / (mag > 0 ? mag : 1.0);
            if (ad > max_abs[lvl])
                max_abs[lvl] = ad;
            if (rel > max_rel[lvl])
                max_rel[lvl] = rel;
        }
        /* the dispatched entry points agree with the best level */
        float d_best, d_disp = eng_qdot(type, row, x, n);
        assert_int_equal(eng_qdot_at(eng_qlevel_best(), type, row, x, n, &d_best), 0);
        assert_true(bits_of(d_disp) == bits_of(d_best));
    }
    for (int lvl = 0; lvl < ENG_QLEVEL_COUNT; lvl++) {
        if (!eng_qlevel_supported((EngQLevel)lvl))
            continue;
        printf("  %-6s n=%-5lld x%-4d %-6s dot vs f64: max abs %.3g, max rel(sum|wx|) %.3g; "
               "dequant rows differing from ref: %lld\n",
               eng_qtraits(type)->name, (long long)n, nrows, eng_qlevel_name((EngQLevel)lvl),
               max_abs[lvl], max_rel[lvl], (long long)deq_mismatch[lvl]);
        assert_int_equal(deq_mismatch[lvl], 0);
        assert_true(max_rel[lvl] < 2e-5);
    }
    free(row);
    free(x);
    free(ref);
    free(got);
}

static void test_paths_random_rows_match_reference(void **state)
{
    (void)state;
    printf("  best level on this CPU: %s\n", eng_qlevel_name(eng_qlevel_best()));
    for (size_t t = 0; t < N_WTYPES; t++) {
        uint32_t type = weight_types[t];
        /* 64 rows of 4096 values: 8192 blocks of 32, 1024 super-blocks */
        compare_paths(type, 4096, 64);
        /* odd block counts exercise the tails */
        int blck = eng_qtraits(type)->blck;
        compare_paths(type, blck == 1 ? 77 : 3 * blck, 200);
        compare_paths(type, blck == 1 ? 5 : blck, 200);
    }
}

/* ---- 3. conversions ------------------------------------------------------- */

static void test_f16_to_f32_special_values_exact(void **state)
{
    (void)state;
    assert_true(eng_f16_to_f32(0x3C00) == 1.0f);
    assert_true(eng_f16_to_f32(0x0001) == 0x1p-24f);          /* smallest subnormal */
    assert_true(eng_f16_to_f32(0x03FF) == 1023.0f * 0x1p-24f); /* largest subnormal */
    assert_true(eng_f16_to_f32(0x0400) == 0x1p-14f);          /* smallest normal */
    assert_true(eng_f16_to_f32(0x7BFF) == 65504.0f);          /* largest finite */
    assert_true(eng_f16_to_f32(0x7C00) == INFINITY);
    assert_true(eng_f16_to_f32(0xFC00) == -INFINITY);
    assert_true(isnan(eng_f16_to_f32(0x7E00)));
    assert_true(isnan(eng_f16_to_f32(0x7C01)));               /* signalling NaN stays NaN */
    float nz = eng_f16_to_f32(0x8000);
    assert_true(nz == 0.0f && signbit(nz));
    assert_true(eng_f16_to_f32(0x8001) == -0x1p-24f);
}

static void test_f32_to_f16_rounding_and_specials_exact(void **state)
{
    (void)state;
    assert_int_equal(eng_f32_to_f16(1.0f), 0x3C00);
    assert_int_equal(eng_f32_to_f16(-2.0f), 0xC000);
    assert_int_equal(eng_f32_to_f16(65504.0f), 0x7BFF);
    assert_int_equal(eng_f32_to_f16(65519.99f), 0x7BFF);      /* below the midpoint */
    assert_int_equal(eng_f32_to_f16(65520.0f), 0x7C00);       /* tie -> even = inf */
    assert_int_equal(eng_f32_to_f16(1e10f), 0x7C00);
    assert_int_equal(eng_f32_to_f16(-INFINITY), 0xFC00);
    assert_true((eng_f32_to_f16(NAN) & 0x7C00) == 0x7C00 && (eng_f32_to_f16(NAN) & 0x3FF));
    assert_int_equal(eng_f32_to_f16(-0.0f), 0x8000);
    /* ties at normal precision: 1 + 2^-11 lies halfway between 0x3C00 and
    ** 0x3C01 -> even 0x3C00; 1 + 3 * 2^-11 between 0x3C01 and 0x3C02 -> 0x3C02 */
    assert_int_equal(eng_f32_to_f16(1.0f + 0x1p-11f), 0x3C00);
    assert_int_equal(eng_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);
    assert_int_equal(eng_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01);
    /* subnormals, units of 2^-24 */
    assert_int_equal(eng_f32_to_f16(0x1p-24f), 0x0001);
    assert_int_equal(eng_f32_to_f16(0x1p-25f), 0x0000);       /* tie -> even 0 */
    assert_int_equal(eng_f32_to_f16(1.5f * 0x1p-25f), 0x0001);
    assert_int_equal(eng_f32_to_f16(3.0f * 0x1p-25f), 0x0002); /* 1.5 units: tie -> 2 */
    assert_int_equal(eng_f32_to_f16(5.0f * 0x1p-25f), 0x0002); /* 2.5 units: tie -> 2 */
    assert_int_equal(eng_f32_to_f16(1023.5f * 0x1p-24f), 0x0400); /* rounds up to the smallest normal */
    assert_int_equal(eng_f32_to_f16(1e-10f), 0x0000);
    assert_int_equal(eng_f32_to_f16(-1e-45f), 0x8000);        /* f32 subnormal */

    /* every finite half survives the round trip */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF))
            continue;
        if (eng_f32_to_f16(eng_f16_to_f32((uint16_t)h)) != h) {
            print_error("round trip of 0x%04x gives 0x%04x\n", h,
                        eng_f32_to_f16(eng_f16_to_f32((uint16_t)h)));
            fail();
        }
    }
}

#ifdef __FLT16_MAX__
static float f32_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* the compiler's own _Float16 conversion as an independent reference */
static void test_f32_to_f16_random_matches_compiler(void **state)
{
    (void)state;
    int64_t bad = 0;
    for (int i = 0; i < 2000000; i++) {
        float f = f32_of((uint32_t)rnd());
        if (isnan(f))
            continue;
        _Float16 hf = (_Float16)f;
        uint16_t want;
        memcpy(&want, &hf, 2);
        if (eng_f32_to_f16(f) != want)
            bad++;
        float back = (float)hf;
        if (!isinf(back) && eng_f16_to_f32(want) != back)
            bad++;
    }
    printf("  2e6 random f32 -> f16 against _Float16: %lld mismatches\n", (long long)bad);
    assert_int_equal(bad, 0);
}
#endif

static void test_bf16_to_f32_specials_exact(void **state)
{
    (void)state;
    assert_true(eng_bf16_to_f32(0x3F80) == 1.0f);
    assert_true(eng_bf16_to_f32(0xBF80) == -1.0f);
    assert_true(eng_bf16_to_f32(0x7F80) == INFINITY);
    assert_true(eng_bf16_to_f32(0xFF80) == -INFINITY);
    assert_true(isnan(eng_bf16_to_f32(0x7FC0)));
    assert_true(eng_bf16_to_f32(0x0001) == 0x1p-133f);        /* subnormal: 2^-126 * 2^-7 */
    assert_true(eng_bf16_to_f32(0x0080) == 0x1p-126f);
    float nz = eng_bf16_to_f32(0x8000);
    assert_true(nz == 0.0f && signbit(nz));
}

/* ---- misc: row bytes and bad arguments ------------------------------------ */

static void test_qrow_bytes_types_block_sizes(void **state)
{
    (void)state;
    assert_int_equal(eng_qrow_bytes(QT_F32, 10), 40);
    assert_int_equal(eng_qrow_bytes(QT_F16, 10), 20);
    assert_int_equal(eng_qrow_bytes(QT_BF16, 7), 14);
    assert_int_equal(eng_qrow_bytes(QT_Q8_0, 4096), 128 * 34);
    assert_int_equal(eng_qrow_bytes(QT_Q4_0, 64), 36);
    assert_int_equal(eng_qrow_bytes(QT_Q4_1, 64), 40);
    assert_int_equal(eng_qrow_bytes(QT_Q5_0, 64), 44);
    assert_int_equal(eng_qrow_bytes(QT_Q5_1, 64), 48);
    assert_int_equal(eng_qrow_bytes(QT_Q4_K, 4096), 16 * 144);
    assert_int_equal(eng_qrow_bytes(QT_Q5_K, 512), 2 * 176);
    assert_int_equal(eng_qrow_bytes(QT_Q6_K, 256), 210);
    assert_int_equal(eng_qrow_bytes(QT_MXFP4, 2880), 90 * 17);
    assert_int_equal(eng_qrow_bytes(4, 32), 0);               /* removed type id */
    assert_int_equal(eng_qrow_bytes(QT_COUNT, 32), 0);
}

static void test_qdot_bad_type_or_length_nan(void **state)
{
    (void)state;
    uint8_t blk[256] = { 0 };
    float x[256] = { 0 };
    float y[4];
    assert_true(isnan(eng_qdot(QT_Q2_K, blk, x, 256)));      /* no kernel */
    assert_true(isnan(eng_qdot(QT_Q4_0, blk, x, 33)));       /* not whole blocks */
    assert_true(isnan(eng_qdot(999, blk, x, 32)));
    assert_true(isnan(eng_qdot_ref(QT_IQ2_XXS, blk, x, 256)));
    eng_dequant(QT_Q3_K, blk, y, 4);
    for (int i = 0; i < 4; i++)
        assert_true(isnan(y[i]));
    float r = 1.0f;
    assert_int_equal(eng_qdot_at(ENG_QLEVEL_SCALAR, QT_Q8_K, blk, x, 256, &r), -1);
    assert_true(r == 1.0f);                                   /* untouched */
    assert_true(isnan(eng_qdot_q8act(QT_Q4_K, blk, blk, 256)));
    assert_int_equal(eng_q8act_type(QT_Q6_K), -1);
    assert_int_equal(eng_q8act_type(QT_Q4_1), QT_Q8_1);
    assert_int_equal(eng_q8act_type(QT_MXFP4), QT_Q8_0);
    /* a zero-length row is a valid empty sum */
    assert_true(eng_qdot(QT_Q4_0, blk, x, 0) == 0.0f);
}

/* ---- 4. activation quantization and integer dots ------------------------- */

static void test_quantize_q8_0_act_hand_block_exact(void **state)
{
    (void)state;
    /* amax = 127 -> d = 1, scale 127/127 = 1: q = round-half-even(x) */
    float x[32] = { 0 };
    x[0] = 127.0f;
    x[1] = -63.5f;   /* tie -> even: -64 */
    x[2] = 0.5f;     /* tie -> 0 */
    x[3] = 1.5f;     /* tie -> 2 */
    x[4] = 2.5f;     /* tie -> 2 */
    x[5] = -3.4f;    /* -3 */
    x[6] = 100.6f;   /* 101 */
    int8_t want[32] = { 127, -64, 0, 2, 2, -3, 101 };
    for (int lvl = 0; lvl < ENG_QLEVEL_COUNT; lvl++) {
        if (!eng_qlevel_supported((EngQLevel)lvl))
            continue;
        uint8_t b[36];
        assert_int_equal(eng_quantize_act_at((EngQLevel)lvl, QT_Q8_0, x, b, 32), 0);
        uint16_t d;
        memcpy(&d, b, 2);
        assert_int_equal(d, 0x3C00);
        assert_memory_equal(b + 2, want, 32);
        /* Q8_1: s = d * sum(q) = 127 - 64 + 0 + 2 + 2 - 3 + 101 = 165 -> f16 0x5928 */
        assert_int_equal(eng_quantize_act_at((EngQLevel)lvl, QT_Q8_1, x, b, 32), 0);
        memcpy(&d, b, 2);
        assert_int_equal(d, 0x3C00);
        memcpy(&d, b + 2, 2);
        assert_int_equal(d, 0x5928);
        assert_memory_equal(b + 4, want, 32);
    }
    /* an all-zero block: d = 0, q = 0 */
    float z[32] = { 0 };
    uint8_t b[34];
    memset(b, 0x55, sizeof b);
    eng_quantize_q8_0_act(z, b, 32);
    for (int i = 0; i < 34; i++)
        assert_int_equal(b[i], 0);
}

static void test_qdot_q8act_hand_blocks_exact(void **state)
{
    (void)state;
    /* activations: d = 0.5, q[0] = 10, q[16] = -4, q[31] = 2, others 0 */
    uint8_t a0[34] = { 0 }, a1[36] = { 0 };
    put16(a0, 0x3800);
    a0[2 + 0] = 10;
    a0[2 + 16] = (uint8_t)-4;
    a0[2 + 31] = 2;
    put16(a1, 0x3800);
    put16(a1 + 2, 0x4400);          /* s = d * sum(q) = 0.5 * (10 - 4 + 2) = 4 */
    memcpy(a1 + 4, a0 + 2, 32);

    /* Q4_0, d = 2: codes 8 (value 0) except value 0 code 3 (-5), value 16 code 10 (+2),
    ** value 31 code 0 (-8).  sumi = -5 * 10 + 2 * -4 + -8 * 2 = -74;
    ** result = -74 * (2 * 0.5) = -74 */
    uint8_t w40[18];
    put16(w40, 0x4000);
    memset(w40 + 2, 0x88, 16);
    w40[2] = 0xA3;
    w40[17] = 0x08;
    /* Q4_1, d = 1, m = 0.5: codes 0 except value 0 code 15, value 31 code 1.
    ** sumi = 15 * 10 + 1 * 2 = 152; result = 152 * (1 * 0.5) + 0.5 * 4 = 78 */
    uint8_t w41[20] = { 0 };
    put16(w41, 0x3C00);
    put16(w41 + 2, 0x3800);
    w41[4] = 0x0F;
    w41[4 + 15] = 0x10;
    /* MXFP4, e = 129 (scale 2): value 0 code 7 (12), value 16 code 15 (-12).
    ** sumi = 12 * 10 + -12 * -4 = 168; result = 168 * (2 * 0.5) = 168 */
    uint8_t wmx[17] = { 0 };
    wmx[0] = 129;
    wmx[1] = 0xF7;
    /* Q8_0, d = 0.25: q[0] = -128, q[31] = 100: sumi = -1280 + 200 = -1080;
    ** result = -1080 * 0.125 = -135 */
    uint8_t w80[34] = { 0 };
    put16(w80, 0x3400);
    w80[2] = 0x80;
    w80[2 + 31] = 100;
    /* Q5_0, d = 1: qh bit 16 set; codes: value 16 -> nibble 0 | 16 = 16 -> 0;
    ** others code 0 -> -16.  sumi = -16 * 10 + 0 * -4 + -16 * 2 = -192;
    ** result = -192 * 0.5 = -96 */
    uint8_t w50[22] = { 0 };
    put16(w50, 0x3C00);
    uint32_t qh = 1u << 16;
    memcpy(w50 + 2, &qh, 4);
    /* Q5_1, d = 1, m = -1: qh bit 31; value 31 code 16 | 15 = 31 (nibble at
    ** qs[15] high = 15).  sumi = 31 * 2 = 62; result = 62 * 0.5 + -1 * 4 = 27 */
    uint8_t w51[24] = { 0 };
    put16(w51, 0x3C00);
    put16(w51 + 2, 0xBC00);
    qh = 1u << 31;
    memcpy(w51 + 4, &qh, 4);
    w51[8 + 15] = 0xF0;

    struct { uint32_t type; const uint8_t *w; const uint8_t *a; float want; } cases[] = {
        { QT_Q4_0, w40, a0, -74.0f }, { QT_Q4_1, w41, a1, 78.0f },
        { QT_MXFP4, wmx, a0, 168.0f }, { QT_Q8_0, w80, a0, -135.0f },
        { QT_Q5_0, w50, a0, -96.0f }, { QT_Q5_1, w51, a1, 27.0f },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int lvl = 0; lvl < ENG_QLEVEL_COUNT; lvl++) {
            float r;
            if (!eng_qlevel_supported((EngQLevel)lvl))
                continue;
            assert_int_equal(eng_qdot_q8act_at((EngQLevel)lvl, cases[c].type, cases[c].w,
                                               cases[c].a, 32, &r), 0);
            if (r != cases[c].want) {
                print_error("%s q8act dot (%s) = %.9g, expected %.9g\n",
                            eng_qtraits(cases[c].type)->name, eng_qlevel_name((EngQLevel)lvl),
                            r, cases[c].want);
                fail();
            }
        }
    }
}

static void test_qdot_q8act_random_paths_match_reference(void **state)
{
    (void)state;
    const uint32_t types[] = { QT_Q8_0, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_MXFP4 };
    const int64_t lens[] = { 4096, 96, 32 };
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        for (size_t li = 0; li < 3; li++) {
            int64_t n = lens[li];
            int nrows = n == 4096 ? 64 : 300;
            uint32_t type = types[t];
            int at = eng_q8act_type(type);
            size_t abytes = (size_t)(n / 32) * (at == QT_Q8_1 ? 36 : 34);
            uint8_t *row = malloc(eng_qrow_bytes(type, n));
            float *x = malloc(n * sizeof(float));
            uint8_t *xq = malloc(abytes), *xq2 = malloc(abytes);
            assert_non_null(row);
            assert_non_null(x);
            assert_non_null(xq);
            assert_non_null(xq2);
            double max_rel[ENG_QLEVEL_COUNT] = { 0 }, max_qerr = 0.0;
            for (int r = 0; r < nrows; r++) {
                random_row(type, row, n);
                for (int64_t i = 0; i < n; i++)
                    x[i] = rndf() * (r % 3 == 0 ? 100.0f : 1.0f);
                assert_int_equal(eng_quantize_act_at(ENG_QLEVEL_SCALAR, (uint32_t)at, x, xq, n), 0);
                float ref = eng_qdot_q8act_ref(type, row, xq, n);
                /* magnitude: sum |w| |x| from the dequantized row */
                float *wd = malloc(n * sizeof(float));
                assert_non_null(wd);
                eng_dequant_ref(type, row, wd, n);
                double mag = 0.0, exact = 0.0;
                for (int64_t i = 0; i < n; i++) {
                    mag += fabs((double)wd[i] * x[i]);
                    exact += (double)wd[i] * x[i];
                }
                free(wd);
                /* quantizing the activations costs at most ~1/254 of each |x| */
                double qerr = fabs(ref - exact) / (mag > 0 ? mag : 1.0);
                if (qerr > max_qerr)
                    max_qerr = qerr;
                for (int lvl = 0; lvl < ENG_QLEVEL_COUNT; lvl++) {
                    if (!eng_qlevel_supported((EngQLevel)lvl))
                        continue;
                    /* every level quantizes bit-identically */
                    assert_int_equal(eng_quantize_act_at((EngQLevel)lvl, (uint32_t)at, x, xq2, n), 0);
                    assert_memory_equal(xq, xq2, abytes);
                    float d;
                    assert_int_equal(eng_qdot_q8act_at((EngQLevel)lvl, type, row, xq, n, &d), 0);
                    double rel = fabs(d - ref) / (mag > 0 ? mag : 1.0);
                    if (rel > max_rel[lvl])
                        max_rel[lvl] = rel;
                }
            }
            for (int lvl = 0; lvl < ENG_QLEVEL_COUNT; lvl++) {
                if (!eng_qlevel_supported((EngQLevel)lvl))
                    continue;
                printf("  %-6s n=%-5lld x%-4d %-6s q8act dot vs scalar: max rel %.3g "
                       "(scalar vs f32-activation dot: max rel %.3g)\n",
                       eng_qtraits(type)->name, (long long)n, nrows,
                       eng_qlevel_name((EngQLevel)lvl), max_rel[lvl], max_qerr);
                assert_true(max_rel[lvl] < 1e-5);
            }
            assert_true(max_qerr < 1e-2);
            free(row);
            free(x);
            free(xq);
            free(xq2);
        }
    }
}

/* ---- 5. tensors quantized by llama.cpp against the F32 originals -------- */

/* largest relative RMS error expected from each type's quantization */
static double type_tolerance(uint32_t type)
{
    switch (type) {
    case QT_F16: case QT_BF16: return 1e-3;
    case QT_Q8_0: return 0.01;
    case QT_Q6_K: return 0.03;
    case QT_Q5_0: case QT_Q5_1: case QT_Q5_K: return 0.06;
    case QT_Q4_0: case QT_Q4_1: case QT_Q4_K: return 0.12;
    case QT_MXFP4: return 0.2;
    default: return 0.0;
    }
}

static void test_fixture_tensors_dequant_near_f32(void **state)
{
    (void)state;
    static const char *pairs[][2] = {
        { "tests/data/fixtures/mixtral/mixtral-q8_0.gguf", "tests/data/fixtures/mixtral/mixtral-f32.gguf" },
        { "tests/data/fixtures/mixtral/mixtral-q4_0.gguf", "tests/data/fixtures/mixtral/mixtral-f32.gguf" },
        { "tests/data/fixtures/mixtral/mixtral-q4_k_m.gguf", "tests/data/fixtures/mixtral/mixtral-f32.gguf" },
        { "tests/data/fixtures/mixtral/mixtral-f16.gguf", "tests/data/fixtures/mixtral/mixtral-f32.gguf" },
        { "tests/data/fixtures/qwen2moe/qwen2moe-q4_k_m.gguf", "tests/data/fixtures/qwen2moe/qwen2moe-f32.gguf" },
        { "tests/data/fixtures/qwen2moe/qwen2moe-q4_0.gguf", "tests/data/fixtures/qwen2moe/qwen2moe-f32.gguf" },
        { "tests/data/fixtures/qwen3moe/qwen3moe-q4_0.gguf", "tests/data/fixtures/qwen3moe/qwen3moe-f32.gguf" },
        { "tests/data/fixtures/gpt-oss/gpt-oss-mxfp4.gguf", "tests/data/fixtures/gpt-oss/gpt-oss-f32.gguf" },
    };
    double worst[QT_COUNT] = { 0 };
    int64_t count[QT_COUNT] = { 0 };
    char err[256];
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        Gguf *gq = NULL, *gf = NULL;
        if (gguf_open(pairs[p][0], &gq, err, sizeof err) != GGUF_OK) {
            print_error("%s: %s\n", pairs[p][0], err);
            fail();
        }
        if (gguf_open(pairs[p][1], &gf, err, sizeof err) != GGUF_OK) {
            print_error("%s: %s\n", pairs[p][1], err);
            fail();
        }
        for (uint64_t t = 0; t < gq->n_tensors; t++) {
            const GgufTensor *tq = &gq->tensors[t];
            if (tq->type == QT_F32)
                continue;
            const GgufTensor *tf = gguf_tensor(gf, tq->name);
            assert_non_null(tf);
            assert_int_equal(tf->type, QT_F32);
            assert_int_equal(tf->nelem, tq->nelem);
            assert_true(type_tolerance(tq->type) > 0);   /* a type we support */
            float *d = malloc((size_t)tq->nelem * sizeof(float));
            assert_non_null(d);
            eng_dequant(tq->type, tq->data, d, tq->nelem);
            const float *f = (const float *)tf->data;
            double se = 0.0, sf = 0.0;
            for (int64_t i = 0; i < tq->nelem; i++) {
                double e = (double)d[i] - f[i];
                se += e * e;
                sf += (double)f[i] * f[i];
            }
            double rel = sqrt(se / (sf > 0 ? sf : 1.0));
            if (rel > worst[tq->type])
                worst[tq->type] = rel;
            count[tq->type]++;
            if (rel > type_tolerance(tq->type)) {
                print_error("%s %s (%s): relative RMS error %.4g > %.4g\n", pairs[p][0],
                            tq->name, eng_qtraits(tq->type)->name, rel,
                            type_tolerance(tq->type));
                fail();
            }
            free(d);
        }
        gguf_free(gq);
        gguf_free(gf);
    }
    for (int t = 0; t < QT_COUNT; t++)
        if (count[t])
            printf("  %-6s %3lld fixture tensors, worst relative RMS error vs F32 %.4g\n",
                   eng_qtraits((uint32_t)t)->name, (long long)count[t], worst[t]);
    /* the fixtures hold every quantized weight type the task names except
    ** BF16 and Q4_1 (llama-quantize's Q4_K_M of qwen2moe uses Q5_1 instead) */
    const uint32_t expect[] = { QT_F16, QT_Q8_0, QT_Q4_0, QT_Q5_0, QT_Q5_1,
                                QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_MXFP4 };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        if (count[expect[i]] == 0)
            printf("  note: no %s tensor in the fixtures\n", eng_qtraits(expect[i])->name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequant_f32_f16_bf16_hand_values_exact),
        cmocka_unit_test(test_dequant_q8_0_hand_block_exact),
        cmocka_unit_test(test_dequant_q4_0_hand_block_exact),
        cmocka_unit_test(test_dequant_q4_1_hand_block_exact),
        cmocka_unit_test(test_dequant_q5_0_hand_block_exact),
        cmocka_unit_test(test_dequant_q5_1_hand_block_exact),
        cmocka_unit_test(test_dequant_mxfp4_hand_block_exact),
        cmocka_unit_test(test_dequant_q4_k_hand_block_exact),
        cmocka_unit_test(test_dequant_q5_k_hand_block_exact),
        cmocka_unit_test(test_dequant_q6_k_hand_block_exact),
        cmocka_unit_test(test_paths_random_rows_match_reference),
        cmocka_unit_test(test_f16_to_f32_special_values_exact),
        cmocka_unit_test(test_f32_to_f16_rounding_and_specials_exact),
#ifdef __FLT16_MAX__
        cmocka_unit_test(test_f32_to_f16_random_matches_compiler),
#endif
        cmocka_unit_test(test_bf16_to_f32_specials_exact),
        cmocka_unit_test(test_qrow_bytes_types_block_sizes),
        cmocka_unit_test(test_qdot_bad_type_or_length_nan),
        cmocka_unit_test(test_quantize_q8_0_act_hand_block_exact),
        cmocka_unit_test(test_qdot_q8act_hand_blocks_exact),
        cmocka_unit_test(test_qdot_q8act_random_paths_match_reference),
        cmocka_unit_test(test_fixture_tensors_dequant_near_f32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
