/* test_train_math.c — lib/train's optimizer, clipping, LR schedules, EMA,
 * losses and loss scaler against goldens from torch 2.15 / diffusers 0.39
 * (tests/ref/gen_train_math.py -> tests/ref/golden/train/).
 *
 * Tolerances: the implementations mirror torch's arithmetic op by op, so
 * clip_grad_norm_ totals and clipped gradients, lr values, EMA decays and
 * shadows, loss gradients, the scaler sequence and AdamW's moments must be
 * BIT-identical (0 ulp); a difference means an op order or a rounding step
 * drifted from torch's and is a bug.
 * AdamW params: torch's CPU sqrt is MKL VML's vmsSqrt (high-accuracy mode,
 * not correctly rounded: 1 ulp off for ~20% of inputs); we use IEEE sqrtf.
 * The golden also holds the same runs made by a replica of torch's
 * _single_tensor_adam (same tensor ops, proven bit-equal to torch.optim.AdamW
 * with torch's sqrt) using an IEEE sqrt: against those our params must be
 * bit-identical, and against torch itself within 1e-6 of the params' RMS
 * (measured ~1e-8, printed).
 * Forward loss values (torch's cascade sum vs our blocked double sum):
 * allowed 2 ulp (measured, printed).
 */
#include "test.h"

#include <stdint.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "train/ema.h"
#include "train/loss.h"
#include "train/optim.h"
#include "train/sched.h"

static char golden_dir[1024];

static const char *gpath(const char *name) {
    static char buf[1200];
    snprintf(buf, sizeof buf, "%s/%s", golden_dir, name);
    return buf;
}

/* Tensor name from the golden file as a malloc'ed float array (NULL + failed check if absent). */
static float *gload(sd_st_file *f, const char *name, int64_t *numel) {
    const sd_st_tensor *t = sd_st_find(f, name);
    if (!t) {
        printf("# golden tensor %s missing\n", name);
        test_cur_failed++;
        return NULL;
    }
    float *x = sd_xmalloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    if (sd_st_read_f32(f, t, x)) {
        printf("# %s: %s\n", name, sd_last_error());
        test_cur_failed++;
    }
    if (numel) *numel = t->numel;
    return x;
}

/* ulp distance on the ordered-integer line; NaN==NaN counts as equal. */
static int64_t ulp_diff(float a, float b) {
    if (isnan(a) && isnan(b)) return 0;
    if (isnan(a) || isnan(b)) return INT64_MAX;
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    int64_t oa = ia < 0 ? (int64_t)INT32_MIN - ia : ia;
    int64_t ob = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
    return oa > ob ? oa - ob : ob - oa;
}

/* Max ulp difference over n values; *nbad = count of differing values. */
static int64_t max_ulp(const float *a, const float *b, size_t n, size_t *nbad) {
    int64_t m = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t d = ulp_diff(a[i], b[i]);
        if (d) bad++;
        if (d > m) m = d;
    }
    if (nbad) *nbad = bad;
    return m;
}

/* A JSON number, or "inf"/"-inf"/"nan" as the generator writes non-finite values. */
static double jnum(const cJSON *x) {
    if (cJSON_IsNumber(x)) return x->valuedouble;
    if (cJSON_IsString(x)) return strtod(x->valuestring, NULL);
    return NAN;
}

static int load_segments(const cJSON *arr, sd_segment *segs, int max, size_t *total) {
    int n = 0;
    size_t off = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr) {
        if (n == max) break;
        segs[n].offset = off;
        segs[n].numel = (size_t)x->valuedouble;
        off += segs[n].numel;
        n++;
    }
    *total = off;
    return n;
}

/* ------------------------------------------------------------------ AdamW */

