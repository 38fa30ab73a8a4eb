// test_cuda_core.cu — the device Philox stream and conversions against the CPU
// implementations (core/rng.c, core/tensor.c). Without a CUDA device it reports
// a TAP skip and exits 0 (CI builds it with nvcc but has no GPU).
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "core/error.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "backend/cuda/cuda_core.h"
}

static int n_test = 0, n_failed = 0;
static void report(int ok, const char *name) {
    n_test++;
    if (!ok) n_failed++;
    printf("%sok %d - %s\n", ok ? "" : "not ", n_test, name);
}

static int ulp_diff(float a, float b) {
    int32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    return abs(x - y);
}

int main(void) {
    if (sd_cuda_device_count() == 0) {
        printf("ok 1 - # SKIP no CUDA device\n1..1\n");
        return 0;
    }
    char desc[256];
    sd_cuda_describe(desc, sizeof desc);
    printf("# device: %s\n", desc);
    const size_t n = (1 << 20) + 3;
    float *cpu = (float *)malloc(n * 4), *gpu = (float *)malloc(n * 4), *d;
    cudaMalloc(&d, n * 4);

    sd_rng_normal_at(1234, 7, 99, cpu, n);
    if (sd_cuda_rng_normal(1234, 7, 99, d, n, 0)) { printf("# %s\n", sd_last_error()); return 1; }
    cudaMemcpy(gpu, d, n * 4, cudaMemcpyDeviceToHost);
    int maxu = 0;
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) {
        int u = ulp_diff(cpu[i], gpu[i]);
        if (u) differ++;
        if (u > maxu) maxu = u;
    }
    printf("# normal: %zu of %zu differ, max %d ulp\n", differ, n, maxu);
    report(maxu <= 2, "device Philox normals equal the CPU stream (<= 2 ulp)");

    sd_rng_uniform_at(5, 0, 3, cpu, n);
    sd_cuda_rng_uniform(5, 0, 3, d, n, 0);
    cudaMemcpy(gpu, d, n * 4, cudaMemcpyDeviceToHost);
    report(memcmp(cpu, gpu, n * 4) == 0, "device Philox uniforms are bit-identical");

    // conversions: every f16/bf16 pattern back to f32, and f32 -> f16/bf16 on random values
    uint16_t *h = (uint16_t *)malloc(65536 * 2), *hd;
    cudaMalloc(&hd, 65536 * 2);
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    cudaMemcpy(hd, h, 65536 * 2, cudaMemcpyHostToDevice);
    sd_cuda_f16_to_f32(hd, d, 65536, 0);
    cudaMemcpy(gpu, d, 65536 * 4, cudaMemcpyDeviceToHost);
    int bad = 0;
    for (int i = 0; i < 65536; i++) {
        float c = sd_f16_to_f32((uint16_t)i);
        if (!(c == gpu[i] || (c != c && gpu[i] != gpu[i]))) bad++;
    }
    report(bad == 0, "f16 -> f32 on the device equals the CPU for all 65536 patterns");
    sd_rng_normal_at(9, 0, 0, cpu, n);
    for (size_t i = 0; i < n; i++) cpu[i] *= 1000.0f;
    cudaMemcpy(d, cpu, n * 4, cudaMemcpyHostToDevice);
    uint16_t *out16 = (uint16_t *)malloc(n * 2), *od;
    cudaMalloc(&od, n * 2);
    sd_cuda_f32_to_f16(d, od, n, 0);
    cudaMemcpy(out16, od, n * 2, cudaMemcpyDeviceToHost);
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += out16[i] != sd_f32_to_f16(cpu[i]);
    report(bad == 0, "f32 -> f16 rounding matches the CPU");
    sd_cuda_f32_to_bf16(d, od, n, 0);
    cudaMemcpy(out16, od, n * 2, cudaMemcpyDeviceToHost);
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += out16[i] != sd_f32_to_bf16(cpu[i]);
    report(bad == 0, "f32 -> bf16 rounding matches the CPU");
    printf("1..%d\n", n_test);
    return n_failed ? 1 : 0;
}
