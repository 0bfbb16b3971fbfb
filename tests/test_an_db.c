/*
** tests/test_an_db.c — the analysis glue and the stats / contrast / diff
** subcommands on a small database written through db/db.h, with numbers
** worked out by hand.
**
** The model: 2 layers, layer 0 dense (no routes), layer 1 MoE with 2
** experts, top-1.  Every run has 10 positions, the first 2 prompt; position
** p chooses expert 0 when p < c0, else expert 1.
**   run  tag  c0  tokens                        logprob of gen. position p
**    1    a    8  5 6 7 8 9 10 11 12 13 14      −0.1·p   (router logits [0,0])
**    2    a    6  5 6 7 20 21 ... 26            −0.2·p
**    3    b    2  30 ... 39                      −0.1·p
**    4    b    4  30 ... 39                      −0.1·p
**    5    c    —  (left running: not complete)
**    6    d    5  30 ... 39; the last (generated) token has no route, as
**                  when the engine samples a token it never evaluates
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analysis/an.h"
#include "db/db.h"
#include "cli/cmds.h"

static char g_dir[64], g_db[128];

static void near(double got, double want, double tol, const char *what)
{
    double d = fabs(got - want);
    printf("    %s: largest difference %.3g\n", what, d);
    if (!(d <= tol))
        fail_msg("%s: got %.9g want %.9g", what, got, want);
}

static void log_run_n(Db *db, int64_t model, const char *tag, int c0, const int32_t *tok,
                      float lp_step, int logits, int finish, int n_routed)
{
    DbErr err = { 0 };
    DbRunInfo ri = { .model = model, .tag = tag, .prompt = "p", .flags = logits ? DB_RUN_LOGITS : 0 };
    DbLog *lg = db_log_begin(db, &ri, 0, &err);
    assert_non_null(lg);
    for (int p = 0; p < 10; p++) {
        char piece[8];
        snprintf(piece, sizeof piece, "t%d", (int)tok[p]);
        DbToken t = { .pos = p, .token = tok[p], .is_prompt = p < 2, .piece = piece,
                      .piece_len = -1, .logprob = p < 2 ? NAN : lp_step * (float)p };
        assert_int_equal(db_log_token(lg, &t), DB_OK);
        if (p >= n_routed)
            continue;
        int32_t e = p < c0 ? 0 : 1;
        float w = 1.0f, lg2[2] = { 0, 0 };
        DbRoute rt = { .pos = p, .layer = 1, .is_prompt = p < 2, .k = 1, .experts = &e,
                       .weights = &w, .logits = logits ? lg2 : NULL, .shared_gate = NAN };
        assert_int_equal(db_log_route(lg, &rt), DB_OK);
    }
    if (finish) {
        DbRunStats st = { .n_prompt = 2, .n_gen = 8 };
        assert_int_equal(db_log_finish(lg, DB_RUN_COMPLETE, &st, &err), DB_OK);
    } else {
        assert_int_equal(db_log_flush(lg, &err), DB_OK);
        db_log_finish(lg, DB_RUN_FAILED, NULL, &err);
    }
}

static void log_run(Db *db, int64_t model, const char *tag, int c0, const int32_t *tok,
                    float lp_step, int logits, int finish)
{
    log_run_n(db, model, tag, c0, tok, lp_step, logits, finish, 10);
}

static int setup(void **st)
{
    (void)st;
    snprintf(g_dir, sizeof g_dir, "/tmp/test_an_db.XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(g_db, sizeof g_db, "%s/an.db", g_dir);
    DbErr err = { 0 };
    Db *db = db_open(g_db, DB_OPEN_CREATE, &err);
    if (!db)
        return -1;
    DbModel m = { 0, "m.gguf", "tiny", "olmoe", 1, 0x1234, 2, 2, 1 };
    if (db_model_register(db, &m, &err) != DB_OK)
        return -1;
    int32_t t1[10] = { 5, 6, 7, 8, 9, 10, 11, 12, 13, 14 };
    int32_t t2[10] = { 5, 6, 7, 20, 21, 22, 23, 24, 25, 26 };
    int32_t t3[10] = { 30, 31, 32, 33, 34, 35, 36, 37, 38, 39 };
    log_run(db, m.id, "a", 8, t1, -0.1f, 1, 1);
    log_run(db, m.id, "a", 6, t2, -0.2f, 0, 1);
    log_run(db, m.id, "b", 2, t3, -0.1f, 0, 1);
    log_run(db, m.id, "b", 4, t3, -0.1f, 0, 1);
    log_run(db, m.id, "c", 5, t3, -0.1f, 0, 0);
    log_run_n(db, m.id, "d", 5, t3, -0.1f, 0, 1, 9);
    db_close(db);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    if (getenv("TEST_AN_DB_KEEP")) {   /* keep the database to look at it */
        printf("kept %s\n", g_db);
        return 0;
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Run a subcommand with stdout and stderr captured into *out / *errs. */
static int run_cmd(int (*fn)(int, char **), char **argv, char **out, char **errs)
{
    char po[160], pe[160];
    snprintf(po, sizeof po, "%s/out", g_dir);
    snprintf(pe, sizeof pe, "%s/err", g_dir);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fo, 1);
    dup2(fe, 2);
    int argc = 0;
    while (argv[argc])
        argc++;
    int rc = fn(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    close(fo);
    close(fe);
    const char *paths[2] = { po, pe };
    char **dst[2] = { out, errs };
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(paths[i], "rb");
        assert_non_null(f);
        char *buf = calloc(1, 1 << 20);
        size_t n = fread(buf, 1, (1 << 20) - 1, f);
        buf[n] = 0;
        fclose(f);
        *dst[i] = buf;
    }
    return rc;
}

