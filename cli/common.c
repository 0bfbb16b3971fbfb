/*
** cli/common.c — shared option handling for the generating subcommands.
*/
#include "cli/common.h"
#include "tui/tui.h"
#include "cli/opts.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SAMPLE_REL "samples/sample-q8_0.gguf"

const char *cli_default_model(void)
{
    static char path[PATH_MAX + 64];
    if (access(SAMPLE_REL, R_OK) == 0)
        return SAMPLE_REL;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(path, sizeof path, "%s/%s", exe, SAMPLE_REL);
            if (access(path, R_OK) == 0)
                return path;
        }
    }
    return SAMPLE_REL;
}

const char *cli_genopts_help =
    "  -m MODEL            GGUF model (default: the shipped sample)\n"
    "  -n N                tokens to generate (default 64)\n"
    "  --temp T            temperature (default 0.8)     --greedy   argmax\n"
    "  --top-p P           nucleus sampling (default 0.95)\n"
    "  --sample-top-k K    sample from the K most likely tokens (default 40, 0 = off)\n"
    "  --seed S            sampling seed (default 1)\n"
    "  --disable L:E,...   switch experts off (L = layer or *, E = expert, 0-based)\n"
    "  --force L:E,...     always route to these experts\n"
    "  --bias L:E=B,...    add B to the router logit\n"
    "  --top-k K           route each token to K experts instead of the model's k\n"
    "  --route-top-p P[:C] route to the smallest set with gate mass >= P (at most C)\n"
    "  --scope S           where interventions apply: all, prompt, gen, from:T\n"
    "  --special           parse special-token text (<|...|>) in prompts\n"
    "  --chat              wrap each prompt in the model's chat format (from its\n"
    "                      tokenizer.chat_template: ChatML, Harmony, GLM-4, Llama-3,\n"
    "                      Mistral, Phi-3); --system TEXT adds a system message\n"
    "  --ctx N             context size (default: min(trained, 4096))\n"
    "  --qact              quantize activations for Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/MXFP4\n"
    "                      weights as llama.cpp does (faster; its arithmetic)\n"
    "  -t N                threads (default 2)\n";

void cli_genopts_init(GenOpts *o)
{
    memset(o, 0, sizeof *o);
    gen_settings_default(&o->gs);
    o->scope = "all";
}

int cli_genopts_parse(const char *cmd, GenOpts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v;
    long l;
    double d;
#define VAL() do { if (!(v = cli_opt_value(cmd, argc, argv, i))) return -1; } while (0)
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        VAL();
        o->model = v;
    } else if (!strcmp(a, "-n")) {
        VAL();
        if (cli_opt_int(cmd, a, v, 0, 1 << 20, &l) < 0)
            return -1;
        o->gs.n_predict = (int)l;
    } else if (!strcmp(a, "--temp")) {
        VAL();
        if (cli_opt_float(cmd, a, v, 0, 100, &d) < 0)
            return -1;
        o->gs.sample.temp = (float)d;
    } else if (!strcmp(a, "--top-p")) {
        VAL();
        if (cli_opt_float(cmd, a, v, 0, 1, &d) < 0)
            return -1;
        o->gs.sample.top_p = (float)d;
    } else if (!strcmp(a, "--sample-top-k")) {
        VAL();
        if (cli_opt_int(cmd, a, v, 0, 1 << 24, &l) < 0)
            return -1;
        o->gs.sample.top_k = (int)l;
    } else if (!strcmp(a, "--seed")) {
        VAL();
        if (cli_opt_u64(cmd, a, v, &o->gs.sample.seed) < 0)
            return -1;
    } else if (!strcmp(a, "--greedy")) {
        o->gs.sample.greedy = 1;
    } else if (!strcmp(a, "--disable") || !strcmp(a, "--force") || !strcmp(a, "--bias")) {
        VAL();
        const char **arr = a[2] == 'd' ? o->disable : a[2] == 'f' ? o->force : o->bias;
        int *n = a[2] == 'd' ? &o->n_disable : a[2] == 'f' ? &o->n_force : &o->n_bias;
        if (*n >= 64) {
            fprintf(stderr, "moescope %s: %s given more than 64 times\n", cmd, a);
            return -1;
        }
        arr[(*n)++] = v;
    } else if (!strcmp(a, "--top-k")) {
        VAL();
        if (cli_opt_int(cmd, a, v, 1, 4096, &l) < 0)
            return -1;
        o->route_top_k = l;
    } else if (!strcmp(a, "--route-top-p")) {
        VAL();
        char buf[64];
        snprintf(buf, sizeof buf, "%s", v);
        char *colon = strchr(buf, ':');
        if (colon) {
            *colon = 0;
            if (cli_opt_int(cmd, a, colon + 1, 1, 4096, &o->route_top_p_cap) < 0)
                return -1;
        }
        if (cli_opt_float(cmd, a, buf, 1e-6, 1, &o->route_top_p) < 0)
            return -1;
    } else if (!strcmp(a, "--scope")) {
        VAL();
        o->scope = v;
    } else if (!strcmp(a, "--special")) {
        o->gs.parse_special = 1;
    } else if (!strcmp(a, "--chat")) {
        o->chat = 1;
    } else if (!strcmp(a, "--qact")) {
        o->qact = 1;
    } else if (!strcmp(a, "--system")) {
        VAL();
        o->system = v;
    } else if (!strcmp(a, "--ctx")) {
        VAL();
        if (cli_opt_int(cmd, a, v, 1, 1 << 24, &l) < 0)
            return -1;
        o->gs.n_ctx = (int)l;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        VAL();
        if (cli_opt_int(cmd, a, v, 1, 256, &l) < 0)
            return -1;
        o->gs.n_threads = (int)l;
    } else {
        return 0;
    }
