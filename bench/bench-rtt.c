/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-rtt: COUNT query-status on one connection to a real QEMU
 * (-machine none), library vs the minimal blocking client, alternated:
 *   sequential  libdm_qmp_call() vs write + read one line;
 *   pipelined   COUNT libdm_qmp_call_async() then the loop until all replied,
 *               vs writing everything then reading everything (poll()ing both
 *               directions so neither socket buffer can deadlock).
 * Connecting and closing are outside the timed region.
 * Usage: bench-rtt [RUNS [COUNT]] (env QEMU).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libdm/libdm.h>
#include "bench-util.h"

/* The floor sends an id like libdm's (6-digit nonce + counter): a real
 * client needs one to match replies, and QEMU 7.2 spends about 30 us more
 * on a command that carries an id (measured with and without), which would
 * otherwise be counted as libdm's cost. */
static const char QS[] = "{\"execute\":\"query-status\",\"id\":\"Xy3_9aBc\"}\n";
static bu_conn conn;
static int count = 10000;

static libdm_qmp *lib_open(libdm_ctx *ctx, const char *path)
{
    libdm_qmp *q = NULL;
    int r = libdm_qmp_open(ctx, path, 5000, &q);

    if (r < 0)
        fprintf(stderr, "bench-rtt: libdm_qmp_open: %s\n", strerror(-r));
    return r < 0 ? NULL : q;
}

static double lib_seq(libdm_ctx *ctx, const char *path)
{
    libdm_qmp *q = lib_open(ctx, path);
    double t0, t1;
    int r = 0;

    if (!q)
        return -1;
    t0 = bu_now_us();
    for (int i = 0; i < count && r >= 0; i++) {
        libdm_json *v = NULL;

        r = libdm_qmp_call(q, "query-status", NULL, 0, &v);
        libdm_json_free(v);
    }
    t1 = bu_now_us();
    libdm_qmp_close(q, 5000);
    return r < 0 ? -1 : count / ((t1 - t0) / 1e6);
}

typedef struct pipe_state {
    int done;
    int failed;
} pipe_state;

static void on_reply(libdm_qmp *qmp, const libdm_qmp_reply *reply, void *userdata)
{
    pipe_state *s = userdata;

    (void)qmp;
    s->done++;
    if (reply->status < 0)
        s->failed++;
}

static double lib_pipe(libdm_ctx *ctx, const char *path)
{
    libdm_qmp *q = lib_open(ctx, path);
    pipe_state s = { 0, 0 };
    double t0, t1;
    int r = 0;

    if (!q)
        return -1;
    t0 = bu_now_us();
    for (int i = 0; i < count && r >= 0; i++)
        r = libdm_qmp_call_async(q, "query-status", NULL, 0, on_reply, &s, NULL);
    while (r >= 0 && s.done < count)
        r = libdm_ctx_run_once(ctx, -1);
    t1 = bu_now_us();
    libdm_qmp_close(q, 5000);
    if (r < 0 || s.failed)
        fprintf(stderr, "bench-rtt: pipelined: %s, %d failed\n", strerror(-r), s.failed);
    return r < 0 || s.failed ? -1 : count / ((t1 - t0) / 1e6);
}

static int floor_open(const char *path)
{
    conn.len = conn.off = 0;
    conn.fd = bu_connect_retry(path, 5000);
    if (conn.fd < 0 || bu_negotiate(&conn) < 0) {
        if (conn.fd >= 0)
            close(conn.fd);
        return -1;
    }
    return 0;
}

static double floor_seq(const char *path)
{
    double t0, t1;
    int ok = 1;

    if (floor_open(path) < 0)
        return -1;
    t0 = bu_now_us();
    for (int i = 0; i < count && ok; i++)
        ok = bu_write_all(conn.fd, QS, sizeof(QS) - 1) == 0 && bu_read_line(&conn);
    t1 = bu_now_us();
    close(conn.fd);
    return ok ? count / ((t1 - t0) / 1e6) : -1;
}

