/*
** tests/test_gguf.c — the GGUF parser against crafted, truncated and real files.
**
** Every validation rule of engine/gguf.c has one test that writes a file
** breaking exactly that rule (with tests/gguf_write.h) and asserts both the
** GgufError code and that the message names the field and the bad value.
** Files are parsed from an exactly-sized heap copy, so ASan reports any read
** past the end.  Then: a small valid file with every value type is cut at
** every byte length and must fail each time; every shipped GGUF parses; the
** typed getters answer correctly for every type, wrong types and missing
** keys; gguf_open refuses directories, empty files, missing files and FIFOs.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/gguf.h"
#include "tests/gguf_write.h"

#include <errno.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

/* Parse len bytes of w from a heap copy of exactly that size. */
static GgufError parse_len(const GwBuf *w, size_t len, Gguf **g, char *err,
                           size_t errcap)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, w->p, len);
    GgufError e = gguf_parse(copy, len, g, err, errcap);
    if (e != GGUF_OK)
        free(copy);     /* on success done() frees it with the Gguf */
    return e;
}

/* Free a Gguf made by parse_len together with its heap copy. */
static void done(Gguf *g)
{
    if (!g)
        return;
    void *copy = (void *)g->base;
    gguf_free(g);
    free(copy);
}

/* Assert that w fails with want and that the message holds every string of
** the NULL-terminated list (field name, bad value, expectation). */
static void expect_fail(GwBuf *w, GgufError want, ...)
{
    assert_false(w->oom);
    Gguf *g = (Gguf *)1;
    char err[512];
    GgufError e = parse_len(w, w->n, &g, err, sizeof err);
    if (e != want)
        print_message("got %s (%d), wanted %s (%d): %s\n", gguf_error_name(e),
                      (int)e, gguf_error_name(want), (int)want, err);
    assert_int_equal(e, want);
    assert_null(g);
    va_list ap;
    va_start(ap, want);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *)) {
        if (!strstr(err, s))
            print_message("message \"%s\" lacks \"%s\"\n", err, s);
        assert_non_null(strstr(err, s));
    }
    va_end(ap);
    gw_free(w);
}

/* Parse w, which must be valid. */
static Gguf *expect_ok(GwBuf *w)
{
    assert_false(w->oom);
    Gguf *g = NULL;
    char err[512];
    GgufError e = parse_len(w, w->n, &g, err, sizeof err);
    if (e != GGUF_OK)
        print_message("unexpected failure: %s\n", err);
    assert_int_equal(e, GGUF_OK);
    assert_non_null(g);
    return g;
}

/* Header for one tensor and one kv (general.architecture = "llama"). */
static void head1(GwBuf *w, uint64_t n_tensors)
{
    gw_header(w, 3, n_tensors, 1);
    gw_kv_str(w, "general.architecture", "llama");
}

/* A file with one tensor info and data_bytes of data after padding to 32. */
static void one_tensor(GwBuf *w, const char *name, uint32_t n_dims,
                       const int64_t *ne, uint32_t type, uint64_t offset,
                       size_t data_bytes)
{
    head1(w, 1);
    gw_tinfo(w, name, n_dims, ne, type, offset);
    gw_pad(w, 32);
    gw_zeros(w, data_bytes);
}

/* ---- header ------------------------------------------------------------- */

static void test_gguf_bad_magic_fails_magic(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    gw_header(&w, 3, 0, 0);
    memcpy(w.p, "GGUX", 4);
    expect_fail(&w, GGUF_E_MAGIC, "magic", "'GGUX'", "expected 'GGUF'", NULL);

    /* control bytes in the magic are shown escaped */
    gw_header(&w, 3, 0, 0);
    memcpy(w.p, "\x00\x1b[m", 4);
    expect_fail(&w, GGUF_E_MAGIC, "magic", "\\x00\\x1b[m", NULL);
}

static void test_gguf_version_1_and_4_fail_version(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    gw_header(&w, 1, 0, 0);
    expect_fail(&w, GGUF_E_VERSION, "version 1", "expected 2 or 3", NULL);
    gw_header(&w, 4, 0, 0);
    expect_fail(&w, GGUF_E_VERSION, "version 4", "expected 2 or 3", NULL);
    /* version 3 written big-endian */
    gw_header(&w, 0x03000000u, 0, 0);
    expect_fail(&w, GGUF_E_VERSION, "version 50331648", "big-endian", NULL);
    /* version 2 has the same layout as 3 and parses */
    gw_header(&w, 2, 0, 0);
    Gguf *g = expect_ok(&w);
    assert_int_equal(g->version, 2);
    done(g);
    gw_free(&w);
}

static void test_gguf_counts_past_bytes_fail_counts(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    gw_header(&w, 3, 0, 1000000);
    gw_kv_u8(&w, "a", 1);
    expect_fail(&w, GGUF_E_N_KV, "n_kv 1000000", "bytes left", NULL);

    gw_header(&w, 3, UINT64_MAX, 0);
    gw_zeros(&w, 64);
    expect_fail(&w, GGUF_E_N_TENSORS, "n_tensors 18446744073709551615", NULL);

    /* fits the header bound, but not the bytes left after the key/values */
    gw_header(&w, 3, 3, 1);
    gw_kv_str(&w, "k", "a string long enough to make the first bound pass....");
    gw_zeros(&w, 40);
    expect_fail(&w, GGUF_E_N_TENSORS, "n_tensors 3", "after the key/values", NULL);
}

static void test_gguf_truncated_header_fails_truncated(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    gw_bytes(&w, "GG", 2);
    expect_fail(&w, GGUF_E_TRUNCATED, "2 bytes", "magic", NULL);
    gw_bytes(&w, "GGUF", 4);
    gw_u32(&w, 3);
    gw_u64(&w, 0);
    expect_fail(&w, GGUF_E_TRUNCATED, "header counts", NULL);
}

