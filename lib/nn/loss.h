/* loss.h — the training loss: mean squared error, optionally per-sample weighted.
 * Conventions (overwrite/accumulate/NULL): see lib/nn/linear.h.
 *
 *   loss[0]       = (1/B) sum_b w_b * mean_i (pred[b,i] - target[b,i])^2
 *   per_sample[b] = mean_i (pred[b,i] - target[b,i])^2       (unweighted; may be NULL)
 * pred, target [B, n] (n = C*H*W per sample); weight [B] or NULL (all 1).
 * weight NULL = F.mse_loss(pred, target, reduction="mean"); weight = the
 * min-SNR factors gives diffusers' snr_gamma loss. loss/per_sample are device
 * buffers; sums are accumulated in double. */
#ifndef SD_NN_LOSS_H
#define SD_NN_LOSS_H

#include <stddef.h>

#include "backend/backend.h"

void sd_mse_forward(sd_backend *be, float *loss, float *per_sample, const float *pred, const float *target,
                    const float *weight, int B, size_t n);
/* dpred [B, n] += dloss * w_b * 2 (pred - target) / (B n). dloss is the
 * upstream gradient of loss[0] (1, or a loss scale / 1/accumulation steps).
 * Reads pred, target, weight. */
void sd_mse_backward(sd_backend *be, float *dpred, const float *pred, const float *target, const float *weight, int B,
                     size_t n, float dloss);

#endif
