/* cpu_attn.c — multi-head scaled dot-product attention, query-block tiled.
 *
 * Work is cut into items (image b, head h, block of QB query rows). An item
 * computes its QB x Nk score block with one sgemm, an exact row softmax (the
 * whole key range is in the block, so no online rescaling is needed), and
 * P V with a second sgemm. Memory per thread is QB x Nk floats: at 64x64
 * latents (N = 4096) that is 1 MB, never the N x N matrix of a head.
 *
 * Backward (FlashAttention-2 style): the forward saved lse = log-sum-exp of
 * each scaled score row; an item recomputes P = exp(S - lse), then
 *   dP = dO V^T, dS = P (.) (dP - rowsum(dO (.) O)) * scale,
 *   dQ += dS K, dK += dS^T Q, dV += P^T dO.
 * dK/dV of a head are summed over its query blocks: threads own whole heads
 * when there are enough (b, h) pairs, otherwise each thread sums into a
 * private dK/dV which are added up at the end (the VAE's single head).
 */
#include "backend/cpu/cpu.h"

#include <math.h>
#include <omp.h>

#define QB 64

typedef struct {
    const float *q, *k, *v, *o;
    float *dq, *dk, *dv;
    const float *dout;
} attn_ptrs;

/* Scaled scores of rows [i0, i1) of head (b, h) against keys [0, kn) into S[m, kn]. */
static void scores(const sd_attn_desc *d, const float *q, const float *k, int b, int h, int i0, int m, int kn,
                   float *S) {
    const float *Qp = q + ((size_t)b * d->Nq + i0) * d->ldq + (size_t)h * d->D;
    const float *Kp = k + (size_t)b * d->Nk * d->ldk + (size_t)h * d->D;
    sd_cpu_sgemm(0, 1, m, kn, d->D, d->scale, Qp, d->ldq, Kp, d->ldk, 0.0f, S, kn);
}

