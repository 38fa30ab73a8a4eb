/* tblog.h — TensorBoard event files, written by hand (no protobuf library).
 *
 * One writer = one file LOGDIR/events.out.tfevents.<unix time %010d>.<host>.<pid>.<n>
 * (torch.utils.tensorboard's name; n counts writers opened by this process).
 * Format (formats.md §5): a sequence of records
 *     u64 length (LE) | u32 masked_crc32c(length bytes) | data | u32 masked_crc32c(data)
 * whose data are serialized tensorflow.Event messages: the first carries
 * file_version "brain.Event:2", the others a Summary with one Value:
 *     scalar: simple_value (float32)                      (SummaryWriter.add_scalar)
 *     image:  Summary.Image{height, width, colorspace, PNG bytes}  (add_image)
 *     text:   a DT_STRING tensor with plugin "text"        (add_text)
 * Every event is flushed to the kernel as it is written, so a killed run
 * keeps everything logged so far; sd_tb_flush also fsyncs.
 */
#ifndef SD_TRAIN_TBLOG_H
#define SD_TRAIN_TBLOG_H

#include <stddef.h>
#include <stdint.h>

typedef struct sd_tb sd_tb;

/* mkdir -p logdir, create the event file, write the file_version event. */
int sd_tb_open(sd_tb **out, const char *logdir);
/* The event file's path. */
const char *sd_tb_path(const sd_tb *tb);

/* value is stored as float32, as TensorBoard's simple_value. */
int sd_tb_scalar(sd_tb *tb, const char *tag, int64_t step, double value);
/* An image given as encoded PNG bytes (the caller encodes), with its size and
 * channel count (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA: the colorspace field). */
int sd_tb_image(sd_tb *tb, const char *tag, int64_t step, const void *png, size_t len, int height, int width,
                int channels);
/* A text entry (markdown, shown in TensorBoard's Text tab). */
int sd_tb_text(sd_tb *tb, const char *tag, int64_t step, const char *text);

/* fflush + fsync. */
int sd_tb_flush(sd_tb *tb);
/* Flush, fsync and close; tb is freed even on error. NULL is a no-op. */
int sd_tb_close(sd_tb *tb);

/* CRC32C (Castagnoli) and TensorFlow's masking, exposed for tests. */
uint32_t sd_crc32c(const void *data, size_t len);
uint32_t sd_crc32c_masked(const void *data, size_t len);

#endif
