/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internal interfaces shared by the files of libdm. Prefix libdm__. */
#ifndef LIBDM_INTERNAL_H
#define LIBDM_INTERNAL_H

#include "config.h"
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <libdm/libdm.h>

#define LIBDM__UNUSED __attribute__((unused))
#define LIBDM__PRINTF(a, b) __attribute__((format(printf, a, b)))
#define LIBDM__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- logging (log.c) ---- */
void libdm__log(libdm_ctx *ctx, xentoollog_level level, int errnoval, const char *fmt,
                ...) LIBDM__PRINTF(4, 5);
#define LIBDM__DEBUG(ctx, ...) libdm__log((ctx), XTL_DEBUG, -1, __VA_ARGS__)
#define LIBDM__INFO(ctx, ...) libdm__log((ctx), XTL_INFO, -1, __VA_ARGS__)
#define LIBDM__WARN(ctx, ...) libdm__log((ctx), XTL_WARN, -1, __VA_ARGS__)
#define LIBDM__ERROR(ctx, ...) libdm__log((ctx), XTL_ERROR, -1, __VA_ARGS__)
bool libdm__log_enabled(libdm_ctx *ctx, xentoollog_level level);

/* ---- small utilities (util.c) ---- */
/* malloc'd printf; NULL on failure. */
char *libdm__sprintf(const char *fmt, ...) LIBDM__PRINTF(1, 2);
/* Replaces *slot by a malloc'd printf (old value freed); keeps the old one on
 * allocation failure. */
void libdm__set_error(char **slot, const char *fmt, ...) LIBDM__PRINTF(2, 3);
int libdm__set_cloexec(int fd, bool on);
int libdm__set_nonblock(int fd, bool on);
/* The start time of process @pid (field 22 of /proc/PID/stat), 0 if gone. */
uint64_t libdm__proc_start_time(int pid);
/* sendmsg() of @len bytes with @fd (if >= 0) attached by SCM_RIGHTS, never
 * raising SIGPIPE. Bytes sent, or negative errno. */
ssize_t libdm__send_with_fd(int sock, const void *buf, size_t len, int fd, int flags);
/* The scheduler state of @pid (R, S, D, T, Z, ... from /proc), '?' if gone. */
char libdm__proc_state(int pid);
/* Closes *fd if >= 0 and sets it to -1: the one way libdm closes an fd it owns. */
void libdm__close(int *fd);
/* @fd holds a lock (flock) of libdm's or a monitor connection: a child
 * forked later gets /dev/null in its place, so that it never keeps the
 * lock held or QEMU's one monitor client busy (util.c). */
void libdm__fork_drop_fd(int fd);

/* ---- event loop (loop.c) ---- */
typedef struct libdm__watch libdm__watch;
typedef void libdm__watch_fn(libdm_ctx *ctx, int fd, short revents, void *user);

typedef struct libdm__timer libdm__timer;
typedef void libdm__timer_fn(libdm_ctx *ctx, libdm__timer *timer, void *user);
/* Embedded in its owner; armed timers sit in the context's heap. */
struct libdm__timer {
    uint64_t deadline;
    uint64_t seq;      /* when armed: equal deadlines run in arming order */
    size_t heap_index; /* SIZE_MAX when not armed */
    libdm__timer_fn *fn;
    void *user;
    bool alone;        /* heavy: runs only as a dispatch's first callback */
    bool postponed;    /* on the context's list, deferred when a blocking call ends */
    libdm__timer *next_postponed;
};

int libdm__watch_add(libdm_ctx *ctx, int fd, short events, libdm__watch_fn *fn,
                     void *user, libdm__watch **ret_watch);
int libdm__watch_set_events(libdm__watch *watch, short events);
/* Stops watching; safe from inside any callback (freed after the batch). */
void libdm__watch_del(libdm__watch *watch);

void libdm__timer_init(libdm__timer *timer, libdm__timer_fn *fn, void *user);
/* Marks @timer heavy (hundreds of microseconds: file creations, a clone):
 * once due it runs as the first callback of a dispatch, never after others
 * in the same one, so a dispatch costs at most one heavy step. */
void libdm__timer_set_alone(libdm__timer *timer, bool alone);
int libdm__timer_arm(libdm_ctx *ctx, libdm__timer *timer, uint64_t deadline_ms);
void libdm__timer_disarm(libdm_ctx *ctx, libdm__timer *timer);
bool libdm__timer_armed(const libdm__timer *timer);
/* Runs @timer's callback at the next loop iteration (a zero deadline): how
 * completions are kept out of the call that started them. */
