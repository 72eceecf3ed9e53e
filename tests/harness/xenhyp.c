/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * xenhyp: an LD_PRELOAD library that lets the REAL Xen device model
 * (/usr/libexec/xen-qemu-system-i386, Debian package qemu-system-xen, QEMU
 * 7.2) and the REAL `xl` (/usr/lib/xen-4.17/bin/xl) run on a machine without
 * Xen, for tests only.
 *
 * This is a FAKE of the HYPERVISOR, because no Xen runs on these machines
 * (no /dev/xen/privcmd, no /sys/hypervisor). QEMU itself is real and
 * unmodified: its Xen machine, its QMP monitor, its xenstore code and its
 * run states are the real ones, and libxenstore is NOT faked: QEMU and xl
 * reach a real xenstored (itself under tests/harness/xsshim.c) through
 * $XENSTORED_PATH. What is replaced is what they would ask of Xen through
 * the other Xen libraries, with the signatures of Xen 4.17's headers:
 *  - libxenctrl: xc_interface_open/close; xc_domain_populate_physmap_exact
 *    (the range is checked, nothing is allocated: see foreign memory);
 *    xc_get_hvm_param -> ENOSYS; xc_set_hvm_param, xc_domain_shutdown -> 0;
 *    the pass-through calls (xc_domain_*_pt_*, *_msi_*, ioport/iomem/memory
 *    mapping, xc_physdev_*) -> ENOSYS (no physical devices to pass through);
 *  - libxendevicemodel: create_ioreq_server -> server id 1;
 *    get_ioreq_server_info -> frame numbers and a buffered-ioreq port;
 *    everything else succeeds and does nothing (track_dirty_vram reports
 *    nothing dirty);
 *  - libxenforeignmemory: guest memory is ONE sparse shared anonymous
 *    pool per process, frame N its page N, each mapping an alias of pool
 *    pages (mremap), so that repeated mappings of a frame see the same
 *    bytes (no file: RLIMIT_FSIZE under dm_restrict would stop one); map_resource of the ioreq
 *    server's frames gives zeroed pages (every vCPU slot idle, the buffered
 *    ring empty);
 *  - libxenevtchn: one eventfd per handle, never signalled (no guest ever
 *    raises an event); ports are counted from 1;
 *  - libxengnttab: grant_copy -> ENOSYS (QEMU only probes it), mapping ->
 *    ENOENT (no guest grants anything);
 *  - libxentoolcore: xentoolcore_restrict_all is forwarded to the real one,
 *    which restricts the real libxenstore handles (as under Xen: with
 *    -xen-domid-restrict QEMU's own xenstore writes then fail); the fake
 *    handles here have nothing to restrict;
 *  - for xl: xc_version (Xen 4.17), xc_physinfo (2 CPUs, 1 GiB, HVM
 *    capable), xc_domain_getinfo, xc_domain_getinfolist and
 *    xc_domain_getinfo_single (the domains that "exist": dom0 and those
 *    listed in $XENHYP_DOMIDS, e.g. "0,2,7", or created by the fake
 *    xc_domain_create of tests/harness/xlhyp.c: see xendoms.h),
 *    xc_flask_sid_to_context
 *    (ENOSYS, as on a Xen without FLASK).
 *
 * What it does NOT model: no guest CPU ever runs, so no I/O request ever
 * reaches QEMU and no event channel fires; domains do not change state
 * (guests always report paused, HVM, whatever QEMU does); memory is never
 * accounted; pass-through, grant mapping and event delivery do not exist.
 * Anything that needs a running guest cannot be tested with it. Any other
 * libxenctrl call reaches the real library with a fake handle and will
 * fail or crash: the set above is what QEMU 7.2 and `xl list [-v]`,
 * `xl qemu-monitor-command`, `xl domid`, `xl domname` need; `xl info`,
 * `xl vcpu-list`, `xl dmesg`, `xl destroy` crash (segfault) in the real
 * libxenctrl, `xl list -l` finds no saved domain configuration.
 *
 * Built by "make check" as tests/harness/.libs/xenhyp.so (a libtool
 * module); tests/harness/xen-env.sh sets it up for QEMU and xl.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xendevicemodel.h>
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xengnttab.h>
#include <xentoolcore.h>

#include "xendoms.h"

#define HYP_EXPORT __attribute__((visibility("default")))
#define PAGE 4096UL
/* The buffered-ioreq event channel get_ioreq_server_info reports. */
#define BUFIOREQ_PORT 7
/* Frame numbers of the ioreq server's pages (as an old Xen would put them
 * at the top of the low memory). Only reported, never needed: QEMU maps the
 * pages with map_resource. */
#define IOREQ_GFN 0xfeff0UL
#define BUFIOREQ_GFN 0xfeff1UL
/* Highest frame number a mapping may name: 52-bit guest physical addresses. */
#define MAX_PFN ((1UL << 40) - 1)

/* Prototypes of what this library defines beyond the headers: Xen 4.18's
 * xc_domain_getinfo_single (not in 4.17's xenctrl.h). */
HYP_EXPORT int xc_domain_getinfo_single(xc_interface *xch, uint32_t domid, xc_domaininfo_t *info);

/* Our definitions of the libraries' opaque handle types. */
struct xc_interface_core {
    int unused;
};
struct xendevicemodel_handle {
    int unused;
};
struct xenforeignmemory_handle {
    int unused;
};
struct xengntdev_handle {
    int unused;
};
struct xenevtchn_handle {
    int fd;
};
struct xenforeignmemory_resource_handle {
    void *addr;
    size_t size;
};

static atomic_int next_port = 1;

/* ---- the "domains": dom0, $XENHYP_DOMIDS and those xlhyp.c created ---- */

#define MAX_DOMS XENDOMS_MAX

static unsigned int domains(uint32_t *ids)
{
    return xendoms_list(ids, MAX_DOMS);
}

static void fill_domaininfo(uint32_t domid, xc_domaininfo_t *d)
{
    memset(d, 0, sizeof(*d));
    d->domain = (domid_t)domid;
    if (domid == 0) {
        d->flags = XEN_DOMINF_running;
        d->tot_pages = d->max_pages = 262144; /* 1 GiB */
        d->nr_online_vcpus = 2;
        d->max_vcpu_id = 1;
    } else {
        /* Created paused by the toolstack; this fake never unpauses it. */
        d->flags = XEN_DOMINF_hvm_guest | XEN_DOMINF_hap | XEN_DOMINF_paused;
        d->tot_pages = d->max_pages = 32768; /* 128 MiB */
        d->nr_online_vcpus = 1;
        d->max_vcpu_id = 0;
        /* UUID 00000000-0000-0000-0000-<domid, 12 hex digits>, the one
         * tests/harness/xen-env.sh writes under /vm. */
        d->handle[14] = (uint8_t)(domid >> 8);
        d->handle[15] = (uint8_t)domid;
        /* One the real xl created: the UUID it gave xc_domain_create. */
        xendoms_handle(domid, d->handle);
    }
    d->gpaddr_bits = 52;
}

/* ---- libxenctrl ---- */

HYP_EXPORT xc_interface *xc_interface_open(xentoollog_logger *logger,
                                           xentoollog_logger *dombuild_logger,
                                           unsigned open_flags)
{
    return calloc(1, sizeof(xc_interface));
}

HYP_EXPORT int xc_interface_close(xc_interface *xch)
{
    free(xch);
    return 0;
}

static int enosys(void)
{
    errno = ENOSYS;
    return -1;
}

HYP_EXPORT int xc_domain_populate_physmap_exact(xc_interface *xch, uint32_t domid,
                                                unsigned long nr_extents,
                                                unsigned int extent_order,
                                                unsigned int mem_flags,
                                                xen_pfn_t *extent_start)
{
    if (extent_order > 18 || (nr_extents && !extent_start)) {
        errno = EINVAL;
        return -1;
    }
    for (unsigned long i = 0; i < nr_extents; i++)
        if (extent_start[i] > MAX_PFN || ((extent_start[i] + (1UL << extent_order)) - 1) > MAX_PFN) {
            errno = EINVAL;
            return -1;
        }
    return 0; /* the pool already "holds" every frame */
}

HYP_EXPORT int xc_get_hvm_param(xc_interface *handle, uint32_t dom, int param,
                                unsigned long *value)
{
    return enosys();
}

HYP_EXPORT int xc_set_hvm_param(xc_interface *handle, uint32_t dom, int param,
                                unsigned long value)
{
    return 0;
}

HYP_EXPORT int xc_domain_shutdown(xc_interface *xch, uint32_t domid, int reason)
{
    return 0;
}

HYP_EXPORT int xc_domain_bind_pt_pci_irq(xc_interface *xch, uint32_t domid, uint8_t machine_irq,
                                         uint8_t bus, uint8_t device, uint8_t intx)
{
    return enosys();
}

HYP_EXPORT int xc_domain_unbind_pt_irq(xc_interface *xch, uint32_t domid, uint8_t machine_irq,
                                       uint8_t irq_type, uint8_t bus, uint8_t device,
                                       uint8_t intx, uint8_t isa_irq)
{
    return enosys();
}

HYP_EXPORT int xc_domain_update_msi_irq(xc_interface *xch, uint32_t domid, uint32_t gvec,
                                        uint32_t pirq, uint32_t gflags, uint64_t gtable)
{
    return enosys();
}

HYP_EXPORT int xc_domain_unbind_msi_irq(xc_interface *xch, uint32_t domid, uint32_t gvec,
                                        uint32_t pirq, uint32_t gflags)
{
    return enosys();
}

HYP_EXPORT int xc_domain_iomem_permission(xc_interface *xch, uint32_t domid,
                                          unsigned long first_mfn, unsigned long nr_mfns,
                                          uint8_t allow_access)
{
    return enosys();
}

HYP_EXPORT int xc_domain_ioport_mapping(xc_interface *xch, uint32_t domid, uint32_t first_gport,
                                        uint32_t first_mport, uint32_t nr_ports,
                                        uint32_t add_mapping)
{
    return enosys();
}

HYP_EXPORT int xc_domain_memory_mapping(xc_interface *xch, uint32_t domid,
                                        unsigned long first_gfn, unsigned long first_mfn,
                                        unsigned long nr_mfns, uint32_t add_mapping)
{
    return enosys();
}

HYP_EXPORT int xc_physdev_map_pirq(xc_interface *xch, uint32_t domid, int index, int *pirq)
{
    return enosys();
}

HYP_EXPORT int xc_physdev_map_pirq_msi(xc_interface *xch, uint32_t domid, int index, int *pirq,
                                       int devfn, int bus, int entry_nr, uint64_t table_base)
{
    return enosys();
}

HYP_EXPORT int xc_physdev_unmap_pirq(xc_interface *xch, uint32_t domid, int pirq)
{
    return enosys();
}

/* -- what xl needs -- */

HYP_EXPORT int xc_version(xc_interface *xch, int cmd, void *arg)
{
    switch (cmd) {
    case XENVER_version:
        return (4 << 16) | 17;
    case XENVER_extraversion:
        snprintf(arg, sizeof(xen_extraversion_t), ".0");
        return 0;
    case XENVER_compile_info: {
        xen_compile_info_t *ci = arg;

        memset(ci, 0, sizeof(*ci));
        snprintf(ci->compiler, sizeof(ci->compiler), "none (libdm test fake)");
        snprintf(ci->compile_by, sizeof(ci->compile_by), "xenhyp");
        snprintf(ci->compile_domain, sizeof(ci->compile_domain), "invalid");
        snprintf(ci->compile_date, sizeof(ci->compile_date), "never");
        return 0;
    }
    case XENVER_capabilities:
        snprintf(arg, sizeof(xen_capabilities_info_t),
                 "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64");
        return 0;
    case XENVER_changeset:
        snprintf(arg, sizeof(xen_changeset_info_t), "xenhyp (a fake hypervisor)");
        return 0;
    case XENVER_commandline:
        memset(arg, 0, sizeof(xen_commandline_t));
        return 0;
    case XENVER_platform_parameters:
        ((xen_platform_parameters_t *)arg)->virt_start = 0xffff800000000000UL;
        return 0;
    case XENVER_get_features:
        ((xen_feature_info_t *)arg)->submap = 0;
        return 0;
    case XENVER_pagesize:
        return (int)PAGE;
    case XENVER_guest_handle:
        memset(arg, 0, sizeof(xen_domain_handle_t));
        return 0;
    default: /* XENVER_build_id among others: none */
        errno = ENODATA;
        return -1;
    }
}

HYP_EXPORT int xc_physinfo(xc_interface *xch, xc_physinfo_t *info)
{
    memset(info, 0, sizeof(*info));
    info->threads_per_core = 1;
    info->cores_per_socket = 2;
    info->nr_cpus = 2;
    info->max_cpu_id = 1;
    info->nr_nodes = 1;
    info->max_node_id = 0;
    info->cpu_khz = 2000000;
    info->capabilities = XEN_SYSCTL_PHYSCAP_hvm | XEN_SYSCTL_PHYSCAP_hap;
    info->total_pages = 1048576; /* 4 GiB */
    info->free_pages = 524288;
    info->max_mfn = 1048575;
    return 0;
}

HYP_EXPORT int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain,
                                     unsigned int max_domains, xc_domaininfo_t *info)
{
    uint32_t ids[MAX_DOMS];
    unsigned int n = domains(ids), got = 0;

    for (unsigned int i = 0; i < n && got < max_domains; i++)
        if (ids[i] >= first_domain)
            fill_domaininfo(ids[i], &info[got++]);
    return (int)got;
}