/* ---- strings and values -------------------------------------------------- */

static void test_gguf_string_past_end_fails_string_len(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    /* key */
    gw_header(&w, 3, 0, 1);
    gw_u64(&w, 1000);
    gw_bytes(&w, "abcdefghijklm", 13);
    expect_fail(&w, GGUF_E_STRING_LEN, "key #0", "string length 1000", NULL);

    /* string value */
    gw_header(&w, 3, 0, 1);
    gw_kv_head(&w, "my.key", GGUF_TYPE_STRING);
    gw_u64(&w, 500);
    gw_bytes(&w, "xyz", 3);
    expect_fail(&w, GGUF_E_STRING_LEN, "key 'my.key'", "string length 500", NULL);

    /* element of a string array */
    gw_header(&w, 3, 0, 1);
    gw_arr_head(&w, "tok", GGUF_TYPE_STRING, 2);
    gw_str(&w, "ok");
    gw_u64(&w, UINT64_MAX);
    gw_zeros(&w, 8);
    expect_fail(&w, GGUF_E_STRING_LEN, "key 'tok' element #1",
                "string length 18446744073709551615", NULL);

    /* tensor name */
    head1(&w, 1);
    gw_u64(&w, 300);
    gw_zeros(&w, 40);
    expect_fail(&w, GGUF_E_STRING_LEN, "tensor #0 name", "string length 300", NULL);
}

static void test_gguf_value_type_out_of_range_fails_value_type(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    gw_header(&w, 3, 0, 1);
    gw_kv_head(&w, "bad.type", GGUF_TYPE_COUNT);
    gw_zeros(&w, 8);
    expect_fail(&w, GGUF_E_VALUE_TYPE, "key 'bad.type'", "value type 13",
                "expected 0..12", NULL);

    gw_header(&w, 3, 0, 1);
    gw_kv_head(&w, "bad.type", UINT32_MAX);
    gw_zeros(&w, 8);
    expect_fail(&w, GGUF_E_VALUE_TYPE, "value type 4294967295", NULL);
}

static void test_gguf_array_type_bad_or_nested_fails_array_type(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    gw_header(&w, 3, 0, 1);
    gw_arr_head(&w, "arr", 13, 1);
    gw_zeros(&w, 8);
    expect_fail(&w, GGUF_E_ARRAY_TYPE, "key 'arr'", "element type 13", NULL);

    /* array of arrays */
    gw_header(&w, 3, 0, 1);
    gw_arr_head(&w, "arr", GGUF_TYPE_ARRAY, 1);
    gw_u32(&w, GGUF_TYPE_UINT8);
    gw_u64(&w, 1);
    gw_u8(&w, 7);
    expect_fail(&w, GGUF_E_ARRAY_TYPE, "key 'arr'", "element type 9", "not array",
                NULL);
}

static void test_gguf_array_past_end_fails_array_len(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    gw_header(&w, 3, 0, 1);
    gw_arr_head(&w, "ints", GGUF_TYPE_INT32, 1000);
    gw_zeros(&w, 8);
    expect_fail(&w, GGUF_E_ARRAY_LEN, "key 'ints'", "1000 i32", NULL);

    /* n * 8 wraps around 64 bits: still refused before any allocation */
    gw_header(&w, 3, 0, 1);
    gw_arr_head(&w, "big", GGUF_TYPE_UINT64, (UINT64_C(1) << 61) + 1);
    gw_zeros(&w, 16);
    expect_fail(&w, GGUF_E_ARRAY_LEN, "key 'big'", "2305843009213693953", NULL);

    gw_header(&w, 3, 0, 1);
    gw_arr_head(&w, "strs", GGUF_TYPE_STRING, UINT64_MAX / 2);
    gw_zeros(&w, 16);
    expect_fail(&w, GGUF_E_ARRAY_LEN, "key 'strs'", "9223372036854775807 strings",
                NULL);
}

static void test_gguf_empty_key_fails_key_empty(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    gw_header(&w, 3, 0, 2);
    gw_kv_u8(&w, "fine", 1);
    gw_kv_u8(&w, "", 1);
    expect_fail(&w, GGUF_E_KEY_EMPTY, "key #1", "empty", NULL);
}

static void test_gguf_duplicate_key_fails_key_dup(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    gw_header(&w, 3, 0, 3);
    gw_kv_u32(&w, "llama.block_count", 2);
    gw_kv_u8(&w, "other", 1);
    gw_kv_str(&w, "llama.block_count", "again");
    expect_fail(&w, GGUF_E_KEY_DUP, "key 'llama.block_count'", "twice", NULL);
}

static void test_gguf_alignment_bad_fails_alignment(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    gw_header(&w, 3, 0, 1);
    gw_kv_u64(&w, "general.alignment", 32);
    expect_fail(&w, GGUF_E_ALIGNMENT, "general.alignment", "type u64",
                "expected u32", NULL);
    gw_header(&w, 3, 0, 1);
    gw_kv_i32(&w, "general.alignment", 32);
    expect_fail(&w, GGUF_E_ALIGNMENT, "general.alignment", "type i32", NULL);
    gw_header(&w, 3, 0, 1);
    gw_kv_u32(&w, "general.alignment", 0);
    expect_fail(&w, GGUF_E_ALIGNMENT, "general.alignment 0", "power of two", NULL);
    gw_header(&w, 3, 0, 1);
    gw_kv_u32(&w, "general.alignment", 48);
    expect_fail(&w, GGUF_E_ALIGNMENT, "general.alignment 48", "power of two", NULL);
}

