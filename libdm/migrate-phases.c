/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The migration phases' entry points (migrate.h): Begin, Prepare, Perform,
 * Finish, Confirm, Cancel, Recover and the source's state, each started on
 * the DM's operation core (migrate.c runs the steps), and the source's word.
 *
 * Ownership (seed 004): the destination DM belongs to its keeper's autokill
 * until Finish succeeded.
 */
#include "migrate-op-internal.h"
#include "config-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

/* ---- Prepare ---- */

typedef struct prepare_op {
    libdm_dm_done_fn *cb;
    void *user;
    char *uri;
    int timeout_ms;
    int status;
} prepare_op;

static void prepare_free(void *user)
{
    prepare_op *p = user;

    free(p->uri);
    free(p);
}

static void prepare_deliver(libdm_dm *dm, int status, prepare_op *p)
{
    libdm_dm_done_fn *cb = p->cb;
    void *user = p->user;

    prepare_free(p);
    if (cb)
        cb(dm, status, user);
}

static void prepare_stopped(libdm_dm *dm, int status, void *user)
{
    prepare_op *p = user;

    (void)status;
    prepare_deliver(dm, p->status, p);
}

/* migrate-incoming answered: done, or the DM goes (it holds nothing). */
static void prepare_incoming_done(libdm_dm *dm, int status, void *user)
{
    prepare_op *p = user;

    if (status >= 0) {
        prepare_deliver(dm, 0, p);
        return;
    }
    p->status = status;
    if (libdm_dm_stop_async(dm, 1, p->timeout_ms, prepare_stopped, p) < 0)
        prepare_deliver(dm, status, p);
    else
        libdm__dm_op_set_destroy(dm, prepare_free);
}

/* The DM runs, paused, autokill armed: -incoming defer -> migrate-incoming. */
static void prepare_started(libdm_dm *dm, int status, void *user)
{
    prepare_op *p = user;
    mig_op *m;

    if (status < 0) {
        prepare_deliver(dm, status, p);
        return;
    }
    (void)libdm__dm_set_migrating(dm, true);
    if (!strcmp(p->uri, "defer")) {     /* libdm_migrate_incoming_fd_async() */
        prepare_deliver(dm, 0, p);
        return;
    }
    status = libdm__mig_op_start(dm, PH_INCOMING, p->timeout_ms, prepare_incoming_done, p, &m);
    if (status < 0) {
        prepare_incoming_done(dm, status, p);
        return;
    }
    m->user_destroy = prepare_free;
    if (!(m->uri = strdup(p->uri))) {
        libdm__mig_op_end(m, -ENOMEM);
        return;
    }
    libdm__mig_incoming_begin(m);
}

int libdm_migrate_prepare_async(libdm_ctx *ctx, const libdm_dm_config *config,
                                const char *listen_uri, libdm_dm_done_fn *cb, void *user,
                                libdm_dm **ret_dm)
{
    libdm_dm_config *cfg = NULL;
    prepare_op *p;
    int r;

    if (!ctx || !config || !listen_uri || !*listen_uri || !ret_dm)
        return -EINVAL;
    p = calloc(1, sizeof(*p));
    if (!p || !(p->uri = strdup(listen_uri))) {
        free(p);
        return -ENOMEM;
    }
    *p = (prepare_op){ .cb = cb, .user = user, .uri = p->uri };
    r = libdm__config_copy(config, &cfg);
    if (r >= 0)
        r = libdm_dm_config_set_incoming(cfg, "defer");
    /* Autokill is armed before QEMU even runs: from here on the DM dies
     * with this process unless Finish releases it. */
    if (r >= 0) {
        p->timeout_ms = cfg->timeout_ms;
        r = libdm__dm_start_async(ctx, cfg, true, prepare_started, p, ret_dm);
    }
    libdm_dm_config_free(cfg);
    if (r < 0)
        prepare_free(p);
    else
        libdm__dm_op_set_destroy(*ret_dm, prepare_free);
    return r;
}

