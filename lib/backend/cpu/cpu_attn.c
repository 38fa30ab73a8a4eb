/* cpu_attn.c — multi-head scaled dot-product attention, query-block tiled,
 * on the register-blocked micro-kernel (cpu_kernel.c).
 *
 * Work is cut by head (b, h) and by blocks of QB queries (32..256, attn_qb). Per head, K and
 * V are packed once into the kernel's panel layouts; per query block the whole
 * key range is processed at once, so the row softmax is exact (no online
 * rescaling) and memory per thread is O(QB x Nk): ~256 KB blocks, never
 * the N x N matrix of a head.
 *
 * Forward, in the transposed orientation so that no score block is ever
 * transposed:  S^T = K Q^T * scale  [Nk x QB]  (A = K in 8-key panels,
 * B = Q^T block);  column softmax (over keys, vectorized across the
 * queries);  O^T = V^T P^T  [D x QB]  (A = V^T in 8-dim panels, B = the
 * unnormalized P^T block, rescaled by 1/sum afterwards). lse = max + log(sum)
 * per query is saved for the backward.
 *
 * Backward (FlashAttention-2 style), in the S orientation:
 *   S = Q K^T * scale [QB x Nk], P = exp(S - lse), dP = dO V^T,
 *   dS = P (.) (dP - rowsum(dO (.) O)) * scale,
 *   dV^T += dO^T P,  dK^T += Q^T dS   (per-head accumulators, K-dim = QB),
 *   dQ    = dS K                      (A read row-major from dS: no transpose).
 * Threads own whole heads when there are at least as many (b, h) pairs as
 * threads; otherwise (the VAE's single head) they split the query blocks of
 * each head and keep private dK/dV accumulators that are summed at the end.
 */
#include "backend/cpu/cpu.h"

#include <math.h>
#include <omp.h>

#define MR SD_KMR
#define NR SD_KNR
#define QB_MAX 256

static inline int rup(int x, int m) { return (x + m - 1) / m * m; }

/* Queries per block: a multiple of 32 (the kernel's B width) chosen so a
 * QB x Nk score block stays near 256 KB (in L2 next to its partner block):
 * 32 at Nk = 4096, 64 at 1024, 256 for cross-attention's 77 keys. Larger
 * blocks amortize the per-block packing and lengthen the K = QB GEMMs of dK/dV. */
static int attn_qb(sd_backend *be, const sd_attn_desc *d) {
    int qb = sd_cpu(be)->attn_qb > 0 ? rup(sd_cpu(be)->attn_qb, NR) : 65536 / rup(d->Nk, NR) / NR * NR;
    if (qb < NR) qb = NR;
    if (qb > QB_MAX) qb = QB_MAX;
    if (qb > rup(d->Nq, NR)) qb = rup(d->Nq, NR);
    return qb;
}

/* Heads read D-float slices of rows that are ld floats apart, a pattern the
 * hardware prefetchers do not follow: fetch a block's slices ahead. */
static void prefetch_rows(const float *x, int ld, int n, int D) {
    for (int r = 0; r < n; r++) {
        const char *p = (const char *)(x + (size_t)r * ld);
        for (int off = 0; off < D * 4; off += 64) __builtin_prefetch(p + off, 0, 1);
    }
}

/* ---- packing ------------------------------------------------------------------------ */

/* Rows of X as A panels: out[p][d][i] = scale * X[8p+i][d] for 8p+i < nvalid,
 * else 0; np panels, d < D. */
static void pack_rows8(const float *X, int ld, int nvalid, int np, int D, float scale, float *out) {
    for (int p = 0; p < np; p++) {
        const float *x[MR];
        int valid[MR];
        for (int i = 0; i < MR; i++) {
            int r = p * MR + i;
            valid[i] = r < nvalid;
            x[i] = X + (size_t)(valid[i] ? r : 0) * ld;
        }
        float *o = out + (size_t)p * D * MR;
        for (int dd = 0; dd < D; dd++)
            for (int i = 0; i < MR; i++) o[(size_t)dd * MR + i] = valid[i] ? scale * x[i][dd] : 0.0f;
    }
}

/* Columns of X as A panels: out[p][k][i] = X[k][8p+i] for k < K (rows k >=
 * nvalid are 0), columns 8p+i >= D are 0. ceil(D/8) panels. */
