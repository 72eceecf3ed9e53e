/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmd: an example daemon that manages device models from an sd-event loop,
 * with libdm driven through libdm/adapters/sd-event.h (one fd and a timer;
 * no thread, no blocking libdm call while serving).
 *
 *     dmd --socket PATH [--store DIR] [--qemu PATH]
 *
 * Line protocol on the unix socket PATH, one command per line, any number
 * of clients; replies arrive when the operation completes, so a client may
 * pipeline commands:
 *     start NAME     ->  ok start NAME pid PID       | error start NAME: why
 *     resume NAME    ->  ok resume NAME               | error resume NAME: why
 *     stop NAME      ->  ok stop NAME                 | error stop NAME: why
 *     list           ->  NAME STATE lines, then "ok list COUNT"
 * SIGTERM or SIGINT: the DMs still managed are stopped, then dmd exits 0.
 * Restarted after a crash (SIGKILL), dmd finds the DMs it left running with
 * libdm_dm_list_async() and libdm_dm_attach_async(), from the loop, with no
 * blocking call, and manages them again; the records of DMs that died
 * meanwhile are removed with libdm_dm_forget_async().
 */
#define _GNU_SOURCE 1 /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <libdm/libdm.h>
#include <libdm/adapters/sd-event.h>

typedef struct client client;

typedef struct managed {
    char *name;
    libdm_dm *dm;
    libdm_dm_config *cfg;
    client *waiter;          /* who asked for the operation in progress */
    const char *op;          /* "start", "resume", "stop", "attach"; NULL when idle */
    struct managed *next;
} managed;

struct client {
    int fd;
    sd_event_source *src;
    char buf[1024];
    size_t len;
    unsigned refs;           /* the connection + each operation waiting */
    bool eof;                /* the client shut its side: close once answered */
};

typedef struct daemon_state {
    sd_event *event;
    libdm_ctx *ctx;
    libdm_sdevent *adapter;
    const char *qemu;
    managed *dms;
} daemon_state;

static daemon_state D;

static void client_close(client *c);

static void client_unref(client *c)
{
    if (--c->refs > 0) {
        /* Only the connection's own reference left: all answered. */
        if (c->refs == 1 && c->eof && c->fd >= 0)
            client_close(c);
        return;
    }
    free(c);
}

/* Replies are short lines: a blocking send on a client that does not read
 * would stall the daemon, so send without waiting and drop on failure. */
