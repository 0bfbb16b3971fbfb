/*
** tui/view_prompt.c — type a prompt (several lines, UTF-8) and generate
** live: the text streams in below and the heatmap fills as routes arrive.
** Input bytes are stored as typed; only complete UTF-8 sequences are shown.
*/
#include "tui/app.h"

#include <curses.h>
#include <stdio.h>
#include <string.h>

static const char *const prompt_keys[] = {
    "^G/F10", "Generate", "Enter", "New line", "c", "Cancel (running)", "Esc", "Back", "F1", "Help", NULL
};

static void prompt_draw(TuiView *v, TuiApp *a)
{
    (void)v;
    tui_draw_header(a);
    int body = a->h - 3;
    int eh = body / 3 < 4 ? 4 : body / 3;
    TuiRect eb = { 0, 1, a->w, eh };
    tui_draw_box(a, eb, a->running ? "Prompt (generating…)" : "Prompt: type, then Ctrl-G to generate", 1);
    /* the prompt, line by line, last lines visible */
    int nlines = 1;
    for (int i = 0; i < a->prompt_len; i++)
        nlines += a->prompt_buf[i] == '\n';
    int skip = nlines > eh - 2 ? nlines - (eh - 2) : 0;
    const char *s = a->prompt_buf;
    int line = 0, y = 2;
    char buf[1024];
    while (s) {
        const char *nl = memchr(s, '\n', (size_t)(a->prompt_buf + a->prompt_len - s));
        size_t len = nl ? (size_t)(nl - s) : (size_t)(a->prompt_buf + a->prompt_len - s);
        if (line >= skip && y < 1 + eh - 1) {
            tui_escape(s, len, buf, sizeof buf);
            int w = tui_draw_str(a, y, 2, a->w - 4, buf, 0);
            if (!nl && !a->running)
                tui_draw_str(a, y, 2 + w, 1, "_", A_BLINK | A_BOLD);
            y++;
        }
        line++;
        s = nl ? nl + 1 : NULL;
    }
    int rest = body - eh;
    if (rest >= 6 && a->agg.cnt) {
        int hh = a->agg.n_layer + 3 < rest - 3 ? a->agg.n_layer + 3 : rest - 3;
        tui_draw_heatmap(a, (TuiRect){ 0, 1 + eh, a->w, hh }, 0);
        TuiRect tb = { 0, 1 + eh + hh, a->w, rest - hh };
        tui_draw_box(a, tb, "Output", 0);
        tui_draw_tokens(a, (TuiRect){ 1, tb.y + 1, a->w - 2, tb.h - 2 }, 0, &a->toks, -1, 1);
    }
    char st[128] = "";
    if (a->running)
        snprintf(st, sizeof st, "generating %d/%d", a->run_done, a->run_total);
    else
        snprintf(st, sizeof st, "%d bytes", a->prompt_len);
    tui_draw_status(a, st);
    tui_draw_keys(a, prompt_keys);
}

static int prompt_key(TuiView *v, TuiApp *a, int key)
{
    (void)v;
    if (key == 7 || key == KEY_F(10)) {
        if (a->prompt_len == 0) {
            tui_app_msg(a, "type a prompt first");
            return TUI_K_HANDLED | TUI_K_REDRAW;
        }
        a->prompt_buf[a->prompt_len] = 0;
        tui_app_start_run(a, a->prompt_buf, 0);
        return TUI_K_HANDLED | TUI_K_REDRAW;
    }
    if (a->running) {
        /* no typing while generating; c cancels, other keys work as anywhere */
        if (key == 'c') {
            tui_queue_cancel(&a->q);
            tui_app_msg(a, "cancelling the run…");
            return TUI_K_HANDLED | TUI_K_REDRAW;
        }
        return key >= 32 && key < 256 && key != 127 && key != 'q' ? TUI_K_HANDLED : TUI_K_IGNORED;
    }
    if (key == '\r' || key == '\n' || key == KEY_ENTER)
        key = '\n';
    if (key == KEY_BACKSPACE || key == 127 || key == 8) {
        while (a->prompt_len > 0 && ((unsigned char)a->prompt_buf[a->prompt_len - 1] & 0xC0) == 0x80)
            a->prompt_len--;
        if (a->prompt_len > 0)
            a->prompt_len--;
        a->prompt_buf[a->prompt_len] = 0;
        return TUI_K_HANDLED | TUI_K_REDRAW;
    }
    if ((key == '\n' || key == '\t' || (key >= 32 && key < 256 && key != 127)) &&
        a->prompt_len < (int)sizeof a->prompt_buf - 1) {
        a->prompt_buf[a->prompt_len++] = (char)key;
        a->prompt_buf[a->prompt_len] = 0;
        return TUI_K_HANDLED | TUI_K_REDRAW;
    }
    return TUI_K_IGNORED;
}

const TuiViewClass tui_view_prompt_class = {
    .name = "prompt",
    .draw = prompt_draw,
    .on_key = prompt_key,
    .resize = NULL,
    .free = NULL,
};
