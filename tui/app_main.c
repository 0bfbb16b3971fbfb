/*
** tui/app_main.c — tui_app_main: the app's life from the command line's
** options to the restored terminal: the database source, the engine runner
** when a model is given, the event loop.
*/
#include "tui/app.h"
#include "tui/tui.h"

#include <langinfo.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tui_app_main(const TuiOptions *o)
{
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "moescope tui: needs a terminal on stdin and stdout\n");
        return 1;
    }
    setlocale(LC_ALL, "");
    int utf8 = !strcmp(nl_langinfo(CODESET), "UTF-8");

    char err[512];
    TuiSource src;
    if (tui_db_source_open(&src, o->db_path, 1, err, sizeof err)) {
        fprintf(stderr, "moescope tui: %s\n", err);
        return 1;
    }
    TuiRunner runner, *rp = NULL;
    char title[160];
    snprintf(title, sizeof title, "%s", o->db_path);
    if (o->model) {
        if (tui_engine_runner_open(&runner, o->model, o->db_path, o->n_predict, o->n_threads, title,
                                   sizeof title, err, sizeof err)) {
            fprintf(stderr, "moescope tui: %s\n", err);
            src.close(src.self);
            return 1;
        }
        rp = &runner;
        tui_engine_runner_set_chat(&runner, o->chat, o->system);
        size_t len = strlen(title);
        snprintf(title + len, sizeof title - len, "  db %s", o->db_path);
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
