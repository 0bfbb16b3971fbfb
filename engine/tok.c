/*
** engine/tok.c — llama.cpp's SPM and byte-level BPE tokenizers in C.
**
** The vocabulary (tokenizer.ggml.tokens / scores / token_type / merges) is
** copied out of the GGUF file into one text blob with offsets, and indexed
** by two open-addressing hash tables: token text -> id and merge pair ->
** rank.  Everything read from the file is checked first (array types and
** lengths, ids in range, duplicate tokens); a bad file gives an error naming
** the key, never a crash.
**
** Encoding follows llama_vocab::impl::tokenize():
**   1. partition the text around special tokens (longest first), the way
**      tokenizer_st_partition() does: USER_DEFINED tokens always, CONTROL and
**      UNKNOWN ones only with parse_special;
**   2. SPM: each text fragment gets a leading space when it is the first
**      thing or follows a special token (add_space_prefix), spaces become
**      U+2581, then score-driven bigram merges over UTF-8 characters with
**      byte fallback to <0xNN>;
**      BPE: the pre-tokenizer (engine/tok_pre.c) cuts the fragment into
**      words, each word is mapped byte -> GPT-2 unicode alphabet and merged
**      by rank;
**   3. BOS/EOS around it when add_special asks and the file says so.
** Token attributes, EOG ids and the few name-based fix-ups (o200k's
** <|channel|> etc. as USER_DEFINED, phi-3's RSTRIP) are llama.cpp's.
*/
#include "engine/tok.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tok_pre.h"

/* llama.cpp's token attributes (llama_token_attr). */
enum {
    ATTR_UNKNOWN = 1 << 0,
    ATTR_UNUSED = 1 << 1,
    ATTR_NORMAL = 1 << 2,
    ATTR_CONTROL = 1 << 3,
    ATTR_USER_DEFINED = 1 << 4,
    ATTR_BYTE = 1 << 5,
    ATTR_LSTRIP = 1 << 7,
    ATTR_RSTRIP = 1 << 8,
};

#define TOK_MAX_VOCAB (1 << 24)
#define TOK_MAX_TEXT  (1u << 16)    /* bytes in one token's text */

typedef struct {
    uint32_t loff, llen, roff, rlen;    /* left and right parts in mblob */
} TokMerge;

struct EngTok {
    EngTokKind kind;
    const TokPreInfo *pre;          /* NULL for SPM */
    int n;                          /* vocabulary size */
    char *blob;                     /* all token texts */
    size_t *off;                    /* (n+1) offsets into blob */
    float *score;                   /* (n) */
    uint16_t *attr;                 /* (n) ATTR_* */
    uint8_t *eog;                   /* (n) 1 if end of generation */
    uint32_t *slot;                 /* text -> id+1, nslot entries */
    size_t nslot;
    char *mblob;                    /* merge texts */
    TokMerge *merge;                /* (nmerge) rank = index */
    uint32_t *mslot;                /* pair -> rank+1 */
    size_t nmerge, nmslot;
    int32_t *special;               /* special-token cache, longest first */
    int nspecial;
    int bos, eos, unk;
    int add_bos, add_eos, add_space_prefix, ignore_merges;
    char byte_enc[256][3];          /* GPT-2 byte -> UTF-8 of its stand-in */
    int16_t byte_dec[0x144];        /* stand-in codepoint -> byte, or -1 */
};

/* ---- small helpers ---------------------------------------------------- */

static void tok_err(EngErr *err, EngStatus st, const char *fmt, ...)
{
    if (!err)
        return;
    err->status = st;
    err->detail = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

static uint64_t hash_bytes(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#define HASH_SEED 0xcbf29ce484222325ULL

static size_t table_size(size_t n)
{
    size_t s = 16;
    while (s < 2 * n)
        s <<= 1;
    return s;
}

static const char *tok_text(const EngTok *t, int id, size_t *len)
{
    *len = t->off[id + 1] - t->off[id];
    return t->blob + t->off[id];
}

/* Token id of exactly these bytes, or -1. */
static int lookup(const EngTok *t, const char *s, size_t n)
{
    size_t mask = t->nslot - 1;
    for (size_t i = hash_bytes(HASH_SEED, s, n) & mask;; i = (i + 1) & mask) {
        uint32_t v = t->slot[i];
        if (v == 0)
            return -1;
        size_t len;
        const char *txt = tok_text(t, (int)v - 1, &len);
        if (len == n && memcmp(txt, s, n) == 0)
            return (int)v - 1;
    }
}

static uint64_t pair_hash(const char *l, size_t ln, const char *r, size_t rn)
{
    uint64_t h = hash_bytes(HASH_SEED, l, ln);
    h = hash_bytes(h ^ 0xff, "\x01", 1);
    return hash_bytes(h, r, rn);
}

/* Rank of the merge (l, r), or -1. */
static int merge_rank(const EngTok *t, const char *l, size_t ln, const char *r, size_t rn)
{
    if (t->nmslot == 0)
        return -1;
    size_t mask = t->nmslot - 1;
    for (size_t i = pair_hash(l, ln, r, rn) & mask;; i = (i + 1) & mask) {
        uint32_t v = t->mslot[i];
        if (v == 0)
            return -1;
        const TokMerge *m = &t->merge[v - 1];
        if (m->llen == ln && m->rlen == rn && memcmp(t->mblob + m->loff, l, ln) == 0 &&
            memcmp(t->mblob + m->roff, r, rn) == 0)
            return (int)v - 1;
    }
}

/* UTF-8 byte count announced by a lead byte (llama.cpp's unicode_len_utf8). */
static size_t utf8_len(unsigned char c)
{
    static const unsigned char k[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
    return k[c >> 4];
}

static size_t utf8_put(uint32_t cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decode one codepoint like llama.cpp's unicode_cpt_from_utf8: an invalid
** sequence consumes one byte and gives U+FFFD; so does a value past
** U+10FFFF (which llama.cpp could not encode back). */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *i)
{
    size_t p = *i;
    unsigned c = s[p];
    uint32_t cp;
    size_t k;
    if (c < 0x80) {
        *i = p + 1;
        return c;
    }
    if (!(c & 0x40))
        goto bad;
    if (!(c & 0x20)) {
        k = 2;
        cp = c & 0x1f;
    } else if (!(c & 0x10)) {
        k = 3;
        cp = c & 0x0f;
    } else if (!(c & 0x08)) {
        k = 4;
        cp = c & 0x07;
    } else {
        goto bad;
    }
    if (p + k > n)
        goto bad;
    for (size_t j = 1; j < k; j++) {
        if ((s[p + j] & 0xc0) != 0x80)
            goto bad;
        cp = (cp << 6) | (s[p + j] & 0x3f);
    }
    *i = p + k;
    return cp > 0x10FFFF ? 0xFFFD : cp;
bad:
    *i = p + 1;
    return 0xFFFD;
}

/* ---- growable buffers ------------------------------------------------- */

typedef struct { int32_t *a; size_t n, cap; } IdVec;

static int ids_push(IdVec *v, int32_t id)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        int32_t *a = realloc(v->a, cap * sizeof *a);
        if (!a)
            return -1;
        v->a = a;
        v->cap = cap;
    }
    v->a[v->n++] = id;
    return 0;
}

/* ---- binary heap of bigrams (SPM and BPE share it) --------------------- */

typedef struct {
    float score;        /* SPM: higher first */
    int rank;           /* BPE: lower first */
    int left, right;
    size_t size;
} Bigram;

typedef struct { Bigram *a; size_t n, cap; int spm; } Heap;

/* 1 if a comes out before b */
static int bigram_before(const Heap *h, const Bigram *a, const Bigram *b)
{
    if (h->spm) {
        if (a->score != b->score)
            return a->score > b->score;
    } else if (a->rank != b->rank) {
        return a->rank < b->rank;
    }
    return a->left < b->left;
}

static int heap_push(Heap *h, Bigram b)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        Bigram *a = realloc(h->a, cap * sizeof *a);
        if (!a)
            return -1;
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    h->a[i] = b;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_before(h, &h->a[i], &h->a[p]))
            break;
        Bigram t = h->a[i];
        h->a[i] = h->a[p];
        h->a[p] = t;
        i = p;
    }
    return 0;
}

