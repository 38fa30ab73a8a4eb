/* config.c — see config.h. Defaults follow diffusers 0.39 / transformers 4.57. */
#include "models/config.h"
#include "core/error.h"
#include "io/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DIFFUSERS_VERSION "0.39.0"

const char *sd_act_name(sd_act a) {
    switch (a) {
    case SD_ACT_SILU: return "silu";
    case SD_ACT_GELU: return "gelu";
    case SD_ACT_GELU_TANH: return "gelu_new";
    case SD_ACT_QUICK_GELU: return "quick_gelu";
    default: return "none";
    }
}

/* ---- strict typed lookups -------------------------------------------------
 * A key that is absent or JSON null takes the default; a key present with the
 * wrong type is an error naming it (a config we misread would be silently
 * wrong). */

static const cJSON *item(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

static int is_int_value(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 2147483647.0;
}

static int get_int(const cJSON *j, const char *w, const char *key, int def, int *out) {
    const cJSON *v = item(j, key);
    if (!v) { *out = def; return 0; }
    if (!is_int_value(v)) return sd_set_error("%s: %s: expected an integer", w, key);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_num(const cJSON *j, const char *w, const char *key, double def, double *out) {
    const cJSON *v = item(j, key);
    if (!v) { *out = def; return 0; }
    if (!cJSON_IsNumber(v)) return sd_set_error("%s: %s: expected a number", w, key);
    *out = v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *j, const char *w, const char *key, int def, int *out) {
    const cJSON *v = item(j, key);
    if (!v) { *out = def; return 0; }
    if (!cJSON_IsBool(v)) return sd_set_error("%s: %s: expected true or false", w, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int get_str(const cJSON *j, const char *w, const char *key, const char *def, const char **out) {
    const cJSON *v = item(j, key);
    if (!v) { *out = def; return 0; }
    if (!cJSON_IsString(v)) return sd_set_error("%s: %s: expected a string", w, key);
    *out = v->valuestring;
    return 0;
}

/* An int or a list of n ints (diffusers broadcasts an int to every block). */
static int get_int_list(const cJSON *j, const char *w, const char *key, int n, int def, int *out) {
    const cJSON *v = item(j, key);
    if (!v) { for (int i = 0; i < n; i++) out[i] = def; return 0; }
    if (is_int_value(v)) { for (int i = 0; i < n; i++) out[i] = (int)v->valuedouble; return 0; }
    if (!cJSON_IsArray(v)) return sd_set_error("%s: %s: expected an integer or a list of integers", w, key);
    int k = cJSON_GetArraySize(v);
    if (k != n)
        return sd_set_error("%s: %s has %d entries, but there are %d blocks (block_out_channels)", w, key, k, n);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (cJSON_IsArray(e))
            return sd_set_error("%s: %s[%d] is a nested list: unsupported (per-layer values)", w, key, i);
        if (!is_int_value(e)) return sd_set_error("%s: %s[%d]: expected an integer", w, key, i);
        out[i++] = (int)e->valuedouble;
    }
    return 0;
}

static int get_bool_list(const cJSON *j, const char *w, const char *key, int n, int def, int *out) {
    const cJSON *v = item(j, key);
    if (!v) { for (int i = 0; i < n; i++) out[i] = def; return 0; }
    if (cJSON_IsBool(v)) { for (int i = 0; i < n; i++) out[i] = cJSON_IsTrue(v); return 0; }
    if (!cJSON_IsArray(v)) return sd_set_error("%s: %s: expected true/false or a list of them", w, key);
    int k = cJSON_GetArraySize(v);
    if (k != n) return sd_set_error("%s: %s has %d entries, but there are %d blocks", w, key, k, n);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsBool(e)) return sd_set_error("%s: %s[%d]: expected true or false", w, key, i);
        out[i++] = cJSON_IsTrue(e);
    }
    return 0;
}

/* A list of strings; *n = count. Default list when absent. */
static int get_str_list(const cJSON *j, const char *w, const char *key, const char *const *def, int ndef,
                        const char **out, int max, int *n) {
    const cJSON *v = item(j, key);
    if (!v) {
        for (int i = 0; i < ndef; i++) out[i] = def[i];
        *n = ndef;
        return 0;
    }
    if (!cJSON_IsArray(v)) return sd_set_error("%s: %s: expected a list of strings", w, key);
    int k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsString(e)) return sd_set_error("%s: %s[%d]: expected a string", w, key, k);
        if (k >= max) return sd_set_error("%s: %s: more than %d entries: unsupported", w, key, max);
        out[k++] = e->valuestring;
    }
    if (k == 0) return sd_set_error("%s: %s is empty", w, key);
    *n = k;
    return 0;
}

/* A key that must be absent, null, or equal to its "off" value. */
static int must_be_null(const cJSON *j, const char *w, const char *key) {
    const cJSON *v = item(j, key);
    if (!v) return 0;
    char *s = sd_json_compact(v);
    int rc = sd_set_error("%s: %s = %s: unsupported (only null)", w, key, s);
    free(s);
    return rc;
}

static int must_be_false(const cJSON *j, const char *w, const char *key) {
    const cJSON *v = item(j, key);
    if (!v || cJSON_IsFalse(v)) return 0;
    char *s = sd_json_compact(v);
    int rc = sd_set_error("%s: %s = %s: unsupported (only false)", w, key, s);
    free(s);
    return rc;
}

static int must_be_str(const cJSON *j, const char *w, const char *key, const char *only) {
    const char *s = only;
    if (get_str(j, w, key, only, &s)) return -1;
    if (strcmp(s, only) != 0) return sd_set_error("%s: %s = \"%s\": unsupported (only \"%s\")", w, key, s, only);
    return 0;
}

static int parse_act(const char *w, const char *key, const char *s, sd_act *out) {
    if (!strcmp(s, "silu") || !strcmp(s, "swish")) *out = SD_ACT_SILU;
    else if (!strcmp(s, "gelu")) *out = SD_ACT_GELU;
    else if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_fast")) *out = SD_ACT_GELU_TANH;
    else if (!strcmp(s, "quick_gelu")) *out = SD_ACT_QUICK_GELU;
    else return sd_set_error("%s: %s = \"%s\": unsupported activation", w, key, s);
    return 0;
}

