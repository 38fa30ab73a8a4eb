/* optim.c — AdamW and clip_grad_norm_ with torch 2.15's CPU arithmetic.
 *
 * Bit parity with torch needs three things:
 *  1. The same split between Python doubles and float32 tensors. torch keeps
 *     lr, the bias corrections and the step size as Python floats (double)
 *     and hands them to float32 kernels, which convert the scalar to float
 *     once. We do the same: scalars in double, one (float) cast per use.
 *  2. The same rounding steps. Each torch op rounds its result to float32;
 *     a C expression must not fuse two of them. This file is compiled with
 *     floating-point contraction OFF, and the multiply-adds that torch's
 *     kernels do fuse (measured against torch 2.15 x86-64: lerp_ and
 *     addcmul_ use an FMA; the norm's 8-lane vector body does not, its
 *     scalar tail partly does) are written as explicit fmaf().
 *  3. The same summation order in reductions (sd_vector_norm2).
 * One op cannot be matched portably: `exp_avg_sq.sqrt()` runs MKL VML's
 * vmsSqrt (VML_HA) in torch's x86 wheels, which is not correctly rounded;
 * we use IEEE sqrtf (what torch's scalar path, CUDA and non-MKL builds do).
 * tests/unit/test_train_math.c checks all of it against tests/ref goldens:
 * bit-exact against a replica of torch's AdamW with an IEEE sqrt, ~1e-8
 * relative against torch.optim.AdamW itself.
 */
#pragma GCC optimize("fp-contract=off")
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/json.h"

/* Elementwise loops go parallel above this size (torch: GRAIN_SIZE 32768).
 * Elementwise results do not depend on the split. */
#define SD_PAR_MIN 65536

sd_adamw_config sd_adamw_defaults(void) {
    sd_adamw_config c = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-2};
    return c;
}

static int check_config(const sd_adamw_config *c) {
    if (!(c->beta1 >= 0 && c->beta1 < 1)) return sd_set_error("adamw: invalid beta1 %g (need 0 <= beta1 < 1)", c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1)) return sd_set_error("adamw: invalid beta2 %g (need 0 <= beta2 < 1)", c->beta2);
    if (!(c->eps >= 0)) return sd_set_error("adamw: invalid eps %g", c->eps);
    if (!(c->weight_decay >= 0)) return sd_set_error("adamw: invalid weight_decay %g", c->weight_decay);
    return 0;
}

int sd_adamw_init(sd_adamw *opt, const sd_adamw_config *cfg, size_t n, float *m, float *v) {
    memset(opt, 0, sizeof *opt);
    if (check_config(cfg)) return -1;
    opt->cfg = *cfg;
    opt->n = n;
    opt->m = m;
    opt->v = v;
    if (n) {
        memset(m, 0, n * sizeof(float));
        memset(v, 0, n * sizeof(float));
    }
    return 0;
}

/* The step over p, g, m, v. scaled: read g[i] * gscale (clip_grad_norm_'s
 * in-place multiply, one float32 rounding, folded into this pass); zero: then
 * store 0 into g[i] (optimizer.zero_grad). Called with constant flags so each
 * use compiles to its own loop. */
static inline __attribute__((always_inline)) void adamw_pass(sd_adamw *opt, float *restrict p, float *restrict g,
                                                             double lr, float gscale, const int scaled,
                                                             const int zero) {
    const sd_adamw_config *c = &opt->cfg;
    float *restrict m = opt->m, *restrict v = opt->v;
    const size_t n = opt->n;
    opt->step++;
    /* Python-side scalars (double), as _single_tensor_adam computes them.
     * step is a float32 tensor there, read back with .item(): exact below 2^24. */
    const double step = (double)opt->step;
    const double bc1 = 1.0 - pow(c->beta1, step);
    const double bc2 = 1.0 - pow(c->beta2, step);
    const double step_size = lr / bc1;
    const double bc2_sqrt = pow(bc2, 0.5); /* Python's `bias_correction2 ** 0.5` */

    /* The float32 values the kernels see. torch skips the decay multiply when
     * weight_decay == 0; multiplying by exactly 1 is the same, bit for bit. */
    const float wd_mul = c->weight_decay != 0 ? (float)(1.0 - lr * c->weight_decay) : 1.0f; /* param.mul_(1 - lr*wd) */
    const float w1 = (float)(1.0 - c->beta1);                   /* exp_avg.lerp_(grad, 1-beta1) */
    /* lerp(self, end, w): self + w*(end-self) for |w| < 0.5, else
     * end - (end-self)*(1-w); torch's kernel does either as one FMA:
     * fma(coef, end-self, base) with (coef, base) = (w, self) or (w-1, end). */
    const int w1_small = fabsf(w1) < 0.5f;
    const float lerp_coef = w1_small ? w1 : w1 - 1.0f;
    const float b2 = (float)c->beta2;                           /* exp_avg_sq.mul_(beta2) */
    const float one_m_b2 = (float)(1.0 - c->beta2);             /* .addcmul_(g, g, value=1-beta2) */
    const float bc2s = (float)bc2_sqrt;                         /* exp_avg_sq.sqrt() / bc2_sqrt */
    const float eps = (float)c->eps;                            /* .add_(eps) */
    const float neg_step = (float)(-step_size);                 /* addcdiv_(m, denom, value=-step_size) */

#pragma omp parallel for simd schedule(static) if (n >= SD_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float pi = p[i], gi = g[i], mi = m[i], vi = v[i];
        if (scaled) gi = gi * gscale;
        if (zero) g[i] = 0.0f;
        pi = pi * wd_mul;
        mi = fmaf(lerp_coef, gi - mi, w1_small ? mi : gi);
        vi = vi * b2;
        vi = fmaf(one_m_b2 * gi, gi, vi); /* addcmul: self + (value*t1)*t2, fused */
        float denom = sqrtf(vi) / bc2s + eps;
        pi = pi + (neg_step * mi) / denom; /* addcdiv: self + (value*t1)/t2 */
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

void sd_adamw_step(sd_adamw *opt, float *restrict p, const float *restrict g, double lr) {
    adamw_pass(opt, p, (float *)g, lr, 1.0f, 0, 0); /* g is only read when neither flag is set */
}

void sd_adamw_step_fused(sd_adamw *opt, float *restrict p, float *restrict g, double lr, float gscale, int zero_grads) {
    if (zero_grads) adamw_pass(opt, p, g, lr, gscale, 1, 1);
    else adamw_pass(opt, p, g, lr, gscale, 1, 0);
}

cJSON *sd_adamw_state_json(const sd_adamw *opt) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", (double)opt->step);
    cJSON_AddNumberToObject(j, "beta1", opt->cfg.beta1);
    cJSON_AddNumberToObject(j, "beta2", opt->cfg.beta2);
    cJSON_AddNumberToObject(j, "eps", opt->cfg.eps);
    cJSON_AddNumberToObject(j, "weight_decay", opt->cfg.weight_decay);
    return j;
}

