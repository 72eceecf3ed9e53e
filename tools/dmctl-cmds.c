/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dmctl: the commands start, status, resume, pause, qmp, stop and list. */
#include "config.h"

#include <libdm/libdm.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmctl.h"
#include "dmctl-xlcfg.h"

/* Options with no short form. */
enum {
    OPT_DOMID = 0x2000,
    OPT_PROFILE,
    OPT_RESTRICT,
    OPT_RUNAS,
    OPT_CHROOT,
    OPT_MACHINE,
    OPT_MEMORY,
    OPT_INCOMING,
    OPT_QEMU,
    OPT_SOCKET,
    OPT_NO_QUERY,
    OPT_CONFIG,
    OPT_DISK,
    OPT_NIC,
    OPT_VNC,
    OPT_VNC_PASSWORD_FILE,
    OPT_SERIAL,
    OPT_VCPUS,
    OPT_MAXVCPUS,
    OPT_BOOT,
    OPT_VGA,
    OPT_USB,
    OPT_TABLET,
    OPT_DRY_RUN,
};

#define LIST_QUERY_MAX_MS 5000

static const char *or_dash(const char *s)
{
    return s && s[0] ? s : "-";
}

/* Parses a command that takes no options of its own; 0 or an exit status. */
static int parse_no_options(dmctl *d, const dmctl_command *cmd, int argc, char **argv)
{
    int c, ex = 0;

    while ((c = dmctl_getopt(d, cmd, argc, argv, NULL, &ex)) != -1) {
        if (c == DMCTL_OPT_STOP)
            return ex;
        return dmctl_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
    }
    return 0;
}

/* Exactly @n positional arguments remain after the options. */
static int expect_args(const dmctl_command *cmd, int argc, int n, const char *what)
{
    if (argc - optind < n)
        return dmctl_usage_error(cmd, "missing %s", what);
    if (argc - optind > n)
        return dmctl_usage_error(cmd, "too many arguments");
    return 0;
}

/* ================================ start ================================ */

static const struct option start_opts[] = {
    { "domid", required_argument, NULL, OPT_DOMID },
    { "profile", required_argument, NULL, OPT_PROFILE },
    { "restrict", no_argument, NULL, OPT_RESTRICT },
    { "runas", required_argument, NULL, OPT_RUNAS },
    { "chroot", required_argument, NULL, OPT_CHROOT },
    { "machine", required_argument, NULL, OPT_MACHINE },
    { "memory", required_argument, NULL, OPT_MEMORY },
    { "incoming", required_argument, NULL, OPT_INCOMING },
    { "qemu", required_argument, NULL, OPT_QEMU },
    { "config", required_argument, NULL, OPT_CONFIG },
    { "disk", required_argument, NULL, OPT_DISK },
    { "nic", required_argument, NULL, OPT_NIC },
    { "vnc", required_argument, NULL, OPT_VNC },
    { "vnc-password-file", required_argument, NULL, OPT_VNC_PASSWORD_FILE },
    { "serial", required_argument, NULL, OPT_SERIAL },
    { "vcpus", required_argument, NULL, OPT_VCPUS },
    { "maxvcpus", required_argument, NULL, OPT_MAXVCPUS },
    { "boot", required_argument, NULL, OPT_BOOT },
    { "vga", required_argument, NULL, OPT_VGA },
    { "usb", no_argument, NULL, OPT_USB },
    { "tablet", no_argument, NULL, OPT_TABLET },
    { "dry-run", no_argument, NULL, OPT_DRY_RUN },
    { NULL, 0, NULL, 0 },
};

typedef struct start_opts_seen {
    bool restrict_;
    bool runas;
    bool chroot;
    unsigned xl;            /* XLCFG_SEEN_*: what the file must not override */
    const char *config;     /* --config FILE */
    const char *vnc;        /* --vnc [HOST:]DISPLAY | unix:PATH | none */
    const char *vnc_password_file;
    uint64_t vcpus, maxvcpus;
    bool machine, xen;
    bool dry_run;           /* print the plan, start nothing */
} start_opts_seen;

/* Reports a setter's failure on --OPT VALUE: 0, 2 (invalid) or 1. */
static int setter_result(const dmctl_command *cmd, int r, const char *opt,
                         const char *value, const char *hint)
{
    if (r >= 0)
        return 0;
    if (r == -EINVAL)
        return dmctl_usage_error(cmd, "invalid %s value '%s'%s%s%s", opt, value,
                                 hint ? " (" : "", hint ? hint : "", hint ? ")" : "");
    dmctl_error(NULL, "%s: %s", opt, strerror(-r));
    return DMCTL_EXIT_FAIL;
}

static int set_number(const dmctl_command *cmd, libdm_dm_config *cfg, int opt,
                      const char *arg)
{
    uint64_t v;

    if (opt == OPT_DOMID) {
        if (!dmctl_parse_u64(arg, UINT32_MAX, &v))
            return setter_result(cmd, -EINVAL, "--domid", arg, "1-32751");
        return setter_result(cmd, libdm_dm_config_set_domid(cfg, (uint32_t)v),
                             "--domid", arg, "1-32751");
    }
    if (!dmctl_parse_u64(arg, UINT64_MAX, &v))
        return setter_result(cmd, -EINVAL, "--memory", arg, "MiB");
    return setter_result(cmd, libdm_dm_config_set_memory_mb(cfg, v), "--memory", arg, "MiB");
}

static int set_profile(const dmctl_command *cmd, libdm_dm_config *cfg, const char *arg)
{
    int r = -EINVAL;

    if (strcmp(arg, "plain") == 0)
        r = libdm_dm_config_set_profile(cfg, LIBDM_PROFILE_PLAIN);
    else if (strcmp(arg, "xen") == 0)
        r = libdm_dm_config_set_profile(cfg, LIBDM_PROFILE_XEN);
    return setter_result(cmd, r, "--profile", arg, "plain or xen");
}

