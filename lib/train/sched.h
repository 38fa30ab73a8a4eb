/* sched.h — learning-rate schedules of diffusers.optimization.get_scheduler.
 *
 * Each schedule is torch's LambdaLR: lr(s) = base_lr * lambda(s), where s is
 * the scheduler position = the number of optimizer steps already taken (the
 * training scripts call lr_scheduler.step() once after each optimizer step,
 * never on gradient-accumulation micro-steps). So the k-th optimizer update
 * (k = 1, 2, ...) uses lr(k-1), and with warmup W > 0 the very first update
 * uses lr 0, as in diffusers. Under accelerate with P processes the script
 * passes warmup*P and total*P and steps the scheduler P times per optimizer
 * step; the lambdas are ratios of those integers, so the values are exactly
 * the single-process ones computed here with warmup and total in optimizer
 * steps (trainers.md §1.2).
 *
 * All arithmetic is in double in the order of diffusers 0.39's Python code,
 * with libm's cos/pow (CPython uses the same), so lr values are bit-equal to
 * what torch hands the optimizer.
 *
 *   constant              1
 *   constant_with_warmup  s/max(1,W) while s < W, then 1
 *   linear                warmup, then max(0, (N-s)/max(1,N-W))
 *   cosine                warmup, then max(0, 0.5(1+cos(pi*c*2*p))), p = (s-W)/max(1,N-W), c = num_cycles (0.5)
 *   cosine_with_restarts  warmup, then p >= 1 -> 0, else max(0, 0.5(1+cos(pi*((c*p) mod 1)))), c = num_cycles (1)
 *   polynomial            warmup, then s > N -> lr_end/lr0, else ((lr0-lr_end)(1-(s-W)/(N-W))^power + lr_end)/lr0
 *   piecewise_constant    "m1:s1,m2:s2,...,m_last": m_i for the first rule with s < s_i (rules sorted by s_i), else m_last
 */
#ifndef SD_TRAIN_SCHED_H
#define SD_TRAIN_SCHED_H

#include <stdint.h>

#include <cJSON.h>

typedef enum {
    SD_LR_CONSTANT,
    SD_LR_CONSTANT_WITH_WARMUP,
    SD_LR_LINEAR,
    SD_LR_COSINE,
    SD_LR_COSINE_WITH_RESTARTS,
    SD_LR_POLYNOMIAL,
    SD_LR_PIECEWISE_CONSTANT,
} sd_lr_kind;

#define SD_LR_MAX_RULES 64

typedef struct {
    sd_lr_kind kind;
    double base_lr;     /* the optimizer's initial lr (after --scale_lr) */
    int64_t warmup;     /* W, in optimizer steps */
    int64_t total;      /* N, in optimizer steps (max_train_steps) */
    double num_cycles;  /* cosine: 0.5; cosine_with_restarts: 1 (get_scheduler's num_cycles) */
    double power;       /* polynomial: 1.0 */
    double lr_end;      /* polynomial: 1e-7 */
    int nrules;         /* piecewise_constant, sorted by step */
    int64_t rule_step[SD_LR_MAX_RULES];
    double rule_mult[SD_LR_MAX_RULES];
    double last_mult;
    char rules[512];    /* the rules string, for checkpoints */
} sd_lr_schedule;

/* Parse a schedule name (diffusers' SchedulerType values). */
int sd_lr_kind_parse(const char *name, sd_lr_kind *out);
const char *sd_lr_kind_name(sd_lr_kind k);

/* Set up a schedule with get_scheduler's defaults for the kind (num_cycles
 * 0.5 for cosine, 1 for cosine_with_restarts; power 1; lr_end 1e-7). Adjust
 * num_cycles / power / lr_end afterwards if wanted, then call
 * sd_lr_schedule_check. Fails like diffusers does: polynomial needs
 * base_lr > lr_end; negative steps are rejected. */
int sd_lr_schedule_init(sd_lr_schedule *s, sd_lr_kind kind, double base_lr, int64_t warmup, int64_t total);
/* piecewise_constant: parse step_rules ("1:10,0.1:20,0.01:30,0.005"). */
int sd_lr_schedule_set_rules(sd_lr_schedule *s, const char *step_rules);
/* Validate after changing fields by hand. */
int sd_lr_schedule_check(const sd_lr_schedule *s);

/* The LambdaLR multiplier at scheduler position step (>= 0). */
double sd_lr_lambda(const sd_lr_schedule *s, int64_t step);
/* base_lr * lambda(step): the lr the optimizer uses for the update after
 * `step` completed optimizer steps. */
double sd_lr_at(const sd_lr_schedule *s, int64_t step);

/* Checkpoint form: {"name", "base_lr", "warmup", "total", "num_cycles",
 * "power", "lr_end", "step_rules"}; the position is the optimizer step,
 * stored by the caller. */
cJSON *sd_lr_schedule_json(const sd_lr_schedule *s);
int sd_lr_schedule_from_json(sd_lr_schedule *s, const cJSON *j);

#endif
