/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The "dir" store backend in a mkdtemp root: put/get/set_state/list/del,
 * refusal of symlinks and foreign owners, file modes, no fd leaks. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "store.h"
#include "record-asserts.h"

#define NOBODY 65534

struct fixture {
    char tmp[64];   /* mkdtemp: holds the root and helper files */
    char root[96];  /* <tmp>/root, the store root */
    int fds;        /* open fds before the test */
};

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    strcpy(f->tmp, "/tmp/test-store-dir.XXXXXX");
    assert_non_null(mkdtemp(f->tmp));
    snprintf(f->root, sizeof(f->root), "%s/root", f->tmp);
    f->fds = count_fds();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int fds = count_fds();

    tu_rm_rf(f->tmp);
    if (fds != f->fds) {
        fprintf(stderr, "fd leak: %d open before the test, %d after\n", f->fds, fds);
        free(f);
        return -1;
    }
    free(f);
    return 0;
}

static void make_record(libdm__record *rec, const char *name, const char *root)
{
    char buf[256];

    libdm__record_init(rec);
    rec->name = strdup(name);
    rec->domid = 3;
    rec->pid = 100;
    rec->pid_start = 5555;
    rec->keeper_pid = 99;
    rec->keeper_start = 5554;
    snprintf(buf, sizeof(buf), "%s/%s/qmp\nsock\\et", root, name);
    rec->qmp_socket = strdup(buf);
    snprintf(buf, sizeof(buf), "%s/%s", root, name);
    rec->dir = strdup(buf);
    rec->profile = strdup("plain");
    rec->state = strdup("starting");
    rec->machine = strdup("pc");
    rec->memory_mb = 512;
    rec->confinement = strdup("uid 65534 gid 65534, chroot /run/libdm/x/root, seccomp keeper-filter");
    rec->created_ms = 1700000000000;
}

static void assert_mode(const char *path, mode_t type, mode_t perm)
{
    struct stat st;

    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(st.st_mode & S_IFMT, type);
    assert_int_equal(st.st_mode & 07777, perm);
    assert_int_equal(st.st_uid, geteuid());
}

