/*
** db/import.c — moetrace v1 traces (docs/moetrace.md) into the routing
** database, as runs that look as if moescope had produced them.
**
** A trace is untrusted input that may be tens of gigabytes, so the work is
** split in two passes over the same rows:
**   1. db_trace_open checks everything: meta.json (through libjansson), the
**      NPY headers (db/import_npy.c), the shapes against each other, then
**      every row — sequence grouping, positions, token ids, every expert id
**      and weight.  Nothing is written; a bad trace leaves no trace.
**   2. db_import walks the rows again and writes them through DbLog, one
**      run per sequence.  If a write fails after all (disk full, a reader's
**      lock held too long) the runs written so far are deleted again.
** Both passes read the rows through a cursor: the NPY files are mapped (the
** kernel pages them in and out), a JSONL trace is read one line at a time,
** so memory is bounded by one row whatever the size of the trace.
**
** libjansson parses the JSON: it is Debian's well-kept C JSON library,
** rejects invalid UTF-8 and duplicate keys on request, and bounds nesting
** depth, which a hand-rolled parser would have to get right again.
*/
#include "db/db_int.h"

#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    int64_t id;
    int64_t prompt_len;
    char *text;             /* may be NULL */
    int64_t n_rows;         /* filled by the checking pass */
    int64_t tokens;         /* count traces: tokens counted per MoE layer */
    int64_t row;            /* index in meta.json "sequences" (= counts.npy
                               row of a count trace) */
} Seq;

struct DbTrace {
    char *path;             /* directory or .jsonl file */
    int jsonl;
    DbTraceInfo info;
    char *model, *arch, *source;
    int *moe_layers;
    Seq *seq;               /* sorted by id */
    DbNpy index, experts, weights, logits;
    DbNpy counts;           /* count traces: int [n_seq, n_moe, num_experts] */
};

/* One row of a trace, decoded. */
typedef struct {
    int64_t seq, pos, token;
    int32_t *experts;       /* n_moe × k_slots, -1 = missing */
    float *weights;         /* n_moe × k_slots, or NULL */
    float *logits;          /* n_moe × num_experts, or NULL */
} Row;

/* Sequential reader over the rows of either form. */
typedef struct {
    DbTrace *t;
    int64_t i;              /* next row */
    FILE *f;                /* JSONL */
    char *line;
    size_t line_cap;
    int64_t line_no;
    Row row;
} Cursor;

/* ---- meta.json ----------------------------------------------------------- */

static DbStatus meta_err(DbErr *err, const char *where, const char *field, const char *fmt,
                         ...) __attribute__((format(printf, 4, 5)));

static DbStatus meta_err(DbErr *err, const char *where, const char *field, const char *fmt,
                         ...)
{
    char tail[380];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tail, sizeof tail, fmt, ap);
    va_end(ap);
    return db_err_set(err, DB_E_ARG, "%s: field '%s': %s", where, field, tail);
}

/* An integer field in lo..hi. */
static DbStatus meta_int(json_t *o, const char *where, const char *key, int64_t lo, int64_t hi,
                         int optional, int64_t *out, DbErr *err)
{
    json_t *v = json_object_get(o, key);
    if (!v && optional)
        return DB_OK;
    if (!v)
        return meta_err(err, where, key, "missing (expected an integer %lld..%lld)",
                        (long long)lo, (long long)hi);
    if (!json_is_integer(v))
        return meta_err(err, where, key, "is not an integer (expected %lld..%lld)",
                        (long long)lo, (long long)hi);
    int64_t x = (int64_t)json_integer_value(v);
    if (x < lo || x > hi)
        return meta_err(err, where, key, "%lld out of range %lld..%lld", (long long)x,
                        (long long)lo, (long long)hi);
    *out = x;
    return DB_OK;
}

/* A string field; absent optional fields give "". */
static DbStatus meta_str(json_t *o, const char *where, const char *key, int optional,
                         char **out, DbErr *err)
{
    json_t *v = json_object_get(o, key);
    if (!v && optional) {
        *out = strdup("");
    } else if (!v) {
        return meta_err(err, where, key, "missing (expected a string)");
    } else if (!json_is_string(v)) {
        return meta_err(err, where, key, "is not a string");
    } else {
        size_t n = json_string_length(v);
        if (memchr(json_string_value(v), 0, n))
            return meta_err(err, where, key, "contains a NUL character");
        *out = strdup(json_string_value(v));
    }
    if (!*out)
        return db_err_set(err, DB_E_NOMEM, "%s: out of memory", where);
    return DB_OK;
}

static int cmp_seq(const void *a, const void *b)
{
    int64_t x = ((const Seq *)a)->id, y = ((const Seq *)b)->id;
    return x < y ? -1 : x > y;
}

