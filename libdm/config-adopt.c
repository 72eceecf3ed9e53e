/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A caller-built device-model command line (libdm_dm_config_set_argv):
 * libxl's, as libdm-xl-dm gets it from `device_model_override=`. The
 * command line itself is built by libdm__config_adopt_build() (argv.c).
 *
 * The caller's arguments are kept as they are, in order. libdm adds only
 * what makes the DM a libdm DM: -S when missing (libdm resumes, never
 * QEMU by itself), its own QMP monitor (a second one, id libdm-qmp, on the
 * fd the keeper passes: libxl's monitor stays libxl's), and, under
 * dm_restrict, -sandbox when the binary has seccomp (the keeper's filter
 * otherwise). -chroot, -runas and -xen-domid-restrict are the caller's:
 * libdm_dm_config_set_runas() / set_chroot() must name the same ones so that
 * the keeper's confinement (namespaces, rlimits, no_new_privs, seccomp)
 * applies to that identity.
 *
 * Such a DM is recorded with profile "xl": libdm writes none of the
 * xenstore keys libxl owns for it (dm-version, device-model-pid,
 * kill-uid, serial and VNC keys), and its monitor is in its run directory,
 * never at libxl's /var/run/xen/qmp-libxl-<domid>.
 */
#include "internal.h"
#include "config-internal.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ADOPT_ARGS 4096

static void free_argv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

int libdm_dm_config_set_argv(libdm_dm_config *config, const char *const *argv)
{
    size_t n = 0;
    char **v;

    if (!config || !argv)
        return -EINVAL;
    while (argv[n]) {
        if (++n > MAX_ADOPT_ARGS)
            return -EINVAL;
    }
    v = calloc(n + 1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!(v[i] = strdup(argv[i]))) {
            free_argv(v);
            return -ENOMEM;
        }
    free_argv(config->adopt_argv);
    config->adopt_argv = v;
    return 0;
}

int libdm__config_adopt_copy(const libdm_dm_config *src, libdm_dm_config *dst)
{
    dst->adopt_argv = NULL;
    if (!src->adopt_argv)
        return 0;
    return libdm_dm_config_set_argv(dst, (const char *const *)src->adopt_argv);
}

void libdm__config_adopt_free(libdm_dm_config *config)
{
    free_argv(config->adopt_argv);
    config->adopt_argv = NULL;
}
