/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A name's claim (libdm/rundir.c): the start that loses names the holder's
 * pid, even in the moment between the holder's flock and the pid it writes
 * into owner.lock (test-defects-12 saw that window once under load: the
 * loser said "in use by a device model" with no pid).
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "rundir-internal.h"
#include "testutil.h"

/* A holder that locked and has not written its pid: a child claims, then
 * empties owner.lock, says so, and waits to be killed. */
static pid_t hold_silently(const char *root, const char *name)
{
    int ready[2];
    pid_t pid;
    char c = 0;

    assert_int_equal(pipe(ready), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        libdm__rundir *rd = NULL;

        close(ready[0]);
        if (libdm__rundir_claim(root, name, &rd, NULL) < 0 || ftruncate(rd->owner_fd, 0) < 0)
            _exit(1);
        (void)!write(ready[1], &c, 1);
        for (;;)
            pause();
    }
    close(ready[1]);
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    return pid;
}

static void test_loser_names_silent_holder(void **state)
{
    char *root = tu_mkdtemp("rundir-claim"), *why = NULL, want[64];
    libdm__rundir *rd = NULL;
    pid_t holder;

    (void)state;
    holder = hold_silently(root, "d1");
    assert_int_equal(libdm__rundir_claim(root, "d1", &rd, &why), -EEXIST);
    assert_null(rd);
    assert_non_null(why);
    snprintf(want, sizeof(want), "(pid %d", (int)holder);
    /* Ended before any verdict: a holder left paused would keep this
     * test's output open. */
    kill(holder, SIGKILL);
    assert_int_equal(waitpid(holder, NULL, 0), holder);
    if (!strstr(why, want))
        fail_msg("the loser does not name the holder (pid %d): %s", (int)holder, why);
    free(why);
    /* The holder gone, the name is free again. */
    assert_int_equal(libdm__rundir_claim(root, "d1", &rd, NULL), 0);
    libdm__rundir_remove(rd, LIBDM__RD_REMOVE_ALL);
    libdm__rundir_free(rd);
    tu_rmtree(root);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loser_names_silent_holder),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
