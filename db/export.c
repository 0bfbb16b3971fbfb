/*
** db/export.c — streaming export of runs, tokens, routes and load as JSONL
** or CSV.
**
** Rows go straight from a SQLite statement to the FILE: an outer statement
** walks the selected runs in id order, an inner one walks that run's rows in
** primary-key order, so there is no sort and memory stays constant.
**
** JSONL: one object per line, field names stable (db/README.md).  CSV: a
** header line and the same columns; lists are space-separated values (a
** token's alternatives as id:logprob pairs); strings are always quoted, with
** the JSON escapes inside (so a CSV cell never holds a raw newline or control
** character) and a quote doubled as CSV wants.  Invalid UTF-8 bytes become
** U+FFFD (the token id keeps the exact bytes recoverable).  Floats print as
** %.9g, enough to round-trip a float32; NaN/inf print as null (empty in CSV).
*/
#include "db/db_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    FILE *f;
    int csv;
} Out;

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static int utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    int len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if ((size_t)len > n)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (int i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

static void put_str(Out *o, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    FILE *f = o->f;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c >= 0x80) {
            int len = utf8_seq(s + i, n - i);
            if (len) {
                fwrite(s + i, 1, (size_t)len, f);
                i += (size_t)len;
            } else {
                fputs("\xEF\xBF\xBD", f);
                i++;
            }
            continue;
        }
        switch (c) {
        case '"': fputs(o->csv ? "\"\"" : "\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (c < 0x20 || c == 0x7f)
                fprintf(f, "\\u%04x", c);
            else
                fputc((int)c, f);
        }
        i++;
    }
    fputc('"', f);
}

static void put_cstr(Out *o, const char *s)
{
    if (!s) {
        if (!o->csv)
            fputs("null", o->f);
        return;
    }
    put_str(o, s, strlen(s));
}

static void put_num(Out *o, double v)
{
    if (!isfinite(v)) {
        if (!o->csv)
            fputs("null", o->f);
        return;
    }
    fprintf(o->f, "%.9g", v);
}

static void put_int(Out *o, long long v)
{
    fprintf(o->f, "%lld", v);
}

static void put_bool(Out *o, int v)
{
    fputs(v ? "true" : "false", o->f);
}

/* Start field `name`: the separator, and in JSONL the key. */
static void field(Out *o, int first, const char *name)
{
    if (o->csv) {
        if (!first)
            fputc(',', o->f);
        return;
    }
    fprintf(o->f, "%s\"%s\":", first ? "{" : ",", name);
}

static void end_row(Out *o)
{
    fputs(o->csv ? "\n" : "}\n", o->f);
}

/* A list: JSON array or space-separated CSV cell. */
static void list_open(Out *o)
{
    if (!o->csv)
        fputc('[', o->f);
}
static void list_sep(Out *o, int i)
{
    if (i)
        fputc(o->csv ? ' ' : ',', o->f);
}
static void list_close(Out *o)
{
    if (!o->csv)
        fputc(']', o->f);
}

static void put_f32_list(Out *o, const float *v, int n)
{
    list_open(o);
    for (int i = 0; i < n; i++) {
        list_sep(o, i);
        if (!isfinite(v[i]) && o->csv)
            fputs("nan", o->f);
        else
            put_num(o, v[i]);
    }
    list_close(o);
}

/* ---- per kind ---------------------------------------------------------- */

typedef struct {
    Out *o;
    DbStatus s;
    DbErr *err;
    Db *db;
    sqlite3_stmt *json_ok;  /* SELECT json_valid(?) for runs */
} Ctx;

static int ex_route(void *user, int64_t run, const DbRoute *r)
{
    Out *o = ((Ctx *)user)->o;
    field(o, 1, "run");
    put_int(o, run);
    field(o, 0, "pos");
    put_int(o, r->pos);
    field(o, 0, "layer");
    put_int(o, r->layer);
    field(o, 0, "experts");
    list_open(o);
    for (int i = 0; i < r->k; i++) {
        list_sep(o, i);
        put_int(o, r->experts[i]);
    }
    list_close(o);
    field(o, 0, "weights");
    put_f32_list(o, r->weights, r->k);
    if (o->csv || r->scores) {
        field(o, 0, "scores");
        if (r->scores)
            put_f32_list(o, r->scores, r->k);
    }
    if (o->csv || r->logits) {
        field(o, 0, "logits");
        if (r->logits)
            put_f32_list(o, r->logits, r->n_logits);
    }
    if (o->csv || !isnan(r->shared_gate)) {
        field(o, 0, "shared_gate");
        put_num(o, r->shared_gate);
    }
    end_row(o);
    return ferror(o->f) != 0;
}

