/* tblog.c — TensorBoard event writer: CRC32C, record framing, and a minimal
 * protobuf encoder for the few Event/Summary fields we use.
 *
 * Field numbers (tensorflow/core/util/event.proto, framework/summary.proto,
 * tensor.proto, tensor_shape.proto):
 *   Event:        1 wall_time (double), 2 step (int64), 3 file_version (string), 5 summary
 *   Summary:      1 value (repeated)
 *   Value:        1 tag, 2 simple_value (float), 4 image, 8 tensor, 9 metadata
 *   Image:        1 height, 2 width, 3 colorspace, 4 encoded_image_string
 *   SummaryMetadata: 1 plugin_data { 1 plugin_name, 2 content }
 *   TensorProto:  1 dtype (DT_STRING = 7), 2 tensor_shape, 8 string_val
 */
#include "train/tblog.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"

/* ---- CRC32C --------------------------------------------------------------- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t sd_crc32c(const void *data, size_t len) {
    pthread_once(&crc_once, crc_init);
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t sd_crc32c_masked(const void *data, size_t len) {
    uint32_t c = sd_crc32c(data, len);
    return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

/* ---- protobuf encoding ------------------------------------------------------ */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} pbuf;

static void pb_reserve(pbuf *b, size_t extra) {
    if (b->n + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra) cap *= 2;
    b->p = sd_xrealloc(b->p, cap);
    b->cap = cap;
}

static void pb_raw(pbuf *b, const void *d, size_t n) {
    pb_reserve(b, n);
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void pb_varint(pbuf *b, uint64_t v) {
    unsigned char t[10];
    int k = 0;
    do {
        unsigned char c = v & 0x7F;
        v >>= 7;
        t[k++] = c | (v ? 0x80 : 0);
    } while (v);
    pb_raw(b, t, (size_t)k);
}

static void pb_key(pbuf *b, int field, int wire) { pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire); }

static void pb_u64_field(pbuf *b, int field, uint64_t v) {
    pb_key(b, field, 0);
    pb_varint(b, v);
}

static void pb_bytes_field(pbuf *b, int field, const void *d, size_t n) {
    pb_key(b, field, 2);
    pb_varint(b, n);
    pb_raw(b, d, n);
}

static void pb_double_field(pbuf *b, int field, double v) {
    unsigned char t[8];
    uint64_t u;
    memcpy(&u, &v, 8);
    for (int i = 0; i < 8; i++) t[i] = (unsigned char)(u >> (8 * i));
    pb_key(b, field, 1);
    pb_raw(b, t, 8);
}

static void pb_float_field(pbuf *b, int field, float v) {
    unsigned char t[4];
    uint32_t u;
    memcpy(&u, &v, 4);
    for (int i = 0; i < 4; i++) t[i] = (unsigned char)(u >> (8 * i));
    pb_key(b, field, 5);
    pb_raw(b, t, 4);
}

/* Embedded message: field + length + the bytes of sub. */
static void pb_msg_field(pbuf *b, int field, const pbuf *sub) { pb_bytes_field(b, field, sub->p, sub->n); }

