/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Stress: many short lives, nothing may accumulate.
 *
 *  - fake_cycles: 1,000 connect / negotiate / query-status / close cycles on
 *    one context against a fakeqmp server in auto mode (tests/harness/
 *    fakeqmp.h). The process fd count is identical at the end, and RSS
 *    (/proc/self/statm) grows by less than 1 MiB between cycle 100 and the
 *    last cycle.
 *  - real_cycles: 100 libdm_dm_start / resume / stop cycles of a real
 *    qemu-system-x86_64 -machine none on one context (needs LIBDM_KEEPER,
 *    skipped otherwise), with the same fd and RSS checks (RSS from cycle 10)
 *    and no child left after each cycle has settled.
 *
 * LIBDM_STRESS_QUICK=1 or LIBDM_FAULT_QUICK=1 (for valgrind) runs 200 fake and 10 real cycles and
 * only reports the RSS growth (valgrind's own allocator makes it
 * meaningless; its leak check replaces it).
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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "fakeqmp.h"
#include "testutil.h"

#define RSS_LIMIT_KIB 1024

static bool quick;
static unsigned fake_done, real_done;
static long fake_rss_delta = -1, real_rss_delta = -1;
static int fake_fd_delta, real_fd_delta;
static bool real_skipped;

/* Resident set size in KiB, from /proc/self/statm (second field, pages). */
static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    long size = 0, resident = -1;

    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* ASan keeps freed memory in quarantine, so RSS says nothing there; its
 * LeakSanitizer checks leaks instead. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_MEANINGFUL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_MEANINGFUL 0
#endif
#endif
#ifndef RSS_MEANINGFUL
#define RSS_MEANINGFUL 1
#endif

static void check_rss(const char *what, long delta)
{
    if (delta >= RSS_LIMIT_KIB) {
        if (quick || !RSS_MEANINGFUL)
            print_message("%s: RSS grew by %ld KiB (not enforced under %s)\n", what, delta,
                          quick ? "LIBDM_STRESS_QUICK" : "AddressSanitizer");
        else
            fail_msg("%s: RSS grew by %ld KiB (limit %d KiB)", what, delta, RSS_LIMIT_KIB);
    }
}

static void test_fake_cycles(void **state)
{
    unsigned cycles = quick ? 200 : 1000, mark = quick ? 50 : 100;
    int fds_before, fds_mark = -1;
    long rss_mark = -1, rss_end;
    char *dir, *sock;
    libdm_ctx *ctx;
    fakeqmp *f;

    (void)state;
    fds_before = tu_fd_count();
    dir = tu_mkdtemp("stress");
    assert_non_null(dir);
    assert_true(asprintf(&sock, "%s/qmp.sock", dir) > 0);
    f = fakeqmp_new(sock);
    assert_non_null(f);
    fakeqmp_set_auto(f, 1);
    assert_int_equal(fakeqmp_start(f), 0);
    assert_int_equal(libdm_ctx_new(NULL, &ctx), 0);

    for (unsigned i = 1; i <= cycles; i++) {
        libdm_qmp *q = NULL;
        libdm_json *v = NULL;
        int r;

        r = libdm_qmp_open(ctx, sock, 2000, &q);
        if (r != 0)
            fail_msg("cycle %u: libdm_qmp_open: %s", i, strerror(-r));
        r = libdm_qmp_call(q, "query-status", NULL, 2000, &v);
        if (r != 0)
            fail_msg("cycle %u: query-status: %s (%s)", i, strerror(-r),
                     libdm_qmp_last_error(q) ? libdm_qmp_last_error(q) : "");
        assert_non_null(v);
        assert_non_null(libdm_json_get_string(libdm_json_object_get(v, "status")));
        libdm_json_free(v);
        r = libdm_qmp_close(q, 2000);
        if (r != 0)
            fail_msg("cycle %u: libdm_qmp_close: %s", i, strerror(-r));
        if (i == mark) {
            /* The server closes its side of the connection in its own
             * thread: let it, so that only libdm's fds are compared. */
            assert_int_equal(fakeqmp_wait_finished(f, 2000), 1);
            fds_mark = tu_fd_count();
            rss_mark = rss_kib();
        }
        fake_done = i;
    }
    /* With the server and the context still alive: same fds as at the mark. */
    assert_int_equal(fakeqmp_wait_finished(f, 2000), 1);
    assert_int_equal(tu_fd_count(), fds_mark);
    rss_end = rss_kib();
    assert_true(rss_mark > 0 && rss_end > 0);
    fake_rss_delta = rss_end - rss_mark;
    assert_int_equal(fakeqmp_connections(f), cycles);
    assert_int_equal(fakeqmp_mismatches(f), 0);

    libdm_ctx_free(ctx);
    fakeqmp_free(f);
    tu_rmtree(dir);
    free(dir);
    free(sock);
    fake_fd_delta = tu_fd_count() - fds_before;
    assert_int_equal(fake_fd_delta, 0);
    check_rss("fake cycles", fake_rss_delta);
}

