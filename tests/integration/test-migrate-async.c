/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Migration between two real QEMUs driven entirely through the async forms
 * in hooks mode: a host loop over poll() owns every fd and the timer, and
 * no blocking libdm call is ever made. Every libdm call (the phases, the
 * switchover answer, each dispatch) is watched: none may wait (at most
 * MAX_CALL_WAITS voluntary context switches of the thread, which a sleep in
 * a filesystem call can cost), which proves no phase runs its migration
 * inside the call; a migration waits dozens of times. Wall and CPU time
 * are printed, not asserted: on a loaded machine wall time measures the
 * machine (performance lives in bench/). Every completion must come from the loop,
 * never from inside a libdm call.
 *
 * Scenarios: the five phases with an async switchover hook answered later
 * from the loop; cancel through the hook; the destination killed
 * mid-migration; Perform's deadline at a hook that never answers, and
 * Finish's deadline without a source.
 *
 * Cross-host (the protocol in libdm, no dmctl): a source context (hooks
 * mode, the host above) and a destination context with its own store (one
 * fd: libdm_ctx_get_fd(), polled by the same host loop), a libdm_migration
 * on each, talking over two socketpairs (one per direction) or one socket
 * given as both fds: a migration that completes, one the switchover hook
 * cancels (the receiver stops its destination, the source runs again), one
 * whose receiver is dropped mid-way (the sender sees the channel close,
 * cancels and keeps the guest), and a peer speaking an unknown protocol
 * version (refused before anything runs).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "qemu-fixture.h"
#include "testutil.h"

#define MAX_CALL_WAITS 2    /* voluntary context switches in one call */

/* ---- the host: poll() over the fds libdm registers, one timer ---- */

#define HOST_MAX 32
typedef struct host_fd {
    int fd;
    short events;
    void *reg;
    bool used;
} host_fd;

typedef struct host {
    libdm_ctx *ctx;
    libdm_ctx *ctx2;        /* the destination's, when a scenario has one */
    host_fd fds[HOST_MAX];
    uint64_t deadline;
    bool in_call;           /* a libdm call is running */
    uint64_t max_us;        /* the longest libdm call so far (wall) */
    uint64_t max_cpu_us;    /* the most CPU time one call used */
    long max_waits;         /* the most voluntary context switches in one call */
    const char *max_waits_what; /* in which */
    const char *max_what;
    unsigned calls;
} host;

static host H;

