/* linear.h — matmul and Linear (y = x W^T + b), forward and backward.
 *
 * Conventions shared by every lib/nn header:
 *  - All pointers are device pointers of `be` (host pointers on the CPU).
 *  - Shapes are given in comments as [dims], row-major.
 *  - Forward ops OVERWRITE their outputs.
 *  - Backward ops ACCUMULATE (+=) into EVERY gradient output, input gradients
 *    and parameter gradients alike (llm.c style): the caller zeroes gradient
 *    buffers once (sd_backend_zero) and residual branches, shared parameters,
 *    gradient accumulation and skip connections then just work. A NULL
 *    gradient output is skipped, and so is its work (frozen weights: dw = NULL;
 *    the first layer: dinp = NULL). A gradient output must not alias any
 *    input of the same call.
 *  - Each backward lists the saved activations it reads; anything else from
 *    the forward may be freed, or recomputed (gradient checkpointing).
 */
#ifndef SD_NN_LINEAR_H
#define SD_NN_LINEAR_H

#include "backend/backend.h"

/* Strided batched GEMM, row-major, for i in [0, batch):
 *   C_i = alpha * op(A_i) op(B_i) + beta * C_i,   X_i = X + i * strideX
 * op(A) is [M, K]: A is [M, lda>=K] if !transA, else A is [K, lda>=M].
 * op(B) is [K, N]: B is [K, ldb>=N] if !transB, else B is [N, ldb>=K].
 * C is [M, ldc>=N]. beta == 0 ignores C's old contents (NaNs included). */
void sd_matmul(sd_backend *be, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
               long long strideA, const float *B, int ldb, long long strideB, float beta, float *C, int ldc,
               long long strideC, int batch);

/* out[BT, OC] = inp[BT, C] w[OC, C]^T + b[OC]      (b may be NULL: no bias)
 * BT = all leading dims flattened (batch * tokens). */
void sd_linear_forward(sd_backend *be, float *out, const float *inp, const float *w, const float *b, int BT, int C,
                       int OC);

/* dinp[BT, C] += dout w;  dw[OC, C] += dout^T inp;  db[OC] += sum_rows dout.
 * Reads: inp (only if dw), w (only if dinp). */
void sd_linear_backward(sd_backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, int BT, int C, int OC);

#endif
