/* vae.c — AutoencoderKL encoder and decoder forward (see vae.h).
 *
 * Activation slots. Inference keeps no activations for a backward, so each
 * block reads its input and writes its output into three rotating buffers
 * ("slots" 0, 1, 2; index arithmetic is mod 3). With x in slot a:
 *   resnet      t = silu(norm1(x))  -> a+2        (width max(cin, cout))
 *               u = conv1(t)        -> a+1, silu(norm2(u)) in place
 *               t = conv2(u)        -> a+2
 *               cin == cout:  x += t, output in a
 *               else:         u = conv_shortcut(x) -> a+1; u += t, output in a+1
 *   downsample  conv(x) -> a+1
 *   upsample    nearest2x(x) -> a+1, conv -> a+2
 *   attention   gn(x) -> a+2, tokens -> a+1 = [tok | q | k | v],
 *               a+2 = [o | lse], to_out(o) -> tok, x += tokens^T  (in place)
 * The resnet after an upsample (x in a+2) finds its t slot (a+4 = a+1) already
 * sized for the upsampled tensor, so the decoder's full-resolution stage needs
 * two slots of the widest tensor (256 ch at 512² for SD) and one of half that:
 * 671 MB at 512x512, where diffusers (which also frees as it goes) holds
 * x, norm(x) and silu(norm(x)) at once (805 MB) plus its allocator's slack.
 *
 * Slot sizes come from a dry run ("plan") of the very same block functions:
 * S() records the largest request per slot and returns NULL, and each block
 * returns before its ops. The real run then asserts every request fits, so a
 * plan that disagreed with the forward would abort at once, not corrupt
 * memory.
 */
#include "models/vae.h"
#include "core/error.h"
#include "nn/nn.h"

#include <stdlib.h>
#include <string.h>

#define NSLOT 3
#define VAE_EPS 1e-6f

typedef struct {
    int cin, cout;
    const float *n1w, *n1b, *c1w, *c1b, *n2w, *n2b, *c2w, *c2b, *scw, *scb; /* sc*: NULL if cin == cout */
} vae_resnet;

typedef struct {
    const float *gnw, *gnb, *qw, *qb, *kw, *kb, *vw, *vb, *ow, *ob;
} vae_attn;

typedef struct {
    vae_resnet r0, r1;
    int has_attn;
    vae_attn attn;
} vae_mid;

typedef struct {
    const float *w, *b;
} vae_conv;

struct sd_vae_priv {
    /* encoder */
    vae_conv enc_in, enc_out, quant; /* quant.w NULL without quant_conv */
    vae_resnet *enc_res;             /* [levels][layers_per_block] */
    vae_conv enc_down[SD_VAE_MAX_LEVELS];
    vae_mid enc_mid;
    const float *enc_nw, *enc_nb;
    /* decoder */
    vae_conv post_quant, dec_in, dec_out;
    vae_mid dec_mid;
    vae_resnet *dec_res; /* [levels][layers_per_block + 1] */
    vae_conv dec_up[SD_VAE_MAX_LEVELS];
    const float *dec_nw, *dec_nb;
    /* activation memory */
    float *slot[NSLOT + 1]; /* slot[NSLOT]: GroupNorm mean/rstd */
    size_t cap[NSLOT + 1];
    int have_fp;
    char fp[65];
};

/* ---- parameter pointers ------------------------------------------------------ */

typedef struct {
    sd_vae *v;
    int bad;
} resolver;

static const float *R(resolver *r, const char *fmt, ...) SD_PRINTF(2, 3);
static const float *R(resolver *r, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const float *p = sd_param_data(&r->v->table, r->v->params, name);
    if (!p && !r->bad) {
        r->bad = 1;
        sd_set_error("vae: parameter %s missing from the table", name);
    }
    return p;
}

static void get_resnet(resolver *r, vae_resnet *p, const char *pre, int cin, int cout) {
    p->cin = cin;
    p->cout = cout;
    p->n1w = R(r, "%s.norm1.weight", pre), p->n1b = R(r, "%s.norm1.bias", pre);
    p->c1w = R(r, "%s.conv1.weight", pre), p->c1b = R(r, "%s.conv1.bias", pre);
    p->n2w = R(r, "%s.norm2.weight", pre), p->n2b = R(r, "%s.norm2.bias", pre);
    p->c2w = R(r, "%s.conv2.weight", pre), p->c2b = R(r, "%s.conv2.bias", pre);
    p->scw = p->scb = NULL;
    if (cin != cout) p->scw = R(r, "%s.conv_shortcut.weight", pre), p->scb = R(r, "%s.conv_shortcut.bias", pre);
}