static uint64_t clock_us(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_us(void) { return clock_us(CLOCK_MONOTONIC); }
static uint64_t cpu_us(void) { return clock_us(CLOCK_THREAD_CPUTIME_ID); }
/* Voluntary context switches of this thread: each is a wait (poll, a
 * blocking read, a sleep); involuntary ones (load) are not counted. */
static long waits(void)
{
    struct rusage ru;

    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_nvcsw;
}

/* Runs one libdm call, timed, with in_call set. */
#define CALL(what, expr)                                                    \
    ({                                                                      \
        uint64_t t0_ = now_us(), c0_ = cpu_us();                            \
        long w0_ = waits();                                                 \
        H.in_call = true;                                                   \
        __auto_type r_ = (expr);                                            \
        H.in_call = false;                                                  \
        note_duration(what, now_us() - t0_, cpu_us() - c0_, waits() - w0_); \
        r_;                                                                 \
    })
/* A dispatch, timed (callbacks run inside it: that is where they belong). */
#define DISPATCH(what, expr)                                                \
    do {                                                                    \
        uint64_t t0_ = now_us(), c0_ = cpu_us();                            \
        long w0_ = waits();                                                 \
        expr;                                                               \
        note_duration(what, now_us() - t0_, cpu_us() - c0_, waits() - w0_); \
    } while (0)

/* Wall time is what the host's loop waits; CPU time leaves out the
 * moments this process was not scheduled (two TCG guests share the cores). */
static void note_duration(const char *what, uint64_t us, uint64_t cpu, long w)
{
    H.calls++;
    if (w > H.max_waits) {
        H.max_waits = w;
        H.max_waits_what = what;
    }
    if (us > H.max_us) {
        H.max_us = us;
        H.max_what = what;
    }
    if (cpu > H.max_cpu_us)
        H.max_cpu_us = cpu;
}

static int h_register(void *user, int fd, short events, void *reg, void **ret)
{
    (void)user;
    for (int i = 0; i < HOST_MAX; i++)
        if (!H.fds[i].used) {
            H.fds[i] = (host_fd){ .fd = fd, .events = events, .reg = reg, .used = true };
            *ret = &H.fds[i];
            return 0;
        }
    return -ENOSPC;
}

static int h_modify(void *user, int fd, short events, void **hreg)
{
    (void)user;
    (void)fd;
    ((host_fd *)*hreg)->events = events;
    return 0;
}

static void h_deregister(void *user, int fd, void *hreg)
{
    (void)user;
    (void)fd;
    ((host_fd *)hreg)->used = false;
}

static int h_timer(void *user, uint64_t abs)
{
    (void)user;
    H.deadline = abs;
    return 0;
}

static const libdm_loop_hooks hooks = { h_register, h_modify, h_deregister, h_timer };

/* One iteration: waits at most 50 ms, dispatches what is ready (timed). */
static void host_iterate(void)
{
    struct pollfd pfd[HOST_MAX];
    int idx[HOST_MAX], n = 0, timeout = 50;
    uint64_t now = libdm_now_ms();

    for (int i = 0; i < HOST_MAX; i++)
        if (H.fds[i].used) {
            pfd[n] = (struct pollfd){ .fd = H.fds[i].fd, .events = H.fds[i].events };
            idx[n++] = i;
        }
    if (H.deadline != UINT64_MAX)
        timeout = H.deadline <= now ? 0 : (int)(H.deadline - now < 50 ? H.deadline - now : 50);
    if (H.ctx2) {
        uint64_t due;

        pfd[n] = (struct pollfd){ .fd = libdm_ctx_get_fd(H.ctx2), .events = POLLIN };
        idx[n++] = -1;
        if (libdm_ctx_get_timeout(H.ctx2, &due) > 0)
            timeout = due <= now ? 0 : (int)(due - now) < timeout ? (int)(due - now) : timeout;
    }
    assert_true(poll(pfd, (nfds_t)n, timeout) >= 0);
    if (H.ctx2)
        DISPATCH("process", assert_true(libdm_ctx_process(H.ctx2) >= 0));
    for (int i = 0; i < n; i++)
        if (idx[i] >= 0 && pfd[i].revents && H.fds[idx[i]].used)
            DISPATCH("dispatch_fd", libdm_ctx_dispatch_fd(H.ctx, H.fds[idx[i]].reg,
                                                           pfd[i].fd, pfd[i].revents));
    /* The host's timer is one-shot: once fired it is disarmed until libdm
     * sets it again (libdm_ctx_dispatch_timeout() assumes so). */
    if (H.deadline != UINT64_MAX && libdm_now_ms() >= H.deadline) {
        H.deadline = UINT64_MAX;
        DISPATCH("dispatch_timeout", libdm_ctx_dispatch_timeout(H.ctx));
    }
}

/* ---- operations and their completions ---- */

typedef struct op {
    int done;
    int status;
} op;

static void on_done(libdm_dm *dm, int status, void *user)
{
    op *o = user;

    (void)dm;
    /* Deferred: never inside the libdm call that started it. */
    assert_false(H.in_call);
    o->done++;
    o->status = status;
}

/* Iterates until @o completed (once) or @ms pass; returns its status. */
static int run(op *o, int ms)
{
    uint64_t deadline = tu_now_ms() + (uint64_t)ms;

    while (!o->done && tu_now_ms() < deadline)
        host_iterate();
    assert_int_equal(o->done, 1);
    return o->status;
}

static void run_ms(int ms)
{
    uint64_t deadline = tu_now_ms() + (uint64_t)ms;

    while (tu_now_ms() < deadline)
        host_iterate();
}

/* ---- fixture ---- */

typedef struct fixture {
    char *dir;
    char *uri;
    int fds_before;
    libdm_dm_config *src_cfg, *dst_cfg;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    f->fds_before = tu_fd_count();
    f->dir = tu_mkdtemp("amig");
    assert_non_null(f->dir);
    assert_true(asprintf(&f->uri, "unix:%s/stream.sock", f->dir) > 0);
    memset(&H, 0, sizeof(H));
    H.deadline = UINT64_MAX;
    assert_int_equal(libdm_ctx_new(NULL, &H.ctx), 0);
    assert_int_equal(libdm_ctx_set_loop_hooks(H.ctx, &hooks, NULL), 0);
    assert_int_equal(libdm_ctx_set_store(H.ctx, f->dir), 0);
    f->src_cfg = qf_config_pc("asrc");
    f->dst_cfg = qf_config_pc("adst");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    uint64_t deadline = tu_now_ms() + 5000;

    while (!libdm_ctx_is_idle(H.ctx) && tu_now_ms() < deadline)
        host_iterate();
    tu_settle_children(H.ctx, 0);
    qf_assert_no_records(H.ctx);
    libdm_dm_config_free(f->src_cfg);
    libdm_dm_config_free(f->dst_cfg);
    H.ctx = libdm_ctx_free(H.ctx);
    tu_rmtree(f->dir);
    free(f->uri);
    free(f->dir);
    assert_int_equal(tu_fd_count(), f->fds_before);
    assert_int_equal(tu_child_count(), 0);
    free(f);
    return 0;
}

static void assert_fast(const char *scenario)
{
    print_message("%s: %u libdm calls and dispatches, the longest %.3f ms (%s), "
                  "at most %.3f ms of CPU, at most %ld waits (%s)\n", scenario, H.calls,
                  H.max_us / 1000.0, H.max_what ? H.max_what : "-", H.max_cpu_us / 1000.0,
                  H.max_waits, H.max_waits_what ? H.max_waits_what : "-");
    assert_true(H.max_waits <= MAX_CALL_WAITS);
}

static const char *runstate(libdm_dm *dm)
{
    op o = { 0 };

    assert_int_equal(CALL("query_status_async",
                          libdm_dm_query_status_async(dm, 5000, on_done, &o)), 0);
    assert_int_equal(run(&o, 6000), 0);
    return libdm_dm_get_runstate(dm);
}

static libdm_dm *running_source(fixture *f)
{
    libdm_dm *src;
    op o = { 0 };

    assert_int_equal(CALL("start_async", libdm_dm_start_async(H.ctx, f->src_cfg, on_done, &o,
                                                              &src)), 0);
    assert_int_equal(run(&o, 20000), 0);
    o = (op){ 0 };
    assert_int_equal(CALL("resume_async", libdm_dm_resume_async(src, 5000, on_done, &o)), 0);
    assert_int_equal(run(&o, 6000), 0);
    o = (op){ 0 };
    assert_int_equal(CALL("begin_async", libdm_migrate_begin_async(src, 5000, on_done, &o)), 0);
    assert_int_equal(run(&o, 6000), 0);
    return src;
}

static libdm_dm *prepared_destination(fixture *f)
{
    libdm_dm *dst;
    op o = { 0 };

    assert_int_equal(CALL("prepare_async", libdm_migrate_prepare_async(H.ctx, f->dst_cfg, f->uri,
                                                                       on_done, &o, &dst)), 0);
    assert_int_equal(run(&o, 20000), 0);
    assert_int_equal(libdm_dm_get_state(dst), LIBDM_DM_INCOMING);
    return dst;
}

static void stop(libdm_dm *dm)
{
    op o = { 0 };

    assert_int_equal(CALL("stop_async", libdm_dm_stop_async(dm, 0, 5000, on_done, &o)), 0);
    assert_int_equal(run(&o, 12000), 0);
    libdm_dm_release(dm);
}

static void wait_dead(libdm_dm *dm)
{
    uint64_t deadline = tu_now_ms() + 5000;

    while (libdm_dm_get_state(dm) != LIBDM_DM_DEAD && tu_now_ms() < deadline)
        host_iterate();
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
}

/* ---- the switchover hook ---- */

typedef struct hook_state {
    int calls;
    int answer;             /* what the loop answers later */
    bool answer_inside;     /* answer from inside the hook instead */
    bool never;             /* never answer */
    int kill_pid;           /* SIGKILL this before answering */
    libdm_qmp_slot *query;  /* query-migrate sent from inside the hook */
    char *seen_status;
    int progress;
} hook_state;

static void on_hook_query(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    hook_state *h = user;
    const char *st = r->status == 0 ? libdm_json_get_string(libdm_json_object_get(r->value,
                                                                                  "status"))
                                    : NULL;

    (void)q;
    h->seen_status = strdup(st ? st : "(error)");
}

static void hook(libdm_dm *src, void *user)
{
    hook_state *h = user;

    assert_false(H.in_call);
    h->calls++;
    /* Async calls are fine from inside a libdm callback. */
    assert_int_equal(libdm_qmp_call_async(libdm_dm_get_qmp(src), "query-migrate", NULL, 5000,
                                          on_hook_query, h, &h->query), 0);
    if (h->kill_pid > 0)
        assert_int_equal(kill(h->kill_pid, SIGKILL), 0);
    if (h->answer_inside)
        assert_int_equal(libdm_migrate_switchover_done(src, h->answer), 0);
}

static void on_progress(libdm_dm *src, const libdm_migrate_progress *p, void *user)
{
    (void)src;
    assert_false(H.in_call);
    assert_non_null(p->status);
    ((hook_state *)user)->progress++;
}

/* Perform, with the hook answered from the loop once the source was seen
 * paused at pre-switchover. */
static int perform(libdm_dm *src, const char *uri, hook_state *h, int timeout_ms)
{
    op o = { 0 };
    uint64_t deadline = tu_now_ms() + (uint64_t)timeout_ms + 15000;

    assert_int_equal(CALL("perform_async",
                          libdm_migrate_perform_async(src, uri,
                                                      LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER, hook,
                                                      h, on_progress, h, timeout_ms, on_done,
                                                      &o)), 0);
    /* One operation at a time per DM. */
    assert_int_equal(CALL("begin_async", libdm_migrate_begin_async(src, 1000, on_done, &o)),
                     -EBUSY);
    while (!o.done && tu_now_ms() < deadline) {
        host_iterate();
        if (h->calls && h->seen_status && !h->answer_inside && !h->never) {
            /* Answered from the loop, a moment later: the migration waited. */
            run_ms(100);
            assert_int_equal(o.done, 0);
            assert_int_equal(CALL("switchover_done",
                                  libdm_migrate_switchover_done(src, h->answer)), 0);
            h->never = true;   /* answered */
        }
    }
    assert_int_equal(o.done, 1);
    h->query = libdm_qmp_slot_free(h->query);
    return o.status;
}

/* ---- scenarios ---- */

static void test_async_phases(void **state)
{
    fixture *f = *state;
    hook_state h = { .answer = 0 };
    libdm_dm *src, *dst;
    op o = { 0 };
    int src_pid;

    src = running_source(f);
    src_pid = libdm_dm_get_pid(src);
    dst = prepared_destination(f);
    assert_string_equal(runstate(dst), "inmigrate");

    assert_int_equal(perform(src, f->uri, &h, 30000), 0);
    assert_int_equal(h.calls, 1);
    assert_true(h.progress > 0);
    assert_string_equal(h.seen_status, "pre-switchover");
    free(h.seen_status);
    /* Answering again: Perform no longer waits. */
    assert_int_equal(libdm_migrate_switchover_done(src, 0), -EALREADY);

    assert_int_equal(CALL("finish_async",
                          libdm_migrate_finish_async(dst, LIBDM_MIGRATE_SOURCE_COMPLETED, 0,
                                                     10000, on_done, &o)), 0);
    assert_int_equal(run(&o, 12000), 0);
    assert_string_equal(runstate(dst), "running");
    assert_int_equal(libdm_dm_get_state(dst), LIBDM_DM_RUNNING);
    o = (op){ 0 };
    assert_int_equal(CALL("confirm_async", libdm_migrate_confirm_async(src, 1, 5000, on_done,
                                                                       &o)), 0);
    assert_int_equal(run(&o, 12000), 0);
    libdm_dm_release(src);
    assert_true(kill(src_pid, 0) < 0);
    assert_fast("phases");
    stop(dst);
}

static void test_async_cancel_via_hook(void **state)
{
    fixture *f = *state;
    hook_state h = { .answer = -ECANCELED, .answer_inside = true };
    libdm_dm *src, *dst;
    op o = { 0 };

    src = running_source(f);
    dst = prepared_destination(f);
    assert_int_equal(perform(src, f->uri, &h, 30000), -ECANCELED);
    assert_int_equal(h.calls, 1);
    free(h.seen_status);
    /* Cancel un-pauses: the source runs again. */
    assert_int_equal(CALL("confirm_async", libdm_migrate_confirm_async(src, 0, 5000, on_done,
                                                                       &o)), 0);
    assert_int_equal(run(&o, 6000), 0);
    assert_string_equal(runstate(src), "running");
    assert_fast("cancel via hook");
    /* The destination exits by itself; Finish refuses at once. */
    wait_dead(dst);
    assert_int_equal(libdm_migrate_finish_async(dst, LIBDM_MIGRATE_SOURCE_COMPLETED, 0, 1000,
                                                on_done, &o), -ESRCH);
    stop(dst);
    stop(src);
}

static void test_async_destination_killed(void **state)
{
    fixture *f = *state;
    hook_state h = { .answer = 0 };
    libdm_dm *src, *dst;
    op o = { 0 };
    int performed, finished;

    src = running_source(f);
    dst = prepared_destination(f);
    h.kill_pid = libdm_dm_get_pid(dst);
    /* Fails, or "completes" towards a dead destination (the last bytes fit
     * in the socket buffer): Finish fails either way, and Confirm brings
     * the source back. */
    performed = perform(src, f->uri, &h, 30000);
    free(h.seen_status);
    wait_dead(dst);
    assert_true(WIFSIGNALED(libdm_dm_get_exit_status(dst)));
    finished = libdm_migrate_finish_async(dst, LIBDM_MIGRATE_SOURCE_COMPLETED, 0, 1000, on_done,
                                          &o);
    assert_int_equal(finished, -ESRCH);
    print_message("perform %s before the destination died\n",
                  performed == 0 ? "completed" : "failed");
    assert_int_equal(CALL("confirm_async", libdm_migrate_confirm_async(src, 0, 5000, on_done,
                                                                       &o)), 0);
    assert_int_equal(run(&o, 6000), 0);
    assert_string_equal(runstate(src), "running");
    assert_fast("destination killed");
    stop(dst);
    stop(src);
}

static void test_async_deadlines(void **state)
{
    fixture *f = *state;
    hook_state h = { .never = true };
    libdm_dm *src, *dst;
    op o = { 0 };
    uint64_t t0;

    src = running_source(f);
    dst = prepared_destination(f);
    /* A hook that never answers: Perform's deadline cancels, the source
     * is un-paused, and a late answer is refused. */
    t0 = tu_now_ms();
    assert_int_equal(perform(src, f->uri, &h, 3000), -ETIMEDOUT);
    assert_true(tu_now_ms() - t0 < 3000 + 10000);
    assert_int_equal(h.calls, 1);
    free(h.seen_status);
    assert_int_equal(libdm_migrate_switchover_done(src, 0), -EALREADY);
    assert_int_equal(CALL("confirm_async", libdm_migrate_confirm_async(src, 0, 5000, on_done,
                                                                       &o)), 0);
    assert_int_equal(run(&o, 6000), 0);
    assert_string_equal(runstate(src), "running");
    wait_dead(dst);
    stop(dst);

    /* Finish without a source: its deadline, and no cont was ever sent. */
    dst = prepared_destination(f);
    o = (op){ 0 };
    t0 = tu_now_ms();
    assert_int_equal(CALL("finish_async",
                          libdm_migrate_finish_async(dst, LIBDM_MIGRATE_SOURCE_COMPLETED, 0, 500,
                                                     on_done, &o)), 0);
    assert_int_equal(run(&o, 5000), -ETIMEDOUT);
    assert_true(tu_now_ms() - t0 >= 500);
    assert_string_equal(runstate(dst), "inmigrate");
    /* The source's word forbids it: refused at once, no callback. */
    o = (op){ 0 };
    assert_int_equal(libdm_migrate_finish_async(dst, LIBDM_MIGRATE_SOURCE_KEEPS, 0, 500,
                                                on_done, &o), -ECANCELED);
    assert_fast("deadlines");
    stop(dst);
    stop(src);
}

/* ---- cross-host: the protocol in libdm, two contexts ---- */

typedef struct mig_done {
    int done;
    int status;
    int prepared;           /* the receiver's notices */
    libdm_migration *drop;  /* dropped at its "prepared" notice */
    bool cancel_hook;       /* the sender's hook cancels */
    int hooks;
} mig_done;

static void on_mig_done(libdm_migration *m, int status, void *user)
{
    mig_done *d = user;

    (void)m;
    assert_false(H.in_call);
    d->done++;
    d->status = status;
}

static void on_notify(libdm_migration *m, const char *what, void *user)
{
    mig_done *d = user;

    (void)m;
    assert_false(H.in_call);
    if (!strcmp(what, "prepared"))
        d->prepared++;
}

static void on_mig_hook(libdm_migration *m, void *user)
{
    mig_done *d = user;

    assert_false(H.in_call);
    d->hooks++;
    if (d->drop) {
        /* The receiver goes away while the source waits at pre-switchover
         * (its destination is stopped; its channel closes). */
        d->drop = libdm_migration_unref(d->drop);
        return;
    }
    assert_int_equal(libdm_migration_switchover_done(m, d->cancel_hook ? -ECANCELED : 0,
                                                     d->cancel_hook ? "cancelled by the test"
                                                                    : NULL), 0);
}

typedef struct cross {
    char *dir2;
    libdm_dm *src;
    libdm_migration *snd, *rcv;
    mig_done sd, rd;
} cross;

static void cross_setup(fixture *f, cross *c)
{
    c->dir2 = tu_mkdtemp("amig2");
    assert_non_null(c->dir2);
    assert_int_equal(libdm_ctx_new(NULL, &H.ctx2), 0);
    assert_int_equal(libdm_ctx_set_store(H.ctx2, c->dir2), 0);
    c->src = running_source(f);
    assert_int_equal(libdm_migration_new_send(c->src, &c->snd), 0);
    assert_int_equal(libdm_migration_set_timeout_ms(c->snd, 20000), 0);
    assert_int_equal(libdm_migration_set_flags(c->snd, LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER),
                     0);
    assert_int_equal(libdm_migration_set_hook(c->snd, on_mig_hook, &c->sd), 0);
    assert_int_equal(libdm_migration_new_receive(H.ctx2, &c->rcv), 0);
    assert_int_equal(libdm_migration_set_qemu_path(c->rcv, tu_qemu()), 0);
    assert_int_equal(libdm_migration_set_timeout_ms(c->rcv, 20000), 0);
    assert_int_equal(libdm_migration_set_notify(c->rcv, on_notify, &c->rd), 0);
}

/* Starts both sides: two socketpairs (one per direction), or one socket
 * given as both of a side's fds. */
static void cross_start(cross *c, bool one_socket)
{
    int a[2], b[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), 0);
    if (one_socket) {
        /* each side's one socket, both ways */
        assert_int_equal(CALL("migration_start",
                              libdm_migration_start(c->snd, a[0], a[0], on_mig_done, &c->sd,
                                                    NULL)), 0);
        assert_int_equal(CALL("migration_start",
                              libdm_migration_start(c->rcv, a[1], a[1], on_mig_done, &c->rd,
                                                    NULL)), 0);
    } else {
        /* a: sender -> receiver; b: receiver -> sender */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b), 0);
        assert_int_equal(CALL("migration_start",
                              libdm_migration_start(c->snd, b[0], a[0], on_mig_done, &c->sd,
                                                    NULL)), 0);
        assert_int_equal(CALL("migration_start",
                              libdm_migration_start(c->rcv, a[1], b[1], on_mig_done, &c->rd,
                                                    NULL)), 0);
    }
    /* Never inside the call. */
    assert_int_equal(c->sd.done + c->rd.done, 0);
}

