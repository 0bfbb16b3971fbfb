/*
** tui/app.h — internals of the full-screen app (`moescope tui`).
**
** The app is a stack of views over one data model.  The model holds what the
** screens show — the run list, a layer×expert aggregate for the current run
** or set, the tokens of the current run with their routes, the intervention
** list — and knows nothing about where it came from: a loader fills it from
** the database, the engine worker fills it during a live run, the tests fill
** it by hand.  Views only read the model and the shared selection (layer,
** expert, token), so every screen works the same on recorded and live data.
**
** Pieces, each with pure functions the unit tests call directly:
**   layout   terminal size → rectangles (header, heatmap, tokens, route,
**            status, key bar); below a minimum size a notice instead.
**   scale    value → bin → colour pair and shade glyph; legend numbers.
**   text     escaping of control characters in strings from files/db;
**            UTF-8 display width.
**   heatmap  geometry for big grids: scrolling and condensing.
**   views    a class table {name, draw, on_key, resize, free} per screen;
**            key handlers return TUI_K_* flags.
**   worker   the engine on its own thread, talking to the UI through a
**            mutex-protected queue the UI polls between key presses.
*/
#ifndef TUI_APP_H
#define TUI_APP_H

#include "engine/eng.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef struct TuiRunner TuiRunner;

/* ---- layout ---------------------------------------------------------- */

typedef struct { int x, y, w, h; } TuiRect;

#define TUI_MIN_W 40
#define TUI_MIN_H 12

typedef struct {
    int ok;             /* 0: terminal below TUI_MIN_W × TUI_MIN_H */
    TuiRect header;     /* row 0 */
    TuiRect heat;       /* heatmap box incl. border */
    TuiRect tokens;     /* tokens box incl. border */
    TuiRect route;      /* route-of-token box incl. border */
    TuiRect status;     /* one row above the key bar */
    TuiRect keys;       /* last row */
    TuiRect body;       /* everything between header and status */
} TuiLayout;

/* Split a w×h terminal for the main screen whose heatmap has n_layer rows.
** Pure; can't fail (any w, h including 0 gives ok = 0 and empty rects). */
void tui_layout_compute(int w, int h, int n_layer, TuiLayout *out);

/* ---- colour scheme and heat scale ------------------------------------ */

/* Colours by meaning.  Pair numbers are these values; only app_scale.c
** calls init_pair. */
enum {
    TUI_C_NORMAL = 0,
    TUI_C_HEADER = 1,
    TUI_C_BORDER,
    TUI_C_TITLE,
    TUI_C_SELECTED,
    TUI_C_STATUS,
    TUI_C_KEY,
    TUI_C_KEYLABEL,
    TUI_C_MARK,
    TUI_C_WARN,
    TUI_C_IV,           /* a cell or item with an intervention */
    TUI_C_DIVERGE,      /* the first divergence in the steer view */
    TUI_C_HIT,          /* token routed to the selected expert */
    TUI_C_HEAT0,        /* sequential ramp: TUI_C_HEAT0 .. +TUI_HEAT_MAX-1 */
    TUI_C_DIV0 = TUI_C_HEAT0 + 8, /* diverging ramp: DIV0 .. +2*8-1 */
    TUI_C_COUNT = TUI_C_DIV0 + 16
};
#define TUI_HEAT_MAX 8

typedef enum { TUI_COLORS_NONE = 0, TUI_COLORS_8, TUI_COLORS_256 } TuiColors;

typedef struct {
    TuiColors colors;
    int utf8;           /* block characters and box drawing allowed */
} TuiTerm;

/* Decide the colour depth from the terminal's colour count and NO_COLOR
** (set and non-empty → none).  Pure. */
TuiColors tui_colors_pick(int ncolors, const char *no_color);
/* Install the scheme's pairs for the chosen depth (after start_color). */
void tui_scheme_init(TuiColors c);

typedef enum { TUI_SCALE_SEQ = 0, TUI_SCALE_DIV } TuiScaleKind;

typedef struct {
    TuiScaleKind kind;
    int nbins;          /* SEQ: bins above zero; DIV: bins per side */
    float edge[TUI_HEAT_MAX + 1]; /* SEQ: edge[0]=0 < edge[1] < … < edge[nbins]=max;
                                     DIV: magnitudes, same layout */
    int percent;        /* legend in percent (shares) */
} TuiScale;

