/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The async-operation matrix against a real qemu-system-x86_64: every
 * asynchronous DM and migration operation x {completion, cancel, deadline,
 * death}, for the cells no other test covered. Where each cell is tested
 * (C: here; dm: test-dm-qemu.c, ma: test-migrate-async.c, mq:
 * test-migrate-qemu.c; cancel is "stop | release"):
 *
 *   operation     completion  cancel                deadline        death
 *   start         dm, ma      dm (before the        dm (root: the   C
 *                             keeper) | C (after)   probe), C
 *   attach        dm          C | C                 dm              C
 *   resume        dm          mq | C                C               C
 *   pause         dm          C | C                 dm              C
 *   query-status  dm          C | C                 C               dm
 *   stop          dm          - | C                 C (escalates)   C
 *   begin         ma          C | C                 C               C
 *   prepare       ma          C | C, each while     C, C            C, C
 *                             starting and while
 *                             migrate-incoming waits
 *   perform       ma          C | C (ma: the hook   ma              C (source),
 *                             cancels)                              ma (destination)
 *   finish        ma          C | C                 ma              C
 *   confirm       ma          C | C (!success)      C               C
 *   cancel        C           C | C                 C               C
 *   recover       C (both)    C | C (both)          C (both)        C (both)
 *   source state  C           C | C                 C               C
 *
 * One cmocka test per row of rows[] (an operation and a fault), run by
 * run_row() the same way every time:
 *   1. the operation's precondition is made (a DM started, a migration
 *      prepared...) and QEMU is made not to answer: SIGSTOP, or a wrapper
 *      that stops itself before exec (starts), or a switchover hook that
 *      never answers (Perform);
 *   2. the async call is issued; its callback must not run inside the call
 *      and must not run while QEMU stays silent;
 *   3. the fault:
 *      STOP      libdm_dm_stop_async(force) interrupts it: its callback gets
 *                -ECANCELED (before the stop's own callback), the DM is DEAD
 *                and its directory gone;
 *      RELEASE   libdm_dm_release() drops it: its callback never runs; the
 *                DM outlives its handle intact (a new handle attaches and
 *                talks to it), or, under autokill (a start, a migration
 *                destination before Finish), its keeper kills it and removes
 *                everything;
 *      DEADLINE  the operation's timeout_ms passes: -ETIMEDOUT, not before
 *                the deadline and not much after it, the DM's state as the
 *                table says;
 *      DEATH     QEMU is SIGKILLed mid-operation: a negative status (or the
 *                operation's own answer for it), the DM DEAD, no child left
 *                and the handle, still held, holds no fd.
 * Every callback asserts it runs from the loop (never inside a libdm call).
 * The fixture checks, per row, that no record, directory, fd or child is
 * left: the "nothing leaked" proof.
 *
 * Completion cells missing elsewhere (migrate cancel, recover and source
 * state) are the last few tests.
 *
 * LIBDM_MATRIX_ROWS: a cmocka filter (glob) to run only some tests.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "testutil.h"
#include "qemu-fixture.h"

#define DEADLINE_MS 300     /* the operation's timeout in DEADLINE rows */
#define LONG_MS 10000       /* everywhere else: never reached */
#define QUIET_MS 100        /* the operation must still wait after this */
#define MARGIN_MS 1500      /* lateness allowed on a loaded 2-core machine */
#define STOP_GRACE_MS 3000  /* dm-private.h DM_TERM_GRACE_MS: SIGTERM -> SIGKILL */
#define ANY_NEGATIVE INT32_MIN
#define ANY_STATUS (INT32_MIN + 1)  /* the status is not checked */

#define PLAIN "am"          /* the DM of the DM operations (-machine none) */
#define SRC "amsrc"         /* migrations: pc, 64 MiB, TCG */
#define DST "amdst"

/* ---- what the library promises where it once failed (each found by this
 * matrix, fixed, and checked here):
 * - a start whose QEMU never greets ends -ETIMEDOUT (it ended -ECHILD when
 *   the greeting's timer fired before the start's own deadline);
 * - a migration phase whose DM dies ends -ESRCH (it ended with the
 *   monitor's -ECONNRESET, the socket resetting before the exit was
 *   reported), and Recover with the destination's guest then stops the
 *   gone source as asked (0);
 * - a migration phase that fails says why in libdm_dm_last_error();
 * - a DM that became DEAD through a stop or a failed start holds no fd;
 * - releasing a destination during Prepare or Finish frees their state. */
#define START_DEADLINE (-ETIMEDOUT)
#define MIGRATE_DEATH (-ESRCH)
#define RECOVER_STOP_DEATH 0
#define MIGRATE_SAYS_WHY true

/* ---- completions: counted, ordered, and never inside a call ---- */

static bool in_call;        /* a libdm call made through CALL() is running */
static unsigned seq;        /* completion order */

#define CALL(expr)                                                          \
    ({                                                                      \
        in_call = true;                                                     \
        __auto_type r_ = (expr);                                            \
        in_call = false;                                                    \
        r_;                                                                 \
    })

typedef struct done {
    int n;
    int status;
    unsigned seq;
} done;

static void on_done(libdm_dm *dm, int status, void *user)
{
    done *d = user;

    (void)dm;
    /* Deferred: never inside the libdm call that started or ended it. */
    assert_false(in_call);
    d->n++;
    d->status = status;
    d->seq = ++seq;
}

/* ---- fixture ---- */

typedef struct target {
    libdm_dm *dm;           /* the handle the operation runs on */
    const char *name;
    int pid;                /* its QEMU */
    uint64_t t0;            /* the operation's deadline runs from here */
    libdm_dm_state before;  /* its state when the operation was issued */
    bool frozen;            /* Prepare, incoming phase: QEMU stopped */
    int hook_calls;         /* Perform: the switchover hook ran */
    libdm_dm *peer;         /* the other DM of a migration */
} target;

struct row;

typedef struct fixture {
    const struct row *row;
    char *dir;              /* the store */
    char *bindir;           /* wrapper scripts */
    char *uri;              /* unix:DIR/stream.sock */
    int fds_before;         /* before the context */
    int fd_base;            /* the context's own fds open, no DM */
    libdm_ctx *ctx;
    libdm_dm_config *cfg, *src_cfg, *dst_cfg;
    target t;               /* the DMs of the test, for a failed test's rescue */
    bool passed;            /* the test reached its end */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    libdm_dm_info *infos = NULL;
    size_t n = 0;

    assert_non_null(f);
    f->row = *state;
    f->fds_before = tu_fd_count();
    f->dir = tu_mkdtemp("amx");
    f->bindir = tu_mkdtemp("amx-bin");
    assert_non_null(f->dir);
    assert_non_null(f->bindir);
    assert_true(asprintf(&f->uri, "unix:%s/stream.sock", f->dir) > 0);
    assert_int_equal(libdm_ctx_new(NULL, &f->ctx), 0);
    assert_int_equal(libdm_ctx_set_store(f->ctx, f->dir), 0);
    /* The context's own fds (epoll, the store) are open from here on. */
    assert_int_equal(libdm_dm_list(f->ctx, &infos, &n), 0);
    libdm_dm_info_free(infos, n);
    f->fd_base = tu_fd_count();
    f->cfg = qf_config(PLAIN, LONG_MS);
    /* Guests that can migrate (their start timeout is LONG_MS too). */
    f->src_cfg = qf_config_pc(SRC);
    f->dst_cfg = qf_config_pc(DST);
    seq = 0;
    in_call = false;
    *state = f;
    return 0;
}

/* A test that failed half-way left DMs behind: end them so that the next
 * tests start clean (its own teardown still fails). Handles are released,
 * never stopped: a stop would run callbacks into the failed test's stack. */
static void rescue(fixture *f)
{
    libdm_dm_info *infos = NULL;
    libdm_dm *dms[2] = { f->t.dm, f->t.peer };
    size_t n = 0;

    in_call = false;
    for (int i = 0; i < 2; i++) {
        int pid = dms[i] ? libdm_dm_get_pid(dms[i]) : 0;

        libdm_dm_release(dms[i]);
        if (pid > 0)
            kill(pid, SIGKILL);
    }
    f->t = (target){ 0 };
    if (libdm_dm_list(f->ctx, &infos, &n) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        uint64_t deadline = tu_now_ms() + 5000;

        if (infos[i].alive && infos[i].pid > 0)
            kill(infos[i].pid, SIGKILL);
        while (libdm_dm_forget(f->ctx, infos[i].name) == -EBUSY && tu_now_ms() < deadline)
            libdm_ctx_run_once(f->ctx, 10);
    }
    libdm_dm_info_free(infos, n);
}

static int teardown(void **state)
{
    fixture *f = *state;
    libdm_dm_info *infos = NULL;
    size_t n = 0;
    uint64_t deadline = tu_now_ms() + 5000;

    if (!f->passed)
        rescue(f);

    while (!libdm_ctx_is_idle(f->ctx) && tu_now_ms() < deadline)
        libdm_ctx_run_once(f->ctx, 10);
    tu_settle_children(f->ctx, 0);
    /* No record may outlive a row. */
    assert_int_equal(libdm_dm_list(f->ctx, &infos, &n), 0);
    libdm_dm_info_free(infos, n);
    assert_int_equal(n, 0);
    libdm_dm_config_free(f->cfg);
    libdm_dm_config_free(f->src_cfg);
    libdm_dm_config_free(f->dst_cfg);
    libdm_ctx_free(f->ctx);
    assert_false(tu_path_exists(f->dir, PLAIN));
    assert_false(tu_path_exists(f->dir, SRC));
    assert_false(tu_path_exists(f->dir, DST));
    tu_rmtree(f->dir);
    tu_rmtree(f->bindir);
    free(f->dir);
    free(f->bindir);
    free(f->uri);
    /* Nothing leaked: the same descriptors, and every child reaped. */
    assert_int_equal(tu_fd_count(), f->fds_before);
    assert_int_equal(tu_child_count(), 0);
    free(f);
    return 0;
}

/* ---- the loop and the processes ---- */

static void run_for(fixture *f, int ms)
{
    uint64_t deadline = tu_now_ms() + (uint64_t)ms;

    while (tu_now_ms() < deadline)
        libdm_ctx_run_once(f->ctx, 10);
}

/* Runs the loop until @d completed or @ms pass; asserts it completed once. */
static void run_until(fixture *f, const done *d, int ms)
{
    uint64_t deadline = tu_now_ms() + (uint64_t)ms;

    while (!d->n && tu_now_ms() < deadline)
        libdm_ctx_run_once(f->ctx, 10);
    assert_int_equal(d->n, 1);
}

static void wait_state(fixture *f, libdm_dm *dm, libdm_dm_state want, int ms)
{
    uint64_t deadline = tu_now_ms() + (uint64_t)ms;

    while (libdm_dm_get_state(dm) != want && tu_now_ms() < deadline)
        libdm_ctx_run_once(f->ctx, 10);
    assert_int_equal(libdm_dm_get_state(dm), want);
}

static void wait_gone(fixture *f, int pid)
{
    uint64_t deadline = tu_now_ms() + 6000;

    while (tu_pid_alive(pid) && tu_now_ms() < deadline)
        libdm_ctx_run_once(f->ctx, 10);
    assert_false(tu_pid_alive(pid));
}

static void wait_no_path(fixture *f, const char *name)
{
    uint64_t deadline = tu_now_ms() + 5000;

    while (tu_path_exists(f->dir, name) && tu_now_ms() < deadline)
        libdm_ctx_run_once(f->ctx, 10);
    assert_false(tu_path_exists(f->dir, name));
}

/* The state letter of /proc/PID/stat ('T': stopped), '?' if none. */
static char proc_state(int pid)
{
    char path[64], buf[512], *p;
    char st = '?';
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    fp = fopen(path, "re");
    if (!fp)
        return st;
    if (fgets(buf, sizeof(buf), fp) && (p = strrchr(buf, ')')) && p[1] == ' ')
        st = p[2];
    fclose(fp);
    return st;
}

static void wait_stopped(int pid)
{
    uint64_t deadline = tu_now_ms() + 3000;

    while (proc_state(pid) != 'T' && tu_now_ms() < deadline)
        usleep(1000);
    assert_int_equal(proc_state(pid), 'T');
}

/* QEMU stops answering: frozen, its monitor socket still open. */
static void freeze(int pid)
{
    assert_true(pid > 0);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    wait_stopped(pid);
}

/* @cfg's QEMU stops itself right after the keeper's exec, before QEMU even
 * runs: the keeper has run and reported the pid, the monitor never greets. */
static void stopping_wrapper(fixture *f, libdm_dm_config *cfg)
{
    char path[4096];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/qemu-stops-itself", f->bindir);
    fp = fopen(path, "we");
    assert_non_null(fp);
    fprintf(fp, "#!/bin/sh\nkill -STOP $$\nexec '%s' \"$@\"\n", tu_qemu());
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(chmod(path, 0700), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(cfg, path), 0);
}

static libdm_dm *start_dm(fixture *f, const libdm_dm_config *cfg)
{
    libdm_dm *dm = NULL;

    assert_int_equal(libdm_dm_start(f->ctx, cfg, &dm), 0);
    return dm;
}

static void stop_release(libdm_dm *dm)
{
    if (!dm)
        return;
    assert_int_equal(libdm_dm_stop(dm, 1, 5000), 0);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
    libdm_dm_release(dm);
}

static void expect_status(const char *what, int want, int got)
{
    print_message("%s: status %d%s%s\n", what, got, got < 0 ? " " : "",
                  got < 0 ? strerror(-got) : "");
    if (want == ANY_STATUS)
        return;
    if (want == ANY_NEGATIVE ? got >= 0 : got != want)
        fail_msg("%s: status %d (%s), expected %s%d", what, got,
                 got < 0 ? strerror(-got) : "not an errno",
                 want == ANY_NEGATIVE ? "any negative, not " : "", want == ANY_NEGATIVE ? 0 : want);
}

/* ---- the operations ---- */

typedef struct opdef {
    const char *name;
    /* The precondition; QEMU silent unless issue or in_flight see to it. */
    void (*setup)(fixture *f, target *t);
    int (*issue)(fixture *f, target *t, int timeout_ms, done *d);
    /* After the call: wait until it is really in flight. -EAGAIN: the
     * moment was missed (the row is set up again). */
    int (*in_flight)(fixture *f, target *t);
    int on_stop, on_deadline, on_death;     /* the status each fault gives */
    int deadline_state;     /* after the deadline; -1: what it was before */
    int deadline_ms;        /* the timeout of its DEADLINE row (0: DEADLINE_MS) */
    int deadline_extra_ms;  /* what comes after the deadline, by design */
    bool says_why;          /* libdm_dm_last_error() set after its deadline */
    bool autokill;          /* a release makes its keeper kill the DM */
    bool release_ends_it;   /* a release leaves a DM that ends by itself */
} opdef;

/* -- start: a QEMU that stopped itself before exec (the keeper ran) -- */

static void setup_start(fixture *f, target *t)
{
    stopping_wrapper(f, f->cfg);
    t->name = PLAIN;
}

static int issue_start(fixture *f, target *t, int timeout_ms, done *d)
{
    assert_int_equal(libdm_dm_config_set_timeout_ms(f->cfg, timeout_ms), 0);
    return libdm_dm_start_async(f->ctx, f->cfg, on_done, d, &t->dm);
}

/* The keeper ran and gave QEMU's pid; the wrapper stopped before exec. */
static int spawned_frozen(fixture *f, target *t)
{
    uint64_t deadline = tu_now_ms() + 5000;

    while ((libdm_dm_get_pid(t->dm) <= 0 || proc_state(libdm_dm_get_pid(t->dm)) != 'T') &&
           tu_now_ms() < deadline)
        libdm_ctx_run_once(f->ctx, 5);
    t->pid = libdm_dm_get_pid(t->dm);
    assert_true(t->pid > 0);
    assert_int_equal(proc_state(t->pid), 'T');
    assert_true(libdm_dm_get_state(t->dm) == LIBDM_DM_SPAWNING ||
                libdm_dm_get_state(t->dm) == LIBDM_DM_NEGOTIATING);
    return 0;
}

/* -- attach: a second handle for a DM whose first handle was released -- */

static void setup_attach(fixture *f, target *t)
{
    libdm_dm *dm = start_dm(f, f->cfg);

    t->name = PLAIN;
    t->pid = libdm_dm_get_pid(dm);
    libdm_dm_release(dm);
    freeze(t->pid);
}

static int issue_attach(fixture *f, target *t, int timeout_ms, done *d)
{
    return libdm_dm_attach_async(f->ctx, PLAIN, timeout_ms, on_done, d, &t->dm);
}

/* -- resume, pause, query-status, stop: one DM, paused at prelaunch -- */

static void setup_plain(fixture *f, target *t)
{
    t->dm = start_dm(f, f->cfg);
    t->name = PLAIN;
    t->pid = libdm_dm_get_pid(t->dm);
    freeze(t->pid);
}

static int issue_resume(fixture *f, target *t, int timeout_ms, done *d)
{
    return libdm_dm_resume_async(t->dm, timeout_ms, on_done, d);
}

static int issue_pause(fixture *f, target *t, int timeout_ms, done *d)
{
    return libdm_dm_pause_async(t->dm, timeout_ms, on_done, d);
}

static int issue_query(fixture *f, target *t, int timeout_ms, done *d)
{
    return libdm_dm_query_status_async(t->dm, timeout_ms, on_done, d);
}

static int issue_stop(fixture *f, target *t, int timeout_ms, done *d)
{
    return libdm_dm_stop_async(t->dm, 0, timeout_ms, on_done, d);
}

/* -- one-look migration phases on a source (Begin, Confirm, Cancel,
 *    Recover, source state): a pc guest paused at prelaunch -- */

static void setup_source(fixture *f, target *t)
{
    t->dm = start_dm(f, f->src_cfg);
    t->name = SRC;
    t->pid = libdm_dm_get_pid(t->dm);
    freeze(t->pid);
}

static int issue_begin(fixture *f, target *t, int timeout_ms, done *d)
{
    return libdm_migrate_begin_async(t->dm, timeout_ms, on_done, d);
}

static int issue_confirm_failed(fixture *f, target *t, int timeout_ms, done *d)
{
    return libdm_migrate_confirm_async(t->dm, 0, timeout_ms, on_done, d);
}

static int issue_cancel(fixture *f, target *t, int timeout_ms, done *d)
{
    return libdm_migrate_cancel_async(t->dm, timeout_ms, on_done, d);
}

static int issue_recover_run(fixture *f, target *t, int timeout_ms, done *d)
{
    return libdm_migrate_recover_async(t->dm, 0, timeout_ms, on_done, d);
}

static int issue_recover_stop(fixture *f, target *t, int timeout_ms, done *d)
{
    return libdm_migrate_recover_async(t->dm, 1, timeout_ms, on_done, d);
}

static int issue_source_state(fixture *f, target *t, int timeout_ms, done *d)
{
    return libdm_migrate_source_state_async(t->dm, timeout_ms, on_done, d);
}

/* -- Prepare, while its DM starts (a QEMU that stopped itself) -- */

static void setup_prepare_starting(fixture *f, target *t)
{
    stopping_wrapper(f, f->dst_cfg);
    t->name = DST;
}

static int issue_prepare(fixture *f, target *t, int timeout_ms, done *d)
{
    assert_int_equal(libdm_dm_config_set_timeout_ms(f->dst_cfg, timeout_ms), 0);
    return libdm_migrate_prepare_async(f->ctx, f->dst_cfg, f->uri, on_done, d, &t->dm);
}

/* -- Prepare, its DM ready, migrate-incoming in flight: QEMU is stopped
 *    from the state callback that reports INCOMING, which runs before (or
 *    microseconds after) the start's completion sends migrate-incoming; had
 *    QEMU answered first, the row is set up again -- */

static void freeze_at_incoming(libdm_dm *dm, const libdm_dm_event *ev, void *user)
{
    target *t = user;

    assert_false(in_call);
    if (ev->new_state != LIBDM_DM_INCOMING || t->frozen)
        return;
    t->pid = libdm_dm_get_pid(dm);
    assert_int_equal(kill(t->pid, SIGSTOP), 0);
    t->frozen = true;
    t->t0 = tu_now_ms();
}

static void setup_prepare_incoming(fixture *f, target *t)
{
    t->name = DST;
}

static int issue_prepare_incoming(fixture *f, target *t, int timeout_ms, done *d)
{
    int r = issue_prepare(f, t, timeout_ms, d);

    if (r >= 0)
        assert_int_equal(libdm_dm_set_event_callback(t->dm, freeze_at_incoming, t), 0);
    return r;
}

static int incoming_frozen(fixture *f, target *t)
{
    uint64_t deadline = tu_now_ms() + 20000;
    libdm_qmp *q;

    while (!t->frozen && libdm_dm_get_state(t->dm) != LIBDM_DM_DEAD && tu_now_ms() < deadline)
        libdm_ctx_run_once(f->ctx, 10);
    assert_true(t->frozen);
    wait_stopped(t->pid);
    /* migrate-incoming was sent to the stopped QEMU, and waits. */
    for (int i = 0; i < 5; i++)
        libdm_ctx_run_once(f->ctx, 5);
    q = libdm_dm_get_qmp(t->dm);
    if (libdm_dm_get_state(t->dm) != LIBDM_DM_INCOMING || !q || libdm_qmp_outstanding(q) == 0)
        return -EAGAIN;
    return 0;
}

/* -- Perform, waiting at pre-switchover for a hook that never answers -- */

static void hook_never_answers(libdm_dm *src, void *user)
{
    target *t = user;

    (void)src;
    assert_false(in_call);
    t->hook_calls++;
}

static void setup_perform(fixture *f, target *t)
{
    t->dm = start_dm(f, f->src_cfg);
    t->name = SRC;
    t->pid = libdm_dm_get_pid(t->dm);
    assert_int_equal(libdm_dm_resume(t->dm, 5000), 0);
    assert_int_equal(libdm_migrate_begin(t->dm, 5000), 0);
    assert_int_equal(libdm_migrate_prepare(f->ctx, f->dst_cfg, f->uri, &t->peer), 0);
}

static int issue_perform(fixture *f, target *t, int timeout_ms, done *d)
{
    return libdm_migrate_perform_async(t->dm, f->uri, LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER,
                                       hook_never_answers, t, NULL, NULL, timeout_ms, on_done,
                                       d);
}

static int at_switchover(fixture *f, target *t)
{
    uint64_t deadline = tu_now_ms() + 30000;

    while (!t->hook_calls && tu_now_ms() < deadline)
        libdm_ctx_run_once(f->ctx, 10);
    assert_int_equal(t->hook_calls, 1);
    return 0;
}

/* -- Finish, on a destination no source ever connects to -- */

static void setup_finish(fixture *f, target *t)
{
    assert_int_equal(libdm_migrate_prepare(f->ctx, f->dst_cfg, f->uri, &t->dm), 0);
    t->name = DST;
    t->pid = libdm_dm_get_pid(t->dm);
    freeze(t->pid);
}

static int issue_finish(fixture *f, target *t, int timeout_ms, done *d)
{
    return libdm_migrate_finish_async(t->dm, LIBDM_MIGRATE_SOURCE_COMPLETED, 0, timeout_ms,
                                      on_done, d);
}

#define SRC_UNKNOWN ((int)LIBDM_MIGRATE_SOURCE_UNKNOWN)
#define SRC_GONE ((int)LIBDM_MIGRATE_SOURCE_GONE)
#define DEAD ((int)LIBDM_DM_DEAD)
#define BROKEN ((int)LIBDM_DM_BROKEN)

#define OP(n, su, is, fl) .name = n, .setup = su, .issue = is, .in_flight = fl
#define ERRNO_STOP_DEADLINE .on_stop = -ECANCELED, .on_deadline = -ETIMEDOUT

/* Its deadline: START_DEADLINE. */
static const opdef op_start = {
    OP("start", setup_start, issue_start, spawned_frozen), .on_stop = -ECANCELED,
    .on_deadline = START_DEADLINE, .on_death = ANY_NEGATIVE, .deadline_state = DEAD,
    .says_why = true, .autokill = true,
};
static const opdef op_attach = {
    OP("attach", setup_attach, issue_attach, NULL), ERRNO_STOP_DEADLINE,
    .on_death = ANY_NEGATIVE, .deadline_state = BROKEN, .says_why = true,
};
/* Unlike pause and query-status, a resume whose deadline passed leaves the
 * DM's state as it was (not BROKEN). */
static const opdef op_resume = {
    OP("resume", setup_plain, issue_resume, NULL), ERRNO_STOP_DEADLINE,
    .on_death = ANY_NEGATIVE, .deadline_state = -1, .says_why = true,
};
static const opdef op_pause = {
    OP("pause", setup_plain, issue_pause, NULL), ERRNO_STOP_DEADLINE,
    .on_death = ANY_NEGATIVE, .deadline_state = BROKEN, .says_why = true,
};
static const opdef op_query = {
    OP("query-status", setup_plain, issue_query, NULL), ERRNO_STOP_DEADLINE,
    .on_death = ANY_NEGATIVE, .deadline_state = BROKEN, .says_why = true,
};
/* A stop's deadline escalates (SIGTERM, pending on a stopped process, then
 * SIGKILL after the grace): it succeeds; a death is what it wanted. */
static const opdef op_stop = {
    OP("stop", setup_plain, issue_stop, NULL), .on_stop = 0, .on_deadline = 0, .on_death = 0,
    .deadline_state = DEAD, .deadline_extra_ms = STOP_GRACE_MS, .release_ends_it = true,
};
static const opdef op_begin = {
    OP("migrate-begin", setup_source, issue_begin, NULL), ERRNO_STOP_DEADLINE,
    .on_death = MIGRATE_DEATH, .deadline_state = -1, .says_why = MIGRATE_SAYS_WHY,
};
/* The start of Prepare's DM fails: the start's own deadline applies. */
static const opdef op_prepare_starting = {
    OP("migrate-prepare-starting", setup_prepare_starting, issue_prepare, spawned_frozen),
    .on_stop = -ECANCELED, .on_deadline = START_DEADLINE, .on_death = ANY_NEGATIVE,
    .deadline_state = DEAD, .autokill = true,
};
/* migrate-incoming unanswered: Prepare stops the DM it made (DEAD). The
 * start must reach INCOMING within the same timeout first: 2 s. */
static const opdef op_prepare_incoming = {
    OP("migrate-prepare-incoming", setup_prepare_incoming, issue_prepare_incoming,
       incoming_frozen),
    ERRNO_STOP_DEADLINE, .on_death = MIGRATE_DEATH, .deadline_state = DEAD,
    .deadline_ms = 2000, .autokill = true,
};
/* The one phase that waits for its DM's exit to show: -ESRCH. */
static const opdef op_perform = {
    OP("migrate-perform", setup_perform, issue_perform, at_switchover), ERRNO_STOP_DEADLINE,
    .on_death = -ESRCH, .deadline_state = -1,
};
/* Autokill stays armed until Finish succeeds. */
static const opdef op_finish = {
    OP("migrate-finish", setup_finish, issue_finish, NULL), ERRNO_STOP_DEADLINE,
    .on_death = MIGRATE_DEATH, .deadline_state = -1, .autokill = true,
};
static const opdef op_confirm_failed = {
    OP("migrate-confirm-failed", setup_source, issue_confirm_failed, NULL),
    ERRNO_STOP_DEADLINE, .on_death = MIGRATE_DEATH, .deadline_state = -1,
    .says_why = MIGRATE_SAYS_WHY,
};
static const opdef op_cancel = {
    OP("migrate-cancel", setup_source, issue_cancel, NULL), ERRNO_STOP_DEADLINE,
    .on_death = MIGRATE_DEATH, .deadline_state = -1, .says_why = MIGRATE_SAYS_WHY,
};
static const opdef op_recover_run = {
    OP("migrate-recover-run", setup_source, issue_recover_run, NULL), ERRNO_STOP_DEADLINE,
    .on_death = MIGRATE_DEATH, .deadline_state = -1, .says_why = MIGRATE_SAYS_WHY,
};
/* The destination has the guest: the source is to go. Its death mid-way
 * is that: 0. */
static const opdef op_recover_stop = {
    OP("migrate-recover-stop", setup_source, issue_recover_stop, NULL), ERRNO_STOP_DEADLINE,
    .on_death = RECOVER_STOP_DEATH, .deadline_state = -1, .says_why = MIGRATE_SAYS_WHY,
};
/* Never an error: a libdm_migrate_source (and nothing failed). */
static const opdef op_source_state = {
    OP("migrate-source-state", setup_source, issue_source_state, NULL),
    .on_stop = SRC_UNKNOWN, .on_deadline = SRC_UNKNOWN, .on_death = SRC_GONE,
    .deadline_state = -1,
};

/* ---- the faults ---- */

typedef enum fault { F_STOP, F_RELEASE, F_DEADLINE, F_DEATH } fault;

typedef struct row {
    const char *name;
    const opdef *op;
    fault fault;
} row;

static void print_fds(void)
{
    char path[64], link[512];
    ssize_t n;

    for (int fd = 0; fd < 1024; fd++) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        if ((n = readlink(path, link, sizeof(link) - 1)) > 0) {
            link[n] = '\0';
            print_message("  fd %d -> %s\n", fd, link);
        }
    }
}

/* With the DEAD DM's handle still held: no fd of it is left. */
static void assert_no_dm_fd_left(fixture *f)
{
    int fds = -1;

    for (int i = 0; i < 100 && (fds = tu_fd_count()) != f->fd_base; i++)
        libdm_ctx_run_once(f->ctx, 10);
    if (fds != f->fd_base)
        print_fds();
    if (fds != f->fd_base)
        fail_msg("%d fds open with the dead DM's handle held, %d without any DM", fds,
                 f->fd_base);
}

/* STOP: the stop interrupts the operation, which completes -ECANCELED (or
 * the operation's own answer), from the loop, before the stop does. */
static void fault_stop(fixture *f, const opdef *op, target *t, const done *d)
{
    done s = { 0 };

    assert_int_equal(CALL(libdm_dm_stop_async(t->dm, 1, 5000, on_done, &s)), 0);
    assert_int_equal(d->n, 0);
    run_until(f, &s, 10000);
    assert_int_equal(d->n, 1);
    assert_true(d->seq < s.seq);
    expect_status(op->name, op->on_stop, d->status);
    assert_int_equal(s.status, 0);
    assert_int_equal(libdm_dm_get_state(t->dm), LIBDM_DM_DEAD);
    assert_false(tu_pid_alive(t->pid));
    assert_false(tu_path_exists(f->dir, t->name));
    if (!t->peer)
        assert_no_dm_fd_left(f);
    libdm_dm_release(t->dm);
    t->dm = NULL;
}

/* The DM outlived its handle: continued, a new handle attaches and talks
 * to it (it is intact), then stops it. */
static void reattach_and_stop(fixture *f, target *t)
{
    libdm_dm *dm = NULL;
    char *rs = NULL;

    assert_int_equal(kill(t->pid, SIGCONT), 0);
    assert_int_equal(libdm_dm_attach_timeout(f->ctx, t->name, 5000, &dm), 0);
    assert_int_not_equal(libdm_dm_get_state(dm), LIBDM_DM_BROKEN);
    assert_int_equal(libdm_dm_query_status(dm, 5000, &rs), 0);
    free(rs);
    stop_release(dm);
    assert_false(tu_path_exists(f->dir, t->name));
}

/* RELEASE: the callback never runs; nothing of the operation is left. */
static void fault_release(fixture *f, const opdef *op, target *t, const done *d)
{
    assert_null(CALL(libdm_dm_release(t->dm)));
    t->dm = NULL;
    run_for(f, 300);
    assert_int_equal(d->n, 0);
    if (op->autokill) {
        /* Its keeper kills it and removes its record and directory. */
        wait_gone(f, t->pid);
        wait_no_path(f, t->name);
    } else if (op->release_ends_it) {
        /* The quit it sent reaches QEMU once continued. */
        assert_int_equal(kill(t->pid, SIGCONT), 0);
        wait_gone(f, t->pid);
        for (int i = 0; i < 300 && libdm_dm_forget(f->ctx, t->name) == -EBUSY; i++)
            libdm_ctx_run_once(f->ctx, 10);
        assert_false(tu_path_exists(f->dir, t->name));
    } else {
        assert_true(tu_pid_alive(t->pid));
        reattach_and_stop(f, t);
    }
    assert_int_equal(d->n, 0);
}

/* DEADLINE: not before it, not much after it; the state the table says. */
static void fault_deadline(fixture *f, const opdef *op, target *t, const done *d,
                           int timeout_ms)
{
    uint64_t took;

    run_until(f, d, timeout_ms + op->deadline_extra_ms + MARGIN_MS);
    took = tu_now_ms() - t->t0;
    expect_status(op->name, op->on_deadline, d->status);
    if (took + 5 < (uint64_t)timeout_ms || took > (uint64_t)(timeout_ms + op->deadline_extra_ms +
                                                             MARGIN_MS))
        fail_msg("%s: completed after %llu ms, its deadline %d ms", op->name,
                 (unsigned long long)took, timeout_ms);
    if (op->deadline_state == DEAD) {
        assert_int_equal(libdm_dm_get_state(t->dm), LIBDM_DM_DEAD);
        assert_false(tu_pid_alive(t->pid));
        assert_false(tu_path_exists(f->dir, t->name));
    } else {
        assert_int_equal(libdm_dm_get_state(t->dm),
                         op->deadline_state < 0 ? t->before
                                                : (libdm_dm_state)op->deadline_state);
        assert_true(tu_pid_alive(t->pid));
        if (op->says_why)
            assert_non_null(libdm_dm_last_error(t->dm));
    }
    stop_release(t->dm);
    t->dm = NULL;
}

/* DEATH: QEMU SIGKILLed mid-operation. */
static void fault_death(fixture *f, const opdef *op, target *t, const done *d)
{
    assert_int_equal(kill(t->pid, SIGKILL), 0);
    run_until(f, d, 6000);
    expect_status(op->name, op->on_death, d->status);
    wait_state(f, t->dm, LIBDM_DM_DEAD, 5000);
    wait_gone(f, t->pid);
    /* DEAD holds no fd and no child, the handle still held (the fds: when
     * it is the only DM). */
    tu_settle_children(f->ctx, t->peer ? 1 : 0);
    assert_true(tu_child_count() <= (t->peer ? 1 : 0));
    if (!t->peer)
        assert_no_dm_fd_left(f);
    assert_int_equal(libdm_dm_stop(t->dm, 0, 2000), 0);
    libdm_dm_release(t->dm);
    t->dm = NULL;
    wait_no_path(f, t->name);
}

/* A row that missed its moment (Prepare's incoming phase): undone. */
static void discard(fixture *f, target *t)
{
    if (t->pid > 0)
        kill(t->pid, SIGKILL);
    stop_release(t->dm);
    if (t->peer)
        stop_release(t->peer);
    t->dm = t->peer = NULL;
    tu_settle_children(f->ctx, 0);
}

static void run_row(void **state)
{
    fixture *f = *state;
    const row *r = f->row;
    const opdef *op = r->op;
    int timeout = r->fault != F_DEADLINE ? LONG_MS : op->deadline_ms ? op->deadline_ms
                                                                     : DEADLINE_MS;
    target *t = &f->t;
    done d;

    for (int attempt = 1;; attempt++) {
        *t = (target){ 0 };
        d = (done){ 0 };
        op->setup(f, t);
        if (t->dm)
            t->before = libdm_dm_get_state(t->dm);
        t->t0 = tu_now_ms();
        assert_int_equal(CALL(op->issue(f, t, timeout, &d)), 0);
        /* Completions are deferred: nothing ran inside the call. */
        assert_int_equal(d.n, 0);
        assert_non_null(t->dm);
        if (!op->in_flight || op->in_flight(f, t) == 0)
            break;
        print_message("%s: the operation was not in flight yet (attempt %d): again\n", r->name,
                      attempt);
        assert_true(attempt < 3);
        discard(f, t);
    }
    if (t->pid <= 0)
        t->pid = libdm_dm_get_pid(t->dm);
    assert_true(t->pid > 0);
    /* QEMU does not answer: the operation waits. */
    run_for(f, QUIET_MS);
    assert_int_equal(d.n, 0);

    switch (r->fault) {
    case F_STOP:
        fault_stop(f, op, t, &d);
        break;
    case F_RELEASE:
        fault_release(f, op, t, &d);
        break;
    case F_DEADLINE:
        fault_deadline(f, op, t, &d, timeout);
        break;
    case F_DEATH:
        fault_death(f, op, t, &d);
        break;
    }
    /* The other side of a migration: its stream cut, it may have ended. */
    if (t->peer)
        stop_release(t->peer);
    t->peer = NULL;
    f->passed = true;
}

/* Every cell the other tests leave open (see the commit message's table).
 * The rows whose cell is covered elsewhere are not repeated here. */
static const row rows[] = {
    /* start: cancels before the keeper ran are in test-dm-qemu; these come
     * after it, QEMU spawned and not answering. */
    { "start/stop", &op_start, F_STOP },
    { "start/release", &op_start, F_RELEASE },
    { "start/deadline", &op_start, F_DEADLINE },
    { "start/death", &op_start, F_DEATH },
    { "attach/stop", &op_attach, F_STOP },
    { "attach/release", &op_attach, F_RELEASE },
    { "attach/death", &op_attach, F_DEATH },
    { "resume/release", &op_resume, F_RELEASE },
    { "resume/deadline", &op_resume, F_DEADLINE },
    { "resume/death", &op_resume, F_DEATH },
    { "pause/stop", &op_pause, F_STOP },
    { "pause/release", &op_pause, F_RELEASE },
    { "pause/death", &op_pause, F_DEATH },
    { "query-status/stop", &op_query, F_STOP },
    { "query-status/release", &op_query, F_RELEASE },
    { "query-status/deadline", &op_query, F_DEADLINE },
    { "stop/release", &op_stop, F_RELEASE },
    { "stop/deadline", &op_stop, F_DEADLINE },
    { "stop/death", &op_stop, F_DEATH },
    { "migrate-begin/stop", &op_begin, F_STOP },
    { "migrate-begin/release", &op_begin, F_RELEASE },
    { "migrate-begin/deadline", &op_begin, F_DEADLINE },
    { "migrate-begin/death", &op_begin, F_DEATH },
    { "migrate-prepare-starting/stop", &op_prepare_starting, F_STOP },
    { "migrate-prepare-starting/release", &op_prepare_starting, F_RELEASE },
    { "migrate-prepare-starting/deadline", &op_prepare_starting, F_DEADLINE },
    { "migrate-prepare-starting/death", &op_prepare_starting, F_DEATH },
    { "migrate-prepare-incoming/stop", &op_prepare_incoming, F_STOP },
    { "migrate-prepare-incoming/release", &op_prepare_incoming, F_RELEASE },
    { "migrate-prepare-incoming/deadline", &op_prepare_incoming, F_DEADLINE },
    { "migrate-prepare-incoming/death", &op_prepare_incoming, F_DEATH },
    { "migrate-perform/stop", &op_perform, F_STOP },
    { "migrate-perform/release", &op_perform, F_RELEASE },
    { "migrate-perform/death", &op_perform, F_DEATH },
    { "migrate-finish/stop", &op_finish, F_STOP },
    { "migrate-finish/release", &op_finish, F_RELEASE },
    { "migrate-finish/death", &op_finish, F_DEATH },
    { "migrate-confirm-failed/stop", &op_confirm_failed, F_STOP },
    { "migrate-confirm-failed/release", &op_confirm_failed, F_RELEASE },
    { "migrate-confirm-failed/deadline", &op_confirm_failed, F_DEADLINE },
    { "migrate-confirm-failed/death", &op_confirm_failed, F_DEATH },
    { "migrate-cancel/stop", &op_cancel, F_STOP },
    { "migrate-cancel/release", &op_cancel, F_RELEASE },
    { "migrate-cancel/deadline", &op_cancel, F_DEADLINE },
    { "migrate-cancel/death", &op_cancel, F_DEATH },
    { "migrate-recover-run/stop", &op_recover_run, F_STOP },
    { "migrate-recover-run/release", &op_recover_run, F_RELEASE },
    { "migrate-recover-run/deadline", &op_recover_run, F_DEADLINE },
    { "migrate-recover-run/death", &op_recover_run, F_DEATH },
    { "migrate-recover-stop/stop", &op_recover_stop, F_STOP },
    { "migrate-recover-stop/release", &op_recover_stop, F_RELEASE },
    { "migrate-recover-stop/deadline", &op_recover_stop, F_DEADLINE },
    { "migrate-recover-stop/death", &op_recover_stop, F_DEATH },
    { "migrate-source-state/stop", &op_source_state, F_STOP },
    { "migrate-source-state/release", &op_source_state, F_RELEASE },
    { "migrate-source-state/deadline", &op_source_state, F_DEADLINE },
    { "migrate-source-state/death", &op_source_state, F_DEATH },
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

/* ---- completions no other test covers ---- */

static int call_done(fixture *f, int r, done *d, int ms)
{
    assert_int_equal(r, 0);
    assert_int_equal(d->n, 0);
    run_until(f, d, ms);
    return d->status;
}

static const char *runstate(fixture *f, libdm_dm *dm)
{
    done d = { 0 };

    assert_int_equal(call_done(f, CALL(libdm_dm_query_status_async(dm, 5000, on_done, &d)), &d,
                               6000), 0);
    return libdm_dm_get_runstate(dm);
}

/* migrate_cancel_async: the controller of a migration went away (its
 * handle released while Perform waited at pre-switchover, the guest paused
 * there); a new handle cancels the migration still in flight in QEMU, the
 * source runs again, and its state then says it keeps the guest. */
static void test_cancel_completes(void **state)
{
    fixture *f = *state;
    target *t = &f->t;
    done p = { 0 }, d = { 0 };

    setup_perform(f, t);
    assert_int_equal(CALL(issue_perform(f, t, 30000, &p)), 0);
    at_switchover(f, t);
    libdm_dm_release(t->dm);
    t->dm = NULL;
    assert_int_equal(CALL(libdm_dm_attach_async(f->ctx, SRC, 5000, on_done, &d, &t->dm)), 0);
    assert_int_equal(call_done(f, 0, &d, 6000), 0);
    d = (done){ 0 };
    assert_int_equal(call_done(f, CALL(libdm_migrate_cancel_async(t->dm, 10000, on_done, &d)),
                               &d, 12000), 0);
    assert_string_equal(runstate(f, t->dm), "running");
    assert_int_equal(libdm_dm_get_state(t->dm), LIBDM_DM_RUNNING);
    d = (done){ 0 };
    assert_int_equal(call_done(f, CALL(libdm_migrate_source_state_async(t->dm, 5000, on_done,
                                                                         &d)),
                               &d, 6000), LIBDM_MIGRATE_SOURCE_KEEPS);
    /* Nothing left in flight: cancelling again finds a running source. */
    d = (done){ 0 };
    assert_int_equal(call_done(f, CALL(libdm_migrate_cancel_async(t->dm, 5000, on_done, &d)),
                               &d, 6000), 0);
    assert_int_equal(p.n, 0);   /* the released Perform never called back */
    stop_release(t->dm);
    stop_release(t->peer);
    *t = (target){ 0 };
    f->passed = true;
}

/* recover_async without the destination's guest: a source left paused
 * (here at prelaunch, no migration ever) is made to run. */
static void test_recover_run_completes(void **state)
{
    fixture *f = *state;
    libdm_dm *src = f->t.dm = start_dm(f, f->src_cfg);
    done d = { 0 };

    assert_int_equal(call_done(f, CALL(libdm_migrate_recover_async(src, 0, 5000, on_done, &d)),
                               &d, 6000), 0);
    assert_string_equal(runstate(f, src), "running");
    assert_int_equal(libdm_dm_get_state(src), LIBDM_DM_RUNNING);
    stop_release(src);
    f->t.dm = NULL;
    f->passed = true;
}

/* recover_async with the destination's guest: a paused source goes (DEAD,
 * nothing left); a running one is refused (-EBUSY: both would run). */
static void test_recover_stop_completes(void **state)
{
    fixture *f = *state;
    libdm_dm *src = f->t.dm = start_dm(f, f->src_cfg);
    done d = { 0 };
    int pid = libdm_dm_get_pid(src);

    assert_int_equal(libdm_dm_resume(src, 5000), 0);
    assert_int_equal(call_done(f, CALL(libdm_migrate_recover_async(src, 1, 5000, on_done, &d)),
                               &d, 6000), -EBUSY);
    assert_int_equal(libdm_dm_get_state(src), LIBDM_DM_RUNNING);
    assert_int_equal(libdm_dm_pause(src, 5000), 0);
    d = (done){ 0 };
    assert_int_equal(call_done(f, CALL(libdm_migrate_recover_async(src, 1, 5000, on_done, &d)),
                               &d, 8000), 0);
    assert_int_equal(libdm_dm_get_state(src), LIBDM_DM_DEAD);
    assert_false(tu_pid_alive(pid));
    assert_false(tu_path_exists(f->dir, SRC));
    libdm_dm_release(src);
    f->t.dm = NULL;
    f->passed = true;
}

/* source_state_async on a source that never migrated: it keeps the guest. */
static void test_source_state_completes(void **state)
{
    fixture *f = *state;
    libdm_dm *src = f->t.dm = start_dm(f, f->src_cfg);
    done d = { 0 };

    assert_int_equal(call_done(f, CALL(libdm_migrate_source_state_async(src, 5000, on_done, &d)),
                               &d, 6000), LIBDM_MIGRATE_SOURCE_KEEPS);
    assert_int_not_equal(libdm_dm_get_state(src), LIBDM_DM_DEAD);
    stop_release(src);
    f->t.dm = NULL;
    f->passed = true;
}

static const struct CMUnitTest completions[] = {
    cmocka_unit_test_setup_teardown(test_cancel_completes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_recover_run_completes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_recover_stop_completes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_source_state_completes, setup, teardown),
};

#define NCOMPLETIONS (sizeof(completions) / sizeof(completions[0]))

int main(void)
{
    static struct CMUnitTest tests[NROWS + NCOMPLETIONS];
    const char *filter = getenv("LIBDM_MATRIX_ROWS");
    int skip = tu_require_dm_env();

    if (skip)
        return skip;
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    for (size_t i = 0; i < NROWS; i++)
        tests[i] = (struct CMUnitTest){ rows[i].name, run_row, setup, teardown,
                                        (void *)&rows[i] };
    for (size_t i = 0; i < NCOMPLETIONS; i++)
        tests[NROWS + i] = completions[i];
    return _cmocka_run_group_tests("async-matrix", tests, NROWS + NCOMPLETIONS, NULL, NULL);
}
