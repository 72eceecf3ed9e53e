/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl: a command-line client of libdm (internal declarations shared by the
 * tools/dmctl*.c files). Only libdm's public API is used.
 */
#ifndef DMCTL_H
#define DMCTL_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>

#include <libdm/libdm.h>

/* Exit statuses (see dmctl(1), EXIT STATUS). */
enum {
    DMCTL_EXIT_OK = 0,
    DMCTL_EXIT_FAIL = 1,     /* the operation failed */
    DMCTL_EXIT_USAGE = 2,    /* bad command line */
    DMCTL_EXIT_TIMEOUT = 3,  /* a deadline passed (-ETIMEDOUT) */
    DMCTL_EXIT_UNKNOWN = 4,  /* migrate: outcome unknown, source left paused */
    DMCTL_EXIT_INTERRUPTED = 5, /* SIGINT/SIGTERM/SIGHUP: stopped, drained */
    /* Not an exit status: help was printed, the command ends (exit 0). Any
     * non-zero value stops a command; main() maps this one to 0. */
    DMCTL_EXIT_HELP = -1,
};

#define DMCTL_DEFAULT_TIMEOUT_MS 30000

/* Global options and the lazily created context. */
typedef struct dmctl {
    const char *store;       /* --store, NULL: auto */
    char *store_abs;         /* --store made absolute (owned) */
    bool json;               /* --json */
    int timeout_ms;          /* --timeout, per operation */
    int verbose;             /* -v count */
    xentoollog_logger *lg;
    libdm_ctx *ctx;
} dmctl;

typedef int dmctl_cmd_fn(dmctl *d, int argc, char **argv);

typedef struct dmctl_command {
    const char *name;
    dmctl_cmd_fn *fn;
    const char *usage;       /* arguments after the command name */
    const char *summary;     /* one line */
    const char *help;        /* details for "help COMMAND", may be NULL */
} dmctl_command;

