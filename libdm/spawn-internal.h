/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Starting a DM under libdm-keeper and talking to that keeper. */
#ifndef LIBDM_SPAWN_INTERNAL_H
#define LIBDM_SPAWN_INTERNAL_H

#include "internal.h"

typedef struct libdm__keeper libdm__keeper;

typedef struct libdm__keeper_ops {
    /* QEMU was forked: its pid (the pidfd is held by the keeper object). */
    void (*on_pid)(libdm__keeper *k, int pid, void *user);
    /* QEMU ended with wait status @status (-1: unknown, the keeper died). */
    void (*on_exit)(libdm__keeper *k, int status, void *user);
    /* The keeper reported a failure (exec failed, ...), before on_exit. */
    /* @err: the keeper's errno (negative; -ECHILD if it gave none). */
    void (*on_error)(libdm__keeper *k, int err, const char *message, void *user);
} libdm__keeper_ops;

typedef struct libdm__spawn_args {
    const char *name;
    const char *store_spec;    /* what the keeper opens to record the exit */
    char *const *argv;         /* QEMU's argv, its QMP chardev on fd 3 */
    int qmp_listen_fd;
    int log_fd;
    int owner_fd;              /* the name's claim (owner.lock, locked) */
    int rundir_fd;             /* the DM's run directory */
    int monitor_fd;            /* monitor.lock (locked) for the keeper to hold, or -1 */
    const char *run_root;      /* its parent, for the keeper's cleanup */
    uint32_t xen_socket_domid; /* monitor at libxl's path for this domid, or 0 */
    const int *pass_fds;       /* QEMU's fds LIBDM_PASS_FD_FIRST.. (config) */
    size_t n_pass_fds;
    bool autokill;
    const char *restrict_spec; /* the keeper's --restrict= (restrict.c), or NULL */
} libdm__spawn_args;

int libdm__keeper_spawn(libdm_ctx *ctx, const libdm__spawn_args *args,
                        const libdm__keeper_ops *ops, void *user, libdm__keeper **ret);
/* Arms or releases autokill (seed 002). */
int libdm__keeper_set_autokill(libdm__keeper *k, bool on);
/* Asks the keeper to signal the DM (-ESRCH once it is gone or before its
 * pid). A keeper that does not act is killed by the caller's next step. */
int libdm__keeper_signal(libdm__keeper *k, int sig);
/* QEMU's process had ended when the keeper said its pid. */
bool libdm__keeper_dm_gone(const libdm__keeper *k);
/* SIGKILLs the DM through its keeper, or before its pid is known (or with
 * no channel) the keeper itself (and with it everything it started). */
int libdm__keeper_kill(libdm__keeper *k);
/* Its DM is being stopped: a context freed now waits (bounded) to reap it. */
void libdm__keeper_set_ending(libdm__keeper *k);
/* SIGKILLs the keeper itself. */
int libdm__keeper_kill_keeper(libdm__keeper *k);
int libdm__keeper_keeper_pid(const libdm__keeper *k);
/* Closes the control channel and stops reporting; the keeper process goes on
 * (and, if autokill is armed, kills the DM). Its reaping passes to the ctx. */
void libdm__keeper_free(libdm__keeper *k);

/* Starts a child like fork() (0 in the child, its pid in the parent, or
 * -errno) with clone3(CLONE_PIDFD) and without CLONE_VFORK: the parent never
 * waits for the child's exec, and gets a pidfd (O_CLOEXEC) in *ret_pidfd.
 * The child makes raw system calls only (syscall()) until it execs or
 * exits: the parent may be threaded, and sanitizer or preload interceptors
 * must not run there. @try_newpid: a new PID namespace if privileged, else
 * a plain child; *ret_ns (if not NULL) tells which. */
pid_t libdm__clone_pidfd(bool try_newpid, int *ret_pidfd, bool *ret_ns);
/* In such a child: default dispositions for every signal, an empty mask
 * (the application's handlers and mask are not the program's). Raw. */
void libdm__child_reset_signals(void);

/* The keeper's path (LIBDM_KEEPER or the installed one) and environment. */
const char *libdm__keeper_path(void);
char **libdm__keeper_env(void);
/* clone3()s a child that makes @src[i] its fd i (0: /dev/null), closes the
 * rest and execs @argv; an exec failure is said on its fd @err_fd. */
pid_t libdm__spawn_exec(libdm_ctx *ctx, const int *src, int nfds, int err_fd, char **argv,
                        char **env, bool try_newpid, int *ret_pidfd, bool *ret_ns);
/* spawn-vm.c: the same in the caller's address space (CLONE_VM, a stack
 * of its own freed on the loop once the child exec'd), so the clone's
 * cost does not grow with the caller's memory. -ENOSYS where unsupported. */
typedef struct libdm__spawn_stack libdm__spawn_stack;
pid_t libdm__spawn_exec_vm(libdm_ctx *ctx, const int *src, int nfds, int err_fd, char **argv,
                           char **env, bool try_newpid, int *ret_pidfd, bool *ret_ns);
bool libdm__spawn_vm_enabled(void);

/* spawn-helper.c: one helper per context, libdm-keeper --helper, exec'd on
 * the first start: it forks a keeper per DM (a fork, not an exec). */
bool libdm__helper_enabled(libdm_ctx *ctx);
/* Queues the keeper @argv with its fds @src[1..nfds) (not waiting). 0, or
 * negative errno: the caller execs the keeper itself. */
int libdm__helper_submit(libdm_ctx *ctx, char **argv, const int *src, int nfds);
unsigned libdm__helper_gen(libdm_ctx *ctx);
/* A keeper of helper generation @gen has ended (or will, on its own). */
void libdm__helper_keeper_done(libdm_ctx *ctx, unsigned gen);
/* The helper of @gen is still starting (it has read no request yet). */
bool libdm__helper_starting(libdm_ctx *ctx, unsigned gen);
int libdm__helper_kill(libdm_ctx *ctx);
/* A pidfd (O_CLOEXEC) of the context's helper, or -1. */
int libdm__helper_pidfd_dup(libdm_ctx *ctx);
/* What the helper said went wrong (it could not be exec'd...) and its
 * errno (negative; -ECHILD if none), or NULL. */
const char *libdm__helper_error(libdm_ctx *ctx, int *ret_errno);
/* libdm_ctx_free(): the helper exits once its keepers have. */
void libdm__helper_free(libdm_ctx *ctx);

/* pidfd helpers */
int libdm__pidfd_open(int pid);
int libdm__pidfd_signal(int pidfd, int sig);
/* The wait status of @pidfd's process once its parent reaped it, read from
 * the kernel (PIDFD_GET_INFO with PIDFD_INFO_EXIT, Linux 6.15): the one way
 * for a process that is not the parent. -1 if not known (not reaped yet,
 * or an older kernel). */
int libdm__pidfd_exit_status(int pidfd);
/* The context reaps @pidfd's process (a child) when it exits; takes @pidfd.
 * @exiting: it is about to exit (its DM ended): libdm_ctx_free() waits for
 * it a moment rather than leave a zombie. */
int libdm__reap_later(libdm_ctx *ctx, int pidfd, bool exiting);
#endif
