/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 23: a keeper costs a fork, not an exec. From a context's second
 * start, libdm-keeper --helper (exec'd once per context) forks each keeper.
 * Against a real qemu-system-x86_64 (-machine none) and the real keeper:
 *
 *   forked_by_helper     the keepers of a context's 2nd and 3rd DMs are
 *                        children of one helper (itself our child, running
 *                        `libdm-keeper --helper`), not of this process.
 *   helper_death         the helper SIGKILLed while two DMs run: both run
 *                        on, recorded and owned; one is stopped through its
 *                        handle (DEAD, reaped, files gone), the other's QEMU
 *                        is SIGKILLed from outside (DEAD with its cause);
 *                        the next start execs a new helper.
 *   keeper_kill          a helper-forked keeper SIGKILLed takes its DM with
 *                        it (DEAD reported, QEMU gone).
 *   config_tmp_left      a controller killed while it wrote the DM's
 *                        config.json (between its config.json.new and the
 *                        rename: test-crashpoints found it) leaves that
 *                        file; the stop still removes the whole run
 *                        directory.
 *   controller_sigkill   a controller SIGKILLed with two DMs ready (one
 *                        helper-forked) and two starts in flight (autokill
 *                        armed): nothing runs that is not listed and
 *                        attachable; the ready DMs run on.
 *
 * Checked to fail without the helper: on 88eb0bf (the tree before it) with
 * this test added, forked_by_helper, helper_death, keeper_kill and
 * controller_sigkill fail (the keeper's parent is this process);
 * config_tmp_left fails before c5c3a63 (the run directory stays).
 */
#include "config.h"

#include <dirent.h>
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
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "testutil.h"
#include "qemu-fixture.h"

#define LONG_MS 20000

typedef struct fixture {
    qf_store s;         /* store and context */
    char prefix[32];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    qf_open(&f->s, "khelper");
    snprintf(f->prefix, sizeof(f->prefix), "kh%d", (int)getpid());
    *state = f;
    return 0;
}

/* A failed test may leave DMs running (a controller's ready DMs run on by
 * design): their QEMUs (-name PREFIX-I) go, never into the next test. */
static void kill_leftovers(fixture *f)
{
    (void)tu_qemus_named(f->prefix, true);
}

static int teardown(void **state)
{
    fixture *f = *state;

    kill_leftovers(f);
    qf_close(&f->s);
    free(f);
    return 0;
}

static libdm_dm_config *config(fixture *f, int i)
{
    return qf_config_nth(f->prefix, i, LONG_MS);
}

static libdm_dm *start(fixture *f, libdm_ctx *ctx, int i)
{
    libdm_dm_config *cfg = config(f, i);
    libdm_dm *dm = NULL;

    assert_int_equal(libdm_dm_start(ctx, cfg, &dm), 0);
    libdm_dm_config_free(cfg);
    return dm;
}

/* /proc/PID/stat's ppid, or -1. */
static int ppid_of(int pid)
{
    char path[64], buf[512], *p;
    int ppid = -1;
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    fp = fopen(path, "re");
    if (!fp)
        return -1;
    if (fgets(buf, sizeof(buf), fp) && (p = strrchr(buf, ')')))
        (void)sscanf(p + 1, " %*c %d", &ppid);
    fclose(fp);
    return ppid;
}

static bool cmdline_has(int pid, const char *arg)
{
    char path[64], buf[4096];
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1)
        if (!strcmp(buf + i, arg))
            return true;
    return false;
}

/* QEMU's parent is its keeper (the init of its PID namespace, or its
 * subreaper parent). */
static int keeper_of(libdm_dm *dm)
{
    return ppid_of(libdm_dm_get_pid(dm));
}

static void wait_state(libdm_ctx *ctx, libdm_dm *dm, libdm_dm_state want)
{
    uint64_t end = tu_now_ms() + LONG_MS;

    while (libdm_dm_get_state(dm) != want && tu_now_ms() < end)
        libdm_ctx_run_once(ctx, 10);
    assert_int_equal(libdm_dm_get_state(dm), want);
}

static void wait_gone(int pid)
{
    uint64_t end = tu_now_ms() + LONG_MS;

    while (tu_pid_alive(pid) && ppid_of(pid) > 0 && tu_now_ms() < end)
        usleep(10000);
}

static void test_forked_by_helper(void **state)
{
    fixture *f = *state;
    libdm_dm *dm[3];
    int k1, k2, helper;

    for (int i = 0; i < 3; i++)
        dm[i] = start(f, f->s.ctx, i);
    k1 = keeper_of(dm[1]);
    k2 = keeper_of(dm[2]);
    helper = ppid_of(k1);
    assert_true(k1 > 0 && k2 > 0 && k1 != k2);
    /* One helper forked both; it is ours, and it is the keeper binary. */
    assert_int_not_equal(helper, (int)getpid());
    assert_int_equal(ppid_of(k2), helper);
    assert_int_equal(ppid_of(helper), (int)getpid());
    assert_true(cmdline_has(helper, "--helper"));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(libdm_dm_stop(dm[i], 1, LONG_MS), 0);
        libdm_dm_release(dm[i]);
    }
    /* Nothing running: the helper exits (idle), nothing is left. */
    tu_settle_children(f->s.ctx, 0);
    assert_int_equal(tu_child_count(), 0);
    assert_int_equal(qf_listed(f->s.ctx), 0);
}

