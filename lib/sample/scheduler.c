/* scheduler.c — diffusers' DDPM, DDIM, PNDM, Euler, Euler-ancestral and
 * DPM-Solver++ multistep schedulers as flat-buffer math (see scheduler.h).
 *
 * Reading guide: every formula is written in the order torch evaluates it,
 * one fp32 rounding per torch op, because parity is checked against diffusers
 * to ~1e-6 relative. Python-side arithmetic (numpy float64: timestep tables,
 * interpolation, Karras sigmas) is done in double and rounded where diffusers
 * casts to float32. References are to diffusers 0.39.0
 * src/diffusers/schedulers/scheduling_*.py.
 */

/* torch rounds every elementwise product and sum separately; a fused
 * multiply-add here would differ from it in the last bit. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "sample/scheduler.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "core/error.h"
#include "io/json.h"

/* ---- config ------------------------------------------------------------- */

static void set_str(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src);
}

void sd_sched_config_init(sd_sched_config *c) {
    memset(c, 0, sizeof *c);
    c->num_train_timesteps = 1000;
    c->beta_start = 0.0001;
    c->beta_end = 0.02;
    set_str(c->beta_schedule, sizeof c->beta_schedule, "linear");
    set_str(c->prediction_type, sizeof c->prediction_type, "epsilon");
    c->clip_sample = -1;
    c->clip_sample_range = 1.0;
    c->set_alpha_to_one = -1;
    set_str(c->variance_type, sizeof c->variance_type, "fixed_small");
    c->sigma_min = NAN;
    c->sigma_max = NAN;
    set_str(c->final_sigmas_type, sizeof c->final_sigmas_type, "zero");
    set_str(c->interpolation_type, sizeof c->interpolation_type, "linear");
    set_str(c->timestep_type, sizeof c->timestep_type, "discrete");
    c->solver_order = 2;
    set_str(c->algorithm_type, sizeof c->algorithm_type, "dpmsolver++");
    set_str(c->solver_type, sizeof c->solver_type, "midpoint");
    c->lower_order_final = 1;
    c->lambda_min_clipped = -INFINITY;
}

void sd_sched_config_free(sd_sched_config *c) {
    if (!c) return;
    free(c->trained_betas);
    c->trained_betas = NULL;
    c->n_trained_betas = 0;
}

/* Strict typed readers: absent or null keeps the default. */
static const cJSON *cfg_item(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}
static int cfg_num(const cJSON *o, const char *key, double *dst) {
    const cJSON *v = cfg_item(o, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v)) return sd_set_error("scheduler config: \"%s\" must be a number", key);
    *dst = v->valuedouble;
    return 0;
}
static int cfg_int(const cJSON *o, const char *key, int *dst) {
    const cJSON *v = cfg_item(o, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9)
        return sd_set_error("scheduler config: \"%s\" must be an integer", key);
    *dst = (int)v->valuedouble;
    return 0;
}
static int cfg_bool(const cJSON *o, const char *key, int *dst) {
    const cJSON *v = cfg_item(o, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return sd_set_error("scheduler config: \"%s\" must be true or false", key);
    *dst = cJSON_IsTrue(v) ? 1 : 0;
    return 0;
}
static int cfg_str(const cJSON *o, const char *key, char *dst, size_t cap) {
    const cJSON *v = cfg_item(o, key);
    if (!v) return 0;
    if (!cJSON_IsString(v)) return sd_set_error("scheduler config: \"%s\" must be a string", key);
    if (strlen(v->valuestring) >= cap)
        return sd_set_error("scheduler config: \"%s\" value \"%.40s...\" is too long", key, v->valuestring);
    set_str(dst, cap, v->valuestring);
    return 0;
}

int sd_sched_config_from_json(const cJSON *o, sd_sched_config *c) {
    sd_sched_config_init(c);
    if (!cJSON_IsObject(o)) return sd_set_error("scheduler config: not a JSON object");
    int rc = 0;
    rc |= cfg_str(o, "_class_name", c->class_name, sizeof c->class_name);
    rc |= cfg_int(o, "num_train_timesteps", &c->num_train_timesteps);
    rc |= cfg_num(o, "beta_start", &c->beta_start);
    rc |= cfg_num(o, "beta_end", &c->beta_end);
    rc |= cfg_str(o, "beta_schedule", c->beta_schedule, sizeof c->beta_schedule);
    rc |= cfg_str(o, "prediction_type", c->prediction_type, sizeof c->prediction_type);
    rc |= cfg_str(o, "timestep_spacing", c->timestep_spacing, sizeof c->timestep_spacing);
    rc |= cfg_int(o, "steps_offset", &c->steps_offset);
    rc |= cfg_bool(o, "clip_sample", &c->clip_sample);
    rc |= cfg_num(o, "clip_sample_range", &c->clip_sample_range);
    rc |= cfg_bool(o, "set_alpha_to_one", &c->set_alpha_to_one);
    rc |= cfg_bool(o, "skip_prk_steps", &c->skip_prk_steps);
    rc |= cfg_bool(o, "rescale_betas_zero_snr", &c->rescale_betas_zero_snr);
    rc |= cfg_bool(o, "thresholding", &c->thresholding);
    rc |= cfg_str(o, "variance_type", c->variance_type, sizeof c->variance_type);
    rc |= cfg_bool(o, "use_karras_sigmas", &c->use_karras_sigmas);
    rc |= cfg_num(o, "sigma_min", &c->sigma_min);
    rc |= cfg_num(o, "sigma_max", &c->sigma_max);
    rc |= cfg_str(o, "final_sigmas_type", c->final_sigmas_type, sizeof c->final_sigmas_type);
    rc |= cfg_str(o, "interpolation_type", c->interpolation_type, sizeof c->interpolation_type);
    rc |= cfg_str(o, "timestep_type", c->timestep_type, sizeof c->timestep_type);
    rc |= cfg_int(o, "solver_order", &c->solver_order);
    rc |= cfg_str(o, "algorithm_type", c->algorithm_type, sizeof c->algorithm_type);
    rc |= cfg_str(o, "solver_type", c->solver_type, sizeof c->solver_type);
    rc |= cfg_bool(o, "lower_order_final", &c->lower_order_final);
    rc |= cfg_bool(o, "euler_at_final", &c->euler_at_final);
    rc |= cfg_num(o, "lambda_min_clipped", &c->lambda_min_clipped);
    rc |= cfg_bool(o, "use_exponential_sigmas", &c->use_exponential_sigmas);
    rc |= cfg_bool(o, "use_beta_sigmas", &c->use_beta_sigmas);
    rc |= cfg_bool(o, "use_lu_lambdas", &c->use_lu_lambdas);
    rc |= cfg_bool(o, "use_flow_sigmas", &c->use_flow_sigmas);
    if (rc) return -1;
    const cJSON *tb = cfg_item(o, "trained_betas");
    if (tb) {
        int n = cJSON_GetArraySize(tb);
        if (!cJSON_IsArray(tb) || n < 1 || n > 1000000)
            return sd_set_error("scheduler config: \"trained_betas\" must be a non-empty array of numbers");
        c->trained_betas = sd_xmalloc((size_t)n * sizeof(float));
        c->n_trained_betas = n;
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, tb) {
            if (!cJSON_IsNumber(e)) {
                sd_sched_config_free(c);
                return sd_set_error("scheduler config: \"trained_betas\"[%d] is not a number", i);
            }
            c->trained_betas[i++] = (float)e->valuedouble; /* torch.tensor(list, float32) */
        }
    }
    return 0;
}

int sd_sched_config_load(const char *path, sd_sched_config *c) {
    cJSON *j = NULL;
    if (sd_json_load(path, &j)) return -1;
    int rc = sd_sched_config_from_json(j, c);
    cJSON_Delete(j);
    if (rc) return sd_error_prefix("%s", path);
    return 0;
}

