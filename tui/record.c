/*
** tui/record.c — recording generations in the routing database.
**
** The engine's route callback and the generation loop's token hook only copy
** records into the DbLog's buffer (db_log_route/db_log_token); the database
** writes happen on the logger's own thread.  A failed write is sticky in the
** DbLog and reported when the run finishes: the run is then not marked
** complete, and the command exits non-zero.
*/
#include "tui/record.h"
#include "db/db.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct Recorder {
    const char *cmd;
    RecOpts o;
    Db *db;
    DbModel dm;
    const EngModel *m;
    DbLog *log;
    DbStatus sticky;
    char errmsg[512];
    int64_t last_run;
};

void rec_opts_init(RecOpts *o)
{
    memset(o, 0, sizeof *o);
    o->db_path = "moescope.db";
}

int rec_open(const char *cmd, const RecOpts *o, const EngModel *m, const char *model_path,
             Recorder **out)
{
    *out = NULL;
    if (o->no_db)
        return 0;
    Recorder *r = calloc(1, sizeof *r);
    if (!r) {
        fprintf(stderr, "moescope %s: out of memory\n", cmd);
        return -1;
    }
    r->cmd = cmd;
    r->o = *o;
    r->m = m;
    DbErr err = { 0 };
    r->db = db_open(o->db_path, DB_OPEN_CREATE, &err);
    if (!r->db) {
        fprintf(stderr, "moescope %s: %s\n", cmd, err.msg);
        free(r);
        return -1;
    }
    const EngInfo *I = eng_model_info(m);
    r->dm.path = model_path;
    r->dm.name = I->name;
    r->dm.arch = I->arch_name;
    r->dm.n_layer = I->n_layer;
    r->dm.n_expert = I->n_expert;
    r->dm.k = I->n_expert_used;
    if (db_file_hash(model_path, &r->dm.hash, &r->dm.file_size, &err) != DB_OK ||
        db_model_register(r->db, &r->dm, &err) != DB_OK) {
        fprintf(stderr, "moescope %s: %s\n", cmd, err.msg);
        db_close(r->db);
        free(r);
        return -1;
    }
    *out = r;
    return 0;
}

static void on_token(void *user, int pos, int32_t id, int is_prompt, float logprob, int n_top,
                     const int32_t *top_ids, const float *top_lp)
{
    Recorder *r = user;
    if (r->sticky)
        return;
    DbToken t = { 0 };
    size_t len = 0;
    t.pos = pos;
    t.token = id;
    t.is_prompt = is_prompt;
    t.piece = eng_token_str(r->m, id, &len);
    t.piece_len = (int)len;
    t.logprob = logprob;
    t.n_top = n_top > DB_TOP_MAX ? DB_TOP_MAX : n_top;
    for (int j = 0; j < t.n_top; j++) {
        t.top_ids[j] = top_ids[j];
        t.top_lp[j] = top_lp[j];
    }
    r->sticky = db_log_token(r->log, &t);
}

static void on_route(void *user, const EngRoute *er)
{
    Recorder *r = user;
    if (r->sticky)
        return;
    const EngInfo *I = eng_model_info(r->m);
    DbRoute d = { 0 };
    d.pos = er->pos;
    d.layer = er->layer;
    d.is_prompt = er->is_prompt;
    d.k = er->k;
    d.experts = er->experts;
    d.weights = er->weights;
    d.scores = er->scores;
    d.logits = r->o.router_logits ? er->logits : NULL;
    d.n_logits = er->n_expert;
    d.shared_gate = I->n_ff_shexp > 0 ? er->shared_gate : NAN;
    r->sticky = db_log_route(r->log, &d);
}

char *rec_ivs_json(const EngIv *ivs, int n)
{
    static const char *kinds[] = { "bias", "disable", "force", "top_k", "top_p" };
    static const char *scopes[] = { "all", "prompt", "gen", "from" };
    size_t cap = 16 + (size_t)n * 128, len = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    len += (size_t)snprintf(s, cap, "[");
    for (int i = 0; i < n; i++) {
        const EngIv *iv = &ivs[i];
        len += (size_t)snprintf(s + len, cap - len,
                                "%s{\"kind\":\"%s\",\"layer\":%d,\"expert\":%d,\"value\":%.9g,"
                                "\"cap\":%d,\"scope\":\"%s\",\"from\":%d}",
                                i ? "," : "", kinds[iv->kind], iv->layer,
                                iv->kind <= ENG_IV_FORCE ? iv->expert : -1, (double)iv->value,
                                iv->cap, scopes[iv->scope], iv->from_pos);
    }
    snprintf(s + len, cap - len, "]");
    return s;
}