TEST(adamw_matches_torch) {
    sd_st_file *f = NULL;
    cJSON *j = NULL;
    CHECK_OK(sd_st_open(gpath("adamw.safetensors"), &f));
    CHECK_OK(sd_json_load(gpath("adamw.json"), &j));
    if (!f || !j) return;
    const cJSON *cases = cJSON_GetObjectItem(j, "cases"), *c;
    int ncases = 0;
    cJSON_ArrayForEach(c, cases) {
        const char *name = c->string;
        char key[128];
        sd_segment segs[32];
        size_t n;
        int nseg = load_segments(cJSON_GetObjectItem(c, "segments"), segs, 32, &n);
        int steps = sd_json_int(c, "steps", 0);
        const cJSON *betas = cJSON_GetObjectItem(c, "betas");
        sd_adamw_config cfg = {.beta1 = cJSON_GetArrayItem(betas, 0)->valuedouble,
                               .beta2 = cJSON_GetArrayItem(betas, 1)->valuedouble,
                               .eps = sd_json_num(c, "eps", 0),
                               .weight_decay = sd_json_num(c, "weight_decay", 0)};
        double base_lr = sd_json_num(c, "lr", 0);
        const cJSON *lrs = cJSON_GetObjectItem(c, "lrs");
        const cJSON *sched = cJSON_GetObjectItem(c, "sched");
        const cJSON *clip = cJSON_GetObjectItem(c, "clip");
        const cJSON *norms = cJSON_GetObjectItem(c, "norms");
        int use_ema = cJSON_IsTrue(cJSON_GetObjectItem(c, "ema"));
        const cJSON *ema_decays = cJSON_GetObjectItem(c, "ema_decay");

        snprintf(key, sizeof key, "%s.params0", name);
        float *p = gload(f, key, NULL);
        snprintf(key, sizeof key, "%s.grads", name);
        float *grads = gload(f, key, NULL);
        snprintf(key, sizeof key, "%s.params", name);
        float *ref = gload(f, key, NULL);
        snprintf(key, sizeof key, "%s.params_ieee", name);
        float *ref_i = gload(f, key, NULL);
        snprintf(key, sizeof key, "%s.exp_avg_ieee", name);
        float *ref_m = gload(f, key, NULL);
        snprintf(key, sizeof key, "%s.exp_avg_sq_ieee", name);
        float *ref_v = gload(f, key, NULL);
        snprintf(key, sizeof key, "%s.exp_avg", name);
        float *torch_m = gload(f, key, NULL);
        snprintf(key, sizeof key, "%s.exp_avg_sq", name);
        float *torch_v = gload(f, key, NULL);
        float *ref_ema = NULL, *torch_ema = NULL;
        if (use_ema) {
            snprintf(key, sizeof key, "%s.ema_ieee", name);
            ref_ema = gload(f, key, NULL);
            snprintf(key, sizeof key, "%s.ema", name);
            torch_ema = gload(f, key, NULL);
        }
        if (!p || !grads || !ref || !ref_i || !ref_m || !ref_v || !torch_m || !torch_v || (use_ema && !ref_ema)) return;

        float *m = sd_xmalloc(n * sizeof(float)), *v = sd_xmalloc(n * sizeof(float));
        float *g = sd_xmalloc(n * sizeof(float));
        float *shadow = NULL;
        sd_ema ema;
        sd_ema_init(&ema);
        if (use_ema) {
            shadow = sd_xmalloc(n * sizeof(float));
            memcpy(shadow, p, n * sizeof(float));
        }
        sd_adamw opt;
        CHECK_OK(sd_adamw_init(&opt, &cfg, n, m, v));
        sd_lr_schedule ls;
        int have_sched = cJSON_IsObject(sched);
        if (have_sched) {
            sd_lr_kind kind;
            CHECK_OK(sd_lr_kind_parse(sd_json_str(sched, "name", ""), &kind));
            CHECK_OK(sd_lr_schedule_init(&ls, kind, base_lr, sd_json_int(sched, "warmup", 0),
                                         sd_json_int(sched, "total", 0)));
        }
        int64_t worst = 0, worst_ema = 0, worst_torch = 0;
        double torch_rel = 0, torch_ema_rel = 0;
        size_t nbad_total = 0;
        int first_bad_step = -1;
        for (int s = 0; s < steps; s++) {
            memcpy(g, grads + (size_t)s * n, n * sizeof(float));
            if (cJSON_IsNumber(clip)) {
                float total = sd_clip_grad_norm(g, n, segs, nseg, clip->valuedouble, NULL);
                double want = jnum(cJSON_GetArrayItem(norms, s));
                CHECK_MSG((double)total == want, "%s step %d: clip total %.9g, torch %.9g", name, s, total, want);
            }
            double lr = have_sched ? sd_lr_at(&ls, s) : base_lr;
            double want_lr = cJSON_GetArrayItem(lrs, s)->valuedouble;
            CHECK_MSG(lr == want_lr, "%s step %d: lr %.17g, torch %.17g", name, s, lr, want_lr);
            sd_adamw_step(&opt, p, g, lr);
            size_t nbad;
            int64_t u = max_ulp(p, ref_i + (size_t)s * n, n, &nbad);
            if (u > worst) worst = u;
            nbad_total += nbad;
            if (nbad && first_bad_step < 0) first_bad_step = s;
            double ma, rel;
            int64_t ut = max_ulp(p, ref + (size_t)s * n, n, NULL);
            if (ut > worst_torch) worst_torch = ut;
            test_compare(p, ref + (size_t)s * n, n, &ma, &rel);
            if (rel > torch_rel) torch_rel = rel;
            if (use_ema) {
                double d = sd_ema_step(&ema, shadow, p, n);
                CHECK_MSG(d == cJSON_GetArrayItem(ema_decays, s)->valuedouble, "%s step %d: ema decay %.17g", name, s, d);
                int64_t ue = max_ulp(shadow, ref_ema + (size_t)s * n, n, NULL);
                if (ue > worst_ema) worst_ema = ue;
                test_compare(shadow, torch_ema + (size_t)s * n, n, &ma, &rel);
                if (rel > torch_ema_rel) torch_ema_rel = rel;
            }
        }
        int64_t um = max_ulp(m, ref_m, n, NULL), uv = max_ulp(v, ref_v, n, NULL);
        size_t nbm, nbv;
        int64_t tm = max_ulp(m, torch_m, n, &nbm), tv = max_ulp(v, torch_v, n, &nbv);
        printf("# adamw %-6s n=%zu steps=%d vs ieee-sqrt replica: params %lld ulp (%zu differ, first at step %d), "
               "m %lld ulp, v %lld ulp%s\n",
               name, n, steps, (long long)worst, nbad_total, first_bad_step, (long long)um, (long long)uv,
               use_ema ? (worst_ema ? ", EMA DIFFERS" : ", ema 0 ulp") : "");
        printf("#   vs torch.optim.AdamW: params max %lld ulp, max|diff|/rms %.2g; m %lld ulp (%zu differ), "
               "v %lld ulp (%zu differ)",
               (long long)worst_torch, torch_rel, (long long)tm, nbm, (long long)tv, nbv);
        if (use_ema) printf("; ema max|diff|/rms %.2g", torch_ema_rel);
        printf("\n");
        CHECK_MSG(worst == 0 && um == 0 && uv == 0, "%s: AdamW differs from the torch replica", name);
        CHECK_MSG(worst_ema == 0, "%s: EMA differs from diffusers", name);
        CHECK_MSG(torch_rel <= 1e-6 && torch_ema_rel <= 1e-6, "%s: too far from torch.optim.AdamW", name);
        CHECK(opt.step == sd_json_int(c, "step_count", -1));
        free(p); free(grads); free(ref); free(ref_i); free(ref_m); free(ref_v); free(ref_ema);
        free(torch_m); free(torch_v); free(torch_ema);
        free(m); free(v); free(g); free(shadow);
        ncases++;
    }
    CHECK(ncases >= 5);
    sd_st_close(f);
    cJSON_Delete(j);
}

