/* cpu.h — internals of the CPU backend (not a public header).
 *
 * Threading: every op runs its own OpenMP parallel regions with ctx->nthreads
 * threads. OpenBLAS (the OpenMP build) is used single-threaded
 * (openblas_set_num_threads(1) at creation): sgemm calls happen inside our
 * parallel regions on disjoint pieces of work, which is faster than
 * OpenBLAS's own threading for the mid-sized GEMMs of SD and keeps one thread
 * pool (libgomp) for everything.
 *
 * GEMMs: OpenBLAS for plain matrix products (Linear, 1x1 and im2col convs,
 * the Winograd filter gradient); our register-blocked 8x32 kernel
 * (cpu_kernel.c) where operands can be packed once and reused (Winograd,
 * attention), which removes OpenBLAS's per-call packing.
 *
 * Test knobs, read once at creation (environment): SD_CONV_ALGO, SD_WINO_BLAS,
 * SD_WINO_TC, SD_ATTN_QB (see cpu_backend.c); they change the algorithm or
 * blocking, never the result beyond rounding.
 *
 * Scratch: one grow-only workspace per backend (64-byte aligned). An op asks
 * for all it needs once, at its start, and carves it up; contents are
 * undefined. Ops never nest, so a single buffer suffices.
 */
#ifndef SD_BACKEND_CPU_H
#define SD_BACKEND_CPU_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "backend/backend.h"

typedef struct {
    int nthreads;
    int conv_algo; /* SD_CONV_* */
    int wino_blas; /* Winograd GEMMs through OpenBLAS instead of our kernel (SD_WINO_BLAS=1; for tests) */
    int attn_qb;   /* attention query block override (SD_ATTN_QB; 0 = automatic; for tests) */
    int wino_tc;   /* Winograd tiles per chunk override (SD_WINO_TC; 0 = automatic; for tests) */
    float *ws;
    size_t ws_floats;
} sd_cpu_ctx;

static inline sd_cpu_ctx *sd_cpu(sd_backend *be) { return (sd_cpu_ctx *)be->ctx; }
static inline int sd_cpu_nt(sd_backend *be) { return ((sd_cpu_ctx *)be->ctx)->nthreads; }

/* Workspace of at least n floats (64-byte aligned; contents undefined).
 * Invalidates any pointer from a previous call. */
float *sd_cpu_ws(sd_backend *be, size_t n);
/* Round a float count up to a multiple of 16 (one cache line). */
static inline size_t sd_cpu_pad16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Row-major single-threaded sgemm: C = alpha op(A) op(B) + beta C. */
void sd_cpu_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);
/* The same GEMM split over the backend's threads (by rows of C or columns,
 * whichever is larger). Must be called outside a parallel region. */
