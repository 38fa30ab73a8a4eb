/* test_model_load.c — loading and saving model weights.
 *
 * Tiny pipelines are regenerated at test time with
 * tests/fixtures/make_tiny_model.py (numpy + safetensors, $SD_PY) and checked
 * against tests/ref/golden/models.json, where torch recorded a hash of every
 * tensor as diffusers/transformers load it (tests/ref/gen_models.py). Other
 * layouts (F16/BF16, variants, shards, legacy VAE names, CLIP prefixes,
 * single-file LDM checkpoints, EMA) are derived from those models and must
 * load to bit-identical (or exactly rounded) buffers. Every error path is
 * checked for a message naming the tensor / file / key. */
#include "core/fs.h"
#include "core/sha256.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/modeldir.h"
#include "test.h"

#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *tmp;
static cJSON *golden;

/* ---- helpers ----------------------------------------------------------- */

static const char *python(void) {
    const char *p = getenv("SD_PY");
    return p && *p ? p : ".venv-test/bin/python";
}

static int sh(const char *fmt, ...) SD_PRINTF(1, 2);
static int sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    fflush(stdout);
    int rc = system(cmd);
    if (rc != 0) printf("# command failed (%d): %s\n", rc, cmd);
    return rc;
}

static char *P(const char *fmt, ...) SD_PRINTF(1, 2);
static char *P(const char *fmt, ...) { /* path under tmp, static ring of buffers */
    static char bufs[16][1024];
    static int k;
    char *b = bufs[k++ & 15];
    int n = snprintf(b, 1024, "%s/", tmp);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + n, (size_t)(1024 - n), fmt, ap);
    va_end(ap);
    return b;
}

static int make_tiny(const char *name, const char *out, const char *extra) {
    return sh("%s tests/fixtures/make_tiny_model.py --config %s %s --force %s", python(), name, out, extra ? extra : "");
}

static int make_ldm(const char *dir, const char *out, const char *extra) {
    return sh("%s tests/fixtures/make_ldm_checkpoint.py %s %s %s", python(), dir, out, extra ? extra : "");
}

/* Reference buffers of sd1-tiny as loaded from its diffusers dir. */
static sd_param_table ref_t[SD_NCOMP];
static float *ref_b[SD_NCOMP];

static int load(const char *path, const sd_model_opts *o, sd_component c, sd_param_table *t, float **b) {
    sd_model *m;
    *b = NULL;
    memset(t, 0, sizeof *t);
    if (sd_model_open(path, o, &m)) return -1;
    int rc = sd_model_load_alloc(m, c, t, b);
    sd_model_close(m);
    return rc;
}

static int equal_to_ref(sd_component c, const sd_param_table *t, const float *b) {
    if (!b || t->total != ref_t[c].total || t->n != ref_t[c].n) return 0;
    return memcmp(b, ref_b[c], t->total * sizeof(float)) == 0;
}

/* load component c from path and require it equal to the reference */
static void check_same(const char *path, const sd_model_opts *o, sd_component c, const char *what) {
    sd_param_table t;
    float *b;
    int rc = load(path, o, c, &t, &b);
    CHECK_MSG(rc == 0, "%s: %s", what, sd_last_error());
    if (!rc) CHECK_MSG(equal_to_ref(c, &t, b), "%s: %s differs from the diffusers-dir load", what, sd_component_name(c));
    free(b);
    sd_param_table_free(&t);
}

/* Rewrite a safetensors file with edits. */
typedef struct {
    const char *drop;           /* tensor to leave out */
    const char *from, *to;      /* substring rename (first occurrence) */
    const char *only_in;        /* rename only names containing this */
    const char *reshape;        /* tensor whose shape is replaced by new_shape */
    int new_ndim;
    int64_t new_shape[4];
    int conv_weights_4d;        /* 2-D weights of renamed tensors get [o,i,1,1] */
    const char *add;            /* extra tensor [3, 3] F32 */
    const char *add_i64;        /* extra I64 tensor [1, 77] (position_ids) */
    sd_dtype as;                /* convert every float tensor (0: keep) */
    int keep_original_too;      /* renamed tensors: also keep the original name */
    int shard;                  /* >0: write shard `shard` of 2 (tensor i goes to shard i%2+1) */
} edit;

