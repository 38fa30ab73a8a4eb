/* cpu_act.c — SiLU, GELU (exact erf), quick_gelu, GEGLU and row softmax. */
#include "backend/cpu/cpu.h"

#include <math.h>
#include <omp.h>

static inline float act_f(int act, float x) {
    switch (act) {
    case SD_ACT_SILU: return x * sd_cpu_sigmoidf(x);
    case SD_ACT_GELU: return 0.5f * x * (1.0f + sd_cpu_erff(x * SD_CPU_SQRT1_2));
    default: return x * sd_cpu_sigmoidf(1.702f * x);
    }
}

static inline float act_df(int act, float x) {
    switch (act) {
    case SD_ACT_SILU: {
        float s = sd_cpu_sigmoidf(x);
        return s * (1.0f + x * (1.0f - s));
    }
    case SD_ACT_GELU:
        return 0.5f * (1.0f + sd_cpu_erff(x * SD_CPU_SQRT1_2)) + x * SD_CPU_INV_SQRT_2PI * sd_cpu_expf(-0.5f * x * x);
    default: {
        float s = sd_cpu_sigmoidf(1.702f * x);
        return s * (1.0f + 1.702f * x * (1.0f - s));
    }
    }
}

#define PAR_BLOCK 16384

/* One loop per activation, so the switch in act_f folds away and each loop
 * vectorizes. */
#define DEF_ACT(NAME, A)                                                                             \
    static void fwd_##NAME(int nt, float *out, const float *inp, size_t n) {                         \
        _Pragma("omp parallel for simd num_threads(nt) schedule(static) if (n > PAR_BLOCK)")         \
        for (size_t i = 0; i < n; i++) out[i] = act_f(A, inp[i]);                                    \
    }                                                                                                \
    static void bwd_##NAME(int nt, float *dinp, const float *dout, const float *inp, size_t n) {     \
        _Pragma("omp parallel for simd num_threads(nt) schedule(static) if (n > PAR_BLOCK)")         \
        for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * act_df(A, inp[i]);                       \
    }
DEF_ACT(silu, SD_ACT_SILU)
DEF_ACT(gelu, SD_ACT_GELU)
DEF_ACT(qgelu, SD_ACT_QUICK_GELU)

void sd_cpu_act_forward(sd_backend *be, int act, float *out, const float *inp, size_t n) {
    int nt = sd_cpu_nt(be);
    if (act == SD_ACT_SILU) fwd_silu(nt, out, inp, n);
    else if (act == SD_ACT_GELU) fwd_gelu(nt, out, inp, n);
    else fwd_qgelu(nt, out, inp, n);
}

void sd_cpu_act_backward(sd_backend *be, int act, float *dinp, const float *dout, const float *inp, size_t n) {
    int nt = sd_cpu_nt(be);
    if (act == SD_ACT_SILU) bwd_silu(nt, dinp, dout, inp, n);
    else if (act == SD_ACT_GELU) bwd_gelu(nt, dinp, dout, inp, n);
    else bwd_qgelu(nt, dinp, dout, inp, n);
}

/* inp [N, 2D] = [a | g], out [N, D] = a * gelu(g) */
void sd_cpu_geglu_forward(sd_backend *be, float *out, const float *inp, int N, int D) {
    int nt = sd_cpu_nt(be);
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)N * D > PAR_BLOCK)
    for (int r = 0; r < N; r++) {
        const float *a = inp + (size_t)r * 2 * D, *g = a + D;
        float *y = out + (size_t)r * D;
#pragma omp simd
        for (int i = 0; i < D; i++) y[i] = a[i] * act_f(SD_ACT_GELU, g[i]);
    }
}

void sd_cpu_geglu_backward(sd_backend *be, float *dinp, const float *dout, const float *inp, int N, int D) {
    int nt = sd_cpu_nt(be);
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)N * D > PAR_BLOCK)
    for (int r = 0; r < N; r++) {
        const float *a = inp + (size_t)r * 2 * D, *g = a + D, *dy = dout + (size_t)r * D;
        float *da = dinp + (size_t)r * 2 * D, *dg = da + D;
#pragma omp simd
        for (int i = 0; i < D; i++) {
            da[i] += dy[i] * act_f(SD_ACT_GELU, g[i]);
            dg[i] += dy[i] * a[i] * act_df(SD_ACT_GELU, g[i]);
        }
    }
}

/* softmax over the last dim of [N, C] */
void sd_cpu_softmax_forward(sd_backend *be, float *out, const float *inp, int N, int C) {
    int nt = sd_cpu_nt(be);
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)N * C > PAR_BLOCK)
    for (int r = 0; r < N; r++) {
        const float *x = inp + (size_t)r * C;
        float *y = out + (size_t)r * C;
        float m = -INFINITY;
        for (int i = 0; i < C; i++) m = x[i] > m ? x[i] : m;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < C; i++) {
            float e = sd_cpu_expf(x[i] - m);
            y[i] = e;
            s += e;
        }
        float inv = 1.0f / s;
#pragma omp simd
        for (int i = 0; i < C; i++) y[i] *= inv;
    }
}

void sd_cpu_softmax_backward(sd_backend *be, float *dinp, const float *dout, const float *out, int N, int C) {
    int nt = sd_cpu_nt(be);
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)N * C > PAR_BLOCK)
    for (int r = 0; r < N; r++) {
        const float *y = out + (size_t)r * C, *dy = dout + (size_t)r * C;
        float *dx = dinp + (size_t)r * C;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < C; i++) s += dy[i] * y[i];
#pragma omp simd
        for (int i = 0; i < C; i++) dx[i] += y[i] * (dy[i] - s);
    }
}
