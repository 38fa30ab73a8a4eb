/* cpu_backend.c — the CPU backend object: memory ops, workspace, sgemm
 * helpers and the op vtable. The ops themselves live in cpu_*.c. */
#include "backend/cpu/cpu.h"
#include "core/error.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- memory ---------------------------------------------------------------- */

static void *cpu_alloc(sd_backend *be, size_t bytes) {
    (void)be;
    size_t n = (bytes + 63) & ~(size_t)63;
    if (n == 0) n = 64;
    void *p = aligned_alloc(64, n);
    if (!p) {
        sd_set_error("cpu backend: cannot allocate %zu bytes", bytes);
        return NULL;
    }
    memset(p, 0, n);
    return p;
}

static void cpu_free(sd_backend *be, void *p) {
    (void)be;
    free(p);
}

static int cpu_upload(sd_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst, src, bytes);
    return 0;
}

static int cpu_download(sd_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst, src, bytes);
    return 0;
}

/* Large fills and copies are memory-bound; two threads get more bandwidth. */
static void cpu_zero(sd_backend *be, void *p, size_t bytes) {
    int nt = sd_cpu_nt(be);
    if (bytes == 0) return; /* p may be NULL for an empty buffer */
    if (bytes < (1u << 20) || nt == 1) {
        memset(p, 0, bytes);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        long long lo, hi;
        sd_cpu_range((long long)bytes, omp_get_thread_num(), nt, &lo, &hi);
        memset((char *)p + lo, 0, (size_t)(hi - lo));
    }
}

static void cpu_copy(sd_backend *be, void *dst, const void *src, size_t bytes) {
    int nt = sd_cpu_nt(be);
    if (dst == src || bytes == 0) return;
    if (bytes < (1u << 20) || nt == 1) {
        memmove(dst, src, bytes);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        long long lo, hi;
        sd_cpu_range((long long)bytes, omp_get_thread_num(), nt, &lo, &hi);
        memcpy((char *)dst + lo, (const char *)src + lo, (size_t)(hi - lo));
    }
}

static int cpu_sync(sd_backend *be) {
    (void)be;
    return 0;
}

static void cpu_destroy(sd_backend *be) {
    sd_cpu_ctx *c = sd_cpu(be);
    free(c->ws);
    free(c);
    free(be);
}

float *sd_cpu_ws(sd_backend *be, size_t n) {
    sd_cpu_ctx *c = sd_cpu(be);
    if (n > c->ws_floats) {
        free(c->ws);
        size_t bytes = sd_cpu_pad16(n) * sizeof(float);
        c->ws = aligned_alloc(64, bytes);
        if (!c->ws) sd_die("cpu backend: cannot allocate a %zu-byte workspace", bytes);
        c->ws_floats = sd_cpu_pad16(n);
    }
    return c->ws;
}

/* ---- sgemm ------------------------------------------------------------------- */

void sd_cpu_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* C = beta C (BLAS would too, but some builds dislike K == 0) */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
}

void sd_cpu_sgemm_par(sd_backend *be, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    int nt = sd_cpu_nt(be);
    /* Small products are not worth a fork/join. */
    if (nt == 1 || (double)M * N * K < 2e6) {
        sd_cpu_sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int split_m = M >= N;
    int n_items = split_m ? M : N;
    int parts = nt;
    /* pieces aligned to 16 rows/columns (the micro-kernel width) */
    int blocks = (n_items + 15) / 16;
    if (blocks < parts) parts = blocks;
#pragma omp parallel num_threads(parts)
    {
        long long lo, hi;
        sd_cpu_range(blocks, omp_get_thread_num(), parts, &lo, &hi);
        int a = (int)lo * 16, e = (int)hi * 16;
        if (e > n_items) e = n_items;
        if (e > a) {
            if (split_m) {
                const float *Ap = transA ? A + a : A + (size_t)a * lda;
                sd_cpu_sgemm(transA, transB, e - a, N, K, alpha, Ap, lda, B, ldb, beta, C + (size_t)a * ldc, ldc);
            } else {
                const float *Bp = transB ? B + (size_t)a * ldb : B + a;
                sd_cpu_sgemm(transA, transB, M, e - a, K, alpha, A, lda, Bp, ldb, beta, C + a, ldc);
            }
        }
    }
}

void sd_cpu_matmul(sd_backend *be, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                   int lda, long long strideA, const float *B, int ldb, long long strideB, float beta, float *C,
                   int ldc, long long strideC, int batch) {
    int nt = sd_cpu_nt(be);
    if (batch >= nt && nt > 1) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int i = 0; i < batch; i++)
            sd_cpu_sgemm(transA, transB, M, N, K, alpha, A + i * strideA, lda, B + i * strideB, ldb, beta,
                         C + i * strideC, ldc);
    } else {
        for (int i = 0; i < batch; i++)
            sd_cpu_sgemm_par(be, transA, transB, M, N, K, alpha, A + i * strideA, lda, B + i * strideB, ldb, beta,
                             C + i * strideC, ldc);
    }
}

