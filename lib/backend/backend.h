/* backend.h — the compute backend: one op interface, several implementations.
 *
 * An sd_backend is a small struct: an ops vtable plus an implementation's
 * private context (CPU: thread count and a scratch workspace; CUDA later: a
 * stream, cuBLASLt/cuDNN handles and a device workspace). Everything above
 * this layer (lib/nn, lib/models, lib/train) computes only through it, so the
 * same model code runs on the CPU and, later, on a GPU.
 *
 * Pointers. "Device pointers" are plain `float *` (token ids `int32_t *`)
 * obtained from sd_backend_alloc; on the CPU backend they are ordinary host
 * pointers. Host data moves in and out with upload/download.
 *
 * Numerics. fp32 everywhere on this interface. Images are NCHW; token
 * sequences are [B, N, C] row-major (token-major, channels contiguous).
 *
 * Errors. Compute ops return nothing: a malformed call (bad shape, NULL
 * required buffer) is a programming error and aborts with a message naming
 * the op. A backend that fails asynchronously (CUDA) keeps a sticky error that
 * sd_backend_sync() returns. Memory ops return NULL / -1 with sd_last_error().
 *
 * Concurrency. A backend object is used by one thread at a time (like a CUDA
 * stream); each op may use all of the backend's threads internally.
 *
 * Scratch. Ops needing temporary memory (im2col columns, Winograd tiles,
 * attention score blocks) take it from the backend's workspace, which grows
 * on first use to the largest size seen and is then reused: no allocation in
 * steady state.
 *
 * The op set and the exact semantics of every op (layouts, which saved
 * activations a backward needs, accumulate rules) are documented where models
 * use them, in lib/nn/<layer>.h. Backends implement the vtable below; lib/nn wraps
 * each entry with argument checks.
 */
#ifndef SD_BACKEND_BACKEND_H
#define SD_BACKEND_BACKEND_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sd_backend sd_backend;

/* ---- op descriptors ------------------------------------------------------ */

/* 2-D convolution, groups 1, dilation 1, cross-correlation (PyTorch Conv2d).
 *   input  [B, C, H, W]        weight [OC, C, KH, KW]     bias [OC]
 *   output [B, OC, OH, OW],  OH = (H + pad_t + pad_b - KH) / stride + 1 (same for W)
 * Padding is zero and may be asymmetric: the VAE encoder's downsampler is
 * F.pad(x, (0,1,0,1)) followed by a k3 s2 p0 conv = pad_t 0, pad_b 1, pad_l 0, pad_r 1.
 * Build it with sd_conv2d_init / sd_conv2d_init_pad (lib/nn/conv2d.h). */
typedef struct {
    int B, C, H, W;
    int OC, KH, KW;
    int stride;
    int pad_t, pad_b, pad_l, pad_r;
    int OH, OW; /* derived */
} sd_conv2d_desc;

/* Multi-head scaled dot-product attention on token-major tensors.
 *   q   [B, Nq, ldq]  head h = columns [h*D, (h+1)*D)    (ldq >= H*D)
 *   k   [B, Nk, ldk]  v [B, Nk, ldv]                      (ldk, ldv >= H*D)
 *   out [B, Nq, ldo]  head h written to columns [h*D, (h+1)*D)
 *   lse [B, H, Nq]    per-row log-sum-exp of the scaled scores (saved for backward)
 * The batch stride of each tensor is N * ld. Strides let a fused QKV projection
 * ([B, N, 3C], ld 3C) feed the op without copies. Causal: key j > query i is
 * masked (CLIP); requires Nq == Nk. Build with sd_attn_init (lib/nn/attention.h). */
typedef struct {
    int B, H, Nq, Nk, D;
    int ldq, ldk, ldv, ldo;
    int causal;
    float scale; /* usually 1/sqrt(D) */
} sd_attn_desc;

/* ---- the op vtable --------------------------------------------------------
 * Argument order and semantics are those of the lib/nn wrappers of the same
 * name (see lib/nn/<layer>.h). Backward ops ACCUMULATE (+=) into every gradient
 * output; a NULL gradient output is skipped. */