static int rewrite(const char *src, const char *dst, const edit *e) {
    sd_st_file *f;
    if (sd_st_open(src, &f)) return -1;
    sd_st_writer *w = sd_st_writer_new();
    float **own = calloc((size_t)f->ntensors + 2, sizeof *own);
    int rc = 0;
    for (int i = 0; i < f->ntensors && !rc; i++) {
        const sd_st_tensor *t = &f->tensors[i];
        if (e->drop && !strcmp(t->name, e->drop)) continue;
        if (e->shard && (i % 2) + 1 != e->shard) continue;
        char name[512];
        snprintf(name, sizeof name, "%s", t->name);
        int ndim = t->ndim;
        int64_t shape[SD_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        const char *at = e->from ? strstr(t->name, e->from) : NULL;
        int renamed = 0;
        if (at && (!e->only_in || strstr(t->name, e->only_in))) {
            snprintf(name, sizeof name, "%.*s%s%s", (int)(at - t->name), t->name, e->to, at + strlen(e->from));
            renamed = 1;
            if (e->conv_weights_4d && ndim == 2) { shape[2] = shape[3] = 1; ndim = 4; }
        }
        if (e->reshape && !strcmp(t->name, e->reshape)) {
            ndim = e->new_ndim;
            memcpy(shape, e->new_shape, sizeof e->new_shape);
            int64_t n = 1;
            for (int d = 0; d < ndim; d++) n *= shape[d];
            own[i] = calloc((size_t)n, sizeof(float));
            rc = sd_st_writer_add_f32(w, name, SD_F32, ndim, shape, own[i]);
            continue;
        }
        if (e->as && (t->dtype == SD_F32 || t->dtype == SD_F16 || t->dtype == SD_BF16)) {
            own[i] = malloc((size_t)t->numel * sizeof(float));
            rc = sd_st_read_f32(f, t, own[i]);
            if (!rc) rc = sd_st_writer_add_f32(w, name, e->as, ndim, shape, own[i]);
        } else {
            rc = sd_st_writer_add(w, name, t->dtype, ndim, shape, sd_st_raw(f, t));
        }
        if (!rc && renamed && e->keep_original_too) rc = sd_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, sd_st_raw(f, t));
    }
    float extra[9] = {0};
    int64_t pos[77];
    for (int i = 0; i < 77; i++) pos[i] = i;
    if (!rc && e->add) rc = sd_st_writer_add_f32(w, e->add, SD_F32, 2, (int64_t[]){3, 3}, extra);
    if (!rc && e->add_i64) rc = sd_st_writer_add(w, e->add_i64, SD_I64, 2, (int64_t[]){1, 77}, pos);
    if (!rc) rc = sd_st_writer_meta(w, "format", "pt");
    if (!rc) rc = sd_st_writer_save(w, dst);
    sd_st_writer_free(w);
    for (int i = 0; i < f->ntensors + 2; i++) free(own[i]);
    free(own);
    sd_st_close(f);
    return rc;
}

/* copy a component dir (config.json only) */
static int copy_config(const char *src_dir, const char *dst_dir) {
    if (sd_mkdir_p(dst_dir)) return -1;
    char *a = sd_path_join(src_dir, "config.json"), *b = sd_path_join(dst_dir, "config.json");
    int rc = sd_copy_file(a, b);
    free(a);
    free(b);
    return rc;
}



/* ---- tests ----------------------------------------------------------- */

/* Regenerate the tiny models and compare every tensor with torch's view. */
TEST(tiny_models_match_torch) {
    const cJSON *tiny = cJSON_GetObjectItem(golden, "tiny"), *cfg;
    int nmodels = 0;
    cJSON_ArrayForEach(cfg, tiny) {
        const char *dir = P("%s", cfg->string);
        if (make_tiny(cfg->string, dir, NULL)) { CHECK(0); continue; }
        sd_model *m;
        CHECK_OK(sd_model_open(dir, NULL, &m));
        if (!m) continue;
        nmodels++;
        CHECK(m->kind == SD_MODEL_PIPELINE && m->has_scheduler && m->tokenizer_dir);
        for (int c = 0; c < SD_NCOMP; c++) {
            const cJSON *g = cJSON_GetObjectItem(cfg, sd_component_name((sd_component)c));
            const cJSON *hashes = cJSON_GetObjectItem(g, "sha16");
            sd_param_table t;
            float *b;
            CHECK(m->has[c]);
            CHECK_OK(sd_model_load_alloc(m, (sd_component)c, &t, &b));
            if (!b) continue;
            CHECK_MSG(t.total == (size_t)sd_json_num(g, "params", -1) && t.n == sd_json_int(g, "tensors", -1),
                      "%s %s: %zu/%d", cfg->string, sd_component_name((sd_component)c), t.total, t.n);
            int bad = 0;
            for (int i = 0; i < t.n; i++) {
                sd_sha256 s;
                unsigned char d[32];
                char hex[65];
                sd_sha256_init(&s);
                sd_sha256_update(&s, b + t.p[i].offset, t.p[i].numel * sizeof(float));
                sd_sha256_final(&s, d);
                sd_sha256_hex(d, hex);
                const char *want = sd_json_str(hashes, t.p[i].name, "");
                if (strncmp(hex, want, 16) && bad++ < 3) printf("# %s: %s: %.16s vs torch %s\n", cfg->string, t.p[i].name, hex, want);
            }
            CHECK(bad == 0);
            if (!strcmp(cfg->string, "sd1-tiny")) {
                ref_t[c] = t;
                ref_b[c] = b;
            } else {
                free(b);
                sd_param_table_free(&t);
            }
        }
        sd_model_close(m);
    }
    CHECK(nmodels == 3);
    /* sd1-3down: three levels, mid attention uses heads[-1] */
    sd_model *m;
    CHECK_OK(sd_model_open(P("sd1-3down/unet"), NULL, &m));
    if (m) {
        CHECK(m->kind == SD_MODEL_COMPONENT && m->has[SD_UNET] && !m->has[SD_VAE]);
        CHECK(m->unet.num_levels == 3 && m->unet.mid.heads == 4 && m->unet.up[2].resnet_in[1] == 64);
        sd_model_close(m);
    }
}

