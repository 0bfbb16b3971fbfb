/*
** analysis/report.c — writers for statistics, contrasts and run diffs in
** three forms: terminal tables (aligned columns), CSV and JSON.
**
** CSV is long ("tidy") so one file holds every table and loads into pandas
** or duckdb as is:  table,split,layer,i,j,metric,value  where i/j depend on
** the table (load: i = expert; top_tokens: i = expert, j = rank; coact:
** i = a, j = b; transition: layer = from-layer, i = expert there, j =
** expert in the next MoE layer).  Layers are printed as absolute layer
** numbers when the caller gives them (AnLabels.layer_of).
**
** Undefined numbers (NAN: a statistic of nothing) print as "-" in tables,
** as an empty field in CSV and as null in JSON, never as "nan".
*/
#include "analysis/an.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/an_int.h"

int an_format_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "table"))
        return AN_FMT_TABLE;
    if (!strcmp(s, "csv"))
        return AN_FMT_CSV;
    if (!strcmp(s, "json"))
        return AN_FMT_JSON;
    return -1;
}

/* ---- small helpers --------------------------------------------------- */

static int lay(const AnLabels *lb, int l)
{
    return lb && lb->layer_of ? lb->layer_of[l] : l;
}

/* A number as the format wants it; buf holds at least 32 bytes. */
static const char *num(char *buf, double v, int prec, AnFormat fmt)
{
    if (!isfinite(v))
        return fmt == AN_FMT_TABLE ? "-" : fmt == AN_FMT_CSV ? "" : "null";
    snprintf(buf, 32, "%.*f", prec, v);
    return buf;
}

