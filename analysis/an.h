/*
** analysis/an.h — statistics over expert routing: the numbers of the MoE
** literature, computed from plain in-memory tables.
**
** The computation core knows nothing of SQLite or of the engine.  Its input
** is an AnRoutes table (one row per logged position: run, position, token,
** prompt/generated flag, chosen-token logprob, and per MoE layer the chosen
** experts, their weights and optionally the router logits) or, for the
** statistics that only need counts, AnLoad tables (per layer×expert tokens
** routed and weight mass).  Glue at the end of this header fills them from a
** moescope database.
**
** Everything is split three ways (AnSplit): all positions, prompt (prefill)
** positions, generated (decode) positions, because the two routinely
** disagree.  Arrays indexed by split have AN_NSPLIT rows.
**
** Definitions (also stated where each is computed):
**   load     c[l][e] tokens routed = positions whose chosen set contains e.
**   share    c[l][e] / Σ_e c[l][e].
**   entropy  −Σ share·ln share / ln n_expert  (1 = perfectly even; a layer
**            with one expert counts as even).
**   CV       population standard deviation of c[l][·] / its mean.
**   MaxVio   max_e c[l][e] / mean − 1 (DeepSeek's load-balance violation).
**   Gini     Σ_i Σ_j |c_i − c_j| / (2 n² mean).
**   router entropy / top-1 probability: mean over positions of the entropy
**            (nats) and the maximum of the router distribution over all
**            experts: softmax of the logits (softmax and softmax-over-top-k
**            gating), sigmoid scores normalised to sum 1 (sigmoid gating).
**   vocabulary specialization (OLMoE, Muennighoff et al. 2024, §5.4): for a
**            token id x seen N_x ≥ min_occ times (positions routed in the
**            layer), max_e N_{x,e} / N_x where N_{x,e} counts occurrences of
**            x whose top-k chosen set contains e — the top-k set, as in
**            OLMoE's analysis code — averaged (unweighted) over those ids.
**   top tokens of an expert: ids with N_x ≥ min_occ ranked by N_{x,e}/N_x
**            (ties: larger N_{x,e}, then smaller id).
**   co-activation C[a][b] = positions whose chosen set contains a and b
**            (C = AᵀA over the position×expert 0/1 matrix A, OpenBLAS);
**            P(b|a) = C[a][b] / C[a][a].
**   transitions T[a][b] = positions with a chosen in MoE layer l and b in
**            MoE layer l+1 (T = A_lᵀ A_{l+1}).
**
** Undefined values (a statistic of zero tokens) are NAN in the structs;
** the writers print them as "-" (table), "" (csv) and null (json).
**
** Errors: functions return an AnStatus (AN_OK == 0) and fill an AnErr whose
** message names the argument, field or value at fault.  Nothing here calls
** exit() or abort().  Release functions accept NULL.
*/
#ifndef AN_H
#define AN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "db/db.h"      /* the glue section only */

/* ---- errors ---------------------------------------------------------- */

typedef enum {
    AN_OK = 0,
    AN_E_NOMEM,     /* allocation failed */
    AN_E_ARG,       /* bad argument (size, index, option value) */
    AN_E_DATA,      /* inconsistent input data (e.g. expert id out of range) */
    AN_E_DB,        /* the database could not answer (see msg) */
    AN_E_NOTFOUND,  /* a run id or tag that does not exist */
} AnStatus;

typedef struct {
    AnStatus status;
    char msg[512];
} AnErr;

/* Human-readable name of a status.  Can't fail. */
const char *an_status_str(AnStatus s);

/* ---- input: routes --------------------------------------------------- */

typedef enum { AN_SPLIT_ALL = 0, AN_SPLIT_PROMPT, AN_SPLIT_GEN, AN_NSPLIT } AnSplit;

/* Name of a split ("all", "prompt", "gen"); NULL out of range. */
const char *an_split_name(int split);

typedef enum {
    AN_GATE_SOFTMAX = 0,   /* softmax over all router logits */
    AN_GATE_SIGMOID,       /* sigmoid per expert */
    AN_GATE_SOFTMAX_TOPK,  /* softmax over the selected logits */
} AnGating;

/* Routes of one or more runs, row-major by position.  Owns its arrays. */
typedef struct {
    int n_layer;            /* MoE layers (compact index 0..n_layer-1) */
    int n_expert;           /* experts per layer, 1..65535 */
    int k_max;              /* most experts a position may choose */
    int has_logits;         /* logits[] allocated */
    AnGating gating;
    int n_run;              /* runs present: run[] values are 0..n_run-1 */
    int64_t n_pos, cap;     /* rows used / allocated */
    int32_t *run;           /* (n_pos) run index */
    int32_t *pos;           /* (n_pos) position within its run */
    int32_t *token;         /* (n_pos) token id */
    uint8_t *is_prompt;     /* (n_pos) 1 prefill, 0 generated */
    float *logprob;         /* (n_pos) chosen token's logprob, NAN unknown */
    uint8_t *n_chosen;      /* (n_pos, n_layer) 0 = no route recorded */
    uint16_t *experts;      /* (n_pos, n_layer, k_max) chosen, in order */
    float *weights;         /* (n_pos, n_layer, k_max) applied weights */
    float *logits;          /* (n_pos, n_layer, n_expert) or NULL */
} AnRoutes;

