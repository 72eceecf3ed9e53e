/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The store calls of issue 19, asynchronous: list (incremental: one record
 * read per dispatch, so a thousand records never block the loop), forget
 * and monitor_holder, each a job (job.c) of steps of one or two file
 * operations run from the loop, never inside the call. The blocking forms
 * run the same steps inline (they never needed the loop: they keep
 * working from inside a callback).
 */
#include "dm-private.h"
#include "job-internal.h"
#include "store-internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* ---- list ---- */

typedef struct list_job {
    libdm__job job;
    libdm_dm_list_fn *cb;
    void *user;
    libdm_destroy_fn *destroy;
    libdm__store *store;
    bool listed;
    char **names;       /* the store's and the run root's, merged */
    size_t n, next;
    libdm_dm_info *infos;
    size_t count;
} list_job;

static int info_from_record(const libdm__record *rec, libdm_dm_info *info)
{
    *info = (libdm_dm_info){
        .name = strdup(rec->name),
        .domid = rec->domid,
        .pid = rec->pid,
        .alive = rec->pid > 0 && libdm__proc_start_time(rec->pid) == rec->pid_start,
        .qmp_socket = strdup(rec->qmp_socket ? rec->qmp_socket : ""),
        .profile = strdup(rec->profile ? rec->profile : ""),
        .state = strdup(rec->state ? rec->state : ""),
        .exit_status = rec->exit_status,
    };
    return info->name && info->qmp_socket && info->profile && info->state ? 0 : -ENOMEM;
}

/* A name without a readable record (@err: -ENOENT none, else why it cannot
 * be read): listed with what its run directory proves, if it has one (a
 * missing record without a directory is a record removed meanwhile). */
static int info_from_rundir(libdm__store *store, const char *name, int err,
                            libdm_dm_info *info, bool *ret_listed)
{
    const char *root = libdm__store_run_root(store);
    libdm__rundir *rd = NULL;
    int r, pid = 0, held = 0;
    uint32_t domid = 0;

    *ret_listed = false;
    r = root ? libdm__rundir_open(root, name, &rd, NULL) : -ENOENT;
    if (r < 0 && err == -ENOENT)
        return 0;
    if (rd) {
        held = libdm__rundir_claim_holder(rd, &pid);
        domid = libdm__rundir_claimed_domid(rd);
        libdm__rundir_free(rd);
    }
    *info = (libdm_dm_info){
        .name = strdup(name),
        .domid = domid,
        .alive = held > 0,
        .qmp_socket = strdup(""),
        .profile = strdup(""),
        .state = strdup(err == -ENOENT ? "no-record" : "unreadable"),
        .exit_status = -1,
        .record_error = err,
        .claimed = held > 0,
        .keeper_pid = pid,
    };
    *ret_listed = true;
    return info->name && info->qmp_socket && info->profile && info->state ? 0 : -ENOMEM;
}

/* The store's names and the run root's (a run directory may have no
 * record, or one the store cannot list), sorted, each once. */
static int list_names(libdm__store *store, char ***ret_names, size_t *ret_count)
{
    const char *root = libdm__store_run_root(store);
    char **names = NULL, **dirs = NULL, **all;
    size_t n = 0, nd = 0;
    int r = libdm__store_list(store, &names, &n);

    if (r < 0)
        return r;
    if (root && (r = libdm__rundir_list(root, &dirs, &nd)) < 0 && r != -ENOENT) {
        libdm__store_names_free(names);
        return r;
    }
    all = realloc(names, (n + nd + 1) * sizeof(*all));
    if (!all) {
        libdm__store_names_free(names);
        for (size_t i = 0; i < nd; i++)
            free(dirs[i]);
        free(dirs);
        return -ENOMEM;
    }
    if (nd) /* dirs is NULL when there are none */
        memcpy(all + n, dirs, nd * sizeof(*dirs));
    free(dirs);
    return libdm__store_names_finish(all, n + nd, ret_names, ret_count);
}

void libdm_dm_info_free(libdm_dm_info *infos, size_t count)
{
    if (!infos)
        return;
    for (size_t i = 0; i < count; i++) {
        free(infos[i].name);
        free(infos[i].qmp_socket);
        free(infos[i].profile);
        free(infos[i].state);
    }
    free(infos);
}

/* The first step reads the store's directory (its names); each later one
 * reads one record (and the /proc entry that says whether it lives). */
