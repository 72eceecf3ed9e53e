/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 22, 3: a restricted DM (chroot, private uid, seccomp) migrates
 * between two real QEMUs (-machine pc,accel=tcg -m 64) through the library,
 * over a unix socket and over tcp. The chrooted QEMUs cannot open the
 * socket: the source's libdm connects and passes it with getfd
 * (libdm_migrate_perform_async on a restricted DM), and this test plays the
 * destination's host: it listens, accepts on its loop and hands the stream
 * to the DM prepared with "defer" (libdm_migrate_incoming_fd_async). The
 * destination QEMU is then checked in /proc: the private uid, NoNewPrivs 1,
 * Seccomp 2, its root its own chroot.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "testutil.h"

#define UID_S "64533"   /* a private uid of this test's own (never nobody) */

typedef struct fixture {
    char *dir;
    int fds_before;
    libdm_ctx *ctx;
} fixture;

static libdm_dm_config *vm_config(const char *name)
{
    libdm_dm_config *cfg;

    assert_int_equal(libdm_dm_config_new(&cfg), 0);
    assert_int_equal(libdm_dm_config_set_name(cfg, name), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(cfg, tu_qemu()), 0);
    assert_int_equal(libdm_dm_config_set_machine(cfg, "pc"), 0);
    assert_int_equal(libdm_dm_config_set_memory_mb(cfg, 64), 0);
    assert_int_equal(libdm_dm_config_set_timeout_ms(cfg, 10000), 0);
    assert_int_equal(libdm_dm_config_set_restrict(cfg, 1), 0);
    assert_int_equal(libdm_dm_config_set_runas(cfg, UID_S ":" UID_S), 0);
    return cfg;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    f->fds_before = tu_fd_count();
    f->dir = tu_mkdtemp("migr");
    assert_non_null(f->dir);
    assert_int_equal(libdm_ctx_new(NULL, &f->ctx), 0);
    assert_int_equal(libdm_ctx_set_store(f->ctx, f->dir), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    tu_settle_children(f->ctx, 0);
    libdm_ctx_free(f->ctx);
    tu_rmtree(f->dir);
    free(f->dir);
    assert_int_equal(tu_fd_count(), f->fds_before);
    assert_int_equal(tu_child_count(), 0);
    free(f);
    return 0;
}

static long proc_status(int pid, const char *key)
{
    char path[64], line[256];
    size_t n = strlen(key);
    long v = -1;
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    fp = fopen(path, "re");
    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp))
        if (!strncmp(line, key, n) && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    fclose(fp);
    return v;
}

/* The destination is confined as the source was. */
static void assert_confined(int pid, const char *want_root)
{
    char path[64], root[512];
    ssize_t n;

    assert_int_equal(proc_status(pid, "Uid"), atol(UID_S));
    assert_int_equal(proc_status(pid, "NoNewPrivs"), 1);
    assert_int_equal(proc_status(pid, "Seccomp"), 2);
    snprintf(path, sizeof(path), "/proc/%d/root", pid);
    n = readlink(path, root, sizeof(root) - 1);
    assert_true(n > 0);
    root[n] = '\0';
    assert_string_equal(root, want_root);
}

/* The destination host's listener: @tcp 127.0.0.1:0, else DIR/stream.sock. */
static int listen_on(fixture *f, bool tcp, char *uri, size_t len)
{
    int fd = socket(tcp ? AF_INET : AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    if (tcp) {
        struct sockaddr_in in = { .sin_family = AF_INET };
        socklen_t sl = sizeof(in);

        in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof(in)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&in, &sl), 0);
        snprintf(uri, len, "tcp:127.0.0.1:%u", ntohs(in.sin_port));
    } else {
        struct sockaddr_un un = { .sun_family = AF_UNIX };

        snprintf(un.sun_path, sizeof(un.sun_path), "%s/stream.sock", f->dir);
        assert_int_equal(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
        snprintf(uri, len, "unix:%s", un.sun_path);
    }
    assert_int_equal(listen(fd, 1), 0);
    return fd;
}

