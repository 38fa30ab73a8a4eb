/* st_tool.c — test helper for the safetensors round-trip tests (tests/py).
 *
 *   st_tool write OUT      write one tensor of each tested dtype with known
 *                          bit patterns (F32, F16, BF16, I64, I32, U8, BOOL,
 *                          F64, I8, I16, U16, U32, U64) and metadata
 *   st_tool dump IN        print "name dtype shape sha256(raw) sha256(as f32)"
 *                          per tensor in name order, then "meta key value"
 *   st_tool copy IN OUT    read every tensor and write it back (same dtype)
 */
#include "core/error.h"
#include "core/sha256.h"
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex_of(const void *p, size_t n, char out[65]) {
    sd_sha256 s;
    unsigned char d[32];
    sd_sha256_init(&s);
    sd_sha256_update(&s, p, n);
    sd_sha256_final(&s, d);
    sd_sha256_hex(d, out);
}

/* Deterministic byte pattern: byte i of tensor k. Floats get values that
 * exercise rounding, sign, subnormals, inf and nan. */
static unsigned char *pattern(sd_dtype t, int64_t n, size_t *nbytes) {
    size_t es = (size_t)sd_dtype_bits(t) / 8;
    *nbytes = es * (size_t)n;
    unsigned char *b = sd_xcalloc(1, *nbytes);
    uint32_t x = 0x12345678u + (uint32_t)t;
    for (size_t i = 0; i < *nbytes; i++) {
        x = x * 1664525u + 1013904223u;
        b[i] = (unsigned char)(x >> 24);
    }
    if (t == SD_BOOL) for (size_t i = 0; i < *nbytes; i++) b[i] &= 1;
    if (t == SD_F32) { /* avoid NaN payload differences: clear NaNs */
        for (int64_t i = 0; i < n; i++) {
            float f;
            memcpy(&f, b + 4 * i, 4);
            if (f != f) { f = (float)i; memcpy(b + 4 * i, &f, 4); }
        }
    }
    return b;
}

static int do_write(const char *out) {
    static const sd_dtype types[] = {SD_F32, SD_F16, SD_BF16, SD_I64, SD_I32, SD_U8, SD_BOOL,
                                     SD_F64, SD_I8, SD_I16, SD_U16, SD_U32, SD_U64};
    sd_st_writer *w = sd_st_writer_new();
    unsigned char *bufs[16];
    int nt = (int)(sizeof types / sizeof types[0]);
    for (int k = 0; k < nt; k++) {
        int64_t shape[3] = {3, 5, 7 + k};
        size_t nb;
        bufs[k] = pattern(types[k], shape[0] * shape[1] * shape[2], &nb);
        char name[64];
        snprintf(name, sizeof name, "t_%s", sd_dtype_name(types[k]));
        if (sd_st_writer_add(w, name, types[k], 3, shape, bufs[k])) return -1;
    }
    int64_t s0[1] = {0};
    if (sd_st_writer_add(w, "empty", SD_F32, 1, s0, NULL)) return -1;
    float scalar = 3.5f;
    if (sd_st_writer_add(w, "scalar", SD_F32, 0, NULL, &scalar)) return -1;
    sd_st_writer_meta(w, "format", "pt");
    int rc = sd_st_writer_save(w, out);
    sd_st_writer_free(w);
    for (int k = 0; k < nt; k++) free(bufs[k]);
    return rc;
}

static int do_dump(const char *in) {
    sd_st_file *f;
    if (sd_st_open(in, &f)) return -1;
    for (int i = 0; i < f->ntensors; i++) {
        const sd_st_tensor *t = &f->tensors[f->by_name[i]];
        char raw[65], conv[65] = "-", sh[256];
        hex_of(sd_st_raw(f, t), (size_t)(t->end - t->begin), raw);
        if (sd_dtype_is_real(t->dtype)) {
            float *v = sd_xmalloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
            if (sd_st_read_f32(f, t, v)) { free(v); sd_st_close(f); return -1; }
            hex_of(v, sizeof(float) * (size_t)t->numel, conv);
            free(v);
        }
        sd_shape_str(t->ndim, t->shape, sh, sizeof sh);
        for (char *p = sh; *p; p++) if (*p == ' ') *p = '_';
        printf("%s %s %s %s %s\n", t->name, sd_dtype_name(t->dtype), sh, raw, conv);
    }
    for (int i = 0; i < f->nmeta; i++) printf("meta %s %s\n", f->meta_keys[i], f->meta_vals[i]);
    sd_st_close(f);
    return 0;
}

static int do_copy(const char *in, const char *out) {
    sd_st_file *f;
    if (sd_st_open(in, &f)) return -1;
    sd_st_writer *w = sd_st_writer_new();
    for (int i = 0; i < f->ntensors; i++) {
        const sd_st_tensor *t = &f->tensors[i];
        if (sd_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, sd_st_raw(f, t))) return -1;
    }
    for (int i = 0; i < f->nmeta; i++) sd_st_writer_meta(w, f->meta_keys[i], f->meta_vals[i]);
    int rc = sd_st_writer_save(w, out);
    sd_st_writer_free(w);
    sd_st_close(f);
    return rc;
}

int main(int argc, char **argv) {
    sd_set_progname("st_tool");
    int rc;
    if (argc == 3 && !strcmp(argv[1], "write")) rc = do_write(argv[2]);
    else if (argc == 3 && !strcmp(argv[1], "dump")) rc = do_dump(argv[2]);
    else if (argc == 4 && !strcmp(argv[1], "copy")) rc = do_copy(argv[2], argv[3]);
    else { fprintf(stderr, "usage: st_tool write OUT | dump IN | copy IN OUT\n"); return 2; }
    if (rc) sd_die_last();
    return 0;
}
