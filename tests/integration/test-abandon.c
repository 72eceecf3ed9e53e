/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 19, "a daemon can trust libdm": every way a caller drops a DM
 * operation, against a real qemu-system-x86_64 (-machine none) and the real
 * libdm-keeper. Each test is the regression test of one defect:
 *
 *   release_after_spawn   (1) a start released after its keeper was spawned,
 *                         before the keeper's "pid" message: autokill ends
 *                         QEMU and cleans up; no QEMU left running with no
 *                         owner, recorded "spawning".
 *   deadline_before_pid   (2) a start deadline passing between the keeper's
 *                         spawn and its "pid" message (the keeper is slowed
 *                         by a wrapper): -ETIMEDOUT at once saying so, the
 *                         keeper and everything it ran gone when the
 *                         callback runs, the name free.
 *   ctx_free_orders       (3) release / ctx_free / stop in every order
 *                         (ASan builds catch a use after free): defined
 *                         results, DMs left running stay recorded and
 *                         attachable, no zombie keeper.
 *   blocking_is_private   (4) inside libdm_qmp_call() and
 *                         libdm_dm_query_status() for DM A, nothing of DM B
 *                         runs: no state event, no reply callback, no QMP
 *                         event listener.
 *   stop_file_steps       (5) stop_async on a DEAD DM removes nothing inside
 *                         the call, and no dispatch of a stop's end removes
 *                         more than two files.
 *   ctx_free_bounded      (6) ctx_free with a released handle whose QMP reply
 *                         is owed returns within its documented bound.
 *   event_after_release   an event read while a released handle's monitor
 *                         drains reaches nothing freed (found by
 *                         test-lib-crashpoints under ASan).
 *
 * The helpers reach libdm's internals (dm-private.h) only to find the
 * moment "keeper spawned, pid not yet told" from outside.
 */
#include "config.h"

#include <dirent.h>
#include <malloc.h>
#include <errno.h>
#include <fcntl.h>
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
#include "dm-private.h"
#include "testutil.h"
#include "qemu-fixture.h"

#define LONG_MS 10000

typedef struct fixture {
    qf_store s;         /* store and context */
    char *bindir;
    char prefix[32];    /* unique per test: names are PREFIX-N */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    qf_open(&f->s, "abandon");
    f->bindir = tu_mkdtemp("abandon-bin");
    assert_non_null(f->bindir);
    snprintf(f->prefix, sizeof(f->prefix), "ab%d", (int)getpid());
    *state = f;
    return 0;
}

/* QEMU processes (argv[0] a qemu-system binary) named PREFIX-N: how many;
 * kill_qemus SIGKILLs them too. */
static int qemus(const char *prefix, bool kill)
{
    char want[64];

    snprintf(want, sizeof(want), "%s-", prefix);
    return tu_qemus_named(want, kill);
}

static int count_qemus(const char *prefix)
{
    return qemus(prefix, false);
}

static void kill_qemus(const char *prefix)
{
    (void)qemus(prefix, true);
}

static int teardown(void **state)
{
    fixture *f = *state;
    libdm_dm_info *infos = NULL;
    size_t n = 0;

    /* A failed test may leave QEMUs: never for the next test. */
    kill_qemus(f->prefix);
    if (f->s.ctx) {
        tu_settle_children(f->s.ctx, 0);
        if (libdm_dm_list(f->s.ctx, &infos, &n) == 0) {
            for (size_t i = 0; i < n; i++)
                (void)libdm_dm_forget(f->s.ctx, infos[i].name);
            libdm_dm_info_free(infos, n);
        }
    }
    qf_close(&f->s);
    tu_rmtree(f->bindir);
    free(f->bindir);
    free(f);
    return 0;
}

static libdm_dm_config *config(fixture *f, int i, int timeout_ms)
{
    return qf_config_nth(f->prefix, i, timeout_ms);
}

static void run_for(libdm_ctx *ctx, int ms)
{
    uint64_t end = tu_now_ms() + (uint64_t)ms;

    while (tu_now_ms() < end)
        libdm_ctx_run_once(ctx, 5);
}

/* ---- (1) released after the keeper's spawn, before its "pid" ---- */

static int destroyed;
static void count_destroy(void *user) { (void)user; destroyed++; }

static void never_called(libdm_dm *dm, int status, void *user)
{
    (void)dm, (void)status, (void)user;
    fail_msg("the callback of a released start ran");
}

