/* test_txt2img.c — lib/sample/txt2img.c through its API (sdsample's CLI is
 * tested in tests/py/test_sdsample.py on all golden cases).
 *
 * Models: the tiny pipelines of tests/fixtures/make_tiny_model.py, regenerated
 * at test time ($SD_PY). Goldens: tests/ref/golden/sdsample/ from
 * tests/ref/gen_sdsample.py — diffusers' StableDiffusionPipeline fed the
 * Philox noise sdtools draws (re-implemented there in numpy).
 *
 * Tolerances: final latents max|x - ref| / max|ref| <= 1e-3 (the bar;
 * measured ~1e-5: fp32 summation order in the networks only), pixels <= 2
 * levels (measured: at most 1, on a handful of pixels at rounding boundaries).
 */
#include "core/fs.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/modeldir.h"
#include "sample/txt2img.h"
#include "test.h"

#include <stdarg.h>

#define LAT_TOL 1e-3
#define PX_TOL 2

static const char *tmp;
static sd_backend *be;
static sd_st_file *gold;
static cJSON *cases;

static const char *python(void) {
    const char *p = getenv("SD_PY");
    return p && *p ? p : ".venv-test/bin/python";
}

/* A loaded tiny pipeline. */
typedef struct {
    sd_model *m;
    sd_unet *unet;
    sd_vae *vae;
    sd_clip_text *te;
    sd_clip_tokenizer *tok;
    sd_sched_config scfg;
    sd_pipeline p;
} pipe_t;

static int load_pipe(const char *name, pipe_t *pp) {
    memset(pp, 0, sizeof *pp);
    char dir[600], cmd[1400];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    if (!sd_is_dir(dir)) {
        snprintf(cmd, sizeof cmd, "%s tests/fixtures/make_tiny_model.py --config %s %s --force >/dev/null", python(),
                 name, dir);
        if (system(cmd)) {
            printf("# failed: %s\n", cmd);
            return -1;
        }
    }
    if (sd_model_open(dir, NULL, &pp->m) || sd_unet_load(pp->m, be, &pp->unet) || sd_vae_load(pp->m, be, &pp->vae) ||
        sd_clip_text_load(pp->m, be, &pp->te) || sd_clip_tokenizer_load(pp->m->tokenizer_dir, &pp->tok) ||
        sd_sched_config_from_json(pp->m->scheduler.raw, &pp->scfg)) {
        printf("# %s: %s\n", name, sd_last_error());
        return -1;
    }
    pp->p = (sd_pipeline){be, pp->unet, pp->vae, pp->te, pp->tok, &pp->scfg};
    return 0;
}

static void free_pipe(pipe_t *pp) {
    sd_unet_free(pp->unet);
    sd_vae_free(pp->vae);
    sd_clip_text_free(pp->te);
    sd_clip_tokenizer_free(pp->tok);
    sd_sched_config_free(&pp->scfg);
    if (pp->m) sd_model_close(pp->m);
}

static pipe_t sd1, sd2;

static const cJSON *find_case(const char *id) {
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cases, "cases")) if (!strcmp(sd_json_str(c, "id", ""), id)) return c;
    printf("# golden case %s missing\n", id);
    return NULL;
}

/* golden tensor ID.WHAT as f32 (uint8 images are converted too); malloc'ed */
static float *gtensor(const char *id, const char *what, size_t *n) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s", id, what);
    const sd_st_tensor *t = sd_st_find(gold, name);
    if (!t) {
        printf("# golden lacks %s\n", name);
        return NULL;
    }
    float *b = malloc(sizeof(float) * (size_t)t->numel);
    if (t->dtype == SD_U8) {
        uint8_t *u = malloc((size_t)t->numel);
        sd_st_read_raw(gold, t, u);
        for (int64_t k = 0; k < t->numel; k++) b[k] = u[k];
        free(u);
    } else if (sd_st_read_f32(gold, t, b)) {
        free(b);
        return NULL;
    }
    *n = (size_t)t->numel;
    return b;
}

