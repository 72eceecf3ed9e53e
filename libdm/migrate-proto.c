/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol between two hosts (migrate.h): the libdm_migration object,
 * its settings and results, the messages and the decision tables. The
 * sides live in migrate-send.c, migrate-recv.c (with migrate-query.c) and
 * migrate-recover.c.
 *
 * Lifetime: the caller's references (refs) and the operations in flight
 * (pending: each libdm call whose callback is still due holds one) keep
 * the object. The caller dropping its last reference before the end
 * abandons the migration: the channel closes at once, every callback still
 * due only drops its hold, the last one frees.
 */
#include "migrate-internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

static void on_deadline(libdm_ctx *ctx, libdm__timer *t, void *user);
static void on_end(libdm_ctx *ctx, libdm__timer *t, void *user);

int libdm__mig_new(libdm_ctx *ctx, mig_role role, const libdm__mig_ops *ops,
                   libdm_migration **ret)
{
    libdm_migration *m;

    if (!ctx || !ret)
        return -EINVAL;
    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->refs = 1;
    m->listen_fd = -1;
    m->role = role;
    m->ops = ops;
    m->ctx = ctx;
    m->timeout_ms = 10000;
    m->outcome = LIBDM_MIGRATE_OUTCOME_FAILED;
    m->source = LIBDM_MIGRATE_SOURCE_UNKNOWN;
    m->started_at = libdm_now_ms();
    libdm__timer_init(&m->deadline, on_deadline, m);
    libdm__timer_init(&m->end_timer, on_end, m);
    libdm__timer_init(&m->step, NULL, m);
    *ret = m;
    return 0;
}

static void mig_free(libdm_migration *m)
{
    libdm__timer_disarm(m->ctx, &m->deadline);
    libdm__timer_disarm(m->ctx, &m->end_timer);
    libdm__timer_disarm(m->ctx, &m->step);
    m->slot = libdm_qmp_slot_free(m->slot);
    m->ch = libdm__mchan_free(m->ch);
    if (m->role == ROLE_SEND)
        m->dm = NULL;
    if (m->ops->cleanup)
        m->ops->cleanup(m);
    libdm_dm_release(m->dm);
    if (m->destroy)
        m->destroy(m->user);
    free(m->uri_host);
    free(m->machine);
    free(m->name_opt);
    free(m->tcp_host);
    free(m->qemu);
    free(m->why);
    free(m->runstate);
    free(m->record_error);
    libdm_json_free(m->doc);
    libdm_json_free(m->finish_msg);
    free(m->uri);
    free(m->name);
    free(m->sock_path);
    free(m->peer_id);
    free(m->guest);
    free(m->detail);
    free(m->query_rs);
    free(m->query_st);
    free(m);
}

/* ---- operations in flight ---- */

void libdm__mig_hold(libdm_migration *m)
{
    m->pending++;
}

bool libdm__mig_put(libdm_migration *m)
{
    m->pending--;
    if (m->refs > 0)
        return false;
    if (m->pending == 0)
        mig_free(m);
    return true;
}

void libdm__mig_op_destroy(void *user)
{
    (void)libdm__mig_put(user);
}

libdm_migration *libdm_migration_ref(libdm_migration *m)
{
    if (m)
        m->refs++;
    return m;
}

libdm_migration *libdm_migration_unref(libdm_migration *m)
{
    if (!m || --m->refs > 0)
        return NULL;
    if (m->in_cb) {
        m->refs = 1;     /* freed once the callback returned */
        m->free_after_cb = true;
        return NULL;
    }
    if (m->done) {
        if (m->pending == 0)
            mig_free(m);
        return NULL;
    }
    /* Abandoned: the peer sees the channel close. */
    libdm__timer_disarm(m->ctx, &m->step);
    libdm__timer_disarm(m->ctx, &m->deadline);
    libdm__timer_disarm(m->ctx, &m->end_timer);
    m->slot = libdm_qmp_slot_free(m->slot);
    m->ch = libdm__mchan_free(m->ch);
    m->done = true;
    if (m->started && m->ops->abandon)
        m->ops->abandon(m);
    if (m->pending == 0)
        mig_free(m);
    return NULL;
}