/* Build a scale over values up to vmax (SEQ) or ±vmax (DIV) with nbins
** bins (1..TUI_HEAT_MAX); edges are rounded to "nice" numbers (1, 2, 2.5, 5
** × 10^n) so the legend reads well.  vmax <= 0 gives a unit scale. */
void tui_scale_make(TuiScale *s, TuiScaleKind kind, float vmax, int nbins, int percent);
/* Bin of v: SEQ → 0 for v <= 0 (blank), 1..nbins otherwise;
** DIV → -nbins..nbins, 0 for |v| below edge[0]'s tiny epsilon. */
int tui_scale_bin(const TuiScale *s, float v);
/* Colour pair for a bin under the given depth (TUI_C_NORMAL when none). */
int tui_scale_pair(const TuiScale *s, int bin, TuiColors c);
/* Two-column cell text for a bin: block characters (░▒▓█) in UTF-8, " .:#@"
** style otherwise; diverging bins use the same ramp by magnitude and a
** sign in ASCII mode.  Returns a static string. */
const char *tui_scale_glyph(const TuiScale *s, int bin, int utf8);
/* Legend label for bin i into buf: "<10%" for a bin below 10 %, ">=30%"
** for the open top bin; diverging: "<+0.2", ">=+0.6", ">-0.2", "<=-0.6". */
int tui_scale_label(const TuiScale *s, int bin, char *buf, size_t cap);

/* Horizontal bar of frac (0..1) over width cells using eighth blocks in
** UTF-8 or '#' otherwise; writes a NUL-terminated string. */
void tui_bar(float frac, int width, int utf8, char *buf, size_t cap);

/* ---- text ------------------------------------------------------------ */

/* Copy len bytes of untrusted text into out (NUL-terminated, at most cap
** bytes) with control characters escaped: \n \t \r \\ as written, other
** C0/DEL/C1 controls and invalid UTF-8 as \xNN.  Returns the length the
** full escaped text needs (snprintf semantics). */
size_t tui_escape(const char *in, size_t len, char *out, size_t cap);
/* Display columns of a UTF-8 string (1 per code point; 2 for the East
** Asian wide ranges; invalid bytes count 1). */
int tui_str_width(const char *s);
/* Byte length of the longest prefix of s that fits in cols columns. */
size_t tui_str_fit(const char *s, int cols);
/* Length of the UTF-8 sequence starting at s (1..4), 1 for an invalid byte. */
int tui_utf8_len(const char *s, size_t avail);

/* ---- data model ------------------------------------------------------ */

typedef struct {
    int64_t id, parent;     /* parent 0 = none */
    char tag[64];
    char model[128];
    char *prompt;           /* owned, raw (escape before showing) */
    char *ivs;              /* owned: interventions as text, "" if none */
    int n_tok, n_prompt;
    char status[16];
    char date[24];
    int marked;
} TuiRun;

typedef struct {
    TuiRun *a;
    int n, cap;
} TuiRunList;

/* Per-run (or per-set) aggregates, layer-major: idx = l*n_expert + e. */
typedef struct {
    int n_layer, n_expert, k;
    int n_tok, n_prompt;    /* positions summed over the set */
    int n_counted;          /* of n_tok: tokens of count-only imported runs
                               (counts without tokens: no prompt/gen split) */
    float *cnt, *cnt_p;     /* tokens routed (all positions, prompt only) */
    float *wt, *wt_p;       /* weight mass (all, prompt only) */
} TuiAgg;

typedef struct {
    int n_layer, n_expert, k;
    int n, cap;
    char **piece;           /* owned raw bytes of each token's text */
    int32_t *id;
    uint8_t *is_prompt;
    float *logprob;         /* NAN when unknown */
    int32_t *experts;       /* n × n_layer × k, -1 unused */
    float *weights;         /* n × n_layer × k */
    float *entropy;         /* n: mean router entropy (nats) over layers */
    float *logits;          /* n × n_layer × n_expert when keep_logits */
    int keep_logits;
} TuiTokens;

