/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 19, daemon ergonomics, against the real libdm-keeper and a real
 * qemu-system-x86_64 (-machine none):
 *  - idle: a released running DM does not keep the context busy; the idle
 *    callback runs (ctx.h promises it), and once the DM is stopped through
 *    another handle its keeper is still reaped;
 *  - the record's writer lock held by another process's writer (here: the
 *    test holding its flock): no call or dispatch waits for it; the write
 *    (a state, the removal at a stop's end) happens once it is free;
 *  - forget with that lock held: the async form waits in the loop and
 *    removes the record once the lock is free, the blocking form says
 *    -EBUSY at once; never a success that leaves the record behind;
 *  - the plain logger (libdm_ctx_set_log_fn): a callback, its userdata and
 *    a level, no xentoollog vtable;
 *  - fork: a child forked while a handle holds the DM's monitor.lock does
 *    not keep the lock held (another process can attach once the parent
 *    released, while the child lives on).
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "qemu-fixture.h"
#include "testutil.h"

static char *dir;

static libdm_dm *start_dm(libdm_ctx *ctx, const char *tag)
{
    libdm_dm_config *cfg;
    libdm_dm *dm = NULL;
    char name[64];

    snprintf(name, sizeof(name), "ergo%d-%s", (int)getpid(), tag);
    if (libdm_dm_config_new(&cfg) < 0 || libdm_dm_config_set_name(cfg, name) < 0 ||
        libdm_dm_config_set_qemu_path(cfg, tu_qemu()) < 0 ||
        libdm_dm_config_set_timeout_ms(cfg, 20000) < 0 || libdm_dm_start(ctx, cfg, &dm) < 0) {
        printf("# cannot start %s\n", name);
        exit(99);
    }
    libdm_dm_config_free(cfg);
    return dm;
}

/* ---- idle ---- */

static int idle_calls;
static void on_idle(libdm_ctx *ctx, void *user)
{
    idle_calls++;
}

static void test_idle_after_release(void)
{
    libdm_ctx *ctx;
    libdm_dm *dm, *again = NULL;
    char name[80], detail[200];
    uint64_t end;

    if (libdm_ctx_new(NULL, &ctx) < 0 || libdm_ctx_set_store(ctx, dir) < 0)
        exit(99);
    dm = start_dm(ctx, "idle");
    snprintf(name, sizeof(name), "%s", libdm_dm_get_name(dm));
    libdm_ctx_set_idle_callback(ctx, on_idle, NULL);
    idle_calls = 0;
    libdm_dm_release(dm);
    end = tu_now_ms() + 3000;
    while (!idle_calls && tu_now_ms() < end)
        libdm_ctx_run_once(ctx, 10);
    snprintf(detail, sizeof(detail), "idle callback ran %d times, is_idle %d", idle_calls,
             libdm_ctx_is_idle(ctx));
    tu_ok(idle_calls >= 1, "idle: the callback runs after a running DM is released", detail);
    tu_ok(libdm_ctx_is_idle(ctx) == 1, "idle: libdm_ctx_is_idle says so", detail);

    /* Stopped through another handle: the keeper (our child) is reaped. */
    if (libdm_dm_attach(ctx, name, &again) < 0)
        exit(99);
    tu_ok(libdm_dm_stop(again, 0, 10000) == 0, "idle: stopped through a new handle", NULL);
    libdm_dm_release(again);
    tu_settle_children(ctx, 0);
    tu_ok(tu_child_count() == 0, "idle: no child left (the keeper was reaped)", NULL);
    libdm_ctx_free(ctx);
}

/* ---- the record's writer lock held by another: never waited in a call
 * or a dispatch; the write happens once it is free ---- */

/* Runs @ctx for @ms (or until *@done, if @done), returns the longest
 * single libdm_ctx_run_once() in microseconds (its own wait excluded: it is
 * called with a 0 timeout and the test sleeps in poll itself). */
static uint64_t run_measured(libdm_ctx *ctx, int ms, const int *done)
{
    uint64_t end = tu_now_ms() + (uint64_t)ms, worst = 0;

    while (tu_now_ms() < end && !(done && *done)) {
        struct timespec a, b;
        uint64_t us;

        clock_gettime(CLOCK_MONOTONIC, &a);
        libdm_ctx_run_once(ctx, 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        /* signed: tv_nsec goes backwards when the call straddles a second */
        us = (uint64_t)(((int64_t)(b.tv_sec - a.tv_sec) * 1000000000 + (b.tv_nsec - a.tv_nsec)) / 1000);
        if (us > worst)
            worst = us;
        usleep(500);
    }
    return worst;
}

static int lock_record(const char *name)
{
    char path[600];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
        printf("# cannot lock %s\n", path);
        exit(99);
    }
    return fd;
}

static bool record_exists(const char *name)
{
    char path[600];

    snprintf(path, sizeof(path), "%s/%s/record", dir, name);
    return access(path, F_OK) == 0;
}

static void test_store_lock_held(void)
{
    libdm_ctx *ctx;
    libdm_dm *dm;
    qf_done res = { 0 };
    char name[80], detail[200];
    uint64_t worst;
    int fd;

    if (libdm_ctx_new(NULL, &ctx) < 0 || libdm_ctx_set_store(ctx, dir) < 0)
        exit(99);
    dm = start_dm(ctx, "lock");
    snprintf(name, sizeof(name), "%s", libdm_dm_get_name(dm));

    /* A pause records the new state: held lock, no wait. */
    fd = lock_record(name);
    if (libdm_dm_pause_async(dm, 10000, qf_on_done, &res) < 0)
        exit(99);
    worst = run_measured(ctx, 400, NULL);
    snprintf(detail, sizeof(detail), "longest dispatch %llu us", (unsigned long long)worst);
    tu_ok(worst < 100000, "lock: no dispatch waits for the record's lock (pause)", detail);
    close(fd);
    run_measured(ctx, 3000, &res.n);
    tu_ok(res.n && res.status == 0, "lock: the pause completed", NULL);

    /* A stop removes the record at its end: held lock, no wait; the record
     * goes once the lock is free. */
    res = (qf_done){ 0 };
    fd = lock_record(name);
    if (libdm_dm_stop_async(dm, 0, 10000, qf_on_done, &res) < 0)
        exit(99);
    worst = run_measured(ctx, 1500, NULL);
    snprintf(detail, sizeof(detail), "longest dispatch %llu us; done %d", (unsigned long long)worst,
             res.n);
    tu_ok(worst < 100000, "lock: no dispatch waits for the record's lock (stop)", detail);
    tu_ok(!res.n && record_exists(name), "lock: the stop waits for the lock in the loop", detail);
    close(fd);
    run_measured(ctx, 10000, &res.n);
    snprintf(detail, sizeof(detail), "done %d status %d", res.n, res.status);
    tu_ok(res.n && res.status == 0 && !record_exists(name),
       "lock: the stop completed and removed the record once the lock was free", detail);
    libdm_dm_release(dm);
    tu_settle_children(ctx, 0);
    libdm_ctx_free(ctx);
}

/* ---- forget while another writer holds the record's lock ---- */

static void on_forgot(libdm_ctx *ctx, int status, void *user)
{
    qf_done *r = user;

    (void)ctx;
    r->n++;
    r->status = status;
}

/* The parent of @pid, from /proc (its keeper). */
static int parent_of(int pid)
{
    char path[64], comm[64], state;
    int ppid = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    f = fopen(path, "re");
    if (!f || fscanf(f, "%*d %63s %c %d", comm, &state, &ppid) != 3)
        ppid = 0;
    if (f)
        fclose(f);
    return ppid;
}

static void test_forget_lock_held(void)
{
    libdm_ctx *ctx;
    libdm_dm *dm;
    qf_done res = { 0 };
    char name[80], detail[200];
    int fd, keeper, r;

    if (libdm_ctx_new(NULL, &ctx) < 0 || libdm_ctx_set_store(ctx, dir) < 0)
        exit(99);
    /* A DM whose keeper died with it and left its record: forget's case. */
    dm = start_dm(ctx, "forget");
    snprintf(name, sizeof(name), "%s", libdm_dm_get_name(dm));
    keeper = parent_of(libdm_dm_get_pid(dm));
    libdm_dm_release(dm);
    if (keeper <= 1 || kill(keeper, SIGKILL) < 0)
        exit(99);
    tu_settle_children(ctx, 0);
    tu_ok(record_exists(name), "forget: the dead DM's record is there", NULL);

    /* Blocking, the lock held throughout: -EBUSY at once, never a
     * success that leaves the record. */
    fd = lock_record(name);
    r = libdm_dm_forget(ctx, name);
    snprintf(detail, sizeof(detail), "forget: %d (%s); record %s", r, strerror(-r),
             record_exists(name) ? "still there" : "gone");
    tu_ok(r == -EBUSY && record_exists(name), "forget: held lock -> -EBUSY, record kept", detail);

    /* Async: waits in the loop while the lock is held, then removes. */
    if (libdm_dm_forget_async(ctx, name, on_forgot, &res, NULL) < 0)
        exit(99);
    run_measured(ctx, 300, NULL);
    snprintf(detail, sizeof(detail), "done %d status %d; record %s", res.n, res.status,
             record_exists(name) ? "there" : "gone");
    tu_ok(!res.n && record_exists(name), "forget_async: waits while the lock is held", detail);
    close(fd);
    run_measured(ctx, 3000, &res.n);
    snprintf(detail, sizeof(detail), "done %d status %d; record %s", res.n, res.status,
             record_exists(name) ? "there" : "gone");
    tu_ok(res.n && res.status == 0 && !record_exists(name),
       "forget_async: removes the record once the lock is free", detail);
    libdm_ctx_free(ctx);
}

/* ---- the plain logger ---- */

static int log_lines, log_errors;
static char log_first_error[512];
static void on_log(libdm_ctx *ctx, xentoollog_level level, const char *message, void *user)
{
    (void)ctx;
    log_lines += user == (void *)&log_lines;
    if (level >= XTL_ERROR && !log_errors++)
        snprintf(log_first_error, sizeof(log_first_error), "%s", message);
}

static void test_plain_logger(void)
{
    libdm_ctx *ctx;
    libdm_dm *dm = NULL;
    char detail[700];
    int r;

    if (libdm_ctx_new(NULL, &ctx) < 0)
        exit(99);
    tu_ok(libdm_ctx_set_log_fn(ctx, on_log, &log_lines, 99) == -EINVAL,
       "logger: a bad level is refused", NULL);
    tu_ok(libdm_ctx_set_log_fn(ctx, on_log, &log_lines, XTL_DEBUG) == 0, "logger: set", NULL);
    if (libdm_ctx_set_store(ctx, dir) < 0)
        exit(99);
    /* An error with an errno, through the callback: attach to no DM. */
    r = libdm_dm_attach(ctx, "ergo-no-such-dm", &dm);
    snprintf(detail, sizeof(detail), "attach %d, %d lines, %d errors, first: %s", r, log_lines,
             log_errors, log_first_error);
    tu_ok(r == -ENOENT && log_lines > 0, "logger: libdm's messages reach the callback", detail);
    tu_ok(libdm_ctx_set_log_fn(ctx, NULL, NULL, XTL_DEBUG) == -EBUSY,
       "logger: not switched once the store is open", NULL);
    libdm_ctx_free(ctx);
}

/* ---- fork: a child does not keep monitor.lock ---- */

static void test_fork_lock(void)
{
    libdm_ctx *ctx, *ctx2;
    libdm_dm *dm, *again = NULL;
    char name[80], detail[300];
    pid_t child;
    int r, status;

    if (libdm_ctx_new(NULL, &ctx) < 0 || libdm_ctx_set_store(ctx, dir) < 0)
        exit(99);
    dm = start_dm(ctx, "fork");
    snprintf(name, sizeof(name), "%s", libdm_dm_get_name(dm));
    /* A child forked while the handle holds monitor.lock; it lives on
     * (a forking daemon's worker) and never execs. */
    child = fork();
    if (child == 0) {
        sleep(20);
        _exit(0);
    }
    if (child < 0)
        exit(99);
    libdm_dm_release(dm);
    if (libdm_ctx_new(NULL, &ctx2) < 0 || libdm_ctx_set_store(ctx2, dir) < 0)
        exit(99);
    r = libdm_dm_attach_timeout(ctx2, name, 2000, &again);
    snprintf(detail, sizeof(detail), "attach %d (%s): %s", r, strerror(r < 0 ? -r : 0),
             again && libdm_dm_last_error(again) ? libdm_dm_last_error(again) : "");
    tu_ok(r == 0 && again && libdm_dm_get_state(again) != LIBDM_DM_BROKEN,
       "fork: the DM can be attached while the forked child lives (no lock kept)", detail);
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    if (!again && libdm_dm_attach_flags(ctx2, name, 5000, LIBDM_ATTACH_ANY_MONITOR, &again) < 0)
        exit(99);
    tu_ok(libdm_dm_stop(again, 1, 10000) == 0, "fork: stopped", NULL);
    libdm_dm_release(again);
    tu_settle_children(ctx, 0);
    tu_settle_children(ctx2, 0);
    libdm_ctx_free(ctx2);
    libdm_ctx_free(ctx);
}

int main(void)
{
    int r = tu_require_dm_env();

    if (r)
        return r;
    dir = tu_mkdtemp("ergo");
    if (!dir)
        return 99;
    test_idle_after_release();
    test_store_lock_held();
    test_forget_lock_held();
    test_plain_logger();
    test_fork_lock();
    tu_rmtree(dir);
    free(dir);
    return tu_tap_done();
}
