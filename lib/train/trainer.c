/* trainer.c — the training loop of train_text_to_image.py on latent shards
 * (see trainer.h for the step, formats/replay.md for the random draws,
 * formats/checkpoint.md for what a checkpoint holds).
 *
 * Arithmetic of the per-sample tensors, in the reference's op order (float32,
 * every op rounded on its own: this file is compiled without FP contraction):
 *   std   = exp(0.5f * logvar)                      DiagonalGaussianDistribution
 *   x0    = (mean + std * e_lat) * (float)scaling    latent_dist.sample() * scaling_factor
 *   noise = e_noise + (float)noise_offset * e_off     noise += off * randn(B, C, 1, 1)
 *   pin   = noise + (float)input_perturbation * e_pert
 *   noisy = sqrt(ac[t]) * x0 + sqrt(1 - ac[t]) * pin  (sd_sched_add_noise)
 *   target= noise | sqrt(ac[t]) * noise - sqrt(1 - ac[t]) * x0
 * The loss and its gradient are lib/train/loss.c's (torch autograd order),
 * seeded with float(1/GA) as accelerator.backward(loss) divides by GA.
 */
#pragma GCC optimize("fp-contract=off")

#include "train/trainer.h"

#include "backend/backend.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/rng.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "io/shard.h"
#include "models/clip_text.h"
#include "models/modeldir.h"
#include "models/unet.h"
#include "models/vae.h"
#include "sample/scheduler.h"
#include "sample/txt2img.h"
#include "io/image.h"
#include "text/clip_tokenizer.h"
#include "train/ckpt.h"
#include "train/data.h"
#include "train/ema.h"
#include "train/jsonl.h"
#include "train/loss.h"
#include "train/optim.h"
#include "train/sched.h"
#include "train/tblog.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>


void sd_train_opts_init(sd_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->train_batch_size = 16;
    o->gradient_accumulation_steps = 1;
    o->num_train_epochs = 100;
    o->learning_rate = 1e-4;
    o->lr_scheduler = "constant";
    o->lr_warmup_steps = 500;
    o->lr_num_cycles = 1;
    o->lr_power = 1;
    o->adam_beta1 = 0.9;
    o->adam_beta2 = 0.999;
    o->adam_weight_decay = 1e-2;
    o->adam_epsilon = 1e-8;
    o->max_grad_norm = 1.0;
    o->output_dir = "sd-model-finetuned";
    o->checkpointing_steps = 500;
    o->logging_dir = "logs";
    o->tensorboard = 1;
    o->tracker_project_name = "text2image-fine-tune"; /* the reference's; accelerate names the run after it */
    o->validation_epochs = 5;
    o->validation_inference_steps = 20;
    o->on_nan = SD_ON_NAN_ABORT;
}

/* ---- replay file -------------------------------------------------------------- */

typedef struct {
    sd_st_file *f;
    const sd_st_tensor *lat, *noise, *off, *pert, *t, *flip, *cap, *idx;
    int64_t S; /* micro-batches covered */
    int B;     /* slots per micro-batch */
} replay;

struct sd_trainer {
    sd_train_opts o;
    uint64_t seed;
    sd_backend *be;
    sd_model *model;
    sd_unet_config ucfg;
    int own_ucfg;
    cJSON *unet_config_json;     /* written to unet/config.json */
    sd_param_table table;
    size_t N;
    float *params, *grads;       /* backend memory [N] (host on the CPU backend) */
    float *m, *v, *ema;          /* host [N] */
    sd_segment *segs;
    int nseg;
    sd_ckpt_tensor *ctens;
    sd_unet *unet;
    sd_unet_train_state *st;
    sd_clip_text *te;            /* the frozen text encoder (NULL with cached embeddings and no validation) */
    sd_sched *sched;
    sd_sched_config sched_cfg;   /* the model's scheduler config with prediction_type applied */
    int vpred;
    sd_adamw opt;
    sd_lr_schedule lrs;
    sd_ema ema_state;
    float scaling;
    /* data */
    sd_latent_set data;
    int64_t n, bpe, upe, max_steps;
    int C, h, w;                 /* latent shape (from the first sample read) */
    int cached_text, text_dim, clip_skip;
    uint32_t *perm;
    int64_t perm_epoch;
    /* cursor and counters */
    int64_t epoch, batch, global_step, skipped_steps, samples_seen;
    double loss_acc;             /* train_loss of the current step */
    int grads_zero;              /* the gradients are all zero (the fused AdamW pass zeroed them) */
    replay rp;
    int have_replay;
    /* per micro-batch buffers */
    size_t per;
    int cap_B;
    float *x0, *noise, *pin, *noisy, *target, *pred, *dpred, *tf, *wsnr, *ctx, *tmp;
    int *ti;
    int32_t *ids;
    float *d_noisy, *d_ctx, *d_pred, *d_dpred;
    /* logs */
    char *logdir;
    sd_tb *tb;
    sd_jsonl *jl;
    sd_vae *vae;                 /* validation: loaded on first use */
    sd_clip_tokenizer *tok;
    int64_t last_val_step;
    /* timing */
    double t0;
    int64_t start_step;
    int64_t run_samples;         /* samples of this run (samples_seen includes the resumed run's) */
    double train_seconds;
};

static int is_cpu(const sd_backend *be) { return !strcmp(be->name, "cpu"); }

/* ---- small helpers ------------------------------------------------------------ */

static int read_int_at(const sd_st_file *f, const sd_st_tensor *t, int64_t i, int64_t *out) {
    const unsigned char *p = (const unsigned char *)sd_st_raw(f, t);
    switch (t->dtype) {
    case SD_BOOL: case SD_U8: *out = p[i]; return 0;
    case SD_I8: *out = (int8_t)p[i]; return 0;
    case SD_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); *out = v; return 0; }
    case SD_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); *out = v; return 0; }
    default: return sd_set_error("%s: tensor \"%s\" is %s, expected an integer dtype", f->path, t->name,
                                 sd_dtype_name(t->dtype));
    }
}

static int replay_f32(const replay *r, const sd_st_tensor *t, int64_t m, int b, size_t count, float *out) {
    int bits = sd_dtype_bits(t->dtype);
    size_t off = ((size_t)m * (size_t)r->B + (size_t)b) * count;
    return sd_convert_to_f32(t->dtype, (const unsigned char *)sd_st_raw(r->f, t) + off * (size_t)(bits / 8), out, count);
}

static int replay_int(const replay *r, const sd_st_tensor *t, int64_t m, int b, int64_t *out) {
    return read_int_at(r->f, t, m * r->B + b, out);
}

/* Check one replay tensor: [S, B, rest...] with the expected trailing dims. */
static int replay_check(replay *r, const sd_st_tensor *t, int nrest, const int64_t *rest, int is_int) {
    char sh[128];
    if (t->ndim != 2 + nrest) goto bad;
    if (t->shape[0] != r->S || t->shape[1] != r->B) goto bad;
    for (int i = 0; i < nrest; i++)
        if (t->shape[2 + i] != rest[i]) goto bad;
    if (is_int ? !(t->dtype == SD_BOOL || t->dtype == SD_U8 || t->dtype == SD_I8 || t->dtype == SD_I32 || t->dtype == SD_I64)
               : !(t->dtype == SD_F32 || t->dtype == SD_F16 || t->dtype == SD_BF16 || t->dtype == SD_F64))
        return sd_set_error("%s: tensor \"%s\" is %s, expected %s", r->f->path, t->name, sd_dtype_name(t->dtype),
                            is_int ? "an integer dtype" : "a float dtype");
    return 0;
bad:
    sd_shape_str(t->ndim, t->shape, sh, sizeof sh);
    {
        char want[128] = "";
        int k = snprintf(want, sizeof want, "[%lld, %d", (long long)r->S, r->B);
        for (int i = 0; i < nrest && k < (int)sizeof want - 16; i++) k += snprintf(want + k, sizeof want - k, ", %lld", (long long)rest[i]);
        snprintf(want + k, sizeof want - k, "]");
        return sd_set_error("%s: tensor \"%s\" has shape %s, expected %s ([micro-batches, batch, ...])", r->f->path,
                            t->name, sh, want);
    }
}

