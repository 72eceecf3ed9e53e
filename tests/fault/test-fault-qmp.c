/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fault matrix for the QMP client: one table, one cmocka test per row.
 *
 * Each row scripts a fresh fakeqmp (tests/harness/fakeqmp.h: a fake QMP
 * server in a thread of this process) on a unix socket in a fresh temporary
 * directory, runs a client action with a fresh libdm_ctx, and checks:
 *  - the action returns within its deadline + MARGIN_MS;
 *  - its status is the expected one (0 or a negative errno);
 *  - on failure libdm_qmp_last_error() names the cause (a substring);
 *  - libdm_qmp_close() returns the expected status (0, or -ETIMEDOUT for a
 *    wedged monitor) within its deadline + MARGIN_MS;
 *  - after fakeqmp_free and libdm_ctx_free this process has exactly the
 *    descriptors it had before the row.
 *
 * LIBDM_FAULT_QUICK=1 shrinks the two heavy rows (the 100 MiB line becomes
 * 10 MiB, the 1,000,000-event bursts become 100,000 events) for runs under
 * valgrind, where they would be slow; every other row is unchanged.
 * Rows that hit a known libdm bug (see BUG_* below) are skipped with a
 * message naming it; LIBDM_FAULT_KNOWN_BUGS=1 runs them anyway.
 * LIBDM_FAULT_ROWS=GLOB runs only the rows whose name matches.
 *
 * Real QEMU faults (SIGKILL, SIGSTOP, abort) are covered by other tests.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "fakeqmp.h"
#include "testutil.h"

#define MARGIN_MS 500
#define CONNECT_MS 700   /* libdm_qmp_connect timeout of every row */
#define CALL_MS 1500     /* default call timeout (longer than CONNECT_MS, so
                          * a call queued behind a failed connect reports the
                          * connect's own error) */
#define CLOSE_MS 1000    /* libdm_qmp_close timeout */
#define CLOSE_ANY 1      /* close may return 0 or -ETIMEDOUT */

enum {
    F_NOSERVER = 1 << 0,  /* no fakeqmp: connect to a path that never appears */
    F_LIMIT_1M = 1 << 1,  /* libdm_qmp_set_limits: max_message 1 MiB */
    F_QUEUE = 1 << 2,     /* libdm_qmp_set_event_queue(1) */
    F_LISTENER = 1 << 3,  /* an event listener counting every event */
    F_BYTEWISE = 1 << 4,  /* fakeqmp_set_bytewise */
    F_BUGMODE = 1 << 5,   /* fakeqmp_set_monitor_block_bug */
    F_SMALL_LIMITS = 1 << 6, /* depth 8, 100 values, 10 queued events */
    F_HEAVY = 1 << 7,     /* n shrunk tenfold under LIBDM_FAULT_QUICK */
};

typedef struct row row;
typedef struct rt {
    const row *r;
    fakeqmp *f;
    libdm_ctx *ctx;
    libdm_qmp *q;
    char *dir, *sock;
    unsigned events;
    int async_status, async_done;
    libdm_json *value;
    char why[512];
    char err_class[128];
} rt;

struct row {
    const char *name;
    void (*script)(rt *t);
    int (*client)(rt *t);          /* NULL: connect + query-status */
    void (*check)(rt *t);          /* extra assertions, may be NULL */
    int expect;                    /* status of the client action */
    const char *why;               /* substring of last_error on failure;
                                    * "a|b": either */
    unsigned deadline_ms;          /* of the client action */
    int close_expect;              /* 0, -ETIMEDOUT or CLOSE_ANY */
    unsigned flags;
    size_t n;                      /* a size, count, depth or delay */
    const char *text;              /* raw bytes for the script */
    size_t text_len;               /* 0: strlen(text) */
    unsigned call_ms;              /* 0: CALL_MS */
    const char *bug;               /* a known libdm bug: skipped (see below) */
};

static unsigned passed, skipped;
static bool quick, known_bugs;

static size_t heavy(const row *r)
{
    return quick && (r->flags & F_HEAVY) ? r->n / 10 : r->n;
}

#define GREETING_JSON                                                                      \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "      \
    "\"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n"
#define STATUS_JSON "{\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}"

/* ---- client side helpers ---- */

static void on_event(libdm_qmp *q, const char *name, const libdm_json *data, void *user)
{
    rt *t = user;

    (void)q;
    (void)name;
    (void)data;
    t->events++;
}

static libdm_qmp *new_client(rt *t)
{
    libdm_qmp *q = NULL;
    const row *r = t->r;

    assert_int_equal(libdm_qmp_new(t->ctx, &q), 0);
    if (r->flags & F_LIMIT_1M) {
        libdm_qmp_limits l = { 1 << 20, 128, 1000000, 1024 };
        assert_int_equal(libdm_qmp_set_limits(q, &l), 0);
    }
    if (r->flags & F_SMALL_LIMITS) {
        libdm_qmp_limits l = { 10 << 20, 8, 100, 10 };
        assert_int_equal(libdm_qmp_set_limits(q, &l), 0);
    }
    assert_int_equal(libdm_qmp_set_call_timeout(q, r->call_ms ? (int)r->call_ms : CALL_MS), 0);
    if (r->flags & F_QUEUE)
        assert_int_equal(libdm_qmp_set_event_queue(q, 1), 0);
    if (r->flags & F_LISTENER)
        assert_int_equal(libdm_qmp_add_event_listener(q, NULL, on_event, t, NULL), 0);
    assert_int_equal(libdm_qmp_connect(q, t->sock, CONNECT_MS), 0);
    return q;
}

