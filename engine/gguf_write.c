/*
** engine/gguf_write.c — GGUF v3 writer with streamed tensor data.
*/
#include "engine/gguf_write.h"
#include "engine/gguf.h"
#include "engine/qtypes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} Buf;

typedef struct {
    char name[GGUF_MAX_NAME];
    uint32_t type;
    int n_dims;
    int64_t ne[4];
    uint64_t nbytes, offset;
} Tdecl;

struct EngGw {
    Buf kv;
    uint64_t n_kv;
    Tdecl *t;
    int n_t, cap_t;
    int oom;
};

#define ALIGN 32

static void put(Buf *b, const void *src, size_t k)
{
    if (b->oom)
        return;
    if (b->n + k > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + k)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, k);
    b->n += k;
}

static void put_u32(Buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(Buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(Buf *b, const char *s)
{
    uint64_t n = strlen(s);
    put_u64(b, n);
    put(b, s, (size_t)n);
}

EngGw *eng_gw_new(void) { return calloc(1, sizeof(EngGw)); }

void eng_gw_free(EngGw *w)
{
    if (!w)
        return;
    free(w->kv.p);
    free(w->t);
    free(w);
}

static void key(EngGw *w, const char *k, uint32_t type)
{
    put_str(&w->kv, k);
    put_u32(&w->kv, type);
    w->n_kv++;
}

void eng_gw_u32(EngGw *w, const char *k, uint32_t v)
{
    key(w, k, GGUF_TYPE_UINT32);
    put_u32(&w->kv, v);
}

void eng_gw_f32(EngGw *w, const char *k, float v)
{
    key(w, k, GGUF_TYPE_FLOAT32);
    put(&w->kv, &v, 4);
}

void eng_gw_bool(EngGw *w, const char *k, int v)
{
    uint8_t b = v != 0;
    key(w, k, GGUF_TYPE_BOOL);
    put(&w->kv, &b, 1);
}

void eng_gw_str(EngGw *w, const char *k, const char *v)
{
    key(w, k, GGUF_TYPE_STRING);
    put_str(&w->kv, v);
}

void eng_gw_arr_str(EngGw *w, const char *k, const char *const *v, int n)
{
    key(w, k, GGUF_TYPE_ARRAY);
    put_u32(&w->kv, GGUF_TYPE_STRING);
    put_u64(&w->kv, (uint64_t)n);
    for (int i = 0; i < n; i++)
        put_str(&w->kv, v[i]);
}

void eng_gw_arr_f32(EngGw *w, const char *k, const float *v, int n)
{
    key(w, k, GGUF_TYPE_ARRAY);
    put_u32(&w->kv, GGUF_TYPE_FLOAT32);
    put_u64(&w->kv, (uint64_t)n);
    put(&w->kv, v, (size_t)n * 4);
}

void eng_gw_arr_i32(EngGw *w, const char *k, const int32_t *v, int n)
{
    key(w, k, GGUF_TYPE_ARRAY);
    put_u32(&w->kv, GGUF_TYPE_INT32);
    put_u64(&w->kv, (uint64_t)n);
    put(&w->kv, v, (size_t)n * 4);
}

int eng_gw_tensor(EngGw *w, const char *name, uint32_t type, int n_dims, const int64_t *ne)
{
    const EngQTraits *tr = eng_qtraits(type);
    if (!tr || n_dims < 1 || n_dims > 4 || strlen(name) >= GGUF_MAX_NAME || ne[0] % tr->blck)
        return -1;
    if (w->n_t == w->cap_t) {
        int cap = w->cap_t ? w->cap_t * 2 : 64;
        Tdecl *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) {
            w->oom = 1;
            return -1;
        }
        w->t = t;
        w->cap_t = cap;
    }
    Tdecl *d = &w->t[w->n_t];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->type = type;
    d->n_dims = n_dims;
    uint64_t nel = 1;
    for (int i = 0; i < 4; i++) {
        d->ne[i] = i < n_dims ? ne[i] : 1;
        nel *= (uint64_t)d->ne[i];
    }
    d->nbytes = nel / (uint64_t)tr->blck * (uint64_t)tr->size;
    uint64_t off = 0;
    if (w->n_t > 0) {
        Tdecl *p = &w->t[w->n_t - 1];
        off = (p->offset + p->nbytes + ALIGN - 1) / ALIGN * ALIGN;
    }
    d->offset = off;
    return w->n_t++;
}

uint64_t eng_gw_tensor_bytes(const EngGw *w, int i) { return w->t[i].nbytes; }

int eng_gw_tensor_info(const EngGw *w, int i, uint32_t *type, int64_t *nel)
{
    if (i < 0 || i >= w->n_t)
        return -1;
    *type = w->t[i].type;
    *nel = w->t[i].ne[0] * w->t[i].ne[1] * w->t[i].ne[2] * w->t[i].ne[3];
    return 0;
}

static void header(EngGw *w, Buf *h)
{
    put(h, "GGUF", 4);
    put_u32(h, 3);
    put_u64(h, (uint64_t)w->n_t);
    put_u64(h, w->n_kv);
    put(h, w->kv.p, w->kv.n);
    for (int i = 0; i < w->n_t; i++) {
        Tdecl *d = &w->t[i];
        put_str(h, d->name);
        put_u32(h, (uint32_t)d->n_dims);
        for (int k = 0; k < d->n_dims; k++)
            put_u64(h, (uint64_t)d->ne[k]);
        put_u32(h, d->type);
        put_u64(h, d->offset);
    }
    static const uint8_t zeros[ALIGN];
    size_t pad = (ALIGN - h->n % ALIGN) % ALIGN;
    put(h, zeros, pad);
}

uint64_t eng_gw_total_bytes(const EngGw *w)
{
    Buf h = { 0 };
    header((EngGw *)w, &h);
    uint64_t n = h.n;
    free(h.p);
    if (w->n_t > 0)
        n += w->t[w->n_t - 1].offset + w->t[w->n_t - 1].nbytes;
    return n;
}

void eng_gw_raw(EngGw *w, const char *k, uint32_t type, const void *val, size_t nbytes)
{
    key(w, k, type);
    put(&w->kv, val, nbytes);
}

int eng_gw_write(EngGw *w, const char *path, EngGwFill fill, void *user, char *err, size_t errcap)
{
    if (errcap)
        err[0] = 0;
    Buf h = { 0 };
    header(w, &h);
    if (h.oom || w->kv.oom || w->oom) {
        free(h.p);
        snprintf(err, errcap, "%s: out of memory building the header", path);
        return -1;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        snprintf(err, errcap, "%s: cannot create: %s", tmp, strerror(errno));
        free(h.p);
        return -1;
    }
    int ok = fwrite(h.p, 1, h.n, f) == h.n;
    free(h.p);
    uint64_t maxb = 0;
    for (int i = 0; i < w->n_t; i++)
        if (w->t[i].nbytes > maxb)
            maxb = w->t[i].nbytes;
    uint8_t *buf = malloc((size_t)(maxb ? maxb : 1));
    uint64_t pos = 0;
    static const uint8_t zeros[ALIGN];
    if (!buf) {
        snprintf(err, errcap, "%s: out of memory for a %llu-byte tensor", path,
                 (unsigned long long)maxb);
        ok = 0;
    }
    for (int i = 0; ok && i < w->n_t; i++) {
        Tdecl *d = &w->t[i];
        if (d->offset > pos)
            ok = fwrite(zeros, 1, (size_t)(d->offset - pos), f) == d->offset - pos;
        if (ok && fill(user, i, buf, d->nbytes) != 0) {
            snprintf(err, errcap, "%s: generating tensor '%s' failed", path, d->name);
            ok = 0;
            break;
        }
        if (ok)
            ok = fwrite(buf, 1, (size_t)d->nbytes, f) == d->nbytes;
        pos = d->offset + d->nbytes;
        if (!ok && !err[0])
            snprintf(err, errcap, "%s: write failed: %s", tmp, strerror(errno));
    }
    free(buf);
    if (fclose(f) != 0 && ok) {
        snprintf(err, errcap, "%s: write failed: %s", tmp, strerror(errno));
        ok = 0;
    }
    if (ok && rename(tmp, path) != 0) {
        snprintf(err, errcap, "%s: cannot rename into place: %s", path, strerror(errno));
        ok = 0;
    }
    if (!ok) {
        if (!err[0])
            snprintf(err, errcap, "%s: write failed", tmp);
        remove(tmp);
        return -1;
    }
    return 0;
}
