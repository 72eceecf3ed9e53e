/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm_restrict's policy (libdm/restrict.c) and the keeper's option parser
 * (tools/keeper-restrict.c): the runas decision against a fake passwd
 * database (libxl's xen-qemuuser-* rules), the chroot checks, libdm's own
 * chroot (stale ones removed, mode 0000), the -sandbox probe, blocking and
 * on the loop (cache, deadline, cancel, never waiting for the child), and
 * the plan handed to the keeper. Runtime confinement is
 * checked on real QEMU in tests/integration/test-dm-qemu.c.
 */
#include "internal.h"
#include "config-internal.h"
#include "restrict-internal.h"
#include "rundir-internal.h"
#include "keeper-restrict.h"

#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

/* ---- a fake passwd database ---- */

typedef struct fake_pw {
    const libdm__pw_entry *entries;
    size_t n;
    int fail; /* if nonzero, every lookup returns it */
} fake_pw;

static int fake_by_name(void *user, const char *name, libdm__pw_entry *ret)
{
    const fake_pw *f = user;

    if (f->fail)
        return f->fail;
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->entries[i].name, name)) {
            *ret = f->entries[i];
            return 1;
        }
    return 0;
}

static int fake_by_uid(void *user, uint32_t uid, libdm__pw_entry *ret)
{
    const fake_pw *f = user;

    if (f->fail)
        return f->fail;
    for (size_t i = 0; i < f->n; i++)
        if (f->entries[i].uid == uid) {
            *ret = f->entries[i];
            return 1;
        }
    return 0;
}

static libdm_dm_config *config(libdm_profile profile, uint32_t domid, const char *runas)
{
    libdm_dm_config *c = NULL;

    assert_int_equal(libdm_dm_config_new(&c), 0);
    assert_int_equal(libdm_dm_config_set_name(c, "r"), 0);
    assert_int_equal(libdm_dm_config_set_profile(c, profile), 0);
    assert_int_equal(libdm_dm_config_set_domid(c, domid), 0);
    assert_int_equal(libdm_dm_config_set_restrict(c, 1), 0);
    assert_int_equal(libdm_dm_config_set_runas(c, runas), 0);
    return c;
}

/* Decides runas for (@profile, @domid, @runas) against @entries: @want_arg
 * on success, or an error containing @want_err. */
static void check_runas(const libdm__pw_entry *entries, size_t n, libdm_profile profile,
                        uint32_t domid, const char *runas, const char *want_arg,
                        uint32_t want_uid, const char *want_err)
{
    fake_pw f = { entries, n, 0 };
    libdm__pw_ops pw = { fake_by_name, fake_by_uid, &f };
    libdm_dm_config *c = config(profile, domid, runas);
    libdm__runas ra;
    char *err = NULL;
    int r = libdm__restrict_runas(c, &pw, &ra, &err);

    if (want_arg) {
        if (r != 0)
            fail_msg("refused: %s", err ? err : "(no message)");
        assert_string_equal(ra.arg, want_arg);
        assert_int_equal(ra.uid, want_uid);
        libdm__runas_clear(&ra);
    } else {
        assert_true(r < 0);
        assert_null(ra.arg);
        assert_non_null(err);
        if (!strstr(err, want_err))
            fail_msg("error \"%s\" does not say \"%s\"", err, want_err);
    }
    free(err);
    libdm_dm_config_free(c);
}

static const libdm__pw_entry users[] = {
    { 65534, 65534, "nobody" },
    { 0, 0, "toor" },               /* another name of root */
    { 1000, 0, "wheelie" },         /* gid 0 */
    { 131072, 131072, "xen-qemuuser-range-base" },
    { 131079, 100, "alice" },       /* base + 7 */
    { 500, 500, "xen-qemuuser-shared" },
};

