/* fuzz_metadata.c — libFuzzer target: any bytes as metadata.csv (first byte
 * even) or metadata.jsonl (odd) of a tiny imagefolder with two images. Every
 * row must become a record or a counted skip; never a crash or a leak.
 * Seeds: tests/corpus/metadata/. */
#define _GNU_SOURCE
#include "core/error.h"
#include "core/fs.h"
#include "io/dataset.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char root[64];
static void cleanup(void) { sd_rm_rf(root); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!root[0]) {
        snprintf(root, sizeof root, "/tmp/fuzz_metadata.%d", (int)getpid());
        atexit(cleanup);
        sd_mkdir_p(root);
        char *p = sd_path_join(root, "a.png");
        sd_write_file_atomic(p, "x", 1);
        free(p);
        p = sd_path_join(root, "b.jpg");
        sd_write_file_atomic(p, "x", 1);
        free(p);
    }
    if (size == 0) return 0;
    int csv = !(data[0] & 1);
    char *mj = sd_path_join(root, "metadata.jsonl"), *mc = sd_path_join(root, "metadata.csv");
    unlink(csv ? mj : mc);
    FILE *f = fopen(csv ? mc : mj, "wb");
    if (f) {
        fwrite(data + 1, 1, size - 1, f);
        fclose(f);
        sd_dataset *d;
        if (sd_dataset_open(root, NULL, &d) == 0) {
            uint64_t total = d->n;
            for (int r = 0; r < SD_SKIP_COUNT; r++) total += d->skip_count[r];
            /* every row is accounted for (unlisted images come on top) */
            if (total < d->rows) abort();
            if (d->n) sd_dataset_select(d, d->n / 2, size);
            sd_dataset_free(d);
        }
    }
    free(mj);
    free(mc);
    return 0;
}
