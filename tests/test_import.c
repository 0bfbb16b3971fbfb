/*
** tests/test_import.c — moetrace v1 import and export: the NPY reader on
** good and malformed headers, a synthetic trace with dense layers and -1
** slots imported into runs, malformed traces refused before anything is
** written, an import undone when cancelled, the JSONL form equal to the
** directory form, the round trip runs → export → import giving the
** same routes and aggregates, and `moescope stats` / `contrast` on an
** imported DeepSeek-V3-shaped trace.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/tmpdir.h"

#include "db/db.h"
#include "db/db_int.h"
#include "cli/cmds.h"
#include "tui/app.h"

#include <curses.h>
#include <locale.h>

#include <fcntl.h>
#include <jansson.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- fixtures ------------------------------------------------------------ */

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void write_npy(const char *path, const char *descr, int ndim, const uint64_t *shape,
                      const void *data, size_t nbytes)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    DbErr err = { 0 };
    assert_int_equal(db_npy_write_header(f, descr, ndim, shape, &err), DB_OK);
    if (nbytes)
        assert_int_equal(fwrite(data, 1, nbytes, f), nbytes);
    assert_int_equal(fclose(f), 0);
}

/* An NPY image with a hand-written header (version 1). */
static size_t npy_image(uint8_t *buf, size_t cap, const char *dict, const void *data,
                        size_t nbytes)
{
    size_t hl = strlen(dict) + 1;
    assert_true(10 + hl + nbytes <= cap);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)hl;
    buf[9] = (uint8_t)(hl >> 8);
    memcpy(buf + 10, dict, hl - 1);
    buf[10 + hl - 1] = '\n';
    if (nbytes)
        memcpy(buf + 10 + hl, data, nbytes);
    return 10 + hl + nbytes;
}

/* ---- the NPY reader -------------------------------------------------------- */

static void test_npy_valid_headers_parse(void **state)
{
    (void)state;
    uint8_t buf[512];
    int16_t v[6] = { 1, -1, 300, -300, 7, 0 };
    size_t n = npy_image(buf, sizeof buf, "{'descr': '<i2', 'fortran_order': False, "
                         "'shape': (2, 3), }", v, sizeof v);
    DbNpy a = { 0 };
    DbErr err = { 0 };
    assert_int_equal(db_npy_parse(&a, buf, n, "v.npy", &err), DB_OK);
    assert_int_equal(a.ndim, 2);
    assert_int_equal(a.shape[0], 2);
    assert_int_equal(a.shape[1], 3);
    assert_int_equal(a.count, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(db_npy_int(&a, (uint64_t)i), v[i]);

    /* version 2 (4-byte header length), key order free, 1-d shape "(3,)" */
    const char *d2 = "{\"shape\": (3,), \"fortran_order\": False, \"descr\": \">i4\"}";
    size_t hl = strlen(d2) + 1;
    memcpy(buf, "\x93NUMPY\x02\x00", 8);
    buf[8] = (uint8_t)hl;
    buf[9] = buf[10] = buf[11] = 0;
    memcpy(buf + 12, d2, hl - 1);
    buf[12 + hl - 1] = '\n';
    uint8_t be[12] = { 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xfe, 0, 1, 0, 0 };
    memcpy(buf + 12 + hl, be, sizeof be);
    assert_int_equal(db_npy_parse(&a, buf, 12 + hl + sizeof be, "be.npy", &err), DB_OK);
    assert_int_equal(db_npy_int(&a, 0), 5);
    assert_int_equal(db_npy_int(&a, 1), -2);
    assert_int_equal(db_npy_int(&a, 2), 65536);

    /* float16: 1.0, -2.5, 65504 (max), a subnormal */
    uint16_t h[4] = { 0x3c00, 0xc100, 0x7bff, 0x0001 };
    n = npy_image(buf, sizeof buf, "{'descr': '<f2', 'fortran_order': False, 'shape': (4,)}",
                  h, sizeof h);
    assert_int_equal(db_npy_parse(&a, buf, n, "h.npy", &err), DB_OK);
    assert_true(db_npy_float(&a, 0) == 1.0);
    assert_true(db_npy_float(&a, 1) == -2.5);
    assert_true(db_npy_float(&a, 2) == 65504.0);
    assert_true(fabs(db_npy_float(&a, 3) - 5.960464477539063e-08) < 1e-15);

    /* an empty array and a 0-d scalar are well-formed */
    n = npy_image(buf, sizeof buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 8)}",
                  NULL, 0);
    assert_int_equal(db_npy_parse(&a, buf, n, "e.npy", &err), DB_OK);
    assert_int_equal(a.count, 0);
}

static void expect_npy_error(const char *dict, const void *data, size_t nbytes,
                             const char *needle)
{
    uint8_t buf[1024];
    size_t n = npy_image(buf, sizeof buf, dict, data, nbytes);
    DbNpy a = { 0 };
    DbErr err = { 0 };
    DbStatus s = db_npy_parse(&a, buf, n, "bad.npy", &err);
    if (s == DB_OK || !strstr(err.msg, needle) || !strstr(err.msg, "bad.npy"))
        fail_msg("header %s: status %d, message '%s', expected one naming bad.npy and '%s'",
                 dict, s, err.msg, needle);
}

static void test_npy_malformed_headers_refused(void **state)
{
    (void)state;
    int16_t v[8] = { 0 };
    expect_npy_error("{'descr': '<i2', 'fortran_order': True, 'shape': (2,)}", v, 4,
                     "fortran_order");
    expect_npy_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2,)}", v, 16,
                     "'<f8' is not a supported dtype");
    expect_npy_error("{'descr': 'i2', 'fortran_order': False, 'shape': (2,)}", v, 4, "descr");
    expect_npy_error("{'descr': '<i2', 'shape': (2,)}", v, 4, "missing key 'fortran_order'");
    expect_npy_error("{'descr': '<i2', 'descr': '<i2', 'fortran_order': False, 'shape': (2,)}",
                     v, 4, "given twice");
    expect_npy_error("{'descr': '<i2', 'fortran_order': False, 'shape': (2,), 'x': 1}", v, 4,
                     "unexpected key 'x'");
    expect_npy_error("{'descr': '<i2', 'fortran_order': False, 'shape': (3,)}", v, 4,
                     "truncated");
    expect_npy_error("{'descr': '<i2', 'fortran_order': False, 'shape': (1,)}", v, 4,
                     "extra bytes");
    expect_npy_error("{'descr': '<i2', 'fortran_order': False, 'shape': "
                     "(4294967296, 4294967296, 4294967296)}", v, 4, "overflows");
    expect_npy_error("{'descr': '<i2', 'fortran_order': False, 'shape': "
                     "(99999999999999999999,)}", v, 4, "dimension 0");
    expect_npy_error("{'descr': '<i2', 'fortran_order': False, 'shape': (-1,)}", v, 4,
                     "dimension 0");
    expect_npy_error("['descr']", v, 4, "not a dict");

    /* preamble faults */
    uint8_t buf[64];
    DbNpy a = { 0 };
    DbErr err = { 0 };
    memcpy(buf, "\x93NUMPX\x01\x00\x10\x00", 10);
    assert_int_equal(db_npy_parse(&a, buf, 10, "m.npy", &err), DB_E_ARG);
    assert_non_null(strstr(err.msg, "magic"));
    memcpy(buf, "\x93NUMPY\x04\x00\x10\x00", 10);
    assert_int_equal(db_npy_parse(&a, buf, 10, "m.npy", &err), DB_E_ARG);
    assert_non_null(strstr(err.msg, "version"));
    memcpy(buf, "\x93NUMPY\x01\x00\xff\x00", 10);       /* header longer than the file */
    assert_int_equal(db_npy_parse(&a, buf, 20, "m.npy", &err), DB_E_ARG);
    assert_non_null(strstr(err.msg, "header length"));
    assert_int_equal(db_npy_parse(&a, buf, 5, "m.npy", &err), DB_E_ARG);
}

/* ---- a synthetic trace ------------------------------------------------------ */

