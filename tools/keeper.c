/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libdm-keeper: the parent of one device model, in the manner of podman's
 * conmon.
 *
 *   libdm-keeper --name NAME --store SPEC [--autokill] [--restrict=SPEC] -- QEMU-ARGV...
 *
 * Started by libdm with fds 0 (/dev/null), 1 and 2 (the DM's log), 3 (the QMP
 * listening socket QEMU inherits) and 4 (the control channel, see
 * libdm/keeper-proto.h). It forks QEMU, hands libdm a pidfd, and then waits
 * for whichever comes first:
 *  - QEMU exits: the keeper reaps it, records the wait status in the store,
 *    tells libdm if it is still there, and exits. Nothing is left a zombie
 *    for PID 1 to reap slowly, and the record says how the DM ended.
 *  - the control channel closes (the controlling process exited, even by
 *    SIGKILL) while autokill is armed: the keeper kills the DM, reaps it and
 *    removes its record and directory (seed 002: a migration destination
 *    must not outlive the controller that never reached Finish).
 * The keeper does no QMP: it never talks to the untrusted DM at all.
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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keeper-proto.h"
#include "keeper-restrict.h"
#include "store.h"

typedef struct keeper {
    const char *name;
    const char *store_spec;
    bool autokill;
    bool autokilled;
    int ctl;
    int pidfd;
    pid_t pid;
    keeper_restrict restrict_; /* dm_restrict, applied before exec */
} keeper;

static void klog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void klog(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "libdm-keeper[%d]: ", (int)getpid());
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

/* The environment QEMU gets: explicit, never inherited wholesale. */
static char *const qemu_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL=C",
    NULL,
};

