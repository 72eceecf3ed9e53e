/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * xendoms: the "domains that exist" for the hypervisor fakes (tests only;
 * see tests/harness/xenhyp.c, xlhyp.c, xsshim.c). No Xen runs here: a
 * domain exists when it is dom0, listed in $XENHYP_DOMIDS (e.g. "0,2,7"),
 * or has a file "dom.<domid>" in $XENHYP_STATE (made by the fake
 * xc_domain_create of xlhyp.c, removed by its xc_domain_destroy), so that
 * every process of one test (xl, xenstored, QEMU) sees the same domains.
 */
#ifndef LIBDM_TEST_XENDOMS_H
#define LIBDM_TEST_XENDOMS_H

#include <stdint.h>

#define XENDOMS_MAX 64

/* Sorted, distinct domids, dom0 first; returns how many (at most max). */
unsigned int xendoms_list(uint32_t *ids, unsigned int max);
/* 1 if @domid exists. */
int xendoms_exists(uint32_t domid);
/* Creates a domain: *domid if nonzero, else the next from the counter in
 * $XENHYP_STATE/next (first $XENHYP_DOMID_BASE, default 1): never reused.
 * 0 or -1 with errno. */
int xendoms_create(uint32_t *domid);
/* The same, recording the domain's 16-byte handle (its UUID). */
int xendoms_create_handle(uint32_t *domid, const uint8_t handle[16]);
/* A created domain's handle: 0, or -1 if none was recorded. */
int xendoms_handle(uint32_t domid, uint8_t handle[16]);
/* Removes a created domain; -1 ESRCH if it does not exist. */
int xendoms_destroy(uint32_t domid);

#endif
