/* fuzz_clip_load — libFuzzer target: tokenizer directories from arbitrary bytes.
 *
 * The input is split at the first two NUL bytes into vocab.json, merges.txt
 * and tokenizer_config.json (missing parts get small valid defaults). Loading
 * must either fail with a message or give a tokenizer that encodes a few
 * captions with ids inside its vocabulary/added tokens. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "text/clip_tokenizer.h"

static char dir[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    snprintf(dir, sizeof dir, "/tmp/fuzz-clip-load-%d", (int)getpid());
    if (sd_mkdir_p(dir)) abort();
    return 0;
}

static void put(const char *name, const void *p, size_t n) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb"); /* not sd_write_file_atomic: no fsync per run */
    if (!f || fwrite(p, 1, n, f) != n || fclose(f)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[3] = {NULL, NULL, NULL};
    size_t len[3] = {0, 0, 0};
    size_t s = 0;
    for (int k = 0; k < 3; k++) {
        if (s > size) break;
        const uint8_t *z = k < 2 ? memchr(data + s, 0, size - s) : NULL;
        size_t e = z ? (size_t)(z - data) : size;
        part[k] = data + s;
        len[k] = e - s;
        s = e + 1;
        if (!z) break;
    }
    const char *dv = "{\"a\": 0, \"b\": 1, \"ab\": 2, \"<|startoftext|>\": 3, \"<|endoftext|>\": 4}";
    const char *dm = "#version: 0.2\na b\n";
    const char *dc = "{\"model_max_length\": 8}";
    put("vocab.json", part[0] ? (const void *)part[0] : dv, part[0] ? len[0] : strlen(dv));
    put("merges.txt", part[1] ? (const void *)part[1] : dm, part[1] ? len[1] : strlen(dm));
    put("tokenizer_config.json", part[2] ? (const void *)part[2] : dc, part[2] ? len[2] : strlen(dc));
    sd_clip_tokenizer *t = NULL;
    if (sd_clip_tokenizer_load(dir, &t)) {
        if (t || !sd_last_error()[0]) abort();
        return 0;
    }
    static const char *const caps[] = {"ab ab", "a photo of a cat!", "\xc3\xa9t\xc3\xa9 \xe4\xb8\xad", "<|endoftext|>"};
    int L = sd_clip_tokenizer_max_len(t);
    int32_t *ids = malloc((size_t)L * sizeof *ids);
    for (int i = 0; i < 4; i++) {
        int n;
        if (sd_clip_tokenizer_encode(t, caps[i], ids, &n)) abort();
        if (n < 2 || n > L) abort();
        for (int k = 0; k < L; k++)
            if (ids[k] < 0 || ids[k] >= (1 << 24)) abort();
    }
    free(ids);
    sd_clip_tokenizer_free(t);
    return 0;
}
