/* test_image.c — error paths and round trips of io/image, io/resize,
 * io/transform: truncated/corrupt/zero-size/oversized/unsupported inputs give
 * clean errors (run under ASan+UBSan by make asan), PNG encode/decode round
 * trips with text chunks, crop/flip/resize argument handling, torchvision
 * arithmetic. Pixel parity with PIL is tests/py/test_image_parity.py. */
#include "test.h"

#include "core/fs.h"
#include "core/rng.h"
#include "io/image.h"
#include "io/resize.h"
#include "io/transform.h"

#include <stdint.h>
#include <jpeglib.h>
#include <webp/encode.h>
#include <zlib.h>

static void pattern(sd_image *img, int w, int h, int c, unsigned seed) {
    sd_image_alloc(img, w, h, c);
    uint32_t x = seed * 2654435761u + 1;
    for (int y = 0; y < h; y++)
        for (int i = 0; i < w * c; i++) {
            x = x * 1664525u + 1013904223u;
            img->data[(size_t)y * w * c + i] = (uint8_t)((i * 3 + y * 5) + (x >> 28));
        }
}

static uint8_t *encode_jpeg(const sd_image *img, int progressive, size_t *len) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    unsigned char *buf = NULL;
    unsigned long n = 0;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    jpeg_mem_dest(&ci, &buf, &n);
    ci.image_width = (JDIMENSION)img->w;
    ci.image_height = (JDIMENSION)img->h;
    ci.input_components = 3;
    ci.in_color_space = JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 85, TRUE);
    if (progressive) jpeg_simple_progression(&ci);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW r = img->data + (size_t)ci.next_scanline * img->w * 3;
        jpeg_write_scanlines(&ci, &r, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    *len = n;
    return buf;
}

static int same_pixels(const sd_image *a, const sd_image *b) {
    return a->w == b->w && a->h == b->h && a->c == b->c &&
           memcmp(a->data, b->data, (size_t)a->w * a->h * a->c) == 0;
}

/* Every cut strictly inside [0, must_fail_below) must fail with a message;
 * longer cuts may succeed but then must give the full image's pixels. */
static void check_truncations(const char *what, const uint8_t *buf, size_t len, size_t must_fail_below,
                              const sd_image *full) {
    int failures = 0, successes = 0;
    size_t step = len > 4000 ? len / 1500 : 1;
    for (size_t cut = 0; cut < len; cut += (cut < 64 || cut + 64 > len) ? 1 : step) {
        sd_image img;
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any over-read */
        memcpy(copy, buf, cut);
        sd_clear_error();
        int rc = sd_image_decode_memory(copy, cut, 0, &img, NULL);
        free(copy);
        if (rc) {
            failures++;
            CHECK_MSG(sd_last_error()[0] != 0, "%s cut %zu: empty message", what, cut);
            CHECK_MSG(img.data == NULL, "%s cut %zu: pixels after an error", what, cut);
        } else {
            successes++;
            CHECK_MSG(cut >= must_fail_below, "%s cut %zu of %zu decoded without error", what, cut, len);
            CHECK_MSG(same_pixels(&img, full), "%s cut %zu decoded different pixels", what, cut);
            sd_image_free(&img);
        }
    }
    CHECK(failures > 0);
    (void)successes;
}

/* Deterministic byte corruption: must never crash; errors carry messages. */
static void check_corruptions(const char *what, const uint8_t *buf, size_t len) {
    uint32_t x = 12345;
    uint8_t *copy = malloc(len);
    for (int trial = 0; trial < 300; trial++) {
        memcpy(copy, buf, len);
        int nflip = 1 + trial % 4;
        for (int k = 0; k < nflip; k++) {
            x = x * 1664525u + 1013904223u;
            size_t pos = (trial < 100) ? (x >> 8) % (len < 200 ? len : 200) : (x >> 8) % len; /* headers often */
            x = x * 1664525u + 1013904223u;
            copy[pos] ^= (uint8_t)(1 + (x >> 24) % 255);
        }
        sd_image img;
        sd_clear_error();
        if (sd_image_decode_memory(copy, len, 1 << 24, &img, NULL)) {
            CHECK_MSG(sd_last_error()[0] != 0, "%s trial %d: empty message", what, trial);
            CHECK(img.data == NULL);
        } else {
            CHECK(img.w > 0 && img.h > 0 && img.c == 3 && img.data);
            sd_image_free(&img);
        }
    }
    free(copy);
}

