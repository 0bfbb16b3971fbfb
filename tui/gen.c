/*
** tui/gen.c — the generation loop shared by run, eval, ppl and the app.
*/
#include "tui/gen.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GEN_CHUNK 64
#define GEN_TOP 5

static int gerr(EngErr *err, EngStatus s, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->status = s;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void gen_settings_default(GenSettings *s)
{
    memset(s, 0, sizeof *s);
    s->sample.temp = 0.8f;
    s->sample.top_p = 0.95f;
    s->sample.top_k = 40;
    s->sample.seed = 1;
    s->n_predict = 64;
    s->n_threads = 2;
    s->stop_at_eog = 1;
}

static int append(char **out, size_t *len, size_t *cap, const char *b, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = (*cap ? *cap * 2 : 256);
        while (nc < *len + n + 1)
            nc *= 2;
        char *p = realloc(*out, nc);
        if (!p)
            return -1;
        *out = p;
        *cap = nc;
    }
    memcpy(*out + *len, b, n);
    *len += n;
    (*out)[*len] = 0;
    return 0;
}

int gen_run(EngModel *m, EngCtx *c, const GenSettings *s, const char *prompt, size_t prompt_len,
            const GenHooks *h, char **out, size_t *out_len, GenStats *st, EngErr *err)
{
    const EngInfo *I = eng_model_info(m);
    int V = I->n_vocab;
    int n_ctx = eng_ctx_n_ctx(c);
    memset(st, 0, sizeof *st);
    size_t cap = *out ? *out_len + 1 : 0, len = *out ? *out_len : 0;
    int ret = -1;
    float *lg = NULL;
    int32_t *toks = malloc((size_t)n_ctx * sizeof *toks);
    if (!toks)
        return gerr(err, ENG_E_NOMEM, "out of memory");
    int n = eng_tokenize(m, prompt, prompt_len, 1, s->parse_special, toks, n_ctx, err);
    if (n < 0)
        goto done;
    if (n == 0) {
        gerr(err, ENG_E_ARG, "the prompt is empty and the model adds no BOS token");
        goto done;
    }
    if (n >= n_ctx) {
        gerr(err, ENG_E_CTX, "the prompt has %d tokens; the context holds %d", n, n_ctx);
        goto done;
    }
    eng_ctx_reset(c);
    eng_ctx_set_route_fn(c, h ? h->on_route : NULL, h ? h->user : NULL);
    if (eng_ctx_set_ivs(c, s->ivs, s->n_ivs, err) != ENG_OK)
        goto done;
    if (s->prompt_logprobs) {
        lg = malloc((size_t)GEN_CHUNK * (size_t)V * sizeof(float));
        if (!lg) {
            gerr(err, ENG_E_NOMEM, "out of memory for prompt logits");
            goto done;
        }
    }
    int32_t top_ids[GEN_TOP];
    float top_lp[GEN_TOP];
    double t0 = now();
    if (h && h->on_token)
        h->on_token(h->user, 0, toks[0], 1, NAN, 0, top_ids, top_lp);
    for (int off = 0; off < n; off += GEN_CHUNK) {
        int b = n - off < GEN_CHUNK ? n - off : GEN_CHUNK;
        if (eng_decode(c, toks + off, b, 1, lg, err) != ENG_OK)
            goto done;
        if (h && h->on_token)
            for (int i = 0; i < b; i++) {
                int p = off + i + 1;   /* the token these logits predict */
                if (p >= n)
                    break;
                float lp = NAN;
                int nt = 0;
                if (lg) {
                    lp = eng_logprobs(lg + (size_t)i * V, V, toks[p], GEN_TOP, top_ids, top_lp);
                    nt = GEN_TOP;
                }
                h->on_token(h->user, p, toks[p], 1, lp, nt, top_ids, top_lp);
            }
        if (h && h->should_stop && h->should_stop(h->user)) {
            st->cancelled = 1;
            break;
        }
    }
    st->n_prompt = n;
    st->t_prompt = now() - t0;

    EngSampler smp;
    if (eng_sampler_init(&smp, &s->sample, V) != ENG_OK) {
        gerr(err, ENG_E_NOMEM, "out of memory for the sampler");
        goto done;
    }
    t0 = now();
    int pos = n;
    for (int i = 0; i < s->n_predict && !st->cancelled; i++) {
        if (pos >= n_ctx)
            break;   /* context full: the last token could not be evaluated */
        const float *L = eng_ctx_logits(c);
        int32_t t = eng_sample(&smp, L);
        float lp = eng_logprobs(L, V, t, GEN_TOP, top_ids, top_lp);
        st->sum_logprob_gen += lp;
        if (s->stop_at_eog && eng_token_is_eog(m, t)) {
            st->stopped_eog = 1;
            break;
        }
        if (h && h->on_token)
            h->on_token(h->user, pos, t, 0, lp, GEN_TOP, top_ids, top_lp);
        char piece[256];
        int pl = eng_token_to_bytes(m, t, piece, sizeof piece);
        if (pl > (int)sizeof piece)
            pl = (int)sizeof piece;
        if (pl > 0 && append(out, &len, &cap, piece, (size_t)pl) < 0) {
            eng_sampler_done(&smp);
            gerr(err, ENG_E_NOMEM, "out of memory for the text");
            goto done;
        }
        st->n_gen++;
        if (s->stop_at_newline && memchr(piece, '\n', (size_t)(pl > 0 ? pl : 0)))
            break;
        /* evaluate it even when it is the last: every recorded token then
        ** has its route through all layers */
        if (eng_decode(c, &t, 1, 0, NULL, err) != ENG_OK) {
            eng_sampler_done(&smp);
            goto done;
        }
        pos++;
        if (h && h->should_stop && h->should_stop(h->user))
            st->cancelled = 1;
    }
    st->t_gen = now() - t0;
    eng_sampler_done(&smp);
    if (!*out && append(out, &len, &cap, "", 0) < 0) {
        gerr(err, ENG_E_NOMEM, "out of memory");
        goto done;
    }
    *out_len = len;
    ret = 0;
done:
    free(lg);
    free(toks);
    return ret;
}

