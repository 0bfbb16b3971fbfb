/*
** tui/record.h — connects a generation (tui/gen.h hooks) to the routing
** database: one Recorder per command, one database run per prompt.
*/
#ifndef TUI_RECORD_H
#define TUI_RECORD_H

#include "engine/eng.h"
#include "tui/gen.h"

typedef struct {
    const char *db_path;    /* default moescope.db */
    int no_db;
    const char *tag;
    int router_logits;      /* store all router logits */
    int64_t parent;         /* parent run for re-runs (0 = none) */
} RecOpts;

typedef struct Recorder Recorder;

void rec_opts_init(RecOpts *o);

/* Open the database (unless --no-db) and register the model.  On failure
** prints "moescope CMD: ..." and returns -1.  *out is NULL with --no-db. */
int rec_open(const char *cmd, const RecOpts *o, const EngModel *m, const char *model_path,
             Recorder **out);
/* Start a run for this prompt and fill h with the logging hooks (h is left
** empty without a database).  formatted: the text fed to the model (chat
** template), NULL = the prompt. */
int rec_begin(Recorder *r, const char *prompt, size_t len, const GenSettings *s, GenHooks *h);
int rec_begin_fmt(Recorder *r, const char *prompt, const char *formatted, const GenSettings *s,
                  GenHooks *h);
/* Finish the current run (complete if ok, failed otherwise). */
int rec_end(Recorder *r, int ok, const GenStats *st);
int64_t rec_run_id(const Recorder *r);        /* current/last run, 0 if none */
int rec_close(Recorder *r);                   /* accepts NULL; -1 on error */

/* JSON array describing the interventions (for the database). */
char *rec_ivs_json(const EngIv *ivs, int n);

/* Text of the interventions, one per line, as eng_iv_format writes them. */
char *tui_ivs_text(const EngIv *ivs, int n);

#endif
