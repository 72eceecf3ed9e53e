/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm_restrict in QEMU's child, between the keeper's fork and execve:
 * libxl's libxl__local_dm_preexec_restrict() (mount and IPC namespaces,
 * rlimits, XEN_QEMU_CONSOLE_LIMIT) plus no_new_privs and, for QEMU
 * binaries without -sandbox, a libseccomp filter equivalent to
 * "-sandbox on,obsolete=deny,elevateprivileges=allow,spawn=deny,
 * resourcecontrol=deny" with a few more denials. The filter is installed
 * before QEMU's own execve, so execve itself stays allowed; everything else
 * that makes a process (fork, vfork, clone without the thread flags,
 * clone3, execveat) is denied, so after exec QEMU cannot start anything.
 * SECURITY.md lists what is denied and why.
 */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "internal.h"
#include "config-internal.h"
#include "keeper-restrict.h"

#define FSIZE_LIMIT (256ul * 1024)  /* libxl's RLIMIT_FSIZE */

/* ---- the option ---- */

static int parse_item(keeper_restrict *r, const char *item, size_t len)
{
    char *end;

    if (len == 2 && !strncmp(item, "ns", len))
        r->ns = true;
    else if (len == 7 && !strncmp(item, "rlimits", len))
        r->rlimits = true;
    else if (len == 3 && !strncmp(item, "nnp", len))
        r->nnp = true;
    else if (len == 7 && !strncmp(item, "seccomp", len))
        r->seccomp = true;
    else if (len == 8 && !strncmp(item, "log-pipe", len))
        r->log_pipe = true;
    else if (len == 15 && !strncmp(item, "fsize-unlimited", len))
        r->fsize_unlimited = true;
    else if (len > 14 && !strncmp(item, "console-limit=", 14)) {
        errno = 0;
        r->console_limit = strtoul(item + 14, &end, 10);
        if (errno || end != item + len || r->console_limit == 0 || item[14] == '-')
            return -EINVAL;
    } else
        return -EINVAL;
    return 0;
}

int keeper_restrict_parse(keeper_restrict *r, const char *spec)
{
    const char *p = spec;

    while (*p) {
        const char *comma;

        if (!strncmp(p, "owned-root=", 11)) {
            /* Last, whole: a path may contain commas. */
            if (p[11] != '/')
                return -EINVAL;
            r->owned_root = p + 11;
            return 0;
        }
        comma = strchr(p, ',');
        if (parse_item(r, p, comma ? (size_t)(comma - p) : strlen(p)) < 0)
            return -EINVAL;
        if (!comma)
            break;
        p = comma + 1;
        if (!*p)
            return -EINVAL;
    }
    return 0;
}

/* ---- applying it ---- */

static int fail(const char *what)
{
    int e = errno ? errno : EINVAL;

    fprintf(stderr, "libdm-keeper[%d]: dm_restrict: %s: %s\n", (int)getpid(), what,
            strerror(e));
    return -e;
}

static int apply_ns(void)
{
    if (unshare(CLONE_NEWNS | CLONE_NEWIPC) < 0)
        return fail("unshare(CLONE_NEWNS | CLONE_NEWIPC)");
    /* Nothing QEMU mounts (it cannot: see the filter) propagates back. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return fail("making mounts private");
    return 0;
}

/* RLIMIT_FSIZE limits every write at or past it to any regular file,
 * images passed as fds included (FACTS): with writable images it would cost
 * the guest its data past 256 KiB. It is lifted only when libdm passes
 * such images, and then only with log-pipe, so that QEMU's log, the one
 * other file it writes, stays bounded by the keeper (SECURITY.md). */
static int apply_rlimits(bool fsize_unlimited)
{
    const struct { int resource; rlim_t value; const char *name; } limits[] = {
        { RLIMIT_FSIZE, fsize_unlimited ? RLIM_INFINITY : FSIZE_LIMIT, "RLIMIT_FSIZE" },
        { RLIMIT_CORE, 0, "RLIMIT_CORE" },
        { RLIMIT_MSGQUEUE, 0, "RLIMIT_MSGQUEUE" },
        { RLIMIT_LOCKS, 0, "RLIMIT_LOCKS" },
        { RLIMIT_MEMLOCK, 0, "RLIMIT_MEMLOCK" },
    };

    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        struct rlimit rl = { limits[i].value, limits[i].value };

        if (setrlimit(limits[i].resource, &rl) < 0)
            return fail(limits[i].name);
    }
    return 0;
}

/* Denied, killing the process: QEMU's default, obsolete and spawn sets
 * (its "TRAP", which it turns into KILL_PROCESS), then ours. */
static const char *const deny_kill[] = {
    /* QEMU default set */
    "reboot", "swapon", "swapoff", "syslog", "mount", "umount", "kexec_load", "afs_syscall",
    "break", "ftime", "getpmsg", "gtty", "lock", "mpx", "prof", "profil", "putpmsg",
    "security", "stty", "tuxcall", "ulimit", "vserver",
    /* QEMU obsolete=deny */
    "readdir", "_sysctl", "bdflush", "create_module", "get_kernel_syms", "query_module",
    "sgetmask", "ssetmask", "sysfs", "uselib", "ustat",
    /* QEMU spawn=deny (execve aside, see above; clone below) */
    "fork", "vfork", "execveat", "setns", "unshare",
    /* ours: other processes' memory, the kernel, the clock, keys, mounts */
    "ptrace", "process_vm_readv", "process_vm_writev", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "pivot_root", "umount2", "bpf", "perf_event_open",
    "keyctl", "add_key", "request_key", "acct", "settimeofday", "clock_settime", "adjtimex",
    "clock_adjtime", "quotactl", "open_by_handle_at", "vhangup", "nfsservctl",
};