/* ---- tensor infos --------------------------------------------------------- */

static void test_gguf_tensor_name_bad_fails_name_len(void **state)
{
    (void)state;
    static const int64_t ne[1] = { 8 };
    char name[65];
    GwBuf w = { 0 };
    one_tensor(&w, "", 1, ne, 0, 0, 32);
    expect_fail(&w, GGUF_E_NAME_LEN, "tensor #0 name", "0 bytes", "expected 1..63",
                NULL);

    memset(name, 'n', 64);
    name[64] = 0;
    one_tensor(&w, name, 1, ne, 0, 0, 32);
    expect_fail(&w, GGUF_E_NAME_LEN, "tensor #0 name", "64 bytes", NULL);

    /* 63 bytes is the longest allowed */
    name[63] = 0;
    one_tensor(&w, name, 1, ne, 0, 0, 32);
    Gguf *g = expect_ok(&w);
    assert_string_equal(g->tensors[0].name, name);
    done(g);
    gw_free(&w);

    /* a NUL inside the name would make two names compare equal */
    head1(&w, 1);
    gw_strn(&w, "ab\0cd", 5);
    gw_u32(&w, 1);
    gw_i64(&w, 8);
    gw_u32(&w, 0);
    gw_u64(&w, 0);
    gw_pad(&w, 32);
    gw_zeros(&w, 32);
    expect_fail(&w, GGUF_E_NAME_LEN, "tensor #0 name", "ab\\x00cd", "NUL", NULL);
}

static void test_gguf_tensor_name_twice_fails_name_dup(void **state)
{
    (void)state;
    static const int64_t ne[1] = { 8 };
    GwBuf w = { 0 };
    head1(&w, 3);
    gw_tinfo(&w, "blk.0.w", 1, ne, 0, 0);
    gw_tinfo(&w, "blk.1.w", 1, ne, 0, 32);
    gw_tinfo(&w, "blk.0.w", 1, ne, 0, 64);
    gw_pad(&w, 32);
    gw_zeros(&w, 96);
    expect_fail(&w, GGUF_E_NAME_DUP, "tensor name 'blk.0.w'", "twice", NULL);
}

static void test_gguf_n_dims_0_and_5_fail_n_dims(void **state)
{
    (void)state;
    static const int64_t ne[5] = { 8, 1, 1, 1, 1 };
    GwBuf w = { 0 };
    one_tensor(&w, "w", 0, ne, 0, 0, 32);
    expect_fail(&w, GGUF_E_N_DIMS, "tensor 'w'", "n_dims 0", "expected 1..4", NULL);
    one_tensor(&w, "w", 5, ne, 0, 0, 32);
    expect_fail(&w, GGUF_E_N_DIMS, "tensor 'w'", "n_dims 5", NULL);
}

static void test_gguf_negative_ne_fails_dim(void **state)
{
    (void)state;
    static const int64_t ne[2] = { 8, -3 };
    GwBuf w = { 0 };
    one_tensor(&w, "w", 2, ne, 0, 0, 32);
    expect_fail(&w, GGUF_E_DIM, "tensor 'w'", "ne[1] = -3", "expected >= 0", NULL);
    static const int64_t ne2[1] = { INT64_MIN };
    one_tensor(&w, "w", 1, ne2, 0, 0, 32);
    expect_fail(&w, GGUF_E_DIM, "ne[0] = -9223372036854775808", NULL);
}

static void test_gguf_element_count_overflow_fails_overflow(void **state)
{
    (void)state;
    static const int64_t ne[3] = { INT64_C(1) << 32, INT64_C(1) << 31, 2 };
    GwBuf w = { 0 };
    one_tensor(&w, "huge", 3, ne, 0, 0, 32);
    expect_fail(&w, GGUF_E_OVERFLOW, "tensor 'huge'", "element count",
                "4294967296 x 2147483648 x 2", NULL);
}

static void test_gguf_byte_size_overflow_fails_overflow(void **state)
{
    (void)state;
    /* 2^62 F32 elements fit int64, their 2^64 bytes do not */
    static const int64_t ne[1] = { INT64_C(1) << 62 };
    GwBuf w = { 0 };
    one_tensor(&w, "wide", 1, ne, 0, 0, 32);
    expect_fail(&w, GGUF_E_OVERFLOW, "tensor 'wide'", "byte size",
                "4611686018427387904 F32 blocks", NULL);
}

static void test_gguf_unknown_tensor_type_fails_type(void **state)
{
    (void)state;
    static const int64_t ne[1] = { 32 };
    GwBuf w = { 0 };
    one_tensor(&w, "w", 1, ne, 4, 0, 64);   /* Q4_2, removed from ggml */
    expect_fail(&w, GGUF_E_TYPE, "tensor 'w'", "type 4", NULL);
    one_tensor(&w, "w", 1, ne, 40, 0, 64);
    expect_fail(&w, GGUF_E_TYPE, "type 40", NULL);
    one_tensor(&w, "w", 1, ne, UINT32_MAX, 0, 64);
    expect_fail(&w, GGUF_E_TYPE, "type 4294967295", NULL);
}

static void test_gguf_row_not_block_multiple_fails_block(void **state)
{
    (void)state;
    static const int64_t ne[2] = { 33, 2 };
    GwBuf w = { 0 };
    one_tensor(&w, "q", 2, ne, 8, 0, 128);   /* Q8_0 */
    expect_fail(&w, GGUF_E_BLOCK, "tensor 'q'", "ne[0] = 33", "Q8_0",
                "block size 32", NULL);
}

/* ---- tensor data ---------------------------------------------------------- */

