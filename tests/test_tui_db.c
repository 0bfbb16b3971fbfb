/*
** tests/test_tui_db.c — the app's database source: runs written through
** the db logging API come back through the loader with the same counts,
** weights, tokens and routes; tag and not-tag aggregates add up.
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

#define DB_FILE "build/tui-test.db"
#define NL 6
#define NE 16
#define K 2

static const char *const texts[][2] = {
    { "math", "347 + 128 = 475\n78 * 8 = 624\n" },
    { "math", "12 + 30 = 42\n9 * 9 = 81\n" },
    { "english", "In the beginning God created the heaven and the earth.\n" },
    { "c", "#include <stdio.h>\nint main(void) { return 0; }\n" },
    { "", "ESC\x1b[31m in a prompt\tstays visible" },
};
#define NRUNS ((int)(sizeof texts / sizeof texts[0]))

/* Deterministic route: tag-dependent preferred experts, position jitter. */
static void route_of(int run, int pos, int layer, int32_t *ex, float *w)
{
    int base = (int)(strlen(texts[run][0]) * 5 + (size_t)layer * 3) % NE;
    ex[0] = (base + (pos % 3 == 0 ? 0 : 1)) % NE;
    ex[1] = (base + 5 + pos % 4) % NE;
    w[0] = 0.6f + 0.01f * (float)(pos % 10);
    w[1] = 1.0f - w[0];
}

typedef struct { int64_t id[NRUNS]; } Ids;
static Ids ids;

static int write_db(void **st)
{
    (void)st;
    unlink(DB_FILE);
    unlink(DB_FILE "-wal");
    unlink(DB_FILE "-shm");
    DbErr e = { 0 };
    Db *db = db_open(DB_FILE, DB_OPEN_CREATE, &e);
    if (!db) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    DbModel m = { .path = "samples/sample-q8_0.gguf", .name = "synthetic", .arch = "olmoe",
                  .file_size = 1234, .hash = 42, .n_layer = NL, .n_expert = NE, .k = K };
    if (db_model_register(db, &m, &e) != DB_OK)
        return -1;
    for (int r = 0; r < NRUNS; r++) {
        DbRunInfo ri = { .model = m.id, .tag = texts[r][0][0] ? texts[r][0] : NULL,
                         .prompt = texts[r][1], .prompt_fmt = texts[r][1], .greedy = 1,
                         .n_predict = 8, .n_ctx = 256,
                         .iv_text = r == 1 ? "disable 2:11 (all)\n" : NULL };
        DbLog *lg = db_log_begin(db, &ri, 0, &e);
        if (!lg)
            return -1;
        ids.id[r] = db_log_run_id(lg);
        const char *s = texts[r][1];
        int n = (int)strlen(s), np = n / 2;
        /* one token per byte; the second half counts as generated */
        for (int p = 0; p < n; p++) {
            DbToken t = { .pos = p, .token = (unsigned char)s[p], .is_prompt = p < np,
                          .piece = s + p, .piece_len = 1, .logprob = p < np ? NAN : -0.1f * (float)(p % 7) };
            if (db_log_token(lg, &t) != DB_OK)
                return -1;
            for (int l = 0; l < NL; l++) {
                int32_t ex[K];
                float w[K];
                route_of(r, p, l, ex, w);
                DbRoute rt = { .pos = p, .layer = l, .is_prompt = p < np, .k = K, .experts = ex,
                               .weights = w, .shared_gate = NAN };
                if (db_log_route(lg, &rt) != DB_OK)
                    return -1;
            }
        }
        DbRunStats rs = { .n_prompt = np, .n_gen = n - np };
        if (db_log_finish(lg, DB_RUN_COMPLETE, &rs, &e) != DB_OK)
            return -1;
    }
    db_close(db);
    return 0;
}

static int remove_db(void **st)
{
    (void)st;
    unlink(DB_FILE);
    unlink(DB_FILE "-wal");
    unlink(DB_FILE "-shm");
    return 0;
}

