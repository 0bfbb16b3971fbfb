/*
** tests/test_tui_keys.c — the app driven by key codes, as the main loop
** would feed them: runs list (search, tag filter, marks, open), heatmap
** (cursor, clamping, toggles), steering keys and the intervention list, a
** live re-run from a scripted runner thread, mouse clicks, CSV export, and
** what lands on an offscreen screen (escaping, the too-small notice).
** Data comes from an in-memory source so only the app is under test.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curses.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tui/app.h"

#define NL 4
#define NE 8
#define K 2

/* ---- an in-memory source: three runs ---------------------------------- */

static const struct { int64_t id; const char *tag, *prompt; int n; } fake_runs[] = {
    { 1, "math", "1 + 1 =", 6 },
    { 2, "bible", "In the beginning God\x1b[31m", 10 },
    { 3, "math", "2 * 3 =", 8 },
};
#define NRUN 3
static int list_calls;

static int f_list(void *self, TuiRunList *out, char *err, size_t cap)
{
    (void)self; (void)err; (void)cap;
    list_calls++;
    for (int i = 0; i < NRUN; i++) {
        TuiRun r = { .id = fake_runs[i].id, .prompt = (char *)fake_runs[i].prompt, .ivs = "",
                     .n_tok = fake_runs[i].n, .n_prompt = 2 };
        snprintf(r.tag, sizeof r.tag, "%s", fake_runs[i].tag);
        snprintf(r.status, sizeof r.status, "complete");
        if (tui_runs_push(out, &r))
            return -1;
    }
    return 0;
}

/* run i routes every position of layer l to experts (i+l) and (i+l+1) */
static void fake_route(int64_t run, int l, int32_t *ex, float *w)
{
    ex[0] = (int32_t)((run + l) % NE);
    ex[1] = (int32_t)((run + l + 1) % NE);
    w[0] = 0.7f;
    w[1] = 0.3f;
}

static int run_index(int64_t id)
{
    for (int i = 0; i < NRUN; i++)
        if (fake_runs[i].id == id)
            return i;
    return -1;
}

static int f_agg(void *self, const int64_t *runs, int n, TuiAgg *out, char *err, size_t cap)
{
    (void)self;
    if (tui_agg_init(out, NL, NE, K))
        return -1;
    for (int i = 0; i < n; i++) {
        int ri = run_index(runs[i]);
        if (ri < 0) {
            snprintf(err, cap, "no run %lld", (long long)runs[i]);
            tui_agg_done(out);
            return -1;
        }
        for (int p = 0; p < fake_runs[ri].n; p++)
            for (int l = 0; l < NL; l++) {
                int32_t ex[K];
                float w[K];
                fake_route(runs[i], l, ex, w);
                tui_agg_add(out, l, p < 2, ex, w, K);
            }
        out->n_tok += fake_runs[ri].n;
        out->n_prompt += 2;
    }
    return 0;
}

static int f_tag_agg(void *self, const char *tag, int not, TuiAgg *out, char *err, size_t cap)
{
    int64_t ids[NRUN];
    int n = 0;
    for (int i = 0; i < NRUN; i++)
        if ((strcmp(fake_runs[i].tag, tag) == 0) != (not != 0))
            ids[n++] = fake_runs[i].id;
    if (n == 0) {
        snprintf(err, cap, "no runs");
        return -1;
    }
    return f_agg(self, ids, n, out, err, cap);
}

static int f_tokens(void *self, int64_t run, TuiTokens *out, char *err, size_t cap)
{
    (void)self; (void)err; (void)cap;
    int ri = run_index(run);
    if (ri < 0 || tui_tokens_init(out, NL, NE, K, 0))
        return -1;
    for (int p = 0; p < fake_runs[ri].n; p++) {
        char piece[4] = { (char)('a' + p), 0 };
        tui_tokens_push(out, p, piece, 1, p < 2, p < 2 ? NAN : -0.25f);
        for (int l = 0; l < NL; l++) {
            int32_t ex[K];
            float w[K];
            fake_route(run, l, ex, w);
            tui_tokens_set_route(out, p, l, ex, w, K, NULL);
        }
    }
    return 0;
}

static void f_close(void *self) { (void)self; }

