/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The "xenstore" store backend against the REAL xenstored
 * (/usr/lib/xen-4.17/bin/xenstored, package xen-utils-4.17), made to run
 * without a hypervisor by the LD_PRELOAD fake of the hypervisor side
 * (tests/harness/xsshim.c). Skips (77) if xenstored is not installed.
 *
 * The daemon is started here with fork/exec in a mkdtemp directory
 * (XENSTORED_RUNDIR; its socket is <dir>/socket, exported to libxenstore as
 * XENSTORED_PATH) and is always stopped and reaped: by the group teardown,
 * by an atexit handler, and, should this process die, by
 * PR_SET_PDEATHSIG(SIGKILL) set in the child before exec.
 *
 * Environment: XENSTORED (daemon binary), XSSHIM (the shim; default
 * $top_builddir/tests/harness/.libs/xsshim.so, else found next to this
 * binary's build tree).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

#include <cmocka.h>

#include "store.h"
#include "record-asserts.h"

#define DEFAULT_XENSTORED "/usr/lib/xen-4.17/bin/xenstored"
#define PRIVATE_UID 64533 /* a private uid: never nobody, whom a kill-by-uid elsewhere could reach */

static const char *xenstored_bin;
static char shim_path[PATH_MAX];
static char tmp_dir[64];      /* everything of this test */
static char xsd_dir[80];       /* the daemon's XENSTORED_RUNDIR */
static char run_root[96];     /* the store's run root */
static char sock_path[100];
static pid_t xsd_pid = -1;

/* ---- the daemon ---- */

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void dump_log(void)
{
    char path[PATH_MAX], buf[4096];
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "%s/log", xsd_dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    fprintf(stderr, "---- xenstored output ----\n");
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        fwrite(buf, 1, (size_t)n, stderr);
    close(fd);
}

/* SIGTERM, then SIGKILL after 2 s; always reaped. */
static void stop_daemon(void)
{
    uint64_t deadline;
    int status;

    if (xsd_pid <= 0)
        return;
    kill(xsd_pid, SIGTERM);
    deadline = now_ms() + 2000;
    for (;;) {
        pid_t r = waitpid(xsd_pid, &status, WNOHANG);

        if (r == xsd_pid || (r < 0 && errno != EINTR))
            break;
        if (now_ms() > deadline) {
            kill(xsd_pid, SIGKILL);
            while (waitpid(xsd_pid, &status, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        usleep(2000);
    }
    xsd_pid = -1;
    unlink(sock_path);
}

static bool socket_answers(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    if (fd < 0)
        return false;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/* Starts xenstored under the shim and waits (at most 5 s) for its socket. */
static int start_daemon(void)
{
    pid_t parent = getpid();
    char pidfile[PATH_MAX], trace[PATH_MAX], log[PATH_MAX];
    uint64_t deadline;
    pid_t pid;

    snprintf(pidfile, sizeof(pidfile), "%s/pid", xsd_dir);
    snprintf(trace, sizeof(trace), "%s/trace", xsd_dir);
    snprintf(log, sizeof(log), "%s/log", xsd_dir);
    unlink(sock_path);
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int fd;

        /* Dies with us, whatever happens to us. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(126);
        fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        setenv("XENSTORED_RUNDIR", xsd_dir, 1);
        setenv("XSSHIM_DIR", xsd_dir, 1);
        setenv("LD_PRELOAD", shim_path, 1);
        unsetenv("XENSTORED_PATH");
        execl(xenstored_bin, xenstored_bin, "-N", "-F", pidfile, "-T", trace, (char *)NULL);
        _exit(127);
    }
    xsd_pid = pid;
    deadline = now_ms() + 5000;
    while (!socket_answers()) {
        int status;

        if (waitpid(pid, &status, WNOHANG) == pid) {
            xsd_pid = -1;
            fprintf(stderr, "xenstored exited early (status 0x%x)\n", (unsigned)status);
            dump_log();
            return -ECHILD;
        }
        if (now_ms() > deadline) {
            fprintf(stderr, "xenstored did not create %s within 5 s\n", sock_path);
            dump_log();
            stop_daemon();
            return -ETIMEDOUT;
        }
        usleep(2000);
    }
    return 0;
}

static void cleanup_all(void)
{
    stop_daemon();
    if (tmp_dir[0])
        tu_rm_rf(tmp_dir);
    tmp_dir[0] = '\0';
}

static int find_shim(void)
{
    const char *env = getenv("XSSHIM");
    const char *top = getenv("top_builddir");
    char exe[PATH_MAX - 64];
    ssize_t n;

    if (env && *env) {
        snprintf(shim_path, sizeof(shim_path), "%s", env);
        return access(shim_path, R_OK) == 0 ? 0 : -ENOENT;
    }
    if (top && *top) {
        snprintf(shim_path, sizeof(shim_path), "%s/tests/harness/.libs/xsshim.so", top);
        if (access(shim_path, R_OK) == 0)
            return 0;
    }
    /* <builddir>/tests/integration/test-store-xs -> <builddir>/tests/harness */
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        char *slash;

        exe[n] = '\0';
        if ((slash = strrchr(exe, '/')) != NULL) {
            *slash = '\0';
            snprintf(shim_path, sizeof(shim_path), "%s/../harness/.libs/xsshim.so", exe);
            if (access(shim_path, R_OK) == 0)
                return 0;
            /* libtool puts the real binary in .libs/ */
            snprintf(shim_path, sizeof(shim_path), "%s/../../harness/.libs/xsshim.so", exe);
            if (access(shim_path, R_OK) == 0)
                return 0;
        }
    }
    return -ENOENT;
}

static int group_setup(void **state)
{
    int r;

    strcpy(tmp_dir, "/tmp/test-store-xs.XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        tmp_dir[0] = '\0';
        return -1;
    }
    snprintf(xsd_dir, sizeof(xsd_dir), "%s/xenstored", tmp_dir);
    snprintf(run_root, sizeof(run_root), "%s/run", tmp_dir);
    snprintf(sock_path, sizeof(sock_path), "%s/socket", xsd_dir);
    if (mkdir(xsd_dir, 0700) < 0)
        return -1;
    atexit(cleanup_all);
    r = start_daemon();
    if (r < 0)
        return -1;
    setenv("XENSTORED_PATH", sock_path, 1);
    return 0;
}

static int group_teardown(void **state)
{
    cleanup_all();
    return 0;
}

/* ---- helpers ---- */

static struct xs_handle *raw_open(void)
{
    struct xs_handle *h = xs_open(0);

    assert_non_null(h);
    return h;
}

static char *raw_read(struct xs_handle *h, const char *path)
{
    unsigned len;
    char *v = xs_read(h, XBT_NULL, path, &len);

    if (v)
        assert_int_equal(strlen(v), len);
    return v;
}

static void assert_raw(struct xs_handle *h, const char *path, const char *want)
{
    char *v = raw_read(h, path);

    if (!v)
        fail_msg("%s: %s", path, strerror(errno));
    assert_string_equal(v, want);
    free(v);
}

static void assert_absent(struct xs_handle *h, const char *path)
{
    char *v = raw_read(h, path);

    if (v)
        fail_msg("%s still holds \"%s\"", path, v);
    assert_int_equal(errno, ENOENT);
}

static void raw_write(struct xs_handle *h, const char *path, const char *value, size_t len)
{
    assert_true(xs_write(h, XBT_NULL, path, value, (unsigned)len));
}

/* Permissions "n0": owner dom0, nobody else. */
static void assert_n0(struct xs_handle *h, const char *path)
{
    unsigned num = 0;
    struct xs_permissions *p = xs_get_permissions(h, XBT_NULL, path, &num);

    if (!p)
        fail_msg("%s: %s", path, strerror(errno));
    assert_int_equal(num, 1);
    assert_int_equal(p[0].id, 0);
    assert_int_equal(p[0].perms, XS_PERM_NONE);
    free(p);
}

static libdm__store *open_store(void)
{
    char spec[128];
    libdm__store *s = NULL;

    snprintf(spec, sizeof(spec), "xenstore:%s", run_root);
    assert_int_equal(libdm__store_open(spec, NULL, &s), 0);
    assert_string_equal(libdm__store_kind(s), "xenstore");
    assert_string_equal(libdm__store_run_root(s), run_root);
    return s;
}

static void make_record(libdm__record *rec, const char *name, uint32_t domid)
{
    char buf[256];

    libdm__record_init(rec);
    rec->name = strdup(name);
    rec->domid = domid;
    rec->pid = 4242;
    rec->pid_start = 98765;
    rec->keeper_pid = 4241;
    rec->keeper_start = 98764;
    snprintf(buf, sizeof(buf), "%s/%s/qmp\nodd\\name", run_root, name);
    rec->qmp_socket = strdup(buf);
    snprintf(buf, sizeof(buf), "%s/%s", run_root, name);
    rec->dir = strdup(buf);
    rec->profile = strdup("xen");
    rec->state = strdup("starting");
    rec->machine = strdup("xenfv");
    rec->memory_mb = 512;
    rec->confinement = strdup("uid 131077 gid 131072, chroot /var/run/xen/qemu-root-5");
    rec->created_ms = 1700000000123;
}

/* ---- the backend ---- */

static void test_put_get_list_del(void **state)
{
    libdm__store *s = open_store();
    struct xs_handle *h = raw_open();
    libdm__record rec, got;
    char **names;
    size_t n;
    struct stat st;
    char *v;

    assert_int_equal(stat(run_root, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);

    assert_int_equal(libdm__store_get(s, "guest5", &got), -ENOENT);
    assert_int_equal(libdm__store_del(s, "guest5"), -ENOENT);
    assert_int_equal(libdm__store_set_state(s, "guest5", "x", -1), -ENOENT);

    make_record(&rec, "guest5", 5);
    assert_int_equal(libdm__store_put(s, &rec), 0);
    memset(&got, 0xa5, sizeof(got));
    assert_int_equal(libdm__store_get(s, "guest5", &got), 0);
    tu_assert_records_equal(&rec, &got);
    libdm__record_clear(&got);

    /* What landed in xenstore, read with plain libxenstore. */
    assert_raw(h, "/tool/libdm/5/name", "guest5");
    assert_raw(h, "/tool/libdm/5/domid", "5");
    assert_raw(h, "/tool/libdm/5/pid", "4242");
    assert_raw(h, "/tool/libdm/5/pid-start", "98765");
    assert_raw(h, "/tool/libdm/5/exit-status", "-1");
    assert_raw(h, "/tool/libdm/5/state", "starting");
    v = raw_read(h, "/tool/libdm/5/qmp-socket");
    assert_non_null(v);
    assert_non_null(strstr(v, "/guest5/qmp\\nodd\\\\name")); /* same escaping as the dir format */
    free(v);
    /* device-model/<d>/state is QEMU's key: never written by libdm. */
    assert_absent(h, "/local/domain/0/device-model/5/state");
    assert_raw(h, "/local/domain/5/image/device-model-pid", "4242");
    /* libxl's readers: a qemu-xen DM, killed by uid when restricted. */
    assert_raw(h, "/libxl/5/dm-version", "qemu_xen");
    assert_raw(h, "/local/domain/5/image/device-model-kill-uid", "131077");
    assert_n0(h, "/tool/libdm/5");
    assert_n0(h, "/tool/libdm/5/name");
    assert_n0(h, "/tool/libdm/5/qmp-socket");
    assert_n0(h, "/local/domain/5/image/device-model-pid");

    /* libxl's destroy removes /libxl/<d> (libxl_domain.c) while the DM
     * may still run: libdm's record is not there and survives it. */
    assert_true(xs_rm(h, XBT_NULL, "/libxl/5"));
    assert_int_equal(libdm__store_get(s, "guest5", &got), 0);
    tu_assert_records_equal(&rec, &got);
    libdm__record_clear(&got);
    assert_int_equal(libdm__store_list(s, &names, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "guest5");
    libdm__store_names_free(names);
    raw_write(h, "/libxl/5/dm-version", "qemu_xen", 8);

    /* set_state updates the record, never QEMU's state key. */
    assert_int_equal(libdm__store_set_state(s, "guest5", "stopped", 9), 0);
    assert_raw(h, "/tool/libdm/5/state", "stopped");
    assert_raw(h, "/tool/libdm/5/exit-status", "9");
    assert_absent(h, "/local/domain/0/device-model/5/state");
    assert_int_equal(libdm__store_set_state(s, "guest5", NULL, -1), 0);
    assert_int_equal(libdm__store_get(s, "guest5", &got), 0);
    assert_string_equal(got.state, "stopped");
    assert_int_equal(got.exit_status, 9);
    libdm__record_clear(&got);

    /* A second record; list. */
    libdm__record_clear(&rec);
    make_record(&rec, "another", 12);
    rec.pid = 0; /* not started: no device-model-pid key */
    assert_int_equal(libdm__store_put(s, &rec), 0);
    assert_absent(h, "/local/domain/12/image/device-model-pid");
    /* Entries that are not ours are ignored by list. */
    raw_write(h, "/libxl/13/dm-version", "qemu_xen", 8);
    raw_write(h, "/tool/libdm/notadomid/name", "zzz", 3);
    raw_write(h, "/tool/libdm/14/name", "bad/name", 8);
    assert_int_equal(libdm__store_list(s, &names, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "another");
    assert_string_equal(names[1], "guest5");
    assert_null(names[2]);
    libdm__store_names_free(names);
    assert_true(xs_rm(h, XBT_NULL, "/libxl/13"));
    assert_true(xs_rm(h, XBT_NULL, "/tool/libdm/14"));
    assert_true(xs_rm(h, XBT_NULL, "/tool/libdm/notadomid"));

    /* del removes everything it wrote. */
    assert_int_equal(libdm__store_del(s, "guest5"), 0);
    assert_absent(h, "/tool/libdm/5/name");
    assert_absent(h, "/tool/libdm/5");
    assert_absent(h, "/libxl/5");
    assert_absent(h, "/local/domain/5/image/device-model-pid");
    assert_absent(h, "/local/domain/5/image/device-model-kill-uid");
    assert_int_equal(libdm__store_get(s, "guest5", &got), -ENOENT);
    assert_int_equal(libdm__store_del(s, "guest5"), -ENOENT);
    assert_int_equal(libdm__store_del(s, "another"), 0);
    assert_int_equal(libdm__store_list(s, &names, &n), 0);
    assert_int_equal(n, 0);
    libdm__store_names_free(names);

    libdm__record_clear(&rec);
    xs_close(h);
    libdm__store_close(s);
}

/* A DM without a domid cannot live in xenstore: it is recorded in the run
 * directory (as the dir store would), and every operation finds it there. */
static void test_no_domid_in_run_dir(void **state)
{
    libdm__store *s = open_store();
    struct xs_handle *h = raw_open();
    libdm__record rec, got;
    char path[256], **names;
    struct stat st;
    size_t n;

    make_record(&rec, "nodomid", 0);
    assert_int_equal(libdm__store_put(s, &rec), 0);
    snprintf(path, sizeof(path), "%s/nodomid/record", run_root);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(libdm__store_get(s, "nodomid", &got), 0);
    tu_assert_records_equal(&rec, &got);
    libdm__record_clear(&got);
    assert_int_equal(libdm__store_set_state(s, "nodomid", "dead", 9), 0);
    assert_int_equal(libdm__store_get(s, "nodomid", &got), 0);
    assert_string_equal(got.state, "dead");
    assert_int_equal(got.exit_status, 9);
    libdm__record_clear(&got);

    /* Nothing of it in xenstore. */
    assert_absent(h, "/libxl/0");
    assert_absent(h, "/tool/libdm/0");

    /* list shows both parts; a name is in at most one of them. */
    {
        libdm__record x;

        make_record(&x, "withdomid", 8);
        assert_int_equal(libdm__store_put(s, &x), 0);
        assert_int_equal(libdm__store_list(s, &names, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(names[0], "nodomid");
        assert_string_equal(names[1], "withdomid");
        libdm__store_names_free(names);
        x.domid = 0; /* the same name without a domid */
        assert_int_equal(libdm__store_put(s, &x), -EEXIST);
        x.domid = 8;
        assert_int_equal(libdm__store_del(s, "withdomid"), 0);
        libdm__record_clear(&x);
    }
    rec.domid = 9; /* the dir-held name with a domid */
    assert_int_equal(libdm__store_put(s, &rec), -EEXIST);
    assert_absent(h, "/libxl/9");
    assert_absent(h, "/tool/libdm/9");

    assert_int_equal(libdm__store_del(s, "nodomid"), 0);
    assert_int_equal(lstat(path, &st), -1);
    assert_int_equal(libdm__store_get(s, "nodomid", &got), -ENOENT);
    assert_int_equal(libdm__store_del(s, "nodomid"), -ENOENT);

    rec.domid = 0x7FF0; /* DOMID_FIRST_RESERVED */
    assert_int_equal(libdm__store_put(s, &rec), -EINVAL);
    libdm__record_clear(&rec);
    xs_close(h);
    libdm__store_close(s);
}

static void test_conflicts(void **state)
{
    libdm__store *s = open_store();
    libdm__record a, b, got;

    make_record(&a, "vm-a", 6);
    assert_int_equal(libdm__store_put(s, &a), 0);
    /* Same name, other domid. */
    a.domid = 7;
    assert_int_equal(libdm__store_put(s, &a), -EEXIST);
    /* Same domid, other name. */
    make_record(&b, "vm-b", 6);
    assert_int_equal(libdm__store_put(s, &b), -EEXIST);
    /* Replacing our own record is fine. */
    a.domid = 6;
    free(a.state);
    a.state = strdup("paused");
    a.pid = 777;
    assert_int_equal(libdm__store_put(s, &a), 0);
    assert_int_equal(libdm__store_get(s, "vm-a", &got), 0);
    tu_assert_records_equal(&a, &got);
    libdm__record_clear(&got);
    assert_int_equal(libdm__store_del(s, "vm-a"), 0);
    libdm__record_clear(&a);
    libdm__record_clear(&b);
    libdm__store_close(s);
}

/* Values read back go through the same validator as the dir format. */
static void test_invalid_values(void **state)
{
    libdm__store *s = open_store();
    struct xs_handle *h = raw_open();
    libdm__record rec, got;
    static const struct {
        const char *key;
        const char *value;
        size_t len;
    } bad[] = {
        { "pid", "12abc", 5 },
        { "pid", "-1", 2 },
        { "pid", "1\n", 2 },
        { "domid", "9", 1 },           /* another domain's */
        { "pid-start", "18446744073709551616", 20 },
        { "dir", "relative", 8 },
        { "qmp-socket", "/a\\q", 4 },  /* bad escape */
        { "qmp-socket", "/a\0b", 4 },  /* raw NUL */
        { "state", "Running", 7 },
        { "exit-status", "", 0 },
    };

    make_record(&rec, "vm8", 8);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[128];

        assert_int_equal(libdm__store_put(s, &rec), 0);
        snprintf(path, sizeof(path), "/tool/libdm/8/%s", bad[i].key);
        raw_write(h, path, bad[i].value, bad[i].len);
        memset(&got, 0xa5, sizeof(got));
        if (libdm__store_get(s, "vm8", &got) != -EINVAL)
            fail_msg("%s=\"%s\" accepted", bad[i].key, bad[i].value);
        assert_int_equal(libdm__store_set_state(s, "vm8", "x", -1), -EINVAL);
    }
    /* A missing numeric key: incomplete record. */
    assert_int_equal(libdm__store_put(s, &rec), 0);
    assert_true(xs_rm(h, XBT_NULL, "/tool/libdm/8/domid"));
    assert_int_equal(libdm__store_get(s, "vm8", &got), -EINVAL);
    /* Unknown extra keys are ignored. */
    assert_int_equal(libdm__store_put(s, &rec), 0);
    raw_write(h, "/tool/libdm/8/future-key", "x", 1);
    assert_int_equal(libdm__store_get(s, "vm8", &got), 0);
    libdm__record_clear(&got);
    /* A name with a NUL inside matches nothing. */
    raw_write(h, "/tool/libdm/8/name", "vm8\0x", 5);
    assert_int_equal(libdm__store_get(s, "vm8", &got), -ENOENT);
    assert_true(xs_rm(h, XBT_NULL, "/tool/libdm/8"));
    libdm__record_clear(&rec);
    xs_close(h);
    libdm__store_close(s);
}

/* QEMU itself writes device-model/<domid>/state = running under Xen; the
 * store leaves that key to QEMU and never derives a state from it. */
static void test_running_key_is_not_state(void **state)
{
    libdm__store *s = open_store();
    struct xs_handle *h = raw_open();
    libdm__record rec, got;

    make_record(&rec, "vm9", 9);
    assert_int_equal(libdm__store_put(s, &rec), 0);
    raw_write(h, "/local/domain/0/device-model/9/state", "running", 7);
    assert_int_equal(libdm__store_get(s, "vm9", &got), 0);
    assert_string_equal(got.state, "starting");
    libdm__record_clear(&got);
    assert_int_equal(libdm__store_set_state(s, "vm9", NULL, 0), 0);
    assert_int_equal(libdm__store_get(s, "vm9", &got), 0);
    assert_string_equal(got.state, "starting");
    assert_int_equal(got.exit_status, 0);
    libdm__record_clear(&got);
    assert_int_equal(libdm__store_del(s, "vm9"), 0);
    libdm__record_clear(&rec);
    xs_close(h);
    libdm__store_close(s);
}

/* Issue 23: the static keeper asks no NSS. Given libxl's shared DM users'
 * uids (--shared-uids), a store decides kill-uid from them alone: a uid in
 * the list is shared (no kill-uid key), one outside is the DM's own. */
static void test_shared_uids_given(void **state)
{
    libdm__store *s = open_store();
    struct xs_handle *h = raw_open();
    libdm__record rec;
    char list[64];

    (void)state;
    /* The controller's side resolves them: always a list set_ accepts. */
    assert_int_equal(libdm__store_shared_uids(list, sizeof(list)), 0);
    assert_int_equal(libdm__store_set_shared_uids(s, list), 0);
    assert_int_equal(libdm__store_shared_uids(list, 1), list[0] ? -ENOSPC : 0);
    /* Malformed lists are refused whole. */
    assert_int_equal(libdm__store_set_shared_uids(s, "x"), -EINVAL);
    assert_int_equal(libdm__store_set_shared_uids(s, "1,"), -EINVAL);
    assert_int_equal(libdm__store_set_shared_uids(s, "-1"), -EINVAL);
    assert_int_equal(libdm__store_set_shared_uids(s, "1,2,3"), -EINVAL);
    assert_int_equal(libdm__store_set_shared_uids(s, "1;2"), -EINVAL);

    make_record(&rec, "guest6", 6);   /* uid 131077 */
    assert_int_equal(libdm__store_set_shared_uids(s, "64533,131077"), 0);
    assert_int_equal(libdm__store_put(s, &rec), 0);
    assert_absent(h, "/local/domain/6/image/device-model-kill-uid");
    assert_int_equal(libdm__store_set_shared_uids(s, ""), 0);
    assert_int_equal(libdm__store_set_pids(s, "guest6", 4243, 1, 0, 0), 0);
    assert_raw(h, "/local/domain/6/image/device-model-kill-uid", "131077");
    assert_int_equal(libdm__store_set_shared_uids(s, "131077"), 0);
    assert_int_equal(libdm__store_set_pids(s, "guest6", 4244, 1, 0, 0), 0);
    assert_absent(h, "/local/domain/6/image/device-model-kill-uid");
    assert_int_equal(libdm__store_del(s, "guest6"), 0);
    libdm__record_clear(&rec);
    xs_close(h);
    libdm__store_close(s);
}

/* "auto" picks xenstore when a daemon answers (checked as a private uid, with the
 * run root under XDG_RUNTIME_DIR, so that /run/libdm is never touched). */
static void test_auto(void **state)
{
    char xdg[128], want[160];
    pid_t pid;
    int status;

    if (geteuid() != 0)
        skip();
    snprintf(xdg, sizeof(xdg), "%s/xdg", tmp_dir);
    assert_int_equal(mkdir(xdg, 0700), 0);
    assert_int_equal(chown(xdg, PRIVATE_UID, PRIVATE_UID), 0);
    snprintf(want, sizeof(want), "%s/libdm", xdg);
    /* Let that uid reach the socket for this test only. */
    assert_int_equal(chmod(tmp_dir, 0711), 0);
    assert_int_equal(chmod(xsd_dir, 0711), 0);
    assert_int_equal(chmod(sock_path, 0666), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        libdm__store *s;
        int code = 0;

        if (setgroups(0, NULL) < 0 || setresgid(PRIVATE_UID, PRIVATE_UID, PRIVATE_UID) < 0 ||
            setresuid(PRIVATE_UID, PRIVATE_UID, PRIVATE_UID) < 0)
            _exit(10);
        setenv("XDG_RUNTIME_DIR", xdg, 1);
        if (libdm__store_open("auto", NULL, &s) != 0)
            _exit(11);
        if (strcmp(libdm__store_kind(s), "xenstore") != 0)
            code = 12;
        else if (strcmp(libdm__store_run_root(s), want) != 0)
            code = 13;
        libdm__store_close(s);
        if (!code && libdm__store_open(NULL, NULL, &s) == 0) {
            if (strcmp(libdm__store_kind(s), "xenstore") != 0)
                code = 14;
            libdm__store_close(s);
        }
        _exit(code);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    chmod(sock_path, 0600);
    chmod(xsd_dir, 0700);
    chmod(tmp_dir, 0700);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- raw libxenstore against the real daemon ---- */

static void test_raw_rw_rm_perms(void **state)
{
    struct xs_handle *h = raw_open();
    struct xs_permissions perm = { .id = 0, .perms = XS_PERM_NONE };
    struct xs_permissions *p;
    unsigned num;
    char **ents;

    raw_write(h, "/test/raw/a", "hello", 5);
    raw_write(h, "/test/raw/b", "", 0);
    assert_raw(h, "/test/raw/a", "hello");
    assert_raw(h, "/test/raw/b", "");
    ents = xs_directory(h, XBT_NULL, "/test/raw", &num);
    assert_non_null(ents);
    assert_int_equal(num, 2);
    free(ents);
    /* Default permissions of a node dom0 creates, then n0. */
    p = xs_get_permissions(h, XBT_NULL, "/test/raw/a", &num);
    assert_non_null(p);
    assert_int_equal(p[0].id, 0);
    free(p);
    assert_true(xs_set_permissions(h, XBT_NULL, "/test/raw/a", &perm, 1));
    assert_n0(h, "/test/raw/a");
    {
        struct xs_permissions two[2] = { { .id = 0, .perms = XS_PERM_NONE },
                                         { .id = 3, .perms = XS_PERM_READ } };

        assert_true(xs_set_permissions(h, XBT_NULL, "/test/raw/b", two, 2));
        p = xs_get_permissions(h, XBT_NULL, "/test/raw/b", &num);
        assert_non_null(p);
        assert_int_equal(num, 2);
        assert_int_equal(p[1].id, 3);
        assert_int_equal(p[1].perms, XS_PERM_READ);
        free(p);
    }
    assert_true(xs_rm(h, XBT_NULL, "/test/raw"));
    assert_absent(h, "/test/raw/a");
    assert_absent(h, "/test/raw");
    xs_close(h);
}

static void test_raw_transaction_conflict(void **state)
{
    struct xs_handle *h = raw_open();
    struct xs_handle *h2 = raw_open();
    xs_transaction_t t;
    char *v;
    unsigned len;

    raw_write(h, "/test/tx", "0", 1);
    t = xs_transaction_start(h);
    assert_true(t != XBT_NULL);
    v = xs_read(h, t, "/test/tx", &len);
    assert_non_null(v);
    free(v);
    /* Someone else changes it meanwhile. */
    raw_write(h2, "/test/tx", "other", 5);
    assert_true(xs_write(h, t, "/test/tx", "mine", 4));
    assert_false(xs_transaction_end(h, t, false));
    assert_int_equal(errno, EAGAIN);
    assert_raw(h, "/test/tx", "other");
    /* Without interference it commits. */
    t = xs_transaction_start(h);
    assert_true(t != XBT_NULL);
    assert_true(xs_write(h, t, "/test/tx", "mine", 4));
    assert_true(xs_transaction_end(h, t, false));
    assert_raw(h2, "/test/tx", "mine");
    assert_true(xs_rm(h, XBT_NULL, "/test/tx"));
    xs_close(h2);
    xs_close(h);
}

/* Next watch event on @h within @ms, as "path" (caller frees), or NULL. */
static char *next_watch_event(struct xs_handle *h, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;
    int fd = xs_fileno(h);

    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        char **ev = xs_check_watch(h);
        int left;

        if (ev) {
            char *path = strdup(ev[XS_WATCH_PATH]);

            assert_string_equal(ev[XS_WATCH_TOKEN], "tok");
            free(ev);
            return path;
        }
        left = (int)(deadline - now_ms());
        if (now_ms() >= deadline || left <= 0)
            return NULL;
        poll(&pfd, 1, left);
    }
}

static void test_raw_watch(void **state)
{
    struct xs_handle *h = raw_open();
    struct xs_handle *w = raw_open();
    char *path;

    raw_write(h, "/test/watched", "0", 1);
    assert_true(xs_watch(w, "/test/watched", "tok"));
    /* Registering fires once. */
    path = next_watch_event(w, 2000);
    assert_non_null(path);
    assert_string_equal(path, "/test/watched");
    free(path);
    assert_null(next_watch_event(w, 50));
    raw_write(h, "/test/watched/child", "1", 1);
    path = next_watch_event(w, 2000);
    assert_non_null(path);
    assert_string_equal(path, "/test/watched/child");
    free(path);
    assert_true(xs_unwatch(w, "/test/watched", "tok"));
    assert_true(xs_rm(h, XBT_NULL, "/test/watched"));
    xs_close(w);
    xs_close(h);
}

/* Last: the daemon goes away and comes back; the store reconnects. */
static void test_daemon_restart(void **state)
{
    libdm__store *s = open_store();
    libdm__record rec, got;
    int r;

    make_record(&rec, "vm10", 10);
    assert_int_equal(libdm__store_put(s, &rec), 0);
    stop_daemon();
    r = libdm__store_get(s, "vm10", &got);
    assert_true(r < 0 && r != -ENOENT);
    r = libdm__store_get(s, "vm10", &got); /* cannot reconnect */
    assert_true(r < 0 && r != -ENOENT);
    assert_int_equal(start_daemon(), 0);
    /* A fresh daemon has an empty database. */
    assert_int_equal(libdm__store_get(s, "vm10", &got), -ENOENT);
    assert_int_equal(libdm__store_put(s, &rec), 0);
    assert_int_equal(libdm__store_get(s, "vm10", &got), 0);
    libdm__record_clear(&got);
    assert_int_equal(libdm__store_del(s, "vm10"), 0);
    libdm__record_clear(&rec);
    libdm__store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_list_del),
        cmocka_unit_test(test_no_domid_in_run_dir),
        cmocka_unit_test(test_conflicts),
        cmocka_unit_test(test_invalid_values),
        cmocka_unit_test(test_running_key_is_not_state),
        cmocka_unit_test(test_shared_uids_given),
        cmocka_unit_test(test_auto),
        cmocka_unit_test(test_raw_rw_rm_perms),
        cmocka_unit_test(test_raw_transaction_conflict),
        cmocka_unit_test(test_raw_watch),
        cmocka_unit_test(test_daemon_restart),
    };

    xenstored_bin = getenv("XENSTORED");
    if (!xenstored_bin || !*xenstored_bin)
        xenstored_bin = DEFAULT_XENSTORED;
    if (access(xenstored_bin, X_OK) != 0) {
        printf("SKIP: %s not found: install the Debian package xen-utils-4.17 "
               "(apt-get install --no-install-recommends xen-utils-4.17) to run this test\n",
               xenstored_bin);
        return 77;
    }
    if (find_shim() < 0) {
        fprintf(stderr, "test-store-xs: the hypervisor shim xsshim.so was not found "
                        "(set XSSHIM, or build it with \"make check\")\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