/* ---- names -------------------------------------------------------------- */

static const char *kind_names[] = {"DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "EulerDiscreteScheduler",
                                   "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler"};

const char *sd_sched_kind_name(sd_sched_kind k) {
    return (unsigned)k < sizeof kind_names / sizeof *kind_names ? kind_names[k] : "?";
}

/* Parse name into kind + overrides. Returns 0 or -1 (unknown name). */
static int parse_name(const char *name, sd_sched_kind *kind, int *karras, const char **algo, int *order) {
    *karras = 0;
    *algo = NULL;
    *order = 0;
    for (int k = 0; k < 6; k++)
        if (!strcmp(name, kind_names[k])) {
            *kind = (sd_sched_kind)k;
            return 0;
        }
    char buf[64];
    size_t L = strlen(name);
    if (L >= sizeof buf) return -1;
    for (size_t i = 0; i <= L; i++) buf[i] = name[i] == '_' ? '-' : (char)tolower((unsigned char)name[i]);
    size_t bl = strlen(buf);
    if (bl > 7 && !strcmp(buf + bl - 7, "-karras")) {
        *karras = 1;
        buf[bl - 7] = 0;
    }
    if (!strcmp(buf, "ddpm")) *kind = SD_SCHED_DDPM;
    else if (!strcmp(buf, "ddim")) *kind = SD_SCHED_DDIM;
    else if (!strcmp(buf, "pndm")) *kind = SD_SCHED_PNDM;
    else if (!strcmp(buf, "euler")) *kind = SD_SCHED_EULER;
    else if (!strcmp(buf, "euler-a") || !strcmp(buf, "euler-ancestral")) *kind = SD_SCHED_EULER_A;
    else if (!strcmp(buf, "dpm++2m") || !strcmp(buf, "dpmpp2m") || !strcmp(buf, "dpmpp-2m")) {
        *kind = SD_SCHED_DPM;
        *algo = "dpmsolver++";
        *order = 2;
    } else if (!strcmp(buf, "dpm++2m-sde") || !strcmp(buf, "dpmpp2m-sde") || !strcmp(buf, "dpmpp-2m-sde")) {
        *kind = SD_SCHED_DPM;
        *algo = "sde-dpmsolver++";
        *order = 2;
    } else
        return -1;
    if (*karras && *kind != SD_SCHED_EULER && *kind != SD_SCHED_DPM) return -1;
    return 0;
}

/* ---- noise schedule ------------------------------------------------------ */

/* torch.linspace(start, end, steps, dtype=float32) on CPU: step in fp32, the
 * first half start + step*i and the second half end - step*(steps-1-i), each
 * evaluated as one fused multiply-add (ATen's kernel is compiled with FMA
 * contraction; verified bit-exact against torch 2.15). */
static void torch_linspace_f32(double start_d, double end_d, int steps, float *out) {
    float start = (float)start_d, end = (float)end_d;
    if (steps == 1) {
        out[0] = start;
        return;
    }
    float step = (end - start) / (float)(steps - 1);
    int halfway = steps / 2;
    for (int i = 0; i < steps; i++)
        out[i] = i < halfway ? fmaf(step, (float)i, start) : fmaf(-step, (float)(steps - 1 - i), end);
}

/* betas_for_alpha_bar(T, max_beta=0.999, "cosine"): Python floats (libm). */
static void betas_cosine(int T, float *out) {
    for (int i = 0; i < T; i++) {
        double t1 = (double)i / T, t2 = (double)(i + 1) / T;
        double a1 = pow(cos((t1 + 0.008) / 1.008 * M_PI / 2), 2);
        double a2 = pow(cos((t2 + 0.008) / 1.008 * M_PI / 2), 2);
        double b = 1 - a2 / a1;
        out[i] = (float)(b < 0.999 ? b : 0.999);
    }
}

/* torch.cumprod on CPU accumulates fp32 in double (acc_type<float> = double)
 * and rounds each output. */
static void cumprod_f32(const float *a, int T, float *out) {
    double acc = 1.0;
    for (int i = 0; i < T; i++) {
        acc *= (double)a[i];
        out[i] = (float)acc;
    }
}

/* rescale_zero_terminal_snr(betas), fp32 torch ops. */
static void rescale_zero_snr(float *betas, int T) {
    float *ab = sd_xmalloc((size_t)T * sizeof(float));
    float *sq = sd_xmalloc((size_t)T * sizeof(float));
    for (int i = 0; i < T; i++) ab[i] = 1.0f - betas[i];
    cumprod_f32(ab, T, ab);
    for (int i = 0; i < T; i++) sq[i] = sqrtf(ab[i]);
    float s0 = sq[0], sT = sq[T - 1];
    float scale = s0 / (s0 - sT);
    for (int i = 0; i < T; i++) {
        sq[i] = sq[i] - sT;
        sq[i] = sq[i] * scale;
        ab[i] = sq[i] * sq[i]; /* alphas_bar */
    }
    /* alphas = cat([ab[0]], ab[1:] / ab[:-1]); betas = 1 - alphas */
    betas[0] = 1.0f - ab[0];
    for (int i = 1; i < T; i++) betas[i] = 1.0f - ab[i] / ab[i - 1];
    free(ab);
    free(sq);
}

static int build_schedule(sd_sched *s) {
    const sd_sched_config *c = &s->cfg;
    int T = c->num_train_timesteps;
    if (c->trained_betas) {
        if (c->n_trained_betas != T)
            return sd_set_error("scheduler config: trained_betas has %d entries, num_train_timesteps is %d",
                                c->n_trained_betas, T);
    }
    s->T = T;
    s->betas = sd_xmalloc((size_t)T * sizeof(float));
    s->alphas = sd_xmalloc((size_t)T * sizeof(float));
    s->alphas_cumprod = sd_xmalloc((size_t)T * sizeof(float));
    if (c->trained_betas)
        memcpy(s->betas, c->trained_betas, (size_t)T * sizeof(float));
    else if (!strcmp(c->beta_schedule, "linear"))
        torch_linspace_f32(c->beta_start, c->beta_end, T, s->betas);
    else if (!strcmp(c->beta_schedule, "scaled_linear")) {
        /* Python: beta_start**0.5 (libm pow), then torch fp32 linspace, **2 */
        torch_linspace_f32(pow(c->beta_start, 0.5), pow(c->beta_end, 0.5), T, s->betas);
        for (int i = 0; i < T; i++) s->betas[i] = s->betas[i] * s->betas[i];
    } else if (!strcmp(c->beta_schedule, "squaredcos_cap_v2"))
        betas_cosine(T, s->betas);
    else
        return sd_set_error("scheduler config: beta_schedule \"%s\" is not supported (linear, scaled_linear, "
                            "squaredcos_cap_v2)",
                            c->beta_schedule);
    if (c->rescale_betas_zero_snr) rescale_zero_snr(s->betas, T);
    for (int i = 0; i < T; i++) s->alphas[i] = 1.0f - s->betas[i];
    cumprod_f32(s->alphas, T, s->alphas_cumprod);
    /* Euler, EulerA and DPM avoid an infinite sigma at the last step */
    if (c->rescale_betas_zero_snr &&
        (s->kind == SD_SCHED_EULER || s->kind == SD_SCHED_EULER_A || s->kind == SD_SCHED_DPM))
        s->alphas_cumprod[T - 1] = 0x1p-24f;
    s->final_alpha_cumprod = c->set_alpha_to_one > 0 ? 1.0f : s->alphas_cumprod[0];
    return 0;
}

