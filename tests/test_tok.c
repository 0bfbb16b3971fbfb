/*
** tests/test_tok.c — the tokenizers against llama.cpp.
**
** llama.cpp's own test vectors (tests/data/tokenizer: 46 strings for each of
** the llama-spm, phi-3 and gpt-2 vocabularies, add_special and parse_special
** off), the `tokens` lines of every fixture's ref.txt (add_special on),
** detokenization round trips, special-token parsing, the pre-tokenizer
** regexes on hand-worked strings, refusal of unknown pre-tokenizers and
** malformed vocabularies (GGUF files built in memory), hostile input, speed.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "engine/gguf.h"
#include "engine/tok.h"
#include "engine/tok_pre.h"
#include "engine/tok_unicode.h"

#define TOKDIR "tests/data/tokenizer/"
#define FIXDIR "tests/data/fixtures/"

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = (size_t)n;
    }
    return buf;
}

typedef struct { Gguf *g; EngTok *t; } Loaded;

static Loaded load(const char *path)
{
    Loaded l = { 0 };
    char msg[256];
    EngErr err = { 0 };
    GgufError ge = gguf_open(path, &l.g, msg, sizeof msg);
    if (ge != GGUF_OK)
        fail_msg("gguf_open %s: %s", path, msg);
    l.t = eng_tok_new(l.g, &err);
    if (!l.t)
        fail_msg("eng_tok_new %s: %s", path, err.msg);
    return l;
}

static void unload(Loaded *l)
{
    eng_tok_free(l->t);
    gguf_free(l->g);
}

static int encode(const EngTok *t, const char *s, size_t n, int add_special, int parse_special,
                  int32_t **ids)
{
    EngErr err = { 0 };
    int cnt = eng_tok_encode(t, s, n, add_special, parse_special, NULL, 0, &err);
    if (cnt < 0)
        fail_msg("eng_tok_encode: %s", err.msg);
    *ids = malloc(((size_t)cnt + 1) * sizeof **ids);
    assert_non_null(*ids);
    int again = eng_tok_encode(t, s, n, add_special, parse_special, *ids, cnt, &err);
    assert_int_equal(again, cnt);
    return cnt;
}

/* Concatenated eng_tok_to_bytes of ids into a malloc'd buffer. */
static char *detok(const EngTok *t, const int32_t *ids, int n, size_t *len)
{
    size_t cap = 64, used = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (int i = 0; i < n; i++) {
        int need = eng_tok_to_bytes(t, ids[i], NULL, 0);
        assert_true(need >= 0);
        if (used + (size_t)need > cap) {
            cap = (used + (size_t)need) * 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        assert_int_equal(eng_tok_to_bytes(t, ids[i], buf + used, need), need);
        used += (size_t)need;
    }
    *len = used;
    return buf;
}

static void print_ids(const char *what, const int32_t *ids, int n)
{
    fprintf(stderr, "  %s (%d):", what, n);
    for (int i = 0; i < n && i < 40; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* ---- llama.cpp's vocabulary test vectors ------------------------------- */

static void run_vocab(const char *name)
{
    char path[256], *inp, *outs;
    size_t ninp, nout;
    snprintf(path, sizeof path, TOKDIR "%s.gguf", name);
    Loaded l = load(path);
    int spm = eng_tok_kind(l.t) == ENG_TOK_SPM;
    snprintf(path, sizeof path, TOKDIR "%s.gguf.inp", name);
    inp = read_file(path, &ninp);
    snprintf(path, sizeof path, TOKDIR "%s.gguf.out", name);
    outs = read_file(path, &nout);
    assert_non_null(inp);
    assert_non_null(outs);

    static const char sep[] = "\n__ggml_vocab_test__\n";
    const char *p = inp, *end = inp + ninp, *line = outs;
    int ncase = 0, bad = 0, bad_rt = 0;
    while (p < end) {
        const char *q = strstr(p, sep);
        assert_non_null(q);
        size_t len = (size_t)(q - p);
        const char *eol = strchr(line, '\n');
        assert_non_null(eol);
        int32_t want[512];
        int nwant = 0;
        for (const char *s = line; s < eol;) {
            char *e;
            long v = strtol(s, &e, 10);
            if (e == s)
                break;
            assert_true(nwant < 512);
            want[nwant++] = (int32_t)v;
            s = e;
        }
        int32_t *got;
        int ngot = encode(l.t, p, len, 0, 0, &got);
        if (ngot != nwant || memcmp(got, want, (size_t)ngot * sizeof *got) != 0) {
            fprintf(stderr, "%s case %d '%.*s' differs\n", name, ncase, (int)len, p);
            print_ids("want", want, nwant);
            print_ids("got ", got, ngot);
            bad++;
        }
        /* round trip: the bytes are the input (SPM: after its space prefix) */
        size_t nb;
        char *bytes = detok(l.t, got, ngot, &nb);
        const char *cmp = bytes;
        if (spm && len > 0 && nb > 0 && bytes[0] == ' ') {
            cmp++;
            nb--;
        }
        if (nb != len || memcmp(cmp, p, len) != 0) {
            fprintf(stderr, "%s case %d: round trip gives '%.*s'\n", name, ncase, (int)nb, cmp);
            bad_rt++;
        }
        free(bytes);
        free(got);
        ncase++;
        p = q + sizeof sep - 1;
        line = eol + 1;
    }
    fprintf(stderr, "%s: %d cases, %d token mismatches, %d round-trip mismatches\n", name,
            ncase, bad, bad_rt);
    assert_int_equal(ncase, 46);
    assert_int_equal(bad, 0);
    assert_int_equal(bad_rt, 0);
    free(inp);
    free(outs);
    unload(&l);
}

static void test_tok_llama_spm_vectors_match(void **state)
{
    (void)state;
    run_vocab("ggml-vocab-llama-spm");
}

static void test_tok_phi3_vectors_match(void **state)
{
    (void)state;
    run_vocab("ggml-vocab-phi-3");
}

static void test_tok_gpt2_vectors_match(void **state)
{
    (void)state;
    run_vocab("ggml-vocab-gpt-2");
}

/* ---- fixtures' tokens lines -------------------------------------------- */

static size_t unescape(const char *s, char *out)
{
    size_t k = 0;
    for (; *s && *s != '\n'; s++) {
        if (*s != '\\') {
            out[k++] = *s;
            continue;
        }
        s++;
        switch (*s) {
        case 'n': out[k++] = '\n'; break;
        case 't': out[k++] = '\t'; break;
        case 'r': out[k++] = '\r'; break;
        case '\\': out[k++] = '\\'; break;
        case 'x': {
            unsigned v = 0;
            sscanf(s + 1, "%2x", &v);
            out[k++] = (char)v;
            s += 2;
            break;
        }
        default: fail_msg("bad escape \\%c", *s);
        }
    }
    return k;
}

static void test_tok_fixture_tokens_match(void **state)
{
    (void)state;
    static const char *const fx[] = { "mixtral", "olmoe", "qwen2moe", "granitemoe",
                                       "deepseek2", "qwen3moe", "gpt-oss", "glm4moe" };
    int ncase = 0, bad = 0;
    for (size_t f = 0; f < sizeof fx / sizeof fx[0]; f++) {
        char path[256], line[4096], text[4096];
        snprintf(path, sizeof path, FIXDIR "%s/%s-f32.gguf", fx[f], fx[f]);
        Loaded l = load(path);
        assert_int_equal(eng_tok_kind(l.t), f == 0 ? ENG_TOK_SPM : ENG_TOK_BPE);
        snprintf(path, sizeof path, FIXDIR "%s/ref.txt", fx[f]);
        FILE *fp = fopen(path, "r");
        assert_non_null(fp);
        size_t tlen = 0;
        int have_prompt = 0;
        while (fgets(line, sizeof line, fp)) {
            if (strncmp(line, "prompt ", 7) == 0) {
                tlen = unescape(line + 7, text);
                have_prompt = 1;
            } else if (strncmp(line, "tokens ", 7) == 0) {
                assert_true(have_prompt);
                int32_t want[512];
                int nwant, off;
                char *s = line + 7;
                assert_int_equal(sscanf(s, "%d%n", &nwant, &off), 1);
                s += off;
                for (int i = 0; i < nwant; i++) {
                    assert_int_equal(sscanf(s, "%d%n", &want[i], &off), 1);
                    s += off;
                }
                int32_t *got;
                int ngot = encode(l.t, text, tlen, 1, 0, &got);
                if (ngot != nwant || memcmp(got, want, (size_t)ngot * sizeof *got) != 0) {
                    fprintf(stderr, "%s: prompt '%.*s' differs\n", fx[f], (int)tlen, text);
                    print_ids("want", want, nwant);
                    print_ids("got ", got, ngot);
                    bad++;
                }
                size_t nb;
                char *bytes = detok(l.t, got, ngot, &nb);
                const char *cmp = bytes;
                if (f == 0 && nb > 0 && bytes[0] == ' ') {
                    cmp++;
                    nb--;
                }
                if (nb != tlen || memcmp(cmp, text, tlen) != 0) {
                    fprintf(stderr, "%s: round trip gives '%.*s'\n", fx[f], (int)nb, cmp);
                    bad++;
                }
                free(bytes);
                free(got);
                ncase++;
                have_prompt = 0;
            }
        }
        fclose(fp);
        unload(&l);
    }
    fprintf(stderr, "fixtures: %d prompts, %d mismatches\n", ncase, bad);
    assert_int_equal(ncase, 24);
    assert_int_equal(bad, 0);
}

/* ---- special tokens, EOG, accessors ------------------------------------ */

static void test_tok_parse_special_on_splits_control_tokens(void **state)
{
    (void)state;
    Loaded l = load(TOKDIR "ggml-vocab-gpt-2.gguf");
    static const char s[] = "a<|endoftext|> b";
    int32_t *ids;
    int n = encode(l.t, s, sizeof s - 1, 0, 1, &ids);
    /* a, <|endoftext|>, Ġb */
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], 50256);
    free(ids);
    n = encode(l.t, s, sizeof s - 1, 0, 0, &ids);
    assert_true(n > 3);
    for (int i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 50256);
    free(ids);
    assert_true(eng_tok_is_eog(l.t, 50256));
    assert_false(eng_tok_is_eog(l.t, 0));
    assert_false(eng_tok_is_eog(l.t, -1));
    assert_false(eng_tok_is_eog(l.t, 50257));
    assert_int_equal(eng_tok_to_bytes(l.t, 50256, NULL, 0), 0);   /* control: no text */
    assert_string_equal(eng_tok_pre(l.t), "gpt-2");
    assert_int_equal(eng_tok_n_vocab(l.t), 50257);
    assert_int_equal(eng_tok_add_bos(l.t), 0);
    unload(&l);
}

static void test_tok_spm_special_gets_space_prefix_after(void **state)
{
    (void)state;
    Loaded l = load(TOKDIR "ggml-vocab-llama-spm.gguf");
    static const char s[] = "Hello</s>world";
    int32_t *ids, *w1, *w2;
    int n = encode(l.t, s, sizeof s - 1, 1, 1, &ids);
    int n1 = encode(l.t, "Hello", 5, 0, 0, &w1);
    int n2 = encode(l.t, "world", 5, 0, 0, &w2);
    /* <s> ▁Hello </s> ▁world: the space prefix comes back after a special */
    assert_int_equal(n, 1 + n1 + 1 + n2);
    assert_int_equal(ids[0], 1);
    assert_memory_equal(ids + 1, w1, (size_t)n1 * sizeof *w1);
    assert_int_equal(ids[1 + n1], 2);
    assert_memory_equal(ids + 2 + n1, w2, (size_t)n2 * sizeof *w2);
    assert_true(eng_tok_is_eog(l.t, 2));
    assert_int_equal(eng_tok_bos(l.t), 1);
    assert_int_equal(eng_tok_eos(l.t), 2);
    assert_string_equal(eng_tok_pre(l.t), "");
    free(ids);
    free(w1);
    free(w2);
    /* empty text: nothing, or BOS alone */
    assert_int_equal(eng_tok_encode(l.t, "", 0, 0, 0, NULL, 0, NULL), 0);
    int32_t one[4];
    assert_int_equal(eng_tok_encode(l.t, "", 0, 1, 0, one, 4, NULL), 1);
    assert_int_equal(one[0], 1);
    /* byte pieces and ▁ detokenize to bytes */
    char b[8];
    assert_int_equal(eng_tok_to_bytes(l.t, 13, b, sizeof b), 1);     /* <0x0A> */
    assert_int_equal(b[0], '\n');
    size_t len;
    const char *str = eng_tok_str(l.t, 13, &len);
    assert_int_equal(len, 6);
    assert_memory_equal(str, "<0x0A>", 6);
    assert_null(eng_tok_str(l.t, 32000, &len));
    unload(&l);
}

static void test_tok_phi3_special_rstrip_by_name(void **state)
{
    (void)state;
    Loaded l = load(TOKDIR "ggml-vocab-phi-3.gguf");
    /* general.name "Phi3": llama.cpp strips whitespace after phi-3's special
    ** tokens (RSTRIP), except after <unk>, <s> and <|endoftext|> */
    int32_t *a, *b;
    int na = encode(l.t, "<|user|>  hi", 12, 0, 1, &a);
    int nb = encode(l.t, "<|user|>hi", 10, 0, 1, &b);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na * sizeof *a);
    assert_int_equal(a[0], 32010);
    free(a);
    free(b);
    na = encode(l.t, "<|endoftext|>  hi", 17, 0, 1, &a);
    nb = encode(l.t, "<|endoftext|>hi", 15, 0, 1, &b);
    assert_int_equal(a[0], 32000);
    assert_int_not_equal(na, nb);
    free(a);
    free(b);
    /* CONTROL <|assistant|> (32001) only with parse_special */
    na = encode(l.t, "<|assistant|>", 13, 0, 0, &a);
    assert_true(na > 1);
    free(a);
    na = encode(l.t, "<|assistant|>", 13, 0, 1, &a);
    assert_int_equal(na, 1);
    assert_int_equal(a[0], 32001);
    free(a);
    unload(&l);
}

