/* tar_index.h — random access to the members of uncompressed tar shards.
 *
 * Training reads samples in a shuffled global order (a new permutation per
 * epoch) without holding the dataset in memory: one pass over the tar headers
 * of every shard (no member data is read) records where each member's bytes
 * are, and samples are then fetched with pread(). Only uncompressed tars can
 * be indexed this way (a .tar.zst has no random access); sdencode writes plain
 * .tar by default.
 *
 * Members are grouped into samples exactly as lib/io/shard.c does (WebDataset
 * key/extension split, consecutive members with the same key, __meta__ and
 * key-less names skipped). ustar, GNU long names ('L') and pax headers ('x',
 * 'g', path only) are understood; sparse or other entry types are skipped.
 */
#ifndef SD_IO_TAR_INDEX_H
#define SD_IO_TAR_INDEX_H

#include <stddef.h>
#include <stdint.h>

#define SD_TAR_INDEX_MAX_MEMBERS 8 /* members remembered per sample */

typedef struct {
    char ext[40];    /* lower-cased extension ("latent.safetensors") */
    uint64_t offset; /* byte offset of the data in the shard file */
    uint64_t size;
} sd_tar_member;

typedef struct {
    char key[32];
    int shard;       /* index into the path list */
    int nmembers;
    sd_tar_member m[SD_TAR_INDEX_MAX_MEMBERS];
} sd_tar_sample;

typedef struct {
    char **paths;    /* owned copies */
    int npaths;
    sd_tar_sample *samples;
    int64_t n;
} sd_tar_index;

/* Index the shards in order. A compressed shard, a truncated archive or a
 * damaged header is an error naming the shard. */
int sd_tar_index_build(char *const *paths, int npaths, sd_tar_index *idx);
void sd_tar_index_free(sd_tar_index *idx);
/* The member with extension ext of sample i, or NULL. */
const sd_tar_member *sd_tar_index_member(const sd_tar_index *idx, int64_t i, const char *ext);
/* Read a member into a malloc'ed buffer (NUL-terminated, not counted). */
int sd_tar_index_read(const sd_tar_index *idx, int64_t i, const char *ext, unsigned char **buf, size_t *len);

#endif
