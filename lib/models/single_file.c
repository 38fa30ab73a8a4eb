/* single_file.c — single-file LDM/CompVis checkpoints (sd_spec §7; diffusers
 * loaders/single_file_utils.py): detection, configs inferred from tensor
 * shapes, and the key mapping to canonical names.
 *
 * The mapping runs canonical → LDM: every parameter table entry carries its
 * LDM key (params.c), so loading looks each one up; only the OpenCLIP text
 * tower (SD2) needs a small rename table and the q/k/v row split here. */
#include "core/error.h"
#include "io/json.h"
#include "models/model_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNET_PREFIX "model.diffusion_model."
#define CLIP_PREFIX "cond_stage_model.transformer."
#define OPENCLIP_PREFIX "cond_stage_model.model."

static int starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

static const sd_st_tensor *get(const sd_st_file *f, const char *fmt, ...) SD_PRINTF(2, 3);
static const sd_st_tensor *get(const sd_st_file *f, const char *fmt, ...) {
    char k[SD_KEY_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k, sizeof k, fmt, ap);
    va_end(ap);
    return sd_st_find(f, k);
}

/* Largest N+1 such that some key starts with prefix "N." (N a decimal index
 * right after prefix), i.e. the number of numbered children; 0 if none. */
static int count_children(const sd_st_file *f, const char *prefix) {
    size_t pl = strlen(prefix);
    int n = 0;
    for (int i = 0; i < f->ntensors; i++) {
        const char *k = f->tensors[i].name;
        if (strncmp(k, prefix, pl)) continue;
        char *end;
        long v = strtol(k + pl, &end, 10);
        if (end == k + pl || *end != '.' || v < 0 || v > 100000) continue;
        if (v + 1 > n) n = (int)v + 1;
    }
    return n;
}

int sd_sf_detect(const sd_st_file *f, sd_single_file_info *info) {
    memset(info, 0, sizeof *info);
    const sd_st_tensor *ci = sd_st_find(f, UNET_PREFIX "input_blocks.0.0.weight");
    if (!ci)
        return sd_set_error("%s: not a Stable Diffusion single-file checkpoint (no %sinput_blocks.0.0.weight)", f->path,
                            UNET_PREFIX);
    if (ci->ndim != 4) return sd_set_error("%s: %sinput_blocks.0.0.weight is not a conv weight", f->path, UNET_PREFIX);
    info->inpainting = ci->shape[1] == 9;
    /* v2: 1024-wide cross-attention keys (diffusers checks input_blocks.2.1;
     * any attn2.to_k works for other layouts) */
    for (int i = 0; i < f->ntensors; i++) {
        const sd_st_tensor *t = &f->tensors[i];
        if (starts(t->name, UNET_PREFIX) && strstr(t->name, ".attn2.to_k.weight") && t->ndim == 2) {
            info->v2 = t->shape[1] == 1024;
            break;
        }
    }
    info->openclip = sd_st_find(f, OPENCLIP_PREFIX "token_embedding.weight") != NULL;
    if (sd_st_find(f, "first_stage_model.encoder.conv_in.weight")) strcpy(info->vae_prefix, "first_stage_model.");
    else if (sd_st_find(f, "vae.encoder.conv_in.weight")) strcpy(info->vae_prefix, "vae.");
    for (int i = 0; i < f->ntensors; i++)
        if (starts(f->tensors[i].name, "model_ema.")) info->ema_tensors++;
    return 0;
}

int sd_sf_has_component(const sd_st_file *f, const sd_single_file_info *info, sd_component c) {
    switch (c) {
    case SD_UNET: return 1;
    case SD_VAE: return info->vae_prefix[0] != 0;
    case SD_TEXT_ENCODER:
        return info->openclip || sd_st_find(f, CLIP_PREFIX "text_model.embeddings.token_embedding.weight") ||
               sd_st_find(f, CLIP_PREFIX "embeddings.token_embedding.weight");
    default: return 0;
    }
}

/* ---- config inference ---------------------------------------------------- */