static void opts_from_case(const cJSON *c, sd_txt2img_opts *o) {
    memset(o, 0, sizeof *o);
    const cJSON *pr = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "prompts"), 0);
    o->prompt = pr->valuestring;
    o->negative_prompt = sd_json_str(c, "negative_prompt", "");
    const cJSON *s = cJSON_GetObjectItem(c, "scheduler");
    o->scheduler = cJSON_IsString(s) ? s->valuestring : NULL;
    o->steps = sd_json_int(c, "steps", 0);
    o->guidance_scale = (float)sd_json_num(c, "guidance_scale", 0);
    o->guidance_rescale = (float)sd_json_num(c, "guidance_rescale", 0);
    o->eta = (float)sd_json_num(c, "eta", 0);
    o->height = sd_json_int(c, "height_arg", 0);
    o->width = sd_json_int(c, "width_arg", 0);
    o->clip_skip = sd_json_int(c, "clip_skip", 0);
    o->seed = (uint64_t)sd_json_num(c, "seed", 0);
}

/* Compare n rendered images + latents with the golden of case id. */
static void compare(const char *id, int n, const sd_image *im, const float *lat) {
    size_t nl, ni;
    float *rl = gtensor(id, "latents", &nl), *ri = gtensor(id, "image", &ni);
    CHECK(rl && ri);
    if (!rl || !ri) goto out;
    size_t per_l = nl / (size_t)n, per_i = ni / (size_t)n;
    double lat_err = 0;
    int px = 0;
    for (int k = 0; k < n; k++) {
        CHECK((size_t)im[k].w * im[k].h * 3 == per_i);
        if ((size_t)im[k].w * im[k].h * 3 != per_i) goto out;
        double m = 0, r = 0;
        for (size_t e = 0; e < per_l; e++) {
            double d = fabs((double)lat[k * per_l + e] - rl[k * per_l + e]);
            if (d > m || d != d) m = d;
            if (fabs(rl[k * per_l + e]) > r) r = fabs(rl[k * per_l + e]);
        }
        if (m / r > lat_err || m != m) lat_err = m / r;
        for (size_t e = 0; e < per_i; e++) {
            int d = abs((int)im[k].data[e] - (int)ri[k * per_i + e]);
            if (d > px) px = d;
        }
    }
    printf("# %s: latents rel err %.1e, pixels max diff %d\n", id, lat_err, px);
    CHECK_MSG(lat_err <= LAT_TOL, "%s latents rel err %.3g", id, lat_err);
    CHECK_MSG(px <= PX_TOL, "%s pixels max diff %d", id, px);
out:
    free(rl);
    free(ri);
}

/* ---- the starting noise is the Philox stream of the spec ---------------- */
TEST(noise_matches_spec) {
    size_t n;
    float *ref = gtensor("sd1_default", "init", &n); /* numpy Philox of seed 11, [1, 4, 32, 32] */
    CHECK(ref && n == 4 * 32 * 32);
    if (!ref) return;
    float *z = malloc(sizeof(float) * n);
    sd_txt2img_noise(11, 4, 32, 32, z);
    int ulp1 = 0, worse = 0;
    for (size_t k = 0; k < n; k++) {
        if (z[k] == ref[k]) continue;
        if (fabsf(z[k] - ref[k]) <= fabsf(nextafterf(ref[k], INFINITY) - ref[k])) ulp1++;
        else worse++;
    }
    printf("# noise: %d of %zu values 1 ulp apart (libm vs numpy), %d more\n", ulp1, n, worse);
    CHECK(worse == 0);
    /* the step stream is another stream of the same key */
    float *s0 = malloc(sizeof(float) * n), *s1 = malloc(sizeof(float) * n), *r = malloc(sizeof(float) * n);
    sd_txt2img_step_noise(11, 0, 4, 32, 32, s0);
    sd_txt2img_step_noise(11, 1, 4, 32, 32, s1);
    sd_rng_normal_at(11, SD_TXT2IMG_STEP_STREAM + 1, 0, r, n);
    CHECK(!memcmp(s1, r, sizeof(float) * n));
    CHECK(memcmp(s0, s1, sizeof(float) * n) && memcmp(s0, z, sizeof(float) * n));
    free(z), free(ref), free(s0), free(s1), free(r);
}

/* ---- parity through the library ------------------------------------------ */
static void run_case(pipe_t *pp, const char *id) {
    const cJSON *c = find_case(id);
    if (!c) { CHECK(0); return; }
    sd_txt2img_opts o;
    opts_from_case(c, &o);
    int n = sd_json_int(c, "n", 1);
    int H = sd_json_int(c, "height", 0), W = sd_json_int(c, "width", 0), f = pp->vae->factor;
    size_t per = (size_t)4 * (H / f) * (W / f);
    sd_image *im = calloc((size_t)n, sizeof *im);
    float *lat = malloc(sizeof(float) * per * (size_t)n);
    CHECK_OK(sd_txt2img(&pp->p, &o, n, im, lat));
    compare(id, n, im, lat);
    for (int k = 0; k < n; k++) sd_image_free(&im[k]);
    free(im);
    free(lat);
}

