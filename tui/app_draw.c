/*
** tui/app_draw.c — drawing shared by the views: boxes, clipped text, the
** header/status/key bar, and the three panes of the main screen (heatmap,
** tokens, route of a token).  Everything draws into stdscr; the main loop
** refreshes once per frame with doupdate().
**
** Untrusted strings always go through tui_draw_text(), which escapes them
** and, in a non-UTF-8 locale, replaces non-ASCII characters with '?'.
*/
#include "tui/app.h"

#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

int tui_attr(TuiApp *a, int pair)
{
    if (a->term.colors != TUI_COLORS_NONE) {
        int extra = (pair == TUI_C_TITLE || pair == TUI_C_HEADER || pair == TUI_C_KEY) ? A_BOLD : 0;
        return (int)COLOR_PAIR(pair) | extra;
    }
    switch (pair) {
    case TUI_C_HEADER: case TUI_C_SELECTED: case TUI_C_STATUS: case TUI_C_KEYLABEL:
        return A_REVERSE;
    case TUI_C_HIT: return A_UNDERLINE | A_BOLD;
    case TUI_C_IV: return A_BOLD | A_UNDERLINE;
    case TUI_C_DIVERGE: return A_REVERSE | A_BOLD;
    case TUI_C_TITLE: case TUI_C_MARK: case TUI_C_WARN: case TUI_C_KEY: return A_BOLD;
    default: return A_NORMAL;
    }
}

/* In a C locale keep only ASCII: replace each non-ASCII character by '?'. */
static void ascii_only(char *s)
{
    char *o = s;
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        int n = tui_utf8_len(s + i, len - i);
        *o++ = ((unsigned char)s[i] < 0x80) ? s[i] : '?';
        i += (size_t)n;
    }
    *o = 0;
}

int tui_draw_str(TuiApp *a, int y, int x, int w, const char *s, int attr)
{
    if (w <= 0 || y < 0 || y >= a->h || x >= a->w)
        return 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", s);
    if (!a->term.utf8)
        ascii_only(buf);
    size_t n = tui_str_fit(buf, w);
    buf[n] = 0;
    attron(attr);
    mvaddstr(y, x, buf);
    attroff(attr);
    return tui_str_width(buf);
}

int tui_draw_text(TuiApp *a, int y, int x, int w, const char *s, int attr)
{
    char buf[1024];
    tui_escape(s, strlen(s), buf, sizeof buf);
    return tui_draw_str(a, y, x, w, buf, attr);
}

void tui_draw_fill(TuiRect r)
{
    for (int y = r.y; y < r.y + r.h; y++) {
        move(y, r.x);
        for (int x = 0; x < r.w; x++)
            addch(' ');
    }
}

void tui_draw_box(TuiApp *a, TuiRect r, const char *title, int focus)
{
    if (r.w < 2 || r.h < 2)
        return;
    int at = tui_attr(a, TUI_C_BORDER) | (focus ? A_BOLD : 0);
    attron(at);
    mvaddch(r.y, r.x, ACS_ULCORNER);
    mvhline(r.y, r.x + 1, ACS_HLINE, r.w - 2);
    mvaddch(r.y, r.x + r.w - 1, ACS_URCORNER);
    mvvline(r.y + 1, r.x, ACS_VLINE, r.h - 2);
    mvvline(r.y + 1, r.x + r.w - 1, ACS_VLINE, r.h - 2);
    mvaddch(r.y + r.h - 1, r.x, ACS_LLCORNER);
    mvhline(r.y + r.h - 1, r.x + 1, ACS_HLINE, r.w - 2);
    mvaddch(r.y + r.h - 1, r.x + r.w - 1, ACS_LRCORNER);
    attroff(at);
    if (title && r.w > 6) {
        char t[256];
        snprintf(t, sizeof t, " %s ", title);
        tui_draw_str(a, r.y, r.x + 2, r.w - 4, t, tui_attr(a, TUI_C_TITLE) | (focus ? A_BOLD : 0));
    }
}

