/*
** tui/app.c — the app object: view stack, key dispatch, the bridge from
** the worker queue into the data model, and the full-screen loop.
**
** The loop is htop's: getch() with a timeout so the engine's events are
** applied even when no key is pressed; a key goes to the current view first
** and, if the view ignores it, to the global keys (help, screens, export,
** back, quit); views whose state changed are marked dirty and only then
** redrawn, with a single doupdate() per frame.  KEY_RESIZE recomputes the
** layout; below the minimum size a plain notice is shown.  Fatal and
** termination signals restore the terminal before the default action.
*/
#include "tui/app.h"

#include <curses.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const TuiViewClass *const classes[TUI_V_COUNT] = {
    [TUI_V_RUNS] = &tui_view_runs_class,
    [TUI_V_HEAT] = &tui_view_heat_class,
    [TUI_V_TOKENS] = &tui_view_tokens_class,
    [TUI_V_EXPERT] = &tui_view_expert_class,
    [TUI_V_STEER] = &tui_view_steer_class,
    [TUI_V_PROMPT] = &tui_view_prompt_class,
    [TUI_V_HELP] = &tui_view_help_class,
};

void tui_app_msg(TuiApp *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->msg, sizeof a->msg, fmt, ap);
    va_end(ap);
    a->views[a->cur].dirty = 1;
}

static int load_runs(TuiApp *a)
{
    char err[256] = "";
    tui_runs_done(&a->runs);
    if (!a->src)
        return 0;
    if (a->src->list_runs(a->src->self, &a->runs, err, sizeof err)) {
        tui_app_msg(a, "%s", err);
        return -1;
    }
    return 0;
}

int tui_app_init(TuiApp *a, TuiSource *src, TuiRunner *runner, const char *title)
{
    memset(a, 0, sizeof *a);
    a->src = src;
    a->runner = runner;
    a->cur_run = -1;
    a->sel_tok = 0;
    snprintf(a->title, sizeof a->title, "%s", title ? title : "");
    a->term.utf8 = 1;
    if (tui_queue_init(&a->q))
        return -1;
    for (int i = 0; i < TUI_V_COUNT; i++) {
        a->views[i].cls = classes[i];
        a->views[i].dirty = 1;
    }
    a->cur = TUI_V_RUNS;
    a->w = 80;
    a->h = 24;
    tui_layout_compute(a->w, a->h, 1, &a->lay);
    load_runs(a);
    return 0;
}

static void stop_worker(TuiApp *a)
{
    if (!a->running)
        return;
    tui_queue_cancel(&a->q);
    if (a->runner && a->runner->join)
        a->runner->join(a->runner->self);
    a->running = 0;
}

void tui_app_done(TuiApp *a)
{
    stop_worker(a);
    for (int i = 0; i < TUI_V_COUNT; i++)
        if (a->views[i].cls && a->views[i].cls->free)
            a->views[i].cls->free(&a->views[i]);
    tui_runs_done(&a->runs);
    tui_agg_done(&a->agg);
    tui_agg_done(&a->other);
    tui_agg_done(&a->base_agg);
    tui_tokens_done(&a->toks);
    tui_tokens_done(&a->base_toks);
    tui_grid_done(&a->grid);
    tui_ci_done(&a->ci);
    tui_queue_done(&a->q);
}

void tui_app_show(TuiApp *a, TuiViewId v)
{
    if ((int)v == a->cur)
        return;
    if (a->n_back == (int)(sizeof a->back / sizeof a->back[0])) {
        memmove(a->back, a->back + 1, sizeof a->back - sizeof a->back[0]);
        a->n_back--;
    }
    a->back[a->n_back++] = a->cur;
    a->cur = v;
    a->views[v].dirty = 1;
    if (a->views[v].cls->resize)
        a->views[v].cls->resize(&a->views[v], a);
}

void tui_app_back(TuiApp *a)
{
    a->cur = a->n_back > 0 ? a->back[--a->n_back] : TUI_V_RUNS;
    a->views[a->cur].dirty = 1;
}