/* 2 sequences; 6 layers of which 2,3,5 are MoE; 10 experts; top-2 with a
** third slot that is -1 except at one place; seq 7: 4 tokens (prompt 3),
** seq 9: 3 tokens (prompt 1). */
#define TL 6
#define TE 10
#define TM 3
#define TK 3
#define TN 7

static const int moe_layers[TM] = { 2, 3, 5 };

static int16_t tr_ex[TN][TM][TK];
static float tr_w[TN][TM][TK];
static int64_t tr_idx[TN][3];

static void make_rows(void)
{
    for (int i = 0; i < TN; i++) {
        int seq = i < 4 ? 7 : 9;
        tr_idx[i][0] = seq;
        tr_idx[i][1] = i < 4 ? i : i - 4;
        tr_idx[i][2] = 100 + i;
        for (int j = 0; j < TM; j++) {
            tr_ex[i][j][0] = (int16_t)((i + j) % TE);
            tr_ex[i][j][1] = (int16_t)((i * 3 + j + 1) % TE);
            if (tr_ex[i][j][1] == tr_ex[i][j][0])
                tr_ex[i][j][1] = (int16_t)((tr_ex[i][j][0] + 1) % TE);
            tr_ex[i][j][2] = -1;
            tr_w[i][j][0] = 0.5f + 0.01f * (float)i;
            tr_w[i][j][1] = 0.25f + 0.001f * (float)j;
            tr_w[i][j][2] = 0;
        }
    }
    tr_ex[2][1][2] = 9 == tr_ex[2][1][0] || 9 == tr_ex[2][1][1] ? 8 : 9;
    tr_w[2][1][2] = 0.125f;
    tr_ex[5][0][0] = tr_ex[5][0][1] = -1;       /* no route there */
}

static const char meta_ok[] =
    "{\"format\": \"moetrace\", \"version\": 1, \"model\": \"toy-moe\", \"arch\": \"toy\","
    " \"source\": \"vllm\", \"num_layers\": 6, \"num_experts\": 10, \"top_k\": 2,"
    " \"moe_layers\": [2, 3, 5], \"id_space\": \"logical\","
    " \"sequences\": [{\"id\": 9, \"prompt_len\": 1},"
    " {\"id\": 7, \"prompt_len\": 3, \"text\": \"seven\"}]}";

static void write_trace(const char *dir, const char *meta, int weights)
{
    char p[256];
    mkdir(dir, 0777);
    make_rows();
    snprintf(p, sizeof p, "%s/meta.json", dir);
    write_file(p, meta, strlen(meta));
    uint64_t si[2] = { TN, 3 }, se[3] = { TN, TM, TK };
    snprintf(p, sizeof p, "%s/index.npy", dir);
    write_npy(p, "<i8", 2, si, tr_idx, sizeof tr_idx);
    snprintf(p, sizeof p, "%s/experts.npy", dir);
    write_npy(p, "<i2", 3, se, tr_ex, sizeof tr_ex);
    if (weights) {
        snprintf(p, sizeof p, "%s/weights.npy", dir);
        write_npy(p, "<f4", 3, se, tr_w, sizeof tr_w);
    }
}

typedef struct {
    int n;
    int32_t pos[64], layer[64], k[64], ex[64][TK], prompt[64];
    float w[64][TK];
} Routes;

static int grab_route(void *user, int64_t run, const DbRoute *r)
{
    Routes *g = user;
    (void)run;
    if (g->n >= 64)
        return 1;
    g->pos[g->n] = r->pos;
    g->layer[g->n] = r->layer;
    g->k[g->n] = r->k;
    g->prompt[g->n] = r->is_prompt;
    for (int i = 0; i < r->k && i < TK; i++) {
        g->ex[g->n][i] = r->experts[i];
        g->w[g->n][i] = r->weights[i];
    }
    g->n++;
    return 0;
}

static int64_t count_rows(const char *db_path, const char *table)
{
    sqlite3 *h = NULL;
    char sql[100];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    if (sqlite3_open_v2(db_path, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return -1;
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return n;
}

static void test_import_trace_dense_layers_and_missing_slots_kept(void **state)
{
    Tmp *t = *state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/tr", t->dir);
    write_trace(dir, meta_ok, 1);
    DbErr err = { 0 };
    DbTrace *tr = db_trace_open(dir, &err);
    if (!tr)
        fail_msg("%s", err.msg);
    const DbTraceInfo *I = db_trace_info(tr);
    assert_int_equal(I->n_tokens, TN);
    assert_int_equal(I->n_seq, 2);
    assert_int_equal(I->n_moe, TM);
    assert_int_equal(I->k_slots, TK);
    assert_true(I->has_weights);
    assert_string_equal(I->source, "vllm");

    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    DbImportOpts o = { 0 };
    o.tag = "imp";
    int64_t first = 0, last = 0;
    assert_int_equal(db_import(db, tr, &o, &first, &last, &err), DB_OK);
    assert_int_equal(last - first, 1);

    DbRun r;
    assert_int_equal(db_run_get(db, first, &r, &err), DB_OK);
    assert_int_equal(r.status, DB_RUN_COMPLETE);
    assert_true(r.flags & DB_RUN_IMPORTED);
    assert_false(r.flags & DB_RUN_NO_WEIGHTS);
    assert_int_equal(r.n_layer, TL);
    assert_int_equal(r.n_expert, TE);
    assert_int_equal(r.k, 2);
    assert_int_equal(r.n_prompt, 3);
    assert_int_equal(r.n_gen, 1);
    assert_string_equal(r.prompt, "seven");
    assert_string_equal(r.model_name, "toy-moe");
    assert_string_equal(r.tag, "imp");
    /* runs.source: the engine named in meta.json and the absolute path */
    char *abs = realpath(dir, NULL);
    char want_src[300];
    snprintf(want_src, sizeof want_src, "vllm:%s", abs);
    free(abs);
    assert_non_null(r.source);
    assert_string_equal(r.source, want_src);
    db_run_free(&r);

    /* the runs export says where the run came from */
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&buf, &len);
    DbSel one = { .run = first };
    assert_int_equal(db_export(db, &one, DB_WHAT_RUNS, DB_FMT_JSONL, mf, &err), DB_OK);
    fclose(mf);
    char want_js[400];
    snprintf(want_js, sizeof want_js, "\"source\":\"%s\",\"imported\":true,"
             "\"no_weights\":false,\"counts_only\":false,\"n_counted\":null}", want_src);
    if (!strstr(buf, want_js))
        fail_msg("runs export lacks %s: %s", want_js, buf);
    free(buf);

    /* seq 7 (run first): every route at its absolute layer, -1 slots gone */
    Routes g = { 0 };
    assert_int_equal(db_routes(db, first, 0, -1, -1, grab_route, &g, &err), DB_OK);
    assert_int_equal(g.n, 4 * TM);
    float maxd = 0;
    for (int i = 0; i < g.n; i++) {
        int row = g.pos[i], j = i % TM;
        assert_int_equal(g.layer[i], moe_layers[j]);
        assert_int_equal(g.prompt[i], row < 3);
        int k = 0;
        for (int q = 0; q < TK; q++) {
            if (tr_ex[row][j][q] < 0)
                continue;
            assert_int_equal(g.ex[i][k], tr_ex[row][j][q]);
            float d = fabsf(g.w[i][k] - tr_w[row][j][q]);
            maxd = d > maxd ? d : maxd;
            k++;
        }
        assert_int_equal(g.k[i], k);
    }
    printf("imported weights: largest difference %g\n", (double)maxd);
    assert_true(maxd == 0);
    /* seq 9: row 5 layer 2 had no experts, so that route is absent */
    memset(&g, 0, sizeof g);
    assert_int_equal(db_routes(db, last, 0, -1, -1, grab_route, &g, &err), DB_OK);
    assert_int_equal(g.n, 3 * TM - 1);

    /* aggregates equal a count over the trace */
    DbLoad ld;
    DbSel sel = { .tag = "imp" };
    assert_int_equal(db_load(db, &sel, &ld, &err), DB_OK);
    int64_t want[TL][TE];
    memset(want, 0, sizeof want);
    for (int i = 0; i < TN; i++)
        for (int j = 0; j < TM; j++)
            for (int q = 0; q < TK; q++)
                if (tr_ex[i][j][q] >= 0)
                    want[moe_layers[j]][tr_ex[i][j][q]]++;
    for (int l = 0; l < TL; l++)
        for (int e = 0; e < TE; e++)
            assert_int_equal(ld.count[l * TE + e], want[l][e]);
    db_load_free(&ld);
    db_close(db);
    db_trace_close(tr);
}

static void test_import_no_weights_flagged_with_uniform_weights(void **state)
{
    Tmp *t = *state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/nw", t->dir);
    write_trace(dir, meta_ok, 0);
    DbErr err = { 0 };
    DbTrace *tr = db_trace_open(dir, &err);
    assert_non_null(tr);
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    DbImportOpts o = { .tag = "nw" };
    int64_t first = 0;
    assert_int_equal(db_import(db, tr, &o, &first, NULL, &err), DB_OK);
    DbRun r;
    assert_int_equal(db_run_get(db, first, &r, &err), DB_OK);
    assert_true(r.flags & DB_RUN_NO_WEIGHTS);
    db_run_free(&r);
    Routes g = { 0 };
    assert_int_equal(db_routes(db, first, 2, 2, 3, grab_route, &g, &err), DB_OK);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.k[0], 3);                /* the row with a third expert */
    for (int i = 0; i < 3; i++)
        assert_true(g.w[0][i] == 1.0f / 3.0f);

    /* exported again, the trace still says where it came from and has no
    ** weights (the 1/k are not passed off as gate weights); imported
    ** again, its runs are flagged the same */
    char back[160], p[200];
    snprintf(back, sizeof back, "%s/nw-back", t->dir);
    DbSel sel = { .tag = "nw" };
    assert_int_equal(db_export_moetrace(db, &sel, back, &err), DB_OK);
    snprintf(p, sizeof p, "%s/weights.npy", back);
    assert_int_not_equal(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/meta.json", back);
    json_error_t je;
    json_t *m = json_load_file(p, 0, &je);
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "source")), "vllm");
    json_decref(m);
    DbTrace *tr2 = db_trace_open(back, &err);
    assert_non_null(tr2);
    DbImportOpts o2 = { .tag = "nw2" };
    int64_t first2 = 0;
    assert_int_equal(db_import(db, tr2, &o2, &first2, NULL, &err), DB_OK);
    assert_int_equal(db_run_get(db, first2, &r, &err), DB_OK);
    assert_true(r.flags & DB_RUN_NO_WEIGHTS);
    assert_true(r.source && !strncmp(r.source, "vllm:/", 6) && strstr(r.source, "nw-back"));
    db_run_free(&r);
    db_trace_close(tr2);
    db_close(db);
    db_trace_close(tr);
}

