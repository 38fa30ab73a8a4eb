/* test_models_clip_vae.c — CLIP text encoder and VAE forward passes vs torch.
 *
 * The tiny pipelines (sd1-tiny, sd2-tiny, sd1-3down) are regenerated at test
 * time with tests/fixtures/make_tiny_model.py ($SD_PY, numpy only) and
 * compared with tests/ref/golden/models/{clip,vae}_*.safetensors, written by
 * tests/ref/gen_models_forward.py from transformers' CLIPTextModel and
 * diffusers' AutoencoderKL (fp32) on the same weights. Inputs: token ids from
 * the golden; images and latents from det_uniform(), which reproduces the
 * generator's function bit for bit. VAE config variants (no quant convs, no
 * mid attention, other group counts, layers_per_block 2, 3 latent channels)
 * are built in code from a weight rule both sides implement
 * (vae_variants.safetensors).
 *
 * Tolerance: max |ours - torch| <= 1e-4 · RMS(torch output). Both sides are
 * fp32 with different summation orders (OpenBLAS vs MKL-DNN blocking, and
 * Winograd F(2x2,3x3) for our 3x3 convolutions, whose transforms are exact
 * in binary except the 1/2 factors, also exact): each op's error is a few
 * ulps of its accumulated magnitudes, i.e. ~1e-7..1e-6 relative, and these
 * networks are 10-20 ops deep with residual sums, so a few 1e-6 relative is
 * expected. 1e-4 leaves margin for that while still catching any real
 * mistake: swapping quick_gelu for gelu in the text encoder moves its output
 * by ~4e-3 RMS-relative, a wrong GroupNorm eps (1e-5 for 1e-6) or a missing
 * bias by far more.
 */
#include "backend/backend.h"
#include "core/fs.h"
#include "io/safetensors.h"
#include "models/clip_text.h"
#include "models/modeldir.h"
#include "models/vae.h"
#include "test.h"

#include <stdarg.h>
#include <stdint.h>
#include <zlib.h>

#define REL_TOL 1e-4

static const char *tmp;
static sd_backend *be;

static const char *python(void) {
    const char *p = getenv("SD_PY");
    return p && *p ? p : ".venv-test/bin/python";
}

static int make_tiny(const char *name, char *dir, size_t n) {
    snprintf(dir, n, "%s/%s", tmp, name);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s tests/fixtures/make_tiny_model.py --config %s %s --force", python(), name, dir);
    fflush(stdout);
    int rc = system(cmd);
    if (rc) printf("# command failed (%d): %s\n", rc, cmd);
    return rc;
}

/* gen_models_forward.py det_uniform: splitmix64(seed·2^32 + i), top 24 bits -> [-1, 1) exactly. */
static void det_uniform(uint64_t seed, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (seed << 32) + i + 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        out[i] = (float)((double)(z >> 40) * (1.0 / 8388608.0) - 1.0);
    }
}

/* A golden tensor as f32 (malloc'ed), with its shape. */
static float *golden(sd_st_file *f, const char *name, int64_t shape[4], size_t *n) {
    const sd_st_tensor *t = sd_st_find(f, name);
    if (!t) {
        printf("# golden %s missing in %s\n", name, f->path);
        return NULL;
    }
    float *b = malloc((size_t)t->numel * sizeof(float));
    if (sd_st_read_f32(f, t, b)) {
        printf("# %s\n", sd_last_error());
        free(b);
        return NULL;
    }
    for (int d = 0; d < 4; d++) shape[d] = d < t->ndim ? t->shape[d] : 1;
    *n = (size_t)t->numel;
    return b;
}

static int compare(const char *what, const float *got, const float *ref, size_t n) {
    double ma, rel;
    test_compare(got, ref, n, &ma, &rel);
    printf("# %-34s max abs %.3g, max/RMS %.3g\n", what, ma, rel);
    CHECK_MSG(rel <= REL_TOL, "%s: max/RMS error %.3g > %g", what, rel, REL_TOL);
    return rel <= REL_TOL;
}

/* ---- CLIP ------------------------------------------------------------------------ */

