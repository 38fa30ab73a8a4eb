/* test_core.c — errors, arenas, dtype conversions, Philox, SHA-256, fs. */
#include "test.h"

#include "core/arena.h"
#include "core/fs.h"
#include "core/rng.h"
#include "core/sha256.h"
#include "core/tensor.h"

#include <stdint.h>
#include <unistd.h>

TEST(error_messages) {
    CHECK(sd_set_error("bad %s %d", "thing", 3) == -1);
    CHECK(!strcmp(sd_last_error(), "bad thing 3"));
    sd_error_prefix("file.bin");
    CHECK(!strcmp(sd_last_error(), "file.bin: bad thing 3"));
    sd_clear_error();
    CHECK(sd_last_error()[0] == 0);
    size_t out;
    CHECK(sd_mul_size(SIZE_MAX / 2, 3, &out) == -1);
    CHECK(sd_mul_size(1000, 1000, &out) == 0 && out == 1000000);
    CHECK(sd_add_size(SIZE_MAX, 1, &out) == -1);
}

TEST(arena_alignment_and_reset) {
    sd_arena a;
    CHECK_OK(sd_arena_init(&a, 1 << 20));
    char *p = sd_arena_alloc(&a, 3);
    char *q = sd_arena_alloc(&a, 100);
    CHECK(((uintptr_t)p % 64) == 0 && ((uintptr_t)q % 64) == 0);
    CHECK(q - p == 64);
    size_t m = sd_arena_mark(&a);
    float *f = sd_arena_floats(&a, 1000);
    CHECK(f != NULL);
    sd_arena_reset(&a, m);
    CHECK((void *)sd_arena_floats(&a, 10) == (void *)f); /* memory reused */
    CHECK(a.peak >= 4000);
    CHECK(sd_arena_alloc(&a, 2 << 20) == NULL);
    CHECK(strstr(sd_last_error(), "arena full") != NULL);
    sd_arena_free(&a);
}

TEST(f16_conversion_exhaustive) {
    /* every f16 bit pattern round-trips through f32 (NaNs stay NaN) */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sd_f16_to_f32((uint16_t)h);
        uint16_t back = sd_f32_to_f16(f);
        if (f != f) { if ((back & 0x7c00) != 0x7c00 || !(back & 0x3ff)) bad++; }
        else if (back != h) bad++;
    }
    CHECK(bad == 0);
    CHECK(sd_f16_to_f32(0x3c00) == 1.0f);
    CHECK(sd_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(sd_f16_to_f32(0x0001) == 0x1p-24f);
    /* round to nearest even */
    CHECK(sd_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);          /* tie -> even (down) */
    CHECK(sd_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02);      /* tie -> even (up) */
    CHECK(sd_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3c01);
    CHECK(sd_f32_to_f16(65519.0f) == 0x7bff);
    CHECK(sd_f32_to_f16(65520.0f) == 0x7c00);                 /* rounds to Inf */
    CHECK(sd_f32_to_f16(0x1p-25f) == 0x0000);                 /* tie -> 0 */
    CHECK(sd_f32_to_f16(0x1p-25f * 1.5f) == 0x0001);
    CHECK(sd_f32_to_f16(-0.0f) == 0x8000);
    CHECK(sd_f32_to_f16(1e-30f) == 0);
    CHECK(sd_f32_to_f16(INFINITY) == 0x7c00);
}

TEST(bf16_conversion) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sd_bf16_to_f32((uint16_t)h);
        uint16_t back = sd_f32_to_bf16(f);
        if (f == f && back != h) bad++;
        if (f != f && (back & 0x7f80) != 0x7f80) bad++;
    }
    CHECK(bad == 0);
    CHECK(sd_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(sd_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);          /* tie -> even */
    CHECK(sd_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82);
    CHECK(sd_f32_to_bf16(3.4e38f) == 0x7f80);                 /* overflows to Inf */
}

TEST(minifloats) {
    float v[4];
    unsigned char e4m3[4] = {0x38, 0x7e, 0x7f, 0x01};         /* 1.0, 448, NaN, 2^-9 */
    CHECK_OK(sd_convert_to_f32(SD_F8_E4M3, e4m3, v, 4));
    CHECK(v[0] == 1.0f && v[1] == 448.0f && v[2] != v[2] && v[3] == 0x1p-9f);
    unsigned char e5m2[3] = {0x3c, 0x7c, 0xfb};               /* 1.0, Inf, -57344 */
    CHECK_OK(sd_convert_to_f32(SD_F8_E5M2, e5m2, v, 3));
    CHECK(v[0] == 1.0f && isinf(v[1]) && v[2] == -57344.0f);
    unsigned char f4[1] = {0x72};                             /* low nibble 2 = 1.0, high 7 = 6.0 */
    CHECK_OK(sd_convert_to_f32(SD_F4, f4, v, 2));
    CHECK(v[0] == 1.0f && v[1] == 6.0f);
    int64_t i64 = -5;
    CHECK_OK(sd_convert_to_f32(SD_I64, &i64, v, 1));
    CHECK(v[0] == -5.0f);
}