static void pack_cols8(const float *X, int ld, int K, int nvalid, int D, float *out) {
    int np = (D + MR - 1) / MR;
    for (int k = 0; k < K; k++) {
        const float *x = X + (size_t)k * ld;
        for (int p = 0; p < np; p++) {
            float *o = out + ((size_t)p * K + k) * MR;
            for (int i = 0; i < MR; i++) {
                int d = p * MR + i;
                o[i] = (k < nvalid && d < D) ? x[d] : 0.0f;
            }
        }
    }
}

/* Rows of X transposed into B panels of 32: out[q][d][j] = scale * X[32q+j][d]
 * (0 for rows >= nvalid); nq panels, d < D. */
static void pack_t32(const float *X, int ld, int nvalid, int nq, int D, float scale, float *out) {
    for (int q = 0; q < nq; q++)
        for (int j = 0; j < NR; j++) {
            int r = q * NR + j;
            float *o = out + (size_t)q * D * NR + j;
            if (r < nvalid) {
                const float *x = X + (size_t)r * ld;
                for (int d = 0; d < D; d++) o[(size_t)d * NR] = scale * x[d];
            } else {
                for (int d = 0; d < D; d++) o[(size_t)d * NR] = 0.0f;
            }
        }
}

/* ---- forward ------------------------------------------------------------------------------ */

typedef struct {
    float *Kp, *Vtp; /* per head: K in 8-key panels [Nk8/8][D][8], V^T in 8-dim panels [D8/8][Nk][8] */
} head_pack;

static size_t fwd_pack_floats(const sd_attn_desc *d) {
    return sd_cpu_pad16((size_t)rup(d->Nk, MR) * d->D) + sd_cpu_pad16((size_t)rup(d->D, MR) * d->Nk);
}
static size_t fwd_block_floats(const sd_attn_desc *d, int QB) {
    return sd_cpu_pad16((size_t)d->D * QB) + sd_cpu_pad16((size_t)rup(d->Nk, MR) * QB) +
           sd_cpu_pad16((size_t)rup(d->D, MR) * QB);
}

static void fwd_pack(const sd_attn_desc *d, const float *k, const float *v, int b, int h, head_pack *hp) {
    const float *Kb = k + (size_t)b * d->Nk * d->ldk + (size_t)h * d->D;
    const float *Vb = v + (size_t)b * d->Nk * d->ldv + (size_t)h * d->D;
    pack_rows8(Kb, d->ldk, d->Nk, rup(d->Nk, MR) / MR, d->D, 1.0f, hp->Kp);
    pack_cols8(Vb, d->ldv, d->Nk, d->Nk, d->D, hp->Vtp);
}