static void note_error(rt *t, int status)
{
    const char *e;

    if (status == 0)
        return;
    e = libdm_qmp_last_error(t->q);
    snprintf(t->why, sizeof(t->why), "%s", e ? e : "");
    if (status == -EREMOTEIO && libdm_qmp_error_class(t->q))
        snprintf(t->err_class, sizeof(t->err_class), "%s", libdm_qmp_error_class(t->q));
}

/* The default action: connect and call query-status (queued until READY, so
 * a failed connect fails the call with the connect's error). */
static int client_call(rt *t)
{
    int r;

    t->q = new_client(t);
    r = libdm_qmp_call(t->q, "query-status", NULL, 0, &t->value);
    note_error(t, r);
    return r;
}

/* Two calls in a row: the first error, or 0. */
static int client_two_calls(rt *t)
{
    int r;

    t->q = new_client(t);
    r = libdm_qmp_call(t->q, "query-status", NULL, 0, NULL);
    if (r == 0)
        r = libdm_qmp_call(t->q, "query-status", NULL, 0, &t->value);
    note_error(t, r);
    return r;
}

static int client_quit(rt *t)
{
    int r;

    t->q = new_client(t);
    r = libdm_qmp_call(t->q, "query-status", NULL, 0, NULL);
    if (r == 0)
        r = libdm_qmp_call(t->q, "quit", NULL, 0, NULL);
    note_error(t, r);
    return r;
}

/* Connect only: READY (0) or the error the state callback reported. */
typedef struct state_seen {
    int error;
} state_seen;

static void on_state(libdm_qmp *q, libdm_qmp_state s, int error, void *user)
{
    state_seen *ss = user;

    (void)q;
    if (s == LIBDM_QMP_BROKEN)
        ss->error = error;
}

static int client_connect_only(rt *t)
{
    static state_seen ss;
    libdm_qmp *q = NULL;
    int r;

    ss.error = 0;
    assert_int_equal(libdm_qmp_new(t->ctx, &q), 0);
    assert_int_equal(libdm_qmp_set_state_callback(q, on_state, &ss), 0);
    assert_int_equal(libdm_qmp_connect(q, t->sock, CONNECT_MS), 0);
    t->q = q;
    r = libdm_qmp_wait_ready(q);
    if (r < 0)
        r = ss.error ? ss.error : r;
    note_error(t, r);
    return r;
}

static void on_async(libdm_qmp *q, const libdm_qmp_reply *reply, void *user)
{
    rt *t = user;

    (void)q;
    t->async_status = reply->status;
    t->async_done++;
}

/* Pipeline n calls, wait for all of them; the first error or 0. */
typedef struct pipe_state {
    unsigned done, failed;
    int first_err;
} pipe_state;

static void on_piped(libdm_qmp *q, const libdm_qmp_reply *reply, void *user)
{
    pipe_state *p = user;

    (void)q;
    p->done++;
    if (reply->status && !p->first_err)
        p->first_err = reply->status;
}

static int client_pipeline(rt *t)
{
    pipe_state p = { 0 };
    uint64_t end = tu_now_ms() + t->r->deadline_ms;

    t->q = new_client(t);
    for (size_t i = 0; i < t->r->n; i++)
        assert_int_equal(libdm_qmp_call_async(t->q, "query-status", NULL, 0, on_piped, &p, NULL), 0);
    while (p.done < t->r->n && tu_now_ms() < end)
        assert_true(libdm_ctx_run_once(t->ctx, 100) >= 0);
    assert_int_equal(p.done, t->r->n);
    note_error(t, p.first_err);
    return p.first_err;
}

/* Cancel a call already sent (slot freed): the close still drains its reply,
 * so a monitor with the pre-4.2 bug is not wedged; a second client works. */
static int client_cancel_then_reconnect(rt *t)
{
    libdm_qmp_slot *slot = NULL;
    libdm_qmp *q;
    int r;

    q = new_client(t);
    assert_int_equal(libdm_qmp_wait_ready(q), 0);
    assert_int_equal(libdm_qmp_call_async(q, "query-status", NULL, 0, on_async, t, &slot), 0);
    /* Let it reach the wire. */
    while (libdm_qmp_outstanding(q) == 0)
        assert_true(libdm_ctx_run_once(t->ctx, 50) >= 0);
    libdm_qmp_slot_free(slot);
    assert_int_equal(libdm_qmp_close(q, CLOSE_MS), 0);
    assert_int_equal(t->async_done, 0);
    t->q = new_client(t);
    r = libdm_qmp_call(t->q, "query-status", NULL, 0, &t->value);
    note_error(t, r);
    return r;
}

/* libdm closes with a reply outstanding (it arrives n ms later): the close
 * drains it, so the monitor (with the pre-4.2 bug emulated) is not wedged,
 * and the next libdm client still gets answers. */
