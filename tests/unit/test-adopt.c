/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libdm_dm_config_set_argv (libdm/config-adopt.c, built in argv.c): the
 * caller's command line kept as it is, in order; -S added only when
 * missing; libdm's own monitor (libdm-qmp) added after it, never replacing
 * the caller's (libxl-cmd); -sandbox only restricted with QEMU's seccomp;
 * refusals; deep copy.
 */
#include "internal.h"
#include "config-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define XEN_QEMU "/usr/libexec/xen-qemu-system-i386"

static libdm_dm_config *xl_config(const char *const *argv)
{
    libdm_dm_config *c = NULL;

    assert_int_equal(libdm_dm_config_new(&c), 0);
    assert_int_equal(libdm_dm_config_set_profile(c, LIBDM_PROFILE_XEN), 0);
    assert_int_equal(libdm_dm_config_set_domid(c, 9), 0);
    assert_int_equal(libdm_dm_config_set_name(c, "guest9"), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(c, XEN_QEMU), 0);
    assert_int_equal(libdm_dm_config_set_argv(c, argv), 0);
    return c;
}

static void assert_argv(char **got, const char *const *want)
{
    size_t i;

    for (i = 0; want[i]; i++) {
        assert_non_null(got[i]);
        assert_string_equal(got[i], want[i]);
    }
    assert_null(got[i]);
}

static const char *const libxl_argv[] = {
    "-xen-domid", "9", "-no-shutdown",
    "-chardev", "socket,id=libxl-cmd,fd=7,server=on,wait=off",
    "-mon", "chardev=libxl-cmd,mode=control", "-nodefaults", "-name", "guest9",
    "-xen-domid-restrict", "-chroot", "/var/run/xen/qemu-root-9", "-runas", "131081:131081",
    "-machine", "xenfv", "-m", "120", NULL,
};

static void test_kept_then_ours(void **state)
{
    libdm_dm_config *c = xl_config(libxl_argv);
    char **argv = NULL;

    (void)state;
    assert_int_equal(libdm_dm_config_build_argv(c, 3, &argv), 0);
    assert_argv(argv, (const char *const[]){
        XEN_QEMU, "-xen-domid", "9", "-no-shutdown",
        "-chardev", "socket,id=libxl-cmd,fd=7,server=on,wait=off",
        "-mon", "chardev=libxl-cmd,mode=control", "-nodefaults", "-name", "guest9",
        "-xen-domid-restrict", "-chroot", "/var/run/xen/qemu-root-9", "-runas", "131081:131081",
        "-machine", "xenfv", "-m", "120",
        "-S", "-chardev", "socket,id=libdm-qmp,fd=3,server=on,wait=off",
        "-mon", "chardev=libdm-qmp,mode=control", NULL });
    libdm_strv_free(argv);
    libdm_dm_config_free(c);
}

static void test_s_not_doubled(void **state)
{
    libdm_dm_config *c = xl_config((const char *const[]){ "-xen-domid", "9", "-S", NULL });
    char **argv = NULL;

    (void)state;
    assert_int_equal(libdm_dm_config_build_argv(c, 3, &argv), 0);
    assert_argv(argv, (const char *const[]){
        XEN_QEMU, "-xen-domid", "9", "-S",
        "-chardev", "socket,id=libdm-qmp,fd=3,server=on,wait=off",
        "-mon", "chardev=libdm-qmp,mode=control", NULL });
    libdm_strv_free(argv);
    libdm_dm_config_free(c);
}

/* Restricted: libxl's -runas/-chroot are not repeated; -sandbox only when
 * QEMU's own seccomp is asked for. */
