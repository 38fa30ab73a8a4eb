/* params.c — see params.h. The module structure mirrors diffusers'
 * constructors (unet_2d_condition.py, unet_2d_blocks.py, resnet.py,
 * transformer_2d.py, attention.py, vae.py) and transformers' CLIPTextModel. */
#include "models/params.h"
#include "core/error.h"
#include "core/sha256.h"
#include "core/tensor.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 256

/* ---- table primitives ---------------------------------------------------- */

static void add(sd_param_table *t, const char *name, const char *ldm, int flags, int ndim, int64_t d0, int64_t d1,
                int64_t d2, int64_t d3) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->p = sd_xrealloc(t->p, (size_t)t->cap * sizeof *t->p);
    }
    sd_param *p = &t->p[t->n++];
    memset(p, 0, sizeof *p);
    p->name = sd_xstrdup(name);
    p->ldm = ldm ? sd_xstrdup(ldm) : NULL;
    p->flags = flags;
    p->ndim = ndim;
    int64_t d[4] = {d0, d1, d2, d3};
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = d[i];
        p->numel *= (size_t)d[i];
    }
    p->offset = t->total;
    t->total += p->numel;
}

/* name = a + "." + b, into out */
static const char *cat(char *out, const char *a, const char *b) {
    if (!a) return NULL;
    /* names are built from config integers: a 256-byte overflow is a bug */
    if (snprintf(out, NAME_MAX_LEN, "%s.%s", a, b) >= NAME_MAX_LEN) sd_die("params: name too long: %s.%s", a, b);
    return out;
}

static const char *fmt(char *out, const char *f, ...) SD_PRINTF(2, 3);
static const char *fmt(char *out, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int k = vsnprintf(out, NAME_MAX_LEN, f, ap);
    va_end(ap);
    if (k >= NAME_MAX_LEN) sd_die("params: name too long: %s", out);
    return out;
}

/* weight [out, in, k, k] + bias [out] */
static void add_conv(sd_param_table *t, const char *can, const char *ldm, int cout, int cin, int k) {
    char a[NAME_MAX_LEN], b[NAME_MAX_LEN];
    add(t, cat(a, can, "weight"), cat(b, ldm, "weight"), 0, 4, cout, cin, k, k);
    add(t, cat(a, can, "bias"), cat(b, ldm, "bias"), 0, 1, cout, 0, 0, 0);
}

/* weight [out, in] (+ bias [out]) */
static void add_linear(sd_param_table *t, const char *can, const char *ldm, int out, int in, int bias, int flags) {
    char a[NAME_MAX_LEN], b[NAME_MAX_LEN];
    add(t, cat(a, can, "weight"), cat(b, ldm, "weight"), flags, 2, out, in, 0, 0);
    if (bias) add(t, cat(a, can, "bias"), cat(b, ldm, "bias"), 0, 1, out, 0, 0, 0);
}

/* GroupNorm / LayerNorm affine: weight [C], bias [C] */
static void add_norm(sd_param_table *t, const char *can, const char *ldm, int c) {
    char a[NAME_MAX_LEN], b[NAME_MAX_LEN];
    add(t, cat(a, can, "weight"), cat(b, ldm, "weight"), 0, 1, c, 0, 0, 0);
    add(t, cat(a, can, "bias"), cat(b, ldm, "bias"), 0, 1, c, 0, 0, 0);
}

/* ResnetBlock2D: norm1, conv1, [time_emb_proj], norm2, conv2, [conv_shortcut].
 * LDM names differ between the UNet (in_layers/out_layers/emb_layers/
 * skip_connection) and the VAE (same names, nin_shortcut). */
static void add_resnet(sd_param_table *t, const char *can, const char *ldm, int cin, int cout, int temb, int vae) {
    char a[NAME_MAX_LEN], b[NAME_MAX_LEN];
    add_norm(t, cat(a, can, "norm1"), cat(b, ldm, vae ? "norm1" : "in_layers.0"), cin);
    add_conv(t, cat(a, can, "conv1"), cat(b, ldm, vae ? "conv1" : "in_layers.2"), cout, cin, 3);
    if (temb) add_linear(t, cat(a, can, "time_emb_proj"), cat(b, ldm, "emb_layers.1"), cout, temb, 1, 0);
    add_norm(t, cat(a, can, "norm2"), cat(b, ldm, vae ? "norm2" : "out_layers.0"), cout);
    add_conv(t, cat(a, can, "conv2"), cat(b, ldm, vae ? "conv2" : "out_layers.3"), cout, cout, 3);
    if (cin != cout)
        add_conv(t, cat(a, can, "conv_shortcut"), cat(b, ldm, vae ? "nin_shortcut" : "skip_connection"), cout, cin, 1);
}

