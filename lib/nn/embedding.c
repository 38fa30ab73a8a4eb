/* embedding.c — checked dispatch of the embeddings. */
#include "nn/embedding.h"
#include "nn/check.h"

void sd_timestep_embedding(sd_backend *be, float *out, const float *t, int B, int dim, int flip_sin_to_cos,
                           float freq_shift, float max_period) {
    NN_REQUIRE(be && out && t);
    NN_REQUIRE(B > 0 && dim >= 2 && max_period > 0.0f);
    NN_REQUIRE((float)(dim / 2) != freq_shift);
    be->ops->timestep_embedding(be, out, t, B, dim, flip_sin_to_cos, freq_shift, max_period);
}

void sd_embedding_forward(sd_backend *be, float *out, const int32_t *ids, const float *tok, const float *pos, int B,
                          int L, int C, int V) {
    NN_REQUIRE(be && out && ids && tok);
    NN_REQUIRE(B > 0 && L > 0 && C > 0 && V > 0);
    be->ops->embedding_forward(be, out, ids, tok, pos, B, L, C, V);
}

void sd_embedding_backward(sd_backend *be, float *dtok, float *dpos, const float *dout, const int32_t *ids, int B,
                           int L, int C, int V) {
    NN_REQUIRE(be && dout && ids);
    NN_REQUIRE(B > 0 && L > 0 && C > 0 && V > 0);
    if (dtok || dpos) be->ops->embedding_backward(be, dtok, dpos, dout, ids, B, L, C, V);
}
