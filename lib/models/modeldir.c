/* modeldir.c — see modeldir.h. */
#define _GNU_SOURCE
#include "models/modeldir.h"
#include "core/error.h"
#include "core/fs.h"
#include "io/json.h"
#include "models/model_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const COMP_NAME[SD_NCOMP] = {"unet", "vae", "text_encoder"};
static const char *const COMP_CLASS[SD_NCOMP] = {"UNet2DConditionModel", "AutoencoderKL", "CLIPTextModel"};
static const char *const COMP_LIB[SD_NCOMP] = {"diffusers", "diffusers", "transformers"};

const char *sd_component_name(sd_component c) { return (c >= 0 && c < SD_NCOMP) ? COMP_NAME[c] : "?"; }

static const char *weights_base(sd_component c) {
    return c == SD_TEXT_ENCODER ? "model" : "diffusion_pytorch_model";
}

static int starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

static int ends(const char *s, const char *p) {
    size_t a = strlen(s), b = strlen(p);
    return a >= b && !strcmp(s + a - b, p);
}

/* ---- weight files ---------------------------------------------------------- */

static void wf_free(sd_wfiles *w) {
    for (int i = 0; i < w->n; i++) {
        sd_st_close(w->f[i]);
        free(w->paths[i]);
        free(w->used[i]);
    }
    free(w->f);
    free(w->paths);
    free(w->used);
    memset(w, 0, sizeof *w);
}

static int wf_add(sd_wfiles *w, const char *path) {
    sd_st_file *f;
    if (sd_st_open(path, &f)) return -1;
    w->f = sd_xrealloc(w->f, (size_t)(w->n + 1) * sizeof *w->f);
    w->paths = sd_xrealloc(w->paths, (size_t)(w->n + 1) * sizeof *w->paths);
    w->used = sd_xrealloc(w->used, (size_t)(w->n + 1) * sizeof *w->used);
    w->f[w->n] = f;
    w->paths[w->n] = sd_xstrdup(path);
    w->used[w->n] = sd_xcalloc((size_t)f->ntensors + 1, 1);
    w->n++;
    return 0;
}

/* A shard name from an index must be a plain file name in the same directory. */
static int safe_basename(const char *s) {
    return s[0] && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\');
}

static int open_index(sd_wfiles *w, const char *dir, const char *index_path) {
    cJSON *j;
    if (sd_json_load(index_path, &j)) return -1;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    int rc = -1;
    char **names = NULL;
    int nn = 0;
    if (!cJSON_IsObject(wm)) { sd_set_error("%s: no \"weight_map\" object", index_path); goto out; }
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || !safe_basename(e->valuestring)) {
            sd_set_error("%s: weight_map[\"%s\"]: expected a file name in the same directory", index_path, e->string);
            goto out;
        }
        int seen = 0;
        for (int i = 0; i < nn && !seen; i++) seen = !strcmp(names[i], e->valuestring);
        if (!seen) {
            names = sd_xrealloc(names, (size_t)(nn + 1) * sizeof *names);
            names[nn++] = e->valuestring;
        }
    }
    if (nn == 0) { sd_set_error("%s: empty weight_map", index_path); goto out; }
    for (int i = 0; i < nn; i++) {
        char *p = sd_path_join(dir, names[i]);
        int r = wf_add(w, p);
        free(p);
        if (r) goto out;
    }
    /* every key must be where the index says it is */
    cJSON_ArrayForEach(e, wm) {
        int fi = 0;
        while (fi < w->n && strcmp(sd_path_basename(w->paths[fi]), e->valuestring)) fi++;
        if (fi == w->n || !sd_st_find(w->f[fi], e->string)) {
            sd_set_error("%s: weight_map says \"%s\" is in %s, but it is not there", index_path, e->string,
                         e->valuestring);
            goto out;
        }
    }
    rc = 0;
out:
    free(names);
    cJSON_Delete(j);
    if (rc) wf_free(w);
    return rc;
}

