/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A restricted DM's stdout/stderr through the keeper, capped (keeper-log.c). */
#ifndef LIBDM_KEEPER_LOG_H
#define LIBDM_KEEPER_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct keeper_log {
    int rfd;        /* the pipe's read end, non-blocking; -1 once at EOF */
    int out;        /* the log */
    size_t written; /* bytes copied into the log */
    size_t cap;
} keeper_log;

/* Makes the pipe; *ret_wfd (O_CLOEXEC) becomes QEMU's fds 1 and 2. */
int keeper_log_open(keeper_log *l, int *ret_wfd);
/* Copies what is readable now; false once the pipe is at EOF (closed). */
bool keeper_log_pump(keeper_log *l);

#endif