/* Like num() but %g, for CSV/JSON where full precision is wanted. */
static const char *gnum(char *buf, double v, AnFormat fmt)
{
    if (!isfinite(v))
        return fmt == AN_FMT_TABLE ? "-" : fmt == AN_FMT_CSV ? "" : "null";
    snprintf(buf, 32, "%.10g", v);
    return buf;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void csv_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

/* Printable text of a token: the caller's callback, or the id. */
static const char *tok_text(const AnLabels *lb, int32_t id, char *buf, size_t cap)
{
    if (lb && lb->tok_text) {
        lb->tok_text(lb->tok_user, id, buf, cap);
        buf[cap - 1] = 0;
        return buf;
    }
    snprintf(buf, cap, "#%d", (int)id);
    return buf;
}

static int finish(FILE *f)
{
    return ferror(f) ? -1 : 0;
}

/* ---- stats ------------------------------------------------------------ */

/* The table's strongest-pair summaries ignore experts chosen fewer times
** (a P(b|a) of 1 from a single position says nothing). */
enum { PAIR_MIN = 10 };

static const char *LAYER_METRIC[] = { "tokens", "entropy", "cv", "maxvio", "gini", "unused",
                                      "router_entropy", "top1_prob", "vocab_spec",
                                      "vocab_ids" };
enum { N_LAYER_METRIC = 10 };

static double layer_metric(const AnLayerStats *ls, int m)
{
    switch (m) {
    case 0: return (double)ls->n_tok;
    case 1: return ls->entropy;
    case 2: return ls->cv;
    case 3: return ls->maxvio;
    case 4: return ls->gini;
    case 5: return ls->n_unused;
    case 6: return ls->router_entropy;
    case 7: return ls->top1_prob;
    case 8: return ls->vocab_spec;
    default: return ls->n_vocab_ids;
    }
}

static double share_of(const AnStats *s, int sp, int l, int e)
{
    size_t L = (size_t)s->n_layer, E = (size_t)s->n_expert;
    int64_t tot = s->layer[(size_t)sp * L + (size_t)l].n_assign;
    return tot ? (double)s->load->count[((size_t)sp * L + (size_t)l) * E + (size_t)e] / (double)tot
               : NAN;
}

/* Why a split has no numbers: count-only runs are in the selection. */
static const char NO_SPLIT[] = "not available: count-only runs (per-layer counts without "
                               "tokens) are included; token views not available";

/* 1 when split sp of s is not known (prompt/gen over count-only runs). */
static int split_missing(const AnStats *s, int sp)
{
    return sp != AN_SPLIT_ALL && s->load->no_split;
}

static void stats_table(FILE *f, const AnStats *s, const AnLabels *lb)
{
    const size_t L = (size_t)s->n_layer, E = (size_t)s->n_expert;
    char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32], b7[32], b8[32];
    if (lb && lb->title)
        fprintf(f, "%s\n", lb->title);
    fprintf(f, "%d MoE layers × %d experts\n", s->n_layer, s->n_expert);
    for (int sp = 0; sp < AN_NSPLIT; sp++) {
        if (split_missing(s, sp)) {
            fprintf(f, "\n== %s positions: %s\n", an_split_name(sp), NO_SPLIT);
            continue;
        }
        fprintf(f, "\n== %s positions: %lld\n", an_split_name(sp), (long long)s->load->n_pos[sp]);
        fprintf(f, "%5s %9s %7s %7s %7s %6s %6s %8s %7s %7s %6s\n", "layer", "tokens", "entropy",
                "cv", "maxvio", "gini", "unused", "router_H", "top1_p", "vocspec", "vocids");
        for (size_t l = 0; l < L; l++) {
            const AnLayerStats *ls = &s->layer[(size_t)sp * L + l];
            fprintf(f, "%5d %9lld %7s %7s %7s %6s %6d %8s %7s %7s %6s\n", lay(lb, (int)l),
                    (long long)ls->n_tok, num(b1, ls->entropy, 3, AN_FMT_TABLE),
                    num(b2, ls->cv, 3, AN_FMT_TABLE), num(b3, ls->maxvio, 3, AN_FMT_TABLE),
                    num(b4, ls->gini, 3, AN_FMT_TABLE), ls->n_unused,
                    num(b5, ls->router_entropy, 3, AN_FMT_TABLE),
                    num(b6, ls->top1_prob, 3, AN_FMT_TABLE),
                    num(b7, ls->vocab_spec, 3, AN_FMT_TABLE),
                    s->has_routes ? num(b8, ls->n_vocab_ids, 0, AN_FMT_TABLE) : "-");
        }
        fprintf(f, "\nload share %% (%s), layer × expert\n", an_split_name(sp));
        for (size_t e0 = 0; e0 < E; e0 += 16) {
            fprintf(f, "%5s", "L\\E");
            for (size_t e = e0; e < E && e < e0 + 16; e++)
                fprintf(f, " %5zu", e);
            fputc('\n', f);
            for (size_t l = 0; l < L; l++) {
                fprintf(f, "%5d", lay(lb, (int)l));
                for (size_t e = e0; e < E && e < e0 + 16; e++)
                    fprintf(f, " %5s", num(b1, 100.0 * share_of(s, sp, (int)l, (int)e), 1,
                                           AN_FMT_TABLE));
                fputc('\n', f);
            }
        }
    }
    if (s->has_routes && s->n_top_tok > 0) {
        fprintf(f, "\ntop tokens per expert (all positions; share = N(x,e)/N(x), N(x) >= %d)\n",
                s->min_occ);
        int any = 0;
        for (size_t l = 0; l < L; l++)
            for (size_t e = 0; e < E; e++) {
                const AnTopTok *t = s->top + (l * E + e) * (size_t)s->n_top_tok;
                if (t[0].token < 0)
                    continue;
                any = 1;
                fprintf(f, "%5d %5zu ", lay(lb, (int)l), e);
                for (int j = 0; j < s->n_top_tok && t[j].token >= 0; j++) {
                    char tb[64];
                    fprintf(f, " %s %.2f", tok_text(lb, t[j].token, tb, sizeof tb),
                            (double)t[j].share);
                }
                fputc('\n', f);
            }
        if (!any)
            fprintf(f, "(no token id seen %d times)\n", s->min_occ);
    }
    if (s->has_pairs) {
        fprintf(f, "\nstrongest co-activation per layer (all positions): a → b P(b|a), "
                   "a chosen >= %d times\n", PAIR_MIN);
        double *P = malloc(E * E * sizeof *P);
        for (size_t l = 0; l < L && P; l++) {
            an_cond_prob(s->coact + l * E * E, (int)E, P);
            double best = -1;
            size_t ba = 0, bb = 0;
            for (size_t a = 0; a < E; a++)
                for (size_t b = 0; b < E; b++)
                    if (a != b && s->coact[l * E * E + a * E + a] >= PAIR_MIN &&
                        isfinite(P[a * E + b]) && P[a * E + b] > best) {
                        best = P[a * E + b];
                        ba = a;
                        bb = b;
                    }
            if (best < 0)
                fprintf(f, "%5d  -\n", lay(lb, (int)l));
            else
                fprintf(f, "%5d  %zu → %zu  %.3f\n", lay(lb, (int)l), ba, bb, best);
        }
        free(P);
        if (L > 1) {
            fprintf(f, "\nstrongest transition per layer pair (all positions): a → b "
                       "P(b at l+1 | a at l), a chosen >= %d times\n", PAIR_MIN);
            for (size_t l = 0; l + 1 < L; l++) {
                const double *T = s->trans + l * E * E;
                const double *C = s->coact + l * E * E;
                double best = -1;
                size_t ba = 0, bb = 0;
                for (size_t a = 0; a < E; a++)
                    for (size_t b = 0; b < E; b++) {
                        double d = C[a * E + a];
                        if (d >= PAIR_MIN && T[a * E + b] / d > best) {
                            best = T[a * E + b] / d;
                            ba = a;
                            bb = b;
                        }
                    }
                if (best < 0)
                    fprintf(f, "%5d→%-5d -\n", lay(lb, (int)l), lay(lb, (int)l + 1));
                else
                    fprintf(f, "%5d→%-5d %zu → %zu  %.3f\n", lay(lb, (int)l),
                            lay(lb, (int)l + 1), ba, bb, best);
            }
        }
    }
}

