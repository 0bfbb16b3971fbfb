/*
** tui/app_steer.c — the intervention list the steering keys edit, the
** comparison of a steered run with its baseline, and CSV export of what is
** on screen.
*/
#include "tui/app.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *scope_str(const EngIv *iv, char *buf, size_t cap)
{
    switch (iv->scope) {
    case ENG_SCOPE_PROMPT: return "prompt";
    case ENG_SCOPE_GEN: return "gen";
    case ENG_SCOPE_FROM:
        snprintf(buf, cap, "from:%d", iv->from_pos);
        return buf;
    default: return "all";
    }
}

int tui_iv_text(const EngIv *iv, char *buf, size_t cap)
{
    char sb[24], lb[16];
    const char *sc = scope_str(iv, sb, sizeof sb);
    if (iv->layer < 0)
        snprintf(lb, sizeof lb, "*");
    else
        snprintf(lb, sizeof lb, "%d", iv->layer);
    switch (iv->kind) {
    case ENG_IV_DISABLE: return snprintf(buf, cap, "disable %s:%d (%s)", lb, iv->expert, sc);
    case ENG_IV_FORCE: return snprintf(buf, cap, "force %s:%d (%s)", lb, iv->expert, sc);
    case ENG_IV_BIAS: return snprintf(buf, cap, "bias %s:%d=%+.1f (%s)", lb, iv->expert, (double)iv->value, sc);
    case ENG_IV_TOPK: return snprintf(buf, cap, "top-k %d (%s)", (int)iv->value, sc);
    case ENG_IV_TOPP: return snprintf(buf, cap, "top-p %.2f cap %d (%s)", (double)iv->value, iv->cap, sc);
    }
    return snprintf(buf, cap, "?");
}

static void iv_remove(TuiApp *a, int i)
{
    memmove(&a->ivs[i], &a->ivs[i + 1], (size_t)(a->n_iv - i - 1) * sizeof(EngIv));
    a->n_iv--;
}

static int iv_add(TuiApp *a, EngIv iv)
{
    if (a->n_iv >= TUI_MAX_IV) {
        tui_app_msg(a, "at most %d interventions", TUI_MAX_IV);
        return -1;
    }
    a->ivs[a->n_iv++] = iv;
    return 0;
}

int tui_iv_key(TuiApp *a, int key)
{
    int l = a->sel_layer, e = a->sel_expert, i;
    int k = a->agg.k > 0 ? a->agg.k : 1;
    EngIv iv = { .layer = l, .expert = e, .scope = ENG_SCOPE_ALL };
    char t[96];
    switch (key) {
    case 'd':
    case 'f': {
        EngIvKind kind = key == 'd' ? ENG_IV_DISABLE : ENG_IV_FORCE;
        EngIvKind other = key == 'd' ? ENG_IV_FORCE : ENG_IV_DISABLE;
        if ((i = tui_iv_find(a, l, e, kind)) >= 0) {
            iv_remove(a, i);
            tui_app_msg(a, "removed %s L%d:E%d", key == 'd' ? "disable" : "force", l, e);
            break;
        }
        if ((i = tui_iv_find(a, l, e, other)) >= 0)
            iv_remove(a, i);
        iv.kind = kind;
        if (iv_add(a, iv) == 0) {
            tui_iv_text(&iv, t, sizeof t);
            tui_app_msg(a, "%s  (r re-runs with it)", t);
        }
        break;
    }
    case '+':
    case '-': {
        float step = key == '+' ? 0.5f : -0.5f;
        if ((i = tui_iv_find(a, l, e, ENG_IV_BIAS)) >= 0) {
            a->ivs[i].value += step;
            if (fabsf(a->ivs[i].value) < 1e-6f) {
                iv_remove(a, i);
                tui_app_msg(a, "removed bias L%d:E%d", l, e);
                break;
            }
            tui_iv_text(&a->ivs[i], t, sizeof t);
        } else {
            iv.kind = ENG_IV_BIAS;
            iv.value = step;
            if (iv_add(a, iv))
                break;
            tui_iv_text(&iv, t, sizeof t);
        }
        tui_app_msg(a, "%s", t);
        break;
    }
    case 'k':
    case 'K': {
        i = tui_iv_find(a, -1, 0, ENG_IV_TOPK);
        int cur = i >= 0 ? (int)a->ivs[i].value : k;
        int next = key == 'k' ? cur - 1 : cur + 1;
        if (next < 1 || next > a->agg.n_expert || next == k) {
            if (i >= 0)
                iv_remove(a, i);
            tui_app_msg(a, "top-k back to the model's %d", k);
            break;
        }
        if (i < 0) {
            iv.kind = ENG_IV_TOPK;
            iv.layer = -1;
            iv.expert = 0;
            iv.value = (float)next;
            iv_add(a, iv);
        } else {
            a->ivs[i].value = (float)next;
        }
        tui_app_msg(a, "top-k %d (model: %d)", next, k);
        break;
    }
    default:
        return TUI_K_IGNORED;
    }
    return TUI_K_HANDLED | TUI_K_REDRAW;
}

