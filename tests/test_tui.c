/*
** tests/test_tui.c — the app's pure parts: layout, colour/shade scale,
** escaping, list navigation, heatmap geometry for big grids, the data
** model's aggregates and the worker queue.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tui/app.h"

static int inside(TuiRect r, int w, int h)
{
    return r.x >= 0 && r.y >= 0 && r.w >= 0 && r.h >= 0 && r.x + r.w <= w && r.y + r.h <= h;
}

static void test_layout_every_size_fits_and_tiles(void **st)
{
    (void)st;
    int checked = 0;
    for (int w = 0; w <= 200; w += 7)
        for (int h = 0; h <= 80; h++)
            for (int nl = 1; nl <= 64; nl *= 4) {
                TuiLayout L;
                tui_layout_compute(w, h, nl, &L);
                if (w < TUI_MIN_W || h < TUI_MIN_H) {
                    assert_int_equal(L.ok, 0);
                    continue;
                }
                assert_int_equal(L.ok, 1);
                assert_true(inside(L.heat, w, h) && inside(L.tokens, w, h) && inside(L.route, w, h));
                /* panes tile the body top to bottom without overlap */
                assert_int_equal(L.heat.y, 1);
                assert_int_equal(L.tokens.y, L.heat.y + L.heat.h);
                assert_int_equal(L.route.y, L.tokens.y + L.tokens.h);
                assert_int_equal(L.route.y + L.route.h, h - 2);
                assert_int_equal(L.status.y, h - 2);
                assert_int_equal(L.keys.y, h - 1);
                assert_true(L.heat.h >= (nl + 3 < 5 ? nl + 3 : 5));
                assert_true(L.tokens.h >= 4);
                checked++;
            }
    assert_true(checked > 100);
}

static void test_layout_tiny_terminal_not_ok(void **st)
{
    (void)st;
    TuiLayout L;
    tui_layout_compute(1, 1, 6, &L);
    assert_int_equal(L.ok, 0);
    assert_int_equal(L.heat.w, 0);
    tui_layout_compute(TUI_MIN_W - 1, 50, 6, &L);
    assert_int_equal(L.ok, 0);
    tui_layout_compute(-5, -5, 0, &L);
    assert_int_equal(L.ok, 0);
}

static void test_layout_sample_heatmap_shows_all_layers(void **st)
{
    (void)st;
    TuiLayout L;
    tui_layout_compute(100, 30, 6, &L);
    assert_int_equal(L.ok, 1);
    assert_int_equal(L.heat.h, 6 + 3);     /* 6 layers + numbers row + borders */
    assert_true(L.route.h >= 3);            /* room for the route pane */
    tui_layout_compute(120, 40, 61, &L);
    assert_int_equal(L.heat.h, 37 - 8);     /* capped: text keeps its rows */
}

static void test_colors_pick_no_color_wins(void **st)
{
    (void)st;
    assert_int_equal(tui_colors_pick(256, "1"), TUI_COLORS_NONE);
    assert_int_equal(tui_colors_pick(256, ""), TUI_COLORS_256);
    assert_int_equal(tui_colors_pick(256, NULL), TUI_COLORS_256);
    assert_int_equal(tui_colors_pick(8, NULL), TUI_COLORS_8);
    assert_int_equal(tui_colors_pick(16, NULL), TUI_COLORS_8);
    assert_int_equal(tui_colors_pick(2, NULL), TUI_COLORS_NONE);
    assert_int_equal(tui_colors_pick(-1, NULL), TUI_COLORS_NONE);
}