/* What the heatmap shows. */
typedef enum {
    TUI_HM_SHARE = 0,   /* tokens routed / positions */
    TUI_HM_WEIGHT,      /* weight mass / positions */
} TuiHmValue;
typedef enum { TUI_HM_ALL = 0, TUI_HM_PROMPT, TUI_HM_GEN } TuiHmPart;

typedef struct {
    int n_layer, n_expert;
    float *v;               /* n_layer × n_expert */
    int diverging;
    char label[96];
} TuiGrid;

int tui_agg_init(TuiAgg *a, int n_layer, int n_expert, int k);
void tui_agg_done(TuiAgg *a);
void tui_agg_clear(TuiAgg *a);
/* Add one route record (k experts with weights) to the aggregate. */
void tui_agg_add(TuiAgg *a, int layer, int is_prompt, const int32_t *experts,
                 const float *weights, int k);
/* Fill g (same shape as a) with the chosen value/part; positions counted
** accordingly.  Returns -1 on shape mismatch/allocation failure. */
int tui_grid_from_agg(TuiGrid *g, const TuiAgg *a, TuiHmValue v, TuiHmPart p);
/* g = share(a) - share(b) for the Δ toggle. */
int tui_grid_delta(TuiGrid *g, const TuiAgg *a, const TuiAgg *b, TuiHmValue v, TuiHmPart p);
void tui_grid_done(TuiGrid *g);

int tui_tokens_init(TuiTokens *t, int n_layer, int n_expert, int k, int keep_logits);
void tui_tokens_done(TuiTokens *t);
/* Append a token (piece is copied); returns its index or -1. */
int tui_tokens_push(TuiTokens *t, int32_t id, const char *piece, size_t len,
                    int is_prompt, float logprob);
/* Turn raw vocabulary pieces into the text they stand for: through the
** runner's model when it knows the token, else SentencePiece conventions
** ("▁" is a space, "<0xNN>" a byte) and GPT-2 byte-level BPE ("Ġ" space,
** "Ċ" newline).  Can't fail (a piece that cannot be converted is kept). */
void tui_tokens_to_text(TuiTokens *t, const TuiRunner *r);
/* The same for one piece into buf (NUL-terminated); returns the length. */
size_t tui_piece_text(const char *raw, char *buf, size_t cap);
/* Set the token at position pos: appends (padding any gap with empty
** placeholder tokens) or replaces a placeholder.  Returns pos or -1. */
int tui_tokens_put(TuiTokens *t, int pos, int32_t id, const char *piece, size_t len,
                   int is_prompt, float logprob);
/* Record a route for token i (experts/weights k entries, logits n_expert
** or NULL); updates the token's entropy.  Returns -1 on bad index. */
int tui_tokens_set_route(TuiTokens *t, int i, int layer, const int32_t *experts,
                         const float *weights, int k, const float *logits);
/* 1 if token i was routed to (layer, expert). */
int tui_tokens_hit(const TuiTokens *t, int i, int layer, int expert);

void tui_runs_done(TuiRunList *r);
/* Append a copy of run (strings duplicated); -1 on allocation failure. */
int tui_runs_push(TuiRunList *r, const TuiRun *run);

/* ---- heatmap geometry ------------------------------------------------ */

#define TUI_HM_LABEL 6      /* "L12   " */
#define TUI_HM_CELL 3       /* two glyph columns + a gap */

typedef struct {
    int cols, rows;         /* visible columns and rows */
    int egroup, lgroup;     /* experts/layers merged per cell (condense) */
    int e0, l0;             /* first visible expert/layer (in units) */
    int n_ecol, n_lrow;     /* total columns/rows in grouped units */
} TuiHmGeom;

/* Fit an n_layer × n_expert grid into w × h cells (inner area, one header
** row for expert numbers).  condense merges experts (and layers) so that
** everything fits; otherwise the view scrolls so the cursor (cl, ce) stays
** visible, starting from the previous offsets in *g (pass zeros first).
** Pure; handles tiny areas (cols/rows may be 0). */
void tui_hm_geom(TuiHmGeom *g, int n_layer, int n_expert, int w, int h,
                 int condense, int cl, int ce);
/* Value shown in a condensed cell: the maximum over its group. */
float tui_hm_cell(const TuiGrid *gr, const TuiHmGeom *g, int row, int col);

