/* test_shard.c — tar shards: names, writer/reader round trips, determinism,
 * zstd, atomic writes, truncation at many cut points, corrupt headers,
 * hostile names, limits, shard-set expansion, manifest, describe. */
#define _GNU_SOURCE
#include "test.h"

#include "core/fs.h"
#include "core/sha256.h"
#include "io/json.h"
#include "io/shard.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tpath(const char *name) { return sd_path_join(test_tmpdir(), name); }

/* ---- a hand-made tar builder (for inputs our writer refuses to make) ---- */

typedef struct {
    unsigned char *b;
    size_t n, cap;
} tbuf;

static void tb_put(tbuf *t, const void *p, size_t n) {
    if (t->n + n > t->cap) {
        t->cap = (t->n + n) * 2 + 4096;
        t->b = sd_xrealloc(t->b, t->cap);
    }
    memcpy(t->b + t->n, p, n);
    t->n += n;
}

static void header_checksum(unsigned char *h) {
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
}

/* one ustar entry; type '0' regular, '5' dir, '2' symlink, 'L' GNU long name */
static void tb_entry(tbuf *t, const char *name, char type, const void *data, size_t len) {
    unsigned char h[512] = {0};
    size_t nl = strlen(name);
    memcpy(h, name, nl > 100 ? 100 : nl);
    snprintf((char *)h + 100, 8, "%07o", 0444);
    snprintf((char *)h + 108, 8, "%07o", 0);
    snprintf((char *)h + 116, 8, "%07o", 0);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)len & 077777777777ull);
    snprintf((char *)h + 136, 12, "%011o", 0);
    h[156] = (unsigned char)type;
    if (type == '2') memcpy(h + 157, "target.txt", 10);
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    header_checksum(h);
    tb_put(t, h, 512);
    if (len) {
        tb_put(t, data, len);
        static const unsigned char zeros[512] = {0};
        if (len % 512) tb_put(t, zeros, 512 - len % 512);
    }
}

/* a regular member, via a GNU long-name entry when the name is long */
static void tb_file(tbuf *t, const char *name, const char *data) {
    if (strlen(name) > 100) tb_entry(t, "././@LongLink", 'L', name, strlen(name) + 1);
    tb_entry(t, name, '0', data, strlen(data));
}

