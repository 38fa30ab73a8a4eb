/* txt2img.c — StableDiffusionPipeline.__call__ (diffusers 0.39) over the
 * sdtools models. See txt2img.h for the contract; the reference is
 * diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion.py and
 * image_processor.py (sd_spec.md §5). Where this file does something that is
 * not obvious, the diffusers line it mirrors is quoted.
 *
 * Data movement: the scheduler, guidance and post-processing are host loops
 * over flat fp32 buffers (elementwise, negligible next to the UNet); the text
 * encoder, UNet and VAE run on the backend, so their inputs are uploaded and
 * outputs downloaded once per call/step (memcpy on the CPU backend).
 */
/* one rounding per torch op (post-processing, latents / scaling_factor) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "sample/txt2img.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "sample/guidance.h"

void sd_txt2img_noise(uint64_t seed, int C, int h, int w, float *out) {
    sd_rng_normal_at(seed, SD_TXT2IMG_LATENT_STREAM, 0, out, (size_t)C * h * w);
}

void sd_txt2img_step_noise(uint64_t seed, int step, int C, int h, int w, float *out) {
    sd_rng_normal_at(seed, SD_TXT2IMG_STEP_STREAM + (uint64_t)step, 0, out, (size_t)C * h * w);
}

int sd_txt2img_size(const sd_pipeline *p, int *height, int *width) {
    const sd_unet_config *uc = sd_unet_cfg(p->unet);
    int f = p->vae->factor;
    /* diffusers: height = height or self.unet.config.sample_size * self.vae_scale_factor */
    if (*height == 0) *height = uc->sample_size[0] * f;
    if (*width == 0) *width = uc->sample_size[1] * f;
    if (*height <= 0 || *width <= 0)
        return sd_set_error("txt2img: the UNet config has no sample_size: give the height and width");
    if (*height > SD_TXT2IMG_MAX_SIDE || *width > SD_TXT2IMG_MAX_SIDE)
        return sd_set_error("txt2img: size %dx%d is too large (at most %d pixels a side)", *width, *height,
                            SD_TXT2IMG_MAX_SIDE);
    if (*height % f || *width % f)
        return sd_set_error("txt2img: size %dx%d is not a multiple of the VAE's factor %d", *width, *height, f);
    return 0;
}

/* The parts must fit together (what diffusers would fail on in a matmul or
 * conv, said in words). */
static int check_pipeline(const sd_pipeline *p) {
    if (!p || !p->be || !p->unet || !p->vae || !p->te || !p->tok || !p->sched_cfg)
        return sd_set_error("txt2img: incomplete pipeline (backend, unet, vae, text encoder, tokenizer and "
                            "scheduler config are all needed)");
    const sd_unet_config *uc = sd_unet_cfg(p->unet);
    int xdim = uc->cross_attention_dim[0];
    for (int i = 1; i < uc->num_levels; i++)
        if (uc->cross_attention_dim[i] != xdim)
            return sd_set_error("txt2img: per-block cross_attention_dim is not supported");
    if (xdim != p->te->hidden)
        return sd_set_error("txt2img: the UNet's cross_attention_dim %d does not match the text encoder's "
                            "hidden size %d",
                            xdim, p->te->hidden);
    if (uc->in_channels != p->vae->latent_channels)
        return sd_set_error("txt2img: the UNet has in_channels %d, the VAE %d latent channels%s", uc->in_channels,
                            p->vae->latent_channels,
                            uc->in_channels == p->vae->latent_channels + 5 ? " (an inpainting UNet)" : "");
    if (uc->out_channels != p->vae->latent_channels)
        return sd_set_error("txt2img: the UNet has out_channels %d, the VAE %d latent channels", uc->out_channels,
                            p->vae->latent_channels);
    if (sd_clip_tokenizer_max_len(p->tok) > p->te->cfg.max_position_embeddings)
        return sd_set_error("txt2img: the tokenizer's model_max_length %d exceeds the text encoder's %d positions",
                            sd_clip_tokenizer_max_len(p->tok), p->te->cfg.max_position_embeddings);
    return 0;
}

