/* shard_tool.c — test helper for tests/py/test_shards_python.py and a small
 * stand-alone viewer (the sdinfo hook calls the same sd_shard_describe).
 *
 *   shard_tool write-prep DIR N PER_SHARD [zstd]
 *        prep shards with the member conventions of formats/shards.md:
 *        KEY.png (W x H RGB, pixel(x,y,c) = (37x + 11y + 50c + 7i) mod 256,
 *        W = 8 + i mod 3, H = 6 + i mod 2), KEY.txt, KEY.json, KEY.tokens.safetensors
 *        (1 + i mod 3 captions "caption I.J"; ids[j][t] = (1000 i + 10 j + t) mod 49408)
 *        and DIR/manifest.json
 *   shard_tool write-latent DIR N PER_SHARD [zstd] [flip] [text] [f16]
 *        latent shards: KEY.latent.safetensors mean/logvar [4, 3, 5]
 *        (mean[c,y,x] = ((131 i + 17 c + 5 y + x) mod 97)/97 - 0.5, logvar = -mean;
 *        with flip, *_flipped = the same mirrored along x), optional
 *        KEY.text.safetensors hidden_states [n, 77, 8] (= (i + j + t + d) / 64),
 *        plus the KEY.txt/json/tokens of write-prep
 *   shard_tool cat SPEC              one line per member: KEY EXT LEN SHA256
 *   shard_tool describe [--json] SPEC
 *   shard_tool expand SPEC           one path per line
 *   shard_tool verify DIR            sd_shard_manifest_verify
 */
#define _GNU_SOURCE
#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "io/shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---- a minimal PNG encoder (RGB8, filter 0, zlib) -------------------------- */

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16); p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}

static void chunk(unsigned char **buf, size_t *n, const char *type, const unsigned char *data, uint32_t len) {
    *buf = sd_xrealloc(*buf, *n + 12 + len);
    unsigned char *p = *buf + *n;
    put32(p, len);
    memcpy(p + 4, type, 4);
    if (len) memcpy(p + 8, data, len);
    put32(p + 8 + len, (uint32_t)crc32(0, p + 4, 4 + len));
    *n += 12 + len;
}

static unsigned char *png_rgb(const unsigned char *rgb, int w, int h, size_t *len) {
    size_t raw_n = (size_t)h * (size_t)(1 + 3 * w);
    unsigned char *raw = sd_xmalloc(raw_n);
    for (int y = 0; y < h; y++) {
        raw[(size_t)y * (size_t)(1 + 3 * w)] = 0;
        memcpy(raw + (size_t)y * (size_t)(1 + 3 * w) + 1, rgb + (size_t)y * 3 * (size_t)w, 3 * (size_t)w);
    }
    uLongf zn = compressBound(raw_n);
    unsigned char *z = sd_xmalloc(zn);
    if (compress2(z, &zn, raw, raw_n, 9) != Z_OK) sd_die("zlib failed");
    unsigned char *out = sd_xmalloc(8);
    memcpy(out, "\x89PNG\r\n\x1a\n", 8);
    size_t n = 8;
    unsigned char ihdr[13];
    put32(ihdr, (uint32_t)w);
    put32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
    chunk(&out, &n, "IHDR", ihdr, 13);
    chunk(&out, &n, "IDAT", z, (uint32_t)zn);
    chunk(&out, &n, "IEND", NULL, 0);
    free(raw);
    free(z);
    *len = n;
    return out;
}

/* ---- sample contents --------------------------------------------------------- */

typedef struct {
    unsigned char *png, *tok, *lat, *txt_st;
    size_t png_n, tok_n, lat_n, txt_st_n;
    char *json;
    char txt[64];
} sample_bufs;

static void free_bufs(sample_bufs *b) {
    free(b->png); free(b->tok); free(b->lat); free(b->txt_st); free(b->json);
    memset(b, 0, sizeof *b);
}