/* Allocate an empty table with room for cap_hint rows (grows as needed).
** Returns NULL and fills err on a bad size or out of memory. */
AnRoutes *an_routes_new(int n_layer, int n_expert, int k_max, int has_logits,
                        AnGating gating, int64_t cap_hint, AnErr *err);
void an_routes_free(AnRoutes *r);

/* Append one position; its layers start with no route.  run must be ≥ 0
** (n_run grows to cover it).  Returns the row index, or -1 with err filled. */
int64_t an_routes_add_pos(AnRoutes *r, int run, int pos, int32_t token,
                          int is_prompt, float logprob, AnErr *err);

/* Set the route of row i in MoE layer l: k experts (0 < k ≤ n_expert and
** ≤ 255, each < n_expert, no repeats; k > k_max widens the table, which
** moves the experts/weights arrays), their weights (may be NULL → 0) and, when the
** table has logits, n_expert router logits (may be NULL → left 0).
** Returns AN_E_ARG / AN_E_DATA with err naming the bad value. */
AnStatus an_routes_set(AnRoutes *r, int64_t i, int l, int k,
                       const int32_t *experts, const float *weights,
                       const float *logits, AnErr *err);

/* ---- load tables ----------------------------------------------------- */

/* Per layer×expert counts of one run or of a set of runs. */
typedef struct {
    int n_layer, n_expert;
    int no_split;               /* 1: some counts come without tokens
                                   (count-only imported runs), so the
                                   prompt and gen rows are not known; only
                                   AN_SPLIT_ALL holds every count */
    int64_t n_pos[AN_NSPLIT];   /* positions */
    int64_t *n_routed;          /* (AN_NSPLIT, n_layer) positions routed */
    int64_t *count;             /* (AN_NSPLIT, n_layer, n_expert) */
    double *mass;               /* (AN_NSPLIT, n_layer, n_expert) Σ weights */
} AnLoad;

/* Zeroed table.  NULL + err on a bad size or out of memory. */
AnLoad *an_load_new(int n_layer, int n_expert, AnErr *err);
void an_load_free(AnLoad *ld);
/* dst += src (no_split: either); AN_E_ARG when the shapes differ. */
AnStatus an_load_add(AnLoad *dst, const AnLoad *src, AnErr *err);
/* Count the rows of r belonging to run (or every run when run < 0) into a
** new table.  NULL + err on out of memory. */
AnLoad *an_load_from_routes(const AnRoutes *r, int run, AnErr *err);

/* ---- statistics ------------------------------------------------------ */

typedef struct {
    int64_t n_tok;          /* positions routed in the layer */
    int64_t n_assign;       /* Σ_e count */
    double entropy;         /* normalised load entropy (0..1) */
    double cv;              /* coefficient of variation of the load */
    double maxvio;          /* max / mean − 1 */
    double gini;
    int n_unused;           /* experts never chosen */
    int64_t n_router;       /* positions with router logits */
    double router_entropy;  /* mean per-position router entropy, nats */
    double top1_prob;       /* mean max router probability */
    int n_vocab_ids;        /* token ids with ≥ min_occ occurrences */
    double vocab_spec;      /* OLMoE vocabulary specialization */
} AnLayerStats;

typedef struct {
    int32_t token;
    int32_t count;          /* N_{x,e} */
    int32_t occ;            /* N_x */
    float share;            /* N_{x,e} / N_x */
} AnTopTok;

typedef struct {
    int want_routes;        /* router entropy, specialization, top tokens */
    int want_pairs;         /* co-activation + transitions (OpenBLAS) */
    int min_occ;            /* specialization threshold (0 = 10) */
    int n_top_tok;          /* top tokens kept per expert (0 = 5) */
} AnStatsParams;

typedef struct {
    int n_layer, n_expert, n_top_tok, min_occ;
    int has_routes, has_router, has_pairs;
    AnLoad *load;                   /* owned */
    AnLayerStats *layer;            /* (AN_NSPLIT, n_layer) */
    AnTopTok *top;                  /* (AN_NSPLIT, n_layer, n_expert,
                                       n_top_tok), token −1 = empty slot */
    double *coact;                  /* (AN_NSPLIT, n_layer, n_expert²) */
    double *trans;                  /* (AN_NSPLIT, n_layer-1, n_expert²) */
} AnStats;