static int client_drain_then_reconnect(rt *t)
{
    libdm_qmp *q;
    uint64_t t0;
    int r;

    q = new_client(t);
    assert_int_equal(libdm_qmp_wait_ready(q), 0);
    assert_int_equal(libdm_qmp_call_async(q, "query-status", NULL, 0, on_async, t, NULL), 0);
    t0 = tu_now_ms();
    assert_int_equal(libdm_qmp_close(q, CLOSE_MS), 0);
    assert_true(tu_now_ms() - t0 >= t->r->n - 20);
    assert_int_equal(t->async_done, 1);
    assert_int_equal(t->async_status, 0);
    assert_int_equal(fakeqmp_is_wedged(t->f), 0);
    t->q = new_client(t);
    r = libdm_qmp_call(t->q, "query-status", NULL, 0, &t->value);
    note_error(t, r);
    return r;
}

/* A naive client: raw socket, sends a command and closes at once. With the
 * pre-4.2 bug emulated that wedges the monitor: the next (libdm) client gets
 * the greeting and no answer to qmp_capabilities. */
static void read_line(int fd)
{
    char c;
    struct pollfd pfd = { .fd = fd, .events = POLLIN };

    for (;;) {
        assert_true(poll(&pfd, 1, 2000) == 1);
        assert_int_equal(read(fd, &c, 1), 1);
        if (c == '\n')
            return;
    }
}

static void write_all(int fd, const char *s)
{
    size_t n = strlen(s);

    assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

static int client_naive_then_libdm(rt *t)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd, r;

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", t->sock);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    read_line(fd); /* greeting */
    write_all(fd, "{\"execute\": \"qmp_capabilities\", \"id\": \"naive-0\"}\r\n");
    read_line(fd);
    write_all(fd, "{\"execute\": \"query-status\", \"id\": \"naive-1\"}\r\n");
    assert_true(fakeqmp_wait_commands(t->f, 2, 2000) >= 2);
    close(fd);
    for (int i = 0; i < 200 && !fakeqmp_is_wedged(t->f); i++)
        usleep(5000);
    assert_int_equal(fakeqmp_is_wedged(t->f), 1);
    t->q = new_client(t);
    r = libdm_qmp_call(t->q, "query-status", NULL, 0, NULL);
    note_error(t, r);
    return r;
}

/* A call whose deadline passes while the reply is delayed: -ETIMEDOUT; the
 * close then drains the late reply and succeeds. */
static int client_late_then_drain(rt *t)
{
    int r;

    t->q = new_client(t);
    assert_int_equal(libdm_qmp_wait_ready(t->q), 0);
    r = libdm_qmp_call(t->q, "query-status", NULL, 300, NULL);
    note_error(t, r);
    return r;
}

/* ---- scripts ---- */

static void s_none(rt *t)
{
    (void)t;
}

static void s_status(rt *t)
{
    fakeqmp_expect(t->f, "query-status", STATUS_JSON);
}

static void s_no_greeting(rt *t)
{
    fakeqmp_set_greeting(t->f, FAKEQMP_GREETING_NONE, 0);
}

static void s_partial_greeting(rt *t)
{
    fakeqmp_set_greeting(t->f, FAKEQMP_GREETING_PARTIAL_THEN_EOF, 0);
}

static void s_delayed_greeting(rt *t)
{
    fakeqmp_set_greeting(t->f, FAKEQMP_GREETING_DELAYED, (unsigned)t->r->n);
    s_status(t);
}

static void s_caps_silent(rt *t)
{
    fakeqmp_expect_noreply(t->f, "qmp_capabilities");
}

static void s_caps_delay(rt *t)
{
    fakeqmp_expect_delay(t->f, "qmp_capabilities", (unsigned)t->r->n, "{}");
    s_status(t);
}

static void s_caps_refused(rt *t)
{
    fakeqmp_expect_error(t->f, "qmp_capabilities", "GenericError", "capabilities refused by test");
}

static void s_caps_raw(rt *t)
{
    fakeqmp_expect_raw(t->f, "qmp_capabilities", t->r->text);
    s_status(t);
}

/* Every qmp_capabilities is answered by the row's raw text. */
static void s_caps_raw_always(rt *t)
{
    for (size_t i = 0; i < t->r->n; i++)
        fakeqmp_expect_raw(t->f, "qmp_capabilities", t->r->text);
}

static void s_preamble(rt *t)
{
    fakeqmp_set_preamble(t->f, t->r->text);
    s_status(t);
}

/* Raw bytes right after the greeting, then a normal script. */
static void s_send_then_status(rt *t)
{
    fakeqmp_send_raw(t->f, t->r->text, t->r->text_len ? t->r->text_len : strlen(t->r->text));
    s_status(t);
}

/* An event first (so negotiation is over), then the raw bytes. */
static void s_event_send_then_status(rt *t)
{
    fakeqmp_event(t->f, "RESUME", NULL);
    s_send_then_status(t);
}

/* The reply to query-status is the row's raw text ($ID = the request id). */
static void s_raw_reply(rt *t)
{
    fakeqmp_expect_raw(t->f, "query-status", t->r->text);
}

