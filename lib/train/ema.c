/* ema.c — diffusers EMAModel, arithmetic as torch does it.
 *
 * `s_param.sub_(one_minus_decay * (s_param - param))`: one_minus_decay is a
 * Python double; the product is a float32 tensor op (scalar cast to float),
 * then a separate subtraction. Contraction is off so the two stay separate.
 */
#pragma GCC optimize("fp-contract=off")
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "train/ema.h"

#include <math.h>

#include "core/error.h"

void sd_ema_init(sd_ema *e) {
    e->decay = 0.9999;
    e->min_decay = 0.0;
    e->update_after_step = 0;
    e->use_ema_warmup = 0;
    e->inv_gamma = 1.0;
    e->power = 2.0 / 3.0;
    e->foreach = 0;
    e->optimization_step = 0;
    e->cur_decay = -1;
}

int sd_ema_check(const sd_ema *e) {
    if (!(e->decay >= 0 && e->decay <= 1)) return sd_set_error("ema: decay must be between 0 and 1 (got %g)", e->decay);
    if (!(e->min_decay >= 0 && e->min_decay <= 1)) return sd_set_error("ema: invalid min_decay %g", e->min_decay);
    if (e->update_after_step < 0) return sd_set_error("ema: negative update_after_step");
    if (e->optimization_step < 0) return sd_set_error("ema: negative optimization_step");
    if (e->use_ema_warmup && !(e->inv_gamma > 0)) return sd_set_error("ema: invalid inv_gamma %g", e->inv_gamma);
    if (!isfinite(e->power)) return sd_set_error("ema: invalid power");
    return 0;
}

double sd_ema_get_decay(const sd_ema *e, int64_t optimization_step) {
    int64_t step = optimization_step - e->update_after_step - 1;
    if (step < 0) step = 0;
    if (step <= 0) return 0.0;
    double d;
    if (e->use_ema_warmup)
        d = 1.0 - pow(1.0 + (double)step / e->inv_gamma, -e->power);
    else
        d = (double)(1 + step) / (double)(10 + step); /* Python int / int */
    if (e->decay < d) d = e->decay;        /* min(cur, decay) */
    if (d < e->min_decay) d = e->min_decay; /* max(cur, min_decay) */
    return d;
}

void sd_ema_update(float *restrict shadow, const float *restrict param, size_t n, double decay, int foreach) {
    const double one_minus_decay = 1.0 - decay;
    if (foreach) {
        /* sub_(other, alpha): the add kernel computes self + (-alpha)*other as one FMA */
        const float neg_alpha = (float)(-one_minus_decay);
#pragma omp parallel for simd schedule(static) if (n >= 65536)
        for (size_t i = 0; i < n; i++) shadow[i] = fmaf(neg_alpha, shadow[i] - param[i], shadow[i]);
        return;
    }
    const float omd = (float)one_minus_decay;
#pragma omp parallel for simd schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) {
        float diff = shadow[i] - param[i];
        float t = omd * diff;
        shadow[i] = shadow[i] - t;
    }
}

double sd_ema_step(sd_ema *e, float *shadow, const float *param, size_t n) {
    e->optimization_step++;
    double d = sd_ema_get_decay(e, e->optimization_step);
    e->cur_decay = d;
    sd_ema_update(shadow, param, n, d, e->foreach);
    return d;
}

cJSON *sd_ema_state_json(const sd_ema *e) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "decay", e->decay);
    cJSON_AddNumberToObject(j, "min_decay", e->min_decay);
    cJSON_AddNumberToObject(j, "optimization_step", (double)e->optimization_step);
    cJSON_AddNumberToObject(j, "update_after_step", (double)e->update_after_step);
    cJSON_AddBoolToObject(j, "use_ema_warmup", e->use_ema_warmup);
    cJSON_AddNumberToObject(j, "inv_gamma", e->inv_gamma);
    cJSON_AddNumberToObject(j, "power", e->power);
    return j;
}

static int opt_num(const cJSON *j, const char *key, double *dst, int integer) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!x) return 0;
    if (!cJSON_IsNumber(x) || (integer && x->valuedouble != floor(x->valuedouble)))
        return sd_set_error("ema state: invalid \"%s\"", key);
    *dst = x->valuedouble;
    return 0;
}

int sd_ema_load_state_json(sd_ema *e, const cJSON *j) {
    if (!cJSON_IsObject(j)) return sd_set_error("ema state: not an object");
    sd_ema t = *e;
    double step = (double)t.optimization_step, after = (double)t.update_after_step;
    if (opt_num(j, "decay", &t.decay, 0) || opt_num(j, "min_decay", &t.min_decay, 0) ||
        opt_num(j, "optimization_step", &step, 1) || opt_num(j, "update_after_step", &after, 1) ||
        opt_num(j, "inv_gamma", &t.inv_gamma, 0) || opt_num(j, "power", &t.power, 0))
        return -1;
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(j, "use_ema_warmup");
    if (w) {
        if (!cJSON_IsBool(w)) return sd_set_error("ema state: invalid \"use_ema_warmup\"");
        t.use_ema_warmup = cJSON_IsTrue(w);
    }
    if (!(step >= 0 && step < 9e15) || !(after >= 0 && after < 9e15)) return sd_set_error("ema state: step out of range");
    t.optimization_step = (int64_t)step;
    t.update_after_step = (int64_t)after;
    if (sd_ema_check(&t)) return sd_error_prefix("ema state");
    *e = t;
    return 0;
}