static int replay_open(sd_trainer *t, const char *path) {
    replay *r = &t->rp;
    if (sd_st_open(path, &r->f)) return -1;
    r->lat = sd_st_find(r->f, "latent_noise");
    r->noise = sd_st_find(r->f, "noise");
    r->t = sd_st_find(r->f, "timesteps");
    r->off = sd_st_find(r->f, "offset_noise");
    r->pert = sd_st_find(r->f, "perturbation_noise");
    r->flip = sd_st_find(r->f, "flip");
    r->cap = sd_st_find(r->f, "caption");
    r->idx = sd_st_find(r->f, "sample_index");
    const char *miss = !r->lat ? "latent_noise" : !r->noise ? "noise" : !r->t ? "timesteps" : NULL;
    if (miss) return sd_set_error("%s: no tensor \"%s\" (formats/replay.md)", path, miss);
    if (t->o.noise_offset != 0 && !r->off) return sd_set_error("%s: --noise_offset is set but there is no \"offset_noise\"", path);
    if (t->o.input_perturbation != 0 && !r->pert)
        return sd_set_error("%s: --input_perturbation is set but there is no \"perturbation_noise\"", path);
    if (r->noise->ndim != 5) return sd_set_error("%s: \"noise\" must be [micro-batches, batch, C, h, w]", path);
    r->S = r->noise->shape[0];
    r->B = (int)r->noise->shape[1];
    if (r->B < t->o.train_batch_size)
        return sd_set_error("%s: batch dimension %d is smaller than --train_batch_size %d", path, r->B,
                            t->o.train_batch_size);
    int64_t img[3] = {t->C, t->h, t->w}, ch[1] = {t->C};
    if (replay_check(r, r->noise, 3, img, 0) || replay_check(r, r->lat, 3, img, 0) || replay_check(r, r->t, 0, NULL, 1))
        return -1;
    if (r->off && replay_check(r, r->off, 1, ch, 0)) return -1;
    if (r->pert && replay_check(r, r->pert, 3, img, 0)) return -1;
    if (r->flip && replay_check(r, r->flip, 0, NULL, 1)) return -1;
    if (r->cap && replay_check(r, r->cap, 0, NULL, 1)) return -1;
    if (r->idx && replay_check(r, r->idx, 0, NULL, 1)) return -1;
    t->have_replay = 1;
    return 0;
}

/* ---- init ----------------------------------------------------------------------- */

void sd_unet_init_default(const sd_param_table *table, uint64_t seed, float *buf) {
    for (int i = 0; i < table->n; i++) {
        const sd_param *p = &table->p[i];
        float *dst = buf + p->offset;
        size_t len = strlen(p->name);
        int is_bias = len > 5 && !strcmp(p->name + len - 5, ".bias");
        int64_t fan_in = 0;
        if (p->ndim >= 2) {
            fan_in = 1;
            for (int d = 1; d < p->ndim; d++) fan_in *= p->shape[d];
        } else if (is_bias) { /* the bias of a Linear/Conv takes its weight's fan_in; a norm's bias is 0 */
            char wn[512];
            snprintf(wn, sizeof wn, "%.*s.weight", (int)(len - 5), p->name);
            const sd_param *w = sd_param_table_find(table, wn);
            if (w && w->ndim >= 2) {
                fan_in = 1;
                for (int d = 1; d < w->ndim; d++) fan_in *= w->shape[d];
            }
        }
        if (fan_in == 0) { /* GroupNorm / LayerNorm: weight 1, bias 0 */
            for (size_t k = 0; k < p->numel; k++) dst[k] = is_bias ? 0.0f : 1.0f;
            continue;
        }
        /* kaiming_uniform_(a=sqrt(5)): gain sqrt(2/6), bound gain*sqrt(3/fan_in) = 1/sqrt(fan_in); the bias
         * uses the same bound. uniform_(-b, b) = -b + 2b*u. */
        float bound = (float)(1.0 / sqrt((double)fan_in));
        sd_rng_uniform_at(seed, sd_train_stream(SD_DRAW_INIT, 0, 0) | (uint64_t)i, 0, dst, p->numel);
        for (size_t k = 0; k < p->numel; k++) dst[k] = -bound + (2.0f * bound) * dst[k];
    }
}

/* The manifest provenance checks: refuse latents another VAE / tokenizer /
 * text encoder / resolution made. */
static int provenance_mismatch(const sd_trainer *t, const char *fmt, ...) SD_PRINTF(2, 3);
static int provenance_mismatch(const sd_trainer *t, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (t->o.ignore_provenance) {
        if (!t->o.quiet) sd_warn("%s (--ignore_provenance: training anyway)", msg);
        return 0;
    }
    return sd_set_error("%s (pass --ignore_provenance to train anyway)", msg);
}

static int check_fp(const sd_trainer *t, const char *key, const char *what, const char *ours) {
    const char *theirs = sd_json_str(t->data.prov, key, NULL);
    if (!theirs) {
        if (!t->o.quiet) sd_note("%s: the latent set records no %s; not checked", t->o.data, key);
        return 0;
    }
    if (!strcmp(theirs, ours)) return 0;
    return provenance_mismatch(t, "%s: the latents were made with another %s (%.23s... vs the model's %.23s...)",
                               t->o.data, what, theirs, ours);
}

static int check_provenance(sd_trainer *t) {
    const cJSON *prov = t->data.prov;
    char hex[65], fp[80];
    if (!prov) {
        if (!t->o.quiet) sd_note("%s: no manifest provenance: the VAE, tokenizer and resolution are not checked", t->o.data);
        return 0;
    }
    /* resolution */
    int res = sd_json_int(prov, "resolution", 0);
    if (t->o.resolution && res && res != t->o.resolution)
        return provenance_mismatch(t, "%s: --resolution %d, but the latents were made at resolution %d", t->o.data,
                                   t->o.resolution, res);
    /* scaling factor */
    double sf = sd_json_num(prov, "scaling_factor", NAN);
    if (t->model->has[SD_VAE] && isfinite(sf) && fabs(sf - t->model->vae.scaling_factor) > 1e-6 * fabs(sf))
        if (provenance_mismatch(t, "%s: the latents' scaling_factor %g differs from the model VAE's %g", t->o.data, sf,
                                t->model->vae.scaling_factor))
            return -1;
    /* the VAE that made the moments */
    if (t->model->has[SD_VAE] && sd_json_str(prov, SD_META_VAE, NULL)) {
        sd_param_table vt;
        float *vb;
        if (sd_model_load_alloc(t->model, SD_VAE, &vt, &vb)) return -1;
        sd_param_fingerprint(&vt, vb, hex);
        free(vb);
        sd_model_release(t->model, SD_VAE);
        sd_param_table_free(&vt);
        snprintf(fp, sizeof fp, "sha256:%s", hex);
        if (check_fp(t, SD_META_VAE, "VAE", fp)) return -1;
    } else if (!t->model->has[SD_VAE] && !t->o.quiet) {
        sd_note("%s: the model has no VAE: the latents' VAE is not checked", t->o.pretrained_model_name_or_path);
    } else if (!t->o.quiet) {
        sd_note("%s: the latent set records no VAE fingerprint; not checked", t->o.data);
    }
    if (t->cached_text) {
        if (t->te) {
            if (sd_clip_text_fingerprint(t->te, hex)) return -1;
            snprintf(fp, sizeof fp, "sha256:%s", hex);
            if (check_fp(t, SD_META_TEXT_ENCODER, "text encoder", fp)) return -1;
        }
        t->clip_skip = sd_json_int(prov, "clip_skip", 0);
        if (t->clip_skip && !t->o.quiet)
            sd_note("%s: the cached text embeddings use clip_skip %d (the reference trainer uses 0); validation "
                    "images use it too", t->o.data, t->clip_skip);
    } else if (t->model->tokenizer_dir) {
        sd_clip_tokenizer *tok;
        if (sd_clip_tokenizer_load(t->model->tokenizer_dir, &tok)) return -1;
        snprintf(fp, sizeof fp, "sha256:%s", sd_clip_tokenizer_fingerprint(tok));
        sd_clip_tokenizer_free(tok);
        if (check_fp(t, SD_META_TOKENIZER, "tokenizer", fp)) return -1;
    }
    return 0;
}