static void s_raw_reply_then_status(rt *t)
{
    s_raw_reply(t);
    s_status(t);
}

static void s_oversize(rt *t)
{
    fakeqmp_send_oversize_step(t->f, heavy(t->r));
    s_status(t);
}

/* Oversize line as the reply position: after query-status was received. */
static void s_oversize_after_event(rt *t)
{
    fakeqmp_event(t->f, "RESUME", NULL);
    fakeqmp_send_oversize_step(t->f, t->r->n);
    s_status(t);
}

static void s_deep(rt *t)
{
    fakeqmp_send_deep_step(t->f, t->r->n);
    s_status(t);
}

/* Depth n as the "return" value of the reply (so depth n + 1 in all). */
static void s_deep_reply(rt *t)
{
    size_t n = t->r->n;
    char *s = malloc(2 * n + 64), *p = s;

    p += sprintf(p, "{\"return\": ");
    memset(p, '[', n);
    p += n;
    memset(p, ']', n);
    p += n;
    sprintf(p, ", \"id\": $ID}\r\n");
    fakeqmp_expect_raw(t->f, "query-status", s);
    free(s);
}

static void s_values_reply(rt *t)
{
    size_t n = t->r->n;
    char *s = malloc(2 * n + 64), *p = s;

    p += sprintf(p, "{\"return\": [");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, i ? ",0" : "0");
    sprintf(p, "], \"id\": $ID}\r\n");
    fakeqmp_expect_raw(t->f, "query-status", s);
    free(s);
}

static void s_burst(rt *t)
{
    fakeqmp_event_burst_step(t->f, "BLOCK_IO_ERROR", heavy(t->r));
    s_status(t);
}

static void s_burst_exact(rt *t)
{
    fakeqmp_event_burst_step(t->f, "BLOCK_IO_ERROR", t->r->n);
    s_status(t);
}

static void s_event_then_reply(rt *t)
{
    fakeqmp_event(t->f, "STOP", NULL);
    fakeqmp_event(t->f, "RESUME", "{\"x\": [1, 2, 3]}");
    s_status(t);
}

static void s_qmp_error(rt *t)
{
    fakeqmp_expect_error(t->f, "query-status", "DeviceNotFound", "no such device: test");
}

static void s_noreply(rt *t)
{
    fakeqmp_expect_noreply(t->f, "query-status");
}

static void s_delay(rt *t)
{
    fakeqmp_expect_delay(t->f, "query-status", (unsigned)t->r->n, STATUS_JSON);
}

static void s_eof_outstanding(rt *t)
{
    fakeqmp_expect_raw(t->f, "query-status", t->r->text);
    fakeqmp_close_step(t->f);
}

static void s_close_now(rt *t)
{
    fakeqmp_close_step(t->f);
}

static void s_quit(rt *t)
{
    s_status(t);
    fakeqmp_expect_raw(t->f, "quit",
                       "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": "
                       "\"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}\r\n");
    fakeqmp_close_step(t->f);
}

static void s_quit_no_shutdown(rt *t)
{
    s_status(t);
    fakeqmp_expect_raw(t->f, "quit", "");
    fakeqmp_close_step(t->f);
}

static void s_bug_delay(rt *t)
{
    fakeqmp_expect_delay(t->f, "query-status", (unsigned)t->r->n, STATUS_JSON);
    s_status(t);
}

static void s_bug_noreply(rt *t)
{
    fakeqmp_expect_noreply(t->f, "query-status");
    s_status(t);
}

static void s_sleep_then_status(rt *t)
{
    fakeqmp_sleep(t->f, (unsigned)t->r->n);
    s_status(t);
}

static void s_pipeline(rt *t)
{
    for (size_t i = 0; i < t->r->n; i++)
        s_status(t);
}

/* ---- checks ---- */

static void c_value(rt *t)
{
    assert_non_null(t->value);
    assert_string_equal(libdm_json_get_string(libdm_json_object_get(t->value, "status")),
                        "prelaunch");
}

static void c_events_all(rt *t)
{
    c_value(t);
    assert_int_equal(t->events, heavy(t->r));
}

static void c_events_two(rt *t)
{
    c_value(t);
    assert_int_equal(t->events, 2);
}

static void c_class(rt *t)
{
    assert_string_equal(t->err_class, "DeviceNotFound");
}

static void c_wedged(rt *t)
{
    assert_int_equal(fakeqmp_is_wedged(t->f), 1);
}

static void c_not_wedged(rt *t)
{
    c_value(t);
    assert_int_equal(fakeqmp_is_wedged(t->f), 0);
    assert_int_equal(fakeqmp_connections(t->f), 2);
}

static void c_two_connections(rt *t)
{
    c_value(t);
    assert_int_equal(fakeqmp_connections(t->f), 2);
}

/* qmp_capabilities was sent n times (QEMU 7.2's reconnect race). */
static void c_caps_sent(rt *t)
{
    unsigned caps = 0;

    c_value(t);
    for (unsigned i = 0; i < fakeqmp_commands(t->f); i++)
        caps += !strcmp(fakeqmp_command_name(t->f, i), "qmp_capabilities");
    assert_int_equal(caps, t->r->n);
    assert_int_equal(fakeqmp_connections(t->f), 1);
}