static int list_step(libdm__job *job)
{
    list_job *l = (list_job *)job;
    libdm__record rec;
    int r;

    if (!l->listed) {
        r = libdm__ctx_store(job->ctx, &l->store);
        if (r >= 0)
            r = list_names(l->store, &l->names, &l->n);
        if (r < 0)
            return r;
        l->listed = true;
        l->infos = calloc(l->n ? l->n : 1, sizeof(*l->infos));
        return l->infos ? (l->n > 0) : -ENOMEM;
    }
    r = libdm__store_get(l->store, l->names[l->next], &rec);
    if (r >= 0) {
        r = info_from_record(&rec, &l->infos[l->count++]);
        libdm__record_clear(&rec);
    } else if (r != -ENOMEM) {
        bool listed;

        r = info_from_rundir(l->store, l->names[l->next], r, &l->infos[l->count], &listed);
        l->count += listed;
    }
    l->next++;
    if (r < 0)
        return r;
    return l->next < l->n;
}

static void list_job_free(list_job *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    libdm_dm_info_free(l->infos, l->count);
    free(l);
}

static void list_done(libdm__job *job, int status)
{
    list_job *l = (list_job *)job;
    libdm_dm_info *infos = status < 0 ? NULL : l->infos;
    size_t count = status < 0 ? 0 : l->count;

    if (status >= 0)
        l->infos = NULL, l->count = 0; /* the callback's now */
    l->cb(job->ctx, status < 0 ? status : 0, infos, count, l->user);
    list_job_free(l);
}

static void list_drop(libdm__job *job)
{
    list_job *l = (list_job *)job;

    if (l->destroy)
        l->destroy(l->user);
    list_job_free(l);
}

int libdm_dm_list_async(libdm_ctx *ctx, libdm_dm_list_fn *cb, void *userdata,
                        libdm_destroy_fn *destroy)
{
    list_job *l;
    int r;

    if (!ctx || !cb)
        return -EINVAL;
    l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->cb = cb;
    l->user = userdata;
    l->destroy = destroy;
    r = libdm__job_start(ctx, &l->job, list_step, list_done, list_drop);
    if (r < 0)
        free(l);
    return r;
}

int libdm_dm_list(libdm_ctx *ctx, libdm_dm_info **ret_infos, size_t *ret_count)
{
    list_job l = { 0 };
    int r;

    if (!ctx || !ret_infos || !ret_count)
        return -EINVAL;
    r = libdm__job_run_inline(ctx, &l.job, list_step);
    if (r >= 0) {
        *ret_infos = l.infos;
        *ret_count = l.count;
        l.infos = NULL;
        l.count = 0;
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.names[i]);
    free(l.names);
    libdm_dm_info_free(l.infos, l.count);
    return r < 0 ? r : 0;
}

/* ---- forget ---- */

typedef enum {
    FORGET_RECORD,      /* read the record: alive? */
    FORGET_OPEN,        /* open its run directory */
    FORGET_RECLAIM,     /* take its claim: nobody holds the name */
    FORGET_DEL,         /* remove the record */
    FORGET_TAPS,        /* its taps (netdev.c) */
    FORGET_CHROOT,      /* libdm's own chroot */
    FORGET_XEN,         /* xen: libxl's sockets of its domain */
    FORGET_FILES,       /* the directory, a file or two per step */
    FORGET_DOMID,       /* the domain's claim */
} forget_step;

typedef struct forget_job {
    libdm__job job;
    libdm_ctx_done_fn *cb;
    void *user;
    libdm_destroy_fn *destroy;
    char *name;
    forget_step step;
    unsigned rd_step;
    libdm__store *store;
    libdm__record rec;
    int unreadable;     /* -errno: the record exists but cannot be read */
    libdm__rundir *rd;
} forget_job;

/* Cleans up after a DM that is gone: only if nobody holds its name (a
 * keeper alive means a DM alive, or a start in progress). */