void tui_draw_header(TuiApp *a)
{
    TuiRect r = { 0, 0, a->w, 1 };
    int at = tui_attr(a, TUI_C_HEADER);
    attron(at);
    tui_draw_fill(r);
    attroff(at);
    char right[160] = "";
    if (a->running)
        snprintf(right, sizeof right, "running %d/%d ", a->run_done, a->run_total);
    else if (a->cur_run >= 0 && a->cur_run < a->runs.n) {
        const TuiRun *run = &a->runs.a[a->cur_run];
        if (a->n_set > 1)
            snprintf(right, sizeof right, "%s  %d runs ", a->set_label, a->n_set);
        else
            snprintf(right, sizeof right, "run %lld  tag %s  %d tok ", (long long)run->id,
                     run->tag[0] ? run->tag : "-", run->n_tok);
    }
    int rw = tui_str_width(right);
    tui_draw_str(a, 0, 0, a->w, " moescope ", at | A_BOLD);
    tui_draw_text(a, 0, 10, a->w - 10 - rw - 1, a->title, at);
    if (rw < a->w - 12)
        tui_draw_text(a, 0, a->w - rw, rw, right, at);
}

void tui_draw_keys(TuiApp *a, const char *const *pairs)
{
    int y = a->h - 1, x = 0;
    move(y, 0);
    clrtoeol();
    for (int i = 0; pairs[i] && pairs[i + 1] && x < a->w; i += 2) {
        x += tui_draw_str(a, y, x, a->w - x, pairs[i], tui_attr(a, TUI_C_KEY));
        x += tui_draw_str(a, y, x, a->w - x, pairs[i + 1], tui_attr(a, TUI_C_KEYLABEL));
        x += tui_draw_str(a, y, x, a->w - x, " ", 0);
    }
}

void tui_draw_status(TuiApp *a, const char *s)
{
    int y = a->h - 2;
    int at = tui_attr(a, a->msg[0] ? TUI_C_WARN : TUI_C_STATUS);
    attron(at);
    tui_draw_fill((TuiRect){ 0, y, a->w, 1 });
    attroff(at);
    tui_draw_str(a, y, 1, a->w - 2, a->msg[0] ? a->msg : s, at);
}

void tui_draw_small(TuiApp *a)
{
    erase();
    if (a->w < 1 || a->h < 1)
        return;
    char l1[64], l2[64];
    snprintf(l1, sizeof l1, "moescope needs %dx%d", TUI_MIN_W, TUI_MIN_H);
    snprintf(l2, sizeof l2, "terminal is %dx%d", a->w, a->h);
    const char *lines[2] = { l1, l2 };
    int y = a->h / 2 - 1;
    if (y < 0)
        y = 0;
    /* each line wrapped at the width, as many rows as there are */
    for (int i = 0; i < 2; i++)
        for (size_t off = 0, n = strlen(lines[i]); off < n && y < a->h; off += (size_t)a->w, y++)
            mvaddnstr(y, 0, lines[i] + off, a->w);
}

/* ---- heatmap --------------------------------------------------------- */

static int heat_bins(const TuiApp *a)
{
    return a->term.colors == TUI_COLORS_256 ? 8 : 4;
}

static void grid_scale(const TuiApp *a, TuiScale *s)
{
    float mx = 0.0f;
    size_t n = (size_t)a->grid.n_layer * (size_t)a->grid.n_expert;
    for (size_t i = 0; i < n; i++) {
        float v = fabsf(a->grid.v[i]);
        if (v > mx)
            mx = v;
    }
    tui_scale_make(s, a->grid.diverging ? TUI_SCALE_DIV : TUI_SCALE_SEQ, mx,
                   a->grid.diverging ? 4 : heat_bins(a), a->hm_value == TUI_HM_SHARE);
}

int tui_iv_find(const TuiApp *a, int layer, int expert, EngIvKind kind)
{
    for (int i = 0; i < a->n_iv; i++) {
        const EngIv *v = &a->ivs[i];
        if (v->kind == kind && v->layer == layer && (kind == ENG_IV_TOPK || v->expert == expert))
            return i;
    }
    return -1;
}

/* Marker for an intervention on a cell, or NULL. */
static const char *iv_mark(const TuiApp *a, int l, int e)
{
    for (int i = 0; i < a->n_iv; i++) {
        const EngIv *v = &a->ivs[i];
        if (v->kind == ENG_IV_TOPK || v->kind == ENG_IV_TOPP)
            continue;
        if (v->expert != e || (v->layer != -1 && v->layer != l))
            continue;
        if (v->kind == ENG_IV_DISABLE)
            return "XX";
        if (v->kind == ENG_IV_FORCE)
            return "FF";
        return v->value >= 0 ? "B+" : "B-";
    }
    return NULL;
}

