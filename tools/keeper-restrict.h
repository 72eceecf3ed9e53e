/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm_restrict, the keeper side: what libdm-keeper applies in QEMU's child
 * between fork and execve (see SECURITY.md). libdm decides the policy
 * (libdm/restrict.c) and passes it as one option:
 *
 *   --restrict=ITEM[,ITEM...]    ITEM: ns | rlimits | nnp | seccomp |
 *                                log-pipe | fsize-unlimited |
 *                                console-limit=N | owned-root=PATH (last)
 */
#ifndef LIBDM_KEEPER_RESTRICT_H
#define LIBDM_KEEPER_RESTRICT_H

#include <stdbool.h>

typedef struct keeper_restrict {
    bool ns;                     /* unshare(CLONE_NEWNS | CLONE_NEWIPC), mounts private */
    bool rlimits;                /* FSIZE 256 KiB; CORE, MSGQUEUE, LOCKS, MEMLOCK 0 */
    bool fsize_unlimited;        /* no FSIZE: writable disk images are passed */
    bool log_pipe;               /* QEMU's stdout/stderr through the keeper, capped */
    bool nnp;                    /* PR_SET_NO_NEW_PRIVS */
    bool seccomp;                /* the keeper's libseccomp filter */
    unsigned long console_limit; /* XEN_QEMU_CONSOLE_LIMIT in QEMU's env; 0: none */
    unsigned long domain_id;     /* XEN_DOMAIN_ID in QEMU's env (the xen profile's
                                  * domid, from --xen-socket-domid); 0: none */
    const char *owned_root;      /* the chroot libdm made (removed on autokill) */
} keeper_restrict;

/* Parses a --restrict= value into @r (adds to what is there): 0 or -EINVAL. */
int keeper_restrict_parse(keeper_restrict *r, const char *spec);
/* In QEMU's child right before execve(argv[0], argv, *envp): applies @r in
 * the order namespaces, rlimits, no_new_privs, seccomp. *envp may be
 * replaced by a longer copy. On failure it says why on stderr (the DM's
 * log) and returns -errno: the child must not exec. */
int keeper_restrict_apply(const keeper_restrict *r, char *const **envp);
/* Removes the chroot libdm made, if empty (the keeper's autokill cleanup,
 * before it removes the DM's directory). */
void keeper_restrict_cleanup(const keeper_restrict *r);

#endif
