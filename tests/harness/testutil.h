/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by the cmocka tests: fd and child accounting, temporary
 * directories, starting a real QEMU the way a test needs it. */
#ifndef LIBDM_TESTUTIL_H
#define LIBDM_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Number of open descriptors of this process. */
int tu_fd_count(void);
/* An async libdm call's completion, for tests: tu_on_done sets .done and
 * .status of the tu_done given as userdata. */
typedef struct tu_done {
    bool done;
    int status;
} tu_done;
struct libdm_dm;
void tu_on_done(struct libdm_dm *dm, int status, void *user);
/* Every open fd and its target on stderr, each line tagged @why. */
void tu_fds_print(const char *why);
/* tu_fd_count(), and when it is not @want, the fds on stderr first:
 * assert_int_equal(tu_fd_count_is(n, "after X"), n) names the leak. */
int tu_fd_count_is(int want, const char *why);
/* Number of children of this process (zombies included), from /proc. */
int tu_child_count(void);
/* A fresh directory under $TMPDIR or /tmp (mode 0700); caller frees. */
char *tu_mkdtemp(const char *tag);
/* rm -r of a directory made by tu_mkdtemp (no symlink following). */
void tu_rmtree(const char *path);
/* The QEMU binary tests use ($LIBDM_TEST_QEMU or qemu-system-x86_64). */
const char *tu_qemu(void);
/* True if a real QEMU can run here; tests skip otherwise. */
bool tu_have_qemu(void);
/* True if pidfd_open works: libdm follows its keeper through a pidfd;
 * valgrind 3.19 does not know pidfd_open (ENOSYS there), so real DMs
 * cannot run under it. */
bool tu_have_pidfd(void);
/* Starts "qemu -S -nodefaults -display none -machine none -qmp
 * unix:PATH,server=on,wait=off" plus @extra (NULL-terminated, may be NULL),
 * stdout/stderr to /dev/null. Returns the pid. */
pid_t tu_spawn_qemu_qmp(const char *sock_path, const char *const *extra);
/* waitpid with a deadline; SIGKILLs at the deadline. Returns the status. */
int tu_reap(pid_t pid, int timeout_ms);
/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t tu_now_ms(void);
/* Writes printf(@fmt, ...) (at most 511 bytes) to @fd, all of it: whether
 * it did (a peer scripted by hand in a test). */
bool tu_sayf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The process exists (kill(pid, 0)). */
bool tu_pid_alive(int pid);
/* DIR/NAME exists (lstat: a dangling symlink counts). */
bool tu_path_exists(const char *dir, const char *name);
/* Runs @ctx's loop until this process has at most @want children or 5 s
 * pass: keepers are libdm's children until it reaps them. */
struct libdm_ctx;
void tu_settle_children(struct libdm_ctx *ctx, int want);
/* 0 if real-QEMU device-model tests can run (QEMU, $LIBDM_KEEPER), else
 * prints why and returns 77, the automake "skipped" status. */
int tu_require_dm_env(void);

/* TAP for the tests that are not cmocka's: tu_ok() counts a check and
 * prints "ok N - @what", or "not ok N - @what" and "#   @detail" (if not
 * NULL); tu_tap_done() prints the plan "1..N" and returns the exit status:
 * 1 if a check failed, else 0. */
void tu_ok(bool cond, const char *what, const char *detail);
int tu_tap_done(void);

/* Calls @fn for every process whose /proc/PID/@file could be read: @buf
 * holds its first bytes (NUL-terminated; for cmdline, NUL-separated words,
 * @len long). @fn returns false to stop the walk. */
typedef bool tu_proc_fn(int pid, const char *buf, ssize_t len, void *user);
void tu_proc_each(const char *file, tu_proc_fn *fn, void *user);
/* The "-name" word that follows "-name" in a QEMU's cmdline, if it starts
 * with @prefix; else NULL. */
const char *tu_qemu_name(const char *cmdline, ssize_t len, const char *prefix);
/* The QEMUs (argv[0] a qemu-system binary) whose -name starts with
 * @prefix: how many; with @kill, each is SIGKILLed too (a failed test's
 * leftovers, never for the next test). */
int tu_qemus_named(const char *prefix, bool kill);

#endif