/* Locate and open the weights of a diffusers component directory. */
static int wf_open_dir(sd_wfiles *w, const char *dir, sd_component c, const char *variant) {
    const char *base = weights_base(c);
    char name[256];
    memset(w, 0, sizeof *w);
    const char *v[2] = {variant, NULL};
    for (int pass = 0; pass < (variant ? 1 : 2); pass++) {
        const char *var = pass == 0 ? v[0] : "fp16";
        char *p;
        if (var) snprintf(name, sizeof name, "%s.%s.safetensors", base, var);
        else snprintf(name, sizeof name, "%s.safetensors", base);
        p = sd_path_join(dir, name);
        if (sd_is_file(p)) {
            if (pass == 1) sd_note("%s: no %s.safetensors, using the fp16 variant %s", dir, base, name);
            int r = wf_add(w, p);
            free(p);
            if (r) wf_free(w);
            return r;
        }
        free(p);
        if (var) snprintf(name, sizeof name, "%s.safetensors.index.%s.json", base, var);
        else snprintf(name, sizeof name, "%s.safetensors.index.json", base);
        p = sd_path_join(dir, name);
        if (sd_is_file(p)) {
            if (pass == 1) sd_note("%s: no %s.safetensors, using the fp16 variant %s", dir, base, name);
            int r = open_index(w, dir, p);
            free(p);
            return r;
        }
        free(p);
    }
    /* nothing in safetensors: say why */
    char **names;
    int n = sd_list_dir(dir, &names);
    if (n < 0) return -1;
    const char *pickle = NULL;
    for (int i = 0; i < n && !pickle; i++)
        if (ends(names[i], ".bin") || ends(names[i], ".ckpt") || ends(names[i], ".pt") || ends(names[i], ".pth"))
            pickle = names[i];
    int rc;
    if (pickle)
        rc = sd_set_error("%s: only PyTorch pickle weights (%s): unsupported: convert to safetensors", dir, pickle);
    else if (variant)
        rc = sd_set_error("%s: no %s.%s.safetensors or %s.safetensors.index.%s.json (variant \"%s\")", dir, base,
                          variant, base, variant, variant);
    else
        rc = sd_set_error("%s: no weights (%s.safetensors or %s.safetensors.index.json)", dir, base, base);
    sd_free_strv(names, n);
    return rc;
}

/* ---- opening ------------------------------------------------------------- */

static int parse_component_config(sd_model *m, sd_component c, const char *path) {
    switch (c) {
    case SD_UNET: return sd_unet_config_load(path, &m->unet);
    case SD_VAE: return sd_vae_config_load(path, &m->vae);
    case SD_TEXT_ENCODER: return sd_clip_text_config_load(path, &m->text);
    default: return sd_set_error("bad component");
    }
}

/* model_index.json entry of a component: 1 = [lib, class] given, 0 = absent
 * or [null, null]; -1 = malformed. */
static int index_entry(const cJSON *mi, const char *name, const char **cls) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(mi, name);
    *cls = NULL;
    if (!e || cJSON_IsNull(e)) return 0;
    if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2) return -1;
    const cJSON *k = cJSON_GetArrayItem(e, 1);
    if (cJSON_IsNull(k)) return 0;
    if (!cJSON_IsString(k)) return -1;
    *cls = k->valuestring;
    return 1;
}

static int open_pipeline(sd_model *m) {
    char *ip = sd_path_join(m->path, "model_index.json");
    cJSON *mi;
    int rc = -1;
    if (sd_json_load(ip, &mi)) goto out;
    m->priv->model_index = mi;
    const char *cls = sd_json_str(mi, "_class_name", NULL), *k;
    if (cls) m->pipeline_class = sd_xstrdup(cls);
    for (int c = 0; c < SD_NCOMP; c++) {
        int r = index_entry(mi, COMP_NAME[c], &k);
        if (r < 0) { sd_set_error("%s: \"%s\": expected [library, class]", ip, COMP_NAME[c]); goto out; }
        if (r == 0) continue;
        if (strcmp(k, COMP_CLASS[c])) {
            sd_set_error("%s: %s is a %s: unsupported (only %s)", ip, COMP_NAME[c], k, COMP_CLASS[c]);
            goto out;
        }
        m->comp_dir[c] = sd_path_join(m->path, COMP_NAME[c]);
        char *cp = sd_path_join(m->comp_dir[c], "config.json");
        r = parse_component_config(m, (sd_component)c, cp);
        free(cp);
        if (r) goto out;
        m->has[c] = 1;
    }
    int r = index_entry(mi, "scheduler", &k);
    if (r < 0) { sd_set_error("%s: \"scheduler\": expected [library, class]", ip); goto out; }
    if (r) {
        char *sp = sd_path_join(m->path, "scheduler/scheduler_config.json");
        r = sd_scheduler_config_load(sp, &m->scheduler);
        free(sp);
        if (r) goto out;
        m->has_scheduler = 1;
    }
    r = index_entry(mi, "tokenizer", &k);
    if (r < 0) { sd_set_error("%s: \"tokenizer\": expected [library, class]", ip); goto out; }
    if (r) {
        m->tokenizer_dir = sd_path_join(m->path, "tokenizer");
        if (!sd_is_dir(m->tokenizer_dir)) {
            sd_set_error("%s: lists a tokenizer, but %s is not a directory", ip, m->tokenizer_dir);
            goto out;
        }
    }
    rc = 0;
out:
    free(ip);
    return rc;
}

