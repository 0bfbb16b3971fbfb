/*
** db/import_npy.c — a careful reader (and a header writer) for NumPy's .npy
** format, the array container of moetrace traces.
**
** An .npy file is: the magic "\x93NUMPY", a major/minor version byte pair,
** the header length (2 bytes little-endian in version 1, 4 bytes in 2 and
** 3), then an ASCII (version 3: UTF-8) Python dict literal such as
**     {'descr': '<i2', 'fortran_order': False, 'shape': (1000, 58, 8), }
** padded with spaces and ended by '\n', then the raw array data.
**
** Trace files come from other machines and other programs, so nothing in
** them is trusted: the dict is parsed by a small grammar that accepts only
** the three keys numpy writes (each exactly once), only the dtypes moetrace
** uses, only C order; every dimension is checked for overflow when
** multiplied out, and the data must fill the file exactly (a truncated or
** padded file is refused).  Element access goes through memcpy, so data at
** any offset and in either byte order reads correctly.
*/
#include "db/db_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the header dict ----------------------------------------------------- */

typedef struct {
    const char *p, *end;
} Lex;

static void skip_ws(Lex *x)
{
    while (x->p < x->end && (*x->p == ' ' || *x->p == '\t' || *x->p == '\n' ||
                             *x->p == '\r'))
        x->p++;
}

static int eat(Lex *x, char c)
{
    skip_ws(x);
    if (x->p < x->end && *x->p == c) {
        x->p++;
        return 1;
    }
    return 0;
}

/* A quoted string ('...' or "...", no escapes) into buf. */
static int lex_string(Lex *x, char *buf, size_t cap)
{
    skip_ws(x);
    if (x->p >= x->end || (*x->p != '\'' && *x->p != '"'))
        return 0;
    char q = *x->p++;
    size_t n = 0;
    while (x->p < x->end && *x->p != q) {
        if (*x->p == '\\' || n + 1 >= cap)
            return 0;
        buf[n++] = *x->p++;
    }
    if (x->p >= x->end)
        return 0;
    x->p++;
    buf[n] = 0;
    return 1;
}

static int lex_word(Lex *x, const char *w)
{
    skip_ws(x);
    size_t n = strlen(w);
    if ((size_t)(x->end - x->p) >= n && !memcmp(x->p, w, n)) {
        x->p += n;
        return 1;
    }
    return 0;
}

/* A decimal dimension without overflow. */
static int lex_dim(Lex *x, uint64_t *v)
{
    skip_ws(x);
    if (x->p >= x->end || *x->p < '0' || *x->p > '9')
        return 0;
    uint64_t r = 0;
    while (x->p < x->end && *x->p >= '0' && *x->p <= '9') {
        uint64_t d = (uint64_t)(*x->p - '0');
        if (r > (UINT64_MAX - d) / 10)
            return 0;
        r = r * 10 + d;
        x->p++;
    }
    if (x->p < x->end && (*x->p == 'L' || *x->p == 'l'))    /* Python 2 longs */
        x->p++;
    *v = r;
    return 1;
}

static DbStatus bad(DbErr *err, const char *name, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static DbStatus bad(DbErr *err, const char *name, const char *field, const char *fmt, ...)
{
    char tail[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tail, sizeof tail, fmt, ap);
    va_end(ap);
    return db_err_set(err, DB_E_ARG, "%s: npy %s: %s", name, field, tail);
}

/* The dtype string: byte order, kind, size; only the ones moetrace uses. */
static DbStatus parse_descr(DbNpy *a, const char *d, DbErr *err)
{
    static const char *const ok[] = { "i2", "i4", "i8", "u1", "u2", "f2", "f4" };
    size_t n = strlen(d);
    if (n != 3 || (d[0] != '<' && d[0] != '>' && d[0] != '|' && d[0] != '='))
        return bad(err, a->name, "header field 'descr'",
                   "'%s' is not a supported dtype (expected e.g. '<i2', '<i8', '<f4')", d);
    int found = 0;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(d + 1, ok[i]))
            found = 1;
    if (!found)
        return bad(err, a->name, "header field 'descr'",
                   "'%s' is not a supported dtype (expected one of <i2 <i4 <i8 |u1 <u2 "
                   "<f2 <f4, any byte order)", d);
    a->kind = d[1];
    a->itemsize = d[2] - '0';
    int big = d[0] == '>';
    if (a->itemsize == 1 && d[0] != '|' && d[0] != '<' && d[0] != '>')
        big = 0;
    if (a->itemsize > 1 && d[0] == '|')
        return bad(err, a->name, "header field 'descr'",
                   "'%s': a %d-byte type needs a byte order ('<' or '>')", d, a->itemsize);
    a->swap = a->itemsize > 1 && (d[0] == '=' ? 0 : big == db_host_le());
    memcpy(a->descr, d, 4);      /* n == 3 checked above, plus the NUL */
    return DB_OK;
}

