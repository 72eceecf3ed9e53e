/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Shared helpers of the benchmarks: clock, statistics, the result line that
 * run-bench.sh turns into the final table, spawning QEMU, and the minimal
 * blocking QMP client used as the floor.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define BU_QEMU_DEFAULT "/usr/bin/qemu-system-x86_64"

/* A blocking QMP client: one fd and a line buffer. */
/* A read of a QMP line waits at most this long (bu_conn.timeout_ms, 0:
 * this default). */
#define BU_READ_TIMEOUT_MS 20000

typedef struct bu_conn {
    int fd;
    int timeout_ms;
    size_t len;
    size_t off;
    char buf[1 << 16];
} bu_conn;

double bu_now_us(void);
const char *bu_qemu(void);
/* Median, min and max of @n samples (sorted in place). */
double bu_median(double *v, size_t n);
void bu_print_stats(const char *label, double *v, size_t n, const char *unit);
/* "RESULT|benchmark|library|floor|ratio|target|met" for run-bench.sh. */
void bu_result(const char *name, const char *lib, const char *floor_, double ratio,
               const char *target, const char *met);
void bu_raise_nofile(void);
/* mkdtemp under $TMPDIR or /tmp; caller frees. */
char *bu_mkdtemp(const char *tag);
void bu_rmtree(const char *dir);
/* fork + exec @argv with stdio on /dev/null; keeps fd @keep_fd (-1: none)
 * open in the child. Returns the pid or -1. */
pid_t bu_spawn(char *const argv[], int keep_fd);
/* Waits for @pid for up to @timeout_ms, then SIGKILLs it; always reaps. */
int bu_reap(pid_t pid, int timeout_ms);
/* Spawns `qemu -S -nodefaults -display none EXTRA... -qmp unix:PATH,...`. */
pid_t bu_spawn_qemu_unix(const char *path, const char *const *extra);

/* Floor client. */
int bu_connect_retry(const char *path, int timeout_ms);
int bu_write_all(int fd, const char *s, size_t len);
/* Next line (without the newline, NUL terminated) or NULL on EOF/error or
 * after the timeout (c->timeout_ms, else BU_READ_TIMEOUT_MS, per read). */
char *bu_read_line(bu_conn *c);
/* Reads lines until one contains @needle; returns it or NULL. */
char *bu_read_until(bu_conn *c, const char *needle);
/* Reads the greeting, sends qmp_capabilities, reads its reply. */
int bu_negotiate(bu_conn *c);
/* Sends quit and reads until EOF. */
void bu_quit(bu_conn *c);

/* A listening socket at @path (non-blocking, as libdm passes it: QEMU may
 * accept() on a spurious wakeup and would hang on a blocking one) and a
 * client connected to it before QEMU runs. The listening fd, or -1. */
int bu_prebind(const char *path, int *ret_client);

#endif
