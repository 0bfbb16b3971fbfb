/*
** tui/app_engine.c — the app's live runs: the engine on its own thread.
**
** start() copies the job (prompt, interventions, parent run) and launches a
** thread that owns everything it touches: its own database connection and
** run logger, its own EngCtx.  The thread runs the shared generation loop
** (tui/gen.h) and, from its hooks, logs each token and route to the
** database and pushes a copy onto the UI's queue; it checks the queue's
** cancel flag between tokens.  A re-run (parent > 0) takes the parent run's
** sampling settings and the text it fed the model, so that without
** interventions it reproduces the parent token for token.
** The model (immutable after open) is shared with nothing else.
*/
#include "tui/app.h"
#include "tui/gen.h"
#include "tui/record.h"
#include "db/db.h"

#include "tui/chat.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    EngModel *m;
    char model_path[1024], db_path[1024];
    int n_threads, n_predict;
    pthread_t th;
    int have_th;
    /* the job, owned by the thread while it runs */
    char *prompt;
    EngIv ivs[TUI_MAX_IV];
    int n_iv;
    int64_t parent;
    char tag[64];
    int has_tag;
    int chat;                   /* wrap typed prompts in the chat format */
    char system[1024];
    int has_system;
    TuiQueue *q;
    /* thread state */
    DbLog *log;
    DbStatus sticky;
    int n_gen;
    int total;
} EngRunner;

/* Push an error "what: detail" (cut to the event's message size). */
static void push_err(TuiQueue *q, const char *what, const char *detail)
{
    TuiEv e = { .kind = TUI_EV_ERROR };
    size_t o = 0, cap = sizeof e.msg - 1;
    for (const char *s = what; *s && o < cap; s++)
        e.msg[o++] = *s;
    for (const char *s = ": "; *s && o < cap; s++)
        e.msg[o++] = *s;
    for (const char *s = detail; *s && o < cap; s++)
        e.msg[o++] = *s;
    e.msg[o] = 0;
    tui_queue_push(q, &e);
}

static void on_token(void *user, int pos, int32_t id, int is_prompt, float logprob,
                     int n_top, const int32_t *top_ids, const float *top_lp)
{
    EngRunner *r = user;
    TuiEv e = { .kind = TUI_EV_TOKEN, .pos = pos, .id = id, .is_prompt = is_prompt, .logprob = logprob };
    int n = eng_token_to_bytes(r->m, id, e.msg, (int)sizeof e.msg - 1);
    if (n < 0)
        n = 0;
    if (n > (int)sizeof e.msg - 1)
        n = (int)sizeof e.msg - 1;
    e.msg[n] = 0;
    if (n == 0) {
        /* a control token stands for no text: show its name (<s>) */
        size_t vl = 0;
        const char *v = eng_token_str(r->m, id, &vl);
        if (v && vl < sizeof e.msg) {
            memcpy(e.msg, v, vl);
            e.msg[vl] = 0;
        }
    }
    if (r->log && r->sticky == DB_OK) {
        /* the database keeps the vocabulary string, as `moescope run` does */
        size_t vl = 0;
        const char *v = eng_token_str(r->m, id, &vl);
        DbToken t = { .pos = pos, .token = id, .is_prompt = is_prompt, .piece = v ? v : "",
                      .piece_len = v ? (int)vl : 0,
                      .logprob = logprob, .n_top = n_top < DB_TOP_MAX ? n_top : DB_TOP_MAX };
        for (int i = 0; i < t.n_top; i++) {
            t.top_ids[i] = top_ids[i];
            t.top_lp[i] = top_lp[i];
        }
        r->sticky = db_log_token(r->log, &t);
    }
    tui_queue_push(r->q, &e);
    if (!is_prompt) {
        TuiEv p = { .kind = TUI_EV_PROGRESS, .done = ++r->n_gen, .total = r->total };
        tui_queue_push(r->q, &p);
    }
}

static void on_route(void *user, const EngRoute *rt)
{
    EngRunner *r = user;
    if (r->log && r->sticky == DB_OK) {
        DbRoute d = { .pos = rt->pos, .layer = rt->layer, .is_prompt = rt->is_prompt, .k = rt->k,
                      .experts = rt->experts, .weights = rt->weights, .scores = rt->scores,
                      .logits = NULL, .shared_gate = rt->shared_gate };
        r->sticky = db_log_route(r->log, &d);
    }
    TuiEv e = { .kind = TUI_EV_ROUTE, .pos = rt->pos, .layer = rt->layer, .is_prompt = rt->is_prompt };
    e.k = rt->k < 16 ? rt->k : 16;
    for (int j = 0; j < e.k; j++) {
        e.experts[j] = rt->experts[j];
        e.weights[j] = rt->weights[j];
    }
    if (rt->logits && rt->n_expert <= 64) {
        e.n_logits = rt->n_expert;
        memcpy(e.logits, rt->logits, sizeof(float) * (size_t)rt->n_expert);
    }
    tui_queue_push(r->q, &e);
}

