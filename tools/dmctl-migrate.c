/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl: the commands migrate and migrate-receive, in the manner of
 * xl migrate. The sender runs a shell command (e.g. "ssh host dmctl
 * migrate-receive") whose stdin and stdout are its control channel; the two
 * sides drive libdm's migration phases in lockstep over that channel, one
 * JSON object per line (at most 64 KiB each). The protocol lives in libdm
 * (libdm_migration, libdm/migrate-send.c, -recv.c, -query.c, -recover.c);
 * dmctl runs the transport command, the hook and the messages. The protocol:
 *
 *   sender                                   receiver
 *   Begin
 *   {"phase":"prepare","name":..,"config":{..},"timeout_ms":..}  ->
 *                                            Prepare (autokill armed)
 *                          <-  {"phase":"prepared","uri":..} | {"phase":"error",..}
 *   Perform (hook at pre-switchover, in its own process group)
 *   {"phase":"finish","source":S,"success":B,"keep_paused":B}  ->
 *                                            Finish by the table below, or
 *                                            stop the destination
 *          <-  {"phase":"finished","runstate":..[,"record_error":..]}
 *              | {"phase":"aborted"} | error
 *   {"phase":"confirmed"}  ->                (after "finished": the receiver
 *                                            drops its mark)
 *   Confirm
 *
 * S is what the sender knows of its source once Perform is over
 * (libdm_migrate_source_state()): "completed" (paused in postmigrate),
 * "gone" (its QEMU exited), "keeps" (failed or cancelled: the source has the
 * guest) or "unknown". B is S == "completed", for older receivers.
 *
 * Decision table (the receiver; libdm_migrate_finish_from() codes it):
 *
 *   S          destination's incoming   receiver                 answers
 *   completed  completed                cont (unless keep_paused) finished
 *   completed  failed, dead, too late   stops the destination     aborted
 *   gone       completed                cont (unless keep_paused) finished
 *   gone       failed, dead, too late   stops the destination     aborted (guest lost
 *                                                                 with the source QEMU)
 *   keeps      (not asked)              stops the destination     aborted
 *   unknown    (not asked)              stops the destination     aborted
 *   no finish (channel closed or deadline)  stops the destination (autokill)
 *   "aborted" is sent only once the destination is dead; a destination that
 *   could not be stopped is answered with "error".
 *
 * The sender, by S and the answer:
 *
 *   S          answer                    sender                         exit
 *   completed  finished                  stops the source               0
 *   completed  aborted                   resumes the source             1
 *   completed  error, none, closed,      source stays paused:           4
 *              deadline                  "outcome unknown" naming
 *                                        migrate --recover
 *   gone       finished                  (source already gone)          0
 *   gone       aborted                   guest lost with the source     1
 *   gone       anything else             outcome unknown                4
 *   keeps      any                       source runs (QEMU resumed it)  1
 *   unknown    aborted                   source untouched: recover with 4
 *                                        --destination-gone
 *   unknown    anything else             outcome unknown                4
 *
 * A finish is never sent once the sender knows the channel is gone (the
 * destination cannot run without one, and stops): the source is resumed.
 * So once a finish that may let the destination run may have left, the
 * source is never resumed on the sender's own; exactly one side is resumed
 * by "migrate --recover", which asks the destination through the same
 * transport:
 *
 *   {"phase":"query","name":NAME,"resume":B}  ->
 *          <-  {"phase":"state","guest":"running"|"paused"|"absent"|"busy",..}
 *
 * "absent": no DM of that name, or one whose incoming migration never
 * completed (stopped now); "running"/"paused": it has the guest (a paused
 * one with a completed incoming migration is resumed when B); "busy": its
 * monitor is held (a receiver still works on it) or its state is ambiguous.
 *
 * Every wait on the channel is bounded by the --timeout deadline.
 * The receiver needs no cleanup when the sender dies: until Finish its
 * destination DM is under autokill.
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

/* ================================ migrate =============================== */





static const struct option migrate_opts_table[] = {
    { "to", required_argument, NULL, OPT_TO },
    { "live", no_argument, NULL, OPT_LIVE },
    { "pause-before-switchover", no_argument, NULL, OPT_PAUSE_BEFORE_SWITCHOVER },
    { "switchover-hook", required_argument, NULL, OPT_SWITCHOVER_HOOK },
    { "keep-paused", no_argument, NULL, OPT_KEEP_PAUSED },
    { "uri-host", required_argument, NULL, OPT_URI_HOST },
    { "machine", required_argument, NULL, OPT_MACHINE },
    { "memory", required_argument, NULL, OPT_MEMORY },
    { "recover", no_argument, NULL, OPT_RECOVER },
    { "destination-gone", no_argument, NULL, OPT_DESTINATION_GONE },
    { NULL, 0, NULL, 0 },
};

static int migrate_option(const dmctl_command *cmd, migrate_opts *o, int c, const char *arg)
{
    switch (c) {
    case OPT_TO:
        o->to = arg;
        return 0;
    case OPT_LIVE:
        return 0;   /* precopy is always live */
    case OPT_PAUSE_BEFORE_SWITCHOVER:
        o->pause_before_switchover = true;
        return 0;
    case OPT_SWITCHOVER_HOOK:
        o->hook = arg;
        return 0;
    case OPT_KEEP_PAUSED:
        o->keep_paused = true;
        return 0;
    case OPT_URI_HOST: {
        bool v6;
        char *host = dmctl_parse_tcp_host(arg, &v6);

        if (!host && errno == ENOMEM)
            return dmctl_usage_error(cmd, "--uri-host: %s", strerror(ENOMEM));
        free(host);
        o->uri_host = arg;
        return host ? 0 : dmctl_usage_error(cmd, "invalid --uri-host value '%s' (a host name, "
                                            "an IPv4 address or [IPv6])", arg);
    }
    case OPT_MACHINE:
        o->machine = arg;
        return arg[0] ? 0 : dmctl_usage_error(cmd, "invalid --machine value ''");
    case OPT_MEMORY:
        if (!dmctl_parse_u64(arg, UINT32_MAX, &o->memory_mb) || o->memory_mb == 0)
            return dmctl_usage_error(cmd, "invalid --memory value '%s' (MiB)", arg);
        return 0;
    case OPT_RECOVER:
        o->recover = true;
        return 0;
    case OPT_DESTINATION_GONE:
        o->destination_gone = true;
        return 0;
    default:
        return dmctl_usage_error(cmd, "unknown option '%s'", arg ? arg : "");
    }
}

int migrate_parse(dmctl *d, const dmctl_command *cmd, int argc, char **argv,
                         migrate_opts *o)
{
    int c, ex = 0;

    while ((c = dmctl_getopt(d, cmd, argc, argv, migrate_opts_table, &ex)) != -1) {
        if (c == DMCTL_OPT_STOP)
            return ex;
        ex = migrate_option(cmd, o, c, optarg);
        if (ex)
            return ex;
    }
    if (argc - optind < 1)
        return dmctl_usage_error(cmd, "missing NAME");
    if (argc - optind > 1)
        return dmctl_usage_error(cmd, "too many arguments");
    o->name = argv[optind];
    if (o->destination_gone && !o->recover)
        return dmctl_usage_error(cmd, "--destination-gone needs --recover");
    if (o->recover && o->destination_gone && o->to)
        return dmctl_usage_error(cmd, "--destination-gone and --to exclude each other");
    if ((!o->to || !o->to[0]) && !o->destination_gone)
        return dmctl_usage_error(cmd, "missing --to 'SHELL-COMMAND'");
    return 0;
}

/* The sender's callback: its status. */
static void on_sent(libdm_migration *mig, int status, void *user)
{
    (void)mig;
    *(int *)user = status;
}

/* Runs the whole migration through libdm; 0 or an exit status (nothing
 * ran). */
static int migrate_run(migration *m, int *ret_status)
{
    unsigned flags = (m->o.pause_before_switchover ? LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER : 0) |
                     (m->o.keep_paused ? LIBDM_MIGRATION_KEEP_PAUSED : 0);
    char *host = NULL;
    bool v6;
    int in = -1, out = -1, r = libdm_migration_new_send(m->src, &m->mig);

    if (r >= 0 && m->o.uri_host) {
        char *num = NULL;

        host = dmctl_parse_tcp_host(m->o.uri_host, &v6);   /* checked when parsed */
        if (host && !(num = resolve_host(host, "--uri-host"))) {
            free(host);
            return DMCTL_EXIT_FAIL;     /* resolve_host said why; nothing ran */
        }
        r = num ? libdm_migration_set_uri_host(m->mig, num) : -ENOMEM;
        free(num);
        free(host);
    }
    if (r >= 0)
        r = libdm_migration_set_timeout_ms(m->mig, m->d->timeout_ms);
    if (r >= 0)
        r = libdm_migration_set_flags(m->mig, flags);
    if (r >= 0 && m->o.machine)
        r = libdm_migration_set_machine(m->mig, m->o.machine);
    if (r >= 0 && m->o.memory_mb)
        r = libdm_migration_set_memory_mb(m->mig, m->o.memory_mb);
    if (r >= 0)
        r = libdm_migration_set_hook(m->mig, hook_start, m);
    if (r >= 0)
        r = libdm_migration_set_progress(m->mig, on_progress, m);
    if (r < 0) {
        dmctl_error(m->o.name, "migration failed: %s", strerror(-r));
        return dmctl_exit_for(r);
    }
    r = spawn_transport(m->o.to, &m->peer, &in, &out);
    if (r < 0) {
        dmctl_error(m->o.name, "migration failed in prepare: cannot run the --to command: %s",
                    strerror(-r));
        return DMCTL_EXIT_FAIL;
    }
    r = libdm_migration_start(m->mig, in, out, on_sent, ret_status, NULL);
    if (r < 0) {
        reap_transport(m->d, m->o.name, &m->peer, false);
        dmctl_error(m->o.name, "migration failed: %s", strerror(-r));
        return dmctl_exit_for(r);
    }
    run_migration(m->d, m->mig, m);
    hook_kill(m, -ECANCELED, NULL);
    if (m->bar_drawn)
        fputc('\n', stderr);
    reap_transport(m->d, m->o.name, &m->peer, libdm_migration_peer_lost(m->mig) ||
                   !libdm_migration_get_failed_phase(m->mig));
    return 0;
}

/* "outcome unknown": the source stays paused; says how to recover. */
static int report_unknown(migration *m)
{
    const char *why = libdm_migration_get_error(m->mig);
    const char *unknown = libdm_migration_get_detail(m->mig);
    libdm_migrate_source source = libdm_migration_get_source_state(m->mig);

    dmctl_logger_discard(m->d->lg);
    if (source == LIBDM_MIGRATE_SOURCE_UNKNOWN && !libdm_migration_finish_sent(m->mig)) {
        dmctl_error(m->o.name, "outcome unknown: the source's migration state cannot be "
                    "read (%s); the destination does not run the guest. Recover with: "
                    "dmctl migrate %s --recover --destination-gone",
                    why ? why : "see above", m->o.name);
        return DMCTL_EXIT_UNKNOWN;
    }
    dmctl_error(m->o.name, "outcome unknown: %s after the finish was sent; the %s. "
                "Resume exactly one side with: dmctl migrate %s --recover --to '%s'",
                unknown ? unknown : why ? why : "no answer",
                source == LIBDM_MIGRATE_SOURCE_GONE
                    ? "source QEMU is gone; the destination may run the guest"
                    : "source stays paused (the destination may run the guest)",
                m->o.name, m->o.to);
    return DMCTL_EXIT_UNKNOWN;
}

static int report_migrated(migration *m)
{
    const char *runstate = libdm_migration_get_runstate(m->mig);
    const char *record_error = libdm_migration_get_record_error(m->mig);
    libdm_json *o;
    bool ok;

    dmctl_logger_discard(m->d->lg);   /* e.g. the failure that preceded GONE */
    if (!runstate)
        runstate = "?";
    if (libdm_migration_get_source_state(m->mig) == LIBDM_MIGRATE_SOURCE_GONE)
        dmctl_error(m->o.name, "note: the source QEMU exited; the destination had the "
                    "whole guest and runs it");
    if (record_error) {
        /* The guest moved, but the destination's host does not record it
         * truthfully: not a success to report as one (issue 22, 14). */
        dmctl_error(m->o.name, "migrated (destination runstate: %s), but the destination's "
                    "record could not be updated: %s", runstate, record_error);
        return DMCTL_EXIT_FAIL;
    }
    if (!m->d->json) {
        printf("%s: migrated (destination runstate: %s)\n", m->o.name, runstate);
        return 0;
    }
    o = libdm_json_new_object();
    ok = o && dmctl_json_add_str(o, "event", "migrated");
    ok = ok && dmctl_json_add_str(o, "name", m->o.name);
    ok = ok && dmctl_json_add_str(o, "runstate", runstate);
    return dmctl_json_emit(ok ? o : libdm_json_free(o));
}

int migrate_report(migration *m, int status)
{
    libdm_migrate_outcome outcome = libdm_migration_get_outcome(m->mig);
    const char *failed_in = libdm_migration_get_failed_phase(m->mig);
    const char *why = libdm_migration_get_error(m->mig);
    int confirm_err = libdm_migration_get_confirm_error(m->mig);
    char op[64];

    if (confirm_err)
        dmctl_report_dm(m->d, m->src, m->o.name, outcome == LIBDM_MIGRATE_OUTCOME_MIGRATED
                        ? "migrated, but stopping the source failed"
                        : "confirm: the source may be left paused", confirm_err);
    if (outcome == LIBDM_MIGRATE_OUTCOME_UNKNOWN)
        return report_unknown(m);
    if (outcome == LIBDM_MIGRATE_OUTCOME_MIGRATED)
        return confirm_err ? DMCTL_EXIT_FAIL : report_migrated(m);
    if (outcome == LIBDM_MIGRATE_OUTCOME_LOST) {
        dmctl_logger_discard(m->d->lg);
        dmctl_error(m->o.name, "migration failed: the source QEMU died before the "
                    "destination had the whole guest: the guest is lost");
        return DMCTL_EXIT_FAIL;
    }
    if (!failed_in && confirm_err)
        return DMCTL_EXIT_FAIL;
    if (failed_in && why) {
        dmctl_logger_discard(m->d->lg);
        dmctl_error(m->o.name, "migration failed in %s: %s", failed_in, why);
        return dmctl_exit_for(status);
    }
    snprintf(op, sizeof(op), "migration failed in %s", failed_in ? failed_in : "finish");
    return dmctl_report_dm(m->d, m->src, m->o.name, op, status < 0 ? status : -EIO);
}

/* migrate: Begin to Confirm through libdm, then the report. */
int migrate_send(migration *m)
{
    int status = -EIO, ex = migrate_run(m, &status);
    libdm_migrate_source source;

    if (ex)
        return ex;
    source = libdm_migration_get_source_state(m->mig);
    if (dmctl_signal_received() &&
        (source == LIBDM_MIGRATE_SOURCE_COMPLETED || source == LIBDM_MIGRATE_SOURCE_GONE)) {
        dmctl_error(m->o.name, "note: %s came too late: the migration had completed",
                    dmctl_signal_name(dmctl_signal_received()));
        dmctl_signal_forget();
    }
    return migrate_report(m, status);
}
