/*
** engine/tok_pre.c — BPE pre-tokenizers as hand-written regex matchers.
**
** Each pre-tokenizer is a list of passes; each pass is one regex of
** llama.cpp's llm_tokenizer_bpe, written as a matcher m(cp, pos, end) that
** returns the length of the regex's leftmost-first match starting exactly at
** pos (0 = no match there).  The driver emulates std::regex_search over one
** word: it tries every position in turn, emits the text between matches as
** words of their own, and lets `$` and `(?!\S)` see the end of the word as
** the end of the input, as llama.cpp's per-word search does.
**
** Character classes follow what llama.cpp's regex machinery actually sees:
** \p{L}, \p{N}, \p{M} and \s come from the generated Unicode tables; for
** ASCII, \p{P} is !"#%&'()*,-./:;?@[\]_{} and \p{S} is $+<=>^`| (llama.cpp's
** ASCII maps leave '~' out of both); passes written with literal non-ASCII
** ranges see non-ASCII whitespace as \v, as llama.cpp's wregex path does.
*/
#include "engine/tok_pre.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tok_unicode.h"

typedef size_t (*TokMatchFn)(const uint32_t *cp, size_t pos, size_t end);

/* ---- character predicates -------------------------------------------- */

static int is_ws(uint32_t c) { return (tok_ucp_flags(c) & TOK_U_SPACE) != 0; }
static int is_l(uint32_t c) { return (tok_ucp_flags(c) & TOK_U_LETTER) != 0; }
static int is_n(uint32_t c) { return (tok_ucp_flags(c) & TOK_U_NUMBER) != 0; }
static int is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }
static int is_lower_az(uint32_t c) { return c >= 'a' && c <= 'z'; }
static int is_upper_az(uint32_t c) { return c >= 'A' && c <= 'Z'; }
static int is_ascii_alpha(uint32_t c) { return is_lower_az(c) || is_upper_az(c); }

/* [^\s\p{L}\p{N}] */
static int is_other(uint32_t c)
{
    return (tok_ucp_flags(c) & (TOK_U_SPACE | TOK_U_LETTER | TOK_U_NUMBER)) == 0;
}

/* \p{P} and \p{S} as llama.cpp's collapsed-category regexes see them. */
static int is_cp(uint32_t c)
{
    if (c < 0x80)
        return c != '$' && c != '+' && c != '<' && c != '=' && c != '>' &&
               c != '^' && c != '`' && c != '|' && c != '~' &&
               c > 0x20 && c < 0x7f && !is_ascii_alpha(c) && !(c >= '0' && c <= '9');
    unsigned f = tok_ucp_flags(c);
    return !(f & TOK_U_SPACE) && (f & TOK_U_PUNCT);
}

static int is_cs(uint32_t c)
{
    if (c < 0x80)
        return c != 0 && strchr("$+<=>^`|", (int)c) != NULL;
    unsigned f = tok_ucp_flags(c);
    return !(f & TOK_U_SPACE) && (f & TOK_U_SYMBOL);
}

static int is_lm(uint32_t c) { return (tok_ucp_flags(c) & (TOK_U_LETTER | TOK_U_MARK)) != 0; }
static int is_ps(uint32_t c) { return is_cp(c) || is_cs(c); }

/* gpt-4o's adapted classes: a letter that is not a-z / not A-Z. */
static int is_x(uint32_t c) { return is_l(c) && !is_lower_az(c); }
static int is_y(uint32_t c) { return is_l(c) && !is_upper_az(c); }

/* [^\r\n\p{L}\p{N}] */
static int is_pre_ln(uint32_t c) { return !is_crlf(c) && !is_l(c) && !is_n(c); }

/* [^\r\n\p{L}\p{P}\p{S}] */
static int is_pre_lps(uint32_t c) { return !is_crlf(c) && !is_l(c) && !is_cp(c) && !is_cs(c); }

/* What llama.cpp's wregex path sees: non-ASCII whitespace becomes \v. */
static uint32_t wchr(uint32_t c) { return (c >= 0x80 && is_ws(c)) ? 0x0B : c; }

static size_t run(const uint32_t *cp, size_t i, size_t end, int (*pred)(uint32_t))
{
    while (i < end && pred(cp[i]))
        i++;
    return i;
}

/* ---- shared regex pieces --------------------------------------------- */

static uint32_t lower_ascii(uint32_t c) { return is_upper_az(c) ? c + 32 : c; }

