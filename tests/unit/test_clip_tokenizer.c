/* test_clip_tokenizer.c — lib/text/clip_tokenizer: the sd_spec.md §4 vectors
 * on the real CLIP vocabulary, SD framing (truncation at 77, pad ids), invalid
 * UTF-8, the tiny byte-level vocabulary, hand-checked BPE, malformed
 * tokenizer directories, threads, and the cost of pathological words.
 * (Corpus-wide parity with transformers: tests/py/test_tokenizer_parity.py.)
 *
 * The real vocabulary is built from PyPI's open_clip_torch by
 * tests/fixtures/get_clip_vocab.py (cached under .cache/); this test runs it
 * with $SD_PY when the cache is missing. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fs.h"
#include "test.h"
#include "text/clip_tokenizer.h"

static const char *root(void) {
    const char *r = getenv("SD_ROOT");
    return r && *r ? r : ".";
}

/* .cache/clip-tokenizer-sdN, fetched once through the fixture script */
static const char *real_dir(int sd) {
    static char dirs[2][1024];
    static int tried;
    char *d = dirs[sd - 1];
    snprintf(d, 1024, "%s/.cache/clip-tokenizer-sd%d", root(), sd);
    char stamp[1100];
    snprintf(stamp, sizeof stamp, "%s/.complete", d);
    if (!sd_is_file(stamp) && !tried) {
        tried = 1;
        const char *py = getenv("SD_PY");
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "'%s' '%s/tests/fixtures/get_clip_vocab.py' '%s' >/dev/null",
                 py && *py ? py : ".venv-test/bin/python", root(), root());
        if (system(cmd) != 0) printf("# %s failed\n", cmd);
    }
    return sd_is_file(stamp) ? d : NULL;
}

static void write_file(const char *dir, const char *name, const char *text) {
    char *p = sd_path_join(dir, name);
    if (sd_write_file_atomic(p, text, strlen(text))) { printf("# %s\n", sd_last_error()); exit(2); }
    free(p);
}

/* GPT-2/CLIP byte -> code point (the order of the vocabulary) */
static void byte_cps(int32_t cp[256], int order[256]) {
    int n = 0, k = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp[b] = printable ? b : 256 + n++;
    }
    for (int b = 0; b < 256; b++)
        if (cp[b] < 256) order[k++] = b;
    for (int b = 0; b < 256; b++)
        if (cp[b] >= 256) order[k++] = b;
}

static size_t put_json_char(char *o, int32_t c) {
    if (c == '"' || c == '\\') { o[0] = '\\'; o[1] = (char)c; return 2; }
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | c >> 6); o[1] = (char)(0x80 | (c & 63)); return 2; }
    o[0] = (char)(0xE0 | c >> 12); o[1] = (char)(0x80 | ((c >> 6) & 63)); o[2] = (char)(0x80 | (c & 63));
    return 3;
}

/* vocab.json of the tiny byte-level vocabulary (ids 0..511, 512, 513) plus
 * extra tokens from 514 on; returns malloc'ed JSON text */
static char *tiny_vocab_json(const char *const *extra, int n_extra) {
    int32_t cp[256];
    int order[256];
    byte_cps(cp, order);
    size_t cap = 65536, n = 0;
    char *o = malloc(cap);
    o[n++] = '{';
    int id = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < 256; k++) {
            o[n++] = '"';
            n += put_json_char(o + n, cp[order[k]]);
            if (pass) { memcpy(o + n, "</w>", 4); n += 4; }
            n += (size_t)sprintf(o + n, "\": %d, ", id++);
        }
    n += (size_t)sprintf(o + n, "\"<|startoftext|>\": 512, \"<|endoftext|>\": 513");
    for (int i = 0; i < n_extra; i++) n += (size_t)sprintf(o + n, ", \"%s\": %d", extra[i], 514 + i);
    o[n++] = '}';
    o[n] = 0;
    return o;
}

static const char *CFG_SD1 = "{\"model_max_length\": 77, \"pad_token\": \"<|endoftext|>\"}";

