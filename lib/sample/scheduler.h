/* scheduler.h — diffusion noise schedules and samplers (diffusers 0.39 semantics).
 *
 * Pure math on flat float buffers: no model inside. The sampling loop is
 *
 *     sd_sched *s; sd_sched_new("euler", &cfg, &s); sd_sched_set_timesteps(s, 50);
 *     sd_sched_scale_noise(s, noise, x, n);                 // x = noise * init_noise_sigma
 *     for (int i = 0; i < s->num_steps; i++) {
 *         sd_sched_scale_model_input(s, i, x, xin, n);      // Euler: x / sqrt(sigma^2+1)
 *         model(xin, s->timesteps[i]) -> e                  // (+ classifier-free guidance)
 *         sd_sched_step(s, i, e, x, n, noise_i_or_NULL);    // x <- x_{prev}
 *     }
 *
 * which is StableDiffusionPipeline's loop (sd_spec.md §5). n counts every
 * element of the batch (B*C*H*W): all schedulers are elementwise with
 * per-step scalar coefficients, so the batch is just more elements.
 *
 * Numerics follow diffusers exactly where values are rounded: betas and
 * alphas_cumprod are fp32 as torch computes them (torch.linspace's fp32 FMA
 * formula, cumprod accumulated in double); timestep and sigma tables are
 * computed in double as numpy does and rounded to fp32; per-step coefficients
 * are fp32 scalar ops in torch's order, and every elementwise product/sum is
 * rounded separately (this file is compiled without FMA contraction). The
 * remaining differences come from torch's fp32 sqrt/log/exp, which (MKL on
 * x86) are not correctly rounded: about 1 ulp in a coefficient.
 *
 * Randomness (DDPM variance, DDIM eta > 0, Euler ancestral, SDE DPM++) comes
 * from the `noise` argument of sd_sched_step (n standard-normal floats for
 * that step; sd_sched_needs_noise says when) or, if NULL, from the sd_rng set
 * with sd_sched_set_rng. Feeding torch's noise reproduces diffusers exactly.
 */
#ifndef SD_SAMPLE_SCHEDULER_H
#define SD_SAMPLE_SCHEDULER_H

#include <stddef.h>

#include "core/rng.h"

struct cJSON;

typedef enum {
    SD_SCHED_DDPM,    /* DDPMScheduler */
    SD_SCHED_DDIM,    /* DDIMScheduler */
    SD_SCHED_PNDM,    /* PNDMScheduler (PLMS when skip_prk_steps, else PRK warm-up + PLMS) */
    SD_SCHED_EULER,   /* EulerDiscreteScheduler */
    SD_SCHED_EULER_A, /* EulerAncestralDiscreteScheduler */
    SD_SCHED_DPM,     /* DPMSolverMultistepScheduler */
} sd_sched_kind;

/* The fields of diffusers' scheduler_config.json. sd_sched_config_init sets
 * the constructor defaults shared by all six classes; fields whose default
 * differs per class are "unset" (-1 or "") and resolved by sd_sched_new:
 *   timestep_spacing: leading (DDPM, DDIM, PNDM), linspace (Euler, EulerA, DPM)
 *   clip_sample:      1 (DDPM, DDIM)        set_alpha_to_one: 1 (DDIM), 0 (PNDM)
 * A key absent from the JSON (or null) keeps its default, as from_config does.
 * Fields a class does not have are ignored by it (diffusers ignores them too). */