static int ex_token(void *user, int64_t run, const DbToken *t)
{
    Out *o = ((Ctx *)user)->o;
    field(o, 1, "run");
    put_int(o, run);
    field(o, 0, "pos");
    put_int(o, t->pos);
    field(o, 0, "token");
    put_int(o, t->token);
    field(o, 0, "text");
    put_str(o, t->piece, (size_t)t->piece_len);
    field(o, 0, "prompt");
    put_bool(o, t->is_prompt);
    field(o, 0, "logprob");
    put_num(o, t->logprob);
    field(o, 0, "top");
    list_open(o);
    for (int i = 0; i < t->n_top; i++) {
        list_sep(o, i);
        if (o->csv) {
            fprintf(o->f, "%d:", t->top_ids[i]);
            put_num(o, t->top_lp[i]);
        } else {
            fprintf(o->f, "[%d,", t->top_ids[i]);
            put_num(o, t->top_lp[i]);
            fputc(']', o->f);
        }
    }
    list_close(o);
    end_row(o);
    return ferror(o->f) != 0;
}

static int ex_run(void *user, const DbRun *r)
{
    Ctx *c = user;
    Out *o = c->o;
    field(o, 1, "run");
    put_int(o, r->id);
    field(o, 0, "model");
    put_int(o, r->model);
    field(o, 0, "model_name");
    put_cstr(o, r->model_name);
    field(o, 0, "model_path");
    put_cstr(o, r->model_path);
    field(o, 0, "arch");
    put_cstr(o, r->arch);
    field(o, 0, "parent");
    if (r->parent > 0)
        put_int(o, r->parent);
    else if (!o->csv)
        fputs("null", o->f);
    field(o, 0, "tag");
    put_cstr(o, r->tag);
    field(o, 0, "status");
    put_cstr(o, db_run_status_str(r->status));
    field(o, 0, "created_at");
    put_cstr(o, r->created_at);
    field(o, 0, "finished_at");
    put_cstr(o, *r->finished_at ? r->finished_at : NULL);
    field(o, 0, "prompt");
    put_cstr(o, r->prompt);
    field(o, 0, "prompt_fmt");
    put_cstr(o, r->prompt_fmt);
    field(o, 0, "seed");
    fprintf(o->f, "%llu", (unsigned long long)r->seed);
    field(o, 0, "temp");
    put_num(o, r->temp);
    field(o, 0, "top_p");
    put_num(o, r->top_p);
    field(o, 0, "top_k");
    put_int(o, r->top_k);
    field(o, 0, "greedy");
    put_bool(o, r->greedy);
    field(o, 0, "n_predict");
    put_int(o, r->n_predict);
    field(o, 0, "n_ctx");
    put_int(o, r->n_ctx);
    field(o, 0, "interventions");
    put_cstr(o, r->iv_text);
    field(o, 0, "interventions_json");
    int valid = 0;
    sqlite3_bind_text(c->json_ok, 1, r->iv_json, -1, SQLITE_STATIC);
    if (sqlite3_step(c->json_ok) == SQLITE_ROW)
        valid = sqlite3_column_int(c->json_ok, 0);
    sqlite3_reset(c->json_ok);
    if (o->csv || !valid)
        put_cstr(o, valid ? r->iv_json : NULL);
    else
        fputs(r->iv_json, o->f);
    field(o, 0, "n_prompt");
    put_int(o, r->n_prompt);
    field(o, 0, "n_gen");
    put_int(o, r->n_gen);
    field(o, 0, "t_prompt_ms");
    put_num(o, r->t_prompt_ms);
    field(o, 0, "t_gen_ms");
    put_num(o, r->t_gen_ms);
    field(o, 0, "error");
    put_cstr(o, r->error);
    field(o, 0, "source");
    put_cstr(o, r->source);
    field(o, 0, "imported");
    put_bool(o, (r->flags & DB_RUN_IMPORTED) != 0);
    field(o, 0, "no_weights");
    put_bool(o, (r->flags & DB_RUN_NO_WEIGHTS) != 0);
    field(o, 0, "counts_only");
    put_bool(o, (r->flags & DB_RUN_COUNTS_ONLY) != 0);
    field(o, 0, "n_counted");
    if (r->flags & DB_RUN_COUNTS_ONLY)
        fprintf(o->f, "%lld", (long long)r->n_counted);
    else
        put_cstr(o, NULL);
    end_row(o);
    return ferror(o->f) != 0;
}