static void test_restricted(void **state)
{
    libdm_dm_config *c = xl_config(libxl_argv), *copy = NULL;
    char **argv = NULL;
    size_t n;

    (void)state;
    assert_int_equal(libdm_dm_config_set_restrict(c, 1), 0);
    assert_int_equal(libdm_dm_config_build_argv(c, 3, &argv), -EINVAL); /* no runas */
    assert_int_equal(libdm_dm_config_set_runas(c, "131081:131081"), 0);
    assert_int_equal(libdm_dm_config_set_seccomp(c, LIBDM_SECCOMP_FILTER), 0);
    assert_int_equal(libdm_dm_config_build_argv(c, 3, &argv), 0);
    for (n = 0; argv[n]; n++)
        assert_string_not_equal(argv[n], "-sandbox");
    assert_int_equal(n, 1 + 19 + 5);
    libdm_strv_free(argv);
    assert_int_equal(libdm_dm_config_set_seccomp(c, LIBDM_SECCOMP_QEMU), 0);
    assert_int_equal(libdm__config_copy(c, &copy), 0);
    libdm_dm_config_free(c);
    assert_int_equal(libdm_dm_config_build_argv(copy, 3, &argv), 0); /* a deep copy */
    for (n = 0; argv[n]; n++)
        ;
    assert_string_equal(argv[n - 2], "-sandbox");
    assert_string_equal(argv[n - 1], LIBDM__SANDBOX_OPTS);
    assert_string_equal(argv[1], "-xen-domid");
    libdm_strv_free(argv);
    libdm_dm_config_free(copy);
}

static void test_refusals(void **state)
{
    libdm_dm_config *c = NULL;
    char **argv = NULL;

    (void)state;
    assert_int_equal(libdm_dm_config_new(&c), 0);
    assert_int_equal(libdm_dm_config_set_argv(c, NULL), -EINVAL);
    assert_int_equal(libdm_dm_config_set_argv(NULL, (const char *const[]){ NULL }), -EINVAL);
    /* A domain's DM: the plain profile or no domid is refused. */
    assert_int_equal(libdm_dm_config_set_argv(c, (const char *const[]){ "-S", NULL }), 0);
    assert_int_equal(libdm_dm_config_build_argv(c, 3, &argv), -EINVAL);
    assert_int_equal(libdm_dm_config_set_profile(c, LIBDM_PROFILE_XEN), 0);
    assert_int_equal(libdm_dm_config_build_argv(c, 3, &argv), -EINVAL);
    assert_int_equal(libdm_dm_config_set_domid(c, 4), 0);
    assert_int_equal(libdm_dm_config_build_argv(c, 3, &argv), 0);
    libdm_strv_free(argv);
    libdm_dm_config_free(c);
}

static int fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    assert_non_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* libdm_dm_config_set_log_fd: the configuration owns one duplicate, a copy
 * its own, the start gets another; nothing leaks, a bad fd is refused. */
static void test_log_fd(void **state)
{
    libdm_dm_config *c = NULL, *copy = NULL;
    int before = fd_count(), fd = -1;

    (void)state;
    assert_int_equal(libdm_dm_config_new(&c), 0);
    assert_int_equal(libdm__config_log_fd(c, &fd), 0); /* none: the run dir's log */
    assert_int_equal(libdm_dm_config_set_log_fd(c, -1), -EINVAL);
    assert_int_equal(libdm_dm_config_set_log_fd(NULL, 2), -EINVAL);
    assert_int_equal(libdm_dm_config_set_log_fd(c, 2), 0);
    assert_int_equal(fd_count(), before + 1);
    assert_int_equal(libdm_dm_config_set_log_fd(c, 2), 0); /* replaced, not leaked */
    assert_int_equal(fd_count(), before + 1);
    assert_int_equal(libdm__config_copy(c, &copy), 0);
    assert_int_equal(fd_count(), before + 2);
    assert_int_equal(libdm__config_log_fd(copy, &fd), 1);
    assert_true(fd > 2);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);
    libdm_dm_config_free(copy);
    assert_int_equal(fd_count(), before + 1);
    libdm_dm_config_free(c);
    assert_int_equal(fd_count(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_then_ours),
        cmocka_unit_test(test_s_not_doubled),
        cmocka_unit_test(test_restricted),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_log_fd),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
