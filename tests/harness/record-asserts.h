/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared by the record and store tests (they link no libtestutil): the
 * cmocka assertion that two records are equal field by field (every field
 * of libdm__record, so a new field cannot be forgotten by one of the
 * tests), and rm -r of a test's directory. Include after <cmocka.h> and
 * store.h. */
#ifndef LIBDM_RECORD_ASSERTS_H
#define LIBDM_RECORD_ASSERTS_H

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* rm -r of @path, no symlink followed; directories made writable first (a
 * store's directories may be read-only). */
static inline void tu_rm_rf(const char *path)
{
    struct stat st;

    if (lstat(path, &st) < 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;

        chmod(path, 0700);
        if (d) {
            while ((e = readdir(d))) {
                char sub[PATH_MAX];

                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                    continue;
                if (snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) <
                    (int)sizeof(sub))
                    tu_rm_rf(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static inline void tu_assert_str_eq_or_null(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static inline void tu_assert_records_equal(const libdm__record *a, const libdm__record *b)
{
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->domid, b->domid);
    assert_int_equal(a->pid, b->pid);
    assert_true(a->pid_start == b->pid_start);
    assert_int_equal(a->keeper_pid, b->keeper_pid);
    assert_true(a->keeper_start == b->keeper_start);
    tu_assert_str_eq_or_null(a->qmp_socket, b->qmp_socket);
    tu_assert_str_eq_or_null(a->dir, b->dir);
    tu_assert_str_eq_or_null(a->profile, b->profile);
    tu_assert_str_eq_or_null(a->state, b->state);
    assert_true(a->created_ms == b->created_ms);
    assert_int_equal(a->exit_status, b->exit_status);
    tu_assert_str_eq_or_null(a->machine, b->machine);
    assert_true(a->memory_mb == b->memory_mb);
    tu_assert_str_eq_or_null(a->confinement, b->confinement);
}

#endif
