/* config.h — what the models are: UNet, VAE, CLIP text encoder and scheduler
 * configs, parsed from the diffusers/transformers `config.json` files.
 *
 * Missing keys take the defaults of the reference constructors (diffusers
 * 0.39 `UNet2DConditionModel.__init__`, `AutoencoderKL.__init__`,
 * transformers 4.57 `CLIPTextConfig.__init__`), so nothing here is
 * hard-coded to SD1.5. Anything we do not implement (another block type, a
 * class embedding, resnet_time_scale_shift != "default", ...) is an error
 * naming the key and the value: a config is either represented exactly or
 * refused, never approximated.
 *
 * Each config keeps the parsed JSON (`raw`, owned, NULL when the config was
 * inferred from a single-file checkpoint) so that re-saving keeps keys we do
 * not interpret. Free with the matching *_free().
 *
 * The UNet's derived block table (down[], mid, up[]) is diffusers'
 * constructor logic written out once: channel counts of every resnet
 * (including the concatenated skip of up blocks), heads, head dim, which
 * blocks have samplers. The forward pass and the parameter table both read it.
 */
#ifndef SD_MODELS_CONFIG_H
#define SD_MODELS_CONFIG_H

#include <cJSON.h>
#include <stdio.h>

#include "backend/backend.h" /* SD_ACT_SILU, SD_ACT_GELU, SD_ACT_QUICK_GELU */

#define SD_UNET_MAX_LEVELS 8  /* down/up blocks */
#define SD_UNET_MAX_LAYERS 16 /* resnets per block (up blocks have layers_per_block + 1) */
#define SD_VAE_MAX_LEVELS 8

/* Activations named by configs. SILU, GELU and QUICK_GELU are the backend's
 * op codes (backend/backend.h: the value can be passed to act_forward as is);
 * the two others are config values the ops do not implement (GELU_TANH text
 * encoders are parsed but refused by the forward pass). */
typedef int sd_act;
enum { SD_ACT_NONE = -1, SD_ACT_GELU_TANH = 3 }; /* "gelu_new", "gelu_pytorch_tanh", "gelu_fast" */

/* Canonical name of an activation ("silu", "gelu", "gelu_new", "quick_gelu"). */
const char *sd_act_name(sd_act a);

/* ---- UNet2DConditionModel ------------------------------------------------ */

/* One down, mid or up block, as diffusers builds it. */
typedef struct {
    int cross_attn;         /* 1: CrossAttn{Down,Up}Block2D / mid: resnet–(transformer–resnet)×n */
    int num_resnets;        /* down: layers_per_block[i]; up: reversed layers_per_block[i] + 1; mid: 2 */
    int in_channels;        /* down: block input; up: diffusers' in_channels (= skip width of the last resnet) */
    int out_channels;
    int prev_out_channels;  /* up only: width of h coming into the block */
    int resnet_in[SD_UNET_MAX_LAYERS];     /* input channels of resnet j (up: h + skip, concatenated) */
    int resnet_skip[SD_UNET_MAX_LAYERS];   /* up only: channels of the skip concatenated before resnet j */
    int heads;              /* attention heads (cross_attn blocks) */
    int head_dim;           /* out_channels / heads (exact: configs where it is not are refused) */
    int transformer_layers; /* BasicTransformerBlocks per Transformer2DModel */
    int cross_attention_dim;/* K/V input width of attn2 */
    int only_cross_attention; /* attn1 also attends to the text context (K/V width cross_attention_dim) */
    int sampler;            /* 1: downsamplers.0 (down) / upsamplers.0 (up) present */
} sd_unet_block;