HYP_EXPORT int xc_domain_getinfo_single(xc_interface *xch, uint32_t domid, xc_domaininfo_t *info)
{
    xc_domaininfo_t d;

    if (xc_domain_getinfolist(xch, domid, 1, &d) != 1 || d.domain != domid) {
        errno = ESRCH;
        return -1;
    }
    if (info)
        *info = d;
    return 0;
}

HYP_EXPORT int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid, unsigned int max_doms,
                                 xc_dominfo_t *info)
{
    uint32_t ids[MAX_DOMS];
    unsigned int n = domains(ids), got = 0;

    for (unsigned int i = 0; i < n && got < max_doms; i++) {
        xc_domaininfo_t d;
        xc_dominfo_t *o = &info[got];

        if (ids[i] < first_domid)
            continue;
        fill_domaininfo(ids[i], &d);
        memset(o, 0, sizeof(*o));
        o->domid = d.domain;
        o->ssidref = d.ssidref;
        o->paused = !!(d.flags & XEN_DOMINF_paused);
        o->running = !!(d.flags & XEN_DOMINF_running);
        o->hvm = !!(d.flags & XEN_DOMINF_hvm_guest);
        o->hap = !!(d.flags & XEN_DOMINF_hap);
        o->nr_pages = d.tot_pages;
        o->max_memkb = d.max_pages * (PAGE / 1024);
        o->nr_online_vcpus = d.nr_online_vcpus;
        o->max_vcpu_id = d.max_vcpu_id;
        memcpy(o->handle, d.handle, sizeof(o->handle));
        o->cpupool = d.cpupool;
        o->gpaddr_bits = d.gpaddr_bits;
        got++;
    }
    return (int)got;
}

