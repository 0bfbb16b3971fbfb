/*
** cli/common.h — pieces the subcommands share: the default model path, the
** intervention/sampling options of run/eval/ppl, opening a model with a
** message.
*/
#ifndef CLI_COMMON_H
#define CLI_COMMON_H

#include "engine/eng.h"
#include "tui/tui.h"

/* The shipped sample: samples/sample-q8_0.gguf under the working directory,
** else beside the binary.  Returns a static string. */
const char *cli_default_model(void);

/* Options every generating command accepts (-m, -t, --disable, --force,
** --bias, --top-k, --route-top-p, --scope, --temp, --top-p, --sample-top-k,
** --seed, --greedy, -n, --ctx, --special).  Interventions are collected as
** text first and parsed once the model is open (their ranges depend on it). */
typedef struct {
    const char *model;
    const char *disable[64], *force[64], *bias[64];
    int n_disable, n_force, n_bias;
    long route_top_k;          /* 0 = model's k */
    double route_top_p;        /* 0 = off */
    long route_top_p_cap;
    const char *scope;
    int chat;                  /* --chat: wrap prompts in the model's format */
    int qact;                  /* --qact: llama.cpp's quantized activations */
    const char *system;        /* --system TEXT */
    GenSettings gs;
} GenOpts;

void cli_genopts_init(GenOpts *o);
/* If argv[*i] is one of the options above, consume it (and its value) and
** return 1; return 0 if it is not ours, -1 on a bad value (message printed). */
int cli_genopts_parse(const char *cmd, GenOpts *o, int argc, char **argv, int *i);
/* The generation options, then --db/--no-db/--tag/--router-logits (giving
** --db turns recording on for commands that default to none): 1 consumed,
** 0 not ours, -1 bad value (message printed). */
int cli_genrec_parse(const char *cmd, GenOpts *o, RecOpts *ro, int argc, char **argv, int *i);

/* Turn the collected intervention text into o->gs.ivs for model m. */
int cli_genopts_resolve(const char *cmd, GenOpts *o, const EngModel *m);
/* Usage lines for these options. */
extern const char *cli_genopts_help;

/* The text to feed the model for prompt: with --chat the prompt wrapped in
** the model's chat format (sets o->gs.skip_bos/parse_special), else a copy.
** NULL after printing "moescope CMD: ..." on failure.  Free the result. */
char *cli_prepare_prompt(const char *cmd, GenOpts *o, const EngModel *m, const char *prompt);

/* What run, eval and ppl set up before their loop: the model (o->model or
** the sample), the interventions resolved for it, a context, the recorder.
** Returns 0, or the exit status (1 failure, 2 bad usage) after printing
** "moescope CMD: ..."; on failure whatever was opened is left in m, c and rec
** for cli_gen_close. */
int cli_gen_open(const char *cmd, GenOpts *o, const RecOpts *ro, EngModel **m, EngCtx **c,
                 Recorder **rec);
/* Close what cli_gen_open opened; returns 1 if the recorder failed to
** finish, else status. */
int cli_gen_close(int status, EngModel *m, EngCtx *c, Recorder *rec);
/* Print "interventions: ..." when the settings have any. */
void cli_print_ivs(FILE *f, const GenSettings *gs);

/* Open a model; prints "moescope CMD: <message>" on failure. */
EngModel *cli_open_model(const char *cmd, const char *path);

#endif