static int check_class(const cJSON *j, const char *w, const char *want) {
    const char *cls = want;
    if (get_str(j, w, "_class_name", want, &cls)) return -1;
    if (strcmp(cls, want) != 0) return sd_set_error("%s: _class_name = \"%s\": expected \"%s\"", w, cls, want);
    return 0;
}

static int get_sample_size(const cJSON *j, const char *w, int def, int out[2]) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "sample_size");
    if (!v) { out[0] = out[1] = def; return 0; }
    if (cJSON_IsNull(v)) { out[0] = out[1] = 0; return 0; }
    if (is_int_value(v)) { out[0] = out[1] = (int)v->valuedouble; return 0; }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 && is_int_value(cJSON_GetArrayItem(v, 0)) &&
        is_int_value(cJSON_GetArrayItem(v, 1))) {
        out[0] = (int)cJSON_GetArrayItem(v, 0)->valuedouble;
        out[1] = (int)cJSON_GetArrayItem(v, 1)->valuedouble;
        return 0;
    }
    return sd_set_error("%s: sample_size: expected an integer or [height, width]", w);
}

/* ---- UNet ---------------------------------------------------------------- */

static const char *const UNET_DOWN_DEFAULT[] = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                                "DownBlock2D"};
static const char *const UNET_UP_DEFAULT[] = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                              "CrossAttnUpBlock2D"};

void sd_unet_config_default(sd_unet_config *c) {
    memset(c, 0, sizeof *c);
    static const int boc[4] = {320, 640, 1280, 1280};
    c->in_channels = c->out_channels = 4;
    c->sample_size[0] = c->sample_size[1] = 0; /* diffusers default None */
    c->flip_sin_to_cos = 1;
    c->num_levels = 4;
    for (int i = 0; i < 4; i++) {
        c->block_out_channels[i] = boc[i];
        c->layers_per_block[i] = 2;
        c->down_cross_attn[i] = i < 3;
        c->up_cross_attn[i] = i > 0;
        c->num_heads[i] = 8;
        c->transformer_layers[i] = 1;
        c->cross_attention_dim[i] = 1280;
    }
    c->has_mid_block = 1;
    c->norm_num_groups = 32;
    c->norm_eps = 1e-5;
    c->downsample_padding = 1;
    c->mid_block_scale_factor = 1.0;
    c->resnet_out_scale_factor = 1.0;
    c->conv_in_kernel = c->conv_out_kernel = 3;
    c->time_embed_dim = 4 * 320;
    c->act_fn = SD_ACT_SILU;
}

