/* cpu_misc.c — elementwise, broadcast, layout, embedding, loss and
 * reduction ops. Memory-bound: the only goals are one pass and both cores. */
#include "backend/cpu/cpu.h"
#include "core/error.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

#define PAR_N 32768

/* ---- add ----------------------------------------------------------------------- */

void sd_cpu_add_forward(sd_backend *be, float *out, const float *a, const float *b, size_t n) {
    int nt = sd_cpu_nt(be);
#pragma omp parallel for simd num_threads(nt) schedule(static) if (n > PAR_N)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void sd_cpu_add_backward(sd_backend *be, float *da, float *db, const float *dout, size_t n) {
    if (da) sd_cpu_axpy(be, da, 1.0f, dout, n);
    if (db) sd_cpu_axpy(be, db, 1.0f, dout, n);
}

/* out[b, c, :] = inp[b, c, :] + v[b, c] */
void sd_cpu_add_channel_forward(sd_backend *be, float *out, const float *inp, const float *v, int B, int C,
                                int HW) {
    int nt = sd_cpu_nt(be);
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)B * C * HW > PAR_N)
    for (int bc = 0; bc < B * C; bc++) {
        const float *x = inp + (size_t)bc * HW;
        float *y = out + (size_t)bc * HW;
        float s = v[bc];
#pragma omp simd
        for (int i = 0; i < HW; i++) y[i] = x[i] + s;
    }
}

void sd_cpu_add_channel_backward(sd_backend *be, float *dinp, float *dv, const float *dout, int B, int C, int HW) {
    int nt = sd_cpu_nt(be);
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)B * C * HW > PAR_N)
    for (int bc = 0; bc < B * C; bc++) {
        const float *g = dout + (size_t)bc * HW;
        if (dinp) {
            float *dx = dinp + (size_t)bc * HW;
#pragma omp simd
            for (int i = 0; i < HW; i++) dx[i] += g[i];
        }
        if (dv) {
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int i = 0; i < HW; i++) s += g[i];
            dv[bc] += s;
        }
    }
}

/* ---- nearest upsampling ----------------------------------------------------------- */

/* PyTorch's nearest source index (upsample_nearest2d, no scale_factor given):
 * identity, a shift for exact 2x, else min(floor(dst * (float)in/out), in-1). */
static inline int near_src(int o, int in, int out) {
    if (out == in) return o;
    if (out == 2 * in) return o >> 1;
    float scale = (float)in / (float)out;
    int s = (int)floorf((float)o * scale);
    return s < in - 1 ? s : in - 1;
}

void sd_cpu_upsample_forward(sd_backend *be, float *out, const float *inp, int B, int C, int H, int W, int OH,
                             int OW) {
    int nt = sd_cpu_nt(be);
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)B * C * OH * OW > PAR_N)
    for (int bc = 0; bc < B * C; bc++) {
        const float *src = inp + (size_t)bc * H * W;
        float *dst = out + (size_t)bc * OH * OW;
        for (int y = 0; y < OH; y++) {
            const float *sr = src + (size_t)near_src(y, H, OH) * W;
            float *dr = dst + (size_t)y * OW;
            if (OW == 2 * W) {
#pragma omp simd
                for (int x = 0; x < OW; x++) dr[x] = sr[x >> 1];
            } else {
                for (int x = 0; x < OW; x++) dr[x] = sr[near_src(x, W, OW)];
            }
        }
    }
}

void sd_cpu_upsample_backward(sd_backend *be, float *dinp, const float *dout, int B, int C, int H, int W, int OH,
                              int OW) {
    int nt = sd_cpu_nt(be);
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)B * C * OH * OW > PAR_N)
    for (int bc = 0; bc < B * C; bc++) {
        float *dst = dinp + (size_t)bc * H * W;
        const float *src = dout + (size_t)bc * OH * OW;
        for (int y = 0; y < OH; y++) {
            float *dr = dst + (size_t)near_src(y, H, OH) * W;
            const float *sr = src + (size_t)y * OW;
            if (OW == 2 * W) {
#pragma omp simd
                for (int x = 0; x < W; x++) dr[x] += sr[2 * x] + sr[2 * x + 1];
            } else {
                for (int x = 0; x < OW; x++) dr[near_src(x, W, OW)] += sr[x];
            }
        }
    }
}

