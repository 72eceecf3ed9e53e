/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-resume: resume latency after an incoming migration. Each run starts
 * a fresh pair of QEMU (-machine pc,accel=tcg -m 64 -S; the destination with
 * -incoming defer), migrates over a unix socket and measures, on the
 * destination's client, the time from the MIGRATION "completed" event
 * reaching the client to the reply of "cont":
 *   libdm  a libdm_qmp event listener that calls libdm_qmp_call_async("cont");
 *   raw    a blocking client that reads lines, writes cont, reads the reply.
 * The two are alternated. Usage: bench-resume [RUNS] (env QEMU).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libdm/libdm.h>
#include "bench-util.h"

static const char CAPS[] = "{\"execute\":\"migrate-set-capabilities\",\"arguments\":"
                           "{\"capabilities\":[{\"capability\":\"events\",\"state\":true}]}}\n";
static const char CAPS_ARGS[] = "{\"capabilities\":[{\"capability\":\"events\",\"state\":true}]}";

static bu_conn src, dst;

typedef struct pair {
    char sock_src[512], sock_dst[512], mig[512];
    pid_t src_pid, dst_pid;
} pair;

static int cmd(bu_conn *c, const char *text)
{
    return bu_write_all(c->fd, text, strlen(text)) == 0 && bu_read_until(c, "\"return\"") ? 0 : -1;
}

static int open_raw(bu_conn *c, const char *path)
{
    c->len = c->off = 0;
    c->fd = bu_connect_retry(path, 10000);
    return c->fd >= 0 && bu_negotiate(c) == 0 ? 0 : -1;
}

static int pair_start(pair *p, const char *dir)
{
    static const char *const se[] = { "-machine", "pc,accel=tcg", "-m", "64", NULL };
    static const char *const de[] = { "-machine", "pc,accel=tcg", "-m", "64",
                                      "-incoming", "defer", NULL };

    snprintf(p->sock_src, sizeof(p->sock_src), "%s/src.sock", dir);
    snprintf(p->sock_dst, sizeof(p->sock_dst), "%s/dst.sock", dir);
    snprintf(p->mig, sizeof(p->mig), "%s/mig.sock", dir);
    unlink(p->mig);
    p->src_pid = bu_spawn_qemu_unix(p->sock_src, se);
    p->dst_pid = bu_spawn_qemu_unix(p->sock_dst, de);
    if (p->src_pid < 0 || p->dst_pid < 0 || open_raw(&src, p->sock_src) < 0)
        return -1;
    return cmd(&src, CAPS) < 0 ||
           cmd(&src, "{\"execute\":\"migrate-set-parameters\",\"arguments\":"
                     "{\"max-bandwidth\":4294967296}}\n") < 0 ? -1 : 0;
}

static int start_migration(pair *p)
{
    char text[700];

    snprintf(text, sizeof(text),
             "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:%s\"}}\n", p->mig);
    return cmd(&src, text);
}

static void pair_stop(pair *p)
{
    if (src.fd >= 0)
        bu_quit(&src);
    if (p->src_pid > 0)
        bu_reap(p->src_pid, 5000);
    if (p->dst_pid > 0)
        bu_reap(p->dst_pid, 5000);
    unlink(p->mig);
}

static double run_raw(const char *dir)
{
    char text[700];
    double t0 = 0, t1 = 0;
    pair p;
    int ok;

    ok = pair_start(&p, dir) == 0 && open_raw(&dst, p.sock_dst) == 0 && cmd(&dst, CAPS) == 0;
    snprintf(text, sizeof(text),
             "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"unix:%s\"}}\n", p.mig);
    ok = ok && cmd(&dst, text) == 0 && start_migration(&p) == 0;
    for (char *l; ok && (l = bu_read_line(&dst));) {
        if (strstr(l, "\"MIGRATION\"") && strstr(l, "\"completed\"")) {
            t0 = bu_now_us();
            ok = cmd(&dst, "{\"execute\":\"cont\",\"id\":\"r\"}\n") == 0;
            t1 = bu_now_us();
            break;
        }
    }
    if (dst.fd >= 0)
        bu_quit(&dst);
    pair_stop(&p);
    return ok && t1 > 0 ? (t1 - t0) / 1000.0 : -1;
}

