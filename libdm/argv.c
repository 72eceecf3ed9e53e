/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The device model's command line: one builder per profile, in one pass
 * over the configuration, which it only reads (config.c, devices.c below;
 * the elements and QEMU's quoting in argv-elem.c, the devices' arguments
 * in devices-argv.c). Arguments QEMU takes whole (-chroot, -runas,
 * -incoming in 7.2) are passed unquoted: quoting them would change them.
 */
#include "internal.h"
#include "config-internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef libdm__argv argv_builder;

/* ---- the two profiles ---- */

static void add_name(argv_builder *b, const libdm_dm_config *c)
{
    /* -name takes an option list whose first, key-less piece is guest=. */
    if (c->name) {
        libdm__argv_add(b, "-name");
        libdm__argv_add_escaped(b, "", c->name, "");
    }
}

/* libxl passes "-m" (maxmem - videoram) for qemu-xen: the guest's
 * maximum, less the video memory, which Xen counts inside it. */
static void add_memory(argv_builder *b, const libdm_dm_config *c, bool xen)
{
    uint64_t mb = libdm__config_memory_mb(c);

    if (xen && mb) {
        uint64_t video = libdm__devices_video_mb(&c->dev);

        if (c->maxmem_mb > mb)
            mb = c->maxmem_mb;
        if (mb > video)
            mb -= video;
    }

    if (mb) {
        libdm__argv_add(b, "-m");
        libdm__argv_addf(b, "%" PRIu64, mb);
    }
}

static void build_plain(argv_builder *b, const libdm_dm_config *c, int qmp_fd)
{
    const char *machine = libdm__config_machine(c);
    char *opts = libdm__devices_machine_opts(c);

    if (!opts && !b->err)
        b->err = -ENOMEM;

    libdm__argv_add(b, libdm__config_qemu_path(c));
    libdm__argv_add(b, "-S");
    libdm__argv_add(b, "-nodefaults");
    libdm__argv_add(b, "-no-user-config");
    libdm__argv_add_pair(b, "-display", "none");
    add_name(b, c);
    libdm__argv_add(b, "-machine");
    /* Pin TCG: a host that happens to have /dev/kvm must not change what runs. */
    if (strcmp(machine, "none") == 0)
        libdm__argv_add(b, machine);
    else
        libdm__argv_addf(b, "%s,accel=tcg%s", machine, opts ? opts : "");
    add_memory(b, c, false);
    libdm__argv_add(b, "-chardev");
    libdm__argv_addf(b, "socket,id=libdm-qmp,fd=%d,server=on,wait=off", qmp_fd);
    libdm__argv_add_pair(b, "-mon", "chardev=libdm-qmp,mode=control");
    libdm__devices_argv_plain(b, c);
    free(opts);
}

/* dm_restrict, first part: what libxl puts before -incoming. */
static void build_restrict_head(argv_builder *b, const libdm_dm_config *c)
{
    char *dir = NULL;

    if (!c->restricted)
        return;
    if (c->profile == LIBDM_PROFILE_XEN)
        libdm__argv_add(b, "-xen-domid-restrict");
    if (!b->err && libdm__config_chroot_dir(c, &dir) < 0)
        b->err = -ENOMEM;
    if (dir)
        libdm__argv_add_pair(b, "-chroot", dir);
    free(dir);
}

/* dm_restrict, last part: -runas (libxl's last argument) and -sandbox,
 * which is our addition (libxl passes none). */
static void build_restrict_tail(argv_builder *b, const libdm_dm_config *c)
{
    if (!c->restricted)
        return;
    if (c->runas)
        libdm__argv_add_pair(b, "-runas", c->runas);
    /* With the keeper's filter instead (restrict.c), no -sandbox. */
    if (c->seccomp != LIBDM_SECCOMP_FILTER)
        libdm__argv_add_pair(b, "-sandbox", LIBDM__SANDBOX_OPTS);
}

/* The xen machines select accel=xen themselves; anything else (libxl uses
 * "pc" when the platform device is off) needs it spelled out. */
static bool machine_implies_xen(const char *machine)
{
    return strcmp(machine, "xenfv") == 0 || strcmp(machine, "xenpv") == 0 ||
           strcmp(machine, "xenpvh") == 0;
}