static void test_gguf_misaligned_offset_fails_offset_align(void **state)
{
    (void)state;
    static const int64_t ne[1] = { 4 };
    GwBuf w = { 0 };
    one_tensor(&w, "w", 1, ne, 0, 4, 64);
    expect_fail(&w, GGUF_E_OFFSET_ALIGN, "tensor 'w'", "offset 4", "alignment 32",
                NULL);

    /* with general.alignment 64, offset 32 is misaligned */
    gw_header(&w, 3, 1, 1);
    gw_kv_u32(&w, "general.alignment", 64);
    gw_tinfo(&w, "w", 1, ne, 0, 32);
    gw_pad(&w, 64);
    gw_zeros(&w, 128);
    expect_fail(&w, GGUF_E_OFFSET_ALIGN, "offset 32", "alignment 64", NULL);
}

static void test_gguf_data_outside_file_fails_offset_range(void **state)
{
    (void)state;
    static const int64_t ne[1] = { 16 };   /* 64 bytes of F32 */
    GwBuf w = { 0 };
    one_tensor(&w, "w", 1, ne, 0, 0, 63);
    expect_fail(&w, GGUF_E_OFFSET_RANGE, "tensor 'w'", "[0, +64)",
                "63-byte data section", NULL);

    /* offset near 2^64: offset + size would wrap */
    one_tensor(&w, "w", 1, ne, 0, UINT64_MAX - 31, 64);
    expect_fail(&w, GGUF_E_OFFSET_RANGE, "18446744073709551584", NULL);

    /* tensors but the data section would start past the end of the file */
    static const int64_t ne0[1] = { 0 };
    head1(&w, 1);
    gw_tinfo(&w, "e", 1, ne0, 0, 0);
    if (w.n % 32 == 0)
        gw_u8(&w, 0);
    expect_fail(&w, GGUF_E_TRUNCATED, "data section starts at byte", NULL);
}

static void test_gguf_overlapping_tensors_fail_overlap(void **state)
{
    (void)state;
    static const int64_t ne64[1] = { 16 };   /* 64 bytes */
    static const int64_t ne32[1] = { 8 };    /* 32 bytes */
    GwBuf w = { 0 };
    head1(&w, 2);
    gw_tinfo(&w, "a", 1, ne64, 0, 0);
    gw_tinfo(&w, "b", 1, ne32, 0, 32);
    gw_pad(&w, 32);
    gw_zeros(&w, 96);
    expect_fail(&w, GGUF_E_OVERLAP, "tensor 'b'", "[32, +32)", "tensor 'a'",
                "[0, +64)", NULL);

    /* an empty tensor between two overlapping ones must not hide the
    ** overlap; the big one is listed last so file order does not help */
    static const int64_t ne0[1] = { 0 };
    static const int64_t ne128[1] = { 32 };  /* 128 bytes */
    head1(&w, 3);
    gw_tinfo(&w, "c", 1, ne32, 0, 64);
    gw_tinfo(&w, "empty", 1, ne0, 0, 32);
    gw_tinfo(&w, "big", 1, ne128, 0, 0);
    gw_pad(&w, 32);
    gw_zeros(&w, 128);
    expect_fail(&w, GGUF_E_OVERLAP, "tensor 'c'", "tensor 'big'", NULL);

    /* adjacent tensors and an empty one sharing an offset are fine */
    head1(&w, 3);
    gw_tinfo(&w, "a", 1, ne32, 0, 0);
    gw_tinfo(&w, "b", 1, ne32, 0, 32);
    gw_tinfo(&w, "e", 1, ne0, 0, 32);
    gw_pad(&w, 32);
    gw_zeros(&w, 64);
    Gguf *g = expect_ok(&w);
    assert_int_equal(g->n_tensors, 3);
    done(g);
    gw_free(&w);
}

/* ---- the small valid file ------------------------------------------------- */

static void test_gguf_small_file_parses_values_exact(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    gw_small_file(&w);
    Gguf *g = expect_ok(&w);
    assert_int_equal(g->n_kv, GW_SMALL_N_KV);
    assert_int_equal(g->n_tensors, GW_SMALL_N_TENSORS);
    assert_int_equal(g->alignment, 64);
    assert_int_equal(g->data_offset % 64, 0);
    assert_int_equal(g->data_offset + GW_SMALL_DATA_BYTES, g->size);

    static const struct { const char *name; uint32_t type; uint64_t off, nbytes; } want[] = {
        { "token_embd.weight", 0, 0, 48 },       { "blk.0.attn_q.weight", 1, 64, 32 },
        { "blk.0.ffn_up.weight", 8, 128, 68 },   { "blk.0.ffn_down.weight", 12, 256, 144 },
        { "blk.0.empty", 0, 448, 0 },            { "blk.0.exp_probs_b", 0, 512, 16 },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const GgufTensor *t = gguf_tensor(g, want[i].name);
        assert_non_null(t);
        assert_int_equal(t->type, want[i].type);
        assert_int_equal(t->offset, want[i].off);
        assert_int_equal(t->nbytes, want[i].nbytes);
        assert_ptr_equal(t->data, g->base + g->data_offset + t->offset);
        if (t->nbytes)
            assert_int_equal(t->data[0], (uint8_t)(t->offset * 7 + 1));
    }
    const GgufTensor *b = gguf_tensor(g, "blk.0.exp_probs_b");
    assert_int_equal(b->n_dims, 4);
    assert_int_equal(b->nelem, 4);
    assert_int_equal(b->ne[3], 2);
    const GgufTensor *d = gguf_tensor(g, "blk.0.ffn_down.weight");
    assert_int_equal(d->n_dims, 3);
    assert_int_equal(d->ne[0], 256);
    assert_int_equal(d->ne[3], 1);
    assert_null(gguf_tensor(g, "missing"));
    done(g);
    gw_free(&w);
}