int sd_unet_config_parse(const cJSON *j, const char *w, sd_unet_config *c) {
    memset(c, 0, sizeof *c);
    if (!cJSON_IsObject(j)) return sd_set_error("%s: expected a JSON object", w);
    if (check_class(j, w, "UNet2DConditionModel")) return -1;

    const char *down[SD_UNET_MAX_LEVELS + 1], *up[SD_UNET_MAX_LEVELS + 1];
    int nd, nu, n;
    if (get_str_list(j, w, "down_block_types", UNET_DOWN_DEFAULT, 4, down, SD_UNET_MAX_LEVELS, &nd)) return -1;
    if (get_str_list(j, w, "up_block_types", UNET_UP_DEFAULT, 4, up, SD_UNET_MAX_LEVELS, &nu)) return -1;
    if (nd != nu)
        return sd_set_error("%s: %d down_block_types but %d up_block_types (must be equal)", w, nd, nu);
    n = nd;
    c->num_levels = n;
    for (int i = 0; i < n; i++) {
        if (!strcmp(down[i], "CrossAttnDownBlock2D")) c->down_cross_attn[i] = 1;
        else if (!strcmp(down[i], "DownBlock2D")) c->down_cross_attn[i] = 0;
        else
            return sd_set_error("%s: down_block_types[%d] = \"%s\": unsupported (supported: DownBlock2D, "
                                "CrossAttnDownBlock2D)", w, i, down[i]);
        if (!strcmp(up[i], "CrossAttnUpBlock2D")) c->up_cross_attn[i] = 1;
        else if (!strcmp(up[i], "UpBlock2D")) c->up_cross_attn[i] = 0;
        else
            return sd_set_error("%s: up_block_types[%d] = \"%s\": unsupported (supported: UpBlock2D, "
                                "CrossAttnUpBlock2D)", w, i, up[i]);
    }

    /* block_out_channels: must be a list of n ints (default SD's 4 levels) */
    const cJSON *boc = item(j, "block_out_channels");
    if (!boc) {
        if (n != 4)
            return sd_set_error("%s: block_out_channels missing (the default has 4 entries, there are %d blocks)", w, n);
        static const int d[4] = {320, 640, 1280, 1280};
        memcpy(c->block_out_channels, d, sizeof d);
    } else {
        if (!cJSON_IsArray(boc)) return sd_set_error("%s: block_out_channels: expected a list of integers", w);
        if (cJSON_GetArraySize(boc) != n)
            return sd_set_error("%s: block_out_channels has %d entries, but there are %d down blocks", w,
                                cJSON_GetArraySize(boc), n);
        if (get_int_list(j, w, "block_out_channels", n, 0, c->block_out_channels)) return -1;
    }

    if (get_int_list(j, w, "layers_per_block", n, 2, c->layers_per_block)) return -1;

    /* heads: num_attention_heads wins when given (diffusers 0.39 itself
     * refuses that key for this class; its meaning is unambiguous, so we
     * honour it); otherwise attention_head_dim holds the head count. */
    const cJSON *nah = item(j, "num_attention_heads");
    if (nah) {
        if (get_int_list(j, w, "num_attention_heads", n, 0, c->num_heads)) return -1;
    } else {
        if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "attention_head_dim")))
            return sd_set_error("%s: attention_head_dim and num_attention_heads are both null", w);
        if (get_int_list(j, w, "attention_head_dim", n, 8, c->num_heads)) return -1;
    }

    if (get_int_list(j, w, "transformer_layers_per_block", n, 1, c->transformer_layers)) return -1;
    if (must_be_null(j, w, "reverse_transformer_layers_per_block")) return -1;

    const cJSON *xd = cJSON_GetObjectItemCaseSensitive(j, "cross_attention_dim");
    if (cJSON_IsNull(xd)) return sd_set_error("%s: cross_attention_dim = null: unsupported", w);
    if (get_int_list(j, w, "cross_attention_dim", n, 1280, c->cross_attention_dim)) return -1;

    if (get_bool_list(j, w, "only_cross_attention", n, 0, c->only_cross_attention)) return -1;
    {
        const cJSON *oca = item(j, "only_cross_attention");
        int def = (oca && cJSON_IsBool(oca)) ? cJSON_IsTrue(oca) : 0; /* diffusers: bool broadcasts to the mid block */
        if (get_bool(j, w, "mid_block_only_cross_attention", def, &c->mid_only_cross_attention)) return -1;
    }

    const cJSON *mbt = cJSON_GetObjectItemCaseSensitive(j, "mid_block_type");
    if (cJSON_IsNull(mbt)) c->has_mid_block = 0;
    else {
        const char *s = "";
        if (get_str(j, w, "mid_block_type", "UNetMidBlock2DCrossAttn", &s)) return -1;
        if (strcmp(s, "UNetMidBlock2DCrossAttn") != 0)
            return sd_set_error("%s: mid_block_type = \"%s\": unsupported (only UNetMidBlock2DCrossAttn or null)", w, s);
        c->has_mid_block = 1;
    }

    const char *s = "";
    if (get_int(j, w, "in_channels", 4, &c->in_channels)) return -1;
    if (get_int(j, w, "out_channels", 4, &c->out_channels)) return -1;
    if (get_sample_size(j, w, 0, c->sample_size)) return -1;
    if (get_bool(j, w, "center_input_sample", 0, &c->center_input_sample)) return -1;
    if (get_bool(j, w, "flip_sin_to_cos", 1, &c->flip_sin_to_cos)) return -1;
    if (get_num(j, w, "freq_shift", 0, &c->freq_shift)) return -1;
    if (get_int(j, w, "downsample_padding", 1, &c->downsample_padding)) return -1;
    if (get_num(j, w, "mid_block_scale_factor", 1.0, &c->mid_block_scale_factor)) return -1;
    if (get_num(j, w, "resnet_out_scale_factor", 1.0, &c->resnet_out_scale_factor)) return -1;
    if (get_num(j, w, "dropout", 0.0, &c->dropout)) return -1;
    if (get_str(j, w, "act_fn", "silu", &s) || parse_act(w, "act_fn", s, &c->act_fn)) return -1;
    if (c->act_fn != SD_ACT_SILU) return sd_set_error("%s: act_fn = \"%s\": unsupported (only silu)", w, s);
    if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "norm_num_groups")))
        return sd_set_error("%s: norm_num_groups = null: unsupported (no output GroupNorm)", w);
    if (get_int(j, w, "norm_num_groups", 32, &c->norm_num_groups)) return -1;
    if (get_num(j, w, "norm_eps", 1e-5, &c->norm_eps)) return -1;
    if (get_bool(j, w, "use_linear_projection", 0, &c->use_linear_projection)) return -1;
    if (get_bool(j, w, "upcast_attention", 0, &c->upcast_attention)) return -1;
    if (get_int(j, w, "conv_in_kernel", 3, &c->conv_in_kernel)) return -1;
    if (get_int(j, w, "conv_out_kernel", 3, &c->conv_out_kernel)) return -1;
    int ted;
    if (get_int(j, w, "time_embedding_dim", 0, &ted)) return -1;

    /* everything we do not implement, refused by name */
    if (must_be_str(j, w, "resnet_time_scale_shift", "default")) return -1;
    if (must_be_str(j, w, "time_embedding_type", "positional")) return -1;
    if (must_be_str(j, w, "attention_type", "default")) return -1;
    if (must_be_false(j, w, "resnet_skip_time_act")) return -1;
    if (must_be_false(j, w, "dual_cross_attention")) return -1;
    if (must_be_false(j, w, "class_embeddings_concat")) return -1;
    static const char *const null_keys[] = {"class_embed_type", "num_class_embeds", "addition_embed_type",
                                            "encoder_hid_dim", "encoder_hid_dim_type", "time_cond_proj_dim",
                                            "time_embedding_act_fn", "timestep_post_act", "cross_attention_norm"};
    for (size_t k = 0; k < sizeof null_keys / sizeof null_keys[0]; k++)
        if (must_be_null(j, w, null_keys[k])) return -1;

    c->time_embed_dim = ted > 0 ? ted : 4 * c->block_out_channels[0];
    if (sd_unet_config_derive(c)) return sd_error_prefix("%s", w);
    c->raw = cJSON_Duplicate(j, 1);
    return 0;
}