static DbStatus parse_meta(DbTrace *t, json_t *m, const char *where, DbErr *err)
{
    DbTraceInfo *I = &t->info;
    DbStatus s;
    int64_t v = 0;
    char *fmt = NULL;
    if (!json_is_object(m))
        return db_err_set(err, DB_E_ARG, "%s: not a JSON object", where);
    if ((s = meta_str(m, where, "format", 0, &fmt, err)) != DB_OK)
        return s;
    int ok = !strcmp(fmt, "moetrace");
    free(fmt);
    if (!ok)
        return meta_err(err, where, "format", "expected \"moetrace\"");
    if ((s = meta_int(m, where, "version", 1, 1, 0, &v, err)) != DB_OK)
        return s;
    json_t *kind = json_object_get(m, "kind");
    if (kind && (!json_is_string(kind) || (strcmp(json_string_value(kind), "routes") != 0 &&
                                           strcmp(json_string_value(kind), "counts") != 0)))
        return meta_err(err, where, "kind", "expected \"routes\" (the default: tokens and "
                        "their routes) or \"counts\" (per-layer expert counts only)");
    I->counts_only = kind && !strcmp(json_string_value(kind), "counts");
    if ((s = meta_str(m, where, "model", 0, &t->model, err)) != DB_OK ||
        (s = meta_str(m, where, "source", 0, &t->source, err)) != DB_OK ||
        (s = meta_str(m, where, "arch", 1, &t->arch, err)) != DB_OK)
        return s;
    if ((s = meta_int(m, where, "num_layers", 1, 65536, 0, &v, err)) != DB_OK)
        return s;
    I->num_layers = (int)v;
    if ((s = meta_int(m, where, "num_experts", 1, 65536, 0, &v, err)) != DB_OK)
        return s;
    I->num_experts = (int)v;
    if ((s = meta_int(m, where, "top_k", 1, I->num_experts, 0, &v, err)) != DB_OK)
        return s;
    I->top_k = (int)v;

    json_t *idsp = json_object_get(m, "id_space");
    if (!json_is_string(idsp))
        return meta_err(err, where, "id_space", "missing or not a string (expected \"logical\")");
    if (strcmp(json_string_value(idsp), "logical") != 0)
        return meta_err(err, where, "id_space", "\"%.40s\": expected \"logical\" (map physical "
                        "expert ids to logical ones first: tools/moetrace_convert.py does)",
                        json_string_value(idsp));

    json_t *ml = json_object_get(m, "moe_layers");
    if (!json_is_array(ml) || json_array_size(ml) == 0)
        return meta_err(err, where, "moe_layers", "missing or empty (expected the absolute "
                        "indices of the MoE layers kept, e.g. [3, 4, ...])");
    size_t n_moe = json_array_size(ml);
    if (n_moe > (size_t)I->num_layers)
        return meta_err(err, where, "moe_layers", "%zu entries for %d layers", n_moe,
                        I->num_layers);
    t->moe_layers = malloc(n_moe * sizeof *t->moe_layers);
    if (!t->moe_layers)
        return db_err_set(err, DB_E_NOMEM, "%s: out of memory", where);
    for (size_t i = 0; i < n_moe; i++) {
        json_t *e = json_array_get(ml, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0 ||
            json_integer_value(e) >= I->num_layers)
            return meta_err(err, where, "moe_layers", "entry %zu is not a layer index "
                            "0..%d", i, I->num_layers - 1);
        t->moe_layers[i] = (int)json_integer_value(e);
        if (i > 0 && t->moe_layers[i] <= t->moe_layers[i - 1])
            return meta_err(err, where, "moe_layers", "entry %zu (%d) is not above the one "
                            "before (%d): expected increasing layer indices", i,
                            t->moe_layers[i], t->moe_layers[i - 1]);
    }
    I->n_moe = (int)n_moe;
    I->moe_layers = t->moe_layers;

    json_t *sq = json_object_get(m, "sequences");
    if (!json_is_array(sq) || json_array_size(sq) == 0)
        return meta_err(err, where, "sequences", "missing or empty (expected "
                        "[{\"id\": 0, \"prompt_len\": N, \"text\": ...}, ...])");
    size_t n_seq = json_array_size(sq);
    if (n_seq > 100000000)
        return meta_err(err, where, "sequences", "%zu entries (at most 100000000)", n_seq);
    t->seq = calloc(n_seq, sizeof *t->seq);
    if (!t->seq)
        return db_err_set(err, DB_E_NOMEM, "%s: out of memory for %zu sequences", where, n_seq);
    I->n_seq = (int)n_seq;
    for (size_t i = 0; i < n_seq; i++) {
        json_t *e = json_array_get(sq, i);
        char w[300];
        snprintf(w, sizeof w, "%s: sequences[%zu]", where, i);
        if (!json_is_object(e))
            return db_err_set(err, DB_E_ARG, "%s: not an object", w);
        t->seq[i].row = (int64_t)i;
        if ((s = meta_int(e, w, "id", 0, INT64_MAX, 0, &t->seq[i].id, err)) != DB_OK)
            return s;
        if (I->counts_only) {
            /* tokens per layer × top_k counts must fit an int64 */
            if ((s = meta_int(e, w, "tokens", 0, INT64_MAX / 65536, 0, &t->seq[i].tokens,
                              err)) != DB_OK)
                return s;
            if (json_object_get(e, "prompt_len"))
                return meta_err(err, w, "prompt_len", "a count trace has no tokens, so no "
                                "prompt/generated split (give \"tokens\" only)");
        } else if ((s = meta_int(e, w, "prompt_len", 0, INT32_MAX, 0, &t->seq[i].prompt_len,
                                 err)) != DB_OK) {
            return s;
        }
        json_t *tx = json_object_get(e, "text");
        if (tx && !json_is_null(tx)) {
            if ((s = meta_str(e, w, "text", 0, &t->seq[i].text, err)) != DB_OK)
                return s;
        }
    }
    qsort(t->seq, n_seq, sizeof *t->seq, cmp_seq);
    for (size_t i = 1; i < n_seq; i++)
        if (t->seq[i].id == t->seq[i - 1].id)
            return meta_err(err, where, "sequences", "id %lld appears twice",
                            (long long)t->seq[i].id);
    return DB_OK;
}

static Seq *find_seq(DbTrace *t, int64_t id)
{
    Seq key = { .id = id };
    return bsearch(&key, t->seq, (size_t)t->info.n_seq, sizeof key, cmp_seq);
}

/* ---- the directory form: NPY arrays -------------------------------------- */

static DbStatus npy_check(const DbNpy *a, const char *kinds, int ndim, const uint64_t *shape,
                          const char *expect, DbErr *err)
{
    if (!strchr(kinds, a->kind) || (a->kind == 'f' && a->itemsize > 4))
        return db_err_set(err, DB_E_ARG, "%s: dtype '%s' not accepted here (expected %s)",
                          a->name, a->descr, expect);
    if (a->ndim != ndim)
        return db_err_set(err, DB_E_ARG, "%s: %d dimensions (expected %d: %s)", a->name,
                          a->ndim, ndim, expect);
    for (int i = 0; i < ndim; i++)
        if (shape[i] != UINT64_MAX && a->shape[i] != shape[i])
            return db_err_set(err, DB_E_ARG, "%s: shape[%d] is %llu, expected %llu (%s)",
                              a->name, i, (unsigned long long)a->shape[i],
                              (unsigned long long)shape[i], expect);
    return DB_OK;
}

