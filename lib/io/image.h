/* image.h — decode PNG/JPEG/WebP to 8-bit RGB exactly as PIL does, crop, flip,
 * and encode PNG.
 *
 * The reference is what diffusers' train_text_to_image.py does to a picture:
 * `PIL.Image.open(f).convert("RGB")`. The decoders reproduce that pixel for
 * pixel (tests/py/test_image_parity.py measures it against Pillow):
 *
 *   PNG  (libpng, raw rows; every conversion below is done here, not by libpng)
 *     gray 1/2/4/8 bit      value scaled to 8 bits (x255, x85, x17), replicated
 *     gray 16 bit           PIL opens it as mode "I;16" and I;16->RGB CLIPS:
 *                           v < 256 ? v : 255 (so most 16-bit gray PNGs come
 *                           out nearly white — that is what PIL trains on)
 *     gray+alpha 8/16       gray (16 bit: high byte), alpha dropped, not composited
 *     RGB 8/16, RGBA 8/16   16 bit: high byte (truncation); alpha dropped
 *     palette 1/2/4/8       index -> PLTE entry; indices past the PLTE are black
 *                           (PIL's palette is zero-filled); tRNS ignored
 *     tRNS, gAMA, cHRM, sRGB, iCCP, sBIT, eXIf   ignored (PIL's convert ignores them)
 *     interlaced (Adam7)    de-interlaced
 *     A file that ends before the end of the zlib stream is an error (PIL
 *     accepts a file cut after its last pixel row); bad CRCs of critical
 *     chunks (IHDR, PLTE, IDAT) are errors, of ancillary chunks ignored.
 *   JPEG (libjpeg-turbo with libjpeg's defaults, as PIL: JDCT_ISLOW, fancy
 *     upsampling, no scaling)
 *     1 component           gray, replicated
 *     3 components          libjpeg's YCbCr->RGB (or RGB as stored)
 *     4 components          decoded as CMYK (YCCK converted by libjpeg), then
 *                           PIL's rawmode "CMYK;I" (always Adobe-inverted) and
 *                           PIL's cmyk2rgb: k' = 255-K, R = clip(k' - c*k'/255)
 *                           with c = 255-C and PIL's rounding of /255.
 *     A file that ends early is an error (PIL: "image file is truncated");
 *     what follows the last scanline (EOI, trailing bytes) is not read.
 *     Data that libjpeg decodes with a "Corrupt JPEG data" warning is accepted,
 *     as by PIL; the count of such warnings is reported in sd_image_info.
 *   WebP (libwebp, still images; lossy, lossless, with alpha): RGB, alpha
 *     dropped (PIL decodes RGBA/RGBX and convert("RGB") drops A). Animated
 *     WebP is refused.
 *   EXIF orientation is NOT applied (PIL's open/convert does not apply it).
 *
 * The format is detected from the magic bytes, never the file name. Before
 * anything is allocated for pixels, width*height is checked against the
 * caller's limit (a decompression-bomb guard; PIL's own default limit is
 * SD_IMAGE_PIL_MAX_PIXELS, above which PIL raises DecompressionBombError).
 *
 * Every failure (missing file, unsupported format, truncated or corrupt data,
 * zero size, limit exceeded) returns -1 with a message (sd_last_error()); no
 * partial image is ever returned. All functions are thread-safe (no global
 * state; libpng/libjpeg errors are caught per call).
 */
#ifndef SD_IO_IMAGE_H
#define SD_IO_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* An 8-bit image: h rows of w*c bytes, row-major, no padding, channels
 * interleaved. The decoders always produce c = 3 (RGB); crop, flip, resize
 * and the PNG encoder also accept c = 1 (gray) and c = 4 (RGBA). */
typedef struct {
    int w, h, c;
    uint8_t *data; /* malloc'ed, owned by the image; NULL when empty */
} sd_image;

/* PIL's Image.MAX_IMAGE_PIXELS: the bomb limit PIL applies by default (it
 * warns above it and refuses above twice it). */