/* 's|'t|'re|'ve|'m|'ll|'d, case-insensitively if ci. */
static size_t contraction(const uint32_t *cp, size_t pos, size_t end, int ci)
{
    if (pos + 1 >= end || cp[pos] != '\'')
        return 0;
    uint32_t a = ci ? lower_ascii(cp[pos + 1]) : cp[pos + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (pos + 2 >= end)
        return 0;
    uint32_t b = ci ? lower_ascii(cp[pos + 2]) : cp[pos + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* " ?C+" for the class pred: length, or 0. */
static size_t opt_space_run(const uint32_t *cp, size_t pos, size_t end, int (*pred)(uint32_t))
{
    if (cp[pos] == ' ' && pos + 1 < end && pred(cp[pos + 1]))
        return run(cp, pos + 1, end, pred) - pos;
    if (pred(cp[pos]))
        return run(cp, pos, end, pred) - pos;
    return 0;
}

/* \s*[\r\n]+ | \s+(?!\S) | \s+   (with_crlf, with_plain select the parts) */
static size_t spaces(const uint32_t *cp, size_t pos, size_t end, int with_crlf, int with_plain)
{
    size_t k = run(cp, pos, end, is_ws) - pos;
    if (k == 0)
        return 0;
    if (with_crlf) {
        for (size_t i = pos + k; i > pos; i--)
            if (is_crlf(cp[i - 1]))
                return i - pos;
    }
    if (pos + k == end)
        return k;
    if (k > 1)
        return k - 1;
    return with_plain ? k : 0;
}

/* ---- the regexes ------------------------------------------------------ */

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
static size_t m_gpt2(const uint32_t *cp, size_t pos, size_t end)
{
    size_t n;
    if ((n = contraction(cp, pos, end, 0)))
        return n;
    if ((n = opt_space_run(cp, pos, end, is_l)))
        return n;
    if ((n = opt_space_run(cp, pos, end, is_n)))
        return n;
    if ((n = opt_space_run(cp, pos, end, is_other)))
        return n;
    return spaces(cp, pos, end, 0, 0);
}

/* (?i:'s|..)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max}| ?[^\s\p{L}\p{N}]+[\r\n]*|
** \s*[\r\n]+|\s+(?!\S)|\s+   — llama3 (max 3) and qwen2 (max 1) */
static size_t m_llama3_like(const uint32_t *cp, size_t pos, size_t end, size_t max_digits)
{
    uint32_t c = cp[pos];
    size_t n;
    if ((n = contraction(cp, pos, end, 1)))
        return n;
    if (is_pre_ln(c) && pos + 1 < end && is_l(cp[pos + 1]))
        return run(cp, pos + 1, end, is_l) - pos;
    if (is_l(c))
        return run(cp, pos, end, is_l) - pos;
    if (is_n(c)) {
        n = run(cp, pos, end, is_n) - pos;
        return n < max_digits ? n : max_digits;
    }
    if ((n = opt_space_run(cp, pos, end, is_other))) {
        size_t i = pos + n;
        while (i < end && is_crlf(cp[i]))
            i++;
        return i - pos;
    }
    return spaces(cp, pos, end, 1, 1);
}

static size_t m_llama3(const uint32_t *cp, size_t pos, size_t end)
{
    return m_llama3_like(cp, pos, end, 3);
}

static size_t m_qwen2(const uint32_t *cp, size_t pos, size_t end)
{
    return m_llama3_like(cp, pos, end, 1);
}

/* X*Y+ then an optional contraction, from s; end position or 0. */
static size_t gpt4o_xy(const uint32_t *cp, size_t s, size_t end)
{
    size_t j = run(cp, s, end, is_x);
    for (size_t i = j + 1; i-- > s;) {
        if (i < end && is_y(cp[i])) {
            size_t k = run(cp, i, end, is_y);
            return k + contraction(cp, k, end, 1);
        }
    }
    return 0;
}

/* X+Y* then an optional contraction, from s; end position or 0. */
static size_t gpt4o_x(const uint32_t *cp, size_t s, size_t end)
{
    size_t j = run(cp, s, end, is_x);
    if (j == s)
        return 0;
    size_t k = run(cp, j, end, is_y);
    return k + contraction(cp, k, end, 1);
}

/* [^\r\n\p{L}\p{N}]?X*Y+C?|[^\r\n\p{L}\p{N}]?X+Y*C?|\p{N}{1,3}|
** ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
** with X = (?=\p{L})[^a-z], Y = (?=\p{L})[^A-Z], C a contraction
** (llama.cpp's adaptation of the o200k regex). */
static size_t m_gpt4o(const uint32_t *cp, size_t pos, size_t end)
{
    uint32_t c = cp[pos];
    size_t e, n;
    int pre = is_pre_ln(c) && pos + 1 < end;
    if (pre && (e = gpt4o_xy(cp, pos + 1, end)))
        return e - pos;
    if ((e = gpt4o_xy(cp, pos, end)))
        return e - pos;
    if (pre && (e = gpt4o_x(cp, pos + 1, end)))
        return e - pos;
    if ((e = gpt4o_x(cp, pos, end)))
        return e - pos;
    if (is_n(c)) {
        n = run(cp, pos, end, is_n) - pos;
        return n < 3 ? n : 3;
    }
    if ((n = opt_space_run(cp, pos, end, is_other))) {
        size_t i = pos + n;
        while (i < end && (is_crlf(cp[i]) || cp[i] == '/'))
            i++;
        return i - pos;
    }
    return spaces(cp, pos, end, 1, 1);
}

static int is_ascii_punct(uint32_t c)
{
    return c > 0x20 && c < 0x7f && !is_ascii_alpha(c) && !(c >= '0' && c <= '9');
}

/* [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?
** [\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t m_dsv3_words(const uint32_t *cp, size_t pos, size_t end)
{
    uint32_t c = cp[pos];
    size_t n;
    if (is_ascii_punct(c) && pos + 1 < end && is_ascii_alpha(cp[pos + 1]))
        return run(cp, pos + 1, end, is_ascii_alpha) - pos;
    if (is_pre_lps(c) && pos + 1 < end && is_lm(cp[pos + 1]))
        return run(cp, pos + 1, end, is_lm) - pos;
    if (is_lm(c))
        return run(cp, pos, end, is_lm) - pos;
    if ((n = opt_space_run(cp, pos, end, is_ps))) {
        size_t i = pos + n;
        while (i < end && is_crlf(cp[i]))
            i++;
        return i - pos;
    }
    return spaces(cp, pos, end, 1, 1);
}

/* \p{N}{1,3} */
static size_t m_digits3(const uint32_t *cp, size_t pos, size_t end)
{
    size_t n = run(cp, pos, end, is_n) - pos;
    return n < 3 ? n : 3;
}

/* \p{N} */
static size_t m_digit1(const uint32_t *cp, size_t pos, size_t end)
{
    (void)end;
    return is_n(cp[pos]) ? 1 : 0;
}

/* \p{N}+ */
static size_t m_digits(const uint32_t *cp, size_t pos, size_t end)
{
    return run(cp, pos, end, is_n) - pos;
}

static int is_kana_han(uint32_t c)
{
    c = wchr(c);
    return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x3040 && c <= 0x30FF);
}

/* [一-龥぀-ゟ゠-ヿ]+ */
static size_t m_kana_han(const uint32_t *cp, size_t pos, size_t end)
{
    return run(cp, pos, end, is_kana_han) - pos;
}

static int is_default_punct(uint32_t c)
{
    return is_cp(c) || (c < 0x80 && c != 0 && strchr("$+<=>^~|", (int)c) != NULL);
}

/* [\p{P}\$\+<=>\^~\|]+ */
static size_t m_default_punct(const uint32_t *cp, size_t pos, size_t end)
{
    return run(cp, pos, end, is_default_punct) - pos;
}

/* [0-9][0-9][0-9] */
static size_t m_ascii3(const uint32_t *cp, size_t pos, size_t end)
{
    if (pos + 3 > end)
        return 0;
    for (size_t i = pos; i < pos + 3; i++)
        if (cp[i] < '0' || cp[i] > '9')
            return 0;
    return 3;
}

/* [\r\n] */
static size_t m_crlf(const uint32_t *cp, size_t pos, size_t end)
{
    (void)end;
    return is_crlf(cp[pos]) ? 1 : 0;
}

static int is_dsllm_letter(uint32_t c) { return tok_dsllm_letter(wchr(c)); }

static int is_dsllm_punct(uint32_t c)
{
    c = wchr(c);
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x7E) ||
           (c >= 0xFF01 && c <= 0xFF0F) || (c >= 0xFF1A && c <= 0xFF5E) ||
           (c >= 0x2018 && c <= 0x201F) || (c >= 0x3000 && c <= 0x3002);
}

static int is_dsllm_cjk(uint32_t c)
{
    c = wchr(c);
    return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x0800 && c <= 0x4E00) ||
           (c >= 0xAC00 && c <= 0xD7FF);
}

