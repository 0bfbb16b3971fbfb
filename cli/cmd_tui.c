/*
** cli/cmd_tui.c — `moescope tui [--db FILE] [-m MODEL] [-n N]`: the
** full-screen app over a routing database, with live runs when a model is
** given.
*/
#include "cli/cmds.h"
#include "cli/common.h"
#include "tui/tui.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: moescope tui [--db FILE] [-m MODEL] [-n N] [-t THREADS] [--chat [--system TEXT]]\n"
               "  --chat       prompts typed in the app are wrapped in the model's chat format\n"
               "  --db FILE    routing database (default moescope.db; created if missing)\n"
               "  -m MODEL     GGUF model for live runs and re-runs with interventions\n"
               "               (default samples/sample-q8_0.gguf when it exists)\n"
               "  -n N         tokens to generate in live runs (default 48)\n"
               "  -t THREADS   engine threads (default 2)\n"
               "Keys: F1 or ? inside the app.\n");
}

int cli_cmd_tui(int argc, char **argv)
{
    const char *db_path = "moescope.db";
    const char *model = NULL;
    int n_predict = 48, n_threads = 2, chat = 0;
    const char *system = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--db") && v) {
            db_path = v;
            i++;
        } else if (!strcmp(a, "-m") && v) {
            model = v;
            i++;
        } else if (!strcmp(a, "--chat")) {
            chat = 1;
        } else if (!strcmp(a, "--system") && v) {
            system = v;
            i++;
        } else if ((!strcmp(a, "-n") || !strcmp(a, "-t")) && v) {
            char *end;
            long x = strtol(v, &end, 10);
            if (*end || x < 1 || x > 100000) {
                fprintf(stderr, "moescope tui: %s '%s': expected a number 1..100000\n", a, v);
                return 2;
            }
            if (a[1] == 'n')
                n_predict = (int)x;
            else
                n_threads = (int)x;
            i++;
        } else {
            fprintf(stderr, "moescope tui: unknown or incomplete argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    int explicit_model = model != NULL;
    if (!model)
        model = cli_default_model();
    TuiOptions to = {
        .db_path = db_path,
        .model = explicit_model || access(model, R_OK) == 0 ? model : NULL,
        .n_predict = n_predict,
        .n_threads = n_threads,
        .chat = chat,
        .system = system,
    };
    return tui_app_main(&to);
}
