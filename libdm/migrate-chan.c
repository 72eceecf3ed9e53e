/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control channel of a migration between two hosts: one JSON object
 * per line (at most LIBDM__MCHAN_MAX_LINE bytes), over any pair of fds the
 * caller gives (a transport command's stdio, one socket for both ways),
 * driven by the context's loop: nothing here blocks.
 *
 * DO NOT TRUST THE PEER: a line is bounded, parsed with the bounded JSON
 * parser, and must be an object with a string "phase".
 *
 * Reading: bytes are read whenever the input is readable, so that the
 * peer's going away (EOF, an error) is seen at once even while nothing is
 * expected (libdm__mchan_gone(); the callback runs with -ECONNRESET). A
 * line is delivered only to an armed receive (libdm__mchan_recv(), one
 * line each); lines that arrive before stay buffered. A full buffer stops
 * reading until a receive takes a line.
 *
 * Writing: libdm__mchan_send() queues the line and writes what the fd
 * takes now; the rest goes out when it is writable. A write error marks
 * the channel gone.
 */
#include "migrate-internal.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct libdm__mchan {
    libdm_ctx *ctx;
    int in, out;                 /* owned; -1 closed; in == out: one socket */
    libdm__watch *win, *wout;    /* wout is NULL when in == out */
    char buf[LIBDM__MCHAN_MAX_LINE + 1];
    size_t len;
    char *obuf;                  /* queued output */
    size_t olen, ooff;
    bool eof;
    int err;                     /* the first failure (gone), or 0 */
    bool armed;                  /* a receive waits for a line */
    bool gone_told;              /* the callback heard about the failure */
    libdm__mchan_fn *fn;
    void *user;
    libdm__timer deliver;        /* a buffered line to an armed receive */
};

static void update_events(libdm__mchan *ch);

static void fail(libdm__mchan *ch, int err)
{
    if (!ch->err)
        ch->err = err;
    update_events(ch);
}

static short in_events(const libdm__mchan *ch)
{
    if (ch->in < 0 || ch->eof || ch->err || ch->len >= sizeof(ch->buf) - 1)
        return 0;
    return POLLIN;
}

static short out_events(const libdm__mchan *ch)
{
    return ch->out >= 0 && !ch->err && ch->ooff < ch->olen ? POLLOUT : 0;
}

static void update_events(libdm__mchan *ch)
{
    /* A pipe whose writer closed reports POLLHUP whatever the events:
     * once nothing more can come (and nothing waits to go out on it), the
     * watch goes, or the loop would spin on it. */
    if (ch->win && !in_events(ch) && (ch->eof || ch->err) &&
        (ch->in != ch->out || !out_events(ch))) {
        libdm__watch_del(ch->win);
        ch->win = NULL;
    }
    if (ch->wout && ch->err) {
        libdm__watch_del(ch->wout);
        ch->wout = NULL;
    }
    if (ch->win && ch->in == ch->out)
        (void)libdm__watch_set_events(ch->win, in_events(ch) | out_events(ch));
    else {
        if (ch->win)
            (void)libdm__watch_set_events(ch->win, in_events(ch));
        if (ch->wout)
            (void)libdm__watch_set_events(ch->wout, out_events(ch));
    }
}

/* A line of the buffer as a JSON object with a string "phase". */
static int parse_line(const char *line, size_t len, libdm_json **ret)
{
    const char *why = NULL;
    libdm_json *v = NULL;

    if (libdm__json_parse_bounded(line, len, &libdm__json_default_limits, &v, &why) < 0)
        return -EPROTO;
    if (libdm_json_get_type(v) != LIBDM_JSON_OBJECT || !libdm__json_get_str(v, "phase")) {
        libdm_json_free(v);
        return -EPROTO;
    }
    *ret = v;
    return 0;
}

/* Takes the next complete line: 1 and *ret, 0 none yet, or a negative
 * errno (a malformed or overlong line). */
static int take_line(libdm__mchan *ch, libdm_json **ret)
{
    char *nl = memchr(ch->buf, '\n', ch->len);
    size_t used;
    int r;

    if (!nl)
        return ch->len >= sizeof(ch->buf) - 1 ? -E2BIG : 0;
    used = (size_t)(nl - ch->buf) + 1;
    r = parse_line(ch->buf, used - 1, ret);
    memmove(ch->buf, ch->buf + used, ch->len - used);
    ch->len -= used;
    update_events(ch);
    return r < 0 ? r : 1;
}

/* Delivers what an armed receive waits for: a line, else the failure. */
static void deliver(libdm__mchan *ch)
{
    libdm_json *msg = NULL;
    int r;

    if (ch->armed) {
        r = take_line(ch, &msg);
        if (r == 0 && !ch->eof && !ch->err)
            return;
        ch->armed = false;
        if (r > 0) {
            ch->fn(ch, msg, 0, ch->user);
            return;
        }
        if (r < 0)
            fail(ch, r);
    }
    if ((ch->eof || ch->err) && !ch->gone_told) {
        ch->gone_told = true;
        ch->armed = false;
        ch->fn(ch, NULL, ch->err ? ch->err : -ECONNRESET, ch->user);
    }
}

static void on_deliver(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    (void)ctx;
    (void)t;
    deliver(user);
}

static void read_some(libdm__mchan *ch)
{
    ssize_t n = read(ch->in, ch->buf + ch->len, sizeof(ch->buf) - 1 - ch->len);

    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n < 0)
        fail(ch, -errno);
    else if (n == 0)
        ch->eof = true;
    else
        ch->len += (size_t)n;
    update_events(ch);
}