static int open_component_dir(sd_model *m) {
    char *cp = sd_path_join(m->path, "config.json");
    cJSON *j;
    int rc = sd_json_load(cp, &j);
    if (rc) { free(cp); return -1; }
    const char *cls = sd_json_str(j, "_class_name", NULL);
    const char *mt = sd_json_str(j, "model_type", NULL);
    int c = -1;
    if (cls && !strcmp(cls, "UNet2DConditionModel")) c = SD_UNET;
    else if (cls && !strcmp(cls, "AutoencoderKL")) c = SD_VAE;
    else if (!cls && mt && (!strcmp(mt, "clip_text_model") || !strcmp(mt, "clip"))) c = SD_TEXT_ENCODER;
    if (c < 0) {
        rc = sd_set_error("%s: not a UNet2DConditionModel, AutoencoderKL or CLIPTextModel config (_class_name %s, "
                          "model_type %s)", cp, cls ? cls : "absent", mt ? mt : "absent");
    } else {
        switch (c) {
        case SD_UNET: rc = sd_unet_config_parse(j, cp, &m->unet); break;
        case SD_VAE: rc = sd_vae_config_parse(j, cp, &m->vae); break;
        default: rc = sd_clip_text_config_parse(j, cp, &m->text); break;
        }
        if (!rc) {
            m->has[c] = 1;
            m->comp_dir[c] = sd_xstrdup(m->path);
        }
    }
    cJSON_Delete(j);
    free(cp);
    return rc;
}

static int open_single_file(sd_model *m) {
    sd_model_priv *pv = m->priv;
    if (wf_add(&pv->single, m->path)) return -1;
    const sd_st_file *f = pv->single.f[0];
    if (sd_sf_detect(f, &m->sf)) return -1;
    if (pv->use_ema && m->sf.ema_tensors <= 100)
        return sd_set_error("%s: no EMA weights (%d model_ema.* tensors)", m->path, m->sf.ema_tensors);
    for (int c = 0; c < SD_NCOMP; c++) {
        if (!sd_sf_has_component(f, &m->sf, (sd_component)c)) continue;
        char *cp = NULL;
        if (pv->config_dir) {
            char *d = sd_path_join(pv->config_dir, COMP_NAME[c]);
            cp = sd_path_join(d, "config.json");
            free(d);
            if (!sd_is_file(cp)) { free(cp); cp = NULL; }
        }
        int r;
        if (cp) r = parse_component_config(m, (sd_component)c, cp);
        else if (c == SD_UNET) r = sd_sf_infer_unet(f, &m->sf, &m->unet);
        else if (c == SD_VAE) r = sd_sf_infer_vae(f, &m->sf, &m->vae);
        else r = sd_sf_infer_text(f, &m->sf, &m->text);
        free(cp);
        if (r) return -1;
        m->has[c] = 1;
    }
    /* scheduler and tokenizer: from the config dir, else inferred / none */
    char *sp = pv->config_dir ? sd_path_join(pv->config_dir, "scheduler/scheduler_config.json") : NULL;
    int r = (sp && sd_is_file(sp)) ? sd_scheduler_config_load(sp, &m->scheduler) : sd_sf_scheduler(f, &m->sf, &m->scheduler);
    free(sp);
    if (r) return -1;
    m->has_scheduler = 1;
    if (pv->config_dir) {
        char *td = sd_path_join(pv->config_dir, "tokenizer");
        if (sd_is_dir(td)) m->tokenizer_dir = td;
        else free(td);
    }
    /* tensors that belong to no component: known LDM buffers silently, others once */
    const char *first = NULL;
    for (int i = 0; i < f->ntensors; i++) {
        const char *k = f->tensors[i].name;
        int mine = sd_sf_known_extra(k);
        for (int c = 0; c < SD_NCOMP && !mine; c++) mine = m->has[c] && sd_sf_in_namespace(m, (sd_component)c, k);
        if (!mine && !(pv->use_ema && starts(k, "model.diffusion_model."))) {
            if (!first) first = k;
            m->sf.ignored++;
        }
    }
    if (m->sf.ignored) sd_warn("%s: %d tensors outside the UNet/VAE/text encoder are ignored (e.g. \"%s\")", m->path,
                               m->sf.ignored, first);
    return 0;
}

int sd_model_open(const char *path, const sd_model_opts *opts, sd_model **out) {
    *out = NULL;
    sd_model *m = sd_xcalloc(1, sizeof *m);
    m->priv = sd_xcalloc(1, sizeof *m->priv);
    m->path = sd_xstrdup(path);
    size_t pl = strlen(m->path);
    while (pl > 1 && m->path[pl - 1] == '/') m->path[--pl] = 0;
    if (opts) {
        if (opts->variant) m->priv->variant = sd_xstrdup(opts->variant);
        if (opts->config_dir) m->priv->config_dir = sd_xstrdup(opts->config_dir);
        m->priv->use_ema = opts->use_ema;
        m->priv->allow_extra = opts->allow_extra;
    }
    int rc;
    if (sd_is_dir(m->path)) {
        char *ip = sd_path_join(m->path, "model_index.json");
        char *cp = sd_path_join(m->path, "config.json");
        if (sd_is_file(ip)) { m->kind = SD_MODEL_PIPELINE; rc = open_pipeline(m); }
        else if (sd_is_file(cp)) { m->kind = SD_MODEL_COMPONENT; rc = open_component_dir(m); }
        else rc = sd_set_error("%s: not a diffusers model directory (no model_index.json or config.json)", m->path);
        free(ip);
        free(cp);
    } else if (sd_is_file(m->path)) {
        if (ends(m->path, ".ckpt") || ends(m->path, ".pt") || ends(m->path, ".pth") || ends(m->path, ".bin"))
            rc = sd_set_error("%s: PyTorch pickle checkpoint: unsupported: convert to safetensors", m->path);
        else { m->kind = SD_MODEL_SINGLE_FILE; rc = open_single_file(m); }
    } else {
        rc = sd_set_error("%s: no such file or directory", m->path);
    }
    if (rc) {
        sd_model_close(m);
        return -1;
    }
    if (m->priv->use_ema && m->kind != SD_MODEL_SINGLE_FILE) {
        sd_model_close(m);
        return sd_set_error("%s: EMA weights can only be selected in single-file checkpoints", path);
    }
    *out = m;
    return 0;
}