/* ---- keys and views -------------------------------------------------- */

enum {
    TUI_K_IGNORED = 0,
    TUI_K_HANDLED = 1,
    TUI_K_REDRAW  = 2,
    TUI_K_QUIT    = 4,
};

/* Shared list navigation: moves *cur within [0, n) for up/down/j/k/PgUp/
** PgDn/Home/End/g/G with page rows; keeps *top so *cur is visible.
** Returns TUI_K_REDRAW|HANDLED when it acted, TUI_K_IGNORED otherwise. */
int tui_list_nav(int key, int *cur, int *top, int n, int page);

typedef struct TuiApp TuiApp;
typedef struct TuiView TuiView;

typedef struct {
    const char *name;
    void (*draw)(TuiView *v, TuiApp *a);
    int (*on_key)(TuiView *v, TuiApp *a, int key);
    void (*resize)(TuiView *v, TuiApp *a);
    void (*free)(TuiView *v);
} TuiViewClass;

struct TuiView {
    const TuiViewClass *cls;
    int dirty;
    void *priv;
};

typedef enum {
    TUI_V_RUNS = 0, TUI_V_HEAT, TUI_V_TOKENS, TUI_V_EXPERT, TUI_V_STEER,
    TUI_V_PROMPT, TUI_V_HELP, TUI_V_COUNT
} TuiViewId;

extern const TuiViewClass tui_view_runs_class, tui_view_heat_class,
    tui_view_tokens_class, tui_view_expert_class, tui_view_steer_class,
    tui_view_prompt_class, tui_view_help_class;

/* Contrast statistics of the heatmap's Δ: per layer×expert (absolute
** layers) the 95 % interval of the difference in share and the
** Benjamini–Hochberg q-value; has = 0 for cells not tested. */
typedef struct {
    int n_layer, n_expert;
    float *delta, *lo, *hi, *q;
    uint8_t *has;
    int n_perm;
} TuiCi;

void tui_ci_done(TuiCi *c);     /* accepts NULL */

/* ---- data source ----------------------------------------------------- */

/* Where recorded data comes from.  Each function fills the model and
** returns 0, or -1 with a message in err. */
typedef struct TuiSource {
    void *self;
    int (*list_runs)(void *self, TuiRunList *out, char *err, size_t cap);
    /* aggregates of the given runs summed (n ≥ 1) */
    int (*load_agg)(void *self, const int64_t *runs, int n, TuiAgg *out, char *err, size_t cap);
    /* aggregates of every run with tag, or of every run without it (not=1) */
    int (*load_tag_agg)(void *self, const char *tag, int not, TuiAgg *out, char *err, size_t cap);
    /* pieces are the database's raw vocabulary strings */
    int (*load_tokens)(void *self, int64_t run, TuiTokens *out, char *err, size_t cap);
    void (*close)(void *self);
    /* contrast of the runs tagged a against those tagged b (may be NULL) */
    int (*contrast)(void *self, const char *tag_a, const char *tag_b, TuiCi *out,
                    char *err, size_t cap);
} TuiSource;

/* app_db.c: open path (create=1: create if missing) and fill src with the
** functions reading it.  Returns 0, or -1 with a message naming the file in
** err.  src->close(src->self) closes it. */
int tui_db_source_open(TuiSource *src, const char *path, int create, char *err, size_t cap);

/* ---- engine worker --------------------------------------------------- */

typedef enum {
    TUI_EV_TOKEN = 1,   /* a token: id, piece, is_prompt, logprob */
    TUI_EV_ROUTE,       /* a route of token pos at layer */
    TUI_EV_PROGRESS,    /* done of total */
    TUI_EV_DONE,        /* run finished; run_id set if logged */
    TUI_EV_ERROR,       /* msg set */
} TuiEvKind;

typedef struct TuiEv {
    TuiEvKind kind;
    int pos, layer, is_prompt, k;
    int32_t id;
    float logprob;
    int32_t experts[16];
    float weights[16];
    int n_logits;           /* ROUTE: router logits included (n_expert <= 64) */
    float logits[64];
    int done, total;
    int64_t run_id;
    char msg[256];          /* piece bytes for TOKEN (NUL-terminated), error text */
    struct TuiEv *next;
} TuiEv;

