/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl migrate, migrate-receive and --recover: what the files of the
 * migration commands share (the protocol is described in dmctl-migrate.c
 * and dmctl(1), PROTOCOL OF MIGRATE):
 *   dmctl-migrate-chan.c     the control channel, its messages, children
 *   dmctl-migrate.c          the sender: Begin, Prepare, Finish, Confirm
 *   dmctl-migrate-perform.c  the sender's Perform: hook and progress
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

#define CHAN_MAX_LINE (64 * 1024)
/* The protocol's version: 1 had no "version" member (and is still
 * understood); 2 adds the migration's id, its epoch and the deadlines. A
 * side refuses a version it does not know. */
#define MIG_PROTO_VERSION 2
#define PROGRESS_PLAIN_MS 500
#define PEER_MAX_TIMEOUT_MS (24 * 3600 * 1000)

typedef struct chan {
    int in, out;        /* -1: closed */
    char buf[CHAN_MAX_LINE + 1];
    size_t len;         /* bytes buffered, not yet consumed */
    bool eof;
} chan;

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

/* How far the sender got: from FINISH_SENT on (a finish that lets the
 * destination run may have left) the source is never resumed unless the
 * destination answered that it stopped. */
typedef enum sender_stage {
    STAGE_BEGIN,
    STAGE_PREPARE,
    STAGE_PERFORM,
    STAGE_FINISH_SENT,
    STAGE_ANSWERED,
} sender_stage;

/* The end of a migration as dmctl reports it. */
typedef enum sender_outcome {
    OUTCOME_MIGRATED,        /* the destination has the guest; the source went */
    OUTCOME_FAILED,          /* the source has the guest */
    OUTCOME_LOST,            /* the only QEMU holding it died */
    OUTCOME_UNKNOWN,         /* nobody knows here: the source stays paused */
} sender_outcome;

typedef struct migration {
    dmctl *d;
    migrate_opts o;
    libdm_dm *src;
    chan ch;
    pid_t peer;              /* the --to command, or -1 */
    uint64_t perform_deadline;
    sender_stage stage;
    sender_outcome outcome;
    libdm_migrate_source source;   /* the source's word after Perform */
    const char *failed_in;   /* the phase that failed, or NULL */
    int err;
    char *why;               /* dmctl's own cause, else libdm's */
    char *runstate;          /* the destination's, from "finished" */
    char *record_error;      /* "finished", but the destination's record is stale */
    char *unknown_why;       /* why the finish got no answer */
    char id[33];             /* the migration's identity, made at Begin */
    libdm_json *doc;         /* the source's configuration document (prepare) */
    uint64_t prepared_at;    /* when "prepared" arrived: the finish's answer is
                              * awaited until prepared_at + 2 x timeout, never
                              * less than the receiver obeys it */
    bool prepared;           /* the receiver has a destination DM */
    bool cancel_sent;
    bool peer_lost;          /* the channel failed: the peer's status tells why */
    bool confirm_failed;
    bool local_runs;         /* recover: the local DM runs (not a stranded source) */
    uint64_t last_print_ms;
    bool bar_drawn;
    char last_status[32];
    uint64_t last_transferred;
} migration;

/* Set once the source's migration completed: signals no longer end the
 * channel's waits (issue 22, 11). */
extern bool too_late_to_cancel;

int remaining_ms(uint64_t deadline);
uint64_t deadline_in(int ms);
uint64_t obey_margin_ms(int64_t timeout_ms);
uint64_t realtime_ms(void);
int wait_fd(int fd, short events, uint64_t deadline);
void chan_init(chan *ch, int in, int out);
void chan_close_out(chan *ch);
void chan_close(chan *ch);
bool chan_peer_gone(chan *ch);
int chan_recv(chan *ch, uint64_t deadline, libdm_json **ret);
int chan_send(chan *ch, libdm_json *msg, uint64_t deadline);
const char *chan_strerror(int err);
libdm_json *msg_new(const char *phase);
libdm_json *msg_check(libdm_json *o, bool ok);
const char *msg_phase(const libdm_json *msg);
const char *msg_str(const libdm_json *msg, const char *key);
bool msg_bool(const libdm_json *msg, const char *key, bool *ret);
int wait_child(pid_t pid, uint64_t deadline, int *ret_status);
void exec_shell(const char *command);
int peer_version(const libdm_json *msg);
int fail(migration *m, const char *phase, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int fail_peer_lost(migration *m);
int fail_err(migration *m, const char *phase, int err);
int migrate_parse(dmctl *d, const dmctl_command *cmd, int argc, char **argv, migrate_opts *o);
int spawn_peer(migration *m);
int exchange(migration *m, const char *phase, libdm_json *msg, const char *want, uint64_t deadline, libdm_json **ret);
void migrate_phases(migration *m);
void do_confirm(migration *m);
void reap_peer(migration *m);
int migrate_report(migration *m);
int do_perform(migration *m, const char *uri);
bool finish_may_run(libdm_migrate_source source);

#endif