/* diffusers' VaeImageProcessor.postprocess for output_type="pil":
 *   denormalize: (x * 0.5 + 0.5).clamp(0, 1)        (torch, fp32)
 *   numpy_to_pil: (x * 255).round().astype("uint8")  (numpy fp32; round half to even)
 * img is NCHW fp32 [3, H, W]; out is HWC uint8. */
static void postprocess(const float *img, int H, int W, sd_image *out) {
    sd_image_alloc(out, W, H, 3);
    size_t hw = (size_t)H * W;
    for (int c = 0; c < 3; c++) {
        const float *src = img + (size_t)c * hw;
        uint8_t *dst = out->data + c;
        for (size_t k = 0; k < hw; k++) {
            float v = src[k] * 0.5f;
            v = v + 0.5f;
            /* torch.clamp keeps NaN; numpy's NaN -> uint8 cast is undefined: we say 0 */
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            if (v != v) v = 0.0f;
            v = v * 255.0f;
            dst[3 * k] = (uint8_t)nearbyintf(v); /* default rounding mode: half to even, as numpy */
        }
    }
}

/* A text-encoder output row [L, D] per distinct string: row r of `rows`
 * holds text `strs[r]`. */
typedef struct {
    const char **strs;
    float *rows; /* host [n, L, D] */
    int n, cap;
} text_cache;

static int encode_text(const sd_pipeline *p, text_cache *tc, const char *s, int clip_skip, int L, int D,
                       int32_t *ids, float *dev_out, const float **row) {
    for (int r = 0; r < tc->n; r++)
        if (!strcmp(tc->strs[r], s)) {
            *row = tc->rows + (size_t)r * L * D;
            return 0;
        }
    /* tokenizer(prompt, padding="max_length", max_length=77, truncation=True) */
    if (sd_clip_tokenizer_encode(p->tok, s, ids, NULL)) return -1;
    if (sd_clip_text_forward(p->te, ids, 1, L, clip_skip, dev_out)) return -1;
    float *dst = tc->rows + (size_t)tc->n * L * D;
    if (sd_backend_download(p->be, dst, dev_out, sizeof(float) * L * D)) return -1;
    tc->strs[tc->n++] = s;
    *row = dst;
    return 0;
}

int sd_txt2img(const sd_pipeline *p, const sd_txt2img_opts *o, int n, sd_image *images, float *final_latents) {
    return sd_txt2img_batch(p, o, n, NULL, NULL, NULL, images, final_latents);
}