static void clip_case(const char *cfg) {
    char dir[1024], path[1024];
    if (make_tiny(cfg, dir, sizeof dir)) {
        CHECK(0);
        return;
    }
    snprintf(path, sizeof path, "tests/ref/golden/models/clip_%s.safetensors", cfg);
    sd_st_file *g;
    sd_model *m;
    sd_clip_text *te;
    CHECK_OK(sd_st_open(path, &g));
    CHECK_OK(sd_model_open(dir, NULL, &m));
    CHECK_OK(sd_clip_text_load(m, be, &te));
    if (!te) return;
    int D = te->hidden;

    const char *idn[2] = {"ids", "ids_short"};
    for (int s = 0; s < 2; s++) {
        const sd_st_tensor *ti = sd_st_find(g, idn[s]);
        CHECK(ti && ti->dtype == SD_I32 && ti->ndim == 2);
        if (!ti) continue;
        int B = (int)ti->shape[0], L = (int)ti->shape[1];
        int32_t *ids = malloc((size_t)B * L * sizeof(int32_t));
        sd_st_read_raw(g, ti, ids);
        float *out = malloc((size_t)B * L * D * sizeof(float));
        for (int skip = 0; skip <= (s == 0 ? 2 : 0); skip++) {
            char gn[64], what[128];
            snprintf(gn, sizeof gn, s == 0 ? "out_skip%d" : "out_short", skip);
            int64_t sh[4];
            size_t n;
            float *ref = golden(g, gn, sh, &n);
            if (!ref) {
                CHECK(0);
                continue;
            }
            CHECK(n == (size_t)B * L * D);
            CHECK_OK(sd_clip_text_forward(te, ids, B, L, skip, out));
            snprintf(what, sizeof what, "clip %s %s [%d,%d]", cfg, gn, B, L);
            compare(what, out, ref, n);
            if (s == 0 && skip == 0) {
                /* rows are independent: row 1 alone gives the batch's row 1 */
                float *one = malloc((size_t)L * D * sizeof(float));
                CHECK_OK(sd_clip_text_forward(te, ids + L, 1, L, 0, one));
                snprintf(what, sizeof what, "clip %s row 1 alone", cfg);
                compare(what, one, ref + (size_t)L * D, (size_t)L * D);
                free(one);
            }
            free(ref);
        }
        free(out);
        free(ids);
    }

    /* fingerprint = sd_param_fingerprint of the plain load; create() from that buffer agrees */
    sd_param_table t;
    float *buf;
    CHECK_OK(sd_model_load_alloc(m, SD_TEXT_ENCODER, &t, &buf));
    char h1[65], h2[65];
    sd_param_fingerprint(&t, buf, h1);
    CHECK_OK(sd_clip_text_fingerprint(te, h2));
    CHECK(!strcmp(h1, h2));
    sd_clip_text *te2;
    CHECK_OK(sd_clip_text_create(&m->text, buf, be, &te2));
    if (te2) {
        int32_t ids[2 * 77];
        for (int i = 0; i < 2 * 77; i++) ids[i] = (i * 37) % 1000;
        float *a = malloc(2 * 77 * (size_t)D * sizeof(float)), *b = malloc(2 * 77 * (size_t)D * sizeof(float));
        CHECK_OK(sd_clip_text_forward(te, ids, 2, 77, 1, a));
        CHECK_OK(sd_clip_text_forward(te2, ids, 2, 77, 1, b));
        CHECK(!memcmp(a, b, 2 * 77 * (size_t)D * sizeof(float)));
        free(a);
        free(b);
        sd_clip_text_free(te2);
    }
    free(buf);
    sd_param_table_free(&t);
    sd_clip_text_free(te);
    sd_model_close(m);
    sd_st_close(g);
}

TEST(clip_sd1_tiny) { clip_case("sd1-tiny"); }
TEST(clip_sd2_tiny_gelu) { clip_case("sd2-tiny"); }
TEST(clip_sd2_hd64) { clip_case("sd2-hd64"); } /* gelu, 64-wide heads as SD2's OpenCLIP tower */