/* A count trace: counts.npy [len(sequences), len(moe_layers), num_experts],
** and none of the token files (a trace is one kind or the other). */
static DbStatus open_counts(DbTrace *t, DbErr *err)
{
    char p[4200];
    const DbTraceInfo *I = &t->info;
    static const char *const token_files[] = { "index.npy", "experts.npy", "weights.npy",
                                               "logits.npy" };
    struct stat sb;
    for (size_t i = 0; i < sizeof token_files / sizeof token_files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", t->path, token_files[i]);
        if (stat(p, &sb) == 0)
            return db_err_set(err, DB_E_ARG, "%s: present, but meta.json says \"kind\": "
                              "\"counts\" (a count trace holds counts.npy only)", p);
    }
    snprintf(p, sizeof p, "%s/counts.npy", t->path);
    DbStatus s = db_npy_open(&t->counts, p, err);
    if (s != DB_OK)
        return s;
    uint64_t sh[3] = { (uint64_t)I->n_seq, (uint64_t)I->n_moe, (uint64_t)I->num_experts };
    return npy_check(&t->counts, "iu", 3, sh,
                     "integer [len(sequences), len(moe_layers), num_experts]", err);
}

static DbStatus open_dir(DbTrace *t, DbErr *err)
{
    char p[4200];
    DbTraceInfo *I = &t->info;
    snprintf(p, sizeof p, "%s/meta.json", t->path);
    json_error_t je;
    json_t *m = json_load_file(p, JSON_REJECT_DUPLICATES, &je);
    if (!m)
        return db_err_set(err, DB_E_ARG, "%s: line %d column %d: %s", p, je.line, je.column,
                          je.text);
    DbStatus s = parse_meta(t, m, p, err);
    json_decref(m);
    if (s != DB_OK)
        return s;
    if (I->counts_only)
        return open_counts(t, err);

    snprintf(p, sizeof p, "%s/index.npy", t->path);
    if ((s = db_npy_open(&t->index, p, err)) != DB_OK)
        return s;
    uint64_t sh[3] = { UINT64_MAX, 3, 0 };
    if ((s = npy_check(&t->index, "iu", 2, sh, "int64 [N, 3] = (seq, pos, token)", err)) !=
        DB_OK)
        return s;
    uint64_t n = t->index.shape[0];
    if (n > (uint64_t)INT64_MAX / 2)
        return db_err_set(err, DB_E_ARG, "%s: %llu rows", p, (unsigned long long)n);
    I->n_tokens = (int64_t)n;

    snprintf(p, sizeof p, "%s/experts.npy", t->path);
    if ((s = db_npy_open(&t->experts, p, err)) != DB_OK)
        return s;
    uint64_t se[3] = { n, (uint64_t)I->n_moe, UINT64_MAX };
    if ((s = npy_check(&t->experts, "iu", 3, se,
                       "int16 [N rows of index.npy, len(moe_layers), K]", err)) != DB_OK)
        return s;
    if (t->experts.shape[2] < 1 || t->experts.shape[2] > (uint64_t)I->num_experts)
        return db_err_set(err, DB_E_ARG, "%s: shape[2] (experts per route) is %llu, expected "
                          "1..num_experts (%d)", p, (unsigned long long)t->experts.shape[2],
                          I->num_experts);
    I->k_slots = (int)t->experts.shape[2];

    struct stat sb;
    snprintf(p, sizeof p, "%s/weights.npy", t->path);
    if (stat(p, &sb) == 0) {
        if ((s = db_npy_open(&t->weights, p, err)) != DB_OK)
            return s;
        uint64_t sw[3] = { n, (uint64_t)I->n_moe, (uint64_t)I->k_slots };
        if ((s = npy_check(&t->weights, "f", 3, sw, "float32 shaped like experts.npy", err)) !=
            DB_OK)
            return s;
        I->has_weights = 1;
    }
    snprintf(p, sizeof p, "%s/logits.npy", t->path);
    if (stat(p, &sb) == 0) {
        if ((s = db_npy_open(&t->logits, p, err)) != DB_OK)
            return s;
        uint64_t sl[3] = { n, (uint64_t)I->n_moe, (uint64_t)I->num_experts };
        if ((s = npy_check(&t->logits, "f", 3, sl,
                           "float16/float32 [N, len(moe_layers), num_experts]", err)) != DB_OK)
            return s;
        I->has_logits = 1;
    }
    return DB_OK;
}

/* ---- the JSONL form -------------------------------------------------------- */

/* The first line is the meta object; every other line one token:
**   {"seq": S, "pos": P, "token": T, "experts": [[...] x n_moe],
**    "weights": [[...] x n_moe]?, "logits": [[...] x n_moe]?} */
static DbStatus open_jsonl(DbTrace *t, DbErr *err)
{
    FILE *f = fopen(t->path, "r");
    if (!f)
        return db_err_set(err, DB_E_IO, "%s: %s", t->path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    DbStatus s = DB_OK;
    char where[4200];
    snprintf(where, sizeof where, "%s: line 1 (meta)", t->path);
    if (n <= 0) {
        s = db_err_set(err, DB_E_ARG, "%s: empty file (expected the meta object on line 1)",
                       t->path);
    } else {
        json_error_t je;
        json_t *m = json_loadb(line, (size_t)n, JSON_REJECT_DUPLICATES, &je);
        if (!m)
            s = db_err_set(err, DB_E_ARG, "%s: column %d: %s", where, je.column, je.text);
        else
            s = parse_meta(t, m, where, err);
        json_decref(m);
        if (s == DB_OK && t->info.counts_only)
            s = db_err_set(err, DB_E_ARG, "%s: field 'kind': \"counts\" traces exist in the "
                           "directory form only (meta.json + counts.npy)", where);
    }
    /* the shape of the rows comes from the first token line */
    if (s == DB_OK) {
        n = getline(&line, &cap, f);
        json_t *r = n > 0 ? json_loadb(line, (size_t)n, 0, NULL) : NULL;
        json_t *ex = json_object_get(r, "experts");
        json_t *row0 = json_array_get(ex, 0);
        if (n <= 0)
            s = db_err_set(err, DB_E_ARG, "%s: no token lines after the meta line", t->path);
        else if (!json_is_array(row0) || json_array_size(row0) < 1 ||
                 json_array_size(row0) > (size_t)t->info.num_experts)
            s = db_err_set(err, DB_E_ARG, "%s: line 2: field 'experts': expected a list of "
                           "%d lists of 1..%d expert ids", t->path, t->info.n_moe,
                           t->info.num_experts);
        else {
            t->info.k_slots = (int)json_array_size(row0);
            t->info.has_weights = json_object_get(r, "weights") != NULL;
            t->info.has_logits = json_object_get(r, "logits") != NULL;
        }
        json_decref(r);
    }
    free(line);
    fclose(f);
    return s;
}

/* Fill dst[n] from a JSON list of numbers; -1 if the shape is wrong. */
static int json_floats(json_t *a, float *dst, size_t n)
{
    if (!json_is_array(a) || json_array_size(a) != n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_number(v))
            return -1;
        dst[i] = (float)json_number_value(v);
    }
    return 0;
}

