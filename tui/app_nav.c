/*
** tui/app_nav.c — movement shared by the views: list navigation and the
** heatmap's scroll/condense geometry.  Pure functions on integers.
*/
#include "tui/app.h"

#include <curses.h>
#include <string.h>

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

int tui_list_nav(int key, int *cur, int *top, int n, int page)
{
    int c = *cur;
    if (page < 1)
        page = 1;
    switch (key) {
    case KEY_UP: case 'k': c--; break;
    case KEY_DOWN: case 'j': c++; break;
    case KEY_PPAGE: c -= page; break;
    case KEY_NPAGE: c += page; break;
    case KEY_HOME: case 'g': c = 0; break;
    case KEY_END: case 'G': c = n - 1; break;
    default: return TUI_K_IGNORED;
    }
    c = n > 0 ? clampi(c, 0, n - 1) : 0;
    *cur = c;
    if (c < *top)
        *top = c;
    if (c >= *top + page)
        *top = c - page + 1;
    *top = clampi(*top, 0, n > page ? n - page : 0);
    return TUI_K_HANDLED | TUI_K_REDRAW;
}

static int ceil_div(int a, int b) { return b > 0 ? (a + b - 1) / b : 0; }

/* Keep unit u visible in a window of size vis starting at *off over n units. */
static void follow(int *off, int u, int vis, int n)
{
    if (vis <= 0) {
        *off = 0;
        return;
    }
    if (u < *off)
        *off = u;
    if (u >= *off + vis)
        *off = u - vis + 1;
    *off = clampi(*off, 0, n > vis ? n - vis : 0);
}

void tui_hm_geom(TuiHmGeom *g, int n_layer, int n_expert, int w, int h,
                 int condense, int cl, int ce)
{
    int e0 = g->e0, l0 = g->l0;
    memset(g, 0, sizeof *g);
    g->egroup = g->lgroup = 1;
    if (n_layer < 1 || n_expert < 1)
        return;
    int cols = (w - TUI_HM_LABEL) / TUI_HM_CELL;
    int rows = h - 1;
    if (cols < 1 || rows < 1)
        return;
    if (condense) {
        g->egroup = ceil_div(n_expert, cols);
        g->lgroup = ceil_div(n_layer, rows);
    }
    g->n_ecol = ceil_div(n_expert, g->egroup);
    g->n_lrow = ceil_div(n_layer, g->lgroup);
    g->cols = g->n_ecol < cols ? g->n_ecol : cols;
    g->rows = g->n_lrow < rows ? g->n_lrow : rows;
    g->e0 = e0;
    g->l0 = l0;
    follow(&g->e0, clampi(ce, 0, n_expert - 1) / g->egroup, g->cols, g->n_ecol);
    follow(&g->l0, clampi(cl, 0, n_layer - 1) / g->lgroup, g->rows, g->n_lrow);
}

float tui_hm_cell(const TuiGrid *gr, const TuiHmGeom *g, int row, int col)
{
    int la = (g->l0 + row) * g->lgroup, ea = (g->e0 + col) * g->egroup;
    float best = 0.0f;
    int first = 1;
    for (int l = la; l < la + g->lgroup && l < gr->n_layer; l++)
        for (int e = ea; e < ea + g->egroup && e < gr->n_expert; e++) {
            float v = gr->v[(size_t)l * (size_t)gr->n_expert + (size_t)e];
            /* for diverging grids keep the value of largest magnitude */
            float m = v < 0 ? -v : v, bm = best < 0 ? -best : best;
            if (first || (gr->diverging ? m > bm : v > best))
                best = v;
            first = 0;
        }
    return best;
}
