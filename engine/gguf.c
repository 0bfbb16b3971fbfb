/*
** engine/gguf.c — GGUF parser.
**
** The parser is a cursor over a byte buffer that refuses to read past the
** end: every primitive read (rd_u32, rd_str, ...) checks the bytes left
** first, so a truncated or lying file fails with GGUF_E_TRUNCATED (or a more
** specific code) at the first field that does not fit.  Counts are bounded
** before anything is allocated for them: a kv needs at least 13 bytes and a
** tensor info at least 33, so n_kv / n_tensors larger than the bytes left
** allow are refused outright (n_tensors once more after the key/values);
** every array and string length is checked against the bytes left before
** its elements are allocated or read.  Hence the heap used is bounded by a
** small multiple of the file size whatever the file claims.
**
** Tensor data: each tensor's bytes must be aligned, inside the file and
** disjoint from every other tensor's.  Unlike ggml we do not require the
** tensors to be packed in file order; nothing here depends on it.
**
** Structure validation happens here; what a *model* needs (which keys and
** tensors, with which shapes) is checked by model.c.
*/
#include "engine/gguf.h"
#include "engine/qtypes.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const uint8_t *p;
    uint64_t n, off;
    char *err;
    size_t errcap;
} Cur;

static GgufError fail(Cur *c, GgufError e, const char *fmt, ...)
{
    if (c->err && c->errcap) {
        va_list ap;
        int k = snprintf(c->err, c->errcap, "gguf: ");
        va_start(ap, fmt);
        if (k >= 0 && (size_t)k < c->errcap)
            vsnprintf(c->err + k, c->errcap - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return e;
}

static uint64_t left(const Cur *c) { return c->n - c->off; }

static int need(Cur *c, uint64_t k) { return left(c) >= k; }

#define RD(T, name)                                                 \
    static int name(Cur *c, T *v)                                   \
    {                                                               \
        if (!need(c, sizeof(T)))                                    \
            return 0;                                               \
        memcpy(v, c->p + c->off, sizeof(T));                        \
        c->off += sizeof(T);                                        \
        return 1;                                                   \
    }
RD(uint32_t, rd_u32)
RD(uint64_t, rd_u64)
RD(int64_t, rd_i64)
#undef RD

static const int scalar_size[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = 1, [GGUF_TYPE_INT8] = 1, [GGUF_TYPE_UINT16] = 2,
    [GGUF_TYPE_INT16] = 2, [GGUF_TYPE_UINT32] = 4, [GGUF_TYPE_INT32] = 4,
    [GGUF_TYPE_FLOAT32] = 4, [GGUF_TYPE_BOOL] = 1, [GGUF_TYPE_STRING] = 0,
    [GGUF_TYPE_ARRAY] = 0, [GGUF_TYPE_UINT64] = 8, [GGUF_TYPE_INT64] = 8,
    [GGUF_TYPE_FLOAT64] = 8,
};

static const char *type_names[GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string",
    "array", "u64", "i64", "f64",
};

const char *gguf_type_name(uint32_t t)
{
    return t < GGUF_TYPE_COUNT ? type_names[t] : "?";
}

static const char *err_names[GGUF_E_COUNT] = {
    "ok", "out of memory", "i/o error", "truncated", "bad magic",
    "unsupported version", "bad tensor count", "bad kv count",
    "bad string length", "empty key", "duplicate key", "bad value type",
    "bad array type", "bad array length", "bad alignment", "bad tensor name",
    "duplicate tensor name", "bad n_dims", "bad dimension", "size overflow",
    "unknown tensor type", "row not a multiple of the block size",
    "misaligned tensor offset", "tensor data outside the file",
    "overlapping tensor data",
};

const char *gguf_error_name(GgufError e)
{
    return (unsigned)e < GGUF_E_COUNT ? err_names[e] : "?";
}

/* Print at most 40 bytes of an untrusted string; control and non-ASCII bytes
** are escaped as \xNN so a message never carries terminal escapes. */
static const char *show(const char *s, uint64_t n, char *buf, size_t cap)
{
    size_t o = 0;
    for (uint64_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (i >= 40) {
            o += (size_t)snprintf(buf + o, cap - o, "...");
            break;
        }
        if (ch < 0x20 || ch >= 0x7f)
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
        else
            buf[o++] = (char)ch;
    }
    buf[o] = 0;
    return buf;
}

/* Read a string; what names the field in messages ("key 'k'"), elem >= 0
** adds the index of an array element. */
static GgufError rd_str(Cur *c, GgufStr *s, const char *what, int64_t elem)
{
    uint64_t len;
    uint64_t at = c->off;
    char idx[32] = "";
    if (elem >= 0)
        snprintf(idx, sizeof idx, " element #%lld", (long long)elem);
    if (!rd_u64(c, &len))
        return fail(c, GGUF_E_TRUNCATED, "%s%s: string length at byte %llu: file ends",
                    what, idx, (unsigned long long)at);
    if (len > left(c))
        return fail(c, GGUF_E_STRING_LEN,
                    "%s%s: string length %llu at byte %llu exceeds the %llu bytes left",
                    what, idx, (unsigned long long)len, (unsigned long long)at,
                    (unsigned long long)left(c));
    s->ptr = (const char *)c->p + c->off;
    s->len = len;
    c->off += len;
    return GGUF_OK;
}

int gguf_str_eq(GgufStr s, const char *c)
{
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

static int str_cmp(const GgufStr *a, const GgufStr *b)
{
    uint64_t n = a->len < b->len ? a->len : b->len;
    int r = memcmp(a->ptr, b->ptr, n);
    if (r)
        return r;
    return a->len < b->len ? -1 : a->len > b->len;
}

static int kv_ptr_cmp(const void *a, const void *b)
{
    const GgufKV *x = *(const GgufKV *const *)a, *y = *(const GgufKV *const *)b;
    return str_cmp(&x->key, &y->key);
}

static int tensor_name_cmp(const void *a, const void *b)
{
    const GgufTensor *x = *(const GgufTensor *const *)a;
    const GgufTensor *y = *(const GgufTensor *const *)b;
    return strcmp(x->name, y->name);
}

static int tensor_off_cmp(const void *a, const void *b)
{
    const GgufTensor *x = *(const GgufTensor *const *)a;
    const GgufTensor *y = *(const GgufTensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static GgufError rd_value(Cur *c, GgufKV *kv, const char *key)
{
    uint32_t t = kv->type;
    char what[256];
    snprintf(what, sizeof what, "key '%s'", key);
    if (t >= GGUF_TYPE_COUNT)
        return fail(c, GGUF_E_VALUE_TYPE,
                    "key '%s': value type %u out of range (expected 0..%d)",
                    key, t, GGUF_TYPE_COUNT - 1);
    if (t == GGUF_TYPE_STRING) {
        kv->n = 1;
        kv->strs = malloc(sizeof(GgufStr));
        if (!kv->strs)
            return fail(c, GGUF_E_NOMEM, "key '%s': out of memory", key);
        return rd_str(c, kv->strs, what, -1);
    }
    if (t != GGUF_TYPE_ARRAY) {
        kv->n = 1;
        if (!need(c, (uint64_t)scalar_size[t]))
            return fail(c, GGUF_E_TRUNCATED, "key '%s': %s value: file ends",
                        key, type_names[t]);
        kv->data = c->p + c->off;
        c->off += (uint64_t)scalar_size[t];
        return GGUF_OK;
    }
    /* array */
    uint32_t at;
    uint64_t n;
    if (!rd_u32(c, &at) || !rd_u64(c, &n))
        return fail(c, GGUF_E_TRUNCATED, "key '%s': array header: file ends", key);
    if (at >= GGUF_TYPE_COUNT || at == GGUF_TYPE_ARRAY)
        return fail(c, GGUF_E_ARRAY_TYPE,
                    "key '%s': array element type %u invalid (expected a scalar or string type 0..%d, not array)",
                    key, at, GGUF_TYPE_COUNT - 1);
    kv->arr_type = at;
    kv->n = n;
    if (at == GGUF_TYPE_STRING) {
        /* each string needs at least its 8-byte length */
        if (n > left(c) / 8)
            return fail(c, GGUF_E_ARRAY_LEN,
                        "key '%s': array of %llu strings cannot fit in the %llu bytes left",
                        key, (unsigned long long)n, (unsigned long long)left(c));
        kv->strs = malloc((size_t)(n ? n : 1) * sizeof(GgufStr));
        if (!kv->strs)
            return fail(c, GGUF_E_NOMEM, "key '%s': out of memory for %llu strings",
                        key, (unsigned long long)n);
        for (uint64_t i = 0; i < n; i++) {
            GgufError e = rd_str(c, &kv->strs[i], what, (int64_t)i);
            if (e)
                return e;
        }
        return GGUF_OK;
    }
    uint64_t es = (uint64_t)scalar_size[at];
    if (n > left(c) / es)
        return fail(c, GGUF_E_ARRAY_LEN,
                    "key '%s': array of %llu %s values needs more than the %llu bytes left",
                    key, (unsigned long long)n, type_names[at],
                    (unsigned long long)left(c));
    kv->data = c->p + c->off;
    c->off += n * es;
    return GGUF_OK;
}

void gguf_free(Gguf *g)
{
    if (!g)
        return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++)
            free(g->kv[i].strs);
    free(g->kv);
    free(g->tensors);
    if (g->map)
        munmap(g->map, (size_t)g->map_size);
    free(g);
}

GgufError gguf_parse(const uint8_t *buf, uint64_t n, Gguf **out, char *err,
                     size_t errcap)
{
    Cur cur = { buf, n, 0, err, errcap };
    Cur *c = &cur;
    GgufError e = GGUF_OK;
    char sb[200];
    *out = NULL;
    if (err && errcap)
        err[0] = 0;

    Gguf *g = calloc(1, sizeof *g);
    if (!g)
        return fail(c, GGUF_E_NOMEM, "out of memory");
    g->base = buf;
    g->size = n;

    uint32_t magic;
    if (!rd_u32(c, &magic)) {
        e = fail(c, GGUF_E_TRUNCATED, "file is %llu bytes, too short for the magic",
                 (unsigned long long)n);
        goto bad;
    }
    if (memcmp(buf, "GGUF", 4) != 0) {
        e = fail(c, GGUF_E_MAGIC, "magic is '%s', expected 'GGUF'",
                 show((const char *)buf, 4, sb, sizeof sb));
        goto bad;
    }
    if (!rd_u32(c, &g->version)) {
        e = fail(c, GGUF_E_TRUNCATED, "version: file ends");
        goto bad;
    }
    if (g->version != 2 && g->version != 3) {
        /* a big-endian file read on a little-endian host shows its version
        ** in the top bytes (3 reads as 0x03000000) */
        int swapped = g->version != 0 && (g->version & 0xffff) == 0;
        e = fail(c, GGUF_E_VERSION, "version %u not supported (expected 2 or 3)%s",
                 g->version, swapped ? "; the file looks big-endian" : "");
        goto bad;
    }
    if (!rd_u64(c, &g->n_tensors) || !rd_u64(c, &g->n_kv)) {
        e = fail(c, GGUF_E_TRUNCATED, "header counts: file ends");
        goto bad;
    }
    /* a kv is at least key length (8) + 1 key byte + type (4); a tensor info
    ** at least name length (8) + 1 + n_dims (4) + ne (8) + type (4) + offset (8) */
    if (g->n_kv > left(c) / 13) {
        e = fail(c, GGUF_E_N_KV,
                 "n_kv %llu cannot fit in the %llu bytes left (a kv takes at least 13)",
                 (unsigned long long)g->n_kv, (unsigned long long)left(c));
        goto bad;
    }
    if (g->n_tensors > left(c) / 33) {
        e = fail(c, GGUF_E_N_TENSORS,
                 "n_tensors %llu cannot fit in the %llu bytes left (a tensor info takes at least 33)",
                 (unsigned long long)g->n_tensors, (unsigned long long)left(c));
        goto bad;
    }
    g->kv = calloc((size_t)(g->n_kv ? g->n_kv : 1), sizeof(GgufKV));
    if (!g->kv) {
        e = fail(c, GGUF_E_NOMEM, "out of memory for %llu key/values",
                 (unsigned long long)g->n_kv);
        goto bad;
    }

    g->alignment = 32;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        GgufKV *kv = &g->kv[i];
        char what[48];
        snprintf(what, sizeof what, "key #%llu", (unsigned long long)i);
        if ((e = rd_str(c, &kv->key, what, -1)))
            goto bad;
        if (kv->key.len == 0) {
            e = fail(c, GGUF_E_KEY_EMPTY, "key #%llu is empty", (unsigned long long)i);
            goto bad;
        }
        show(kv->key.ptr, kv->key.len, sb, sizeof sb);
        if (!rd_u32(c, &kv->type)) {
            e = fail(c, GGUF_E_TRUNCATED, "key '%s': type: file ends", sb);
            goto bad;
        }
        if ((e = rd_value(c, kv, sb)))
            goto bad;
        if (gguf_str_eq(kv->key, "general.alignment")) {
            uint32_t a = 0;
            if (kv->type != GGUF_TYPE_UINT32) {
                e = fail(c, GGUF_E_ALIGNMENT,
                         "general.alignment has type %s, expected u32",
                         gguf_type_name(kv->type));
                goto bad;
            }
            memcpy(&a, kv->data, 4);
            if (a == 0 || (a & (a - 1)) != 0) {
                e = fail(c, GGUF_E_ALIGNMENT,
                         "general.alignment %u is not a non-zero power of two", a);
                goto bad;
            }
            g->alignment = a;
        }
    }
    /* keys unique */
    if (g->n_kv > 1) {
        GgufKV **s = malloc((size_t)g->n_kv * sizeof *s);
        if (!s) {
            e = fail(c, GGUF_E_NOMEM, "out of memory");
            goto bad;
        }
        for (uint64_t i = 0; i < g->n_kv; i++)
            s[i] = &g->kv[i];
        qsort(s, (size_t)g->n_kv, sizeof *s, kv_ptr_cmp);
        for (uint64_t i = 1; i < g->n_kv; i++)
            if (str_cmp(&s[i - 1]->key, &s[i]->key) == 0) {
                e = fail(c, GGUF_E_KEY_DUP, "key '%s' appears twice",
                         show(s[i]->key.ptr, s[i]->key.len, sb, sizeof sb));
                free(s);
                goto bad;
            }
        free(s);
    }

    /* bound the tensor count again by what the key/values left, so the
    ** allocation below is at most a few times the size of the file */
    if (g->n_tensors > left(c) / 33) {
        e = fail(c, GGUF_E_N_TENSORS,
                 "n_tensors %llu cannot fit in the %llu bytes left after the key/values",
                 (unsigned long long)g->n_tensors, (unsigned long long)left(c));
        goto bad;
    }
    g->tensors = calloc((size_t)(g->n_tensors ? g->n_tensors : 1), sizeof(GgufTensor));
    if (!g->tensors) {
        e = fail(c, GGUF_E_NOMEM, "out of memory for %llu tensors",
                 (unsigned long long)g->n_tensors);
        goto bad;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        GgufTensor *t = &g->tensors[i];
        GgufStr nm;
        char what[48];
        snprintf(what, sizeof what, "tensor #%llu name", (unsigned long long)i);
        if ((e = rd_str(c, &nm, what, -1)))
            goto bad;
        if (nm.len == 0 || nm.len >= GGUF_MAX_NAME) {
            e = fail(c, GGUF_E_NAME_LEN,
                     "tensor #%llu name '%s' is %llu bytes (expected 1..%d)",
                     (unsigned long long)i, show(nm.ptr, nm.len, sb, sizeof sb),
                     (unsigned long long)nm.len, GGUF_MAX_NAME - 1);
            goto bad;
        }
        if (memchr(nm.ptr, 0, (size_t)nm.len)) {
            e = fail(c, GGUF_E_NAME_LEN, "tensor #%llu name '%s' contains a NUL byte",
                     (unsigned long long)i, show(nm.ptr, nm.len, sb, sizeof sb));
            goto bad;
        }
        memcpy(t->name, nm.ptr, (size_t)nm.len);
        t->name[nm.len] = 0;
        show(t->name, nm.len, sb, sizeof sb);
        if (!rd_u32(c, &t->n_dims)) {
            e = fail(c, GGUF_E_TRUNCATED, "tensor '%s': n_dims: file ends", sb);
            goto bad;
        }
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) {
            e = fail(c, GGUF_E_N_DIMS, "tensor '%s': n_dims %u (expected 1..%d)",
                     sb, t->n_dims, GGUF_MAX_DIMS);
            goto bad;
        }
        for (int d = 0; d < GGUF_MAX_DIMS; d++)
            t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (!rd_i64(c, &t->ne[d])) {
                e = fail(c, GGUF_E_TRUNCATED, "tensor '%s': ne[%u]: file ends", sb, d);
                goto bad;
            }
            if (t->ne[d] < 0) {
                e = fail(c, GGUF_E_DIM, "tensor '%s': ne[%u] = %lld (expected >= 0)",
                         sb, d, (long long)t->ne[d]);
                goto bad;
            }
        }
        if (!rd_u32(c, &t->type) || !rd_u64(c, &t->offset)) {
            e = fail(c, GGUF_E_TRUNCATED, "tensor '%s': type/offset: file ends", sb);
            goto bad;
        }
        const EngQTraits *tr = eng_qtraits(t->type);
        if (!tr) {
            e = fail(c, GGUF_E_TYPE, "tensor '%s': type %u is not a ggml type", sb,
                     t->type);
            goto bad;
        }
        int64_t ne = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) {
            if (t->ne[d] != 0 && ne > INT64_MAX / t->ne[d]) {
                e = fail(c, GGUF_E_OVERFLOW,
                         "tensor '%s': element count overflows (ne = %lld x %lld x %lld x %lld)",
                         sb, (long long)t->ne[0], (long long)t->ne[1],
                         (long long)t->ne[2], (long long)t->ne[3]);
                goto bad;
            }
            ne *= t->ne[d];
        }
        t->nelem = ne;
        if (t->ne[0] % tr->blck != 0) {
            e = fail(c, GGUF_E_BLOCK,
                     "tensor '%s': ne[0] = %lld is not a multiple of %s's block size %d",
                     sb, (long long)t->ne[0], tr->name, tr->blck);
            goto bad;
        }
        uint64_t nblocks = (uint64_t)ne / (uint64_t)tr->blck;
        if (nblocks > UINT64_MAX / (uint64_t)tr->size) {
            e = fail(c, GGUF_E_OVERFLOW,
                     "tensor '%s': byte size of %llu %s blocks of %d bytes overflows 64 bits",
                     sb, (unsigned long long)nblocks, tr->name, tr->size);
            goto bad;
        }
        t->nbytes = nblocks * (uint64_t)tr->size;
    }
    /* names unique */
    if (g->n_tensors > 1) {
        GgufTensor **s = malloc((size_t)g->n_tensors * sizeof *s);
        if (!s) {
            e = fail(c, GGUF_E_NOMEM, "out of memory");
            goto bad;
        }
        for (uint64_t i = 0; i < g->n_tensors; i++)
            s[i] = &g->tensors[i];
        qsort(s, (size_t)g->n_tensors, sizeof *s, tensor_name_cmp);
        for (uint64_t i = 1; i < g->n_tensors; i++)
            if (strcmp(s[i - 1]->name, s[i]->name) == 0) {
                e = fail(c, GGUF_E_NAME_DUP, "tensor name '%s' appears twice",
                         show(s[i]->name, strlen(s[i]->name), sb, sizeof sb));
                free(s);
                goto bad;
            }
        free(s);
    }

    /* data section */
    uint64_t a = g->alignment;
    uint64_t ds = (c->off + a - 1) / a * a;
    if (ds < c->off) {
        e = fail(c, GGUF_E_OVERFLOW, "data offset overflows");
        goto bad;
    }
    g->data_offset = ds;
    uint64_t dsize = ds <= n ? n - ds : 0;
    if (g->n_tensors > 0 && ds > n) {
        e = fail(c, GGUF_E_TRUNCATED,
                 "data section starts at byte %llu, past the end of the %llu-byte file",
                 (unsigned long long)ds, (unsigned long long)n);
        goto bad;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        GgufTensor *t = &g->tensors[i];
        show(t->name, strlen(t->name), sb, sizeof sb);
        if (t->offset % a != 0) {
            e = fail(c, GGUF_E_OFFSET_ALIGN,
                     "tensor '%s': offset %llu is not a multiple of the alignment %llu",
                     sb, (unsigned long long)t->offset, (unsigned long long)a);
            goto bad;
        }
        if (t->offset > dsize || t->nbytes > dsize - t->offset) {
            e = fail(c, GGUF_E_OFFSET_RANGE,
                     "tensor '%s': data [%llu, +%llu) lies outside the %llu-byte data section",
                     sb, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                     (unsigned long long)dsize);
            goto bad;
        }
        t->data = buf + ds + t->offset;
    }
    if (g->n_tensors > 1) {
        GgufTensor **s = malloc((size_t)g->n_tensors * sizeof *s);
        if (!s) {
            e = fail(c, GGUF_E_NOMEM, "out of memory");
            goto bad;
        }
        for (uint64_t i = 0; i < g->n_tensors; i++)
            s[i] = &g->tensors[i];
        qsort(s, (size_t)g->n_tensors, sizeof *s, tensor_off_cmp);
        /* sorted by offset, a tensor overlaps an earlier one iff it starts
        ** before the furthest end seen so far; empty tensors occupy nothing */
        const GgufTensor *far = NULL;
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const GgufTensor *t = s[i];
            if (t->nbytes == 0)
                continue;
            if (far && far->offset + far->nbytes > t->offset) {
                char sb2[200];
                e = fail(c, GGUF_E_OVERLAP,
                         "tensor '%s' data [%llu, +%llu) overlaps tensor '%s' data [%llu, +%llu)",
                         show(t->name, strlen(t->name), sb, sizeof sb),
                         (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                         show(far->name, strlen(far->name), sb2, sizeof sb2),
                         (unsigned long long)far->offset,
                         (unsigned long long)far->nbytes);
                free(s);
                goto bad;
            }
            if (!far || t->offset + t->nbytes > far->offset + far->nbytes)
                far = t;
        }
        free(s);
    }
    *out = g;
    return GGUF_OK;
bad:
    gguf_free(g);
    return e;
}