HYP_EXPORT int xc_flask_sid_to_context(xc_interface *xc_handle, int sid, char *buf, uint32_t size)
{
    return enosys(); /* a Xen without FLASK/XSM */
}

/* ---- libxendevicemodel ---- */

HYP_EXPORT xendevicemodel_handle *xendevicemodel_open(struct xentoollog_logger *logger,
                                                      unsigned int open_flags)
{
    return calloc(1, sizeof(xendevicemodel_handle));
}

HYP_EXPORT int xendevicemodel_close(xendevicemodel_handle *dmod)
{
    free(dmod);
    return 0;
}

HYP_EXPORT int xendevicemodel_restrict(xendevicemodel_handle *dmod, domid_t domid)
{
    return 0;
}

HYP_EXPORT int xendevicemodel_create_ioreq_server(xendevicemodel_handle *dmod, domid_t domid,
                                                  int handle_bufioreq, ioservid_t *id)
{
    *id = 1;
    return 0;
}

HYP_EXPORT int xendevicemodel_get_ioreq_server_info(xendevicemodel_handle *dmod, domid_t domid,
                                                    ioservid_t id, xen_pfn_t *ioreq_gfn,
                                                    xen_pfn_t *bufioreq_gfn,
                                                    evtchn_port_t *bufioreq_port)
{
    if (id != 1) {
        errno = ENOENT;
        return -1;
    }
    if (ioreq_gfn)
        *ioreq_gfn = IOREQ_GFN;
    if (bufioreq_gfn)
        *bufioreq_gfn = BUFIOREQ_GFN;
    if (bufioreq_port)
        *bufioreq_port = BUFIOREQ_PORT;
    return 0;
}

