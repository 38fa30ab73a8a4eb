/* tensor_ops.h — residual add, per-channel broadcast add, channel concat,
 * NCHW <-> token-major permutes, and BLAS-1 helpers (scale, axpy, sum of squares).
 * Conventions (overwrite/accumulate/NULL): see lib/nn/linear.h. */
#ifndef SD_NN_TENSOR_OPS_H
#define SD_NN_TENSOR_OPS_H

#include <stddef.h>

#include "backend/backend.h"

/* out[n] = a + b (out may alias a or b: in-place residual). */
void sd_add_forward(sd_backend *be, float *out, const float *a, const float *b, size_t n);
/* da += dout; db += dout (either may be NULL; da == db is allowed and adds twice). */
void sd_add_backward(sd_backend *be, float *da, float *db, const float *dout, size_t n);

/* out[b, c, :] = inp[b, c, :] + v[b, c]: inp [B, C, HW], v [B, C]
 * (the time-embedding projection added into a resnet). out may alias inp. */
void sd_add_channel_forward(sd_backend *be, float *out, const float *inp, const float *v, int B, int C, int HW);
/* dinp [B, C, HW] += dout; dv[b, c] += sum_hw dout[b, c, :]. */
void sd_add_channel_backward(sd_backend *be, float *dinp, float *dv, const float *dout, int B, int C, int HW);

/* out [B, C1+C2, HW] = cat([a [B, C1, HW], b [B, C2, HW]], dim=1)
 * (UNet up path: cat([h, skip]) — current h FIRST, skip second). */
void sd_concat_channels_forward(sd_backend *be, float *out, const float *a, const float *b, int B, int C1, int C2,
                                int HW);
/* da += dout[:, :C1]; db += dout[:, C1:] (split of the gradient). */
void sd_concat_channels_backward(sd_backend *be, float *da, float *db, const float *dout, int B, int C1, int C2,
                                 int HW);

/* [B, C, HW] (NCHW) -> [B, HW, C] (token-major: token = y*W + x), and back.
 * Backward of each is the other permute, accumulating into dinp. */
void sd_nchw_to_nhwc_forward(sd_backend *be, float *out, const float *inp, int B, int C, int HW);
void sd_nchw_to_nhwc_backward(sd_backend *be, float *dinp, const float *dout, int B, int C, int HW);
void sd_nhwc_to_nchw_forward(sd_backend *be, float *out, const float *inp, int B, int C, int HW);
void sd_nhwc_to_nchw_backward(sd_backend *be, float *dinp, const float *dout, int B, int C, int HW);

/* x *= a;  y += a * x;  out[0] = sum x^2 (accumulated in double; for grad norms). */
void sd_scale(sd_backend *be, float *x, float a, size_t n);
void sd_axpy(sd_backend *be, float *y, float a, const float *x, size_t n);
void sd_sumsq(sd_backend *be, float *out, const float *x, size_t n);

#endif