static void fwd_block(const sd_attn_desc *d, int QB, const head_pack *hp, float *out, float *lse, const float *q,
                      int b, int h, int qb, float *scratch) {
    const int D = d->D, D8 = rup(D, MR), Nk8 = rup(d->Nk, MR);
    const int q0 = qb * QB, m = d->Nq - q0 < QB ? d->Nq - q0 : QB, nbv = (m + NR - 1) / NR;
    const int kn = d->causal ? (q0 + m < d->Nk ? q0 + m : d->Nk) : d->Nk;
    float *Qt = scratch, *St = Qt + sd_cpu_pad16((size_t)D * QB), *Ot = St + sd_cpu_pad16((size_t)Nk8 * QB);
    prefetch_rows(q + ((size_t)b * d->Nq + q0) * d->ldq + (size_t)h * D, d->ldq, m, D);
    pack_t32(q + ((size_t)b * d->Nq + q0) * d->ldq + (size_t)h * D, d->ldq, m, nbv, D, d->scale, Qt);
    /* S^T = K Q^T (scaled): [kn8 x 32*nbv], row stride QB */
    int npk = (kn + MR - 1) / MR;
    for (int p = 0; p < npk; p++)
        for (int c = 0; c < nbv; c++)
            sd_cpu_gemm_8x32(D, hp->Kp + (size_t)p * D * MR, Qt + (size_t)c * D * NR, NR,
                             St + (size_t)p * MR * QB + (size_t)c * NR, QB, MR, 0);
    /* column softmax over keys k < kn (causal: key k visible to query column j iff k <= q0 + j) */
    const int W = nbv * NR;
    float mx[QB_MAX], sum[QB_MAX];
    for (int j = 0; j < W; j++) mx[j] = -INFINITY, sum[j] = 0.0f;
    if (!d->causal) {
        for (int kk = 0; kk < kn; kk++) {
            const float *sr = St + (size_t)kk * QB;
#pragma omp simd
            for (int j = 0; j < W; j++) mx[j] = sr[j] > mx[j] ? sr[j] : mx[j];
        }
        for (int kk = 0; kk < kn; kk++) {
            float *sr = St + (size_t)kk * QB;
#pragma omp simd
            for (int j = 0; j < W; j++) {
                float e = sd_cpu_expf(sr[j] - mx[j]);
                sr[j] = e;
                sum[j] += e;
            }
        }
    } else {
        for (int kk = 0; kk < kn; kk++) {
            const float *sr = St + (size_t)kk * QB;
            int jlo = kk > q0 ? kk - q0 : 0;
#pragma omp simd
            for (int j = 0; j < W; j++) mx[j] = (j >= jlo && sr[j] > mx[j]) ? sr[j] : mx[j];
        }
        for (int kk = 0; kk < kn; kk++) {
            float *sr = St + (size_t)kk * QB;
            int jlo = kk > q0 ? kk - q0 : 0;
#pragma omp simd
            for (int j = 0; j < W; j++) {
                float e = j >= jlo ? sd_cpu_expf(sr[j] - mx[j]) : 0.0f;
                sr[j] = e;
                sum[j] += e;
            }
        }
    }
    /* O^T = V^T P^T (unnormalized); causal: query panel c needs keys < q0 + 32(c+1) only */
    for (int p = 0; p < D8 / MR; p++)
        for (int c = 0; c < nbv; c++) {
            int kc = d->causal && q0 + (c + 1) * NR < kn ? q0 + (c + 1) * NR : kn;
            sd_cpu_gemm_8x32(kc, hp->Vtp + (size_t)p * d->Nk * MR, St + (size_t)c * NR, QB,
                             Ot + (size_t)p * MR * QB + (size_t)c * NR, QB, MR, 0);
        }
    float *L = lse + ((size_t)b * d->H + h) * d->Nq + q0;
    for (int j = 0; j < m; j++) {
        float inv = 1.0f / sum[j];
        L[j] = mx[j] + logf(sum[j]);
        float *o = out + ((size_t)b * d->Nq + q0 + j) * d->ldo + (size_t)h * D;
        const float *src = Ot + j;
#pragma omp simd
        for (int c = 0; c < D; c++) o[c] = src[(size_t)c * QB] * inv;
    }
}

void sd_cpu_attention_forward(sd_backend *be, const sd_attn_desc *d, float *out, float *lse, const float *q,
                              const float *k, const float *v) {
    int nt = sd_cpu_nt(be);
    const int QB = attn_qb(be, d), nqb = (d->Nq + QB - 1) / QB, BH = d->B * d->H;
    const size_t packf = fwd_pack_floats(d), blockf = fwd_block_floats(d, QB);
    const size_t kpf = sd_cpu_pad16((size_t)rup(d->Nk, MR) * d->D);
    if (BH >= nt || nqb == 1) {
        if (BH < nt) nt = BH;
        float *ws = sd_cpu_ws(be, (packf + blockf) * nt);
#pragma omp parallel num_threads(nt)
        {
            float *mine = ws + (packf + blockf) * omp_get_thread_num();
            head_pack hp = {mine, mine + kpf};
#pragma omp for schedule(dynamic, 1)
            for (int bh = 0; bh < BH; bh++) {
                fwd_pack(d, k, v, bh / d->H, bh % d->H, &hp);
                for (int qb = 0; qb < nqb; qb++) fwd_block(d, QB, &hp, out, lse, q, bh / d->H, bh % d->H, qb, mine + packf);
            }
        }
        return;
    }
    /* few heads: pack each head once, split its query blocks over the threads */
    if (nqb < nt) nt = nqb;
    float *ws = sd_cpu_ws(be, packf + blockf * nt);
    head_pack hp = {ws, ws + kpf};
    for (int bh = 0; bh < BH; bh++) {
        fwd_pack(d, k, v, bh / d->H, bh % d->H, &hp);
#pragma omp parallel num_threads(nt)
        {
            float *mine = ws + packf + blockf * omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
            for (int qb = 0; qb < nqb; qb++) fwd_block(d, QB, &hp, out, lse, q, bh / d->H, bh % d->H, qb, mine);
        }
    }
}

