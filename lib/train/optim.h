/* optim.h — AdamW and gradient-norm clipping over flat float32 buffers.
 *
 * The model's parameters, gradients and optimizer moments each live in one
 * contiguous float buffer (DESIGN.md §4). A model is still made of tensors,
 * and torch computes some things per tensor (clip_grad_norm_ takes the norm
 * of per-tensor norms), so callers describe the buffer as a list of segments
 * (offset, numel) in the order torch would see the parameters.
 *
 * Semantics are torch 2.15's, arithmetic included (same float32 roundings,
 * same fused multiply-adds, same reduction order), so that a run matches
 * torch.optim.AdamW on CPU bit for bit except for one thing: torch's CPU
 * sqrt is MKL VML's (high-accuracy, not correctly rounded: one ulp off for
 * about 20% of inputs) while ours is IEEE sqrtf, so params drift from
 * torch's by ~1e-8 relative (moments stay exact). Measured in
 * tests/unit/test_train_math.c.
 *   - AdamW: `_single_tensor_adam` (what AdamW uses on CPU with default
 *     arguments: the foreach path is for CUDA-like devices only, fused is off
 *     unless asked for) with decoupled weight decay;
 *   - clipping: torch.nn.utils.clip_grad_norm_(params, max_norm, 2.0) on CPU
 *     (per-tensor linalg.vector_norm, norm of the stacked norms, grads always
 *     multiplied by the clamped coefficient).
 * optim.c says, op by op, which values are Python doubles and which are
 * float32 tensor arithmetic, and where torch's kernels fuse a multiply-add.
 */
#ifndef SD_TRAIN_OPTIM_H
#define SD_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

/* A tensor inside a flat buffer. */
typedef struct {
    size_t offset, numel;
} sd_segment;

/* ---- AdamW -------------------------------------------------------------- */

typedef struct {
    double beta1, beta2;  /* 0.9, 0.999 */
    double eps;           /* 1e-8 */
    double weight_decay;  /* 1e-2 (torch's AdamW default; diffusers' --adam_weight_decay) */
} sd_adamw_config;

/* torch.optim.AdamW defaults (and diffusers' train_text_to_image defaults). */
sd_adamw_config sd_adamw_defaults(void);

typedef struct {
    sd_adamw_config cfg;
    int64_t step;   /* optimizer steps taken (torch's state["step"]) */
    size_t n;       /* number of parameters */
    float *m;       /* exp_avg [n], caller-owned (the optimizer arena) */
    float *v;       /* exp_avg_sq [n], caller-owned */
} sd_adamw;

/* Set up an optimizer over n params; m and v (n floats each, caller-owned)
 * are zeroed and step = 0, as torch's lazy state init does. Fails on an
 * invalid config (torch's checks: 0 <= beta < 1, eps >= 0, wd >= 0). */
int sd_adamw_init(sd_adamw *opt, const sd_adamw_config *cfg, size_t n, float *m, float *v);

/* One AdamW step at learning rate lr (a double, as torch's param_group["lr"]):
 *   step += 1
 *   p *= 1 - lr*wd                                 (skipped when wd == 0)
 *   m  = lerp(m, g, 1-beta1)
 *   v  = v*beta2 + (1-beta2)*g*g
 *   p += -(lr/(1-beta1^step)) * m / (sqrt(v)/sqrt(1-beta2^step) + eps)
 * Elementwise, OpenMP-parallel for large n; the result does not depend on the
 * thread count. lr < 0 is rejected by the caller's schedule, not here. */
void sd_adamw_step(sd_adamw *opt, float *params, const float *grads, double lr);

/* sd_adamw_step on the gradients g[i] * gscale (each product rounded to
 * float32: clip_grad_norm_'s in-place multiply folded into the step), and
 * with zero_grads, g[i] = 0 afterwards (optimizer.zero_grad). Bit-identical to
 * sd_scale_floats(g, n, gscale) + sd_adamw_step + zeroing g, in one pass over
 * memory instead of three (for SD1.5, ~10 GB of memory traffic less per
 * step). */
void sd_adamw_step_fused(sd_adamw *opt, float *params, float *grads, double lr, float gscale, int zero_grads);

/* Checkpoint state (everything but the m/v buffers, which the caller saves
 * as tensors): {"step", "beta1", "beta2", "eps", "weight_decay"}. */
cJSON *sd_adamw_state_json(const sd_adamw *opt);
/* Restore step and the hyperparameters from a checkpoint. As with torch's
 * optimizer.load_state_dict (what accelerate's load_state does), the saved
 * betas/eps/weight_decay replace the ones opt was set up with. */
int sd_adamw_load_state_json(sd_adamw *opt, const cJSON *j);

/* ---- gradient norm and clipping ------------------------------------------ */

/* L2 norm of a float32 vector exactly as torch 2.15's CPU linalg.vector_norm
 * computes it for a contiguous float32 tensor (see optim.c). */
float sd_vector_norm2(const float *x, size_t n);

/* torch.nn.utils.get_total_norm(grads, 2.0): the L2 norm of the per-segment
 * L2 norms. nseg == 0 treats g[0..n) as one tensor (segs may be NULL then).
 * Segments are processed in parallel; each is reduced in torch's order, so
 * the result is independent of the thread count. Returns inf or nan when a
 * gradient is non-finite (or the squares overflow). */
float sd_grad_total_norm(const float *g, size_t n, const sd_segment *segs, int nseg);

/* torch.nn.utils.clip_grad_norm_(params, max_norm): total = the norm above,
 * coef = min(max_norm / (total + 1e-6), 1) in float32, and every gradient is
 * multiplied by coef, ALWAYS (also when coef is 1, and also when total is
 * non-finite: inf gives coef 0, nan gives nan gradients, as torch does).
 * Returns total; *coef_out (may be NULL) gets the coefficient used. Callers
 * that skip non-finite steps (--on_nan) check isfinite(total) before using
 * the gradients. */
float sd_clip_grad_norm(float *g, size_t n, const sd_segment *segs, int nseg, double max_norm, float *coef_out);

/* The coefficient clip_grad_norm_ multiplies the gradients by for a total
 * norm: min(max_norm / (total + 1e-6), 1) in torch's float32 arithmetic (NaN
 * stays NaN). */
float sd_clip_coef(float total, double max_norm);

/* Multiply g[0..n) by s in float32 (OpenMP). */
void sd_scale_floats(float *g, size_t n, float s);

/* 1 if every value is finite. */
int sd_all_finite(const float *x, size_t n);

#endif
