/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-qmp-server: a fake QMP server for bench-scale. One process, epoll,
 * one unix listening socket with a big backlog. Greets every client, answers
 * every command line with a minimal reply echoing its id (query-status gets
 * a status object, anything else {}). Writes "ready\n" to stdout once
 * listening; exits on SIGTERM or when stdin reaches EOF.
 * Usage: bench-qmp-server PATH
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAXLINE 4096

typedef struct client {
    int fd;
    size_t len;
    char buf[MAXLINE];
} client;

static const char greeting[] =
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "
    "\"package\": \"bench\"}, \"capabilities\": [\"oob\"]}}\r\n";

static int listen_on(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    unlink(path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0)
        return -1;
    return fd;
}

/* Copies the JSON value of "id" in @line (a string or a number) to @out. */
static size_t copy_id(const char *line, char *out, size_t cap)
{
    const char *p = strstr(line, "\"id\"");
    size_t n = 0;

    if (!p)
        return 0;
    p += 4;
    while (*p == ' ' || *p == ':')
        p++;
    if (*p == '"') {
        out[n++] = *p++;
        while (*p && *p != '"' && n < cap - 2) {
            if (*p == '\\' && p[1])
                out[n++] = *p++;
            out[n++] = *p++;
        }
        out[n++] = '"';
    } else {
        while (*p && *p != ',' && *p != '}' && n < cap - 1)
            out[n++] = *p++;
    }
    return n;
}

static void answer(client *c, const char *line)
{
    char id[256], reply[512];
    size_t idn = copy_id(line, id, sizeof(id));
    const char *ret = strstr(line, "query-status")
                          ? "{\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}"
                          : "{}";
    int n;

    if (idn)
        n = snprintf(reply, sizeof(reply), "{\"return\": %s, \"id\": %.*s}\r\n", ret, (int)idn, id);
    else
        n = snprintf(reply, sizeof(reply), "{\"return\": %s}\r\n", ret);
    /* Replies are tiny and the client reads them: a short write is a bug. */
    if (write(c->fd, reply, (size_t)n) != n)
        c->len = 0;
}

/* Reads what is there and answers each complete line; -1 on EOF. */
static int serve(client *c)
{
    for (;;) {
        ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len - 1);
        char *start = c->buf, *nl;

        if (r < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        if (r == 0)
            return -1;
        c->len += (size_t)r;
        c->buf[c->len] = '\0';
        while ((nl = memchr(start, '\n', c->len - (size_t)(start - c->buf)))) {
            *nl = '\0';
            answer(c, start);
            start = nl + 1;
        }
        c->len -= (size_t)(start - c->buf);
        memmove(c->buf, start, c->len);
        if (c->len >= sizeof(c->buf) - 1)
            return -1;
    }
}

static void accept_all(int ep, int lfd)
{
    int fd;

    while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        client *c = calloc(1, sizeof(*c));
        struct epoll_event ev = { .events = EPOLLIN };

        if (!c || write(fd, greeting, sizeof(greeting) - 1) < 0) {
            free(c);
            close(fd);
            continue;
        }
        c->fd = fd;
        ev.data.ptr = c;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    static client lsn, in;
    struct epoll_event ev = { .events = EPOLLIN }, evs[256];
    int ep, lfd;

    if (argc != 2)
        return 2;
    raise_nofile();
    lfd = listen_on(argv[1]);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (lfd < 0 || ep < 0) {
        perror("bench-qmp-server");
        return 1;
    }
    ev.data.ptr = &lsn;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.ptr = &in;
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);

        for (int i = 0; i < n; i++) {
            client *c = evs[i].data.ptr;

            if (c == &lsn) {
                accept_all(ep, lfd);
            } else if (c == &in) {
                unlink(argv[1]);
                return 0;
            } else if (serve(c) < 0) {
                close(c->fd);
                free(c);
            }
        }
    }
}
