/* image.c — PNG/JPEG/WebP decoding to RGB with PIL's semantics, crop, flip,
 * PNG encoding. The rules are in image.h; this file says how.
 *
 * libpng and libjpeg report errors by longjmp. To keep that clean (no
 * indeterminate locals, no leaks), each decoder keeps everything it owns in a
 * context struct that lives in the frame of a caller of the function that
 * calls setjmp; the setjmp function only writes through a pointer to it, and
 * after a longjmp it returns at once. The caller frees what the struct holds.
 */
#include "io/image.h"

#include "core/error.h"
#include "core/fs.h"

#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>
#include <zlib.h>
#include <libdeflate.h>

/* ---- common ---------------------------------------------------------------- */

const char *sd_image_format_name(sd_image_format f) {
    switch (f) {
    case SD_IMAGE_PNG: return "PNG";
    case SD_IMAGE_JPEG: return "JPEG";
    case SD_IMAGE_WEBP: return "WebP";
    default: return "unknown";
    }
}

sd_image_format sd_image_sniff(const void *data, size_t len) {
    const uint8_t *p = data;
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 8 && memcmp(p, png_sig, 8) == 0) return SD_IMAGE_PNG;
    if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) return SD_IMAGE_JPEG;
    if (len >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0) return SD_IMAGE_WEBP;
    return SD_IMAGE_UNKNOWN;
}

void sd_image_alloc(sd_image *img, int w, int h, int c) {
    img->w = w;
    img->h = h;
    img->c = c;
    img->data = sd_xmalloc((size_t)w * (size_t)h * (size_t)c + 1);
}

void sd_image_free(sd_image *img) {
    if (!img) return;
    free(img->data);
    img->data = NULL;
    img->w = img->h = img->c = 0;
}

/* Pixel memory sized by untrusted input: a clean error, not an abort. */
static uint8_t *alloc_pixels(int w, int h, int c, char *msg, size_t msgsz) {
    size_t n;
    if (w <= 0 || h <= 0) {
        snprintf(msg, msgsz, "zero-size image (%d x %d)", w, h);
        return NULL;
    }
    if ((size_t)w > (size_t)INT_MAX / (size_t)c || sd_mul_size((size_t)w * (size_t)c, (size_t)h, &n) != 0) {
        snprintf(msg, msgsz, "image too large (%d x %d)", w, h);
        return NULL;
    }
    uint8_t *p = malloc(n + 1);
    if (!p) snprintf(msg, msgsz, "out of memory for a %d x %d image (%zu bytes)", w, h, n);
    return p;
}

static int check_size(int w, int h, uint64_t max_pixels, char *msg, size_t msgsz) {
    if (w <= 0 || h <= 0) {
        snprintf(msg, msgsz, "zero-size image (%d x %d)", w, h);
        return -1;
    }
    uint64_t n = (uint64_t)w * (uint64_t)h;
    if (max_pixels && n > max_pixels) {
        snprintf(msg, msgsz,
                 "image is %d x %d = %llu pixels, more than the limit of %llu (decompression bomb guard)", w,
                 h, (unsigned long long)n, (unsigned long long)max_pixels);
        return -1;
    }
    return 0;
}

/* ---- PNG ------------------------------------------------------------------- */

typedef struct {
    png_structp png;
    png_infop info;
    const uint8_t *data;
    size_t len, pos;
    uint64_t max_pixels;
    int header_only;
    sd_image_info *meta;
    uint8_t *pixels; /* output RGB, w*h*3 */
    uint8_t *tmp;    /* a row, or the whole raw image when interlaced */
    uint8_t **rows;
    char msg[256];
} png_dec;

static void png_err_fn(png_structp png, png_const_charp m) {
    png_dec *d = png_get_error_ptr(png);
    snprintf(d->msg, sizeof d->msg, "%s", m);
    png_longjmp(png, 1);
}

static void png_warn_fn(png_structp png, png_const_charp m) {
    (void)png;
    (void)m; /* benign (e.g. an ancillary chunk with a bad CRC, discarded) */
}

static void png_read_fn(png_structp png, png_bytep out, size_t n) {
    png_dec *d = png_get_io_ptr(png);
    if (n > d->len - d->pos) png_error(png, "truncated file (premature end of data)");
    memcpy(out, d->data + d->pos, n);
    d->pos += n;
}

/* One raw libpng row (after png_set_packing: one byte per sample for depth
 * < 8; big-endian 16-bit samples for depth 16) to RGB, as PIL unpacks it into
 * its mode and then converts that mode to RGB. */
