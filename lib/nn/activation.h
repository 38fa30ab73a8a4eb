/* activation.h — SiLU, GELU (exact), quick_gelu, GEGLU, softmax.
 * Conventions (overwrite/accumulate/NULL): see lib/nn/linear.h.
 *   silu(x)       = x * sigmoid(x)
 *   gelu(x)       = 0.5 x (1 + erf(x / sqrt 2))          (exact, not tanh)
 *   quick_gelu(x) = x * sigmoid(1.702 x)                  (CLIP ViT-L text tower)
 * Elementwise forwards may run in place (out == inp); their backwards read the
 * forward's INPUT, so keep it (or recompute it) when running in place. */
#ifndef SD_NN_ACTIVATION_H
#define SD_NN_ACTIVATION_H

#include <stddef.h>

#include "backend/backend.h"

void sd_silu_forward(sd_backend *be, float *out, const float *inp, size_t n);
void sd_silu_backward(sd_backend *be, float *dinp, const float *dout, const float *inp, size_t n); /* reads inp */
void sd_gelu_forward(sd_backend *be, float *out, const float *inp, size_t n);
void sd_gelu_backward(sd_backend *be, float *dinp, const float *dout, const float *inp, size_t n); /* reads inp */
void sd_quick_gelu_forward(sd_backend *be, float *out, const float *inp, size_t n);
void sd_quick_gelu_backward(sd_backend *be, float *dinp, const float *dout, const float *inp, size_t n);

/* GEGLU (diffusers FeedForward net.0 after its projection): inp [N, 2D] is
 * [a | g] along the last dim (a = first D columns), out [N, D] = a * gelu(g).
 * Backward reads inp; dinp is [N, 2D]. */
void sd_geglu_forward(sd_backend *be, float *out, const float *inp, int N, int D);
void sd_geglu_backward(sd_backend *be, float *dinp, const float *dout, const float *inp, int N, int D);

/* Softmax over the last dim of [N, C]. Backward reads the forward's OUTPUT. */
void sd_softmax_forward(sd_backend *be, float *out, const float *inp, int N, int C);
void sd_softmax_backward(sd_backend *be, float *dinp, const float *dout, const float *out, int N, int C);

#endif