/* ---- backward ------------------------------------------------------------------------------ */

typedef struct {
    float *Kt32, *Vt32, *K32; /* B panels of K^T and V^T (32 keys); K in B panels of 32 dims [D32/32][Nk][32] */
} bwd_pack;

typedef struct {
    size_t kt32, k32, acc, qa, qb, s, dq;
} bwd_sizes;

static bwd_sizes bwd_size(const sd_attn_desc *d, int QB) {
    const int D8 = rup(d->D, MR), Nk32 = rup(d->Nk, NR);
    bwd_sizes z;
    z.kt32 = sd_cpu_pad16((size_t)Nk32 * d->D);
    z.k32 = sd_cpu_pad16((size_t)rup(d->D, NR) * d->Nk);
    z.acc = sd_cpu_pad16((size_t)D8 * Nk32); /* dK^T or dV^T accumulator */
    z.qa = sd_cpu_pad16((size_t)QB * d->D);
    z.qb = sd_cpu_pad16((size_t)D8 * QB);
    z.s = sd_cpu_pad16((size_t)QB * Nk32);
    z.dq = sd_cpu_pad16((size_t)QB * rup(d->D, NR));
    return z;
}
static size_t bwd_pack_floats(const bwd_sizes *z) { return 2 * z->kt32 + z->k32; }
/* per thread: accumulators dKt, dVt, then the block buffers */
static size_t bwd_thread_floats(const bwd_sizes *z) {
    return 2 * z->acc + 2 * z->qa + 2 * z->qb + 2 * z->s + z->dq;
}

static void bwd_pack_head(const sd_attn_desc *d, const float *k, const float *v, int b, int h, bwd_pack *bp) {
    const float *Kb = k + (size_t)b * d->Nk * d->ldk + (size_t)h * d->D;
    const float *Vb = v + (size_t)b * d->Nk * d->ldv + (size_t)h * d->D;
    int nkq = rup(d->Nk, NR) / NR;
    pack_t32(Kb, d->ldk, d->Nk, nkq, d->D, 1.0f, bp->Kt32);
    pack_t32(Vb, d->ldv, d->Nk, nkq, d->D, 1.0f, bp->Vt32);
    /* K32[c][k][j] = K[k][32c + j] (0 beyond D) */
    int nc = rup(d->D, NR) / NR;
    for (int c = 0; c < nc; c++)
        for (int kk = 0; kk < d->Nk; kk++) {
            float *o = bp->K32 + ((size_t)c * d->Nk + kk) * NR;
            const float *x = Kb + (size_t)kk * d->ldk + c * NR;
            int n = d->D - c * NR < NR ? d->D - c * NR : NR;
            memcpy(o, x, (size_t)n * sizeof(float));
            for (int j = n; j < NR; j++) o[j] = 0.0f;
        }
}

typedef struct {
    const float *q, *k, *v, *o, *dout, *lse;
    float *dq, *dk, *dv;
} bwd_args;

