/* trainer.h — full UNet fine-tuning on latent shards: the training loop of
 * diffusers' examples/text_to_image/train_text_to_image.py (trainers.md §1.2),
 * on cached VAE moments (sdencode's output), with exact resume.
 *
 * One optimizer step (global_step k -> k+1):
 *   grads = 0
 *   for each micro-batch of the accumulation group (GA micro-batches; the last
 *   group of an epoch may be shorter, as accelerate syncs at the end of the
 *   dataloader):
 *       per sample b: orientation (flipped moments with p = 0.5 when the set
 *           has them), caption row (one of the sample's captions),
 *           x0 = (mean + exp(0.5 logvar) * e_lat) * scaling_factor
 *       noise = e_noise (+ noise_offset * e_off[b, c] broadcast over h, w)
 *       t ~ U{0 .. T-1}
 *       noisy = add_noise(x0, noise + input_perturbation * e_pert (if set), t)
 *       target = noise (epsilon) | get_velocity(x0, noise, t) (v_prediction)
 *       ctx = cached hidden states of the caption | frozen text encoder(ids)
 *       pred = unet(noisy, t, ctx); loss = mse (or min-SNR weighted)
 *       grads += d(loss / GA)/d params                 (accelerator.backward)
 *   total = clip_grad_norm_(grads, max_grad_norm)   (torch semantics, all tensors)
 *   non-finite loss or total -> --on_nan: skip the update (counted) or abort
 *   AdamW(lr = schedule(k)); EMA step; k += 1
 *   every checkpointing_steps: checkpoint-k (atomic)
 * Float32 arithmetic in the reference's op order (see trainer.c).
 *
 * Randomness: every draw is a Philox stream keyed by (seed, kind, micro-batch
 * index, sample slot) — no running counter — so a resumed run draws exactly
 * what the uninterrupted run drew. Layout: formats/replay.md §1. A replay file
 * (--replay, formats/replay.md §2) supplies the same draws from a safetensors
 * file instead, for step-by-step comparison with the reference trainer.
 *
 * Data: sd_latent_set (lib/train/data.h), epoch order sd_epoch_order(seed,
 * epoch), batches of train_batch_size consecutive entries, the last one of an
 * epoch short (drop_last=False). Micro-batch index m = epoch * bpe + b (bpe =
 * batches per epoch, b = batch within the epoch) — the data cursor.
 *
 * Memory: parameters, gradients, AdamW moments and the EMA shadow are flat
 * buffers laid out by the UNet's parameter table (params.h). The UNet runs on
 * an sd_backend; the per-step host work (latent sampling, noise, loss,
 * optimizer) runs on host buffers (on the CPU backend device == host).
 */
#ifndef SD_TRAIN_TRAINER_H
#define SD_TRAIN_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "models/params.h"

typedef enum { SD_ON_NAN_ABORT = 0, SD_ON_NAN_SKIP = 1 } sd_on_nan;

#define SD_TRAIN_MAX_PROMPTS 64

typedef struct {
    /* inputs */
    const char *pretrained_model_name_or_path; /* required: base pipeline (diffusers dir or single file) */
    const char *variant;                       /* read NAME.VARIANT.safetensors weights */
    const char *data;                          /* latent shard set (dir, manifest, globs, {a..b}) */
    const char *init_unet_from_config;         /* random UNet from this config.json (or dir with one) */
    int resolution;                            /* 0: take the shards'; else must match them */
    int ignore_provenance;                     /* mismatched VAE/tokenizer/text encoder: warn, not refuse */
    /* steps */
    int train_batch_size;                      /* 16 */
    int gradient_accumulation_steps;           /* 1 */
    int64_t max_train_steps;                   /* 0: num_train_epochs * updates per epoch */
    int64_t num_train_epochs;                  /* 100 */
    /* optimizer and schedule */
    double learning_rate;                      /* 1e-4 */
    int scale_lr;                              /* lr *= GA * batch */
    const char *lr_scheduler;                  /* "constant" */
    int64_t lr_warmup_steps;                   /* 500 */
    double lr_num_cycles;                      /* cosine_with_restarts: 1 */
    double lr_power;                           /* polynomial: 1 */
    double adam_beta1, adam_beta2, adam_weight_decay, adam_epsilon; /* 0.9, 0.999, 1e-2, 1e-8 */
    double max_grad_norm;                      /* 1.0; <= 0: no clipping (norm still computed) */
    int use_ema, foreach_ema;
    /* objective */
    double noise_offset, input_perturbation;   /* 0 */
    double snr_gamma;                          /* 0: plain MSE */
    const char *prediction_type;               /* NULL: the scheduler config's */
    int gradient_checkpointing;
    int have_seed;
    uint64_t seed;                             /* Philox key (random when !have_seed; recorded) */
    /* output */
    const char *output_dir;                    /* "sd-model-finetuned" */
    int64_t checkpointing_steps;               /* 500 */
    int checkpoints_total_limit;               /* 0: no limit */
    const char *resume_from_checkpoint;        /* PATH | checkpoint-N | "latest" | NULL */
    const char *logging_dir;                   /* "logs", relative to output_dir */
    int tensorboard;                           /* write TensorBoard events (--report_to tensorboard) */
    const char *tracker_project_name;          /* events go to LOGDIR/NAME/ ("text2image-fine-tune", as accelerate) */
    /* validation */
    const char *validation_prompts[SD_TRAIN_MAX_PROMPTS];
    int n_validation_prompts;
    int64_t validation_epochs;                 /* 5 */
    int64_t validation_steps;                  /* 0: off */
    int validation_inference_steps;            /* 20 */
    /* replay and failures */
    const char *replay;
    sd_on_nan on_nan;                          /* abort */
    int threads;                               /* 0: all */
    int quiet;
    int progress_every;                        /* non-tty progress line every N steps (0: auto) */
    const cJSON *cli;                          /* the command line, stored in checkpoints (may be NULL) */
} sd_train_opts;