static void forward_item(const sd_attn_desc *d, float *out, float *lse, const float *q, const float *k,
                         const float *v, int b, int h, int qb, float *S) {
    int i0 = qb * QB, i1 = i0 + QB < d->Nq ? i0 + QB : d->Nq, m = i1 - i0;
    int kn = d->causal ? i1 : d->Nk;
    scores(d, q, k, b, h, i0, m, kn, S);
    float *L = lse + ((size_t)b * d->H + h) * d->Nq + i0;
    for (int r = 0; r < m; r++) {
        float *s = S + (size_t)r * kn;
        int nv = d->causal ? i0 + r + 1 : kn;
        float mx = -INFINITY;
        for (int j = 0; j < nv; j++) mx = s[j] > mx ? s[j] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < nv; j++) {
            float e = sd_cpu_expf(s[j] - mx);
            s[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
#pragma omp simd
        for (int j = 0; j < nv; j++) s[j] *= inv;
        for (int j = nv; j < kn; j++) s[j] = 0.0f;
        L[r] = mx + logf(sum);
    }
    const float *Vp = v + (size_t)b * d->Nk * d->ldv + (size_t)h * d->D;
    float *Op = out + ((size_t)b * d->Nq + i0) * d->ldo + (size_t)h * d->D;
    sd_cpu_sgemm(0, 0, m, d->D, kn, 1.0f, S, kn, Vp, d->ldv, 0.0f, Op, d->ldo);
}

void sd_cpu_attention_forward(sd_backend *be, const sd_attn_desc *d, float *out, float *lse, const float *q,
                              const float *k, const float *v) {
    int nt = sd_cpu_nt(be);
    int nqb = (d->Nq + QB - 1) / QB;
    long long items = (long long)d->B * d->H * nqb;
    if (items < nt) nt = (int)items;
    size_t per = sd_cpu_pad16((size_t)QB * d->Nk);
    float *ws = sd_cpu_ws(be, per * nt);
#pragma omp parallel num_threads(nt)
    {
        float *S = ws + per * omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
        for (long long it = 0; it < items; it++) {
            int qb = (int)(it % nqb), bh = (int)(it / nqb);
            forward_item(d, out, lse, q, k, v, bh / d->H, bh % d->H, qb, S);
        }
    }
}

/* One query block of the backward; dk/dv point at the head's (or a private)
 * accumulator with row strides ldk/ldv. */
static void backward_item(const sd_attn_desc *d, const attn_ptrs *p, const float *lse, int b, int h, int qb,
                          float *dk, int ldk, float *dv, int ldv, float *S, float *dP) {
    int i0 = qb * QB, i1 = i0 + QB < d->Nq ? i0 + QB : d->Nq, m = i1 - i0;
    int kn = d->causal ? i1 : d->Nk;
    const size_t hoff = (size_t)h * d->D;
    const float *Qp = p->q + ((size_t)b * d->Nq + i0) * d->ldq + hoff;
    const float *Kp = p->k + (size_t)b * d->Nk * d->ldk + hoff;
    const float *Vp = p->v + (size_t)b * d->Nk * d->ldv + hoff;
    const float *Op = p->o + ((size_t)b * d->Nq + i0) * d->ldo + hoff;
    const float *dOp = p->dout + ((size_t)b * d->Nq + i0) * d->ldo + hoff;
    const float *L = lse + ((size_t)b * d->H + h) * d->Nq + i0;

    scores(d, p->q, p->k, b, h, i0, m, kn, S);
    /* dP = dO V^T */
    sd_cpu_sgemm(0, 1, m, kn, d->D, 1.0f, dOp, d->ldo, Vp, d->ldv, 0.0f, dP, kn);
    for (int r = 0; r < m; r++) {
        float *s = S + (size_t)r * kn, *dp = dP + (size_t)r * kn;
        const float *o = Op + (size_t)r * d->ldo, *go = dOp + (size_t)r * d->ldo;
        float Di = 0.0f;
        for (int c = 0; c < d->D; c++) Di += o[c] * go[c];
        int nv = d->causal ? i0 + r + 1 : kn;
        float l = L[r], sc = d->scale;
#pragma omp simd
        for (int j = 0; j < nv; j++) {
            float pj = sd_cpu_expf(s[j] - l);
            s[j] = pj;
            dp[j] = pj * (dp[j] - Di) * sc;
        }
        for (int j = nv; j < kn; j++) s[j] = 0.0f, dp[j] = 0.0f;
    }
    if (p->dq) { /* dQ += dS K */
        float *dQp = p->dq + ((size_t)b * d->Nq + i0) * d->ldq + hoff;
        sd_cpu_sgemm(0, 0, m, d->D, kn, 1.0f, dP, kn, Kp, d->ldk, 1.0f, dQp, d->ldq);
    }
    if (dk) sd_cpu_sgemm(1, 0, kn, d->D, m, 1.0f, dP, kn, Qp, d->ldq, 1.0f, dk, ldk); /* dK += dS^T Q */
    if (dv) sd_cpu_sgemm(1, 0, kn, d->D, m, 1.0f, S, kn, dOp, d->ldo, 1.0f, dv, ldv);  /* dV += P^T dO */
}

void sd_cpu_attention_backward(sd_backend *be, const sd_attn_desc *d, float *dq, float *dk, float *dv,
                               const float *dout, const float *q, const float *k, const float *v,
                               const float *out, const float *lse) {
    if (!dq && !dk && !dv) return;
    int nt = sd_cpu_nt(be);
    int nqb = (d->Nq + QB - 1) / QB;
    int BH = d->B * d->H;
    attn_ptrs p = {q, k, v, out, dq, dk, dv, dout};
    size_t blk = sd_cpu_pad16((size_t)QB * d->Nk);
    if (BH >= nt || nqb == 1) {
        /* threads own whole heads: no two threads touch the same dK/dV rows */
        if (BH < nt) nt = BH;
        float *ws = sd_cpu_ws(be, 2 * blk * nt);
#pragma omp parallel num_threads(nt)
        {
            float *S = ws + 2 * blk * omp_get_thread_num(), *dP = S + blk;
#pragma omp for schedule(dynamic, 1)
            for (int bh = 0; bh < BH; bh++) {
                int b = bh / d->H, h = bh % d->H;
                size_t hoff = (size_t)h * d->D;
                float *dKp = dk ? dk + (size_t)b * d->Nk * d->ldk + hoff : NULL;
                float *dVp = dv ? dv + (size_t)b * d->Nk * d->ldv + hoff : NULL;
                for (int qb = 0; qb < nqb; qb++) backward_item(d, &p, lse, b, h, qb, dKp, d->ldk, dVp, d->ldv, S, dP);
            }
        }
        return;
    }
    /* few heads, many query blocks: split the blocks, private dK/dV per thread */
    if (nqb < nt) nt = nqb;
    size_t acc = sd_cpu_pad16((size_t)d->Nk * d->D);
    size_t per = 2 * blk + 2 * acc;
    float *ws = sd_cpu_ws(be, per * nt);
    for (int bh = 0; bh < BH; bh++) {
        int b = bh / d->H, h = bh % d->H;
        size_t hoff = (size_t)h * d->D;
#pragma omp parallel num_threads(nt)
        {
            int tid = omp_get_thread_num();
            float *S = ws + per * tid, *dP = S + blk, *pk = dP + blk, *pv = pk + acc;
            memset(pk, 0, 2 * acc * sizeof(float));
#pragma omp for schedule(dynamic, 1)
            for (int qb = 0; qb < nqb; qb++)
                backward_item(d, &p, lse, b, h, qb, dk ? pk : NULL, d->D, dv ? pv : NULL, d->D, S, dP);
            /* implicit barrier; now reduce the private sums by key rows */
            long long lo, hi;
            sd_cpu_range(d->Nk, tid, nt, &lo, &hi);
            for (int t = 0; t < nt; t++) {
                const float *qk = ws + per * t + 2 * blk, *qv = qk + acc;
                for (long long j = lo; j < hi; j++) {
                    float *rk = dk ? dk + ((size_t)b * d->Nk + j) * d->ldk + hoff : NULL;
                    float *rv = dv ? dv + ((size_t)b * d->Nk + j) * d->ldv + hoff : NULL;
                    for (int c = 0; c < d->D; c++) {
                        if (rk) rk[c] += qk[(size_t)j * d->D + c];
                        if (rv) rv[c] += qv[(size_t)j * d->D + c];
                    }
                }
            }
        }
    }
}
