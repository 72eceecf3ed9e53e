/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Taps for emulated NICs: created by libdm (root), handed to QEMU as an
 * open fd, so a restricted QEMU never needs /dev/net/tun or CAP_NET_ADMIN.
 *
 * A tap is made non-persistent: the kernel removes it (and its bridge
 * port) when the last fd closes, i.e. when QEMU and its keeper are gone,
 * whoever ends them. libdm__tap_remove() is the belt to those braces, for
 * a tap someone made persistent meanwhile.
 */
#include "internal.h"
#include "config-internal.h"

#include <fcntl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define TUN_DEV "/dev/net/tun"

int libdm__netdev_exists(const char *name)
{
    return if_nametoindex(name) != 0;
}

/* A socket for interface ioctls. */
static int ctl_socket(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    return s < 0 ? -errno : s;
}

static int set_ifr_name(struct ifreq *ifr, const char *name)
{
    memset(ifr, 0, sizeof(*ifr));
    if (strlen(name) >= sizeof(ifr->ifr_name))
        return -ENAMETOOLONG;
    memcpy(ifr->ifr_name, name, strlen(name));
    return 0;
}

static int link_up(int s, const char *name)
{
    struct ifreq ifr;
    int r = set_ifr_name(&ifr, name);

    if (r < 0)
        return r;
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        return -errno;
    ifr.ifr_flags |= IFF_UP;
    return ioctl(s, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

/* -ENODEV unless @bridge is an existing Linux bridge. */
static int check_bridge(const char *bridge)
{
    char path[64];
    struct stat st;

    snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", bridge);
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -ENODEV;
}

static int bridge_add(int s, const char *bridge, const char *name)
{
    struct ifreq ifr;
    unsigned idx = if_nametoindex(name);
    int r = check_bridge(bridge);

    if (r < 0)
        return r;
    r = set_ifr_name(&ifr, bridge);
    if (r < 0)
        return r;
    if (!idx)
        return -ENODEV;
    ifr.ifr_ifindex = (int)idx;
    return ioctl(s, SIOCBRADDIF, &ifr) < 0 ? -errno : 0;
}

/* Opens /dev/net/tun attached to tap @name (created if missing). */
static int tap_open(const char *name, short extra_flags, int *ret_fd)
{
    struct ifreq ifr;
    int fd, r = set_ifr_name(&ifr, name);

    if (r < 0)
        return r;
    fd = open(TUN_DEV, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ifr.ifr_flags = (short)(IFF_TAP | IFF_NO_PI | extra_flags);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

int libdm__tap_create(const char *name, const char *bridge, int *ret_fd)
{
    int fd = -1, s = -1, r;

    if (!name || !ret_fd)
        return -EINVAL;
    if (bridge && (r = check_bridge(bridge)) < 0)
        return r;
    r = tap_open(name, IFF_VNET_HDR, &fd);
    if (r >= 0 && ioctl(fd, TUNSETPERSIST, 0) < 0)
        r = -errno;
    if (r >= 0)
        r = s = ctl_socket();
    if (r >= 0)
        r = link_up(s, name);
    if (r >= 0 && bridge)
        r = bridge_add(s, bridge, name);
    libdm__close(&s);
    if (r < 0) {
        libdm__close(&fd); /* not persistent: the tap goes with it */
        return r;
    }
    *ret_fd = fd;
    return 0;
}

int libdm__tap_remove(const char *name)
{
    int fd = -1, r;

    if (!name)
        return -EINVAL;
    if (!libdm__netdev_exists(name))
        return 0;
    /* Attaching fails with EBUSY while QEMU (or anyone) still holds it. */
    r = tap_open(name, 0, &fd);
    if (r == -EINVAL)
        r = tap_open(name, IFF_VNET_HDR, &fd);
    if (r < 0)
        return r;
    if (ioctl(fd, TUNSETPERSIST, 0) < 0)
        r = -errno;
    libdm__close(&fd);
    return r;
}

/* The taps of a record's "nics" text ("DEVID IFNAME MAC BRIDGE;..."):
 * here, beside the taps, so that every way a DM ends (dm.c, the
 * operations) can remove them without calling up into devices-run.c. */
void libdm__devices_cleanup(libdm_ctx *ctx, const char *nics)
{
    const char *p = nics;

    while (p && *p) {
        char ifname[LIBDM__IFNAME_MAX + 1];
        int devid, r;

        if (sscanf(p, "%d %15s", &devid, ifname) == 2 && strcmp(ifname, "-") != 0 &&
            (r = libdm__tap_remove(ifname)) < 0)
            LIBDM__WARN(ctx, "nic %d: cannot remove tap %s: %s", devid, ifname, strerror(-r));
        p = strchr(p, ';');
        p = p ? p + 1 : NULL;
    }
}
