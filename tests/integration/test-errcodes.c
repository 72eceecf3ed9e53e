/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 19, "error codes mean one thing each" (the table in dm.h): a start
 * that fails reports one code per cause, the same in every run, and
 * libdm_dm_last_error() begins with the first cause (later sentences only
 * append). Against the real libdm-keeper, real qemu-system-x86_64 (a bad
 * argument) and small scripts standing in for a QEMU that exits early, is
 * killed or never answers (each says so below).
 *
 *   binary not found        -ENOENT      not executable      -EACCES
 *   exec format             -ENOEXEC     bad argument        -EINVAL
 *   exited early            -ECHILD      timeout             -ETIMEDOUT
 *   killed (not by libdm)   -ESRCH
 *
 * Then the structured DEAD cause (ended_by, exit code, signal, log tail)
 * in the event and the getters, and no BROKEN event before the DEAD of a
 * DM killed from outside.
 *
 * Each case runs RUNS times (one failure once gave -EIO in one run and
 * -ECHILD in another).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "qemu-fixture.h"
#include "testutil.h"

#define RUNS 3

/* The store and its context (qemu-fixture.h; this is no cmocka test: a
 * fixture's failed assertion ends the program with a failure). */
static qf_store S;

/* A TAP check (tu_ok) whose description is @fmt with @what. */
static void ok(bool cond, const char *fmt, const char *what, const char *detail)
{
    char line[512];

    snprintf(line, sizeof(line), fmt, what);
    tu_ok(cond, line, detail);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        perror(path);
        exit(99);
    }
    close(fd);
    (void)chmod(path, mode);
}

/* Starts @qemu (with @extra, if any) under @timeout_ms; checks the code,
 * that last_error starts (after "NAME: ") with @first, contains @also (if
 * any) and never contains @never (if any). */
static void check_start(const char *what, const char *qemu, const char *extra, int timeout_ms,
                        int want, const char *first, const char *also, const char *never)
{
    static int seq;

    for (int run = 0; run < RUNS; run++) {
        libdm_dm_config *cfg;
        libdm_dm *dm = NULL;
        qf_done res = { 0 };
        char name[64], detail[1200];
        const char *err, *body;
        uint64_t end;

        snprintf(name, sizeof(name), "ec%d-%d", (int)getpid(), seq++);
        cfg = qf_config(name, timeout_ms);
        if (libdm_dm_config_set_qemu_path(cfg, qemu) < 0 ||
            (extra && libdm_dm_config_add_extra_arg(cfg, extra) < 0))
            exit(99);
        if (libdm_dm_start_async(S.ctx, cfg, qf_on_done, &res, &dm) < 0)
            exit(99);
        libdm_dm_config_free(cfg);
        end = tu_now_ms() + 30000;
        while (!res.n && tu_now_ms() < end)
            libdm_ctx_run_once(S.ctx, 10);
        err = libdm_dm_last_error(dm);
        body = err && !strncmp(err, name, strlen(name)) && err[strlen(name)] == ':'
                   ? err + strlen(name) + 2
                   : err;
        snprintf(detail, sizeof(detail), "status %d (%s), want %d (%s); last_error: %s",
                 res.status, strerror(-res.status), want, strerror(-want), err ? err : "(none)");
        ok(res.n && res.status == want, "%s: the start's code", what, detail);
        ok(body && !strncmp(body, first, strlen(first)), "%s: last_error starts with the cause",
           what, detail);
        if (also)
            ok(err && strstr(err, also), "%s: last_error says more", what, detail);
        if (never)
            ok(!err || !strstr(err, never), "%s: last_error says nothing false", what, detail);
        ok(libdm_dm_get_state(dm) == LIBDM_DM_DEAD, "%s: the DM is DEAD", what, detail);
        libdm_dm_release(dm);
    }
}

/* ---- the structured DEAD cause, and no BROKEN event before DEAD ---- */

typedef struct events {
    int n_broken, n_broken_null, n_dead;
    libdm_dm_end_by by;
    int code, sig;
    char tail[1100];
} events;