static Bigram heap_pop(Heap *h)
{
    Bigram top = h->a[0];
    h->a[0] = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && bigram_before(h, &h->a[l], &h->a[m]))
            m = l;
        if (r < h->n && bigram_before(h, &h->a[r], &h->a[m]))
            m = r;
        if (m == i)
            break;
        Bigram t = h->a[i];
        h->a[i] = h->a[m];
        h->a[m] = t;
        i = m;
    }
    return top;
}

typedef struct { int prev, next; size_t off, n; } Sym;

/* Split s into UTF-8 characters (a truncated one keeps what is left). */
static Sym *split_chars(const char *s, size_t n, int *nsym)
{
    Sym *sym = malloc((n ? n : 1) * sizeof *sym);
    if (!sym)
        return NULL;
    int k = 0;
    for (size_t off = 0; off < n;) {
        size_t len = utf8_len((unsigned char)s[off]);
        if (len > n - off)
            len = n - off;
        sym[k].off = off;
        sym[k].n = len;
        sym[k].prev = k - 1;
        off += len;
        sym[k].next = off == n ? -1 : k + 1;
        k++;
    }
    *nsym = k;
    return sym;
}

/* Unlink right from the chain after merging it into left. */
static void merge_syms(Sym *sym, int left, int right)
{
    sym[left].n += sym[right].n;
    sym[right].n = 0;
    sym[left].next = sym[right].next;
    if (sym[right].next >= 0)
        sym[sym[right].next].prev = left;
}

/* ---- SPM ---------------------------------------------------------------- */

static int spm_try_bigram(const EngTok *t, const char *s, Sym *sym, Heap *h, int l, int r)
{
    if (l < 0 || r < 0)
        return 0;
    size_t n = sym[l].n + sym[r].n;
    int id = lookup(t, s + sym[l].off, n);
    if (id < 0)
        return 0;
    Bigram b = { .score = t->score[id], .left = l, .right = r, .size = n };
    return heap_push(h, b);
}

/* The token for one byte: <0xNN>, else the byte itself, else <unk>. */
static int spm_byte_token(const EngTok *t, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";
    char buf[6] = { '<', '0', 'x', hex[c >> 4], hex[c & 15], '>' };
    int id = lookup(t, buf, 6);
    if (id < 0)
        id = lookup(t, (const char *)&c, 1);
    if (id < 0)
        id = t->unk;
    return id;
}

/* The merge loop both tokenizers share: seed the heap with every adjacent
** pair, then merge the best pair (SPM: highest score; BPE: lowest rank, as
** try_bigram ranks them) while one is left, skipping pairs a merge made
** stale, and offer the merged symbol's new neighbours.  -1 when out of
** memory. */
typedef int (*TryBigram)(const EngTok *t, const char *s, Sym *sym, Heap *h, int l, int r);

static int merge_all(const EngTok *t, const char *s, Sym *sym, int nsym, Heap *h, TryBigram try)
{
    for (int i = 1; i < nsym; i++)
        if (try(t, s, sym, h, i - 1, i) < 0)
            return -1;
    while (h->n > 0) {
        Bigram b = heap_pop(h);
        Sym *l = &sym[b.left], *r = &sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue;
        merge_syms(sym, b.left, b.right);
        if (try(t, s, sym, h, sym[b.left].prev, b.left) < 0 ||
            try(t, s, sym, h, b.left, sym[b.left].next) < 0)
            return -1;
    }
    return 0;
}

