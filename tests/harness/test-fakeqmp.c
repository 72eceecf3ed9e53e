/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Self-test of fakeqmp, the fake QMP server. The client side here is plain
 * blocking sockets written for the test, never libdm: a fake checked with
 * the code it is meant to check would prove nothing.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fakeqmp.h"

#define GREETING                                                                    \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, " \
    "\"package\": \"fakeqmp\"}, \"capabilities\": [\"oob\"]}}"
#define CAPS "{\"execute\": \"qmp_capabilities\", \"id\": \"caps\"}\n"
#define CAPS_OK "{\"return\": {}, \"id\": \"caps\"}"
#define WAIT_MS 5000 /* generous: valgrind is slow */

static const char *fakeqmp_program;

/* ------------------------------------------------------------------ */
/* A minimal blocking client. */

struct client {
    int fd;
    char *buf;
    size_t len, cap;
};

static long long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int unix_connect(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_true(strlen(path) < sizeof(a.sun_path));
    strcpy(a.sun_path, path);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void client_open(struct client *cl, const char *path)
{
    memset(cl, 0, sizeof(*cl));
    cl->fd = unix_connect(path);
}

static void client_close(struct client *cl)
{
    close(cl->fd);
    free(cl->buf);
    memset(cl, 0, sizeof(*cl));
    cl->fd = -1;
}

static void client_send(struct client *cl, const char *s)
{
    size_t n = strlen(s);

    assert_int_equal(send(cl->fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Read once, waiting up to timeout_ms: >0 bytes, 0 EOF (or reset), -1 timeout. */
static int client_fill(struct client *cl, int timeout_ms)
{
    struct pollfd p = {.fd = cl->fd, .events = POLLIN};
    ssize_t r;

    if (poll(&p, 1, timeout_ms) == 0)
        return -1;
    if (cl->cap - cl->len < 65536) {
        cl->cap = cl->cap * 2 + 65536;
        cl->buf = realloc(cl->buf, cl->cap);
        assert_non_null(cl->buf);
    }
    r = recv(cl->fd, cl->buf + cl->len, cl->cap - cl->len, 0);
    if (r < 0 && errno == ECONNRESET)
        return 0;
    assert_true(r >= 0);
    cl->len += (size_t)r;
    return (int)r;
}

/* Next line without its CRLF (malloc'd), or NULL on EOF or timeout. */
static char *client_line(struct client *cl, int timeout_ms)
{
    long long until = mono_ms() + timeout_ms;

    for (;;) {
        char *nl = cl->len ? memchr(cl->buf, '\n', cl->len) : NULL;

        if (nl) {
            size_t n = (size_t)(nl - cl->buf), drop = n + 1;
            char *line;

            if (n > 0 && cl->buf[n - 1] == '\r')
                n--;
            line = strndup(cl->buf, n);
            memmove(cl->buf, cl->buf + drop, cl->len - drop);
            cl->len -= drop;
            return line;
        }
        if (mono_ms() >= until || client_fill(cl, (int)(until - mono_ms())) <= 0)
            return NULL;
    }
}

static void expect_line(struct client *cl, const char *want)
{
    char *line = client_line(cl, WAIT_MS);

    assert_non_null(line);
    assert_string_equal(line, want);
    free(line);
}

/* True if nothing at all (not even EOF) arrives within ms. */
static bool client_quiet(struct client *cl, int ms)
{
    return cl->len == 0 && client_fill(cl, ms) < 0;
}

/* True if the server closes within timeout_ms (data before EOF is kept). */
static bool client_eof(struct client *cl, int timeout_ms)
{
    long long until = mono_ms() + timeout_ms;
    int r;

    while ((r = client_fill(cl, (int)(until - mono_ms()))) > 0 && mono_ms() < until)
        ;
    return r == 0;
}

static void negotiate(struct client *cl)
{
    expect_line(cl, GREETING);
    client_send(cl, CAPS);
    expect_line(cl, CAPS_OK);
}

/* ------------------------------------------------------------------ */
/* Fixture: a fresh server on a fresh path; teardown checks no fd leaked. */

struct fx {
    char dir[64];
    char path[128];
    fakeqmp *f;
    int fds;
};

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    if (!fx)
        return -1;
    fx->fds = count_fds();
    strcpy(fx->dir, "/tmp/fakeqmp-test-XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    snprintf(fx->path, sizeof(fx->path), "%s/qmp", fx->dir);
    fx->f = fakeqmp_new(fx->path);
    *state = fx;
    return fx->f ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    int fds;

    fakeqmp_free(fx->f);
    rmdir(fx->dir);
    fds = count_fds();
    if (fds != fx->fds) {
        fprintf(stderr, "fd leak: %d before, %d after\n", fx->fds, fds);
        free(fx);
        return -1;
    }
    free(fx);
    return 0;
}

static struct fx *start(void **state)
{
    struct fx *fx = *state;

    assert_int_equal(fakeqmp_start(fx->f), 0);
    return fx;
}

/* ------------------------------------------------------------------ */
/* Tests. */

static void test_greeting_and_caps(void **state)
{
    struct fx *fx = start(state);
    struct client cl;

    client_open(&cl, fx->path);
    negotiate(&cl);
    assert_int_equal(fakeqmp_wait_commands(fx->f, 1, WAIT_MS), 1);
    assert_string_equal(fakeqmp_command_name(fx->f, 0), "qmp_capabilities");
    assert_string_equal(fakeqmp_command_line(fx->f, 0), "{\"execute\": \"qmp_capabilities\", \"id\": \"caps\"}");
    assert_null(fakeqmp_command_name(fx->f, 1));
    assert_int_equal(fakeqmp_connections(fx->f), 1);
    assert_int_equal(fakeqmp_mismatches(fx->f), 0);
    client_close(&cl);
}

/* Whatever JSON the id is, it comes back byte for byte. */
static void test_ids_copied(void **state)
{
    struct fx *fx = *state;
    struct client cl;

    for (int i = 0; i < 4; i++)
        assert_int_equal(fakeqmp_expect(fx->f, "query-status", "{\"status\":\"prelaunch\",\"running\":false}"), 0);
    start(state);
    client_open(&cl, fx->path);
    negotiate(&cl);
    client_send(&cl, "{\"execute\":\"query-status\",\"id\":\"s-1\"}\n");
    expect_line(&cl, "{\"return\": {\"status\":\"prelaunch\",\"running\":false}, \"id\": \"s-1\"}");
    client_send(&cl, "{\"execute\":\"query-status\",\"id\":42}\n");
    expect_line(&cl, "{\"return\": {\"status\":\"prelaunch\",\"running\":false}, \"id\": 42}");
    client_send(&cl, "{\"id\" : {\"a\": [1, \"x,}\"]} , \"execute\":\"query-status\"}\n");
    expect_line(&cl, "{\"return\": {\"status\":\"prelaunch\",\"running\":false}, \"id\": {\"a\": [1, \"x,}\"]}}");
    client_send(&cl, "{\"execute\":\"query-status\"}\n");
    expect_line(&cl, "{\"return\": {\"status\":\"prelaunch\",\"running\":false}}");
    assert_int_equal(fakeqmp_mismatches(fx->f), 0);
    assert_int_equal(fakeqmp_steps_left(fx->f), 0);
    client_close(&cl);
}

static void test_error_step(void **state)
{
    struct fx *fx = *state;
    struct client cl;

    assert_int_equal(fakeqmp_expect_error(fx->f, "cont", "GenericError", "no \"way\""), 0);
    start(state);
    client_open(&cl, fx->path);
    negotiate(&cl);
    client_send(&cl, "{\"execute\": \"cont\", \"id\": 7}\n");
    expect_line(&cl, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no \\\"way\\\"\"}, \"id\": 7}");
    assert_int_equal(fakeqmp_mismatches(fx->f), 0);
    client_close(&cl);
}

/* Like QEMU: nothing but qmp_capabilities before negotiation. */
static void test_commands_before_caps(void **state)
{
    struct fx *fx = *state;
    struct client cl;

    assert_int_equal(fakeqmp_expect(fx->f, "query-status", "{}"), 0);
    start(state);
    client_open(&cl, fx->path);
    expect_line(&cl, GREETING);
    client_send(&cl, "{\"execute\": \"query-status\", \"id\": 1}\n");
    expect_line(&cl, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities "
                     "negotiation with 'qmp_capabilities'\"}, \"id\": 1}");
    client_send(&cl, CAPS);
    expect_line(&cl, CAPS_OK);
    client_send(&cl, CAPS);
    expect_line(&cl, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Capabilities negotiation is "
                     "already complete, command ignored\"}, \"id\": \"caps\"}");
    client_send(&cl, "{\"execute\": \"query-status\", \"id\": 2}\n");
    expect_line(&cl, "{\"return\": {}, \"id\": 2}");
    assert_int_equal(fakeqmp_mismatches(fx->f), 0);
    client_close(&cl);
}

/* An explicit qmp_capabilities step overrides the emulation. */
static void test_scripted_caps(void **state)
{
    struct fx *fx = *state;
    struct client cl;

    assert_int_equal(fakeqmp_expect_error(fx->f, "qmp_capabilities", "GenericError", "nope"), 0);
    start(state);
    client_open(&cl, fx->path);
    expect_line(&cl, GREETING);
    client_send(&cl, CAPS);
    expect_line(&cl, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}, \"id\": \"caps\"}");
    client_send(&cl, CAPS);
    expect_line(&cl, CAPS_OK);
    client_close(&cl);
}

static void test_event_step(void **state)
{
    struct fx *fx = *state;
    struct client cl;
    char *line;

    assert_int_equal(fakeqmp_event(fx->f, "STOP", "{\"x\": 1}"), 0);
    assert_int_equal(fakeqmp_event(fx->f, "BAD", "{not json"), -1);
    start(state);
    client_open(&cl, fx->path);
    expect_line(&cl, GREETING);
    /* Events wait for negotiation, as in QEMU. */
    assert_true(client_quiet(&cl, 100));
    client_send(&cl, CAPS);
    expect_line(&cl, CAPS_OK);
    line = client_line(&cl, WAIT_MS);
    assert_non_null(line);
    assert_non_null(strstr(line, "{\"event\": \"STOP\", \"data\": {\"x\": 1}, \"timestamp\": {\"seconds\": "));
    assert_non_null(strstr(line, "\"microseconds\": "));
    free(line);
    client_close(&cl);
}

static void test_mismatch(void **state)
{
    struct fx *fx = *state;
    struct client cl;

    assert_int_equal(fakeqmp_expect(fx->f, "query-status", "1"), 0);
    assert_int_equal(fakeqmp_expect(fx->f, "*", "2"), 0);
    start(state);
    client_open(&cl, fx->path);
    negotiate(&cl);
    client_send(&cl, "{\"execute\": \"cont\", \"id\": 1}\n");
    expect_line(&cl, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"fakeqmp: unexpected command "
                     "cont\"}, \"id\": 1}");
    assert_int_equal(fakeqmp_mismatches(fx->f), 1);
    assert_non_null(strstr(fakeqmp_mismatch(fx->f, 0), "cont"));
    client_send(&cl, "{\"execute\": \"query-status\", \"id\": 2}\n");
    expect_line(&cl, "{\"return\": 1, \"id\": 2}");
    client_send(&cl, "{\"exec-oob\": \"anything\", \"id\": 3}\n");
    expect_line(&cl, "{\"return\": 2, \"id\": 3}");
    /* Script exhausted, auto mode off: a mismatch. */
    client_send(&cl, "{\"execute\": \"stop\", \"id\": 4}\n");
    expect_line(&cl, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"fakeqmp: unexpected command "
                     "stop\"}, \"id\": 4}");
    /* Garbage: QEMU's parse error carries no id. */
    client_send(&cl, "{\"execute\": \n");
    expect_line(&cl, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}");
    assert_int_equal(fakeqmp_mismatches(fx->f), 3);
    assert_int_equal(fakeqmp_commands(fx->f), 6);
    assert_string_equal(fakeqmp_command_name(fx->f, 3), "anything");
    assert_string_equal(fakeqmp_command_name(fx->f, 5), "");
    client_close(&cl);
}

static void test_bytewise(void **state)
{
    struct fx *fx = *state;
    struct client cl;

    fakeqmp_set_bytewise(fx->f, 1);
    assert_int_equal(fakeqmp_expect(fx->f, "query-status", "{\"status\": \"running\"}"), 0);
    start(state);
    client_open(&cl, fx->path);
    negotiate(&cl);
    client_send(&cl, "{\"execute\": \"query-status\", \"id\": 1}\n");
    expect_line(&cl, "{\"return\": {\"status\": \"running\"}, \"id\": 1}");
    assert_int_equal(fakeqmp_bytes_sent(fx->f), fakeqmp_write_calls(fx->f));
    assert_true(fakeqmp_write_calls(fx->f) > 100);
    client_close(&cl);
}

/* Script for both monitor-block tests: the first query-status hangs. */
static void hang_then_disconnect(struct fx *fx)
{
    struct client cl;

    assert_int_equal(fakeqmp_expect_noreply(fx->f, "query-status"), 0);
    assert_int_equal(fakeqmp_expect(fx->f, "query-status", "{\"status\": \"prelaunch\"}"), 0);
    assert_int_equal(fakeqmp_start(fx->f), 0);
    client_open(&cl, fx->path);
    negotiate(&cl);
    client_send(&cl, "{\"execute\": \"query-status\", \"id\": 1}\n");
    assert_int_equal(fakeqmp_wait_commands(fx->f, 2, WAIT_MS), 2);
    assert_true(client_quiet(&cl, 50));
    client_close(&cl);
}

static void wait_pending_disconnect(struct fx *fx)
{
    long long until = mono_ms() + WAIT_MS;

    while (fakeqmp_pending_at_disconnect(fx->f) == 0 && mono_ms() < until)
        usleep(1000);
    assert_int_equal(fakeqmp_pending_at_disconnect(fx->f), 1);
}

static void test_monitor_block_bug(void **state)
{
    struct fx *fx = *state;
    struct client cl;

    fakeqmp_set_monitor_block_bug(fx->f, 1);
    hang_then_disconnect(fx);
    wait_pending_disconnect(fx);
    assert_true(fakeqmp_is_wedged(fx->f));
    client_open(&cl, fx->path);
    expect_line(&cl, GREETING);
    client_send(&cl, CAPS);
    assert_int_equal(fakeqmp_wait_commands(fx->f, 3, WAIT_MS), 3);
    assert_true(client_quiet(&cl, 300));
    assert_int_equal(fakeqmp_connections(fx->f), 2);
    client_close(&cl);
}

static void test_no_monitor_block_without_bug(void **state)
{
    struct fx *fx = *state;
    struct client cl;

    hang_then_disconnect(fx);
    wait_pending_disconnect(fx);
    assert_false(fakeqmp_is_wedged(fx->f));
    client_open(&cl, fx->path);
    negotiate(&cl);
    client_send(&cl, "{\"execute\": \"query-status\", \"id\": 2}\n");
    expect_line(&cl, "{\"return\": {\"status\": \"prelaunch\"}, \"id\": 2}");
    client_close(&cl);
}

static void test_delay(void **state)
{
    struct fx *fx = *state;
    struct client cl;
    long long t0;

    assert_int_equal(fakeqmp_expect_delay(fx->f, "cont", 200, "{}"), 0);
    assert_int_equal(fakeqmp_expect(fx->f, "stop", "{}"), 0);
    start(state);
    client_open(&cl, fx->path);
    negotiate(&cl);
    t0 = mono_ms();
    /* Pipelined: stop is not read until cont has been answered. */
    client_send(&cl, "{\"execute\": \"cont\", \"id\": 1}\n{\"execute\": \"stop\", \"id\": 2}\n");
    expect_line(&cl, "{\"return\": {}, \"id\": 1}");
    assert_true(mono_ms() - t0 >= 190);
    expect_line(&cl, "{\"return\": {}, \"id\": 2}");
    client_close(&cl);
}

static void test_raw_and_preamble(void **state)
{
    struct fx *fx = *state;
    struct client cl;

    assert_int_equal(fakeqmp_set_preamble(fx->f, "{\"return\": {}, \"id\": \"old-1\"}\r\n"), 0);
    assert_int_equal(fakeqmp_expect_raw(fx->f, "query-status", "{\"return\": $ID, \"id\": $ID}\r\n"), 0);
    assert_int_equal(fakeqmp_send_raw(fx->f, "x\0y\n", 4), 0);
    start(state);
    client_open(&cl, fx->path);
    expect_line(&cl, "{\"return\": {}, \"id\": \"old-1\"}");
    negotiate(&cl);
    client_send(&cl, "{\"execute\": \"query-status\", \"id\": [5]}\n");
    expect_line(&cl, "{\"return\": [5], \"id\": [5]}");
    /* send_raw passes any byte, NUL included. */
    while (cl.len < 4)
        assert_true(client_fill(&cl, WAIT_MS) > 0);
    assert_int_equal(cl.len, 4);
    assert_memory_equal(cl.buf, "x\0y\n", 4);
    client_close(&cl);
}

/* The close step ends a connection; the script goes on with the next. */
static void test_close_and_reconnect(void **state)
{
    struct fx *fx = *state;
    struct client cl;

    assert_int_equal(fakeqmp_expect(fx->f, "query-status", "1"), 0);
    assert_int_equal(fakeqmp_close_step(fx->f), 0);
    assert_int_equal(fakeqmp_expect(fx->f, "query-status", "2"), 0);
    start(state);
    client_open(&cl, fx->path);
    negotiate(&cl);
    client_send(&cl, "{\"execute\": \"query-status\", \"id\": 1}\n");
    expect_line(&cl, "{\"return\": 1, \"id\": 1}");
    assert_true(client_eof(&cl, WAIT_MS));
    client_close(&cl);
    assert_int_equal(fakeqmp_wait_finished(fx->f, 50), 0);
    client_open(&cl, fx->path);
    negotiate(&cl);
    client_send(&cl, "{\"execute\": \"query-status\", \"id\": 2}\n");
    expect_line(&cl, "{\"return\": 2, \"id\": 2}");
    client_close(&cl);
    assert_int_equal(fakeqmp_wait_finished(fx->f, WAIT_MS), 1);
    assert_int_equal(fakeqmp_connections(fx->f), 2);
}

/* One client at a time: the second waits in the backlog for the first. */
static void test_one_client_at_a_time(void **state)
{
    struct fx *fx = start(state);
    struct client a, b;

    fakeqmp_set_auto(fx->f, 1);
    client_open(&a, fx->path);
    client_open(&b, fx->path);
    expect_line(&a, GREETING);
    assert_true(client_quiet(&b, 100));
    client_close(&a);
    negotiate(&b);
    client_close(&b);
}

static void test_streams(void **state)
{
    struct fx *fx = *state;
    struct client cl;
    char *line;

    start(state);
    client_open(&cl, fx->path);
    negotiate(&cl);
    /* Appended while running (raw steps do not wait for negotiation, so
     * adding them only now is what puts them after it). */
    assert_int_equal(fakeqmp_send_oversize_step(fx->f, 1000000), 0);
    assert_int_equal(fakeqmp_send_deep_step(fx->f, 100000), 0);
    assert_int_equal(fakeqmp_event_burst_step(fx->f, "BURST", 3000), 0);
    assert_int_equal(fakeqmp_expect(fx->f, "query-status", "{}"), 0);
    line = client_line(&cl, WAIT_MS);
    assert_non_null(line);
    assert_int_equal(strlen(line), 1000000 - 2);
    assert_memory_equal(line, "{\"return\":\"aaa", 14);
    assert_string_equal(line + strlen(line) - 3, "a\"}");
    free(line);
    line = client_line(&cl, WAIT_MS);
    assert_non_null(line);
    assert_int_equal(strlen(line), 200000);
    assert_int_equal(strspn(line, "["), 100000);
    free(line);
    for (int i = 0; i < 3000; i++) {
        line = client_line(&cl, WAIT_MS);
        assert_non_null(line);
        assert_memory_equal(line, "{\"event\": \"BURST\"", 17);
        free(line);
    }
    /* Commands are answered again once the streams are done. */
    client_send(&cl, "{\"execute\": \"query-status\", \"id\": 1}\n");
    expect_line(&cl, "{\"return\": {}, \"id\": 1}");
    client_close(&cl);
}

static void test_auto(void **state)
{
    struct fx *fx = *state;
    struct client cl;
    char *line;

    fakeqmp_set_auto(fx->f, 1);
    start(state);
    client_open(&cl, fx->path);
    negotiate(&cl);
    client_send(&cl, "{\"execute\": \"query-status\", \"id\": 1}\n"
                     "{\"execute\": \"cont\", \"id\": 2}\n"
                     "{\"execute\": \"query-status\", \"id\": 3}\n");
    expect_line(&cl, "{\"return\": {\"status\": \"prelaunch\", \"running\": false, \"singlestep\": false}, \"id\": 1}");
    expect_line(&cl, "{\"return\": {}, \"id\": 2}");
    expect_line(&cl, "{\"return\": {\"status\": \"running\", \"running\": true, \"singlestep\": false}, \"id\": 3}");
    client_send(&cl, "{\"execute\": \"quit\", \"id\": 4}\n");
    line = client_line(&cl, WAIT_MS);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}"));
    free(line);
    expect_line(&cl, "{\"return\": {}, \"id\": 4}");
    assert_true(client_eof(&cl, WAIT_MS));
    assert_int_equal(fakeqmp_mismatches(fx->f), 0);
    client_close(&cl);
}

/* Input framing: several commands per write, one command over several. */
static void test_split_and_pipelined(void **state)
{
    struct fx *fx = *state;
    struct client cl;

    fakeqmp_set_auto(fx->f, 1);
    start(state);
    client_open(&cl, fx->path);
    expect_line(&cl, GREETING);
    client_send(&cl, CAPS "{\"execute\": \"stop\", \"id\": 1}\r\n\n  \n{\"execute\": \"sto");
    expect_line(&cl, CAPS_OK);
    expect_line(&cl, "{\"return\": {}, \"id\": 1}");
    assert_true(client_quiet(&cl, 50));
    client_send(&cl, "p\", \"id\": 2}\n");
    expect_line(&cl, "{\"return\": {}, \"id\": 2}");
    assert_int_equal(fakeqmp_commands(fx->f), 3);
    client_close(&cl);
}

static void test_greeting_none(void **state)
{
    struct fx *fx = *state;
    struct client cl;

    fakeqmp_set_greeting(fx->f, FAKEQMP_GREETING_NONE, 0);
    start(state);
    client_open(&cl, fx->path);
    client_send(&cl, CAPS);
    assert_int_equal(fakeqmp_wait_commands(fx->f, 1, WAIT_MS), 1);
    assert_true(client_quiet(&cl, 200));
    client_close(&cl);
}

static void test_greeting_partial(void **state)
{
    struct fx *fx = *state;
    struct client cl;

    fakeqmp_set_greeting(fx->f, FAKEQMP_GREETING_PARTIAL_THEN_EOF, 0);
    start(state);
    client_open(&cl, fx->path);
    assert_true(client_eof(&cl, WAIT_MS));
    assert_true(cl.len > 0 && cl.len < strlen(GREETING));
    assert_memory_equal(cl.buf, GREETING, cl.len);
    client_close(&cl);
}

static void test_greeting_delayed(void **state)
{
    struct fx *fx = *state;
    struct client cl;
    long long t0;

    fakeqmp_set_greeting(fx->f, FAKEQMP_GREETING_DELAYED, 200);
    start(state);
    t0 = mono_ms();
    client_open(&cl, fx->path);
    expect_line(&cl, GREETING);
    assert_true(mono_ms() - t0 >= 190);
    client_close(&cl);
}

static void test_sleep_step(void **state)
{
    struct fx *fx = *state;
    struct client cl;
    long long t0;

    assert_int_equal(fakeqmp_sleep(fx->f, 200), 0);
    assert_int_equal(fakeqmp_event(fx->f, "LATE", NULL), 0);
    start(state);
    t0 = mono_ms();
    client_open(&cl, fx->path);
    negotiate(&cl);
    free(client_line(&cl, WAIT_MS));
    assert_true(mono_ms() - t0 >= 190);
    client_close(&cl);
}

/* fakeqmp_free must not hang on a connected, silent client, and must give
 * back exactly the fds it took. */
static void test_free_with_client(void **state)
{
    struct fx *fx = *state;
    int before = count_fds(), after;
    char path[160];
    fakeqmp *f;
    struct client cl;

    snprintf(path, sizeof(path), "%s/other", fx->dir);
    f = fakeqmp_new(path);
    assert_non_null(f);
    assert_int_equal(fakeqmp_expect_noreply(f, "*"), 0);
    assert_int_equal(fakeqmp_start(f), 0);
    client_open(&cl, path);
    negotiate(&cl);
    client_send(&cl, "{\"execute\": \"query-status\", \"id\": 1}\n");
    assert_int_equal(fakeqmp_wait_commands(f, 2, WAIT_MS), 2);
    fakeqmp_free(f);
    after = count_fds();
    client_close(&cl);
    assert_int_equal(after, before + 1); /* only the client's own fd */
    assert_int_equal(count_fds(), before);
    assert_int_equal(access(path, F_OK), -1);
    /* Never started: still clean. */
    f = fakeqmp_new(path);
    assert_non_null(f);
    fakeqmp_free(f);
    assert_int_equal(count_fds(), before);
}

static void test_listen_fd(void **state)
{
    struct fx *fx = *state;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    char path[160];
    fakeqmp *f;
    struct client cl;

    snprintf(path, sizeof(path), "%s/prebound", fx->dir);
    strcpy(a.sun_path, path);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 1), 0);
    /* The libxl way: connect and queue a command before the server runs. */
    client_open(&cl, path);
    client_send(&cl, CAPS);
    f = fakeqmp_new_listen_fd(lfd);
    assert_non_null(f);
    assert_int_equal(fakeqmp_start(f), 0);
    expect_line(&cl, GREETING);
    expect_line(&cl, CAPS_OK);
    client_close(&cl);
    fakeqmp_free(f);
    assert_true(fcntl(lfd, F_GETFD) >= 0); /* still the caller's */
    close(lfd);
    unlink(path);
}

