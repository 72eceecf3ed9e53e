/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 23 (and 19: no dispatch over 1 ms in a large daemon): the keeper's
 * process is cloned in the caller's address space (libdm/spawn-vm.c), so
 * the clone does not copy the caller's page tables.
 *
 * Measured without a clock: a fork-style clone write-protects every page
 * of the caller, so writing 64 MiB of the caller's memory after a start
 * takes one minor fault per page (16,384); after a CLONE_VM clone it takes
 * none. The same start with LIBDM_SPAWN_VM=0 (the fork-style clone, as
 * before) must show the faults, or the measurement proves nothing.
 *
 * Then the child's own paths, against the real libdm-keeper and real
 * qemu-system-x86_64: a keeper that cannot be exec'd reports -ENOENT
 * through the child's raw error path; after a start and a stop no fd,
 * child or mapping of a child's stack is left.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <libdm/libdm.h>
#include "testutil.h"

#define BIG (64u << 20)

static char *dir;

static libdm_ctx *new_ctx(void)
{
    libdm_ctx *ctx;

    if (libdm_ctx_new(NULL, &ctx) < 0 || libdm_ctx_set_store(ctx, dir) < 0)
        exit(99);
    return ctx;
}

static libdm_dm_config *config(const char *tag)
{
    static int seq;
    libdm_dm_config *cfg;
    char name[64];

    snprintf(name, sizeof(name), "sv%d-%s-%d", (int)getpid(), tag, seq++);
    if (libdm_dm_config_new(&cfg) < 0 || libdm_dm_config_set_name(cfg, name) < 0 ||
        libdm_dm_config_set_qemu_path(cfg, tu_qemu()) < 0 ||
        libdm_dm_config_set_timeout_ms(cfg, 30000) < 0)
        exit(99);
    return cfg;
}

static void on_status(libdm_dm *dm, int status, void *user)
{
    (void)dm;
    *(int *)user = status;
}

/* A start, waited for with the handle kept (its last_error). */
static int start_wait(libdm_ctx *ctx, const libdm_dm_config *cfg, libdm_dm **ret)
{
    int status = 1, r = libdm_dm_start_async(ctx, cfg, on_status, &status, ret);
    uint64_t end = tu_now_ms() + 30000;

    if (r < 0)
        return r;
    while (status == 1 && tu_now_ms() < end)
        libdm_ctx_run_once(ctx, 10);
    return status;
}

static long minflt(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* Minor faults taken writing @big once a DM was started and stopped. */
static long faults_after_start(unsigned char *big, const char *tag)
{
    libdm_ctx *ctx = new_ctx();
    libdm_dm_config *cfg = config(tag);
    libdm_dm *dm = NULL;
    long before;
    int r;

    memset(big, 1, BIG); /* every page present and written */
    r = libdm_dm_start(ctx, cfg, &dm);
    libdm_dm_config_free(cfg);
    if (r < 0) {
        printf("# start: %s\n", strerror(-r));
        exit(99);
    }
    before = minflt();
    memset(big, 2, BIG);
    before = minflt() - before;
    (void)libdm_dm_stop(dm, 0, 10000);
    libdm_dm_release(dm);
    tu_settle_children(ctx, 0);
    libdm_ctx_free(ctx);
    return before;
}

static int count_stack_maps(void)
{
    /* A child's stack mapping: 68 KiB or more, anonymous, rw-p. Counted as
     * every anonymous rw-p mapping, before and after. */
    FILE *f = fopen("/proc/self/maps", "re");
    char line[512];
    int n_maps = 0;

    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        n_maps += strstr(line, " rw-p 00000000 00:00 0 ") != NULL;
    fclose(f);
    return n_maps;
}

static void check_faults(void)
{
    unsigned char *big = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                              -1, 0);
    char detail[200];
    long vm, fork_style;

    if (big == MAP_FAILED)
        exit(99);
    (void)madvise(big, BIG, MADV_NOHUGEPAGE); /* one fault per 4 KiB page */
    setenv("LIBDM_SPAWN_VM", "0", 1);
    fork_style = faults_after_start(big, "fork");
    unsetenv("LIBDM_SPAWN_VM");
    vm = faults_after_start(big, "vm");
    snprintf(detail, sizeof(detail), "fork-style clone: %ld faults; default: %ld faults", fork_style,
             vm);
    printf("# %s\n", detail);
    tu_ok(fork_style >= (long)(BIG / 4096) / 2,
       "the measurement works: a fork-style clone write-protects the caller's pages", detail);
    tu_ok(vm < (long)(BIG / 4096) / 16, "a start copies none of the caller's page tables", detail);
    munmap(big, BIG);
}

static void check_paths(void)
{
    int fds = tu_fd_count(), maps = count_stack_maps();
    libdm_ctx *ctx;
    libdm_dm_config *cfg;
    libdm_dm *dm = NULL;
    char detail[300];
    int r;

    /* The keeper cannot be exec'd: the child's own error path. */
    setenv("LIBDM_KEEPER", "/nonexistent/libdm-keeper", 1);
    ctx = new_ctx();
    cfg = config("nokeeper");
    r = start_wait(ctx, cfg, &dm);
    snprintf(detail, sizeof(detail), "start: %d (%s); last_error: %s", r, strerror(-r),
             dm && libdm_dm_last_error(dm) ? libdm_dm_last_error(dm) : "(none)");
    tu_ok(r == -ENOENT, "a keeper that cannot be exec'd: -ENOENT", detail);
    tu_ok(dm && libdm_dm_last_error(dm) && strstr(libdm_dm_last_error(dm), "libdm-keeper"),
       "...and the error names libdm-keeper", detail);
    libdm_dm_release(dm);
    libdm_dm_config_free(cfg);
    tu_settle_children(ctx, 0);
    libdm_ctx_free(ctx);
    unsetenv("LIBDM_KEEPER");
    setenv("LIBDM_KEEPER", getenv("TEST_SAVED_KEEPER"), 1);

    /* A start and a stop: the child's stack is freed at its exec. */
    ctx = new_ctx();
    cfg = config("pair");
    dm = NULL;
    r = start_wait(ctx, cfg, &dm);
    libdm_dm_config_free(cfg);
    tu_ok(r == 0, "a start", NULL);
    tu_ok(libdm_dm_stop(dm, 0, 10000) == 0, "its stop", NULL);
    libdm_dm_release(dm);
    tu_settle_children(ctx, 0);
    libdm_ctx_free(ctx);

    snprintf(detail, sizeof(detail), "fds %d -> %d, anonymous rw maps %d -> %d, children %d",
             fds, tu_fd_count(), maps, count_stack_maps(), tu_child_count());
    tu_ok(tu_fd_count() == fds, "no fd left", detail);
    tu_ok(tu_child_count() == 0, "no child left", detail);
    tu_ok(count_stack_maps() <= maps, "no child's stack left mapped", detail);
}

int main(void)
{
    int r = tu_require_dm_env();

    if (r)
        return r;
    setenv("TEST_SAVED_KEEPER", getenv("LIBDM_KEEPER"), 1);
    setenv("LIBDM_KEEPER_HELPER", "0", 1); /* the keepers this process clones itself */
    dir = tu_mkdtemp("spawnvm");
    if (!getenv("TEST_SPAWN_VM_PATHS_ONLY"))
        check_faults();
    check_paths();
    tu_rmtree(dir);
    return tu_tap_done();
}