static cJSON *opts_json(const sd_trainer *t) {
    const sd_train_opts *o = &t->o;
    cJSON *j = cJSON_CreateObject();
#define S(k, v) cJSON_AddItemToObject(j, k, (v) ? cJSON_CreateString(v) : cJSON_CreateNull())
#define N(k, v) cJSON_AddNumberToObject(j, k, (double)(v))
#define B(k, v) cJSON_AddBoolToObject(j, k, (v) != 0)
    S("pretrained_model_name_or_path", o->pretrained_model_name_or_path);
    S("variant", o->variant);
    S("train_data", o->data);
    S("init_unet_from_config", o->init_unet_from_config);
    N("resolution", o->resolution);
    N("train_batch_size", o->train_batch_size);
    N("gradient_accumulation_steps", o->gradient_accumulation_steps);
    N("max_train_steps", t->max_steps);
    N("num_train_epochs", o->num_train_epochs);
    N("learning_rate", o->learning_rate);
    B("scale_lr", o->scale_lr);
    S("lr_scheduler", o->lr_scheduler);
    N("lr_warmup_steps", o->lr_warmup_steps);
    N("lr_num_cycles", o->lr_num_cycles);
    N("lr_power", o->lr_power);
    N("adam_beta1", o->adam_beta1);
    N("adam_beta2", o->adam_beta2);
    N("adam_weight_decay", o->adam_weight_decay);
    N("adam_epsilon", o->adam_epsilon);
    N("max_grad_norm", o->max_grad_norm);
    B("use_ema", o->use_ema);
    B("foreach_ema", o->foreach_ema);
    N("noise_offset", o->noise_offset);
    N("input_perturbation", o->input_perturbation);
    if (o->snr_gamma > 0) N("snr_gamma", o->snr_gamma); else cJSON_AddNullToObject(j, "snr_gamma");
    S("prediction_type", t->sched_cfg.prediction_type);
    B("gradient_checkpointing", o->gradient_checkpointing);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)t->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    S("output_dir", o->output_dir);
    N("checkpointing_steps", o->checkpointing_steps);
    if (o->checkpoints_total_limit > 0) N("checkpoints_total_limit", o->checkpoints_total_limit);
    else cJSON_AddNullToObject(j, "checkpoints_total_limit");
    S("replay", o->replay);
    S("on_nan", o->on_nan == SD_ON_NAN_SKIP ? "skip" : "abort");
    cJSON *vp = cJSON_AddArrayToObject(j, "validation_prompts");
    for (int i = 0; i < o->n_validation_prompts; i++) cJSON_AddItemToArray(vp, cJSON_CreateString(o->validation_prompts[i]));
    N("validation_epochs", o->validation_epochs);
    N("validation_steps", o->validation_steps);
    if (o->cli) cJSON_AddItemToObject(j, "command_line", cJSON_Duplicate(o->cli, 1));
#undef S
#undef N
#undef B
    return j;
}

/* ---- buffers ---------------------------------------------------------------------- */

static void free_batch_buffers(sd_trainer *t) {
    free(t->x0); free(t->noise); free(t->pin); free(t->noisy); free(t->target); free(t->pred); free(t->dpred);
    free(t->tf); free(t->wsnr); free(t->ctx); free(t->tmp); free(t->ti); free(t->ids);
    if (t->be && !is_cpu(t->be)) {
        sd_backend_free(t->be, t->d_noisy); sd_backend_free(t->be, t->d_ctx);
        sd_backend_free(t->be, t->d_pred); sd_backend_free(t->be, t->d_dpred);
    }
    t->x0 = t->noise = t->pin = t->noisy = t->target = t->pred = t->dpred = t->tf = t->wsnr = t->ctx = t->tmp = NULL;
    t->d_noisy = t->d_ctx = t->d_pred = t->d_dpred = NULL;
    t->ti = NULL;
    t->ids = NULL;
}

static int alloc_batch_buffers(sd_trainer *t) {
    int B = t->o.train_batch_size;
    size_t per = t->per, nb = per * (size_t)B;
    int D = t->ucfg.cross_attention_dim[0];
    size_t nctx = (size_t)B * SD_TOKENS_LEN * (size_t)D;
    t->x0 = sd_xmalloc(sizeof(float) * nb);
    t->noise = sd_xmalloc(sizeof(float) * nb);
    t->pin = sd_xmalloc(sizeof(float) * nb);
    t->noisy = sd_xmalloc(sizeof(float) * nb);
    t->target = sd_xmalloc(sizeof(float) * nb);
    t->pred = sd_xmalloc(sizeof(float) * nb);
    t->dpred = sd_xmalloc(sizeof(float) * nb);
    t->tmp = sd_xmalloc(sizeof(float) * per);
    t->tf = sd_xmalloc(sizeof(float) * (size_t)B);
    t->wsnr = sd_xmalloc(sizeof(float) * (size_t)B);
    t->ti = sd_xmalloc(sizeof(int) * (size_t)B);
    t->ctx = sd_xmalloc(sizeof(float) * nctx);
    t->ids = sd_xmalloc(sizeof(int32_t) * (size_t)B * SD_TOKENS_LEN);
    if (is_cpu(t->be)) { /* device memory is host memory: no staging copies */
        t->d_noisy = t->noisy;
        t->d_ctx = t->ctx;
        t->d_pred = t->pred;
        t->d_dpred = t->dpred;
        return 0;
    }
    t->d_noisy = sd_backend_alloc_f32(t->be, nb);
    t->d_ctx = sd_backend_alloc_f32(t->be, nctx);
    t->d_pred = sd_backend_alloc_f32(t->be, nb);
    t->d_dpred = sd_backend_alloc_f32(t->be, nb);
    return t->d_noisy && t->d_ctx && t->d_pred && t->d_dpred ? 0 : -1;
}

/* ---- checkpoints ----------------------------------------------------------------- */

static cJSON *ema_config_json(const sd_trainer *t) {
    cJSON *c = cJSON_Duplicate(t->unet_config_json, 1);
    cJSON *e = sd_ema_state_json(&t->ema_state), *it;
    cJSON_ArrayForEach(it, e) {
        cJSON_DeleteItemFromObjectCaseSensitive(c, it->string);
        /* EMAModel.load_state_dict insists that min_decay is a Python float: write 0 as 0.0 */
        int is_float = !strcmp(it->string, "min_decay") || !strcmp(it->string, "decay") ||
                       !strcmp(it->string, "inv_gamma") || !strcmp(it->string, "power");
        if (is_float && cJSON_IsNumber(it) && it->valuedouble == floor(it->valuedouble) && fabs(it->valuedouble) < 1e15) {
            char num[32];
            snprintf(num, sizeof num, "%.1f", it->valuedouble);
            cJSON_AddItemToObject(c, it->string, cJSON_CreateRaw(num));
        } else {
            cJSON_AddItemToObject(c, it->string, cJSON_Duplicate(it, 1));
        }
    }
    cJSON_Delete(e);
    return c;
}

static cJSON *trainer_state_json(const sd_trainer *t) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddNumberToObject(s, "epoch", (double)t->epoch);
    cJSON *d = cJSON_AddObjectToObject(s, "data");
    cJSON_AddNumberToObject(d, "epoch", (double)t->epoch);
    cJSON_AddNumberToObject(d, "batch", (double)t->batch);
    cJSON_AddNumberToObject(d, "batches_per_epoch", (double)t->bpe);
    cJSON_AddNumberToObject(d, "samples", (double)t->n);
    cJSON_AddNumberToObject(d, "train_batch_size", t->o.train_batch_size);
    cJSON_AddNumberToObject(d, "gradient_accumulation_steps", t->o.gradient_accumulation_steps);
    cJSON_AddStringToObject(d, "order", "sd_epoch_order(seed, epoch): Philox stream 0x65706f6368000000 + epoch");
    cJSON_AddNumberToObject(d, "samples_seen", (double)t->samples_seen);
    cJSON *r = cJSON_AddObjectToObject(s, "rng");
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)t->seed);
    cJSON_AddStringToObject(r, "generator", "philox4x32-10");
    cJSON_AddStringToObject(r, "seed", seed);
    cJSON_AddStringToObject(r, "layout", "sdfit-1 (formats/replay.md): streams keyed by (kind, micro-batch, slot)");
    cJSON_AddNumberToObject(r, "next_micro_batch", (double)(t->epoch * t->bpe + t->batch));
    cJSON_AddItemToObject(s, "lr_scheduler", sd_lr_schedule_json(&t->lrs));
    cJSON_AddItemToObject(s, "optimizer", sd_adamw_state_json(&t->opt));
    if (t->o.use_ema) cJSON_AddItemToObject(s, "ema", sd_ema_state_json(&t->ema_state));
    cJSON_AddNumberToObject(s, "skipped_steps", (double)t->skipped_steps);
    cJSON_AddItemToObject(s, "options", opts_json(t));
    cJSON_AddStringToObject(s, "tool", "sdfit " SD_VERSION);
    return s;
}

