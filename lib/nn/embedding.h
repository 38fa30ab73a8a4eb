/* embedding.h — sinusoidal timestep embedding and token(+position) embedding.
 * Conventions (overwrite/accumulate/NULL): see lib/nn/linear.h. */
#ifndef SD_NN_EMBEDDING_H
#define SD_NN_EMBEDDING_H

#include <stdint.h>

#include "backend/backend.h"

/* diffusers get_timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift
 * = freq_shift, scale 1, max_period): t [B] (float timesteps; may be
 * fractional), out [B, dim]. half = dim/2, f_k = exp(-ln(max_period) k /
 * (half - freq_shift)), rows are [sin(t f) | cos(t f)], swapped to
 * [cos | sin] when flip_sin_to_cos; odd dim gets a zero last column. Computed
 * in double and rounded once (torch's fp32 evaluation differs from the exact
 * value by up to ~6e-5 at t ~ 1000 because it rounds t*f_k to fp32). SD UNet: dim = block_out_channels[0],
 * flip 1, shift 0, max_period 10000. No backward (timesteps are not trained). */
void sd_timestep_embedding(sd_backend *be, float *out, const float *t, int B, int dim, int flip_sin_to_cos,
                           float freq_shift, float max_period);

/* out[b, l, :] = tok[ids[b, l], :] + pos[l, :]   (pos may be NULL)
 * ids [B, L] int32 in [0, V) (checked on the CPU), tok [V, C], pos [>=L, C], out [B, L, C]. */
void sd_embedding_forward(sd_backend *be, float *out, const int32_t *ids, const float *tok, const float *pos, int B,
                          int L, int C, int V);
/* dtok[ids[b, l]] += dout[b, l]; dpos[l] += sum_b dout[b, l]. Reads ids. */
void sd_embedding_backward(sd_backend *be, float *dtok, float *dpos, const float *dout, const int32_t *ids, int B,
                           int L, int C, int V);

#endif
