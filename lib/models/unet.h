/* unet.h — UNet2DConditionModel (diffusers 0.39) on an sd_backend: inference
 * forward, training forward + backward for every parameter, per-layer
 * gradient checkpointing.
 *
 * Numerics follow sd_spec §1 exactly (fp32): time embedding → conv_in → down
 * blocks (ResnetBlock2D, Transformer2DModel with SD1 1x1-conv or SD2 linear
 * projections, BasicTransformerBlock: self-attn, cross-attn, GEGLU FF) →
 * mid block → up blocks (cat([h, skip]): h FIRST) → GroupNorm+SiLU → conv_out.
 * Up samplers always upsample to the spatial size of the next skip, which is
 * diffusers' scale_factor 2 when the latent is divisible by 2^(levels-1) and
 * its forward_upsample_size path otherwise: any latent size works (non-square,
 * odd). The 1x1-conv proj_in/proj_out of SD1 and the Linear ones of SD2 are
 * the same product on token-major data, so both run as Linear layers.
 *
 * Pointers: x, ctx, out, dout, grads, dctx, params are device pointers of the
 * backend (host pointers on the CPU backend); timesteps `t` are HOST floats
 * (one per batch item; integer DDPM timesteps or the fractional ones of
 * Euler/DPM schedulers).
 *   x    [B, in_channels, h, w]      (NCHW latents)
 *   ctx  [B, L, cross_attention_dim] (text-encoder hidden states; any L >= 1)
 *   out  [B, out_channels, h, w]     (noise / velocity prediction)
 *
 * Memory. Activations are carved from one device block per pass, planned by a
 * dry run of the same code (no per-layer allocation; the block is reused while
 * the shape stays the same and re-planned when it changes):
 *   inference: the skip stack (persists until the up path pops it), two
 *     ping-pong buffers for the current h, and per-layer scratch that is
 *     reset after every layer;
 *   training: every layer output ("boundary" tensors: what the next layer and
 *     the skips need) plus each layer's saved internals (below); with
 *     checkpointing only the boundary tensors are kept and each layer's
 *     internals are recomputed right before its backward.
 *
 * Saved for backward, per layer (N = B·h·w tokens of the layer, C channels):
 *   stem:  t_emb, linear_1 out, SiLU out, emb, SiLU(emb) ([B, 4·C0] each);
 *          conv_in needs only x (the caller's, or its centered copy)
 *   ResnetBlock2D: conv1 output + time projection h1 [B, Cout, HW] and the
 *          GroupNorm statistics (mean, rstd [B·G]) of norm1 and norm2. The
 *          input (previous layer's output, and the skip for up blocks) is a
 *          boundary tensor; the GroupNorm+SiLU outputs and the skip concat
 *          are recomputed in the backward (cheap elementwise passes).
 *   Transformer2DModel: GroupNorm statistics; t0 = proj_in output [N, C];
 *          per BasicTransformerBlock: LayerNorm statistics ×3, self-attn
 *          q|k|v [N, 3C], its output [N, C] and log-sum-exp [B, heads, HW],
 *          t1 [N, C], cross-attn q [N, C], k|v [B·L, 2C], output [N, C], lse,
 *          t2 [N, C], FF projection [N, 8C] (GEGLU input), t3 [N, C].
 *          LayerNorm/GroupNorm outputs and the GEGLU output are recomputed.
 *   Downsample2D, Upsample2D (nearest copy recomputed), head: nothing beyond
 *          their inputs (the head keeps its GroupNorm statistics).
 *
 * Gradient checkpointing (sd_unet_train_opts.gradient_checkpointing) works at
 * the granularity of diffusers' own checkpointing: each ResnetBlock2D, each
 * Transformer2DModel, each sampler. The forward keeps only the layer outputs;
 * the backward reruns a layer's forward (the same code, deterministic) right
 * before that layer's backward, so gradients are bit-identical with and
 * without checkpointing.
 *
 * Threading: as the backend (one thread at a time per sd_unet).
 *
 * Sampling (sdsample; CFG = one batch of 2: [uncond, cond]):
 *     sd_unet *u;  sd_unet_load(model, be, &u);
 *     for each step i:  t2[0] = t2[1] = s->timesteps[i];
 *         sd_unet_forward(u, xin2, t2, ctx2, 2, h, w, 77, eps2);   // then guidance, sd_sched_step
 * Training step (sdfit):
 *     sd_unet_train_state *st;  sd_unet_train_state_create(u, &(sd_unet_train_opts){ckpt}, &st);
 *     sd_backend_zero(be, grads, n_params * 4);                     // once per optimizer step
 *     sd_sched_add_noise(...) -> noisy;  target = noise | velocity
 *     sd_unet_train_forward(u, st, noisy, t, ctx, B, h, w, L, pred);
 *     sd_mse_forward(be, &loss, NULL, pred, target, snr_w_or_NULL, B, n);
 *     sd_mse_backward(be, dpred(zeroed), pred, target, snr_w_or_NULL, B, n, 1/accum);
 *     sd_unet_backward(u, st, dpred, grads, NULL);                   // grads += dL/dparams
 *     clip, AdamW, EMA over the flat buffers (lib/train)
 *
 * Activation memory of SD1.5 shapes, batch 1, from the plan
 * (sd_unet_train_memory / sd_unet_forward_memory; test_unet prints them):
 *   inference 32x32: 40 MB, 64x64: 112 MB (batch 2: 65 / 208 MB)
 *   training  32x32: 278 MB (246 saved), checkpointing  94 MB (28 saved)
 *   training  64x64: 1088 MB (962 saved), checkpointing 375 MB (114 saved)
 * plus the backend's scratch (Winograd-transformed weights, attention
 * blocks: ~110 MB at 32x32, ~215 MB at 64x64 on the CPU).
 */