static void csv_row(FILE *f, const char *table, int sp, int layer, const char *i, const char *j,
                    const char *metric, const char *value)
{
    fprintf(f, "%s,%s,%d,%s,%s,%s,%s\n", table, an_split_name(sp), layer, i, j, metric, value);
}

static void stats_csv(FILE *f, const AnStats *s, const AnLabels *lb)
{
    const size_t L = (size_t)s->n_layer, E = (size_t)s->n_expert;
    char b[32], is[24], js[24];
    fprintf(f, "table,split,layer,i,j,metric,value\n");
    for (int sp = 0; sp < AN_NSPLIT; sp++) {
        if (split_missing(s, sp)) {
            fprintf(f, "unavailable,%s,,,,reason,", an_split_name(sp));
            csv_str(f, NO_SPLIT);
            fputc('\n', f);
            continue;
        }
        for (size_t l = 0; l < L; l++) {
            const AnLayerStats *ls = &s->layer[(size_t)sp * L + l];
            for (int m = 0; m < N_LAYER_METRIC; m++) {
                if (m == 9 && !s->has_routes)
                    continue;
                csv_row(f, "layer", sp, lay(lb, (int)l), "", "", LAYER_METRIC[m],
                        gnum(b, layer_metric(ls, m), AN_FMT_CSV));
            }
        }
        for (size_t l = 0; l < L; l++)
            for (size_t e = 0; e < E; e++) {
                size_t q = ((size_t)sp * L + l) * E + e;
                snprintf(is, sizeof is, "%zu", e);
                csv_row(f, "load", sp, lay(lb, (int)l), is, "", "count",
                        gnum(b, (double)s->load->count[q], AN_FMT_CSV));
                csv_row(f, "load", sp, lay(lb, (int)l), is, "", "share",
                        gnum(b, share_of(s, sp, (int)l, (int)e), AN_FMT_CSV));
                csv_row(f, "load", sp, lay(lb, (int)l), is, "", "mass",
                        gnum(b, s->load->mass[q], AN_FMT_CSV));
            }
        if (s->has_routes)
            for (size_t l = 0; l < L; l++)
                for (size_t e = 0; e < E; e++) {
                    const AnTopTok *t = s->top + (((size_t)sp * L + l) * E + e) * (size_t)s->n_top_tok;
                    snprintf(is, sizeof is, "%zu", e);
                    for (int r = 0; r < s->n_top_tok && t[r].token >= 0; r++) {
                        char tb[128];
                        snprintf(js, sizeof js, "%d", r + 1);
                        fprintf(f, "top_tokens,%s,%d,%s,%s,text,", an_split_name(sp),
                                lay(lb, (int)l), is, js);
                        csv_str(f, tok_text(lb, t[r].token, tb, sizeof tb));
                        fputc('\n', f);
                        csv_row(f, "top_tokens", sp, lay(lb, (int)l), is, js, "token",
                                gnum(b, t[r].token, AN_FMT_CSV));
                        csv_row(f, "top_tokens", sp, lay(lb, (int)l), is, js, "count",
                                gnum(b, t[r].count, AN_FMT_CSV));
                        csv_row(f, "top_tokens", sp, lay(lb, (int)l), is, js, "occurrences",
                                gnum(b, t[r].occ, AN_FMT_CSV));
                        csv_row(f, "top_tokens", sp, lay(lb, (int)l), is, js, "share",
                                gnum(b, t[r].share, AN_FMT_CSV));
                    }
                }
        if (s->has_pairs) {
            for (size_t l = 0; l < L; l++) {
                const double *C = s->coact + ((size_t)sp * L + l) * E * E;
                for (size_t a = 0; a < E; a++)
                    for (size_t bb = 0; bb < E; bb++) {
                        if (C[a * E + bb] == 0)
                            continue;
                        snprintf(is, sizeof is, "%zu", a);
                        snprintf(js, sizeof js, "%zu", bb);
                        csv_row(f, "coact", sp, lay(lb, (int)l), is, js, "count",
                                gnum(b, C[a * E + bb], AN_FMT_CSV));
                        csv_row(f, "coact", sp, lay(lb, (int)l), is, js, "p_b_given_a",
                                gnum(b, C[a * E + bb] / C[a * E + a], AN_FMT_CSV));
                    }
            }
            for (size_t l = 0; l + 1 < L; l++) {
                const double *T = s->trans + ((size_t)sp * (L - 1) + l) * E * E;
                for (size_t a = 0; a < E; a++)
                    for (size_t bb = 0; bb < E; bb++) {
                        if (T[a * E + bb] == 0)
                            continue;
                        snprintf(is, sizeof is, "%zu", a);
                        snprintf(js, sizeof js, "%zu", bb);
                        csv_row(f, "transition", sp, lay(lb, (int)l), is, js, "count",
                                gnum(b, T[a * E + bb], AN_FMT_CSV));
                    }
            }
        }
    }
}