/* Transformer2DModel (continuous input): norm (GN), proj_in, transformer_blocks.k
 * (norm1, attn1, norm2, attn2, norm3, ff), proj_out. Inner names are the same
 * in LDM files. inner dim = heads·head_dim = C (the config parser refuses
 * channel counts not divisible by the head count). */
static void add_transformer(sd_param_table *t, const char *can, const char *ldm, const sd_unet_block *blk,
                            int linear_proj) {
    char a[NAME_MAX_LEN], b[NAME_MAX_LEN], ca[NAME_MAX_LEN], cb[NAME_MAX_LEN];
    int C = blk->out_channels, X = blk->cross_attention_dim;
    add_norm(t, cat(a, can, "norm"), cat(b, ldm, "norm"), C);
    if (linear_proj) add_linear(t, cat(a, can, "proj_in"), cat(b, ldm, "proj_in"), C, C, 1, 0);
    else add_conv(t, cat(a, can, "proj_in"), cat(b, ldm, "proj_in"), C, C, 1);
    for (int k = 0; k < blk->transformer_layers; k++) {
        fmt(ca, "%s.transformer_blocks.%d", can, k);
        fmt(cb, "%s.transformer_blocks.%d", ldm, k);
        for (int at = 1; at <= 2; at++) {
            /* attn1: self-attention (K/V from x, width C) unless only_cross_attention;
             * attn2: cross-attention, K/V from the text context (width X). */
            int kv = (at == 2 || blk->only_cross_attention) ? X : C;
            char na[NAME_MAX_LEN], nb[NAME_MAX_LEN], sa[NAME_MAX_LEN], sb[NAME_MAX_LEN];
            add_norm(t, fmt(na, "%s.norm%d", ca, at), fmt(nb, "%s.norm%d", cb, at), C);
            fmt(sa, "%s.attn%d", ca, at);
            fmt(sb, "%s.attn%d", cb, at);
            add_linear(t, cat(na, sa, "to_q"), cat(nb, sb, "to_q"), C, C, 0, 0);
            add_linear(t, cat(na, sa, "to_k"), cat(nb, sb, "to_k"), C, kv, 0, 0);
            add_linear(t, cat(na, sa, "to_v"), cat(nb, sb, "to_v"), C, kv, 0, 0);
            add_linear(t, cat(na, sa, "to_out.0"), cat(nb, sb, "to_out.0"), C, C, 1, 0);
        }
        add_norm(t, cat(a, ca, "norm3"), cat(b, cb, "norm3"), C);
        /* FeedForward: net.0 = GEGLU (proj C -> 2·4C), net.2 = Linear(4C, C) */
        add_linear(t, cat(a, ca, "ff.net.0.proj"), cat(b, cb, "ff.net.0.proj"), 8 * C, C, 1, 0);
        add_linear(t, cat(a, ca, "ff.net.2"), cat(b, cb, "ff.net.2"), C, 4 * C, 1, 0);
    }
    if (linear_proj) add_linear(t, cat(a, can, "proj_out"), cat(b, ldm, "proj_out"), C, C, 1, 0);
    else add_conv(t, cat(a, can, "proj_out"), cat(b, ldm, "proj_out"), C, C, 1);
}

static void build_index(sd_param_table *t);

static int finish(sd_param_table *t) {
    build_index(t);
    return 0;
}

/* ---- UNet ---------------------------------------------------------------- */