static DbStatus jsonl_row(Cursor *c, DbErr *err)
{
    DbTrace *t = c->t;
    const DbTraceInfo *I = &t->info;
    ssize_t n;
    do {
        n = getline(&c->line, &c->line_cap, c->f);
        c->line_no++;
    } while (n == 1 && c->line[0] == '\n');
    if (n <= 0)
        return DB_E_NOTFOUND;
    char where[4300];
    snprintf(where, sizeof where, "%s: line %lld", t->path, (long long)c->line_no);
    json_error_t je;
    json_t *r = json_loadb(c->line, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!r)
        return db_err_set(err, DB_E_ARG, "%s: column %d: %s", where, je.column, je.text);
    DbStatus s = DB_OK;
    int64_t v;
    if ((s = meta_int(r, where, "seq", 0, INT64_MAX, 0, &v, err)) == DB_OK) {
        c->row.seq = v;
        s = meta_int(r, where, "pos", 0, INT32_MAX, 0, &c->row.pos, err);
    }
    if (s == DB_OK)
        s = meta_int(r, where, "token", 0, INT32_MAX, 0, &c->row.token, err);
    json_t *ex = json_object_get(r, "experts");
    if (s == DB_OK && (!json_is_array(ex) || json_array_size(ex) != (size_t)I->n_moe))
        s = meta_err(err, where, "experts", "expected %d lists (one per MoE layer)", I->n_moe);
    for (int j = 0; s == DB_OK && j < I->n_moe; j++) {
        json_t *l = json_array_get(ex, (size_t)j);
        if (!json_is_array(l) || json_array_size(l) != (size_t)I->k_slots) {
            s = meta_err(err, where, "experts", "list %d: expected %d expert ids", j,
                         I->k_slots);
            break;
        }
        for (int q = 0; q < I->k_slots; q++) {
            json_t *e = json_array_get(l, (size_t)q);
            if (!json_is_integer(e) || json_integer_value(e) < -1 ||
                json_integer_value(e) > 65535) {
                s = meta_err(err, where, "experts", "list %d entry %d is not an expert id", j,
                             q);
                break;
            }
            c->row.experts[(size_t)j * (size_t)I->k_slots + (size_t)q] =
                (int32_t)json_integer_value(e);
        }
    }
    const char *fields[2] = { "weights", "logits" };
    float *dst[2] = { c->row.weights, c->row.logits };
    int width[2] = { I->k_slots, I->num_experts };
    for (int f = 0; f < 2 && s == DB_OK; f++) {
        json_t *w = json_object_get(r, fields[f]);
        if (!dst[f]) {
            if (w)
                s = meta_err(err, where, fields[f], "present, but not on line 2: give it on "
                             "every line or on none");
            continue;
        }
        if (!json_is_array(w) || json_array_size(w) != (size_t)I->n_moe) {
            s = meta_err(err, where, fields[f], "expected %d lists (one per MoE layer)",
                         I->n_moe);
            break;
        }
        for (int j = 0; j < I->n_moe && s == DB_OK; j++)
            if (json_floats(json_array_get(w, (size_t)j), dst[f] + (size_t)j * (size_t)width[f],
                            (size_t)width[f]) != 0)
                s = meta_err(err, where, fields[f], "list %d: expected %d numbers", j,
                             width[f]);
    }
    json_decref(r);
    return s;
}

/* ---- cursor ----------------------------------------------------------------- */

static void cursor_done(Cursor *c)
{
    if (c->f)
        fclose(c->f);
    free(c->line);
    free(c->row.experts);
    free(c->row.weights);
    free(c->row.logits);
    memset(c, 0, sizeof *c);
}

static DbStatus cursor_init(Cursor *c, DbTrace *t, DbErr *err)
{
    const DbTraceInfo *I = &t->info;
    memset(c, 0, sizeof *c);
    c->t = t;
    size_t cells = (size_t)I->n_moe * (size_t)I->k_slots;
    c->row.experts = malloc(cells * sizeof *c->row.experts);
    if (I->has_weights)
        c->row.weights = malloc(cells * sizeof *c->row.weights);
    if (I->has_logits)
        c->row.logits = malloc((size_t)I->n_moe * (size_t)I->num_experts * sizeof(float));
    if (!c->row.experts || (I->has_weights && !c->row.weights) ||
        (I->has_logits && !c->row.logits)) {
        cursor_done(c);
        return db_err_set(err, DB_E_NOMEM, "%s: out of memory for one row", t->path);
    }
    if (t->jsonl) {
        c->f = fopen(t->path, "r");
        if (!c->f) {
            cursor_done(c);
            return db_err_set(err, DB_E_IO, "%s: %s", t->path, strerror(errno));
        }
        ssize_t n = getline(&c->line, &c->line_cap, c->f);     /* the meta line */
        c->line_no = 1;
        if (n <= 0) {
            cursor_done(c);
            return db_err_set(err, DB_E_IO, "%s: the meta line vanished", t->path);
        }
    }
    return DB_OK;
}

