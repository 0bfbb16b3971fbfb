/*
** tui/view_runs.c — the runs in the database: one row per run with its
** tag, model, tokens, interventions, status, date and the start of its
** prompt.  t cycles a tag filter, / searches prompts and tags, space marks
** runs to view together, Enter opens the run (or the marked set).
*/
#include "tui/app.h"

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int cur, top;           /* in the filtered list */
    int *idx, n, cap;       /* filtered run indexes */
    char tag[64];           /* "" = every tag */
    char query[128];
    int qlen, searching;
} RunsPriv;

static const char *const runs_keys[] = {
    "Enter", "Open", "Space", "Mark", "/", "Search", "t", "Tag", "P", "Prompt",
    "F1", "Help", "q", "Quit", NULL
};

static int match(const TuiRun *r, const RunsPriv *p)
{
    if (p->tag[0] && strcmp(r->tag, p->tag))
        return 0;
    if (p->query[0] && !strstr(r->prompt, p->query) && !strstr(r->tag, p->query) &&
        !strstr(r->model, p->query))
        return 0;
    return 1;
}

static void refilter(TuiApp *a, RunsPriv *p)
{
    if (p->cap < a->runs.n) {
        int *q = realloc(p->idx, sizeof(int) * (size_t)(a->runs.n + 16));
        if (!q)
            return;
        p->idx = q;
        p->cap = a->runs.n + 16;
    }
    p->n = 0;
    for (int i = 0; i < a->runs.n; i++)
        if (match(&a->runs.a[i], p))
            p->idx[p->n++] = i;
    if (p->cur >= p->n)
        p->cur = p->n > 0 ? p->n - 1 : 0;
}

static RunsPriv *priv(TuiView *v)
{
    if (!v->priv)
        v->priv = calloc(1, sizeof(RunsPriv));
    return v->priv;
}

static void runs_draw(TuiView *v, TuiApp *a)
{
    RunsPriv *p = priv(v);
    if (!p)
        return;
    refilter(a, p);
    tui_draw_header(a);
    TuiRect box = { 0, 1, a->w, a->h - 3 };
    char title[400];
    int nm = 0;
    for (int i = 0; i < a->runs.n; i++)
        nm += a->runs.a[i].marked;
    snprintf(title, sizeof title, "Runs: %d of %d%s%s%s%s", p->n, a->runs.n,
             p->tag[0] ? "  tag " : "", p->tag, p->query[0] ? "  search " : "", p->query);
    tui_draw_box(a, box, title, 1);
    int x0 = 1, y0 = 2, iw = a->w - 2, ih = a->h - 5;
    char row[1024];
    snprintf(row, sizeof row, "  %5s %-10s %-16s %5s %-24s %-9s %-16s %s", "run", "tag", "model",
             "tok", "interventions", "status", "date", "prompt");
    tui_draw_str(a, y0, x0, iw, row, A_BOLD | A_UNDERLINE);
    int page = ih - 1;
    if (p->cur < p->top)
        p->top = p->cur;
    if (p->cur >= p->top + page)
        p->top = p->cur - page + 1;
    if (p->top < 0)
        p->top = 0;
    for (int r = 0; r < page && p->top + r < p->n; r++) {
        const TuiRun *run = &a->runs.a[p->idx[p->top + r]];
        char pr[256], ivs[128], tag[64], model[64];
        tui_escape(run->prompt, strlen(run->prompt), pr, sizeof pr);
        tui_escape(run->ivs, strlen(run->ivs), ivs, sizeof ivs);
        tui_escape(run->tag, strlen(run->tag), tag, sizeof tag);
        tui_escape(run->model, strlen(run->model), model, sizeof model);
        char id[32];
        if (run->parent)
            snprintf(id, sizeof id, "%lld<%lld", (long long)run->id, (long long)run->parent);
        else
            snprintf(id, sizeof id, "%lld", (long long)run->id);
        snprintf(row, sizeof row, "%c %5s %-10.10s %-16.16s %5d %-24.24s %-9.9s %-16.16s %s",
                 run->marked ? '*' : ' ', id, tag[0] ? tag : "-", model, run->n_tok,
                 ivs[0] ? ivs : "-", run->status, run->date, pr);
        int sel = p->top + r == p->cur;
        int at = sel ? tui_attr(a, TUI_C_SELECTED) : run->marked ? tui_attr(a, TUI_C_MARK) : 0;
        if (sel) {
            attron(at);
            tui_draw_fill((TuiRect){ x0, y0 + 1 + r, iw, 1 });
            attroff(at);
        }
        /* the row is already escaped: draw it as is */
        tui_draw_str(a, y0 + 1 + r, x0, iw, row, at);
    }
    if (p->n == 0)
        tui_draw_str(a, y0 + 2, x0 + 2, iw - 2,
                     a->src ? "no runs match (record some with: moescope run -m MODEL -p TEXT --db FILE)"
                            : "no database open (moescope tui --db FILE)", 0);
    char st[256];
    if (p->searching)
        snprintf(st, sizeof st, "search: %s_   (Enter keeps it, Esc clears)", p->query);
    else if (p->n > 0) {
        const TuiRun *run = &a->runs.a[p->idx[p->cur]];
        snprintf(st, sizeof st, "run %lld: %d tokens (%d prompt)%s%s", (long long)run->id, run->n_tok,
                 run->n_prompt, nm ? ", marked: " : "", nm ? "Enter opens the marked set" : "");
    } else
        st[0] = 0;
    tui_draw_status(a, st);
    tui_draw_keys(a, runs_keys);
}