static void test_tok_encode_cap_too_small_returns_needed(void **state)
{
    (void)state;
    Loaded l = load(TOKDIR "ggml-vocab-gpt-2.gguf");
    int32_t two[2] = { -7, -7 }, all[16];
    int need = eng_tok_encode(l.t, "Hello world, again", 18, 0, 0, all, 16, NULL);
    assert_true(need > 2);
    assert_int_equal(eng_tok_encode(l.t, "Hello world, again", 18, 0, 0, two, 2, NULL), need);
    assert_int_equal(two[0], all[0]);
    assert_int_equal(two[1], all[1]);
    EngErr err = { 0 };
    assert_int_equal(eng_tok_encode(l.t, NULL, 3, 0, 0, all, 16, &err), -1);
    assert_int_equal(err.status, ENG_E_ARG);
    unload(&l);
}

/* ---- the pre-tokenizer regexes ------------------------------------------ */

static void expect_split(TokPreKind kind, const char *text, const char *const *want)
{
    uint32_t cp[256] = { 0 };
    size_t n = 0;
    for (const unsigned char *s = (const unsigned char *)text; *s;) {
        /* test strings are valid UTF-8 */
        uint32_t c = *s;
        int k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (k > 1)
            c &= 0x3F >> (k - 1);
        for (int j = 1; j < k; j++)
            c = (c << 6) | (s[j] & 0x3F);
        cp[n++] = c;
        s += k;
    }
    size_t *lens;
    long nw = tok_pre_split(kind, cp, n, &lens);
    assert_true(nw >= 0);
    long nwant = 0;
    while (want[nwant])
        nwant++;
    const char *p = text;
    int ok = nw == nwant;
    for (long w = 0; ok && w < nw; w++) {
        size_t bytes = 0;
        for (size_t c = 0; c < lens[w]; c++) {
            unsigned char b = (unsigned char)p[bytes];
            bytes += b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
        }
        ok = strlen(want[w]) == bytes && memcmp(want[w], p, bytes) == 0;
        p += bytes;
    }
    if (!ok) {
        fprintf(stderr, "pre-tokenizer %d on '%s': %ld words:", (int)kind, text, nw);
        p = text;
        for (long w = 0; w < nw; w++) {
            size_t bytes = 0;
            for (size_t c = 0; c < lens[w]; c++) {
                unsigned char b = (unsigned char)p[bytes];
                bytes += b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
            }
            fprintf(stderr, " [%.*s]", (int)bytes, p);
            p += bytes;
        }
        fprintf(stderr, "\n");
    }
    free(lens);
    assert_true(ok);
}

