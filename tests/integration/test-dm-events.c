/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 19, daemon ergonomics, against the real libdm-keeper and a real
 * qemu-system-x86_64 (-machine none):
 *  - QEMU event subscriptions per DM (libdm_dm_subscribe): made before the
 *    DM's monitor is even connected, they hear STOP and RESUME once it is;
 *    never inside a libdm call (a blocking QMP call whose command causes
 *    the event returns first); a subscription freed in its own callback;
 *    destroy exactly once (free, release, ctx_free, never twice); a release
 *    from inside a callback; the handle's monitor connection closed and
 *    replaced by a new one (what a monitor recovery would do: libdm has no
 *    such path yet, the test takes the internal one every connection
 *    goes through, libdm__dm_attach_qmp) and the same subscriptions hear
 *    the new one's events; and after re-attach, with a new handle in this
 *    process and in a forked one, a new subscription hears the same DM;
 *  - query-status while another operation runs (a resume that waits for an
 *    incoming migration): it completes beside it instead of -EBUSY, and the
 *    operation still ends as it would have.
 * Every wait has a deadline (a paused QEMU emits nothing on its own).
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libdm/libdm.h>
#include "dm-private.h" /* libdm__dm_close_qmp, libdm__dm_attach_qmp */
#include "testutil.h"

static int fails, n;
static char *dir;

static void ok(bool cond, const char *what, const char *detail)
{
    n++;
    printf("%s %d - %s\n", cond ? "ok" : "not ok", n, what);
    if (!cond) {
        fails++;
        if (detail)
            printf("#   %s\n", detail);
    }
    fflush(stdout);
}

static libdm_ctx *new_ctx(void)
{
    libdm_ctx *ctx;

    if (libdm_ctx_new(NULL, &ctx) < 0 || libdm_ctx_set_store(ctx, dir) < 0)
        exit(99);
    return ctx;
}

static libdm_dm_config *config(const char *tag, bool incoming)
{
    libdm_dm_config *cfg;
    char name[64];

    snprintf(name, sizeof(name), "ev%d-%s", (int)getpid(), tag);
    if (libdm_dm_config_new(&cfg) < 0 || libdm_dm_config_set_name(cfg, name) < 0 ||
        libdm_dm_config_set_qemu_path(cfg, tu_qemu()) < 0 ||
        libdm_dm_config_set_timeout_ms(cfg, 20000) < 0 ||
        (incoming && libdm_dm_config_set_incoming(cfg, "defer") < 0))
        exit(99);
    return cfg;
}

/* Runs the loop until *@flag or @ms pass. */
static bool run_until(libdm_ctx *ctx, const bool *flag, int ms)
{
    uint64_t end = tu_now_ms() + (uint64_t)ms;

    while (!*flag && tu_now_ms() < end)
        libdm_ctx_run_once(ctx, 10);
    return *flag;
}

static bool run_until_count(libdm_ctx *ctx, const int *count, int want, int ms)
{
    uint64_t end = tu_now_ms() + (uint64_t)ms;

    while (*count < want && tu_now_ms() < end)
        libdm_ctx_run_once(ctx, 10);
    return *count >= want;
}

/* ---- subscriptions ---- */

static bool in_call;            /* the test is inside a libdm call */
static int called_inside;       /* a subscription callback ran inside one */

typedef struct sub_rec {
    int stops, resumes, all;    /* events heard */
    int destroyed;              /* destroy calls */
    libdm_dm_subscription *self;
    bool free_self;             /* frees its own subscription when it hears one */
    bool release;               /* releases the DM when it hears one */
    struct sub_rec *add;        /* subscribes this one (every event) when it hears one */
} sub_rec;

static void on_destroy(void *user);

static void on_qemu_event(libdm_dm *dm, const char *event, const libdm_json *data, void *user)
{
    sub_rec *r = user;

    (void)data;
    if (in_call)
        called_inside++;
    r->all++;
    if (!strcmp(event, "STOP"))
        r->stops++;
    else if (!strcmp(event, "RESUME"))
        r->resumes++;
    if (r->free_self) {
        r->free_self = false;
        r->self = libdm_dm_subscription_free(r->self);
    }
    if (r->add) {
        if (libdm_dm_subscribe(dm, NULL, on_qemu_event, r->add, on_destroy, NULL) < 0)
            r->add->destroyed = -100;
        r->add = NULL;
    }
    if (r->release) {
        r->release = false;
        libdm_dm_release(dm);
    }
}

