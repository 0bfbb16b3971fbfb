/*
** tui/gen.h — one generation: prompt → tokens → continuation, with the
** settings of `moescope run` and hooks for whoever records it (the database
** logger, the TUI's live view).  Shared by run, eval, ppl and the app.
*/
#ifndef TUI_GEN_H
#define TUI_GEN_H

#include "engine/eng.h"

#define GEN_MAX_IVS 4096

typedef struct {
    EngSampleParams sample;
    int n_predict;          /* tokens to generate (default 64) */
    int n_ctx;              /* 0 = engine default */
    int n_threads;
    int parse_special;      /* --special */
    int stop_at_eog;        /* stop at EOS/EOT (default 1) */
    int stop_at_newline;    /* stop after the first generated '\n' (eval) */
    int prompt_logprobs;    /* compute logprobs of prompt tokens (ppl) */
    EngIv ivs[GEN_MAX_IVS];
    int n_ivs;
} GenSettings;

typedef struct {
    void *user;
    /* every token, prompt and generated, in position order; top: n_top
    ** alternatives (ids, logprobs).  For a prompt token the logprob of that
    ** token given the previous ones when prompt_logprobs is set, else NAN
    ** (and n_top 0); position 0 has none. */
    void (*on_token)(void *user, int pos, int32_t id, int is_prompt, float logprob,
                     int n_top, const int32_t *top_ids, const float *top_lp);
    EngRouteFn on_route;    /* passed to the engine */
    /* return non-zero to stop generating (cancel) */
    int (*should_stop)(void *user);
} GenHooks;

typedef struct {
    int n_prompt, n_gen;
    double t_prompt, t_gen;   /* seconds */
    double sum_logprob_gen;   /* of generated tokens */
    int stopped_eog, cancelled;
} GenStats;

void gen_settings_default(GenSettings *s);

/* Tokenize prompt (BOS as the model says; special tokens per settings),
** evaluate it, generate.  The generated text (raw bytes) is appended to out
** (NUL-terminated, grown with realloc; *out may start NULL).  Returns 0, or
** -1 with err filled. */
int gen_run(EngModel *m, EngCtx *c, const GenSettings *s, const char *prompt, size_t prompt_len,
            const GenHooks *h, char **out, size_t *out_len, GenStats *st, EngErr *err);

/* Parse a prompts file: one prompt per line with C escapes (\n \t \\ \r
** \xHH \").  Returns the number of prompts (array in *out, each malloc'd,
** NUL-terminated; free with gen_free_prompts) or -1 with a message naming
** file and line. */
int gen_read_prompts(const char *path, char ***out, char *errbuf, size_t errcap);
void gen_free_prompts(char **p, int n);

/* Undo C escapes of s into out (cap bytes); returns the length or -1 with the
** offending escape described in errbuf. */
long gen_unescape(const char *s, char *out, size_t cap, char *errbuf, size_t errcap);

#endif
