/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl migrate --recover, and the entry points of migrate and
 * migrate-recover (see dmctl-migrate.h).
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

/* ---- migrate-recover ---- */

static void on_recovered(libdm_migration *mig, int status, void *user)
{
    (void)mig;
    *(int *)user = status;
}

/* The report of a recovery that ended with @status. */
static int recover_report(migration *m, int status)
{
    const char *detail = libdm_migration_get_detail(m->mig);
    libdm_dm *dm = libdm_migration_get_dm(m->mig);

    if (!detail)
        detail = "";
    switch (libdm_migration_get_recovery(m->mig)) {
    case LIBDM_MIGRATE_RECOVERY_WRONG_SIDE:
        if (libdm_migration_get_guest(m->mig))
            dmctl_error(m->o.name, "refused: the other side says: %s; nothing was changed",
                        detail);
        else
            dmctl_error(m->o.name, "refused: %s; nothing was changed", detail);
        return DMCTL_EXIT_FAIL;
    case LIBDM_MIGRATE_RECOVERY_FENCED:
        dmctl_error(m->o.name, "refused: %s; nothing was changed", detail);
        return DMCTL_EXIT_FAIL;
    case LIBDM_MIGRATE_RECOVERY_BOTH_RUN:
        dmctl_error(m->o.name, "refused: %s runs here and the other side says: %s; "
                    "nothing was changed", m->o.name, detail);
        return DMCTL_EXIT_FAIL;
    case LIBDM_MIGRATE_RECOVERY_RUNS_HERE:
        printf("%s: recovered: it runs here; nothing to do (the other side: %s)\n",
               m->o.name, detail[0] ? detail : "no guest");
        return 0;
    case LIBDM_MIGRATE_RECOVERY_UNKNOWN:
        dmctl_error(m->o.name, "outcome still unknown: the destination: %s; the source "
                    "stays paused. Retry, or if the destination is gone: dmctl "
                    "migrate %s --recover --destination-gone", detail, m->o.name);
        return DMCTL_EXIT_UNKNOWN;
    case LIBDM_MIGRATE_RECOVERY_NO_SOURCE:
        dmctl_error(m->o.name, "recovered: no source left; the destination has the guest "
                    "(%s)", detail);
        return 0;
    case LIBDM_MIGRATE_RECOVERY_LOST:
        dmctl_error(m->o.name, "no source left and the destination does not have the "
                    "guest: it is lost");
        return DMCTL_EXIT_FAIL;
    case LIBDM_MIGRATE_RECOVERY_SOURCE_RUNS:
        printf("%s: recovered: the source runs (the destination does not have the guest)\n",
               m->o.name);
        return 0;
    case LIBDM_MIGRATE_RECOVERY_DEST_HAS:
        printf("%s: recovered: the destination has the guest; the source was stopped\n",
               m->o.name);
        return 0;
    case LIBDM_MIGRATE_RECOVERY_NONE:
    default:
        break;
    }
    if (libdm_migration_get_error(m->mig)) {
        dmctl_error(m->o.name, "%s", libdm_migration_get_error(m->mig));
        return dmctl_exit_for(status);
    }
    if (libdm_migration_get_failed_phase(m->mig) &&
        !strcmp(libdm_migration_get_failed_phase(m->mig), "attach"))
        return dmctl_report_attach(m->d, m->o.name, status);
    return dm ? dmctl_report_dm(m->d, dm, m->o.name, "migrate-recover", status)
              : (dmctl_error(m->o.name, "migrate-recover: %s", strerror(-status)),
                 dmctl_exit_for(status));
}

static int migrate_recover(migration *m)
{
    unsigned flags = (m->o.keep_paused ? LIBDM_MIGRATION_KEEP_PAUSED : 0) |
                     (m->o.destination_gone ? LIBDM_MIGRATION_DESTINATION_GONE : 0);
    int in = -1, out = -1, status = -EIO, ex = dmctl_open_ctx(m->d), r;

    if (ex)
        return ex;
    r = libdm_migration_new_recover(m->d->ctx, m->o.name, &m->mig);
    if (r >= 0)
        r = libdm_migration_set_flags(m->mig, flags);
    if (r >= 0)
        r = libdm_migration_set_timeout_ms(m->mig, m->d->timeout_ms);
    if (r < 0) {
        dmctl_error(m->o.name, "migrate-recover: %s", strerror(-r));
        return dmctl_exit_for(r);
    }
    signal(SIGPIPE, SIG_IGN);
    if (!m->o.destination_gone) {
        r = spawn_transport(m->o.to, &m->peer, &in, &out);
        if (r < 0) {
            dmctl_error(m->o.name, "outcome still unknown: the destination: cannot run the "
                        "--to command: %s; the source stays paused", strerror(-r));
            return DMCTL_EXIT_UNKNOWN;
        }
    }
    r = libdm_migration_start(m->mig, in, out, on_recovered, &status, NULL);
    if (r < 0) {
        reap_transport(m->d, m->o.name, &m->peer, false);
        return dmctl_report_attach(m->d, m->o.name, r);
    }
    run_migration(m->d, m->mig, NULL);
    reap_transport(m->d, m->o.name, &m->peer, libdm_migration_peer_lost(m->mig));
    dmctl_logger_discard(m->d->lg);
    return recover_report(m, status);
}

int dmctl_cmd_migrate_recover(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("migrate-recover");
    migration m = { .d = d, .peer = -1, .hook = { -1, -1 } };
    int ex;

    if (!cmd)
        cmd = dmctl_find_command("migrate");
    m.o.recover = true;
    ex = migrate_parse(d, cmd, argc, argv, &m.o);
    if (!ex)
        ex = migrate_recover(&m);
    libdm_migration_unref(m.mig);
    return ex;
}

int dmctl_cmd_migrate(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("migrate");
    migration m = { .d = d, .peer = -1, .hook = { -1, -1 } };
    int ex;

    ex = migrate_parse(d, cmd, argc, argv, &m.o);
    if (!ex && m.o.recover) {
        ex = migrate_recover(&m);
        libdm_migration_unref(m.mig);
        return ex;
    }
    if (!ex)
        ex = dmctl_attach(d, m.o.name, &m.src);
    if (ex)
        return ex;
    signal(SIGPIPE, SIG_IGN);
    ex = migrate_send(&m);
    libdm_migration_unref(m.mig);
    libdm_dm_release(m.src);
    return ex;
}