void tui_app_resize(TuiApp *a, int w, int h)
{
    a->w = w;
    a->h = h;
    tui_layout_compute(w, h, a->agg.n_layer > 0 ? a->agg.n_layer : 1, &a->lay);
    for (int i = 0; i < TUI_V_COUNT; i++) {
        a->views[i].dirty = 1;
        if (a->views[i].cls->resize)
            a->views[i].cls->resize(&a->views[i], a);
    }
}

void tui_app_regrid(TuiApp *a)
{
    if (!a->agg.cnt)
        return;
    if (a->hm_delta && a->have_other)
        tui_grid_delta(&a->grid, &a->agg, &a->other, a->hm_value, a->hm_part);
    else
        tui_grid_from_agg(&a->grid, &a->agg, a->hm_value, a->hm_part);
    for (int i = 0; i < TUI_V_COUNT; i++)
        a->views[i].dirty = 1;
}

int tui_app_open_run(TuiApp *a, int idx)
{
    char err[256] = "";
    if (!a->src || idx < 0 || idx >= a->runs.n)
        return -1;
    if (a->running) {
        tui_app_msg(a, "a run is going: wait for it or cancel it (c on the Steer screen)");
        return -1;
    }
    int64_t ids[256];
    int n = 0;
    for (int i = 0; i < a->runs.n && n < 256; i++)
        if (a->runs.a[i].marked)
            ids[n++] = a->runs.a[i].id;
    if (n == 0)
        ids[n++] = a->runs.a[idx].id;
    TuiAgg agg;
    TuiTokens toks;
    memset(&agg, 0, sizeof agg);
    memset(&toks, 0, sizeof toks);
    if (a->src->load_agg(a->src->self, ids, n, &agg, err, sizeof err) ||
        a->src->load_tokens(a->src->self, a->runs.a[idx].id, &toks, err, sizeof err)) {
        tui_agg_done(&agg);
        tui_tokens_done(&toks);
        tui_app_msg(a, "%s", err[0] ? err : "cannot load the run");
        return -1;
    }
    tui_tokens_to_text(&toks, a->runner);
    tui_agg_done(&a->agg);
    tui_tokens_done(&a->toks);
    a->agg = agg;
    a->toks = toks;
    a->cur_run = idx;
    a->n_set = n;
    snprintf(a->set_label, sizeof a->set_label, n > 1 ? "marked runs" : "run");
    if (a->sel_layer >= agg.n_layer)
        a->sel_layer = 0;
    if (a->sel_expert >= agg.n_expert)
        a->sel_expert = 0;
    a->sel_tok = toks.n > 0 ? (toks.n > 1 ? 1 : 0) : 0;
    /* the first generated token is the interesting one */
    for (int i = 0; i < toks.n; i++)
        if (!toks.is_prompt[i]) {
            a->sel_tok = i;
            break;
        }
    a->hm_delta = 0;
    a->have_other = 0;
    tui_ci_done(&a->ci);
    memset(&a->geom, 0, sizeof a->geom);
    tui_layout_compute(a->w, a->h, agg.n_layer, &a->lay);
    tui_app_regrid(a);
    if (agg.n_counted)
        tui_app_msg(a, "%d of the %d tokens are per-layer counts imported without tokens "
                    "(count-only runs): heatmap over all positions only; token views not "
                    "available", agg.n_counted, agg.n_tok);
    return 0;
}

/* ---- live runs ------------------------------------------------------- */