TEST(clip_errors) {
    sd_model *m;
    sd_clip_text *te;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/sd1-tiny", tmp);
    CHECK_OK(sd_model_open(dir, NULL, &m));
    CHECK_OK(sd_clip_text_load(m, be, &te));
    if (!te) return;
    int32_t ids[80] = {0};
    float out[80 * 32];
    CHECK_FAILS(sd_clip_text_forward(te, ids, 1, 78, 0, out), "tokens per row");
    CHECK_FAILS(sd_clip_text_forward(te, ids, 0, 77, 0, out), "rows");
    CHECK_FAILS(sd_clip_text_forward(te, ids, 1, 77, 6, out), "clip_skip 6 out of range 0..5");
    CHECK_FAILS(sd_clip_text_forward(te, ids, 1, 77, -1, out), "clip_skip");
    ids[5] = 1000;
    CHECK_FAILS(sd_clip_text_forward(te, ids, 1, 77, 0, out), "token id 1000 (row 0, position 5)");
    ids[5] = -1;
    CHECK_FAILS(sd_clip_text_forward(te, ids, 1, 77, 0, out), "token id -1");
    ids[5] = 0;
    /* clip_skip = num_hidden_layers: the embeddings through final_layer_norm */
    CHECK_OK(sd_clip_text_forward(te, ids, 1, 77, 5, out));
    sd_clip_text_config c = m->text;
    c.hidden_act = SD_ACT_GELU_TANH;
    sd_clip_text *bad = NULL;
    float dummy = 0;
    CHECK_FAILS(sd_clip_text_create(&c, &dummy, be, &bad), "gelu_new");
    CHECK(bad == NULL);
    sd_clip_text_free(te);
    sd_model_close(m);
}

/* ---- VAE --------------------------------------------------------------------------- */

static const struct {
    uint64_t seed;
    int B, C, H, W;
} ENC[2] = {{11, 2, 3, 64, 64}, {12, 1, 3, 48, 80}}, DEC[2] = {{21, 2, 4, 16, 16}, {22, 1, 4, 6, 10}};

static void vae_case(const char *cfg) {
    char dir[1024], path[1024];
    if (make_tiny(cfg, dir, sizeof dir)) {
        CHECK(0);
        return;
    }
    snprintf(path, sizeof path, "tests/ref/golden/models/vae_%s.safetensors", cfg);
    sd_st_file *g;
    sd_model *m;
    sd_vae *v;
    CHECK_OK(sd_st_open(path, &g));
    CHECK_OK(sd_model_open(dir, NULL, &m));
    CHECK_OK(sd_vae_load(m, be, &v));
    if (!v || !g) return;
    const int f = v->factor, L = v->latent_channels;
    CHECK(v->scaling_factor == 0.18215f && v->shift_factor == 0.0f);

    for (int i = 0; i < 2; i++) {
        int B = ENC[i].B, H = ENC[i].H, W = ENC[i].W, h = H / f, w = W / f;
        size_t nin = (size_t)B * ENC[i].C * H * W, nl = (size_t)B * L * h * w;
        float *img = malloc(nin * sizeof(float)), *mom = malloc(2 * nl * sizeof(float));
        float *mean = malloc(nl * sizeof(float)), *lv = malloc(nl * sizeof(float));
        det_uniform(ENC[i].seed, img, nin);
        CHECK_OK(sd_vae_encode(v, img, B, H, W, mom));
        sd_vae_moments_split(mom, B, L, h, w, mean, lv);
        char gn[32], what[128];
        int64_t sh[4];
        size_t n;
        snprintf(gn, sizeof gn, "enc%d_mean", i);
        float *ref = golden(g, gn, sh, &n);
        CHECK(ref && n == nl && sh[2] == h && sh[3] == w);
        snprintf(what, sizeof what, "vae %s encode [%d,3,%d,%d] mean", cfg, B, H, W);
        if (ref && n == nl) compare(what, mean, ref, n);
        free(ref);
        snprintf(gn, sizeof gn, "enc%d_logvar", i);
        ref = golden(g, gn, sh, &n);
        snprintf(what, sizeof what, "vae %s encode [%d,3,%d,%d] logvar", cfg, B, H, W);
        if (ref && n == nl) compare(what, lv, ref, n);
        free(ref);
        /* determinism: a second call (workspace reused) is bit-identical */
        if (i == 0) {
            float *again = malloc(2 * nl * sizeof(float));
            size_t held = sd_vae_workspace_held(v);
            CHECK_OK(sd_vae_encode(v, img, B, H, W, again));
            CHECK(!memcmp(again, mom, 2 * nl * sizeof(float)));
            CHECK(sd_vae_workspace_held(v) == held);
            free(again);
        }
        free(img), free(mom), free(mean), free(lv);
    }
    for (int i = 0; i < 2; i++) {
        int B = DEC[i].B, h = DEC[i].H, w = DEC[i].W;
        size_t nz = (size_t)B * L * h * w, nout = (size_t)B * 3 * h * f * w * f;
        float *z = malloc(nz * sizeof(float)), *img = malloc(nout * sizeof(float));
        det_uniform(DEC[i].seed, z, nz);
        for (size_t k = 0; k < nz; k++) z[k] *= 3.0f;
        CHECK_OK(sd_vae_decode(v, z, B, h, w, img));
        char gn[32], what[128];
        int64_t sh[4];
        size_t n;
        snprintf(gn, sizeof gn, "dec%d", i);
        float *ref = golden(g, gn, sh, &n);
        CHECK(ref && n == nout && sh[2] == h * f && sh[3] == w * f);
        snprintf(what, sizeof what, "vae %s decode [%d,4,%d,%d]", cfg, B, h, w);
        if (ref && n == nout) compare(what, img, ref, n);
        free(ref), free(z), free(img);
    }

    /* fingerprint and create-from-buffer */
    sd_param_table t;
    float *buf;
    CHECK_OK(sd_model_load_alloc(m, SD_VAE, &t, &buf));
    char h1[65], h2[65];
    sd_param_fingerprint(&t, buf, h1);
    CHECK_OK(sd_vae_fingerprint(v, h2));
    CHECK(!strcmp(h1, h2));
    sd_vae *v2;
    CHECK_OK(sd_vae_create(&m->vae, buf, be, &v2));
    if (v2) {
        float z[4 * 4 * 6], a[3 * 4 * 6 * 64], b[3 * 4 * 6 * 64];
        det_uniform(99, z, 4 * 4 * 6);
        CHECK(f <= 8);
        CHECK_OK(sd_vae_decode(v, z, 1, 4, 6, a));
        CHECK_OK(sd_vae_decode(v2, z, 1, 4, 6, b));
        CHECK(!memcmp(a, b, (size_t)3 * 4 * 6 * f * f * sizeof(float)));
        sd_vae_free(v2);
    }
    free(buf);
    sd_param_table_free(&t);
    sd_vae_free(v);
    sd_model_close(m);
    sd_st_close(g);
}