typedef struct sd_backend_ops {
    /* memory */
    void *(*alloc)(sd_backend *be, size_t bytes); /* 64-byte aligned, zero-filled; NULL + error */
    void (*free)(sd_backend *be, void *p);
    int (*upload)(sd_backend *be, void *dst, const void *src_host, size_t bytes);
    int (*download)(sd_backend *be, void *dst_host, const void *src, size_t bytes);
    void (*zero)(sd_backend *be, void *p, size_t bytes);
    void (*copy)(sd_backend *be, void *dst, const void *src, size_t bytes);
    int (*sync)(sd_backend *be);
    void (*destroy)(sd_backend *be);

    /* matmul / linear */
    void (*matmul)(sd_backend *be, int transA, int transB, int M, int N, int K, float alpha,
                   const float *A, int lda, long long strideA, const float *B, int ldb, long long strideB,
                   float beta, float *C, int ldc, long long strideC, int batch);
    void (*linear_forward)(sd_backend *be, float *out, const float *inp, const float *w, const float *b,
                           int BT, int C, int OC);
    void (*linear_backward)(sd_backend *be, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int BT, int C, int OC);

    /* convolution */
    void (*conv2d_forward)(sd_backend *be, const sd_conv2d_desc *d, float *out, const float *inp,
                           const float *w, const float *b);
    void (*conv2d_backward)(sd_backend *be, const sd_conv2d_desc *d, float *dinp, float *dw, float *db,
                            const float *dout, const float *inp, const float *w);

    /* normalization */
    void (*groupnorm_forward)(sd_backend *be, float *out, float *mean, float *rstd, const float *inp,
                              const float *gamma, const float *beta, int B, int C, int HW, int G, float eps,
                              int silu);
    void (*groupnorm_backward)(sd_backend *be, float *dinp, float *dgamma, float *dbeta, const float *dout,
                               const float *inp, const float *mean, const float *rstd, const float *gamma,
                               const float *beta, int B, int C, int HW, int G, int silu);
    void (*layernorm_forward)(sd_backend *be, float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int N, int C, float eps);
    void (*layernorm_backward)(sd_backend *be, float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *mean, const float *rstd, const float *w, int N,
                               int C);

    /* activations: act = SD_ACT_* */
    void (*act_forward)(sd_backend *be, int act, float *out, const float *inp, size_t n);
    void (*act_backward)(sd_backend *be, int act, float *dinp, const float *dout, const float *inp, size_t n);
    void (*geglu_forward)(sd_backend *be, float *out, const float *inp, int N, int D);
    void (*geglu_backward)(sd_backend *be, float *dinp, const float *dout, const float *inp, int N, int D);
    void (*softmax_forward)(sd_backend *be, float *out, const float *inp, int N, int C);
    void (*softmax_backward)(sd_backend *be, float *dinp, const float *dout, const float *out, int N, int C);

    /* attention */
    void (*attention_forward)(sd_backend *be, const sd_attn_desc *d, float *out, float *lse, const float *q,
                              const float *k, const float *v);
    void (*attention_backward)(sd_backend *be, const sd_attn_desc *d, float *dq, float *dk, float *dv,
                               const float *dout, const float *q, const float *k, const float *v,
                               const float *out, const float *lse);

    /* elementwise, broadcast, layout */
    void (*add_forward)(sd_backend *be, float *out, const float *a, const float *b, size_t n);
    void (*add_backward)(sd_backend *be, float *da, float *db, const float *dout, size_t n);
    void (*add_channel_forward)(sd_backend *be, float *out, const float *inp, const float *v, int B, int C,
                                int HW);
    void (*add_channel_backward)(sd_backend *be, float *dinp, float *dv, const float *dout, int B, int C,
                                 int HW);
    void (*upsample_forward)(sd_backend *be, float *out, const float *inp, int B, int C, int H, int W, int OH,
                             int OW);
    void (*upsample_backward)(sd_backend *be, float *dinp, const float *dout, int B, int C, int H, int W,
                              int OH, int OW);
    void (*concat_forward)(sd_backend *be, float *out, const float *a, const float *b, int B, int C1, int C2,
                           int HW);
    void (*concat_backward)(sd_backend *be, float *da, float *db, const float *dout, int B, int C1, int C2,
                            int HW);
    /* out[b][s][r] (+)= inp[b][r][s] for r < R, s < S: NCHW <-> [B, HW, C] */
    void (*transpose)(sd_backend *be, float *out, const float *inp, int B, int R, int S, int accumulate);

    /* embeddings */
    void (*timestep_embedding)(sd_backend *be, float *out, const float *t, int B, int dim, int flip_sin_to_cos,
                               float freq_shift, float max_period);
    void (*embedding_forward)(sd_backend *be, float *out, const int32_t *ids, const float *tok,
                              const float *pos, int B, int L, int C, int V);
    void (*embedding_backward)(sd_backend *be, float *dtok, float *dpos, const float *dout, const int32_t *ids,
                               int B, int L, int C, int V);

    /* loss, BLAS-1, reductions */
    void (*mse_forward)(sd_backend *be, float *loss, float *per_sample, const float *pred, const float *target,
                        const float *weight, int B, size_t n);
    void (*mse_backward)(sd_backend *be, float *dpred, const float *pred, const float *target,
                         const float *weight, int B, size_t n, float dloss);
    void (*scale)(sd_backend *be, float *x, float a, size_t n);
    void (*axpy)(sd_backend *be, float *y, float a, const float *x, size_t n);
    void (*sumsq)(sd_backend *be, float *out, const float *x, size_t n);
} sd_backend_ops;