/* Visible column of the cursor expert. */
static int cc_label(const TuiApp *a, const TuiHmGeom *g)
{
    return a->sel_expert / g->egroup - g->e0;
}

void tui_draw_heatmap(TuiApp *a, TuiRect r, int focus)
{
    char title[200];
    const char *what = a->hm_value == TUI_HM_SHARE ? "share of tokens routed" : "weight mass per token";
    const char *part = a->hm_part == TUI_HM_ALL ? "[all]" : a->hm_part == TUI_HM_PROMPT ? "[prompt]" : "[gen]";
    snprintf(title, sizeof title, "Heatmap: %s %s%s%s%s%s", what, part,
             a->hm_delta ? "  delta vs " : "", a->hm_delta ? a->other_label : "",
             a->condense ? "  condensed" : "",
             !a->agg.n_counted ? "" : a->hm_part == TUI_HM_ALL
                 ? "  incl. count-only runs (no token views)"
                 : "  not available: count-only runs have no prompt/gen split");
    tui_draw_box(a, r, title, focus);
    if (!a->grid.v || r.w < 4 || r.h < 3)
        return;
    int x0 = r.x + 1, y0 = r.y + 1, iw = r.w - 2, ih = r.h - 2;
    const int side = 26;
    int gw = iw;
    /* legend beside the grid only when the grid keeps enough room */
    int need = TUI_HM_LABEL + TUI_HM_CELL * a->grid.n_expert + 1;
    if (iw - side >= (need < 60 ? need : 60))
        gw = need < iw - side ? need : iw - side;
    TuiHmGeom *g = &a->geom;
    tui_hm_geom(g, a->grid.n_layer, a->grid.n_expert, gw, ih, a->condense, a->sel_layer, a->sel_expert);
    TuiScale sc;
    grid_scale(a, &sc);
    char num[16];
    /* expert numbers, right-aligned over their cells; a number is skipped
    ** when it would touch the previous one (three digits) */
    int last_end = -1;
    for (int c = 0; c < g->cols; c++) {
        int e = (g->e0 + c) * g->egroup;
        int len = snprintf(num, sizeof num, "%d", e);
        int xe = x0 + TUI_HM_LABEL + c * TUI_HM_CELL + 1;      /* last column of the cell */
        int xs = xe - len + 1;
        if (xs <= last_end + 1 && c != cc_label(a, g))
            continue;
        tui_draw_str(a, y0, xs, len, num, c == cc_label(a, g) ? A_BOLD : A_DIM);
        last_end = xe;
    }
    int cl = a->sel_layer / g->lgroup - g->l0, cc = a->sel_expert / g->egroup - g->e0;
    for (int row = 0; row < g->rows; row++) {
        int l = (g->l0 + row) * g->lgroup, y = y0 + 1 + row;
        snprintf(num, sizeof num, "L%d", l);
        tui_draw_str(a, y, x0, TUI_HM_LABEL - 1, num, row == cl ? A_BOLD : A_DIM);
        for (int c = 0; c < g->cols; c++) {
            int x = x0 + TUI_HM_LABEL + c * TUI_HM_CELL;
            float v = tui_hm_cell(&a->grid, g, row, c);
            int bin = tui_scale_bin(&sc, v);
            const char *glyph = tui_scale_glyph(&sc, bin, a->term.utf8);
            int at = tui_attr(a, tui_scale_pair(&sc, bin, a->term.colors));
            const char *mk = g->egroup == 1 && g->lgroup == 1 ? iv_mark(a, l, (g->e0 + c)) : NULL;
            if (mk) {
                glyph = mk;
                at = tui_attr(a, TUI_C_IV);
            }
            if (row == cl && c == cc) {
                at = tui_attr(a, TUI_C_SELECTED) | A_BOLD;
                if (bin == 0 && !mk)
                    glyph = "..";
                tui_draw_str(a, y, x - 1, 1, "[", A_BOLD);
                tui_draw_str(a, y, x + 2, 1, "]", A_BOLD);
            }
            tui_draw_str(a, y, x, 2, glyph, at);
        }
    }
    /* side panel: legend, then the interventions */
    if (gw < iw) {
        int sx = x0 + gw + 1, sw = iw - gw - 1, y = y0;
        /* two bins per row: low/high halves (SEQ), minus/plus (DIV) */
        char lab[48];
        int rows = sc.kind == TUI_SCALE_DIV ? sc.nbins : (sc.nbins + 1) / 2;
        for (int i = 0; i < rows && y < y0 + ih; i++, y++) {
            int b1 = sc.kind == TUI_SCALE_DIV ? -(i + 1) : 2 * i + 1;
            int b2 = sc.kind == TUI_SCALE_DIV ? i + 1 : 2 * i + 2;
            for (int half = 0; half < 2; half++) {
                int b = half ? b2 : b1, x = sx + half * 12;
                if (b > sc.nbins || x + 10 > sx + sw)
                    continue;
                tui_scale_label(&sc, b, lab, sizeof lab);
                tui_draw_str(a, y, x, 2, tui_scale_glyph(&sc, b, a->term.utf8),
                             tui_attr(a, tui_scale_pair(&sc, b, a->term.colors)));
                tui_draw_str(a, y, x + 3, 9, lab, 0);
            }
        }
        if (y < y0 + ih)
            tui_draw_str(a, y++, sx, sw, a->n_iv ? "interventions" : "no interventions", tui_attr(a, TUI_C_TITLE));
        for (int i = 0; i < a->n_iv && y < y0 + ih; i++) {
            char t[96];
            tui_iv_text(&a->ivs[i], t, sizeof t);
            tui_draw_str(a, y++, sx, sw, t, tui_attr(a, TUI_C_IV));
        }
    }
}

