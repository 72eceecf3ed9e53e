/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 19: each adapter header compiles with -std=c11 alone (no feature
 * macro, no -D_GNU_SOURCE: mk/daemon.mk gives this file only the include
 * path and -std=c11 -Wall -Wextra -Werror -pedantic). Built three times,
 * LIBDM_TEST_ADAPTER 1 (sd-event), 2 (libuv), 3 (GLib); the header comes
 * first, as the libuv one asks. Compiling is the test; running says so.
 */
#if LIBDM_TEST_ADAPTER == 1
#include <libdm/adapters/sd-event.h>
#elif LIBDM_TEST_ADAPTER == 2
#include <libdm/adapters/libuv.h>
#elif LIBDM_TEST_ADAPTER == 3
#include <libdm/adapters/glib.h>
#else
#error "LIBDM_TEST_ADAPTER 1-3"
#endif
#include <stdio.h>

int main(void)
{
    printf("ok 1 - adapter %d compiles with -std=c11 alone\n1..1\n", LIBDM_TEST_ADAPTER);
    return 0;
}
