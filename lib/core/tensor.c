/* tensor.c — dtype tables and float conversions. */
#include "core/tensor.h"
#include "core/error.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct { const char *name; int bits; } dtype_info[SD_DTYPE_COUNT] = {
    [SD_BOOL] = {"BOOL", 8},       [SD_U8] = {"U8", 8},
    [SD_I8] = {"I8", 8},           [SD_I16] = {"I16", 16},
    [SD_U16] = {"U16", 16},        [SD_I32] = {"I32", 32},
    [SD_U32] = {"U32", 32},        [SD_I64] = {"I64", 64},
    [SD_U64] = {"U64", 64},        [SD_F16] = {"F16", 16},
    [SD_BF16] = {"BF16", 16},      [SD_F32] = {"F32", 32},
    [SD_F64] = {"F64", 64},        [SD_C64] = {"C64", 64},
    [SD_F8_E5M2] = {"F8_E5M2", 8}, [SD_F8_E4M3] = {"F8_E4M3", 8},
    [SD_F8_E8M0] = {"F8_E8M0", 8}, [SD_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [SD_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [SD_F6_E2M3] = {"F6_E2M3", 6}, [SD_F6_E3M2] = {"F6_E3M2", 6},
    [SD_F4] = {"F4", 4},
};

const char *sd_dtype_name(sd_dtype t) {
    if (t <= SD_DTYPE_INVALID || t >= SD_DTYPE_COUNT) return NULL;
    return dtype_info[t].name;
}

sd_dtype sd_dtype_from_name(const char *name, size_t n) {
    for (int t = 1; t < SD_DTYPE_COUNT; t++)
        if (strlen(dtype_info[t].name) == n && memcmp(dtype_info[t].name, name, n) == 0)
            return (sd_dtype)t;
    return SD_DTYPE_INVALID;
}

int sd_dtype_bits(sd_dtype t) {
    if (t <= SD_DTYPE_INVALID || t >= SD_DTYPE_COUNT) return 0;
    return dtype_info[t].bits;
}

int sd_dtype_is_real(sd_dtype t) { return t > SD_DTYPE_INVALID && t < SD_DTYPE_COUNT && t != SD_C64; }

int sd_shape_numel(int ndim, const int64_t *shape, int64_t *out) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return sd_set_error("negative dimension %lld", (long long)shape[i]);
        if (shape[i] && n > INT64_MAX / shape[i]) return sd_set_error("shape element count overflows");
        n *= shape[i];
    }
    *out = n;
    return 0;
}

