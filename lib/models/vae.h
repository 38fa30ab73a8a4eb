/* vae.h — AutoencoderKL (diffusers autoencoder_kl.py / vae.py): the encoder
 * (image -> latent moments) and the decoder (latent -> image), inference only.
 *
 * Numerics are diffusers' fp32 forward (sd_spec §2):
 *   encode: conv_in; DownEncoderBlock2D × levels (layers_per_block resnets,
 *           then F.pad(0,1,0,1) + k3 s2 conv on all but the last level);
 *           mid block (resnet, single-head attention with its own
 *           GroupNorm, resnet); GroupNorm + SiLU; conv_out; quant_conv
 *           -> moments [B, 2·latent, H/f, W/f]: channels [0, latent) are the
 *           mean, [latent, 2·latent) the (unclamped) logvar.
 *   decode: post_quant_conv; conv_in; mid block; UpDecoderBlock2D × levels
 *           (layers_per_block + 1 resnets, then nearest 2x + k3 conv on all
 *           but the last); GroupNorm + SiLU; conv_out -> image [B, out, h·f, w·f]
 *           (values around [-1, 1]; not clamped).
 * f = v->factor = 2^(levels - 1) (8 for SD). All GroupNorms use eps 1e-6.
 * The scaling factor is NOT applied here: UNet latents are
 * (z - shift_factor) · scaling_factor and decode takes
 * latents / scaling_factor + shift_factor (shift 0 for SD1/SD2); callers do it.
 *
 * Memory. Weights are one backend buffer in the canonical parameter-table
 * layout (params.h). Activations live in three backend "slots" that the
 * blocks use in rotation (a resnet needs its input, the normalized input and
 * conv1's output at once; see vae.c), plus the GroupNorm statistics. Slot
 * sizes come from a dry run of the same block code for the requested
 * (B, H, W), so they are exact; the slots are allocated once, on the first
 * call (or by sd_vae_reserve), and grow only when a larger shape comes. No
 * allocation happens inside a forward after that. The CPU backend's own
 * scratch (im2col / Winograd tiles / attention blocks) is separate and also
 * grows once. SD VAE at 512x512, batch 1: decoder 671 MB of slots, encoder
 * 403 MB (sd_vae_workspace_bytes gives exact figures).
 *
 * Threading. Every op runs on the backend's threads (OpenMP on the CPU). An
 * sd_vae is used by one thread at a time, like its backend.
 */
#ifndef SD_MODELS_VAE_H
#define SD_MODELS_VAE_H

#include <stddef.h>

#include "backend/backend.h"
#include "models/config.h"
#include "models/modeldir.h"
#include "models/params.h"

typedef struct sd_vae_priv sd_vae_priv;

typedef struct {
    sd_vae_config cfg;      /* copy of the model's config (cfg.raw is NULL: not kept) */
    sd_backend *be;         /* not owned */
    sd_param_table table;   /* canonical names, shapes, offsets */
    float *params;          /* backend memory [table.total] */
    int factor;             /* image pixels per latent pixel: 2^(levels-1) */
    int latent_channels;
    float scaling_factor;   /* cfg.scaling_factor (0.18215 for SD1/SD2) */
    float shift_factor;     /* cfg.shift_factor, 0 when the config has none */
    sd_vae_priv *priv;
} sd_vae;

/* Load the VAE of an opened model (sd_model_open) onto backend be. On the
 * CPU backend the weights are converted straight into the backend buffer (no
 * second copy). Errors: model without a VAE, load errors (modeldir.h). */
int sd_vae_load(sd_model *m, sd_backend *be, sd_vae **out);
/* Build from a config and a HOST buffer of table.total floats in the layout
 * of sd_vae_param_table(cfg) (copied; the caller keeps params). */
int sd_vae_create(const sd_vae_config *cfg, const float *params, sd_backend *be, sd_vae **out);
void sd_vae_free(sd_vae *v);

/* sd_param_fingerprint of the weights (all of the VAE: encoder, quant convs,
 * decoder); what sdencode records in latent manifests. Computed on first use
 * and cached. */
int sd_vae_fingerprint(sd_vae *v, char hex[65]);

/* img [B, in_channels, H, W] -> moments [B, 2·latent, H/f, W/f]; both backend
 * memory (any host memory on the CPU backend), not overlapping. H and W must be
 * positive multiples of v->factor. Returns 0, or -1 with an error (bad shape,
 * out of memory). */
int sd_vae_encode(sd_vae *v, const float *img, int B, int H, int W, float *moments);

/* z [B, latent, h, w] (already divided by the scaling factor) -> img
 * [B, out_channels, h·f, w·f]; backend memory, not overlapping. Any h, w >= 1. */
int sd_vae_decode(sd_vae *v, const float *z, int B, int h, int w, float *img);

/* Host helper: split moments [B, 2L, h, w] into mean [B, L, h, w] and logvar
 * [B, L, h, w] clamped to [-30, 20] (DiagonalGaussianDistribution.logvar,
 * what latent shards store; std = exp(0.5·logvar)). mean/logvar may be NULL. */
void sd_vae_moments_split(const float *moments, int B, int L, int h, int w, float *mean, float *logvar);

/* Activation memory: bytes of slots a call with this shape needs (enc = 1:
 * encode of an H x W image; enc = 0: decode of an h x w latent given as
 * H = h, W = w). sd_vae_reserve allocates it now (the largest shape a run will
 * use, so that the first forward does not allocate); sd_vae_release frees it
 * (the next forward allocates again). sd_vae_workspace_held: bytes held now. */
size_t sd_vae_workspace_bytes(const sd_vae *v, int enc, int B, int H, int W);
int sd_vae_reserve(sd_vae *v, int enc, int B, int H, int W);
void sd_vae_release(sd_vae *v);
size_t sd_vae_workspace_held(const sd_vae *v);

#endif