static void test_gguf_truncated_every_byte_fails(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    gw_small_file(&w);
    assert_false(w.oom);
    int counts[GGUF_E_COUNT] = { 0 };
    for (size_t len = 0; len < w.n; len++) {
        Gguf *g = (Gguf *)1;
        char err[512];
        GgufError e = parse_len(&w, len, &g, err, sizeof err);
        if (e == GGUF_OK)
            print_message("a %zu-byte prefix of the %zu-byte file parsed\n", len, w.n);
        assert_int_not_equal(e, GGUF_OK);
        assert_null(g);
        assert_true(strlen(err) > 6);
        counts[e]++;
    }
    /* cuts land in every region: header fields, strings, data */
    assert_true(counts[GGUF_E_TRUNCATED] > 0);
    assert_true(counts[GGUF_E_STRING_LEN] > 0);
    assert_true(counts[GGUF_E_N_KV] > 0);
    assert_true(counts[GGUF_E_OFFSET_RANGE] >= GW_SMALL_DATA_BYTES);
    print_message("%zu prefixes: truncated %d, string %d, n_kv %d, n_tensors %d, "
                  "array %d, range %d\n", w.n, counts[GGUF_E_TRUNCATED],
                  counts[GGUF_E_STRING_LEN], counts[GGUF_E_N_KV],
                  counts[GGUF_E_N_TENSORS], counts[GGUF_E_ARRAY_LEN],
                  counts[GGUF_E_OFFSET_RANGE]);
    /* the whole file parses */
    Gguf *g = expect_ok(&w);
    done(g);
    gw_free(&w);
}

/* ---- getters -------------------------------------------------------------- */

static void test_gguf_getters_every_type_typed(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    gw_small_file(&w);
    Gguf *g = expect_ok(&w);
    int64_t iv = 0;
    double fv = 0;
    int bv = 0;
    GgufStr sv = { 0 };

    /* integers of every width and sign */
    static const struct { const char *key; int64_t v; } ints[] = {
        { "t.u8", 200 }, { "t.i8", -5 }, { "t.u16", 60000 }, { "t.i16", -30000 },
        { "t.u32", 4000000000LL }, { "t.i32", -2000000000 },
        { "t.i64", -(INT64_C(1) << 40) }, { "general.alignment", 64 },
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        assert_int_equal(gguf_get_int(g, ints[i].key, &iv), 1);
        assert_int_equal(iv, ints[i].v);
        assert_int_equal(gguf_get_float(g, ints[i].key, &fv), -1);
        assert_int_equal(gguf_get_bool(g, ints[i].key, &bv), -1);
        assert_int_equal(gguf_get_str(g, ints[i].key, &sv), -1);
    }
    /* u64 above INT64_MAX does not fit an int64 */
    iv = 12345;
    assert_int_equal(gguf_get_int(g, "t.u64", &iv), -1);
    assert_int_equal(iv, 12345);

    assert_int_equal(gguf_get_float(g, "t.f32", &fv), 1);
    assert_true(fv == 1.5);
    assert_int_equal(gguf_get_float(g, "t.f64", &fv), 1);
    assert_true(fv == -2.25);
    assert_int_equal(gguf_get_int(g, "t.f32", &iv), -1);
    assert_int_equal(gguf_get_int(g, "t.f64", &iv), -1);

    assert_int_equal(gguf_get_bool(g, "t.bool", &bv), 1);
    assert_int_equal(bv, 1);
    assert_int_equal(gguf_get_int(g, "t.bool", &iv), -1);
    assert_int_equal(gguf_get_float(g, "t.bool", &fv), -1);

    assert_int_equal(gguf_get_str(g, "general.architecture", &sv), 1);
    assert_true(gguf_str_eq(sv, "llama"));
    assert_false(gguf_str_eq(sv, "llam"));
    assert_false(gguf_str_eq(sv, "llama2"));
    assert_int_equal(gguf_get_int(g, "general.architecture", &iv), -1);
    assert_int_equal(gguf_get_float(g, "general.architecture", &fv), -1);
    assert_int_equal(gguf_get_bool(g, "general.architecture", &bv), -1);

    /* arrays are no scalars */
    assert_int_equal(gguf_get_int(g, "t.arr.i32", &iv), -1);
    assert_int_equal(gguf_get_float(g, "t.arr.f32", &fv), -1);
    assert_int_equal(gguf_get_bool(g, "t.arr.bool", &bv), -1);
    assert_int_equal(gguf_get_str(g, "t.arr.str", &sv), -1);

    /* missing keys */
    assert_int_equal(gguf_get_int(g, "nope", &iv), 0);
    assert_int_equal(gguf_get_float(g, "nope", &fv), 0);
    assert_int_equal(gguf_get_bool(g, "nope", &bv), 0);
    assert_int_equal(gguf_get_str(g, "nope", &sv), 0);
    assert_int_equal(gguf_get_int(g, "t.u", &iv), 0);   /* prefix of a key */
    assert_null(gguf_find(g, "t.u8x"));

    /* array elements */
    const GgufKV *a = gguf_find(g, "t.arr.i32");
    assert_non_null(a);
    assert_int_equal(a->n, 3);
    assert_int_equal(gguf_arr_int(a, 0), 1);
    assert_int_equal(gguf_arr_int(a, 1), -2);
    assert_int_equal(gguf_arr_int(a, 2), 3);
    assert_true(gguf_arr_float(a, 1) == -2.0);
    assert_int_equal(gguf_arr_int(a, 3), 0);    /* past the end */

    a = gguf_find(g, "t.arr.f32");
    assert_true(gguf_arr_float(a, 0) == 0.5);
    assert_true(gguf_arr_float(a, 1) == -1.0);
    assert_int_equal(gguf_arr_int(a, 0), 0);    /* float as int: refused */
    assert_true(gguf_arr_float(a, 2) == 0.0);

    a = gguf_find(g, "t.arr.f64");
    assert_true(gguf_arr_float(a, 0) == 1e300);

    a = gguf_find(g, "t.arr.u64");
    assert_int_equal(gguf_arr_int(a, 0), INT64_MAX);  /* clamped */
    assert_int_equal(gguf_arr_int(a, 1), 7);
    assert_true(gguf_arr_float(a, 0) == 18446744073709551615.0);

    a = gguf_find(g, "t.arr.bool");
    assert_int_equal(gguf_arr_int(a, 0), 1);
    assert_int_equal(gguf_arr_int(a, 1), 0);

    a = gguf_find(g, "t.arr.u8");
    assert_int_equal(a->n, 0);
    assert_int_equal(gguf_arr_int(a, 0), 0);

    a = gguf_find(g, "t.arr.str");
    assert_int_equal(a->n, 3);
    assert_int_equal(a->arr_type, GGUF_TYPE_STRING);
    assert_true(gguf_str_eq(a->strs[0], "a"));
    assert_int_equal(a->strs[1].len, 0);
    assert_true(gguf_str_eq(a->strs[2], "h\xc3\xa9llo\x01"));
    assert_int_equal(gguf_arr_int(a, 0), 0);    /* strings have no int value */
    assert_true(gguf_arr_float(a, 0) == 0.0);

    /* a scalar is no array */
    assert_int_equal(gguf_arr_int(gguf_find(g, "t.u8"), 0), 0);

    assert_string_equal(gguf_type_name(GGUF_TYPE_FLOAT32), "f32");
    assert_string_equal(gguf_type_name(99), "?");
    assert_string_equal(gguf_error_name(GGUF_E_OVERLAP), "overlapping tensor data");
    assert_string_equal(gguf_error_name(GGUF_E_COUNT), "?");
    done(g);
    gw_free(&w);
}

