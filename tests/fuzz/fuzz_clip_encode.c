/* fuzz_clip_encode — libFuzzer target: arbitrary bytes as a caption.
 *
 * A byte-level tokenizer with a few merges and "!" as pad (so the added-token
 * split runs) is written to a temporary directory once. Per input: encode
 * must either fail with "invalid UTF-8" or give 2..77 tokens framed by
 * bos/eos and padded; the early-stopping encode must equal the full one;
 * normalization must succeed exactly when encoding does. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "text/clip_tokenizer.h"

static sd_clip_tokenizer *tok;

static void put_cp(char **o, int32_t c) {
    char *p = *o;
    if (c == '"' || c == '\\') { *p++ = '\\'; *p++ = (char)c; }
    else if (c < 0x80) *p++ = (char)c;
    else { *p++ = (char)(0xC0 | c >> 6); *p++ = (char)(0x80 | (c & 63)); }
    *o = p;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char dir[] = "/tmp/fuzz-clip-XXXXXX";
    if (!mkdtemp(dir)) abort();
    char *vocab = malloc(1 << 16), *o = vocab;
    int cps[256], order[256], n = 0, k = 0, id = 0;
    for (int b = 0; b < 256; b++) {
        int pr = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cps[b] = pr ? b : 256 + n++;
    }
    for (int b = 0; b < 256; b++) if (cps[b] < 256) order[k++] = b;
    for (int b = 0; b < 256; b++) if (cps[b] >= 256) order[k++] = b;
    *o++ = '{';
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < 256; i++) {
            *o++ = '"';
            put_cp(&o, cps[order[i]]);
            if (pass) { memcpy(o, "</w>", 4); o += 4; }
            o += sprintf(o, "\": %d, ", id++);
        }
    o += sprintf(o, "\"<|startoftext|>\": 512, \"<|endoftext|>\": 513, \"aa\": 514, \"th\": 515, \"the</w>\": 516, "
                    "\"!!\": 517, \"aa</w>\": 518}");
    const char *merges = "#version: 0.2\na a\nt h\nth e</w>\n! !\na a</w>\nb c\n";
    const char *cfg = "{\"model_max_length\": 77, \"pad_token\": \"!\"}";
    char path[512];
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    if (sd_write_file_atomic(path, vocab, (size_t)(o - vocab))) abort();
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    if (sd_write_file_atomic(path, merges, strlen(merges))) abort();
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (sd_write_file_atomic(path, cfg, strlen(cfg))) abort();
    free(vocab);
    if (sd_clip_tokenizer_load(dir, &tok)) { fprintf(stderr, "%s\n", sd_last_error()); abort(); }
    sd_rm_rf(dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int32_t a[77], b[77];
    int na = 0, nb = 0;
    size_t nx = 0;
    int ra = sd_clip_tokenizer_encode_n(tok, (const char *)data, size, a, &na, &nx);
    if (ra && !strstr(sd_last_error(), "invalid UTF-8")) abort();
    int rb = sd_clip_tokenizer_encode_n(tok, (const char *)data, size, b, &nb, NULL);
    if (ra != rb) abort();
    char *norm = NULL;
    int rn = sd_clip_normalize((const char *)data, size, &norm, NULL);
    if ((rn != 0) != (ra != 0)) abort();
    free(norm);
    if (ra) return 0;
    if (na < 2 || na > 77 || na != nb || memcmp(a, b, sizeof a)) abort();
    if ((size_t)na != (nx < 75 ? nx : 75) + 2) abort();
    if (a[0] != 512 || a[na - 1] != 513) abort();
    for (int i = 0; i < 77; i++) {
        if (a[i] < 0 || a[i] > 518) abort();
        if (i >= na && a[i] != 0) abort();
    }
    return 0;
}