/* ---- settings ---- */

#define SETTING(m) do { if (!(m)) return -EINVAL; if ((m)->started) return -EBUSY; } while (0)

static int set_str(char **slot, const char *v)
{
    char *c = v ? strdup(v) : NULL;

    if (v && !c)
        return -ENOMEM;
    free(*slot);
    *slot = c;
    return 0;
}

int libdm_migration_set_timeout_ms(libdm_migration *m, int timeout_ms)
{
    SETTING(m);
    m->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
    return 0;
}

int libdm_migration_set_flags(libdm_migration *m, unsigned flags)
{
    SETTING(m);
    if (flags & ~(LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER | LIBDM_MIGRATION_KEEP_PAUSED |
                  LIBDM_MIGRATION_DESTINATION_GONE))
        return -EINVAL;
    m->flags = flags;
    return 0;
}

int libdm_migration_set_uri_host(libdm_migration *m, const char *host)
{
    SETTING(m);
    return set_str(&m->uri_host, host);
}

int libdm_migration_set_machine(libdm_migration *m, const char *machine)
{
    SETTING(m);
    return set_str(&m->machine, machine);
}

int libdm_migration_set_memory_mb(libdm_migration *m, uint64_t mb)
{
    SETTING(m);
    m->memory_mb = mb;
    return 0;
}

int libdm_migration_set_name(libdm_migration *m, const char *name)
{
    SETTING(m);
    return set_str(&m->name_opt, name);
}

int libdm_migration_set_listen_tcp(libdm_migration *m, const char *tcp_host)
{
    SETTING(m);
    return set_str(&m->tcp_host, tcp_host);
}

int libdm_migration_set_qemu_path(libdm_migration *m, const char *path)
{
    SETTING(m);
    return set_str(&m->qemu, path);
}

int libdm_migration_set_hook(libdm_migration *m, libdm_migration_hook_fn *fn, void *userdata)
{
    SETTING(m);
    m->hook = fn;
    m->hook_user = userdata;
    return 0;
}

int libdm_migration_set_progress(libdm_migration *m, libdm_progress_fn *fn, void *userdata)
{
    SETTING(m);
    m->progress = fn;
    m->progress_user = userdata;
    return 0;
}

int libdm_migration_set_notify(libdm_migration *m, libdm_migration_notify_fn *fn,
                               void *userdata)
{
    if (!m)
        return -EINVAL;
    m->notify = fn;
    m->notify_user = userdata;
    return 0;
}

/* ---- running ---- */

int libdm_migration_start(libdm_migration *m, int in_fd, int out_fd,
                          libdm_migration_done_fn *cb, void *userdata,
                          libdm_destroy_fn *destroy)
{
    int r = 0;

    if (!m || m->started) {
        r = m ? -EBUSY : -EINVAL;
    } else if (in_fd >= 0 || out_fd >= 0) {
        r = libdm__mchan_new(m->ctx, in_fd, out_fd, m->ops->on_msg, m, &m->ch);
    } else if (m->role != ROLE_RECOVER || !(m->flags & LIBDM_MIGRATION_DESTINATION_GONE)) {
        r = -EBADF;
    }
    if (r < 0) {
        if (in_fd >= 0)
            libdm__close(&in_fd);
        if (out_fd >= 0 && out_fd != in_fd)
            libdm__close(&out_fd);
        return r;
    }
    m->started = true;
    m->cb = cb;
    m->user = userdata;
    m->destroy = destroy;
    r = m->ops->start(m);
    if (r < 0) {
        m->destroy = NULL;   /* the caller keeps its userdata */
        m->ch = libdm__mchan_free(m->ch);
        m->started = false;
    }
    return r;
}

static void run_done(libdm_migration *m, int status, void *user)
{
    (void)m;
    (void)status;
    (void)user;
}

static bool is_done(void *arg)
{
    return ((libdm_migration *)arg)->done;
}

