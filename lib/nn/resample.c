/* resample.c — checked dispatch of nearest upsampling. */
#include "nn/resample.h"
#include "nn/check.h"

void sd_upsample_nearest_forward(sd_backend *be, float *out, const float *inp, int B, int C, int H, int W, int OH,
                                 int OW) {
    NN_REQUIRE(be && out && inp && out != inp);
    NN_REQUIRE(B > 0 && C > 0 && H > 0 && W > 0 && OH > 0 && OW > 0);
    be->ops->upsample_forward(be, out, inp, B, C, H, W, OH, OW);
}

void sd_upsample_nearest_backward(sd_backend *be, float *dinp, const float *dout, int B, int C, int H, int W, int OH,
                                  int OW) {
    NN_REQUIRE(be && dout && dinp != dout);
    NN_REQUIRE(B > 0 && C > 0 && H > 0 && W > 0 && OH > 0 && OW > 0);
    if (dinp) be->ops->upsample_backward(be, dinp, dout, B, C, H, W, OH, OW);
}