static int set_qemu(const dmctl_command *cmd, libdm_dm_config *cfg, const char *arg)
{
    char *path = dmctl_absolute_path(arg, true);
    int r;

    if (!path) {
        dmctl_error("--qemu", "%s: %s", arg, strerror(errno));
        return errno == ENOMEM ? DMCTL_EXIT_FAIL : DMCTL_EXIT_USAGE;
    }
    r = setter_result(cmd, libdm_dm_config_set_qemu_path(cfg, path), "--qemu", arg, NULL);
    free(path);
    return r;
}

static int set_chroot(const dmctl_command *cmd, libdm_dm_config *cfg, const char *arg)
{
    char *path = dmctl_absolute_path(arg, false);
    int r;

    if (!path) {
        dmctl_error("--chroot", "%s: %s", arg, strerror(errno));
        return DMCTL_EXIT_FAIL;
    }
    r = setter_result(cmd, libdm_dm_config_set_chroot(cfg, path), "--chroot", arg, NULL);
    free(path);
    return r;
}

static int set_vga(const dmctl_command *cmd, libdm_dm_config *cfg, const char *arg)
{
    int r = -EINVAL;

    if (!strcmp(arg, "std"))
        r = libdm_dm_config_set_vga(cfg, LIBDM_VGA_STD, 0);
    else if (!strcmp(arg, "cirrus"))
        r = libdm_dm_config_set_vga(cfg, LIBDM_VGA_CIRRUS, 0);
    else if (!strcmp(arg, "none"))
        r = libdm_dm_config_set_vga(cfg, LIBDM_VGA_NONE, 0);
    return setter_result(cmd, r, "--vga", arg, "std, cirrus or none");
}

static int set_count(const dmctl_command *cmd, const char *opt, const char *arg, uint64_t *ret)
{
    if (!dmctl_parse_u64(arg, 128, ret) || *ret == 0)
        return setter_result(cmd, -EINVAL, opt, arg, "1-128");
    return 0;
}

/* Device options (xl's syntax for disks and vifs); 0, an exit status, or
 * -1 when @opt is not one of them. */
static int device_option(const dmctl_command *cmd, libdm_dm_config *cfg, int opt,
                         const char *arg, start_opts_seen *seen)
{
    switch (opt) {
    case OPT_CONFIG:
        seen->config = arg;
        return 0;
    case OPT_DISK:
        seen->xl |= XLCFG_SEEN_DISK;
        return dmctl_xl_disk("--disk", arg, cfg);
    case OPT_NIC:
        seen->xl |= XLCFG_SEEN_NIC;
        return dmctl_xl_vif("--nic", arg, cfg);
    case OPT_SERIAL:
        seen->xl |= XLCFG_SEEN_SERIAL;
        return dmctl_xl_serial("--serial", arg, cfg);
    case OPT_VNC:
        seen->xl |= XLCFG_SEEN_VNC;
        seen->vnc = arg;
        return 0;
    case OPT_VNC_PASSWORD_FILE:
        seen->vnc_password_file = arg;
        return 0;
    case OPT_VCPUS:
        seen->xl |= XLCFG_SEEN_VCPUS;
        return set_count(cmd, "--vcpus", arg, &seen->vcpus);
    case OPT_MAXVCPUS:
        seen->xl |= XLCFG_SEEN_VCPUS;
        return set_count(cmd, "--maxvcpus", arg, &seen->maxvcpus);
    case OPT_BOOT:
        seen->xl |= XLCFG_SEEN_BOOT;
        return setter_result(cmd, libdm_dm_config_set_boot(cfg, arg), "--boot", arg,
                             "1-4 distinct letters of a, c, d, n");
    case OPT_VGA:
        seen->xl |= XLCFG_SEEN_VGA;
        return set_vga(cmd, cfg, arg);
    case OPT_USB:
    case OPT_DRY_RUN:
        seen->dry_run = true;
        return 0;
    case OPT_TABLET:
        seen->xl |= XLCFG_SEEN_USB;
        return setter_result(cmd, libdm_dm_config_set_usb(cfg, 1, opt == OPT_TABLET), "--usb",
                             "", NULL);
    default:
        return -1;
    }
}

/* Applies one start option to @cfg; 0 or an exit status. */
static int start_option(const dmctl_command *cmd, libdm_dm_config *cfg, int opt,
                        const char *arg, start_opts_seen *seen)
{
    int ex = device_option(cmd, cfg, opt, arg, seen);

    if (ex >= 0)
        return ex;
    switch (opt) {
    case OPT_DOMID:
        return set_number(cmd, cfg, opt, arg);
    case OPT_MEMORY:
        seen->xl |= XLCFG_SEEN_MEMORY;
        return set_number(cmd, cfg, opt, arg);
    case OPT_PROFILE:
        seen->xen = !strcmp(arg, "xen");
        return set_profile(cmd, cfg, arg);
    case OPT_RESTRICT:
        seen->restrict_ = true;
        seen->xl |= XLCFG_SEEN_RESTRICT;
        return setter_result(cmd, libdm_dm_config_set_restrict(cfg, 1), "--restrict", "", NULL);
    case OPT_RUNAS:
        seen->runas = true;
        seen->xl |= XLCFG_SEEN_RUNAS;
        return setter_result(cmd, libdm_dm_config_set_runas(cfg, arg), "--runas", arg,
                             "a user name or uid:gid, not root");
    case OPT_CHROOT:
        seen->chroot = true;
        return set_chroot(cmd, cfg, arg);
    case OPT_MACHINE:
        seen->machine = true;
        seen->xl |= XLCFG_SEEN_MACHINE;
        return setter_result(cmd, libdm_dm_config_set_machine(cfg, arg), "--machine", arg, NULL);
    case OPT_INCOMING:
        return setter_result(cmd, libdm_dm_config_set_incoming(cfg, arg), "--incoming", arg,
                             "defer, unix:, tcp:, fd: or exec:");
    case OPT_QEMU:
        seen->xl |= XLCFG_SEEN_QEMU;
        return set_qemu(cmd, cfg, arg);
    default:
        return dmctl_usage_error(cmd, "unknown option");
    }
}

