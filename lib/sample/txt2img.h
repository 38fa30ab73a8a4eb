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
    /* optional per-step callback (progress): return non-zero to abort */
    int (*on_step)(void *user, int step, int nsteps);
    void *user;
} sd_txt2img_opts;

/* Render n images of one prompt. images[n] receive RGB uint8 (caller frees
 * with sd_image_free); final_latents (optional, host [n, C, h, w]) receive the
 * latents before the VAE decode. Returns 0 or -1 with an error. */
int sd_txt2img(const sd_pipeline *p, const sd_txt2img_opts *o, int n, sd_image *images, float *final_latents);

/* The starting noise of one image: host [C, h, w] normals from seed. */
void sd_txt2img_noise(uint64_t seed, int C, int h, int w, float *out);

#endif
