/* cpu_norm.c — GroupNorm (+ fused SiLU) and LayerNorm, forward and backward.
 * Statistics are accumulated in double in one pass (sum, sum of squares): the
 * inputs are floats, so their squares are exact in double and E[x^2] - E[x]^2
 * loses nothing that matters at fp32 output precision. */
#include "backend/cpu/cpu.h"

#include <math.h>
#include <omp.h>

static void moments(const float *x, size_t n, double *mean, double *var) {
    double s = 0.0, s2 = 0.0;
#pragma omp simd reduction(+ : s, s2)
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        s += v;
        s2 += v * v;
    }
    double m = s / (double)n;
    double va = s2 / (double)n - m * m;
    *mean = m;
    *var = va > 0.0 ? va : 0.0;
}

/* ---- GroupNorm: x [B, C, HW], groups of Cg = C/G consecutive channels ------------ */

void sd_cpu_groupnorm_forward(sd_backend *be, float *out, float *mean, float *rstd, const float *inp,
                              const float *gamma, const float *beta, int B, int C, int HW, int G, float eps,
                              int silu) {
    int nt = sd_cpu_nt(be), Cg = C / G;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if ((long long)B * C * HW > 16384)
    for (int bg = 0; bg < B * G; bg++) {
        int b = bg / G, g = bg % G;
        size_t off = ((size_t)b * C + (size_t)g * Cg) * HW;
        double m, v;
        moments(inp + off, (size_t)Cg * HW, &m, &v);
        float rs = (float)(1.0 / sqrt(v + (double)eps));
        mean[bg] = (float)m;
        rstd[bg] = rs;
        for (int cc = 0; cc < Cg; cc++) {
            int c = g * Cg + cc;
            float sc = rs * gamma[c], sh = beta[c] - (float)m * sc;
            const float *x = inp + off + (size_t)cc * HW;
            float *y = out + off + (size_t)cc * HW;
            if (silu) {
#pragma omp simd
                for (int i = 0; i < HW; i++) {
                    float t = x[i] * sc + sh;
                    y[i] = t * sd_cpu_sigmoidf(t);
                }
            } else {
#pragma omp simd
                for (int i = 0; i < HW; i++) y[i] = x[i] * sc + sh;
            }
        }
    }
}

/* dy of the affine output, recomputing the pre-SiLU value when fused. */
static inline float gn_dpre(float dy, float xh, float ga, float be, int silu) {
    if (!silu) return dy;
    float t = xh * ga + be;
    float s = sd_cpu_sigmoidf(t);
    return dy * (s * (1.0f + t * (1.0f - s)));
}

void sd_cpu_groupnorm_backward(sd_backend *be, float *dinp, float *dgamma, float *dbeta, const float *dout,
                               const float *inp, const float *mean, const float *rstd, const float *gamma,
                               const float *beta, int B, int C, int HW, int G, int silu) {
    int nt = sd_cpu_nt(be), Cg = C / G;
    const double n = (double)Cg * HW;
    /* one group per iteration, all images inside: dgamma/dbeta of a channel
     * are then touched by one thread only */
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if ((long long)B * C * HW > 16384)
    for (int g = 0; g < G; g++) {
        for (int b = 0; b < B; b++) {
            int bg = b * G + g;
            float m = mean[bg], rs = rstd[bg];
            size_t off = ((size_t)b * C + (size_t)g * Cg) * HW;
            double sum1 = 0.0, sum2 = 0.0; /* sum dxhat, sum dxhat*xhat over the group */
            for (int cc = 0; cc < Cg; cc++) {
                int c = g * Cg + cc;
                const float *x = inp + off + (size_t)cc * HW, *dy = dout + off + (size_t)cc * HW;
                float ga = gamma[c], bt = silu ? beta[c] : 0.0f;
                float a = 0.0f, s = 0.0f; /* sum dpre*xhat, sum dpre */
#pragma omp simd reduction(+ : a, s)
                for (int i = 0; i < HW; i++) {
                    float xh = (x[i] - m) * rs;
                    float dp = gn_dpre(dy[i], xh, ga, bt, silu);
                    a += dp * xh;
                    s += dp;
                }
                if (dgamma) dgamma[c] += a;
                if (dbeta) dbeta[c] += s;
                sum1 += (double)ga * s;
                sum2 += (double)ga * a;
            }
            if (!dinp) continue;
            float k1 = (float)(sum1 / n), k2 = (float)(sum2 / n);
            for (int cc = 0; cc < Cg; cc++) {
                int c = g * Cg + cc;
                const float *x = inp + off + (size_t)cc * HW, *dy = dout + off + (size_t)cc * HW;
                float *dx = dinp + off + (size_t)cc * HW;
                float ga = gamma[c], bt = silu ? beta[c] : 0.0f;
#pragma omp simd
                for (int i = 0; i < HW; i++) {
                    float xh = (x[i] - m) * rs;
                    float dp = gn_dpre(dy[i], xh, ga, bt, silu);
                    dx[i] += rs * (dp * ga - k1 - xh * k2);
                }
            }
        }
    }
}

/* ---- LayerNorm over the last dim: x [N, C] --------------------------------------- */

void sd_cpu_layernorm_forward(sd_backend *be, float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int N, int C, float eps) {
    int nt = sd_cpu_nt(be);
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)N * C > 16384)
    for (int r = 0; r < N; r++) {
        const float *x = inp + (size_t)r * C;
        float *y = out + (size_t)r * C;
        double m, v;
        moments(x, (size_t)C, &m, &v);
        float rs = (float)(1.0 / sqrt(v + (double)eps)), mf = (float)m;
        mean[r] = mf;
        rstd[r] = rs;
#pragma omp simd
        for (int i = 0; i < C; i++) y[i] = (x[i] - mf) * rs * w[i] + b[i];
    }
}

void sd_cpu_layernorm_backward(sd_backend *be, float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *mean, const float *rstd, const float *w, int N,
                               int C) {
    int nt = sd_cpu_nt(be);
    if ((long long)N * C <= 16384) nt = 1;
    size_t stride = sd_cpu_pad16((size_t)C);
    float *part = sd_cpu_ws(be, 2 * stride * nt); /* per-thread dw, db partial sums */
#pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num();
        float *pw = part + 2 * stride * tid, *pb = pw + stride;
        memset(pw, 0, 2 * stride * sizeof(float));
        long long lo, hi;
        sd_cpu_range(N, tid, nt, &lo, &hi);
        for (long long r = lo; r < hi; r++) {
            const float *x = inp + (size_t)r * C, *dy = dout + (size_t)r * C;
            float m = mean[r], rs = rstd[r];
            float s1 = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s1, s2)
            for (int i = 0; i < C; i++) {
                float xh = (x[i] - m) * rs;
                float dxh = dy[i] * w[i];
                pw[i] += dy[i] * xh;
                pb[i] += dy[i];
                s1 += dxh;
                s2 += dxh * xh;
            }
            if (!dinp) continue;
            float k1 = s1 / (float)C, k2 = s2 / (float)C;
            float *dx = dinp + (size_t)r * C;
#pragma omp simd
            for (int i = 0; i < C; i++) {
                float xh = (x[i] - m) * rs;
                dx[i] += rs * (dy[i] * w[i] - k1 - xh * k2);
            }
        }
#pragma omp barrier
        sd_cpu_range(C, tid, nt, &lo, &hi);
        for (int t = 0; t < nt; t++) {
            const float *qw = part + 2 * stride * t, *qb = qw + stride;
            for (long long i = lo; i < hi; i++) {
                if (dw) dw[i] += qw[i];
                if (db) db[i] += qb[i];
            }
        }
    }
}