static void get_conv(resolver *r, vae_conv *c, const char *pre) {
    c->w = R(r, "%s.weight", pre);
    c->b = R(r, "%s.bias", pre);
}

static void get_mid(resolver *r, vae_mid *m, const char *pre, int C, int attn) {
    char a[128];
    snprintf(a, sizeof a, "%s.resnets.0", pre);
    get_resnet(r, &m->r0, a, C, C);
    snprintf(a, sizeof a, "%s.resnets.1", pre);
    get_resnet(r, &m->r1, a, C, C);
    m->has_attn = attn;
    if (!attn) return;
    vae_attn *t = &m->attn;
    t->gnw = R(r, "%s.attentions.0.group_norm.weight", pre), t->gnb = R(r, "%s.attentions.0.group_norm.bias", pre);
    t->qw = R(r, "%s.attentions.0.to_q.weight", pre), t->qb = R(r, "%s.attentions.0.to_q.bias", pre);
    t->kw = R(r, "%s.attentions.0.to_k.weight", pre), t->kb = R(r, "%s.attentions.0.to_k.bias", pre);
    t->vw = R(r, "%s.attentions.0.to_v.weight", pre), t->vb = R(r, "%s.attentions.0.to_v.bias", pre);
    t->ow = R(r, "%s.attentions.0.to_out.0.weight", pre), t->ob = R(r, "%s.attentions.0.to_out.0.bias", pre);
}

