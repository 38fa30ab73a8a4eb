/* resample.h — nearest-neighbour upsampling (diffusers Upsample2D before its conv).
 * Conventions (overwrite/accumulate/NULL): see lib/nn/linear.h.
 *   inp [B, C, H, W] -> out [B, C, OH, OW]
 * Source index per axis, as PyTorch's F.interpolate(mode="nearest"):
 *   OH == H: identity; OH == 2H: dst/2; else min(floor(dst * (float)H/OH), H-1).
 * SD uses OH = 2H (scale_factor 2) or OH = the size of the matching skip
 * (latent sizes not divisible by 8). Downsampling is a strided conv (conv2d.h). */
#ifndef SD_NN_RESAMPLE_H
#define SD_NN_RESAMPLE_H

#include "backend/backend.h"

void sd_upsample_nearest_forward(sd_backend *be, float *out, const float *inp, int B, int C, int H, int W, int OH,
                                 int OW);
/* dinp [B, C, H, W] += sum of dout over each source pixel's copies. Reads nothing saved. */
void sd_upsample_nearest_backward(sd_backend *be, float *dinp, const float *dout, int B, int C, int H, int W, int OH,
                                  int OW);

#endif