static void test_tok_pre_regexes_split_as_llama_cpp(void **state)
{
    (void)state;
    expect_split(TOK_PRE_GPT2, "Hello  world's 123!!\n\n",
                 (const char *[]){ "Hello", " ", " world", "'s", " 123", "!!", "\n\n", NULL });
    expect_split(TOK_PRE_LLAMA3, "Hello 12345 WE'RE!!\n\nx",
                 (const char *[]){ "Hello", " ", "123", "45", " WE", "'RE", "!!\n\n", "x", NULL });
    expect_split(TOK_PRE_LLAMA3, "a \t\n  b",
                 (const char *[]){ "a", " \t\n", " ", " b", NULL });
    expect_split(TOK_PRE_QWEN2, "x12345",
                 (const char *[]){ "x", "1", "2", "3", "4", "5", NULL });
    expect_split(TOK_PRE_GPT4O, "HelloWorld's ABCdef //x\n",
                 (const char *[]){ "Hello", "World's", " ABCdef", " //", "x", "\n", NULL });
    expect_split(TOK_PRE_DEEPSEEK3, "abc123456 東京です",
                 (const char *[]){ "abc", "123", "456", " ", "東京です", NULL });
    expect_split(TOK_PRE_DEEPSEEK3, ".Net ~~",
                 (const char *[]){ ".Net", " ", "~~", NULL });     /* ~ is not \p{S} */
    expect_split(TOK_PRE_DEFAULT, "ab+=1234",
                 (const char *[]){ "ab", "+=", "123", "4", NULL });
    expect_split(TOK_PRE_DEEPSEEK_LLM, "Ab ,x\n  ",
                 (const char *[]){ "Ab", " ,", "x", "\n", "  ", NULL });
    expect_split(TOK_PRE_STARCODER, "ab 12",
                 (const char *[]){ "ab", " ", "1", "2", NULL });
}

