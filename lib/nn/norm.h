/* norm.h — GroupNorm (optionally fused with SiLU) and LayerNorm.
 * Conventions (overwrite/accumulate/NULL): see lib/nn/linear.h.
 * Statistics use the biased variance, as PyTorch: y = (x - mean) * rstd * gamma + beta,
 * rstd = 1/sqrt(var + eps). */
#ifndef SD_NN_NORM_H
#define SD_NN_NORM_H

#include "backend/backend.h"

/* GroupNorm(G, C, eps) on inp [B, C, HW] (HW = H*W; channels of group g are
 * [g*C/G, (g+1)*C/G)); gamma, beta [C]. silu != 0 applies SiLU to the result
 * (the "norm -> SiLU" pair of every resnet, in one pass).
 * Saves mean[B*G], rstd[B*G] (index b*G + g) for the backward.
 * out may alias inp. */
void sd_groupnorm_forward(sd_backend *be, float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int B, int C, int HW, int G, float eps, int silu);

/* dinp [B, C, HW] += ..., dgamma[C] += ..., dbeta[C] += ...
 * Reads: inp (the forward's INPUT), mean, rstd, gamma, and beta when silu
 * (the pre-SiLU value is recomputed from them; beta may be NULL otherwise).
 * Same silu flag as the forward. */
void sd_groupnorm_backward(sd_backend *be, float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *mean, const float *rstd, const float *gamma,
                           const float *beta, int B, int C, int HW, int G, int silu);

/* LayerNorm over the last dim: inp [N, C] (N = batch * tokens), w, b [C].
 * Saves mean[N], rstd[N]. out may alias inp. */
void sd_layernorm_forward(sd_backend *be, float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, int N, int C, float eps);

/* dinp [N, C] += ..., dw[C] += ..., db[C] += ...
 * Reads: inp (the forward's input), mean, rstd, w. */
void sd_layernorm_backward(sd_backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                           const float *mean, const float *rstd, const float *w, int N, int C);

#endif
