/*
** tui/view_expert.c — one expert (layer, expert): its load in each tag,
** the tokens of the open run routed to it (highest weight first, with
** context), the experts it is chosen together with, and its contrast:
** share in this run's tag minus share in the rest.
*/
#include "tui/app.h"

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TAGS 32

typedef struct {
    int layer, expert, run, valid;
    int n_tags;
    char tag[MAX_TAGS][64];
    float share[MAX_TAGS];
    int n_tok[MAX_TAGS];
    float contrast;
    int have_contrast;
    int top;        /* scroll of the token list */
} ExpPriv;

static const char *const exp_keys[] = {
    "<-/->", "Expert", "Up/Dn", "Layer", "d", "disable", "f", "force", "Esc", "Back",
    "F1", "Help", "q", "Quit", NULL
};

static float share_of(const TuiAgg *g, int l, int e)
{
    if (!g->cnt || g->n_tok <= 0 || l >= g->n_layer || e >= g->n_expert)
        return 0.0f;
    return g->cnt[(size_t)l * (size_t)g->n_expert + (size_t)e] / (float)g->n_tok;
}

static void refresh_tags(TuiApp *a, ExpPriv *p)
{
    if (p->valid && p->layer == a->sel_layer && p->expert == a->sel_expert && p->run == a->cur_run)
        return;
    p->valid = 1;
    p->layer = a->sel_layer;
    p->expert = a->sel_expert;
    p->run = a->cur_run;
    p->n_tags = 0;
    p->have_contrast = 0;
    if (!a->src)
        return;
    char err[256];
    for (int i = 0; i < a->runs.n && p->n_tags < MAX_TAGS; i++) {
        const char *t = a->runs.a[i].tag;
        int seen = 0;
        for (int j = 0; j < p->n_tags; j++)
            if (!strcmp(p->tag[j], t))
                seen = 1;
        if (seen || !t[0])
            continue;
        TuiAgg g;
        memset(&g, 0, sizeof g);
        if (a->src->load_tag_agg(a->src->self, t, 0, &g, err, sizeof err) == 0) {
            snprintf(p->tag[p->n_tags], sizeof p->tag[0], "%s", t);
            p->share[p->n_tags] = share_of(&g, p->layer, p->expert);
            p->n_tok[p->n_tags] = g.n_tok;
            p->n_tags++;
        }
        tui_agg_done(&g);
    }
    const char *mine = a->cur_run >= 0 && a->cur_run < a->runs.n ? a->runs.a[a->cur_run].tag : "";
    if (mine[0]) {
        TuiAgg in, out;
        memset(&in, 0, sizeof in);
        memset(&out, 0, sizeof out);
        if (a->src->load_tag_agg(a->src->self, mine, 0, &in, err, sizeof err) == 0 &&
            a->src->load_tag_agg(a->src->self, mine, 1, &out, err, sizeof err) == 0 && out.n_tok > 0) {
            p->contrast = share_of(&in, p->layer, p->expert) - share_of(&out, p->layer, p->expert);
            p->have_contrast = 1;
        }
        tui_agg_done(&in);
        tui_agg_done(&out);
    }
}

typedef struct { int i; float w; } Hit;

static int hit_cmp(const void *x, const void *y)
{
    const Hit *a = x, *b = y;
    return a->w < b->w ? 1 : a->w > b->w ? -1 : a->i - b->i;
}