/* ---- the object ---------------------------------------------------------- */

static const sd_backend_ops cpu_ops = {
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .sync = cpu_sync,
    .destroy = cpu_destroy,
    .matmul = sd_cpu_matmul,
    .linear_forward = sd_cpu_linear_forward,
    .linear_backward = sd_cpu_linear_backward,
    .conv2d_forward = sd_cpu_conv2d_forward,
    .conv2d_backward = sd_cpu_conv2d_backward,
    .groupnorm_forward = sd_cpu_groupnorm_forward,
    .groupnorm_backward = sd_cpu_groupnorm_backward,
    .layernorm_forward = sd_cpu_layernorm_forward,
    .layernorm_backward = sd_cpu_layernorm_backward,
    .act_forward = sd_cpu_act_forward,
    .act_backward = sd_cpu_act_backward,
    .geglu_forward = sd_cpu_geglu_forward,
    .geglu_backward = sd_cpu_geglu_backward,
    .softmax_forward = sd_cpu_softmax_forward,
    .softmax_backward = sd_cpu_softmax_backward,
    .attention_forward = sd_cpu_attention_forward,
    .attention_backward = sd_cpu_attention_backward,
    .add_forward = sd_cpu_add_forward,
    .add_backward = sd_cpu_add_backward,
    .add_channel_forward = sd_cpu_add_channel_forward,
    .add_channel_backward = sd_cpu_add_channel_backward,
    .upsample_forward = sd_cpu_upsample_forward,
    .upsample_backward = sd_cpu_upsample_backward,
    .concat_forward = sd_cpu_concat_forward,
    .concat_backward = sd_cpu_concat_backward,
    .transpose = sd_cpu_transpose,
    .timestep_embedding = sd_cpu_timestep_embedding,
    .embedding_forward = sd_cpu_embedding_forward,
    .embedding_backward = sd_cpu_embedding_backward,
    .mse_forward = sd_cpu_mse_forward,
    .mse_backward = sd_cpu_mse_backward,
    .scale = sd_cpu_scale,
    .axpy = sd_cpu_axpy,
    .sumsq = sd_cpu_sumsq,
};

sd_backend *sd_backend_cpu_create(int nthreads) {
    if (nthreads <= 0) nthreads = omp_get_max_threads();
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 1024) {
        sd_set_error("cpu backend: %d threads is too many", nthreads);
        return NULL;
    }
    /* We parallelize around single-threaded sgemm calls (see cpu.h). */
    openblas_set_num_threads(1);
    sd_backend *be = sd_xcalloc(1, sizeof *be);
    sd_cpu_ctx *c = sd_xcalloc(1, sizeof *c);
    c->nthreads = nthreads;
    c->conv_algo = SD_CONV_AUTO;
    /* Knobs for tests and benchmarks (results agree to rounding either way):
     *   SD_CONV_ALGO=auto|im2col|winograd  3x3 stride-1 conv algorithm
     *   SD_WINO_BLAS=1                     Winograd GEMMs on OpenBLAS, not our kernel
     *   SD_WINO_TC=N                       Winograd tiles per chunk (rounded up to 32)
     *   SD_ATTN_QB=N                       attention queries per block (32..256) */
    const char *e = getenv("SD_CONV_ALGO");
    if (e && !strcasecmp(e, "im2col")) c->conv_algo = SD_CONV_IM2COL;
    else if (e && !strcasecmp(e, "winograd")) c->conv_algo = SD_CONV_WINOGRAD;
    e = getenv("SD_WINO_BLAS");
    c->wino_blas = e && *e && strcmp(e, "0") != 0;
    e = getenv("SD_ATTN_QB");
    c->attn_qb = e ? atoi(e) : 0;
    e = getenv("SD_WINO_TC");
    c->wino_tc = e ? atoi(e) : 0;
    if (c->wino_tc < 0 || c->wino_tc > 4096) c->wino_tc = 0;
    be->ops = &cpu_ops;
    be->name = "cpu";
    be->ctx = c;
    return be;
}

int sd_backend_cpu_threads(const sd_backend *be) { return ((const sd_cpu_ctx *)be->ctx)->nthreads; }

void sd_backend_cpu_set_conv_algo(sd_backend *be, int algo) { sd_cpu(be)->conv_algo = algo; }

size_t sd_backend_cpu_workspace_bytes(const sd_backend *be) {
    return ((const sd_cpu_ctx *)be->ctx)->ws_floats * sizeof(float);
}
