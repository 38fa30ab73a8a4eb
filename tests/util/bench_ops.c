/* bench_ops.c — time one lib/nn op (forward and backward) on the CPU backend.
 * Driven by bench/bench_ops.py, which times the same case in PyTorch in the
 * same run and prints the comparison.
 *
 *   bench_ops [-t THREADS] [-n ITERS] [-a auto|im2col|winograd] [-c] OP ARGS...
 *     -c: time with process CPU time (use with -t 1 on a busy machine)
 *     conv   B C H W OC K STRIDE PAD
 *     linear BT C OC
 *     attn   B H NQ NK D CAUSAL
 *     gn     B C HW G SILU
 *     gemm   M N K            (square-ish sgemm: the practical FMA peak)
 * Prints one JSON line: {"fwd_ms": median, "bwd_ms": median, "fwd_min_ms": ..., "bwd_min_ms": ...}.
 * Inputs are random; timings exclude allocation (one warm-up call first). */
#include "backend/backend.h"
#include "core/error.h"
#include "nn/nn.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int use_cputime; /* -c: process CPU time instead of wall time (robust on a shared machine) */
static double now(void) {
    struct timespec t;
    clock_gettime(use_cputime ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *rnd(sd_backend *be, size_t n, float a) {
    float *p = sd_backend_alloc_f32(be, n);
    if (!p) sd_die_last();
    uint32_t s = (uint32_t)n * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = a * ((float)(s >> 8) / 16777216.0f * 2.0f - 1.0f);
    }
    return p;
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double med, min;
} stat;

static stat summarize(double *t, int n) {
    qsort(t, n, sizeof *t, cmpd);
    stat s = {n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]), t[0]};
    return s;
}

#define TIME(ITERS, OUT, STMT)                                                              \
    do {                                                                                    \
        STMT;                                                                               \
        double ts_[256];                                                                    \
        for (int i_ = 0; i_ < (ITERS); i_++) {                                              \
            double t0_ = now();                                                             \
            STMT;                                                                           \
            ts_[i_] = (now() - t0_) * 1e3;                                                  \
        }                                                                                   \
        OUT = summarize(ts_, (ITERS));                                                      \
    } while (0)

static void usage(void) {
    fprintf(stderr, "usage: bench_ops [-t THREADS] [-n ITERS] [-a ALGO] [-c] conv|linear|attn|gn|gemm ARGS...\n");
    exit(2);
}