typedef struct {
    pthread_mutex_t mu;
    TuiEv *head, *tail;
    int n;
    int cancel;             /* set by the UI, read by the producer */
} TuiQueue;

int tui_queue_init(TuiQueue *q);
void tui_queue_done(TuiQueue *q);         /* frees pending events */
/* Copy ev onto the queue (producer side); -1 on allocation failure. */
int tui_queue_push(TuiQueue *q, const TuiEv *ev);
/* Take up to max events in order (consumer side); returns the list (caller
** frees each with free()) and the count in *n.  Never blocks for long. */
TuiEv *tui_queue_take(TuiQueue *q, int max, int *n);
void tui_queue_cancel(TuiQueue *q);
int tui_queue_cancelled(TuiQueue *q);

/* ---- live runs ------------------------------------------------------- */

/* Something that can generate in the background (the engine).  start()
** launches a thread that pushes TuiEv records onto q — the prompt tokens,
** each generated token, the routes, progress, then DONE or ERROR — and
** returns at once.  join() waits for that thread (call after DONE/ERROR or
** after tui_queue_cancel).  Both return 0, or -1 with a message in err. */
typedef struct TuiRunner {
    void *self;
    int (*start)(void *self, const char *prompt, const EngIv *ivs, int n_iv,
                 int64_t parent, const char *tag, TuiQueue *q, char *err, size_t cap);
    void (*join)(void *self);
    void (*close)(void *self);
    /* text a recorded token stands for (raw = its vocabulary string as the
    ** database keeps it); returns the length or -1 if the token is not from
    ** this model's vocabulary.  May be NULL. */
    int (*piece)(void *self, int32_t id, const char *raw, size_t raw_len, char *buf, int cap);
    int n_layer, n_expert, k;   /* shape of the routes it produces */
    int n_predict;              /* tokens to generate */
} TuiRunner;

/* app_engine.c: open the model and fill out with a runner that generates
** on its own thread and logs each run to db_path (a re-run as a child of
** its parent).  title receives a one-line description of the model.
** Returns 0, or -1 with the engine's message in err. */
int tui_engine_runner_open(TuiRunner *out, const char *model_path, const char *db_path,
                           int n_predict, int n_threads, char *title, size_t tcap,
                           char *err, size_t cap);
/* Prompts typed in the app are wrapped in the model's chat format (--chat),
** with an optional system message. */
void tui_engine_runner_set_chat(TuiRunner *r, int chat, const char *system);

/* ---- the app --------------------------------------------------------- */

#define TUI_MAX_IV 64
#define TUI_MAX_TOKPOS 4096

typedef enum { TUI_TC_HIT = 0, TUI_TC_ENTROPY, TUI_TC_LOGPROB } TuiTokColor;

/* Where a token was drawn (for mouse clicks). */
typedef struct { int y, x, w, i; } TuiTokPos;

struct TuiApp {
    TuiTerm term;
    TuiLayout lay;
    int w, h;
    TuiSource *src;             /* recorded data; NULL = none */
    TuiRunner *runner;          /* live runs; NULL = no model */
    char title[160];            /* header: model / db */

    TuiRunList runs;
    int cur_run;                /* index in runs of the opened run, -1 none */
    int n_set;                  /* runs summed into agg (1 = one run) */
    char set_label[96];

    TuiAgg agg, other;          /* current run/set; Δ reference */
    int have_other;
    char other_label[64];
    TuiCi ci;                   /* statistics of the Δ when vs a tag */
    TuiTokens toks;
    TuiGrid grid;
    TuiHmValue hm_value;
    TuiHmPart hm_part;
    int hm_delta, condense;
    TuiHmGeom geom;

    int sel_layer, sel_expert, sel_tok;
    TuiTokColor tok_color;
    TuiTokPos tokpos[TUI_MAX_TOKPOS];
    int n_tokpos;
    int focus_tokens;           /* main screen: tokens pane has the keys */

    EngIv ivs[TUI_MAX_IV];
    int n_iv;