static void png_row_to_rgb(uint8_t *out, const uint8_t *in, int w, int color_type, int depth,
                           const uint8_t pal[256][3]) {
    int x;
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
        if (depth == 16) { /* mode I;16, then I16_RGB: clip to 255 */
            for (x = 0; x < w; x++) {
                uint8_t v = in[2 * x] == 0 ? in[2 * x + 1] : 255;
                out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = v;
            }
        } else { /* modes 1 / L;2 / L;4 / L: scale to 8 bits */
            int mul = depth == 1 ? 255 : depth == 2 ? 85 : depth == 4 ? 17 : 1;
            for (x = 0; x < w; x++) {
                uint8_t v = (uint8_t)(in[x] * mul);
                out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = v;
            }
        }
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: { /* LA, or RGBA from LA;16B: high byte */
        int step = depth == 16 ? 4 : 2;
        for (x = 0; x < w; x++) {
            uint8_t v = in[step * x];
            out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = v;
        }
        break;
    }
    case PNG_COLOR_TYPE_RGB:
        if (depth == 16) {
            for (x = 0; x < w; x++) {
                out[3 * x] = in[6 * x];
                out[3 * x + 1] = in[6 * x + 2];
                out[3 * x + 2] = in[6 * x + 4];
            }
        } else {
            memcpy(out, in, (size_t)w * 3);
        }
        break;
    case PNG_COLOR_TYPE_RGB_ALPHA: {
        int step = depth == 16 ? 8 : 4, b = depth == 16 ? 2 : 1;
        for (x = 0; x < w; x++) {
            out[3 * x] = in[step * x];
            out[3 * x + 1] = in[step * x + b];
            out[3 * x + 2] = in[step * x + 2 * b];
        }
        break;
    }
    case PNG_COLOR_TYPE_PALETTE:
        for (x = 0; x < w; x++) {
            const uint8_t *c = pal[in[x]];
            out[3 * x] = c[0];
            out[3 * x + 1] = c[1];
            out[3 * x + 2] = c[2];
        }
        break;
    }
}

static const char *png_mode(int color_type, int depth) {
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY: return depth == 1 ? "1" : depth == 16 ? "I;16" : "L";
    case PNG_COLOR_TYPE_GRAY_ALPHA: return depth == 16 ? "RGBA" : "LA";
    case PNG_COLOR_TYPE_RGB: return "RGB";
    case PNG_COLOR_TYPE_RGB_ALPHA: return "RGBA";
    case PNG_COLOR_TYPE_PALETTE: return "P";
    }
    return "?";
}

/* Everything that can longjmp happens here. */
static int png_run(png_dec *d) {
    if (setjmp(png_jmpbuf(d->png))) return -1;
    png_set_read_fn(d->png, d, png_read_fn);
    png_read_info(d->png, d->info);

    png_uint_32 w32, h32;
    int depth, color_type, interlace;
    png_get_IHDR(d->png, d->info, &w32, &h32, &depth, &color_type, &interlace, NULL, NULL);
    int w = (int)w32, h = (int)h32;
    if (d->meta) {
        d->meta->format = SD_IMAGE_PNG;
        d->meta->w = w;
        d->meta->h = h;
        snprintf(d->meta->mode, sizeof d->meta->mode, "%s", png_mode(color_type, depth));
        d->meta->bit_depth = depth;
        d->meta->interlaced = interlace != PNG_INTERLACE_NONE;
        d->meta->has_alpha = (color_type & PNG_COLOR_MASK_ALPHA) || png_get_valid(d->png, d->info, PNG_INFO_tRNS);
    }
    if (check_size(w, h, d->max_pixels, d->msg, sizeof d->msg)) return -1;
    if (d->header_only) return 0;

    uint8_t pal[256][3];
    memset(pal, 0, sizeof pal); /* PIL's palette is zero past the PLTE entries */
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_colorp plte = NULL;
        int n = 0;
        if (!png_get_PLTE(d->png, d->info, &plte, &n) || n <= 0) {
            snprintf(d->msg, sizeof d->msg, "palette image without PLTE");
            return -1;
        }
        for (int i = 0; i < n && i < 256; i++) {
            pal[i][0] = plte[i].red;
            pal[i][1] = plte[i].green;
            pal[i][2] = plte[i].blue;
        }
    }
    if (depth < 8) png_set_packing(d->png);
    int passes = png_set_interlace_handling(d->png);
    png_read_update_info(d->png, d->info);
    size_t rowbytes = png_get_rowbytes(d->png, d->info);

    d->pixels = alloc_pixels(w, h, 3, d->msg, sizeof d->msg);
    if (!d->pixels) return -1;
    d->rows = malloc(sizeof(uint8_t *) * (size_t)h);
    if (!d->rows) {
        snprintf(d->msg, sizeof d->msg, "out of memory");
        return -1;
    }
    int direct = color_type == PNG_COLOR_TYPE_RGB && depth == 8;
    if (direct) { /* the common case: libpng writes straight into the output */
        for (int y = 0; y < h; y++) d->rows[y] = d->pixels + (size_t)y * w * 3;
        png_read_image(d->png, d->rows);
    } else if (passes == 1) { /* row by row through one raw row */
        d->tmp = malloc(rowbytes + 1);
        if (!d->tmp) {
            snprintf(d->msg, sizeof d->msg, "out of memory");
            return -1;
        }
        for (int y = 0; y < h; y++) {
            png_read_row(d->png, d->tmp, NULL);
            png_row_to_rgb(d->pixels + (size_t)y * w * 3, d->tmp, w, color_type, depth, pal);
        }
    } else { /* interlaced: the whole raw image, then convert */
        size_t n;
        if (sd_mul_size(rowbytes, (size_t)h, &n) || !(d->tmp = malloc(n + 1))) {
            snprintf(d->msg, sizeof d->msg, "out of memory for a %d x %d image", w, h);
            return -1;
        }
        for (int y = 0; y < h; y++) d->rows[y] = d->tmp + (size_t)y * rowbytes;
        png_read_image(d->png, d->rows);
        for (int y = 0; y < h; y++)
            png_row_to_rgb(d->pixels + (size_t)y * w * 3, d->rows[y], w, color_type, depth, pal);
    }
    /* The chunks after the image data (text, IEND) are not needed: PIL does
     * not require them either. */
    return 0;
}

