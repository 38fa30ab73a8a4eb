/* tensor.h — dtypes, the tensor descriptor, and numeric conversions.
 *
 * A tensor is a contiguous row-major (C order) block: no strides. Shapes are
 * int64 with up to SD_MAX_DIMS dims; rank 0 is a scalar. The descriptor does
 * not own its data unless the function that made it says so.
 */
#ifndef SD_CORE_TENSOR_H
#define SD_CORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define SD_MAX_DIMS 8

/* Every dtype of the safetensors spec. The order is ours; names are the spec's. */
typedef enum {
    SD_DTYPE_INVALID = 0,
    SD_BOOL, SD_U8, SD_I8, SD_I16, SD_U16, SD_I32, SD_U32, SD_I64, SD_U64,
    SD_F16, SD_BF16, SD_F32, SD_F64, SD_C64,
    SD_F8_E5M2, SD_F8_E4M3, SD_F8_E8M0, SD_F8_E4M3FNUZ, SD_F8_E5M2FNUZ,
    SD_F6_E2M3, SD_F6_E3M2, SD_F4,
    SD_DTYPE_COUNT
} sd_dtype;

typedef enum { SD_DEV_CPU = 0, SD_DEV_CUDA = 1 } sd_device;

typedef struct {
    sd_dtype dtype;
    sd_device device;
    int ndim;
    int64_t shape[SD_MAX_DIMS];
    void *data;
} sd_tensor;

/* "F32" etc. as in safetensors headers; NULL for invalid. */
const char *sd_dtype_name(sd_dtype t);
/* Parse a name of n bytes; SD_DTYPE_INVALID if unknown. */
sd_dtype sd_dtype_from_name(const char *name, size_t n);
/* Size of one element in bits (4, 6, 8, 16, 32, 64). */
int sd_dtype_bits(sd_dtype t);
/* 1 if the dtype converts to float (all floats, ints and bool); 0 for C64. */
int sd_dtype_is_real(sd_dtype t);

/* Number of elements; 1 for rank 0. Returns -1 with an error on overflow
 * beyond INT64_MAX (shapes from files are untrusted). */
int sd_shape_numel(int ndim, const int64_t *shape, int64_t *out);
int64_t sd_tensor_numel(const sd_tensor *t); /* trusted shapes only */
/* Byte size of numel elements of dtype, checked; sub-byte types must fill whole bytes. */
int sd_dtype_nbytes(sd_dtype t, int64_t numel, uint64_t *out);

/* Format a shape as "[2, 3, 4]" into buf. */
char *sd_shape_str(int ndim, const int64_t *shape, char *buf, size_t bufsize);

/* Scalar conversions. f32 -> f16/bf16 round to nearest even, NaN kept NaN,
 * overflow to Inf, as torch's .half() / .bfloat16() do. */
uint16_t sd_f32_to_f16(float f);
float sd_f16_to_f32(uint16_t h);
uint16_t sd_f32_to_bf16(float f);
float sd_bf16_to_f32(uint16_t h);

/* Convert n elements of src (dtype `from`, little-endian, possibly unaligned)
 * to float. Works for every real dtype. Returns -1 for C64/invalid. */
int sd_convert_to_f32(sd_dtype from, const void *src, float *dst, size_t n);
/* Convert n floats to F32, F16, BF16 or F64 (others: -1). */
int sd_convert_from_f32(sd_dtype to, const float *src, void *dst, size_t n);

#endif