static void c_bytewise(rt *t)
{
    c_value(t);
    assert_int_equal(fakeqmp_write_calls(t->f), fakeqmp_bytes_sent(t->f));
}

static void c_no_mismatch(rt *t)
{
    c_value(t);
    assert_int_equal(fakeqmp_mismatches(t->f), 0);
}

/* ---- the table ---- */

static const char nul_in_string[] =
    "{\"event\": \"A\0B\", \"data\": {}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 0}}\r\n";
static const char bad_utf8[] =
    "{\"event\": \"A\xff\xfe\", \"data\": {}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 0}}\r\n";
static const char overlong_utf8[] =
    "{\"event\": \"A\xc0\xaf\", \"data\": {}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 0}}\r\n";
static const char nul_reply[] = "{\"return\": {\"s\": \"x\0y\"}, \"id\": \"libdm-0-9\"}\r\n";

/* Known libdm bugs, found by this matrix. The rows are skipped (so the suite
 * stays green, also under valgrind) unless LIBDM_FAULT_KNOWN_BUGS=1.
 *
 * BUG_OVERLONG_UTF8: yajl's UTF-8 check (which libdm/json.c relies on, see
 * its header comment) is structural only: overlong forms such as C0 AF (an
 * overlong '/') are accepted and handed to callers as event names/strings. */
#define BUG_OVERLONG_UTF8 "json.c: overlong UTF-8 accepted (yajl checks structure only)"

#define MiB ((size_t)1 << 20)