static void on_event(libdm_dm *dm, const libdm_dm_event *ev, void *user)
{
    events *e = user;

    if (ev->new_state == LIBDM_DM_BROKEN) {
        e->n_broken++;
        e->n_broken_null += !ev->cause;
    }
    if (ev->new_state == LIBDM_DM_DEAD) {
        e->n_dead++;
        e->by = ev->ended_by;
        e->code = ev->exit_code;
        e->sig = ev->term_signal;
        snprintf(e->tail, sizeof(e->tail), "%s", ev->log_tail ? ev->log_tail : "");
    }
}

static libdm_dm *start_real(events *e, libdm_dm_end_by *ret_by)
{
    static int seq;
    libdm_dm_config *cfg;
    libdm_dm *dm = NULL;
    char name[64];

    snprintf(name, sizeof(name), "ecd%d-%d", (int)getpid(), seq++);
    cfg = qf_config(name, 20000);
    if (libdm_dm_start(S.ctx, cfg, &dm) < 0)
        exit(99);
    libdm_dm_config_free(cfg);
    *ret_by = libdm_dm_get_ended_by(dm);
    memset(e, 0, sizeof(*e));
    libdm_dm_set_event_callback(dm, on_event, e);
    return dm;
}

static void wait_dead(libdm_dm *dm, events *e)
{
    uint64_t end = tu_now_ms() + 20000;

    while (!e->n_dead && tu_now_ms() < end)
        libdm_ctx_run_once(S.ctx, 10);
}

static void check_death(void)
{
    char detail[1400];

    /* SIGKILL from outside, several times (the monitor's reset and the
     * exit race): DEAD says EXTERNAL, signal 9; never a BROKEN first
     * with no cause. */
    for (int run = 0; run < RUNS; run++) {
        events e;
        libdm_dm_end_by before;
        libdm_dm *dm = start_real(&e, &before);

        ok(before == LIBDM_END_NONE, "%s: a live DM has no end", "external kill", NULL);
        kill(libdm_dm_get_pid(dm), SIGKILL);
        wait_dead(dm, &e);
        snprintf(detail, sizeof(detail), "dead %d by %s code %d sig %d broken %d (null %d)",
                 e.n_dead, libdm_dm_end_by_to_string(e.by), e.code, e.sig, e.n_broken,
                 e.n_broken_null);
        ok(e.n_dead == 1 && e.by == LIBDM_END_EXTERNAL && e.sig == SIGKILL && e.code == -1,
           "%s: DEAD event says external, signal 9", "external kill", detail);
        ok(e.n_broken_null == 0, "%s: no BROKEN event without a cause", "external kill",
           detail);
        ok(e.n_broken == 0, "%s: no BROKEN event before DEAD", "external kill", detail);
        ok(libdm_dm_get_ended_by(dm) == LIBDM_END_EXTERNAL &&
               libdm_dm_get_term_signal(dm) == SIGKILL && libdm_dm_get_exit_code(dm) == -1,
           "%s: the getters say the same", "external kill", detail);
        (void)libdm_dm_stop(dm, 1, 5000);
        libdm_dm_release(dm);
    }
    /* A stop: STOP. */
    {
        events e;
        libdm_dm_end_by before;
        libdm_dm *dm = start_real(&e, &before);

        ok(libdm_dm_stop(dm, 0, 10000) == 0, "%s: stopped", "stop", NULL);
        wait_dead(dm, &e);
        snprintf(detail, sizeof(detail), "by %s code %d sig %d",
                 libdm_dm_end_by_to_string(libdm_dm_get_ended_by(dm)),
                 libdm_dm_get_exit_code(dm), libdm_dm_get_term_signal(dm));
        ok(libdm_dm_get_ended_by(dm) == LIBDM_END_STOP && e.by == LIBDM_END_STOP,
           "%s: ended by libdm's stop", "stop", detail);
        libdm_dm_release(dm);
    }
}

/* Whether this kernel gives a reaped process's wait status through its
 * pidfd (PIDFD_GET_INFO, PIDFD_INFO_EXIT: Linux 6.15). Probed on a child of
 * ours that exits 7. */
static bool kernel_has_pidfd_exit(void)
{
    struct { uint64_t mask, cgroupid; uint32_t ids[11]; int32_t exit_code; } info = { .mask = 1u << 3 };
    pid_t pid = fork();
    int fd, status;

    if (pid == 0)
        _exit(7);
    fd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    if (pid > 0)
        waitpid(pid, &status, 0);
    if (fd < 0)
        return false;
    bool yes = ioctl(fd, _IOWR(0xFF, 11, info), &info) == 0 && (info.mask & (1u << 3)) &&
               WIFEXITED(info.exit_code) && WEXITSTATUS(info.exit_code) == 7;
    close(fd);
    return yes;
}