int sd_sf_infer_unet(const sd_st_file *f, const sd_single_file_info *info, sd_unet_config *c) {
    const char *P = f->path;
    sd_unet_config_default(c);
    const sd_st_tensor *ci = get(f, UNET_PREFIX "input_blocks.0.0.weight");
    const sd_st_tensor *co = get(f, UNET_PREFIX "out.2.weight");
    const sd_st_tensor *te = get(f, UNET_PREFIX "time_embed.0.weight");
    if (!ci || !co || !te || co->ndim != 4 || te->ndim != 2)
        return sd_set_error("%s: UNet: missing or malformed conv_in/conv_out/time_embed tensors", P);
    c->in_channels = (int)ci->shape[1];
    c->out_channels = (int)co->shape[0];
    c->conv_in_kernel = (int)ci->shape[2];
    c->conv_out_kernel = (int)co->shape[2];
    c->time_embed_dim = (int)te->shape[0];

    /* levels and layers_per_block from the input_blocks numbering: per level
     * lpb resnet(+attention) entries, then one downsampler (not after the last) */
    int ni = count_children(f, UNET_PREFIX "input_blocks.");
    int first_op = -1, nops = 0;
    for (int i = 1; i < ni; i++)
        if (get(f, UNET_PREFIX "input_blocks.%d.0.op.weight", i)) {
            if (first_op < 0) first_op = i;
            nops++;
        }
    int L = nops + 1, lpb = first_op > 0 ? first_op - 1 : ni - 1;
    if (lpb < 1 || L > SD_UNET_MAX_LEVELS || ni != 1 + L * lpb + (L - 1))
        return sd_set_error("%s: UNet: cannot infer layers_per_block from %d input blocks with %d downsamplers", P, ni,
                            nops);
    c->num_levels = L;
    int tdepth = 0, linear = -1, xdim = -1;
    for (int b = 0; b < L; b++) {
        int i = 1 + b * (lpb + 1);
        c->layers_per_block[b] = lpb;
        const sd_st_tensor *cv = get(f, UNET_PREFIX "input_blocks.%d.0.in_layers.2.weight", i);
        if (!cv || cv->ndim != 4) return sd_set_error("%s: UNet: input_blocks.%d.0.in_layers.2.weight missing", P, i);
        c->block_out_channels[b] = (int)cv->shape[0];
        c->down_cross_attn[b] = get(f, UNET_PREFIX "input_blocks.%d.1.norm.weight", i) != NULL;
        if (c->down_cross_attn[b]) {
            char pre[128];
            snprintf(pre, sizeof pre, UNET_PREFIX "input_blocks.%d.1.transformer_blocks.", i);
            int d = count_children(f, pre);
            if (tdepth && d != tdepth)
                return sd_set_error("%s: UNet: transformer depth differs between levels (%d vs %d): unsupported", P,
                                    tdepth, d);
            tdepth = d;
            const sd_st_tensor *pi = get(f, UNET_PREFIX "input_blocks.%d.1.proj_in.weight", i);
            const sd_st_tensor *tk = get(f, UNET_PREFIX "input_blocks.%d.1.transformer_blocks.0.attn2.to_k.weight", i);
            if (!pi || !tk) return sd_set_error("%s: UNet: input_blocks.%d.1: proj_in or attn2.to_k missing", P, i);
            linear = pi->ndim == 2;
            xdim = (int)tk->shape[1];
        }
    }
    if (get(f, UNET_PREFIX "middle_block.1.norm.weight")) {
        c->has_mid_block = 1;
        if (linear < 0) {
            const sd_st_tensor *pi = get(f, UNET_PREFIX "middle_block.1.proj_in.weight");
            const sd_st_tensor *tk = get(f, UNET_PREFIX "middle_block.1.transformer_blocks.0.attn2.to_k.weight");
            if (!pi || !tk) return sd_set_error("%s: UNet: middle_block.1: proj_in or attn2.to_k missing", P);
            linear = pi->ndim == 2;
            xdim = (int)tk->shape[1];
            tdepth = count_children(f, UNET_PREFIX "middle_block.1.transformer_blocks.");
        }
    } else {
        c->has_mid_block = 0;
    }
    for (int b = 0; b < L; b++)
        c->up_cross_attn[b] = get(f, UNET_PREFIX "output_blocks.%d.1.norm.weight", b * (lpb + 1)) != NULL;
    if (linear < 0) linear = 0;
    if (xdim < 0) xdim = 768;
    c->use_linear_projection = linear;
    /* heads: SD1 (conv projections) 8 everywhere; SD2 (linear) head dim 64.
     * Levels without attention get a placeholder that divides their width. */
    for (int b = 0; b < L; b++) {
        int ch = c->block_out_channels[b];
        int used = c->down_cross_attn[b] || c->up_cross_attn[L - 1 - b] || (b == L - 1 && c->has_mid_block);
        if (linear) {
            if (ch % 64 && used)
                return sd_set_error("%s: UNet: cannot infer attention heads for %d channels (head dim 64 assumed for "
                                    "linear projections); pass a config directory", P, ch);
            c->num_heads[b] = ch % 64 ? 1 : ch / 64;
        } else {
            c->num_heads[b] = 8;
            if (ch % 8 && used)
                return sd_set_error("%s: UNet: %d channels not divisible by 8 heads; pass a config directory", P, ch);
        }
        c->transformer_layers[b] = tdepth ? tdepth : 1;
        c->cross_attention_dim[b] = xdim;
    }
    /* diffusers: image size 512 (v1, inpainting) or 768 (v2) → latents /8 */
    c->sample_size[0] = c->sample_size[1] = (info->v2 && !info->inpainting) ? 96 : 64;
    if (sd_unet_config_derive(c)) return sd_error_prefix("%s: inferred UNet config", P);
    return 0;
}