static void test_tok_unicode_tables_classify(void **state)
{
    (void)state;
    assert_true(tok_ucp_flags('a') & TOK_U_LETTER);
    assert_true(tok_ucp_flags(0x00E9) & TOK_U_LETTER);     /* é */
    assert_true(tok_ucp_flags(0x6771) & TOK_U_LETTER);     /* 東 (CJK range) */
    assert_true(tok_ucp_flags(0x0663) & TOK_U_NUMBER);     /* Arabic-Indic 3 */
    assert_true(tok_ucp_flags(0x0301) & TOK_U_MARK);
    assert_true(tok_ucp_flags(0x2014) & TOK_U_PUNCT);      /* — */
    assert_true(tok_ucp_flags(0x1F680) & TOK_U_SYMBOL);    /* 🚀 */
    assert_true(tok_ucp_flags(0x00A0) & TOK_U_SPACE);
    assert_true(tok_ucp_flags(0x3000) & TOK_U_SPACE);
    assert_false(tok_ucp_flags(0x200B) & TOK_U_SPACE);     /* ZWSP is Cf */
    assert_true(tok_ucp_flags(0x0378) & TOK_U_UNDEF);
    assert_int_equal(tok_ucp_flags(0x110000), 0);
}

/* ---- GGUF files built in memory ------------------------------------------ */

