/* attention.h — multi-head scaled dot-product attention (fused, memory-lean).
 * Conventions (overwrite/accumulate/NULL): see lib/nn/linear.h.
 *
 * This is the core softmax(Q K^T * scale) V of diffusers' AttnProcessor2_0
 * and CLIP's attention; the to_q/to_k/to_v/to_out projections are Linear
 * layers around it. Layouts are token-major, heads side by side in channels
 * (exactly what Linear produces, no permutes needed):
 *   q   [B, Nq, ldq]   k [B, Nk, ldk]   v [B, Nk, ldv]   out [B, Nq, ldo]
 *   head h = columns [h*D, (h+1)*D) of each; usually ld = H*D = C.
 *   lse [B, H, Nq]  (log-sum-exp of each scaled score row; saved for backward)
 * Self-attention: Nq = Nk = HW tokens. Cross-attention: Nk = 77 context
 * tokens. CLIP: causal = 1 (key j > query i masked).
 * The full Nq x Nk score matrix is never stored: memory is O(block x Nk) per
 * thread on the CPU. */
#ifndef SD_NN_ATTENTION_H
#define SD_NN_ATTENTION_H

#include <math.h>

#include "backend/backend.h"

/* Dense layout (ld = H*D everywhere), scale = 1/sqrt(D). Adjust the ld
 * fields for fused projections (e.g. q/k/v as views into one [B, N, 3C]
 * buffer: pointers base, base+C, base+2C and ldq = ldk = ldv = 3C). */
static inline sd_attn_desc sd_attn_init(int B, int H, int Nq, int Nk, int D, int causal) {
    sd_attn_desc d = {B, H, Nq, Nk, D, H * D, H * D, H * D, H * D, causal, D > 0 ? 1.0f / sqrtf((float)D) : 0.0f};
    return d;
}

/* out = softmax(q k^T * scale [+ causal mask]) v per head; writes lse. */
void sd_attention_forward(sd_backend *be, const sd_attn_desc *d, float *out, float *lse, const float *q,
                          const float *k, const float *v);

/* dq += ..., dk += ..., dv += ... (same layouts/ld as q, k, v; dout uses ldo).
 * Reads: q, k, v, out (the forward's output) and lse. Each of dq/dk/dv may be
 * NULL. Gradient outputs must not overlap q, k, v, out or dout. */
void sd_attention_backward(sd_backend *be, const sd_attn_desc *d, float *dq, float *dk, float *dv,
                           const float *dout, const float *q, const float *k, const float *v, const float *out,
                           const float *lse);

#endif