TEST(parity_sd1_pndm_cfg) { run_case(&sd1, "sd1_default"); }
TEST(parity_sd1_euler_a) { run_case(&sd1, "sd1_euler_a"); }
TEST(parity_sd1_pndm_nocfg) { run_case(&sd1, "sd1_pndm_nocfg"); }
TEST(parity_sd2_vpred_ddim) { run_case(&sd2, "sd2_default"); }
/* two images, negative prompt, guidance_rescale, clip_skip 2, eta, 40x24 */
TEST(parity_sd2_nonsquare_options) { run_case(&sd2, "sd2_nonsquare"); }

/* two prompts x two images in one call: sd_txt2img_batch */
TEST(parity_batch_two_prompts) {
    const cJSON *c = find_case("sd1_multi_nonsquare");
    if (!c) { CHECK(0); return; }
    sd_txt2img_opts o;
    opts_from_case(c, &o);
    const cJSON *ps = cJSON_GetObjectItem(c, "prompts");
    const char *prompts[4];
    uint64_t seeds[4];
    for (int k = 0; k < 4; k++) {
        prompts[k] = cJSON_GetArrayItem(ps, k / 2)->valuestring;
        seeds[k] = o.seed + (uint64_t)k;
    }
    sd_image im[4];
    float *lat = malloc(sizeof(float) * 4 * 4 * 24 * 40);
    o.seed = 12345; /* ignored: seeds[] given */
    CHECK_OK(sd_txt2img_batch(&sd1.p, &o, 4, prompts, NULL, seeds, im, lat));
    compare("sd1_multi_nonsquare", 4, im, lat);
    for (int k = 0; k < 4; k++) sd_image_free(&im[k]);
    free(lat);
}

/* init_latents = the seed's noise gives the same bytes; another noise does not */
static int count_steps(void *user, int step, int nsteps) {
    int *c = user;
    c[0]++;
    c[1] = nsteps;
    return step == c[2] ? 1 : 0; /* abort after step c[2] (0 = never) */
}

TEST(init_latents_and_callback) {
    sd_txt2img_opts o = {0};
    o.prompt = "a cat";
    o.steps = 3;
    o.guidance_scale = 7.5f;
    o.height = o.width = 16;
    o.seed = 77;
    int cnt[3] = {0, 0, 0};
    o.on_step = count_steps;
    o.user = cnt;
    sd_image a, b;
    CHECK_OK(sd_txt2img(&sd1.p, &o, 1, &a, NULL));
    CHECK(cnt[0] == 4 && cnt[1] == 4); /* PLMS: steps + 1 model calls */
    float noise[4 * 8 * 8];
    sd_txt2img_noise(77, 4, 8, 8, noise);
    o.init_latents = noise;
    o.seed = 78; /* PNDM draws no step noise: the seed no longer matters */
    CHECK_OK(sd_txt2img(&sd1.p, &o, 1, &b, NULL));
    CHECK(a.w == 16 && a.h == 16 && a.c == 3 && !memcmp(a.data, b.data, 16 * 16 * 3));
    sd_image_free(&b);
    noise[5] += 1.0f;
    CHECK_OK(sd_txt2img(&sd1.p, &o, 1, &b, NULL));
    CHECK(memcmp(a.data, b.data, 16 * 16 * 3));
    sd_image_free(&a);
    sd_image_free(&b);
    /* abort from the callback */
    cnt[0] = 0, cnt[2] = 2;
    o.init_latents = NULL; /* (it holds one image's noise) */
    sd_image c[2] = {{0}};
    CHECK_FAILS(sd_txt2img(&sd1.p, &o, 2, c, NULL), "interrupted");
    CHECK(cnt[0] == 2 && !c[0].data && !c[1].data);
}