int sd_unet_config_derive(sd_unet_config *c) {
    int n = c->num_levels;
    if (n < 1 || n > SD_UNET_MAX_LEVELS) return sd_set_error("%d blocks: unsupported (1..%d)", n, SD_UNET_MAX_LEVELS);
    int G = c->norm_num_groups;
    if (G < 1) return sd_set_error("norm_num_groups = %d: must be positive", G);
    if (c->in_channels < 1 || c->out_channels < 1) return sd_set_error("in/out_channels must be positive");
    if (c->conv_in_kernel < 1 || c->conv_in_kernel % 2 == 0 || c->conv_out_kernel < 1 || c->conv_out_kernel % 2 == 0)
        return sd_set_error("conv_in_kernel/conv_out_kernel must be odd and positive");
    if (c->time_embed_dim < 1) return sd_set_error("time embedding dim must be positive");
    if (c->downsample_padding < 0) return sd_set_error("downsample_padding = %d: negative", c->downsample_padding);
    for (int i = 0; i < n; i++) {
        if (c->block_out_channels[i] < 1) return sd_set_error("block_out_channels[%d] = %d: must be positive", i, c->block_out_channels[i]);
        if (c->block_out_channels[i] % G)
            return sd_set_error("block_out_channels[%d] = %d is not divisible by norm_num_groups = %d", i,
                                c->block_out_channels[i], G);
        if (c->layers_per_block[i] < 1 || c->layers_per_block[i] + 1 > SD_UNET_MAX_LAYERS)
            return sd_set_error("layers_per_block[%d] = %d: unsupported (1..%d)", i, c->layers_per_block[i],
                                SD_UNET_MAX_LAYERS - 1);
        if (c->transformer_layers[i] < 1)
            return sd_set_error("transformer_layers_per_block[%d] = %d: must be positive", i, c->transformer_layers[i]);
        if (c->cross_attention_dim[i] < 1)
            return sd_set_error("cross_attention_dim[%d] = %d: must be positive", i, c->cross_attention_dim[i]);
        if (c->num_heads[i] < 1) return sd_set_error("attention heads[%d] = %d: must be positive", i, c->num_heads[i]);
    }

    /* The skip stack the down path pushes (widths), to check the up path. */
    int skips[1 + SD_UNET_MAX_LEVELS * (SD_UNET_MAX_LAYERS + 1)], ns = 0;
    skips[ns++] = c->block_out_channels[0]; /* conv_in */

    for (int i = 0; i < n; i++) {
        sd_unet_block *b = &c->down[i];
        memset(b, 0, sizeof *b);
        b->cross_attn = c->down_cross_attn[i];
        b->num_resnets = c->layers_per_block[i];
        b->in_channels = i == 0 ? c->block_out_channels[0] : c->block_out_channels[i - 1];
        b->out_channels = c->block_out_channels[i];
        for (int r = 0; r < b->num_resnets; r++) {
            b->resnet_in[r] = r == 0 ? b->in_channels : b->out_channels;
            skips[ns++] = b->out_channels;
        }
        b->heads = c->num_heads[i];
        b->head_dim = b->out_channels / b->heads;
        b->transformer_layers = c->transformer_layers[i];
        b->cross_attention_dim = c->cross_attention_dim[i];
        b->only_cross_attention = c->only_cross_attention[i];
        b->sampler = i < n - 1;
        if (b->sampler) skips[ns++] = b->out_channels;
        if (b->cross_attn && b->out_channels % b->heads)
            return sd_set_error("down block %d: %d channels are not divisible by %d attention heads", i,
                                b->out_channels, b->heads);
    }

    sd_unet_block *m = &c->mid;
    memset(m, 0, sizeof *m);
    if (c->has_mid_block) {
        m->cross_attn = 1;
        m->num_resnets = 2;
        m->in_channels = m->out_channels = c->block_out_channels[n - 1];
        m->resnet_in[0] = m->resnet_in[1] = m->in_channels;
        m->heads = c->num_heads[n - 1];
        m->head_dim = m->out_channels / m->heads;
        m->transformer_layers = c->transformer_layers[n - 1];
        m->cross_attention_dim = c->cross_attention_dim[n - 1];
        m->only_cross_attention = c->mid_only_cross_attention;
        if (m->out_channels % m->heads)
            return sd_set_error("mid block: %d channels are not divisible by %d attention heads", m->out_channels, m->heads);
    }

    for (int i = 0; i < n; i++) {
        int r = n - 1 - i; /* the down level this up block mirrors */
        sd_unet_block *b = &c->up[i];
        memset(b, 0, sizeof *b);
        b->cross_attn = c->up_cross_attn[i];
        b->num_resnets = c->layers_per_block[r] + 1;
        b->out_channels = c->block_out_channels[r];
        b->prev_out_channels = i == 0 ? c->block_out_channels[n - 1] : c->up[i - 1].out_channels;
        b->in_channels = c->block_out_channels[r > 0 ? r - 1 : 0];
        for (int k = 0; k < b->num_resnets; k++) {
            int skip = k == b->num_resnets - 1 ? b->in_channels : b->out_channels;
            int h = k == 0 ? b->prev_out_channels : b->out_channels;
            b->resnet_skip[k] = skip;
            b->resnet_in[k] = h + skip;
            if (ns == 0) return sd_set_error("up block %d resnet %d: no skip left (inconsistent layers_per_block)", i, k);
            int have = skips[--ns];
            if (have != skip)
                return sd_set_error("up block %d resnet %d expects a %d-channel skip, the down path provides %d "
                                    "(inconsistent block_out_channels/layers_per_block)", i, k, skip, have);
            if (b->resnet_in[k] % G)
                return sd_set_error("up block %d resnet %d: %d input channels not divisible by norm_num_groups = %d",
                                    i, k, b->resnet_in[k], G);
        }
        b->heads = c->num_heads[r];
        b->head_dim = b->out_channels / b->heads;
        b->transformer_layers = c->transformer_layers[r];
        b->cross_attention_dim = c->cross_attention_dim[r];
        b->only_cross_attention = c->only_cross_attention[r];
        b->sampler = i < n - 1;
        if (b->cross_attn && b->out_channels % b->heads)
            return sd_set_error("up block %d: %d channels are not divisible by %d attention heads", i, b->out_channels,
                                b->heads);
    }
    if (ns != 0) return sd_set_error("%d skip connections left unused (inconsistent layers_per_block)", ns);
    return 0;
}

int sd_unet_config_load(const char *path, sd_unet_config *c) {
    cJSON *j;
    memset(c, 0, sizeof *c);
    if (sd_json_load(path, &j)) return -1;
    int rc = sd_unet_config_parse(j, path, c);
    cJSON_Delete(j);
    return rc;
}

void sd_unet_config_free(sd_unet_config *c) {
    if (c->raw) cJSON_Delete(c->raw);
    c->raw = NULL;
}

static int all_same(const int *v, int n) {
    for (int i = 1; i < n; i++)
        if (v[i] != v[0]) return 0;
    return 1;
}

/* An int when every entry is equal (diffusers' own files do this), else a list. */
static void add_int_or_list(cJSON *o, const char *key, const int *v, int n) {
    if (all_same(v, n)) cJSON_AddNumberToObject(o, key, v[0]);
    else cJSON_AddItemToObject(o, key, cJSON_CreateIntArray(v, n));
}

static void add_bool_or_list(cJSON *o, const char *key, const int *v, int n) {
    if (all_same(v, n)) cJSON_AddBoolToObject(o, key, v[0]);
    else {
        cJSON *a = cJSON_CreateArray();
        for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateBool(v[i]));
        cJSON_AddItemToObject(o, key, a);
    }
}

static void add_str_list(cJSON *o, const char *key, const char *const *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
    cJSON_AddItemToObject(o, key, a);
}

