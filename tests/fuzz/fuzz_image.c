/* fuzz_image.c — libFuzzer target for the image decoders (PNG, JPEG, WebP)
 * and the resize/crop path behind them.
 *
 * Any input must be decoded (then a resize + crop of it works) or rejected
 * with a message; never a crash, leak, hang on a huge allocation, or
 * out-of-bounds access (built with ASan+UBSan). The pixel limit keeps the
 * fuzzer from spending its time on legitimately huge images. make fuzz runs
 * it briefly, seeded with tests/corpus/image (tiny files of each format).
 */
#include "core/error.h"
#include "io/image.h"
#include "io/resize.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sd_image img, out;
    sd_image_info info;
    if (sd_image_decode_memory(data, size, 1 << 20, &img, &info) != 0) {
        if (!sd_last_error()[0] || img.data) abort(); /* a rejection must say why, and leave nothing */
        return 0;
    }
    if (img.w != info.w || img.h != info.h || img.c != 3 || !img.data) abort();
    int w = img.w / 2 + 1, h = img.h * 2 / 3 + 1;
    if (sd_image_resize_crop(&img, w, h, (sd_resize_filter)(size % 6), -1, 1, w, h, &out) != 0) abort();
    sd_image_free(&out);
    sd_image_free(&img);
    return 0;
}
