/*
** tui/view_tokens.c — the run's text full screen: each token coloured by
** the chosen measure (routed to the cursor expert, router entropy,
** logprob); the route of the token under the cursor through every layer.
** Up/down pick the layer the colouring and the route highlight refer to.
*/
#include "tui/app.h"

#include <curses.h>
#include <stdio.h>
#include <string.h>

static const char *const tok_keys[] = {
    "<-/->", "Token", "Up/Dn", "Layer", "t", "Colour", "Enter", "Expert", "Esc", "Back",
    "F1", "Help", "q", "Quit", NULL
};

static void tokens_draw(TuiView *v, TuiApp *a)
{
    (void)v;
    tui_draw_header(a);
    int n_layer = a->toks.n_layer > 0 ? a->toks.n_layer : 1;
    int route_h = (n_layer + 1) / 2 + 2;
    if (route_h > (a->h - 3) / 2)
        route_h = (a->h - 3) / 2;
    TuiRect tb = { 0, 1, a->w, a->h - 3 - route_h };
    TuiRect rb = { 0, 1 + tb.h, a->w, route_h };
    static const char *const names[] = { "routed to", "router entropy", "logprob" };
    char title[160];
    if (a->tok_color == TUI_TC_HIT)
        snprintf(title, sizeof title, "Tokens: coloured by %s L%d:E%d", names[0], a->sel_layer, a->sel_expert);
    else
        snprintf(title, sizeof title, "Tokens: coloured by %s", names[a->tok_color]);
    tui_draw_box(a, tb, title, 1);
    tui_draw_tokens(a, (TuiRect){ 1, 2, a->w - 2, tb.h - 2 }, 1, &a->toks, -1, 1);
    tui_draw_route(a, rb);
    char st[320];
    tui_status_cell(a, st, sizeof st);
    tui_draw_status(a, st);
    tui_draw_keys(a, tok_keys);
}

static int tokens_key(TuiView *v, TuiApp *a, int key)
{
    (void)v;
    if (a->toks.n == 0)
        return TUI_K_IGNORED;
    switch (key) {
    case KEY_UP:
    case 'k':
        if (a->sel_layer > 0)
            a->sel_layer--;
        return TUI_K_HANDLED | TUI_K_REDRAW;
    case KEY_DOWN:
    case 'j':
        if (a->sel_layer < a->toks.n_layer - 1)
            a->sel_layer++;
        return TUI_K_HANDLED | TUI_K_REDRAW;
    case '\r': case '\n': case KEY_ENTER:
        tui_tokens_key(a, key);
        tui_app_show(a, TUI_V_EXPERT);
        return TUI_K_HANDLED | TUI_K_REDRAW;
    case KEY_MOUSE:
        for (int i = 0; i < a->n_tokpos; i++) {
            const TuiTokPos *t = &a->tokpos[i];
            if (a->mouse_y == t->y && a->mouse_x >= t->x && a->mouse_x < t->x + t->w) {
                a->sel_tok = t->i;
                return TUI_K_HANDLED | TUI_K_REDRAW;
            }
        }
        return TUI_K_IGNORED;
    }
    return tui_tokens_key(a, key);
}

const TuiViewClass tui_view_tokens_class = {
    .name = "tokens",
    .draw = tokens_draw,
    .on_key = tokens_key,
    .resize = NULL,
    .free = NULL,
};