#undef VAL
    return 1;
}

int cli_genopts_resolve(const char *cmd, GenOpts *o, const EngModel *m)
{
    EngErr err = { 0 };
    EngScope scope;
    int from;
    if (eng_scope_parse(o->scope, &scope, &from, &err) < 0) {
        fprintf(stderr, "moescope %s: %s\n", cmd, err.msg);
        return -1;
    }
    GenSettings *g = &o->gs;
    g->n_ivs = 0;
    const char **lists[3] = { o->bias, o->disable, o->force };
    int counts[3] = { o->n_bias, o->n_disable, o->n_force };
    EngIvKind kinds[3] = { ENG_IV_BIAS, ENG_IV_DISABLE, ENG_IV_FORCE };
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < counts[k]; j++) {
            int n = eng_iv_parse(m, kinds[k], lists[k][j], g->ivs + g->n_ivs,
                                 GEN_MAX_IVS - g->n_ivs, &err);
            if (n < 0) {
                fprintf(stderr, "moescope %s: %s\n", cmd, err.msg);
                return -1;
            }
            g->n_ivs += n;
        }
    const EngInfo *I = eng_model_info(m);
    if (o->route_top_k > 0) {
        if (o->route_top_k > I->n_expert) {
            fprintf(stderr, "moescope %s: --top-k %ld out of range 1..%d (experts per layer)\n",
                    cmd, o->route_top_k, I->n_expert);
            return -1;
        }
        EngIv iv = { .kind = ENG_IV_TOPK, .layer = -1, .value = (float)o->route_top_k };
        g->ivs[g->n_ivs++] = iv;
    }
    if (o->route_top_p > 0) {
        EngIv iv = { .kind = ENG_IV_TOPP, .layer = -1, .value = (float)o->route_top_p,
                     .cap = (int)o->route_top_p_cap };
        g->ivs[g->n_ivs++] = iv;
    }
    for (int i = 0; i < g->n_ivs; i++) {
        g->ivs[i].scope = scope;
        g->ivs[i].from_pos = from;
    }
    return 0;
}

EngModel *cli_open_model(const char *cmd, const char *path)
{
    EngErr err = { 0 };
    EngModel *m = eng_model_open(path, &err);
    if (!m)
        fprintf(stderr, "moescope %s: %s\n", cmd, err.msg);
    return m;
}

char *cli_prepare_prompt(const char *cmd, GenOpts *o, const EngModel *m, const char *prompt)
{
    if (!o->chat) {
        if (o->system)
            fprintf(stderr, "moescope %s: --system needs --chat\n", cmd);
        return o->system ? NULL : strdup(prompt);
    }
    char err[512];
    int skip = 0;
    char *t = chat_apply(m, o->system, prompt, &skip, err, sizeof err);
    if (!t) {
        fprintf(stderr, "moescope %s: %s\n", cmd, err);
        return NULL;
    }
    o->gs.skip_bos = skip;
    o->gs.parse_special = 1;
    return t;
}

/* --db/--no-db/--tag/--router-logits: 1 consumed, 0 not ours, -1 bad value. */
static int recopts_parse(const char *cmd, RecOpts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (!strcmp(a, "--db")) {
        if (!(o->db_path = cli_opt_value(cmd, argc, argv, i)))
            return -1;
    } else if (!strcmp(a, "--no-db")) {
        o->no_db = 1;
    } else if (!strcmp(a, "--tag")) {
        if (!(o->tag = cli_opt_value(cmd, argc, argv, i)))
            return -1;
        if (!o->tag[0]) {
            fprintf(stderr, "moescope %s: --tag must not be empty\n", cmd);
            return -1;
        }
    } else if (!strcmp(a, "--router-logits")) {
        o->router_logits = 1;
    } else {
        return 0;
    }
    return 1;
}

int cli_genrec_parse(const char *cmd, GenOpts *o, RecOpts *ro, int argc, char **argv, int *i)
{
    int r = cli_genopts_parse(cmd, o, argc, argv, i);
    if (r != 0)
        return r;
    if (!strcmp(argv[*i], "--db"))
        ro->no_db = 0;
    return recopts_parse(cmd, ro, argc, argv, i);
}

int cli_gen_open(const char *cmd, GenOpts *o, const RecOpts *ro, EngModel **m, EngCtx **c,
                 Recorder **rec)
{
    const char *path = o->model ? o->model : cli_default_model();
    *c = NULL;
    *rec = NULL;
    if (!(*m = cli_open_model(cmd, path)))
        return 1;
    if (cli_genopts_resolve(cmd, o, *m) < 0)
        return 2;
    EngErr err = { 0 };
    EngCtxParams cp = { .n_ctx = o->gs.n_ctx, .n_threads = o->gs.n_threads, .qact = o->qact };
    if (!(*c = eng_ctx_new(*m, &cp, &err))) {
        fprintf(stderr, "moescope %s: %s\n", cmd, err.msg);
        return 1;
    }
    return rec_open(cmd, ro, *m, path, rec) < 0 ? 1 : 0;
}

int cli_gen_close(int status, EngModel *m, EngCtx *c, Recorder *rec)
{
    if (rec_close(rec) < 0)
        status = 1;
    eng_ctx_free(c);
    eng_model_close(m);
    return status;
}

void cli_print_ivs(FILE *f, const GenSettings *gs)
{
    if (!gs->n_ivs)
        return;
    char *t = tui_ivs_text(gs->ivs, gs->n_ivs);
    fprintf(f, "interventions: %s\n", t ? t : "?");
    free(t);
}
