/*
** tui/tui.h — the moescope binary: command-line subcommands and the
** full-screen app.
*/
#ifndef TUI_H
#define TUI_H

/* Run the moescope command line; returns the process exit status. */
int tui_main(int argc, char **argv);

#endif
