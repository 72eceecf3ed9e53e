/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fakeqmp: a FAKE QMP server for tests. It is not QEMU.
 *
 * Why a fake: the failures libdm must survive cannot be produced with the
 * real QEMU 7.2 of the test machines. The monitor-block bug (QEMU before
 * 4.2, fixed by commit 2895aaa139) never wedges 7.2; stale replies before
 * the greeting happen in about 0.1 % of reconnects, not on demand; and a
 * hostile or broken device model (no greeting, half a greeting, 100 MiB
 * replies, nesting a million deep, event floods, byte-by-byte writes,
 * unknown ids) is exactly what a well-behaved QEMU never does. fakeqmp
 * plays QEMU's side of the protocol from a script so each of those can be
 * reproduced deterministically.
 *
 * It is an independent peer of libdm: it must not link or include libdm,
 * so a bug shared by both cannot hide itself.
 *
 * Model. One server thread, one client at a time (later clients wait in
 * the listen backlog, as with QEMU), any number of sequential connections.
 * The script is one FIFO of steps shared by all connections:
 *  - an "expect" step waits for a command and answers it;
 *  - the other steps (event, send, close, sleep, oversize, deep, burst) run
 *    as soon as they reach the head of the FIFO while a client is connected
 *    (event and burst also wait for capabilities negotiation, because QEMU
 *    sends no event before it).
 * Steps run strictly in order: a delayed or never-answered command holds
 * the FIFO (and, as in QEMU, the reading of further commands) until its
 * reply is sent or the client leaves.
 *
 * QEMU emulation: greeting on accept; until qmp_capabilities every other
 * command gets CommandNotFound; qmp_capabilities is answered {} by the
 * emulation unless the FIFO head names it explicitly ("*" never matches
 * it). A command that does not match the FIFO head (or arrives with an
 * empty FIFO and auto mode off) gets GenericError "fakeqmp: unexpected
 * command NAME" and counts as a mismatch.
 *
 * Framing: input is split on '\n' (a trailing '\r' is dropped); every
 * message fakeqmp builds ends in "\r\n" like QEMU's.
 *
 * Thread safety: every function may be called from any thread while the
 * server runs, except fakeqmp_free. Unless noted, functions returning int
 * return 0 on success and -1 with errno set on failure (EINVAL for bad
 * arguments or invalid JSON). Running out of memory aborts: this is a test
 * harness.
 */
#ifndef FAKEQMP_H
#define FAKEQMP_H

#include <stddef.h>

typedef struct fakeqmp fakeqmp;

enum fakeqmp_greeting {
    FAKEQMP_GREETING_NORMAL,           /* greet at once */
    FAKEQMP_GREETING_NONE,             /* never greet, never answer */
    FAKEQMP_GREETING_PARTIAL_THEN_EOF, /* half a greeting, then close */
    FAKEQMP_GREETING_DELAYED,          /* greet delay_ms after accept */
};

/* ---- life cycle ---- */

/* Bind and listen on a unix socket at socket_path (a stale file there is
 * replaced). The socket appears already listening, so a client that sees
 * the path can connect. fakeqmp_free removes the path. */
fakeqmp *fakeqmp_new(const char *socket_path);
/* Serve on fd, an already listening stream socket (the way libxl pre-binds
 * QEMU's socket). The caller keeps ownership of fd: fakeqmp_free does not
 * close it. fakeqmp sets O_NONBLOCK on it. */
fakeqmp *fakeqmp_new_listen_fd(int fd);
/* Start the server thread. */
int fakeqmp_start(fakeqmp *f);
/* Stop the thread (never hangs, even with a silent client connected), close
 * every fd fakeqmp opened and free everything. NULL is a no-op. */
void fakeqmp_free(fakeqmp *f);

/* ---- script steps (appended to the FIFO, before or while running) ---- */

/* Reply {"return": return_json, "id": ID}; ID is the request's id copied
 * verbatim (omitted if the request had none). cmd "*" matches any command
 * but qmp_capabilities. return_json must be valid JSON. */
int fakeqmp_expect(fakeqmp *f, const char *cmd, const char *return_json);
/* Reply {"error": {"class": cls, "desc": desc}, "id": ID}. */
int fakeqmp_expect_error(fakeqmp *f, const char *cmd, const char *cls, const char *desc);
/* Take the command and never answer it: the FIFO and the reading of later
 * commands stay blocked until the client disconnects. */
