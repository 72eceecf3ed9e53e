/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dmctl: the commands stop and list. A DM is never hidden by its record:
 * one that cannot be read, or a run directory without one, is listed with
 * what its claim proves, and `stop --force` ends it through its keeper
 * (issue 18, items 2 and 8). */
#include "config.h"

#include <libdm/libdm.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dmctl.h"

enum { OPT_NO_QUERY = 0x2100 };

#define LIST_QUERY_MAX_MS 5000

static const char *or_dash(const char *s)
{
    return s && s[0] ? s : "-";
}

/* ================================ stop ================================= */

static const struct option stop_opts[] = {
    { "force", no_argument, NULL, 'f' },
    { NULL, 0, NULL, 0 },
};

static int print_stopped(const dmctl *d, const char *name, int status, bool was_gone)
{
    char buf[64];
    libdm_json *o;
    bool ok;

    if (!d->json) {
        printf("%s: %s (%s)\n", name, was_gone ? "was already gone, record removed" : "stopped",
               dmctl_describe_wait(status, buf, sizeof(buf)));
        return 0;
    }
    o = libdm_json_new_object();
    ok = o && dmctl_json_add_str(o, "name", name);
    ok = ok && dmctl_json_add_bool(o, "stopped", true);
    ok = ok && dmctl_json_add_bool(o, "already_gone", was_gone);
    ok = ok && dmctl_json_add_int(o, "exit_status", status);
    if (!ok)
        o = libdm_json_free(o);
    return dmctl_json_emit(o);
}

/* The recorded exit status of @name, or -1. */
static int recorded_exit_status(dmctl *d, const char *name)
{
    libdm_dm_info *infos = NULL;
    size_t n = 0, i;
    int status = -1;

    if (libdm_dm_list(d->ctx, &infos, &n) < 0)
        return -1;
    for (i = 0; i < n; i++)
        if (strcmp(infos[i].name, name) == 0)
            status = infos[i].exit_status;
    libdm_dm_info_free(infos, n);
    return status;
}

/* What list says of @name: recorded (readable or not), and if the record
 * cannot be read, why and who holds the name. */
typedef struct listed {
    bool recorded;
    int record_error;   /* as libdm_dm_info */
    bool claimed;
    int keeper_pid;
} listed;

static listed find_listed(dmctl *d, const char *name)
{
    libdm_dm_info *infos = NULL;
    size_t n = 0, i;
    listed l = { 0 };

    if (libdm_dm_list(d->ctx, &infos, &n) < 0)
        return l;
    for (i = 0; i < n; i++) {
        if (strcmp(infos[i].name, name) != 0)
            continue;
        l.recorded = infos[i].record_error != -ENOENT;
        l.record_error = infos[i].record_error;
        l.claimed = infos[i].claimed;
        l.keeper_pid = infos[i].keeper_pid;
    }
    libdm_dm_info_free(infos, n);
    return l;
}

static bool is_recorded(dmctl *d, const char *name)
{
    return find_listed(d, name).recorded;
}

/* libdm_dm_forget(), waiting (bounded) while a concurrent stop or the
 * keeper still holds the name to clean up: then nothing is left (issue 18,
 * item 12). */
static int forget_after_others(dmctl *d, const char *name)
{
    uint64_t deadline = libdm_now_ms() + (uint64_t)d->timeout_ms;
    int r;

    while ((r = libdm_dm_forget(d->ctx, name)) == -EBUSY && libdm_now_ms() < deadline &&
           !dmctl_signal_received())
        usleep(20000);
    return r;
}

/* The process is gone already: remove what it left behind. */
static int stop_gone(dmctl *d, const char *name)
{
    int status = recorded_exit_status(d, name);
    int r = forget_after_others(d, name);

    dmctl_logger_discard(d->lg);   /* attach's "is gone" */
    if (r < 0 && r != -ENOENT)
        return dmctl_report_dm(d, NULL, name, "removing the record", r);
    return print_stopped(d, name, status, true);
}

/* The record of @name cannot be read (@l): it proves nothing, the name's
 * claim does. Free: the DM is gone, clean up. Held: only --force ends it,
 * through the keeper the kernel names (issue 18, item 8). */
