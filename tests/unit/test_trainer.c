/* test_trainer.c — sdfit's training step against the reference trainer.
 *
 * Goldens: tests/ref/golden/sdfit/ from tests/ref/gen_sdfit.py (the step code
 * of train_text_to_image.py with diffusers + torch). The model is sd1-micro of
 * tests/fixtures/make_tiny_model.py, regenerated here. Every random draw
 * comes from the golden's replay file (--replay), so both sides see the same
 * numbers; each golden's metadata holds the sdfit options of its case.
 *
 * Gradient parity (one micro-batch; reference: diffusers' UNet in float64 on
 * the float32 objective inputs, so the error is ours alone):
 *   loss 1e-6 relative; each parameter gradient max |ours - ref| / RMS(ref)
 *   <= 1e-3 (the UNet backward's fp32 error: PyTorch's own fp32 gradients are
 *   up to 1.4e-4 off the same reference, printed as "torch32").
 * Trajectory parity (N optimizer steps against the float32 reference loop):
 *   per step train_loss and grad_norm 1e-4 relative (measured ~1e-6), lr
 *   1e-12 relative (the schedule is computed in double as diffusers does);
 *   final weights and EMA weights: max over tensors of max |ours - ref| /
 *   max(RMS(update), 1e-3 RMS(ref)) <= 2e-2, where update = ref - initial:
 *   the float32 gradients differ from torch's by ~1e-5 (summation order),
 *   Adam divides by sqrt(v) so a relative gradient error becomes the same
 *   relative error of the update, and MKL's sqrt (optim.h) adds ~1e-8; the
 *   printed numbers are typically 1e-5..1e-4 of the update.
 * Also: the default initialisation (--init_unet_from_config) and the stream
 * layout of the random draws.
 */
#include "core/fs.h"
#include "core/rng.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/modeldir.h"
#include "train/data.h"
#include "train/optim.h"
#include "train/trainer.h"
#include "test.h"

#include <stdarg.h>

static const char *tmp;
static char model[600];
#define GOLD "tests/ref/golden/sdfit"

static const char *python(void) {
    const char *p = getenv("SD_PY");
    return p && *p ? p : ".venv-test/bin/python";
}

static float *gread(sd_st_file *f, const char *name, size_t *n) {
    const sd_st_tensor *t = sd_st_find(f, name);
    if (!t) {
        printf("# golden lacks %s\n", name);
        return NULL;
    }
    float *b = malloc((t->numel ? (size_t)t->numel : 1) * sizeof(float));
    if (sd_st_read_f32(f, t, b)) {
        free(b);
        return NULL;
    }
    if (n) *n = (size_t)t->numel;
    return b;
}

static double rms(const float *a, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * a[i];
    return n ? sqrt(s / (double)n) : 0.0;
}

static double maxdiff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
    }
    return m;
}

/* A float64 (or any real) golden vector as doubles. */
static double *dread(sd_st_file *f, const char *name, size_t *n) {
    const sd_st_tensor *t = sd_st_find(f, name);
    if (!t || t->ndim != 1) return NULL;
    double *d = malloc(sizeof(double) * (size_t)(t->numel ? t->numel : 1));
    if (t->dtype == SD_F64) sd_st_read_raw(f, t, d);
    else {
        float *x = gread(f, name, NULL);
        for (int64_t i = 0; x && i < t->numel; i++) d[i] = x[i];
        free(x);
    }
    *n = (size_t)t->numel;
    return d;
}

static const char *jstr(const cJSON *j, const char *k, const char *def) { return sd_json_str(j, k, def); }

