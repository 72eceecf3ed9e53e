/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dmctl: the commands status and qmp, which talk to a monitor (by NAME or
 * by --socket). */
#include "config.h"

#include <libdm/libdm.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dmctl.h"

enum { OPT_SOCKET = 0x2200 };

/* ============================ status and qmp =========================== */

static const struct option socket_opts[] = {
    { "socket", required_argument, NULL, OPT_SOCKET },
    { NULL, 0, NULL, 0 },
};

/* Parses [--socket PATH] and the positional arguments: @min..@max of them
 * without --socket (NAME first), one fewer with it. */
static int parse_target(dmctl *d, const dmctl_command *cmd, int argc, char **argv,
                        int min, int max, const char **ret_socket)
{
    int c, ex = 0, n, drop;

    *ret_socket = NULL;
    while ((c = dmctl_getopt(d, cmd, argc, argv, socket_opts, &ex)) != -1) {
        if (c == DMCTL_OPT_STOP)
            return ex;
        if (c != OPT_SOCKET)
            return dmctl_usage_error(cmd, "unknown option");
        *ret_socket = optarg;
    }
    n = argc - optind;
    drop = *ret_socket ? 1 : 0;
    if (n < min - drop)
        return dmctl_usage_error(cmd, "missing %s",
                                 n == 0 && !drop ? "NAME or --socket PATH" : "COMMAND");
    if (n > max - drop)
        return dmctl_usage_error(cmd, "too many arguments");
    return 0;
}

static int print_status(const dmctl *d, const char *name, const char *socket,
                        const char *runstate, const char *confinement, libdm_json *devices)
{
    libdm_json *o;
    bool ok;

    if (!d->json) {
        dmctl_put_safe(stdout, runstate, DMCTL_SAFE_SHORT);   /* the DM's word */
        putchar('\n');
        return 0;
    }
    o = libdm_json_new_object();
    ok = o && dmctl_json_add_str(o, "name", name);
    if (ok && socket)
        ok = dmctl_json_add_str(o, "qmp_socket", socket);
    ok = ok && dmctl_json_add_str(o, "runstate", runstate);
    if (ok && confinement)
        ok = dmctl_json_add_str(o, "confinement", confinement);
    if (ok && devices)
        ok = libdm_json_object_add(o, "devices", devices) >= 0;
    else
        libdm_json_free(devices);
    if (!ok)
        o = libdm_json_free(o);
    return dmctl_json_emit(o);
}

/* query-status on a raw connection: the "status" member. */
static int socket_query_status(dmctl *d, libdm_qmp *q, const char *path, char **ret)
{
    libdm_json *v = NULL;
    const char *s;
    int r = libdm_qmp_call(q, "query-status", NULL, d->timeout_ms, &v);

    if (r < 0)
        return dmctl_report_qmp(d, q, path, "query-status", r);
    s = libdm_json_get_string(libdm_json_object_get(v, "status"));
    *ret = s ? strdup(s) : NULL;
    libdm_json_free(v);
    if (!*ret) {
        dmctl_error(path, "query-status: the reply has no status");
        return DMCTL_EXIT_FAIL;
    }
    return 0;
}

static int status_socket(dmctl *d, const char *path)
{
    libdm_qmp *q = NULL;
    char *rs = NULL;
    int ex, ex2;

    ex = dmctl_open_socket(d, path, &q);
    if (ex)
        return ex;
    ex = socket_query_status(d, q, path, &rs);
    rs = dmctl_safe_take(rs);
    ex2 = dmctl_close_socket(d, path, q);
    if (!ex && ex2)
        ex = ex2;
    if (!ex)
        ex = print_status(d, NULL, path, rs, NULL, NULL);
    free(rs);
    return ex;
}

static int status_name(dmctl *d, const char *name)
{
    libdm_dm *dm = NULL;
    libdm_json *devices = NULL;
    char *rs = NULL;
    int ex, r;

    ex = dmctl_attach(d, name, &dm);
    if (ex)
        return ex;
    r = libdm_dm_query_status(dm, d->timeout_ms, &rs);
    rs = dmctl_safe_take(rs);
    /* With --json: serial ptys, the VNC address and the NICs (devices-run.c). */
    if (r >= 0 && d->json)
        r = libdm_dm_query_devices(dm, d->timeout_ms, &devices);
    if (r < 0)
        ex = dmctl_report_dm(d, dm, name, "query-status", r);
    else
        ex = print_status(d, name, NULL, rs, libdm_dm_get_confinement(dm), devices);
    free(rs);
    libdm_dm_release(dm);
    return ex;
}

int dmctl_cmd_status(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("status");
    const char *socket;
    int ex = parse_target(d, cmd, argc, argv, 1, 1, &socket);

    if (ex)
        return ex;
    return socket ? status_socket(d, socket) : status_name(d, argv[optind]);
}