static int spm_encode(const EngTok *t, const char *s, size_t n, IdVec *out, EngErr *err)
{
    int nsym = 0, rc = -1;
    Heap h = { .spm = 1 };
    Sym *sym = split_chars(s, n, &nsym);
    if (!sym)
        goto oom;
    if (merge_all(t, s, sym, nsym, &h, spm_try_bigram) < 0)
        goto oom;
    for (int i = nsym ? 0 : -1; i != -1; i = sym[i].next) {
        int id = lookup(t, s + sym[i].off, sym[i].n);
        if (id >= 0) {
            if (ids_push(out, id) < 0)
                goto oom;
            continue;
        }
        for (size_t j = 0; j < sym[i].n; j++) {
            id = spm_byte_token(t, (unsigned char)s[sym[i].off + j]);
            if (id < 0) {
                tok_err(err, ENG_E_MODEL, "tokenizer: no token for byte 0x%02X "
                        "(no <0x%02X> piece and no unknown token)",
                        (unsigned char)s[sym[i].off + j], (unsigned char)s[sym[i].off + j]);
                goto done;
            }
            if (ids_push(out, id) < 0)
                goto oom;
        }
    }
    rc = 0;
    goto done;
oom:
    tok_err(err, ENG_E_NOMEM, "tokenizer: out of memory");
done:
    free(sym);
    free(h.a);
    return rc;
}

/* One raw fragment: optional space prefix, ' ' -> U+2581, then SPM. */
static int spm_fragment(const EngTok *t, const char *s, size_t n, int prefix, IdVec *out,
                        EngErr *err)
{
    size_t spaces = prefix ? 1 : 0;
    for (size_t i = 0; i < n; i++)
        spaces += s[i] == ' ';
    if (n > (SIZE_MAX - 3) / 3) {
        tok_err(err, ENG_E_ARG, "tokenizer: text too long (%zu bytes)", n);
        return -1;
    }
    char *buf = malloc(n + 2 * spaces + 1);
    if (!buf) {
        tok_err(err, ENG_E_NOMEM, "tokenizer: out of memory");
        return -1;
    }
    size_t k = 0;
    if (prefix) {
        memcpy(buf, "\xe2\x96\x81", 3);
        k = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(buf + k, "\xe2\x96\x81", 3);
            k += 3;
        } else {
            buf[k++] = s[i];
        }
    }
    int rc = spm_encode(t, buf, k, out, err);
    free(buf);
    return rc;
}

/* ---- BPE ---------------------------------------------------------------- */

static int bpe_try_bigram(const EngTok *t, const char *s, Sym *sym, Heap *h, int l, int r)
{
    if (l < 0 || r < 0)
        return 0;
    int rank = merge_rank(t, s + sym[l].off, sym[l].n, s + sym[r].off, sym[r].n);
    if (rank < 0)
        return 0;
    Bigram b = { .rank = rank, .left = l, .right = r, .size = sym[l].n + sym[r].n };
    return heap_push(h, b);
}

/* BPE over one word already in the byte-level alphabet. */
static int bpe_word(const EngTok *t, const char *s, size_t n, IdVec *out)
{
    if (t->ignore_merges) {
        int id = lookup(t, s, n);
        if (id >= 0)
            return ids_push(out, id);
    }
    int nsym = 0, rc = -1;
    Heap h = { .spm = 0 };
    Sym *sym = split_chars(s, n, &nsym);
    if (!sym)
        return -1;
    if (merge_all(t, s, sym, nsym, &h, bpe_try_bigram) < 0)
        goto done;
    for (int i = 0; i < nsym; i++) {
        if (sym[i].n == 0)
            continue;
        int id = lookup(t, s + sym[i].off, sym[i].n);
        if (id >= 0) {
            if (ids_push(out, id) < 0)
                goto done;
            continue;
        }
        /* llama.cpp: each byte of the piece as a one-byte token, if any */
        for (size_t j = 0; j < sym[i].n; j++) {
            id = lookup(t, s + sym[i].off + j, 1);
            if (id >= 0 && ids_push(out, id) < 0)
                goto done;
        }
    }
    rc = 0;
done:
    free(sym);
    free(h.a);
    return rc;
}

static int bpe_fragment(const EngTok *t, const char *s, size_t n, IdVec *out, EngErr *err)
{
    uint32_t *cp = malloc((n ? n : 1) * sizeof *cp);
    size_t *lens = NULL, ncp = 0;
    char *word = NULL;
    int rc = -1;
    if (!cp)
        goto oom;
    for (size_t i = 0; i < n;)
        cp[ncp++] = utf8_next((const unsigned char *)s, n, &i);
    long nw = tok_pre_split(t->pre->kind, cp, ncp, &lens);
    if (nw < 0)
        goto oom;
    size_t maxw = 0;
    for (long w = 0; w < nw; w++)
        if (lens[w] > maxw)
            maxw = lens[w];
    word = malloc(maxw * 8 + 1);        /* 4 UTF-8 bytes, 2 bytes each */
    if (!word)
        goto oom;
    size_t beg = 0;
    for (long w = 0; w < nw; w++) {
        size_t k = 0;
        for (size_t i = beg; i < beg + lens[w]; i++) {
            char u[4];
            size_t m = utf8_put(cp[i], u);
            for (size_t j = 0; j < m; j++) {
                const char *e = t->byte_enc[(unsigned char)u[j]];
                size_t el = strlen(e);
                memcpy(word + k, e, el);
                k += el;
            }
        }
        beg += lens[w];
        if (bpe_word(t, word, k, out) < 0)
            goto oom;
    }
    rc = 0;
    goto done;
oom:
    tok_err(err, ENG_E_NOMEM, "tokenizer: out of memory");
done:
    free(cp);
    free(lens);
    free(word);
    return rc;
}

/* ---- special-token partition ------------------------------------------- */

/* First occurrence of needle (nn > 0 bytes) in hay, or NULL. */
static const char *find_bytes(const char *hay, size_t hn, const char *needle, size_t nn)
{
    while (hn >= nn) {
        const char *p = memchr(hay, needle[0], hn - nn + 1);
        if (!p)
            return NULL;
        if (memcmp(p, needle, nn) == 0)
            return p;
        hn -= (size_t)(p - hay) + 1;
        hay = p + 1;
    }
    return NULL;
}