/* Index of the first "--" in argv[1..argc), or argc. */
static int find_dashdash(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], "--") == 0)
            return i;
    return argc;
}

static int start_extra_args(const dmctl_command *cmd, libdm_dm_config *cfg, int argc,
                            char **argv)
{
    int i, r = 0;

    for (i = 0; i < argc && r == 0; i++)
        r = setter_result(cmd, libdm_dm_config_add_extra_arg(cfg, argv[i]),
                          "extra QEMU argument", argv[i], NULL);
    return r;
}

/* The first line of @path, without its newline; NULL (reported) if none. */
static char *read_password(const char *path)
{
    FILE *f = fopen(path, "r");
    char buf[64] = "";

    if (!f || !fgets(buf, sizeof(buf), f)) {
        dmctl_error("--vnc-password-file", "%s: %s", path, f ? "empty" : strerror(errno));
        if (f)
            fclose(f);
        return NULL;
    }
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    return strdup(buf);
}

/* --vnc [HOST:]DISPLAY | unix:PATH | none, with --vnc-password-file. */
static int apply_vnc(const dmctl_command *cmd, libdm_dm_config *cfg, const start_opts_seen *s)
{
    char host[256] = "", *pw = NULL, *end;
    const char *colon;
    long display = 0;
    int r;

    if (s->vnc_password_file && !(pw = read_password(s->vnc_password_file)))
        return DMCTL_EXIT_USAGE;
    if (!strcmp(s->vnc, "none")) {
        r = libdm_dm_config_set_vnc(cfg, NULL, -1, pw);
    } else if (!strncmp(s->vnc, "unix:", 5)) {
        r = libdm_dm_config_set_vnc(cfg, s->vnc, 0, pw);
    } else {
        const char *d;

        colon = strrchr(s->vnc, ':');
        if (colon)
            snprintf(host, sizeof(host), "%.*s", (int)(colon - s->vnc), s->vnc);
        d = colon ? colon + 1 : s->vnc;

        errno = 0;
        display = strtol(d, &end, 10);
        r = *end || end == d || *d < '0' || *d > '9' || errno || display > 99 ? -EINVAL
            : libdm_dm_config_set_vnc(cfg, host[0] ? host : NULL, (int)display, pw);
    }
    free(pw);
    return setter_result(cmd, r, "--vnc", s->vnc,
                         "[HOST:]DISPLAY (0-59635), unix:PATH or none; a password of 1-8 "
                         "characters, and none with --vnc none");
}

/* Device settings gathered over several options, then the file. */
static int start_finish_devices(const dmctl_command *cmd, libdm_dm_config *cfg,
                                const start_opts_seen *s, char **ret_file_name)
{
    int ex = 0;

    *ret_file_name = NULL;
    if (s->vnc_password_file && !s->vnc)
        return dmctl_usage_error(cmd, "--vnc-password-file needs --vnc");
    if (s->vnc)
        ex = apply_vnc(cmd, cfg, s);
    if (!ex && (s->vcpus || s->maxvcpus))
        ex = setter_result(cmd, libdm_dm_config_set_vcpus(cfg, s->vcpus ? (unsigned)s->vcpus : 1,
                                                          (unsigned)s->maxvcpus),
                           "--maxvcpus", "", "at least --vcpus");
    /* An xl.cfg describes a PC: the plain profile's default "none" has no bus. */
    if (!ex && s->config && !s->machine && !s->xen)
        ex = setter_result(cmd, libdm_dm_config_set_machine(cfg, "pc"), "--machine", "pc", NULL);
    if (!ex && s->config)
        ex = dmctl_xlcfg_apply(s->config, cfg, s->xl, ret_file_name);
    return ex;
}

/* Parses the whole start command line into @cfg; 0 or an exit status. */
static int start_parse(dmctl *d, const dmctl_command *cmd, int argc, char **argv,
                       libdm_dm_config *cfg, const char **ret_name, char **ret_file_name,
                       bool *ret_dry_run)
{
    start_opts_seen seen = { 0 };
    int dd = find_dashdash(argc, argv);
    int c, ex = 0;

    while ((c = dmctl_getopt(d, cmd, dd, argv, start_opts, &ex)) != -1) {
        if (c == DMCTL_OPT_STOP)
            return ex;
        ex = start_option(cmd, cfg, c, optarg, &seen);
        if (ex)
            return ex;
    }
    if (dd - optind > 1)
        return dmctl_usage_error(cmd, "too many arguments");
    *ret_dry_run = seen.dry_run;
    ex = start_finish_devices(cmd, cfg, &seen, ret_file_name);
    if (ex)
        return ex;
    *ret_name = dd > optind ? argv[optind] : *ret_file_name;
    if (!*ret_name)
        return dmctl_usage_error(cmd, "missing NAME (give it, or name= in --config)");
    if ((seen.runas || seen.chroot) && !seen.restrict_)
        return dmctl_usage_error(cmd, "--runas and --chroot need --restrict");
    ex = dmctl_check_name(*ret_name);
    if (!ex)
        ex = setter_result(cmd, libdm_dm_config_set_name(cfg, *ret_name), "NAME", *ret_name,
                           DMCTL_NAME_RULE);
    if (!ex && dd < argc)
        ex = start_extra_args(cmd, cfg, argc - dd - 1, argv + dd + 1);
    if (!ex)
        ex = setter_result(cmd, libdm_dm_config_set_timeout_ms(cfg, d->timeout_ms),
                           "--timeout", "", NULL);
    return ex;
}