static int validate_config(sd_sched *s) {
    sd_sched_config *c = &s->cfg;
    sd_sched_kind k = s->kind;
    const char *cls = sd_sched_kind_name(k);
    if (c->num_train_timesteps < 2 || c->num_train_timesteps > 1000000)
        return sd_set_error("scheduler config: num_train_timesteps %d out of range", c->num_train_timesteps);
    if (c->steps_offset < 0 || c->steps_offset > c->num_train_timesteps)
        return sd_set_error("scheduler config: steps_offset %d out of range", c->steps_offset);
    if (strcmp(c->timestep_spacing, "leading") && strcmp(c->timestep_spacing, "linspace") &&
        strcmp(c->timestep_spacing, "trailing"))
        return sd_set_error("scheduler config: timestep_spacing \"%s\" is not supported (leading, linspace, "
                            "trailing)",
                            c->timestep_spacing);
    const char *p = c->prediction_type;
    int pred_ok = !strcmp(p, "epsilon") || !strcmp(p, "v_prediction") ||
                  (!strcmp(p, "sample") && k != SD_SCHED_PNDM && k != SD_SCHED_EULER_A);
    if (!pred_ok)
        return sd_set_error("scheduler config: prediction_type \"%s\" is not supported by %s", p, cls);
    if (c->thresholding && (k == SD_SCHED_DDPM || k == SD_SCHED_DDIM || k == SD_SCHED_DPM))
        return sd_set_error("scheduler config: thresholding (dynamic thresholding) is not supported");
    if (k == SD_SCHED_DDPM && strcmp(c->variance_type, "fixed_small") &&
        strcmp(c->variance_type, "fixed_small_log") && strcmp(c->variance_type, "fixed_large"))
        return sd_set_error("scheduler config: variance_type \"%s\" is not supported (fixed_small, "
                            "fixed_small_log, fixed_large)",
                            c->variance_type);
    if (k == SD_SCHED_EULER || k == SD_SCHED_DPM) {
        if (c->use_exponential_sigmas || c->use_beta_sigmas)
            return sd_set_error("scheduler config: use_exponential_sigmas/use_beta_sigmas are not supported");
        if (strcmp(c->final_sigmas_type, "zero") && strcmp(c->final_sigmas_type, "sigma_min"))
            return sd_set_error("scheduler config: final_sigmas_type \"%s\" is not supported (zero, sigma_min)",
                                c->final_sigmas_type);
    }
    if (k == SD_SCHED_EULER) {
        if (strcmp(c->interpolation_type, "linear"))
            return sd_set_error("scheduler config: interpolation_type \"%s\" is not supported (linear)",
                                c->interpolation_type);
        if (strcmp(c->timestep_type, "discrete"))
            return sd_set_error("scheduler config: timestep_type \"%s\" is not supported (discrete)",
                                c->timestep_type);
    }
    if (k == SD_SCHED_DPM) {
        if (c->solver_order < 1 || c->solver_order > 3)
            return sd_set_error("scheduler config: solver_order %d is not supported (1, 2, 3)", c->solver_order);
        if (strcmp(c->algorithm_type, "dpmsolver++") && strcmp(c->algorithm_type, "sde-dpmsolver++"))
            return sd_set_error("scheduler config: algorithm_type \"%s\" is not supported (dpmsolver++, "
                                "sde-dpmsolver++)",
                                c->algorithm_type);
        if (strcmp(c->solver_type, "midpoint") && strcmp(c->solver_type, "heun"))
            return sd_set_error("scheduler config: solver_type \"%s\" is not supported (midpoint, heun)",
                                c->solver_type);
        if (c->use_lu_lambdas || c->use_flow_sigmas)
            return sd_set_error("scheduler config: use_lu_lambdas/use_flow_sigmas are not supported");
    }
    return 0;
}

int sd_sched_new(const char *name, const sd_sched_config *cfg, sd_sched **out) {
    *out = NULL;
    sd_sched_config defaults;
    if (!cfg) {
        sd_sched_config_init(&defaults);
        cfg = &defaults;
    }
    if (!name || !*name) name = cfg->class_name;
    if (!*name) return sd_set_error("scheduler: no scheduler name and no _class_name in the config");
    sd_sched_kind kind;
    int karras, order;
    const char *algo;
    if (parse_name(name, &kind, &karras, &algo, &order))
        return sd_set_error("scheduler: unknown scheduler \"%s\" (ddpm, ddim, pndm, euler, euler_a, dpm++2m, "
                            "dpm++2m-sde; -karras for euler and dpm++2m)",
                            name);
    sd_sched *s = sd_xcalloc(1, sizeof *s);
    s->kind = kind;
    s->cfg = *cfg;
    s->cfg.trained_betas = NULL;
    if (cfg->trained_betas) {
        s->cfg.trained_betas = sd_xmalloc((size_t)cfg->n_trained_betas * sizeof(float));
        memcpy(s->cfg.trained_betas, cfg->trained_betas, (size_t)cfg->n_trained_betas * sizeof(float));
    }
    sd_sched_config *c = &s->cfg;
    /* per-class defaults */
    int leading = kind == SD_SCHED_DDPM || kind == SD_SCHED_DDIM || kind == SD_SCHED_PNDM;
    if (!c->timestep_spacing[0]) set_str(c->timestep_spacing, sizeof c->timestep_spacing, leading ? "leading" : "linspace");
    if (c->clip_sample < 0) c->clip_sample = (kind == SD_SCHED_DDPM || kind == SD_SCHED_DDIM) ? 1 : 0;
    if (c->set_alpha_to_one < 0) c->set_alpha_to_one = kind == SD_SCHED_DDIM ? 1 : 0;
    if (kind != SD_SCHED_DDPM && kind != SD_SCHED_DDIM) c->clip_sample = 0;
    if (kind != SD_SCHED_DDIM && kind != SD_SCHED_PNDM) c->set_alpha_to_one = 0;
    if (kind != SD_SCHED_EULER && kind != SD_SCHED_DPM) c->use_karras_sigmas = 0;
    if (kind != SD_SCHED_EULER && kind != SD_SCHED_DPM) set_str(c->final_sigmas_type, sizeof c->final_sigmas_type, "zero");
    if (karras) c->use_karras_sigmas = 1;
    if (algo) set_str(c->algorithm_type, sizeof c->algorithm_type, algo);
    if (order) c->solver_order = order;
    if (validate_config(s) || build_schedule(s)) {
        sd_sched_free(s);
        return -1;
    }
    s->init_noise_sigma = 1.0f;
    *out = s;
    return 0;
}

static void free_state(sd_sched *s) {
    for (int i = 0; i < 4; i++) free(s->ets[i]), s->ets[i] = NULL;
    for (int i = 0; i < 3; i++) free(s->m[i]), s->m[i] = NULL;
    free(s->cur_sample);
    free(s->cur_model_output);
    free(s->scratch);
    free(s->scratch2);
    free(s->noise_buf);
    s->cur_sample = s->cur_model_output = s->scratch = s->scratch2 = s->noise_buf = NULL;
    s->n = 0;
}

void sd_sched_free(sd_sched *s) {
    if (!s) return;
    free_state(s);
    free(s->betas);
    free(s->alphas);
    free(s->alphas_cumprod);
    free(s->timesteps);
    free(s->sigmas);
    sd_sched_config_free(&s->cfg);
    free(s);
}

int sd_sched_set_eta(sd_sched *s, float eta) {
    if (!(eta >= 0.0f) || eta > 1e6f) return sd_set_error("scheduler: eta %g must be >= 0", (double)eta);
    s->eta = eta;
    return 0;
}

void sd_sched_set_rng(sd_sched *s, sd_rng *rng) { s->rng = rng; }

/* ---- timestep tables (numpy float64 semantics) --------------------------- */

/* np.linspace(start, stop, num) (endpoint=True): i*step + start, last = stop;
 * num == 1 gives [start]. */
