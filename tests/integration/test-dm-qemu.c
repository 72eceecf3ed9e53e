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
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <pwd.h>

#include <libdm/libdm.h>
#include "testutil.h"
#include "qemu-fixture.h"

#define LIBDM_TEST_XEN_RUN_DIR "/var/run/xen"
/* Restricted DMs run as a private uid with no account: never nobody, whom
 * a kill-by-uid (xl destroy's reaper) on this machine could reach. */
#define TEST_UID 64532
#define TEST_UID_S "64532"
#define TEST_RUNAS TEST_UID_S ":" TEST_UID_S

typedef struct fixture {
    qf_store s;         /* store, context, fds before */
    libdm_dm_config *cfg;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    qf_open(&f->s, "dm");
    f->cfg = qf_config("t1", 10000);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    libdm_dm_config_free(f->cfg);
    qf_close(&f->s);
    /* Nothing leaked: same descriptors, and every child reaped. */
    qf_assert_clean(&f->s);
    free(f);
    return 0;
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

    assert_int_equal(libdm_dm_start(f->s.ctx, f->cfg, &dm), 0);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_PAUSED);
    assert_string_equal(libdm_dm_get_runstate(dm), "prelaunch");
    pid = libdm_dm_get_pid(dm);
    assert_true(tu_pid_alive(pid));
    assert_true(tu_path_exists(f->s.dir, "t1/qmp.sock"));
    /* QEMU's listening socket (fd 3) must be non-blocking: QEMU may accept()
     * on a spurious wakeup, and a blocking listener hangs its main loop. */
    assert_true(fd_flags(pid, 3) >= 0);
    assert_true(fd_flags(pid, 3) & O_NONBLOCK);
    assert_true(tu_path_exists(f->s.dir, "t1/record"));

    /* A second DM of the same name is refused while the first lives. */
    libdm_dm *again = NULL;
    assert_int_equal(libdm_dm_start(f->s.ctx, f->cfg, &again), -EEXIST);
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
    assert_false(tu_path_exists(f->s.dir, "t1"));
    tu_settle_children(f->s.ctx, 0);
}