enum { SD_ACT_SILU = 0, SD_ACT_GELU = 1, SD_ACT_QUICK_GELU = 2 };

struct sd_backend {
    const sd_backend_ops *ops;
    const char *name; /* "cpu", "cuda" */
    void *ctx;        /* implementation private */
};

/* ---- creation ------------------------------------------------------------ */

/* The CPU backend: OpenMP + OpenBLAS (single-threaded sgemm calls inside our
 * own parallel regions). nthreads <= 0: omp_get_max_threads() (honours
 * OMP_NUM_THREADS). Returns NULL with an error on failure. */
sd_backend *sd_backend_cpu_create(int nthreads);
int sd_backend_cpu_threads(const sd_backend *be);

/* CPU convolution algorithm for 3x3 stride-1 convs (tests force each one):
 * AUTO picks by a cost model; IM2COL = im2col + sgemm; WINOGRAD = F(2x2,3x3).
 * The environment variable SD_CONV_ALGO=auto|im2col|winograd sets the default. */
enum { SD_CONV_AUTO = 0, SD_CONV_IM2COL = 1, SD_CONV_WINOGRAD = 2 };
void sd_backend_cpu_set_conv_algo(sd_backend *be, int algo);
/* Bytes currently held by the CPU scratch workspace (its high-water mark). */
size_t sd_backend_cpu_workspace_bytes(const sd_backend *be);

/* ---- memory (inline dispatch, so lib/nn needs no backend symbols) ---------- */

static inline void sd_backend_destroy(sd_backend *be) {
    if (be) be->ops->destroy(be);
}
static inline void *sd_backend_alloc(sd_backend *be, size_t bytes) { return be->ops->alloc(be, bytes); }
static inline float *sd_backend_alloc_f32(sd_backend *be, size_t n) {
    return (float *)be->ops->alloc(be, n * sizeof(float));
}
static inline void sd_backend_free(sd_backend *be, void *p) {
    if (p) be->ops->free(be, p);
}
static inline int sd_backend_upload(sd_backend *be, void *dst, const void *src, size_t bytes) {
    return be->ops->upload(be, dst, src, bytes);
}
static inline int sd_backend_download(sd_backend *be, void *dst, const void *src, size_t bytes) {
    return be->ops->download(be, dst, src, bytes);
}
static inline void sd_backend_zero(sd_backend *be, void *p, size_t bytes) { be->ops->zero(be, p, bytes); }
static inline void sd_backend_copy(sd_backend *be, void *dst, const void *src, size_t bytes) {
    be->ops->copy(be, dst, src, bytes);
}
static inline int sd_backend_sync(sd_backend *be) { return be->ops->sync(be); }

#endif