typedef struct lib_run {
    double t0, t1;
    int done;
    int status;
} lib_run;

static void on_cont(libdm_qmp *qmp, const libdm_qmp_reply *reply, void *userdata)
{
    lib_run *r = userdata;

    (void)qmp;
    r->t1 = bu_now_us();
    r->status = reply->status;
    r->done = 1;
}

static void on_migration(libdm_qmp *qmp, const char *event, const libdm_json *data,
                         void *userdata)
{
    lib_run *r = userdata;
    const char *st = libdm_json_get_string(libdm_json_object_get(data, "status"));
    int e;

    (void)event;
    if (!st || strcmp(st, "completed") != 0 || r->t0 > 0)
        return;
    r->t0 = bu_now_us();
    e = libdm_qmp_call_async(qmp, "cont", NULL, 0, on_cont, r, NULL);
    if (e < 0) {
        r->status = e;
        r->done = 1;
    }
}

static int lib_prepare(libdm_ctx *ctx, libdm_qmp **q, pair *p, lib_run *r)
{
    char args[700];

    if (libdm_qmp_open(ctx, p->sock_dst, 10000, q) < 0 ||
        libdm_qmp_call_text(*q, "migrate-set-capabilities", CAPS_ARGS, 0, NULL) < 0 ||
        libdm_qmp_add_event_listener(*q, "MIGRATION", on_migration, r, NULL) < 0)
        return -1;
    snprintf(args, sizeof(args), "{\"uri\":\"unix:%s\"}", p->mig);
    return libdm_qmp_call_text(*q, "migrate-incoming", args, 0, NULL);
}

static double run_lib(libdm_ctx *ctx, const char *dir)
{
    libdm_qmp *q = NULL;
    lib_run r = { 0, 0, 0, -1 };
    pair p;
    int ok;

    ok = pair_start(&p, dir) == 0 && lib_prepare(ctx, &q, &p, &r) == 0 &&
         start_migration(&p) == 0;
    while (ok && !r.done)
        ok = libdm_ctx_run_once(ctx, 10000) > 0;
    if (q) {
        libdm_qmp_call(q, "quit", NULL, 5000, NULL); /* EOF instead of a reply is fine */
        libdm_qmp_close(q, 5000);
    }
    pair_stop(&p);
    return ok && r.status == 0 ? (r.t1 - r.t0) / 1000.0 : -1;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 10, fail = 0;
    double *l = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    double *w = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    char *dir = bu_mkdtemp("resume"), a[64], b[64];
    libdm_ctx *ctx = NULL;
    double ml, mw;

    if (n < 1 || !l || !w || !dir || libdm_ctx_new(NULL, &ctx) < 0)
        return 1;
    src.fd = dst.fd = -1;
    for (int i = 0; i < n && !fail; i++) {
        l[i] = run_lib(ctx, dir);
        w[i] = run_raw(dir);
        fail = l[i] < 0 || w[i] < 0;
    }
    if (!fail) {
        puts("bench-resume: MIGRATION completed event -> cont reply on the destination (ms)");
        bu_print_stats("libdm (listener + call_async)", l, (size_t)n, "ms");
        bu_print_stats("raw blocking client", w, (size_t)n, "ms");
        ml = bu_median(l, (size_t)n);
        mw = bu_median(w, (size_t)n);
        snprintf(a, sizeof(a), "%.3f ms", ml);
        snprintf(b, sizeof(b), "%.3f ms", mw);
        bu_result("resume after migration", a, b, ml / mw, "<= 0.3 ms", ml <= 0.3 ? "yes" : "NO");
    } else {
        fprintf(stderr, "bench-resume: a run failed\n");
    }
    libdm_ctx_free(ctx);
    bu_rmtree(dir);
    return fail;
}