/* Write "path: message" to err (err may be NULL when errcap is 0). */
static GgufError open_fail(char *err, size_t errcap, const char *path,
                           const char *fmt, ...)
{
    if (err && errcap) {
        va_list ap;
        int k = snprintf(err, errcap, "%s: ", path);
        va_start(ap, fmt);
        if (k >= 0 && (size_t)k < errcap)
            vsnprintf(err + k, errcap - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return GGUF_E_IO;
}

GgufError gguf_open(const char *path, Gguf **out, char *err, size_t errcap)
{
    *out = NULL;
    if (err && errcap)
        err[0] = 0;
    /* O_NONBLOCK: opening a FIFO for reading must not wait for a writer;
    ** the regular-file check below then refuses it */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return open_fail(err, errcap, path, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int en = errno;
        close(fd);
        return open_fail(err, errcap, path, "cannot stat: %s", strerror(en));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return open_fail(err, errcap, path, "not a regular file (%s)",
                         S_ISDIR(st.st_mode) ? "a directory" :
                         S_ISFIFO(st.st_mode) ? "a FIFO" :
                         S_ISCHR(st.st_mode) ? "a character device" :
                         S_ISSOCK(st.st_mode) ? "a socket" : "a special file");
    }
    if (st.st_size <= 0) {
        close(fd);
        return open_fail(err, errcap, path, "file is empty (expected a GGUF file)");
    }
    uint64_t n = (uint64_t)st.st_size;
    if (n > SIZE_MAX) {
        close(fd);
        return open_fail(err, errcap, path, "%llu bytes cannot be mapped",
                         (unsigned long long)n);
    }
    void *map = mmap(NULL, (size_t)n, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        int en = errno;
        close(fd);
        return open_fail(err, errcap, path, "cannot mmap %llu bytes: %s",
                         (unsigned long long)n, strerror(en));
    }
    close(fd);
    char e2[400];
    GgufError e = gguf_parse(map, n, out, e2, sizeof e2);
    if (e) {
        if (err && errcap)
            snprintf(err, errcap, "%s: %s", path, e2);
        munmap(map, (size_t)n);
        return e;
    }
    (*out)->map = map;
    (*out)->map_size = n;
    return GGUF_OK;
}

const GgufKV *gguf_find(const Gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (gguf_str_eq(g->kv[i].key, key))
            return &g->kv[i];
    return NULL;
}

const GgufTensor *gguf_tensor(const Gguf *g, const char *name)
{
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0)
            return &g->tensors[i];
    return NULL;
}

static int64_t read_int(uint32_t t, const uint8_t *p, int *ok)
{
    *ok = 1;
    switch (t) {
    case GGUF_TYPE_UINT8: return p[0];
    case GGUF_TYPE_INT8: return (int8_t)p[0];
    case GGUF_TYPE_BOOL: return p[0] != 0;
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); return v; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); return v; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); return v; }
    case GGUF_TYPE_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX)
            *ok = 0;
        return (int64_t)v;
    }
    default: *ok = 0; return 0;
    }
}

