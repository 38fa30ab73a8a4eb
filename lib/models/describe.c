/* describe.c — sd_model_describe: what sdinfo prints for a model. */
#include "core/error.h"
#include "io/json.h"
#include "models/model_internal.h"

#include <stdlib.h>
#include <string.h>

static const char *const CLASS_OF[SD_NCOMP] = {"UNet2DConditionModel", "AutoencoderKL", "CLIPTextModel"};

static char *commas(long long v, char *buf) { /* 1234567 -> "1,234,567" */
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", v < 0 ? -v : v), k = 0;
    if (v < 0) buf[k++] = '-';
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0) buf[k++] = ',';
        buf[k++] = tmp[i];
    }
    buf[k] = 0;
    return buf;
}

static void dtype_list(unsigned mask, char *out, size_t n) {
    out[0] = 0;
    for (int d = 1; d < SD_DTYPE_COUNT; d++)
        if (mask & (1u << d)) {
            size_t l = strlen(out);
            snprintf(out + l, n - l, "%s%s", l ? "," : "", sd_dtype_name((sd_dtype)d));
        }
}

static cJSON *ints(const int *v, int n) { return cJSON_CreateIntArray(v, n); }

static cJSON *unet_json(const sd_unet_config *c) {
    cJSON *o = cJSON_CreateObject();
    int n = c->num_levels, hd[SD_UNET_MAX_LEVELS];
    cJSON *dt = cJSON_CreateArray(), *ut = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON_AddItemToArray(dt, cJSON_CreateString(c->down_cross_attn[i] ? "CrossAttnDownBlock2D" : "DownBlock2D"));
        cJSON_AddItemToArray(ut, cJSON_CreateString(c->up_cross_attn[i] ? "CrossAttnUpBlock2D" : "UpBlock2D"));
        hd[i] = c->block_out_channels[i] / c->num_heads[i];
    }
    cJSON_AddItemToObject(o, "down_block_types", dt);
    cJSON_AddStringToObject(o, "mid_block_type", c->has_mid_block ? "UNetMidBlock2DCrossAttn" : "none");
    cJSON_AddItemToObject(o, "up_block_types", ut);
    cJSON_AddItemToObject(o, "block_out_channels", ints(c->block_out_channels, n));
    cJSON_AddItemToObject(o, "layers_per_block", ints(c->layers_per_block, n));
    cJSON_AddItemToObject(o, "attention_heads", ints(c->num_heads, n));
    cJSON_AddItemToObject(o, "attention_head_dims", ints(hd, n));
    cJSON_AddItemToObject(o, "transformer_layers_per_block", ints(c->transformer_layers, n));
    cJSON_AddItemToObject(o, "cross_attention_dim", ints(c->cross_attention_dim, n));
    cJSON_AddBoolToObject(o, "use_linear_projection", c->use_linear_projection);
    cJSON_AddBoolToObject(o, "upcast_attention", c->upcast_attention);
    cJSON_AddNumberToObject(o, "in_channels", c->in_channels);
    cJSON_AddNumberToObject(o, "out_channels", c->out_channels);
    cJSON_AddItemToObject(o, "sample_size", ints(c->sample_size, 2));
    cJSON_AddNumberToObject(o, "norm_num_groups", c->norm_num_groups);
    return o;
}

static cJSON *vae_json(const sd_vae_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "block_out_channels", ints(c->block_out_channels, c->num_levels));
    cJSON_AddNumberToObject(o, "layers_per_block", c->layers_per_block);
    cJSON_AddNumberToObject(o, "latent_channels", c->latent_channels);
    cJSON_AddNumberToObject(o, "scaling_factor", c->scaling_factor);
    if (c->has_shift_factor) cJSON_AddNumberToObject(o, "shift_factor", c->shift_factor);
    else cJSON_AddNullToObject(o, "shift_factor");
    cJSON_AddNumberToObject(o, "in_channels", c->in_channels);
    cJSON_AddNumberToObject(o, "out_channels", c->out_channels);
    cJSON_AddNumberToObject(o, "sample_size", c->sample_size);
    cJSON_AddNumberToObject(o, "norm_num_groups", c->norm_num_groups);
    cJSON_AddBoolToObject(o, "mid_block_add_attention", c->mid_block_add_attention);
    cJSON_AddBoolToObject(o, "force_upcast", c->force_upcast);
    return o;
}

