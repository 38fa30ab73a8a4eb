/* vae_bench.c — time one VAE encode or decode (bench/bench_vae.sh).
 *
 *   vae_bench MODEL enc|dec SIZE [--batch B] [--warmup N] [--threads T] [--out FILE] [--profile]
 *   vae_bench peak [THREADS]     measured FP32 FMA throughput (GFLOP/s) of THREADS threads
 *
 * MODEL: a diffusers pipeline or vae/ component directory. SIZE is the image
 * side in pixels (decode: latent side SIZE / factor). Input: det_uniform
 * (tests/ref/gen_models_forward.py) seed 1 for images, 3·det_uniform seed 2
 * for latents — bench/vae_torch.py makes the same. Runs --warmup untimed
 * calls, then one timed call, and prints one JSON line:
 *   {"side":"sdtools","op":..,"size":..,"batch":..,"threads":..,"seconds":..,
 *    "others_pct":..,"load_seconds":..,"workspace_mb":..,"backend_ws_mb":..,"maxrss_mb":..}
 * maxrss_mb is the process's peak resident set (getrusage), weights included;
 * others_pct the share of all CPUs other processes used during the timed call.
 * --out writes the output as raw little-endian f32. --profile prints the
 * time spent per op kind (on stderr) by wrapping the backend's op table. */
#include "backend/backend.h"
#include "core/error.h"
#include "core/fs.h"
#include "models/vae.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- --profile: a backend whose ops time the CPU backend's ------------------- */

enum { P_CONV3, P_CONV3S2, P_CONV1, P_GN, P_ADD, P_ATTN, P_LINEAR, P_UP, P_TRANSPOSE, P_N };
static const char *pname[P_N] = {"conv3x3", "conv3x3 s2", "conv1x1", "groupnorm", "add", "attention",
                                 "linear", "upsample", "transpose"};
static double ptime[P_N], pflop[P_N];
static int pcalls[P_N];
static const sd_backend_ops *base;
static sd_backend_ops prof_ops;

#define TIMED(k, flops, call)                                                                                     \
    do {                                                                                                          \
        double t0_ = sd_now();                                                                                    \
        call;                                                                                                     \
        ptime[k] += sd_now() - t0_;                                                                               \
        pflop[k] += (flops);                                                                                      \
        pcalls[k]++;                                                                                              \
    } while (0)

static void p_conv(sd_backend *be, const sd_conv2d_desc *d, float *out, const float *inp, const float *w,
                   const float *b) {
    int k = d->KH == 1 ? P_CONV1 : d->stride == 2 ? P_CONV3S2 : P_CONV3;
    double fl = 2.0 * d->B * d->OC * d->OH * d->OW * (double)d->C * d->KH * d->KW;
    TIMED(k, fl, base->conv2d_forward(be, d, out, inp, w, b));
}
static void p_gn(sd_backend *be, float *out, float *mean, float *rstd, const float *inp, const float *g,
                 const float *bt, int B, int C, int HW, int G, float eps, int silu) {
    TIMED(P_GN, 0, base->groupnorm_forward(be, out, mean, rstd, inp, g, bt, B, C, HW, G, eps, silu));
}
static void p_add(sd_backend *be, float *out, const float *a, const float *b, size_t n) {
    TIMED(P_ADD, 0, base->add_forward(be, out, a, b, n));
}
static void p_attn(sd_backend *be, const sd_attn_desc *d, float *out, float *lse, const float *q, const float *k,
                   const float *v) {
    TIMED(P_ATTN, 4.0 * d->B * d->H * d->Nq * (double)d->Nk * d->D, base->attention_forward(be, d, out, lse, q, k, v));
}
static void p_linear(sd_backend *be, float *out, const float *inp, const float *w, const float *b, int BT, int C,
                     int OC) {
    TIMED(P_LINEAR, 2.0 * BT * (double)C * OC, base->linear_forward(be, out, inp, w, b, BT, C, OC));
}
static void p_up(sd_backend *be, float *out, const float *inp, int B, int C, int H, int W, int OH, int OW) {
    TIMED(P_UP, 0, base->upsample_forward(be, out, inp, B, C, H, W, OH, OW));
}
static void p_tr(sd_backend *be, float *out, const float *inp, int B, int R, int S, int acc) {
    TIMED(P_TRANSPOSE, 0, base->transpose(be, out, inp, B, R, S, acc));
}