static void np_linspace(double start, double stop, int num, double *out) {
    if (num == 1) {
        out[0] = start;
        return;
    }
    double step = (stop - start) / (double)(num - 1);
    for (int i = 0; i < num; i++) out[i] = (double)i * step + start;
    out[num - 1] = stop;
}

/* np.arange(start, stop, step) for a negative float step: length
 * ceil((stop - start) / step); out[0] = start, out[1] = start + step, then
 * start + i * (out[1] - out[0]) (numpy's DOUBLE_fill). Returns the length
 * (clamped to cap). */
static int np_arange(double start, double stop, double step, double *out, int cap) {
    double len_d = ceil((stop - start) / step);
    if (!(len_d >= 0)) len_d = 0;
    if (len_d > cap) len_d = cap; /* cannot happen for T/n steps (length n or n+1) */
    int len = (int)len_d;
    if (len > 0) out[0] = start;
    if (len > 1) out[1] = start + step;
    double delta = len > 1 ? out[1] - out[0] : 0;
    for (int i = 2; i < len; i++) out[i] = start + (double)i * delta;
    return len;
}

/* numpy .round(): half to even */
static double np_round(double x) { return nearbyint(x); }

/* Descending integer timesteps of DDPM/DDIM (and, ascending, PNDM's _timesteps)
 * for each spacing. out holds up to n + 1 entries (trailing can give one
 * more, see below). Returns the count, or -1 with an error. */
static int int_timesteps(const sd_sched *s, int n, int64_t *out) {
    const sd_sched_config *c = &s->cfg;
    int T = s->T;
    const char *sp = c->timestep_spacing;
    int cnt = n;
    if (!strcmp(sp, "linspace")) {
        double *v = sd_xmalloc((size_t)n * sizeof(double));
        np_linspace(0, T - 1, n, v);
        for (int i = 0; i < n; i++) out[i] = (int64_t)np_round(v[n - 1 - i]);
        free(v);
    } else if (!strcmp(sp, "leading")) {
        int r = T / n;
        for (int i = 0; i < n; i++) out[i] = (int64_t)(n - 1 - i) * r + c->steps_offset;
    } else { /* trailing: np.round(np.arange(T, 0, -T/n)) - 1 */
        double *v = sd_xmalloc((size_t)(n + 2) * sizeof(double));
        cnt = np_arange(T, 0, -((double)T / n), v, n + 2);
        for (int i = 0; i < cnt; i++) out[i] = (int64_t)np_round(v[i]) - 1;
        free(v);
    }
    return cnt;
}

/* np.interp(x, arange(len(fp)), fp) */
static double np_interp_idx(double x, const float *fp, int len) {
    if (x != x) return x;
    if (x <= 0) return fp[0];
    if (x >= len - 1) return fp[len - 1];
    int j = (int)floor(x);
    if (x == (double)j) return fp[j];
    double slope = ((double)fp[j + 1] - (double)fp[j]) / 1.0;
    return slope * (x - (double)j) + (double)fp[j];
}

/* _sigma_to_t(sigma, log_sigmas) with log_sigmas float32 ascending in t. */
static double sigma_to_t(double sigma, const float *log_sigmas, int len) {
    double log_sigma = log(sigma > 1e-10 ? sigma : 1e-10);
    /* low_idx = argmax(cumsum(log_sigma - log_sigmas >= 0)): the first index
     * where the running count reaches its maximum */
    int count = 0, best = 0, low = 0;
    for (int k = 0; k < len; k++) {
        if (log_sigma - (double)log_sigmas[k] >= 0) count++;
        if (count > best) best = count, low = k;
    }
    if (low > len - 2) low = len - 2;
    int high = low + 1;
    double lo = log_sigmas[low], hi = log_sigmas[high];
    double w = (lo - log_sigma) / (lo - hi);
    if (w < 0) w = 0;
    if (w > 1) w = 1;
    return (1 - w) * low + w * high;
}

/* _convert_to_karras(in_sigmas, n): float64 */
static void karras_sigmas(double sigma_min, double sigma_max, int n, double *out) {
    const double rho = 7.0;
    double *ramp = sd_xmalloc((size_t)n * sizeof(double));
    np_linspace(0, 1, n, ramp);
    double min_inv_rho = pow(sigma_min, 1 / rho);
    double max_inv_rho = pow(sigma_max, 1 / rho);
    for (int i = 0; i < n; i++) out[i] = pow(max_inv_rho + ramp[i] * (min_inv_rho - max_inv_rho), rho);
    free(ramp);
}

static int check_timesteps(const sd_sched *s, const int64_t *t, int cnt) {
    for (int i = 0; i < cnt; i++)
        if (t[i] < 0 || t[i] >= s->T)
            return sd_set_error("scheduler: %s spacing with %d steps gives timestep %lld outside [0, %d) (as "
                                "diffusers would); use another step count",
                                s->cfg.timestep_spacing, s->num_inference_steps, (long long)t[i], s->T);
    return 0;
}

/* training sigmas sqrt((1 - ac) / ac) in fp32, ascending in t */
static float *train_sigmas(const sd_sched *s) {
    float *sg = sd_xmalloc((size_t)s->T * sizeof(float));
    for (int k = 0; k < s->T; k++) {
        float a = s->alphas_cumprod[k];
        sg[k] = sqrtf((1.0f - a) / a);
    }
    return sg;
}

static float sigma_last_value(const sd_sched *s) {
    if (!strcmp(s->cfg.final_sigmas_type, "sigma_min")) {
        float a = s->alphas_cumprod[0];
        return sqrtf((1.0f - a) / a);
    }
    return 0.0f;
}

static int set_timesteps_euler(sd_sched *s, int n) {
    const sd_sched_config *c = &s->cfg;
    int T = s->T;
    double *ts = sd_xmalloc((size_t)(n + 2) * sizeof(double));
    int cnt = n;
    /* timesteps as float32 (numpy casts each spacing's result to float32) */
    float *tf = sd_xmalloc((size_t)(n + 2) * sizeof(float));
    if (!strcmp(c->timestep_spacing, "linspace")) {
        np_linspace(0, T - 1, n, ts);
        for (int i = 0; i < n; i++) tf[i] = (float)ts[n - 1 - i];
    } else if (!strcmp(c->timestep_spacing, "leading")) {
        int r = T / n;
        for (int i = 0; i < n; i++) tf[i] = (float)((double)(n - 1 - i) * r) + (float)c->steps_offset;
    } else {
        cnt = np_arange(T, 0, -((double)T / n), ts, n + 2);
        for (int i = 0; i < cnt; i++) tf[i] = (float)np_round(ts[i]) - 1.0f;
    }
    for (int i = 0; i < cnt; i++)
        if (tf[i] < 0) {
            double bad = tf[i];
            free(ts);
            free(tf);
            return sd_set_error("scheduler: %s spacing with %d steps gives timestep %g outside [0, %d) (as "
                                "diffusers would); use another step count",
                                c->timestep_spacing, n, bad, T);
        }
    float *sg = train_sigmas(s);
    float *sigmas = sd_xmalloc((size_t)(cnt + 1) * sizeof(float));
    double *sd = sd_xmalloc((size_t)cnt * sizeof(double));
    for (int i = 0; i < cnt; i++) sd[i] = np_interp_idx((double)tf[i], sg, T);
    if (c->use_karras_sigmas) {
        /* range from the interpolated schedule (or the config), timesteps
         * re-derived from the Karras sigmas by log-sigma interpolation */
        double smin = isnan(c->sigma_min) ? sd[cnt - 1] : c->sigma_min;
        double smax = isnan(c->sigma_max) ? sd[0] : c->sigma_max;
        karras_sigmas(smin, smax, n, sd);
        cnt = n;
        float *logs = sd_xmalloc((size_t)T * sizeof(float));
        for (int k = 0; k < T; k++) logs[k] = logf(sg[k]);
        for (int i = 0; i < cnt; i++) tf[i] = (float)sigma_to_t(sd[i], logs, T);
        free(logs);
    }
    for (int i = 0; i < cnt; i++) sigmas[i] = (float)sd[i];
    sigmas[cnt] = sigma_last_value(s);
    free(sd);
    free(sg);
    free(ts);
    s->num_steps = cnt;
    s->timesteps = tf;
    s->sigmas = sigmas;
    float mx = sigmas[0];
    for (int i = 1; i <= cnt; i++)
        if (sigmas[i] > mx) mx = sigmas[i];
    s->init_noise_sigma = strcmp(c->timestep_spacing, "leading") ? mx : sqrtf(mx * mx + 1.0f);
    return 0;
}