TEST(f16_bf16_and_variants) {
    /* F16 written by numpy (generator --dtype fp16 --variant fp16) */
    CHECK_OK(make_tiny("sd1-tiny", P("fp16"), "--dtype fp16 --variant fp16"));
    sd_model_opts o = {.variant = "fp16"};
    for (int c = 0; c < SD_NCOMP; c++) {
        sd_param_table t;
        float *b;
        CHECK_OK(load(P("fp16"), &o, (sd_component)c, &t, &b));
        if (!b) continue;
        size_t bad = 0;
        for (size_t i = 0; i < t.total; i++) bad += b[i] != sd_f16_to_f32(sd_f32_to_f16(ref_b[c][i]));
        CHECK_MSG(bad == 0, "%zu values differ from f16(f32 reference)", bad);
        free(b);
        sd_param_table_free(&t);
    }
    sd_model *m;
    CHECK_OK(sd_model_open(P("fp16"), &o, &m));
    if (m) {
        sd_weights_info wi;
        CHECK_OK(sd_model_weights_info(m, SD_UNET, &wi));
        CHECK(wi.dtypes == (1u << SD_F16) && !strcmp(wi.files[0], "diffusion_pytorch_model.fp16.safetensors"));
        sd_model_close(m);
    }
    /* without a variant the lone fp16 file is used (with a note) */
    sd_param_table t;
    float *b;
    CHECK_OK(load(P("fp16"), NULL, SD_VAE, &t, &b));
    free(b);
    sd_param_table_free(&t);
    sd_model_opts bad = {.variant = "ema"};
    CHECK_FAILS(load(P("fp16"), &bad, SD_UNET, &t, &b), "variant \"ema\"");

    /* BF16 and F16 written by our own writer */
    for (int k = 0; k < 2; k++) {
        sd_dtype dt = k ? SD_BF16 : SD_F16;
        const char *dir = P("unet_%s", sd_dtype_name(dt));
        cJSON *cfg = cJSON_CreateObject();
        cJSON_AddStringToObject(cfg, "_class_name", "UNet2DConditionModel");
        sd_model *mm;
        CHECK_OK(sd_model_open(P("sd1-tiny"), NULL, &mm));
        if (!mm) { cJSON_Delete(cfg); continue; }
        cJSON *full = sd_model_config_json(mm, SD_UNET);
        CHECK_OK(sd_component_save(dir, SD_UNET, full, &ref_t[SD_UNET], ref_b[SD_UNET], dt));
        cJSON_Delete(full);
        cJSON_Delete(cfg);
        sd_model_close(mm);
        CHECK_OK(load(dir, NULL, SD_UNET, &t, &b));
        if (!b) continue;
        size_t nbad = 0;
        for (size_t i = 0; i < t.total; i++) {
            float r = ref_b[SD_UNET][i];
            float want = dt == SD_BF16 ? sd_bf16_to_f32(sd_f32_to_bf16(r)) : sd_f16_to_f32(sd_f32_to_f16(r));
            nbad += b[i] != want;
        }
        CHECK_MSG(nbad == 0, "%s: %zu values not exactly rounded", sd_dtype_name(dt), nbad);
        free(b);
        sd_param_table_free(&t);
    }
    CHECK_FAILS(sd_component_save(P("x"), SD_UNET, golden, &ref_t[SD_UNET], ref_b[SD_UNET], SD_I8), "cannot save weights as I8");
}

TEST(sharded_index) {
    const char *d = P("sharded/unet");
    CHECK_OK(copy_config(P("sd1-tiny/unet"), d));
    const char *src = P("sd1-tiny/unet/diffusion_pytorch_model.safetensors");
    edit s1 = {.shard = 1}, s2 = {.shard = 2};
    CHECK_OK(rewrite(src, P("sharded/unet/diffusion_pytorch_model-00001-of-00002.safetensors"), &s1));
    CHECK_OK(rewrite(src, P("sharded/unet/diffusion_pytorch_model-00002-of-00002.safetensors"), &s2));
    /* the index: every tensor -> its shard */
    sd_st_file *f;
    CHECK_OK(sd_st_open(src, &f));
    if (!f) return;
    cJSON *idx = cJSON_CreateObject(), *wm = cJSON_AddObjectToObject(idx, "weight_map");
    cJSON_AddObjectToObject(idx, "metadata");
    for (int i = 0; i < f->ntensors; i++)
        cJSON_AddStringToObject(wm, f->tensors[i].name, i % 2 ? "diffusion_pytorch_model-00002-of-00002.safetensors"
                                                              : "diffusion_pytorch_model-00001-of-00002.safetensors");
    const char *ip = P("sharded/unet/diffusion_pytorch_model.safetensors.index.json");
    CHECK_OK(sd_json_save(ip, idx));
    check_same(d, NULL, SD_UNET, "sharded");
    sd_model *m;
    CHECK_OK(sd_model_open(d, NULL, &m));
    if (m) {
        sd_weights_info wi;
        CHECK_OK(sd_model_weights_info(m, SD_UNET, &wi));
        CHECK(wi.nfiles == 2 && wi.tensors == ref_t[SD_UNET].n);
        sd_model_close(m);
    }
    sd_param_table t;
    float *b;
    /* index pointing a key at the wrong shard */
    cJSON_ReplaceItemInObject(wm, f->tensors[0].name, cJSON_CreateString("diffusion_pytorch_model-00002-of-00002.safetensors"));
    CHECK_OK(sd_json_save(ip, idx));
    CHECK_FAILS(load(d, NULL, SD_UNET, &t, &b), "weight_map says");
    /* shard names must stay in the directory */
    cJSON_ReplaceItemInObject(wm, f->tensors[0].name, cJSON_CreateString("../../sd1-tiny/unet/x.safetensors"));
    CHECK_OK(sd_json_save(ip, idx));
    CHECK_FAILS(load(d, NULL, SD_UNET, &t, &b), "expected a file name in the same directory");
    /* a missing shard */
    cJSON_ReplaceItemInObject(wm, f->tensors[0].name, cJSON_CreateString("diffusion_pytorch_model-00003-of-00002.safetensors"));
    CHECK_OK(sd_json_save(ip, idx));
    CHECK_FAILS(load(d, NULL, SD_UNET, &t, &b), "00003-of-00002");
    cJSON_Delete(idx);
    sd_st_close(f);
}