static int stop_unreadable(dmctl *d, const char *name, const listed *l, bool force)
{
    int r;

    dmctl_logger_discard(d->lg);   /* attach's "unreadable": said below */
    if (l->claimed && !force) {
        if (l->keeper_pid > 0)
            dmctl_error(name, "its record cannot be read (%s) and its keeper (pid %d) holds "
                        "the name: 'stop --force' ends it through the keeper",
                        strerror(-l->record_error), l->keeper_pid);
        else
            dmctl_error(name, "its record cannot be read (%s) and the name is held (a start "
                        "in progress?)", strerror(-l->record_error));
        return DMCTL_EXIT_FAIL;
    }
    if (l->claimed) {
        r = libdm_dm_kill_keeper(d->ctx, name);
        for (int i = 0; r == -EAGAIN && i < 10; i++)
            r = libdm_dm_kill_keeper(d->ctx, name);
        if (r < 0 && r != -ESRCH) {
            dmctl_error(name, "its record cannot be read (%s) and %s",
                        strerror(-l->record_error),
                        r == -ENOLCK ? "the process holding the name cannot be proven its "
                                       "keeper (a start in progress?): not killed"
                                     : strerror(-r));
            return dmctl_exit_for(r);
        }
    }
    r = forget_after_others(d, name);
    dmctl_logger_discard(d->lg);
    if (r < 0 && r != -ENOENT)
        return dmctl_report_dm(d, NULL, name, "removing the record", r);
    if (!d->json)
        printf("%s: %s (its record was unreadable: %s)\n", name,
               l->claimed ? "stopped through its keeper, removed" : "was already gone, removed",
               strerror(-l->record_error));
    return d->json ? print_stopped(d, name, -1, !l->claimed) : 0;
}

int dmctl_cmd_stop(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("stop");
    libdm_dm *dm = NULL;
    const char *name;
    bool force = false, recorded;
    int c, ex = 0, r, fr = 1;

    while ((c = dmctl_getopt(d, cmd, argc, argv, stop_opts, &ex)) != -1) {
        if (c == DMCTL_OPT_STOP)
            return ex;
        force = true;
    }
    ex = dmctl_expect_args(cmd, argc, 1, "NAME");
    if (!ex)
        ex = dmctl_check_name(argv[optind]);
    if (ex || (ex = dmctl_open_ctx(d)))
        return ex;
    name = argv[optind];
    /* Recorded when this stop began: if the record is gone by the attach,
     * a concurrent stop removed it, and this one succeeds too. */
    recorded = is_recorded(d, name);
    /* A live DM whose monitor does not answer, is missing or refused comes
     * back BROKEN: still stoppable through its pidfd. */
    r = libdm_dm_attach_flags(d->ctx, name, d->timeout_ms, LIBDM_ATTACH_ANY_MONITOR, &dm);
    if (r == -ESRCH)
        return stop_gone(d, name);
    /* No record: a starter killed right after claiming the name leaves its
     * run directory; nothing ran, and only that is removed. */
    if (r == -ENOENT && ((fr = recorded ? forget_after_others(d, name)
                                        : libdm_dm_forget(d->ctx, name)) == 0 ||
                         (recorded && fr == -ENOENT))) {
        dmctl_logger_discard(d->lg);
        return print_stopped(d, name, -1, true);
    }
    if (r < 0 && r != -ENOENT && r != -ENOMEM) {
        listed l = find_listed(d, name);

        if (l.recorded && l.record_error)
            return stop_unreadable(d, name, &l, force);
    }
    if (r < 0)
        return dmctl_report_attach(d, name, r);
    r = libdm_dm_stop(dm, force, d->timeout_ms);
    if (r < 0) {
        ex = dmctl_report_dm(d, dm, name, "stop", r);
    } else {
        /* What libdm logged while the DM went away (e.g. "the monitor
         * connection was reset" after SIGKILL) is the stop itself. */
        dmctl_logger_discard(d->lg);
        ex = print_stopped(d, name, libdm_dm_get_exit_status(dm), false);
    }
    libdm_dm_release(dm);
    return ex;
}

/* ================================ list ================================= */

static const struct option list_opts[] = {
    { "no-query", no_argument, NULL, OPT_NO_QUERY },
    { NULL, 0, NULL, 0 },
};

/* The live runstate of a recorded DM, or NULL ("?"). */
static char *query_runstate(dmctl *d, const libdm_dm_info *info)
{
    int t = d->timeout_ms < LIST_QUERY_MAX_MS ? d->timeout_ms : LIST_QUERY_MAX_MS;
    libdm_dm *dm = NULL;
    char *rs = NULL;

    if (!info->alive || info->record_error || dmctl_signal_received())
        return NULL;
    if (libdm_dm_attach_timeout(d->ctx, info->name, t, &dm) >= 0) {
        if (libdm_dm_query_status(dm, t, &rs) < 0)
            rs = NULL;
        libdm_dm_release(dm);
    }
    if (!rs)   /* shown as '?'; -v shows why */
        dmctl_logger_discard(d->lg);
    return dmctl_safe_take(rs);   /* the DM's word: never raw */
}

