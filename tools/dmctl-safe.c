/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Nothing a device model says reaches a terminal raw: the one sanitizer of
 * dmctl's output (runstates, QMP error descriptions, every log line and
 * error message) and the C1 escaping of its JSON. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmctl.h"

char *dmctl_safe(const char *s, size_t max)
{
    size_t n, o = 0;
    char *out;

    if (!s)
        return NULL;
    n = strnlen(s, max + 1);
    out = malloc((n > max ? max : n) * 4 + 4);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];

        /* C0, DEL, and every byte of a non-ASCII sequence (C1 controls are
         * U+0080-U+009F, or bare 0x80-0x9f to an 8-bit terminal). */
        if (c < 0x20 || c >= 0x7f || c == '\\')
            o += (size_t)sprintf(out + o, c == '\\' ? "\\\\" : "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    if (n > max) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

char *dmctl_safe_take(char *s)
{
    char *t = dmctl_safe(s, DMCTL_SAFE_SHORT);

    free(s);
    return t;
}

void dmctl_put_safe(FILE *f, const char *s, size_t max)
{
    char *t = dmctl_safe(s, max);

    fputs(t ? t : "?", f);
    free(t);
}

char *dmctl_json_escape_c1(const char *text)
{
    size_t n = strlen(text), o = 0;
    char *out = malloc(n * 3 + 1);   /* 2 bytes become 6 */

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i], d = (unsigned char)text[i + 1];

        if (c == 0xc2 && d >= 0x80 && d <= 0x9f) {
            o += (size_t)sprintf(out + o, "\\u%04x", d);
            i++;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return out;
}