static int resolve(sd_vae *v) {
    sd_vae_priv *p = v->priv;
    const sd_vae_config *c = &v->cfg;
    const int n = c->num_levels, lpb = c->layers_per_block, *ch = c->block_out_channels;
    resolver r = {v, 0};
    char a[128];

    get_conv(&r, &p->enc_in, "encoder.conv_in");
    p->enc_res = sd_xcalloc((size_t)n * lpb, sizeof *p->enc_res);
    for (int i = 0; i < n; i++) {
        int cin = i == 0 ? ch[0] : ch[i - 1];
        for (int j = 0; j < lpb; j++) {
            snprintf(a, sizeof a, "encoder.down_blocks.%d.resnets.%d", i, j);
            get_resnet(&r, &p->enc_res[i * lpb + j], a, j == 0 ? cin : ch[i], ch[i]);
        }
        if (i < n - 1) {
            snprintf(a, sizeof a, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            get_conv(&r, &p->enc_down[i], a);
        }
    }
    get_mid(&r, &p->enc_mid, "encoder.mid_block", ch[n - 1], c->mid_block_add_attention);
    p->enc_nw = R(&r, "encoder.conv_norm_out.weight"), p->enc_nb = R(&r, "encoder.conv_norm_out.bias");
    get_conv(&r, &p->enc_out, "encoder.conv_out");
    if (c->use_quant_conv) get_conv(&r, &p->quant, "quant_conv");

    if (c->use_post_quant_conv) get_conv(&r, &p->post_quant, "post_quant_conv");
    get_conv(&r, &p->dec_in, "decoder.conv_in");
    get_mid(&r, &p->dec_mid, "decoder.mid_block", ch[n - 1], c->mid_block_add_attention);
    p->dec_res = sd_xcalloc((size_t)n * (lpb + 1), sizeof *p->dec_res);
    int prev = ch[n - 1];
    for (int i = 0; i < n; i++) {
        int cout = ch[n - 1 - i];
        for (int j = 0; j < lpb + 1; j++) {
            snprintf(a, sizeof a, "decoder.up_blocks.%d.resnets.%d", i, j);
            get_resnet(&r, &p->dec_res[i * (lpb + 1) + j], a, j == 0 ? prev : cout, cout);
        }
        if (i < n - 1) {
            snprintf(a, sizeof a, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            get_conv(&r, &p->dec_up[i], a);
        }
        prev = cout;
    }
    p->dec_nw = R(&r, "decoder.conv_norm_out.weight"), p->dec_nb = R(&r, "decoder.conv_norm_out.bias");
    get_conv(&r, &p->dec_out, "decoder.conv_out");
    return r.bad ? -1 : 0;
}

/* ---- creation ------------------------------------------------------------------ */

static int is_cpu(const sd_backend *be) { return be->name && !strcmp(be->name, "cpu"); }

/* The struct around a table and an allocated (not yet filled) weight buffer. */
static int vae_new(const sd_vae_config *cfg, sd_backend *be, sd_vae **out) {
    *out = NULL;
    sd_vae *v = sd_xcalloc(1, sizeof *v);
    v->cfg = *cfg;
    v->cfg.raw = NULL;
    v->be = be;
    v->priv = sd_xcalloc(1, sizeof *v->priv);
    if (sd_vae_param_table(&v->cfg, &v->table)) {
        sd_vae_free(v);
        return -1;
    }
    v->factor = 1 << (cfg->num_levels - 1);
    v->latent_channels = cfg->latent_channels;
    v->scaling_factor = (float)cfg->scaling_factor;
    v->shift_factor = cfg->has_shift_factor ? (float)cfg->shift_factor : 0.0f;
    v->params = sd_backend_alloc_f32(be, v->table.total);
    if (!v->params) {
        sd_error_prefix("vae: weights (%zu floats)", v->table.total);
        sd_vae_free(v);
        return -1;
    }
    *out = v;
    return 0;
}

int sd_vae_create(const sd_vae_config *cfg, const float *params, sd_backend *be, sd_vae **out) {
    sd_vae *v;
    if (vae_new(cfg, be, &v)) return -1;
    if (sd_backend_upload(be, v->params, params, v->table.total * sizeof(float)) || resolve(v)) {
        sd_vae_free(v);
        return -1;
    }
    *out = v;
    return 0;
}

int sd_vae_load(sd_model *m, sd_backend *be, sd_vae **out) {
    *out = NULL;
    if (!m->has[SD_VAE]) return sd_set_error("%s: the model has no VAE", m->path);
    sd_vae *v;
    if (vae_new(&m->vae, be, &v)) return -1;
    int rc;
    if (is_cpu(be)) {
        rc = sd_model_load(m, SD_VAE, &v->table, v->params);
    } else {
        float *host = malloc(v->table.total * sizeof(float));
        if (!host) rc = sd_set_error("vae: out of memory");
        else {
            rc = sd_model_load(m, SD_VAE, &v->table, host);
            if (!rc) rc = sd_backend_upload(be, v->params, host, v->table.total * sizeof(float));
            free(host);
        }
    }
    if (rc || resolve(v)) {
        sd_vae_free(v);
        return -1;
    }
    *out = v;
    return 0;
}

void sd_vae_free(sd_vae *v) {
    if (!v) return;
    if (v->priv) {
        sd_vae_release(v);
        free(v->priv->enc_res);
        free(v->priv->dec_res);
        free(v->priv);
    }
    sd_backend_free(v->be, v->params);
    sd_param_table_free(&v->table);
    free(v);
}

int sd_vae_fingerprint(sd_vae *v, char hex[65]) {
    sd_vae_priv *p = v->priv;
    if (!p->have_fp) {
        const float *buf = v->params;
        float *host = NULL;
        if (!is_cpu(v->be)) {
            host = malloc(v->table.total * sizeof(float));
            if (!host) return sd_set_error("vae: out of memory");
            if (sd_backend_download(v->be, host, v->params, v->table.total * sizeof(float))) {
                free(host);
                return -1;
            }
            buf = host;
        }
        sd_param_fingerprint(&v->table, buf, p->fp);
        free(host);
        p->have_fp = 1;
    }
    memcpy(hex, p->fp, 65);
    return 0;
}

/* ---- the run context ----------------------------------------------------------- */

typedef struct {
    sd_backend *be;
    int B, G;
    int plan;
    size_t need[NSLOT + 1];
    float **slot;
    const size_t *cap;
} vae_run;

/* Slot i (mod NSLOT) holding at least n floats: its pointer, or, when
 * planning, NULL after recording the need. */
static float *S(vae_run *r, int i, size_t n) {
    i %= NSLOT;
    if (r->plan) {
        if (n > r->need[i]) r->need[i] = n;
        return NULL;
    }
    if (n > r->cap[i]) sd_die("vae: slot %d: %zu floats needed, %zu planned (plan and forward disagree)", i, n, r->cap[i]);
    return r->slot[i];
}


/* GroupNorm over [B, C, HW] with the run's statistics buffer. */
static void gn(vae_run *r, float *out, const float *inp, const float *w, const float *b, int C, int HW, int silu) {
    float *mean = r->slot[NSLOT], *rstd = mean + (size_t)r->B * r->G;
    sd_groupnorm_forward(r->be, out, mean, rstd, inp, w, b, r->B, C, HW, r->G, VAE_EPS, silu);
}

static void conv3(vae_run *r, float *out, const float *inp, const vae_conv *c, int C, int OC, int H, int W) {
    sd_conv2d_desc d = sd_conv2d_init(r->B, C, H, W, OC, 3, 1, 1);
    sd_conv2d_forward(r->be, &d, out, inp, c->w, c->b);
}

static void conv1x1(vae_run *r, float *out, const float *inp, const float *w, const float *b, int C, int OC, int H,
                    int W) {
    sd_conv2d_desc d = sd_conv2d_init(r->B, C, H, W, OC, 1, 1, 0);
    sd_conv2d_forward(r->be, &d, out, inp, w, b);
}

/* ---- blocks (each returns the slot of its output) --------------------------------- */

/* ResnetBlock2D, no time embedding, output_scale_factor 1 (diffusers resnet.py):
 *   out = shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))) */
static int resnet(vae_run *r, const vae_resnet *p, int a, int H, int W) {
    const size_t HW = (size_t)H * W, B = (size_t)r->B;
    float *x = S(r, a, B * p->cin * HW);
    float *t = S(r, a + 2, B * (size_t)(p->cin > p->cout ? p->cin : p->cout) * HW);
    float *u = S(r, a + 1, B * p->cout * HW);
    int shortcut = p->cin != p->cout;
    if (r->plan) return shortcut ? (a + 1) % NSLOT : a;
    gn(r, t, x, p->n1w, p->n1b, p->cin, (int)HW, 1);
    conv3(r, u, t, &(vae_conv){p->c1w, p->c1b}, p->cin, p->cout, H, W);
    gn(r, u, u, p->n2w, p->n2b, p->cout, (int)HW, 1);
    conv3(r, t, u, &(vae_conv){p->c2w, p->c2b}, p->cout, p->cout, H, W);
    if (!shortcut) {
        sd_add_forward(r->be, x, x, t, B * p->cout * HW);
        return a;
    }
    conv1x1(r, u, x, p->scw, p->scb, p->cin, p->cout, H, W);
    sd_add_forward(r->be, u, u, t, B * p->cout * HW);
    return (a + 1) % NSLOT;
}

/* Mid-block Attention (1 head of dim C, own GroupNorm, biased projections,
 * residual, rescale 1), in place on slot a:
 *   x += to_out(softmax(q k^T / sqrt(C)) v),  q/k/v = to_*(gn(x)^T) */
static void attention(vae_run *r, const vae_attn *p, int a, int C, int H, int W) {
    const int HW = H * W, B = r->B;
    const size_t n = (size_t)B * HW * C;
    float *x = S(r, a, n);
    float *s1 = S(r, a + 1, 4 * n);                  /* tok | q | k | v */
    float *s2 = S(r, a + 2, n + (size_t)B * HW);     /* gn(x), then o | lse */
    if (r->plan) return;
    float *tok = s1, *q = s1 + n, *k = s1 + 2 * n, *v = s1 + 3 * n, *o = s2, *lse = s2 + n;
    gn(r, s2, x, p->gnw, p->gnb, C, HW, 0);
    sd_nchw_to_nhwc_forward(r->be, tok, s2, B, C, HW);
    sd_linear_forward(r->be, q, tok, p->qw, p->qb, B * HW, C, C);
    sd_linear_forward(r->be, k, tok, p->kw, p->kb, B * HW, C, C);
    sd_linear_forward(r->be, v, tok, p->vw, p->vb, B * HW, C, C);
    sd_attn_desc d = sd_attn_init(B, 1, HW, HW, C, 0);
    sd_attention_forward(r->be, &d, o, lse, q, k, v);
    sd_linear_forward(r->be, tok, o, p->ow, p->ob, B * HW, C, C);
    /* x[b, c, i] += tok[b, i, c]: the transpose's accumulating form */
    sd_nchw_to_nhwc_backward(r->be, x, tok, B, C, HW);
}

static int mid_block(vae_run *r, const vae_mid *m, int a, int C, int H, int W) {
    a = resnet(r, &m->r0, a, H, W);
    if (m->has_attn) attention(r, &m->attn, a, C, H, W);
    return resnet(r, &m->r1, a, H, W);
}

/* Downsample2D of the encoder: F.pad(x, (0, 1, 0, 1)) then conv k3 s2 p0. */
static int downsample(vae_run *r, const vae_conv *c, int a, int C, int H, int W) {
    sd_conv2d_desc d = sd_conv2d_init_pad(r->B, C, H, W, C, 3, 3, 2, 0, 1, 0, 1);
    float *x = S(r, a, (size_t)r->B * C * H * W);
    float *y = S(r, a + 1, (size_t)r->B * C * d.OH * d.OW);
    if (!r->plan) sd_conv2d_forward(r->be, &d, y, x, c->w, c->b);
    return (a + 1) % NSLOT;
}

/* Upsample2D: nearest 2x, then conv k3 p1. */
static int upsample(vae_run *r, const vae_conv *c, int a, int C, int H, int W) {
    const size_t n2 = (size_t)r->B * C * (2 * H) * (2 * W);
    float *x = S(r, a, (size_t)r->B * C * H * W), *up = S(r, a + 1, n2), *y = S(r, a + 2, n2);
    if (r->plan) return (a + 2) % NSLOT;
    sd_upsample_nearest_forward(r->be, up, x, r->B, C, H, W, 2 * H, 2 * W);
    conv3(r, y, up, c, C, C, 2 * H, 2 * W);
    return (a + 2) % NSLOT;
}

/* ---- encoder / decoder ------------------------------------------------------------ */

static void encoder(sd_vae *v, vae_run *r, const float *img, int H, int W, float *moments) {
    const sd_vae_priv *p = v->priv;
    const sd_vae_config *c = &v->cfg;
    const int n = c->num_levels, lpb = c->layers_per_block, *ch = c->block_out_channels, L2 = 2 * c->latent_channels;
    int a = 0;
    float *x = S(r, a, (size_t)r->B * ch[0] * H * W);
    if (!r->plan) conv3(r, x, img, &p->enc_in, c->in_channels, ch[0], H, W);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < lpb; j++) a = resnet(r, &p->enc_res[i * lpb + j], a, H, W);
        if (i < n - 1) {
            a = downsample(r, &p->enc_down[i], a, ch[i], H, W);
            H /= 2, W /= 2;
        }
    }
    const int C = ch[n - 1], HW = H * W;
    a = mid_block(r, &p->enc_mid, a, C, H, W);
    x = S(r, a, (size_t)r->B * C * HW);
    float *h = p->quant.w ? S(r, a + 1, (size_t)r->B * L2 * HW) : moments;
    if (r->plan) return;
    gn(r, x, x, p->enc_nw, p->enc_nb, C, HW, 1);
    conv3(r, h, x, &p->enc_out, C, L2, H, W);
    if (p->quant.w) conv1x1(r, moments, h, p->quant.w, p->quant.b, L2, L2, H, W);
}

