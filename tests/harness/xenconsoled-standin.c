/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * xenconsoled-standin: what the real `xl create` needs of xenconsoled on a
 * machine without Xen, for tests only.
 *
 * A STAND-IN, not the daemon: xenconsoled relays a PV console ring that a
 * running guest writes, and no guest runs here (tests/harness/xlhyp.c). It
 * does the one thing libxl waits for (10 s, then it destroys the domain):
 * for every domain that appears in xenstore with a console/type of
 * "xenconsoled", it opens a pseudo-terminal and writes its name to
 * /local/domain/<d>/console/tty, as xenconsoled does. The pty stays open
 * (nothing is ever written to it: there is no ring to relay) until the
 * domain's node goes away. HVM serial consoles (`xl console`'s default for
 * HVM) are QEMU's own ptys and do not involve it.
 *
 *   xenconsoled-standin PIDFILE    (XENSTORED_PATH names the xenstored)
 * Runs until killed; writes its pid to PIDFILE once it watches.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenstore.h>

#define MAX_DOMS 64

struct console {
    unsigned int domid;
    int master; /* -1: free slot */
};

static struct console cons[MAX_DOMS];

static struct console *find(unsigned int domid)
{
    for (int i = 0; i < MAX_DOMS; i++)
        if (cons[i].master >= 0 && cons[i].domid == domid)
            return &cons[i];
    return NULL;
}

static bool has_console(struct xs_handle *xs, unsigned int domid)
{
    char path[64];
    unsigned int len;
    char *type;
    bool yes;

    snprintf(path, sizeof(path), "/local/domain/%u/console/type", domid);
    type = xs_read(xs, XBT_NULL, path, &len);
    yes = type && strcmp(type, "xenconsoled") == 0;
    free(type);
    return yes;
}

static void attach(struct xs_handle *xs, unsigned int domid)
{
    char path[64], *name;
    int i, m;

    if (find(domid) || !has_console(xs, domid))
        return;
    for (i = 0; i < MAX_DOMS && cons[i].master >= 0; i++)
        ;
    if (i == MAX_DOMS)
        return;
    m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 || !(name = ptsname(m))) {
        perror("xenconsoled-standin: pty");
        if (m >= 0)
            close(m);
        return;
    }
    snprintf(path, sizeof(path), "/local/domain/%u/console/tty", domid);
    if (!xs_write(xs, XBT_NULL, path, name, strlen(name))) {
        close(m);
        return;
    }
    cons[i].domid = domid;
    cons[i].master = m;
}

/* Attaches new domains, closes the ptys of those gone. */
static void scan(struct xs_handle *xs)
{
    unsigned int n = 0;
    char **doms = xs_directory(xs, XBT_NULL, "/local/domain", &n);

    for (int i = 0; i < MAX_DOMS; i++) {
        bool alive = false;

        if (cons[i].master < 0)
            continue;
        for (unsigned int j = 0; doms && j < n; j++)
            alive |= strtoul(doms[j], NULL, 10) == cons[i].domid;
        if (!alive) {
            close(cons[i].master);
            cons[i].master = -1;
        }
    }
    for (unsigned int j = 0; doms && j < n; j++) {
        unsigned long d = strtoul(doms[j], NULL, 10);

        if (d > 0 && d < 0x7ff0)
            attach(xs, (unsigned int)d);
    }
    free(doms);
}

int main(int argc, char **argv)
{
    struct xs_handle *xs;
    FILE *f;

    if (argc != 2) {
        fprintf(stderr, "usage: %s PIDFILE\n", argv[0]);
        return 2;
    }
    for (int i = 0; i < MAX_DOMS; i++)
        cons[i].master = -1;
    xs = xs_open(0);
    if (!xs || !xs_watch(xs, "/local/domain", "standin")) {
        perror("xenconsoled-standin: xenstore");
        return 1;
    }
    f = fopen(argv[1], "w");
    if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0) {
        perror(argv[1]);
        return 1;
    }
    for (;;) {
        unsigned int num;
        char **ev = xs_read_watch(xs, &num);

        if (!ev) {
            if (errno == EINTR)
                continue;
            return 1; /* xenstored went away */
        }
        free(ev);
        scan(xs);
    }
}
