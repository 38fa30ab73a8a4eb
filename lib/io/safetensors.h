/* safetensors.h — read (mmap, lazy, validated) and write (atomic) safetensors.
 *
 * The format and the rules this reader enforces are in formats/safetensors.md.
 * The reader trusts nothing: every violation is an error naming the file and
 * the problem. Tensor data stays in the mapping until asked for; data may be
 * unaligned, so it is always copied/converted, never cast in place.
 */
#ifndef SD_IO_SAFETENSORS_H
#define SD_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

#define SD_ST_MAX_HEADER 100000000ull /* the spec's limit */

typedef struct {
    char *name;
    sd_dtype dtype;
    int ndim;
    int64_t shape[SD_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end; /* byte range relative to the data buffer */
} sd_st_tensor;

typedef struct {
    char *path;                 /* for messages */
    const unsigned char *bytes; /* the whole file (mapped or borrowed) */
    uint64_t size;
    int mapped;                 /* 1: munmap on close */
    uint64_t header_len;
    const unsigned char *data;  /* bytes + 8 + header_len */
    uint64_t data_len;
    int ntensors;
    sd_st_tensor *tensors;      /* in header order */
    int *by_name;               /* indices sorted by name, for lookup */
    int nmeta;
    char **meta_keys, **meta_vals;
} sd_st_file;

/* Open and validate. On error *out is NULL and the message names the file. */
int sd_st_open(const char *path, sd_st_file **out);
/* Validate a buffer in memory (not copied: it must outlive the handle). */
int sd_st_open_memory(const void *buf, size_t len, const char *name, sd_st_file **out);
void sd_st_close(sd_st_file *f);

const sd_st_tensor *sd_st_find(const sd_st_file *f, const char *name);
/* Pointer to the tensor's raw little-endian bytes inside the mapping. */
static inline const void *sd_st_raw(const sd_st_file *f, const sd_st_tensor *t) { return f->data + t->begin; }
/* Convert the tensor to float32 (any real dtype) into dst[numel]. */
int sd_st_read_f32(const sd_st_file *f, const sd_st_tensor *t, float *dst);
/* Copy the raw bytes into dst (end-begin bytes). */
void sd_st_read_raw(const sd_st_file *f, const sd_st_tensor *t, void *dst);
/* Metadata value for key, or NULL. */
const char *sd_st_meta(const sd_st_file *f, const char *key);
/* Total element count of all tensors. */
int64_t sd_st_total_params(const sd_st_file *f);

/* ---- writer ------------------------------------------------------------- */

typedef struct sd_st_writer sd_st_writer;

sd_st_writer *sd_st_writer_new(void);
void sd_st_writer_free(sd_st_writer *w);
/* Add a tensor whose bytes (dtype layout, little-endian) are at data. The
 * pointer is borrowed until save. Duplicate names are an error. */
int sd_st_writer_add(sd_st_writer *w, const char *name, sd_dtype dtype, int ndim, const int64_t *shape,
                     const void *data);
/* Add float data to be stored as dtype (F32, F16, BF16 or F64), converted at save. */
int sd_st_writer_add_f32(sd_st_writer *w, const char *name, sd_dtype dtype, int ndim, const int64_t *shape,
                         const float *data);
/* Set a __metadata__ entry (copied); setting a key again replaces it. */
int sd_st_writer_meta(sd_st_writer *w, const char *key, const char *value);
/* Write atomically to path (temp file, fsync, rename). */
int sd_st_writer_save(sd_st_writer *w, const char *path);
/* Serialize to a malloc'ed buffer. */
int sd_st_writer_to_memory(sd_st_writer *w, unsigned char **buf, size_t *len);

#endif
