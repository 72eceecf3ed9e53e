/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl migrate: Perform, the switchover hook (with its guardian) and the
 * progress display (see dmctl-migrate.h).
 */
#include "config.h"

#include <libdm/libdm.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dmctl-migrate.h"

/* ---- perform: hook and progress ---- */

/* Why a hook was stopped before it ended. */
typedef enum hook_stop {
    HOOK_ENDED,
    HOOK_DEADLINE,
    HOOK_PEER_GONE,
    HOOK_SIGNAL,
} hook_stop;

/* Waits for the hook @pid (leader of its own process group) until it ends,
 * the deadline passes, the receiver goes away or dmctl is signalled; then
 * the whole group is SIGKILLed (a hook's children go with it) and reaped. */
static hook_stop wait_hook(migration *m, pid_t pid, int *ret_status)
{
    const struct timespec tick = { 0, 5 * 1000 * 1000 };
    hook_stop why = HOOK_ENDED;
    pid_t r;

    for (;;) {
        r = waitpid(pid, ret_status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            break;
        if (remaining_ms(m->perform_deadline) == 0)
            why = HOOK_DEADLINE;
        else if (chan_peer_gone(&m->ch))
            why = HOOK_PEER_GONE;
        else if (dmctl_signal_received())
            why = HOOK_SIGNAL;
        if (why != HOOK_ENDED)
            break;
        nanosleep(&tick, NULL);
    }
    if (why != HOOK_ENDED) {
        kill(-pid, SIGKILL);
        while (waitpid(pid, ret_status, 0) < 0 && errno == EINTR)
            ;
    }
    return why;
}

/* The hook's guardian, in a forked child that joined the hook's process
 * group: should dmctl die (even by SIGKILL: PR_SET_PDEATHSIG), it kills
 * the whole group, so that no hook acts on a switchover dmctl no longer
 * drives (issue 22, 10). dmctl kills it once the hook ended. */
static void hook_guardian(pid_t hook, pid_t parent)
{
    sigset_t set;
    int sig;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent) {
        kill(-hook, SIGKILL);
        _exit(127);
    }
    while (sigwait(&set, &sig) != 0 || sig != SIGTERM)
        ;
    kill(-hook, SIGKILL);   /* dmctl died: the group goes, this one too */
    _exit(127);
}

/* The hook, leader of its own process group, runs once its guardian is in
 * place (@go: a byte, or EOF if dmctl died first). */
static void hook_child(migration *m, int go)
{
    int null;
    char c;

    if (setpgid(0, 0) < 0 || read(go, &c, 1) != 1)
        _exit(127);
    null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(2, 1) < 0 ||
        setenv("DMCTL_MIGRATE_NAME", m->o.name, 1) < 0)
        _exit(127);
    exec_shell(m->o.hook);
}

static pid_t spawn_hook(migration *m, pid_t *ret_guardian)
{
    pid_t pid, self = getpid();
    int go[2];

    *ret_guardian = -1;
    if (pipe2(go, O_CLOEXEC) < 0)
        return -1;
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        close(go[1]);
        hook_child(m, go[0]);
    }
    close(go[0]);
    if (pid < 0) {
        close(go[1]);
        return -1;
    }
    /* Its own process group: on timeout or cancel the hook is killed with
     * everything it started; either side may win the race. */
    (void)setpgid(pid, pid);
    *ret_guardian = fork();
    if (*ret_guardian == 0) {
        close(go[1]);
        if (setpgid(0, pid) < 0)
            _exit(127);
        hook_guardian(pid, self);
    }
    if (*ret_guardian > 0)
        (void)setpgid(*ret_guardian, pid);
    if (write(go[1], "g", 1) != 1)
        kill(pid, SIGKILL);   /* reaped by wait_hook */
    close(go[1]);
    return pid;
}

/* Ends and reaps the guardian of a hook that ended. */
static void end_guardian(pid_t guardian)
{
    if (guardian <= 0)
        return;
    kill(guardian, SIGKILL);
    while (waitpid(guardian, NULL, 0) < 0 && errno == EINTR)
        ;
}

