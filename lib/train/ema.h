/* ema.h — exponential moving average of the weights, as diffusers 0.39's
 * training_utils.EMAModel (the non-foreach path train_text_to_image uses by
 * default).
 *
 * After every optimizer step:
 *   optimization_step += 1
 *   s = max(0, optimization_step - update_after_step - 1)
 *   decay = 0                                    if s <= 0 (returned as is, NOT clamped to min_decay)
 *         = 1 - (1 + s/inv_gamma)^-power         with use_ema_warmup
 *         = (1 + s)/(10 + s)                     otherwise
 *   decay = max(min(decay, max_decay), min_decay)
 *   shadow = shadow - (1 - decay)*(shadow - param)   in float32, two roundings
 * so the first update copies (almost: s - (s - p) in float) the weights.
 * With --foreach_ema diffusers uses torch._foreach_sub_(s, s - p, alpha=1-d),
 * which on CPU is one fused multiply-add per element: set e->foreach to get
 * that rounding instead.
 * Frozen parameters are copied instead; callers pass only trainable ranges
 * to sd_ema_update and copy the rest themselves.
 */
#ifndef SD_TRAIN_EMA_H
#define SD_TRAIN_EMA_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

typedef struct {
    double decay;               /* the maximum decay, 0.9999 */
    double min_decay;           /* 0 */
    int64_t update_after_step;  /* 0 */
    int use_ema_warmup;         /* 0 */
    double inv_gamma;           /* 1 */
    double power;               /* 2/3 */
    int foreach;                /* 0: s.sub_((1-d)*(s-p)); 1: _foreach_sub_(s, s-p, alpha=1-d) (--foreach_ema) */
    int64_t optimization_step;  /* updates done so far */
    double cur_decay;           /* decay used by the last update (-1 before any) */
} sd_ema;

/* EMAModel's defaults, which train_text_to_image uses. */
void sd_ema_init(sd_ema *e);
int sd_ema_check(const sd_ema *e);

/* EMAModel.get_decay(optimization_step). */
double sd_ema_get_decay(const sd_ema *e, int64_t optimization_step);

/* shadow[i] -= (1-decay) * (shadow[i] - param[i]) (OpenMP); foreach selects
 * the fused form fmaf(-(1-decay), shadow - param, shadow). */
void sd_ema_update(float *shadow, const float *param, size_t n, double decay, int foreach);

/* EMAModel.step: advance optimization_step, compute the decay, update
 * shadow[0..n) from param. Returns the decay used. */
double sd_ema_step(sd_ema *e, float *shadow, const float *param, size_t n);

/* The state diffusers stores in unet_ema/config.json: {"decay", "min_decay",
 * "optimization_step", "update_after_step", "use_ema_warmup", "inv_gamma",
 * "power"} (the shadow weights are saved as tensors by the caller). */
cJSON *sd_ema_state_json(const sd_ema *e);
/* Keys absent from j keep their current value (EMAModel.load_state_dict). */
int sd_ema_load_state_json(sd_ema *e, const cJSON *j);

#endif