#define N_RELEASE 10

static void test_release_after_spawn(void **state)
{
    fixture *f = *state;
    libdm_dm *dms[N_RELEASE];
    int released = 0;
    uint64_t deadline;

    for (int i = 0; i < N_RELEASE; i++) {
        libdm_dm_config *cfg = config(f, i, LONG_MS);

        assert_int_equal(libdm_dm_start_async(f->s.ctx, cfg, never_called, NULL, &dms[i]), 0);
        libdm_dm_config_free(cfg);
    }
    /* Each handle is released in the dispatch right after its keeper was
     * spawned: long before the keeper (exec, fork, record) tells the pid. */
    deadline = tu_now_ms() + LONG_MS;
    while (released < N_RELEASE && tu_now_ms() < deadline) {
        libdm_ctx_run_once(f->s.ctx, 5);
        for (int i = 0; i < N_RELEASE; i++)
            if (dms[i] && dms[i]->keeper && libdm__dm_start_awaits_pid(dms[i])) {
                dms[i] = libdm_dm_release(dms[i]);
                released++;
            }
    }
    assert_int_equal(released, N_RELEASE);
    /* Autokill ends each of them: no QEMU runs, nothing stays recorded. */
    deadline = tu_now_ms() + LONG_MS;
    while ((count_qemus(f->prefix) > 0 || qf_listed(f->s.ctx) > 0) && tu_now_ms() < deadline)
        run_for(f->s.ctx, 50);
    assert_int_equal(count_qemus(f->prefix), 0);
    assert_int_equal(qf_listed(f->s.ctx), 0);
    tu_settle_children(f->s.ctx, 0);
    assert_int_equal(tu_child_count(), 0);
}

/* ---- (2) the start deadline passes before the keeper's "pid" ---- */

typedef struct done {
    bool done;
    int status;
    uint64_t at;
    int qemus_at_callback;
    char *error;
} done;

static const char *qemu_prefix;

static void on_done(libdm_dm *dm, int status, void *user)
{
    done *d = user;

    d->done = true;
    d->status = status;
    d->at = tu_now_ms();
    d->qemus_at_callback = qemu_prefix ? count_qemus(qemu_prefix) : 0;
    d->error = libdm_dm_last_error(dm) ? strdup(libdm_dm_last_error(dm)) : NULL;
}

static void wait_done(libdm_ctx *ctx, done *d, int ms)
{
    uint64_t end = tu_now_ms() + (uint64_t)ms;

    while (!d->done && tu_now_ms() < end)
        libdm_ctx_run_once(ctx, 10);
    assert_true(d->done);
}

/* A keeper that takes 1.5 s to begin: exec'd by libdm as itself, it sleeps,
 * then execs the real keeper with the fds it was given. */
static char *slow_keeper(fixture *f)
{
    char *path;
    FILE *fp;

    assert_true(asprintf(&path, "%s/slow-keeper", f->bindir) > 0);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "#!/bin/sh\nsleep 1.5\nexec '%s' \"$@\"\n", getenv("LIBDM_KEEPER"));
    fclose(fp);
    assert_int_equal(chmod(path, 0755), 0);
    return path;
}

#define START_DEADLINE_MS 300