int libdm_migrate_begin_async(libdm_dm *src, int timeout_ms, libdm_dm_done_fn *cb, void *user)
{
    mig_op *m;
    int r;

    if (!src)
        return -EINVAL;
    r = libdm__dm_mig_usable(src);
    /* On Xen the guest's RAM is the hypervisor's: QMP migrate's stream
     * starts with a RAM section a Xen DM refuses to load ("RAM loading not
     * allowed on Xen"), after the destination started. A Xen domain moves
     * with its toolstack (xl migrate: libxc carries the RAM, QEMU only
     * xen-save-devices-state), so it is refused here, before anything. */
    if (r >= 0 && libdm_dm_get_profile(src) && !strcmp(libdm_dm_get_profile(src), "xen")) {
        libdm__dm_error(src, "a xen-profile DM does not migrate on its own: its guest's RAM is "
                        "the hypervisor's (xl migrate moves a Xen domain, with the DM's "
                        "device state)");
        r = -EOPNOTSUPP;
    }
    if (r >= 0)
        r = libdm__mig_op_start(src, PH_BEGIN, timeout_ms, cb, user, &m);
    if (r >= 0)
        libdm__mig_op_send(m, S_STATUS, "query-status", NULL);
    return r;
}

int libdm_migrate_perform_async(libdm_dm *src, const char *uri, unsigned flags,
                                libdm_switchover_async_fn *hook, void *hook_user,
                                libdm_progress_fn *progress, void *progress_user,
                                int timeout_ms, libdm_dm_done_fn *cb, void *user)
{
    mig_op *m;
    char *copy;
    int r;

    if (!src || !uri || !*uri || (flags & ~LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER))
        return -EINVAL;
    r = libdm__dm_mig_usable(src);
    if (r >= 0)
        r = libdm__mig_uri_usable(src, uri);
    if (r < 0)
        return r;
    copy = strdup(uri);
    if (!copy)
        return -ENOMEM;
    r = libdm__mig_op_start(src, PH_PERFORM, timeout_ms, cb, user, &m);
    if (r < 0) {
        free(copy);
        return r;
    }
    m->uri = copy;
    m->flags = flags;
    m->hook = hook;
    m->hook_user = hook_user;
    m->progress = progress;
    m->progress_user = progress_user;
    libdm__mig_op_send(m, P_STATUS, "query-status", NULL);
    return 0;
}

/* ---- Finish ---- */

/* The decision table of migrate.h: may the destination run the guest if its
 * own incoming migration completed? Only if the source cannot run it. */
static bool finish_decision(libdm_migrate_source source)
{
    switch (source) {
    case LIBDM_MIGRATE_SOURCE_COMPLETED:   /* paused in postmigrate, stays so */
    case LIBDM_MIGRATE_SOURCE_GONE:        /* holds nothing any more */
        return true;
    case LIBDM_MIGRATE_SOURCE_KEEPS:       /* runs it, or can run it */
    case LIBDM_MIGRATE_SOURCE_UNKNOWN:
    default:
        return false;
    }
}

typedef struct finish_op {
    libdm_dm_done_fn *cb;
    void *user;
} finish_op;

/* The incoming migration confirmed completed, autokill released and cont
 * sent (or not, keep paused): the release is the resume step's own, before
 * cont (dm-ops.c, seed 002), never after it. */
static void finish_done(libdm_dm *dst, int status, void *user)
{
    finish_op f = *(finish_op *)user;

    free(user);
    if (status >= 0)
        (void)libdm__dm_set_migrating(dst, false);
    if (f.cb)
        f.cb(dst, status, f.user);
}

int libdm_migrate_finish_async(libdm_dm *dst, libdm_migrate_source source, int keep_paused,
                               int timeout_ms, libdm_dm_done_fn *cb, void *user)
{
    finish_op *f;
    int r;

    if (!dst)
        return -EINVAL;
    if (!finish_decision(source)) {
        libdm__dm_error(dst, "the source says '%s': the destination must not run the guest",
                        libdm_migrate_source_to_string(source));
        return -ECANCELED;
    }
    f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    *f = (finish_op){ .cb = cb, .user = user };
    /* The same wait as the guarded resume's (dm-ops.c), then cont at once:
     * every step between completion and cont is guest-visible downtime
     * (bench/bench-migrate.c). */
    r = libdm__dm_finish_incoming_async(dst, keep_paused, timeout_ms, finish_done, f);
    if (r < 0)
        free(f);
    else
        libdm__dm_op_set_destroy(dst, free);
    return r;
}

int libdm_migrate_confirm_async(libdm_dm *src, int success, int timeout_ms,
                                libdm_dm_done_fn *cb, void *user)
{
    if (!src)
        return -EINVAL;
    (void)libdm__dm_set_migrating(src, false);
    if (success)
        return libdm_dm_stop_async(src, 0, timeout_ms, cb, user);
    return libdm__mig_op_one_look(src, PH_CONFIRM, S_STATUS, timeout_ms, cb, user, NULL);
}