TEST(adamw_config_and_state) {
    sd_adamw opt;
    float m[4], v[4];
    sd_adamw_config c = sd_adamw_defaults();
    CHECK(c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-8 && c.weight_decay == 1e-2);
    c.beta1 = 1.0;
    CHECK_FAILS(sd_adamw_init(&opt, &c, 4, m, v), "beta1");
    c = sd_adamw_defaults();
    c.weight_decay = -1;
    CHECK_FAILS(sd_adamw_init(&opt, &c, 4, m, v), "weight_decay");
    c = sd_adamw_defaults();
    CHECK_OK(sd_adamw_init(&opt, &c, 4, m, v));
    CHECK(m[0] == 0 && v[3] == 0 && opt.step == 0);
    float p[4] = {1, -2, 3, 0.5f}, g[4] = {0.1f, 0.2f, -0.3f, 0};
    sd_adamw_step(&opt, p, g, 1e-3);
    sd_adamw_step(&opt, p, g, 1e-3);
    cJSON *j = sd_adamw_state_json(&opt);
    sd_adamw o2;
    float m2[4], v2[4];
    sd_adamw_config c2 = sd_adamw_defaults();
    c2.beta2 = 0.99; /* the checkpoint's hyperparameters win, as in torch */
    CHECK_OK(sd_adamw_init(&o2, &c2, 4, m2, v2));
    CHECK_OK(sd_adamw_load_state_json(&o2, j));
    CHECK(o2.step == 2 && o2.cfg.beta2 == 0.999 && o2.cfg.weight_decay == 1e-2);
    cJSON_ReplaceItemInObject(j, "step", cJSON_CreateNumber(-3));
    CHECK_FAILS(sd_adamw_load_state_json(&o2, j), "step");
    cJSON_Delete(j);
}