static void test_scale_seq_bins_nice_edges(void **st)
{
    (void)st;
    TuiScale s;
    tui_scale_make(&s, TUI_SCALE_SEQ, 0.37f, 4, 1);
    /* 0.37/4 = 0.0925 → nice 0.1 */
    assert_int_equal(s.nbins, 4);
    assert_float_equal(s.edge[1], 0.1f, 1e-6);
    assert_float_equal(s.edge[4], 0.4f, 1e-6);
    assert_int_equal(tui_scale_bin(&s, 0.0f), 0);
    assert_int_equal(tui_scale_bin(&s, -0.2f), 0);
    assert_int_equal(tui_scale_bin(&s, NAN), 0);
    assert_int_equal(tui_scale_bin(&s, 0.001f), 1);
    assert_int_equal(tui_scale_bin(&s, 0.099f), 1);
    assert_int_equal(tui_scale_bin(&s, 0.1f), 2);
    assert_int_equal(tui_scale_bin(&s, 0.25f), 3);
    assert_int_equal(tui_scale_bin(&s, 0.37f), 4);
    assert_int_equal(tui_scale_bin(&s, 5.0f), 4);
    char b[32];
    tui_scale_label(&s, 1, b, sizeof b);
    assert_string_equal(b, "<10%");
    tui_scale_label(&s, 3, b, sizeof b);
    assert_string_equal(b, "<30%");
    tui_scale_label(&s, 4, b, sizeof b);
    assert_string_equal(b, ">=30%");
    /* nice steps: 2.5 × 10^n */
    tui_scale_make(&s, TUI_SCALE_SEQ, 0.9f, 4, 0);
    assert_float_equal(s.edge[1], 0.25f, 1e-6);
    /* degenerate max gives a usable unit scale */
    tui_scale_make(&s, TUI_SCALE_SEQ, 0.0f, 4, 0);
    assert_float_equal(s.edge[4], 1.0f, 1e-6);
    tui_scale_make(&s, TUI_SCALE_SEQ, NAN, 99, 0);
    assert_int_equal(s.nbins, TUI_HEAT_MAX);
}

static void test_scale_div_symmetric_signed(void **st)
{
    (void)st;
    TuiScale s;
    tui_scale_make(&s, TUI_SCALE_DIV, 0.6f, 4, 0);
    assert_float_equal(s.edge[1], 0.2f, 1e-6);
    assert_int_equal(tui_scale_bin(&s, 0.0f), 0);
    assert_int_equal(tui_scale_bin(&s, 0.05f), 1);
    assert_int_equal(tui_scale_bin(&s, -0.05f), -1);
    assert_int_equal(tui_scale_bin(&s, -0.45f), -3);
    assert_int_equal(tui_scale_bin(&s, -9.0f), -4);
    char b[32];
    tui_scale_label(&s, -2, b, sizeof b);
    assert_string_equal(b, ">-0.4");
    tui_scale_label(&s, -4, b, sizeof b);
    assert_string_equal(b, "<=-0.6");
    tui_scale_label(&s, 4, b, sizeof b);
    assert_string_equal(b, ">=+0.6");
    assert_string_equal(tui_scale_glyph(&s, -4, 0), "-@");
    assert_string_equal(tui_scale_glyph(&s, 1, 0), "+.");
    assert_string_equal(tui_scale_glyph(&s, 4, 1), "+█");
    /* negative and positive bins take different colour ramps */
    int pn = tui_scale_pair(&s, -4, TUI_COLORS_256), pp = tui_scale_pair(&s, 4, TUI_COLORS_256);
    assert_true(pn >= TUI_C_DIV0 && pn < TUI_C_DIV0 + TUI_HEAT_MAX);
    assert_true(pp >= TUI_C_DIV0 + TUI_HEAT_MAX && pp < TUI_C_COUNT);
}

