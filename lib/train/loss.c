/* loss.c — MSE / min-SNR losses and the fp16 loss scaler.
 *
 * Gradients follow torch's autograd op by op (contraction off, so every op
 * rounds to float32 on its own):
 *   mse_loss mean:  grad = (float(2/N) * (p - t)) * 1          mse_loss_backward, norm = 2/N
 *   min-SNR:        g_b  = ((1 / B) * w_b) / per               mean() backward, mul backward, mean(dims) backward
 *                   grad = (2 * (p - t)) * g_b                  mse_loss_backward, reduction none
 */
#pragma GCC optimize("fp-contract=off")
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "train/loss.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/error.h"

#define BLOCK 4096 /* summation block: fixed, so results do not depend on threads */

/* sum over i of (p[i]-t[i])^2, each square rounded to float32 as torch's
 * mse kernel stores it, accumulated in double. */
static double sq_err_sum(const float *p, const float *t, size_t n) {
    size_t nb = (n + BLOCK - 1) / BLOCK;
    double total = 0;
    if (nb <= 1) {
        for (size_t i = 0; i < n; i++) {
            float d = p[i] - t[i];
            total += (double)(d * d);
        }
        return total;
    }
    double *part = sd_xmalloc(sizeof(double) * nb);
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t b = 0; b < nb; b++) {
        size_t lo = b * BLOCK, hi = lo + BLOCK < n ? lo + BLOCK : n;
        double s = 0;
        for (size_t i = lo; i < hi; i++) {
            float d = p[i] - t[i];
            s += (double)(d * d);
        }
        part[b] = s;
    }
    for (size_t b = 0; b < nb; b++) total += part[b];
    free(part);
    return total;
}

float sd_mse_loss(const float *pred, const float *target, size_t n, float *grad) {
    return sd_mse_loss_seeded(pred, target, n, 1.0f, grad);
}

float sd_mse_loss_seeded(const float *pred, const float *target, size_t n, float dloss, float *grad) {
    if (n == 0) return NAN; /* torch: mean of an empty tensor */
    float sum = (float)sq_err_sum(pred, target, n);
    float loss = sum / (float)n; /* sum_out(...).div_(numel) */
    if (grad) {
        const float norm = (float)(2.0 / (double)n);
#pragma omp parallel for simd schedule(static) if (n >= 65536)
        for (size_t i = 0; i < n; i++) {
            float d = pred[i] - target[i];
            float a = norm * d;
            grad[i] = a * dloss;
        }
    }
    return loss;
}

float sd_mse_loss_weighted(const float *pred, const float *target, int B, size_t per, const float *w, float *grad) {
    return sd_mse_loss_weighted_seeded(pred, target, B, per, w, 1.0f, grad);
}

float sd_mse_loss_weighted_seeded(const float *pred, const float *target, int B, size_t per, const float *w,
                                  float dloss, float *grad) {
    if (B <= 0 || per == 0) return NAN;
    double acc = 0;
    for (int b = 0; b < B; b++) {
        float mean_b = (float)sq_err_sum(pred + (size_t)b * per, target + (size_t)b * per, per) / (float)per;
        float lw = mean_b * w[b];
        acc += (double)lw;
    }
    float loss = (float)acc / (float)B;
    if (grad) {
        for (int b = 0; b < B; b++) {
            float gb = ((dloss / (float)B) * w[b]) / (float)per;
            const float *p = pred + (size_t)b * per, *t = target + (size_t)b * per;
            float *g = grad + (size_t)b * per;
#pragma omp parallel for simd schedule(static) if (per >= 65536)
            for (size_t i = 0; i < per; i++) {
                float d = p[i] - t[i];
                float a = 2.0f * d;
                g[i] = a * gb;
            }
        }
    }
    return loss;
}

/* ---- loss scaler ---------------------------------------------------------- */

void sd_loss_scaler_init(sd_loss_scaler *s) {
    s->scale = 65536.0f;
    s->growth_factor = 2.0;
    s->backoff_factor = 0.5;
    s->growth_interval = 2000;
    s->growth_tracker = 0;
    s->enabled = 1;
}

float sd_loss_scaler_factor(const sd_loss_scaler *s) { return s->enabled ? s->scale : 1.0f; }

int sd_loss_scaler_unscale(const sd_loss_scaler *s, float *g, size_t n) {
    const float inv = s->enabled ? (float)(1.0 / (double)s->scale) : 1.0f;
    int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) {
        float v = g[i];
        bad |= !isfinite(v);
        if (inv != 1.0f) g[i] = v * inv;
    }
    return bad;
}

void sd_loss_scaler_update(sd_loss_scaler *s, int found_inf) {
    if (!s->enabled) return;
    if (found_inf) {
        s->scale = (float)((double)s->scale * s->backoff_factor);
        s->growth_tracker = 0;
    } else {
        int successful = s->growth_tracker + 1;
        if (successful == s->growth_interval) {
            float ns = (float)((double)s->scale * s->growth_factor);
            if (isfinite(ns)) s->scale = ns;
            s->growth_tracker = 0;
        } else {
            s->growth_tracker = successful;
        }
    }
}

cJSON *sd_loss_scaler_state_json(const sd_loss_scaler *s) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "scale", s->scale);
    cJSON_AddNumberToObject(j, "growth_factor", s->growth_factor);
    cJSON_AddNumberToObject(j, "backoff_factor", s->backoff_factor);
    cJSON_AddNumberToObject(j, "growth_interval", s->growth_interval);
    cJSON_AddNumberToObject(j, "growth_tracker", s->growth_tracker);
    cJSON_AddBoolToObject(j, "enabled", s->enabled);
    return j;
}

int sd_loss_scaler_load_state_json(sd_loss_scaler *s, const cJSON *j) {
    const char *keys[5] = {"scale", "growth_factor", "backoff_factor", "growth_interval", "growth_tracker"};
    double v[5];
    for (int k = 0; k < 5; k++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
        if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble)) return sd_set_error("loss scaler state: missing or invalid \"%s\"", keys[k]);
        v[k] = x->valuedouble;
    }
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(j, "enabled");
    if (!cJSON_IsBool(en)) return sd_set_error("loss scaler state: missing or invalid \"enabled\"");
    if (!(v[0] > 0) || !(v[1] > 1) || !(v[2] > 0 && v[2] < 1) || !(v[3] >= 1 && v[3] < 2147483647.0) ||
        !(v[4] >= 0 && v[4] < v[3]) || v[3] != floor(v[3]) || v[4] != floor(v[4]))
        return sd_set_error("loss scaler state: values out of range");
    s->scale = (float)v[0];
    s->growth_factor = v[1];
    s->backoff_factor = v[2];
    s->growth_interval = (int)v[3];
    s->growth_tracker = (int)v[4];
    s->enabled = cJSON_IsTrue(en);
    return 0;
}