static Db *open_ro(void)
{
    DbErr err = { 0 };
    Db *db = db_open(g_db, DB_OPEN_READONLY, &err);
    assert_non_null(db);
    return db;
}

static void test_db_stats_run_matches_hand(void **st)
{
    (void)st;
    Db *db = open_ro();
    AnStats *s = NULL;
    AnDbInfo info;
    AnErr err = { 0 };
    /* run 1: layer 1 (the only MoE layer) e0 8, e1 2; shares .8 .2
    **   entropy = −(.8 ln .8 + .2 ln .2) / ln 2 = 0.721928
    **   mean 5 → MaxVio = 8/5 − 1 = 0.6;  CV = 3/5 = 0.6
    **   prompt (positions 0,1): e0 2, e1 0 → one expert unused */
    assert_int_equal(an_db_stats(db, g_db, 1, NULL, NULL, &s, &info, &err), AN_OK);
    assert_int_equal(info.n_layer, 1);
    assert_int_equal(info.layer_of[0], 1);
    assert_int_equal(s->load->count[0], 8);
    assert_int_equal(s->load->count[1], 2);
    near(s->layer[0].entropy, 0.7219280949, 1e-9, "entropy run 1");
    near(s->layer[0].maxvio, 0.6, 1e-12, "maxvio run 1");
    near(s->layer[0].cv, 0.6, 1e-12, "cv run 1");
    assert_int_equal(s->layer[1].n_unused, 1);
    assert_false(s->has_routes);
    an_stats_free(s);
    an_db_info_done(&info);
    /* with routes: router logits [0,0] → entropy ln 2, top-1 ½ */
    AnStatsParams p = { .want_routes = 1, .want_pairs = 1 };
    assert_int_equal(an_db_stats(db, g_db, 1, NULL, &p, &s, &info, &err), AN_OK);
    near(s->layer[0].router_entropy, log(2.0), 1e-6, "router entropy run 1");
    near(s->layer[0].top1_prob, 0.5, 1e-6, "top-1 run 1");
    near(s->coact[0], 8, 0, "coact e0,e0 run 1");
    an_stats_free(s);
    an_db_info_done(&info);
    /* tag d: 9 positions routed (2 prompt, 7 generated), e0 5, e1 4 */
    assert_int_equal(an_db_stats(db, g_db, 0, "d", NULL, &s, &info, &err), AN_OK);
    assert_int_equal(s->layer[AN_SPLIT_ALL].n_tok, 9);
    assert_int_equal(s->layer[AN_SPLIT_GEN].n_tok, 7);
    assert_int_equal(s->load->count[1], 4);
    an_stats_free(s);
    an_db_info_done(&info);
    /* tag a: e0 8+6 = 14 of 20 */
    assert_int_equal(an_db_stats(db, g_db, 0, "a", NULL, &s, &info, &err), AN_OK);
    assert_int_equal(s->load->count[0], 14);
    assert_int_equal(info.n_runs, 2);
    an_stats_free(s);
    an_db_info_done(&info);
    db_close(db);
}