int sd_model_probe(const char *path) {
    int kind = 0;
    if (sd_is_dir(path)) {
        char *ip = sd_path_join(path, "model_index.json"), *cp = sd_path_join(path, "config.json");
        kind = sd_is_file(ip) ? SD_MODEL_PIPELINE : sd_is_file(cp) ? SD_MODEL_COMPONENT : 0;
        free(ip);
        free(cp);
    } else if (sd_is_file(path)) {
        sd_st_file *f;
        if (sd_st_open(path, &f) == 0) {
            if (sd_st_find(f, "model.diffusion_model.input_blocks.0.0.weight")) kind = SD_MODEL_SINGLE_FILE;
            sd_st_close(f);
        }
        sd_clear_error();
    }
    return kind;
}

void sd_model_release(sd_model *m, sd_component c) {
    if (!m || !m->priv || c < 0 || c >= SD_NCOMP || !m->priv->wf_open[c]) return;
    wf_free(&m->priv->wf[c]);
    m->priv->wf_open[c] = 0;
}

void sd_model_close(sd_model *m) {
    if (!m) return;
    sd_unet_config_free(&m->unet);
    sd_vae_config_free(&m->vae);
    sd_clip_text_config_free(&m->text);
    sd_scheduler_config_free(&m->scheduler);
    if (m->priv) {
        for (int c = 0; c < SD_NCOMP; c++) wf_free(&m->priv->wf[c]);
        wf_free(&m->priv->single);
        if (m->priv->model_index) cJSON_Delete(m->priv->model_index);
        free(m->priv->variant);
        free(m->priv->config_dir);
        free(m->priv);
    }
    for (int c = 0; c < SD_NCOMP; c++) free(m->comp_dir[c]);
    free(m->tokenizer_dir);
    free(m->pipeline_class);
    free(m->path);
    free(m);
}

int sd_model_table(const sd_model *m, sd_component c, sd_param_table *t) {
    memset(t, 0, sizeof *t);
    if (c < 0 || c >= SD_NCOMP || !m->has[c]) return sd_set_error("%s: has no %s", m->path, sd_component_name(c));
    switch (c) {
    case SD_UNET: return sd_unet_param_table(&m->unet, t);
    case SD_VAE: return sd_vae_param_table(&m->vae, t);
    default: return sd_clip_text_param_table(&m->text, t);
    }
}

cJSON *sd_model_config_json(const sd_model *m, sd_component c) {
    switch (c) {
    case SD_UNET: return sd_unet_config_to_json(&m->unet);
    case SD_VAE: return sd_vae_config_to_json(&m->vae);
    default: return sd_clip_text_config_to_json(&m->text);
    }
}

/* ---- loading ------------------------------------------------------------- */

/* Candidate keys of p in a diffusers component's files. */
static int dir_candidates(sd_component c, const sd_param *p, sd_src_key out[3]) {
    int n = 0;
    for (int i = 0; i < 3; i++) { out[i].row0 = 0; out[i].rows = -1; }
    snprintf(out[n++].key, SD_KEY_MAX, "%s", p->name);
    if (c == SD_VAE && strstr(p->name, "mid_block.attentions.")) {
        /* diffusers ≤ 0.13 attention names (modeling_utils._fix_state_dict_keys_on_load) */
        static const struct { const char *now, *old; } ren[] = {
            {".to_q.", ".query."}, {".to_k.", ".key."}, {".to_v.", ".value."}, {".to_out.0.", ".proj_attn."}};
        for (size_t i = 0; i < sizeof ren / sizeof ren[0]; i++) {
            const char *at = strstr(p->name, ren[i].now);
            if (!at) continue;
            snprintf(out[n++].key, SD_KEY_MAX, "%.*s%s%s", (int)(at - p->name), p->name, ren[i].old,
                     at + strlen(ren[i].now));
            break;
        }
    }
    if (c == SD_TEXT_ENCODER && starts(p->name, "text_model."))
        snprintf(out[n++].key, SD_KEY_MAX, "%s", p->name + strlen("text_model."));
    return n;
}