static void test_helper_death(void **state)
{
    fixture *f = *state;
    libdm_dm *dm[4];
    int helper, qemu2, k3;

    for (int i = 0; i < 3; i++)
        dm[i] = start(f, f->s.ctx, i);
    helper = ppid_of(keeper_of(dm[1]));
    assert_int_not_equal(helper, (int)getpid());
    assert_true(cmdline_has(helper, "--helper"));
    assert_int_equal(ppid_of(keeper_of(dm[2])), helper);
    assert_int_equal(kill(helper, SIGKILL), 0);
    wait_gone(helper);
    libdm_ctx_run_once(f->s.ctx, 50);
    /* Both run on, owned and recorded. */
    assert_int_equal(libdm_dm_get_state(dm[1]), LIBDM_DM_PAUSED);
    assert_int_equal(libdm_dm_get_state(dm[2]), LIBDM_DM_PAUSED);
    assert_int_equal(qf_listed(f->s.ctx), 3);
    assert_int_equal(libdm_dm_resume(dm[1], LONG_MS), 0);
    /* One stopped through its handle. */
    assert_int_equal(libdm_dm_stop(dm[1], 1, LONG_MS), 0);
    assert_int_equal(libdm_dm_get_state(dm[1]), LIBDM_DM_DEAD);
    /* The other's QEMU killed from outside: DEAD, said so. */
    qemu2 = libdm_dm_get_pid(dm[2]);
    assert_int_equal(kill(qemu2, SIGKILL), 0);
    wait_state(f->s.ctx, dm[2], LIBDM_DM_DEAD);
    assert_true(WIFSIGNALED(libdm_dm_get_exit_status(dm[2])));
    /* The next start has a new helper. */
    dm[3] = start(f, f->s.ctx, 3);
    k3 = keeper_of(dm[3]);
    assert_int_not_equal(ppid_of(k3), helper);
    assert_int_not_equal(ppid_of(k3), (int)getpid());
    for (int i = 0; i < 4; i++) {
        assert_int_equal(libdm_dm_stop(dm[i], 1, LONG_MS), 0);
        libdm_dm_release(dm[i]);
    }
    tu_settle_children(f->s.ctx, 0);
    assert_int_equal(tu_child_count(), 0);
    assert_int_equal(qf_listed(f->s.ctx), 0);
}

static void test_keeper_kill(void **state)
{
    fixture *f = *state;
    libdm_dm *dm[2];
    int qemu;

    for (int i = 0; i < 2; i++)
        dm[i] = start(f, f->s.ctx, i);
    qemu = libdm_dm_get_pid(dm[1]);
    assert_int_not_equal(ppid_of(keeper_of(dm[1])), (int)getpid());
    assert_int_equal(kill(keeper_of(dm[1]), SIGKILL), 0);
    wait_state(f->s.ctx, dm[1], LIBDM_DM_DEAD);
    wait_gone(qemu);
    assert_false(tu_pid_alive(qemu) && ppid_of(qemu) > 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(libdm_dm_stop(dm[i], 1, LONG_MS), 0);
        libdm_dm_release(dm[i]);
    }
    tu_settle_children(f->s.ctx, 0);
    assert_int_equal(tu_child_count(), 0);
    assert_int_equal(qf_listed(f->s.ctx), 0);
}

