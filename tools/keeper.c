/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libdm-keeper: the parent of one device model, in the manner of podman's
 * conmon.
 *
 *   libdm-keeper --name NAME --store SPEC --rundir ROOT [--autokill]
 *                [--restrict=SPEC] -- QEMU-ARGV...
 *
 * Started by libdm with the fds of keeper-proto.h. When libdm runs as root
 * the keeper is the init (pid 1) of a new PID namespace: nothing the DM
 * forks can outlive the DM, and if the keeper itself is killed the kernel
 * kills the whole namespace, so a DM never survives its keeper (never an
 * orphan nobody can see). Without that privilege the keeper is a child
 * subreaper and QEMU gets PR_SET_PDEATHSIG; QEMU's -runas clears the latter,
 * which is why restricted DMs need root.
 *
 * Start-up, in this order:
 *  1. fork QEMU's process, held before exec;
 *  2. record its pid and start time (and ours) in the store: from here on
 *     `list` shows it and `stop` can end it, whoever dies;
 *  3. let it exec, hand libdm a pidfd.
 * Then it waits for whichever comes first:
 *  - QEMU exits: the keeper reaps it, ends whatever it left behind, records
 *    the wait status, tells libdm if it is still there, and exits.
 *  - the control channel closes (the controller exited, even by SIGKILL)
 *    while autokill is armed (always until the DM was ready, and for a
 *    migration destination until Finish): the keeper kills the DM and
 *    removes its record and files (seed 002).
 * The keeper holds the name's claim (owner.lock) until it exits, and does
 * no QMP: it never talks to the untrusted DM at all.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keeper-helper.h"
#include "keeper-log.h"
#include "keeper-proto.h"
#include "keeper-restrict.h"
#include <libdm/dm.h>
#include "config-internal.h"
#include "restrict-internal.h"
#include "rundir-internal.h"
#include "store.h"

#define REAP_ROUNDS 100

typedef struct keeper {
    const char *name;
    const char *store_spec;
    const char *run_root;
    const char *shared_uids; /* --shared-uids: kill-uid decisions ask no NSS */
    bool autokill;
    bool autokilled;
    bool ns_init;       /* pid 1 of the DM's own PID namespace */
    int n_pass_fds;     /* QEMU's fds LIBDM__KEEPER_NFDS.. (restore streams, taps) */
    int ctl;
    int monitor_fd;     /* monitor.lock, held for the controller ("monitor") */
    int sigfd;
    int pidfd;
    pid_t pid;          /* QEMU, as this namespace sees it */
    int host_pid;       /* QEMU, as the store's readers see it */
    libdm__rundir *rd;
    keeper_restrict restrict_; /* dm_restrict, applied right before exec */
    keeper_log log;     /* with --restrict=log-pipe: QEMU's output, capped */
    int log_wfd;        /* QEMU's end of that pipe, until the fork */
} keeper;

static void klog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void klog(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "libdm-keeper: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_kill(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* Our pid as /proc (the host's, since we share its mount namespace) says. */
static int host_self_pid(void)
{
    char buf[32];
    ssize_t n = readlink("/proc/self", buf, sizeof(buf) - 1);

    if (n <= 0)
        return (int)getpid();
    buf[n] = '\0';
    return atoi(buf);
}

/* The pid a pidfd refers to, as /proc's namespace (the host's) numbers it. */
static int host_pid_of(int pidfd)
{
    char path[64], buf[512];
    const char *p;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    p = strstr(buf, "\nPid:");
    return p ? atoi(p + 5) : -1;
}

/* The environment QEMU gets: explicit, never inherited wholesale. */
static char *const qemu_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL=C",
    NULL,
};

/* QEMU's process: waits for the go byte (sent once its pid is recorded),
 * then execs. EOF instead of the byte means the keeper gave up. */
