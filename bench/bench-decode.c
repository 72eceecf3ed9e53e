/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-decode: the hot path's cost in instructions, under callgrind.
 * Builds a ~1 MiB reply shaped like query-qmp-schema (an array of objects
 * with name, meta-type and members) and decodes it once:
 *   libdm  libdm__qmp_decoder_feed() + _next() (the internal framing and
 *          bounded tree parser), in bench_decode_libdm();
 *   yajl   yajl_tree_parse() of the same bytes (the floor), in
 *          bench_decode_yajl().
 * run-bench.sh runs `valgrind --tool=callgrind --toggle-collect=FUNC` so the
 * count covers only the decode. Usage: bench-decode libdm|yajl [BYTES].
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include <libdm/libdm.h>
#include "internal.h"

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void put(sbuf *b, const char *s)
{
    size_t n = strlen(s);

    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            exit(1);
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

/* One schema entry, like QEMU's: an object type with a few members. */
static void put_entry(sbuf *b, unsigned i)
{
    char tmp[256];

    snprintf(tmp, sizeof(tmp), "{\"name\": \"%u\", \"meta-type\": \"object\", \"members\": [", i);
    put(b, tmp);
    for (unsigned m = 0; m < 4; m++) {
        snprintf(tmp, sizeof(tmp),
                 "%s{\"name\": \"member-%u-%u\", \"default\": null, \"type\": \"%s\"}",
                 m ? ", " : "", i, m, m % 2 ? "int" : "str");
        put(b, tmp);
    }
    put(b, "], \"tag\": \"type\", \"variants\": [], \"features\": [\"deprecated\"]}");
}

static char *make_reply(size_t target, size_t *ret_len)
{
    sbuf b = { NULL, 0, 0 };

    put(&b, "{\"return\": [");
    for (unsigned i = 0; b.len < target; i++) {
        if (i)
            put(&b, ", ");
        put_entry(&b, i);
    }
    put(&b, "], \"id\": \"libdm-1\"}\r\n");
    *ret_len = b.len;
    return b.p;
}

__attribute__((noinline)) int bench_decode_libdm(const char *text, size_t len);
__attribute__((noinline)) int bench_decode_yajl(const char *text, size_t len);

__attribute__((noinline)) int bench_decode_libdm(const char *text, size_t len)
{
    libdm__qmp_decoder *d = NULL;
    libdm_json *msg = NULL;
    const char *why = NULL;
    int r;

    if (libdm__qmp_decoder_new(&libdm__json_default_limits, &d) < 0)
        return -1;
    r = libdm__qmp_decoder_feed(d, text, len);
    if (r >= 0)
        r = libdm__qmp_decoder_next(d, &msg, &why);
    if (r == 1)
        r = (int)libdm_json_length(libdm_json_object_get(msg, "return"));
    else
        fprintf(stderr, "bench-decode: %d %s\n", r, why ? why : "");
    libdm_json_free(msg);
    libdm__qmp_decoder_free(d);
    return r;
}

__attribute__((noinline)) int bench_decode_yajl(const char *text, size_t len)
{
    char *copy = strndup(text, len), err[128];
    yajl_val v = copy ? yajl_tree_parse(copy, err, sizeof(err)) : NULL;
    const char *path[] = { "return", NULL };
    yajl_val ret = v ? yajl_tree_get(v, path, yajl_t_array) : NULL;
    int r = ret ? (int)ret->u.array.len : -1;

    yajl_tree_free(v);
    free(copy);
    return r;
}

int main(int argc, char **argv)
{
    size_t target = argc > 2 ? strtoul(argv[2], NULL, 0) : 1024 * 1024, len;
    char *text = make_reply(target, &len);
    int r;

    if (argc < 2 || (strcmp(argv[1], "libdm") && strcmp(argv[1], "yajl"))) {
        fprintf(stderr, "usage: bench-decode libdm|yajl [BYTES]\n");
        return 2;
    }
    r = strcmp(argv[1], "libdm") == 0 ? bench_decode_libdm(text, len)
                                      : bench_decode_yajl(text, len);
    printf("BYTES %zu ENTRIES %d\n", len, r);
    free(text);
    return r > 0 ? 0 : 1;
}
