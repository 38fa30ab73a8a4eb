/* activation.c — checked dispatch of activations. */
#include "nn/activation.h"
#include "nn/check.h"

static void act_fwd(sd_backend *be, int act, float *out, const float *inp, size_t n) {
    if (!be || !out || !inp) sd_nn_bad_call("sd_<act>_forward", "be && out && inp");
    if (n) be->ops->act_forward(be, act, out, inp, n);
}

static void act_bwd(sd_backend *be, int act, float *dinp, const float *dout, const float *inp, size_t n) {
    if (!be || !dout || !inp) sd_nn_bad_call("sd_<act>_backward", "be && dout && inp");
    if (dinp == dout) sd_nn_bad_call("sd_<act>_backward", "dinp != dout");
    if (n && dinp) be->ops->act_backward(be, act, dinp, dout, inp, n);
}

void sd_silu_forward(sd_backend *be, float *out, const float *inp, size_t n) { act_fwd(be, SD_ACT_SILU, out, inp, n); }
void sd_silu_backward(sd_backend *be, float *dinp, const float *dout, const float *inp, size_t n) {
    act_bwd(be, SD_ACT_SILU, dinp, dout, inp, n);
}
void sd_gelu_forward(sd_backend *be, float *out, const float *inp, size_t n) { act_fwd(be, SD_ACT_GELU, out, inp, n); }
void sd_gelu_backward(sd_backend *be, float *dinp, const float *dout, const float *inp, size_t n) {
    act_bwd(be, SD_ACT_GELU, dinp, dout, inp, n);
}
void sd_quick_gelu_forward(sd_backend *be, float *out, const float *inp, size_t n) {
    act_fwd(be, SD_ACT_QUICK_GELU, out, inp, n);
}
void sd_quick_gelu_backward(sd_backend *be, float *dinp, const float *dout, const float *inp, size_t n) {
    act_bwd(be, SD_ACT_QUICK_GELU, dinp, dout, inp, n);
}

void sd_geglu_forward(sd_backend *be, float *out, const float *inp, int N, int D) {
    NN_REQUIRE(be && out && inp && out != inp);
    NN_REQUIRE(N > 0 && D > 0);
    be->ops->geglu_forward(be, out, inp, N, D);
}

void sd_geglu_backward(sd_backend *be, float *dinp, const float *dout, const float *inp, int N, int D) {
    NN_REQUIRE(be && dout && inp && dinp != dout);
    NN_REQUIRE(N > 0 && D > 0);
    if (dinp) be->ops->geglu_backward(be, dinp, dout, inp, N, D);
}

void sd_softmax_forward(sd_backend *be, float *out, const float *inp, int N, int C) {
    NN_REQUIRE(be && out && inp);
    NN_REQUIRE(N > 0 && C > 0);
    be->ops->softmax_forward(be, out, inp, N, C);
}

void sd_softmax_backward(sd_backend *be, float *dinp, const float *dout, const float *out, int N, int C) {
    NN_REQUIRE(be && dout && out && dinp != dout);
    NN_REQUIRE(N > 0 && C > 0);
    if (dinp) be->ops->softmax_backward(be, dinp, dout, out, N, C);
}
