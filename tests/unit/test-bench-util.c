/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-util's QMP reads are bounded (issue 23: bench-start's floor-poll
 * hung for good on a QEMU that never answered). A peer that says nothing:
 * bu_read_until() returns NULL after the connection's timeout. An alarm
 * fails the test if the read would wait for ever. Checked: on 88eb0bf
 * (before the fix) it dies of SIGALRM (exit 142).
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench-util.h"

static bu_conn conn;

int main(void)
{
    int sp[2];
    double t0, ms;

    alarm(10); /* unbounded: SIGALRM ends the test, a failure */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
        return 99;
    conn.fd = sp[0];
#ifdef BU_READ_TIMEOUT_MS /* (without it, bench-util.c's reads are unbounded) */
    conn.timeout_ms = 200;
#endif
    (void)!write(sp[1], "{\"QMP\": {}}\n{\"partial", 22);
    t0 = bu_now_us();
    if (bu_read_until(&conn, "\"return\"") != NULL) {
        fprintf(stderr, "FAIL: a reply that never came was read\n");
        return 1;
    }
    ms = (bu_now_us() - t0) / 1000.0;
    if (ms < 150 || ms > 5000) {
        fprintf(stderr, "FAIL: gave up after %.0f ms, not about 200\n", ms);
        return 1;
    }
    printf("PASS: bu_read_until gave up after %.0f ms\n", ms);
    close(sp[0]);
    close(sp[1]);
    return 0;
}
