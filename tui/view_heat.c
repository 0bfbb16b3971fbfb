/*
** tui/view_heat.c — the main screen: heatmap of layers × experts on top,
** the run's tokens below it, the route of the selected token at the bottom.
** Tab moves the keys between the heatmap and the tokens; the steering keys
** act on the cell under the cursor.
*/
#include "tui/app.h"

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int delta_ref;      /* -1 off, 0 "rest of the tag", 1.. other tags */
} HeatPriv;

static const char *const heat_keys[] = {
    "F1", "Help", "F2", "Runs", "F3", "Tokens", "F4", "Expert", "F5", "Steer",
    "d", "disable", "f", "force", "+/-", "bias", "r", "re-run", "q", "Quit", NULL
};

static const char *tc_name(TuiTokColor c)
{
    return c == TUI_TC_HIT ? "routed to the cursor expert" : c == TUI_TC_ENTROPY ? "router entropy" : "logprob";
}

void tui_main_screen(TuiApp *a, int focus_tokens)
{
    TuiLayout *L = &a->lay;
    tui_draw_header(a);
    tui_draw_heatmap(a, L->heat, !focus_tokens);
    char title[160];
    int hits = 0;
    for (int i = 0; i < a->toks.n; i++)
        hits += tui_tokens_hit(&a->toks, i, a->sel_layer, a->sel_expert);
    if (a->tok_color == TUI_TC_HIT)
        snprintf(title, sizeof title, "Tokens: %d, %d routed to L%d:E%d", a->toks.n, hits, a->sel_layer, a->sel_expert);
    else
        snprintf(title, sizeof title, "Tokens: %d, coloured by %s", a->toks.n, tc_name(a->tok_color));
    tui_draw_box(a, L->tokens, title, focus_tokens);
    TuiRect in = { L->tokens.x + 1, L->tokens.y + 1, L->tokens.w - 2, L->tokens.h - 2 };
    tui_draw_tokens(a, in, focus_tokens, &a->toks, -1, 1);
    if (L->route.h > 0)
        tui_draw_route(a, L->route);
    char st[320];
    tui_status_cell(a, st, sizeof st);
    if (a->running) {
        size_t o = strlen(st);
        snprintf(st + o, sizeof st - o, "   running %d/%d", a->run_done, a->run_total);
    }
    tui_draw_status(a, st);
    tui_draw_keys(a, heat_keys);
}

static void heat_draw(TuiView *v, TuiApp *a)
{
    (void)v;
    tui_main_screen(a, a->focus_tokens);
}

/* Distinct tags in the run list, in order of first appearance. */
static int tag_list(const TuiApp *a, const char **out, int cap)
{
    int n = 0;
    for (int i = 0; i < a->runs.n; i++) {
        const char *t = a->runs.a[i].tag;
        if (!t[0])
            continue;
        int seen = 0;
        for (int j = 0; j < n; j++)
            if (!strcmp(out[j], t))
                seen = 1;
        if (!seen && n < cap)
            out[n++] = t;
    }
    return n;
}

