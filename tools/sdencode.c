/* sdencode — prep shards -> latent shards: the frozen VAE encoder (and
 * optionally the frozen text encoder) run once per sample.
 *
 *   sdencode PREP_DIR --pretrained_model_name_or_path MODEL -o LATENT_DIR [OPTIONS]
 *
 * Per sample the VAE moments (mean, logvar clamped as diffusers'
 * DiagonalGaussianDistribution has them) are stored, not a sample, so sdfit
 * draws a fresh latent every step exactly as the reference does. When the prep
 * set was made with --random_flip the horizontally flipped IMAGE is encoded
 * too. Latent shard k holds the samples of prep shard k; a shard that is
 * already complete and verified (size + sha256 in the manifest) is kept on a
 * re-run, so a killed run resumes where it stopped and ends with the same
 * bytes as an uninterrupted one. Formats: formats/shards.md.
 */
#include "backend/backend.h"
#include "core/cli.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "io/image.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "io/shard.h"
#include "models/clip_text.h"
#include "models/modeldir.h"
#include "models/vae.h"
#include "text/clip_tokenizer.h"

#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *input, *out_dir, *model, *variant, *device;
    int text_embeddings, clip_skip, batch_size, strict, threads, force, quiet, ignore_tokenizer;
    sd_dtype latent_dtype;
} opts;

static void usage(void) {
    printf("Usage: sdencode PREP_DIR --pretrained_model_name_or_path MODEL -o OUT [OPTIONS]\n"
           "Encode prep shards (sdprep) into latent shards: VAE moments, optionally text-encoder outputs.\n"
           "\n"
           "      --pretrained_model_name_or_path MODEL  diffusers model dir or single-file .safetensors\n"
           "      --variant NAME          read NAME-variant weights (e.g. fp16)\n"
           "  -o, --output_dir DIR        latent shards latent-000000.tar ... and manifest.json\n"
           "      --latent_dtype T        fp32 (default) or fp16\n"
           "      --text_embeddings       also store the text encoder's hidden states for every caption\n"
           "      --clip_skip N           with --text_embeddings: diffusers clip_skip (default 0)\n"
           "      --batch_size N          images per VAE batch (default 4)\n"
           "      --device cpu|cuda       compute device (default cpu)\n"
           "      --ignore_tokenizer_mismatch  accept prep shards tokenized with another tokenizer\n"
           "      --force                 replace an output set made with other settings\n"
           "      --strict                any skipped sample is an error\n"
           "  -j, --threads N             threads (default: all cores)\n"
           "  -q, --quiet                 no progress line\n"
           "  -h, --help, -V, --version\n"
           "Re-running completes an interrupted run: finished shards are verified and kept.\n"
           "Options may be written with underscores or hyphens. Exit status: 0 ok, 1 error, 2 usage.\n");
}

enum { O_MODEL = 256, O_VARIANT, O_DTYPE, O_TEXT, O_CLIPSKIP, O_BATCH, O_DEVICE, O_IGNTOK, O_FORCE, O_STRICT };

