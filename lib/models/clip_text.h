/* clip_text.h — the CLIP text encoder (transformers CLIPTextModel), inference.
 *
 * Numerics are transformers' fp32 forward (sd_spec §3):
 *   h = token_embedding[ids] + position_embedding[0..L-1]
 *   per layer (pre-LN):  h += out_proj(causal MHA(layer_norm1(h)))   q/k/v/out with bias, scale 1/sqrt(d)
 *                        h += fc2(act(fc1(layer_norm2(h))))          act: quick_gelu (SD1) or gelu (SD2)
 *   last_hidden_state = final_layer_norm(h)                           [B, L, hidden]
 * No padding mask (SD pipelines pass none): only the causal mask.
 *
 * clip_skip (diffusers StableDiffusionPipeline.encode_prompt): 0 is the
 * last_hidden_state; k >= 1 takes hidden_states[-(k + 1)] — the output of
 * layer num_hidden_layers - k (0 = the embeddings) — and applies
 * final_layer_norm to it. diffusers clip_skip = 1 is A1111's "Clip skip 2".
 * Layers past the requested one are not computed.
 *
 * Memory: the weights are one backend buffer in the canonical table layout;
 * activations are a workspace sized for the largest B·L seen (allocated on the
 * first call, grown only when a larger batch comes; none inside the layers).
 * The output buffer doubles as the residual stream.
 *
 * Threading: the backend's threads; one caller at a time per encoder.
 *
 * Frozen here (no backward). The layer function reads its inputs and writes
 * named intermediate buffers (ln1, q/k/v, attention output + lse, ln2, fc1)
 * that a backward would keep per layer.
 */
#ifndef SD_MODELS_CLIP_TEXT_H
#define SD_MODELS_CLIP_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "models/config.h"
#include "models/modeldir.h"
#include "models/params.h"

typedef struct sd_clip_text_priv sd_clip_text_priv;

typedef struct {
    sd_clip_text_config cfg; /* copy of the config (cfg.raw is NULL: not kept) */
    sd_backend *be;          /* not owned */
    sd_param_table table;
    float *params;           /* backend memory [table.total] */
    int hidden;              /* cfg.hidden_size: width of the output rows */
    sd_clip_text_priv *priv;
} sd_clip_text;

/* Load the text encoder of an opened model onto be (CPU: straight into the
 * backend buffer). Refuses a hidden_act the backend does not implement
 * (gelu_new / gelu_pytorch_tanh). */
int sd_clip_text_load(sd_model *m, sd_backend *be, sd_clip_text **out);
/* Build from a config and a HOST buffer laid out by sd_clip_text_param_table
 * (copied). */
int sd_clip_text_create(const sd_clip_text_config *cfg, const float *params, sd_backend *be, sd_clip_text **out);
void sd_clip_text_free(sd_clip_text *t);

/* sd_param_fingerprint of the weights, computed on first use and cached. */
int sd_clip_text_fingerprint(sd_clip_text *t, char hex[65]);

/* ids: HOST int32 [B, L] token rows (1 <= L <= max_position_embeddings, each
 * id in [0, vocab_size)); out: backend memory [B, L, hidden] (any host memory
 * on the CPU backend). clip_skip in [0, num_hidden_layers] (see above).
 * Returns 0, or -1 with an error (bad ids/shape/clip_skip, out of memory). */
int sd_clip_text_forward(sd_clip_text *t, const int32_t *ids, int B, int L, int clip_skip, float *out);

/* Bytes of activation workspace a forward of B rows of L tokens uses, and
 * freeing it (the next forward allocates again). */
size_t sd_clip_text_workspace_bytes(const sd_clip_text *t, int B, int L);
void sd_clip_text_release(sd_clip_text *t);

#endif