typedef struct { uint8_t *b; size_t n, cap; uint64_t nkv; } Buf;

static void put(Buf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->b = realloc(b->b, b->cap);
        assert_non_null(b->b);
    }
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void put_u32(Buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(Buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(Buf *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }

static void kv_str(Buf *b, const char *key, const char *v)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_STRING);
    put_str(b, v);
    b->nkv++;
}

static void kv_strs(Buf *b, const char *key, const char *const *v, int n)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_ARRAY);
    put_u32(b, GGUF_TYPE_STRING);
    put_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++)
        put_str(b, v[i]);
    b->nkv++;
}

static void kv_f32s(Buf *b, const char *key, int n)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_ARRAY);
    put_u32(b, GGUF_TYPE_FLOAT32);
    put_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        float f = -(float)i;
        put(b, &f, 4);
    }
    b->nkv++;
}

/* Header + kvs -> a parsed Gguf (the buffer is kept in *keep). */
static Gguf *finish(Buf *kvs, uint8_t **keep)
{
    Buf f = { 0 };
    put(&f, "GGUF", 4);
    put_u32(&f, 3);
    put_u64(&f, 0);
    put_u64(&f, kvs->nkv);
    put(&f, kvs->b, kvs->n);
    /* pad to the default alignment for an (empty) data section */
    while (f.n % 32)
        put(&f, "\0", 1);
    free(kvs->b);
    Gguf *g = NULL;
    char msg[256];
    GgufError e = gguf_parse(f.b, f.n, &g, msg, sizeof msg);
    if (e != GGUF_OK)
        fail_msg("gguf_parse of a crafted file: %s", msg);
    *keep = f.b;
    return g;
}