int rec_begin_fmt(Recorder *r, const char *prompt, const char *formatted, const GenSettings *s,
                  GenHooks *h)
{
    memset(h, 0, sizeof *h);
    if (!r)
        return 0;
    char *ivt = tui_ivs_text(s->ivs, s->n_ivs);
    char *ivj = rec_ivs_json(s->ivs, s->n_ivs);
    if (!ivt || !ivj) {
        free(ivt);
        free(ivj);
        fprintf(stderr, "moescope %s: out of memory\n", r->cmd);
        return -1;
    }
    DbRunInfo ri = { 0 };
    ri.model = r->dm.id;
    ri.parent = r->o.parent;
    ri.tag = r->o.tag;
    ri.prompt = prompt;
    ri.prompt_fmt = formatted ? formatted : prompt;
    ri.iv_text = ivt;
    ri.iv_json = ivj;
    ri.seed = s->sample.seed;
    ri.temp = s->sample.temp;
    ri.top_p = s->sample.top_p;
    ri.top_k = s->sample.top_k;
    ri.greedy = s->sample.greedy || s->sample.temp <= 0;
    ri.n_predict = s->n_predict;
    ri.n_ctx = s->n_ctx;
    ri.flags = DB_RUN_SCORES | (r->o.router_logits ? DB_RUN_LOGITS : 0);
    DbErr err = { 0 };
    r->sticky = DB_OK;
    r->log = db_log_begin(r->db, &ri, 0, &err);
    free(ivt);
    free(ivj);
    if (!r->log) {
        fprintf(stderr, "moescope %s: %s\n", r->cmd, err.msg);
        return -1;
    }
    r->last_run = db_log_run_id(r->log);
    h->user = r;
    h->on_token = on_token;
    h->on_route = on_route;
    return 0;
}

int rec_begin(Recorder *r, const char *prompt, size_t len, const GenSettings *s, GenHooks *h)
{
    (void)len;
    return rec_begin_fmt(r, prompt, NULL, s, h);
}

int rec_end(Recorder *r, int ok, const GenStats *st)
{
    if (!r || !r->log)
        return 0;
    DbRunStats rs = { 0 };
    rs.n_prompt = st ? st->n_prompt : 0;
    rs.n_gen = st ? st->n_gen : 0;
    rs.t_prompt_ms = st ? st->t_prompt * 1e3 : 0;
    rs.t_gen_ms = st ? st->t_gen * 1e3 : 0;
    DbErr err = { 0 };
    int want_ok = ok && r->sticky == DB_OK;
    if (r->sticky != DB_OK)
        rs.error = "a database write failed while logging";
    DbStatus s = db_log_finish(r->log, want_ok ? DB_RUN_COMPLETE : DB_RUN_FAILED, &rs, &err);
    r->log = NULL;
    if (s != DB_OK || r->sticky != DB_OK) {
        fprintf(stderr, "moescope %s: run %lld not recorded completely: %s\n", r->cmd,
                (long long)r->last_run, s != DB_OK ? err.msg : db_status_str(r->sticky));
        return -1;
    }
    return 0;
}

int64_t rec_run_id(const Recorder *r) { return r ? r->last_run : 0; }

int rec_close(Recorder *r)
{
    if (!r)
        return 0;
    int ret = 0;
    if (r->log)
        ret = rec_end(r, 0, NULL);
    db_close(r->db);
    free(r);
    return ret;
}

char *tui_ivs_text(const EngIv *ivs, int n)
{
    size_t cap = (size_t)n * 64 + 1, len = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    s[0] = 0;
    for (int i = 0; i < n; i++) {
        int w = eng_iv_format(&ivs[i], s + len, cap - len);
        if (w < 0 || (size_t)w >= cap - len)
            break;
        len += (size_t)w;
        if (i + 1 < n && len + 2 < cap) {
            s[len++] = '\n';
            s[len] = 0;
        }
    }
    return s;
}