static void test_scale_glyph_and_pair_by_depth(void **st)
{
    (void)st;
    TuiScale s;
    tui_scale_make(&s, TUI_SCALE_SEQ, 1.0f, 4, 0);
    assert_string_equal(tui_scale_glyph(&s, 0, 1), "  ");
    assert_string_equal(tui_scale_glyph(&s, 1, 1), "░░");
    assert_string_equal(tui_scale_glyph(&s, 2, 1), "▒▒");
    assert_string_equal(tui_scale_glyph(&s, 3, 1), "▓▓");
    assert_string_equal(tui_scale_glyph(&s, 4, 1), "██");
    assert_string_equal(tui_scale_glyph(&s, 1, 0), "..");
    assert_string_equal(tui_scale_glyph(&s, 4, 0), "@@");
    assert_int_equal(tui_scale_pair(&s, 3, TUI_COLORS_NONE), TUI_C_NORMAL);
    assert_int_equal(tui_scale_pair(&s, 0, TUI_COLORS_256), TUI_C_NORMAL);
    /* 8 bins in 256 colours: every bin its own colour, increasing */
    tui_scale_make(&s, TUI_SCALE_SEQ, 1.0f, 8, 0);
    for (int b = 1; b <= 8; b++)
        assert_int_equal(tui_scale_pair(&s, b, TUI_COLORS_256), TUI_C_HEAT0 + b - 1);
    /* 8 bins with glyphs: levels never decrease */
    int prev = -1;
    for (int b = 1; b <= 8; b++) {
        const char *g = tui_scale_glyph(&s, b, 0);
        int lvl = (int)(strchr(".:#@", g[0]) - ".:#@");
        assert_true(lvl >= prev);
        prev = lvl;
    }
    assert_int_equal(prev, 3);
}

static void test_bar_widths(void **st)
{
    (void)st;
    char b[128];
    tui_bar(1.0f, 5, 0, b, sizeof b);
    assert_string_equal(b, "#####");
    tui_bar(0.0f, 5, 0, b, sizeof b);
    assert_string_equal(b, "");
    tui_bar(0.5f, 4, 1, b, sizeof b);
    assert_string_equal(b, "██");
    tui_bar(0.55f, 10, 1, b, sizeof b);
    assert_string_equal(b, "█████▌");
    tui_bar(3.0f, 3, 0, b, 3);            /* truncated to the buffer */
    assert_string_equal(b, "##");
}

static void test_escape_controls_and_invalid_utf8(void **st)
{
    (void)st;
    char out[128];
    const char in[] = "a\nb\t\x1b[31m\\z\x7f";
    size_t n = tui_escape(in, sizeof in - 1, out, sizeof out);
    assert_string_equal(out, "a\\nb\\t\\x1B[31m\\\\z\\x7F");
    assert_int_equal(n, strlen(out));
    /* valid UTF-8 kept, invalid bytes and C1 controls spelled out */
    const char u[] = "\xe2\x96\x81the \xff \xc2\x9b x\xc3";
    tui_escape(u, sizeof u - 1, out, sizeof out);
    assert_string_equal(out, "\xe2\x96\x81the \\xFF \\xC2\\x9B x\\xC3");
    /* overlong NUL and a surrogate are invalid */
    const char o[] = "\xc0\x80\xed\xa0\x80";
    tui_escape(o, sizeof o - 1, out, sizeof out);
    assert_string_equal(out, "\\xC0\\x80\\xED\\xA0\\x80");
    /* embedded NUL */
    tui_escape("a\0b", 3, out, sizeof out);
    assert_string_equal(out, "a\\x00b");
    /* truncation: NUL-terminated, never a split sequence, full length back */
    char small[6];
    n = tui_escape("ab\ncd", 5, small, sizeof small);
    assert_int_equal(n, 6);
    assert_string_equal(small, "ab\\nc");
    n = tui_escape("\xe2\x96\x81\xe2\x96\x81", 6, small, sizeof small);
    assert_int_equal(n, 6);
    assert_string_equal(small, "\xe2\x96\x81");
}