/* A trace variant: write the good trace, then break one thing. */
static void expect_trace_error(Tmp *t, const char *name, const char *meta, int breakage,
                               const char *needle)
{
    char dir[128], p[256];
    snprintf(dir, sizeof dir, "%s/%s", t->dir, name);
    write_trace(dir, meta, 1);
    uint64_t se[3] = { TN, TM, TK }, bad3[3] = { TN, TM + 1, TK };
    switch (breakage) {
    case 1:                                     /* expert id = num_experts */
        tr_ex[3][2][1] = TE;
        snprintf(p, sizeof p, "%s/experts.npy", dir);
        write_npy(p, "<i2", 3, se, tr_ex, sizeof tr_ex);
        break;
    case 2:                                     /* experts as float32 */
        snprintf(p, sizeof p, "%s/experts.npy", dir);
        write_npy(p, "<f4", 3, se, tr_w, sizeof tr_w);
        break;
    case 3: {                                   /* a shape that disagrees with meta */
        static int16_t more[TN][TM + 1][TK];
        snprintf(p, sizeof p, "%s/experts.npy", dir);
        write_npy(p, "<i2", 3, bad3, more, sizeof more);
        break;
    }
    case 4:                                     /* truncated experts.npy */
        snprintf(p, sizeof p, "%s/experts.npy", dir);
        write_npy(p, "<i2", 3, se, tr_ex, sizeof tr_ex - 10);
        break;
    case 5:                                     /* a bad npy magic */
        snprintf(p, sizeof p, "%s/index.npy", dir);
        write_file(p, "PK\x03\x04 not numpy at all", 22);
        break;
    case 6:                                     /* a sequence split in two */
        tr_idx[6][0] = 7;
        snprintf(p, sizeof p, "%s/index.npy", dir);
        write_npy(p, "<i8", 2, (uint64_t[]){ TN, 3 }, tr_idx, sizeof tr_idx);
        break;
    case 7:                                     /* a repeated expert */
        tr_ex[1][0][1] = tr_ex[1][0][0];
        snprintf(p, sizeof p, "%s/experts.npy", dir);
        write_npy(p, "<i2", 3, se, tr_ex, sizeof tr_ex);
        break;
    default:
        break;
    }
    DbErr err = { 0 };
    DbTrace *tr = db_trace_open(dir, &err);
    if (tr || !strstr(err.msg, needle)) {
        db_trace_close(tr);
        fail_msg("%s: expected an error containing '%s', got '%s'", name, needle,
                 tr ? "(accepted)" : err.msg);
    }
    printf("%s: %s\n", name, err.msg);
}

static void test_trace_malformed_refused_with_clear_message(void **state)
{
    Tmp *t = *state;
    expect_trace_error(t, "b1", meta_ok, 1, "expert id 10 out of range");
    expect_trace_error(t, "b2", meta_ok, 2, "dtype '<f4' not accepted");
    expect_trace_error(t, "b3", meta_ok, 3, "experts.npy: shape[1] is 4, expected 3");
    expect_trace_error(t, "b4", meta_ok, 4, "truncated");
    expect_trace_error(t, "b5", meta_ok, 5, "index.npy: npy magic");
    expect_trace_error(t, "b6", meta_ok, 6, "seq 7 appears again");
    expect_trace_error(t, "b7", meta_ok, 7, "repeated within one route");
    char meta[2048];
    snprintf(meta, sizeof meta, "%s", meta_ok);
    char *p = strstr(meta, "\"logical\"");
    memcpy(p, "\"physic\" ", 9);
    expect_trace_error(t, "m1", meta, 0, "field 'id_space'");
    expect_trace_error(t, "m2", "{\"format\": \"moetrace\", \"version\": 1}", 0,
                       "field 'model': missing");
    expect_trace_error(t, "m3", "{\"format\": \"moetrace\", \"version\": 2}", 0,
                       "field 'version': 2 out of range 1..1");
    expect_trace_error(t, "m4", "{\"format\": \"moetrace\",", 0, "meta.json: line 1");
    snprintf(meta, sizeof meta, "%s", meta_ok);
    p = strstr(meta, "[2, 3, 5]");
    memcpy(p, "[3, 2, 5]", 9);
    expect_trace_error(t, "m5", meta, 0, "field 'moe_layers'");
    snprintf(meta, sizeof meta, "%s", meta_ok);
    p = strstr(meta, "\"top_k\": 2");
    memcpy(p, "\"top_k\": 0", 10);
    expect_trace_error(t, "m6", meta, 0, "field 'top_k': 0 out of range");
    /* nothing of this created the database */
    struct stat sb;
    assert_int_not_equal(stat(t->path, &sb), 0);
}

static int cancel_midway(void *user, int64_t done, int64_t total)
{
    (void)user;
    (void)total;
    return done >= 4096;
}