/* ---- the standalone program ---- */

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

static pid_t spawn(const char *sock, const char *script)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        execl(fakeqmp_program, "fakeqmp", sock, script, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid)
{
    int status;

    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void wait_for_path(const char *path)
{
    long long until = mono_ms() + WAIT_MS;

    while (access(path, F_OK) != 0 && mono_ms() < until)
        usleep(1000);
    assert_int_equal(access(path, F_OK), 0);
}

static void test_program(void **state)
{
    struct fx *fx = *state;
    char script[160], sock[160];
    struct client cl;
    pid_t pid;

    if (!fakeqmp_program || access(fakeqmp_program, X_OK) != 0)
        skip();
    snprintf(script, sizeof(script), "%s/script", fx->dir);
    snprintf(sock, sizeof(sock), "%s/prog", fx->dir);
    write_file(script, "# a comment\n"
                       "\n"
                       "preamble stale\\r\\n\n"
                       "expect query-status delay 10 return {\"status\": \"prelaunch\"}\n"
                       "expect cont error GenericError it # is not a comment\n"
                       "expect stop raw {\"return\": 0, \"id\": $ID}\\r\\n\n"
                       "event STOP {\"a\": 1}\n"
                       "send hello\\x21\\n\n"
                       "close\n");
    pid = spawn(sock, script);
    /* The socket appears only once it listens: no connect retry needed. */
    wait_for_path(sock);
    client_open(&cl, sock);
    expect_line(&cl, "stale");
    negotiate(&cl);
    client_send(&cl, "{\"execute\": \"query-status\", \"id\": 1}\n");
    expect_line(&cl, "{\"return\": {\"status\": \"prelaunch\"}, \"id\": 1}");
    client_send(&cl, "{\"execute\": \"cont\", \"id\": 2}\n");
    expect_line(&cl, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"it # is not a comment\"}, \"id\": 2}");
    client_send(&cl, "{\"execute\": \"stop\", \"id\": 3}\n");
    expect_line(&cl, "{\"return\": 0, \"id\": 3}");
    free(client_line(&cl, WAIT_MS));
    expect_line(&cl, "hello!");
    assert_true(client_eof(&cl, WAIT_MS));
    client_close(&cl);
    assert_int_equal(wait_exit(pid), 0);

    /* A mismatch makes the exit status 1. */
    write_file(script, "expect query-status return {}\n");
    pid = spawn(sock, script);
    wait_for_path(sock);
    client_open(&cl, sock);
    negotiate(&cl);
    client_send(&cl, "{\"execute\": \"cont\", \"id\": 1}\n");
    free(client_line(&cl, WAIT_MS));
    client_send(&cl, "{\"execute\": \"query-status\", \"id\": 2}\n");
    expect_line(&cl, "{\"return\": {}, \"id\": 2}");
    client_close(&cl);
    assert_int_equal(wait_exit(pid), 1);

    /* A bad script is refused before serving. */
    write_file(script, "expect query-status return {bad\n");
    assert_int_equal(wait_exit(spawn(sock, script)), 2);
    unlink(script);
}

/* Leave the program's own check to the end: it forks. */
int main(int argc, char **argv)
{
    static char guess[PATH_MAX];
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_greeting_and_caps),
        T(test_ids_copied),
        T(test_error_step),
        T(test_commands_before_caps),
        T(test_scripted_caps),
        T(test_event_step),
        T(test_mismatch),
        T(test_bytewise),
        T(test_monitor_block_bug),
        T(test_no_monitor_block_without_bug),
        T(test_delay),
        T(test_raw_and_preamble),
        T(test_close_and_reconnect),
        T(test_one_client_at_a_time),
        T(test_streams),
        T(test_auto),
        T(test_split_and_pipelined),
        T(test_greeting_none),
        T(test_greeting_partial),
        T(test_greeting_delayed),
        T(test_sleep_step),
        T(test_free_with_client),
        T(test_listen_fd),
        T(test_program),
#undef T
    };
    const char *slash = strrchr(argv[0], '/');

    (void)argc;
    /* $FAKEQMP comes from make check; otherwise look next to this test. */
    fakeqmp_program = getenv("FAKEQMP");
    if (!fakeqmp_program && slash) {
        snprintf(guess, sizeof(guess), "%.*s/fakeqmp", (int)(slash - argv[0]), argv[0]);
        fakeqmp_program = guess;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