static void test_str_width_and_fit(void **st)
{
    (void)st;
    assert_int_equal(tui_str_width("abc"), 3);
    assert_int_equal(tui_str_width("░▒▓█"), 4);
    assert_int_equal(tui_str_width("日本"), 4);
    assert_int_equal(tui_str_width("e\xcc\x81"), 1);  /* combining accent */
    assert_int_equal(tui_str_fit("日本語", 5), 6);     /* two wide chars */
    assert_int_equal(tui_str_fit("ab░c", 3), 5);
    assert_int_equal(tui_str_fit("abc", 0), 0);
    assert_int_equal(tui_utf8_len("\xe2\x96\x91", 3), 3);
    assert_int_equal(tui_utf8_len("\xe2\x96", 2), 1);
}

static void test_list_nav_keys_move_and_clamp(void **st)
{
    (void)st;
    int cur = 0, top = 0;
    assert_int_equal(tui_list_nav(KEY_UP, &cur, &top, 10, 4), TUI_K_HANDLED | TUI_K_REDRAW);
    assert_int_equal(cur, 0);
    tui_list_nav('j', &cur, &top, 10, 4);
    tui_list_nav(KEY_DOWN, &cur, &top, 10, 4);
    assert_int_equal(cur, 2);
    assert_int_equal(top, 0);
    tui_list_nav(KEY_NPAGE, &cur, &top, 10, 4);
    assert_int_equal(cur, 6);
    assert_int_equal(top, 3);      /* cursor stays on the last visible row */
    tui_list_nav('G', &cur, &top, 10, 4);
    assert_int_equal(cur, 9);
    assert_int_equal(top, 6);
    tui_list_nav(KEY_HOME, &cur, &top, 10, 4);
    assert_int_equal(cur, 0);
    assert_int_equal(top, 0);
    assert_int_equal(tui_list_nav('x', &cur, &top, 10, 4), TUI_K_IGNORED);
    /* empty list */
    cur = 3;
    tui_list_nav(KEY_DOWN, &cur, &top, 0, 4);
    assert_int_equal(cur, 0);
}

static void test_hm_geom_big_grid_scrolls_to_cursor(void **st)
{
    (void)st;
    TuiHmGeom g = { 0 };
    /* 256 experts × 61 layers in a 114×30 inner area: 36 columns, 29 rows */
    tui_hm_geom(&g, 61, 256, 114, 30, 0, 0, 0);
    assert_int_equal(g.egroup, 1);
    assert_int_equal(g.cols, (114 - TUI_HM_LABEL) / TUI_HM_CELL);
    assert_int_equal(g.rows, 29);
    assert_int_equal(g.e0, 0);
    tui_hm_geom(&g, 61, 256, 114, 30, 0, 60, 255);
    assert_int_equal(g.e0, 256 - g.cols);
    assert_int_equal(g.l0, 61 - 29);
    /* moving back left scrolls only as far as needed */
    tui_hm_geom(&g, 61, 256, 114, 30, 0, 60, 200);
    assert_int_equal(g.e0, 200);
    tui_hm_geom(&g, 61, 256, 114, 30, 0, 60, 210);
    assert_int_equal(g.e0, 200);
}

static void test_hm_geom_condense_fits_everything(void **st)
{
    (void)st;
    TuiHmGeom g = { 0 };
    tui_hm_geom(&g, 61, 256, 114, 30, 1, 60, 255);
    assert_int_equal(g.egroup, 8);        /* ceil(256/36) */
    assert_int_equal(g.lgroup, 3);        /* ceil(61/29) */
    assert_int_equal(g.n_ecol, 32);
    assert_int_equal(g.n_lrow, 21);
    assert_int_equal(g.e0, 0);
    assert_int_equal(g.l0, 0);
    assert_true(g.cols * g.egroup >= 256 && g.rows * g.lgroup >= 61);
    /* condensed cell = max of its group */
    TuiGrid gr = { 61, 256, calloc(61 * 256, sizeof(float)), 0, "" };
    assert_non_null(gr.v);
    gr.v[60 * 256 + 255] = 0.75f;
    gr.v[60 * 256 + 250] = 0.5f;
    assert_float_equal(tui_hm_cell(&gr, &g, 20, 31), 0.75f, 0);
    assert_float_equal(tui_hm_cell(&gr, &g, 0, 0), 0.0f, 0);
    gr.diverging = 1;
    gr.v[0] = -0.9f;
    gr.v[1] = 0.3f;
    assert_float_equal(tui_hm_cell(&gr, &g, 0, 0), -0.9f, 0);
    tui_grid_done(&gr);
    /* tiny areas give nothing to draw, never a crash */
    tui_hm_geom(&g, 61, 256, 3, 1, 1, 5, 5);
    assert_int_equal(g.cols, 0);
    assert_int_equal(g.rows, 0);
}