/* Load-balance statistics of a layer's counts c[0..n-1] into out (the
** fields entropy, cv, maxvio, gini, n_unused, n_assign).  Can't fail. */
void an_balance(const int64_t *c, int n, AnLayerStats *out);

/* Statistics from counts only (per-run aggregates summed): load and
** balance; router, specialization and pairs are absent.  The load is
** copied.  NULL + err on out of memory. */
AnStats *an_stats_from_load(const AnLoad *ld, AnErr *err);

/* Every statistic over all rows of r that p asks for (p may be NULL:
** everything).  NULL + err on out of memory. */
AnStats *an_stats_compute(const AnRoutes *r, const AnStatsParams *p,
                          AnErr *err);
void an_stats_free(AnStats *s);

/* Co-activation counts of one split and layer into C (n_expert² doubles,
** row a, column b), by C = AᵀA with cblas_ssyrk over chunks of positions.
** AN_E_ARG on a bad split/layer, AN_E_NOMEM. */
AnStatus an_coact(const AnRoutes *r, int split, int l, double *C, AnErr *err);
/* Transition counts from MoE layer l to l+1 into T (n_expert² doubles),
** T = A_lᵀ A_{l+1} with cblas_sgemm over positions routed in both. */
AnStatus an_transitions(const AnRoutes *r, int split, int l, double *T,
                        AnErr *err);
/* P(b|a) = C[a][b] / C[a][a] into P (n²), NAN where C[a][a] = 0. */
void an_cond_prob(const double *C, int n, double *P);

/* ---- contrast -------------------------------------------------------- */

typedef struct {
    int split;              /* AnSplit (default AN_SPLIT_ALL = 0) */
    int64_t min_count;      /* tested when countA + countB ≥ min_count */
    int n_perm;             /* permutations (0 = none: p, q are NAN) */
    uint64_t seed;
} AnContrastParams;

typedef struct {
    int layer, expert;
    int64_t count_a, n_a, count_b, n_b;
    double p_a, p_b;
    double delta, delta_lo, delta_hi;   /* Newcombe hybrid score 95 % CI */
    double lor, lor_lo, lor_hi;         /* log odds ratio, +0.5 each cell,
                                           Wald 95 % CI */
    double p_value;         /* permutation over runs, (1+b)/(1+n_perm) */
    double q_value;         /* Benjamini–Hochberg over the tested rows */
} AnContrastRow;

typedef struct {
    int n_layer, n_expert, n_runs_a, n_runs_b, n_perm, split;
    int64_t min_count;
    uint64_t seed;
    int n_row;              /* rows passing min_count, ranked by |Δ| */
    AnContrastRow *row;
} AnContrast;

/* Contrast run sets A and B given one AnLoad per run (all of one shape).
** Each run is an independent unit in the permutation test: labels are
** shuffled between whole runs (sizes kept).  NULL + err when a set is
** empty, shapes differ, or memory runs out. */
AnContrast *an_contrast(const AnLoad *const *runs_a, int n_a,
                        const AnLoad *const *runs_b, int n_b,
                        const AnContrastParams *p, AnErr *err);
void an_contrast_free(AnContrast *c);

/* Benjamini–Hochberg q-values of n p-values: q_(i) = min_{j ≥ i} p_(j)·n/j
** over the ascending order, capped at 1.  AN_E_NOMEM. */
AnStatus an_bh(const double *p, int n, double *q, AnErr *err);

/* Write the `top` best-ranked rows with Δ > 0 (more active in A; top ≤ 0:
** all of them) as
** "--disable L:E,L:E" (force = 0) or "--force L:E,…" (force = 1).  L is
** layer_of[compact layer] when layer_of is not NULL.  Writes "" when no row
** qualifies; returns the number of experts written. */
int an_contrast_interventions(const AnContrast *c, int top, int force,
                              const int *layer_of, FILE *f);

/* ---- run diff -------------------------------------------------------- */

typedef struct {
    int n_layer, n_expert;
    int64_t n_pos_a, n_pos_b;
    int64_t n_common;       /* common prefix: positions with equal tokens */
    int64_t first_div;      /* first position past the common prefix (the
                               tokens differ or one run ends), −1 if the
                               runs are identical */
    int div_in_prompt;      /* 1 when that position is a prompt position of
                               both runs: the prompts themselves differ */
    int32_t tok_a, tok_b;   /* tokens there, −1 past the end */
    double lp_a, lp_b;      /* their logprobs (NAN unknown) */
    int64_t *n_cmp;         /* (AN_NSPLIT, n_layer) positions compared */
    int64_t *n_changed;     /* (AN_NSPLIT, n_layer) expert set changed */
    int64_t *load_delta;    /* (AN_NSPLIT, n_layer, n_expert) count A − B */
    int64_t n_lp;           /* common-prefix generated positions with both
                               logprobs */
    double lp_mean_delta;   /* mean (B − A) over them, NAN if none */
    double lp_max_abs;      /* max |B − A|, NAN if none */
} AnDiff;