int libdm_migration_run(libdm_migration *m, int in_fd, int out_fd)
{
    int r;

    if (!m)
        return -EINVAL;
    if (libdm__dispatch_depth(m->ctx) > 0) {
        libdm__close(&in_fd);
        if (out_fd != in_fd)
            libdm__close(&out_fd);
        return -EDEADLK;
    }
    r = libdm_migration_start(m, in_fd, out_fd, run_done, NULL, NULL);
    if (r < 0)
        return r;
    r = libdm__wait(m->ctx, is_done, m, UINT64_MAX);
    return r < 0 ? r : m->status;
}

int libdm_migration_is_done(const libdm_migration *m)
{
    return m && m->done;
}

static void on_end(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_migration *m = user;

    (void)t;
    if (!libdm__mchan_flushed(m->ch) && libdm_now_ms() < m->end_by) {
        (void)libdm__timer_arm(ctx, &m->end_timer, libdm_now_ms() + 5);
        return;
    }
    m->done = true;
    m->ch = libdm__mchan_free(m->ch);
    libdm__timer_disarm(ctx, &m->deadline);
    if (!m->cb)
        return;
    m->in_cb = true;
    m->cb(m, m->status, m->user);
    m->in_cb = false;
    if (m->free_after_cb) {
        m->free_after_cb = false;
        m->refs = 1;
        libdm_migration_unref(m);
    }
}

void libdm__mig_end(libdm_migration *m, int status)
{
    if (m->ending)
        return;
    m->ending = true;
    m->status = status;
    m->end_by = libdm_now_ms() + 1000;
    libdm__timer_disarm(m->ctx, &m->deadline);
    if (m->ch)
        libdm__mchan_disarm(m->ch);
    (void)libdm__defer(m->ctx, &m->end_timer);
}

void libdm__mig_notify(libdm_migration *m, const char *what)
{
    if (m->notify)
        m->notify(m, what, m->notify_user);
}

static void on_deadline(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_migration *m = user;

    (void)ctx;
    (void)t;
    if (m->ch)
        libdm__mchan_disarm(m->ch);
    m->ops->on_deadline(m);
}

int libdm__mig_recv(libdm_migration *m, uint64_t deadline)
{
    int r = m->ch ? libdm__mchan_recv(m->ch) : -ECONNRESET;

    if (r == 0)
        r = libdm__timer_arm(m->ctx, &m->deadline, deadline);
    return r;
}

int libdm__mig_fail(libdm_migration *m, const char *phase, int err, const char *fmt, ...)
{
    va_list ap;

    if (m->failed_in)
        return err;
    m->failed_in = phase;
    m->err = err;
    if (!fmt)
        return err;
    va_start(ap, fmt);
    if (vasprintf(&m->why, fmt, ap) < 0)
        m->why = NULL;
    va_end(ap);
    return err;
}

uint64_t libdm__mig_deadline_in(int ms)
{
    return libdm_now_ms() + (uint64_t)(ms > 0 ? ms : 0);
}

int libdm__mig_remaining(uint64_t deadline)
{
    uint64_t now = libdm_now_ms();

    if (now >= deadline)
        return 1;
    return deadline - now > INT32_MAX ? INT32_MAX : (int)(deadline - now);
}

uint64_t libdm__mig_obey_margin_ms(int64_t timeout_ms)
{
    uint64_t m = (uint64_t)timeout_ms / 4;

    return m > 2000 ? 2000 : m;
}

uint64_t libdm__mig_realtime_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void libdm__mig_send_error(libdm_migration *m)
{
    libdm_json *o = libdm__mig_msg("error");
    const char *text = m->why ? m->why : strerror(-m->err);

    if (m->ch && o && libdm__mig_add_str(o, "message", text))
        (void)libdm__mchan_send(m->ch, o);
    else
        libdm_json_free(o);
    libdm__mig_notify(m, "error");
    libdm__mig_end(m, m->err);
}

/* ---- the mark ---- */

static char *mark_path(libdm_ctx *ctx, const char *name, const char *suffix)
{
    const char *dir = libdm_ctx_get_run_dir(ctx);

    return dir && name ? libdm__sprintf("%s/%s.migration%s", dir, name, suffix) : NULL;
}