static void test_put_get_set_list_del(void **state)
{
    struct fixture *f = *state;
    libdm__store *s;
    libdm__record rec, got;
    char path[PATH_MAX];
    char **names;
    size_t n;
    mode_t old = umask(0);

    assert_int_equal(libdm__store_open(f->root, NULL, &s), 0);
    umask(old);
    assert_string_equal(libdm__store_kind(s), "dir");
    assert_string_equal(libdm__store_run_root(s), f->root);
    assert_mode(f->root, S_IFDIR, 0700); /* created 0700 whatever the umask */

    /* Empty store. */
    assert_int_equal(libdm__store_list(s, &names, &n), 0);
    assert_int_equal(n, 0);
    assert_null(names[0]);
    libdm__store_names_free(names);
    assert_int_equal(libdm__store_get(s, "vm1", &got), -ENOENT);
    assert_int_equal(libdm__store_set_state(s, "vm1", "running", -1), -ENOENT);
    assert_int_equal(libdm__store_del(s, "vm1"), -ENOENT);

    make_record(&rec, "vm1", f->root);
    old = umask(0);
    assert_int_equal(libdm__store_put(s, &rec), 0);
    umask(old);
    snprintf(path, sizeof(path), "%s/vm1", f->root);
    assert_mode(path, S_IFDIR, 0700);
    snprintf(path, sizeof(path), "%s/vm1/record", f->root);
    assert_mode(path, S_IFREG, 0600);

    memset(&got, 0xa5, sizeof(got));
    assert_int_equal(libdm__store_get(s, "vm1", &got), 0);
    tu_assert_records_equal(&rec, &got);
    libdm__record_clear(&got);

    /* set_state: state and exit status only; -1 leaves the status. */
    assert_int_equal(libdm__store_set_state(s, "vm1", "running", -1), 0);
    assert_int_equal(libdm__store_get(s, "vm1", &got), 0);
    assert_string_equal(got.state, "running");
    assert_int_equal(got.exit_status, -1);
    assert_int_equal(got.pid, 100);
    libdm__record_clear(&got);
    assert_int_equal(libdm__store_set_state(s, "vm1", "stopped", 256), 0);
    assert_int_equal(libdm__store_set_state(s, "vm1", NULL, -1), 0);
    assert_int_equal(libdm__store_get(s, "vm1", &got), 0);
    assert_string_equal(got.state, "stopped");
    assert_int_equal(got.exit_status, 256);
    libdm__record_clear(&got);
    assert_mode(path, S_IFREG, 0600);
    assert_int_equal(libdm__store_set_state(s, "vm1", "Bad State", -1), -EINVAL);
    assert_int_equal(libdm__store_set_state(s, "vm1", "x", 70000), -EINVAL);

    /* Replace. */
    free(rec.state);
    rec.state = strdup("paused");
    assert_int_equal(libdm__store_put(s, &rec), 0);
    assert_int_equal(libdm__store_get(s, "vm1", &got), 0);
    tu_assert_records_equal(&rec, &got);
    libdm__record_clear(&got);

    /* list: only subdirectories holding a record. */
    libdm__record_clear(&rec);
    make_record(&rec, "a-vm", f->root);
    assert_int_equal(libdm__store_put(s, &rec), 0);
    snprintf(path, sizeof(path), "%s/empty", f->root);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/plainfile", f->root);
    assert_int_equal(close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)), 0);
    snprintf(path, sizeof(path), "%s/.hidden", f->root);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/.hidden/record", f->root);
    assert_int_equal(close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)), 0);
    snprintf(path, sizeof(path), "%s/linked", f->root);
    assert_int_equal(symlink("vm1", path), 0);
    assert_int_equal(libdm__store_list(s, &names, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "a-vm");
    assert_string_equal(names[1], "vm1");
    assert_null(names[2]);
    libdm__store_names_free(names);

    /* del removes the record and the lock, not the directory's other files. */
    snprintf(path, sizeof(path), "%s/vm1/qmp.sock", f->root);
    assert_int_equal(close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)), 0);
    snprintf(path, sizeof(path), "%s/vm1/.record.tmpABCDEF", f->root); /* a dead writer's */
    assert_int_equal(close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)), 0);
    assert_int_equal(libdm__store_del(s, "vm1"), 0);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/vm1/record", f->root);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/vm1/.lock", f->root);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/vm1/qmp.sock", f->root);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof(path), "%s/vm1", f->root);
    assert_int_equal(rmdir(path), 0); /* nothing else was left behind */
    assert_int_equal(libdm__store_get(s, "vm1", &got), -ENOENT);
    assert_int_equal(libdm__store_del(s, "vm1"), -ENOENT);
    assert_int_equal(libdm__store_list(s, &names, &n), 0);
    assert_int_equal(n, 1);
    libdm__store_names_free(names);

    /* set_state on a directory without record leaves no lock file. */
    snprintf(path, sizeof(path), "%s/empty", f->root);
    assert_int_equal(libdm__store_set_state(s, "empty", "x", -1), -ENOENT);
    assert_int_equal(libdm__store_del(s, "empty"), -ENOENT);
    assert_int_equal(rmdir(path), 0);

    /* Invalid arguments. */
    assert_int_equal(libdm__store_get(s, "../x", &got), -EINVAL);
    assert_int_equal(libdm__store_get(s, ".lock", &got), -EINVAL);
    assert_int_equal(libdm__store_del(s, ""), -EINVAL);
    free(rec.name);
    rec.name = strdup("-bad");
    assert_int_equal(libdm__store_put(s, &rec), -EINVAL);
    libdm__record_clear(&rec);
    libdm__store_close(s);
    libdm__store_close(NULL);
}