#ifndef SD_MODELS_UNET_H
#define SD_MODELS_UNET_H

#include <stddef.h>

#include "backend/backend.h"
#include "models/config.h"
#include "models/modeldir.h"
#include "models/params.h"

#define SD_UNET_MAX_TLAYERS 16 /* BasicTransformerBlocks per Transformer2DModel */

typedef struct sd_unet sd_unet;
typedef struct sd_unet_train_state sd_unet_train_state;

/* Bytes of device memory of one pass (params and gradients not included). */
typedef struct {
    size_t saved;      /* training: kept from forward to backward (boundary tensors + layer internals);
                          inference: the skip stack */
    size_t boundary;   /* training: of which layer outputs (all that checkpointing keeps) */
    size_t work;       /* per-layer temporaries (forward; backward too when training), ping-pong h buffers,
                          and with checkpointing the recomputed internals of one layer */
    size_t grad_work;  /* backward: gradients of the skip stack + ping-pong gradients of h */
    size_t total;      /* the single block allocated for the pass = saved + work + grad_work (+ padding) */
} sd_unet_mem;

/* A UNet over an existing parameter buffer (device, laid out by
 * sd_unet_param_table(cfg), not copied: it must outlive the UNet; see
 * sd_unet_set_params). params may be NULL for a UNet that only answers
 * memory queries (forwards then fail). The config is copied. Refuses (error naming the key)
 * what the forward does not implement: transformer_layers > SD_UNET_MAX_TLAYERS.
 * dropout > 0 is ignored in inference and refused by the training forward. */
int sd_unet_create(const sd_unet_config *cfg, sd_backend *be, const float *params, sd_unet **out);

/* Load the model's UNet weights into a device buffer owned by the UNet
 * (loaded in place on the CPU backend: no second host copy). */
int sd_unet_load(sd_model *m, sd_backend *be, sd_unet **out);

void sd_unet_free(sd_unet *u);

const sd_unet_config *sd_unet_cfg(const sd_unet *u);
const sd_param_table *sd_unet_table(const sd_unet *u);
size_t sd_unet_num_params(const sd_unet *u);
/* The parameter buffer in use (device). */
const float *sd_unet_params(const sd_unet *u);
/* Use another buffer of the same layout from now on (e.g. EMA weights for
 * validation; a LoRA-merged copy). Not owned. Any train state's saved
 * activations refer to the old weights: run a new train_forward after this. */
void sd_unet_set_params(sd_unet *u, const float *params);

/* ---- inference ---------------------------------------------------------------- */

/* out = unet(x, t, ctx). x, ctx are only read; out must not overlap them.
 * Returns -1 with an error only when the activation block cannot be
 * allocated (or on bad arguments). */
int sd_unet_forward(sd_unet *u, const float *x, const float *t, const float *ctx, int B, int h, int w, int L,
                    float *out);

/* Memory a forward of this shape plans (inference). */
int sd_unet_forward_memory(sd_unet *u, int B, int h, int w, int L, sd_unet_mem *m);
/* Release the inference activation block (it is re-planned on the next call). */
void sd_unet_release(sd_unet *u);

/* ---- training ------------------------------------------------------------------ */

typedef struct {
    int gradient_checkpointing; /* keep only layer outputs; recompute each layer before its backward */
} sd_unet_train_opts;

/* A training state: saved activations between train_forward and backward.
 * opts NULL = defaults (no checkpointing). Memory is planned and allocated
 * on the first train_forward of a shape and reused for later steps. */
int sd_unet_train_state_create(sd_unet *u, const sd_unet_train_opts *opts, sd_unet_train_state **st);
void sd_unet_train_state_free(sd_unet_train_state *st);

/* Training forward: out = unet(x, t, ctx), saving what backward needs. x and
 * ctx are NOT copied: keep them unchanged until sd_unet_backward. */
int sd_unet_train_forward(sd_unet *u, sd_unet_train_state *st, const float *x, const float *t, const float *ctx,
                          int B, int h, int w, int L, float *out);

/* Backward of the last train_forward of st: given dout = dL/dout [B, out_ch,
 * h, w] (read only), ACCUMULATES dL/dparam into grads[sd_unet_num_params]
 * (laid out like the parameter table: zero it before the first micro-batch of
 * an optimizer step) and, if dctx != NULL, dL/dctx into dctx [B, L, X]. */
int sd_unet_backward(sd_unet *u, sd_unet_train_state *st, const float *dout, float *grads, float *dctx);

/* Memory of a training step (forward + backward) of this shape. */
int sd_unet_train_memory(sd_unet *u, int B, int h, int w, int L, int gradient_checkpointing, sd_unet_mem *m);

/* ---- profiling ------------------------------------------------------------------- */

/* Per-layer-kind wall-clock seconds accumulated over all calls since the last
 * reset when profiling is on (off by default; it syncs the backend after
 * every layer). Kinds: 0 stem+head, 1 resnet, 2 transformer, 3 sampler;
 * [0..3] forward, [4..7] backward (incl. checkpoint recompute). */
void sd_unet_profile(sd_unet *u, int on);
void sd_unet_profile_get(const sd_unet *u, double sec[8]);

#endif
