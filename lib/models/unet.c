/* unet.c — UNet2DConditionModel forward, training forward and backward.
 *
 * Structure (llm.c style): the network is a flat list of UNITS in forward
 * order — ResnetBlock2D, Transformer2DModel, Downsample2D, Upsample2D — plus
 * the stem (time embedding, conv_in) and the head (GroupNorm+SiLU, conv_out).
 * Each unit kind has a forward and a backward function over flat buffers.
 * The driver walks the list, keeps the skip stack, and hands each unit its
 * input, the skip it concatenates (up-block resnets) and its output buffer.
 *
 * Memory: every function takes all its buffers from "carvers" (bump
 * allocators over one device block) BEFORE it computes anything, and returns
 * right after carving in a dry run. Planning a shape = one dry run of the
 * very code that will execute; the block is then allocated once with the
 * measured peaks and reused while the shape stays the same. Carvers:
 *   keep  lives for the whole pass: skip stack (inference), layer outputs
 *         and saved internals (training), stem vectors;
 *   scr   per-unit temporaries, reset after every unit;
 *   rec   checkpointing: the internals of the unit being recomputed;
 *   grad  backward: gradients of the skip stack, ping-pong gradient buffers.
 * `tape` points at whichever carver receives a unit's saved internals: keep
 * (training), scr (inference, and the first forward with checkpointing: they
 * are dropped) or rec (recompute before backward).
 */
#include "models/unet.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "nn/nn.h"

enum { UK_RESNET = 0, UK_XFORMER = 1, UK_DOWN = 2, UK_UP = 3 };

#define NOPAR ((size_t)-1)

/* Parameter offsets of one BasicTransformerBlock. to_q|to_k|to_v are stored
 * back to back without biases (params.h), so the self-attention projection is
 * ONE Linear with weight [3C, C] at q1, and the cross-attention K|V one Linear
 * [2C, X] at kv2; their gradients are contiguous the same way. */
typedef struct {
    size_t n1w, n1b, q1, kv1, o1w, o1b;
    size_t n2w, n2b, q2, kv2, o2w, o2b;
    size_t n3w, n3b, f0w, f0b, f2w, f2b;
} tl_par;

typedef struct {
    int kind;
    char name[48];
    int cin, cout;     /* resnet: cin includes the concatenated skip; others: C */
    int cskip;         /* up resnets: channels of the skip concatenated after h */
    int to_skip;       /* the output is pushed on the skip stack */
    float inv_scale;   /* resnet: 1/output_scale_factor (1: skipped) */
    int pad;           /* downsampler padding */
    /* transformer */
    int heads, head_dim, layers, xdim, only_cross;
    /* parameters */
    size_t n1w, n1b, c1w, c1b, tw, tb, n2w, n2b, c2w, c2b, scw, scb; /* resnet (scw NOPAR: identity) */
    size_t gnw, gnb, piw, pib, pow_, pob;                             /* transformer */
    tl_par tl[SD_UNET_MAX_TLAYERS];
    size_t cw, cb;                                                    /* sampler conv */
} unit;

/* Saved tensors of one BasicTransformerBlock (pointers into the tape). */
typedef struct {
    float *m1, *r1, *qkv, *q1, *kv1, *o1, *lse1, *t1;
    float *m2, *r2, *q2, *kv2, *o2, *lse2, *t2;
    float *m3, *r3, *p, *t3;
} tl_rec;

/* What the forward of a unit used and saved, for its backward. */
typedef struct {
    const float *x, *skip; /* input, concatenated skip (up resnets) */
    float *out;
    int x_sk, skip_sk;     /* skip-stack index of x / skip (-1: not a skip tensor) */
    int H, W, OH, OW;      /* input and output spatial size */
    float *h1, *m1, *r1, *m2, *r2; /* resnet */
    float *gm, *gr, *t0;           /* transformer */
    tl_rec tl[SD_UNET_MAX_TLAYERS];
} rec;

typedef struct skipt { /* a tensor on the skip stack */
    float *p;
    int C, H, W;
} skipt;

typedef struct {
    float *base; /* NULL: dry run (measuring) */
    size_t off, peak, cap;
} carver;

struct sd_unet {
    sd_unet_config cfg; /* copy; raw not owned (NULL) */
    sd_backend *be;
    sd_param_table tab;
    const float *params;
    float *owned;
    int nunits;
    unit *units;
    int nskips; /* skip tensors the down path pushes */
    skipt *sk;        /* the skip stack of a forward walk [nskips] */
    float **dsk;      /* their gradients in a backward walk [nskips] */
    int T, C0, G;
    size_t conv_in_w, conv_in_b, l1w, l1b, l2w, l2b, now_, nob, cow, cob;
    /* inference plan */
    float *blk;
    size_t blk_floats;
    int pB, ph, pw, pL;
    size_t p_keep, p_scr, p_pp;
    /* profiling */
    int prof;
    double prof_sec[8];
};

/* Stem and head saved tensors. */
typedef struct {
    float *tdev, *tin, *e1, *s1, *emb, *semb; /* [B], [B, C0], [B, T] ×4 */
    const float *xin;                          /* conv_in input (x or its centered copy) */
    float *h0;                                 /* conv_in output (skip 0) */
    float *hm, *hr;                            /* head GroupNorm statistics */
    const float *hx;                           /* head input */
} stem_rec;

struct sd_unet_train_state {
    sd_unet *u;
    int ckpt;
    int B, h, w, L;    /* planned shape (0: none) */
    float *blk;
    size_t blk_floats;
    size_t p_keep, p_rec, p_scr, p_grad, p_pp, p_boundary;
    rec *recs;
    stem_rec sr;
    const float *x, *ctx;
    int have_fwd;
};

/* One pass. */
typedef struct {
    sd_unet *u;
    sd_backend *be;
    const float *P; /* parameters */
    float *Gr;      /* gradients (backward) */
    float *dctx;
    int dry, train;
    int B, L, h, w; /* batch, context length, latent size */
    const float *ctx;
    const float *semb;
    float *dsemb;
    carver keep, scr, rec, grad;
    carver *tape;
    size_t pp;          /* ping-pong buffer floats (inference: h; backward: dh) */
    size_t pp_need;     /* measured in the dry run */
    size_t boundary;    /* floats of layer outputs (training) */
} run;

/* ---- carving ---------------------------------------------------------------- */

static size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

static float *carve(carver *c, size_t n) {
    size_t o = c->off;
    c->off += pad16(n ? n : 1);
    if (c->off > c->peak) c->peak = c->off;
    if (!c->base) return NULL;
    if (c->off > c->cap) sd_die("unet: activation plan overflow (%zu > %zu floats): bug", c->off, c->cap);
    return c->base + o;
}

static float *Gp(const run *r, size_t off) { return (off == NOPAR || !r->Gr) ? NULL : r->Gr + off; }

static void zero(run *r, float *p, size_t n) {
    if (!r->dry) sd_backend_zero(r->be, p, n * sizeof(float));
}

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

/* ---- construction -------------------------------------------------------------- */