static char *make_dir(const char *name, const char *vocab, const char *merges, const char *config) {
    char *d = sd_path_join(test_tmpdir(), name);
    if (sd_mkdir_p(d)) { printf("# %s\n", sd_last_error()); exit(2); }
    if (vocab) write_file(d, "vocab.json", vocab);
    if (merges) write_file(d, "merges.txt", merges);
    if (config) write_file(d, "tokenizer_config.json", config);
    return d;
}

static int ids_eq(const int32_t *a, const int32_t *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static void show(const char *what, const int32_t *ids, int n) {
    printf("# %s:", what);
    for (int i = 0; i < n; i++) printf(" %d", ids[i]);
    printf("\n");
}

/* encode text and compare the first n ids with want[] and the rest with pad */
static int enc_is(const sd_clip_tokenizer *t, const char *text, const int32_t *want, int n) {
    int32_t ids[77];
    int nt = -1;
    if (sd_clip_tokenizer_encode(t, text, ids, &nt)) { printf("# %s\n", sd_last_error()); return 0; }
    int ok = nt == n && ids_eq(ids, want, n);
    for (int i = n; i < 77; i++) ok &= ids[i] == sd_clip_tokenizer_pad_id(t);
    if (!ok) { printf("# \"%s\" (n_tokens %d):\n", text, nt); show("got", ids, 77); show("want", want, n); }
    return ok;
}

TEST(spec_vectors) {
    const char *d1 = real_dir(1), *d2 = real_dir(2);
    CHECK_MSG(d1 && d2, "the CLIP vocabulary could not be built from PyPI's open_clip_torch");
    if (!d1 || !d2) return;
    sd_clip_tokenizer *t1 = NULL, *t2 = NULL;
    CHECK_OK(sd_clip_tokenizer_load(d1, &t1));
    CHECK_OK(sd_clip_tokenizer_load(d2, &t2));
    if (!t1 || !t2) { sd_clip_tokenizer_free(t1); sd_clip_tokenizer_free(t2); return; }
    CHECK(sd_clip_tokenizer_vocab_size(t1) == 49408);
    CHECK(sd_clip_tokenizer_max_len(t1) == 77 && sd_clip_tokenizer_max_len(t2) == 77);
    CHECK(sd_clip_tokenizer_bos_id(t1) == 49406 && sd_clip_tokenizer_eos_id(t1) == 49407);
    CHECK(sd_clip_tokenizer_pad_id(t1) == 49407 && sd_clip_tokenizer_pad_id(t2) == 0);
    CHECK(sd_clip_tokenizer_unk_id(t1) == 49407);
    CHECK(!strcmp(sd_clip_tokenizer_token(t1, 320), "a</w>") && !strcmp(sd_clip_tokenizer_token(t1, 2368), "cat</w>"));
    CHECK(!strcmp(sd_clip_tokenizer_token(t1, 49406), "<|startoftext|>") && !sd_clip_tokenizer_token(t1, 49408));
    CHECK(strlen(sd_clip_tokenizer_fingerprint(t1)) == 64);
    CHECK(strcmp(sd_clip_tokenizer_fingerprint(t1), sd_clip_tokenizer_fingerprint(t2)) != 0);

    static const int32_t cat[] = {49406, 320, 1125, 539, 320, 2368, 49407};
    static const int32_t dog[] = {49406, 320, 1125, 539, 320, 1929, 49407};
    static const int32_t hello1[] = {49406, 3306, 267, 1002, 256, 49407};
    static const int32_t hello2[] = {49406, 3306, 267, 1002, 0, 49407}; /* SD2: "!" is an added token, id 0 */
    static const int32_t upper1[] = {49406, 320, 1125, 539, 320, 2368, 256, 49407};
    static const int32_t empty[] = {49406, 49407};
    CHECK(enc_is(t1, "a photo of a cat", cat, 7));
    CHECK(enc_is(t2, "a photo of a cat", cat, 7));
    CHECK(enc_is(t1, "a photo of a dog", dog, 7));
    CHECK(enc_is(t1, "Hello, world!", hello1, 6));
    CHECK(enc_is(t2, "Hello, world!", hello2, 6));
    CHECK(enc_is(t1, "A PHOTO of  a Cat!", upper1, 8));
    CHECK(enc_is(t1, "", empty, 2));
    CHECK(enc_is(t2, "", empty, 2));
    CHECK(enc_is(t1, " \t\n\u3000\u200b ", empty, 2));

    /* truncation: 75 words fit exactly, 76 and 100 are cut to 75 */
    char text[1024];
    int32_t ids[77], want[77];
    for (int words = 74; words <= 100; words++) {
        size_t n = 0;
        for (int w = 0; w < words; w++) n += (size_t)sprintf(text + n, w ? " a" : "a");
        int nt;
        size_t nx;
        CHECK_OK(sd_clip_tokenizer_encode_n(t1, text, n, ids, &nt, &nx));
        int body = words < 75 ? words : 75;
        want[0] = 49406;
        for (int i = 0; i < body; i++) want[1 + i] = 320;
        want[1 + body] = 49407;
        for (int i = body + 2; i < 77; i++) want[i] = 49407;
        CHECK_MSG(nt == body + 2 && nx == (size_t)words && ids_eq(ids, want, 77), "%d words: n_tokens %d n_text %zu",
                  words, nt, nx);
        int nt2;
        int32_t ids2[77];
        CHECK_OK(sd_clip_tokenizer_encode(t1, text, ids2, &nt2)); /* the early-stopping path */
        CHECK(nt2 == nt && ids_eq(ids, ids2, 77));
    }
    /* tokenize: all ids, only as many written as fit */
    size_t n = 0;
    int32_t few[3];
    CHECK_OK(sd_clip_tokenizer_tokenize(t1, "a photo of a cat", 16, few, 3, &n));
    CHECK(n == 5 && few[0] == 320 && few[1] == 1125 && few[2] == 539);
    CHECK_OK(sd_clip_tokenizer_tokenize(t1, "a photo of a cat", 16, NULL, 0, &n));
    CHECK(n == 5);
    /* NUL inside the caption is dropped like any control character */
    int32_t a[77], b[77];
    int na, nb;
    CHECK_OK(sd_clip_tokenizer_encode_n(t1, "ca\0t", 4, a, &na, NULL));
    CHECK_OK(sd_clip_tokenizer_encode(t1, "cat", b, &nb));
    CHECK(na == nb && na == 3 && ids_eq(a, b, 77));
    sd_clip_tokenizer_free(t1);
    sd_clip_tokenizer_free(t2);
}

TEST(invalid_utf8) {
    char *v = tiny_vocab_json(NULL, 0);
    char *d = make_dir("tiny-utf8", v, "#version: 0.2\n", CFG_SD1);
    sd_clip_tokenizer *t = NULL;
    CHECK_OK(sd_clip_tokenizer_load(d, &t));
    if (t) {
        static const struct { const char *s; size_t n; size_t at; } bad[] = {
            {"\xff", 1, 0}, {"abc\x80", 4, 3}, {"ab\xc3", 3, 2}, {"\xe2\x82 x", 4, 0}, {"x \xed\xa0\x80", 5, 2},
            {"\xc0\xaf", 2, 0}, {"\xe0\x80\xaf", 3, 0}, {"ok \xf4\x90\x80\x80", 7, 3}, {"\xf0\x9f\x98", 3, 0},
            {"a\xc3\x28", 3, 1}, {"\xf8\x88\x80\x80\x80", 5, 0}};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            int32_t ids[77];
            for (int k = 0; k < 77; k++) ids[k] = -7;
            char want[64];
            snprintf(want, sizeof want, "invalid UTF-8 at byte %zu", bad[i].at);
            CHECK_FAILS(sd_clip_tokenizer_encode_n(t, bad[i].s, bad[i].n, ids, NULL, NULL), want);
            int untouched = 1;
            for (int k = 0; k < 77; k++) untouched &= ids[k] == -7;
            CHECK(untouched);
            size_t n;
            CHECK_FAILS(sd_clip_tokenizer_tokenize(t, bad[i].s, bad[i].n, NULL, 0, &n), want);
        }
        /* valid 4-byte and boundary sequences are fine */
        int32_t ids[77];
        CHECK_OK(sd_clip_tokenizer_encode(t, "\xf4\x8f\xbf\xbd \xef\xbf\xbd \xed\x9f\xbf \xee\x80\x80 \xf0\x9f\x98\x80", ids, NULL));
        char *norm;
        CHECK_FAILS(sd_clip_normalize("\xc3", 1, &norm, NULL), "invalid UTF-8 at byte 0");
    }
    sd_clip_tokenizer_free(t);
    free(v);
    free(d);
}

