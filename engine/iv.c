/*
** engine/iv.c — interventions as the command line writes them.
**
**   --disable 2:11,*:3      --force 0:5      --bias 4:7=-1.5,*:2=0.5
**   --top-k 4   --top-p 0.9   --scope all|prompt|gen|from:T
** L is a layer (0-based) or '*' for every MoE layer, E an expert (0-based).
*/
#include "engine/eng.h"
#include "engine/model.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int iv_err(EngErr *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->status = ENG_E_ARG;
        err->detail = 0;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int parse_int(const char *s, const char *end, long *out)
{
    if (s == end)
        return -1;
    char buf[32];
    size_t n = (size_t)(end - s);
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *e;
    errno = 0;
    long v = strtol(buf, &e, 10);
    if (*e || errno || buf[0] == '+' || buf[0] == ' ')
        return -1;
    *out = v;
    return 0;
}

int eng_iv_parse(const EngModel *m, EngIvKind kind, const char *spec, EngIv *out, int cap,
                 EngErr *err)
{
    const EngInfo *I = &m->info;
    const char *opt = kind == ENG_IV_BIAS ? "--bias" : kind == ENG_IV_FORCE ? "--force" : "--disable";
    const char *form = kind == ENG_IV_BIAS ? "L:E=B" : "L:E";
    int n = 0;
    const char *p = spec;
    if (!spec || !*spec)
        return iv_err(err, "%s: empty list, expected %s[,%s...]", opt, form, form);
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        char item[64];
        size_t len = (size_t)(end - p);
        if (len == 0 || len >= sizeof item)
            return iv_err(err, "%s: item %d '%.*s' malformed, expected %s (L = layer or *, E = expert)",
                          opt, n + 1, (int)(len < 40 ? len : 40), p, form);
        memcpy(item, p, len);
        item[len] = 0;
        const char *colon = strchr(item, ':');
        const char *eq = strchr(item, '=');
        if (!colon || (kind == ENG_IV_BIAS) != (eq != NULL) || (eq && eq < colon))
            return iv_err(err, "%s: '%s' malformed, expected %s (L = layer or *, E = expert)", opt,
                          item, form);
        EngIv iv = { 0 };
        iv.kind = kind;
        long v;
        if (colon == item + 1 && item[0] == '*') {
            iv.layer = -1;
        } else if (parse_int(item, colon, &v) < 0) {
            return iv_err(err, "%s: '%s': layer '%.*s' is not a number or *", opt, item,
                          (int)(colon - item), item);
        } else if (v < 0 || v >= I->n_layer) {
            return iv_err(err, "%s: '%s': layer %ld out of range 0..%d", opt, item, v,
                          I->n_layer - 1);
        } else if (!m->layers[v].is_moe) {
            return iv_err(err, "%s: '%s': layer %ld is dense (MoE layers are %d..%d)", opt, item,
                          v, I->n_dense_lead, I->n_layer - 1);
        } else {
            iv.layer = (int)v;
        }
        const char *eend = eq ? eq : item + len;
        if (parse_int(colon + 1, eend, &v) < 0)
            return iv_err(err, "%s: '%s': expert '%.*s' is not a number", opt, item,
                          (int)(eend - colon - 1), colon + 1);
        if (v < 0 || v >= I->n_expert)
            return iv_err(err, "%s: '%s': expert %ld out of range 0..%d", opt, item, v,
                          I->n_expert - 1);
        iv.expert = (int)v;
        if (eq) {
            char *e;
            errno = 0;
            double b = strtod(eq + 1, &e);
            if (e == eq + 1 || *e || errno || !isfinite(b))
                return iv_err(err, "%s: '%s': bias '%s' is not a finite number", opt, item, eq + 1);
            iv.value = (float)b;
        }
        if (n >= cap)
            return iv_err(err, "%s: too many interventions (at most %d)", opt, cap);
        out[n++] = iv;
        p = *end ? end + 1 : end;
        if (*end && !*p)
            return iv_err(err, "%s: trailing comma in '%s'", opt, spec);
    }
    return n;
}

int eng_scope_parse(const char *s, EngScope *scope, int *from_pos, EngErr *err)
{
    *from_pos = 0;
    if (!strcmp(s, "all"))
        *scope = ENG_SCOPE_ALL;
    else if (!strcmp(s, "prompt"))
        *scope = ENG_SCOPE_PROMPT;
    else if (!strcmp(s, "gen"))
        *scope = ENG_SCOPE_GEN;
    else if (!strncmp(s, "from:", 5)) {
        long v;
        if (parse_int(s + 5, s + strlen(s), &v) < 0 || v < 0 || v > 1 << 24)
            return iv_err(err, "--scope '%s': position after 'from:' must be a number >= 0", s);
        *scope = ENG_SCOPE_FROM;
        *from_pos = (int)v;
    } else {
        return iv_err(err, "--scope '%s': expected all, prompt, gen or from:T", s);
    }
    return 0;
}

int eng_iv_format(const EngIv *iv, char *buf, size_t cap)
{
    char l[16], sc[32];
    if (iv->layer < 0)
        snprintf(l, sizeof l, "*");
    else
        snprintf(l, sizeof l, "%d", iv->layer);
    switch (iv->scope) {
    case ENG_SCOPE_ALL: snprintf(sc, sizeof sc, "all"); break;
    case ENG_SCOPE_PROMPT: snprintf(sc, sizeof sc, "prompt"); break;
    case ENG_SCOPE_GEN: snprintf(sc, sizeof sc, "gen"); break;
    case ENG_SCOPE_FROM: snprintf(sc, sizeof sc, "from:%d", iv->from_pos); break;
    }
    switch (iv->kind) {
    case ENG_IV_BIAS: return snprintf(buf, cap, "bias %s:%d=%g (%s)", l, iv->expert, iv->value, sc);
    case ENG_IV_DISABLE: return snprintf(buf, cap, "disable %s:%d (%s)", l, iv->expert, sc);
    case ENG_IV_FORCE: return snprintf(buf, cap, "force %s:%d (%s)", l, iv->expert, sc);
    case ENG_IV_TOPK: return snprintf(buf, cap, "top-k %s:%g (%s)", l, iv->value, sc);
    case ENG_IV_TOPP:
        return snprintf(buf, cap, "top-p %s:%g cap %d (%s)", l, iv->value, iv->cap, sc);
    }
    return snprintf(buf, cap, "?");
}
