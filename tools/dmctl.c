/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl: start, inspect and stop QEMU device models through libdm.
 *
 * This file holds the command table, the help texts and the option parsing;
 * the commands are in dmctl-cmds.c and dmctl-demo.c, shared helpers in
 * dmctl-util.c. See dmctl(1).
 */
#include "config.h"

#include <libdm/libdm.h>

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmctl.h"

static int cmd_help(dmctl *d, int argc, char **argv);

static const dmctl_command commands[] = {
    { "start", dmctl_cmd_start,
      "[NAME] [--config XL.CFG] [--domid N] [--profile plain|xen] [--restrict]\n"
      "            [--runas USER] [--chroot DIR] [--machine M] [--memory MB]\n"
      "            [--incoming defer|URI] [--qemu PATH] [DEVICE OPTIONS]\n"
      "            [-- EXTRA-QEMU-ARGS...]",
      "start a device model paused, wait until QMP says it is ready, record it",
      "The device model is spawned paused (-S) under a libdm-keeper process and\n"
      "is ready only when QMP says so (query-status: prelaunch, paused or\n"
      "inmigrate). Its record is printed: name, domid, pid, QMP socket,\n"
      "runstate, profile, state. It keeps running after dmctl exits.\n"
      "\n"
      "  --domid N            Xen domain id (1-32751; 0 or none: no domain)\n"
      "  --profile plain|xen  TCG command line (default) or libxl's qemu-xen one\n"
      "  --restrict           dm_restrict: runas, chroot, namespaces, rlimits, seccomp\n"
      "  --runas USER         user name or uid:gid to run as, not root (with --restrict)\n"
      "  --chroot DIR         empty directory to chroot into (with --restrict)\n"
      "  --machine M          QEMU machine type (plain profile default: none)\n"
      "  --memory MB          guest memory in MiB\n"
      "  --incoming defer|URI wait for an incoming migration\n"
      "  --qemu PATH          QEMU binary (a bare name is looked up in $PATH)\n"
      "  -- ARGS...           extra arguments appended to QEMU's command line\n"
      "  --dry-run            print QEMU's command line (the monitor as fd 3) and\n"
      "                       start nothing\n"
      "  --config XL.CFG      an xl.cfg (xl's parser): memory, vcpus, maxvcpus, boot,\n"
      "                       disk, vif, vnc*, serial, vga, stdvga, videoram, usb,\n"
      "                       usbdevice, device_model_*, dm_restrict; NAME defaults\n"
      "                       to its name=. Options given here win over the file.\n"
      "Device options (xl syntax; --disk, --nic, --serial repeat and replace the\n"
      "file's list):\n"
      "  --disk SPEC          e.g. /img/a.raw,raw,hda,rw or vdev=hdc,devtype=cdrom,...\n"
      "  --nic SPEC           mac=M,bridge=BR,model=e1000|rtl8139|virtio-net-pci\n"
      "  --vnc [HOST:]N|unix:PATH|none   VNC display; --vnc-password-file FILE\n"
      "  --serial pty|file:PATH|unix:PATH\n"
      "  --vcpus N, --maxvcpus N, --boot ORDER, --vga std|cirrus|none, --usb, --tablet\n" },
    { "status", dmctl_cmd_status, "NAME | --socket PATH",
      "print the runstate (QMP query-status)",
      "With --json, a recorded DM's devices too: serial ptys, VNC address, NICs.\n"
      "  --socket PATH        ask the QMP socket at PATH instead of a recorded DM\n" },
    { "resume", dmctl_cmd_resume, "NAME",
      "guarded resume: cont only when the runstate allows it",
      "Never sends cont during or after a failed incoming migration; waits for\n"
      "a completed incoming migration first. Already running: nothing is sent.\n" },
    { "pause", dmctl_cmd_pause, "NAME", "pause the guest (QMP stop)", NULL },
    { "qmp", dmctl_cmd_qmp, "(NAME | --socket PATH) COMMAND [JSON-ARGUMENTS]",
      "send one QMP command and print its reply as JSON",
      "JSON-ARGUMENTS is a JSON object, e.g. '{\"uri\": \"unix:/tmp/m.sock\"}'.\n"
      "Every reply is read before the connection is closed (drain).\n"
      "  --socket PATH        use the QMP socket at PATH instead of a recorded DM\n" },
    { "stop", dmctl_cmd_stop, "NAME [--force]",
      "quit, then SIGTERM, then SIGKILL; reap; remove the record",
      "  -f, --force          SIGKILL at once\n"
      "A DM whose process is already gone has its record removed.\n" },
    { "list", dmctl_cmd_list, "[--no-query]",
      "list recorded device models with pid liveness and runstate",
      "The runstate of each live DM is asked over QMP (each bounded by --timeout,\n"
      "at most 5 s); a DM whose monitor is busy shows '?'.\n"
      "  --no-query           do not connect; show the recorded state only\n" },
    { "demo", dmctl_cmd_demo, "[--qemu PATH] [--no-restrict]",
      "start, show ready, resume and stop a real QEMU, timing each step",
      "As root the demo DM runs restricted (runas nobody, an empty chroot);\n"
      "otherwise, or with --no-restrict, unrestricted.\n"
      "  --qemu PATH          QEMU binary\n"
      "  --no-restrict        do not confine the demo DM even as root\n" },
    { "migrate", dmctl_cmd_migrate,
      "NAME --to 'SHELL-COMMAND' [--live] [--pause-before-switchover]\n"
      "            [--switchover-hook CMD] [--keep-paused] [--uri-host HOST]\n"
      "            [--machine M] [--memory MB]",
      "live-migrate a device model through a receiver run by a shell command",
      "Runs /bin/sh -c SHELL-COMMAND (e.g. 'ssh host dmctl migrate-receive') with\n"
      "its stdin and stdout as a control channel, one JSON object per line:\n"
      "prepare -> prepared {uri}, perform (QEMU streams directly), finish ->\n"
      "finished | aborted, then confirm. On any failure the source keeps\n"
      "running (or stays paused) and the destination is stopped; the message\n"
      "names the phase that failed. --timeout bounds each phase.\n"
      "\n"
      "  --to CMD             shell command running 'dmctl migrate-receive'\n"
      "  --live               accepted: precopy migration is always live\n"
      "  --pause-before-switchover  stop at pre-switchover (run the hook there)\n"
      "  --switchover-hook CMD  /bin/sh -c CMD at pre-switchover, with\n"
      "                       $DMCTL_MIGRATE_NAME set; non-zero exit cancels\n"
      "  --keep-paused        leave the destination paused after the migration\n"
      "  --uri-host HOST      connect to HOST instead of the host in the\n"
      "                       receiver's tcp: URI (e.g. behind NAT); a name,\n"
      "                       IPv4 or [IPv6[%zone]]\n"
      "  --machine M          destination machine type (default: the source's,\n"
      "                       as recorded; pc for records that lack it)\n"
      "  --memory MB          destination memory in MiB (default: the source's;\n"
      "                       64 for records that lack it)\n" },
    { "migrate-cancel", dmctl_cmd_migrate_cancel, "NAME",
      "cancel a migration left in flight and make the source run again",
      "For a source whose controller died mid-migration (e.g. paused at\n"
      "pre-switchover): migrate_cancel, then cont if it is not running.\n"
      "Refuses (exit 1) if the migration completed: the guest then runs on the\n"
      "destination and the source must stay stopped. A 'dmctl migrate' of NAME\n"
      "still running is interrupted at once (SIGINT: it cancels a migration in\n"
      "flight) and waited for first.\n" },
    { "migrate-recover", dmctl_cmd_migrate_recover,
      "NAME (--to 'SHELL-COMMAND' | --destination-gone)",
      "resume exactly one side of a migration whose outcome is unknown",
      "After 'dmctl migrate' exited 4 (outcome unknown; the source was left\n"
      "paused): asks the receiver through the same transport whether the\n"
      "destination holds and runs the guest, then either stops the source or\n"
      "resumes it (also from postmigrate). With --destination-gone the\n"
      "operator asserts the destination is gone and the source is resumed.\n"
      "Same as 'dmctl migrate NAME --recover ...'.\n"
      "  --to CMD             shell command running 'dmctl migrate-receive'\n"
      "  --destination-gone   do not ask: resume the source\n" },
    { "migrate-receive", dmctl_cmd_migrate_receive,
      "[--name NAME] [--listen unix|tcp:HOST] [--qemu PATH]",
      "receiving end of migrate: speaks the protocol on stdin/stdout",
      "Run by 'dmctl migrate --to'. Starts the destination paused with\n"
      "-incoming defer under autokill (it dies with this process until the\n"
      "migration is finished), answers on stdout with protocol lines only;\n"
      "messages go to stderr.\n"
      "  --name NAME          name of the destination DM (default: the source's)\n"
      "  --listen unix        unix:RUNDIR/NAME-incoming.sock (default; same host)\n"
      "  --listen tcp:HOST    tcp:HOST:PORT: QEMU binds port 0, the port it got is\n"
      "                       read back by QMP; HOST a name, IPv4 or [IPv6[%zone]]\n"
      "  --qemu PATH          QEMU binary of the destination\n" },
    { "help", cmd_help, "[COMMAND]", "show help (of one command)", NULL },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* Global options, also accepted after any command. */
enum {
    OPT_STORE = 0x1000,
    OPT_JSON,
    OPT_TIMEOUT,
};

static const struct option global_opts[] = {
    { "store", required_argument, NULL, OPT_STORE },
    { "json", no_argument, NULL, OPT_JSON },
    { "timeout", required_argument, NULL, OPT_TIMEOUT },
    { "verbose", no_argument, NULL, 'v' },
    { "help", no_argument, NULL, 'h' },
};

#define N_GLOBAL_OPTS (sizeof(global_opts) / sizeof(global_opts[0]))

static const char global_usage[] =
    "usage: dmctl [--store DIR|xenstore[:DIR]] [--json] [--timeout SECONDS] [-v] COMMAND ...\n";

const dmctl_command *dmctl_find_command(const char *name)
{
    size_t i;

    for (i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_command_usage(FILE *f, const dmctl_command *cmd)
{
    fprintf(f, "usage: dmctl %s %s\n", cmd->name, cmd->usage);
}

int dmctl_usage_error(const dmctl_command *cmd, const char *fmt, ...)
{
    va_list ap;

    fputs("dmctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (cmd) {
        print_command_usage(stderr, cmd);
        fprintf(stderr, "Run 'dmctl help %s' for details.\n", cmd->name);
    } else {
        fputs(global_usage, stderr);
        fputs("Run 'dmctl --help' for the commands.\n", stderr);
    }
    return DMCTL_EXIT_USAGE;
}

int dmctl_print_command_help(const dmctl_command *cmd)
{
    print_command_usage(stdout, cmd);
    printf("\n%s.\n", cmd->summary);
    if (cmd->help)
        printf("\n%s", cmd->help);
    printf("\nGlobal options (--store, --json, --timeout, -v) may also follow the command.\n");
    return DMCTL_EXIT_OK;
}

static int print_help(void)
{
    size_t i;

    fputs(global_usage, stdout);
    fputs("\nRuns QEMU as a Xen device model through libdm: spawned paused, ready when\n"
          "QMP says so, every QMP reply read before a connection is closed.\n"
          "\nCommands:\n", stdout);
    for (i = 0; i < N_COMMANDS; i++) {
        printf("  %-7s %s\n", commands[i].name, commands[i].summary);
        printf("          dmctl %s %s\n", commands[i].name, commands[i].usage);
    }
    fputs("\nOptions:\n"
          "  --store DIR|xenstore[:DIR]\n"
          "                        record store: a directory, or xenstore\n"
          "                        (default: xenstore if a xenstored answers, else\n"
          "                        /run/libdm for root, $XDG_RUNTIME_DIR/libdm otherwise;\n"
          "                        with xenstore, DMs without --domid are recorded in\n"
          "                        that directory, or in DIR)\n"
          "  --json                print results as JSON, one object per line\n"
          "  --timeout SECONDS     deadline of each operation (default 30)\n"
          "  -v, --verbose         log libdm's debug messages, QMP traffic included\n"
          "  -h, --help            this help\n"
          "  -V, --version         print the version\n"
          "\nExit status: 0 success, 1 failure, 2 usage error, 3 timed out,\n"
          "4 migration outcome unknown (source left paused; see --recover),\n"
          "5 interrupted (SIGINT, SIGTERM, SIGHUP; the monitor drained first).\n"
          "Run 'dmctl help COMMAND' for a command's options; see dmctl(1).\n",
          stdout);
    return DMCTL_EXIT_OK;
}

static int print_version(void)
{
    printf("dmctl (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
    return DMCTL_EXIT_OK;
}

static int cmd_help(dmctl *d, int argc, char **argv)
{
    const dmctl_command *self = dmctl_find_command("help");
    const dmctl_command *cmd;
    int c, ex = 0;

    while ((c = dmctl_getopt(d, self, argc, argv, NULL, &ex)) != -1) {
        if (c == DMCTL_OPT_STOP)
            return ex;
        return dmctl_usage_error(self, "unknown option '%s'", argv[optind - 1]);
    }
    if (optind == argc)
        return print_help();
    if (argc - optind > 1)
        return dmctl_usage_error(self, "too many arguments");
    cmd = dmctl_find_command(argv[optind]);
    if (!cmd)
        return dmctl_usage_error(self, "unknown command '%s'", argv[optind]);
    return dmctl_print_command_help(cmd);
}

/* ---- option parsing ---- */

int dmctl_global_option(dmctl *d, int opt, const char *arg)
{
    switch (opt) {
    case OPT_STORE:
        if (!arg[0])
            return dmctl_usage_error(NULL, "invalid --store value ''");
        d->store = arg;
        return 0;
    case OPT_JSON:
        d->json = true;
        return 0;
    case OPT_TIMEOUT:
        if (!dmctl_parse_seconds(arg, &d->timeout_ms))
            return dmctl_usage_error(NULL,
                                     "invalid --timeout value '%s' (seconds, > 0)", arg);
        return 0;
    case 'v':
        d->verbose++;
        return 0;
    default:
        return dmctl_usage_error(NULL, "unknown option");
    }
}

/* The option that getopt_long() just refused, for the message. */
static const char *bad_option(char **argv, char *buf, size_t len)
{
    if (optopt > 0 && optopt < 0x1000) {
        snprintf(buf, len, "-%c", optopt);
        return buf;
    }
    return argv[optind - 1];
}

static size_t count_opts(const struct option *opts)
{
    size_t n = 0;

    while (opts && opts[n].name)
        n++;
    return n;
}

/* Short option string ":" + each printable val of @opts (and "vh"). */
static void build_shortopts(const struct option *opts, size_t n, char *buf, size_t len)
{
    size_t i, k = 0;

    buf[k++] = ':';
    for (i = 0; i < n && k + 3 < len; i++) {
        if (opts[i].flag || opts[i].val <= ' ' || opts[i].val > '~')
            continue;
        buf[k++] = (char)opts[i].val;
        if (opts[i].has_arg == required_argument)
            buf[k++] = ':';
    }
    buf[k] = '\0';
}

int dmctl_getopt(dmctl *d, const dmctl_command *cmd, int argc, char **argv,
                 const struct option *cmd_opts, int *ret_exit)
{
    struct option all[48];
    char shortopts[64], buf[8];
    size_t n = count_opts(cmd_opts);
    int c;

    if (n + N_GLOBAL_OPTS + 1 > sizeof(all) / sizeof(all[0]))
        abort();
    memcpy(all, global_opts, sizeof(global_opts));
    if (n)
        memcpy(all + N_GLOBAL_OPTS, cmd_opts, n * sizeof(*cmd_opts));
    memset(&all[n + N_GLOBAL_OPTS], 0, sizeof(all[0]));
    build_shortopts(all, n + N_GLOBAL_OPTS, shortopts, sizeof(shortopts));
    opterr = 0;

    for (;;) {
        c = getopt_long(argc, argv, shortopts, all, NULL);
        if (c != OPT_STORE && c != OPT_JSON && c != OPT_TIMEOUT && c != 'v')
            break;
        *ret_exit = dmctl_global_option(d, c, optarg);
        if (*ret_exit)
            return DMCTL_OPT_STOP;
    }
    switch (c) {
    case 'h':
        dmctl_print_command_help(cmd);
        *ret_exit = DMCTL_EXIT_HELP;
        return DMCTL_OPT_STOP;
    case ':':
        *ret_exit = dmctl_usage_error(cmd, "option '%s' needs a value",
                                      bad_option(argv, buf, sizeof(buf)));
        return DMCTL_OPT_STOP;
    case '?':
        *ret_exit = dmctl_usage_error(cmd, "unknown option '%s'",
                                      bad_option(argv, buf, sizeof(buf)));
        return DMCTL_OPT_STOP;
    default:
        return c;
    }
}

/* ---- main ---- */

static const struct option main_opts[] = {
    { "store", required_argument, NULL, OPT_STORE },
    { "json", no_argument, NULL, OPT_JSON },
    { "timeout", required_argument, NULL, OPT_TIMEOUT },
    { "verbose", no_argument, NULL, 'v' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
};

/* Parses the global options before the command. Returns -1 to go on, else
 * the exit status. */
static int parse_global(dmctl *d, int argc, char **argv)
{
    char buf[8];
    int c, r;

    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:vhV", main_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            return print_help();
        case 'V':
            return print_version();
        case ':':
            return dmctl_usage_error(NULL, "option '%s' needs a value",
                                     bad_option(argv, buf, sizeof(buf)));
        case '?':
            return dmctl_usage_error(NULL, "unknown option '%s'",
                                     bad_option(argv, buf, sizeof(buf)));
        default:
            r = dmctl_global_option(d, c, optarg);
            if (r)
                return r;
        }
    }
    return -1;
}

static int run_command(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd;
    int r;

    if (argc < 1)
        return dmctl_usage_error(NULL, "no command given");
    cmd = dmctl_find_command(argv[0]);
    if (!cmd)
        return dmctl_usage_error(NULL, "unknown command '%s'", argv[0]);
    optind = 0;   /* full getopt reset (glibc): the command's argv[0] is its name */
    r = cmd->fn(d, argc, argv);
    return r == DMCTL_EXIT_HELP ? DMCTL_EXIT_OK : r;
}

int main(int argc, char **argv)
{
    dmctl d = { .timeout_ms = DMCTL_DEFAULT_TIMEOUT_MS };
    int r, sig;

    r = parse_global(&d, argc, argv);
    if (r >= 0)
        return r;
    dmctl_install_signal_handlers();
    r = run_command(&d, argc - optind, argv + optind);
    dmctl_close(&d);
    if (fflush(stdout) != 0 && r == 0) {
        dmctl_error(NULL, "writing the output failed");
        r = DMCTL_EXIT_FAIL;
    }
    sig = dmctl_signal_received();
    if (sig) {
        dmctl_error(NULL, "interrupted by %s", dmctl_signal_name(sig));
        return DMCTL_EXIT_INTERRUPTED;
    }
    return r;
}