static void on_destroy(void *user)
{
    ((sub_rec *)user)->destroyed++;
}

/* Starts and readies a DM whose subscriptions were made right after
 * start_async returned, while it had no monitor connection yet. */
static void test_subscribe(void)
{
    libdm_ctx *ctx = new_ctx();
    libdm_dm_config *cfg = config("sub", false);
    libdm_dm *dm = NULL;
    sub_rec stop_rec = { 0 }, all_rec = { 0 }, self_rec = { 0 }, rel_rec = { 0 };
    sub_rec after_rel = { 0 }, late = { 0 };
    libdm_dm_subscription *stop_sub = NULL;
    tu_done d = { 0 };
    char detail[256], name[80];
    int r, heard_before = 0;

    if (libdm_dm_start_async(ctx, cfg, tu_on_done, &d, &dm) < 0)
        exit(99);
    libdm_dm_config_free(cfg);
    snprintf(name, sizeof(name), "%s", libdm_dm_get_name(dm));
    ok(libdm_dm_get_qmp(dm) == NULL, "subscribe: no monitor connection yet", NULL);
    r = libdm_dm_subscribe(dm, "STOP", on_qemu_event, &stop_rec, on_destroy, &stop_sub);
    ok(r == 0 && stop_sub, "subscribe: STOP, owned, before the monitor is connected", NULL);
    /* Floating: every event; destroyed with the handle. */
    r = libdm_dm_subscribe(dm, NULL, on_qemu_event, &all_rec, on_destroy, NULL);
    ok(r == 0, "subscribe: every event, floating", NULL);
    r = libdm_dm_subscribe(dm, "RESUME", on_qemu_event, &self_rec, on_destroy, &self_rec.self);
    self_rec.free_self = true;
    self_rec.add = &late; /* made in a callback: hears only later events */
    ok(r == 0, "subscribe: RESUME, frees itself in its callback", NULL);
    ok(libdm_dm_subscribe(dm, "", on_qemu_event, NULL, NULL, NULL) == -EINVAL &&
       libdm_dm_subscribe(dm, "STOP", NULL, NULL, NULL, NULL) == -EINVAL,
       "subscribe: an empty name or no callback is -EINVAL", NULL);
    if (!run_until(ctx, &d.done, 25000) || d.status != 0) {
        printf("# start failed: %d %s\n", d.status, libdm_dm_last_error(dm));
        exit(99);
    }

    /* RESUME through libdm's resume, STOP through a blocking QMP call that
     * causes it: its callback must wait until the call returned. */
    d = (tu_done){ 0 };
    if (libdm_dm_resume_async(dm, 10000, tu_on_done, &d) < 0)
        exit(99);
    ok(run_until(ctx, &d.done, 10000) && d.status == 0, "subscribe: resumed", NULL);
    ok(run_until_count(ctx, &all_rec.resumes, 1, 5000), "subscribe: RESUME heard", NULL);
    ok(self_rec.resumes == 1 && self_rec.destroyed == 1 && !self_rec.self,
       "subscribe: a subscription freed in its own callback: destroyed once", NULL);
    ok(late.all == 0 && late.destroyed == 0,
       "subscribe: one made in a callback does not hear the event being delivered", NULL);

    in_call = true;
    r = libdm_qmp_call(libdm_dm_get_qmp(dm), "stop", NULL, 10000, NULL);
    in_call = false;
    ok(r == 0, "subscribe: stop by a blocking QMP call", NULL);
    ok(run_until_count(ctx, &stop_rec.stops, 1, 5000) && all_rec.stops == 1,
       "subscribe: STOP heard by both its subscribers", NULL);
    snprintf(detail, sizeof(detail), "%d callbacks inside a libdm call", called_inside);
    ok(called_inside == 0, "subscribe: no callback inside the blocking call", detail);
    ok(stop_rec.resumes == 0 && stop_rec.all == 1, "subscribe: a named subscription hears "
       "only its event", NULL);
    ok(late.stops == 1, "subscribe: the one made in a callback hears the next", NULL);

    /* The freed one hears nothing more. */
    d = (tu_done){ 0 };
    if (libdm_dm_resume_async(dm, 10000, tu_on_done, &d) < 0)
        exit(99);
    ok(run_until(ctx, &d.done, 10000) && run_until_count(ctx, &all_rec.resumes, 2, 5000),
       "subscribe: resumed again, RESUME heard", NULL);
    ok(self_rec.resumes == 1 && self_rec.destroyed == 1, "subscribe: the freed one heard "
       "nothing more", NULL);

    /* The connection replaced: the subscriptions were never on it. */
    {
        libdm_qmp *q = NULL;
        int resumes = all_rec.resumes;
        bool ready = false;
        uint64_t end;

        libdm__dm_close_qmp(dm);
        ok(libdm_dm_get_qmp(dm) == NULL, "replace: the monitor connection closed", NULL);
        if (libdm_qmp_new(ctx, &q) < 0 || libdm__dm_attach_qmp(dm, q) < 0 ||
            libdm_qmp_connect(q, libdm_dm_get_qmp_path(dm), 10000) < 0)
            exit(99);
        end = tu_now_ms() + 10000;
        while (!(ready = libdm_qmp_get_state(q) == LIBDM_QMP_READY) && tu_now_ms() < end)
            libdm_ctx_run_once(ctx, 10);
        ok(ready && libdm_dm_get_qmp(dm) == q, "replace: a new connection is the DM's", NULL);
        d = (tu_done){ 0 };
        in_call = true;
        r = libdm_qmp_call(q, "stop", NULL, 10000, NULL);
        in_call = false;
        if (r < 0 || libdm_dm_resume_async(dm, 10000, tu_on_done, &d) < 0)
            exit(99);
        ok(run_until(ctx, &d.done, 10000) && d.status == 0 &&
           run_until_count(ctx, &all_rec.resumes, resumes + 1, 5000) &&
           run_until_count(ctx, &stop_rec.stops, 2, 5000),
           "replace: the same subscriptions hear STOP and RESUME on the new connection",
           NULL);
        ok(called_inside == 0, "replace: still no callback inside a call", NULL);
    }

    /* Released from inside a callback: nothing after it runs, each live
     * subscription's destroy runs once. */
    r = libdm_dm_subscribe(dm, "STOP", on_qemu_event, &rel_rec, on_destroy, NULL);
    rel_rec.release = true;
    if (r == 0)
        r = libdm_dm_subscribe(dm, "STOP", on_qemu_event, &after_rel, on_destroy, NULL);
    ok(r == 0, "release: two more STOP subscriptions, the first releases the DM", NULL);
    d = (tu_done){ 0 };
    if (libdm_dm_pause_async(dm, 10000, tu_on_done, &d) < 0)
        exit(99);
    ok(run_until_count(ctx, &rel_rec.stops, 1, 10000), "release: the STOP arrived", NULL);
    /* The DM is released: its pause's callback never runs. */
    snprintf(detail, sizeof(detail), "destroyed: stop %d all %d self %d rel %d after %d",
             stop_rec.destroyed, all_rec.destroyed, self_rec.destroyed, rel_rec.destroyed,
             after_rel.destroyed);
    ok(after_rel.stops == 0, "release: no subscription ran after the release", detail);
    heard_before = stop_rec.all + all_rec.all + rel_rec.all;
    ok(stop_rec.destroyed == 1 && all_rec.destroyed == 1 && rel_rec.destroyed == 1 &&
       after_rel.destroyed == 1 && self_rec.destroyed == 1 && late.destroyed == 1,
       "release: every subscription destroyed exactly once", detail);
    libdm_dm_subscription_free(stop_sub); /* the caller's memory: no second destroy */
    ok(stop_rec.destroyed == 1, "release: freeing an owned one after it: no second destroy",
       NULL);

    /* Re-attach, in this process: a new handle, a new subscription. */
    {
        sub_rec again = { 0 };
        libdm_dm *dm2 = NULL;

        r = libdm_dm_attach(ctx, name, &dm2);
        ok(r == 0, "re-attach: attached with a new handle", strerror(-r));
        if (r < 0)
            exit(99);
        r = libdm_dm_subscribe(dm2, NULL, on_qemu_event, &again, on_destroy, NULL);
        d = (tu_done){ 0 };
        if (r < 0 || libdm_dm_resume_async(dm2, 10000, tu_on_done, &d) < 0)
            exit(99);
        ok(run_until(ctx, &d.done, 10000) && run_until_count(ctx, &again.resumes, 1, 5000),
           "re-attach: the new handle's subscription hears RESUME", NULL);
        ok(stop_rec.all + all_rec.all + rel_rec.all == heard_before,
           "re-attach: the released handle's subscriptions heard nothing", NULL);
        libdm_dm_release(dm2);
        ok(again.destroyed == 1, "re-attach: destroyed at release", NULL);
    }

    /* Re-attach from another process (forked; its own context). */
    {
        pid_t pid = fork();
        int st = -1;

        if (pid == 0) {
            libdm_ctx *c2 = new_ctx();
            libdm_dm *dm3 = NULL;
            sub_rec rec = { 0 };
            tu_done d3 = { 0 };

            alarm(30);
            if (libdm_dm_attach(c2, name, &dm3) < 0)
                _exit(2);
            if (libdm_dm_subscribe(dm3, "STOP", on_qemu_event, &rec, on_destroy, NULL) < 0 ||
                libdm_dm_pause_async(dm3, 10000, tu_on_done, &d3) < 0)
                _exit(3);
            if (!run_until(c2, &d3.done, 10000) || !run_until_count(c2, &rec.stops, 1, 5000))
                _exit(4);
            libdm_ctx_free(c2); /* ctx_free destroys it */
            _exit(rec.destroyed == 1 ? 0 : 5);
        }
        if (pid > 0)
            (void)waitpid(pid, &st, 0);
        snprintf(detail, sizeof(detail), "child status %d", st);
        ok(pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
           "re-attach: another process attaches, subscribes, hears STOP; ctx_free destroys",
           detail);
    }

    /* ctx_free destroys subscriptions of handles still held; the handle
     * then refuses new ones. */
    {
        sub_rec rec = { 0 };
        libdm_dm *dm4 = NULL;

        if (libdm_dm_attach(ctx, name, &dm4) < 0 ||
            libdm_dm_subscribe(dm4, NULL, on_qemu_event, &rec, on_destroy, NULL) < 0)
            exit(99);
        ok(libdm_dm_stop(dm4, 0, 10000) == 0, "stop: stopped", NULL);
        tu_settle_children(ctx, 0);
        libdm_ctx_free(ctx);
        ok(rec.destroyed == 1, "ctx_free: the subscription destroyed once", NULL);
        ok(libdm_dm_subscribe(dm4, NULL, on_qemu_event, &rec, on_destroy, NULL) == -ESHUTDOWN,
           "ctx_free: the handle then refuses subscriptions", NULL);
        libdm_dm_release(dm4);
        ok(rec.destroyed == 1, "ctx_free: no second destroy at release", NULL);
    }
}