int main(int argc, char **argv) {
    int nt = 2, iters = 5, algo = SD_CONV_AUTO, opt;
    sd_set_progname("bench_ops");
    while ((opt = getopt(argc, argv, "t:n:a:c")) != -1) {
        if (opt == 't') nt = atoi(optarg);
        else if (opt == 'n') iters = atoi(optarg);
        else if (opt == 'c') use_cputime = 1;
        else if (opt == 'a') algo = !strcmp(optarg, "im2col") ? SD_CONV_IM2COL : !strcmp(optarg, "winograd") ? SD_CONV_WINOGRAD : SD_CONV_AUTO;
        else usage();
    }
    if (iters < 1 || iters > 256 || optind >= argc) usage();
    const char *op = argv[optind];
    int na = argc - optind - 1;
    int a[16] = {0};
    for (int i = 0; i < na && i < 16; i++) a[i] = atoi(argv[optind + 1 + i]);
    sd_backend *be = sd_backend_cpu_create(nt);
    if (!be) sd_die_last();
    sd_backend_cpu_set_conv_algo(be, algo);
    stat f = {0, 0}, b = {0, 0};

    if (!strcmp(op, "conv") && na == 8) {
        sd_conv2d_desc d = sd_conv2d_init(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
        size_t nx = (size_t)d.B * d.C * d.H * d.W, nw = (size_t)d.OC * d.C * d.KH * d.KW;
        size_t ny = (size_t)d.B * d.OC * d.OH * d.OW;
        float *x = rnd(be, nx, 1), *w = rnd(be, nw, 0.05f), *bias = rnd(be, d.OC, 1), *y = rnd(be, ny, 1);
        float *gy = rnd(be, ny, 1), *gx = rnd(be, nx, 0), *gw = rnd(be, nw, 0), *gb = rnd(be, d.OC, 0);
        TIME(iters, f, sd_conv2d_forward(be, &d, y, x, w, bias));
        TIME(iters, b, sd_conv2d_backward(be, &d, gx, gw, gb, gy, x, w));
    } else if (!strcmp(op, "linear") && na == 3) {
        int BT = a[0], C = a[1], OC = a[2];
        float *x = rnd(be, (size_t)BT * C, 1), *w = rnd(be, (size_t)OC * C, 0.05f), *bias = rnd(be, OC, 1);
        float *y = rnd(be, (size_t)BT * OC, 0), *gy = rnd(be, (size_t)BT * OC, 1), *gx = rnd(be, (size_t)BT * C, 0);
        float *gw = rnd(be, (size_t)OC * C, 0), *gb = rnd(be, OC, 0);
        TIME(iters, f, sd_linear_forward(be, y, x, w, bias, BT, C, OC));
        TIME(iters, b, sd_linear_backward(be, gx, gw, gb, gy, x, w, BT, C, OC));
    } else if (!strcmp(op, "attn") && na == 6) {
        sd_attn_desc d = sd_attn_init(a[0], a[1], a[2], a[3], a[4], a[5]);
        int C = d.H * d.D;
        size_t nq = (size_t)d.B * d.Nq * C, nk = (size_t)d.B * d.Nk * C;
        float *q = rnd(be, nq, 1), *k = rnd(be, nk, 1), *v = rnd(be, nk, 1), *o = rnd(be, nq, 0);
        float *lse = rnd(be, (size_t)d.B * d.H * d.Nq, 0), *go = rnd(be, nq, 1);
        float *gq = rnd(be, nq, 0), *gk = rnd(be, nk, 0), *gv = rnd(be, nk, 0);
        TIME(iters, f, sd_attention_forward(be, &d, o, lse, q, k, v));
        TIME(iters, b, sd_attention_backward(be, &d, gq, gk, gv, go, q, k, v, o, lse));
    } else if (!strcmp(op, "gn") && na == 5) {
        int B = a[0], C = a[1], HW = a[2], G = a[3], silu = a[4];
        size_t n = (size_t)B * C * HW;
        float *x = rnd(be, n, 2), *y = rnd(be, n, 0), *ga = rnd(be, C, 1), *bt = rnd(be, C, 1);
        float *m = rnd(be, (size_t)B * G, 0), *r = rnd(be, (size_t)B * G, 0), *gy = rnd(be, n, 1), *gx = rnd(be, n, 0);
        float *gg = rnd(be, C, 0), *gb = rnd(be, C, 0);
        TIME(iters, f, sd_groupnorm_forward(be, y, m, r, x, ga, bt, B, C, HW, G, 1e-5f, silu));
        TIME(iters, b, sd_groupnorm_backward(be, gx, gg, gb, gy, x, m, r, ga, bt, B, C, HW, G, silu));
    } else if (!strcmp(op, "gemm") && na == 3) {
        int M = a[0], N = a[1], K = a[2];
        float *A = rnd(be, (size_t)M * K, 1), *B = rnd(be, (size_t)K * N, 1), *C = rnd(be, (size_t)M * N, 0);
        TIME(iters, f, sd_matmul(be, 0, 0, M, N, K, 1.0f, A, K, 0, B, N, 0, 0.0f, C, N, 0, 1));
    } else {
        usage();
    }
    printf("{\"fwd_ms\": %.4f, \"bwd_ms\": %.4f, \"fwd_min_ms\": %.4f, \"bwd_min_ms\": %.4f, \"threads\": %d}\n", f.med,
           b.med, f.min, b.min, sd_backend_cpu_threads(be));
    /* buffers are released with the process */
    sd_backend_destroy(be);
    return 0;
}