static void child_exec(const keeper *k, char **argv, int errfd)
{
    char *const *env = qemu_env;
    sigset_t none;
    int e;

    /* Undo what the keeper's parent may have left us. */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    close(LIBDM__KEEPER_CTL_FD);
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

/* Forks QEMU. Returns 0, or the exec errno (> 0), or -errno. */
static int spawn_dm(keeper *k, char **argv)
{
    int pipefd[2], e = 0;
    ssize_t n;

    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -errno;
    k->pid = fork();
    if (k->pid < 0) {
        e = -errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return e;
    }
    if (k->pid == 0)
        child_exec(k, argv, pipefd[1]);
    close(pipefd[1]);
    close(LIBDM__KEEPER_QMP_FD); /* QEMU has it now */
    k->pidfd = pidfd_open_(k->pid);
    /* The pipe closes on exec: EOF means QEMU is running. */
    do
        n = read(pipefd[0], &e, sizeof(e));
    while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    return n == (ssize_t)sizeof(e) ? e : 0;
}

static void send_ctl(keeper *k, const char *msg, int fd)
{
    if (k->ctl >= 0 && libdm__kp_send(k->ctl, msg, fd) < 0) {
        close(k->ctl);
        k->ctl = -1;
    }
}

static int wait_status(pid_t pid)
{
    int status;

    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return status;
}

static void remove_dm_files(keeper *k, libdm__store *store)
{
    char path[4096];
    const char *root = libdm__store_run_root(store);

    if (libdm__store_del(store, k->name) < 0 && errno != ENOENT)
        klog("cannot remove the record of %s", k->name);
    if (!root)
        return;
    snprintf(path, sizeof(path), "%s/%s/qmp.sock", root, k->name);
    unlink(path);
    snprintf(path, sizeof(path), "%s/%s/qemu.log", root, k->name);
    unlink(path);
    keeper_restrict_cleanup(&k->restrict_);
    snprintf(path, sizeof(path), "%s/%s", root, k->name);
    rmdir(path);
}

static void record_exit(keeper *k, int status)
{
    libdm__store *store = NULL;
    int r = libdm__store_open(k->store_spec, NULL, &store);

    if (r < 0) {
        klog("cannot open store %s: %s", k->store_spec, strerror(-r));
        return;
    }
    if (k->autokilled) {
        remove_dm_files(k, store);
    } else {
        r = libdm__store_set_state(store, k->name, "dead", status);
        if (r < 0 && r != -ENOENT)
            klog("cannot record the exit of %s: %s", k->name, strerror(-r));
    }
    libdm__store_close(store);
}

static void describe_exit(const keeper *k, int status)
{
    if (WIFEXITED(status))
        klog("device model %s (pid %d) exited with status %d", k->name, (int)k->pid,
             WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        klog("device model %s (pid %d) killed by signal %d (%s)", k->name, (int)k->pid,
             WTERMSIG(status), strsignal(WTERMSIG(status)));
}

static void handle_ctl(keeper *k)
{
    char msg[LIBDM__KEEPER_MSG_MAX];
    int fd, n = libdm__kp_recv(k->ctl, msg, sizeof(msg), &fd);

    if (fd >= 0)
        close(fd); /* the controller never sends fds */
    if (n == -EAGAIN || n == -EINTR)
        return;
    if (n <= 0) {
        close(k->ctl);
        k->ctl = -1;
        if (k->autokill) {
            klog("controller of %s went away before releasing it: killing the device model",
                 k->name);
            k->autokilled = true;
            pidfd_kill(k->pidfd, SIGKILL);
        }
        return;
    }
    if (!strcmp(msg, "autokill 1"))
        k->autokill = true;
    else if (!strcmp(msg, "autokill 0"))
        k->autokill = false;
    else if (!strcmp(msg, "kill"))
        pidfd_kill(k->pidfd, SIGKILL);
    else
        klog("ignoring unknown control message");
}

static int supervise(keeper *k)
{
    for (;;) {
        struct pollfd p[2] = {
            { .fd = k->pidfd, .events = POLLIN },
            { .fd = k->ctl, .events = POLLIN },
        };
        char msg[64];
        int status;

        if (poll(p, k->ctl >= 0 ? 2 : 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (k->ctl >= 0 && p[1].revents)
            handle_ctl(k);
        if (!p[0].revents)
            continue;
        status = wait_status(k->pid);
        describe_exit(k, status);
        record_exit(k, status);
        snprintf(msg, sizeof(msg), "exit %d", status);
        send_ctl(k, msg, -1);
        return 0;
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: libdm-keeper --name NAME --store SPEC [--autokill] [--restrict=SPEC] "
                    "-- QEMU-ARGV...\n"
                    "(started by libdm; not meant to be run by hand)\n");
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "name", required_argument, NULL, 'n' },
        { "store", required_argument, NULL, 's' },
        { "autokill", no_argument, NULL, 'a' },
        { "restrict", required_argument, NULL, 'r' },
        { NULL, 0, NULL, 0 },
    };
    keeper k = { .ctl = LIBDM__KEEPER_CTL_FD, .pidfd = -1 };
    char msg[LIBDM__KEEPER_MSG_MAX];
    struct stat st;
    int c, r;

    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 'n': k.name = optarg; break;
        case 's': k.store_spec = optarg; break;
        case 'a': k.autokill = true; break;
        case 'r':
            if (keeper_restrict_parse(&k.restrict_, optarg) < 0)
                return usage();
            break;
        default: return usage();
        }
    }
    if (!k.name || !k.store_spec || optind >= argc)
        return usage();
    if (fstat(LIBDM__KEEPER_CTL_FD, &st) < 0 || !S_ISSOCK(st.st_mode))
        return usage();
    /* Our own session: the DM is not in the controller's process group, so
     * a ^C at the controller's terminal does not reach it. */
    (void)setsid();
    signal(SIGPIPE, SIG_IGN);
    r = spawn_dm(&k, argv + optind);
    if (r != 0 || k.pidfd < 0) {
        int status = k.pid > 0 ? wait_status(k.pid) : -1;
        snprintf(msg, sizeof(msg), "error cannot execute %s: %s", argv[optind],
                 strerror(r > 0 ? r : (r < 0 ? -r : errno)));
        klog("%s", msg + 6);
        send_ctl(&k, msg, -1);
        snprintf(msg, sizeof(msg), "exit %d", status);
        send_ctl(&k, msg, -1);
        return 1;
    }
    snprintf(msg, sizeof(msg), "pid %d", (int)k.pid);
    send_ctl(&k, msg, k.pidfd);
    return supervise(&k);
}
