/* params.h — parameter tables: every tensor of a model, by name, in one flat buffer.
 *
 * For a config, the table lists each parameter's canonical name (the key
 * diffusers / transformers use in their state dicts and safetensors files),
 * its shape, and its element offset into ONE flat float buffer of `total`
 * floats (DESIGN.md §4: parameters, gradients and optimizer state are flat
 * arrays, so optimizers, EMA, clipping and all-reduce are loops).
 *
 * Layout: tensors are packed back to back (no padding; total == parameter
 * count) in FORWARD order, so each block's parameters are one contiguous
 * range (sd_param_table_range):
 *   UNet: conv_in, time_embedding, down_blocks.0 (resnets.0, attentions.0,
 *         resnets.1, …, downsamplers.0), …, mid_block (resnets.0,
 *         attentions.0, resnets.1), up_blocks.0 …, conv_norm_out, conv_out.
 *   VAE:  encoder.(conv_in, down_blocks…, mid_block, conv_norm_out, conv_out),
 *         quant_conv, post_quant_conv, decoder.(conv_in, mid_block,
 *         up_blocks…, conv_norm_out, conv_out).
 *   CLIP: text_model.embeddings.(token, position), encoder.layers.N.(layer_norm1,
 *         self_attn.q/k/v/out_proj, layer_norm2, mlp.fc1, mlp.fc2), final_layer_norm.
 * Within a module: weight before bias. Linear weights are [out, in]; convs
 * [out, in, kh, kw]; norms [C].
 *
 * Each entry also carries its single-file (LDM/CompVis) key without the
 * component prefix (sd_spec §7; e.g. "input_blocks.1.0.in_layers.0.weight"),
 * so the single-file loader needs no reverse string parsing. The text
 * encoder's `ldm` is the transformers key (SD1 checkpoints store it under
 * "cond_stage_model.transformer."); OpenCLIP names are derived at load time.
 */
#ifndef SD_MODELS_PARAMS_H
#define SD_MODELS_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "models/config.h"

/* Files may store this 2-D weight as a 1x1 conv ([o,i,1,1] or [o,i,1]): the
 * VAE mid-block attention projections (LDM and old diffusers files). */
#define SD_PARAM_SQUEEZE_OK 1

typedef struct {
    char *name;       /* canonical key */
    char *ldm;        /* single-file key without component prefix, or NULL */
    int ndim;
    int64_t shape[4];
    size_t numel;
    size_t offset;    /* first element in the flat buffer */
    int flags;        /* SD_PARAM_* */
} sd_param;

typedef struct {
    int n, cap;
    sd_param *p;
    size_t total;     /* floats in the flat buffer (= parameter count) */
    int *hash;        /* open-addressing index over names */
    int hash_cap;
} sd_param_table;

/* Build the table of a config. On error the table is empty. Free with
 * sd_param_table_free. */
int sd_unet_param_table(const sd_unet_config *c, sd_param_table *t);
int sd_vae_param_table(const sd_vae_config *c, sd_param_table *t);
int sd_clip_text_param_table(const sd_clip_text_config *c, sd_param_table *t);
void sd_param_table_free(sd_param_table *t);

/* Lookup by canonical name: the entry, or NULL. */
const sd_param *sd_param_table_find(const sd_param_table *t, const char *name);
int sd_param_table_index(const sd_param_table *t, const char *name); /* -1 if absent */
/* buf + offset of `name`, or NULL. */
float *sd_param_data(const sd_param_table *t, float *buf, const char *name);
/* printf-style name: sd_param_dataf(t, buf, "down_blocks.%d.resnets.%d.conv1.weight", i, j) */
float *sd_param_dataf(const sd_param_table *t, float *buf, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const sd_param *sd_param_findf(const sd_param_table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The element range [*offset, *offset + *count) covered by every parameter
 * whose name starts with prefix (e.g. "down_blocks.1." or "mid_block.").
 * Returns the number of parameters matched (0: none; then offset/count are
 * 0); -1 with an error if they are not contiguous. */
int sd_param_table_range(const sd_param_table *t, const char *prefix, size_t *offset, size_t *count);

/* SHA-256 over (name, shape, f32 little-endian data) of every parameter in
 * table order: the fingerprint manifests record (e.g. "latents made by this
 * VAE"). */
void sd_param_fingerprint(const sd_param_table *t, const float *buf, char hex[65]);

/* "[320, 4, 3, 3]" */
char *sd_param_shape_str(const sd_param *p, char *buf, size_t n);

#endif