static void reply(client *c, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    if (!c || c->fd < 0)
        return;
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    (void)send(c->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static managed *find(const char *name)
{
    for (managed *m = D.dms; m; m = m->next)
        if (!strcmp(m->name, name))
            return m;
    return NULL;
}

static void forget(managed *m)
{
    managed **pp = &D.dms;

    while (*pp != m)
        pp = &(*pp)->next;
    *pp = m->next;
    libdm_dm_release(m->dm);
    libdm_dm_config_free(m->cfg);
    free(m->name);
    free(m);
}

static void finish_op(managed *m, int status)
{
    const char *err = libdm_dm_last_error(m->dm);
    const char *op = m->op;
    client *c = m->waiter;

    m->op = NULL;
    m->waiter = NULL;
    if (status < 0)
        reply(c, "error %s %s: %s", op, m->name, err ? err : strerror(-status));
    else if (!strcmp(op, "start"))
        reply(c, "ok start %s pid %d", m->name, libdm_dm_get_pid(m->dm));
    else
        reply(c, "ok %s %s", op, m->name);
    if (c)
        client_unref(c);
    if (!strcmp(op, "attach"))
        fprintf(stderr, "dmd: rediscovered %s: %s\n", m->name,
                status < 0 ? (err ? err : strerror(-status))
                           : libdm_dm_state_to_string(libdm_dm_get_state(m->dm)));
    /* A DM that failed to start or to be re-attached, or was stopped, is
     * no longer managed. */
    if ((status < 0 && (!strcmp(op, "start") || !strcmp(op, "attach"))) || !strcmp(op, "stop"))
        forget(m);
}

static void on_done(libdm_dm *dm, int status, void *userdata)
{
    (void)dm;
    finish_op(userdata, status);
}

static void begin_op(managed *m, client *c, const char *op)
{
    m->op = op;
    m->waiter = c;
    c->refs++;
}

static void cmd_start(client *c, const char *name)
{
    managed *m;
    int r;

    if (find(name)) {
        reply(c, "error start %s: already managed", name);
        return;
    }
    m = calloc(1, sizeof(*m));
    if (!m || !(m->name = strdup(name))) {
        free(m);
        reply(c, "error start %s: %s", name, strerror(ENOMEM));
        return;
    }
    r = libdm_dm_config_new(&m->cfg);
    if (r >= 0)
        r = libdm_dm_config_set_name(m->cfg, name);
    if (r >= 0 && D.qemu)
        r = libdm_dm_config_set_qemu_path(m->cfg, D.qemu);
    if (r >= 0)
        r = libdm_dm_start_async(D.ctx, m->cfg, on_done, m, &m->dm);
    if (r < 0) {
        reply(c, "error start %s: %s", name, strerror(-r));
        libdm_dm_config_free(m->cfg);
        free(m->name);
        free(m);
        return;
    }
    m->next = D.dms;
    D.dms = m;
    begin_op(m, c, "start");
}

static void cmd_op(client *c, const char *op, const char *name)
{
    managed *m = find(name);
    int r;

    op = !strcmp(op, "resume") ? "resume" : "stop"; /* static: outlives the line */
    if (!m) {
        reply(c, "error %s %s: not managed", op, name);
        return;
    }
    if (m->op) {
        reply(c, "error %s %s: busy (%s in progress)", op, name, m->op);
        return;
    }
    r = !strcmp(op, "resume") ? libdm_dm_resume_async(m->dm, 10000, on_done, m)
                              : libdm_dm_stop_async(m->dm, 0, 10000, on_done, m);
    if (r < 0) {
        reply(c, "error %s %s: %s", op, name, strerror(-r));
        return;
    }
    begin_op(m, c, op);
}

static void cmd_list(client *c)
{
    unsigned n = 0;

    for (managed *m = D.dms; m; m = m->next, n++)
        reply(c, "%s %s", m->name, libdm_dm_state_to_string(libdm_dm_get_state(m->dm)));
    reply(c, "ok list %u", n);
}

/* ---- rediscovery after a restart: no blocking call ---- */

static void on_forgotten(libdm_ctx *ctx, int status, void *userdata)
{
    (void)ctx;
    fprintf(stderr, "dmd: forgot %s: %s\n", (char *)userdata,
            status < 0 ? strerror(-status) : "ok");
    free(userdata);
}

static void on_listed(libdm_ctx *ctx, int status, libdm_dm_info *infos, size_t count,
                      void *userdata)
{
    unsigned found = 0;

    (void)userdata;
    if (status < 0) {
        fprintf(stderr, "dmd: cannot list the store: %s\n", strerror(-status));
        return;
    }
    for (size_t i = 0; i < count; i++) {
        char *name;
        managed *m;

        if (find(infos[i].name))
            continue;
        if (!infos[i].alive) {
            /* Died while dmd was away: its record and files go. */
            name = strdup(infos[i].name);
            if (name && libdm_dm_forget_async(ctx, name, on_forgotten, name, free) < 0)
                free(name);
            continue;
        }
        m = calloc(1, sizeof(*m));
        if (!m || !(m->name = strdup(infos[i].name))) {
            free(m);
            continue;
        }
        if (libdm_dm_attach_async(ctx, m->name, 10000, on_done, m, &m->dm) < 0) {
            fprintf(stderr, "dmd: cannot re-attach %s\n", m->name);
            free(m->name);
            free(m);
            continue;
        }
        m->op = "attach";
        m->next = D.dms;
        D.dms = m;
        found++;
    }
    libdm_dm_info_free(infos, count);
    fprintf(stderr, "dmd: rediscovery: %u running\n", found);
}

static void handle_line(client *c, char *line)
{
    char verb[16], name[80];
    int n = sscanf(line, "%15s %79s", verb, name);

    if (n == 1 && !strcmp(verb, "list"))
        cmd_list(c);
    else if (n == 2 && !strcmp(verb, "start"))
        cmd_start(c, name);
    else if (n == 2 && (!strcmp(verb, "resume") || !strcmp(verb, "stop")))
        cmd_op(c, verb, name);
    else if (n >= 1)
        reply(c, "error usage: start NAME | resume NAME | stop NAME | list");
}

static void client_close(client *c)
{
    c->src = sd_event_source_disable_unref(c->src);
    close(c->fd);
    c->fd = -1;   /* operations in flight reply to nobody */
    client_unref(c);
}

static int on_client(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    client *c = userdata;
    ssize_t n;
    char *nl;

    (void)s;
    (void)revents;
    n = read(fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n < 0) {
        client_close(c);
        return 0;
    }
    if (n == 0) {
        /* Half-closed (socat, nc -N): answer what is in flight, then close. */
        c->eof = true;
        if (c->refs == 1)
            client_close(c);
        else
            sd_event_source_set_enabled(c->src, SD_EVENT_OFF);
        return 0;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    while ((nl = strchr(c->buf, '\n'))) {
        *nl = '\0';
        handle_line(c, c->buf);
        c->len -= (size_t)(nl + 1 - c->buf);
        memmove(c->buf, nl + 1, c->len + 1);
    }
    if (c->len == sizeof(c->buf) - 1) {
        reply(c, "error line too long");
        client_close(c);
    }
    return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    client *c;

    (void)s;
    (void)revents;
    (void)userdata;
    if (cfd < 0)
        return 0;
    c = calloc(1, sizeof(*c));
    if (!c) {
        close(cfd);
        return 0;
    }
    c->fd = cfd;
    c->refs = 1;
    if (sd_event_add_io(D.event, &c->src, cfd, EPOLLIN, on_client, c) < 0) {
        close(cfd);
        free(c);
    }
    return 0;
}

static int listen_on(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "store", required_argument, NULL, 'd' },
        { "qemu", required_argument, NULL, 'q' },
        { NULL, 0, NULL, 0 },
    };
    const char *sock = NULL, *store = NULL;
    sd_event_source *lsrc = NULL;
    sigset_t mask;
    int opt, lfd, r;

    while ((opt = getopt_long(argc, argv, "s:d:q:", opts, NULL)) != -1) {
        switch (opt) {
        case 's': sock = optarg; break;
        case 'd': store = optarg; break;
        case 'q': D.qemu = optarg; break;
        default:
            fprintf(stderr, "usage: dmd --socket PATH [--store DIR] [--qemu PATH]\n");
            return 2;
        }
    }
    if (!sock) {
        fprintf(stderr, "usage: dmd --socket PATH [--store DIR] [--qemu PATH]\n");
        return 2;
    }
    /* A DM held costs this process a few fds (bench/README.md): a daemon
     * meant to hold many raises its own soft RLIMIT_NOFILE to the hard
     * limit, as libdm never changes process-wide limits (it uses no
     * select(), so fds past 1,024 are fine). Failure is not fatal: the
     * DMs that fit still run and a start past the limit says EMFILE. */
    {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                fprintf(stderr, "dmd: cannot raise RLIMIT_NOFILE: %s\n", strerror(errno));
        }
    }
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);

    if ((r = sd_event_default(&D.event)) < 0 ||
        (r = libdm_ctx_new(NULL, &D.ctx)) < 0 ||
        (store && (r = libdm_ctx_set_store(D.ctx, store)) < 0) ||
        (r = libdm_sdevent_attach(D.ctx, D.event, &D.adapter)) < 0) {
        fprintf(stderr, "dmd: setup: %s\n", strerror(-r));
        return 1;
    }
    lfd = listen_on(sock);
    if (lfd < 0 || sd_event_add_io(D.event, &lsrc, lfd, EPOLLIN, on_accept, NULL) < 0 ||
        sd_event_add_signal(D.event, NULL, SIGTERM, NULL, NULL) < 0 ||
        sd_event_add_signal(D.event, NULL, SIGINT, NULL, NULL) < 0) {
        fprintf(stderr, "dmd: cannot listen on %s\n", sock);
        return 1;
    }
    /* What a previous dmd left running: found from the loop. */
    if ((r = libdm_dm_list_async(D.ctx, on_listed, NULL, NULL)) < 0) {
        fprintf(stderr, "dmd: cannot list the store: %s\n", strerror(-r));
        return 1;
    }
    fprintf(stderr, "dmd: listening on %s\n", sock);
    r = sd_event_loop(D.event);

    /* Shutting down: stop what is still managed (blocking is fine now). */
    sd_event_source_disable_unref(lsrc);
    close(lfd);
    unlink(sock);
    D.adapter = libdm_sdevent_detach(D.adapter);
    while (D.dms) {
        managed *m = D.dms;
        if (m->op && m->waiter)
            client_unref(m->waiter);
        m->waiter = NULL;
        (void)libdm_dm_stop(m->dm, 0, 10000);
        forget(m);
    }
    libdm_ctx_free(D.ctx);
    sd_event_unref(D.event);
    fprintf(stderr, "dmd: exiting\n");
    return r < 0 ? 1 : 0;
}
