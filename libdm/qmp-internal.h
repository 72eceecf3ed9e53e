/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef LIBDM_QMP_INTERNAL_H
#define LIBDM_QMP_INTERNAL_H

#include "internal.h"

/* Context of the device model using this connection, for log messages. */
void libdm__qmp_set_log_prefix(libdm_qmp *qmp, const char *prefix);
/* The object the connection's host callbacks belong to (itself unless a DM
 * owns it): they are held back while a blocking call for another runs
 * (libdm__wait_for). libdm's own calls and listeners are never held. */
void libdm__qmp_set_owner(libdm_qmp *qmp, const void *owner);
/* libdm_qmp_connect_fd(), and once QEMU greets, qmp_capabilities and every
 * queued command are written at once, without waiting for the former's
 * reply (a start's readiness in one round trip). */
int libdm__qmp_connect_fd_pipelined(libdm_qmp *qmp, int fd, int timeout_ms);
int libdm__qmp_call_async_internal(libdm_qmp *q, const char *command,
                                   const libdm_json *arguments, int timeout_ms,
                                   libdm_qmp_reply_fn *cb, void *userdata,
                                   libdm_qmp_slot **ret_slot);
/* As above, passing @fd (not consumed; -1: none) by SCM_RIGHTS (getfd). */
int libdm__qmp_call_async_internal_fd(libdm_qmp *q, const char *command,
                                      const libdm_json *arguments, int fd, int timeout_ms,
                                      libdm_qmp_reply_fn *cb, void *userdata,
                                      libdm_qmp_slot **ret_slot);
int libdm__qmp_add_internal_listener(libdm_qmp *q, libdm_qmp_event_fn *cb, void *userdata);
/* Removes them: their userdata (a DM) is going away while the connection
 * still drains (an event then must not reach it). */
void libdm__qmp_drop_internal_listeners(libdm_qmp *q);

/* The form of a QMP message (@text of @len bytes, or parsed) fit for a log:
 * every secret-carrying value replaced by "<redacted>" (qmp-redact.c). */
int libdm__qmp_redact(const char *text, size_t len, char **ret_text);
int libdm__qmp_redact_json(const libdm_json *msg, char **ret_text);

#endif