/* Parses JSON-ARGUMENTS: NULL when absent; 0 or 2 (usage error). */
static int parse_qmp_arguments(const dmctl_command *cmd, const char *text, libdm_json **ret)
{
    int r;

    *ret = NULL;
    if (!text)
        return 0;
    r = libdm_json_parse(text, strlen(text), ret);
    if (r < 0)
        return dmctl_usage_error(cmd, "invalid JSON arguments '%s': %s", text,
                                 r == -EINVAL ? "not valid JSON" : strerror(-r));
    if (libdm_json_get_type(*ret) != LIBDM_JSON_OBJECT) {
        *ret = libdm_json_free(*ret);
        return dmctl_usage_error(cmd, "invalid JSON arguments '%s': not a JSON object", text);
    }
    return 0;
}

static int print_reply(const dmctl *d, const libdm_json *value)
{
    char *text = NULL;
    int r;

    if (!value) {
        puts("{}");
        return 0;
    }
    r = libdm_json_to_string(value, !d->json, &text);
    if (r < 0) {
        dmctl_error(NULL, "cannot produce JSON: %s", strerror(-r));
        return DMCTL_EXIT_FAIL;
    }
    fputs(text, stdout);
    if (!text[0] || text[strlen(text) - 1] != '\n')
        putchar('\n');
    free(text);
    return 0;
}

typedef struct qmp_result {
    bool done;
    int status;
    libdm_json *value;
    char *error_class;
    char *error_desc;
} qmp_result;

static void on_qmp_reply(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    qmp_result *res = user;

    (void)q;
    res->done = true;
    res->status = r->status;
    if (r->status == 0 && r->value && libdm_json_copy(r->value, &res->value) < 0)
        res->status = -ENOMEM;
    if (r->status == -EREMOTEIO) {
        res->error_class = strdup(r->error_class ? r->error_class : "?");
        res->error_desc = strdup(r->error_desc ? r->error_desc : "(no description)");
    }
}

/* A failed exchange, reported once: QMP's error class for an error reply. */
static int qmp_failed(dmctl *d, libdm_qmp *q, const char *what, const char *command,
                      const qmp_result *res)
{
    if (res->status != -EREMOTEIO)
        return dmctl_report_qmp(d, q, what, command, res->status);
    dmctl_logger_discard(d->lg);
    dmctl_error(what, "%s: QEMU error %s: %s", command,
                res->error_class ? res->error_class : "?",
                res->error_desc ? res->error_desc : "(no description)");
    return dmctl_exit_for(res->status);
}

/* One command on @q, interruptible; the reply printed. An interrupted call
 * is cancelled, its reply still drained before the connection closes. 0 or
 * an exit status. */
static int qmp_exchange(dmctl *d, libdm_qmp *q, const char *what, const char *command,
                        const libdm_json *args)
{
    qmp_result res = { false, 0, NULL, NULL, NULL };
    libdm_qmp_slot *slot = NULL;
    int r, ex;

    if (!q) {
        dmctl_error(what, "no monitor connection (the DM is %s)", "not answering");
        return dmctl_exit_for(-ENOTCONN);
    }
    r = libdm_qmp_call_async(q, command, args, d->timeout_ms, on_qmp_reply, &res, &slot);
    if (r < 0)
        return dmctl_report_qmp(d, q, what, command, r);
    r = dmctl_wait(d, &res.done);
    slot = libdm_qmp_slot_free(slot);
    if (r == -EINTR)
        ex = DMCTL_EXIT_INTERRUPTED;
    else if (r < 0)
        ex = dmctl_report_qmp(d, q, what, command, r);
    else if (res.status < 0)
        ex = qmp_failed(d, q, what, command, &res);
    else
        ex = print_reply(d, res.value);
    libdm_json_free(res.value);
    free(res.error_class);
    free(res.error_desc);
    return ex;
}

static int qmp_socket(dmctl *d, const char *path, const char *command,
                      const libdm_json *args)
{
    libdm_qmp *q = NULL;
    int ex, ex2;

    ex = dmctl_open_socket(d, path, &q);
    if (ex)
        return ex;
    ex = qmp_exchange(d, q, path, command, args);
    ex2 = dmctl_close_socket(d, path, q);
    return ex ? ex : ex2;
}

static int qmp_name(dmctl *d, const char *name, const char *command, const libdm_json *args)
{
    libdm_dm *dm = NULL;
    int ex = dmctl_attach(d, name, &dm);

    if (ex)
        return ex;
    ex = qmp_exchange(d, libdm_dm_get_qmp(dm), name, command, args);
    (void)dmctl_drain(d, libdm_dm_get_qmp(dm));
    libdm_dm_release(dm);   /* drains what is left before closing */
    return ex;
}

int dmctl_cmd_qmp(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("qmp");
    const char *socket, *command, *args_text;
    libdm_json *args = NULL;
    int ex, i;

    ex = parse_target(d, cmd, argc, argv, 2, 3, &socket);
    if (ex)
        return ex;
    i = optind + (socket ? 0 : 1);
    command = argv[i];
    args_text = i + 1 < argc ? argv[i + 1] : NULL;
    if (!command[0])
        return dmctl_usage_error(cmd, "empty QMP command name");
    ex = parse_qmp_arguments(cmd, args_text, &args);
    if (ex)
        return ex;
    ex = socket ? qmp_socket(d, socket, command, args)
                : qmp_name(d, argv[optind], command, args);
    libdm_json_free(args);
    return ex;
}

