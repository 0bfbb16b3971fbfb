/*
** cli/cmd_eval.c — behaviour under intervention:
**   moescope eval -m MODEL --tsv FILE [interventions]   exact-match accuracy
**   moescope ppl  -m MODEL -f TEXTS  [interventions]    perplexity
** Both may record their runs in the database (--db/--tag, like run) so the
** statistics and the app can show them; by default they record nothing
** (--db FILE turns it on).
*/
#include "cli/cmds.h"
#include "cli/common.h"
#include "cli/opts.h"
#include "tui/tui.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Wilson score interval for k successes in n trials, 95 %. */
static void wilson(int k, int n, double *lo, double *hi)
{
    if (n == 0) {
        *lo = 0;
        *hi = 1;
        return;
    }
    double z = 1.959963984540054, p = (double)k / n, z2 = z * z;
    double den = 1 + z2 / n;
    double c = (p + z2 / (2.0 * n)) / den;
    double h = z * sqrt(p * (1 - p) / n + z2 / (4.0 * n * n)) / den;
    *lo = c - h < 0 ? 0 : c - h;
    *hi = c + h > 1 ? 1 : c + h;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = 0;
    return s;
}

/* Read "prompt<TAB>expected" lines (prompt with C escapes). */
static int read_tsv(const char *path, char ***prompts, char ***answers, char *e, size_t ecap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(e, ecap, "%s: cannot open", path);
        return -1;
    }
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    int n = 0, cap = 0, lineno = 0;
    char **P = NULL, **A = NULL;
    while ((got = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = 0;
        if (got == 0)
            continue;
        char *tab = strchr(line, '\t');
        if (!tab) {
            snprintf(e, ecap, "%s:%d: no TAB: expected 'prompt<TAB>answer'", path, lineno);
            goto bad;
        }
        *tab = 0;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            char **np = realloc(P, (size_t)cap * sizeof *np);
            if (np)
                P = np;
            char **na = realloc(A, (size_t)cap * sizeof *na);
            if (na)
                A = na;
            if (!np || !na) {
                snprintf(e, ecap, "%s:%d: out of memory", path, lineno);
                goto bad;
            }
        }
        char *p = malloc(strlen(line) + 1);
        char *a = strdup(tab + 1);
        char ue[128];
        if (!p || !a || gen_unescape(line, p, strlen(line) + 1, ue, sizeof ue) < 0) {
            snprintf(e, ecap, "%s:%d: %s", path, lineno, p && a ? ue : "out of memory");
            free(p);
            free(a);
            goto bad;
        }
        char *t = trim(a);
        memmove(a, t, strlen(t) + 1);
        P[n] = p;
        A[n] = a;
        n++;
    }
    free(line);
    fclose(f);
    if (n == 0) {
        snprintf(e, ecap, "%s: no lines", path);
        free(P);
        free(A);
        return -1;
    }
    *prompts = P;
    *answers = A;
    return n;
bad:
    free(line);
    fclose(f);
    gen_free_prompts(P, n);
    gen_free_prompts(A, n);
    return -1;
}

static void eval_usage(FILE *f)
{
    fprintf(f, "usage: moescope eval [-m MODEL] --tsv FILE [options]\n"
               "  Greedy-decode each prompt (column 1, C escapes) and compare the first line\n"
               "  of the continuation, trimmed, with column 2.  Prints 'accuracy: X %% (k/n)'\n"
               "  and the 95 %% Wilson interval.\n\n"
               "  --tsv FILE          prompt<TAB>expected per line\n"
               "  -v                  list the misses\n"
               "  --db FILE --tag T   also record the runs (off by default)\n%s",
            cli_genopts_help);
}

