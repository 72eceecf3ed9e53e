/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl migrate: the switchover hook (with its guardian) and the progress
 * display (see dmctl-migrate.h).
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

/* ---- the switchover hook ---- */

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
        kill(pid, SIGKILL);   /* reaped by hook_poll */
    close(go[1]);
    return pid;
}

/* Ends and reaps the guardian of a hook that ended. */
static void end_guardian(hook_proc *h)
{
    if (h->guardian > 0) {
        kill(h->guardian, SIGKILL);
        while (waitpid(h->guardian, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    h->guardian = -1;
    h->pid = -1;
}

/* libdm at pre-switchover: the hook runs in its own process group while
 * the loop goes on (hook_poll() looks after it). */
void hook_start(libdm_migration *mig, void *user)
{
    migration *m = user;
    int e;

    if (!m->o.hook) {
        (void)libdm_migration_switchover_done(mig, 0, NULL);
        return;
    }
    m->hook.pid = spawn_hook(m, &m->hook.guardian);
    if (m->hook.pid < 0) {
        e = errno;
        m->hook.pid = -1;
        (void)libdm_migration_switchover_done(mig, -e, "cannot run the switchover hook");
    }
}

/* Kills the hook's whole group (a hook's children go with it), reaps it
 * and answers libdm with @status (if it still waits). */
void hook_kill(migration *m, int status, const char *why)
{
    if (m->hook.pid <= 0)
        return;
    kill(-m->hook.pid, SIGKILL);
    while (waitpid(m->hook.pid, NULL, 0) < 0 && errno == EINTR)
        ;
    end_guardian(&m->hook);
    (void)libdm_migration_switchover_done(m->mig, status, why);
}

/* The hook ended (its status is the answer), or libdm no longer waits for
 * it (Perform's deadline passed, the receiver went away): killed then. */
void hook_poll(migration *m)
{
    char buf[64], *why = NULL;
    int status = 0;
    pid_t r, pid;

    if (m->hook.pid <= 0)
        return;
    r = waitpid(m->hook.pid, &status, WNOHANG);
    if (r == 0 && libdm_migration_hook_pending(m->mig))
        return;
    if (r == 0) {
        hook_kill(m, -ECANCELED, NULL);
        return;
    }
    pid = m->hook.pid;
    end_guardian(&m->hook);
    if (r == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        (void)libdm_migration_switchover_done(m->mig, 0, NULL);
        return;
    }
    if (asprintf(&why, "the switchover hook %s; migration cancelled",
                 dmctl_describe_wait(status, buf, sizeof(buf))) < 0)
        why = NULL;
    (void)libdm_migration_switchover_done(m->mig, -ECANCELED, why);
    free(why);
}

/* ---- progress ---- */

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
    dmctl_json_emit(ok ? o : libdm_json_free(o));
    fflush(stdout);
}

void on_progress(libdm_dm *src, const libdm_migrate_progress *p, void *user)
{
    migration *m = user;

    (void)src;
    if (m->d->json)
        progress_json(m, p);
    else if (isatty(2))
        progress_bar(m, p);
    else
        progress_line(m, p);
}
