/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: the bounded JSON parser and the serialiser (libdm/json.c).
 * Whatever parses must serialise, re-parse, and re-serialise identically.
 */
#include "internal.h"
#include "fuzz-common.h"

#include <string.h>

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    static const libdm__json_limits limits = { 64 * 1024, 64, 100000 };
    /* The serialised text may be longer than the input (escapes): re-parse
     * it with room to spare. */
    static const libdm__json_limits relaxed = { 16 * 64 * 1024, 64, 100000 };
    libdm_json *v = NULL, *v2 = NULL;
    char *s1 = NULL, *s2 = NULL;
    const char *why = NULL;
    int r;

    r = libdm__json_parse_bounded((const char *)data, size, &limits, &v, &why);
    if (r < 0) {
        if (!why)
            abort();
        return 0;
    }
    if (libdm_json_to_string(v, 0, &s1) < 0)
        abort();
    r = libdm__json_parse_bounded(s1, strlen(s1), &relaxed, &v2, &why);
    if (r < 0)
        abort();
    if (libdm_json_to_string(v2, 0, &s2) < 0)
        abort();
    if (strcmp(s1, s2) != 0)
        abort();
    free(s1);
    free(s2);
    libdm_json_free(v);
    libdm_json_free(v2);
    return 0;
}