static void expert_draw(TuiView *v, TuiApp *a)
{
    if (!v->priv)
        v->priv = calloc(1, sizeof(ExpPriv));
    ExpPriv *p = v->priv;
    if (!p)
        return;
    refresh_tags(a, p);
    tui_draw_header(a);
    int L = a->sel_layer, E = a->sel_expert;
    char title[128];
    snprintf(title, sizeof title, "Expert L%d:E%d", L, E);
    TuiRect box = { 0, 1, a->w, a->h - 3 };
    tui_draw_box(a, box, title, 1);
    int x0 = 2, y = 2, iw = a->w - 4, yend = a->h - 3;
    int half = iw / 2;
    char line[512], bar[128];

    /* left column: load per tag, co-activation */
    int yl = y;
    tui_draw_str(a, yl++, x0, half, "load per tag (share of tokens)", tui_attr(a, TUI_C_TITLE));
    float mx = 0.0f;
    for (int i = 0; i < p->n_tags; i++)
        if (p->share[i] > mx)
            mx = p->share[i];
    for (int i = 0; i < p->n_tags && yl < yend; i++) {
        char tg[64];
        tui_escape(p->tag[i], strlen(p->tag[i]), tg, sizeof tg);
        tui_bar(mx > 0 ? p->share[i] / mx : 0, 16, a->term.utf8, bar, sizeof bar);
        snprintf(line, sizeof line, "%-12.12s %5.1f%% ", tg, 100.0 * (double)p->share[i]);
        int w = tui_draw_str(a, yl, x0, half, line, 0);
        tui_draw_str(a, yl++, x0 + w, half - w, bar, tui_attr(a, a->term.colors ? TUI_C_HEAT0 + 5 : TUI_C_NORMAL));
    }
    if (p->n_tags == 0 && yl < yend)
        tui_draw_str(a, yl++, x0, half, "(no tagged runs)", A_DIM);
    if (p->have_contrast && yl < yend) {
        snprintf(line, sizeof line, "contrast (this tag - rest): %+.1f points", 100.0 * (double)p->contrast);
        tui_draw_str(a, yl++, x0, half, line, A_BOLD);
    }
    yl++;
    if (yl < yend)
        tui_draw_str(a, yl++, x0, half, "co-activated in this layer (this run)", tui_attr(a, TUI_C_TITLE));
    const TuiTokens *t = &a->toks;
    int nE = t->n_expert > 0 ? t->n_expert : 1;
    int *co = calloc((size_t)nE, sizeof(int));
    Hit *hits = calloc((size_t)(t->n > 0 ? t->n : 1), sizeof(Hit));
    int nh = 0;
    if (co && hits && L < t->n_layer) {
        size_t lk = (size_t)t->n_layer * (size_t)t->k;
        for (int i = 0; i < t->n; i++) {
            const int32_t *ex = t->experts + (size_t)i * lk + (size_t)L * (size_t)t->k;
            const float *wt = t->weights + (size_t)i * lk + (size_t)L * (size_t)t->k;
            int found = -1;
            for (int j = 0; j < t->k; j++)
                if (ex[j] == E)
                    found = j;
            if (found < 0)
                continue;
            hits[nh++] = (Hit){ i, wt[found] };
            for (int j = 0; j < t->k; j++)
                if (ex[j] >= 0 && ex[j] < nE && ex[j] != E)
                    co[ex[j]]++;
        }
        for (int shown = 0; shown < 8 && yl < yend; shown++) {
            int best = -1;
            for (int e = 0; e < nE; e++)
                if (co[e] > 0 && (best < 0 || co[e] > co[best]))
                    best = e;
            if (best < 0)
                break;
            tui_bar(nh ? (float)co[best] / (float)nh : 0, 16, a->term.utf8, bar, sizeof bar);
            snprintf(line, sizeof line, "E%-4d %3d of %d  ", best, co[best], nh);
            int w = tui_draw_str(a, yl, x0, half, line, 0);
            tui_draw_str(a, yl++, x0 + w, half - w, bar, tui_attr(a, a->term.colors ? TUI_C_HEAT0 + 3 : TUI_C_NORMAL));
            co[best] = 0;
        }
    }
    /* right column: top tokens with context */
    int xr = x0 + half + 1, wr = iw - half - 1;
    int yr = y;
    snprintf(line, sizeof line, "tokens routed here: %d of %d (by weight)", nh, t->n);
    tui_draw_str(a, yr++, xr, wr, line, tui_attr(a, TUI_C_TITLE));
    if (hits && nh > 0) {
        qsort(hits, (size_t)nh, sizeof(Hit), hit_cmp);
        if (p->top > nh - 1)
            p->top = nh - 1;
        for (int h = p->top; h < nh && yr < yend; h++) {
            int i = hits[h].i;
            char ctx[512] = "", d[128];
            size_t o = 0;
            for (int c = i - 3; c <= i + 2 && o < sizeof ctx - 140; c++) {
                if (c < 0 || c >= t->n)
                    continue;
                tui_tok_disp(a, t, c, d, sizeof d);
                o += (size_t)snprintf(ctx + o, sizeof ctx - o, c == i ? "[%s]" : "%s", d);
            }
            snprintf(line, sizeof line, "%.2f  %4d  ", (double)hits[h].w, i);
            int w = tui_draw_str(a, yr, xr, wr, line, A_DIM);
            tui_draw_str(a, yr++, xr + w, wr - w, ctx, t->is_prompt[i] ? 0 : A_BOLD);
        }
    }
    free(co);
    free(hits);
    char st[320];
    tui_status_cell(a, st, sizeof st);
    tui_draw_status(a, st);
    tui_draw_keys(a, exp_keys);
}

static int expert_key(TuiView *v, TuiApp *a, int key)
{
    ExpPriv *p = v->priv;
    int L = a->agg.n_layer, E = a->agg.n_expert;
    switch (key) {
    case KEY_LEFT: case 'h': if (a->sel_expert > 0) a->sel_expert--; break;
    case KEY_RIGHT: case 'l': if (a->sel_expert < E - 1) a->sel_expert++; break;
    case KEY_UP: if (a->sel_layer > 0) a->sel_layer--; break;
    case KEY_DOWN: case 'j': if (a->sel_layer < L - 1) a->sel_layer++; break;
    case KEY_NPAGE: if (p) p->top += 5; break;
    case KEY_PPAGE: if (p && (p->top -= 5) < 0) p->top = 0; break;
    case '\r': case '\n': case KEY_ENTER:
        tui_app_back(a);
        break;
    default:
        return tui_iv_key(a, key);
    }
    return TUI_K_HANDLED | TUI_K_REDRAW;
}

static void expert_free(TuiView *v)
{
    free(v->priv);
    v->priv = NULL;
}

const TuiViewClass tui_view_expert_class = {
    .name = "expert",
    .draw = expert_draw,
    .on_key = expert_key,
    .resize = NULL,
    .free = expert_free,
};