static void test_deadline_before_pid(void **state)
{
    fixture *f = *state;
    char *real = strdup(getenv("LIBDM_KEEPER")), *slow = slow_keeper(f);
    libdm_dm_config *cfg = config(f, 0, START_DEADLINE_MS);
    done d = { 0 }, d2 = { 0 };
    libdm_dm *dm, *dm2;
    uint64_t t0;

    assert_int_equal(setenv("LIBDM_KEEPER", slow, 1), 0);
    qemu_prefix = f->prefix;
    t0 = tu_now_ms();
    assert_int_equal(libdm_dm_start_async(f->s.ctx, cfg, on_done, &d, &dm), 0);
    wait_done(f->s.ctx, &d, LONG_MS);
    assert_int_equal(setenv("LIBDM_KEEPER", real, 1), 0);
    /* The deadline, said as such, and at once (not after a kill wait). */
    assert_int_equal(d.status, -ETIMEDOUT);
    assert_non_null(d.error);
    assert_non_null(strstr(d.error, "deadline"));
    assert_true(d.at - t0 < 1400);
    /* Nothing of it runs, nothing is left, and it never comes back. */
    assert_int_equal(d.qemus_at_callback, 0);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
    assert_int_equal(qf_listed(f->s.ctx), 0);
    run_for(f->s.ctx, 2000);
    assert_int_equal(count_qemus(f->prefix), 0);
    assert_int_equal(qf_listed(f->s.ctx), 0);
    libdm_dm_release(dm);
    /* The name is free: one DM of it, the new one. */
    assert_int_equal(libdm_dm_config_set_timeout_ms(cfg, LONG_MS), 0);
    assert_int_equal(libdm_dm_start_async(f->s.ctx, cfg, on_done, &d2, &dm2), 0);
    qemu_prefix = NULL;
    wait_done(f->s.ctx, &d2, LONG_MS);
    assert_int_equal(d2.status, 0);
    assert_int_equal(count_qemus(f->prefix), 1);
    assert_int_equal(libdm_dm_stop(dm2, 1, LONG_MS), 0);
    libdm_dm_release(dm2);
    tu_settle_children(f->s.ctx, 0);
    assert_int_equal(tu_child_count(), 0);
    assert_int_equal(count_qemus(f->prefix), 0);
    libdm_dm_config_free(cfg);
    free(d.error);
    free(d2.error);
    free(real);
    free(slow);
}


/* ---- (3) release, ctx_free and stop in every order ---- */

static libdm_dm *start_ready(fixture *f, libdm_ctx *ctx, int i)
{
    libdm_dm_config *cfg = config(f, i, LONG_MS);
    libdm_dm *dm = NULL;

    assert_int_equal(libdm_dm_start(ctx, cfg, &dm), 0);
    libdm_dm_config_free(cfg);
    return dm;
}

static libdm_ctx *new_ctx(fixture *f)
{
    libdm_ctx *ctx;

    assert_int_equal(libdm_ctx_new(NULL, &ctx), 0);
    assert_int_equal(libdm_ctx_set_store(ctx, f->s.dir), 0);
    return ctx;
}

/* Through a fresh context: @name is listed alive and attachable; stopped
 * there, with its keeper reaped by this process (no zombie). */
static void attach_and_stop(fixture *f, int i)
{
    libdm_ctx *ctx = f->s.ctx;
    libdm_dm *dm = NULL;
    char name[64];

    snprintf(name, sizeof(name), "%s-%d", f->prefix, i);
    assert_int_equal(libdm_dm_attach(ctx, name, &dm), 0);
    assert_int_equal(libdm_dm_stop(dm, 1, LONG_MS), 0);
    libdm_dm_release(dm);
}

static void no_child_left(fixture *f)
{
    tu_settle_children(f->s.ctx, 0);
    if (tu_child_count() != 0) {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "ps -o pid,stat,args --ppid %d >&2", (int)getpid());
        (void)!system(cmd);
    }
    assert_int_equal(tu_child_count(), 0);
    assert_int_equal(count_qemus(f->prefix), 0);
    assert_int_equal(qf_listed(f->s.ctx), 0);
}

static bool start_spawned(libdm_dm *dm)
{
    return dm->keeper && libdm__dm_start_awaits_pid(dm);
}