static void test_source_list_runs_escapes_nothing_keeps_raw(void **st)
{
    (void)st;
    TuiSource src;
    char err[512];
    assert_int_equal(tui_db_source_open(&src, DB_FILE, 0, err, sizeof err), 0);
    TuiRunList rl = { 0 };
    assert_int_equal(src.list_runs(src.self, &rl, err, sizeof err), 0);
    assert_int_equal(rl.n, NRUNS);
    for (int r = 0; r < NRUNS; r++) {
        assert_true(rl.a[r].id == ids.id[r]);
        assert_string_equal(rl.a[r].prompt, texts[r][1]);
        assert_string_equal(rl.a[r].tag, texts[r][0]);
        assert_int_equal(rl.a[r].n_tok, (int)strlen(texts[r][1]));
        assert_string_equal(rl.a[r].status, "complete");
    }
    assert_string_equal(rl.a[1].ivs, "disable 2:11 (all)");
    assert_string_equal(rl.a[0].model, "synthetic");
    tui_runs_done(&rl);
    src.close(src.self);
}

static void test_source_agg_matches_logged_routes(void **st)
{
    (void)st;
    TuiSource src;
    char err[512];
    assert_int_equal(tui_db_source_open(&src, DB_FILE, 0, err, sizeof err), 0);
    TuiAgg a, want;
    assert_int_equal(src.load_agg(src.self, &ids.id[0], 1, &a, err, sizeof err), 0);
    assert_int_equal(a.n_layer, NL);
    assert_int_equal(a.n_expert, NE);
    assert_int_equal(a.k, K);
    tui_agg_init(&want, NL, NE, K);
    int n = (int)strlen(texts[0][1]);
    for (int p = 0; p < n; p++)
        for (int l = 0; l < NL; l++) {
            int32_t ex[K];
            float w[K];
            route_of(0, p, l, ex, w);
            tui_agg_add(&want, l, p < n / 2, ex, w, K);
        }
    float worst = 0.0f;
    for (int i = 0; i < NL * NE; i++) {
        worst = fmaxf(worst, fabsf(a.cnt[i] - want.cnt[i]));
        worst = fmaxf(worst, fabsf(a.cnt_p[i] - want.cnt_p[i]));
        worst = fmaxf(worst, fabsf(a.wt[i] - want.wt[i]));
        worst = fmaxf(worst, fabsf(a.wt_p[i] - want.wt_p[i]));
    }
    printf("aggregate from db vs logged routes: max diff %g\n", (double)worst);
    assert_true(worst < 1e-4f);
    assert_int_equal(a.n_tok, n);
    assert_int_equal(a.n_prompt, n / 2);
    /* two runs summed */
    TuiAgg two;
    assert_int_equal(src.load_agg(src.self, ids.id, 2, &two, err, sizeof err), 0);
    assert_int_equal(two.n_tok, n + (int)strlen(texts[1][1]));
    /* tag + not-tag = everything */
    TuiAgg tag, rest, all_e;
    assert_int_equal(src.load_tag_agg(src.self, "math", 0, &tag, err, sizeof err), 0);
    assert_int_equal(src.load_tag_agg(src.self, "math", 1, &rest, err, sizeof err), 0);
    assert_int_equal(tag.n_tok, two.n_tok);
    int total = 0;
    for (int r = 0; r < NRUNS; r++)
        total += (int)strlen(texts[r][1]);
    assert_int_equal(tag.n_tok + rest.n_tok, total);
    float d = 0.0f;
    for (int i = 0; i < NL * NE; i++)
        d = fmaxf(d, fabsf(tag.cnt[i] - two.cnt[i]));
    assert_true(d < 1e-4f);
    assert_int_equal(src.load_tag_agg(src.self, "nosuchtag", 0, &all_e, err, sizeof err), -1);
    assert_non_null(strstr(err, "nosuchtag"));
    int64_t bogus = 99999;
    assert_int_equal(src.load_agg(src.self, &bogus, 1, &all_e, err, sizeof err), -1);
    tui_agg_done(&a);
    tui_agg_done(&want);
    tui_agg_done(&two);
    tui_agg_done(&tag);
    tui_agg_done(&rest);
    src.close(src.self);
}