static void test_real_cycles(void **state)
{
    unsigned cycles = quick ? 10 : 100, mark = quick ? 3 : 10;
    int fds_before, fds_mark = -1, children_before;
    long rss_mark = -1, rss_end;
    libdm_dm_config *cfg;
    libdm_ctx *ctx;
    uint64_t t0 = tu_now_ms();
    char *dir;

    (void)state;
    if (!getenv("LIBDM_KEEPER") || !tu_have_qemu() || !tu_have_pidfd()) {
        real_skipped = true;
        print_message("real_cycles: skipped (needs LIBDM_KEEPER, %s and pidfd_open)\n",
                      tu_qemu());
        skip();
    }
    fds_before = tu_fd_count();
    children_before = tu_child_count();
    dir = tu_mkdtemp("stress-dm");
    assert_non_null(dir);
    assert_int_equal(libdm_ctx_new(NULL, &ctx), 0);
    assert_int_equal(libdm_ctx_set_store(ctx, dir), 0);
    assert_int_equal(libdm_dm_config_new(&cfg), 0);
    assert_int_equal(libdm_dm_config_set_name(cfg, "stress"), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(cfg, tu_qemu()), 0);
    assert_int_equal(libdm_dm_config_set_timeout_ms(cfg, 10000), 0);

    for (unsigned i = 1; i <= cycles; i++) {
        libdm_dm *dm = NULL;
        int r, pid;

        r = libdm_dm_start(ctx, cfg, &dm);
        if (r != 0)
            fail_msg("cycle %u: libdm_dm_start: %s", i, strerror(-r));
        pid = libdm_dm_get_pid(dm);
        r = libdm_dm_resume(dm, 5000);
        if (r != 0)
            fail_msg("cycle %u: resume: %s (%s)", i, strerror(-r),
                     libdm_dm_last_error(dm) ? libdm_dm_last_error(dm) : "");
        assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_RUNNING);
        r = libdm_dm_stop(dm, 0, 5000);
        if (r != 0)
            fail_msg("cycle %u: stop: %s", i, strerror(-r));
        assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
        assert_true(WIFEXITED(libdm_dm_get_exit_status(dm)));
        assert_int_equal(WEXITSTATUS(libdm_dm_get_exit_status(dm)), 0);
        libdm_dm_release(dm);
        assert_false(kill(pid, 0) == 0);
        tu_settle_children(ctx, 0);
        if (tu_child_count() != children_before)
            fail_msg("cycle %u: %d children left", i, tu_child_count() - children_before);
        if (i == mark) {
            fds_mark = tu_fd_count();
            rss_mark = rss_kib();
        }
        real_done = i;
    }
    assert_int_equal(tu_fd_count(), fds_mark);
    rss_end = rss_kib();
    assert_true(rss_mark > 0 && rss_end > 0);
    real_rss_delta = rss_end - rss_mark;

    libdm_dm_config_free(cfg);
    libdm_ctx_free(ctx);
    tu_rmtree(dir);
    free(dir);
    real_fd_delta = tu_fd_count() - fds_before;
    assert_int_equal(real_fd_delta, 0);
    assert_int_equal(tu_child_count(), children_before);
    print_message("real_cycles: %u cycles in %llu ms\n", cycles,
                  (unsigned long long)(tu_now_ms() - t0));
    check_rss("real cycles", real_rss_delta);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fake_cycles),
        cmocka_unit_test(test_real_cycles),
    };
    const char *qv = getenv("LIBDM_STRESS_QUICK");
    long rss_delta;
    int failed;

    quick = qv && *qv && strcmp(qv, "0");
    /* .ci/run's valgrind stage sets LIBDM_FAULT_QUICK: shrink there too. */
    qv = getenv("LIBDM_FAULT_QUICK");
    quick = quick || (qv && *qv && strcmp(qv, "0"));
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    rss_delta = fake_rss_delta > real_rss_delta ? fake_rss_delta : real_rss_delta;
    printf("stress: %u fake cycles, %u real cycles%s, fd delta %d, rss delta %ld KiB "
           "(fake %ld KiB, real %ld KiB)%s\n",
           fake_done, real_done, real_skipped ? " (skipped)" : "",
           fake_fd_delta != 0 ? fake_fd_delta : real_fd_delta, rss_delta, fake_rss_delta,
           real_rss_delta, quick ? " [LIBDM_STRESS_QUICK]" : "");
    return failed;
}
