/* sdprep — a HuggingFace imagefolder (or a folder of images with caption
 * files) -> WebDataset tar shards of preprocessed images and CLIP token ids.
 *
 *   sdprep --train_data_dir DATA --pretrained_model_name_or_path MODEL -o PREP [OPTIONS]
 *
 * Per sample, as diffusers' train_text_to_image.py does on the fly:
 * PIL convert("RGB") -> Resize(resolution, interpolation) (shorter side) ->
 * CenterCrop or RandomCrop(resolution) (or ppdiffusers' straight resize to
 * --height x --width) -> lossless PNG; every caption tokenized to 77 ids.
 * --random_flip is recorded, not applied: sdencode encodes both orientations
 * and sdfit picks one per step. Outputs follow formats/shards.md; the work is
 * in lib/io (dataset, image, transform, shard) and lib/text (tokenizer).
 */
#include "core/cli.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/rng.h"
#include "io/dataset.h"
#include "io/image.h"
#include "io/json.h"
#include "io/resize.h"
#include "io/shard.h"
#include "io/transform.h"
#include "text/clip_tokenizer.h"

#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The random crop of sample i draws from Philox stream CROP_STREAM + i, so a
 * sample's crop depends only on (seed, i), not on threads or order. */
#define CROP_STREAM 0x63726f7000000000ull /* "crop" */

typedef struct {
    const char *data_dir, *out_dir, *model, *tokenizer_dir;
    const char *caption_column, *image_column, *split, *caption_ext;
    int resolution, height, width, center_crop, random_flip;
    const char *interp;
    int64_t max_samples;
    uint64_t seed;
    int shard_size, zstd, strict, threads, force, quiet, all_lines;
    uint64_t max_pixels;
} opts;

static void usage(void) {
    printf(
        "Usage: sdprep --train_data_dir DIR -o OUT (--pretrained_model_name_or_path MODEL | --tokenizer_name DIR) [OPTIONS]\n"
        "Preprocess an imagefolder into WebDataset tar shards of images and CLIP token ids.\n"
        "\n"
        "Input:\n"
        "      --train_data_dir DIR          imagefolder (metadata.jsonl/.csv with file_name + caption column,\n"
        "                                    split folders) or a folder of images with caption files\n"
        "      --split NAME                  train (default), validation, test\n"
        "      --caption_column NAME         caption column (default text); a list of strings keeps all\n"
        "      --image_column NAME           image column (default image = the file_name link)\n"
        "      --caption_extension EXT       caption files beside images (default .txt; kohya: .caption)\n"
        "      --caption_all_lines           caption files: every non-empty line is a caption (default: first line)\n"
        "      --pretrained_model_name_or_path MODEL   tokenizer from MODEL/tokenizer\n"
        "      --tokenizer_name DIR          tokenizer directory (vocab.json, merges.txt)\n"
        "Transforms (as diffusers' train_text_to_image.py):\n"
        "      --resolution N                shorter side resized to N, then an N x N crop (default 512)\n"
        "      --center_crop                 center crop (default: random crop, seeded)\n"
        "      --random_flip                 record that training flips with p=0.5 (sdencode encodes both)\n"
        "      --height H --width W          ppdiffusers: resize straight to H x W (no crop)\n"
        "      --image_interpolation_mode M  lanczos (default), bilinear, bicubic, nearest, nearest_exact, box, hamming\n"
        "      --max_train_samples N         keep N samples (seeded shuffle, then the first N)\n"
        "      --seed S                      seed for random crops and selection (default 0)\n"
        "Output:\n"
        "  -o, --output_dir DIR              shards prep-000000.tar ... and manifest.json\n"
        "      --shard_size N                samples per shard (default 1000)\n"
        "      --zstd[=LEVEL]                write .tar.zst (default level 3)\n"
        "      --force                       replace an existing output set\n"
        "Behaviour:\n"
        "      --strict                      any skipped input is an error\n"
        "      --max_pixels N                refuse larger images before decoding (default %llu, PIL's bomb limit)\n"
        "  -j, --threads N                   worker threads (default: all cores)\n"
        "  -q, --quiet                       no progress line\n"
        "  -h, --help, -V, --version\n"
        "Options may be written with underscores or hyphens. Exit status: 0 ok, 1 error, 2 usage.\n",
        2 * SD_IMAGE_PIL_MAX_PIXELS);
}