static void test_config_tmp_left(void **state)
{
    fixture *f = *state;
    libdm_dm *dm = start(f, f->s.ctx, 0);
    char path[512];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s-0/config.json.new", f->s.dir, f->prefix);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("{\"partial", fp);
    fclose(fp);
    assert_int_equal(libdm_dm_stop(dm, 1, LONG_MS), 0);
    libdm_dm_release(dm);
    snprintf(path, sizeof(path), "%s-0", f->prefix);
    assert_false(tu_path_exists(f->s.dir, path));
    assert_int_equal(qf_listed(f->s.ctx), 0);
}

/* QEMUs whose argv has "-name PREFIX-I" (I >= @from). */
static int count_qemus(fixture *f, int from)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        for (int i = from; i < 4; i++) {
            char name[64];

            snprintf(name, sizeof(name), "%s-%d", f->prefix, i);
            if (cmdline_has(atoi(e->d_name), name) && ppid_of(atoi(e->d_name)) > 0)
                n++;
        }
    }
    closedir(d);
    return n;
}

static void nothing_done(libdm_dm *dm, int status, void *user)
{
    (void)dm, (void)status, (void)user;
}

/* A child controller: DMs 0 and 1 ready (1's keeper helper-forked), 2 and
 * 3 being started (autokill armed until ready), then it says so and waits
 * to be killed. */
static void controller(fixture *f, int wfd)
{
    libdm_ctx *ctx;
    libdm_dm *dm[4];

    if (libdm_ctx_new(NULL, &ctx) < 0 || libdm_ctx_set_store(ctx, f->s.dir) < 0)
        _exit(1);
    for (int i = 0; i < 4; i++) {
        libdm_dm_config *c = config(f, i);

        if (i < 2 && libdm_dm_start(ctx, c, &dm[i]) < 0)
            _exit(2);
        if (i >= 2 && libdm_dm_start_async(ctx, c, nothing_done, NULL, &dm[i]) < 0)
            _exit(3);
        libdm_dm_config_free(c);
    }
    for (int i = 0; i < 20; i++)
        libdm_ctx_run_once(ctx, 1);
    (void)!write(wfd, "x", 1);
    for (;;)
        libdm_ctx_run_once(ctx, 100);
}

static void test_controller_sigkill(void **state)
{
    fixture *f = *state;
    int p[2], status;
    uint64_t end;
    char c;
    pid_t pid;

    assert_int_equal(pipe(p), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        controller(f, p[1]);
    }
    close(p[1]);
    assert_int_equal(read(p[0], &c, 1), 1);
    close(p[0]);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    /* The starts in flight end under autokill (no QEMU of them), or, if
     * one became ready first, it runs on attachable; a start cut before its
     * keeper leaves at most a record with nothing running. The ready ones
     * run on, recorded and attachable. Nothing runs that `list` does not
     * show and `stop` cannot end. */
    end = tu_now_ms() + 5000;
    while (count_qemus(f, 2) > 0 && tu_now_ms() < end)
        libdm_ctx_run_once(f->s.ctx, 20);
    for (int i = 0; i < 4; i++) {
        char name[64];
        libdm_dm *dm;
        int r;

        snprintf(name, sizeof(name), "%s-%d", f->prefix, i);
        r = libdm_dm_attach(f->s.ctx, name, &dm);
        if (i < 2)
            assert_int_equal(r, 0);
        if (r == 0) {
            assert_int_equal(libdm_dm_stop(dm, 1, LONG_MS), 0);
            libdm_dm_release(dm);
        } else {
            assert_true(r == -ENOENT || r == -ESRCH);
            (void)libdm_dm_forget(f->s.ctx, name);
        }
    }
    assert_int_equal(count_qemus(f, 0), 0);
    assert_int_equal(qf_listed(f->s.ctx), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_forked_by_helper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_helper_death, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keeper_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_tmp_left, setup, teardown),
        cmocka_unit_test_setup_teardown(test_controller_sigkill, setup, teardown),
    };
    int r = tu_require_dm_env();

    if (r)
        return r;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
