/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: a whole QMP conversation (libdm/qmp.c) against a scripted
 * peer. A socketpair: the fuzz input is the "server" side, written after a
 * valid greeting; libdm_qmp drives the other end with two calls queued
 * before negotiation. So that replies can match, "$C" in the input becomes
 * the id of libdm's qmp_capabilities and "$1" / "$2" those of the two calls
 * (JSON strings; ids are learnt from the capabilities command libdm sends).
 * The server end is closed after the input, so every run ends; then
 * libdm_qmp_close(q, 0). No sleeps.
 */
#include "internal.h"
#include "fuzz-common.h"

#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FUZZ_GREETING \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, " \
    "\"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n"

typedef struct fuzz_tr {
    int done;
    unsigned events;
} fuzz_tr;

static void fuzz_tr_reply(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    fuzz_tr *t = user;
    char *s;

    (void)q;
    t->done++;
    if (r->status == 0 && r->value && libdm_json_to_string(r->value, 0, &s) == 0)
        free(s);
    /* A hostile peer may leave out class or desc: they may be NULL. Read
     * them so the sanitizers check they are valid strings. */
    if (r->status == -EREMOTEIO) {
        if (r->error_class)
            (void)strlen(r->error_class);
        if (r->error_desc)
            (void)strlen(r->error_desc);
    }
}

static void fuzz_tr_event(libdm_qmp *q, const char *name, const libdm_json *data, void *user)
{
    (void)q;
    (void)data;
    if (!name)
        abort();
    ((fuzz_tr *)user)->events++;
}

/* Replaces $C, $1, $2 by the quoted ids. */
static char *fuzz_tr_substitute(const uint8_t *data, size_t size, const char *nonce, size_t *ret_len)
{
    size_t cap = size * 40 + 1, len = 0;
    char *out = malloc(cap);

    if (!out)
        abort();
    for (size_t i = 0; i < size; i++) {
        if (data[i] == '$' && i + 1 < size &&
            (data[i + 1] == 'C' || data[i + 1] == '1' || data[i + 1] == '2')) {
            /* libdm's ids: the 6-digit nonce, then the counter in base64url
             * (one digit below 64: 1 -> 'B', 2 -> 'C', 3 -> 'D'). */
            int n = data[i + 1] == 'C' ? 3 : data[i + 1] - '0';
            len += (size_t)snprintf(out + len, cap - len, "\"%s%c\"", nonce, 'A' + n);
            i++;
            continue;
        }
        out[len++] = (char)data[i];
    }
    *ret_len = len;
    return out;
}

static bool fuzz_tr_final(libdm_qmp *q)
{
    libdm_qmp_state s = libdm_qmp_get_state(q);

    return s == LIBDM_QMP_CLOSED || s == LIBDM_QMP_BROKEN;
}

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    libdm_ctx *ctx = NULL;
    libdm_qmp *q = NULL;
    fuzz_tr t = { 0 };
    int sv[2];
    char line[512], nonce[16] = "AAAAAA";
    size_t got = 0, len, off = 0;
    char *text, *p, *name;
    libdm_json *edata;

    if (size > 16 * 1024)
        return 0;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    if (fcntl(sv[1], F_SETFL, O_NONBLOCK) < 0)
        abort();
    if (libdm_ctx_new(NULL, &ctx) < 0 || libdm_qmp_new(ctx, &q) < 0)
        abort();
    if (libdm_qmp_set_event_queue(q, 1) < 0 ||
        libdm_qmp_add_event_listener(q, NULL, fuzz_tr_event, &t, NULL) < 0)
        abort();
    if (libdm_qmp_connect_fd(q, sv[0], 5000) < 0)
        abort();
    /* Queued until READY; ids 1 and 2, the capabilities command gets 3. */
    if (libdm_qmp_call_async(q, "query-status", NULL, 5000, fuzz_tr_reply, &t, NULL) < 0 ||
        libdm_qmp_call_async(q, "cont", NULL, 5000, fuzz_tr_reply, &t, NULL) < 0)
        abort();
    if (write(sv[1], FUZZ_GREETING, strlen(FUZZ_GREETING)) != (ssize_t)strlen(FUZZ_GREETING))
        abort();
    /* Learn the nonce from qmp_capabilities' id: its first 6 characters. */
    while (!memchr(line, '\n', got) && !fuzz_tr_final(q)) {
        ssize_t n;

        if (libdm_ctx_run_once(ctx, 100) < 0)
            abort();
        n = recv(sv[1], line + got, sizeof(line) - 1 - got, MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        if (got >= sizeof(line) - 1)
            abort();
    }
    line[got] = '\0';
    if ((p = strstr(line, "\"id\":\"")) && strlen(p) > 12) {
        memcpy(nonce, p + 6, 6);
        nonce[6] = '\0';
    }
    text = fuzz_tr_substitute(data, size, nonce, &len);
    /* Write the transcript, letting libdm read (and write) meanwhile. */
    while (off < len) {
        ssize_t n = send(sv[1], text + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            break; /* libdm closed its end */
        if (libdm_ctx_run_once(ctx, 0) < 0)
            abort();
        /* Discard libdm's commands so its writes never block. */
        while (recv(sv[1], line, sizeof(line), MSG_DONTWAIT) > 0)
            ;
    }
    free(text);
    close(sv[1]);
    while (!fuzz_tr_final(q) || t.done < 2)
        if (libdm_ctx_run_once(ctx, 100) < 0)
            abort();
    while (libdm_qmp_pop_event(q, &name, &edata) == 1) {
        free(name);
        libdm_json_free(edata);
    }
    (void)libdm_qmp_last_error(q);
    (void)libdm_qmp_get_greeting(q);
    libdm_qmp_close(q, 0);
    libdm_ctx_free(ctx);
    return 0;
}