static void json_matrix(FILE *f, const double *M, size_t E)
{
    char b[32];
    fputc('[', f);
    for (size_t a = 0; a < E; a++) {
        fputs(a ? ",[" : "[", f);
        for (size_t c = 0; c < E; c++)
            fprintf(f, "%s%s", c ? "," : "", gnum(b, M[a * E + c], AN_FMT_JSON));
        fputc(']', f);
    }
    fputc(']', f);
}

static void stats_json(FILE *f, const AnStats *s, const AnLabels *lb)
{
    const size_t L = (size_t)s->n_layer, E = (size_t)s->n_expert;
    char b[32];
    fputs("{", f);
    if (lb && lb->title) {
        fputs("\"title\":", f);
        json_str(f, lb->title);
        fputs(",", f);
    }
    fprintf(f, "\"n_layer\":%d,\"n_expert\":%d,\"min_occ\":%d,\"splits\":{", s->n_layer,
            s->n_expert, s->min_occ);
    for (int sp = 0; sp < AN_NSPLIT; sp++) {
        if (split_missing(s, sp)) {
            fprintf(f, "%s\"%s\":{\"available\":false,\"reason\":", sp ? "," : "",
                    an_split_name(sp));
            json_str(f, NO_SPLIT);
            fputs("}", f);
            continue;
        }
        fprintf(f, "%s\"%s\":{\"positions\":%lld,\"layers\":[", sp ? "," : "", an_split_name(sp),
                (long long)s->load->n_pos[sp]);
        for (size_t l = 0; l < L; l++) {
            const AnLayerStats *ls = &s->layer[(size_t)sp * L + l];
            fprintf(f, "%s{\"layer\":%d", l ? "," : "", lay(lb, (int)l));
            for (int m = 0; m < N_LAYER_METRIC; m++) {
                if (m == 9 && !s->has_routes)
                    continue;
                fprintf(f, ",\"%s\":%s", LAYER_METRIC[m], gnum(b, layer_metric(ls, m), AN_FMT_JSON));
            }
            size_t q0 = ((size_t)sp * L + l) * E;
            fputs(",\"count\":[", f);
            for (size_t e = 0; e < E; e++)
                fprintf(f, "%s%lld", e ? "," : "", (long long)s->load->count[q0 + e]);
            fputs("],\"share\":[", f);
            for (size_t e = 0; e < E; e++)
                fprintf(f, "%s%s", e ? "," : "", gnum(b, share_of(s, sp, (int)l, (int)e), AN_FMT_JSON));
            fputs("],\"mass\":[", f);
            for (size_t e = 0; e < E; e++)
                fprintf(f, "%s%s", e ? "," : "", gnum(b, s->load->mass[q0 + e], AN_FMT_JSON));
            fputs("]", f);
            if (s->has_routes) {
                fputs(",\"top_tokens\":[", f);
                for (size_t e = 0; e < E; e++) {
                    const AnTopTok *t = s->top + (q0 + e) * (size_t)s->n_top_tok;
                    fputs(e ? ",[" : "[", f);
                    for (int r = 0; r < s->n_top_tok && t[r].token >= 0; r++) {
                        char tb[128];
                        fprintf(f, "%s{\"token\":%d,\"text\":", r ? "," : "", (int)t[r].token);
                        json_str(f, tok_text(lb, t[r].token, tb, sizeof tb));
                        fprintf(f, ",\"count\":%d,\"occurrences\":%d,\"share\":%s}", (int)t[r].count,
                                (int)t[r].occ, gnum(b, t[r].share, AN_FMT_JSON));
                    }
                    fputc(']', f);
                }
                fputc(']', f);
            }
            if (s->has_pairs) {
                fputs(",\"coact\":", f);
                json_matrix(f, s->coact + ((size_t)sp * L + l) * E * E, E);
                if (l + 1 < L) {
                    fputs(",\"transition\":", f);
                    json_matrix(f, s->trans + ((size_t)sp * (L - 1) + l) * E * E, E);
                }
            }
            fputs("}", f);
        }
        fputs("]}", f);
    }
    fputs("}}\n", f);
}

