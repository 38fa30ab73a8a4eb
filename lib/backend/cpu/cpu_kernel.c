/* cpu_kernel.c — the register-blocked GEMM micro-kernel shared by the
 * Winograd convolution and attention.
 *
 *   c[i][0..31] (+)= sum_k a[k][i] * b[k][0..31]     i < rows <= 8
 *
 * a is a packed panel of 8 rows ([K][8]: the 8 values of one k adjacent), b is
 * K rows of 32 floats with row stride ldb (a packed panel has ldb = 32). The
 * 8 x 32 accumulator tile is 16 vectors of 16 floats: with AVX-512 these are
 * 16 zmm registers, and one k step is 2 loads, 8 broadcasts and 16 FMAs, so
 * the loop runs at the FMA throughput. Written with GCC vector extensions, so
 * it compiles (less well) for narrower ISAs too. */
#include "backend/cpu/cpu.h"

typedef float sd_v16 __attribute__((vector_size(64)));

static inline sd_v16 v16_load(const float *p) {
    sd_v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void v16_store(float *p, sd_v16 v) { memcpy(p, &v, sizeof v); }

#define KSTORE(i, x0, x1)                                                        \
    if (rows > i) {                                                              \
        float *r = c + (size_t)i * ldc;                                          \
        if (accumulate) {                                                        \
            x0 += v16_load(r);                                                   \
            x1 += v16_load(r + 16);                                              \
        }                                                                        \
        v16_store(r, x0);                                                        \
        v16_store(r + 16, x1);                                                   \
    }

void sd_cpu_gemm_8x32(int K, const float *restrict a, const float *restrict b, size_t ldb, float *restrict c,
                      size_t ldc, int rows, int accumulate) {
    sd_v16 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0};
    sd_v16 c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0}, c60 = {0}, c61 = {0}, c70 = {0}, c71 = {0};
    for (int k = 0; k < K; k++) {
        sd_v16 b0 = v16_load(b), b1 = v16_load(b + 16);
        c00 += a[0] * b0, c01 += a[0] * b1;
        c10 += a[1] * b0, c11 += a[1] * b1;
        c20 += a[2] * b0, c21 += a[2] * b1;
        c30 += a[3] * b0, c31 += a[3] * b1;
        c40 += a[4] * b0, c41 += a[4] * b1;
        c50 += a[5] * b0, c51 += a[5] * b1;
        c60 += a[6] * b0, c61 += a[6] * b1;
        c70 += a[7] * b0, c71 += a[7] * b1;
        a += 8;
        b += ldb;
    }
    KSTORE(0, c00, c01) KSTORE(1, c10, c11) KSTORE(2, c20, c21) KSTORE(3, c30, c31)
    KSTORE(4, c40, c41) KSTORE(5, c50, c51) KSTORE(6, c60, c61) KSTORE(7, c70, c71)
}

/* The same with A read row-major: a[i * lda + k] (rows >= `rows` are not read). */
void sd_cpu_gemm_8x32_ar(int K, const float *restrict a, size_t lda, const float *restrict b, size_t ldb,
                         float *restrict c, size_t ldc, int rows, int accumulate) {
    const float *ar[8];
    for (int i = 0; i < 8; i++) ar[i] = a + (size_t)(i < rows ? i : 0) * lda;
    const float *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3], *a4 = ar[4], *a5 = ar[5], *a6 = ar[6], *a7 = ar[7];
    sd_v16 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0};
    sd_v16 c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0}, c60 = {0}, c61 = {0}, c70 = {0}, c71 = {0};
    for (int k = 0; k < K; k++) {
        sd_v16 b0 = v16_load(b), b1 = v16_load(b + 16);
        c00 += a0[k] * b0, c01 += a0[k] * b1;
        c10 += a1[k] * b0, c11 += a1[k] * b1;
        c20 += a2[k] * b0, c21 += a2[k] * b1;
        c30 += a3[k] * b0, c31 += a3[k] * b1;
        c40 += a4[k] * b0, c41 += a4[k] * b1;
        c50 += a5[k] * b0, c51 += a5[k] * b1;
        c60 += a6[k] * b0, c61 += a6[k] * b1;
        c70 += a7[k] * b0, c71 += a7[k] * b1;
        b += ldb;
    }
    KSTORE(0, c00, c01) KSTORE(1, c10, c11) KSTORE(2, c20, c21) KSTORE(3, c30, c31)
    KSTORE(4, c40, c41) KSTORE(5, c50, c51) KSTORE(6, c60, c61) KSTORE(7, c70, c71)
}
#undef KSTORE