HYP_EXPORT int xendevicemodel_map_io_range_to_ioreq_server(xendevicemodel_handle *dmod,
                                                           domid_t domid, ioservid_t id,
                                                           int is_mmio, uint64_t start,
                                                           uint64_t end)
{
    return 0;
}

HYP_EXPORT int xendevicemodel_unmap_io_range_from_ioreq_server(xendevicemodel_handle *dmod,
                                                               domid_t domid, ioservid_t id,
                                                               int is_mmio, uint64_t start,
                                                               uint64_t end)
{
    return 0;
}

HYP_EXPORT int xendevicemodel_map_pcidev_to_ioreq_server(xendevicemodel_handle *dmod,
                                                         domid_t domid, ioservid_t id,
                                                         uint16_t segment, uint8_t bus,
                                                         uint8_t device, uint8_t function)
{
    return 0;
}

HYP_EXPORT int xendevicemodel_unmap_pcidev_from_ioreq_server(xendevicemodel_handle *dmod,
                                                             domid_t domid, ioservid_t id,
                                                             uint16_t segment, uint8_t bus,
                                                             uint8_t device, uint8_t function)
{
    return 0;
}

HYP_EXPORT int xendevicemodel_destroy_ioreq_server(xendevicemodel_handle *dmod, domid_t domid,
                                                   ioservid_t id)
{
    return 0;
}