enum {
    O_DATA = 256, O_MODEL, O_TOK, O_CAPCOL, O_IMGCOL, O_SPLIT, O_CAPEXT, O_ALLLINES, O_RES, O_CENTER, O_FLIP,
    O_H, O_W, O_INTERP, O_MAXS, O_SEED, O_SHARD, O_ZSTD, O_FORCE, O_STRICT, O_MAXPIX, O_IGNORED, O_DATASET_NAME
};

static void parse(int argc, char **argv, opts *o) {
    static const struct option lo[] = {
        {"train_data_dir", required_argument, NULL, O_DATA},
        {"pretrained_model_name_or_path", required_argument, NULL, O_MODEL},
        {"tokenizer_name", required_argument, NULL, O_TOK},
        {"caption_column", required_argument, NULL, O_CAPCOL},
        {"image_column", required_argument, NULL, O_IMGCOL},
        {"split", required_argument, NULL, O_SPLIT},
        {"caption_extension", required_argument, NULL, O_CAPEXT},
        {"caption_all_lines", no_argument, NULL, O_ALLLINES},
        {"resolution", required_argument, NULL, O_RES},
        {"center_crop", no_argument, NULL, O_CENTER},
        {"random_flip", no_argument, NULL, O_FLIP},
        {"height", required_argument, NULL, O_H},
        {"width", required_argument, NULL, O_W},
        {"image_interpolation_mode", required_argument, NULL, O_INTERP},
        {"max_train_samples", required_argument, NULL, O_MAXS},
        {"seed", required_argument, NULL, O_SEED},
        {"output_dir", required_argument, NULL, 'o'},
        {"shard_size", required_argument, NULL, O_SHARD},
        {"zstd", optional_argument, NULL, O_ZSTD},
        {"force", no_argument, NULL, O_FORCE},
        {"strict", no_argument, NULL, O_STRICT},
        {"max_pixels", required_argument, NULL, O_MAXPIX},
        {"threads", required_argument, NULL, 'j'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        /* reference options that do not apply to preprocessing: accepted, noted */
        {"dataloader_num_workers", required_argument, NULL, O_IGNORED},
        {"cache_dir", required_argument, NULL, O_IGNORED},
        {"revision", required_argument, NULL, O_IGNORED},
        {"dataset_config_name", required_argument, NULL, O_IGNORED},
        {"dataset_name", required_argument, NULL, O_DATASET_NAME},
        {NULL, 0, NULL, 0}};
    memset(o, 0, sizeof *o);
    o->resolution = 512;
    o->interp = "lanczos";
    o->max_samples = -1;
    o->shard_size = 1000;
    o->max_pixels = 2 * SD_IMAGE_PIL_MAX_PIXELS;
    int c, idx;
    while ((c = getopt_long(argc, argv, "o:j:qhV", lo, &idx)) != -1) {
        int ok = 0;
        switch (c) {
        case O_DATA: o->data_dir = optarg; break;
        case O_MODEL: o->model = optarg; break;
        case O_TOK: o->tokenizer_dir = optarg; break;
        case O_CAPCOL: o->caption_column = optarg; break;
        case O_IMGCOL: o->image_column = optarg; break;
        case O_SPLIT: o->split = optarg; break;
        case O_CAPEXT: o->caption_ext = optarg; break;
        case O_ALLLINES: o->all_lines = 1; break;
        case O_RES: ok = sd_parse_int(optarg, "resolution", 8, 16384, &o->resolution); break;
        case O_CENTER: o->center_crop = 1; break;
        case O_FLIP: o->random_flip = 1; break;
        case O_H: ok = sd_parse_int(optarg, "height", 8, 16384, &o->height); break;
        case O_W: ok = sd_parse_int(optarg, "width", 8, 16384, &o->width); break;
        case O_INTERP: o->interp = optarg; break;
        case O_MAXS: ok = sd_parse_i64(optarg, "max_train_samples", 1, INT64_MAX, &o->max_samples); break;
        case O_SEED: ok = sd_parse_u64(optarg, "seed", &o->seed); break;
        case 'o': o->out_dir = optarg; break;
        case O_SHARD: ok = sd_parse_int(optarg, "shard_size", 1, 10000000, &o->shard_size); break;
        case O_ZSTD: o->zstd = 3; if (optarg) ok = sd_parse_int(optarg, "zstd", 1, 19, &o->zstd); break;
        case O_FORCE: o->force = 1; break;
        case O_STRICT: o->strict = 1; break;
        case O_MAXPIX: ok = sd_parse_u64(optarg, "max_pixels", &o->max_pixels); break;
        case 'j': ok = sd_parse_int(optarg, "threads", 1, 1024, &o->threads); break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(); exit(0);
        case 'V': sd_print_version();
        case O_IGNORED: sd_note("--%s does not apply to sdprep; ignored", lo[idx].name); break;
        case O_DATASET_NAME:
            sd_usage_error("--dataset_name: hub datasets are not downloaded; export the dataset to an imagefolder "
                           "(metadata.jsonl + images) and pass --train_data_dir");
        default: sd_usage_error("invalid option");
        }
        if (ok) sd_usage_error("%s", sd_last_error());
    }
    if (optind < argc) sd_usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->data_dir) sd_usage_error("--train_data_dir is required");
    if (!o->out_dir) sd_usage_error("--output_dir (-o) is required");
    if (!o->model && !o->tokenizer_dir) sd_usage_error("give --pretrained_model_name_or_path or --tokenizer_name");
    if (sd_resize_filter_from_name(o->interp) < 0) sd_usage_error("--image_interpolation_mode: unknown mode '%s'", o->interp);
}