static int list_json_one(const libdm_dm_info *in, const char *runstate)
{
    libdm_json *o = libdm_json_new_object();
    bool ok = o != NULL;

    ok = ok && dmctl_json_add_str(o, "name", in->name);
    ok = ok && dmctl_json_add_int(o, "domid", in->domid);
    ok = ok && dmctl_json_add_int(o, "pid", in->pid);
    ok = ok && dmctl_json_add_bool(o, "alive", in->alive);
    ok = ok && dmctl_json_add_str(o, "qmp_socket", in->qmp_socket);
    ok = ok && dmctl_json_add_str(o, "runstate", runstate);
    ok = ok && dmctl_json_add_str(o, "profile", in->profile);
    ok = ok && dmctl_json_add_str(o, "state", in->state);
    ok = ok && dmctl_json_add_int(o, "exit_status", in->exit_status);
    ok = ok && dmctl_json_add_str(o, "record", !in->record_error ? "ok" :
                                  in->record_error == -ENOENT ? "missing" : "unreadable");
    if (in->record_error) {
        ok = ok && dmctl_json_add_str(o, "record_error", strerror(-in->record_error));
        ok = ok && dmctl_json_add_bool(o, "claimed", in->claimed);
        ok = ok && dmctl_json_add_int(o, "keeper_pid", in->keeper_pid);
    }
    if (!ok)
        o = libdm_json_free(o);
    return dmctl_json_emit(o);
}

/* Width of the NAME (@state false) or STATE column. */
static int column_width(const libdm_dm_info *infos, size_t n, bool state, int min)
{
    size_t i, len;
    int w = min;

    for (i = 0; i < n; i++) {
        len = strlen(or_dash(state ? infos[i].state : infos[i].name));
        if ((int)len > w)
            w = (int)len;
    }
    return w;
}

static void list_table(const libdm_dm_info *infos, size_t n, char **runstates, bool queried)
{
    int wn = column_width(infos, n, false, 4);
    int ws = column_width(infos, n, true, 5);
    char domid[16];
    size_t i;

    printf("%-*s %5s %7s %-5s %-*s %-10s %-7s %s\n", wn, "NAME", "DOMID", "PID", "ALIVE",
           ws, "STATE", "RUNSTATE", "PROFILE", "SOCKET");
    for (i = 0; i < n; i++) {
        const libdm_dm_info *in = &infos[i];
        const char *rs = runstates[i] ? runstates[i]
                         : queried && in->alive && !in->record_error ? "?" : "-";

        snprintf(domid, sizeof(domid), in->domid ? "%" PRIu32 : "-", in->domid);
        printf("%-*s %5s %7d %-5s %-*s %-10s %-7s %s\n", wn, in->name, domid, in->pid,
               in->alive ? "yes" : "no", ws, or_dash(in->state), rs, or_dash(in->profile),
               or_dash(in->qmp_socket));
    }
}

/* A name without a readable record, said on stderr (the table keeps its
 * columns): 1 if it is a record that cannot be read (list fails then: a
 * DM may be hidden behind it), else 0. */
static int list_warn(const libdm_dm_info *in)
{
    if (in->record_error == -ENOENT) {
        dmctl_error(in->name, "a run directory without a record: %s", in->claimed
                    ? "its claim is held (a start in progress)"
                    : "nobody holds its claim ('dmctl stop' removes it)");
        return 0;
    }
    if (in->claimed && in->keeper_pid > 0)
        dmctl_error(in->name, "its record cannot be read (%s); its keeper (pid %d) holds the "
                    "name: 'dmctl stop --force' ends it", strerror(-in->record_error),
                    in->keeper_pid);
    else if (in->claimed)
        dmctl_error(in->name, "its record cannot be read (%s); the name is held",
                    strerror(-in->record_error));
    else
        dmctl_error(in->name, "its record cannot be read (%s); nobody holds the name "
                    "('dmctl stop' removes it)", strerror(-in->record_error));
    return 1;
}

static int list_parse(dmctl *d, const dmctl_command *cmd, int argc, char **argv,
                      bool *query)
{
    int c, ex = 0;

    while ((c = dmctl_getopt(d, cmd, argc, argv, list_opts, &ex)) != -1) {
        if (c == DMCTL_OPT_STOP)
            return ex;
        *query = false;
    }
    return dmctl_expect_args(cmd, argc, 0, "");
}

int dmctl_cmd_list(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("list");
    libdm_dm_info *infos = NULL;
    char **runstates;
    bool query = true;
    size_t n = 0, i;
    int ex, r;

    ex = list_parse(d, cmd, argc, argv, &query);
    if (ex || (ex = dmctl_open_ctx(d)))
        return ex;
    r = libdm_dm_list(d->ctx, &infos, &n);
    if (r < 0)
        return dmctl_report_dm(d, NULL, "list", "reading the records", r);
    runstates = calloc(n ? n : 1, sizeof(*runstates));
    if (!runstates) {
        libdm_dm_info_free(infos, n);
        return dmctl_report_dm(d, NULL, "list", "list", -ENOMEM);
    }
    for (i = 0; i < n && query; i++)
        runstates[i] = query_runstate(d, &infos[i]);
    if (!d->json)
        list_table(infos, n, runstates, query);
    for (i = 0; i < n && d->json && !ex; i++)
        ex = list_json_one(&infos[i], runstates[i]);
    for (i = 0; i < n; i++)
        if (infos[i].record_error && list_warn(&infos[i]) && !ex)
            ex = DMCTL_EXIT_FAIL;
    for (i = 0; i < n; i++)
        free(runstates[i]);
    free(runstates);
    libdm_dm_info_free(infos, n);
    return ex;
}
