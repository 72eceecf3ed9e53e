/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-helper (issue 23): what a keeper process costs to create, exec'd
 * (as before: fork + exec of libdm-keeper, which loads and exits) against
 * forked by the context's helper (libdm-keeper --helper, exec'd once:
 * it forks per request, the child exits). Each keeper exits at once (its
 * fds are not a keeper's: usage), so only the process's creation, loading
 * and end are measured. CPU from RUSAGE_CHILDREN (the helper's includes
 * the keepers it reaped; it is itself reaped at the end of its batch),
 * wall per keeper from request to its exit seen by its parent. Batches
 * alternate. Usage: bench-helper [KEEPERS-PER-BATCH [BATCHES]].
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-util.h"

static double child_cpu_ms(void)
{
    struct rusage ru;

    getrusage(RUSAGE_CHILDREN, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static const char *keeper(void)
{
    const char *k = getenv("LIBDM_KEEPER");

    return k && *k ? k : "libdm-keeper";
}

/* @n keepers exec'd one after the other; CPU ms per keeper. */
static double batch_exec(int n, double *wall_ms)
{
    double c0 = child_cpu_ms(), t0 = bu_now_us();

    for (int i = 0; i < n; i++) {
        pid_t pid = fork();

        if (pid == 0) {
            int null = open("/dev/null", O_RDWR);

            dup2(null, 1);
            dup2(null, 2);
            execl(keeper(), keeper(), (char *)NULL);
            _exit(127);
        }
        waitpid(pid, NULL, 0);
    }
    *wall_ms = (bu_now_us() - t0) / 1000.0 / n;
    return (child_cpu_ms() - c0) / n;
}

/* One helper, @n requests one after the other (the next once the last
 * keeper has exited: its channel's EOF); CPU ms per keeper, the helper's
 * own exec included (spread over the batch). */
static double batch_helper(int n, double *wall_ms)
{
    double c0 = child_cpu_ms(), t0;
    int sp[2], null = open("/dev/null", O_RDWR | O_CLOEXEC);
    pid_t pid;

    if (null < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        dup2(sp[1], 3);
        execl(keeper(), keeper(), "--helper", (char *)NULL);
        _exit(127);
    }
    close(sp[1]);
    {
        char ready[16];

        if (read(sp[0], ready, sizeof(ready)) <= 0)
            return -1;
    }
    t0 = bu_now_us();
    for (int i = 0; i < n; i++) {
        /* fds 1..6 of a keeper: the log twice, QMP, the channel, ... here
         * /dev/null but the channel, so that the keeper exits (usage). */
        char argv[] = "libdm-keeper\0--name=x\0--store=x\0--rundir=x\0--\0q";
        int ch[2], fds[6];
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(fds))];
        } control;
        struct iovec iov = { .iov_base = argv, .iov_len = sizeof(argv) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf) };
        struct cmsghdr *c;
        char b;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ch) < 0)
            return -1;
        for (int k = 0; k < 6; k++)
            fds[k] = k == 3 ? ch[1] : null;
        memset(&control, 0, sizeof(control));
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(fds));
        memcpy(CMSG_DATA(c), fds, sizeof(fds));
        if (sendmsg(sp[0], &mh, MSG_NOSIGNAL) < 0)
            return -1;
        close(ch[1]);
        while (read(ch[0], &b, 1) > 0) /* EOF: the keeper has exited */
            ;
        close(ch[0]);
    }
    *wall_ms = (bu_now_us() - t0) / 1000.0 / n;
    close(sp[0]);
    waitpid(pid, NULL, 0);
    close(null);
    return (child_cpu_ms() - c0) / n;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100, batches = argc > 2 ? atoi(argv[2]) : 6;
    double ex[64], he[64], exw[64], hew[64];

    if (n < 1 || batches < 1 || batches > 64)
        return 2;
    for (int b = 0; b < batches; b++) {
        if (b % 2) {
            he[b] = batch_helper(n, &hew[b]);
            ex[b] = batch_exec(n, &exw[b]);
        } else {
            ex[b] = batch_exec(n, &exw[b]);
            he[b] = batch_helper(n, &hew[b]);
        }
        if (ex[b] < 0 || he[b] < 0) {
            fprintf(stderr, "bench-helper: a batch failed\n");
            return 1;
        }
        printf("    batch %d: exec'd %.3f ms CPU %.3f ms wall; helper-forked %.3f ms CPU "
               "%.3f ms wall (per keeper, %d keepers)\n", b + 1, ex[b], exw[b], he[b], hew[b], n);
    }
    puts("bench-helper: creating a keeper process, exec'd vs forked by the helper");
    bu_print_stats("keeper exec'd, CPU", ex, (size_t)batches, "ms");
    bu_print_stats("keeper forked by the helper, CPU", he, (size_t)batches, "ms");
    bu_print_stats("keeper exec'd, wall", exw, (size_t)batches, "ms");
    bu_print_stats("keeper forked by the helper, wall", hew, (size_t)batches, "ms");
    {
        double me = bu_median(ex, (size_t)batches), mh = bu_median(he, (size_t)batches);
        char a[64], b[64];

        snprintf(a, sizeof(a), "%.3f ms CPU", mh);
        snprintf(b, sizeof(b), "%.3f ms CPU (exec'd)", me);
        bu_result("keeper: forked by the helper", a, b, mh / me, "info", "-");
    }
    return 0;
}
