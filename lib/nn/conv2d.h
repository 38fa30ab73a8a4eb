/* conv2d.h — 2-D convolution (PyTorch Conv2d, groups 1), forward and backward.
 * Conventions (overwrite/accumulate/NULL): see lib/nn/linear.h.
 *
 *   inp [B, C, H, W]   w [OC, C, KH, KW]   b [OC]   out [B, OC, OH, OW]
 *
 * Typical SD use:
 *   sd_conv2d_desc cv = sd_conv2d_init(B, C, H, W, OC, 3, 1, 1);   // resnet conv, k3 s1 p1
 *   sd_conv2d_desc ds = sd_conv2d_init(B, C, H, W, C, 3, 2, 1);    // UNet Downsample2D
 *   sd_conv2d_desc vd = sd_conv2d_init_pad(B, C, H, W, C, 3, 3, 2, 0, 1, 0, 1); // VAE: F.pad(0,1,0,1) + k3 s2 p0
 *   sd_conv2d_forward(be, &cv, out, inp, w, b);
 *   sd_conv2d_backward(be, &cv, dinp, dw, db, dout, inp, w);
 */
#ifndef SD_NN_CONV2D_H
#define SD_NN_CONV2D_H

#include "backend/backend.h"

/* Explicit padding: pad_t/pad_b rows above/below, pad_l/pad_r columns left/right. */
static inline sd_conv2d_desc sd_conv2d_init_pad(int B, int C, int H, int W, int OC, int KH, int KW, int stride,
                                                int pad_t, int pad_b, int pad_l, int pad_r) {
    sd_conv2d_desc d = {B, C, H, W, OC, KH, KW, stride, pad_t, pad_b, pad_l, pad_r, 0, 0};
    if (stride > 0) {
        d.OH = (H + pad_t + pad_b - KH) / stride + 1;
        d.OW = (W + pad_l + pad_r - KW) / stride + 1;
    }
    return d;
}

/* Square kernel k, symmetric padding pad. */
static inline sd_conv2d_desc sd_conv2d_init(int B, int C, int H, int W, int OC, int k, int stride, int pad) {
    return sd_conv2d_init_pad(B, C, H, W, OC, k, k, stride, pad, pad, pad, pad);
}

/* out = conv(inp, w) + b      (b may be NULL). out must not alias inp. */
void sd_conv2d_forward(sd_backend *be, const sd_conv2d_desc *d, float *out, const float *inp, const float *w,
                       const float *b);

/* dinp += conv_transpose(dout, w);  dw += corr(inp, dout);  db[oc] += sum_{b,y,x} dout.
 * Reads: inp (only if dw), w (only if dinp). Any of dinp/dw/db may be NULL. */
void sd_conv2d_backward(sd_backend *be, const sd_conv2d_desc *d, float *dinp, float *dw, float *db,
                        const float *dout, const float *inp, const float *w);

#endif
