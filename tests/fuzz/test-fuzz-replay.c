/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * make check side of the fuzz targets: every file of the seed corpora
 * (tests/fuzz/corpus/<target>/) goes through the same entry points, compiled
 * with gcc, so the seeds are regression tests under gcc and valgrind too.
 * Arguments (optional): files to replay through every target instead.
 */
#include "internal.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>

#define FUZZ_ENTRY fuzz_qmp_decoder_one
#include "fuzz-qmp-decoder.c"
#undef FUZZ_ENTRY
#define FUZZ_ENTRY fuzz_json_one
#include "fuzz-json.c"
#undef FUZZ_ENTRY
#define FUZZ_ENTRY fuzz_record_one
#include "fuzz-record.c"
#undef FUZZ_ENTRY
#define FUZZ_ENTRY fuzz_qemu_opt_one
#include "fuzz-qemu-opt.c"
#undef FUZZ_ENTRY
#define FUZZ_ENTRY fuzz_qmp_transcript_one
#include "fuzz-qmp-transcript.c"
#undef FUZZ_ENTRY

static const struct {
    const char *name;
    int (*fn)(const uint8_t *, size_t);
} targets[] = {
    { "fuzz-qmp-decoder", fuzz_qmp_decoder_one },
    { "fuzz-json", fuzz_json_one },
    { "fuzz-record", fuzz_record_one },
    { "fuzz-qemu-opt", fuzz_qemu_opt_one },
    { "fuzz-qmp-transcript", fuzz_qmp_transcript_one },
};

static int replay_file(const char *path, int (*fn)(const uint8_t *, size_t))
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    do {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap);
            if (!buf)
                abort();
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    fclose(f);
    fn(buf, len);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    const char *top = getenv("top_srcdir");
    unsigned total = 0;

    if (!top || !*top)
        top = LIBDM_TEST_TOP_SRCDIR;
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            for (size_t t = 0; t < LIBDM__ARRAY_SIZE(targets); t++)
                if (replay_file(argv[i], targets[t].fn) < 0)
                    return 1;
        return 0;
    }
    for (size_t t = 0; t < LIBDM__ARRAY_SIZE(targets); t++) {
        char dir[4096];
        struct dirent *de;
        unsigned count = 0;
        DIR *d;

        snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/%s", top, targets[t].name);
        d = opendir(dir);
        if (!d) {
            fprintf(stderr, "%s: no seed corpus at %s\n", targets[t].name, dir);
            return 1;
        }
        while ((de = readdir(d))) {
            char path[8192];

            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            if (replay_file(path, targets[t].fn) < 0) {
                closedir(d);
                return 1;
            }
            count++;
        }
        closedir(d);
        if (count == 0) {
            fprintf(stderr, "%s: empty seed corpus\n", targets[t].name);
            return 1;
        }
        printf("%s: %u seeds replayed\n", targets[t].name, count);
        total += count;
    }
    printf("fuzz replay: %u seeds, 0 crashes\n", total);
    return 0;
}
