/*
** tui/tui.h — what the command line (cli/) uses of tui/: the full-screen
** app, and the generation session the app shares with run/eval/ppl (one
** generation with its hooks: tui/gen.h; recording it into the database:
** tui/record.h; the models' chat formats: tui/chat.h).  Everything else in
** tui/ is the app's own (tui/app.h).
*/
#ifndef TUI_H
#define TUI_H

#include "tui/chat.h"
#include "tui/gen.h"
#include "tui/record.h"

typedef struct {
    const char *db_path;    /* routing database */
    const char *model;      /* GGUF for live runs; NULL = none */
    int n_predict;          /* tokens per live run */
    int n_threads;
    int chat;               /* live prompts in the model's chat format */
    const char *system;     /* system message with chat */
} TuiOptions;

/* Run the app on the terminal (stdin and stdout must be one).  Returns the
** process exit status after printing "moescope tui: ..." on failure. */
int tui_app_main(const TuiOptions *o);

#endif