static TuiSource fake_src = { .list_runs = f_list, .load_agg = f_agg, .load_tag_agg = f_tag_agg,
                              .load_tokens = f_tokens, .close = f_close, .contrast = NULL };

/* ---- a scripted runner: a thread that replays run 1 with token 3 changed */

typedef struct { pthread_t th; TuiQueue *q; int started; EngIv ivs[8]; int n_iv; int64_t parent; } Fake;

static void *fake_thread(void *p)
{
    Fake *f = p;
    for (int pos = 0; pos < 6; pos++) {
        TuiEv t = { .kind = TUI_EV_TOKEN, .pos = pos, .id = pos == 3 ? 99 : pos, .is_prompt = pos < 2,
                    .logprob = -0.5f };
        snprintf(t.msg, sizeof t.msg, "%c", pos == 3 ? 'Z' : 'a' + pos);
        /* prompt routes arrive before their tokens, as the engine sends them */
        for (int l = 0; l < NL; l++) {
            TuiEv r = { .kind = TUI_EV_ROUTE, .pos = pos, .layer = l, .is_prompt = pos < 2, .k = K };
            fake_route(1, l, r.experts, r.weights);
            if (l == 1)
                r.experts[0] = 7;   /* the steered routing */
            tui_queue_push(f->q, &r);
        }
        tui_queue_push(f->q, &t);
        TuiEv pr = { .kind = TUI_EV_PROGRESS, .done = pos + 1, .total = 6 };
        tui_queue_push(f->q, &pr);
    }
    TuiEv d = { .kind = TUI_EV_DONE, .run_id = 3 };
    tui_queue_push(f->q, &d);
    return NULL;
}

static int fake_start(void *self, const char *prompt, const EngIv *ivs, int n_iv, int64_t parent,
                      const char *tag, TuiQueue *q, char *err, size_t cap)
{
    (void)prompt; (void)tag; (void)err; (void)cap;
    Fake *f = self;
    f->q = q;
    f->n_iv = n_iv < 8 ? n_iv : 8;
    memcpy(f->ivs, ivs, sizeof(EngIv) * (size_t)f->n_iv);
    f->parent = parent;
    f->started = 1;
    return pthread_create(&f->th, NULL, fake_thread, f) ? -1 : 0;
}

static void fake_join(void *self)
{
    Fake *f = self;
    if (f->started)
        pthread_join(f->th, NULL);
    f->started = 0;
}

/* ---- fixtures -------------------------------------------------------- */

static SCREEN *scr;
static FILE *scr_out, *scr_in;

static int setup(void **st)
{
    setlocale(LC_ALL, "C.UTF-8");
    scr_out = fopen("/dev/null", "w");
    scr_in = fopen("/dev/null", "r");
    scr = newterm("xterm-256color", scr_out, scr_in);
    if (!scr)
        return -1;
    set_term(scr);
    keypad(stdscr, TRUE);
    mousemask(BUTTON1_CLICKED | BUTTON1_PRESSED, NULL);
    TuiApp *a = calloc(1, sizeof *a);
    if (!a || tui_app_init(a, &fake_src, NULL, "test"))
        return -1;
    resizeterm(30, 100);
    tui_app_resize(a, 100, 30);
    *st = a;
    return 0;
}

static int teardown(void **st)
{
    TuiApp *a = *st;
    tui_app_done(a);
    free(a);
    endwin();
    delscreen(scr);
    fclose(scr_out);
    fclose(scr_in);
    return 0;
}

static void keys(TuiApp *a, const int *k, int n)
{
    for (int i = 0; i < n; i++)
        tui_app_key(a, k[i]);
}

static void type(TuiApp *a, const char *s)
{
    for (; *s; s++)
        tui_app_key(a, (unsigned char)*s);
}

/* Text of screen row y after drawing the current view. */
static void row_text(TuiApp *a, int y, char *buf, int cap)
{
    a->views[a->cur].dirty = 1;
    tui_app_draw(a);
    mvinnstr(y, 0, buf, cap - 1);
}

static int screen_has(TuiApp *a, const char *needle)
{
    char buf[512];
    for (int y = 0; y < a->h; y++) {
        row_text(a, y, buf, sizeof buf);
        if (strstr(buf, needle))
            return 1;
    }
    return 0;
}