typedef struct { int32_t tok; size_t off, len; } Frag;    /* tok -1: raw text */
typedef struct { Frag *a; size_t n, cap; } FragVec;

static int frag_push(FragVec *v, int32_t tok, size_t off, size_t len)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        Frag *a = realloc(v->a, cap * sizeof *a);
        if (!a)
            return -1;
        v->a = a;
        v->cap = cap;
    }
    v->a[v->n++] = (Frag){ tok, off, len };
    return 0;
}

/* Split every raw fragment of in around occurrences of token id into out. */
static int partition_one(const EngTok *t, int id, const char *text, const FragVec *in,
                         FragVec *out)
{
    size_t slen;
    const char *stxt = tok_text(t, id, &slen);
    int lstrip = (t->attr[id] & ATTR_LSTRIP) != 0, rstrip = (t->attr[id] & ATTR_RSTRIP) != 0;
    out->n = 0;
    for (size_t f = 0; f < in->n; f++) {
        Frag fr = in->a[f];
        if (fr.tok >= 0) {
            if (frag_push(out, fr.tok, 0, 0) < 0)
                return -1;
            continue;
        }
        size_t base = fr.off, blen = fr.len;
        for (;;) {
            const char *m = find_bytes(text + base, blen, stxt, slen);
            if (!m) {
                if (blen > 0 && frag_push(out, -1, base, blen) < 0)
                    return -1;
                break;
            }
            size_t mpos = (size_t)(m - text), llen = mpos - base;
            if (lstrip)
                while (llen > 0 && isspace((unsigned char)text[base + llen - 1]))
                    llen--;
            if (llen > 0 && frag_push(out, -1, base, llen) < 0)
                return -1;
            if (frag_push(out, id, 0, 0) < 0)
                return -1;
            size_t roff = mpos + slen, rlen = base + blen - roff;
            if (rlen == 0)
                break;
            if (rstrip)
                while (rlen > 0 && isspace((unsigned char)text[roff])) {
                    roff++;
                    rlen--;
                }
            base = roff;
            blen = rlen;
        }
    }
    return 0;
}

static int partition(const EngTok *t, const char *text, size_t len, int parse_special,
                     FragVec *frags)
{
    FragVec tmp = { 0 };
    frags->n = 0;
    if (len == 0)
        return 0;
    if (frag_push(frags, -1, 0, len) < 0)
        return -1;
    for (int k = 0; k < t->nspecial; k++) {
        int id = t->special[k];
        if (!parse_special && (t->attr[id] & (ATTR_CONTROL | ATTR_UNKNOWN)))
            continue;
        if (partition_one(t, id, text, frags, &tmp) < 0) {
            free(tmp.a);
            return -1;
        }
        FragVec s = *frags;
        *frags = tmp;
        tmp = s;
    }
    free(tmp.a);
    return 0;
}

/* ---- public: encode ---------------------------------------------------- */

int eng_tok_encode(const EngTok *t, const char *text, size_t len, int add_special,
                   int parse_special, int32_t *out, int cap, EngErr *err)
{
    IdVec ids = { 0 };
    FragVec frags = { 0 };
    int rc = -1;
    if (!t || (!text && len > 0) || cap < 0 || (cap > 0 && !out)) {
        tok_err(err, ENG_E_ARG, "eng_tok_encode: bad argument (tokenizer %p, text %p, "
                "len %zu, out %p, cap %d)", (const void *)t, (const void *)text, len,
                (void *)out, cap);
        return -1;
    }
    if (partition(t, text, len, parse_special, &frags) < 0) {
        tok_err(err, ENG_E_NOMEM, "tokenizer: out of memory");
        goto done;
    }
    if (add_special && t->add_bos && ids_push(&ids, t->bos) < 0)
        goto oom;
    int prev_special = 1;
    for (size_t f = 0; f < frags.n; f++) {
        const Frag *fr = &frags.a[f];
        if (fr->tok >= 0) {
            if (ids_push(&ids, fr->tok) < 0)
                goto oom;
            prev_special = 1;
            continue;
        }
        int r = t->kind == ENG_TOK_SPM
            ? spm_fragment(t, text + fr->off, fr->len, t->add_space_prefix && prev_special,
                           &ids, err)
            : bpe_fragment(t, text + fr->off, fr->len, &ids, err);
        if (r < 0)
            goto done;
        prev_special = 0;
    }
    if (add_special && t->add_eos && ids_push(&ids, t->eos) < 0)
        goto oom;
    if (ids.n > (size_t)INT32_MAX) {
        tok_err(err, ENG_E_ARG, "tokenizer: text gives %zu tokens (more than an int holds)",
                ids.n);
        goto done;
    }
    size_t ncopy = ids.n < (size_t)cap ? ids.n : (size_t)cap;
    if (ncopy > 0)
        memcpy(out, ids.a, ncopy * sizeof *out);
    rc = (int)ids.n;
    goto done;
oom:
    tok_err(err, ENG_E_NOMEM, "tokenizer: out of memory");
done:
    free(ids.a);
    free(frags.a);
    return rc;
}

/* ---- public: accessors and detokenization ----------------------------- */

int eng_tok_n_vocab(const EngTok *t) { return t->n; }
EngTokKind eng_tok_kind(const EngTok *t) { return t->kind; }
const char *eng_tok_pre(const EngTok *t) { return t->pre ? t->pre->name : ""; }
int eng_tok_bos(const EngTok *t) { return t->bos; }
int eng_tok_eos(const EngTok *t) { return t->eos; }
int eng_tok_add_bos(const EngTok *t) { return t->add_bos; }

int eng_tok_is_eog(const EngTok *t, int32_t id)
{
    return id >= 0 && id < t->n && t->eog[id];
}