static int decode_png(const uint8_t *data, size_t len, uint64_t max_pixels, int header_only, sd_image *out,
                      sd_image_info *meta) {
    /* The bomb guard first, from the IHDR at its fixed place: libpng's header
     * read goes on to the first IDAT, which a hostile file need not have. */
    if (len >= 33 && memcmp(data + 12, "IHDR", 4) == 0 && max_pixels) {
        uint32_t w = (uint32_t)data[16] << 24 | (uint32_t)data[17] << 16 | (uint32_t)data[18] << 8 | data[19];
        uint32_t h = (uint32_t)data[20] << 24 | (uint32_t)data[21] << 16 | (uint32_t)data[22] << 8 | data[23];
        if ((uint64_t)w * h > max_pixels)
            return sd_set_error("PNG: image is %u x %u = %llu pixels, more than the limit of %llu (decompression "
                                "bomb guard)", w, h, (unsigned long long)w * h, (unsigned long long)max_pixels);
    }
    png_dec d;
    memset(&d, 0, sizeof d);
    d.data = data;
    d.len = len;
    d.max_pixels = max_pixels;
    d.header_only = header_only;
    d.meta = meta;
    d.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &d, png_err_fn, png_warn_fn);
    if (!d.png) return sd_set_error("PNG: cannot create decoder");
    d.info = png_create_info_struct(d.png);
    int rc = d.info ? png_run(&d) : (snprintf(d.msg, sizeof d.msg, "out of memory"), -1);
    png_destroy_read_struct(&d.png, d.info ? &d.info : NULL, NULL);
    free(d.tmp);
    free(d.rows);
    if (rc) {
        free(d.pixels);
        return sd_set_error("PNG: %s", d.msg);
    }
    if (!header_only) {
        out->w = meta->w;
        out->h = meta->h;
        out->c = 3;
        out->data = d.pixels;
    }
    return 0;
}

/* ---- JPEG ------------------------------------------------------------------ */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

typedef struct {
    struct jpeg_decompress_struct ci;
    jpeg_err err;
    struct jpeg_source_mgr src;
    const uint8_t *data;
    size_t len;
    uint64_t max_pixels;
    int header_only;
    sd_image_info *meta;
    uint8_t *pixels;
    uint8_t *tmp; /* CMYK rows */
    char msg[256];
} jpeg_dec;

static void jpeg_err_exit(j_common_ptr ci) {
    jpeg_err *e = (jpeg_err *)ci->err;
    (*ci->err->format_message)(ci, e->msg);
    longjmp(e->jb, 1);
}
static void jpeg_output_message(j_common_ptr ci) { (void)ci; /* warnings are counted, not printed */ }

/* A memory source that treats running out of data as an error (PIL: "image
 * file is truncated"), unlike jpeg_mem_src which invents an EOI marker. */
static void jsrc_init(j_decompress_ptr ci) { (void)ci; }
static boolean jsrc_fill(j_decompress_ptr ci) {
    ERREXIT(ci, JERR_INPUT_EOF);
    return FALSE;
}
static void jsrc_skip(j_decompress_ptr ci, long n) {
    struct jpeg_source_mgr *s = ci->src;
    if (n <= 0) return;
    if ((size_t)n > s->bytes_in_buffer) ERREXIT(ci, JERR_INPUT_EOF);
    s->next_input_byte += n;
    s->bytes_in_buffer -= (size_t)n;
}
static void jsrc_term(j_decompress_ptr ci) { (void)ci; }

/* PIL: rawmode "CMYK;I" inverts the decoder's bytes, then cmyk2rgb:
 * nk = 255 - k, out = CLIP8(nk - MULDIV255(c, nk)) with MULDIV255(a, b) =
 * ((a*b + 128) + ((a*b + 128) >> 8)) >> 8. */