static int set_timesteps_dpm(sd_sched *s, int n) {
    const sd_sched_config *c = &s->cfg;
    int T = s->T;
    /* last_timestep = T - searchsorted(flip(lambda_t), lambda_min_clipped) */
    int clipped = 0;
    if (c->lambda_min_clipped > -INFINITY) {
        for (int k = T - 1; k >= 0; k--) {
            float a = s->alphas_cumprod[k];
            float lam = logf(sqrtf(a)) - logf(sqrtf(1.0f - a));
            if ((double)lam < c->lambda_min_clipped) clipped++;
            else break;
        }
    }
    int last = T - clipped;
    int64_t *ti = sd_xmalloc((size_t)(n + 3) * sizeof(int64_t));
    double *v = sd_xmalloc((size_t)(n + 3) * sizeof(double));
    int cnt = n;
    if (!strcmp(c->timestep_spacing, "linspace")) {
        np_linspace(0, last - 1, n + 1, v);
        for (int i = 0; i < n; i++) ti[i] = (int64_t)np_round(v[n - i]);
    } else if (!strcmp(c->timestep_spacing, "leading")) {
        int r = last / (n + 1);
        for (int i = 0; i < n; i++) ti[i] = (int64_t)(n - i) * r + c->steps_offset;
    } else {
        cnt = np_arange(last, 0, -((double)T / n), v, n + 3);
        for (int i = 0; i < cnt; i++) ti[i] = (int64_t)np_round(v[i]) - 1;
    }
    if (check_timesteps(s, ti, cnt)) {
        free(ti);
        free(v);
        return -1;
    }
    float *sg = train_sigmas(s);
    double *sd = sd_xmalloc((size_t)(n + 3) * sizeof(double));
    if (c->use_karras_sigmas) {
        float *logs = sd_xmalloc((size_t)T * sizeof(float));
        for (int k = 0; k < T; k++) logs[k] = logf(sg[k]);
        /* DPMSolverMultistepScheduler has no sigma_min/sigma_max config keys */
        double smin = (double)sg[0], smax = (double)sg[T - 1];
        karras_sigmas(smin, smax, n, sd);
        cnt = n;
        int round_t = strcmp(c->beta_schedule, "squaredcos_cap_v2") != 0;
        for (int i = 0; i < n; i++) {
            double t = sigma_to_t(sd[i], logs, T);
            /* astype(int64) truncates toward zero */
            ti[i] = (int64_t)(round_t ? np_round(t) : t);
        }
        free(logs);
    } else {
        for (int i = 0; i < cnt; i++) sd[i] = np_interp_idx((double)ti[i], sg, T);
    }
    s->num_steps = cnt;
    s->timesteps = sd_xmalloc((size_t)cnt * sizeof(float));
    s->sigmas = sd_xmalloc((size_t)(cnt + 1) * sizeof(float));
    for (int i = 0; i < cnt; i++) {
        s->timesteps[i] = (float)ti[i];
        s->sigmas[i] = (float)sd[i];
    }
    s->sigmas[cnt] = sigma_last_value(s);
    s->init_noise_sigma = 1.0f;
    free(sd);
    free(sg);
    free(ti);
    free(v);
    return 0;
}

static int set_timesteps_pndm(sd_sched *s, int n) {
    const sd_sched_config *c = &s->cfg;
    int T = s->T;
    /* _timesteps ascending */
    int64_t *asc = sd_xmalloc((size_t)(n + 2) * sizeof(int64_t));
    int64_t *desc = sd_xmalloc((size_t)(n + 2) * sizeof(int64_t));
    int cnt = int_timesteps(s, n, desc);
    /* PNDM's own linspace/trailing are the ascending forms of the same values */
    for (int i = 0; i < cnt; i++) asc[i] = desc[cnt - 1 - i];
    /* (PNDM computes each spacing ascending; the values are the same) */
    int rc = check_timesteps(s, asc, cnt);
    if (rc) {
        free(asc);
        free(desc);
        return -1;
    }
    int64_t *ts;
    int m;
    if (c->skip_prk_steps) {
        /* concat(_ts[:-1], _ts[-2:-1], _ts[-1:])[::-1]: n+1 entries, the
         * second-largest repeated (n >= 2) */
        ts = sd_xmalloc((size_t)(cnt + 1) * sizeof(int64_t));
        int64_t *tmp = sd_xmalloc((size_t)(cnt + 1) * sizeof(int64_t));
        m = 0;
        for (int i = 0; i < cnt - 1; i++) tmp[m++] = asc[i];
        if (cnt >= 2) tmp[m++] = asc[cnt - 2];
        tmp[m++] = asc[cnt - 1];
        for (int i = 0; i < m; i++) ts[i] = tmp[m - 1 - i];
        free(tmp);
        s->prk_len = 0;
    } else {
        if (cnt < 4) {
            free(asc);
            free(desc);
            return sd_set_error("scheduler: PNDM with skip_prk_steps=false needs at least 4 inference steps "
                                "(diffusers fails below that)");
        }
        int64_t h = T / n / 2;
        /* prk = _ts[-4:].repeat(2) + tile([0, h], 4); prk[:-1].repeat(2)[1:-1][::-1] */
        int64_t prk8[8], prk14[14];
        for (int i = 0; i < 4; i++) {
            prk8[2 * i] = asc[cnt - 4 + i];
            prk8[2 * i + 1] = asc[cnt - 4 + i] + h;
        }
        for (int i = 0; i < 7; i++) prk14[2 * i] = prk14[2 * i + 1] = prk8[i];
        m = 12 + (cnt - 3);
        ts = sd_xmalloc((size_t)m * sizeof(int64_t));
        for (int i = 0; i < 12; i++) ts[i] = prk14[12 - i]; /* [1:13] reversed */
        for (int i = 0; i < cnt - 3; i++) ts[12 + i] = asc[cnt - 4 - i];
        s->prk_len = 12;
    }
    s->num_steps = m;
    s->timesteps = sd_xmalloc((size_t)m * sizeof(float));
    for (int i = 0; i < m; i++) s->timesteps[i] = (float)ts[i];
    s->init_noise_sigma = 1.0f;
    free(ts);
    free(asc);
    free(desc);
    return 0;
}

