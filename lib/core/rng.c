/* rng.c — Philox4x32-10 (Salmon et al., SC'11), as in curand and torch. */
#include "core/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void sd_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static void block(uint64_t seed, uint64_t stream, uint64_t c, uint32_t w[4]) {
    uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    sd_philox4x32_10(ctr, key, w);
}

void sd_rng_init(sd_rng *r, uint64_t seed, uint64_t stream) {
    r->seed = seed;
    r->stream = stream;
    r->offset = 0;
}

static inline float u01(uint32_t w) { return (float)(w >> 8) * 0x1p-24f; }

static inline void box_muller(uint32_t a, uint32_t b, float *z0, float *z1) {
    double u1 = ((double)(a >> 8) + 1.0) * 0x1p-24;
    double u2 = (double)(b >> 8) * 0x1p-24;
    double rad = sqrt(-2.0 * log(u1));
    double th = 2.0 * M_PI * u2;
    *z0 = (float)(rad * cos(th));
    *z1 = (float)(rad * sin(th));
}

void sd_rng_normal_at(uint64_t seed, uint64_t stream, uint64_t offset, float *out, size_t n) {
    size_t nblocks = (n + 3) / 4;
#pragma omp parallel for if (n > 65536) schedule(static)
    for (size_t b = 0; b < nblocks; b++) {
        uint32_t w[4];
        float z[4];
        block(seed, stream, offset + b, w);
        box_muller(w[0], w[1], &z[0], &z[1]);
        box_muller(w[2], w[3], &z[2], &z[3]);
        for (size_t j = 0; j < 4 && 4 * b + j < n; j++) out[4 * b + j] = z[j];
    }
}

void sd_rng_uniform_at(uint64_t seed, uint64_t stream, uint64_t offset, float *out, size_t n) {
    size_t nblocks = (n + 3) / 4;
    for (size_t b = 0; b < nblocks; b++) {
        uint32_t w[4];
        block(seed, stream, offset + b, w);
        for (size_t j = 0; j < 4 && 4 * b + j < n; j++) out[4 * b + j] = u01(w[j]);
    }
}

void sd_rng_normal(sd_rng *r, float *out, size_t n) {
    sd_rng_normal_at(r->seed, r->stream, r->offset, out, n);
    r->offset += (n + 3) / 4;
}

void sd_rng_uniform(sd_rng *r, float *out, size_t n) {
    sd_rng_uniform_at(r->seed, r->stream, r->offset, out, n);
    r->offset += (n + 3) / 4;
}

uint32_t sd_rng_u32(sd_rng *r) {
    uint32_t w[4];
    block(r->seed, r->stream, r->offset++, w);
    return w[0];
}

uint32_t sd_rng_below(sd_rng *r, uint32_t n) {
    uint32_t w[4];
    block(r->seed, r->stream, r->offset++, w);
    uint64_t x = ((uint64_t)w[0] << 32) | w[1]; /* 64 bits: bias < 2^-32 */
    return (uint32_t)(((unsigned __int128)x * n) >> 64);
}

void sd_rng_permutation(sd_rng *r, uint32_t *perm, size_t n) {
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        uint32_t j = sd_rng_below(r, (uint32_t)i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}