int cli_cmd_eval(int argc, char **argv)
{
    GenOpts o;
    cli_genopts_init(&o);
    o.gs.sample.greedy = 1;
    o.gs.n_predict = 16;
    o.gs.stop_at_newline = 1;
    RecOpts ro;
    rec_opts_init(&ro);
    ro.no_db = 1;
    const char *tsv = NULL;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_genrec_parse("eval", &o, &ro, argc, argv, &i);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            eval_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--tsv")) {
            if (!(tsv = cli_opt_value("eval", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "-v")) {
            verbose = 1;
        } else {
            fprintf(stderr, "moescope eval: unknown argument '%s' (see moescope eval --help)\n", a);
            return 2;
        }
    }
    if (!tsv) {
        fprintf(stderr, "moescope eval: --tsv FILE is required\n");
        return 2;
    }
    o.gs.sample.greedy = 1;
    char **P = NULL, **A = NULL, e[512];
    int n = read_tsv(tsv, &P, &A, e, sizeof e);
    if (n < 0) {
        fprintf(stderr, "moescope eval: %s\n", e);
        return 1;
    }
    int hits = 0, done = 0;
    EngModel *m;
    EngCtx *c;
    Recorder *rec;
    int status = cli_gen_open("eval", &o, &ro, &m, &c, &rec);
    if (status)
        goto out;
    status = 1;
    EngErr err = { 0 };
    for (int i = 0; i < n; i++) {
        char *text = NULL;
        size_t len = 0;
        GenStats st;
        GenHooks h;
        char *fed = cli_prepare_prompt("eval", &o, m, P[i]);
        if (!fed)
            goto out;
        if (rec_begin_fmt(rec, P[i], fed, &o.gs, &h) < 0) {
            free(fed);
            goto out;
        }
        int r = gen_run(m, c, &o.gs, fed, strlen(fed), &h, &text, &len, &st, &err);
        free(fed);
        if (rec_end(rec, r == 0, &st) < 0 || r < 0) {
            if (r < 0)
                fprintf(stderr, "moescope eval: %s line %d: %s\n", tsv, i + 1, err.msg);
            free(text);
            goto out;
        }
        char *nl = strchr(text, '\n');
        if (nl)
            *nl = 0;
        char *got = trim(text);
        int ok = strcmp(got, A[i]) == 0;
        hits += ok;
        done++;
        if (verbose && !ok) {
            printf("miss %d: ", i + 1);
            cli_opt_print_escaped(stdout, P[i], strlen(P[i]));
            printf(" -> '");
            cli_opt_print_escaped(stdout, got, strlen(got));
            printf("' (expected '%s')\n", A[i]);
        }
        free(text);
    }
    double lo, hi;
    wilson(hits, done, &lo, &hi);
    /* the contract: the first line is exactly this */
    printf("accuracy: %.1f %% (%d/%d)\n", 100.0 * hits / done, hits, done);
    printf("95%% interval: [%.1f %%, %.1f %%] (Wilson)\n", 100 * lo, 100 * hi);
    cli_print_ivs(stdout, &o.gs);
    status = 0;
out:
    status = cli_gen_close(status, m, c, rec);
    gen_free_prompts(P, n > 0 ? n : 0);
    gen_free_prompts(A, n > 0 ? n : 0);
    return status;
}

/* ---- perplexity ---------------------------------------------------------- */

typedef struct {
    Recorder *rec;
    GenHooks h;
} PplRec;

static void ppl_usage(FILE *f)
{
    fprintf(f, "usage: moescope ppl [-m MODEL] -f TEXTS [options]\n"
               "  Perplexity of the model on the texts (one per line, C escapes), each\n"
               "  starting with BOS as the model says; texts longer than the context are\n"
               "  scored in consecutive windows.  Prints 'perplexity: X' and a 95 %%\n"
               "  interval from the standard error of the per-text mean log-likelihood\n"
               "  (texts are the independent units).  With --chat each text is the user's\n"
               "  turn of a one-turn chat and the whole formatted text is scored.\n\n"
               "  -f FILE             the texts\n"
               "  --db FILE --tag T   also record the runs (off by default)\n%s",
            cli_genopts_help);
}