/* One query block; accumulates into dKt/dVt ([D8][Nk32], transposed) and dq. */
static void bwd_block(const sd_attn_desc *d, int QB, const bwd_args *a, const bwd_pack *bp, const bwd_sizes *z, int b,
                      int h, int qb, float *dKt, float *dVt, float *scratch) {
    const int D = d->D, D8 = rup(D, MR), Nk32 = rup(d->Nk, NR);
    const int q0 = qb * QB, m = d->Nq - q0 < QB ? d->Nq - q0 : QB, mq = rup(m, MR);
    const int kn = d->causal ? (q0 + m < d->Nk ? q0 + m : d->Nk) : d->Nk;
    const int nkq = (kn + NR - 1) / NR, kn32 = nkq * NR;
    const size_t hoff = (size_t)h * D;
    const float *Qb_ = a->q + ((size_t)b * d->Nq + q0) * d->ldq + hoff;
    const float *dOb_ = a->dout + ((size_t)b * d->Nq + q0) * d->ldo + hoff;
    const float *Ob_ = a->o + ((size_t)b * d->Nq + q0) * d->ldo + hoff;
    const float *L = a->lse + ((size_t)b * d->H + h) * d->Nq + q0;
    float *Qa = scratch, *dOa = Qa + z->qa, *Qbp = dOa + z->qa, *dObp = Qbp + z->qb;
    float *S = dObp + z->qb, *dP = S + z->s, *dQb = dP + z->s;

    const int npq = (m + MR - 1) / MR; /* 8-query panels holding valid queries */
    prefetch_rows(Qb_, d->ldq, m, D);
    prefetch_rows(dOb_, d->ldo, m, D);
    prefetch_rows(Ob_, d->ldo, m, D);
    if (a->dq) prefetch_rows(a->dq + ((size_t)b * d->Nq + q0) * d->ldq + hoff, d->ldq, m, D);
    pack_rows8(Qb_, d->ldq, m, npq, D, d->scale, Qa);
    pack_rows8(dOb_, d->ldo, m, npq, D, 1.0f, dOa);
    /* S = Q K^T * scale and dP = dO V^T, [QB x kn32] with row stride Nk32 */
    for (int p = 0; p < npq; p++)
        for (int c = 0; c < nkq; c++) {
            sd_cpu_gemm_8x32(D, Qa + (size_t)p * D * MR, bp->Kt32 + (size_t)c * D * NR, NR,
                             S + (size_t)p * MR * Nk32 + (size_t)c * NR, Nk32, MR, 0);
            sd_cpu_gemm_8x32(D, dOa + (size_t)p * D * MR, bp->Vt32 + (size_t)c * D * NR, NR,
                             dP + (size_t)p * MR * Nk32 + (size_t)c * NR, Nk32, MR, 0);
        }
    /* P = exp(S - lse), dS = P (dP - D_i) * scale; zero outside the valid block */
    for (int j = 0; j < mq; j++) {
        float *s = S + (size_t)j * Nk32, *dp = dP + (size_t)j * Nk32;
        if (j >= m) {
            memset(s, 0, (size_t)kn32 * sizeof(float));
            memset(dp, 0, (size_t)kn32 * sizeof(float));
            continue;
        }
        float Di = 0.0f;
        const float *o = Ob_ + (size_t)j * d->ldo, *go = dOb_ + (size_t)j * d->ldo;
#pragma omp simd reduction(+ : Di)
        for (int c = 0; c < D; c++) Di += o[c] * go[c];
        int nv = d->causal ? (q0 + j + 1 < kn ? q0 + j + 1 : kn) : kn;
        float l = L[j], sc = d->scale;
#pragma omp simd
        for (int kk = 0; kk < nv; kk++) {
            float pv = sd_cpu_expf(s[kk] - l);
            s[kk] = pv;
            dp[kk] = pv * (dp[kk] - Di) * sc;
        }
        for (int kk = nv; kk < kn32; kk++) s[kk] = 0.0f, dp[kk] = 0.0f;
    }
    /* dV^T += dO^T P and dK^T += Q^T dS: A = 8-dim panels of the block, K-dim = the block's queries */
    if (dVt || dKt) {
        if (dVt) pack_cols8(dOb_, d->ldo, mq, m, D, dObp);
        if (dKt) pack_cols8(Qb_, d->ldq, mq, m, D, Qbp);
        for (int p = 0; p < D8 / MR; p++)
            for (int c = 0; c < nkq; c++) {
                if (dVt)
                    sd_cpu_gemm_8x32(mq, dObp + (size_t)p * mq * MR, S + (size_t)c * NR, Nk32,
                                     dVt + (size_t)p * MR * Nk32 + (size_t)c * NR, Nk32, MR, 1);
                if (dKt)
                    sd_cpu_gemm_8x32(mq, Qbp + (size_t)p * mq * MR, dP + (size_t)c * NR, Nk32,
                                     dKt + (size_t)p * MR * Nk32 + (size_t)c * NR, Nk32, MR, 1);
            }
    }
    /* dQ = dS K: A = dS rows (row-major, 8 queries per call), B = K in 32-dim panels */
    if (a->dq) {
        const int D32 = rup(D, NR);
        for (int p = 0; p < npq; p++)
            for (int c = 0; c < D32 / NR; c++)
                sd_cpu_gemm_8x32_ar(kn, dP + (size_t)p * MR * Nk32, Nk32, bp->K32 + (size_t)c * d->Nk * NR, NR,
                                    dQb + (size_t)p * MR * D32 + (size_t)c * NR, D32, m - p * MR < MR ? m - p * MR : MR, 0);
        for (int j = 0; j < m; j++) {
            float *g = a->dq + ((size_t)b * d->Nq + q0 + j) * d->ldq + hoff;
            const float *t = dQb + (size_t)j * D32;
#pragma omp simd
            for (int c = 0; c < D; c++) g[c] += t[c];
        }
    }
}