/* ---- fuzzer findings ------------------------------------------------------ */

/* Found by tests/fuzz_gguf.c (its pairwise overlap check) run against the
** first version of the parser, minimized with -minimize_crash: a mutated
** deepseek2 fixture where token_embd.weight [0, +126) covers
** blk.0.attn_norm.weight at 32, and an empty tensor also at offset 0 sorted
** between them hid the overlap from a neighbours-only check. */
static const uint8_t fuzz_overlap[845] = {
    0x47, 0x47, 0x55, 0x46, 0x03, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x67, 0x65, 0x6e, 0x65,
    0x72, 0x61, 0x6c, 0x2e, 0x61, 0x72, 0x63, 0x68, 0x69, 0x74, 0x65, 0x63,
    0x74, 0x75, 0x72, 0x65, 0x08, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x64, 0x65, 0x65, 0x70, 0x73, 0x65, 0x65, 0x6b,
    0x32, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x67, 0x65, 0x6e,
    0x65, 0x72, 0x61, 0x6c, 0x2e, 0x6e, 0x61, 0x6d, 0x65, 0x08, 0x00, 0x00,
    0x00, 0x1a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x73, 0x74, 0x65,
    0x65, 0x72, 0x69, 0x6e, 0x67, 0x62, 0x6c, 0x6b, 0x00, 0x00, 0x00, 0x00,
    0x74, 0x74, 0x6e, 0x5f, 0x71, 0x5f, 0x62, 0x2e, 0x77, 0x65, 0x32, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x64, 0x65, 0x65, 0x70, 0x67,
    0x6d, 0x6c, 0x2e, 0x65, 0x6f, 0x73, 0x5f, 0x74, 0x6f, 0x6b, 0x65, 0x6e,
    0x5f, 0x69, 0x64, 0x04, 0x00, 0x00, 0x00, 0xff, 0x07, 0x00, 0x00, 0x1c,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x74, 0x6f, 0x6b, 0x65, 0x6e,
    0x69, 0x7a, 0x65, 0x72, 0x2e, 0x67, 0x67, 0x6d, 0x6c, 0x2e, 0x61, 0x64,
    0x64, 0x5f, 0x62, 0x6f, 0x73, 0x5f, 0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x07,
    0x00, 0x00, 0x00, 0x01, 0x1c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x69, 0x7a, 0x65, 0x72, 0x2e, 0x67, 0x67,
    0x6d, 0x6c, 0x2e, 0x61, 0x64, 0x64, 0x5f, 0x65, 0x6f, 0x73, 0x5f, 0x74,
    0x6f, 0x6b, 0x65, 0x6e, 0x07, 0x00, 0x00, 0x00, 0x00, 0x11, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x5f, 0x65,
    0x6d, 0x62, 0x64, 0x2e, 0x77, 0x65, 0x69, 0x67, 0x68, 0x74, 0x02, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x62, 0x6c, 0x6b, 0x2e, 0x30, 0x2e, 0x61, 0x74, 0x74, 0x6e,
    0x5f, 0x6e, 0x6f, 0x72, 0x6d, 0x2e, 0x77, 0x65, 0x69, 0x67, 0x68, 0x74,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x15, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x62, 0x6c, 0x6b, 0x2e,
    0x30, 0x2e, 0x61, 0x74, 0x74, 0x6e, 0x5f, 0x71, 0x5f, 0x61, 0x2e, 0x77,
    0x65, 0x69, 0x67, 0x68, 0x74, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x1a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x62, 0x6c, 0x6b,
    0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x69, 0x7a, 0x65, 0x72, 0x2e, 0x67, 0x67,
    0x6d, 0x6c, 0x2e, 0x6d, 0x6f, 0x64, 0x65, 0x6c, 0x67, 0x68, 0x2f, 0x01,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x60, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x15,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x62, 0x6c, 0x6b, 0x2e, 0x30,
    0x2e, 0x61, 0x74, 0x74, 0x6e, 0x5f, 0x71, 0x5f, 0x62, 0x2e, 0x77, 0x65,
    0x69, 0x67, 0x68, 0x74, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x1a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x62, 0x6c, 0x6b, 0x2e,
    0x30, 0x2e, 0x61, 0x74, 0x74, 0x6e, 0x5f, 0x6b, 0x76, 0x5f, 0x61, 0x5f,
    0x6d, 0x71, 0x61, 0x2e, 0x77, 0x65, 0x69, 0x67, 0x68, 0x74, 0x02, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1b, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x62, 0x6c, 0x6b, 0x2e, 0x30, 0x2e, 0x61, 0x74, 0x74, 0x6e,
    0x5f, 0x6b, 0x76, 0x5f, 0x61, 0x5f, 0x6e, 0x6f, 0x72, 0x6d, 0x2e, 0x77,
    0x65, 0x69, 0x67, 0x68, 0x74, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x62, 0x6c, 0x6b,
    0x2e, 0x00, 0x00, 0x00, 0x64, 0x65, 0x65, 0x70, 0x73, 0x65, 0x65, 0x6b,
    0x65, 0x78, 0x70, 0x65, 0x72, 0x74, 0x5f, 0x63, 0x6f, 0x75, 0x65, 0x69,
    0x6f, 0x72, 0x61, 0x5f, 0x72, 0x61, 0x6e, 0x6b, 0x04, 0x00, 0x00, 0x00,
    0x20, 0x00, 0x98, 0x69, 0x7a, 0x65, 0x72, 0x2e, 0x67, 0x67, 0x6d, 0x6c,
    0x2e, 0x62, 0x6f, 0x73, 0x5f, 0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x5f, 0x69,
    0x64, 0x04, 0x00, 0x00, 0x64, 0x5f, 0x62, 0x6f, 0x73, 0x00, 0x00, 0x00,
    0x00, 0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x69, 0x7a, 0x65, 0x72, 0x2e, 0x67,
    0x67, 0x6d, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xa0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1b, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x62, 0x6c, 0x6b, 0x2e, 0x00, 0x00, 0x00, 0x64,
    0x65, 0x65, 0x70, 0x73, 0x65, 0x65, 0x6b, 0x65, 0x78, 0x70, 0x65, 0x72,
    0x74, 0x5f, 0x63, 0x6f, 0x75, 0x6e, 0x74, 0x04, 0x00, 0x00, 0x00, 0x00,
    0x65, 0x6c, 0x6f, 0x72, 0x61, 0x5f, 0x72, 0x61, 0x6e, 0x6b, 0x04, 0x00,
    0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x71, 0x7e, 0x8b, 0x98,
};