/* ------------------------------------------------------------------ clipping */

TEST(clip_grad_norm_matches_torch) {
    sd_st_file *f = NULL;
    cJSON *j = NULL;
    CHECK_OK(sd_st_open(gpath("clip.safetensors"), &f));
    CHECK_OK(sd_json_load(gpath("clip.json"), &j));
    if (!f || !j) return;
    const cJSON *sets = cJSON_GetObjectItem(j, "sets"), *c;
    int nsets = 0;
    cJSON_ArrayForEach(c, sets) {
        const char *name = c->string;
        char key[128];
        sd_segment segs[64];
        size_t n;
        int nseg = load_segments(cJSON_GetObjectItem(c, "segments"), segs, 64, &n);
        snprintf(key, sizeof key, "%s.in", name);
        float *g = gload(f, key, NULL);
        snprintf(key, sizeof key, "%s.out", name);
        float *want = gload(f, key, NULL);
        snprintf(key, sizeof key, "%s.total", name);
        float *want_total = gload(f, key, NULL);
        if (!g || !want || !want_total) return;
        float pre = sd_grad_total_norm(g, n, segs, nseg);
        float coef;
        float total = sd_clip_grad_norm(g, n, segs, nseg, sd_json_num(c, "max_norm", 1), &coef);
        size_t nbad;
        int64_t u = max_ulp(g, want, n, &nbad);
        printf("# clip %-11s n=%zu segs=%d total %.9g (torch %.9g) coef %.9g: grads max %lld ulp\n", name, n, nseg,
               total, want_total[0], coef, (long long)u);
        CHECK_MSG(ulp_diff(total, want_total[0]) == 0, "%s: total %.9g vs torch %.9g", name, total, want_total[0]);
        CHECK(ulp_diff(pre, total) == 0);
        CHECK_MSG(u == 0, "%s: %zu clipped grads differ", name, nbad);
        CHECK(isfinite(total) == sd_all_finite(want, n) || !strcmp(name, "huge"));
        free(g); free(want); free(want_total);
        nsets++;
    }
    CHECK(nsets >= 8);
    sd_st_close(f);
    cJSON_Delete(j);
}

/* The norm of an unsegmented buffer, and agreement with a double-precision
 * reference for sizes around every tail length. */