int sd_sf_infer_vae(const sd_st_file *f, const sd_single_file_info *info, sd_vae_config *c) {
    const char *P = f->path, *V = info->vae_prefix;
    sd_vae_config_default(c);
    const sd_st_tensor *ci = get(f, "%sencoder.conv_in.weight", V);
    const sd_st_tensor *dci = get(f, "%sdecoder.conv_in.weight", V);
    const sd_st_tensor *dco = get(f, "%sdecoder.conv_out.weight", V);
    if (!ci || !dci || !dco || ci->ndim != 4 || dci->ndim != 4 || dco->ndim != 4)
        return sd_set_error("%s: VAE: missing encoder/decoder conv_in/conv_out", P);
    char pre[64];
    snprintf(pre, sizeof pre, "%sencoder.down.", V);
    int n = count_children(f, pre);
    if (n < 1 || n > SD_VAE_MAX_LEVELS) return sd_set_error("%s: VAE: %d encoder levels: unsupported", P, n);
    c->num_levels = n;
    for (int i = 0; i < n; i++) {
        const sd_st_tensor *t = get(f, "%sencoder.down.%d.block.0.conv1.weight", V, i);
        if (!t) return sd_set_error("%s: VAE: encoder.down.%d.block.0.conv1.weight missing", P, i);
        c->block_out_channels[i] = (int)t->shape[0];
    }
    snprintf(pre, sizeof pre, "%sencoder.down.0.block.", V);
    c->layers_per_block = count_children(f, pre);
    c->in_channels = (int)ci->shape[1];
    c->latent_channels = (int)dci->shape[1];
    c->out_channels = (int)dco->shape[0];
    c->mid_block_add_attention = get(f, "%sencoder.mid.attn_1.q.weight", V) != NULL;
    c->use_quant_conv = get(f, "%squant_conv.weight", V) != NULL;
    c->use_post_quant_conv = get(f, "%spost_quant_conv.weight", V) != NULL;
    c->sample_size = (info->v2 && !info->inpainting) ? 768 : 512;
    c->scaling_factor = 0.18215;
    if (sd_vae_config_validate(c)) return sd_error_prefix("%s: inferred VAE config", P);
    return 0;
}