static void migrate_restricted(fixture *f, bool tcp)
{
    libdm_dm_config *src_cfg = vm_config("src"), *dst_cfg = vm_config("dst");
    tu_done perf = { 0 }, inc = { 0 };
    char uri[256], root[512];
    libdm_dm *src, *dst;
    uint64_t until;
    int lfd, s;

    assert_int_equal(libdm_dm_start(f->ctx, src_cfg, &src), 0);
    assert_int_equal(libdm_dm_resume(src, 5000), 0);
    assert_int_equal(libdm_migrate_begin(src, 5000), 0);
    lfd = listen_on(f, tcp, uri, sizeof(uri));
    assert_int_equal(libdm_migrate_prepare(f->ctx, dst_cfg, "defer", &dst), 0);
    assert_int_equal(libdm_migrate_perform_async(src, uri, 0, NULL, NULL, NULL, NULL, 20000,
                                                 tu_on_done, &perf), 0);
    /* This host's loop: the one connection goes to the destination. */
    until = libdm_now_ms() + 30000;
    while ((!perf.done || !inc.done) && libdm_now_ms() < until) {
        struct pollfd p = { .fd = lfd, .events = POLLIN };

        if (lfd >= 0 && poll(&p, 1, 0) == 1) {
            s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            assert_true(s >= 0);
            assert_int_equal(libdm_migrate_incoming_fd_async(dst, s, 10000, tu_on_done, &inc), 0);
            close(s);
            close(lfd);
            lfd = -1;
        }
        (void)libdm_ctx_run_once(f->ctx, 10);
    }
    if (lfd >= 0)
        close(lfd);
    assert_true(inc.done);
    assert_int_equal(inc.status, 0);
    assert_true(perf.done);
    assert_int_equal(perf.status, 0);
    assert_int_equal(libdm_migrate_finish(dst, 0, 10000), 0);
    assert_int_equal(libdm_migrate_confirm(src, 1, 10000), 0);
    snprintf(root, sizeof(root), "%s/dst/root", f->dir);
    assert_confined(libdm_dm_get_pid(dst), root);
    assert_string_equal(libdm_dm_get_runstate(dst), "running");
    assert_int_equal(libdm_dm_stop(dst, 0, 5000), 0);
    libdm_dm_release(dst);
    libdm_dm_release(src);
    libdm_dm_config_free(src_cfg);
    libdm_dm_config_free(dst_cfg);
}

static void test_restricted_over_unix(void **state)
{
    if (geteuid() != 0)
        skip();
    migrate_restricted(*state, false);
}

static void test_restricted_over_tcp(void **state)
{
    if (geteuid() != 0)
        skip();
    migrate_restricted(*state, true);
}

/* A "tcp:" URI naming a host is refused at the call, said as such: QEMU in
 * its chroot cannot resolve it, and libdm does not resolve on its loop.
 * Before, Perform started, QEMU was handed the name and failed in its
 * chroot (or libdm connected nowhere). The source runs on, untouched. */
static void test_restricted_host_name_refused(void **state)
{
    fixture *f = *state;
    libdm_dm_config *src_cfg;
    libdm_dm *src;

    if (geteuid() != 0)
        skip();
    src_cfg = vm_config("src");
    assert_int_equal(libdm_dm_start(f->ctx, src_cfg, &src), 0);
    assert_int_equal(libdm_dm_resume(src, 5000), 0);
    assert_int_equal(libdm_migrate_begin(src, 5000), 0);
    assert_int_equal(libdm_migrate_perform_async(src, "tcp:migration-peer.invalid:4444", 0, NULL,
                                                 NULL, NULL, NULL, 5000, tu_on_done, NULL),
                     -EINVAL);
    assert_non_null(strstr(libdm_dm_last_error(src), "numeric address"));
    /* Numeric addresses and unix paths stay accepted (the cases above). */
    assert_int_equal(libdm_migrate_cancel(src, 5000), 0);
    assert_string_equal(libdm_dm_get_runstate(src), "running");
    assert_int_equal(libdm_dm_stop(src, 0, 5000), 0);
    libdm_dm_release(src);
    libdm_dm_config_free(src_cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restricted_over_unix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restricted_over_tcp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restricted_host_name_refused, setup, teardown),
    };
    int skip = tu_require_dm_env();

    if (skip)
        return skip;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
