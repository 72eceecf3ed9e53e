/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The migration steps' QMP vocabulary (migrate.c): the arguments they send
 * and what they read from QEMU's answers (migration states, progress,
 * capabilities). Pure functions of JSON: below the steps, this file calls
 * none of them.
 */
#include "migrate-op-internal.h"

#include <string.h>

/* ---- arguments ---- */

libdm_json *libdm__mig_string_arg(const char *key, const char *value)
{
    libdm_json *o = libdm_json_new_object();

    if (o && libdm_json_object_add(o, key, libdm_json_new_string(value)) < 0)
        o = libdm_json_free(o);
    return o;
}

/* {"capabilities": [{"capability": NAME, "state": ON}]}. The adds take
 * their member, on failure too: each is freed once. */
libdm_json *libdm__mig_capability_args(const char *name, bool on)
{
    libdm_json *args = libdm_json_new_object(), *list = libdm_json_new_array(),
               *cap = libdm_json_new_object();
    int r = args && list && cap ? 0 : -ENOMEM;

    if (r == 0)
        r = libdm_json_object_add(cap, "capability", libdm_json_new_string(name));
    if (r == 0)
        r = libdm_json_object_add(cap, "state", libdm_json_new_bool(on));
    if (r < 0) {
        libdm_json_free(cap);
        libdm_json_free(list);
        return libdm_json_free(args);
    }
    if (libdm_json_array_append(list, cap) < 0) {
        libdm_json_free(list);
        return libdm_json_free(args);
    }
    if (libdm_json_object_add(args, "capabilities", list) < 0)
        return libdm_json_free(args);
    return args;
}

/* ---- answers ---- */

static bool is_one_of(const char *s, const char *const *set)
{
    for (; s && *set; set++)
        if (!strcmp(s, *set))
            return true;
    return false;
}

bool libdm__mig_state_busy(const char *st)
{
    static const char *const busy[] = { "setup", "active", "pre-switchover", "device",
                                        "cancelling", "postcopy-active", "wait-unplug", NULL };

    return is_one_of(st, busy);
}

bool libdm__mig_state_in_flight(const char *st)
{
    static const char *const in_flight[] = { "setup", "active", "pre-switchover", "device",
                                             "postcopy-active", "wait-unplug", NULL };

    return is_one_of(st, in_flight);
}

bool libdm__mig_state_settled(const char *st)
{
    static const char *const settled[] = { "completed", "cancelled", "failed", "none", NULL };

    return is_one_of(st ? st : "none", settled);
}

bool libdm__mig_state_source_keeps(const char *st)
{
    static const char *const keeps[] = { "none", "cancelled", "failed", NULL };

    return is_one_of(st ? st : "none", keeps);
}

bool libdm__mig_has_capability(const libdm_json *caps, const char *name)
{
    for (size_t i = 0; i < libdm_json_length(caps); i++) {
        const char *c = libdm__json_get_str(libdm_json_array_get(caps, i), "capability");

        if (c && !strcmp(c, name))
            return true;
    }
    return false;
}

static uint64_t ram_field(const libdm_json *info, const char *key)
{
    int64_t v = 0;

    (void)libdm_json_get_int(libdm_json_object_get(libdm_json_object_get(info, "ram"), key), &v);
    return v > 0 ? (uint64_t)v : 0;
}

void libdm__mig_read_progress(const libdm_json *info, const char *status,
                              libdm_migrate_progress *ret)
{
    const libdm_json *mbps = libdm_json_object_get(libdm_json_object_get(info, "ram"), "mbps");
    double dv;

    *ret = (libdm_migrate_progress){
        .status = status,
        .ram_transferred = ram_field(info, "transferred"),
        .ram_total = ram_field(info, "total"),
        .ram_remaining = ram_field(info, "remaining"),
    };
    /* A fractional number ("mbps": 268.0843...): read as one (issue 22, 13). */
    if (libdm__json_get_double(mbps, &dv) == 0 && dv >= 0.5 && dv < 1e15)
        ret->mbps = (uint64_t)(dv + 0.5);
}