static void parse(int argc, char **argv, opts *o) {
    static const struct option lo[] = {
        {"pretrained_model_name_or_path", required_argument, NULL, O_MODEL},
        {"variant", required_argument, NULL, O_VARIANT},
        {"output_dir", required_argument, NULL, 'o'},
        {"latent_dtype", required_argument, NULL, O_DTYPE},
        {"text_embeddings", no_argument, NULL, O_TEXT},
        {"clip_skip", required_argument, NULL, O_CLIPSKIP},
        {"batch_size", required_argument, NULL, O_BATCH},
        {"device", required_argument, NULL, O_DEVICE},
        {"ignore_tokenizer_mismatch", no_argument, NULL, O_IGNTOK},
        {"force", no_argument, NULL, O_FORCE},
        {"strict", no_argument, NULL, O_STRICT},
        {"threads", required_argument, NULL, 'j'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    memset(o, 0, sizeof *o);
    o->batch_size = 4;
    o->latent_dtype = SD_F32;
    o->device = "cpu";
    int c;
    while ((c = getopt_long(argc, argv, "o:j:qhV", lo, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case O_MODEL: o->model = optarg; break;
        case O_VARIANT: o->variant = optarg; break;
        case 'o': o->out_dir = optarg; break;
        case O_DTYPE:
            if (!strcmp(optarg, "fp32") || !strcmp(optarg, "float32")) o->latent_dtype = SD_F32;
            else if (!strcmp(optarg, "fp16") || !strcmp(optarg, "float16")) o->latent_dtype = SD_F16;
            else sd_usage_error("--latent_dtype: '%s' is not fp32 or fp16", optarg);
            break;
        case O_TEXT: o->text_embeddings = 1; break;
        case O_CLIPSKIP: bad = sd_parse_int(optarg, "clip_skip", 0, 64, &o->clip_skip); break;
        case O_BATCH: bad = sd_parse_int(optarg, "batch_size", 1, 4096, &o->batch_size); break;
        case O_DEVICE: o->device = optarg; break;
        case O_IGNTOK: o->ignore_tokenizer = 1; break;
        case O_FORCE: o->force = 1; break;
        case O_STRICT: o->strict = 1; break;
        case 'j': bad = sd_parse_int(optarg, "threads", 1, 1024, &o->threads); break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(); exit(0);
        case 'V': sd_print_version();
        default: sd_usage_error("invalid option");
        }
        if (bad) sd_usage_error("%s", sd_last_error());
    }
    if (optind < argc) o->input = argv[optind++];
    if (optind < argc) sd_usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->input) sd_usage_error("no PREP_DIR given");
    if (!o->out_dir) sd_usage_error("--output_dir (-o) is required");
    if (!o->model) sd_usage_error("--pretrained_model_name_or_path is required");
    if (strcmp(o->device, "cpu") && strcmp(o->device, "cuda")) sd_usage_error("--device: '%s' is not cpu or cuda", o->device);
    if (o->clip_skip && !o->text_embeddings) sd_usage_error("--clip_skip applies to --text_embeddings only");
}

/* ---- one batch of samples, copied out of the reader ---------------------- */

typedef struct {
    char key[32];
    char *err;                     /* skip reason detail, or NULL */
    sd_image img;                  /* decoded prep image (RGB) */
    unsigned char *tokens, *txt, *json;
    size_t tokens_len, txt_len, json_len;
    int32_t *ids;                  /* [ncap*77] */
    int ncap;
} item;

static void item_free(item *it) {
    free(it->err); sd_image_free(&it->img); free(it->tokens); free(it->txt); free(it->json); free(it->ids);
    memset(it, 0, sizeof *it);
}

static unsigned char *dup_member(const sd_shard_sample *s, const char *ext, size_t *len) {
    const sd_shard_file *f = sd_shard_find(s, ext);
    if (!f) return NULL;
    unsigned char *p = sd_xmalloc(f->len + 1);
    memcpy(p, f->data, f->len);
    p[f->len] = 0;
    *len = f->len;
    return p;
}

/* Copy and decode one prep sample; a problem is recorded in it->err. */
static void take_sample(const sd_shard_sample *s, const char *shard, int factor, item *it) {
    memset(it, 0, sizeof *it);
    snprintf(it->key, sizeof it->key, "%s", s->key);
    char where[512];
    snprintf(where, sizeof where, "%s: %s", shard, s->key);
    const sd_shard_file *png = sd_shard_find(s, SD_EXT_IMAGE);
    it->tokens = dup_member(s, SD_EXT_TOKENS, &it->tokens_len);
    it->txt = dup_member(s, SD_EXT_CAPTION, &it->txt_len);
    it->json = dup_member(s, SD_EXT_META, &it->json_len);
    if (!png || !it->tokens || !it->json) {
        sd_set_error("%s: missing .%s member", where, !png ? SD_EXT_IMAGE : !it->tokens ? SD_EXT_TOKENS : SD_EXT_META);
        goto bad;
    }
    char *fp = NULL;
    if (sd_tokens_unpack(it->tokens, it->tokens_len, where, &it->ids, &it->ncap, &fp)) goto bad;
    free(fp);
    if (sd_image_decode_memory(png->data, png->len, 0, &it->img, NULL)) {
        sd_error_prefix("%s.%s", where, SD_EXT_IMAGE);
        goto bad;
    }
    if (it->img.w % factor || it->img.h % factor) {
        sd_set_error("%s: image %dx%d is not a multiple of the VAE's factor %d", where, it->img.w, it->img.h, factor);
        goto bad;
    }
    return;
bad:
    it->err = sd_xstrdup(sd_last_error());
}

typedef struct {
    const opts *o;
    sd_backend *be;
    sd_vae *vae;
    sd_clip_text *te;
    char vae_fp[80], te_fp[80];
    int random_flip;
    uint64_t encoded, skipped, images;
    cJSON *skips;
} ctx;

/* Encode n items of equal image size (all ok) and write them. */
static int encode_group(ctx *c, item **its, int n, sd_shard_writer *w) {
    int H = its[0]->img.h, W = its[0]->img.w, f = c->vae->factor, L = c->vae->latent_channels;
    int h = H / f, wl = W / f, nimg = c->random_flip ? 2 * n : n;
    size_t px = (size_t)3 * H * W, lat = (size_t)L * h * wl;
    float *pix = sd_backend_alloc_f32(c->be, px * (size_t)nimg);
    float *mom = sd_backend_alloc_f32(c->be, 2 * lat * (size_t)nimg);
    if (!pix || !mom) { sd_backend_free(c->be, pix); sd_backend_free(c->be, mom); return -1; }
    float *host = sd_xmalloc(sizeof(float) * px);
    for (int i = 0; i < n; i++) {
        sd_image_to_chw_f32(&its[i]->img, host);
        sd_backend_upload(c->be, pix + px * (size_t)i, host, sizeof(float) * px);
        if (c->random_flip) { /* the flipped IMAGE: RandomHorizontalFlip acts before the VAE */
            sd_image_flip_h(&its[i]->img);
            sd_image_to_chw_f32(&its[i]->img, host);
            sd_image_flip_h(&its[i]->img);
            sd_backend_upload(c->be, pix + px * (size_t)(n + i), host, sizeof(float) * px);
        }
    }
    free(host);
    int rc = sd_vae_encode(c->vae, pix, nimg, H, W, mom);
    float *hmom = sd_xmalloc(sizeof(float) * 2 * lat * (size_t)nimg);
    if (!rc) rc = sd_backend_download(c->be, hmom, mom, sizeof(float) * 2 * lat * (size_t)nimg);
    sd_backend_free(c->be, pix);
    sd_backend_free(c->be, mom);
    float *mean = sd_xmalloc(sizeof(float) * lat * (size_t)nimg), *logvar = sd_xmalloc(sizeof(float) * lat * (size_t)nimg);
    if (!rc) sd_vae_moments_split(hmom, nimg, L, h, wl, mean, logvar);
    free(hmom);

    /* text embeddings for every caption row of the group */
    float *hid = NULL;
    int rows = 0, D = c->te ? c->te->hidden : 0;
    if (!rc && c->te) {
        for (int i = 0; i < n; i++) rows += its[i]->ncap;
        int32_t *ids = sd_xmalloc(sizeof(int32_t) * SD_TOKENS_LEN * (size_t)rows);
        for (int i = 0, r = 0; i < n; r += its[i]->ncap, i++)
            memcpy(ids + (size_t)r * SD_TOKENS_LEN, its[i]->ids, sizeof(int32_t) * SD_TOKENS_LEN * (size_t)its[i]->ncap);
        float *dh = sd_backend_alloc_f32(c->be, (size_t)rows * SD_TOKENS_LEN * (size_t)D);
        hid = sd_xmalloc(sizeof(float) * (size_t)rows * SD_TOKENS_LEN * (size_t)D);
        rc = !dh ? -1 : sd_clip_text_forward(c->te, ids, rows, SD_TOKENS_LEN, c->o->clip_skip, dh);
        if (!rc) rc = sd_backend_download(c->be, hid, dh, sizeof(float) * (size_t)rows * SD_TOKENS_LEN * (size_t)D);
        sd_backend_free(c->be, dh);
        free(ids);
    }

    for (int i = 0, r = 0; !rc && i < n; r += its[i]->ncap, i++) {
        int64_t shape[3] = {L, h, wl};
        sd_st_writer *sw = sd_st_writer_new();
        sd_st_writer_add_f32(sw, SD_T_MEAN, c->o->latent_dtype, 3, shape, mean + lat * (size_t)i);
        sd_st_writer_add_f32(sw, SD_T_LOGVAR, c->o->latent_dtype, 3, shape, logvar + lat * (size_t)i);
        if (c->random_flip) {
            sd_st_writer_add_f32(sw, SD_T_MEAN_FLIPPED, c->o->latent_dtype, 3, shape, mean + lat * (size_t)(n + i));
            sd_st_writer_add_f32(sw, SD_T_LOGVAR_FLIPPED, c->o->latent_dtype, 3, shape, logvar + lat * (size_t)(n + i));
        }
        sd_st_writer_meta(sw, SD_META_VAE, c->vae_fp);
        unsigned char *lb = NULL, *tb = NULL;
        size_t ll = 0, tl = 0;
        rc = sd_st_writer_to_memory(sw, &lb, &ll);
        sd_st_writer_free(sw);
        if (!rc && c->te) {
            int64_t hs[3] = {its[i]->ncap, SD_TOKENS_LEN, D};
            sd_st_writer *hw = sd_st_writer_new();
            sd_st_writer_add_f32(hw, SD_T_HIDDEN_STATES, c->o->latent_dtype, 3, hs,
                                 hid + (size_t)r * SD_TOKENS_LEN * (size_t)D);
            sd_st_writer_meta(hw, SD_META_TEXT_ENCODER, c->te_fp);
            rc = sd_st_writer_to_memory(hw, &tb, &tl);
            sd_st_writer_free(hw);
        }
        if (!rc) {
            sd_shard_member m[5];
            int k = 0;
            m[k++] = (sd_shard_member){SD_EXT_LATENT, lb, ll};
            m[k++] = (sd_shard_member){SD_EXT_TOKENS, its[i]->tokens, its[i]->tokens_len};
            m[k++] = (sd_shard_member){SD_EXT_META, its[i]->json, its[i]->json_len};
            if (its[i]->txt) m[k++] = (sd_shard_member){SD_EXT_CAPTION, its[i]->txt, its[i]->txt_len};
            if (tb) m[k++] = (sd_shard_member){SD_EXT_TEXT, tb, tl};
            rc = sd_shard_write_sample(w, its[i]->key, k, m);
        }
        free(lb);
        free(tb);
        c->encoded++;
    }
    c->images += (uint64_t)nimg;
    free(mean);
    free(logvar);
    free(hid);
    return rc;
}

static int flush_batch(ctx *c, item *batch, int n, sd_shard_writer *w) {
    /* samples in order; consecutive runs of equal size are encoded together */
    int i = 0, rc = 0;
    while (i < n && !rc) {
        if (batch[i].err) { i++; continue; }
        item *grp[4096];
        int g = 0, j = i;
        while (j < n && (batch[j].err || (batch[j].img.w == batch[i].img.w && batch[j].img.h == batch[i].img.h))) {
            if (!batch[j].err) grp[g++] = &batch[j];
            j++;
        }
        rc = encode_group(c, grp, g, w);
        i = j;
    }
    return rc;
}

/* Encode prep shard `in` into latent shard `out`. */
static int encode_shard(ctx *c, const char *in, const char *out, sd_progress *prog, int64_t *done) {
    sd_shard_reader *r;
    if (sd_shard_open(&r, in, NULL)) return -1;
    sd_shard_writer *w;
    if (sd_shard_writer_open(&w, out, 0)) { sd_shard_close(r); return -1; }
    int B = c->o->batch_size, n = 0, rc = 0;
    item *batch = sd_xcalloc((size_t)B, sizeof(item));
    sd_shard_sample *s;
    for (;;) {
        int got = sd_shard_next(r, &s);
        if (got < 0) { rc = -1; break; }
        if (got == 0) break;
        take_sample(s, in, c->vae->factor, &batch[n]);
        if (batch[n].err) {
            c->skipped++;
            if (c->o->strict) { sd_set_error("%s (--strict)", batch[n].err); rc = -1; break; }
            if (!c->o->quiet) sd_warn("skipped %s", batch[n].err);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "shard", sd_path_basename(in));
            cJSON_AddStringToObject(e, "key", batch[n].key);
            cJSON_AddStringToObject(e, "detail", batch[n].err);
            cJSON_AddItemToArray(c->skips, e);
        }
        if (++n == B) {
            rc = flush_batch(c, batch, n, w);
            for (int i = 0; i < n; i++) item_free(&batch[i]);
            *done += n;
            n = 0;
            sd_progress_update(prog, *done, NULL);
            if (rc) break;
        }
    }
    if (!rc && n) rc = flush_batch(c, batch, n, w);
    *done += n;
    for (int i = 0; i < B; i++) item_free(&batch[i]);
    free(batch);
    sd_shard_close(r);
    if (rc) { sd_shard_writer_abort(w); return -1; }
    return sd_shard_writer_close(w, NULL);
}

/* The provenance fields that must match for an existing output to be resumed. */
static cJSON *make_provenance(const ctx *c, const sd_shard_manifest *prep, const char *prep_sha) {
    const opts *o = c->o;
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "tool", "sdencode");
    cJSON_AddStringToObject(p, "version", SD_VERSION);
    cJSON_AddStringToObject(p, "model", o->model);
    cJSON_AddStringToObject(p, SD_META_VAE, c->vae_fp);
    cJSON_AddNumberToObject(p, "scaling_factor", c->vae->cfg.scaling_factor);
    cJSON_AddNumberToObject(p, "shift_factor", c->vae->cfg.shift_factor);
    cJSON_AddNumberToObject(p, "vae_factor", c->vae->factor);
    cJSON_AddNumberToObject(p, "latent_channels", c->vae->latent_channels);
    cJSON_AddStringToObject(p, "latent_dtype", o->latent_dtype == SD_F16 ? "fp16" : "fp32");
    cJSON_AddBoolToObject(p, "random_flip", c->random_flip);
    cJSON_AddBoolToObject(p, "text_embeddings", o->text_embeddings);
    if (o->text_embeddings) {
        cJSON_AddStringToObject(p, SD_META_TEXT_ENCODER, c->te_fp);
        cJSON_AddNumberToObject(p, "clip_skip", o->clip_skip);
        cJSON_AddNumberToObject(p, "text_hidden_size", c->te->hidden);
    }
    const cJSON *pp = prep->provenance;
    const cJSON *popt = cJSON_GetObjectItemCaseSensitive(pp, "options");
    cJSON *res = cJSON_GetObjectItemCaseSensitive(popt, "resolution");
    if (res) cJSON_AddItemToObject(p, "resolution", cJSON_Duplicate(res, 1));
    const char *tfp = sd_json_str(pp, SD_META_TOKENIZER, NULL);
    if (tfp) cJSON_AddStringToObject(p, SD_META_TOKENIZER, tfp);
    cJSON *prepj = cJSON_AddObjectToObject(p, "prep");
    cJSON_AddStringToObject(prepj, "path", o->input);
    cJSON_AddStringToObject(prepj, "manifest_sha256", prep_sha);
    if (pp) cJSON_AddItemToObject(prepj, "provenance", cJSON_Duplicate(pp, 1));
    return p;
}