HYP_EXPORT int xendevicemodel_set_ioreq_server_state(xendevicemodel_handle *dmod, domid_t domid,
                                                     ioservid_t id, int enabled)
{
    return 0;
}

HYP_EXPORT int xendevicemodel_set_pci_intx_level(xendevicemodel_handle *dmod, domid_t domid,
                                                 uint16_t segment, uint8_t bus, uint8_t device,
                                                 uint8_t intx, unsigned int level)
{
    return 0;
}

HYP_EXPORT int xendevicemodel_set_isa_irq_level(xendevicemodel_handle *dmod, domid_t domid,
                                                uint8_t irq, unsigned int level)
{
    return 0;
}

HYP_EXPORT int xendevicemodel_set_pci_link_route(xendevicemodel_handle *dmod, domid_t domid,
                                                 uint8_t link, uint8_t irq)
{
    return 0;
}

HYP_EXPORT int xendevicemodel_inject_msi(xendevicemodel_handle *dmod, domid_t domid,
                                         uint64_t msi_addr, uint32_t msi_data)
{
    return 0;
}

HYP_EXPORT int xendevicemodel_track_dirty_vram(xendevicemodel_handle *dmod, domid_t domid,
                                               uint64_t first_pfn, uint32_t nr,
                                               unsigned long *dirty_bitmap)
{
    const size_t bits = sizeof(unsigned long) * CHAR_BIT;

    if (dirty_bitmap)
        memset(dirty_bitmap, 0, ((nr + bits - 1) / bits) * sizeof(unsigned long));
    return 0; /* nothing ever writes guest memory */
}

HYP_EXPORT int xendevicemodel_modified_memory(xendevicemodel_handle *dmod, domid_t domid,
                                              uint64_t first_pfn, uint32_t nr)
{
    return 0;
}