TEST(vae_sd1_tiny) { vae_case("sd1-tiny"); }
TEST(vae_sd1_3down) { vae_case("sd1-3down"); }

/* Config variants built in code (gen_models_forward.py VARIANTS): no quant
 * convs and no mid attention with GroupNorm(8); layers_per_block 2 with 3
 * levels and 3 latent channels. Weights by variant_weights()'s rule. */
TEST(vae_config_variants) {
    sd_st_file *g;
    CHECK_OK(sd_st_open("tests/ref/golden/models/vae_variants.safetensors", &g));
    if (!g) return;
    for (int k = 0; k < 2; k++) {
        char key[32];
        snprintf(key, sizeof key, "config%d", k);
        const char *js = sd_st_meta(g, key);
        CHECK(js != NULL);
        cJSON *j = js ? cJSON_Parse(js) : NULL;
        sd_vae_config cfg;
        CHECK_OK(sd_vae_config_parse(j, key, &cfg));
        cJSON_Delete(j);
        sd_param_table t;
        CHECK_OK(sd_vae_param_table(&cfg, &t));
        float *buf = malloc(t.total * sizeof(float));
        for (int i = 0; i < t.n; i++) {
            const sd_param *p = &t.p[i];
            float *d = buf + p->offset;
            det_uniform(crc32(0, (const unsigned char *)p->name, (unsigned)strlen(p->name)), d, p->numel);
            size_t fan_in = p->numel / (size_t)p->shape[0];
            size_t len = strlen(p->name);
            for (size_t e = 0; e < p->numel; e++) {
                double u = d[e];
                if (p->ndim >= 2) d[e] = (float)(u * sqrt(3.0 / (double)fan_in));
                else if (len > 7 && !strcmp(p->name + len - 7, ".weight")) d[e] = (float)(1.0 + 0.1 * u);
                else d[e] = (float)(0.05 * u);
            }
        }
        sd_vae *v = NULL;
        CHECK_OK(sd_vae_create(&cfg, buf, be, &v));
        free(buf);
        if (v) {
            CHECK(v->latent_channels == cfg.latent_channels);
            const int f = v->factor, L = v->latent_channels, h = 32 / f, w = 48 / f;
            float img[3 * 32 * 48], *z = malloc((size_t)L * 5 * 7 * sizeof(float));
            float *mom = malloc(2 * (size_t)L * h * w * sizeof(float));
            float *mean = malloc((size_t)L * h * w * sizeof(float)), *lv = malloc((size_t)L * h * w * sizeof(float));
            float *dec = malloc((size_t)3 * 5 * f * 7 * f * sizeof(float));
            det_uniform(41, img, 3 * 32 * 48);
            det_uniform(42, z, (size_t)L * 5 * 7);
            for (int i = 0; i < L * 5 * 7; i++) z[i] *= 3.0f;
            CHECK_OK(sd_vae_encode(v, img, 1, 32, 48, mom));
            CHECK_OK(sd_vae_decode(v, z, 1, 5, 7, dec));
            sd_vae_moments_split(mom, 1, L, h, w, mean, lv);
            const char *part[3] = {"mean", "logvar", "dec"};
            const float *got[3] = {mean, lv, dec};
            for (int q = 0; q < 3; q++) {
                char gn[32], what[64];
                int64_t sh[4];
                size_t n;
                snprintf(gn, sizeof gn, "v%d_%s", k, part[q]);
                float *ref = golden(g, gn, sh, &n);
                size_t want = q < 2 ? (size_t)L * h * w : (size_t)3 * 5 * f * 7 * f;
                CHECK_MSG(ref && n == want, "%s: %zu values, expected %zu", gn, n, want);
                snprintf(what, sizeof what, "vae variant %d %s", k, part[q]);
                if (ref && n == want) compare(what, got[q], ref, n);
                free(ref);
            }
            free(z), free(mom), free(mean), free(lv), free(dec);
            sd_vae_free(v);
        }
        sd_param_table_free(&t);
        sd_vae_config_free(&cfg);
    }
    sd_st_close(g);
}