typedef struct {
    char class_name[64];         /* "_class_name" ("" if absent) */
    int num_train_timesteps;     /* 1000 */
    double beta_start;           /* 0.0001 */
    double beta_end;             /* 0.02 */
    char beta_schedule[24];      /* "linear" | "scaled_linear" | "squaredcos_cap_v2" */
    float *trained_betas;        /* owned (sd_sched_config_free); NULL = none */
    int n_trained_betas;
    char prediction_type[16];    /* "epsilon" | "v_prediction" | "sample" */
    char timestep_spacing[16];   /* "leading" | "linspace" | "trailing" | "" (class default) */
    int steps_offset;            /* 0 */
    int clip_sample;             /* -1 = class default */
    double clip_sample_range;    /* 1.0 */
    int set_alpha_to_one;        /* -1 = class default */
    int skip_prk_steps;          /* 0 (PNDM) */
    int rescale_betas_zero_snr;  /* 0 */
    int thresholding;            /* 0 (1 is rejected: unsuitable for latent diffusion) */
    char variance_type[24];      /* DDPM: "fixed_small" | "fixed_small_log" | "fixed_large" */
    /* Euler / DPM */
    int use_karras_sigmas;       /* 0 */
    double sigma_min, sigma_max; /* NAN = unset: the Karras range comes from the schedule */
    char final_sigmas_type[16];  /* "zero" | "sigma_min" */
    char interpolation_type[16]; /* Euler: "linear" (only) */
    char timestep_type[16];      /* Euler: "discrete" (only) */
    /* DPM */
    int solver_order;            /* 2 (1..3) */
    char algorithm_type[24];     /* "dpmsolver++" | "sde-dpmsolver++" */
    char solver_type[16];        /* "midpoint" | "heun" */
    int lower_order_final;       /* 1 */
    int euler_at_final;          /* 0 */
    double lambda_min_clipped;   /* -inf */
    /* accepted only when 0/false: */
    int use_exponential_sigmas, use_beta_sigmas, use_lu_lambdas, use_flow_sigmas;
} sd_sched_config;

void sd_sched_config_init(sd_sched_config *c);
/* init + every known key of a scheduler_config.json object. Keys of the wrong
 * JSON type are errors; unknown keys are ignored. */
int sd_sched_config_from_json(const struct cJSON *obj, sd_sched_config *c);
/* Read scheduler/scheduler_config.json (or any such file). */
int sd_sched_config_load(const char *path, sd_sched_config *c);
void sd_sched_config_free(sd_sched_config *c);

typedef struct sd_sched {
    sd_sched_kind kind;
    sd_sched_config cfg;    /* resolved copy: class defaults applied (owns trained_betas) */
    int T;                  /* num_train_timesteps */
    float *betas;           /* [T] fp32 */
    float *alphas;          /* [T] 1 - betas */
    float *alphas_cumprod;  /* [T] */
    float final_alpha_cumprod; /* DDIM/PNDM: 1 if set_alpha_to_one else alphas_cumprod[0] */

    /* set by sd_sched_set_timesteps */
    int num_inference_steps; /* as requested */
    int num_steps;           /* entries in timesteps[] = model calls: n; PNDM-PLMS n+1 (n>=2); PNDM-PRK n+9 */
    float *timesteps;        /* [num_steps] the t given to the model: integers except Euler/EulerA (fp32) */
    float *sigmas;           /* [num_steps+1] Euler, EulerA, DPM (last = final sigma); NULL otherwise */
    float init_noise_sigma;  /* multiply the initial N(0,1) latents by this */

    float eta;               /* DDIM only (pipeline default 0); sd_sched_set_eta */
    sd_rng *rng;             /* borrowed fallback noise source (sd_sched_set_rng), may be NULL */

    /* private sampling state */
    size_t n;                /* elements per step, fixed by the first step */
    int next_step;           /* stateful schedulers (PNDM, DPM): steps must come in order */
    int counter;             /* PNDM */
    int n_ets;
    float *ets[4];           /* PNDM: model outputs, oldest first */
    float *cur_sample;       /* PNDM */
    int has_cur_sample;
    float *cur_model_output; /* PNDM PRK */
    float *m[3];             /* DPM: converted model outputs, oldest first */
    int lower_order_nums;    /* DPM */
    float *scratch, *scratch2; /* [n] */
    float *noise_buf;        /* [n] rng fallback */
    int prk_len;             /* PNDM: 12 PRK steps before PLMS, 0 with skip_prk_steps */
} sd_sched;