/* An observer (a second context, attached) of a DM whose keeper is killed
 * from outside: no keeper records the end, so the record has no status.
 * DEAD must still say how it ended, from the kernel (the keeper, init of
 * the DM's PID namespace, took QEMU with it: SIGKILL). Before, the
 * observer said UNKNOWN (the same as after an autokill, whose keeper
 * removes the record). */
static void check_observer_death(void)
{
    events e, eo = { 0 };
    libdm_dm_end_by before;
    libdm_dm *dm = start_real(&e, &before), *obs = NULL;
    libdm_ctx *ctx2 = NULL;
    char path[64], buf[512], detail[300];
    int kpid = 0, fd, n;
    uint64_t end;

    if (!kernel_has_pidfd_exit()) {
        printf("ok - observer: # SKIP this kernel has no PIDFD_INFO_EXIT (Linux 6.15)\n");
        (void)libdm_dm_stop(dm, 1, 5000);
        libdm_dm_release(dm);
        return;
    }
    if (libdm_ctx_new(NULL, &ctx2) < 0 || libdm_ctx_set_store(ctx2, S.dir) < 0 ||
        libdm_dm_attach_flags(ctx2, libdm_dm_get_name(dm), 300, LIBDM_ATTACH_ANY_MONITOR,
                              &obs) < 0)
        exit(99);
    libdm_dm_set_event_callback(obs, on_event, &eo);
    /* QEMU's parent, as the host sees it, is its keeper. */
    snprintf(path, sizeof(path), "/proc/%d/stat", libdm_dm_get_pid(dm));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    n = fd >= 0 ? (int)read(fd, buf, sizeof(buf) - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n > 0) {
        buf[n] = '\0';
        if (strrchr(buf, ')'))
            (void)sscanf(strrchr(buf, ')') + 2, "%*c %d", &kpid);
    }
    if (kpid <= 1 || kill(kpid, SIGKILL) < 0)
        exit(99);
    end = tu_now_ms() + 20000;
    while (!eo.n_dead && tu_now_ms() < end) {
        libdm_ctx_run_once(ctx2, 10);
        libdm_ctx_run_once(S.ctx, 0);
    }
    snprintf(detail, sizeof(detail), "dead %d by %s sig %d code %d", eo.n_dead,
             libdm_dm_end_by_to_string(libdm_dm_get_ended_by(obs)),
             libdm_dm_get_term_signal(obs), libdm_dm_get_exit_code(obs));
    ok(eo.n_dead == 1 && libdm_dm_get_ended_by(obs) == LIBDM_END_EXTERNAL &&
           libdm_dm_get_term_signal(obs) == SIGKILL,
       "%s: DEAD says external, signal 9, with no recorded status", "observer", detail);
    (void)libdm_dm_stop(obs, 1, 5000);
    libdm_dm_release(obs);
    wait_dead(dm, &e);
    (void)libdm_dm_stop(dm, 1, 5000);
    libdm_dm_release(dm);
    tu_settle_children(S.ctx, 0);
    libdm_ctx_free(ctx2);
}