int sd_unet_param_table(const sd_unet_config *c, sd_param_table *t) {
    memset(t, 0, sizeof *t);
    char a[NAME_MAX_LEN], b[NAME_MAX_LEN];
    int n = c->num_levels, T = c->time_embed_dim, C0 = c->block_out_channels[0];
    if (n < 1 || n > SD_UNET_MAX_LEVELS) return sd_set_error("unet config: not derived (num_levels %d)", n);

    add_conv(t, "conv_in", "input_blocks.0.0", C0, c->in_channels, c->conv_in_kernel);
    add_linear(t, "time_embedding.linear_1", "time_embed.0", T, C0, 1, 0);
    add_linear(t, "time_embedding.linear_2", "time_embed.2", T, T, 1, 0);

    int idx = 1; /* LDM input_blocks index (0 is conv_in) */
    for (int i = 0; i < n; i++) {
        const sd_unet_block *blk = &c->down[i];
        for (int j = 0; j < blk->num_resnets; j++, idx++) {
            add_resnet(t, fmt(a, "down_blocks.%d.resnets.%d", i, j), fmt(b, "input_blocks.%d.0", idx),
                       blk->resnet_in[j], blk->out_channels, T, 0);
            if (blk->cross_attn)
                add_transformer(t, fmt(a, "down_blocks.%d.attentions.%d", i, j), fmt(b, "input_blocks.%d.1", idx), blk,
                                c->use_linear_projection);
        }
        if (blk->sampler) {
            add_conv(t, fmt(a, "down_blocks.%d.downsamplers.0.conv", i), fmt(b, "input_blocks.%d.0.op", idx),
                     blk->out_channels, blk->out_channels, 3);
            idx++;
        }
    }

    if (c->has_mid_block) {
        const sd_unet_block *m = &c->mid;
        add_resnet(t, "mid_block.resnets.0", "middle_block.0", m->resnet_in[0], m->out_channels, T, 0);
        add_transformer(t, "mid_block.attentions.0", "middle_block.1", m, c->use_linear_projection);
        add_resnet(t, "mid_block.resnets.1", "middle_block.2", m->resnet_in[1], m->out_channels, T, 0);
    }

    idx = 0; /* LDM output_blocks index */
    for (int i = 0; i < n; i++) {
        const sd_unet_block *blk = &c->up[i];
        for (int j = 0; j < blk->num_resnets; j++, idx++) {
            add_resnet(t, fmt(a, "up_blocks.%d.resnets.%d", i, j), fmt(b, "output_blocks.%d.0", idx), blk->resnet_in[j],
                       blk->out_channels, T, 0);
            if (blk->cross_attn)
                add_transformer(t, fmt(a, "up_blocks.%d.attentions.%d", i, j), fmt(b, "output_blocks.%d.1", idx), blk,
                                c->use_linear_projection);
            if (blk->sampler && j == blk->num_resnets - 1)
                add_conv(t, fmt(a, "up_blocks.%d.upsamplers.0.conv", i),
                         fmt(b, "output_blocks.%d.%d.conv", idx, blk->cross_attn ? 2 : 1), blk->out_channels,
                         blk->out_channels, 3);
        }
    }

    add_norm(t, "conv_norm_out", "out.0", C0);
    add_conv(t, "conv_out", "out.2", c->out_channels, C0, c->conv_out_kernel);
    return finish(t);
}

/* ---- VAE ----------------------------------------------------------------- */

/* UNetMidBlock2D of the VAE: resnet, Attention (1 head, GN inside, biased
 * projections, stored as 1x1 convs in LDM files), resnet. */
static void add_vae_mid(sd_param_table *t, const char *can, const char *ldm, int C, int attn) {
    char a[NAME_MAX_LEN], b[NAME_MAX_LEN], p[NAME_MAX_LEN], q[NAME_MAX_LEN];
    add_resnet(t, cat(a, can, "resnets.0"), cat(b, ldm, "block_1"), C, C, 0, 1);
    if (attn) {
        cat(p, can, "attentions.0");
        cat(q, ldm, "attn_1");
        add_norm(t, cat(a, p, "group_norm"), cat(b, q, "norm"), C);
        add_linear(t, cat(a, p, "to_q"), cat(b, q, "q"), C, C, 1, SD_PARAM_SQUEEZE_OK);
        add_linear(t, cat(a, p, "to_k"), cat(b, q, "k"), C, C, 1, SD_PARAM_SQUEEZE_OK);
        add_linear(t, cat(a, p, "to_v"), cat(b, q, "v"), C, C, 1, SD_PARAM_SQUEEZE_OK);
        add_linear(t, cat(a, p, "to_out.0"), cat(b, q, "proj_out"), C, C, 1, SD_PARAM_SQUEEZE_OK);
    }
    add_resnet(t, cat(a, can, "resnets.1"), cat(b, ldm, "block_2"), C, C, 0, 1);
}