void sd_cpu_sgemm_par(sd_backend *be, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* The register-blocked micro-kernel (cpu_kernel.c):
 *   c[i][0..31] (+)= sum_k a[k][i] b[k][0..31] for i < rows (<= 8)
 * a: packed panel [K][8]; b: K rows of 32 floats, row stride ldb; c: row stride ldc. */
#define SD_KMR 8
#define SD_KNR 32
void sd_cpu_gemm_8x32(int K, const float *restrict a, const float *restrict b, size_t ldb, float *restrict c,
                      size_t ldc, int rows, int accumulate);
/* The same with a row-major A: a[i * lda + k]. */
void sd_cpu_gemm_8x32_ar(int K, const float *restrict a, size_t lda, const float *restrict b, size_t ldb,
                         float *restrict c, size_t ldc, int rows, int accumulate);

/* db[cols] += column sums of x[rows, cols] (may use the workspace). */
void sd_cpu_colsum_acc(sd_backend *be, float *db, const float *x, int rows, int cols);
/* db[C] += sum over b and hw of x[B, C, HW] (no workspace). */
void sd_cpu_chansum_acc(sd_backend *be, float *db, const float *x, int B, int C, int HW);

/* [lo, hi) of n items for thread `tid` of `nt`, in contiguous blocks. */
static inline void sd_cpu_range(long long n, int tid, int nt, long long *lo, long long *hi) {
    long long q = n / nt, r = n % nt;
    *lo = tid * q + (tid < r ? tid : r);
    *hi = *lo + q + (tid < r ? 1 : 0);
}

/* ---- vectorizable math ------------------------------------------------------
 * Plain C that GCC vectorizes inside `#pragma omp simd` loops (no libm calls,
 * no errno). exp: Cody-Waite reduction + degree-6 polynomial (coefficients fit
 * by weighted least squares on [-ln2/2, ln2/2]); max relative error ~2 ulp. */
static inline float sd_cpu_bits_to_f(int32_t i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline int32_t sd_cpu_f_to_bits(float f) {
    int32_t i;
    memcpy(&i, &f, 4);
    return i;
}

static inline float sd_cpu_expf(float x) {
    /* clamp so that 2^n stays a normal float: exp(-87.3) ~ 1.2e-38, exp(88.3) ~ 2.2e38 */
    x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    const float shifter = 0x1.8p23f; /* adding it rounds to an integer in the low mantissa bits */
    float t = x * 1.44269504088896341f + shifter;
    int32_t n = sd_cpu_f_to_bits(t) - sd_cpu_f_to_bits(shifter);
    float fn = t - shifter;
    float r = x - fn * 0.693145751953125f; /* ln2 split: hi has 16 significant bits */
    r = r - fn * 1.428606765330187045e-06f;
    /* e^r = 1 + r + r^2 q(r); q fit by relative least squares (max rel err 1.2e-7 in float) */
    float q = 1.3748822966590524e-3f;
    q = q * r + 8.369631133973598e-3f;
    q = q * r + 4.166964814066887e-2f;
    q = q * r + 1.6666512191295624e-1f;
    q = q * r + 4.9999988079071045e-1f;
    float p = 1.0f + r + r * r * q;
    return p * sd_cpu_bits_to_f((int32_t)((uint32_t)(n + 127) << 23)); /* unsigned: NaN inputs give n < -127 */
}

static inline float sd_cpu_sigmoidf(float x) { return 1.0f / (1.0f + sd_cpu_expf(-x)); }

/* erfc(z) for z >= 0 as t*exp(-z^2 + P(t)), t = 1/(1+z/2): the Chebyshev fit
 * of Numerical Recipes (2nd ed., §6.2, "erfcc"), fractional error < 1.2e-7
 * everywhere. erf(x) = sign(x) (1 - erfc(|x|)). */
static inline float sd_cpu_erff(float x) {
    float z = x < 0 ? -x : x;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    float erfc = t * sd_cpu_expf(-z * z + p);
    float r = 1.0f - erfc;
    return x < 0 ? -r : r;
}

#define SD_CPU_SQRT1_2 0.70710678118654752440f
#define SD_CPU_INV_SQRT_2PI 0.39894228040143267794f

/* ---- op implementations (one file per family) ----------------------------- */
void sd_cpu_matmul(sd_backend *be, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                   int lda, long long strideA, const float *B, int ldb, long long strideB, float beta, float *C,
                   int ldc, long long strideC, int batch);
void sd_cpu_linear_forward(sd_backend *be, float *out, const float *inp, const float *w, const float *b, int BT,
                           int C, int OC);
void sd_cpu_linear_backward(sd_backend *be, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int BT, int C, int OC);
void sd_cpu_conv2d_forward(sd_backend *be, const sd_conv2d_desc *d, float *out, const float *inp,
                           const float *w, const float *b);
void sd_cpu_conv2d_backward(sd_backend *be, const sd_conv2d_desc *d, float *dinp, float *dw, float *db,
                            const float *dout, const float *inp, const float *w);
void sd_cpu_groupnorm_forward(sd_backend *be, float *out, float *mean, float *rstd, const float *inp,
                              const float *gamma, const float *beta, int B, int C, int HW, int G, float eps,
                              int silu);
void sd_cpu_groupnorm_backward(sd_backend *be, float *dinp, float *dgamma, float *dbeta, const float *dout,
                               const float *inp, const float *mean, const float *rstd, const float *gamma,
                               const float *beta, int B, int C, int HW, int G, int silu);
void sd_cpu_layernorm_forward(sd_backend *be, float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int N, int C, float eps);
void sd_cpu_layernorm_backward(sd_backend *be, float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *mean, const float *rstd, const float *w, int N,
                               int C);
void sd_cpu_act_forward(sd_backend *be, int act, float *out, const float *inp, size_t n);
void sd_cpu_act_backward(sd_backend *be, int act, float *dinp, const float *dout, const float *inp, size_t n);
void sd_cpu_geglu_forward(sd_backend *be, float *out, const float *inp, int N, int D);
void sd_cpu_geglu_backward(sd_backend *be, float *dinp, const float *dout, const float *inp, int N, int D);
void sd_cpu_softmax_forward(sd_backend *be, float *out, const float *inp, int N, int C);
void sd_cpu_softmax_backward(sd_backend *be, float *dinp, const float *dout, const float *out, int N, int C);
void sd_cpu_attention_forward(sd_backend *be, const sd_attn_desc *d, float *out, float *lse, const float *q,
                              const float *k, const float *v);
void sd_cpu_attention_backward(sd_backend *be, const sd_attn_desc *d, float *dq, float *dk, float *dv,
                               const float *dout, const float *q, const float *k, const float *v,
                               const float *out, const float *lse);
void sd_cpu_add_forward(sd_backend *be, float *out, const float *a, const float *b, size_t n);
void sd_cpu_add_backward(sd_backend *be, float *da, float *db, const float *dout, size_t n);
void sd_cpu_add_channel_forward(sd_backend *be, float *out, const float *inp, const float *v, int B, int C,
                                int HW);
void sd_cpu_add_channel_backward(sd_backend *be, float *dinp, float *dv, const float *dout, int B, int C, int HW);
void sd_cpu_upsample_forward(sd_backend *be, float *out, const float *inp, int B, int C, int H, int W, int OH,
                             int OW);
void sd_cpu_upsample_backward(sd_backend *be, float *dinp, const float *dout, int B, int C, int H, int W, int OH,
                              int OW);
void sd_cpu_concat_forward(sd_backend *be, float *out, const float *a, const float *b, int B, int C1, int C2,
                           int HW);
void sd_cpu_concat_backward(sd_backend *be, float *da, float *db, const float *dout, int B, int C1, int C2,
                            int HW);
void sd_cpu_transpose(sd_backend *be, float *out, const float *inp, int B, int R, int S, int accumulate);
void sd_cpu_timestep_embedding(sd_backend *be, float *out, const float *t, int B, int dim, int flip_sin_to_cos,
                               float freq_shift, float max_period);
void sd_cpu_embedding_forward(sd_backend *be, float *out, const int32_t *ids, const float *tok, const float *pos,
                              int B, int L, int C, int V);
void sd_cpu_embedding_backward(sd_backend *be, float *dtok, float *dpos, const float *dout, const int32_t *ids,
                               int B, int L, int C, int V);
void sd_cpu_mse_forward(sd_backend *be, float *loss, float *per_sample, const float *pred, const float *target,
                        const float *weight, int B, size_t n);
void sd_cpu_mse_backward(sd_backend *be, float *dpred, const float *pred, const float *target,
                         const float *weight, int B, size_t n, float dloss);
void sd_cpu_scale(sd_backend *be, float *x, float a, size_t n);
void sd_cpu_axpy(sd_backend *be, float *y, float a, const float *x, size_t n);
void sd_cpu_sumsq(sd_backend *be, float *out, const float *x, size_t n);

#endif
