/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Device-model lifecycle against a real qemu-system-x86_64 (TCG): start
 * paused with readiness from QMP alone, guarded resume, pause, re-attach,
 * stop, a DM killed mid-command, DMs that die at start (bad option, seccomp
 * kill), restricted start as root. Every scenario checks that the test
 * process has the same fds and no child left afterwards.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
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

typedef struct fixture {
    char *dir;
    int fds_before;
    libdm_ctx *ctx;
    libdm_dm_config *cfg;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    f->fds_before = tu_fd_count();
    f->dir = tu_mkdtemp("dm");
    assert_non_null(f->dir);
    assert_int_equal(libdm_ctx_new(NULL, &f->ctx), 0);
    assert_int_equal(libdm_ctx_set_store(f->ctx, f->dir), 0);
    assert_int_equal(libdm_dm_config_new(&f->cfg), 0);
    assert_int_equal(libdm_dm_config_set_name(f->cfg, "t1"), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(f->cfg, tu_qemu()), 0);
    assert_int_equal(libdm_dm_config_set_timeout_ms(f->cfg, 10000), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    libdm_dm_config_free(f->cfg);
    libdm_ctx_free(f->ctx);
    tu_rmtree(f->dir);
    free(f->dir);
    /* Nothing leaked: same descriptors, and every child reaped. */
    assert_int_equal(tu_fd_count(), f->fds_before);
    assert_int_equal(tu_child_count(), 0);
    free(f);
    return 0;
}

/* Runs the loop until @pid is gone (reaped by its keeper) or 5 s pass. */
static void wait_gone(libdm_ctx *ctx, int pid)
{
    uint64_t deadline = tu_now_ms() + 5000;

    while (tu_pid_alive(pid) && tu_now_ms() < deadline)
        libdm_ctx_run_once(ctx, 10);
    assert_false(tu_pid_alive(pid));
}

/* The flags of @pid's descriptor @fd, from /proc/PID/fdinfo (octal). */
static long fd_flags(int pid, int fd)
{
    char path[64], line[128];
    long flags = -1;
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", pid, fd);
    fp = fopen(path, "re");
    if (!fp)
        return -1;
    while (fgets(line, sizeof(line), fp))
        if (sscanf(line, "flags: %lo", &flags) == 1)
            break;
    fclose(fp);
    return flags;
}

static void test_start_resume_stop(void **state)
{
    fixture *f = *state;
    libdm_dm *dm;
    char *rs = NULL;
    int pid;

    assert_int_equal(libdm_dm_start(f->ctx, f->cfg, &dm), 0);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_PAUSED);
    assert_string_equal(libdm_dm_get_runstate(dm), "prelaunch");
    pid = libdm_dm_get_pid(dm);
    assert_true(tu_pid_alive(pid));
    assert_true(tu_path_exists(f->dir, "t1/qmp.sock"));
    /* QEMU's listening socket (fd 3) must be non-blocking: QEMU may accept()
     * on a spurious wakeup, and a blocking listener hangs its main loop. */
    assert_true(fd_flags(pid, 3) >= 0);
    assert_true(fd_flags(pid, 3) & O_NONBLOCK);
    assert_true(tu_path_exists(f->dir, "t1/record"));

    /* A second DM of the same name is refused while the first lives. */
    libdm_dm *again = NULL;
    assert_int_equal(libdm_dm_start(f->ctx, f->cfg, &again), -EEXIST);
    assert_null(again);

    assert_int_equal(libdm_dm_resume(dm, 5000), 0);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_RUNNING);
    assert_int_equal(libdm_dm_query_status(dm, 5000, &rs), 0);
    assert_string_equal(rs, "running");
    free(rs);
    /* Resuming a running DM succeeds without sending cont again. */
    assert_int_equal(libdm_dm_resume(dm, 5000), 0);
    assert_int_equal(libdm_dm_pause(dm, 5000), 0);
    assert_int_equal(libdm_dm_query_status(dm, 5000, &rs), 0);
    assert_string_equal(rs, "paused");
    free(rs);

    assert_int_equal(libdm_dm_stop(dm, 0, 5000), 0);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
    assert_true(WIFEXITED(libdm_dm_get_exit_status(dm)));
    assert_int_equal(WEXITSTATUS(libdm_dm_get_exit_status(dm)), 0);
    /* Stop is safe to call twice. */
    assert_int_equal(libdm_dm_stop(dm, 0, 5000), 0);
    libdm_dm_release(dm);
    assert_false(tu_pid_alive(pid));
    assert_false(tu_path_exists(f->dir, "t1"));
    tu_settle_children(f->ctx, 0);
}

