/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * xl-spawn-sim: what libxl does around a device model's spawn under
 * dm_restrict, for tests only (a SIMULATION of libxl's side, not libxl):
 * it binds and listens on SOCKET (backlog 1, non-blocking, as libxl),
 * connects to it before the spawn and queues TEXT on that connection (libxl
 * queues qmp_capabilities and query-status; a test may queue "cont" to
 * stand for libxl resuming early), then executes PROG with the listening
 * socket inherited and every "@FD@" in its arguments replaced by its
 * number (libxl's "-chardev socket,id=libxl-cmd,fd=N"). It keeps its
 * connection open, waits for PROG and exits with its status (128+signal).
 *
 *   xl-spawn-sim SOCKET TEXT PROG [ARG...]
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
    perror(what);
    exit(99);
}

int main(int argc, char **argv)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char fdnum[16];
    int l, c, status;
    pid_t pid;

    if (argc < 4) {
        fprintf(stderr, "usage: %s SOCKET TEXT PROG [ARG...]\n", argv[0]);
        return 2;
    }
    if (strlen(argv[1]) >= sizeof(sa.sun_path))
        return 2;
    strcpy(sa.sun_path, argv[1]);
    unlink(argv[1]);
    l = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0); /* inherited: no CLOEXEC */
    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0)
        die("listen");
    c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        die("connect");
    if (write(c, argv[2], strlen(argv[2])) != (ssize_t)strlen(argv[2]))
        die("write");
    snprintf(fdnum, sizeof(fdnum), "%d", l);
    for (int i = 3; i < argc; i++) {
        char *at = strstr(argv[i], "@FD@");

        if (at && asprintf(&argv[i], "%.*s%s%s", (int)(at - argv[i]), argv[i], fdnum, at + 4) < 0)
            die("asprintf");
    }
    signal(SIGHUP, SIG_IGN); /* the test signals PROG, not us */
    pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        signal(SIGHUP, SIG_DFL);
        execv(argv[3], argv + 3);
        die(argv[3]);
    }
    close(l);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            die("waitpid");
    close(c);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