static int should_stop(void *user)
{
    EngRunner *r = user;
    return tui_queue_cancelled(r->q);
}

static void *run_thread(void *p)
{
    EngRunner *r = p;
    const EngInfo *info = eng_model_info(r->m);
    DbErr de = { 0 };
    EngErr ee = { 0 };
    EngCtx *ctx = NULL;
    char *text = NULL, *ivt = NULL, *ivj = NULL, *fed = NULL;
    size_t text_len = 0;
    DbRun parent;
    int have_parent = 0;
    GenSettings *gs = calloc(1, sizeof *gs);
    Db *db = db_open(r->db_path, DB_OPEN_CREATE, &de);
    if (!gs || !db) {
        push_err(r->q, r->db_path, gs ? de.msg : "out of memory");
        goto done;
    }
    DbModel dm = { .path = r->model_path, .name = info->name, .arch = info->arch_name,
                   .n_layer = info->n_layer, .n_expert = info->n_expert, .k = info->n_expert_used };
    if (db_file_hash(r->model_path, &dm.hash, &dm.file_size, &de) != DB_OK ||
        db_model_register(db, &dm, &de) != DB_OK) {
        push_err(r->q, r->db_path, de.msg);
        goto done;
    }
    gen_settings_default(gs);
    gs->n_predict = r->n_predict;
    gs->n_threads = r->n_threads;
    const char *prompt_fmt = r->prompt;
    if (r->parent > 0) {
        if (db_run_get(db, r->parent, &parent, &de) != DB_OK) {
            push_err(r->q, "baseline run", de.msg);
            goto done;
        }
        have_parent = 1;
        gs->sample.seed = parent.seed;
        gs->sample.temp = (float)parent.temp;
        gs->sample.top_p = (float)parent.top_p;
        gs->sample.top_k = parent.top_k;
        gs->sample.greedy = parent.greedy;
        if (parent.n_predict > 0)
            gs->n_predict = parent.n_predict;
        gs->n_ctx = parent.n_ctx;
        if (parent.prompt_fmt && parent.prompt_fmt[0])
            prompt_fmt = parent.prompt_fmt;
    }
    r->total = gs->n_predict;
    for (int i = 0; i < r->n_iv && i < GEN_MAX_IVS; i++)
        gs->ivs[i] = r->ivs[i];
    gs->n_ivs = r->n_iv;
    if (have_parent && parent.prompt && parent.prompt_fmt && strcmp(parent.prompt, parent.prompt_fmt)) {
        /* the baseline was a chat prompt: its formatted text holds special
        ** tokens, and the BOS too when the format writes it */
        gs->parse_special = 1;
        size_t bl = 0;
        const char *bos = info->bos_id >= 0 ? eng_token_str(r->m, info->bos_id, &bl) : NULL;
        gs->skip_bos = bos && bl > 0 && strncmp(prompt_fmt, bos, bl) == 0;
    }
    if (!have_parent && r->chat) {
        char cerr[512];
        int skip = 0;
        fed = chat_apply(r->m, r->has_system ? r->system : NULL, r->prompt, &skip, cerr, sizeof cerr);
        if (!fed) {
            push_err(r->q, "chat", cerr);
            goto done;
        }
        gs->skip_bos = skip;
        gs->parse_special = 1;
    } else {
        fed = strdup(prompt_fmt);
    }
    EngCtxParams cp = { .n_ctx = gs->n_ctx, .n_threads = gs->n_threads };
    ctx = fed ? eng_ctx_new(r->m, &cp, &ee) : NULL;
    if (!ctx) {
        push_err(r->q, "engine", fed ? ee.msg : "out of memory");
        goto done;
    }
    ivt = tui_ivs_text(gs->ivs, gs->n_ivs);
    ivj = rec_ivs_json(gs->ivs, gs->n_ivs);
    if (!ivt || !ivj) {
        push_err(r->q, "interventions", "out of memory");
        goto done;
    }
    DbRunInfo ri = { .model = dm.id, .parent = r->parent, .tag = r->has_tag ? r->tag : NULL,
                     .prompt = r->prompt, .prompt_fmt = fed, .iv_text = ivt, .iv_json = ivj,
                     .seed = gs->sample.seed, .temp = gs->sample.temp, .top_p = gs->sample.top_p,
                     .top_k = gs->sample.top_k, .greedy = gs->sample.greedy || gs->sample.temp <= 0,
                     .n_predict = gs->n_predict, .n_ctx = gs->n_ctx, .flags = DB_RUN_SCORES };
    r->log = db_log_begin(db, &ri, 0, &de);
    if (!r->log) {
        push_err(r->q, r->db_path, de.msg);
        goto done;
    }
    r->sticky = DB_OK;
    r->n_gen = 0;
    int64_t run_id = db_log_run_id(r->log);
    GenHooks h = { .user = r, .on_token = on_token, .on_route = on_route, .should_stop = should_stop };
    GenStats st = { 0 };
    int ok = gen_run(r->m, ctx, gs, fed, strlen(fed), &h, &text, &text_len, &st, &ee) == 0;
    DbRunStats rs = { .n_prompt = st.n_prompt, .n_gen = st.n_gen, .t_prompt_ms = st.t_prompt * 1e3,
                      .t_gen_ms = st.t_gen * 1e3,
                      .error = !ok ? ee.msg : r->sticky != DB_OK ? "a database write failed" : NULL };
    int logged = r->sticky == DB_OK;
    if (ok && st.cancelled)
        rs.error = "cancelled in the app";
    DbStatus fs = db_log_finish(r->log, ok && logged && !st.cancelled ? DB_RUN_COMPLETE : DB_RUN_FAILED,
                                &rs, &de);
    r->log = NULL;
    if (ok && st.cancelled)
        push_err(r->q, "cancelled", "the run is logged as failed");
    else if (!ok)
        push_err(r->q, "generation", ee.msg);
    else if (fs != DB_OK || !logged)
        push_err(r->q, "logging the run", fs != DB_OK ? de.msg : db_status_str(r->sticky));
    else {
        TuiEv e = { .kind = TUI_EV_DONE, .run_id = run_id };
        tui_queue_push(r->q, &e);
    }
done:
    if (have_parent)
        db_run_free(&parent);
    free(text);
    free(ivt);
    free(ivj);
    free(fed);
    free(gs);
    eng_ctx_free(ctx);
    db_close(db);
    free(r->prompt);
    r->prompt = NULL;
    return NULL;
}

