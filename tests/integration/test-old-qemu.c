/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Seed 000 against an emulated old QEMU.
 *
 * FAKE: qemu-kvm 0.11 cannot run here. This file emulates the behaviour that
 * corrupted guests: a `cont` received while the incoming migration is still
 * loading starts the guest at once (the fake records it as corrupted).
 * Modern QEMU would merely defer it, so only an emulation shows that libdm
 * never sends `cont` before the incoming migration is confirmed completed
 * (MIGRATION event *and* query-migrate), and never after a failed one.
 *
 * The DM record points at a stand-in process (sleep) so libdm_dm_attach()
 * finds a live pid; its monitor is the fake's socket.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "internal.h"
#include "store.h"
#include "testutil.h"

typedef enum { OUTCOME_COMPLETED, OUTCOME_FAILED, OUTCOME_EVENT_EARLY } outcome;

typedef struct old_qemu {
    char path[256];
    int listen_fd;
    pthread_t thread;
    outcome how;
    unsigned load_ms;        /* how long the incoming migration "loads" */
    /* results, read after join */
    int cont_during_load;    /* the corruption seed 000 is about */
    int cont_after_load;
    int query_migrate_calls;
} old_qemu;

#define say(fd, ...) assert_true(tu_sayf((fd), __VA_ARGS__))

static const char *migration_status(const old_qemu *o, uint64_t elapsed)
{
    if (elapsed < o->load_ms)
        return "active";
    if (o->how == OUTCOME_FAILED)
        return "failed";
    /* EVENT_EARLY: the event says completed before query-migrate does. */
    if (o->how == OUTCOME_EVENT_EARLY && elapsed < o->load_ms * 2)
        return "active";
    return "completed";
}

static void answer(old_qemu *o, int fd, const libdm_json *req, uint64_t elapsed,
                   bool *running)
{
    const char *cmd = libdm_json_get_string(libdm_json_object_get(req, "execute"));
    char *id = NULL;
    bool loading = strcmp(migration_status(o, elapsed), "completed") != 0;

    assert_int_equal(libdm_json_to_string(libdm_json_object_get(req, "id"), 0, &id), 0);
    if (!strcmp(cmd, "query-status")) {
        /* qemu-kvm 0.11 had no "inmigrate": it said paused while loading. */
        say(fd, "{\"return\": {\"status\": \"%s\", \"running\": %s}, \"id\": %s}\r\n",
            *running ? "running" : "paused",
            *running ? "true" : "false", id);
    } else if (!strcmp(cmd, "query-migrate")) {
        o->query_migrate_calls++;
        say(fd, "{\"return\": {\"status\": \"%s\"}, \"id\": %s}\r\n",
            migration_status(o, elapsed), id);
    } else if (!strcmp(cmd, "cont")) {
        /* qemu-kvm 0.11: start the CPUs now, whatever is still loading. */
        if (loading)
            o->cont_during_load++;
        else
            o->cont_after_load++;
        *running = true;
        say(fd, "{\"event\": \"RESUME\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 0}}\r\n");
        say(fd, "{\"return\": {}, \"id\": %s}\r\n", id);
    } else {
        say(fd, "{\"return\": {}, \"id\": %s}\r\n", id);
    }
    free(id);
}

/* One client; lines split on '\n' (libdm sends one command per line). */
static void *serve(void *arg)
{
    old_qemu *o = arg;
    uint64_t t0 = tu_now_ms();
    bool running = false, event_sent = false;
    char buf[65536];
    size_t len = 0;
    int fd = accept4(o->listen_fd, NULL, NULL, SOCK_CLOEXEC);

    assert_true(fd >= 0);
    say(fd, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 11, \"major\": 0}, "
            "\"package\": \"emulated qemu-kvm\"}, \"capabilities\": []}}\r\n");
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        uint64_t elapsed = tu_now_ms() - t0;
        char *nl;
        ssize_t n;

        if (!event_sent && elapsed >= o->load_ms && o->how != OUTCOME_FAILED) {
            say(fd, "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"completed\"}, "
                    "\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}}\r\n");
            event_sent = true;
        }
        if (poll(&p, 1, 10) <= 0)
            continue;
        n = read(fd, buf + len, sizeof(buf) - len - 1);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        while ((nl = strchr(buf, '\n'))) {
            libdm_json *req = NULL;
            *nl = '\0';
            assert_int_equal(libdm_json_parse(buf, strlen(buf), &req), 0);
            answer(o, fd, req, tu_now_ms() - t0, &running);
            libdm_json_free(req);
            len -= (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, len + 1);
        }
    }
    close(fd);
    return NULL;
}

