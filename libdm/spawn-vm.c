/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The keeper's process started in the caller's address space (floor 7,
 * below spawn-proc.c, which uses it): clone(CLONE_VM) on a stack of its
 * own, without CLONE_VFORK (issue 23).
 *
 * Why: a fork-style clone copies the caller's page tables, so its cost grows
 * with the caller's memory (1-3 ms of CPU per DM for a small daemon, more
 * for a large one, all inside one dispatch of its loop). With CLONE_VM the
 * clone costs the same whatever the caller's size, and the caller still
 * never waits for the child's exec (no CLONE_VFORK: a slow exec, say of a
 * keeper binary on a cold disk, stalls no host loop).
 *
 * The price of sharing the memory:
 * - the child may touch nothing the caller owns. Everything it reads (argv,
 *   env, the fd table it builds) is copied into the mapping that also holds
 *   its stack, and it makes raw system calls only (inline, never libc's
 *   syscall(), which would set the caller's errno);
 * - the mapping lives until the child has exec'd or exited: the child holds
 *   a close-on-exec pipe end, and its end of file, watched on the loop,
 *   frees the mapping;
 * - the caller's signal handlers must not run in the child: every signal is
 *   blocked across the clone and the child resets all dispositions to the
 *   default before it unblocks them.
 * Where no raw system call path exists (an architecture not listed below),
 * under valgrind (it supports no such clone), or with LIBDM_SPAWN_VM=0
 * (benchmarks compare the two), the caller uses the fork-style clone.
 */
#define _GNU_SOURCE
#include "spawn-internal.h"
#include "ctx-internal.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__aarch64__)
#define HAVE_RAW_SYSCALL 1
#endif

#define VM_STACK_SIZE (64 * 1024)

#ifdef HAVE_RAW_SYSCALL
/* A system call that touches no memory of the caller's: -errno on failure. */
__attribute__((always_inline)) static inline long raw6(long n, long a, long b, long c, long d,
                                                        long e, long f)
{
#if defined(__x86_64__)
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;

    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
#else
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;

    __asm__ volatile("svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
#endif
}
#define RAW(n, a, b, c, d) raw6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

/* The kernel's struct sigaction (x86-64, and the generic layout). */
struct vm_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
};

/* What the child reads, all inside its own mapping. */
typedef struct vm_args {
    int src[LIBDM_PASS_FD_FIRST + LIBDM_MAX_PASS_FDS];
    int nfds, err_fd, eof_fd;
    char **argv, **env;
} vm_args;

/* The child. No sanitizer instrumentation: it runs on a stack the
 * sanitizers do not know, beside the caller's threads. */
__attribute__((no_sanitize("address", "thread", "undefined"), noinline)) static int
vm_child(void *arg)
{
    static const char text[] = " cannot execute libdm-keeper";
    const struct vm_sigaction dfl = { .handler = SIG_DFL };
    const vm_args *a = arg;
    char msg[sizeof(text) + 16] = "error ";
    size_t len = 6;
    unsigned long none = 0;
    long nullfd, e;

    /* The caller's handlers are not ours: defaults first, then unblock. */
    for (int sig = 1; sig < 65; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)RAW(SYS_rt_sigaction, sig, &dfl, 0, sizeof(dfl.mask));
    (void)RAW(SYS_rt_sigprocmask, SIG_SETMASK, &none, 0, sizeof(none));
    nullfd = RAW(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC, 0);
    if (nullfd < 0 || RAW(SYS_dup3, nullfd, 0, 0, 0) < 0)
        RAW(SYS_exit_group, 127, 0, 0, 0);
    for (int fd = 1; fd < a->nfds; fd++)
        if (RAW(SYS_dup3, a->src[fd], fd, 0, 0) < 0)
            RAW(SYS_exit_group, 127, 0, 0, 0);
    /* The end-of-file pipe stays open until the exec (close-on-exec). */
    if (RAW(SYS_dup3, a->eof_fd, a->nfds, O_CLOEXEC, 0) < 0)
        RAW(SYS_exit_group, 127, 0, 0, 0);
    (void)RAW(SYS_close_range, a->nfds + 1, ~0U, 0, 0);
    e = -RAW(SYS_execve, a->argv[0], a->argv, a->env, 0);
    /* "error ERRNO TEXT" (keeper-proto.h), formatted by hand. */
    if (e <= 0 || e > 9999)
        e = ENOEXEC;
    for (long div = e >= 1000 ? 1000 : e >= 100 ? 100 : e >= 10 ? 10 : 1; div; div /= 10)
        msg[len++] = (char)('0' + (e / div) % 10);
    for (size_t i = 0; i < sizeof(text) - 1; i++)
        msg[len++] = text[i];
    (void)raw6(SYS_sendto, a->err_fd, (long)msg, (long)len, MSG_NOSIGNAL, 0, 0);
    RAW(SYS_exit_group, 127, 0, 0, 0);
    return 127;
}
#endif /* HAVE_RAW_SYSCALL */

/* ---- the mapping: stack, arguments, and its release at the exec ---- */

struct libdm__spawn_stack {
    void *mem;
    size_t len;
    int eof_fd;         /* read end: end of file once the child exec'd or exited */
    libdm__watch *watch;
    libdm__spawn_stack *next;
};

static void stack_free(libdm_ctx *ctx, libdm__spawn_stack *s, bool child_done)
{
    libdm__spawn_stack **pp = &ctx->spawn_stacks;

    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    libdm__watch_del(s->watch);
    libdm__close(&s->eof_fd);
    /* A child not yet past its exec still runs on it: left mapped. */
    if (child_done)
        munmap(s->mem, s->len);
    free(s);
}

static void on_stack_eof(libdm_ctx *ctx, int fd, short revents, void *user)
{
    char c;
    ssize_t n = read(fd, &c, 1);

    (void)revents;
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        stack_free(ctx, user, n == 0);
}

void libdm__spawn_stacks_free(libdm_ctx *ctx)
{
    while (ctx->spawn_stacks) {
        libdm__spawn_stack *s = ctx->spawn_stacks;
        char c;

        /* The exec is a matter of microseconds once the clone returned;
         * a child still before it keeps its mapping (never waited for). */
        stack_free(ctx, s, read(s->eof_fd, &c, 1) == 0);
    }
}

/* ThreadSanitizer intercepts clone() and its runtime aborts on a CLONE_VM
 * child that is not a thread: such builds take the fork-style clone. */
#if defined(__SANITIZE_THREAD__)
#define SPAWN_VM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SPAWN_VM_TSAN 1
#endif
#endif

bool libdm__spawn_vm_enabled(void)
{
#ifdef SPAWN_VM_TSAN
    return false;
#endif
#ifdef HAVE_RAW_SYSCALL
    const char *e = getenv("LIBDM_SPAWN_VM"), *pre = getenv("LD_PRELOAD");

    /* Valgrind ends the process at a clone it does not know (CLONE_VM
     * without CLONE_THREAD) instead of failing it; its preload says it. */
    if (pre && strstr(pre, "vgpreload"))
        return false;
    return !e || strcmp(e, "0") != 0;
#else
    return false;
#endif
}

#ifdef HAVE_RAW_SYSCALL
static size_t strv_bytes(char *const *v, size_t *ret_n)
{
    size_t bytes = 0, n = 0;

    for (; v[n]; n++)
        bytes += strlen(v[n]) + 1;
    *ret_n = n;
    return bytes + (n + 1) * sizeof(char *);
}

/* Copies @v into @at (pointers first, then the strings); returns the end. */
static char *strv_copy(char *at, char *const *v, size_t n, char ***ret)
{
    char **ptrs = (char **)(void *)at;
    char *p = at + (n + 1) * sizeof(char *);

    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(v[i]) + 1;

        memcpy(p, v[i], l);
        ptrs[i] = p;
        p += l;
    }
    ptrs[n] = NULL;
    *ret = ptrs;
    return p;
}

