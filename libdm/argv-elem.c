/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The elements of a command line: QEMU option-value quoting and the argv
 * builder (the first failure sticks, so callers check once). The builders
 * of each profile (argv.c, devices-argv.c) share these, and sit above.
 *
 * The argv is executed directly (never through a shell), so the only
 * quoting that matters is QEMU's own: option values such as
 * "socket,id=x,path=P" are comma separated and a literal comma is written
 * ",,". Every name or path spliced into such a value goes through
 * libdm__qemu_opt_escape().
 */
#include "internal.h"
#include "config-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- QEMU option values ---- */

int libdm__qemu_opt_escape(const char *in, char **ret)
{
    size_t len = 0, commas = 0;
    char *out, *o;
    const char *p;

    if (!in || !ret)
        return -EINVAL;
    for (p = in; *p; p++, len++)
        commas += *p == ',';
    out = malloc(len + commas + 1);
    if (!out)
        return -ENOMEM;
    for (p = in, o = out; *p; p++) {
        *o++ = *p;
        if (*p == ',')
            *o++ = ',';
    }
    *o = '\0';
    *ret = out;
    return 0;
}

/* Number of pieces @optstr splits into: one more than its separators. */
static size_t count_pieces(const char *optstr)
{
    size_t n = 1;
    const char *p;

    for (p = optstr; *p; p++) {
        if (*p != ',')
            continue;
        if (p[1] == ',')
            p++; /* ",," is a literal comma, not a separator */
        else
            n++;
    }
    return n;
}

/* Copies the piece starting at *pos into a new string and moves *pos past
 * it and its separator. Returns NULL on allocation failure. */
static char *next_piece(const char **pos)
{
    const char *p = *pos;
    char *piece = malloc(strlen(p) + 1), *o = piece;

    if (!piece)
        return NULL;
    for (; *p; p++) {
        if (*p == ',' && p[1] == ',') {
            *o++ = ',';
            p++;
        } else if (*p == ',') {
            p++;
            break;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    *pos = p;
    return piece;
}

int libdm__qemu_opt_split(const char *optstr, char ***ret_pieces)
{
    const char *pos = optstr;
    size_t n, i;
    char **v;

    if (!optstr || !ret_pieces)
        return -EINVAL;
    n = count_pieces(optstr);
    if (n > INT32_MAX)
        return -E2BIG;
    v = calloc(n + 1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (i = 0; i < n; i++) {
        v[i] = next_piece(&pos);
        if (!v[i]) {
            libdm_strv_free(v);
            return -ENOMEM;
        }
    }
    *ret_pieces = v;
    return (int)n;
}

/* ---- argv builder: the first failure sticks, so callers check once ---- */

/* Appends @s, taking ownership (NULL means its allocation failed). */
static void add_take(libdm__argv *b, char *s)
{
    if (!b->err && !s)
        b->err = -ENOMEM;
    if (!b->err && b->n + 2 > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 32;
        char **v = realloc(b->v, cap * sizeof(*v));

        if (v) {
            b->v = v;
            b->cap = cap;
        } else {
            b->err = -ENOMEM;
        }
    }
    if (b->err) {
        free(s);
        return;
    }
    b->v[b->n++] = s;
    b->v[b->n] = NULL;
}

void libdm__argv_add(libdm__argv *b, const char *s)
{
    add_take(b, b->err ? NULL : strdup(s));
}

void libdm__argv_add_pair(libdm__argv *b, const char *opt, const char *value)
{
    libdm__argv_add(b, opt);
    libdm__argv_add(b, value);
}

void libdm__argv_addf(libdm__argv *b, const char *fmt, ...)
{
    char *s = NULL;

    if (!b->err) {
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
            s = NULL;
        va_end(ap);
    }
    add_take(b, s);
}

/* Appends @before @value @after, @value quoted for a QEMU option list. */
void libdm__argv_add_escaped(libdm__argv *b, const char *before, const char *value,
                             const char *after)
{
    char *esc = NULL;

    if (!b->err && libdm__qemu_opt_escape(value, &esc) < 0)
        b->err = -ENOMEM;
    if (!b->err)
        libdm__argv_addf(b, "%s%s%s", before, esc, after);
    free(esc);
}