static void test_import_cancelled_leaves_database_unchanged(void **state)
{
    Tmp *t = *state;
    /* a trace of 3 sequences × 5000 tokens, one MoE layer */
    char dir[128], p[256];
    snprintf(dir, sizeof dir, "%s/big", t->dir);
    mkdir(dir, 0777);
    const char *meta = "{\"format\": \"moetrace\", \"version\": 1, \"model\": \"m\","
                       " \"source\": \"sglang\", \"num_layers\": 2, \"num_experts\": 4,"
                       " \"top_k\": 1, \"moe_layers\": [1], \"id_space\": \"logical\","
                       " \"sequences\": [{\"id\": 0, \"prompt_len\": 10},"
                       " {\"id\": 1, \"prompt_len\": 10}, {\"id\": 2, \"prompt_len\": 10}]}";
    snprintf(p, sizeof p, "%s/meta.json", dir);
    write_file(p, meta, strlen(meta));
    enum { N = 15000 };
    int64_t *idx = malloc(N * 3 * sizeof *idx);
    int16_t *ex = malloc(N * sizeof *ex);
    assert_non_null(idx);
    assert_non_null(ex);
    for (int i = 0; i < N; i++) {
        idx[3 * i] = i / 5000;
        idx[3 * i + 1] = i % 5000;
        idx[3 * i + 2] = i % 77;
        ex[i] = (int16_t)(i % 4);
    }
    snprintf(p, sizeof p, "%s/index.npy", dir);
    write_npy(p, "<i8", 2, (uint64_t[]){ N, 3 }, idx, N * 3 * sizeof *idx);
    snprintf(p, sizeof p, "%s/experts.npy", dir);
    write_npy(p, "<i2", 3, (uint64_t[]){ N, 1, 1 }, ex, N * sizeof *ex);
    free(idx);
    free(ex);

    /* a database with one imported run already */
    DbErr err = { 0 };
    char small[128];
    snprintf(small, sizeof small, "%s/s", t->dir);
    write_trace(small, meta_ok, 1);
    DbTrace *tr = db_trace_open(small, &err);
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    DbImportOpts o = { .tag = "keep" };
    assert_int_equal(db_import(db, tr, &o, NULL, NULL, &err), DB_OK);
    db_trace_close(tr);
    int64_t before[5];
    const char *tables[5] = { "runs", "tokens", "routes", "load", "models" };
    for (int i = 0; i < 5; i++)
        before[i] = count_rows(t->path, tables[i]);

    tr = db_trace_open(dir, &err);
    if (!tr)
        fail_msg("%s", err.msg);
    DbImportOpts o2 = { .tag = "gone", .progress = cancel_midway, .flush_every = 1000 };
    assert_int_not_equal(db_import(db, tr, &o2, NULL, NULL, &err), DB_OK);
    assert_non_null(strstr(err.msg, "cancelled"));
    for (int i = 0; i < 5; i++) {
        int64_t now = count_rows(t->path, tables[i]);
        if (now != before[i])
            fail_msg("table %s: %lld rows before, %lld after a cancelled import", tables[i],
                     (long long)before[i], (long long)now);
    }
    db_trace_close(tr);
    db_close(db);
}

static void test_import_jsonl_equals_directory_form(void **state)
{
    Tmp *t = *state;
    char dir[128], jl[128];
    snprintf(dir, sizeof dir, "%s/d", t->dir);
    snprintf(jl, sizeof jl, "%s/t.jsonl", t->dir);
    write_trace(dir, meta_ok, 1);
    FILE *f = fopen(jl, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", meta_ok);
    for (int i = 0; i < TN; i++) {
        fprintf(f, "{\"seq\": %lld, \"pos\": %lld, \"token\": %lld, \"experts\": [",
                (long long)tr_idx[i][0], (long long)tr_idx[i][1], (long long)tr_idx[i][2]);
        for (int j = 0; j < TM; j++)
            fprintf(f, "%s[%d, %d, %d]", j ? ", " : "", tr_ex[i][j][0], tr_ex[i][j][1],
                    tr_ex[i][j][2]);
        fprintf(f, "], \"weights\": [");
        for (int j = 0; j < TM; j++)
            fprintf(f, "%s[%.9g, %.9g, %.9g]", j ? ", " : "", (double)tr_w[i][j][0],
                    (double)tr_w[i][j][1], (double)tr_w[i][j][2]);
        fprintf(f, "]}\n");
    }
    fclose(f);
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    const char *src[2] = { dir, jl }, *tags[2] = { "dir", "jsonl" };
    int64_t first[2];
    for (int s = 0; s < 2; s++) {
        DbTrace *tr = db_trace_open(src[s], &err);
        if (!tr)
            fail_msg("%s", err.msg);
        DbImportOpts o = { .tag = tags[s] };
        assert_int_equal(db_import(db, tr, &o, &first[s], NULL, &err), DB_OK);
        db_trace_close(tr);
    }
    for (int run = 0; run < 2; run++) {
        Routes a = { 0 }, b = { 0 };
        assert_int_equal(db_routes(db, first[0] + run, 0, -1, -1, grab_route, &a, &err), DB_OK);
        assert_int_equal(db_routes(db, first[1] + run, 0, -1, -1, grab_route, &b, &err), DB_OK);
        assert_int_equal(a.n, b.n);
        assert_memory_equal(a.ex, b.ex, sizeof a.ex);
        assert_memory_equal(a.w, b.w, sizeof a.w);
        assert_memory_equal(a.pos, b.pos, sizeof a.pos);
    }
    /* a JSONL line with a bad expert names its line */
    f = fopen(jl, "a");
    fprintf(f, "{\"seq\": 9, \"pos\": 9, \"token\": 1, \"experts\": [[1, 2, 3], [1, 2, 3], "
               "[1, 2, 33]], \"weights\": [[0,0,0],[0,0,0],[0,0,0]]}\n");
    fclose(f);
    assert_null(db_trace_open(jl, &err));
    assert_non_null(strstr(err.msg, "line 9"));
    assert_non_null(strstr(err.msg, "expert id 33 out of range"));
    db_close(db);
}

/* ---- round trip: our runs → moetrace → import ------------------------------ */

typedef struct {
    int n;
    int32_t pos[4096], layer[4096], k[4096], ex[4096][4], prompt[4096];
    float w[4096][4];
} BigRoutes;

static int grab_big(void *user, int64_t run, const DbRoute *r)
{
    BigRoutes *g = user;
    (void)run;
    if (g->n >= 4096 || r->k > 4)
        return 1;
    int i = g->n++;
    g->pos[i] = r->pos;
    g->layer[i] = r->layer;
    g->k[i] = r->k;
    g->prompt[i] = r->is_prompt;
    for (int q = 0; q < r->k; q++) {
        g->ex[i][q] = r->experts[q];
        g->w[i][q] = r->weights[q];
    }
    return 0;
}

static void test_roundtrip_runs_export_import_identical(void **state)
{
    Tmp *t = *state;
    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_CREATE, &err);
    assert_non_null(db);
    /* a deepseek-like model: 5 layers, the first dense, 12 experts, top-3 */
    DbModel m = { .path = "/models/x.gguf", .name = "x", .arch = "deepseek2",
                  .file_size = 123, .hash = 0x1234, .n_layer = 5, .n_expert = 12, .k = 3 };
    assert_int_equal(db_model_register(db, &m, &err), DB_OK);
    uint64_t rng = 42;
    for (int run = 0; run < 3; run++) {
        DbRunInfo ri = { .model = m.id, .tag = "own", .prompt = "p", .flags = DB_RUN_SCORES };
        DbLog *lg = db_log_begin(db, &ri, 0, &err);
        assert_non_null(lg);
        int n_tok = 20 + 7 * run, n_prompt = 5 + run;
        for (int pos = 0; pos < n_tok; pos++) {
            DbToken tk = { .pos = pos, .token = 1000 + pos * 3 + run,
                           .is_prompt = pos < n_prompt, .logprob = NAN };
            assert_int_equal(db_log_token(lg, &tk), DB_OK);
            if (pos == n_tok - 1)
                continue;               /* the last token is never run */
            for (int layer = 1; layer < 5; layer++) {
                int k = run == 2 && pos > 10 ? 4 : 3;       /* a top-k override */
                int32_t ex[4];
                float w[4];
                for (int q = 0; q < k; q++) {
                    int e;
                    int dup;
                    do {
                        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                        e = (int)((rng >> 33) % 12);
                        dup = 0;
                        for (int p = 0; p < q; p++)
                            dup |= ex[p] == e;
                    } while (dup);
                    ex[q] = e;
                    w[q] = (float)((rng >> 20) & 0xffff) / 65536.0f;
                }
                DbRoute r = { .pos = pos, .layer = layer, .is_prompt = pos < n_prompt, .k = k,
                              .experts = ex, .weights = w, .scores = w,
                              .shared_gate = NAN };
                assert_int_equal(db_log_route(lg, &r), DB_OK);
            }
        }
        assert_int_equal(db_log_finish(lg, DB_RUN_COMPLETE, NULL, &err), DB_OK);
    }
    char dir[128], db2[128];
    snprintf(dir, sizeof dir, "%s/exp", t->dir);
    snprintf(db2, sizeof db2, "%s/b.db", t->dir);
    DbSel sel = { .tag = "own" };
    if (db_export_moetrace(db, &sel, dir, &err) != DB_OK)
        fail_msg("%s", err.msg);
    /* a second export into the same directory is refused */
    assert_int_equal(db_export_moetrace(db, &sel, dir, &err), DB_E_ARG);

    DbTrace *tr = db_trace_open(dir, &err);
    if (!tr)
        fail_msg("%s", err.msg);
    const DbTraceInfo *I = db_trace_info(tr);
    assert_int_equal(I->n_moe, 4);
    assert_int_equal(I->moe_layers[0], 1);
    assert_int_equal(I->k_slots, 4);
    assert_int_equal(I->num_layers, 5);
    Db *b = db_open(db2, DB_OPEN_CREATE, &err);
    DbImportOpts o = { .tag = "back" };
    int64_t first = 0;
    assert_int_equal(db_import(b, tr, &o, &first, NULL, &err), DB_OK);
    db_trace_close(tr);

    static BigRoutes ra, rb;
    double maxd = 0;
    for (int run = 0; run < 3; run++) {
        memset(&ra, 0, sizeof ra);
        memset(&rb, 0, sizeof rb);
        assert_int_equal(db_routes(db, 1 + run, 0, -1, -1, grab_big, &ra, &err), DB_OK);
        assert_int_equal(db_routes(b, first + run, 0, -1, -1, grab_big, &rb, &err), DB_OK);
        assert_int_equal(ra.n, rb.n);
        assert_memory_equal(ra.pos, rb.pos, sizeof ra.pos);
        assert_memory_equal(ra.layer, rb.layer, sizeof ra.layer);
        assert_memory_equal(ra.k, rb.k, sizeof ra.k);
        assert_memory_equal(ra.prompt, rb.prompt, sizeof ra.prompt);
        assert_memory_equal(ra.ex, rb.ex, sizeof ra.ex);
        for (int i = 0; i < ra.n; i++)
            for (int q = 0; q < ra.k[i]; q++) {
                double d = fabs((double)ra.w[i][q] - (double)rb.w[i][q]);
                maxd = d > maxd ? d : maxd;
            }
        DbRun x, y;
        assert_int_equal(db_run_get(db, 1 + run, &x, &err), DB_OK);
        assert_int_equal(db_run_get(b, first + run, &y, &err), DB_OK);
        assert_int_equal(x.n_prompt, y.n_prompt);
        assert_int_equal(x.n_gen, y.n_gen);
        db_run_free(&x);
        db_run_free(&y);
    }
    printf("round trip route weights: largest difference %g\n", maxd);
    assert_true(maxd == 0);

    DbLoad la, lb;
    DbSel sb = { .tag = "back" };
    assert_int_equal(db_load(db, &sel, &la, &err), DB_OK);
    assert_int_equal(db_load(b, &sb, &lb, &err), DB_OK);
    assert_int_equal(la.n_layer, lb.n_layer);
    assert_int_equal(la.n_expert, lb.n_expert);
    assert_int_equal(la.n_prompt, lb.n_prompt);
    assert_int_equal(la.n_gen, lb.n_gen);
    double maxw = 0;
    for (int i = 0; i < la.n_layer * la.n_expert; i++) {
        assert_int_equal(la.count[i], lb.count[i]);
        assert_int_equal(la.count_prompt[i], lb.count_prompt[i]);
        double d = fabs(la.weight[i] - lb.weight[i]);
        maxw = d > maxw ? d : maxw;
    }
    printf("round trip aggregate weights: largest difference %g\n", maxw);
    assert_true(maxw == 0);
    db_load_free(&la);
    db_load_free(&lb);
    db_close(b);
    db_close(db);
}

