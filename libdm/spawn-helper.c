/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The context's keeper helper (issue 23): `libdm-keeper --helper`, exec'd
 * on the context's first start, forks one keeper per DM, so that a DM
 * costs a fork of a small process instead of an exec (the keeper's exec
 * and loading were the largest part of libdm's cost over a bare QEMU).
 * Protocol: keeper-proto.h. Everything here is non-blocking: a request the
 * helper's socket cannot take now (or one too large) is refused, and the
 * caller execs the keeper itself as before (spawn.c).
 *
 * The helper exits after LINGER_MS (tools/keeper-helper.c) with no keeper
 * and no request: a request sent as it does fails with EPIPE and that
 * keeper is exec'd here; the next start execs a new helper.
 *
 * Who dies, what then:
 *  - the helper, before it read a request: the request's fds close with
 *    its socket, the keeper's channel reports EOF with no pid, the start
 *    fails (nothing ran);
 *  - the helper, later: its keepers go on (re-parented to the nearest
 *    subreaper or init, which reaps them); libdm follows them through their
 *    channels and pidfds as before; the next start execs a new helper;
 *  - the controller: the helper reads what is queued (skipping requests
 *    whose channel closed), then exits once its keepers have; the keepers
 *    apply autokill as before.
 */
#include "spawn-internal.h"
#include "ctx-internal.h"
#include "keeper-proto.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct libdm__helper libdm__helper;

struct libdm__helper {
    char *path;          /* the keeper binary it runs (LIBDM_KEEPER when exec'd) */
    int sock;
    int pidfd;
    int pid;
    unsigned gen;
    unsigned live;       /* keepers it forked for us that have not ended */
    bool ready;          /* it said "ready": it reads requests */
    bool dead;           /* its socket closed */
    char *error;
    int error_errno;     /* negative */
    libdm__watch *watch;
};

/* LIBDM_KEEPER_HELPER: 0 never (a keeper exec'd per DM, as before), 1
 * always; by default when the context has a helper, or another of its
 * keepers runs (a DM running or starting: more are likely, and the helper
 * stays as long as they do). A context that starts one DM at a time with
 * nothing running (dmctl, say) execs each keeper: a helper's exec would
 * come on top of the keeper's fork. */
bool libdm__helper_enabled(libdm_ctx *ctx)
{
    const char *e = getenv("LIBDM_KEEPER_HELPER");

    if (e && !strcmp(e, "0"))
        return false;
    return (e && !strcmp(e, "1")) || ctx->keepers_live > 0 ||
           (ctx->helper && !ctx->helper->dead);
}

/* Reads what the helper said, without waiting. */
static void helper_read(libdm_ctx *ctx, libdm__helper *h)
{
    char msg[LIBDM__KEEPER_MSG_MAX];
    int fd, n;

    while (!h->dead) {
        n = libdm__kp_recv(h->sock, msg, sizeof(msg), &fd);
        if (fd >= 0)
            close(fd);
        if (n == -EAGAIN || n == -EINTR)
            return;
        if (n <= 0) {
            /* It exited (idle, or killed): no fd and no process of it stays;
             * what it said is kept for the starts it leaves. */
            h->dead = true;
            libdm__watch_del(h->watch);
            h->watch = NULL;
            libdm__close(&h->sock);
            if (h->pidfd >= 0 && libdm__reap_later(ctx, h->pidfd, true) < 0)
                LIBDM__WARN(ctx, "libdm-keeper helper (pid %d) will not be reaped", h->pid);
            h->pidfd = -1;
            LIBDM__DEBUG(ctx, "libdm-keeper helper (pid %d) has exited", h->pid);
            return;
        }
        if (!strcmp(msg, "ready")) {
            h->ready = true;
        } else if (!strncmp(msg, "error ", 6)) {
            int err = 0, skip = 0;

            /* "error ERRNO TEXT" from libdm's child (its exec failed). */
            if (sscanf(msg + 6, "%d %n", &err, &skip) != 1 || err <= 0 || skip == 0)
                err = 0, skip = 0;
            h->error_errno = err ? -err : -ECHILD;
            free(h->error);
            h->error = strdup(msg + 6 + skip);
        }
    }
}

static void on_helper(libdm_ctx *ctx, int fd, short revents, void *user)
{
    helper_read(ctx, user);
}

/* Lets it go: it exits once its keepers have (the context reaps it; at
 * ctx_free a bounded wait if none of its keepers is left). */
static void helper_retire(libdm_ctx *ctx, libdm__helper *h)
{
    LIBDM__DEBUG(ctx, "libdm-keeper helper (pid %d) let go (%u keepers)", h->pid, h->live);
    libdm__watch_del(h->watch);
    libdm__close(&h->sock);
    if (h->pidfd >= 0 && libdm__reap_later(ctx, h->pidfd, h->dead || h->live == 0) < 0)
        LIBDM__WARN(ctx, "libdm-keeper helper (pid %d) will not be reaped", h->pid);
    free(h->path);
    free(h->error);
    free(h);
}

void libdm__helper_free(libdm_ctx *ctx)
{
    if (ctx->helper)
        helper_retire(ctx, ctx->helper);
    ctx->helper = NULL;
}

static int helper_start(libdm_ctx *ctx, const char *path, libdm__helper **ret)
{
    char *argv[] = { (char *)path, "--helper", NULL }, **env = libdm__keeper_env();
    int sp[2] = { -1, -1 }, src[LIBDM__HELPER_FD + 1] = { -1, -1, -1, -1 }, r;
    libdm__helper *h = calloc(1, sizeof(*h));
    pid_t pid;

    if (!h || !env || !(h->path = strdup(path))) {
        r = -ENOMEM;
        goto out;
    }
    h->sock = h->pidfd = -1;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
        r = -errno;
        goto out;
    }
    /* Its fds 1 and 2: /dev/null (each keeper gets its DM's log). */
    src[1] = src[2] = open("/dev/null", O_WRONLY | O_CLOEXEC);
    src[LIBDM__HELPER_FD] = fcntl(sp[1], F_DUPFD_CLOEXEC, LIBDM__HELPER_FD + 1);
    if (src[1] < 0 || src[LIBDM__HELPER_FD] < 0) {
        r = -errno;
        goto out;
    }
    /* Never in a new PID namespace of its own: as that namespace's init its
     * death would take every keeper with it. */
    pid = libdm__spawn_exec(ctx, src, LIBDM__HELPER_FD + 1, LIBDM__HELPER_FD, argv, env, false,
                            &h->pidfd, NULL);
    if (pid < 0) {
        r = pid;
        goto out;
    }
    h->pid = pid;
    h->sock = sp[0];
    sp[0] = -1;
    h->gen = ++ctx->helper_gen;
    if (libdm__set_nonblock(h->sock, true) < 0 ||
        (r = libdm__watch_add(ctx, h->sock, POLLIN, on_helper, h, &h->watch)) < 0) {
        r = -EIO;
        h->dead = true;
        (void)libdm__pidfd_signal(h->pidfd, SIGKILL);
        helper_retire(ctx, h);
        h = NULL;
        goto out;
    }
    LIBDM__DEBUG(ctx, "libdm-keeper helper is pid %d", pid);
    *ret = h;
    h = NULL;
    r = 0;
out:
    if (h) {
        free(h->path);
        libdm__close(&h->pidfd);
        free(h);
    }
    libdm__close(&sp[0]);
    libdm__close(&sp[1]);
    libdm__close(&src[1]);
    libdm__close(&src[LIBDM__HELPER_FD]);
    libdm_strv_free(env);
    return r;
}

