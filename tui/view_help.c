/*
** tui/view_help.c — every key, by screen.  Scrolls with the list keys.
*/
#include "tui/app.h"

#include <curses.h>
#include <stdlib.h>

static const char *const help[] = {
    "Everywhere",
    "  F1 ?        this help                 F2          runs",
    "  F3          tokens                    F4          expert under the cursor",
    "  F5          steer (interventions)     F6 P        prompt: type and generate",
    "  e           export the table on screen to CSV (moescope-VIEW-RUN.csv)",
    "  Esc Bksp    back                      q           quit",
    "  mouse       click selects a run, a heatmap cell or a token",
    "",
    "Runs",
    "  Up/Down j/k PgUp/PgDn Home/End g/G   move",
    "  Enter       open the run (or the marked runs together)",
    "  Space       mark/unmark              u   clear marks",
    "  t           cycle the tag filter      /   search prompt, tag, model",
    "",
    "Heatmap (main screen)",
    "  arrows h/j/l  move the cell           PgUp/PgDn  page layers",
    "  Enter       open the expert           Tab  keys to the tokens pane",
    "  w           share of tokens / weight mass",
    "  p           all / prompt-only / generated-only positions",
    "  x           delta vs the rest of the tag, then vs each other tag, then off",
    "  c           condense big grids to fit (maximum per block)",
    "  t           token colouring: routed-to-cursor / router entropy / logprob",
    "  d           disable the cursor expert (again: remove)",
    "  f           force the cursor expert   +/-  bias it by +-0.5",
    "  k / K       top-k one less / one more (all layers)",
    "  r           re-run the prompt with the interventions (child run)",
    "",
    "Tokens (pane or F3)",
    "  Left/Right  move the token            Up/Down  layer (F3) / 10 tokens (pane)",
    "  Enter       the token's expert at the cursor layer",
    "",
    "Steer (F5)",
    "  Up/Down     pick an intervention      x Del  delete it",
    "  s           scope: all / prompt / gen / from the selected token",
    "  +/-         change its value (bias, top-k)",
    "  r           re-run                    Esc  back (cancels a running run)",
    "",
    "Prompt (F6)",
    "  type text (UTF-8, Enter = new line)   Ctrl-G or F10  generate",
    "  c           cancel a running generation   Esc  back",
    NULL
};

typedef struct { int cur, top; } HelpPriv;

static void help_draw(TuiView *v, TuiApp *a)
{
    HelpPriv *p = v->priv;
    int top = p ? p->top : 0;
    tui_draw_header(a);
    TuiRect box = { 0, 1, a->w, a->h - 3 };
    tui_draw_box(a, box, "Help", 1);
    int n = 0;
    while (help[n])
        n++;
    for (int r = 0; r < box.h - 2 && top + r < n; r++) {
        const char *s = help[top + r];
        tui_draw_str(a, 2 + r, 2, a->w - 4, s, s[0] != ' ' ? tui_attr(a, TUI_C_TITLE) : 0);
    }
    tui_draw_status(a, "moescope: browse routing, steer experts, compare runs");
    static const char *const keys[] = { "Esc", "Back", "Up/Dn", "Scroll", "q", "Quit", NULL };
    tui_draw_keys(a, keys);
}

static int help_key(TuiView *v, TuiApp *a, int key)
{
    if (!v->priv)
        v->priv = calloc(1, sizeof(HelpPriv));
    HelpPriv *p = v->priv;
    if (!p)
        return TUI_K_IGNORED;
    int n = 0;
    while (help[n])
        n++;
    int page = a->h - 5;
    /* scroll: the cursor is the top line */
    int r = tui_list_nav(key, &p->top, &p->cur, n - page > 0 ? n - page + 1 : 1, 1);
    if (r != TUI_K_IGNORED)
        return r;
    if (key == KEY_F(1) || key == '?') {
        tui_app_back(a);
        return TUI_K_HANDLED | TUI_K_REDRAW;
    }
    return TUI_K_IGNORED;
}

static void help_free(TuiView *v)
{
    free(v->priv);
    v->priv = NULL;
}

const TuiViewClass tui_view_help_class = {
    .name = "help",
    .draw = help_draw,
    .on_key = help_key,
    .resize = NULL,
    .free = help_free,
};