static size_t find(const uint8_t *buf, size_t len, const char *s, size_t from) {
    size_t n = strlen(s);
    for (size_t i = from; i + n <= len; i++)
        if (memcmp(buf + i, s, n) == 0) return i;
    return (size_t)-1;
}

TEST(png_roundtrip_and_text) {
    sd_image img, back;
    pattern(&img, 37, 23, 3, 1);
    sd_png_text t[3] = {{"parameters", "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1"},
                        {"Comment", "caf\xc3\xa9"}, {"Title", "\xe7\x8c\xab"}};
    uint8_t *buf, *buf2;
    size_t len, len2;
    CHECK_OK(sd_png_encode_memory(&img, t, 3, -1, &buf, &len));
    CHECK(find(buf, len, "tEXtparameters", 0) != (size_t)-1);
    CHECK(find(buf, len, "a cat\nSteps: 20", 0) != (size_t)-1);
    CHECK(find(buf, len, "tEXtComment\0caf\xe9", 0) != (size_t)-1); /* Latin-1 in tEXt */
    CHECK(find(buf, len, "iTXtTitle", 0) != (size_t)-1);            /* not Latin-1: iTXt */
    CHECK(find(buf, len, "tIME", 0) == (size_t)-1);                 /* nothing time-dependent */
    CHECK(find(buf, len, "tEXt", 0) < find(buf, len, "IDAT", 0));   /* texts before the pixels */
    CHECK_OK(sd_png_encode_memory(&img, t, 3, -1, &buf2, &len2));
    CHECK(len == len2 && memcmp(buf, buf2, len) == 0);
    CHECK_OK(sd_image_decode_memory(buf, len, 0, &back, NULL));
    CHECK(same_pixels(&img, &back));
    sd_image_free(&back);
    for (int level = 0; level <= 9; level += 3) {
        free(buf2);
        CHECK_OK(sd_png_encode_memory(&img, NULL, 0, level, &buf2, &len2));
        CHECK_OK(sd_image_decode_memory(buf2, len2, 0, &back, NULL));
        CHECK(same_pixels(&img, &back));
        sd_image_free(&back);
    }
    free(buf2);
    /* gray and RGBA encode; decoding gives RGB as PIL's convert("RGB") */
    for (int c = 1; c <= 4; c += 3) {
        sd_image g;
        pattern(&g, 19, 7, c, 2);
        CHECK_OK(sd_png_encode_memory(&g, NULL, 0, -1, &buf2, &len2));
        sd_image_info info;
        CHECK_OK(sd_image_decode_memory(buf2, len2, 0, &back, &info));
        CHECK(!strcmp(info.mode, c == 1 ? "L" : "RGBA"));
        int ok = back.c == 3;
        for (int i = 0; ok && i < 19 * 7; i++)
            for (int k = 0; k < 3; k++) ok &= back.data[i * 3 + k] == g.data[i * c + (c == 1 ? 0 : k)];
        CHECK(ok);
        sd_image_free(&back);
        sd_image_free(&g);
        free(buf2);
    }
    /* bad arguments */
    sd_png_text bad[1] = {{"", "x"}};
    CHECK_FAILS(sd_png_encode_memory(&img, bad, 1, -1, &buf2, &len2), "bad text key");
    bad[0].key = "two  spaces";
    CHECK_FAILS(sd_png_encode_memory(&img, bad, 1, -1, &buf2, &len2), "bad text key");
    bad[0].key = "k";
    bad[0].value = "\xff\xfe";
    CHECK_FAILS(sd_png_encode_memory(&img, bad, 1, -1, &buf2, &len2), "not valid UTF-8");
    CHECK_FAILS(sd_png_encode_memory(&img, NULL, 0, 10, &buf2, &len2), "compression level");
    sd_image two = img;
    two.c = 2;
    CHECK_FAILS(sd_png_encode_memory(&two, NULL, 0, -1, &buf2, &len2), "channels");
    /* atomic write to a path; no temporary left behind */
    char path[600];
    snprintf(path, sizeof path, "%s/out.png", test_tmpdir());
    CHECK_OK(sd_png_write(path, &img, t, 1, -1));
    CHECK_OK(sd_image_decode_file(path, 0, &back, NULL));
    CHECK(same_pixels(&img, &back));
    sd_image_free(&back);
    char **names;
    int n = sd_list_dir(test_tmpdir(), &names);
    CHECK(n == 1 && !strcmp(names[0], "out.png"));
    sd_free_strv(names, n);
    snprintf(path, sizeof path, "%s/no/such/dir/out.png", test_tmpdir());
    CHECK_FAILS(sd_png_write(path, &img, NULL, 0, -1), "out.png");
    free(buf);
    sd_image_free(&img);
}