typedef struct fixture {
    char *dir;
    pid_t standin;
    old_qemu o;
    libdm_ctx *ctx;
    int fds_before;
} fixture;

static void record_dm(fixture *f)
{
    libdm__store *store;
    libdm__record rec;
    char dmdir[300];

    snprintf(dmdir, sizeof(dmdir), "%s/old", f->dir);
    libdm__record_init(&rec);
    rec.name = "old";
    rec.pid = f->standin;
    rec.pid_start = libdm__proc_start_time(f->standin);
    rec.qmp_socket = f->o.path;
    rec.dir = dmdir;
    rec.profile = "plain";
    rec.state = "incoming";
    assert_int_equal(libdm__store_open(f->dir, NULL, &store), 0);
    assert_int_equal(libdm__store_put(store, &rec), 0);
    libdm__store_close(store);
}

static void start_fake(fixture *f, outcome how, unsigned load_ms)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };

    f->o.how = how;
    f->o.load_ms = load_ms;
    /* Where libdm looks for a DM's monitor: <store>/<name>/qmp.sock. */
    snprintf(f->o.path, sizeof(f->o.path), "%s/old", f->dir);
    assert_int_equal(mkdir(f->o.path, 0700), 0);
    snprintf(f->o.path, sizeof(f->o.path), "%s/old/qmp.sock", f->dir);
    strcpy(sa.sun_path, f->o.path);
    f->o.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(f->o.listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->o.listen_fd, 1), 0);
    assert_int_equal(pthread_create(&f->o.thread, NULL, serve, &f->o), 0);
    record_dm(f);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    f->fds_before = tu_fd_count();
    f->dir = tu_mkdtemp("oldqemu");
    f->standin = fork();
    if (f->standin == 0) {
        execlp("sleep", "sleep", "60", (char *)NULL);
        _exit(127);
    }
    usleep(20000); /* let the stand-in exec, so its start time is final */
    assert_int_equal(libdm_ctx_new(NULL, &f->ctx), 0);
    assert_int_equal(libdm_ctx_set_store(f->ctx, f->dir), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    libdm_ctx_free(f->ctx);
    pthread_join(f->o.thread, NULL);
    close(f->o.listen_fd);
    kill(f->standin, SIGKILL);
    tu_reap(f->standin, 5000);
    tu_rmtree(f->dir);
    free(f->dir);
    assert_int_equal(tu_fd_count(), f->fds_before);
    free(f);
    return 0;
}

static int resume_old(fixture *f, int timeout_ms)
{
    libdm_dm *dm;
    int r;

    assert_int_equal(libdm_dm_attach_timeout(f->ctx, "old", 2000, &dm), 0);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_INCOMING);
    r = libdm_dm_resume(dm, timeout_ms);
    libdm_dm_release(dm);
    return r;
}

static void test_cont_only_after_completion(void **state)
{
    fixture *f = *state;

    start_fake(f, OUTCOME_COMPLETED, 400);
    assert_int_equal(resume_old(f, 5000), 0);
    assert_int_equal(f->o.cont_during_load, 0);
    assert_int_equal(f->o.cont_after_load, 1);
    /* The wait polled query-migrate; it did not sleep blindly. */
    assert_true(f->o.query_migrate_calls >= 2);
}

static void test_event_alone_is_not_enough(void **state)
{
    fixture *f = *state;

    /* The event says completed 300 ms before query-migrate does: no cont
     * until both agree. */
    start_fake(f, OUTCOME_EVENT_EARLY, 300);
    assert_int_equal(resume_old(f, 5000), 0);
    assert_int_equal(f->o.cont_during_load, 0);
    assert_int_equal(f->o.cont_after_load, 1);
}

static void test_failed_incoming_never_resumed(void **state)
{
    fixture *f = *state;

    start_fake(f, OUTCOME_FAILED, 200);
    assert_int_equal(resume_old(f, 5000), -EIO);
    assert_int_equal(f->o.cont_during_load, 0);
    assert_int_equal(f->o.cont_after_load, 0);
}

static void test_deadline_during_load(void **state)
{
    fixture *f = *state;

    start_fake(f, OUTCOME_COMPLETED, 3000);
    assert_int_equal(resume_old(f, 300), -ETIMEDOUT);
    assert_int_equal(f->o.cont_during_load, 0);
    assert_int_equal(f->o.cont_after_load, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cont_only_after_completion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_alone_is_not_enough, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_incoming_never_resumed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_during_load, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