/* One processed sample, produced by a worker and written in order. */
typedef struct {
    int ok;
    char *err;                   /* skip detail when !ok */
    const char *reason;          /* skip reason code when !ok */
    unsigned char *png, *tokens;
    size_t png_len, tokens_len;
    sd_transform_record tr;      /* sizes and crop box for KEY.json */
    int truncated;               /* captions longer than 77 tokens */
} result;

static void result_free(result *r) {
    free(r->err); free(r->png); free(r->tokens);
    memset(r, 0, sizeof *r);
}

static void process(const opts *o, const sd_transform_opts *tf, const sd_clip_tokenizer *tok, const char *tok_fp,
                    const sd_dataset_record *rec, result *r) {
    memset(r, 0, sizeof *r);
    sd_image img = {0}, out = {0};
    sd_image_info info;
    if (sd_image_decode_file(rec->path, o->max_pixels, &img, &info)) {
        r->reason = strstr(sd_last_error(), "pixel") && strstr(sd_last_error(), "limit") ? "too_large" : "bad_image";
        r->err = sd_xstrdup(sd_last_error());
        return;
    }
    sd_rng rng;
    sd_rng_init(&rng, o->seed, CROP_STREAM + rec->index);
    sd_transform_record tr;
    if (sd_transform_apply(&img, tf, &rng, &out, &tr)) {
        r->reason = "bad_image";
        r->err = sd_xstrdup(sd_last_error());
        sd_image_free(&img);
        return;
    }
    sd_image_free(&img);
    if (sd_png_encode_memory(&out, NULL, 0, SD_PNG_FAST, &r->png, &r->png_len)) {
        r->reason = "bad_image";
        r->err = sd_xstrdup(sd_last_error());
        sd_image_free(&out);
        return;
    }
    sd_image_free(&out);
    int32_t *ids = sd_xmalloc(sizeof(int32_t) * SD_TOKENS_LEN * (size_t)rec->ncaptions);
    for (int k = 0; k < rec->ncaptions; k++) {
        size_t n_text;
        if (sd_clip_tokenizer_encode_n(tok, rec->captions[k], strlen(rec->captions[k]), ids + SD_TOKENS_LEN * k, NULL,
                                       &n_text)) {
            r->reason = "bad_caption";
            r->err = sd_xstrdup(sd_last_error());
            free(ids);
            free(r->png);
            r->png = NULL;
            return;
        }
        if (n_text > SD_TOKENS_LEN - 2) r->truncated++;
    }
    if (sd_tokens_pack(ids, rec->ncaptions, tok_fp, &r->tokens, &r->tokens_len)) {
        r->reason = "bad_caption";
        r->err = sd_xstrdup(sd_last_error());
        free(ids);
        return;
    }
    free(ids);
    r->tr = tr;
    r->ok = 1;
}

