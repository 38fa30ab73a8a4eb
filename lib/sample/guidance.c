/* guidance.c — classifier-free guidance and guidance_rescale (guidance.h). */

/* one rounding per torch op, as in scheduler.c */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "sample/guidance.h"

#include <math.h>

void sd_cfg_combine(const float *e_u, const float *e_c, float g, float *out, size_t n) {
    for (size_t k = 0; k < n; k++) {
        float d = e_c[k] - e_u[k];
        out[k] = e_u[k] + g * d;
    }
}

/* torch's CPU std reduces in double (two-pass here; identical after the
 * final rounding to fp32 in all our checks) */
float sd_std_unbiased(const float *x, size_t n) {
    if (n < 2) return NAN;
    double mean = 0;
    for (size_t k = 0; k < n; k++) mean += x[k];
    mean /= (double)n;
    double ss = 0;
    for (size_t k = 0; k < n; k++) {
        double d = (double)x[k] - mean;
        ss += d * d;
    }
    return (float)sqrt(ss / (double)(n - 1));
}

void sd_cfg_rescale(float *e, const float *e_c, double r, int batch, size_t per_item) {
    if (r == 0.0) return;
    /* guidance_rescale * rescaled + (1 - guidance_rescale) * noise_cfg with
     * Python floats: (1 - r) is computed in double and then rounded */
    float a = (float)r, b = (float)(1.0 - r);
    for (int i = 0; i < batch; i++) {
        float *x = e + (size_t)i * per_item;
        float ratio = sd_std_unbiased(e_c + (size_t)i * per_item, per_item) / sd_std_unbiased(x, per_item);
        for (size_t k = 0; k < per_item; k++) {
            float resc = x[k] * ratio;
            x[k] = a * resc + b * x[k];
        }
    }
}
