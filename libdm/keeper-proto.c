/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "internal.h"
#include "keeper-proto.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int libdm__kp_send(int sock, const char *msg, int fd)
{
    ssize_t n = libdm__send_with_fd(sock, msg, strlen(msg), fd, 0);

    return n < 0 ? (int)n : 0;
}

int libdm__kp_recv(int sock, char *buf, size_t len, int *ret_fd)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct iovec iov = { .iov_base = buf, .iov_len = len - 1 };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = control.buf, .msg_controllen = sizeof(control.buf) };
    struct cmsghdr *c;
    ssize_t n;

    *ret_fd = -1;
    n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0)
        return -errno;
    for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(ret_fd, CMSG_DATA(c), sizeof(int));
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        if (*ret_fd >= 0)
            close(*ret_fd);
        *ret_fd = -1;
        return -EMSGSIZE;
    }
    buf[n] = '\0';
    return (int)n;
}
