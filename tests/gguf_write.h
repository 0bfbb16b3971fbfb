/*
** tests/gguf_write.h — a small GGUF writer for tests and the fuzz harness.
**
** Tests craft files field by field (valid or deliberately broken), so the
** writer has no opinion about what it writes: it appends little-endian
** fields to a growable buffer and can patch a field in place afterwards.
** Each gw_* call returns the offset where its field starts, so a test can
** remember "the n_kv count is at byte 16" and corrupt exactly that.
**
** Allocation failure sets w->oom and turns later writes into no-ops; tests
** assert !w->oom once at the end.  Everything is static inline: the header
** is included by several test programs that use different parts of it.
*/
#ifndef TESTS_GGUF_WRITE_H
#define TESTS_GGUF_WRITE_H

#include "engine/gguf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} GwBuf;

static inline void gw_free(GwBuf *w)
{
    free(w->p);
    memset(w, 0, sizeof *w);
}

static inline size_t gw_bytes(GwBuf *w, const void *src, size_t k)
{
    size_t at = w->n;
    if (w->oom)
        return at;
    if (w->n + k > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->n + k)
            cap *= 2;
        uint8_t *p = realloc(w->p, cap);
        if (!p) {
            w->oom = 1;
            return at;
        }
        w->p = p;
        w->cap = cap;
    }
    if (k)
        memcpy(w->p + w->n, src, k);
    w->n += k;
    return at;
}

static inline size_t gw_zeros(GwBuf *w, size_t k)
{
    size_t at = w->n;
    static const uint8_t z[64];
    while (k > 0) {
        size_t m = k < sizeof z ? k : sizeof z;
        gw_bytes(w, z, m);
        k -= m;
    }
    return at;
}

static inline size_t gw_u8(GwBuf *w, uint8_t v) { return gw_bytes(w, &v, 1); }
static inline size_t gw_u16(GwBuf *w, uint16_t v) { return gw_bytes(w, &v, 2); }
static inline size_t gw_u32(GwBuf *w, uint32_t v) { return gw_bytes(w, &v, 4); }
static inline size_t gw_u64(GwBuf *w, uint64_t v) { return gw_bytes(w, &v, 8); }
static inline size_t gw_i64(GwBuf *w, int64_t v) { return gw_bytes(w, &v, 8); }
static inline size_t gw_f32(GwBuf *w, float v) { return gw_bytes(w, &v, 4); }
static inline size_t gw_f64(GwBuf *w, double v) { return gw_bytes(w, &v, 8); }

/* A GGUF string: u64 length then the bytes (no NUL). */
static inline size_t gw_strn(GwBuf *w, const char *s, uint64_t len)
{
    size_t at = gw_u64(w, len);
    gw_bytes(w, s, (size_t)len);
    return at;
}

static inline size_t gw_str(GwBuf *w, const char *s)
{
    return gw_strn(w, s, strlen(s));
}

/* Overwrite a field written earlier. */
static inline void gw_patch_u32(GwBuf *w, size_t at, uint32_t v)
{
    if (!w->oom && at + 4 <= w->n)
        memcpy(w->p + at, &v, 4);
}

static inline void gw_patch_u64(GwBuf *w, size_t at, uint64_t v)
{
    if (!w->oom && at + 8 <= w->n)
        memcpy(w->p + at, &v, 8);
}

/* "GGUF", version, n_tensors, n_kv.  The counts sit at bytes 8 and 16. */
static inline size_t gw_header(GwBuf *w, uint32_t version, uint64_t n_tensors,
                               uint64_t n_kv)
{
    size_t at = gw_bytes(w, "GGUF", 4);
    gw_u32(w, version);
    gw_u64(w, n_tensors);
    gw_u64(w, n_kv);
    return at;
}

/* Key and value type; the caller writes the value.  Returns the offset of
** the type field (the key is at the returned offset - 8 - strlen(key)). */
static inline size_t gw_kv_head(GwBuf *w, const char *key, uint32_t type)
{
    gw_str(w, key);
    return gw_u32(w, type);
}