/* diffusers' defaults (above). */
void sd_train_opts_init(sd_train_opts *o);

typedef struct sd_trainer sd_trainer;

/* What one optimizer step did. */
typedef struct {
    int64_t step;          /* global_step after it */
    int64_t epoch;         /* epoch of its last micro-batch */
    double loss;           /* diffusers' train_loss: sum over micro-batches of loss / GA */
    double last_loss;      /* loss of the last micro-batch (step_loss) */
    double lr;             /* lr used by the update */
    double grad_norm;      /* total norm before clipping */
    int samples;           /* samples in the step */
    int micro_batches;
    int skipped;           /* 1: non-finite, update skipped (--on_nan skip) */
    double seconds;
} sd_train_step_info;

/* Load the model and data, check provenance, set up optimizer/EMA/schedule,
 * and resume from a checkpoint when asked. Nothing is written yet. */
int sd_trainer_create(const sd_train_opts *o, sd_trainer **out);
void sd_trainer_free(sd_trainer *t);

/* Train until max_train_steps: steps, checkpoints, logs, validation, then the
 * output pipeline in output_dir (EMA weights in unet/ with --use_ema) and a
 * summary on stderr. Returns 0, or -1 with an error (an --on_nan abort, a
 * failed checkpoint write, ...); nothing written by a failing call replaces a
 * good checkpoint. */
int sd_trainer_run(sd_trainer *t);

/* ---- lower level (tests) ---------------------------------------------------- */

/* One micro-batch at the data cursor: forward, loss, backward ACCUMULATED
 * into the gradients with seed 1/GA; advances the cursor. *loss gets the
 * micro-batch loss (before / GA). Does not zero the gradients. */
int sd_trainer_micro_step(sd_trainer *t, double *loss);
/* One optimizer step (zero grads, the group's micro-batches, clip, update,
 * EMA, schedule). info may be NULL. An --on_nan abort returns -1. */
int sd_trainer_step(sd_trainer *t, sd_train_step_info *info);
/* Write OUTPUT_DIR/checkpoint-<global_step> now (atomic; total-limit pruning). */
int sd_trainer_save_checkpoint(sd_trainer *t);
/* Write the diffusers pipeline into output_dir now. */
int sd_trainer_save_output(sd_trainer *t);

int64_t sd_trainer_global_step(const sd_trainer *t);
int64_t sd_trainer_max_steps(const sd_trainer *t);
const sd_param_table *sd_trainer_table(const sd_trainer *t);
/* Host views (CPU backend): parameters, gradients, EMA shadow (NULL without EMA). */
const float *sd_trainer_params(const sd_trainer *t);
const float *sd_trainer_grads(const sd_trainer *t);
const float *sd_trainer_ema(const sd_trainer *t);
/* Set all gradients to zero. */
void sd_trainer_zero_grads(sd_trainer *t);

/* The Philox stream of one random draw (formats/replay.md §1). */
enum {
    SD_DRAW_LATENT = 1,  /* e_lat: C*h*w normals (latent sample from the moments) */
    SD_DRAW_NOISE = 2,   /* e_noise: C*h*w normals */
    SD_DRAW_OFFSET = 3,  /* e_off: C normals (noise_offset) */
    SD_DRAW_PERTURB = 4, /* e_pert: C*h*w normals (input_perturbation) */
    SD_DRAW_TIMESTEP = 5,/* sd_rng_below(T) */
    SD_DRAW_FLIP = 6,    /* sd_rng_below(2): 1 = flipped moments */
    SD_DRAW_CAPTION = 7, /* sd_rng_below(ncap) */
    SD_DRAW_INIT = 8,    /* --init_unet_from_config: per-parameter-tensor stream */
};
static inline uint64_t sd_train_stream(int kind, uint64_t micro_batch, uint32_t slot) {
    return ((uint64_t)kind << 56) | ((micro_batch & 0xFFFFFFFFFFull) << 16) | (slot & 0xFFFFu);
}

/* Fill buf (laid out by table) with torch's default initialisation, which is
 * what diffusers' UNet2DConditionModel(**config) does: Linear/Conv weights
 * kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), their
 * biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), GroupNorm/LayerNorm weight 1,
 * bias 0. Deterministic: tensor i draws from stream SD_DRAW_INIT << 56 | i. */
void sd_unet_init_default(const sd_param_table *table, uint64_t seed, float *buf);

#endif
