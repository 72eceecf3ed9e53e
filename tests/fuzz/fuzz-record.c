/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: the record store's text format (xenstore-glue/record.c).
 * A record that parses must format, and the formatted text must parse back
 * to the same record (and format to the same bytes).
 */
#include "internal.h"
#include "store.h"
#include "fuzz-common.h"

#include <string.h>

static bool fuzz_record_streq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    libdm__record a, b;
    char *t1 = NULL, *t2 = NULL;
    size_t l1 = 0, l2 = 0;

    libdm__record_init(&a);
    libdm__record_init(&b);
    if (libdm__record_parse((const char *)data, size, &a) < 0)
        goto out;
    if (libdm__record_format(&a, &t1, &l1) < 0)
        abort();
    if (libdm__record_parse(t1, l1, &b) < 0)
        abort();
    if (!fuzz_record_streq(a.name, b.name) || a.domid != b.domid || a.pid != b.pid ||
        a.pid_start != b.pid_start || a.keeper_pid != b.keeper_pid ||
        a.keeper_start != b.keeper_start || !fuzz_record_streq(a.qmp_socket, b.qmp_socket) ||
        !fuzz_record_streq(a.dir, b.dir) || !fuzz_record_streq(a.profile, b.profile) ||
        !fuzz_record_streq(a.state, b.state) || a.created_ms != b.created_ms ||
        a.exit_status != b.exit_status)
        abort();
    if (libdm__record_format(&b, &t2, &l2) < 0)
        abort();
    if (l1 != l2 || memcmp(t1, t2, l1) != 0)
        abort();
out:
    free(t1);
    free(t2);
    libdm__record_clear(&a);
    libdm__record_clear(&b);
    return 0;
}
