/* norm.c — checked dispatch of GroupNorm and LayerNorm. */
#include "nn/norm.h"
#include "nn/check.h"

void sd_groupnorm_forward(sd_backend *be, float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int B, int C, int HW, int G, float eps, int silu) {
    NN_REQUIRE(be && out && mean && rstd && inp && gamma && beta);
    NN_REQUIRE(B > 0 && C > 0 && HW > 0 && G > 0 && C % G == 0);
    NN_REQUIRE(eps >= 0.0f);
    be->ops->groupnorm_forward(be, out, mean, rstd, inp, gamma, beta, B, C, HW, G, eps, silu);
}

void sd_groupnorm_backward(sd_backend *be, float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *mean, const float *rstd, const float *gamma,
                           const float *beta, int B, int C, int HW, int G, int silu) {
    NN_REQUIRE(be && dout && inp && mean && rstd && gamma);
    NN_REQUIRE(!silu || beta);
    NN_REQUIRE(B > 0 && C > 0 && HW > 0 && G > 0 && C % G == 0);
    NN_REQUIRE(dinp != dout);
    if (!dinp && !dgamma && !dbeta) return;
    be->ops->groupnorm_backward(be, dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, beta, B, C, HW, G, silu);
}

void sd_layernorm_forward(sd_backend *be, float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, int N, int C, float eps) {
    NN_REQUIRE(be && out && mean && rstd && inp && w && b);
    NN_REQUIRE(N > 0 && C > 0 && eps >= 0.0f);
    be->ops->layernorm_forward(be, out, mean, rstd, inp, w, b, N, C, eps);
}

void sd_layernorm_backward(sd_backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                           const float *mean, const float *rstd, const float *w, int N, int C) {
    NN_REQUIRE(be && dout && inp && mean && rstd && w);
    NN_REQUIRE(N > 0 && C > 0);
    NN_REQUIRE(dinp != dout);
    if (!dinp && !dw && !db) return;
    be->ops->layernorm_backward(be, dinp, dw, db, dout, inp, mean, rstd, w, N, C);
}
