/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Devices at start, after start and at stop: images checked (and opened
 * under dm_restrict), taps created and handed over, the VNC password set
 * over QMP, and what the running DM reports about its devices.
 */
#include "internal.h"
#include "config-internal.h"
#include "dm-internal.h"
#include "store.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NICS_TEXT_MAX 1024

/* ---- start ---- */

/* Opens @d's image with @mode, never blocking (a FIFO, a tty), and checks
 * on the fd that it is a regular file or a block device (issue 18, item
 * 6): 0 and *ret_fd (blocking again), or -errno, logged. */
static int open_image(libdm_ctx *ctx, const libdm_dm_config *cfg, const libdm__disk *d,
                      int mode, int *ret_fd)
{
    int fd = open(d->path, mode | O_NONBLOCK | O_CLOEXEC | O_NOCTTY), fl, r;
    struct stat st;

    if (fd < 0) {
        r = -errno;
        /* a socket cannot be opened (ENXIO): the same refusal as a FIFO */
        if (r == -ENXIO && stat(d->path, &st) == 0 && S_ISSOCK(st.st_mode))
            goto not_image;
        LIBDM__ERROR(ctx, "%s: disk %s: %s: %s", cfg->name, d->vdev, d->path, strerror(-r));
        return r;
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        close(fd);
        LIBDM__ERROR(ctx, "%s: disk %s: %s: %s", cfg->name, d->vdev, d->path, strerror(-r));
        return r;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        close(fd);
        goto not_image;
    }
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
not_image:
    LIBDM__ERROR(ctx, "%s: disk %s: %s: not a regular file or a block device", cfg->name,
                 d->vdev, d->path);
    return -EINVAL;
}

/* Opens @d's image with @mode and hands it to QEMU (*ret_qemu_fd). */
static int pass_image(libdm_ctx *ctx, libdm_dm_config *cfg, const libdm__disk *d, int mode,
                      int *ret_qemu_fd)
{
    int fd = -1, r = open_image(ctx, cfg, d, mode, &fd);

    if (r < 0)
        return r;
    r = libdm_dm_config_pass_fd(cfg, fd, ret_qemu_fd);
    close(fd);
    if (r < 0)
        LIBDM__ERROR(ctx, "%s: disk %s: cannot pass its fd: %s", cfg->name, d->vdev,
                     strerror(-r));
    return r;
}

/* The image must exist and be usable. Under restrict libdm opens it and
 * QEMU gets the fd: it never resolves the path (no chroot games). */
static int prepare_disk(libdm_ctx *ctx, libdm_dm_config *cfg, libdm__disk *d)
{
    int r;

    if (!d->path)
        return 0;
    if (!cfg->restricted) {
        /* QEMU opens the path itself; checked the same way first. */
        int fd = -1;

        r = open_image(ctx, cfg, d, d->readonly ? O_RDONLY : O_RDWR, &fd);
        if (fd >= 0)
            close(fd);
        return r;
    }
    /* One fd, of the image's own access mode: the drive says
     * auto-read-only=off (devices-argv.c), so QEMU never reopens it with
     * another mode and needs no second description in the set. */
    return pass_image(ctx, cfg, d, d->readonly ? O_RDONLY : O_RDWR, &d->qemu_fd);
}

static void log_tap_error(libdm_ctx *ctx, const libdm_dm_config *cfg, const libdm__nic *n,
                          const char *ifname, int r)
{
    if (r == -ENODEV && n->bridge)
        LIBDM__ERROR(ctx, "%s: nic %d: bridge %s does not exist", cfg->name, n->devid,
                     n->bridge);
    else if (r == -EBUSY)
        LIBDM__ERROR(ctx, "%s: nic %d: tap %s is in use by another process", cfg->name,
                     n->devid, ifname);
    else
        LIBDM__ERROR(ctx, "%s: nic %d: cannot create tap %s: %s", cfg->name, n->devid,
                     ifname, strerror(-r));
}

static int prepare_nic(libdm_ctx *ctx, libdm_dm_config *cfg, libdm__nic *n)
{
    char ifname[LIBDM__IFNAME_MAX + 1];
    int fd = -1, r;

    if (n->caller_fd)
        return 0;
    r = libdm__nic_ifname(cfg, n, ifname, sizeof(ifname));
    if (r >= 0)
        r = libdm__tap_create(ifname, n->bridge, &fd);
    if (r < 0) {
        log_tap_error(ctx, cfg, n, ifname, r);
        return r;
    }
    r = libdm_dm_config_pass_fd(cfg, fd, &n->qemu_fd);
    close(fd); /* the config's copy keeps the tap until QEMU has it */
    if (r < 0)
        LIBDM__ERROR(ctx, "%s: nic %d: cannot pass the tap's fd: %s", cfg->name, n->devid,
                     strerror(-r));
    return r;
}

/* "DEVID IFNAME MAC MODEL BRIDGE;..." ('-' for none). */
static char *nics_text(const libdm_dm_config *cfg)
{
    char buf[NICS_TEXT_MAX] = "";
    size_t off = 0;

    for (size_t i = 0; i < cfg->dev.n_nics; i++) {
        const libdm__nic *n = &cfg->dev.nics[i];
        char mac[18], ifname[LIBDM__IFNAME_MAX + 1] = "-";
        int w;

        if (!n->caller_fd && libdm__nic_ifname(cfg, n, ifname, sizeof(ifname)) < 0)
            return NULL;
        libdm__mac_format(n->mac, mac);
        w = snprintf(buf + off, sizeof(buf) - off, "%s%d %s %s %s %s", i ? ";" : "", n->devid,
                     ifname, mac, n->model, n->bridge ? n->bridge : "-");
        if (w < 0 || (size_t)w >= sizeof(buf) - off)
            return NULL;
        off += (size_t)w;
    }
    return strdup(buf);
}

int libdm__devices_prepare(libdm_ctx *ctx, libdm_dm_config *cfg, char **ret_nics)
{
    int r = 0;

    *ret_nics = NULL;
    for (size_t i = 0; r >= 0 && i < cfg->dev.n_disks; i++)
        r = prepare_disk(ctx, cfg, &cfg->dev.disks[i]);
    for (size_t i = 0; r >= 0 && i < cfg->dev.n_nics; i++)
        r = prepare_nic(ctx, cfg, &cfg->dev.nics[i]);
    /* On failure the taps made so far go when @cfg's fds close. */
    if (r < 0 || !cfg->dev.n_nics)
        return r;
    *ret_nics = nics_text(cfg);
    return *ret_nics ? 0 : -ENOMEM;
}