static DbStatus parse_dict(DbNpy *a, const char *h, size_t len, DbErr *err)
{
    Lex x = { h, h + len };
    int seen_descr = 0, seen_fo = 0, seen_shape = 0;
    if (!eat(&x, '{'))
        return bad(err, a->name, "header", "does not start with '{' (not a dict)");
    for (;;) {
        if (eat(&x, '}'))
            break;
        char key[32], val[32];
        if (!lex_string(&x, key, sizeof key))
            return bad(err, a->name, "header", "expected a quoted key at byte %d",
                       (int)(x.p - h));
        if (!eat(&x, ':'))
            return bad(err, a->name, "header", "expected ':' after key '%s'", key);
        if (!strcmp(key, "descr")) {
            if (seen_descr++)
                return bad(err, a->name, "header", "key 'descr' given twice");
            if (!lex_string(&x, val, sizeof val))
                return bad(err, a->name, "header field 'descr'",
                           "expected a dtype string such as '<i2'");
            DbStatus s = parse_descr(a, val, err);
            if (s != DB_OK)
                return s;
        } else if (!strcmp(key, "fortran_order")) {
            if (seen_fo++)
                return bad(err, a->name, "header", "key 'fortran_order' given twice");
            if (lex_word(&x, "True"))
                return bad(err, a->name, "header field 'fortran_order'",
                           "True: only C-order arrays are supported (save with "
                           "np.ascontiguousarray)");
            if (!lex_word(&x, "False"))
                return bad(err, a->name, "header field 'fortran_order'",
                           "expected False");
        } else if (!strcmp(key, "shape")) {
            if (seen_shape++)
                return bad(err, a->name, "header", "key 'shape' given twice");
            if (!eat(&x, '('))
                return bad(err, a->name, "header field 'shape'", "expected a tuple '('");
            a->ndim = 0;
            while (!eat(&x, ')')) {
                uint64_t d;
                if (a->ndim >= DB_NPY_MAX_DIM)
                    return bad(err, a->name, "header field 'shape'",
                               "more than %d dimensions", DB_NPY_MAX_DIM);
                if (!lex_dim(&x, &d))
                    return bad(err, a->name, "header field 'shape'",
                               "dimension %d is not a non-negative integer", a->ndim);
                a->shape[a->ndim++] = d;
                if (!eat(&x, ',')) {
                    if (!eat(&x, ')'))
                        return bad(err, a->name, "header field 'shape'",
                                   "expected ',' or ')' after dimension %d", a->ndim - 1);
                    break;
                }
            }
        } else {
            return bad(err, a->name, "header", "unexpected key '%s' (expected descr, "
                       "fortran_order, shape)", key);
        }
        if (!eat(&x, ',')) {
            if (!eat(&x, '}'))
                return bad(err, a->name, "header", "expected ',' or '}' after key '%s'", key);
            break;
        }
    }
    skip_ws(&x);
    if (x.p != x.end)
        return bad(err, a->name, "header", "unexpected text after the dict at byte %d",
                   (int)(x.p - h));
    if (!seen_descr || !seen_fo || !seen_shape)
        return bad(err, a->name, "header", "missing key '%s'",
                   !seen_descr ? "descr" : !seen_fo ? "fortran_order" : "shape");
    return DB_OK;
}

/* ---- parsing a whole image ------------------------------------------------ */

DbStatus db_npy_parse(DbNpy *a, const uint8_t *buf, size_t len, const char *name,
                      DbErr *err)
{
    void *map = a->map;
    size_t map_len = a->map_len;
    memset(a, 0, sizeof *a);
    a->map = map;
    a->map_len = map_len;
    snprintf(a->name, sizeof a->name, "%s", name ? name : "(npy)");
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return bad(err, a->name, "magic", "the file does not start with \\x93NUMPY "
                   "(%zu bytes; not an .npy file)", len);
    int major = buf[6], minor = buf[7];
    if (major < 1 || major > 3 || minor != 0)
        return bad(err, a->name, "version", "%d.%d (expected 1.0, 2.0 or 3.0)", major, minor);
    size_t pre = major == 1 ? 10 : 12;
    if (len < pre)
        return bad(err, a->name, "header length", "file of %zu bytes ends inside the "
                   "preamble", len);
    uint64_t hlen = major == 1 ? (uint64_t)buf[8] | (uint64_t)buf[9] << 8
                               : (uint64_t)buf[8] | (uint64_t)buf[9] << 8 |
                                     (uint64_t)buf[10] << 16 | (uint64_t)buf[11] << 24;
    if (hlen > len - pre)
        return bad(err, a->name, "header length", "%llu bytes but only %zu follow the "
                   "preamble (truncated file)", (unsigned long long)hlen, len - pre);
    if (hlen == 0 || hlen > (1u << 20))
        return bad(err, a->name, "header length", "%llu (expected 1..1048576)",
                   (unsigned long long)hlen);
    const char *h = (const char *)buf + pre;
    if (h[hlen - 1] != '\n')
        return bad(err, a->name, "header", "does not end with a newline");
    for (uint64_t i = 0; i < hlen; i++)
        if ((unsigned char)h[i] < 0x20 && h[i] != '\n' && h[i] != '\t' && h[i] != '\r')
            return bad(err, a->name, "header", "control byte 0x%02x at byte %llu",
                       (unsigned char)h[i], (unsigned long long)i);
    DbStatus s = parse_dict(a, h, (size_t)hlen, err);
    if (s != DB_OK)
        return s;

    uint64_t count = 1;
    for (int i = 0; i < a->ndim; i++) {
        if (a->shape[i] && count > UINT64_MAX / a->shape[i])
            return bad(err, a->name, "header field 'shape'", "element count overflows "
                       "at dimension %d (%llu)", i, (unsigned long long)a->shape[i]);
        count *= a->shape[i];
    }
    if (count > UINT64_MAX / (uint64_t)a->itemsize)
        return bad(err, a->name, "header field 'shape'", "byte size overflows");
    uint64_t need = count * (uint64_t)a->itemsize;
    size_t have = len - pre - (size_t)hlen;
    if (need > have)
        return bad(err, a->name, "data", "shape and dtype %s need %llu bytes but the file "
                   "holds %zu after the header (truncated file)", a->descr,
                   (unsigned long long)need, have);
    if (need < have)
        return bad(err, a->name, "data", "shape and dtype %s need %llu bytes but the file "
                   "holds %zu after the header (extra bytes at the end)", a->descr,
                   (unsigned long long)need, have);
    a->count = count;
    a->data = buf + pre + hlen;
    return DB_OK;
}