static int forget_step_run(libdm__job *job)
{
    forget_job *f = (forget_job *)job;
    const char *root;
    int r;

    switch (f->step) {
    case FORGET_RECORD:
        r = libdm__ctx_store(job->ctx, &f->store);
        if (r >= 0)
            r = libdm__store_get(f->store, f->name, &f->rec);
        if (r == -ENOENT) { /* no record: maybe a run directory a killed starter left */
            libdm__record_init(&f->rec);
        } else if (r < 0 && r != -ENOMEM && libdm__record_check_name(f->name) == 0) {
            /* Unreadable: it proves nothing, the name's claim does (a
             * keeper holds it for its DM's whole life). */
            libdm__record_init(&f->rec);
            f->unreadable = r;
        } else if (r < 0) {
            return r;
        }
        else if (libdm__dm_record_alive(&f->rec))
            return -EBUSY;
        f->step = FORGET_OPEN;
        return 1;
    case FORGET_OPEN:
        root = libdm__store_run_root(f->store);
        r = root ? libdm__rundir_open(root, f->name, &f->rd, NULL) : -ENOENT;
        if (r == -ENOENT) /* a record without directory (xenstore) */
            return f->unreadable ? f->unreadable : libdm__store_del(f->store, f->name);
        if (r < 0)
            return r;
        f->step = FORGET_RECLAIM;
        return 1;
    case FORGET_RECLAIM:
        r = libdm__rundir_reclaim(f->rd);
        if (r < 0)
            return r == -EAGAIN ? -EBUSY : r;
        if (!f->rec.name) {
            /* No record to say it: the domain the claim holds is proof. */
            uint32_t domid = libdm__rundir_claimed_domid(f->rd);

            if (domid && !(f->rec.profile = strdup("xen")))
                return -ENOMEM;
            f->rec.domid = domid;
        }
        f->step = FORGET_DEL;
        return 1;
    case FORGET_DEL:
        /* Another writer holds the record's lock: this step again (the
         * job's retry), never a forget that leaves the record behind. */
        if (libdm__store_del(f->store, f->name) == -EAGAIN)
            return -EAGAIN;
        if (f->unreadable) /* a directory planted as the record: if empty */
            libdm__rundir_remove_subdir(f->rd, "record");
        f->step = FORGET_TAPS;
        return 1;
    case FORGET_TAPS:
        libdm__rundir_remove_taps(f->rd, job->ctx, f->rec.profile, f->rec.domid, f->rec.nics);
        f->step = FORGET_CHROOT;
        return 1;
    case FORGET_CHROOT:
        libdm__dm_remove_own_chroot(f->rd, f->rec.profile, f->rec.domid);
        f->step = FORGET_XEN;
        return 1;
    case FORGET_XEN:
        if (f->rec.profile && !strcmp(f->rec.profile, "xen"))
            libdm__rundir_remove_xen_sockets(f->rd, LIBDM__XEN_RUN_DIR, f->rec.domid);
        f->step = FORGET_FILES;
        return 1;
    case FORGET_FILES:
        if (libdm__rundir_remove_step(f->rd, &f->rd_step) > 0)
            return 1;
        f->step = FORGET_DOMID;
        return 1;
    case FORGET_DOMID:
        libdm__rundir_drop_domid(f->rd, f->rec.domid);
        return 0;
    }
    return -EINVAL;
}

static void forget_fini(forget_job *f)
{
    libdm__record_clear(&f->rec);
    libdm__rundir_free(f->rd);
    free(f->name);
}

static void forget_done(libdm__job *job, int status)
{
    forget_job *f = (forget_job *)job;

    f->cb(job->ctx, status, f->user);
    forget_fini(f);
    free(f);
}

static void forget_drop(libdm__job *job)
{
    forget_job *f = (forget_job *)job;

    if (f->destroy)
        f->destroy(f->user);
    forget_fini(f);
    free(f);
}

static forget_job *forget_new(const char *name)
{
    forget_job *f = calloc(1, sizeof(*f));

    if (f) {
        libdm__record_init(&f->rec);
        f->name = strdup(name);
    }
    if (f && !f->name) {
        free(f);
        return NULL;
    }
    return f;
}

int libdm_dm_forget_async(libdm_ctx *ctx, const char *name, libdm_ctx_done_fn *cb,
                          void *userdata, libdm_destroy_fn *destroy)
{
    forget_job *f;
    int r;

    if (!ctx || !name || !cb)
        return -EINVAL;
    f = forget_new(name);
    if (!f)
        return -ENOMEM;
    f->cb = cb;
    f->user = userdata;
    f->destroy = destroy;
    r = libdm__job_start(ctx, &f->job, forget_step_run, forget_done, forget_drop);
    if (r < 0) {
        forget_fini(f);
        free(f);
    }
    return r;
}

int libdm_dm_forget(libdm_ctx *ctx, const char *name)
{
    forget_job *f;
    int r;

    if (!ctx || !name)
        return -EINVAL;
    f = forget_new(name);
    if (!f)
        return -ENOMEM;
    r = libdm__job_run_inline(ctx, &f->job, forget_step_run);
    forget_fini(f);
    free(f);
    return r;
}