int sd_adamw_load_state_json(sd_adamw *opt, const cJSON *j) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step");
    if (!cJSON_IsNumber(s) || s->valuedouble < 0 || s->valuedouble != floor(s->valuedouble) || s->valuedouble > 9e15)
        return sd_set_error("adamw state: missing or invalid \"step\"");
    sd_adamw_config c = opt->cfg;
    const char *keys[4] = {"beta1", "beta2", "eps", "weight_decay"};
    double *dst[4] = {&c.beta1, &c.beta2, &c.eps, &c.weight_decay};
    for (int k = 0; k < 4; k++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
        if (!cJSON_IsNumber(x)) return sd_set_error("adamw state: missing or invalid \"%s\"", keys[k]);
        *dst[k] = x->valuedouble;
    }
    if (check_config(&c)) return sd_error_prefix("adamw state");
    opt->cfg = c;
    opt->step = (int64_t)s->valuedouble;
    return 0;
}

/* ---- norms ---------------------------------------------------------------- */

/* torch 2.15 x86-64, linalg.vector_norm(x, 2) of a contiguous float32 tensor
 * (aten/src/ATen/native/cpu/ReduceNormKernel.cpp, the "reduce last dim" path,
 * dispatched at AVX2 width even on AVX512 machines):
 *   8 float accumulators over full 8-wide blocks, acc += x*x (mul and add
 *   rounded separately); the 8 lanes summed left to right; the remaining
 *   n%8 elements added in order, of which a first group of 4 is multiplied
 *   then added (the compiler vectorised the squares) and the last n%4 are
 *   fused multiply-adds; then sqrtf.
 * Single-threaded in torch for any size (one output element), so it is here. */
float sd_vector_norm2(const float *x, size_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const size_t nv = n - n % 8;
    for (size_t d = 0; d < nv; d += 8)
        for (int j = 0; j < 8; j++) {
            float sq = x[d + j] * x[d + j];
            acc[j] = acc[j] + sq;
        }
    float b = acc[0];
    for (int j = 1; j < 8; j++) b = b + acc[j];
    size_t k = nv;
    if (n - k >= 4) {
        for (int q = 0; q < 4; q++) {
            float sq = x[k + q] * x[k + q];
            b = b + sq;
        }
        k += 4;
    }
    for (; k < n; k++) b = fmaf(x[k], x[k], b);
    return sqrtf(b);
}

float sd_grad_total_norm(const float *g, size_t n, const sd_segment *segs, int nseg) {
    if (nseg <= 0) return sd_vector_norm2(g, n);
    float *norms = sd_xmalloc(sizeof(float) * (size_t)nseg);
    /* Each segment is one torch reduction; segments are independent. */
#pragma omp parallel for schedule(dynamic, 1) if (nseg > 1 && n >= SD_PAR_MIN)
    for (int s = 0; s < nseg; s++) norms[s] = sd_vector_norm2(g + segs[s].offset, segs[s].numel);
    float total = sd_vector_norm2(norms, (size_t)nseg); /* vector_norm(torch.stack(norms)) */
    free(norms);
    return total;
}

void sd_scale_floats(float *g, size_t n, float s) {
#pragma omp parallel for simd schedule(static) if (n >= SD_PAR_MIN)
    for (size_t i = 0; i < n; i++) g[i] = g[i] * s;
}

float sd_clip_coef(float total, double max_norm) {
    /* clip_coef = max_norm / (total_norm + 1e-6): a float32 tensor plus a
     * Python scalar, then Tensor.__rdiv__ = reciprocal() * max_norm. */
    float t = total + (float)1e-6;
    float coef = (1.0f / t) * (float)max_norm;
    /* torch.clamp(clip_coef, max=1.0) keeps NaN */
    if (!isnan(coef) && coef > 1.0f) coef = 1.0f;
    return coef;
}

float sd_clip_grad_norm(float *g, size_t n, const sd_segment *segs, int nseg, double max_norm, float *coef_out) {
    float total = sd_grad_total_norm(g, n, segs, nseg);
    float coef = sd_clip_coef(total, max_norm);
    if (coef_out) *coef_out = coef;
    if (nseg <= 0) sd_scale_floats(g, n, coef);
    else
        for (int s = 0; s < nseg; s++) sd_scale_floats(g + segs[s].offset, segs[s].numel, coef);
    return total;
}

int sd_all_finite(const float *x, size_t n) {
    int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static) if (n >= SD_PAR_MIN)
    for (size_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return !bad;
}
