/* loss.c — checked dispatch of the MSE loss. */
#include "nn/loss.h"
#include "nn/check.h"

void sd_mse_forward(sd_backend *be, float *loss, float *per_sample, const float *pred, const float *target,
                    const float *weight, int B, size_t n) {
    NN_REQUIRE(be && loss && pred && target);
    NN_REQUIRE(B > 0 && n > 0);
    be->ops->mse_forward(be, loss, per_sample, pred, target, weight, B, n);
}

void sd_mse_backward(sd_backend *be, float *dpred, const float *pred, const float *target, const float *weight, int B,
                     size_t n, float dloss) {
    NN_REQUIRE(be && pred && target);
    NN_REQUIRE(B > 0 && n > 0);
    if (dpred) be->ops->mse_backward(be, dpred, pred, target, weight, B, n, dloss);
}