static void add_sample_size(cJSON *o, const int s[2]) {
    if (s[0] == 0 && s[1] == 0) cJSON_AddNullToObject(o, "sample_size");
    else if (s[0] == s[1]) cJSON_AddNumberToObject(o, "sample_size", s[0]);
    else cJSON_AddItemToObject(o, "sample_size", cJSON_CreateIntArray(s, 2));
}

cJSON *sd_unet_config_to_json(const sd_unet_config *c) {
    if (c->raw) return cJSON_Duplicate(c->raw, 1);
    int n = c->num_levels;
    const char *down[SD_UNET_MAX_LEVELS], *up[SD_UNET_MAX_LEVELS];
    for (int i = 0; i < n; i++) {
        down[i] = c->down_cross_attn[i] ? "CrossAttnDownBlock2D" : "DownBlock2D";
        up[i] = c->up_cross_attn[i] ? "CrossAttnUpBlock2D" : "UpBlock2D";
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "UNet2DConditionModel");
    cJSON_AddStringToObject(o, "_diffusers_version", DIFFUSERS_VERSION);
    cJSON_AddStringToObject(o, "act_fn", "silu");
    add_int_or_list(o, "attention_head_dim", c->num_heads, n);
    cJSON_AddItemToObject(o, "block_out_channels", cJSON_CreateIntArray(c->block_out_channels, n));
    cJSON_AddBoolToObject(o, "center_input_sample", c->center_input_sample);
    cJSON_AddNullToObject(o, "class_embed_type");
    cJSON_AddNumberToObject(o, "conv_in_kernel", c->conv_in_kernel);
    cJSON_AddNumberToObject(o, "conv_out_kernel", c->conv_out_kernel);
    add_int_or_list(o, "cross_attention_dim", c->cross_attention_dim, n);
    add_str_list(o, "down_block_types", down, n);
    cJSON_AddNumberToObject(o, "downsample_padding", c->downsample_padding);
    cJSON_AddNumberToObject(o, "dropout", c->dropout);
    cJSON_AddBoolToObject(o, "dual_cross_attention", 0);
    cJSON_AddBoolToObject(o, "flip_sin_to_cos", c->flip_sin_to_cos);
    cJSON_AddNumberToObject(o, "freq_shift", c->freq_shift);
    cJSON_AddNumberToObject(o, "in_channels", c->in_channels);
    add_int_or_list(o, "layers_per_block", c->layers_per_block, n);
    cJSON_AddBoolToObject(o, "mid_block_only_cross_attention", c->mid_only_cross_attention);
    cJSON_AddNumberToObject(o, "mid_block_scale_factor", c->mid_block_scale_factor);
    if (c->has_mid_block) cJSON_AddStringToObject(o, "mid_block_type", "UNetMidBlock2DCrossAttn");
    else cJSON_AddNullToObject(o, "mid_block_type");
    cJSON_AddNumberToObject(o, "norm_eps", c->norm_eps);
    cJSON_AddNumberToObject(o, "norm_num_groups", c->norm_num_groups);
    cJSON_AddNullToObject(o, "num_attention_heads");
    cJSON_AddNullToObject(o, "num_class_embeds");
    add_bool_or_list(o, "only_cross_attention", c->only_cross_attention, n);
    cJSON_AddNumberToObject(o, "out_channels", c->out_channels);
    cJSON_AddNumberToObject(o, "resnet_out_scale_factor", c->resnet_out_scale_factor);
    cJSON_AddStringToObject(o, "resnet_time_scale_shift", "default");
    add_sample_size(o, c->sample_size);
    if (c->time_embed_dim != 4 * c->block_out_channels[0]) cJSON_AddNumberToObject(o, "time_embedding_dim", c->time_embed_dim);
    else cJSON_AddNullToObject(o, "time_embedding_dim");
    cJSON_AddStringToObject(o, "time_embedding_type", "positional");
    add_int_or_list(o, "transformer_layers_per_block", c->transformer_layers, n);
    add_str_list(o, "up_block_types", up, n);
    cJSON_AddBoolToObject(o, "upcast_attention", c->upcast_attention);
    cJSON_AddBoolToObject(o, "use_linear_projection", c->use_linear_projection);
    return o;
}

/* ---- VAE ----------------------------------------------------------------- */

void sd_vae_config_default(sd_vae_config *c) {
    memset(c, 0, sizeof *c);
    c->in_channels = c->out_channels = 3;
    c->latent_channels = 4;
    c->num_levels = 1;
    c->block_out_channels[0] = 64;
    c->layers_per_block = 1;
    c->norm_num_groups = 32;
    c->sample_size = 32;
    c->scaling_factor = 0.18215;
    c->force_upcast = c->use_quant_conv = c->use_post_quant_conv = c->mid_block_add_attention = 1;
    c->act_fn = SD_ACT_SILU;
}

int sd_vae_config_validate(const sd_vae_config *c) {
    if (c->num_levels < 1 || c->num_levels > SD_VAE_MAX_LEVELS)
        return sd_set_error("%d blocks: unsupported (1..%d)", c->num_levels, SD_VAE_MAX_LEVELS);
    if (c->norm_num_groups < 1) return sd_set_error("norm_num_groups = %d: must be positive", c->norm_num_groups);
    if (c->layers_per_block < 1 || c->layers_per_block > 64)
        return sd_set_error("layers_per_block = %d: unsupported", c->layers_per_block);
    if (c->in_channels < 1 || c->out_channels < 1 || c->latent_channels < 1)
        return sd_set_error("in/out/latent channels must be positive");
    for (int i = 0; i < c->num_levels; i++) {
        if (c->block_out_channels[i] < 1) return sd_set_error("block_out_channels[%d] must be positive", i);
        if (c->block_out_channels[i] % c->norm_num_groups)
            return sd_set_error("block_out_channels[%d] = %d is not divisible by norm_num_groups = %d", i,
                                c->block_out_channels[i], c->norm_num_groups);
    }
    return 0;
}

