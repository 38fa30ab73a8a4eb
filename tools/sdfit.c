/* sdfit — full UNet fine-tuning on latent shards (sdencode's output), with the
 * options and semantics of diffusers' examples/text_to_image/
 * train_text_to_image.py. Option parsing and orchestration only: the loop is
 * lib/train/trainer.{h,c}; the manual is man/sdfit.1.
 *
 *   sdfit LATENTS --pretrained_model_name_or_path MODEL --output_dir OUT [OPTIONS]
 */
#include "core/cli.h"
#include "core/error.h"
#include "core/progress.h"
#include "train/trainer.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf(
        "Usage: sdfit LATENTS --pretrained_model_name_or_path MODEL [--output_dir OUT] [OPTIONS]\n"
        "Fine-tune the UNet of MODEL on a latent shard set (sdencode's output), as diffusers'\n"
        "train_text_to_image.py does, with exact resume. Defaults are the reference's.\n"
        "\n"
        "Inputs:\n"
        "  LATENTS, --train_data_dir, --latents SET   latent shard set: directory, manifest, glob or {000000..000099}\n"
        "      --pretrained_model_name_or_path MODEL  base pipeline (diffusers dir or single-file .safetensors)\n"
        "      --variant NAME           read NAME-variant weights (e.g. fp16)\n"
        "      --init_unet_from_config CONFIG  train a randomly initialised UNet (torch/diffusers default init)\n"
        "      --resolution N           must match the shards (default: theirs)\n"
        "      --ignore_provenance      train on latents of another VAE/tokenizer/text encoder (warn only)\n"
        "Steps:\n"
        "      --train_batch_size N     16          --gradient_accumulation_steps N  1\n"
        "      --max_train_steps N      (epochs)    --num_train_epochs N             100\n"
        "Optimizer:\n"
        "      --learning_rate LR       1e-4        --scale_lr                       lr *= GA * batch\n"
        "      --lr_scheduler NAME      constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial\n"
        "      --lr_warmup_steps N      500         --lr_num_cycles N (restarts) 1   --lr_power P (polynomial) 1\n"
        "      --adam_beta1 0.9  --adam_beta2 0.999  --adam_weight_decay 1e-2  --adam_epsilon 1e-8\n"
        "      --max_grad_norm X        1.0 (<= 0: no clipping)\n"
        "      --use_ema [--foreach_ema] EMA of the weights (diffusers EMAModel); its weights are the output\n"
        "Objective:\n"
        "      --noise_offset X  --input_perturbation X  --snr_gamma G (5 recommended)\n"
        "      --prediction_type epsilon|v_prediction  (default: the model's scheduler config)\n"
        "      --gradient_checkpointing  --seed N\n"
        "Output:\n"
        "      --output_dir DIR         sd-model-finetuned (a diffusers pipeline + checkpoint-N/ + logs/)\n"
        "      --checkpointing_steps N  500         --checkpoints_total_limit N\n"
        "      --resume_from_checkpoint PATH|checkpoint-N|latest\n"
        "      --logging_dir DIR        logs (under OUT)   --report_to tensorboard|none   --tracker_project_name NAME\n"
        "      --validation_prompts P... --validation_epochs N (5)  --validation_steps N\n"
        "      --replay FILE            take the random draws from FILE (formats/replay.md)\n"
        "      --on_nan abort|skip      non-finite loss or gradients: stop (default) or skip the update\n"
        "  -j, --threads N             threads (default: all cores)\n"
        "  -q, --quiet                 no progress, notes or summary\n"
        "  -h, --help, -V, --version\n"
        "Reference options that do not apply here (hub, xformers, mixed precision on CPU, 8-bit Adam, data loading\n"
        "and image preprocessing, which sdprep does) are accepted with a note. Options may be written with\n"
        "underscores or hyphens. Exit status: 0 ok, 1 error, 2 usage.\n");
}

