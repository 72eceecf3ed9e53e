/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fault matrix against a real qemu-system-x86_64 (-machine none, TCG): one
 * table, one cmocka test per row, every fault injected into a DM started
 * through the library (libdm_dm_start with a fresh mkdtemp store):
 *
 *  - SIGKILL while idle, and with a command outstanding;
 *  - SIGSTOP during negotiation (a --qemu wrapper that stops itself before
 *    exec: start fails with -ETIMEDOUT at its deadline, nothing left);
 *  - SIGSTOP during a command (the call times out; a second context's
 *    libdm_dm_attach_timeout() sees the DM BROKEN; stop still ends it);
 *  - exits at start with statuses 1, 3 and 42 (wrapper "exit N"), and an
 *    exit with status 42 while idle (wrapper whose QEMU is killed);
 *  - seccomp kill at start (root only: -runas with elevateprivileges=deny);
 *  - a real abort: xen-load-devices-state on a non-Xen QEMU 7.2 trips an
 *    assertion in util/yank.c (SIGABRT, shell status 134).
 *
 * Each row checks:
 *  - the faulted operation returns within its deadline + MARGIN_MS;
 *  - the error text (libdm_dm_last_error(), or the context's log when start
 *    returned no DM) names the cause;
 *  - the DM record is consistent: DEAD with the right wait status while the
 *    handle lives, and no record or directory once stopped (libdm_dm_list on
 *    a fresh context is empty);
 *  - this process has the same fds and children as before the row, and no
 *    process started for the row is left.
 */
#include "config.h"

#include <dirent.h>
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
#include "testutil.h"
#include "qemu-fixture.h"

#define MARGIN_MS 1000
#define NAME "f1"

enum {
    F_ROOT = 1 << 0,       /* needs root (skipped otherwise) */
};

typedef struct row row;
typedef struct rt {
    const row *r;
    char *dir;             /* the store */
    char *bindir;          /* wrapper scripts */
    char qemu[4096];       /* absolute path of the real QEMU */
    libdm_ctx *ctx;
    libdm_dm_config *cfg;
    FILE *logmem;          /* the context's log */
    char *logtext;
    size_t loglen;
    xentoollog_logger *logger;
    uint64_t t0, elapsed;  /* of the faulted operation */
    char why[4096];        /* the error text to check */
} rt;

struct row {
    const char *name;
    void (*run)(rt *t);
    const char *why;       /* substrings of the error text, all required, '|' separated */
    unsigned deadline_ms;  /* of the faulted operation */
    int n;                 /* an exit status */
    unsigned flags;
};

static unsigned passed, skipped;

/* ---- helpers ---- */

static void fault_begin(rt *t)
{
    t->t0 = tu_now_ms();
}

static void fault_end(rt *t)
{
    t->elapsed = tu_now_ms() - t->t0;
}

static void set_why(rt *t, const char *text)
{
    snprintf(t->why, sizeof(t->why), "%s", text ? text : "");
}

/* The log captured so far (start failures are reported there). */
static const char *log_so_far(rt *t)
{
    fflush(t->logmem);
    return t->logtext ? t->logtext : "";
}

/* A wrapper script used as the DM's binary; @body may use QEMU. */
static void write_wrapper(rt *t, const char *body)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/qemu-wrapper", t->bindir);
    f = fopen(path, "we");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\nQEMU='%s'\n%s\n", t->qemu, body);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0700), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(t->cfg, path), 0);
}

/* Runs the loop until @dm is DEAD or @ms pass. */
static void wait_dead(rt *t, libdm_dm *dm, unsigned ms)
{
    uint64_t deadline = tu_now_ms() + ms;

    while (libdm_dm_get_state(dm) != LIBDM_DM_DEAD && tu_now_ms() < deadline)
        libdm_ctx_run_once(t->ctx, 10);
}