long gen_unescape(const char *s, char *out, size_t cap, char *errbuf, size_t errcap)
{
    size_t o = 0;
    for (size_t i = 0; s[i]; i++) {
        if (o + 1 >= cap) {
            snprintf(errbuf, errcap, "line too long (over %zu bytes)", cap - 1);
            return -1;
        }
        if (s[i] != '\\') {
            out[o++] = s[i];
            continue;
        }
        char ch = s[++i];
        switch (ch) {
        case 'n': out[o++] = '\n'; break;
        case 't': out[o++] = '\t'; break;
        case 'r': out[o++] = '\r'; break;
        case '\\': out[o++] = '\\'; break;
        case '"': out[o++] = '"'; break;
        case '\'': out[o++] = '\''; break;
        case 'x': {
            unsigned v = 0;
            int k = 0;
            while (k < 2 && ((s[i + 1] >= '0' && s[i + 1] <= '9') ||
                             ((s[i + 1] | 32) >= 'a' && (s[i + 1] | 32) <= 'f'))) {
                char d = s[++i];
                v = v * 16 + (unsigned)(d <= '9' ? d - '0' : (d | 32) - 'a' + 10);
                k++;
            }
            if (k == 0) {
                snprintf(errbuf, errcap, "'\\x' at column %zu has no hex digits", i);
                return -1;
            }
            out[o++] = (char)v;
            break;
        }
        case 0:
            snprintf(errbuf, errcap, "a lone '\\' ends the line");
            return -1;
        default:
            snprintf(errbuf, errcap, "unknown escape '\\%c' at column %zu", ch, i);
            return -1;
        }
    }
    out[o] = 0;
    return (long)o;
}

void gen_free_prompts(char **p, int n)
{
    if (!p)
        return;
    for (int i = 0; i < n; i++)
        free(p[i]);
    free(p);
}

int gen_read_prompts(const char *path, char ***out, char *errbuf, size_t errcap)
{
    FILE *f = fopen(path, "r");
    *out = NULL;
    if (!f) {
        snprintf(errbuf, errcap, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char **arr = NULL;
    int n = 0, capn = 0, lineno = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    while ((got = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = 0;
        if (got == 0)
            continue;   /* blank lines separate nothing: skip */
        if ((size_t)got != strlen(line)) {
            snprintf(errbuf, errcap, "%s:%d: the line contains a NUL byte", path, lineno);
            goto bad;
        }
        char *p = malloc((size_t)got + 1);
        char e[128];
        if (!p) {
            snprintf(errbuf, errcap, "%s:%d: out of memory", path, lineno);
            goto bad;
        }
        if (gen_unescape(line, p, (size_t)got + 1, e, sizeof e) < 0) {
            snprintf(errbuf, errcap, "%s:%d: %s", path, lineno, e);
            free(p);
            goto bad;
        }
        if (n == capn) {
            capn = capn ? capn * 2 : 64;
            char **na = realloc(arr, (size_t)capn * sizeof *na);
            if (!na) {
                free(p);
                snprintf(errbuf, errcap, "%s:%d: out of memory", path, lineno);
                goto bad;
            }
            arr = na;
        }
        arr[n++] = p;
    }
    if (ferror(f)) {
        snprintf(errbuf, errcap, "%s: read error: %s", path, strerror(errno));
        goto bad;
    }
    free(line);
    fclose(f);
    if (n == 0) {
        snprintf(errbuf, errcap, "%s: no prompts (the file is empty)", path);
        free(arr);
        return -1;
    }
    *out = arr;
    return n;
bad:
    free(line);
    fclose(f);
    gen_free_prompts(arr, n);
    return -1;
}
