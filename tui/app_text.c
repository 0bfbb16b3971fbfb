/*
** tui/app_text.c — showing untrusted strings safely.
**
** Prompts, tags, model names and token pieces come from files and the
** database; a stray ESC or C1 byte would reprogram the terminal.  Everything
** shown goes through tui_escape(), which keeps valid printable UTF-8 and
** spells out every control character and invalid byte.
*/
#include "tui/app.h"

#include <stdio.h>
#include <string.h>

/* Decode one UTF-8 sequence; returns its length (0 if invalid) and the code
** point in *cp.  Rejects overlong forms, surrogates and > U+10FFFF. */
static int utf8_decode(const unsigned char *s, size_t avail, unsigned *cp)
{
    if (avail == 0)
        return 0;
    unsigned c = s[0];
    int n;
    unsigned min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        n = 2; c &= 0x1F; min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3; c &= 0x0F; min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4; c &= 0x07; min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)n > avail)
        return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return n;
}

int tui_utf8_len(const char *s, size_t avail)
{
    unsigned cp;
    int n = utf8_decode((const unsigned char *)s, avail, &cp);
    return n ? n : 1;
}

size_t tui_escape(const char *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    const unsigned char *s = (const unsigned char *)in;
    char tmp[8];
    for (size_t i = 0; i < len;) {
        unsigned cp = 0;
        int n = utf8_decode(s + i, len - i, &cp);
        const char *rep = NULL;
        size_t rl;
        if (n == 0) {
            snprintf(tmp, sizeof tmp, "\\x%02X", s[i]);
            rep = tmp;
            n = 1;
        } else if (cp == '\n') {
            rep = "\\n";
        } else if (cp == '\t') {
            rep = "\\t";
        } else if (cp == '\r') {
            rep = "\\r";
        } else if (cp == '\\') {
            rep = "\\\\";
        } else if (cp < 0x20 || cp == 0x7F) {
            snprintf(tmp, sizeof tmp, "\\x%02X", cp);
            rep = tmp;
        } else if (cp >= 0x80 && cp <= 0x9F) {
            /* C1 control, encoded as two bytes: show both */
            snprintf(tmp, sizeof tmp, "\\x%02X", s[i]);
            size_t tl = strlen(tmp);
            if (o + tl < cap)
                memcpy(out + o, tmp, tl);
            o += tl;
            snprintf(tmp, sizeof tmp, "\\x%02X", s[i + 1]);
            rep = tmp;
        }
        if (rep) {
            rl = strlen(rep);
        } else {
            rep = (const char *)s + i;
            rl = (size_t)n;
        }
        if (o + rl < cap)
            memcpy(out + o, rep, rl);
        else if (o < cap)
            cap = o + 1;   /* stop writing: never split a sequence */
        o += rl;
        i += (size_t)n;
    }
    if (cap > 0)
        out[o < cap ? o : cap - 1] = 0;
    return o;
}

static int cp_width(unsigned cp)
{
    if (cp == 0)
        return 0;
    /* combining marks: zero width */
    if ((cp >= 0x0300 && cp <= 0x036F) || (cp >= 0x200B && cp <= 0x200F))
        return 0;
    if ((cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF) ||
        (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
        (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
        (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1FAFF) ||
        (cp >= 0x20000 && cp <= 0x3FFFD))
        return 2;
    return 1;
}

int tui_str_width(const char *s)
{
    size_t len = strlen(s);
    int w = 0;
    for (size_t i = 0; i < len;) {
        unsigned cp;
        int n = utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (n == 0) {
            w += 1;
            n = 1;
        } else {
            w += cp_width(cp);
        }
        i += (size_t)n;
    }
    return w;
}

size_t tui_str_fit(const char *s, int cols)
{
    size_t len = strlen(s);
    int w = 0;
    size_t i = 0;
    while (i < len) {
        unsigned cp;
        int n = utf8_decode((const unsigned char *)s + i, len - i, &cp);
        int cw = n ? cp_width(cp) : 1;
        if (!n)
            n = 1;
        if (w + cw > cols)
            break;
        w += cw;
        i += (size_t)n;
    }
    return i;
}
