/* clip_tok — drive lib/text/clip_tokenizer from Python tests.
 *
 * Captions come on stdin as records: u32 little-endian byte length, bytes.
 *
 *   clip_tok tokenize DIR          per caption: "OK id id ..." (text ids only) or "ERR message"
 *   clip_tok encode DIR [THREADS]  per caption: "OK n_tokens n_text id*max_len" or "ERR message";
 *                                  THREADS > 1 encodes with that many threads (same output)
 *   clip_tok normalize             per caption: "OK hex(utf8 of the normalized text)" or "ERR message"
 *   clip_tok charinfo              binary, per code point 0..0x10FFFF: u8 flags (clean | space<<2 |
 *                                  cjk<<3 | cased<<4 | case_ignorable<<5), u8 regex class,
 *                                  i32 lower[0], i32 lower[1] (0 if one code point)
 *   clip_tok info DIR              fingerprint, max_len, pad/bos/eos/unk ids, vocab size
 *   clip_tok bench DIR SECONDS     encodes the captions repeatedly on one thread, prints captions/s
 */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "text/clip_tokenizer.h"

typedef struct {
    char **text;
    size_t *len;
    size_t n;
} captions;

static void read_captions(captions *c) {
    size_t cap = 0;
    memset(c, 0, sizeof *c);
    for (;;) {
        uint8_t h[4];
        size_t got = fread(h, 1, 4, stdin);
        if (got == 0) break;
        if (got != 4) sd_die("truncated record header");
        size_t n = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
        char *t = sd_xmalloc(n + 1);
        if (fread(t, 1, n, stdin) != n) sd_die("truncated record");
        t[n] = 0;
        if (c->n == cap) {
            cap = cap ? 2 * cap : 1024;
            c->text = sd_xrealloc(c->text, cap * sizeof *c->text);
            c->len = sd_xrealloc(c->len, cap * sizeof *c->len);
        }
        c->text[c->n] = t;
        c->len[c->n++] = n;
    }
}

static void free_captions(captions *c) {
    for (size_t i = 0; i < c->n; i++) free(c->text[i]);
    free(c->text);
    free(c->len);
}

static double now(void) { return sd_now(); }

