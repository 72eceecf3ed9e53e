/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * QMP stream framing, with no I/O: bytes in (feed), messages out (next).
 * Do not trust QEMU: every message is bounded before it is parsed.
 *
 * QEMU ends every message with "\r\n" and never puts a raw newline inside
 * one (JSON strings escape it), so a message is one line. A line longer
 * than the size bound fails as soon as the bound is passed, without
 * buffering the rest of it.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct libdm__qmp_decoder {
    libdm__json_limits limits;
    char *buf;
    size_t start; /* first byte not yet consumed */
    size_t scan;  /* bytes before this offset contain no newline */
    size_t len, cap;
};

int libdm__qmp_decoder_new(const libdm__json_limits *limits, libdm__qmp_decoder **ret)
{
    libdm__qmp_decoder *d = calloc(1, sizeof(*d));

    if (!d)
        return -ENOMEM;
    d->limits = limits ? *limits : libdm__json_default_limits;
    *ret = d;
    return 0;
}

libdm__qmp_decoder *libdm__qmp_decoder_free(libdm__qmp_decoder *d)
{
    if (d) {
        free(d->buf);
        free(d);
    }
    return NULL;
}

size_t libdm__qmp_decoder_buffered(const libdm__qmp_decoder *d)
{
    return d->len - d->start;
}

/* Makes room for @n more bytes, moving unconsumed bytes to the front first. */
static int reserve(libdm__qmp_decoder *d, size_t n)
{
    if (d->start > 0) {
        memmove(d->buf, d->buf + d->start, d->len - d->start);
        d->len -= d->start;
        d->scan -= d->start;
        d->start = 0;
    }
    if (d->cap - d->len < n) {
        size_t cap = d->cap ? d->cap : 4096;
        while (cap - d->len < n)
            cap *= 2;
        char *b = realloc(d->buf, cap);
        if (!b)
            return -ENOMEM;
        d->buf = b;
        d->cap = cap;
    }
    return 0;
}

int libdm__qmp_decoder_feed(libdm__qmp_decoder *d, const void *bytes, size_t n)
{
    int r;

    if (n == 0)
        return 0;
    /* A message already past the bound with no newline in sight is lost: do
     * not let the peer make us buffer more of it. */
    if (d->len - d->start > d->limits.max_bytes + 1 &&
        !memchr(d->buf + d->scan, '\n', d->len - d->scan))
        return -E2BIG;
    r = reserve(d, n);
    if (r < 0)
        return r;
    memcpy(d->buf + d->len, bytes, n);
    d->len += n;
    return 0;
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

int libdm__qmp_decoder_next(libdm__qmp_decoder *d, libdm_json **ret_msg, const char **ret_why)
{
    for (;;) {
        char *line = d->buf + d->start;
        char *nl = d->len > d->scan ? memchr(d->buf + d->scan, '\n', d->len - d->scan) : NULL;
        size_t n;
        int r;

        if (!nl) {
            d->scan = d->len;
            if (d->len - d->start > d->limits.max_bytes + 1) {
                *ret_why = "QMP message exceeds the size limit";
                return -E2BIG;
            }
            return 0;
        }
        n = (size_t)(nl - line);
        d->start = d->scan = (size_t)(nl - d->buf) + 1;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (blank(line, n))
            continue;
        if (n > d->limits.max_bytes) {
            *ret_why = "QMP message exceeds the size limit";
            return -E2BIG;
        }
        r = libdm__json_parse_bounded(line, n, &d->limits, ret_msg, ret_why);
        if (r < 0)
            return r == -EINVAL ? -EPROTO : r;
        return 1;
    }
}