static void test_gguf_fuzz_overlap_behind_empty_fails_overlap(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    gw_bytes(&w, fuzz_overlap, sizeof fuzz_overlap);
    expect_fail(&w, GGUF_E_OVERLAP, "tensor 'blk.0.attn_norm.weight'",
                "tensor 'token_embd.weight'", "[0, +126)", NULL);
}

/* ---- real files ----------------------------------------------------------- */

static void test_gguf_shipped_files_parse(void **state)
{
    (void)state;
    static const char *pats[] = { "tests/data/fixtures/*/*.gguf",
                                  "tests/data/tokenizer/*.gguf",
                                  "samples/sample-q8_0.gguf" };
    size_t n_files = 0;
    for (size_t p = 0; p < sizeof pats / sizeof pats[0]; p++) {
        glob_t gl;
        assert_int_equal(glob(pats[p], 0, NULL, &gl), 0);
        for (size_t i = 0; i < gl.gl_pathc; i++) {
            Gguf *g = NULL;
            char err[512];
            GgufError e = gguf_open(gl.gl_pathv[i], &g, err, sizeof err);
            if (e)
                print_message("%s\n", err);
            assert_int_equal(e, GGUF_OK);
            GgufStr arch;
            assert_int_equal(gguf_get_str(g, "general.architecture", &arch), 1);
            assert_true(arch.len > 0);
            for (uint64_t t = 0; t < g->n_tensors; t++)
                assert_true(g->tensors[t].data + g->tensors[t].nbytes <=
                            g->base + g->size);
            gguf_free(g);
            n_files++;
        }
        globfree(&gl);
    }
    print_message("%zu GGUF files parsed\n", n_files);
    assert_true(n_files >= 29);
}

/* ---- gguf_open ------------------------------------------------------------ */

static char g_tmp[64];

static int tmp_setup(void **state)
{
    (void)state;
    strcpy(g_tmp, "/tmp/test_gguf.XXXXXX");
    return mkdtemp(g_tmp) ? 0 : -1;
}

static int tmp_teardown(void **state)
{
    (void)state;
    static const char *names[] = { "empty.gguf", "fifo.gguf", "small.gguf" };
    char path[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", g_tmp, names[i]);
        unlink(path);
    }
    return rmdir(g_tmp);
}

static void expect_open_fail(const char *path, GgufError want, const char *what)
{
    Gguf *g = (Gguf *)1;
    char err[512];
    GgufError e = gguf_open(path, &g, err, sizeof err);
    if (e != want || !strstr(err, what))
        print_message("%s: got %s: %s\n", path, gguf_error_name(e), err);
    assert_int_equal(e, want);
    assert_null(g);
    assert_true(strncmp(err, path, strlen(path)) == 0);
    assert_non_null(strstr(err, what));
}