static void test_reject_bad_records(void **state)
{
    struct fixture *f = *state;
    libdm__store *s;
    libdm__record got;
    char path[PATH_MAX];
    int fd;

    assert_int_equal(libdm__store_open(f->root, NULL, &s), 0);
    snprintf(path, sizeof(path), "%s/vm", f->root);
    assert_int_equal(mkdir(path, 0700), 0);

    /* Garbage. */
    snprintf(path, sizeof(path), "%s/vm/record", f->root);
    fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "name=vm\npid=-1\n", 15), 15);
    close(fd);
    memset(&got, 0xa5, sizeof(got));
    assert_int_equal(libdm__store_get(s, "vm", &got), -EINVAL);
    /* Names another DM. */
    fd = open(path, O_TRUNC | O_WRONLY | O_CLOEXEC);
    assert_int_equal(write(fd, "name=other\n", 11), 11);
    close(fd);
    assert_int_equal(libdm__store_get(s, "vm", &got), -EINVAL);
    /* Larger than 16 KiB. */
    fd = open(path, O_TRUNC | O_WRONLY | O_CLOEXEC);
    assert_int_equal(write(fd, "name=vm\n", 8), 8);
    assert_int_equal(ftruncate(fd, 16385), 0);
    close(fd);
    assert_int_equal(libdm__store_get(s, "vm", &got), -E2BIG);
    /* A FIFO does not block get. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(libdm__store_get(s, "vm", &got), -EPERM);
    assert_int_equal(unlink(path), 0);
    /* A symlinked record file is refused. */
    snprintf(path, sizeof(path), "%s/target", f->tmp);
    fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_int_equal(write(fd, "name=vm\n", 8), 8);
    close(fd);
    snprintf(path, sizeof(path), "%s/vm/record", f->root);
    assert_int_equal(symlink("../../target", path), 0);
    assert_int_equal(libdm__store_get(s, "vm", &got), -ELOOP);
    assert_int_equal(libdm__store_set_state(s, "vm", "x", -1), -ELOOP);
    /* Writers lock the directory itself: a lock file planted where older
     * versions kept theirs is neither followed nor needed. */
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof(path), "%s/vm/.lock", f->root);
    unlink(path);
    assert_int_equal(symlink("../../target", path), 0);
    {
        libdm__record rec;
        struct stat st;

        make_record(&rec, "vm", f->root);
        assert_int_equal(libdm__store_put(s, &rec), 0);
        libdm__record_clear(&rec);
        snprintf(path, sizeof(path), "%s/target", f->tmp);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, 8);
    }
    assert_int_equal(libdm__store_del(s, "vm"), 0);
    snprintf(path, sizeof(path), "%s/vm/.lock", f->root);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof(path), "%s/target", f->tmp);
    assert_int_equal(truncate(path, 0) == 0 ? 0 : -1, 0);
    libdm__store_close(s);
}

/* A reader holding the record keeps reading that whole record whatever
 * writers do meanwhile: a record file is replaced, never rewritten (an
 * earlier attempt to reuse the replaced inode for the next write let a slow
 * reader see a half-written record). */