static void test_db_stats_unknown_tag_and_run_name_them(void **st)
{
    (void)st;
    Db *db = open_ro();
    AnStats *s = NULL;
    AnDbInfo info;
    AnErr err = { 0 };
    assert_int_equal(an_db_stats(db, g_db, 0, "zzz", NULL, &s, &info, &err), AN_E_NOTFOUND);
    char want[256];
    snprintf(want, sizeof want, "tag 'zzz' has no runs in %s", g_db);
    assert_string_equal(err.msg, want);
    assert_int_equal(an_db_stats(db, g_db, 99, NULL, NULL, &s, &info, &err), AN_E_NOTFOUND);
    snprintf(want, sizeof want, "run 99 is not in %s", g_db);
    assert_string_equal(err.msg, want);
    /* tag c has one run, not complete: contrast refuses it by name */
    AnContrast *c = NULL;
    assert_int_equal(an_db_contrast(db, g_db, "a", "c", NULL, &c, &info, &err), AN_E_NOTFOUND);
    assert_non_null(strstr(err.msg, "tag 'c' has no complete runs"));
    an_db_info_done(&info);
    db_close(db);
}

static void test_db_contrast_matches_hand_and_emits_absolute_layers(void **st)
{
    (void)st;
    Db *db = open_ro();
    AnContrast *c = NULL;
    AnDbInfo info;
    AnErr err = { 0 };
    /* A = runs 1,2: e0 14 of 20 → pA .7;  B = runs 3,4: e0 6 of 20 → pB .3
    ** Δ = .4, LOR = ln(14.5² / 6.5²) = 1.604693 (as in test_an.c) */
    AnContrastParams p = { .n_perm = 2000, .seed = 3 };
    assert_int_equal(an_db_contrast(db, g_db, "a", "b", &p, &c, &info, &err), AN_OK);
    assert_int_equal(c->n_row, 2);
    near(fabs(c->row[0].delta), 0.4, 1e-12, "|delta|");
    const AnContrastRow *w = c->row[0].expert == 0 ? &c->row[0] : &c->row[1];
    near(w->lor, 1.6046929450, 1e-9, "lor e0");
    near(w->p_value, 1.0 / 3.0, 0.03, "permutation p e0");
    an_contrast_free(c);
    an_db_info_done(&info);
    db_close(db);

    char *out, *errs;
    char *argv[] = { "contrast", "--db", g_db, "--a", "a", "--b", "b", "--emit-interventions",
                     "--min-count", "1", NULL };
    assert_int_equal(run_cmd(cli_cmd_contrast, argv, &out, &errs), 0);
    assert_string_equal(out, "--disable 1:0\n");
    free(out);
    free(errs);
    char *argv2[] = { "contrast", "--db", g_db, "--a", "a", "--b", "b", "--emit-interventions",
                      "--force", NULL };
    assert_int_equal(run_cmd(cli_cmd_contrast, argv2, &out, &errs), 0);
    assert_string_equal(out, "--force 1:0\n");
    free(out);
    free(errs);
    char *argv3[] = { "contrast", "--db", g_db, "--a", "a", "--b", "nope", NULL };
    assert_int_equal(run_cmd(cli_cmd_contrast, argv3, &out, &errs), 1);
    assert_non_null(strstr(errs, "tag 'nope' has no runs in"));
    free(out);
    free(errs);
    char *argv4[] = { "contrast", "--db", g_db, "--a", "a", "--b", "b", "--format", "csv", NULL };
    assert_int_equal(run_cmd(cli_cmd_contrast, argv4, &out, &errs), 0);
    assert_non_null(strstr(out, "rank,layer,expert,count_a,n_a,count_b,n_b,"));
    assert_non_null(strstr(out, ",1,0,14,20,6,20,0.7,0.3,"));
    free(out);
    free(errs);
}