static void test_runas_configured(void **state)
{
    (void)state;
    check_runas(users, 6, LIBDM_PROFILE_PLAIN, 0, "65534:65534", "65534:65534", 65534, NULL);
    check_runas(users, 6, LIBDM_PROFILE_PLAIN, 0, "nobody", "nobody", 65534, NULL);
    /* explicit runas wins over the xen policy */
    check_runas(users, 6, LIBDM_PROFILE_XEN, 3, "nobody", "nobody", 65534, NULL);
    check_runas(users, 6, LIBDM_PROFILE_PLAIN, 0, "ghost", NULL, 0, "user ghost does not exist");
    check_runas(users, 6, LIBDM_PROFILE_PLAIN, 0, "toor", NULL, 0, "never runs as root");
    check_runas(users, 6, LIBDM_PROFILE_PLAIN, 0, "wheelie", NULL, 0, "gid 0");
    check_runas(users, 6, LIBDM_PROFILE_PLAIN, 0, NULL, NULL, 0, "plain profile needs runas");
}

static void test_runas_xen_policy(void **state)
{
    static const libdm__pw_entry shared_only[] = { { 500, 500, "xen-qemuuser-shared" } };
    static const libdm__pw_entry neither[] = { { 65534, 65534, "nobody" } };
    static const libdm__pw_entry huge_base[] = {
        { UINT32_MAX - 10, 7, "xen-qemuuser-range-base" } };
    static const libdm__pw_entry root_gid[] = { { 131072, 0, "xen-qemuuser-range-base" } };

    (void)state;
    /* libxl: base uid + domid, with the base user's gid */
    check_runas(users, 6, LIBDM_PROFILE_XEN, 5, NULL, "131077:131072", 131077, NULL);
    check_runas(users, 6, LIBDM_PROFILE_XEN, 32751, NULL, "163823:131072", 163823, NULL);
    /* ... refused when that uid is someone's */
    check_runas(users, 6, LIBDM_PROFILE_XEN, 7, NULL, NULL, 0, "but that is user alice");
    check_runas(huge_base, 1, LIBDM_PROFILE_XEN, 20, NULL, NULL, 0, "overflows");
    check_runas(root_gid, 1, LIBDM_PROFILE_XEN, 1, NULL, NULL, 0, "never runs as root");
    /* no range: the shared user, by name as libxl passes it */
    check_runas(shared_only, 1, LIBDM_PROFILE_XEN, 5, NULL, "xen-qemuuser-shared", 500, NULL);
    /* neither: the message names what to create */
    check_runas(neither, 1, LIBDM_PROFILE_XEN, 5, NULL, NULL, 0,
                "xen-qemuuser-range-base (its uid + domid) or xen-qemuuser-shared, and neither "
                "exists: create one");
}

static void test_runas_lookup_failure(void **state)
{
    fake_pw f = { users, 6, -EIO };
    libdm__pw_ops pw = { fake_by_name, fake_by_uid, &f };
    libdm_dm_config *c = config(LIBDM_PROFILE_XEN, 5, NULL);
    libdm__runas ra;
    char *err = NULL;

    (void)state;
    assert_int_equal(libdm__restrict_runas(c, &pw, &ra, &err), -EIO);
    assert_non_null(strstr(err, "cannot look up"));
    free(err);
    libdm_dm_config_free(c);
}

/* ---- the chroot ---- */

static char *path_in(const char *dir, const char *name)
{
    char *p = libdm__sprintf("%s/%s", dir, name);

    assert_non_null(p);
    return p;
}

static void expect_chroot_refused(const char *dir, const char *want)
{
    char *err = NULL;

    assert_int_equal(libdm__restrict_check_chroot(dir, &err), -EINVAL);
    assert_non_null(err);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not say \"%s\"", err, want);
    free(err);
}

static void test_check_chroot(void **state)
{
    char *base = tu_mkdtemp("chroot"), *empty = path_in(base, "empty"),
         *full = path_in(base, "full"), *file = path_in(base, "file"),
         *link = path_in(base, "link"), *open_dir = path_in(base, "open"),
         *inside = path_in(full, "x"), *dotted = path_in(base, "empty/."), *err = NULL;

    (void)state;
    assert_int_equal(mkdir(empty, 0755), 0);
    assert_int_equal(mkdir(full, 0755), 0);
    assert_int_equal(mkdir(inside, 0755), 0);
    assert_int_equal(mkdir(open_dir, 0755), 0);
    assert_int_equal(chmod(open_dir, 0777), 0);
    assert_int_equal(close(open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)), 0);
    assert_int_equal(symlink(empty, link), 0);

    assert_int_equal(libdm__restrict_check_chroot(empty, &err), 0);
    assert_null(err);
    assert_int_equal(libdm__restrict_check_chroot(dotted, &err), 0);
    expect_chroot_refused(link, "is a symlink");
    expect_chroot_refused("/", "is the root directory");
    expect_chroot_refused("/.", "is the root directory");
    expect_chroot_refused(full, "is not empty");
    expect_chroot_refused(file, "is not a directory");
    expect_chroot_refused(open_dir, "writable by group or others");
    expect_chroot_refused("/nonexistent-libdm-chroot", "does not exist");
    tu_rmtree(base);
    free(base), free(empty), free(full), free(file), free(link), free(open_dir);
    free(inside), free(dotted);
}