void tui_status_cell(TuiApp *a, char *buf, size_t cap)
{
    const TuiAgg *g = &a->agg;
    buf[0] = 0;
    if (!g->cnt || a->sel_layer >= g->n_layer || a->sel_expert >= g->n_expert)
        return;
    size_t i = (size_t)a->sel_layer * (size_t)g->n_expert + (size_t)a->sel_expert;
    const char *dot = a->term.utf8 ? " · " : " | ";
    int n_gen = g->n_tok - g->n_prompt;
    float cg = g->cnt[i] - g->cnt_p[i];
    int o = g->n_counted
                ? snprintf(buf, cap, "L%d:E%d routed %.0f/%d tokens (%.1f %%)%sweight %.2f%s"
                           "%d tokens from count-only runs: prompt/gen not available",
                           a->sel_layer, a->sel_expert, (double)g->cnt[i], g->n_tok,
                           g->n_tok ? 100.0 * (double)g->cnt[i] / g->n_tok : 0.0, dot,
                           (double)g->wt[i], dot, g->n_counted)
                : snprintf(buf, cap, "L%d:E%d routed %.0f/%d tokens (%.1f %%)%sweight %.2f%sprompt %.0f/%d%sgen %.0f/%d",
                     a->sel_layer, a->sel_expert, (double)g->cnt[i], g->n_tok,
                     g->n_tok ? 100.0 * (double)g->cnt[i] / g->n_tok : 0.0, dot,
                     (double)g->wt[i], dot, (double)g->cnt_p[i], g->n_prompt, dot, (double)cg, n_gen);
    if (a->hm_delta && a->grid.v && o > 0 && (size_t)o < cap) {
        const TuiCi *c = &a->ci;
        size_t ci = (size_t)a->sel_layer * (size_t)c->n_expert + (size_t)a->sel_expert;
        if (c->has && a->sel_layer < c->n_layer && a->sel_expert < c->n_expert && c->has[ci])
            snprintf(buf + o, cap - (size_t)o, "%sdelta vs %s %+.3f [%+.3f, %+.3f] q=%.2g", dot,
                     a->other_label, (double)c->delta[ci], (double)c->lo[ci], (double)c->hi[ci],
                     (double)c->q[ci]);
        else
            snprintf(buf + o, cap - (size_t)o, "%sdelta vs %s %+.3f", dot, a->other_label,
                     (double)a->grid.v[i]);
    }
}

/* ---- tokens ---------------------------------------------------------- */

void tui_tok_disp(const TuiApp *a, const TuiTokens *t, int i, char *buf, size_t cap)
{
    const char *p = t->piece[i];
    size_t o = 0;
    buf[0] = 0;
    while (*p && o + 8 < cap) {
        const char *nl = strchr(p, '\n');
        size_t seg = nl ? (size_t)(nl - p) : strlen(p);
        o += tui_escape(p, seg, buf + o, cap - o);
        if (o >= cap) {
            o = cap - 1;
            break;
        }
        if (!nl)
            break;
        o += (size_t)snprintf(buf + o, cap - o, "%s", a->term.utf8 ? "⏎" : "\\n");
        p = nl + 1;
    }
    if (o >= cap)
        o = cap - 1;
    buf[o] = 0;
    if (!buf[0])
        snprintf(buf, cap, "%s", a->term.utf8 ? "∅" : "_");
}

