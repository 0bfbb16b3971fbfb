/*
** tui/cli.c — command-line front end: parses the subcommand and hands off.
*/
#include "tui/tui.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: moescope COMMAND [options]\n"
               "commands: info run stats contrast diff eval ppl export import synth tui\n");
}

int tui_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    fprintf(stderr, "moescope: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
