/*
** tui/cmd_tui.c — `moescope tui [--db FILE] [-m MODEL] [-n N]`: the
** full-screen app over a routing database, with live runs when a model is
** given.
*/
#include "tui/app.h"
#include "tui/cmds.h"
#include "tui/common.h"

#include <langinfo.h>
#include <locale.h>
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

int tui_cmd_tui(int argc, char **argv)
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
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "moescope tui: needs a terminal on stdin and stdout\n");
        return 1;
    }
    setlocale(LC_ALL, "");
    int utf8 = !strcmp(nl_langinfo(CODESET), "UTF-8");

    char err[512];
    TuiSource src;
    if (tui_db_source_open(&src, db_path, 1, err, sizeof err)) {
        fprintf(stderr, "moescope tui: %s\n", err);
        return 1;
    }
    TuiRunner runner, *rp = NULL;
    char title[160];
    snprintf(title, sizeof title, "%s", db_path);
    int explicit_model = model != NULL;
    if (!model)
        model = tui_default_model();
    if (explicit_model || access(model, R_OK) == 0) {
        if (tui_engine_runner_open(&runner, model, db_path, n_predict, n_threads, title,
                                   sizeof title, err, sizeof err)) {
            fprintf(stderr, "moescope tui: %s\n", err);
            src.close(src.self);
            return 1;
        }
        rp = &runner;
        tui_engine_runner_set_chat(&runner, chat, system);
        size_t o = strlen(title);
        snprintf(title + o, sizeof title - o, "  db %s", db_path);
    }
    TuiApp *app = malloc(sizeof *app);
    if (!app || tui_app_init(app, &src, rp, title)) {
        fprintf(stderr, "moescope tui: out of memory\n");
        free(app);
        if (rp)
            rp->close(rp->self);
        src.close(src.self);
        return 1;
    }
    app->term.utf8 = utf8;
    int rc = tui_app_run(app);
    tui_app_done(app);
    free(app);
    if (rp)
        rp->close(rp->self);
    src.close(src.self);
    return rc;
}
