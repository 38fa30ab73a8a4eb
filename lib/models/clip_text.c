/* clip_text.c — CLIP text encoder forward (see clip_text.h). */
#include "models/clip_text.h"
#include "core/error.h"
#include "nn/nn.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const float *ln1w, *ln1b, *qw, *qb, *kw, *kb, *vw, *vb, *ow, *ob, *ln2w, *ln2b, *f1w, *f1b, *f2w, *f2b;
} clip_layer;

/* Activations of one layer for N = B·L tokens of width D (I = MLP width). */
typedef struct {
    float *ln1;            /* [N, D] layer_norm1(h) */
    float *q, *k, *v;      /* [N, D] projections, heads side by side */
    float *att, *lse;      /* [N, D] attention output (heads merged), [B, H, L] */
    float *ln2;            /* [N, D] layer_norm2(h) */
    float *fc1;            /* [N, I] fc1 output, activated in place */
    float *proj;           /* [N, D] out_proj / fc2 output before the residual add */
    float *mean, *rstd;    /* [N] LayerNorm statistics */
} clip_acts;

struct sd_clip_text_priv {
    const float *tok, *pos, *lnfw, *lnfb;
    clip_layer *layers;
    int32_t *ids;          /* backend copy of the token ids [cap_tokens] */
    float *ws;             /* activation workspace */
    size_t ws_floats;
    size_t cap_tokens;     /* B·L the workspace was sized for */
    int have_fp;
    char fp[65];
};

/* ---- creation ------------------------------------------------------------------ */

static int is_cpu(const sd_backend *be) { return be->name && !strcmp(be->name, "cpu"); }

static const float *R(sd_clip_text *t, int *bad, const char *fmt, ...) SD_PRINTF(3, 4);
static const float *R(sd_clip_text *t, int *bad, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const float *p = sd_param_data(&t->table, t->params, name);
    if (!p && !*bad) {
        *bad = 1;
        sd_set_error("text encoder: parameter %s missing from the table", name);
    }
    return p;
}

static int resolve(sd_clip_text *t) {
    sd_clip_text_priv *p = t->priv;
    int bad = 0, n = t->cfg.num_hidden_layers;
    p->tok = R(t, &bad, "text_model.embeddings.token_embedding.weight");
    p->pos = R(t, &bad, "text_model.embeddings.position_embedding.weight");
    p->layers = sd_xcalloc((size_t)n, sizeof *p->layers);
    for (int l = 0; l < n; l++) {
        clip_layer *y = &p->layers[l];
        const char *e = "text_model.encoder.layers";
        y->ln1w = R(t, &bad, "%s.%d.layer_norm1.weight", e, l), y->ln1b = R(t, &bad, "%s.%d.layer_norm1.bias", e, l);
        y->qw = R(t, &bad, "%s.%d.self_attn.q_proj.weight", e, l), y->qb = R(t, &bad, "%s.%d.self_attn.q_proj.bias", e, l);
        y->kw = R(t, &bad, "%s.%d.self_attn.k_proj.weight", e, l), y->kb = R(t, &bad, "%s.%d.self_attn.k_proj.bias", e, l);
        y->vw = R(t, &bad, "%s.%d.self_attn.v_proj.weight", e, l), y->vb = R(t, &bad, "%s.%d.self_attn.v_proj.bias", e, l);
        y->ow = R(t, &bad, "%s.%d.self_attn.out_proj.weight", e, l);
        y->ob = R(t, &bad, "%s.%d.self_attn.out_proj.bias", e, l);
        y->ln2w = R(t, &bad, "%s.%d.layer_norm2.weight", e, l), y->ln2b = R(t, &bad, "%s.%d.layer_norm2.bias", e, l);
        y->f1w = R(t, &bad, "%s.%d.mlp.fc1.weight", e, l), y->f1b = R(t, &bad, "%s.%d.mlp.fc1.bias", e, l);
        y->f2w = R(t, &bad, "%s.%d.mlp.fc2.weight", e, l), y->f2b = R(t, &bad, "%s.%d.mlp.fc2.bias", e, l);
    }
    p->lnfw = R(t, &bad, "text_model.final_layer_norm.weight");
    p->lnfb = R(t, &bad, "text_model.final_layer_norm.bias");
    return bad ? -1 : 0;
}