TEST(png_truncated_and_corrupt) {
    sd_image img;
    pattern(&img, 61, 45, 3, 3);
    uint8_t *buf;
    size_t len;
    CHECK_OK(sd_png_encode_memory(&img, NULL, 0, 6, &buf, &len));
    size_t idat = find(buf, len, "IDAT", 0);
    uint32_t idat_len = (uint32_t)buf[idat - 4] << 24 | buf[idat - 3] << 16 | buf[idat - 2] << 8 | buf[idat - 1];
    /* every cut before the end of the image data (and its CRC) fails */
    check_truncations("png", buf, len, idat + 4 + idat_len + 4, &img);
    check_corruptions("png", buf, len);
    /* a bad IHDR CRC is an error */
    buf[29] ^= 1;
    sd_image out;
    CHECK_FAILS(sd_image_decode_memory(buf, len, 0, &out, NULL), "PNG");
    free(buf);
    sd_image_free(&img);
}

/* A minimal PNG header: signature + IHDR with the given fields and a valid
 * CRC (no image data). */
static size_t png_header(uint8_t *b, uint32_t w, uint32_t h, int depth, int ct) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(b, sig, 8);
    uint8_t *c = b + 8;
    c[0] = c[1] = c[2] = 0;
    c[3] = 13;
    memcpy(c + 4, "IHDR", 4);
    uint8_t *d = c + 8;
    d[0] = w >> 24; d[1] = w >> 16; d[2] = w >> 8; d[3] = w;
    d[4] = h >> 24; d[5] = h >> 16; d[6] = h >> 8; d[7] = h;
    d[8] = (uint8_t)depth;
    d[9] = (uint8_t)ct;
    d[10] = d[11] = d[12] = 0;
    uint32_t crc = (uint32_t)crc32(0, c + 4, 17);
    c[21] = crc >> 24; c[22] = crc >> 16; c[23] = crc >> 8; c[24] = crc;
    return 8 + 25;
}

TEST(png_zero_size_and_bomb) {
    uint8_t b[64];
    sd_image out;
    size_t n = png_header(b, 0, 10, 8, 2);
    CHECK_FAILS(sd_image_decode_memory(b, n, 0, &out, NULL), "PNG");
    n = png_header(b, 10, 0, 8, 2);
    CHECK_FAILS(sd_image_decode_memory(b, n, 0, &out, NULL), "PNG");
    /* a header claiming 100000 x 90000 pixels is refused before any pixel
     * memory (the data is not even there) */
    n = png_header(b, 100000, 90000, 8, 2);
    CHECK_FAILS(sd_image_decode_memory(b, n, SD_IMAGE_PIL_MAX_PIXELS, &out, NULL), "decompression bomb");
    sd_image_info info;
    CHECK_FAILS(sd_image_probe_memory(b, n, &info), "truncated"); /* libpng needs the chunks up to IDAT */
    /* without a limit it gets as far as the missing data */
    n = png_header(b, 300, 200, 8, 2);
    CHECK_FAILS(sd_image_decode_memory(b, n, 0, &out, NULL), "truncated");
    /* invalid bit depth / color type combinations */
    n = png_header(b, 10, 10, 16, 3);
    CHECK_FAILS(sd_image_decode_memory(b, n, 0, &out, NULL), "PNG");
    n = png_header(b, 10, 10, 8, 5);
    CHECK_FAILS(sd_image_decode_memory(b, n, 0, &out, NULL), "PNG");
    /* the limit is inclusive */
    sd_image img;
    pattern(&img, 100, 80, 3, 4);
    uint8_t *buf;
    size_t len;
    CHECK_OK(sd_png_encode_memory(&img, NULL, 0, 1, &buf, &len));
    CHECK_FAILS(sd_image_decode_memory(buf, len, 7999, &out, NULL), "decompression bomb");
    CHECK_OK(sd_image_decode_memory(buf, len, 8000, &out, NULL));
    sd_image_free(&out);
    CHECK_OK(sd_image_probe_memory(buf, len, &info));
    CHECK(info.w == 100 && info.h == 80 && info.format == SD_IMAGE_PNG && !strcmp(info.mode, "RGB") &&
          info.bit_depth == 8 && !info.interlaced && !info.has_alpha);
    free(buf);
    sd_image_free(&img);
}