static void test_agg_grid_share_parts_and_delta(void **st)
{
    (void)st;
    TuiAgg a, b;
    assert_int_equal(tui_agg_init(&a, 2, 4, 2), 0);
    assert_int_equal(tui_agg_init(&b, 2, 4, 2), 0);
    int32_t e01[2] = { 0, 1 }, e03[2] = { 0, 3 };
    float w[2] = { 0.75f, 0.25f };
    /* 2 prompt + 2 generated positions, layer 0 */
    tui_agg_add(&a, 0, 1, e01, w, 2);
    tui_agg_add(&a, 0, 1, e01, w, 2);
    tui_agg_add(&a, 0, 0, e03, w, 2);
    tui_agg_add(&a, 0, 0, e01, w, 2);
    tui_agg_add(&a, 7, 0, e01, w, 2);     /* bad layer: ignored */
    a.n_tok = 4;
    a.n_prompt = 2;
    TuiGrid g = { 0 };
    assert_int_equal(tui_grid_from_agg(&g, &a, TUI_HM_SHARE, TUI_HM_ALL), 0);
    assert_float_equal(g.v[0], 1.0f, 1e-6);
    assert_float_equal(g.v[1], 0.75f, 1e-6);
    assert_float_equal(g.v[3], 0.25f, 1e-6);
    tui_grid_from_agg(&g, &a, TUI_HM_SHARE, TUI_HM_GEN);
    assert_float_equal(g.v[1], 0.5f, 1e-6);
    assert_float_equal(g.v[3], 0.5f, 1e-6);
    tui_grid_from_agg(&g, &a, TUI_HM_WEIGHT, TUI_HM_PROMPT);
    assert_float_equal(g.v[0], 0.75f, 1e-6);
    assert_float_equal(g.v[1], 0.25f, 1e-6);
    tui_agg_add(&b, 0, 0, e03, w, 2);
    b.n_tok = 1;
    assert_int_equal(tui_grid_delta(&g, &a, &b, TUI_HM_SHARE, TUI_HM_ALL), 0);
    assert_int_equal(g.diverging, 1);
    assert_float_equal(g.v[1], 0.75f, 1e-6);
    assert_float_equal(g.v[3], -0.75f, 1e-6);
    TuiAgg c;
    tui_agg_init(&c, 3, 4, 2);
    assert_int_equal(tui_grid_delta(&g, &a, &c, TUI_HM_SHARE, TUI_HM_ALL), -1);
    tui_agg_done(&c);
    tui_grid_done(&g);
    tui_agg_done(&a);
    tui_agg_done(&b);
    assert_int_equal(tui_agg_init(&a, 0, 4, 2), -1);
}

