/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl's logger: a stderr stream logger for libdm's messages, except that
 * (unless -v) libdm's warnings and errors are held back: libdm both returns
 * an error and logs it, and dmctl reports each failure once, in its own
 * "dmctl: NAME: cause" line, with a held message as the cause when nothing
 * better is known. So without -v libdm's ERROR lines are never printed;
 * held warnings nobody used are printed when dmctl ends, unless a failure
 * was reported (they were part of it).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmctl.h"

#define HELD_MAX 8

typedef struct held_msg {
    xentoollog_level level;
    char *text;
} held_msg;

typedef struct dmctl_logger {
    xentoollog_logger vtable;     /* first: the logger is cast to this */
    xentoollog_logger *stream;    /* stderr, filtering by level itself */
    bool hold;
    held_msg held[HELD_MAX];
    size_t n_held;
} dmctl_logger;

/* Removes held message @i. */
static void drop_held(dmctl_logger *l, size_t i)
{
    free(l->held[i].text);
    memmove(l->held + i, l->held + i + 1, (l->n_held - i - 1) * sizeof(l->held[0]));
    l->n_held--;
}

/* Prints the held warnings (errors are dmctl's to report) and drops all. */
static void print_held_warnings(dmctl_logger *l)
{
    size_t i;

    for (i = 0; i < l->n_held; i++)
        if (l->held[i].level < XTL_ERROR)
            xtl_log(l->stream, l->held[i].level, -1, "libdm", "%s", l->held[i].text);
    dmctl_logger_discard(&l->vtable);
}

/* Keeps the first message (often the cause) and the latest ones. */
static void hold(dmctl_logger *l, xentoollog_level level, char *msg)
{
    if (l->n_held == HELD_MAX)
        drop_held(l, 1);
    l->held[l->n_held].level = level;
    l->held[l->n_held++].text = msg;
}

static void dmctl_vmessage(xentoollog_logger *lg, xentoollog_level level, int errnoval,
                           const char *context, const char *format, va_list al)
    __attribute__((format(printf, 5, 0)));

static void stream_message(xentoollog_logger *s, xentoollog_level level, int errnoval,
                           const char *context, const char *format, ...)
    __attribute__((format(printf, 5, 6)));
static void stream_message(xentoollog_logger *s, xentoollog_level level, int errnoval,
                           const char *context, const char *format, ...)
{
    va_list ap;

    va_start(ap, format);
    s->vmessage(s, level, errnoval, context, format, ap);
    va_end(ap);
}

static void dmctl_vmessage(xentoollog_logger *lg, xentoollog_level level, int errnoval,
                           const char *context, const char *format, va_list al)
{
    dmctl_logger *l = (dmctl_logger *)lg;
    char *raw = NULL, *msg;

    /* A log line may quote the DM: never raw to the terminal. */
    if (vasprintf(&raw, format, al) < 0 || !raw)
        return;
    msg = dmctl_safe(raw, DMCTL_SAFE_LINE);
    free(raw);
    if (!msg)
        return;
    if (l->hold && level >= XTL_WARN) {
        if (errnoval >= 0) {
            char *with = NULL;

            if (asprintf(&with, "%s: %s", msg, strerror(errnoval)) >= 0 && with) {
                free(msg);
                msg = with;
            }
        }
        hold(l, level, msg);
        return;
    }
    stream_message(l->stream, level, errnoval, context, "%s", msg);
    free(msg);
}

static void dmctl_progress(xentoollog_logger *lg, const char *context, const char *doing_what,
                           int percent, unsigned long done, unsigned long total)
{
    dmctl_logger *l = (dmctl_logger *)lg;

    if (l->stream->progress)
        l->stream->progress(l->stream, context, doing_what, percent, done, total);
}

static void dmctl_destroy(xentoollog_logger *lg)
{
    dmctl_logger *l = (dmctl_logger *)lg;

    print_held_warnings(l);
    xtl_logger_destroy(l->stream);
    free(l);
}

xentoollog_logger *dmctl_logger_new(xentoollog_level level, bool hold)
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
    l->hold = hold;
    l->vtable.vmessage = dmctl_vmessage;
    l->vtable.progress = dmctl_progress;
    l->vtable.destroy = dmctl_destroy;
    return &l->vtable;
}

static bool ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);

    return b > 0 && a >= b && strcmp(s + a - b, tail) == 0;
}

/* @held says nothing @why does not: it is @why, or "PREFIX: @why", or its
 * text after its own "PREFIX: " ends @why (libdm logs a cause, then the
 * sentence it became part of). */
static bool same_message(const char *held, const char *why)
{
    const char *rest = strstr(held, ": ");

    if (strcmp(held, why) == 0 || ends_with(held, why))
        return true;
    return rest && ends_with(why, rest + 2);
}

/* Drops held messages saying @why (about to be printed by dmctl). */
static void drop_same(dmctl_logger *l, const char *why)
{
    size_t i, k = 0;

    for (i = 0; i < l->n_held; i++) {
        if (same_message(l->held[i].text, why))
            free(l->held[i].text);
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
    last = l->held[--l->n_held].text;
    drop_same(l, last);
    return last;
}

char *dmctl_logger_take_first_error(xentoollog_logger *lg)
{
    dmctl_logger *l = (dmctl_logger *)lg;
    char *first = NULL;
    size_t i;

    for (i = 0; l && i < l->n_held && !first; i++) {
        if (l->held[i].level >= XTL_ERROR) {
            first = l->held[i].text;
            l->held[i].text = NULL;
        }
    }
    dmctl_logger_discard(lg);
    return first;
}

void dmctl_logger_discard(xentoollog_logger *lg)
{
    dmctl_logger *l = (dmctl_logger *)lg;
    size_t i;

    for (i = 0; l && i < l->n_held; i++)
        free(l->held[i].text);
    if (l)
        l->n_held = 0;
}