int an_write_stats(FILE *f, const AnStats *s, AnFormat fmt, const AnLabels *lb)
{
    if (fmt == AN_FMT_CSV)
        stats_csv(f, s, lb);
    else if (fmt == AN_FMT_JSON)
        stats_json(f, s, lb);
    else
        stats_table(f, s, lb);
    return finish(f);
}

/* ---- contrast --------------------------------------------------------- */

int an_write_contrast(FILE *f, const AnContrast *c, int top, AnFormat fmt, const AnLabels *lb)
{
    int n = top > 0 && top < c->n_row ? top : c->n_row;
    char b[12][32];
    if (fmt == AN_FMT_TABLE) {
        if (lb && lb->title)
            fprintf(f, "%s\n", lb->title);
        fprintf(f, "runs A %d, B %d; %s positions; min count %lld; %d permutations (seed %llu); "
                   "%d layer×expert rows tested\n",
                c->n_runs_a, c->n_runs_b, an_split_name(c->split), (long long)c->min_count,
                c->n_perm, (unsigned long long)c->seed, c->n_row);
        fprintf(f, "Δ = pA − pB with Newcombe 95%% CI; LOR = log odds ratio (+0.5) with Wald "
                   "95%% CI; p: permutation of runs; q: Benjamini–Hochberg\n");
        fprintf(f, "%4s %5s %6s %7s %7s %8s %18s %7s %16s %7s %7s %9s %9s\n", "rank", "layer",
                "expert", "pA", "pB", "delta", "delta 95% CI", "LOR", "LOR 95% CI", "p", "q",
                "countA", "countB");
        for (int i = 0; i < n; i++) {
            const AnContrastRow *w = &c->row[i];
            char ci1[80], ci2[80];
            snprintf(ci1, sizeof ci1, "[%s, %s]", num(b[0], w->delta_lo, 4, fmt),
                     num(b[1], w->delta_hi, 4, fmt));
            snprintf(ci2, sizeof ci2, "[%s, %s]", num(b[2], w->lor_lo, 2, fmt),
                     num(b[3], w->lor_hi, 2, fmt));
            fprintf(f, "%4d %5d %6d %7s %7s %8s %18s %7s %16s %7s %7s %9lld %9lld\n", i + 1,
                    lay(lb, w->layer), w->expert, num(b[4], w->p_a, 4, fmt),
                    num(b[5], w->p_b, 4, fmt), num(b[6], w->delta, 4, fmt), ci1,
                    num(b[7], w->lor, 2, fmt), ci2, num(b[8], w->p_value, 4, fmt),
                    num(b[9], w->q_value, 4, fmt), (long long)w->count_a, (long long)w->count_b);
        }
        if (n == 0)
            fprintf(f, "(no layer×expert passes the minimum count)\n");
    } else if (fmt == AN_FMT_CSV) {
        fprintf(f, "rank,layer,expert,count_a,n_a,count_b,n_b,p_a,p_b,delta,delta_lo,delta_hi,"
                   "lor,lor_lo,lor_hi,p_value,q_value\n");
        for (int i = 0; i < n; i++) {
            const AnContrastRow *w = &c->row[i];
            fprintf(f, "%d,%d,%d,%lld,%lld,%lld,%lld,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", i + 1,
                    lay(lb, w->layer), w->expert, (long long)w->count_a, (long long)w->n_a,
                    (long long)w->count_b, (long long)w->n_b, gnum(b[0], w->p_a, fmt),
                    gnum(b[1], w->p_b, fmt), gnum(b[2], w->delta, fmt),
                    gnum(b[3], w->delta_lo, fmt), gnum(b[4], w->delta_hi, fmt),
                    gnum(b[5], w->lor, fmt), gnum(b[6], w->lor_lo, fmt),
                    gnum(b[7], w->lor_hi, fmt), gnum(b[8], w->p_value, fmt),
                    gnum(b[9], w->q_value, fmt));
        }
    } else {
        fputs("{", f);
        if (lb && lb->title) {
            fputs("\"title\":", f);
            json_str(f, lb->title);
            fputs(",", f);
        }
        fprintf(f, "\"runs_a\":%d,\"runs_b\":%d,\"split\":\"%s\",\"min_count\":%lld,"
                   "\"permutations\":%d,\"seed\":%llu,\"tested\":%d,\"rows\":[",
                c->n_runs_a, c->n_runs_b, an_split_name(c->split), (long long)c->min_count,
                c->n_perm, (unsigned long long)c->seed, c->n_row);
        for (int i = 0; i < n; i++) {
            const AnContrastRow *w = &c->row[i];
            fprintf(f, "%s{\"rank\":%d,\"layer\":%d,\"expert\":%d,\"count_a\":%lld,\"n_a\":%lld,"
                       "\"count_b\":%lld,\"n_b\":%lld,\"p_a\":%s,\"p_b\":%s,\"delta\":%s,"
                       "\"delta_ci\":[%s,%s],\"lor\":%s,\"lor_ci\":[%s,%s],\"p_value\":%s,"
                       "\"q_value\":%s}",
                    i ? "," : "", i + 1, lay(lb, w->layer), w->expert, (long long)w->count_a,
                    (long long)w->n_a, (long long)w->count_b, (long long)w->n_b,
                    gnum(b[0], w->p_a, fmt), gnum(b[1], w->p_b, fmt), gnum(b[2], w->delta, fmt),
                    gnum(b[3], w->delta_lo, fmt), gnum(b[4], w->delta_hi, fmt),
                    gnum(b[5], w->lor, fmt), gnum(b[6], w->lor_lo, fmt),
                    gnum(b[7], w->lor_hi, fmt), gnum(b[8], w->p_value, fmt),
                    gnum(b[9], w->q_value, fmt));
        }
        fputs("]}\n", f);
    }
    return finish(f);
}