int sd_trainer_save_checkpoint(sd_trainer *t) {
    sd_ckpt_buffer bufs[4];
    int nb = 0;
    bufs[nb++] = (sd_ckpt_buffer){.file = "unet/diffusion_pytorch_model.safetensors", .data = t->params, .numel = t->N,
                                  .tensors = t->ctens, .ntensors = t->table.n, .dtype = SD_F32};
    if (t->o.use_ema)
        bufs[nb++] = (sd_ckpt_buffer){.file = "unet_ema/diffusion_pytorch_model.safetensors", .data = t->ema,
                                      .numel = t->N, .tensors = t->ctens, .ntensors = t->table.n, .dtype = SD_F32};
    bufs[nb++] = (sd_ckpt_buffer){.file = "optimizer/exp_avg.safetensors", .data = t->m, .numel = t->N,
                                  .tensors = t->ctens, .ntensors = t->table.n, .dtype = SD_F32};
    bufs[nb++] = (sd_ckpt_buffer){.file = "optimizer/exp_avg_sq.safetensors", .data = t->v, .numel = t->N,
                                  .tensors = t->ctens, .ntensors = t->table.n, .dtype = SD_F32};
    char *ucfg = sd_json_pretty(t->unet_config_json);
    cJSON *ec = t->o.use_ema ? ema_config_json(t) : NULL;
    char *ecfg = ec ? sd_json_pretty(ec) : NULL;
    sd_ckpt_blob blobs[2];
    int nbl = 0;
    blobs[nbl++] = (sd_ckpt_blob){"unet/config.json", ucfg, strlen(ucfg)};
    if (ecfg) blobs[nbl++] = (sd_ckpt_blob){"unet_ema/config.json", ecfg, strlen(ecfg)};
    cJSON *state = trainer_state_json(t);
    sd_ckpt_contents c = {bufs, nb, blobs, nbl, state};
    char *saved = NULL;
    int rc = sd_ckpt_save(t->o.output_dir, t->global_step, &c, t->o.checkpoints_total_limit, &saved);
    if (rc) sd_error_prefix("checkpoint-%lld", (long long)t->global_step);
    else if (!t->o.quiet) sd_note("saved %s", saved);
    free(saved);
    free(ucfg);
    free(ecfg);
    cJSON_Delete(ec);
    cJSON_Delete(state);
    return rc;
}

static int64_t jint64(const cJSON *o, const char *k, int64_t def) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(it) ? (int64_t)it->valuedouble : def;
}

static int load_checkpoint(sd_trainer *t, const char *dir) {
    cJSON *s;
    if (sd_ckpt_load_state(dir, &s)) return -1;
    int rc = -1;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(s, "data"), *r = cJSON_GetObjectItemCaseSensitive(s, "rng");
    const char *seed = sd_json_str(r, "seed", NULL);
    if (!d || !seed) { sd_set_error("%s: trainer_state.json has no data cursor / rng (not an sdfit checkpoint?)", dir); goto out; }
    unsigned long long sv = strtoull(seed, NULL, 10);
    if (t->o.have_seed && sv != t->seed) {
        sd_set_error("%s: saved with --seed %llu; resuming with --seed %llu would not continue the same run", dir, sv,
                     (unsigned long long)t->seed);
        goto out;
    }
    t->seed = sv;
    if (jint64(d, "samples", -1) != t->n) {
        sd_set_error("%s: saved for a data set of %lld samples; %s has %lld", dir, (long long)jint64(d, "samples", -1),
                     t->o.data, (long long)t->n);
        goto out;
    }
    if (jint64(d, "train_batch_size", -1) != t->o.train_batch_size ||
        jint64(d, "gradient_accumulation_steps", -1) != t->o.gradient_accumulation_steps) {
        sd_set_error("%s: saved with --train_batch_size %lld --gradient_accumulation_steps %lld; resume with the same "
                     "values", dir, (long long)jint64(d, "train_batch_size", -1),
                     (long long)jint64(d, "gradient_accumulation_steps", -1));
        goto out;
    }
    char *ep = sd_path_join(dir, "unet_ema/diffusion_pytorch_model.safetensors");
    int ema_present = sd_is_file(ep);
    free(ep);
    if (t->o.use_ema && !ema_present) { sd_set_error("%s: --use_ema, but the checkpoint has no unet_ema/", dir); goto out; }
    sd_ckpt_buffer b = {.data = t->params, .numel = t->N, .tensors = t->ctens, .ntensors = t->table.n};
    b.file = "unet/diffusion_pytorch_model.safetensors";
    if (sd_ckpt_load_buffer(dir, &b)) goto out;
    if (t->o.use_ema) {
        b.file = "unet_ema/diffusion_pytorch_model.safetensors";
        b.data = t->ema;
        if (sd_ckpt_load_buffer(dir, &b)) goto out;
        if (sd_ema_load_state_json(&t->ema_state, cJSON_GetObjectItemCaseSensitive(s, "ema"))) goto out;
    }
    b.file = "optimizer/exp_avg.safetensors";
    b.data = t->m;
    if (sd_ckpt_load_buffer(dir, &b)) goto out;
    b.file = "optimizer/exp_avg_sq.safetensors";
    b.data = t->v;
    if (sd_ckpt_load_buffer(dir, &b)) goto out;
    if (sd_adamw_load_state_json(&t->opt, cJSON_GetObjectItemCaseSensitive(s, "optimizer"))) goto out;
    t->global_step = jint64(s, "step", 0);
    t->epoch = jint64(d, "epoch", 0);
    t->batch = jint64(d, "batch", 0);
    t->samples_seen = jint64(d, "samples_seen", 0);
    t->skipped_steps = jint64(s, "skipped_steps", 0);
    if (t->batch < 0 || t->batch > t->bpe || t->epoch < 0) { sd_set_error("%s: bad data cursor", dir); goto out; }
    rc = 0;
out:
    cJSON_Delete(s);
    return rc;
}

/* ---- create ---------------------------------------------------------------------- */

static int load_unet_config(const char *path, sd_unet_config *c, cJSON **json) {
    char *p = sd_is_dir(path) ? sd_path_join(path, "config.json") : sd_xstrdup(path);
    int rc = sd_json_load(p, json);
    if (!rc) rc = sd_unet_config_parse(*json, p, c);
    free(p);
    return rc;
}