/* ---- tests ----------------------------------------------------------- */

static void test_runs_search_filters_and_enter_opens(void **st)
{
    TuiApp *a = *st;
    assert_int_equal(a->cur, TUI_V_RUNS);
    assert_int_equal(a->runs.n, 3);
    type(a, "/God");
    /* while searching, letters are text: 'q' would not quit */
    assert_int_equal(tui_app_key(a, 'q') & TUI_K_QUIT, 0);
    tui_app_key(a, KEY_BACKSPACE);
    tui_app_key(a, '\n');
    assert_true(screen_has(a, "Runs: 1 of 3"));
    tui_app_key(a, '\n');
    assert_int_equal(a->cur, TUI_V_HEAT);
    assert_int_equal(a->cur_run, 1);
    assert_int_equal(a->toks.n, 10);
    assert_int_equal(a->agg.n_tok, 10);
    assert_int_equal(a->sel_tok, 2);            /* the first generated token */
    tui_app_key(a, KEY_F(2));
    assert_int_equal(a->cur, TUI_V_RUNS);
    /* Esc clears the search */
    type(a, "/");
    tui_app_key(a, 27);
    assert_true(screen_has(a, "Runs: 3 of 3"));
}

static void test_runs_marks_open_set_and_tag_filter(void **st)
{
    TuiApp *a = *st;
    int k[] = { KEY_HOME, ' ', KEY_DOWN, '\n' };  /* mark run 1, cursor to run 3 (space moved) */
    keys(a, k, 2);
    assert_int_equal(a->runs.a[0].marked, 1);
    tui_app_key(a, KEY_DOWN);
    tui_app_key(a, ' ');
    assert_int_equal(a->runs.a[2].marked, 1);
    tui_app_key(a, '\n');
    assert_int_equal(a->cur, TUI_V_HEAT);
    assert_int_equal(a->n_set, 2);
    assert_int_equal(a->agg.n_tok, 6 + 8);
    tui_app_key(a, 27);
    assert_int_equal(a->cur, TUI_V_RUNS);
    tui_app_key(a, 'u');
    assert_int_equal(a->runs.a[0].marked + a->runs.a[2].marked, 0);
    /* tag filter: math, bible, all */
    tui_app_key(a, 't');
    assert_true(screen_has(a, "Runs: 2 of 3  tag math"));
    tui_app_key(a, 't');
    assert_true(screen_has(a, "Runs: 1 of 3  tag bible"));
    tui_app_key(a, 't');
    assert_true(screen_has(a, "Runs: 3 of 3"));
}

static void open_run(TuiApp *a, int i)
{
    assert_int_equal(tui_app_open_run(a, i), 0);
    tui_app_show(a, TUI_V_HEAT);
}

static void test_heat_cursor_moves_and_clamps(void **st)
{
    TuiApp *a = *st;
    open_run(a, 0);
    a->sel_layer = a->sel_expert = 0;
    int k[] = { KEY_UP, KEY_LEFT, KEY_RIGHT, KEY_RIGHT, KEY_DOWN, 'l', 'j' };
    keys(a, k, 7);
    assert_int_equal(a->sel_expert, 3);
    assert_int_equal(a->sel_layer, 2);
    for (int i = 0; i < 20; i++)
        tui_app_key(a, KEY_RIGHT);
    tui_app_key(a, KEY_NPAGE);
    assert_int_equal(a->sel_expert, NE - 1);
    assert_int_equal(a->sel_layer, NL - 1);
    tui_app_key(a, KEY_HOME);
    assert_int_equal(a->sel_expert, 0);
    /* status line: exact numbers for the cell under the cursor.  Run 1,
    ** layer 3 routes every position to experts 4 and 5. */
    a->sel_layer = 3;
    a->sel_expert = 4;
    assert_true(screen_has(a, "L3:E4 routed 6/6 tokens (100.0 %)"));
    a->sel_expert = 3;
    assert_true(screen_has(a, "L3:E3 routed 0/6 tokens (0.0 %)"));
}