HYP_EXPORT int xendevicemodel_set_mem_type(xendevicemodel_handle *dmod, domid_t domid,
                                           hvmmem_type_t mem_type, uint64_t first_pfn,
                                           uint32_t nr)
{
    return 0;
}

HYP_EXPORT int xendevicemodel_shutdown(xendevicemodel_handle *dmod, domid_t domid,
                                       unsigned int reason)
{
    return 0;
}

HYP_EXPORT int xendevicemodel_relocate_memory(xendevicemodel_handle *dmod, domid_t domid,
                                              uint32_t size, uint64_t src_gfn, uint64_t dst_gfn)
{
    return 0;
}

HYP_EXPORT int xendevicemodel_pin_memory_cacheattr(xendevicemodel_handle *dmod, domid_t domid,
                                                   uint64_t start, uint64_t end, uint32_t type)
{
    return 0;
}

/* ---- libxenforeignmemory: guest memory is one shared anonymous pool ----
 * Frame N is the pool's page N; each mapping is an alias of pool pages made
 * with mremap(old_size 0), so repeated mappings see the same bytes. Not a
 * memfd: growing a file past the 256 KiB RLIMIT_FSIZE that libxl sets
 * under dm_restrict raises SIGXFSZ, and on Xen guest memory is no file.
 * The pool is reserved sparse (MAP_NORESERVE): untouched pages cost nothing. */

#define POOL_PAGES (1UL << 28) /* 1 TiB of guest-physical space */

static pthread_mutex_t mem_lock = PTHREAD_MUTEX_INITIALIZER;
static char *mem_pool;

static char *guest_memory(void)
{
    char *p;

    pthread_mutex_lock(&mem_lock);
    if (!mem_pool) {
        p = mmap(NULL, POOL_PAGES * PAGE, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        mem_pool = p == MAP_FAILED ? NULL : p;
    }
    p = mem_pool;
    pthread_mutex_unlock(&mem_lock);
    return p;
}

HYP_EXPORT xenforeignmemory_handle *xenforeignmemory_open(struct xentoollog_logger *logger,
                                                          unsigned open_flags)
{
    return calloc(1, sizeof(xenforeignmemory_handle));
}

HYP_EXPORT int xenforeignmemory_close(xenforeignmemory_handle *fmem)
{
    free(fmem);
    return 0;
}

HYP_EXPORT void *xenforeignmemory_map2(xenforeignmemory_handle *fmem, uint32_t dom, void *addr,
                                       int prot, int flags, size_t pages, const xen_pfn_t arr[],
                                       int err[])
{
    char *base, *pool;

    if (!pages || pages > MAX_PFN) {
        errno = EINVAL;
        return NULL;
    }
    for (size_t i = 0; i < pages; i++) {
        if (arr[i] >= POOL_PAGES) {
            errno = EINVAL; /* beyond what the fake models */
            return NULL;
        }
    }
    pool = guest_memory();
    if (!pool)
        return NULL;
    /* Reserve the whole range, then map each run of consecutive frames. */
    base = mmap(addr, pages * PAGE, PROT_NONE,
                MAP_PRIVATE | MAP_ANONYMOUS | (flags & MAP_FIXED), -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    for (size_t i = 0, run; i < pages; i += run) {
        for (run = 1; i + run < pages && arr[i + run] == arr[i] + run; run++)
            ;
        if (mremap(pool + arr[i] * PAGE, 0, run * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED,
                   base + i * PAGE) == MAP_FAILED ||
            mprotect(base + i * PAGE, run * PAGE, prot) < 0) {
            int e = errno;

            munmap(base, pages * PAGE);
            errno = e;
            return NULL;
        }
    }
    if (err)
        memset(err, 0, pages * sizeof(*err));
    return base;
}

HYP_EXPORT void *xenforeignmemory_map(xenforeignmemory_handle *fmem, uint32_t dom, int prot,
                                      size_t pages, const xen_pfn_t arr[], int err[])
{
    return xenforeignmemory_map2(fmem, dom, NULL, prot, 0, pages, arr, err);
}

HYP_EXPORT int xenforeignmemory_unmap(xenforeignmemory_handle *fmem, void *addr, size_t pages)
{
    return munmap(addr, pages * PAGE);
}

HYP_EXPORT xenforeignmemory_resource_handle *
xenforeignmemory_map_resource(xenforeignmemory_handle *fmem, domid_t domid, unsigned int type,
                              unsigned int id, unsigned long frame, unsigned long nr_frames,
                              void **paddr, int prot, int flags)
{
    xenforeignmemory_resource_handle *r;

    /* Only the ioreq server's pages exist: frame 0 the buffered ring, frame
     * 1 the per-vCPU slots; zeros mean "empty ring, every slot idle". */
    if (type != XENMEM_resource_ioreq_server || id != 1 || !nr_frames || frame + nr_frames > 2) {
        errno = EOPNOTSUPP;
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->size = nr_frames * PAGE;
    r->addr = mmap(*paddr, r->size, prot, MAP_SHARED | MAP_ANONYMOUS | (flags & MAP_FIXED), -1, 0);
    if (r->addr == MAP_FAILED) {
        free(r);
        return NULL;
    }
    *paddr = r->addr;
    return r;
}

HYP_EXPORT int xenforeignmemory_unmap_resource(xenforeignmemory_handle *fmem,
                                               xenforeignmemory_resource_handle *fres)
{
    int r = 0;

    if (fres) {
        r = munmap(fres->addr, fres->size);
        free(fres);
    }
    return r;
}

/* ---- libxenevtchn: an eventfd per handle, never signalled ---- */

HYP_EXPORT xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger, unsigned int flags)
{
    xenevtchn_handle *h = malloc(sizeof(*h));

    if (!h)
        return NULL;
    h->fd = eventfd(0, EFD_NONBLOCK | ((flags & XENEVTCHN_NO_CLOEXEC) ? 0 : EFD_CLOEXEC));
    if (h->fd < 0) {
        free(h);
        return NULL;
    }
    return h;
}

HYP_EXPORT int xenevtchn_close(xenevtchn_handle *xce)
{
    if (xce) {
        close(xce->fd);
        free(xce);
    }
    return 0;
}

HYP_EXPORT int xenevtchn_fd(xenevtchn_handle *xce)
{
    return xce->fd;
}

HYP_EXPORT int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
    return 0; /* no guest vCPU to wake */
}

HYP_EXPORT xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce,
                                                                uint32_t domid,
                                                                evtchn_port_t remote_port)
{
    return atomic_fetch_add(&next_port, 1);
}