TEST(legacy_vae_names) {
    /* query/key/value/proj_attn with [C,C,1,1] conv-shaped weights (old diffusers / LDM shapes) */
    const char *d = P("legacy/vae");
    CHECK_OK(copy_config(P("sd1-tiny/vae"), d));
    const char *src = P("sd1-tiny/vae/diffusion_pytorch_model.safetensors");
    const char *dst = P("legacy/vae/diffusion_pytorch_model.safetensors");
    /* one rename per pass: to_q->query, to_k->key, to_v->value, to_out.0->proj_attn */
    static const char *const from[4] = {".to_q.", ".to_k.", ".to_v.", ".to_out.0."};
    static const char *const to[4] = {".query.", ".key.", ".value.", ".proj_attn."};
    CHECK_OK(sd_copy_file(src, P("legacy/pass0.safetensors")));
    for (int k = 0; k < 4; k++) {
        edit e = {.from = from[k], .to = to[k], .only_in = "mid_block.attentions", .conv_weights_4d = 1};
        CHECK_OK(rewrite(P("legacy/pass%d.safetensors", k), k == 3 ? dst : P("legacy/pass%d.safetensors", k + 1), &e));
    }
    sd_st_file *f;
    CHECK_OK(sd_st_open(dst, &f));
    if (f) {
        const sd_st_tensor *q = sd_st_find(f, "decoder.mid_block.attentions.0.query.weight");
        CHECK(q && q->ndim == 4 && sd_st_find(f, "encoder.mid_block.attentions.0.proj_attn.bias") &&
              !sd_st_find(f, "encoder.mid_block.attentions.0.to_q.weight"));
        sd_st_close(f);
    }
    check_same(d, NULL, SD_VAE, "legacy VAE names");
    /* both spellings of one tensor */
    edit both = {.from = ".to_k.", .to = ".key.", .only_in = "encoder.mid_block", .keep_original_too = 1};
    CHECK_OK(rewrite(src, dst, &both));
    sd_param_table t;
    float *b;
    CHECK_FAILS(load(d, NULL, SD_VAE, &t, &b), "stored twice");
    /* conv-shaped weight where a real conv is expected is still an error */
    edit e4 = {.reshape = "quant_conv.weight", .new_ndim = 2, .new_shape = {8, 8}};
    CHECK_OK(rewrite(src, dst, &e4));
    CHECK_FAILS(load(d, NULL, SD_VAE, &t, &b), "quant_conv.weight\" has shape [8, 8], the vae config expects [8, 8, 1, 1]");
}

TEST(clip_prefix_variants) {
    const char *d = P("noprefix/text_encoder");
    CHECK_OK(copy_config(P("sd1-tiny/text_encoder"), d));
    edit e = {.from = "text_model.", .to = "", .add_i64 = "embeddings.position_ids"};
    CHECK_OK(rewrite(P("sd1-tiny/text_encoder/model.safetensors"), P("noprefix/text_encoder/model.safetensors"), &e));
    check_same(d, NULL, SD_TEXT_ENCODER, "CLIP keys without text_model.");
    edit e2 = {.add_i64 = "text_model.embeddings.position_ids"};
    CHECK_OK(rewrite(P("sd1-tiny/text_encoder/model.safetensors"), P("noprefix/text_encoder/model.safetensors"), &e2));
    check_same(d, NULL, SD_TEXT_ENCODER, "CLIP keys with a position_ids buffer");
}