TEST(dtype_names_and_sizes) {
    for (int t = 1; t < SD_DTYPE_COUNT; t++) {
        const char *n = sd_dtype_name((sd_dtype)t);
        CHECK(n && (int)sd_dtype_from_name(n, strlen(n)) == t);
    }
    CHECK(sd_dtype_from_name("F33", 3) == SD_DTYPE_INVALID);
    uint64_t nb;
    CHECK(sd_dtype_nbytes(SD_F4, 3, &nb) == -1); /* half a byte left over */
    CHECK(sd_dtype_nbytes(SD_F4, 4, &nb) == 0 && nb == 2);
    CHECK(sd_dtype_nbytes(SD_F6_E2M3, 4, &nb) == 0 && nb == 3);
    int64_t shape[3] = {INT64_MAX / 2, 3, 1}, n;
    CHECK(sd_shape_numel(3, shape, &n) == -1);
}

TEST(philox_known_answers) {
    /* Random123 kat_vectors for philox4x32_10 */
    uint32_t out[4];
    uint32_t c0[4] = {0, 0, 0, 0}, k0[2] = {0, 0};
    sd_philox4x32_10(c0, k0, out);
    CHECK(out[0] == 0x6627e8d5u && out[1] == 0xe169c58du && out[2] == 0xbc57ac4cu && out[3] == 0x9b00dbd8u);
    uint32_t c1[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, k1[2] = {0xffffffffu, 0xffffffffu};
    sd_philox4x32_10(c1, k1, out);
    CHECK(out[0] == 0x408f276du && out[1] == 0x41c83b0eu && out[2] == 0xa20bc7c6u && out[3] == 0x6d5451fdu);
    uint32_t c2[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, k2[2] = {0xa4093822u, 0x299f31d0u};
    sd_philox4x32_10(c2, k2, out);
    CHECK(out[0] == 0xd16cfe09u && out[1] == 0x94fdccebu && out[2] == 0x5001e420u && out[3] == 0x24126ea1u);
}

TEST(rng_streams) {
    enum { N = 100003 };
    float *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float));
    sd_rng r;
    sd_rng_init(&r, 42, 0);
    sd_rng_normal(&r, a, N);
    CHECK(r.offset == (N + 3) / 4);
    /* the same values in two pieces, from an offset */
    sd_rng_normal_at(42, 0, 0, b, 400);
    sd_rng_normal_at(42, 0, 100, b + 400, N - 400);
    CHECK(memcmp(a, b, N * sizeof(float)) == 0);
    double s = 0, ss = 0;
    for (int i = 0; i < N; i++) { s += a[i]; ss += (double)a[i] * a[i]; }
    double mean = s / N, var = ss / N - mean * mean;
    CHECK_NEAR(mean, 0.0, 0.02);
    CHECK_NEAR(var, 1.0, 0.02);
    /* other seed / stream differ */
    sd_rng_normal_at(43, 0, 0, b, 16);
    CHECK(memcmp(a, b, 16 * sizeof(float)) != 0);
    sd_rng_normal_at(42, 1, 0, b, 16);
    CHECK(memcmp(a, b, 16 * sizeof(float)) != 0);
    sd_rng_uniform(&r, a, N);
    float mn = 1, mx = 0;
    for (int i = 0; i < N; i++) { if (a[i] < mn) mn = a[i]; if (a[i] > mx) mx = a[i]; }
    CHECK(mn >= 0.0f && mx < 1.0f && mn < 0.001f && mx > 0.999f);
    int hist[10] = {0};
    for (int i = 0; i < 10000; i++) hist[sd_rng_below(&r, 10)]++;
    for (int i = 0; i < 10; i++) CHECK(hist[i] > 850 && hist[i] < 1150);
    uint32_t perm[50];
    sd_rng_permutation(&r, perm, 50);
    int seen[50] = {0};
    for (int i = 0; i < 50; i++) seen[perm[i]]++;
    for (int i = 0; i < 50; i++) CHECK(seen[i] == 1);
    free(a);
    free(b);
}