static void test_gguf_open_not_a_file_fails_io(void **state)
{
    (void)state;
    char path[256];
    expect_open_fail(g_tmp, GGUF_E_IO, "directory");

    snprintf(path, sizeof path, "%s/empty.gguf", g_tmp);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fclose(f);
    expect_open_fail(path, GGUF_E_IO, "file is empty");

    snprintf(path, sizeof path, "%s/missing.gguf", g_tmp);
    expect_open_fail(path, GGUF_E_IO, "No such file");

    /* a FIFO without a writer: must not block */
    snprintf(path, sizeof path, "%s/fifo.gguf", g_tmp);
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(20);      /* a blocking open would hang here: let SIGALRM end it */
    expect_open_fail(path, GGUF_E_IO, "FIFO");
    alarm(0);

    expect_open_fail("/dev/null", GGUF_E_IO, "character device");

    /* err may be omitted */
    Gguf *g = (Gguf *)1;
    assert_int_equal(gguf_open(g_tmp, &g, NULL, 0), GGUF_E_IO);
    assert_null(g);
}

static void test_gguf_open_written_files_parse_or_name_path(void **state)
{
    (void)state;
    char path[256];
    GwBuf w = { 0 };
    gw_small_file(&w);
    snprintf(path, sizeof path, "%s/small.gguf", g_tmp);
    assert_int_equal(gw_save(&w, path), 0);
    Gguf *g = NULL;
    char err[512];
    assert_int_equal(gguf_open(path, &g, err, sizeof err), GGUF_OK);
    assert_non_null(g->map);
    assert_int_equal(g->map_size, w.n);
    int64_t v;
    assert_int_equal(gguf_get_int(g, "t.i16", &v), 1);
    assert_int_equal(v, -30000);
    assert_int_equal(gguf_tensor(g, "blk.0.exp_probs_b")->data[0],
                     (uint8_t)(512 * 7 + 1));
    gguf_free(g);

    /* the same file one byte short: the parse error, prefixed with the path */
    w.n--;
    assert_int_equal(gw_save(&w, path), 0);
    expect_open_fail(path, GGUF_E_OFFSET_RANGE, "tensor 'blk.0.exp_probs_b'");

    /* a crafted bad file through gguf_open */
    gw_free(&w);
    gw_header(&w, 3, 0, 1);
    gw_kv_u32(&w, "general.alignment", 3);
    assert_int_equal(gw_save(&w, path), 0);
    expect_open_fail(path, GGUF_E_ALIGNMENT, "general.alignment 3");
    gw_free(&w);
}

static void test_gguf_small_errcap_truncates_message(void **state)
{
    (void)state;
    GwBuf w = { 0 };
    gw_header(&w, 7, 0, 0);
    assert_false(w.oom);
    char err[12];
    memset(err, 'x', sizeof err);
    Gguf *g;
    assert_int_equal(gguf_parse(w.p, w.n, &g, err, sizeof err), GGUF_E_VERSION);
    assert_int_equal(strlen(err), sizeof err - 1);
    assert_int_equal(gguf_parse(w.p, w.n, &g, NULL, 0), GGUF_E_VERSION);
    gguf_free(NULL);    /* release functions accept NULL */
    gw_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_bad_magic_fails_magic),
        cmocka_unit_test(test_gguf_version_1_and_4_fail_version),
        cmocka_unit_test(test_gguf_counts_past_bytes_fail_counts),
        cmocka_unit_test(test_gguf_truncated_header_fails_truncated),
        cmocka_unit_test(test_gguf_string_past_end_fails_string_len),
        cmocka_unit_test(test_gguf_value_type_out_of_range_fails_value_type),
        cmocka_unit_test(test_gguf_array_type_bad_or_nested_fails_array_type),
        cmocka_unit_test(test_gguf_array_past_end_fails_array_len),
        cmocka_unit_test(test_gguf_empty_key_fails_key_empty),
        cmocka_unit_test(test_gguf_duplicate_key_fails_key_dup),
        cmocka_unit_test(test_gguf_alignment_bad_fails_alignment),
        cmocka_unit_test(test_gguf_tensor_name_bad_fails_name_len),
        cmocka_unit_test(test_gguf_tensor_name_twice_fails_name_dup),
        cmocka_unit_test(test_gguf_n_dims_0_and_5_fail_n_dims),
        cmocka_unit_test(test_gguf_negative_ne_fails_dim),
        cmocka_unit_test(test_gguf_element_count_overflow_fails_overflow),
        cmocka_unit_test(test_gguf_byte_size_overflow_fails_overflow),
        cmocka_unit_test(test_gguf_unknown_tensor_type_fails_type),
        cmocka_unit_test(test_gguf_row_not_block_multiple_fails_block),
        cmocka_unit_test(test_gguf_misaligned_offset_fails_offset_align),
        cmocka_unit_test(test_gguf_data_outside_file_fails_offset_range),
        cmocka_unit_test(test_gguf_overlapping_tensors_fail_overlap),
        cmocka_unit_test(test_gguf_small_file_parses_values_exact),
        cmocka_unit_test(test_gguf_truncated_every_byte_fails),
        cmocka_unit_test(test_gguf_getters_every_type_typed),
        cmocka_unit_test(test_gguf_fuzz_overlap_behind_empty_fails_overlap),
        cmocka_unit_test(test_gguf_shipped_files_parse),
        cmocka_unit_test(test_gguf_small_errcap_truncates_message),
        cmocka_unit_test_setup_teardown(test_gguf_open_not_a_file_fails_io,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_gguf_open_written_files_parse_or_name_path,
                                        tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
