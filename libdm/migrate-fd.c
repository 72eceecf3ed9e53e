/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fd transport of a restricted DM (issue 22, 3): QEMU in its chroot
 * cannot reach a unix socket outside it, so libdm makes the connection
 * (the source's non-blocking connect, on the loop, within the phase's
 * deadline; the destination's accept is migrate-recv.c's) and hands QEMU
 * the stream with getfd, then migrate / migrate-incoming "fd:NAME".
 * libdm's own copy of the fd is closed once getfd answered.
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
    return -EINVAL;   /* a name: resolving it could block the loop */
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

bool libdm__mig_fd_wanted(libdm_dm *dm, const char *uri)
{
    const char *conf = libdm_dm_get_confinement(dm);
    struct sockaddr_storage sa;
    socklen_t len;

    return conf && strcmp(conf, "none") && libdm__mig_sockaddr(uri, &sa, &len) == 0;
}

/* libdm's stream to QEMU: blocking again (QEMU's channel sets what it needs). */
static void hand_over(mig_op *m, mig_step next)
{
    int fl = fcntl(m->fd, F_GETFL);

    if (fl >= 0)
        (void)fcntl(m->fd, F_SETFL, fl & ~O_NONBLOCK);
    libdm__mig_op_send_fd(m, next, "getfd",
                          libdm__mig_string_arg("fdname", LIBDM__MIG_FDNAME), m->fd);
}

static void on_connected(libdm_ctx *ctx, int fd, short revents, void *user)
{
    mig_op *m = libdm__dm_mig_state(user);
    socklen_t len = sizeof(int);
    int err = 0;

    (void)ctx;
    (void)revents;
    if (!m || m->step != P_CONNECT || m->fd != fd)
        return;
    libdm__watch_del(m->watch);
    m->watch = NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        libdm__dm_error(m->dm, "cannot connect to %s: %s", m->uri, strerror(err));
        libdm__mig_op_end(m, -err);
        return;
    }
    hand_over(m, P_GETFD);
}

void libdm__mig_fd_connect(mig_op *m)
{
    struct sockaddr_storage sa;
    socklen_t len;
    int r = libdm__mig_sockaddr(m->uri, &sa, &len);

    m->step = P_CONNECT;
    if (r >= 0) {
        m->fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        r = m->fd < 0 ? -errno : 0;
    }
    if (r >= 0 && connect(m->fd, (struct sockaddr *)&sa, len) < 0 && errno != EINPROGRESS)
        r = -errno;
    /* In progress or done: POLLOUT says when; SO_ERROR says how. */
    if (r >= 0)
        r = libdm__watch_add(libdm__dm_ctx(m->dm), m->fd, POLLOUT, on_connected, m->dm,
                             &m->watch);
    if (r < 0) {
        libdm__dm_error(m->dm, "cannot connect to %s: %s", m->uri, strerror(-r));
        libdm__mig_op_end(m, r);
    }
}

void libdm__mig_fd_on_getfd(mig_op *m, const libdm_qmp_reply *r)
{
    (void)r;    /* a failure ended the phase before this */
    libdm__close(&m->fd);     /* QEMU holds it now */
    if (m->step == P_GETFD) {
        m->started = true;
        libdm__mig_op_send(m, P_MIGRATE, "migrate",
                           libdm__mig_string_arg("uri", "fd:" LIBDM__MIG_FDNAME));
    } else {
        libdm__mig_op_send(m, S_INCOMING, "migrate-incoming",
                           libdm__mig_string_arg("uri", "fd:" LIBDM__MIG_FDNAME));
    }
}

int libdm_migrate_incoming_fd_async(libdm_dm *dst, int fd, int timeout_ms,
                                    libdm_dm_done_fn *cb, void *user)
{
    mig_op *m;
    int copy, r;

    if (!dst || fd < 0)
        return -EINVAL;
    copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (copy < 0)
        return -errno;
    r = libdm__mig_op_start(dst, PH_INCOMING, timeout_ms, cb, user, &m);
    if (r < 0) {
        libdm__close(&copy);
        return r;
    }
    m->fd = copy;
    hand_over(m, S_GETFD);
    return 0;
}