/* QEMU resourcecontrol=deny (EPERM, not a kill), and sched_setattr. */
static const char *const deny_eperm[] = {
    "setpriority", "sched_setparam", "sched_setaffinity", "sched_setattr",
};

/* clone() must look like pthread_create(): every one of these set... */
static const unsigned long clone_required[] = {
    CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND, CLONE_THREAD, CLONE_SYSVSEM,
    CLONE_SETTLS, CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID,
};
/* ...and none of these. */
static const unsigned long clone_forbidden[] = {
    0x00001000 /* CLONE_PIDFD */, CLONE_PTRACE, CLONE_VFORK, CLONE_PARENT, CLONE_NEWNS,
    CLONE_UNTRACED, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
    CLONE_NEWNET, CLONE_IO,
};

/* Adds @name with @action; a name this architecture lacks is skipped. */
static int deny(scmp_filter_ctx f, uint32_t action, const char *name)
{
    int nr = seccomp_syscall_resolve_name(name);

    if (nr == __NR_SCMP_ERROR || nr < 0)
        return 0;
    return seccomp_rule_add(f, action, nr, 0);
}

static int add_clone_rules(scmp_filter_ctx f)
{
    int r = seccomp_rule_add(f, SCMP_ACT_KILL_PROCESS, SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, ~(scmp_datum_t)CSIGNAL, 0));

    for (size_t i = 0; r == 0 && i < sizeof(clone_required) / sizeof(clone_required[0]); i++)
        r = seccomp_rule_add(f, SCMP_ACT_KILL_PROCESS, SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, clone_required[i], 0));
    for (size_t i = 0; r == 0 && i < sizeof(clone_forbidden) / sizeof(clone_forbidden[0]); i++)
        r = seccomp_rule_add(f, SCMP_ACT_KILL_PROCESS, SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, clone_forbidden[i],
                                     clone_forbidden[i]));
    /* glibc falls back to clone() for threads when clone3 says ENOSYS. */
    if (r == 0)
        r = seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    return r;
}

static int add_rules(scmp_filter_ctx f)
{
    int r = 0;

    for (size_t i = 0; r == 0 && i < sizeof(deny_kill) / sizeof(deny_kill[0]); i++)
        r = deny(f, SCMP_ACT_KILL_PROCESS, deny_kill[i]);
    for (size_t i = 0; r == 0 && i < sizeof(deny_eperm) / sizeof(deny_eperm[0]); i++)
        r = deny(f, SCMP_ACT_ERRNO(EPERM), deny_eperm[i]);
    /* QEMU lets a thread drop itself to SCHED_IDLE. */
    if (r == 0)
        r = seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(sched_setscheduler), 1,
                             SCMP_A1(SCMP_CMP_NE, SCHED_IDLE));
    return r == 0 ? add_clone_rules(f) : r;
}

static int apply_seccomp(void)
{
    scmp_filter_ctx f = seccomp_init(SCMP_ACT_ALLOW);
    int r;

    if (!f) {
        errno = ENOMEM;
        return fail("seccomp_init");
    }
    r = add_rules(f);
    if (r == 0)
        r = seccomp_load(f);
    seccomp_release(f);
    if (r < 0) {
        errno = -r;
        return fail("installing the seccomp filter");
    }
    return 0;
}

/* @env plus XEN_QEMU_CONSOLE_LIMIT (the keeper's child is single-threaded:
 * malloc is safe here). */
/* Appends NAME=VALUE to *envp (a longer copy; the child execs soon). */
static int add_env(const char *name, unsigned long value, char *const **envp)
{
    size_t n = 0;
    char **env;

    while ((*envp)[n])
        n++;
    env = calloc(n + 2, sizeof(*env));
    if (!env || asprintf(&env[n], "%s=%lu", name, value) < 0) {
        errno = ENOMEM;
        return fail("environment");
    }
    memcpy(env, *envp, n * sizeof(*env));
    *envp = env;
    return 0;
}

int keeper_restrict_apply(const keeper_restrict *r, char *const **envp)
{
    int e = 0;

    /* libxl's environment for qemu-xen, in its order. */
    if (r->console_limit)
        e = add_env("XEN_QEMU_CONSOLE_LIMIT", r->console_limit, envp);
    if (!e && r->domain_id)
        e = add_env("XEN_DOMAIN_ID", r->domain_id, envp);
    if (!e && r->ns)
        e = apply_ns();
    if (!e && r->rlimits)
        e = apply_rlimits(r->fsize_unlimited && r->log_pipe);
    if (!e && r->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        e = fail("PR_SET_NO_NEW_PRIVS");
    /* Last: after it, mount and unshare are gone. */
    if (!e && r->seccomp)
        e = apply_seccomp();
    return e;
}

void keeper_restrict_cleanup(const keeper_restrict *r)
{
    /* Only libxl's chroot in /var/run/xen (root-owned) by path: the plain
     * one is in the run directory, removed through its fd (keeper.c). */
    if (r->owned_root && !strncmp(r->owned_root, LIBDM__XEN_RUN_DIR "/",
                                  sizeof(LIBDM__XEN_RUN_DIR)))
        (void)rmdir(r->owned_root);
}