static void test_tokens_routes_hits_entropy(void **st)
{
    (void)st;
    TuiTokens t;
    assert_int_equal(tui_tokens_init(&t, 3, 4, 2, 1), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tui_tokens_push(&t, i, "ab", 2, i < 10, -0.5f), i);
    int32_t ex[2] = { 2, 3 };
    float wt[2] = { 0.6f, 0.4f };
    float flat[4] = { 0, 0, 0, 0 }, peak[4] = { 100, 0, 0, 0 };
    assert_int_equal(tui_tokens_set_route(&t, 99, 1, ex, wt, 2, flat), 0);
    assert_int_equal(tui_tokens_set_route(&t, 100, 1, ex, wt, 2, flat), -1);
    assert_true(tui_tokens_hit(&t, 99, 1, 3));
    assert_false(tui_tokens_hit(&t, 99, 0, 3));
    assert_false(tui_tokens_hit(&t, 98, 1, 3));
    float d = fabsf(t.entropy[99] - logf(4.0f));
    printf("entropy of a flat router: max diff %g\n", (double)d);
    assert_true(d < 1e-5f);
    /* second layer peaked: mean of ln4 and ~0 */
    tui_tokens_set_route(&t, 99, 2, ex, wt, 2, peak);
    assert_float_equal(t.entropy[99], logf(4.0f) / 2.0f, 1e-4);
    assert_true(isnan(t.entropy[0]));
    assert_string_equal(t.piece[57], "ab");
    tui_tokens_done(&t);
    tui_tokens_done(NULL);
}

static void test_piece_text_spm_bpe_bytes(void **st)
{
    (void)st;
    char b[64];
    assert_int_equal(tui_piece_text("\xe2\x96\x81the", b, sizeof b), 4);
    assert_string_equal(b, " the");
    assert_int_equal(tui_piece_text("<0x0A>", b, sizeof b), 1);
    assert_string_equal(b, "\n");
    assert_int_equal(tui_piece_text("<0x1B>", b, sizeof b), 1);
    assert_int_equal((unsigned char)b[0], 0x1B);
    tui_piece_text("\xc4\xa0int\xc4\x8a", b, sizeof b);
    assert_string_equal(b, " int\n");
    tui_piece_text("<0xZZ>", b, sizeof b);              /* not a byte token */
    assert_string_equal(b, "<0xZZ>");
    tui_piece_text("\xe2\x96\x81\xe2\x96\x81" "ab", b, 3); /* cut to the buffer */
    assert_string_equal(b, "  ");
    /* a whole token list, no model: the same conventions */
    TuiTokens t;
    tui_tokens_init(&t, 1, 2, 1, 0);
    tui_tokens_push(&t, 5, "\xe2\x96\x81x", 4, 1, NAN);
    tui_tokens_to_text(&t, NULL);
    assert_string_equal(t.piece[0], " x");
    tui_tokens_done(&t);
}

static void test_tokens_put_fills_placeholders(void **st)
{
    (void)st;
    TuiTokens t;
    tui_tokens_init(&t, 2, 4, 2, 0);
    int32_t ex[2] = { 1, 2 };
    float w[2] = { 0.5f, 0.5f };
    /* a route for position 2 before any token: placeholders 0..2 */
    assert_int_equal(tui_tokens_put(&t, 2, -1, "", 0, 1, NAN), 2);
    assert_int_equal(t.n, 3);
    assert_int_equal(tui_tokens_set_route(&t, 2, 1, ex, w, 2, NULL), 0);
    assert_int_equal(tui_tokens_put(&t, 2, 42, "hi", 2, 1, NAN), 2);
    assert_int_equal(t.n, 3);
    assert_string_equal(t.piece[2], "hi");
    assert_int_equal(t.id[2], 42);
    assert_true(tui_tokens_hit(&t, 2, 1, 2));      /* the route survived */
    assert_int_equal(tui_tokens_put(&t, 3, 7, "x", 1, 0, -1.0f), 3);
    assert_int_equal(t.n, 4);
    assert_int_equal(tui_tokens_put(&t, -1, 7, "x", 1, 0, -1.0f), -1);
    TuiTokens u;
    tui_tokens_init(&u, 2, 4, 2, 0);
    for (int i = 0; i < 4; i++)
        tui_tokens_put(&u, i, t.id[i], t.piece[i], strlen(t.piece[i]), t.is_prompt[i], NAN);
    assert_int_equal(tui_first_divergence(&t, &u), -1);
    tui_tokens_put(&u, 3, 8, "y", 1, 0, NAN);
    assert_int_equal(tui_first_divergence(&t, &u), 3);
    tui_tokens_put(&u, 4, 9, "z", 1, 0, NAN);
    assert_int_equal(tui_first_divergence(&t, &u), 3);
    tui_tokens_put(&u, 3, 7, "x", 1, 0, NAN);
    assert_int_equal(tui_first_divergence(&t, &u), 4);   /* one is longer */
    tui_tokens_done(&t);
    tui_tokens_done(&u);
}

