/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Contexts on several threads at once. libdm has no threads of its own and
 * no shared mutable state between contexts: each thread here owns one
 * libdm_ctx (never touched by another thread) and its own QMP server, and
 * all of them run concurrently.
 *
 *  - fake: 4 threads x 200 connect / query-status / close cycles, each
 *    against its own server. The servers are separate processes (the
 *    standalone fakeqmp program, $FAKEQMP, script "auto on") so that under
 *    ThreadSanitizer (tests/stress/run-tsan.sh) only libdm and this test are
 *    in the picture, not the harness's server threads. Without $FAKEQMP the
 *    in-process fakeqmp library is used instead.
 *  - real: 4 threads x 5 libdm_dm_start / query-status / resume / stop
 *    cycles of a real QEMU, one DM name per thread in a shared store
 *    directory (needs LIBDM_KEEPER; skipped otherwise).
 *
 * Assertions are only made on the main thread: workers record their first
 * failure. Afterwards the process has the same fds and no child left.
 * LIBDM_STRESS_QUICK=1 (or LIBDM_FAULT_QUICK=1) runs 50 fake cycles per thread and 2 real ones.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "fakeqmp.h"
#include "testutil.h"

#define NTHREADS 4

extern char **environ;

static bool quick;

typedef struct worker {
    pthread_t tid;
    int index;
    unsigned cycles;
    const char *sock;      /* fake: the server's socket */
    const char *store;     /* real: the shared store directory */
    unsigned done;
    char error[512];       /* first failure, "" if none */
} worker;

static void fail_worker(worker *w, const char *fmt, ...)
{
    va_list ap;

    if (w->error[0])
        return;
    va_start(ap, fmt);
    vsnprintf(w->error, sizeof(w->error), fmt, ap);
    va_end(ap);
}

static void *fake_worker(void *arg)
{
    worker *w = arg;
    libdm_ctx *ctx = NULL;
    int r;

    if ((r = libdm_ctx_new(NULL, &ctx)) != 0) {
        fail_worker(w, "libdm_ctx_new: %s", strerror(-r));
        return NULL;
    }
    for (unsigned i = 1; i <= w->cycles && !w->error[0]; i++) {
        libdm_qmp *q = NULL;
        libdm_json *v = NULL;

        r = libdm_qmp_open(ctx, w->sock, 5000, &q);
        if (r != 0) {
            fail_worker(w, "thread %d cycle %u: open: %s", w->index, i, strerror(-r));
            break;
        }
        r = libdm_qmp_call(q, "query-status", NULL, 5000, &v);
        if (r != 0)
            fail_worker(w, "thread %d cycle %u: query-status: %s (%s)", w->index, i,
                        strerror(-r), libdm_qmp_last_error(q) ? libdm_qmp_last_error(q) : "");
        else if (!libdm_json_get_string(libdm_json_object_get(v, "status")))
            fail_worker(w, "thread %d cycle %u: query-status without status", w->index, i);
        libdm_json_free(v);
        r = libdm_qmp_close(q, 5000);
        if (r != 0)
            fail_worker(w, "thread %d cycle %u: close: %s", w->index, i, strerror(-r));
        if (!w->error[0])
            w->done = i;
    }
    libdm_ctx_free(ctx);
    return NULL;
}