/* The set being written: shards of o->shard_size samples, manifest after each. */
typedef struct {
    const opts *o;
    sd_shard_manifest man;
    sd_shard_writer *w;
    int shard_index;
    int in_shard;
    uint64_t written;
} writer;

static int close_shard(writer *wr) {
    if (!wr->w) return 0;
    sd_shard_info info;
    int rc = sd_shard_writer_close(wr->w, &info);
    wr->w = NULL;
    if (rc) return -1;
    sd_shard_manifest_add(&wr->man, &info);
    wr->shard_index++;
    wr->in_shard = 0;
    return sd_shard_manifest_write(&wr->man, wr->o->out_dir);
}

static int write_sample(writer *wr, const sd_dataset_record *rec, result *r) {
    if (!wr->w) {
        char *name = sd_shard_filename(SD_SHARD_PREFIX_PREP, wr->shard_index, wr->o->zstd > 0);
        char *path = sd_path_join(wr->o->out_dir, name);
        int rc = sd_shard_writer_open(&wr->w, path, wr->o->zstd);
        free(name);
        free(path);
        if (rc) return -1;
    }
    /* keys are dense, in output order: skipped inputs leave no gaps */
    sd_prep_meta m = {0};
    m.index = wr->written;
    m.source = rec->rel;
    m.original_width = r->tr.orig_w;
    m.original_height = r->tr.orig_h;
    m.resized_width = r->tr.resized_w;
    m.resized_height = r->tr.resized_h;
    m.crop_ltrb[0] = r->tr.crop_left;
    m.crop_ltrb[1] = r->tr.crop_top;
    m.crop_ltrb[2] = r->tr.crop_left + r->tr.out_w;
    m.crop_ltrb[3] = r->tr.crop_top + r->tr.out_h;
    m.random_flip = wr->o->random_flip;
    m.ncaptions = rec->ncaptions;
    m.captions = rec->captions;
    char *meta = sd_prep_meta_to_json(&m);
    char key[32];
    sd_shard_key(wr->written, key);
    const char *cap = rec->captions[0];
    sd_shard_member mem[4] = {
        {SD_EXT_IMAGE, r->png, r->png_len},
        {SD_EXT_CAPTION, cap, strlen(cap)},
        {SD_EXT_META, meta, strlen(meta)},
        {SD_EXT_TOKENS, r->tokens, r->tokens_len},
    };
    int rc = sd_shard_write_sample(wr->w, key, 4, mem);
    free(meta);
    if (rc) return -1;
    wr->written++;
    if (++wr->in_shard == wr->o->shard_size) return close_shard(wr);
    return 0;
}

/* Remove a previous output set (only files sdprep writes). */
static int clear_output(const char *dir) {
    char **names;
    int n = sd_list_dir(dir, &names);
    if (n < 0) return -1;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const char *s = names[i];
        int ours = !strcmp(s, SD_SHARD_MANIFEST) ||
                   (!strncmp(s, SD_SHARD_PREFIX_PREP "-", strlen(SD_SHARD_PREFIX_PREP) + 1) &&
                    (strstr(s, ".tar") != NULL)) ||
                   (s[0] == '.' && strstr(s, ".tmp."));
        if (ours) {
            char *p = sd_path_join(dir, s);
            rc = sd_rm_rf(p);
            free(p);
        }
    }
    sd_free_strv(names, n);
    return rc;
}