static void test_db_diff_matches_hand(void **st)
{
    (void)st;
    Db *db = open_ro();
    AnDiff *d = NULL;
    AnDbInfo info;
    AnErr err = { 0 };
    /* runs 1 and 2 share tokens 5 6 7 (positions 0..2), then 8 vs 20.
    **   expert sets over 0..2: e0 in both → none changed (3 compared)
    **   load delta layer 1: e0 8 − 6 = 2, e1 2 − 4 = −2
    **   logprob at position 2 (generated): A −0.2, B −0.4 → mean B − A = −0.2 */
    assert_int_equal(an_db_diff(db, g_db, 1, 2, &d, &info, &err), AN_OK);
    assert_int_equal(d->n_common, 3);
    assert_int_equal(d->first_div, 3);
    assert_int_equal(d->tok_a, 8);
    assert_int_equal(d->tok_b, 20);
    assert_int_equal(d->n_cmp[0], 3);
    assert_int_equal(d->n_changed[0], 0);
    assert_int_equal(d->load_delta[0], 2);
    assert_int_equal(d->load_delta[1], -2);
    assert_int_equal(d->n_lp, 1);
    near(d->lp_mean_delta, -0.2, 1e-6, "logprob delta");
    an_diff_free(d);
    an_db_info_done(&info);
    db_close(db);

    char *out, *errs;
    char *argv[] = { "diff", "--db", g_db, "1", "2", NULL };
    assert_int_equal(run_cmd(cli_cmd_diff, argv, &out, &errs), 0);
    assert_non_null(strstr(out, "first divergence: position 3: A 't8'"));
    assert_null(strstr(out, "nan"));
    free(out);
    free(errs);
    char *argv2[] = { "diff", "--db", g_db, "1", "77", NULL };
    assert_int_equal(run_cmd(cli_cmd_diff, argv2, &out, &errs), 1);
    assert_non_null(strstr(errs, "run 77 is not in"));
    free(out);
    free(errs);
}

static void test_cmd_stats_formats_and_errors(void **st)
{
    (void)st;
    char *out, *errs;
    char *argv[] = { "stats", "--db", g_db, "--tag", "b", "--format", "json", NULL };
    assert_int_equal(run_cmd(cli_cmd_stats, argv, &out, &errs), 0);
    /* tag b: e0 2 + 4 = 6, e1 14 */
    assert_non_null(strstr(out, "\"layer\":1,"));
    assert_non_null(strstr(out, "\"count\":[6,14]"));
    assert_null(strstr(out, "nan"));
    free(out);
    free(errs);
    char *argv2[] = { "stats", "--db", g_db, "--run", "1", "--routes", NULL };
    assert_int_equal(run_cmd(cli_cmd_stats, argv2, &out, &errs), 0);
    assert_non_null(strstr(out, "run 1 (complete, 10 positions)"));
    assert_non_null(strstr(out, "  0.693 "));    /* router entropy ln 2 */
    free(out);
    free(errs);
    char *argv3[] = { "stats", "--db", g_db, "--tag", "x", NULL };
    assert_int_equal(run_cmd(cli_cmd_stats, argv3, &out, &errs), 1);
    char want[256];
    snprintf(want, sizeof want, "moescope stats: tag 'x' has no runs in %s\n", g_db);
    assert_string_equal(errs, want);
    free(out);
    free(errs);
    char *argv4[] = { "stats", "--db", g_db, "--format", "xml", NULL };
    assert_int_equal(run_cmd(cli_cmd_stats, argv4, &out, &errs), 2);
    assert_non_null(strstr(errs, "--format 'xml'"));
    free(out);
    free(errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_db_stats_run_matches_hand),
        cmocka_unit_test(test_db_stats_unknown_tag_and_run_name_them),
        cmocka_unit_test(test_db_contrast_matches_hand_and_emits_absolute_layers),
        cmocka_unit_test(test_db_diff_matches_hand),
        cmocka_unit_test(test_cmd_stats_formats_and_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