TEST(vae_shapes_and_memory) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/sd1-3down", tmp);
    sd_model *m;
    sd_vae *v;
    CHECK_OK(sd_model_open(dir, NULL, &m));
    CHECK_OK(sd_vae_load(m, be, &v));
    if (!v) return;
    float x[3 * 16 * 16], y[8 * 16 * 16];
    CHECK(v->factor == 4);
    CHECK_FAILS(sd_vae_encode(v, x, 1, 18, 16, y), "not a multiple of 4");
    CHECK_FAILS(sd_vae_encode(v, x, 0, 16, 16, y), "bad shape");
    CHECK_FAILS(sd_vae_decode(v, x, 1, 0, 4, y), "bad shape");
    /* Slot plan of the 3-level (32, 64, 64) decoder at a 16x16 latent, batch 2
     * (vae.c rotation): the 64x64 stage needs up (64 ch) and its conv output
     * (64 ch) in two slots, then resnet 64->32 keeps x (64), t (64), u (32):
     * slots 2·64·64², 2·64·64², 2·32·64² plus GroupNorm statistics 2·2·32. */
    size_t want = (2 * (size_t)64 * 4096 * 2 + 2 * (size_t)32 * 4096 + 2 * 2 * 32) * sizeof(float);
    size_t got = sd_vae_workspace_bytes(v, 0, 2, 16, 16);
    CHECK_MSG(got == want, "decoder workspace %zu, expected %zu", got, want);
    /* encoder at 64x64, batch 2: three 32-channel full-resolution slots */
    want = (3 * (size_t)2 * 32 * 4096 + 2 * 2 * 32) * sizeof(float);
    got = sd_vae_workspace_bytes(v, 1, 2, 64, 64);
    CHECK_MSG(got == want, "encoder workspace %zu, expected %zu", got, want);
    sd_vae_release(v);
    CHECK(sd_vae_workspace_held(v) == 0);
    CHECK_OK(sd_vae_reserve(v, 0, 2, 16, 16));
    CHECK(sd_vae_workspace_held(v) == sd_vae_workspace_bytes(v, 0, 2, 16, 16));
    /* a smaller call after reserve allocates nothing */
    float z[4 * 8 * 8], img[3 * 32 * 32];
    det_uniform(5, z, 4 * 8 * 8);
    size_t held = sd_vae_workspace_held(v);
    CHECK_OK(sd_vae_decode(v, z, 1, 8, 8, img));
    CHECK(sd_vae_workspace_held(v) == held);
    sd_vae_free(v);
    sd_model_close(m);
}

/* Thread count changes only the work split: 1 and 2 threads agree to
 * rounding (GEMM blocking may differ, so not necessarily bit for bit). */
