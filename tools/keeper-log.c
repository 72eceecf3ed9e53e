/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The log of a restricted DM, bounded by the keeper (--restrict=log-pipe).
 *
 * Under libxl, RLIMIT_FSIZE (256 KiB) is what bounds a restricted QEMU's
 * log. The same limit breaks every write past 256 KiB into a disk image
 * handed to QEMU as an fd, so libdm lifts it when it passes writable images
 * (keeper-restrict.c) and bounds the log here instead: QEMU's stdout and
 * stderr are a pipe whose other end the keeper copies into the log (its
 * own fd 2) up to LOG_CAP bytes, then a note, then it reads and drops the
 * rest so that QEMU never blocks on a full pipe. Do not trust QEMU: its
 * bytes are copied, never parsed.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keeper-log.h"

#define LOG_CAP (256u * 1024) /* libxl's RLIMIT_FSIZE, which it replaces */
#define LOG_RESERVE 4096      /* below a file-size limit: the note, later messages */

int keeper_log_open(keeper_log *l, int *ret_wfd)
{
    struct rlimit rl;
    struct stat st;
    int p[2];

    *l = (keeper_log){ .rfd = -1, .out = STDERR_FILENO, .cap = LOG_CAP };
    /* A log file under RLIMIT_FSIZE (libxl's log for libdm-xl-dm, under
     * dm_restrict): QEMU's part stays below it, with room left for what
     * follows; a write past it would end the writer (SIGXFSZ). */
    if (fstat(l->out, &st) == 0 && S_ISREG(st.st_mode) && getrlimit(RLIMIT_FSIZE, &rl) == 0 &&
        rl.rlim_cur != RLIM_INFINITY) {
        off_t room = (off_t)rl.rlim_cur - st.st_size - LOG_RESERVE;

        if (room < (off_t)l->cap)
            l->cap = room > 0 ? (size_t)room : 0;
    }
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    /* The keeper's end never blocks it; QEMU's end stays blocking. */
    if (fcntl(p[0], F_SETFL, O_NONBLOCK) < 0) {
        int e = -errno;

        close(p[0]);
        close(p[1]);
        return e;
    }
    l->rfd = p[0];
    *ret_wfd = p[1];
    return 0;
}

static void keep(keeper_log *l, const char *buf, size_t n)
{
    static const char note[] = "\nlibdm-keeper: the device model's log reached its limit; "
                               "the rest is dropped\n";

    if (l->written >= l->cap)
        return;
    if (n > l->cap - l->written)
        n = l->cap - l->written;
    l->written += n;
    if (write(l->out, buf, n) < 0)
        l->written = l->cap; /* a log we cannot write: stop trying */
    if (l->written >= l->cap)
        (void)!write(l->out, note, sizeof(note) - 1);
}

bool keeper_log_pump(keeper_log *l)
{
    char buf[16384];

    while (l->rfd >= 0) {
        ssize_t n = read(l->rfd, buf, sizeof(buf));

        if (n > 0) {
            keep(l, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return true;
        /* EOF: QEMU and everything it forked closed their ends. */
        close(l->rfd);
        l->rfd = -1;
    }
    return false;
}
