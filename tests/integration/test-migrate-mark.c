/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A migration's mark on a host (NAME.migration beside the records) names
 * the DM it speaks of, and a destination mark whose DM is gone no longer
 * refuses a recovery there (issue 22, stale destination marks).
 *
 * When a receiver is SIGKILLed after "prepared", autokill takes its
 * destination but the mark it wrote stays. A later DM of that name on the
 * host, recovered there, was refused as "the wrong side" on that old word.
 * Each test writes the mark as such a receiver leaves it (the identity of
 * a QEMU that ran and is gone, or of the one that runs), then recovers a
 * real running DM of that name against a real receiver on a second
 * context ("the other host", with nothing of that name: it answers
 * "absent"), over two socketpairs.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <libdm/libdm.h>

#include "internal.h"
#include "qemu-fixture.h"
#include "testutil.h"

typedef struct two_hosts {
    qf_store here, there;   /* the host recovering, the other host */
    libdm_dm *dm;           /* the DM of the name, running here */
} two_hosts;

static int setup(void **state)
{
    two_hosts *h;

    h = calloc(1, sizeof(*h));
    assert_non_null(h);
    qf_open(&h->here, "mark-here");
    qf_open(&h->there, "mark-there");
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    two_hosts *h = *state;

    if (h->dm) {
        qf_done d = { 0 };

        if (libdm_dm_stop_async(h->dm, 0, 10000, qf_on_done, &d) == 0)
            qf_run_until_count(h->here.ctx, &d.n, 1, 15000);
        libdm_dm_release(h->dm);
    }
    qf_close(&h->there);
    qf_close(&h->here);
    free(h);
    return 0;
}

static libdm_dm *start_dm(libdm_ctx *ctx, const char *name)
{
    libdm_dm_config *cfg = qf_config(name, 10000);
    libdm_dm *dm = NULL;
    qf_done d = { 0 };

    assert_int_equal(libdm_dm_start_async(ctx, cfg, qf_on_done, &d, &dm), 0);
    qf_run_until_count(ctx, &d.n, 1, 15000);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.status, 0);
    libdm_dm_config_free(cfg);
    return dm;
}

/* The mark as a receiver writes it at "prepared" (migrate-proto.c's
 * format), for the QEMU @pid started at @start. */
static void write_dest_mark(libdm_ctx *ctx, const char *name, int pid, uint64_t start)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s.migration", libdm_ctx_get_run_dir(ctx), name);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "role=destination\nid=0123456789abcdef0123456789abcdef\nfenced=0\n"
               "pid=%d\nstart=%" PRIu64 "\n", pid, start);
    assert_int_equal(fclose(f), 0);
}

/* The role a mark says ("" without a mark). */
static const char *mark_role(libdm_ctx *ctx, const char *name)
{
    static char role[32];
    char path[512];
    FILE *f;

    role[0] = '\0';
    snprintf(path, sizeof(path), "%s/%s.migration", libdm_ctx_get_run_dir(ctx), name);
    f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "role=%31[a-z]", role) != 1)
            role[0] = '\0';
        fclose(f);
    }
    return role;
}

typedef struct mig_done {
    int done, status;
} mig_done;

static void on_mig_done(libdm_migration *m, int status, void *user)
{
    mig_done *d = user;

    (void)m;
    d->done++;
    d->status = status;
}

