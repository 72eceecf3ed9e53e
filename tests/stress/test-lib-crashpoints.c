/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 19, the library's crash-point campaign, against a real
 * qemu-system-x86_64 (-machine none) and the real libdm-keeper. Each round
 * picks an asynchronous operation (start, attach, resume, pause,
 * query-status, stop, query-devices, apply-config; and the context's list,
 * forget and monitor-holder), a way to abandon it and a moment (0-300 ms
 * after the call, most of them in the first 10 ms):
 *   release    libdm_dm_release() of its handle, then ctx_free (the
 *              context's operations have no handle: ctx_free);
 *   ctx_free   libdm_ctx_free() with the handle held, then its release;
 *   deadline   the operation's timeout is that moment: its callback comes
 *              (the context's operations have no timeout: their callback);
 *   kill       the controller (a forked child running the operation) is
 *              SIGKILLed.
 * After each round (a settling time of 3 s at most):
 *   - every QEMU of the campaign is listed alive, with its pid, and
 *     attachable: nothing runs that nobody can find (it is stopped then);
 *   - no child of this process is a zombie (keepers are reaped);
 *   - the operation's userdata got exactly one of its callback or its
 *     destroy notification (libdm_dm_set_op_destroy; not for kill);
 *   - a DM that was not running is gone (store clean once stopped).
 *
 *   LIBDM_CRASH_ROUNDS  rounds (default 50; the soak runs 500)
 *   LIBDM_CRASH_SEED    the random seed (default: the clock; printed)
 *   LIBDM_CRASH_MAX_S   stop after this many seconds (default 300 for the
 *                       CI run, none when LIBDM_CRASH_ROUNDS is set)
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "qemu-fixture.h"
#include "testutil.h"

#define LONG_MS 10000
#define SETTLE_MS 3000

enum {
    OP_START, OP_ATTACH, OP_RESUME, OP_PAUSE, OP_QUERY, OP_STOP, OP_DEVICES, OP_APPLY,
    OP_LIST, OP_FORGET, OP_HOLDER, N_OPS
};
enum { F_RELEASE, F_CTX_FREE, F_DEADLINE, F_KILL, N_FAULTS };
static const char *const op_names[] = { "start", "attach", "resume", "pause", "query", "stop",
                                         "query-devices", "apply-config", "list", "forget",
                                         "monitor-holder" };
static const char *const fault_names[] = { "release", "ctx_free", "deadline", "kill" };

/* The store and the checker's context (qemu-fixture.h; this is no cmocka
 * test: a fixture's failed assertion ends the program with a failure). */
static qf_store S;
static char prefix[32];
static uint64_t rnd;
static int failures;

static unsigned rand_below(unsigned n)
{
    rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)((rnd >> 33) % n);
}

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "FAIL (%s:%d): %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
        }                                                                   \
    } while (0)

typedef struct token {
    int callbacks, destroys;
} token;

static void on_done(libdm_dm *dm, int status, void *user)
{
    (void)dm, (void)status;
    ((token *)user)->callbacks++;
}

static void on_destroy(void *user)
{
    ((token *)user)->destroys++;
}

static void on_list(libdm_ctx *ctx, int status, libdm_dm_info *infos, size_t count, void *user)
{
    (void)ctx, (void)status;
    libdm_dm_info_free(infos, count);
    ((token *)user)->callbacks++;
}

static void on_ctx_done(libdm_ctx *ctx, int status, void *user)
{
    (void)ctx, (void)status;
    ((token *)user)->callbacks++;
}

static void on_holder(libdm_ctx *ctx, int status, int pid, const char *note, const char *command,
                      void *user)
{
    (void)ctx, (void)status, (void)pid, (void)note, (void)command;
    ((token *)user)->callbacks++;
}

static libdm_ctx *new_ctx(void)
{
    libdm_ctx *ctx;

    if (libdm_ctx_new(NULL, &ctx) < 0 || libdm_ctx_set_store(ctx, S.dir) < 0)
        abort();
    (void)libdm_ctx_set_log_level(ctx, XTL_CRITICAL);
    return ctx;
}

/* The pid and name of every QEMU of the campaign. */
typedef struct qemu_proc {
    int pid;
    char name[64];
} qemu_proc;