int sd_vae_config_parse(const cJSON *j, const char *w, sd_vae_config *c) {
    sd_vae_config_default(c);
    if (!cJSON_IsObject(j)) return sd_set_error("%s: expected a JSON object", w);
    if (check_class(j, w, "AutoencoderKL")) return -1;
    static const char *const ddef[] = {"DownEncoderBlock2D"}, *const udef[] = {"UpDecoderBlock2D"};
    const char *down[SD_VAE_MAX_LEVELS + 1], *up[SD_VAE_MAX_LEVELS + 1];
    int nd, nu;
    if (get_str_list(j, w, "down_block_types", ddef, 1, down, SD_VAE_MAX_LEVELS, &nd)) return -1;
    if (get_str_list(j, w, "up_block_types", udef, 1, up, SD_VAE_MAX_LEVELS, &nu)) return -1;
    for (int i = 0; i < nd; i++)
        if (strcmp(down[i], "DownEncoderBlock2D"))
            return sd_set_error("%s: down_block_types[%d] = \"%s\": unsupported (only DownEncoderBlock2D)", w, i, down[i]);
    for (int i = 0; i < nu; i++)
        if (strcmp(up[i], "UpDecoderBlock2D"))
            return sd_set_error("%s: up_block_types[%d] = \"%s\": unsupported (only UpDecoderBlock2D)", w, i, up[i]);
    const cJSON *boc = item(j, "block_out_channels");
    int n = 1;
    if (boc) {
        if (!cJSON_IsArray(boc)) return sd_set_error("%s: block_out_channels: expected a list of integers", w);
        n = cJSON_GetArraySize(boc);
        if (n < 1 || n > SD_VAE_MAX_LEVELS) return sd_set_error("%s: block_out_channels: %d entries: unsupported", w, n);
        if (get_int_list(j, w, "block_out_channels", n, 0, c->block_out_channels)) return -1;
    }
    /* diffusers zips types with channels: the encoder builds len(down_block_types)
     * blocks indexing block_out_channels, the decoder len(up_block_types). */
    if (nd != n || nu != n)
        return sd_set_error("%s: %d down_block_types, %d up_block_types, %d block_out_channels (must be equal)", w, nd,
                            nu, n);
    c->num_levels = n;
    const char *s = "";
    const cJSON *lpb = item(j, "layers_per_block");
    if (lpb && cJSON_IsArray(lpb)) return sd_set_error("%s: layers_per_block: a list is unsupported for AutoencoderKL", w);
    if (get_int(j, w, "layers_per_block", 1, &c->layers_per_block)) return -1;
    if (get_int(j, w, "in_channels", 3, &c->in_channels)) return -1;
    if (get_int(j, w, "out_channels", 3, &c->out_channels)) return -1;
    if (get_int(j, w, "latent_channels", 4, &c->latent_channels)) return -1;
    if (get_int(j, w, "norm_num_groups", 32, &c->norm_num_groups)) return -1;
    int ss[2];
    if (get_sample_size(j, w, 32, ss)) return -1;
    c->sample_size = ss[0];
    if (get_num(j, w, "scaling_factor", 0.18215, &c->scaling_factor)) return -1;
    const cJSON *sf = item(j, "shift_factor");
    if (sf) {
        if (!cJSON_IsNumber(sf)) return sd_set_error("%s: shift_factor: expected a number or null", w);
        c->has_shift_factor = 1;
        c->shift_factor = sf->valuedouble;
    }
    c->has_latents_mean = item(j, "latents_mean") != NULL || item(j, "latents_std") != NULL;
    if (get_bool(j, w, "force_upcast", 1, &c->force_upcast)) return -1;
    if (get_bool(j, w, "use_quant_conv", 1, &c->use_quant_conv)) return -1;
    if (get_bool(j, w, "use_post_quant_conv", 1, &c->use_post_quant_conv)) return -1;
    if (get_bool(j, w, "mid_block_add_attention", 1, &c->mid_block_add_attention)) return -1;
    if (get_str(j, w, "act_fn", "silu", &s) || parse_act(w, "act_fn", s, &c->act_fn)) return -1;
    if (c->act_fn != SD_ACT_SILU) return sd_set_error("%s: act_fn = \"%s\": unsupported (only silu)", w, s);
    if (sd_vae_config_validate(c)) return sd_error_prefix("%s", w);
    c->raw = cJSON_Duplicate(j, 1);
    return 0;
}

int sd_vae_config_load(const char *path, sd_vae_config *c) {
    cJSON *j;
    memset(c, 0, sizeof *c);
    if (sd_json_load(path, &j)) return -1;
    int rc = sd_vae_config_parse(j, path, c);
    cJSON_Delete(j);
    return rc;
}

void sd_vae_config_free(sd_vae_config *c) {
    if (c->raw) cJSON_Delete(c->raw);
    c->raw = NULL;
}

cJSON *sd_vae_config_to_json(const sd_vae_config *c) {
    if (c->raw) return cJSON_Duplicate(c->raw, 1);
    int n = c->num_levels;
    const char *down[SD_VAE_MAX_LEVELS], *up[SD_VAE_MAX_LEVELS];
    for (int i = 0; i < n; i++) { down[i] = "DownEncoderBlock2D"; up[i] = "UpDecoderBlock2D"; }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "AutoencoderKL");
    cJSON_AddStringToObject(o, "_diffusers_version", DIFFUSERS_VERSION);
    cJSON_AddStringToObject(o, "act_fn", "silu");
    cJSON_AddItemToObject(o, "block_out_channels", cJSON_CreateIntArray(c->block_out_channels, n));
    add_str_list(o, "down_block_types", down, n);
    cJSON_AddBoolToObject(o, "force_upcast", c->force_upcast);
    cJSON_AddNumberToObject(o, "in_channels", c->in_channels);
    cJSON_AddNumberToObject(o, "latent_channels", c->latent_channels);
    cJSON_AddNullToObject(o, "latents_mean");
    cJSON_AddNullToObject(o, "latents_std");
    cJSON_AddNumberToObject(o, "layers_per_block", c->layers_per_block);
    cJSON_AddBoolToObject(o, "mid_block_add_attention", c->mid_block_add_attention);
    cJSON_AddNumberToObject(o, "norm_num_groups", c->norm_num_groups);
    cJSON_AddNumberToObject(o, "out_channels", c->out_channels);
    cJSON_AddNumberToObject(o, "sample_size", c->sample_size);
    cJSON_AddNumberToObject(o, "scaling_factor", c->scaling_factor);
    if (c->has_shift_factor) cJSON_AddNumberToObject(o, "shift_factor", c->shift_factor);
    else cJSON_AddNullToObject(o, "shift_factor");
    add_str_list(o, "up_block_types", up, n);
    cJSON_AddBoolToObject(o, "use_post_quant_conv", c->use_post_quant_conv);
    cJSON_AddBoolToObject(o, "use_quant_conv", c->use_quant_conv);
    return o;
}

