/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A DM's last error and run state, as its operations say them: the first
 * cause of a failure stays first, later sentences are appended. Below dm.c:
 * it touches the handle's fields and the log, and calls nothing above.
 */

#include "dm-private.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sets the DM's last error (libdm_dm_last_error) and logs it at @level. */
static void dm_errorv(libdm_dm *dm, xentoollog_level level, const char *fmt, va_list ap)
{
    char *msg, *joined;

    if (vasprintf(&msg, fmt, ap) < 0)
        return;
    /* The first cause of an operation's failure stays first: what follows
     * (the kill after a deadline, the end it caused) is appended. A
     * symptom said first (the monitor reset) gives way to the cause. */
    if (dm->op && dm->op->said && dm->last_error && !dm->last_error_soft) {
        joined = libdm__sprintf("%s; %s", dm->last_error, msg);
        if (joined) {
            free(dm->last_error);
            dm->last_error = joined;
        }
        libdm__log(dm->ctx, level, -1, "%s: %s", dm->name, msg);
        free(msg);
        return;
    }
    free(dm->last_error);
    dm->last_error = libdm__sprintf("%s: %s", dm->name, msg);
    dm->last_error_soft = false;
    if (dm->op)
        dm->op->said = true;
    free(msg);
    if (dm->last_error)
        libdm__log(dm->ctx, level, -1, "%s", dm->last_error);
}

void libdm__dm_error_append(libdm_dm *dm, const char *fmt, ...)
{
    char *msg, *joined;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (!dm->last_error) {
        libdm__dm_error(dm, "%s", msg);
        free(msg);
        return;
    }
    joined = libdm__sprintf("%s; %s", dm->last_error, msg);
    if (joined) {
        free(dm->last_error);
        dm->last_error = joined;
        libdm__log(dm->ctx, XTL_ERROR, -1, "%s: %s", dm->name, msg);
    }
    free(msg);
}

void libdm__dm_error(libdm_dm *dm, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    dm_errorv(dm, XTL_ERROR, fmt, ap);
    va_end(ap);
}

/* An expected event, reported to the host anyway (through an operation's
 * result or its event callback): logged once, at @level. */
void libdm__dm_error_at(libdm_dm *dm, xentoollog_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    dm_errorv(dm, level, fmt, ap);
    va_end(ap);
}

void libdm__dm_set_runstate(libdm_dm *dm, const char *rs)
{
    char *copy = rs ? strdup(rs) : NULL;

    if (!copy)
        return;
    free(dm->runstate);
    dm->runstate = copy;
}