static void test_ctx_free_orders(void **state)
{
    fixture *f = *state;
    libdm_ctx *c1;
    libdm_dm *dm;
    uint64_t t0;
    int r;

    /* free, then release: the handle outlives its context. */
    c1 = new_ctx(f);
    dm = start_ready(f, c1, 0);
    libdm_ctx_free(c1);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_PAUSED);
    assert_non_null(libdm_dm_get_name(dm));
    assert_int_equal(libdm_dm_stop(dm, 1, LONG_MS), -ESHUTDOWN);
    assert_int_equal(libdm_dm_stop_async(dm, 1, LONG_MS, never_called, NULL), -ESHUTDOWN);
    assert_int_equal(libdm_dm_resume(dm, LONG_MS), -ESHUTDOWN);
    assert_int_equal(libdm_dm_pause_async(dm, LONG_MS, never_called, NULL), -ESHUTDOWN);
    assert_null(libdm_dm_get_qmp(dm));
    libdm_dm_release(dm);
    attach_and_stop(f, 0);
    no_child_left(f);

    /* release, then free. */
    c1 = new_ctx(f);
    dm = start_ready(f, c1, 1);
    libdm_dm_release(dm);
    libdm_ctx_free(c1);
    attach_and_stop(f, 1);
    no_child_left(f);

    /* stop in flight, then free, then release: stopped, or listed. */
    c1 = new_ctx(f);
    dm = start_ready(f, c1, 2);
    assert_int_equal(libdm_dm_stop_async(dm, 0, LONG_MS, never_called, NULL), 0);
    libdm_ctx_free(c1);
    libdm_dm_release(dm);
    {
        uint64_t end = tu_now_ms() + LONG_MS;
        char name[64];

        snprintf(name, sizeof(name), "%s-2", f->prefix);
        /* quit was sent: the DM ends; its record says so (or is gone). */
        while (count_qemus(f->prefix) > 0 && tu_now_ms() < end)
            run_for(f->s.ctx, 20);
        assert_int_equal(count_qemus(f->prefix), 0);
        /* The keeper records the end, then lets go of the name. */
        while ((r = libdm_dm_forget(f->s.ctx, name)) == -EBUSY && tu_now_ms() < end)
            run_for(f->s.ctx, 20);
        assert_true(r == 0 || r == -ENOENT);
    }
    /* ctx_free reaped the keeper of the stop it cut short (1 s at most;
     * a slower one, under ASan say, is this process's to reap). */
    {
        uint64_t end = tu_now_ms() + 5000;

        while (tu_child_count() > 0 && tu_now_ms() < end)
            if (waitpid(-1, NULL, WNOHANG) <= 0)
                usleep(10000);
    }
    no_child_left(f);

    /* A start before its keeper: freed, released, nothing left. */
    c1 = new_ctx(f);
    {
        libdm_dm_config *cfg = config(f, 3, LONG_MS);

        assert_int_equal(libdm_dm_start_async(c1, cfg, never_called, NULL, &dm), 0);
        libdm_dm_config_free(cfg);
    }
    libdm_ctx_free(c1);
    libdm_dm_release(dm);
    no_child_left(f);

    /* A start after its keeper's spawn (autokill armed): ctx_free ends it
     * and reaps the keeper itself, within its bound. */
    c1 = new_ctx(f);
    {
        libdm_dm_config *cfg = config(f, 4, LONG_MS);
        uint64_t end = tu_now_ms() + LONG_MS;

        assert_int_equal(libdm_dm_start_async(c1, cfg, never_called, NULL, &dm), 0);
        libdm_dm_config_free(cfg);
        while (!start_spawned(dm) && tu_now_ms() < end)
            libdm_ctx_run_once(c1, 5);
        assert_true(start_spawned(dm));
    }
    t0 = tu_now_ms();
    libdm_ctx_free(c1);
    assert_true(tu_now_ms() - t0 < 1500);
    assert_int_equal(tu_child_count(), 0);
    libdm_dm_release(dm);
    no_child_left(f);
}

/* ---- (6) ctx_free with a released handle whose reply is owed ---- */

static void ignore_reply(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    (void)q, (void)r, (void)user;
}

static void test_ctx_free_bounded(void **state)
{
    fixture *f = *state;
    libdm_ctx *c1 = new_ctx(f);
    libdm_dm *dm = start_ready(f, c1, 0);
    int pid = libdm_dm_get_pid(dm);
    uint64_t t0;

    /* QEMU stops reading: the reply to this call stays owed. */
    assert_int_equal(kill(pid, SIGSTOP), 0);
    assert_int_equal(libdm_qmp_call_async(libdm_dm_get_qmp(dm), "query-status", NULL, LONG_MS,
                                          ignore_reply, NULL, NULL), 0);
    run_for(c1, 50);
    libdm_dm_release(dm);
    t0 = tu_now_ms();
    libdm_ctx_free(c1);
    assert_true(tu_now_ms() - t0 < 1500);
    assert_int_equal(kill(pid, SIGCONT), 0);
    attach_and_stop(f, 0);
    no_child_left(f);
}

/* ---- (4) a blocking call runs nothing of another DM ---- */

static bool in_blocking;    /* a blocking call for DM A runs */
static int b_violations, b_events, b_replies, b_qmp_events;

static void b_event(libdm_dm *dm, const libdm_dm_event *ev, void *user)
{
    (void)dm, (void)ev, (void)user;
    b_events++;
    if (in_blocking)
        b_violations++;
}

static void b_reply(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    (void)q, (void)r, (void)user;
    b_replies++;
    if (in_blocking)
        b_violations++;
}