typedef struct op_wait {
    bool done;
    int status;
} op_wait;

static void on_dm_done(libdm_dm *dm, int status, void *user)
{
    op_wait *w = user;

    (void)dm;
    w->done = true;
    w->status = status;
}

/* Interrupted before the DM was ready: stop it (SIGKILL, reaped, record and
 * directory removed), uninterruptibly, so that nothing is left unrecorded.
 * If even that fails the DM stays recorded. -EINTR or the stop's error. */
static int start_interrupted(dmctl *d, libdm_dm *dm, const char *name)
{
    op_wait s = { false, 0 };
    int r = libdm_dm_stop_async(dm, 1, d->timeout_ms, on_dm_done, &s);

    while (r >= 0 && !s.done)
        r = libdm_ctx_run_once(d->ctx, 100);
    dmctl_logger_discard(d->lg);   /* "start interrupted by stop" */
    if (r >= 0 && s.status >= 0) {
        dmctl_error(name, "start interrupted: the device model was stopped, nothing recorded");
        return -EINTR;
    }
    return dmctl_report_dm(d, dm, name, "stopping the interrupted start",
                           r < 0 ? r : s.status);
}

/* A start libdm refused before anything ran: the name is taken (exit 1,
 * libdm says by whom) or the configuration is one libdm will not honour (a
 * bad chroot, no user to run as...: a usage error, exit 2). Its exit
 * status, or -1 if @r is no such refusal. libdm reports a bad configuration
 * from the call and the rest through the completion. */
static int start_refusal(dmctl *d, libdm_dm *dm, const char *name, int r)
{
    if (r == -EEXIST) {
        char *why = dmctl_logger_take_first_error(d->lg);
        const char *text = why ? strchr(why, ':') : NULL;

        dmctl_logger_discard(d->lg);
        dmctl_error(name, "%s (see 'dmctl list')",
                    text && text[1] ? text + 2 : "the name is in use");
        free(why);
        return DMCTL_EXIT_FAIL;
    }
    if (r == -EINVAL) {
        (void)dmctl_report_start(d, dm, name, r);
        return DMCTL_EXIT_USAGE;
    }
    return -1;
}

/* Starts the DM and waits until it is ready, failed, or interrupted; 0 with
 * *@ret_dm set, or an exit status (reported). */
static int start_run(dmctl *d, const libdm_dm_config *cfg, const char *name, libdm_dm **ret_dm)
{
    op_wait w = { false, 0 };
    libdm_dm *dm = NULL;
    int r, refused;

    if (dmctl_signal_received())
        return DMCTL_EXIT_INTERRUPTED;   /* nothing started */
    r = libdm_dm_start_async(d->ctx, cfg, on_dm_done, &w, &dm);
    if (r < 0) {
        refused = start_refusal(d, NULL, name, r);
        return refused >= 0 ? refused : dmctl_report_start(d, NULL, name, r);
    }
    r = dmctl_wait(d, &w.done);
    if (r == -EINTR) {
        r = start_interrupted(d, dm, name);
        libdm_dm_release(dm);
        return r == -EINTR ? DMCTL_EXIT_INTERRUPTED : r;
    }
    r = r < 0 ? r : w.status;
    if (r < 0) {
        refused = start_refusal(d, dm, name, r);
        r = refused >= 0 ? refused : dmctl_report_start(d, dm, name, r);
        libdm_dm_release(dm);
        return r;
    }
    *ret_dm = dm;
    return 0;
}

int dmctl_cmd_start(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("start");
    libdm_dm_config *cfg = NULL;
    libdm_dm *dm = NULL;
    const char *name = NULL;
    char *file_name = NULL;
    bool dry_run = false;
    int r, ex;

    r = libdm_dm_config_new(&cfg);
    if (r < 0) {
        dmctl_error(NULL, "%s", strerror(-r));
        return DMCTL_EXIT_FAIL;
    }
    ex = start_parse(d, cmd, argc, argv, cfg, &name, &file_name, &dry_run);
    if (!ex && dry_run) {
        ex = dmctl_print_plan(d, cfg);
        libdm_dm_config_free(cfg);
        free(file_name);
        return ex;
    }
    if (!ex)
        ex = dmctl_open_ctx(d);
    if (!ex)
        ex = start_run(d, cfg, name, &dm);
    if (dm && (r = libdm_dm_apply_config(dm, cfg, d->timeout_ms)) < 0) {
        /* A VNC that nobody can log into is not what was asked for. */
        ex = dmctl_report_dm(d, dm, name, "setting the VNC password", r);
        (void)libdm_dm_stop(dm, 1, d->timeout_ms);
        dm = libdm_dm_release(dm);
    }
    if (dm) {
        ex = dmctl_print_dm(d, dm);
        if (dmctl_signal_received())
            dmctl_error(name, "started before the interruption took effect; "
                        "'dmctl stop %s' stops it", name);
        libdm_dm_release(dm);
    }
    libdm_dm_config_free(cfg);
    free(file_name);
    return ex;
}

/* ============================ status and qmp =========================== */

static const struct option socket_opts[] = {
    { "socket", required_argument, NULL, OPT_SOCKET },
    { NULL, 0, NULL, 0 },
};

/* Parses [--socket PATH] and the positional arguments: @min..@max of them
 * without --socket (NAME first), one fewer with it. */
static int parse_target(dmctl *d, const dmctl_command *cmd, int argc, char **argv,
                        int min, int max, const char **ret_socket)
{
    int c, ex = 0, n, drop;

    *ret_socket = NULL;
    while ((c = dmctl_getopt(d, cmd, argc, argv, socket_opts, &ex)) != -1) {
        if (c == DMCTL_OPT_STOP)
            return ex;
        if (c != OPT_SOCKET)
            return dmctl_usage_error(cmd, "unknown option");
        *ret_socket = optarg;
    }
    n = argc - optind;
    drop = *ret_socket ? 1 : 0;
    if (n < min - drop)
        return dmctl_usage_error(cmd, "missing %s",
                                 n == 0 && !drop ? "NAME or --socket PATH" : "COMMAND");
    if (n > max - drop)
        return dmctl_usage_error(cmd, "too many arguments");
    return 0;
}

