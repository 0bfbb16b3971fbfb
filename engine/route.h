/*
** engine/route.h — internal: expert selection for one token in one layer,
** with the interventions of DESIGN.md applied in their fixed order
** (bias, disable, force, top-k / top-p) and the weights computed by the
** architecture's own formula (fixtures README, "Routing as llama.cpp
** computes it").
*/
#ifndef ENG_ROUTE_H
#define ENG_ROUTE_H

#include "engine/model.h"

typedef struct {
    int k;
    int32_t *experts;    /* capacity n_expert */
    float *scores;
    float *weights;
} RouteOut;

/* Scratch for eng_route(): 4 * n_expert floats + n_expert bytes. */
typedef struct {
    float *l, *p, *sc, *mass;
    uint8_t *flags;
} RouteScratch;

/* Select experts for one token.  logits: the raw router logits W_gate.x
** (n_expert).  ivs: every intervention of the context; those that match
** (layer, pos, is_prompt) apply.  Can't fail (interventions were validated
** when set). */
void eng_route(const EngModel *m, int layer, int pos, int is_prompt,
               const float *logits, const EngIv *ivs, int n_ivs,
               RouteScratch *s, RouteOut *out);

/* 1 if iv applies at (layer, pos, is_prompt). */
int eng_iv_applies(const EngIv *iv, int layer, int pos, int is_prompt);

#endif