/* \s?C+ over what the wregex path sees */
static size_t ws_opt_run(const uint32_t *cp, size_t pos, size_t end, int (*pred)(uint32_t))
{
    if (is_ws(cp[pos]) && pos + 1 < end && pred(cp[pos + 1]))
        return run(cp, pos + 1, end, pred) - pos;
    if (pred(cp[pos]))
        return run(cp, pos, end, pred) - pos;
    return 0;
}

static size_t m_dsllm_letters(const uint32_t *cp, size_t pos, size_t end)
{
    return ws_opt_run(cp, pos, end, is_dsllm_letter);
}

static size_t m_dsllm_punct(const uint32_t *cp, size_t pos, size_t end)
{
    return ws_opt_run(cp, pos, end, is_dsllm_punct);
}

/* \s+$ */
static size_t m_trailing_ws(const uint32_t *cp, size_t pos, size_t end)
{
    size_t e = run(cp, pos, end, is_ws);
    return (e > pos && e == end) ? e - pos : 0;
}

static size_t m_dsllm_cjk(const uint32_t *cp, size_t pos, size_t end)
{
    return run(cp, pos, end, is_dsllm_cjk) - pos;
}

/* ---- the pre-tokenizers ---------------------------------------------- */

#define TOK_MAX_PASSES 6