/* The next row: DB_OK, DB_E_NOTFOUND at the end, or an error. */
static DbStatus cursor_next(Cursor *c, DbErr *err)
{
    DbTrace *t = c->t;
    const DbTraceInfo *I = &t->info;
    if (t->jsonl)
        return jsonl_row(c, err);
    if (c->i >= I->n_tokens)
        return DB_E_NOTFOUND;
    uint64_t i = (uint64_t)c->i++;
    c->row.seq = db_npy_int(&t->index, 3 * i);
    c->row.pos = db_npy_int(&t->index, 3 * i + 1);
    c->row.token = db_npy_int(&t->index, 3 * i + 2);
    size_t cells = (size_t)I->n_moe * (size_t)I->k_slots;
    uint64_t base = i * cells;
    const DbNpy *e = &t->experts;
    if (e->kind == 'i' && e->itemsize == 2 && !e->swap) {
        const uint8_t *p = e->data + base * 2;
        for (size_t j = 0; j < cells; j++) {
            int16_t v;
            memcpy(&v, p + 2 * j, 2);
            c->row.experts[j] = v;
        }
    } else {
        for (size_t j = 0; j < cells; j++) {
            int64_t v = db_npy_int(e, base + j);
            c->row.experts[j] = v < -1 || v > 65535 ? INT32_MIN : (int32_t)v;
        }
    }
    if (c->row.weights)
        for (size_t j = 0; j < cells; j++)
            c->row.weights[j] = (float)db_npy_float(&t->weights, base + j);
    if (c->row.logits) {
        size_t nl = (size_t)I->n_moe * (size_t)I->num_experts;
        for (size_t j = 0; j < nl; j++)
            c->row.logits[j] = (float)db_npy_float(&t->logits, i * nl + j);
    }
    return DB_OK;
}

/* Where row i sits, for messages. */
static void row_where(const Cursor *c, char *buf, size_t cap)
{
    if (c->t->jsonl)
        snprintf(buf, cap, "%s: line %lld", c->t->path, (long long)c->line_no);
    else
        snprintf(buf, cap, "%s/index.npy row %lld", c->t->path, (long long)(c->i - 1));
}

/* ---- the checking pass -------------------------------------------------------- */

static DbStatus check_rows(DbTrace *t, DbErr *err)
{
    const DbTraceInfo *I = &t->info;
    Cursor c;
    DbStatus s = cursor_init(&c, t, err);
    if (s != DB_OK)
        return s;
    Seq *cur = NULL;
    int64_t last_pos = -1, n = 0;
    char where[4400];
    const char *efile = t->jsonl ? "field 'experts'" : "experts.npy";
    while ((s = cursor_next(&c, err)) == DB_OK) {
        Row *r = &c.row;
        n++;
        if (r->pos < 0 || r->pos > INT32_MAX || r->token < 0 || r->token > INT32_MAX ||
            r->seq < 0) {
            row_where(&c, where, sizeof where);
            s = db_err_set(err, DB_E_ARG, "%s: (seq %lld, pos %lld, token %lld): expected "
                           "seq >= 0 and pos, token in 0..2147483647", where,
                           (long long)r->seq, (long long)r->pos, (long long)r->token);
            break;
        }
        if (!cur || r->seq != cur->id) {
            Seq *q = find_seq(t, r->seq);
            row_where(&c, where, sizeof where);
            if (!q) {
                s = db_err_set(err, DB_E_ARG, "%s: seq %lld is not in meta sequences[].id",
                               where, (long long)r->seq);
                break;
            }
            if (q->n_rows) {
                s = db_err_set(err, DB_E_ARG, "%s: seq %lld appears again after other "
                               "sequences (rows of one sequence must be consecutive)", where,
                               (long long)r->seq);
                break;
            }
            cur = q;
            last_pos = -1;
        }
        if (r->pos <= last_pos) {
            row_where(&c, where, sizeof where);
            s = db_err_set(err, DB_E_ARG, "%s: seq %lld pos %lld after pos %lld (positions "
                           "must increase within a sequence)", where, (long long)r->seq,
                           (long long)r->pos, (long long)last_pos);
            break;
        }
        last_pos = r->pos;
        cur->n_rows++;
        for (int j = 0; j < I->n_moe && s == DB_OK; j++) {
            const int32_t *e = r->experts + (size_t)j * (size_t)I->k_slots;
            for (int q = 0; q < I->k_slots; q++) {
                if (e[q] == -1)
                    continue;
                int dup = 0;
                for (int p = 0; p < q; p++)
                    dup |= e[p] == e[q];
                if (e[q] < 0 || e[q] >= I->num_experts || dup) {
                    row_where(&c, where, sizeof where);
                    if (dup)
                        s = db_err_set(err, DB_E_ARG, "%s: %s [layer %d (moe_layers[%d]), "
                                       "slot %d]: expert id %d repeated within one route",
                                       where, efile, t->moe_layers[j], j, q, e[q]);
                    else
                        s = db_err_set(err, DB_E_ARG, "%s: %s [layer %d (moe_layers[%d]), "
                                       "slot %d]: expert id %d out of range (expected -1 or "
                                       "0..%d, num_experts = %d)", where, efile,
                                       t->moe_layers[j], j, q, e[q], I->num_experts - 1,
                                       I->num_experts);
                    break;
                }
                if (r->weights && !isfinite(r->weights[(size_t)j * (size_t)I->k_slots + (size_t)q])) {
                    row_where(&c, where, sizeof where);
                    s = db_err_set(err, DB_E_ARG, "%s: weight of layer %d slot %d is not a "
                                   "finite number", where, t->moe_layers[j], q);
                    break;
                }
            }
        }
        if (s != DB_OK)
            break;
    }
    if (s == DB_E_NOTFOUND)
        s = DB_OK;
    cursor_done(&c);
    if (s != DB_OK)
        return s;
    if (t->jsonl)
        t->info.n_tokens = n;
    for (int i = 0; i < I->n_seq; i++)
        if (!t->seq[i].n_rows)
            return db_err_set(err, DB_E_ARG, "%s: sequence id %lld (meta sequences) has no "
                              "token rows", t->path, (long long)t->seq[i].id);
    return DB_OK;
}

