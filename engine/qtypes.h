/*
** engine/qtypes.h — ggml tensor types: ids, block sizes, names, and the
** kernels over quantized rows (dequantize, dot with an F32 vector).
**
** Type ids are ggml's (they are what GGUF files store).  A "block" is the
** unit a type is packed in: blck values in size bytes.  Every row length
** (ne[0]) must be a multiple of blck.
*/
#ifndef ENG_QTYPES_H
#define ENG_QTYPES_H

#include <stdint.h>

enum {
    QT_F32 = 0, QT_F16 = 1, QT_Q4_0 = 2, QT_Q4_1 = 3, QT_Q5_0 = 6,
    QT_Q5_1 = 7, QT_Q8_0 = 8, QT_Q8_1 = 9, QT_Q2_K = 10, QT_Q3_K = 11,
    QT_Q4_K = 12, QT_Q5_K = 13, QT_Q6_K = 14, QT_Q8_K = 15,
    QT_IQ2_XXS = 16, QT_IQ2_XS = 17, QT_IQ3_XXS = 18, QT_IQ1_S = 19,
    QT_IQ4_NL = 20, QT_IQ3_S = 21, QT_IQ2_S = 22, QT_IQ4_XS = 23,
    QT_I8 = 24, QT_I16 = 25, QT_I32 = 26, QT_I64 = 27, QT_F64 = 28,
    QT_IQ1_M = 29, QT_BF16 = 30, QT_TQ1_0 = 34, QT_TQ2_0 = 35,
    QT_MXFP4 = 39,
    QT_COUNT = 40
};

typedef struct {
    const char *name;   /* "Q8_0" */
    int blck;           /* values per block */
    int size;           /* bytes per block */
    int weight;         /* 1 if the engine can use it as a weight matrix */
} EngQTraits;

/* Traits of a type id, or NULL for an id ggml does not define (or removed). */
const EngQTraits *eng_qtraits(uint32_t type);

/* Bytes of a row of n values (n a multiple of blck). */
uint64_t eng_qrow_bytes(uint32_t type, int64_t n);

/* Dequantize n values (a multiple of blck) of a supported weight type. */
void eng_dequant(uint32_t type, const void *src, float *dst, int64_t n);

/* Dot product of a quantized row of n values with an F32 vector x.  The
** result equals dequantizing then summing in F32 up to rounding order. */
float eng_qdot(uint32_t type, const void *row, const float *x, int64_t n);

/* Scalar reference implementations (always compiled; tests compare the
** dispatched kernels against them). */
void eng_dequant_ref(uint32_t type, const void *src, float *dst, int64_t n);
float eng_qdot_ref(uint32_t type, const void *row, const float *x, int64_t n);

/* IEEE half and bfloat16 conversions. */
float eng_f16_to_f32(uint16_t h);
uint16_t eng_f32_to_f16(float f);
float eng_bf16_to_f32(uint16_t h);

#endif