static const char *const k_small[] = { "a", "b", "ab", "<|endoftext|>" };

static void expect_refused(Buf *kvs, const char *needle1, const char *needle2)
{
    uint8_t *buf;
    Gguf *g = finish(kvs, &buf);
    EngErr err = { 0 };
    EngTok *t = eng_tok_new(g, &err);
    if (t || !strstr(err.msg, needle1) || (needle2 && !strstr(err.msg, needle2)))
        fprintf(stderr, "message: %s\n", err.msg);
    assert_null(t);
    assert_non_null(strstr(err.msg, needle1));
    if (needle2)
        assert_non_null(strstr(err.msg, needle2));
    assert_int_not_equal(err.status, ENG_OK);
    gguf_free(g);
    free(buf);
}

static void test_tok_unknown_pre_refused_with_list(void **state)
{
    (void)state;
    Buf b = { 0 };
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    kv_str(&b, "tokenizer.ggml.pre", "klingon-bpe");
    kv_strs(&b, "tokenizer.ggml.tokens", k_small, 4);
    kv_strs(&b, "tokenizer.ggml.merges", (const char *[]){ "a b" }, 1);
    expect_refused(&b, "klingon-bpe", "gpt-4o");
}

static void test_tok_good_crafted_bpe_merges(void **state)
{
    (void)state;
    uint8_t *keep;
    Buf b = { 0 };
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    kv_str(&b, "tokenizer.ggml.pre", "qwen2");
    kv_strs(&b, "tokenizer.ggml.tokens", k_small, 4);
    /* a malformed line (no space) is skipped, the good one still applies */
    kv_strs(&b, "tokenizer.ggml.merges", (const char *[]){ "nospace", "a b" }, 2);
    Gguf *g = finish(&b, &keep);
    EngErr err = { 0 };
    EngTok *t = eng_tok_new(g, &err);
    if (!t)
        fail_msg("%s", err.msg);
    int32_t ids[8];
    assert_int_equal(eng_tok_encode(t, "abba", 4, 1, 0, ids, 8, &err), 3);
    assert_int_equal(ids[0], 2);    /* ab */
    assert_int_equal(ids[1], 1);    /* b */
    assert_int_equal(ids[2], 0);    /* a */
    /* no bos/eos keys: llama.cpp's BPE default id 11 is out of range here */
    assert_int_equal(eng_tok_bos(t), -1);
    assert_true(eng_tok_is_eog(t, 3));      /* <|endoftext|> by its text */
    eng_tok_free(t);
    gguf_free(g);
    free(keep);
}