static int shape_matches(const sd_param *p, const sd_st_tensor *t, const sd_src_key *k) {
    if (k->rows >= 0) { /* a row block of a fused tensor: [3·rows, rest...] */
        if (t->ndim != p->ndim || t->shape[0] < k->row0 + k->rows || t->shape[0] != 3 * p->shape[0]) return 0;
        for (int i = 1; i < p->ndim; i++)
            if (t->shape[i] != p->shape[i]) return 0;
        return 1;
    }
    if (t->ndim == p->ndim) {
        for (int i = 0; i < p->ndim; i++)
            if (t->shape[i] != p->shape[i]) return 0;
        return 1;
    }
    if ((p->flags & SD_PARAM_SQUEEZE_OK) && p->ndim == 2 && (t->ndim == 3 || t->ndim == 4)) {
        if (t->shape[0] != p->shape[0] || t->shape[1] != p->shape[1]) return 0;
        for (int i = 2; i < t->ndim; i++)
            if (t->shape[i] != 1) return 0;
        return 1;
    }
    return 0;
}

/* One conversion job: elements [start, start+count) of a parameter, read from
 * src (the first byte of that parameter's data in the mapping). */
typedef struct {
    const unsigned char *src;
    sd_dtype dtype;
    float *dst;
    size_t start, count;
} conv_job;

#define CONV_CHUNK ((size_t)1 << 20) /* elements; a multiple of 8 keeps sub-byte dtypes on byte boundaries */

/* Queue the conversion of parameter p from tensor t (whole, or rows of a fused one). */
static int queue_src(const sd_st_file *f, const sd_st_tensor *t, const sd_src_key *k, float *dst, size_t numel,
                     conv_job **jobs, size_t *njobs, size_t *cap) {
    int bits = sd_dtype_bits(t->dtype);
    const unsigned char *src = (const unsigned char *)sd_st_raw(f, t);
    if (k->rows >= 0) {
        if (bits % 8) return sd_set_error("%s: tensor \"%s\": cannot slice sub-byte dtype %s", f->path, t->name,
                                          sd_dtype_name(t->dtype));
        size_t row_elems = numel / (size_t)k->rows;
        src += (size_t)k->row0 * row_elems * (size_t)(bits / 8);
    }
    for (size_t s = 0; s < numel; s += CONV_CHUNK) {
        if (*njobs == *cap) {
            *cap = *cap ? 2 * *cap : 1024;
            *jobs = sd_xrealloc(*jobs, *cap * sizeof **jobs);
        }
        conv_job *j = &(*jobs)[(*njobs)++];
        j->src = src + s * (size_t)bits / 8;
        j->dtype = t->dtype;
        j->dst = dst + s;
        j->start = s;
        j->count = numel - s < CONV_CHUNK ? numel - s : CONV_CHUNK;
    }
    return 0;
}