enum {
    O_MODEL = 256, O_VARIANT, O_DATA, O_INIT, O_RES, O_IGNPROV, O_BS, O_GA, O_MAXSTEPS, O_EPOCHS, O_LR, O_SCALELR,
    O_LRSCHED, O_WARMUP, O_CYCLES, O_POWER, O_B1, O_B2, O_WD, O_EPS, O_CLIP, O_EMA, O_FOREACH, O_NOFF, O_IP, O_SNR,
    O_PRED, O_GC, O_SEED, O_OUT, O_CKSTEPS, O_CKLIMIT, O_RESUME, O_LOGDIR, O_REPORT, O_TRACKER, O_VEPOCHS, O_VSTEPS,
    O_REPLAY, O_ONNAN, O_DEVICE,
    /* accepted with a note */
    O_NOTE_ARG, O_NOTE_FLAG, O_MIXED, O_DREAM, O_DREAMP
};

typedef struct {
    const char *name;
    const char *why;
} note;

/* reference options that do not apply: name -> why (printed once) */
static const note notes[] = {
    {"revision", "hub revisions are not fetched (give a local model directory)"},
    {"non_ema_revision", "hub revisions are not fetched"},
    {"cache_dir", "nothing is downloaded"},
    {"dataset_name", "hub datasets are not fetched: sdprep reads an imagefolder"},
    {"dataset_config_name", "hub datasets are not fetched"},
    {"image_column", "captions and images were chosen by sdprep"},
    {"caption_column", "captions and images were chosen by sdprep"},
    {"max_train_samples", "sample selection is sdprep's --max_train_samples"},
    {"image_interpolation_mode", "image preprocessing is done by sdprep"},
    {"dataloader_num_workers", "shards are read directly"},
    {"hub_token", "no hub upload"},
    {"hub_model_id", "no hub upload"},
    {"local_rank", "single process"},
    {"push_to_hub", "no hub upload"},
    {"center_crop", "image preprocessing is done by sdprep (its --center_crop)"},
    {"random_flip", "flips come from the latent set (sdprep --random_flip + sdencode)"},
    {"use_8bit_adam", "8-bit AdamW is not implemented: torch AdamW (fp32 states) is used"},
    {"allow_tf32", "fp32 on the CPU"},
    {"enable_xformers_memory_efficient_attention", "attention is always memory-efficient (tiled)"},
    {"offload_ema", "the EMA weights live in host memory anyway"},
    {NULL, NULL}};

static const char *note_for(const char *name) {
    for (int i = 0; notes[i].name; i++)
        if (!strcmp(notes[i].name, name)) return notes[i].why;
    return "not applicable";
}

/* --validation_prompts takes one or more values (argparse nargs="+"): pull
 * them out of argv before getopt so that they are not mistaken for LATENTS. */
static int take_prompts(int *argc, char **argv, sd_train_opts *o) {
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        char *a = argv[i];
        if (!strcmp(a, "--")) {
            while (i < *argc) argv[out++] = argv[i++];
            break;
        }
        if (!strncmp(a, "--validation_prompts=", 21)) {
            if (o->n_validation_prompts >= SD_TRAIN_MAX_PROMPTS) sd_usage_error("at most %d validation prompts", SD_TRAIN_MAX_PROMPTS);
            o->validation_prompts[o->n_validation_prompts++] = a + 21;
            continue;
        }
        if (!strcmp(a, "--validation_prompts")) {
            int k = 0;
            while (i + 1 < *argc && strncmp(argv[i + 1], "--", 2) && !(argv[i + 1][0] == '-' && argv[i + 1][1] && !argv[i + 1][2])) {
                if (o->n_validation_prompts >= SD_TRAIN_MAX_PROMPTS) sd_usage_error("at most %d validation prompts", SD_TRAIN_MAX_PROMPTS);
                o->validation_prompts[o->n_validation_prompts++] = argv[++i];
                k++;
            }
            if (!k) sd_usage_error("--validation_prompts needs at least one prompt");
            continue;
        }
        argv[out++] = a;
    }
    argv[out] = NULL;
    *argc = out;
    return 0;
}