TEST(jpeg_truncated_corrupt_bomb) {
    sd_image img;
    pattern(&img, 83, 57, 3, 5);
    for (int prog = 0; prog <= 1; prog++) {
        size_t len;
        uint8_t *buf = encode_jpeg(&img, prog, &len);
        sd_image full;
        sd_image_info info;
        CHECK_OK(sd_image_decode_memory(buf, len, 0, &full, &info));
        CHECK(full.w == 83 && full.h == 57 && info.interlaced == prog && info.warnings == 0);
        /* all but the EOI marker is needed */
        check_truncations(prog ? "progressive jpeg" : "jpeg", buf, len, len - 2, &full);
        check_corruptions(prog ? "progressive jpeg" : "jpeg", buf, len);
        sd_image_free(&full);
        CHECK_FAILS(sd_image_decode_memory(buf, len, 83 * 57 - 1, &full, NULL), "decompression bomb");
        /* SOF with zero height, and one claiming 60000 x 60000 */
        size_t sof = 2;
        while (sof + 1 < len && !(buf[sof] == 0xff && (buf[sof + 1] == 0xc0 || buf[sof + 1] == 0xc2))) sof++;
        CHECK(sof + 9 < len);
        uint8_t *z = malloc(len);
        memcpy(z, buf, len);
        z[sof + 5] = z[sof + 6] = 0; /* height */
        CHECK_FAILS(sd_image_decode_memory(z, len, 0, &full, NULL), "JPEG");
        z[sof + 5] = z[sof + 7] = 0xea;
        z[sof + 6] = z[sof + 8] = 0x60;
        CHECK_FAILS(sd_image_decode_memory(z, len, SD_IMAGE_PIL_MAX_PIXELS, &full, NULL), "decompression bomb");
        free(z);
        free(buf);
    }
    uint8_t junk[4] = {0xff, 0xd8, 0xff, 0xd9};
    sd_image out;
    CHECK_FAILS(sd_image_decode_memory(junk, 4, 0, &out, NULL), "JPEG");
    sd_image_free(&img);
}

TEST(webp_truncated_corrupt) {
    sd_image img, full;
    pattern(&img, 45, 31, 3, 6);
    for (int lossless = 0; lossless <= 1; lossless++) {
        uint8_t *buf;
        size_t len = lossless ? WebPEncodeLosslessRGB(img.data, 45, 31, 45 * 3, &buf)
                              : WebPEncodeRGB(img.data, 45, 31, 45 * 3, 80, &buf);
        CHECK(len > 0);
        CHECK_OK(sd_image_decode_memory(buf, len, 0, &full, NULL));
        if (lossless) CHECK(same_pixels(&img, &full));
        check_truncations(lossless ? "webp lossless" : "webp", buf, len, len, &full);
        check_corruptions(lossless ? "webp lossless" : "webp", buf, len);
        sd_image_free(&full);
        CHECK_FAILS(sd_image_decode_memory(buf, len, 45 * 31 - 1, &full, NULL), "decompression bomb");
        WebPFree(buf);
    }
    sd_image_free(&img);
}