static int load_from(sd_model *m, sd_component c, sd_wfiles *w, int single, const sd_param_table *t, float *buf) {
    const char *where = single ? m->path : m->comp_dir[c];
    const char *cname = sd_component_name(c);
    for (int i = 0; i < w->n; i++) memset(w->used[i], 0, (size_t)w->f[i]->ntensors + 1);
    int nmissing = 0;
    conv_job *jobs = NULL;
    size_t njobs = 0, cap = 0;
    const sd_param *first_missing = NULL;
    char first_missing_key[SD_KEY_MAX] = "";
    for (int pi = 0; pi < t->n; pi++) {
        const sd_param *p = &t->p[pi];
        sd_src_key cand[3];
        int nc = single ? sd_sf_candidates(m, c, p, cand) : dir_candidates(c, p, cand);
        const sd_st_tensor *found = NULL;
        int ffile = -1, fcand = -1;
        for (int k = 0; k < nc; k++)
            for (int fi = 0; fi < w->n; fi++) {
                const sd_st_tensor *st = sd_st_find(w->f[fi], cand[k].key);
                if (!st) continue;
                if (found) {
                    free(jobs);
                    return sd_set_error("%s: %s: tensor \"%s\" is stored twice (\"%s\" in %s and \"%s\" in %s)", where,
                                        cname, p->name, cand[fcand].key, sd_path_basename(w->paths[ffile]),
                                        cand[k].key, sd_path_basename(w->paths[fi]));
                }
                found = st;
                ffile = fi;
                fcand = k;
            }
        if (!found) {
            if (!nmissing) {
                first_missing = p;
                snprintf(first_missing_key, sizeof first_missing_key, "%s", nc ? cand[0].key : p->name);
            }
            nmissing++;
            continue;
        }
        const sd_st_file *f = w->f[ffile];
        if (!shape_matches(p, found, &cand[fcand])) {
            char a[128], b[128];
            free(jobs);
            sd_shape_str(found->ndim, found->shape, a, sizeof a);
            sd_param_shape_str(p, b, sizeof b);
            if (cand[fcand].rows >= 0)
                return sd_set_error("%s: tensor \"%s\" has shape %s, the %s config expects 3 x %s (fused q/k/v of %s)",
                                    f->path, found->name, a, cname, b, p->name);
            return sd_set_error("%s: tensor \"%s\" has shape %s, the %s config expects %s", f->path, found->name, a,
                                cname, b);
        }
        if (!sd_dtype_is_real(found->dtype)) {
            free(jobs);
            return sd_set_error("%s: tensor \"%s\": dtype %s cannot be converted to float", f->path, found->name,
                                sd_dtype_name(found->dtype));
        }
        if (queue_src(f, found, &cand[fcand], buf + p->offset, p->numel, &jobs, &njobs, &cap)) {
            free(jobs);
            return -1;
        }
        w->used[ffile][found - f->tensors] = 1;
    }
    if (nmissing) {
        free(jobs);
        char s[128];
        sd_param_shape_str(first_missing, s, sizeof s);
        return sd_set_error("%s: %s: missing tensor \"%s\" %s (the config expects it; %d missing in all)", where, cname,
                            first_missing_key, s, nmissing);
    }
    /* unexpected tensors */
    int nextra = 0;
    const sd_st_tensor *first_extra = NULL;
    const char *extra_file = NULL;
    for (int fi = 0; fi < w->n; fi++)
        for (int i = 0; i < w->f[fi]->ntensors; i++) {
            const sd_st_tensor *st = &w->f[fi]->tensors[i];
            if (w->used[fi][i]) continue;
            if (single) {
                if (!sd_sf_in_namespace(m, c, st->name) || sd_sf_ignorable(m, c, st->name)) continue;
            } else if (c == SD_TEXT_ENCODER && strstr(st->name, "position_ids")) {
                continue; /* transformers' old non-persistent buffer */
            }
            if (!nextra) { first_extra = st; extra_file = w->paths[fi]; }
            nextra++;
        }
    if (nextra) {
        char s[128];
        sd_shape_str(first_extra->ndim, first_extra->shape, s, sizeof s);
        if (!m->priv->allow_extra) {
            free(jobs);
            return sd_set_error("%s: unexpected tensor \"%s\" %s: not part of the %s config (%d unexpected in all)",
                                extra_file, first_extra->name, s, cname, nextra);
        }
        sd_warn("%s: %d unexpected %s tensors ignored (e.g. \"%s\" %s)", extra_file, nextra, cname, first_extra->name, s);
    }
    /* Everything checked: convert, in parallel (F16/BF16 -> f32 of a 1 G
     * parameter UNet is seconds on one core). Dtypes were checked above, so
     * the conversions cannot fail. */
    long long nj = (long long)njobs;
#pragma omp parallel for schedule(dynamic)
    for (long long i = 0; i < nj; i++) (void)sd_convert_to_f32(jobs[i].dtype, jobs[i].src, jobs[i].dst, jobs[i].count);
    free(jobs);
    return 0;
}

static int open_weights(sd_model *m, sd_component c, sd_wfiles **w, int *single) {
    if (c < 0 || c >= SD_NCOMP || !m->has[c]) return sd_set_error("%s: has no %s", m->path, sd_component_name(c));
    if (m->kind == SD_MODEL_SINGLE_FILE) {
        *w = &m->priv->single;
        *single = 1;
        return 0;
    }
    *single = 0;
    if (!m->priv->wf_open[c]) {
        if (wf_open_dir(&m->priv->wf[c], m->comp_dir[c], c, m->priv->variant)) return -1;
        m->priv->wf_open[c] = 1;
    }
    *w = &m->priv->wf[c];
    return 0;
}

int sd_model_load(sd_model *m, sd_component c, const sd_param_table *t, float *buf) {
    sd_wfiles *w;
    int single;
    if (open_weights(m, c, &w, &single)) return -1;
    return load_from(m, c, w, single, t, buf);
}

int sd_model_load_alloc(sd_model *m, sd_component c, sd_param_table *t, float **buf) {
    *buf = NULL;
    if (sd_model_table(m, c, t)) return -1;
    size_t bytes;
    if (sd_mul_size(t->total, sizeof(float), &bytes)) { sd_param_table_free(t); return -1; }
    float *b = sd_xmalloc(bytes ? bytes : 1);
    if (sd_model_load(m, c, t, b)) {
        free(b);
        sd_param_table_free(t);
        return -1;
    }
    *buf = b;
    return 0;
}

int sd_model_weights_info(sd_model *m, sd_component c, sd_weights_info *info) {
    memset(info, 0, sizeof *info);
    sd_wfiles *w;
    int single;
    if (open_weights(m, c, &w, &single)) return -1;
    info->nfiles = w->n;
    for (int fi = 0; fi < w->n; fi++) {
        if (fi < 8) snprintf(info->files[fi], sizeof info->files[fi], "%s", sd_path_basename(w->paths[fi]));
        for (int i = 0; i < w->f[fi]->ntensors; i++) {
            const sd_st_tensor *st = &w->f[fi]->tensors[i];
            if (single && !sd_sf_in_namespace(m, c, st->name)) continue;
            info->tensors++;
            info->elements += st->numel;
            info->dtypes |= 1u << st->dtype;
        }
    }
    return 0;
}