/* ---- dmctl.c: command table, help, option parsing shared by commands ---- */
const dmctl_command *dmctl_find_command(const char *name);
/* Prints "dmctl: MESSAGE" and the command's usage on stderr; returns 2. */
int dmctl_usage_error(const dmctl_command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints the help of @cmd on stdout; returns 0. */
int dmctl_print_command_help(const dmctl_command *cmd);

/*
 * Per-command option parsing. Every command accepts the global options too
 * (--store, --json, --timeout, -v) and --help. dmctl_getopt() returns the
 * next command-specific option (as getopt_long does), handles the common
 * ones itself, and returns -1 at the end, or DMCTL_OPT_STOP with *ret_exit
 * set (help printed: DMCTL_EXIT_HELP; usage error: 2).
 */
#define DMCTL_OPT_STOP (-2)
int dmctl_getopt(dmctl *d, const dmctl_command *cmd, int argc, char **argv,
                 const struct option *cmd_opts, int *ret_exit);
/* Handles a global option; returns 0, or 2 (message printed) if invalid. */
int dmctl_global_option(dmctl *d, int opt, const char *arg);

/* ---- dmctl-log.c ---- */
/* A stderr logger at @level; with @hold, libdm's warnings and errors are
 * held back for dmctl_logger_take_*() and never printed as errors: unused
 * warnings print at destroy, unused errors are dropped (the failure they
 * belong to is reported by dmctl, once). */
xentoollog_logger *dmctl_logger_new(xentoollog_level level, bool hold);
/* With @same NULL: the last held message (caller frees), or NULL; the held
 * ones saying the same are dropped. With @same: drops held messages saying
 * the same (equal, or "PREFIX: " @same), returns NULL. */
char *dmctl_logger_take_error(xentoollog_logger *lg, const char *same);
/* The first held error (caller frees) or NULL; drops every held message.
 * When a failure sets off cleanup errors, the first one is the cause. */
char *dmctl_logger_take_first_error(xentoollog_logger *lg);
/* Drops every held message (dmctl says it better, or it is expected). */
void dmctl_logger_discard(xentoollog_logger *lg);

/* ---- dmctl-util.c ---- */
/* Creates the context (logger, store) on first use. 0 or an exit status. */
int dmctl_open_ctx(dmctl *d);
void dmctl_close(dmctl *d);

/* The one mapping from a negative errno to an exit status: 3 for
 * -ETIMEDOUT, else 1. Every failure's exit status goes through it. */
int dmctl_exit_for(int err);
/* What libdm accepts as a NAME (said in usage errors). */
#define DMCTL_NAME_RULE "1-64 of A-Za-z0-9_.-, not starting with '.' or '-'"
/* 0 if libdm accepts @name as a DM name; else "dmctl: invalid NAME ..." is
 * printed and the result is 2 (a usage error), whatever the command. */
int dmctl_check_name(const char *name);
/* "dmctl: WHAT: MESSAGE" on stderr (WHAT may be NULL). */
void dmctl_error(const char *what, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Reports a failed operation on @dm (may be NULL): "dmctl: NAME: OP: cause"
 * with the cause from the DM's last error, the QMP error, libdm's held-back
 * error message, or strerror; returns the exit status for @err. */
int dmctl_report_dm(dmctl *d, libdm_dm *dm, const char *name, const char *op, int err);
/* Reports a failed start of @name (@dm: the failed DM, or NULL): one line
 * naming the cause, not what its clean-up ran into. */
int dmctl_report_start(dmctl *d, libdm_dm *dm, const char *name, int err);
/* Reports a failed QMP call on @q. */
int dmctl_report_qmp(dmctl *d, libdm_qmp *q, const char *what, const char *command, int err);
/* Attaches to the DM called @name, reporting failures (an invalid NAME: 2;
 * a DM whose monitor does not answer: its cause, 3 for a deadline); 0 or an
 * exit status. */
int dmctl_attach(dmctl *d, const char *name, libdm_dm **ret_dm);
/* Reports a failed libdm_dm_attach() (@r); returns the exit status. */
int dmctl_report_attach(dmctl *d, const char *name, int r);
/* Opens a QMP connection to @path, reporting failures; 0 or an exit status. */
int dmctl_open_socket(dmctl *d, const char *path, libdm_qmp **ret_qmp);
/* Closes (drains) @q; a wedged monitor is reported: 0 or an exit status. */
int dmctl_close_socket(dmctl *d, const char *path, libdm_qmp *q);

/* Number parsing; false if @s is not entirely a number in range. */
bool dmctl_parse_u64(const char *s, uint64_t max, uint64_t *ret);
bool dmctl_parse_seconds(const char *s, int *ret_ms);
/* The HOST of "tcp:HOST" (--listen, --uri-host): "[IPV6]" or "[IPV6%ZONE]"
 * (brackets removed), a bare IPv6 literal, an IPv4 address or a host name.
 * Returns the host without brackets (malloc'd) and whether it is IPv6, or
 * NULL with errno EINVAL (malformed: unbalanced brackets, an empty host, a
 * port, spaces or commas) or ENOMEM. */
char *dmctl_parse_tcp_host(const char *s, bool *ret_v6);
/* "tcp:HOST:PORT", HOST in brackets when @v6; malloc'd or NULL. */
char *dmctl_tcp_uri(const char *host, bool v6, const char *port);
/* Makes @path absolute (relative to the working directory; a bare name is
 * looked up in $PATH if @search_path). Returns a malloc'd string or NULL. */
char *dmctl_absolute_path(const char *path, bool search_path);

/* A wait status in words ("exited with status 0", "killed by signal 9"). */
const char *dmctl_describe_wait(int status, char *buf, size_t len);

/* JSON output: prints @v (consumed) on stdout, compact on one line. */
int dmctl_json_emit(libdm_json *v);
/* DM-supplied text made safe for a terminal (dmctl-safe.c): control bytes,
 * DEL, non-ASCII and backslash as \xNN / \\, at most @max bytes of @s
 * ("..." after). NULL for NULL or out of memory. */
char *dmctl_safe(const char *s, size_t max);
void dmctl_put_safe(FILE *f, const char *s, size_t max);
/* dmctl_safe(@s, DMCTL_SAFE_SHORT); frees @s. */
char *dmctl_safe_take(char *s);
/* @text (JSON) with every C1 control (U+0080-U+009F) as \u00XX. */
char *dmctl_json_escape_c1(const char *text);
#define DMCTL_SAFE_SHORT 256
#define DMCTL_SAFE_LINE 8192
/* Adds a string member, or null when @s is NULL. false on failure. */
bool dmctl_json_add_str(libdm_json *o, const char *key, const char *s);
bool dmctl_json_add_int(libdm_json *o, const char *key, int64_t i);
bool dmctl_json_add_bool(libdm_json *o, const char *key, bool b);

/* Prints a DM's record (start): aligned "key: value" lines or JSON. */
int dmctl_print_dm(const dmctl *d, libdm_dm *dm);
/* start --dry-run: the command line libdm would give QEMU (its monitor as
 * fd 3), one element a line, or {"argv": [...]} with --json (dmctl-plan.c). */
int dmctl_print_plan(const dmctl *d, const libdm_dm_config *cfg);
/* Prints "key: value" with the key padded to @width. */
void dmctl_print_kv(int width, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- dmctl-signal.c ---- */
/* SIGINT/SIGTERM/SIGHUP never kill dmctl: they are recorded, a burst counts
 * as one interruption, the operation stops at its next safe point, the
 * monitor is drained and dmctl exits 4. A later, separate signal only cuts
 * the drain short. */
void dmctl_install_signal_handlers(void);
int dmctl_signal_received(void);   /* 0 or the (first) signal number */
void dmctl_signal_forget(void);    /* a signal that came too late */
const char *dmctl_signal_name(int sig);
/* Runs libdm's loop until *@done: 0, or -EINTR if interrupted first (then
 * *@done may still be false), or a loop error. The operation waited for
 * must have its own deadline. */
int dmctl_wait(dmctl *d, const bool *done);
/* Runs libdm's loop until @q (may be NULL) has no reply outstanding: 1, or
 * 0 if the drain deadline (--timeout, cut short by a later, separate
 * signal) passed first, or a loop error. */
int dmctl_drain(dmctl *d, libdm_qmp *q);

/* ---- commands (dmctl-cmds.c, dmctl-demo.c, dmctl-migrate.c) ---- */
int dmctl_cmd_start(dmctl *d, int argc, char **argv);
int dmctl_cmd_status(dmctl *d, int argc, char **argv);
int dmctl_cmd_resume(dmctl *d, int argc, char **argv);
int dmctl_cmd_pause(dmctl *d, int argc, char **argv);
int dmctl_cmd_qmp(dmctl *d, int argc, char **argv);
/* Exactly @n positional arguments remain after the options: 0, or 2. */
int dmctl_expect_args(const dmctl_command *cmd, int argc, int n, const char *what);
int dmctl_cmd_stop(dmctl *d, int argc, char **argv);
int dmctl_cmd_list(dmctl *d, int argc, char **argv);
int dmctl_cmd_demo(dmctl *d, int argc, char **argv);
/* dmctl-migrate.c */
int dmctl_cmd_migrate(dmctl *d, int argc, char **argv);
int dmctl_cmd_migrate_receive(dmctl *d, int argc, char **argv);
int dmctl_cmd_migrate_cancel(dmctl *d, int argc, char **argv);
/* migrate-recover NAME (--to CMD | --destination-gone); also reachable as
 * "migrate NAME --recover ..." */
int dmctl_cmd_migrate_recover(dmctl *d, int argc, char **argv);

#endif
