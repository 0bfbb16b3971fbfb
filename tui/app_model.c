/*
** tui/app_model.c — the app's data model: run list, layer×expert
** aggregates, the grid a heatmap shows, tokens with their routes.
**
** Filled by a loader (database) or by the engine worker (live run) or by
** tests; the views only read it.  Aggregates keep counts and weight mass
** for all positions and for prompt positions, so the generated-only part is
** the difference and every toggle is a cheap recomputation of the grid.
*/
#include "tui/app.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int tui_agg_init(TuiAgg *a, int n_layer, int n_expert, int k)
{
    memset(a, 0, sizeof *a);
    if (n_layer < 1 || n_expert < 1)
        return -1;
    size_t n = (size_t)n_layer * (size_t)n_expert;
    a->n_layer = n_layer;
    a->n_expert = n_expert;
    a->k = k;
    a->cnt = calloc(n, sizeof(float));
    a->cnt_p = calloc(n, sizeof(float));
    a->wt = calloc(n, sizeof(float));
    a->wt_p = calloc(n, sizeof(float));
    if (!a->cnt || !a->cnt_p || !a->wt || !a->wt_p) {
        tui_agg_done(a);
        return -1;
    }
    return 0;
}

void tui_agg_done(TuiAgg *a)
{
    if (!a)
        return;
    free(a->cnt);
    free(a->cnt_p);
    free(a->wt);
    free(a->wt_p);
    memset(a, 0, sizeof *a);
}

void tui_agg_clear(TuiAgg *a)
{
    size_t n = (size_t)a->n_layer * (size_t)a->n_expert;
    if (!a->cnt)
        return;
    memset(a->cnt, 0, n * sizeof(float));
    memset(a->cnt_p, 0, n * sizeof(float));
    memset(a->wt, 0, n * sizeof(float));
    memset(a->wt_p, 0, n * sizeof(float));
    a->n_tok = a->n_prompt = 0;
}

void tui_agg_add(TuiAgg *a, int layer, int is_prompt, const int32_t *experts,
                 const float *weights, int k)
{
    if (layer < 0 || layer >= a->n_layer)
        return;
    for (int j = 0; j < k; j++) {
        int e = experts[j];
        if (e < 0 || e >= a->n_expert)
            continue;
        size_t i = (size_t)layer * (size_t)a->n_expert + (size_t)e;
        float w = weights ? weights[j] : 0.0f;
        a->cnt[i] += 1.0f;
        a->wt[i] += w;
        if (is_prompt) {
            a->cnt_p[i] += 1.0f;
            a->wt_p[i] += w;
        }
    }
}

static int grid_shape(TuiGrid *g, int n_layer, int n_expert)
{
    if (g->v && g->n_layer == n_layer && g->n_expert == n_expert)
        return 0;
    free(g->v);
    g->v = calloc((size_t)n_layer * (size_t)n_expert, sizeof(float));
    g->n_layer = g->v ? n_layer : 0;
    g->n_expert = g->v ? n_expert : 0;
    return g->v ? 0 : -1;
}

static float agg_val(const TuiAgg *a, size_t i, TuiHmValue v, TuiHmPart p)
{
    const float *all = v == TUI_HM_SHARE ? a->cnt : a->wt;
    const float *pr = v == TUI_HM_SHARE ? a->cnt_p : a->wt_p;
    int n = p == TUI_HM_ALL ? a->n_tok : p == TUI_HM_PROMPT ? a->n_prompt : a->n_tok - a->n_prompt;
    if (n <= 0 || (p != TUI_HM_ALL && a->n_counted > 0))   /* split unknown */
        return 0.0f;
    float x = p == TUI_HM_ALL ? all[i] : p == TUI_HM_PROMPT ? pr[i] : all[i] - pr[i];
    return x / (float)n;
}

int tui_grid_from_agg(TuiGrid *g, const TuiAgg *a, TuiHmValue v, TuiHmPart p)
{
    if (!a->cnt || grid_shape(g, a->n_layer, a->n_expert))
        return -1;
    size_t n = (size_t)a->n_layer * (size_t)a->n_expert;
    for (size_t i = 0; i < n; i++)
        g->v[i] = agg_val(a, i, v, p);
    g->diverging = 0;
    return 0;
}

int tui_grid_delta(TuiGrid *g, const TuiAgg *a, const TuiAgg *b, TuiHmValue v, TuiHmPart p)
{
    if (!a->cnt || !b->cnt || a->n_layer != b->n_layer || a->n_expert != b->n_expert)
        return -1;
    if (grid_shape(g, a->n_layer, a->n_expert))
        return -1;
    size_t n = (size_t)a->n_layer * (size_t)a->n_expert;
    for (size_t i = 0; i < n; i++)
        g->v[i] = agg_val(a, i, v, p) - agg_val(b, i, v, p);
    g->diverging = 1;
    return 0;
}