static void tb_end(tbuf *t) {
    static const unsigned char zeros[1024] = {0};
    tb_put(t, zeros, 1024);
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

/* Read every sample of a shard; returns samples read (>= 0) or -1 on error.
 * Also collects "key:ext=len;" into log when given. */
static int read_all(const char *path, const sd_shard_read_opts *o, char *log, size_t cap) {
    sd_shard_reader *r;
    if (log) log[0] = 0;
    if (sd_shard_open(&r, path, o)) return -1;
    sd_shard_sample *s;
    int rc, n = 0;
    while ((rc = sd_shard_next(r, &s)) == 1) {
        n++;
        for (int i = 0; log && i < s->n; i++) {
            size_t l = strlen(log);
            snprintf(log + l, cap - l, "%s:%s=%zu;", s->key, s->files[i].ext, s->files[i].len);
        }
    }
    sd_shard_close(r);
    return rc < 0 ? -1 : n;
}

/* ---- names ---------------------------------------------------------------- */

TEST(split_name_matches_webdataset_regex) {
    /* expected values worked out from re.match(r"^((?:.*[/]|)[^.]+)[.]([^/]*)$") */
    struct { const char *name, *key, *ext; } cases[] = {
        {"000001.png", "000001", "png"},
        {"000001.latent.safetensors", "000001", "latent.safetensors"},
        {"dir/a.b.c", "dir/a", "b.c"},
        {"a.b/c.d", "a.b/c", "d"},
        {"x/y/z.TXT", "x/y/z", "TXT"},
        {"a/.b", "a/", "b"},          /* key ends with '/' (shorter prefix matches) */
        {"a/b/.c.d", "a/b/", "c.d"},
        {"a.x/.b", NULL, NULL},       /* the dot in "a.x" blocks every prefix */
        {".hidden", NULL, NULL},
        {"noext", NULL, NULL},
        {"x.y/z", NULL, NULL},        /* ext would contain '/' */
        {"trailing.", "trailing", ""},
        {"a//.b", "a//", "b"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t kl = 0;
        const char *ext = NULL;
        int m = sd_shard_split_name(cases[i].name, &kl, &ext);
        if (!cases[i].key) {
            CHECK_MSG(!m, "%s should not match", cases[i].name);
            continue;
        }
        CHECK_MSG(m, "%s should match", cases[i].name);
        if (!m) continue;
        CHECK_MSG(kl == strlen(cases[i].key) && !strncmp(cases[i].name, cases[i].key, kl), "%s: key %.*s", cases[i].name, (int)kl,
                  cases[i].name);
        CHECK_MSG(!strcmp(ext, cases[i].ext), "%s: ext %s", cases[i].name, ext);
    }
}

TEST(meta_names_and_formatting) {
    CHECK(sd_shard_is_meta_name("__meta__"));
    CHECK(sd_shard_is_meta_name("__"));          /* top-level check of webdataset */
    CHECK(sd_shard_is_meta_name("__x__/a.txt"));
    CHECK(!sd_shard_is_meta_name("___/a.txt"));  /* regex needs 4 chars */
    CHECK(!sd_shard_is_meta_name("__key__.txt"));
    CHECK(!sd_shard_is_meta_name("a/__x__"));
    char key[32];
    sd_shard_key(42, key);
    CHECK(!strcmp(key, "000000042"));
    sd_shard_key(1234567890123ull, key);
    CHECK(!strcmp(key, "1234567890123"));
    char *n = sd_shard_filename("prep", 7, 0);
    CHECK(!strcmp(n, "prep-000007.tar"));
    free(n);
    n = sd_shard_filename("latent", 123, 1);
    CHECK(!strcmp(n, "latent-000123.tar.zst"));
    free(n);
}

/* ---- writer / reader ------------------------------------------------------ */

/* sample i: members given out of order on purpose; contents depend on i */
static int write_test_shard(const char *path, int nsamples, int level) {
    sd_shard_writer *w;
    if (sd_shard_writer_open(&w, path, level)) return -1;
    for (int i = 0; i < nsamples; i++) {
        char key[32], txt[64], json[64];
        sd_shard_key((uint64_t)i, key);
        snprintf(txt, sizeof txt, "caption %d", i);
        snprintf(json, sizeof json, "{\"i\":%d}", i);
        size_t blen = 100 + 777 * (size_t)i;
        unsigned char *bin = sd_xmalloc(blen);
        for (size_t k = 0; k < blen; k++) bin[k] = (unsigned char)(k * 31 + (size_t)i);
        sd_shard_member m[4] = {
            {"txt", txt, strlen(txt)},
            {"latent.safetensors", bin, blen},
            {"json", json, strlen(json)},
            {"empty", NULL, 0},
        };
        int rc = sd_shard_write_sample(w, key, 4, m);
        free(bin);
        if (rc) { sd_shard_writer_abort(w); return -1; }
    }
    return sd_shard_writer_close(w, NULL);
}

TEST(roundtrip_plain) {
    char *p = tpath("rt-000000.tar");
    CHECK_OK(write_test_shard(p, 5, 0));
    sd_shard_reader *r;
    sd_shard_read_opts ho = {.hash = 1};
    CHECK_OK(sd_shard_open(&r, p, &ho));
    sd_shard_sample *s;
    int i = 0, rc;
    while ((rc = sd_shard_next(r, &s)) == 1) {
        char key[32];
        sd_shard_key((uint64_t)i, key);
        CHECK(!strcmp(s->key, key));
        CHECK(s->n == 4);
        /* sorted by extension, like webdataset's TarWriter */
        CHECK(!strcmp(s->files[0].ext, "empty") && !strcmp(s->files[1].ext, "json"));
        CHECK(!strcmp(s->files[2].ext, "latent.safetensors") && !strcmp(s->files[3].ext, "txt"));
        const sd_shard_file *t = sd_shard_find(s, "txt");
        char want[64];
        snprintf(want, sizeof want, "caption %d", i);
        CHECK(t && t->len == strlen(want) && !memcmp(t->data, want, t->len));
        const sd_shard_file *b = sd_shard_find(s, "latent.safetensors");
        CHECK(b && b->len == 100 + 777 * (size_t)i);
        int ok = 1;
        for (size_t k = 0; b && k < b->len; k++) ok &= b->data[k] == (unsigned char)(k * 31 + (size_t)i);
        CHECK(ok);
        CHECK(sd_shard_find(s, "empty")->len == 0);
        char nm[64];
        snprintf(nm, sizeof nm, "%s.empty", key);
        CHECK(!strcmp(s->files[0].name, nm));
        i++;
    }
    CHECK(rc == 0 && i == 5);
    sd_shard_stats st;
    sd_shard_get_stats(r, &st);
    CHECK(st.samples == 5 && st.members == 20 && !st.zstd && !st.compressed);
    char hex[65], hex2[65];
    uint64_t size, size2;
    CHECK_OK(sd_shard_sha256(r, hex, &size));
    sd_shard_close(r);
    CHECK_OK(sd_sha256_file(p, hex2));
    CHECK_OK(sd_file_size(p, &size2));
    CHECK(!strcmp(hex, hex2) && size == size2);
    CHECK(size % 10240 == 0); /* records of 10240 bytes, like tar and Python */
    /* header fields: ustar magic, mode 0444, mtime 0, uid/gid 0, empty uname */
    char *data;
    size_t n;
    CHECK_OK(sd_read_file(p, 1 << 24, &data, &n));
    CHECK(!memcmp(data + 257, "ustar", 6) || !memcmp(data + 257, "ustar\0", 6));
    CHECK(!strcmp(data, "000000000.empty"));
    CHECK(!strncmp(data + 100, "000444", 6));
    CHECK(!strncmp(data + 136, "00000000000", 11));
    CHECK(!strncmp(data + 108, "000000", 6) && !strncmp(data + 116, "000000", 6));
    CHECK(data[265] == 0 && data[297] == 0);
    free(data);
    free(p);
}

TEST(determinism_plain_and_zstd) {
    const char *names[] = {"det-a.tar", "det-b.tar", "det-a.tar.zst", "det-b.tar.zst"};
    char *h[4];
    for (int k = 0; k < 4; k++) {
        char *p = tpath(names[k]);
        CHECK_OK(write_test_shard(p, 7, k < 2 ? 0 : 5));
        h[k] = sd_xmalloc(65);
        CHECK_OK(sd_sha256_file(p, h[k]));
        free(p);
    }
    CHECK(!strcmp(h[0], h[1]));
    CHECK(!strcmp(h[2], h[3]));
    CHECK(strcmp(h[0], h[2]) != 0);
    for (int k = 0; k < 4; k++) free(h[k]);
}

TEST(roundtrip_zstd) {
    char *p = tpath("z-000000.tar.zst");
    CHECK_OK(write_test_shard(p, 6, 0));
    char *data;
    size_t n;
    CHECK_OK(sd_read_file(p, 1 << 24, &data, &n));
    CHECK((unsigned char)data[0] == 0x28 && (unsigned char)data[1] == 0xb5 && (unsigned char)data[2] == 0x2f &&
          (unsigned char)data[3] == 0xfd);
    free(data);
    char log[8192], log2[8192];
    char *q = tpath("z-000000.tar");
    CHECK_OK(write_test_shard(q, 6, 0));
    CHECK(read_all(p, NULL, log, sizeof log) == 6);
    CHECK(read_all(q, NULL, log2, sizeof log2) == 6);
    CHECK(!strcmp(log, log2));
    sd_shard_info info;
    CHECK_OK(sd_shard_scan(p, &info));
    CHECK(info.zstd == 1 && info.samples == 6 && info.members == 24);
    CHECK(!strcmp(info.first_key, "000000000") && !strcmp(info.last_key, "000000005"));
    free(p);
    free(q);
}

TEST(writer_close_info_matches_scan) {
    char *p = tpath("info-000000.tar");
    sd_shard_writer *w;
    CHECK_OK(sd_shard_writer_open(&w, p, 0));
    sd_shard_member m[2] = {{"txt", "hello", 5}, {"json", "{}", 2}};
    CHECK_OK(sd_shard_write_sample(w, "000000010", 2, m));
    CHECK_OK(sd_shard_write_sample(w, "000000011", 2, m));
    sd_shard_info a, b;
    CHECK_OK(sd_shard_writer_close(w, &a));
    CHECK_OK(sd_shard_scan(p, &b));
    CHECK(!strcmp(a.name, "info-000000.tar") && !strcmp(a.name, b.name));
    CHECK(a.samples == 2 && b.samples == 2 && a.members == 4 && b.members == 4);
    CHECK(a.bytes == b.bytes && a.member_bytes == 14 && b.member_bytes == 14);
    CHECK(!strcmp(a.sha256, b.sha256));
    CHECK(!strcmp(a.first_key, "000000010") && !strcmp(b.last_key, "000000011"));
    free(p);
}

TEST(writer_validation) {
    char *p = tpath("val-000000.tar");
    sd_shard_writer *w;
    CHECK_FAILS(sd_shard_writer_open(&w, "/nonexistent-dir/x.tar", 0), "cannot create");
    char *bad = tpath("x.zip");
    CHECK_FAILS(sd_shard_writer_open(&w, bad, 0), "must end in .tar");
    free(bad);
    CHECK_OK(sd_shard_writer_open(&w, p, 0));
    sd_shard_member ok = {"txt", "a", 1};
    CHECK_FAILS(sd_shard_write_sample(w, "a.b", 1, &ok), "invalid sample key");
    CHECK_FAILS(sd_shard_write_sample(w, "_k", 1, &ok), "invalid sample key");
    CHECK_FAILS(sd_shard_write_sample(w, "", 1, &ok), "invalid sample key");
    CHECK_FAILS(sd_shard_write_sample(w, "a/b", 1, &ok), "invalid sample key");
    CHECK_FAILS(sd_shard_write_sample(w, "k\n", 1, &ok), "invalid sample key");
    sd_shard_member up = {"PNG", "a", 1}, dotted = {"a..b", "a", 1}, lead = {".png", "a", 1}, slash = {"a/b", "a", 1};
    CHECK_FAILS(sd_shard_write_sample(w, "k", 1, &up), "invalid member extension");
    CHECK_FAILS(sd_shard_write_sample(w, "k", 1, &dotted), "invalid member extension");
    CHECK_FAILS(sd_shard_write_sample(w, "k", 1, &lead), "invalid member extension");
    CHECK_FAILS(sd_shard_write_sample(w, "k", 1, &slash), "invalid member extension");
    char longext[120];
    memset(longext, 'e', sizeof longext - 1);
    longext[sizeof longext - 1] = 0;
    sd_shard_member lng = {longext, "a", 1};
    CHECK_FAILS(sd_shard_write_sample(w, "k", 1, &lng), "invalid member extension");
    sd_shard_member dup[2] = {{"txt", "a", 1}, {"txt", "b", 1}};
    CHECK_FAILS(sd_shard_write_sample(w, "k", 2, dup), "duplicate extension txt");
    CHECK_FAILS(sd_shard_write_sample(w, "k", 0, dup), "members");
    /* validation errors do not spoil the shard */
    CHECK_OK(sd_shard_write_sample(w, "k", 1, &ok));
    CHECK_OK(sd_shard_writer_close(w, NULL));
    CHECK(read_all(p, NULL, NULL, 0) == 1);
    free(p);
}

TEST(atomic_write) {
    char *dir = tpath("atomic");
    CHECK_OK(sd_mkdir_p(dir));
    char *p = sd_path_join(dir, "a-000000.tar");
    sd_shard_writer *w;
    CHECK_OK(sd_shard_writer_open(&w, p, 0));
    sd_shard_member m = {"txt", "x", 1};
    CHECK_OK(sd_shard_write_sample(w, "k1", 1, &m));
    CHECK(!sd_is_file(p)); /* nothing with the final name until close */
    char **names;
    int n = sd_list_dir(dir, &names);
    CHECK(n == 1 && names[0][0] == '.'); /* only the dot-named temporary */
    sd_free_strv(names, n);
    sd_shard_writer_abort(w);
    n = sd_list_dir(dir, &names);
    CHECK(n == 0);
    sd_free_strv(names, n);
    CHECK_OK(sd_shard_writer_open(&w, p, 0));
    CHECK_OK(sd_shard_write_sample(w, "k1", 1, &m));
    CHECK_OK(sd_shard_writer_close(w, NULL));
    n = sd_list_dir(dir, &names);
    CHECK(n == 1 && !strcmp(names[0], "a-000000.tar"));
    sd_free_strv(names, n);
    free(p);
    free(dir);
}

/* ---- damaged input -------------------------------------------------------- */

/* Cut a shard at many points: a cut before the end-of-archive blocks must be
 * an error; a reader must never report success with fewer samples. */
static void cut_points(const char *src, const char *name, int nsamples, int require_error_before, int *nfail, int *nbad) {
    char *data;
    size_t n;
    *nfail = *nbad = 0;
    if (sd_read_file(src, 1 << 24, &data, &n)) { (*nbad)++; return; }
    char *cut = tpath(name);
    int ncuts = 0;
    for (size_t c = 0; c < n; c += (c < 2048 ? 7 : 97)) {
        ncuts++;
        write_bytes(cut, data, c);
        int got = read_all(cut, NULL, NULL, 0);
        if (got < 0) (*nfail)++;
        else if (got != nsamples) (*nbad)++; /* silent loss */
        else if ((int)c < require_error_before) (*nbad)++;
    }
    printf("# %s: %zu bytes, %d cut points, %d read errors\n", name, n, ncuts, *nfail);
    /* every 512-byte boundary too */
    for (size_t c = 0; c < n; c += 512) {
        write_bytes(cut, data, c);
        int got = read_all(cut, NULL, NULL, 0);
        if (got >= 0 && (got != nsamples || (int)c < require_error_before)) {
            (*nbad)++;
            printf("# cut at %zu read %d samples without error\n", c, got);
        }
    }
    free(cut);
    free(data);
}

TEST(truncated_plain_tar) {
    char *p = tpath("trunc-src.tar");
    CHECK_OK(write_test_shard(p, 4, 0));
    /* the data ends at the last member's padded end: find it from the file
     * (the first of the two zero blocks after the last header+data) */
    char *data;
    size_t n;
    CHECK_OK(sd_read_file(p, 1 << 24, &data, &n));
    size_t end = n;
    while (end >= 512) {
        int zero = 1;
        for (size_t k = end - 512; k < end && zero; k++) zero = data[k] == 0;
        if (!zero) break;
        end -= 512;
    }
    free(data);
    int nfail, nbad;
    cut_points(p, "trunc.tar", 4, (int)end + 1, &nfail, &nbad);
    CHECK_MSG(nbad == 0, "%d cuts read wrongly", nbad);
    CHECK(nfail > 20);
    /* the message names the shard and the member */
    char *cut = tpath("trunc2.tar");
    CHECK_OK(sd_read_file(p, 1 << 24, &data, &n));
    /* layout: .empty header @0, .json header @512 + data @1024, .latent header @1536 + data @2048 */
    write_bytes(cut, data, 1536 + 100); /* inside the 3rd header */
    CHECK_FAILS(read_all(cut, NULL, NULL, 0), "trunc2.tar: truncated or corrupt archive after member 000000000.json");
    write_bytes(cut, data, 2048 + 50); /* inside the 3rd member's data */
    CHECK_FAILS(read_all(cut, NULL, NULL, 0), "trunc2.tar: member 000000000.latent.safetensors: truncated");
    free(data);
    free(cut);
    free(p);
}

TEST(truncated_zstd) {
    char *p = tpath("trunc-src.tar.zst");
    CHECK_OK(write_test_shard(p, 4, 0));
    int nfail, nbad;
    cut_points(p, "trunc.tar.zst", 4, 0, &nfail, &nbad);
    CHECK_MSG(nbad == 0, "%d cuts read wrongly", nbad);
    CHECK(nfail > 10);
    free(p);
}

TEST(corrupt_headers) {
    char *p = tpath("corrupt-src.tar");
    CHECK_OK(write_test_shard(p, 3, 0));
    char *data;
    size_t n;
    CHECK_OK(sd_read_file(p, 1 << 24, &data, &n));
    char *q = tpath("corrupt.tar");
    /* 1: a flipped byte in the second header's name: checksum fails */
    data[512 + 3] ^= 0x55;
    write_bytes(q, data, n);
    CHECK_FAILS(read_all(q, NULL, NULL, 0), "after member 000000000.empty");
    data[512 + 3] ^= 0x55;
    /* 2: a size field rewritten to 8 GiB-1 with a valid checksum */
    unsigned char *h = (unsigned char *)data + 512;
    memcpy(h + 124, "77777777777", 11);
    header_checksum(h);
    write_bytes(q, data, n);
    CHECK_FAILS(read_all(q, NULL, NULL, 0), "000000000.json");
    sd_shard_read_opts big = {.max_member = 1ull << 40};
    CHECK_FAILS(read_all(q, &big, NULL, 0), "000000000.json");
    /* 3: garbage instead of a tar */
    for (size_t k = 0; k < n; k++) data[k] = (char)(k * 7 + 3);
    write_bytes(q, data, n);
    CHECK(read_all(q, NULL, NULL, 0) < 0);
    CHECK(strstr(sd_last_error(), "corrupt.tar") != NULL);
    /* 4: empty file */
    write_bytes(q, data, 0);
    CHECK_FAILS(read_all(q, NULL, NULL, 0), "corrupt.tar: empty file");
    /* 5: random single-byte corruption never crashes and never loses samples silently */
    char *orig;
    size_t on;
    CHECK_OK(sd_read_file(p, 1 << 24, &orig, &on));
    int silent = 0;
    uint32_t x = 12345;
    for (int trial = 0; trial < 300; trial++) {
        memcpy(data, orig, on);
        for (int k = 0; k < 3; k++) {
            x = x * 1664525u + 1013904223u;
            size_t pos = (x >> 8) % on;
            x = x * 1664525u + 1013904223u;
            data[pos] = (char)(x >> 24);
        }
        write_bytes(q, data, on);
        int got = read_all(q, NULL, NULL, 0);
        if (got >= 0 && got < 3) silent++; /* data bytes may change; sample count may not drop */
    }
    CHECK_MSG(silent == 0, "%d corruptions lost samples silently", silent);
    free(orig);
    free(data);
    free(q);
    free(p);
}

TEST(hostile_names_and_grouping) {
    tbuf t = {0};
    tb_entry(&t, "dir/", '5', NULL, 0);                         /* skipped: not regular */
    tb_entry(&t, "link.txt", '2', NULL, 0);                      /* skipped: symlink */
    tb_file(&t, "__meta__", "m");                                 /* skipped: meta */
    tb_file(&t, "README", "no dot");                              /* skipped: no key */
    tb_file(&t, "../../etc/passwd.txt", "hostile but only a name");
    tb_file(&t, "s1.TXT", "upper");                               /* ext lower-cased */
    tb_file(&t, "s1.json", "{}");
    tb_file(&t, "s2.txt", "two");
    tb_file(&t, "s1.txt", "again");                               /* not adjacent: a new sample */
    char longname[300];
    memset(longname, 'k', 250);
    strcpy(longname + 250, ".txt");
    tb_file(&t, longname, "long");                                /* GNU long name */
    tb_file(&t, "ctl\x01\x7f\xff.txt", "ctl");
    tb_end(&t);
    char *p = tpath("hostile.tar");
    write_bytes(p, t.b, t.n);
    char log[4096];
    CHECK(read_all(p, NULL, log, sizeof log) == 6);
    char want[1024];
    snprintf(want, sizeof want, "../../etc/passwd:txt=23;s1:txt=5;s1:json=2;s2:txt=3;s1:txt=5;%.250s:txt=4;ctl\x01\x7f\xff:txt=3;",
             longname);
    CHECK_MSG(!strcmp(log, want), "got %s", log);
    sd_shard_reader *r;
    CHECK_OK(sd_shard_open(&r, p, NULL));
    sd_shard_sample *s;
    while (sd_shard_next(r, &s) == 1) {}
    sd_shard_stats st;
    sd_shard_get_stats(r, &st);
    CHECK(st.skipped_nonregular == 2 && st.skipped_meta == 1 && st.skipped_nokey == 1 && st.samples == 6);
    sd_shard_close(r);
    sd_shard_read_opts strict = {.strict = 1};
    CHECK_FAILS(read_all(p, &strict, NULL, 0), "dir/: not a regular file");
    free(t.b);

    /* duplicate extension inside a sample (case-insensitive, like webdataset) */
    memset(&t, 0, sizeof t);
    tb_file(&t, "a.png", "1");
    tb_file(&t, "a.PNG", "2");
    tb_end(&t);
    write_bytes(p, t.b, t.n);
    CHECK_FAILS(read_all(p, NULL, NULL, 0), "hostile.tar: member a.PNG: duplicate extension \"png\"");
    free(t.b);

    /* control characters in names are escaped in messages */
    memset(&t, 0, sizeof t);
    tb_file(&t, "b\n.txt", "1");
    tb_file(&t, "b\n.TXT", "2");
    tb_end(&t);
    write_bytes(p, t.b, t.n);
    CHECK_FAILS(read_all(p, NULL, NULL, 0), "member b\\x0a.TXT");
    free(t.b);

    /* strict: names without a key */
    memset(&t, 0, sizeof t);
    tb_file(&t, "nodot", "1");
    tb_end(&t);
    write_bytes(p, t.b, t.n);
    CHECK(read_all(p, NULL, NULL, 0) == 0);
    CHECK_FAILS(read_all(p, &strict, NULL, 0), "member nodot: no KEY.EXT name");
    free(t.b);
    free(p);
}

TEST(size_limits) {
    char *p = tpath("limits-000000.tar");
    CHECK_OK(write_test_shard(p, 3, 0)); /* largest member: 100 + 777*2 = 1654 bytes */
    sd_shard_read_opts o = {.max_member = 1000};
    CHECK_FAILS(read_all(p, &o, NULL, 0), "member 000000002.latent.safetensors: 1654 bytes exceeds the limit of 1000");
    sd_shard_read_opts o2 = {.max_sample = 1000};
    CHECK_FAILS(read_all(p, &o2, NULL, 0), "sample exceeds 1000 bytes");
    CHECK(read_all(p, NULL, NULL, 0) == 3);
    free(p);
}

TEST(open_errors) {
    /* (gzip'ed tars from Python are read in tests/py/test_shards_python.py) */
    CHECK_FAILS(read_all(test_tmpdir(), NULL, NULL, 0), "is a directory");
    char *p = tpath("missing.tar");
    CHECK_FAILS(read_all(p, NULL, NULL, 0), "missing.tar: No such file");
    free(p);
}

/* ---- sets, manifest, describe ------------------------------------------- */

TEST(expand_braces_globs_dirs) {
    char **v;
    int n;
    CHECK_OK(sd_shard_expand("x-{000000..000003}.tar", &v, &n));
    CHECK(n == 4 && !strcmp(v[0], "x-000000.tar") && !strcmp(v[3], "x-000003.tar"));
    sd_free_strv(v, n);
    CHECK_OK(sd_shard_expand("a{1..10..3}b", &v, &n));
    CHECK(n == 4 && !strcmp(v[1], "a4b") && !strcmp(v[3], "a10b"));
    sd_free_strv(v, n);
    CHECK_OK(sd_shard_expand("{a,b{1..2},c}-{x,y}.tar::last.tar", &v, &n));
    const char *want[] = {"a-x.tar", "a-y.tar", "b1-x.tar", "b1-y.tar", "b2-x.tar", "b2-y.tar", "c-x.tar", "c-y.tar", "last.tar"};
    CHECK(n == 9);
    for (int i = 0; i < n && i < 9; i++) CHECK_MSG(!strcmp(v[i], want[i]), "%d: %s", i, v[i]);
    sd_free_strv(v, n);
    CHECK_OK(sd_shard_expand("{3..1}{x}", &v, &n));
    CHECK(n == 3 && !strcmp(v[0], "3{x}") && !strcmp(v[2], "1{x}"));
    sd_free_strv(v, n);
    CHECK_OK(sd_shard_expand("{08..10}", &v, &n));
    CHECK(n == 3 && !strcmp(v[0], "08") && !strcmp(v[2], "10"));
    sd_free_strv(v, n);
    CHECK_FAILS(sd_shard_expand("x-{0..3.tar", &v, &n), "unbalanced");
    CHECK_FAILS(sd_shard_expand("{0..99999999}", &v, &n), "range of");
    CHECK_FAILS(sd_shard_expand("", &v, &n), "empty");

    /* globs, sorted */
    char *dir = tpath("globset");
    CHECK_OK(sd_mkdir_p(dir));
    for (int i = 2; i >= 0; i--) {
        char name[64];
        snprintf(name, sizeof name, "g-%06d.tar", i);
        char *p = sd_path_join(dir, name);
        CHECK_OK(write_test_shard(p, 1, 0));
        free(p);
    }
    char pat[600];
    snprintf(pat, sizeof pat, "%s/g-*.tar", dir);
    CHECK_OK(sd_shard_expand(pat, &v, &n));
    CHECK(n == 3 && strstr(v[0], "g-000000.tar") && strstr(v[2], "g-000002.tar"));
    sd_free_strv(v, n);
    snprintf(pat, sizeof pat, "%s/nomatch-*.tar", dir);
    CHECK_FAILS(sd_shard_expand(pat, &v, &n), "no shard matches");
    /* a directory needs its manifest */
    CHECK_FAILS(sd_shard_expand(dir, &v, &n), "no manifest.json");
    sd_shard_manifest m;
    sd_shard_manifest_init(&m, "test");
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "g-%06d.tar", i);
        char *p = sd_path_join(dir, name);
        sd_shard_info info;
        CHECK_OK(sd_shard_scan(p, &info));
        sd_shard_manifest_add(&m, &info);
        free(p);
    }
    CHECK_OK(sd_shard_manifest_write(&m, dir));
    CHECK_FAILS(sd_shard_expand(dir, &v, &n), "incomplete");
    m.complete = 1;
    CHECK_OK(sd_shard_manifest_write(&m, dir));
    CHECK_OK(sd_shard_expand(dir, &v, &n));
    CHECK(n == 3 && strstr(v[1], "globset/g-000001.tar"));
    sd_free_strv(v, n);
    sd_shard_manifest_free(&m);
    free(dir);
}

