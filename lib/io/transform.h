/* transform.h — the training-image transforms of diffusers' and ppdiffusers'
 * train_text_to_image.py, with torchvision's arithmetic.
 *
 * diffusers:    Resize(resolution, interp)   shorter side -> resolution
 *               CenterCrop(resolution) | RandomCrop(resolution)
 *               RandomHorizontalFlip(0.5) if --random_flip
 *               ToTensor, Normalize([0.5], [0.5])   (sd_image_to_chw_f32)
 * ppdiffusers:  Resize((height, width), bilinear)   straight to HxW, then the
 *               (no-op) crop and the flip.
 *
 * torchvision formulas implemented here (transforms/functional.py 0.29):
 *   Resize(int s), image w x h:   short, long = min, max;
 *       new_short = s, new_long = int(s * long / short)   (truncation)
 *       with max_size: if new_long > max_size:
 *           new_short, new_long = int(max_size * new_short / new_long), max_size
 *   CenterCrop(th, tw):  if the crop is larger, pad (zeros) by
 *       ((tw - w) // 2, (th - h) // 2) left/top and (+1)//2 right/bottom;
 *       top = int(round((h - th) / 2.0)), left likewise (Python round: half
 *       to even);
 *   RandomCrop(th, tw):  error if larger than the image; (0, 0) without
 *       drawing if equal; else top = randint(0, h - th + 1) then
 *       left = randint(0, w - tw + 1).
 * Random numbers come from core/rng.h (sd_rng_below, sd_rng_uniform), not
 * torch's generator: the arithmetic is the reference's, the draws are ours.
 */
#ifndef SD_IO_TRANSFORM_H
#define SD_IO_TRANSFORM_H

#include "core/rng.h"
#include "io/image.h"
#include "io/resize.h"

/* torchvision Resize(size) with one int: the (w, h) it resizes to.
 * max_size 0 = none. Returns -1 (error) for bad sizes or max_size <= size. */
int sd_transform_resize_shorter_size(int w, int h, int size, int max_size, int *out_w, int *out_h);

/* torchvision CenterCrop((ch, cw)) on a w x h image: the crop box's
 * top-left corner in image coordinates (negative where torchvision pads). */
void sd_transform_center_crop_offsets(int w, int h, int cw, int ch, int *left, int *top);

/* torchvision RandomCrop((ch, cw)) (no padding): top drawn first, then left,
 * each with sd_rng_below (one block each); nothing drawn when the sizes are
 * equal. Error if the crop is larger than the image. */
int sd_transform_random_crop_offsets(int w, int h, int cw, int ch, sd_rng *rng, int *left, int *top);

/* The whole training transform, in the reference's order. */
typedef struct {
    int resolution;          /* diffusers --resolution (shorter side, then square crop) */
    int height, width;       /* ppdiffusers: when either is > 0, resize straight to height x width
                                (a missing one is resolution) and the crop is a no-op. ppdiffusers'
                                script always does this (H = W = resolution without --height/--width):
                                set both to reproduce it. Both 0: diffusers' shorter-side resize. */
    sd_resize_filter filter; /* --image_interpolation_mode (diffusers default lanczos; ppdiffusers bilinear) */
    int center_crop;         /* 1: CenterCrop, 0: RandomCrop (needs rng) */
    int random_flip;         /* RandomHorizontalFlip(p=0.5) (needs rng) */
} sd_transform_opts;

/* What was done (for kohya-style metadata: original_size, crop_ltrb). */
typedef struct {
    int orig_w, orig_h;       /* decoded size */
    int resized_w, resized_h; /* after Resize */
    int crop_left, crop_top;  /* crop box in resized coordinates */
    int out_w, out_h;         /* final size */
    int flipped;
} sd_transform_record;

/* Resize, crop (computing only the kept pixels), flip. The rng (may be NULL
 * when center_crop && !random_flip) is consumed as torchvision would: crop
 * draws (if random and not a no-op), then one uniform for the flip (flip if
 * u < 0.5). rec may be NULL. */
int sd_transform_apply(const sd_image *src, const sd_transform_opts *o, sd_rng *rng, sd_image *dst,
                       sd_transform_record *rec);

#endif