int sd_trainer_create(const sd_train_opts *o, sd_trainer **out) {
    *out = NULL;
    sd_trainer *t = sd_xcalloc(1, sizeof *t);
    t->o = *o;
    t->perm_epoch = -1;
    t->last_val_step = -1;
    t->t0 = sd_now();
    if (!o->pretrained_model_name_or_path) { sd_set_error("--pretrained_model_name_or_path is required"); goto fail; }
    if (!o->data) { sd_set_error("no latent shard set given"); goto fail; }
    if (o->train_batch_size < 1 || o->gradient_accumulation_steps < 1) { sd_set_error("batch sizes must be >= 1"); goto fail; }
    if (o->have_seed) t->seed = o->seed;
    else if (getrandom(&t->seed, sizeof t->seed, 0) != (ssize_t)sizeof t->seed) t->seed = (uint64_t)(sd_now() * 1e9);
    if (o->threads > 0) omp_set_num_threads(o->threads);

    /* the model */
    sd_model_opts mo = {0};
    mo.variant = o->variant;
    if (sd_model_open(o->pretrained_model_name_or_path, &mo, &t->model)) goto fail;
    if (o->init_unet_from_config) {
        if (load_unet_config(o->init_unet_from_config, &t->ucfg, &t->unet_config_json)) goto fail;
        t->own_ucfg = 1;
    } else {
        if (!t->model->has[SD_UNET]) { sd_set_error("%s: the model has no UNet", o->pretrained_model_name_or_path); goto fail; }
        t->ucfg = t->model->unet; /* shallow: owned by the model */
        t->unet_config_json = sd_model_config_json(t->model, SD_UNET);
    }
    if (sd_unet_param_table(&t->ucfg, &t->table)) goto fail;
    t->N = t->table.total;

    /* the noise schedule (DDPMScheduler.from_pretrained(model, "scheduler")) */
    sd_sched_config_init(&t->sched_cfg);
    if (t->model->has_scheduler && sd_sched_config_from_json(t->model->scheduler.raw, &t->sched_cfg)) goto fail;
    if (o->prediction_type) {
        if (strcmp(o->prediction_type, "epsilon") && strcmp(o->prediction_type, "v_prediction")) {
            sd_set_error("--prediction_type: '%s' is not epsilon or v_prediction", o->prediction_type);
            goto fail;
        }
        snprintf(t->sched_cfg.prediction_type, sizeof t->sched_cfg.prediction_type, "%s", o->prediction_type);
    }
    if (!strcmp(t->sched_cfg.prediction_type, "v_prediction")) t->vpred = 1;
    else if (strcmp(t->sched_cfg.prediction_type, "epsilon")) {
        sd_set_error("Unknown prediction type %s (the trainer supports epsilon and v_prediction)", t->sched_cfg.prediction_type);
        goto fail;
    }
    if (sd_sched_new("ddpm", &t->sched_cfg, &t->sched)) goto fail;

    /* the data */
    if (sd_latent_set_open(o->data, &t->data)) goto fail;
    t->n = t->data.n;
    /* cached text embeddings: the manifest says so; a set without one is probed (its first sample) */
    t->cached_text = t->data.prov ? sd_json_bool(t->data.prov, "text_embeddings", 0)
                                  : sd_tar_index_member(&t->data.idx, 0, SD_EXT_TEXT) != NULL;
    {
        sd_latent_sample s0;
        if (sd_latent_set_read(&t->data, 0, t->cached_text, &s0)) goto fail;
        t->C = s0.c, t->h = s0.h, t->w = s0.w;
        t->text_dim = s0.hidden_dim;
        if (!t->cached_text && s0.hidden) t->cached_text = 1;
        sd_latent_sample_free(&s0);
    }
    t->per = (size_t)t->C * t->h * t->w;
    if (t->C != t->ucfg.in_channels || t->C != t->ucfg.out_channels) {
        sd_set_error("%s: latents have %d channels, the UNet takes %d and predicts %d", o->data, t->C, t->ucfg.in_channels,
                     t->ucfg.out_channels);
        goto fail;
    }
    if (t->cached_text && t->text_dim != t->ucfg.cross_attention_dim[0]) {
        sd_set_error("%s: cached text embeddings are %d wide, the UNet's cross_attention_dim is %d", o->data, t->text_dim,
                     t->ucfg.cross_attention_dim[0]);
        goto fail;
    }
    t->bpe = sd_batches_per_epoch(t->n, o->train_batch_size);
    t->upe = (t->bpe + o->gradient_accumulation_steps - 1) / o->gradient_accumulation_steps;
    t->max_steps = o->max_train_steps > 0 ? o->max_train_steps : o->num_train_epochs * t->upe;

    /* the backend, the frozen text encoder */
    t->be = sd_backend_cpu_create(o->threads);
    if (!t->be) goto fail;
    if (!t->cached_text || o->n_validation_prompts > 0 || sd_json_str(t->data.prov, SD_META_TEXT_ENCODER, NULL)) {
        if (!t->model->has[SD_TEXT_ENCODER]) {
            if (!t->cached_text) {
                sd_set_error("%s: the latents have no cached text embeddings and the model has no text encoder", o->data);
                goto fail;
            }
        } else if (sd_clip_text_load(t->model, t->be, &t->te)) goto fail;
        sd_model_release(t->model, SD_TEXT_ENCODER);
        if (t->te && !t->cached_text && t->te->hidden != t->ucfg.cross_attention_dim[0]) {
            sd_set_error("the text encoder is %d wide, the UNet's cross_attention_dim is %d", t->te->hidden,
                         t->ucfg.cross_attention_dim[0]);
            goto fail;
        }
    }
    if (check_provenance(t)) goto fail;
    if (t->te && t->cached_text && o->n_validation_prompts == 0) { sd_clip_text_free(t->te); t->te = NULL; }
    if (t->model->has[SD_VAE]) t->scaling = (float)t->model->vae.scaling_factor;
    else {
        double sf = sd_json_num(t->data.prov, "scaling_factor", NAN);
        if (!isfinite(sf)) { sd_set_error("no VAE and no scaling_factor in the latent set's manifest"); goto fail; }
        t->scaling = (float)sf;
    }

    /* parameters, gradients, optimizer state, EMA */
    t->params = sd_backend_alloc_f32(t->be, t->N);
    t->grads = sd_backend_alloc_f32(t->be, t->N);
    if (!t->params || !t->grads) goto fail;
    if (o->init_unet_from_config) {
        sd_unet_init_default(&t->table, t->seed, t->params);
    } else if (sd_model_load(t->model, SD_UNET, &t->table, t->params)) {
        goto fail;
    }
    sd_model_release(t->model, SD_UNET); /* the mapped file pages would count in the resident set */
    sd_backend_zero(t->be, t->grads, sizeof(float) * t->N);
    t->grads_zero = 1;
    t->m = malloc(sizeof(float) * t->N);
    t->v = malloc(sizeof(float) * t->N);
    if (!t->m || !t->v) { sd_set_error("out of memory for the optimizer state (%zu parameters)", t->N); goto fail; }
    sd_adamw_config ac = {o->adam_beta1, o->adam_beta2, o->adam_epsilon, o->adam_weight_decay};
    if (sd_adamw_init(&t->opt, &ac, t->N, t->m, t->v)) goto fail;
    sd_ema_init(&t->ema_state);
    t->ema_state.foreach = o->foreach_ema;
    if (o->use_ema) {
        t->ema = malloc(sizeof(float) * t->N);
        if (!t->ema) { sd_set_error("out of memory for the EMA weights"); goto fail; }
        memcpy(t->ema, t->params, sizeof(float) * t->N); /* EMAModel(unet.parameters()) of the same weights */
    }
    t->segs = sd_xmalloc(sizeof(sd_segment) * (size_t)t->table.n);
    t->ctens = sd_xmalloc(sizeof(sd_ckpt_tensor) * (size_t)t->table.n);
    t->nseg = t->table.n;
    for (int i = 0; i < t->table.n; i++) {
        const sd_param *p = &t->table.p[i];
        t->segs[i] = (sd_segment){p->offset, p->numel};
        t->ctens[i].name = p->name;
        t->ctens[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) t->ctens[i].shape[d] = p->shape[d];
        t->ctens[i].offset = p->offset;
    }

    /* the LR schedule (positions in optimizer steps; trainers.md §1.2) */
    double lr = o->learning_rate;
    if (o->scale_lr) lr *= (double)o->gradient_accumulation_steps * o->train_batch_size;
    sd_lr_kind kind;
    if (sd_lr_kind_parse(o->lr_scheduler, &kind)) goto fail;
    if (kind == SD_LR_PIECEWISE_CONSTANT) { sd_set_error("--lr_scheduler piecewise_constant is not exposed by the reference"); goto fail; }
    if (sd_lr_schedule_init(&t->lrs, kind, lr, o->lr_warmup_steps, t->max_steps)) goto fail;
    if (kind == SD_LR_COSINE_WITH_RESTARTS) t->lrs.num_cycles = o->lr_num_cycles;
    if (kind == SD_LR_POLYNOMIAL) t->lrs.power = o->lr_power;
    if (sd_lr_schedule_check(&t->lrs)) goto fail;

    /* the UNet */
    if (sd_unet_create(&t->ucfg, t->be, t->params, &t->unet)) goto fail;
    sd_unet_train_opts uo = {o->gradient_checkpointing};
    if (sd_unet_train_state_create(t->unet, &uo, &t->st)) goto fail;
    if (alloc_batch_buffers(t)) goto fail;

    /* resume */
    if (o->resume_from_checkpoint) {
        char *path = NULL;
        int found = sd_ckpt_resolve(o->output_dir, o->resume_from_checkpoint, &path);
        if (found < 0) goto fail;
        if (found == 0) {
            if (!o->quiet) sd_note("checkpoint '%s' does not exist; starting a new training run", o->resume_from_checkpoint);
        } else {
            int rc = load_checkpoint(t, path);
            if (rc) sd_error_prefix("resume");
            else if (!o->quiet)
                sd_note("resuming from %s (step %lld, epoch %lld, batch %lld)", path, (long long)t->global_step,
                        (long long)t->epoch, (long long)t->batch);
            free(path);
            if (rc) goto fail;
        }
    }
    if (o->replay && replay_open(t, o->replay)) goto fail;
    t->start_step = t->global_step;
    *out = t;
    return 0;
fail:
    sd_trainer_free(t);
    return -1;
}

void sd_trainer_free(sd_trainer *t) {
    if (!t) return;
    sd_tb_close(t->tb);
    sd_jsonl_close(t->jl);
    sd_vae_free(t->vae);
    sd_clip_tokenizer_free(t->tok);
    free(t->logdir);
    if (t->rp.f) sd_st_close(t->rp.f);
    free_batch_buffers(t);
    sd_unet_train_state_free(t->st);
    sd_unet_free(t->unet);
    if (t->be) {
        sd_backend_free(t->be, t->params);
        sd_backend_free(t->be, t->grads);
    }
    free(t->m); free(t->v); free(t->ema);
    free(t->segs); free(t->ctens); free(t->perm);
    sd_clip_text_free(t->te);
    sd_sched_free(t->sched);
    sd_sched_config_free(&t->sched_cfg);
    sd_latent_set_close(&t->data);
    sd_param_table_free(&t->table);
    cJSON_Delete(t->unet_config_json);
    if (t->own_ucfg) sd_unet_config_free(&t->ucfg);
    sd_model_close(t->model);
    sd_backend_destroy(t->be);
    free(t);
}

/* ---- the step ---------------------------------------------------------------------- */

static void ensure_perm(sd_trainer *t) {
    if (t->perm_epoch == t->epoch) return;
    if (!t->perm) t->perm = sd_xmalloc(sizeof(uint32_t) * (size_t)t->n);
    sd_epoch_order(t->seed, t->epoch, t->n, t->perm);
    t->perm_epoch = t->epoch;
}

