/* fuzz_shard.c — libFuzzer target: any bytes as a shard (plain or compressed
 * tar). The reader must return an error or samples, never crash, leak or
 * read out of bounds. Seeds: tests/corpus/shard/. */
#define _GNU_SOURCE
#include "core/error.h"
#include "io/shard.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("shard", 0);
        if (fd < 0) return 0;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) return 0;
    sd_shard_read_opts o = {.max_member = 1 << 20, .max_sample = 4 << 20, .strict = size & 1, .hash = 1};
    sd_shard_reader *r;
    if (sd_shard_open(&r, path, &o)) return 0;
    sd_shard_sample *s;
    int rc;
    while ((rc = sd_shard_next(r, &s)) == 1)
        for (int i = 0; i < s->n; i++) (void)sd_shard_find(s, s->files[i].ext);
    if (rc == 0) {
        char hex[65];
        sd_shard_sha256(r, hex, NULL);
    }
    sd_shard_close(r);
    return 0;
}