struct qemu_find {
    char want[40];
    qemu_proc *out;
    size_t n, max;
};

static bool qemu_found(int pid, const char *buf, ssize_t len, void *user)
{
    struct qemu_find *f = user;
    const char *name = tu_qemu_name(buf, len, f->want);

    if (name) {
        f->out[f->n].pid = pid;
        snprintf(f->out[f->n].name, sizeof(f->out[f->n].name), "%s", name);
        f->n++;
    }
    return f->n < f->max;
}

static size_t find_qemus(qemu_proc *out, size_t max)
{
    struct qemu_find f = { .out = out, .max = max };

    if (!max)
        return 0;
    snprintf(f.want, sizeof(f.want), "%s-", prefix);
    tu_proc_each("cmdline", qemu_found, &f);
    return f.n;
}

/* Children of this process that are zombies. */
static bool zombie_seen(int pid, const char *buf, ssize_t len, void *user)
{
    const char *p = strrchr(buf, ')');
    int *n = user, ppid;
    char st;

    (void)len;
    if (p && sscanf(p + 1, " %c %d", &st, &ppid) == 2 && ppid == getpid() && st == 'Z') {
        if (getenv("LIBDM_CRASH_VERBOSE"))
            printf("# zombie %d %.*s\n", pid, (int)(p - buf), buf);
        (*n)++;
    }
    return true;
}

static int zombie_children(void)
{
    int n = 0;

    tu_proc_each("stat", zombie_seen, &n);
    return n;
}

static char proc_state(int pid)
{
    char path[64], buf[512], *p;
    ssize_t len;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return '?';
    len = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (len <= 0)
        return '?';
    buf[len] = '\0';
    p = strrchr(buf, ')');
    return p && p[1] ? p[2] : '?';
}

/* Whether QEMU @q is listed alive with its pid and attachable; else why
 * not in @why. */
static bool listed_and_attachable(libdm_ctx *ctx, const qemu_proc *q, char *why, size_t len)
{
    libdm_dm_info *infos = NULL;
    libdm_dm *dm = NULL;
    bool listed = false;
    size_t n = 0;
    int r;

    snprintf(why, len, "not listed");
    if (libdm_dm_list(ctx, &infos, &n) < 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(infos[i].name, q->name))
            continue;
        snprintf(why, len, "listed alive=%d pid=%d state=%s, process state %c", infos[i].alive,
                 infos[i].pid, infos[i].state, proc_state(q->pid));
        if (infos[i].alive && infos[i].pid == q->pid)
            listed = true;
    }
    libdm_dm_info_free(infos, n);
    if (!listed)
        return false;
    r = libdm_dm_attach_flags(ctx, q->name, 3000, LIBDM_ATTACH_ANY_MONITOR, &dm);
    if (r < 0) {
        snprintf(why + strlen(why), len - strlen(why), ", attach: %s", strerror(-r));
        return false;
    }
    libdm_dm_release(dm);
    return true;
}