void tui_grid_done(TuiGrid *g)
{
    if (!g)
        return;
    free(g->v);
    memset(g, 0, sizeof *g);
}

int tui_tokens_init(TuiTokens *t, int n_layer, int n_expert, int k, int keep_logits)
{
    memset(t, 0, sizeof *t);
    if (n_layer < 1 || n_expert < 1 || k < 1)
        return -1;
    t->n_layer = n_layer;
    t->n_expert = n_expert;
    t->k = k;
    t->keep_logits = keep_logits != 0;
    return 0;
}

void tui_tokens_done(TuiTokens *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n; i++)
        free(t->piece[i]);
    free(t->piece);
    free(t->id);
    free(t->is_prompt);
    free(t->logprob);
    free(t->experts);
    free(t->weights);
    free(t->entropy);
    free(t->logits);
    memset(t, 0, sizeof *t);
}

static int grow(void **p, size_t elem, int cap)
{
    void *q = realloc(*p, elem * (size_t)cap);
    if (!q)
        return -1;
    *p = q;
    return 0;
}

int tui_tokens_push(TuiTokens *t, int32_t id, const char *piece, size_t len,
                    int is_prompt, float logprob)
{
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 64;
        size_t lk = (size_t)t->n_layer * (size_t)t->k;
        float *lg = t->logits;
        if (grow((void **)&t->piece, sizeof(char *), cap) ||
            grow((void **)&t->id, sizeof(int32_t), cap) ||
            grow((void **)&t->is_prompt, 1, cap) ||
            grow((void **)&t->logprob, sizeof(float), cap) ||
            grow((void **)&t->experts, sizeof(int32_t) * lk, cap) ||
            grow((void **)&t->weights, sizeof(float) * lk, cap) ||
            grow((void **)&t->entropy, sizeof(float), cap))
            return -1;
        if (t->keep_logits) {
            if (grow((void **)&lg, sizeof(float) * (size_t)t->n_layer * (size_t)t->n_expert, cap))
                return -1;
            t->logits = lg;
        }
        t->cap = cap;
    }
    char *p = malloc(len + 1);
    if (!p)
        return -1;
    memcpy(p, piece, len);
    p[len] = 0;
    int i = t->n++;
    size_t lk = (size_t)t->n_layer * (size_t)t->k;
    t->piece[i] = p;
    t->id[i] = id;
    t->is_prompt[i] = (uint8_t)(is_prompt != 0);
    t->logprob[i] = logprob;
    t->entropy[i] = NAN;
    for (size_t j = 0; j < lk; j++) {
        t->experts[(size_t)i * lk + j] = -1;
        t->weights[(size_t)i * lk + j] = 0.0f;
    }
    if (t->logits) {
        size_t le = (size_t)t->n_layer * (size_t)t->n_expert;
        for (size_t j = 0; j < le; j++)
            t->logits[(size_t)i * le + j] = NAN;
    }
    return i;
}

int tui_tokens_put(TuiTokens *t, int pos, int32_t id, const char *piece, size_t len,
                   int is_prompt, float logprob)
{
    if (pos < 0)
        return -1;
    while (t->n < pos)
        if (tui_tokens_push(t, -1, "", 0, is_prompt, NAN) < 0)
            return -1;
    if (pos == t->n)
        return tui_tokens_push(t, id, piece, len, is_prompt, logprob);
    char *p = malloc(len + 1);
    if (!p)
        return -1;
    memcpy(p, piece, len);
    p[len] = 0;
    free(t->piece[pos]);
    t->piece[pos] = p;
    t->id[pos] = id;
    t->is_prompt[pos] = (uint8_t)(is_prompt != 0);
    t->logprob[pos] = logprob;
    return pos;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 :
           c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

size_t tui_piece_text(const char *raw, char *buf, size_t cap)
{
    size_t o = 0, n = strlen(raw);
    if (cap == 0)
        return 0;
    /* "<0xNN>" alone is one byte */
    if (n == 6 && raw[0] == '<' && raw[1] == '0' && raw[2] == 'x' && raw[5] == '>' &&
        hexval(raw[3]) >= 0 && hexval(raw[4]) >= 0) {
        if (cap > 1)
            buf[o++] = (char)(hexval(raw[3]) * 16 + hexval(raw[4]));
        buf[o] = 0;
        return o;
    }
    for (size_t i = 0; i < n && o + 1 < cap;) {
        const unsigned char *s = (const unsigned char *)raw + i;
        if (i + 3 <= n && s[0] == 0xE2 && s[1] == 0x96 && s[2] == 0x81) {   /* ▁ */
            buf[o++] = ' ';
            i += 3;
        } else if (i + 2 <= n && s[0] == 0xC4 && s[1] == 0xA0) {            /* Ġ */
            buf[o++] = ' ';
            i += 2;
        } else if (i + 2 <= n && s[0] == 0xC4 && s[1] == 0x8A) {            /* Ċ */
            buf[o++] = '\n';
            i += 2;
        } else {
            buf[o++] = raw[i++];
        }
    }
    buf[o] = 0;
    return o;
}

void tui_tokens_to_text(TuiTokens *t, const TuiRunner *r)
{
    char buf[512];
    for (int i = 0; i < t->n; i++) {
        int n = -1;
        if (r && r->piece)
            n = r->piece(r->self, t->id[i], t->piece[i], strlen(t->piece[i]), buf, (int)sizeof buf - 1);
        if (n < 0 || n > (int)sizeof buf - 1)
            n = (int)tui_piece_text(t->piece[i], buf, sizeof buf);
        if (n == 0)
            continue;   /* a control token (BOS...): keep its name, e.g. <s> */
        buf[n] = 0;
        char *p = malloc((size_t)n + 1);
        if (!p)
            continue;
        memcpy(p, buf, (size_t)n + 1);
        free(t->piece[i]);
        t->piece[i] = p;
    }
}

/* Entropy (nats) of softmax(logits). */
static float softmax_entropy(const float *l, int n)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (l[i] > mx)
            mx = l[i];
    if (!isfinite(mx))
        return NAN;
    double z = 0.0, s = 0.0;
    for (int i = 0; i < n; i++)
        z += exp((double)(l[i] - mx));
    for (int i = 0; i < n; i++) {
        double p = exp((double)(l[i] - mx)) / z;
        if (p > 0.0)
            s -= p * log(p);
    }
    return (float)s;
}

