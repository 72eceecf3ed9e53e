/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The DM handle's public getters, and the host's own pointer on it (issue
 * 19: per-DM user data with a getter, as sd-bus objects have; libdm never
 * looks at it), and what the operations above read of its record. Above
 * dm.c. */
#include "dm-private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void *libdm_dm_set_userdata(libdm_dm *dm, void *userdata)
{
    void *old;

    if (!dm)
        return NULL;
    old = dm->userdata;
    dm->userdata = userdata;
    return old;
}

void *libdm_dm_get_userdata(const libdm_dm *dm)
{
    return dm ? dm->userdata : NULL;
}

/* ---- getters ---- */

libdm_qmp *libdm_dm_get_qmp(libdm_dm *dm)
{
    return dm->qmp && libdm_qmp_get_state(dm->qmp) == LIBDM_QMP_READY ? dm->qmp : NULL;
}

libdm_dm_state libdm_dm_get_state(const libdm_dm *dm) { return dm->state; }
const char *libdm_dm_get_name(const libdm_dm *dm) { return dm->name; }
uint32_t libdm_dm_get_domid(const libdm_dm *dm) { return dm->domid; }
int libdm_dm_get_pid(const libdm_dm *dm) { return dm->pid; }
const char *libdm_dm_get_qmp_path(const libdm_dm *dm) { return dm->qmp_path; }
const char *libdm_dm_get_profile(const libdm_dm *dm) { return dm->profile; }
const char *libdm_dm_get_machine(const libdm_dm *dm) { return dm->machine; }
uint64_t libdm_dm_get_memory_mb(const libdm_dm *dm) { return dm->memory_mb; }
const char *libdm_dm_get_runstate(const libdm_dm *dm) { return dm->runstate; }
const char *libdm_dm_get_confinement(const libdm_dm *dm) { return dm->confinement; }
const char *libdm_dm_get_nics(const libdm_dm *dm) { return dm->nics; }
int libdm_dm_get_exit_status(const libdm_dm *dm) { return dm->exited ? dm->exit_status : -1; }
const char *libdm_dm_last_error(const libdm_dm *dm) { return dm->last_error; }

libdm_dm_end_by libdm_dm_get_ended_by(const libdm_dm *dm)
{
    return dm && dm->exited ? dm->ended_by : LIBDM_END_NONE;
}

int libdm_dm_get_exit_code(const libdm_dm *dm)
{
    return dm && dm->exited ? libdm__status_exit_code(dm->exit_status) : -1;
}

int libdm_dm_get_term_signal(const libdm_dm *dm)
{
    return dm && dm->exited ? libdm__status_signal(dm->exit_status) : 0;
}

const char *libdm_dm_get_log_tail(const libdm_dm *dm)
{
    return dm && dm->exited ? dm->log_tail : NULL;
}

const char *libdm_dm_end_by_to_string(libdm_dm_end_by by)
{
    switch (by) {
    case LIBDM_END_NONE: return "none";
    case LIBDM_END_SELF: return "self";
    case LIBDM_END_STOP: return "stop";
    case LIBDM_END_TIMEOUT: return "timeout";
    case LIBDM_END_FAILED: return "failed-start";
    case LIBDM_END_EXTERNAL: return "external";
    case LIBDM_END_UNKNOWN: return "unknown";
    }
    return "?";
}

int libdm__dm_recorded_state(libdm_dm *dm, char **ret_state)
{
    libdm__store *store;
    libdm__record rec;
    int r = libdm__dm_store(dm, &store);

    if (r < 0)
        return r;
    libdm__record_init(&rec);
    r = libdm__store_get(store, dm->name, &rec);
    if (r >= 0) {
        *ret_state = rec.state ? strdup(rec.state) : NULL;
        r = rec.state && !*ret_state ? -ENOMEM : 0;
    }
    libdm__record_clear(&rec);
    return r;
}

bool libdm__dm_record_pending(const libdm_dm *dm)
{
    return dm && dm->store_wait_since != 0;
}
