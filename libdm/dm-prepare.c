/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a start does before its keeper runs: the configuration checked and
 * planned into a command line, the claim on the DM's name (and domain),
 * the clearing of a dead predecessor's leftovers under it, and the undoing
 * of a start that failed before its keeper ran. Used by dm-start.c; below
 * it, above dm-end.c.
 */
#include "dm-private.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The domain the DM is claimed for (libxl's per-domain paths): 0 if none. */
static uint32_t xen_domid(const libdm_dm *dm)
{
    return !strcmp(dm->profile, "xen") ? dm->domid : 0;
}

/* The name is ours (owner.lock held): what an earlier DM of that name left
 * must provably be dead before it is cleared. An unreadable record is not
 * proof (defect: a truncated or planted record once meant "free" and a
 * second QEMU was started beside a live one). */
static int clear_leftovers(libdm_dm *dm, libdm__store *store)
{
    libdm__record rec;
    int r = libdm__store_get(store, dm->name, &rec);

    if (r == -ENOENT)
        return 0;
    if (r < 0) {
        libdm__dm_error(dm, "cannot tell whether the name is free: its record is unreadable (%s); "
                 "inspect %s and remove it by hand", strerror(-r), dm->rd->path);
        return -EEXIST;
    }
    if (libdm__dm_record_alive(&rec)) {
        /* Only a DM started before names were claimed by lock gets here. */
        libdm__dm_error(dm, "a device model of that name is already running (pid %d)", rec.pid);
        libdm__record_clear(&rec);
        return -EEXIST;
    }
    (void)libdm__store_del(store, dm->name);
    /* netdev.c: its taps (a xen DM's only under that domain's claim) */
    libdm__rundir_remove_taps(dm->rd, dm->ctx, rec.profile, rec.domid, rec.nics);
    /* The dead DM's per-domain files go only under that domain's claim. */
    libdm__dm_remove_own_chroot(dm->rd, rec.profile, rec.domid);
    if (rec.profile && !strcmp(rec.profile, "xen")) {
        libdm__rundir_remove_xen_sockets(dm->rd, LIBDM__XEN_RUN_DIR, rec.domid);
        if (rec.domid != xen_domid(dm))
            libdm__rundir_drop_domid(dm->rd, rec.domid);
    }
    libdm__record_clear(&rec);
    libdm__rundir_remove(dm->rd, LIBDM__RD_REMOVE_LEFTOVERS);
    return 0;
}

/* Claims the name and its run directory. Refusals leave everything as it
 * was: nothing is removed but what this call created. */
int libdm__dm_claim_name(libdm_dm *dm, libdm__store *store)
{
    const char *root = libdm__store_run_root(store);
    char *why = NULL;
    int r;

    if (!root)
        return -ENOENT;
    r = libdm__rundir_claim(root, dm->name, &dm->rd, &why);
    if (r < 0) {
        libdm__dm_error(dm, "%s", why ? why : strerror(-r));
        free(why);
        return r;
    }
    /* One DM per domain, claimed before anything of it (its socket, its
     * chroot, a dead predecessor's files) is touched. */
    r = libdm__rundir_hold_domid(dm->rd, xen_domid(dm), &why);
    if (r < 0) {
        libdm__dm_error(dm, "%s", why ? why : strerror(-r));
        free(why);
        return r;
    }
    r = clear_leftovers(dm, store);
    if (r >= 0)
        r = libdm__dm_set_paths(dm, true);
    return r;
}

/* Undoes a start that failed before its keeper ran: only what it made. */
void libdm__dm_unclaim(libdm_dm *dm)
{
    libdm__store *store;

    if (!dm->rd)
        return;
    /* A record write that failed half-way leaves the store's own files
     * (its lock, a temporary): under our claim, whatever is recorded for
     * the name is ours to remove. */
    if (dm->rd->owner_fd >= 0 && libdm__dm_store(dm, &store) >= 0)
        (void)libdm__store_del(store, dm->name);
    if (dm->confinement) /* the chroot restrict.c made, if any */
        libdm__dm_remove_own_chroot(dm->rd, dm->profile, dm->domid);
    libdm__rundir_remove(dm->rd, LIBDM__RD_REMOVE_MADE);
}

int libdm__dm_init_from_config(libdm_dm *dm, const libdm_dm_config *cfg)
{
    dm->name = strdup(cfg->name);
    dm->profile = strdup(cfg->adopt_argv ? LIBDM__PROFILE_XL
                                         : libdm__profile_to_string(cfg->profile));
    dm->machine = strdup(libdm__config_machine(cfg));
    dm->memory_mb = libdm__config_memory_mb(cfg);
    dm->domid = cfg->domid;
    dm->timeout_ms = cfg->timeout_ms;
    dm->incoming = cfg->incoming != NULL;
    dm->created_ms = (int64_t)time(NULL) * 1000;
    dm->state = LIBDM_DM_SPAWNING;
    return dm->name && dm->profile && dm->machine ? 0 : -ENOMEM;
}

/* A configuration that cannot become a command line fails here, before
 * anything is created. */
int libdm__dm_check_config(libdm_ctx *ctx, const libdm_dm_config *cfg)
{
    char **argv = NULL;
    int r;

    if (!cfg || !cfg->name) {
        LIBDM__ERROR(ctx, "a device model needs a name");
        return -EINVAL;
    }
    /* A restricted one is resolved first (restrict.c says what is wrong). */
    if (cfg->restricted)
        return 0;
    r = libdm_dm_config_build_argv(cfg, LIBDM__KEEPER_QMP_FD, &argv);
    if (r < 0)
        LIBDM__ERROR(ctx, "%s: invalid configuration: cannot build the command line: %s",
                     cfg->name, strerror(-r));
    libdm_strv_free(argv);
    return r;
}

/* dm_restrict resolved (runas, chroot, seccomp: restrict.c), then the
 * command line QEMU really gets. */
int libdm__dm_plan_command(libdm_dm *dm, const libdm_dm_config *cfg,
                           libdm__restrict_plan *plan, char ***ret_argv)
{
    int r = libdm__restrict_prepare(dm->ctx, cfg, dm->dir, plan);

    if (r < 0)
        return r;
    dm->confinement = plan->confinement;
    plan->confinement = NULL;
    r = libdm__devices_prepare(dm->ctx, plan->cfg, &dm->nics); /* devices-run.c */
    if (r < 0)
        return r;
    r = libdm_dm_config_build_argv(plan->cfg, LIBDM__KEEPER_QMP_FD, ret_argv);
    if (r < 0)
        libdm__dm_error(dm, "invalid configuration: cannot build the command line: %s", strerror(-r));
    return r;
}