int tui_app_start_run(TuiApp *a, const char *prompt, int steer)
{
    char err[256] = "";
    if (a->running) {
        tui_app_msg(a, "a run is already going (Esc in its view cancels it)");
        return -1;
    }
    if (!a->runner) {
        tui_app_msg(a, "no model loaded: start with moescope tui -m MODEL");
        return -1;
    }
    if (steer && (a->cur_run < 0 || a->toks.n == 0)) {
        tui_app_msg(a, "open a run first: r re-runs its prompt");
        return -1;
    }
    TuiRunner *r = a->runner;
    int64_t parent = 0;
    const char *tag = NULL;
    if (steer) {
        const TuiRun *run = &a->runs.a[a->cur_run];
        parent = run->id;
        tag = run->tag[0] ? run->tag : NULL;
        tui_tokens_done(&a->base_toks);
        tui_agg_done(&a->base_agg);
        a->base_toks = a->toks;
        a->base_agg = a->agg;
        memset(&a->toks, 0, sizeof a->toks);
        memset(&a->agg, 0, sizeof a->agg);
    } else {
        tui_tokens_done(&a->toks);
        tui_agg_done(&a->agg);
    }
    if (tui_tokens_init(&a->toks, r->n_layer, r->n_expert, r->k, 1) ||
        tui_agg_init(&a->agg, r->n_layer, r->n_expert, r->k)) {
        tui_app_msg(a, "out of memory starting the run");
        return -1;
    }
    a->live_is_steer = steer;
    a->live_parent = parent;
    a->live_run_id = 0;
    a->run_done = 0;
    a->run_total = r->n_predict;
    a->q.cancel = 0;
    a->sel_tok = 0;
    tui_app_regrid(a);
    if (r->start(r->self, prompt, a->ivs, a->n_iv, parent, tag, &a->q, err, sizeof err)) {
        tui_app_msg(a, "%s", err);
        return -1;
    }
    a->running = 1;
    tui_app_msg(a, "%s: running…", steer ? "re-run with interventions" : "generating");
    return 0;
}

int tui_app_poll(TuiApp *a)
{
    int n, changed = 0;
    TuiEv *e = tui_queue_take(&a->q, 4096, &n);
    while (e) {
        TuiEv *next = e->next;
        switch (e->kind) {
        case TUI_EV_TOKEN: {
            /* routes of a prompt chunk may come before its tokens: a
            ** placeholder then already holds the position */
            if (tui_tokens_put(&a->toks, e->pos, e->id, e->msg, strlen(e->msg), e->is_prompt, e->logprob) >= 0 &&
                (!e->is_prompt || a->sel_tok == 0))
                a->sel_tok = e->pos;
            break;
        }
        case TUI_EV_ROUTE: {
            int k = e->k < 16 ? e->k : 16;
            if (e->pos >= a->toks.n)
                tui_tokens_put(&a->toks, e->pos, -1, "", 0, e->is_prompt, NAN);
            tui_tokens_set_route(&a->toks, e->pos, e->layer, e->experts, e->weights, k,
                                 e->n_logits == a->toks.n_expert ? e->logits : NULL);
            tui_agg_add(&a->agg, e->layer, e->is_prompt, e->experts, e->weights, k);
            break;
        }
        case TUI_EV_PROGRESS:
            a->run_done = e->done;
            a->run_total = e->total;
            break;
        case TUI_EV_DONE:
            if (a->runner && a->runner->join)
                a->runner->join(a->runner->self);
            a->running = 0;
            a->live_run_id = e->run_id;
            for (int i = 0; i < a->toks.n; i++)
                if (!a->toks.is_prompt[i]) {
                    a->sel_tok = i;   /* the first generated token */
                    break;
                }
            load_runs(a);
            for (int i = 0; i < a->runs.n; i++)
                if (a->runs.a[i].id == e->run_id)
                    a->cur_run = i;
            if (a->live_is_steer) {
                /* the steer view's status line tells what changed */
                a->msg[0] = 0;
                if (a->cur != TUI_V_STEER)
                    tui_app_show(a, TUI_V_STEER);
            } else {
                tui_app_msg(a, "run %lld done: %d tokens", (long long)e->run_id, a->toks.n);
            }
            break;
        case TUI_EV_ERROR:
            if (a->runner && a->runner->join)
                a->runner->join(a->runner->self);
            a->running = 0;
            load_runs(a);   /* a failed run is in the database too */
            tui_app_msg(a, "%s", e->msg);
            break;
        }
        free(e);
        e = next;
        changed = 1;
    }
    if (changed) {
        /* positions = tokens known so far (a live aggregate) */
        if (a->running || a->live_run_id) {
            int np = 0;
            for (int i = 0; i < a->toks.n; i++)
                np += a->toks.is_prompt[i];
            a->agg.n_tok = a->toks.n;
            a->agg.n_prompt = np;
        }
        tui_app_regrid(a);
    }
    return changed;
}

/* ---- keys ------------------------------------------------------------ */