/* Draw (or replay) a uint in [0, n) for (kind, micro-batch m, slot b). */
static int draw_below(sd_trainer *t, int kind, int64_t m, int b, uint32_t n, const sd_st_tensor *rt, const char *what,
                      uint32_t *out) {
    if (t->have_replay) {
        int64_t v;
        if (!rt) return sd_set_error("%s: no \"%s\" tensor, but micro-batch %lld needs one", t->o.replay, what, (long long)m);
        if (replay_int(&t->rp, rt, m, b, &v)) return -1;
        if (v < 0 || v >= (int64_t)n)
            return sd_set_error("%s: %s[%lld, %d] = %lld is not in [0, %u)", t->o.replay, what, (long long)m, b,
                                (long long)v, n);
        *out = (uint32_t)v;
        return 0;
    }
    sd_rng r;
    sd_rng_init(&r, t->seed, sd_train_stream(kind, (uint64_t)m, (uint32_t)b));
    *out = sd_rng_below(&r, n);
    return 0;
}

static int draw_normal(sd_trainer *t, int kind, int64_t m, int b, size_t count, const sd_st_tensor *rt, float *out) {
    if (t->have_replay) return replay_f32(&t->rp, rt, m, b, count, out);
    sd_rng_normal_at(t->seed, sd_train_stream(kind, (uint64_t)m, (uint32_t)b), 0, out, count);
    return 0;
}

int sd_trainer_micro_step(sd_trainer *t, double *loss_out) {
    const sd_train_opts *o = &t->o;
    if (t->batch >= t->bpe) { t->epoch++; t->batch = 0; }
    ensure_perm(t);
    const int64_t m = t->epoch * t->bpe + t->batch;
    const int64_t start = t->batch * o->train_batch_size;
    const int B = (int)(t->n - start < o->train_batch_size ? t->n - start : o->train_batch_size);
    const size_t per = t->per;
    const int D = t->ucfg.cross_attention_dim[0];
    const float off = (float)o->noise_offset, ip = (float)o->input_perturbation;
    if (t->have_replay && m >= t->rp.S)
        return sd_set_error("%s: covers %lld micro-batches; micro-batch %lld (step %lld) needs more", o->replay,
                            (long long)t->rp.S, (long long)m, (long long)t->global_step + 1);

    for (int b = 0; b < B; b++) {
        int64_t idx = t->perm[start + b];
        if (t->have_replay && t->rp.idx) {
            if (replay_int(&t->rp, t->rp.idx, m, b, &idx)) return -1;
            if (idx < 0 || idx >= t->n)
                return sd_set_error("%s: sample_index[%lld, %d] = %lld is not a sample (0..%lld)", o->replay, (long long)m,
                                    b, (long long)idx, (long long)t->n - 1);
        }
        sd_latent_sample s;
        if (sd_latent_set_read(&t->data, idx, t->cached_text, &s)) return -1;
        int rc = 0;
        if (s.c != t->C || s.h != t->h || s.w != t->w)
            rc = sd_set_error("%s: sample %s has latents [%d, %d, %d], the first sample [%d, %d, %d] (one size per set)",
                              o->data, s.key, s.c, s.h, s.w, t->C, t->h, t->w);
        /* orientation and caption */
        uint32_t flip = 0, cap = 0;
        if (!rc && s.mean_flipped) rc = draw_below(t, SD_DRAW_FLIP, m, b, 2, t->rp.flip, "flip", &flip);
        if (!rc && s.ncap > 1) rc = draw_below(t, SD_DRAW_CAPTION, m, b, (uint32_t)s.ncap, t->rp.cap, "caption", &cap);
        if (!rc && s.ncap < 1) rc = sd_set_error("%s: sample %s has no captions", o->data, s.key);
        /* x0 = (mean + exp(0.5 logvar) * e) * scaling_factor */
        float *x0 = t->x0 + (size_t)b * per, *nz = t->noise + (size_t)b * per, *pin = t->pin + (size_t)b * per;
        if (!rc) rc = draw_normal(t, SD_DRAW_LATENT, m, b, per, t->rp.lat, x0);
        if (!rc) {
            const float *mean = flip ? s.mean_flipped : s.mean, *lv = flip ? s.logvar_flipped : s.logvar;
            const float sf = t->scaling;
            for (size_t k = 0; k < per; k++) {
                float sd = expf(0.5f * lv[k]);
                float smp = mean[k] + sd * x0[k];
                x0[k] = smp * sf;
            }
        }
        /* noise (+ offset per channel) */
        if (!rc) rc = draw_normal(t, SD_DRAW_NOISE, m, b, per, t->rp.noise, nz);
        if (!rc && off != 0) {
            float e[64];
            if (t->C > 64) rc = sd_set_error("more than 64 latent channels");
            if (!rc) rc = draw_normal(t, SD_DRAW_OFFSET, m, b, (size_t)t->C, t->rp.off, e);
            size_t hw = (size_t)t->h * t->w;
            for (int c = 0; !rc && c < t->C; c++) {
                float a = off * e[c];
                for (size_t k = 0; k < hw; k++) nz[(size_t)c * hw + k] += a;
            }
        }
        /* the noise add_noise sees: with input_perturbation, noise + ip * e (the target keeps noise) */
        if (!rc && ip != 0) {
            rc = draw_normal(t, SD_DRAW_PERTURB, m, b, per, t->rp.pert, t->tmp);
            for (size_t k = 0; !rc && k < per; k++) pin[k] = nz[k] + ip * t->tmp[k];
        } else if (!rc) {
            memcpy(pin, nz, sizeof(float) * per);
        }
        uint32_t ts = 0;
        if (!rc) rc = draw_below(t, SD_DRAW_TIMESTEP, m, b, (uint32_t)t->sched->T, t->rp.t, "timesteps", &ts);
        t->ti[b] = (int)ts;
        t->tf[b] = (float)ts;
        /* conditioning: the cached hidden states of the chosen caption, or its token ids */
        if (!rc) {
            if (t->cached_text)
                memcpy(t->ctx + (size_t)b * SD_TOKENS_LEN * D, s.hidden + (size_t)cap * SD_TOKENS_LEN * D,
                       sizeof(float) * SD_TOKENS_LEN * (size_t)D);
            else
                memcpy(t->ids + (size_t)b * SD_TOKENS_LEN, s.ids + (size_t)cap * SD_TOKENS_LEN,
                       sizeof(int32_t) * SD_TOKENS_LEN);
        }
        sd_latent_sample_free(&s);
        if (rc) return -1;
    }

    if (sd_sched_add_noise(t->sched, t->x0, t->pin, t->ti, B, per, t->noisy)) return -1;
    if (t->vpred) {
        if (sd_sched_get_velocity(t->sched, t->x0, t->noise, t->ti, B, per, t->target)) return -1;
    } else {
        memcpy(t->target, t->noise, sizeof(float) * per * (size_t)B);
    }
    size_t nb = per * (size_t)B;
    if (!is_cpu(t->be)) {
        if (sd_backend_upload(t->be, t->d_noisy, t->noisy, sizeof(float) * nb)) return -1;
        if (t->cached_text &&
            sd_backend_upload(t->be, t->d_ctx, t->ctx, sizeof(float) * (size_t)B * SD_TOKENS_LEN * (size_t)D))
            return -1;
    }
    if (!t->cached_text && sd_clip_text_forward(t->te, t->ids, B, SD_TOKENS_LEN, 0, t->d_ctx)) return -1;
    if (sd_unet_train_forward(t->unet, t->st, t->d_noisy, t->tf, t->d_ctx, B, t->h, t->w, SD_TOKENS_LEN, t->d_pred))
        return -1;
    if (!is_cpu(t->be) && sd_backend_download(t->be, t->pred, t->d_pred, sizeof(float) * nb)) return -1;
    const float seed = 1.0f / (float)o->gradient_accumulation_steps;
    float loss;
    if (o->snr_gamma > 0) {
        for (int b = 0; b < B; b++)
            t->wsnr[b] = sd_min_snr_weight(sd_sched_snr(t->sched, t->ti[b]), (float)o->snr_gamma, t->vpred);
        loss = sd_mse_loss_weighted_seeded(t->pred, t->target, B, per, t->wsnr, seed, t->dpred);
    } else {
        loss = sd_mse_loss_seeded(t->pred, t->target, nb, seed, t->dpred);
    }
    if (!is_cpu(t->be) && sd_backend_upload(t->be, t->d_dpred, t->dpred, sizeof(float) * nb)) return -1;
    t->grads_zero = 0;
    if (sd_unet_backward(t->unet, t->st, t->d_dpred, t->grads, NULL)) return -1;
    t->batch++;
    t->samples_seen += B;
    if (loss_out) *loss_out = loss;
    t->loss_acc += (double)loss / o->gradient_accumulation_steps; /* train_loss += avg_loss.item() / GA */
    return B;
}

void sd_trainer_zero_grads(sd_trainer *t) {
    sd_backend_zero(t->be, t->grads, sizeof(float) * t->N);
    t->grads_zero = 1;
}

