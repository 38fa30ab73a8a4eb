/* rng.h — counter-based random numbers (Philox4x32-10).
 *
 * Philox is counter-based: the value at position i of a stream depends only on
 * (seed, i), so a CPU loop, an OpenMP loop and a CUDA kernel produce the same
 * numbers, and the full generator state is two integers — which makes exact
 * resume trivial (the state goes into the checkpoint).
 *
 * Stream layout (normative: formats/rng.md): block c of a stream is
 * philox4x32_10(counter = {lo32(c), hi32(c), lo32(stream), hi32(stream)},
 * key = {lo32(seed), hi32(seed)}), giving 4 uint32 words. Filling n values
 * consumes ceil(n/4) blocks starting at the stream's offset:
 *   uniform[i]  = (w[i] >> 8) * 2^-24                    in [0, 1)
 *   normal pair (z0, z1) from words (a, b):  u1 = ((a >> 8) + 1) * 2^-24 in (0,1],
 *     u2 = (b >> 8) * 2^-24; r = sqrt(-2 ln u1); z0 = r cos(2 pi u2), z1 = r sin(2 pi u2)
 *     (computed in double, rounded to float), words (0,1) -> values 0,1 and
 *     words (2,3) -> values 2,3 of the block.
 */
#ifndef SD_CORE_RNG_H
#define SD_CORE_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t seed;   /* the key */
    uint64_t stream; /* independent sub-stream id (high counter words) */
    uint64_t offset; /* next block index */
} sd_rng;

void sd_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

void sd_rng_init(sd_rng *r, uint64_t seed, uint64_t stream);
/* Fill out[0..n) and advance the stream by ceil(n/4) blocks. */
void sd_rng_uniform(sd_rng *r, float *out, size_t n);
void sd_rng_normal(sd_rng *r, float *out, size_t n);
/* Stateless versions: values of blocks starting at `offset` (for parallel fills). */
void sd_rng_normal_at(uint64_t seed, uint64_t stream, uint64_t offset, float *out, size_t n);
void sd_rng_uniform_at(uint64_t seed, uint64_t stream, uint64_t offset, float *out, size_t n);
/* One uint32 word (consumes a whole block). */
uint32_t sd_rng_u32(sd_rng *r);
/* Uniform integer in [0, n), n >= 1 (consumes one block). */
uint32_t sd_rng_below(sd_rng *r, uint32_t n);
/* Fisher-Yates permutation of 0..n-1 into perm. */
void sd_rng_permutation(sd_rng *r, uint32_t *perm, size_t n);

#endif