static void test_heat_toggles_value_part_delta_condense(void **st)
{
    TuiApp *a = *st;
    open_run(a, 0);
    size_t i45 = 3 * NE + 4;
    assert_float_equal(a->grid.v[i45], 1.0f, 1e-6);
    tui_app_key(a, 'w');
    assert_int_equal(a->hm_value, TUI_HM_WEIGHT);
    assert_float_equal(a->grid.v[i45], 0.7f, 1e-6);
    tui_app_key(a, 'w');
    tui_app_key(a, 'p');
    assert_int_equal(a->hm_part, TUI_HM_PROMPT);
    tui_app_key(a, 'p');
    assert_int_equal(a->hm_part, TUI_HM_GEN);
    tui_app_key(a, 'p');
    assert_int_equal(a->hm_part, TUI_HM_ALL);
    /* Δ vs the rest of "math" (run 2, whose layer 3 goes to 5 and 6) */
    tui_app_key(a, 'x');
    assert_int_equal(a->hm_delta, 1);
    assert_int_equal(a->grid.diverging, 1);
    assert_float_equal(a->grid.v[i45], 1.0f, 1e-6);
    assert_float_equal(a->grid.v[3 * NE + 5], 0.0f, 1e-6);
    assert_float_equal(a->grid.v[3 * NE + 6], -1.0f, 1e-6);
    assert_true(screen_has(a, "delta vs not math"));
    /* next: vs bible, then off */
    tui_app_key(a, 'x');
    assert_true(screen_has(a, "delta vs bible"));
    tui_app_key(a, 'x');
    assert_int_equal(a->hm_delta, 0);
    tui_app_key(a, 'c');
    assert_int_equal(a->condense, 1);
    tui_app_key(a, 'c');
    /* Enter opens the expert, Esc comes back */
    tui_app_key(a, '\n');
    assert_int_equal(a->cur, TUI_V_EXPERT);
    assert_true(screen_has(a, "Expert L"));
    tui_app_key(a, 27);
    assert_int_equal(a->cur, TUI_V_HEAT);
    /* Tab: the arrows now move the token */
    int t0 = a->sel_tok, e0 = a->sel_expert;
    tui_app_key(a, '\t');
    tui_app_key(a, KEY_RIGHT);
    assert_int_equal(a->sel_tok, t0 + 1);
    assert_int_equal(a->sel_expert, e0);
    tui_app_key(a, 't');
    assert_int_equal(a->tok_color, TUI_TC_ENTROPY);
    tui_app_key(a, '\t');
}

static void test_steer_keys_edit_interventions(void **st)
{
    TuiApp *a = *st;
    open_run(a, 0);
    a->n_iv = 0;
    a->sel_layer = 2;
    a->sel_expert = 5;
    tui_app_key(a, 'd');
    assert_int_equal(a->n_iv, 1);
    assert_int_equal(a->ivs[0].kind, ENG_IV_DISABLE);
    assert_int_equal(a->ivs[0].layer, 2);
    assert_int_equal(a->ivs[0].expert, 5);
    assert_true(screen_has(a, "disable 2:5 (all)"));
    assert_true(screen_has(a, "XX"));          /* marked in the cell */
    tui_app_key(a, 'f');                        /* force replaces disable */
    assert_int_equal(a->n_iv, 1);
    assert_int_equal(a->ivs[0].kind, ENG_IV_FORCE);
    tui_app_key(a, 'f');                        /* again: removed */
    assert_int_equal(a->n_iv, 0);
    tui_app_key(a, '+');
    tui_app_key(a, '+');
    assert_int_equal(a->n_iv, 1);
    assert_float_equal(a->ivs[0].value, 1.0f, 0);
    tui_app_key(a, '-');
    tui_app_key(a, '-');
    assert_int_equal(a->n_iv, 0);
    tui_app_key(a, 'k');                        /* top-k: model's 2 → 1 */
    assert_int_equal(a->n_iv, 1);
    assert_int_equal(a->ivs[0].kind, ENG_IV_TOPK);
    assert_float_equal(a->ivs[0].value, 1.0f, 0);
    tui_app_key(a, 'K');                        /* back to 2: removed */
    assert_int_equal(a->n_iv, 0);
    tui_app_key(a, 'd');
    a->sel_expert = 6;
    tui_app_key(a, 'd');
    assert_int_equal(a->n_iv, 2);
    /* the list in the steer view: scope, delete */
    tui_app_key(a, KEY_F(5));
    assert_int_equal(a->cur, TUI_V_STEER);
    tui_app_key(a, 's');
    assert_int_equal(a->ivs[0].scope, ENG_SCOPE_PROMPT);
    tui_app_key(a, 's');
    tui_app_key(a, 's');
    assert_int_equal(a->ivs[0].scope, ENG_SCOPE_FROM);
    assert_int_equal(a->ivs[0].from_pos, a->sel_tok);
    assert_true(screen_has(a, "disable 2:5 (from:"));
    tui_app_key(a, KEY_DOWN);
    tui_app_key(a, 'x');
    assert_int_equal(a->n_iv, 1);
    assert_int_equal(a->ivs[0].expert, 5);
    /* without a model, r says so and starts nothing */
    tui_app_key(a, 'r');
    assert_int_equal(a->running, 0);
    assert_non_null(strstr(a->msg, "no model"));
    tui_app_key(a, 'x');
    assert_int_equal(a->n_iv, 0);
    tui_app_key(a, 27);
}

