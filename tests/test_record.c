/*
** tests/test_record.c — the engine's routes, recorded through tui/record.c
** into the database and read back, equal llama.cpp's fixture routes; the
** per-run aggregates equal the counts of those routes.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <unistd.h>

#include "db/db.h"
#include "engine/eng.h"
#include "tests/ref.h"
#include "tui/tui.h"

typedef struct {
    Ref *ref;
    RefCase *rc;
    int n_layer, n_expert;
    int seen, bad_sets;
    double max_dw;
} Cmp;

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static int on_route(void *user, int64_t run, const DbRoute *r)
{
    (void)run;
    Cmp *c = user;
    RefRoute *rr = &c->rc->route[r->pos][r->layer];
    assert_true(rr->have);
    c->seen++;
    int a[REF_MAX_K], b[REF_MAX_K];
    for (int j = 0; j < r->k; j++)
        a[j] = r->experts[j];
    memcpy(b, rr->experts, sizeof b);
    qsort(a, (size_t)r->k, sizeof(int), cmp_int);
    qsort(b, (size_t)rr->k, sizeof(int), cmp_int);
    if (r->k != rr->k || memcmp(a, b, (size_t)r->k * sizeof(int))) {
        c->bad_sets++;
        return 0;
    }
    for (int j = 0; j < r->k; j++)
        for (int q = 0; q < rr->k; q++)
            if (r->experts[j] == rr->experts[q]) {
                double d = fabs(r->weights[j] - rr->weights[q]);
                if (d > c->max_dw)
                    c->max_dw = d;
                assert_true(ref_close(r->weights[j], rr->weights[q], 1e-4, 1e-3));
            }
    return 0;
}

static void check(const char *name, const char *file)
{
    char path[256], db_path[] = "/tmp/moescope-test-record-XXXXXX";
    int fd = mkstemp(db_path);
    assert_true(fd >= 0);
    close(fd);
    unlink(db_path);
    snprintf(path, sizeof path, "tests/data/fixtures/%s/%s", name, file);
    EngErr err = { 0 };
    EngModel *m = eng_model_open(path, &err);
    assert_non_null(m);
    snprintf(path, sizeof path, "tests/data/fixtures/%s/ref.txt", name);
    Ref *ref = ref_load(path);
    assert_non_null(ref);
    snprintf(path, sizeof path, "tests/data/fixtures/%s/%s", name, file);
    RecOpts ro;
    rec_opts_init(&ro);
    ro.db_path = db_path;
    ro.tag = "fixture";
    ro.router_logits = 1;
    Recorder *rec = NULL;
    assert_int_equal(rec_open("test", &ro, m, path, &rec), 0);
    EngCtxParams cp = { .n_ctx = 256, .n_threads = 2, .n_batch = 0 };
    EngCtx *c = eng_ctx_new(m, &cp, &err);
    GenSettings gs;
    gen_settings_default(&gs);
    gs.sample.greedy = 1;
    gs.n_predict = 0;
    int64_t runs[REF_MAX_CASES];
    for (int ci = 0; ci < ref->ncases; ci++) {
        GenHooks h;
        GenStats st;
        char *text = NULL;
        size_t len = 0;
        RefCase *rc = &ref->cases[ci];
        assert_int_equal(rec_begin(rec, rc->prompt, rc->prompt_len, &gs, &h), 0);
        assert_int_equal(gen_run(m, c, &gs, rc->prompt, rc->prompt_len, &h, &text, &len, &st, &err), 0);
        assert_int_equal(rec_end(rec, 1, &st), 0);
        runs[ci] = rec_run_id(rec);
        free(text);
    }
    assert_int_equal(rec_close(rec), 0);

    Db *db = db_open(db_path, DB_OPEN_READONLY, NULL);
    assert_non_null(db);
    const EngInfo *I = eng_model_info(m);
    for (int ci = 0; ci < ref->ncases; ci++) {
        RefCase *rc = &ref->cases[ci];
        Cmp cm = { ref, rc, I->n_layer, I->n_expert, 0, 0, 0 };
        assert_int_equal(db_routes(db, runs[ci], 0, -1, -1, on_route, &cm, NULL), DB_OK);
        int expect = 0;
        for (int p = 0; p < rc->n_tokens; p++)
            for (int l = 0; l < I->n_layer; l++)
                expect += rc->route[p][l].have;
        printf("  %s case %d: %d routes read back, bad sets %d, max |dweight| %.3g\n", name, ci,
               cm.seen, cm.bad_sets, cm.max_dw);
        assert_int_equal(cm.seen, expect);
        assert_int_equal(cm.bad_sets, 0);
        /* aggregates: tokens routed per layer x expert */
        DbSel sel = { runs[ci], NULL, 0 };
        DbLoad ld;
        assert_int_equal(db_load(db, &sel, &ld, NULL), DB_OK);
        for (int l = 0; l < I->n_layer; l++)
            for (int e = 0; e < I->n_expert; e++) {
                int64_t want = 0;
                for (int p = 0; p < rc->n_tokens; p++)
                    for (int j = 0; j < rc->route[p][l].k; j++)
                        want += rc->route[p][l].experts[j] == e;
                assert_int_equal(ld.count[l * ld.n_expert + e], want);
            }
        db_load_free(&ld);
        DbRun run;
        assert_int_equal(db_run_get(db, runs[ci], &run, NULL), DB_OK);
        assert_int_equal(run.status, DB_RUN_COMPLETE);
        assert_string_equal(run.tag, "fixture");
        assert_int_equal(run.n_prompt, rc->n_tokens);
        db_run_free(&run);
    }
    db_close(db);
    eng_ctx_free(c);
    eng_model_close(m);
    free(ref);
    unlink(db_path);
    char side[300];
    snprintf(side, sizeof side, "%s-wal", db_path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", db_path);
    unlink(side);
}

static void test_record_mixtral_routes_read_back_equal_fixture(void **s)
{
    (void)s;
    check("mixtral", "mixtral-f32.gguf");
}

static void test_record_olmoe_routes_read_back_equal_fixture(void **s)
{
    (void)s;
    check("olmoe", "olmoe-f32.gguf");
}

static void test_record_deepseek2_dense_layer_has_no_routes(void **s)
{
    (void)s;
    check("deepseek2", "deepseek2-f32.gguf");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_mixtral_routes_read_back_equal_fixture),
        cmocka_unit_test(test_record_olmoe_routes_read_back_equal_fixture),
        cmocka_unit_test(test_record_deepseek2_dense_layer_has_no_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