/* Processes whose command line mentions @needle (the row's directories). */
static int procs_mentioning(const char *needle)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0, me = (int)getpid();

    if (!d)
        return -1;
    while ((e = readdir(d))) {
        char path[300], buf[8192];
        size_t len;
        FILE *f;

        if (e->d_name[0] < '0' || e->d_name[0] > '9' || atoi(e->d_name) == me)
            continue;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        if (!(f = fopen(path, "re")))
            continue;
        len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        for (size_t i = 0; i < len; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        buf[len] = '\0';
        if (strstr(buf, needle))
            n++;
    }
    closedir(d);
    return n;
}

/* The only child of @pid (the QEMU a non-exec'ing wrapper runs), or -1. */
static int child_of(int pid)
{
    uint64_t deadline = tu_now_ms() + 2000;

    do {
        DIR *d = opendir("/proc");
        struct dirent *e;
        int found = -1;

        assert_non_null(d);
        while ((e = readdir(d))) {
            char path[300], buf[512], *p;
            int ppid = -1;
            FILE *f;

            if (e->d_name[0] < '0' || e->d_name[0] > '9')
                continue;
            snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
            if (!(f = fopen(path, "re")))
                continue;
            if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) &&
                sscanf(p + 1, " %*c %d", &ppid) == 1 && ppid == pid)
                found = atoi(e->d_name);
            fclose(f);
        }
        closedir(d);
        if (found > 0)
            return found;
        usleep(5000);
    } while (tu_now_ms() < deadline);
    return -1;
}

static void expect_exit(libdm_dm *dm, int code)
{
    int st = libdm_dm_get_exit_status(dm);

    if (!WIFEXITED(st) || WEXITSTATUS(st) != code)
        fail_msg("wait status 0x%x, expected exit status %d", st, code);
}

static void expect_signal(libdm_dm *dm, int sig)
{
    int st = libdm_dm_get_exit_status(dm);

    if (!WIFSIGNALED(st) || WTERMSIG(st) != sig)
        fail_msg("wait status 0x%x, expected signal %d", st, sig);
}

/* Stop (safe on a DEAD DM), check nothing is left, drop the handle. */
static void stop_and_release(rt *t, libdm_dm *dm)
{
    assert_int_equal(libdm_dm_stop(dm, 0, 2000), 0);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
    libdm_dm_release(dm);
    assert_false(tu_path_exists(t->dir, NAME));
}

/* A start that must fail: no DM returned, the error (the log) names why. */
static int start_fails(rt *t)
{
    libdm_dm *dm = NULL;
    int r;

    fault_begin(t);
    r = libdm_dm_start(t->ctx, t->cfg, &dm);
    fault_end(t);
    assert_true(r < 0);
    assert_null(dm);
    set_why(t, log_so_far(t));
    assert_false(tu_path_exists(t->dir, NAME));
    return r;
}

/* ---- the rows ---- */