int libdm__mig_mark_write(libdm_ctx *ctx, const char *name, const libdm__mig_mark *mark)
{
    char *path = mark_path(ctx, name, ""), *tmp = mark_path(ctx, name, ".new");
    char buf[192];
    int fd = -1, n, r = 0;

    n = snprintf(buf, sizeof(buf), "role=%s\nid=%s\nfenced=%d\npid=%d\nstart=%" PRIu64 "\n",
                 mark->role, mark->id, mark->fenced ? 1 : 0, mark->pid, mark->pid_start);
    if (!path || !tmp)
        r = -ENOMEM;
    else if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0)
        r = -errno;
    else if (write(fd, buf, (size_t)n) != n)
        r = -EIO;
    if (fd >= 0)
        libdm__close(&fd);
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0 && tmp)
        (void)unlink(tmp);
    free(path);
    free(tmp);
    return r;
}

int libdm__mig_mark_read(libdm_ctx *ctx, const char *name, libdm__mig_mark *ret)
{
    char *path = mark_path(ctx, name, ""), buf[256];
    libdm__mig_mark mk = { 0 };
    int fd, fenced = 0;
    ssize_t n;

    if (!path)
        return -ENOMEM;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(path);
    if (fd < 0)
        return -errno;
    n = read(fd, buf, sizeof(buf) - 1);
    libdm__close(&fd);
    if (n <= 0)
        return -EIO;
    buf[n] = '\0';
    if (sscanf(buf, "role=%15[a-z]\nid=%32[0-9a-f]\nfenced=%d\npid=%d\nstart=%" SCNu64,
               mk.role, mk.id, &fenced, &mk.pid, &mk.pid_start) < 1)
        return -EIO;
    mk.fenced = fenced == 1;
    if (mk.pid < 0)
        mk.pid = 0;
    *ret = mk;
    return 0;
}

void libdm__mig_mark_set_dm(libdm__mig_mark *mark, const libdm_dm *dm)
{
    int pid = dm ? libdm_dm_get_pid(dm) : 0;
    uint64_t start = pid > 0 ? libdm__proc_start_time(pid) : 0;

    /* Without a start time the pid alone would name any later process. */
    mark->pid = start ? pid : 0;
    mark->pid_start = start;
}

bool libdm__mig_mark_stale(const libdm__mig_mark *mark)
{
    return !mark->fenced && mark->pid > 0 &&
           libdm__proc_start_time(mark->pid) != mark->pid_start;
}

void libdm__mig_mark_clear(libdm_ctx *ctx, const char *name)
{
    char *path = mark_path(ctx, name, "");

    if (path)
        (void)unlink(path);
    free(path);
}

/* ---- messages ---- */

bool libdm__mig_add_str(libdm_json *o, const char *key, const char *value)
{
    libdm_json *v = libdm_json_new_string(value ? value : "");

    return v && libdm_json_object_add(o, key, v) >= 0;
}

bool libdm__mig_add_int(libdm_json *o, const char *key, int64_t value)
{
    libdm_json *v = libdm_json_new_int(value);

    return v && libdm_json_object_add(o, key, v) >= 0;
}

bool libdm__mig_add_bool(libdm_json *o, const char *key, bool value)
{
    libdm_json *v = libdm_json_new_bool(value);

    return v && libdm_json_object_add(o, key, v) >= 0;
}

libdm_json *libdm__mig_check(libdm_json *o, bool ok)
{
    return ok ? o : libdm_json_free(o);
}

libdm_json *libdm__mig_msg(const char *phase)
{
    libdm_json *o = libdm_json_new_object();
    bool ok = o && libdm__mig_add_str(o, "phase", phase);

    return libdm__mig_check(o, ok);
}

const char *libdm__mig_phase(const libdm_json *msg)
{
    return libdm__json_get_str(msg, "phase");
}

bool libdm__mig_bool(const libdm_json *msg, const char *key, bool *ret)
{
    int b;

    if (libdm_json_get_bool(libdm_json_object_get(msg, key), &b) < 0)
        return false;
    *ret = b;
    return true;
}

int libdm__mig_peer_version(const libdm_json *msg)
{
    const libdm_json *v = libdm_json_object_get(msg, "version");
    int64_t n;

    if (!v)
        return 1;
    if (libdm_json_get_int(v, &n) < 0 || n < 1 || n > LIBDM_MIGRATE_PROTO_VERSION)
        return -1;
    return (int)n;
}

