/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef LIBDM_QMP_INTERNAL_H
#define LIBDM_QMP_INTERNAL_H

#include "internal.h"

/* Context of the device model using this connection, for log messages. */
void libdm__qmp_set_log_prefix(libdm_qmp *qmp, const char *prefix);

/* The loggable form of a command's @arguments (qmp-redact.c): 0 and
 * *ret_copy NULL when nothing is secret, 1 and a copy with every secret
 * replaced by "<redacted>" (free with libdm_json_free), or -ENOMEM. */
int libdm__qmp_redact(const char *command, const libdm_json *arguments, libdm_json **ret_copy);

#endif