static int er_start(void *self, const char *prompt, const EngIv *ivs, int n_iv, int64_t parent,
                    const char *tag, TuiQueue *q, char *err, size_t cap)
{
    EngRunner *r = self;
    if (r->have_th) {
        snprintf(err, cap, "a run is still going");
        return -1;
    }
    r->prompt = strdup(prompt);
    if (!r->prompt) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    r->n_iv = n_iv < TUI_MAX_IV ? n_iv : TUI_MAX_IV;
    memcpy(r->ivs, ivs, sizeof(EngIv) * (size_t)r->n_iv);
    r->parent = parent;
    r->has_tag = tag && tag[0];
    snprintf(r->tag, sizeof r->tag, "%s", r->has_tag ? tag : "");
    r->q = q;
    if (pthread_create(&r->th, NULL, run_thread, r)) {
        free(r->prompt);
        r->prompt = NULL;
        snprintf(err, cap, "cannot start the engine thread");
        return -1;
    }
    r->have_th = 1;
    return 0;
}

static void er_join(void *self)
{
    EngRunner *r = self;
    if (r->have_th)
        pthread_join(r->th, NULL);
    r->have_th = 0;
}

static void er_close(void *self)
{
    EngRunner *r = self;
    if (!r)
        return;
    er_join(r);
    eng_model_close(r->m);
    free(r);
}

/* Text of token id for the loader: what it stands for in text. */
static int er_piece(void *self, int32_t id, const char *raw, size_t raw_len, char *buf, int cap)
{
    EngRunner *r = self;
    size_t vl = 0;
    const char *v = eng_token_str(r->m, id, &vl);
    /* only when the run's vocabulary is this model's */
    if (!v || vl != raw_len || memcmp(v, raw, vl))
        return -1;
    return eng_token_to_bytes(r->m, id, buf, cap);
}

int tui_engine_runner_open(TuiRunner *out, const char *model_path, const char *db_path,
                           int n_predict, int n_threads, char *title, size_t tcap,
                           char *err, size_t cap)
{
    EngErr ee = { 0 };
    memset(out, 0, sizeof *out);
    EngRunner *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    r->m = eng_model_open(model_path, &ee);
    if (!r->m) {
        snprintf(err, cap, "%s", ee.msg);
        free(r);
        return -1;
    }
    snprintf(r->model_path, sizeof r->model_path, "%s", model_path);
    snprintf(r->db_path, sizeof r->db_path, "%s", db_path);
    r->n_predict = n_predict;
    r->n_threads = n_threads;
    const EngInfo *info = eng_model_info(r->m);
    out->self = r;
    out->start = er_start;
    out->join = er_join;
    out->close = er_close;
    out->piece = er_piece;
    out->n_layer = info->n_layer;
    out->n_expert = info->n_expert;
    out->k = info->n_expert_used;
    out->n_predict = n_predict;
    const char *base = strrchr(model_path, '/');
    snprintf(title, tcap, "%s  %s, %d layers, %d experts, top-%d", base ? base + 1 : model_path,
             info->arch_name, info->n_layer, info->n_expert, info->n_expert_used);
    return 0;
}

void tui_engine_runner_set_chat(TuiRunner *rn, int chat, const char *system)
{
    EngRunner *r = rn->self;
    r->chat = chat;
    r->has_system = system != NULL;
    snprintf(r->system, sizeof r->system, "%s", system ? system : "");
}
