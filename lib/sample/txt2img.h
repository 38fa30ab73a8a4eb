/* txt2img.h — the text-to-image loop of diffusers' StableDiffusionPipeline,
 * over the sdtools models: used by sdsample and by sdfit's validation images.
 *
 *   ctx  = TE(tok(prompt)); uncond = TE(tok(negative or "")) when guidance > 1
 *   lat  = noise * init_noise_sigma              (noise: sd_txt2img_noise or opts.init_latents)
 *   for each step i: e = unet(scale_model_input(cat[lat, lat]), t_i, cat[uncond, ctx]);
 *                    e = e_u + g (e_c - e_u) (+ guidance_rescale); lat = step(e, i, lat)
 *   image = clamp(vae.decode(lat / scaling_factor) / 2 + 0.5, 0, 1) -> uint8 (round)
 *
 * Randomness comes from core/rng.h (Philox): image k of a call with seed S
 * starts from sd_txt2img_noise(S + k, ...), and the per-step noise of
 * ancestral/stochastic schedulers from stream SD_TXT2IMG_STEP_STREAM + step
 * of the same key, so an image depends only on (seed, options), not on batch
 * composition. Exact semantics: man/sdsample.1 and the implementation.
 *
 * Memory: a call allocates its own buffers (latents, model input/output,
 * text embeddings; UNet batch 2n with CFG) and decodes one image at a time.
 * Afterwards the UNet keeps its planned inference activations and the VAE its
 * decoder workspace for the next call; sd_unet_release / sd_vae_release free
 * them (e.g. before a training step continues). Text encoder, UNet and VAE
 * run on p->be; everything else is host code. The parts are only read (the
 * UNet's parameter buffer may be swapped with sd_unet_set_params between
 * calls, e.g. EMA weights for validation).
 */
#ifndef SD_SAMPLE_TXT2IMG_H
#define SD_SAMPLE_TXT2IMG_H

#include <stdint.h>

#include "backend/backend.h"
#include "io/image.h"
#include "models/clip_text.h"
#include "models/unet.h"
#include "models/vae.h"
#include "sample/scheduler.h"
#include "text/clip_tokenizer.h"

#define SD_TXT2IMG_LATENT_STREAM 0x6c6174656e740000ull /* "latent" */
#define SD_TXT2IMG_STEP_STREAM 0x7374657000000000ull   /* "step" + step index */

/* The loaded parts; not owned. */
typedef struct {
    sd_backend *be;
    sd_unet *unet;
    sd_vae *vae;
    sd_clip_text *te;
    const sd_clip_tokenizer *tok;
    const sd_sched_config *sched_cfg; /* the model's scheduler_config.json */
} sd_pipeline;

typedef struct {
    const char *prompt;
    const char *negative_prompt; /* NULL = "" */
    const char *scheduler;       /* sd_sched_new name; NULL = the model's scheduler class */
    int steps;                   /* num_inference_steps (50) */
    float guidance_scale;        /* 7.5; CFG when > 1 */
    float guidance_rescale;      /* 0 */
    float eta;                   /* DDIM eta (0) */
    int height, width;           /* pixels; 0 = unet sample_size * vae factor */
    int clip_skip;               /* diffusers clip_skip (0) */
    uint64_t seed;
    const float *init_latents;   /* optional host [n, C, h, w] starting noise (before init_noise_sigma) */
    /* optional per-step callback (progress), called after each model call
     * with step = 1..nsteps (nsteps = the scheduler's model calls: PNDM makes
     * steps + 1); return non-zero to abort (sd_txt2img then fails with
     * "interrupted"). */
    int (*on_step)(void *user, int step, int nsteps);
    void *user;
} sd_txt2img_opts;

/* Render n images of one prompt. images[n] receive RGB uint8 (caller frees
 * with sd_image_free); final_latents (optional, host [n, C, h, w]) receive the
 * latents before the VAE decode. Returns 0 or -1 with an error. */
int sd_txt2img(const sd_pipeline *p, const sd_txt2img_opts *o, int n, sd_image *images, float *final_latents);

/* The same for n images that may have different prompts and seeds, in one
 * UNet batch (2n with CFG): image k uses prompts[k] / negative_prompts[k]
 * (an array or an entry that is NULL means o->prompt / o->negative_prompt)
 * and seed seeds[k] (array NULL: o->seed + k). Distinct prompts are encoded
 * once each. This is diffusers' pipe(prompt=[...], negative_prompt=[...],
 * num_images_per_prompt=m) when the prompts come in runs of m. */
int sd_txt2img_batch(const sd_pipeline *p, const sd_txt2img_opts *o, int n, const char *const *prompts,
                     const char *const *negative_prompts, const uint64_t *seeds, sd_image *images,
                     float *final_latents);

/* The image size a call with these options renders: *height and *width (0 = the
 * default: unet sample_size times the VAE factor) are filled in and validated
 * (positive multiples of the VAE factor, at most SD_TXT2IMG_MAX_SIDE). */
#define SD_TXT2IMG_MAX_SIDE 8192
int sd_txt2img_size(const sd_pipeline *p, int *height, int *width);

/* The starting noise of one image: host [C, h, w] normals from seed
 * (sd_rng_normal_at(seed, SD_TXT2IMG_LATENT_STREAM, 0, ...)). */
void sd_txt2img_noise(uint64_t seed, int C, int h, int w, float *out);
/* The noise a stochastic scheduler adds at step i (0-based model call) of the
 * image with this seed: sd_rng_normal_at(seed, SD_TXT2IMG_STEP_STREAM + i, 0, ...). */
void sd_txt2img_step_noise(uint64_t seed, int step, int C, int h, int w, float *out);

#endif
