/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl's logger: a stderr stream logger for libdm's messages, except that
 * (unless -v) libdm's errors are held back and become the cause in dmctl's
 * own "dmctl: NAME: cause" line, so that each failure is reported once.
 * Held-back errors nobody used are printed when dmctl ends: nothing is lost.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmctl.h"

#define HELD_MAX 8

typedef struct dmctl_logger {
    xentoollog_logger vtable;     /* first: the logger is cast to this */
    xentoollog_logger *stream;    /* stderr, filtering by level itself */
    bool hold_errors;
    char *held[HELD_MAX];
    size_t n_held;
} dmctl_logger;

static void hold(dmctl_logger *l, char *msg)
{
    if (l->n_held == HELD_MAX) {
        free(l->held[0]);
        memmove(l->held, l->held + 1, (HELD_MAX - 1) * sizeof(l->held[0]));
        l->n_held--;
    }
    l->held[l->n_held++] = msg;
}

static void dmctl_vmessage(xentoollog_logger *lg, xentoollog_level level, int errnoval,
                           const char *context, const char *format, va_list al)
    __attribute__((format(printf, 5, 0)));

static void dmctl_vmessage(xentoollog_logger *lg, xentoollog_level level, int errnoval,
                           const char *context, const char *format, va_list al)
{
    dmctl_logger *l = (dmctl_logger *)lg;
    char *msg = NULL;

    if (l->hold_errors && level >= XTL_ERROR) {
        if (vasprintf(&msg, format, al) < 0 || !msg)
            return;
        if (errnoval >= 0) {
            char *with = NULL;

            if (asprintf(&with, "%s: %s", msg, strerror(errnoval)) >= 0 && with) {
                free(msg);
                msg = with;
            }
        }
        hold(l, msg);
        return;
    }
    l->stream->vmessage(l->stream, level, errnoval, context, format, al);
}

static void dmctl_progress(xentoollog_logger *lg, const char *context, const char *doing_what,
                           int percent, unsigned long done, unsigned long total)
{
    dmctl_logger *l = (dmctl_logger *)lg;

    if (l->stream->progress)
        l->stream->progress(l->stream, context, doing_what, percent, done, total);
}

static void print_held(dmctl_logger *l, size_t upto)
{
    size_t i;

    for (i = 0; i < upto; i++) {
        fprintf(stderr, "dmctl: %s\n", l->held[i]);
        free(l->held[i]);
    }
    memmove(l->held, l->held + upto, (l->n_held - upto) * sizeof(l->held[0]));
    l->n_held -= upto;
}

static void dmctl_destroy(xentoollog_logger *lg)
{
    dmctl_logger *l = (dmctl_logger *)lg;

    print_held(l, l->n_held);
    xtl_logger_destroy(l->stream);
    free(l);
}

xentoollog_logger *dmctl_logger_new(xentoollog_level level, bool hold_errors)
{
    dmctl_logger *l = calloc(1, sizeof(*l));

    if (!l)
        return NULL;
    l->stream = (xentoollog_logger *)xtl_createlogger_stdiostream(
        stderr, level, XTL_STDIOSTREAM_HIDE_PROGRESS);
    if (!l->stream) {
        free(l);
        return NULL;
    }
    l->hold_errors = hold_errors;
    l->vtable.vmessage = dmctl_vmessage;
    l->vtable.progress = dmctl_progress;
    l->vtable.destroy = dmctl_destroy;
    return &l->vtable;
}

/* Drops held errors equal to @same (the DM's last error, about to be printed). */
static void drop_same(dmctl_logger *l, const char *same)
{
    size_t i, k = 0;

    for (i = 0; i < l->n_held; i++) {
        if (strcmp(l->held[i], same) == 0)
            free(l->held[i]);
        else
            l->held[k++] = l->held[i];
    }
    l->n_held = k;
}

char *dmctl_logger_take_error(xentoollog_logger *lg, const char *same)
{
    dmctl_logger *l = (dmctl_logger *)lg;
    char *last;

    if (!l)
        return NULL;
    if (same) {
        drop_same(l, same);
        return NULL;
    }
    if (l->n_held == 0)
        return NULL;
    last = l->held[--l->n_held];
    drop_same(l, last);
    print_held(l, l->n_held);   /* earlier, different causes: keep them visible */
    return last;
}