static void make_prep(int i, int flip, sample_bufs *b) {
    int w = 8 + i % 3, h = 6 + i % 2;
    unsigned char *rgb = sd_xmalloc((size_t)(w * h * 3));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) rgb[(y * w + x) * 3 + c] = (unsigned char)((37 * x + 11 * y + 50 * c + 7 * i) & 255);
    b->png = png_rgb(rgb, w, h, &b->png_n);
    free(rgb);
    int ncap = 1 + i % 3;
    char **caps = sd_xmalloc(sizeof(char *) * (size_t)ncap);
    for (int j = 0; j < ncap; j++) {
        caps[j] = sd_xmalloc(64);
        snprintf(caps[j], 64, "caption %d.%d \xc3\xa9", i, j);
    }
    snprintf(b->txt, sizeof b->txt, "%s", caps[0]);
    char src[64];
    snprintf(src, sizeof src, "images/img_%04d.png", i);
    sd_prep_meta m = {.index = (uint64_t)i, .source = src, .original_width = 2 * w, .original_height = 2 * h,
                      .resized_width = w + 1, .resized_height = h, .crop_ltrb = {1, 0, w + 1, h}, .random_flip = flip,
                      .ncaptions = ncap, .captions = caps};
    b->json = sd_prep_meta_to_json(&m);
    int32_t *ids = sd_xmalloc(sizeof(int32_t) * (size_t)ncap * SD_TOKENS_LEN);
    for (int j = 0; j < ncap; j++)
        for (int t = 0; t < SD_TOKENS_LEN; t++) ids[j * SD_TOKENS_LEN + t] = (1000 * i + 10 * j + t) % 49408;
    if (sd_tokens_pack(ids, ncap, "test-tokenizer-fingerprint", &b->tok, &b->tok_n)) sd_die_last();
    free(ids);
    for (int j = 0; j < ncap; j++) free(caps[j]);
    free(caps);
}

static void make_latent(int i, int flip, int text, sd_dtype dt, sample_bufs *b) {
    enum { C = 4, H = 3, W = 5 };
    float mean[C * H * W], logvar[C * H * W], mf[C * H * W], lf[C * H * W];
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                float v = (float)((131 * i + 17 * c + 5 * y + x) % 97) / 97.0f - 0.5f;
                mean[(c * H + y) * W + x] = v;
                logvar[(c * H + y) * W + x] = -v;
                mf[(c * H + y) * W + (W - 1 - x)] = v;
                lf[(c * H + y) * W + (W - 1 - x)] = -v;
            }
    int64_t shape[3] = {C, H, W};
    sd_st_writer *w = sd_st_writer_new();
    sd_st_writer_add_f32(w, SD_T_MEAN, dt, 3, shape, mean);
    sd_st_writer_add_f32(w, SD_T_LOGVAR, dt, 3, shape, logvar);
    if (flip) {
        sd_st_writer_add_f32(w, SD_T_MEAN_FLIPPED, dt, 3, shape, mf);
        sd_st_writer_add_f32(w, SD_T_LOGVAR_FLIPPED, dt, 3, shape, lf);
    }
    sd_st_writer_meta(w, SD_META_VAE, "test-vae-fingerprint");
    if (sd_st_writer_to_memory(w, &b->lat, &b->lat_n)) sd_die_last();
    sd_st_writer_free(w);
    if (text) {
        int ncap = 1 + i % 3, D = 8;
        float *hs = sd_xmalloc(sizeof(float) * (size_t)(ncap * SD_TOKENS_LEN * D));
        for (int j = 0; j < ncap; j++)
            for (int t = 0; t < SD_TOKENS_LEN; t++)
                for (int d = 0; d < D; d++) hs[(j * SD_TOKENS_LEN + t) * D + d] = (float)(i + j + t + d) / 64.0f;
        int64_t hsh[3] = {ncap, SD_TOKENS_LEN, D};
        w = sd_st_writer_new();
        sd_st_writer_add_f32(w, SD_T_HIDDEN_STATES, dt, 3, hsh, hs);
        sd_st_writer_meta(w, SD_META_TEXT_ENCODER, "test-te-fingerprint");
        if (sd_st_writer_to_memory(w, &b->txt_st, &b->txt_st_n)) sd_die_last();
        sd_st_writer_free(w);
        free(hs);
    }
}

static int has_arg(int argc, char **argv, int from, const char *a) {
    for (int i = from; i < argc; i++)
        if (!strcmp(argv[i], a)) return 1;
    return 0;
}

