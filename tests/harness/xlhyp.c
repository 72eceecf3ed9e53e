/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * xlhyp: an LD_PRELOAD library, loaded beside tests/harness/xenhyp.c, that
 * lets the REAL `xl create` of an HVM guest (Debian's xl 4.17,
 * /usr/lib/xen-4.17/bin/xl) and `xl destroy` run to completion on a machine
 * without Xen, for tests only.
 *
 * This is a FAKE of the HYPERVISOR and of the domain BUILDER, because no
 * Xen runs here. xl and libxl are real and unmodified: the configuration
 * parsing, the xenstore tree libxl writes, XS_INTRODUCE, the device model's
 * argv, its spawn, libxl's QMP client, its dm_restrict set-up, its destroy
 * (the SIGHUP to the DM's pid, the kill-uid reaper) are the real ones.
 * What is replaced (signatures of Xen 4.17's xenctrl.h and xenguest.h):
 *  - domain life: xc_domain_create makes a domain in the shared list of
 *    tests/harness/xendoms.c (a file in $XENHYP_STATE, so xenstored under
 *    xsshim and every xl see it; domids from $XENHYP_DOMID_BASE upward,
 *    never reused), xc_domain_destroy removes it; xc_domain_pause/unpause,
 *    max_vcpus, setmaxmem, set_memmap_limit, set_tsc_info,
 *    set_time_offset, set_memory_map, set_pod_target, claim_pages,
 *    shadow_control, paging mempool,
 *    cpuid_apply_policy, affinity and scheduler settings -> 0, nothing kept;
 *  - xc_hvm_param_set/get: kept per process (defaults: the xenstore and
 *    console frames the builder reports);
 *  - xc_evtchn_alloc_unbound: a counter (no event channel exists);
 *  - the host: xc_sharing_freed_pages/used_frames -> ENOSYS (no sharing),
 *    one cpupool (pool 0, credit2, both CPUs), 1 NUMA node, 2 CPUs;
 *  - the builder: the whole xc_dom_* API libxl calls (libxenguest itself
 *    dereferences libxenctrl's private handle, so it cannot run on a fake
 *    one): no firmware is loaded, no memory populated, nothing is built;
 *    the image reports fixed xenstore and console frames.
 *
 * What it does NOT model: no guest ever runs (no hvmloader, no SeaBIOS, no
 * vCPU), so `xl shutdown` / `xl reboot` of the guest cannot complete and
 * the domain stays "paused" in `xl list`; memory is never accounted; no
 * event channel or grant exists (the console and xenstore rings are zero
 * pages nobody writes); save/restore/migration, PV guests, pass-through,
 * vNUMA and cpupool changes are not faked. Any other libxenctrl call
 * reaches the real library with a fake handle and fails or crashes.
 *
 * Built by "make check" as tests/harness/.libs/xlhyp.so; give xl
 * LD_PRELOAD="$XENHYP_PRELOAD" as printed by tests/harness/xen-env.sh.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xenctrl.h>
#include <xenguest.h>
#include <xen/io/protocols.h>

#include "xendoms.h"

#define HYP_EXPORT __attribute__((visibility("default")))
#define NCPUS 2
/* The frames the "builder" gives the guest's xenstore and console rings
 * (special pages at the top of the low memory, as libxenguest puts them). */
#define XENSTORE_PFN 0xfeffcUL
#define CONSOLE_PFN 0xfeffbUL
#define NPARAMS 64

static atomic_int next_port = 100;
static uint64_t params[NPARAMS];
static bool params_set[NPARAMS];

static int fail(int e)
{
    errno = e;
    return -1;
}

static int known(uint32_t domid)
{
    return xendoms_exists(domid) ? 0 : fail(ESRCH);
}

/* ---- the host ---- */

HYP_EXPORT long xc_sharing_freed_pages(xc_interface *xch)
{
    return fail(ENOSYS);
}

HYP_EXPORT long xc_sharing_used_frames(xc_interface *xch)
{
    return fail(ENOSYS);
}

HYP_EXPORT int xc_get_max_cpus(xc_interface *xch)
{
    return NCPUS;
}

HYP_EXPORT int xc_get_online_cpus(xc_interface *xch)
{
    return NCPUS;
}

HYP_EXPORT int xc_get_max_nodes(xc_interface *xch)
{
    return 1;
}

HYP_EXPORT int xc_get_cpumap_size(xc_interface *xch)
{
    return (NCPUS + 7) / 8;
}

HYP_EXPORT int xc_get_nodemap_size(xc_interface *xch)
{
    return 1;
}

HYP_EXPORT xc_cpupoolinfo_t *xc_cpupool_getinfo(xc_interface *xch, uint32_t poolid)
{
    xc_cpupoolinfo_t *info;

    if (poolid != 0) {
        errno = ENOENT; /* one pool */
        return NULL;
    }
    info = calloc(1, sizeof(*info));
    if (!info)
        return NULL;
    info->cpumap = calloc(1, (size_t)xc_get_cpumap_size(xch));
    if (!info->cpumap) {
        free(info);
        return NULL;
    }
    info->cpupool_id = 0;
    info->sched_id = XEN_SCHEDULER_CREDIT2;
    info->n_dom = xendoms_list((uint32_t[XENDOMS_MAX]){0}, XENDOMS_MAX);
    info->cpumap[0] = (1u << NCPUS) - 1;
    return info;
}

HYP_EXPORT void xc_cpupool_infofree(xc_interface *xch, xc_cpupoolinfo_t *info)
{
    if (info) {
        free(info->cpumap);
        free(info);
    }
}

HYP_EXPORT int xc_numainfo(xc_interface *xch, unsigned *max_nodes, xc_meminfo_t *meminfo,
                           uint32_t *distance)
{
    if (meminfo && *max_nodes >= 1) {
        meminfo[0].memsize = 4ULL << 30;
        meminfo[0].memfree = 2ULL << 30;
    }
    if (distance && *max_nodes >= 1)
        distance[0] = 10;
    *max_nodes = 1;
    return 0;
}

HYP_EXPORT int xc_cputopoinfo(xc_interface *xch, unsigned *max_cpus, xc_cputopo_t *cputopo)
{
    if (cputopo)
        for (unsigned int i = 0; i < NCPUS && i < *max_cpus; i++) {
            cputopo[i].core = i;
            cputopo[i].socket = 0;
            cputopo[i].node = 0;
        }
    *max_cpus = NCPUS;
    return 0;
}

HYP_EXPORT int xc_sched_id(xc_interface *xch, int *sched_id)
{
    *sched_id = XEN_SCHEDULER_CREDIT2;
    return 0;
}

HYP_EXPORT int xc_sched_credit2_domain_get(xc_interface *xch, uint32_t domid,
                                           struct xen_domctl_sched_credit2 *sdom)
{
    memset(sdom, 0, sizeof(*sdom));
    sdom->weight = 256;
    return known(domid);
}

HYP_EXPORT int xc_sched_credit2_domain_set(xc_interface *xch, uint32_t domid,
                                           struct xen_domctl_sched_credit2 *sdom)
{
    return known(domid);
}

/* ---- domain life ---- */

HYP_EXPORT int xc_domain_create(xc_interface *xch, uint32_t *pdomid,
                                struct xen_domctl_createdomain *config)
{
    uint32_t domid = *pdomid >= DOMID_FIRST_RESERVED ? 0 : *pdomid;

    if (xendoms_create_handle(&domid, config ? config->handle : NULL) < 0)
        return -1;
    *pdomid = domid;
    memset(params, 0, sizeof(params));
    memset(params_set, 0, sizeof(params_set));
    return 0;
}

HYP_EXPORT int xc_domain_destroy(xc_interface *xch, uint32_t domid)
{
    return xendoms_destroy(domid);
}

HYP_EXPORT int xc_domain_pause(xc_interface *xch, uint32_t domid)
{
    return known(domid);
}

HYP_EXPORT int xc_domain_unpause(xc_interface *xch, uint32_t domid)
{
    return known(domid); /* no vCPU to run: it stays "paused" */
}

HYP_EXPORT int xc_domain_max_vcpus(xc_interface *xch, uint32_t domid, unsigned int max)
{
    return known(domid);
}

HYP_EXPORT int xc_vcpu_setaffinity(xc_interface *xch, uint32_t domid, int vcpu,
                                   xc_cpumap_t cpumap_hard_inout, xc_cpumap_t cpumap_soft_inout,
                                   uint32_t flags)
{
    return known(domid);
}

HYP_EXPORT int xc_vcpu_getaffinity(xc_interface *xch, uint32_t domid, int vcpu,
                                   xc_cpumap_t cpumap_hard, xc_cpumap_t cpumap_soft,
                                   uint32_t flags)
{
    if (cpumap_hard)
        cpumap_hard[0] = (1u << NCPUS) - 1;
    if (cpumap_soft)
        cpumap_soft[0] = (1u << NCPUS) - 1;
    return known(domid);
}

HYP_EXPORT int xc_vcpu_getinfo(xc_interface *xch, uint32_t domid, uint32_t vcpu,
                               xc_vcpuinfo_t *info)
{
    memset(info, 0, sizeof(*info));
    info->vcpu = vcpu;
    info->online = vcpu == 0;
    return known(domid);
}

HYP_EXPORT int xc_domain_node_setaffinity(xc_interface *xch, uint32_t domid,
                                          xc_nodemap_t nodemap)
{
    return known(domid);
}

HYP_EXPORT int xc_domain_node_getaffinity(xc_interface *xch, uint32_t domid,
                                          xc_nodemap_t nodemap)
{
    nodemap[0] = 1;
    return known(domid);
}

HYP_EXPORT int xc_domain_setmaxmem(xc_interface *xch, uint32_t domid, uint64_t max_memkb)
{
    return known(domid);
}

HYP_EXPORT int xc_domain_set_memmap_limit(xc_interface *xch, uint32_t domid,
                                          unsigned long map_limitkb)
{
    return known(domid);
}

HYP_EXPORT int xc_domain_set_tsc_info(xc_interface *xch, uint32_t domid, uint32_t tsc_mode,
                                      uint64_t elapsed_nsec, uint32_t gtsc_khz,
                                      uint32_t incarnation)
{
    return known(domid);
}

HYP_EXPORT int xc_domain_set_time_offset(xc_interface *xch, uint32_t domid,
                                         int32_t time_offset_seconds)
{
    return known(domid);
}

HYP_EXPORT int xc_domain_set_memory_map(xc_interface *xch, uint32_t domid,
                                        struct e820entry entries[], uint32_t nr_entries)
{
    return known(domid);
}

HYP_EXPORT int xc_domain_set_pod_target(xc_interface *xch, uint32_t domid,
                                        uint64_t target_pages, uint64_t *tot_pages,
                                        uint64_t *pod_cache_pages, uint64_t *pod_entries)
{
    if (tot_pages)
        *tot_pages = target_pages;
    if (pod_cache_pages)
        *pod_cache_pages = 0;
    if (pod_entries)
        *pod_entries = 0;
    return known(domid);
}

HYP_EXPORT int xc_domain_claim_pages(xc_interface *xch, uint32_t domid, unsigned long nr_pages)
{
    return known(domid);
}

HYP_EXPORT int xc_shadow_control(xc_interface *xch, uint32_t domid, unsigned int sop,
                                 unsigned int *mb, unsigned int mode)
{
    return known(domid);
}

HYP_EXPORT int xc_set_paging_mempool_size(xc_interface *xch, uint32_t domid, uint64_t size)
{
    return known(domid);
}

HYP_EXPORT int xc_get_paging_mempool_size(xc_interface *xch, uint32_t domid, uint64_t *size)
{
    *size = 4UL << 20;
    return known(domid);
}

HYP_EXPORT int xc_cpuid_apply_policy(xc_interface *xch, uint32_t domid, bool restore,
                                     const uint32_t *featureset, unsigned int nr_features,
                                     bool pae, bool itsc, bool nested_virt,
                                     const struct xc_xend_cpuid *xend, const struct xc_msr *msr)
{
    return known(domid);
}

HYP_EXPORT int xc_evtchn_alloc_unbound(xc_interface *xch, uint32_t dom, uint32_t remote_dom)
{
    if (known(dom) < 0)
        return -1;
    return atomic_fetch_add(&next_port, 1);
}

HYP_EXPORT int xc_hvm_param_set(xc_interface *handle, uint32_t dom, uint32_t param,
                                uint64_t value)
{
    if (param >= NPARAMS)
        return fail(EINVAL);
    params[param] = value;
    params_set[param] = true;
    return known(dom);
}

HYP_EXPORT int xc_hvm_param_get(xc_interface *handle, uint32_t dom, uint32_t param,
                                uint64_t *value)
{
    if (param >= NPARAMS)
        return fail(EINVAL);
    if (params_set[param])
        *value = params[param];
    else if (param == HVM_PARAM_STORE_PFN)
        *value = XENSTORE_PFN;
    else if (param == HVM_PARAM_CONSOLE_PFN)
        *value = CONSOLE_PFN;
    else
        *value = 0;
    return known(dom);
}

/* ---- the domain builder (libxenguest's xc_dom_* API) ---- */

HYP_EXPORT int xc_dom_loginit(xc_interface *xch)
{
    return 0;
}

/* What libxl reads of the architecture: the page size. */
static struct xc_dom_arch arch_x86_hvm = {
    .guest_type = "hvm-3.0-x86_32",
    .native_protocol = XEN_IO_PROTO_ABI_X86_32,
    .page_shift = 12,
    .sizeof_pfn = 8,
};

HYP_EXPORT struct xc_dom_image *xc_dom_allocate(xc_interface *xch, const char *cmdline,
                                                const char *features)
{
    struct xc_dom_image *dom = calloc(1, sizeof(*dom));

    if (!dom)
        return NULL;
    dom->xch = xch;
    dom->max_kernel_size = XC_DOM_DECOMPRESS_MAX;
    dom->max_module_size = XC_DOM_DECOMPRESS_MAX;
    dom->xenstore_pfn = XENSTORE_PFN;
    dom->console_pfn = CONSOLE_PFN;
    dom->arch_hooks = &arch_x86_hvm;
    return dom;
}

HYP_EXPORT void xc_dom_release(struct xc_dom_image *dom)
{
    free(dom); /* xc_dom_malloc'ed blocks are leaked: a short-lived fake */
}

HYP_EXPORT void *xc_dom_malloc(struct xc_dom_image *dom, size_t size)
{
    return calloc(1, size ? size : 1);
}

HYP_EXPORT int xc_dom_kernel_file(struct xc_dom_image *dom, const char *filename)
{
    return 0; /* the firmware is not loaded: nothing would run it */
}

HYP_EXPORT int xc_dom_kernel_mem(struct xc_dom_image *dom, const void *mem, size_t memsize)
{
    return 0;
}

HYP_EXPORT int xc_dom_module_file(struct xc_dom_image *dom, const char *filename,
                                  const char *cmdline)
{
    return 0;
}

HYP_EXPORT int xc_dom_module_mem(struct xc_dom_image *dom, const void *mem, size_t memsize,
                                 const char *cmdline)
{
    return 0;
}

HYP_EXPORT int xc_dom_boot_xen_init(struct xc_dom_image *dom, xc_interface *xch, uint32_t domid)
{
    dom->xch = xch;
    dom->guest_domid = domid;
    return known(domid);
}

HYP_EXPORT int xc_dom_parse_image(struct xc_dom_image *dom)
{
    return 0;
}

HYP_EXPORT int xc_dom_mem_init(struct xc_dom_image *dom, unsigned int mem_mb)
{
    return 0;
}

HYP_EXPORT int xc_dom_boot_mem_init(struct xc_dom_image *dom)
{
    return 0;
}

HYP_EXPORT int xc_dom_build_image(struct xc_dom_image *dom)
{
    return 0;
}

HYP_EXPORT int xc_dom_boot_image(struct xc_dom_image *dom)
{
    return 0;
}

HYP_EXPORT int xc_dom_gnttab_init(struct xc_dom_image *dom)
{
    return 0;
}

HYP_EXPORT char *xc_dom_guest_os(struct xc_dom_image *dom)
{
    static char hvm[] = "hvm";

    return hvm;
}

HYP_EXPORT bool xc_dom_feature_get(struct xc_dom_image *dom, unsigned int nr)
{
    return false;
}

HYP_EXPORT bool xc_dom_translated(const struct xc_dom_image *dom)
{
    return true; /* HVM: guest frames are what the toolstack sees */
}