#define SD_IMAGE_PIL_MAX_PIXELS 89478485ull

typedef enum {
    SD_IMAGE_UNKNOWN = 0,
    SD_IMAGE_PNG,
    SD_IMAGE_JPEG,
    SD_IMAGE_WEBP,
} sd_image_format;

/* What a file holds before conversion. */
typedef struct {
    sd_image_format format;
    int w, h;
    char mode[8];  /* the PIL mode Image.open() reports: "1" "L" "LA" "I;16" "P"
                      "RGB" "RGBA" "CMYK" */
    int bit_depth; /* per sample in the file (PNG 1..16, JPEG 8, WebP 8) */
    int interlaced;   /* PNG Adam7 / progressive JPEG */
    int has_alpha;    /* an alpha channel or tRNS (dropped by convert("RGB")) */
    int warnings;     /* after a decode: libjpeg "corrupt data" warnings */
} sd_image_info;

/* Detect the format from the first bytes (12 are enough). */
sd_image_format sd_image_sniff(const void *data, size_t len);
const char *sd_image_format_name(sd_image_format f);

/* Read the header only: format, size, mode. Cheap; no pixel memory. */
int sd_image_probe_memory(const void *data, size_t len, sd_image_info *info);

/* Decode to 8-bit RGB (c = 3) as PIL's Image.open(...).convert("RGB") does.
 * max_pixels: refuse images with w*h > max_pixels before decoding (0: no
 * limit). info may be NULL. On error *out is empty ({0}). */
int sd_image_decode_memory(const void *data, size_t len, uint64_t max_pixels, sd_image *out,
                           sd_image_info *info);
/* Same from a file; messages are prefixed with the path. */
int sd_image_decode_file(const char *path, uint64_t max_pixels, sd_image *out, sd_image_info *info);

/* Allocate a w x h x c image (contents uninitialised). Aborts on OOM. */
void sd_image_alloc(sd_image *img, int w, int h, int c);
void sd_image_free(sd_image *img);

/* Copy the box (left, top, cw, ch) of src into dst (a new image). The box
 * may reach outside src: those pixels are 0, as PIL's Image.crop and
 * torchvision's pad-then-crop give. */
int sd_image_crop(const sd_image *src, int left, int top, int cw, int ch, sd_image *dst);
/* Mirror left-right in place (PIL's FLIP_LEFT_RIGHT, torchvision hflip). */
void sd_image_flip_h(sd_image *img);

/* torchvision ToTensor + Normalize([0.5],[0.5]): CHW float32 in [-1, 1],
 * out[c*h*w]: t = v / 255.0f, then (t - 0.5f) / 0.5f, both in float32. */
void sd_image_to_chw_f32(const sd_image *img, float *out);

/* ---- PNG encoding (libpng) ---------------------------------------------------
 *
 * 8-bit gray (c=1), RGB (c=3) or RGBA (c=4), non-interlaced, followed by
 * the given text chunks (tEXt when key and value are Latin-1-safe ASCII,
 * else iTXt with UTF-8) — e.g. A1111's "parameters". No time or other
 * varying chunk: the same pixels and texts give the same bytes.
 * Keys must be 1..79 printable characters without leading/trailing spaces.
 *
 * level SD_PNG_FAST (-1, the default): Paeth filter + deflate's Z_RLE —
 * as small as zlib level 6 on photographs at 1/6 of its time (numbers in
 * image.c); 0..9: classic deflate at that level with adaptive filters. */
typedef struct {
    const char *key;
    const char *value;
} sd_png_text;

#define SD_PNG_FAST (-1)

/* Encode to a malloc'ed buffer (*buf, *len); free() it. level: SD_PNG_FAST
 * or zlib 0..9. */
int sd_png_encode_memory(const sd_image *img, const sd_png_text *texts, int ntexts, int level,
                         uint8_t **buf, size_t *len);
/* Encode and write to path atomically (temporary name, fsync, rename). */
int sd_png_write(const char *path, const sd_image *img, const sd_png_text *texts, int ntexts,
                 int level);

#endif
