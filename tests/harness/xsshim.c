/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * xsshim: an LD_PRELOAD library that lets the REAL Xen C xenstored
 * (/usr/lib/xen-4.17/bin/xenstored, Debian package xen-utils-4.17) run on a
 * machine without Xen, for tests only.
 *
 * This is a fake of the HYPERVISOR only, because no hypervisor exists here.
 * xenstored itself is real and unmodified: its database, transactions,
 * permissions, watches and wire protocol are the real ones. What is stubbed
 * is what it would ask of Xen:
 *  - libxenctrl: xc_interface_open/close, xc_domain_getinfo: no domains,
 *    or, when $XENHYP_STATE or $XENHYP_DOMIDS is set, dom0 and the domains
 *    of tests/harness/xendoms.h (those the fake xc_domain_create of
 *    tests/harness/xlhyp.c made for the real `xl create`), so that
 *    xenstored accepts their XS_INTRODUCE and permissions naming them;
 *  - libxengnttab: open/close/set_max_grants/unmap; map_grant_ref gives a
 *    zero page for a domain that exists (its xenstore ring: nobody ever
 *    writes it, no guest runs), ENOENT otherwise;
 *  - libxenevtchn: open/fdopen/close/fd/bind_virq/bind_interdomain/
 *    bind_unbound_port/notify/pending/unmask/unbind; an eventfd, never
 *    signalled, stands in for the event-channel device, so no event ever
 *    arrives from a (non-existent) domain; with $XENHYP_STATE an inotify
 *    watch of that directory is the device instead: a domain's removal
 *    (the fake xc_domain_destroy) raises VIRQ_DOM_EXC, as Xen would, and
 *    xenstored releases the domain (@releaseDomain);
 *  - open/open64 of /proc/xen/xsd_port (a file holding "1", no newline) and
 *    /proc/xen/xsd_kva (a 4 KiB zero file: dom0's unused ring page), both
 *    created in $XSSHIM_DIR (else $XENSTORED_RUNDIR).
 * Clients reach the daemon over its unix socket ($XENSTORED_RUNDIR/socket),
 * which xenstored treats as dom0.
 *
 * Built by "make check" as tests/harness/.libs/xsshim.so (a libtool module);
 * tests/harness/xenstored-run.sh and tests/integration/test-store-xs.c start
 * the daemon with it. Signatures follow /usr/include/xenctrl.h, xengnttab.h
 * and xenevtchn.h of Xen 4.17.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xengnttab.h>

#include "xendoms.h"

#define SHIM_EXPORT __attribute__((visibility("default")))

/* Our definitions of the libraries' opaque handle types. */
struct xenevtchn_handle {
    int fd;
    int inotify;       /* the fd is an inotify watch of $XENHYP_STATE */
    int dom_exc_port;  /* the port bound to VIRQ_DOM_EXC, 0 if none */
};

static char xc_dummy;
static char gnttab_dummy;
static int next_port = 1;

/* ---- libxenctrl ---- */

SHIM_EXPORT xc_interface *xc_interface_open(xentoollog_logger *logger,
                                            xentoollog_logger *dombuild_logger,
                                            unsigned open_flags)
{
    return (xc_interface *)(void *)&xc_dummy;
}

SHIM_EXPORT int xc_interface_close(xc_interface *xch)
{
    return 0;
}

static int domains_modelled(void)
{
    const char *a = getenv("XENHYP_STATE"), *b = getenv("XENHYP_DOMIDS");

    return (a && *a) || (b && *b);
}

SHIM_EXPORT int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid, unsigned int max_doms,
                                  xc_dominfo_t *info)
{
    uint32_t ids[XENDOMS_MAX];
    unsigned int n, got = 0;

    if (!domains_modelled())
        return 0; /* no domains */
    n = xendoms_list(ids, XENDOMS_MAX);
    for (unsigned int i = 0; i < n && got < max_doms; i++) {
        if (ids[i] < first_domid)
            continue;
        memset(&info[got], 0, sizeof(info[got]));
        info[got].domid = ids[i];
        info[got].hvm = ids[i] != 0;
        info[got].paused = ids[i] != 0;
        info[got].running = ids[i] == 0;
        info[got].max_vcpu_id = 0;
        info[got].nr_online_vcpus = 1;
        got++;
    }
    return (int)got;
}

/* ---- libxengnttab ---- */

SHIM_EXPORT xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger,
                                             unsigned open_flags)
{
    return (xengnttab_handle *)(void *)&gnttab_dummy;
}

SHIM_EXPORT int xengnttab_close(xengnttab_handle *xgt)
{
    return 0;
}

SHIM_EXPORT int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants)
{
    return 0;
}