static void test_rerun_streams_then_compares(void **st)
{
    TuiApp *a = *st;
    Fake f = { 0 };
    TuiRunner r = { .self = &f, .start = fake_start, .join = fake_join, .close = NULL,
                    .n_layer = NL, .n_expert = NE, .k = K, .n_predict = 4 };
    a->runner = &r;
    open_run(a, 0);
    a->n_iv = 0;
    a->sel_layer = 1;
    a->sel_expert = 2;
    tui_app_key(a, 'd');
    int calls = list_calls;
    tui_app_key(a, 'r');
    assert_int_equal(a->running, 1);
    assert_int_equal(f.parent, 1);
    assert_int_equal(f.n_iv, 1);
    assert_int_equal(f.ivs[0].expert, 2);
    /* the UI keeps taking keys while the run goes */
    for (int i = 0; i < 2000 && a->running; i++) {
        tui_app_key(a, KEY_RIGHT);
        tui_app_key(a, KEY_LEFT);
        tui_app_poll(a);
        usleep(1000);
    }
    assert_int_equal(a->running, 0);
    assert_int_equal(a->cur, TUI_V_STEER);
    assert_true(list_calls > calls);            /* run list reloaded */
    assert_int_equal(a->live_run_id, 3);
    assert_int_equal(a->toks.n, 6);
    assert_int_equal(a->base_toks.n, 6);
    assert_string_equal(a->toks.piece[0], "a");  /* placeholder filled in */
    assert_int_equal(tui_first_divergence(&a->base_toks, &a->toks), 3);
    assert_int_equal(a->agg.n_tok, 6);
    assert_int_equal(a->agg.n_prompt, 2);
    assert_float_equal(a->agg.cnt[1 * NE + 7], 6.0f, 0);
    assert_true(screen_has(a, "first divergence: generated token 1"));
    assert_true(screen_has(a, "baseline (run 1)"));
    assert_true(screen_has(a, "steered (run 3: disable 1:2 (all))"));
    assert_true(screen_has(a, "routes changed before it: L0 0%, L1 100%"));
    a->runner = NULL;
    a->n_iv = 0;
    a->live_is_steer = 0;
    tui_app_key(a, 27);
}

static void test_mouse_click_selects_cell_and_token(void **st)
{
    TuiApp *a = *st;
    open_run(a, 0);
    tui_app_draw(a);
    /* cell (layer 2, expert 3): row heat.y + 2 + 2, column label + 3*3 */
    MEVENT ev = { .id = 0, .x = a->lay.heat.x + 1 + TUI_HM_LABEL + 3 * TUI_HM_CELL,
                  .y = a->lay.heat.y + 2 + 2, .bstate = BUTTON1_CLICKED };
    assert_int_equal(ungetmouse(&ev), OK);
    tui_app_key(a, KEY_MOUSE);
    assert_int_equal(a->sel_layer, 2);
    assert_int_equal(a->sel_expert, 3);
    /* a token: where the drawing put token 4 */
    a->views[a->cur].dirty = 1;
    tui_app_draw(a);
    int found = -1;
    for (int i = 0; i < a->n_tokpos; i++)
        if (a->tokpos[i].i == 4)
            found = i;
    assert_true(found >= 0);
    ev.x = a->tokpos[found].x;
    ev.y = a->tokpos[found].y;
    assert_int_equal(ungetmouse(&ev), OK);
    tui_app_key(a, KEY_MOUSE);
    assert_int_equal(a->sel_tok, 4);
    assert_int_equal(a->focus_tokens, 1);
    a->focus_tokens = 0;
}