static void profile_backend(sd_backend *be) {
    base = be->ops;
    prof_ops = *base;
    prof_ops.conv2d_forward = p_conv;
    prof_ops.groupnorm_forward = p_gn;
    prof_ops.add_forward = p_add;
    prof_ops.attention_forward = p_attn;
    prof_ops.linear_forward = p_linear;
    prof_ops.upsample_forward = p_up;
    prof_ops.transpose = p_tr;
    be->ops = &prof_ops;
}

static void profile_report(double total) {
    double sum = 0;
    for (int k = 0; k < P_N; k++) sum += ptime[k];
    fprintf(stderr, "%-12s %6s %9s %6s %9s\n", "op", "calls", "seconds", "share", "GFLOP/s");
    for (int k = 0; k < P_N; k++) {
        if (!pcalls[k]) continue;
        fprintf(stderr, "%-12s %6d %9.3f %5.1f%% ", pname[k], pcalls[k], ptime[k], 100 * ptime[k] / total);
        if (pflop[k] > 0) fprintf(stderr, "%9.1f\n", pflop[k] / ptime[k] * 1e-9);
        else fprintf(stderr, "%9s\n", "-");
    }
    fprintf(stderr, "%-12s %6s %9.3f %5.1f%%\n", "other", "", total - sum, 100 * (total - sum) / total);
}

/* ---- peak: independent 512-bit FMA chains on every thread ----------------------- */

typedef float v16 __attribute__((vector_size(64)));

static double fma_peak(int threads) {
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        const long iters = 20000000;
        float sink = 0;
        double t0 = sd_now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        {
            v16 a, b;
            for (int i = 0; i < 16; i++) a[i] = 0.999f, b[i] = 0.001f * i;
            v16 c0 = b, c1 = b + 1, c2 = b + 2, c3 = b + 3, c4 = b + 4, c5 = b + 5;
            v16 c6 = b + 6, c7 = b + 7, c8 = b + 8, c9 = b + 9, c10 = b + 10, c11 = b + 11;
            for (long i = 0; i < iters; i++) {
                /* 12 independent chains cover FMA latency x throughput */
                c0 = c0 * a + b, c1 = c1 * a + b, c2 = c2 * a + b, c3 = c3 * a + b;
                c4 = c4 * a + b, c5 = c5 * a + b, c6 = c6 * a + b, c7 = c7 * a + b;
                c8 = c8 * a + b, c9 = c9 * a + b, c10 = c10 * a + b, c11 = c11 * a + b;
            }
            v16 sum = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
            for (int i = 0; i < 16; i++) sink += sum[i];
        }
        double t = sd_now() - t0, fl = (double)iters * 12 * 16 * 2 * threads;
        if (fl / t > best) best = fl / t;
        if (sink == 1234.5f) fprintf(stderr, " ");
    }
    return best * 1e-9;
}

/* CPU seconds (all processes, /proc/stat) and of this process: the share of
 * the machine other processes used during a timed call ("others_pct"), so a
 * measurement taken on a busy shared machine shows as such. */
static double machine_busy(void) {
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (!f) return 0;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
               &v[7]) != 8)
        v[0] = 0;
    fclose(f);
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}
static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void det_uniform(uint64_t seed, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (seed << 32) + i + 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        out[i] = (float)((double)(z >> 40) * (1.0 / 8388608.0) - 1.0);
    }
}

