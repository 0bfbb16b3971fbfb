/*
** tests/bench_tui.c — redraw time of the main screen (heatmap, tokens,
** route) for a synthetic 256-expert × 61-layer, top-8 run, drawn into an
** offscreen ncurses screen (newterm on /dev/null).  Each frame moves the
** cursor so the screen really changes; target: under 16 ms per frame.
*/
#include "tui/app.h"

#include <curses.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NL 61
#define NE 256
#define K 8
#define NTOK 512
#define FRAMES 300

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint32_t rng = 12345;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static int fill(TuiApp *a)
{
    if (tui_agg_init(&a->agg, NL, NE, K) || tui_tokens_init(&a->toks, NL, NE, K, 0))
        return -1;
    for (int i = 0; i < NTOK; i++) {
        char piece[8];
        snprintf(piece, sizeof piece, "%c%c", 'a' + (int)(rnd() % 26), i % 17 == 0 ? '\n' : ' ');
        int p = i < 64;
        if (tui_tokens_push(&a->toks, i, piece, strlen(piece), p, -0.5f) < 0)
            return -1;
        for (int l = 0; l < NL; l++) {
            int32_t ex[K];
            float w[K];
            for (int j = 0; j < K; j++) {
                /* skewed: low expert ids more popular */
                ex[j] = (int32_t)((rnd() % NE) * (rnd() % NE) / NE);
                w[j] = 1.0f / K;
            }
            tui_tokens_set_route(&a->toks, i, l, ex, w, K, NULL);
            tui_agg_add(&a->agg, l, p, ex, w, K);
        }
    }
    a->agg.n_tok = NTOK;
    a->agg.n_prompt = 64;
    return 0;
}

static double bench(TuiApp *a, int condense, double *worst)
{
    a->condense = condense;
    memset(&a->geom, 0, sizeof a->geom);
    double total = 0.0;
    *worst = 0.0;
    for (int f = 0; f < FRAMES; f++) {
        a->sel_expert = (f * 7) % NE;
        a->sel_layer = (f * 3) % NL;
        a->sel_tok = f % NTOK;
        a->views[a->cur].dirty = 1;
        double t0 = now_ms();
        tui_app_draw(a);
        wnoutrefresh(stdscr);
        doupdate();
        double dt = now_ms() - t0;
        total += dt;
        if (dt > *worst)
            *worst = dt;
    }
    return total / FRAMES;
}

int main(void)
{
    setlocale(LC_ALL, "C.UTF-8");
    FILE *out = fopen("/dev/null", "w"), *in = fopen("/dev/null", "r");
    if (!out || !in) {
        fprintf(stderr, "bench_tui: cannot open /dev/null\n");
        return 1;
    }
    SCREEN *scr = newterm("xterm-256color", out, in);
    if (!scr) {
        fprintf(stderr, "bench_tui: newterm(xterm-256color) failed: terminfo missing?\n");
        return 1;
    }
    set_term(scr);
    start_color();
    use_default_colors();
    int W = 200, H = 60;
    resizeterm(H, W);
    TuiApp *a = calloc(1, sizeof *a);
    if (!a || tui_app_init(a, NULL, NULL, "bench: synthetic 61 layers x 256 experts, top-8")) {
        fprintf(stderr, "bench_tui: out of memory\n");
        return 1;
    }
    a->term.colors = tui_colors_pick(COLORS, NULL);
    a->term.utf8 = 1;
    tui_scheme_init(a->term.colors);
    if (fill(a)) {
        fprintf(stderr, "bench_tui: out of memory\n");
        return 1;
    }
    tui_app_resize(a, W, H);
    tui_app_regrid(a);
    a->cur = TUI_V_HEAT;
    double w1, w2;
    double m1 = bench(a, 0, &w1);
    double m2 = bench(a, 1, &w2);
    printf("heatmap redraw %dx%d, %d layers x %d experts, %d tokens (%s colours):\n", W, H, NL, NE,
           NTOK, a->term.colors == TUI_COLORS_256 ? "256" : a->term.colors == TUI_COLORS_8 ? "8" : "no");
    printf("  scrolling: mean %.3f ms, worst %.3f ms per frame (%d frames)\n", m1, w1, FRAMES);
    printf("  condensed: mean %.3f ms, worst %.3f ms per frame (%d frames)\n", m2, w2, FRAMES);
    printf("  target: < 16 ms  %s\n", m1 < 16.0 && m2 < 16.0 ? "ok" : "MISSED");
    tui_app_done(a);
    free(a);
    endwin();
    delscreen(scr);
    fclose(out);
    fclose(in);
    return m1 < 16.0 && m2 < 16.0 ? 0 : 1;
}
