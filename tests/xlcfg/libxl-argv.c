/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * libxl-argv: the device-model command line and environment that libxl
 * 4.17 ITSELF builds for a domain configuration (a test tool; issue 20).
 *
 *   xl -N create XL.CFG | libxl-argv DOMID [MONITOR-FD]
 *
 * Reads the libxl_domain_config JSON that `xl -N create` prints, replays
 * what libxl's domain creation does before it spawns the DM
 * (libxl__domain_config_setdefault, each disk's set_default,
 * libxl__device_nic_set_devids, the dm_restrict uid policy and, under
 * dm_restrict, a pre-opened monitor socket: MONITOR-FD), then calls libxl's
 * own builder, libxl__build_device_model_args, and prints one element per
 * line: "env NAME=VALUE" lines first, then the argv.
 *
 * Nothing here decides anything: the answers are libxl's code, linked from
 * Debian's libxenlight.a, in which the static builder is made global with
 * objcopy (tests/xlcfg/build-libxl-argv.sh). It compiles
 * against libxl's internal headers from Debian's xen source package, hence
 * libxl's licence for this file (LGPL-2.1, as libxl). libxl opens the
 * hypervisor and xenstore: on a machine without Xen it runs under the test
 * harness's fakes (tests/harness/xen-env.sh, xenhyp.c).
 */
#include "libxl_internal.h"

#include <pwd.h>

/* Static in libxl_dm.c; made global in the copy of libxenlight.a. */
int libxl__build_device_model_args(libxl__gc *gc, const char *dm, int guest_domid,
                                   const libxl_domain_config *guest_config, char ***args,
                                   char ***envs, const libxl__domain_build_state *state,
                                   int *dm_state_fd);

/* libxl__domain_get_device_model_uid() of libxl_dm.c (4.17), which the
 * compiler inlined into its one caller, so it has no symbol to link: the
 * same policy, in the same order, with getpwnam/getpwuid for libxl's
 * helpers. Only what the builder reads (state->dm_runas) is set. */
static int dm_uid(libxl__gc *gc, uint32_t domid, const libxl_domain_config *cfg,
                  libxl__domain_build_state *state)
{
    const libxl_domain_build_info *b = &cfg->b_info;
    char *user = b->device_model_user;
    struct passwd *pw;
    long uid;

    if (b->device_model_version != LIBXL_DEVICE_MODEL_VERSION_QEMU_XEN)
        return 0;
    if (user) {
        pw = getpwnam(user);
        if (!pw)
            return ERROR_INVAL; /* "Couldn't find device_model_user" */
        uid = pw->pw_uid;
    } else if (!libxl_defbool_val(b->dm_restrict)) {
        return 0;
    } else if ((pw = getpwnam(LIBXL_QEMU_USER_RANGE_BASE))) {
        uid = (long)pw->pw_uid + domid;
        if (getpwuid((uid_t)uid))
            return ERROR_INVAL; /* "wanted to use uid ... but that is user ..." */
        user = GCSPRINTF("%ld:%ld", uid, (long)pw->pw_gid);
    } else if ((pw = getpwnam(LIBXL_QEMU_USER_SHARED))) {
        user = LIBXL_QEMU_USER_SHARED;
        uid = pw->pw_uid;
    } else {
        return ERROR_INVAL; /* "cannot restrict" */
    }
    if (uid == 0)
        return ERROR_INVAL;
    state->dm_runas = user;
    return 0;
}

static char *read_all(FILE *f)
{
    size_t len = 0, cap = 0;
    char *buf = NULL;
    int c;

    while ((c = getc(f)) != EOF) {
        if (len + 2 > cap) {
            cap = cap ? cap * 2 : 4096;
            buf = realloc(buf, cap);
            if (!buf)
                return NULL;
        }
        buf[len++] = (char)c;
    }
    if (buf)
        buf[len] = '\0';
    return buf;
}

static int build(libxl_ctx *ctx, const char *json, uint32_t domid, int monitor_fd)
{
    libxl__domain_build_state state;
    libxl_domain_config cfg;
    char **args = NULL, **envs = NULL;
    const char *dm;
    int dm_state_fd = -1, rc;
    GC_INIT(ctx);

    libxl_domain_config_init(&cfg);
    rc = libxl_domain_config_from_json(ctx, &cfg, json);
    if (rc) {
        fprintf(stderr, "libxl-argv: not a libxl_domain_config: %d\n", rc);
        goto out;
    }
    /* As initiate_domain_create() does, in its order. */
    memset(&state, 0, sizeof(state)); /* libxl's is inside a zeroed allocation */
    libxl__domain_build_state_init(&state);
    rc = libxl__domain_config_setdefault(gc, &cfg, domid);
    for (int i = 0; !rc && i < cfg.num_disks; i++)
        rc = libxl__disk_devtype.set_default(gc, domid, &cfg.disks[i], false);
    if (!rc)
        rc = libxl__device_nic_set_devids(gc, &cfg, domid);
    /* As libxl__spawn_local_dm() does. */
    if (!rc)
        rc = dm_uid(gc, domid, &cfg, &state);
    if (!rc && libxl_defbool_val(cfg.b_info.dm_restrict))
        state.dm_monitor_fd = monitor_fd;
    dm = rc ? NULL : libxl__domain_device_model(gc, &cfg.b_info);
    if (!rc && !dm)
        rc = ERROR_FAIL;
    if (!rc)
        rc = libxl__build_device_model_args(gc, dm, (int)domid, &cfg, &args, &envs, &state,
                                            &dm_state_fd);
    if (rc) {
        fprintf(stderr, "libxl-argv: libxl refused the configuration: %d\n", rc);
        goto out;
    }
    for (size_t i = 0; envs && envs[i] && envs[i + 1]; i += 2)
        printf("env %s=%s\n", envs[i], envs[i + 1]);
    for (size_t i = 0; args[i]; i++)
        printf("%s\n", args[i]);
out:
    libxl_domain_config_dispose(&cfg);
    GC_FREE;
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    xentoollog_logger_stdiostream *lg;
    libxl_ctx *ctx = NULL;
    char *json, *end;
    unsigned long domid;
    int monitor_fd = 3, r;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: xl -N create XL.CFG | libxl-argv DOMID [MONITOR-FD]\n");
        return 2;
    }
    domid = strtoul(argv[1], &end, 10);
    if (*end || domid == 0 || domid >= 0x7ff0)
        return 2;
    if (argc == 3)
        monitor_fd = atoi(argv[2]);
    json = read_all(stdin);
    if (!json)
        return 2;
    lg = xtl_createlogger_stdiostream(stderr, XTL_ERROR, 0);
    if (libxl_ctx_alloc(&ctx, LIBXL_VERSION, 0, (xentoollog_logger *)lg)) {
        fprintf(stderr, "libxl-argv: libxl_ctx_alloc failed\n");
        return 1;
    }
    r = build(ctx, json, (uint32_t)domid, monitor_fd);
    libxl_ctx_free(ctx);
    xtl_logger_destroy((xentoollog_logger *)lg);
    free(json);
    return r;
}