/* ---- query-status while another operation runs ---- */

static int query_destroyed;
static void on_query_destroy(void *user)
{
    (void)user;
    query_destroyed++;
}

static void test_query_beside_op(void)
{
    libdm_ctx *ctx = new_ctx();
    libdm_dm_config *cfg = config("query", true);
    libdm_dm *dm = NULL;
    tu_done resume = { 0 }, query = { 0 }, q2 = { 0 };
    char detail[256];
    char *rs = NULL;
    int r;

    r = libdm_dm_start(ctx, cfg, &dm);
    libdm_dm_config_free(cfg);
    if (r < 0) {
        printf("# cannot start: %d\n", r);
        exit(99);
    }
    ok(libdm_dm_get_state(dm) == LIBDM_DM_INCOMING, "query: an incoming DM", NULL);
    /* The guarded resume waits for a migration that never comes. */
    r = libdm_dm_resume_async(dm, 3000, tu_on_done, &resume);
    ok(r == 0, "query: a resume waits for the incoming migration", NULL);
    r = libdm_dm_query_status_async(dm, 5000, tu_on_done, &query);
    snprintf(detail, sizeof(detail), "query_status_async: %d (%s)", r, strerror(-r));
    ok(r == 0, "query: query_status_async beside the resume is not -EBUSY", detail);
    if (r == 0) {
        ok(run_until(ctx, &query.done, 5000) && query.status == 0 && !resume.done,
           "query: it completed while the resume still waits", NULL);
        ok(libdm_dm_get_runstate(dm) && !strcmp(libdm_dm_get_runstate(dm), "inmigrate"),
           "query: the runstate is inmigrate", libdm_dm_get_runstate(dm));
        /* Its callback ran: a late set_op_destroy is -ENOENT, and never
         * lands on the resume that still runs. */
        r = libdm_dm_set_op_destroy(dm, on_query_destroy);
        snprintf(detail, sizeof(detail), "set_op_destroy: %d", r);
        ok(r == -ENOENT, "query: set_op_destroy after its callback: -ENOENT", detail);
    }
    /* The blocking form too (outside any callback). */
    r = libdm_dm_query_status(dm, 5000, &rs);
    snprintf(detail, sizeof(detail), "query_status: %d, %s", r, rs ? rs : "-");
    ok(r == 0 && rs && !strcmp(rs, "inmigrate"), "query: the blocking form beside it", detail);
    free(rs);
    ok(!resume.done, "query: the resume still runs", NULL);
    /* Released with a query beside the resume: its destroy runs. */
    ok(run_until(ctx, &resume.done, 6000) && resume.status == -ETIMEDOUT,
       "query: the resume ends at its deadline, as without the queries", NULL);
    ok(query_destroyed == 0, "query: no destroy ran for a callback that ran", NULL);
    r = libdm_dm_query_status_async(dm, 5000, tu_on_done, &q2);
    ok(r == 0 && run_until(ctx, &q2.done, 5000) && q2.status == 0,
       "query: alone, a query is an operation as before", NULL);
    ok(libdm_dm_stop(dm, 1, 10000) == 0, "query: stopped", NULL);
    libdm_dm_release(dm);
    tu_settle_children(ctx, 0);
    libdm_ctx_free(ctx);
}