static void kv_i32s(Buf *b, const char *key, const int32_t *v, int n)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_ARRAY);
    put_u32(b, GGUF_TYPE_INT32);
    put_u64(b, (uint64_t)n);
    put(b, v, (size_t)n * 4);
    b->nkv++;
}

static void test_tok_user_defined_split_without_parse_special(void **state)
{
    (void)state;
    uint8_t *keep;
    Buf b = { 0 };
    static const char *const toks[] = { "<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "<tag>",
                                        "\xe2\x96\x81" "a" };
    static const int32_t types[] = { 2, 3, 3, 1, 1, 4, 1 };
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strs(&b, "tokenizer.ggml.tokens", toks, 7);
    kv_f32s(&b, "tokenizer.ggml.scores", 7);
    kv_i32s(&b, "tokenizer.ggml.token_type", types, 7);
    Gguf *g = finish(&b, &keep);
    EngErr err = { 0 };
    EngTok *t = eng_tok_new(g, &err);
    if (!t)
        fail_msg("%s", err.msg);
    int32_t ids[8];
    /* USER_DEFINED <tag> is split out even without parse_special, and the
    ** text after it gets the space prefix again: ▁a <tag> ▁a */
    assert_int_equal(eng_tok_encode(t, "a<tag>a", 7, 0, 0, ids, 8, &err), 3);
    assert_int_equal(ids[0], 6);
    assert_int_equal(ids[1], 5);
    assert_int_equal(ids[2], 6);
    char out[8];
    assert_int_equal(eng_tok_to_bytes(t, 5, out, sizeof out), 5);
    assert_memory_equal(out, "<tag>", 5);
    /* CONTROL </s> stays text without parse_special: ▁, then <unk> for
    ** each byte (no byte pieces in this vocabulary) */
    int n = eng_tok_encode(t, "</s>", 4, 0, 0, ids, 8, &err);
    assert_int_equal(n, 5);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], 0);
    assert_int_equal(eng_tok_encode(t, "</s>", 4, 0, 1, ids, 8, &err), 1);
    assert_int_equal(ids[0], 2);
    eng_tok_free(t);
    gguf_free(g);
    free(keep);
}

static void test_tok_short_scores_refused(void **state)
{
    (void)state;
    Buf b = { 0 };
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strs(&b, "tokenizer.ggml.tokens", k_small, 4);
    kv_f32s(&b, "tokenizer.ggml.scores", 3);
    expect_refused(&b, "tokenizer.ggml.scores", "3 entries");
}

static void test_tok_duplicate_token_refused(void **state)
{
    (void)state;
    Buf b = { 0 };
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strs(&b, "tokenizer.ggml.tokens", (const char *[]){ "<unk>", "x", "y", "x" }, 4);
    expect_refused(&b, "duplicate", "'x'");
}

static void test_tok_bad_array_types_refused(void **state)
{
    (void)state;
    Buf b = { 0 };
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strs(&b, "tokenizer.ggml.tokens", k_small, 4);
    kv_f32s(&b, "tokenizer.ggml.token_type", 4);
    expect_refused(&b, "tokenizer.ggml.token_type", "integers");

    b = (Buf){ 0 };
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    kv_strs(&b, "tokenizer.ggml.tokens", k_small, 4);
    expect_refused(&b, "tokenizer.ggml.merges", "missing");

    b = (Buf){ 0 };
    kv_str(&b, "tokenizer.ggml.model", "bert");
    kv_strs(&b, "tokenizer.ggml.tokens", k_small, 4);
    expect_refused(&b, "'bert'", "gpt2");

    b = (Buf){ 0 };
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_str(&b, "tokenizer.ggml.tokens", "not an array");
    expect_refused(&b, "tokenizer.ggml.tokens", "strings");
}

static void test_tok_spm_missing_bos_with_add_bos_refused(void **state)
{
    (void)state;
    Buf b = { 0 };
    kv_str(&b, "tokenizer.ggml.model", "llama");
    /* one token: default bos 1 is out of range, add_bos defaults to true */
    kv_strs(&b, "tokenizer.ggml.tokens", (const char *[]){ "<unk>" }, 1);
    expect_refused(&b, "add_bos_token", "bos_token_id");
}

