/* modeldir.h — where the weights come from: diffusers model directories,
 * single components, and single-file LDM checkpoints; and writing them back.
 *
 * Opening (sd_model_open) reads configs only; tensor data stays in the
 * mmap'ed safetensors files until sd_model_load converts a component into a
 * flat float buffer laid out by its parameter table (params.h).
 *
 * Accepted inputs (PATH):
 *   * a diffusers pipeline directory (model_index.json; unet/, vae/,
 *     text_encoder/ with config.json + weights; tokenizer/, scheduler/);
 *   * one component directory (e.g. `--unet DIR` pointing at a `unet/`):
 *     config.json with _class_name UNet2DConditionModel / AutoencoderKL, or a
 *     transformers CLIPTextModel config;
 *   * a single-file LDM/CompVis checkpoint `.safetensors` (SD1.x, SD2.x,
 *     inpainting; configs inferred from tensor shapes, or taken from
 *     opts.config_dir).
 *
 * Weights files per component directory, in order of preference:
 *   NAME.safetensors, then NAME.safetensors.index.json (sharded: its
 *   "weight_map" names the shard of every tensor); with opts.variant = V:
 *   NAME.V.safetensors, NAME.safetensors.index.V.json (diffusers/transformers
 *   variant naming). NAME is diffusion_pytorch_model (unet, vae) or model
 *   (text_encoder). Without a variant, a lone NAME.fp16.safetensors is used
 *   (with a note). Only pickle files (.bin/.ckpt) → error "unsupported:
 *   convert to safetensors". Any real dtype (F32, F16, BF16, F64, ints, F8…)
 *   is converted to f32.
 *
 * Key variants accepted (the canonical key is tried first; two spellings of
 * one tensor in a file is an error):
 *   * VAE attention: legacy query/key/value/proj_attn (diffusers ≤ 0.13
 *     files) for to_q/to_k/to_v/to_out.0, and [C,C,1,1] / [C,C,1] conv-shaped
 *     weights for the [C,C] linears (what diffusers' loaders convert);
 *   * CLIP text: keys with or without the "text_model." prefix; the
 *     "position_ids" buffer (old transformers files) is ignored.
 *
 * Missing tensors, tensors of the wrong shape, and UNEXPECTED tensors are
 * errors naming the tensor (and both shapes). diffusers merely warns about
 * unexpected keys; we refuse them because in practice they mean the config
 * does not describe the weights (another architecture, a merged LoRA left
 * unmerged, a wrong --unet directory), and fine-tuning such a model would be
 * silently wrong. opts.allow_extra turns them into one warning.
 *
 * Single-file checkpoints (sd_spec §7): UNet under "model.diffusion_model.",
 * VAE under "first_stage_model." (or "vae."), text encoder under
 * "cond_stage_model.transformer." (SD1, HF CLIP keys) or
 * "cond_stage_model.model." (SD2 OpenCLIP: fused attn.in_proj split into
 * q/k/v; the last resblock — index num_hidden_layers — and text_projection,
 * logit_scale are dropped, as SD2 uses the penultimate layer). LDM buffers
 * (betas, alphas_cumprod, posterior_*, …) and EMA weights are ignored unless
 * opts.use_ema (then the UNet comes from "model_ema.<key without dots>").
 * Other unknown top-level tensors: one warning. Inferred configs: SD1 style
 * (conv proj_in) → 8 heads; SD2 style (linear proj_in) → head dim 64
 * (heads = channels/64); CLIP heads = width/64; layers/channels/cross-attn
 * width from shapes; norm groups 32; scheduler: v1 PNDM (SD1.5 file), v2 DDIM
 * with v_prediction (epsilon if a global_step tensor == 875000, as
 * diffusers guesses). For models where this cannot be inferred (tiny test
 * models), give opts.config_dir = a diffusers dir with the configs.
 */
#ifndef SD_MODELS_MODELDIR_H
#define SD_MODELS_MODELDIR_H

#include <stdint.h>
#include <stdio.h>

#include "core/tensor.h"
#include "models/config.h"
#include "models/params.h"

typedef enum { SD_UNET = 0, SD_VAE = 1, SD_TEXT_ENCODER = 2, SD_NCOMP = 3 } sd_component;

/* "unet", "vae", "text_encoder" (the diffusers subfolder names) */
const char *sd_component_name(sd_component c);

typedef enum { SD_MODEL_PIPELINE = 1, SD_MODEL_COMPONENT = 2, SD_MODEL_SINGLE_FILE = 3 } sd_model_kind;

typedef struct {
    const char *variant;    /* e.g. "fp16": read NAME.fp16.safetensors; NULL: plain files */
    const char *config_dir; /* single-file: take configs/tokenizer/scheduler from this diffusers dir */
    int use_ema;            /* single-file: UNet from the EMA weights (error if there are none) */
    int allow_extra;        /* unexpected tensors are one warning instead of an error */
} sd_model_opts;

/* What a single-file checkpoint looks like (sd_spec §7 detection). */
typedef struct {
    int v2;             /* 1024-wide cross-attention (SD2.x) */
    int inpainting;     /* UNet in_channels == 9 */
    int openclip;       /* text encoder under cond_stage_model.model. */
    int ema_tensors;    /* number of model_ema.* tensors (EMA present if > 100) */
    int ignored;        /* top-level tensors outside every component (after known LDM buffers) */
    char vae_prefix[32];/* "first_stage_model." or "vae." ("" if no VAE) */
} sd_single_file_info;