int main(int argc, char **argv) {
    sd_set_progname("clip_tok");
    if (argc < 2) sd_die("usage: clip_tok tokenize|encode|normalize|charinfo|info|bench ...");
    const char *cmd = argv[1];

    if (!strcmp(cmd, "charinfo")) {
        uint8_t rec[10];
        for (int32_t cp = 0; cp <= 0x10FFFF; cp++) {
            sd_clip_char_info ci;
            sd_clip_char_info_get(cp, &ci);
            rec[0] = (uint8_t)(ci.clean | ci.space << 2 | ci.cjk << 3 | ci.cased << 4 | ci.case_ignorable << 5);
            rec[1] = ci.regex;
            int32_t l1 = ci.n_lower > 1 ? ci.lower[1] : 0;
            memcpy(rec + 2, &ci.lower[0], 4);
            memcpy(rec + 6, &l1, 4);
            fwrite(rec, 1, sizeof rec, stdout);
        }
        return 0;
    }
    if (!strcmp(cmd, "normalize")) {
        captions c;
        read_captions(&c);
        for (size_t i = 0; i < c.n; i++) {
            char *out;
            size_t n;
            if (sd_clip_normalize(c.text[i], c.len[i], &out, &n)) {
                printf("ERR %s\n", sd_last_error());
                continue;
            }
            fputs("OK ", stdout);
            for (size_t k = 0; k < n; k++) printf("%02x", (uint8_t)out[k]);
            fputc('\n', stdout);
            free(out);
        }
        free_captions(&c);
        sd_clip_tokenizer_thread_release();
        return 0;
    }

    if (argc < 3) sd_die("%s needs a tokenizer directory", cmd);
    sd_clip_tokenizer *tok;
    if (sd_clip_tokenizer_load(argv[2], &tok)) sd_die_last();
    int L = sd_clip_tokenizer_max_len(tok);
    int rc = 0;

    if (!strcmp(cmd, "info")) {
        printf("fingerprint %s\nmax_len %d\npad %d\nbos %d\neos %d\nunk %d\nvocab_size %d\n",
               sd_clip_tokenizer_fingerprint(tok), L, sd_clip_tokenizer_pad_id(tok), sd_clip_tokenizer_bos_id(tok),
               sd_clip_tokenizer_eos_id(tok), sd_clip_tokenizer_unk_id(tok), sd_clip_tokenizer_vocab_size(tok));
    } else if (!strcmp(cmd, "tokenize")) {
        captions c;
        read_captions(&c);
        size_t cap = 1024;
        int32_t *ids = sd_xmalloc(cap * sizeof *ids);
        for (size_t i = 0; i < c.n; i++) {
            size_t n;
            if (sd_clip_tokenizer_tokenize(tok, c.text[i], c.len[i], ids, cap, &n)) {
                printf("ERR %s\n", sd_last_error());
                continue;
            }
            if (n > cap) { /* again with room for all */
                cap = n;
                ids = sd_xrealloc(ids, cap * sizeof *ids);
                if (sd_clip_tokenizer_tokenize(tok, c.text[i], c.len[i], ids, cap, &n)) sd_die_last();
            }
            fputs("OK", stdout);
            for (size_t k = 0; k < n; k++) printf(" %d", ids[k]);
            fputc('\n', stdout);
        }
        free(ids);
        free_captions(&c);
    } else if (!strcmp(cmd, "encode")) {
        int threads = argc > 3 ? atoi(argv[3]) : 1;
        captions c;
        read_captions(&c);
        int32_t *ids = sd_xmalloc(c.n * (size_t)L * sizeof *ids + 1);
        int *nt = sd_xmalloc(c.n * sizeof *nt + 1);
        size_t *nx = sd_xmalloc(c.n * sizeof *nx + 1);
        char **err = sd_xcalloc(c.n + 1, sizeof *err);
#pragma omp parallel num_threads(threads > 1 ? threads : 1)
        {
            int32_t *again = sd_xmalloc((size_t)L * sizeof *again);
            /* dynamic schedule, so every thread meets many different captions */
#pragma omp for schedule(dynamic, 7)
            for (size_t i = 0; i < c.n; i++) {
                if (sd_clip_tokenizer_encode_n(tok, c.text[i], c.len[i], ids + i * (size_t)L, &nt[i], &nx[i]))
                    err[i] = sd_xstrdup(sd_last_error());
                if (threads > 1) { /* and a second time, through the warm cache and without n_text */
                    int nt2;
                    if (!err[i] && (sd_clip_tokenizer_encode_n(tok, c.text[i], c.len[i], again, &nt2, NULL) ||
                                    nt2 != nt[i] || memcmp(again, ids + i * (size_t)L, (size_t)L * sizeof *again)))
                        err[i] = sd_xstrdup("second encoding differs");
                }
            }
            free(again);
            sd_clip_tokenizer_thread_release();
        }
        for (size_t i = 0; i < c.n; i++) {
            if (err[i]) {
                printf("ERR %s\n", err[i]);
                free(err[i]);
                continue;
            }
            printf("OK %d %zu", nt[i], nx[i]);
            for (int k = 0; k < L; k++) printf(" %d", ids[i * (size_t)L + k]);
            fputc('\n', stdout);
        }
        free(ids);
        free(nt);
        free(nx);
        free(err);
        free_captions(&c);
    } else if (!strcmp(cmd, "bench")) {
        double seconds = argc > 3 ? atof(argv[3]) : 1.0;
        captions c;
        read_captions(&c);
        if (c.n == 0) sd_die("bench: no captions");
        int32_t *ids = sd_xmalloc((size_t)L * sizeof *ids);
        size_t done = 0, bytes = 0;
        double t0 = now(), t;
        do {
            for (size_t i = 0; i < c.n; i++) {
                int n;
                if (sd_clip_tokenizer_encode_n(tok, c.text[i], c.len[i], ids, &n, NULL) == 0) bytes += c.len[i];
            }
            done += c.n;
            t = now() - t0;
        } while (t < seconds);
        printf("captions %zu seconds %.3f captions_per_s %.0f MB_per_s %.2f\n", done, t, done / t, bytes / t / 1e6);
        free(ids);
        free_captions(&c);
    } else {
        fprintf(stderr, "clip_tok: unknown command %s\n", cmd);
        rc = 2;
    }
    sd_clip_tokenizer_free(tok);
    sd_clip_tokenizer_thread_release();
    return rc;
}