HYP_EXPORT int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
    return 0;
}

HYP_EXPORT xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
    uint64_t v;

    /* Never signalled; drain it anyway should anything write to it. */
    if (read(xce->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        return -1;
    errno = EAGAIN;
    return -1;
}

HYP_EXPORT int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
    return 0;
}

/* ---- libxengnttab: no guest grants anything ---- */

HYP_EXPORT xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger, unsigned open_flags)
{
    return calloc(1, sizeof(xengnttab_handle));
}

HYP_EXPORT int xengnttab_close(xengnttab_handle *xgt)
{
    free(xgt);
    return 0;
}

HYP_EXPORT int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants)
{
    return 0;
}

HYP_EXPORT void *xengnttab_map_domain_grant_refs(xengnttab_handle *xgt, uint32_t count,
                                                 uint32_t domid, uint32_t *refs, int prot)
{
    errno = ENOENT;
    return NULL;
}

HYP_EXPORT int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count)
{
    errno = EINVAL; /* nothing was ever mapped */
    return -1;
}

HYP_EXPORT int xengnttab_grant_copy(xengnttab_handle *xgt, uint32_t count,
                                    xengnttab_grant_copy_segment_t *segs)
{
    return enosys();
}

/* ---- libxentoolcore ---- */

typedef int restrict_fn(domid_t);

HYP_EXPORT int xentoolcore_restrict_all(domid_t domid)
{
    restrict_fn *real = (restrict_fn *)dlsym(RTLD_NEXT, "xentoolcore_restrict_all");

    return real ? real(domid) : 0;
}