static void b_qmp_event(libdm_qmp *q, const char *name, const libdm_json *data, void *user)
{
    (void)q, (void)name, (void)data, (void)user;
    b_qmp_events++;
    if (in_blocking)
        b_violations++;
}

/* A's own state changes: never inside a blocking call made for A either. */
static int a_events, a_violations;

static void a_event(libdm_dm *dm, const libdm_dm_event *ev, void *user)
{
    (void)dm, (void)ev, (void)user;
    a_events++;
    if (in_blocking)
        a_violations++;
}

/* B gets a reply owed and an event coming (cont: RESUME, RUNNING), both
 * in its socket before A's blocking call starts. */
static void b_busy(libdm_dm *b)
{
    libdm_qmp *q = libdm_dm_get_qmp(b);

    assert_non_null(q);
    assert_int_equal(libdm_qmp_call_async(q, "query-status", NULL, LONG_MS, b_reply, NULL, NULL),
                     0);
    assert_int_equal(libdm_qmp_call_async(q, "cont", NULL, LONG_MS, b_reply, NULL, NULL), 0);
    /* Sent by the next iterations; then QEMU answers, unread. */
    for (int i = 0; i < 5; i++)
        libdm_ctx_run_once(libdm__dm_ctx(b), 0);
    usleep(300 * 1000);
}

/* Nothing of B ran inside A's blocking call; then B's @replies replies,
 * its QMP events and state events all come from the loop. */
static void assert_b_after(fixture *f, int replies)
{
    assert_int_equal(b_violations, 0);
    run_for(f->s.ctx, 300);
    assert_int_equal(b_replies, replies);
    assert_true(b_qmp_events >= 1);
    assert_true(b_events >= 1);
}

static void test_blocking_is_private(void **state)
{
    fixture *f = *state;
    libdm_dm *a = start_ready(f, f->s.ctx, 0), *b = start_ready(f, f->s.ctx, 1);
    libdm_json *v = NULL;
    char *rs = NULL;

    assert_int_equal(libdm_dm_set_event_callback(b, b_event, NULL), 0);
    assert_int_equal(libdm_dm_set_event_callback(a, a_event, NULL), 0);
    assert_int_equal(libdm_qmp_add_event_listener(libdm_dm_get_qmp(b), NULL, b_qmp_event, NULL,
                                                  NULL), 0);
    /* libdm_qmp_call() for A. */
    b_busy(b);
    in_blocking = true;
    assert_int_equal(libdm_qmp_call(libdm_dm_get_qmp(a), "query-status", NULL, LONG_MS, &v), 0);
    in_blocking = false;
    libdm_json_free(v);
    assert_b_after(f, 2);           /* B: PAUSED -> RUNNING */
    /* libdm_dm_query_status() for A, then libdm_dm_pause() for A. */
    b_replies = b_events = b_qmp_events = 0;
    assert_int_equal(libdm_qmp_call_async(libdm_dm_get_qmp(b), "stop", NULL, LONG_MS, b_reply,
                                          NULL, NULL), 0);
    b_busy(b);
    in_blocking = true;
    assert_int_equal(libdm_dm_query_status(a, LONG_MS, &rs), 0);
    assert_int_equal(libdm_dm_resume(a, LONG_MS), 0);
    in_blocking = false;
    free(rs);
    assert_b_after(f, 3);
    /* A's PAUSED -> RUNNING came from the loop, after its resume returned. */
    assert_int_equal(a_violations, 0);
    assert_true(a_events >= 1);
    assert_int_equal(libdm_dm_stop(a, 1, LONG_MS), 0);
    assert_int_equal(libdm_dm_stop(b, 1, LONG_MS), 0);
    libdm_dm_release(a);
    libdm_dm_release(b);
    no_child_left(f);
}

/* ---- (5) a stop's file work: never in a call, two per dispatch ---- */

/* Linked with --wrap: every file removal of the process is counted. */
static unsigned removals;
int __real_unlinkat(int dirfd, const char *path, int flags);
int __wrap_unlinkat(int dirfd, const char *path, int flags);
int __wrap_unlinkat(int dirfd, const char *path, int flags)
{
    removals++;
    return __real_unlinkat(dirfd, path, flags);
}
int __real_rmdir(const char *path);
int __wrap_rmdir(const char *path);
int __wrap_rmdir(const char *path)
{
    removals++;
    return __real_rmdir(path);
}

