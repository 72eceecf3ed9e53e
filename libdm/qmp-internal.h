/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef LIBDM_QMP_INTERNAL_H
#define LIBDM_QMP_INTERNAL_H

#include "internal.h"

/* Context of the device model using this connection, for log messages. */
void libdm__qmp_set_log_prefix(libdm_qmp *qmp, const char *prefix);
/* Whose sources the connection's are (libdm__wait_for()): its DM. */
void libdm__qmp_set_owner(libdm_qmp *qmp, const void *owner);

#endif