static int off_of(const sd_param_table *t, size_t *dst, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int off_of(const sd_param_table *t, size_t *dst, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const sd_param *p = sd_param_table_find(t, name);
    if (!p) return sd_set_error("unet: parameter %s missing from the table", name);
    *dst = p->offset;
    return 0;
}

/* b: "down_blocks.0.resnets.1" etc. */
static int init_resnet(sd_unet *u, unit *un, const char *b, int cin, int cskip, int cout, double scale) {
    const sd_param_table *t = &u->tab;
    un->kind = UK_RESNET;
    snprintf(un->name, sizeof un->name, "%s", b);
    un->cin = cin;
    un->cskip = cskip;
    un->cout = cout;
    un->inv_scale = scale == 1.0 ? 1.0f : (float)(1.0 / scale);
    if (off_of(t, &un->n1w, "%s.norm1.weight", b) || off_of(t, &un->n1b, "%s.norm1.bias", b) ||
        off_of(t, &un->c1w, "%s.conv1.weight", b) || off_of(t, &un->c1b, "%s.conv1.bias", b) ||
        off_of(t, &un->tw, "%s.time_emb_proj.weight", b) || off_of(t, &un->tb, "%s.time_emb_proj.bias", b) ||
        off_of(t, &un->n2w, "%s.norm2.weight", b) || off_of(t, &un->n2b, "%s.norm2.bias", b) ||
        off_of(t, &un->c2w, "%s.conv2.weight", b) || off_of(t, &un->c2b, "%s.conv2.bias", b))
        return -1;
    un->scw = un->scb = NOPAR;
    if (cin != cout &&
        (off_of(t, &un->scw, "%s.conv_shortcut.weight", b) || off_of(t, &un->scb, "%s.conv_shortcut.bias", b)))
        return -1;
    return 0;
}

static int init_xformer(sd_unet *u, unit *un, const char *b, const sd_unet_block *blk) {
    const sd_param_table *t = &u->tab;
    int C = blk->out_channels;
    un->kind = UK_XFORMER;
    snprintf(un->name, sizeof un->name, "%s", b);
    un->cin = un->cout = C;
    un->heads = blk->heads;
    un->head_dim = blk->head_dim;
    un->layers = blk->transformer_layers;
    un->xdim = blk->cross_attention_dim;
    un->only_cross = blk->only_cross_attention;
    if (un->layers > SD_UNET_MAX_TLAYERS)
        return sd_set_error("unet: %s: transformer_layers_per_block = %d: unsupported (at most %d)", b, un->layers,
                            SD_UNET_MAX_TLAYERS);
    if (un->heads * un->head_dim != C) return sd_set_error("unet: %s: heads x head_dim != channels", b);
    if (off_of(t, &un->gnw, "%s.norm.weight", b) || off_of(t, &un->gnb, "%s.norm.bias", b) ||
        off_of(t, &un->piw, "%s.proj_in.weight", b) || off_of(t, &un->pib, "%s.proj_in.bias", b) ||
        off_of(t, &un->pow_, "%s.proj_out.weight", b) || off_of(t, &un->pob, "%s.proj_out.bias", b))
        return -1;
    for (int k = 0; k < un->layers; k++) {
        tl_par *p = &un->tl[k];
        size_t k1, v1, k2, v2;
        const char *tb = "transformer_blocks";
        if (off_of(t, &p->n1w, "%s.%s.%d.norm1.weight", b, tb, k) || off_of(t, &p->n1b, "%s.%s.%d.norm1.bias", b, tb, k) ||
            off_of(t, &p->q1, "%s.%s.%d.attn1.to_q.weight", b, tb, k) ||
            off_of(t, &k1, "%s.%s.%d.attn1.to_k.weight", b, tb, k) ||
            off_of(t, &v1, "%s.%s.%d.attn1.to_v.weight", b, tb, k) ||
            off_of(t, &p->o1w, "%s.%s.%d.attn1.to_out.0.weight", b, tb, k) ||
            off_of(t, &p->o1b, "%s.%s.%d.attn1.to_out.0.bias", b, tb, k) ||
            off_of(t, &p->n2w, "%s.%s.%d.norm2.weight", b, tb, k) || off_of(t, &p->n2b, "%s.%s.%d.norm2.bias", b, tb, k) ||
            off_of(t, &p->q2, "%s.%s.%d.attn2.to_q.weight", b, tb, k) ||
            off_of(t, &k2, "%s.%s.%d.attn2.to_k.weight", b, tb, k) ||
            off_of(t, &v2, "%s.%s.%d.attn2.to_v.weight", b, tb, k) ||
            off_of(t, &p->o2w, "%s.%s.%d.attn2.to_out.0.weight", b, tb, k) ||
            off_of(t, &p->o2b, "%s.%s.%d.attn2.to_out.0.bias", b, tb, k) ||
            off_of(t, &p->n3w, "%s.%s.%d.norm3.weight", b, tb, k) || off_of(t, &p->n3b, "%s.%s.%d.norm3.bias", b, tb, k) ||
            off_of(t, &p->f0w, "%s.%s.%d.ff.net.0.proj.weight", b, tb, k) ||
            off_of(t, &p->f0b, "%s.%s.%d.ff.net.0.proj.bias", b, tb, k) ||
            off_of(t, &p->f2w, "%s.%s.%d.ff.net.2.weight", b, tb, k) ||
            off_of(t, &p->f2b, "%s.%s.%d.ff.net.2.bias", b, tb, k))
            return -1;
        size_t kv1w = un->only_cross ? (size_t)un->xdim : (size_t)C;
        /* the fused projections rely on the table packing q, k, v back to back */
        if (k1 != p->q1 + (size_t)C * C || v1 != k1 + (size_t)C * kv1w || k2 != p->q2 + (size_t)C * C ||
            v2 != k2 + (size_t)C * un->xdim)
            return sd_set_error("unet: %s: to_q/to_k/to_v are not contiguous in the parameter table", b);
        p->kv1 = k1;
        p->kv2 = k2;
    }
    return 0;
}

static int init_conv_unit(sd_unet *u, unit *un, int kind, const char *b, int C, int pad) {
    un->kind = kind;
    snprintf(un->name, sizeof un->name, "%s", b);
    un->cin = un->cout = C;
    un->pad = pad;
    return off_of(&u->tab, &un->cw, "%s.conv.weight", b) || off_of(&u->tab, &un->cb, "%s.conv.bias", b) ? -1 : 0;
}

static int build_units(sd_unet *u) {
    const sd_unet_config *c = &u->cfg;
    int n = c->num_levels, cap = 8;
    for (int i = 0; i < n; i++) cap += 2 * (c->down[i].num_resnets + c->up[i].num_resnets) + 2;
    u->units = sd_xcalloc((size_t)cap, sizeof(unit));
    int nu = 0, ns = 1;
    char b[64];
    for (int i = 0; i < n; i++) {
        const sd_unet_block *blk = &c->down[i];
        /* output_scale_factor 1: diffusers 0.39 passes the config's
         * resnet_out_scale_factor only to block types we do not build
         * (ResnetDownsampleBlock2D, SimpleCrossAttn*, ...), never to
         * (CrossAttn)DownBlock2D / (CrossAttn)UpBlock2D; only the mid block
         * resnets are scaled (mid_block_scale_factor). Checked by the
         * sd1-micro-scaled golden. */
        const double osf = 1.0;
        for (int j = 0; j < blk->num_resnets; j++) {
            snprintf(b, sizeof b, "down_blocks.%d.resnets.%d", i, j);
            if (init_resnet(u, &u->units[nu], b, blk->resnet_in[j], 0, blk->out_channels, osf))
                return -1;
            nu++;
            if (blk->cross_attn) {
                snprintf(b, sizeof b, "down_blocks.%d.attentions.%d", i, j);
                if (init_xformer(u, &u->units[nu], b, blk)) return -1;
                nu++;
            }
            u->units[nu - 1].to_skip = 1;
            ns++;
        }
        if (blk->sampler) {
            snprintf(b, sizeof b, "down_blocks.%d.downsamplers.0", i);
            if (init_conv_unit(u, &u->units[nu], UK_DOWN, b, blk->out_channels, c->downsample_padding)) return -1;
            u->units[nu++].to_skip = 1;
            ns++;
        }
    }
    if (c->has_mid_block) {
        const sd_unet_block *m = &c->mid;
        if (init_resnet(u, &u->units[nu++], "mid_block.resnets.0", m->resnet_in[0], 0, m->out_channels,
                        c->mid_block_scale_factor) ||
            init_xformer(u, &u->units[nu++], "mid_block.attentions.0", m) ||
            init_resnet(u, &u->units[nu++], "mid_block.resnets.1", m->resnet_in[1], 0, m->out_channels,
                        c->mid_block_scale_factor))
            return -1;
    }
    for (int i = 0; i < n; i++) {
        const sd_unet_block *blk = &c->up[i];
        for (int j = 0; j < blk->num_resnets; j++) {
            snprintf(b, sizeof b, "up_blocks.%d.resnets.%d", i, j);
            if (init_resnet(u, &u->units[nu++], b, blk->resnet_in[j], blk->resnet_skip[j], blk->out_channels, 1.0))
                return -1;
            if (blk->cross_attn) {
                snprintf(b, sizeof b, "up_blocks.%d.attentions.%d", i, j);
                if (init_xformer(u, &u->units[nu++], b, blk)) return -1;
            }
        }
        if (blk->sampler) {
            snprintf(b, sizeof b, "up_blocks.%d.upsamplers.0", i);
            if (init_conv_unit(u, &u->units[nu++], UK_UP, b, blk->out_channels, 1)) return -1;
        }
    }
    u->nunits = nu;
    u->nskips = ns;
    u->sk = sd_xcalloc((size_t)ns, sizeof(skipt));
    u->dsk = sd_xcalloc((size_t)ns, sizeof(float *));
    return 0;
}

int sd_unet_create(const sd_unet_config *cfg, sd_backend *be, const float *params, sd_unet **out) {
    *out = NULL;
    if (!cfg || !be) return sd_set_error("sd_unet_create: NULL argument");
    sd_unet *u = sd_xcalloc(1, sizeof *u);
    u->cfg = *cfg;
    u->cfg.raw = NULL;
    u->be = be;
    u->params = params;
    u->T = cfg->time_embed_dim;
    u->C0 = cfg->block_out_channels[0];
    u->G = cfg->norm_num_groups;
    if (cfg->act_fn != SD_ACT_SILU) {
        sd_unet_free(u);
        return sd_set_error("unet: act_fn %s: only silu is implemented", sd_act_name(cfg->act_fn));
    }
    if (sd_unet_param_table(&u->cfg, &u->tab) ||
        off_of(&u->tab, &u->conv_in_w, "conv_in.weight") || off_of(&u->tab, &u->conv_in_b, "conv_in.bias") ||
        off_of(&u->tab, &u->l1w, "time_embedding.linear_1.weight") ||
        off_of(&u->tab, &u->l1b, "time_embedding.linear_1.bias") ||
        off_of(&u->tab, &u->l2w, "time_embedding.linear_2.weight") ||
        off_of(&u->tab, &u->l2b, "time_embedding.linear_2.bias") ||
        off_of(&u->tab, &u->now_, "conv_norm_out.weight") || off_of(&u->tab, &u->nob, "conv_norm_out.bias") ||
        off_of(&u->tab, &u->cow, "conv_out.weight") || off_of(&u->tab, &u->cob, "conv_out.bias") ||
        build_units(u)) {
        sd_unet_free(u);
        return -1;
    }
    *out = u;
    return 0;
}

int sd_unet_load(sd_model *m, sd_backend *be, sd_unet **out) {
    *out = NULL;
    if (!m || !m->has[SD_UNET]) return sd_set_error("unet: the model has no UNet");
    sd_param_table t;
    if (sd_model_table(m, SD_UNET, &t)) return -1;
    float *dev = sd_backend_alloc_f32(be, t.total);
    if (!dev) {
        sd_param_table_free(&t);
        return -1;
    }
    int rc;
    if (!strcmp(be->name, "cpu")) {
        rc = sd_model_load(m, SD_UNET, &t, dev); /* device memory is host memory: load in place */
    } else {
        float *host = malloc(t.total * sizeof(float));
        if (!host) rc = sd_set_error("unet: cannot allocate %zu bytes for the weights", t.total * sizeof(float));
        else {
            rc = sd_model_load(m, SD_UNET, &t, host);
            if (!rc) rc = sd_backend_upload(be, dev, host, t.total * sizeof(float));
            free(host);
        }
    }
    sd_param_table_free(&t);
    if (rc || sd_unet_create(&m->unet, be, dev, out)) {
        sd_backend_free(be, dev);
        return -1;
    }
    (*out)->owned = dev;
    return 0;
}

void sd_unet_release(sd_unet *u) {
    if (!u) return;
    sd_backend_free(u->be, u->blk);
    u->blk = NULL;
    u->blk_floats = 0;
    u->pB = 0;
}

void sd_unet_free(sd_unet *u) {
    if (!u) return;
    sd_unet_release(u);
    sd_backend_free(u->be, u->owned);
    sd_param_table_free(&u->tab);
    free(u->units);
    free(u->sk);
    free(u->dsk);
    free(u);
}

const sd_unet_config *sd_unet_cfg(const sd_unet *u) { return &u->cfg; }
const sd_param_table *sd_unet_table(const sd_unet *u) { return &u->tab; }
size_t sd_unet_num_params(const sd_unet *u) { return u->tab.total; }
const float *sd_unet_params(const sd_unet *u) { return u->params; }
void sd_unet_set_params(sd_unet *u, const float *params) { u->params = params; }

void sd_unet_profile(sd_unet *u, int on) {
    u->prof = on;
    memset(u->prof_sec, 0, sizeof u->prof_sec);
}
void sd_unet_profile_get(const sd_unet *u, double sec[8]) { memcpy(sec, u->prof_sec, sizeof u->prof_sec); }

static double prof_begin(run *r) {
    if (r->dry || !r->u->prof) return 0.0;
    sd_backend_sync(r->be);
    return sd_now();
}
static void prof_end(run *r, int slot, double t0) {
    if (r->dry || !r->u->prof) return;
    sd_backend_sync(r->be);
    r->u->prof_sec[slot] += sd_now() - t0;
}

/* ---- ResnetBlock2D ------------------------------------------------------------------
 *   xin = x, or cat([x, skip]) (up blocks)
 *   h1  = conv1(SiLU(GN1(xin))) + time_emb_proj(SiLU(emb))[:, :, None, None]
 *   out = (shortcut(xin) + conv2(SiLU(GN2(h1)))) / output_scale_factor
 * shortcut: 1x1 conv when cin != cout, else identity. */

static void resnet_fwd(run *r, const unit *un, rec *rc) {
    sd_backend *be = r->be;
    const int B = r->B, H = rc->H, W = rc->W, HW = H * W, cin = un->cin, co = un->cout, G = r->u->G;
    const float eps = (float)r->u->cfg.norm_eps;
    const size_t nin = (size_t)B * cin * HW, nout = (size_t)B * co * HW, nmax = zmax(nin, nout);
    const int has_sc = un->scw != NOPAR;
    float *cat = un->cskip ? carve(&r->scr, nin) : NULL;
    /* inference with a concat and a shortcut: GN1 runs in place on the concat (the
     * shortcut is computed from it first), so no separate buffer for SiLU(GN1(xin)) */
    int inplace = !r->train && cat && has_sc;
    float *A = inplace ? NULL : carve(&r->scr, nmax);
    if (inplace) { /* cat must also hold conv2's output [B, co, HW] */
        r->scr.off -= pad16(nin);
        cat = carve(&r->scr, nmax);
    }
    float *tp = carve(&r->scr, (size_t)B * co);
    rc->m1 = carve(r->tape, (size_t)B * G);
    rc->r1 = carve(r->tape, (size_t)B * G);
    rc->m2 = carve(r->tape, (size_t)B * G);
    rc->r2 = carve(r->tape, (size_t)B * G);
    rc->h1 = carve(r->train ? r->tape : &r->scr, nout);
    if (r->dry) return;

    const float *P = r->P;
    const float *xin = rc->x;
    if (cat) {
        sd_concat_channels_forward(be, cat, rc->x, rc->skip, B, cin - un->cskip, un->cskip, HW);
        xin = cat;
    }
    sd_conv2d_desc c1 = sd_conv2d_init(B, cin, H, W, co, 3, 1, 1);
    sd_conv2d_desc c2 = sd_conv2d_init(B, co, H, W, co, 3, 1, 1);
    sd_conv2d_desc sc = sd_conv2d_init(B, cin, H, W, co, 1, 1, 0);
    float *out = rc->out;
    if (inplace) {
        sd_conv2d_forward(be, &sc, out, cat, P + un->scw, P + un->scb); /* shortcut first ... */
        sd_groupnorm_forward(be, cat, rc->m1, rc->r1, cat, P + un->n1w, P + un->n1b, B, cin, HW, G, eps, 1);
        A = cat; /* ... then cat is free for SiLU(GN1) and, later, conv2's output */
    } else {
        sd_groupnorm_forward(be, A, rc->m1, rc->r1, xin, P + un->n1w, P + un->n1b, B, cin, HW, G, eps, 1);
    }
    sd_conv2d_forward(be, &c1, rc->h1, A, P + un->c1w, P + un->c1b);
    sd_linear_forward(be, tp, r->semb, P + un->tw, P + un->tb, B, r->u->T, co);
    sd_add_channel_forward(be, rc->h1, rc->h1, tp, B, co, HW);
    if (r->train) {
        sd_groupnorm_forward(be, A, rc->m2, rc->r2, rc->h1, P + un->n2w, P + un->n2b, B, co, HW, G, eps, 1);
        sd_conv2d_forward(be, &c2, out, A, P + un->c2w, P + un->c2b);
        if (has_sc) {
            sd_conv2d_forward(be, &sc, A, xin, P + un->scw, P + un->scb);
            sd_add_forward(be, out, A, out, nout);
        } else {
            sd_add_forward(be, out, xin, out, nout);
        }
    } else {
        /* inference: GN2 in place on h1 */
        sd_groupnorm_forward(be, rc->h1, rc->m2, rc->r2, rc->h1, P + un->n2w, P + un->n2b, B, co, HW, G, eps, 1);
        if (inplace) {
            sd_conv2d_forward(be, &c2, A, rc->h1, P + un->c2w, P + un->c2b);
            sd_add_forward(be, out, out, A, nout);
        } else {
            sd_conv2d_forward(be, &c2, out, rc->h1, P + un->c2w, P + un->c2b);
            if (has_sc) {
                sd_conv2d_forward(be, &sc, A, xin, P + un->scw, P + un->scb);
                sd_add_forward(be, out, A, out, nout);
            } else {
                sd_add_forward(be, out, xin, out, nout);
            }
        }
    }
    if (un->inv_scale != 1.0f) sd_scale(be, out, un->inv_scale, nout);
}

/* dout: gradient of out (scaled in place when output_scale_factor != 1);
 * dx += gradient of x; dskip += gradient of the skip (up resnets). */
static void resnet_bwd(run *r, const unit *un, rec *rc, float *dout, float *dx, float *dskip) {
    sd_backend *be = r->be;
    const int B = r->B, H = rc->H, W = rc->W, HW = H * W, cin = un->cin, co = un->cout, G = r->u->G, T = r->u->T;
    const float eps = (float)r->u->cfg.norm_eps;
    const size_t nin = (size_t)B * cin * HW, nout = (size_t)B * co * HW, nmax = zmax(nin, nout);
    float *cat = un->cskip ? carve(&r->scr, nin) : NULL;
    float *dxin = un->cskip ? carve(&r->scr, nin) : dx;
    float *S1 = carve(&r->scr, nmax), *S2 = carve(&r->scr, nmax), *dh1 = carve(&r->scr, nout);
    float *dtp = carve(&r->scr, (size_t)B * co);
    float *ms = carve(&r->scr, (size_t)B * G), *rs = carve(&r->scr, (size_t)B * G);
    if (r->dry) return;

    const float *P = r->P;
    if (un->inv_scale != 1.0f) sd_scale(be, dout, un->inv_scale, nout);
    const float *xin = rc->x;
    if (cat) {
        sd_concat_channels_forward(be, cat, rc->x, rc->skip, B, cin - un->cskip, un->cskip, HW);
        xin = cat;
        zero(r, dxin, nin);
    }
    sd_conv2d_desc c1 = sd_conv2d_init(B, cin, H, W, co, 3, 1, 1);
    sd_conv2d_desc c2 = sd_conv2d_init(B, co, H, W, co, 3, 1, 1);
    sd_conv2d_desc sc = sd_conv2d_init(B, cin, H, W, co, 1, 1, 0);
    /* shortcut branch */
    if (un->scw != NOPAR) sd_conv2d_backward(be, &sc, dxin, Gp(r, un->scw), Gp(r, un->scb), dout, xin, P + un->scw);
    else sd_add_backward(be, dxin, NULL, dout, nout);
    /* conv2 on SiLU(GN2(h1)), recomputed */
    sd_groupnorm_forward(be, S1, ms, rs, rc->h1, P + un->n2w, P + un->n2b, B, co, HW, G, eps, 1);
    zero(r, S2, nout);
    sd_conv2d_backward(be, &c2, S2, Gp(r, un->c2w), Gp(r, un->c2b), dout, S1, P + un->c2w);
    zero(r, dh1, nout);
    sd_groupnorm_backward(be, dh1, Gp(r, un->n2w), Gp(r, un->n2b), S2, rc->h1, rc->m2, rc->r2, P + un->n2w,
                          P + un->n2b, B, co, HW, G, 1);
    /* time embedding projection: dtp[b, c] = sum_hw dh1 */
    zero(r, dtp, (size_t)B * co);
    sd_add_channel_backward(be, NULL, dtp, dh1, B, co, HW);
    sd_linear_backward(be, r->dsemb, Gp(r, un->tw), Gp(r, un->tb), dtp, r->semb, P + un->tw, B, T, co);
    /* conv1 on SiLU(GN1(xin)), recomputed */
    sd_groupnorm_forward(be, S1, ms, rs, xin, P + un->n1w, P + un->n1b, B, cin, HW, G, eps, 1);
    zero(r, S2, nin);
    sd_conv2d_backward(be, &c1, S2, Gp(r, un->c1w), Gp(r, un->c1b), dh1, S1, P + un->c1w);
    sd_groupnorm_backward(be, dxin, Gp(r, un->n1w), Gp(r, un->n1b), S2, xin, rc->m1, rc->r1, P + un->n1w,
                          P + un->n1b, B, cin, HW, G, 1);
    if (cat) sd_concat_channels_backward(be, dx, dskip, dxin, B, cin - un->cskip, un->cskip, HW);
}

/* ---- Transformer2DModel ----------------------------------------------------------------
 *   t0 = proj_in(tokens(GN(x)))             GN eps 1e-6; tokens: [B, C, HW] -> [B·HW, C]
 *   per BasicTransformerBlock (LayerNorm eps 1e-5):
 *     t1 = t + to_out1(attn(LN1(t)))        self-attention (or on ctx: only_cross_attention)
 *     t2 = t1 + to_out2(attn(LN2(t1), ctx)) cross-attention
 *     t3 = t2 + ff2(GEGLU(ff0(LN3(t2))))
 *   out = NCHW(proj_out(t_last)) + x
 * SD1's 1x1-conv proj_in/proj_out and SD2's Linear ones are the same product on
 * token-major data. Inference runs the FF over chunks of tokens (bounded scratch). */

#define FF_CHUNK 1024

static sd_attn_desc attn_desc(const unit *un, int B, int Nq, int Nk, int ldq, int ldkv) {
    sd_attn_desc d = sd_attn_init(B, un->heads, Nq, Nk, un->head_dim, 0);
    d.ldq = ldq;
    d.ldk = d.ldv = ldkv;
    d.ldo = un->cout;
    return d;
}

static void xformer_fwd(run *r, const unit *un, rec *rc) {
    sd_backend *be = r->be;
    const int B = r->B, HW = rc->H * rc->W, C = un->cout, G = r->u->G, L = r->L, X = un->xdim, NH = un->heads;
    const int N = B * HW;
    const size_t nC = (size_t)N * C;
    const int nff = r->train ? N : (N < FF_CHUNK ? N : FF_CHUNK);
    float *gn = carve(&r->scr, nC);
    float *n = carve(&r->scr, nC), *a = carve(&r->scr, nC);
    float *g = carve(&r->scr, (size_t)nff * 4 * C);
    float *pch = r->train ? NULL : carve(&r->scr, (size_t)nff * 8 * C);
    float *fch = r->train ? NULL : carve(&r->scr, (size_t)nff * C);
    rc->gm = carve(r->tape, (size_t)B * G);
    rc->gr = carve(r->tape, (size_t)B * G);
    rc->t0 = carve(r->train ? r->tape : &r->scr, nC);
    for (int k = 0; k < un->layers; k++) {
        tl_rec *s = &rc->tl[k];
        if (!r->train && k > 0) { /* inference: every layer reuses layer 0's buffers, t in place */
            *s = rc->tl[0];
            continue;
        }
        carver *tp = r->train ? r->tape : &r->scr;
        s->m1 = carve(tp, N);
        s->r1 = carve(tp, N);
        if (un->only_cross) {
            s->qkv = NULL;
            s->q1 = carve(tp, nC);
            s->kv1 = carve(tp, (size_t)B * L * 2 * C);
        } else {
            s->qkv = carve(tp, 3 * nC);
            s->q1 = s->kv1 = NULL;
        }
        s->o1 = carve(tp, nC);
        s->lse1 = carve(tp, (size_t)B * NH * HW);
        s->t1 = r->train ? carve(tp, nC) : rc->t0;
        s->m2 = carve(tp, N);
        s->r2 = carve(tp, N);
        s->q2 = carve(tp, nC);
        s->kv2 = carve(tp, (size_t)B * L * 2 * C);
        s->o2 = carve(tp, nC);
        s->lse2 = carve(tp, (size_t)B * NH * HW);
        s->t2 = r->train ? carve(tp, nC) : rc->t0;
        s->m3 = carve(tp, N);
        s->r3 = carve(tp, N);
        s->p = r->train ? carve(tp, (size_t)N * 8 * C) : NULL;
        s->t3 = r->train ? carve(tp, nC) : rc->t0;
    }
    if (r->dry) return;

    const float *P = r->P;
    sd_groupnorm_forward(be, gn, rc->gm, rc->gr, rc->x, P + un->gnw, P + un->gnb, B, C, HW, G, 1e-6f, 0);
    sd_nchw_to_nhwc_forward(be, n, gn, B, C, HW);
    sd_linear_forward(be, rc->t0, n, P + un->piw, P + un->pib, N, C, C);
    const float *t = rc->t0;
    for (int k = 0; k < un->layers; k++) {
        const tl_par *p = &un->tl[k];
        tl_rec *s = &rc->tl[k];
        /* attn1 */
        sd_layernorm_forward(be, n, s->m1, s->r1, t, P + p->n1w, P + p->n1b, N, C, 1e-5f);
        sd_attn_desc d1;
        if (un->only_cross) {
            sd_linear_forward(be, s->q1, n, P + p->q1, NULL, N, C, C);
            sd_linear_forward(be, s->kv1, r->ctx, P + p->kv1, NULL, B * L, X, 2 * C);
            d1 = attn_desc(un, B, HW, L, C, 2 * C);
            sd_attention_forward(be, &d1, s->o1, s->lse1, s->q1, s->kv1, s->kv1 + C);
        } else {
            sd_linear_forward(be, s->qkv, n, P + p->q1, NULL, N, C, 3 * C);
            d1 = attn_desc(un, B, HW, HW, 3 * C, 3 * C);
            sd_attention_forward(be, &d1, s->o1, s->lse1, s->qkv, s->qkv + C, s->qkv + 2 * C);
        }
        sd_linear_forward(be, a, s->o1, P + p->o1w, P + p->o1b, N, C, C);
        sd_add_forward(be, s->t1, a, t, nC);
        /* attn2: queries from the image tokens, keys/values from the text context */
        sd_layernorm_forward(be, n, s->m2, s->r2, s->t1, P + p->n2w, P + p->n2b, N, C, 1e-5f);
        sd_linear_forward(be, s->q2, n, P + p->q2, NULL, N, C, C);
        sd_linear_forward(be, s->kv2, r->ctx, P + p->kv2, NULL, B * L, X, 2 * C);
        sd_attn_desc d2 = attn_desc(un, B, HW, L, C, 2 * C);
        sd_attention_forward(be, &d2, s->o2, s->lse2, s->q2, s->kv2, s->kv2 + C);
        sd_linear_forward(be, a, s->o2, P + p->o2w, P + p->o2b, N, C, C);
        sd_add_forward(be, s->t2, a, s->t1, nC);
        /* feed-forward: GEGLU(C -> 4C) then Linear(4C -> C) */
        sd_layernorm_forward(be, n, s->m3, s->r3, s->t2, P + p->n3w, P + p->n3b, N, C, 1e-5f);
        if (r->train) {
            sd_linear_forward(be, s->p, n, P + p->f0w, P + p->f0b, N, C, 8 * C);
            sd_geglu_forward(be, g, s->p, N, 4 * C);
            sd_linear_forward(be, a, g, P + p->f2w, P + p->f2b, N, 4 * C, C);
            sd_add_forward(be, s->t3, a, s->t2, nC);
        } else {
            for (int i0 = 0; i0 < N; i0 += nff) {
                int m = N - i0 < nff ? N - i0 : nff;
                size_t o = (size_t)i0 * C;
                sd_linear_forward(be, pch, n + o, P + p->f0w, P + p->f0b, m, C, 8 * C);
                sd_geglu_forward(be, g, pch, m, 4 * C);
                sd_linear_forward(be, fch, g, P + p->f2w, P + p->f2b, m, 4 * C, C);
                sd_add_forward(be, s->t3 + o, fch, s->t2 + o, (size_t)m * C);
            }
        }
        t = s->t3;
    }
    sd_linear_forward(be, a, t, P + un->pow_, P + un->pob, N, C, C);
    sd_nhwc_to_nchw_forward(be, rc->out, a, B, C, HW);
    sd_add_forward(be, rc->out, rc->out, rc->x, nC);
}

static void xformer_bwd(run *r, const unit *un, rec *rc, const float *dout, float *dx) {
    sd_backend *be = r->be;
    const int B = r->B, HW = rc->H * rc->W, C = un->cout, G = r->u->G, L = r->L, X = un->xdim;
    const int N = B * HW;
    const size_t nC = (size_t)N * C;
    float *dt = carve(&r->scr, nC), *n = carve(&r->scr, nC), *dn = carve(&r->scr, nC), *da = carve(&r->scr, nC);
    float *big = carve(&r->scr, 8 * nC); /* GEGLU output then d(FF projection); d(qkv); GN output */
    float *dg = carve(&r->scr, 4 * nC);
    float *dkv = carve(&r->scr, (size_t)B * L * 2 * C);
    float *ms = carve(&r->scr, (size_t)zmax(N, (size_t)B * G)), *rs = carve(&r->scr, (size_t)zmax(N, (size_t)B * G));
    if (r->dry) return;

    const float *P = r->P;
    sd_add_backward(be, dx, NULL, dout, nC); /* residual */
    zero(r, da, nC);
    sd_nhwc_to_nchw_backward(be, da, dout, B, C, HW);
    const float *tl = un->layers ? rc->tl[un->layers - 1].t3 : rc->t0;
    zero(r, dt, nC);
    sd_linear_backward(be, dt, Gp(r, un->pow_), Gp(r, un->pob), da, tl, P + un->pow_, N, C, C);
    for (int k = un->layers - 1; k >= 0; k--) {
        const tl_par *p = &un->tl[k];
        const tl_rec *s = &rc->tl[k];
        const float *tin = k ? rc->tl[k - 1].t3 : rc->t0;
        /* feed-forward */
        sd_layernorm_forward(be, n, ms, rs, s->t2, P + p->n3w, P + p->n3b, N, C, 1e-5f);
        sd_geglu_forward(be, big, s->p, N, 4 * C);
        zero(r, dg, 4 * nC);
        sd_linear_backward(be, dg, Gp(r, p->f2w), Gp(r, p->f2b), dt, big, P + p->f2w, N, 4 * C, C);
        zero(r, big, 8 * nC);
        sd_geglu_backward(be, big, dg, s->p, N, 4 * C);
        zero(r, dn, nC);
        sd_linear_backward(be, dn, Gp(r, p->f0w), Gp(r, p->f0b), big, n, P + p->f0w, N, C, 8 * C);
        sd_layernorm_backward(be, dt, Gp(r, p->n3w), Gp(r, p->n3b), dn, s->t2, s->m3, s->r3, P + p->n3w, N, C);
        /* cross-attention */
        zero(r, da, nC);
        sd_linear_backward(be, da, Gp(r, p->o2w), Gp(r, p->o2b), dt, s->o2, P + p->o2w, N, C, C);
        zero(r, dn, nC);
        zero(r, dkv, (size_t)B * L * 2 * C);
        sd_attn_desc d2 = attn_desc(un, B, HW, L, C, 2 * C);
        sd_attention_backward(be, &d2, dn, dkv, dkv + C, da, s->q2, s->kv2, s->kv2 + C, s->o2, s->lse2);
        sd_linear_backward(be, r->dctx, Gp(r, p->kv2), NULL, dkv, r->ctx, P + p->kv2, B * L, X, 2 * C);
        sd_layernorm_forward(be, n, ms, rs, s->t1, P + p->n2w, P + p->n2b, N, C, 1e-5f);
        zero(r, da, nC);
        sd_linear_backward(be, da, Gp(r, p->q2), NULL, dn, n, P + p->q2, N, C, C);
        sd_layernorm_backward(be, dt, Gp(r, p->n2w), Gp(r, p->n2b), da, s->t1, s->m2, s->r2, P + p->n2w, N, C);
        /* self-attention (or cross with only_cross_attention) */
        zero(r, da, nC);
        sd_linear_backward(be, da, Gp(r, p->o1w), Gp(r, p->o1b), dt, s->o1, P + p->o1w, N, C, C);
        sd_layernorm_forward(be, n, ms, rs, tin, P + p->n1w, P + p->n1b, N, C, 1e-5f);
        if (un->only_cross) {
            sd_attn_desc d1 = attn_desc(un, B, HW, L, C, 2 * C);
            zero(r, big, nC);
            zero(r, dkv, (size_t)B * L * 2 * C);
            sd_attention_backward(be, &d1, big, dkv, dkv + C, da, s->q1, s->kv1, s->kv1 + C, s->o1, s->lse1);
            sd_linear_backward(be, r->dctx, Gp(r, p->kv1), NULL, dkv, r->ctx, P + p->kv1, B * L, X, 2 * C);
            zero(r, dn, nC);
            sd_linear_backward(be, dn, Gp(r, p->q1), NULL, big, n, P + p->q1, N, C, C);
        } else {
            sd_attn_desc d1 = attn_desc(un, B, HW, HW, 3 * C, 3 * C);
            zero(r, big, 3 * nC);
            sd_attention_backward(be, &d1, big, big + C, big + 2 * C, da, s->qkv, s->qkv + C, s->qkv + 2 * C, s->o1,
                                  s->lse1);
            zero(r, dn, nC);
            sd_linear_backward(be, dn, Gp(r, p->q1), NULL, big, n, P + p->q1, N, C, 3 * C);
        }
        sd_layernorm_backward(be, dt, Gp(r, p->n1w), Gp(r, p->n1b), dn, tin, s->m1, s->r1, P + p->n1w, N, C);
    }
    /* proj_in on tokens(GN(x)), recomputed */
    sd_groupnorm_forward(be, big, ms, rs, rc->x, P + un->gnw, P + un->gnb, B, C, HW, G, 1e-6f, 0);
    sd_nchw_to_nhwc_forward(be, n, big, B, C, HW);
    zero(r, dn, nC);
    sd_linear_backward(be, dn, Gp(r, un->piw), Gp(r, un->pib), dt, n, P + un->piw, N, C, C);
    zero(r, big, nC);
    sd_nchw_to_nhwc_backward(be, big, dn, B, C, HW);
    sd_groupnorm_backward(be, dx, Gp(r, un->gnw), Gp(r, un->gnb), big, rc->x, rc->gm, rc->gr, P + un->gnw,
                          P + un->gnb, B, C, HW, G, 0);
}

/* ---- samplers ----------------------------------------------------------------------------
 * Downsample2D: conv k3 s2 (padding downsample_padding).
 * Upsample2D: nearest upsampling to (OH, OW) (2x, or the skip's size), conv k3 p1. */

static void down_fwd(run *r, const unit *un, rec *rc) {
    if (r->dry) return;
    sd_conv2d_desc d = sd_conv2d_init(r->B, un->cin, rc->H, rc->W, un->cout, 3, 2, un->pad);
    sd_conv2d_forward(r->be, &d, rc->out, rc->x, r->P + un->cw, r->P + un->cb);
}

static void down_bwd(run *r, const unit *un, rec *rc, const float *dout, float *dx) {
    if (r->dry) return;
    sd_conv2d_desc d = sd_conv2d_init(r->B, un->cin, rc->H, rc->W, un->cout, 3, 2, un->pad);
    sd_conv2d_backward(r->be, &d, dx, Gp(r, un->cw), Gp(r, un->cb), dout, rc->x, r->P + un->cw);
}

static void up_fwd(run *r, const unit *un, rec *rc) {
    const int B = r->B, C = un->cin;
    float *up = carve(&r->scr, (size_t)B * C * rc->OH * rc->OW);
    if (r->dry) return;
    sd_upsample_nearest_forward(r->be, up, rc->x, B, C, rc->H, rc->W, rc->OH, rc->OW);
    sd_conv2d_desc d = sd_conv2d_init(B, C, rc->OH, rc->OW, un->cout, 3, 1, 1);
    sd_conv2d_forward(r->be, &d, rc->out, up, r->P + un->cw, r->P + un->cb);
}

static void up_bwd(run *r, const unit *un, rec *rc, const float *dout, float *dx) {
    const int B = r->B, C = un->cin;
    const size_t n = (size_t)B * C * rc->OH * rc->OW;
    float *up = carve(&r->scr, n), *dup = carve(&r->scr, n);
    if (r->dry) return;
    sd_upsample_nearest_forward(r->be, up, rc->x, B, C, rc->H, rc->W, rc->OH, rc->OW);
    sd_conv2d_desc d = sd_conv2d_init(B, C, rc->OH, rc->OW, un->cout, 3, 1, 1);
    zero(r, dup, n);
    sd_conv2d_backward(r->be, &d, dup, Gp(r, un->cw), Gp(r, un->cb), dout, up, r->P + un->cw);
    sd_upsample_nearest_backward(r->be, dx, dup, B, C, rc->H, rc->W, rc->OH, rc->OW);
}

static void unit_fwd(run *r, const unit *un, rec *rc) {
    double t0 = prof_begin(r);
    switch (un->kind) {
    case UK_RESNET: resnet_fwd(r, un, rc); break;
    case UK_XFORMER: xformer_fwd(r, un, rc); break;
    case UK_DOWN: down_fwd(r, un, rc); break;
    default: up_fwd(r, un, rc); break;
    }
    prof_end(r, un->kind == UK_RESNET ? 1 : un->kind == UK_XFORMER ? 2 : 3, t0);
}

/* ---- stem and head --------------------------------------------------------------------------- */

static void stem_fwd(run *r, stem_rec *s, const float *x, const float *t, int h, int w) {
    sd_unet *u = r->u;
    const sd_unet_config *c = &u->cfg;
    const int B = r->B, T = u->T, C0 = u->C0;
    const size_t nx = (size_t)B * c->in_channels * h * w;
    s->tdev = carve(&r->keep, B);
    s->tin = carve(&r->keep, (size_t)B * C0);
    s->e1 = carve(&r->keep, (size_t)B * T);
    s->s1 = carve(&r->keep, (size_t)B * T);
    s->emb = carve(&r->keep, (size_t)B * T);
    s->semb = carve(&r->keep, (size_t)B * T);
    float *xc = c->center_input_sample ? carve(&r->keep, nx) : NULL;
    float *m1 = c->center_input_sample ? carve(&r->keep, (size_t)B * c->in_channels) : NULL;
    s->h0 = carve(&r->keep, (size_t)B * C0 * h * w);
    r->semb = s->semb;
    s->xin = xc ? xc : x;
    if (r->dry) return;
    sd_backend *be = r->be;
    const float *P = r->P;
    double t0 = prof_begin(r);
    sd_backend_upload(be, s->tdev, t, (size_t)B * sizeof(float));
    sd_timestep_embedding(be, s->tin, s->tdev, B, C0, c->flip_sin_to_cos, (float)c->freq_shift, 10000.0f);
    sd_linear_forward(be, s->e1, s->tin, P + u->l1w, P + u->l1b, B, C0, T);
    sd_silu_forward(be, s->s1, s->e1, (size_t)B * T);
    sd_linear_forward(be, s->emb, s->s1, P + u->l2w, P + u->l2b, B, T, T);
    sd_silu_forward(be, s->semb, s->emb, (size_t)B * T); /* every resnet applies SiLU to emb first */
    if (xc) { /* center_input_sample: 2x - 1 */
        float *ones = malloc((size_t)B * c->in_channels * sizeof(float));
        for (int i = 0; i < B * c->in_channels; i++) ones[i] = -1.0f;
        sd_backend_upload(be, m1, ones, (size_t)B * c->in_channels * sizeof(float));
        free(ones);
        sd_backend_copy(be, xc, x, nx * sizeof(float));
        sd_scale(be, xc, 2.0f, nx);
        sd_add_channel_forward(be, xc, xc, m1, B, c->in_channels, h * w);
    }
    int k = c->conv_in_kernel;
    sd_conv2d_desc d = sd_conv2d_init(B, c->in_channels, h, w, C0, k, 1, (k - 1) / 2);
    sd_conv2d_forward(be, &d, s->h0, s->xin, P + u->conv_in_w, P + u->conv_in_b);
    prof_end(r, 0, t0);
}

/* dh0: gradient of conv_in's output; r->dsemb: of SiLU(emb) (all resnets). */
static void stem_bwd(run *r, stem_rec *s, const float *dh0, int h, int w) {
    sd_unet *u = r->u;
    const sd_unet_config *c = &u->cfg;
    const int B = r->B, T = u->T, C0 = u->C0;
    float *d1 = carve(&r->scr, (size_t)B * T), *d2 = carve(&r->scr, (size_t)B * T);
    if (r->dry) return;
    sd_backend *be = r->be;
    const float *P = r->P;
    int k = c->conv_in_kernel;
    sd_conv2d_desc d = sd_conv2d_init(B, c->in_channels, h, w, C0, k, 1, (k - 1) / 2);
    sd_conv2d_backward(be, &d, NULL, Gp(r, u->conv_in_w), Gp(r, u->conv_in_b), dh0, s->xin, P + u->conv_in_w);
    zero(r, d1, (size_t)B * T);
    sd_silu_backward(be, d1, r->dsemb, s->emb, (size_t)B * T);
    zero(r, d2, (size_t)B * T);
    sd_linear_backward(be, d2, Gp(r, u->l2w), Gp(r, u->l2b), d1, s->s1, P + u->l2w, B, T, T);
    zero(r, d1, (size_t)B * T);
    sd_silu_backward(be, d1, d2, s->e1, (size_t)B * T);
    sd_linear_backward(be, NULL, Gp(r, u->l1w), Gp(r, u->l1b), d1, s->tin, P + u->l1w, B, C0, T);
}

static void head_fwd(run *r, stem_rec *s, const float *x, float *out, int h, int w) {
    sd_unet *u = r->u;
    const sd_unet_config *c = &u->cfg;
    const int B = r->B, C0 = u->C0, G = u->G;
    float *a = carve(&r->scr, (size_t)B * C0 * h * w);
    s->hm = carve(&r->keep, (size_t)B * G);
    s->hr = carve(&r->keep, (size_t)B * G);
    s->hx = x;
    if (r->dry) return;
    double t0 = prof_begin(r);
    const float *P = r->P;
    sd_groupnorm_forward(r->be, a, s->hm, s->hr, x, P + u->now_, P + u->nob, B, C0, h * w, G, (float)c->norm_eps, 1);
    int k = c->conv_out_kernel;
    sd_conv2d_desc d = sd_conv2d_init(B, C0, h, w, c->out_channels, k, 1, (k - 1) / 2);
    sd_conv2d_forward(r->be, &d, out, a, P + u->cow, P + u->cob);
    prof_end(r, 0, t0);
}

static void head_bwd(run *r, stem_rec *s, const float *dout, float *dx, int h, int w) {
    sd_unet *u = r->u;
    const sd_unet_config *c = &u->cfg;
    const int B = r->B, C0 = u->C0, G = u->G;
    const size_t n = (size_t)B * C0 * h * w;
    float *a = carve(&r->scr, n), *da = carve(&r->scr, n);
    float *ms = carve(&r->scr, (size_t)B * G), *rs = carve(&r->scr, (size_t)B * G);
    if (r->dry) return;
    const float *P = r->P;
    sd_groupnorm_forward(r->be, a, ms, rs, s->hx, P + u->now_, P + u->nob, B, C0, h * w, G, (float)c->norm_eps, 1);
    int k = c->conv_out_kernel;
    sd_conv2d_desc d = sd_conv2d_init(B, C0, h, w, c->out_channels, k, 1, (k - 1) / 2);
    zero(r, da, n);
    sd_conv2d_backward(r->be, &d, da, Gp(r, u->cow), Gp(r, u->cob), dout, a, P + u->cow);
    sd_groupnorm_backward(r->be, dx, Gp(r, u->now_), Gp(r, u->nob), da, s->hx, s->hm, s->hr, P + u->now_,
                          P + u->nob, B, C0, h * w, G, 1);
}

/* ---- the forward driver -------------------------------------------------------------------------
 * Walks the units with the skip stack. Inference: unit outputs that are not
 * skips alternate between two ping-pong buffers; training: every output is
 * kept. recs: one record per unit (training) or NULL (one reused record). */

static void forward_walk(run *r, stem_rec *sr, rec *recs, const float *x, const float *t, int h, int w,
                         float *out) {
    sd_unet *u = r->u;
    const int B = r->B;
    skipt *sk = u->sk;
    int ns = 0;
    rec one;
    float *pp[2] = {NULL, NULL};
    if (!r->train) {
        pp[0] = carve(&r->keep, r->pp);
        pp[1] = carve(&r->keep, r->pp);
    }
    stem_fwd(r, sr, x, t, h, w);
    sk[ns++] = (skipt){sr->h0, u->C0, h, w};
    const float *cur = sr->h0;
    int cur_sk = 0, H = h, W = w, C = u->C0;
    size_t mark = r->scr.off;
    for (int i = 0; i < u->nunits; i++) {
        const unit *un = &u->units[i];
        rec *rc = recs ? &recs[i] : &one;
        rc->x = cur;
        rc->x_sk = cur_sk;
        rc->skip = NULL;
        rc->skip_sk = -1;
        rc->H = rc->OH = H;
        rc->W = rc->OW = W;
        if (un->cskip) {
            if (ns < 1) sd_die("unet: %s: skip stack empty: bug", un->name);
            skipt *s = &sk[--ns];
            if (s->C != un->cskip || s->H != H || s->W != W || C != un->cin - un->cskip)
                sd_die("unet: %s: skip %dx%dx%d does not fit h %dx%dx%d: bug", un->name, s->C, s->H, s->W, C, H, W);
            rc->skip = s->p;
            rc->skip_sk = ns;
        } else if (C != un->cin) {
            sd_die("unet: %s: input has %d channels, expected %d: bug", un->name, C, un->cin);
        }
        if (un->kind == UK_DOWN) {
            rc->OH = (H + 2 * un->pad - 3) / 2 + 1;
            rc->OW = (W + 2 * un->pad - 3) / 2 + 1;
        } else if (un->kind == UK_UP) { /* to the size of the skip the next block pops (diffusers' upsample_size) */
            rc->OH = ns ? sk[ns - 1].H : 2 * H;
            rc->OW = ns ? sk[ns - 1].W : 2 * W;
        }
        size_t nout = (size_t)B * un->cout * rc->OH * rc->OW;
        if (un->to_skip || r->train) {
            rc->out = carve(&r->keep, nout);
            if (r->train) r->boundary += pad16(nout);
        } else {
            if (nout > r->pp_need) r->pp_need = nout;
            rc->out = cur == pp[0] ? pp[1] : pp[0];
        }
        unit_fwd(r, un, rc);
        r->scr.off = mark; /* unit temporaries (and, checkpointing, its internals) are dropped */
        cur = rc->out;
        C = un->cout;
        H = rc->OH;
        W = rc->OW;
        cur_sk = -1;
        if (un->to_skip) {
            cur_sk = ns;
            sk[ns++] = (skipt){rc->out, C, H, W};
        }
    }
    if (ns != 0) sd_die("unet: %d skips left after the up path: bug", ns);
    if (C != u->C0 || H != h || W != w) sd_die("unet: up path ends at %dx%dx%d: bug", C, H, W);
    head_fwd(r, sr, cur, out, h, w);
    r->scr.off = mark;
}

/* ---- inference ---------------------------------------------------------------------------------- */

static int check_shape(sd_unet *u, int B, int h, int w, int L) {
    if (B < 1 || h < 1 || w < 1 || L < 1) return sd_set_error("unet: bad shape B=%d h=%d w=%d L=%d", B, h, w, L);
    (void)u;
    return 0;
}

static void run_init(run *r, sd_unet *u, int dry, int train, int B, int L) {
    memset(r, 0, sizeof *r);
    r->u = u;
    r->be = u->be;
    r->P = u->params;
    r->dry = dry;
    r->train = train;
    r->B = B;
    r->L = L;
}

static int plan_forward(sd_unet *u, int B, int h, int w, int L, size_t *keep, size_t *scr, size_t *pp) {
    run r;
    run_init(&r, u, 1, 0, B, L);
    r.tape = &r.scr;
    /* first pass learns the ping-pong size, second carves with it */
    forward_walk(&r, &(stem_rec){0}, NULL, NULL, NULL, h, w, NULL);
    size_t need = r.pp_need;
    run_init(&r, u, 1, 0, B, L);
    r.tape = &r.scr;
    r.pp = need;
    forward_walk(&r, &(stem_rec){0}, NULL, NULL, NULL, h, w, NULL);
    *keep = r.keep.peak;
    *scr = r.scr.peak;
    *pp = need;
    return 0;
}

int sd_unet_forward_memory(sd_unet *u, int B, int h, int w, int L, sd_unet_mem *m) {
    memset(m, 0, sizeof *m);
    if (check_shape(u, B, h, w, L)) return -1;
    size_t keep, scr, pp;
    plan_forward(u, B, h, w, L, &keep, &scr, &pp);
    m->saved = (keep - 2 * pad16(pp)) * sizeof(float);
    m->work = (2 * pad16(pp) + scr) * sizeof(float);
    m->total = (keep + scr) * sizeof(float);
    return 0;
}

int sd_unet_forward(sd_unet *u, const float *x, const float *t, const float *ctx, int B, int h, int w, int L,
                    float *out) {
    if (!u || !x || !t || !ctx || !out) return sd_set_error("sd_unet_forward: NULL argument");
    if (!u->params) return sd_set_error("sd_unet_forward: the UNet has no parameters");
    if (check_shape(u, B, h, w, L)) return -1;
    if (u->pB != B || u->ph != h || u->pw != w || u->pL != L) {
        size_t keep, scr, pp;
        plan_forward(u, B, h, w, L, &keep, &scr, &pp);
        if (keep + scr > u->blk_floats) {
            sd_unet_release(u);
            u->blk = sd_backend_alloc_f32(u->be, keep + scr);
            if (!u->blk) return sd_error_prefix("unet: activations (%zu MB)", (keep + scr) * 4 >> 20);
            u->blk_floats = keep + scr;
        }
        u->pB = B, u->ph = h, u->pw = w, u->pL = L;
        u->p_keep = keep, u->p_scr = scr, u->p_pp = pp;
    }
    run r;
    run_init(&r, u, 0, 0, B, L);
    r.ctx = ctx;
    r.tape = &r.scr;
    r.pp = u->p_pp;
    r.keep = (carver){u->blk, 0, 0, u->p_keep};
    r.scr = (carver){u->blk + u->p_keep, 0, 0, u->p_scr};
    forward_walk(&r, &(stem_rec){0}, NULL, x, t, h, w, out);
    return sd_backend_sync(u->be);
}

/* ---- training --------------------------------------------------------------------------------- */

int sd_unet_train_state_create(sd_unet *u, const sd_unet_train_opts *opts, sd_unet_train_state **st) {
    *st = NULL;
    if (!u) return sd_set_error("sd_unet_train_state_create: NULL unet");
    sd_unet_train_state *s = sd_xcalloc(1, sizeof *s);
    s->u = u;
    s->ckpt = opts ? opts->gradient_checkpointing : 0;
    s->recs = sd_xcalloc((size_t)u->nunits, sizeof(rec));
    *st = s;
    return 0;
}

void sd_unet_train_state_free(sd_unet_train_state *st) {
    if (!st) return;
    sd_backend_free(st->u->be, st->blk);
    free(st->recs);
    free(st);
}

static void backward_walk(run *r, sd_unet_train_state *st, const float *dout, int ckpt);

/* Dry runs of forward and backward: the carver peaks of a training step. */
static void plan_train(sd_unet_train_state *st, int B, int h, int w, int L, int ckpt, size_t *keep, size_t *rec_,
                       size_t *scr, size_t *grad, size_t *pp, size_t *boundary) {
    sd_unet *u = st->u;
    run r;
    run_init(&r, u, 1, 1, B, L);
    r.tape = ckpt ? &r.scr : &r.keep;
    forward_walk(&r, &st->sr, st->recs, NULL, NULL, h, w, NULL);
    *keep = r.keep.peak;
    *boundary = r.boundary;
    size_t fscr = r.scr.peak;
    run b;
    run_init(&b, u, 1, 1, B, L);
    b.h = h, b.w = w;
    b.tape = &b.rec;
    backward_walk(&b, st, NULL, ckpt);
    *rec_ = b.rec.peak;
    *scr = zmax(fscr, b.scr.peak);
    *grad = b.grad.peak;
    *pp = b.pp_need;
}

int sd_unet_train_memory(sd_unet *u, int B, int h, int w, int L, int ckpt, sd_unet_mem *m) {
    memset(m, 0, sizeof *m);
    if (check_shape(u, B, h, w, L)) return -1;
    sd_unet_train_state *st;
    sd_unet_train_opts o = {ckpt};
    if (sd_unet_train_state_create(u, &o, &st)) return -1;
    size_t keep, rc, scr, grad, pp, bnd;
    plan_train(st, B, h, w, L, ckpt, &keep, &rc, &scr, &grad, &pp, &bnd);
    sd_unet_train_state_free(st);
    m->saved = keep * sizeof(float);
    m->boundary = bnd * sizeof(float);
    m->work = (rc + scr) * sizeof(float);
    m->grad_work = grad * sizeof(float);
    m->total = (keep + rc + scr + grad) * sizeof(float);
    return 0;
}

int sd_unet_train_forward(sd_unet *u, sd_unet_train_state *st, const float *x, const float *t, const float *ctx,
                          int B, int h, int w, int L, float *out) {
    if (!u || !st || !x || !t || !ctx || !out) return sd_set_error("sd_unet_train_forward: NULL argument");
    if (st->u != u) return sd_set_error("sd_unet_train_forward: state of another UNet");
    if (!u->params) return sd_set_error("sd_unet_train_forward: the UNet has no parameters");
    if (check_shape(u, B, h, w, L)) return -1;
    if (u->cfg.dropout != 0.0) return sd_set_error("unet: training with dropout = %g is not implemented", u->cfg.dropout);
    if (st->B != B || st->h != h || st->w != w || st->L != L) {
        size_t keep, rc, scr, grad, pp, bnd;
        plan_train(st, B, h, w, L, st->ckpt, &keep, &rc, &scr, &grad, &pp, &bnd);
        size_t total = keep + rc + scr + grad;
        if (total > st->blk_floats) {
            sd_backend_free(u->be, st->blk);
            st->blk_floats = 0;
            st->B = 0;
            st->blk = sd_backend_alloc_f32(u->be, total);
            if (!st->blk) return sd_error_prefix("unet: training activations (%zu MB)", total * 4 >> 20);
            st->blk_floats = total;
        }
        st->B = B, st->h = h, st->w = w, st->L = L;
        st->p_keep = keep, st->p_rec = rc, st->p_scr = scr, st->p_grad = grad, st->p_pp = pp;
        st->p_boundary = bnd;
    }
    run r;
    run_init(&r, u, 0, 1, B, L);
    r.ctx = ctx;
    r.keep = (carver){st->blk, 0, 0, st->p_keep};
    r.scr = (carver){st->blk + st->p_keep + st->p_rec, 0, 0, st->p_scr};
    r.tape = st->ckpt ? &r.scr : &r.keep;
    forward_walk(&r, &st->sr, st->recs, x, t, h, w, out);
    st->x = x;
    st->ctx = ctx;
    st->have_fwd = 1;
    return sd_backend_sync(u->be);
}

/* Reverse walk. The gradient of a unit's input is the skip's gradient buffer
 * when the input is a skip tensor (the up path already added its part), else
 * a zeroed ping-pong buffer. */
static void backward_walk(run *r, sd_unet_train_state *st, const float *dout, int ckpt) {
    sd_unet *u = r->u;
    const int B = r->B;
    /* gradient region: dSiLU(emb), the skip gradients, two ping-pong buffers */
    r->dsemb = carve(&r->grad, (size_t)B * u->T);
    float **dsk = u->dsk;
    memset(dsk, 0, (size_t)u->nskips * sizeof *dsk);
    size_t pp = 0;
    for (int i = 0; i < u->nunits; i++) {
        const unit *un = &u->units[i];
        const rec *rc = &st->recs[i];
        size_t nout = (size_t)B * un->cout * rc->OH * rc->OW;
        pp = zmax(pp, nout);
        if (rc->skip_sk >= 0) dsk[rc->skip_sk] = carve(&r->grad, (size_t)B * un->cskip * rc->H * rc->W);
    }
    pp = zmax(pp, (size_t)B * u->C0 * r->h * r->w);
    r->pp_need = pp;
    float *g[2] = {carve(&r->grad, pp), carve(&r->grad, pp)};
    /* skip 0 (conv_in output) is consumed by the last up resnet: dsk[0] is set above */
    /* zero dSiLU(emb) and the skip gradients (sizes from the records that consume them) */
    if (!r->dry) {
        zero(r, r->dsemb, (size_t)B * u->T);
        for (int i = 0; i < u->nunits; i++) {
            const unit *un = &u->units[i];
            const rec *rc = &st->recs[i];
            if (rc->skip_sk >= 0) zero(r, dsk[rc->skip_sk], (size_t)B * un->cskip * rc->H * rc->W);
        }
    }
    size_t mark = r->scr.off;
    double t0 = prof_begin(r);
    if (!r->dry) zero(r, g[0], (size_t)B * u->C0 * r->h * r->w);
    head_bwd(r, &st->sr, dout, g[0], r->h, r->w);
    prof_end(r, 4, t0);
    r->scr.off = mark;
    float *dcur = g[0];
    for (int i = u->nunits - 1; i >= 0; i--) {
        const unit *un = &u->units[i];
        rec *rc = &st->recs[i];
        float *dprev;
        if (rc->x_sk >= 0) {
            dprev = dsk[rc->x_sk];
        } else {
            dprev = dcur == g[0] ? g[1] : g[0];
            if (!r->dry) zero(r, dprev, (size_t)B * un->cin * rc->H * rc->W - (size_t)B * un->cskip * rc->H * rc->W);
        }
        int slot = un->kind == UK_RESNET ? 5 : un->kind == UK_XFORMER ? 6 : 7;
        t0 = prof_begin(r);
        if (ckpt) { /* recompute this unit's internals right before its backward */
            r->rec.off = 0;
            r->tape = &r->rec;
            switch (un->kind) {
            case UK_RESNET: resnet_fwd(r, un, rc); break;
            case UK_XFORMER: xformer_fwd(r, un, rc); break;
            case UK_DOWN: down_fwd(r, un, rc); break;
            default: up_fwd(r, un, rc); break;
            }
            r->scr.off = mark;
        }
        switch (un->kind) {
        case UK_RESNET: resnet_bwd(r, un, rc, dcur, dprev, rc->skip_sk >= 0 ? dsk[rc->skip_sk] : NULL); break;
        case UK_XFORMER: xformer_bwd(r, un, rc, dcur, dprev); break;
        case UK_DOWN: down_bwd(r, un, rc, dcur, dprev); break;
        default: up_bwd(r, un, rc, dcur, dprev); break;
        }
        prof_end(r, slot, t0);
        r->scr.off = mark;
        dcur = dprev;
    }
    t0 = prof_begin(r);
    stem_bwd(r, &st->sr, dcur, r->h, r->w);
    prof_end(r, 4, t0);
    r->scr.off = mark;
}

int sd_unet_backward(sd_unet *u, sd_unet_train_state *st, const float *dout, float *grads, float *dctx) {
    if (!u || !st || !dout || !grads) return sd_set_error("sd_unet_backward: NULL argument");
    if (st->u != u) return sd_set_error("sd_unet_backward: state of another UNet");
    if (!st->have_fwd) return sd_set_error("sd_unet_backward: no train_forward to differentiate");
    run r;
    run_init(&r, u, 0, 1, st->B, st->L);
    r.ctx = st->ctx;
    r.semb = st->sr.semb;
    r.Gr = grads;
    r.dctx = dctx;
    float *base = st->blk;
    r.keep = (carver){base, st->p_keep, st->p_keep, st->p_keep}; /* nothing new is kept */
    r.rec = (carver){base + st->p_keep, 0, 0, st->p_rec};
    r.scr = (carver){base + st->p_keep + st->p_rec, 0, 0, st->p_scr};
    r.grad = (carver){base + st->p_keep + st->p_rec + st->p_scr, 0, 0, st->p_grad};
    r.h = st->h, r.w = st->w;
    r.tape = &r.rec;
    backward_walk(&r, st, dout, st->ckpt);
    st->have_fwd = 0;
    return sd_backend_sync(u->be);
}
