/*
** tests/fuzz_gguf.c — libFuzzer harness for the GGUF parser (`make fuzz`).
**
** Each input goes through gguf_parse().  A failure must come with an error
** code in range and a non-empty message; a success must describe only bytes
** inside the input, so the harness walks everything the parser returned:
** every key, every value through the typed getters, every array element,
** every string byte, the first and last byte of every tensor's data, and
** the lookups by key and by name.  ASan/UBSan catch any read outside the
** input; the explicit checks trap on a result that lies about the input.
**
** Seeds: the Makefile copies the fixtures into the corpus.  When
** GGUF_FUZZ_SEED_DIR names that corpus, LLVMFuzzerInitialize adds small
** seeds beside them: the writer's small file with every value type, and
** for each fixture a miniature with the same keys (arrays cut to 16
** elements) and tensor infos whose data is shrunk to one block per tensor.
** Mutations of a miniature land in the header instead of in megabytes of
** weights.
*/
#include "engine/gguf.h"
#include "engine/qtypes.h"
#include "tests/gguf_write.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)              \
    do {                         \
        if (!(cond))             \
            __builtin_trap();    \
    } while (0)

static volatile uint64_t g_sink;

static int inside(const uint8_t *p, uint64_t k, const uint8_t *buf, size_t n)
{
    return p >= buf && (uint64_t)(p - buf) <= n && k <= n - (uint64_t)(p - buf);
}

static void touch_str(GgufStr s, const uint8_t *buf, size_t n)
{
    CHECK(inside((const uint8_t *)s.ptr, s.len, buf, n));
    uint64_t h = 0;
    for (uint64_t i = 0; i < s.len; i++)
        h = h * 31 + (uint8_t)s.ptr[i];
    g_sink += h;
}

static void walk(const Gguf *g, const uint8_t *buf, size_t n)
{
    char key[256];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const GgufKV *kv = &g->kv[i];
        touch_str(kv->key, buf, n);
        CHECK(kv->key.len > 0);
        CHECK(kv->type < GGUF_TYPE_COUNT);
        /* lookups by key find this very kv (keys are unique); lookups are
        ** linear, so only the first 256 keys are looked up */
        if (i < 256 && kv->key.len < sizeof key &&
            !memchr(kv->key.ptr, 0, (size_t)kv->key.len)) {
            memcpy(key, kv->key.ptr, (size_t)kv->key.len);
            key[kv->key.len] = 0;
            CHECK(gguf_find(g, key) == kv);
            int64_t iv;
            double fv;
            int bv;
            GgufStr sv;
            int ri = gguf_get_int(g, key, &iv);
            int rf = gguf_get_float(g, key, &fv);
            int rb = gguf_get_bool(g, key, &bv);
            int rs = gguf_get_str(g, key, &sv);
            CHECK(ri != 0 && rf != 0 && rb != 0 && rs != 0);
            CHECK((rs == 1) == (kv->type == GGUF_TYPE_STRING));
            CHECK((rb == 1) == (kv->type == GGUF_TYPE_BOOL));
            if (rs == 1)
                touch_str(sv, buf, n);
            if (ri == 1)
                g_sink += (uint64_t)iv;
            if (rf == 1)
                g_sink += (uint64_t)(fv == fv);
        }
        if (kv->type == GGUF_TYPE_STRING) {
            touch_str(kv->strs[0], buf, n);
        } else if (kv->type == GGUF_TYPE_ARRAY) {
            CHECK(kv->arr_type < GGUF_TYPE_COUNT && kv->arr_type != GGUF_TYPE_ARRAY);
            for (uint64_t j = 0; j < kv->n; j++) {
                if (kv->arr_type == GGUF_TYPE_STRING) {
                    touch_str(kv->strs[j], buf, n);
                } else {
                    g_sink += (uint64_t)gguf_arr_int(kv, j);
                    g_sink += (uint64_t)(gguf_arr_float(kv, j) > 0);
                }
            }
            /* one past the end is refused, not read */
            CHECK(gguf_arr_int(kv, kv->n) == 0);
        } else {
            CHECK(kv->n == 1 && inside(kv->data, 1, buf, n));
        }
    }
    CHECK(g->alignment != 0 && (g->alignment & (g->alignment - 1)) == 0);
    CHECK(g->data_offset % g->alignment == 0);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const GgufTensor *t = &g->tensors[i];
        size_t len = strlen(t->name);
        CHECK(len > 0 && len < GGUF_MAX_NAME);
        if (i < 256)
            CHECK(gguf_tensor(g, t->name) == t);
        CHECK(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS);
        const EngQTraits *tr = eng_qtraits(t->type);
        CHECK(tr != NULL);
        int64_t ne = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) {
            CHECK(t->ne[d] >= 0);
            ne *= t->ne[d];
        }
        CHECK(ne == t->nelem && t->ne[0] % tr->blck == 0);
        CHECK(t->nbytes == (uint64_t)(ne / tr->blck) * (uint64_t)tr->size);
        CHECK(t->offset % g->alignment == 0);
        CHECK(t->data == g->base + g->data_offset + t->offset);
        CHECK(inside(t->data, t->nbytes, buf, n));
        if (t->nbytes > 0)
            g_sink += t->data[0] + t->data[t->nbytes - 1];
    }
    /* no two non-empty tensors share a byte (pairwise on the first 64) */
    uint64_t k = g->n_tensors < 64 ? g->n_tensors : 64;
    for (uint64_t i = 0; i < k; i++)
        for (uint64_t j = i + 1; j < k; j++) {
            const GgufTensor *a = &g->tensors[i], *b = &g->tensors[j];
            if (a->nbytes && b->nbytes)
                CHECK(a->offset + a->nbytes <= b->offset ||
                      b->offset + b->nbytes <= a->offset);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Gguf *g = NULL;
    char err[512];
    GgufError e = gguf_parse(data, size, &g, err, sizeof err);
    if (e != GGUF_OK) {
        CHECK(g == NULL);
        CHECK((unsigned)e < GGUF_E_COUNT);
        CHECK(strncmp(err, "gguf: ", 6) == 0 && strlen(err) > 6);
        return 0;
    }
    CHECK(g != NULL && g->base == data && g->size == size);
    walk(g, data, size);
    gguf_free(g);
    return 0;
}