int64_t sd_tensor_numel(const sd_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int sd_dtype_nbytes(sd_dtype t, int64_t numel, uint64_t *out) {
    int bits = sd_dtype_bits(t);
    if (!bits) return sd_set_error("invalid dtype");
    if (numel < 0) return sd_set_error("negative element count");
    if ((uint64_t)numel > UINT64_MAX / (uint64_t)bits) return sd_set_error("tensor byte size overflows");
    uint64_t total_bits = (uint64_t)numel * (uint64_t)bits;
    if (total_bits % 8) return sd_set_error("%s tensor of %lld elements does not fill whole bytes",
                                            sd_dtype_name(t), (long long)numel);
    *out = total_bits / 8;
    return 0;
}

char *sd_shape_str(int ndim, const int64_t *shape, char *buf, size_t bufsize) {
    size_t k = 0;
    if (bufsize == 0) return buf;
    k += (size_t)snprintf(buf + k, bufsize - k, "[");
    for (int i = 0; i < ndim && k < bufsize; i++)
        k += (size_t)snprintf(buf + k, bufsize - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < bufsize) snprintf(buf + k, bufsize - k, "]");
    return buf;
}

/* ---- half precision ---------------------------------------------------- */

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

uint16_t sd_f32_to_f16(float f) {
    uint32_t x = f2u(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* Inf or NaN: keep NaN quiet and non-zero */
        return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u | ((absx >> 13) & 0x3ffu) : 0));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: Inf */
    if (absx < 0x38800000u) {                                  /* result is subnormal or zero */
        /* value = absx as float; subnormal f16 unit = 2^-24. Round to nearest even. */
        if (absx < 0x33000000u) return (uint16_t)sign;         /* < 2^-25: rounds to 0 */
        uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(absx >> 23);                   /* 14 + (113 - exp) */
        uint32_t r = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = absx + 0xc8000000u; /* rebias exponent: -(127-15) << 23 */
    uint32_t rem = r & 0x1fffu;
    r >>= 13;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

float sd_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {
        if (mant == 0) return u2f(sign);
        float v = (float)mant * 0x1p-24f; /* exact */
        return sign ? -v : v;
    }
    if (exp == 31) return u2f(sign | 0x7f800000u | (mant << 13));
    return u2f(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t sd_f32_to_bf16(float f) {
    uint32_t x = f2u(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    uint32_t lsb = (x >> 16) & 1u;
    x += 0x7fffu + lsb;
    return (uint16_t)(x >> 16);
}

float sd_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

/* ---- 8/6/4-bit floats (read only) -------------------------------------- */

/* Generic minifloat decode: e exponent bits, m mantissa bits, bias. fnuz: no
 * negative zero (0x80 is NaN), no Inf. ieee_inf: all-ones exponent is Inf/NaN
 * (E5M2). e4m3fn: only S.1111.111 is NaN, no Inf. */
static float minifloat(uint32_t v, int e, int m, int bias, int kind) {
    uint32_t sign = (v >> (e + m)) & 1u;
    uint32_t ex = (v >> m) & ((1u << e) - 1), mant = v & ((1u << m) - 1);
    uint32_t top = (1u << e) - 1;
    if (kind == 1 && ex == top) return mant ? NAN : (sign ? -INFINITY : INFINITY); /* IEEE-like */
    if (kind == 2 && ex == top && mant == (1u << m) - 1) return NAN;             /* e4m3fn */
    if (kind == 3 && sign && ex == 0 && mant == 0) return NAN;                   /* fnuz */
    float r;
    if (ex == 0) r = ldexpf((float)mant, 1 - bias - m);
    else r = ldexpf((float)((1u << m) | mant), (int)ex - bias - m);
    return sign ? -r : r;
}

static uint64_t load_le(const unsigned char *p, int nbytes) {
    uint64_t v = 0;
    for (int i = nbytes - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

int sd_convert_to_f32(sd_dtype from, const void *src, float *dst, size_t n) {
    const unsigned char *p = src;
    switch (from) {
    case SD_F32: memcpy(dst, src, n * 4); return 0;
    case SD_F16: for (size_t i = 0; i < n; i++) dst[i] = sd_f16_to_f32((uint16_t)load_le(p + 2 * i, 2)); return 0;
    case SD_BF16: for (size_t i = 0; i < n; i++) dst[i] = sd_bf16_to_f32((uint16_t)load_le(p + 2 * i, 2)); return 0;
    case SD_F64: for (size_t i = 0; i < n; i++) { double d; memcpy(&d, p + 8 * i, 8); dst[i] = (float)d; } return 0;
    case SD_BOOL: for (size_t i = 0; i < n; i++) dst[i] = p[i] ? 1.f : 0.f; return 0;
    case SD_U8: for (size_t i = 0; i < n; i++) dst[i] = p[i]; return 0;
    case SD_I8: for (size_t i = 0; i < n; i++) dst[i] = (int8_t)p[i]; return 0;
    case SD_U16: for (size_t i = 0; i < n; i++) dst[i] = (float)(uint16_t)load_le(p + 2 * i, 2); return 0;
    case SD_I16: for (size_t i = 0; i < n; i++) dst[i] = (float)(int16_t)load_le(p + 2 * i, 2); return 0;
    case SD_U32: for (size_t i = 0; i < n; i++) dst[i] = (float)(uint32_t)load_le(p + 4 * i, 4); return 0;
    case SD_I32: for (size_t i = 0; i < n; i++) dst[i] = (float)(int32_t)load_le(p + 4 * i, 4); return 0;
    case SD_U64: for (size_t i = 0; i < n; i++) dst[i] = (float)load_le(p + 8 * i, 8); return 0;
    case SD_I64: for (size_t i = 0; i < n; i++) dst[i] = (float)(int64_t)load_le(p + 8 * i, 8); return 0;
    case SD_F8_E5M2: for (size_t i = 0; i < n; i++) dst[i] = minifloat(p[i], 5, 2, 15, 1); return 0;
    case SD_F8_E4M3: for (size_t i = 0; i < n; i++) dst[i] = minifloat(p[i], 4, 3, 7, 2); return 0;
    case SD_F8_E4M3FNUZ: for (size_t i = 0; i < n; i++) dst[i] = minifloat(p[i], 4, 3, 8, 3); return 0;
    case SD_F8_E5M2FNUZ: for (size_t i = 0; i < n; i++) dst[i] = minifloat(p[i], 5, 2, 16, 3); return 0;
    case SD_F8_E8M0: /* exponent only, 0xff = NaN */
        for (size_t i = 0; i < n; i++) dst[i] = p[i] == 0xff ? NAN : ldexpf(1.f, (int)p[i] - 127);
        return 0;
    case SD_F4: /* E2M1, two per byte, low nibble first */
        for (size_t i = 0; i < n; i++) dst[i] = minifloat((p[i / 2] >> (4 * (i & 1))) & 0xf, 2, 1, 1, 0);
        return 0;
    case SD_F6_E2M3: case SD_F6_E3M2: { /* packed little-endian bit stream, 6 bits each */
        int e = from == SD_F6_E2M3 ? 2 : 3, m = 5 - e, bias = from == SD_F6_E2M3 ? 1 : 3;
        for (size_t i = 0; i < n; i++) {
            size_t bit = i * 6, byte = bit / 8;
            uint32_t w = p[byte] | (bit % 8 > 2 ? (uint32_t)p[byte + 1] << 8 : 0);
            dst[i] = minifloat((w >> (bit % 8)) & 0x3f, e, m, bias, 0);
        }
        return 0;
    }
    default: return sd_set_error("cannot convert %s to F32", sd_dtype_name(from) ? sd_dtype_name(from) : "?");
    }
}

int sd_convert_from_f32(sd_dtype to, const float *src, void *dst, size_t n) {
    unsigned char *p = dst;
    switch (to) {
    case SD_F32: memcpy(dst, src, n * 4); return 0;
    case SD_F16: for (size_t i = 0; i < n; i++) { uint16_t h = sd_f32_to_f16(src[i]); memcpy(p + 2 * i, &h, 2); } return 0;
    case SD_BF16: for (size_t i = 0; i < n; i++) { uint16_t h = sd_f32_to_bf16(src[i]); memcpy(p + 2 * i, &h, 2); } return 0;
    case SD_F64: for (size_t i = 0; i < n; i++) { double d = src[i]; memcpy(p + 8 * i, &d, 8); } return 0;
    default: return sd_set_error("cannot convert F32 to %s", sd_dtype_name(to) ? sd_dtype_name(to) : "?");
    }
}
