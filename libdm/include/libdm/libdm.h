/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef LIBDM_LIBDM_H
#define LIBDM_LIBDM_H
#include <libdm/common.h>
#include <libdm/ctx.h>
#include <libdm/json.h>
#include <libdm/qmp.h>
#include <libdm/dm.h>
#include <libdm/migrate.h>
#endif
