/* conv2d.c — checked dispatch of convolution to the backend. */
#include "nn/conv2d.h"
#include "nn/check.h"

static void check_desc(const sd_conv2d_desc *d) {
    NN_REQUIRE(d);
    NN_REQUIRE(d->B > 0 && d->C > 0 && d->H > 0 && d->W > 0 && d->OC > 0);
    NN_REQUIRE(d->KH > 0 && d->KW > 0 && d->stride > 0);
    NN_REQUIRE(d->pad_t >= 0 && d->pad_b >= 0 && d->pad_l >= 0 && d->pad_r >= 0);
    NN_REQUIRE(d->OH == (d->H + d->pad_t + d->pad_b - d->KH) / d->stride + 1);
    NN_REQUIRE(d->OW == (d->W + d->pad_l + d->pad_r - d->KW) / d->stride + 1);
    NN_REQUIRE(d->H + d->pad_t + d->pad_b >= d->KH && d->W + d->pad_l + d->pad_r >= d->KW);
}

void sd_conv2d_forward(sd_backend *be, const sd_conv2d_desc *d, float *out, const float *inp, const float *w,
                       const float *b) {
    NN_REQUIRE(be && out && inp && w);
    check_desc(d);
    NN_REQUIRE(out != inp);
    be->ops->conv2d_forward(be, d, out, inp, w, b);
}

void sd_conv2d_backward(sd_backend *be, const sd_conv2d_desc *d, float *dinp, float *dw, float *db,
                        const float *dout, const float *inp, const float *w) {
    NN_REQUIRE(be && dout);
    check_desc(d);
    NN_REQUIRE(!dw || inp);
    NN_REQUIRE(!dinp || w);
    NN_REQUIRE(dinp != dout);
    if (!dinp && !dw && !db) return;
    be->ops->conv2d_backward(be, d, dinp, dw, db, dout, inp, w);
}