static void decoder(sd_vae *v, vae_run *r, const float *z, int H, int W, float *img) {
    const sd_vae_priv *p = v->priv;
    const sd_vae_config *c = &v->cfg;
    const int n = c->num_levels, lpb = c->layers_per_block, *ch = c->block_out_channels, L = c->latent_channels;
    const float *zin = z;
    if (p->post_quant.w) {
        float *zq = S(r, 1, (size_t)r->B * L * H * W);
        if (!r->plan) conv1x1(r, zq, z, p->post_quant.w, p->post_quant.b, L, L, H, W);
        zin = zq;
    }
    int a = 0;
    float *x = S(r, a, (size_t)r->B * ch[n - 1] * H * W);
    if (!r->plan) conv3(r, x, zin, &p->dec_in, L, ch[n - 1], H, W);
    a = mid_block(r, &p->dec_mid, a, ch[n - 1], H, W);
    for (int i = 0; i < n; i++) {
        int C = ch[n - 1 - i];
        for (int j = 0; j < lpb + 1; j++) a = resnet(r, &p->dec_res[i * (lpb + 1) + j], a, H, W);
        if (i < n - 1) {
            a = upsample(r, &p->dec_up[i], a, C, H, W);
            H *= 2, W *= 2;
        }
    }
    x = S(r, a, (size_t)r->B * ch[0] * H * W);
    if (r->plan) return;
    gn(r, x, x, p->dec_nw, p->dec_nb, ch[0], H * W, 1);
    conv3(r, img, x, &p->dec_out, ch[0], c->out_channels, H, W);
}