static void child_exec(keeper *k, pid_t keeper_pid, char **argv, int gofd, int errfd)
{
    char *const *env = qemu_env;
    sigset_t none;
    char go;
    int e;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    close(LIBDM__KEEPER_CTL_FD);
    close(LIBDM__KEEPER_OWNER_FD);
    close(LIBDM__KEEPER_RUNDIR_FD);
    if (k->log_wfd >= 0 && (dup2(k->log_wfd, STDOUT_FILENO) < 0 ||
                            dup2(k->log_wfd, STDERR_FILENO) < 0))
        _exit(127);
    if (!k->ns_init && prctl(PR_SET_PDEATHSIG, SIGKILL) == 0 && getppid() != keeper_pid)
        _exit(127); /* the keeper died before we armed that */
    if (read(gofd, &go, 1) != 1)
        _exit(127);
    e = keeper_restrict_apply(&k->restrict_, &env);
    if (e < 0) {
        e = -e;
        (void)!write(errfd, &e, sizeof(e));
        _exit(127);
    }
    execve(argv[0], argv, env);
    e = errno;
    (void)!write(errfd, &e, sizeof(e));
    _exit(127);
}

/* The controller is gone (it closed the channel, released the handle, or
 * died) or cannot be told anything any more: under autokill the DM dies. */
static void controller_gone(keeper *k)
{
    if (k->ctl >= 0) {
        close(k->ctl);
        k->ctl = -1;
    }
    /* Let go: the DM lives on for whoever attaches next. Under autokill
     * the lock goes with this process, after the DM. */
    if (!k->autokill && k->monitor_fd >= 0) {
        close(k->monitor_fd);
        k->monitor_fd = -1;
    }
    if (k->autokill && !k->autokilled) {
        klog("controller of %s went away before releasing it: killing the device model",
             k->name);
        k->autokilled = true;
        if (k->pidfd >= 0)
            pidfd_kill(k->pidfd, SIGKILL);
    }
}

/* A message the controller cannot receive (it released the handle, or
 * died, before reading it) means it is gone: never a DM left running
 * under autokill with nobody told its pid. */
static void send_ctl(keeper *k, const char *msg, int fd)
{
    if (k->ctl >= 0 && libdm__kp_send(k->ctl, msg, fd) < 0)
        controller_gone(k);
}

static int open_store(keeper *k, libdm__store **ret)
{
    int r = libdm__store_open(k->store_spec, NULL, ret);

    if (r < 0)
        klog("cannot open store %s: %s", k->store_spec, strerror(-r));
    else if (k->shared_uids && (r = libdm__store_set_shared_uids(*ret, k->shared_uids)) < 0) {
        klog("bad --shared-uids %s", k->shared_uids);
        libdm__store_close(*ret);
        *ret = NULL;
    }
    return r;
}

/* Step 2: the record names QEMU before QEMU runs. */
static int record_pids(keeper *k)
{
    libdm__store *store;
    int self = host_self_pid(), r;

    r = open_store(k, &store);
    if (r < 0)
        return r;
    r = libdm__store_set_pids(store, k->name, k->host_pid, libdm__proc_start_time(k->host_pid),
                              self, libdm__proc_start_time(self));
    libdm__store_close(store);
    if (r < 0)
        klog("cannot record the pid of %s: %s", k->name, strerror(-r));
    else
        libdm__rundir_set_owner_note(k->rd, self, "libdm-keeper");
    return r;
}

