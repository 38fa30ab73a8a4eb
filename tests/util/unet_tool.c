/* unet_tool.c — time the UNet on the CPU backend (driver of bench/bench_unet.sh).
 *
 *   unet_tool forward MODEL_DIR [--batch B] [--size H W] [--ctx-len L] [--iters N] [--warmup N]
 *                               [--threads T] [--profile]
 *   unet_tool train   MODEL_DIR [same] [--checkpointing]
 *
 * Inputs are random (Philox, fixed seed). forward: one sd_unet_forward per
 * iteration. train: zero the gradient buffer, train_forward, MSE loss against
 * a random target, its gradient, backward (no optimizer). Prints one JSON
 * line: seconds per iteration (min and mean over the timed iterations), peak
 * RSS overall and during the timed iterations (VmHWM reset after loading via
 * /proc/self/clear_refs), planned activation bytes, and with --profile the
 * per-layer-kind seconds of the last iteration.
 */
#include "backend/backend.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "models/modeldir.h"
#include "models/unet.h"
#include "nn/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long vm_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') v = atol(line + n + 1);
    if (f) fclose(f);
    return v;
}

static void reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static void randn(float *x, size_t n, uint64_t stream) {
    sd_rng r;
    sd_rng_init(&r, 1234, stream);
    sd_rng_normal(&r, x, n);
}

int main(int argc, char **argv) {
    sd_set_progname("unet_tool");
    if (argc < 3) {
        fprintf(stderr, "usage: unet_tool forward|train MODEL_DIR [--batch B] [--size H W] [--ctx-len L] "
                        "[--iters N] [--warmup N] [--threads T] [--checkpointing] [--profile]\n");
        return 2;
    }
    const char *mode = argv[1], *dir = argv[2];
    int B = 1, H = 32, W = 32, L = 77, iters = 1, warmup = 1, threads = 0, ckpt = 0, prof = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 2 < argc) H = atoi(argv[++i]), W = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ctx-len") && i + 1 < argc) L = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--checkpointing")) ckpt = 1;
        else if (!strcmp(argv[i], "--profile")) prof = 1;
        else sd_die("unknown argument %s", argv[i]);
    }
    int train = !strcmp(mode, "train");
    if (!train && strcmp(mode, "forward")) sd_die("mode must be forward or train");
    sd_backend *be = sd_backend_cpu_create(threads);
    if (!be) sd_die_last();
    double t0 = sd_now();
    sd_model *m;
    sd_unet *u;
    if (sd_model_open(dir, NULL, &m) || sd_unet_load(m, be, &u)) sd_die_last();
    sd_model_close(m);
    double t_load = sd_now() - t0;
    const sd_unet_config *c = sd_unet_cfg(u);
    size_t nx = (size_t)B * c->in_channels * H * W, no = (size_t)B * c->out_channels * H * W;
    size_t nc = (size_t)B * L * c->cross_attention_dim[0], np = sd_unet_num_params(u);
    float *x = sd_backend_alloc_f32(be, nx), *ctx = sd_backend_alloc_f32(be, nc), *out = sd_backend_alloc_f32(be, no);
    float *target = sd_backend_alloc_f32(be, no), *dout = sd_backend_alloc_f32(be, no);
    float *grads = train ? sd_backend_alloc_f32(be, np) : NULL;
    if (!x || !ctx || !out || !target || !dout || (train && !grads)) sd_die_last();
    randn(x, nx, 1);
    randn(ctx, nc, 2);
    randn(target, no, 3);
    float t[64];
    for (int b = 0; b < B && b < 64; b++) t[b] = (float)((37 + 411 * b) % 1000);
    sd_unet_train_state *st = NULL;
    sd_unet_train_opts opts = {ckpt};
    if (train && sd_unet_train_state_create(u, &opts, &st)) sd_die_last();
    sd_unet_mem mem;
    if (train) sd_unet_train_memory(u, B, H, W, L, ckpt, &mem);
    else sd_unet_forward_memory(u, B, H, W, L, &mem);
    long rss_loaded = vm_kb("VmRSS"), hwm_load = vm_kb("VmHWM");
    double tmin = 1e30, tsum = 0, loss_v = 0;
    for (int it = 0; it < warmup + iters; it++) {
        if (it == warmup) {
            reset_peak();
            if (prof) sd_unet_profile(u, 1);
        }
        if (prof && it >= warmup) sd_unet_profile(u, 1); /* keep only the last iteration */
        double s = sd_now();
        if (train) {
            float loss;
            sd_backend_zero(be, grads, np * sizeof(float));
            if (sd_unet_train_forward(u, st, x, t, ctx, B, H, W, L, out)) sd_die_last();
            sd_mse_forward(be, &loss, NULL, out, target, NULL, B, no / (size_t)B);
            sd_backend_zero(be, dout, no * sizeof(float));
            sd_mse_backward(be, dout, out, target, NULL, B, no / (size_t)B, 1.0f);
            if (sd_unet_backward(u, st, dout, grads, NULL)) sd_die_last();
            loss_v = loss;
        } else if (sd_unet_forward(u, x, t, ctx, B, H, W, L, out)) {
            sd_die_last();
        }
        double e = sd_now() - s;
        fprintf(stderr, "unet_tool: %s iteration %d: %.3f s\n", mode, it, e);
        if (it >= warmup) {
            tsum += e;
            if (e < tmin) tmin = e;
        }
    }
    double out_rms = 0;
    for (size_t i = 0; i < no; i++) out_rms += (double)out[i] * out[i];
    printf("{\"impl\": \"sdtools\", \"mode\": \"%s\", \"batch\": %d, \"h\": %d, \"w\": %d, \"L\": %d, "
           "\"threads\": %d, \"checkpointing\": %d, \"iters\": %d, \"sec_min\": %.4f, \"sec_mean\": %.4f, "
           "\"load_sec\": %.2f, \"rss_loaded_mb\": %.1f, \"peak_rss_mb\": %.1f, \"peak_rss_run_mb\": %.1f, "
           "\"plan_mb\": %.1f, \"workspace_mb\": %.1f, \"out_rms\": %.6f, \"loss\": %.6f",
           mode, B, H, W, L, sd_backend_cpu_threads(be), ckpt, iters, tmin, tsum / iters, t_load, rss_loaded / 1024.0,
           (hwm_load > vm_kb("VmHWM") ? hwm_load : vm_kb("VmHWM")) / 1024.0, vm_kb("VmHWM") / 1024.0, mem.total / 1048576.0, sd_backend_cpu_workspace_bytes(be) / 1048576.0,
           sqrt(out_rms / (double)no), loss_v);
    if (prof) {
        double sec[8];
        sd_unet_profile_get(u, sec);
        printf(", \"profile\": {\"fwd_stem_head\": %.3f, \"fwd_resnet\": %.3f, \"fwd_transformer\": %.3f, "
               "\"fwd_sampler\": %.3f, \"bwd_stem_head\": %.3f, \"bwd_resnet\": %.3f, \"bwd_transformer\": %.3f, "
               "\"bwd_sampler\": %.3f}",
               sec[0], sec[1], sec[2], sec[3], sec[4], sec[5], sec[6], sec[7]);
    }
    printf("}\n");
    sd_unet_train_state_free(st);
    sd_backend_free(be, x), sd_backend_free(be, ctx), sd_backend_free(be, out), sd_backend_free(be, target);
    sd_backend_free(be, dout), sd_backend_free(be, grads);
    sd_unet_free(u);
    sd_backend_destroy(be);
    return 0;
}