/* an image depends on its seed only, not on the batch around it */
TEST(batch_independence) {
    sd_txt2img_opts o = {0};
    o.prompt = "a cat";
    o.steps = 2;
    o.guidance_scale = 5.0f;
    o.height = o.width = 16;
    o.seed = 500;
    o.scheduler = "euler_a"; /* stochastic: per-image step noise */
    sd_image three[3], one;
    float lat3[3 * 4 * 8 * 8], lat1[4 * 8 * 8];
    CHECK_OK(sd_txt2img(&sd1.p, &o, 3, three, lat3));
    o.seed = 502;
    CHECK_OK(sd_txt2img(&sd1.p, &o, 1, &one, lat1));
    double m = 0, r = 0;
    for (int e = 0; e < 4 * 8 * 8; e++) {
        m = fmax(m, fabs(lat1[e] - lat3[2 * 256 + e]));
        r = fmax(r, fabs(lat3[2 * 256 + e]));
    }
    printf("# image 2 of a batch of 3 vs alone: latents max rel diff %.1e\n", m / r);
    CHECK(m / r <= 1e-5);
    for (int k = 0; k < 3; k++) sd_image_free(&three[k]);
    sd_image_free(&one);
}

TEST(errors) {
    sd_txt2img_opts o = {0};
    o.prompt = "x";
    o.steps = 1;
    o.guidance_scale = 7.5f;
    sd_image im = {0};
    o.steps = 0;
    CHECK_FAILS(sd_txt2img(&sd1.p, &o, 1, &im, NULL), "num_inference_steps");
    o.steps = 1;
    o.height = 15, o.width = 16;
    CHECK_FAILS(sd_txt2img(&sd1.p, &o, 1, &im, NULL), "not a multiple of the VAE's factor 2");
    o.height = 16, o.width = SD_TXT2IMG_MAX_SIDE + 2;
    CHECK_FAILS(sd_txt2img(&sd1.p, &o, 1, &im, NULL), "too large");
    o.width = 16;
    o.clip_skip = 6;
    CHECK_FAILS(sd_txt2img(&sd1.p, &o, 1, &im, NULL), "clip_skip 6");
    o.clip_skip = 0;
    o.scheduler = "lms";
    CHECK_FAILS(sd_txt2img(&sd1.p, &o, 1, &im, NULL), "unknown scheduler");
    o.scheduler = NULL;
    o.prompt = NULL;
    CHECK_FAILS(sd_txt2img(&sd1.p, &o, 1, &im, NULL), "no prompt");
    o.prompt = "\xff";
    CHECK_FAILS(sd_txt2img(&sd1.p, &o, 1, &im, NULL), "UTF-8");
    o.prompt = "x";
    /* parts that do not fit: sd1-tiny's UNet (cross_attention_dim 32) with sd1-micro's text encoder (16) */
    pipe_t micro;
    if (load_pipe("sd1-micro", &micro) == 0) {
        sd_pipeline bad = sd1.p;
        bad.te = micro.te;
        CHECK_FAILS(sd_txt2img(&bad, &o, 1, &im, NULL), "cross_attention_dim 32 does not match");
        bad = sd1.p;
        bad.vae = NULL;
        CHECK_FAILS(sd_txt2img(&bad, &o, 1, &im, NULL), "incomplete pipeline");
    } else {
        CHECK(0);
    }
    free_pipe(&micro);
    CHECK(!im.data);
    int H = 0, W = 0;
    CHECK_OK(sd_txt2img_size(&sd1.p, &H, &W));
    CHECK(H == 64 && W == 64);
}

int main(void) {
    tmp = test_tmpdir();
    be = sd_backend_cpu_create(0);
    if (sd_st_open("tests/ref/golden/sdsample/golden.safetensors", &gold) ||
        sd_json_load("tests/ref/golden/sdsample/cases.json", &cases) || load_pipe("sd1-tiny", &sd1) ||
        load_pipe("sd2-tiny", &sd2)) {
        printf("not ok 1 - setup: %s\n", sd_last_error());
        return 1;
    }
    RUN(noise_matches_spec);
    RUN(parity_sd1_pndm_cfg);
    RUN(parity_sd1_euler_a);
    RUN(parity_sd1_pndm_nocfg);
    RUN(parity_sd2_vpred_ddim);
    RUN(parity_sd2_nonsquare_options);
    RUN(parity_batch_two_prompts);
    RUN(init_latents_and_callback);
    RUN(batch_independence);
    RUN(errors);
    free_pipe(&sd1);
    free_pipe(&sd2);
    sd_st_close(gold);
    cJSON_Delete(cases);
    sd_backend_destroy(be);
    sd_rm_rf(tmp);
    return test_summary();
}