/* ---- hostile input and speed -------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)rng_state;
}

static void test_tok_random_bytes_never_crash(void **state)
{
    (void)state;
    static const char *const files[] = { TOKDIR "ggml-vocab-llama-spm.gguf",
                                         TOKDIR "ggml-vocab-gpt-2.gguf",
                                         FIXDIR "mixtral/mixtral-f32.gguf",
                                         FIXDIR "olmoe/olmoe-f32.gguf" };
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        Loaded l = load(files[f]);
        for (int iter = 0; iter < 200; iter++) {
            char buf[64];
            size_t n = rnd() % sizeof buf;
            for (size_t i = 0; i < n; i++)
                buf[i] = iter % 2 ? (char)rnd() : "ab \n\xe2\x96\x81\xc3\xf0<|>s/"[rnd() % 14];
            int32_t ids[256];
            EngErr err = { 0 };
            int cnt = eng_tok_encode(l.t, buf, n, iter % 3 == 0, iter % 2, ids, 256, &err);
            assert_true(cnt >= 0);
            for (int i = 0; i < cnt && i < 256; i++) {
                assert_true(ids[i] >= 0 && ids[i] < eng_tok_n_vocab(l.t));
                char out[64];
                assert_true(eng_tok_to_bytes(l.t, ids[i], out, (int)(rnd() % 4)) >= 0);
            }
        }
        unload(&l);
    }
}

/* Sanitizer builds run several times slower; the 1 s bound is for -O2. */
#ifdef __SANITIZE_ADDRESS__
#define TOK_TIME_LIMIT 5.0
#else
#define TOK_TIME_LIMIT 1.0
#endif

static void test_tok_100kb_text_fast(void **state)
{
    (void)state;
    size_t ninp;
    char *inp = read_file(TOKDIR "ggml-vocab-gpt-2.gguf.inp", &ninp);
    assert_non_null(inp);
    size_t n = 100 * 1024;
    char *text = malloc(n);
    assert_non_null(text);
    for (size_t i = 0; i < n; i++)
        text[i] = inp[i % ninp];
    static const char *const files[] = { TOKDIR "ggml-vocab-llama-spm.gguf",
                                         TOKDIR "ggml-vocab-gpt-2.gguf" };
    for (size_t f = 0; f < 2; f++) {
        Loaded l = load(files[f]);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int cnt = eng_tok_encode(l.t, text, n, 1, 1, NULL, 0, NULL);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double s = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        fprintf(stderr, "%s: 100 KiB -> %d tokens in %.3f s\n", files[f], cnt, s);
        assert_true(cnt > 10000);
        assert_true(s < TOK_TIME_LIMIT);
        unload(&l);
    }
    free(text);
    free(inp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tok_llama_spm_vectors_match),
        cmocka_unit_test(test_tok_phi3_vectors_match),
        cmocka_unit_test(test_tok_gpt2_vectors_match),
        cmocka_unit_test(test_tok_fixture_tokens_match),
        cmocka_unit_test(test_tok_parse_special_on_splits_control_tokens),
        cmocka_unit_test(test_tok_spm_special_gets_space_prefix_after),
        cmocka_unit_test(test_tok_phi3_special_rstrip_by_name),
        cmocka_unit_test(test_tok_user_defined_split_without_parse_special),
        cmocka_unit_test(test_tok_encode_cap_too_small_returns_needed),
        cmocka_unit_test(test_tok_pre_regexes_split_as_llama_cpp),
        cmocka_unit_test(test_tok_unicode_tables_classify),
        cmocka_unit_test(test_tok_unknown_pre_refused_with_list),
        cmocka_unit_test(test_tok_good_crafted_bpe_merges),
        cmocka_unit_test(test_tok_short_scores_refused),
        cmocka_unit_test(test_tok_duplicate_token_refused),
        cmocka_unit_test(test_tok_bad_array_types_refused),
        cmocka_unit_test(test_tok_spm_missing_bos_with_add_bos_refused),
        cmocka_unit_test(test_tok_random_bytes_never_crash),
        cmocka_unit_test(test_tok_100kb_text_fast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