static mode_t mode_of(const char *path)
{
    struct stat st;

    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode;
}

static void test_make_chroot(void **state)
{
    char *base = tu_mkdtemp("ownroot"), *root = path_in(base, "root"),
         *sub = path_in(base, "new/root"), *inside = path_in(root, "x"), *err = NULL;

    (void)state;
    /* fresh: an empty directory, mode 0000 */
    assert_int_equal(libdm__restrict_make_chroot(root, &err), 0);
    assert_true(S_ISDIR(mode_of(root)));
    assert_int_equal(mode_of(root) & 07777, 0);
    /* stale and empty: replaced */
    assert_int_equal(libdm__restrict_make_chroot(root, &err), 0);
    /* a symlink planted there: removed, never followed */
    assert_int_equal(rmdir(root), 0);
    assert_int_equal(symlink("/", root), 0);
    assert_int_equal(libdm__restrict_make_chroot(root, &err), 0);
    assert_true(S_ISDIR(mode_of(root)));
    /* stale and not empty: refused, left alone */
    assert_int_equal(chmod(root, 0700), 0);
    assert_int_equal(mkdir(inside, 0700), 0);
    assert_int_equal(libdm__restrict_make_chroot(root, &err), -EEXIST);
    assert_non_null(strstr(err, "is not empty"));
    free(err);
    err = NULL;
    assert_true(S_ISDIR(mode_of(inside)));
    assert_int_equal(rmdir(inside), 0);
    /* a missing parent is made (like /var/run/xen on a host without Xen) */
    assert_int_equal(libdm__restrict_make_chroot(sub, &err), 0);
    /* cleanup removes libdm's own chroot of a plain DM (in the run
     * directory, through its fd), empty only */
    {
        libdm__rundir *rd = NULL;
        int dfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        assert_true(dfd >= 0);
        assert_int_equal(libdm__rundir_adopt("/unused", "dm", dfd, -1, &rd), 0);
        libdm__rundir_remove_subdir(rd, LIBDM__PLAIN_ROOT_NAME);
        assert_false(tu_path_exists(base, "root"));
        libdm__rundir_remove_subdir(rd, LIBDM__PLAIN_ROOT_NAME); /* twice: harmless */
        libdm__rundir_free(rd);
    }
    libdm__restrict_cleanup(NULL, 0); /* no xen chroot: harmless */
    tu_rmtree(base);
    free(base), free(root), free(sub), free(inside);
}

static void test_own_chroot_paths(void **state)
{
    char *p;

    (void)state;
    p = libdm__restrict_own_chroot("/run/libdm/a", "plain", 9);
    assert_string_equal(p, "/run/libdm/a/root");
    free(p);
    p = libdm__restrict_own_chroot("/run/libdm/a", "xen", 9);
    assert_string_equal(p, "/var/run/xen/qemu-root-9");
    free(p);
}

/* ---- the -sandbox probe ---- */

static char *write_script(const char *dir, const char *name, const char *body)
{
    char *p = path_in(dir, name);
    FILE *f = fopen(p, "w");

    assert_non_null(f);
    fputs(body, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(p, 0755), 0);
    return p;
}

/* The probe follows its child through a pidfd: valgrind 3.19 lacks it. */
static void skip_without_pidfd(void)
{
    int pfd = (int)syscall(SYS_pidfd_open, getpid(), 0);

    if (pfd < 0) {
        print_message("probe: skipped (no pidfd_open here, e.g. under valgrind)\n");
        skip();
    }
    close(pfd);
}

