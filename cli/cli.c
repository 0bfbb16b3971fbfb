/*
** cli/cli.c — command-line front end: finds the subcommand in a table and
** hands it the rest of argv.  Each subcommand lives in its own cli/cmd_*.c.
*/
#include "cli/cli.h"
#include "cli/cmds.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} Cmd;

static const Cmd cmds[] = {
    { "info", cli_cmd_info, "describe a GGUF model: architecture, experts, tokenizer, tensors" },
    { "run", cli_cmd_run, "generate from prompts (with interventions), record every route" },
    { "eval", cli_cmd_eval, "exact-match accuracy of greedy answers (prompt<TAB>answer file)" },
    { "ppl", cli_cmd_ppl, "perplexity over texts (with interventions)" },
    { "synth", cli_cmd_synth, "write a random-weight MoE model of a given size (or convert one)" },
    { "export", cli_cmd_export, "stream runs/tokens/routes/load from a db as csv or jsonl" },
    { "stats", cli_cmd_stats, "load, balance, router entropy, specialization of runs" },
    { "contrast", cli_cmd_contrast, "experts that separate two tagged run sets" },
    { "diff", cli_cmd_diff, "compare two runs: divergence, expert sets, load, logprobs" },
    { "import", cli_cmd_import, "import a moetrace routing trace (vLLM, SGLang, HF) as runs" },
    { "tui", cli_cmd_tui, "the full-screen app: browse routing, steer experts, compare runs" },
    { NULL, NULL, NULL },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: moescope COMMAND [options]   (moescope COMMAND --help)\n\n");
    for (const Cmd *c = cmds; c->name; c++)
        fprintf(f, "  %-9s %s\n", c->name, c->help);
}

int cli_main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (const Cmd *c = cmds; c->name; c++)
        if (!strcmp(c->name, argv[1]))
            return c->fn(argc - 1, argv + 1);
    fprintf(stderr, "moescope: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
