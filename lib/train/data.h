/* data.h — the training data: latent shard sets read in shuffled order.
 *
 * sdfit never holds the dataset in memory: the shard set is indexed once
 * (lib/io/tar_index.h: header scan, no data read) and every step reads the
 * samples of its batch with pread. The epoch order is a Philox permutation of
 * all samples (seed, epoch), batches take consecutive entries of it and the
 * last batch of an epoch may be short (DataLoader drop_last=False). A data
 * cursor (epoch, position in the permutation) is all a checkpoint needs to
 * resume at the next batch exactly.
 *
 * The set's manifest provenance (written by sdencode; formats/shards.md) is
 * exposed so the caller can refuse latents made by another VAE, resolution or
 * tokenizer.
 */
#ifndef SD_TRAIN_DATA_H
#define SD_TRAIN_DATA_H

#include <cJSON.h>
#include <stdint.h>

#include "io/tar_index.h"

typedef struct {
    int64_t index;                  /* position in the set (0..n-1) */
    char key[32];
    int c, h, w;                    /* latent channels and size */
    float *mean, *logvar;           /* [c*h*w] f32 (converted from F16 if stored so) */
    float *mean_flipped, *logvar_flipped; /* NULL unless the set has random_flip */
    int ncap;                       /* captions (rows of ids) */
    int32_t *ids;                   /* [ncap*77] */
    int hidden_dim;                 /* 0 unless the set has text embeddings */
    float *hidden;                  /* [ncap*77*hidden_dim] or NULL */
} sd_latent_sample;

typedef struct {
    sd_tar_index idx;
    char *dir;          /* directory holding the manifest (NULL if none) */
    cJSON *manifest;    /* the whole manifest.json (NULL if none) */
    const cJSON *prov;  /* its provenance object, or NULL */
    int64_t n;
} sd_latent_set;

/* Open a latent shard set: a directory with manifest.json (it must say
 * kind "latent" and complete true), or a shard spec (brace list, glob, A::B;
 * then the manifest of the first shard's directory is used if present). */
int sd_latent_set_open(const char *spec, sd_latent_set *set);
void sd_latent_set_close(sd_latent_set *set);
/* Read sample i (need_text: also the hidden states; error if absent). */
int sd_latent_set_read(const sd_latent_set *set, int64_t i, int need_text, sd_latent_sample *s);
void sd_latent_sample_free(sd_latent_sample *s);

/* The sample order of an epoch: perm[0..n) (a Philox permutation keyed by
 * seed, stream "epoch" + epoch). */
void sd_epoch_order(uint64_t seed, int64_t epoch, int64_t n, uint32_t *perm);
/* Batches per epoch with drop_last=False: ceil(n / batch). */
static inline int64_t sd_batches_per_epoch(int64_t n, int batch) { return (n + batch - 1) / batch; }

#endif