static void parse(int argc, char **argv, sd_train_opts *o, const char **device) {
    static const struct option lo[] = {
        {"pretrained_model_name_or_path", required_argument, NULL, O_MODEL},
        {"variant", required_argument, NULL, O_VARIANT},
        {"train_data_dir", required_argument, NULL, O_DATA},
        {"latents", required_argument, NULL, O_DATA},
        {"init_unet_from_config", required_argument, NULL, O_INIT},
        {"resolution", required_argument, NULL, O_RES},
        {"ignore_provenance", no_argument, NULL, O_IGNPROV},
        {"train_batch_size", required_argument, NULL, O_BS},
        {"gradient_accumulation_steps", required_argument, NULL, O_GA},
        {"max_train_steps", required_argument, NULL, O_MAXSTEPS},
        {"num_train_epochs", required_argument, NULL, O_EPOCHS},
        {"learning_rate", required_argument, NULL, O_LR},
        {"scale_lr", no_argument, NULL, O_SCALELR},
        {"lr_scheduler", required_argument, NULL, O_LRSCHED},
        {"lr_warmup_steps", required_argument, NULL, O_WARMUP},
        {"lr_num_cycles", required_argument, NULL, O_CYCLES},
        {"lr_power", required_argument, NULL, O_POWER},
        {"adam_beta1", required_argument, NULL, O_B1},
        {"adam_beta2", required_argument, NULL, O_B2},
        {"adam_weight_decay", required_argument, NULL, O_WD},
        {"adam_epsilon", required_argument, NULL, O_EPS},
        {"max_grad_norm", required_argument, NULL, O_CLIP},
        {"use_ema", no_argument, NULL, O_EMA},
        {"foreach_ema", no_argument, NULL, O_FOREACH},
        {"noise_offset", required_argument, NULL, O_NOFF},
        {"input_perturbation", required_argument, NULL, O_IP},
        {"snr_gamma", required_argument, NULL, O_SNR},
        {"prediction_type", required_argument, NULL, O_PRED},
        {"gradient_checkpointing", no_argument, NULL, O_GC},
        {"seed", required_argument, NULL, O_SEED},
        {"output_dir", required_argument, NULL, O_OUT},
        {"checkpointing_steps", required_argument, NULL, O_CKSTEPS},
        {"checkpoints_total_limit", required_argument, NULL, O_CKLIMIT},
        {"resume_from_checkpoint", required_argument, NULL, O_RESUME},
        {"logging_dir", required_argument, NULL, O_LOGDIR},
        {"report_to", required_argument, NULL, O_REPORT},
        {"tracker_project_name", required_argument, NULL, O_TRACKER},
        {"validation_epochs", required_argument, NULL, O_VEPOCHS},
        {"validation_steps", required_argument, NULL, O_VSTEPS},
        {"replay", required_argument, NULL, O_REPLAY},
        {"on_nan", required_argument, NULL, O_ONNAN},
        {"device", required_argument, NULL, O_DEVICE},
        {"mixed_precision", required_argument, NULL, O_MIXED},
        {"dream_training", no_argument, NULL, O_DREAM},
        {"dream_detail_preservation", required_argument, NULL, O_DREAMP},
        /* not applicable: value-taking, then flags */
        {"revision", required_argument, NULL, O_NOTE_ARG},
        {"non_ema_revision", required_argument, NULL, O_NOTE_ARG},
        {"cache_dir", required_argument, NULL, O_NOTE_ARG},
        {"dataset_name", required_argument, NULL, O_NOTE_ARG},
        {"dataset_config_name", required_argument, NULL, O_NOTE_ARG},
        {"image_column", required_argument, NULL, O_NOTE_ARG},
        {"caption_column", required_argument, NULL, O_NOTE_ARG},
        {"max_train_samples", required_argument, NULL, O_NOTE_ARG},
        {"image_interpolation_mode", required_argument, NULL, O_NOTE_ARG},
        {"dataloader_num_workers", required_argument, NULL, O_NOTE_ARG},
        {"hub_token", required_argument, NULL, O_NOTE_ARG},
        {"hub_model_id", required_argument, NULL, O_NOTE_ARG},
        {"local_rank", required_argument, NULL, O_NOTE_ARG},
        {"push_to_hub", no_argument, NULL, O_NOTE_FLAG},
        {"center_crop", no_argument, NULL, O_NOTE_FLAG},
        {"random_flip", no_argument, NULL, O_NOTE_FLAG},
        {"use_8bit_adam", no_argument, NULL, O_NOTE_FLAG},
        {"allow_tf32", no_argument, NULL, O_NOTE_FLAG},
        {"enable_xformers_memory_efficient_attention", no_argument, NULL, O_NOTE_FLAG},
        {"offload_ema", no_argument, NULL, O_NOTE_FLAG},
        {"threads", required_argument, NULL, 'j'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    int c, idx = 0;
    const char *data = NULL;
    while ((c = getopt_long(argc, argv, "j:qhV", lo, &idx)) != -1) {
        int bad = 0;
        double d;
        switch (c) {
        case O_MODEL: o->pretrained_model_name_or_path = optarg; break;
        case O_VARIANT: o->variant = optarg; break;
        case O_DATA:
            if (data) sd_usage_error("the latent set is given twice ('%s' and '%s')", data, optarg);
            data = optarg;
            break;
        case O_INIT: o->init_unet_from_config = optarg; break;
        case O_RES: bad = sd_parse_int(optarg, "resolution", 8, 1 << 16, &o->resolution); break;
        case O_IGNPROV: o->ignore_provenance = 1; break;
        case O_BS: bad = sd_parse_int(optarg, "train_batch_size", 1, 65535, &o->train_batch_size); break;
        case O_GA: bad = sd_parse_int(optarg, "gradient_accumulation_steps", 1, 1 << 20, &o->gradient_accumulation_steps); break;
        case O_MAXSTEPS: bad = sd_parse_i64(optarg, "max_train_steps", 1, INT64_C(1) << 40, &o->max_train_steps); break;
        case O_EPOCHS: bad = sd_parse_i64(optarg, "num_train_epochs", 1, INT64_C(1) << 30, &o->num_train_epochs); break;
        case O_LR: bad = sd_parse_double(optarg, "learning_rate", 0, 1e6, &o->learning_rate); break;
        case O_SCALELR: o->scale_lr = 1; break;
        case O_LRSCHED: o->lr_scheduler = optarg; break;
        case O_WARMUP: bad = sd_parse_i64(optarg, "lr_warmup_steps", 0, INT64_C(1) << 40, &o->lr_warmup_steps); break;
        case O_CYCLES: bad = sd_parse_double(optarg, "lr_num_cycles", 0, 1e9, &o->lr_num_cycles); break;
        case O_POWER: bad = sd_parse_double(optarg, "lr_power", 0, 1e9, &o->lr_power); break;
        case O_B1: bad = sd_parse_double(optarg, "adam_beta1", 0, 1, &o->adam_beta1); break;
        case O_B2: bad = sd_parse_double(optarg, "adam_beta2", 0, 1, &o->adam_beta2); break;
        case O_WD: bad = sd_parse_double(optarg, "adam_weight_decay", 0, 1e6, &o->adam_weight_decay); break;
        case O_EPS: bad = sd_parse_double(optarg, "adam_epsilon", 0, 1, &o->adam_epsilon); break;
        case O_CLIP: bad = sd_parse_double(optarg, "max_grad_norm", -1e30, 1e30, &o->max_grad_norm); break;
        case O_EMA: o->use_ema = 1; break;
        case O_FOREACH: o->foreach_ema = 1; break;
        case O_NOFF: bad = sd_parse_double(optarg, "noise_offset", -1e6, 1e6, &o->noise_offset); break;
        case O_IP: bad = sd_parse_double(optarg, "input_perturbation", -1e6, 1e6, &o->input_perturbation); break;
        case O_SNR:
            bad = sd_parse_double(optarg, "snr_gamma", 0, 1e30, &d);
            if (!bad && d <= 0) sd_usage_error("--snr_gamma must be positive");
            o->snr_gamma = d;
            break;
        case O_PRED:
            if (strcmp(optarg, "epsilon") && strcmp(optarg, "v_prediction"))
                sd_usage_error("--prediction_type: '%s' is not epsilon or v_prediction", optarg);
            o->prediction_type = optarg;
            break;
        case O_GC: o->gradient_checkpointing = 1; break;
        case O_SEED: bad = sd_parse_u64(optarg, "seed", &o->seed); o->have_seed = 1; break;
        case O_OUT: o->output_dir = optarg; break;
        case O_CKSTEPS: bad = sd_parse_i64(optarg, "checkpointing_steps", 1, INT64_C(1) << 40, &o->checkpointing_steps); break;
        case O_CKLIMIT: bad = sd_parse_int(optarg, "checkpoints_total_limit", 1, 1 << 30, &o->checkpoints_total_limit); break;
        case O_RESUME: o->resume_from_checkpoint = optarg; break;
        case O_LOGDIR: o->logging_dir = optarg; break;
        case O_REPORT:
            if (!strcmp(optarg, "tensorboard") || !strcmp(optarg, "all")) o->tensorboard = 1;
            else if (!strcmp(optarg, "none")) o->tensorboard = 0;
            else if (!strcmp(optarg, "wandb") || !strcmp(optarg, "comet_ml")) {
                if (!o->quiet) sd_note("--report_to %s: not available here; TensorBoard events and train_log.jsonl are written", optarg);
            } else sd_usage_error("--report_to: '%s' is not tensorboard, wandb, comet_ml, all or none", optarg);
            break;
        case O_TRACKER: o->tracker_project_name = optarg; break;
        case O_VEPOCHS: bad = sd_parse_i64(optarg, "validation_epochs", 0, INT64_C(1) << 40, &o->validation_epochs); break;
        case O_VSTEPS: bad = sd_parse_i64(optarg, "validation_steps", 0, INT64_C(1) << 40, &o->validation_steps); break;
        case O_REPLAY: o->replay = optarg; break;
        case O_ONNAN:
            if (!strcmp(optarg, "skip")) o->on_nan = SD_ON_NAN_SKIP;
            else if (!strcmp(optarg, "abort")) o->on_nan = SD_ON_NAN_ABORT;
            else sd_usage_error("--on_nan: '%s' is not skip or abort", optarg);
            break;
        case O_DEVICE:
            if (!strcmp(optarg, "cuda")) *device = optarg;
            else if (strcmp(optarg, "cpu")) sd_usage_error("--device: '%s' is not cpu or cuda", optarg);
            break;
        case O_MIXED:
            if (strcmp(optarg, "no") && strcmp(optarg, "fp16") && strcmp(optarg, "bf16"))
                sd_usage_error("--mixed_precision: '%s' is not no, fp16 or bf16", optarg);
            if (strcmp(optarg, "no") && !o->quiet) sd_note("--mixed_precision %s: the CPU backend trains in fp32", optarg);
            break;
        case O_DREAM: sd_usage_error("--dream_training is not implemented");
        case O_DREAMP:
            if (!o->quiet) sd_note("--dream_detail_preservation: only used with --dream_training");
            break;
        case O_NOTE_ARG:
        case O_NOTE_FLAG:
            if (!o->quiet) sd_note("--%s: ignored (%s)", lo[idx].name, note_for(lo[idx].name));
            break;
        case 'j': bad = sd_parse_int(optarg, "threads", 1, 1024, &o->threads); break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(); exit(0);
        case 'V': sd_print_version();
        default: sd_usage_error("invalid option");
        }
        if (bad) sd_usage_error("%s", sd_last_error());
    }
    if (optind < argc) {
        if (data) sd_usage_error("the latent set is given twice ('%s' and '%s')", data, argv[optind]);
        data = argv[optind++];
    }
    if (optind < argc) sd_usage_error("unexpected argument '%s'", argv[optind]);
    if (!data) sd_usage_error("no latent shard set given (LATENTS, --train_data_dir or --latents)");
    if (!o->pretrained_model_name_or_path) sd_usage_error("--pretrained_model_name_or_path is required");
    o->data = data;
}

int main(int argc, char **argv) {
    sd_set_progname(argv[0]);
    sd_cli_normalize(argc, argv);
    cJSON *cli = cJSON_CreateArray();
    for (int i = 0; i < argc; i++) cJSON_AddItemToArray(cli, cJSON_CreateString(argv[i]));
    sd_train_opts o;
    sd_train_opts_init(&o);
    const char *device = "cpu";
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) o.quiet = 1;
    take_prompts(&argc, argv, &o);
    parse(argc, argv, &o, &device);
    if (!strcmp(device, "cuda"))
        sd_die("--device cuda: this build trains on the CPU backend only (the CUDA backend is a separate issue)");
    if (o.quiet) sd_progress_disable_all();
    o.cli = cli;
    sd_trainer *t;
    if (sd_trainer_create(&o, &t)) sd_die_last();
    if (sd_trainer_run(t)) {
        /* a failed run leaves its checkpoints as they were */
        sd_die_last();
    }
    sd_trainer_free(t);
    cJSON_Delete(cli);
    return 0;
}
