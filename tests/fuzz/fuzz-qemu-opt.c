/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: QEMU option-value quoting (libdm/argv.c). For a NUL-free
 * input x, split(escape(x)) is exactly one piece, equal to x. Also splits
 * the raw input: the pieces re-joined with their commas escaped must give
 * the input back.
 */
#include "internal.h"
#include "config-internal.h"
#include "fuzz-common.h"

#include <string.h>

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    char *x, *esc = NULL, **pieces = NULL;
    int n;

    if (memchr(data, '\0', size))
        return 0;
    x = malloc(size + 1);
    if (!x)
        abort();
    memcpy(x, data, size);
    x[size] = '\0';

    if (libdm__qemu_opt_escape(x, &esc) < 0)
        abort();
    n = libdm__qemu_opt_split(esc, &pieces);
    if (n != 1 || !pieces || !pieces[0] || pieces[1] || strcmp(pieces[0], x) != 0)
        abort();
    libdm_strv_free(pieces);
    free(esc);

    /* Raw input: join(escape(piece), ",") == x. */
    n = libdm__qemu_opt_split(x, &pieces);
    if (n < 1)
        abort();
    {
        size_t cap = 2 * size + 2, len = 0;
        char *joined = malloc(cap);

        if (!joined)
            abort();
        for (int i = 0; i < n; i++) {
            char *e = NULL;
            if (!pieces[i] || libdm__qemu_opt_escape(pieces[i], &e) < 0)
                abort();
            if (len + strlen(e) + 2 > cap)
                abort();
            if (i)
                joined[len++] = ',';
            memcpy(joined + len, e, strlen(e));
            len += strlen(e);
            free(e);
        }
        joined[len] = '\0';
        if (pieces[n] || strcmp(joined, x) != 0)
            abort();
        free(joined);
    }
    libdm_strv_free(pieces);
    free(x);
    return 0;
}