TEST(unsupported_and_missing) {
    sd_image out;
    const char gif[] = "GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    CHECK_FAILS(sd_image_decode_memory(gif, sizeof gif - 1, 0, &out, NULL), "unsupported image format (GIF)");
    const char bmp[] = "BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00";
    CHECK_FAILS(sd_image_decode_memory(bmp, sizeof bmp - 1, 0, &out, NULL), "unsupported image format (BMP)");
    const char txt[] = "hello, this is not an image";
    CHECK_FAILS(sd_image_decode_memory(txt, sizeof txt - 1, 0, &out, NULL), "unsupported image format");
    CHECK_FAILS(sd_image_decode_memory(txt, 0, 0, &out, NULL), "empty");
    const uint8_t png8[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    CHECK_FAILS(sd_image_decode_memory(png8, 8, 0, &out, NULL), "truncated");
    CHECK_FAILS(sd_image_decode_memory(png8, 5, 0, &out, NULL), "truncated");
    const uint8_t riff[12] = {'R', 'I', 'F', 'F', 4, 0, 0, 0, 'W', 'E', 'B', 'P'};
    CHECK_FAILS(sd_image_decode_memory(riff, 12, 0, &out, NULL), "WebP");
    char path[600];
    snprintf(path, sizeof path, "%s/does-not-exist.jpg", test_tmpdir());
    CHECK_FAILS(sd_image_decode_file(path, 0, &out, NULL), "does-not-exist.jpg");
    CHECK(strstr(sd_last_error(), "No such file") != NULL);
    CHECK_FAILS(sd_image_decode_file(test_tmpdir(), 0, &out, NULL), "directory");
    snprintf(path, sizeof path, "%s/empty.png", test_tmpdir());
    CHECK_OK(sd_write_file_atomic(path, "", 0));
    CHECK_FAILS(sd_image_decode_file(path, 0, &out, NULL), "empty.png: empty file");
    CHECK(out.data == NULL);
    unlink(path);
}

TEST(crop_flip_resize_args) {
    sd_image img, out;
    pattern(&img, 5, 4, 3, 7);
    /* crop reaching outside: zeros there, pixels inside */
    CHECK_OK(sd_image_crop(&img, -2, 1, 4, 5, &out));
    CHECK(out.w == 4 && out.h == 5);
    CHECK(out.data[0] == 0 && out.data[3 * 1 + 2] == 0);
    CHECK(!memcmp(out.data + 2 * 3, img.data + (size_t)1 * 15, 2 * 3));
    CHECK(out.data[(size_t)(4 * 4) * 3] == 0); /* row 4 is source row 5: outside */
    sd_image_free(&out);
    CHECK_FAILS(sd_image_crop(&img, 0, 0, 0, 3, &out), "empty box");
    /* flip twice is the identity; once mirrors */
    CHECK_OK(sd_image_crop(&img, 0, 0, 5, 4, &out));
    sd_image_flip_h(&out);
    CHECK(!memcmp(out.data, img.data + 4 * 3, 3) && !memcmp(out.data + 4 * 3, img.data, 3));
    sd_image_flip_h(&out);
    CHECK(same_pixels(&img, &out));
    sd_image_free(&out);
    /* resize arguments */
    CHECK_FAILS(sd_image_resize(&img, 0, 3, SD_FILTER_LANCZOS, &out), "must be > 0");
    CHECK_FAILS(sd_image_resize(&img, 3, 3, (sd_resize_filter)9, &out), "unknown filter");
    CHECK(sd_resize_filter_from_name("LANCZOS") == SD_FILTER_LANCZOS);
    CHECK(sd_resize_filter_from_name("nearest_exact") == SD_FILTER_NEAREST);
    CHECK(sd_resize_filter_from_name("hamming") == SD_FILTER_HAMMING);
    CHECK(sd_resize_filter_from_name("box") == SD_FILTER_BOX);
    CHECK_FAILS(sd_resize_filter_from_name("area"), "unknown interpolation mode");
    /* same size: a copy; resize+crop == resize then crop */
    CHECK_OK(sd_image_resize(&img, 5, 4, SD_FILTER_BICUBIC, &out));
    CHECK(same_pixels(&img, &out));
    sd_image_free(&out);
    sd_image big, full, part, ref;
    pattern(&big, 67, 41, 3, 8);
    for (int f = 0; f <= 5; f++) {
        CHECK_OK(sd_image_resize(&big, 50, 90, (sd_resize_filter)f, &full));
        CHECK_OK(sd_image_resize_crop(&big, 50, 90, (sd_resize_filter)f, 7, -3, 45, 20, &part));
        CHECK_OK(sd_image_crop(&full, 7, -3, 45, 20, &ref));
        CHECK_MSG(same_pixels(&part, &ref), "filter %d", f);
        sd_image_free(&full);
        sd_image_free(&part);
        sd_image_free(&ref);
    }
    /* a box wholly outside is all zeros */
    CHECK_OK(sd_image_resize_crop(&big, 50, 90, SD_FILTER_LANCZOS, 60, 0, 3, 3, &part));
    int zero = 1;
    for (int i = 0; i < 27; i++) zero &= part.data[i] == 0;
    CHECK(zero);
    sd_image_free(&part);
    /* gray and RGBA images resample per channel like RGB */
    sd_image g;
    pattern(&g, 30, 20, 1, 9);
    CHECK_OK(sd_image_resize(&g, 13, 33, SD_FILTER_LANCZOS, &out));
    CHECK(out.c == 1 && out.w == 13 && out.h == 33);
    sd_image_free(&out);
    sd_image_free(&g);
    sd_image_free(&big);
    sd_image_free(&img);
    /* ToTensor + Normalize */
    sd_image t1;
    sd_image_alloc(&t1, 2, 1, 3);
    uint8_t v[6] = {0, 255, 128, 1, 2, 3};
    memcpy(t1.data, v, 6);
    float f6[6];
    sd_image_to_chw_f32(&t1, f6);
    CHECK(f6[0] == -1.0f && f6[1] == (1.0f / 255.0f - 0.5f) / 0.5f && f6[2] == 1.0f);
    CHECK(f6[4] == (128.0f / 255.0f - 0.5f) / 0.5f);
    sd_image_free(&t1);
}

TEST(torchvision_arithmetic) {
    int w, h, l, t;
    CHECK_OK(sd_transform_resize_shorter_size(1024, 768, 512, 0, &w, &h));
    CHECK(w == 682 && h == 512);
    CHECK_OK(sd_transform_resize_shorter_size(768, 1024, 512, 0, &w, &h));
    CHECK(w == 512 && h == 682);
    CHECK_OK(sd_transform_resize_shorter_size(300, 300, 512, 0, &w, &h));
    CHECK(w == 512 && h == 512);
    CHECK_OK(sd_transform_resize_shorter_size(1000, 3, 10, 0, &w, &h));
    CHECK(w == 3333 && h == 10);
    CHECK_OK(sd_transform_resize_shorter_size(1024, 768, 512, 600, &w, &h));
    CHECK(w == 600 && h == 450); /* int(600 * 512 / 682) */
    CHECK_FAILS(sd_transform_resize_shorter_size(10, 10, 512, 512, &w, &h), "max_size");
    CHECK_FAILS(sd_transform_resize_shorter_size(10, 10, 0, 0, &w, &h), "size must be > 0");
    /* int(round(k / 2)) rounds halves to even, as Python does */
    int cases[][3] = {{512, 512, 0}, {513, 512, 0}, {514, 512, 1}, {515, 512, 2}, {517, 512, 2},
                      {519, 512, 4}, {682, 512, 85}, {10, 13, -1}, {10, 14, -2}, {1, 512, -255}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sd_transform_center_crop_offsets(cases[i][0], 600, cases[i][1], 600, &l, &t);
        CHECK_MSG(l == cases[i][2] && t == 0, "center crop %d -> %d gave %d", cases[i][0], cases[i][1], l);
    }
    sd_rng rng;
    sd_rng_init(&rng, 42, 7);
    CHECK_FAILS(sd_transform_random_crop_offsets(10, 10, 11, 5, &rng, &l, &t), "larger than input image size");
    CHECK_OK(sd_transform_random_crop_offsets(512, 512, 512, 512, &rng, &l, &t));
    CHECK(l == 0 && t == 0 && rng.offset == 0); /* nothing drawn */
    CHECK_OK(sd_transform_random_crop_offsets(512, 600, 512, 512, &rng, &l, &t));
    CHECK(l == 0 && t >= 0 && t <= 88 && rng.offset == 2); /* top then left, one block each */
    int seen_max = 0;
    for (int i = 0; i < 200; i++) {
        CHECK_OK(sd_transform_random_crop_offsets(515, 512, 512, 512, &rng, &l, &t));
        CHECK(l >= 0 && l <= 3 && t == 0);
        if (l == 3) seen_max = 1;
    }
    CHECK(seen_max); /* the upper bound is reachable (randint's high is exclusive of h-th+1) */
}

int main(void) {
    RUN(png_roundtrip_and_text);
    RUN(png_truncated_and_corrupt);
    RUN(png_zero_size_and_bomb);
    RUN(jpeg_truncated_corrupt_bomb);
    RUN(webp_truncated_corrupt);
    RUN(unsupported_and_missing);
    RUN(crop_flip_resize_args);
    RUN(torchvision_arithmetic);
    return test_summary();
}
