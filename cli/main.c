/*
** cli/main.c — the moescope binary: dispatches subcommands.
*/
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    return cli_main(argc, argv);
}
