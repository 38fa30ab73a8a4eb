/* image_tool.c — test and benchmark helper for lib/io/image, resize, transform
 * (driven by tests/py/test_image_parity.py and bench/bench_image.py).
 *
 *   image_tool info IN                      "FORMAT W H MODE DEPTH INTERLACED ALPHA"
 *   image_tool decode IN OUT.ppm [MAXPIX]   decode to RGB, write binary PPM
 *   image_tool resize IN.ppm OUT.ppm W H FILTER [LEFT TOP CW CH]
 *                                           resize (+crop) a PPM/PGM as is
 *   image_tool batch                        stdin lines "IN OUT W H FILTER LEFT TOP CW CH":
 *                                           decode IN, resize to WxH (W=0: no resize),
 *                                           crop, write OUT (PPM), or "ERR msg" on stdout
 *   image_tool transform IN OUT.ppm RES FILTER center|random SEED flip|noflip [H W]
 *                                           the training transform; prints the record
 *   image_tool encode IN.ppm OUT.png [LEVEL [KEY=VALUE...]]   PNG encode (atomic write)
 *   image_tool jpeg IN.ppm OUT.jpg KIND     write a JPEG with libjpeg: KIND = ycck |
 *                                           cmyk (Adobe marker) | cmyk-noadobe (values
 *                                           from the RGB as C=255-R...) | rgb (RGB color
 *                                           space, no transform) | h1v2 (4:4:0) | arith
 *   image_tool chw IN.ppm OUT.f32           ToTensor+Normalize(0.5, 0.5): float32 CHW
 *   image_tool bench N RES FILTER FILE...   decode + resize shorter side + center crop,
 *                                           N passes; prints "images CPU_SECONDS WALL_SECONDS"
 *   image_tool bench-png IN.ppm LEVEL N     encode N times in memory: "BYTES CPU_SECONDS"
 */
#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "io/image.h"
#include "io/resize.h"
#include "io/transform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>

static int read_pnm(const char *path, sd_image *img) {
    char *buf;
    size_t len;
    if (sd_read_file(path, (size_t)1 << 31, &buf, &len)) return -1;
    int w, h, maxv, pos = 0;
    char magic[3] = {0};
    if (sscanf(buf, "%2s %d %d %d%n", magic, &w, &h, &maxv, &pos) != 4 || maxv != 255 ||
        (strcmp(magic, "P6") && strcmp(magic, "P5"))) {
        free(buf);
        return sd_set_error("%s: not a binary 8-bit PPM/PGM", path);
    }
    int c = magic[1] == '6' ? 3 : 1;
    pos++; /* the single whitespace after maxval */
    if ((size_t)pos + (size_t)w * h * c > len) {
        free(buf);
        return sd_set_error("%s: short PNM", path);
    }
    sd_image_alloc(img, w, h, c);
    memcpy(img->data, buf + pos, (size_t)w * h * c);
    free(buf);
    return 0;
}

static int write_pnm(const char *path, const sd_image *img) {
    if (img->c != 3 && img->c != 1) return sd_set_error("write_pnm: %d channels", img->c);
    char hdr[64];
    int n = snprintf(hdr, sizeof hdr, "P%c\n%d %d\n255\n", img->c == 3 ? '6' : '5', img->w, img->h);
    size_t len = (size_t)n + (size_t)img->w * img->h * img->c;
    char *buf = sd_xmalloc(len);
    memcpy(buf, hdr, (size_t)n);
    memcpy(buf + n, img->data, len - (size_t)n);
    int rc = sd_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}

static int parse_filter(const char *s, sd_resize_filter *f) {
    int v = sd_resize_filter_from_name(s);
    if (v < 0) return -1;
    *f = (sd_resize_filter)v;
    return 0;
}

static int cmd_batch(void) {
    char line[8192], in[4096], out[4096], fname[64];
    int w, h, l, t, cw, ch;
    while (fgets(line, sizeof line, stdin)) {
        if (sscanf(line, "%4095s %4095s %d %d %63s %d %d %d %d", in, out, &w, &h, fname, &l, &t, &cw, &ch) != 9) {
            printf("ERR bad line\n");
            fflush(stdout);
            continue;
        }
        sd_image img, r;
        sd_resize_filter f;
        int rc = sd_image_decode_file(in, 0, &img, NULL);
        if (!rc) {
            if (w > 0) {
                rc = parse_filter(fname, &f);
                if (!rc) rc = sd_image_resize_crop(&img, w, h, f, l, t, cw, ch, &r);
            } else {
                rc = sd_image_crop(&img, l, t, cw, ch, &r);
            }
            sd_image_free(&img);
            if (!rc) {
                rc = write_pnm(out, &r);
                sd_image_free(&r);
            }
        }
        if (rc) printf("ERR %s\n", sd_last_error());
        else printf("OK\n");
        fflush(stdout);
    }
    return 0;
}