static int global_key(TuiApp *a, int key)
{
    char path[256];
    switch (key) {
    case 'q':
    case 'Q':
        return TUI_K_QUIT;
    case KEY_F(1):
    case '?':
        tui_app_show(a, TUI_V_HELP);
        return TUI_K_REDRAW;
    case KEY_F(2):
        tui_app_show(a, TUI_V_RUNS);
        return TUI_K_REDRAW;
    case KEY_F(3):
    case KEY_F(4):
    case KEY_F(5):
        if (!a->agg.cnt) {
            tui_app_msg(a, "open a run first (Enter on the Runs screen)");
            return TUI_K_REDRAW;
        }
        tui_app_show(a, key == KEY_F(3) ? TUI_V_TOKENS : key == KEY_F(4) ? TUI_V_EXPERT : TUI_V_STEER);
        return TUI_K_REDRAW;
    case KEY_F(6):
    case 'P':
        tui_app_show(a, TUI_V_PROMPT);
        return TUI_K_REDRAW;
    case 'e':
        tui_export_csv(a, path, sizeof path);
        return TUI_K_REDRAW;
    case 27:
    case KEY_BACKSPACE:
    case 127:
    case 8:
        tui_app_back(a);
        return TUI_K_REDRAW;
    }
    return TUI_K_IGNORED;
}

int tui_app_key(TuiApp *a, int key)
{
    if (key == KEY_RESIZE) {
        tui_app_resize(a, COLS, LINES);
        return TUI_K_REDRAW;
    }
    if (key == KEY_MOUSE) {
        MEVENT ev;
        if (getmouse(&ev) != OK)
            return TUI_K_IGNORED;
        a->mouse_y = ev.y;
        a->mouse_x = ev.x;
    }
    if (a->msg[0] && key != ERR) {
        a->msg[0] = 0;
        a->views[a->cur].dirty = 1;
    }
    TuiView *v = &a->views[a->cur];
    int r = v->cls->on_key ? v->cls->on_key(v, a, key) : TUI_K_IGNORED;
    if (r == TUI_K_IGNORED)
        r = global_key(a, key);
    if (r & TUI_K_REDRAW)
        a->views[a->cur].dirty = 1;
    return r;
}

void tui_app_draw(TuiApp *a)
{
    TuiView *v = &a->views[a->cur];
    if (!v->dirty && !a->dirty_all)
        return;
    v->dirty = 0;
    a->dirty_all = 0;
    if (a->w < TUI_MIN_W || a->h < TUI_MIN_H) {
        tui_draw_small(a);
        return;
    }
    erase();
    v->cls->draw(v, a);
}

/* ---- terminal -------------------------------------------------------- */

static volatile sig_atomic_t in_curses;

static void on_signal(int sig)
{
    if (in_curses) {
        endwin();
        in_curses = 0;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_signals(void)
{
    static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGSEGV, SIGBUS, SIGFPE, SIGABRT, SIGILL };
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}

int tui_app_run(TuiApp *a)
{
    install_signals();
    if (!initscr()) {
        fprintf(stderr, "moescope tui: cannot initialise the terminal (TERM=%s)\n",
                getenv("TERM") ? getenv("TERM") : "");
        return 1;
    }
    in_curses = 1;
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    curs_set(0);
    set_escdelay(25);
    timeout(100);
    mousemask(BUTTON1_CLICKED | BUTTON1_PRESSED | BUTTON1_DOUBLE_CLICKED, NULL);
    mouseinterval(0);
    int ncol = 0;
    if (has_colors()) {
        start_color();
        use_default_colors();
        ncol = COLORS;
    }
    a->term.colors = tui_colors_pick(ncol, getenv("NO_COLOR"));
    tui_scheme_init(a->term.colors);
    tui_app_resize(a, COLS, LINES);
    for (;;) {
        tui_app_draw(a);
        wnoutrefresh(stdscr);
        doupdate();
        int ch = getch();
        if (ch == ERR) {
            if (tui_app_poll(a))
                a->views[a->cur].dirty = 1;
            continue;
        }
        int r = tui_app_key(a, ch);
        if (r & TUI_K_QUIT)
            break;
        tui_app_poll(a);
    }
    stop_worker(a);
    endwin();
    in_curses = 0;
    return 0;
}
