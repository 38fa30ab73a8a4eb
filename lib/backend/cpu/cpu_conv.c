/* cpu_conv.c — 2-D convolution forward and backward on the CPU.
 *
 * Three algorithms:
 *   1x1, stride 1, no pad   a plain GEMM per image: out[b] = W[OC,C] x[b][C,HW].
 *   3x3, stride 1           Winograd F(2x2,3x3) (Lavin & Gray 2015): 16 GEMMs
 *                           of [OC,C] x [C,tiles] replace the direct
 *                           convolution, 2.25x fewer multiply-adds. Used for
 *                           forward, backward-data (the same algorithm on the
 *                           flipped, transposed filter) and backward-filter
 *                           (the exact gradient of the Winograd form:
 *                           dU = sum_t (A dY_t A^T) (.) V_t, dW = G^T dU G).
 *                           Transform matrices hold only 0, +-1, +-1/2, so
 *                           the rounding error stays at the level of direct
 *                           summation (checked against torch in test_nn).
 *   anything else           im2col over chunks of output rows + GEMM; col2im
 *                           for the data gradient.
 *
 * Winograd GEMMs (forward and backward-data) run on the register-blocked
 * kernel (cpu_kernel.c): the weights are transformed straight into its 8-row
 * panels once per call and the input transform writes tiles straight into its
 * 32-tile panels, so nothing is repacked per chunk (OpenBLAS repacked the
 * weights for every chunk; SD_WINO_BLAS=1 still selects that path, for tests).
 * The backward-filter GEMMs (reduction over tiles) use OpenBLAS.
 *
 * Threading: Winograd forward/backward-data hands whole tile chunks to threads
 * (transform, 16 GEMMs, inverse transform: no barriers, chunk data stays in
 * cache) when there are at least two chunks per thread; otherwise the threads
 * share each chunk (small images with wide layers, where U is large).
 * Backward-filter splits each chunk's transforms by channel and its 16 GEMMs
 * by tile position. im2col splits the column build by rows and the GEMM by
 * rows or columns.
 *
 * Measured (bench/bench_ops.py, 2 Zen 4 cores): 3x3 convs of SD1.5 shapes are
 * 1.6-2.3x faster than PyTorch/oneDNN forward and 1.8-3.3x backward; the
 * stride-2 im2col case is ~0.8-1.0x (a <1% share of UNet FLOPs).
 */
#include "backend/cpu/cpu.h"

#include <omp.h>
#include <stdlib.h>

/* ---- helpers ------------------------------------------------------------------ */

void sd_cpu_chansum_acc(sd_backend *be, float *db, const float *x, int B, int C, int HW) {
    int nt = sd_cpu_nt(be);
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)B * C * HW > 65536)
    for (int c = 0; c < C; c++) {
        double s = 0.0;
        for (int b = 0; b < B; b++) {
            const float *p = x + ((size_t)b * C + c) * HW;
            float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
            for (int i = 0; i < HW; i++) acc += p[i];
            s += acc;
        }
        db[c] += (float)s;
    }
}

static int ceil_div(int a, int b) { return a <= 0 ? -((-a) / b) : (a + b - 1) / b; }

/* Output columns ow whose input column ow*s - pl + kw lies in [0, W). */
static void valid_cols(int W, int OW, int s, int pl, int kw, int *lo, int *hi) {
    int a = ceil_div(pl - kw, s);
    if (a < 0) a = 0;
    int num = W - 1 + pl - kw;
    int e = num < 0 ? 0 : num / s + 1;
    if (e > OW) e = OW;
    if (a > e) a = e;
    *lo = a;
    *hi = e;
}

/* ---- im2col path ----------------------------------------------------------------- */

/* col[r][(oh - oh0) * OW + ow] for rows r in [r0, r1) of the C*KH*KW rows. */
static void im2col_rows(const sd_conv2d_desc *d, const float *x, int oh0, int oh1, float *col, int r0, int r1) {
    const int OW = d->OW, s = d->stride, ncols = (oh1 - oh0) * OW;
    for (int r = r0; r < r1; r++) {
        int c = r / (d->KH * d->KW), kh = (r / d->KW) % d->KH, kw = r % d->KW;
        int lo, hi;
        valid_cols(d->W, OW, s, d->pad_l, kw, &lo, &hi);
        float *dst = col + (size_t)r * ncols;
        for (int oh = oh0; oh < oh1; oh++) {
            float *drow = dst + (size_t)(oh - oh0) * OW;
            int ih = oh * s - d->pad_t + kh;
            if (ih < 0 || ih >= d->H) {
                memset(drow, 0, (size_t)OW * sizeof(float));
                continue;
            }
            const float *srow = x + ((size_t)c * d->H + ih) * d->W - d->pad_l + kw;
            for (int ow = 0; ow < lo; ow++) drow[ow] = 0.0f;
            if (s == 1) memcpy(drow + lo, srow + lo, (size_t)(hi - lo) * sizeof(float));
            else
                for (int ow = lo; ow < hi; ow++) drow[ow] = srow[(size_t)ow * s];
            for (int ow = hi; ow < OW; ow++) drow[ow] = 0.0f;
        }
    }
}

/* dx[c] += scatter of col rows of channels [c0, c1) (a channel's rows overlap,
 * so one thread owns a channel). */