/* Display form with a visible mark before the token where texts part. */
static void tok_disp_mark(const TuiApp *a, const TuiTokens *t, int i, int mark, char *buf, size_t cap)
{
    if (i != mark) {
        tui_tok_disp(a, t, i, buf, cap);
        return;
    }
    const char *m = a->term.utf8 ? "│" : "|";
    size_t ml = strlen(m);
    memcpy(buf, m, ml);
    tui_tok_disp(a, t, i, buf + ml, cap - ml);
}

static int tok_attr(TuiApp *a, const TuiTokens *t, int i)
{
    int at = t->is_prompt[i] ? 0 : A_BOLD;
    TuiScale sc;
    switch (a->tok_color) {
    case TUI_TC_HIT:
        if (tui_tokens_hit(t, i, a->sel_layer, a->sel_expert))
            at |= tui_attr(a, TUI_C_HIT);
        break;
    case TUI_TC_ENTROPY:
        if (!isnan(t->entropy[i])) {
            tui_scale_make(&sc, TUI_SCALE_SEQ, logf((float)t->n_expert), heat_bins(a), 0);
            at |= tui_attr(a, tui_scale_pair(&sc, tui_scale_bin(&sc, t->entropy[i]), a->term.colors));
        }
        break;
    case TUI_TC_LOGPROB:
        if (!isnan(t->logprob[i])) {
            tui_scale_make(&sc, TUI_SCALE_SEQ, 8.0f, heat_bins(a), 0);
            at |= tui_attr(a, tui_scale_pair(&sc, tui_scale_bin(&sc, -t->logprob[i]), a->term.colors));
        }
        break;
    }
    return at;
}

void tui_draw_tokens(TuiApp *a, TuiRect r, int focus, const TuiTokens *t,
                     int mark_from, int record_pos)
{
    if (record_pos)
        a->n_tokpos = 0;
    if (r.w < 3 || r.h < 1 || !t || t->n == 0)
        return;
    int x0 = r.x, y0 = r.y, iw = r.w, ih = r.h;
    /* first pass: the row of every token, to scroll the selection into view */
    char d[256];
    int row = 0, col = 0, selrow = 0;
    int sel = record_pos ? a->sel_tok : (mark_from >= 0 ? mark_from : 0);
    for (int i = 0; i < t->n; i++) {
        tok_disp_mark(a, t, i, mark_from, d, sizeof d);
        int w = tui_str_width(d);
        if (w > iw)
            w = iw;
        if (col + w > iw) {
            row++;
            col = 0;
        }
        if (i == sel)
            selrow = row;
        col += w;
    }
    int top = selrow >= ih ? selrow - ih + 1 : 0;
    row = 0;
    col = 0;
    for (int i = 0; i < t->n; i++) {
        tok_disp_mark(a, t, i, mark_from, d, sizeof d);
        int w = tui_str_width(d);
        if (w > iw)
            w = iw;
        if (col + w > iw) {
            row++;
            col = 0;
        }
        if (row >= top + ih)
            break;
        if (row >= top) {
            int at = tok_attr(a, t, i);
            if (i == mark_from)
                at = tui_attr(a, TUI_C_DIVERGE);
            if (record_pos && i == a->sel_tok && focus)
                at = tui_attr(a, TUI_C_SELECTED) | A_BOLD;
            else if (record_pos && i == a->sel_tok)
                at |= A_UNDERLINE;
            tui_draw_str(a, y0 + row - top, x0 + col, w, d, at);
            if (record_pos && a->n_tokpos < TUI_MAX_TOKPOS)
                a->tokpos[a->n_tokpos++] = (TuiTokPos){ y0 + row - top, x0 + col, w, i };
        }
        col += w;
    }
}