int libdm_dm_kill_keeper(libdm_ctx *ctx, const char *name)
{
    libdm__store *store;
    libdm__rundir *rd = NULL;
    int r;

    if (!ctx || !name)
        return -EINVAL;
    r = libdm__ctx_store(ctx, &store);
    if (r >= 0)
        r = libdm__store_run_root(store)
                ? libdm__rundir_open(libdm__store_run_root(store), name, &rd, NULL)
                : -ENOENT;
    if (r >= 0)
        r = libdm__rundir_signal_holder(rd, SIGKILL);
    libdm__rundir_free(rd);
    return r == -ENOENT ? -ESRCH : r;
}

/* ---- who holds a monitor ---- */

typedef struct holder_job {
    libdm__job job;
    libdm_dm_holder_fn *cb;
    void *user;
    libdm_destroy_fn *destroy;
    char *name;
    unsigned step;
    libdm__rundir *rd;
    int held, pid;
    char *note, *command;
} holder_job;

/* Opens the run directory; takes the lock for a moment (how to know it is
 * free); reads the holder's command line. The result (1 held, 0 free) is
 * h->held once the steps end with 0. */
static int holder_step(libdm__job *job)
{
    holder_job *h = (holder_job *)job;
    libdm__store *store;
    int r;

    switch (h->step++) {
    case 0:
        r = libdm__ctx_store(job->ctx, &store);
        if (r >= 0)
            r = libdm__store_run_root(store)
                    ? libdm__rundir_open(libdm__store_run_root(store), h->name, &h->rd, NULL)
                    : -ENOENT;
        return r < 0 ? r : 1;
    case 1:
        r = libdm__rundir_lock_monitor(h->rd, NULL, &h->pid, &h->note);
        if (r == 0) {
            libdm__rundir_unlock_monitor(h->rd);
            return 0;
        }
        if (r != -EAGAIN)
            return r;
        h->held = 1;
        return h->pid > 0;
    default:
        h->command = libdm__proc_cmdline(h->pid);
        return 0;
    }
}

static void holder_fini(holder_job *h)
{
    libdm__rundir_free(h->rd);
    free(h->note);
    free(h->command);
    free(h->name);
    free(h);
}

static void holder_done(libdm__job *job, int status)
{
    holder_job *h = (holder_job *)job;

    status = status < 0 ? status : h->held;
    h->cb(job->ctx, status, status > 0 ? h->pid : 0, status > 0 ? h->note : NULL,
          status > 0 ? h->command : NULL, h->user);
    holder_fini(h);
}

static void holder_drop(libdm__job *job)
{
    holder_job *h = (holder_job *)job;

    if (h->destroy)
        h->destroy(h->user);
    holder_fini(h);
}

static holder_job *holder_new(const char *name)
{
    holder_job *h = calloc(1, sizeof(*h));

    if (h && !(h->name = strdup(name))) {
        free(h);
        return NULL;
    }
    return h;
}

int libdm_dm_monitor_holder_async(libdm_ctx *ctx, const char *name, libdm_dm_holder_fn *cb,
                                  void *userdata, libdm_destroy_fn *destroy)
{
    holder_job *h;
    int r;

    if (!ctx || !name || !cb)
        return -EINVAL;
    h = holder_new(name);
    if (!h)
        return -ENOMEM;
    h->cb = cb;
    h->user = userdata;
    h->destroy = destroy;
    r = libdm__job_start(ctx, &h->job, holder_step, holder_done, holder_drop);
    if (r < 0)
        holder_fini(h);
    return r;
}

int libdm_dm_monitor_holder(libdm_ctx *ctx, const char *name, int *ret_pid, char **ret_note,
                            char **ret_command)
{
    holder_job *h;
    int r;

    if (!ctx || !name || !ret_pid)
        return -EINVAL;
    h = holder_new(name);
    if (!h)
        return -ENOMEM;
    r = libdm__job_run_inline(ctx, &h->job, holder_step);
    r = r < 0 ? r : h->held;
    if (r > 0) {
        *ret_pid = h->pid;
        if (ret_note) {
            *ret_note = h->note;
            h->note = NULL;
        }
        if (ret_command) {
            *ret_command = h->command;
            h->command = NULL;
        }
    }
    holder_fini(h);
    return r;
}