static void col2im_chans(const sd_conv2d_desc *d, const float *col, int oh0, int oh1, float *dx, int c0, int c1) {
    const int OW = d->OW, s = d->stride, ncols = (oh1 - oh0) * OW;
    for (int c = c0; c < c1; c++)
        for (int kh = 0; kh < d->KH; kh++)
            for (int kw = 0; kw < d->KW; kw++) {
                int r = (c * d->KH + kh) * d->KW + kw;
                int lo, hi;
                valid_cols(d->W, OW, s, d->pad_l, kw, &lo, &hi);
                const float *src = col + (size_t)r * ncols;
                for (int oh = oh0; oh < oh1; oh++) {
                    int ih = oh * s - d->pad_t + kh;
                    if (ih < 0 || ih >= d->H) continue;
                    const float *srow = src + (size_t)(oh - oh0) * OW;
                    float *xrow = dx + ((size_t)c * d->H + ih) * d->W - d->pad_l + kw;
                    if (s == 1) {
#pragma omp simd
                        for (int ow = lo; ow < hi; ow++) xrow[ow] += srow[ow];
                    } else {
                        for (int ow = lo; ow < hi; ow++) xrow[(size_t)ow * s] += srow[ow];
                    }
                }
            }
}

/* Output rows per chunk so that the column buffer stays around 8 MB. */
static int im2col_chunk_rows(const sd_conv2d_desc *d) {
    long long ckk = (long long)d->C * d->KH * d->KW;
    long long rows = (2ll << 20) / (ckk * d->OW > 0 ? ckk * d->OW : 1);
    if (rows < 1) rows = 1;
    if (rows > d->OH) rows = d->OH;
    return (int)rows;
}

static void im2col_build(sd_backend *be, const sd_conv2d_desc *d, const float *x, int oh0, int oh1, float *col) {
    int nt = sd_cpu_nt(be), R = d->C * d->KH * d->KW;
#pragma omp parallel num_threads(nt) if ((long long)R * (oh1 - oh0) * d->OW > 32768)
    {
        long long lo, hi;
        sd_cpu_range(R, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        im2col_rows(d, x, oh0, oh1, col, (int)lo, (int)hi);
    }
}

static void fill_bias(sd_backend *be, float *out, const float *bias, int B, int OC, int HW) {
    int nt = sd_cpu_nt(be);
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)B * OC * HW > 65536)
    for (int i = 0; i < B * OC; i++) {
        float v = bias[i % OC];
        float *p = out + (size_t)i * HW;
        for (int j = 0; j < HW; j++) p[j] = v;
    }
}

static void im2col_forward(sd_backend *be, const sd_conv2d_desc *d, float *out, const float *inp, const float *w,
                           const float *b) {
    const int CKK = d->C * d->KH * d->KW, OHW = d->OH * d->OW;
    int rows = im2col_chunk_rows(d);
    float *col = sd_cpu_ws(be, (size_t)CKK * rows * d->OW);
    if (b) fill_bias(be, out, b, d->B, d->OC, OHW);
    for (int bi = 0; bi < d->B; bi++) {
        const float *x = inp + (size_t)bi * d->C * d->H * d->W;
        float *y = out + (size_t)bi * d->OC * OHW;
        for (int oh0 = 0; oh0 < d->OH; oh0 += rows) {
            int oh1 = oh0 + rows < d->OH ? oh0 + rows : d->OH;
            int ncols = (oh1 - oh0) * d->OW;
            im2col_build(be, d, x, oh0, oh1, col);
            sd_cpu_sgemm_par(be, 0, 0, d->OC, ncols, CKK, 1.0f, w, CKK, col, ncols, b ? 1.0f : 0.0f,
                             y + (size_t)oh0 * d->OW, OHW);
        }
    }
}