int tui_tokens_set_route(TuiTokens *t, int i, int layer, const int32_t *experts,
                         const float *weights, int k, const float *logits)
{
    if (i < 0 || i >= t->n || layer < 0 || layer >= t->n_layer)
        return -1;
    size_t lk = (size_t)t->n_layer * (size_t)t->k;
    int32_t *ex = t->experts + (size_t)i * lk + (size_t)layer * (size_t)t->k;
    float *wt = t->weights + (size_t)i * lk + (size_t)layer * (size_t)t->k;
    for (int j = 0; j < t->k; j++) {
        ex[j] = j < k ? experts[j] : -1;
        wt[j] = j < k && weights ? weights[j] : 0.0f;
    }
    if (logits) {
        float h = softmax_entropy(logits, t->n_expert);
        /* running mean over layers that reported logits */
        if (t->logits) {
            size_t le = (size_t)t->n_layer * (size_t)t->n_expert;
            memcpy(t->logits + (size_t)i * le + (size_t)layer * (size_t)t->n_expert,
                   logits, sizeof(float) * (size_t)t->n_expert);
            double s = 0.0;
            int c = 0;
            for (int l = 0; l < t->n_layer; l++) {
                const float *ll = t->logits + (size_t)i * le + (size_t)l * (size_t)t->n_expert;
                if (!isnan(ll[0])) {
                    s += softmax_entropy(ll, t->n_expert);
                    c++;
                }
            }
            t->entropy[i] = c ? (float)(s / c) : NAN;
        } else {
            t->entropy[i] = isnan(t->entropy[i]) ? h : t->entropy[i];
        }
    }
    return 0;
}

int tui_tokens_hit(const TuiTokens *t, int i, int layer, int expert)
{
    if (i < 0 || i >= t->n || layer < 0 || layer >= t->n_layer)
        return 0;
    size_t lk = (size_t)t->n_layer * (size_t)t->k;
    const int32_t *ex = t->experts + (size_t)i * lk + (size_t)layer * (size_t)t->k;
    for (int j = 0; j < t->k; j++)
        if (ex[j] == expert)
            return 1;
    return 0;
}

void tui_runs_done(TuiRunList *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n; i++) {
        free(r->a[i].prompt);
        free(r->a[i].ivs);
    }
    free(r->a);
    memset(r, 0, sizeof *r);
}

static char *dupstr(const char *s)
{
    size_t n = strlen(s ? s : "");
    char *p = malloc(n + 1);
    if (p)
        memcpy(p, s ? s : "", n + 1);
    return p;
}

int tui_runs_push(TuiRunList *r, const TuiRun *run)
{
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 32;
        if (grow((void **)&r->a, sizeof(TuiRun), cap))
            return -1;
        r->cap = cap;
    }
    TuiRun *d = &r->a[r->n];
    *d = *run;
    d->prompt = dupstr(run->prompt);
    d->ivs = dupstr(run->ivs);
    if (!d->prompt || !d->ivs) {
        free(d->prompt);
        free(d->ivs);
        return -1;
    }
    r->n++;
    return 0;
}

void tui_ci_done(TuiCi *c)
{
    if (!c)
        return;
    free(c->delta);
    free(c->lo);
    free(c->hi);
    free(c->q);
    free(c->has);
    memset(c, 0, sizeof *c);
}