/* Cycle the Δ reference: rest of this run's tag → each other tag → off. */
static void cycle_delta(TuiApp *a, HeatPriv *p)
{
    const char *tags[64];
    int nt = tag_list(a, tags, 64);
    const char *mine = a->cur_run >= 0 ? a->runs.a[a->cur_run].tag : "";
    char err[256] = "";
    if (!a->src) {
        tui_app_msg(a, "no database: nothing to compare against");
        return;
    }
    for (;;) {
        p->delta_ref++;
        if (p->delta_ref > nt) {
            p->delta_ref = -1;
            a->hm_delta = 0;
            tui_ci_done(&a->ci);
            tui_app_regrid(a);
            return;
        }
        if (p->delta_ref > 0 && !strcmp(tags[p->delta_ref - 1], mine))
            continue;
        break;
    }
    TuiAgg o;
    memset(&o, 0, sizeof o);
    int rc;
    tui_ci_done(&a->ci);
    if (p->delta_ref == 0) {
        rc = a->src->load_tag_agg(a->src->self, mine, 1, &o, err, sizeof err);
        if (mine[0])
            snprintf(a->other_label, sizeof a->other_label, "not %.56s", mine);
        else
            snprintf(a->other_label, sizeof a->other_label, "tagged runs");
    } else {
        rc = a->src->load_tag_agg(a->src->self, tags[p->delta_ref - 1], 0, &o, err, sizeof err);
        snprintf(a->other_label, sizeof a->other_label, "%s", tags[p->delta_ref - 1]);
    }
    if (rc || o.n_tok == 0 || o.n_layer != a->agg.n_layer || o.n_expert != a->agg.n_expert) {
        tui_agg_done(&o);
        tui_app_msg(a, "delta: no comparable runs for %s", a->other_label);
        if (p->delta_ref >= nt) {
            p->delta_ref = -1;
            a->hm_delta = 0;
            tui_app_regrid(a);
        }
        return;
    }
    tui_agg_done(&a->other);
    a->other = o;
    a->have_other = 1;
    a->hm_delta = 1;
    /* against another tag: intervals and q-values from the contrast */
    tui_ci_done(&a->ci);
    if (p->delta_ref > 0 && mine[0] && a->src->contrast &&
        a->src->contrast(a->src->self, mine, tags[p->delta_ref - 1], &a->ci, err, sizeof err))
        tui_app_msg(a, "%s", err);
    tui_app_regrid(a);
}

static int mouse_heat(TuiApp *a)
{
    const TuiHmGeom *g = &a->geom;
    TuiRect r = a->lay.heat;
    int x0 = r.x + 1 + TUI_HM_LABEL, y0 = r.y + 2;
    int my = a->mouse_y, mx = a->mouse_x;
    if (my >= y0 && my < y0 + g->rows && mx >= x0 - 1 && mx < x0 + g->cols * TUI_HM_CELL) {
        int c = (mx - x0 + 1) / TUI_HM_CELL, row = my - y0;
        if (c >= g->cols)
            c = g->cols - 1;
        a->sel_expert = (g->e0 + c) * g->egroup;
        a->sel_layer = (g->l0 + row) * g->lgroup;
        a->focus_tokens = 0;
        return TUI_K_HANDLED | TUI_K_REDRAW;
    }
    for (int i = 0; i < a->n_tokpos; i++) {
        const TuiTokPos *t = &a->tokpos[i];
        if (my == t->y && mx >= t->x && mx < t->x + t->w) {
            a->sel_tok = t->i;
            a->focus_tokens = 1;
            return TUI_K_HANDLED | TUI_K_REDRAW;
        }
    }
    return TUI_K_IGNORED;
}

int tui_tokens_key(TuiApp *a, int key)
{
    int n = a->toks.n;
    switch (key) {
    case KEY_LEFT: case 'h': a->sel_tok--; break;
    case KEY_RIGHT: case 'l': a->sel_tok++; break;
    case KEY_UP: a->sel_tok -= 10; break;
    case KEY_DOWN: a->sel_tok += 10; break;
    case KEY_HOME: a->sel_tok = 0; break;
    case KEY_END: a->sel_tok = n - 1; break;
    case 't': a->tok_color = (TuiTokColor)((a->tok_color + 1) % 3); break;
    case '\r': case '\n': case KEY_ENTER: {
        /* select the token's first expert at the cursor layer */
        size_t lk = (size_t)a->toks.n_layer * (size_t)a->toks.k;
        if (n > 0) {
            int e = a->toks.experts[(size_t)a->sel_tok * lk + (size_t)a->sel_layer * (size_t)a->toks.k];
            if (e >= 0)
                a->sel_expert = e;
        }
        break;
    }
    default: return TUI_K_IGNORED;
    }
    if (a->sel_tok >= n)
        a->sel_tok = n - 1;
    if (a->sel_tok < 0)
        a->sel_tok = 0;
    return TUI_K_HANDLED | TUI_K_REDRAW;
}

