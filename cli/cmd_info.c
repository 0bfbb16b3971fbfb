/*
** cli/cmd_info.c — `moescope info MODEL`: what a GGUF file holds.
*/
#include "cli/cmds.h"
#include "cli/common.h"

#include <stdio.h>
#include <string.h>

int cli_cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: moescope info [-v] [MODEL]\n"
                   "  Print a GGUF model's architecture, sizes, experts, routing, tokenizer\n"
                   "  and tensor types.  -v lists every tensor.  MODEL defaults to the sample.\n");
            return 0;
        } else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
            verbose = 1;
        } else if (!strcmp(argv[i], "-m")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moescope info: -m needs a value\n");
                return 2;
            }
            path = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "moescope info: unknown option '%s' (see moescope info --help)\n", argv[i]);
            return 2;
        } else if (path) {
            fprintf(stderr, "moescope info: one model at a time ('%s' and '%s')\n", path, argv[i]);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path)
        path = cli_default_model();
    EngModel *m = cli_open_model("info", path);
    if (!m)
        return 1;
    eng_model_describe(m, stdout, verbose);
    eng_model_close(m);
    return 0;
}
