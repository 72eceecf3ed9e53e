/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The blocking forms of the migration phases: each starts the phase's
 * asynchronous form (migrate.c) and waits for its completion in the DM's
 * blocking wait (libdm__dm_sync_wait: bounded by the operation's deadline;
 * other DMs' callbacks are held back meanwhile). There is one
 * implementation of each phase, the asynchronous one.
 *
 * Perform's synchronous hook and progress callback run here, outside any
 * dispatch, as they always did (they may make blocking calls, e.g. a
 * query-migrate or a migrate_cancel of their own): the async form's hook and
 * progress only note what happened and wake the wait.
 */
#include "dm-internal.h"
#include "dm-private.h"
#include "config-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs @start's phase on @dm to its end. */
static int wait_for(libdm_dm *dm, int start_result, sync_op *s)
{
    return start_result < 0 ? start_result : libdm__dm_sync_wait(dm, s);
}

int libdm_migrate_begin(libdm_dm *src, int timeout_ms)
{
    sync_op s = { 0 };

    if (!src)
        return -EINVAL;
    if (libdm__dispatch_depth(libdm__dm_ctx(src)) > 0)
        return -EDEADLK;
    return wait_for(src, libdm_migrate_begin_async(src, timeout_ms, libdm__dm_sync_done_cb, &s),
                    &s);
}

int libdm_migrate_prepare(libdm_ctx *ctx, const libdm_dm_config *config, const char *listen_uri,
                          libdm_dm **ret_dm)
{
    sync_op s = { 0 };
    libdm_dm *dm = NULL;
    int r;

    if (!ctx || !ret_dm)
        return -EINVAL;
    if (libdm__dispatch_depth(ctx) > 0)
        return -EDEADLK;
    r = libdm_migrate_prepare_async(ctx, config, listen_uri, libdm__dm_sync_done_cb, &s, &dm);
    if (r < 0)
        return r;
    r = libdm__dm_sync_wait(dm, &s);
    if (r < 0) {
        libdm_dm_release(dm);
        return r;
    }
    *ret_dm = dm;
    return 0;
}

/* ---- Perform ---- */

typedef struct perform_sync {
    sync_op s;                  /* s.done also wakes the wait for a hook or progress */
    bool done;
    int status;
    bool at_switchover;
    bool have_progress;
    libdm_migrate_progress p;
    char *p_status;
} perform_sync;

static void psync_hook(libdm_dm *src, void *user)
{
    perform_sync *ps = user;

    (void)src;
    ps->at_switchover = true;
    ps->s.done = true;
}

static void psync_progress(libdm_dm *src, const libdm_migrate_progress *p, void *user)
{
    perform_sync *ps = user;
    char *copy = strdup(p->status ? p->status : "");

    (void)src;
    if (!copy)
        return;   /* a report lost, not the migration */
    free(ps->p_status);
    ps->p_status = copy;
    ps->p = *p;
    ps->p.status = copy;
    ps->have_progress = true;
    ps->s.done = true;
}

static void psync_done(libdm_dm *src, int status, void *user)
{
    perform_sync *ps = user;

    (void)src;
    ps->done = true;
    ps->status = status;
    ps->s.done = true;
}

int libdm_migrate_perform(libdm_dm *src, const char *uri, unsigned flags,
                          libdm_switchover_fn *hook, void *hook_user,
                          libdm_progress_fn *progress, void *progress_user, int timeout_ms)
{
    perform_sync ps = { 0 };
    int r, h;

    if (!src)
        return -EINVAL;
    if (libdm__dispatch_depth(libdm__dm_ctx(src)) > 0)
        return -EDEADLK;
    r = libdm_migrate_perform_async(src, uri, flags, psync_hook, &ps,
                                    progress ? psync_progress : NULL, &ps, timeout_ms,
                                    psync_done, &ps);
    while (r >= 0 && !ps.done) {
        ps.s.done = false;
        r = libdm__dm_sync_wait(src, &ps.s);
        if (ps.have_progress) {
            ps.have_progress = false;
            progress(src, &ps.p, progress_user);
        }
        if (ps.at_switchover) {
            ps.at_switchover = false;
            h = hook ? hook(src, hook_user) : 0;
            (void)libdm_migrate_switchover_done(src, h < 0 ? h : 0);
        }
    }
    free(ps.p_status);
    return r < 0 ? r : ps.status;
}

/* ---- Finish, Confirm, Cancel, Recover, the source's state ---- */

int libdm_migrate_finish(libdm_dm *dst, int keep_paused, int timeout_ms)
{
    return libdm_migrate_finish_from(dst, LIBDM_MIGRATE_SOURCE_COMPLETED, keep_paused,
                                     timeout_ms);
}

int libdm_migrate_finish_from(libdm_dm *dst, libdm_migrate_source source, int keep_paused,
                              int timeout_ms)
{
    sync_op s = { 0 };

    if (!dst)
        return -EINVAL;
    if (libdm__dispatch_depth(libdm__dm_ctx(dst)) > 0)
        return -EDEADLK;
    return wait_for(dst, libdm_migrate_finish_async(dst, source, keep_paused, timeout_ms,
                                                    libdm__dm_sync_done_cb, &s), &s);
}

int libdm_migrate_confirm(libdm_dm *src, int success, int timeout_ms)
{
    sync_op s = { 0 };
    int r;

    if (!src)
        return -EINVAL;
    if (libdm__dispatch_depth(libdm__dm_ctx(src)) > 0)
        return -EDEADLK;
    r = libdm_migrate_confirm_async(src, success, timeout_ms, libdm__dm_sync_done_cb, &s);
    if (r == -EALREADY && success)
        return 0;   /* a stop already under way */
    return wait_for(src, r, &s);
}

int libdm_migrate_cancel(libdm_dm *src, int timeout_ms)
{
    sync_op s = { 0 };

    if (!src)
        return -EINVAL;
    if (libdm__dispatch_depth(libdm__dm_ctx(src)) > 0)
        return -EDEADLK;
    return wait_for(src, libdm_migrate_cancel_async(src, timeout_ms, libdm__dm_sync_done_cb, &s),
                    &s);
}

int libdm_migrate_recover(libdm_dm *src, int destination_has_guest, int timeout_ms)
{
    sync_op s = { 0 };
    int r;

    if (!src)
        return -EINVAL;
    if (libdm__dispatch_depth(libdm__dm_ctx(src)) > 0)
        return -EDEADLK;
    r = libdm_migrate_recover_async(src, destination_has_guest, timeout_ms,
                                    libdm__dm_sync_done_cb, &s);
    if (r == -EALREADY && destination_has_guest)
        return 0;   /* a stop already under way */
    return wait_for(src, r, &s);
}

libdm_migrate_source libdm_migrate_source_state(libdm_dm *src, int timeout_ms)
{
    sync_op s = { 0 };
    int r;

    if (!src || libdm__dispatch_depth(libdm__dm_ctx(src)) > 0)
        return LIBDM_MIGRATE_SOURCE_UNKNOWN;
    if (libdm__dm_exited(src))
        return LIBDM_MIGRATE_SOURCE_GONE;
    r = wait_for(src, libdm_migrate_source_state_async(src, timeout_ms, libdm__dm_sync_done_cb,
                                                       &s), &s);
    return r < 0 ? LIBDM_MIGRATE_SOURCE_UNKNOWN : (libdm_migrate_source)r;
}

/* The configuration document the DM was started with (issue 22, 1): the
 * file start wrote in its run directory (config-doc.c). -ENOENT: none (a
 * DM from before, or one whose configuration cannot travel). */
int libdm_dm_get_config_doc(const libdm_dm *dm, char **ret_text)
{
    char path[PATH_MAX], *buf;
    ssize_t n;
    size_t len = 0;
    int fd;

    if (!dm || !ret_text || !dm->dir)
        return -EINVAL;
    *ret_text = NULL;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dm->dir, LIBDM__CONFIG_DOC_FILE) >=
        sizeof(path))
        return -ENAMETOOLONG;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    buf = malloc(LIBDM__CONFIG_DOC_MAX + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    while (len <= LIBDM__CONFIG_DOC_MAX &&
           (n = read(fd, buf + len, LIBDM__CONFIG_DOC_MAX + 1 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = -errno;
            close(fd);
            free(buf);
            return e;
        }
        len += (size_t)n;
    }
    close(fd);
    if (len > LIBDM__CONFIG_DOC_MAX) {
        free(buf);
        return -EFBIG;
    }
    buf[len] = '\0';
    *ret_text = buf;
    return 0;
}
