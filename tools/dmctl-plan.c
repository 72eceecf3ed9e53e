/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl start --dry-run: the command line libdm would give QEMU for a
 * configuration, without starting anything. The xl.cfg parity test
 * (tests/xlcfg) compares it with the one libxl itself builds.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dmctl.h"

int dmctl_print_plan(const dmctl *d, const libdm_dm_config *cfg)
{
    char **argv = NULL;
    int r = libdm_dm_config_build_argv(cfg, 3, &argv);

    (void)d;
    if (r < 0) {
        dmctl_error(NULL, "cannot build the command line: %s", strerror(-r));
        return r == -EINVAL ? DMCTL_EXIT_USAGE : DMCTL_EXIT_FAIL;
    }
    /* Our own configuration's words, not the DM's: printed as they are. */
    for (size_t i = 0; argv[i]; i++)
        printf("%s\n", argv[i]);
    libdm_strv_free(argv);
    return fflush(stdout) == 0 ? 0 : DMCTL_EXIT_FAIL;
}