int sd_vae_param_table(const sd_vae_config *c, sd_param_table *t) {
    memset(t, 0, sizeof *t);
    if (sd_vae_config_validate(c)) return sd_error_prefix("vae config");
    char a[NAME_MAX_LEN], b[NAME_MAX_LEN];
    int n = c->num_levels, L = c->latent_channels;
    const int *ch = c->block_out_channels;

    /* encoder */
    add_conv(t, "encoder.conv_in", "encoder.conv_in", ch[0], c->in_channels, 3);
    for (int i = 0; i < n; i++) {
        int cin = i == 0 ? ch[0] : ch[i - 1];
        for (int j = 0; j < c->layers_per_block; j++)
            add_resnet(t, fmt(a, "encoder.down_blocks.%d.resnets.%d", i, j), fmt(b, "encoder.down.%d.block.%d", i, j),
                       j == 0 ? cin : ch[i], ch[i], 0, 1);
        if (i < n - 1)
            add_conv(t, fmt(a, "encoder.down_blocks.%d.downsamplers.0.conv", i),
                     fmt(b, "encoder.down.%d.downsample.conv", i), ch[i], ch[i], 3);
    }
    add_vae_mid(t, "encoder.mid_block", "encoder.mid", ch[n - 1], c->mid_block_add_attention);
    add_norm(t, "encoder.conv_norm_out", "encoder.norm_out", ch[n - 1]);
    add_conv(t, "encoder.conv_out", "encoder.conv_out", 2 * L, ch[n - 1], 3);
    if (c->use_quant_conv) add_conv(t, "quant_conv", "quant_conv", 2 * L, 2 * L, 1);
    if (c->use_post_quant_conv) add_conv(t, "post_quant_conv", "post_quant_conv", L, L, 1);

    /* decoder: up_blocks.i mirrors level n-1-i; LDM numbers them by level */
    add_conv(t, "decoder.conv_in", "decoder.conv_in", ch[n - 1], L, 3);
    add_vae_mid(t, "decoder.mid_block", "decoder.mid", ch[n - 1], c->mid_block_add_attention);
    int prev = ch[n - 1];
    for (int i = 0; i < n; i++) {
        int lvl = n - 1 - i, cout = ch[lvl];
        for (int j = 0; j < c->layers_per_block + 1; j++)
            add_resnet(t, fmt(a, "decoder.up_blocks.%d.resnets.%d", i, j), fmt(b, "decoder.up.%d.block.%d", lvl, j),
                       j == 0 ? prev : cout, cout, 0, 1);
        if (i < n - 1)
            add_conv(t, fmt(a, "decoder.up_blocks.%d.upsamplers.0.conv", i), fmt(b, "decoder.up.%d.upsample.conv", lvl),
                     cout, cout, 3);
        prev = cout;
    }
    add_norm(t, "decoder.conv_norm_out", "decoder.norm_out", ch[0]);
    add_conv(t, "decoder.conv_out", "decoder.conv_out", c->out_channels, ch[0], 3);
    return finish(t);
}

/* ---- CLIP text encoder --------------------------------------------------- */

int sd_clip_text_param_table(const sd_clip_text_config *c, sd_param_table *t) {
    memset(t, 0, sizeof *t);
    if (sd_clip_text_config_validate(c)) return sd_error_prefix("text encoder config");
    char a[NAME_MAX_LEN], p[NAME_MAX_LEN];
    int H = c->hidden_size, I = c->intermediate_size;
    const char *n;
    n = "text_model.embeddings.token_embedding.weight";
    add(t, n, n, 0, 2, c->vocab_size, H, 0, 0);
    n = "text_model.embeddings.position_embedding.weight";
    add(t, n, n, 0, 2, c->max_position_embeddings, H, 0, 0);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        fmt(p, "text_model.encoder.layers.%d", l);
        add_norm(t, cat(a, p, "layer_norm1"), a, H);
        add_linear(t, fmt(a, "%s.self_attn.q_proj", p), a, H, H, 1, 0);
        add_linear(t, fmt(a, "%s.self_attn.k_proj", p), a, H, H, 1, 0);
        add_linear(t, fmt(a, "%s.self_attn.v_proj", p), a, H, H, 1, 0);
        add_linear(t, fmt(a, "%s.self_attn.out_proj", p), a, H, H, 1, 0);
        add_norm(t, cat(a, p, "layer_norm2"), a, H);
        add_linear(t, fmt(a, "%s.mlp.fc1", p), a, I, H, 1, 0);
        add_linear(t, fmt(a, "%s.mlp.fc2", p), a, H, I, 1, 0);
    }
    add_norm(t, "text_model.final_layer_norm", "text_model.final_layer_norm", H);
    return finish(t);
}