static double read_float(uint32_t t, const uint8_t *p, int *ok)
{
    *ok = 1;
    if (t == GGUF_TYPE_FLOAT32) {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    if (t == GGUF_TYPE_FLOAT64) {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    *ok = 0;
    return 0;
}

int gguf_get_int(const Gguf *g, const char *key, int64_t *out)
{
    const GgufKV *kv = gguf_find(g, key);
    int ok;
    if (!kv)
        return 0;
    if (kv->type == GGUF_TYPE_ARRAY || kv->type == GGUF_TYPE_STRING ||
        kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64 ||
        kv->type == GGUF_TYPE_BOOL)
        return -1;
    int64_t v = read_int(kv->type, kv->data, &ok);
    if (!ok)
        return -1;
    *out = v;
    return 1;
}

int gguf_get_float(const Gguf *g, const char *key, double *out)
{
    const GgufKV *kv = gguf_find(g, key);
    int ok;
    if (!kv)
        return 0;
    double v = read_float(kv->type, kv->data ? kv->data : (const uint8_t *)"", &ok);
    if (!ok)
        return -1;
    *out = v;
    return 1;
}

int gguf_get_bool(const Gguf *g, const char *key, int *out)
{
    const GgufKV *kv = gguf_find(g, key);
    if (!kv)
        return 0;
    if (kv->type != GGUF_TYPE_BOOL)
        return -1;
    *out = kv->data[0] != 0;
    return 1;
}

int gguf_get_str(const Gguf *g, const char *key, GgufStr *out)
{
    const GgufKV *kv = gguf_find(g, key);
    if (!kv)
        return 0;
    if (kv->type != GGUF_TYPE_STRING)
        return -1;
    *out = kv->strs[0];
    return 1;
}

static int arr_ok(const GgufKV *kv, uint64_t i)
{
    return kv->type == GGUF_TYPE_ARRAY && i < kv->n &&
           kv->arr_type < GGUF_TYPE_COUNT && scalar_size[kv->arr_type] > 0;
}

int64_t gguf_arr_int(const GgufKV *kv, uint64_t i)
{
    int ok;
    if (!arr_ok(kv, i))
        return 0;
    uint32_t t = kv->arr_type;
    int64_t v = read_int(t, kv->data + i * (uint64_t)scalar_size[t], &ok);
    if (!ok && t == GGUF_TYPE_UINT64)
        return INT64_MAX;
    return ok ? v : 0;
}

double gguf_arr_float(const GgufKV *kv, uint64_t i)
{
    int ok;
    if (!arr_ok(kv, i))
        return 0;
    uint32_t t = kv->arr_type;
    const uint8_t *p = kv->data + i * (uint64_t)scalar_size[t];
    if (t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64)
        return read_float(t, p, &ok);
    if (t == GGUF_TYPE_UINT64) {
        uint64_t v;
        memcpy(&v, p, 8);
        return (double)v;
    }
    return (double)read_int(t, p, &ok);
}