TEST(manifest_roundtrip_and_verify) {
    char *dir = tpath("mset");
    CHECK_OK(sd_mkdir_p(dir));
    sd_shard_manifest m;
    sd_shard_manifest_init(&m, SD_SHARD_KIND_PREP);
    for (int i = 0; i < 2; i++) {
        char *name = sd_shard_filename("prep", i, i == 1);
        char *p = sd_path_join(dir, name);
        sd_shard_writer *w;
        CHECK_OK(sd_shard_writer_open(&w, p, 0));
        for (int k = 0; k < 3 + i; k++) {
            char key[32];
            sd_shard_key((uint64_t)(10 * i + k), key);
            sd_shard_member mem = {"txt", key, strlen(key)};
            CHECK_OK(sd_shard_write_sample(w, key, 1, &mem));
        }
        sd_shard_info info;
        CHECK_OK(sd_shard_writer_close(w, &info));
        sd_shard_manifest_add(&m, &info);
        free(p);
        free(name);
    }
    cJSON *prov = cJSON_CreateObject();
    cJSON_AddStringToObject(prov, "tool", "test_shard");
    cJSON_AddNumberToObject(prov, "skipped", 2);
    sd_shard_manifest_set_provenance(&m, prov);
    m.complete = 1;
    CHECK_OK(sd_shard_manifest_write(&m, dir));
    sd_shard_manifest r;
    CHECK_OK(sd_shard_manifest_read(dir, &r));
    CHECK(r.n == 2 && r.complete && !strcmp(r.kind, "prep") && sd_shard_manifest_samples(&r) == 7);
    CHECK(!strcmp(r.shards[1].name, "prep-000001.tar.zst") && r.shards[1].zstd && r.shards[1].samples == 4);
    CHECK(!memcmp(&r.shards[0], &m.shards[0], sizeof r.shards[0]));
    CHECK(!memcmp(&r.shards[1], &m.shards[1], sizeof r.shards[1]));
    CHECK(!strcmp(sd_json_str(r.provenance, "tool", ""), "test_shard"));
    CHECK_OK(sd_shard_manifest_verify(&r, dir));
    /* damage: one changed byte, a truncation, a missing file */
    char *p0 = sd_path_join(dir, "prep-000000.tar");
    char *data;
    size_t n;
    CHECK_OK(sd_read_file(p0, 1 << 20, &data, &n));
    data[600] ^= 1;
    write_bytes(p0, data, n);
    CHECK_FAILS(sd_shard_verify(dir, &r.shards[0]), "sha256 differs");
    write_bytes(p0, data, n - 1);
    CHECK_FAILS(sd_shard_verify(dir, &r.shards[0]), "the manifest says");
    unlink(p0);
    CHECK_FAILS(sd_shard_manifest_verify(&r, dir), "prep-000000.tar: missing");
    CHECK_OK(sd_shard_verify(dir, &r.shards[1]));
    free(data);
    free(p0);
    sd_shard_manifest_free(&r);
    sd_shard_manifest_free(&m);

    /* malformed manifests */
    char *mf = sd_path_join(dir, "manifest.json");
    struct { const char *text, *err; } bad[] = {
        {"[]", "not a shard-set manifest"},
        {"{\"format\":\"sdtools-shards\",\"version\":2}", "unsupported manifest version"},
        {"{\"format\":\"sdtools-shards\",\"version\":1,\"kind\":\"x\",\"complete\":true,\"samples\":0}", "needs"},
        {"{\"format\":\"sdtools-shards\",\"version\":1,\"kind\":\"x\",\"complete\":true,\"samples\":1,\"shards\":[{\"name\":\"../a.tar\","
         "\"samples\":1,\"bytes\":1,\"sha256\":\"" "0000000000000000000000000000000000000000000000000000000000000000\"}]}",
         "plain file name"},
        {"{\"format\":\"sdtools-shards\",\"version\":1,\"kind\":\"x\",\"complete\":true,\"samples\":1,\"shards\":[{\"name\":\"a.tar\","
         "\"samples\":1,\"bytes\":1,\"sha256\":\"00\"}]}",
         "64 lower-case hex"},
        {"{\"format\":\"sdtools-shards\",\"version\":1,\"kind\":\"x\",\"complete\":true,\"samples\":1,\"shards\":[{\"name\":\"a.tar\","
         "\"samples\":-1,\"bytes\":1,\"sha256\":\"00\"}]}",
         "non-negative"},
        {"{\"format\":\"sdtools-shards\",\"version\":1,\"kind\":\"x\",\"complete\":true,\"samples\":5,\"shards\":[{\"name\":\"a.tar\","
         "\"samples\":1,\"bytes\":1,\"sha256\":\"" "0000000000000000000000000000000000000000000000000000000000000000\"}]}",
         "add up to 1"},
        {"{\"format\":\"sdtools-shards\",\"version\":1,\"kind\":\"x\",\"complete\":true,\"samples\":2,\"shards\":[{\"name\":\"a.tar\","
         "\"samples\":1,\"bytes\":1,\"sha256\":\"" "0000000000000000000000000000000000000000000000000000000000000000\"},{\"name\":\"a.tar\","
         "\"samples\":1,\"bytes\":1,\"sha256\":\"" "0000000000000000000000000000000000000000000000000000000000000000\"}]}",
         "listed twice"},
        {"{\"format\":", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_bytes(mf, bad[i].text, strlen(bad[i].text));
        sd_shard_manifest x;
        CHECK_FAILS(sd_shard_manifest_read(dir, &x), bad[i].err);
    }
    free(mf);
    free(dir);
}

TEST(describe_text_and_json) {
    char *dir = tpath("dset");
    CHECK_OK(sd_mkdir_p(dir));
    sd_shard_manifest m;
    sd_shard_manifest_init(&m, "latent");
    for (int i = 0; i < 2; i++) {
        char *name = sd_shard_filename("latent", i, i);
        char *p = sd_path_join(dir, name);
        CHECK_OK(write_test_shard(p, 2 + i, 0));
        sd_shard_info info;
        CHECK_OK(sd_shard_scan(p, &info));
        sd_shard_manifest_add(&m, &info);
        free(p);
        free(name);
    }
    m.complete = 1;
    CHECK_OK(sd_shard_manifest_write(&m, dir));
    char *buf;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    CHECK_OK(sd_shard_describe(dir, 0, f));
    fclose(f);
    CHECK(strstr(buf, "kind latent, complete, 2 shards, 5 samples") != NULL);
    CHECK(strstr(buf, "latent-000000.tar: tar, 10240 bytes, 2 samples, 8 members") != NULL);
    CHECK(strstr(buf, "latent-000001.tar.zst: tar+zstd") != NULL);
    CHECK(strstr(buf, "extensions: empty 5 json 5 latent.safetensors 5 txt 5") != NULL);
    free(buf);
    f = open_memstream(&buf, &len);
    CHECK_OK(sd_shard_describe(dir, 1, f));
    fclose(f);
    cJSON *j;
    CHECK_OK(sd_json_parse(buf, len, "describe", &j));
    if (j) {
        cJSON *t = cJSON_GetObjectItem(j, "total");
        CHECK(sd_json_int(t, "samples", -1) == 5 && sd_json_int(t, "members", -1) == 20);
        CHECK(sd_json_int(cJSON_GetObjectItem(t, "extensions"), "txt", -1) == 5);
        cJSON *s1 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "shards"), 1);
        CHECK(!strcmp(sd_json_str(s1, "compression", ""), "zstd") && sd_json_bool(s1, "manifest_ok", 0) == 1);
        CHECK(sd_json_bool(j, "ok", 0) == 1);
        cJSON_Delete(j);
    }
    free(buf);
    /* a damaged shard: describe reports it and fails */
    char *p1 = sd_path_join(dir, "latent-000000.tar");
    char *data;
    size_t n;
    CHECK_OK(sd_read_file(p1, 1 << 20, &data, &n));
    write_bytes(p1, data, 1000);
    free(data);
    f = open_memstream(&buf, &len);
    CHECK_FAILS(sd_shard_describe(dir, 0, f), "1 of 2 shards bad; first:");
    fclose(f);
    CHECK(strstr(buf, "ERROR:") != NULL);
    free(buf);
    /* single file */
    char *p2 = sd_path_join(dir, "latent-000001.tar.zst");
    f = open_memstream(&buf, &len);
    CHECK_OK(sd_shard_describe(p2, 0, f));
    fclose(f);
    CHECK(strstr(buf, "3 samples, 12 members") != NULL && strstr(buf, "keys 000000000..000000002") != NULL);
    free(buf);
    /* a single unreadable path: no output, the plain error */
    char *p3 = sd_path_join(dir, "nosuch.tar");
    f = open_memstream(&buf, &len);
    CHECK_FAILS(sd_shard_describe(p3, 1, f), "nosuch.tar: No such file");
    fclose(f);
    CHECK(len == 0);
    free(buf);
    free(p3);
    free(p1);
    free(p2);
    sd_shard_manifest_free(&m);
    free(dir);
}