/* ---- lookup -------------------------------------------------------------- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void build_index(sd_param_table *t) {
    free(t->hash);
    int cap = 16;
    while (cap < 2 * t->n) cap *= 2;
    t->hash_cap = cap;
    t->hash = sd_xmalloc((size_t)cap * sizeof(int));
    for (int i = 0; i < cap; i++) t->hash[i] = -1;
    for (int i = 0; i < t->n; i++) {
        size_t k = hash_str(t->p[i].name) & (size_t)(cap - 1);
        while (t->hash[k] >= 0) k = (k + 1) & (size_t)(cap - 1);
        t->hash[k] = i;
    }
}

int sd_param_table_index(const sd_param_table *t, const char *name) {
    if (!t->hash) return -1;
    size_t k = hash_str(name) & (size_t)(t->hash_cap - 1);
    while (t->hash[k] >= 0) {
        if (!strcmp(t->p[t->hash[k]].name, name)) return t->hash[k];
        k = (k + 1) & (size_t)(t->hash_cap - 1);
    }
    return -1;
}

const sd_param *sd_param_table_find(const sd_param_table *t, const char *name) {
    int i = sd_param_table_index(t, name);
    return i < 0 ? NULL : &t->p[i];
}

float *sd_param_data(const sd_param_table *t, float *buf, const char *name) {
    const sd_param *p = sd_param_table_find(t, name);
    return p ? buf + p->offset : NULL;
}

const sd_param *sd_param_findf(const sd_param_table *t, const char *f, ...) {
    char name[NAME_MAX_LEN];
    va_list ap;
    va_start(ap, f);
    int k = vsnprintf(name, sizeof name, f, ap);
    va_end(ap);
    return k < NAME_MAX_LEN ? sd_param_table_find(t, name) : NULL;
}

float *sd_param_dataf(const sd_param_table *t, float *buf, const char *f, ...) {
    char name[NAME_MAX_LEN];
    va_list ap;
    va_start(ap, f);
    int k = vsnprintf(name, sizeof name, f, ap);
    va_end(ap);
    return k < NAME_MAX_LEN ? sd_param_data(t, buf, name) : NULL;
}

void sd_param_table_free(sd_param_table *t) {
    for (int i = 0; i < t->n; i++) {
        free(t->p[i].name);
        free(t->p[i].ldm);
    }
    free(t->p);
    free(t->hash);
    memset(t, 0, sizeof *t);
}

int sd_param_table_range(const sd_param_table *t, const char *prefix, size_t *offset, size_t *count) {
    size_t pl = strlen(prefix);
    int first = -1, last = -1, matched = 0;
    for (int i = 0; i < t->n; i++) {
        if (strncmp(t->p[i].name, prefix, pl)) continue;
        if (first < 0) first = i;
        else if (last != i - 1)
            return sd_set_error("parameters with prefix \"%s\" are not contiguous (%s)", prefix, t->p[i].name);
        last = i;
        matched++;
    }
    if (!matched) {
        *offset = *count = 0;
        return 0;
    }
    *offset = t->p[first].offset;
    *count = t->p[last].offset + t->p[last].numel - *offset;
    return matched;
}

void sd_param_fingerprint(const sd_param_table *t, const float *buf, char hex[65]) {
    sd_sha256 s;
    unsigned char d[32];
    sd_sha256_init(&s);
    for (int i = 0; i < t->n; i++) {
        const sd_param *p = &t->p[i];
        char sh[128];
        sd_sha256_update(&s, p->name, strlen(p->name) + 1);
        sd_param_shape_str(p, sh, sizeof sh);
        sd_sha256_update(&s, sh, strlen(sh) + 1);
        /* f32 little-endian (the hosts we build for are little-endian) */
        sd_sha256_update(&s, buf + p->offset, p->numel * sizeof(float));
    }
    sd_sha256_final(&s, d);
    sd_sha256_hex(d, hex);
}

char *sd_param_shape_str(const sd_param *p, char *buf, size_t n) {
    return sd_shape_str(p->ndim, p->shape, buf, n);
}