/* Positional rows: the trailing fields default to 0. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const row rows[] = {
    /* greeting and negotiation */
    { "no-greeting", s_no_greeting, NULL, NULL, -ETIMEDOUT, "greeting", CONNECT_MS, 0, 0 },
    { "greeting-then-silence", s_caps_silent, NULL, NULL, -ETIMEDOUT, "negotiation", CONNECT_MS, 0, 0 },
    { "partial-greeting-then-eof", s_partial_greeting, NULL, NULL, -ECONNRESET, "monitor connection", CONNECT_MS, 0, 0 },
    { "greeting-delayed-200ms", s_delayed_greeting, NULL, c_value, 0, NULL, 400, 0, 0, 200 },
    { "greeting-delayed-past-deadline", s_delayed_greeting, NULL, NULL, -ETIMEDOUT, "greeting", CONNECT_MS, 0, 0, 3000 },
    { "caps-reply-delayed-300ms", s_caps_delay, NULL, c_value, 0, NULL, 500, 0, 0, 300 },
    { "caps-refused", s_caps_refused, NULL, NULL, -EPROTO, "qmp_capabilities refused", CONNECT_MS, 0, 0 },
    { "caps-refused-connect-only", s_caps_refused, client_connect_only, NULL, -EPROTO, "refused", CONNECT_MS, 0, 0 },
    /* QEMU 7.2's reconnect race (qmp.c, renegotiate): the monitor lost or
     * restarted our negotiation; qmp_capabilities again, on the same
     * connection. n: qmp_capabilities sent in all. */
    { "caps-reply-error-without-id", s_caps_raw, NULL, c_caps_sent, 0, NULL, CONNECT_MS, 0, 0, 2,
      "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\r\n", 0, 0,
      NULL },
    { "caps-reply-error-without-id-then-its-reply", s_caps_raw, NULL, c_caps_sent, 0, NULL, CONNECT_MS, 0, 0, 2,
      "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\r\n"
      "{\"return\": {}, \"id\": $ID}\r\n", 0, 0, NULL },
    { "second-greeting-then-error-without-id", s_caps_raw, NULL, c_caps_sent, 0, NULL, CONNECT_MS, 0, 0, 3,
      GREETING_JSON "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}\r\n",
      0, 0, NULL },
    { "second-greeting-while-negotiating", s_caps_raw, NULL, c_caps_sent, 0, NULL, CONNECT_MS, 0, 0, 2,
      GREETING_JSON, 0, 0, NULL },
    /* ...but not forever: a device model that always says so is refused. */
    { "caps-reply-error-without-id-every-time", s_caps_raw_always, NULL, NULL, -EPROTO, "out of step", CONNECT_MS, 0, 0, 4,
      "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\r\n", 0, 0,
      NULL },
    { "caps-reply-wrong-id-then-silence", s_caps_raw, NULL, NULL, -ETIMEDOUT, "negotiation", CONNECT_MS, 0, 0, 0,
      "{\"return\": {}, \"id\": \"someone-else\"}\r\n" },
    { "connect-path-never-appears", s_none, NULL, NULL, -ETIMEDOUT, "connection", CONNECT_MS, 0, F_NOSERVER },
    { "connect-only-ok", s_none, client_connect_only, NULL, 0, NULL, 300, 0, 0 },
    /* libdm may be writing qmp_capabilities when the EOF comes: EPIPE. */
    { "eof-right-after-greeting", s_close_now, NULL, NULL, -ECONNRESET, "monitor connection|Broken pipe", CONNECT_MS, 0, 0,
      0, NULL, 0, 0, NULL },
    /* bytes before the greeting */
    { "garbage-before-greeting", s_preamble, NULL, c_value, 0, NULL, 300, 0, 0, 0,
      "\x01\x02 garbage }{ not json\r\n" },
    { "stale-reply-before-greeting", s_preamble, NULL, c_value, 0, NULL, 300, 0, 0, 0,
      "{\"return\": {}, \"id\": \"old-caps-1469\"}\r\n" },
    { "several-stale-lines-before-greeting", s_preamble, NULL, c_value, 0, NULL, 300, 0, 0, 0,
      "{\"return\": {}, \"id\": \"a\"}\r\n[1,2]\r\n\r\n\"str\"\r\n{\"error\": {}}\r\n" },
    { "non-object-greeting-line-before-greeting", s_preamble, NULL, c_value, 0, NULL, 300, 0, 0, 0,
      "{\"QMP\": 42}\r\n" },
    /* protocol errors after the greeting */
    { "garbage-after-greeting", s_send_then_status, NULL, NULL, -EPROTO, "malformed", CONNECT_MS, 0, 0, 0,
      "this is not json\r\n" },
    { "garbage-after-negotiation", s_event_send_then_status, NULL, NULL, -EPROTO, "malformed", CONNECT_MS, 0, 0, 0,
      "}}}\r\n" },
    { "two-values-on-one-line", s_event_send_then_status, NULL, NULL, -EPROTO, "malformed", CONNECT_MS, 0, 0, 0,
      "{\"a\": 1}{\"b\": 2}\r\n" },
    { "non-object-message", s_event_send_then_status, NULL, NULL, -EPROTO, "not a JSON object", CONNECT_MS, 0, 0, 0,
      "[1, 2, 3]\r\n" },
    { "nul-byte-in-string", s_event_send_then_status, NULL, NULL, -EPROTO, "malformed", CONNECT_MS, 0, 0, 0,
      nul_in_string, sizeof(nul_in_string) - 1 },
    { "invalid-utf8-in-string", s_event_send_then_status, NULL, NULL, -EPROTO, "malformed", CONNECT_MS, 0, 0, 0,
      bad_utf8 },
    { "overlong-utf8-in-string", s_event_send_then_status, NULL, NULL, -EPROTO, "malformed", CONNECT_MS, 0, 0, 0,
      overlong_utf8, 0, 0, BUG_OVERLONG_UTF8 },
    { "nul-byte-in-reply", s_event_send_then_status, NULL, NULL, -EPROTO, "malformed", CONNECT_MS, 0, 0, 0,
      nul_reply, sizeof(nul_reply) - 1 },
    { "truncated-reply-then-eof", s_eof_outstanding, NULL, NULL, -ECONNRESET, "monitor connection", CONNECT_MS, 0, 0, 0,
      "{\"return\": {\"status\": \"runn" },
    /* bounds */
    { "line-100MiB-limit-1MiB", s_oversize, NULL, NULL, -E2BIG, "size limit", 3000, 0, F_LIMIT_1M | F_HEAVY,
      100 * MiB },
    { "line-20MiB-default-limit", s_oversize, NULL, NULL, -E2BIG, "size limit", 3000, 0, 0, 20 * MiB },
    { "line-1MiB-plus-1-limit-1MiB", s_oversize_after_event, NULL, NULL, -E2BIG, "size limit", 3000, 0, F_LIMIT_1M,
      MiB + 3 },
    { "line-512KiB-within-limit-dropped", s_oversize_after_event, NULL, c_value, 0, NULL, 3000, 0, F_LIMIT_1M,
      512 * 1024 },
    { "nesting-10000", s_deep, NULL, NULL, -E2BIG, "too deep", CONNECT_MS, 0, 0, 10000 },
    { "nesting-1000000", s_deep, NULL, NULL, -E2BIG, "too deep", 3000, 0, 0, 1000000 },
    { "nesting-129-in-reply", s_deep_reply, NULL, NULL, -E2BIG, "too deep", CONNECT_MS, 0, 0, 129 },
    { "nesting-10-in-reply-depth-limit-8", s_deep_reply, NULL, NULL, -E2BIG, "too deep", CONNECT_MS, 0,
      F_SMALL_LIMITS, 10 },
    { "nesting-5-in-reply-depth-limit-8", s_deep_reply, NULL, NULL, 0, NULL, CONNECT_MS, 0, F_SMALL_LIMITS, 5 },
    { "values-200-limit-100", s_values_reply, NULL, NULL, -E2BIG, "too many values", CONNECT_MS, 0,
      F_SMALL_LIMITS, 200 },
    /* event floods */
    { "burst-1M-events-listener", s_burst, NULL, c_events_all, 0, NULL, 15000, 0, F_LISTENER | F_HEAVY, 1000000,
      NULL, 0, 15000 },
    { "burst-1M-events-queue", s_burst, NULL, NULL, -ENOBUFS, "unread QMP events", 3000, 0, F_QUEUE | F_HEAVY, 1000000 },
    { "burst-1024-events-queue-at-limit", s_burst_exact, NULL, c_value, 0, NULL, 2000, 0, F_QUEUE, 1024 },
    { "burst-1025-events-queue-over-limit", s_burst_exact, NULL, NULL, -ENOBUFS, "unread QMP events", 2000, 0,
      F_QUEUE, 1025 },
    { "burst-11-events-queue-limit-10", s_burst_exact, NULL, NULL, -ENOBUFS, "unread QMP events", 2000, 0,
      F_QUEUE | F_SMALL_LIMITS, 11 },
    { "event-then-reply", s_event_then_reply, NULL, c_events_two, 0, NULL, 300, 0, F_LISTENER },
    /* ids */
    { "reply-unknown-id-dropped", s_raw_reply_then_status, client_two_calls, c_no_mismatch, 0, NULL, 500, 0, 0, 0,
      "{\"return\": {\"bogus\": 1}, \"id\": \"not-ours\"}\r\n{\"return\": " STATUS_JSON ", \"id\": $ID}\r\n" },
    { "reply-numeric-id-dropped", s_raw_reply, NULL, c_value, 0, NULL, 500, 0, 0, 0,
      "{\"return\": {}, \"id\": 7}\r\n{\"return\": " STATUS_JSON ", \"id\": $ID}\r\n" },
    { "reply-before-command-sent", s_send_then_status, NULL, c_value, 0, NULL, 300, 0, 0, 0,
      "{\"return\": {}, \"id\": \"libdm-0-1\"}\r\n" },
    { "error-without-id", s_raw_reply, NULL, NULL, -EPROTO, "out of step", CONNECT_MS, 0, 0, 0,
      "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, invalid keyword\"}}\r\n",
      0, 0, NULL },
    { "error-without-id-no-desc", s_raw_reply, NULL, NULL, -EPROTO, "no description", CONNECT_MS, 0, 0, 0,
      "{\"error\": {\"class\": \"GenericError\"}}\r\n" },
    { "return-without-id-dropped", s_raw_reply, NULL, c_value, 0, NULL, 300, 0, 0, 0,
      "{\"return\": {}}\r\n{\"return\": " STATUS_JSON ", \"id\": $ID}\r\n" },
    { "duplicate-reply-dropped", s_raw_reply_then_status, client_two_calls, c_value, 0, NULL, 500, 0, 0, 0,
      "{\"return\": {}, \"id\": $ID}\r\n{\"return\": {}, \"id\": $ID}\r\n" },
    { "neither-reply-nor-event-dropped", s_raw_reply, NULL, c_value, 0, NULL, 300, 0, 0, 0,
      "{\"hello\": 1, \"id\": $ID}\r\n{\"return\": " STATUS_JSON ", \"id\": $ID}\r\n" },
    /* EOF and deadlines */
    { "eof-with-reply-outstanding", s_eof_outstanding, NULL, NULL, -ECONNRESET, "monitor connection", CONNECT_MS, 0, 0, 0, "" },
    { "reply-never-comes", s_noreply, NULL, NULL, -ETIMEDOUT, "deadline", 400, -ETIMEDOUT, 0, 0, NULL, 0, 400 },
    { "reply-after-call-deadline-drained-on-close", s_delay, client_late_then_drain, NULL, -ETIMEDOUT, "deadline",
      300, 0, 0, 700 },
    { "slow-reply-200ms", s_delay, NULL, c_value, 0, NULL, 300, 0, 0, 200 },
    { "slow-reply-900ms-before-deadline", s_delay, NULL, c_value, 0, NULL, 1100, 0, 0, 900 },
    { "script-pause-500ms-before-reply", s_sleep_then_status, NULL, c_value, 0, NULL, 700, 0, 0, 500 },
    { "bytewise-writes", s_status, NULL, c_bytewise, 0, NULL, 1000, 0, F_BYTEWISE },
    { "bytewise-with-stale-preamble", s_preamble, NULL, c_value, 0, NULL, 1000, 0, F_BYTEWISE, 0,
      "{\"return\": {}, \"id\": \"old\"}\r\n" },
    { "pipeline-50-calls-bytewise", s_pipeline, client_pipeline, NULL, 0, NULL, 3000, 0, F_BYTEWISE, 50 },
    { "pipeline-200-calls", s_pipeline, client_pipeline, NULL, 0, NULL, 3000, 0, 0, 200 },
    /* QMP errors */
    { "qmp-error-reply", s_qmp_error, NULL, c_class, -EREMOTEIO, "", 300, 0, 0 },
    /* quit */
    { "quit-shutdown-then-eof", s_quit, client_quit, NULL, 0, NULL, 500, 0, 0 },
    { "quit-eof-without-shutdown", s_quit_no_shutdown, client_quit, NULL, -ECONNRESET, "monitor connection", 500, 0, 0 },
    /* the pre-4.2 monitor-block bug (emulated) */
    { "monitor-block-naive-client-wedges", s_bug_noreply, client_naive_then_libdm, c_wedged, -ETIMEDOUT,
      "negotiation", 3000, 0, F_BUGMODE },
    { "monitor-block-libdm-close-drains-100ms", s_bug_delay, client_drain_then_reconnect, c_not_wedged, 0, NULL,
      1500, 0, F_BUGMODE, 100 },
    { "monitor-block-libdm-close-drains-400ms", s_bug_delay, client_drain_then_reconnect, c_not_wedged, 0, NULL,
      1500, 0, F_BUGMODE, 400 },
    { "monitor-block-cancelled-slot-still-drained", s_bug_delay, client_cancel_then_reconnect, c_two_connections, 0,
      NULL, 1500, 0, F_BUGMODE, 150 },
};
#pragma GCC diagnostic pop

