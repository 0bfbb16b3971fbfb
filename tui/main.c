/*
** tui/main.c — the moescope binary: dispatches subcommands.
*/
#include "tui/tui.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    return tui_main(argc, argv);
}