int libdm__defer(libdm_ctx *ctx, libdm__timer *timer);

/* Runs the loop until done(arg) is true or @deadline_ms passes (-ETIMEDOUT).
 * -EDEADLK when called from inside a libdm callback. */
int libdm__wait(libdm_ctx *ctx, bool (*done)(void *arg), void *arg, uint64_t deadline_ms);
/* The same for a blocking call made for @owner (a DM, a standalone QMP
 * connection): meanwhile every object's events are still read and handled
 * inside libdm, but nothing of another object reaches the host: its
 * callbacks check libdm__blocking_other() and libdm__postpone() the timer
 * that delivers them; those timers run when the outermost blocking call
 * ends. The idle callback waits too. */
int libdm__wait_for(libdm_ctx *ctx, const void *owner, bool (*done)(void *arg), void *arg,
                    uint64_t deadline_ms);
/* Whether a blocking call for another object than @owner runs. */
bool libdm__blocking_other(libdm_ctx *ctx, const void *owner);
/* Defers @timer once the blocking call ends (disarming it forgets that). */
void libdm__postpone(libdm_ctx *ctx, libdm__timer *timer);
/* Depth of libdm callbacks currently running on this context. */
unsigned libdm__dispatch_depth(libdm_ctx *ctx);
/* Fresh QMP command id, unique across connections and processes: a random
 * per-context nonce then a counter, in base64url (see ctx.c for why short). */
int libdm__next_id(libdm_ctx *ctx, char *buf, size_t len);

struct libdm__store;
/* The context's record store, opened on first use. */
int libdm__ctx_store(libdm_ctx *ctx, struct libdm__store **ret_store);
/* Connections draining after close_async: counted so ctx_free waits. */
void libdm__ctx_closing_add(libdm_ctx *ctx, int delta);

/* Children no context follows any more (a keeper whose context was freed
 * before it exited): @pidfd is kept process-wide and reaped by a later
 * libdm_ctx_new(), libdm_ctx_free() or dispatch (once a second at most;
 * @now: at once). */
void libdm__orphan_add(int pidfd);
void libdm__orphans_reap(bool now);

/* Deadline helper: now + ms, saturating; ms < 0 means "never". */
uint64_t libdm__deadline(int timeout_ms);

/* ---- JSON (json.c) ---- */
typedef struct libdm__json_limits {
    size_t max_bytes;
    unsigned max_depth;
    size_t max_values;
} libdm__json_limits;
extern const libdm__json_limits libdm__json_default_limits;
/* Parses with @limits; *ret_why gets a static reason on failure. */
int libdm__json_parse_bounded(const char *text, size_t len, const libdm__json_limits *limits,
                              libdm_json **ret_value, const char **ret_why);
/* Removes member @key from @object and returns it (caller owns), or NULL. */
libdm_json *libdm__json_detach(libdm_json *object, const char *key);
/* The string member @key of @object, or NULL. */
const char *libdm__json_get_str(const libdm_json *object, const char *key);
/* Any JSON number as a double (QEMU's ram.mbps is fractional); -EINVAL. */
int libdm__json_get_double(const libdm_json *v, double *ret);
/* Serialises a QMP command: {"execute":..,"arguments":..,"id":..}\n. */
int libdm__json_qmp_command(const char *execute, const libdm_json *arguments, const char *id,
                            bool oob, char **ret_text, size_t *ret_len);

/* ---- QMP framing (qmp-decoder.c): no I/O, fuzzable ---- */
typedef struct libdm__qmp_decoder libdm__qmp_decoder;
int libdm__qmp_decoder_new(const libdm__json_limits *limits, libdm__qmp_decoder **ret);
libdm__qmp_decoder *libdm__qmp_decoder_free(libdm__qmp_decoder *d);
/* Appends bytes. -E2BIG when a message exceeds the size bound. */
int libdm__qmp_decoder_feed(libdm__qmp_decoder *d, const void *buf, size_t len);
/* Next complete message: 1 and *ret_msg (caller owns) if one was decoded, 0
 * if more bytes are needed, negative errno (and *ret_why) if the stream is
 * malformed or a bound is exceeded. */
int libdm__qmp_decoder_next(libdm__qmp_decoder *d, libdm_json **ret_msg, const char **ret_why);
size_t libdm__qmp_decoder_buffered(const libdm__qmp_decoder *d);

#endif