static void test_runs_push_copies_strings(void **st)
{
    (void)st;
    TuiRunList r = { 0 };
    char prompt[16] = "hello";
    TuiRun x = { .id = 5, .prompt = prompt, .ivs = NULL };
    for (int i = 0; i < 40; i++)
        assert_int_equal(tui_runs_push(&r, &x), 0);
    prompt[0] = 'J';
    assert_string_equal(r.a[39].prompt, "hello");
    assert_string_equal(r.a[0].ivs, "");
    assert_int_equal(r.n, 40);
    tui_runs_done(&r);
}

typedef struct { TuiQueue *q; int n; } Prod;

static void *producer(void *p)
{
    Prod *pr = p;
    for (int i = 0; i < pr->n; i++) {
        TuiEv e = { .kind = TUI_EV_TOKEN, .pos = i };
        tui_queue_push(pr->q, &e);
    }
    return NULL;
}

static void test_queue_two_threads_keeps_order(void **st)
{
    (void)st;
    TuiQueue q;
    assert_int_equal(tui_queue_init(&q), 0);
    Prod pr = { &q, 5000 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, producer, &pr), 0);
    int next = 0;
    while (next < 5000) {
        int n;
        TuiEv *e = tui_queue_take(&q, 64, &n);
        assert_true(n <= 64);
        while (e) {
            TuiEv *x = e->next;
            assert_int_equal(e->pos, next);
            next++;
            free(e);
            e = x;
        }
    }
    pthread_join(th, NULL);
    assert_false(tui_queue_cancelled(&q));
    tui_queue_cancel(&q);
    assert_true(tui_queue_cancelled(&q));
    TuiEv left = { .kind = TUI_EV_DONE };
    tui_queue_push(&q, &left);
    tui_queue_done(&q);   /* frees the pending event (ASan checks) */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_every_size_fits_and_tiles),
        cmocka_unit_test(test_layout_tiny_terminal_not_ok),
        cmocka_unit_test(test_layout_sample_heatmap_shows_all_layers),
        cmocka_unit_test(test_colors_pick_no_color_wins),
        cmocka_unit_test(test_scale_seq_bins_nice_edges),
        cmocka_unit_test(test_scale_div_symmetric_signed),
        cmocka_unit_test(test_scale_glyph_and_pair_by_depth),
        cmocka_unit_test(test_bar_widths),
        cmocka_unit_test(test_escape_controls_and_invalid_utf8),
        cmocka_unit_test(test_str_width_and_fit),
        cmocka_unit_test(test_list_nav_keys_move_and_clamp),
        cmocka_unit_test(test_hm_geom_big_grid_scrolls_to_cursor),
        cmocka_unit_test(test_hm_geom_condense_fits_everything),
        cmocka_unit_test(test_agg_grid_share_parts_and_delta),
        cmocka_unit_test(test_tokens_routes_hits_entropy),
        cmocka_unit_test(test_piece_text_spm_bpe_bytes),
        cmocka_unit_test(test_tokens_put_fills_placeholders),
        cmocka_unit_test(test_runs_push_copies_strings),
        cmocka_unit_test(test_queue_two_threads_keeps_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