static void test_reader_keeps_a_whole_record(void **state)
{
    struct fixture *f = *state;
    libdm__store *s;
    libdm__record rec;
    char path[PATH_MAX], before[1024], after[1024];
    ssize_t n1, n2;
    int fd;

    assert_int_equal(libdm__store_open(f->root, NULL, &s), 0);
    make_record(&rec, "vm", f->root);
    assert_int_equal(libdm__store_put(s, &rec), 0);
    snprintf(path, sizeof(path), "%s/vm/record", f->root);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    n1 = pread(fd, before, sizeof(before), 0);
    assert_true(n1 > 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(libdm__store_set_state(s, "vm", i % 2 ? "running" : "paused", i), 0);
    n2 = pread(fd, after, sizeof(after), 0);
    assert_int_equal(n2, n1);
    assert_memory_equal(before, after, (size_t)n1);
    close(fd);
    /* Each old record was unlinked once replaced: no temporary is left. */
    snprintf(path, sizeof(path), "%s/vm", f->root);
    {
        DIR *d = opendir(path);
        struct dirent *e;

        assert_non_null(d);
        while ((e = readdir(d)))
            assert_true(strncmp(e->d_name, ".record.tmp", 11) != 0);
        closedir(d);
    }
    libdm__record_clear(&rec);
    assert_int_equal(libdm__store_del(s, "vm"), 0);
    libdm__store_close(s);
}

static void test_symlinks_refused(void **state)
{
    struct fixture *f = *state;
    libdm__store *s = NULL;
    libdm__record rec, got;
    char real[256], link[256], path[PATH_MAX];

    /* A symlinked root. */
    snprintf(real, sizeof(real), "%s/real", f->tmp);
    assert_int_equal(mkdir(real, 0700), 0);
    snprintf(link, sizeof(link), "%s/link", f->tmp);
    assert_int_equal(symlink(real, link), 0);
    assert_int_equal(libdm__store_open(link, NULL, &s), -ELOOP);
    assert_null(s);
    assert_int_equal(libdm__secure_dir(link, 0), -ELOOP);
    assert_int_equal(libdm__secure_dir(link, 1), -ELOOP);
    assert_int_equal(libdm__secure_dir(real, 0), 0);

    /* A non-directory root. */
    snprintf(path, sizeof(path), "%s/file", f->tmp);
    assert_int_equal(close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)), 0);
    assert_int_equal(libdm__store_open(path, NULL, &s), -ENOTDIR);
    assert_int_equal(libdm__secure_dir(path, 1), -ENOTDIR);
    /* Missing, not created. */
    snprintf(path, sizeof(path), "%s/missing", f->tmp);
    assert_int_equal(libdm__secure_dir(path, 0), -ENOENT);
    /* Writable by others. */
    assert_int_equal(chmod(real, 0777), 0);
    assert_int_equal(libdm__secure_dir(real, 0), -EPERM);
    assert_int_equal(chmod(real, 0700), 0);
    /* Relative / unknown specs. */
    assert_int_equal(libdm__store_open("relative/dir", NULL, &s), -EINVAL);

    /* A symlinked record directory. */
    assert_int_equal(libdm__store_open(f->root, NULL, &s), 0);
    snprintf(path, sizeof(path), "%s/vm", f->root);
    assert_int_equal(symlink(real, path), 0);
    make_record(&rec, "vm", f->root);
    assert_int_equal(libdm__store_put(s, &rec), -ELOOP);
    assert_int_equal(libdm__store_get(s, "vm", &got), -ELOOP);
    assert_int_equal(libdm__store_set_state(s, "vm", "x", -1), -ELOOP);
    assert_int_equal(libdm__store_del(s, "vm"), -ELOOP);
    /* Nothing was written through the link. */
    snprintf(path, sizeof(path), "%s/record", real);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/.lock", real);
    assert_int_equal(access(path, F_OK), -1);

    /* A record "directory" that is a file. */
    snprintf(path, sizeof(path), "%s/vm", f->root);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)), 0);
    assert_int_equal(libdm__store_put(s, &rec), -ENOTDIR);
    libdm__record_clear(&rec);
    libdm__store_close(s);
}

static void test_foreign_owner(void **state)
{
    struct fixture *f = *state;
    libdm__store *s = NULL;
    libdm__record rec, got;
    char path[PATH_MAX];

    if (geteuid() != 0)
        skip(); /* only root can chown to another user */

    /* A root owned by nobody. */
    assert_int_equal(mkdir(f->root, 0700), 0);
    assert_int_equal(chown(f->root, NOBODY, NOBODY), 0);
    assert_int_equal(libdm__store_open(f->root, NULL, &s), -EPERM);
    assert_null(s);
    assert_int_equal(libdm__secure_dir(f->root, 1), -EPERM);
    assert_int_equal(chown(f->root, 0, 0), 0);

    /* A record directory owned by nobody. */
    assert_int_equal(libdm__store_open(f->root, NULL, &s), 0);
    snprintf(path, sizeof(path), "%s/vm", f->root);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(chown(path, NOBODY, NOBODY), 0);
    make_record(&rec, "vm", f->root);
    assert_int_equal(libdm__store_put(s, &rec), -EPERM);
    assert_int_equal(libdm__store_get(s, "vm", &got), -EPERM);
    assert_int_equal(libdm__store_del(s, "vm"), -EPERM);
    /* A record file owned by nobody in our directory. */
    assert_int_equal(chown(path, 0, 0), 0);
    assert_int_equal(libdm__store_put(s, &rec), 0);
    snprintf(path, sizeof(path), "%s/vm/record", f->root);
    assert_int_equal(chown(path, NOBODY, NOBODY), 0);
    assert_int_equal(libdm__store_get(s, "vm", &got), -EPERM);
    libdm__record_clear(&rec);
    libdm__store_close(s);
}