TEST(single_file_checkpoints) {
    sd_model_opts cfg = {.config_dir = P("sd1-tiny")};
    /* SD1: CLIP text, EMA, LDM buffers, position_ids */
    CHECK_OK(make_ldm(P("sd1-tiny"), P("sd1.safetensors"), "--ema"));
    sd_model *m;
    CHECK_OK(sd_model_open(P("sd1.safetensors"), &cfg, &m));
    if (m) {
        CHECK(m->kind == SD_MODEL_SINGLE_FILE && !m->sf.v2 && !m->sf.inpainting && !m->sf.openclip);
        CHECK(m->sf.ema_tensors > 300 && !strcmp(m->sf.vae_prefix, "first_stage_model.") && m->sf.ignored == 0);
        CHECK(m->has[SD_UNET] && m->has[SD_VAE] && m->has[SD_TEXT_ENCODER] && m->tokenizer_dir);
        CHECK(!strcmp(m->scheduler.class_name, "PNDMScheduler"));
        sd_model_close(m);
    }
    for (int c = 0; c < SD_NCOMP; c++) check_same(P("sd1.safetensors"), &cfg, (sd_component)c, "single-file SD1");
    /* EMA weights = 0.5 x weights in the fixture */
    sd_model_opts ema = cfg;
    ema.use_ema = 1;
    sd_param_table t;
    float *b;
    CHECK_OK(load(P("sd1.safetensors"), &ema, SD_UNET, &t, &b));
    if (b) {
        size_t bad = 0;
        for (size_t i = 0; i < t.total; i++) bad += b[i] != 0.5f * ref_b[SD_UNET][i];
        CHECK(bad == 0);
        free(b);
        sd_param_table_free(&t);
    }
    /* old transformers layout, VAE under "vae." */
    CHECK_OK(make_ldm(P("sd1-tiny"), P("sd1b.safetensors"), "--no-text-model-prefix --vae-prefix vae. --no-buffers"));
    for (int c = 0; c < SD_NCOMP; c++) check_same(P("sd1b.safetensors"), &cfg, (sd_component)c, "single-file SD1 variant");
    CHECK_FAILS(load(P("sd1b.safetensors"), &ema, SD_UNET, &t, &b), "no EMA weights");

    /* SD2: OpenCLIP text tower (fused in_proj; extra last block, text_projection, logit_scale dropped) */
    CHECK_OK(make_ldm(P("sd2-tiny"), P("sd2.safetensors"), "--openclip --extra-resblock --vae-prefix vae."));
    sd_model_opts cfg2 = {.config_dir = P("sd2-tiny")};
    sd_model *m1, *m2;
    CHECK_OK(sd_model_open(P("sd2.safetensors"), &cfg2, &m1));
    CHECK_OK(sd_model_open(P("sd2-tiny"), NULL, &m2));
    if (m1 && m2) {
        CHECK(m1->sf.openclip && !strcmp(m1->sf.vae_prefix, "vae.") && !strcmp(m1->scheduler.prediction_type, "v_prediction"));
        for (int c = 0; c < SD_NCOMP; c++) {
            sd_param_table t1, t2;
            float *b1, *b2;
            CHECK_OK(sd_model_load_alloc(m1, (sd_component)c, &t1, &b1));
            CHECK_OK(sd_model_load_alloc(m2, (sd_component)c, &t2, &b2));
            if (b1 && b2) CHECK_MSG(t1.total == t2.total && !memcmp(b1, b2, t1.total * 4), "SD2 %s differs", sd_component_name((sd_component)c));
            free(b1);
            free(b2);
            sd_param_table_free(&t1);
            sd_param_table_free(&t2);
        }
    }
    sd_model_close(m1);
    sd_model_close(m2);

    /* configs inferred from shapes (no config dir): UNet and VAE of sd1-tiny */
    CHECK_OK(make_ldm(P("sd1-tiny"), P("sd1-notext.safetensors"), "--no-text"));
    CHECK_OK(sd_model_open(P("sd1-notext.safetensors"), NULL, &m));
    if (m) {
        const sd_unet_config *u = &m->unet;
        CHECK(!m->has[SD_TEXT_ENCODER] && m->has[SD_UNET] && m->has[SD_VAE]);
        CHECK(u->num_levels == 2 && u->block_out_channels[0] == 32 && u->block_out_channels[1] == 64);
        CHECK(!u->down_cross_attn[0] && u->down_cross_attn[1] && u->up_cross_attn[0] && !u->up_cross_attn[1]);
        CHECK(u->layers_per_block[0] == 2 && u->num_heads[1] == 8 && u->cross_attention_dim[0] == 32);
        CHECK(!u->use_linear_projection && u->has_mid_block && u->time_embed_dim == 128);
        CHECK(m->vae.num_levels == 2 && m->vae.layers_per_block == 1 && m->vae.latent_channels == 4);
        CHECK(m->vae.block_out_channels[1] == 64 && m->vae.mid_block_add_attention && m->vae.scaling_factor == 0.18215);
        sd_model_close(m);
    }
    check_same(P("sd1-notext.safetensors"), NULL, SD_UNET, "single-file, inferred UNet config");
    check_same(P("sd1-notext.safetensors"), NULL, SD_VAE, "single-file, inferred VAE config");
    /* narrow CLIP towers cannot be inferred */
    CHECK_FAILS(sd_model_open(P("sd1.safetensors"), NULL, &m), "cannot infer attention heads for width 32");
    /* a safetensors file that is not a checkpoint */
    CHECK_FAILS(sd_model_open(P("sd1-tiny/vae/diffusion_pytorch_model.safetensors"), NULL, &m), "not a Stable Diffusion single-file checkpoint");
}