/* name: "ddpm", "ddim", "pndm", "euler", "euler_a" (or "euler-a",
 * "euler_ancestral"), "dpm++2m" (forces dpmsolver++ order 2), "dpm++2m-sde"
 * (sde-dpmsolver++ order 2); "euler" and "dpm++2m[-sde]" take a "-karras"
 * suffix (use_karras_sigmas). '_' and '-' are interchangeable, case ignored.
 * diffusers class names ("EulerDiscreteScheduler", ...) are accepted too;
 * NULL or "" uses cfg->class_name. cfg may be NULL (pure class defaults). */
int sd_sched_new(const char *name, const sd_sched_config *cfg, sd_sched **out);
void sd_sched_free(sd_sched *s);
const char *sd_sched_kind_name(sd_sched_kind k); /* diffusers class name */

/* Build timesteps/sigmas for n inference steps (1 <= n <= T) and reset the
 * sampling state. Errors where diffusers would fail or build a timestep
 * outside [0, T): trailing spacing for some n (61, 103, ...: numpy's arange
 * gives n+1 values ending at -1), leading + steps_offset with n = T, PRK
 * with n < 4. Reads s->cfg's spacing/offset/Karras fields, so those may be
 * changed between calls; the noise schedule is fixed by sd_sched_new. */
int sd_sched_set_timesteps(sd_sched *s, int n);
int sd_sched_set_eta(sd_sched *s, float eta); /* DDIM; eta >= 0 */
void sd_sched_set_rng(sd_sched *s, sd_rng *rng);

/* 1 if step i consumes n standard-normal floats (from `noise` or the rng). */
int sd_sched_needs_noise(const sd_sched *s, int i);
/* x[k] = noise[k] * init_noise_sigma (x may equal noise). */
void sd_sched_scale_noise(const sd_sched *s, const float *noise, float *x, size_t n);
/* out = model input for step i (Euler/EulerA: x / sqrt(sigma_i^2 + 1); else a
 * copy). out may equal x. */
int sd_sched_scale_model_input(const sd_sched *s, int i, const float *x, float *out, size_t n);
/* One step: x <- x_{i+1} from the model output of step i (for CFG: the
 * guided output). noise: n floats if sd_sched_needs_noise(s, i) (NULL -> the
 * rng; neither -> error), else ignored. model_output must not overlap x.
 * n is fixed by the first step after set_timesteps. PNDM and DPM keep
 * history: their steps must be called for i = 0, 1, ... in order. */
int sd_sched_step(sd_sched *s, int i, const float *model_output, float *x, size_t n, const float *noise);

/* ---- training side (train_text_to_image.py; uses alphas_cumprod) ---------
 * Batch of `batch` items of per_item elements; t[b] in [0, T). */
/* out = sqrt(ac[t]) x0 + sqrt(1 - ac[t]) noise (out may alias x0 or noise) */
int sd_sched_add_noise(const sd_sched *s, const float *x0, const float *noise, const int *t, int batch,
                       size_t per_item, float *out);
/* out = sqrt(ac[t]) noise - sqrt(1 - ac[t]) x0 (v-prediction target) */
int sd_sched_get_velocity(const sd_sched *s, const float *x0, const float *noise, const int *t, int batch,
                          size_t per_item, float *out);
/* compute_snr: (sqrt(ac[t]) / sqrt(1 - ac[t]))^2 in fp32 (t clamped to [0, T)). */
float sd_sched_snr(const sd_sched *s, int t);
/* Min-SNR-gamma loss weight: min(snr, gamma) / snr (epsilon) or
 * min(snr, gamma) / (snr + 1) (v_prediction), as train_text_to_image.py. */
float sd_min_snr_weight(float snr, float gamma, int v_prediction);

#endif