/* Forks QEMU, records it, lets it exec. 0, an exec errno (> 0), or -errno. */
static int spawn_dm(keeper *k, char **argv)
{
    int go[2], err[2], e = 0, r;
    pid_t self = getpid();
    char byte = 1;
    ssize_t n;

    if (k->restrict_.log_pipe && (e = keeper_log_open(&k->log, &k->log_wfd)) < 0)
        return e;
    if (pipe2(go, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(err, O_CLOEXEC) < 0) {
        e = -errno;
        close(go[0]);
        close(go[1]);
        return e;
    }
    k->pid = fork();
    if (k->pid == 0) {
        close(go[1]);
        close(err[0]);
        child_exec(k, self, argv, go[0], err[1]);
    }
    e = k->pid < 0 ? -errno : 0;
    libdm__close(&k->log_wfd);
    close(go[0]);
    close(err[1]);
    close(LIBDM__KEEPER_QMP_FD); /* QEMU has it now, and the passed fds */
    for (int i = 0; i < k->n_pass_fds; i++)
        close(LIBDM__KEEPER_NFDS + i);
    if (e == 0) {
        k->pidfd = pidfd_open_(k->pid);
        k->host_pid = k->pidfd >= 0 ? host_pid_of(k->pidfd) : -1;
        if (k->pidfd < 0 || k->host_pid <= 0)
            e = -ESRCH;
        else if ((r = record_pids(k)) < 0)
            e = r;
        else if (write(go[1], &byte, 1) != 1)
            e = -errno;
    }
    close(go[1]); /* without the byte: QEMU's process exits, never execs */
    if (e == 0) {
        /* The pipe closes on exec: EOF means QEMU is running. */
        do
            n = read(err[0], &e, sizeof(e));
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t)sizeof(e))
            e = 0;
    }
    close(err[0]);
    return e;
}

/* SIGKILLs our children (as a subreaper, QEMU's orphans are among them).
 * Unreaped children keep their pids: no pid here can have been reused. */
static void kill_children(void)
{
    char path[64], buf[4096];
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    for (char *p = buf, *end; *p; p = end) {
        long pid = strtol(p, &end, 10);

        if (end == p)
            break;
        if (pid > 0)
            (void)kill((pid_t)pid, SIGKILL);
    }
}

/* Ends and reaps whatever QEMU left behind. As the namespace's init one
 * kill(-1) reaches all of it; as a subreaper its orphans are our children. */
static void end_the_rest(keeper *k)
{
    for (int round = 0; round < REAP_ROUNDS; round++) {
        pid_t p;

        if (k->ns_init)
            (void)kill(-1, SIGKILL);
        else
            kill_children();
        while ((p = waitpid(-1, NULL, WNOHANG)) > 0)
            ;
        if (p < 0 && errno == ECHILD)
            return;
        usleep(1000);
    }
}

static void remove_dm_files(keeper *k, libdm__store *store)
{
    if (libdm__store_del(store, k->name) < 0 && errno != ENOENT)
        klog("cannot remove the record of %s", k->name);
    /* libdm's chroot: inside the run directory (through its fd), or
     * libxl's /var/run/xen/qemu-root-D. */
    libdm__rundir_remove_subdir(k->rd, LIBDM__PLAIN_ROOT_NAME);
    /* qemu-root-D is the domain's: only under its claim (issue 18). */
    if (!k->restrict_.domain_id ||
        libdm__rundir_hold_domid(k->rd, (uint32_t)k->restrict_.domain_id, NULL) == 0)
        keeper_restrict_cleanup(&k->restrict_);
    libdm__rundir_remove(k->rd, LIBDM__RD_REMOVE_ALL);
}

static void record_exit(keeper *k, int status)
{
    libdm__store *store = NULL;
    int r = open_store(k, &store);

    if (r < 0)
        return;
    if (k->autokilled) {
        remove_dm_files(k, store);
    } else {
        r = libdm__store_set_state(store, k->name, "dead", status);
        if (r < 0 && r != -ENOENT)
            klog("cannot record the exit of %s: %s", k->name, strerror(-r));
    }
    libdm__store_close(store);
}

/* Everything of the DM is gone and recorded: the name may be claimed
 * again. Done before "exit" so that whoever hears it can clean up. */
static void release_name(keeper *k)
{
    libdm__close(&k->rd->owner_fd);
}