/* ---- CLIP text ----------------------------------------------------------- */

void sd_clip_text_config_default(sd_clip_text_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 49408;
    c->hidden_size = 512;
    c->intermediate_size = 2048;
    c->projection_dim = 512;
    c->num_hidden_layers = 12;
    c->num_attention_heads = 8;
    c->max_position_embeddings = 77;
    c->hidden_act = SD_ACT_QUICK_GELU;
    c->layer_norm_eps = 1e-5;
    c->pad_token_id = 1;
    c->bos_token_id = 49406;
    c->eos_token_id = 49407;
}

int sd_clip_text_config_validate(const sd_clip_text_config *c) {
    if (c->vocab_size < 1 || c->hidden_size < 1 || c->intermediate_size < 1 || c->num_hidden_layers < 1 ||
        c->num_attention_heads < 1 || c->max_position_embeddings < 1)
        return sd_set_error("sizes must be positive");
    if (c->hidden_size % c->num_attention_heads)
        return sd_set_error("hidden_size = %d is not divisible by num_attention_heads = %d", c->hidden_size,
                            c->num_attention_heads);
    return 0;
}

int sd_clip_text_config_parse(const cJSON *j0, const char *w, sd_clip_text_config *c) {
    sd_clip_text_config_default(c);
    if (!cJSON_IsObject(j0)) return sd_set_error("%s: expected a JSON object", w);
    const cJSON *j = j0;
    const cJSON *tc = item(j0, "text_config"); /* a full CLIPConfig */
    if (tc) {
        if (!cJSON_IsObject(tc)) return sd_set_error("%s: text_config: expected an object", w);
        j = tc;
    }
    const cJSON *arch = item(j0, "architectures");
    if (arch) {
        const cJSON *a0 = cJSON_IsArray(arch) ? cJSON_GetArrayItem(arch, 0) : NULL;
        if (!cJSON_IsString(a0)) return sd_set_error("%s: architectures: expected a list of strings", w);
        if (strcmp(a0->valuestring, "CLIPTextModel"))
            return sd_set_error("%s: architectures = [\"%s\"]: unsupported (only CLIPTextModel)", w, a0->valuestring);
    }
    const char *mt;
    if (get_str(j, w, "model_type", "clip_text_model", &mt)) return -1;
    if (strcmp(mt, "clip_text_model") && strcmp(mt, "clip"))
        return sd_set_error("%s: model_type = \"%s\": expected clip_text_model", w, mt);
    const char *s = "";
    if (get_int(j, w, "vocab_size", 49408, &c->vocab_size)) return -1;
    if (get_int(j, w, "hidden_size", 512, &c->hidden_size)) return -1;
    if (get_int(j, w, "intermediate_size", 2048, &c->intermediate_size)) return -1;
    if (get_int(j, w, "projection_dim", 512, &c->projection_dim)) return -1;
    if (get_int(j, w, "num_hidden_layers", 12, &c->num_hidden_layers)) return -1;
    if (get_int(j, w, "num_attention_heads", 8, &c->num_attention_heads)) return -1;
    if (get_int(j, w, "max_position_embeddings", 77, &c->max_position_embeddings)) return -1;
    if (get_str(j, w, "hidden_act", "quick_gelu", &s) || parse_act(w, "hidden_act", s, &c->hidden_act)) return -1;
    if (c->hidden_act == SD_ACT_SILU) return sd_set_error("%s: hidden_act = \"%s\": unsupported", w, s);
    if (get_num(j, w, "layer_norm_eps", 1e-5, &c->layer_norm_eps)) return -1;
    if (get_int(j, w, "bos_token_id", 49406, &c->bos_token_id)) return -1;
    if (get_int(j, w, "eos_token_id", 49407, &c->eos_token_id)) return -1;
    if (get_int(j, w, "pad_token_id", 1, &c->pad_token_id)) return -1;
    if (sd_clip_text_config_validate(c)) return sd_error_prefix("%s", w);
    c->raw = cJSON_Duplicate(j0, 1);
    return 0;
}

int sd_clip_text_config_load(const char *path, sd_clip_text_config *c) {
    cJSON *j;
    memset(c, 0, sizeof *c);
    if (sd_json_load(path, &j)) return -1;
    int rc = sd_clip_text_config_parse(j, path, c);
    cJSON_Delete(j);
    return rc;
}

void sd_clip_text_config_free(sd_clip_text_config *c) {
    if (c->raw) cJSON_Delete(c->raw);
    c->raw = NULL;
}

cJSON *sd_clip_text_config_to_json(const sd_clip_text_config *c) {
    if (c->raw) return cJSON_Duplicate(c->raw, 1);
    cJSON *o = cJSON_CreateObject();
    const char *arch[1] = {"CLIPTextModel"};
    add_str_list(o, "architectures", arch, 1);
    cJSON_AddNumberToObject(o, "attention_dropout", 0.0);
    cJSON_AddNumberToObject(o, "bos_token_id", c->bos_token_id);
    cJSON_AddNumberToObject(o, "dropout", 0.0);
    cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_id);
    cJSON_AddStringToObject(o, "hidden_act", sd_act_name(c->hidden_act));
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(o, "initializer_factor", 1.0);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(o, "layer_norm_eps", c->layer_norm_eps);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_position_embeddings);
    cJSON_AddStringToObject(o, "model_type", "clip_text_model");
    cJSON_AddNumberToObject(o, "num_attention_heads", c->num_attention_heads);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->num_hidden_layers);
    cJSON_AddNumberToObject(o, "pad_token_id", c->pad_token_id);
    cJSON_AddNumberToObject(o, "projection_dim", c->projection_dim);
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    return o;
}

/* ---- scheduler ----------------------------------------------------------- */

static int copy_str(char *dst, size_t cap, const char *src, const char *w, const char *key) {
    if (strlen(src) >= cap) return sd_set_error("%s: %s: value too long", w, key);
    strcpy(dst, src);
    return 0;
}

