/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libdm-keeper --helper: one per libdm context, exec'd on its first start,
 * forks a keeper per DM (issue 23: a fork of this small process instead of
 * an exec of the keeper). Protocol: libdm/keeper-proto.h. Single-threaded,
 * so the forked keeper may use everything libc offers.
 *
 * The keeper is forked in a new PID namespace when we may (as libdm did:
 * it is that namespace's init), else as a plain child; it is our child and
 * we reap it. We never end a keeper: our death leaves them running
 * (re-parented), our socket's EOF makes us exit once the last has exited.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libdm/dm.h>
#include "keeper-helper.h"
#include "keeper-proto.h"
#include "spawn-internal.h"

#define MAX_ARGS 4096
/* Above every fd a keeper is given (keeper-proto.h, LIBDM_MAX_PASS_FDS). */
#define HIGH_FD (LIBDM_PASS_FD_FIRST + LIBDM_MAX_PASS_FDS)

/* In the forked keeper: the request's fds become 1.., the rest closes,
 * then the keeper runs. */
static void run_keeper(const int *fds, int nfds, char **argv, int argc)
{
    int high[LIBDM__HELPER_MAX_FDS];

    libdm__child_reset_signals();
    for (int i = 0; i < nfds; i++)
        if ((high[i] = fcntl(fds[i], F_DUPFD, HIGH_FD)) < 0)
            _exit(127);
    for (int i = 0; i < nfds; i++)
        if (dup2(high[i], i + 1) < 0)
            _exit(127);
    (void)syscall(SYS_close_range, nfds + 1, ~0U, 0);
    optind = 0;
    exit(keeper_main(argc, argv));
}

/* 1 if a keeper was forked. */
static int fork_keeper(char *buf, size_t len, const int *fds, int nfds, bool newpid)
{
    char *argv[MAX_ARGS + 1];
    int argc = 0, pidfd = -1;
    pid_t pid;

    /* fds: 1, 2 (the log), QMP, the channel, ... (keeper-proto.h). A
     * request whose channel libdm closed (it released the start, or died)
     * still gets its keeper: it finds nobody to say hello to and removes
     * what libdm had recorded and created for the DM (keeper.c). */
    if (nfds < LIBDM__KEEPER_RUNDIR_FD || len == 0 || buf[len - 1] != '\0')
        return 0;
    for (char *p = buf; p < buf + len && argc < MAX_ARGS; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;
    fflush(NULL);
    pid = libdm__clone_pidfd(newpid, &pidfd, NULL);
    if (pid == 0)
        run_keeper(fds, nfds, argv, argc);
    if (pidfd >= 0)
        close(pidfd);
    /* pid < 0: the request's fds close below; libdm sees the channel's
     * EOF before any "keeper" and fails the start. */
    return pid > 0;
}

/* One request; its fds are ours to close whatever happens. Returns 1 if
 * a keeper was forked, 0 if not, -EAGAIN if none is queued, -EPIPE at EOF. */
static int handle_request(int sock, char *buf, bool newpid)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * LIBDM__HELPER_MAX_FDS)];
    } control;
    struct iovec iov = { .iov_base = buf, .iov_len = LIBDM__HELPER_MSG_MAX };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof(control.buf) };
    int fds[LIBDM__HELPER_MAX_FDS], nfds = 0, r = 0;
    struct cmsghdr *c;
    ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? -EAGAIN : -EPIPE;
    for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));

            for (int i = 0; i < k; i++) {
                int fd;

                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                if (nfds < LIBDM__HELPER_MAX_FDS)
                    fds[nfds++] = fd;
                else
                    close(fd);
            }
        }
    if (n == 0 && nfds == 0)
        return -EPIPE; /* libdm closed its end (it never sends empty requests) */
    if (!(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
        r = fork_keeper(buf, (size_t)n, fds, nfds, newpid);
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    return r;
}

/* With no keeper left for this long, and no request, we exit: a context
 * that starts DMs one after another keeps one helper, one with nothing
 * running holds no process. */
#define LINGER_MS 1000

int keeper_helper_main(void)
{
    char *buf = malloc(LIBDM__HELPER_MSG_MAX);
    int sock = LIBDM__HELPER_FD, sigfd, children = 0;
    bool newpid = geteuid() == 0, eof = false;
    sigset_t chld;

    if (!buf)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0)
        return 1;
    /* libdm may have let us go already (its context freed): what it queued
     * is still read, and each of those keepers cleans up after its start. */
    (void)libdm__kp_send(sock, "ready", -1);
    while (!eof || children > 0) {
        struct pollfd p[2] = { { .fd = sigfd, .events = POLLIN },
                               { .fd = eof ? -1 : sock, .events = POLLIN } };
        struct signalfd_siginfo si;
        int r;

        int n = poll(p, 2, !eof && children == 0 ? LINGER_MS : -1);

        if (n < 0 && errno != EINTR)
            return 1;
        if (n == 0) {
            /* Idle: refuse new requests (libdm's send fails with EPIPE and
             * it execs that keeper itself), then take those queued. */
            (void)shutdown(sock, SHUT_RD);
            p[1].revents = POLLIN;
        }
        while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            ;
        while (waitpid(-1, NULL, WNOHANG) > 0)
            children--;
        /* Every queued request, then EOF (the queue drains first). */
        while (!eof && p[1].revents && (r = handle_request(sock, buf, newpid)) != -EAGAIN) {
            if (r == -EPIPE) {
                eof = true;
                close(sock);
            } else {
                children += r;
            }
        }
    }
    return 0;
}
