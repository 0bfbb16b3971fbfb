/*
** tui/app_scale.c — the colour scheme and the heat scales.
**
** Colours are chosen by meaning (TUI_C_*) and installed here only.  A heat
** scale maps a value to a bin; a bin maps to a colour pair (when the
** terminal has colours) and to a shade glyph (always, so the map reads in
** monochrome too).  Sequential scales (share, weight) start at a blank zero;
** diverging scales (Δ) are symmetric around zero, blue below and red above.
** Edges are "nice" round numbers so the legend is legible.
*/
#include "tui/app.h"

#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

TuiColors tui_colors_pick(int ncolors, const char *no_color)
{
    if (no_color && no_color[0])
        return TUI_COLORS_NONE;
    if (ncolors >= 256)
        return TUI_COLORS_256;
    if (ncolors >= 8)
        return TUI_COLORS_8;
    return TUI_COLORS_NONE;
}

/* The scheme: one row per meaning, 8-colour and 256-colour fg/bg. */
typedef struct { int pair; short fg8, bg8, fg256, bg256; } Scheme;

static const Scheme scheme[] = {
    { TUI_C_HEADER,   COLOR_BLACK,  COLOR_CYAN,   16,  38 },
    { TUI_C_BORDER,   COLOR_BLUE,   -1,           67,  -1 },
    { TUI_C_TITLE,    COLOR_CYAN,   -1,           81,  -1 },
    { TUI_C_SELECTED, COLOR_BLACK,  COLOR_CYAN,   16,  117 },
    { TUI_C_STATUS,   COLOR_WHITE,  COLOR_BLUE,   231, 24 },
    { TUI_C_KEY,      COLOR_WHITE,  -1,           231, -1 },
    { TUI_C_KEYLABEL, COLOR_BLACK,  COLOR_CYAN,   16,  38 },
    { TUI_C_MARK,     COLOR_YELLOW, -1,           220, -1 },
    { TUI_C_WARN,     COLOR_RED,    -1,           203, -1 },
    { TUI_C_IV,       COLOR_BLACK,  COLOR_MAGENTA, 16, 177 },
    { TUI_C_DIVERGE,  COLOR_WHITE,  COLOR_RED,    231, 160 },
    { TUI_C_HIT,      COLOR_BLACK,  COLOR_YELLOW, 16,  220 },
};

/* sequential ramp, low → high */
static const short heat8[TUI_HEAT_MAX] = {
    COLOR_BLUE, COLOR_CYAN, COLOR_GREEN, COLOR_YELLOW,
    COLOR_RED, COLOR_MAGENTA, COLOR_WHITE, COLOR_WHITE };
static const short heat256[TUI_HEAT_MAX] = { 60, 67, 73, 79, 114, 148, 184, 226 };
/* diverging: negative side weak → strong, positive side weak → strong */
static const short divneg256[TUI_HEAT_MAX] = { 153, 117, 111, 75, 69, 33, 27, 21 };
static const short divpos256[TUI_HEAT_MAX] = { 224, 217, 210, 209, 203, 202, 196, 160 };

void tui_scheme_init(TuiColors c)
{
    if (c == TUI_COLORS_NONE)
        return;
    int big = c == TUI_COLORS_256;
    for (size_t i = 0; i < sizeof scheme / sizeof scheme[0]; i++) {
        const Scheme *s = &scheme[i];
        init_pair((short)s->pair, big ? s->fg256 : s->fg8, big ? s->bg256 : s->bg8);
    }
    for (int i = 0; i < TUI_HEAT_MAX; i++) {
        init_pair((short)(TUI_C_HEAT0 + i), big ? heat256[i] : heat8[i], -1);
        init_pair((short)(TUI_C_DIV0 + i), big ? divneg256[i] : COLOR_BLUE, -1);
        init_pair((short)(TUI_C_DIV0 + TUI_HEAT_MAX + i), big ? divpos256[i] : COLOR_RED, -1);
    }
}

/* Smallest nice number (1, 2, 2.5, 5 × 10^n) >= x, x > 0. */
static float nice_ceil(float x)
{
    float p = powf(10.0f, floorf(log10f(x)));
    static const float m[] = { 1.0f, 2.0f, 2.5f, 5.0f, 10.0f };
    for (int i = 0; i < 5; i++)
        if (m[i] * p >= x * 0.9999f)
            return m[i] * p;
    return 10.0f * p;
}

void tui_scale_make(TuiScale *s, TuiScaleKind kind, float vmax, int nbins, int percent)
{
    memset(s, 0, sizeof *s);
    if (nbins < 1)
        nbins = 1;
    if (nbins > TUI_HEAT_MAX)
        nbins = TUI_HEAT_MAX;
    if (!(vmax > 0.0f) || !isfinite(vmax))
        vmax = 1.0f;
    s->kind = kind;
    s->nbins = nbins;
    s->percent = percent;
    float step = nice_ceil(vmax / (float)nbins);
    for (int i = 0; i <= nbins; i++)
        s->edge[i] = step * (float)i;
}

