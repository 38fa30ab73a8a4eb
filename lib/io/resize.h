/* resize.h — PIL's Image.resize, bit-exact, for 8-bit images.
 *
 * Filters and their numbers are PIL's (Image.Resampling). BOX, BILINEAR,
 * HAMMING, BICUBIC and LANCZOS use PIL's convolution resampler
 * (libImaging/Resample.c):
 *   - per output pixel, a window of input pixels around the mapped center
 *     (xx + 0.5) * in/out; the filter's support is widened by the downscale
 *     factor (support * max(1, in/out)) and the kernel stretched to match;
 *   - weights computed in double and normalised to sum 1, then rounded to
 *     22-bit fixed point (round half away from zero);
 *   - two separable passes, each accumulating uint8 x int32 into an int32
 *     starting at 2^21 and clipping (acc >> 22) to 0..255 — so the
 *     intermediate image is 8-bit, as in PIL, and the order of the passes
 *     matters: horizontal first (over the rows the vertical pass needs),
 *     except that Pillow 13 (PR #9549) goes vertical first when the height
 *     shrinks by more than twice as many pixels as the width does
 *     (in_h - h > 2 * (in_w - w) and h < in_h); a pass whose size does not
 *     change is skipped.
 * NEAREST is PIL's affine nearest path (ImagingScaleAffine): source column
 * (int)(in/out * 0.5 + x * in/out), accumulated in double as PIL does.
 *
 * Integer sums are exact, so the SIMD order of summation gives PIL's result
 * bit for bit (tests/py/test_image_parity.py measures max |diff| = 0). The
 * kernels (AVX2, SSE4.1, scalar) are picked at run time from the CPU; the
 * environment variable SD_RESIZE_KERNEL=scalar|sse41 forces a slower one
 * (tests use it). Single-threaded and reentrant: call it from many threads.
 * Channels are resampled independently (PIL does the same for L and RGB; for
 * RGBA PIL premultiplies alpha, which this does not).
 */
#ifndef SD_IO_RESIZE_H
#define SD_IO_RESIZE_H

#include "io/image.h"

typedef enum {
    SD_FILTER_NEAREST = 0,
    SD_FILTER_LANCZOS = 1,
    SD_FILTER_BILINEAR = 2,
    SD_FILTER_BICUBIC = 3,
    SD_FILTER_BOX = 4,
    SD_FILTER_HAMMING = 5,
} sd_resize_filter;

/* Filter from a name, case-insensitive: torchvision's InterpolationMode
 * names as diffusers' --image_interpolation_mode takes them ("nearest",
 * "nearest_exact" (= PIL NEAREST, as torchvision maps it for PIL images),
 * "bilinear", "bicubic", "box", "hamming", "lanczos") and PIL's ("antialias"
 * = lanczos, "linear", "cubic"). Returns the filter, or -1 with an error. */
int sd_resize_filter_from_name(const char *name);
const char *sd_resize_filter_name(sd_resize_filter f);

/* PIL: src.resize((w, h), filter). dst is a new image. */
int sd_image_resize(const sd_image *src, int w, int h, sd_resize_filter f, sd_image *dst);

/* PIL: src.resize((w, h), filter).crop((left, top, left + cw, top + ch)),
 * computing only the pixels inside the box (bit-identical, faster). The box
 * may reach outside the resized image: those pixels are 0. */
int sd_image_resize_crop(const sd_image *src, int w, int h, sd_resize_filter f, int left, int top, int cw,
                         int ch, sd_image *dst);

#endif