TEST(tiny_vocab) {
    char *v = tiny_vocab_json(NULL, 0);
    char *d1 = make_dir("tiny-eos", v, "#version: 0.2\n", CFG_SD1);
    char *d2 = make_dir("tiny-bang", v, "#version: 0.2\n", "{\"model_max_length\": 77, \"pad_token\": \"!\"}");
    sd_clip_tokenizer *t1 = NULL, *t2 = NULL;
    CHECK_OK(sd_clip_tokenizer_load(d1, &t1));
    CHECK_OK(sd_clip_tokenizer_load(d2, &t2));
    if (t1 && t2) {
        CHECK(sd_clip_tokenizer_vocab_size(t1) == 514 && sd_clip_tokenizer_bos_id(t1) == 512);
        CHECK(sd_clip_tokenizer_eos_id(t1) == 513 && sd_clip_tokenizer_pad_id(t1) == 513);
        CHECK(sd_clip_tokenizer_pad_id(t2) == 0);
        /* 'a' = byte 97 -> id 97-33 = 64; "b</w>" = 256 + 65; "é" = C3 A9: C3 -> 106 + (0xC3-0xAE) = 127,
         * A9</w> -> 256 + 94 + (0xA9-0xA1) = 358; ' ' (byte 32) is not printable: id 188 + 32 */
        static const int32_t ab[] = {512, 64, 321, 513};
        static const int32_t e_acute[] = {512, 127, 358, 513};
        /* "a", "!", "b" are three pieces: a</w> !</w> b</w>; with pad "!" (SD2) "!" is an added token, id 0 */
        static const int32_t bang1[] = {512, 320, 256, 321, 513};
        static const int32_t bang2[] = {512, 320, 0, 321, 513};
        CHECK(enc_is(t1, "AB", ab, 4));
        CHECK(enc_is(t1, "\xc3\xa9", e_acute, 4));
        CHECK(enc_is(t1, "e\xcc\x81", e_acute, 4)); /* NFD e + U+0301 composes to é first */
        CHECK(enc_is(t1, "a!b", bang1, 5));
        CHECK(enc_is(t2, "a!b", bang2, 5));
        CHECK(strcmp(sd_clip_tokenizer_fingerprint(t1), sd_clip_tokenizer_fingerprint(t2)) != 0);
        /* one token per byte: 100 letters in one word are truncated to 75 */
        char text[101];
        memset(text, 'x', 100);
        text[100] = 0;
        int32_t ids[77];
        int nt;
        size_t nx;
        CHECK_OK(sd_clip_tokenizer_encode_n(t1, text, 100, ids, &nt, &nx));
        CHECK(nt == 77 && nx == 100 && ids[75] == 'x' - 33 && ids[76] == 513);
    }
    sd_clip_tokenizer_free(t1);
    sd_clip_tokenizer_free(t2);
    free(v);
    free(d1);
    free(d2);
}

