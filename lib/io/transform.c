/* transform.c — torchvision's Resize/CenterCrop/RandomCrop/flip arithmetic and
 * the diffusers/ppdiffusers training transform. See transform.h. */
#include "io/transform.h"

#include "core/error.h"

#include <string.h>

int sd_transform_resize_shorter_size(int w, int h, int size, int max_size, int *out_w, int *out_h) {
    if (w <= 0 || h <= 0) return sd_set_error("resize: empty image (%d x %d)", w, h);
    if (size <= 0) return sd_set_error("resize: size must be > 0 (got %d)", size);
    int s = w <= h ? w : h, l = w <= h ? h : w;
    /* Python: int(size * long / short) — exact product, correctly rounded
     * true division, truncation; doubles do the same below 2^53. */
    long long new_short = size, new_long = (long long)((double)((long long)size * l) / (double)s);
    if (max_size > 0) {
        if (max_size <= size)
            return sd_set_error("resize: max_size = %d must be strictly greater than the requested size for the "
                                "smaller edge size = %d", max_size, size);
        if (new_long > max_size) {
            new_short = (long long)((double)((long long)max_size * new_short) / (double)new_long);
            new_long = max_size;
        }
    }
    if (new_long > (1 << 30) || new_short <= 0)
        return sd_set_error("resize: %d x %d to shorter side %d gives an unusable size", w, h, size);
    *out_w = (int)(w <= h ? new_short : new_long);
    *out_h = (int)(w <= h ? new_long : new_short);
    return 0;
}

/* int(round(k / 2.0)) for k >= 0 with Python's round-half-to-even */
static int half_round_even(int k) {
    int q = k / 2;
    if (k % 2 == 0) return q;
    return (q % 2 == 0) ? q : q + 1; /* q + 0.5: pick the even neighbour */
}

static int center_offset(int size, int crop) {
    if (crop > size) return -((crop - size) / 2); /* padded by (crop-size)//2 before */
    return half_round_even(size - crop);
}

void sd_transform_center_crop_offsets(int w, int h, int cw, int ch, int *left, int *top) {
    *left = center_offset(w, cw);
    *top = center_offset(h, ch);
}

int sd_transform_random_crop_offsets(int w, int h, int cw, int ch, sd_rng *rng, int *left, int *top) {
    if (h < ch || w < cw)
        return sd_set_error("random crop: required crop size (%d, %d) is larger than input image size (%d, %d)", ch,
                            cw, h, w);
    *left = *top = 0;
    if (w == cw && h == ch) return 0;
    if (!rng) return sd_set_error("random crop: no random generator");
    *top = (int)sd_rng_below(rng, (uint32_t)(h - ch + 1));
    *left = (int)sd_rng_below(rng, (uint32_t)(w - cw + 1));
    return 0;
}

int sd_transform_apply(const sd_image *src, const sd_transform_opts *o, sd_rng *rng, sd_image *dst,
                       sd_transform_record *rec) {
    sd_transform_record r;
    memset(&r, 0, sizeof r);
    memset(dst, 0, sizeof *dst);
    r.orig_w = src->w;
    r.orig_h = src->h;
    int cw, ch;
    if (o->height > 0 || o->width > 0) { /* ppdiffusers: straight to H x W */
        ch = o->height > 0 ? o->height : o->resolution;
        cw = o->width > 0 ? o->width : o->resolution;
        if (cw <= 0 || ch <= 0) return sd_set_error("transform: bad target size %d x %d", cw, ch);
        r.resized_w = cw;
        r.resized_h = ch;
    } else {
        if (sd_transform_resize_shorter_size(src->w, src->h, o->resolution, 0, &r.resized_w, &r.resized_h))
            return -1;
        cw = ch = o->resolution;
    }
    if (o->center_crop) {
        sd_transform_center_crop_offsets(r.resized_w, r.resized_h, cw, ch, &r.crop_left, &r.crop_top);
    } else if (sd_transform_random_crop_offsets(r.resized_w, r.resized_h, cw, ch, rng, &r.crop_left, &r.crop_top)) {
        return -1;
    }
    if (sd_image_resize_crop(src, r.resized_w, r.resized_h, o->filter, r.crop_left, r.crop_top, cw, ch, dst))
        return -1;
    r.out_w = cw;
    r.out_h = ch;
    if (o->random_flip) {
        if (!rng) {
            sd_image_free(dst);
            return sd_set_error("random flip: no random generator");
        }
        float u;
        sd_rng_uniform(rng, &u, 1);
        if (u < 0.5f) {
            sd_image_flip_h(dst);
            r.flipped = 1;
        }
    }
    if (rec) *rec = r;
    return 0;
}