int cli_cmd_ppl(int argc, char **argv)
{
    GenOpts o;
    cli_genopts_init(&o);
    RecOpts ro;
    rec_opts_init(&ro);
    ro.no_db = 1;
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_genrec_parse("ppl", &o, &ro, argc, argv, &i);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            ppl_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(file = cli_opt_value("ppl", argc, argv, &i)))
                return 2;
        } else {
            fprintf(stderr, "moescope ppl: unknown argument '%s' (see moescope ppl --help)\n", a);
            return 2;
        }
    }
    if (!file) {
        fprintf(stderr, "moescope ppl: -f TEXTS is required\n");
        return 2;
    }

    char **T = NULL, e[512];
    int n = gen_read_prompts(file, &T, e, sizeof e);
    if (n < 0) {
        fprintf(stderr, "moescope ppl: %s\n", e);
        return 1;
    }
    int status = 1;
    EngModel *m;
    EngCtx *c;
    Recorder *rec;
    float *lg = NULL;
    int32_t *toks = NULL;
    double *text_nll = NULL;
    long *text_cnt = NULL;
    status = cli_gen_open("ppl", &o, &ro, &m, &c, &rec);
    if (status)
        goto out;
    status = 1;
    const EngInfo *I = eng_model_info(m);
    EngErr err = { 0 };
    if (eng_ctx_set_ivs(c, o.gs.ivs, o.gs.n_ivs, &err) != ENG_OK) {
        fprintf(stderr, "moescope ppl: %s\n", err.msg);
        goto out;
    }
    int n_ctx = eng_ctx_n_ctx(c), V = I->n_vocab;
    enum { CH = 64 };
    lg = malloc((size_t)CH * (size_t)V * sizeof(float));
    text_nll = calloc((size_t)n, sizeof *text_nll);
    text_cnt = calloc((size_t)n, sizeof *text_cnt);
    if (!lg || !text_nll || !text_cnt) {
        fprintf(stderr, "moescope ppl: out of memory\n");
        goto out;
    }
    double nll = 0;
    long cnt = 0;
    for (int ti = 0; ti < n; ti++) {
        /* with --chat each text is the user's turn of a one-turn chat and
        ** every token of the formatted conversation is scored */
        char *fed = cli_prepare_prompt("ppl", &o, m, T[ti]);
        if (!fed)
            goto out;
        size_t len = strlen(fed);
        int need = eng_tokenize(m, fed, len, !o.gs.skip_bos, o.gs.parse_special, NULL, 0, &err);
        free(toks);
        toks = need < 0 ? NULL : malloc((size_t)(need + 1) * sizeof *toks);
        if (!toks) {
            fprintf(stderr, "moescope ppl: %s line %d: %s\n", file, ti + 1,
                    need < 0 ? err.msg : "out of memory");
            free(fed);
            goto out;
        }
        eng_tokenize(m, fed, len, !o.gs.skip_bos, o.gs.parse_special, toks, need, &err);
        GenHooks h;
        int rb = rec_begin_fmt(rec, T[ti], fed, &o.gs, &h);
        free(fed);
        if (rb < 0)
            goto out;
        eng_ctx_set_route_fn(c, h.on_route, h.user);
        GenStats st = { 0 };
        /* windows of n_ctx tokens overlapping by one: the first token of a
        ** window is context only, so every token after the first is scored once */
        if (h.on_token && need > 0)
            h.on_token(h.user, 0, toks[0], 1, NAN, 0, NULL, NULL);
        for (int w0 = 0; w0 < need - 1; w0 += n_ctx - 1) {
            int wn = need - w0 < n_ctx ? need - w0 : n_ctx;
            eng_ctx_reset(c);
            for (int off = 0; off < wn; off += CH) {
                int b = wn - off < CH ? wn - off : CH;
                if (eng_decode(c, toks + w0 + off, b, 1, lg, &err) != ENG_OK) {
                    fprintf(stderr, "moescope ppl: %s line %d: %s\n", file, ti + 1, err.msg);
                    rec_end(rec, 0, &st);
                    goto out;
                }
                for (int i = 0; i < b; i++) {
                    int p = w0 + off + i + 1;
                    if (p >= w0 + wn)
                        break;
                    int32_t ids[5];
                    float lps[5];
                    float lp = eng_logprobs(lg + (size_t)i * V, V, toks[p], 5, ids, lps);
                    text_nll[ti] -= lp;
                    text_cnt[ti]++;
                    if (h.on_token)
                        h.on_token(h.user, p, toks[p], 1, lp, 5, ids, lps);
                }
            }
        }
        st.n_prompt = need;
        if (rec_end(rec, 1, &st) < 0)
            goto out;
        nll += text_nll[ti];
        cnt += text_cnt[ti];
    }
    if (cnt == 0) {
        fprintf(stderr, "moescope ppl: %s: no token to score (each text needs 2+ tokens)\n", file);
        goto out;
    }
    double mean = nll / cnt;
    /* standard error of the ratio estimator sum(nll_i)/sum(cnt_i) over texts */
    double se = 0;
    int m_used = 0;
    for (int ti = 0; ti < n; ti++)
        if (text_cnt[ti] > 0) {
            double r = text_nll[ti] - mean * text_cnt[ti];
            se += r * r;
            m_used++;
        }
    double cbar = (double)cnt / m_used;
    se = m_used > 1 ? sqrt(se / (m_used - 1) / m_used) / cbar : 0;
    printf("perplexity: %.2f\n", exp(mean));
    if (m_used > 1)
        printf("95%% interval: [%.2f, %.2f] (%d texts, %ld tokens, mean NLL %.4f +- %.4f)\n",
               exp(mean - 1.96 * se), exp(mean + 1.96 * se), m_used, cnt, mean, se);
    else
        printf("95%% interval: n/a (one text, %ld tokens: the interval needs two or more texts)\n",
               cnt);
    cli_print_ivs(stdout, &o.gs);
    status = 0;
out:
    free(lg);
    free(toks);
    free(text_nll);
    free(text_cnt);
    status = cli_gen_close(status, m, c, rec);
    gen_free_prompts(T, n > 0 ? n : 0);
    return status;
}
