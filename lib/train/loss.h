/* loss.h — the training losses of train_text_to_image and fp16 loss scaling.
 *
 * Forward values are float32 like torch's (sums accumulated in double over
 * fixed blocks, so the value is deterministic for any thread count and within
 * an ulp or two of torch's cascade sum). Gradients are torch's autograd
 * results bit for bit (see loss.c for the op order).
 */
#ifndef SD_TRAIN_LOSS_H
#define SD_TRAIN_LOSS_H

#include <stddef.h>

#include <cJSON.h>

/* F.mse_loss(pred, target, reduction="mean") over n elements.
 * grad (may be NULL): d loss / d pred = (2/n)(pred - target), as
 * mse_loss_backward computes it for a seed gradient of 1. */
float sd_mse_loss(const float *pred, const float *target, size_t n, float *grad);

/* The min-SNR weighted loss (--snr_gamma):
 *   l_b  = mean over the per = C*H*W elements of sample b of (pred-target)^2
 *   loss = mean_b(l_b * w[b])
 * pred/target [B, per]; w [B] the per-sample weights (min(snr,gamma)/snr for
 * epsilon, min(snr,gamma)/(snr+1) for v-prediction; computed by the caller).
 * grad (may be NULL): d loss / d pred = 2(pred-target) * ((1/B)*w[b]) / per. */
float sd_mse_loss_weighted(const float *pred, const float *target, int B, size_t per, const float *w, float *grad);

/* The same with a seed gradient dloss (the upstream d/d loss, float32): the
 * trainer backpropagates loss / GA as accelerator.backward does, so
 * dloss = float(1/GA) (DivBackward: 1.0f / GA). Gradients, in torch's order:
 *   mean:     (norm * (p - t)) * dloss,              norm = float(2/n)
 *   weighted: (2 * (p - t)) * (((dloss / B) * w[b]) / per)
 * dloss = 1 gives the functions above bit for bit. */
float sd_mse_loss_seeded(const float *pred, const float *target, size_t n, float dloss, float *grad);
float sd_mse_loss_weighted_seeded(const float *pred, const float *target, int B, size_t per, const float *w,
                                  float dloss, float *grad);

/* ---- dynamic loss scaling (torch.amp.GradScaler semantics) --------------- */

typedef struct {
    float scale;           /* 2^16 */
    double growth_factor;  /* 2.0 */
    double backoff_factor; /* 0.5 */
    int growth_interval;   /* 2000 */
    int growth_tracker;    /* consecutive good steps since the last change */
    int enabled;           /* 0: scale 1, nothing is ever skipped */
} sd_loss_scaler;

/* GradScaler's defaults, enabled. */
void sd_loss_scaler_init(sd_loss_scaler *s);

/* The factor to multiply the loss (equivalently the seed gradient) by:
 * scale when enabled, 1 otherwise. */
float sd_loss_scaler_factor(const sd_loss_scaler *s);

/* unscale_: g *= inv_scale (inv_scale = float(1/double(scale))); returns 1 if
 * any value was inf or nan (the step must then be skipped), 0 otherwise.
 * Disabled: only the finiteness check. */
int sd_loss_scaler_unscale(const sd_loss_scaler *s, float *g, size_t n);

/* update(): found_inf -> scale *= backoff, tracker = 0; else tracker += 1 and
 * on reaching growth_interval scale *= growth (unless that overflows float),
 * tracker = 0. */
void sd_loss_scaler_update(sd_loss_scaler *s, int found_inf);

/* Checkpoint state: {"scale", "growth_factor", "backoff_factor",
 * "growth_interval", "growth_tracker", "enabled"} (torch's scaler.pt). */
cJSON *sd_loss_scaler_state_json(const sd_loss_scaler *s);
int sd_loss_scaler_load_state_json(sd_loss_scaler *s, const cJSON *j);

#endif