/* ---- stats and contrast on a DeepSeek-V3-shaped import ------------------- */

enum { DS_L = 61, DS_DENSE = 3, DS_MOE = DS_L - DS_DENSE, DS_E = 256, DS_K = 8,
       DS_SEQ = 2, DS_T = 30, DS_PROMPT = 10, DS_LAYER = 40, DS_EXPERT = 7 };

/* A vLLM-like trace (no weights; the last token of each sequence never ran
** through the model, so its slots are all -1).  With plant set, layer
** DS_LAYER always chooses DS_EXPERT first; without, never. */
static void write_dsv3_trace(const char *dir, uint64_t seed, int plant)
{
    static int16_t ex[DS_SEQ * DS_T][DS_MOE][DS_K];
    int64_t idx[DS_SEQ * DS_T][3];
    char p[256];
    assert_int_equal(mkdir(dir, 0777), 0);
    for (int s = 0; s < DS_SEQ; s++)
        for (int t = 0; t < DS_T; t++) {
            int i = s * DS_T + t;
            idx[i][0] = s;
            idx[i][1] = t;
            idx[i][2] = (t * 7919 + s) % 129280;
            for (int j = 0; j < DS_MOE; j++) {
                int n = 0;
                if (t == DS_T - 1) {
                    for (int q = 0; q < DS_K; q++)
                        ex[i][j][q] = -1;
                    continue;
                }
                if (plant && j + DS_DENSE == DS_LAYER)
                    ex[i][j][n++] = DS_EXPERT;
                while (n < DS_K) {
                    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                    int e = (int)(seed >> 33) % DS_E, dup = 0;
                    for (int q = 0; q < n; q++)
                        dup |= ex[i][j][q] == e;
                    if (!dup && !(j + DS_DENSE == DS_LAYER && e == DS_EXPERT))
                        ex[i][j][n++] = (int16_t)e;
                }
            }
        }
    snprintf(p, sizeof p, "%s/meta.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "{\"format\": \"moetrace\", \"version\": 1, \"model\": \"deepseek-ai/DeepSeek-V3\","
               " \"source\": \"vllm\", \"arch\": \"deepseek_v3\", \"num_layers\": %d,"
               " \"num_experts\": %d, \"top_k\": %d, \"id_space\": \"logical\","
               " \"moe_layers\": [", DS_L, DS_E, DS_K);
    for (int l = DS_DENSE; l < DS_L; l++)
        fprintf(f, "%s%d", l > DS_DENSE ? ", " : "", l);
    fprintf(f, "], \"sequences\": [{\"id\": 0, \"prompt_len\": %d}, {\"id\": 1, "
               "\"prompt_len\": %d}]}\n", DS_PROMPT, DS_PROMPT);
    assert_int_equal(fclose(f), 0);
    uint64_t si[2] = { DS_SEQ * DS_T, 3 }, se[3] = { DS_SEQ * DS_T, DS_MOE, DS_K };
    snprintf(p, sizeof p, "%s/index.npy", dir);
    write_npy(p, "<i8", 2, si, idx, sizeof idx);
    snprintf(p, sizeof p, "%s/experts.npy", dir);
    write_npy(p, "<i2", 3, se, ex, sizeof ex);
}

/* Run a subcommand with its stdout going to path; returns its exit status. */
static int run_cmd_to(const char *path, int (*cmd)(int, char **), ...)
{
    char *argv[24];
    int argc = 0;
    va_list ap;
    va_start(ap, cmd);
    while (argc < 23 && (argv[argc] = va_arg(ap, char *)) != NULL)
        argc++;
    va_end(ap);
    argv[argc] = NULL;
    fflush(stdout);
    int saved = dup(1), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 1);
    close(fd);
    int rc = cmd(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    return rc;
}

static json_t *load_json(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        fail_msg("%s: line %d: %s", path, je.line, je.text);
    return j;
}

/* Per-layer rows of one split: exactly the MoE layers 3..60 in order, each
** with the routed tokens (the last token of a sequence has no route), k
** experts per routed token, weight mass 1 per token (1/k stored per
** expert without gate weights).  Returns the largest mass difference. */
static double check_split(json_t *split, int positions, int routed, int planted)
{
    assert_int_equal(json_integer_value(json_object_get(split, "positions")), positions);
    json_t *layers = json_object_get(split, "layers");
    assert_int_equal(json_array_size(layers), DS_MOE);
    double maxd = 0;
    for (int j = 0; j < DS_MOE; j++) {
        json_t *l = json_array_get(layers, (size_t)j);
        int layer = (int)json_integer_value(json_object_get(l, "layer"));
        assert_int_equal(layer, DS_DENSE + j);
        assert_int_equal(json_integer_value(json_object_get(l, "tokens")), routed);
        json_t *cnt = json_object_get(l, "count"), *mass = json_object_get(l, "mass");
        assert_int_equal(json_array_size(cnt), DS_E);
        int64_t sum = 0;
        double msum = 0;
        for (int e = 0; e < DS_E; e++) {
            sum += json_integer_value(json_array_get(cnt, (size_t)e));
            msum += json_number_value(json_array_get(mass, (size_t)e));
        }
        assert_int_equal(sum, (int64_t)routed * DS_K);
        double d = fabs(msum - routed);
        maxd = d > maxd ? d : maxd;
        int64_t c7 = json_integer_value(json_array_get(cnt, DS_EXPERT));
        if (layer == DS_LAYER)
            assert_int_equal(c7, planted ? routed : 0);
        double ent = json_number_value(json_object_get(l, "entropy"));
        assert_true(ent > 0 && ent <= 1);
    }
    return maxd;
}

static void test_import_dsv3_stats_contrast_moe_layers_only(void **state)
{
    Tmp *t = *state;
    char a[128], b[128], out[160];
    snprintf(a, sizeof a, "%s/dsa", t->dir);
    snprintf(b, sizeof b, "%s/dsb", t->dir);
    snprintf(out, sizeof out, "%s/out", t->dir);
    write_dsv3_trace(a, 11, 1);
    write_dsv3_trace(b, 12, 0);
    assert_int_equal(run_cmd_to(out, cli_cmd_import, "import", a, "--db", t->path, "--tag", "dsa",
                                "--quiet", NULL), 0);
    assert_int_equal(run_cmd_to(out, cli_cmd_import, "import", b, "--db", t->path, "--tag", "dsb",
                                "--quiet", NULL), 0);

    /* stats, JSON: every split lists the 58 MoE layers and nothing else */
    assert_int_equal(run_cmd_to(out, cli_cmd_stats, "stats", "--db", t->path, "--tag", "dsa",
                                "--format", "json", NULL), 0);
    json_t *j = load_json(out);
    assert_int_equal(json_integer_value(json_object_get(j, "n_expert")), DS_E);
    json_t *sp = json_object_get(j, "splits");
    int routed = DS_SEQ * (DS_T - 1);
    double d = check_split(json_object_get(sp, "all"), DS_SEQ * DS_T, routed, 1);
    double d2 = check_split(json_object_get(sp, "prompt"), DS_SEQ * DS_PROMPT,
                            DS_SEQ * DS_PROMPT, 1);
    d = d2 > d ? d2 : d;
    d2 = check_split(json_object_get(sp, "gen"), DS_SEQ * (DS_T - DS_PROMPT),
                     DS_SEQ * (DS_T - DS_PROMPT - 1), 1);
    d = d2 > d ? d2 : d;
    printf("stats on the DeepSeek-V3-shaped import: weight mass vs routed tokens, largest "
           "difference %g\n", d);
    assert_true(d < 1e-4);
    json_decref(j);

    /* stats, table: the per-layer block has rows 3..60 */
    assert_int_equal(run_cmd_to(out, cli_cmd_stats, "stats", "--db", t->path, "--tag", "dsa",
                                NULL), 0);
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    char line[4096];
    int in_block = 0, next = DS_DENSE;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "layer ", 6)) {
            in_block = 1;
            continue;
        }
        if (!in_block)
            continue;
        int layer = -1, tokens = -1;
        if (sscanf(line, "%d %d", &layer, &tokens) != 2)
            break;
        assert_int_equal(layer, next);
        assert_int_equal(tokens, routed);
        next++;
    }
    fclose(f);
    assert_int_equal(next, DS_L);

    /* contrast: the planted expert comes first, counted over routed tokens */
    assert_int_equal(run_cmd_to(out, cli_cmd_contrast, "contrast", "--db", t->path, "--a", "dsa",
                                "--b", "dsb", "--perm", "20", "--top", "3", "--format", "json",
                                NULL), 0);
    j = load_json(out);
    json_t *rows = json_object_get(j, "rows");
    assert_true(json_array_size(rows) >= 1);
    json_t *r0 = json_array_get(rows, 0);
    assert_int_equal(json_integer_value(json_object_get(r0, "layer")), DS_LAYER);
    assert_int_equal(json_integer_value(json_object_get(r0, "expert")), DS_EXPERT);
    assert_int_equal(json_integer_value(json_object_get(r0, "count_a")), routed);
    assert_int_equal(json_integer_value(json_object_get(r0, "n_a")), routed);
    assert_int_equal(json_integer_value(json_object_get(r0, "count_b")), 0);
    for (size_t i = 0; i < json_array_size(rows); i++) {
        int layer = (int)json_integer_value(json_object_get(json_array_get(rows, i), "layer"));
        assert_true(layer >= DS_DENSE && layer < DS_L);
    }
    json_decref(j);
}