/* Every count >= 0 and each layer's sum = tokens × top_k: a sequence's
** tokens pass through every MoE layer and each picks top_k experts there
** (SGLang counts -1 slots of padding tokens nowhere).  Counts that break
** this were counted per rank more than once, or with another top-k. */
static DbStatus check_counts(DbTrace *t, DbErr *err)
{
    const DbTraceInfo *I = &t->info;
    const DbNpy *a = &t->counts;
    int64_t total = 0;
    for (int i = 0; i < I->n_seq; i++) {
        const Seq *q = &t->seq[i];
        for (int j = 0; j < I->n_moe; j++) {
            uint64_t base = ((uint64_t)q->row * (uint64_t)I->n_moe + (uint64_t)j) *
                            (uint64_t)I->num_experts;
            int64_t sum = 0;
            for (int e = 0; e < I->num_experts; e++) {
                int64_t c = db_npy_int(a, base + (uint64_t)e);
                if (c < 0 || c > INT64_MAX / 65536)
                    return db_err_set(err, DB_E_ARG, "%s [%lld, %d, %d] (sequence id %lld, "
                                      "layer %d): count %lld (expected 0..%lld)", a->name,
                                      (long long)q->row, j, e, (long long)q->id,
                                      t->moe_layers[j], (long long)c,
                                      (long long)(INT64_MAX / 65536));
                sum += c;
            }
            if (sum != q->tokens * I->top_k)
                return db_err_set(err, DB_E_ARG, "%s [%lld, %d] (sequence id %lld, layer %d): "
                                  "the counts sum to %lld, expected tokens (%lld) x top_k (%d) = "
                                  "%lld: counted more than once per token (ranks?) or with "
                                  "another top-k", a->name, (long long)q->row, j,
                                  (long long)q->id, t->moe_layers[j], (long long)sum,
                                  (long long)q->tokens, I->top_k,
                                  (long long)(q->tokens * I->top_k));
        }
        total += q->tokens;
    }
    t->info.n_tokens = total;
    return DB_OK;
}

/* ---- open / close -------------------------------------------------------------- */

DbTrace *db_trace_open(const char *path, DbErr *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        db_err_set(err, DB_E_IO, "trace '%s': %s", path, strerror(errno));
        return NULL;
    }
    DbTrace *t = calloc(1, sizeof *t);
    if (!t || !(t->path = strdup(path))) {
        free(t);
        db_err_set(err, DB_E_NOMEM, "trace '%s': out of memory", path);
        return NULL;
    }
    t->jsonl = !S_ISDIR(sb.st_mode);
    DbStatus s = t->jsonl ? open_jsonl(t, err) : open_dir(t, err);
    if (s == DB_OK)
        s = t->info.counts_only ? check_counts(t, err) : check_rows(t, err);
    if (s != DB_OK) {
        db_trace_close(t);
        return NULL;
    }
    t->info.model = t->model;
    t->info.arch = t->arch;
    t->info.source = t->source;
    return t;
}

void db_trace_close(DbTrace *t)
{
    if (!t)
        return;
    db_npy_close(&t->index);
    db_npy_close(&t->experts);
    db_npy_close(&t->weights);
    db_npy_close(&t->logits);
    db_npy_close(&t->counts);
    for (int i = 0; t->seq && i < t->info.n_seq; i++)
        free(t->seq[i].text);
    free(t->seq);
    free(t->moe_layers);
    free(t->model);
    free(t->arch);
    free(t->source);
    free(t->path);
    free(t);
}

const DbTraceInfo *db_trace_info(const DbTrace *t)
{
    return &t->info;
}

/* ---- the writing pass ------------------------------------------------------------ */

