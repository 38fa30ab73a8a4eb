// cuda_core.cu — Philox4x32-10 and dtype conversion kernels (see cuda_core.h).
#include "backend/cuda/cuda_core.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdio.h>

extern "C" int sd_set_error(const char *fmt, ...);

static int check(cudaError_t e, const char *what) {
    if (e != cudaSuccess) return sd_set_error("CUDA %s: %s", what, cudaGetErrorString(e));
    return 0;
}

extern "C" int sd_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky "no driver" error
        return 0;
    }
    return n;
}

extern "C" int sd_cuda_describe(char *buf, size_t bufsize) {
    cudaDeviceProp p;
    if (check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties")) return -1;
    snprintf(buf, bufsize, "%s, sm_%d%d, %d SMs, %.1f GiB", p.name, p.major, p.minor, p.multiProcessorCount,
             (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return 0;
}

// ---- Philox: the same block function and stream layout as core/rng.c -----

__device__ __forceinline__ void philox(uint32_t c[4], uint32_t k0, uint32_t k1) {
#pragma unroll
    for (int r = 0; r < 10; r++) {
        uint32_t hi0 = __umulhi(0xD2511F53u, c[0]), lo0 = 0xD2511F53u * c[0];
        uint32_t hi1 = __umulhi(0xCD9E8D57u, c[2]), lo1 = 0xCD9E8D57u * c[2];
        uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

__device__ __forceinline__ void block(uint64_t seed, uint64_t stream, uint64_t b, uint32_t w[4]) {
    w[0] = (uint32_t)b; w[1] = (uint32_t)(b >> 32); w[2] = (uint32_t)stream; w[3] = (uint32_t)(stream >> 32);
    philox(w, (uint32_t)seed, (uint32_t)(seed >> 32));
}

// Box-Muller in double, rounded to float: matches the CPU to the last bit in
// all but (rare) cases where the double results straddle a float rounding edge.
__device__ __forceinline__ void box_muller(uint32_t a, uint32_t b, float *z0, float *z1) {
    double u1 = ((double)(a >> 8) + 1.0) * 0x1p-24;
    double u2 = (double)(b >> 8) * 0x1p-24;
    double rad = sqrt(-2.0 * log(u1));
    double s, c;
    sincos(2.0 * M_PI * u2, &s, &c); /* the CPU computes th = 2*M_PI*u2 the same way */
    *z0 = (float)(rad * c);
    *z1 = (float)(rad * s);
}

__global__ void k_normal(uint64_t seed, uint64_t stream, uint64_t offset, float *out, size_t n) {
    size_t b = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (4 * b >= n) return;
    uint32_t w[4];
    float z[4];
    block(seed, stream, offset + b, w);
    box_muller(w[0], w[1], &z[0], &z[1]);
    box_muller(w[2], w[3], &z[2], &z[3]);
    for (int j = 0; j < 4 && 4 * b + j < n; j++) out[4 * b + j] = z[j];
}

__global__ void k_uniform(uint64_t seed, uint64_t stream, uint64_t offset, float *out, size_t n) {
    size_t b = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (4 * b >= n) return;
    uint32_t w[4];
    block(seed, stream, offset + b, w);
    for (int j = 0; j < 4 && 4 * b + j < n; j++) out[4 * b + j] = (float)(w[j] >> 8) * 0x1p-24f;
}

static unsigned grid_for(size_t nthreads, int bs) { return (unsigned)((nthreads + bs - 1) / bs); }

extern "C" int sd_cuda_rng_normal(uint64_t seed, uint64_t stream, uint64_t offset, float *out, size_t n, void *s) {
    if (!n) return 0;
    k_normal<<<grid_for((n + 3) / 4, 256), 256, 0, (cudaStream_t)s>>>(seed, stream, offset, out, n);
    return check(cudaGetLastError(), "rng_normal launch");
}

extern "C" int sd_cuda_rng_uniform(uint64_t seed, uint64_t stream, uint64_t offset, float *out, size_t n, void *s) {
    if (!n) return 0;
    k_uniform<<<grid_for((n + 3) / 4, 256), 256, 0, (cudaStream_t)s>>>(seed, stream, offset, out, n);
    return check(cudaGetLastError(), "rng_uniform launch");
}

// ---- conversions ------------------------------------------------------------

__global__ void k_f32_to_f16(const float *in, uint16_t *out, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = __half_as_ushort(__float2half_rn(in[i]));
}
__global__ void k_f32_to_bf16(const float *in, uint16_t *out, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(in[i]));
}
__global__ void k_f16_to_f32(const uint16_t *in, float *out, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = __half2float(__ushort_as_half(in[i]));
}
__global__ void k_bf16_to_f32(const uint16_t *in, float *out, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = __bfloat162float(__ushort_as_bfloat16(in[i]));
}

#define LAUNCH(kernel, in, out, n, s, what)                                    \
    do {                                                                       \
        if (!(n)) return 0;                                                    \
        kernel<<<grid_for((n), 256), 256, 0, (cudaStream_t)(s)>>>(in, out, n); \
        return check(cudaGetLastError(), what);                                \
    } while (0)

extern "C" int sd_cuda_f32_to_f16(const float *in, uint16_t *out, size_t n, void *s) { LAUNCH(k_f32_to_f16, in, out, n, s, "f32_to_f16"); }
extern "C" int sd_cuda_f32_to_bf16(const float *in, uint16_t *out, size_t n, void *s) { LAUNCH(k_f32_to_bf16, in, out, n, s, "f32_to_bf16"); }
extern "C" int sd_cuda_f16_to_f32(const uint16_t *in, float *out, size_t n, void *s) { LAUNCH(k_f16_to_f32, in, out, n, s, "f16_to_f32"); }
extern "C" int sd_cuda_bf16_to_f32(const uint16_t *in, float *out, size_t n, void *s) { LAUNCH(k_bf16_to_f32, in, out, n, s, "bf16_to_f32"); }