TEST(load_errors) {
    const char *d = P("bad/unet");
    const char *src = P("sd1-tiny/unet/diffusion_pytorch_model.safetensors");
    const char *dst = P("bad/unet/diffusion_pytorch_model.safetensors");
    CHECK_OK(copy_config(P("sd1-tiny/unet"), d));
    sd_param_table t;
    float *b;
    edit miss = {.drop = "conv_in.bias"};
    CHECK_OK(rewrite(src, dst, &miss));
    CHECK_FAILS(load(d, NULL, SD_UNET, &t, &b), "missing tensor \"conv_in.bias\" [32] (the config expects it; 1 missing in all)");
    edit extra = {.add = "down_blocks.0.attentions.0.norm.weight"};
    CHECK_OK(rewrite(src, dst, &extra));
    CHECK_FAILS(load(d, NULL, SD_UNET, &t, &b), "unexpected tensor \"down_blocks.0.attentions.0.norm.weight\" [3, 3]: not part of the unet config");
    sd_model_opts allow = {.allow_extra = 1};
    check_same(d, &allow, SD_UNET, "allow_extra");
    edit shape = {.reshape = "conv_in.weight", .new_ndim = 4, .new_shape = {32, 5, 3, 3}};
    CHECK_OK(rewrite(src, dst, &shape));
    CHECK_FAILS(load(d, NULL, SD_UNET, &t, &b), "tensor \"conv_in.weight\" has shape [32, 5, 3, 3], the unet config expects [32, 4, 3, 3]");
    /* pickle only */
    unlink(dst);
    CHECK_OK(sd_write_file_atomic(P("bad/unet/diffusion_pytorch_model.bin"), "PK", 2));
    CHECK_FAILS(load(d, NULL, SD_UNET, &t, &b), "diffusion_pytorch_model.bin): unsupported: convert to safetensors");
    unlink(P("bad/unet/diffusion_pytorch_model.bin"));
    CHECK_FAILS(load(d, NULL, SD_UNET, &t, &b), "no weights (diffusion_pytorch_model.safetensors");
    /* truncated weights file */
    CHECK_OK(sd_write_file_atomic(dst, "\x10\0\0\0\0\0\0\0{\"a\":", 13));
    CHECK_FAILS(load(d, NULL, SD_UNET, &t, &b), "diffusion_pytorch_model.safetensors");
    /* unsupported config value / corrupt config */
    const char *cp = P("bad/unet/config.json");
    const char *txt = "{\"_class_name\":\"UNet2DConditionModel\",\"resnet_time_scale_shift\":\"scale_shift\"}";
    CHECK_OK(sd_write_file_atomic(cp, txt, strlen(txt)));
    sd_model *m;
    CHECK_FAILS(sd_model_open(d, NULL, &m), "resnet_time_scale_shift = \"scale_shift\": unsupported");
    CHECK_OK(sd_write_file_atomic(cp, "{\"_class_name\": \"UNet2DCon", 26));
    CHECK_FAILS(sd_model_open(d, NULL, &m), "invalid JSON");
    txt = "{\"_class_name\":\"ControlNetModel\"}";
    CHECK_OK(sd_write_file_atomic(cp, txt, strlen(txt)));
    CHECK_FAILS(sd_model_open(d, NULL, &m), "not a UNet2DConditionModel, AutoencoderKL or CLIPTextModel config");
    /* pipeline with a component of another class */
    CHECK_OK(sd_mkdir_p(P("bad/pipe")));
    txt = "{\"_class_name\":\"StableDiffusionPipeline\",\"unet\":[\"diffusers\",\"UNet2DModel\"]}";
    CHECK_OK(sd_write_file_atomic(P("bad/pipe/model_index.json"), txt, strlen(txt)));
    CHECK_FAILS(sd_model_open(P("bad/pipe"), NULL, &m), "unet is a UNet2DModel: unsupported");
    /* not a model */
    CHECK_FAILS(sd_model_open(P("bad"), NULL, &m), "not a diffusers model directory");
    CHECK_FAILS(sd_model_open(P("nothing-here"), NULL, &m), "no such file or directory");
    CHECK_OK(sd_write_file_atomic(P("model.ckpt"), "PK", 2));
    CHECK_FAILS(sd_model_open(P("model.ckpt"), NULL, &m), "pickle checkpoint: unsupported: convert to safetensors");
    sd_model_opts ema = {.use_ema = 1};
    CHECK_FAILS(sd_model_open(P("sd1-tiny"), &ema, &m), "EMA weights can only be selected in single-file");
    /* component not present */
    CHECK_OK(sd_model_open(P("sd1-tiny/vae"), NULL, &m));
    if (m) {
        CHECK_FAILS(sd_model_table(m, SD_UNET, &t), "has no unet");
        sd_model_close(m);
    }
}

