/* jsonl.h — the per-step training log: one JSON object per line.
 *
 * sdfit writes LOGDIR/train_log.jsonl with one object per optimizer step,
 * e.g. {"step": 120, "epoch": 1, "loss": 0.1234, "lr": 1e-05,
 * "grad_norm": 0.87, "images_per_s": 14.2, "time": 1732931234.5}.
 * Each line is written with one fwrite and flushed, so a killed run leaves
 * only whole lines (at worst a partial LAST line, which readers skip). A
 * resumed run appends: a step can then appear twice, the later line wins.
 * Non-finite numbers are written as null (JSON has no inf/nan).
 */
#ifndef SD_TRAIN_JSONL_H
#define SD_TRAIN_JSONL_H

#include <cJSON.h>

typedef struct sd_jsonl sd_jsonl;

/* Open path for appending (append = 1) or truncate it (0); creates the parent directory. */
int sd_jsonl_open(sd_jsonl **out, const char *path, int append);
/* Write obj as one compact line and flush. */
int sd_jsonl_write(sd_jsonl *l, const cJSON *obj);
/* Convenience: {"step": step, keys[i]: values[i]...} (non-finite values -> null). */
int sd_jsonl_step(sd_jsonl *l, long long step, int n, const char *const *keys, const double *values);
/* fsync. */
int sd_jsonl_flush(sd_jsonl *l);
/* Flush and close; NULL is a no-op. */
int sd_jsonl_close(sd_jsonl *l);

#endif