static void test_reattach(void **state)
{
    fixture *f = *state;
    libdm_ctx *other;
    libdm_dm *dm, *dm2;
    libdm_dm_info *infos;
    size_t n;
    int pid;

    assert_int_equal(libdm_dm_start(f->ctx, f->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    /* The DM outlives the handle (and, in dmctl, the process). */
    libdm_dm_release(dm);
    assert_true(tu_pid_alive(pid));

    assert_int_equal(libdm_ctx_new(NULL, &other), 0);
    assert_int_equal(libdm_ctx_set_store(other, f->dir), 0);
    assert_int_equal(libdm_dm_list(other, &infos, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(infos[0].name, "t1");
    assert_int_equal(infos[0].pid, pid);
    assert_true(infos[0].alive);
    libdm_dm_info_free(infos, n);

    assert_int_equal(libdm_dm_attach(other, "t1", &dm2), 0);
    assert_int_equal(libdm_dm_get_pid(dm2), pid);
    /* What it was started with comes back from the record. */
    assert_string_equal(libdm_dm_get_machine(dm2), "none");
    assert_int_equal(libdm_dm_get_memory_mb(dm2), 0);
    assert_int_equal(libdm_dm_get_state(dm2), LIBDM_DM_PAUSED);
    assert_int_equal(libdm_dm_resume(dm2, 5000), 0);
    assert_int_equal(libdm_dm_stop(dm2, 0, 5000), 0);
    /* Attached, so not the parent: the status comes from the keeper's
     * record, read on a timer once the pidfd reports the exit. */
    assert_true(WIFEXITED(libdm_dm_get_exit_status(dm2)));
    assert_int_equal(WEXITSTATUS(libdm_dm_get_exit_status(dm2)), 0);
    libdm_dm_release(dm2);
    assert_int_equal(libdm_dm_attach(other, "t1", &dm2), -ENOENT);
    libdm_ctx_free(other);
    assert_false(tu_pid_alive(pid));
    tu_settle_children(f->ctx, 0);
}

typedef struct outcome {
    bool done;
    int status;
} outcome;

static void on_reply(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    outcome *o = user;

    (void)q;
    o->done = true;
    o->status = r->status;
}

static void test_kill9_with_command_outstanding(void **state)
{
    fixture *f = *state;
    libdm_dm *dm;
    outcome o = { 0 };
    uint64_t t0;
    int pid;

    assert_int_equal(libdm_dm_start(f->ctx, f->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    /* Freeze QEMU so the command is certainly outstanding, then kill it. */
    assert_int_equal(kill(pid, SIGSTOP), 0);
    assert_int_equal(libdm_qmp_call_async(libdm_dm_get_qmp(dm), "query-status", NULL, 20000,
                                          on_reply, &o, NULL), 0);
    for (int i = 0; i < 5; i++)
        libdm_ctx_run_once(f->ctx, 10);
    assert_false(o.done);
    t0 = tu_now_ms();
    assert_int_equal(kill(pid, SIGKILL), 0);
    while ((!o.done || libdm_dm_get_state(dm) != LIBDM_DM_DEAD) && tu_now_ms() - t0 < 5000)
        libdm_ctx_run_once(f->ctx, 100);
    /* Promptly, not at the 20 s call deadline. */
    assert_true(o.done);
    assert_true(o.status < 0);
    assert_true(tu_now_ms() - t0 < 2000);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
    assert_true(WIFSIGNALED(libdm_dm_get_exit_status(dm)));
    assert_int_equal(WTERMSIG(libdm_dm_get_exit_status(dm)), SIGKILL);
    assert_non_null(strstr(libdm_dm_last_error(dm), "signal 9"));
    assert_int_equal(libdm_dm_stop(dm, 0, 5000), 0);
    libdm_dm_release(dm);
    assert_false(tu_path_exists(f->dir, "t1"));
    tu_settle_children(f->ctx, 0);
}

/* A DM that dies at start: a clear error, nothing left behind. */
static void start_must_fail(fixture *f, const char *expect_in_log)
{
    xentoollog_logger *lg;
    libdm_ctx *ctx;
    libdm_dm *dm = NULL;
    char *logtext = NULL;
    size_t loglen = 0;
    FILE *mem = open_memstream(&logtext, &loglen);
    uint64_t t0 = tu_now_ms();

    lg = (xentoollog_logger *)xtl_createlogger_stdiostream(mem, XTL_ERROR, 0);
    assert_int_equal(libdm_ctx_new(lg, &ctx), 0);
    assert_int_equal(libdm_ctx_set_store(ctx, f->dir), 0);
    assert_true(libdm_dm_start(ctx, f->cfg, &dm) < 0);
    assert_null(dm);
    assert_true(tu_now_ms() - t0 < 5000);
    tu_settle_children(ctx, 0);
    libdm_ctx_free(ctx);
    xtl_logger_destroy(lg);
    fclose(mem);
    /* The error names the DM, how it ended, and what its log said. */
    if (!strstr(logtext, expect_in_log))
        print_message("log was: %s\n", logtext);
    assert_non_null(strstr(logtext, "t1:"));
    assert_non_null(strstr(logtext, expect_in_log));
    free(logtext);
    assert_false(tu_path_exists(f->dir, "t1"));
}

static void test_exit_at_start(void **state)
{
    fixture *f = *state;

    assert_int_equal(libdm_dm_config_add_extra_arg(f->cfg, "-no-such-option"), 0);
    start_must_fail(f, "exited with status 1");
}

static void test_seccomp_kill_at_start(void **state)
{
    fixture *f = *state;

    if (geteuid() != 0)
        skip();
    /* FACTS: -runas with elevateprivileges=deny is killed by seccomp. */
    assert_int_equal(libdm_dm_config_set_runas(f->cfg, "nobody"), 0);
    assert_int_equal(libdm_dm_config_set_restrict(f->cfg, 1), 0);
    assert_int_equal(libdm_dm_config_add_extra_arg(f->cfg, "-sandbox"), 0);
    assert_int_equal(libdm_dm_config_add_extra_arg(f->cfg, "on,elevateprivileges=deny"), 0);
    start_must_fail(f, "signal 31");
}

static int proc_uid(int pid)
{
    char path[64], line[256];
    int uid = -1;
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    fp = fopen(path, "re");
    if (!fp)
        return -1;
    while (fgets(line, sizeof(line), fp))
        if (sscanf(line, "Uid: %d", &uid) == 1)
            break;
    fclose(fp);
    return uid;
}

static void test_restricted(void **state)
{
    fixture *f = *state;
    char chroot_dir[512];
    libdm_dm *dm;
    int pid;

    if (geteuid() != 0)
        skip();
    snprintf(chroot_dir, sizeof(chroot_dir), "%s/empty-root", f->dir);
    assert_int_equal(mkdir(chroot_dir, 0755), 0);
    assert_int_equal(libdm_dm_config_set_restrict(f->cfg, 1), 0);
    assert_int_equal(libdm_dm_config_set_runas(f->cfg, "nobody"), 0);
    assert_int_equal(libdm_dm_config_set_chroot(f->cfg, chroot_dir), 0);
    assert_int_equal(libdm_dm_start(f->ctx, f->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    assert_string_equal(libdm_dm_get_runstate(dm), "prelaunch");
    assert_int_equal(proc_uid(pid), 65534);
    assert_int_equal(libdm_dm_resume(dm, 5000), 0);
    assert_int_equal(libdm_dm_stop(dm, 0, 5000), 0);
    libdm_dm_release(dm);
    wait_gone(f->ctx, pid);
    assert_false(tu_path_exists(f->dir, "t1"));
    tu_settle_children(f->ctx, 0);
    rmdir(chroot_dir);
}

static void test_stop_hung_dm(void **state)
{
    fixture *f = *state;
    libdm_dm *dm;
    int pid;
    uint64_t t0;

    assert_int_equal(libdm_dm_start(f->ctx, f->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    /* A hung DM ignores quit; stop escalates to SIGTERM/SIGKILL. */
    assert_int_equal(kill(pid, SIGSTOP), 0);
    t0 = tu_now_ms();
    assert_int_equal(libdm_dm_stop(dm, 0, 500), 0);
    assert_true(tu_now_ms() - t0 < 6000);
    assert_false(tu_pid_alive(pid));
    libdm_dm_release(dm);
    tu_settle_children(f->ctx, 0);
}

static void test_attach_hung_dm_then_stop(void **state)
{
    fixture *f = *state;
    libdm_dm *dm, *dm2;
    uint64_t t0;
    char *rs = NULL;
    int pid;

    assert_int_equal(libdm_dm_start(f->ctx, f->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    libdm_dm_release(dm);
    /* The monitor of a stopped process never greets: attach must give up at
     * its deadline and still hand over a DM that can be stopped. */
    assert_int_equal(kill(pid, SIGSTOP), 0);
    t0 = tu_now_ms();
    assert_int_equal(libdm_dm_attach_timeout(f->ctx, "t1", 300, &dm2), 0);
    assert_true(tu_now_ms() - t0 < 1500);
    assert_int_equal(libdm_dm_get_state(dm2), LIBDM_DM_BROKEN);
    assert_non_null(strstr(libdm_dm_last_error(dm2), "monitor"));
    /* Calls report why the monitor is unusable: it missed its deadline. */
    assert_int_equal(libdm_dm_query_status(dm2, 1000, &rs), -ETIMEDOUT);
    assert_int_equal(libdm_dm_stop(dm2, 0, 500), 0);
    assert_int_equal(libdm_dm_get_state(dm2), LIBDM_DM_DEAD);
    libdm_dm_release(dm2);
    wait_gone(f->ctx, pid);
    assert_false(tu_path_exists(f->dir, "t1"));
    tu_settle_children(f->ctx, 0);
}

static void test_attach_refuses_planted_socket(void **state)
{
    fixture *f = *state;
    char sock[512], moved[512];
    libdm_dm *dm, *dm2 = NULL;

    assert_int_equal(libdm_dm_start(f->ctx, f->cfg, &dm), 0);
    libdm_dm_release(dm);
    /* Someone swaps the monitor socket for a link to another socket. */
    snprintf(sock, sizeof(sock), "%s/t1/qmp.sock", f->dir);
    snprintf(moved, sizeof(moved), "%s/t1/elsewhere.sock", f->dir);
    assert_int_equal(rename(sock, moved), 0);
    assert_int_equal(symlink(moved, sock), 0);
    assert_int_equal(libdm_dm_attach_timeout(f->ctx, "t1", 2000, &dm2), -ELOOP);
    assert_null(dm2);
    /* A regular file in its place is refused too. */
    assert_int_equal(unlink(sock), 0);
    assert_int_equal(close(open(sock, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)), 0);
    assert_int_equal(libdm_dm_attach_timeout(f->ctx, "t1", 2000, &dm2), -EPERM);
    /* Put the real socket back: attach and stop work again. */
    assert_int_equal(rename(moved, sock), 0);
    assert_int_equal(libdm_dm_attach_timeout(f->ctx, "t1", 2000, &dm2), 0);
    assert_int_equal(libdm_dm_stop(dm2, 0, 5000), 0);
    libdm_dm_release(dm2);
    tu_settle_children(f->ctx, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_resume_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reattach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_with_command_outstanding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seccomp_kill_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restricted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_hung_dm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_hung_dm_then_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_refuses_planted_socket, setup, teardown),
    };

    int skip = tu_require_dm_env();

    if (skip)
        return skip;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