static void cmyk_row_to_rgb(uint8_t *out, const uint8_t *in, int w) {
    for (int x = 0; x < w; x++, in += 4, out += 3) {
        int nk = in[3]; /* 255 - (255 - K) */
        for (int i = 0; i < 3; i++) {
            int c = 255 - in[i];
            int t = c * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            out[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}

static int jpeg_run(jpeg_dec *d) {
    j_decompress_ptr ci = &d->ci;
    if (setjmp(d->err.jb)) {
        snprintf(d->msg, sizeof d->msg, "%s", d->err.msg);
        return -1;
    }
    jpeg_create_decompress(ci);
    d->src.init_source = jsrc_init;
    d->src.fill_input_buffer = jsrc_fill;
    d->src.skip_input_data = jsrc_skip;
    d->src.resync_to_restart = jpeg_resync_to_restart;
    d->src.term_source = jsrc_term;
    d->src.next_input_byte = d->data;
    d->src.bytes_in_buffer = d->len;
    ci->src = &d->src;
    jpeg_read_header(ci, TRUE);

    int w = (int)ci->image_width, h = (int)ci->image_height, nc = ci->num_components;
    if (d->meta) {
        d->meta->format = SD_IMAGE_JPEG;
        d->meta->w = w;
        d->meta->h = h;
        snprintf(d->meta->mode, sizeof d->meta->mode, "%s", nc == 1 ? "L" : nc == 3 ? "RGB" : nc == 4 ? "CMYK" : "?");
        d->meta->bit_depth = ci->data_precision;
        d->meta->interlaced = ci->progressive_mode != 0;
        d->meta->has_alpha = 0;
    }
    if (nc != 1 && nc != 3 && nc != 4) {
        snprintf(d->msg, sizeof d->msg, "cannot handle %d-component images", nc);
        return -1;
    }
    if (ci->data_precision != 8) {
        snprintf(d->msg, sizeof d->msg, "cannot handle %d-bit samples", ci->data_precision);
        return -1;
    }
    if (check_size(w, h, d->max_pixels, d->msg, sizeof d->msg)) return -1;
    if (d->header_only) return 0;

    /* PIL's settings are libjpeg's defaults (JDCT_ISLOW, fancy upsampling,
     * scale 1/1); only the output color space is chosen. Gray goes to RGB by
     * libjpeg's replication, which is PIL's L->RGB. */
    ci->out_color_space = nc == 4 ? JCS_CMYK : JCS_RGB;
    ci->dct_method = JDCT_ISLOW;
    ci->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(ci);
    if ((int)ci->output_width != w || (int)ci->output_height != h ||
        ci->output_components != (nc == 4 ? 4 : 3)) {
        snprintf(d->msg, sizeof d->msg, "unexpected decoder output geometry");
        return -1;
    }
    d->pixels = alloc_pixels(w, h, 3, d->msg, sizeof d->msg);
    if (!d->pixels) return -1;
    if (nc == 4) {
        int nrows = ci->rec_outbuf_height > 0 ? ci->rec_outbuf_height : 1;
        d->tmp = malloc((size_t)w * 4 * (size_t)nrows);
        if (!d->tmp) {
            snprintf(d->msg, sizeof d->msg, "out of memory");
            return -1;
        }
        JSAMPROW rows[16];
        if (nrows > 16) nrows = 16;
        for (int i = 0; i < nrows; i++) rows[i] = d->tmp + (size_t)i * w * 4;
        while (ci->output_scanline < ci->output_height) {
            int y0 = (int)ci->output_scanline;
            int got = (int)jpeg_read_scanlines(ci, rows, (JDIMENSION)nrows);
            for (int i = 0; i < got; i++) cmyk_row_to_rgb(d->pixels + (size_t)(y0 + i) * w * 3, rows[i], w);
        }
    } else {
        JSAMPROW rows[16];
        while (ci->output_scanline < ci->output_height) {
            int y0 = (int)ci->output_scanline, n = h - y0;
            if (n > 16) n = 16;
            for (int i = 0; i < n; i++) rows[i] = d->pixels + (size_t)(y0 + i) * w * 3;
            jpeg_read_scanlines(ci, rows, (JDIMENSION)n);
        }
    }
    if (d->meta) d->meta->warnings = (int)d->err.pub.num_warnings;
    /* No jpeg_finish_decompress: what follows the last scanline (EOI,
     * trailing markers) does not change the pixels; PIL ignores it too. */
    return 0;
}

static int decode_jpeg(const uint8_t *data, size_t len, uint64_t max_pixels, int header_only, sd_image *out,
                       sd_image_info *meta) {
    jpeg_dec *d = calloc(1, sizeof *d); /* big (jmp_buf, libjpeg state); keep it off the stack */
    if (!d) return sd_set_error("JPEG: out of memory");
    d->data = data;
    d->len = len;
    d->max_pixels = max_pixels;
    d->header_only = header_only;
    d->meta = meta;
    d->ci.err = jpeg_std_error(&d->err.pub);
    d->err.pub.error_exit = jpeg_err_exit;
    d->err.pub.output_message = jpeg_output_message;
    int rc = jpeg_run(d);
    jpeg_destroy_decompress(&d->ci);
    free(d->tmp);
    if (rc) {
        free(d->pixels);
        /* libjpeg's words for running out of data are obscure */
        if (strstr(d->msg, "Premature end of input file"))
            sd_set_error("JPEG: truncated file (premature end of data)");
        else
            sd_set_error("JPEG: %s", d->msg);
        free(d);
        return -1;
    }
    if (!header_only) {
        out->w = meta->w;
        out->h = meta->h;
        out->c = 3;
        out->data = d->pixels;
    }
    free(d);
    return 0;
}

/* ---- WebP ------------------------------------------------------------------ */

static const char *webp_status(VP8StatusCode s) {
    switch (s) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "corrupt data (bitstream error)";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated file (not enough data)";
    default: return "decoding failed";
    }
}

static int decode_webp(const uint8_t *data, size_t len, uint64_t max_pixels, int header_only, sd_image *out,
                       sd_image_info *meta) {
    WebPBitstreamFeatures f;
    char msg[256];
    VP8StatusCode st = WebPGetFeatures(data, len, &f);
    if (st != VP8_STATUS_OK) return sd_set_error("WebP: %s", webp_status(st));
    meta->format = SD_IMAGE_WEBP;
    meta->w = f.width;
    meta->h = f.height;
    snprintf(meta->mode, sizeof meta->mode, "%s", f.has_alpha ? "RGBA" : "RGB");
    meta->bit_depth = 8;
    meta->interlaced = 0;
    meta->has_alpha = f.has_alpha;
    if (f.has_animation) return sd_set_error("WebP: animated WebP is not supported");
    if (check_size(f.width, f.height, max_pixels, msg, sizeof msg)) return sd_set_error("WebP: %s", msg);
    if (header_only) return 0;
    uint8_t *px = alloc_pixels(f.width, f.height, 3, msg, sizeof msg);
    if (!px) return sd_set_error("WebP: %s", msg);
    /* WebPDecode's defaults are those of the WebPAnimDecoder PIL uses (fancy
     * upsampling, no dithering); RGB values do not depend on the alpha
     * channel (non-premultiplied output), so decode RGB directly. */
    WebPDecoderConfig cfg;
    if (!WebPInitDecoderConfig(&cfg)) {
        free(px);
        return sd_set_error("WebP: library version mismatch");
    }
    cfg.output.colorspace = MODE_RGB;
    cfg.output.is_external_memory = 1;
    cfg.output.u.RGBA.rgba = px;
    cfg.output.u.RGBA.stride = f.width * 3;
    cfg.output.u.RGBA.size = (size_t)f.width * (size_t)f.height * 3;
    st = WebPDecode(data, len, &cfg);
    WebPFreeDecBuffer(&cfg.output);
    if (st != VP8_STATUS_OK) {
        free(px);
        return sd_set_error("WebP: %s", webp_status(st));
    }
    out->w = f.width;
    out->h = f.height;
    out->c = 3;
    out->data = px;
    return 0;
}

/* ---- dispatch ------------------------------------------------------------- */

static int decode_any(const void *data, size_t len, uint64_t max_pixels, int header_only, sd_image *out,
                      sd_image_info *info) {
    sd_image_info tmp;
    if (!info) info = &tmp;
    memset(info, 0, sizeof *info);
    if (out) memset(out, 0, sizeof *out);
    if (!data || len == 0) return sd_set_error("empty file");
    sd_image_format f = sd_image_sniff(data, len);
    switch (f) {
    case SD_IMAGE_PNG: return decode_png(data, len, max_pixels, header_only, out, info);
    case SD_IMAGE_JPEG: return decode_jpeg(data, len, max_pixels, header_only, out, info);
    case SD_IMAGE_WEBP: return decode_webp(data, len, max_pixels, header_only, out, info);
    default: break;
    }
    const uint8_t *p = data;
    if (len >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
        return sd_set_error("unsupported image format (GIF); supported: PNG, JPEG, WebP");
    if (len >= 2 && p[0] == 'B' && p[1] == 'M')
        return sd_set_error("unsupported image format (BMP); supported: PNG, JPEG, WebP");
    if (len >= 4 && (memcmp(p, "II*\0", 4) == 0 || memcmp(p, "MM\0*", 4) == 0))
        return sd_set_error("unsupported image format (TIFF); supported: PNG, JPEG, WebP");
    if (len < 12 && (p[0] == 0x89 || p[0] == 0xff || p[0] == 'R'))
        return sd_set_error("truncated file (%zu bytes)", len);
    return sd_set_error("unsupported image format (not PNG, JPEG or WebP)");
}

int sd_image_probe_memory(const void *data, size_t len, sd_image_info *info) {
    return decode_any(data, len, 0, 1, NULL, info);
}

int sd_image_decode_memory(const void *data, size_t len, uint64_t max_pixels, sd_image *out,
                           sd_image_info *info) {
    return decode_any(data, len, max_pixels, 0, out, info);
}

int sd_image_decode_file(const char *path, uint64_t max_pixels, sd_image *out, sd_image_info *info) {
    char *buf;
    size_t len;
    memset(out, 0, sizeof *out);
    if (info) memset(info, 0, sizeof *info);
    if (sd_read_file(path, (size_t)1 << 31, &buf, &len)) return -1; /* message names the path */
    int rc = decode_any(buf, len, max_pixels, 0, out, info);
    free(buf);
    if (rc) return sd_error_prefix("%s", path);
    return 0;
}

/* ---- crop, flip, tensor ---------------------------------------------------- */

int sd_image_crop(const sd_image *src, int left, int top, int cw, int ch, sd_image *dst) {
    memset(dst, 0, sizeof *dst);
    if (cw <= 0 || ch <= 0) return sd_set_error("crop: empty box (%d x %d)", cw, ch);
    int c = src->c;
    sd_image_alloc(dst, cw, ch, c);
    for (int y = 0; y < ch; y++) {
        uint8_t *o = dst->data + (size_t)y * cw * c;
        int sy = top + y;
        if (sy < 0 || sy >= src->h) {
            memset(o, 0, (size_t)cw * c);
            continue;
        }
        /* columns [x0, x1) of the box come from the source */
        long x0 = left < 0 ? -(long)left : 0, x1 = (long)src->w - left;
        if (x1 > cw) x1 = cw;
        if (x0 > cw) x0 = cw;
        if (x1 < x0) x1 = x0;
        memset(o, 0, (size_t)x0 * c);
        if (x1 > x0) memcpy(o + x0 * c, src->data + ((size_t)sy * src->w + (size_t)(left + x0)) * c, (size_t)(x1 - x0) * c);
        memset(o + x1 * c, 0, (size_t)(cw - x1) * c);
    }
    return 0;
}

void sd_image_flip_h(sd_image *img) {
    int c = img->c, w = img->w;
    for (int y = 0; y < img->h; y++) {
        uint8_t *row = img->data + (size_t)y * w * c;
        for (int a = 0, b = w - 1; a < b; a++, b--)
            for (int i = 0; i < c; i++) {
                uint8_t t = row[a * c + i];
                row[a * c + i] = row[b * c + i];
                row[b * c + i] = t;
            }
    }
}

void sd_image_to_chw_f32(const sd_image *img, float *out) {
    size_t hw = (size_t)img->w * img->h;
    for (int ch = 0; ch < img->c; ch++)
        for (size_t i = 0; i < hw; i++) {
            float t = (float)img->data[i * img->c + ch] / 255.0f;
            out[ch * hw + i] = (t - 0.5f) / 0.5f;
        }
}

/* ---- PNG encoding ------------------------------------------------------------
 *
 * Default (level SD_PNG_FAST): every row Paeth-filtered, deflate with the
 * Z_RLE strategy. Measured (bench/bench_image.py, one core) on a 512x512
 * natural photo / a synthetic photo-like image, 786432 raw bytes:
 *     Paeth + Z_RLE                    498724 / 305139 bytes   10.8 / 10.7 ms
 *     adaptive filters, level 1        533052 / 342753         18.4 / 14.1 ms
 *     adaptive filters, level 4        499843 / 307196         34.5 / 31.1 ms
 *     adaptive filters, level 6 (PIL)  497954 / 301377         62.7 / 110.7 ms
 *     Up + Z_RLE                       583412 / 328392          8.1 /  8.2 ms
 * Paeth + RLE is as small as zlib level 6 (within 1%) at 1/6 to 1/10 of the
 * time: on filtered photographic rows, long matches are rare and run-length
 * plus Huffman coding captures nearly all of the gain.
 * Levels 0..9 select classic deflate at that level with adaptive filtering.
 */

typedef struct {
    png_structp png;
    png_infop info;
    uint8_t *buf;
    size_t len, cap;
    png_text *texts;
    char **owned; /* converted strings to free */
    int nowned;
    char msg[256];
} png_enc;

static void pngw_err_fn(png_structp png, png_const_charp m) {
    png_enc *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", m);
    png_longjmp(png, 1);
}

static void pngw_write_fn(png_structp png, png_bytep p, size_t n) {
    png_enc *e = png_get_io_ptr(png);
    if (n > e->cap - e->len) {
        size_t cap = e->cap ? e->cap : 65536;
        while (cap - e->len < n) {
            if (cap > SIZE_MAX / 2) png_error(png, "output too large");
            cap *= 2;
        }
        uint8_t *nb = realloc(e->buf, cap);
        if (!nb) png_error(png, "out of memory");
        e->buf = nb;
        e->cap = cap;
    }
    memcpy(e->buf + e->len, p, n);
    e->len += n;
}

static void pngw_flush_fn(png_structp png) { (void)png; }

static int png_key_ok(const char *k) {
    size_t n = strlen(k);
    if (n < 1 || n > 79 || k[0] == ' ' || k[n - 1] == ' ') return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c < 0x20 || c > 0x7e) return 0;
        if (c == ' ' && k[i + 1] == ' ') return 0;
    }
    return 1;
}

/* UTF-8 -> Latin-1 if every code point is <= 0xFF (PIL writes tEXt then),
 * else NULL (iTXt). *bad is set for invalid UTF-8. */
static char *utf8_to_latin1(const char *s, int *bad) {
    size_t n = strlen(s);
    char *o = malloc(n + 1);
    size_t j = 0;
    *bad = 0;
    if (!o) return NULL;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        unsigned cp;
        int len;
        if (c < 0x80) { cp = c; len = 1; }
        else if ((c & 0xe0) == 0xc0) { cp = c & 0x1f; len = 2; }
        else if ((c & 0xf0) == 0xe0) { cp = c & 0x0f; len = 3; }
        else if ((c & 0xf8) == 0xf0) { cp = c & 0x07; len = 4; }
        else { *bad = 1; break; }
        if (i + (size_t)len > n) { *bad = 1; break; }
        for (int k = 1; k < len; k++) {
            unsigned char cc = (unsigned char)s[i + k];
            if ((cc & 0xc0) != 0x80) { *bad = 1; break; }
            cp = (cp << 6) | (cc & 0x3f);
        }
        if (*bad) break;
        /* overlong forms and surrogates are invalid */
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) { *bad = 1; break; }
        if (cp > 0xff) { free(o); o = NULL; /* keep validating */ }
        if (o) o[j++] = (char)cp;
        i += (size_t)len;
    }
    if (*bad) { free(o); return NULL; }
    if (o) o[j] = 0;
    return o;
}