/* The invariants, then everything of the round ended and removed. */
static void check_and_clean(libdm_ctx *chk, const char *round)
{
    qemu_proc qs[16];
    char why[256];
    libdm_dm_info *infos = NULL;
    uint64_t end = tu_now_ms() + SETTLE_MS;
    size_t nq, n = 0;
    bool ok;

    /* Settling: an abandoned start's autokill, a keeper's record, a
     * keeper's exit and reaping. The verdict is the last look's: a DM
     * found alive and listed may end a moment later (autokill), that is
     * no failure. */
    for (;;) {
        int zombies;

        ok = true;
        why[0] = '\0';
        nq = find_qemus(qs, 16);
        for (size_t i = 0; i < nq && ok; i++)
            if (!listed_and_attachable(chk, &qs[i], why, sizeof(why))) {
                char head[128];

                snprintf(head, sizeof(head), "QEMU %s (pid %d) runs, ", qs[i].name, qs[i].pid);
                memmove(why + strlen(head), why, strlen(why) + 1 < sizeof(why) - strlen(head)
                                                     ? strlen(why) + 1
                                                     : sizeof(why) - strlen(head));
                memcpy(why, head, strlen(head));
                ok = false;
            }
        zombies = zombie_children();
        if (ok && zombies)
            snprintf(why, sizeof(why), "%d zombie child(ren)", zombies);
        ok = ok && !zombies;
        if (ok || tu_now_ms() >= end)
            break;
        libdm_ctx_run_once(chk, 20);
    }
    CHECK(ok, "%s: %s", round, why);
    /* End it all: stop what is listed, forget what is dead. */
    if (libdm_dm_list(chk, &infos, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            libdm_dm *dm = NULL;
            uint64_t until = tu_now_ms() + LONG_MS;

            if (infos[i].alive &&
                libdm_dm_attach_flags(chk, infos[i].name, 3000, LIBDM_ATTACH_ANY_MONITOR,
                                      &dm) == 0) {
                (void)libdm_dm_stop(dm, 1, LONG_MS);
                libdm_dm_release(dm);
            }
            while (libdm_dm_forget(chk, infos[i].name) == -EBUSY && tu_now_ms() < until)
                libdm_ctx_run_once(chk, 20);
        }
        libdm_dm_info_free(infos, n);
    }
    for (size_t i = 0; i < find_qemus(qs, 16); i++)
        kill(qs[i].pid, SIGKILL);
    tu_settle_children(chk, 0);
}

/* Issues @op on a new handle in @ctx (@name started already unless @op is
 * a start); *ret_dm is its handle. Returns the call's result. */
static int issue(libdm_ctx *ctx, int op, const char *name, int timeout_ms, token *t,
                 libdm_dm **ret_dm)
{
    libdm_dm_config *cfg;
    int r;

    *ret_dm = NULL;
    switch (op) {
    case OP_START:
        cfg = qf_config(name, timeout_ms);
        r = libdm_dm_start_async(ctx, cfg, on_done, t, ret_dm);
        libdm_dm_config_free(cfg);
        break;
    case OP_ATTACH:
        r = libdm_dm_attach_async(ctx, name, timeout_ms, on_done, t, ret_dm);
        break;
    /* The context's own: no handle, no timeout. */
    case OP_LIST:
        return libdm_dm_list_async(ctx, on_list, t, on_destroy);
    case OP_FORGET:
        return libdm_dm_forget_async(ctx, name, on_ctx_done, t, on_destroy);
    case OP_HOLDER:
        return libdm_dm_monitor_holder_async(ctx, name, on_holder, t, on_destroy);
    default:
        r = libdm_dm_attach(ctx, name, ret_dm);
        if (r < 0)
            return r;
        if (op == OP_RESUME)
            r = libdm_dm_resume_async(*ret_dm, timeout_ms, on_done, t);
        else if (op == OP_PAUSE)
            r = libdm_dm_pause_async(*ret_dm, timeout_ms, on_done, t);
        else if (op == OP_QUERY)
            r = libdm_dm_query_status_async(*ret_dm, timeout_ms, on_done, t);
        else if (op == OP_DEVICES)
            r = libdm_dm_query_devices_async(*ret_dm, timeout_ms, on_done, t);
        else if (op == OP_APPLY) {
            cfg = qf_config(name, timeout_ms);
            r = libdm_dm_apply_config_async(*ret_dm, cfg, timeout_ms, on_done, t);
            libdm_dm_config_free(cfg);
        } else
            r = libdm_dm_stop_async(*ret_dm, 0, timeout_ms, on_done, t);
        break;
    }
    if (r >= 0 && *ret_dm)
        r = libdm_dm_set_op_destroy(*ret_dm, on_destroy);
    return r;
}

static void run_for(libdm_ctx *ctx, int ms)
{
    uint64_t end = tu_now_ms() + (uint64_t)ms;

    while (tu_now_ms() < end)
        libdm_ctx_run_once(ctx, 5);
}

