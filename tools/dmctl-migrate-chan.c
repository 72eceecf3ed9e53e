/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl migrate: the control channel (one JSON object per line), its
 * messages and the children (see dmctl-migrate.h).
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

/* ============================ control channel =========================== */


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

/* What a receiver keeps back from the sender's deadline, so that it stops
 * obeying before the sender stops waiting (issue 22, 6). */
uint64_t obey_margin_ms(int64_t timeout_ms)
{
    uint64_t m = (uint64_t)timeout_ms / 4;

    return m > 2000 ? 2000 : m;
}

uint64_t realtime_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Set once the source's migration completed (or its QEMU is gone): a
 * signal (^C, migrate-cancel) can no longer cancel anything, so the
 * channel's waits no longer end on one and the outcome decides the exit
 * status (issue 22, 11). */
bool too_late_to_cancel;

/* Waits until @fd is ready for @events (or hung up); -ETIMEDOUT, -EINTR. */
int wait_fd(int fd, short events, uint64_t deadline)
{
    struct pollfd p = { .fd = fd, .events = events };
    int r;

    for (;;) {
        r = poll(&p, 1, remaining_ms(deadline));
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
        if (dmctl_signal_received() && !too_late_to_cancel)
            return -EINTR;
    }
}

void chan_init(chan *ch, int in, int out)
{
    ch->in = in;
    ch->out = out;
    ch->len = 0;
    ch->eof = false;
}

void chan_close_out(chan *ch)
{
    if (ch->out >= 0)
        close(ch->out);
    ch->out = -1;
}

void chan_close(chan *ch)
{
    chan_close_out(ch);
    if (ch->in >= 0)
        close(ch->in);
    ch->in = -1;
}

/* One read() into the buffer; the fd must be readable (or hung up). */
static int chan_read_some(chan *ch)
{
    ssize_t n;

    if (ch->len >= sizeof(ch->buf))
        return -E2BIG;
    n = read(ch->in, ch->buf + ch->len, sizeof(ch->buf) - ch->len);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -errno;
    if (n == 0)
        ch->eof = true;
    ch->len += (size_t)n;
    return 0;
}

/* Without blocking: has the peer closed the channel (or broken it)? Data
 * that arrived meanwhile stays buffered for chan_recv(). */
bool chan_peer_gone(chan *ch)
{
    struct pollfd p = { .fd = ch->in, .events = POLLIN };

    if (ch->eof || ch->in < 0)
        return true;
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (ch->len >= sizeof(ch->buf))
        return false;        /* a full buffer: chan_recv() reports it */
    return chan_read_some(ch) < 0 || ch->eof;
}

/* A line of the buffer as a JSON object with a string "phase". */
static int chan_parse(const char *line, size_t len, libdm_json **ret)
{
    libdm_json *v = NULL;
    int r = libdm_json_parse(line, len, &v);

    if (r < 0)
        return -EPROTO;
    if (libdm_json_get_type(v) != LIBDM_JSON_OBJECT ||
        !libdm_json_get_string(libdm_json_object_get(v, "phase"))) {
        libdm_json_free(v);
        return -EPROTO;
    }
    *ret = v;
    return 0;
}

/* Receives the next line: 0, -ECONNRESET (closed), -ETIMEDOUT, -E2BIG,
 * -EPROTO (not a protocol object), -EINTR or another negative errno. */
int chan_recv(chan *ch, uint64_t deadline, libdm_json **ret)
{
    char *nl;
    size_t used;
    int r;

    for (;;) {
        nl = memchr(ch->buf, '\n', ch->len);
        if (nl) {
            used = (size_t)(nl - ch->buf) + 1;
            r = chan_parse(ch->buf, used - 1, ret);
            memmove(ch->buf, ch->buf + used, ch->len - used);
            ch->len -= used;
            return r;
        }
        if (ch->len >= sizeof(ch->buf))
            return -E2BIG;
        if (ch->eof)
            return -ECONNRESET;
        r = wait_fd(ch->in, POLLIN, deadline);
        if (r == 0)
            r = chan_read_some(ch);
        if (r < 0)
            return r;
    }
}

static int write_all(int fd, const char *p, size_t len, uint64_t deadline)
{
    ssize_t n;
    int r;

    while (len > 0) {
        r = wait_fd(fd, POLLOUT, deadline);
        if (r < 0)
            return r;
        n = write(fd, p, len);
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            return errno == EPIPE ? -ECONNRESET : -errno;
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        }
    }
    return 0;
}

/* Sends @msg (consumed) as one line. */
int chan_send(chan *ch, libdm_json *msg, uint64_t deadline)
{
    char *text = NULL;
    size_t len;
    int r = msg ? libdm_json_to_string(msg, 0, &text) : -ENOMEM;

    libdm_json_free(msg);
    if (r < 0)
        return r;
    if (ch->out < 0) {
        r = -ECONNRESET;
    } else if ((len = strlen(text)) >= CHAN_MAX_LINE) {
        r = -E2BIG;
    } else {
        text[len] = '\n';    /* replaces the NUL: written by length */
        r = write_all(ch->out, text, len + 1, deadline);
    }
    free(text);
    return r;
}

const char *chan_strerror(int err)
{
    switch (err) {
    case -ECONNRESET:
        return "the control channel closed (the peer is gone)";
    case -ETIMEDOUT:
        return "no answer on the control channel before the deadline (see --timeout)";
    case -E2BIG:
        return "a control line longer than 64 KiB";
    case -EPROTO:
        return "a malformed control line (not a JSON object with a phase)";
    case -EINTR:
        return "interrupted";
    default:
        return strerror(-err);
    }
}

/* {"phase": PHASE} to add members to; NULL on allocation failure. */
libdm_json *msg_new(const char *phase)
{
    libdm_json *o = libdm_json_new_object();

    if (o && !dmctl_json_add_str(o, "phase", phase))
        o = libdm_json_free(o);
    return o;
}

libdm_json *msg_check(libdm_json *o, bool ok)
{
    return ok ? o : libdm_json_free(o);
}

const char *msg_phase(const libdm_json *msg)
{
    return libdm_json_get_string(libdm_json_object_get(msg, "phase"));
}

const char *msg_str(const libdm_json *msg, const char *key)
{
    return libdm_json_get_string(libdm_json_object_get(msg, key));
}

bool msg_bool(const libdm_json *msg, const char *key, bool *ret)
{
    int b;

    if (libdm_json_get_bool(libdm_json_object_get(msg, key), &b) < 0)
        return false;
    *ret = b;
    return true;
}

/* ============================ child processes =========================== */

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

/* The peer's protocol version (1 without one), or -1 if unknown here. */
int peer_version(const libdm_json *msg)
{
    const libdm_json *v = libdm_json_object_get(msg, "version");
    int64_t n;

    if (!v)
        return 1;
    if (libdm_json_get_int(v, &n) < 0 || n < 1 || n > MIG_PROTO_VERSION)
        return -1;
    return (int)n;
}
