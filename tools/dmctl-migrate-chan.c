/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl migrate: the transport command, the children and the loop that
 * drives libdm's migration protocol (see dmctl-migrate.h).
 */
#include "config.h"

#include <libdm/libdm.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dmctl-migrate.h"

#define LOOP_TICK_MS 50      /* signals and the hook are looked at this often */
#define HOOK_TICK_MS 5

int remaining_ms(uint64_t deadline)
{
    uint64_t now = libdm_now_ms();

    if (now >= deadline)
        return 0;
    return deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
}

uint64_t deadline_in(int ms)
{
    return libdm_now_ms() + (uint64_t)(ms > 0 ? ms : 0);
}

/* Waits for @pid until @deadline, then SIGKILLs it; -ETIMEDOUT then. */
int wait_child(pid_t pid, uint64_t deadline, int *ret_status)
{
    const struct timespec tick = { 0, 10 * 1000 * 1000 };
    pid_t r;

    for (;;) {
        r = waitpid(pid, ret_status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
        if (remaining_ms(deadline) == 0)
            break;
        nanosleep(&tick, NULL);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, ret_status, 0) < 0 && errno == EINTR)
        ;
    return -ETIMEDOUT;
}

/* In a forked child: default SIGPIPE, then /bin/sh -c @command. */
void exec_shell(const char *command)
{
    signal(SIGPIPE, SIG_DFL);
    execl("/bin/sh", "sh", "-c", command, (char *)NULL);
    _exit(127);
}

int spawn_transport(const char *command, pid_t *ret_pid, int *ret_in, int *ret_out)
{
    int down[2], up[2];   /* down: dmctl -> peer; up: peer -> dmctl */
    pid_t pid;

    if (pipe2(down, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(up, O_CLOEXEC) < 0) {
        close(down[0]);
        close(down[1]);
        return -errno;
    }
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        if (dup2(down[0], 0) < 0 || dup2(up[1], 1) < 0)
            _exit(127);
        exec_shell(command);
    }
    close(down[0]);
    close(up[1]);
    if (pid < 0) {
        close(down[1]);
        close(up[0]);
        return -errno;
    }
    *ret_pid = pid;
    *ret_in = up[0];
    *ret_out = down[1];
    return 0;
}

void reap_transport(dmctl *d, const char *name, pid_t *pid, bool note_status)
{
    int status = 0;
    char buf[64];

    if (*pid <= 0)
        return;
    if (wait_child(*pid, deadline_in(d->timeout_ms), &status) == -ETIMEDOUT)
        dmctl_error(name, "the --to command did not exit; killed");
    else if (status != 0 && note_status)
        dmctl_error(name, "note: the --to command %s",
                    dmctl_describe_wait(status, buf, sizeof(buf)));
    *pid = -1;
}

/* A signal (^C, or `dmctl migrate-cancel` from elsewhere) cancels a
 * migration still in flight: the source keeps the guest. Once completed,
 * QEMU ignores migrate_cancel and the protocol decides as usual (issue 22,
 * 11: the outcome's exit status stands). */
static void on_signal(migration *m)
{
    int r;

    if (m->cancel_tried || !dmctl_signal_received())
        return;
    m->cancel_tried = true;
    if (m->hook.pid > 0) {
        hook_kill(m, -EINTR, "interrupted during the switchover hook (killed with its "
                  "process group)");
        return;
    }
    r = libdm_migration_cancel(m->mig);
    if (r == -EALREADY)
        m->too_late = true;
    else if (r == 0)
        dmctl_error(m->o.name, "interrupted: cancelling the migration");
}

void run_migration(dmctl *d, libdm_migration *mig, migration *m)
{
    int r;

    while (!libdm_migration_is_done(mig)) {
        r = libdm_ctx_run_once(d->ctx, m && m->hook.pid > 0 ? HOOK_TICK_MS : LOOP_TICK_MS);
        if (r < 0 && r != -EINTR) {
            dmctl_error(NULL, "the event loop failed: %s", strerror(-r));
            break;
        }
        if (!m)
            continue;
        on_signal(m);
        hook_poll(m);
    }
}

char *resolve_host(const char *host, const char *what)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    unsigned char a[sizeof(struct in6_addr)];
    char num[INET6_ADDRSTRLEN];
    const void *src;
    char *out;
    int r;

    /* Numeric already ("localhost" too: libdm takes it as 127.0.0.1). */
    if (!strcmp(host, "localhost") || strchr(host, ':') || inet_pton(AF_INET, host, a) == 1)
        out = strdup(host);
    else if ((r = getaddrinfo(host, NULL, &hints, &res)) != 0) {
        fprintf(stderr, "dmctl: %s: cannot resolve the host name '%s': %s\n", what, host,
                r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
        return NULL;
    } else {
        src = res->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                                         : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
        out = inet_ntop(res->ai_family, src, num, sizeof(num)) ? strdup(num) : NULL;
        freeaddrinfo(res);
    }
    if (!out)
        fprintf(stderr, "dmctl: %s: %s\n", what, strerror(errno));
    return out;
}