/* Compare two single runs a and b (every row of each table; rows in
** position order).  NULL + err on a shape mismatch or out of memory. */
AnDiff *an_diff(const AnRoutes *a, const AnRoutes *b, AnErr *err);
void an_diff_free(AnDiff *d);

/* ---- writers --------------------------------------------------------- */

typedef enum { AN_FMT_TABLE = 0, AN_FMT_CSV, AN_FMT_JSON } AnFormat;

/* Parse "table|csv|json"; -1 when unknown. */
int an_format_parse(const char *s);

/* Optional labels for the writers: absolute layer numbers and token text. */
typedef struct {
    const int *layer_of;    /* (n_layer) absolute layer index, or NULL */
    const char *title;      /* e.g. "run 3" / "tag math (12 runs)" */
    /* Token text for top tokens (NULL → the id); returns bytes written
    ** into buf (NUL-terminated, printable). */
    int (*tok_text)(void *user, int32_t id, char *buf, size_t cap);
    void *tok_user;
} AnLabels;

/* Write statistics, contrast (first top rows; top ≤ 0 = all) or diff to f.
** Return 0, or -1 when writing failed (ferror). */
int an_write_stats(FILE *f, const AnStats *s, AnFormat fmt, const AnLabels *lb);
int an_write_contrast(FILE *f, const AnContrast *c, int top, AnFormat fmt,
                      const AnLabels *lb);
int an_write_diff(FILE *f, const AnDiff *d, AnFormat fmt, const AnLabels *lb);

/* ---- database glue ---------------------------------------------------- */

/* What a database query resolved to: the MoE layers (compact index →
** absolute layer), the runs used, a title for the writers, and the text of
** token ids seen (for top tokens).  Filled by the an_db_* functions; release
** with an_db_info_done. */
typedef struct {
    int n_layer;            /* MoE layers */
    int *layer_of;          /* (n_layer) absolute layer of each */
    int n_runs, n_runs_b;   /* runs used (contrast: set A, set B) */
    int n_counts_only;      /* of those, count-only imported runs (per-layer
                               counts, no tokens: token views not available) */
    int n_skipped;          /* runs left out (not complete: no aggregates) */
    char title[256];
    void *tok_map;          /* token id → piece text (internal) */
} AnDbInfo;

void an_db_info_done(AnDbInfo *info);   /* accepts a zeroed struct */
/* AnLabels for the writers, pointing into info (valid while info is). */
AnLabels an_db_labels(const AnDbInfo *info);

/* Statistics of one run (run > 0), of the runs with a tag (tag != NULL) or
** of every run.  Load and balance come from the per-run aggregates (fast,
** complete runs only).  With p->want_routes or p->want_pairs the raw routes
** and tokens are read as well (router entropy when logits were stored,
** specialization, top tokens, co-activation, transitions).  path names the
** file in messages.  AN_E_NOTFOUND: "run 7 is not in FILE" / "tag 'x' has
** no runs in FILE".  Count-only runs (DB_RUN_COUNTS_ONLY) count in the load
** of all positions (their n_counted tokens); the prompt/gen splits are then
** marked not available (AnLoad.no_split), and --routes/--pairs over them
** fail with AN_E_ARG: "token views not available". */
AnStatus an_db_stats(Db *db, const char *path, int64_t run, const char *tag,
                     const AnStatsParams *p, AnStats **out, AnDbInfo *info,
                     AnErr *err);

/* Contrast the complete runs tagged tag_a against those tagged tag_b, one
** AnLoad per run from the aggregates.  AN_E_NOTFOUND names the tag with no
** (complete) runs; AN_E_DATA names a run whose model shape differs;
** AN_E_ARG a count-only run when p->split is prompt or gen (token views
** not available). */
AnStatus an_db_contrast(Db *db, const char *path, const char *tag_a,
                        const char *tag_b, const AnContrastParams *p,
                        AnContrast **out, AnDbInfo *info, AnErr *err);

/* Diff of two runs from their tokens and raw routes. */
AnStatus an_db_diff(Db *db, const char *path, int64_t run_a, int64_t run_b,
                    AnDiff **out, AnDbInfo *info, AnErr *err);

/* The tokens and routes of runs[0..n-1] as one table (row run index = index
** in runs), MoE layers as in info (which must have n_layer/layer_of set, or
** n_layer == 0 to detect them from the first run); token texts are added to
** info.  NULL + err on failure; AN_E_ARG for a count-only run (no tokens:
** token views not available). */
AnRoutes *an_db_routes(Db *db, const char *path, const int64_t *runs, int n,
                       AnDbInfo *info, AnErr *err);

#endif