static void *real_worker(void *arg)
{
    worker *w = arg;
    libdm_dm_config *cfg = NULL;
    libdm_ctx *ctx = NULL;
    char name[32];
    int r;

    snprintf(name, sizeof(name), "thr%d", w->index);
    if ((r = libdm_ctx_new(NULL, &ctx)) != 0 || (r = libdm_ctx_set_store(ctx, w->store)) != 0 ||
        (r = libdm_dm_config_new(&cfg)) != 0 || (r = libdm_dm_config_set_name(cfg, name)) != 0 ||
        (r = libdm_dm_config_set_qemu_path(cfg, tu_qemu())) != 0 ||
        (r = libdm_dm_config_set_timeout_ms(cfg, 10000)) != 0) {
        fail_worker(w, "thread %d: setup: %s", w->index, strerror(-r));
        goto out;
    }
    for (unsigned i = 1; i <= w->cycles && !w->error[0]; i++) {
        libdm_dm *dm = NULL;
        char *rs = NULL;

        r = libdm_dm_start(ctx, cfg, &dm);
        if (r != 0) {
            fail_worker(w, "thread %d cycle %u: start: %s", w->index, i, strerror(-r));
            break;
        }
        if ((r = libdm_dm_query_status(dm, 5000, &rs)) != 0 || strcmp(rs, "prelaunch") != 0)
            fail_worker(w, "thread %d cycle %u: query-status: %d %s", w->index, i, r,
                        rs ? rs : "");
        free(rs);
        if ((r = libdm_dm_resume(dm, 5000)) != 0)
            fail_worker(w, "thread %d cycle %u: resume: %s", w->index, i, strerror(-r));
        if ((r = libdm_dm_stop(dm, 0, 5000)) != 0)
            fail_worker(w, "thread %d cycle %u: stop: %s", w->index, i, strerror(-r));
        else if (libdm_dm_get_state(dm) != LIBDM_DM_DEAD)
            fail_worker(w, "thread %d cycle %u: state %s after stop", w->index, i,
                        libdm_dm_state_to_string(libdm_dm_get_state(dm)));
        libdm_dm_release(dm);
        if (!w->error[0])
            w->done = i;
    }
    /* Let this context reap its keepers before it goes. */
    for (int k = 0; k < 100; k++)
        libdm_ctx_run_once(ctx, 5);
out:
    libdm_dm_config_free(cfg);
    libdm_ctx_free(ctx);
    return NULL;
}

static void run_workers(worker *w, void *(*fn)(void *))
{
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&w[i].tid, NULL, fn, &w[i]), 0);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_join(w[i].tid, NULL), 0);
    for (int i = 0; i < NTHREADS; i++)
        if (w[i].error[0])
            fail_msg("%s", w[i].error);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(w[i].done, w[i].cycles);
}