static int print_status(const dmctl *d, const char *name, const char *socket,
                        const char *runstate, const char *confinement, libdm_json *devices)
{
    libdm_json *o;
    bool ok;

    if (!d->json) {
        dmctl_put_safe(stdout, runstate, DMCTL_SAFE_SHORT);   /* the DM's word */
        putchar('\n');
        return 0;
    }
    o = libdm_json_new_object();
    ok = o && dmctl_json_add_str(o, "name", name);
    if (ok && socket)
        ok = dmctl_json_add_str(o, "qmp_socket", socket);
    ok = ok && dmctl_json_add_str(o, "runstate", runstate);
    if (ok && confinement)
        ok = dmctl_json_add_str(o, "confinement", confinement);
    if (ok && devices)
        ok = libdm_json_object_add(o, "devices", devices) >= 0;
    else
        libdm_json_free(devices);
    if (!ok)
        o = libdm_json_free(o);
    return dmctl_json_emit(o);
}

/* query-status on a raw connection: the "status" member. */
static int socket_query_status(dmctl *d, libdm_qmp *q, const char *path, char **ret)
{
    libdm_json *v = NULL;
    const char *s;
    int r = libdm_qmp_call(q, "query-status", NULL, d->timeout_ms, &v);

    if (r < 0)
        return dmctl_report_qmp(d, q, path, "query-status", r);
    s = libdm_json_get_string(libdm_json_object_get(v, "status"));
    *ret = s ? strdup(s) : NULL;
    libdm_json_free(v);
    if (!*ret) {
        dmctl_error(path, "query-status: the reply has no status");
        return DMCTL_EXIT_FAIL;
    }
    return 0;
}

static int status_socket(dmctl *d, const char *path)
{
    libdm_qmp *q = NULL;
    char *rs = NULL;
    int ex, ex2;

    ex = dmctl_open_socket(d, path, &q);
    if (ex)
        return ex;
    ex = socket_query_status(d, q, path, &rs);
    rs = dmctl_safe_take(rs);
    ex2 = dmctl_close_socket(d, path, q);
    if (!ex && ex2)
        ex = ex2;
    if (!ex)
        ex = print_status(d, NULL, path, rs, NULL, NULL);
    free(rs);
    return ex;
}

static int status_name(dmctl *d, const char *name)
{
    libdm_dm *dm = NULL;
    libdm_json *devices = NULL;
    char *rs = NULL;
    int ex, r;

    ex = dmctl_attach(d, name, &dm);
    if (ex)
        return ex;
    r = libdm_dm_query_status(dm, d->timeout_ms, &rs);
    rs = dmctl_safe_take(rs);
    /* With --json: serial ptys, the VNC address and the NICs (devices-run.c). */
    if (r >= 0 && d->json)
        r = libdm_dm_query_devices(dm, d->timeout_ms, &devices);
    if (r < 0)
        ex = dmctl_report_dm(d, dm, name, "query-status", r);
    else
        ex = print_status(d, name, NULL, rs, libdm_dm_get_confinement(dm), devices);
    free(rs);
    libdm_dm_release(dm);
    return ex;
}

int dmctl_cmd_status(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("status");
    const char *socket;
    int ex = parse_target(d, cmd, argc, argv, 1, 1, &socket);

    if (ex)
        return ex;
    return socket ? status_socket(d, socket) : status_name(d, argv[optind]);
}

/* Parses JSON-ARGUMENTS: NULL when absent; 0 or 2 (usage error). */
static int parse_qmp_arguments(const dmctl_command *cmd, const char *text, libdm_json **ret)
{
    int r;

    *ret = NULL;
    if (!text)
        return 0;
    r = libdm_json_parse(text, strlen(text), ret);
    if (r < 0)
        return dmctl_usage_error(cmd, "invalid JSON arguments '%s': %s", text,
                                 r == -EINVAL ? "not valid JSON" : strerror(-r));
    if (libdm_json_get_type(*ret) != LIBDM_JSON_OBJECT) {
        *ret = libdm_json_free(*ret);
        return dmctl_usage_error(cmd, "invalid JSON arguments '%s': not a JSON object", text);
    }
    return 0;
}

static int print_reply(const dmctl *d, const libdm_json *value)
{
    char *text = NULL;
    int r;

    if (!value) {
        puts("{}");
        return 0;
    }
    r = libdm_json_to_string(value, !d->json, &text);
    if (r < 0) {
        dmctl_error(NULL, "cannot produce JSON: %s", strerror(-r));
        return DMCTL_EXIT_FAIL;
    }
    fputs(text, stdout);
    if (!text[0] || text[strlen(text) - 1] != '\n')
        putchar('\n');
    free(text);
    return 0;
}

typedef struct qmp_result {
    bool done;
    int status;
    libdm_json *value;
    char *error_class;
    char *error_desc;
} qmp_result;

static void on_qmp_reply(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    qmp_result *res = user;

    (void)q;
    res->done = true;
    res->status = r->status;
    if (r->status == 0 && r->value && libdm_json_copy(r->value, &res->value) < 0)
        res->status = -ENOMEM;
    if (r->status == -EREMOTEIO) {
        res->error_class = strdup(r->error_class ? r->error_class : "?");
        res->error_desc = strdup(r->error_desc ? r->error_desc : "(no description)");
    }
}