TEST(threads_agree) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/sd1-tiny", tmp);
    sd_backend *b1 = sd_backend_cpu_create(1), *b2 = sd_backend_cpu_create(2);
    sd_model *m;
    CHECK_OK(sd_model_open(dir, NULL, &m));
    sd_vae *v1 = NULL, *v2 = NULL;
    sd_clip_text *t1 = NULL, *t2 = NULL;
    CHECK_OK(sd_vae_load(m, b1, &v1));
    CHECK_OK(sd_vae_load(m, b2, &v2));
    CHECK_OK(sd_clip_text_load(m, b1, &t1));
    CHECK_OK(sd_clip_text_load(m, b2, &t2));
    if (v1 && v2 && t1 && t2) {
        static float img[2 * 3 * 48 * 48], m1[2 * 8 * 24 * 24], m2[2 * 8 * 24 * 24];
        det_uniform(7, img, 2 * 3 * 48 * 48);
        CHECK_OK(sd_vae_encode(v1, img, 2, 48, 48, m1));
        CHECK_OK(sd_vae_encode(v2, img, 2, 48, 48, m2));
        compare("vae encode, 1 vs 2 threads", m1, m2, 2 * 8 * 24 * 24);
        CHECK_OK(sd_vae_decode(v1, m1, 2, 12, 12, img));
        CHECK_OK(sd_vae_decode(v2, m1, 2, 12, 12, m2));
        compare("vae decode, 1 vs 2 threads", img, m2, 2 * 3 * 24 * 24);
        int32_t ids[2 * 77];
        for (int i = 0; i < 2 * 77; i++) ids[i] = (i * 131) % 1000;
        CHECK_OK(sd_clip_text_forward(t1, ids, 2, 77, 0, m1));
        CHECK_OK(sd_clip_text_forward(t2, ids, 2, 77, 0, m2));
        compare("clip, 1 vs 2 threads", m1, m2, 2 * 77 * 32);
    }
    sd_vae_free(v1), sd_vae_free(v2);
    sd_clip_text_free(t1), sd_clip_text_free(t2);
    sd_model_close(m);
    sd_backend_destroy(b1), sd_backend_destroy(b2);
}

TEST(vae_moments_split_clamps) {
    /* [B=2, 2L=4, 1x2]: mean channels first, then logvar; clamp to [-30, 20] */
    float mom[2 * 4 * 2] = {1, 2, 3, 4, -40, 25, 0.5f, -30.5f, /* b0 */ 5, 6, 7, 8, 19.5f, -29.5f, NAN, 100};
    float mean[8], lv[8];
    sd_vae_moments_split(mom, 2, 2, 1, 2, mean, lv);
    const float em[8] = {1, 2, 3, 4, 5, 6, 7, 8}, el[8] = {-30, 20, 0.5f, -30, 19.5f, -29.5f, NAN, 20};
    for (int i = 0; i < 8; i++) {
        CHECK(mean[i] == em[i]);
        if (isnan(el[i])) CHECK(isnan(lv[i]));
        else CHECK(lv[i] == el[i]);
    }
    sd_vae_moments_split(mom, 2, 2, 1, 2, NULL, lv); /* either output may be skipped */
    CHECK(lv[1] == 20);
}

TEST(det_uniform_matches_generator) {
    /* printed by gen_models_forward.py: det_uniform(11, 0..3) */
    float v[4];
    det_uniform(11, v, 4);
    CHECK(fabsf(v[0] - 0.704183221f) < 1e-8f && fabsf(v[1] - 0.434387684f) < 1e-8f);
    CHECK(fabsf(v[2] + 0.742857575f) < 1e-8f && fabsf(v[3] + 0.106635213f) < 1e-8f);
}

int main(void) {
    tmp = test_tmpdir();
    be = sd_backend_cpu_create(0);
    if (!be) {
        printf("# %s\n", sd_last_error());
        return 1;
    }
    RUN(det_uniform_matches_generator);
    RUN(clip_sd1_tiny);
    RUN(clip_sd2_tiny_gelu);
    RUN(clip_sd2_hd64);
    RUN(clip_errors);
    RUN(vae_sd1_tiny);
    RUN(vae_sd1_3down);
    RUN(vae_config_variants);
    RUN(vae_shapes_and_memory);
    RUN(threads_agree);
    RUN(vae_moments_split_clamps);
    sd_backend_destroy(be);
    sd_rm_rf(tmp);
    return test_summary();
}