int main(int argc, char **argv) {
    sd_set_progname("vae_bench");
    if (argc >= 2 && !strcmp(argv[1], "peak")) {
        int t = argc >= 3 ? atoi(argv[2]) : 1;
        printf("%.1f\n", fma_peak(t > 0 ? t : 1));
        return 0;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: vae_bench MODEL enc|dec SIZE [--batch B] [--warmup N] [--threads T] [--out FILE] [--profile]\n");
        return 2;
    }
    const char *model = argv[1], *op = argv[2], *out_path = NULL;
    int size = atoi(argv[3]), B = 1, warmup = 0, threads = 0, profile = 0;
    for (int i = 4; i < argc; i += 2) {
        if (!strcmp(argv[i], "--profile")) {
            profile = 1;
            i--;
        } else if (i + 1 >= argc) sd_die("option %s needs a value", argv[i]);
        else if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--out")) out_path = argv[i + 1];
        else sd_die("unknown option %s", argv[i]);
    }
    int enc = !strcmp(op, "enc");
    if (!enc && strcmp(op, "dec")) sd_die("op must be enc or dec");

    sd_backend *be = sd_backend_cpu_create(threads);
    if (!be) sd_die_last();
    double t0 = sd_now();
    sd_model *m;
    sd_vae *v;
    if (sd_model_open(model, NULL, &m) || sd_vae_load(m, be, &v)) sd_die_last();
    sd_model_close(m);
    double load_s = sd_now() - t0;

    int f = v->factor, L = v->latent_channels, h = size / f;
    size_t nin = enc ? (size_t)B * v->cfg.in_channels * size * size : (size_t)B * L * h * h;
    size_t nout = enc ? (size_t)B * 2 * L * h * h : (size_t)B * v->cfg.out_channels * size * size;
    float *in = sd_backend_alloc_f32(be, nin), *out = sd_backend_alloc_f32(be, nout);
    if (!in || !out) sd_die_last();
    det_uniform(enc ? 1 : 2, in, nin);
    if (!enc)
        for (size_t i = 0; i < nin; i++) in[i] *= 3.0f;

    if (profile) profile_backend(be);
    double secs = 0, others = 0;
    for (int r = 0; r <= warmup; r++) {
        memset(ptime, 0, sizeof ptime), memset(pflop, 0, sizeof pflop), memset(pcalls, 0, sizeof pcalls);
        double b0 = machine_busy(), s0 = self_cpu();
        t0 = sd_now();
        int rc = enc ? sd_vae_encode(v, in, B, size, size, out) : sd_vae_decode(v, in, B, h, h, out);
        if (rc) sd_die_last();
        secs = sd_now() - t0;
        others = ((machine_busy() - b0) - (self_cpu() - s0)) / (secs * sysconf(_SC_NPROCESSORS_ONLN));
    }
    if (profile) profile_report(secs);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"side\":\"sdtools\",\"op\":\"%s\",\"size\":%d,\"batch\":%d,\"threads\":%d,\"seconds\":%.3f,"
           "\"others_pct\":%.0f,\"load_seconds\":%.3f,\"workspace_mb\":%.1f,\"backend_ws_mb\":%.1f,\"weights_mb\":%.1f,\"maxrss_mb\":%.1f}\n",
           op, size, B, sd_backend_cpu_threads(be), secs, others < 0 ? 0.0 : 100 * others, load_s, sd_vae_workspace_held(v) / 1048576.0,
           sd_backend_cpu_workspace_bytes(be) / 1048576.0, v->table.total * 4.0 / 1048576.0, ru.ru_maxrss / 1024.0);
    if (out_path && sd_write_file_atomic(out_path, out, nout * sizeof(float))) sd_die_last();
    sd_backend_free(be, in);
    sd_backend_free(be, out);
    sd_vae_free(v);
    sd_backend_destroy(be);
    return 0;
}
