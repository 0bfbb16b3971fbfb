/*
** analysis/an_int.h — helpers shared by the analysis sources (internal).
*/
#ifndef AN_INT_H
#define AN_INT_H

#include "analysis/an.h"

/* Fill err (may be NULL) with st and a printf message; returns st. */
AnStatus an_fail(AnErr *err, AnStatus st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Advise transparent huge pages for a large array (ignored if unsupported). */
void an_hint_huge(void *p, size_t bytes);

/* Row i belongs to split s (AN_SPLIT_ALL takes every row). */
static inline int an_in_split(const AnRoutes *r, int64_t i, int s)
{
    if (s == AN_SPLIT_ALL)
        return 1;
    return (s == AN_SPLIT_PROMPT) == (r->is_prompt[i] != 0);
}

/* Router distribution of one position (n logits → n probabilities) by the
** gating rule; returns its entropy in nats and stores the maximum. */
double an_router_dist(const float *logits, int n, AnGating g, double *pmax);

#endif