static void run_kill9_idle(rt *t)
{
    libdm_dm *dm;
    int pid;

    assert_int_equal(libdm_dm_start(t->ctx, t->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    fault_begin(t);
    assert_int_equal(kill(pid, SIGKILL), 0);
    /* Nobody asks: the keeper's report alone makes it DEAD. */
    wait_dead(t, dm, t->r->deadline_ms + MARGIN_MS);
    fault_end(t);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
    expect_signal(dm, SIGKILL);
    set_why(t, libdm_dm_last_error(dm));
    assert_false(tu_pid_alive(pid));
    stop_and_release(t, dm);
}

static void run_kill9_outstanding(rt *t)
{
    qf_reply o = { 0 };
    libdm_dm *dm;
    int pid;

    assert_int_equal(libdm_dm_start(t->ctx, t->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    /* Frozen, so the command is certainly outstanding when it dies. */
    assert_int_equal(kill(pid, SIGSTOP), 0);
    assert_int_equal(libdm_qmp_call_async(libdm_dm_get_qmp(dm), "query-status", NULL, 20000,
                                          qf_on_reply, &o, NULL), 0);
    for (int i = 0; i < 5; i++)
        libdm_ctx_run_once(t->ctx, 10);
    assert_false(o.done);
    assert_int_equal(libdm_qmp_outstanding(libdm_dm_get_qmp(dm)), 1);
    fault_begin(t);
    assert_int_equal(kill(pid, SIGKILL), 0);
    while ((!o.done || libdm_dm_get_state(dm) != LIBDM_DM_DEAD) &&
           tu_now_ms() - t->t0 < t->r->deadline_ms + MARGIN_MS)
        libdm_ctx_run_once(t->ctx, 10);
    fault_end(t);
    /* Completed by the death, not by its 20 s deadline. */
    assert_true(o.done);
    assert_true(o.status < 0);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
    expect_signal(dm, SIGKILL);
    set_why(t, libdm_dm_last_error(dm));
    stop_and_release(t, dm);
}

static void run_sigstop_negotiation(rt *t)
{
    /* Stopped right after the keeper's exec, before QEMU even runs: the
     * monitor never greets. */
    write_wrapper(t, "kill -STOP $$\nexec \"$QEMU\" \"$@\"");
    assert_int_equal(libdm_dm_config_set_timeout_ms(t->cfg, (int)t->r->deadline_ms), 0);
    assert_int_equal(start_fails(t), -ETIMEDOUT);
    /* It waited for its deadline, it did not fail for another reason. */
    assert_true(t->elapsed + 50 >= t->r->deadline_ms);
}

static void run_sigstop_command(rt *t)
{
    libdm_ctx *ctx2;
    libdm_dm *dm, *dm2 = NULL;
    char *rs = NULL;
    uint64_t t1;
    int pid, r;

    assert_int_equal(libdm_dm_start(t->ctx, t->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    fault_begin(t);
    r = libdm_dm_query_status(dm, (int)t->r->deadline_ms, &rs);
    fault_end(t);
    assert_int_equal(r, -ETIMEDOUT);
    assert_null(rs);
    set_why(t, libdm_dm_last_error(dm) ? libdm_dm_last_error(dm)
                                       : libdm_qmp_last_error(libdm_dm_get_qmp(dm)));
    assert_true(t->elapsed + 50 >= t->r->deadline_ms);
    /* The monitor missed a deadline: this handle can no longer trust it. */
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_BROKEN);

    /* Another controller finds it hung: BROKEN, and stop still ends it. */
    assert_int_equal(libdm_ctx_new(t->logger, &ctx2), 0);
    assert_int_equal(libdm_ctx_set_store(ctx2, t->dir), 0);
    t1 = tu_now_ms();
    assert_int_equal(libdm_dm_attach_timeout(ctx2, NAME, 300, &dm2), 0);
    assert_true(tu_now_ms() - t1 < 300 + MARGIN_MS);
    assert_int_equal(libdm_dm_get_state(dm2), LIBDM_DM_BROKEN);
    assert_non_null(libdm_dm_last_error(dm2));
    assert_non_null(strstr(libdm_dm_last_error(dm2), "monitor"));
    t1 = tu_now_ms();
    assert_int_equal(libdm_dm_stop(dm2, 0, 500), 0);
    assert_true(tu_now_ms() - t1 < 500 + 5000);
    assert_int_equal(libdm_dm_get_state(dm2), LIBDM_DM_DEAD);
    libdm_dm_release(dm2);
    libdm_ctx_free(ctx2);
    assert_false(tu_pid_alive(pid));

    /* The first handle learns the end from its keeper; stopping it again is
     * harmless. */
    wait_dead(t, dm, 3000);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
    stop_and_release(t, dm);
}

static void run_exit_at_start(rt *t)
{
    char body[64];

    snprintf(body, sizeof(body), "exit %d", t->r->n);
    write_wrapper(t, body);
    start_fails(t);
}

static void run_exit_while_idle(rt *t)
{
    char body[128];
    libdm_dm *dm;
    int pid, qpid;

    /* Not exec: the DM process is the shell, which exits with n once its
     * QEMU is gone. */
    snprintf(body, sizeof(body), "\"$QEMU\" \"$@\"\nexit %d", t->r->n);
    write_wrapper(t, body);
    assert_int_equal(libdm_dm_start(t->ctx, t->cfg, &dm), 0);
    pid = libdm_dm_get_pid(dm);
    qpid = child_of(pid);
    assert_true(qpid > 0);
    fault_begin(t);
    assert_int_equal(kill(qpid, SIGKILL), 0);
    wait_dead(t, dm, t->r->deadline_ms + MARGIN_MS);
    fault_end(t);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
    expect_exit(dm, t->r->n);
    set_why(t, libdm_dm_last_error(dm));
    stop_and_release(t, dm);
}

static void run_seccomp_kill(rt *t)
{
    /* FACTS: -runas with elevateprivileges=deny is killed by seccomp. */
    assert_int_equal(libdm_dm_config_set_runas(t->cfg, "nobody"), 0);
    assert_int_equal(libdm_dm_config_set_restrict(t->cfg, 1), 0);
    assert_int_equal(libdm_dm_config_add_extra_arg(t->cfg, "-sandbox"), 0);
    assert_int_equal(libdm_dm_config_add_extra_arg(t->cfg, "on,elevateprivileges=deny"), 0);
    start_fails(t);
}

static void run_abort(rt *t)
{
    libdm_dm *dm;
    int r;

    assert_int_equal(libdm_dm_start(t->ctx, t->cfg, &dm), 0);
    /* QEMU 7.2 without Xen: "Not a migration stream", then an assertion in
     * yank_unregister_instance() aborts it. */
    fault_begin(t);
    r = libdm_qmp_call_text(libdm_dm_get_qmp(dm), "xen-load-devices-state",
                            "{\"filename\": \"/dev/null\"}", (int)t->r->deadline_ms, NULL);
    wait_dead(t, dm, t->r->deadline_ms + MARGIN_MS);
    fault_end(t);
    if (r == 0)
        fail_msg("xen-load-devices-state succeeded: this QEMU does not abort on it");
    assert_true(r != -ETIMEDOUT);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_DEAD);
    expect_signal(dm, SIGABRT);
    set_why(t, libdm_dm_last_error(dm));
    stop_and_release(t, dm);
}

/* ---- the table ---- */

static const row rows[] = {
    { "sigkill-idle", run_kill9_idle, NAME ":|signal 9", 1000, 0, 0 },
    { "sigkill-command-outstanding", run_kill9_outstanding, NAME ":|signal 9", 1000, 0, 0 },
    { "sigstop-during-negotiation", run_sigstop_negotiation, NAME ":|deadline|greeting", 1000, 0, 0 },
    { "sigstop-during-command", run_sigstop_command, NAME ":|deadline", 500, 0, 0 },
    { "exit-3-at-start", run_exit_at_start, NAME ":|exited with status 3", 2000, 3, 0 },
    { "exit-1-at-start", run_exit_at_start, NAME ":|exited with status 1", 2000, 1, 0 },
    { "exit-42-at-start", run_exit_at_start, NAME ":|exited with status 42", 2000, 42, 0 },
    { "exit-42-while-idle", run_exit_while_idle, NAME ":|exited with status 42", 1000, 42, 0 },
    { "seccomp-kill-at-start", run_seccomp_kill, NAME ":|signal 31", 5000, 0, F_ROOT },
    { "abort-xen-load-devices-state", run_abort, NAME ":|signal 6|yank", 3000, 0, 0 },
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

/* Every '|'-separated part of @want must be in @text. */
static void check_why(const row *r, const char *text)
{
    char buf[256], *save = NULL;

    snprintf(buf, sizeof(buf), "%s", r->why);
    for (char *a = strtok_r(buf, "|", &save); a; a = strtok_r(NULL, "|", &save))
        if (!strstr(text, a))
            fail_msg("%s: error \"%s\" does not contain \"%s\"", r->name, text, a);
}

static void run_row(void **state)
{
    const row *r = *state;
    rt t = { .r = r };
    int fds_before = tu_fd_count(), children_before = tu_child_count();
    libdm_dm_info *infos = NULL;
    size_t n = 0;
    libdm_ctx *check;
    const char *q;

    if ((r->flags & F_ROOT) && geteuid() != 0) {
        print_message("%s: skipped (needs root)\n", r->name);
        skipped++;
        skip();
    }
    t.dir = tu_mkdtemp("fq-store");
    t.bindir = tu_mkdtemp("fq-bin");
    assert_non_null(t.dir);
    assert_non_null(t.bindir);
    q = tu_qemu();
    if (q[0] == '/') {
        snprintf(t.qemu, sizeof(t.qemu), "%s", q);
    } else {
        char *path = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin"), *save = NULL;

        for (char *d = strtok_r(path, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
            snprintf(t.qemu, sizeof(t.qemu), "%s/%s", d, q);
            if (access(t.qemu, X_OK) == 0)
                break;
        }
        free(path);
    }
    assert_int_equal(access(t.qemu, X_OK), 0);

    t.logmem = open_memstream(&t.logtext, &t.loglen);
    assert_non_null(t.logmem);
    t.logger = (xentoollog_logger *)xtl_createlogger_stdiostream(t.logmem, XTL_ERROR, 0);
    assert_non_null(t.logger);
    assert_int_equal(libdm_ctx_new(t.logger, &t.ctx), 0);
    assert_int_equal(libdm_ctx_set_store(t.ctx, t.dir), 0);
    t.cfg = qf_config(NAME, 10000);
    assert_int_equal(libdm_dm_config_set_qemu_path(t.cfg, t.qemu), 0);

    r->run(&t);

    if (t.elapsed > r->deadline_ms + MARGIN_MS)
        fail_msg("%s: took %llu ms, deadline %u ms + %d", r->name,
                 (unsigned long long)t.elapsed, r->deadline_ms, MARGIN_MS);
    check_why(r, t.why);

    /* The record is gone for everyone. */
    assert_int_equal(libdm_ctx_new(t.logger, &check), 0);
    assert_int_equal(libdm_ctx_set_store(check, t.dir), 0);
    assert_int_equal(libdm_dm_list(check, &infos, &n), 0);
    assert_int_equal(n, 0);
    libdm_dm_info_free(infos, n);
    libdm_ctx_free(check);
    assert_false(tu_path_exists(t.dir, NAME));

    tu_settle_children(t.ctx, children_before);
    libdm_dm_config_free(t.cfg);
    libdm_ctx_free(t.ctx);
    assert_int_equal(procs_mentioning(t.bindir), 0);
    assert_int_equal(procs_mentioning(t.dir), 0);
    tu_rmtree(t.dir);
    tu_rmtree(t.bindir);
    free(t.dir);
    free(t.bindir);
    xtl_logger_destroy(t.logger);
    fclose(t.logmem);
    free(t.logtext);
    assert_int_equal(tu_fd_count(), fds_before);
    assert_int_equal(tu_child_count(), children_before);
    for (char *c = t.why; *c; c++)
        if (*c == '\n')
            *c = ' ';
    print_message("%s: %llu ms; error: %.400s\n", r->name, (unsigned long long)t.elapsed,
                  t.why);
    passed++;
}

int main(void)
{
    static struct CMUnitTest tests[NROWS];
    const char *qv;
    int failed;

    int skip = tu_require_dm_env();

    if (skip)
        return skip;
    if (!tu_have_pidfd()) {
        printf("SKIP: pidfd_open unavailable (valgrind?): libdm cannot follow its keeper\n");
        return 77;
    }
    /* LIBDM_FAULT_ROWS: a cmocka filter (glob) to run only some rows. */
    if ((qv = getenv("LIBDM_FAULT_ROWS")) && *qv)
        cmocka_set_test_filter(qv);
    for (size_t i = 0; i < NROWS; i++)
        tests[i] = (struct CMUnitTest){ rows[i].name, run_row, NULL, NULL, (void *)&rows[i] };
    failed = _cmocka_run_group_tests("fault-qemu", tests, NROWS, NULL, NULL);
    printf("real-QEMU fault matrix: %u scenarios passed (%zu rows, %u skipped)\n", passed,
           NROWS, skipped);
    return failed;
}