/* libjpeg writer for the corpus cases PIL cannot write */
static int cmd_jpeg(const char *inp, const char *outp, const char *kind) {
    sd_image img;
    if (read_pnm(inp, &img)) return -1;
    if (img.c != 3) return sd_set_error("jpeg: need an RGB PPM");
    FILE *f = fopen(outp, "wb");
    if (!f) return sd_set_error("%s: cannot open", outp);
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)img.w;
    ci.image_height = (JDIMENSION)img.h;
    int four = !strcmp(kind, "ycck") || !strcmp(kind, "cmyk") || !strcmp(kind, "cmyk-noadobe");
    ci.input_components = four ? 4 : 3;
    ci.in_color_space = four ? JCS_CMYK : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 90, TRUE);
    if (!strcmp(kind, "ycck")) jpeg_set_colorspace(&ci, JCS_YCCK);
    else if (!strcmp(kind, "cmyk")) jpeg_set_colorspace(&ci, JCS_CMYK);
    else if (!strcmp(kind, "cmyk-noadobe")) {
        jpeg_set_colorspace(&ci, JCS_CMYK);
        ci.write_Adobe_marker = FALSE;
    } else if (!strcmp(kind, "rgb")) {
        jpeg_set_colorspace(&ci, JCS_RGB);
    } else if (!strcmp(kind, "h1v2")) {
        ci.comp_info[0].h_samp_factor = 1;
        ci.comp_info[0].v_samp_factor = 2;
    } else if (!strcmp(kind, "arith")) {
        ci.arith_code = TRUE;
    } else if (strcmp(kind, "plain")) {
        return sd_set_error("jpeg: unknown kind %s", kind);
    }
    jpeg_start_compress(&ci, TRUE);
    uint8_t *row = sd_xmalloc((size_t)img.w * 4);
    while (ci.next_scanline < ci.image_height) {
        const uint8_t *src = img.data + (size_t)ci.next_scanline * img.w * 3;
        if (four) { /* C, M, Y from the RGB, K from a gradient */
            for (int x = 0; x < img.w; x++) {
                row[4 * x] = (uint8_t)(255 - src[3 * x]);
                row[4 * x + 1] = (uint8_t)(255 - src[3 * x + 1]);
                row[4 * x + 2] = (uint8_t)(255 - src[3 * x + 2]);
                row[4 * x + 3] = (uint8_t)((x * 7 + (int)ci.next_scanline * 3) & 255);
            }
        } else {
            memcpy(row, src, (size_t)img.w * 3);
        }
        JSAMPROW rp = row;
        jpeg_write_scanlines(&ci, &rp, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    fclose(f);
    free(row);
    sd_image_free(&img);
    return 0;
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmd_bench(int n, int res, const char *fname, char **files, int nfiles) {
    sd_resize_filter f;
    if (parse_filter(fname, &f)) return -1;
    /* files are read into memory first: the benchmark is decode + transform */
    char **data = sd_xcalloc((size_t)nfiles, sizeof(char *));
    size_t *len = sd_xcalloc((size_t)nfiles, sizeof(size_t));
    for (int i = 0; i < nfiles; i++)
        if (sd_read_file(files[i], (size_t)1 << 30, &data[i], &len[i])) return -1;
    sd_transform_opts o = {.resolution = res, .filter = f, .center_crop = 1};
    double t0 = sd_now(), c0 = cpu_seconds();
    long count = 0;
    unsigned sum = 0;
    for (int it = 0; it < n; it++)
        for (int i = 0; i < nfiles; i++) {
            sd_image img, out;
            if (sd_image_decode_memory(data[i], len[i], SD_IMAGE_PIL_MAX_PIXELS, &img, NULL)) return -1;
            if (sd_transform_apply(&img, &o, NULL, &out, NULL)) return -1;
            sum += out.data[0];
            sd_image_free(&img);
            sd_image_free(&out);
            count++;
        }
    double dt = sd_now() - t0, dc = cpu_seconds() - c0;
    printf("%ld %.6f %.6f %u\n", count, dc, dt, sum);
    for (int i = 0; i < nfiles; i++) free(data[i]);
    free(data);
    free(len);
    return 0;
}

int main(int argc, char **argv) {
    sd_set_progname(argv[0]);
    if (argc < 2) sd_die("usage: image_tool info|decode|resize|batch|transform|encode|chw|jpeg|bench ...");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "info") && argc == 3) {
        char *buf;
        size_t len;
        sd_image_info info;
        if (sd_read_file(argv[2], (size_t)1 << 31, &buf, &len)) sd_die_last();
        if (sd_image_probe_memory(buf, len, &info)) sd_die_last();
        printf("%s %d %d %s %d %d %d\n", sd_image_format_name(info.format), info.w, info.h, info.mode, info.bit_depth,
               info.interlaced, info.has_alpha);
        free(buf);
        return 0;
    }
    if (!strcmp(cmd, "decode") && (argc == 4 || argc == 5)) {
        sd_image img;
        sd_image_info info;
        uint64_t maxpix = argc == 5 ? strtoull(argv[4], NULL, 10) : 0;
        if (sd_image_decode_file(argv[2], maxpix, &img, &info)) sd_die_last();
        if (write_pnm(argv[3], &img)) sd_die_last();
        if (info.warnings) fprintf(stderr, "warnings: %d\n", info.warnings);
        sd_image_free(&img);
        return 0;
    }
    if (!strcmp(cmd, "resize") && (argc == 7 || argc == 11)) {
        sd_image img, out;
        sd_resize_filter f;
        int w = atoi(argv[4]), h = atoi(argv[5]);
        if (read_pnm(argv[2], &img) || parse_filter(argv[6], &f)) sd_die_last();
        int rc = argc == 11 ? sd_image_resize_crop(&img, w, h, f, atoi(argv[7]), atoi(argv[8]), atoi(argv[9]),
                                                   atoi(argv[10]), &out)
                            : sd_image_resize(&img, w, h, f, &out);
        if (rc || write_pnm(argv[3], &out)) sd_die_last();
        sd_image_free(&img);
        sd_image_free(&out);
        return 0;
    }
    if (!strcmp(cmd, "batch") && argc == 2) return cmd_batch();
    if (!strcmp(cmd, "transform") && (argc == 9 || argc == 11)) {
        sd_image img, out;
        sd_transform_opts o = {0};
        sd_transform_record rec;
        sd_resize_filter f;
        o.resolution = atoi(argv[4]);
        if (parse_filter(argv[5], &f)) sd_die_last();
        o.filter = f;
        o.center_crop = !strcmp(argv[6], "center");
        o.random_flip = !strcmp(argv[8], "flip");
        if (argc == 11) {
            o.height = atoi(argv[9]);
            o.width = atoi(argv[10]);
        }
        sd_rng rng;
        sd_rng_init(&rng, strtoull(argv[7], NULL, 10), 0);
        if (sd_image_decode_file(argv[2], 0, &img, NULL)) sd_die_last();
        if (sd_transform_apply(&img, &o, &rng, &out, &rec) || write_pnm(argv[3], &out)) sd_die_last();
        printf("%d %d %d %d %d %d %d %d %d\n", rec.orig_w, rec.orig_h, rec.resized_w, rec.resized_h, rec.crop_left,
               rec.crop_top, rec.out_w, rec.out_h, rec.flipped);
        sd_image_free(&img);
        sd_image_free(&out);
        return 0;
    }
    if (!strcmp(cmd, "encode") && argc >= 4) {
        sd_image img;
        if (read_pnm(argv[2], &img)) sd_die_last();
        int level = argc >= 5 ? atoi(argv[4]) : -1;
        int nt = argc > 5 ? argc - 5 : 0;
        sd_png_text *t = sd_xcalloc((size_t)(nt ? nt : 1), sizeof *t);
        for (int i = 0; i < nt; i++) {
            char *eq = strchr(argv[5 + i], '=');
            if (!eq) sd_die("encode: text must be KEY=VALUE");
            *eq = 0;
            t[i].key = argv[5 + i];
            t[i].value = eq + 1;
        }
        if (sd_png_write(argv[3], &img, t, nt, level)) sd_die_last();
        free(t);
        sd_image_free(&img);
        return 0;
    }
    if (!strcmp(cmd, "chw") && argc == 4) {
        sd_image img;
        if (read_pnm(argv[2], &img)) sd_die_last();
        size_t n = (size_t)img.w * img.h * img.c;
        float *t = sd_xmalloc(n * sizeof(float));
        sd_image_to_chw_f32(&img, t);
        if (sd_write_file_atomic(argv[3], t, n * sizeof(float))) sd_die_last();
        free(t);
        sd_image_free(&img);
        return 0;
    }
    if (!strcmp(cmd, "jpeg") && argc == 5) {
        if (cmd_jpeg(argv[2], argv[3], argv[4])) sd_die_last();
        return 0;
    }
    if (!strcmp(cmd, "bench-png") && argc == 5) {
        sd_image img;
        if (read_pnm(argv[2], &img)) sd_die_last();
        int level = atoi(argv[3]), n = atoi(argv[4]);
        size_t len = 0;
        double c0 = cpu_seconds();
        for (int i = 0; i < n; i++) {
            uint8_t *buf;
            if (sd_png_encode_memory(&img, NULL, 0, level, &buf, &len)) sd_die_last();
            free(buf);
        }
        printf("%zu %.6f\n", len, cpu_seconds() - c0);
        sd_image_free(&img);
        return 0;
    }
    if (!strcmp(cmd, "bench") && argc >= 6) {
        if (cmd_bench(atoi(argv[2]), atoi(argv[3]), argv[4], argv + 5, argc - 5)) sd_die_last();
        return 0;
    }
    sd_die("usage: image_tool info|decode|resize|batch|transform|encode|chw|jpeg|bench ... (bad arguments for %s)", cmd);
}