static int clip_new(const sd_clip_text_config *cfg, sd_backend *be, sd_clip_text **out) {
    *out = NULL;
    if (cfg->hidden_act != SD_ACT_QUICK_GELU && cfg->hidden_act != SD_ACT_GELU)
        return sd_set_error("text encoder: hidden_act \"%s\" is not implemented (quick_gelu and gelu are)",
                            sd_act_name(cfg->hidden_act));
    if (cfg->num_attention_heads < 1 || cfg->hidden_size % cfg->num_attention_heads)
        return sd_set_error("text encoder: hidden_size %d is not a multiple of num_attention_heads %d",
                            cfg->hidden_size, cfg->num_attention_heads);
    sd_clip_text *t = sd_xcalloc(1, sizeof *t);
    t->cfg = *cfg;
    t->cfg.raw = NULL;
    t->be = be;
    t->hidden = cfg->hidden_size;
    t->priv = sd_xcalloc(1, sizeof *t->priv);
    if (sd_clip_text_param_table(&t->cfg, &t->table)) {
        sd_clip_text_free(t);
        return -1;
    }
    t->params = sd_backend_alloc_f32(be, t->table.total);
    if (!t->params) {
        sd_error_prefix("text encoder: weights (%zu floats)", t->table.total);
        sd_clip_text_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int sd_clip_text_create(const sd_clip_text_config *cfg, const float *params, sd_backend *be, sd_clip_text **out) {
    sd_clip_text *t;
    if (clip_new(cfg, be, &t)) return -1;
    if (sd_backend_upload(be, t->params, params, t->table.total * sizeof(float)) || resolve(t)) {
        sd_clip_text_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int sd_clip_text_load(sd_model *m, sd_backend *be, sd_clip_text **out) {
    *out = NULL;
    if (!m->has[SD_TEXT_ENCODER]) return sd_set_error("%s: the model has no text encoder", m->path);
    sd_clip_text *t;
    if (clip_new(&m->text, be, &t)) return -1;
    int rc;
    if (is_cpu(be)) {
        rc = sd_model_load(m, SD_TEXT_ENCODER, &t->table, t->params);
    } else {
        float *host = malloc(t->table.total * sizeof(float));
        if (!host) rc = sd_set_error("text encoder: out of memory");
        else {
            rc = sd_model_load(m, SD_TEXT_ENCODER, &t->table, host);
            if (!rc) rc = sd_backend_upload(be, t->params, host, t->table.total * sizeof(float));
            free(host);
        }
    }
    if (rc || resolve(t)) {
        sd_clip_text_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void sd_clip_text_free(sd_clip_text *t) {
    if (!t) return;
    if (t->priv) {
        sd_clip_text_release(t);
        free(t->priv->layers);
        free(t->priv);
    }
    sd_backend_free(t->be, t->params);
    sd_param_table_free(&t->table);
    free(t);
}

int sd_clip_text_fingerprint(sd_clip_text *t, char hex[65]) {
    sd_clip_text_priv *p = t->priv;
    if (!p->have_fp) {
        const float *buf = t->params;
        float *host = NULL;
        if (!is_cpu(t->be)) {
            host = malloc(t->table.total * sizeof(float));
            if (!host) return sd_set_error("text encoder: out of memory");
            if (sd_backend_download(t->be, host, t->params, t->table.total * sizeof(float))) {
                free(host);
                return -1;
            }
            buf = host;
        }
        sd_param_fingerprint(&t->table, buf, p->fp);
        free(host);
        p->have_fp = 1;
    }
    memcpy(hex, p->fp, 65);
    return 0;
}

/* ---- workspace ------------------------------------------------------------------ */

static size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Floats of one clip_acts for N tokens (each buffer 64-byte aligned). */
static size_t acts_floats(const sd_clip_text_config *c, size_t N) {
    size_t D = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    size_t H = (size_t)c->num_attention_heads;
    return 7 * pad16(N * D) + pad16(N * I) + pad16(N * H) + 2 * pad16(N); /* ln1 q k v att ln2 proj | fc1 | lse | mean rstd */
}

static clip_acts acts_carve(const sd_clip_text_config *c, float *ws, size_t N) {
    size_t D = (size_t)c->hidden_size, I = (size_t)c->intermediate_size, H = (size_t)c->num_attention_heads;
    clip_acts a;
    float *p = ws;
#define TAKE(field, n) (a.field = p, p += pad16(n))
    TAKE(ln1, N * D);
    TAKE(q, N * D);
    TAKE(k, N * D);
    TAKE(v, N * D);
    TAKE(att, N * D);
    TAKE(ln2, N * D);
    TAKE(proj, N * D);
    TAKE(fc1, N * I);
    TAKE(lse, N * H); /* [B, H, L] */
    TAKE(mean, N);
    TAKE(rstd, N);
#undef TAKE
    return a;
}

size_t sd_clip_text_workspace_bytes(const sd_clip_text *t, int B, int L) {
    return acts_floats(&t->cfg, (size_t)B * L) * sizeof(float) + pad16((size_t)B * L) * sizeof(int32_t);
}

void sd_clip_text_release(sd_clip_text *t) {
    sd_clip_text_priv *p = t->priv;
    sd_backend_free(t->be, p->ws);
    sd_backend_free(t->be, p->ids);
    p->ws = NULL;
    p->ids = NULL;
    p->ws_floats = p->cap_tokens = 0;
}

static int ensure(sd_clip_text *t, size_t N) {
    sd_clip_text_priv *p = t->priv;
    if (N <= p->cap_tokens) return 0;
    sd_clip_text_release(t);
    p->ws_floats = acts_floats(&t->cfg, N);
    p->ws = sd_backend_alloc_f32(t->be, p->ws_floats);
    p->ids = sd_backend_alloc(t->be, N * sizeof(int32_t));
    if (!p->ws || !p->ids) {
        sd_clip_text_release(t);
        return sd_error_prefix("text encoder: activation memory");
    }
    p->cap_tokens = N;
    return 0;
}

/* ---- forward ---------------------------------------------------------------------- */

/* One pre-LN transformer layer on the residual stream h [B, L, D], in place. */
static void layer_forward(sd_clip_text *t, const clip_layer *y, float *h, const clip_acts *a, int B, int L) {
    sd_backend *be = t->be;
    const sd_clip_text_config *c = &t->cfg;
    const int N = B * L, D = c->hidden_size, I = c->intermediate_size, H = c->num_attention_heads;
    const float eps = (float)c->layer_norm_eps;

    /* h += out_proj(MHA(layer_norm1(h)))  (causal; heads are column blocks of q/k/v) */
    sd_layernorm_forward(be, a->ln1, a->mean, a->rstd, h, y->ln1w, y->ln1b, N, D, eps);
    sd_linear_forward(be, a->q, a->ln1, y->qw, y->qb, N, D, D);
    sd_linear_forward(be, a->k, a->ln1, y->kw, y->kb, N, D, D);
    sd_linear_forward(be, a->v, a->ln1, y->vw, y->vb, N, D, D);
    sd_attn_desc d = sd_attn_init(B, H, L, L, D / H, 1);
    sd_attention_forward(be, &d, a->att, a->lse, a->q, a->k, a->v);
    sd_linear_forward(be, a->proj, a->att, y->ow, y->ob, N, D, D);
    sd_add_forward(be, h, h, a->proj, (size_t)N * D);

    /* h += fc2(act(fc1(layer_norm2(h)))) */
    sd_layernorm_forward(be, a->ln2, a->mean, a->rstd, h, y->ln2w, y->ln2b, N, D, eps);
    sd_linear_forward(be, a->fc1, a->ln2, y->f1w, y->f1b, N, D, I);
    if (c->hidden_act == SD_ACT_QUICK_GELU) sd_quick_gelu_forward(be, a->fc1, a->fc1, (size_t)N * I);
    else sd_gelu_forward(be, a->fc1, a->fc1, (size_t)N * I);
    sd_linear_forward(be, a->proj, a->fc1, y->f2w, y->f2b, N, I, D);
    sd_add_forward(be, h, h, a->proj, (size_t)N * D);
}

int sd_clip_text_forward(sd_clip_text *t, const int32_t *ids, int B, int L, int clip_skip, float *out) {
    const sd_clip_text_config *c = &t->cfg;
    sd_clip_text_priv *p = t->priv;
    if (B < 1 || L < 1 || L > c->max_position_embeddings)
        return sd_set_error("text encoder: %d rows of %d tokens (1..%d tokens per row)", B, L,
                            c->max_position_embeddings);
    if (clip_skip < 0 || clip_skip > c->num_hidden_layers)
        return sd_set_error("text encoder: clip_skip %d out of range 0..%d", clip_skip, c->num_hidden_layers);
    for (long long i = 0; i < (long long)B * L; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return sd_set_error("text encoder: token id %d (row %lld, position %lld) outside the vocabulary of %d",
                                (int)ids[i], i / L, i % L, c->vocab_size);
    const size_t N = (size_t)B * L;
    if (ensure(t, N)) return -1;
    if (sd_backend_upload(t->be, p->ids, ids, N * sizeof(int32_t))) return -1;
    clip_acts a = acts_carve(c, p->ws, N);

    /* the output buffer is the residual stream */
    float *h = out;
    const int D = c->hidden_size;
    sd_embedding_forward(t->be, h, p->ids, p->tok, p->pos, B, L, D, c->vocab_size);
    const int nl = c->num_hidden_layers - clip_skip;
    for (int l = 0; l < nl; l++) layer_forward(t, &p->layers[l], h, &a, B, L);
    sd_layernorm_forward(t->be, h, a.mean, a.rstd, h, p->lnfw, p->lnfb, (int)N, D, (float)c->layer_norm_eps);
    return sd_backend_sync(t->be);
}