static cJSON *text_json(const sd_clip_text_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->num_hidden_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->num_attention_heads);
    cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate_size);
    cJSON_AddStringToObject(o, "hidden_act", sd_act_name(c->hidden_act));
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_position_embeddings);
    cJSON_AddNumberToObject(o, "layer_norm_eps", c->layer_norm_eps);
    return o;
}

static cJSON *sched_json(const sd_scheduler_config *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "class", s->class_name);
    cJSON_AddStringToObject(o, "prediction_type", s->prediction_type);
    cJSON_AddStringToObject(o, "beta_schedule", s->beta_schedule);
    cJSON_AddNumberToObject(o, "beta_start", s->beta_start);
    cJSON_AddNumberToObject(o, "beta_end", s->beta_end);
    cJSON_AddNumberToObject(o, "num_train_timesteps", s->num_train_timesteps);
    if (s->timestep_spacing[0]) cJSON_AddStringToObject(o, "timestep_spacing", s->timestep_spacing);
    else cJSON_AddNullToObject(o, "timestep_spacing");
    cJSON_AddNumberToObject(o, "steps_offset", s->steps_offset);
    return o;
}

static const char *kind_name(sd_model_kind k) {
    return k == SD_MODEL_PIPELINE ? "diffusers" : k == SD_MODEL_COMPONENT ? "component" : "single_file";
}