static inline size_t gw_kv_u8(GwBuf *w, const char *k, uint8_t v)
{ size_t at = gw_kv_head(w, k, GGUF_TYPE_UINT8); gw_u8(w, v); return at; }
static inline size_t gw_kv_i8(GwBuf *w, const char *k, int8_t v)
{ size_t at = gw_kv_head(w, k, GGUF_TYPE_INT8); gw_u8(w, (uint8_t)v); return at; }
static inline size_t gw_kv_u16(GwBuf *w, const char *k, uint16_t v)
{ size_t at = gw_kv_head(w, k, GGUF_TYPE_UINT16); gw_u16(w, v); return at; }
static inline size_t gw_kv_i16(GwBuf *w, const char *k, int16_t v)
{ size_t at = gw_kv_head(w, k, GGUF_TYPE_INT16); gw_u16(w, (uint16_t)v); return at; }
static inline size_t gw_kv_u32(GwBuf *w, const char *k, uint32_t v)
{ size_t at = gw_kv_head(w, k, GGUF_TYPE_UINT32); gw_u32(w, v); return at; }
static inline size_t gw_kv_i32(GwBuf *w, const char *k, int32_t v)
{ size_t at = gw_kv_head(w, k, GGUF_TYPE_INT32); gw_u32(w, (uint32_t)v); return at; }
static inline size_t gw_kv_f32(GwBuf *w, const char *k, float v)
{ size_t at = gw_kv_head(w, k, GGUF_TYPE_FLOAT32); gw_f32(w, v); return at; }
static inline size_t gw_kv_bool(GwBuf *w, const char *k, int v)
{ size_t at = gw_kv_head(w, k, GGUF_TYPE_BOOL); gw_u8(w, v != 0); return at; }
static inline size_t gw_kv_str(GwBuf *w, const char *k, const char *v)
{ size_t at = gw_kv_head(w, k, GGUF_TYPE_STRING); gw_str(w, v); return at; }
static inline size_t gw_kv_u64(GwBuf *w, const char *k, uint64_t v)
{ size_t at = gw_kv_head(w, k, GGUF_TYPE_UINT64); gw_u64(w, v); return at; }
static inline size_t gw_kv_i64(GwBuf *w, const char *k, int64_t v)
{ size_t at = gw_kv_head(w, k, GGUF_TYPE_INT64); gw_i64(w, v); return at; }
static inline size_t gw_kv_f64(GwBuf *w, const char *k, double v)
{ size_t at = gw_kv_head(w, k, GGUF_TYPE_FLOAT64); gw_f64(w, v); return at; }

/* Array header: key, ARRAY, element type, length; the caller writes the
** elements.  Returns the offset of the element type (the length follows
** at +4). */
static inline size_t gw_arr_head(GwBuf *w, const char *key, uint32_t elem_type,
                                 uint64_t n)
{
    gw_kv_head(w, key, GGUF_TYPE_ARRAY);
    size_t at = gw_u32(w, elem_type);
    gw_u64(w, n);
    return at;
}