typedef struct {
    int in_channels, out_channels;
    int sample_size[2];          /* latent height, width (an int in config.json means square); 0 if null */
    int center_input_sample;     /* x = 2x - 1 before conv_in */
    int flip_sin_to_cos;         /* timestep embedding [cos, sin] instead of [sin, cos] */
    double freq_shift;           /* downscale_freq_shift of the timestep embedding */
    int num_levels;              /* len(block_out_channels) */
    int block_out_channels[SD_UNET_MAX_LEVELS];
    int layers_per_block[SD_UNET_MAX_LEVELS];
    int down_cross_attn[SD_UNET_MAX_LEVELS]; /* down_block_types[i] == CrossAttnDownBlock2D */
    int up_cross_attn[SD_UNET_MAX_LEVELS];   /* up_block_types[i] == CrossAttnUpBlock2D */
    /* Number of attention HEADS per down level: config `num_attention_heads`
     * if present, else `attention_head_dim` (diffusers' naming trap: that key
     * holds the head count). Up block i uses reversed()[i], mid uses [-1]. */
    int num_heads[SD_UNET_MAX_LEVELS];
    int transformer_layers[SD_UNET_MAX_LEVELS];
    int cross_attention_dim[SD_UNET_MAX_LEVELS];
    int only_cross_attention[SD_UNET_MAX_LEVELS];
    int mid_only_cross_attention;
    int has_mid_block;           /* 1: UNetMidBlock2DCrossAttn; 0: mid_block_type null */
    int use_linear_projection;   /* proj_in/proj_out Linear [C,C] instead of 1x1 conv [C,C,1,1] */
    int upcast_attention;        /* fp16 only: QKᵀ/softmax in fp32 */
    int norm_num_groups;
    double norm_eps;             /* resnet GroupNorms and conv_norm_out (transformer GN uses 1e-6, LN 1e-5) */
    int downsample_padding;
    double mid_block_scale_factor; /* output_scale_factor of the mid block resnets */
    double resnet_out_scale_factor; /* output_scale_factor of down/up block resnets */
    double dropout;
    int conv_in_kernel, conv_out_kernel; /* padding (k-1)/2 */
    int time_embed_dim;          /* time_embedding_dim or 4·block_out_channels[0] */
    sd_act act_fn;               /* only SILU is accepted */
    /* derived (sd_unet_config_derive fills these) */
    sd_unet_block down[SD_UNET_MAX_LEVELS], mid, up[SD_UNET_MAX_LEVELS];
    cJSON *raw;                  /* owned; NULL when built in code or inferred */
} sd_unet_config;

/* Parse from a cJSON object (not taken over; raw gets a copy). `where` names
 * the source in messages (e.g. the file). */
int sd_unet_config_parse(const cJSON *j, const char *where, sd_unet_config *c);
int sd_unet_config_load(const char *path, sd_unet_config *c);
/* Fill the derived block table from the fields and validate them; the parser
 * calls it. Call it again after building/changing a config in code. */
int sd_unet_config_derive(sd_unet_config *c);
/* The JSON to save: a copy of raw if present (unknown keys kept), else built
 * from the fields with diffusers' key names. Caller frees with cJSON_Delete. */
cJSON *sd_unet_config_to_json(const sd_unet_config *c);
void sd_unet_config_free(sd_unet_config *c);
/* Defaults of UNet2DConditionModel() with no arguments (= SD1.x shapes,
 * cross_attention_dim 1280); raw NULL. Used by the single-file inference. */
void sd_unet_config_default(sd_unet_config *c);

/* ---- AutoencoderKL ------------------------------------------------------- */

typedef struct {
    int in_channels, out_channels, latent_channels;
    int num_levels;
    int block_out_channels[SD_VAE_MAX_LEVELS];
    int layers_per_block;        /* encoder blocks have this many resnets, decoder blocks one more */
    int norm_num_groups;         /* all GroupNorms, eps 1e-6 */
    int sample_size;             /* pixels (first entry if a list) */
    double scaling_factor;       /* latents for the UNet = z · scaling_factor */
    int has_shift_factor;
    double shift_factor;         /* (z - shift) · scale when present (SD3/Flux VAEs; SD1/2: null) */
    int has_latents_mean;        /* latents_mean/latents_std given (SDXL playground); informational */
    int force_upcast, use_quant_conv, use_post_quant_conv, mid_block_add_attention;
    sd_act act_fn;               /* SILU only */
    cJSON *raw;
} sd_vae_config;

