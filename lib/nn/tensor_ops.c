/* tensor_ops.c — checked dispatch of the small tensor ops. */
#include "nn/tensor_ops.h"
#include "nn/check.h"

void sd_add_forward(sd_backend *be, float *out, const float *a, const float *b, size_t n) {
    NN_REQUIRE(be && out && a && b);
    if (n) be->ops->add_forward(be, out, a, b, n);
}

void sd_add_backward(sd_backend *be, float *da, float *db, const float *dout, size_t n) {
    NN_REQUIRE(be && dout && da != dout && db != dout);
    if (n && (da || db)) be->ops->add_backward(be, da, db, dout, n);
}

void sd_add_channel_forward(sd_backend *be, float *out, const float *inp, const float *v, int B, int C, int HW) {
    NN_REQUIRE(be && out && inp && v);
    NN_REQUIRE(B > 0 && C > 0 && HW > 0);
    be->ops->add_channel_forward(be, out, inp, v, B, C, HW);
}

void sd_add_channel_backward(sd_backend *be, float *dinp, float *dv, const float *dout, int B, int C, int HW) {
    NN_REQUIRE(be && dout && dinp != dout);
    NN_REQUIRE(B > 0 && C > 0 && HW > 0);
    if (dinp || dv) be->ops->add_channel_backward(be, dinp, dv, dout, B, C, HW);
}

void sd_concat_channels_forward(sd_backend *be, float *out, const float *a, const float *b, int B, int C1, int C2,
                                int HW) {
    NN_REQUIRE(be && out && a && b && out != a && out != b);
    NN_REQUIRE(B > 0 && C1 > 0 && C2 > 0 && HW > 0);
    be->ops->concat_forward(be, out, a, b, B, C1, C2, HW);
}

void sd_concat_channels_backward(sd_backend *be, float *da, float *db, const float *dout, int B, int C1, int C2,
                                 int HW) {
    NN_REQUIRE(be && dout && da != dout && db != dout);
    NN_REQUIRE(B > 0 && C1 > 0 && C2 > 0 && HW > 0);
    if (da || db) be->ops->concat_backward(be, da, db, dout, B, C1, C2, HW);
}

void sd_nchw_to_nhwc_forward(sd_backend *be, float *out, const float *inp, int B, int C, int HW) {
    NN_REQUIRE(be && out && inp && out != inp && B > 0 && C > 0 && HW > 0);
    be->ops->transpose(be, out, inp, B, C, HW, 0);
}

void sd_nchw_to_nhwc_backward(sd_backend *be, float *dinp, const float *dout, int B, int C, int HW) {
    NN_REQUIRE(be && dout && dinp != dout && B > 0 && C > 0 && HW > 0);
    if (dinp) be->ops->transpose(be, dinp, dout, B, HW, C, 1);
}

void sd_nhwc_to_nchw_forward(sd_backend *be, float *out, const float *inp, int B, int C, int HW) {
    NN_REQUIRE(be && out && inp && out != inp && B > 0 && C > 0 && HW > 0);
    be->ops->transpose(be, out, inp, B, HW, C, 0);
}

void sd_nhwc_to_nchw_backward(sd_backend *be, float *dinp, const float *dout, int B, int C, int HW) {
    NN_REQUIRE(be && dout && dinp != dout && B > 0 && C > 0 && HW > 0);
    if (dinp) be->ops->transpose(be, dinp, dout, B, C, HW, 1);
}

void sd_scale(sd_backend *be, float *x, float a, size_t n) {
    NN_REQUIRE(be && x);
    if (n) be->ops->scale(be, x, a, n);
}

void sd_axpy(sd_backend *be, float *y, float a, const float *x, size_t n) {
    NN_REQUIRE(be && y && x);
    if (n) be->ops->axpy(be, y, a, x, n);
}

void sd_sumsq(sd_backend *be, float *out, const float *x, size_t n) {
    NN_REQUIRE(be && out && x);
    be->ops->sumsq(be, out, x, n);
}