static void test_probe(void **state)
{
    char *dir, *yes, *no, *hang;
    int children;
    uint64_t t0;

    skip_without_pidfd();
    (void)state;
    dir = tu_mkdtemp("probe");
    yes = write_script(dir, "yes", "#!/bin/sh\n[ \"$1 $2 $3\" = \"-sandbox on -version\" ]\n");
    no = write_script(dir, "no", "#!/bin/sh\necho no seccomp >&2; exit 1\n");
    hang = write_script(dir, "hang", "#!/bin/sh\nexec sleep 30\n");
    children = tu_child_count();

    libdm__qemu_sandbox_cache_clear();
    assert_int_equal(libdm__qemu_has_sandbox(yes, 2000), 1);
    assert_int_equal(libdm__qemu_has_sandbox(no, 2000), 0);
    assert_int_equal(libdm__qemu_has_sandbox("/nonexistent/qemu", 2000), 0);
    /* A binary that hangs is "unsupported" at the deadline, and killed. */
    t0 = tu_now_ms();
    assert_int_equal(libdm__qemu_has_sandbox(hang, 200), 0);
    assert_true(tu_now_ms() - t0 < 1500);
    /* Cached: the same binary is not run again... */
    t0 = tu_now_ms();
    assert_int_equal(libdm__qemu_has_sandbox(hang, 200), 0);
    assert_true(tu_now_ms() - t0 < 100);
    /* ...until it changes (size, mtime, inode). */
    free(write_script(dir, "yes", "#!/bin/sh\nexit 3\n"));
    assert_int_equal(libdm__qemu_has_sandbox(yes, 2000), 0);
    assert_int_equal(tu_child_count(), children);
    /* The real binaries, when installed (FACTS: the Xen DM has no seccomp). */
    if (access(LIBDM_DEFAULT_QEMU, X_OK) == 0)
        assert_int_equal(libdm__qemu_has_sandbox(LIBDM_DEFAULT_QEMU, 2000), 1);
    if (access("/usr/libexec/xen-qemu-system-i386", X_OK) == 0)
        assert_int_equal(libdm__qemu_has_sandbox("/usr/libexec/xen-qemu-system-i386", 2000), 0);
    libdm__qemu_sandbox_cache_clear();
    tu_rmtree(dir);
    free(dir), free(yes), free(no), free(hang);
}

/* ---- the -sandbox probe on the loop ---- */

typedef struct probe_cb_state {
    int calls;
    int result;
} probe_cb_state;

static void probe_cb(int has_sandbox, void *user)
{
    probe_cb_state *s = user;

    s->calls++;
    s->result = has_sandbox;
}

/* Starts a probe; its callback must not have run yet. */
static libdm__sandbox_probe *probe_start(libdm_ctx *ctx, const char *qemu, int timeout_ms,
                                        probe_cb_state *s)
{
    libdm__sandbox_probe *p = NULL;

    *s = (probe_cb_state){ 0, -1 };
    assert_int_equal(libdm__qemu_sandbox_probe_async(ctx, qemu, timeout_ms, probe_cb, s, &p), 0);
    assert_non_null(p);
    assert_int_equal(s->calls, 0);
    return p;
}

/* Runs the loop until @s was called back or 5 s pass. */
static void run_until_called(libdm_ctx *ctx, const probe_cb_state *s)
{
    uint64_t deadline = tu_now_ms() + 5000;

    while (s->calls == 0 && tu_now_ms() < deadline)
        assert_true(libdm_ctx_run_once(ctx, 50) >= 0);
    assert_int_equal(s->calls, 1);
}

/* Runs the loop until the context is idle (reapers included) or 5 s pass. */
static void run_until_idle(libdm_ctx *ctx)
{
    uint64_t deadline = tu_now_ms() + 5000;

    while (!libdm_ctx_is_idle(ctx) && tu_now_ms() < deadline)
        assert_true(libdm_ctx_run_once(ctx, 50) >= 0);
    assert_true(libdm_ctx_is_idle(ctx));
}