static void im2col_backward(sd_backend *be, const sd_conv2d_desc *d, float *dinp, float *dw, const float *dout,
                            const float *inp, const float *w) {
    const int CKK = d->C * d->KH * d->KW, OHW = d->OH * d->OW;
    int rows = im2col_chunk_rows(d), nt = sd_cpu_nt(be);
    float *col = sd_cpu_ws(be, (size_t)CKK * rows * d->OW);
    for (int bi = 0; bi < d->B; bi++) {
        const float *x = inp ? inp + (size_t)bi * d->C * d->H * d->W : NULL;
        float *dx = dinp ? dinp + (size_t)bi * d->C * d->H * d->W : NULL;
        const float *dy = dout + (size_t)bi * d->OC * OHW;
        for (int oh0 = 0; oh0 < d->OH; oh0 += rows) {
            int oh1 = oh0 + rows < d->OH ? oh0 + rows : d->OH;
            int ncols = (oh1 - oh0) * d->OW;
            if (dw) { /* dw[OC, CKK] += dy[OC, ncols] col^T */
                im2col_build(be, d, x, oh0, oh1, col);
                sd_cpu_sgemm_par(be, 0, 1, d->OC, CKK, ncols, 1.0f, dy + (size_t)oh0 * d->OW, OHW, col, ncols, 1.0f,
                                 dw, CKK);
            }
            if (dx) { /* dcol[CKK, ncols] = w^T dy, then scatter-add */
                sd_cpu_sgemm_par(be, 1, 0, CKK, ncols, d->OC, 1.0f, w, CKK, dy + (size_t)oh0 * d->OW, OHW, 0.0f,
                                 col, ncols);
#pragma omp parallel num_threads(nt) if ((long long)CKK * ncols > 32768)
                {
                    long long lo, hi;
                    sd_cpu_range(d->C, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
                    col2im_chans(d, col, oh0, oh1, dx, (int)lo, (int)hi);
                }
            }
        }
    }
}

/* ---- 1x1 path -------------------------------------------------------------------- */

static int is_pointwise(const sd_conv2d_desc *d) {
    return d->KH == 1 && d->KW == 1 && d->stride == 1 && !d->pad_t && !d->pad_b && !d->pad_l && !d->pad_r;
}

static void pointwise_forward(sd_backend *be, const sd_conv2d_desc *d, float *out, const float *inp,
                              const float *w, const float *b) {
    const int HW = d->H * d->W;
    if (b) fill_bias(be, out, b, d->B, d->OC, HW);
    for (int bi = 0; bi < d->B; bi++)
        sd_cpu_sgemm_par(be, 0, 0, d->OC, HW, d->C, 1.0f, w, d->C, inp + (size_t)bi * d->C * HW, HW, b ? 1.0f : 0.0f,
                         out + (size_t)bi * d->OC * HW, HW);
}

static void pointwise_backward(sd_backend *be, const sd_conv2d_desc *d, float *dinp, float *dw, const float *dout,
                               const float *inp, const float *w) {
    const int HW = d->H * d->W;
    for (int bi = 0; bi < d->B; bi++) {
        const float *dy = dout + (size_t)bi * d->OC * HW;
        if (dinp)
            sd_cpu_sgemm_par(be, 1, 0, d->C, HW, d->OC, 1.0f, w, d->C, dy, HW, 1.0f, dinp + (size_t)bi * d->C * HW, HW);
        if (dw)
            sd_cpu_sgemm_par(be, 0, 1, d->OC, d->C, HW, 1.0f, dy, HW, inp + (size_t)bi * d->C * HW, HW, 1.0f, dw, d->C);
    }
}

/* ---- Winograd F(2x2, 3x3) ---------------------------------------------------------
 *   Y = A^T [ (G g G^T) (.) (B^T d B) ] A   per 4x4 input tile d -> 2x2 output
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *   A^T = [1 1 1 0; 0 1 -1 -1]
 * Tiles: tw = ceil(OW/2) per row, th = ceil(OH/2) per image, global tile index
 * t = (b*th + ty)*tw + tx. Transformed data is stored position-major:
 * V[xi][c][t], U[xi][oc][c], M[xi][oc][t] (xi = 4*i + j, 16 positions). */

typedef struct {
    int B, C, H, W;  /* input of this (possibly transposed) convolution */
    int OC, OH, OW;  /* its output */
    int pt, pl;      /* top/left zero padding; bottom/right pads are implied by OH, OW */
    int th, tw;
    long long T;
} wino_geom;

static wino_geom wino_make(int B, int C, int H, int W, int OC, int OH, int OW, int pt, int pl) {
    wino_geom g = {B, C, H, W, OC, OH, OW, pt, pl, (OH + 1) / 2, (OW + 1) / 2, 0};
    g.T = (long long)B * g.th * g.tw;
    return g;
}

/* Register-blocked GEMM of the Winograd pipeline (see wino_gemm): an 8 x 32
 * tile of M per kernel call, A = U packed in panels of 8 rows, B = V packed in
 * panels of 32 tiles. */
#define WMR SD_KMR
#define WNR SD_KNR

/* U[xi] = G w G^T for every filter. Rows r are output channels (flip = 0: U
 * is [xi][oc][c]) or, for the backward-data convolution (flip = 1), input
 * channels with the filter w'[c][oc][i][j] = w[oc][c][2-i][2-j] (U is
 * [xi][c][oc]). Layout: plain ([xi][r][q], row stride cols) or packed for the
 * kernel ([xi][r/8][q][r%8], 8 zero-padded rows per panel).
 * Work items are 8 rows x 64 columns, transformed as unit-stride vectors
 * through a [9][64] transpose of the filters. */
#define WB 64
static void wino_weights(sd_backend *be, const float *w, int OC, int C, int flip, int packed, float *U) {
    int nt = sd_cpu_nt(be);
    const int rows = flip ? C : OC, cols = flip ? OC : C;
    const int np = (rows + WMR - 1) / WMR;
    const size_t plane = packed ? (size_t)np * WMR * cols : (size_t)rows * cols;
    const int nblk = (cols + WB - 1) / WB;
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)OC * C > 4096)
    for (long long it = 0; it < (long long)np * nblk; it++) {
        int p = (int)(it / nblk), q0 = (int)(it % nblk) * WB, n = cols - q0 < WB ? cols - q0 : WB;
        float g[9][WB], ut[16][WB];
        for (int i = 0; i < WMR; i++) {
            int r = p * WMR + i;
            if (r >= rows) { /* zero rows pad the last packed panel */
                if (packed)
                    for (int x = 0; x < 16; x++)
                        for (int j = 0; j < n; j++) U[(size_t)x * plane + ((size_t)p * cols + q0 + j) * WMR + i] = 0.0f;
                continue;
            }
            for (int j = 0; j < n; j++) {
                const float *src = flip ? w + ((size_t)(q0 + j) * C + r) * 9 : w + ((size_t)r * C + q0 + j) * 9;
                for (int k = 0; k < 9; k++) g[k][j] = flip ? src[8 - k] : src[k];
            }
#pragma omp simd
            for (int j = 0; j < n; j++) {
                /* G g (4x3), column by column: g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2 */
#define GCOL(c, r0, r1, r2, r3)                                                  \
    float r0 = g[c][j], r3 = g[6 + c][j];                                        \
    float r1 = 0.5f * (g[c][j] + g[3 + c][j] + g[6 + c][j]);                     \
    float r2 = 0.5f * (g[c][j] - g[3 + c][j] + g[6 + c][j]);
                GCOL(0, t00, t10, t20, t30)
                GCOL(1, t01, t11, t21, t31)
                GCOL(2, t02, t12, t22, t32)
#undef GCOL
                /* (G g) G^T, row by row */
#define GROW(i, a0, a1, a2)                                                      \
    ut[4 * i + 0][j] = a0;                                                       \
    ut[4 * i + 1][j] = 0.5f * (a0 + a1 + a2);                                    \
    ut[4 * i + 2][j] = 0.5f * (a0 - a1 + a2);                                    \
    ut[4 * i + 3][j] = a2;
                GROW(0, t00, t01, t02)
                GROW(1, t10, t11, t12)
                GROW(2, t20, t21, t22)
                GROW(3, t30, t31, t32)
#undef GROW
            }
            for (int x = 0; x < 16; x++) {
                if (packed) {
                    float *dst = U + (size_t)x * plane + ((size_t)p * cols + q0) * WMR + i;
                    for (int j = 0; j < n; j++) dst[(size_t)j * WMR] = ut[x][j];
                } else {
                    memcpy(U + (size_t)x * plane + (size_t)r * cols + q0, ut[x], (size_t)n * sizeof(float));
                }
            }
        }
    }
}