int main(int argc, char **argv) {
    sd_set_progname(argv[0]);
    sd_cli_normalize(argc, argv);
    opts o;
    parse(argc, argv, &o);
    if (o.quiet) sd_progress_disable_all();
    if (o.threads > 0) omp_set_num_threads(o.threads);
    double t0 = sd_now();

    /* tokenizer */
    char *tokdir = o.tokenizer_dir ? sd_xstrdup(o.tokenizer_dir) : sd_path_join(o.model, "tokenizer");
    sd_clip_tokenizer *tok;
    if (sd_clip_tokenizer_load(tokdir, &tok)) sd_die_last();
    char tok_fp[80];
    snprintf(tok_fp, sizeof tok_fp, "sha256:%s", sd_clip_tokenizer_fingerprint(tok));

    /* dataset */
    sd_dataset_opts dopts = {0};
    dopts.split = o.split;
    dopts.caption_column = o.caption_column;
    dopts.image_column = o.image_column;
    dopts.caption_ext = o.caption_ext;
    dopts.sidecar_all_lines = o.all_lines;
    sd_dataset *ds;
    if (sd_dataset_open(o.data_dir, &dopts, &ds)) sd_die_last();
    if (o.strict && sd_dataset_check_strict(ds)) sd_die_last();
    if (o.max_samples > 0 && sd_dataset_select(ds, (uint64_t)o.max_samples, o.seed)) sd_die_last();
    if (ds->n == 0) sd_die("%s: no usable samples (%llu skipped)", o.data_dir, (unsigned long long)ds->nskips);

    /* output directory: never mix with a previous set */
    char *mf = sd_path_join(o.out_dir, SD_SHARD_MANIFEST);
    int exists = sd_is_file(mf);
    free(mf);
    if (exists && !o.force) sd_die("%s: already holds a shard set; use --force to replace it", o.out_dir);
    if (sd_mkdir_p(o.out_dir)) sd_die_last();
    if (o.force && clear_output(o.out_dir)) sd_die_last();

    sd_transform_opts tf = {0};
    tf.resolution = o.resolution;
    tf.height = o.height || o.width ? (o.height ? o.height : o.resolution) : 0;
    tf.width = o.height || o.width ? (o.width ? o.width : o.resolution) : 0;
    tf.filter = sd_resize_filter_from_name(o.interp);
    tf.center_crop = o.center_crop;
    tf.random_flip = 0; /* recorded only: sdencode encodes both orientations */

    writer wr = {0};
    wr.o = &o;
    sd_shard_manifest_init(&wr.man, SD_SHARD_KIND_PREP);
    wr.man.complete = 0;

    /* skips found while processing (decode errors ...) */
    uint64_t n_bad_image = 0, n_too_large = 0, n_bad_caption = 0, n_truncated = 0;
    cJSON *proc_skips = cJSON_CreateArray();
    int n_skip_listed = 0;

    int nth = o.threads > 0 ? o.threads : omp_get_max_threads();
    int64_t chunk = 16 * (int64_t)nth;
    result *res = sd_xcalloc((size_t)chunk, sizeof(result));
    sd_progress prog;
    sd_progress_begin(&prog, "sdprep", "img", (int64_t)ds->n);
    int failed = 0;
    for (int64_t base = 0; base < (int64_t)ds->n && !failed; base += chunk) {
        int64_t m = (int64_t)ds->n - base < chunk ? (int64_t)ds->n - base : chunk;
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t k = 0; k < m; k++) process(&o, &tf, tok, tok_fp, &ds->rec[base + k], &res[k]);
        for (int64_t k = 0; k < m && !failed; k++) {
            result *r = &res[k];
            const sd_dataset_record *rec = &ds->rec[base + k];
            if (!r->ok) {
                if (!strcmp(r->reason, "too_large")) n_too_large++;
                else if (!strcmp(r->reason, "bad_caption")) n_bad_caption++;
                else n_bad_image++;
                if (o.strict) {
                    sd_set_error("%s (--strict)", r->err);
                    failed = 1;
                    break;
                }
                if (!o.quiet && n_skip_listed < 20) sd_warn("skipped %s: %s", r->reason, r->err);
                if (n_skip_listed < 1000) {
                    cJSON *s = cJSON_CreateObject();
                    cJSON_AddStringToObject(s, "reason", r->reason);
                    cJSON_AddStringToObject(s, "where", rec->rel);
                    cJSON_AddStringToObject(s, "detail", r->err);
                    cJSON_AddItemToArray(proc_skips, s);
                }
                n_skip_listed++;
            } else {
                n_truncated += (uint64_t)r->truncated;
                if (write_sample(&wr, rec, r)) failed = 1;
            }
            result_free(r);
        }
        sd_progress_update(&prog, base + m, NULL);
    }
    for (int64_t k = 0; k < chunk; k++) result_free(&res[k]);
    free(res);
    double secs = sd_progress_end(&prog);
    if (!failed && close_shard(&wr)) failed = 1;
    if (failed) {
        if (wr.w) sd_shard_writer_abort(wr.w);
        sd_die_last(); /* the manifest stays "complete": false */
    }
    if (wr.written == 0) sd_die("%s: every sample was skipped; nothing written", o.data_dir);

    /* provenance: what produced the set */
    cJSON *prov = cJSON_CreateObject();
    cJSON_AddStringToObject(prov, "tool", "sdprep");
    cJSON_AddStringToObject(prov, "version", SD_VERSION);
    cJSON *op = cJSON_AddObjectToObject(prov, "options");
    cJSON_AddNumberToObject(op, "resolution", o.resolution);
    if (tf.height) {
        cJSON_AddNumberToObject(op, "height", tf.height);
        cJSON_AddNumberToObject(op, "width", tf.width);
    }
    cJSON_AddBoolToObject(op, "center_crop", o.center_crop);
    cJSON_AddBoolToObject(op, "random_flip", o.random_flip);
    cJSON_AddStringToObject(op, "image_interpolation_mode", o.interp);
    cJSON_AddNumberToObject(op, "seed", (double)o.seed);
    if (o.max_samples > 0) cJSON_AddNumberToObject(op, "max_train_samples", (double)o.max_samples);
    cJSON_AddNumberToObject(op, "shard_size", o.shard_size);
    cJSON_AddNumberToObject(op, "max_pixels", (double)o.max_pixels);
    cJSON_AddStringToObject(prov, SD_META_TOKENIZER, tok_fp);
    cJSON_AddNumberToObject(prov, "pad_token_id", sd_clip_tokenizer_pad_id(tok));
    cJSON_AddItemToObject(prov, "dataset", sd_dataset_summary(ds));
    cJSON *cnt = cJSON_AddObjectToObject(prov, "counts");
    cJSON_AddNumberToObject(cnt, "written", (double)wr.written);
    cJSON_AddNumberToObject(cnt, "bad_image", (double)n_bad_image);
    cJSON_AddNumberToObject(cnt, "too_large", (double)n_too_large);
    cJSON_AddNumberToObject(cnt, "bad_caption", (double)n_bad_caption);
    cJSON_AddNumberToObject(cnt, "captions_truncated", (double)n_truncated);
    cJSON_AddItemToObject(prov, "skipped", proc_skips);
    sd_shard_manifest_set_provenance(&wr.man, prov);
    wr.man.complete = 1;
    if (sd_shard_manifest_write(&wr.man, o.out_dir)) sd_die_last();

    /* one-line summary */
    uint64_t skipped = ds->nskips + n_bad_image + n_too_large + n_bad_caption;
    char reasons[1024] = "";
    size_t rl = 0;
    for (int r = 0; r < SD_SKIP_COUNT; r++)
        if (ds->skip_count[r])
            rl += (size_t)snprintf(reasons + rl, sizeof reasons - rl, "%s%s %llu", rl ? ", " : "",
                                   sd_skip_reason_name((sd_skip_reason)r), (unsigned long long)ds->skip_count[r]);
    if (n_bad_image) rl += (size_t)snprintf(reasons + rl, sizeof reasons - rl, "%sbad_image %llu", rl ? ", " : "", (unsigned long long)n_bad_image);
    if (n_too_large) rl += (size_t)snprintf(reasons + rl, sizeof reasons - rl, "%stoo_large %llu", rl ? ", " : "", (unsigned long long)n_too_large);
    if (n_bad_caption) rl += (size_t)snprintf(reasons + rl, sizeof reasons - rl, "%sbad_caption %llu", rl ? ", " : "", (unsigned long long)n_bad_caption);
    double total = sd_now() - t0;
    fprintf(stderr, "sdprep: wrote %llu samples in %d shards to %s; skipped %llu%s%s%s; %.1f s, %.1f images/s\n",
            (unsigned long long)wr.written, wr.shard_index, o.out_dir, (unsigned long long)skipped, skipped ? " (" : "",
            reasons, skipped ? ")" : "", total, secs > 0 ? (double)wr.written / secs : 0.0);
    if (ds->nskips && !o.quiet) sd_dataset_print_skips(ds, stderr, 10);
    if (n_truncated && !o.quiet) sd_note("%llu captions were longer than 77 tokens and truncated (as the reference does)", (unsigned long long)n_truncated);

    sd_shard_manifest_free(&wr.man);
    sd_dataset_free(ds);
    sd_clip_tokenizer_free(tok);
    free(tokdir);
    return 0;
}