/* ---- count traces: per-layer counts without tokens --------------------- */

/* Run a subcommand with stdout into out and stderr into errp. */
static int run_cmd_err(const char *out, const char *errp, int (*cmd)(int, char **), ...)
{
    char *argv[24];
    int argc = 0;
    va_list ap;
    va_start(ap, cmd);
    while (argc < 23 && (argv[argc] = va_arg(ap, char *)) != NULL)
        argc++;
    va_end(ap);
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(so >= 0 && se >= 0 && fo >= 0 && fe >= 0);
    dup2(fo, 1);
    dup2(fe, 2);
    close(fo);
    close(fe);
    int rc = cmd(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    return rc;
}

static int file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t cap = 8u << 20;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = 0;
    int found = strstr(buf, needle) != NULL;
    free(buf);
    return found;
}

/* The counts of write_dsv3_trace's routes (same seed, same plant) as a
** count trace: counts.npy [DS_SEQ, DS_MOE, DS_E], "tokens" = the routed
** tokens of each sequence (the last one never ran). */
static void write_dsv3_counts(const char *dir, uint64_t seed, int plant, const char *extra_seq)
{
    static int64_t c[DS_SEQ][DS_MOE][DS_E];
    memset(c, 0, sizeof c);
    char p[256];
    assert_int_equal(mkdir(dir, 0777), 0);
    for (int s = 0; s < DS_SEQ; s++)
        for (int t = 0; t < DS_T - 1; t++)
            for (int j = 0; j < DS_MOE; j++) {
                int16_t ex[DS_K];
                int n = 0;
                if (plant && j + DS_DENSE == DS_LAYER)
                    ex[n++] = DS_EXPERT;
                while (n < DS_K) {
                    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                    int e = (int)(seed >> 33) % DS_E, dup = 0;
                    for (int q = 0; q < n; q++)
                        dup |= ex[q] == e;
                    if (!dup && !(j + DS_DENSE == DS_LAYER && e == DS_EXPERT))
                        ex[n++] = (int16_t)e;
                }
                for (int q = 0; q < DS_K; q++)
                    c[s][j][ex[q]]++;
            }
    snprintf(p, sizeof p, "%s/meta.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "{\"format\": \"moetrace\", \"version\": 1, \"kind\": \"counts\","
               " \"model\": \"deepseek-ai/DeepSeek-V3\", \"source\": \"sglang\","
               " \"arch\": \"deepseek_v3\", \"num_layers\": %d, \"num_experts\": %d,"
               " \"top_k\": %d, \"id_space\": \"logical\", \"moe_layers\": [", DS_L, DS_E, DS_K);
    for (int l = DS_DENSE; l < DS_L; l++)
        fprintf(f, "%s%d", l > DS_DENSE ? ", " : "", l);
    fprintf(f, "], \"sequences\": [{\"id\": 0, \"tokens\": %d, \"text\": \"pass 1\"},"
               " {\"id\": 1, \"tokens\": %d%s}]}\n", DS_T - 1, DS_T - 1,
            extra_seq ? extra_seq : "");
    assert_int_equal(fclose(f), 0);
    uint64_t sc[3] = { DS_SEQ, DS_MOE, DS_E };
    snprintf(p, sizeof p, "%s/counts.npy", dir);
    write_npy(p, "<i8", 3, sc, c, sizeof c);
}

static void test_import_count_trace_stats_contrast_say_token_views_unavailable(void **state)
{
    Tmp *t = *state;
    char cnt[128], tok[128], out[160], errp[160], back[160], db2[160];
    snprintf(cnt, sizeof cnt, "%s/cnt", t->dir);
    snprintf(tok, sizeof tok, "%s/tok", t->dir);
    snprintf(out, sizeof out, "%s/out", t->dir);
    snprintf(errp, sizeof errp, "%s/err", t->dir);
    snprintf(back, sizeof back, "%s/back", t->dir);
    snprintf(db2, sizeof db2, "%s/b.db", t->dir);
    write_dsv3_counts(cnt, 11, 1, NULL);
    write_dsv3_trace(tok, 12, 0);
    assert_int_equal(run_cmd_err(out, errp, cli_cmd_import, "import", cnt, "--db", t->path,
                                 "--tag", "dsc", "--quiet", NULL), 0);
    if (!file_has(out, "imported 2 count-only runs") || !file_has(out, "of 58 tokens") ||
        !file_has(out, "token views not available"))
        fail_msg("import summary of a count trace: see %s", out);
    assert_int_equal(run_cmd_to(out, cli_cmd_import, "import", tok, "--db", t->path, "--tag",
                                "dsb", "--quiet", NULL), 0);

    DbErr err = { 0 };
    Db *db = db_open(t->path, DB_OPEN_READONLY, &err);
    assert_non_null(db);
    DbRun r;
    assert_int_equal(db_run_get(db, 1, &r, &err), DB_OK);
    assert_true(r.flags & DB_RUN_COUNTS_ONLY);
    assert_true(r.flags & DB_RUN_NO_WEIGHTS);
    assert_true(r.flags & DB_RUN_IMPORTED);
    assert_int_equal(r.n_counted, DS_T - 1);
    assert_int_equal(r.n_prompt + r.n_gen, 0);
    assert_string_equal(r.prompt, "pass 1");
    db_run_free(&r);
    db_close(db);

    /* stats: the load over all positions counts the 58 tokens in every
    ** MoE layer, exactly as the token trace of the same routes does; the
    ** prompt/gen splits say why they are missing */
    assert_int_equal(run_cmd_to(out, cli_cmd_stats, "stats", "--db", t->path, "--tag", "dsc",
                                "--format", "json", NULL), 0);
    json_t *j = load_json(out);
    json_t *sp = json_object_get(j, "splits");
    int routed = DS_SEQ * (DS_T - 1);
    double d = check_split(json_object_get(sp, "all"), routed, routed, 1);
    printf("count trace: weight mass vs counted tokens, largest difference %g\n", d);
    assert_true(d < 1e-6);
    json_t *pr = json_object_get(sp, "prompt");
    assert_true(json_is_false(json_object_get(pr, "available")));
    assert_non_null(strstr(json_string_value(json_object_get(pr, "reason")),
                           "token views not available"));
    assert_true(json_is_false(json_object_get(json_object_get(sp, "gen"), "available")));
    assert_non_null(strstr(json_string_value(json_object_get(j, "title")), "count-only"));
    json_decref(j);
    assert_int_equal(run_cmd_to(out, cli_cmd_stats, "stats", "--db", t->path, "--tag", "dsc",
                                NULL), 0);
    assert_true(file_has(out, "== prompt positions: not available"));
    assert_int_equal(run_cmd_to(out, cli_cmd_stats, "stats", "--db", t->path, "--tag", "dsc",
                                "--format", "csv", NULL), 0);
    assert_true(file_has(out, "unavailable,gen,,,,reason,"));
    /* views that need tokens refuse, naming the run and why */
    assert_int_equal(run_cmd_err(out, errp, cli_cmd_stats, "stats", "--db", t->path, "--tag",
                                 "dsc", "--routes", NULL), 1);
    if (!file_has(errp, "run 1 is count-only") || !file_has(errp, "token views not available"))
        fail_msg("stats --routes on count-only runs: see %s", errp);
    assert_int_equal(run_cmd_err(out, errp, cli_cmd_diff, "diff", "--db", t->path, "1", "3",
                                 NULL), 1);
    assert_true(file_has(errp, "token views not available"));

    /* contrast over all positions uses the counted tokens; a split needs
    ** tokens */
    assert_int_equal(run_cmd_to(out, cli_cmd_contrast, "contrast", "--db", t->path, "--a", "dsc",
                                "--b", "dsb", "--perm", "20", "--top", "3", "--format", "json",
                                NULL), 0);
    j = load_json(out);
    json_t *r0 = json_array_get(json_object_get(j, "rows"), 0);
    assert_int_equal(json_integer_value(json_object_get(r0, "layer")), DS_LAYER);
    assert_int_equal(json_integer_value(json_object_get(r0, "expert")), DS_EXPERT);
    assert_int_equal(json_integer_value(json_object_get(r0, "count_a")), routed);
    assert_int_equal(json_integer_value(json_object_get(r0, "n_a")), routed);
    assert_int_equal(json_integer_value(json_object_get(r0, "count_b")), 0);
    assert_int_equal(json_integer_value(json_object_get(r0, "n_b")), routed);
    json_decref(j);
    assert_int_equal(run_cmd_err(out, errp, cli_cmd_contrast, "contrast", "--db", t->path,
                                 "--a", "dsc", "--b", "dsb", "--split", "prompt", NULL), 1);
    if (!file_has(errp, "--split prompt (tag 'dsc')") ||
        !file_has(errp, "token views not available; use --split all"))
        fail_msg("contrast --split prompt on count-only runs: see %s", errp);

    /* exported, the count runs are a count trace; imported again, the same
    ** load and n_counted; a selection mixing both kinds is refused */
    assert_int_equal(run_cmd_to(out, cli_cmd_export, "export", "--db", t->path, "--tag", "dsc",
                                "--format", "moetrace", "-o", back, NULL), 0);
    assert_int_equal(run_cmd_err(out, errp, cli_cmd_export, "export", "--db", t->path, "--all",
                                 "--format", "moetrace", "-o", db2, NULL), 1);
    assert_true(file_has(errp, "count-only"));
    assert_int_equal(run_cmd_to(out, cli_cmd_import, "import", back, "--db", db2, "--tag",
                                "again", "--quiet", NULL), 0);
    Db *a = db_open(t->path, DB_OPEN_READONLY, &err), *b = db_open(db2, DB_OPEN_READONLY, &err);
    assert_non_null(a);
    assert_non_null(b);
    DbLoad la, lb;
    DbSel sa = { .tag = "dsc" }, sb = { .tag = "again" };
    assert_int_equal(db_load(a, &sa, &la, &err), DB_OK);
    assert_int_equal(db_load(b, &sb, &lb, &err), DB_OK);
    assert_int_equal(la.n_counted, lb.n_counted);
    assert_int_equal(lb.n_counts_only, 2);
    assert_int_equal(la.n_layer * la.n_expert, lb.n_layer * lb.n_expert);
    assert_memory_equal(la.count, lb.count, (size_t)la.n_layer * (size_t)la.n_expert * 8);
    db_load_free(&la);
    db_load_free(&lb);
    db_close(a);
    db_close(b);
}

/* A count trace variant refused with a message naming the cause. */
static void expect_counts_error(Tmp *t, const char *name, int breakage, const char *needle)
{
    char dir[128], p[256];
    snprintf(dir, sizeof dir, "%s/%s", t->dir, name);
    write_dsv3_counts(dir, 5, 0, breakage == 2 ? ", \"prompt_len\": 3" : NULL);
    uint64_t sc[3] = { DS_SEQ, DS_MOE, DS_E };
    static int64_t c[DS_SEQ][DS_MOE][DS_E];
    snprintf(p, sizeof p, "%s/counts.npy", dir);
    switch (breakage) {
    case 1:                                     /* counted twice (two ranks) */
    case 3: {                                   /* a negative count */
        FILE *f = fopen(p, "rb");
        assert_non_null(f);
        assert_int_equal(fseek(f, DB_NPY_HDR, SEEK_SET), 0);
        assert_int_equal(fread(c, 1, sizeof c, f), sizeof c);
        fclose(f);
        if (breakage == 1)
            for (int e = 0; e < DS_E; e++)
                c[1][4][e] *= 2;
        else
            c[0][0][0] = -1;
        write_npy(p, "<i8", 3, sc, c, sizeof c);
        break;
    }
    case 4:                                     /* a token file as well */
        snprintf(p, sizeof p, "%s/experts.npy", dir);
        write_file(p, "x", 1);
        break;
    case 5:                                     /* counts as float */
        write_npy(p, "<f4", 3, sc, c, sizeof c / 2);
        break;
    default:
        break;
    }
    DbErr err = { 0 };
    DbTrace *tr = db_trace_open(dir, &err);
    if (tr || !strstr(err.msg, needle)) {
        db_trace_close(tr);
        fail_msg("%s: expected an error containing '%s', got '%s'", name, needle,
                 tr ? "(accepted)" : err.msg);
    }
    printf("%s: %s\n", name, err.msg);
}

static void test_count_trace_malformed_refused(void **state)
{
    Tmp *t = *state;
    expect_counts_error(t, "c1", 1, "layer 7): the counts sum to 464, expected tokens (29) x top_k (8) = 232");
    expect_counts_error(t, "c2", 2, "field 'prompt_len': a count trace has no tokens");
    expect_counts_error(t, "c3", 3, "count -1 (expected 0..");
    expect_counts_error(t, "c4", 4, "experts.npy: present, but meta.json says");
    expect_counts_error(t, "c5", 5, "counts.npy: dtype '<f4' not accepted");
    /* the JSONL form has no count traces; an unknown kind is named */
    char jl[160];
    snprintf(jl, sizeof jl, "%s/c.jsonl", t->dir);
    const char *m = "{\"format\": \"moetrace\", \"version\": 1, \"kind\": \"counts\", \"model\": "
                    "\"m\", \"source\": \"s\", \"num_layers\": 2, \"num_experts\": 4, \"top_k\": 1,"
                    " \"moe_layers\": [1], \"id_space\": \"logical\", \"sequences\": [{\"id\": 0,"
                    " \"tokens\": 1}]}\n";
    write_file(jl, m, strlen(m));
    DbErr err = { 0 };
    assert_null(db_trace_open(jl, &err));
    assert_non_null(strstr(err.msg, "directory form only"));
    char bogus[600];
    snprintf(bogus, sizeof bogus, "%s", m);
    memcpy(strstr(bogus, "\"counts\""), "\"county\"", 8);
    write_file(jl, bogus, strlen(bogus));
    assert_null(db_trace_open(jl, &err));
    assert_non_null(strstr(err.msg, "field 'kind'"));
    struct stat sb;
    assert_int_not_equal(stat(t->path, &sb), 0);
}


/* The app's heatmap on a count-only run: the counts over all positions,
** the title and the status line say that the prompt/gen split and the token
** views are not there, the prompt part is empty instead of wrong. */
static void test_app_heatmap_count_only_run_says_so(void **state)
{
    Tmp *t = *state;
    char cnt[128], out[160];
    snprintf(cnt, sizeof cnt, "%s/cnt", t->dir);
    snprintf(out, sizeof out, "%s/out", t->dir);
    write_dsv3_counts(cnt, 11, 1, NULL);
    assert_int_equal(run_cmd_to(out, cli_cmd_import, "import", cnt, "--db", t->path, "--tag",
                                "dsc", "--quiet", NULL), 0);
    setlocale(LC_ALL, "C.UTF-8");
    FILE *so = fopen("/dev/null", "w"), *si = fopen("/dev/null", "r");
    SCREEN *scr = newterm("xterm-256color", so, si);
    assert_non_null(scr);
    set_term(scr);
    TuiSource src;
    char err[512];
    assert_int_equal(tui_db_source_open(&src, t->path, 0, err, sizeof err), 0);
    TuiApp *a = calloc(1, sizeof *a);
    assert_non_null(a);
    assert_int_equal(tui_app_init(a, &src, NULL, "test"), 0);
    resizeterm(40, 160);
    tui_app_resize(a, 160, 40);
    assert_int_equal(a->runs.n, 2);
    assert_int_equal(tui_app_open_run(a, 0), 0);
    tui_app_show(a, TUI_V_HEAT);
    assert_int_equal(a->agg.n_counted, DS_T - 1);
    assert_int_equal(a->agg.n_tok, DS_T - 1);
    if (!strstr(a->msg, "count-only runs") || !strstr(a->msg, "token views not available"))
        fail_msg("message after opening: '%s'", a->msg);
    /* layer 40, planted expert 7: every counted token */
    a->sel_layer = DS_LAYER;
    a->sel_expert = DS_EXPERT;
    size_t i = (size_t)DS_LAYER * (size_t)a->grid.n_expert + DS_EXPERT;
    assert_true(fabsf(a->grid.v[i] - 1.0f) < 1e-6f);
    char cell[512];
    tui_status_cell(a, cell, sizeof cell);
    if (!strstr(cell, "routed 29/29 tokens") || !strstr(cell, "prompt/gen not available"))
        fail_msg("status cell: '%s'", cell);
    char row[512];
    int found = 0;
    a->views[a->cur].dirty = 1;
    tui_app_draw(a);
    for (int y = 0; y < a->h && !found; y++) {
        mvinnstr(y, 0, row, sizeof row - 1);
        found = strstr(row, "incl. count-only runs (no token views)") != NULL;
    }
    assert_true(found);
    tui_app_key(a, 'p');                        /* prompt part */
    assert_int_equal(a->hm_part, TUI_HM_PROMPT);
    assert_true(a->grid.v[i] == 0.0f);
    a->views[a->cur].dirty = 1;
    tui_app_draw(a);
    found = 0;
    for (int y = 0; y < a->h && !found; y++) {
        mvinnstr(y, 0, row, sizeof row - 1);
        found = strstr(row, "not available: count-only runs") != NULL;
    }
    assert_true(found);
    tui_app_done(a);
    free(a);
    src.close(src.self);
    endwin();
    delscreen(scr);
    fclose(so);
    fclose(si);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npy_valid_headers_parse),
        cmocka_unit_test(test_npy_malformed_headers_refused),
        cmocka_unit_test_setup_teardown(test_import_trace_dense_layers_and_missing_slots_kept,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_import_no_weights_flagged_with_uniform_weights,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_trace_malformed_refused_with_clear_message,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_import_cancelled_leaves_database_unchanged,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_import_jsonl_equals_directory_form, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_import_dsv3_stats_contrast_moe_layers_only,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_runs_export_import_identical, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(
            test_import_count_trace_stats_contrast_say_token_views_unavailable, tmp_setup,
            tmp_teardown),
        cmocka_unit_test_setup_teardown(test_count_trace_malformed_refused, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_app_heatmap_count_only_run_says_so, tmp_setup,
                                        tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