/* Hand-checked BPE: lowest rank first, all its occurrences left to right. */
TEST(bpe_merges) {
    static const char *const extra[] = {"aa", "aa</w>", "aaa</w>", "aaaa", "th", "the</w>"};
    char *v = tiny_vocab_json(extra, 6); /* aa 514, aa</w> 515, aaa</w> 516, aaaa 517, th 518, the</w> 519 */
    char *d = make_dir("bpe", v,
                       "#version: 0.2\na a\na a</w>\naa a</w>\naa aa\nt h\nth e</w>\nb c\nq u\n", CFG_SD1);
    sd_clip_tokenizer *t = NULL;
    CHECK_OK(sd_clip_tokenizer_load(d, &t));
    if (t) {
        static const int32_t a3[] = {512, 516, 513};           /* a a a</w> -> aa a</w> -> aaa</w> */
        static const int32_t a4[] = {512, 514, 515, 513};      /* a a a a</w> -> aa a a</w> -> aa aa</w> */
        static const int32_t a5[] = {512, 514, 516, 513}; /* -> aa aa a</w>; (aa a</w>) outranks (aa aa): aa aaa</w> */
        static const int32_t the[] = {512, 519, 513};
        static const int32_t bcd[] = {512, 513, 'd' - 33 + 256, 513}; /* "bc" not in vocab: unk (513) */
        CHECK(enc_is(t, "aaa", a3, 3));
        CHECK(enc_is(t, "aaaa", a4, 4));
        CHECK(enc_is(t, "aaaaa", a5, 4));
        static const int32_t a6[] = {512, 517, 515, 513}; /* aa aa aa</w> -> aaaa aa</w> */
        CHECK(enc_is(t, "aaaaaa", a6, 4));
        CHECK(enc_is(t, "THE", the, 3));
        CHECK(enc_is(t, "bcd", bcd, 4));
        CHECK(!strcmp(sd_clip_tokenizer_token(t, 519), "the</w>"));
    }
    sd_clip_tokenizer_free(t);
    free(v);
    free(d);
}