/* A failed exchange, reported once: QMP's error class for an error reply. */
static int qmp_failed(dmctl *d, libdm_qmp *q, const char *what, const char *command,
                      const qmp_result *res)
{
    if (res->status != -EREMOTEIO)
        return dmctl_report_qmp(d, q, what, command, res->status);
    dmctl_logger_discard(d->lg);
    dmctl_error(what, "%s: QEMU error %s: %s", command,
                res->error_class ? res->error_class : "?",
                res->error_desc ? res->error_desc : "(no description)");
    return dmctl_exit_for(res->status);
}

/* One command on @q, interruptible; the reply printed. An interrupted call
 * is cancelled, its reply still drained before the connection closes. 0 or
 * an exit status. */
static int qmp_exchange(dmctl *d, libdm_qmp *q, const char *what, const char *command,
                        const libdm_json *args)
{
    qmp_result res = { false, 0, NULL, NULL, NULL };
    libdm_qmp_slot *slot = NULL;
    int r, ex;

    if (!q) {
        dmctl_error(what, "no monitor connection (the DM is %s)", "not answering");
        return dmctl_exit_for(-ENOTCONN);
    }
    r = libdm_qmp_call_async(q, command, args, d->timeout_ms, on_qmp_reply, &res, &slot);
    if (r < 0)
        return dmctl_report_qmp(d, q, what, command, r);
    r = dmctl_wait(d, &res.done);
    slot = libdm_qmp_slot_free(slot);
    if (r == -EINTR)
        ex = DMCTL_EXIT_INTERRUPTED;
    else if (r < 0)
        ex = dmctl_report_qmp(d, q, what, command, r);
    else if (res.status < 0)
        ex = qmp_failed(d, q, what, command, &res);
    else
        ex = print_reply(d, res.value);
    libdm_json_free(res.value);
    free(res.error_class);
    free(res.error_desc);
    return ex;
}

static int qmp_socket(dmctl *d, const char *path, const char *command,
                      const libdm_json *args)
{
    libdm_qmp *q = NULL;
    int ex, ex2;

    ex = dmctl_open_socket(d, path, &q);
    if (ex)
        return ex;
    ex = qmp_exchange(d, q, path, command, args);
    ex2 = dmctl_close_socket(d, path, q);
    return ex ? ex : ex2;
}

static int qmp_name(dmctl *d, const char *name, const char *command, const libdm_json *args)
{
    libdm_dm *dm = NULL;
    int ex = dmctl_attach(d, name, &dm);

    if (ex)
        return ex;
    ex = qmp_exchange(d, libdm_dm_get_qmp(dm), name, command, args);
    (void)dmctl_drain(d, libdm_dm_get_qmp(dm));
    libdm_dm_release(dm);   /* drains what is left before closing */
    return ex;
}

int dmctl_cmd_qmp(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("qmp");
    const char *socket, *command, *args_text;
    libdm_json *args = NULL;
    int ex, i;

    ex = parse_target(d, cmd, argc, argv, 2, 3, &socket);
    if (ex)
        return ex;
    i = optind + (socket ? 0 : 1);
    command = argv[i];
    args_text = i + 1 < argc ? argv[i + 1] : NULL;
    if (!command[0])
        return dmctl_usage_error(cmd, "empty QMP command name");
    ex = parse_qmp_arguments(cmd, args_text, &args);
    if (ex)
        return ex;
    ex = socket ? qmp_socket(d, socket, command, args)
                : qmp_name(d, argv[optind], command, args);
    libdm_json_free(args);
    return ex;
}

/* =========================== resume and pause ========================== */

/* After a successful resume/pause: the runstate QMP now reports. */
static int print_after_op(dmctl *d, libdm_dm *dm, const char *name)
{
    char *rs = NULL;
    libdm_json *o;
    const char *state = libdm_dm_state_to_string(libdm_dm_get_state(dm));
    bool ok;

    if (libdm_dm_query_status(dm, d->timeout_ms, &rs) < 0)
        rs = NULL;   /* the operation itself succeeded: report what is known */
    if (!rs && libdm_dm_get_runstate(dm))
        rs = strdup(libdm_dm_get_runstate(dm));
    rs = dmctl_safe_take(rs);
    if (!d->json) {
        printf("%s: %s\n", name, or_dash(rs));
        free(rs);
        return 0;
    }
    o = libdm_json_new_object();
    ok = o && dmctl_json_add_str(o, "name", name);
    ok = ok && dmctl_json_add_str(o, "runstate", rs);
    ok = ok && dmctl_json_add_str(o, "state", state);
    free(rs);
    if (!ok)
        o = libdm_json_free(o);
    return dmctl_json_emit(o);
}

typedef int dm_op_fn(libdm_dm *dm, int timeout_ms);

static int run_dm_op(dmctl *d, const char *cmdname, int argc, char **argv, dm_op_fn *op,
                     const char *opname)
{
    const dmctl_command *cmd = dmctl_find_command(cmdname);
    libdm_dm *dm = NULL;
    const char *name;
    int ex, r;

    ex = parse_no_options(d, cmd, argc, argv);
    if (!ex)
        ex = expect_args(cmd, argc, 1, "NAME");
    if (ex)
        return ex;
    name = argv[optind];
    ex = dmctl_attach(d, name, &dm);
    if (ex)
        return ex;
    r = op(dm, d->timeout_ms);
    ex = r < 0 ? dmctl_report_dm(d, dm, name, opname, r) : print_after_op(d, dm, name);
    libdm_dm_release(dm);
    return ex;
}

int dmctl_cmd_resume(dmctl *d, int argc, char **argv)
{
    return run_dm_op(d, "resume", argc, argv, libdm_dm_resume, "resume");
}

int dmctl_cmd_pause(dmctl *d, int argc, char **argv)
{
    return run_dm_op(d, "pause", argc, argv, libdm_dm_pause, "pause");
}