static void cross_run(cross *c, bool receiver_too)
{
    uint64_t deadline = tu_now_ms() + 60000;

    while ((!c->sd.done || (receiver_too && !c->rd.done)) && tu_now_ms() < deadline)
        host_iterate();
    assert_int_equal(c->sd.done, 1);
    if (receiver_too)
        assert_int_equal(c->rd.done, 1);
}

static void cross_teardown(cross *c)
{
    uint64_t deadline = tu_now_ms() + 5000;

    c->snd = libdm_migration_unref(c->snd);
    c->rcv = libdm_migration_unref(c->rcv);
    while (!libdm_ctx_is_idle(H.ctx2) && tu_now_ms() < deadline)
        host_iterate();
    tu_settle_children(H.ctx2, 0);
    qf_assert_no_records(H.ctx2);
    H.ctx2 = libdm_ctx_free(H.ctx2);
    tu_rmtree(c->dir2);
    free(c->dir2);
}

static void test_cross_host_migrates(void **state)
{
    fixture *f = *state;
    cross c = { 0 };
    libdm_dm *dst = NULL;
    int src_pid;

    cross_setup(f, &c);
    src_pid = libdm_dm_get_pid(c.src);
    cross_start(&c, false);
    cross_run(&c, true);
    assert_int_equal(c.sd.status, 0);
    assert_int_equal(c.rd.status, 0);
    assert_int_equal(c.rd.prepared, 1);
    assert_int_equal(c.sd.hooks, 1);
    assert_int_equal(libdm_migration_get_outcome(c.snd), LIBDM_MIGRATE_OUTCOME_MIGRATED);
    assert_int_equal(libdm_migration_get_source_state(c.snd), LIBDM_MIGRATE_SOURCE_COMPLETED);
    assert_string_equal(libdm_migration_get_runstate(c.snd), "running");
    assert_null(libdm_migration_get_record_error(c.snd));
    /* The destination, in the other store, runs the guest under the
     * source's name; the source is gone. */
    assert_string_equal(libdm_migration_get_name(c.rcv), "asrc");
    dst = libdm_migration_get_dm(c.rcv);
    assert_non_null(dst);
    assert_int_equal(libdm_dm_get_state(dst), LIBDM_DM_RUNNING);
    libdm_dm_release(c.src);
    assert_true(kill(src_pid, 0) < 0);
    assert_fast("cross-host");
    {
        op o = { 0 };

        assert_int_equal(libdm_dm_stop_async(dst, 0, 5000, on_done, &o), 0);
        assert_int_equal(run(&o, 12000), 0);
    }
    cross_teardown(&c);
}