int sd_sf_infer_text(const sd_st_file *f, const sd_single_file_info *info, sd_clip_text_config *c) {
    const char *P = f->path;
    sd_clip_text_config_default(c);
    /* the SD1/SD2 hub text_encoder configs carry these stale token ids */
    c->bos_token_id = 0;
    c->eos_token_id = 2;
    c->pad_token_id = 1;
    if (info->openclip) {
        const sd_st_tensor *tok = get(f, OPENCLIP_PREFIX "token_embedding.weight");
        const sd_st_tensor *pos = get(f, OPENCLIP_PREFIX "positional_embedding");
        const sd_st_tensor *fc = get(f, OPENCLIP_PREFIX "transformer.resblocks.0.mlp.c_fc.weight");
        if (!tok || !pos || !fc || tok->ndim != 2 || pos->ndim != 2 || fc->ndim != 2)
            return sd_set_error("%s: OpenCLIP text encoder: token/positional embedding or mlp.c_fc missing", P);
        int R = count_children(f, OPENCLIP_PREFIX "transformer.resblocks.");
        if (R < 2) return sd_set_error("%s: OpenCLIP text encoder: %d resblocks: unsupported", P, R);
        c->vocab_size = (int)tok->shape[0];
        c->hidden_size = (int)tok->shape[1];
        c->max_position_embeddings = (int)pos->shape[0];
        c->intermediate_size = (int)fc->shape[0];
        c->num_hidden_layers = R - 1; /* SD2 uses the penultimate layer: the last block is dropped */
        c->hidden_act = SD_ACT_GELU;
        c->projection_dim = 512;
    } else {
        const char *pre = CLIP_PREFIX "text_model.";
        if (!get(f, "%sembeddings.token_embedding.weight", pre)) pre = CLIP_PREFIX;
        const sd_st_tensor *tok = get(f, "%sembeddings.token_embedding.weight", pre);
        const sd_st_tensor *pos = get(f, "%sembeddings.position_embedding.weight", pre);
        const sd_st_tensor *fc = get(f, "%sencoder.layers.0.mlp.fc1.weight", pre);
        if (!tok || !pos || !fc || tok->ndim != 2 || pos->ndim != 2 || fc->ndim != 2)
            return sd_set_error("%s: CLIP text encoder: embeddings or mlp.fc1 missing", P);
        char lp[SD_KEY_MAX];
        snprintf(lp, sizeof lp, "%sencoder.layers.", pre);
        c->vocab_size = (int)tok->shape[0];
        c->hidden_size = (int)tok->shape[1];
        c->max_position_embeddings = (int)pos->shape[0];
        c->intermediate_size = (int)fc->shape[0];
        c->num_hidden_layers = count_children(f, lp);
        c->hidden_act = SD_ACT_QUICK_GELU;
        c->projection_dim = 768;
    }
    if (c->hidden_size % 64)
        return sd_set_error("%s: text encoder: cannot infer attention heads for width %d (head dim 64 assumed); pass a "
                            "config directory", P, c->hidden_size);
    c->num_attention_heads = c->hidden_size / 64;
    if (sd_clip_text_config_validate(c)) return sd_error_prefix("%s: inferred text encoder config", P);
    return 0;
}

int sd_sf_scheduler(const sd_st_file *f, const sd_single_file_info *info, sd_scheduler_config *c) {
    /* What diffusers' from_single_file takes from the hub pipelines: SD1.5's
     * PNDM file; SD2's DDIM file with v_prediction unless the checkpoint says
     * global_step 875000 (the 512-base model). */
    char js[512];
    const char *pred = "epsilon";
    if (info->v2 && !info->inpainting) {
        pred = "v_prediction";
        const sd_st_tensor *gs = sd_st_find(f, "global_step");
        float v;
        if (gs && gs->numel == 1 && sd_st_read_f32(f, gs, &v) == 0 && v == 875000.0f) pred = "epsilon";
    }
    snprintf(js, sizeof js,
             "{\"_class_name\":\"%s\",\"_diffusers_version\":\"0.39.0\",\"beta_end\":0.012,"
             "\"beta_schedule\":\"scaled_linear\",\"beta_start\":0.00085,\"clip_sample\":false,"
             "\"num_train_timesteps\":1000,\"prediction_type\":\"%s\",\"set_alpha_to_one\":false,"
             "\"skip_prk_steps\":true,\"steps_offset\":1,\"trained_betas\":null}",
             info->v2 ? "DDIMScheduler" : "PNDMScheduler", pred);
    cJSON *j;
    if (sd_json_parse(js, strlen(js), "inferred scheduler", &j)) return -1;
    int rc = sd_scheduler_config_parse(j, "inferred scheduler", c);
    cJSON_Delete(j);
    return rc;
}

/* ---- key mapping ----------------------------------------------------------- */

/* OpenCLIP (open_clip.model.CLIP text tower) name of a transformers CLIP key.
 * Sets rows for the fused in_proj. Returns 0, or -1 if there is none. */