TEST(sha256_vectors) {
    unsigned char d[32];
    char hex[65];
    sd_sha256 s;
    sd_sha256_init(&s);
    sd_sha256_update(&s, "abc", 3);
    sd_sha256_final(&s, d);
    sd_sha256_hex(d, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    sd_sha256_init(&s);
    sd_sha256_final(&s, d);
    sd_sha256_hex(d, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    /* a million 'a' fed in odd-sized pieces */
    sd_sha256_init(&s);
    char buf[997];
    memset(buf, 'a', sizeof buf);
    size_t left = 1000000;
    while (left) { size_t k = left < sizeof buf ? left : sizeof buf; sd_sha256_update(&s, buf, k); left -= k; }
    sd_sha256_final(&s, d);
    sd_sha256_hex(d, hex);
    CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
}

/* The accelerated path (SHA-NI where the CPU has it) against the scalar one
 * on lengths 0..300 fed in odd-sized pieces, each followed by whole blocks. */
static void sha_digests(char out[][65], int n, const unsigned char *buf) {
    for (int k = 0; k < n; k++) {
        size_t len = (size_t)k * 3;
        sd_sha256 s;
        unsigned char d[32];
        sd_sha256_init(&s);
        for (size_t off = 0; off < len;) {
            size_t step = (off * 7 + 3) % 90 + 1;
            if (step > len - off) step = len - off;
            sd_sha256_update(&s, buf + off, step);
            off += step;
        }
        sd_sha256_update(&s, buf + len, 1000 + (size_t)k);
        sd_sha256_final(&s, d);
        sd_sha256_hex(d, out[k]);
    }
}

TEST(sha256_fast_path_matches_scalar) {
    enum { N = 101 };
    static unsigned char buf[4096];
    static char fast[N][65], slow[N][65];
    for (int i = 0; i < 4096; i++) buf[i] = (unsigned char)(i * 37 + (i >> 3));
    int accel = sd_sha256_set_scalar(0);
    sha_digests(fast, N, buf);
    sd_sha256_set_scalar(1);
    sha_digests(slow, N, buf);
    sd_sha256_set_scalar(0);
    int bad = 0;
    for (int k = 0; k < N; k++) bad += strcmp(fast[k], slow[k]) != 0;
    printf("# sha256 accelerated path %s\n", accel ? "in use (SHA-NI)" : "not available on this CPU");
    CHECK_MSG(bad == 0, "%d of %d digests differ", bad, N);
}

TEST(fs_atomic_and_dirs) {
    const char *dir = test_tmpdir();
    char *sub = sd_path_join(dir, "a/b/c");
    CHECK_OK(sd_mkdir_p(sub));
    CHECK(sd_is_dir(sub));
    char *file = sd_path_join(sub, "x.txt");
    CHECK_OK(sd_write_file_atomic(file, "hello", 5));
    char *data;
    size_t len;
    CHECK_OK(sd_read_file(file, 100, &data, &len));
    CHECK(len == 5 && !strcmp(data, "hello"));
    free(data);
    CHECK_FAILS(sd_read_file(file, 3, &data, &len), "too large");
    /* an aborted atomic write leaves the old file and no temporary */
    sd_atomic_file af;
    CHECK_OK(sd_atomic_open(&af, file));
    fputs("partial", af.f);
    sd_atomic_abort(&af);
    CHECK_OK(sd_read_file(file, 100, &data, &len));
    CHECK(!strcmp(data, "hello"));
    free(data);
    char **names;
    int n = sd_list_dir(sub, &names);
    CHECK(n == 1 && !strcmp(names[0], "x.txt"));
    sd_free_strv(names, n);
    CHECK_FAILS(sd_read_file("/nonexistent/file", 10, &data, &len), "No such file");
    char *top = sd_path_join(dir, "a");
    CHECK_OK(sd_rm_rf(top));
    CHECK(!sd_is_dir(top));
    char *d = sd_path_dirname("x/y/z.txt");
    CHECK(!strcmp(d, "x/y"));
    CHECK(!strcmp(sd_path_basename("x/y/z.txt"), "z.txt"));
    free(d); free(top); free(file); free(sub);
    rmdir(dir);
}

int main(void) {
    RUN(error_messages);
    RUN(arena_alignment_and_reset);
    RUN(f16_conversion_exhaustive);
    RUN(bf16_conversion);
    RUN(minifloats);
    RUN(dtype_names_and_sizes);
    RUN(philox_known_answers);
    RUN(rng_streams);
    RUN(sha256_vectors);
    RUN(sha256_fast_path_matches_scalar);
    RUN(fs_atomic_and_dirs);
    return test_summary();
}