static void test_reattach(void **state)
{
    fixture *f = *state;
    libdm_ctx *other;
    libdm_dm *dm, *dm2;
    libdm_dm_info *infos;
    size_t n;
    int pid;

    assert_int_equal(libdm_dm_start(f->s.ctx, f->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    /* The DM outlives the handle (and, in dmctl, the process). */
    libdm_dm_release(dm);
    assert_true(tu_pid_alive(pid));

    assert_int_equal(libdm_ctx_new(NULL, &other), 0);
    assert_int_equal(libdm_ctx_set_store(other, f->s.dir), 0);
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
    tu_settle_children(f->s.ctx, 0);
}

static void test_kill9_with_command_outstanding(void **state)
{
    fixture *f = *state;
    libdm_dm *dm;
    qf_reply o = { 0 };
    uint64_t t0;
    int pid;

    assert_int_equal(libdm_dm_start(f->s.ctx, f->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    /* Freeze QEMU so the command is certainly outstanding, then kill it. */
    assert_int_equal(kill(pid, SIGSTOP), 0);
    assert_int_equal(libdm_qmp_call_async(libdm_dm_get_qmp(dm), "query-status", NULL, 20000,
                                          qf_on_reply, &o, NULL), 0);
    for (int i = 0; i < 5; i++)
        libdm_ctx_run_once(f->s.ctx, 10);
    assert_false(o.done);
    t0 = tu_now_ms();
    assert_int_equal(kill(pid, SIGKILL), 0);
    while ((!o.done || libdm_dm_get_state(dm) != LIBDM_DM_DEAD) && tu_now_ms() - t0 < 5000)
        libdm_ctx_run_once(f->s.ctx, 100);
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
    assert_false(tu_path_exists(f->s.dir, "t1"));
    tu_settle_children(f->s.ctx, 0);
}

/* A second context on the fixture's store whose errors are logged to
 * memory (start_must_fail, start_refused). */
typedef struct memlog {
    xentoollog_logger *lg;
    libdm_ctx *ctx;
    FILE *mem;
    char *text;
    size_t len;
} memlog;

static void memlog_open(memlog *m, fixture *f)
{
    m->text = NULL;
    m->len = 0;
    m->mem = open_memstream(&m->text, &m->len);
    assert_non_null(m->mem);
    m->lg = (xentoollog_logger *)xtl_createlogger_stdiostream(m->mem, XTL_ERROR, 0);
    assert_int_equal(libdm_ctx_new(m->lg, &m->ctx), 0);
    assert_int_equal(libdm_ctx_set_store(m->ctx, f->s.dir), 0);
}

/* Frees the context and its logger, then asserts the log holds @prefix and
 * @expect (printing it if not), and that no record "t1" is left. */
static void memlog_close_expect(memlog *m, fixture *f, const char *prefix, const char *expect)
{
    libdm_ctx_free(m->ctx);
    xtl_logger_destroy(m->lg);
    fclose(m->mem);
    if (!strstr(m->text, expect))
        print_message("log was: %s\n", m->text);
    assert_non_null(strstr(m->text, prefix));
    assert_non_null(strstr(m->text, expect));
    free(m->text);
    assert_false(tu_path_exists(f->s.dir, "t1"));
}

/* A DM that dies at start: a clear error, nothing left behind. */
static void start_must_fail(fixture *f, const char *expect_in_log)
{
    memlog m;
    libdm_dm *dm = NULL;
    uint64_t t0 = tu_now_ms();

    memlog_open(&m, f);
    assert_true(libdm_dm_start(m.ctx, f->cfg, &dm) < 0);
    assert_null(dm);
    assert_true(tu_now_ms() - t0 < 5000);
    tu_settle_children(m.ctx, 0);
    /* The error names the DM, how it ended, and what its log said. */
    memlog_close_expect(&m, f, "t1:", expect_in_log);
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
    assert_int_equal(libdm_dm_config_set_runas(f->cfg, TEST_RUNAS), 0);
    assert_int_equal(libdm_dm_config_set_restrict(f->cfg, 1), 0);
    assert_int_equal(libdm_dm_config_add_extra_arg(f->cfg, "-sandbox"), 0);
    assert_int_equal(libdm_dm_config_add_extra_arg(f->cfg, "on,elevateprivileges=deny"), 0);
    start_must_fail(f, "signal 31");
}

/* The value of "KEY:" in /proc/PID/status (first number), or -1. */
static long proc_status(int pid, const char *key)
{
    char path[64], line[256];
    size_t klen = strlen(key);
    long v = -1;
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    fp = fopen(path, "re");
    if (!fp)
        return -1;
    while (fgets(line, sizeof(line), fp))
        if (!strncmp(line, key, klen) && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    fclose(fp);
    return v;
}

/* The soft and hard values of the /proc/PID/limits line starting @name. */
static void proc_limit(int pid, const char *name, char *soft, char *hard)
{
    char path[64], line[256];
    size_t n = strlen(name);
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%d/limits", pid);
    fp = fopen(path, "re");
    assert_non_null(fp);
    soft[0] = hard[0] = '\0';
    while (fgets(line, sizeof(line), fp))
        if (!strncmp(line, name, n) && sscanf(line + n, "%31s %31s", soft, hard) == 2)
            break;
    fclose(fp);
}

static void assert_limit(int pid, const char *name, const char *value)
{
    char soft[32], hard[32];

    proc_limit(pid, name, soft, hard);
    assert_string_equal(soft, value);
    assert_string_equal(hard, value);
}

static void readlink_proc(int pid, const char *what, char *buf, size_t len)
{
    char path[64];
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/%d/%s", pid, what);
    n = readlink(path, buf, len - 1);
    assert_true(n > 0);
    buf[n] = '\0';
}

static void assert_ns_differs(int pid, const char *ns)
{
    char mine[64], theirs[64], what[16];

    snprintf(what, sizeof(what), "ns/%s", ns);
    readlink_proc(getpid(), what, mine, sizeof(mine));
    readlink_proc(pid, what, theirs, sizeof(theirs));
    assert_string_not_equal(mine, theirs);
}

/* Everything dm_restrict promises, read from /proc on the running DM. */
static void assert_confined(int pid, const char *chroot_dir)
{
    char root[512];

    assert_int_equal(proc_status(pid, "Uid"), TEST_UID);
    assert_int_equal(proc_status(pid, "Gid"), TEST_UID);
    assert_int_equal(proc_status(pid, "NoNewPrivs"), 1);
    assert_int_equal(proc_status(pid, "Seccomp"), 2);
    assert_limit(pid, "Max file size", "262144");
    assert_limit(pid, "Max core file size", "0");
    assert_limit(pid, "Max locked memory", "0");
    assert_limit(pid, "Max file locks", "0");
    assert_limit(pid, "Max msgqueue size", "0");
    assert_ns_differs(pid, "mnt");
    assert_ns_differs(pid, "ipc");
    readlink_proc(pid, "root", root, sizeof(root));
    assert_string_equal(root, chroot_dir);
}

/* Starts restricted as a private uid, checks the confinement, resume and stop.
 * @chroot_dir NULL: libdm's own, DIR/t1/root. */
static void run_restricted(fixture *f, libdm_seccomp mode, const char *chroot_dir,
                           const char *want_seccomp)
{
    char own[512];
    libdm_dm *dm;
    int pid;

    snprintf(own, sizeof(own), "%s/t1/root", f->s.dir);
    assert_int_equal(libdm_dm_config_set_restrict(f->cfg, 1), 0);
    assert_int_equal(libdm_dm_config_set_runas(f->cfg, TEST_RUNAS), 0);
    assert_int_equal(libdm_dm_config_set_chroot(f->cfg, chroot_dir), 0);
    assert_int_equal(libdm_dm_config_set_seccomp(f->cfg, mode), 0);
    assert_int_equal(libdm_dm_start(f->s.ctx, f->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    assert_string_equal(libdm_dm_get_runstate(dm), "prelaunch");
    assert_confined(pid, chroot_dir ? chroot_dir : own);
    assert_non_null(strstr(libdm_dm_get_confinement(dm), want_seccomp));
    assert_non_null(strstr(libdm_dm_get_confinement(dm), "uid " TEST_UID_S " gid " TEST_UID_S));
    if (!chroot_dir) {
        struct stat st;

        assert_int_equal(lstat(own, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0);
    }
    assert_int_equal(libdm_dm_resume(dm, 5000), 0);
    assert_int_equal(libdm_dm_stop(dm, 0, 5000), 0);
    assert_true(WIFEXITED(libdm_dm_get_exit_status(dm)));
    assert_int_equal(WEXITSTATUS(libdm_dm_get_exit_status(dm)), 0);
    libdm_dm_release(dm);
    qf_wait_gone(f->s.ctx, pid, 5000);
    /* The DM's directory and libdm's own chroot in it are gone. */
    assert_false(tu_path_exists(f->s.dir, "t1"));
    tu_settle_children(f->s.ctx, 0);
}

static void test_restricted(void **state)
{
    fixture *f = *state;
    char chroot_dir[512];

    if (geteuid() != 0)
        skip();
    snprintf(chroot_dir, sizeof(chroot_dir), "%s/empty-root", f->s.dir);
    assert_int_equal(mkdir(chroot_dir, 0755), 0);
    run_restricted(f, LIBDM_SECCOMP_AUTO, chroot_dir, "seccomp qemu-sandbox");
    /* A caller's chroot is the caller's: left in place. */
    assert_true(tu_path_exists(f->s.dir, "empty-root"));
    rmdir(chroot_dir);
}

/* The keeper's libseccomp filter, forced on a QEMU that has -sandbox. */
static void test_restricted_keeper_filter(void **state)
{
    fixture *f = *state;

    if (geteuid() != 0)
        skip();
    run_restricted(f, LIBDM_SECCOMP_FILTER, NULL, "seccomp keeper-filter");
}

static void test_restricted_qemu_sandbox_own_chroot(void **state)
{
    fixture *f = *state;

    if (geteuid() != 0)
        skip();
    run_restricted(f, LIBDM_SECCOMP_QEMU, NULL, "seccomp qemu-sandbox");
}

/* The keeper's filter kills a QEMU that tries to spawn: -incoming exec:
 * forks a shell (QEMU's own spawn=deny does the same). */
static void test_keeper_filter_denies_spawn(void **state)
{
    fixture *f = *state;

    if (geteuid() != 0)
        skip();
    assert_int_equal(libdm_dm_config_set_restrict(f->cfg, 1), 0);
    assert_int_equal(libdm_dm_config_set_runas(f->cfg, TEST_RUNAS), 0);
    assert_int_equal(libdm_dm_config_set_seccomp(f->cfg, LIBDM_SECCOMP_FILTER), 0);
    assert_int_equal(libdm_dm_config_set_incoming(f->cfg, "exec:cat /dev/null"), 0);
    start_must_fail(f, "signal 31");
}

/* Saves a running guest's state to @path through QEMU's own migration
 * (exec: works on an unrestricted source). */
static void save_guest(fixture *f, const char *path)
{
    libdm_dm_config *cfg;
    libdm_json *args, *v = NULL;
    libdm_dm *src;
    char uri[600];
    const char *st = NULL;
    uint64_t deadline = tu_now_ms() + 20000;

    assert_int_equal(libdm_dm_config_new(&cfg), 0);
    assert_int_equal(libdm_dm_config_set_name(cfg, "saved"), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(cfg, tu_qemu()), 0);
    assert_int_equal(libdm_dm_config_set_machine(cfg, "pc"), 0);
    assert_int_equal(libdm_dm_config_set_memory_mb(cfg, 64), 0);
    assert_int_equal(libdm_dm_start(f->s.ctx, cfg, &src), 0);
    assert_int_equal(libdm_dm_resume(src, 5000), 0);
    assert_int_equal(libdm_dm_pause(src, 5000), 0);
    snprintf(uri, sizeof(uri), "exec:cat > %s", path);
    args = libdm_json_new_object();
    assert_int_equal(libdm_json_object_add(args, "uri", libdm_json_new_string(uri)), 0);
    assert_int_equal(libdm_qmp_call(libdm_dm_get_qmp(src), "migrate", args, 5000, NULL), 0);
    libdm_json_free(args);
    while (tu_now_ms() < deadline) {
        libdm_json_free(v);
        v = NULL;
        assert_int_equal(libdm_qmp_call(libdm_dm_get_qmp(src), "query-migrate", NULL, 5000, &v),
                         0);
        st = libdm_json_get_string(libdm_json_object_get(v, "status"));
        if (st && (!strcmp(st, "completed") || !strcmp(st, "failed")))
            break;
        libdm_ctx_run_once(f->s.ctx, 20);
    }
    assert_non_null(st);
    assert_string_equal(st, "completed");
    libdm_json_free(v);
    assert_int_equal(libdm_dm_stop(src, 0, 5000), 0);
    libdm_dm_release(src);
    libdm_dm_config_free(cfg);
}

/* Restricted restore: the caller opens the saved stream and libdm hands it
 * to a confined QEMU as -incoming fd:N through the keeper (QEMU itself,
 * chrooted as another uid, could not open it). Guarded resume waits for the
 * load to complete. */
static void test_restricted_restore_from_fd(void **state)
{
    fixture *f = *state;
    char path[512];
    libdm_dm *dm;
    char uri[32];
    int fd, qfd, pid;

    if (geteuid() != 0)
        skip();
    snprintf(path, sizeof(path), "%s/guest.state", f->s.dir);
    save_guest(f, path);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(libdm_dm_config_set_machine(f->cfg, "pc"), 0);
    assert_int_equal(libdm_dm_config_set_memory_mb(f->cfg, 64), 0);
    assert_int_equal(libdm_dm_config_set_restrict(f->cfg, 1), 0);
    assert_int_equal(libdm_dm_config_set_runas(f->cfg, TEST_RUNAS), 0);
    assert_int_equal(libdm_dm_config_pass_fd(f->cfg, fd, &qfd), 0);
    close(fd); /* the configuration holds its own copy */
    assert_int_equal(qfd, LIBDM_PASS_FD_FIRST);
    snprintf(uri, sizeof(uri), "fd:%d", qfd);
    assert_int_equal(libdm_dm_config_set_incoming(f->cfg, uri), 0);
    assert_int_equal(libdm_dm_start(f->s.ctx, f->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    snprintf(path, sizeof(path), "%s/t1/root", f->s.dir);
    assert_confined(pid, path);
    assert_int_equal(libdm_dm_resume(dm, 20000), 0);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_RUNNING);
    assert_int_equal(libdm_dm_stop(dm, 0, 5000), 0);
    libdm_dm_release(dm);
    qf_wait_gone(f->s.ctx, pid, 5000);
    assert_false(tu_path_exists(f->s.dir, "t1"));
    tu_settle_children(f->s.ctx, 0);
}

typedef struct seen {
    libdm_dm_state from[16], to[16];
    int n, exit_status, done, status;
    char cause[256];
} seen;

static void on_dm_event(libdm_dm *dm, const libdm_dm_event *ev, void *user)
{
    seen *w = user;

    if (w->n < 16) {
        w->from[w->n] = ev->old_state;
        w->to[w->n] = ev->new_state;
        w->n++;
    }
    if (ev->new_state == LIBDM_DM_DEAD) {
        w->exit_status = ev->exit_status;
        snprintf(w->cause, sizeof(w->cause), "%s", ev->cause ? ev->cause : "");
    }
}

static void on_done(libdm_dm *dm, int status, void *user)
{
    seen *w = user;

    w->done++;
    w->status = status;
}

static void run_until(libdm_ctx *ctx, const int *counter, int want)
{
    qf_run_until_count(ctx, counter, want, 10000);
    assert_true(*counter >= want);
}

static bool saw(const seen *w, libdm_dm_state from, libdm_dm_state to)
{
    for (int i = 0; i < w->n; i++)
        if (w->from[i] == from && w->to[i] == to)
            return true;
    return false;
}

/* The host's view: async pause and query-status, every state change
 * reported through the DM's callback (never from inside the call), and a
 * DM killed behind libdm's back reported DEAD with its wait status and
 * cause, holding no fd afterwards. */
static void test_events_and_async_calls(void **state)
{
    fixture *f = *state;
    seen w = { .exit_status = -2 };
    libdm_dm_info *infos = NULL;
    libdm_dm *dm;
    size_t n = 0;
    int pid, fds, base;

    /* The context's own fds (epoll, the store) are open from here on. */
    assert_int_equal(libdm_dm_list(f->s.ctx, &infos, &n), 0);
    libdm_dm_info_free(infos, n);
    base = tu_fd_count();
    assert_int_equal(libdm_dm_start(f->s.ctx, f->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    assert_int_equal(libdm_dm_set_event_callback(dm, on_dm_event, &w), 0);
    assert_int_equal(libdm_dm_resume_async(dm, 5000, on_done, &w), 0);
    assert_int_equal(w.n, 0); /* deferred, never inside the call */
    run_until(f->s.ctx, &w.done, 1);
    assert_int_equal(w.status, 0);
    run_until(f->s.ctx, &w.n, 1);
    assert_true(saw(&w, LIBDM_DM_PAUSED, LIBDM_DM_RUNNING));
    assert_int_equal(libdm_dm_pause_async(dm, 5000, on_done, &w), 0);
    run_until(f->s.ctx, &w.done, 2);
    assert_int_equal(w.status, 0);
    assert_true(saw(&w, LIBDM_DM_RUNNING, LIBDM_DM_PAUSED));
    assert_int_equal(libdm_dm_query_status_async(dm, 5000, on_done, &w), 0);
    /* One operation at a time on a DM. */
    assert_int_equal(libdm_dm_pause_async(dm, 5000, on_done, &w), -EBUSY);
    run_until(f->s.ctx, &w.done, 3);
    assert_int_equal(w.status, 0);
    assert_string_equal(libdm_dm_get_runstate(dm), "paused");

    assert_int_equal(kill(pid, SIGKILL), 0);
    run_until(f->s.ctx, &w.exit_status, 0);
    qf_wait_gone(f->s.ctx, pid, 5000);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
    assert_true(WIFSIGNALED(w.exit_status) && WTERMSIG(w.exit_status) == SIGKILL);
    assert_non_null(strstr(w.cause, "killed by signal 9"));
    /* DEAD holds no fd: the test's count is back to what it was before the
     * DM, with the handle still held (a closing monitor may take a moment). */
    tu_settle_children(f->s.ctx, 0);
    for (int i = 0; i < 50 && (fds = tu_fd_count()) != base; i++)
        libdm_ctx_run_once(f->s.ctx, 10);
    assert_int_equal(tu_fd_count(), base);
    assert_int_equal(libdm_dm_stop(dm, 0, 2000), 0);
    libdm_dm_release(dm);
    assert_false(tu_path_exists(f->s.dir, "t1"));
}

/* pause_async and query_status_async at their deadline (a SIGSTOPped DM:
 * -ETIMEDOUT, BROKEN) and when the DM dies mid-operation (a negative status,
 * DEAD, no fd or child left). */
static void test_async_calls_deadline_and_death(void **state)
{
    fixture *f = *state;
    seen w = { 0 };
    libdm_dm *dm;
    int pid;

    assert_int_equal(libdm_dm_start(f->s.ctx, f->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    assert_int_equal(libdm_dm_pause_async(dm, 300, on_done, &w), 0);
    run_until(f->s.ctx, &w.done, 1);
    assert_int_equal(w.status, -ETIMEDOUT);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_BROKEN);
    assert_int_equal(libdm_dm_stop(dm, 1, 2000), 0);
    libdm_dm_release(dm);
    qf_wait_gone(f->s.ctx, pid, 5000);

    /* Death mid-operation: the query is outstanding when QEMU is killed. */
    assert_int_equal(libdm_dm_start(f->s.ctx, f->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    assert_int_equal(libdm_dm_query_status_async(dm, 5000, on_done, &w), 0);
    assert_int_equal(kill(pid, SIGKILL), 0);
    run_until(f->s.ctx, &w.done, 2);
    assert_true(w.status < 0);
    qf_wait_gone(f->s.ctx, pid, 5000);
    for (int i = 0; i < 100 && libdm_dm_get_state(dm) != LIBDM_DM_DEAD; i++)
        libdm_ctx_run_once(f->s.ctx, 10);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
    assert_int_equal(libdm_dm_stop(dm, 0, 2000), 0);
    libdm_dm_release(dm);
    assert_false(tu_path_exists(f->s.dir, "t1"));
    tu_settle_children(f->s.ctx, 0);
}

/* start_async only checks the configuration: the claim, the run directory,
 * the record and the keeper are made by later steps from the loop (so a
 * host issuing many starts from one callback is not stalled). A name in use
 * is then refused through the callback; a stop or a release during the
 * set-up undoes exactly what it made, and leaves no fd or child. */
static void test_start_async_deferred_setup(void **state)
{
    fixture *f = *state;
    seen a = { 0 }, b = { 0 }, c = { 0 };
    libdm_dm *dm, *dm2, *dm3;
    libdm_dm_info *infos = NULL;
    char *rs = NULL;
    size_t n = 0;
    int base;

    assert_int_equal(libdm_dm_list(f->s.ctx, &infos, &n), 0);
    libdm_dm_info_free(infos, n);
    base = tu_fd_count();
    assert_int_equal(libdm_dm_start_async(f->s.ctx, f->cfg, on_done, &a, &dm), 0);
    assert_false(tu_path_exists(f->s.dir, "t1"));    /* nothing made by the call */
    assert_int_equal(tu_fd_count(), base);
    assert_int_equal(tu_child_count(), 0);
    /* The same name again: accepted by the call, refused by the claim. */
    assert_int_equal(libdm_dm_start_async(f->s.ctx, f->cfg, on_done, &b, &dm2), 0);
    run_until(f->s.ctx, &a.done, 1);
    run_until(f->s.ctx, &b.done, 1);
    assert_int_equal(a.status, 0);
    assert_int_equal(b.status, -EEXIST);
    assert_int_equal(libdm_dm_get_state(dm2), LIBDM_DM_DEAD);
    assert_non_null(strstr(libdm_dm_last_error(dm2), "in use"));
    assert_int_equal(libdm_dm_stop(dm2, 0, 2000), 0);   /* removes nothing of t1 */
    libdm_dm_release(dm2);
    assert_true(tu_path_exists(f->s.dir, "t1"));
    assert_int_equal(libdm_dm_query_status(dm, 2000, &rs), 0);
    assert_string_equal(rs, "prelaunch");
    free(rs);
    assert_int_equal(libdm_dm_stop(dm, 0, 5000), 0);
    libdm_dm_release(dm);
    assert_false(tu_path_exists(f->s.dir, "t1"));

    /* Stopped before its first step: the start ends -ECANCELED, the stop
     * at once with 0; nothing was made, nothing is left. */
    assert_int_equal(libdm_dm_start_async(f->s.ctx, f->cfg, on_done, &c, &dm3), 0);
    assert_int_equal(libdm_dm_stop_async(dm3, 0, 5000, on_done, &b), 0);
    run_until(f->s.ctx, &c.done, 1);
    run_until(f->s.ctx, &b.done, 2);
    assert_int_equal(c.status, -ECANCELED);
    assert_int_equal(b.status, 0);
    assert_int_equal(libdm_dm_get_state(dm3), LIBDM_DM_DEAD);
    libdm_dm_release(dm3);
    assert_false(tu_path_exists(f->s.dir, "t1"));

    /* Stopped after the claim and the record, before the keeper: undone. */
    a = (seen){ 0 };
    assert_int_equal(libdm_dm_start_async(f->s.ctx, f->cfg, on_done, &a, &dm3), 0);
    for (int i = 0; i < 200 && !tu_path_exists(f->s.dir, "t1"); i++)
        libdm_ctx_run_once(f->s.ctx, 0);
    assert_true(tu_path_exists(f->s.dir, "t1"));
    if (libdm_dm_get_pid(dm3) == 0 && tu_child_count() == 0) {
        assert_int_equal(libdm_dm_stop(dm3, 0, 5000), 0);
        run_until(f->s.ctx, &a.done, 1);
        assert_int_equal(a.status, -ECANCELED);
    } else {
        assert_int_equal(libdm_dm_stop(dm3, 0, 5000), 0);   /* the keeper ran already */
    }
    libdm_dm_release(dm3);
    assert_false(tu_path_exists(f->s.dir, "t1"));

    /* Released before its first step: its steps never run. */
    assert_int_equal(libdm_dm_start_async(f->s.ctx, f->cfg, on_done, &a, &dm3), 0);
    libdm_dm_release(dm3);
    for (int i = 0; i < 10; i++)
        libdm_ctx_run_once(f->s.ctx, 5);
    assert_false(tu_path_exists(f->s.dir, "t1"));
    /* Only the keepers of the stops above, being reaped. */
    tu_settle_children(f->s.ctx, 0);
    for (int i = 0; i < 50 && tu_fd_count() != base; i++)
        libdm_ctx_run_once(f->s.ctx, 10);
    assert_int_equal(tu_fd_count(), base);
}

/* A restricted start whose QEMU was never probed for -sandbox probes it in
 * the background, as a step of the start (claimed, not yet prepared): the
 * caller's loop runs meanwhile. Stopped there, the start ends -ECANCELED
 * and the probe's child is killed and reaped; left alone, the start's own
 * deadline ends it (-ETIMEDOUT) with nothing left behind. */
static void test_start_probes_sandbox_in_background(void **state)
{
    fixture *f = *state;
    seen a = { 0 }, b = { 0 };
    char qemu[512];
    libdm_dm *dm;
    FILE *fp;

    if (geteuid() != 0)
        skip();
    /* A "QEMU" whose -sandbox probe never answers. */
    snprintf(qemu, sizeof(qemu), "%s/slow-probe-qemu", f->s.dir);
    fp = fopen(qemu, "w");
    assert_non_null(fp);
    fputs("#!/bin/sh\n[ \"$1\" = -sandbox ] && exec sleep 30\nexit 1\n", fp);
    fclose(fp);
    assert_int_equal(chmod(qemu, 0755), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(f->cfg, qemu), 0);
    assert_int_equal(libdm_dm_config_set_restrict(f->cfg, 1), 0);
    assert_int_equal(libdm_dm_config_set_runas(f->cfg, TEST_RUNAS), 0);
    assert_int_equal(libdm_dm_config_set_timeout_ms(f->cfg, 600), 0);

    assert_int_equal(libdm_dm_start_async(f->s.ctx, f->cfg, on_done, &a, &dm), 0);
    for (int i = 0; i < 500 && tu_child_count() == 0; i++)
        libdm_ctx_run_once(f->s.ctx, 1);
    assert_int_equal(tu_child_count(), 1);          /* the probe, no keeper */
    assert_true(tu_path_exists(f->s.dir, "t1"));      /* claimed */
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_SPAWNING);
    assert_int_equal(a.done, 0);
    assert_int_equal(libdm_dm_stop_async(dm, 0, 5000, on_done, &b), 0);
    run_until(f->s.ctx, &b.done, 1);
    assert_int_equal(a.status, -ECANCELED);
    assert_int_equal(b.status, 0);
    libdm_dm_release(dm);
    assert_false(tu_path_exists(f->s.dir, "t1"));
    tu_settle_children(f->s.ctx, 0);

    a = (seen){ 0 };
    assert_int_equal(libdm_dm_start_async(f->s.ctx, f->cfg, on_done, &a, &dm), 0);
    run_until(f->s.ctx, &a.done, 1);
    assert_int_equal(a.status, -ETIMEDOUT);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
    assert_non_null(strstr(libdm_dm_last_error(dm), "setting up"));
    libdm_dm_release(dm);
    assert_false(tu_path_exists(f->s.dir, "t1"));
    tu_settle_children(f->s.ctx, 0);
}

/* Makes clone3() fail with ENOSYS in this process and its children, as a
 * container runtime's default seccomp profile does (x86-64 syscall numbers;
 * the test runs where QEMU does). */
static int deny_clone3(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        return -errno;
    return 0;
}

/* Where clone3() is refused (ENOSYS) the keeper is started with the legacy
 * clone() and CLONE_PIDFD: start, resume and stop work, nothing is left.
 * In a child process, since the filter cannot be removed. */
static void test_start_without_clone3(void **state)
{
    fixture *f = *state;
    pid_t child;
    int status;

    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        libdm_ctx *ctx;
        libdm_dm *dm;

        if (deny_clone3() < 0)
            _exit(2);
        if (syscall(SYS_clone3, NULL, (size_t)0) != -1 || errno != ENOSYS)
            _exit(3); /* the filter is not in force: the test proves nothing */
        if (libdm_ctx_new(NULL, &ctx) < 0 || libdm_ctx_set_store(ctx, f->s.dir) < 0)
            _exit(4);
        if (libdm_dm_start(ctx, f->cfg, &dm) < 0)
            _exit(5);
        if (libdm_dm_resume(dm, 5000) < 0 || libdm_dm_stop(dm, 0, 5000) < 0)
            _exit(6);
        libdm_dm_release(dm);
        libdm_ctx_free(ctx);
        _exit(0);
    }
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_false(tu_path_exists(f->s.dir, "t1"));
}

/* Async attach from a second context: it queues on the monitor while the
 * first handle holds it, completes once released; a stopped (SIGSTOP) DM
 * completes -ETIMEDOUT at the deadline, BROKEN, and stop still ends it.
 * Neither blocks the caller: every wait is in the loop. */
static void test_attach_async(void **state)
{
    fixture *f = *state;
    seen w = { 0 };
    libdm_ctx *ctx2;
    libdm_dm *dm, *dm2 = NULL;
    uint64_t t0;
    int pid;

    assert_int_equal(libdm_dm_start(f->s.ctx, f->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    assert_int_equal(libdm_ctx_new(NULL, &ctx2), 0);
    assert_int_equal(libdm_ctx_set_store(ctx2, f->s.dir), 0);
    t0 = tu_now_ms();
    assert_int_equal(libdm_dm_attach_async(ctx2, "t1", 5000, on_done, &w, &dm2), 0);
    assert_true(tu_now_ms() - t0 < 100); /* nothing waited in the call */
    for (int i = 0; i < 10; i++)
        libdm_ctx_run_once(ctx2, 20);
    assert_int_equal(w.done, 0); /* queued behind the first handle */
    libdm_dm_release(dm);        /* lets go of the monitor */
    run_until(ctx2, &w.done, 1);
    assert_int_equal(w.status, 0);
    assert_int_equal(libdm_dm_get_state(dm2), LIBDM_DM_PAUSED);
    assert_string_equal(libdm_dm_get_runstate(dm2), "prelaunch");
    libdm_dm_release(dm2);

    /* A DM that does not answer: BROKEN at the deadline. */
    assert_int_equal(kill(pid, SIGSTOP), 0);
    w.done = 0;
    assert_int_equal(libdm_dm_attach_async(ctx2, "t1", 300, on_done, &w, &dm2), 0);
    run_until(ctx2, &w.done, 1);
    assert_int_equal(w.status, -ETIMEDOUT);
    assert_int_equal(libdm_dm_get_state(dm2), LIBDM_DM_BROKEN);
    assert_non_null(libdm_dm_last_error(dm2));
    assert_int_equal(libdm_dm_stop(dm2, 0, 500), 0);
    libdm_dm_release(dm2);
    libdm_ctx_free(ctx2);
    qf_wait_gone(f->s.ctx, pid, 5000);
    assert_false(tu_path_exists(f->s.dir, "t1"));
    tu_settle_children(f->s.ctx, 0);
}

/* A host never sees one DM's callback inside a blocking call it made for
 * another: B's resume completes (its state says RUNNING) while blocking
 * calls run for A, but B's callback waits until they return. */
static void test_no_callback_inside_other_blocking_call(void **state)
{
    fixture *f = *state;
    seen w = { 0 };
    libdm_dm *a, *b;
    char *rs = NULL;
    int pa, pb;

    assert_int_equal(libdm_dm_start(f->s.ctx, f->cfg, &a), 0);
    assert_int_equal(libdm_dm_config_set_name(f->cfg, "t2"), 0);
    assert_int_equal(libdm_dm_start(f->s.ctx, f->cfg, &b), 0);
    pa = libdm_dm_get_pid(a);
    pb = libdm_dm_get_pid(b);
    assert_int_equal(libdm_dm_set_event_callback(b, on_dm_event, &w), 0);
    assert_int_equal(libdm_dm_resume_async(b, 5000, on_done, &w), 0);
    for (int i = 0; i < 20 && libdm_dm_get_state(b) != LIBDM_DM_RUNNING; i++) {
        assert_int_equal(libdm_dm_query_status(a, 5000, &rs), 0);
        free(rs);
        rs = NULL;
    }
    /* B's operation is over, yet nothing of B reached the host. */
    assert_int_equal(libdm_dm_get_state(b), LIBDM_DM_RUNNING);
    assert_int_equal(w.done, 0);
    assert_int_equal(w.n, 0);
    run_until(f->s.ctx, &w.done, 1);
    assert_int_equal(w.status, 0);
    run_until(f->s.ctx, &w.n, 1);
    assert_int_equal(libdm_dm_stop(a, 0, 5000), 0);
    assert_int_equal(libdm_dm_stop(b, 0, 5000), 0);
    libdm_dm_release(a);
    libdm_dm_release(b);
    qf_wait_gone(f->s.ctx, pa, 5000);
    qf_wait_gone(f->s.ctx, pb, 5000);
    tu_settle_children(f->s.ctx, 0);
}

/* A refused restricted start: -EINVAL or -EPERM at once, an error naming
 * the problem, and nothing spawned or left behind. */
static void start_refused(fixture *f, const char *expect_in_log)
{
    memlog m;
    libdm_dm *dm = NULL;

    memlog_open(&m, f);
    assert_int_equal(libdm_dm_start(m.ctx, f->cfg, &dm), -EINVAL);
    assert_null(dm);
    /* No keeper was spawned (it would be our child until reaped). */
    assert_int_equal(tu_child_count(), 0);
    memlog_close_expect(&m, f, "t1: ", expect_in_log);
}

static bool user_exists(const char *name)
{
    char buf[4096];
    struct passwd pw, *p = NULL;

    return getpwnam_r(name, &pw, buf, sizeof(buf), &p) == 0 && p;
}

static void test_restrict_refusals(void **state)
{
    fixture *f = *state;
    char dir[512], link[512], file[512];

    if (geteuid() != 0)
        skip();
    /* root, however spelled, is refused by the setter itself */
    assert_int_equal(libdm_dm_config_set_runas(f->cfg, "root"), -EINVAL);
    assert_int_equal(libdm_dm_config_set_runas(f->cfg, "0"), -EINVAL);
    assert_int_equal(libdm_dm_config_set_runas(f->cfg, "0:0"), -EINVAL);
    assert_int_equal(libdm_dm_config_set_restrict(f->cfg, 1), 0);
    /* plain without runas, and a user that does not exist */
    start_refused(f, "needs runas");
    assert_int_equal(libdm_dm_config_set_runas(f->cfg, "no-such-user-libdm"), 0);
    start_refused(f, "runas user no-such-user-libdm does not exist");
    assert_int_equal(libdm_dm_config_set_runas(f->cfg, TEST_RUNAS), 0);
    /* chroots: "/", a symlink, not empty, missing */
    assert_int_equal(libdm_dm_config_set_chroot(f->cfg, "/"), 0);
    start_refused(f, "chroot / is the root directory");
    snprintf(dir, sizeof(dir), "%s/croot", f->s.dir);
    snprintf(link, sizeof(link), "%s/croot-link", f->s.dir);
    snprintf(file, sizeof(file), "%s/croot/file", f->s.dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(symlink(dir, link), 0);
    assert_int_equal(libdm_dm_config_set_chroot(f->cfg, link), 0);
    start_refused(f, "is a symlink");
    assert_int_equal(close(open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)), 0);
    assert_int_equal(libdm_dm_config_set_chroot(f->cfg, dir), 0);
    start_refused(f, "is not empty");
    assert_int_equal(libdm_dm_config_set_chroot(f->cfg, file), 0);
    start_refused(f, "is not a directory");
    unlink(file);
    unlink(link);
    rmdir(dir);
    /* xen without runas: libxl's users, or a message naming them */
    if (user_exists("xen-qemuuser-range-base") || user_exists("xen-qemuuser-shared"))
        return;
    assert_int_equal(libdm_dm_config_set_chroot(f->cfg, NULL), 0);
    assert_int_equal(libdm_dm_config_set_runas(f->cfg, NULL), 0);
    assert_int_equal(libdm_dm_config_set_profile(f->cfg, LIBDM_PROFILE_XEN), 0);
    assert_int_equal(libdm_dm_config_set_domid(f->cfg, 7), 0);
    start_refused(f, "xen-qemuuser-range-base (its uid + domid) or xen-qemuuser-shared, "
                     "and neither exists: create one");
    assert_false(tu_path_exists(LIBDM_TEST_XEN_RUN_DIR, "qemu-root-7"));
}

static void test_stop_hung_dm(void **state)
{
    fixture *f = *state;
    libdm_dm *dm;
    int pid;
    uint64_t t0;

    assert_int_equal(libdm_dm_start(f->s.ctx, f->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    /* A hung DM ignores quit; stop escalates to SIGTERM/SIGKILL. */
    assert_int_equal(kill(pid, SIGSTOP), 0);
    t0 = tu_now_ms();
    assert_int_equal(libdm_dm_stop(dm, 0, 500), 0);
    assert_true(tu_now_ms() - t0 < 6000);
    assert_false(tu_pid_alive(pid));
    libdm_dm_release(dm);
    tu_settle_children(f->s.ctx, 0);
}

static void test_attach_hung_dm_then_stop(void **state)
{
    fixture *f = *state;
    libdm_dm *dm, *dm2;
    uint64_t t0;
    char *rs = NULL;
    int pid;

    assert_int_equal(libdm_dm_start(f->s.ctx, f->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    libdm_dm_release(dm);
    /* The monitor of a stopped process never greets: attach must give up at
     * its deadline and still hand over a DM that can be stopped. */
    assert_int_equal(kill(pid, SIGSTOP), 0);
    t0 = tu_now_ms();
    assert_int_equal(libdm_dm_attach_timeout(f->s.ctx, "t1", 300, &dm2), 0);
    assert_true(tu_now_ms() - t0 < 1500);
    assert_int_equal(libdm_dm_get_state(dm2), LIBDM_DM_BROKEN);
    assert_non_null(strstr(libdm_dm_last_error(dm2), "monitor"));
    /* Calls report why the monitor is unusable: it missed its deadline. */
    assert_int_equal(libdm_dm_query_status(dm2, 1000, &rs), -ETIMEDOUT);
    assert_int_equal(libdm_dm_stop(dm2, 0, 500), 0);
    assert_int_equal(libdm_dm_get_state(dm2), LIBDM_DM_DEAD);
    libdm_dm_release(dm2);
    qf_wait_gone(f->s.ctx, pid, 5000);
    assert_false(tu_path_exists(f->s.dir, "t1"));
    tu_settle_children(f->s.ctx, 0);
}

static void test_attach_refuses_planted_socket(void **state)
{
    fixture *f = *state;
    char sock[512], moved[512];
    libdm_dm *dm, *dm2 = NULL;

    assert_int_equal(libdm_dm_start(f->s.ctx, f->cfg, &dm), 0);
    libdm_dm_release(dm);
    /* Someone swaps the monitor socket for a link to another socket. */
    snprintf(sock, sizeof(sock), "%s/t1/qmp.sock", f->s.dir);
    snprintf(moved, sizeof(moved), "%s/t1/elsewhere.sock", f->s.dir);
    assert_int_equal(rename(sock, moved), 0);
    assert_int_equal(symlink(moved, sock), 0);
    assert_int_equal(libdm_dm_attach_timeout(f->s.ctx, "t1", 2000, &dm2), -ELOOP);
    assert_null(dm2);
    /* A regular file in its place is refused too. */
    assert_int_equal(unlink(sock), 0);
    assert_int_equal(close(open(sock, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)), 0);
    assert_int_equal(libdm_dm_attach_timeout(f->s.ctx, "t1", 2000, &dm2), -EPERM);
    /* Put the real socket back: attach and stop work again. */
    assert_int_equal(rename(moved, sock), 0);
    assert_int_equal(libdm_dm_attach_timeout(f->s.ctx, "t1", 2000, &dm2), 0);
    assert_int_equal(libdm_dm_stop(dm2, 0, 5000), 0);
    libdm_dm_release(dm2);
    tu_settle_children(f->s.ctx, 0);
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
        cmocka_unit_test_setup_teardown(test_restricted_keeper_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restricted_qemu_sandbox_own_chroot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keeper_filter_denies_spawn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restrict_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_hung_dm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_hung_dm_then_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_refuses_planted_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restricted_restore_from_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_and_async_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_async_deferred_setup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_without_clone3, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_probes_sandbox_in_background, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_async_calls_deadline_and_death, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_callback_inside_other_blocking_call, setup,
                                        teardown),
    };

    int skip = tu_require_dm_env();

    if (skip)
        return skip;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