static const TokMatchFn k_passes[TOK_PRE_COUNT][TOK_MAX_PASSES + 1] = {
    [TOK_PRE_DEFAULT]      = { m_default_punct, m_gpt2, m_digits, m_ascii3, NULL },
    [TOK_PRE_GPT2]         = { m_gpt2, NULL },
    [TOK_PRE_LLAMA3]       = { m_llama3, NULL },
    [TOK_PRE_QWEN2]        = { m_qwen2, NULL },
    [TOK_PRE_DEEPSEEK_LLM] = { m_crlf, m_dsllm_letters, m_dsllm_punct, m_trailing_ws,
                               m_dsllm_cjk, m_digits, NULL },
    [TOK_PRE_DEEPSEEK3]    = { m_digits3, m_kana_han, m_dsv3_words, NULL },
    [TOK_PRE_GPT4O]        = { m_gpt4o, NULL },
    [TOK_PRE_STARCODER]    = { m_digit1, m_gpt2, NULL },
};

/* Names and the flags llama.cpp (llama-vocab.cpp) gives them. */
static const TokPreInfo k_pres[] = {
    { "default",          TOK_PRE_DEFAULT,      0, 0, 0 },
    { "gpt-2",            TOK_PRE_GPT2,         0, 0, 0 },
    { "phi-2",            TOK_PRE_GPT2,         0, 0, 0 },
    { "gigachat",         TOK_PRE_GPT2,         0, 0, 0 },
    { "a.x-4.0",          TOK_PRE_GPT2,         0, 0, 0 },
    { "mellum",           TOK_PRE_GPT2,         0, 0, 0 },
    { "exaone4",          TOK_PRE_GPT2,         0, 0, 0 },
    { "mpt",              TOK_PRE_GPT2,         0, 0, 0 },
    { "olmo",             TOK_PRE_GPT2,         0, 0, 0 },
    { "gpt-neox",         TOK_PRE_GPT2,         0, 0, 0 },
    { "jais",             TOK_PRE_GPT2,         0, 0, 0 },
    { "trillion",         TOK_PRE_GPT2,         0, 0, 0 },
    { "granite-docling",  TOK_PRE_GPT2,         0, 0, 0 },
    { "llama3",           TOK_PRE_LLAMA3,       1, 1, 0 },
    { "llama-v3",         TOK_PRE_LLAMA3,       1, 1, 0 },
    { "llama-bpe",        TOK_PRE_LLAMA3,       1, 1, 0 },
    { "falcon3",          TOK_PRE_LLAMA3,       1, 1, 0 },
    { "falcon-h1",        TOK_PRE_LLAMA3,       1, 1, 0 },
    { "pixtral",          TOK_PRE_LLAMA3,       1, 1, 0 },
    { "midm-2.0",         TOK_PRE_LLAMA3,       1, 1, 0 },
    { "lfm2",             TOK_PRE_LLAMA3,       1, 1, 0 },
    { "dbrx",             TOK_PRE_LLAMA3,       0, 0, 0 },
    { "smaug-bpe",        TOK_PRE_LLAMA3,       0, 0, 0 },
    { "glm4",             TOK_PRE_LLAMA3,       0, 0, 1 },
    { "chatglm-bpe",      TOK_PRE_LLAMA3,       0, 0, 1 },
    { "qwen2",            TOK_PRE_QWEN2,        0, 0, 0 },
    { "deepseek-r1-qwen", TOK_PRE_QWEN2,        0, 0, 0 },
    { "megrez",           TOK_PRE_QWEN2,        0, 0, 0 },
    { "stablelm2",        TOK_PRE_QWEN2,        0, 0, 0 },
    { "hunyuan",          TOK_PRE_QWEN2,        0, 0, 0 },
    { "grok-2",           TOK_PRE_QWEN2,        0, 0, 0 },
    { "deepseek-llm",     TOK_PRE_DEEPSEEK_LLM, 0, 0, 0 },
    { "deepseek-v3",      TOK_PRE_DEEPSEEK3,    0, 0, 0 },
    { "hunyuan-dense",    TOK_PRE_DEEPSEEK3,    0, 0, 0 },
    { "gpt-4o",           TOK_PRE_GPT4O,        0, 0, 0 },
    { "llama4",           TOK_PRE_GPT4O,        0, 0, 0 },
    { "minimax-m2",       TOK_PRE_GPT4O,        0, 0, 0 },
    { "starcoder",        TOK_PRE_STARCODER,    0, 0, 0 },
    { "refact",           TOK_PRE_STARCODER,    0, 0, 0 },
    { "command-r",        TOK_PRE_STARCODER,    0, 0, 0 },
    { "smollm",           TOK_PRE_STARCODER,    0, 0, 0 },
    { "codeshell",        TOK_PRE_STARCODER,    0, 0, 0 },
    { "exaone",           TOK_PRE_STARCODER,    0, 0, 0 },
    { "minerva-7b",       TOK_PRE_STARCODER,    0, 0, 0 },
};