static void round_(libdm_ctx *chk, int i)
{
    int op = (int)rand_below(N_OPS), fault = (int)rand_below(N_FAULTS);
    /* Most operations end within milliseconds: most moments are early. */
    int at = rand_below(4) == 0 ? (int)rand_below(300) : (int)rand_below(10);
    char name[64], what[128];
    token t = { 0 };
    libdm_dm *dm = NULL;
    libdm_ctx *ctx;
    int r;

    snprintf(name, sizeof(name), "%s-%d", prefix, i);
    snprintf(what, sizeof(what), "round %d: %s, %s at %d ms", i, op_names[op], fault_names[fault],
             at);
    if (op != OP_START) {
        libdm_dm_config *cfg = qf_config(name, LONG_MS);

        r = libdm_dm_start(chk, cfg, &dm);
        libdm_dm_config_free(cfg);
        CHECK(r == 0, "%s: setup start: %s", what, strerror(-r));
        libdm_dm_release(dm);
        dm = NULL;
    }
    if (fault == F_KILL) {
        pid_t child = fork();

        if (child == 0) {
            ctx = new_ctx();
            (void)issue(ctx, op, name, LONG_MS, &t, &dm);
            for (;;)
                libdm_ctx_run_once(ctx, 100);
        }
        usleep((useconds_t)at * 1000);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        /* The controller's keepers are orphans now: init's to reap. */
    } else {
        ctx = new_ctx();
        r = issue(ctx, op, name, fault == F_DEADLINE ? at + 1 : LONG_MS, &t, &dm);
        if (r < 0) {
            /* Refused at once (an attach to a DM not ready...): nothing to drop. */
            CHECK(t.callbacks == 0 && t.destroys == 0, "%s: refused, yet notified", what);
            t.callbacks = 1;
        }
        if (fault == F_DEADLINE) {
            uint64_t end = tu_now_ms() + 20000;

            while (r >= 0 && !t.callbacks && tu_now_ms() < end)
                libdm_ctx_run_once(ctx, 10);
            CHECK(t.callbacks == 1, "%s: no callback at the deadline", what);
            run_for(ctx, 50);
            libdm_dm_release(dm);
            libdm_ctx_free(ctx);
        } else {
            run_for(ctx, at);
            if (fault == F_RELEASE) {
                libdm_dm_release(dm);
                libdm_ctx_free(ctx);
            } else {
                libdm_ctx_free(ctx);
                libdm_dm_release(dm);
            }
        }
        CHECK(t.callbacks + t.destroys == 1, "%s: %d callback(s), %d destroy notification(s)",
              what, t.callbacks, t.destroys);
    }
    if (getenv("LIBDM_CRASH_VERBOSE"))
        printf("# %s: callback %d, destroy %d, QEMUs %zu\n", what, t.callbacks, t.destroys,
               find_qemus((qemu_proc[16]){ 0 }, 16));
    check_and_clean(chk, what);
}

int main(void)
{
    const char *e = getenv("LIBDM_CRASH_ROUNDS");
    int rounds = e ? atoi(e) : 50, r = tu_require_dm_env();
    int max_s = getenv("LIBDM_CRASH_MAX_S") ? atoi(getenv("LIBDM_CRASH_MAX_S")) :
                e ? 1 << 30 : 300;
    uint64_t t0 = tu_now_ms();

    if (r)
        return r;
    e = getenv("LIBDM_CRASH_SEED");
    rnd = e ? strtoull(e, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    printf("# seed %llu (replay: LIBDM_CRASH_SEED=%llu LIBDM_CRASH_ROUNDS=%d)\n",
           (unsigned long long)rnd, (unsigned long long)rnd, rounds);
    fflush(stdout);
    qf_open(&S, "libcrash");
    (void)libdm_ctx_set_log_level(S.ctx, XTL_CRITICAL);
    snprintf(prefix, sizeof(prefix), "lc%d", (int)getpid());
    for (int i = 0; i < rounds; i++) {
        /* Bounded in time for CI: a loaded machine runs fewer rounds. */
        if (i > 0 && tu_now_ms() - t0 > (uint64_t)max_s * 1000) {
            printf("# time bound of %d s reached after %d rounds\n", max_s, i);
            rounds = i;
            break;
        }
        round_(S.ctx, i);
    }
    qf_close(&S);
    printf("# %d rounds in %llu s: %d failure(s)\n", rounds,
           (unsigned long long)((tu_now_ms() - t0) / 1000), failures);
    return failures ? 1 : 0;
}