/* ---- workspace ---------------------------------------------------------------------- */

static void plan(const sd_vae *v, int enc, int B, int H, int W, size_t need[NSLOT + 1]) {
    vae_run r = {v->be, B, v->cfg.norm_num_groups, 1, {0}, NULL, NULL};
    if (enc) encoder((sd_vae *)v, &r, NULL, H, W, NULL);
    else decoder((sd_vae *)v, &r, NULL, H, W, NULL);
    r.need[NSLOT] = 2 * (size_t)B * r.G;
    memcpy(need, r.need, sizeof r.need);
}

size_t sd_vae_workspace_bytes(const sd_vae *v, int enc, int B, int H, int W) {
    size_t need[NSLOT + 1], s = 0;
    plan(v, enc, B, H, W, need);
    for (int i = 0; i <= NSLOT; i++) s += need[i];
    return s * sizeof(float);
}

size_t sd_vae_workspace_held(const sd_vae *v) {
    size_t s = 0;
    for (int i = 0; i <= NSLOT; i++) s += v->priv->cap[i];
    return s * sizeof(float);
}

void sd_vae_release(sd_vae *v) {
    sd_vae_priv *p = v->priv;
    for (int i = 0; i <= NSLOT; i++) {
        sd_backend_free(v->be, p->slot[i]);
        p->slot[i] = NULL;
        p->cap[i] = 0;
    }
}