/* dw[oc][c] += G^T dU[.][oc][c] G */
static void wino_weights_grad(sd_backend *be, const float *dU, int OC, int C, float *dw) {
    int nt = sd_cpu_nt(be);
    const size_t plane = (size_t)OC * C;
    const int nblk = (C + WB - 1) / WB;
#pragma omp parallel for num_threads(nt) schedule(static) if ((long long)OC * C > 4096)
    for (long long it = 0; it < (long long)OC * nblk; it++) {
        int oc = (int)(it / nblk), c0 = (int)(it % nblk) * WB, n = C - c0 < WB ? C - c0 : WB;
        float g[9][WB];
        const float *u = dU + (size_t)oc * C + c0;
#pragma omp simd
        for (int j = 0; j < n; j++) {
            /* G^T dU (3x4), column by column: u0 + (u1+u2)/2, (u1-u2)/2, (u1+u2)/2 + u3 */
#define GTCOL(c, r0, r1, r2)                                                     \
    float r0, r1, r2;                                                            \
    {                                                                            \
        float u0 = u[(size_t)c * plane + j], u1 = u[(size_t)(4 + c) * plane + j]; \
        float u2 = u[(size_t)(8 + c) * plane + j], u3 = u[(size_t)(12 + c) * plane + j]; \
        r0 = u0 + 0.5f * (u1 + u2);                                              \
        r1 = 0.5f * (u1 - u2);                                                   \
        r2 = 0.5f * (u1 + u2) + u3;                                              \
    }
            GTCOL(0, t00, t10, t20)
            GTCOL(1, t01, t11, t21)
            GTCOL(2, t02, t12, t22)
            GTCOL(3, t03, t13, t23)
#undef GTCOL
            /* (G^T dU) G, row by row */
#define GTROW(i, a0, a1, a2, a3)                                                 \
    g[3 * i + 0][j] = a0 + 0.5f * (a1 + a2);                                     \
    g[3 * i + 1][j] = 0.5f * (a1 - a2);                                          \
    g[3 * i + 2][j] = 0.5f * (a1 + a2) + a3;
            GTROW(0, t00, t01, t02, t03)
            GTROW(1, t10, t11, t12, t13)
            GTROW(2, t20, t21, t22, t23)
#undef GTROW
        }
        float *dst = dw + ((size_t)oc * C + c0) * 9;
        for (int j = 0; j < n; j++)
            for (int k = 0; k < 9; k++) dst[(size_t)j * 9 + k] += g[k][j];
    }
}

/* Tiles [t0, t1) are visited one tile row at a time: row `row` (global
 * index b*th + ty) contributes tile columns [x0, x1), whose first tile has
 * chunk-local index loc. */
static inline void wino_segment(const wino_geom *g, long long t0, long long t1, long long row, int *b, int *ty,
                                int *x0, int *x1, long long *loc) {
    long long rs = row * g->tw;
    *b = (int)(row / g->th);
    *ty = (int)(row % g->th);
    *x0 = (int)(t0 > rs ? t0 - rs : 0);
    *x1 = (int)(t1 < rs + g->tw ? t1 - rs : g->tw);
    *loc = rs + *x0 - t0;
}

