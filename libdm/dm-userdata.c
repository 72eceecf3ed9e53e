/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The host's own pointer on a DM handle (issue 19: per-DM user data with a
 * getter, as sd-bus objects have). libdm never looks at it. */
#include "dm-private.h"

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