const char *eng_tok_str(const EngTok *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n) {
        if (len)
            *len = 0;
        return NULL;
    }
    size_t n;
    const char *s = tok_text(t, id, &n);
    if (len)
        *len = n;
    return s;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Append bytes to buf within cap; returns the new total. */
static int put_bytes(char *buf, int cap, int total, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++, total++)
        if (total < cap)
            buf[total] = s[i];
    return total;
}

int eng_tok_to_bytes(const EngTok *t, int32_t id, char *buf, int cap)
{
    if (id < 0 || id >= t->n)
        return 0;
    if (!buf)
        cap = 0;
    unsigned a = t->attr[id];
    size_t n;
    const char *s = tok_text(t, id, &n);
    int total = 0;
    if (a & (ATTR_CONTROL | ATTR_UNKNOWN))
        return 0;
    if (a & ATTR_USER_DEFINED)
        return put_bytes(buf, cap, 0, s, n);
    if (a & ATTR_NORMAL) {
        if (t->kind == ENG_TOK_SPM) {
            for (size_t i = 0; i < n;) {
                if (n - i >= 3 && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                    total = put_bytes(buf, cap, total, " ", 1);
                    i += 3;
                } else {
                    total = put_bytes(buf, cap, total, s + i, 1);
                    i++;
                }
            }
            return total;
        }
        for (size_t i = 0; i < n;) {
            size_t p = i;
            uint32_t cp = utf8_next((const unsigned char *)s, n, &i);
            if (cp < 0x144 && t->byte_dec[cp] >= 0) {
                char b = (char)t->byte_dec[cp];
                total = put_bytes(buf, cap, total, &b, 1);
            } else {
                total = put_bytes(buf, cap, total, s + p, i - p);
            }
        }
        return total;
    }
    if (a & ATTR_BYTE) {
        /* <0xNN>: up to two hex digits from the fourth character */
        int v = 0;
        for (size_t i = 3; i < n && i < 5 && hexval(s[i]) >= 0; i++)
            v = v * 16 + hexval(s[i]);
        char b = (char)v;
        return put_bytes(buf, cap, 0, &b, 1);
    }
    return 0;
}

/* ---- loading ----------------------------------------------------------- */

void eng_tok_free(EngTok *t)
{
    if (!t)
        return;
    free(t->blob);
    free(t->off);
    free(t->score);
    free(t->attr);
    free(t->eog);
    free(t->slot);
    free(t->mblob);
    free(t->merge);
    free(t->mslot);
    free(t->special);
    free(t);
}

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves,
** the other 68 map to U+0100.. in byte order. */
static void init_byte_map(EngTok *t)
{
    int next = 256;
    for (int i = 0; i < 0x144; i++)
        t->byte_dec[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        int cp = keep ? b : next++;
        char u[4];
        size_t m = utf8_put((uint32_t)cp, u);
        memcpy(t->byte_enc[b], u, m);
        t->byte_enc[b][m] = '\0';
        t->byte_dec[cp] = (int16_t)b;
    }
}

/* An array key of n_min or more elements of an accepted type; NULL when
** missing (*bad = 0) or wrong (*bad = 1, err filled). */
static const GgufKV *get_array(const Gguf *g, const char *key, int want_str, int want_num,
                               uint64_t n_min, int *bad, EngErr *err)
{
    const GgufKV *kv = gguf_find(g, key);
    *bad = 0;
    if (!kv)
        return NULL;
    int ok = kv->type == GGUF_TYPE_ARRAY;
    if (ok && want_str)
        ok = kv->arr_type == GGUF_TYPE_STRING;
    if (ok && want_num == 1)      /* scores: f32 or i32 */
        ok = kv->arr_type == GGUF_TYPE_FLOAT32 || kv->arr_type == GGUF_TYPE_INT32;
    if (ok && want_num == 2)      /* token types: an integer type */
        ok = kv->arr_type <= GGUF_TYPE_INT32 || kv->arr_type == GGUF_TYPE_UINT64 ||
             kv->arr_type == GGUF_TYPE_INT64;
    if (ok && want_num == 2)
        ok = kv->arr_type != GGUF_TYPE_FLOAT32;
    if (!ok) {
        *bad = 1;
        tok_err(err, ENG_E_FORMAT, "%s: type %s%s%s, expected an array of %s", key,
                gguf_type_name(kv->type), kv->type == GGUF_TYPE_ARRAY ? " of " : "",
                kv->type == GGUF_TYPE_ARRAY ? gguf_type_name(kv->arr_type) : "",
                want_str ? "strings" : want_num == 1 ? "float32 or int32" : "integers");
        return NULL;
    }
    if (kv->n < n_min) {
        *bad = 1;
        tok_err(err, ENG_E_FORMAT, "%s: %llu entries for %llu tokens, expected at least %llu",
                key, (unsigned long long)kv->n, (unsigned long long)n_min,
                (unsigned long long)n_min);
        return NULL;
    }
    return kv;
}