static void test_export_csv_heatmap_rows(void **st)
{
    TuiApp *a = *st;
    open_run(a, 0);
    char path[256];
    assert_int_equal(tui_export_csv(a, path, sizeof path), 0);
    assert_string_equal(path, "moescope-heatmap-1.csv");
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[256];
    int n = 0, hit = 0;
    while (fgets(line, sizeof line, f)) {
        n++;
        if (!strcmp(line, "3,4,1,6,2,4.2,1.4\n"))
            hit = 1;
    }
    fclose(f);
    unlink(path);
    assert_int_equal(n, 1 + NL * NE);
    assert_true(hit);
}

static void test_draw_escapes_and_small_terminal(void **st)
{
    TuiApp *a = *st;
    tui_app_show(a, TUI_V_RUNS);
    resizeterm(30, 160);
    tui_app_resize(a, 160, 30);
    /* the prompt's ESC is spelled out, never sent raw */
    assert_true(screen_has(a, "God\\x1B[31m"));
    tui_app_resize(a, 30, 8);
    resizeterm(8, 30);
    assert_true(screen_has(a, "moescope needs 40x12"));
    tui_app_resize(a, 1, 1);
    resizeterm(1, 1);
    a->views[a->cur].dirty = 1;
    tui_app_draw(a);                            /* no crash */
    tui_app_resize(a, 0, 0);
    tui_app_draw(a);
    resizeterm(30, 100);
    tui_app_resize(a, 100, 30);
    assert_true(screen_has(a, "Runs: 3 of 3"));
    /* every view draws at the minimum size */
    open_run(a, 0);
    resizeterm(TUI_MIN_H, TUI_MIN_W);
    tui_app_resize(a, TUI_MIN_W, TUI_MIN_H);
    for (int v = 0; v < TUI_V_COUNT; v++) {
        a->cur = v;
        a->views[v].dirty = 1;
        tui_app_draw(a);
    }
    a->cur = TUI_V_HEAT;
    resizeterm(30, 100);
    tui_app_resize(a, 100, 30);
}

static void test_help_and_quit_keys(void **st)
{
    TuiApp *a = *st;
    tui_app_show(a, TUI_V_HEAT);
    tui_app_key(a, '?');
    assert_int_equal(a->cur, TUI_V_HELP);
    assert_true(screen_has(a, "disable the cursor expert"));
    tui_app_key(a, KEY_F(1));
    assert_int_equal(a->cur, TUI_V_HEAT);
    /* the prompt screen takes letters as text, q included */
    tui_app_key(a, 'P');
    assert_int_equal(a->cur, TUI_V_PROMPT);
    type(a, "qé\nx");
    assert_string_equal(a->prompt_buf, "qé\nx");
    tui_app_key(a, KEY_BACKSPACE);
    tui_app_key(a, KEY_BACKSPACE);
    tui_app_key(a, KEY_BACKSPACE);
    assert_string_equal(a->prompt_buf, "q");
    tui_app_key(a, 27);
    assert_int_equal(tui_app_key(a, 'q') & TUI_K_QUIT, TUI_K_QUIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_search_filters_and_enter_opens),
        cmocka_unit_test(test_runs_marks_open_set_and_tag_filter),
        cmocka_unit_test(test_heat_cursor_moves_and_clamps),
        cmocka_unit_test(test_heat_toggles_value_part_delta_condense),
        cmocka_unit_test(test_steer_keys_edit_interventions),
        cmocka_unit_test(test_rerun_streams_then_compares),
        cmocka_unit_test(test_mouse_click_selects_cell_and_token),
        cmocka_unit_test(test_export_csv_heatmap_rows),
        cmocka_unit_test(test_draw_escapes_and_small_terminal),
        cmocka_unit_test(test_help_and_quit_keys),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