/* A failed start's structured cause: @by, @code, @sig, a log tail with @tail. */
static void check_start_death(const char *what, const char *qemu, int timeout_ms,
                              libdm_dm_end_by by, int code, int sig, const char *tail)
{
    static int seq;
    libdm_dm_config *cfg;
    libdm_dm *dm = NULL;
    qf_done res = { 0 };
    events e = { 0 };
    char name[64], detail[1400];
    uint64_t end;

    snprintf(name, sizeof(name), "ecs%d-%d", (int)getpid(), seq++);
    cfg = qf_config(name, timeout_ms);
    if (libdm_dm_config_set_qemu_path(cfg, qemu) < 0 ||
        libdm_dm_start_async(S.ctx, cfg, qf_on_done, &res, &dm) < 0)
        exit(99);
    libdm_dm_config_free(cfg);
    libdm_dm_set_event_callback(dm, on_event, &e);
    end = tu_now_ms() + 30000;
    while ((!res.n || !e.n_dead) && tu_now_ms() < end)
        libdm_ctx_run_once(S.ctx, 10);
    snprintf(detail, sizeof(detail), "by %s code %d sig %d tail '%s'; event by %s",
             libdm_dm_end_by_to_string(libdm_dm_get_ended_by(dm)), libdm_dm_get_exit_code(dm),
             libdm_dm_get_term_signal(dm),
             libdm_dm_get_log_tail(dm) ? libdm_dm_get_log_tail(dm) : "(null)",
             libdm_dm_end_by_to_string(e.by));
    ok(libdm_dm_get_ended_by(dm) == by && e.by == by && libdm_dm_get_exit_code(dm) == code &&
           libdm_dm_get_term_signal(dm) == sig,
       "%s: who ended it, its code and signal", what, detail);
    if (tail)
        ok(libdm_dm_get_log_tail(dm) && strstr(libdm_dm_get_log_tail(dm), tail) &&
               strstr(e.tail, tail),
           "%s: the log tail", what, detail);
    libdm_dm_release(dm);
}

int main(void)
{
    char nf[400], noexec[400], fmt[400], early[400], killed[400], mute[400], xdir[400];
    int r = tu_require_dm_env();

    if (r)
        return r;
    qf_open(&S, "errcodes");
    snprintf(nf, sizeof(nf), "%s/no-such-qemu", S.dir);
    snprintf(noexec, sizeof(noexec), "%s/not-executable", S.dir);
    write_file(noexec, "#!/bin/sh\nexit 0\n", 0644);
    snprintf(fmt, sizeof(fmt), "%s/bad-format", S.dir);
    write_file(fmt, "\x7f" "ELF garbage, not a program\n", 0755);
    snprintf(xdir, sizeof(xdir), "%s/a-directory", S.dir);
    if (mkdir(xdir, 0755) < 0)
        return 99;
    /* Stand-ins (scripts, not QEMU): one that exits 3 at once, one that is
     * killed by a signal nobody in libdm sent, one that never answers. */
    snprintf(early, sizeof(early), "%s/exits-early", S.dir);
    write_file(early, "#!/bin/sh\necho 'stand-in: giving up' >&2\nexit 3\n", 0755);
    snprintf(killed, sizeof(killed), "%s/killed", S.dir);
    write_file(killed, "#!/bin/sh\nkill -KILL $$\n", 0755);
    snprintf(mute, sizeof(mute), "%s/mute", S.dir);
    write_file(mute, "#!/bin/sh\nexec sleep 30\n", 0755);

    check_start("binary not found", nf, NULL, 10000, -ENOENT, "cannot execute",
                "No such file", "exited with status");
    check_start("not executable", noexec, NULL, 10000, -EACCES, "cannot execute",
                "Permission denied", "exited with status");
    check_start("a directory", xdir, NULL, 10000, -EACCES, "cannot execute", NULL, NULL);
    check_start("exec format", fmt, NULL, 10000, -ENOEXEC, "cannot execute", "format", NULL);
    check_start("bad argument (QEMU refuses its command line)", tu_qemu(), "-no-such-option",
                10000, -EINVAL, "device model", "no-such-option", NULL);
    check_start("exited early", early, NULL, 10000, -ECHILD, "device model",
                "exited with status 3", NULL);
    check_start("killed by a signal libdm did not send", killed, NULL, 10000, -ESRCH,
                "device model", "signal 9", NULL);
    /* The deadline is the cause; the kill that follows only appends. */
    check_start("timeout", mute, NULL, 500, -ETIMEDOUT, "not ready before the deadline", NULL,
                NULL);
    /* A 1 ms deadline: a timeout, and no claim of a kill that did not fail. */
    check_start("1 ms timeout", mute, NULL, 1, -ETIMEDOUT, "not", NULL,
                "did not end after SIGKILL");

    check_death();
    check_observer_death();
    check_start_death("exited early", early, 10000, LIBDM_END_SELF, 3, 0, "giving up");
    check_start_death("timeout", mute, 500, LIBDM_END_TIMEOUT, -1, SIGKILL, NULL);

    qf_close(&S);
    return tu_tap_done();
}
