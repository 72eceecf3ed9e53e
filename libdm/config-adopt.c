/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A caller-built device-model command line (libdm_dm_config_set_argv):
 * libxl's, as libdm-xl-dm gets it from `device_model_override=`.
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

#include <stdlib.h>
#include <string.h>

#define MAX_ADOPT_ARGS 4096

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
            libdm_strv_free(v);
            return -ENOMEM;
        }
    libdm_strv_free(config->adopt_argv);
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

static bool has_arg(char **v, const char *arg)
{
    for (; *v; v++)
        if (strcmp(*v, arg) == 0)
            return true;
    return false;
}

int libdm__config_adopt_build(const libdm_dm_config *c, int qmp_fd, char ***ret_argv)
{
    libdm__argv b = { 0 };

    /* A domain's DM: the xen profile, a domid, an identity if restricted. */
    if (c->profile != LIBDM_PROFILE_XEN || c->domid == 0 || (c->restricted && !c->runas))
        return -EINVAL;
    libdm__argv_add(&b, libdm__config_qemu_path(c));
    for (char **a = c->adopt_argv; *a; a++)
        libdm__argv_add(&b, *a);
    if (!has_arg(c->adopt_argv, "-S"))
        libdm__argv_add(&b, "-S");
    libdm__argv_add(&b, "-chardev");
    libdm__argv_addf(&b, "socket,id=libdm-qmp,fd=%d,server=on,wait=off", qmp_fd);
    libdm__argv_add(&b, "-mon");
    libdm__argv_add(&b, "chardev=libdm-qmp,mode=control");
    if (c->restricted && c->seccomp != LIBDM_SECCOMP_FILTER) {
        libdm__argv_add(&b, "-sandbox");
        libdm__argv_add(&b, LIBDM__SANDBOX_OPTS);
    }
    if (b.err) {
        libdm_strv_free(b.v);
        return b.err;
    }
    *ret_argv = b.v;
    return 0;
}
