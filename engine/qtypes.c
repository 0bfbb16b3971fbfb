/*
** engine/qtypes.c — the table of ggml tensor types.
**
** Sizes follow ggml's block structs.  The parser needs them for every type a
** file may name (to check sizes and offsets) even where the engine has no
** kernel; `weight` says which ones the kernels in quant.c implement.
*/
#include "engine/qtypes.h"

#include <stddef.h>

static const EngQTraits qt_table[QT_COUNT] = {
    [QT_F32]     = { "F32",     1,   4,   1 },
    [QT_F16]     = { "F16",     1,   2,   1 },
    [QT_Q4_0]    = { "Q4_0",    32,  18,  1 },
    [QT_Q4_1]    = { "Q4_1",    32,  20,  1 },
    [QT_Q5_0]    = { "Q5_0",    32,  22,  1 },
    [QT_Q5_1]    = { "Q5_1",    32,  24,  1 },
    [QT_Q8_0]    = { "Q8_0",    32,  34,  1 },
    [QT_Q8_1]    = { "Q8_1",    32,  36,  0 },
    [QT_Q2_K]    = { "Q2_K",    256, 84,  0 },
    [QT_Q3_K]    = { "Q3_K",    256, 110, 0 },
    [QT_Q4_K]    = { "Q4_K",    256, 144, 1 },
    [QT_Q5_K]    = { "Q5_K",    256, 176, 1 },
    [QT_Q6_K]    = { "Q6_K",    256, 210, 1 },
    [QT_Q8_K]    = { "Q8_K",    256, 292, 0 },
    [QT_IQ2_XXS] = { "IQ2_XXS", 256, 66,  0 },
    [QT_IQ2_XS]  = { "IQ2_XS",  256, 74,  0 },
    [QT_IQ3_XXS] = { "IQ3_XXS", 256, 98,  0 },
    [QT_IQ1_S]   = { "IQ1_S",   256, 50,  0 },
    [QT_IQ4_NL]  = { "IQ4_NL",  32,  18,  0 },
    [QT_IQ3_S]   = { "IQ3_S",   256, 110, 0 },
    [QT_IQ2_S]   = { "IQ2_S",   256, 82,  0 },
    [QT_IQ4_XS]  = { "IQ4_XS",  256, 136, 0 },
    [QT_I8]      = { "I8",      1,   1,   0 },
    [QT_I16]     = { "I16",     1,   2,   0 },
    [QT_I32]     = { "I32",     1,   4,   0 },
    [QT_I64]     = { "I64",     1,   8,   0 },
    [QT_F64]     = { "F64",     1,   8,   0 },
    [QT_IQ1_M]   = { "IQ1_M",   256, 56,  0 },
    [QT_BF16]    = { "BF16",    1,   2,   1 },
    [QT_TQ1_0]   = { "TQ1_0",   256, 54,  0 },
    [QT_TQ2_0]   = { "TQ2_0",   256, 66,  0 },
    [QT_MXFP4]   = { "MXFP4",   32,  17,  1 },
};

const EngQTraits *eng_qtraits(uint32_t type)
{
    if (type >= QT_COUNT || qt_table[type].name == NULL)
        return NULL;
    return &qt_table[type];
}

uint64_t eng_qrow_bytes(uint32_t type, int64_t n)
{
    const EngQTraits *t = eng_qtraits(type);
    return t ? (uint64_t)(n / t->blck) * (uint64_t)t->size : 0;
}