/* ---- channel concat ----------------------------------------------------------------- */

void sd_cpu_concat_forward(sd_backend *be, float *out, const float *a, const float *b, int B, int C1, int C2,
                           int HW) {
    int nt = sd_cpu_nt(be);
    size_t na = (size_t)C1 * HW, nb = (size_t)C2 * HW;
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)B * (na + nb) > PAR_N)
    for (int i = 0; i < 2 * B; i++) {
        int bi = i / 2;
        float *o = out + (size_t)bi * (na + nb);
        if (i % 2 == 0) memcpy(o, a + bi * na, na * sizeof(float));
        else memcpy(o + na, b + bi * nb, nb * sizeof(float));
    }
}

void sd_cpu_concat_backward(sd_backend *be, float *da, float *db, const float *dout, int B, int C1, int C2,
                            int HW) {
    int nt = sd_cpu_nt(be);
    size_t na = (size_t)C1 * HW, nb = (size_t)C2 * HW;
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)B * (na + nb) > PAR_N)
    for (int i = 0; i < 2 * B; i++) {
        int bi = i / 2;
        const float *g = dout + (size_t)bi * (na + nb);
        if (i % 2 == 0) {
            if (!da) continue;
            float *d = da + bi * na;
#pragma omp simd
            for (size_t j = 0; j < na; j++) d[j] += g[j];
        } else {
            if (!db) continue;
            float *d = db + bi * nb;
            const float *gb = g + na;
#pragma omp simd
            for (size_t j = 0; j < nb; j++) d[j] += gb[j];
        }
    }
}

/* ---- transpose: out[b][s][r] (+)= inp[b][r][s], in 32x32 tiles ----------------------- */

void sd_cpu_transpose(sd_backend *be, float *out, const float *inp, int B, int R, int S, int accumulate) {
    int nt = sd_cpu_nt(be);
    const int T = 32;
    int tr = (R + T - 1) / T, ts = (S + T - 1) / T;
    long long ntiles = (long long)B * tr * ts;
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)B * R * S > PAR_N)
    for (long long it = 0; it < ntiles; it++) {
        int b = (int)(it / ((long long)tr * ts)), rem = (int)(it % ((long long)tr * ts));
        int r0 = rem / ts * T, s0 = rem % ts * T;
        int r1 = r0 + T < R ? r0 + T : R, s1 = s0 + T < S ? s0 + T : S;
        const float *x = inp + (size_t)b * R * S;
        float *y = out + (size_t)b * R * S;
        for (int s = s0; s < s1; s++) {
            float *yr = y + (size_t)s * R;
            if (accumulate)
                for (int r = r0; r < r1; r++) yr[r] += x[(size_t)r * S + s];
            else
                for (int r = r0; r < r1; r++) yr[r] = x[(size_t)r * S + s];
        }
    }
}

/* ---- embeddings --------------------------------------------------------------------- */

/* diffusers get_timestep_embedding: exponent = -ln(max_period) k / (half - shift),
 * arg = t exp(exponent), rows [sin | cos] (halves swapped if flip_sin_to_cos),
 * zero pad for odd dim. Evaluated in double and rounded once: torch's fp32
 * evaluation rounds the argument t*f (up to ~1000 rad) to fp32 first, which
 * moves sin/cos by up to ~6e-5; the double result is the exact value (it is
 * what sd_spec.md's t = 981 test vector holds). */
void sd_cpu_timestep_embedding(sd_backend *be, float *out, const float *t, int B, int dim, int flip_sin_to_cos,
                               float freq_shift, float max_period) {
    (void)be;
    int half = dim / 2;
    double nl = -log((double)max_period), den = (double)half - (double)freq_shift;
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * dim;
        for (int k = 0; k < half; k++) {
            double a = (double)t[b] * exp(nl * k / den);
            float sv = (float)sin(a), cv = (float)cos(a);
            o[k] = flip_sin_to_cos ? cv : sv;
            o[half + k] = flip_sin_to_cos ? sv : cv;
        }
        if (dim % 2) o[dim - 1] = 0.0f;
    }
}