/* Counts complete lines in the bytes read; returns -1 on EOF. */
static int floor_read_some(int *lines)
{
    char buf[65536];
    ssize_t r = read(conn.fd, buf, sizeof(buf));

    if (r < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    if (r == 0)
        return -1;
    for (char *p = buf; (p = memchr(p, '\n', (size_t)(buf + r - p))); p++)
        (*lines)++;
    return 0;
}

static double floor_pipe(const char *path)
{
    size_t total = (size_t)count * (sizeof(QS) - 1), sent = 0;
    char *out = malloc(total);
    double t0, t1;
    int lines = 0;

    if (!out || floor_open(path) < 0) {
        free(out);
        return -1;
    }
    for (int i = 0; i < count; i++)
        memcpy(out + (size_t)i * (sizeof(QS) - 1), QS, sizeof(QS) - 1);
    fcntl(conn.fd, F_SETFL, O_NONBLOCK);
    t0 = bu_now_us();
    while (lines < count) {
        struct pollfd p = { conn.fd, (short)(POLLIN | (sent < total ? POLLOUT : 0)), 0 };

        poll(&p, 1, -1);
        if (p.revents & POLLOUT) {
            ssize_t w = write(conn.fd, out + sent, total - sent);
            if (w > 0)
                sent += (size_t)w;
        }
        if ((p.revents & (POLLIN | POLLHUP)) && floor_read_some(&lines) < 0)
            break;
    }
    t1 = bu_now_us();
    close(conn.fd);
    free(out);
    return lines >= count ? count / ((t1 - t0) / 1e6) : -1;
}

static void report(const char *what, double *lib, double *flo, int n)
{
    char a[64], b[64], name[64];
    double ml, mf;

    printf("bench-rtt %s: %d query-status (commands/s)\n", what, count);
    bu_print_stats("libdm", lib, (size_t)n, "cmd/s");
    bu_print_stats("floor (blocking client)", flo, (size_t)n, "cmd/s");
    ml = bu_median(lib, (size_t)n);
    mf = bu_median(flo, (size_t)n);
    snprintf(a, sizeof(a), "%.0f cmd/s", ml);
    snprintf(b, sizeof(b), "%.0f cmd/s", mf);
    snprintf(name, sizeof(name), "rtt: %s", what);
    bu_result(name, a, b, ml / mf, ">= 0.95x", ml / mf >= 0.95 ? "yes" : "NO");
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 10;
    char *dir = bu_mkdtemp("rtt"), path[512];
    static const char *const extra[] = { "-machine", "none", NULL };
    double *ls = calloc((size_t)n, sizeof(double)), *fs = calloc((size_t)n, sizeof(double));
    double *lp = calloc((size_t)n, sizeof(double)), *fp = calloc((size_t)n, sizeof(double));
    libdm_ctx *ctx = NULL;
    int fail = 0;
    pid_t pid;

    count = argc > 2 ? atoi(argv[2]) : count;
    if (n < 1 || count < 1 || !dir || !ls || !fs || !lp || !fp || libdm_ctx_new(NULL, &ctx) < 0)
        return 1;
    snprintf(path, sizeof(path), "%s/qmp.sock", dir);
    pid = bu_spawn_qemu_unix(path, extra);
    for (int i = 0; i < n && !fail; i++) {
        ls[i] = lib_seq(ctx, path);
        fs[i] = floor_seq(path);
        lp[i] = lib_pipe(ctx, path);
        fp[i] = floor_pipe(path);
        fail = ls[i] < 0 || fs[i] < 0 || lp[i] < 0 || fp[i] < 0;
    }
    if (!fail) {
        report("sequential", ls, fs, n);
        report("pipelined", lp, fp, n);
    } else {
        fprintf(stderr, "bench-rtt: a run failed\n");
    }
    if (floor_open(path) == 0)
        bu_quit(&conn);
    bu_reap(pid, 5000);
    libdm_ctx_free(ctx);
    bu_rmtree(dir);
    return fail;
}