/* Runs the loop until @d is done; the most removals one dispatch made. */
static unsigned max_removals_per_dispatch(libdm_ctx *ctx, done *d)
{
    uint64_t end = tu_now_ms() + LONG_MS;
    unsigned most = 0;

    while (!d->done && tu_now_ms() < end) {
        removals = 0;
        libdm_ctx_run_once(ctx, 10);
        if (removals > most)
            most = removals;
    }
    assert_true(d->done);
    return most;
}

static void test_stop_file_steps(void **state)
{
    fixture *f = *state;
    libdm_dm *dm = start_ready(f, f->s.ctx, 0);
    char name[64];
    done d = { 0 };
    uint64_t end;

    snprintf(name, sizeof(name), "%s-0", f->prefix);
    /* A normal stop: quit, exit, then the files. */
    assert_int_equal(libdm_dm_stop_async(dm, 0, LONG_MS, on_done, &d), 0);
    assert_true(max_removals_per_dispatch(f->s.ctx, &d) <= 2);
    assert_int_equal(d.status, 0);
    assert_false(tu_path_exists(f->s.dir, name));
    assert_int_equal(qf_listed(f->s.ctx), 0);
    libdm_dm_release(dm);
    free(d.error);

    /* A stop of a DEAD DM: nothing removed inside the call. */
    dm = start_ready(f, f->s.ctx, 0);
    d = (done){ 0 };
    assert_int_equal(kill(libdm_dm_get_pid(dm), SIGKILL), 0);
    end = tu_now_ms() + LONG_MS;
    while (libdm_dm_get_state(dm) != LIBDM_DM_DEAD && tu_now_ms() < end)
        libdm_ctx_run_once(f->s.ctx, 10);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
    assert_true(tu_path_exists(f->s.dir, name));
    removals = 0;
    assert_int_equal(libdm_dm_stop_async(dm, 0, LONG_MS, on_done, &d), 0);
    assert_int_equal(removals, 0);
    assert_true(max_removals_per_dispatch(f->s.ctx, &d) <= 2);
    assert_int_equal(d.status, 0);
    assert_false(tu_path_exists(f->s.dir, name));
    assert_int_equal(qf_listed(f->s.ctx), 0);
    libdm_dm_release(dm);
    free(d.error);
    no_child_left(f);
}

/* ---- found by the campaign: an event while a released handle drains ---- */

static void test_event_after_release(void **state)
{
    fixture *f = *state;
    libdm_dm *dm = start_ready(f, f->s.ctx, 0);

    /* cont is written at once; its reply and the RESUME event arrive while
     * the released handle's connection drains: libdm's own listener must
     * be gone with the DM (it was a use after free). */
    assert_int_equal(libdm_qmp_call_async(libdm_dm_get_qmp(dm), "cont", NULL, LONG_MS,
                                          ignore_reply, NULL, NULL), 0);
    libdm_dm_release(dm);
    run_for(f->s.ctx, 500);
    attach_and_stop(f, 0);
    no_child_left(f);
}

/* ---- a keeper that does not act on "kill" ----
 * The controller holds no pidfd of QEMU's (issue 19, 4 fds a DM): its
 * keeper signals QEMU for it. A stopped keeper cannot: stop then kills
 * the keeper, and QEMU with it, and the DM ends DEAD, cleaned. (Before,
 * the controller SIGKILLed QEMU itself, the stopped keeper never reported
 * the end and the stop failed: "survived SIGKILL", -ETIMEDOUT.) */
static void test_stop_stopped_keeper(void **state)
{
    fixture *f = *state;
    libdm_dm *dm = start_ready(f, f->s.ctx, 0);
    int kpid = dm->keeper_pid;

    assert_true(kpid > 0);
    assert_int_equal(kill(kpid, SIGSTOP), 0);
    assert_int_equal(libdm_dm_stop(dm, 1, 3 * LONG_MS), 0);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
    libdm_dm_release(dm);
    no_child_left(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_release_after_spawn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_before_pid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctx_free_orders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctx_free_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocking_is_private, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_file_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_after_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_stopped_keeper, setup, teardown),
    };
    int r = tu_require_dm_env();

    if (r)
        return r;
    /* Freed memory is overwritten: a use after free shows, ASan or not. */
    mallopt(M_PERTURB, 0xa5);
    (void)count_destroy;
    (void)destroyed;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