#define WINO_SEGMENTS_BEGIN                                                    \
    for (long long row_ = t0 / g->tw; row_ * g->tw < t1; row_++) {            \
        int b, ty, x0, x1;                                                     \
        long long loc;                                                         \
        wino_segment(g, t0, t1, row_, &b, &ty, &x0, &x1, &loc);
#define WINO_SEGMENTS_END }

/* Where element V[xi][c][t'] (t' = chunk-local tile) lives: plain
 * ([xi][c][t'], row stride ld) or packed in panels of WNR tiles
 * ([xi][t'/WNR][c][t'%WNR]) for the register-blocked kernel. */
typedef struct {
    size_t plane, cstride, pstride;
    int pw;
} wino_vlayout;

static wino_vlayout vl_plain(int C, int ld) {
    wino_vlayout l = {(size_t)C * ld, (size_t)ld, 0, ld};
    return l;
}
static wino_vlayout vl_packed(int C, int tcp) {
    wino_vlayout l = {(size_t)C * tcp, WNR, (size_t)C * WNR, WNR};
    return l;
}

/* V = B^T d B for channels [c0, c1), tiles [t0, t1), in layout L.
 * buf: 8 * (2*tw + 2) floats of scratch. */
static void wino_input(const wino_geom *g, const float *inp, long long t0, long long t1, int c0, int c1, float *V,
                       wino_vlayout L, float *buf) {
    const int WP = 2 * g->tw + 2;
    float *r[4], *v[4];
    for (int i = 0; i < 4; i++) r[i] = buf + i * WP, v[i] = buf + (4 + i) * WP;
    for (int c = c0; c < c1; c++) {
        WINO_SEGMENTS_BEGIN
            const float *x = inp + ((size_t)b * g->C + c) * g->H * g->W;
            int xa = 2 * x0, xb = 2 * x1 + 2; /* padded columns needed */
            for (int i = 0; i < 4; i++) {
                int iy = 2 * ty - g->pt + i;
                float *ri = r[i];
                if (iy < 0 || iy >= g->H) {
                    for (int xx = xa; xx < xb; xx++) ri[xx] = 0.0f;
                    continue;
                }
                const float *src = x + (size_t)iy * g->W - g->pl;
                int lo = g->pl > xa ? g->pl : xa, hi = g->W + g->pl < xb ? g->W + g->pl : xb;
                if (hi < lo) hi = lo;
                for (int xx = xa; xx < lo; xx++) ri[xx] = 0.0f;
                memcpy(ri + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
                for (int xx = hi; xx < xb; xx++) ri[xx] = 0.0f;
            }
#pragma omp simd
            for (int xx = xa; xx < xb; xx++) { /* B^T over rows */
                float a0 = r[0][xx], a1 = r[1][xx], a2 = r[2][xx], a3 = r[3][xx];
                v[0][xx] = a0 - a2;
                v[1][xx] = a1 + a2;
                v[2][xx] = a2 - a1;
                v[3][xx] = a1 - a3;
            }
            /* ... then over columns, in runs that stay inside one panel */
            int n = x1 - x0;
            for (int k0 = 0; k0 < n;) {
                long long tp = loc + k0;
                int j = (int)(tp % L.pw), len = n - k0 < L.pw - j ? n - k0 : L.pw - j;
                float *base = V + (size_t)c * L.cstride + (size_t)(tp / L.pw) * L.pstride + j;
                for (int i = 0; i < 4; i++) {
                    const float *p = v[i] + 2 * (x0 + k0);
                    float *o0 = base + (size_t)(4 * i) * L.plane, *o1 = o0 + L.plane, *o2 = o1 + L.plane,
                          *o3 = o2 + L.plane;
#pragma omp simd
                    for (int k = 0; k < len; k++) {
                        float d0 = p[2 * k], d1 = p[2 * k + 1], d2 = p[2 * k + 2], d3 = p[2 * k + 3];
                        o0[k] = d0 - d2;
                        o1[k] = d1 + d2;
                        o2[k] = d2 - d1;
                        o3[k] = d1 - d3;
                    }
                }
                k0 += len;
            }
        WINO_SEGMENTS_END
    }
}

/* out[b][oc] (+)= A^T M A (+ bias) for oc in [o0, o1), tiles [t0, t1).
 * buf: 4 * tw floats of scratch. */
static void wino_output(const wino_geom *g, const float *M, int ldm, long long t0, long long t1, int o0, int o1,
                        float *out, const float *bias, int accumulate, float *buf) {
    const size_t P = (size_t)g->OC * ldm;
    const int tw = g->tw;
    float *y00 = buf, *y01 = buf + tw, *y10 = buf + 2 * tw, *y11 = buf + 3 * tw;
    for (int oc = o0; oc < o1; oc++) {
        const float *m = M + (size_t)oc * ldm;
        float bv = bias ? bias[oc] : 0.0f;
        WINO_SEGMENTS_BEGIN
            int n = x1 - x0;
            const float *mp = m + loc;
#pragma omp simd
            for (int k = 0; k < n; k++) {
                float a0 = mp[k], a1 = mp[P + k], a2 = mp[2 * P + k], a3 = mp[3 * P + k];
                float a4 = mp[4 * P + k], a5 = mp[5 * P + k], a6 = mp[6 * P + k], a7 = mp[7 * P + k];
                float a8 = mp[8 * P + k], a9 = mp[9 * P + k], a10 = mp[10 * P + k], a11 = mp[11 * P + k];
                float a12 = mp[12 * P + k], a13 = mp[13 * P + k], a14 = mp[14 * P + k], a15 = mp[15 * P + k];
                /* A^T over rows: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3 (per column) */
                float s00 = a0 + a4 + a8, s01 = a1 + a5 + a9, s02 = a2 + a6 + a10, s03 = a3 + a7 + a11;
                float s10 = a4 - a8 - a12, s11 = a5 - a9 - a13, s12 = a6 - a10 - a14, s13 = a7 - a11 - a15;
                y00[k] = s00 + s01 + s02 + bv;
                y01[k] = s01 - s02 - s03 + bv;
                y10[k] = s10 + s11 + s12 + bv;
                y11[k] = s11 - s12 - s13 + bv;
            }
            /* the last tile of a row has one column when OW is odd */
            int nfull = 2 * x1 > g->OW ? n - 1 : n;
            for (int a = 0; a < 2; a++) {
                int oy = 2 * ty + a;
                if (oy >= g->OH) break;
                float *dst = out + (((size_t)b * g->OC + oc) * g->OH + oy) * g->OW + 2 * x0;
                const float *ya = a ? y10 : y00, *yb = a ? y11 : y01;
                if (accumulate) {
#pragma omp simd
                    for (int k = 0; k < nfull; k++) {
                        dst[2 * k] += ya[k];
                        dst[2 * k + 1] += yb[k];
                    }
                    if (nfull < n) dst[2 * nfull] += ya[nfull];
                } else {
#pragma omp simd
                    for (int k = 0; k < nfull; k++) {
                        dst[2 * k] = ya[k];
                        dst[2 * k + 1] = yb[k];
                    }
                    if (nfull < n) dst[2 * nfull] = ya[nfull];
                }
            }
        WINO_SEGMENTS_END
    }
}

/* dM[xi][oc][t - t0] = (A dY_t A^T)[xi] for oc in [o0, o1): the gradient of
 * the output transform. dY outside the output (odd sizes) is zero.
 * buf: 4 * tw floats. */
static void wino_output_grad(const wino_geom *g, const float *dout, long long t0, long long t1, int o0, int o1,
                             float *dM, int ldm, float *buf) {
    const size_t P = (size_t)g->OC * ldm;
    float *r0 = buf, *r1 = buf + 2 * g->tw;
    for (int oc = o0; oc < o1; oc++) {
        WINO_SEGMENTS_BEGIN
            int xa = 2 * x0, xb = 2 * x1, xe = xb < g->OW ? xb : g->OW;
            for (int a = 0; a < 2; a++) {
                float *rr = (a ? r1 : r0) - xa;
                int oy = 2 * ty + a;
                if (oy >= g->OH) {
                    for (int xx = xa; xx < xb; xx++) rr[xx] = 0.0f;
                    continue;
                }
                const float *src = dout + (((size_t)b * g->OC + oc) * g->OH + oy) * g->OW;
                memcpy(rr + xa, src + xa, (size_t)(xe - xa) * sizeof(float));
                for (int xx = xe; xx < xb; xx++) rr[xx] = 0.0f;
            }
            int n = x1 - x0;
            float *o = dM + (size_t)oc * ldm + loc;
#pragma omp simd
            for (int k = 0; k < n; k++) {
                float a00 = r0[2 * k], a01 = r0[2 * k + 1], a10 = r1[2 * k], a11 = r1[2 * k + 1];
                /* X = A dY (4x2): rows dY0, dY0+dY1, dY0-dY1, -dY1; then X A^T: cols X0, X0+X1, X0-X1, -X1 */
                float x00 = a00, x01 = a01, x10 = a00 + a10, x11 = a01 + a11;
                float x20 = a00 - a10, x21 = a01 - a11, x30 = -a10, x31 = -a11;
                o[k] = x00, o[P + k] = x00 + x01, o[2 * P + k] = x00 - x01, o[3 * P + k] = -x01;
                o[4 * P + k] = x10, o[5 * P + k] = x10 + x11, o[6 * P + k] = x10 - x11, o[7 * P + k] = -x11;
                o[8 * P + k] = x20, o[9 * P + k] = x20 + x21, o[10 * P + k] = x20 - x21, o[11 * P + k] = -x21;
                o[12 * P + k] = x30, o[13 * P + k] = x30 + x31, o[14 * P + k] = x30 - x31, o[15 * P + k] = -x31;
            }
        WINO_SEGMENTS_END
    }
}

/* Tiles per chunk: the chunk's V and M (16*(C+OC) floats per tile) should
 * stay near 4 MB (L3-resident, one xi-plane of V in L2) and each GEMM at
 * least 64 wide. Multiple of WNR. Every chunk streams all of U once, so chunks
 * are not shrunk to feed more threads: with few chunks the threads cooperate
 * on each one (wino_run). */
static int wino_chunk(sd_backend *be, const wino_geom *g) {
    long long tc = (1ll << 20) / (16ll * (g->C + g->OC));
    if (tc < 64) tc = 64;
    if (tc > 512) tc = 512;
    if (sd_cpu(be)->wino_tc > 0) tc = sd_cpu(be)->wino_tc;
    if (tc > g->T) tc = g->T;
    tc = (tc + WNR - 1) / WNR * WNR;
    return (int)tc;
}

/* M[xi][OC, n] = U[xi][OC, C] V[xi][C, n] for one chunk, packed operands.
 * Loop order: a U panel (8 x C) stays in L1 while it sweeps the chunk's V
 * panels (C x tc, in L2). */
static void wino_gemm(const wino_geom *g, const float *Up, const float *Vp, int n, int tcp, float *M) {
    const int np = (g->OC + WMR - 1) / WMR, nq = (n + WNR - 1) / WNR;
    const size_t uplane = (size_t)np * WMR * g->C, vplane = (size_t)g->C * tcp, mplane = (size_t)g->OC * tcp;
    for (int xi = 0; xi < 16; xi++)
        for (int p = 0; p < np; p++) {
            const float *a = Up + xi * uplane + (size_t)p * g->C * WMR;
            int rows = g->OC - p * WMR < WMR ? g->OC - p * WMR : WMR;
            for (int q = 0; q < nq; q++)
                sd_cpu_gemm_8x32(g->C, a, Vp + xi * vplane + (size_t)q * g->C * WNR, WNR,
                                 M + xi * mplane + (size_t)p * WMR * tcp + (size_t)q * WNR, tcp, rows, 0);
        }
}

static int wino_use_blas(sd_backend *be) { return sd_cpu(be)->wino_blas; }

/* Per-thread scratch floats of the forward pipeline. */
static size_t wino_run_per_thread(sd_backend *be, const wino_geom *g) {
    int tc = wino_chunk(be, g);
    return sd_cpu_pad16((size_t)16 * g->C * tc) + sd_cpu_pad16((size_t)16 * g->OC * tc) +
           sd_cpu_pad16((size_t)8 * (2 * g->tw + 2));
}

/* Zero the unused tail of the last packed panel (tiles n..) for channels [c0, c1). */
static void wino_zero_tail(const wino_geom *g, float *V, int n, int tc, int c0, int c1) {
    if (n % WNR == 0) return;
    int nq = (n + WNR - 1) / WNR;
    for (int xi = 0; xi < 16; xi++)
        for (int c = c0; c < c1; c++)
            memset(V + (size_t)xi * g->C * tc + ((size_t)(nq - 1) * g->C + c) * WNR + n % WNR, 0,
                   (size_t)(WNR - n % WNR) * sizeof(float));
}

/* out (+)= conv(inp) given transformed weights U (from wino_weights, packed
 * unless the BLAS fallback is selected).
 * Many chunks: threads take whole chunks (transform, 16 GEMMs, inverse
 * transform; no barriers). Fewer than two chunks per thread (small images,
 * wide layers: U is up to 105 MB at 1280 channels): threads share each chunk,
 * splitting the input transform by channel, the GEMMs by rows of U and the
 * inverse transform by output channel, so U is streamed once, not per thread. */
static void wino_run(sd_backend *be, const wino_geom *g, const float *inp, const float *U, const float *bias,
                     float *out, int accumulate, float *scratch) {
    int nt = sd_cpu_nt(be), blas = wino_use_blas(be);
    int tc = wino_chunk(be, g);
    long long nchunks = (g->T + tc - 1) / tc;
    size_t vsz = sd_cpu_pad16((size_t)16 * g->C * tc), msz = sd_cpu_pad16((size_t)16 * g->OC * tc);
    size_t per = wino_run_per_thread(be, g);
    if (nt > 1 && nchunks < 2 * nt) {
        const int np = (g->OC + WMR - 1) / WMR;
        float *V = scratch, *M = V + vsz;
#pragma omp parallel num_threads(nt)
        {
            int tid = omp_get_thread_num();
            float *buf = scratch + per * tid + vsz + msz; /* each thread's own row buffer */
            long long lo, hi;
            for (long long ch = 0; ch < nchunks; ch++) {
                long long t0 = ch * tc, t1 = t0 + tc < g->T ? t0 + tc : g->T;
                int n = (int)(t1 - t0);
                sd_cpu_range(g->C, tid, nt, &lo, &hi);
                if (blas) {
                    wino_input(g, inp, t0, t1, (int)lo, (int)hi, V, vl_plain(g->C, tc), buf);
                } else {
                    wino_zero_tail(g, V, n, tc, (int)lo, (int)hi);
                    wino_input(g, inp, t0, t1, (int)lo, (int)hi, V, vl_packed(g->C, tc), buf);
                }
#pragma omp barrier
                if (blas) {
                    sd_cpu_range(g->OC, tid, nt, &lo, &hi);
                    for (int xi = 0; xi < 16 && hi > lo; xi++)
                        sd_cpu_sgemm(0, 0, (int)(hi - lo), n, g->C, 1.0f, U + (size_t)xi * g->OC * g->C + lo * g->C,
                                     g->C, V + (size_t)xi * g->C * tc, tc, 0.0f,
                                     M + (size_t)xi * g->OC * tc + lo * tc, tc);
                } else {
                    sd_cpu_range(np, tid, nt, &lo, &hi);
                    const int nq = (n + WNR - 1) / WNR;
                    const size_t uplane = (size_t)np * WMR * g->C, vplane = (size_t)g->C * tc,
                                 mplane = (size_t)g->OC * tc;
                    for (int xi = 0; xi < 16; xi++)
                        for (long long p = lo; p < hi; p++) {
                            int rows = g->OC - (int)p * WMR < WMR ? g->OC - (int)p * WMR : WMR;
                            for (int q = 0; q < nq; q++)
                                sd_cpu_gemm_8x32(g->C, U + xi * uplane + (size_t)p * g->C * WMR,
                                                 V + xi * vplane + (size_t)q * g->C * WNR, WNR,
                                                 M + xi * mplane + (size_t)p * WMR * tc + (size_t)q * WNR, tc, rows, 0);
                        }
                }
#pragma omp barrier
                sd_cpu_range(g->OC, tid, nt, &lo, &hi);
                wino_output(g, M, tc, t0, t1, (int)lo, (int)hi, out, bias, accumulate, buf);
#pragma omp barrier
            }
        }
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        float *V = scratch + per * omp_get_thread_num(), *M = V + vsz, *buf = M + msz;
#pragma omp for schedule(dynamic, 1)
        for (long long ch = 0; ch < nchunks; ch++) {
            long long t0 = ch * tc, t1 = t0 + tc < g->T ? t0 + tc : g->T;
            int n = (int)(t1 - t0);
            if (blas) {
                wino_input(g, inp, t0, t1, 0, g->C, V, vl_plain(g->C, tc), buf);
                for (int xi = 0; xi < 16; xi++)
                    sd_cpu_sgemm(0, 0, g->OC, n, g->C, 1.0f, U + (size_t)xi * g->OC * g->C, g->C,
                                 V + (size_t)xi * g->C * tc, tc, 0.0f, M + (size_t)xi * g->OC * tc, tc);
            } else {
                wino_zero_tail(g, V, n, tc, 0, g->C);
                wino_input(g, inp, t0, t1, 0, g->C, V, vl_packed(g->C, tc), buf);
                wino_gemm(g, U, V, n, tc, M);
            }
            wino_output(g, M, tc, t0, t1, 0, g->OC, out, bias, accumulate, buf);
        }
    }
}

static size_t wino_u_floats(sd_backend *be, int rows, int cols) {
    int np = (rows + WMR - 1) / WMR;
    return sd_cpu_pad16((size_t)16 * (wino_use_blas(be) ? rows : np * WMR) * cols);
}

static void wino_forward(sd_backend *be, const sd_conv2d_desc *d, float *out, const float *inp, const float *w,
                         const float *b) {
    wino_geom g = wino_make(d->B, d->C, d->H, d->W, d->OC, d->OH, d->OW, d->pad_t, d->pad_l);
    size_t usz = wino_u_floats(be, d->OC, d->C);
    float *ws = sd_cpu_ws(be, usz + wino_run_per_thread(be, &g) * sd_cpu_nt(be));
    wino_weights(be, w, d->OC, d->C, 0, !wino_use_blas(be), ws);
    wino_run(be, &g, inp, ws, b, out, 0, ws + usz);
}

/* dinp += conv(dout, flipped transposed w) with pads 2 - pad: a stride-1 3x3
 * transposed convolution is a 3x3 convolution. */
static void wino_backward_data(sd_backend *be, const sd_conv2d_desc *d, float *dinp, const float *dout,
                               const float *w) {
    wino_geom g = wino_make(d->B, d->OC, d->OH, d->OW, d->C, d->H, d->W, 2 - d->pad_t, 2 - d->pad_l);
    size_t usz = wino_u_floats(be, d->C, d->OC);
    float *ws = sd_cpu_ws(be, usz + wino_run_per_thread(be, &g) * sd_cpu_nt(be));
    wino_weights(be, w, d->OC, d->C, 1, !wino_use_blas(be), ws);
    wino_run(be, &g, dout, ws, NULL, dinp, 1, ws + usz);
}

static void wino_backward_filter(sd_backend *be, const sd_conv2d_desc *d, float *dw, const float *dout,
                                 const float *inp) {
    int nt = sd_cpu_nt(be);
    wino_geom g = wino_make(d->B, d->C, d->H, d->W, d->OC, d->OH, d->OW, d->pad_t, d->pad_l);
    /* chunks are the GEMM's reduction dimension here: make them long */
    long long tc = (4ll << 20) / (16ll * (d->C + d->OC));
    if (tc < 64) tc = 64;
    if (tc > 1024) tc = 1024;
    if (tc > g.T) tc = g.T;
    size_t usz = sd_cpu_pad16((size_t)16 * d->OC * d->C), vsz = sd_cpu_pad16((size_t)16 * d->C * tc);
    size_t msz = sd_cpu_pad16((size_t)16 * d->OC * tc), bsz = sd_cpu_pad16((size_t)8 * (2 * g.tw + 2));
    float *dU = sd_cpu_ws(be, usz + vsz + msz + bsz * nt);
    float *V = dU + usz, *dM = V + vsz, *bufs = dM + msz;
    long long nchunks = (g.T + tc - 1) / tc;
#pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num();
        float *buf = bufs + bsz * tid;
        long long lo, hi;
        sd_cpu_range((long long)usz, tid, nt, &lo, &hi);
        memset(dU + lo, 0, (size_t)(hi - lo) * sizeof(float));
        for (long long ch = 0; ch < nchunks; ch++) {
            long long t0 = ch * tc, t1 = t0 + tc < g.T ? t0 + tc : g.T;
            int n = (int)(t1 - t0);
            sd_cpu_range(d->C, tid, nt, &lo, &hi);
            wino_input(&g, inp, t0, t1, (int)lo, (int)hi, V, vl_plain(d->C, (int)tc), buf);
            sd_cpu_range(d->OC, tid, nt, &lo, &hi);
            wino_output_grad(&g, dout, t0, t1, (int)lo, (int)hi, dM, (int)tc, buf);
#pragma omp barrier
            /* dU[xi][OC, C] += dM[xi][OC, n] V[xi][C, n]^T */
            sd_cpu_range(16, tid, nt, &lo, &hi);
            for (long long xi = lo; xi < hi; xi++)
                sd_cpu_sgemm(0, 1, d->OC, d->C, n, 1.0f, dM + (size_t)xi * d->OC * tc, (int)tc,
                             V + (size_t)xi * d->C * tc, (int)tc, 1.0f, dU + (size_t)xi * d->OC * d->C, d->C);
#pragma omp barrier
        }
    }
    wino_weights_grad(be, dU, d->OC, d->C, dw);
}

/* ---- dispatch ---------------------------------------------------------------------- */

static int wino_ok(const sd_conv2d_desc *d) {
    return d->KH == 3 && d->KW == 3 && d->stride == 1 && d->pad_t <= 2 && d->pad_b <= 2 && d->pad_l <= 2 &&
           d->pad_r <= 2 && d->OH > 0 && d->OW > 0;
}

/* The AUTO choice. Winograd saves 9/4 of the GEMM work but transforms the
 * weights on every call (16*OC*C floats written and read) and needs enough
 * tiles per call to keep the GEMMs wide; measured on SD shapes (bench_ops). */
static int use_wino(sd_backend *be, const sd_conv2d_desc *d) {
    int algo = sd_cpu(be)->conv_algo;
    if (!wino_ok(d) || algo == SD_CONV_IM2COL) return 0;
    if (algo == SD_CONV_WINOGRAD) return 1;
    long long T = (long long)d->B * ((d->OH + 1) / 2) * ((d->OW + 1) / 2);
    return d->C >= 16 && d->OC >= 16 && T >= 64;
}

void sd_cpu_conv2d_forward(sd_backend *be, const sd_conv2d_desc *d, float *out, const float *inp, const float *w,
                           const float *b) {
    if (is_pointwise(d)) pointwise_forward(be, d, out, inp, w, b);
    else if (use_wino(be, d)) wino_forward(be, d, out, inp, w, b);
    else im2col_forward(be, d, out, inp, w, b);
}

void sd_cpu_conv2d_backward(sd_backend *be, const sd_conv2d_desc *d, float *dinp, float *dw, float *db,
                            const float *dout, const float *inp, const float *w) {
    if (db) sd_cpu_chansum_acc(be, db, dout, d->B, d->OC, d->OH * d->OW);
    if (!dinp && !dw) return;
    if (is_pointwise(d)) pointwise_backward(be, d, dinp, dw, dout, inp, w);
    else if (use_wino(be, d)) {
        if (dw) wino_backward_filter(be, d, dw, dout, inp);
        if (dinp) wino_backward_data(be, d, dinp, dout, w);
    } else
        im2col_backward(be, d, dinp, dw, dout, inp, w);
}