    /* live run */
    TuiQueue q;
    int running;
    int run_done, run_total;
    int64_t live_parent;        /* baseline run id of a steered run */
    int live_is_steer;
    TuiTokens base_toks;        /* the baseline's tokens for the comparison */
    TuiAgg base_agg;
    int64_t live_run_id;
    char prompt_buf[4096];      /* prompt screen text (UTF-8) */
    int prompt_len;

    char msg[256];              /* one-shot message for the status line */
    TuiView views[TUI_V_COUNT];
    int cur, back[8], n_back;   /* current view and the way back */
    int mouse_y, mouse_x;       /* last click (KEY_MOUSE) */
    int dirty_all;
    int quit;
};

/* app.c */
int tui_app_init(TuiApp *a, TuiSource *src, TuiRunner *runner, const char *title);
void tui_app_done(TuiApp *a);
/* Feed one key (as getch() returns it) through the current view and the
** global keys; returns TUI_K_* flags.  Used by the loop and by the tests. */
int tui_app_key(TuiApp *a, int key);
/* Draw what is dirty into stdscr (no refresh). */
void tui_app_draw(TuiApp *a);
/* Apply pending worker events; returns 1 if anything changed. */
int tui_app_poll(TuiApp *a);
/* Size changed (or first draw): recompute the layout, mark all dirty. */
void tui_app_resize(TuiApp *a, int w, int h);
void tui_app_show(TuiApp *a, TuiViewId v);
void tui_app_back(TuiApp *a);
/* Open run index i (or the marked set when any run is marked). */
int tui_app_open_run(TuiApp *a, int i);
/* Recompute the heatmap grid from the aggregates and toggles. */
void tui_app_regrid(TuiApp *a);
void tui_app_msg(TuiApp *a, const char *fmt, ...);
/* Start a live run of prompt with the current interventions (steer=1: a
** child of the opened run, compared against it). */
int tui_app_start_run(TuiApp *a, const char *prompt, int steer);
/* The full-screen loop: initscr … endwin.  Returns the exit status. */
int tui_app_run(TuiApp *a);

/* app_draw.c: drawing helpers shared by the views */
void tui_draw_box(TuiApp *a, TuiRect r, const char *title, int focus);
/* Print untrusted bytes escaped, clipped to w columns; returns columns used. */
int tui_draw_text(TuiApp *a, int y, int x, int w, const char *s, int attr);
/* Print trusted UTF-8 (our own labels), clipped. */
int tui_draw_str(TuiApp *a, int y, int x, int w, const char *s, int attr);
void tui_draw_fill(TuiRect r);
/* Display form of token i: escaped, newline as a return sign. */
void tui_tok_disp(const TuiApp *a, const TuiTokens *t, int i, char *buf, size_t cap);
void tui_draw_header(TuiApp *a);
void tui_draw_keys(TuiApp *a, const char *const *pairs);
void tui_draw_status(TuiApp *a, const char *s);
void tui_draw_small(TuiApp *a);
int tui_attr(TuiApp *a, int pair);
/* main screen pieces */
void tui_draw_heatmap(TuiApp *a, TuiRect r, int focus);
void tui_draw_tokens(TuiApp *a, TuiRect r, int focus, const TuiTokens *t,
                     int mark_from, int record_pos);
void tui_draw_route(TuiApp *a, TuiRect r);
void tui_status_cell(TuiApp *a, char *buf, size_t cap);
/* view_heat.c: the whole main screen; keys of the tokens pane */
void tui_main_screen(TuiApp *a, int focus_tokens);
int tui_tokens_key(TuiApp *a, int key);
/* Intervention on (layer, expert) at the cursor: index in a->ivs or -1. */
int tui_iv_find(const TuiApp *a, int layer, int expert, EngIvKind kind);
/* Toggle/adjust an intervention from a key (d f + - k); returns TUI_K_*. */
int tui_iv_key(TuiApp *a, int key);
/* Format an intervention for the lists (no engine needed). */
int tui_iv_text(const EngIv *iv, char *buf, size_t cap);
/* CSV of what the current view shows; returns 0 and the path, -1 + msg. */
int tui_export_csv(TuiApp *a, char *path, size_t cap);
/* First generated index where the two token lists differ, -1 if none. */
int tui_first_divergence(const TuiTokens *a, const TuiTokens *b);

#endif