int sd_trainer_step(sd_trainer *t, sd_train_step_info *info) {
    const sd_train_opts *o = &t->o;
    double t0 = sd_now();
    sd_train_step_info in = {0};
    if (t->batch >= t->bpe) { t->epoch++; t->batch = 0; }
    if (!t->grads_zero) sd_trainer_zero_grads(t);
    t->loss_acc = 0;
    int bad_loss = 0;
    int64_t first_bad = -1;
    /* the accumulation group: GA micro-batches, cut at the end of the epoch (accelerate syncs there) */
    do {
        double l;
        int got = sd_trainer_micro_step(t, &l);
        if (got < 0) return -1;
        in.samples += got;
        in.micro_batches++;
        in.last_loss = l;
        if (!isfinite(l) && !bad_loss) {
            bad_loss = 1;
            first_bad = t->epoch * t->bpe + t->batch - 1;
            if (o->on_nan == SD_ON_NAN_ABORT)
                return sd_set_error("step %lld: the loss is %s (micro-batch %lld, epoch %lld); stopping (--on_nan abort); "
                                    "the last checkpoint is intact", (long long)t->global_step + 1, isnan(l) ? "nan" : "inf",
                                    (long long)first_bad, (long long)t->epoch);
        }
    } while (t->batch % o->gradient_accumulation_steps != 0 && t->batch < t->bpe);
    in.loss = t->loss_acc;

    /* clip_grad_norm_ over every UNet tensor (its total norm is also the NaN/Inf check of the gradients); the
     * multiply by the clip coefficient, AdamW and zero_grad then run as one pass over memory */
    float total = sd_grad_total_norm(t->grads, t->N, t->segs, t->nseg);
    float coef = o->max_grad_norm > 0 ? sd_clip_coef(total, o->max_grad_norm) : 1.0f;
    in.grad_norm = total;
    in.lr = sd_lr_at(&t->lrs, t->global_step);
    if (!isfinite(total) || bad_loss) {
        const char *what = bad_loss ? "the loss" : "the gradient norm";
        double val = bad_loss ? in.last_loss : total;
        if (o->on_nan == SD_ON_NAN_ABORT)
            return sd_set_error("step %lld: %s is %s; stopping (--on_nan abort); the last checkpoint is intact",
                                (long long)t->global_step + 1, what, isnan(val) ? "nan" : "inf");
        if (!o->quiet)
            sd_warn("step %lld: %s is %s; update skipped (--on_nan skip; %lld skipped so far)",
                    (long long)t->global_step + 1, what, isnan(val) ? "nan" : "inf", (long long)t->skipped_steps + 1);
        t->skipped_steps++;
        in.skipped = 1;
        sd_trainer_zero_grads(t);
    } else {
        sd_adamw_step_fused(&t->opt, t->params, t->grads, in.lr, coef, 1);
    }
    t->grads_zero = 1;
    /* EMAModel.step runs after every synced step (also after a skipped update, as with diffusers' fp16 skips) */
    if (o->use_ema) sd_ema_step(&t->ema_state, t->ema, t->params, t->N);
    t->global_step++;
    in.step = t->global_step;
    in.epoch = t->epoch;
    in.seconds = sd_now() - t0;
    t->train_seconds += in.seconds;
    t->run_samples += in.samples;
    if (info) *info = in;
    return 0;
}

/* ---- output ------------------------------------------------------------------------- */

/* Move the pipeline built in src into dst entry by entry: model_index.json
 * is removed first and renamed in last, so dst never looks like a complete
 * pipeline of mixed components; checkpoints and logs in dst are untouched. */
static int publish_pipeline(const char *src, const char *dst) {
    char **names;
    int n = sd_list_dir(src, &names), rc = 0;
    if (n < 0) return -1;
    char *mi = sd_path_join(dst, "model_index.json");
    if (sd_is_file(mi) && unlink(mi) != 0) rc = sd_set_error("%s: %s", mi, strerror(errno));
    for (int pass = 0; pass < 2 && !rc; pass++) {
        for (int i = 0; i < n && !rc; i++) {
            int is_mi = !strcmp(names[i], "model_index.json");
            if (is_mi != pass) continue;
            char *s = sd_path_join(src, names[i]), *d = sd_path_join(dst, names[i]);
            char *old = NULL;
            if (sd_is_dir(d) || sd_is_file(d)) {
                size_t len = strlen(dst) + strlen(names[i]) + 64;
                old = sd_xmalloc(len);
                snprintf(old, len, "%s/.%s.old.%ld", dst, names[i], (long)getpid());
                sd_rm_rf(old);
                if (rename(d, old) != 0) rc = sd_set_error("%s: rename: %s", d, strerror(errno));
            }
            if (!rc && rename(s, d) != 0) rc = sd_set_error("%s: rename to %s: %s", s, d, strerror(errno));
            if (old) sd_rm_rf(old);
            free(old); free(s); free(d);
        }
    }
    if (!rc) rc = sd_fsync_dir(dst);
    sd_free_strv(names, n);
    free(mi);
    return rc;
}

int sd_trainer_save_output(sd_trainer *t) {
    const char *out = t->o.output_dir;
    if (sd_mkdir_p(out)) return -1;
    char name[64];
    snprintf(name, sizeof name, ".pipeline.tmp.%ld", (long)getpid());
    char *tmp = sd_path_join(out, name);
    sd_rm_rf(tmp);
    sd_component_data parts[SD_NCOMP] = {{0}};
    parts[SD_UNET] = (sd_component_data){t->unet_config_json, &t->table, t->o.use_ema ? t->ema : t->params};
    sd_save_opts so = {.dtype = SD_F32};
    int rc = sd_pipeline_save(tmp, t->model, parts, &so);
    /* --prediction_type overrides the scheduler config in the saved pipeline (a v-prediction fine-tune must be
     * sampled as one); written as a new file, never through a hard link into the base model */
    if (!rc && t->o.prediction_type) {
        char *sp = sd_path_join(tmp, "scheduler/scheduler_config.json");
        cJSON *sj = NULL;
        if (sd_is_file(sp) && !sd_json_load(sp, &sj)) {
            cJSON_DeleteItemFromObjectCaseSensitive(sj, "prediction_type");
            cJSON_AddStringToObject(sj, "prediction_type", t->sched_cfg.prediction_type);
            char *txt = sd_json_pretty(sj);
            if (unlink(sp) != 0) rc = sd_set_error("%s: %s", sp, strerror(errno));
            if (!rc) rc = sd_write_file_atomic(sp, txt, strlen(txt));
            free(txt);
            cJSON_Delete(sj);
        }
        free(sp);
    }
    if (!rc) rc = publish_pipeline(tmp, out);
    sd_rm_rf(tmp);
    free(tmp);
    if (rc) sd_error_prefix("%s: writing the pipeline", out);
    return rc;
}

/* ---- logging and the loop ---------------------------------------------------------- */

static int open_logs(sd_trainer *t) {
    const char *ld = t->o.logging_dir ? t->o.logging_dir : "logs";
    t->logdir = ld[0] == '/' ? sd_xstrdup(ld) : sd_path_join(t->o.output_dir, ld);
    if (sd_mkdir_p(t->logdir)) return -1;
    char *jp = sd_path_join(t->logdir, "train_log.jsonl");
    int rc = sd_jsonl_open(&t->jl, jp, t->global_step > 0);
    free(jp);
    if (rc) return -1;
    if (t->o.tensorboard) {
        char *tp = sd_path_join(t->logdir, t->o.tracker_project_name ? t->o.tracker_project_name : "text2image-fine-tune");
        rc = sd_tb_open(&t->tb, tp);
        free(tp);
        if (rc) return -1;
    }
    return 0;
}

static int log_step(sd_trainer *t, const sd_train_step_info *in) {
    double ips = in->seconds > 0 ? in->samples / in->seconds : 0;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", (double)in->step);
    cJSON_AddNumberToObject(j, "epoch", (double)in->epoch);
    if (isfinite(in->loss)) cJSON_AddNumberToObject(j, "loss", in->loss); else cJSON_AddNullToObject(j, "loss");
    if (isfinite(in->last_loss)) cJSON_AddNumberToObject(j, "step_loss", in->last_loss);
    else cJSON_AddNullToObject(j, "step_loss");
    cJSON_AddNumberToObject(j, "lr", in->lr);
    if (isfinite(in->grad_norm)) cJSON_AddNumberToObject(j, "grad_norm", in->grad_norm);
    else cJSON_AddNullToObject(j, "grad_norm");
    cJSON_AddNumberToObject(j, "images_per_s", ips);
    cJSON_AddNumberToObject(j, "samples", in->samples);
    if (in->skipped) cJSON_AddBoolToObject(j, "skipped", 1);
    cJSON_AddNumberToObject(j, "time", in->seconds);
    int rc = sd_jsonl_write(t->jl, j);
    cJSON_Delete(j);
    if (!rc && t->tb) {
        rc = sd_tb_scalar(t->tb, "train_loss", in->step, in->loss) || sd_tb_scalar(t->tb, "lr", in->step, in->lr) ||
             sd_tb_scalar(t->tb, "grad_norm", in->step, in->grad_norm) ||
             sd_tb_scalar(t->tb, "images_per_s", in->step, ips);
    }
    return rc;
}