SHIM_EXPORT void *xengnttab_map_grant_ref(xengnttab_handle *xgt, uint32_t domid, uint32_t ref,
                                          int prot)
{
    void *p;

    if (!domains_modelled() || domid == 0 || !xendoms_exists(domid)) {
        errno = ENOENT; /* no such domain grants anything */
        return NULL;
    }
    /* The domain's ring page: zeros, an empty ring nobody writes. */
    p = mmap(NULL, 4096, prot, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

SHIM_EXPORT int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count)
{
    if (start_address && count)
        munmap(start_address, (size_t)count * 4096);
    return 0;
}

/* ---- libxenevtchn ---- */

static xenevtchn_handle *evtchn_new(int fd)
{
    xenevtchn_handle *h = calloc(1, sizeof(*h));

    if (!h)
        return NULL;
    h->fd = fd;
    return h;
}

SHIM_EXPORT xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger, unsigned int flags)
{
    int cloexec = (flags & XENEVTCHN_NO_CLOEXEC) ? 0 : 1;
    const char *state = getenv("XENHYP_STATE");
    int fd = -1, ino = 0;
    xenevtchn_handle *h;

    if (state && *state) {
        fd = inotify_init1(IN_NONBLOCK | (cloexec ? IN_CLOEXEC : 0));
        if (fd >= 0 && inotify_add_watch(fd, state, IN_DELETE) < 0) {
            close(fd);
            fd = -1;
        }
        ino = fd >= 0;
    }
    if (fd < 0)
        fd = eventfd(0, EFD_NONBLOCK | (cloexec ? EFD_CLOEXEC : 0));
    if (fd < 0)
        return NULL;
    h = evtchn_new(fd);
    if (!h)
        close(fd);
    else
        h->inotify = ino;
    return h;
}

SHIM_EXPORT xenevtchn_handle *xenevtchn_fdopen(struct xentoollog_logger *logger, int fd,
                                               unsigned open_flags)
{
    return evtchn_new(fd);
}

SHIM_EXPORT int xenevtchn_close(xenevtchn_handle *xce)
{
    if (xce) {
        close(xce->fd);
        free(xce);
    }
    return 0;
}

SHIM_EXPORT int xenevtchn_fd(xenevtchn_handle *xce)
{
    return xce->fd;
}

SHIM_EXPORT int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
    return 0; /* nobody on the other end */
}

SHIM_EXPORT xenevtchn_port_or_error_t xenevtchn_bind_unbound_port(xenevtchn_handle *xce,
                                                                  uint32_t domid)
{
    return next_port++;
}

SHIM_EXPORT xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce,
                                                                 uint32_t domid,
                                                                 evtchn_port_t remote_port)
{
    return next_port++;
}

SHIM_EXPORT xenevtchn_port_or_error_t xenevtchn_bind_virq(xenevtchn_handle *xce,
                                                          unsigned int virq)
{
    int port = next_port++;

    if (virq == VIRQ_DOM_EXC)
        xce->dom_exc_port = port;
    return port;
}

SHIM_EXPORT int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
    return 0;
}

SHIM_EXPORT xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
    uint64_t v;

    if (xce->inotify) {
        char buf[4096] __attribute__((aligned(8)));
        ssize_t r = read(xce->fd, buf, sizeof(buf));
        int got = r > 0;

        while (r > 0) /* drain */
            r = read(xce->fd, buf, sizeof(buf));
        /* A domain died: VIRQ_DOM_EXC. (xenstored exits on -1 after a
         * wakeup: port 0 names nobody.) */
        if (got)
            return xce->dom_exc_port;
        errno = EAGAIN;
        return -1;
    }

    /* Never signalled; drain it anyway should anything write to it. */
    if (read(xce->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        return -1;
    errno = EAGAIN;
    return -1;
}

SHIM_EXPORT int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
    return 0;
}

/* ---- /proc/xen ---- */

typedef int open_fn(const char *path, int flags, ...);

static open_fn *real(const char *sym)
{
    return (open_fn *)dlsym(RTLD_NEXT, sym);
}

/* Creates (once) the stand-in for /proc/xen/<leaf> and returns its path in
 * @buf, or @path itself if it is not one we fake. */
static const char *redirect(open_fn *real_open, const char *path, char *buf, size_t size)
{
    const char *leaf, *dir;
    int fd;

    if (!path || !real_open)
        return path;
    if (strcmp(path, "/proc/xen/xsd_port") == 0)
        leaf = "xsd_port";
    else if (strcmp(path, "/proc/xen/xsd_kva") == 0)
        leaf = "xsd_kva";
    else
        return path;
    dir = getenv("XSSHIM_DIR");
    if (!dir || !*dir)
        dir = getenv("XENSTORED_RUNDIR");
    if (!dir || !*dir || snprintf(buf, size, "%s/%s", dir, leaf) >= (int)size)
        return path; /* fails as it would without the shim */
    fd = real_open(buf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
        int ok = leaf[4] == 'p' ? write(fd, "1", 1) == 1 : ftruncate(fd, 4096) == 0;

        close(fd);
        if (!ok) {
            unlink(buf);
            return path;
        }
    }
    return buf;
}

static int shim_open(const char *sym, const char *path, int flags, mode_t mode)
{
    open_fn *real_open = real(sym);
    char buf[PATH_MAX];

    if (!real_open) {
        errno = ENOSYS;
        return -1;
    }
    return real_open(redirect(real_open, path, buf, sizeof(buf)), flags, mode);
}

SHIM_EXPORT int open(const char *path, int flags, ...)
{
    mode_t mode = 0;

    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;

        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return shim_open("open", path, flags, mode);
}

SHIM_EXPORT int open64(const char *path, int flags, ...)
{
    mode_t mode = 0;

    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;

        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return shim_open("open64", path, flags, mode);
}