int sd_txt2img_batch(const sd_pipeline *p, const sd_txt2img_opts *o, int n, const char *const *prompts,
                     const char *const *negative_prompts, const uint64_t *seeds, sd_image *images,
                     float *final_latents) {
    if (check_pipeline(p)) return -1;
    if (!o || n < 1 || !images) return sd_set_error("txt2img: bad arguments");
    if (o->steps < 1) return sd_set_error("txt2img: num_inference_steps must be >= 1 (got %d)", o->steps);
    if (!(o->guidance_scale == o->guidance_scale) || !(o->guidance_rescale >= 0) || !(o->eta >= 0))
        return sd_set_error("txt2img: guidance_scale must be a number, guidance_rescale and eta >= 0");
    const sd_unet_config *uc = sd_unet_cfg(p->unet);
    if (o->clip_skip < 0 || o->clip_skip > p->te->cfg.num_hidden_layers)
        return sd_set_error("txt2img: clip_skip %d: the text encoder has %d layers", o->clip_skip,
                            p->te->cfg.num_hidden_layers);
    for (int k = 0; k < n; k++) {
        const char *pr = prompts && prompts[k] ? prompts[k] : o->prompt;
        if (!pr) return sd_set_error("txt2img: no prompt for image %d", k);
    }
    int H = o->height, W = o->width;
    if (sd_txt2img_size(p, &H, &W)) return -1;
    memset(images, 0, sizeof(sd_image) * (size_t)n);

    sd_backend *be = p->be;
    const int f = p->vae->factor, C = uc->in_channels, h = H / f, w = W / f;
    const int L = sd_clip_tokenizer_max_len(p->tok), D = p->te->hidden;
    /* do_classifier_free_guidance = guidance_scale > 1 */
    const int cfg = o->guidance_scale > 1.0f;
    const int B = cfg ? 2 * n : n; /* UNet batch */
    const size_t per = (size_t)C * h * w, N = per * (size_t)n;

    int rc = -1;
    sd_sched *s = NULL;
    int32_t *ids = sd_xmalloc(sizeof(int32_t) * (size_t)L);
    float *ctx = sd_xmalloc(sizeof(float) * (size_t)B * L * D); /* host [B, L, D] */
    text_cache tc = {0};
    tc.cap = 2 * n;
    tc.strs = sd_xcalloc((size_t)tc.cap, sizeof(char *));
    tc.rows = sd_xmalloc(sizeof(float) * (size_t)tc.cap * L * D);
    float *lat = sd_xmalloc(sizeof(float) * N);      /* latents [n, C, h, w] */
    float *xin = sd_xmalloc(sizeof(float) * N * (cfg ? 2 : 1)); /* model input [B, C, h, w] */
    float *eps = sd_xmalloc(sizeof(float) * N * (cfg ? 2 : 1)); /* model output [B, C, h, w] */
    float *noise = NULL;
    float *tvec = sd_xmalloc(sizeof(float) * (size_t)B);
    float *d_te = NULL, *d_ctx = NULL, *d_x = NULL, *d_out = NULL, *d_z = NULL, *d_img = NULL;
    float *img = NULL;

    /* ---- 1. prompts -> ctx = cat([negative_prompt_embeds, prompt_embeds]) */
    d_te = sd_backend_alloc_f32(be, (size_t)L * D);
    if (!d_te) goto out;
    for (int k = 0; k < n; k++) {
        const char *pr = prompts && prompts[k] ? prompts[k] : o->prompt;
        const float *row;
        /* prompt_embeds: clip_skip applies (hidden_states[-(clip_skip + 1)] + final_layer_norm) */
        if (encode_text(p, &tc, pr, o->clip_skip, L, D, ids, d_te, &row)) goto out;
        memcpy(ctx + (size_t)(cfg ? n + k : k) * L * D, row, sizeof(float) * L * D);
    }
    if (cfg) {
        /* negative_prompt_embeds = self.text_encoder(uncond_input.input_ids)[0]: diffusers does
         * NOT apply clip_skip to the unconditional embeddings. The cache is keyed by
         * the string, so a negative prompt equal to a prompt must not reuse that
         * prompt's row when clip_skip > 0: use a second cache then. */
        text_cache tn = tc, *t = &tc;
        if (o->clip_skip > 0) {
            tn.n = 0;
            tn.strs = tc.strs + n;
            tn.rows = tc.rows + (size_t)n * L * D;
            tn.cap = n;
            t = &tn;
        }
        for (int k = 0; k < n; k++) {
            const char *ng = negative_prompts && negative_prompts[k] ? negative_prompts[k] : o->negative_prompt;
            const float *row;
            if (encode_text(p, t, ng ? ng : "", 0, L, D, ids, d_te, &row)) goto out;
            memcpy(ctx + (size_t)k * L * D, row, sizeof(float) * L * D);
        }
    }
    sd_backend_free(be, d_te);
    d_te = NULL;
    d_ctx = sd_backend_alloc_f32(be, (size_t)B * L * D);
    if (!d_ctx || sd_backend_upload(be, d_ctx, ctx, sizeof(float) * (size_t)B * L * D)) goto out;

    /* ---- 2. scheduler */
    if (sd_sched_new(o->scheduler, p->sched_cfg, &s) || sd_sched_set_timesteps(s, o->steps)) goto out;
    /* extra_step_kwargs: eta only for schedulers whose step() takes it (DDIM) */
    if (s->kind == SD_SCHED_DDIM && sd_sched_set_eta(s, o->eta)) goto out;

    /* ---- 3. latents = noise * init_noise_sigma */
    if (o->init_latents) memcpy(lat, o->init_latents, sizeof(float) * N);
    else
        for (int k = 0; k < n; k++) sd_txt2img_noise(seeds ? seeds[k] : o->seed + (uint64_t)k, C, h, w, lat + per * k);
    sd_sched_scale_noise(s, lat, lat, N);

    /* ---- 4. the denoising loop */
    d_x = sd_backend_alloc_f32(be, (size_t)B * per);
    d_out = sd_backend_alloc_f32(be, (size_t)B * per);
    if (!d_x || !d_out) goto out;
    for (int i = 0; i < s->num_steps; i++) {
        /* latent_model_input = scheduler.scale_model_input(cat([latents] * 2), t) */
        if (sd_sched_scale_model_input(s, i, lat, xin, N)) goto out;
        if (cfg) memcpy(xin + N, xin, sizeof(float) * N);
        for (int b = 0; b < B; b++) tvec[b] = s->timesteps[i];
        if (sd_backend_upload(be, d_x, xin, sizeof(float) * (size_t)B * per)) goto out;
        if (sd_unet_forward(p->unet, d_x, tvec, d_ctx, B, h, w, L, d_out)) goto out;
        if (sd_backend_download(be, eps, d_out, sizeof(float) * (size_t)B * per)) goto out;
        if (cfg) {
            /* noise_pred_uncond, noise_pred_text = noise_pred.chunk(2) */
            sd_cfg_combine(eps, eps + N, o->guidance_scale, eps, N);
            if (o->guidance_rescale > 0.0f) sd_cfg_rescale(eps, eps + N, o->guidance_rescale, n, per);
        }
        const float *nz = NULL;
        if (sd_sched_needs_noise(s, i)) {
            if (!noise) noise = sd_xmalloc(sizeof(float) * N);
            for (int k = 0; k < n; k++)
                sd_txt2img_step_noise(seeds ? seeds[k] : o->seed + (uint64_t)k, i, C, h, w, noise + per * k);
            nz = noise;
        }
        if (sd_sched_step(s, i, eps, lat, N, nz)) goto out;
        if (o->on_step && o->on_step(o->user, i + 1, s->num_steps)) {
            sd_set_error("txt2img: interrupted");
            goto out;
        }
    }
    if (final_latents) memcpy(final_latents, lat, sizeof(float) * N);
    sd_backend_free(be, d_x);
    sd_backend_free(be, d_out);
    sd_backend_free(be, d_ctx);
    d_x = d_out = d_ctx = NULL;

    /* ---- 5. image = vae.decode(latents / scaling_factor), one image at a time
     * (the decoder's activations at 512 px are ~0.7 GB per image) */
    d_z = sd_backend_alloc_f32(be, per);
    d_img = sd_backend_alloc_f32(be, (size_t)3 * H * W);
    if (!d_z || !d_img) goto out;
    img = sd_xmalloc(sizeof(float) * 3 * (size_t)H * W);
    const float sf = p->vae->scaling_factor; /* x / 0.18215 in torch == x / 0.18215f (checked) */
    for (int k = 0; k < n; k++) {
        float *z = xin; /* reuse */
        for (size_t e = 0; e < per; e++) z[e] = lat[per * k + e] / sf;
        if (sd_backend_upload(be, d_z, z, sizeof(float) * per)) goto out;
        if (sd_vae_decode(p->vae, d_z, 1, h, w, d_img)) goto out;
        if (sd_backend_download(be, img, d_img, sizeof(float) * 3 * (size_t)H * W)) goto out;
        postprocess(img, H, W, &images[k]);
    }
    rc = 0;
out:
    if (rc)
        for (int k = 0; k < n; k++) sd_image_free(&images[k]);
    sd_backend_free(be, d_te);
    sd_backend_free(be, d_ctx);
    sd_backend_free(be, d_x);
    sd_backend_free(be, d_out);
    sd_backend_free(be, d_z);
    sd_backend_free(be, d_img);
    sd_sched_free(s);
    free(ids);
    free(ctx);
    free(tc.strs);
    free(tc.rows);
    free(lat);
    free(xin);
    free(eps);
    free(noise);
    free(tvec);
    free(img);
    return rc;
}