/* ---- writing ------------------------------------------------------------- */

int sd_component_save(const char *dir, sd_component c, const cJSON *config, const sd_param_table *t,
                      const float *buf, sd_dtype dtype) {
    if (c < 0 || c >= SD_NCOMP) return sd_set_error("bad component");
    if (!dtype) dtype = SD_F32;
    if (dtype != SD_F32 && dtype != SD_F16 && dtype != SD_BF16)
        return sd_set_error("%s: cannot save weights as %s (F32, F16 or BF16)", dir, sd_dtype_name(dtype));
    if (sd_mkdir_p(dir)) return -1;
    char *cp = sd_path_join(dir, "config.json");
    int rc = sd_json_save(cp, config);
    free(cp);
    if (rc) return -1;
    sd_st_writer *w = sd_st_writer_new();
    for (int i = 0; i < t->n && !rc; i++)
        rc = sd_st_writer_add_f32(w, t->p[i].name, dtype, t->p[i].ndim, t->p[i].shape, buf + t->p[i].offset);
    if (!rc) rc = sd_st_writer_meta(w, "format", "pt");
    char name[64];
    snprintf(name, sizeof name, "%s.safetensors", weights_base(c));
    char *wp = sd_path_join(dir, name);
    if (!rc) rc = sd_st_writer_save(w, wp);
    free(wp);
    sd_st_writer_free(w);
    return rc;
}

/* Hard-link (or copy) a directory tree. Links follow symlinks (HF cache
 * snapshots are symlinks into blobs/). */
static int copy_tree(const char *src, const char *dst, int copy) {
    if (sd_mkdir_p(dst)) return -1;
    char **names;
    int n = sd_list_dir(src, &names);
    if (n < 0) return -1;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        char *s = sd_path_join(src, names[i]), *d = sd_path_join(dst, names[i]);
        if (sd_is_dir(s)) rc = copy_tree(s, d, copy);
        else if (copy || linkat(AT_FDCWD, s, AT_FDCWD, d, AT_SYMLINK_FOLLOW) != 0) rc = sd_copy_file(s, d);
        free(s);
        free(d);
    }
    sd_free_strv(names, n);
    return rc;
}

static cJSON *lib_class(const char *lib, const char *cls) {
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateString(lib));
    cJSON_AddItemToArray(a, cJSON_CreateString(cls));
    return a;
}

static cJSON *null_pair(void) {
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateNull());
    cJSON_AddItemToArray(a, cJSON_CreateNull());
    return a;
}

static cJSON *synth_model_index(const sd_model *base) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "StableDiffusionPipeline");
    cJSON_AddStringToObject(o, "_diffusers_version", "0.39.0");
    cJSON_AddItemToObject(o, "feature_extractor", null_pair());
    cJSON_AddItemToObject(o, "image_encoder", null_pair());
    cJSON_AddBoolToObject(o, "requires_safety_checker", 0);
    cJSON_AddItemToObject(o, "safety_checker", null_pair());
    const char *sc = base->has_scheduler && base->scheduler.class_name[0] ? base->scheduler.class_name : "PNDMScheduler";
    cJSON_AddItemToObject(o, "scheduler", lib_class("diffusers", sc));
    cJSON_AddItemToObject(o, "text_encoder", lib_class("transformers", "CLIPTextModel"));
    cJSON_AddItemToObject(o, "tokenizer", lib_class("transformers", "CLIPTokenizer"));
    cJSON_AddItemToObject(o, "unet", lib_class("diffusers", "UNet2DConditionModel"));
    cJSON_AddItemToObject(o, "vae", lib_class("diffusers", "AutoencoderKL"));
    return o;
}

static int write_component(const char *tmp, sd_model *base, sd_component c, const sd_component_data *part,
                           const sd_save_opts *o) {
    char *d = sd_path_join(tmp, COMP_NAME[c]);
    int rc;
    if (part && part->buf) {
        if (!part->table) { free(d); return sd_set_error("%s: weights given without a parameter table", COMP_NAME[c]); }
        cJSON *cfg = part->config ? cJSON_Duplicate(part->config, 1) : (base->has[c] ? sd_model_config_json(base, c) : NULL);
        if (!cfg) { free(d); return sd_set_error("%s: no config for the weights given", COMP_NAME[c]); }
        rc = sd_component_save(d, c, cfg, part->table, part->buf, o->dtype);
        cJSON_Delete(cfg);
    } else if (base->kind == SD_MODEL_PIPELINE) {
        rc = copy_tree(base->comp_dir[c], d, o->copy);
    } else {
        /* single-file base: convert */
        sd_param_table t;
        float *buf;
        rc = sd_model_load_alloc(base, c, &t, &buf);
        if (!rc) {
            cJSON *cfg = sd_model_config_json(base, c);
            rc = sd_component_save(d, c, cfg, &t, buf, o->dtype);
            cJSON_Delete(cfg);
            free(buf);
            sd_param_table_free(&t);
        }
    }
    free(d);
    return rc;
}

