/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl: the one way a string the device model supplied reaches a terminal
 * (issue 18, item 10). A compromised QEMU chooses its runstate, its QMP
 * error descriptions and its log; dmctl prints them in status, list, error
 * messages and libdm's log lines. Text output goes through dmctl_safe():
 * C0 controls (ESC included), DEL, C1 controls (raw bytes and their UTF-8
 * form U+0080-U+009F) and bytes of invalid UTF-8 become \xHH (\n, \t, \r as
 * such), and the length is bounded. JSON output goes through
 * dmctl_json_safe(): the generator escapes C0 itself (\u001b), this adds
 * DEL and C1 as \u007f / \u0080-\u009f.
 */
#include "dmctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at @s (2-4), or 0. C1 (U+0080 to
 * U+009F, "\xc2\x80".."\xc2\x9f") counts as invalid: it is a control. */
static size_t utf8_len(const unsigned char *s)
{
    size_t n, i;
    unsigned cp;

    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4, cp = s[0] & 0x07;
    else
        return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp < 0xa0)
        return 0;
    return n;
}

char *dmctl_safe(const char *s, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len, i = 0, o = 0, n;
    char *out;

    if (!s)
        return NULL;
    len = strnlen(s, max + 1);
    /* Worst case: every byte as \xHH, plus "..." */
    out = malloc((len > max ? max : len) * 4 + 4);
    if (!out)
        return NULL;
    while (i < len && i < max) {
        if (p[i] >= 0x20 && p[i] < 0x7f) {
            out[o++] = (char)p[i++];
        } else if (p[i] >= 0x80 && (n = utf8_len(p + i)) && i + n <= max) {
            memcpy(out + o, p + i, n);
            o += n;
            i += n;
        } else {
            const char *e = p[i] == '\n' ? "\\n" : p[i] == '\t' ? "\\t" : p[i] == '\r' ? "\\r" : NULL;

            if (e)
                o += (size_t)sprintf(out + o, "%s", e);
            else
                o += (size_t)sprintf(out + o, "\\x%02x", p[i]);
            i++;
        }
    }
    if (len > max)
        o += (size_t)sprintf(out + o, "...");
    out[o] = '\0';
    return out;
}

char *dmctl_json_safe(const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t len = strlen(text), i, o = 0;
    char *out = malloc(len * 3 + 1);   /* 2 bytes -> 6 at most */

    if (!out)
        return NULL;
    for (i = 0; i < len; i++) {
        if (p[i] == 0x7f) {
            o += (size_t)sprintf(out + o, "\\u007f");
        } else if (p[i] == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f) {
            o += (size_t)sprintf(out + o, "\\u%04x", p[i + 1]);
            i++;
        } else if (p[i] < 0x20 && p[i] != '\n') {
            /* never produced by the generator; never raw either */
            o += (size_t)sprintf(out + o, "\\u%04x", p[i]);
        } else {
            out[o++] = (char)p[i];
        }
    }
    out[o] = '\0';
    return out;
}