static int no_tmp_leftovers(const char *dir) {
    char **names;
    int n = sd_list_dir(dir, &names), bad = 0;
    for (int i = 0; i < n; i++) bad += strstr(names[i], ".tmp.") != NULL || strstr(names[i], ".old.") != NULL;
    sd_free_strv(names, n);
    return n >= 0 && bad == 0;
}

TEST(save_roundtrip) {
    /* component: config JSON kept with unknown keys */
    sd_model *m;
    CHECK_OK(sd_model_open(P("sd1-tiny"), NULL, &m));
    if (!m) return;
    cJSON *cfg = sd_model_config_json(m, SD_UNET);
    cJSON_AddNumberToObject(cfg, "sdtools_test_unknown_key", 7);
    CHECK_OK(sd_component_save(P("saved/unet"), SD_UNET, cfg, &ref_t[SD_UNET], ref_b[SD_UNET], SD_F32));
    cJSON_Delete(cfg);
    check_same(P("saved/unet"), NULL, SD_UNET, "saved component");
    cJSON *back;
    CHECK_OK(sd_json_load(P("saved/unet/config.json"), &back));
    CHECK(back && sd_json_int(back, "sdtools_test_unknown_key", 0) == 7);
    cJSON_Delete(back);
    sd_st_file *f;
    CHECK_OK(sd_st_open(P("saved/unet/diffusion_pytorch_model.safetensors"), &f));
    if (f) {
        CHECK(sd_st_meta(f, "format") && !strcmp(sd_st_meta(f, "format"), "pt") && f->ntensors == ref_t[SD_UNET].n);
        sd_st_close(f);
    }

    /* pipeline from a diffusers base: all three written from buffers */
    sd_component_data parts[SD_NCOMP];
    for (int c = 0; c < SD_NCOMP; c++) { parts[c].config = NULL; parts[c].table = &ref_t[c]; parts[c].buf = ref_b[c]; }
    sd_save_opts so = {.dtype = SD_F32};
    CHECK_OK(sd_pipeline_save(P("out1"), m, parts, &so));
    for (int c = 0; c < SD_NCOMP; c++) check_same(P("out1"), NULL, (sd_component)c, "saved pipeline");
    CHECK(sd_is_file(P("out1/tokenizer/vocab.json")) && sd_is_file(P("out1/scheduler/scheduler_config.json")));
    CHECK_FAILS(sd_pipeline_save(P("out1"), m, parts, &so), "exists (not overwriting)");
    /* overwrite: only the UNet given, the rest linked from the base */
    sd_component_data only_unet[SD_NCOMP] = {{0}};
    float *halved = malloc(ref_t[SD_UNET].total * sizeof(float));
    for (size_t i = 0; i < ref_t[SD_UNET].total; i++) halved[i] = 0.5f * ref_b[SD_UNET][i];
    only_unet[SD_UNET].table = &ref_t[SD_UNET];
    only_unet[SD_UNET].buf = halved;
    so.overwrite = 1;
    CHECK_OK(sd_pipeline_save(P("out1"), m, only_unet, &so));
    sd_param_table t;
    float *b;
    CHECK_OK(load(P("out1"), NULL, SD_UNET, &t, &b));
    if (b) CHECK(!memcmp(b, halved, t.total * sizeof(float)));
    free(b);
    sd_param_table_free(&t);
    check_same(P("out1"), NULL, SD_VAE, "linked VAE");
    struct stat s1, s2;
    CHECK(stat(P("out1/vae/diffusion_pytorch_model.safetensors"), &s1) == 0 &&
          stat(P("sd1-tiny/vae/diffusion_pytorch_model.safetensors"), &s2) == 0 && s1.st_ino == s2.st_ino);
    CHECK(no_tmp_leftovers(tmp));
    free(halved);
    sd_model_close(m);

    /* pipeline from a single-file base: converted, F16 */
    sd_model_opts nocfg = {0};
    CHECK_OK(make_ldm(P("sd1-tiny"), P("sf-notok.safetensors"), "--no-text"));
    CHECK_OK(sd_model_open(P("sf-notok.safetensors"), &nocfg, &m));
    if (m) {
        sd_save_opts s16 = {.dtype = SD_F16};
        CHECK_FAILS(sd_pipeline_save(P("out2"), m, NULL, &s16), "needs a text_encoder");
        sd_component_data te[SD_NCOMP] = {{0}};
        te[SD_TEXT_ENCODER].table = &ref_t[SD_TEXT_ENCODER];
        te[SD_TEXT_ENCODER].buf = ref_b[SD_TEXT_ENCODER];
        te[SD_TEXT_ENCODER].config = NULL;
        CHECK_FAILS(sd_pipeline_save(P("out2"), m, te, &s16), "no config for the weights given");
        cJSON *tcfg;
        CHECK_OK(sd_json_load(P("sd1-tiny/text_encoder/config.json"), &tcfg));
        te[SD_TEXT_ENCODER].config = tcfg;
        CHECK_FAILS(sd_pipeline_save(P("out2"), m, te, &s16), "no tokenizer");
        s16.tokenizer_dir = P("sd1-tiny/tokenizer");
        CHECK_OK(sd_pipeline_save(P("out2"), m, te, &s16));
        cJSON_Delete(tcfg);
        CHECK(sd_is_dir(P("out2")) && no_tmp_leftovers(tmp));
        sd_model_close(m);
        CHECK_OK(load(P("out2"), NULL, SD_VAE, &t, &b));
        if (b) {
            size_t bad = 0;
            for (size_t i = 0; i < t.total; i++) bad += b[i] != sd_f16_to_f32(sd_f32_to_f16(ref_b[SD_VAE][i]));
            CHECK(bad == 0);
        }
        free(b);
        sd_param_table_free(&t);
        sd_model *o2;
        CHECK_OK(sd_model_open(P("out2"), NULL, &o2));
        if (o2) {
            CHECK(!strcmp(o2->scheduler.class_name, "PNDMScheduler") && o2->has[SD_TEXT_ENCODER] && o2->unet.num_heads[1] == 8);
            sd_model_close(o2);
        }
    }
    /* a component dir is no pipeline base */
    CHECK_OK(sd_model_open(P("sd1-tiny/unet"), NULL, &m));
    if (m) {
        CHECK_FAILS(sd_pipeline_save(P("out3"), m, NULL, NULL), "needs a pipeline directory or single-file");
        sd_model_close(m);
    }
}

