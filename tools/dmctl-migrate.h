/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl migrate, migrate-receive and --recover: thin clients of libdm's
 * migration protocol (libdm_migration, migrate.h; the messages and decision
 * tables are in dmctl(1), PROTOCOL OF MIGRATE). dmctl only runs the
 * transport command (--to), the switchover hook, the progress display and
 * the messages:
 *   dmctl-migrate-chan.c     the transport command, the loop, signals
 *   dmctl-migrate.c          migrate: options, the sender, its report
 *   dmctl-migrate-perform.c  the switchover hook (with its guardian), progress
 *   dmctl-migrate-recover.c  migrate --recover, and the commands' entries
 *   dmctl-migrate-receive.c  migrate-receive
 */
#ifndef DMCTL_MIGRATE_H
#define DMCTL_MIGRATE_H

#include <libdm/libdm.h>

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "dmctl.h"

enum {
    OPT_TO = 0x3000,
    OPT_LIVE,
    OPT_PAUSE_BEFORE_SWITCHOVER,
    OPT_SWITCHOVER_HOOK,
    OPT_KEEP_PAUSED,
    OPT_URI_HOST,
    OPT_MACHINE,
    OPT_MEMORY,
    OPT_NAME,
    OPT_LISTEN,
    OPT_QEMU,
    OPT_RECOVER,
    OPT_DESTINATION_GONE,
};

#define PROGRESS_PLAIN_MS 500

typedef struct migrate_opts {
    const char *name;
    const char *to;
    const char *hook;
    const char *uri_host;
    const char *machine;
    uint64_t memory_mb;
    bool keep_paused;
    bool pause_before_switchover;
    bool recover;            /* migrate-recover */
    bool destination_gone;   /* migrate-recover --destination-gone */
} migrate_opts;

/* The switchover hook's process (dmctl-migrate-perform.c). */
typedef struct hook_proc {
    pid_t pid;               /* leader of its own process group, or -1 */
    pid_t guardian;
} hook_proc;

typedef struct migration {
    dmctl *d;
    migrate_opts o;
    libdm_dm *src;
    libdm_migration *mig;
    pid_t peer;              /* the --to command, or -1 */
    hook_proc hook;
    bool cancel_tried;
    bool too_late;           /* a signal came after the source completed */
    uint64_t last_print_ms;
    bool bar_drawn;
    char last_status[32];
    uint64_t last_transferred;
} migration;

int remaining_ms(uint64_t deadline);
/* @host (--listen tcp:HOST, --uri-host) as a numeric address, malloc'd:
 * libdm never resolves names (that could block its loop) and a restricted
 * QEMU cannot (no resolver files in its chroot); a CLI may block, so dmctl
 * resolves here, before the migration starts. NULL with a message on
 * stderr (@what names the option) when it cannot. */
char *resolve_host(const char *host, const char *what);
uint64_t deadline_in(int ms);
int wait_child(pid_t pid, uint64_t deadline, int *ret_status);
void exec_shell(const char *command);
/* Runs @command with its stdin and stdout as a channel: *ret_in reads
 * what it writes, *ret_out writes to it. */
int spawn_transport(const char *command, pid_t *ret_pid, int *ret_in, int *ret_out);
/* Waits for the --to command (it saw the channel close); @note_status:
 * whether a failure status is worth a note. */
void reap_transport(dmctl *d, const char *name, pid_t *pid, bool note_status);
/* Runs the context's loop until @mig ended; with @m (the sender) a signal
 * cancels and the hook is looked after. */
void run_migration(dmctl *d, libdm_migration *mig, migration *m);
int migrate_parse(dmctl *d, const dmctl_command *cmd, int argc, char **argv, migrate_opts *o);
int migrate_report(migration *m, int status);
/* migrate: the whole migration, then the report; an exit status. */
int migrate_send(migration *m);
/* The switchover hook and progress (dmctl-migrate-perform.c). */
void hook_start(libdm_migration *mig, void *user);
void hook_poll(migration *m);
void hook_kill(migration *m, int status, const char *why);
void on_progress(libdm_dm *src, const libdm_migrate_progress *p, void *user);

#endif