char *libdm__mig_tcp_uri(const char *host, const char *port)
{
    return strchr(host, ':') ? libdm__sprintf("tcp:[%s]:%s", host, port)
                             : libdm__sprintf("tcp:%s:%s", host, port);
}

/* ---- the decision tables ---- */

bool libdm__mig_finish_may_run(libdm_migrate_source source)
{
    return source == LIBDM_MIGRATE_SOURCE_COMPLETED || source == LIBDM_MIGRATE_SOURCE_GONE;
}

/* The sender's table: S x the receiver's answer -> the outcome. */
libdm_migrate_outcome libdm__mig_outcome_for(libdm_migrate_source source, mig_answer a)
{
    switch (source) {
    case LIBDM_MIGRATE_SOURCE_COMPLETED:
        return a == ANSWER_FINISHED ? LIBDM_MIGRATE_OUTCOME_MIGRATED
               : a == ANSWER_ABORTED ? LIBDM_MIGRATE_OUTCOME_FAILED
                                     : LIBDM_MIGRATE_OUTCOME_UNKNOWN;
    case LIBDM_MIGRATE_SOURCE_GONE:
        return a == ANSWER_FINISHED ? LIBDM_MIGRATE_OUTCOME_MIGRATED
               : a == ANSWER_ABORTED ? LIBDM_MIGRATE_OUTCOME_LOST
                                     : LIBDM_MIGRATE_OUTCOME_UNKNOWN;
    case LIBDM_MIGRATE_SOURCE_KEEPS:
        return LIBDM_MIGRATE_OUTCOME_FAILED;
    case LIBDM_MIGRATE_SOURCE_UNKNOWN:
    default:
        return LIBDM_MIGRATE_OUTCOME_UNKNOWN;
    }
}

/* ---- results ---- */

libdm_migrate_outcome libdm_migration_get_outcome(const libdm_migration *m)
{
    return m ? m->outcome : LIBDM_MIGRATE_OUTCOME_UNKNOWN;
}

const char *libdm_migrate_outcome_to_string(libdm_migrate_outcome o)
{
    static const char *const names[] = { "migrated", "failed", "lost", "unknown" };

    return (unsigned)o < LIBDM__ARRAY_SIZE(names) ? names[o] : NULL;
}

libdm_migrate_source libdm_migration_get_source_state(const libdm_migration *m)
{
    return m ? m->source : LIBDM_MIGRATE_SOURCE_UNKNOWN;
}

int libdm_migration_finish_sent(const libdm_migration *m)
{
    return m && m->stage == STAGE_FINISH_SENT;
}

const char *libdm_migration_get_failed_phase(const libdm_migration *m)
{
    return m ? m->failed_in : NULL;
}

const char *libdm_migration_get_error(const libdm_migration *m)
{
    return m ? m->why : NULL;
}

int libdm_migration_peer_lost(const libdm_migration *m)
{
    return m && m->peer_lost;
}

int libdm_migration_get_confirm_error(const libdm_migration *m)
{
    return m ? m->confirm_err : 0;
}

const char *libdm_migration_get_runstate(const libdm_migration *m)
{
    return m ? m->runstate : NULL;
}

const char *libdm_migration_get_record_error(const libdm_migration *m)
{
    return m ? m->record_error : NULL;
}

const char *libdm_migration_get_name(const libdm_migration *m)
{
    return m ? m->name : NULL;
}

const char *libdm_migration_get_uri(const libdm_migration *m)
{
    return m ? m->uri : NULL;
}

const char *libdm_migration_get_guest(const libdm_migration *m)
{
    return m ? m->guest : NULL;
}

const char *libdm_migration_get_detail(const libdm_migration *m)
{
    return m ? m->detail : NULL;
}

libdm_migrate_recovery libdm_migration_get_recovery(const libdm_migration *m)
{
    return m ? m->recovery : LIBDM_MIGRATE_RECOVERY_NONE;
}

libdm_dm *libdm_migration_get_dm(const libdm_migration *m)
{
    return m ? m->dm : NULL;
}