static void test_cross_host_hook_cancels(void **state)
{
    fixture *f = *state;
    cross c = { .sd = { .cancel_hook = true } };
    libdm_dm *dst;

    cross_setup(f, &c);
    cross_start(&c, true);
    cross_run(&c, true);
    assert_int_equal(c.sd.hooks, 1);
    assert_int_equal(libdm_migration_get_outcome(c.snd), LIBDM_MIGRATE_OUTCOME_FAILED);
    assert_int_equal(libdm_migration_get_source_state(c.snd), LIBDM_MIGRATE_SOURCE_KEEPS);
    assert_string_equal(libdm_migration_get_failed_phase(c.snd), "perform");
    assert_string_equal(libdm_migration_get_error(c.snd), "cancelled by the test");
    /* The receiver stopped its destination and said so. */
    assert_int_equal(c.rd.status, -ECANCELED);
    dst = libdm_migration_get_dm(c.rcv);
    assert_int_equal(libdm_dm_get_state(dst), LIBDM_DM_DEAD);
    assert_string_equal(runstate(c.src), "running");
    assert_fast("cross-host, hook cancels");
    stop(c.src);
    cross_teardown(&c);
}

static void test_cross_host_receiver_dropped(void **state)
{
    fixture *f = *state;
    cross c = { 0 };

    cross_setup(f, &c);
    c.sd.drop = c.rcv;
    cross_start(&c, false);
    c.rcv = NULL;      /* the hook drops it */
    cross_run(&c, false);
    assert_int_equal(c.sd.hooks, 1);
    assert_int_equal(c.rd.done, 0);   /* dropped: no callback */
    assert_int_equal(libdm_migration_get_outcome(c.snd), LIBDM_MIGRATE_OUTCOME_FAILED);
    assert_true(libdm_migration_peer_lost(c.snd));
    assert_int_equal(libdm_migration_finish_sent(c.snd), 0);
    assert_string_equal(runstate(c.src), "running");
    assert_fast("cross-host, receiver dropped");
    stop(c.src);
    cross_teardown(&c);
}

