/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sockets of a restricted DM's fd transport (issue 22, 3): QEMU in its
 * chroot cannot reach a unix socket outside it, so libdm makes the
 * connection (the source's non-blocking connect: migrate.c's P_CONNECT; the
 * destination's accept: migrate-recv.c) and hands QEMU the stream with
 * getfd, then migrate / migrate-incoming "fd:NAME". Below the steps
 * (migrate.c): this file calls none.
 */
#include "migrate-op-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <poll.h>
#include <unistd.h>

int libdm__mig_sockaddr(const char *uri, struct sockaddr_storage *sa, socklen_t *len)
{
    const char *p, *colon;
    char host[64];
    size_t n;
    char *end = NULL;
    long port;

    memset(sa, 0, sizeof(*sa));
    if (!uri)
        return -EINVAL;
    if (!strncmp(uri, "unix:", 5)) {
        struct sockaddr_un *sun = (struct sockaddr_un *)sa;

        p = uri + 5;
        n = strlen(p);
        if (!n || n >= sizeof(sun->sun_path))
            return -EINVAL;
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, p, n + 1);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
    }
    if (strncmp(uri, "tcp:", 4))
        return -EINVAL;
    p = uri + 4;
    colon = strrchr(p, ':');
    if (!colon || colon == p)
        return -EINVAL;
    n = (size_t)(colon - p);
    if (p[0] == '[') {              /* [v6]:port */
        if (n < 3 || p[n - 1] != ']')
            return -EINVAL;
        p++;
        n -= 2;
    }
    if (n >= sizeof(host))
        return -EINVAL;
    memcpy(host, p, n);
    host[n] = '\0';
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno || !end || *end || end == colon + 1 || port < 0 || port > 65535)
        return -EINVAL;
    if (!strcmp(host, "localhost"))
        strcpy(host, "127.0.0.1");
    {
        struct sockaddr_in *in = (struct sockaddr_in *)sa;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;

        if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
            in->sin_family = AF_INET;
            in->sin_port = htons((uint16_t)port);
            *len = sizeof(*in);
            return 0;
        }
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons((uint16_t)port);
            *len = sizeof(*in6);
            return 0;
        }
    }
    /* A name: resolving it could block the loop (and a chrooted QEMU has no
     * resolver files): the caller gets a numeric address first. */
    return -EDESTADDRREQ;
}

int libdm__mig_listen(const char *uri, int *ret_fd, char **ret_uri)
{
    struct sockaddr_storage sa, got;
    socklen_t len, glen = sizeof(got);
    char host[INET6_ADDRSTRLEN];
    int fd, r, one = 1;

    *ret_fd = -1;
    *ret_uri = NULL;
    r = libdm__mig_sockaddr(uri, &sa, &len);
    if (r < 0)
        return r;
    fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (sa.ss_family != AF_UNIX)
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 1) < 0 ||
        getsockname(fd, (struct sockaddr *)&got, &glen) < 0) {
        r = -errno;
        libdm__close(&fd);
        return r;
    }
    if (sa.ss_family == AF_UNIX)
        *ret_uri = strdup(uri);
    else if (sa.ss_family == AF_INET &&
             inet_ntop(AF_INET, &((struct sockaddr_in *)&got)->sin_addr, host, sizeof(host)))
        *ret_uri = libdm__sprintf("tcp:%s:%u", host,
                                  ntohs(((struct sockaddr_in *)&got)->sin_port));
    else if (inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&got)->sin6_addr, host, sizeof(host)))
        *ret_uri = libdm__sprintf("tcp:[%s]:%u", host,
                                  ntohs(((struct sockaddr_in6 *)&got)->sin6_port));
    if (!*ret_uri) {
        libdm__close(&fd);
        return -ENOMEM;
    }
    *ret_fd = fd;
    return 0;
}

int libdm__mig_uri_usable(libdm_dm *dm, const char *uri)
{
    const char *conf = libdm_dm_get_confinement(dm);
    struct sockaddr_storage sa;
    socklen_t len;

    if (!conf || !strcmp(conf, "none") || libdm__mig_sockaddr(uri, &sa, &len) != -EDESTADDRREQ)
        return 0;
    libdm__dm_error(dm, "a restricted DM migrates to a numeric address only (%s names a host: "
                    "QEMU cannot resolve it in its chroot, and libdm does not resolve on its "
                    "loop): resolve it first", uri);
    return -EINVAL;
}

/* A host name never gets here: Perform refused it (libdm__mig_uri_usable). */
bool libdm__mig_fd_wanted(libdm_dm *dm, const char *uri)
{
    const char *conf = libdm_dm_get_confinement(dm);
    struct sockaddr_storage sa;
    socklen_t len;

    return conf && strcmp(conf, "none") && libdm__mig_sockaddr(uri, &sa, &len) == 0;
}

int libdm__mig_connect_start(libdm_ctx *ctx, const char *uri, libdm__watch_fn *fn, void *user,
                             int *ret_fd, libdm__watch **ret_watch)
{
    struct sockaddr_storage sa;
    socklen_t len;
    int r = libdm__mig_sockaddr(uri, &sa, &len);

    if (r < 0)
        return r;
    *ret_fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (*ret_fd < 0)
        return -errno;
    if (connect(*ret_fd, (struct sockaddr *)&sa, len) < 0 && errno != EINPROGRESS)
        return -errno;
    /* In progress or done: POLLOUT says when, libdm__mig_connect_result() how. */
    return libdm__watch_add(ctx, *ret_fd, POLLOUT, fn, user, ret_watch);
}

int libdm__mig_connect_result(int fd)
{
    socklen_t len = sizeof(int);
    int err = 0, fl;

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    if (err)
        return -err;
    /* Blocking again for QEMU (its channel sets what it needs). */
    fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return 0;
}