int sd_sched_set_timesteps(sd_sched *s, int n) {
    if (n < 1 || n > s->T)
        return sd_set_error("scheduler: num_inference_steps %d must be in [1, %d] (num_train_timesteps)", n, s->T);
    free(s->timesteps);
    free(s->sigmas);
    s->timesteps = s->sigmas = NULL;
    s->num_steps = 0;
    free_state(s);
    s->next_step = 0;
    s->counter = 0;
    s->n_ets = 0;
    s->has_cur_sample = 0;
    s->lower_order_nums = 0;
    s->num_inference_steps = n;
    int rc = 0;
    switch (s->kind) {
    case SD_SCHED_DDPM:
    case SD_SCHED_DDIM: {
        int64_t *t = sd_xmalloc((size_t)(n + 2) * sizeof(int64_t));
        int cnt = int_timesteps(s, n, t);
        rc = check_timesteps(s, t, cnt);
        if (!rc) {
            s->num_steps = cnt;
            s->timesteps = sd_xmalloc((size_t)cnt * sizeof(float));
            for (int i = 0; i < cnt; i++) s->timesteps[i] = (float)t[i];
            s->init_noise_sigma = 1.0f;
        }
        free(t);
        break;
    }
    case SD_SCHED_PNDM: rc = set_timesteps_pndm(s, n); break;
    case SD_SCHED_EULER:
    case SD_SCHED_EULER_A: rc = set_timesteps_euler(s, n); break;
    case SD_SCHED_DPM: rc = set_timesteps_dpm(s, n); break;
    }
    if (rc) {
        free(s->timesteps);
        free(s->sigmas);
        s->timesteps = s->sigmas = NULL;
        s->num_steps = 0;
        s->num_inference_steps = 0;
    }
    return rc;
}

/* ---- sampling ------------------------------------------------------------ */

int sd_sched_needs_noise(const sd_sched *s, int i) {
    if (!s->timesteps || i < 0 || i >= s->num_steps) return 0;
    switch (s->kind) {
    case SD_SCHED_DDPM: return s->timesteps[i] > 0;
    case SD_SCHED_DDIM: return s->eta > 0;
    case SD_SCHED_EULER_A: return 1;
    case SD_SCHED_DPM: return !strcmp(s->cfg.algorithm_type, "sde-dpmsolver++");
    default: return 0;
    }
}

void sd_sched_scale_noise(const sd_sched *s, const float *noise, float *x, size_t n) {
    float g = s->init_noise_sigma;
    for (size_t k = 0; k < n; k++) x[k] = noise[k] * g;
}

int sd_sched_scale_model_input(const sd_sched *s, int i, const float *x, float *out, size_t n) {
    if (!s->timesteps) return sd_set_error("scheduler: set_timesteps was not called");
    if (i < 0 || i >= s->num_steps)
        return sd_set_error("scheduler: step %d out of range [0, %d)", i, s->num_steps);
    if (s->kind == SD_SCHED_EULER || s->kind == SD_SCHED_EULER_A) {
        float sg = s->sigmas[i];
        float d = sqrtf(sg * sg + 1.0f);
        for (size_t k = 0; k < n; k++) out[k] = x[k] / d;
    } else if (out != x)
        memcpy(out, x, n * sizeof(float));
    return 0;
}

static int ac_at(const sd_sched *s, int64_t t, float *a) {
    if (t < 0 || t >= s->T) return sd_set_error("scheduler: timestep %lld outside [0, %d)", (long long)t, s->T);
    *a = s->alphas_cumprod[t];
    return 0;
}

static int pred_kind(const sd_sched *s) { /* 0 epsilon, 1 v, 2 sample */
    const char *p = s->cfg.prediction_type;
    return !strcmp(p, "v_prediction") ? 1 : !strcmp(p, "sample") ? 2 : 0;
}

static void clip_x0(const sd_sched *s, float *x0, size_t n) {
    if (!s->cfg.clip_sample) return;
    float r = (float)s->cfg.clip_sample_range;
    for (size_t k = 0; k < n; k++) x0[k] = x0[k] < -r ? -r : x0[k] > r ? r : x0[k];
}

/* DDPMScheduler.step */
static int step_ddpm(sd_sched *s, int i, const float *mo, float *x, size_t n, const float *z) {
    int64_t t = (int64_t)s->timesteps[i];
    int64_t prev = i + 1 < s->num_steps ? (int64_t)s->timesteps[i + 1] : -1;
    float at = 0, ap = 1.0f;
    if (ac_at(s, t, &at) || (prev >= 0 && ac_at(s, prev, &ap))) return -1;
    float bt = 1 - at, bp = 1 - ap;
    float cur_alpha = at / ap, cur_beta = 1 - cur_alpha;
    float *x0 = s->scratch;
    int pk = pred_kind(s);
    float sa = sqrtf(at), sb = sqrtf(bt);
    for (size_t k = 0; k < n; k++) {
        if (pk == 0) x0[k] = (x[k] - sb * mo[k]) / sa;
        else if (pk == 1) x0[k] = sa * x[k] - sb * mo[k];
        else x0[k] = mo[k];
    }
    clip_x0(s, x0, n);
    float c0 = (sqrtf(ap) * cur_beta) / bt;
    float cx = sqrtf(cur_alpha) * bp / bt;
    for (size_t k = 0; k < n; k++) x[k] = c0 * x0[k] + cx * x[k];
    if (t > 0) {
        /* _get_variance: (1 - ap) / (1 - at) * beta_t, clamped at 1e-20 */
        float var = bp / bt * (1 - at / ap);
        if (var < 1e-20f) var = 1e-20f;
        float sd;
        if (!strcmp(s->cfg.variance_type, "fixed_small_log")) sd = expf(0.5f * logf(var));
        else if (!strcmp(s->cfg.variance_type, "fixed_large")) sd = sqrtf(cur_beta);
        else sd = sqrtf(var);
        for (size_t k = 0; k < n; k++) x[k] = x[k] + sd * z[k];
    }
    return 0;
}

/* DDIMScheduler.step (use_clipped_model_output=False) */
static int step_ddim(sd_sched *s, int i, const float *mo, float *x, size_t n, const float *z) {
    int64_t t = (int64_t)s->timesteps[i];
    int64_t prev = t - s->T / s->num_inference_steps;
    float at = 0, ap = s->final_alpha_cumprod;
    if (ac_at(s, t, &at) || (prev >= 0 && ac_at(s, prev, &ap))) return -1;
    float bt = 1 - at;
    float sa = sqrtf(at), sb = sqrtf(bt);
    int pk = pred_kind(s);
    float *x0 = s->scratch;
    float *eps = s->scratch2; /* pred_epsilon */
    for (size_t k = 0; k < n; k++) {
        if (pk == 0) {
            x0[k] = (x[k] - sb * mo[k]) / sa;
            eps[k] = mo[k];
        } else if (pk == 2) {
            x0[k] = mo[k];
            eps[k] = (x[k] - sa * x0[k]) / sb;
        } else {
            x0[k] = sa * x[k] - sb * mo[k];
            eps[k] = sa * mo[k] + sb * x[k];
        }
    }
    clip_x0(s, x0, n);
    float bp = 1 - ap;
    float var = (bp / bt) * (1 - at / ap);
    float std = s->eta * sqrtf(var);
    float cdir = sqrtf(1 - ap - std * std);
    float cx0 = sqrtf(ap);
    for (size_t k = 0; k < n; k++) {
        float dir = cdir * eps[k];
        x[k] = cx0 * x0[k] + dir;
    }
    if (s->eta > 0)
        for (size_t k = 0; k < n; k++) x[k] = x[k] + std * z[k];
    return 0;
}

/* PNDMScheduler._get_prev_sample: x_prev from x at t with (combined) output e */
static int pndm_prev(sd_sched *s, const float *x, int64_t t, int64_t prev, const float *e, float *out, size_t n) {
    float at = 0, ap = s->final_alpha_cumprod;
    if (ac_at(s, t, &at) || (prev >= 0 && ac_at(s, prev, &ap))) return -1;
    float bt = 1 - at, bp = 1 - ap;
    float sa = sqrtf(at), sb = sqrtf(bt);
    int v = pred_kind(s) == 1;
    float cs = sqrtf(ap / at);
    float denom = at * sqrtf(bp) + sqrtf(at * bt * ap);
    float cd = ap - at;
    for (size_t k = 0; k < n; k++) {
        float ek = v ? sa * e[k] + sb * x[k] : e[k];
        out[k] = cs * x[k] - cd * ek / denom;
    }
    return 0;
}