int libdm_migrate_cancel_async(libdm_dm *src, int timeout_ms, libdm_dm_done_fn *cb,
                               void *user)
{
    return libdm__mig_op_one_look(src, PH_CANCEL, S_MIGSTATUS, timeout_ms, cb, user, NULL);
}

int libdm_migrate_recover_async(libdm_dm *src, int destination_has_guest, int timeout_ms,
                                libdm_dm_done_fn *cb, void *user)
{
    mig_op *m;
    int r;

    if (!src)
        return -EINVAL;
    if (!destination_has_guest)
        return libdm__mig_op_one_look(src, PH_RECOVER_RUN, S_MIGSTATUS, timeout_ms, cb, user, NULL);
    /* The destination has the guest: the source goes, unless it runs. */
    if (libdm__dm_exited(src))
        return libdm_dm_stop_async(src, 0, timeout_ms, cb, user);
    r = libdm__mig_op_one_look(src, PH_RECOVER_STOP, S_STATUS, timeout_ms, cb, user, &m);
    if (r >= 0)
        m->stop_after = true;
    return r;
}

int libdm_migrate_source_state_async(libdm_dm *src, int timeout_ms, libdm_dm_done_fn *cb,
                                     void *user)
{
    mig_op *m;
    int r;

    if (!src)
        return -EINVAL;
    r = libdm__mig_op_start(src, PH_SOURCE_STATE, timeout_ms, cb, user, &m);
    if (r < 0)
        return r;
    if (libdm__dm_exited(src))
        libdm__mig_op_end(m, LIBDM_MIGRATE_SOURCE_GONE);
    else if (libdm__dm_mig_usable(src) < 0)
        libdm__mig_op_tick(m, S_SRC_EXIT, 0);   /* no monitor: gone, or unknown at the deadline */
    else
        libdm__mig_op_send(m, S_SRC_QUERY, "query-migrate", NULL);
    return 0;
}

/* ---- the source's word ---- */

static const char *const source_names[] = {
    [LIBDM_MIGRATE_SOURCE_COMPLETED] = "completed",
    [LIBDM_MIGRATE_SOURCE_KEEPS] = "keeps",
    [LIBDM_MIGRATE_SOURCE_GONE] = "gone",
    [LIBDM_MIGRATE_SOURCE_UNKNOWN] = "unknown",
};

const char *libdm_migrate_source_to_string(libdm_migrate_source s)
{
    return (unsigned)s < sizeof(source_names) / sizeof(source_names[0]) ? source_names[s]
                                                                        : "unknown";
}

int libdm_migrate_source_from_string(const char *s, libdm_migrate_source *ret)
{
    for (size_t i = 0; s && i < sizeof(source_names) / sizeof(source_names[0]); i++)
        if (!strcmp(s, source_names[i])) {
            *ret = (libdm_migrate_source)i;
            return 0;
        }
    return -EINVAL;
}

/* ---- Confirm, Cancel, Recover, source state: the calls ---- */

/* Starts a one-look phase at @first. */
int libdm__mig_op_one_look(libdm_dm *src, mig_phase ph, mig_step first, int timeout_ms,
                           libdm_dm_done_fn *cb, void *user, mig_op **ret)
{
    mig_op *m;
    int r;

    if (!src)
        return -EINVAL;
    r = libdm__dm_mig_usable(src);
    if (r >= 0)
        r = libdm__mig_op_start(src, ph, timeout_ms, cb, user, &m);
    if (r < 0)
        return r;
    if (ret)
        *ret = m;
    libdm__mig_op_send(m, first, first == S_STATUS ? "query-status" : "query-migrate", NULL);
    return 0;
}


/* ---- the destination's half of the fd transport (issue 22, 3) ---- */

int libdm_migrate_incoming_fd_async(libdm_dm *dst, int fd, int timeout_ms,
                                    libdm_dm_done_fn *cb, void *user)
{
    mig_op *m;
    int copy, r;

    if (!dst || fd < 0)
        return -EINVAL;
    copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (copy < 0)
        return -errno;
    r = libdm__mig_op_start(dst, PH_INCOMING, timeout_ms, cb, user, &m);
    if (r < 0) {
        libdm__close(&copy);
        return r;
    }
    m->fd = copy;       /* closed once getfd answered (or with the phase) */
    libdm__mig_incoming_begin(m);
    return 0;
}
