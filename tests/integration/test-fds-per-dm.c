/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 19 ("scale to 1,000 DMs per daemon") and issue 23: the fds the
 * controlling process holds per running DM, against a real
 * qemu-system-x86_64 (-machine none) and the real libdm-keeper.
 *
 * Two DMs are started first (the keeper helper, 2 fds per context, exists
 * from the second start on), then FDS_N more: the growth of /proc/self/fd
 * over those FDS_N is the cost of one running DM. Each fd is printed with
 * its readlink() target so a change names itself.
 *
 * Measured 2026-12-05: 6 fds per DM, the run directory, its monitor.lock,
 * the monitor socket, the keeper channel, QEMU's pidfd and the keeper's
 * pidfd. Now 5: the keeper holds monitor.lock for its controller (sent
 * over the channel at spawn, the same open file, so the same flock).
 * FDS_PER_DM_MAX holds the current figure so the test guards against
 * growth; the TARGET is 4 (the keeper signals QEMU for the controller, so
 * the controller holds no pidfd of QEMU's; bench/README.md, issue 19).
 */
#include "config.h"

#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "testutil.h"
#include "qemu-fixture.h"

#define FDS_N 4
#define FDS_PER_DM_MAX 4
#define LONG_MS 10000

static void print_fds(const char *when)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;

    assert_non_null(d);
    print_message("fds %s:\n", when);
    while ((e = readdir(d))) {
        char path[PATH_MAX], target[PATH_MAX];
        ssize_t n;

        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
            continue;
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        n = readlink(path, target, sizeof(target) - 1);
        target[n < 0 ? 0 : n] = '\0';
        print_message("  %s -> %s\n", e->d_name, target);
    }
    closedir(d);
}

static void test_fds_per_running_dm(void **state)
{
    libdm_dm *dm[2 + FDS_N] = { NULL };
    char prefix[32];
    qf_store s;
    int before = -1, after;

    (void)state;
    qf_open(&s, "fds");
    snprintf(prefix, sizeof(prefix), "fd%d", (int)getpid());
    for (int i = 0; i < 2 + FDS_N; i++) {
        libdm_dm_config *cfg = qf_config_nth(prefix, i, LONG_MS);

        if (i == 2) {
            before = tu_fd_count();
            print_fds("with 2 DMs");
        }
        assert_int_equal(libdm_dm_start(s.ctx, cfg, &dm[i]), 0);
        /* started: PAUSED at prelaunch, QEMU and its keeper running */
        assert_int_equal(libdm_dm_get_state(dm[i]), LIBDM_DM_PAUSED);
        libdm_dm_config_free(cfg);
    }
    after = tu_fd_count();
    print_fds("with 2 + FDS_N DMs");
    print_message("fds per running DM: %d -> %d over %d DMs = %.2f (max %d)\n",
                  before, after, FDS_N, (double)(after - before) / FDS_N,
                  FDS_PER_DM_MAX);
    assert_true(after - before <= FDS_N * FDS_PER_DM_MAX);
    for (int i = 0; i < 2 + FDS_N; i++) {
        assert_int_equal(libdm_dm_stop(dm[i], 1, 5000), 0);
        libdm_dm_release(dm[i]);
    }
    qf_close(&s);
    qf_assert_clean(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fds_per_running_dm),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