/* Modelled on libxl__build_device_model_args_new() for an HVM guest. */
static void build_xen(argv_builder *b, const libdm_dm_config *c, int qmp_fd)
{
    const char *machine = libdm__config_machine(c);
    char *xenstat = libdm__sprintf("%s/qmp-libxenstat-%" PRIu32, LIBDM__XEN_RUN_DIR, c->domid);
    char *opts = libdm__devices_machine_opts(c);

    if ((!xenstat || !opts) && !b->err)
        b->err = -ENOMEM;
    libdm__argv_add(b, libdm__config_qemu_path(c));
    libdm__argv_add(b, "-xen-domid");
    libdm__argv_addf(b, "%" PRIu32, c->domid);
    libdm__argv_add(b, "-no-shutdown");
    libdm__argv_add(b, "-chardev");
    libdm__argv_addf(b, "socket,id=libxl-cmd,fd=%d,server=on,wait=off", qmp_fd);
    libdm__argv_add(b, "-S");
    libdm__argv_add_pair(b, "-mon", "chardev=libxl-cmd,mode=control");
    /* The second monitor xentop/libxenstat expects, at libxl's path. */
    libdm__argv_add(b, "-chardev");
    if (xenstat)
        libdm__argv_add_escaped(b, "socket,id=libxenstat-cmd,path=", xenstat,
                                ",server=on,wait=off");
    libdm__argv_add_pair(b, "-mon", "chardev=libxenstat-cmd,mode=control");
    libdm__argv_add(b, "-nodefaults");
    libdm__argv_add(b, "-no-user-config");
    add_name(b, c);
    /* -vnc, -display none, SCSI controller, -serial, VGA, -boot, USB,
     * -smp, NICs or "-net none" (devices-argv.c). */
    libdm__devices_argv_xen_front(b, c);
    build_restrict_head(b, c);
    if (c->incoming)
        libdm__argv_add_pair(b, "-incoming", c->incoming);
    /* libxl: device_model_args, -machine VALUE, device_model_args_hvm. */
    for (size_t i = 0; i < c->n_extra_args; i++)
        libdm__argv_add(b, c->extra_args[i]);
    libdm__argv_add(b, "-machine");
    if (machine_implies_xen(machine))
        libdm__argv_addf(b, "%s%s", machine, opts ? opts : "");
    else
        libdm__argv_addf(b, "%s,accel=xen%s", machine, opts ? opts : "");
    for (size_t i = 0; i < c->n_extra_args_hvm; i++)
        libdm__argv_add(b, c->extra_args_hvm[i]);
    add_memory(b, c, true);
    libdm__devices_argv_xen_disks(b, c);
    build_restrict_tail(b, c);
    free(xenstat);
    free(opts);
}

static void build_tail(argv_builder *b, const libdm_dm_config *c)
{
    size_t i;

    /* The xen profile placed everything as libxl does (build_xen). */
    if (c->profile == LIBDM_PROFILE_XEN)
        return;
    build_restrict_head(b, c);
    build_restrict_tail(b, c);
    if (c->incoming)
        libdm__argv_add_pair(b, "-incoming", c->incoming);
    /* Plain profile: last, so they can add to or override anything above. */
    for (i = 0; i < c->n_extra_args; i++)
        libdm__argv_add(b, c->extra_args[i]);
    for (i = 0; i < c->n_extra_args_hvm; i++)
        libdm__argv_add(b, c->extra_args_hvm[i]);
}

/* Combinations each setter alone cannot see. */
static int check_buildable(const libdm_dm_config *c)
{
    if (libdm__devices_check(c) < 0)
        return -EINVAL;
    if (c->profile != LIBDM_PROFILE_XEN)
        return 0;
    /* -xen-domid 0 would make QEMU emulate for dom0 itself. */
    if (c->domid == 0)
        return -EINVAL;
    /* libxl derives the uid from a per-host user range; we cannot resolve
     * that here, and a restricted DM left running as root is no restriction. */
    if (c->restricted && !c->runas)
        return -EINVAL;
    return 0;
}

/* ---- a caller-built command line (config-adopt.c) ---- */

static bool has_arg(char **v, const char *arg)
{
    for (; *v; v++)
        if (strcmp(*v, arg) == 0)
            return true;
    return false;
}

int libdm__config_adopt_build(const libdm_dm_config *c, int qmp_fd, char ***ret_argv)
{
    argv_builder b = { 0 };

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

int libdm_dm_config_build_argv(const libdm_dm_config *config, int qmp_fd, char ***ret_argv)
{
    argv_builder b = { 0 };
    int r;

    if (!config || qmp_fd < 0 || !ret_argv)
        return -EINVAL;
    if (config->adopt_argv) /* the caller's command line (config-adopt.c) */
        return libdm__config_adopt_build(config, qmp_fd, ret_argv);
    r = check_buildable(config);
    if (r < 0)
        return r;
    if (config->profile == LIBDM_PROFILE_XEN)
        build_xen(&b, config, qmp_fd);
    else
        build_plain(&b, config, qmp_fd);
    build_tail(&b, config);
    if (b.err) {
        libdm_strv_free(b.v);
        return b.err;
    }
    *ret_argv = b.v;
    return 0;
}