/* A `dmctl migrate` holding the source's monitor is asked to cancel (it
 * cancels a migration still in flight on SIGINT) and waited for: the
 * cancel reaches a running migration at once, never after its switchover. */
static int interrupt_migration(dmctl *d, const char *name)
{
    uint64_t deadline = libdm_now_ms() + (uint64_t)d->timeout_ms;
    char *note = NULL, *cmd = NULL;
    int pid = 0, r;

    if (dmctl_open_ctx(d) || libdm_dm_monitor_holder(d->ctx, name, &pid, &note, &cmd) != 1 ||
        !note || strcmp(note, "migration") || pid <= 0) {
        free(note);
        free(cmd);
        return 0;
    }
    free(note);
    if (!cmd || !strstr(cmd, " migrate ")) {
        free(cmd);
        return 0; /* a receiver, or not dmctl: the attach says who */
    }
    free(cmd);
    dmctl_error(name, "asking the migration in progress (pid %d) to cancel", pid);
    if (kill(pid, SIGINT) < 0)
        return 0;
    while ((r = libdm_dm_monitor_holder(d->ctx, name, &pid, NULL, NULL)) == 1 &&
           libdm_now_ms() < deadline)
        usleep(20000);
    return r == 1 ? DMCTL_EXIT_TIMEOUT : 0;
}

int dmctl_cmd_migrate_cancel(dmctl *d, int argc, char **argv)
{
    int ex;

    /* "migrate-cancel NAME": options and mistakes are run_dm_op's to report. */
    if (argc == 2 && argv[1][0] != '-') {
        if ((ex = dmctl_check_name(argv[1])) != 0 || (ex = interrupt_migration(d, argv[1])) != 0)
            return ex;
    }
    return run_dm_op(d, "migrate-cancel", argc, argv, libdm_migrate_cancel, "migrate-cancel");
}

/* ================================ stop ================================= */

static const struct option stop_opts[] = {
    { "force", no_argument, NULL, 'f' },
    { NULL, 0, NULL, 0 },
};

static int print_stopped(const dmctl *d, const char *name, int status, bool was_gone)
{
    char buf[64];
    libdm_json *o;
    bool ok;

    if (!d->json) {
        printf("%s: %s (%s)\n", name, was_gone ? "was already gone, record removed" : "stopped",
               dmctl_describe_wait(status, buf, sizeof(buf)));
        return 0;
    }
    o = libdm_json_new_object();
    ok = o && dmctl_json_add_str(o, "name", name);
    ok = ok && dmctl_json_add_bool(o, "stopped", true);
    ok = ok && dmctl_json_add_bool(o, "already_gone", was_gone);
    ok = ok && dmctl_json_add_int(o, "exit_status", status);
    if (!ok)
        o = libdm_json_free(o);
    return dmctl_json_emit(o);
}

/* The recorded exit status of @name, or -1. */
static int recorded_exit_status(dmctl *d, const char *name)
{
    libdm_dm_info *infos = NULL;
    size_t n = 0, i;
    int status = -1;

    if (libdm_dm_list(d->ctx, &infos, &n) < 0)
        return -1;
    for (i = 0; i < n; i++)
        if (strcmp(infos[i].name, name) == 0)
            status = infos[i].exit_status;
    libdm_dm_info_free(infos, n);
    return status;
}

/* Whether @name has a record (readable or not). */
static bool is_recorded(dmctl *d, const char *name)
{
    libdm_dm_info *infos = NULL;
    size_t n = 0, i;
    bool found = false;

    if (libdm_dm_list(d->ctx, &infos, &n) < 0)
        return false;
    for (i = 0; i < n; i++)
        found = found || strcmp(infos[i].name, name) == 0;
    libdm_dm_info_free(infos, n);
    return found;
}

/* libdm_dm_forget(), waiting (bounded) while a concurrent stop or the
 * keeper still holds the name to clean up: then nothing is left (issue 18,
 * item 12). */
static int forget_after_others(dmctl *d, const char *name)
{
    uint64_t deadline = libdm_now_ms() + (uint64_t)d->timeout_ms;
    int r;

    while ((r = libdm_dm_forget(d->ctx, name)) == -EBUSY && libdm_now_ms() < deadline &&
           !dmctl_signal_received())
        usleep(20000);
    return r;
}

/* The process is gone already: remove what it left behind. */
static int stop_gone(dmctl *d, const char *name)
{
    int status = recorded_exit_status(d, name);
    int r = forget_after_others(d, name);

    dmctl_logger_discard(d->lg);   /* attach's "is gone" */
    if (r < 0 && r != -ENOENT)
        return dmctl_report_dm(d, NULL, name, "removing the record", r);
    return print_stopped(d, name, status, true);
}

int dmctl_cmd_stop(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("stop");
    libdm_dm *dm = NULL;
    const char *name;
    bool force = false, recorded;
    int c, ex = 0, r, fr = 1;

    while ((c = dmctl_getopt(d, cmd, argc, argv, stop_opts, &ex)) != -1) {
        if (c == DMCTL_OPT_STOP)
            return ex;
        force = true;
    }
    ex = expect_args(cmd, argc, 1, "NAME");
    if (!ex)
        ex = dmctl_check_name(argv[optind]);
    if (ex || (ex = dmctl_open_ctx(d)))
        return ex;
    name = argv[optind];
    /* Recorded when this stop began: if the record is gone by the attach,
     * a concurrent stop removed it, and this one succeeds too. */
    recorded = is_recorded(d, name);
    /* A live DM whose monitor does not answer, is missing or refused comes
     * back BROKEN: still stoppable through its pidfd. */
    r = libdm_dm_attach_flags(d->ctx, name, d->timeout_ms, LIBDM_ATTACH_ANY_MONITOR, &dm);
    if (r == -ESRCH)
        return stop_gone(d, name);
    /* No record: a starter killed right after claiming the name leaves its
     * run directory; nothing ran, and only that is removed. */
    if (r == -ENOENT && ((fr = recorded ? forget_after_others(d, name)
                                        : libdm_dm_forget(d->ctx, name)) == 0 ||
                         (recorded && fr == -ENOENT))) {
        dmctl_logger_discard(d->lg);
        return print_stopped(d, name, -1, true);
    }
    if (r < 0)
        return dmctl_report_attach(d, name, r);
    r = libdm_dm_stop(dm, force, d->timeout_ms);
    if (r < 0) {
        ex = dmctl_report_dm(d, dm, name, "stop", r);
    } else {
        /* What libdm logged while the DM went away (e.g. "the monitor
         * connection was reset" after SIGKILL) is the stop itself. */
        dmctl_logger_discard(d->lg);
        ex = print_stopped(d, name, libdm_dm_get_exit_status(dm), false);
    }
    libdm_dm_release(dm);
    return ex;
}

