/* attention.c — checked dispatch of attention. */
#include "nn/attention.h"
#include "nn/check.h"

static void check_desc(const sd_attn_desc *d) {
    NN_REQUIRE(d);
    NN_REQUIRE(d->B > 0 && d->H > 0 && d->Nq > 0 && d->Nk > 0 && d->D > 0);
    NN_REQUIRE(d->ldq >= d->H * d->D && d->ldk >= d->H * d->D && d->ldv >= d->H * d->D && d->ldo >= d->H * d->D);
    NN_REQUIRE(!d->causal || d->Nq == d->Nk);
}

void sd_attention_forward(sd_backend *be, const sd_attn_desc *d, float *out, float *lse, const float *q,
                          const float *k, const float *v) {
    NN_REQUIRE(be && out && lse && q && k && v);
    check_desc(d);
    NN_REQUIRE(out != q && out != k && out != v);
    be->ops->attention_forward(be, d, out, lse, q, k, v);
}

void sd_attention_backward(sd_backend *be, const sd_attn_desc *d, float *dq, float *dk, float *dv,
                           const float *dout, const float *q, const float *k, const float *v, const float *out,
                           const float *lse) {
    NN_REQUIRE(be && dout && q && k && v && out && lse);
    check_desc(d);
    if (!dq && !dk && !dv) return;
    be->ops->attention_backward(be, d, dq, dk, dv, dout, q, k, v, out, lse);
}