/* Grow the slots to hold need[] (slots already large enough are kept). */
static int ensure(sd_vae *v, const size_t need[NSLOT + 1]) {
    sd_vae_priv *p = v->priv;
    for (int i = 0; i <= NSLOT; i++) {
        if (need[i] <= p->cap[i]) continue;
        sd_backend_free(v->be, p->slot[i]);
        p->slot[i] = sd_backend_alloc_f32(v->be, need[i]);
        p->cap[i] = p->slot[i] ? need[i] : 0;
        if (!p->slot[i]) return sd_error_prefix("vae: activation memory (%zu MB)", need[i] * sizeof(float) >> 20);
    }
    return 0;
}

static int check_shape(const sd_vae *v, int enc, int B, int H, int W) {
    if (B < 1 || H < 1 || W < 1) return sd_set_error("vae: bad shape [%d, %d, %d]", B, H, W);
    if (enc && (H % v->factor || W % v->factor))
        return sd_set_error("vae: image size %dx%d is not a multiple of %d", W, H, v->factor);
    /* ops index one image's activations with int: bound the largest
     * (widest channels at full output resolution, a safe overestimate) */
    int cmax = 0;
    for (int i = 0; i < v->cfg.num_levels; i++)
        if (v->cfg.block_out_channels[i] > cmax) cmax = v->cfg.block_out_channels[i];
    double px = (double)H * W * (enc ? 1.0 : (double)v->factor * v->factor);
    if (px * cmax * 4 > 2147483647.0) return sd_set_error("vae: size %dx%d too large", W, H);
    return 0;
}

int sd_vae_reserve(sd_vae *v, int enc, int B, int H, int W) {
    if (check_shape(v, enc, B, H, W)) return -1;
    size_t need[NSLOT + 1];
    plan(v, enc, B, H, W, need);
    return ensure(v, need);
}

static int run(sd_vae *v, int enc, const float *in, int B, int H, int W, float *out) {
    if (sd_vae_reserve(v, enc, B, H, W)) return -1;
    sd_vae_priv *p = v->priv;
    vae_run r = {v->be, B, v->cfg.norm_num_groups, 0, {0}, p->slot, p->cap};
    if (enc) encoder(v, &r, in, H, W, out);
    else decoder(v, &r, in, H, W, out);
    return sd_backend_sync(v->be);
}

int sd_vae_encode(sd_vae *v, const float *img, int B, int H, int W, float *moments) {
    return run(v, 1, img, B, H, W, moments);
}

int sd_vae_decode(sd_vae *v, const float *z, int B, int h, int w, float *img) {
    return run(v, 0, z, B, h, w, img);
}

void sd_vae_moments_split(const float *moments, int B, int L, int h, int w, float *mean, float *logvar) {
    const size_t n = (size_t)L * h * w;
    for (int b = 0; b < B; b++) {
        const float *m = moments + (size_t)b * 2 * n, *lv = m + n;
        if (mean) memcpy(mean + (size_t)b * n, m, n * sizeof(float));
        if (logvar) {
            float *o = logvar + (size_t)b * n;
            /* torch.clamp(logvar, -30.0, 20.0); NaN stays NaN as in torch */
            for (size_t i = 0; i < n; i++) o[i] = lv[i] < -30.0f ? -30.0f : lv[i] > 20.0f ? 20.0f : lv[i];
        }
    }
}