void tui_draw_route(TuiApp *a, TuiRect r)
{
    const TuiTokens *t = &a->toks;
    char title[256];
    if (t->n == 0 || a->sel_tok < 0 || a->sel_tok >= t->n) {
        tui_draw_box(a, r, "Route", 0);
        return;
    }
    char d[64];
    tui_tok_disp(a, t, a->sel_tok, d, sizeof d);
    char lp[32] = "";
    if (!isnan(t->logprob[a->sel_tok]))
        snprintf(lp, sizeof lp, "  logprob %.2f", (double)t->logprob[a->sel_tok]);
    char ent[32] = "";
    if (!isnan(t->entropy[a->sel_tok]))
        snprintf(ent, sizeof ent, "  router entropy %.2f", (double)t->entropy[a->sel_tok]);
    snprintf(title, sizeof title, "Route of token \"%s\" (pos %d, %s)%s%s", d, a->sel_tok,
             t->is_prompt[a->sel_tok] ? "prompt" : "generated", lp, ent);
    tui_draw_box(a, r, title, 0);
    int x0 = r.x + 1, y0 = r.y + 1, iw = r.w - 2, ih = r.h - 2;
    if (iw < 10 || ih < 1)
        return;
    int k = t->k;
    /* the widest weight bars (6..2 cells) with which the layers fit in the
    ** rows there are; router-logit bars (one cell per expert) when room */
    int barw = 6, colw = 0, ncols = 1, rows = t->n_layer, spark = 0;
    for (int bw = 6; bw >= 2; bw--) {
        int cw = 5 + k * (10 + bw + 1) + 1;
        int sp = t->logits && t->n_expert <= 64 && iw >= cw + t->n_expert + 1;
        if (sp)
            cw += t->n_expert + 1;
        int nc = iw / cw > 0 ? iw / cw : 1;
        int r = (t->n_layer + nc - 1) / nc;
        barw = bw;
        colw = cw;
        ncols = nc;
        rows = r;
        spark = sp;
        if (r <= ih)
            break;
    }
    int first = 0;
    if (rows > ih) {
        /* not enough rows: one column around the selected layer */
        ncols = 1;
        rows = ih;
        first = a->sel_layer - ih / 2;
        if (first > t->n_layer - ih)
            first = t->n_layer - ih;
        if (first < 0)
            first = 0;
    }
    size_t lk = (size_t)t->n_layer * (size_t)k;
    const int32_t *ex = t->experts + (size_t)a->sel_tok * lk;
    const float *wt = t->weights + (size_t)a->sel_tok * lk;
    for (int l = first; l < t->n_layer; l++) {
        int idx = l - first, c = idx / rows, rr = idx % rows;
        if (c >= ncols)
            break;
        int x = x0 + c * colw, y = y0 + rr;
        char lab[16];
        snprintf(lab, sizeof lab, "L%d", l);
        tui_draw_str(a, y, x, 4, lab, l == a->sel_layer ? A_BOLD : A_DIM);
        x += 5;
        for (int j = 0; j < k; j++) {
            int e = ex[(size_t)l * (size_t)k + (size_t)j];
            if (e < 0)
                continue;
            float w = wt[(size_t)l * (size_t)k + (size_t)j];
            char it[32], bar[64];
            snprintf(it, sizeof it, "e%-3d %.2f", e, (double)w);
            int at = (l == a->sel_layer && e == a->sel_expert) ? tui_attr(a, TUI_C_HIT) : 0;
            tui_draw_str(a, y, x, x0 + iw - x, it, at);
            tui_bar(w, barw, a->term.utf8, bar, sizeof bar);
            tui_draw_str(a, y, x + 10, barw, bar, tui_attr(a, a->term.colors ? TUI_C_HEAT0 + 4 : TUI_C_NORMAL));
            x += 10 + barw + 1;
        }
        if (spark) {
            static const char *const u8[8] = { "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█" };
            static const char *const as[8] = { "_", ".", ":", "-", "=", "+", "*", "#" };
            const float *lg = t->logits + ((size_t)a->sel_tok * (size_t)t->n_layer + (size_t)l) * (size_t)t->n_expert;
            float mx = -INFINITY;
            for (int e = 0; e < t->n_expert; e++)
                if (lg[e] > mx)
                    mx = lg[e];
            if (!isfinite(mx))
                continue;
            char sp[64 * 3 + 1];
            size_t o = 0;
            for (int e = 0; e < t->n_expert; e++) {
                /* probability relative to the top expert's */
                float p = expf(lg[e] - mx);
                int lv = (int)(p * 7.0f + 0.5f);
                const char *g = a->term.utf8 ? u8[lv] : as[lv];
                size_t gl = strlen(g);
                memcpy(sp + o, g, gl);
                o += gl;
            }
            sp[o] = 0;
            tui_draw_str(a, y, x, t->n_expert, sp, tui_attr(a, a->term.colors ? TUI_C_TITLE : TUI_C_NORMAL));
        }
    }
}