/* Tensor info: name, n_dims, ne[0..n_dims-1], type, offset.  Returns the
** offset of the n_dims field. */
static inline size_t gw_tinfo(GwBuf *w, const char *name, uint32_t n_dims,
                              const int64_t *ne, uint32_t type, uint64_t offset)
{
    gw_str(w, name);
    size_t at = gw_u32(w, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        gw_i64(w, ne[d]);
    gw_u32(w, type);
    gw_u64(w, offset);
    return at;
}

/* Zero bytes up to the next multiple of align (relative to the start). */
static inline size_t gw_pad(GwBuf *w, size_t align)
{
    size_t at = w->n;
    if (align)
        gw_zeros(w, (align - w->n % align) % align);
    return at;
}

/* Write a parsed key/value back out, arrays cut to at most max_n elements. */
static inline void gw_kv_copy(GwBuf *w, const GgufKV *kv, uint64_t max_n)
{
    static const int sz[GGUF_TYPE_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
    gw_strn(w, kv->key.ptr, kv->key.len);
    gw_u32(w, kv->type);
    if (kv->type == GGUF_TYPE_STRING) {
        gw_strn(w, kv->strs[0].ptr, kv->strs[0].len);
        return;
    }
    if (kv->type != GGUF_TYPE_ARRAY) {
        gw_bytes(w, kv->data, (size_t)sz[kv->type]);
        return;
    }
    uint64_t n = kv->n < max_n ? kv->n : max_n;
    gw_u32(w, kv->arr_type);
    gw_u64(w, n);
    if (kv->arr_type == GGUF_TYPE_STRING) {
        for (uint64_t i = 0; i < n; i++)
            gw_strn(w, kv->strs[i].ptr, kv->strs[i].len);
        return;
    }
    gw_bytes(w, kv->data, (size_t)(n * (uint64_t)sz[kv->arr_type]));
}

/* Save the buffer to path; 0 on success. */
static inline int gw_save(const GwBuf *w, const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t k = w->n ? fwrite(w->p, 1, w->n, f) : 0;
    int bad = k != w->n;
    if (fclose(f) != 0)
        bad = 1;
    return bad ? -1 : 0;
}

/* The small valid file tests truncate and the fuzzer starts from: a kv of
** every scalar type, arrays of strings / ints / floats / bools (one empty),
** general.alignment 64, and six tensors of five types (1 to 4 dims, one
** empty) whose data ends exactly at the end of the file.  Tensor data byte k
** of the data section holds (uint8_t)(k * 7 + 1). */
#define GW_SMALL_N_KV 20
#define GW_SMALL_N_TENSORS 6
#define GW_SMALL_DATA_BYTES 528

static inline void gw_small_file(GwBuf *w)
{
    gw_header(w, 3, GW_SMALL_N_TENSORS, GW_SMALL_N_KV);
    gw_kv_str(w, "general.architecture", "llama");
    gw_kv_u32(w, "general.alignment", 64);
    gw_kv_u8(w, "t.u8", 200);
    gw_kv_i8(w, "t.i8", -5);
    gw_kv_u16(w, "t.u16", 60000);
    gw_kv_i16(w, "t.i16", -30000);
    gw_kv_u32(w, "t.u32", 4000000000u);
    gw_kv_i32(w, "t.i32", -2000000000);
    gw_kv_f32(w, "t.f32", 1.5f);
    gw_kv_bool(w, "t.bool", 1);
    gw_kv_u64(w, "t.u64", (UINT64_C(1) << 63) + 5);
    gw_kv_i64(w, "t.i64", -(INT64_C(1) << 40));
    gw_kv_f64(w, "t.f64", -2.25);
    gw_arr_head(w, "t.arr.str", GGUF_TYPE_STRING, 3);
    gw_str(w, "a");
    gw_str(w, "");
    gw_str(w, "h\xc3\xa9llo\x01");
    gw_arr_head(w, "t.arr.i32", GGUF_TYPE_INT32, 3);
    gw_u32(w, 1);
    gw_u32(w, (uint32_t)-2);
    gw_u32(w, 3);
    gw_arr_head(w, "t.arr.f32", GGUF_TYPE_FLOAT32, 2);
    gw_f32(w, 0.5f);
    gw_f32(w, -1.0f);
    gw_arr_head(w, "t.arr.u8", GGUF_TYPE_UINT8, 0);
    gw_arr_head(w, "t.arr.u64", GGUF_TYPE_UINT64, 2);
    gw_u64(w, UINT64_MAX);
    gw_u64(w, 7);
    gw_arr_head(w, "t.arr.bool", GGUF_TYPE_BOOL, 2);
    gw_u8(w, 1);
    gw_u8(w, 0);
    gw_arr_head(w, "t.arr.f64", GGUF_TYPE_FLOAT64, 1);
    gw_f64(w, 1e300);

    static const int64_t ne_embd[2] = { 4, 3 };     /* F32: 48 bytes */
    static const int64_t ne_q[2] = { 8, 2 };        /* F16: 32 bytes */
    static const int64_t ne_up[2] = { 32, 2 };      /* Q8_0: 2 x 34 bytes */
    static const int64_t ne_down[3] = { 256, 1, 1 };/* Q4_K: 144 bytes */
    static const int64_t ne_empty[2] = { 0, 5 };    /* F32: 0 bytes */
    static const int64_t ne_b[4] = { 2, 1, 1, 2 };  /* F32: 16 bytes */
    gw_tinfo(w, "token_embd.weight", 2, ne_embd, 0, 0);
    gw_tinfo(w, "blk.0.attn_q.weight", 2, ne_q, 1, 64);
    gw_tinfo(w, "blk.0.ffn_up.weight", 2, ne_up, 8, 128);
    gw_tinfo(w, "blk.0.ffn_down.weight", 3, ne_down, 12, 256);
    gw_tinfo(w, "blk.0.empty", 2, ne_empty, 0, 448);
    gw_tinfo(w, "blk.0.exp_probs_b", 4, ne_b, 0, 512);
    gw_pad(w, 64);
    for (int k = 0; k < GW_SMALL_DATA_BYTES; k++)
        gw_u8(w, (uint8_t)(k * 7 + 1));
}

#endif