#define NROWS LIBDM__N(rows)
#define LIBDM__N(a) (sizeof(a) / sizeof((a)[0]))

static bool why_matches(const char *text, const char *alternatives)
{
    char buf[256], *save = NULL;

    snprintf(buf, sizeof(buf), "%s", alternatives);
    if (!*buf)
        return true;
    for (char *a = strtok_r(buf, "|", &save); a; a = strtok_r(NULL, "|", &save))
        if (strstr(text, a))
            return true;
    return false;
}

static void run_row(void **state)
{
    const row *r = *state;
    rt t = { .r = r };
    int fds_before = tu_fd_count();
    struct rusage ru0, ru1;
    uint64_t t0, el;
    int st, cs;

    if (r->bug && !known_bugs) {
        print_message("%s: skipped, known libdm bug: %s\n", r->name, r->bug);
        skipped++;
        skip();
    }
    getrusage(RUSAGE_SELF, &ru0);
    t.dir = tu_mkdtemp("fault");
    assert_non_null(t.dir);
    assert_true(asprintf(&t.sock, "%s/%s", t.dir, (r->flags & F_NOSERVER) ? "never.sock" : "qmp.sock") > 0);
    assert_int_equal(libdm_ctx_new(NULL, &t.ctx), 0);
    if (!(r->flags & F_NOSERVER)) {
        t.f = fakeqmp_new(t.sock);
        assert_non_null(t.f);
        if (r->flags & F_BYTEWISE)
            fakeqmp_set_bytewise(t.f, 1);
        if (r->flags & F_BUGMODE)
            fakeqmp_set_monitor_block_bug(t.f, 1);
        r->script(&t);
        assert_int_equal(fakeqmp_start(t.f), 0);
    }

    t0 = tu_now_ms();
    st = (r->client ? r->client : client_call)(&t);
    el = tu_now_ms() - t0;
    if (st != r->expect)
        fail_msg("%s: status %d (%s), expected %d; last error: %s", r->name, st, strerror(-st),
                 r->expect, t.why);
    if (el > r->deadline_ms + MARGIN_MS)
        fail_msg("%s: took %llu ms, deadline %u ms", r->name, (unsigned long long)el,
                 r->deadline_ms);
    if (st != 0) {
        assert_true(t.why[0] != '\0' || st == -EREMOTEIO);
        if (r->why && !why_matches(t.why, r->why))
            fail_msg("%s: last error \"%s\" does not contain \"%s\"", r->name, t.why, r->why);
    }
    if (r->check)
        r->check(&t);
    libdm_json_free(t.value);

    t0 = tu_now_ms();
    cs = libdm_qmp_close(t.q, CLOSE_MS);
    el = tu_now_ms() - t0;
    if (r->close_expect != CLOSE_ANY && cs != r->close_expect)
        fail_msg("%s: close returned %d, expected %d", r->name, cs, r->close_expect);
    if (el > CLOSE_MS + MARGIN_MS)
        fail_msg("%s: close took %llu ms", r->name, (unsigned long long)el);

    fakeqmp_free(t.f);
    libdm_ctx_free(t.ctx);
    tu_rmtree(t.dir);
    free(t.dir);
    free(t.sock);
    assert_int_equal(tu_fd_count(), fds_before);
    getrusage(RUSAGE_SELF, &ru1);
    /* No row may make the process grow by anything like a flooded message:
     * the peak RSS (KiB) grows by less than 48 MiB in any row. */
    if (ru1.ru_maxrss - ru0.ru_maxrss > 48 * 1024)
        fail_msg("%s: peak RSS grew by %ld KiB", r->name, ru1.ru_maxrss - ru0.ru_maxrss);
    passed++;
}

int main(void)
{
    static struct CMUnitTest tests[NROWS];
    const char *qv = getenv("LIBDM_FAULT_QUICK");
    int failed;

    quick = qv && *qv && strcmp(qv, "0");
    qv = getenv("LIBDM_FAULT_KNOWN_BUGS");
    known_bugs = qv && *qv && strcmp(qv, "0");
    /* LIBDM_FAULT_ROWS: a cmocka filter (glob) to run only some rows. */
    if ((qv = getenv("LIBDM_FAULT_ROWS")) && *qv)
        cmocka_set_test_filter(qv);
    for (size_t i = 0; i < NROWS; i++)
        tests[i] = (struct CMUnitTest){ rows[i].name, run_row, NULL, NULL, (void *)&rows[i] };
    failed = _cmocka_run_group_tests("fault-qmp", tests, NROWS, NULL, NULL);
    printf("fault matrix: %u scenarios passed (%zu rows, %u skipped as known libdm bugs%s)\n",
           passed, NROWS, skipped, quick ? ", LIBDM_FAULT_QUICK" : "");
    return failed;
}