int fakeqmp_expect_noreply(fakeqmp *f, const char *cmd);
/* Like fakeqmp_expect, but the reply is sent ms milliseconds later. */
int fakeqmp_expect_delay(fakeqmp *f, const char *cmd, unsigned ms, const char *return_json);
/* Send text instead of a reply; each "$ID" in it becomes the request's id
 * JSON ("null" if it had none). Not validated: it may be anything. */
int fakeqmp_expect_raw(fakeqmp *f, const char *cmd, const char *text);
/* Send {"event": name, "data": data_json, "timestamp": {...}} (data_json
 * NULL means {}). */
int fakeqmp_event(fakeqmp *f, const char *name, const char *data_json);
/* Send len raw bytes. */
int fakeqmp_send_raw(fakeqmp *f, const void *bytes, size_t len);
/* Close the client connection once everything queued before is written. */
int fakeqmp_close_step(fakeqmp *f);
/* Pause the script for ms milliseconds. */
int fakeqmp_sleep(fakeqmp *f, unsigned ms);
/* Send one line of exactly nbytes bytes (CRLF included; at least 15):
 * {"return":"aaa...a"}\r\n, streamed in chunks, never built whole. */
int fakeqmp_send_oversize_step(fakeqmp *f, size_t nbytes);
/* Send depth '[' then depth ']' then CRLF, streamed. */
int fakeqmp_send_deep_step(fakeqmp *f, size_t depth);
/* Send count events named name (data {}), as fast as the socket takes them,
 * generated while written. */
int fakeqmp_event_burst_step(fakeqmp *f, const char *name, size_t count);

/* ---- behaviour and faults (best set before start or between clients) ---- */

/* With the FIFO empty, answer like an idle QEMU instead of reporting a
 * mismatch: query-status -> prelaunch, then running after cont, paused
 * after stop; cont, stop and anything else -> {}; quit -> SHUTDOWN event
 * (reason host-qmp-quit), {}, then close. */
void fakeqmp_set_auto(fakeqmp *f, int on);
/* How each connection is greeted. delay_ms is used by _DELAYED only. */
void fakeqmp_set_greeting(fakeqmp *f, enum fakeqmp_greeting mode, unsigned delay_ms);
/* Bytes sent on every connection before the greeting (a stale reply, say);
 * NULL or "" for none. */
int fakeqmp_set_preamble(fakeqmp *f, const char *bytes);
/* Write every byte of output with its own write(). */
void fakeqmp_set_bytewise(fakeqmp *f, int on);
/* Emulate the pre-4.2 monitor-block bug: once a client disconnects with a
 * command received but not answered (a delay or noreply step), the monitor
 * is wedged for good: every later connection gets the greeting and never
 * a reply, nor any script step. */
void fakeqmp_set_monitor_block_bug(fakeqmp *f, int on);

/* ---- introspection ---- */

int fakeqmp_is_wedged(fakeqmp *f);
/* Connections accepted. */
unsigned fakeqmp_connections(fakeqmp *f);
/* Commands received (every non-blank line read, valid or not). */
unsigned fakeqmp_commands(fakeqmp *f);
/* Name of command i (0-based), "" if the line had none, NULL if i is out of
 * range. The string stays valid until fakeqmp_free. */
const char *fakeqmp_command_name(fakeqmp *f, unsigned i);
/* Line of command i as received (without its line ending); lifetime as
 * above. */
const char *fakeqmp_command_line(fakeqmp *f, unsigned i);
/* Mismatches: unexpected commands and unparsable input. */
unsigned fakeqmp_mismatches(fakeqmp *f);
/* Description of mismatch i; lifetime as above. */
const char *fakeqmp_mismatch(fakeqmp *f, unsigned i);
/* Disconnects that happened with a reply pending. */
unsigned fakeqmp_pending_at_disconnect(fakeqmp *f);
/* Block until at least n commands were received or timeout_ms passed;
 * returns the count. */
unsigned fakeqmp_wait_commands(fakeqmp *f, unsigned n, unsigned timeout_ms);
/* Steps not yet started (a step in progress no longer counts). */
size_t fakeqmp_steps_left(fakeqmp *f);
/* Block until at least one client came and went, no client is connected
 * and the script is exhausted, or timeout_ms passed; 1 if so, else 0. */
int fakeqmp_wait_finished(fakeqmp *f, unsigned timeout_ms);
/* Bytes written to clients and write calls made (to check bytewise). */
size_t fakeqmp_bytes_sent(fakeqmp *f);
size_t fakeqmp_write_calls(fakeqmp *f);

#endif /* FAKEQMP_H */
