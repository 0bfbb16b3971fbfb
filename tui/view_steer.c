/*
** tui/view_steer.c — the interventions and what they did.  The list is
** editable (delete, scope, value); r re-runs the open run's prompt with
** them as a child run.  Once the steered run exists, its text stands beside
** the baseline's with the first divergence marked, above a heatmap of the
** routing difference (steered − baseline share).
*/
#include "tui/app.h"

#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int cur; } SteerPriv;

static const char *const steer_keys[] = {
    "r", "Re-run", "x", "Delete", "s", "Scope", "+/-", "Value", "c", "Cancel run",
    "Esc", "Back", "F1", "Help", NULL
};

/* Percent of positions whose chosen set differs, per layer, over the
** positions before the texts part (same inputs: only the interventions
** differ); limit < 0 = every common position. */
static void changed_routes(const TuiTokens *a, const TuiTokens *b, int limit, char *out, size_t cap)
{
    int n = a->n < b->n ? a->n : b->n;
    if (limit >= 0 && limit < n)
        n = limit;
    size_t o = 0;
    out[0] = 0;
    if (n == 0 || a->k != b->k || a->n_layer != b->n_layer)
        return;
    size_t lk = (size_t)a->n_layer * (size_t)a->k;
    for (int l = 0; l < a->n_layer && o + 16 < cap; l++) {
        int diff = 0;
        for (int i = 0; i < n; i++) {
            const int32_t *x = a->experts + (size_t)i * lk + (size_t)l * (size_t)a->k;
            const int32_t *y = b->experts + (size_t)i * lk + (size_t)l * (size_t)a->k;
            for (int j = 0; j < a->k; j++) {
                int found = 0;
                for (int m = 0; m < a->k; m++)
                    found |= x[j] == y[m];
                if (!found) {
                    diff++;
                    break;
                }
            }
        }
        o += (size_t)snprintf(out + o, cap - o, "%sL%d %d%%", l ? ", " : "", l, 100 * diff / n);
    }
}

static void steer_draw(TuiView *v, TuiApp *a)
{
    SteerPriv *p = v->priv;
    int cur = p ? p->cur : 0;
    tui_draw_header(a);
    int body = a->h - 3;
    int ivh = (a->n_iv < 6 ? a->n_iv : 6) + 2;
    if (ivh < 3)
        ivh = 3;
    char title[256];
    snprintf(title, sizeof title, "Interventions (%d)", a->n_iv);
    TuiRect ib = { 0, 1, a->w, ivh };
    tui_draw_box(a, ib, title, 1);
    if (a->n_iv == 0)
        tui_draw_str(a, 2, 2, a->w - 4, "none: on the heatmap d disables, f forces, +/- biases the cursor expert, k sets top-k", A_DIM);
    int first = cur >= ivh - 2 ? cur - (ivh - 3) : 0;
    for (int i = first; i < a->n_iv && i - first < ivh - 2; i++) {
        char t[128];
        tui_iv_text(&a->ivs[i], t, sizeof t);
        int at = i == cur ? tui_attr(a, TUI_C_SELECTED) : tui_attr(a, TUI_C_IV);
        tui_draw_str(a, 2 + i - first, 2, a->w - 4, t, at);
    }
    int y = 1 + ivh, rest = body - ivh;
    int have = a->live_is_steer && (a->toks.n > 0 || a->running) && a->base_toks.n > 0;
    char st[512] = "";
    if (!have) {
        tui_draw_str(a, y + 1, 2, a->w - 4, "r re-runs the open run's prompt with these interventions; the result appears here.", 0);
    } else {
        int th = rest / 2 < 4 ? (rest < 4 ? rest : 4) : rest / 2;
        int lw = a->w / 2;
        int div = a->running ? -1 : tui_first_divergence(&a->base_toks, &a->toks);
        long long base_id = a->live_parent;
        snprintf(title, sizeof title, "baseline (run %lld)", base_id);
        tui_draw_box(a, (TuiRect){ 0, y, lw, th }, title, 0);
        char ivs[128] = "";
        size_t o = 0;
        for (int i = 0; i < a->n_iv && o + 40 < sizeof ivs; i++) {
            char t[64];
            tui_iv_text(&a->ivs[i], t, sizeof t);
            o += (size_t)snprintf(ivs + o, sizeof ivs - o, "%s%s", i ? ", " : "", t);
        }
        if (a->running)
            snprintf(title, sizeof title, "steered (running %d/%d)", a->run_done, a->run_total);
        else
            snprintf(title, sizeof title, "steered (run %lld: %s)", (long long)a->live_run_id, ivs[0] ? ivs : "no interventions");
        tui_draw_box(a, (TuiRect){ lw, y, a->w - lw, th }, title, 0);
        TuiRect lt = { 1, y + 1, lw - 2, th - 2 }, rt = { lw + 1, y + 1, a->w - lw - 2, th - 2 };
        tui_draw_tokens(a, lt, 0, &a->base_toks, div, 0);
        tui_draw_tokens(a, rt, 0, &a->toks, div, 0);
        if (div >= 0 && !a->running) {
            char x[64] = "-", z[64] = "-";
            if (div < a->base_toks.n)
                tui_tok_disp(a, &a->base_toks, div, x, sizeof x);
            if (div < a->toks.n)
                tui_tok_disp(a, &a->toks, div, z, sizeof z);
            int ng = 0;
            for (int i = 0; i < div && i < a->toks.n; i++)
                ng += !a->toks.is_prompt[i];
            char ch[256];
            changed_routes(&a->base_toks, &a->toks, div, ch, sizeof ch);
            snprintf(st, sizeof st, "first divergence: generated token %d (\"%s\" -> \"%s\")   routes changed before it: %s",
                     ng, x, z, ch);
        } else if (!a->running) {
            char ch[256];
            changed_routes(&a->base_toks, &a->toks, -1, ch, sizeof ch);
            snprintf(st, sizeof st, "the steered text is the same as the baseline   routes changed: %s", ch);
        }
        /* routing difference heatmap below */
        int hy = y + th, hh = rest - th;
        if (hh > a->agg.n_layer + 3)
            hh = a->agg.n_layer + 3;
        if (hh >= 4 && a->agg.cnt && a->base_agg.cnt && !a->running) {
            TuiGrid g = { 0 };
            if (tui_grid_delta(&g, &a->agg, &a->base_agg, a->hm_value, TUI_HM_ALL) == 0) {
                TuiGrid save = a->grid;
                TuiHmGeom gsave = a->geom;
                int dsave = a->hm_delta;
                char lsave[64];
                memcpy(lsave, a->other_label, sizeof lsave);
                a->grid = g;
                a->hm_delta = 1;
                snprintf(a->other_label, sizeof a->other_label, "baseline");
                memset(&a->geom, 0, sizeof a->geom);
                tui_draw_heatmap(a, (TuiRect){ 0, hy, a->w, hh }, 0);
                a->grid = save;
                a->geom = gsave;
                a->hm_delta = dsave;
                memcpy(a->other_label, lsave, sizeof lsave);
            }
            tui_grid_done(&g);
        }
    }
    if (!st[0] && a->running)
        snprintf(st, sizeof st, "running %d/%d", a->run_done, a->run_total);
    tui_draw_status(a, st);
    tui_draw_keys(a, steer_keys);
}