TEST(vector_norm_accuracy) {
    float x[300];
    for (int i = 0; i < 300; i++) x[i] = (float)((i * 37 % 101) - 50) / 7.0f;
    for (size_t n = 0; n <= 300; n += (n < 40 ? 1 : 13)) {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
        float r = sd_vector_norm2(x, n);
        CHECK_MSG(fabs(r - sqrt(s)) <= 4e-7 * sqrt(s), "n=%zu: %.9g vs %.9g", n, r, sqrt(s));
        sd_segment one = {0, n};
        CHECK(sd_grad_total_norm(x, n, NULL, 0) == r || n == 0);
        CHECK(n == 0 || sd_grad_total_norm(x, n, &one, 1) == r); /* norm of a single norm is itself */
    }
    float inf_buf[3] = {1, INFINITY, 2};
    CHECK(isinf(sd_vector_norm2(inf_buf, 3)));
    CHECK(!sd_all_finite(inf_buf, 3));
    CHECK(sd_all_finite(x, 300));
}

/* ------------------------------------------------------------------ LR schedules */

TEST(lr_schedules_match_diffusers) {
    cJSON *j = NULL;
    CHECK_OK(sd_json_load(gpath("sched.json"), &j));
    if (!j) return;
    int steps = sd_json_int(j, "steps", 0);
    const cJSON *c;
    int ncases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases")) {
        const char *name = sd_json_str(c, "name", "");
        sd_lr_kind kind;
        CHECK_OK(sd_lr_kind_parse(name, &kind));
        sd_lr_schedule s;
        double base = sd_json_num(c, "base_lr", 0);
        int W = sd_json_int(c, "warmup", 0), N = sd_json_int(c, "total", 0);
        CHECK_OK(sd_lr_schedule_init(&s, kind, base, W, N));
        const cJSON *nc = cJSON_GetObjectItem(c, "num_cycles"), *pw = cJSON_GetObjectItem(c, "power"),
                    *rules = cJSON_GetObjectItem(c, "step_rules");
        if (cJSON_IsNumber(nc)) s.num_cycles = nc->valuedouble;
        if (cJSON_IsNumber(pw)) s.power = pw->valuedouble;
        if (cJSON_IsString(rules)) CHECK_OK(sd_lr_schedule_set_rules(&s, rules->valuestring));
        CHECK_OK(sd_lr_schedule_check(&s));
        int bad = 0;
        for (int k = 0; k < steps; k++) {
            double want = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "lrs"), k)->valuedouble;
            double got = sd_lr_at(&s, k);
            if (got != want) {
                if (!bad) printf("# %s W=%d N=%d step %d: %.17g vs diffusers %.17g\n", name, W, N, k, got, want);
                bad++;
            }
        }
        CHECK_MSG(bad == 0, "%s (W=%d N=%d): %d of %d lr values differ", name, W, N, bad, steps);
        /* checkpoint round trip gives the same schedule */
        cJSON *sj = sd_lr_schedule_json(&s);
        sd_lr_schedule s2;
        CHECK_OK(sd_lr_schedule_from_json(&s2, sj));
        for (int k = 0; k < steps; k++) CHECK(sd_lr_at(&s2, k) == sd_lr_at(&s, k));
        cJSON_Delete(sj);
        ncases++;
    }
    printf("# %d schedules x %d steps compared\n", ncases, steps);
    CHECK(ncases >= 20);
    cJSON_Delete(j);
}

TEST(lr_schedule_errors) {
    sd_lr_kind k;
    CHECK_FAILS(sd_lr_kind_parse("cosine_annealing", &k), "unknown lr scheduler");
    sd_lr_schedule s;
    CHECK_FAILS(sd_lr_schedule_init(&s, SD_LR_POLYNOMIAL, 1e-8, 0, 10), "lr_end");
    CHECK_FAILS(sd_lr_schedule_init(&s, SD_LR_LINEAR, 1e-4, -1, 10), "warmup");
    CHECK_OK(sd_lr_schedule_init(&s, SD_LR_PIECEWISE_CONSTANT, 1e-4, 0, 10));
    CHECK_FAILS(sd_lr_schedule_check(&s), "step rules");
    CHECK_FAILS(sd_lr_schedule_set_rules(&s, "1:10,x:20,0.1"), "bad step rule");
    CHECK_FAILS(sd_lr_schedule_set_rules(&s, "1:10,0.5:2.5,0.1"), "bad step rule");
    CHECK_FAILS(sd_lr_schedule_set_rules(&s, "1:10,0.1,"), "bad step rule");
    /* a repeated step replaces the earlier multiplier (a Python dict) */
    CHECK_OK(sd_lr_schedule_set_rules(&s, "1:10,0.5:10,0.1"));
    CHECK(s.nrules == 1 && sd_lr_lambda(&s, 3) == 0.5 && sd_lr_lambda(&s, 10) == 0.1);
    /* polynomial with W == N: Python would divide by zero at s == N; we give lr_end */
    CHECK_OK(sd_lr_schedule_init(&s, SD_LR_POLYNOMIAL, 1e-4, 5, 5));
    CHECK(sd_lr_at(&s, 5) == 1e-4 * (1e-7 / 1e-4));
    /* warmup: the first update runs at lr 0, as in diffusers */
    CHECK_OK(sd_lr_schedule_init(&s, SD_LR_CONSTANT_WITH_WARMUP, 1e-4, 500, 0));
    CHECK(sd_lr_at(&s, 0) == 0 && sd_lr_at(&s, 250) == 1e-4 * 0.5 && sd_lr_at(&s, 500) == 1e-4);
}

