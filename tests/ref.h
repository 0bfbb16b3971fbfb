/*
** tests/ref.h — reader for the llama.cpp reference files of the fixtures
** (tests/data/fixtures/<name>/ref*.txt, format in the fixtures README).
** Header-only so every test binary can include it.
*/
#ifndef TESTS_REF_H
#define TESTS_REF_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REF_MAX_CASES 8
#define REF_MAX_TOK 128
#define REF_MAX_LAYERS 8
#define REF_MAX_EXPERTS 64
#define REF_MAX_K 16

typedef struct {
    int have;
    float logits[REF_MAX_EXPERTS];
    int k;
    int experts[REF_MAX_K];
    float weights[REF_MAX_K];
} RefRoute;

typedef struct {
    int n_tokens, row;
    char prompt[1024];
    size_t prompt_len;
    int tokens[REF_MAX_TOK];
    RefRoute route[REF_MAX_TOK][REF_MAX_LAYERS];
    int top_n[REF_MAX_TOK];
    int top_id[REF_MAX_TOK][10];
    float top_val[REF_MAX_TOK][10];
    int n_greedy;
    int greedy[32];
    float margin[32];
} RefCase;

typedef struct {
    char arch[32];
    int n_vocab, n_embd, n_layer, n_expert, n_expert_used, add_bos, ncases;
    RefCase cases[REF_MAX_CASES];
} Ref;

/* Undo the prompt escapes: \\ \n \t \r \xHH. */
static size_t ref_unescape(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; s[i] && o + 1 < cap; i++) {
        if (s[i] != '\\') {
            out[o++] = s[i];
            continue;
        }
        char c = s[++i];
        if (c == 'n') out[o++] = '\n';
        else if (c == 't') out[o++] = '\t';
        else if (c == 'r') out[o++] = '\r';
        else if (c == '\\') out[o++] = '\\';
        else if (c == 'x') {
            unsigned v = 0;
            sscanf(s + i + 1, "%2x", &v);
            out[o++] = (char)v;
            i += 2;
        } else if (c == 0) {
            break;
        }
    }
    out[o] = 0;
    return o;
}

/* Returns a heap Ref or NULL (message on stderr). */
static Ref *ref_load(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "ref_load: cannot open %s\n", path);
        return NULL;
    }
    Ref *r = calloc(1, sizeof *r);
    static char line[1 << 16];
    RefCase *c = NULL;
    while (fgets(line, sizeof line, f)) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        if (line[0] == '#' || !line[0])
            continue;
        char *sp = strchr(line, ' ');
        char *rest = sp ? sp + 1 : line + strlen(line);
        if (!strncmp(line, "arch ", 5)) sscanf(rest, "%31s", r->arch);
        else if (!strncmp(line, "n_vocab ", 8)) r->n_vocab = atoi(rest);
        else if (!strncmp(line, "n_embd ", 7)) r->n_embd = atoi(rest);
        else if (!strncmp(line, "n_layer ", 8)) r->n_layer = atoi(rest);
        else if (!strncmp(line, "n_expert ", 9)) r->n_expert = atoi(rest);
        else if (!strncmp(line, "n_expert_used ", 14)) r->n_expert_used = atoi(rest);
        else if (!strncmp(line, "add_bos ", 8)) r->add_bos = atoi(rest);
        else if (!strncmp(line, "ncases ", 7)) r->ncases = atoi(rest);
        else if (!strncmp(line, "case ", 5)) {
            int i, n, row;
            sscanf(rest, "%d %d %d", &i, &n, &row);
            c = &r->cases[i];
            c->n_tokens = n;
            c->row = row;
        } else if (!strncmp(line, "prompt ", 7) && c) {
            c->prompt_len = ref_unescape(rest, c->prompt, sizeof c->prompt);
        } else if (!strncmp(line, "tokens ", 7) && c) {
            char *p = rest;
            int n = (int)strtol(p, &p, 10);
            for (int i = 0; i < n && i < REF_MAX_TOK; i++)
                c->tokens[i] = (int)strtol(p, &p, 10);
        } else if (!strncmp(line, "router ", 7) && c) {
            char *p = rest;
            int pos = (int)strtol(p, &p, 10), il = (int)strtol(p, &p, 10);
            int n = (int)strtol(p, &p, 10);
            RefRoute *rt = &c->route[pos][il];
            for (int e = 0; e < n && e < REF_MAX_EXPERTS; e++)
                rt->logits[e] = strtof(p, &p);
        } else if (!strncmp(line, "route ", 6) && c) {
            char *p = rest;
            int pos = (int)strtol(p, &p, 10), il = (int)strtol(p, &p, 10);
            RefRoute *rt = &c->route[pos][il];
            rt->have = 1;
            rt->k = (int)strtol(p, &p, 10);
            for (int j = 0; j < rt->k; j++)
                rt->experts[j] = (int)strtol(p, &p, 10);
            for (int j = 0; j < rt->k; j++)
                rt->weights[j] = strtof(p, &p);
        } else if (!strncmp(line, "logits_top ", 11) && c) {
            char *p = rest;
            int pos = (int)strtol(p, &p, 10);
            int n = 0;
            while (*p && n < 10) {
                while (*p == ' ')
                    p++;
                if (!*p)
                    break;
                c->top_id[pos][n] = (int)strtol(p, &p, 10);
                if (*p == ':')
                    p++;
                c->top_val[pos][n] = strtof(p, &p);
                n++;
            }
            c->top_n[pos] = n;
        } else if (!strncmp(line, "greedy ", 7) && c) {
            char *p = rest;
            c->n_greedy = (int)strtol(p, &p, 10);
            for (int i = 0; i < c->n_greedy && i < 32; i++)
                c->greedy[i] = (int)strtol(p, &p, 10);
        } else if (!strncmp(line, "greedy_margin ", 14) && c) {
            char *p = rest;
            int n = (int)strtol(p, &p, 10);
            for (int i = 0; i < n && i < 32; i++)
                c->margin[i] = strtof(p, &p);
        }
    }
    fclose(f);
    return r;
}

/* |a - b| <= atol + rtol * |b| */
static int ref_close(double a, double b, double rtol, double atol)
{
    double d = a - b;
    if (d < 0)
        d = -d;
    return d <= atol + rtol * (b < 0 ? -b : b);
}

#endif