static void pb_free(pbuf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ---- writer ----------------------------------------------------------------- */

struct sd_tb {
    FILE *f;
    char *path;
    int failed; /* a write failed: later writes fail fast with the same kind of message */
};

const char *sd_tb_path(const sd_tb *tb) { return tb->path; }

static double wall_time(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

static void put_le(unsigned char *d, uint64_t v, int n) {
    for (int i = 0; i < n; i++) d[i] = (unsigned char)(v >> (8 * i));
}

static int write_record(sd_tb *tb, const pbuf *data) {
    if (tb->failed) return sd_set_error("%s: an earlier write failed", tb->path);
    unsigned char head[12], tail[4];
    put_le(head, data->n, 8);
    put_le(head + 8, sd_crc32c_masked(head, 8), 4);
    put_le(tail, sd_crc32c_masked(data->p, data->n), 4);
    if (fwrite(head, 1, 12, tb->f) != 12 || (data->n && fwrite(data->p, 1, data->n, tb->f) != data->n) ||
        fwrite(tail, 1, 4, tb->f) != 4 || fflush(tb->f) != 0) {
        tb->failed = 1;
        return sd_set_error("%s: write error: %s", tb->path, strerror(errno));
    }
    return 0;
}

/* An Event with wall_time, step and the Summary holding one Value. */
static int write_value_event(sd_tb *tb, int64_t step, const pbuf *value) {
    pbuf summary = {0}, ev = {0};
    pb_msg_field(&summary, 1, value);
    pb_double_field(&ev, 1, wall_time());
    pb_u64_field(&ev, 2, (uint64_t)step);
    pb_msg_field(&ev, 5, &summary);
    int rc = write_record(tb, &ev);
    pb_free(&summary);
    pb_free(&ev);
    return rc;
}

int sd_tb_open(sd_tb **out, const char *logdir) {
    static int counter = 0;
    *out = NULL;
    if (sd_mkdir_p(logdir)) return -1;
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0) strcpy(host, "localhost");
    host[sizeof host - 1] = 0;
    for (char *c = host; *c; c++)
        if (*c == '/') *c = '_';
    char name[512];
    int n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
    snprintf(name, sizeof name, "events.out.tfevents.%010ld.%s.%ld.%d", (long)time(NULL), host, (long)getpid(), n);
    sd_tb *tb = sd_xcalloc(1, sizeof *tb);
    tb->path = sd_path_join(logdir, name);
    tb->f = fopen(tb->path, "wb");
    if (!tb->f) {
        sd_set_error("%s: cannot create: %s", tb->path, strerror(errno));
        free(tb->path);
        free(tb);
        return -1;
    }
    pbuf ev = {0};
    pb_double_field(&ev, 1, wall_time());
    pb_bytes_field(&ev, 3, "brain.Event:2", 13);
    int rc = write_record(tb, &ev);
    pb_free(&ev);
    if (rc) {
        fclose(tb->f);
        free(tb->path);
        free(tb);
        return -1;
    }
    *out = tb;
    return 0;
}

int sd_tb_scalar(sd_tb *tb, const char *tag, int64_t step, double value) {
    pbuf v = {0};
    pb_bytes_field(&v, 1, tag, strlen(tag));
    pb_float_field(&v, 2, (float)value);
    int rc = write_value_event(tb, step, &v);
    pb_free(&v);
    return rc;
}

int sd_tb_image(sd_tb *tb, const char *tag, int64_t step, const void *png, size_t len, int height, int width,
                int channels) {
    if (height <= 0 || width <= 0 || channels < 1 || channels > 4)
        return sd_set_error("tensorboard image %s: bad size %dx%dx%d", tag, height, width, channels);
    pbuf img = {0}, v = {0};
    pb_u64_field(&img, 1, (uint64_t)height);
    pb_u64_field(&img, 2, (uint64_t)width);
    pb_u64_field(&img, 3, (uint64_t)channels);
    pb_bytes_field(&img, 4, png, len);
    pb_bytes_field(&v, 1, tag, strlen(tag));
    pb_msg_field(&v, 4, &img);
    int rc = write_value_event(tb, step, &v);
    pb_free(&img);
    pb_free(&v);
    return rc;
}

int sd_tb_text(sd_tb *tb, const char *tag, int64_t step, const char *text) {
    pbuf plugin = {0}, meta = {0}, shape = {0}, tensor = {0}, v = {0};
    pb_bytes_field(&plugin, 1, "text", 4);
    pb_msg_field(&meta, 1, &plugin);
    pb_u64_field(&tensor, 1, 7);     /* DT_STRING */
    pb_msg_field(&tensor, 2, &shape); /* empty shape: a scalar */
    pb_bytes_field(&tensor, 8, text, strlen(text));
    pb_bytes_field(&v, 1, tag, strlen(tag));
    pb_msg_field(&v, 8, &tensor);
    pb_msg_field(&v, 9, &meta);
    int rc = write_value_event(tb, step, &v);
    pb_free(&plugin);
    pb_free(&meta);
    pb_free(&shape);
    pb_free(&tensor);
    pb_free(&v);
    return rc;
}

/* fsync, except where the file system cannot (EINVAL: pipes, some special files) */
static int sync_file(FILE *f) { return fflush(f) != 0 || (fsync(fileno(f)) != 0 && errno != EINVAL) ? -1 : 0; }

int sd_tb_flush(sd_tb *tb) {
    if (sync_file(tb->f)) return sd_set_error("%s: flush: %s", tb->path, strerror(errno));
    return 0;
}

int sd_tb_close(sd_tb *tb) {
    if (!tb) return 0;
    int rc = 0;
    if (sync_file(tb->f)) rc = sd_set_error("%s: flush: %s", tb->path, strerror(errno));
    if (fclose(tb->f) != 0 && rc == 0) rc = sd_set_error("%s: close: %s", tb->path, strerror(errno));
    free(tb->path);
    free(tb);
    return rc;
}