/* A fakeqmp program serving @sock in auto mode until SIGTERM. */
static pid_t spawn_fakeqmp(const char *prog, const char *dir, int index, const char *sock)
{
    posix_spawn_file_actions_t fa;
    char script[512], logf[512];
    char *argv[] = { (char *)prog, (char *)"--forever", (char *)sock, script, NULL };
    pid_t pid;
    FILE *s;

    snprintf(script, sizeof(script), "%s/auto.script", dir);
    snprintf(logf, sizeof(logf), "%s/fakeqmp-%d.log", dir, index);
    s = fopen(script, "we");
    assert_non_null(s);
    fputs("auto on\n", s);
    fclose(s);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, logf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    assert_int_equal(posix_spawn(&pid, prog, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

static void wait_path(const char *path)
{
    uint64_t deadline = tu_now_ms() + 5000;
    struct stat st;

    while (stat(path, &st) != 0 && tu_now_ms() < deadline)
        usleep(2000);
    assert_int_equal(stat(path, &st), 0);
}

static void test_threads_fake(void **state)
{
    const char *prog = getenv("FAKEQMP");
    int fds_before = tu_fd_count(), children_before = tu_child_count();
    worker w[NTHREADS];
    char *dir[NTHREADS], *sock[NTHREADS];
    fakeqmp *f[NTHREADS] = { 0 };
    pid_t pid[NTHREADS] = { 0 };
    uint64_t t0;

    (void)state;
    if (prog && access(prog, X_OK) != 0)
        prog = NULL;
    memset(w, 0, sizeof(w));
    for (int i = 0; i < NTHREADS; i++) {
        dir[i] = tu_mkdtemp("threads");
        assert_non_null(dir[i]);
        assert_true(asprintf(&sock[i], "%s/qmp.sock", dir[i]) > 0);
        if (prog) {
            pid[i] = spawn_fakeqmp(prog, dir[i], i, sock[i]);
            wait_path(sock[i]);
        } else {
            f[i] = fakeqmp_new(sock[i]);
            assert_non_null(f[i]);
            fakeqmp_set_auto(f[i], 1);
            assert_int_equal(fakeqmp_start(f[i]), 0);
        }
        w[i].index = i;
        w[i].cycles = quick ? 50 : 200;
        w[i].sock = sock[i];
    }
    t0 = tu_now_ms();
    run_workers(w, fake_worker);
    print_message("threads_fake: %d threads x %u cycles in %llu ms (%s servers)\n", NTHREADS,
                  w[0].cycles, (unsigned long long)(tu_now_ms() - t0),
                  prog ? "fakeqmp program" : "in-process fakeqmp");
    for (int i = 0; i < NTHREADS; i++) {
        if (prog) {
            int st;

            assert_int_equal(kill(pid[i], SIGTERM), 0);
            st = tu_reap(pid[i], 5000);
            /* 0: no mismatch (1 would list them in fakeqmp-N.log). */
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                fail_msg("fakeqmp server %d ended with wait status 0x%x", i, st);
        } else {
            assert_int_equal(fakeqmp_connections(f[i]), w[i].cycles);
            assert_int_equal(fakeqmp_mismatches(f[i]), 0);
            fakeqmp_free(f[i]);
        }
        tu_rmtree(dir[i]);
        free(dir[i]);
        free(sock[i]);
    }
    assert_int_equal(tu_fd_count_is(fds_before, "threads_fake"), fds_before);
    assert_int_equal(tu_child_count(), children_before);
}

static void test_threads_real(void **state)
{
    int fds_before = tu_fd_count(), children_before = tu_child_count();
    worker w[NTHREADS];
    uint64_t t0, deadline;
    char *dir;

    (void)state;
    if (!getenv("LIBDM_KEEPER") || !tu_have_qemu() || !tu_have_pidfd()) {
        print_message("threads_real: skipped (needs LIBDM_KEEPER, %s and pidfd_open)\n",
                      tu_qemu());
        skip();
    }
    dir = tu_mkdtemp("threads-dm");
    assert_non_null(dir);
    memset(w, 0, sizeof(w));
    for (int i = 0; i < NTHREADS; i++) {
        w[i].index = i;
        w[i].cycles = quick ? 2 : 5;
        w[i].store = dir;
    }
    t0 = tu_now_ms();
    run_workers(w, real_worker);
    print_message("threads_real: %d threads x %u DM cycles in %llu ms\n", NTHREADS, w[0].cycles,
                  (unsigned long long)(tu_now_ms() - t0));
    /* Keepers exit right after reporting; the workers' contexts reaped them,
     * or, when one outlived its context's bounded wait at ctx_free (slow
     * under ASan: the keeper's own leak check at exit), left it to the
     * process-wide orphans, which the next context that runs reaps (README).
     * This test is that context. Anything left then is a zombie child. */
    {
        libdm_ctx *reaper = NULL;

        assert_int_equal(libdm_ctx_new(NULL, &reaper), 0);
        deadline = tu_now_ms() + 10000;
        while (tu_child_count() != children_before && tu_now_ms() < deadline)
            libdm_ctx_run_once(reaper, 50);
        libdm_ctx_free(reaper);
    }
    assert_int_equal(tu_child_count(), children_before);
    tu_rmtree(dir);
    free(dir);
    assert_int_equal(tu_fd_count_is(fds_before, "threads_real"), fds_before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_fake),
        cmocka_unit_test(test_threads_real),
    };
    const char *qv = getenv("LIBDM_STRESS_QUICK");

    quick = qv && *qv && strcmp(qv, "0");
    /* .ci/run's valgrind stage sets LIBDM_FAULT_QUICK: shrink there too. */
    qv = getenv("LIBDM_FAULT_QUICK");
    quick = quick || (qv && *qv && strcmp(qv, "0"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