static int search_key(TuiApp *a, RunsPriv *p, int key)
{
    (void)a;
    if (key == 27) {
        p->query[0] = 0;
        p->qlen = 0;
        p->searching = 0;
    } else if (key == '\r' || key == '\n' || key == KEY_ENTER) {
        p->searching = 0;
    } else if (key == KEY_BACKSPACE || key == 127 || key == 8) {
        while (p->qlen > 0 && ((unsigned char)p->query[p->qlen - 1] & 0xC0) == 0x80)
            p->qlen--;
        if (p->qlen > 0)
            p->qlen--;
        p->query[p->qlen] = 0;
    } else if (key >= 32 && key < 256 && key != 127 && p->qlen < (int)sizeof p->query - 1) {
        p->query[p->qlen++] = (char)key;
        p->query[p->qlen] = 0;
    } else if (key == KEY_RESIZE) {
        return TUI_K_IGNORED;
    }
    p->cur = 0;
    p->top = 0;
    return TUI_K_HANDLED | TUI_K_REDRAW;
}

static int runs_key(TuiView *v, TuiApp *a, int key)
{
    RunsPriv *p = priv(v);
    if (!p)
        return TUI_K_IGNORED;
    refilter(a, p);
    if (p->searching)
        return search_key(a, p, key);
    int page = a->h - 6;
    int r = tui_list_nav(key, &p->cur, &p->top, p->n, page);
    if (r != TUI_K_IGNORED)
        return r;
    switch (key) {
    case '/':
        p->searching = 1;
        return TUI_K_HANDLED | TUI_K_REDRAW;
    case ' ':
        if (p->n > 0) {
            a->runs.a[p->idx[p->cur]].marked ^= 1;
            if (p->cur < p->n - 1)
                p->cur++;
        }
        return TUI_K_HANDLED | TUI_K_REDRAW;
    case 'u':
        for (int i = 0; i < a->runs.n; i++)
            a->runs.a[i].marked = 0;
        return TUI_K_HANDLED | TUI_K_REDRAW;
    case 't': {
        /* next tag after the current filter, then back to all */
        const char *next = NULL;
        int passed = p->tag[0] == 0;
        for (int i = 0; i < a->runs.n && !next; i++) {
            const char *t = a->runs.a[i].tag;
            if (!t[0])
                continue;
            if (passed) {
                int seen = 0;   /* skip tags already offered before */
                for (int j = 0; j < i; j++)
                    if (!strcmp(a->runs.a[j].tag, t))
                        seen = 1;
                if (!seen)
                    next = t;
            } else if (!strcmp(t, p->tag)) {
                passed = 1;
            }
        }
        snprintf(p->tag, sizeof p->tag, "%s", next ? next : "");
        p->cur = p->top = 0;
        return TUI_K_HANDLED | TUI_K_REDRAW;
    }
    case '\r': case '\n': case KEY_ENTER:
        if (p->n > 0 && tui_app_open_run(a, p->idx[p->cur]) == 0)
            tui_app_show(a, TUI_V_HEAT);
        return TUI_K_HANDLED | TUI_K_REDRAW;
    case KEY_MOUSE: {
        int row = a->mouse_y - 3;
        if (row >= 0 && p->top + row < p->n) {
            p->cur = p->top + row;
            return TUI_K_HANDLED | TUI_K_REDRAW;
        }
        return TUI_K_IGNORED;
    }
    case 27:
        return TUI_K_HANDLED;   /* the first screen: nothing to go back to */
    }
    return TUI_K_IGNORED;
}

static void runs_free(TuiView *v)
{
    RunsPriv *p = v->priv;
    if (p)
        free(p->idx);
    free(p);
    v->priv = NULL;
}

const TuiViewClass tui_view_runs_class = {
    .name = "runs",
    .draw = runs_draw,
    .on_key = runs_key,
    .resize = NULL,
    .free = runs_free,
};