/* A peer that speaks a version this side does not know is refused before
 * anything runs. */
static void test_cross_host_unknown_version(void **state)
{
    fixture *f = *state;
    cross c = { 0 };
    static const char line[] = "{\"phase\":\"prepare\",\"version\":99,\"name\":\"v\","
                               "\"config\":{\"profile\":\"plain\",\"machine\":\"pc\","
                               "\"memory\":64,\"domid\":0},\"timeout_ms\":5000}\n";
    char buf[4096];
    ssize_t n;
    int a[2];

    (void)f;
    c.dir2 = tu_mkdtemp("amig2");
    assert_int_equal(libdm_ctx_new(NULL, &H.ctx2), 0);
    assert_int_equal(libdm_ctx_set_store(H.ctx2, c.dir2), 0);
    assert_int_equal(libdm_migration_new_receive(H.ctx2, &c.rcv), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), 0);
    assert_int_equal(write(a[0], line, sizeof(line) - 1), (ssize_t)sizeof(line) - 1);
    assert_int_equal(libdm_migration_start(c.rcv, a[1], a[1], on_mig_done, &c.rd, NULL), 0);
    for (uint64_t end = tu_now_ms() + 10000; !c.rd.done && tu_now_ms() < end;)
        host_iterate();
    assert_int_equal(c.rd.done, 1);
    assert_int_equal(c.rd.status, -EPROTO);
    assert_null(libdm_migration_get_dm(c.rcv));
    n = read(a[0], buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "\"phase\":\"error\""));
    assert_non_null(strstr(buf, "unknown protocol version"));
    close(a[0]);
    cross_teardown(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_async_phases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_cancel_via_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_destination_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_deadlines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_host_migrates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_host_hook_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_host_receiver_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_host_unknown_version, setup, teardown),
    };
    int skip = tu_require_dm_env();

    /* The waits counted are the library's (a sleep, a blocking read), not
     * this program's page faults: in a full suite run right after the
     * build, faulting in freshly written pages can wait for their
     * writeback (start_async, the first call, counted 3 waits in 2 of 3
     * clean-clone runs). Prefaulted and kept resident; best effort. */
    (void)mlockall(MCL_CURRENT);

    if (skip)
        return skip;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