int sd_model_describe(const char *path, int json, FILE *out) {
    sd_model *m;
    if (sd_model_open(path, NULL, &m)) return -1;
    int inferred = m->kind == SD_MODEL_SINGLE_FILE;
    cJSON *root = json ? cJSON_CreateObject() : NULL, *comps = NULL;
    char b1[32], b2[32], b3[32], dts[128];

    if (json) {
        cJSON_AddStringToObject(root, "path", m->path);
        cJSON_AddStringToObject(root, "format", kind_name(m->kind));
        if (m->pipeline_class) cJSON_AddStringToObject(root, "pipeline_class", m->pipeline_class);
        else cJSON_AddNullToObject(root, "pipeline_class");
        if (m->kind == SD_MODEL_SINGLE_FILE) {
            cJSON *s = cJSON_AddObjectToObject(root, "single_file");
            cJSON_AddStringToObject(s, "version", m->sf.v2 ? "v2" : "v1");
            cJSON_AddBoolToObject(s, "inpainting", m->sf.inpainting);
            cJSON_AddStringToObject(s, "text_encoder_format", m->sf.openclip ? "openclip" : "clip");
            cJSON_AddNumberToObject(s, "ema_tensors", m->sf.ema_tensors);
            cJSON_AddBoolToObject(s, "has_ema", m->sf.ema_tensors > 100);
            cJSON_AddNumberToObject(s, "ignored_tensors", m->sf.ignored);
        }
        comps = cJSON_AddObjectToObject(root, "components");
    } else if (m->kind == SD_MODEL_PIPELINE) {
        fprintf(out, "%s: diffusers pipeline (%s)\n", m->path, m->pipeline_class ? m->pipeline_class : "no _class_name");
    } else if (m->kind == SD_MODEL_COMPONENT) {
        fprintf(out, "%s: diffusers component directory\n", m->path);
    } else {
        fprintf(out, "%s: single-file LDM checkpoint: SD %s%s, text encoder %s, EMA weights %s (%d model_ema tensors)\n",
                m->path, m->sf.v2 ? "v2" : "v1", m->sf.inpainting ? " inpainting" : "",
                m->sf.openclip ? "OpenCLIP (cond_stage_model.model)" : "CLIP (cond_stage_model.transformer)",
                m->sf.ema_tensors > 100 ? "present" : "absent", m->sf.ema_tensors);
        if (m->sf.ignored) fprintf(out, "  %d tensors belong to no component (ignored)\n", m->sf.ignored);
    }

    for (int c = 0; c < SD_NCOMP; c++) {
        if (!m->has[c]) continue;
        sd_param_table t;
        int trc = sd_model_table(m, (sd_component)c, &t);
        sd_weights_info wi;
        sd_clear_error();
        int wrc = sd_model_weights_info(m, (sd_component)c, &wi);
        const char *werr = wrc ? sd_last_error() : NULL;
        dtype_list(wrc ? 0 : wi.dtypes, dts, sizeof dts);
        if (json) {
            cJSON *o = cJSON_AddObjectToObject(comps, sd_component_name((sd_component)c));
            cJSON_AddStringToObject(o, "class", CLASS_OF[c]);
            cJSON_AddBoolToObject(o, "config_inferred", inferred);
            if (!trc) {
                cJSON_AddNumberToObject(o, "params", (double)t.total);
                cJSON_AddNumberToObject(o, "tensors", t.n);
            }
            if (!wrc) {
                cJSON_AddNumberToObject(o, "file_elements", (double)wi.elements);
                cJSON_AddNumberToObject(o, "file_tensors", wi.tensors);
                cJSON *d = cJSON_AddArrayToObject(o, "dtypes");
                for (int k = 1; k < SD_DTYPE_COUNT; k++)
                    if (wi.dtypes & (1u << k)) cJSON_AddItemToArray(d, cJSON_CreateString(sd_dtype_name((sd_dtype)k)));
                cJSON *f = cJSON_AddArrayToObject(o, "files");
                for (int k = 0; k < wi.nfiles && k < 8; k++) cJSON_AddItemToArray(f, cJSON_CreateString(wi.files[k]));
            } else {
                cJSON_AddStringToObject(o, "weights_error", werr);
            }
            cJSON_AddItemToObject(o, "config", c == SD_UNET ? unet_json(&m->unet)
                                                : c == SD_VAE ? vae_json(&m->vae) : text_json(&m->text));
        } else {
            fprintf(out, "%s: %s%s", sd_component_name((sd_component)c), CLASS_OF[c], inferred ? " (config inferred)" : "");
            if (!trc) fprintf(out, ", %s parameters in %d tensors", commas((long long)t.total, b1), t.n);
            if (!wrc) {
                fprintf(out, "; files: %s elements in %d tensors (%s)", commas(wi.elements, b2), wi.tensors, dts);
                if (!trc && (wi.elements != (int64_t)t.total))
                    fprintf(out, " [differs from the config by %s]", commas(wi.elements - (long long)t.total, b3));
                if (m->kind != SD_MODEL_SINGLE_FILE) {
                    fprintf(out, " in");
                    for (int k = 0; k < wi.nfiles && k < 8; k++) fprintf(out, " %s", wi.files[k]);
                    if (wi.nfiles > 8) fprintf(out, " … (%d files)", wi.nfiles);
                }
                fprintf(out, "\n");
            } else {
                fprintf(out, "\n  weights: error: %s\n", werr);
            }
            if (c == SD_UNET) sd_unet_config_summary(&m->unet, out, "  ");
            else if (c == SD_VAE) sd_vae_config_summary(&m->vae, out, "  ");
            else sd_clip_text_config_summary(&m->text, out, "  ");
        }
        if (!trc) sd_param_table_free(&t);
    }
    if (json) {
        if (m->has_scheduler) cJSON_AddItemToObject(root, "scheduler", sched_json(&m->scheduler));
        else cJSON_AddNullToObject(root, "scheduler");
        if (m->tokenizer_dir) cJSON_AddStringToObject(root, "tokenizer", m->tokenizer_dir);
        else cJSON_AddNullToObject(root, "tokenizer");
        char *s = cJSON_Print(root);
        for (const char *q = s; *q; q++) /* cJSON indents with tabs; two spaces like json.dump */
            if (*q == '\t') fputs("  ", out);
            else fputc(*q, out);
        fputc('\n', out);
        free(s);
        cJSON_Delete(root);
    } else {
        if (m->has_scheduler) {
            const sd_scheduler_config *s = &m->scheduler;
            fprintf(out, "scheduler: %s%s, prediction_type %s, %s betas %g..%g over %d steps, timestep_spacing %s\n",
                    s->class_name[0] ? s->class_name : "(no _class_name)", inferred && !m->priv->config_dir ? " (inferred)" : "",
                    s->prediction_type, s->beta_schedule, s->beta_start, s->beta_end, s->num_train_timesteps,
                    s->timestep_spacing[0] ? s->timestep_spacing : "(class default)");
        }
        fprintf(out, "tokenizer: %s\n", m->tokenizer_dir ? m->tokenizer_dir : "none");
    }
    sd_model_close(m);
    return 0;
}