const TokPreInfo *tok_pre_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof k_pres / sizeof k_pres[0]; i++)
        if (strlen(k_pres[i].name) == len && memcmp(k_pres[i].name, name, len) == 0)
            return &k_pres[i];
    return NULL;
}

void tok_pre_names(char *buf, size_t cap)
{
    size_t used = 0;
    if (cap == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof k_pres / sizeof k_pres[0]; i++) {
        int w = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", k_pres[i].name);
        if (w < 0 || (size_t)w >= cap - used)
            return;
        used += (size_t)w;
    }
}

/* ---- the driver ------------------------------------------------------- */

typedef struct { size_t *a; size_t n, cap; } SizeVec;

static int vec_push(SizeVec *v, size_t x)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        size_t *a = realloc(v->a, cap * sizeof *a);
        if (!a)
            return -1;
        v->a = a;
        v->cap = cap;
    }
    v->a[v->n++] = x;
    return 0;
}

/* One regex over every current word: matches and the gaps between them. */
static int split_pass(TokMatchFn m, const uint32_t *cp, const SizeVec *in, SizeVec *out)
{
    size_t beg = 0;
    out->n = 0;
    for (size_t w = 0; w < in->n; w++) {
        size_t end = beg + in->a[w], gap = beg, pos = beg;
        while (pos < end) {
            size_t n = m(cp, pos, end);
            if (n == 0) {
                pos++;
                continue;
            }
            if (pos > gap && vec_push(out, pos - gap) < 0)
                return -1;
            if (vec_push(out, n) < 0)
                return -1;
            pos += n;
            gap = pos;
        }
        if (end > gap && vec_push(out, end - gap) < 0)
            return -1;
        beg = end;
    }
    return 0;
}

long tok_pre_split(TokPreKind kind, const uint32_t *cp, size_t n, size_t **lens)
{
    SizeVec a = { 0 }, b = { 0 };
    *lens = NULL;
    if (kind < 0 || kind >= TOK_PRE_COUNT)
        return -1;
    if (n > 0 && vec_push(&a, n) < 0)
        return -1;
    for (const TokMatchFn *m = k_passes[kind]; *m; m++) {
        if (split_pass(*m, cp, &a, &b) < 0) {
            free(a.a);
            free(b.a);
            return -1;
        }
        SizeVec t = a;
        a = b;
        b = t;
    }
    free(b.a);
    *lens = a.a;
    return (long)a.n;
}