static int png_enc_run(png_enc *e, const sd_image *img, const sd_png_text *texts, int ntexts, int level) {
    if (setjmp(png_jmpbuf(e->png))) return -1;
    png_set_write_fn(e->png, e, pngw_write_fn, pngw_flush_fn);
    int ct = img->c == 1 ? PNG_COLOR_TYPE_GRAY : img->c == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGB_ALPHA;
    png_set_IHDR(e->png, e->info, (png_uint_32)img->w, (png_uint_32)img->h, 8, ct, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (level == SD_PNG_FAST) {
        png_set_filter(e->png, PNG_FILTER_TYPE_BASE, PNG_FILTER_PAETH);
        png_set_compression_strategy(e->png, Z_RLE);
        png_set_compression_level(e->png, 1);
    } else {
        png_set_filter(e->png, PNG_FILTER_TYPE_BASE, PNG_ALL_FILTERS);
        png_set_compression_level(e->png, level);
    }
    if (ntexts > 0) png_set_text(e->png, e->info, e->texts, ntexts);
    png_write_info(e->png, e->info);
    size_t stride = (size_t)img->w * img->c;
    for (int y = 0; y < img->h; y++) png_write_row(e->png, img->data + (size_t)y * stride);
    png_write_end(e->png, NULL);
    return 0;
}

/* ---- the fast default: our own PNG writer over libdeflate -------------------
 *
 * libpng + zlib spend most of sdprep's time in deflate. For SD_PNG_FAST the
 * rows are filtered here (filter chosen by SD_PNG_FAST_FILTER below) and the
 * whole filtered image is compressed in one call by libdeflate, which is 3-5x
 * faster than zlib at the same ratio. Measured on 512x512 images, one core
 * (bench/bench_png.c): see the table at SD_PNG_FAST_LEVEL. The chunk layout
 * is the minimal valid PNG: IHDR, text chunks, one IDAT, IEND. */

#define SD_PNG_FAST_LEVEL 1 /* libdeflate level */

static _Thread_local struct libdeflate_compressor *fast_comp;

/* Paeth-filter n bytes: out[i] = cur[i] - PaethPredictor(left, up, upleft),
 * with left = cur[i-bpp] and upleft = up[i-bpp]. Every output depends only on
 * unfiltered input, so the loop is data-parallel; written branch-free so the
 * compiler vectorizes it (4x faster than the textbook branches). */
#if defined(__GNUC__) && !defined(__clang__)
#define SD_OPT_O3 __attribute__((optimize("O3")))
#else
#define SD_OPT_O3
#endif
SD_OPT_O3 static void paeth_row(uint8_t *restrict out, const uint8_t *restrict cur,
                                                      const uint8_t *restrict up, size_t bpp, size_t n) {
    for (size_t i = 0; i < bpp; i++) out[i] = (uint8_t)(cur[i] - up[i]);
    for (size_t i = bpp; i < n; i++) {
        int a = cur[i - bpp], b = up[i], c = up[i - bpp];
        int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
        int pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
        out[i] = (uint8_t)(cur[i] - pred);
    }
}

typedef struct { uint8_t *p; size_t n, cap; } obuf;
static void ob_put(obuf *o, const void *d, size_t n) {
    if (o->n + n > o->cap) {
        while (o->n + n > o->cap) o->cap = o->cap ? 2 * o->cap : 65536;
        o->p = sd_xrealloc(o->p, o->cap);
    }
    memcpy(o->p + o->n, d, n);
    o->n += n;
}
static void ob_u32(obuf *o, uint32_t v) {
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    ob_put(o, b, 4);
}
/* A chunk: length, type, data, CRC over type+data. */
static void ob_chunk(obuf *o, const char *type, const void *d1, size_t n1, const void *d2, size_t n2) {
    ob_u32(o, (uint32_t)(n1 + n2));
    size_t start = o->n;
    ob_put(o, type, 4);
    if (n1) ob_put(o, d1, n1);
    if (n2) ob_put(o, d2, n2);
    ob_u32(o, libdeflate_crc32(0, o->p + start, o->n - start));
}

static int png_encode_fast(const sd_image *img, const sd_png_text *texts, int ntexts, uint8_t **buf, size_t *len) {
    size_t bpp = (size_t)img->c, stride = (size_t)img->w * bpp, rowlen = stride + 1;
    size_t raw_n = rowlen * (size_t)img->h;
    uint8_t *raw = sd_xmalloc(raw_n);
    /* Paeth on every row (the first row's "above" is zero, so Paeth = Sub) */
    for (int y = 0; y < img->h; y++) {
        const uint8_t *cur = img->data + (size_t)y * stride, *up = y ? cur - stride : NULL;
        uint8_t *out = raw + (size_t)y * rowlen;
        out[0] = 4;
        out++;
        if (!up) {
            for (size_t i = 0; i < bpp; i++) out[i] = cur[i];
            for (size_t i = bpp; i < stride; i++) out[i] = (uint8_t)(cur[i] - cur[i - bpp]);
        } else {
            paeth_row(out, cur, up, bpp, stride);
        }
    }
    if (!fast_comp && !(fast_comp = libdeflate_alloc_compressor(SD_PNG_FAST_LEVEL))) {
        free(raw);
        return sd_set_error("PNG encode: out of memory (compressor)");
    }
    size_t zcap = libdeflate_zlib_compress_bound(fast_comp, raw_n);
    uint8_t *z = sd_xmalloc(zcap);
    size_t zn = libdeflate_zlib_compress(fast_comp, raw, raw_n, z, zcap);
    free(raw);
    if (zn == 0) { free(z); return sd_set_error("PNG encode: compression failed"); }

    obuf o = {0};
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    ob_put(&o, sig, 8);
    uint8_t ihdr[13];
    uint32_t w = (uint32_t)img->w, h = (uint32_t)img->h;
    for (int i = 0; i < 4; i++) { ihdr[i] = (uint8_t)(w >> (24 - 8 * i)); ihdr[4 + i] = (uint8_t)(h >> (24 - 8 * i)); }
    ihdr[8] = 8;
    ihdr[9] = img->c == 1 ? 0 : img->c == 3 ? 2 : 6;
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    ob_chunk(&o, "IHDR", ihdr, 13, NULL, 0);
    for (int i = 0; i < ntexts; i++) {
        int bad;
        char *l1 = utf8_to_latin1(texts[i].value, &bad);
        size_t kl = strlen(texts[i].key) + 1; /* with its NUL separator */
        if (l1) { /* tEXt: key NUL Latin-1 text */
            ob_chunk(&o, "tEXt", texts[i].key, kl, l1, strlen(l1));
            free(l1);
        } else { /* iTXt: key NUL, compression flag 0, method 0, empty language NUL, empty translated key NUL, UTF-8 */
            size_t n = kl + 4 + strlen(texts[i].value);
            uint8_t *d = sd_xmalloc(n);
            memcpy(d, texts[i].key, kl);
            memset(d + kl, 0, 4);
            memcpy(d + kl + 4, texts[i].value, strlen(texts[i].value));
            ob_chunk(&o, "iTXt", d, n, NULL, 0);
            free(d);
        }
    }
    ob_chunk(&o, "IDAT", z, zn, NULL, 0);
    free(z);
    ob_chunk(&o, "IEND", NULL, 0, NULL, 0);
    *buf = o.p;
    *len = o.n;
    return 0;
}

int sd_png_encode_memory(const sd_image *img, const sd_png_text *texts, int ntexts, int level, uint8_t **buf,
                         size_t *len) {
    *buf = NULL;
    *len = 0;
    if (!img || !img->data || img->w <= 0 || img->h <= 0) return sd_set_error("PNG encode: empty image");
    if (img->c != 1 && img->c != 3 && img->c != 4)
        return sd_set_error("PNG encode: %d channels (1, 3 or 4 supported)", img->c);
    if (level < SD_PNG_FAST || level > 9)
        return sd_set_error("PNG encode: compression level %d (-1 = fast default, or zlib 0..9)", level);
    if (ntexts < 0 || (ntexts > 0 && !texts)) return sd_set_error("PNG encode: bad text list");

    png_enc e;
    memset(&e, 0, sizeof e);
    int rc = 0;
    if (ntexts > 0) {
        e.texts = calloc((size_t)ntexts, sizeof(png_text));
        e.owned = calloc((size_t)ntexts, sizeof(char *));
        if (!e.texts || !e.owned) { rc = sd_set_error("PNG encode: out of memory"); goto done; }
    }
    for (int i = 0; i < ntexts; i++) {
        if (!texts[i].key || !texts[i].value || !png_key_ok(texts[i].key)) {
            rc = sd_set_error("PNG encode: bad text key \"%s\" (1-79 printable ASCII characters, no "
                              "leading, trailing or double spaces)", texts[i].key ? texts[i].key : "(null)");
            goto done;
        }
        int bad;
        char *l1 = utf8_to_latin1(texts[i].value, &bad);
        if (bad) { rc = sd_set_error("PNG encode: text \"%s\" is not valid UTF-8", texts[i].key); goto done; }
        png_text *t = &e.texts[i];
        t->key = (png_charp)texts[i].key;
        if (l1) { /* tEXt, Latin-1 */
            e.owned[e.nowned++] = l1;
            t->compression = PNG_TEXT_COMPRESSION_NONE;
            t->text = l1;
            t->text_length = strlen(l1);
        } else { /* iTXt, UTF-8, uncompressed */
            t->compression = PNG_ITXT_COMPRESSION_NONE;
            t->text = (png_charp)texts[i].value;
            t->itxt_length = strlen(texts[i].value);
            t->lang = (png_charp) "";
            t->lang_key = (png_charp) "";
        }
    }
    if (level == SD_PNG_FAST) {
        rc = png_encode_fast(img, texts, ntexts, &e.buf, &e.len);
        goto done;
    }
    e.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &e, pngw_err_fn, png_warn_fn);
    if (!e.png) { rc = sd_set_error("PNG encode: cannot create encoder"); goto done; }
    e.info = png_create_info_struct(e.png);
    if (!e.info) { rc = sd_set_error("PNG encode: out of memory"); goto done; }
    if (png_enc_run(&e, img, texts, ntexts, level)) rc = sd_set_error("PNG encode: %s", e.msg);
done:
    if (e.png) png_destroy_write_struct(&e.png, e.info ? &e.info : NULL);
    for (int i = 0; i < e.nowned; i++) free(e.owned[i]);
    free(e.owned);
    free(e.texts);
    if (rc) {
        free(e.buf);
        return -1;
    }
    *buf = e.buf;
    *len = e.len;
    return 0;
}

int sd_png_write(const char *path, const sd_image *img, const sd_png_text *texts, int ntexts, int level) {
    uint8_t *buf;
    size_t len;
    if (sd_png_encode_memory(img, texts, ntexts, level, &buf, &len)) return sd_error_prefix("%s", path);
    int rc = sd_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}
