/* cpu_linear.c — y = x W^T + b and its backward, on sgemm. */
#include "backend/cpu/cpu.h"

#include <omp.h>

/* out[BT, OC] = inp[BT, C] w[OC, C]^T + b[OC] */
void sd_cpu_linear_forward(sd_backend *be, float *out, const float *inp, const float *w, const float *b, int BT,
                           int C, int OC) {
    int nt = sd_cpu_nt(be);
    float beta = 0.0f;
    if (b) {
        /* seed the output with the bias and let the GEMM accumulate onto it:
         * one write pass instead of a zeroing pass plus a bias pass */
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)BT * OC > 65536)
        for (int i = 0; i < BT; i++) memcpy(out + (size_t)i * OC, b, (size_t)OC * sizeof(float));
        beta = 1.0f;
    }
    sd_cpu_sgemm_par(be, 0, 1, BT, OC, C, 1.0f, inp, C, w, C, beta, out, OC);
}

/* db[cols] += sum over rows of x[rows, cols] */
void sd_cpu_colsum_acc(sd_backend *be, float *db, const float *x, int rows, int cols) {
    int nt = sd_cpu_nt(be);
    if (nt == 1 || (long long)rows * cols < 65536) {
        for (int i = 0; i < rows; i++) {
            const float *r = x + (size_t)i * cols;
#pragma omp simd
            for (int j = 0; j < cols; j++) db[j] += r[j];
        }
        return;
    }
    size_t stride = sd_cpu_pad16((size_t)cols);
    float *part = sd_cpu_ws(be, stride * nt);
#pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num();
        float *p = part + stride * tid;
        memset(p, 0, (size_t)cols * sizeof(float));
        long long lo, hi;
        sd_cpu_range(rows, tid, nt, &lo, &hi);
        for (long long i = lo; i < hi; i++) {
            const float *r = x + (size_t)i * cols;
#pragma omp simd
            for (int j = 0; j < cols; j++) p[j] += r[j];
        }
#pragma omp barrier
        sd_cpu_range(cols, tid, nt, &lo, &hi);
        for (int t = 0; t < nt; t++)
            for (long long j = lo; j < hi; j++) db[j] += part[stride * t + j];
    }
}

void sd_cpu_linear_backward(sd_backend *be, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int BT, int C, int OC) {
    /* dinp[BT, C] += dout[BT, OC] w[OC, C] */
    if (dinp) sd_cpu_sgemm_par(be, 0, 0, BT, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp, C);
    /* dw[OC, C] += dout^T inp */
    if (dw) sd_cpu_sgemm_par(be, 1, 0, OC, C, BT, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (db) sd_cpu_colsum_acc(be, db, dout, BT, OC);
}
