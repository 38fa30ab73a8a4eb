/* sched.c — diffusers 0.39 get_scheduler lambdas, term for term.
 *
 * Each lambda mirrors the Python expression order (a + b*c is evaluated as
 * Python would, in double); FP contraction is off so no step is fused.
 */
#pragma GCC optimize("fp-contract=off")
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "train/sched.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static const char *const kind_names[] = {
    [SD_LR_CONSTANT] = "constant",
    [SD_LR_CONSTANT_WITH_WARMUP] = "constant_with_warmup",
    [SD_LR_LINEAR] = "linear",
    [SD_LR_COSINE] = "cosine",
    [SD_LR_COSINE_WITH_RESTARTS] = "cosine_with_restarts",
    [SD_LR_POLYNOMIAL] = "polynomial",
    [SD_LR_PIECEWISE_CONSTANT] = "piecewise_constant",
};
#define NKINDS ((int)(sizeof kind_names / sizeof kind_names[0]))

int sd_lr_kind_parse(const char *name, sd_lr_kind *out) {
    for (int k = 0; k < NKINDS; k++)
        if (!strcmp(name, kind_names[k])) {
            *out = (sd_lr_kind)k;
            return 0;
        }
    return sd_set_error("unknown lr scheduler \"%s\" (constant, constant_with_warmup, linear, cosine, "
                        "cosine_with_restarts, polynomial, piecewise_constant)", name);
}

const char *sd_lr_kind_name(sd_lr_kind k) { return (int)k >= 0 && (int)k < NKINDS ? kind_names[k] : "?"; }

int sd_lr_schedule_check(const sd_lr_schedule *s) {
    if ((int)s->kind < 0 || (int)s->kind >= NKINDS) return sd_set_error("lr scheduler: invalid kind");
    if (!(s->base_lr >= 0) || !isfinite(s->base_lr)) return sd_set_error("lr scheduler: invalid learning rate %g", s->base_lr);
    if (s->warmup < 0) return sd_set_error("lr scheduler: negative warmup steps");
    if (s->total < 0) return sd_set_error("lr scheduler: negative total steps");
    if (s->kind == SD_LR_POLYNOMIAL && !(s->base_lr > s->lr_end))
        return sd_set_error("lr scheduler polynomial: lr_end (%g) must be smaller than initial lr (%g)", s->lr_end,
                            s->base_lr);
    if (s->kind == SD_LR_PIECEWISE_CONSTANT && !s->rules[0])
        return sd_set_error("lr scheduler piecewise_constant: no step rules");
    return 0;
}

int sd_lr_schedule_init(sd_lr_schedule *s, sd_lr_kind kind, double base_lr, int64_t warmup, int64_t total) {
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->base_lr = base_lr;
    s->warmup = warmup;
    s->total = total;
    /* get_scheduler passes num_cycles (default 1) only to cosine_with_restarts;
     * cosine keeps get_cosine_schedule_with_warmup's 0.5. */
    s->num_cycles = kind == SD_LR_COSINE ? 0.5 : 1.0;
    s->power = 1.0;
    s->lr_end = 1e-7;
    s->last_mult = 1.0;
    if (kind == SD_LR_PIECEWISE_CONSTANT) return 0; /* rules come next */
    return sd_lr_schedule_check(s);
}

/* Python float() of a rules field: strtod over the whole (trimmed) token. */
static int parse_num(const char *a, const char *b, double *out, int integer) {
    while (a < b && (*a == ' ' || *a == '\t')) a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
    char buf[64];
    size_t n = (size_t)(b - a);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, a, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    if (integer) {
        long long v = strtoll(buf, &end, 10);
        if (*end || errno) return -1;
        *out = (double)v;
    } else {
        double v = strtod(buf, &end);
        if (*end || errno || !isfinite(v)) return -1;
        *out = v;
    }
    return 0;
}

int sd_lr_schedule_set_rules(sd_lr_schedule *s, const char *rules) {
    if (strlen(rules) >= sizeof s->rules) return sd_set_error("lr scheduler: step rules too long");
    int n = 0;
    const char *p = rules;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        if (!comma) { /* the last field: the final multiplier */
            if (parse_num(p, end, &s->last_mult, 0))
                return sd_set_error("lr scheduler: bad step rules \"%s\" (want \"m1:s1,m2:s2,...,m_last\")", rules);
            break;
        }
        const char *colon = memchr(p, ':', (size_t)(end - p));
        double mult, step;
        if (!colon || parse_num(p, colon, &mult, 0) || parse_num(colon + 1, end, &step, 1))
            return sd_set_error("lr scheduler: bad step rule \"%.*s\" in \"%s\" (want MULT:STEPS)", (int)(end - p), p,
                                rules);
        /* a dict keyed by steps: a repeated step replaces the earlier value */
        int k;
        for (k = 0; k < n && s->rule_step[k] != (int64_t)step; k++) {}
        if (k == n) {
            if (n == SD_LR_MAX_RULES) return sd_set_error("lr scheduler: more than %d step rules", SD_LR_MAX_RULES);
            n++;
        }
        s->rule_step[k] = (int64_t)step;
        s->rule_mult[k] = mult;
        p = comma + 1;
    }
    /* sort by step (insertion sort: few rules) */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && s->rule_step[j - 1] > s->rule_step[j]; j--) {
            int64_t ts = s->rule_step[j]; s->rule_step[j] = s->rule_step[j - 1]; s->rule_step[j - 1] = ts;
            double tm = s->rule_mult[j]; s->rule_mult[j] = s->rule_mult[j - 1]; s->rule_mult[j - 1] = tm;
        }
    s->nrules = n;
    snprintf(s->rules, sizeof s->rules, "%s", rules);
    return 0;
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