static uint64_t fnv_str(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The model row of a trace: no file, identified by name, arch and shape. */
static DbStatus register_model(Db *db, DbTrace *t, int64_t *id, int *created, DbErr *err)
{
    const DbTraceInfo *I = &t->info;
    char shape[96];
    int n = snprintf(shape, sizeof shape, "%d/%d/%d", I->num_layers, I->num_experts, I->top_k);
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv_str(h, "moetrace", 9);
    h = fnv_str(h, t->model, strlen(t->model) + 1);
    h = fnv_str(h, t->arch, strlen(t->arch) + 1);
    h = fnv_str(h, shape, (size_t)n);
    int64_t before = 0;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->h, "SELECT coalesce(max(id), 0) FROM models", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        before = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return db_err_sqlite(err, db->h, rc, "import: reading the models");
    DbModel m = { 0 };
    m.path = "";
    m.name = t->model;
    m.arch = t->arch;
    m.file_size = 0;
    m.hash = h;
    m.n_layer = I->num_layers;
    m.n_expert = I->num_experts;
    m.k = I->top_k;
    DbStatus s = db_model_register(db, &m, err);
    if (s != DB_OK)
        return s;
    *id = m.id;
    *created = m.id > before;
    return DB_OK;
}

static DbStatus discard(Db *db, int64_t first, int64_t last, const char *source, DbErr *err);

/* runs.source of the trace's runs: meta.json's source ("moetrace" when it
** is empty), a colon, and the trace's absolute path (as given if it can't
** be resolved).  NULL when out of memory. */
static char *trace_source(const DbTrace *t)
{
    char *abs = realpath(t->path, NULL);
    const char *path = abs ? abs : t->path;
    const char *eng = t->source && *t->source ? t->source : "moetrace";
    size_t n = strlen(eng) + 1 + strlen(path) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s:%s", eng, path);
    free(abs);
    return s;
}

typedef struct {
    Db *db;
    DbTrace *t;
    const DbImportOpts *o;
    int64_t model;
    DbLog *lg;              /* one bulk log for all the runs */
    int in_run;             /* a run is open in lg */
    int64_t first, last;    /* runs written */
    int32_t *ex;            /* k_slots, one route */
    float *w;
    char *source;           /* runs.source: "<meta source>:<absolute path>" */
} Writer;

static DbStatus begin_run(Writer *w, const Seq *q, DbErr *err)
{
    const DbTraceInfo *I = &w->t->info;
    DbRunInfo ri = { 0 };
    ri.model = w->model;
    ri.tag = w->o->tag;
    ri.prompt = q->text ? q->text : "";
    ri.prompt_fmt = ri.prompt;
    ri.flags = DB_RUN_IMPORTED | (I->has_weights ? 0 : DB_RUN_NO_WEIGHTS) |
               (I->has_logits ? DB_RUN_LOGITS : 0) | (I->counts_only ? DB_RUN_COUNTS_ONLY : 0);
    ri.n_counted = I->counts_only ? q->tokens : 0;
    ri.greedy = 0;
    ri.source = w->source;
    DbStatus s = db_log_bulk_run(w->lg, &ri);
    if (s != DB_OK)
        return db_err_set(err, s, "import: starting the run of seq %lld: %s", (long long)q->id,
                          db_status_str(s));
    w->in_run = 1;
    return DB_OK;
}

static DbStatus end_run(Writer *w, DbErr *err)
{
    if (!w->in_run)
        return DB_OK;
    w->in_run = 0;
    DbStatus s = db_log_bulk_end(w->lg, DB_RUN_COMPLETE, NULL);
    if (s != DB_OK)
        return db_err_set(err, s, "import: ending a run: %s", db_status_str(s));
    return DB_OK;
}

static DbStatus write_row(Writer *w, const Row *r, const Seq *q, DbErr *err)
{
    const DbTraceInfo *I = &w->t->info;
    DbToken tk = { 0 };
    tk.pos = (int32_t)r->pos;
    tk.token = (int32_t)r->token;
    tk.is_prompt = r->pos < q->prompt_len;
    tk.logprob = NAN;
    size_t len = 0;
    tk.piece = w->o->piece ? w->o->piece(w->o->piece_user, tk.token, &len) : NULL;
    tk.piece_len = tk.piece ? (int)len : 0;
    DbStatus s = db_log_token(w->lg, &tk);
    for (int j = 0; j < I->n_moe && s == DB_OK; j++) {
        size_t base = (size_t)j * (size_t)I->k_slots;
        int k = 0;
        for (int q2 = 0; q2 < I->k_slots; q2++) {
            int32_t e = r->experts[base + (size_t)q2];
            if (e < 0)
                continue;
            w->ex[k] = e;
            w->w[k] = r->weights ? r->weights[base + (size_t)q2] : 0;
            k++;
        }
        if (!k)
            continue;
        if (!r->weights)
            for (int i = 0; i < k; i++)
                w->w[i] = 1.0f / (float)k;
        DbRoute rt = { 0 };
        rt.pos = tk.pos;
        rt.layer = w->t->moe_layers[j];
        rt.is_prompt = tk.is_prompt;
        rt.k = k;
        rt.experts = w->ex;
        rt.weights = w->w;
        rt.logits = r->logits ? r->logits + (size_t)j * (size_t)I->num_experts : NULL;
        rt.shared_gate = NAN;
        s = db_log_route(w->lg, &rt);
    }
    if (s != DB_OK)
        return db_err_set(err, s, "import: writing seq %lld pos %lld: %s", (long long)r->seq,
                          (long long)r->pos, db_status_str(s));
    return DB_OK;
}

/* The rows of a token trace, one run per sequence; *done_out = rows written. */
static DbStatus write_rows(Writer *w, int64_t *done_out, DbErr *err)
{
    DbTrace *t = w->t;
    const DbTraceInfo *I = &t->info;
    const DbImportOpts *o = w->o;
    Cursor c;
    DbStatus s = cursor_init(&c, t, err);
    if (s != DB_OK)
        return s;
    const Seq *cur = NULL;
    int64_t done = 0;
    while (s == DB_OK) {
        s = cursor_next(&c, err);
        if (s == DB_E_NOTFOUND) {
            s = end_run(w, err);
            break;
        }
        if (s != DB_OK)
            break;
        if (!cur || c.row.seq != cur->id) {
            if ((s = end_run(w, err)) != DB_OK)
                break;
            cur = find_seq(t, c.row.seq);
            if (!cur) {             /* the file changed since it was checked */
                s = db_err_set(err, DB_E_ARG, "import: seq %lld vanished from the trace",
                               (long long)c.row.seq);
                break;
            }
            if ((s = begin_run(w, cur, err)) != DB_OK)
                break;
        }
        if ((s = write_row(w, &c.row, cur, err)) != DB_OK)
            break;
        done++;
        if (o->progress && (done & 4095) == 0 && o->progress(o->progress_user, done,
                                                               I->n_tokens)) {
            s = db_err_set(err, DB_E_ARG, "import cancelled after %lld of %lld tokens",
                           (long long)done, (long long)I->n_tokens);
            break;
        }
    }
    cursor_done(&c);
    *done_out = done;
    return s;
}

/* A count trace: one count-only run per sequence, in meta.json order; its
** load rows are the counts, weight mass count/k (no gate weights); *done_out
** = tokens counted. */
static DbStatus write_counts(Writer *w, int64_t *done_out, DbErr *err)
{
    DbTrace *t = w->t;
    const DbTraceInfo *I = &t->info;
    const DbImportOpts *o = w->o;
    int *order = malloc((size_t)I->n_seq * sizeof *order);
    int64_t *n = malloc((size_t)I->num_experts * sizeof *n);
    double *wm = malloc((size_t)I->num_experts * sizeof *wm);
    DbStatus s = DB_OK;
    if (!order || !n || !wm)
        s = db_err_set(err, DB_E_NOMEM, "import: out of memory");
    for (int i = 0; s == DB_OK && i < I->n_seq; i++)
        order[t->seq[i].row] = i;
    int64_t done = 0;
    for (int r = 0; s == DB_OK && r < I->n_seq; r++) {
        const Seq *q = &t->seq[order[r]];
        if ((s = begin_run(w, q, err)) != DB_OK)
            break;
        for (int j = 0; j < I->n_moe && s == DB_OK; j++) {
            uint64_t base = ((uint64_t)q->row * (uint64_t)I->n_moe + (uint64_t)j) *
                            (uint64_t)I->num_experts;
            for (int e = 0; e < I->num_experts; e++) {
                n[e] = db_npy_int(&t->counts, base + (uint64_t)e);
                wm[e] = (double)n[e] / (double)I->top_k;
            }
            s = db_log_bulk_load(w->lg, t->moe_layers[j], n, wm);
            if (s != DB_OK)
                s = db_err_set(err, s, "import: counts of seq %lld layer %d: %s",
                               (long long)q->id, t->moe_layers[j], db_status_str(s));
        }
        if (s == DB_OK)
            s = end_run(w, err);
        done += q->tokens;
        if (s == DB_OK && o->progress && o->progress(o->progress_user, done, I->n_tokens))
            s = db_err_set(err, DB_E_ARG, "import cancelled after %d of %d sequences", r + 1,
                           I->n_seq);
    }
    free(order);
    free(n);
    free(wm);
    *done_out = done;
    return s;
}

DbStatus db_import(Db *db, DbTrace *t, const DbImportOpts *o, int64_t *first, int64_t *last,
                   DbErr *err)
{
    const DbTraceInfo *I = &t->info;
    if (db->flags & DB_OPEN_READONLY)
        return db_err_set(err, DB_E_READONLY, "import: database '%s' was opened read-only",
                          db->path);
    Writer w = { 0 };
    w.db = db;
    w.t = t;
    w.o = o;
    w.ex = malloc((size_t)(I->k_slots > 0 ? I->k_slots : 1) * sizeof *w.ex);
    w.w = malloc((size_t)(I->k_slots > 0 ? I->k_slots : 1) * sizeof *w.w);
    w.source = trace_source(t);
    if (!w.ex || !w.w || !w.source) {
        free(w.ex);
        free(w.w);
        free(w.source);
        return db_err_set(err, DB_E_NOMEM, "import: out of memory");
    }
    int created = 0;
    DbStatus s = register_model(db, t, &w.model, &created, err);
    if (s == DB_OK) {
        /* about 10 MB a batch: 131072 routes of ids and weights, fewer
        ** when each route carries num_experts logits */
        int every = o->flush_every;
        if (every <= 0) {
            size_t per = 80 + (I->has_logits ? 4 * (size_t)I->num_experts : 0);
            size_t n = ((size_t)10 << 20) / per;
            every = n > 131072 ? 131072 : n < 1024 ? 1024 : (int)n;
        }
        w.lg = db_log_bulk_begin(db, w.model, every, err);
        if (!w.lg)
            s = err ? err->status : DB_E_SQL;
    }
    int64_t done = 0;
    if (s == DB_OK)
        s = I->counts_only ? write_counts(&w, &done, err) : write_rows(&w, &done, err);
    if (w.lg) {
        /* write what is buffered (an open run ends as failed); a batch
        ** that failed tells why here, in full */
        DbErr e3 = { 0 };
        DbStatus s3 = db_log_bulk_finish(w.lg, &w.first, &w.last, &e3);
        if (s3 != DB_OK && s == DB_OK) {
            s = s3;
            if (err)
                *err = e3;
        } else if (s3 != DB_OK && s != DB_E_ARG && err) {
            size_t n = strlen(err->msg);
            snprintf(err->msg + n, sizeof err->msg - n, " (%s)", e3.msg);
        }
    }
    if (s == DB_OK && o->progress)
        o->progress(o->progress_user, done, I->n_tokens);
    if (s != DB_OK) {
        if (w.first) {
            DbErr e2 = { 0 };
            /* only this import's runs: another import may have taken ids
            ** between first and last meanwhile */
            if (discard(db, w.first, w.last, w.source, &e2) != DB_OK && err) {
                size_t n = strlen(err->msg);
                snprintf(err->msg + n, sizeof err->msg - n, "; removing the partial runs "
                         "%lld..%lld failed too: %s", (long long)w.first, (long long)w.last,
                         e2.msg);
            }
        }
        if (created)
            sqlite3_exec(db->h, "DELETE FROM models WHERE id NOT IN (SELECT model FROM runs)"
                         " AND file_size = 0 AND path = ''", NULL, NULL, NULL);
    } else {
        if (first)
            *first = w.first;
        if (last)
            *last = w.last;
    }
    free(w.ex);
    free(w.w);
    free(w.source);
    return s;
}

/* Delete the imported runs first..last (of source, if not NULL). */
static DbStatus discard(Db *db, int64_t first, int64_t last, const char *source, DbErr *err)
{
    static const char *const del[] = {
        "DELETE FROM routes WHERE run IN (SELECT id FROM runs WHERE id BETWEEN ?1 AND ?2"
        " AND flags & ?3 AND (?4 IS NULL OR source = ?4))",
        "DELETE FROM tokens WHERE run IN (SELECT id FROM runs WHERE id BETWEEN ?1 AND ?2"
        " AND flags & ?3 AND (?4 IS NULL OR source = ?4))",
        "DELETE FROM load WHERE run IN (SELECT id FROM runs WHERE id BETWEEN ?1 AND ?2"
        " AND flags & ?3 AND (?4 IS NULL OR source = ?4))",
        "DELETE FROM runs WHERE id BETWEEN ?1 AND ?2 AND flags & ?3"
        " AND (?4 IS NULL OR source = ?4)",
    };
    sqlite3 *h = db->h;
    int rc = sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    for (size_t i = 0; rc == SQLITE_OK && i < sizeof del / sizeof del[0]; i++) {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(h, del[i], -1, &st, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, first);
            sqlite3_bind_int64(st, 2, last);
            sqlite3_bind_int(st, 3, DB_RUN_IMPORTED);
            if (source)
                sqlite3_bind_text(st, 4, source, -1, SQLITE_STATIC);
            rc = sqlite3_step(st);
            if (rc == SQLITE_DONE)
                rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        DbStatus s = db_err_sqlite(err, h, rc, "removing imported runs");
        if (!sqlite3_get_autocommit(h))
            sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
        return s;
    }
    return DB_OK;
}

DbStatus db_import_discard(Db *db, int64_t first, int64_t last, DbErr *err)
{
    return discard(db, first, last, NULL, err);
}