static float *state_buf(float **p, size_t n) {
    if (!*p) *p = sd_xmalloc(n * sizeof(float));
    return *p;
}

/* append a copy of mo to ets (keeping the newest 4) */
static void ets_push(sd_sched *s, const float *mo, size_t n) {
    if (s->n_ets == 4) {
        float *old = s->ets[0];
        memmove(s->ets, s->ets + 1, 3 * sizeof(float *));
        s->ets[3] = old;
        s->n_ets = 3;
    }
    float *b = state_buf(&s->ets[s->n_ets], n);
    memcpy(b, mo, n * sizeof(float));
    s->n_ets++;
}

static int step_pndm(sd_sched *s, int i, const float *mo, float *x, size_t n) {
    int64_t t = (int64_t)s->timesteps[i];
    int64_t dt = s->T / s->num_inference_steps;
    float *e = s->scratch;
    if (s->counter < s->prk_len) { /* step_prk */
        int64_t diff = (s->counter % 2) ? 0 : dt / 2;
        int64_t prev = t - diff;
        int64_t tt = (int64_t)s->timesteps[s->counter / 4 * 4];
        float *cmo = state_buf(&s->cur_model_output, n);
        const float *use = mo;
        int ph = s->counter % 4;
        if (ph == 0) {
            for (size_t k = 0; k < n; k++) cmo[k] = (float)(1.0 / 6.0) * mo[k]; /* 0 + 1/6 m */
            s->ets[s->n_ets] = state_buf(&s->ets[s->n_ets], n);
            memcpy(s->ets[s->n_ets], mo, n * sizeof(float));
            s->n_ets++;
            memcpy(state_buf(&s->cur_sample, n), x, n * sizeof(float));
            s->has_cur_sample = 1;
        } else if (ph == 1 || ph == 2) {
            for (size_t k = 0; k < n; k++) cmo[k] = cmo[k] + (float)(1.0 / 3.0) * mo[k];
        } else {
            for (size_t k = 0; k < n; k++) e[k] = cmo[k] + (float)(1.0 / 6.0) * mo[k];
            memset(cmo, 0, n * sizeof(float));
            use = e;
        }
        const float *cs = s->has_cur_sample ? s->cur_sample : x;
        if (pndm_prev(s, cs, tt, prev, use, x, n)) return -1;
        s->counter++;
        return 0;
    }
    /* step_plms */
    int64_t prev = t - dt;
    if (s->counter != 1) ets_push(s, mo, n);
    else {
        prev = t;
        t = t + dt;
    }
    const float *sample = x;
    int ne = s->n_ets;
    float **E = s->ets; /* E[ne-1] newest */
    if (ne == 1 && s->counter == 0) {
        memcpy(e, mo, n * sizeof(float));
        memcpy(state_buf(&s->cur_sample, n), x, n * sizeof(float));
        s->has_cur_sample = 1;
    } else if (ne == 1 && s->counter == 1) {
        for (size_t k = 0; k < n; k++) e[k] = (mo[k] + E[0][k]) / 2;
        if (!s->has_cur_sample) return sd_set_error("scheduler: PNDM state lost");
        sample = s->cur_sample;
        s->has_cur_sample = 0;
    } else if (ne == 2) {
        for (size_t k = 0; k < n; k++) e[k] = (3 * E[1][k] - E[0][k]) / 2;
    } else if (ne == 3) {
        for (size_t k = 0; k < n; k++) e[k] = (23 * E[2][k] - 16 * E[1][k] + 5 * E[0][k]) / 12;
    } else {
        const float c24 = (float)(1.0 / 24.0);
        for (size_t k = 0; k < n; k++)
            e[k] = c24 * (55 * E[3][k] - 59 * E[2][k] + 37 * E[1][k] - 9 * E[0][k]);
    }
    if (pndm_prev(s, sample, t, prev, e, x, n)) return -1;
    s->counter++;
    return 0;
}

/* Euler (s_churn = 0) and Euler-ancestral */
static int step_euler(sd_sched *s, int i, const float *mo, float *x, size_t n, const float *z) {
    float sigma = s->sigmas[i];
    int pk = pred_kind(s);
    float vc = 0, vd = 0;
    if (pk == 1) {
        vc = -sigma / sqrtf(sigma * sigma + 1.0f);
        vd = sigma * sigma + 1.0f;
    }
    float *x0 = s->scratch;
    for (size_t k = 0; k < n; k++) {
        if (pk == 0) x0[k] = x[k] - sigma * mo[k];
        else if (pk == 1) x0[k] = mo[k] * vc + x[k] / vd;
        else x0[k] = mo[k];
    }
    if (s->kind == SD_SCHED_EULER) {
        float dt = s->sigmas[i + 1] - sigma;
        for (size_t k = 0; k < n; k++) {
            float d = (x[k] - x0[k]) / sigma;
            x[k] = x[k] + d * dt;
        }
        return 0;
    }
    float sf = s->sigmas[i], st = s->sigmas[i + 1];
    float up = sqrtf(st * st * (sf * sf - st * st) / (sf * sf));
    float down = sqrtf(st * st - up * up);
    float dt = down - sigma;
    for (size_t k = 0; k < n; k++) {
        float d = (x[k] - x0[k]) / sigma;
        x[k] = x[k] + d * dt;
        x[k] = x[k] + z[k] * up;
    }
    return 0;
}

/* DPMSolverMultistepScheduler (dpmsolver++ / sde-dpmsolver++) */
typedef struct {
    float alpha, sigma, lambda;
} dpm_pt;

static dpm_pt dpm_point(float sg) {
    dpm_pt p;
    p.alpha = 1.0f / sqrtf(sg * sg + 1.0f);
    p.sigma = sg * p.alpha;
    p.lambda = logf(p.alpha) - logf(p.sigma);
    return p;
}