/* Miniature of a parsed fixture: same keys (arrays cut to 16 elements),
** same tensor names/types/ranks, one block per tensor, data packed. */
static void write_mini(const Gguf *g, const char *path)
{
    GwBuf w = { 0 };
    gw_header(&w, g->version, g->n_tensors, g->n_kv);
    for (uint64_t i = 0; i < g->n_kv; i++)
        gw_kv_copy(&w, &g->kv[i], 16);
    uint64_t off = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const GgufTensor *t = &g->tensors[i];
        const EngQTraits *tr = eng_qtraits(t->type);
        int64_t ne[GGUF_MAX_DIMS] = { tr->blck, 1, 1, 1 };
        gw_tinfo(&w, t->name, t->n_dims, ne, t->type, off);
        off += ((uint64_t)tr->size + g->alignment - 1) / g->alignment * g->alignment;
    }
    gw_pad(&w, g->alignment);
    for (uint64_t k = 0; k < off; k++)
        gw_u8(&w, (uint8_t)(k * 13 + 5));
    if (!w.oom)
        gw_save(&w, path);
    gw_free(&w);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("GGUF_FUZZ_SEED_DIR");
    if (!dir)
        return 0;
    char path[4096];
    GwBuf w = { 0 };
    gw_small_file(&w);
    snprintf(path, sizeof path, "%s/seed-small-all-types.gguf", dir);
    if (!w.oom)
        gw_save(&w, path);
    gw_free(&w);

    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 5, ".gguf") != 0 ||
            strncmp(de->d_name, "seed-", 5) == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        Gguf *g;
        char err[512];
        if (gguf_open(path, &g, err, sizeof err) != GGUF_OK)
            continue;
        snprintf(path, sizeof path, "%s/seed-mini-%s", dir, de->d_name);
        write_mini(g, path);
        gguf_free(g);
    }
    closedir(d);
    return 0;
}