/* ================================ list ================================= */

static const struct option list_opts[] = {
    { "no-query", no_argument, NULL, OPT_NO_QUERY },
    { NULL, 0, NULL, 0 },
};

/* The live runstate of a recorded DM, or NULL ("?"). */
static char *query_runstate(dmctl *d, const libdm_dm_info *info)
{
    int t = d->timeout_ms < LIST_QUERY_MAX_MS ? d->timeout_ms : LIST_QUERY_MAX_MS;
    libdm_dm *dm = NULL;
    char *rs = NULL;

    if (!info->alive || dmctl_signal_received())
        return NULL;
    if (libdm_dm_attach_timeout(d->ctx, info->name, t, &dm) >= 0) {
        if (libdm_dm_query_status(dm, t, &rs) < 0)
            rs = NULL;
        libdm_dm_release(dm);
    }
    if (!rs)   /* shown as '?'; -v shows why */
        dmctl_logger_discard(d->lg);
    return dmctl_safe_take(rs);   /* the DM's word: never raw */
}

static int list_json_one(const libdm_dm_info *in, const char *runstate)
{
    libdm_json *o = libdm_json_new_object();
    bool ok = o != NULL;

    ok = ok && dmctl_json_add_str(o, "name", in->name);
    ok = ok && dmctl_json_add_int(o, "domid", in->domid);
    ok = ok && dmctl_json_add_int(o, "pid", in->pid);
    ok = ok && dmctl_json_add_bool(o, "alive", in->alive);
    ok = ok && dmctl_json_add_str(o, "qmp_socket", in->qmp_socket);
    ok = ok && dmctl_json_add_str(o, "runstate", runstate);
    ok = ok && dmctl_json_add_str(o, "profile", in->profile);
    ok = ok && dmctl_json_add_str(o, "state", in->state);
    ok = ok && dmctl_json_add_int(o, "exit_status", in->exit_status);
    if (!ok)
        o = libdm_json_free(o);
    return dmctl_json_emit(o);
}

/* Width of the NAME (@state false) or STATE column. */
static int column_width(const libdm_dm_info *infos, size_t n, bool state, int min)
{
    size_t i, len;
    int w = min;

    for (i = 0; i < n; i++) {
        len = strlen(or_dash(state ? infos[i].state : infos[i].name));
        if ((int)len > w)
            w = (int)len;
    }
    return w;
}

static void list_table(const libdm_dm_info *infos, size_t n, char **runstates, bool queried)
{
    int wn = column_width(infos, n, false, 4);
    int ws = column_width(infos, n, true, 5);
    char domid[16];
    size_t i;

    printf("%-*s %5s %7s %-5s %-*s %-10s %-7s %s\n", wn, "NAME", "DOMID", "PID", "ALIVE",
           ws, "STATE", "RUNSTATE", "PROFILE", "SOCKET");
    for (i = 0; i < n; i++) {
        const libdm_dm_info *in = &infos[i];
        const char *rs = runstates[i] ? runstates[i] : queried && in->alive ? "?" : "-";

        snprintf(domid, sizeof(domid), in->domid ? "%" PRIu32 : "-", in->domid);
        printf("%-*s %5s %7d %-5s %-*s %-10s %-7s %s\n", wn, in->name, domid, in->pid,
               in->alive ? "yes" : "no", ws, or_dash(in->state), rs, or_dash(in->profile),
               or_dash(in->qmp_socket));
    }
}

static int list_parse(dmctl *d, const dmctl_command *cmd, int argc, char **argv,
                      bool *query)
{
    int c, ex = 0;

    while ((c = dmctl_getopt(d, cmd, argc, argv, list_opts, &ex)) != -1) {
        if (c == DMCTL_OPT_STOP)
            return ex;
        *query = false;
    }
    return expect_args(cmd, argc, 0, "");
}

int dmctl_cmd_list(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("list");
    libdm_dm_info *infos = NULL;
    char **runstates;
    bool query = true;
    size_t n = 0, i;
    int ex, r;

    ex = list_parse(d, cmd, argc, argv, &query);
    if (ex || (ex = dmctl_open_ctx(d)))
        return ex;
    r = libdm_dm_list(d->ctx, &infos, &n);
    if (r < 0)
        return dmctl_report_dm(d, NULL, "list", "reading the records", r);
    runstates = calloc(n ? n : 1, sizeof(*runstates));
    if (!runstates) {
        libdm_dm_info_free(infos, n);
        return dmctl_report_dm(d, NULL, "list", "list", -ENOMEM);
    }
    for (i = 0; i < n && query; i++)
        runstates[i] = query_runstate(d, &infos[i]);
    if (!d->json)
        list_table(infos, n, runstates, query);
    for (i = 0; i < n && d->json && !ex; i++)
        ex = list_json_one(&infos[i], runstates[i]);
    for (i = 0; i < n; i++)
        free(runstates[i]);
    free(runstates);
    libdm_dm_info_free(infos, n);
    return ex;
}
