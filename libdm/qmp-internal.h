/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef LIBDM_QMP_INTERNAL_H
#define LIBDM_QMP_INTERNAL_H

#include "internal.h"

/* Context of the device model using this connection, for log messages. */
void libdm__qmp_set_log_prefix(libdm_qmp *qmp, const char *prefix);

/* The form of a QMP message (@text of @len bytes, or parsed) fit for a log:
 * every secret-carrying value replaced by "<redacted>" (qmp-redact.c). */
int libdm__qmp_redact(const char *text, size_t len, char **ret_text);
int libdm__qmp_redact_json(const libdm_json *msg, char **ret_text);

#endif