/* Fields of an existing output that decide whether its shards can be kept. */
static int same_settings(const cJSON *a, const cJSON *b) {
    static const char *keys[] = {SD_META_VAE, "latent_dtype", "random_flip", "text_embeddings",
                                 SD_META_TEXT_ENCODER, "clip_skip", SD_META_TOKENIZER, NULL};
    for (int i = 0; keys[i]; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(a, keys[i]), *y = cJSON_GetObjectItemCaseSensitive(b, keys[i]);
        if (!x != !y) return 0;
        if (x && !cJSON_Compare(x, y, 1)) return 0;
    }
    const cJSON *pa = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(a, "prep"), "manifest_sha256");
    const cJSON *pb = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "prep"), "manifest_sha256");
    return pa && pb && cJSON_Compare(pa, pb, 1);
}

int main(int argc, char **argv) {
    sd_set_progname(argv[0]);
    sd_cli_normalize(argc, argv);
    opts o;
    parse(argc, argv, &o);
    if (o.quiet) sd_progress_disable_all();
    if (!strcmp(o.device, "cuda"))
        sd_die("--device cuda: this build has no CUDA backend yet (the CUDA kernels are compiled by make cuda, "
               "but the model ops run on the CPU backend); use --device cpu");
    double t0 = sd_now();

    /* the prep set */
    sd_shard_manifest prep;
    if (sd_shard_manifest_read(o.input, &prep)) sd_die_last();
    if (strcmp(prep.kind, SD_SHARD_KIND_PREP))
        sd_die("%s: kind is \"%s\", not \"prep\" (sdencode reads sdprep's output)", o.input, prep.kind);
    if (!prep.complete) sd_die("%s: the prep set is incomplete (sdprep did not finish); re-run sdprep", o.input);
    char *prep_mf = sd_is_dir(o.input) ? sd_path_join(o.input, SD_SHARD_MANIFEST) : sd_xstrdup(o.input);
    char *prep_dir = sd_is_dir(o.input) ? sd_xstrdup(o.input) : sd_path_dirname(o.input);
    char prep_sha[65];
    if (sd_sha256_file(prep_mf, prep_sha)) sd_die_last();
    const cJSON *popt = cJSON_GetObjectItemCaseSensitive(prep.provenance, "options");
    ctx c = {0};
    c.o = &o;
    c.random_flip = sd_json_bool(popt, "random_flip", 0);
    c.skips = cJSON_CreateArray();

    /* the model */
    sd_model_opts mo = {0};
    mo.variant = o.variant;
    sd_model *m;
    if (sd_model_open(o.model, &mo, &m)) sd_die_last();
    if (!m->has[SD_VAE]) sd_die("%s: the model has no VAE", o.model);
    if (o.text_embeddings && !m->has[SD_TEXT_ENCODER]) sd_die("%s: --text_embeddings, but the model has no text encoder", o.model);
    const char *prep_tok = sd_json_str(prep.provenance, SD_META_TOKENIZER, NULL);
    if (m->tokenizer_dir && prep_tok) {
        sd_clip_tokenizer *tok;
        if (sd_clip_tokenizer_load(m->tokenizer_dir, &tok)) sd_die_last();
        char fp[80];
        snprintf(fp, sizeof fp, "sha256:%s", sd_clip_tokenizer_fingerprint(tok));
        sd_clip_tokenizer_free(tok);
        if (strcmp(fp, prep_tok) && !o.ignore_tokenizer)
            sd_die("%s: the prep shards were tokenized with another tokenizer (%.20s... vs the model's %.20s...); "
                   "re-run sdprep with this model, or pass --ignore_tokenizer_mismatch", o.input, prep_tok, fp);
    }
    c.be = sd_backend_cpu_create(o.threads);
    if (!c.be) sd_die_last();
    if (sd_vae_load(m, c.be, &c.vae)) sd_die_last();
    char hex[65];
    if (sd_vae_fingerprint(c.vae, hex)) sd_die_last();
    snprintf(c.vae_fp, sizeof c.vae_fp, "sha256:%s", hex);
    if (o.text_embeddings) {
        if (sd_clip_text_load(m, c.be, &c.te)) sd_die_last();
        if (o.clip_skip > c.te->cfg.num_hidden_layers)
            sd_die("--clip_skip %d: the text encoder has %d layers", o.clip_skip, c.te->cfg.num_hidden_layers);
        if (sd_clip_text_fingerprint(c.te, hex)) sd_die_last();
        snprintf(c.te_fp, sizeof c.te_fp, "sha256:%s", hex);
    }
    cJSON *prov = make_provenance(&c, &prep, prep_sha);

    /* the output: resume a set made with the same settings, refuse another */
    sd_shard_manifest old;
    int have_old = 0;
    char *out_mf = sd_path_join(o.out_dir, SD_SHARD_MANIFEST);
    if (sd_is_file(out_mf)) {
        if (sd_shard_manifest_read(out_mf, &old)) sd_die_last();
        have_old = 1;
        if (strcmp(old.kind, SD_SHARD_KIND_LATENT) || !same_settings(old.provenance, prov)) {
            if (!o.force)
                sd_die("%s: holds latents made from other inputs or settings; use --force to replace them", o.out_dir);
            sd_shard_manifest_free(&old);
            have_old = 0;
        }
    }
    free(out_mf);
    if (sd_mkdir_p(o.out_dir)) sd_die_last();

    sd_shard_manifest man;
    sd_shard_manifest_init(&man, SD_SHARD_KIND_LATENT);
    sd_shard_manifest_set_provenance(&man, cJSON_Duplicate(prov, 1));
    int64_t total = (int64_t)sd_shard_manifest_samples(&prep), done = 0;
    int kept = 0;
    sd_progress prog;
    sd_progress_begin(&prog, "sdencode", "img", total);
    for (int k = 0; k < prep.n; k++) {
        char *in = sd_path_join(prep_dir, prep.shards[k].name);
        char *name = sd_shard_filename(SD_SHARD_PREFIX_LATENT, k, 0);
        char *out = sd_path_join(o.out_dir, name);
        const sd_shard_info *prev = have_old ? sd_shard_manifest_find(&old, name) : NULL;
        if (prev && sd_shard_verify(o.out_dir, prev) == 0) { /* finished by an earlier run */
            sd_shard_manifest_add(&man, prev);
            done += (int64_t)prep.shards[k].samples;
            kept++;
        } else {
            if (encode_shard(&c, in, out, &prog, &done)) {
                sd_progress_end(&prog);
                sd_die_last(); /* the manifest still says complete: false */
            }
            sd_shard_info info;
            if (sd_shard_scan(out, &info)) sd_die_last();
            sd_shard_manifest_add(&man, &info);
        }
        if (sd_shard_manifest_write(&man, o.out_dir)) sd_die_last();
        sd_progress_update(&prog, done, NULL);
        free(in); free(name); free(out);
    }
    double secs = sd_progress_end(&prog);
    cJSON *p2 = cJSON_Duplicate(prov, 1);
    cJSON *cnt = cJSON_AddObjectToObject(p2, "counts");
    cJSON_AddNumberToObject(cnt, "samples", (double)sd_shard_manifest_samples(&man));
    cJSON_AddNumberToObject(cnt, "skipped", (double)c.skipped);
    cJSON_AddItemToObject(p2, "skipped", c.skips);
    sd_shard_manifest_set_provenance(&man, p2);
    man.complete = 1;
    if (sd_shard_manifest_write(&man, o.out_dir)) sd_die_last();
    fprintf(stderr, "sdencode: %llu samples in %d shards to %s (%d kept from an earlier run); skipped %llu; "
            "%.1f s, %.2f images/s (%llu VAE encodes%s)\n",
            (unsigned long long)sd_shard_manifest_samples(&man), man.n, o.out_dir, kept, (unsigned long long)c.skipped,
            sd_now() - t0, secs > 0 ? (double)c.images / secs : 0.0, (unsigned long long)c.images,
            c.random_flip ? ", both orientations" : "");

    cJSON_Delete(prov);
    sd_shard_manifest_free(&man);
    if (have_old) sd_shard_manifest_free(&old);
    sd_shard_manifest_free(&prep);
    sd_clip_text_free(c.te);
    sd_vae_free(c.vae);
    sd_model_close(m);
    sd_backend_destroy(c.be);
    free(prep_mf);
    free(prep_dir);
    return 0;
}