int sd_vae_config_parse(const cJSON *j, const char *where, sd_vae_config *c);
int sd_vae_config_load(const char *path, sd_vae_config *c);
int sd_vae_config_validate(const sd_vae_config *c);
cJSON *sd_vae_config_to_json(const sd_vae_config *c);
void sd_vae_config_free(sd_vae_config *c);
void sd_vae_config_default(sd_vae_config *c); /* AutoencoderKL() defaults */

/* ---- CLIPTextModel ------------------------------------------------------- */

typedef struct {
    int vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
    int max_position_embeddings, projection_dim;
    sd_act hidden_act;           /* QUICK_GELU (SD1), GELU (SD2), GELU_TANH */
    double layer_norm_eps;
    int bos_token_id, eos_token_id, pad_token_id;
    cJSON *raw;
} sd_clip_text_config;

/* Accepts a CLIPTextConfig object, or a full CLIPConfig (uses "text_config"). */
int sd_clip_text_config_parse(const cJSON *j, const char *where, sd_clip_text_config *c);
int sd_clip_text_config_load(const char *path, sd_clip_text_config *c);
int sd_clip_text_config_validate(const sd_clip_text_config *c);
cJSON *sd_clip_text_config_to_json(const sd_clip_text_config *c);
void sd_clip_text_config_free(sd_clip_text_config *c);
void sd_clip_text_config_default(sd_clip_text_config *c); /* CLIPTextConfig() defaults */

/* ---- scheduler_config.json ----------------------------------------------- */

/* What a model directory says about its scheduler, for describing and for
 * writing it back. Descriptive only: nothing a scheduler might support is
 * refused here (only keys of the wrong JSON type are errors). The sampling
 * code builds its own config from `raw` (lib/sample/scheduler.h:
 * sd_sched_config_from_json(m->scheduler.raw, ...)), which applies the
 * per-class defaults and refusals. Strings are "" and ints -1 when the key is
 * absent and the default depends on the class (timestep_spacing: "leading"
 * for DDPM/DDIM/PNDM, "linspace" for Euler/EulerA/DPM++; see sd_spec §5). */
typedef struct {
    char class_name[64];         /* "_class_name", e.g. "PNDMScheduler" ("" if absent) */
    int num_train_timesteps;     /* 1000 */
    double beta_start, beta_end; /* 0.0001, 0.02 (SD files set 0.00085, 0.012) */
    char beta_schedule[32];      /* "linear" (default), "scaled_linear", "squaredcos_cap_v2" */
    char prediction_type[32];    /* "epsilon" (default), "v_prediction", "sample" */
    int steps_offset;            /* 0 */
    int set_alpha_to_one;        /* -1: class default (DDIM 1, PNDM 0); SD files set false */
    int skip_prk_steps;          /* 0 */
    int clip_sample;             /* -1: class default (DDPM/DDIM 1); SD files set false */
    double clip_sample_range;    /* 1.0 */
    char timestep_spacing[32];   /* "" = class default */
    int use_karras_sigmas;       /* 0 */
    int rescale_betas_zero_snr;  /* 0 */
    int n_trained_betas;         /* length of a trained_betas list; 0 when null/absent */
    cJSON *raw;                  /* the whole object (algorithm_type, solver_order, trained_betas, ...) */
} sd_scheduler_config;

int sd_scheduler_config_parse(const cJSON *j, const char *where, sd_scheduler_config *c);
int sd_scheduler_config_load(const char *path, sd_scheduler_config *c);
void sd_scheduler_config_free(sd_scheduler_config *c);

/* One-line human summaries (sdinfo). */
void sd_unet_config_summary(const sd_unet_config *c, FILE *out, const char *indent);
void sd_vae_config_summary(const sd_vae_config *c, FILE *out, const char *indent);
void sd_clip_text_config_summary(const sd_clip_text_config *c, FILE *out, const char *indent);

#endif