/* Default roots, checked in a child that drops to nobody (so /run/libdm of
 * this machine is never touched). */
static void test_default_root(void **state)
{
    struct fixture *f = *state;
    char xdg[256];
    pid_t pid;
    int status;

    if (geteuid() != 0)
        skip();
    assert_int_equal(chmod(f->tmp, 0711), 0); /* nobody may traverse it */
    snprintf(xdg, sizeof(xdg), "%s/xdg", f->tmp);
    assert_int_equal(mkdir(xdg, 0700), 0);
    assert_int_equal(chown(xdg, NOBODY, NOBODY), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        libdm__store *s;
        char want[PATH_MAX];
        struct stat st;
        int code = 0;

        if (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
            setresuid(NOBODY, NOBODY, NOBODY) < 0)
            _exit(10);
        unsetenv("XDG_RUNTIME_DIR");
        if (libdm__store_open("dir", NULL, &s) != -ENOENT)
            code = 11;
        setenv("XDG_RUNTIME_DIR", "relative", 1);
        if (!code && libdm__store_open(NULL, NULL, &s) != -ENOENT)
            code = 12;
        setenv("XDG_RUNTIME_DIR", xdg, 1);
        if (!code && libdm__store_open("dir", NULL, &s) != 0)
            code = 13;
        snprintf(want, sizeof(want), "%s/libdm", xdg);
        if (!code && (strcmp(libdm__store_run_root(s), want) != 0 ||
                      strcmp(libdm__store_kind(s), "dir") != 0))
            code = 14;
        if (!code && (stat(want, &st) < 0 || (st.st_mode & 07777) != 0700 ||
                      st.st_uid != NOBODY))
            code = 15;
        if (!code)
            libdm__store_close(s);
        /* auto falls back to dir when no xenstored answers. */
        if (!code && getenv("XENSTORED_PATH") == NULL) {
            setenv("XENSTORED_PATH", "/nonexistent/socket", 1);
            if (libdm__store_open("auto", NULL, &s) != 0)
                code = 16;
            else if (strcmp(libdm__store_kind(s), "dir") != 0)
                code = 17;
            else
                libdm__store_close(s);
        }
        _exit(code);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Writers from several processes: every update lands in a parseable record. */
static void test_concurrent_writers(void **state)
{
    struct fixture *f = *state;
    libdm__store *s;
    libdm__record rec, got;
    pid_t kids[4];
    int status;

    assert_int_equal(libdm__store_open(f->root, NULL, &s), 0);
    make_record(&rec, "vm", f->root);
    assert_int_equal(libdm__store_put(s, &rec), 0);
    for (int k = 0; k < 4; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            int bad = 0;

            for (int i = 0; i < 100 && !bad; i++) {
                if (k == 3) {
                    bad = libdm__store_put(s, &rec) != 0;
                } else {
                    char st[16];

                    snprintf(st, sizeof(st), "s%d", k);
                    bad = libdm__store_set_state(s, "vm", st, k * 1000 + i) != 0;
                }
                if (!bad) {
                    libdm__record r2;

                    bad = libdm__store_get(s, "vm", &r2) != 0;
                    if (!bad)
                        libdm__record_clear(&r2);
                }
            }
            _exit(bad);
        }
    }
    for (int k = 0; k < 4; k++) {
        assert_int_equal(waitpid(kids[k], &status, 0), kids[k]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_int_equal(libdm__store_get(s, "vm", &got), 0);
    assert_int_equal(got.pid, 100);
    libdm__record_clear(&got);
    assert_int_equal(libdm__store_del(s, "vm"), 0);
    libdm__record_clear(&rec);
    libdm__store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_set_list_del, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_bad_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinks_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_keeps_a_whole_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