static void describe_exit(const keeper *k, int status)
{
    if (WIFEXITED(status))
        klog("device model %s (pid %d) exited with status %d", k->name, k->host_pid,
             WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        klog("device model %s (pid %d) killed by signal %d (%s)", k->name, k->host_pid,
             WTERMSIG(status), strsignal(WTERMSIG(status)));
}

static void handle_ctl(keeper *k)
{
    char msg[LIBDM__KEEPER_MSG_MAX];
    int fd, n = libdm__kp_recv(k->ctl, msg, sizeof(msg), &fd);

    if (n == -EAGAIN || n == -EINTR)
        return;
    if (n > 0 && !strcmp(msg, "monitor") && fd >= 0 && k->monitor_fd < 0) {
        k->monitor_fd = fd;
        return;
    }
    if (fd >= 0)
        close(fd); /* no other message carries one */
    if (n <= 0) {
        controller_gone(k);
        return;
    }
    if (!strcmp(msg, "autokill 1"))
        k->autokill = true;
    else if (!strcmp(msg, "autokill 0"))
        k->autokill = false;
    else if (!strcmp(msg, "kill"))
        pidfd_kill(k->pidfd, SIGKILL);
    else if (!strcmp(msg, "term"))
        pidfd_kill(k->pidfd, SIGTERM);
    else
        klog("ignoring unknown control message");
}

/* Reaps children without blocking; returns QEMU's wait status once it is
 * among them, else -1. Others (QEMU's orphans) are just reaped. */
static int reap_children(keeper *k)
{
    struct signalfd_siginfo si;
    int status, found = -1;
    pid_t p;

    while (read(k->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        ;
    while ((p = waitpid(-1, &status, WNOHANG)) > 0)
        if (p == k->pid)
            found = status;
    return found;
}

static int supervise(keeper *k)
{
    for (;;) {
        /* A negative fd is skipped by poll. */
        struct pollfd p[3] = {
            { .fd = k->sigfd, .events = POLLIN },
            { .fd = k->ctl, .events = POLLIN },
            { .fd = k->log.rfd, .events = POLLIN },
        };
        char msg[64];
        int status;

        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (k->ctl >= 0 && p[1].revents)
            handle_ctl(k);
        if (p[2].revents)
            (void)keeper_log_pump(&k->log);
        status = reap_children(k);
        if (status < 0)
            continue;
        end_the_rest(k);
        (void)keeper_log_pump(&k->log); /* its last words, before ours */
        describe_exit(k, status);
        record_exit(k, status);
        release_name(k);
        snprintf(msg, sizeof(msg), "exit %d", status);
        send_ctl(k, msg, -1);
        return 0;
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: libdm-keeper --name NAME --store SPEC --rundir ROOT [--autokill] "
                    "[--restrict=SPEC] [--pass-fds=N] [--xen-socket-domid=D] [--shared-uids=U,U] -- QEMU-ARGV...\n(started by libdm; not meant to be run by hand)\n");
    return 2;
}

static bool is_fd(int fd, mode_t type)
{
    struct stat st;

    return fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == type;
}

/* SIGCHLD through a signalfd; as a subreaper, QEMU's orphans come to us. */
static int setup_process(keeper *k)
{
    sigset_t chld;

    k->ns_init = getpid() == 1;
    if (!k->ns_init) {
        (void)setsid();
        (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    k->sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    return k->sigfd < 0 ? -errno : 0;
}

/* Forked by the helper: libdm learns our pid and pidfd from us, first. */
static int say_hello(keeper *k)
{
    char msg[64];
    int fd = pidfd_open_(getpid()), r;

    if (fd < 0)
        return -errno;
    snprintf(msg, sizeof(msg), "keeper %d", host_self_pid());
    r = libdm__kp_send(k->ctl, msg, fd);
    close(fd);
    return r;
}

int keeper_main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "name", required_argument, NULL, 'n' },
        { "store", required_argument, NULL, 's' },
        { "rundir", required_argument, NULL, 'r' },
        { "autokill", no_argument, NULL, 'a' },
        { "restrict", required_argument, NULL, 'R' },
        { "pass-fds", required_argument, NULL, 'p' },
        { "xen-socket-domid", required_argument, NULL, 'x' },
        { "hello", no_argument, NULL, 'h' },
        { "shared-uids", required_argument, NULL, 'u' },
        { NULL, 0, NULL, 0 },
    };
    bool hello = false;
    keeper k = { .ctl = LIBDM__KEEPER_CTL_FD, .monitor_fd = -1, .pidfd = -1, .sigfd = -1,
                 .log = { .rfd = -1 }, .log_wfd = -1 };
    char msg[LIBDM__KEEPER_MSG_MAX];
    unsigned long xen_domid = 0;
    char *sock_path = NULL;
    int c, r;

    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 'n': k.name = optarg; break;
        case 's': k.store_spec = optarg; break;
        case 'r': k.run_root = optarg; break;
        case 'a': k.autokill = true; break;
        case 'h': hello = true; break;
        case 'u': k.shared_uids = optarg; break;
        case 'x':
            xen_domid = strtoul(optarg, NULL, 10);
            k.restrict_.domain_id = xen_domid; /* libxl gives QEMU XEN_DOMAIN_ID */
            break;
        case 'p':
            k.n_pass_fds = atoi(optarg);
            if (k.n_pass_fds < 0 || k.n_pass_fds > 64)
                return usage();
            break;
        case 'R':
            if (keeper_restrict_parse(&k.restrict_, optarg) < 0)
                return usage();
            break;
        default: return usage();
        }
    }
    if (!k.name || !k.store_spec || !k.run_root || optind >= argc)
        return usage();
    if (!is_fd(LIBDM__KEEPER_CTL_FD, S_IFSOCK) || !is_fd(LIBDM__KEEPER_OWNER_FD, S_IFREG) ||
        !is_fd(LIBDM__KEEPER_RUNDIR_FD, S_IFDIR))
        return usage();
    for (int i = 0; i < k.n_pass_fds; i++)
        if (fcntl(LIBDM__KEEPER_NFDS + i, F_GETFD) < 0)
            return usage();
    if (libdm__rundir_adopt(k.run_root, k.name, LIBDM__KEEPER_RUNDIR_FD, LIBDM__KEEPER_OWNER_FD,
                            &k.rd) < 0 || setup_process(&k) < 0)
        return 1;
    /* Who holds the name, as `list` and `stop --force` can prove it without
     * the record (issue 18, item 8): a POSIX lock beside the flock. */
    if ((r = libdm__rundir_mark_holder(k.rd)) < 0)
        klog("cannot mark %s's claim as ours: %s", k.name, strerror(-r));
    /* Nobody to say it to (the controller went, or released the start):
     * nothing starts, under autokill (always armed at start). */
    if (hello && say_hello(&k) < 0) {
        controller_gone(&k);
        if (k.autokilled) {
            klog("controller of %s went away before its keeper started: nothing started",
                 k.name);
            record_exit(&k, 127 << 8); /* autokilled: record and files go */
            release_name(&k);
            return 1;
        }
    }
    /* The monitor is at libxl's path: the cleanup must know it. */
    if (xen_domid && libdm__rundir_use_xen_socket(k.rd, LIBDM__XEN_RUN_DIR, (uint32_t)xen_domid,
                                                  false, &sock_path, NULL) < 0)
        klog("cannot open %s: its monitor socket will not be removed", LIBDM__XEN_RUN_DIR);
    free(sock_path);
    r = spawn_dm(&k, argv + optind);
    if (r != 0) {
        int status = -1;

        int e = r > 0 ? r : -r;
        int skip = snprintf(msg, sizeof(msg), "error %d ", e);

        snprintf(msg + skip, sizeof(msg) - (size_t)skip, "cannot execute %s: %s",
                 argv[optind], strerror(e));
        klog("%s", msg + skip);
        send_ctl(&k, msg, -1);
        if (k.pid > 0)
            (void)waitpid(k.pid, &status, 0);
        end_the_rest(&k);
        (void)keeper_log_pump(&k.log);
        record_exit(&k, status < 0 ? 127 << 8 : status);
        release_name(&k);
        snprintf(msg, sizeof(msg), "exit %d", status);
        send_ctl(&k, msg, -1);
        return 1;
    }
    snprintf(msg, sizeof(msg), "pid %d", k.host_pid);
    send_ctl(&k, msg, k.pidfd);
    return supervise(&k);
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--helper"))
        return keeper_helper_main();
    return keeper_main(argc, argv);
}