static int load_tokens(EngTok *t, const Gguf *g, EngErr *err)
{
    int bad;
    const GgufKV *kv = get_array(g, "tokenizer.ggml.tokens", 1, 0, 0, &bad, err);
    if (!kv) {
        if (!bad)
            tok_err(err, ENG_E_MODEL, "tokenizer.ggml.tokens: missing (no vocabulary)");
        return -1;
    }
    if (kv->n == 0 || kv->n > TOK_MAX_VOCAB) {
        tok_err(err, ENG_E_FORMAT, "tokenizer.ggml.tokens: %llu tokens, expected 1..%d",
                (unsigned long long)kv->n, TOK_MAX_VOCAB);
        return -1;
    }
    t->n = (int)kv->n;
    size_t total = 0;
    for (int i = 0; i < t->n; i++) {
        uint64_t len = kv->strs[i].len;
        if (len > TOK_MAX_TEXT) {
            tok_err(err, ENG_E_FORMAT, "tokenizer.ggml.tokens[%d]: %llu bytes long, expected "
                    "at most %u", i, (unsigned long long)len, TOK_MAX_TEXT);
            return -1;
        }
        total += len ? len : 32;
    }
    t->blob = malloc(total);
    t->off = malloc(((size_t)t->n + 1) * sizeof *t->off);
    t->score = calloc((size_t)t->n, sizeof *t->score);
    t->attr = malloc((size_t)t->n * sizeof *t->attr);
    t->eog = calloc((size_t)t->n, 1);
    t->nslot = table_size((size_t)t->n);
    t->slot = calloc(t->nslot, sizeof *t->slot);
    if (!t->blob || !t->off || !t->score || !t->attr || !t->eog || !t->slot) {
        tok_err(err, ENG_E_NOMEM, "tokenizer: out of memory for %d tokens", t->n);
        return -1;
    }
    size_t pos = 0;
    for (int i = 0; i < t->n; i++) {
        t->off[i] = pos;
        if (kv->strs[i].len == 0) {     /* llama.cpp names empty tokens */
            pos += (size_t)snprintf(t->blob + pos, 32, "[EMPTY_%d]", i);
        } else {
            memcpy(t->blob + pos, kv->strs[i].ptr, kv->strs[i].len);
            pos += kv->strs[i].len;
        }
        t->attr[i] = ATTR_NORMAL;
    }
    t->off[t->n] = pos;
    size_t mask = t->nslot - 1;
    for (int i = 0; i < t->n; i++) {
        size_t len;
        const char *s = tok_text(t, i, &len);
        int dup = lookup(t, s, len);
        if (dup >= 0) {
            tok_err(err, ENG_E_FORMAT, "tokenizer.ggml.tokens: duplicate token '%.*s' at ids "
                    "%d and %d", (int)(len > 64 ? 64 : len), s, dup, i);
            return -1;
        }
        size_t h = hash_bytes(HASH_SEED, s, len) & mask;
        while (t->slot[h])
            h = (h + 1) & mask;
        t->slot[h] = (uint32_t)i + 1;
    }

    const GgufKV *sc = get_array(g, "tokenizer.ggml.scores", 0, 1, (uint64_t)t->n, &bad, err);
    if (bad)
        return -1;
    for (int i = 0; sc && i < t->n; i++)
        t->score[i] = (float)gguf_arr_float(sc, (uint64_t)i);

    const GgufKV *ty = get_array(g, "tokenizer.ggml.token_type", 0, 2, (uint64_t)t->n, &bad, err);
    if (bad)
        return -1;
    for (int i = 0; ty && i < t->n; i++) {
        switch (gguf_arr_int(ty, (uint64_t)i)) {
        case 1: t->attr[i] = ATTR_NORMAL; break;
        case 2: t->attr[i] = ATTR_UNKNOWN; break;
        case 3: t->attr[i] = ATTR_CONTROL; break;
        case 4: t->attr[i] = ATTR_USER_DEFINED; break;
        case 5: t->attr[i] = ATTR_UNUSED; break;
        case 6: t->attr[i] = ATTR_BYTE; break;
        default: t->attr[i] = 0; break;     /* undefined: never printed */
        }
    }
    return 0;
}

static int load_merges(EngTok *t, const Gguf *g, EngErr *err)
{
    int bad;
    const GgufKV *kv = get_array(g, "tokenizer.ggml.merges", 1, 0, 0, &bad, err);
    if (!kv) {
        if (!bad)
            tok_err(err, ENG_E_MODEL, "tokenizer.ggml.merges: missing (a gpt2 tokenizer needs "
                    "its BPE merges)");
        return -1;
    }
    if (kv->n > TOK_MAX_VOCAB * 4ULL) {
        tok_err(err, ENG_E_FORMAT, "tokenizer.ggml.merges: %llu entries, expected at most %llu",
                (unsigned long long)kv->n, TOK_MAX_VOCAB * 4ULL);
        return -1;
    }
    size_t total = 0;
    for (uint64_t i = 0; i < kv->n; i++) {
        if (kv->strs[i].len > TOK_MAX_TEXT) {
            tok_err(err, ENG_E_FORMAT, "tokenizer.ggml.merges[%llu]: %llu bytes long, expected "
                    "at most %u", (unsigned long long)i, (unsigned long long)kv->strs[i].len,
                    TOK_MAX_TEXT);
            return -1;
        }
        total += kv->strs[i].len;
    }
    t->mblob = malloc(total ? total : 1);
    t->merge = malloc((kv->n ? kv->n : 1) * sizeof *t->merge);
    t->nmslot = table_size(kv->n);
    t->mslot = calloc(t->nmslot, sizeof *t->mslot);
    if (!t->mblob || !t->merge || !t->mslot) {
        tok_err(err, ENG_E_NOMEM, "tokenizer: out of memory for %llu merges",
                (unsigned long long)kv->n);
        return -1;
    }
    size_t pos = 0, mask = t->nmslot - 1;
    for (uint64_t i = 0; i < kv->n; i++) {
        const char *s = kv->strs[i].ptr;
        size_t len = kv->strs[i].len, sp;
        /* "left right", split at the first space after the first byte (as
        ** llama.cpp does); a line without one can never match, so it keeps
        ** its rank slot but enters no table */
        const char *p = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        TokMerge *m = &t->merge[t->nmerge++];
        memcpy(t->mblob + pos, s, len);
        sp = p ? (size_t)(p - s) : len;
        *m = (TokMerge){ (uint32_t)pos, (uint32_t)sp, (uint32_t)(pos + (p ? sp + 1 : len)),
                         (uint32_t)(p ? len - sp - 1 : 0) };
        pos += len;
        if (!p)
            continue;
        const char *l = t->mblob + m->loff, *r = t->mblob + m->roff;
        if (merge_rank(t, l, m->llen, r, m->rlen) >= 0)
            continue;                   /* a repeated pair keeps its first rank */
        size_t h = pair_hash(l, m->llen, r, m->rlen) & mask;
        while (t->mslot[h])
            h = (h + 1) & mask;
        t->mslot[h] = (uint32_t)i + 1;
    }
    return 0;
}