void sd_cpu_embedding_forward(sd_backend *be, float *out, const int32_t *ids, const float *tok, const float *pos,
                              int B, int L, int C, int V) {
    int nt = sd_cpu_nt(be);
    for (long long i = 0; i < (long long)B * L; i++)
        if (ids[i] < 0 || ids[i] >= V) sd_die("sd_embedding_forward: token id %d at %lld outside [0, %d)", ids[i], i, V);
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)B * L * C > PAR_N)
    for (int i = 0; i < B * L; i++) {
        const float *e = tok + (size_t)ids[i] * C, *p = pos ? pos + (size_t)(i % L) * C : NULL;
        float *o = out + (size_t)i * C;
        if (p) {
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
        } else {
            memcpy(o, e, (size_t)C * sizeof(float));
        }
    }
}

/* Rows of dtok may repeat (the same token twice), so threads split channels. */
void sd_cpu_embedding_backward(sd_backend *be, float *dtok, float *dpos, const float *dout, const int32_t *ids,
                               int B, int L, int C, int V) {
    int nt = sd_cpu_nt(be);
    (void)V;
    if ((long long)B * L * C <= PAR_N) nt = 1;
#pragma omp parallel num_threads(nt)
    {
        long long lo, hi;
        sd_cpu_range(C, omp_get_thread_num(), nt, &lo, &hi);
        for (int i = 0; i < B * L; i++) {
            const float *g = dout + (size_t)i * C;
            if (dtok) {
                float *d = dtok + (size_t)ids[i] * C;
                for (long long c = lo; c < hi; c++) d[c] += g[c];
            }
            if (dpos) {
                float *d = dpos + (size_t)(i % L) * C;
                for (long long c = lo; c < hi; c++) d[c] += g[c];
            }
        }
    }
}

/* ---- loss ------------------------------------------------------------------------------ */

/* loss[0] = 1/B sum_b w_b mean_i (pred - target)^2 ; per_sample[b] = mean_i (...)^2 */
void sd_cpu_mse_forward(sd_backend *be, float *loss, float *per_sample, const float *pred, const float *target,
                        const float *weight, int B, size_t n) {
    int nt = sd_cpu_nt(be);
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *p = pred + (size_t)b * n, *t = target + (size_t)b * n;
        double s = 0.0;
#pragma omp parallel for simd num_threads(nt) reduction(+ : s) schedule(static) if (n > PAR_N)
        for (size_t i = 0; i < n; i++) {
            double d = (double)p[i] - (double)t[i];
            s += d * d;
        }
        double m = s / (double)n;
        if (per_sample) per_sample[b] = (float)m;
        total += (weight ? (double)weight[b] : 1.0) * m;
    }
    loss[0] = (float)(total / B);
}

void sd_cpu_mse_backward(sd_backend *be, float *dpred, const float *pred, const float *target,
                         const float *weight, int B, size_t n, float dloss) {
    int nt = sd_cpu_nt(be);
    for (int b = 0; b < B; b++) {
        float k = (float)(2.0 * dloss * (weight ? weight[b] : 1.0f) / ((double)B * (double)n));
        const float *p = pred + (size_t)b * n, *t = target + (size_t)b * n;
        float *d = dpred + (size_t)b * n;
#pragma omp parallel for simd num_threads(nt) schedule(static) if (n > PAR_N)
        for (size_t i = 0; i < n; i++) d[i] += k * (p[i] - t[i]);
    }
}

/* ---- BLAS-1 and reductions ------------------------------------------------------------- */

void sd_cpu_scale(sd_backend *be, float *x, float a, size_t n) {
    int nt = sd_cpu_nt(be);
#pragma omp parallel for simd num_threads(nt) schedule(static) if (n > PAR_N)
    for (size_t i = 0; i < n; i++) x[i] *= a;
}

void sd_cpu_axpy(sd_backend *be, float *y, float a, const float *x, size_t n) {
    int nt = sd_cpu_nt(be);
#pragma omp parallel for simd num_threads(nt) schedule(static) if (n > PAR_N)
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

void sd_cpu_sumsq(sd_backend *be, float *out, const float *x, size_t n) {
    int nt = sd_cpu_nt(be);
    double s = 0.0;
#pragma omp parallel for simd num_threads(nt) reduction(+ : s) schedule(static) if (n > PAR_N)
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    out[0] = (float)s;
}