static int heat_key(TuiView *v, TuiApp *a, int key)
{
    HeatPriv *p = v->priv;
    int L = a->agg.n_layer, E = a->agg.n_expert;
    if (L <= 0)
        return TUI_K_IGNORED;
    if (key == KEY_MOUSE)
        return mouse_heat(a);
    if (key == '\t') {
        a->focus_tokens = !a->focus_tokens;
        return TUI_K_HANDLED | TUI_K_REDRAW;
    }
    if (a->focus_tokens) {
        int r = tui_tokens_key(a, key);
        if (r != TUI_K_IGNORED)
            return r;
    }
    int es = a->condense ? a->geom.egroup : 1, ls = a->condense ? a->geom.lgroup : 1;
    switch (key) {
    case KEY_UP: a->sel_layer -= ls; break;
    case KEY_DOWN: case 'j': a->sel_layer += ls; break;
    case KEY_LEFT: case 'h': a->sel_expert -= es; break;
    case KEY_RIGHT: case 'l': a->sel_expert += es; break;
    case KEY_PPAGE: a->sel_layer -= a->geom.rows > 1 ? a->geom.rows : 1; break;
    case KEY_NPAGE: a->sel_layer += a->geom.rows > 1 ? a->geom.rows : 1; break;
    case KEY_HOME: a->sel_expert = 0; break;
    case KEY_END: a->sel_expert = E - 1; break;
    case 'w':
        a->hm_value = a->hm_value == TUI_HM_SHARE ? TUI_HM_WEIGHT : TUI_HM_SHARE;
        tui_app_regrid(a);
        break;
    case 'p':
        a->hm_part = (TuiHmPart)((a->hm_part + 1) % 3);
        tui_app_regrid(a);
        break;
    case 'x':
        cycle_delta(a, p);
        break;
    case 'c':
        a->condense = !a->condense;
        memset(&a->geom, 0, sizeof a->geom);
        break;
    case 't':
        a->tok_color = (TuiTokColor)((a->tok_color + 1) % 3);
        break;
    case '\r': case '\n': case KEY_ENTER:
        tui_app_show(a, TUI_V_EXPERT);
        break;
    case 'r': {
        const char *prompt = a->cur_run >= 0 && a->cur_run < a->runs.n ? a->runs.a[a->cur_run].prompt : NULL;
        if (!prompt) {
            tui_app_msg(a, "no prompt to re-run");
            break;
        }
        char pr[4096];
        snprintf(pr, sizeof pr, "%s", prompt);
        tui_app_start_run(a, pr, 1);
        break;
    }
    default:
        return tui_iv_key(a, key);
    }
    if (a->sel_layer < 0)
        a->sel_layer = 0;
    if (a->sel_layer >= L)
        a->sel_layer = L - 1;
    if (a->sel_expert < 0)
        a->sel_expert = 0;
    if (a->sel_expert >= E)
        a->sel_expert = E - 1;
    return TUI_K_HANDLED | TUI_K_REDRAW;
}

static void heat_free(TuiView *v)
{
    free(v->priv);
    v->priv = NULL;
}

static void heat_resize(TuiView *v, TuiApp *a)
{
    (void)a;
    if (!v->priv) {
        v->priv = calloc(1, sizeof(HeatPriv));
        if (v->priv)
            ((HeatPriv *)v->priv)->delta_ref = -1;
    }
}

static int heat_key_safe(TuiView *v, TuiApp *a, int key)
{
    if (!v->priv)
        heat_resize(v, a);
    if (!v->priv)
        return TUI_K_IGNORED;
    return heat_key(v, a, key);
}

const TuiViewClass tui_view_heat_class = {
    .name = "heatmap",
    .draw = heat_draw,
    .on_key = heat_key_safe,
    .resize = heat_resize,
    .free = heat_free,
};