static int run_hook(migration *m)
{
    char buf[64];
    int status = 0;
    pid_t guardian;
    pid_t pid = spawn_hook(m, &guardian);
    hook_stop stop;

    if (pid < 0)
        return -errno;
    stop = wait_hook(m, pid, &status);
    end_guardian(guardian);
    switch (stop) {
    case HOOK_DEADLINE:
        return fail(m, "perform", -ETIMEDOUT, "the switchover hook did not end "
                    "before the deadline (killed with its process group)");
    case HOOK_PEER_GONE:
        return fail_peer_lost(m);
    case HOOK_SIGNAL:
        return fail(m, "perform", -EINTR, "interrupted during the switchover hook "
                    "(killed with its process group)");
    case HOOK_ENDED:
        break;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    return fail(m, "perform", -ECANCELED, "the switchover hook %s; migration cancelled",
                dmctl_describe_wait(status, buf, sizeof(buf)));
}

static int switchover_hook(libdm_dm *src, void *user)
{
    migration *m = user;
    int r;

    (void)src;
    if (chan_peer_gone(&m->ch))
        return fail_peer_lost(m);
    if (!m->o.hook)
        return 0;
    r = run_hook(m);
    if (r == 0 && chan_peer_gone(&m->ch))   /* went away during the hook */
        r = fail_peer_lost(m);
    return r < 0 ? -ECANCELED : 0;
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

static unsigned percent(const libdm_migrate_progress *p)
{
    uint64_t done;

    if (!p->ram_total)
        return 0;
    done = p->ram_remaining < p->ram_total ? p->ram_total - p->ram_remaining : 0;
    return (unsigned)(done * 100 / p->ram_total);
}

static void progress_bar(migration *m, const libdm_migrate_progress *p)
{
    const unsigned width = 20;
    unsigned pct = percent(p), fill = pct * width / 100, i;
    char bar[32];

    for (i = 0; i < width; i++)
        bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] %3u%% %.1f/%.1f MiB, %" PRIu64 " Mbit/s, remaining %.1f MiB\033[K",
            bar, pct, mib(p->ram_transferred), mib(p->ram_total), p->mbps,
            mib(p->ram_remaining));
    fflush(stderr);
    m->bar_drawn = true;
}

static void progress_line(migration *m, const libdm_migrate_progress *p)
{
    uint64_t now = libdm_now_ms();

    if (m->last_print_ms && now - m->last_print_ms < PROGRESS_PLAIN_MS)
        return;
    m->last_print_ms = now;
    fprintf(stderr, "dmctl: %s: migration %s: %u%% %.1f/%.1f MiB, %" PRIu64
            " Mbit/s, remaining %.1f MiB\n", m->o.name, p->status, percent(p),
            mib(p->ram_transferred), mib(p->ram_total), p->mbps, mib(p->ram_remaining));
}

static void progress_json(migration *m, const libdm_migrate_progress *p)
{
    libdm_json *o;
    bool ok;

    if (!strcmp(m->last_status, p->status) && m->last_transferred == p->ram_transferred)
        return;   /* nothing new */
    snprintf(m->last_status, sizeof(m->last_status), "%s", p->status);
    m->last_transferred = p->ram_transferred;
    o = libdm_json_new_object();
    ok = o && dmctl_json_add_str(o, "event", "progress");
    ok = ok && dmctl_json_add_str(o, "name", m->o.name);
    ok = ok && dmctl_json_add_str(o, "status", p->status);
    ok = ok && dmctl_json_add_int(o, "ram_transferred", (int64_t)p->ram_transferred);
    ok = ok && dmctl_json_add_int(o, "ram_total", (int64_t)p->ram_total);
    ok = ok && dmctl_json_add_int(o, "ram_remaining", (int64_t)p->ram_remaining);
    ok = ok && dmctl_json_add_int(o, "mbps", (int64_t)p->mbps);
    ok = ok && dmctl_json_add_int(o, "percent", percent(p));
    dmctl_json_emit(msg_check(o, ok));
    fflush(stdout);
}

/* Cancels early when the receiver is gone (perform would wait until its
 * deadline otherwise). */
static void check_peer(migration *m, libdm_dm *src)
{
    if (m->cancel_sent || !chan_peer_gone(&m->ch))
        return;
    fail_peer_lost(m);
    m->cancel_sent = true;
    (void)libdm_qmp_call(libdm_dm_get_qmp(src), "migrate_cancel", NULL,
                         remaining_ms(m->perform_deadline) + 1, NULL);
}

/* A signal (^C, or `dmctl migrate-cancel` from elsewhere) cancels a
 * migration still in flight: the source keeps the guest. Once completed,
 * QEMU ignores migrate_cancel and the protocol decides as usual. */
static void check_interrupt(migration *m, libdm_dm *src)
{
    if (m->cancel_sent || !dmctl_signal_received())
        return;
    m->cancel_sent = true;
    dmctl_error(m->o.name, "interrupted: cancelling the migration");
    (void)libdm_qmp_call(libdm_dm_get_qmp(src), "migrate_cancel", NULL,
                         remaining_ms(m->perform_deadline) + 1, NULL);
}

static void on_progress(libdm_dm *src, const libdm_migrate_progress *p, void *user)
{
    migration *m = user;

    check_peer(m, src);
    check_interrupt(m, src);
    if (m->d->json)
        progress_json(m, p);
    else if (isatty(2))
        progress_bar(m, p);
    else
        progress_line(m, p);
}

int do_perform(migration *m, const char *uri)
{
    unsigned flags = m->o.pause_before_switchover ? LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER : 0;
    int r;

    m->perform_deadline = deadline_in(m->d->timeout_ms);
    r = libdm_migrate_perform(m->src, uri, flags, switchover_hook, m, on_progress, m,
                              m->d->timeout_ms);
    if (m->bar_drawn)
        fputc('\n', stderr);
    return r < 0 ? fail_err(m, "perform", r) : 0;
}