double sd_lr_lambda(const sd_lr_schedule *s, int64_t step) {
    const int64_t W = s->warmup, N = s->total;
    const double cur = (double)step;
    switch (s->kind) {
    case SD_LR_CONSTANT:
        return 1.0;
    case SD_LR_PIECEWISE_CONSTANT:
        for (int i = 0; i < s->nrules; i++)
            if (step < s->rule_step[i]) return s->rule_mult[i];
        return s->last_mult;
    default:
        break;
    }
    if (step < W) return cur / (double)max64(1, W); /* float(s) / float(max(1, W)) */
    switch (s->kind) {
    case SD_LR_CONSTANT_WITH_WARMUP:
        return 1.0;
    case SD_LR_LINEAR: {
        /* f_min + (f_max - f_min) * max(0.0, progress) with f_min 0, f_max 1 */
        double progress = (double)(N - step) / (double)max64(1, N - W);
        return 0.0 + (1.0 - 0.0) * (progress > 0.0 ? progress : 0.0);
    }
    case SD_LR_COSINE: {
        double progress = (double)(step - W) / (double)max64(1, N - W);
        double v = 0.5 * (1.0 + cos(M_PI * s->num_cycles * 2.0 * progress));
        return v > 0.0 ? v : 0.0;
    }
    case SD_LR_COSINE_WITH_RESTARTS: {
        double progress = (double)(step - W) / (double)max64(1, N - W);
        if (progress >= 1.0) return 0.0;
        /* Python's % on floats: the result takes the divisor's sign */
        double x = fmod(s->num_cycles * progress, 1.0);
        if (x < 0) x += 1.0;
        double v = 0.5 * (1.0 + cos(M_PI * x));
        return v > 0.0 ? v : 0.0;
    }
    case SD_LR_POLYNOMIAL: {
        const double lr_init = s->base_lr;
        if (step > N) return s->lr_end / lr_init;
        double lr_range = lr_init - s->lr_end;
        int64_t decay_steps = N - W;
        /* decay_steps == 0 here means s == N == W: Python divides by zero
         * (ZeroDivisionError); we take the end of the decay instead. */
        if (decay_steps == 0) return s->lr_end / lr_init;
        double pct_remaining = 1.0 - (double)(step - W) / (double)decay_steps;
        double decay = lr_range * pow(pct_remaining, s->power) + s->lr_end;
        return decay / lr_init;
    }
    default:
        return 1.0;
    }
}

double sd_lr_at(const sd_lr_schedule *s, int64_t step) { return s->base_lr * sd_lr_lambda(s, step); }

cJSON *sd_lr_schedule_json(const sd_lr_schedule *s) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", sd_lr_kind_name(s->kind));
    cJSON_AddNumberToObject(j, "base_lr", s->base_lr);
    cJSON_AddNumberToObject(j, "warmup", (double)s->warmup);
    cJSON_AddNumberToObject(j, "total", (double)s->total);
    cJSON_AddNumberToObject(j, "num_cycles", s->num_cycles);
    cJSON_AddNumberToObject(j, "power", s->power);
    cJSON_AddNumberToObject(j, "lr_end", s->lr_end);
    if (s->kind == SD_LR_PIECEWISE_CONSTANT) cJSON_AddStringToObject(j, "step_rules", s->rules);
    return j;
}

static int get_num(const cJSON *j, const char *key, double *out) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(x)) return sd_set_error("lr scheduler state: missing or invalid \"%s\"", key);
    *out = x->valuedouble;
    return 0;
}

int sd_lr_schedule_from_json(sd_lr_schedule *s, const cJSON *j) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
    if (!cJSON_IsString(name)) return sd_set_error("lr scheduler state: missing \"name\"");
    sd_lr_kind kind = SD_LR_CONSTANT;
    if (sd_lr_kind_parse(name->valuestring, &kind)) return sd_error_prefix("lr scheduler state");
    double base = 0, w = 0, n = 0, c = 0, pw = 0, e = 0;
    if (get_num(j, "base_lr", &base) || get_num(j, "warmup", &w) || get_num(j, "total", &n) ||
        get_num(j, "num_cycles", &c) || get_num(j, "power", &pw) || get_num(j, "lr_end", &e))
        return -1;
    sd_lr_schedule t;
    memset(&t, 0, sizeof t);
    t.kind = kind;
    t.base_lr = base;
    t.warmup = (int64_t)w;
    t.total = (int64_t)n;
    t.num_cycles = c;
    t.power = pw;
    t.lr_end = e;
    t.last_mult = 1.0;
    if (kind == SD_LR_PIECEWISE_CONSTANT) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "step_rules");
        if (!cJSON_IsString(r)) return sd_set_error("lr scheduler state: missing \"step_rules\"");
        if (sd_lr_schedule_set_rules(&t, r->valuestring)) return -1;
    }
    if (sd_lr_schedule_check(&t)) return sd_error_prefix("lr scheduler state");
    *s = t;
    return 0;
}
