/* linear.c — checked dispatch of matmul and Linear to the backend. */
#include "nn/linear.h"
#include "nn/check.h"

void sd_matmul(sd_backend *be, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
               long long strideA, const float *B, int ldb, long long strideB, float beta, float *C, int ldc,
               long long strideC, int batch) {
    NN_REQUIRE(be && A && B && C);
    NN_REQUIRE(M >= 0 && N >= 0 && K >= 0 && batch >= 0);
    NN_REQUIRE(lda >= (transA ? M : K) && lda >= 1);
    NN_REQUIRE(ldb >= (transB ? K : N) && ldb >= 1);
    NN_REQUIRE(ldc >= N && ldc >= 1);
    if (M == 0 || N == 0 || batch == 0) return;
    be->ops->matmul(be, transA, transB, M, N, K, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc, strideC,
                    batch);
}

void sd_linear_forward(sd_backend *be, float *out, const float *inp, const float *w, const float *b, int BT, int C,
                       int OC) {
    NN_REQUIRE(be && out && inp && w);
    NN_REQUIRE(BT > 0 && C > 0 && OC > 0);
    NN_REQUIRE(out != inp);
    be->ops->linear_forward(be, out, inp, w, b, BT, C, OC);
}

void sd_linear_backward(sd_backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, int BT, int C, int OC) {
    NN_REQUIRE(be && dout);
    NN_REQUIRE(BT > 0 && C > 0 && OC > 0);
    NN_REQUIRE(!dw || inp);
    NN_REQUIRE(!dinp || w);
    NN_REQUIRE(dinp != dout);
    if (!dinp && !dw && !db) return;
    be->ops->linear_backward(be, dinp, dw, db, dout, inp, w, BT, C, OC);
}