static char *describe(const char *path, int json) {
    FILE *f = tmpfile();
    int rc = sd_model_describe(path, json, f);
    long n = ftell(f);
    rewind(f);
    char *s = calloc((size_t)n + 1, 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = 0;
    fclose(f);
    if (rc) { free(s); return NULL; }
    return s;
}

TEST(describe_models) {
    char *s = describe(P("sd2-tiny"), 0);
    CHECK_MSG(s != NULL, "%s", sd_last_error());
    if (s) {
        CHECK(strstr(s, "diffusers pipeline (StableDiffusionPipeline)"));
        CHECK(strstr(s, "unet: UNet2DConditionModel, 1,427,012 parameters in 304 tensors"));
        CHECK(strstr(s, "heads 2,4 (head dim 16,16)") && strstr(s, "linear projection yes"));
        CHECK(strstr(s, "scaling_factor 0.18215") && strstr(s, "act gelu") && strstr(s, "(F32)"));
        CHECK(strstr(s, "DDIMScheduler, prediction_type v_prediction"));
        free(s);
    }
    s = describe(P("sd1-tiny"), 1);
    cJSON *j = NULL;
    if (s) CHECK_OK(sd_json_parse(s, strlen(s), "describe", &j));
    if (j) {
        const cJSON *u = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "components"), "unet");
        CHECK(sd_json_num(u, "params", 0) == 1427012 && sd_json_num(u, "file_elements", 0) == 1427012);
        CHECK(!strcmp(sd_json_str(j, "format", ""), "diffusers"));
        const cJSON *cfg = cJSON_GetObjectItem(u, "config");
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(cfg, "attention_head_dims")) == 2 &&
              cJSON_GetArrayItem(cJSON_GetObjectItem(cfg, "attention_head_dims"), 1)->valueint == 8);
        CHECK(!strcmp(sd_json_str(cJSON_GetObjectItem(j, "scheduler"), "prediction_type", ""), "epsilon"));
        cJSON_Delete(j);
    }
    free(s);
    s = describe(P("sf-notok.safetensors"), 0);
    CHECK(s && strstr(s, "single-file LDM checkpoint: SD v1") && strstr(s, "unet: UNet2DConditionModel (config inferred)"));
    CHECK(s && !strstr(s, "text_encoder:") && strstr(s, "PNDMScheduler (inferred)"));
    free(s);
    /* fp16 files: dtypes listed */
    s = describe(P("fp16"), 0);
    CHECK(s && strstr(s, "(F16)"));
    free(s);
    CHECK(describe(P("nothing-here"), 0) == NULL);
    CHECK(sd_model_probe(P("sd1-tiny")) == SD_MODEL_PIPELINE && sd_model_probe(P("sd1-tiny/vae")) == SD_MODEL_COMPONENT);
    CHECK(sd_model_probe(P("sf-notok.safetensors")) == SD_MODEL_SINGLE_FILE);
    CHECK(sd_model_probe(P("sd1-tiny/vae/diffusion_pytorch_model.safetensors")) == 0);
    CHECK(sd_model_probe(P("sd1-tiny/tokenizer")) == 0 && sd_model_probe(P("nothing-here")) == 0);
    CHECK(sd_model_probe(P("sd1-tiny/model_index.json")) == 0);
}

int main(void) {
    tmp = test_tmpdir();
    if (sd_json_load("tests/ref/golden/models.json", &golden)) {
        printf("# %s\n", sd_last_error());
        return 1;
    }
    RUN(tiny_models_match_torch);
    RUN(f16_bf16_and_variants);
    RUN(sharded_index);
    RUN(legacy_vae_names);
    RUN(clip_prefix_variants);
    RUN(single_file_checkpoints);
    RUN(load_errors);
    RUN(save_roundtrip);
    RUN(describe_models);
    for (int c = 0; c < SD_NCOMP; c++) {
        free(ref_b[c]);
        sd_param_table_free(&ref_t[c]);
    }
    cJSON_Delete(golden);
    sd_rm_rf(tmp);
    return test_summary();
}
