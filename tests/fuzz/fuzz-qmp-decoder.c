/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: the QMP stream decoder (libdm/qmp-decoder.c).
 * Input: the first byte N (0..7) says how many split sizes follow (one byte
 * each); the rest is the stream, fed in pieces of those sizes (cycling), so
 * the fuzzer chooses where messages are cut. Every message is drained after
 * each piece; limits are small (64 KiB, depth 64) so the bounds are reached.
 */
#include "internal.h"
#include "fuzz-common.h"

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    static const libdm__json_limits limits = { 64 * 1024, 64, 100000 };
    libdm__qmp_decoder *d = NULL;
    const uint8_t *splits;
    size_t nsplits, off, i = 0;
    bool dead = false;

    if (size < 1)
        return 0;
    nsplits = data[0] & 7;
    if (size < 1 + nsplits)
        return 0;
    splits = data + 1;
    off = 1 + nsplits;
    if (libdm__qmp_decoder_new(&limits, &d) < 0)
        abort();
    while (off < size && !dead) {
        size_t n = nsplits ? splits[i++ % nsplits] : size - off;
        libdm_json *msg;
        const char *why;
        int r;

        if (n == 0)
            n = 1;
        if (n > size - off)
            n = size - off;
        if (libdm__qmp_decoder_feed(d, data + off, n) < 0)
            break;
        off += n;
        while ((r = libdm__qmp_decoder_next(d, &msg, &why)) != 0) {
            if (r < 0) {
                if (!why)
                    abort();
                /* -EPROTO (malformed) is skippable, like junk before the
                 * greeting; a bound exceeded ends the stream. */
                if (r != -EPROTO) {
                    dead = true;
                    break;
                }
                continue;
            }
            if (!msg)
                abort();
            libdm_json_free(msg);
        }
    }
    (void)libdm__qmp_decoder_buffered(d);
    libdm__qmp_decoder_free(d);
    return 0;
}