int sd_pipeline_save(const char *out_dir, sd_model *base, const sd_component_data parts[SD_NCOMP],
                     const sd_save_opts *opts) {
    sd_save_opts o = {0};
    if (opts) o = *opts;
    if (!o.dtype) o.dtype = SD_F32;
    if (base->kind == SD_MODEL_COMPONENT)
        return sd_set_error("%s: a pipeline needs a pipeline directory or single-file checkpoint as base", base->path);
    char *out = sd_xstrdup(out_dir);
    size_t ol = strlen(out);
    while (ol > 1 && out[ol - 1] == '/') out[--ol] = 0;
    if (!o.overwrite && (sd_is_dir(out) || sd_is_file(out))) {
        sd_set_error("%s: exists (not overwriting)", out);
        free(out);
        return -1;
    }
    char *tmp = sd_tmp_sibling(out);
    int rc = sd_rm_rf(tmp);
    if (!rc) rc = sd_mkdir_p(tmp);
    cJSON *mi = base->priv->model_index ? cJSON_Duplicate(base->priv->model_index, 1) : synth_model_index(base);

    /* the three model components */
    for (int c = 0; c < SD_NCOMP && !rc; c++) {
        const sd_component_data *part = parts ? &parts[c] : NULL;
        if (!(part && part->buf) && !base->has[c]) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(mi, COMP_NAME[c]);
            if (cJSON_IsArray(e) && cJSON_IsString(cJSON_GetArrayItem(e, 1)))
                rc = sd_set_error("%s: the pipeline needs a %s, and neither the base nor the caller has one", out,
                                  COMP_NAME[c]);
            continue;
        }
        rc = write_component(tmp, base, (sd_component)c, part, &o);
        if (!rc) cJSON_ReplaceItemInObjectCaseSensitive(mi, COMP_NAME[c], lib_class(COMP_LIB[c], COMP_CLASS[c]));
    }

    /* everything else model_index.json lists */
    const cJSON *e;
    cJSON_ArrayForEach(e, mi) {
        if (rc) break;
        if (!cJSON_IsArray(e) || !cJSON_IsString(cJSON_GetArrayItem(e, 1))) continue;
        int ours = 0;
        for (int c = 0; c < SD_NCOMP; c++) ours |= !strcmp(e->string, COMP_NAME[c]);
        if (ours) continue;
        char *d = sd_path_join(tmp, e->string);
        if (base->kind == SD_MODEL_PIPELINE) {
            char *s = sd_path_join(base->path, e->string);
            if (!strcmp(e->string, "tokenizer") && !sd_is_dir(s) && o.tokenizer_dir) {
                free(s);
                s = sd_xstrdup(o.tokenizer_dir);
            }
            rc = sd_is_dir(s) ? copy_tree(s, d, o.copy)
                              : sd_set_error("%s: model_index.json lists %s, but there is no such directory", base->path,
                                             e->string);
            free(s);
        } else if (!strcmp(e->string, "scheduler")) {
            char *sp = sd_path_join(d, "scheduler_config.json");
            rc = sd_mkdir_p(d);
            if (!rc) rc = sd_json_save(sp, base->scheduler.raw);
            free(sp);
        } else if (!strcmp(e->string, "tokenizer")) {
            const char *td = base->tokenizer_dir ? base->tokenizer_dir : o.tokenizer_dir;
            rc = td ? copy_tree(td, d, o.copy)
                    : sd_set_error("%s: no tokenizer to write (the single-file base has none: give a tokenizer "
                                   "directory or a config directory)", out);
        }
        free(d);
    }

    if (!rc) {
        char *ip = sd_path_join(tmp, "model_index.json");
        rc = sd_json_save(ip, mi);
        free(ip);
    }
    /* publish */
    if (!rc) {
        char *old = NULL;
        if (sd_is_dir(out) || sd_is_file(out)) {
            size_t n = strlen(out) + 32;
            old = sd_xmalloc(n);
            snprintf(old, n, "%s.old.%ld", out, (long)getpid());
            if (rename(out, old) != 0) rc = sd_set_error("%s: rename to %s: %s", out, old, strerror(errno));
        }
        if (!rc && rename(tmp, out) != 0) {
            rc = sd_set_error("%s: rename to %s: %s", tmp, out, strerror(errno));
            if (old) (void)rename(old, out);
        }
        if (!rc) {
            char *parent = sd_path_dirname(out);
            sd_fsync_dir(parent);
            free(parent);
            if (old) sd_rm_rf(old);
        }
        free(old);
    }
    if (rc) sd_rm_rf(tmp);
    cJSON_Delete(mi);
    free(tmp);
    free(out);
    return rc;
}