static void test_source_tokens_and_routes(void **st)
{
    (void)st;
    TuiSource src;
    char err[512];
    assert_int_equal(tui_db_source_open(&src, DB_FILE, 0, err, sizeof err), 0);
    TuiTokens t;
    assert_int_equal(src.load_tokens(src.self, ids.id[4], &t, err, sizeof err), 0);
    const char *s = texts[4][1];
    assert_int_equal(t.n, (int)strlen(s));
    assert_string_equal(t.piece[0], "E");
    assert_string_equal(t.piece[3], "\x1b");   /* raw in the model, escaped on screen */
    for (int p = 0; p < t.n; p++)
        for (int l = 0; l < NL; l++) {
            int32_t ex[K];
            float w[K];
            route_of(4, p, l, ex, w);
            assert_true(tui_tokens_hit(&t, p, l, ex[0]));
            assert_true(tui_tokens_hit(&t, p, l, ex[1]));
        }
    assert_int_equal(t.is_prompt[0], 1);
    assert_int_equal(t.is_prompt[t.n - 1], 0);
    assert_true(isnan(t.logprob[0]));
    tui_tokens_done(&t);
    assert_int_equal(src.load_tokens(src.self, 99999, &t, err, sizeof err), -1);
    src.close(src.self);
}

static void test_source_contrast_matches_plain_delta(void **st)
{
    (void)st;
    TuiSource src;
    char err[512];
    assert_int_equal(tui_db_source_open(&src, DB_FILE, 0, err, sizeof err), 0);
    assert_non_null(src.contrast);
    TuiCi ci;
    assert_int_equal(src.contrast(src.self, "math", "english", &ci, err, sizeof err), 0);
    assert_int_equal(ci.n_layer, NL);
    assert_int_equal(ci.n_expert, NE);
    TuiAgg a, b;
    assert_int_equal(src.load_tag_agg(src.self, "math", 0, &a, err, sizeof err), 0);
    assert_int_equal(src.load_tag_agg(src.self, "english", 0, &b, err, sizeof err), 0);
    int tested = 0;
    float worst = 0.0f;
    for (int i = 0; i < NL * NE; i++) {
        if (!ci.has[i])
            continue;
        tested++;
        float plain = a.cnt[i] / (float)a.n_tok - b.cnt[i] / (float)b.n_tok;
        worst = fmaxf(worst, fabsf(plain - ci.delta[i]));
        assert_true(ci.lo[i] <= ci.delta[i] + 1e-6f && ci.delta[i] <= ci.hi[i] + 1e-6f);
        assert_true(ci.q[i] >= 0.0f && ci.q[i] <= 1.0f);
    }
    printf("contrast: %d cells tested, delta vs plain share difference max diff %g\n", tested, (double)worst);
    assert_true(tested > 0);
    assert_true(worst < 1e-4f);
    tui_ci_done(&ci);
    assert_int_equal(src.contrast(src.self, "math", "nosuchtag", &ci, err, sizeof err), -1);
    assert_non_null(strstr(err, "nosuchtag"));
    tui_agg_done(&a);
    tui_agg_done(&b);
    src.close(src.self);
}

static void test_source_open_not_a_db_names_file(void **st)
{
    (void)st;
    FILE *f = fopen("build/tui-notadb.db", "w");
    assert_non_null(f);
    fputs("this is not sqlite, just text that is long enough to have a header........\n", f);
    fclose(f);
    TuiSource src;
    char err[512];
    assert_int_equal(tui_db_source_open(&src, "build/tui-notadb.db", 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "build/tui-notadb.db"));
    unlink("build/tui-notadb.db");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_source_list_runs_escapes_nothing_keeps_raw),
        cmocka_unit_test(test_source_agg_matches_logged_routes),
        cmocka_unit_test(test_source_tokens_and_routes),
        cmocka_unit_test(test_source_contrast_matches_plain_delta),
        cmocka_unit_test(test_source_open_not_a_db_names_file),
    };
    return cmocka_run_group_tests(tests, write_db, remove_db);
}
