/* ckpt.h — training checkpoint directories: OUTPUT_DIR/checkpoint-N/.
 *
 * Layout and rules: formats/checkpoint.md. In short:
 *   - a checkpoint is a directory of safetensors files (named flat float
 *     buffers: model, EMA, optimizer moments, ...), optional extra files
 *     (config.json ...) and trainer_state.json (the JSON state: step, epoch,
 *     data cursor, RNG, schedule, EMA, optimizer, options), written last;
 *   - it is built as OUTPUT_DIR/.checkpoint-N.tmp.PID/, every file fsync'ed,
 *     then renamed to checkpoint-N and the directory fsync'ed: a failure or a
 *     kill at any point leaves the previous checkpoints intact and no
 *     checkpoint-N (only a dot-directory, removed by the next save);
 *   - checkpoints_total_limit keeps diffusers' rule: with L the limit and
 *     the checkpoint-* dirs present before the save sorted by N, when there
 *     are >= L of them the oldest (count - L + 1) are removed, so that L
 *     remain after the save. Unlike diffusers the removal happens after the
 *     new checkpoint is safely in place (a failed save removes nothing);
 *   - "latest" is the highest N among checkpoint-N dirs holding a
 *     trainer_state.json; dot-dirs and other names are ignored.
 */
#ifndef SD_TRAIN_CKPT_H
#define SD_TRAIN_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "core/tensor.h"

#define SD_CKPT_STATE_FILE "trainer_state.json"
#define SD_CKPT_FORMAT "sdtools-checkpoint"
#define SD_CKPT_VERSION 1

/* A tensor stored in a checkpoint: a slice of a flat float buffer. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[SD_MAX_DIMS];
    size_t offset; /* first element inside the buffer */
} sd_ckpt_tensor;

/* One safetensors file of a checkpoint: a flat buffer cut into tensors. */
typedef struct {
    const char *file;               /* path inside the checkpoint dir, e.g. "unet/diffusion_pytorch_model.safetensors" */
    float *data;                    /* read on save, filled on load */
    size_t numel;                   /* length of data (bounds of the tensors) */
    const sd_ckpt_tensor *tensors;  /* NULL: the whole buffer as one 1-D tensor called `name` */
    int ntensors;
    const char *name;               /* used when tensors == NULL */
    sd_dtype dtype;                 /* storage: SD_F32 (0 means F32), SD_F16 or SD_BF16 */
} sd_ckpt_buffer;

/* An extra file stored verbatim (config.json, tokenizer files, ...). */
typedef struct {
    const char *file;
    const void *data;
    size_t len;
} sd_ckpt_blob;

typedef struct {
    const sd_ckpt_buffer *buffers;
    int nbuffers;
    const sd_ckpt_blob *blobs;
    int nblobs;
    const cJSON *state; /* object; copied into trainer_state.json with "format", "version", "step", "files" added */
} sd_ckpt_contents;

/* Write OUTPUT_DIR/checkpoint-<step> atomically, then prune to total_limit
 * (<= 0: no limit). A checkpoint-<step> that already exists is replaced
 * atomically. *saved (may be NULL) gets the final path (malloc'ed). */
int sd_ckpt_save(const char *output_dir, int64_t step, const sd_ckpt_contents *c, int total_limit, char **saved);

/* Parse "checkpoint-N" (digits only); 1 and *step if it is one, else 0. */
int sd_ckpt_parse_name(const char *name, int64_t *step);

/* The checkpoint-N dirs of output_dir (any content), sorted by N ascending.
 * Returns the count (>= 0) or -1; free with free(*steps). */
int sd_ckpt_list(const char *output_dir, int64_t **steps);

/* The highest checkpoint-N holding a trainer_state.json: 1 with *path
 * (malloc'ed) and *step set; 0 if there is none (or output_dir does not
 * exist); -1 on error. */
int sd_ckpt_latest(const char *output_dir, char **path, int64_t *step);

/* --resume_from_checkpoint SPEC: "latest" (returns 0 with *path NULL when
 * there is none: a fresh start, as diffusers does), a name "checkpoint-N"
 * looked up in output_dir, or a path (containing '/') used as is. An
 * explicit name or path that is not a checkpoint is an error. Returns 1 and
 * *path (malloc'ed) when found. */
int sd_ckpt_resolve(const char *output_dir, const char *spec, char **path);

/* Read and validate trainer_state.json of a checkpoint dir (format, version,
 * step, and that the listed files exist with their recorded sizes). */
int sd_ckpt_load_state(const char *ckpt_dir, cJSON **state);

/* Fill b->data from its file in ckpt_dir: every tensor of b must be present
 * with the same shape (converted to float32), and the file must hold no
 * other tensors. */
int sd_ckpt_load_buffer(const char *ckpt_dir, const sd_ckpt_buffer *b);

/* Remove leftovers of dead writers in output_dir (.checkpoint-*.tmp.PID,
 * .checkpoint-*.old.PID, .checkpoint-*.del.PID whose PID is not running).
 * sd_ckpt_save calls it. Returns the number removed or -1. */
int sd_ckpt_clean_stale(const char *output_dir);

#endif
