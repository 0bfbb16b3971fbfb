/*
** tests/test_tui_engine.c — the app's live runs with the real engine on
** the shipped sample: a prompt generated on the engine thread streams into
** the app (tokens, routes, aggregate) and is logged to the database; a
** re-run with an expert disabled is logged as a child of the baseline with
** the baseline's settings and the intervention; a cancelled run is logged
** as failed.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/db.h"
#include "tui/app.h"

#define MODEL "samples/sample-q8_0.gguf"
#define DBF "build/tui-engine-test.db"

typedef struct {
    TuiApp app;
    TuiSource src;
    TuiRunner runner;
} Ctx;

static int setup(void **st)
{
    unlink(DBF);
    unlink(DBF "-wal");
    unlink(DBF "-shm");
    Ctx *c = calloc(1, sizeof *c);
    char err[512], title[160];
    if (!c || tui_db_source_open(&c->src, DBF, 1, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (tui_engine_runner_open(&c->runner, MODEL, DBF, 12, 2, title, sizeof title, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (tui_app_init(&c->app, &c->src, &c->runner, title))
        return -1;
    *st = c;
    return 0;
}

static int teardown(void **st)
{
    Ctx *c = *st;
    tui_app_done(&c->app);
    c->runner.close(c->runner.self);
    c->src.close(c->src.self);
    free(c);
    return 0;
}

static void wait_done(TuiApp *a)
{
    for (int i = 0; i < 6000 && a->running; i++) {
        tui_app_poll(a);
        usleep(2000);
    }
    assert_int_equal(a->running, 0);
}

static void test_engine_live_run_streams_and_logs(void **st)
{
    Ctx *c = *st;
    TuiApp *a = &c->app;
    assert_int_equal(c->runner.n_layer, 6);
    assert_int_equal(c->runner.n_expert, 16);
    assert_int_equal(c->runner.k, 2);
    assert_int_equal(tui_app_start_run(a, "347 + 128 = ", 0), 0);
    assert_int_equal(a->running, 1);
    wait_done(a);
    assert_int_equal(a->msg[0] == 0 || strstr(a->msg, "done") != NULL, 1);
    assert_true(a->live_run_id > 0);
    int np = 0;
    for (int i = 0; i < a->toks.n; i++) {
        np += a->toks.is_prompt[i];
        assert_true(a->toks.id[i] >= 0);       /* no placeholder left */
    }
    assert_true(np > 0);
    assert_int_equal(a->toks.n - np, 12);
    /* every evaluated position has a route in every layer: k entries of
    ** the aggregate per (position, layer).  Only the last sampled token may
    ** be left unevaluated. */
    int routed = 0;
    for (int i = 0; i < a->toks.n; i++) {
        int layers = 0;
        for (int l = 0; l < 6; l++)
            layers += a->toks.experts[((size_t)i * 6 + (size_t)l) * 2] >= 0;
        assert_true(layers == 0 || layers == 6);
        assert_true(layers == 6 || i == a->toks.n - 1);
        routed += layers == 6;
    }
    float sum = 0.0f;
    for (int i = 0; i < a->agg.n_layer * a->agg.n_expert; i++)
        sum += a->agg.cnt[i];
    printf("live aggregate: %g routed of %d positions (%d tokens) x 6 layers x k=2\n", (double)sum,
           routed, a->toks.n);
    assert_float_equal(sum, (float)(routed * 6 * 2), 0);
    /* the same run through the database equals what streamed in */
    int idx = -1;
    for (int i = 0; i < a->runs.n; i++)
        if (a->runs.a[i].id == a->live_run_id)
            idx = i;
    assert_true(idx >= 0);
    assert_string_equal(a->runs.a[idx].status, "complete");
    TuiTokens live = a->toks;
    TuiAgg lagg = a->agg;
    memset(&a->toks, 0, sizeof a->toks);
    memset(&a->agg, 0, sizeof a->agg);
    assert_int_equal(tui_app_open_run(a, idx), 0);
    assert_int_equal(a->toks.n, live.n);
    float worst = 0.0f;
    for (int i = 0; i < live.n; i++) {
        assert_int_equal(a->toks.id[i], live.id[i]);
        assert_string_equal(a->toks.piece[i], live.piece[i]);
    }
    for (int i = 0; i < lagg.n_layer * lagg.n_expert; i++) {
        worst = fmaxf(worst, fabsf(a->agg.cnt[i] - lagg.cnt[i]));
        worst = fmaxf(worst, fabsf(a->agg.wt[i] - lagg.wt[i]));
    }
    printf("db vs live aggregate: max diff %g\n", (double)worst);
    assert_true(worst < 1e-4f);
    tui_tokens_done(&live);
    tui_agg_done(&lagg);
}

static void test_engine_rerun_disable_is_child_with_iv(void **st)
{
    Ctx *c = *st;
    TuiApp *a = &c->app;
    int base = a->cur_run;
    assert_true(base >= 0);
    int64_t base_id = a->runs.a[base].id;
    /* disable, in every layer, the expert each layer chose first for the
    ** first generated token: the greedy text must change */
    int g = -1;
    for (int i = 0; i < a->toks.n; i++)
        if (!a->toks.is_prompt[i]) {
            g = i;
            break;
        }
    assert_true(g > 0);
    a->n_iv = 0;
    for (int l = 0; l < 6; l++) {
        a->sel_layer = l;
        a->sel_expert = a->toks.experts[((size_t)g * 6 + (size_t)l) * 2];
        assert_int_equal(tui_iv_key(a, 'd') & TUI_K_HANDLED, TUI_K_HANDLED);
    }
    assert_int_equal(a->n_iv, 6);
    char prompt[256];
    snprintf(prompt, sizeof prompt, "%s", a->runs.a[base].prompt);
    assert_int_equal(tui_app_start_run(a, prompt, 1), 0);
    wait_done(a);
    assert_int_equal(a->cur, TUI_V_STEER);
    assert_true(a->live_run_id > base_id);
    int d = tui_first_divergence(&a->base_toks, &a->toks);
    printf("first divergence at position %d (first generated %d)\n", d, g);
    assert_true(d >= g);
    int idx = -1;
    for (int i = 0; i < a->runs.n; i++)
        if (a->runs.a[i].id == a->live_run_id)
            idx = i;
    assert_true(idx >= 0);
    assert_true(a->runs.a[idx].parent == base_id);
    assert_non_null(strstr(a->runs.a[idx].ivs, "disable"));
    assert_string_equal(a->runs.a[idx].prompt, prompt);
    /* the child keeps the baseline's generation budget (12 set at open) */
    assert_int_equal(a->runs.a[idx].n_tok - a->runs.a[idx].n_prompt, 12);
}

static void test_engine_cancel_logs_failed(void **st)
{
    Ctx *c = *st;
    TuiApp *a = &c->app;
    assert_int_equal(tui_app_start_run(a, "Once upon a time", 0), 0);
    tui_queue_cancel(&a->q);
    wait_done(a);
    assert_non_null(strstr(a->msg, "cancelled"));
    assert_string_equal(a->runs.a[a->runs.n - 1].status, "failed");
}

int main(void)
{
    if (access(MODEL, R_OK) != 0) {
        printf("test_tui_engine: %s not found; skipped\n", MODEL);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_live_run_streams_and_logs),
        cmocka_unit_test(test_engine_rerun_disable_is_child_with_iv),
        cmocka_unit_test(test_engine_cancel_logs_failed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