static int step_dpm(sd_sched *s, int i, const float *mo, float *x, size_t n, const float *z) {
    const sd_sched_config *c = &s->cfg;
    int N = s->num_steps, order = c->solver_order;
    int sde = !strcmp(c->algorithm_type, "sde-dpmsolver++");
    int heun = !strcmp(c->solver_type, "heun");
    int lower_final = i == N - 1 && (c->euler_at_final || (c->lower_order_final && N < 15) ||
                                     !strcmp(c->final_sigmas_type, "zero"));
    int lower_second = i == N - 2 && c->lower_order_final && N < 15;
    /* convert_model_output -> x0 prediction, pushed into the history */
    float *m0 = s->m[0];
    if (!m0) m0 = sd_xmalloc(n * sizeof(float));
    s->m[0] = s->m[1];
    s->m[1] = s->m[2];
    s->m[2] = m0;
    dpm_pt p0 = dpm_point(s->sigmas[i]);
    int pk = pred_kind(s);
    for (size_t k = 0; k < n; k++) {
        if (pk == 0) m0[k] = (x[k] - p0.sigma * mo[k]) / p0.alpha;
        else if (pk == 1) m0[k] = p0.alpha * x[k] - p0.sigma * mo[k];
        else m0[k] = mo[k];
    }
    dpm_pt pt = dpm_point(s->sigmas[i + 1]);
    float h = pt.lambda - p0.lambda;
    float eh = expf(-h), e2h = expf(-2.0f * h);
    float cz = sde ? pt.sigma * sqrtf(1.0f - e2h) : 0.0f;
    int use;
    if (order == 1 || s->lower_order_nums < 1 || lower_final) use = 1;
    else if (order == 2 || s->lower_order_nums < 2 || lower_second) use = 2;
    else use = 3;
    if (use == 1) {
        if (!sde) {
            float c1 = pt.sigma / p0.sigma, c2 = pt.alpha * (eh - 1.0f);
            for (size_t k = 0; k < n; k++) x[k] = c1 * x[k] - c2 * m0[k];
        } else {
            float c1 = pt.sigma / p0.sigma * eh, c2 = pt.alpha * (1 - e2h);
            for (size_t k = 0; k < n; k++) x[k] = c1 * x[k] + c2 * m0[k] + cz * z[k];
        }
    } else if (use == 2) {
        const float *m1 = s->m[1];
        dpm_pt p1 = dpm_point(s->sigmas[i - 1]);
        float h0 = p0.lambda - p1.lambda;
        float r0 = h0 / h;
        float ir0 = 1.0f / r0;
        float *D1 = s->scratch;
        for (size_t k = 0; k < n; k++) D1[k] = ir0 * (m0[k] - m1[k]);
        if (!sde) {
            float c1 = pt.sigma / p0.sigma, c2 = pt.alpha * (eh - 1.0f);
            if (!heun) {
                float c3 = 0.5f * c2;
                for (size_t k = 0; k < n; k++) x[k] = c1 * x[k] - c2 * m0[k] - c3 * D1[k];
            } else {
                float c3 = pt.alpha * ((eh - 1.0f) / h + 1.0f);
                for (size_t k = 0; k < n; k++) x[k] = c1 * x[k] - c2 * m0[k] + c3 * D1[k];
            }
        } else {
            float c1 = pt.sigma / p0.sigma * eh, c2 = pt.alpha * (1 - e2h);
            float c3 = heun ? pt.alpha * ((1.0f - e2h) / (-2.0f * h) + 1.0f) : 0.5f * c2;
            for (size_t k = 0; k < n; k++) x[k] = c1 * x[k] + c2 * m0[k] + c3 * D1[k] + cz * z[k];
        }
    } else {
        const float *m1 = s->m[1], *m2 = s->m[0];
        dpm_pt p1 = dpm_point(s->sigmas[i - 1]), p2 = dpm_point(s->sigmas[i - 2]);
        float h0 = p0.lambda - p1.lambda, h1 = p1.lambda - p2.lambda;
        float r0 = h0 / h, r1 = h1 / h;
        float ir0 = 1.0f / r0, ir1 = 1.0f / r1;
        float cr = r0 / (r0 + r1), ir01 = 1.0f / (r0 + r1);
        float c1, c2, c3, c4;
        if (!sde) {
            c1 = pt.sigma / p0.sigma;
            c2 = pt.alpha * (eh - 1.0f);
            c3 = pt.alpha * ((eh - 1.0f) / h + 1.0f);
            c4 = pt.alpha * ((eh - 1.0f + h) / (h * h) - 0.5f);
        } else {
            c1 = pt.sigma / p0.sigma * eh;
            c2 = pt.alpha * (1.0f - e2h);
            c3 = pt.alpha * ((1.0f - e2h) / (-2.0f * h) + 1.0f);
            float h2 = 2.0f * h;
            c4 = pt.alpha * ((1.0f - e2h - 2.0f * h) / (h2 * h2) - 0.5f);
        }
        for (size_t k = 0; k < n; k++) {
            float d10 = ir0 * (m0[k] - m1[k]);
            float d11 = ir1 * (m1[k] - m2[k]);
            float dd = d10 - d11;
            float D1 = d10 + cr * dd;
            float D2 = ir01 * dd;
            if (!sde) x[k] = c1 * x[k] - c2 * m0[k] + c3 * D1 - c4 * D2;
            else x[k] = c1 * x[k] + c2 * m0[k] + c3 * D1 + c4 * D2 + cz * z[k];
        }
    }
    if (s->lower_order_nums < order) s->lower_order_nums++;
    return 0;
}

int sd_sched_step(sd_sched *s, int i, const float *model_output, float *x, size_t n, const float *noise) {
    if (!s->timesteps) return sd_set_error("scheduler: set_timesteps was not called");
    if (i < 0 || i >= s->num_steps)
        return sd_set_error("scheduler: step %d out of range [0, %d)", i, s->num_steps);
    if (n == 0) return sd_set_error("scheduler: empty sample");
    if (s->n == 0) {
        s->n = n;
        s->scratch = sd_xmalloc(n * sizeof(float));
        s->scratch2 = sd_xmalloc(n * sizeof(float));
        s->noise_buf = sd_xmalloc(n * sizeof(float));
    } else if (s->n != n)
        return sd_set_error("scheduler: sample size changed from %zu to %zu elements", s->n, n);
    int stateful = s->kind == SD_SCHED_PNDM || s->kind == SD_SCHED_DPM;
    if (stateful && i != s->next_step)
        return sd_set_error("scheduler: %s steps must be taken in order (expected step %d, got %d)",
                            sd_sched_kind_name(s->kind), s->next_step, i);
    const float *z = NULL;
    if (sd_sched_needs_noise(s, i)) {
        if (noise) z = noise;
        else if (s->rng) {
            sd_rng_normal(s->rng, s->noise_buf, n);
            z = s->noise_buf;
        } else
            return sd_set_error("scheduler: %s step %d needs noise: pass a noise buffer or set an rng",
                                sd_sched_kind_name(s->kind), i);
    }
    int rc = 0;
    switch (s->kind) {
    case SD_SCHED_DDPM: rc = step_ddpm(s, i, model_output, x, n, z); break;
    case SD_SCHED_DDIM: rc = step_ddim(s, i, model_output, x, n, z); break;
    case SD_SCHED_PNDM: rc = step_pndm(s, i, model_output, x, n); break;
    case SD_SCHED_EULER:
    case SD_SCHED_EULER_A: rc = step_euler(s, i, model_output, x, n, z); break;
    case SD_SCHED_DPM: rc = step_dpm(s, i, model_output, x, n, z); break;
    }
    if (!rc) s->next_step = i + 1;
    return rc;
}

/* ---- training helpers ---------------------------------------------------- */

static int check_t(const sd_sched *s, const int *t, int batch) {
    for (int b = 0; b < batch; b++)
        if (t[b] < 0 || t[b] >= s->T)
            return sd_set_error("scheduler: training timestep %d outside [0, %d)", t[b], s->T);
    return 0;
}

int sd_sched_add_noise(const sd_sched *s, const float *x0, const float *noise, const int *t, int batch,
                       size_t per_item, float *out) {
    if (check_t(s, t, batch)) return -1;
    for (int b = 0; b < batch; b++) {
        float a = s->alphas_cumprod[t[b]];
        float sa = sqrtf(a), sb = sqrtf(1 - a);
        size_t o = (size_t)b * per_item;
        for (size_t k = 0; k < per_item; k++) out[o + k] = sa * x0[o + k] + sb * noise[o + k];
    }
    return 0;
}

int sd_sched_get_velocity(const sd_sched *s, const float *x0, const float *noise, const int *t, int batch,
                          size_t per_item, float *out) {
    if (check_t(s, t, batch)) return -1;
    for (int b = 0; b < batch; b++) {
        float a = s->alphas_cumprod[t[b]];
        float sa = sqrtf(a), sb = sqrtf(1 - a);
        size_t o = (size_t)b * per_item;
        for (size_t k = 0; k < per_item; k++) out[o + k] = sa * noise[o + k] - sb * x0[o + k];
    }
    return 0;
}

float sd_sched_snr(const sd_sched *s, int t) {
    if (t < 0) t = 0;
    if (t >= s->T) t = s->T - 1;
    float a = s->alphas_cumprod[t];
    float r = sqrtf(a) / sqrtf(1.0f - a);
    return r * r;
}

float sd_min_snr_weight(float snr, float gamma, int v_prediction) {
    float w = snr < gamma ? snr : gamma; /* torch.stack([snr, gamma]).min(dim=1) */
    return v_prediction ? w / (snr + 1) : w / snr;
}