int tui_scale_bin(const TuiScale *s, float v)
{
    if (!isfinite(v))
        return 0;
    float m = fabsf(v);
    if (s->kind == TUI_SCALE_SEQ && v <= 0.0f)
        return 0;
    if (m < 1e-9f)
        return 0;
    float step = s->edge[1];
    int b = (int)floorf(m / step) + 1;
    if (b > s->nbins)
        b = s->nbins;
    if (b < 1)
        b = 1;
    return (s->kind == TUI_SCALE_DIV && v < 0.0f) ? -b : b;
}

int tui_scale_pair(const TuiScale *s, int bin, TuiColors c)
{
    if (c == TUI_COLORS_NONE || bin == 0)
        return TUI_C_NORMAL;
    int m = bin < 0 ? -bin : bin;
    /* spread the bins over the ramp */
    int idx = s->nbins > 1 ? (m - 1) * (TUI_HEAT_MAX - 1) / (s->nbins - 1) : TUI_HEAT_MAX - 1;
    if (c == TUI_COLORS_8 && s->kind == TUI_SCALE_SEQ)
        idx = s->nbins > 1 ? (m - 1) * 4 / s->nbins : 3;   /* blue cyan green yellow red */
    if (s->kind == TUI_SCALE_SEQ)
        return TUI_C_HEAT0 + idx;
    return bin < 0 ? TUI_C_DIV0 + idx : TUI_C_DIV0 + TUI_HEAT_MAX + idx;
}

const char *tui_scale_glyph(const TuiScale *s, int bin, int utf8)
{
    static const char *const u8[4] = { "░░", "▒▒", "▓▓", "██" };
    static const char *const as[4] = { "..", "::", "##", "@@" };
    static const char *const u8n[4] = { "-░", "-▒", "-▓", "-█" };
    static const char *const u8p[4] = { "+░", "+▒", "+▓", "+█" };
    static const char *const asn[4] = { "-.", "-:", "-#", "-@" };
    static const char *const asp[4] = { "+.", "+:", "+#", "+@" };
    if (bin == 0)
        return "  ";
    int m = bin < 0 ? -bin : bin;
    int lvl = (m * 4 + s->nbins - 1) / s->nbins - 1;   /* 0..3 */
    if (lvl < 0)
        lvl = 0;
    if (lvl > 3)
        lvl = 3;
    if (s->kind == TUI_SCALE_SEQ)
        return utf8 ? u8[lvl] : as[lvl];
    if (bin < 0)
        return utf8 ? u8n[lvl] : asn[lvl];
    return utf8 ? u8p[lvl] : asp[lvl];
}

static int fmt_num(const TuiScale *s, float v, char *buf, size_t cap)
{
    if (s->percent)
        return snprintf(buf, cap, "%g%%", (double)(v * 100.0f));
    return snprintf(buf, cap, "%g", (double)v);
}

int tui_scale_label(const TuiScale *s, int bin, char *buf, size_t cap)
{
    char num[32];
    int m = bin < 0 ? -bin : bin;
    if (bin == 0 || m > s->nbins)
        return snprintf(buf, cap, "0");
    int top = m == s->nbins;
    /* the top bin is open-ended: ">= its lower edge"; the others "< upper edge" */
    fmt_num(s, top ? s->edge[m - 1] : s->edge[m], num, sizeof num);
    if (s->kind == TUI_SCALE_SEQ)
        return snprintf(buf, cap, "%s%s", top ? ">=" : "<", num);
    if (bin > 0)
        return snprintf(buf, cap, "%s+%s", top ? ">=" : "<", num);
    return snprintf(buf, cap, "%s-%s", top ? "<=" : ">", num);
}

void tui_bar(float frac, int width, int utf8, char *buf, size_t cap)
{
    static const char *const eighth[8] = { "", "▏", "▎", "▍", "▌", "▋", "▊", "▉" };
    size_t o = 0;
    if (cap == 0)
        return;
    buf[0] = 0;
    if (!(frac > 0.0f))
        frac = 0.0f;
    if (frac > 1.0f)
        frac = 1.0f;
    int units = (int)lroundf(frac * (float)width * 8.0f);
    int full = units / 8, part = units % 8;
    for (int i = 0; i < full; i++) {
        const char *g = utf8 ? "█" : "#";
        size_t gl = strlen(g);
        if (o + gl + 1 > cap)
            break;
        memcpy(buf + o, g, gl);
        o += gl;
    }
    if (part && full < width) {
        const char *g = utf8 ? eighth[part] : (part >= 4 ? "+" : "");
        size_t gl = strlen(g);
        if (o + gl + 1 <= cap) {
            memcpy(buf + o, g, gl);
            o += gl;
        }
    }
    buf[o] = 0;
}