/* ------------------------------------------------------------------ EMA */

TEST(ema_matches_diffusers) {
    sd_st_file *f = NULL;
    cJSON *j = NULL;
    CHECK_OK(sd_st_open(gpath("ema.safetensors"), &f));
    CHECK_OK(sd_json_load(gpath("ema.json"), &j));
    if (!f || !j) return;
    const cJSON *c;
    int ncfg = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "configs")) {
        const char *name = c->string;
        const cJSON *cfg = cJSON_GetObjectItem(c, "config");
        sd_ema e;
        sd_ema_init(&e);
        CHECK_OK(sd_ema_load_state_json(&e, cfg));
        e.foreach = cJSON_IsTrue(cJSON_GetObjectItem(cfg, "foreach"));
        char key[128];
        int64_t n;
        snprintf(key, sizeof key, "%s.params0", name);
        float *shadow = gload(f, key, &n);
        snprintf(key, sizeof key, "%s.params", name);
        float *params = gload(f, key, NULL);
        snprintf(key, sizeof key, "%s.shadow", name);
        float *want = gload(f, key, NULL);
        if (!shadow || !params || !want) return;
        const cJSON *decays = cJSON_GetObjectItem(c, "decays");
        int steps = cJSON_GetArraySize(decays);
        int64_t worst = 0;
        for (int s = 0; s < steps; s++) {
            double d = sd_ema_step(&e, shadow, params + (size_t)s * (size_t)n, (size_t)n);
            double wd = cJSON_GetArrayItem(decays, s)->valuedouble;
            CHECK_MSG(d == wd, "%s step %d: decay %.17g vs %.17g", name, s, d, wd);
            int64_t u = max_ulp(shadow, want + (size_t)s * (size_t)n, (size_t)n, NULL);
            if (u > worst) worst = u;
        }
        printf("# ema %-10s %d steps: shadow max %lld ulp\n", name, steps, (long long)worst);
        if (e.foreach) { /* the two forms really round differently */
            float *s2 = gload(f, "default.params0", NULL);
            float *p2 = gload(f, "default.params", NULL);
            if (s2 && p2) {
                float a[13], b[13];
                memcpy(a, s2, sizeof a);
                memcpy(b, s2, sizeof b);
                int differ = 0;
                for (int k = 0; k < 20; k++) {
                    sd_ema_update(a, p2 + (size_t)k * (size_t)n, 13, 0.9, 0);
                    sd_ema_update(b, p2 + (size_t)k * (size_t)n, 13, 0.9, 1);
                }
                for (int k = 0; k < 13; k++) differ += a[k] != b[k];
                CHECK(differ > 0);
            }
            free(s2);
            free(p2);
        }
        CHECK(worst == 0);
        const cJSON *ps = cJSON_GetObjectItem(c, "probe_steps"), *pd = cJSON_GetObjectItem(c, "probe_decays");
        for (int k = 0; k < cJSON_GetArraySize(ps); k++) {
            int64_t st = (int64_t)cJSON_GetArrayItem(ps, k)->valuedouble;
            double want_d = cJSON_GetArrayItem(pd, k)->valuedouble;
            CHECK_MSG(sd_ema_get_decay(&e, st) == want_d, "%s get_decay(%lld) = %.17g vs %.17g", name, (long long)st,
                      sd_ema_get_decay(&e, st), want_d);
        }
        /* state round trip */
        cJSON *sj = sd_ema_state_json(&e);
        sd_ema e2;
        sd_ema_init(&e2);
        CHECK_OK(sd_ema_load_state_json(&e2, sj));
        CHECK(e2.optimization_step == steps && e2.decay == e.decay && e2.use_ema_warmup == e.use_ema_warmup &&
              e2.power == e.power && e2.min_decay == e.min_decay && e2.update_after_step == e.update_after_step);
        cJSON_Delete(sj);
        free(shadow); free(params); free(want);
        ncfg++;
    }
    CHECK(ncfg == 5);
    sd_ema e;
    sd_ema_init(&e);
    cJSON *bad = cJSON_Parse("{\"decay\": 1.5}");
    CHECK_FAILS(sd_ema_load_state_json(&e, bad), "decay");
    cJSON_Delete(bad);
    sd_st_close(f);
    cJSON_Delete(j);
}

