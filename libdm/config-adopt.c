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
 *
 * libdm_dm_config_set_log_fd: the DM's log is the caller's fd (libxl hands
 * its DM stdout/stderr on /var/log/xen/qemu-dm-<name>.log) instead of the
 * run directory's "log". QEMU's output then always goes through the
 * keeper's pipe (tools/keeper-log.c), capped at 256 KiB like a restricted
 * DM's, and the keeper's own messages go there too.
 */
#include "internal.h"
#include "config-internal.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

int libdm_dm_config_set_log_fd(libdm_dm_config *config, int fd)
{
    int dup_fd;

    if (!config || fd < 0)
        return -EINVAL;
    dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dup_fd < 0)
        return -errno;
    if (config->has_log_fd)
        libdm__close(&config->log_fd);
    config->log_fd = dup_fd;
    config->has_log_fd = true;
    return 0;
}

int libdm__config_log_fd(const libdm_dm_config *config, int *ret_fd)
{
    int fd;

    if (!config->has_log_fd)
        return 0;
    fd = fcntl(config->log_fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return -errno;
    *ret_fd = fd;
    return 1;
}

int libdm__config_adopt_copy(const libdm_dm_config *src, libdm_dm_config *dst)
{
    dst->adopt_argv = NULL;
    dst->has_log_fd = false; /* *dst = *src copied the number, not the fd */
    if (src->has_log_fd) {
        int r = libdm_dm_config_set_log_fd(dst, src->log_fd);

        if (r < 0)
            return r;
    }
    if (!src->adopt_argv)
        return 0;
    return libdm_dm_config_set_argv(dst, (const char *const *)src->adopt_argv);
}

void libdm__config_adopt_free(libdm_dm_config *config)
{
    free_argv(config->adopt_argv);
    config->adopt_argv = NULL;
    if (config->has_log_fd)
        libdm__close(&config->log_fd);
    config->has_log_fd = false;
}