/* The context's helper, running the keeper at @path: a dead one, or one
 * of another binary (LIBDM_KEEPER changed), is replaced. */
static libdm__helper *helper_get(libdm_ctx *ctx, const char *path)
{
    libdm__helper *h = ctx->helper;

    if (h)
        helper_read(ctx, h);
    if (h && (h->dead || strcmp(h->path, path) != 0)) {
        helper_retire(ctx, h);
        ctx->helper = h = NULL;
    }
    if (!h && helper_start(ctx, path, &h) < 0)
        return NULL;
    ctx->helper = h;
    return h;
}

static int send_request(libdm__helper *h, const char *buf, size_t len, const int *fds, int n)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * LIBDM__HELPER_MAX_FDS)];
    } control;
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n) };
    struct cmsghdr *c;

    if (h->sock < 0)
        return -EPIPE;
    memset(&control, 0, sizeof(control));
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
    return sendmsg(h->sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 ? -errno : 0;
}

int libdm__helper_submit(libdm_ctx *ctx, char **argv, const int *src, int nfds)
{
    libdm__helper *h;
    size_t len = 0;
    char *buf, *p;
    int r = -EPIPE;

    if (nfds - 1 > LIBDM__HELPER_MAX_FDS || nfds < 2)
        return -E2BIG;
    for (size_t i = 0; argv[i]; i++)
        len += strlen(argv[i]) + 1;
    if (len > LIBDM__HELPER_MSG_MAX)
        return -E2BIG;
    buf = p = malloc(len);
    if (!buf)
        return -ENOMEM;
    for (size_t i = 0; argv[i]; i++)
        p = stpcpy(p, argv[i]) + 1;
    /* A helper that went idle refuses requests (EPIPE): a new one, once. */
    for (int attempt = 0; attempt < 2 && r == -EPIPE; attempt++) {
        h = helper_get(ctx, argv[0]);
        if (!h) {
            r = -ECHILD;
            break;
        }
        r = send_request(h, buf, len, src + 1, nfds - 1);
        if (r == 0)
            h->live++;
        else if (r == -EPIPE || r == -ECONNREFUSED || r == -ENOTCONN)
            h->dead = true; /* exiting: replaced by the next helper_get */
    }
    free(buf);
    return r;
}

unsigned libdm__helper_gen(libdm_ctx *ctx)
{
    return ctx->helper ? ctx->helper->gen : 0;
}

void libdm__helper_keeper_done(libdm_ctx *ctx, unsigned gen)
{
    if (ctx->helper && ctx->helper->gen == gen && ctx->helper->live > 0)
        ctx->helper->live--;
}

bool libdm__helper_starting(libdm_ctx *ctx, unsigned gen)
{
    libdm__helper *h = ctx->helper;

    if (!h || h->gen != gen)
        return false;
    helper_read(ctx, h);
    return !h->ready && !h->dead;
}

int libdm__helper_kill(libdm_ctx *ctx)
{
    libdm__helper *h = ctx->helper;

    return h && h->pidfd >= 0 ? libdm__pidfd_signal(h->pidfd, SIGKILL) : -ESRCH;
}

int libdm__helper_pidfd_dup(libdm_ctx *ctx)
{
    libdm__helper *h = ctx->helper;

    return h && h->pidfd >= 0 ? fcntl(h->pidfd, F_DUPFD_CLOEXEC, 3) : -1;
}

const char *libdm__helper_error(libdm_ctx *ctx, int *ret_errno)
{
    *ret_errno = -ECHILD;
    if (!ctx->helper)
        return NULL;
    helper_read(ctx, ctx->helper);
    if (ctx->helper->error)
        *ret_errno = ctx->helper->error_errno;
    return ctx->helper->error;
}