/* dK[b, k, h] += dKt[.][k] for keys [k0, k1) */
static void bwd_flush(const sd_attn_desc *d, const bwd_args *a, int b, int h, const float *dKt, const float *dVt,
                      int k0, int k1) {
    const int Nk32 = rup(d->Nk, NR);
    const size_t hoff = (size_t)h * d->D;
    for (int kk = k0; kk < k1; kk++) {
        if (dKt) {
            float *g = a->dk + ((size_t)b * d->Nk + kk) * d->ldk + hoff;
            for (int c = 0; c < d->D; c++) g[c] += dKt[(size_t)c * Nk32 + kk];
        }
        if (dVt) {
            float *g = a->dv + ((size_t)b * d->Nk + kk) * d->ldv + hoff;
            for (int c = 0; c < d->D; c++) g[c] += dVt[(size_t)c * Nk32 + kk];
        }
    }
}

void sd_cpu_attention_backward(sd_backend *be, const sd_attn_desc *d, float *dq, float *dk, float *dv,
                               const float *dout, const float *q, const float *k, const float *v,
                               const float *out, const float *lse) {
    if (!dq && !dk && !dv) return;
    int nt = sd_cpu_nt(be);
    const int QB = attn_qb(be, d), nqb = (d->Nq + QB - 1) / QB, BH = d->B * d->H;
    const bwd_sizes z = bwd_size(d, QB);
    const size_t packf = bwd_pack_floats(&z), thr = bwd_thread_floats(&z);
    bwd_args a = {q, k, v, out, dout, lse, dq, dk, dv};
    if (BH >= nt || nqb == 1) {
        if (BH < nt) nt = BH;
        float *ws = sd_cpu_ws(be, (packf + thr) * nt);
#pragma omp parallel num_threads(nt)
        {
            float *mine = ws + (packf + thr) * omp_get_thread_num();
            bwd_pack bp = {mine, mine + z.kt32, mine + 2 * z.kt32};  /* Kt32, Vt32, K32 */
            float *dKt = mine + packf, *dVt = dKt + z.acc, *blk = dVt + z.acc;
#pragma omp for schedule(dynamic, 1)
            for (int bh = 0; bh < BH; bh++) {
                int b = bh / d->H, h = bh % d->H;
                bwd_pack_head(d, k, v, b, h, &bp);
                memset(dKt, 0, 2 * z.acc * sizeof(float));
                for (int qb = 0; qb < nqb; qb++) bwd_block(d, QB, &a, &bp, &z, b, h, qb, dk ? dKt : NULL, dv ? dVt : NULL, blk);
                bwd_flush(d, &a, b, h, dk ? dKt : NULL, dv ? dVt : NULL, 0, d->Nk);
            }
        }
        return;
    }
    /* few heads: shared packs, query blocks split over threads, private dK/dV */
    if (nqb < nt) nt = nqb;
    float *ws = sd_cpu_ws(be, packf + thr * nt);
    bwd_pack bp = {ws, ws + z.kt32, ws + 2 * z.kt32};
    for (int bh = 0; bh < BH; bh++) {
        int b = bh / d->H, h = bh % d->H;
        bwd_pack_head(d, k, v, b, h, &bp);
#pragma omp parallel num_threads(nt)
        {
            int tid = omp_get_thread_num();
            float *dKt = ws + packf + thr * tid, *dVt = dKt + z.acc, *blk = dVt + z.acc;
            memset(dKt, 0, 2 * z.acc * sizeof(float));
            /* static: which query blocks a thread sums into its private dK/dV
             * must not vary between runs, or the result would (exact resume) */
#pragma omp for schedule(static)
            for (int qb = 0; qb < nqb; qb++) bwd_block(d, QB, &a, &bp, &z, b, h, qb, dk ? dKt : NULL, dv ? dVt : NULL, blk);
            /* implicit barrier: every thread's sums are complete; flush by key range */
            long long lo, hi;
            sd_cpu_range(d->Nk, tid, nt, &lo, &hi);
            for (int t = 0; t < nt; t++) {
                const float *tk = ws + packf + thr * t;
                bwd_flush(d, &a, b, h, dk ? tk : NULL, dv ? tk + z.acc : NULL, (int)lo, (int)hi);
            }
        }
    }
}