static int clone_vm(vm_args *a, void *stack_top, bool try_newpid, int *ret_pidfd, bool *ret_ns)
{
    sigset_t all, old;
    int pid, e;

    sigfillset(&all);
    for (;;) {
        int flags = CLONE_VM | CLONE_PIDFD | SIGCHLD | (try_newpid ? CLONE_NEWPID : 0);

        pthread_sigmask(SIG_SETMASK, &all, &old);
        pid = clone(vm_child, stack_top, flags, a, ret_pidfd);
        e = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (pid >= 0 || !try_newpid || (e != EPERM && e != EINVAL && e != ENOSPC && e != EUSERS))
            break;
        try_newpid = false; /* no privilege for a namespace: a plain child */
    }
    if (ret_ns)
        *ret_ns = try_newpid;
    return pid < 0 ? -e : pid;
}
#endif

pid_t libdm__spawn_exec_vm(libdm_ctx *ctx, const int *src, int nfds, int err_fd, char **argv,
                           char **env, bool try_newpid, int *ret_pidfd, bool *ret_ns)
{
#ifdef HAVE_RAW_SYSCALL
    size_t na, ne, data, len;
    libdm__spawn_stack *s;
    int pipefd[2] = { -1, -1 }, w = -1, r;
    vm_args *a;
    char *p;
    pid_t pid;

    if (nfds < 1 || nfds > (int)LIBDM__ARRAY_SIZE(a->src))
        return -EINVAL;
    data = sizeof(*a) + strv_bytes(argv, &na) + strv_bytes(env, &ne) + 64;
    len = (data + VM_STACK_SIZE + 4095) & ~(size_t)4095;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->eof_fd = -1;
    s->mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                  -1, 0);
    if (s->mem == MAP_FAILED) {
        free(s);
        return -ENOMEM;
    }
    s->len = len;
    a = s->mem;
    memcpy(a->src, src, (size_t)nfds * sizeof(*src));
    a->nfds = nfds;
    a->err_fd = err_fd;
    p = (char *)(a + 1);
    p = strv_copy(p, argv, na, &a->argv);
    p = (char *)(((uintptr_t)p + sizeof(char *) - 1) & ~(uintptr_t)(sizeof(char *) - 1));
    (void)strv_copy(p, env, ne, &a->env); /* pointers aligned: the slack covers it */
    /* The write end above every fd the child places: nothing clobbers it. */
    if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0 ||
        (w = fcntl(pipefd[1], F_DUPFD_CLOEXEC, nfds + 1)) < 0) {
        r = -errno;
        goto fail;
    }
    libdm__close(&pipefd[1]);
    a->eof_fd = w;
    s->eof_fd = pipefd[0];
    pipefd[0] = -1;
    r = libdm__watch_add(ctx, s->eof_fd, POLLIN, on_stack_eof, s, &s->watch);
    if (r < 0)
        goto fail;
    /* Stacks grow down on both architectures; 16-byte aligned top. */
    pid = clone_vm(a, (char *)s->mem + (len & ~(size_t)15), try_newpid, ret_pidfd, ret_ns);
    libdm__close(&w); /* the child's copy is the only one left */
    if (pid < 0) {
        r = pid;
        goto fail;
    }
    s->next = ctx->spawn_stacks;
    ctx->spawn_stacks = s;
    return pid;
fail:
    libdm__watch_del(s->watch);
    libdm__close(&pipefd[0]);
    libdm__close(&pipefd[1]);
    libdm__close(&w);
    libdm__close(&s->eof_fd);
    munmap(s->mem, s->len);
    free(s);
    return r;
#else
    (void)ctx, (void)src, (void)nfds, (void)err_fd, (void)argv, (void)env, (void)try_newpid;
    (void)ret_pidfd, (void)ret_ns;
    return -ENOSYS;
#endif
}