/* ---- member conventions ---------------------------------------------------- */

TEST(prep_meta_json) {
    char *caps[] = {"a cat", "ein Kätzchen \xe2\x9c\x93", "quote \" and \\ and \n"};
    sd_prep_meta m = {.index = 12, .source = "sub/img 1.png", .original_width = 640, .original_height = 480,
                      .resized_width = 683, .resized_height = 512, .crop_ltrb = {85, 0, 597, 512}, .random_flip = 1,
                      .ncaptions = 3, .captions = caps};
    char *s = sd_prep_meta_to_json(&m);
    sd_prep_meta b;
    CHECK_OK(sd_prep_meta_from_json(s, strlen(s), "x.json", &b));
    CHECK(b.index == 12 && !strcmp(b.source, m.source) && b.original_width == 640 && b.resized_height == 512);
    CHECK(b.crop_ltrb[0] == 85 && b.crop_ltrb[2] == 597 && b.random_flip == 1 && b.ncaptions == 3);
    for (int i = 0; i < 3 && i < b.ncaptions; i++) CHECK(!strcmp(b.captions[i], caps[i]));
    sd_prep_meta_free(&b);
    free(s);
    const char *bad[][2] = {
        {"{}", "\"index\""},
        {"{\"index\":1,\"original_width\":1,\"original_height\":1,\"resized_width\":4,\"resized_height\":4,\"source\":\"a\","
         "\"crop_ltrb\":[0,0,5,4],\"random_flip\":false,\"captions\":[\"x\"]}", "crop_ltrb"},
        {"{\"index\":1,\"original_width\":1,\"original_height\":1,\"resized_width\":4,\"resized_height\":4,\"source\":\"a\","
         "\"crop_ltrb\":[0,0,4,4],\"random_flip\":0,\"captions\":[\"x\"]}", "random_flip"},
        {"{\"index\":1,\"original_width\":1,\"original_height\":1,\"resized_width\":4,\"resized_height\":4,\"source\":\"a\","
         "\"crop_ltrb\":[0,0,4,4],\"random_flip\":true,\"captions\":[]}", "captions"},
        {"{\"index\":1,\"original_width\":1,\"original_height\":1,\"resized_width\":4,\"resized_height\":4,\"source\":\"a\","
         "\"crop_ltrb\":[0,0,4,4],\"random_flip\":true,\"captions\":[\"\xff\"]}", "not a UTF-8 string"},
        {"{\"index\":-1}", "\"index\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sd_prep_meta x;
        CHECK_FAILS(sd_prep_meta_from_json(bad[i][0], strlen(bad[i][0]), "x.json", &x), bad[i][1]);
    }
}

TEST(tokens_pack_unpack) {
    int32_t ids[2 * SD_TOKENS_LEN];
    for (int i = 0; i < 2 * SD_TOKENS_LEN; i++) ids[i] = 49407 - i;
    unsigned char *buf;
    size_t len;
    CHECK_OK(sd_tokens_pack(ids, 2, "sha256:abc", &buf, &len));
    int32_t *back;
    int ncap;
    char *fp;
    CHECK_OK(sd_tokens_unpack(buf, len, "k.tokens.safetensors", &back, &ncap, &fp));
    CHECK(ncap == 2 && !memcmp(back, ids, sizeof ids) && fp && !strcmp(fp, "sha256:abc"));
    free(back);
    free(fp);
    CHECK_FAILS(sd_tokens_unpack(buf, len / 2, "k.tokens.safetensors", &back, &ncap, &fp), "k.tokens.safetensors");
    free(buf);
}

int main(void) {
    RUN(split_name_matches_webdataset_regex);
    RUN(meta_names_and_formatting);
    RUN(roundtrip_plain);
    RUN(determinism_plain_and_zstd);
    RUN(roundtrip_zstd);
    RUN(writer_close_info_matches_scan);
    RUN(writer_validation);
    RUN(atomic_write);
    RUN(truncated_plain_tar);
    RUN(truncated_zstd);
    RUN(corrupt_headers);
    RUN(hostile_names_and_grouping);
    RUN(size_limits);
    RUN(open_errors);
    RUN(expand_braces_globs_dirs);
    RUN(manifest_roundtrip_and_verify);
    RUN(describe_text_and_json);
    RUN(prep_meta_json);
    RUN(tokens_pack_unpack);
    sd_rm_rf(test_tmpdir());
    return test_summary();
}