/* A special-token id key: in range replaces *id; out of range is ignored
** (llama.cpp warns and keeps the default). */
static int get_id(const Gguf *g, const EngTok *t, const char *key, int *id, int *found,
                  EngErr *err)
{
    int64_t v;
    int r = gguf_get_int(g, key, &v);
    if (found)
        *found = r == 1 && v >= 0 && v < t->n;
    if (r < 0) {
        tok_err(err, ENG_E_FORMAT, "%s: not an integer", key);
        return -1;
    }
    if (r == 1 && v >= 0 && v < t->n)
        *id = (int)v;
    return 0;
}

static int get_flag(const Gguf *g, const char *key, int *flag, EngErr *err)
{
    int v;
    int r = gguf_get_bool(g, key, &v);
    if (r < 0) {
        tok_err(err, ENG_E_FORMAT, "%s: not a bool", key);
        return -1;
    }
    if (r == 1)
        *flag = v;
    return 0;
}

static int text_is(const EngTok *t, int id, const char *s)
{
    size_t n;
    const char *txt = tok_text(t, id, &n);
    return n == strlen(s) && memcmp(txt, s, n) == 0;
}

static int text_in(const EngTok *t, int id, const char *const *list)
{
    for (; *list; list++)
        if (text_is(t, id, *list))
            return 1;
    return 0;
}

/* The texts llama.cpp recognises as end-of-generation markers. */
static const char *const k_eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
    "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
    "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
    "<turn|>", "<|tool_response>", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence"
    "\xef\xbd\x9c>", "[e~[", NULL
};

