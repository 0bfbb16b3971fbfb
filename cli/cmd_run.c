/*
** cli/cmd_run.c — `moescope run`: generate from prompts, optionally with
** interventions, print the continuations, record every route.
*/
#include "cli/cmds.h"
#include "cli/common.h"
#include "cli/opts.h"
#include "tui/tui.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: moescope run [-m MODEL] (-p TEXT | -f PROMPTS) [options]\n"
               "  Generate a continuation of each prompt and print it; every token's\n"
               "  route is recorded in the database.\n\n"
               "  -p TEXT             the prompt\n"
               "  -f FILE             one prompt per line (C escapes: \\n \\t \\\\)\n"
               "  --db FILE           database (default moescope.db)   --no-db  record nothing\n"
               "  --tag NAME          tag the runs (a run set for stats/contrast)\n"
               "  --router-logits     also store every router logit (large)\n"
               "  --timings           print prompt/decode speed to stderr\n"
               "  -q                  print only the continuations\n%s",
            cli_genopts_help);
}

int cli_cmd_run(int argc, char **argv)
{
    GenOpts o;
    cli_genopts_init(&o);
    RecOpts ro;
    rec_opts_init(&ro);
    const char *prompt = NULL, *file = NULL;
    int timings = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_genrec_parse("run", &o, &ro, argc, argv, &i);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(prompt = cli_opt_value("run", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(file = cli_opt_value("run", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--timings")) {
            timings = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else {
            fprintf(stderr, "moescope run: unknown argument '%s' (see moescope run --help)\n", a);
            return 2;
        }
    }
    if (!prompt == !file) {
        fprintf(stderr, "moescope run: give exactly one of -p TEXT or -f FILE\n");
        return 2;
    }
    char **prompts = NULL;
    int n_prompts = 1;
    char *one[1];
    if (file) {
        char e[512];
        n_prompts = gen_read_prompts(file, &prompts, e, sizeof e);
        if (n_prompts < 0) {
            fprintf(stderr, "moescope run: %s\n", e);
            return 1;
        }
    } else {
        one[0] = (char *)prompt;
    }
    char **list = file ? prompts : one;
    EngModel *m;
    EngCtx *c;
    Recorder *rec;
    int status = cli_gen_open("run", &o, &ro, &m, &c, &rec);
    if (status)
        goto done;
    status = 1;
    EngErr err = { 0 };
    GenStats tot = { 0 };
    int failed = 0;
    for (int p = 0; p < n_prompts; p++) {
        char *text = NULL;
        size_t len = 0;
        GenStats st;
        GenHooks h = { 0 };
        char *fed = cli_prepare_prompt("run", &o, m, list[p]);
        if (!fed) {
            failed = 1;
            break;
        }
        if (rec_begin_fmt(rec, list[p], fed, &o.gs, &h) < 0) {
            free(fed);
            failed = 1;
            break;
        }
        int r = gen_run(m, c, &o.gs, fed, strlen(fed), &h, &text, &len, &st, &err);
        free(fed);
        if (rec_end(rec, r == 0, &st) < 0)
            failed = 1;
        if (r < 0) {
            fprintf(stderr, "moescope run: prompt %d: %s\n", p + 1, err.msg);
            free(text);
            failed = 1;
            break;
        }
        if (n_prompts > 1 && !quiet) {
            printf("### %d: ", p + 1);
            cli_opt_print_escaped(stdout, list[p], strlen(list[p]));
            printf("\n");
        }
        fwrite(text, 1, len, stdout);
        printf("\n");
        if (st.ctx_full)
            fprintf(stderr, "moescope run: prompt %d: stopped after %d tokens: the context of %d "
                            "positions is full (--ctx)\n", p + 1, st.n_gen, eng_ctx_n_ctx(c));
        fflush(stdout);
        free(text);
        tot.n_prompt += st.n_prompt;
        tot.n_gen += st.n_gen;
        tot.t_prompt += st.t_prompt;
        tot.t_gen += st.t_gen;
    }
    if (timings) {
        fprintf(stderr, "prompt: %d tokens, %.1f t/s\n", tot.n_prompt,
                tot.t_prompt > 0 ? tot.n_prompt / tot.t_prompt : 0.0);
        fprintf(stderr, "decode: %d tokens, %.1f t/s\n", tot.n_gen,
                tot.t_gen > 0 ? tot.n_gen / tot.t_gen : 0.0);
    }
    status = failed;
done:
    status = cli_gen_close(status, m, c, rec);
    gen_free_prompts(prompts, file ? n_prompts : 0);
    return status;
}