static int write_set(const char *dir, int n, int per, int latent, int argc, char **argv) {
    int zstd = has_arg(argc, argv, 5, "zstd"), flip = has_arg(argc, argv, 5, "flip"), text = has_arg(argc, argv, 5, "text");
    sd_dtype dt = has_arg(argc, argv, 5, "f16") ? SD_F16 : SD_F32;
    if (sd_mkdir_p(dir)) return -1;
    sd_shard_manifest m;
    sd_shard_manifest_init(&m, latent ? SD_SHARD_KIND_LATENT : SD_SHARD_KIND_PREP);
    sd_shard_writer *w = NULL;
    int shard = 0;
    for (int i = 0; i < n; i++) {
        if (!w) {
            char *name = sd_shard_filename(latent ? SD_SHARD_PREFIX_LATENT : SD_SHARD_PREFIX_PREP, shard, zstd);
            char *path = sd_path_join(dir, name);
            int rc = sd_shard_writer_open(&w, path, 0);
            free(name);
            free(path);
            if (rc) return -1;
        }
        sample_bufs b = {0};
        make_prep(i, flip, &b);
        sd_shard_member mem[6];
        int k = 0;
        mem[k++] = (sd_shard_member){SD_EXT_CAPTION, b.txt, strlen(b.txt)};
        mem[k++] = (sd_shard_member){SD_EXT_META, b.json, strlen(b.json)};
        mem[k++] = (sd_shard_member){SD_EXT_TOKENS, b.tok, b.tok_n};
        if (latent) {
            make_latent(i, flip, text, dt, &b);
            mem[k++] = (sd_shard_member){SD_EXT_LATENT, b.lat, b.lat_n};
            if (text) mem[k++] = (sd_shard_member){SD_EXT_TEXT, b.txt_st, b.txt_st_n};
        } else {
            mem[k++] = (sd_shard_member){SD_EXT_IMAGE, b.png, b.png_n};
        }
        char key[32];
        sd_shard_key((uint64_t)i, key);
        int rc = sd_shard_write_sample(w, key, k, mem);
        free_bufs(&b);
        if (rc) { sd_shard_writer_abort(w); return -1; }
        if ((i + 1) % per == 0 || i == n - 1) {
            sd_shard_info info;
            if (sd_shard_writer_close(w, &info)) return -1;
            w = NULL;
            sd_shard_manifest_add(&m, &info);
            shard++;
            /* rewritten after every shard, as producers do (restart support) */
            if (sd_shard_manifest_write(&m, dir)) return -1;
        }
    }
    cJSON *prov = cJSON_CreateObject();
    cJSON_AddStringToObject(prov, "tool", "shard_tool");
    cJSON_AddStringToObject(prov, "version", SD_VERSION);
    cJSON *opts = cJSON_AddObjectToObject(prov, "options");
    cJSON_AddBoolToObject(opts, "random_flip", flip);
    cJSON_AddNumberToObject(prov, "samples", n);
    sd_shard_manifest_set_provenance(&m, prov);
    m.complete = 1;
    int rc = sd_shard_manifest_write(&m, dir);
    sd_shard_manifest_free(&m);
    return rc;
}

static int cat(const char *spec) {
    char **paths;
    int n;
    if (sd_shard_expand(spec, &paths, &n)) return -1;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        sd_shard_reader *r;
        if (sd_shard_open(&r, paths[i], NULL)) { rc = -1; break; }
        sd_shard_sample *s;
        int k;
        while ((k = sd_shard_next(r, &s)) == 1)
            for (int j = 0; j < s->n; j++) {
                sd_sha256 h;
                unsigned char d[32];
                char hex[65];
                sd_sha256_init(&h);
                sd_sha256_update(&h, s->files[j].data, s->files[j].len);
                sd_sha256_final(&h, d);
                sd_sha256_hex(d, hex);
                printf("%s %s %zu %s\n", s->key, s->files[j].ext, s->files[j].len, hex);
            }
        if (k < 0) rc = -1;
        sd_shard_close(r);
    }
    sd_free_strv(paths, n);
    return rc;
}

int main(int argc, char **argv) {
    sd_set_progname("shard_tool");
    if (argc < 3) sd_die("usage: shard_tool write-prep|write-latent|cat|describe|expand|verify ...");
    const char *cmd = argv[1];
    int rc;
    if ((!strcmp(cmd, "write-prep") || !strcmp(cmd, "write-latent")) && argc >= 5)
        rc = write_set(argv[2], atoi(argv[3]), atoi(argv[4]), !strcmp(cmd, "write-latent"), argc, argv);
    else if (!strcmp(cmd, "cat")) rc = cat(argv[2]);
    else if (!strcmp(cmd, "describe")) {
        int json = !strcmp(argv[2], "--json");
        if (json && argc < 4) sd_die("describe --json SPEC");
        rc = sd_shard_describe(argv[json ? 3 : 2], json, stdout);
    } else if (!strcmp(cmd, "expand")) {
        char **p;
        int n;
        rc = sd_shard_expand(argv[2], &p, &n);
        for (int i = 0; !rc && i < n; i++) printf("%s\n", p[i]);
        if (!rc) sd_free_strv(p, n);
    } else if (!strcmp(cmd, "verify")) {
        sd_shard_manifest m;
        rc = sd_shard_manifest_read(argv[2], &m);
        if (!rc) {
            rc = sd_shard_manifest_verify(&m, argv[2]);
            sd_shard_manifest_free(&m);
        }
    } else sd_die("unknown command %s", cmd);
    if (rc) sd_die_last();
    return 0;
}