/* FIM markers: llama.cpp makes them CONTROL; pad/repo/sep also end generation. */
static const char *const k_fim_texts[6][9] = {
    { "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81"
      "begin\xef\xbd\x9c>", "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL },
    { "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81"
      "hole\xef\xbd\x9c>", "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL },
    { "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81"
      "end\xef\xbd\x9c>", "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL },
    { "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL },
    { "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL },
    { "<|file_sep|>", NULL },
};

static const char *const k_fim_keys[6] = {
    "tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.fim_suf_token_id",
    "tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.fim_pad_token_id",
    "tokenizer.ggml.fim_rep_token_id", "tokenizer.ggml.fim_sep_token_id",
};

static const char *const k_eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81of"
    "\xe2\x96\x81sentence\xef\xbd\x9c>", "<end_of_utterance>", NULL
};

static int find_text(const EngTok *t, const char *s)
{
    return lookup(t, s, strlen(s));
}

/* End-of-generation set and the attribute fix-ups llama.cpp applies. */
static int mark_specials(EngTok *t, const Gguf *g, EngErr *err)
{
    int eot = -1, eom = -1, found;
    if (get_id(g, t, "tokenizer.ggml.eot_token_id", &eot, NULL, err) < 0 ||
        get_id(g, t, "tokenizer.ggml.eom_token_id", &eom, NULL, err) < 0)
        return -1;
    for (int i = 0; i < t->n; i++) {
        if (eot < 0 && text_in(t, i, k_eot_texts))
            t->attr[i] |= ATTR_CONTROL;
        if (eom < 0 && text_is(t, i, "<|eom_id|>"))
            t->attr[i] |= ATTR_CONTROL;
    }
    for (int k = 0; k < 6; k++) {
        int id = -1;
        if (get_id(g, t, k_fim_keys[k], &id, &found, err) < 0)
            return -1;
        if (!found) {
            for (int i = 0; i < t->n; i++) {
                if (text_in(t, i, k_fim_texts[k])) {
                    t->attr[i] |= ATTR_CONTROL;
                    if (id < 0)
                        id = i;
                }
            }
        }
        if (k >= 3 && id >= 0)
            t->eog[id] = 1;
    }
    for (int i = 0; i < t->n; i++) {
        if (text_in(t, i, k_eog_texts)) {
            t->eog[i] = 1;
            t->attr[i] |= ATTR_CONTROL;
        }
    }
    static const char *const k_harmony_ud[] = {
        "<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL
    };
    for (int i = 0; i < t->n; i++)
        if (text_in(t, i, k_harmony_ud))
            t->attr[i] = ATTR_USER_DEFINED;
    if (t->eos >= 0)
        t->eog[t->eos] = 1;
    if (eot >= 0)
        t->eog[eot] = 1;
    if (eom >= 0)
        t->eog[eom] = 1;
    /* o200k_harmony: with <|return|> and <|call|>, <|end|> does not end */
    int has_return = 0, has_call = 0, has_flush = 0, end_id = -1, has_tool = 0, s_id = -1;
    for (int i = 0; i < t->n; i++) {
        if (!t->eog[i])
            continue;
        if (text_is(t, i, "<|return|>"))
            has_return = 1;
        else if (text_is(t, i, "<|call|>") || text_is(t, i, "<|calls|>"))
            has_call = 1;
        else if (text_is(t, i, "<|flush|>"))
            has_flush = 1;
        else if (text_is(t, i, "<|end|>"))
            end_id = i;
        else if (text_is(t, i, "<|tool_response>"))
            has_tool = 1;
        else if (text_is(t, i, "</s>"))
            s_id = i;
    }
    if (end_id >= 0 && has_call && (has_return || has_flush)) {
        t->eog[end_id] = 0;
        t->attr[end_id] = ATTR_USER_DEFINED;
    }
    if (has_tool && s_id >= 0) {
        t->eog[s_id] = 0;
        t->attr[s_id] = ATTR_NORMAL;
    }
    return 0;
}

typedef struct { size_t len; int32_t id; } LenId;

static int cmp_special(const void *a, const void *b)
{
    const LenId *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The special-token cache: CONTROL, USER_DEFINED and UNKNOWN tokens,
** longest text first (ties by id). */
static int build_special_cache(EngTok *t, const Gguf *g)
{
    int n = 0;
    for (int i = 0; i < t->n; i++)
        if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN))
            n++;
    t->special = malloc((n ? (size_t)n : 1) * sizeof *t->special);
    LenId *order = malloc((n ? (size_t)n : 1) * sizeof *order);
    if (!t->special || !order) {
        free(order);
        return -1;
    }
    for (int i = 0; i < t->n; i++)
        if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN))
            order[t->nspecial++] = (LenId){ t->off[i + 1] - t->off[i], i };
    qsort(order, (size_t)t->nspecial, sizeof *order, cmp_special);
    for (int k = 0; k < t->nspecial; k++)
        t->special[k] = order[k].id;
    free(order);

    /* phi-3 (by general.name): whitespace after its special tokens is eaten */
    GgufStr name;
    if (gguf_get_str(g, "general.name", &name) == 1) {
        char low[256];
        size_t n2 = name.len < sizeof low - 1 ? name.len : sizeof low - 1;
        for (size_t i = 0; i < n2; i++)
            low[i] = (char)tolower((unsigned char)name.ptr[i]);
        low[n2] = '\0';
        if (strstr(low, "phi-3") || strstr(low, "phi3")) {
            for (int k = 0; k < t->nspecial; k++)
                t->attr[t->special[k]] |= ATTR_RSTRIP;
            int id = find_text(t, "</s>");
            if (id >= 0)
                t->attr[id] |= ATTR_RSTRIP;
            static const char *const k_keep[] = { "<unk>", "<s>", "<|endoftext|>" };
            for (int k = 0; k < 3; k++)
                if ((id = find_text(t, k_keep[k])) >= 0)
                    t->attr[id] &= (uint16_t)~ATTR_RSTRIP;
        }
    }
    return 0;
}

EngTok *eng_tok_new(const Gguf *g, EngErr *err)
{
    GgufStr model, pre;
    EngTok *t = calloc(1, sizeof *t);
    if (!t) {
        tok_err(err, ENG_E_NOMEM, "tokenizer: out of memory");
        return NULL;
    }
    int r = gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (r != 1) {
        tok_err(err, r == 0 ? ENG_E_MODEL : ENG_E_FORMAT,
                "tokenizer.ggml.model: %s, expected a string (\"llama\" or \"gpt2\")",
                r == 0 ? "missing" : "not a string");
        goto fail;
    }
    if (gguf_str_eq(model, "llama")) {
        t->kind = ENG_TOK_SPM;
    } else if (gguf_str_eq(model, "gpt2")) {
        t->kind = ENG_TOK_BPE;
    } else {
        tok_err(err, ENG_E_UNSUPPORTED, "tokenizer.ggml.model: '%.*s' is not supported "
                "(supported: llama (SPM), gpt2 (byte-level BPE))",
                (int)(model.len > 64 ? 64 : model.len), model.ptr);
        goto fail;
    }
    r = gguf_get_str(g, "tokenizer.ggml.pre", &pre);
    if (r < 0) {
        tok_err(err, ENG_E_FORMAT, "tokenizer.ggml.pre: not a string");
        goto fail;
    }
    if (t->kind == ENG_TOK_BPE) {
        /* missing: llama.cpp falls back to "default" (with a warning) */
        t->pre = r == 1 ? tok_pre_find(pre.ptr, pre.len) : tok_pre_find("default", 7);
        if (!t->pre) {
            char names[1024];
            tok_pre_names(names, sizeof names);
            tok_err(err, ENG_E_UNSUPPORTED, "tokenizer.ggml.pre: unknown pre-tokenizer '%.*s' "
                    "(supported: %s)", (int)(pre.len > 64 ? 64 : pre.len), pre.ptr, names);
            goto fail;
        }
        t->ignore_merges = t->pre->ignore_merges;
        t->add_bos = t->pre->add_bos;
    } else {
        t->add_bos = 1;
        t->add_space_prefix = 1;
    }
    init_byte_map(t);
    if (load_tokens(t, g, err) < 0)
        goto fail;
    if (t->kind == ENG_TOK_BPE && load_merges(t, g, err) < 0)
        goto fail;

    /* llama.cpp's defaults: SPM bos 1, eos 2, unk 0; BPE bos = eos = 11 */
    t->bos = t->kind == ENG_TOK_SPM ? 1 : 11;
    t->eos = t->kind == ENG_TOK_SPM ? 2 : 11;
    t->unk = t->kind == ENG_TOK_SPM ? 0 : -1;
    if (t->pre && t->pre->no_bos)
        t->bos = -1;
    if (t->bos >= t->n)
        t->bos = -1;
    if (t->eos >= t->n)
        t->eos = -1;
    if (t->unk >= t->n)
        t->unk = -1;
    if (get_id(g, t, "tokenizer.ggml.bos_token_id", &t->bos, NULL, err) < 0 ||
        get_id(g, t, "tokenizer.ggml.eos_token_id", &t->eos, NULL, err) < 0 ||
        get_id(g, t, "tokenizer.ggml.unknown_token_id", &t->unk, NULL, err) < 0 ||
        get_flag(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err) < 0 ||
        get_flag(g, "tokenizer.ggml.add_eos_token", &t->add_eos, err) < 0 ||
        get_flag(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err) < 0)
        goto fail;
    if (t->add_bos && t->bos < 0) {
        tok_err(err, ENG_E_MODEL, "tokenizer.ggml.add_bos_token is true, but "
                "tokenizer.ggml.bos_token_id is not set to a token id below %d", t->n);
        goto fail;
    }
    if (t->add_eos && t->eos < 0) {
        tok_err(err, ENG_E_MODEL, "tokenizer.ggml.add_eos_token is true, but "
                "tokenizer.ggml.eos_token_id is not set to a token id below %d", t->n);
        goto fail;
    }
    if (mark_specials(t, g, err) < 0)
        goto fail;
    if (build_special_cache(t, g) < 0) {
        tok_err(err, ENG_E_NOMEM, "tokenizer: out of memory");
        goto fail;
    }
    return t;
fail:
    eng_tok_free(t);
    return NULL;
}