TEST(malformed_files) {
    char *v = tiny_vocab_json(NULL, 0);
    sd_clip_tokenizer *t = NULL;
    const char *ver = "#version: 0.2\n";
    struct { const char *name, *vocab, *merges, *config, *expect; } cases[] = {
        {"no-vocab", NULL, ver, CFG_SD1, "vocab.json"},
        {"no-merges", v, NULL, CFG_SD1, "merges.txt"},
        {"bad-json", "{\"a\": 0,", ver, CFG_SD1, "invalid JSON"},
        {"array", "[\"a\", \"b\"]", ver, CFG_SD1, "expected a JSON object"},
        {"empty", "{}", ver, CFG_SD1, "empty vocabulary"},
        {"neg-id", "{\"a\": -1}", ver, CFG_SD1, "id must be an integer"},
        {"frac-id", "{\"a\": 1.5}", ver, CFG_SD1, "id must be an integer"},
        {"str-id", "{\"a\": \"1\"}", ver, CFG_SD1, "id must be an integer"},
        {"huge-id", "{\"a\": 1e300}", ver, CFG_SD1, "id must be an integer"},
        {"dup-id", "{\"a\": 1, \"b\": 1, \"<|endoftext|>\": 2}", ver, CFG_SD1, "used by two tokens"},
        {"dup-token", "{\"a\": 1, \"a\": 2, \"<|endoftext|>\": 3}", ver, CFG_SD1, "duplicate token \"a\""},
        {"bad-utf8", "{\"\xff\": 1}", ver, CFG_SD1, "vocab.json: invalid UTF-8 at byte 2"},
        {"merge-3", v, "#version: 0.2\na b\na b c\n", CFG_SD1, "merges.txt:3: a merge must be two symbols"},
        {"merge-1", v, "#version: 0.2\nab\n", CFG_SD1, "merges.txt:2: a merge must be two symbols"},
        {"merge-blank", v, "#version: 0.2\na b\n\nc d\n", CFG_SD1, "merges.txt:3: a merge must be two symbols"},
        {"merge-unknown", v, "#version: 0.2\na b\nzz top\n", CFG_SD1, "merges.txt:3: symbol \"zz\" is not in vocab.json"},
        {"merge-dup", v, "#version: 0.2\na b\nc d\na b\n", CFG_SD1, "merges.txt:4: duplicate merge \"a b\" (first on line 2)"},
        {"merges-utf8", v, "#version: 0.2\na \xc3\n", CFG_SD1, "merges.txt: invalid UTF-8"},
        {"cfg-json", v, ver, "{\"pad_token\": ", "tokenizer_config.json: invalid JSON"},
        {"cfg-array", v, ver, "[]", "tokenizer_config.json: expected a JSON object"},
        {"maxlen-huge", v, ver, "{\"model_max_length\": 1e30}", "model_max_length must be an integer"},
        {"maxlen-1", v, ver, "{\"model_max_length\": 1}", "model_max_length must be an integer"},
        {"maxlen-str", v, ver, "{\"model_max_length\": \"77\"}", "model_max_length must be an integer"},
        {"pad-null", v, ver, "{\"pad_token\": null}", "pad_token is null"},
        {"pad-int", v, ver, "{\"pad_token\": 5}", "\"pad_token\" must be a string"},
        {"pad-obj", v, ver, "{\"pad_token\": {\"lstrip\": false}}", "has no string \"content\""},
        {"unk-missing", v, ver, "{\"unk_token\": \"<unk>\"}", "unk_token \"<unk>\" is not in vocab.json"},
        {"single-word", v, ver, "{\"bos_token\": {\"content\": \"<|startoftext|>\", \"single_word\": true}}",
         "single_word added tokens are not supported"},
        {"atd-key", v, ver, "{\"added_tokens_decoder\": {\"x\": {\"content\": \"<a>\"}}}", "is not a token id"},
        {"atd-null", v, ver, "{\"added_tokens_decoder\": {\"5\": null}}", "added_tokens_decoder[5] is null"},
        {"extra-list", v, ver, "{\"additional_special_tokens\": \"<a>\"}", "must be a list"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *d = make_dir(cases[i].name, cases[i].vocab, cases[i].merges, cases[i].config);
        t = (sd_clip_tokenizer *)1;
        CHECK_FAILS(sd_clip_tokenizer_load(d, &t), cases[i].expect);
        CHECK_MSG(t == NULL, "%s: *out not NULL on failure", cases[i].name);
        free(d);
    }
    CHECK_FAILS(sd_clip_tokenizer_load("/nonexistent/tokenizer", &t), "/nonexistent/tokenizer/vocab.json");
    /* an added_tokens.json with a bad id */
    char *d = make_dir("atj-bad", v, ver, CFG_SD1);
    write_file(d, "added_tokens.json", "{\"<x>\": -3}");
    CHECK_FAILS(sd_clip_tokenizer_load(d, &t), "added_tokens.json: \"<x>\": id must be an integer");
    free(d);
    /* special_tokens_map.json overrides the config when there is no added_tokens_decoder */
    d = make_dir("stm", v, ver, CFG_SD1);
    write_file(d, "special_tokens_map.json", "{\"pad_token\": {\"content\": \"!\", \"lstrip\": false}}");
    CHECK_OK(sd_clip_tokenizer_load(d, &t));
    if (t) CHECK(sd_clip_tokenizer_pad_id(t) == 0);
    sd_clip_tokenizer_free(t);
    free(d);
    /* ... and a malformed one is an error naming it */
    d = make_dir("stm-bad", v, ver, CFG_SD1);
    write_file(d, "special_tokens_map.json", "{\"pad_token\": [1]}");
    CHECK_FAILS(sd_clip_tokenizer_load(d, &t), "special_tokens_map.json: \"pad_token\" must be a string");
    free(d);
    free(v);
}

/* A merges.txt longer than 48,894 lines: the rest is never read (HF slices it). */
TEST(merge_window) {
    char *v = tiny_vocab_json(NULL, 0);
    /* 48,894 distinct valid merges need many symbols: use byte pairs (x, y) for
     * printable bytes; the results are not in the vocabulary (unk), which is allowed */
    size_t cap = 48894 * 12 + 64, n = 0;
    char *m = malloc(cap);
    n += (size_t)sprintf(m, "#version: 0.2\n");
    int count = 0;
    for (int x = '!'; x <= '~' && count < 48894; x++)
        for (int y = '!'; y <= '~' && count < 48894; y++) {
            m[n++] = (char)x;
            m[n++] = ' ';
            m[n++] = (char)y;
            m[n++] = '\n';
            count++;
        }
    /* only 94*94 = 8836 such pairs: fill the rest with "x</w>"-free pairs of two-letter results */
    for (int x = '!'; x <= '~' && count < 48894; x++)
        for (int y = '!'; y <= '~' && count < 48894; y++)
            for (int z = '!'; z <= '~' && count < 48894; z++) {
                n += (size_t)sprintf(m + n, "%c%c %c\n", x, y, z);
                count++;
            }
    n += (size_t)sprintf(m + n, "this line is past the window and malformed\n");
    m[n] = 0;
    char *d = make_dir("window", v, m, CFG_SD1);
    sd_clip_tokenizer *t = NULL;
    CHECK_OK(sd_clip_tokenizer_load(d, &t));
    sd_clip_tokenizer_free(t);
    free(m);
    free(v);
    free(d);
}

typedef struct {
    const sd_clip_tokenizer *t;
    int ok;
} thread_arg;

static void *thread_main(void *p) {
    thread_arg *a = p;
    static const char *const texts[] = {"a photo of a cat", "Hello, world!", "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87",
                                        "ΟΔΟΣ", "It's THEY'LL"};
    int32_t first[5][77];
    a->ok = 1;
    for (int rep = 0; rep < 200; rep++)
        for (int i = 0; i < 5; i++) {
            int32_t ids[77];
            int n;
            if (sd_clip_tokenizer_encode(a->t, texts[i], ids, &n)) { a->ok = 0; continue; }
            if (rep == 0) memcpy(first[i], ids, sizeof ids);
            else if (memcmp(first[i], ids, sizeof ids)) a->ok = 0;
        }
    return NULL; /* the thread's cache is freed by the key destructor */
}

TEST(threads) {
    const char *d1 = real_dir(1);
    if (!d1) { CHECK_MSG(0, "no CLIP vocabulary"); return; }
    sd_clip_tokenizer *t = NULL;
    CHECK_OK(sd_clip_tokenizer_load(d1, &t));
    if (!t) return;
    pthread_t th[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].t = t;
        pthread_create(&th[i], NULL, thread_main, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(args[i].ok);
    }
    /* a second tokenizer in the same thread never sees the first one's cache */
    const char *d2 = real_dir(2);
    sd_clip_tokenizer *t2 = NULL;
    CHECK_OK(sd_clip_tokenizer_load(d2, &t2));
    if (t2) {
        int32_t a[77], b[77];
        CHECK_OK(sd_clip_tokenizer_encode(t, "wow!", a, NULL));
        CHECK_OK(sd_clip_tokenizer_encode(t2, "wow!", b, NULL));
        CHECK(a[2] == 256 && b[2] == 0);
    }
    sd_clip_tokenizer_free(t2);
    sd_clip_tokenizer_free(t);
    sd_clip_tokenizer_thread_release();
    sd_clip_tokenizer_thread_release(); /* harmless twice */
}

/* Pathological inputs stay fast: a 200,000-letter word (heap BPE, O(n log n))
 * and a 1 MB caption of short words (stops after 75 tokens). */
TEST(long_inputs) {
    const char *d1 = real_dir(1);
    if (!d1) { CHECK_MSG(0, "no CLIP vocabulary"); return; }
    sd_clip_tokenizer *t = NULL;
    CHECK_OK(sd_clip_tokenizer_load(d1, &t));
    if (!t) return;
    size_t n = 200000;
    char *s = malloc(1 << 20);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        s[i] = (char)('a' + (x >> 16) % 26);
    }
    int32_t ids[77];
    int nt;
    size_t nx;
    double t0 = sd_now();
    CHECK_OK(sd_clip_tokenizer_encode_n(t, s, n, ids, &nt, &nx));
    double dt = sd_now() - t0;
    CHECK(nt == 77 && nx > 20000);
    int slow = getenv("SD_SANITIZED") != NULL;
    CHECK_MSG(dt < (slow ? 20.0 : 2.0), "200k-letter word took %.2f s", dt);
    printf("# 200,000-letter word: %zu tokens in %.3f s\n", nx, dt);
    for (size_t i = 0; i < (1u << 20); i++) s[i] = (i % 4 == 3) ? ' ' : "cat"[i % 4];
    t0 = sd_now();
    CHECK_OK(sd_clip_tokenizer_encode_n(t, s, 1u << 20, ids, &nt, NULL));
    dt = sd_now() - t0;
    CHECK(nt == 77 && ids[1] == 2368 && ids[75] == 2368);
    CHECK_MSG(dt < (slow ? 5.0 : 0.5), "1 MB caption took %.2f s", dt);
    free(s);
    sd_clip_tokenizer_free(t);
}

int main(void) {
    RUN(spec_vectors);
    RUN(invalid_utf8);
    RUN(tiny_vocab);
    RUN(bpe_merges);
    RUN(malformed_files);
    RUN(merge_window);
    RUN(threads);
    RUN(long_inputs);
    sd_clip_tokenizer_thread_release();
    return test_summary();
}