/* ------------------------------------------------------------------ losses */

static void formula_input(float *x, size_t n, int64_t mult, double shift) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((double)(((int64_t)i * mult) % 10007) / 10007.0 - 0.5 + shift);
}

TEST(losses_match_torch) {
    sd_st_file *f = NULL;
    cJSON *j = NULL;
    CHECK_OK(sd_st_open(gpath("loss.safetensors"), &f));
    CHECK_OK(sd_json_load(gpath("loss.json"), &j));
    if (!f || !j) return;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases")) {
        const char *name = c->string;
        const cJSON *shape = cJSON_GetObjectItem(c, "shape");
        int B = cJSON_GetArrayItem(shape, 0)->valueint;
        size_t per = 1;
        for (int k = 1; k < cJSON_GetArraySize(shape); k++) per *= (size_t)cJSON_GetArrayItem(shape, k)->valueint;
        size_t n = (size_t)B * per;
        char key[128];
        int big = !strcmp(name, "big");
        float *pred, *target, *want_g = NULL, *want_sg = NULL;
        if (big) {
            pred = sd_xmalloc(n * sizeof(float));
            target = sd_xmalloc(n * sizeof(float));
            formula_input(pred, n, 7919, 0.0);
            formula_input(target, n, 104729, 0.25);
        } else {
            snprintf(key, sizeof key, "%s.pred", name);
            pred = gload(f, key, NULL);
            snprintf(key, sizeof key, "%s.target", name);
            target = gload(f, key, NULL);
            snprintf(key, sizeof key, "%s.grad", name);
            want_g = gload(f, key, NULL);
            snprintf(key, sizeof key, "%s.snr_grad", name);
            want_sg = gload(f, key, NULL);
        }
        snprintf(key, sizeof key, "%s.w", name);
        float *w = gload(f, key, NULL);
        snprintf(key, sizeof key, "%s.loss", name);
        float *want_l = gload(f, key, NULL);
        snprintf(key, sizeof key, "%s.snr_loss", name);
        float *want_sl = gload(f, key, NULL);
        if (!pred || !target || !w || !want_l || !want_sl) return;
        float *g = sd_xmalloc(n * sizeof(float));
        float l = sd_mse_loss(pred, target, n, g);
        int64_t ul = ulp_diff(l, want_l[0]), ug = want_g ? max_ulp(g, want_g, n, NULL) : 0;
        float sl = sd_mse_loss_weighted(pred, target, B, per, w, g);
        int64_t usl = ulp_diff(sl, want_sl[0]), usg = want_sg ? max_ulp(g, want_sg, n, NULL) : 0;
        printf("# loss %-5s n=%zu: mse %.9g (torch %.9g, %lld ulp) grad %lld ulp; min-snr %.9g (torch %.9g, %lld ulp) "
               "grad %lld ulp\n",
               name, n, l, want_l[0], (long long)ul, (long long)ug, sl, want_sl[0], (long long)usl, (long long)usg);
        CHECK(ul <= 2 && usl <= 2);
        CHECK(ug == 0 && usg == 0);
        /* the unweighted loss is the weighted one with w = 1 */
        float *ones = sd_xmalloc(sizeof(float) * (size_t)B);
        for (int b = 0; b < B; b++) ones[b] = 1.0f;
        CHECK(ulp_diff(sd_mse_loss_weighted(pred, target, B, per, ones, NULL), l) <= 2);
        free(ones);
        free(pred); free(target); free(want_g); free(want_sg); free(w); free(want_l); free(want_sl); free(g);
    }
    sd_st_close(f);
    cJSON_Delete(j);
}

