/*
** tests/tmpdir.h — a fresh temporary directory per test case (cmocka
** setup/teardown) and a seeded mixing function for synthetic data.
** Header-only: each test binary includes what it uses.
*/
#ifndef TESTS_TMPDIR_H
#define TESTS_TMPDIR_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    char dir[64];       /* /tmp/moescope-test-XXXXXX */
    char path[128];     /* dir/t.db */
} Tmp;

static int tmp_setup(void **state)
{
    Tmp *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    snprintf(t->dir, sizeof t->dir, "/tmp/moescope-test-XXXXXX");
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    snprintf(t->path, sizeof t->path, "%s/t.db", t->dir);
    *state = t;
    return 0;
}

/* Removes the directory, write-protected parts included. */
static int tmp_teardown(void **state)
{
    Tmp *t = *state;
    char cmd[200];
    snprintf(cmd, sizeof cmd, "chmod -R u+w %s; rm -rf %s", t->dir, t->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", t->dir);
    free(t);
    return 0;
}

/* splitmix64 finaliser: a well-mixed 64-bit value from a counter */
static inline uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

#endif
