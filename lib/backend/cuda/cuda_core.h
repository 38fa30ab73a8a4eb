/* cuda_core.h — CUDA building blocks shared by the GPU backend: the Philox
 * stream of core/rng.h on the device (same numbers as the CPU) and dtype
 * conversion kernels. C API; implemented in *.cu, compiled by `make cuda`.
 */
#ifndef SD_BACKEND_CUDA_CORE_H
#define SD_BACKEND_CUDA_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices (0 when there is no driver/device), and a one-line
 * description of device 0 into buf. */
int sd_cuda_device_count(void);
int sd_cuda_describe(char *buf, size_t bufsize);

/* Device versions of sd_rng_normal_at / sd_rng_uniform_at (core/rng.h): fill
 * out[0..n) (device memory) with the values of blocks starting at offset.
 * Returns 0 or -1 with sd_last_error() set. */
int sd_cuda_rng_normal(uint64_t seed, uint64_t stream, uint64_t offset, float *out, size_t n, void *cuda_stream);
int sd_cuda_rng_uniform(uint64_t seed, uint64_t stream, uint64_t offset, float *out, size_t n, void *cuda_stream);

/* Elementwise dtype conversions on the device, round-to-nearest-even. */
int sd_cuda_f32_to_f16(const float *in, uint16_t *out, size_t n, void *cuda_stream);
int sd_cuda_f32_to_bf16(const float *in, uint16_t *out, size_t n, void *cuda_stream);
int sd_cuda_f16_to_f32(const uint16_t *in, float *out, size_t n, void *cuda_stream);
int sd_cuda_bf16_to_f32(const uint16_t *in, float *out, size_t n, void *cuda_stream);

#ifdef __cplusplus
}
#endif
#endif