static void test_query_release(void)
{
    libdm_ctx *ctx = new_ctx();
    libdm_dm_config *cfg = config("qrel", true);
    libdm_dm *dm = NULL;
    tu_done resume = { 0 }, query = { 0 };
    char name[80];
    int r;

    r = libdm_dm_start(ctx, cfg, &dm);
    libdm_dm_config_free(cfg);
    if (r < 0)
        exit(99);
    snprintf(name, sizeof(name), "%s", libdm_dm_get_name(dm));
    if (libdm_dm_resume_async(dm, 3000, tu_on_done, &resume) < 0)
        exit(99);
    r = libdm_dm_query_status_async(dm, 5000, tu_on_done, &query);
    if (r == 0)
        r = libdm_dm_set_op_destroy(dm, on_query_destroy);
    ok(r == 0, "query release: a query beside a resume, with a destroy", NULL);
    query_destroyed = 0;
    libdm_dm_release(dm);
    ok(query_destroyed == 1 && !query.done, "query release: destroyed once, no callback",
       NULL);
    libdm_ctx_run_once(ctx, 50);
    ok(query_destroyed == 1 && !query.done && !resume.done,
       "query release: nothing ran after", NULL);
    if (libdm_dm_attach(ctx, name, &dm) < 0)
        exit(99);
    (void)libdm_dm_stop(dm, 1, 10000);
    libdm_dm_release(dm);
    tu_settle_children(ctx, 0);
    libdm_ctx_free(ctx);
}

int main(void)
{
    int r = tu_require_dm_env();

    if (r)
        return r;
    signal(SIGPIPE, SIG_IGN);
    dir = tu_mkdtemp("events");
    if (!dir)
        return 99;
    test_subscribe();
    test_query_beside_op();
    test_query_release();
    tu_rmtree(dir);
    free(dir);
    printf("1..%d\n", n);
    return fails ? 1 : 0;
}