typedef struct sd_model_priv sd_model_priv;

typedef struct {
    sd_model_kind kind;
    char *path;
    char *pipeline_class;        /* model_index.json _class_name, NULL if none */
    int has[SD_NCOMP];           /* component present (config parsed) */
    sd_unet_config unet;
    sd_vae_config vae;
    sd_clip_text_config text;
    int has_scheduler;
    sd_scheduler_config scheduler;
    char *tokenizer_dir;         /* directory with vocab.json/merges.txt, NULL if none */
    char *comp_dir[SD_NCOMP];    /* diffusers component directories (NULL for single-file) */
    sd_single_file_info sf;      /* kind == SD_MODEL_SINGLE_FILE */
    sd_model_priv *priv;
} sd_model;

int sd_model_open(const char *path, const sd_model_opts *opts, sd_model **out);
/* What PATH is, without parsing configs or failing: SD_MODEL_PIPELINE (dir
 * with model_index.json), SD_MODEL_COMPONENT (dir with config.json),
 * SD_MODEL_SINGLE_FILE (.safetensors holding
 * model.diffusion_model.input_blocks.0.0.weight), or 0 (not a model; e.g. a
 * LoRA or latent file — sdinfo then describes it otherwise). */
int sd_model_probe(const char *path);
void sd_model_close(sd_model *m);

/* Table of component c from the model's config. */
int sd_model_table(const sd_model *m, sd_component c, sd_param_table *t);
/* Load component c into buf[t->total] (t built by sd_model_table, or an
 * equivalent table of the same config). Errors: see above. */
int sd_model_load(sd_model *m, sd_component c, const sd_param_table *t, float *buf);
/* Unmap the weight files of component c (diffusers directories; a single
 * file stays mapped): a trainer that has copied the weights stops counting
 * the mapped file pages in its resident set. The next load reopens them. */
void sd_model_release(sd_model *m, sd_component c);
/* Convenience: build the table and malloc + load the buffer (free() it). */
int sd_model_load_alloc(sd_model *m, sd_component c, sd_param_table *t, float **buf);
/* The config JSON to save for component c (cJSON_Delete it): the parsed
 * config.json as read (unknown keys kept), or, for inferred configs, one built
 * from the fields. Fields changed in code after parsing are only reflected if
 * the config's raw JSON is dropped first (cJSON_Delete(raw); raw = NULL). */
cJSON *sd_model_config_json(const sd_model *m, sd_component c);

/* What the weights files hold, without reading tensor data. */
typedef struct {
    int nfiles;
    char files[8][256];     /* base names (first 8) */
    int tensors;            /* tensors of this component in the files */
    int64_t elements;       /* their element count */
    unsigned dtypes;        /* bit (1 << sd_dtype) for each dtype seen */
} sd_weights_info;
int sd_model_weights_info(sd_model *m, sd_component c, sd_weights_info *info);

/* ---- writing ------------------------------------------------------------- */

/* Write one component into dir (created if needed): config.json (the JSON
 * given, e.g. sd_model_config_json) and the weights file
 * (diffusion_pytorch_model.safetensors, or model.safetensors for the text
 * encoder) with metadata {"format": "pt"}, tensors stored as dtype (SD_F32,
 * SD_F16 or SD_BF16). Each file is written atomically. */
int sd_component_save(const char *dir, sd_component c, const cJSON *config, const sd_param_table *t,
                      const float *buf, sd_dtype dtype);

typedef struct {
    const cJSON *config;        /* NULL: the base model's config of that component */
    const sd_param_table *table;
    const float *buf;           /* NULL: component not given (copied or converted from base) */
} sd_component_data;

typedef struct {
    sd_dtype dtype;             /* for the components written (default F32 when 0) */
    int overwrite;              /* replace an existing out_dir */
    int copy;                   /* copy base files instead of hard-linking them */
    const char *tokenizer_dir;  /* tokenizer when the base has none (single-file base) */
} sd_save_opts;

/* Write a complete diffusers pipeline directory out_dir: the components in
 * parts[] that have a buffer are written; every other component of the base
 * is hard-linked (or copied) from a diffusers base, or converted from a
 * single-file base (loaded and written as dtype). model_index.json comes
 * from the base (keys kept) or is synthesized for a StableDiffusionPipeline;
 * scheduler and tokenizer are copied (a single-file base gets its inferred
 * scheduler config). Built in a temporary sibling directory and renamed
 * into place: out_dir is never seen half-written. */
int sd_pipeline_save(const char *out_dir, sd_model *base, const sd_component_data parts[SD_NCOMP],
                     const sd_save_opts *opts);

/* ---- sdinfo ---------------------------------------------------------------- */

/* Describe a model directory / component / single file: kind, components
 * with class names, config summaries (block types, channels, heads,
 * cross-attention width, linear projection, prediction type, scaling factor),
 * parameter counts (config and files), dtypes, files. json != 0: one JSON
 * object. Returns 0, or -1 with an error. */
int sd_model_describe(const char *path, int json, FILE *out);

#endif
