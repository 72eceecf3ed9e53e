/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dmctl: the commands start, resume, pause and migrate-cancel (status and
 * qmp: dmctl-status.c; stop and list: dmctl-stop.c). */
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
int dmctl_expect_args(const dmctl_command *cmd, int argc, int n, const char *what)
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
    /* Refused before anything ran; a QEMU that refused its command line
     * (it ran and exited 1, -EINVAL too) is a failed start (exit 1). */
    if (r == -EINVAL && (!dm || libdm_dm_get_ended_by(dm) == LIBDM_END_NONE)) {
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
        ex = dmctl_expect_args(cmd, argc, 1, "NAME");
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