int sd_scheduler_config_parse(const cJSON *j, const char *w, sd_scheduler_config *c) {
    memset(c, 0, sizeof *c);
    if (!cJSON_IsObject(j)) return sd_set_error("%s: expected a JSON object", w);
    const char *s = "";
    if (get_str(j, w, "_class_name", "", &s) || copy_str(c->class_name, sizeof c->class_name, s, w, "_class_name")) return -1;
    if (get_int(j, w, "num_train_timesteps", 1000, &c->num_train_timesteps)) return -1;
    if (get_num(j, w, "beta_start", 0.0001, &c->beta_start)) return -1;
    if (get_num(j, w, "beta_end", 0.02, &c->beta_end)) return -1;
    if (get_str(j, w, "beta_schedule", "linear", &s) ||
        copy_str(c->beta_schedule, sizeof c->beta_schedule, s, w, "beta_schedule")) return -1;
    if (get_str(j, w, "prediction_type", "epsilon", &s) ||
        copy_str(c->prediction_type, sizeof c->prediction_type, s, w, "prediction_type")) return -1;
    if (get_int(j, w, "steps_offset", 0, &c->steps_offset)) return -1;
    if (get_bool(j, w, "set_alpha_to_one", -1, &c->set_alpha_to_one)) return -1;
    if (get_bool(j, w, "skip_prk_steps", 0, &c->skip_prk_steps)) return -1;
    if (get_bool(j, w, "clip_sample", -1, &c->clip_sample)) return -1;
    if (get_num(j, w, "clip_sample_range", 1.0, &c->clip_sample_range)) return -1;
    if (get_str(j, w, "timestep_spacing", "", &s) ||
        copy_str(c->timestep_spacing, sizeof c->timestep_spacing, s, w, "timestep_spacing")) return -1;
    if (get_bool(j, w, "use_karras_sigmas", 0, &c->use_karras_sigmas)) return -1;
    if (get_bool(j, w, "rescale_betas_zero_snr", 0, &c->rescale_betas_zero_snr)) return -1;
    const cJSON *tb = item(j, "trained_betas"), *e;
    if (tb) {
        if (!cJSON_IsArray(tb)) return sd_set_error("%s: trained_betas: expected a list of numbers or null", w);
        cJSON_ArrayForEach(e, tb) {
            if (!cJSON_IsNumber(e)) return sd_set_error("%s: trained_betas[%d]: expected a number", w, c->n_trained_betas);
            c->n_trained_betas++;
        }
    }
    c->raw = cJSON_Duplicate(j, 1);
    return 0;
}

int sd_scheduler_config_load(const char *path, sd_scheduler_config *c) {
    cJSON *j;
    memset(c, 0, sizeof *c);
    if (sd_json_load(path, &j)) return -1;
    int rc = sd_scheduler_config_parse(j, path, c);
    cJSON_Delete(j);
    return rc;
}

void sd_scheduler_config_free(sd_scheduler_config *c) {
    if (c->raw) cJSON_Delete(c->raw);
    c->raw = NULL;
}

/* ---- summaries ----------------------------------------------------------- */

static void print_ints(FILE *out, const int *v, int n) {
    for (int i = 0; i < n; i++) fprintf(out, "%s%d", i ? "," : "", v[i]);
}

void sd_unet_config_summary(const sd_unet_config *c, FILE *out, const char *ind) {
    int n = c->num_levels;
    fprintf(out, "%sblocks:", ind);
    for (int i = 0; i < n; i++)
        fprintf(out, " %s(%d)", c->down_cross_attn[i] ? "CrossAttnDown" : "Down", c->block_out_channels[i]);
    fprintf(out, " | mid %s |", c->has_mid_block ? "CrossAttn" : "none");
    for (int i = 0; i < n; i++)
        fprintf(out, " %s(%d)", c->up_cross_attn[i] ? "CrossAttnUp" : "Up", c->up[i].out_channels);
    fprintf(out, "\n%slayers_per_block ", ind);
    print_ints(out, c->layers_per_block, n);
    fprintf(out, ", heads ");
    print_ints(out, c->num_heads, n);
    fprintf(out, " (head dim ");
    for (int i = 0; i < n; i++) fprintf(out, "%s%d", i ? "," : "", c->block_out_channels[i] / c->num_heads[i]);
    fprintf(out, "), transformer layers ");
    print_ints(out, c->transformer_layers, n);
    fprintf(out, "\n%scross_attention_dim ", ind);
    print_ints(out, c->cross_attention_dim, all_same(c->cross_attention_dim, n) ? 1 : n);
    fprintf(out, ", linear projection %s, upcast attention %s, in %d out %d channels, sample_size %dx%d, groups %d eps %g\n",
            c->use_linear_projection ? "yes" : "no", c->upcast_attention ? "yes" : "no", c->in_channels,
            c->out_channels, c->sample_size[0], c->sample_size[1], c->norm_num_groups, c->norm_eps);
}

void sd_vae_config_summary(const sd_vae_config *c, FILE *out, const char *ind) {
    fprintf(out, "%sblock_out_channels ", ind);
    print_ints(out, c->block_out_channels, c->num_levels);
    fprintf(out, ", layers_per_block %d, latent_channels %d, scaling_factor %g", c->layers_per_block,
            c->latent_channels, c->scaling_factor);
    if (c->has_shift_factor) fprintf(out, ", shift_factor %g", c->shift_factor);
    fprintf(out, "\n%sin %d out %d channels, groups %d, sample_size %d, mid attention %s, quant_conv %s/%s, force_upcast %s\n",
            ind, c->in_channels, c->out_channels, c->norm_num_groups, c->sample_size,
            c->mid_block_add_attention ? "yes" : "no", c->use_quant_conv ? "yes" : "no",
            c->use_post_quant_conv ? "yes" : "no", c->force_upcast ? "yes" : "no");
}

void sd_clip_text_config_summary(const sd_clip_text_config *c, FILE *out, const char *ind) {
    fprintf(out, "%shidden %d, layers %d, heads %d, ffn %d, act %s, vocab %d, positions %d, eps %g\n", ind,
            c->hidden_size, c->num_hidden_layers, c->num_attention_heads, c->intermediate_size,
            sd_act_name(c->hidden_act), c->vocab_size, c->max_position_embeddings, c->layer_norm_eps);
}
