/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl migrate-receive: the receiving end of the protocol (see
 * dmctl-migrate.c and dmctl(1), PROTOCOL OF MIGRATE).
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

/* ============================ migrate-receive =========================== */

typedef struct receiver {
    dmctl *d;
    const char *name_opt;    /* --name */
    const char *listen;      /* --listen: "unix" or "tcp:HOST" */
    char *tcp_host;          /* tcp: HOST without brackets */
    bool tcp_v6;             /* tcp: HOST is an IPv6 literal */
    const char *qemu;        /* --qemu */
    libdm_migration *mig;
    bool done;
    int status;
} receiver;

static const struct option receive_opts_table[] = {
    { "name", required_argument, NULL, OPT_NAME },
    { "listen", required_argument, NULL, OPT_LISTEN },
    { "qemu", required_argument, NULL, OPT_QEMU },
    { NULL, 0, NULL, 0 },
};

static int receive_parse(dmctl *d, const dmctl_command *cmd, int argc, char **argv,
                         receiver *rc)
{
    int c, ex = 0;

    while ((c = dmctl_getopt(d, cmd, argc, argv, receive_opts_table, &ex)) != -1) {
        if (c == DMCTL_OPT_STOP)
            return ex;
        if (c == OPT_NAME)
            rc->name_opt = optarg;
        else if (c == OPT_LISTEN)
            rc->listen = optarg;
        else if (c == OPT_QEMU)
            rc->qemu = optarg;
        else
            return dmctl_usage_error(cmd, "unknown option");
    }
    if (argc - optind > 0)
        return dmctl_usage_error(cmd, "too many arguments");
    if (!strcmp(rc->listen, "unix"))
        return 0;
    if (!strncmp(rc->listen, "tcp:", 4))
        rc->tcp_host = dmctl_parse_tcp_host(rc->listen + 4, &rc->tcp_v6);
    if (!rc->tcp_host && errno == ENOMEM)
        return dmctl_usage_error(cmd, "--listen: %s", strerror(ENOMEM));
    if (!rc->tcp_host)
        return dmctl_usage_error(cmd, "invalid --listen value '%s' (unix or tcp:HOST; HOST a "
                                 "host name, an IPv4 address or [IPv6])", rc->listen);
    return 0;
}

/* Takes stdin/stdout as the channel; fds 0 and 1 become /dev/null and
 * stderr so that nothing else (libdm's children included) ever writes a
 * byte to the channel or holds it open. */
static int take_stdio(int *ret_in, int *ret_out)
{
    int in = fcntl(0, F_DUPFD_CLOEXEC, 3);
    int out = fcntl(1, F_DUPFD_CLOEXEC, 3);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

    if (in < 0 || out < 0 || null < 0 || dup2(null, 0) < 0 || dup2(2, 1) < 0) {
        int e = errno;

        if (in >= 0)
            close(in);
        if (out >= 0)
            close(out);
        if (null >= 0)
            close(null);
        return -e;
    }
    close(null);
    *ret_in = in;
    *ret_out = out;
    return 0;
}

/* What libdm's receiver did, as messages on stderr. */
static void on_notify(libdm_migration *mig, const char *what, void *user)
{
    receiver *rc = user;
    const char *name = libdm_migration_get_name(mig);
    const char *why = libdm_migration_get_error(mig);
    const char *phase = libdm_migration_get_failed_phase(mig);

    if (!name)
        name = "migrate-receive";
    if (!strcmp(what, "prepared")) {
        fprintf(stderr, "dmctl: %s: prepared, listening on %s\n", name,
                libdm_migration_get_uri(mig));
    } else if (!strcmp(what, "finished")) {
        fprintf(stderr, "dmctl: %s: migration finished (runstate %s)\n", name,
                libdm_migration_get_runstate(mig));
        if (libdm_migration_get_record_error(mig))
            dmctl_error(name, "the destination runs, but its record could not be updated: %s",
                        libdm_migration_get_record_error(mig));
    } else if (!strcmp(what, "aborted")) {
        dmctl_logger_discard(rc->d->lg);   /* e.g. QEMU quit after the cancel */
        dmctl_error(name, "finish: %s", why ? why : "aborted; destination stopped");
    } else if (!strcmp(what, "error")) {
        dmctl_error(name, "%s failed: %s", phase ? phase : "migrate-receive",
                    why ? why : "unknown error");
    } else if (!strcmp(what, "state")) {
        fprintf(stderr, "dmctl: %s: recover: the destination: %s (%s)\n", name,
                libdm_migration_get_guest(mig), libdm_migration_get_detail(mig)
                ? libdm_migration_get_detail(mig) : "");
    }
}

static void on_received(libdm_migration *mig, int status, void *user)
{
    receiver *rc = user;

    (void)mig;
    rc->done = true;
    rc->status = status;
}

static int receive_run(receiver *rc, int in, int out)
{
    dmctl *d = rc->d;
    int ex = dmctl_open_ctx(d), r;

    if (ex) {
        close(in);
        close(out);
        return ex;
    }
    r = libdm_migration_new_receive(d->ctx, &rc->mig);
    if (r >= 0 && rc->name_opt)
        r = libdm_migration_set_name(rc->mig, rc->name_opt);
    if (r >= 0 && rc->tcp_host)
        r = libdm_migration_set_listen_tcp(rc->mig, rc->tcp_host);
    if (r >= 0 && rc->qemu)
        r = libdm_migration_set_qemu_path(rc->mig, rc->qemu);
    if (r >= 0)
        r = libdm_migration_set_timeout_ms(rc->mig, d->timeout_ms);
    if (r >= 0)
        r = libdm_migration_set_notify(rc->mig, on_notify, rc);
    if (r < 0) {
        close(in);
        close(out);
    } else {
        r = libdm_migration_start(rc->mig, in, out, on_received, rc, NULL);
    }
    if (r < 0) {
        dmctl_error("migrate-receive", "%s", strerror(-r));
        return dmctl_exit_for(r);
    }
    run_migration(d, rc->mig, NULL);
    if (!rc->done)
        return DMCTL_EXIT_FAIL;
    if (rc->status == 0)
        return libdm_migration_get_record_error(rc->mig) ? DMCTL_EXIT_FAIL : 0;
    return dmctl_exit_for(rc->status);
}

int dmctl_cmd_migrate_receive(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("migrate-receive");
    receiver rc = { .d = d, .listen = "unix" };
    int in = -1, out = -1;
    int ex = receive_parse(d, cmd, argc, argv, &rc), r;

    if (ex)
        return ex;
    if (rc.tcp_host) {
        char *num = resolve_host(rc.tcp_host, "--listen");

        free(rc.tcp_host);
        rc.tcp_host = num;
        if (!num)
            return DMCTL_EXIT_FAIL;
    }
    r = take_stdio(&in, &out);
    if (r < 0) {
        dmctl_error("migrate-receive", "cannot take stdin/stdout: %s", strerror(-r));
        return DMCTL_EXIT_FAIL;
    }
    signal(SIGPIPE, SIG_IGN);
    ex = receive_run(&rc, in, out);
    libdm_migration_unref(rc.mig);
    free(rc.tcp_host);
    return ex;
}
