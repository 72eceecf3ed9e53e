/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 22, item 12, deterministically: the source's MIGRATION "completed"
 * event that arrives in the same read as a query-migrate reply still counts.
 * Before the fix the event, coming while the query was in flight (no tick
 * armed), was dropped, and Perform looked again only at the next poll tick
 * (MIGRATE_POLL_MS, 50 ms): a whole tick of the guest's downtime.
 *
 * The source's monitor is tests/harness/fakeqmp.c, a FAKE QMP server (not
 * QEMU: a real QEMU cannot be made to put an event and a reply in one write
 * on demand). The DM process is this very program run again as a FAKE
 * QEMU: libdm starts it as its "QEMU" through the keeper like any DM; it
 * hands the QMP listening socket libdm gave it (-chardev ...,fd=N) back to
 * the test over an abstract unix socket and waits; the test serves QMP on
 * that socket with fakeqmp in auto mode (an idle QEMU) for the start, then
 * scripts Perform: its query-migrate is answered with the MIGRATION
 * completed event and the reply {"status": "active"} in one write.
 *
 * No wall time is measured. libdm's clock (libdm_now_ms, wrapped with
 * -Wl,--wrap) is frozen during Perform: a timer due in 50 ms can never fire,
 * a timer due now fires. So Perform completes only if the event made the
 * next look immediate; the test asserts it completed with the clock frozen
 * and that exactly two query-migrate calls were made. With the fix reverted
 * Perform never completes (the test gives it 3 s of real time, then fails).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "fakeqmp.h"
#include "testutil.h"
#include "qemu-fixture.h"

/* ---- libdm's clock, frozen on demand ---- */

uint64_t __real_libdm_now_ms(void);
uint64_t __wrap_libdm_now_ms(void);

static volatile bool clock_frozen;
static uint64_t frozen_at;

uint64_t __wrap_libdm_now_ms(void)
{
    return clock_frozen ? frozen_at : __real_libdm_now_ms();
}

/* ---- the fake QEMU: hands its QMP listener back to the test ---- */

static void handoff_addr(const char *name, struct sockaddr_un *a, socklen_t *len)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    /* abstract: nothing to clean up */
    snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "libdm-test-mig-event-read-%s", name);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a->sun_path + 1));
}

/* argv as libdm builds it for the plain profile: "-name NAME" and
 * "-chardev socket,id=libdm-qmp,fd=N,...". Exits when the test closes the
 * hand-off connection. */
static int fake_qemu_main(int argc, char **argv)
{
    const char *name = NULL;
    int fd = -1, s, i;
    struct sockaddr_un a;
    socklen_t alen;
    char cbuf[CMSG_SPACE(sizeof(int))] = { 0 }, byte = 'q';
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                          .msg_controllen = sizeof(cbuf) };
    struct cmsghdr *c;

    for (i = 1; i + 1 < argc; i++) {
        const char *p;

        if (!strcmp(argv[i], "-name"))
            name = argv[i + 1];
        if (!strcmp(argv[i], "-chardev") && (p = strstr(argv[i + 1], ",fd=")))
            fd = atoi(p + 4);
    }
    if (!name || fd < 0)
        return 2;
    handoff_addr(name, &a, &alen);
    s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, alen) < 0)
        return 3;
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    if (sendmsg(s, &msg, 0) != 1)
        return 4;
    while (read(s, &byte, 1) > 0)
        ;
    return 0;
}

/* ---- the test's side ---- */

typedef struct fixture {
    char *dir;
    char name[32];
    int fds_before;
    int listen;            /* hand-off listener */
    int conn;              /* hand-off connection: the fake QEMU lives while it is open */
    int qmp_fd;            /* the QMP listener libdm made for the DM */
    fakeqmp *fq;
    pthread_t thr;
    libdm_ctx *ctx;
} fixture;

/* Takes the fake QEMU's QMP listener and serves it with fakeqmp. A thread:
 * the blocking start runs libdm's loop meanwhile. */
static void *accept_handoff(void *user)
{
    fixture *f = user;
    char cbuf[CMSG_SPACE(sizeof(int))], byte;
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                          .msg_controllen = sizeof(cbuf) };
    struct cmsghdr *c;

    f->conn = accept4(f->listen, NULL, NULL, SOCK_CLOEXEC);
    if (f->conn < 0 || recvmsg(f->conn, &msg, MSG_CMSG_CLOEXEC) != 1)
        return NULL;
    c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_type != SCM_RIGHTS)
        return NULL;
    memcpy(&f->qmp_fd, CMSG_DATA(c), sizeof(int));
    f->fq = fakeqmp_new_listen_fd(f->qmp_fd);
    if (f->fq) {
        fakeqmp_set_auto(f->fq, 1);
        if (fakeqmp_start(f->fq) < 0) {
            fakeqmp_free(f->fq);
            f->fq = NULL;
        }
    }
    return NULL;
}

static unsigned count_cmd(fakeqmp *fq, const char *name)
{
    unsigned i, n = 0;
    const char *c;

    for (i = 0; (c = fakeqmp_command_name(fq, i)); i++)
        n += !strcmp(c, name);
    return n;
}