static int steer_key(TuiView *v, TuiApp *a, int key)
{
    if (!v->priv)
        v->priv = calloc(1, sizeof(SteerPriv));
    SteerPriv *p = v->priv;
    if (!p)
        return TUI_K_IGNORED;
    int top = 0;
    int r = tui_list_nav(key, &p->cur, &top, a->n_iv, 6);
    if (r != TUI_K_IGNORED)
        return r;
    EngIv *iv = p->cur < a->n_iv ? &a->ivs[p->cur] : NULL;
    switch (key) {
    case 'x':
    case KEY_DC:
        if (iv) {
            memmove(iv, iv + 1, (size_t)(a->n_iv - p->cur - 1) * sizeof(EngIv));
            a->n_iv--;
            if (p->cur >= a->n_iv && p->cur > 0)
                p->cur--;
        }
        break;
    case 's':
        if (iv) {
            iv->scope = (EngScope)((iv->scope + 1) % 4);
            if (iv->scope == ENG_SCOPE_FROM)
                iv->from_pos = a->sel_tok;
        }
        break;
    case '+':
    case '-':
        if (iv && iv->kind == ENG_IV_BIAS)
            iv->value += key == '+' ? 0.5f : -0.5f;
        else if (iv && iv->kind == ENG_IV_TOPK) {
            int k = (int)iv->value + (key == '+' ? 1 : -1);
            if (k >= 1 && k <= a->agg.n_expert)
                iv->value = (float)k;
        }
        break;
    case 'c':
        if (a->running) {
            tui_queue_cancel(&a->q);
            tui_app_msg(a, "cancelling the run…");
        }
        break;
    case 'r': {
        const char *prompt = NULL;
        int base = -1;
        /* re-run the baseline again if this view shows a steered result */
        if (a->live_is_steer && a->base_toks.n > 0 && !a->running) {
            for (int i = 0; i < a->runs.n; i++)
                if (a->runs.a[i].id == a->live_parent)
                    base = i;
            if (base >= 0 && tui_app_open_run(a, base) == 0)
                prompt = a->runs.a[base].prompt;
        } else if (a->cur_run >= 0 && a->cur_run < a->runs.n) {
            prompt = a->runs.a[a->cur_run].prompt;
        }
        if (!prompt) {
            tui_app_msg(a, "open a run first");
            break;
        }
        char pr[4096];
        snprintf(pr, sizeof pr, "%s", prompt);
        tui_app_start_run(a, pr, 1);
        break;
    }
    default:
        return TUI_K_IGNORED;
    }
    return TUI_K_HANDLED | TUI_K_REDRAW;
}

static void steer_free(TuiView *v)
{
    free(v->priv);
    v->priv = NULL;
}

const TuiViewClass tui_view_steer_class = {
    .name = "steer",
    .draw = steer_draw,
    .on_key = steer_key,
    .resize = NULL,
    .free = steer_free,
};