static int openclip_key(const char *name, int64_t H, char *out, int64_t *row0, int64_t *rows) {
    static const struct { const char *hf, *oc; } fixed[] = {
        {"text_model.embeddings.token_embedding.weight", "token_embedding.weight"},
        {"text_model.embeddings.position_embedding.weight", "positional_embedding"},
        {"text_model.final_layer_norm.weight", "ln_final.weight"},
        {"text_model.final_layer_norm.bias", "ln_final.bias"},
    };
    *row0 = 0;
    *rows = -1;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (!strcmp(name, fixed[i].hf)) {
            snprintf(out, SD_KEY_MAX, OPENCLIP_PREFIX "%s", fixed[i].oc);
            return 0;
        }
    int layer, n = 0;
    if (sscanf(name, "text_model.encoder.layers.%d.%n", &layer, &n) != 1 || n == 0) return -1;
    const char *rest = name + n; /* e.g. "self_attn.q_proj.weight" */
    static const struct { const char *hf, *oc; } sub[] = {
        {"layer_norm1.", "ln_1."}, {"layer_norm2.", "ln_2."}, {"self_attn.out_proj.", "attn.out_proj."},
        {"mlp.fc1.", "mlp.c_fc."}, {"mlp.fc2.", "mlp.c_proj."},
    };
    for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++) {
        size_t l = strlen(sub[i].hf);
        if (!strncmp(rest, sub[i].hf, l)) {
            snprintf(out, SD_KEY_MAX, OPENCLIP_PREFIX "transformer.resblocks.%d.%s%s", layer, sub[i].oc, rest + l);
            return 0;
        }
    }
    static const char *const qkv[3] = {"self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj."};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(qkv[i]);
        if (!strncmp(rest, qkv[i], l)) {
            const char *wb = rest + l; /* "weight" | "bias" */
            snprintf(out, SD_KEY_MAX, OPENCLIP_PREFIX "transformer.resblocks.%d.attn.in_proj_%s", layer, wb);
            *row0 = i * H; /* rows [0,H) q, [H,2H) k, [2H,3H) v */
            *rows = H;
            return 0;
        }
    }
    return -1;
}

int sd_sf_candidates(const sd_model *m, sd_component c, const sd_param *p, sd_src_key out[3]) {
    int n = 0;
    for (int i = 0; i < 3; i++) { out[i].row0 = 0; out[i].rows = -1; }
    switch (c) {
    case SD_UNET:
        if (m->priv->use_ema) {
            /* model_ema.<"diffusion_model." + ldm with the dots removed> */
            char *k = out[0].key;
            size_t j = (size_t)snprintf(k, SD_KEY_MAX, "model_ema.");
            const char *src[2] = {"diffusion_model.", p->ldm};
            for (int s = 0; s < 2; s++)
                for (const char *q = src[s]; *q && j + 1 < SD_KEY_MAX; q++)
                    if (*q != '.') k[j++] = *q;
            k[j] = 0;
        } else {
            snprintf(out[0].key, SD_KEY_MAX, UNET_PREFIX "%s", p->ldm);
        }
        n = 1;
        break;
    case SD_VAE:
        snprintf(out[0].key, SD_KEY_MAX, "%s%s", m->sf.vae_prefix, p->ldm);
        n = 1;
        break;
    case SD_TEXT_ENCODER:
        if (m->sf.openclip) {
            if (openclip_key(p->name, m->text.hidden_size, out[0].key, &out[0].row0, &out[0].rows) == 0) n = 1;
        } else {
            snprintf(out[0].key, SD_KEY_MAX, CLIP_PREFIX "%s", p->name);
            n = 1;
            if (starts(p->name, "text_model.")) { /* older transformers: no text_model wrapper */
                snprintf(out[1].key, SD_KEY_MAX, CLIP_PREFIX "%s", p->name + strlen("text_model."));
                n = 2;
            }
        }
        break;
    default: break;
    }
    return n;
}

int sd_sf_in_namespace(const sd_model *m, sd_component c, const char *key) {
    switch (c) {
    case SD_UNET:
        if (m->priv->use_ema)
            return starts(key, "model_ema.") && strcmp(key, "model_ema.decay") && strcmp(key, "model_ema.num_updates");
        return starts(key, UNET_PREFIX);
    case SD_VAE: return m->sf.vae_prefix[0] && starts(key, m->sf.vae_prefix);
    case SD_TEXT_ENCODER: return starts(key, m->sf.openclip ? OPENCLIP_PREFIX : CLIP_PREFIX);
    default: return 0;
    }
}

int sd_sf_ignorable(const sd_model *m, sd_component c, const char *key) {
    if (c != SD_TEXT_ENCODER) return 0;
    if (!m->sf.openclip) return strstr(key, "position_ids") != NULL;
    if (!strcmp(key, OPENCLIP_PREFIX "text_projection") || !strcmp(key, OPENCLIP_PREFIX "logit_scale") ||
        !strcmp(key, OPENCLIP_PREFIX "attn_mask"))
        return 1;
    /* the dropped last block: exactly index num_hidden_layers */
    char pre[128];
    snprintf(pre, sizeof pre, OPENCLIP_PREFIX "transformer.resblocks.%d.", m->text.num_hidden_layers);
    return starts(key, pre);
}

int sd_sf_known_extra(const char *key) {
    static const char *const bufs[] = {
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
        "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
        "logvar", "lvlb_weights", "global_step", "epoch",
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (!strcmp(key, bufs[i])) return 1;
    return starts(key, "model_ema.");
}