static void test_completed_event_in_reply_read(void **state)
{
    fixture f = { .listen = -1, .conn = -1, .qmp_fd = -1 };
    struct sockaddr_un a;
    socklen_t alen;
    libdm_dm_config *cfg;
    libdm_dm *dm = NULL;
    qf_done perf = { 0 }, stop = { 0 };
    char self[4096];
    ssize_t n;
    unsigned q_before;

    (void)state;
    f.fds_before = tu_fd_count();
    snprintf(f.name, sizeof(f.name), "mer%d", (int)getpid());
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    assert_true(n > 0);
    self[n] = '\0';
    handoff_addr(f.name, &a, &alen);
    f.listen = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f.listen >= 0);
    assert_int_equal(bind(f.listen, (struct sockaddr *)&a, alen), 0);
    assert_int_equal(listen(f.listen, 1), 0);
    assert_int_equal(pthread_create(&f.thr, NULL, accept_handoff, &f), 0);

    f.dir = tu_mkdtemp("mig-event-read");
    assert_non_null(f.dir);
    assert_int_equal(libdm_ctx_new(NULL, &f.ctx), 0);
    assert_int_equal(libdm_ctx_set_store(f.ctx, f.dir), 0);
    assert_int_equal(libdm_dm_config_new(&cfg), 0);
    assert_int_equal(libdm_dm_config_set_name(cfg, f.name), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(cfg, self), 0);
    assert_int_equal(libdm_dm_config_set_machine(cfg, "none"), 0);
    assert_int_equal(libdm_dm_config_set_timeout_ms(cfg, 10000), 0);
    assert_int_equal(libdm_dm_start(f.ctx, cfg, &dm), 0);
    libdm_dm_config_free(cfg);
    assert_int_equal(pthread_join(f.thr, NULL), 0);
    assert_non_null(f.fq);
    assert_int_equal(libdm_dm_get_state(dm), LIBDM_DM_PAUSED);

    /* Perform against the script: the first query-migrate's reply says
     * "active", and the MIGRATION completed event is in the same write. */
    assert_int_equal(fakeqmp_expect(f.fq, "query-status",
                                     "{\"status\": \"prelaunch\", \"running\": false}"), 0);
    assert_int_equal(fakeqmp_expect(f.fq, "query-migrate-capabilities",
                                     "[{\"capability\": \"events\", \"state\": false}]"), 0);
    assert_int_equal(fakeqmp_expect(f.fq, "migrate-set-capabilities", "{}"), 0);
    assert_int_equal(fakeqmp_expect(f.fq, "migrate", "{}"), 0);
    assert_int_equal(fakeqmp_expect_raw(f.fq, "query-migrate",
        "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"event\": \"MIGRATION\", "
        "\"data\": {\"status\": \"completed\"}}\r\n"
        "{\"return\": {\"status\": \"active\"}, \"id\": $ID}\r\n"), 0);
    assert_int_equal(fakeqmp_expect(f.fq, "query-migrate", "{\"status\": \"completed\"}"), 0);
    q_before = count_cmd(f.fq, "query-migrate");

    frozen_at = __real_libdm_now_ms();
    clock_frozen = true;
    assert_int_equal(libdm_migrate_perform_async(dm, "exec:true", 0, NULL, NULL, NULL, NULL,
                                                 10000, qf_on_done, &perf), 0);
    qf_run_until_count(f.ctx, &perf.n, 1, 3000);
    clock_frozen = false;
    /* Completed with libdm's clock standing still: no poll tick ran. */
    if (!perf.n)
        fail_msg("Perform did not complete without a poll tick: the MIGRATION "
                 "event in the query-migrate reply's read was dropped");
    assert_int_equal(perf.status, 0);
    assert_int_equal(count_cmd(f.fq, "query-migrate") - q_before, 2);
    assert_int_equal(fakeqmp_mismatches(f.fq), 0);
    assert_int_equal(fakeqmp_steps_left(f.fq), 0);

    /* Stop: the fake QEMU answers quit (auto mode), then the test lets it
     * exit by closing the hand-off connection. */
    assert_int_equal(libdm_dm_stop_async(dm, 0, 10000, qf_on_done, &stop), 0);
    {
        uint64_t end = tu_now_ms() + 10000;

        while (!stop.n && tu_now_ms() < end) {
            if (f.conn >= 0 && count_cmd(f.fq, "quit")) {
                close(f.conn);
                f.conn = -1;
            }
            libdm_ctx_run_once(f.ctx, 10);
        }
    }
    assert_int_equal(stop.n, 1);
    assert_int_equal(stop.status, 0);
    libdm_dm_release(dm);
    fakeqmp_free(f.fq);
    if (f.conn >= 0)
        close(f.conn);
    close(f.qmp_fd);
    close(f.listen);
    tu_settle_children(f.ctx, 0);
    libdm_ctx_free(f.ctx);
    tu_rmtree(f.dir);
    free(f.dir);
    assert_int_equal(tu_fd_count(), f.fds_before);
    assert_int_equal(tu_child_count(), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completed_event_in_reply_read),
    };
    int i;

    for (i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-chardev"))
            return fake_qemu_main(argc, argv);
    if (!getenv("LIBDM_KEEPER")) {
        printf("SKIP: LIBDM_KEEPER not set (run through make check)\n");
        return 77;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