/* ------------------------------------------------------------------ loss scaler */

TEST(loss_scaler_matches_torch) {
    cJSON *j = NULL;
    CHECK_OK(sd_json_load(gpath("scaler.json"), &j));
    if (!j) return;
    sd_loss_scaler s;
    sd_loss_scaler_init(&s);
    CHECK(s.scale == 65536.0f && s.growth_interval == 2000 && sd_loss_scaler_factor(&s) == 65536.0f);
    s.growth_interval = sd_json_int(j, "growth_interval", 0);
    const cJSON *st;
    int k = 0;
    cJSON_ArrayForEach(st, cJSON_GetObjectItem(j, "seq")) {
        float g[4], want[4];
        for (int i = 0; i < 4; i++) {
            g[i] = (float)jnum(cJSON_GetArrayItem(cJSON_GetObjectItem(st, "grad"), i));
            want[i] = (float)jnum(cJSON_GetArrayItem(cJSON_GetObjectItem(st, "unscaled"), i));
        }
        CHECK(s.scale == (float)sd_json_num(st, "scale_before", 0));
        int found = sd_loss_scaler_unscale(&s, g, 4);
        CHECK_MSG(found == sd_json_int(st, "bad", -1), "step %d: found_inf %d", k, found);
        CHECK_MSG(max_ulp(g, want, 4, NULL) == 0, "step %d: unscaled grads differ", k);
        sd_loss_scaler_update(&s, found);
        CHECK_MSG(s.scale == (float)sd_json_num(st, "scale_after", 0), "step %d: scale %g", k, s.scale);
        CHECK(s.growth_tracker == sd_json_int(st, "growth_tracker", -1));
        k++;
    }
    CHECK(k >= 10);
    /* no growth past float's range */
    s.scale = 3e38f;
    s.growth_tracker = s.growth_interval - 1;
    sd_loss_scaler_update(&s, 0);
    CHECK(s.scale == 3e38f && s.growth_tracker == 0);
    /* state round trip; disabled scaler only checks */
    cJSON *sj = sd_loss_scaler_state_json(&s);
    sd_loss_scaler s2;
    sd_loss_scaler_init(&s2);
    CHECK_OK(sd_loss_scaler_load_state_json(&s2, sj));
    CHECK(s2.scale == s.scale && s2.growth_interval == s.growth_interval && s2.enabled);
    cJSON_Delete(sj);
    s2.enabled = 0;
    float g[2] = {3.0f, NAN};
    CHECK(sd_loss_scaler_unscale(&s2, g, 2) == 1 && g[0] == 3.0f && sd_loss_scaler_factor(&s2) == 1.0f);
    cJSON_Delete(j);
}

int main(void) {
    const char *root = getenv("SD_ROOT");
    snprintf(golden_dir, sizeof golden_dir, "%s/tests/ref/golden/train", root && *root ? root : ".");
    RUN(adamw_matches_torch);
    RUN(adamw_config_and_state);
    RUN(clip_grad_norm_matches_torch);
    RUN(vector_norm_accuracy);
    RUN(lr_schedules_match_diffusers);
    RUN(lr_schedule_errors);
    RUN(ema_matches_diffusers);
    RUN(losses_match_torch);
    RUN(loss_scaler_matches_torch);
    return test_summary();
}