DbStatus db_npy_open(DbNpy *a, const char *path, DbErr *err)
{
    memset(a, 0, sizeof *a);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return db_err_set(err, DB_E_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return db_err_set(err, DB_E_IO, "%s: not a regular file", path);
    }
    size_t len = (size_t)sb.st_size;
    if (len == 0) {
        close(fd);
        return bad(err, path, "magic", "the file is empty (not an .npy file)");
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return db_err_set(err, DB_E_IO, "%s: mmap: %s", path, strerror(errno));
    madvise(map, len, MADV_SEQUENTIAL);
    a->map = map;
    a->map_len = len;
    DbStatus s = db_npy_parse(a, map, len, path, err);
    if (s != DB_OK)
        db_npy_close(a);
    return s;
}

void db_npy_close(DbNpy *a)
{
    if (!a)
        return;
    if (a->map)
        munmap(a->map, a->map_len);
    a->map = NULL;
    a->map_len = 0;
    a->data = NULL;
}

/* ---- elements ----------------------------------------------------------- */

static uint64_t raw(const DbNpy *a, uint64_t i)
{
    uint8_t b[8];
    const uint8_t *p = a->data + i * (uint64_t)a->itemsize;
    int n = a->itemsize;
    if (a->swap)
        for (int j = 0; j < n; j++)
            b[j] = p[n - 1 - j];
    else
        memcpy(b, p, (size_t)n);
    /* b now holds the value in host order; widen it */
    switch (n) {
    case 1: return b[0];
    case 2: { uint16_t v; memcpy(&v, b, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, b, 4); return v; }
    default: { uint64_t v; memcpy(&v, b, 8); return v; }
    }
}

int64_t db_npy_int(const DbNpy *a, uint64_t i)
{
    uint64_t v = raw(a, i);
    if (a->kind == 'u')
        return (int64_t)v;
    if (a->kind == 'f')
        return (int64_t)db_npy_float(a, i);
    switch (a->itemsize) {
    case 1: return (int8_t)v;
    case 2: return (int16_t)v;
    case 4: return (int32_t)v;
    default: return (int64_t)v;
    }
}

float db_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {                        /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

double db_npy_float(const DbNpy *a, uint64_t i)
{
    uint64_t v = raw(a, i);
    if (a->kind == 'f') {
        if (a->itemsize == 2)
            return db_half_to_float((uint16_t)v);
        uint32_t u = (uint32_t)v;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    return (double)db_npy_int(a, i);
}

/* ---- writing a header ------------------------------------------------------ */

DbStatus db_npy_write_header(FILE *f, const char *descr, int ndim, const uint64_t *shape,
                             DbErr *err)
{
    char dict[DB_NPY_HDR];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     descr);
    for (int i = 0; i < ndim && n < (int)sizeof dict; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%llu,%s",
                      (unsigned long long)shape[i], i + 1 < ndim ? " " : "");
    if (n < (int)sizeof dict)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    if (n > DB_NPY_HDR - 11)
        return db_err_set(err, DB_E_ARG, "npy header for %s of %d dimensions does not fit "
                          "%d bytes", descr, ndim, DB_NPY_HDR);
    uint8_t out[DB_NPY_HDR];
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (uint8_t)(DB_NPY_HDR - 10);
    out[9] = 0;
    memset(out + 10, ' ', DB_NPY_HDR - 10);
    memcpy(out + 10, dict, (size_t)n);
    out[DB_NPY_HDR - 1] = '\n';
    if (fwrite(out, 1, sizeof out, f) != sizeof out)
        return db_err_set(err, DB_E_IO, "writing an npy header: %s", strerror(errno));
    return DB_OK;
}