/* Validation images (log_validation of the reference): each prompt rendered
 * by the txt2img loop with the model's scheduler (prediction_type as trained),
 * validation_inference_steps steps, default guidance, seed --seed + prompt
 * index; with EMA the EMA weights are swapped in (ema.store / copy_to /
 * restore). PNGs go to LOGDIR/validation/step-N/, images to TensorBoard. */
static int run_validation(sd_trainer *t) {
    const sd_train_opts *o = &t->o;
    if (o->n_validation_prompts == 0 || t->last_val_step == t->global_step) return 0;
    t->last_val_step = t->global_step;
    if (!t->model->has[SD_VAE] || !t->te || !t->model->tokenizer_dir)
        return sd_set_error("validation: the model needs a VAE, a text encoder and a tokenizer to render images");
    if (!t->vae) {
        if (sd_vae_load(t->model, t->be, &t->vae)) return -1;
        sd_model_release(t->model, SD_VAE);
    }
    if (!t->tok && sd_clip_tokenizer_load(t->model->tokenizer_dir, &t->tok)) return -1;
    double t0 = sd_now();
    sd_pipeline p = {t->be, t->unet, t->vae, t->te, t->tok, &t->sched_cfg};
    char dir[64];
    snprintf(dir, sizeof dir, "validation/step-%06lld", (long long)t->global_step);
    char *vdir = sd_path_join(t->logdir, dir);
    int rc = sd_mkdir_p(vdir);
    if (o->use_ema) sd_unet_set_params(t->unet, t->ema);
    for (int i = 0; !rc && i < o->n_validation_prompts; i++) {
        sd_txt2img_opts to = {0};
        to.prompt = o->validation_prompts[i];
        to.steps = o->validation_inference_steps;
        to.guidance_scale = 7.5f;
        to.clip_skip = t->clip_skip;
        to.seed = t->seed + (uint64_t)i;
        sd_image img = {0};
        rc = sd_txt2img(&p, &to, 1, &img, NULL);
        if (!rc) {
            char name[32], *path;
            snprintf(name, sizeof name, "%02d.png", i);
            path = sd_path_join(vdir, name);
            sd_png_text txt[2] = {{"prompt", o->validation_prompts[i]}, {"software", "sdfit " SD_VERSION}};
            rc = sd_png_write(path, &img, txt, 2, SD_PNG_FAST);
            free(path);
        }
        if (!rc && t->tb) {
            uint8_t *png = NULL;
            size_t len = 0;
            char tag[32];
            snprintf(tag, sizeof tag, "validation/%d", i);
            rc = sd_png_encode_memory(&img, NULL, 0, SD_PNG_FAST, &png, &len);
            if (!rc) rc = sd_tb_image(t->tb, tag, t->global_step, png, len, img.h, img.w, img.c);
            if (!rc) rc = sd_tb_text(t->tb, tag, t->global_step, o->validation_prompts[i]);
            free(png);
        }
        sd_image_free(&img);
    }
    if (o->use_ema) sd_unet_set_params(t->unet, t->params);
    sd_unet_release(t->unet);
    if (rc) sd_error_prefix("validation at step %lld", (long long)t->global_step);
    else if (!o->quiet)
        sd_note("validation: %d image(s) at step %lld in %s (%.1f s)", o->n_validation_prompts,
                (long long)t->global_step, vdir, sd_now() - t0);
    free(vdir);
    return rc;
}

static void progress_line(sd_trainer *t, sd_progress *p, const sd_train_step_info *in, int force) {
    char extra[200];
    double ips = in->seconds > 0 ? in->samples / in->seconds : 0;
    snprintf(extra, sizeof extra, "step %lld  loss %.4f  lr %.3g  %.2f img/s", (long long)in->step, in->loss, in->lr,
             ips);
    sd_progress_update(p, in->step - t->start_step, extra);
    if (p->enabled || t->o.quiet) return;
    int every = t->o.progress_every > 0 ? t->o.progress_every : (int)(t->max_steps / 20 > 0 ? t->max_steps / 20 : 1);
    if (!force && in->step % every) return;
    double el = t->train_seconds, rate = (in->step - t->start_step) / (el > 0 ? el : 1);
    char eta[32];
    sd_format_duration(rate > 0 ? (t->max_steps - in->step) / rate : 0, eta, sizeof eta);
    fprintf(stderr, "%s: step %lld/%lld epoch %lld loss %.4f lr %.3g grad_norm %.3g %.2f img/s ETA %s\n", sd_progname(),
            (long long)in->step, (long long)t->max_steps, (long long)in->epoch, in->loss, in->lr, in->grad_norm, ips, eta);
}

int sd_trainer_run(sd_trainer *t) {
    const sd_train_opts *o = &t->o;
    if (sd_mkdir_p(o->output_dir)) return -1;
    if (open_logs(t)) return -1;
    if (!o->quiet) {
        sd_note("%lld samples, %lld batches of %d per epoch, %lld optimizer steps per epoch (GA %d); training to "
                "step %lld (seed %llu%s)", (long long)t->n, (long long)t->bpe, o->train_batch_size, (long long)t->upe,
                o->gradient_accumulation_steps, (long long)t->max_steps, (unsigned long long)t->seed,
                o->have_seed ? "" : ", random: pass --seed to repeat the run");
    }
    sd_progress prog;
    /* the bar counts this run's steps (a resumed run starts at its checkpoint), so rate and ETA are right */
    sd_progress_begin(&prog, "sdfit", "step", t->max_steps - t->global_step);
    sd_train_step_info in = {0};
    double last_loss = NAN;
    int rc = 0;
    /* a checkpoint taken at the end of an epoch resumes there: finish that epoch first */
    while (!rc && t->global_step < t->max_steps) {
        if (t->batch >= t->bpe) { t->epoch++; t->batch = 0; }
        rc = sd_trainer_step(t, &in);
        if (rc) break;
        last_loss = in.loss;
        rc = log_step(t, &in);
        progress_line(t, &prog, &in, 0);
        if (!rc && o->checkpointing_steps > 0 && t->global_step % o->checkpointing_steps == 0) {
            sd_progress_end(&prog);
            rc = sd_trainer_save_checkpoint(t);
        }
        /* every validation_steps steps, and at the end of the epoch (or of training inside it) when
         * epoch % validation_epochs == 0, as the reference does */
        int end_epoch = t->batch >= t->bpe, done = t->global_step >= t->max_steps;
        int val = (o->validation_steps > 0 && t->global_step % o->validation_steps == 0) ||
                  ((end_epoch || done) && o->validation_epochs > 0 && t->epoch % o->validation_epochs == 0);
        if (!rc && val && o->n_validation_prompts > 0) {
            sd_progress_end(&prog);
            rc = run_validation(t);
        }
    }
    sd_progress_end(&prog);
    if (rc) return -1;
    if (t->tb && sd_tb_flush(t->tb)) return -1;
    if (sd_jsonl_flush(t->jl)) return -1;
    if (sd_trainer_save_output(t)) return -1;
    if (!o->quiet) {
        double el = t->train_seconds;
        int64_t steps = t->global_step - t->start_step;
        fprintf(stderr,
                "%s: %lld steps (%lld this run, %lld samples seen, epoch %lld) in %.1f s, %.3f s/step, %.2f img/s; "
                "last train_loss %.4f; %lld skipped; %s written to %s\n",
                sd_progname(), (long long)t->global_step, (long long)steps, (long long)t->samples_seen,
                (long long)t->epoch, el, steps ? el / steps : 0.0, el > 0 ? (double)t->run_samples / el : 0.0, last_loss,
                (long long)t->skipped_steps, o->use_ema ? "pipeline (EMA weights)" : "pipeline", o->output_dir);
    }
    return 0;
}

int64_t sd_trainer_global_step(const sd_trainer *t) { return t->global_step; }
int64_t sd_trainer_max_steps(const sd_trainer *t) { return t->max_steps; }
const sd_param_table *sd_trainer_table(const sd_trainer *t) { return &t->table; }
const float *sd_trainer_params(const sd_trainer *t) { return t->params; }
const float *sd_trainer_grads(const sd_trainer *t) { return t->grads; }
const float *sd_trainer_ema(const sd_trainer *t) { return t->ema; }
