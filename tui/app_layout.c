/*
** tui/app_layout.c — where each pane of the main screen goes.
**
** Pure arithmetic on the terminal size so the tests can check every size
** from 0×0 up: a header row, a status row and a key bar at the bottom, and
** between them the heatmap box (as tall as its layers need, leaving room for
** the text), the tokens box and, when there is room, the route box.
*/
#include "tui/app.h"

#include <string.h>

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

void tui_layout_compute(int w, int h, int n_layer, TuiLayout *out)
{
    memset(out, 0, sizeof *out);
    if (w < TUI_MIN_W || h < TUI_MIN_H)
        return;
    if (n_layer < 1)
        n_layer = 1;
    out->ok = 1;
    out->header = (TuiRect){ 0, 0, w, 1 };
    out->keys = (TuiRect){ 0, h - 1, w, 1 };
    out->status = (TuiRect){ 0, h - 2, w, 1 };
    int bh = h - 3;                         /* rows 1 .. h-3 */
    out->body = (TuiRect){ 0, 1, w, bh };

    /* heatmap: its rows + expert-number row + two borders, but leave at
    ** least 4 rows for the text below */
    int heat_h = imin(n_layer + 3, imax(5, bh - 8));
    heat_h = imin(heat_h, bh - 4);
    int rest = bh - heat_h;
    /* route pane: two layers per row, only when the text keeps 4 rows */
    int route_h = 0;
    if (rest >= 8)
        route_h = imin(rest - 4, imax(3, (n_layer + 1) / 2 + 2));
    int tok_h = rest - route_h;

    out->heat = (TuiRect){ 0, 1, w, heat_h };
    out->tokens = (TuiRect){ 0, 1 + heat_h, w, tok_h };
    out->route = (TuiRect){ 0, 1 + heat_h + tok_h, w, route_h };
}