static DbStatus ex_load(Ctx *c, int64_t run)
{
    Out *o = c->o;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db->h,
        "SELECT layer, expert, n, w, n_prompt, w_prompt FROM load WHERE run = ?1"
        " ORDER BY layer, expert", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 1, run);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        field(o, 1, "run");
        put_int(o, run);
        field(o, 0, "layer");
        put_int(o, sqlite3_column_int(st, 0));
        field(o, 0, "expert");
        put_int(o, sqlite3_column_int(st, 1));
        field(o, 0, "count");
        put_int(o, sqlite3_column_int64(st, 2));
        field(o, 0, "weight");
        put_num(o, sqlite3_column_double(st, 3));
        field(o, 0, "prompt_count");
        put_int(o, sqlite3_column_int64(st, 4));
        field(o, 0, "prompt_weight");
        put_num(o, sqlite3_column_double(st, 5));
        end_row(o);
        if (ferror(o->f))
            break;
    }
    DbStatus s = DB_OK;
    if (rc != SQLITE_OK && rc != SQLITE_DONE)
        s = db_err_sqlite(c->err, c->db->h, rc, "exporting load");
    sqlite3_finalize(st);
    return s;
}

static const char *const csv_header[] = {
    [DB_WHAT_ROUTES] = "run,pos,layer,experts,weights,scores,logits,shared_gate",
    [DB_WHAT_TOKENS] = "run,pos,token,text,prompt,logprob,top",
    [DB_WHAT_LOAD] = "run,layer,expert,count,weight,prompt_count,prompt_weight",
    [DB_WHAT_RUNS] = "run,model,model_name,model_path,arch,parent,tag,status,created_at,"
                     "finished_at,prompt,prompt_fmt,seed,temp,top_p,top_k,greedy,"
                     "n_predict,n_ctx,interventions,interventions_json,n_prompt,n_gen,"
                     "t_prompt_ms,t_gen_ms,error,source,imported,no_weights,counts_only,"
                     "n_counted",
};

DbStatus db_export(Db *db, const DbSel *sel, DbWhat what, DbFormat fmt, FILE *out,
                   DbErr *err)
{
    if ((int)what < 0 || what > DB_WHAT_RUNS || (fmt != DB_FMT_JSONL && fmt != DB_FMT_CSV))
        return db_err_set(err, DB_E_ARG, "db_export: bad kind %d or format %d", (int)what,
                          (int)fmt);
    Out o = { out, fmt == DB_FMT_CSV };
    Ctx c = { &o, DB_OK, err, db, NULL };
    if (o.csv)
        fprintf(out, "%s\n", csv_header[what]);

    DbStatus s = DB_OK;
    if (what == DB_WHAT_RUNS) {
        int rc = sqlite3_prepare_v2(db->h, "SELECT json_valid(?1)", -1, &c.json_ok, NULL);
        if (rc != SQLITE_OK)
            s = db_err_sqlite(err, db->h, rc, "exporting runs");
        else
            s = db_runs(db, sel, ex_run, &c, err);
        sqlite3_finalize(c.json_ok);
    } else {
        /* outer: the selected run ids in order */
        char sql[512] = "SELECT r.id FROM runs r WHERE ";
        db_sel_where(sel, sql, sizeof sql);
        strncat(sql, " ORDER BY r.id", sizeof sql - strlen(sql) - 1);
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db->h, sql, -1, &st, NULL);
        if (rc == SQLITE_OK)
            rc = db_sel_bind(st, sel);
        while (s == DB_OK && rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            rc = SQLITE_OK;
            int64_t run = sqlite3_column_int64(st, 0);
            if (what == DB_WHAT_ROUTES)
                s = db_routes(db, run, 0, -1, -1, ex_route, &c, err);
            else if (what == DB_WHAT_TOKENS)
                s = db_tokens(db, run, ex_token, &c, err);
            else
                s = ex_load(&c, run);
            if (ferror(out))
                break;
        }
        if (s == DB_OK && rc != SQLITE_OK && rc != SQLITE_DONE)
            s = db_err_sqlite(err, db->h, rc, "exporting: listing runs");
        sqlite3_finalize(st);
    }
    if (fflush(out) != 0 || ferror(out)) {
        if (s == DB_OK)
            s = db_err_set(err, DB_E_IO, "export: writing the output failed: %s",
                           strerror(errno));
    }
    return s;
}