/* sdfit options of a golden case (metadata "case"); strings point into *case_json. */
static int case_opts(const char *name, sd_train_opts *o, cJSON **case_json, sd_st_file **gold) {
    char path[512], rp[512];
    snprintf(path, sizeof path, GOLD "/%s.safetensors", name);
    if (sd_st_open(path, gold)) {
        printf("# %s\n", sd_last_error());
        return -1;
    }
    const char *m = sd_st_meta(*gold, "case");
    *case_json = m ? cJSON_Parse(m) : NULL;
    if (!*case_json) return -1;
    const cJSON *c = *case_json;
    sd_train_opts_init(o);
    o->pretrained_model_name_or_path = model;
    o->data = strcmp(jstr(c, "text", ""), "encoder") ? GOLD "/latents" : GOLD "/latents_te";
    static char replay[8][512], outd[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(rp, sizeof rp, GOLD "/%s.replay.safetensors", name);
    snprintf(replay[k], sizeof replay[k], "%s", rp);
    snprintf(outd[k], sizeof outd[k], "%s/out_%s", tmp, name);
    o->replay = replay[k];
    o->output_dir = outd[k];
    o->train_batch_size = sd_json_int(c, "train_batch_size", 1);
    o->gradient_accumulation_steps = sd_json_int(c, "gradient_accumulation_steps", 1);
    o->max_train_steps = sd_json_int(c, "max_train_steps", 1);
    o->have_seed = 1;
    o->seed = (uint64_t)sd_json_int(c, "seed", 0);
    o->learning_rate = sd_json_num(c, "learning_rate", 1e-4);
    o->lr_scheduler = jstr(c, "lr_scheduler", "constant");
    o->lr_warmup_steps = sd_json_int(c, "lr_warmup_steps", 0);
    o->max_grad_norm = sd_json_num(c, "max_grad_norm", 1.0);
    o->adam_weight_decay = sd_json_num(c, "adam_weight_decay", 1e-2);
    o->use_ema = sd_json_bool(c, "use_ema", 0);
    o->snr_gamma = sd_json_num(c, "snr_gamma", 0);
    o->noise_offset = sd_json_num(c, "noise_offset", 0);
    o->input_perturbation = sd_json_num(c, "input_perturbation", 0);
    o->prediction_type = jstr(c, "prediction_type", NULL);
    o->quiet = 1;
    o->tensorboard = 0;
    return 0;
}

static void grad_case(const char *name) {
    sd_train_opts o;
    cJSON *c = NULL;
    sd_st_file *g = NULL;
    if (case_opts(name, &o, &c, &g)) {
        CHECK(0);
        goto out;
    }
    sd_trainer *t;
    CHECK_OK(sd_trainer_create(&o, &t));
    if (!t) goto out;
    double loss;
    CHECK_OK(sd_trainer_micro_step(t, &loss) < 0);
    float *gl = gread(g, "loss", NULL);
    if (gl) {
        double e = fabs(loss - gl[0]) / fabs(gl[0]);
        printf("# %s: loss %.7f (golden %.7f, rel %.1e; torch32 %.1e)\n", name, loss, gl[0], e,
               sd_json_num(c, "torch32_loss_rel", -1));
        CHECK(e < 1e-6);
    }
    free(gl);
    const sd_param_table *tab = sd_trainer_table(t);
    const float *gr = sd_trainer_grads(t);
    double worst = 0, *errs = malloc(sizeof(double) * (size_t)tab->n);
    const char *wn = "";
    int nt = 0;
    for (int i = 0; i < tab->n; i++) {
        char key[600];
        snprintf(key, sizeof key, "grad.%s", tab->p[i].name);
        size_t n;
        float *r = gread(g, key, &n);
        CHECK(r && n == tab->p[i].numel);
        if (!r || n != tab->p[i].numel) { free(r); continue; }
        double rr = rms(r, n), e = maxdiff(gr + tab->p[i].offset, r, n) / (rr > 0 ? rr : 1);
        errs[nt++] = e;
        if (e > worst || e != e) worst = e != e ? INFINITY : e, wn = tab->p[i].name;
        free(r);
    }
    for (int i = 1; i < nt; i++) /* insertion sort for the median */
        for (int j = i; j > 0 && errs[j] < errs[j - 1]; j--) { double x = errs[j]; errs[j] = errs[j - 1]; errs[j - 1] = x; }
    printf("# %s: %d gradient tensors, error (max |d| / RMS) median %.1e, max %.1e (%s); torch32 median %.1e max %.1e\n",
           name, nt, nt ? errs[nt / 2] : -1.0, worst, wn, sd_json_num(c, "torch32_grad_rel_median", -1),
           sd_json_num(c, "torch32_grad_rel_max", -1));
    CHECK(nt == tab->n && worst <= 1e-3);
    free(errs);
    sd_trainer_free(t);
out:
    cJSON_Delete(c);
    sd_st_close(g);
}

TEST(grad_eps_cached_offset_perturbation) { grad_case("grad_eps"); }
TEST(grad_vpred_minsnr_text_encoder) { grad_case("grad_vsnr"); }

/* worst over tensors of max |ours - ref| / max(RMS(ref - init), 1e-3 RMS(ref)) */
static double traj_err(sd_st_file *g, const char *prefix, const sd_param_table *tab, const float *ours,
                       const float *init, const char **worst_name, double *rel_weights) {
    double worst = 0;
    *rel_weights = 0;
    for (int i = 0; i < tab->n; i++) {
        const sd_param *p = &tab->p[i];
        char key[600];
        snprintf(key, sizeof key, "%s%s", prefix, p->name);
        size_t n;
        float *r = gread(g, key, &n);
        if (!r || n != p->numel) { free(r); return INFINITY; }
        double du = 0;
        for (size_t k = 0; k < n; k++) {
            double d = (double)r[k] - init[p->offset + k];
            du += d * d;
        }
        double scale = fmax(sqrt(du / (double)n), 1e-3 * rms(r, n));
        double md = maxdiff(ours + p->offset, r, n), e = md / (scale > 0 ? scale : 1);
        *rel_weights = fmax(*rel_weights, md / fmax(rms(r, n), 1e-30));
        if (e > worst || e != e) { worst = e != e ? INFINITY : e; *worst_name = p->name; }
        free(r);
    }
    return worst;
}

static void traj_case(const char *name) {
    sd_train_opts o;
    cJSON *c = NULL;
    sd_st_file *g = NULL;
    if (case_opts(name, &o, &c, &g)) {
        CHECK(0);
        goto out;
    }
    sd_trainer *t;
    CHECK_OK(sd_trainer_create(&o, &t));
    if (!t) goto out;
    const sd_param_table *tab = sd_trainer_table(t);
    float *init = malloc(sizeof(float) * tab->total);
    memcpy(init, sd_trainer_params(t), sizeof(float) * tab->total);
    size_t ns;
    size_t n2, n3;
    double *gl = dread(g, "train_loss", &ns), *gn = dread(g, "grad_norm", &n2), *glr = dread(g, "lr", &n3);
    CHECK(gl && gn && glr && ns == (size_t)o.max_train_steps);
    double el = 0, en = 0, elr = 0;
    for (int64_t s = 0; gl && gn && glr && s < o.max_train_steps; s++) {
        sd_train_step_info in;
        if (sd_trainer_step(t, &in)) {
            CHECK_OK(-1);
            break;
        }
        el = fmax(el, fabs(in.loss - gl[s]) / fabs(gl[s]));
        en = fmax(en, fabs(in.grad_norm - gn[s]) / fabs(gn[s]));
        elr = fmax(elr, fabs(in.lr - glr[s]) / fmax(fabs(glr[s]), 1e-30));
        if (glr[s] == 0) elr = fmax(elr, fabs(in.lr));
    }
    const char *wp = "", *we = "";
    double rp = 0, re = 0;
    double ep = traj_err(g, "param.", tab, sd_trainer_params(t), init, &wp, &rp);
    double ee = o.use_ema ? traj_err(g, "ema.", tab, sd_trainer_ema(t), init, &we, &re) : 0;
    printf("# %s: %lld steps: train_loss rel %.1e, grad_norm rel %.1e, lr rel %.1e; weights: max err / RMS(update) "
           "%.1e (%s), / RMS(weights) %.1e%s", name, (long long)o.max_train_steps, el, en, elr, ep, wp, rp,
           o.use_ema ? "" : "\n");
    if (o.use_ema) printf("; EMA %.1e (%s), %.1e\n", ee, we, re);
    CHECK(el < 1e-4 && en < 1e-4 && elr < 1e-12);
    CHECK(ep < 2e-2 && ee < 2e-2);
    CHECK(sd_trainer_global_step(t) == o.max_train_steps);
    free(gl), free(gn), free(glr), free(init);
    sd_trainer_free(t);
out:
    cJSON_Delete(c);
    sd_st_close(g);
}

TEST(trajectory_ga_clip_warmup_ema_minsnr_offset) { traj_case("traj_a"); }
TEST(trajectory_vpred_text_encoder_perturbation_linear) { traj_case("traj_b"); }

/* Same run with the epoch order drawn by sdfit (no sample_index in the
 * replay) gives bit-identical weights: the golden's sample_index, computed in
 * Python from the documented Philox layout, is sdfit's own order. */
TEST(replay_order_is_the_philox_order) {
    sd_st_file *f;
    if (sd_st_open(GOLD "/traj_a.replay.safetensors", &f)) {
        CHECK_OK(-1);
        return;
    }
    sd_st_writer *w = sd_st_writer_new();
    for (int i = 0; i < f->ntensors; i++) {
        const sd_st_tensor *x = &f->tensors[i];
        if (!strcmp(x->name, "sample_index")) continue;
        sd_st_writer_add(w, x->name, x->dtype, x->ndim, x->shape, sd_st_raw(f, x));
    }
    char p2[600];
    snprintf(p2, sizeof p2, "%s/noindex.safetensors", tmp);
    CHECK_OK(sd_st_writer_save(w, p2));
    sd_st_writer_free(w);
    sd_st_close(f);
    float *res[2] = {NULL, NULL};
    size_t n = 0;
    for (int k = 0; k < 2; k++) {
        sd_train_opts o;
        cJSON *c = NULL;
        sd_st_file *g = NULL;
        if (case_opts("traj_a", &o, &c, &g)) { CHECK(0); break; }
        if (k) o.replay = p2;
        sd_trainer *t;
        CHECK_OK(sd_trainer_create(&o, &t));
        for (int s = 0; t && s < o.max_train_steps; s++) CHECK_OK(sd_trainer_step(t, NULL));
        if (t) {
            n = sd_trainer_table(t)->total;
            res[k] = malloc(n * sizeof(float));
            memcpy(res[k], sd_trainer_params(t), n * sizeof(float));
        }
        sd_trainer_free(t);
        cJSON_Delete(c);
        sd_st_close(g);
    }
    CHECK(res[0] && res[1] && !memcmp(res[0], res[1], n * sizeof(float)));
    free(res[0]), free(res[1]);
}

/* --init_unet_from_config: torch's default init, deterministic in the seed. */
TEST(default_init) {
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/unet/config.json", model);
    sd_unet_config uc;
    cJSON *j;
    CHECK_OK(sd_json_load(cfg, &j));
    CHECK_OK(sd_unet_config_parse(j, cfg, &uc));
    cJSON_Delete(j);
    sd_param_table tab;
    CHECK_OK(sd_unet_param_table(&uc, &tab));
    float *a = malloc(sizeof(float) * tab.total), *b = malloc(sizeof(float) * tab.total);
    sd_unet_init_default(&tab, 3, a);
    sd_unet_init_default(&tab, 3, b);
    CHECK(!memcmp(a, b, sizeof(float) * tab.total));
    sd_unet_init_default(&tab, 4, b);
    CHECK(memcmp(a, b, sizeof(float) * tab.total));
    int bad = 0, checked = 0;
    for (int i = 0; i < tab.n; i++) {
        const sd_param *p = &tab.p[i];
        const float *x = a + p->offset;
        const char *nm = p->name;
        size_t L = strlen(nm);
        int bias = L > 5 && !strcmp(nm + L - 5, ".bias");
        int norm = strstr(nm, "norm") != NULL && p->ndim == 1;
        if (norm) { /* GroupNorm/LayerNorm: 1 / 0 */
            for (size_t k = 0; k < p->numel; k++) bad += x[k] != (bias ? 0.0f : 1.0f);
            continue;
        }
        /* fan_in of the weight (for a bias: of its weight) */
        char wn[600];
        snprintf(wn, sizeof wn, "%.*s.weight", (int)(bias ? L - 5 : L - 7), nm);
        const sd_param *w = sd_param_table_find(&tab, wn);
        double fan = 1;
        for (int d = 1; w && d < w->ndim; d++) fan *= (double)w->shape[d];
        double bound = 1 / sqrt(fan), s = 0, s2 = 0, mx = 0;
        for (size_t k = 0; k < p->numel; k++) s += x[k], s2 += (double)x[k] * x[k], mx = fmax(mx, fabs(x[k]));
        bad += mx > bound;
        if (p->numel >= 2000) { /* U(-b, b): mean 0, variance b^2/3 */
            double var = s2 / (double)p->numel, mean = s / (double)p->numel;
            bad += fabs(var / (bound * bound / 3) - 1) > 0.1 || fabs(mean) > 0.1 * bound;
            checked++;
        }
    }
    printf("# default init: %d tensors, %zu params, %d large tensors checked for U(-1/sqrt(fan_in), ..) moments\n",
           tab.n, tab.total, checked);
    CHECK(bad == 0 && checked > 0);
    free(a), free(b);
    sd_param_table_free(&tab);
    sd_unet_config_free(&uc);
}

/* The fused step (clip multiply + AdamW + zero_grad in one pass) is the
 * three passes, bit for bit. */
TEST(fused_adamw_step) {
    const size_t n = 200003; /* parallel, odd tail */
    float *p1 = malloc(n * 4), *p2 = malloc(n * 4), *g1 = malloc(n * 4), *g2 = malloc(n * 4);
    float *m1 = malloc(n * 4), *v1 = malloc(n * 4), *m2 = malloc(n * 4), *v2 = malloc(n * 4);
    sd_rng_normal_at(1, 1, 0, p1, n);
    memcpy(p2, p1, n * 4);
    sd_adamw_config c = sd_adamw_defaults();
    c.weight_decay = 0.05;
    sd_adamw a, b;
    CHECK_OK(sd_adamw_init(&a, &c, n, m1, v1));
    CHECK_OK(sd_adamw_init(&b, &c, n, m2, v2));
    int same = 1;
    for (int s = 0; s < 4; s++) {
        sd_rng_normal_at(2, (uint64_t)s, 0, g1, n);
        memcpy(g2, g1, n * 4);
        float total = sd_grad_total_norm(g1, n, NULL, 0);
        float coef = sd_clip_coef(total, 0.5 * total); /* clipping active */
        float tot2 = sd_clip_grad_norm(g1, n, NULL, 0, 0.5 * total, NULL);
        sd_adamw_step(&a, p1, g1, 1e-3 * (s + 1));
        memset(g1, 0, n * 4);
        sd_adamw_step_fused(&b, p2, g2, 1e-3 * (s + 1), coef, 1);
        same &= tot2 == total && coef < 1 && !memcmp(p1, p2, n * 4) && !memcmp(m1, m2, n * 4) &&
                !memcmp(v1, v2, n * 4) && !memcmp(g1, g2, n * 4);
    }
    CHECK(same && a.step == 4 && b.step == 4);
    free(p1), free(p2), free(g1), free(g2), free(m1), free(v1), free(m2), free(v2);
}

/* The stream layout of formats/replay.md §1. */
TEST(stream_layout) {
    CHECK(sd_train_stream(SD_DRAW_NOISE, 0, 0) == 0x0200000000000000ull);
    CHECK(sd_train_stream(SD_DRAW_TIMESTEP, 3, 7) == 0x0500000000030007ull);
    CHECK(sd_train_stream(SD_DRAW_LATENT, 0xFFFFFFFFFFull, 0xFFFF) == 0x01FFFFFFFFFFFFFFull);
    /* distinct kinds, micro-batches and slots never share a stream */
    CHECK(sd_train_stream(SD_DRAW_NOISE, 1, 0) != sd_train_stream(SD_DRAW_NOISE, 0, 1));
    CHECK(sd_train_stream(SD_DRAW_FLIP, 1, 2) != sd_train_stream(SD_DRAW_CAPTION, 1, 2));
}

/* Refusals at creation. */
TEST(refusals) {
    sd_train_opts o;
    cJSON *c = NULL;
    sd_st_file *g = NULL;
    if (case_opts("traj_b", &o, &c, &g)) { CHECK(0); return; }
    sd_trainer *t;
    o.resolution = 32; /* the set says 16 */
    CHECK_FAILS(sd_trainer_create(&o, &t), "resolution 16");
    o.resolution = 0;
    o.train_batch_size = 2; /* a replay made for batches of 3 serves smaller ones */
    CHECK_OK(sd_trainer_create(&o, &t));
    sd_trainer_free(t);
    o.train_batch_size = 4;
    CHECK_FAILS(sd_trainer_create(&o, &t), "smaller than --train_batch_size");
    o.train_batch_size = 3;
    o.noise_offset = 0.1; /* the replay has no offset_noise */
    CHECK_FAILS(sd_trainer_create(&o, &t), "offset_noise");
    o.noise_offset = 0;
    o.data = GOLD "/nope";
    CHECK_FAILS(sd_trainer_create(&o, &t), "nope");
    cJSON_Delete(c);
    sd_st_close(g);
}

int main(void) {
    tmp = test_tmpdir();
    snprintf(model, sizeof model, "%s/sd1-micro", tmp);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s tests/fixtures/make_tiny_model.py --config sd1-micro %s --force", python(), model);
    if (system(cmd) != 0) {
        printf("not ok 1 - cannot make the model (%s)\n1..1\n", cmd);
        return 1;
    }
    RUN(grad_eps_cached_offset_perturbation);
    RUN(grad_vpred_minsnr_text_encoder);
    RUN(trajectory_ga_clip_warmup_ema_minsnr_offset);
    RUN(trajectory_vpred_text_encoder_perturbation_linear);
    RUN(replay_order_is_the_philox_order);
    RUN(default_init);
    RUN(fused_adamw_step);
    RUN(stream_layout);
    RUN(refusals);
    sd_rm_rf(tmp);
    return test_summary();
}