/* ---- diff ------------------------------------------------------------- */

static double frac(int64_t a, int64_t b)
{
    return b ? (double)a / (double)b : NAN;
}

int an_write_diff(FILE *f, const AnDiff *d, AnFormat fmt, const AnLabels *lb)
{
    const size_t L = (size_t)d->n_layer, E = (size_t)d->n_expert;
    char b[6][32], ta[128], tb[128];
    if (fmt == AN_FMT_TABLE) {
        if (lb && lb->title)
            fprintf(f, "%s\n", lb->title);
        fprintf(f, "positions: A %lld, B %lld, common prefix %lld\n", (long long)d->n_pos_a,
                (long long)d->n_pos_b, (long long)d->n_common);
        if (d->first_div < 0)
            fprintf(f, "first divergence: none (identical tokens)\n");
        else
            fprintf(f, "first divergence: position %lld%s: A %s (logprob %s), B %s (logprob %s)\n",
                    (long long)d->first_div, d->div_in_prompt ? " (in the prompt)" : "",
                    d->tok_a >= 0 ? tok_text(lb, d->tok_a, ta, sizeof ta) : "(end)",
                    num(b[0], d->lp_a, 3, fmt),
                    d->tok_b >= 0 ? tok_text(lb, d->tok_b, tb, sizeof tb) : "(end)",
                    num(b[1], d->lp_b, 3, fmt));
        fprintf(f, "chosen-token logprob over the common generated prefix (%lld positions): "
                   "mean B−A %s, max |B−A| %s\n",
                (long long)d->n_lp, num(b[2], d->lp_mean_delta, 4, fmt),
                num(b[3], d->lp_max_abs, 4, fmt));
        fprintf(f, "\nshare of common-prefix positions whose expert set changed\n");
        fprintf(f, "%5s %14s %14s %14s\n", "layer", "all", "prompt", "gen");
        for (size_t l = 0; l < L; l++) {
            char c3[3][224];
            for (int sp = 0; sp < AN_NSPLIT; sp++) {
                size_t q = (size_t)sp * L + l;
                snprintf(c3[sp], sizeof c3[sp], "%s (%lld)",
                         num(b[sp], frac(d->n_changed[q], d->n_cmp[q]), 3, fmt),
                         (long long)d->n_cmp[q]);
            }
            fprintf(f, "%5d %14s %14s %14s\n", lay(lb, (int)l), c3[0], c3[1], c3[2]);
        }
        fprintf(f, "\nload delta A − B (all positions), nonzero entries\n%5s %6s %8s\n", "layer",
                "expert", "delta");
        int any = 0;
        for (size_t l = 0; l < L; l++)
            for (size_t e = 0; e < E; e++)
                if (d->load_delta[l * E + e]) {
                    fprintf(f, "%5d %6zu %+8lld\n", lay(lb, (int)l), e,
                            (long long)d->load_delta[l * E + e]);
                    any = 1;
                }
        if (!any)
            fprintf(f, "(none)\n");
    } else if (fmt == AN_FMT_CSV) {
        fprintf(f, "table,split,layer,i,j,metric,value\n");
        fprintf(f, "summary,all,,,,positions_a,%lld\nsummary,all,,,,positions_b,%lld\n"
                   "summary,all,,,,common_prefix,%lld\nsummary,all,,,,first_divergence,%s\n"
                   "summary,all,,,,divergence_in_prompt,%d\nsummary,all,,,,token_a,%s\n"
                   "summary,all,,,,token_b,%s\nsummary,all,,,,logprob_a,%s\n"
                   "summary,all,,,,logprob_b,%s\nsummary,gen,,,,logprob_positions,%lld\n"
                   "summary,gen,,,,logprob_mean_delta,%s\nsummary,gen,,,,logprob_max_abs_delta,%s\n",
                (long long)d->n_pos_a, (long long)d->n_pos_b, (long long)d->n_common,
                d->first_div < 0 ? "" : (snprintf(ta, sizeof ta, "%lld", (long long)d->first_div), ta),
                d->div_in_prompt, d->tok_a < 0 ? "" : (snprintf(b[4], 32, "%d", (int)d->tok_a), b[4]),
                d->tok_b < 0 ? "" : (snprintf(b[5], 32, "%d", (int)d->tok_b), b[5]),
                gnum(b[0], d->lp_a, fmt), gnum(b[1], d->lp_b, fmt), (long long)d->n_lp,
                gnum(b[2], d->lp_mean_delta, fmt), gnum(b[3], d->lp_max_abs, fmt));
        for (int sp = 0; sp < AN_NSPLIT; sp++)
            for (size_t l = 0; l < L; l++) {
                size_t q = (size_t)sp * L + l;
                fprintf(f, "set_change,%s,%d,,,compared,%lld\n", an_split_name(sp), lay(lb, (int)l),
                        (long long)d->n_cmp[q]);
                fprintf(f, "set_change,%s,%d,,,changed,%lld\n", an_split_name(sp), lay(lb, (int)l),
                        (long long)d->n_changed[q]);
                fprintf(f, "set_change,%s,%d,,,share,%s\n", an_split_name(sp), lay(lb, (int)l),
                        gnum(b[0], frac(d->n_changed[q], d->n_cmp[q]), fmt));
            }
        for (int sp = 0; sp < AN_NSPLIT; sp++)
            for (size_t l = 0; l < L; l++)
                for (size_t e = 0; e < E; e++)
                    fprintf(f, "load_delta,%s,%d,%zu,,count,%lld\n", an_split_name(sp),
                            lay(lb, (int)l), e, (long long)d->load_delta[((size_t)sp * L + l) * E + e]);
    } else {
        fputs("{", f);
        if (lb && lb->title) {
            fputs("\"title\":", f);
            json_str(f, lb->title);
            fputs(",", f);
        }
        fprintf(f, "\"positions_a\":%lld,\"positions_b\":%lld,\"common_prefix\":%lld,",
                (long long)d->n_pos_a, (long long)d->n_pos_b, (long long)d->n_common);
        if (d->first_div < 0)
            fputs("\"first_divergence\":null,", f);
        else {
            fprintf(f, "\"first_divergence\":{\"pos\":%lld,\"in_prompt\":%s,\"token_a\":",
                    (long long)d->first_div, d->div_in_prompt ? "true" : "false");
            if (d->tok_a >= 0)
                fprintf(f, "%d", (int)d->tok_a);
            else
                fputs("null", f);
            fputs(",\"token_b\":", f);
            if (d->tok_b >= 0)
                fprintf(f, "%d", (int)d->tok_b);
            else
                fputs("null", f);
            fprintf(f, ",\"logprob_a\":%s,\"logprob_b\":%s},", gnum(b[0], d->lp_a, fmt),
                    gnum(b[1], d->lp_b, fmt));
        }
        fprintf(f, "\"logprob\":{\"positions\":%lld,\"mean_delta\":%s,\"max_abs_delta\":%s},",
                (long long)d->n_lp, gnum(b[2], d->lp_mean_delta, fmt),
                gnum(b[3], d->lp_max_abs, fmt));
        fputs("\"splits\":{", f);
        for (int sp = 0; sp < AN_NSPLIT; sp++) {
            fprintf(f, "%s\"%s\":{\"layers\":[", sp ? "," : "", an_split_name(sp));
            for (size_t l = 0; l < L; l++) {
                size_t q = (size_t)sp * L + l;
                fprintf(f, "%s{\"layer\":%d,\"compared\":%lld,\"changed\":%lld,\"share\":%s,"
                           "\"load_delta\":[",
                        l ? "," : "", lay(lb, (int)l), (long long)d->n_cmp[q],
                        (long long)d->n_changed[q],
                        gnum(b[0], frac(d->n_changed[q], d->n_cmp[q]), fmt));
                for (size_t e = 0; e < E; e++)
                    fprintf(f, "%s%lld", e ? "," : "", (long long)d->load_delta[q * E + e]);
                fputs("]}", f);
            }
            fputs("]}", f);
        }
        fputs("}}\n", f);
    }
    return finish(f);
}