int tui_first_divergence(const TuiTokens *a, const TuiTokens *b)
{
    int n = a->n < b->n ? a->n : b->n;
    for (int i = 0; i < n; i++)
        if (a->id[i] != b->id[i] || strcmp(a->piece[i], b->piece[i]))
            return i;
    return a->n == b->n ? -1 : n;
}

/* CSV field: quoted, quotes doubled, control characters escaped. */
static void csv_str(FILE *f, const char *s)
{
    char buf[2048];
    tui_escape(s, strlen(s), buf, sizeof buf);
    fputc('"', f);
    for (const char *p = buf; *p; p++) {
        if (*p == '"')
            fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

int tui_export_csv(TuiApp *a, char *path, size_t cap)
{
    const char *name = a->views[a->cur].cls->name;
    long long rid = a->cur_run >= 0 && a->cur_run < a->runs.n ? (long long)a->runs.a[a->cur_run].id : 0;
    snprintf(path, cap, "moescope-%s-%lld.csv", name, rid);
    FILE *f = fopen(path, "w");
    if (!f) {
        tui_app_msg(a, "export: cannot write %s", path);
        return -1;
    }
    if (a->cur == TUI_V_RUNS) {
        fprintf(f, "id,parent,tag,model,n_tok,n_prompt,status,date,interventions,prompt\n");
        for (int i = 0; i < a->runs.n; i++) {
            const TuiRun *r = &a->runs.a[i];
            fprintf(f, "%lld,%lld,", (long long)r->id, (long long)r->parent);
            csv_str(f, r->tag);
            fputc(',', f);
            csv_str(f, r->model);
            fprintf(f, ",%d,%d,%s,%s,", r->n_tok, r->n_prompt, r->status, r->date);
            csv_str(f, r->ivs);
            fputc(',', f);
            csv_str(f, r->prompt);
            fputc('\n', f);
        }
    } else if (a->cur == TUI_V_TOKENS || a->cur == TUI_V_STEER || a->cur == TUI_V_PROMPT) {
        const TuiTokens *t = &a->toks;
        fprintf(f, "pos,token,piece,is_prompt,logprob,entropy");
        for (int l = 0; l < t->n_layer; l++)
            for (int j = 0; j < t->k; j++)
                fprintf(f, ",L%d_e%d,L%d_w%d", l, j, l, j);
        fputc('\n', f);
        size_t lk = (size_t)t->n_layer * (size_t)t->k;
        for (int i = 0; i < t->n; i++) {
            fprintf(f, "%d,%d,", i, t->id[i]);
            csv_str(f, t->piece[i]);
            fprintf(f, ",%d,%.6g,%.6g", t->is_prompt[i], (double)t->logprob[i], (double)t->entropy[i]);
            for (size_t j = 0; j < lk; j++)
                fprintf(f, ",%d,%.6g", t->experts[(size_t)i * lk + j], (double)t->weights[(size_t)i * lk + j]);
            fputc('\n', f);
        }
    } else {
        const TuiAgg *g = &a->agg;
        fprintf(f, "layer,expert,value,count,count_prompt,weight,weight_prompt\n");
        for (int l = 0; l < g->n_layer && a->grid.v; l++)
            for (int e = 0; e < g->n_expert; e++) {
                size_t i = (size_t)l * (size_t)g->n_expert + (size_t)e;
                fprintf(f, "%d,%d,%.6g,%.0f,%.0f,%.6g,%.6g\n", l, e, (double)a->grid.v[i],
                        (double)g->cnt[i], (double)g->cnt_p[i], (double)g->wt[i], (double)g->wt_p[i]);
            }
    }
    if (fclose(f)) {
        tui_app_msg(a, "export: writing %s failed", path);
        return -1;
    }
    tui_app_msg(a, "exported %s", path);
    return 0;
}