/* Recovers @name here against a receiver there; returns what it did. */
static libdm_migrate_recovery recover(two_hosts *h, const char *name)
{
    libdm_migration *rec = NULL, *rcv = NULL;
    libdm_migrate_recovery what;
    mig_done rd = { 0 }, vd = { 0 };
    int a[2], b[2];
    uint64_t deadline;

    assert_int_equal(libdm_migration_new_recover(h->here.ctx, name, &rec), 0);
    assert_int_equal(libdm_migration_set_timeout_ms(rec, 10000), 0);
    assert_int_equal(libdm_migration_new_receive(h->there.ctx, &rcv), 0);
    assert_int_equal(libdm_migration_set_timeout_ms(rcv, 10000), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b), 0);
    /* a: here -> there; b: there -> here */
    assert_int_equal(libdm_migration_start(rec, b[0], a[0], on_mig_done, &rd, NULL), 0);
    assert_int_equal(libdm_migration_start(rcv, a[1], b[1], on_mig_done, &vd, NULL), 0);
    deadline = tu_now_ms() + 20000;
    while (!rd.done && tu_now_ms() < deadline) {
        (void)libdm_ctx_run_once(h->here.ctx, 5);
        (void)libdm_ctx_run_once(h->there.ctx, 5);
    }
    assert_int_equal(rd.done, 1);
    what = libdm_migration_get_recovery(rec);
    print_message("recovery: %d, status %d, %s\n", (int)what, rd.status,
                  libdm_migration_get_detail(rec) ? libdm_migration_get_detail(rec) : "-");
    rec = libdm_migration_unref(rec);
    rcv = libdm_migration_unref(rcv);
    deadline = tu_now_ms() + 5000;
    while ((!libdm_ctx_is_idle(h->there.ctx) || !libdm_ctx_is_idle(h->here.ctx)) &&
           tu_now_ms() < deadline) {
        (void)libdm_ctx_run_once(h->here.ctx, 5);
        (void)libdm_ctx_run_once(h->there.ctx, 5);
    }
    return what;
}

/* The receiver that wrote the mark was killed and autokill took its
 * destination (a QEMU that ran and is gone); later a DM of the name is
 * here, paused, and the other host has nothing: the recovery resumes it
 * (and fences the other side), where the stale mark refused it. */
static void test_stale_destination_mark(void **state)
{
    two_hosts *h = *state;
    libdm_dm *old = start_dm(h->here.ctx, "mk");
    int pid = libdm_dm_get_pid(old);
    uint64_t start = libdm__proc_start_time(pid);
    qf_done d = { 0 };

    assert_true(start > 0);
    assert_int_equal(libdm_dm_stop_async(old, 0, 10000, qf_on_done, &d), 0);
    qf_run_until_count(h->here.ctx, &d.n, 1, 15000);
    libdm_dm_release(old);
    write_dest_mark(h->here.ctx, "mk", pid, start);

    /* Released: the recovery attaches as another process would. */
    libdm_dm_release(start_dm(h->here.ctx, "mk"));
    assert_int_equal(recover(h, "mk"), LIBDM_MIGRATE_RECOVERY_SOURCE_RUNS);
    assert_string_equal(mark_role(h->here.ctx, "mk"), "source");   /* the fence */
    assert_int_equal(libdm_dm_attach_timeout(h->here.ctx, "mk", 5000, &h->dm), 0);
    assert_string_equal(libdm_dm_state_to_string(libdm_dm_get_state(h->dm)), "running");
}

/* The mark names the DM that runs here: this host holds the destination,
 * and the recovery is refused from here, the mark kept. */
static void test_live_destination_mark(void **state)
{
    two_hosts *h = *state;

    libdm_dm *dm = start_dm(h->here.ctx, "mk");

    write_dest_mark(h->here.ctx, "mk", libdm_dm_get_pid(dm),
                    libdm__proc_start_time(libdm_dm_get_pid(dm)));
    libdm_dm_release(dm);
    assert_int_equal(recover(h, "mk"), LIBDM_MIGRATE_RECOVERY_WRONG_SIDE);
    assert_string_equal(mark_role(h->here.ctx, "mk"), "destination");
    assert_int_equal(libdm_dm_attach_timeout(h->here.ctx, "mk", 5000, &h->dm), 0);
    /* Nothing touched: still paused as started. */
    assert_string_equal(libdm_dm_state_to_string(libdm_dm_get_state(h->dm)), "paused");
}

int main(void)
{
    int r = tu_require_dm_env();

    if (r)
        return r;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stale_destination_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_destination_mark, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