/* The answer of a probe of @qemu, called back once from the loop. */
static int probe_answer(libdm_ctx *ctx, const char *qemu)
{
    probe_cb_state s;

    (void)probe_start(ctx, qemu, 2000, &s);
    run_until_called(ctx, &s);
    run_until_idle(ctx);
    assert_int_equal(s.calls, 1);
    return s.result;
}

/* No child of ours is left, zombie or not. */
static void assert_no_child(void)
{
    assert_int_equal(tu_child_count(), 0);
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static int line_count(const char *path)
{
    FILE *f = fopen(path, "re");
    int n = 0, c;

    if (!f)
        return 0;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static void test_probe_async(void **state)
{
    char *dir, *yes, *no, *other;
    libdm_ctx *ctx = NULL;
    int fds;

    skip_without_pidfd();
    (void)state;
    assert_no_child();
    dir = tu_mkdtemp("aprobe");
    yes = write_script(dir, "yes", "#!/bin/sh\n[ \"$1 $2 $3\" = \"-sandbox on -version\" ]\n");
    no = write_script(dir, "no", "#!/bin/sh\necho no seccomp >&2; exit 1\n");
    other = write_script(dir, "other", "#!/bin/sh\nexit 0\n");
    fds = tu_fd_count();
    assert_int_equal(libdm_ctx_new(NULL, &ctx), 0);
    libdm__qemu_sandbox_cache_clear();

    assert_int_equal(libdm__qemu_sandbox_cached(yes), -EAGAIN);
    assert_int_equal(probe_answer(ctx, yes), 1);
    assert_int_equal(probe_answer(ctx, no), 0);
    assert_int_equal(probe_answer(ctx, "/nonexistent/qemu"), 0);
    /* Cached as the blocking probe caches; a missing binary answers 0. */
    assert_int_equal(libdm__qemu_sandbox_cached(yes), 1);
    assert_int_equal(libdm__qemu_sandbox_cached(no), 0);
    assert_int_equal(libdm__qemu_sandbox_cached("/nonexistent/qemu"), 0);
    assert_int_equal(libdm__qemu_sandbox_cached(other), -EAGAIN);
    /* A changed binary is probed again. */
    free(write_script(dir, "yes", "#!/bin/sh\nexit 3\n"));
    assert_int_equal(libdm__qemu_sandbox_cached(yes), -EAGAIN);
    assert_int_equal(probe_answer(ctx, yes), 0);
    assert_no_child();

    libdm_ctx_free(ctx);
    assert_int_equal(tu_fd_count(), fds);
    libdm__qemu_sandbox_cache_clear();
    tu_rmtree(dir);
    free(dir), free(yes), free(no), free(other);
}

static void test_probe_async_deadline(void **state)
{
    char *dir, *hang;
    libdm_ctx *ctx = NULL;
    probe_cb_state s;
    uint64_t t0;

    skip_without_pidfd();
    (void)state;
    assert_no_child();
    dir = tu_mkdtemp("aprobe");
    hang = write_script(dir, "hang", "#!/bin/sh\nexec sleep 30\n");
    assert_int_equal(libdm_ctx_new(NULL, &ctx), 0);
    libdm__qemu_sandbox_cache_clear();

    t0 = tu_now_ms();
    (void)probe_start(ctx, hang, 200, &s);
    assert_int_equal(tu_child_count(), 1);
    run_until_called(ctx, &s);
    assert_int_equal(s.result, 0);
    assert_true(tu_now_ms() - t0 >= 200);
    assert_true(tu_now_ms() - t0 < 1500);
    /* Killed, and reaped by the context. */
    run_until_idle(ctx);
    assert_int_equal(s.calls, 1);
    assert_no_child();
    /* Too slow counts as no -sandbox, cached as the blocking probe does. */
    assert_int_equal(libdm__qemu_sandbox_cached(hang), 0);

    libdm_ctx_free(ctx);
    libdm__qemu_sandbox_cache_clear();
    tu_rmtree(dir);
    free(dir), free(hang);
}

static void test_probe_async_cancel(void **state)
{
    char *dir, *hang, *yes;
    libdm_ctx *ctx = NULL;
    libdm__sandbox_probe *p;
    probe_cb_state s;
    int fds;

    skip_without_pidfd();
    (void)state;
    assert_no_child();
    dir = tu_mkdtemp("aprobe");
    hang = write_script(dir, "hang", "#!/bin/sh\nexec sleep 30\n");
    yes = write_script(dir, "yes", "#!/bin/sh\nexit 0\n");
    fds = tu_fd_count();
    assert_int_equal(libdm_ctx_new(NULL, &ctx), 0);
    libdm__qemu_sandbox_cache_clear();
    libdm__sandbox_probe_cancel(NULL);

    /* A running child: killed and reaped, no callback, nothing cached. */
    p = probe_start(ctx, hang, 10000, &s);
    assert_int_equal(tu_child_count(), 1);
    libdm__sandbox_probe_cancel(p);
    run_until_idle(ctx);
    assert_int_equal(s.calls, 0);
    assert_no_child();
    assert_int_equal(libdm__qemu_sandbox_cached(hang), -EAGAIN);
    /* A deferred answer (cached, or a missing binary): never delivered. */
    assert_int_equal(probe_answer(ctx, yes), 1);
    libdm__sandbox_probe_cancel(probe_start(ctx, yes, 2000, &s));
    libdm__sandbox_probe_cancel(probe_start(ctx, "/nonexistent/qemu", 2000, &s));
    run_until_idle(ctx);
    assert_int_equal(libdm_ctx_run_once(ctx, 20), 0);
    assert_int_equal(s.calls, 0);

    libdm_ctx_free(ctx);
    assert_int_equal(tu_fd_count(), fds);
    libdm__qemu_sandbox_cache_clear();
    tu_rmtree(dir);
    free(dir), free(hang), free(yes);
}

static void test_probe_async_cached(void **state)
{
    char *dir, *counter, *body, *qemu;
    libdm_ctx *ctx = NULL;
    probe_cb_state s;

    skip_without_pidfd();
    (void)state;
    assert_no_child();
    dir = tu_mkdtemp("aprobe");
    counter = path_in(dir, "runs");
    body = libdm__sprintf("#!/bin/sh\necho run >> %s\n"
                          "[ \"$1 $2 $3\" = \"-sandbox on -version\" ]\n", counter);
    qemu = write_script(dir, "qemu", body);
    assert_int_equal(libdm_ctx_new(NULL, &ctx), 0);
    libdm__qemu_sandbox_cache_clear();

    assert_int_equal(probe_answer(ctx, qemu), 1);
    assert_int_equal(line_count(counter), 1);
    /* Again: from the cache, no child (not even a zombie), still deferred. */
    (void)probe_start(ctx, qemu, 2000, &s);
    assert_int_equal(tu_child_count(), 0);
    run_until_called(ctx, &s);
    assert_int_equal(s.result, 1);
    run_until_idle(ctx);
    assert_int_equal(s.calls, 1);
    /* The blocking probe shares the cache. */
    assert_int_equal(libdm__qemu_has_sandbox(qemu, 2000), 1);
    assert_int_equal(line_count(counter), 1);
    /* And so does the plan: seccomp auto is decided from the cache. */
    if (geteuid() == 0) {
        libdm_dm_config *c = config(LIBDM_PROFILE_PLAIN, 0, "65534:65534");
        libdm__restrict_plan plan = { 0 };

        assert_int_equal(libdm_dm_config_set_qemu_path(c, qemu), 0);
        assert_int_equal(libdm_dm_config_set_seccomp(c, LIBDM_SECCOMP_AUTO), 0);
        assert_int_equal(libdm__restrict_prepare(NULL, c, dir, &plan), 0);
        assert_int_equal(plan.cfg->seccomp, LIBDM_SECCOMP_QEMU);
        assert_int_equal(line_count(counter), 1);
        libdm__restrict_plan_clear(&plan);
        libdm_dm_config_free(c);
    }
    assert_no_child();

    libdm_ctx_free(ctx);
    libdm__qemu_sandbox_cache_clear();
    tu_rmtree(dir);
    free(dir), free(counter), free(body), free(qemu);
}

/* Opens @fifo for writing once its reader is there (5 s at most). */
static int open_fifo_writer(const char *fifo)
{
    uint64_t deadline = tu_now_ms() + 5000;
    int fd;

    while ((fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0 && errno == ENXIO &&
           tu_now_ms() < deadline)
        usleep(1000);
    assert_true(fd >= 0);
    return fd;
}

/* The call returns before the probed binary runs: the script cannot write
 * its marker before the test opens the fifo it reads, which the test does
 * only once the call has returned. */
static void test_probe_async_returns_first(void **state)
{
    char *dir, *fifo, *marker, *body, *qemu;
    libdm_ctx *ctx = NULL;
    probe_cb_state s;
    int fd;

    skip_without_pidfd();
    (void)state;
    assert_no_child();
    dir = tu_mkdtemp("aprobe");
    fifo = path_in(dir, "go");
    marker = path_in(dir, "ran");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    body = libdm__sprintf("#!/bin/sh\nread x < %s\necho \"$x\" > %s\n", fifo, marker);
    qemu = write_script(dir, "qemu", body);
    assert_int_equal(libdm_ctx_new(NULL, &ctx), 0);
    libdm__qemu_sandbox_cache_clear();

    (void)probe_start(ctx, qemu, 5000, &s);
    assert_false(tu_path_exists(dir, "ran"));
    assert_int_equal(tu_child_count(), 1);
    fd = open_fifo_writer(fifo);
    assert_int_equal(write(fd, "go\n", 3), 3);
    close(fd);
    run_until_called(ctx, &s);
    assert_int_equal(s.result, 1);
    assert_int_equal(line_count(marker), 1);
    run_until_idle(ctx);
    assert_no_child();

    libdm_ctx_free(ctx);
    libdm__qemu_sandbox_cache_clear();
    tu_rmtree(dir);
    free(dir), free(fifo), free(marker), free(body), free(qemu);
}

/* ---- the plan ---- */

static void test_plan_unrestricted(void **state)
{
    libdm_dm_config *c = config(LIBDM_PROFILE_XEN, 4, NULL);
    libdm__restrict_plan p = { 0 };

    (void)state;
    assert_int_equal(libdm_dm_config_set_restrict(c, 0), 0);
    assert_int_equal(libdm__restrict_prepare(NULL, c, "/nonexistent", &p), 0);
    assert_string_equal(p.confinement, "none");
    /* libxl sets it for every qemu-xen, restricted or not */
    if (!getenv("XEN_QEMU_CONSOLE_LIMIT"))
        assert_string_equal(p.keeper_spec, "console-limit=1048576");
    assert_false(p.cfg->restricted);
    libdm__restrict_plan_clear(&p);
    assert_int_equal(libdm_dm_config_set_profile(c, LIBDM_PROFILE_PLAIN), 0);
    assert_int_equal(libdm__restrict_prepare(NULL, c, "/nonexistent", &p), 0);
    assert_null(p.keeper_spec);
    libdm__restrict_plan_clear(&p);
    libdm_dm_config_free(c);
}

static void test_plan_restricted(void **state)
{
    char *dir = tu_mkdtemp("plan"), *root = path_in(dir, "root"), *want;
    libdm_dm_config *c = config(LIBDM_PROFILE_PLAIN, 0, "65534:65534");
    libdm__restrict_plan p = { 0 };
    char **argv = NULL;

    (void)state;
    if (geteuid() != 0) {
        /* Refused, and says why. */
        assert_int_equal(libdm__restrict_prepare(NULL, c, dir, &p), -EPERM);
        goto out;
    }
    assert_int_equal(libdm_dm_config_set_seccomp(c, LIBDM_SECCOMP_FILTER), 0);
    assert_int_equal(libdm__restrict_prepare(NULL, c, dir, &p), 0);
    assert_string_equal(p.cfg->chroot_dir, root);
    assert_int_equal(mode_of(root) & 07777, 0);
    want = libdm__sprintf("ns,rlimits,log-pipe,nnp,seccomp,owned-root=%s", root);
    assert_string_equal(p.keeper_spec, want);
    free(want);
    want = libdm__sprintf("uid 65534 gid 65534, chroot %s, ns mnt+ipc, rlimits (file size "
                          "256 KiB, log capped at 256 KiB), no_new_privs, seccomp keeper-filter",
                          root);
    assert_string_equal(p.confinement, want);
    free(want);
    assert_int_equal(libdm_dm_config_build_argv(p.cfg, 3, &argv), 0);
    for (size_t i = 0; argv[i]; i++)
        assert_string_not_equal(argv[i], "-sandbox");
    libdm_strv_free(argv);
    libdm__restrict_plan_clear(&p);
    assert_int_equal(rmdir(root), 0);
    /* A writable image: RLIMIT_FSIZE would cost the guest its writes past
     * 256 KiB; the limit goes, the log stays capped by the keeper. A
     * read-only one keeps the limit. */
    assert_int_equal(libdm_dm_config_add_disk(c, "hdc", "/dev/null", LIBDM_DISK_RAW,
                                              LIBDM_DISK_CDROM), 0);
    assert_int_equal(libdm__restrict_prepare(NULL, c, dir, &p), 0);
    assert_non_null(strstr(p.keeper_spec, ",log-pipe,"));
    assert_null(strstr(p.keeper_spec, "fsize-unlimited"));
    libdm__restrict_plan_clear(&p);
    assert_int_equal(rmdir(root), 0);
    assert_int_equal(libdm_dm_config_add_disk(c, "hda", "/dev/null", LIBDM_DISK_RAW, 0), 0);
    assert_int_equal(libdm__restrict_prepare(NULL, c, dir, &p), 0);
    assert_non_null(strstr(p.keeper_spec, ",log-pipe,"));
    assert_non_null(strstr(p.keeper_spec, ",fsize-unlimited"));
    assert_non_null(strstr(p.confinement, "rlimits (file size unlimited: writable images, "
                                          "log capped at 256 KiB)"));
    libdm__restrict_plan_clear(&p);
    /* A refused configuration leaves no chroot behind. */
    assert_int_equal(rmdir(root), 0);
    assert_int_equal(libdm_dm_config_set_chroot(c, "/"), 0);
    assert_int_equal(libdm__restrict_prepare(NULL, c, dir, &p), -EINVAL);
    assert_null(p.cfg);
    assert_false(tu_path_exists(dir, "root"));
out:
    libdm_dm_config_free(c);
    tu_rmtree(dir);
    free(dir), free(root);
}

/* ---- the keeper's option ---- */

static void test_keeper_parse(void **state)
{
    static const char *const bad[] = {
        "x", "ns,", ",ns", "ns,,rlimits", "console-limit=", "console-limit=0",
        "console-limit=-1", "console-limit=1x", "owned-root=relative", "NS", "ns rlimits",
    };
    keeper_restrict r = { 0 };

    (void)state;
    assert_int_equal(keeper_restrict_parse(&r, "ns,rlimits,log-pipe,fsize-unlimited,nnp,seccomp,"
                                               "console-limit=1048576,owned-root=/run/a,b/root"),
                     0);
    assert_true(r.ns && r.rlimits && r.nnp && r.seccomp && r.log_pipe && r.fsize_unlimited);
    assert_int_equal(r.console_limit, 1048576);
    assert_string_equal(r.owned_root, "/run/a,b/root");
    r = (keeper_restrict){ 0 };
    assert_int_equal(keeper_restrict_parse(&r, "console-limit=7"), 0);
    assert_false(r.ns || r.rlimits || r.nnp || r.seccomp || r.log_pipe || r.fsize_unlimited);
    assert_null(r.owned_root);
    for (size_t i = 0; i < LIBDM__ARRAY_SIZE(bad); i++) {
        r = (keeper_restrict){ 0 };
        if (keeper_restrict_parse(&r, bad[i]) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runas_configured),
        cmocka_unit_test(test_runas_xen_policy),
        cmocka_unit_test(test_runas_lookup_failure),
        cmocka_unit_test(test_check_chroot),
        cmocka_unit_test(test_make_chroot),
        cmocka_unit_test(test_own_chroot_paths),
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_probe_async),
        cmocka_unit_test(test_probe_async_deadline),
        cmocka_unit_test(test_probe_async_cancel),
        cmocka_unit_test(test_probe_async_cached),
        cmocka_unit_test(test_probe_async_returns_first),
        cmocka_unit_test(test_plan_unrestricted),
        cmocka_unit_test(test_plan_restricted),
        cmocka_unit_test(test_keeper_parse),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