static void write_some(libdm__mchan *ch)
{
    ssize_t n = write(ch->out, ch->obuf + ch->ooff, ch->olen - ch->ooff);

    if (n < 0 && errno != EINTR && errno != EAGAIN)
        fail(ch, errno == EPIPE ? -ECONNRESET : -errno);
    else if (n > 0)
        ch->ooff += (size_t)n;
    if (ch->ooff >= ch->olen) {
        free(ch->obuf);
        ch->obuf = NULL;
        ch->olen = ch->ooff = 0;
    }
    update_events(ch);
}

static void on_fd(libdm_ctx *ctx, int fd, short revents, void *user)
{
    libdm__mchan *ch = user;

    (void)ctx;
    if ((revents & POLLOUT) && fd == ch->out && ch->olen)
        write_some(ch);
    else if ((revents & (POLLERR | POLLHUP)) && fd == ch->out && fd != ch->in)
        fail(ch, -ECONNRESET);
    if ((revents & (POLLIN | POLLHUP | POLLERR)) && fd == ch->in && in_events(ch))
        read_some(ch);
    deliver(ch);
}

int libdm__mchan_new(libdm_ctx *ctx, int in, int out, libdm__mchan_fn *fn, void *user,
                     libdm__mchan **ret)
{
    libdm__mchan *ch = calloc(1, sizeof(*ch));
    int r = ch ? 0 : -ENOMEM;

    if (r == 0 && ((in >= 0 && (libdm__set_nonblock(in, true) < 0 ||
                                libdm__set_cloexec(in, true) < 0)) ||
                   (out >= 0 && (libdm__set_nonblock(out, true) < 0 ||
                                 libdm__set_cloexec(out, true) < 0))))
        r = -errno;
    if (r < 0) {
        free(ch);
        return r;
    }
    *ch = (libdm__mchan){ .ctx = ctx, .in = in, .out = out, .fn = fn, .user = user };
    libdm__timer_init(&ch->deliver, on_deliver, ch);
    if (in >= 0)
        r = libdm__watch_add(ctx, in, POLLIN, on_fd, ch, &ch->win);
    if (r == 0 && out >= 0 && out != in) {
        r = libdm__watch_add(ctx, out, 0, on_fd, ch, &ch->wout);
        /* A regular file (a reader's log of the lines) cannot be polled,
         * and never makes a write wait: written at once, unwatched. */
        if (r == -EPERM)
            r = 0;
    }
    if (r < 0) {
        ch->in = ch->out = -1;   /* the caller keeps its fds */
        libdm__mchan_free(ch);
        return r;
    }
    *ret = ch;
    return 0;
}

libdm__mchan *libdm__mchan_free(libdm__mchan *ch)
{
    if (!ch)
        return NULL;
    libdm__timer_disarm(ch->ctx, &ch->deliver);
    if (ch->win)
        libdm__watch_del(ch->win);
    if (ch->wout)
        libdm__watch_del(ch->wout);
    if (ch->out != ch->in)
        libdm__close(&ch->out);
    libdm__close(&ch->in);
    free(ch->obuf);
    free(ch);
    return NULL;
}

void libdm__mchan_close_out(libdm__mchan *ch)
{
    if (ch->out < 0)
        return;
    if (ch->out == ch->in) {
        (void)shutdown(ch->out, SHUT_WR);
        ch->out = -1;
    } else {
        if (ch->wout)
            libdm__watch_del(ch->wout);
        ch->wout = NULL;
        libdm__close(&ch->out);
    }
    free(ch->obuf);
    ch->obuf = NULL;
    ch->olen = ch->ooff = 0;
    update_events(ch);
}

int libdm__mchan_send(libdm__mchan *ch, libdm_json *msg)
{
    char *text = NULL, *q;
    size_t len;
    libdm_json *v;
    int r = msg ? 0 : -ENOMEM;

    /* Every message says the protocol's version (last: older peers and
     * readers of the lines find the members where they were). */
    if (r == 0 && !libdm_json_object_get(msg, "version"))
        r = (v = libdm_json_new_int(LIBDM_MIGRATE_PROTO_VERSION)) &&
            libdm_json_object_add(msg, "version", v) >= 0 ? 0 : -ENOMEM;
    if (r == 0)
        r = libdm_json_to_string(msg, 0, &text);
    libdm_json_free(msg);
    if (r < 0)
        return r;
    len = strlen(text);
    if (ch->out < 0 || ch->err)
        r = -ECONNRESET;
    else if (len >= LIBDM__MCHAN_MAX_LINE)
        r = -E2BIG;
    else if (!(q = realloc(ch->obuf, ch->olen + len + 1)))
        r = -ENOMEM;
    else {
        memcpy(q + ch->olen, text, len);
        q[ch->olen + len] = '\n';
        ch->obuf = q;
        ch->olen += len + 1;
        write_some(ch);
        r = ch->err ? ch->err : 0;
    }
    free(text);
    return r;
}

int libdm__mchan_recv(libdm__mchan *ch)
{
    if (ch->armed)
        return -EBUSY;
    ch->armed = true;
    ch->gone_told = false;
    return libdm__defer(ch->ctx, &ch->deliver);
}

void libdm__mchan_disarm(libdm__mchan *ch)
{
    ch->armed = false;
    libdm__timer_disarm(ch->ctx, &ch->deliver);
}

bool libdm__mchan_gone(const libdm__mchan *ch)
{
    return !ch || ch->in < 0 || ch->eof || ch->err;
}

bool libdm__mchan_flushed(const libdm__mchan *ch)
{
    return !ch || ch->olen == 0 || ch->err || ch->out < 0;
}

const char *libdm__mchan_strerror(int err)
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
