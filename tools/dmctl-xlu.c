/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libxlutil and libxenlight loaded on first use (dmctl-xlu.h says why). */
#include "config.h"

#define DMCTL_XLU_IMPL
#include "dmctl-xlu.h"

#include <dlfcn.h>
#include <stdio.h>

#include "dmctl.h"

struct dmctl_xlu dmctl_xlu;

static void *open_lib(const char *where, const char *soname)
{
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);

    if (!h)
        fprintf(stderr, "dmctl: %s: cannot load %s, xl's parser: %s\n", where, soname,
                dlerror());
    return h;
}

static int lookup(const char *where, void *h, const char *soname, const char *name, void **ret)
{
    *ret = dlsym(h, name);
    if (*ret)
        return 0;
    fprintf(stderr, "dmctl: %s: %s has no %s\n", where, soname, name);
    return -1;
}

int dmctl_xlu_load(const char *where)
{
    static int state; /* 0 not tried, 1 loaded, -1 failed */
    void *xl, *xlu;
    int r = 0;

    if (state)
        return state > 0 ? 0 : DMCTL_EXIT_FAIL;
    state = -1;
    if (!(xl = open_lib(where, XENLIGHT_SONAME)) || !(xlu = open_lib(where, XLUTIL_SONAME)))
        return DMCTL_EXIT_FAIL;
#define DMCTL_XLU_LOOKUP(f) r |= lookup(where, xlu, XLUTIL_SONAME, #f, (void **)&dmctl_xlu.f);
#define DMCTL_XL_LOOKUP(f) r |= lookup(where, xl, XENLIGHT_SONAME, #f, (void **)&dmctl_xlu.f);
    DMCTL_XLU_FUNCS(DMCTL_XLU_LOOKUP)
    DMCTL_XL_FUNCS(DMCTL_XL_LOOKUP)
    if (r)
        return DMCTL_EXIT_FAIL;
    state = 1;
    return 0; /* the handles stay open for the life of the process */
}
