/* sdsample — text to image with a Stable Diffusion model: diffusers'
 * StableDiffusionPipeline (lib/sample/txt2img.h), written as PNGs with
 * A1111-style "parameters".
 *
 *   sdsample --pretrained_model_name_or_path MODEL [--unet DIR] --prompt TEXT ... -o DIR [OPTIONS]
 *
 * Every image has a global index j (prompts in order, num_images_per_prompt
 * images each) and the seed --seed + j, so an image depends only on its seed,
 * prompt and the options, not on --batch_size or on the other prompts.
 * Everything that can be refused (configs that do not fit, sizes, existing
 * files, prompt files, init latents) is checked before the weights are loaded
 * and before anything is written. Details: man/sdsample.1.
 */
#include "backend/backend.h"
#include "core/cli.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "io/image.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/clip_text.h"
#include "models/modeldir.h"
#include "models/unet.h"
#include "models/vae.h"
#include "sample/scheduler.h"
#include "sample/txt2img.h"
#include "text/clip_tokenizer.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_PATTERN "{index:05d}-{seed}.png"

typedef struct {
    const char *model, *unet, *variant, *config_dir, *device;
    const char **prompts;
    int nprompts;
    const char *prompts_file, *negative_prompt, *scheduler, *output_dir, *pattern, *init_latents;
    int steps, images_per_prompt, height, width, clip_skip, batch_size, threads;
    double guidance_scale, guidance_rescale, eta;
    uint64_t seed;
    int have_seed, force, save_latents, quiet, verbose, no_model_hash;
} opts;

static void usage(void) {
    printf("Usage: sdsample --pretrained_model_name_or_path MODEL --prompt TEXT [--prompt TEXT ...] -o DIR [OPTIONS]\n"
           "Render images from text prompts with a Stable Diffusion model (diffusers' StableDiffusionPipeline).\n"
           "\n"
           "Model:\n"
           "      --pretrained_model_name_or_path MODEL  diffusers model dir or single-file .safetensors\n"
           "      --unet DIR              use this UNet (a unet/ dir, or a pipeline dir whose unet/ is used)\n"
           "      --variant NAME          read NAME-variant weights (e.g. fp16)\n"
           "      --config_dir DIR        single-file MODEL: configs, tokenizer, scheduler from this diffusers dir\n"
           "Prompts:\n"
           "      --prompt TEXT           a prompt (repeatable)\n"
           "      --prompts_file FILE     prompts one per line (blank lines ignored); '-' reads stdin\n"
           "      --negative_prompt TEXT  negative prompt for every image (default \"\")\n"
           "Sampling:\n"
           "      --num_inference_steps N (default 50)\n"
           "      --guidance_scale G      classifier-free guidance, on when > 1 (default 7.5)\n"
           "      --guidance_rescale R    rescale_noise_cfg factor (default 0)\n"
           "      --scheduler NAME        ddim, pndm, ddpm, euler, euler_a, dpm++2m, dpm++2m-sde, with -karras for\n"
           "                              euler and dpm++2m[-sde]; default: the model's scheduler_config.json\n"
           "      --eta E                 DDIM eta (default 0)\n"
           "      --seed S                seed of image 0; image j uses S + j (default: random)\n"
           "      --num_images_per_prompt N  (default 1)\n"
           "      --height H, --width W   pixels (default: the UNet's sample_size x the VAE factor)\n"
           "      --clip_skip N           diffusers clip_skip: 1 = A1111's \"Clip skip 2\" (default 0)\n"
           "      --batch_size N          images per UNet batch (x2 with guidance; default 1)\n"
           "      --init_latents FILE     starting noise from a safetensors file ([N|1, C, h, w] or [C, h, w])\n"
           "Output:\n"
           "  -o, --output_dir DIR        where the PNGs go (created)\n"
           "      --name_pattern PAT      file names (default \"" DEFAULT_PATTERN "\"); fields {index} {seed}\n"
           "                              {prompt_index} {image} {steps} {scheduler} {width} {height} {prompt};\n"
           "                              {NAME:05d} pads numbers, {prompt:.20} truncates\n"
           "      --save_latents          also write NAME.safetensors: final latents and starting noise\n"
           "      --no_model_hash         do not hash the UNet weights for \"Model hash\"\n"
           "      --force                 replace existing files\n"
           "      --device cpu            compute device (cpu)\n"
           "  -j, --threads N             threads (default: all cores)\n"
           "  -q, --quiet                 no progress line, no summary\n"
           "  -v, --verbose               one line per UNet step with its time\n"
           "  -h, --help, -V, --version\n"
           "Options may be written with underscores or hyphens. Exit status: 0 ok, 1 error, 2 usage.\n");
}

enum {
    O_MODEL = 256, O_UNET, O_VARIANT, O_CONFIG_DIR, O_PROMPT, O_PROMPTS_FILE, O_NEG, O_STEPS, O_GUIDANCE,
    O_RESCALE, O_SCHED, O_ETA, O_SEED, O_NIMG, O_HEIGHT, O_WIDTH, O_CLIPSKIP, O_BATCH, O_INIT, O_PATTERN,
    O_SAVE_LAT, O_NOHASH, O_FORCE, O_DEVICE
};

static void parse(int argc, char **argv, opts *o) {
    static const struct option lo[] = {
        {"pretrained_model_name_or_path", required_argument, NULL, O_MODEL},
        {"unet", required_argument, NULL, O_UNET},
        {"variant", required_argument, NULL, O_VARIANT},
        {"config_dir", required_argument, NULL, O_CONFIG_DIR},
        {"prompt", required_argument, NULL, O_PROMPT},
        {"prompts_file", required_argument, NULL, O_PROMPTS_FILE},
        {"negative_prompt", required_argument, NULL, O_NEG},
        {"num_inference_steps", required_argument, NULL, O_STEPS},
        {"guidance_scale", required_argument, NULL, O_GUIDANCE},
        {"guidance_rescale", required_argument, NULL, O_RESCALE},
        {"scheduler", required_argument, NULL, O_SCHED},
        {"eta", required_argument, NULL, O_ETA},
        {"seed", required_argument, NULL, O_SEED},
        {"num_images_per_prompt", required_argument, NULL, O_NIMG},
        {"height", required_argument, NULL, O_HEIGHT},
        {"width", required_argument, NULL, O_WIDTH},
        {"clip_skip", required_argument, NULL, O_CLIPSKIP},
        {"batch_size", required_argument, NULL, O_BATCH},
        {"init_latents", required_argument, NULL, O_INIT},
        {"output_dir", required_argument, NULL, 'o'},
        {"name_pattern", required_argument, NULL, O_PATTERN},
        {"save_latents", no_argument, NULL, O_SAVE_LAT},
        {"no_model_hash", no_argument, NULL, O_NOHASH},
        {"force", no_argument, NULL, O_FORCE},
        {"device", required_argument, NULL, O_DEVICE},
        {"threads", required_argument, NULL, 'j'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    memset(o, 0, sizeof *o);
    o->steps = 50;
    o->guidance_scale = 7.5;
    o->images_per_prompt = 1;
    o->batch_size = 1;
    o->pattern = DEFAULT_PATTERN;
    o->device = "cpu";
    o->prompts = sd_xcalloc((size_t)argc + 1, sizeof(char *));
    int c;
    while ((c = getopt_long(argc, argv, "o:j:qvhV", lo, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case O_MODEL: o->model = optarg; break;
        case O_UNET: o->unet = optarg; break;
        case O_VARIANT: o->variant = optarg; break;
        case O_CONFIG_DIR: o->config_dir = optarg; break;
        case O_PROMPT: o->prompts[o->nprompts++] = optarg; break;
        case O_PROMPTS_FILE: o->prompts_file = optarg; break;
        case O_NEG: o->negative_prompt = optarg; break;
        case O_STEPS: bad = sd_parse_int(optarg, "num_inference_steps", 1, 1000, &o->steps); break;
        case O_GUIDANCE: bad = sd_parse_double(optarg, "guidance_scale", -1000, 1000, &o->guidance_scale); break;
        case O_RESCALE: bad = sd_parse_double(optarg, "guidance_rescale", 0, 1, &o->guidance_rescale); break;
        case O_SCHED: o->scheduler = optarg; break;
        case O_ETA: bad = sd_parse_double(optarg, "eta", 0, 100, &o->eta); break;
        case O_SEED: bad = sd_parse_u64(optarg, "seed", &o->seed); o->have_seed = 1; break;
        case O_NIMG: bad = sd_parse_int(optarg, "num_images_per_prompt", 1, 100000, &o->images_per_prompt); break;
        case O_HEIGHT: bad = sd_parse_int(optarg, "height", 1, 1 << 20, &o->height); break;
        case O_WIDTH: bad = sd_parse_int(optarg, "width", 1, 1 << 20, &o->width); break;
        case O_CLIPSKIP: bad = sd_parse_int(optarg, "clip_skip", 0, 1000, &o->clip_skip); break;
        case O_BATCH: bad = sd_parse_int(optarg, "batch_size", 1, 4096, &o->batch_size); break;
        case O_INIT: o->init_latents = optarg; break;
        case 'o': o->output_dir = optarg; break;
        case O_PATTERN: o->pattern = optarg; break;
        case O_SAVE_LAT: o->save_latents = 1; break;
        case O_NOHASH: o->no_model_hash = 1; break;
        case O_FORCE: o->force = 1; break;
        case O_DEVICE: o->device = optarg; break;
        case 'j': bad = sd_parse_int(optarg, "threads", 1, 1024, &o->threads); break;
        case 'q': o->quiet = 1; break;
        case 'v': o->verbose = 1; break;
        case 'h': usage(); exit(0);
        case 'V': sd_print_version();
        default: sd_usage_error("invalid option");
        }
        if (bad) sd_usage_error("%s", sd_last_error());
    }
    if (optind < argc) sd_usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->model) sd_usage_error("--pretrained_model_name_or_path is required");
    if (!o->output_dir) sd_usage_error("--output_dir (-o) is required");
    if (!o->nprompts && !o->prompts_file) sd_usage_error("no prompt: give --prompt or --prompts_file");
    if (!*o->pattern) sd_usage_error("--name_pattern is empty");
    if (strcmp(o->device, "cpu") && strcmp(o->device, "cuda")) sd_usage_error("--device: '%s' is not cpu or cuda", o->device);
}

/* ---- prompts ------------------------------------------------------------- */

/* Lines of a prompts file (or stdin): \n or \r\n separated; blank lines
 * (only whitespace) are skipped. Returns the count; *out strings malloc'ed. */
static int read_prompts(const char *path, char ***out) {
    char *data = NULL;
    size_t len = 0;
    if (!strcmp(path, "-")) {
        size_t cap = 1 << 16;
        data = sd_xmalloc(cap + 1);
        for (;;) {
            if (len == cap) data = sd_xrealloc(data, (cap *= 2) + 1);
            ssize_t r = read(0, data + len, cap - len);
            if (r < 0) {
                if (errno == EINTR) continue;
                free(data);
                return sd_set_error("stdin: %s", strerror(errno));
            }
            if (r == 0) break;
            len += (size_t)r;
            if (len > (64u << 20)) { free(data); return sd_set_error("stdin: prompts over 64 MiB"); }
        }
        data[len] = 0;
    } else if (sd_read_file(path, 64u << 20, &data, &len)) {
        return -1;
    }
    if (memchr(data, 0, len)) { free(data); return sd_set_error("%s: contains NUL bytes (not a text file)", path); }
    int n = 0, cap = 16;
    char **v = sd_xmalloc(sizeof(char *) * (size_t)cap);
    char *p = data, *end = data + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        char *le = e;
        if (le > p && le[-1] == '\r') le--;
        int blank = 1;
        for (char *q = p; q < le; q++)
            if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\f' && *q != '\v') blank = 0;
        if (!blank) {
            if (n == cap) v = sd_xrealloc(v, sizeof(char *) * (size_t)(cap *= 2));
            v[n] = sd_xmalloc((size_t)(le - p) + 1);
            memcpy(v[n], p, (size_t)(le - p));
            v[n][le - p] = 0;
            n++;
        }
        p = e + 1;
    }
    free(data);
    *out = v;
    return n;
}

/* ---- output names -------------------------------------------------------- */

typedef struct {
    int64_t index, prompt_index, image, steps, width, height;
    uint64_t seed;
    const char *scheduler, *prompt;
} name_fields;

/* The prompt as a file-name fragment: ASCII letters, digits, '-', '.' kept,
 * runs of anything else become one '_'; at most maxlen bytes; "empty" if none. */
static void slug(const char *s, int maxlen, char *out, size_t cap) {
    size_t n = 0;
    int us = 0;
    for (; *s && (int)n < maxlen && n + 1 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        int keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                   (ch == '.' && n > 0);
        if (keep) {
            out[n++] = (char)ch;
            us = 0;
        } else if (!us && n > 0) {
            out[n++] = '_';
            us = 1;
        }
    }
    while (n > 0 && (out[n - 1] == '_' || out[n - 1] == '.')) n--;
    out[n] = 0;
    if (!n) snprintf(out, cap, "empty");
}

/* Expand a name pattern: {field} or {field:SPEC}, SPEC = [0][width]d for
 * numbers (d optional) or .N for text; {{ and }} are literal braces. */
static int expand_pattern(const char *pat, const name_fields *f, char *out, size_t cap) {
    size_t n = 0;
    for (const char *p = pat; *p;) {
        char buf[512];
        const char *piece;
        size_t plen;
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            buf[0] = p[0];
            piece = buf, plen = 1, p += 2;
        } else if (*p == '}') {
            return sd_set_error("--name_pattern: unmatched '}' in \"%s\"", pat);
        } else if (*p == '{') {
            const char *close = strchr(p, '}');
            if (!close) return sd_set_error("--name_pattern: unmatched '{' in \"%s\"", pat);
            char field[64] = "", spec[32] = "";
            const char *colon = memchr(p, ':', (size_t)(close - p));
            const char *fe = colon ? colon : close;
            if ((size_t)(fe - p - 1) >= sizeof field || (colon && (size_t)(close - colon - 1) >= sizeof spec))
                return sd_set_error("--name_pattern: field too long in \"%s\"", pat);
            memcpy(field, p + 1, (size_t)(fe - p - 1));
            if (colon) memcpy(spec, colon + 1, (size_t)(close - colon - 1));
            int is_num = 1;
            int64_t num = 0;
            const char *str = NULL;
            if (!strcmp(field, "index")) num = f->index;
            else if (!strcmp(field, "prompt_index")) num = f->prompt_index;
            else if (!strcmp(field, "image")) num = f->image;
            else if (!strcmp(field, "steps")) num = f->steps;
            else if (!strcmp(field, "width")) num = f->width;
            else if (!strcmp(field, "height")) num = f->height;
            else if (!strcmp(field, "seed")) is_num = 2;
            else if (!strcmp(field, "scheduler")) is_num = 0, str = f->scheduler;
            else if (!strcmp(field, "prompt")) is_num = 0, str = f->prompt;
            else
                return sd_set_error("--name_pattern: unknown field {%s} (index, seed, prompt_index, image, steps, "
                                    "scheduler, width, height, prompt)",
                                    field);
            if (is_num) {
                /* [0][width][d] */
                const char *s = spec;
                int zero = 0, width = 0;
                if (*s == '0') zero = 1, s++;
                while (*s >= '0' && *s <= '9' && width < 100) width = width * 10 + (*s++ - '0');
                if (*s == 'd') s++;
                if (*s || width > 32) return sd_set_error("--name_pattern: bad number format {%s:%s}", field, spec);
                if (is_num == 2) snprintf(buf, sizeof buf, zero ? "%0*" PRIu64 : "%*" PRIu64, width, f->seed);
                else snprintf(buf, sizeof buf, zero ? "%0*" PRId64 : "%*" PRId64, width, num);
            } else {
                int maxlen = 48;
                if (spec[0]) {
                    char *e;
                    long v = spec[0] == '.' ? strtol(spec + 1, &e, 10) : -1;
                    if (spec[0] != '.' || *e || e == spec + 1 || v < 1 || v > 200)
                        return sd_set_error("--name_pattern: bad text format {%s:%s} (use .N)", field, spec);
                    maxlen = (int)v;
                }
                slug(str, maxlen, buf, sizeof buf);
            }
            piece = buf, plen = strlen(buf), p = close + 1;
        } else {
            piece = p, plen = 1, p++;
        }
        if (n + plen + 1 > cap) return sd_set_error("--name_pattern: file name too long");
        memcpy(out + n, piece, plen);
        n += plen;
    }
    out[n] = 0;
    if (!n || out[n - 1] == '/') return sd_set_error("--name_pattern \"%s\" gives an empty file name", pat);
    if (out[0] == '/' || !strcmp(out, "..") || !strncmp(out, "../", 3) || strstr(out, "/../") ||
        (n >= 3 && !strcmp(out + n - 3, "/..")))
        return sd_set_error("--name_pattern: \"%s\" is outside --output_dir", out);
    return 0;
}

/* NAME.png -> NAME.safetensors (other names: + .safetensors) */
static char *latents_name(const char *png) {
    size_t n = strlen(png);
    char *s = sd_xmalloc(n + 16);
    if (n > 4 && !strcasecmp(png + n - 4, ".png")) n -= 4;
    memcpy(s, png, n);
    strcpy(s + n, ".safetensors");
    return s;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* ---- model hash (A1111 "AutoV2": sha256 of the weights file, 10 hex) ------ */

static int weights_hash(sd_model *m, char hex10[11]) {
    sd_weights_info wi;
    if (sd_model_weights_info(m, SD_UNET, &wi)) return -1;
    const char *dir = m->comp_dir[SD_UNET];
    char *base = dir ? sd_xstrdup(dir) : sd_path_dirname(m->path);
    sd_sha256 sh;
    sd_sha256_init(&sh);
    unsigned char *buf = sd_xmalloc(1 << 20);
    int rc = 0;
    for (int i = 0; i < wi.nfiles && i < 8 && !rc; i++) {
        char *p = sd_path_join(base, wi.files[i]);
        FILE *fp = fopen(p, "rb");
        if (!fp) rc = sd_set_error("%s: %s", p, strerror(errno));
        else {
            size_t r;
            while ((r = fread(buf, 1, 1 << 20, fp)) > 0) sd_sha256_update(&sh, buf, r);
            if (ferror(fp)) rc = sd_set_error("%s: read error", p);
            fclose(fp);
        }
        free(p);
    }
    free(buf);
    free(base);
    if (rc) return -1;
    unsigned char d[32];
    char hex[65];
    sd_sha256_final(&sh, d);
    sd_sha256_hex(d, hex);
    memcpy(hex10, hex, 10);
    hex10[10] = 0;
    return 0;
}

/* The model's name for "Model:": the file name without .safetensors, or the
 * directory name (for DIR/unet: DIR's name). */
static char *model_name(const char *path) {
    char *p = sd_xstrdup(path);
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') p[--n] = 0;
    const char *b = sd_path_basename(p);
    char *s;
    if (!strcmp(b, "unet") && b != p) {
        char *d = sd_path_dirname(p);
        s = model_name(d);
        free(d);
    } else {
        s = sd_xstrdup(b);
        size_t k = strlen(s);
        if (k > 12 && !strcmp(s + k - 12, ".safetensors")) s[k - 12] = 0;
    }
    free(p);
    return s;
}

/* A1111 sampler names */
static const char *sampler_name(const sd_sched *s) {
    const sd_sched_config *c = &s->cfg;
    int k = c->use_karras_sigmas;
    switch (s->kind) {
    case SD_SCHED_DDPM: return "DDPM";
    case SD_SCHED_DDIM: return "DDIM";
    case SD_SCHED_PNDM: return c->skip_prk_steps ? "PLMS" : "PNDM";
    case SD_SCHED_EULER: return k ? "Euler Karras" : "Euler";
    case SD_SCHED_EULER_A: return "Euler a";
    case SD_SCHED_DPM: {
        int sde = !strcmp(c->algorithm_type, "sde-dpmsolver++");
        static char buf[48];
        snprintf(buf, sizeof buf, "DPM++ %dM%s%s", c->solver_order, sde ? " SDE" : "", k ? " Karras" : "");
        return buf;
    }
    }
    return "?";
}

/* A short scheduler name for {scheduler} */
static const char *sched_short(const sd_sched *s) {
    const sd_sched_config *c = &s->cfg;
    switch (s->kind) {
    case SD_SCHED_DDPM: return "ddpm";
    case SD_SCHED_DDIM: return "ddim";
    case SD_SCHED_PNDM: return "pndm";
    case SD_SCHED_EULER: return c->use_karras_sigmas ? "euler-karras" : "euler";
    case SD_SCHED_EULER_A: return "euler_a";
    case SD_SCHED_DPM: {
        static char buf[48];
        snprintf(buf, sizeof buf, "dpm++%dm%s%s", c->solver_order,
                 !strcmp(c->algorithm_type, "sde-dpmsolver++") ? "-sde" : "", c->use_karras_sigmas ? "-karras" : "");
        return buf;
    }
    }
    return "?";
}

/* ---- progress ------------------------------------------------------------ */

typedef struct {
    sd_progress prog;
    int64_t base;        /* steps done by earlier batches */
    int images_done, images_total, batch_n, verbose;
    double t_last_step;  /* time of the last model call (or the batch start) */
} run_state;

static int on_step(void *user, int step, int nsteps) {
    run_state *r = user;
    char extra[64];
    snprintf(extra, sizeof extra, "img %d/%d", r->images_done, r->images_total);
    sd_progress_update(&r->prog, r->base + step, extra);
    double now = sd_now();
    if (r->verbose) /* the first step's time includes the text encoder */
        fprintf(stderr, "sdsample: images %d-%d step %d/%d %.3f s\n", r->images_done, r->images_done + r->batch_n - 1,
                step, nsteps, now - r->t_last_step);
    r->t_last_step = now;
    return 0;
}

/* Write one image (and with latents, NAME.safetensors next to it). */
static int write_outputs(const char *png, const sd_image *img, const char *par, const char *jstr, uint64_t seed,
                         const float *lat, const float *start, const int64_t shape[4]) {
    sd_png_text texts[2] = {{"parameters", par}, {"sdtools", jstr}};
    char *dir = sd_path_dirname(png);
    int rc = sd_mkdir_p(dir);
    free(dir);
    if (!rc) rc = sd_png_write(png, img, texts, 2, SD_PNG_FAST);
    if (!rc && lat) {
        /* latents: the final latents before the VAE decode; init_latents: the starting noise */
        char *ln = latents_name(png);
        sd_st_writer *wr = sd_st_writer_new();
        char seedbuf[32];
        snprintf(seedbuf, sizeof seedbuf, "%" PRIu64, seed);
        rc = sd_st_writer_add_f32(wr, "latents", SD_F32, 4, shape, lat) ||
             sd_st_writer_add_f32(wr, "init_latents", SD_F32, 4, shape, start) ||
             sd_st_writer_meta(wr, "parameters", par) || sd_st_writer_meta(wr, "sdtools", jstr) ||
             sd_st_writer_meta(wr, "seed", seedbuf) || sd_st_writer_save(wr, ln);
        sd_st_writer_free(wr);
        free(ln);
    }
    return rc ? -1 : 0;
}

/* ---- --init_latents ---------------------------------------------------------
 * The tensor "init_latents" (or the file's only tensor), [N|1, C, h, w] or
 * [C, h, w], N = the number of images; sets *H and *W from it (which must agree
 * with a given size). Returns 0, or -1 with an error (nothing allocated). */
static int load_init(const char *path, int C, int f, int total, int *H, int *W, float **out, int64_t *out_n) {
    sd_st_file *sf;
    if (sd_st_open(path, &sf)) return -1;
    int rc = -1;
    float *init = NULL;
    const sd_st_tensor *t = sd_st_find(sf, "init_latents");
    if (!t && sf->ntensors == 1) t = &sf->tensors[0];
    int64_t n1 = 1, c1 = 0, h1 = 0, w1 = 0;
    if (!t) {
        sd_set_error("%s: no \"init_latents\" tensor and not exactly one tensor (%d)", path, sf->ntensors);
        goto out;
    }
    if (t->ndim == 4) n1 = t->shape[0], c1 = t->shape[1], h1 = t->shape[2], w1 = t->shape[3];
    else if (t->ndim == 3) c1 = t->shape[0], h1 = t->shape[1], w1 = t->shape[2];
    else {
        sd_set_error("%s: tensor \"%s\" has %d dimensions (want [N, C, h, w] or [C, h, w])", path, t->name, t->ndim);
        goto out;
    }
    if (c1 != C) {
        sd_set_error("%s: %" PRId64 " channels, the model's latents have %d", path, c1, C);
        goto out;
    }
    if (n1 != 1 && n1 != total) {
        sd_set_error("%s: %" PRId64 " latents for %d images (give one per image, or one for all)", path, n1, total);
        goto out;
    }
    if (h1 < 1 || w1 < 1 || h1 * f > SD_TXT2IMG_MAX_SIDE || w1 * f > SD_TXT2IMG_MAX_SIDE) {
        sd_set_error("%s: latent size %" PRId64 "x%" PRId64 " is out of range", path, w1, h1);
        goto out;
    }
    if ((*H && *H != h1 * f) || (*W && *W != w1 * f)) {
        sd_set_error("%s: latents of %" PRId64 "x%" PRId64 " give %" PRId64 "x%" PRId64
                     " images, not the --width/--height %dx%d",
                     path, w1, h1, w1 * f, h1 * f, *W ? *W : (int)(w1 * f), *H ? *H : (int)(h1 * f));
        goto out;
    }
    init = sd_xmalloc(sizeof(float) * (size_t)t->numel);
    if (sd_st_read_f32(sf, t, init)) goto out;
    for (int64_t k = 0; k < t->numel; k++)
        if (!isfinite(init[k])) {
            sd_set_error("%s: tensor \"%s\" has non-finite values", path, t->name);
            goto out;
        }
    *H = (int)h1 * f, *W = (int)w1 * f;
    *out = init, *out_n = n1;
    init = NULL;
    rc = 0;
out:
    free(init);
    sd_st_close(sf);
    return rc;
}

/* ---- main ------------------------------------------------------------------ */

static uint64_t random_seed(void) {
    uint32_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &v, sizeof v) != (ssize_t)sizeof v) v = 0;
        close(fd);
    }
    if (!v) v = (uint32_t)(sd_now() * 1e6);
    return v;
}

/* text to JSON-safe field for the sdtools chunk */
static cJSON *settings_json(const opts *o, const char *prompt, const char *neg, uint64_t seed, const char *sched,
                            int W, int H, const char *hash, int64_t index) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "tool", "sdsample");
    cJSON_AddStringToObject(j, "version", SD_VERSION);
    cJSON_AddStringToObject(j, "prompt", prompt);
    cJSON_AddStringToObject(j, "negative_prompt", neg);
    cJSON_AddNumberToObject(j, "seed", (double)seed);
    cJSON_AddNumberToObject(j, "index", (double)index);
    cJSON_AddNumberToObject(j, "num_inference_steps", o->steps);
    cJSON_AddStringToObject(j, "scheduler", sched);
    cJSON_AddNumberToObject(j, "guidance_scale", o->guidance_scale);
    cJSON_AddNumberToObject(j, "guidance_rescale", o->guidance_rescale);
    cJSON_AddNumberToObject(j, "eta", o->eta);
    cJSON_AddNumberToObject(j, "clip_skip", o->clip_skip);
    cJSON_AddNumberToObject(j, "width", W);
    cJSON_AddNumberToObject(j, "height", H);
    cJSON_AddStringToObject(j, "model", o->model);
    if (o->unet) cJSON_AddStringToObject(j, "unet", o->unet);
    if (hash) cJSON_AddStringToObject(j, "model_hash", hash);
    if (o->init_latents) cJSON_AddStringToObject(j, "init_latents", o->init_latents);
    return j;
}

/* numbers as A1111 prints them: 7.5, 7, 0.7 */
static void fmt_num(char *b, size_t n, double v) { snprintf(b, n, "%.6g", v); }

int main(int argc, char **argv) {
    sd_set_progname(argv[0]);
    sd_cli_normalize(argc, argv);
    opts o;
    parse(argc, argv, &o);
    if (o.quiet) sd_progress_disable_all();
    if (!strcmp(o.device, "cuda"))
        sd_die("--device cuda: this build has no CUDA backend yet (the model ops run on the CPU backend); "
               "use --device cpu");
    double t0 = sd_now();

    /* ---- prompts */
    int nprompts = o.nprompts;
    char **file_prompts = NULL;
    int nfile = 0;
    if (o.prompts_file) {
        nfile = read_prompts(o.prompts_file, &file_prompts);
        if (nfile < 0) sd_die_last();
        if (nfile == 0 && !o.nprompts)
            sd_die("%s: no prompts (the file has no non-blank line)", !strcmp(o.prompts_file, "-") ? "stdin" : o.prompts_file);
    }
    const char **prompts = sd_xmalloc(sizeof(char *) * (size_t)(nprompts + nfile));
    for (int i = 0; i < nprompts; i++) prompts[i] = o.prompts[i];
    for (int i = 0; i < nfile; i++) prompts[nprompts++] = file_prompts[i];
    const char *neg = o.negative_prompt ? o.negative_prompt : "";
    int64_t total64 = (int64_t)nprompts * o.images_per_prompt;
    if (total64 > 1000000) sd_die("%" PRId64 " images requested: at most 1000000 per run", total64);
    int total = (int)total64;
    if (!o.have_seed) o.seed = random_seed();
    if (o.seed > UINT64_MAX - (uint64_t)total) sd_die("--seed %" PRIu64 ": seed + image index overflows", o.seed);

    /* ---- the model (configs only) */
    sd_model_opts mo = {0};
    mo.variant = o.variant;
    mo.config_dir = o.config_dir;
    sd_model *m = NULL, *mu = NULL;
    if (sd_model_open(o.model, &mo, &m)) sd_die_last();
    if (!m->has[SD_TEXT_ENCODER]) sd_die("%s: the model has no text encoder", o.model);
    if (!m->has[SD_VAE]) sd_die("%s: the model has no VAE", o.model);
    if (!m->tokenizer_dir)
        sd_die("%s: the model has no tokenizer%s", o.model,
               m->kind == SD_MODEL_SINGLE_FILE ? " (give --config_dir with a diffusers model's tokenizer/)" : "");
    if (!m->has_scheduler) sd_die("%s: the model has no scheduler/scheduler_config.json", o.model);
    if (o.unet) {
        sd_model_opts uo = {0};
        uo.variant = o.variant;
        if (sd_model_open(o.unet, &uo, &mu)) sd_die_last();
        if (!mu->has[SD_UNET]) sd_die("%s: not a UNet (no unet/ or UNet2DConditionModel config)", o.unet);
    } else if (!m->has[SD_UNET]) {
        sd_die("%s: the model has no UNet", o.model);
    }
    sd_model *um = mu ? mu : m;
    const char *uwhere = o.unet ? o.unet : o.model;
    const sd_unet_config *ucfg = &um->unet;
    int xdim = ucfg->cross_attention_dim[0];
    for (int i = 1; i < ucfg->num_levels; i++)
        if (ucfg->cross_attention_dim[i] != xdim) sd_die("%s: per-block cross_attention_dim is not supported", uwhere);
    if (xdim != m->text.hidden_size)
        sd_die("%s: the UNet's cross_attention_dim %d does not match the text encoder's hidden size %d (%s)", uwhere,
               xdim, m->text.hidden_size, o.model);
    if (ucfg->in_channels != m->vae.latent_channels || ucfg->out_channels != m->vae.latent_channels)
        sd_die("%s: the UNet has in/out channels %d/%d, the VAE %d latent channels%s", uwhere, ucfg->in_channels,
               ucfg->out_channels, m->vae.latent_channels,
               ucfg->in_channels == m->vae.latent_channels + 5 ? " (an inpainting UNet: not for txt2img)" : "");
    if (o.clip_skip > m->text.num_hidden_layers)
        sd_die("--clip_skip %d: the text encoder has %d layers", o.clip_skip, m->text.num_hidden_layers);

    /* ---- tokenizer: every prompt must encode (UTF-8); say which are truncated */
    sd_clip_tokenizer *tok;
    if (sd_clip_tokenizer_load(m->tokenizer_dir, &tok)) sd_die_last();
    {
        int L = sd_clip_tokenizer_max_len(tok);
        int32_t *ids = sd_xmalloc(sizeof(int32_t) * (size_t)L);
        for (int i = 0; i <= nprompts; i++) {
            const char *s = i < nprompts ? prompts[i] : neg;
            int nt;
            size_t ntext;
            if (sd_clip_tokenizer_encode_n(tok, s, strlen(s), ids, &nt, &ntext)) {
                if (i < nprompts) sd_error_prefix("prompt %d", i + 1);
                else sd_error_prefix("--negative_prompt");
                free(ids); /* before dying: LeakSanitizer checks at exit */
                sd_die_last();
            }
            if (ntext > (size_t)L - 2 && !o.quiet)
                sd_warn("%s %d has %zu tokens: truncated to %d, as CLIP reads at most %d", i < nprompts ? "prompt" : "negative prompt",
                        i + 1, ntext, L - 2, L - 2);
        }
        free(ids);
        if (L > m->text.max_position_embeddings)
            sd_die("%s: the tokenizer's model_max_length %d exceeds the text encoder's %d positions", o.model, L,
                   m->text.max_position_embeddings);
    }

    /* ---- scheduler: the name and the step count must work */
    sd_sched_config scfg;
    if (sd_sched_config_from_json(m->scheduler.raw, &scfg)) {
        sd_error_prefix("%s: scheduler_config.json", o.model);
        sd_die_last();
    }
    sd_sched *probe;
    if (sd_sched_new(o.scheduler, &scfg, &probe)) {
        if (!o.scheduler) sd_error_prefix("%s (use --scheduler)", o.model);
        sd_die_last();
    }
    if (sd_sched_set_timesteps(probe, o.steps)) {
        sd_sched_free(probe);
        sd_die_last();
    }
    if (o.eta > 0 && probe->kind != SD_SCHED_DDIM && !o.quiet)
        sd_warn("--eta applies to the DDIM scheduler only; ignored for %s", sd_sched_kind_name(probe->kind));
    const char *sampler = sampler_name(probe);
    char sched_short_name[48];
    snprintf(sched_short_name, sizeof sched_short_name, "%s", sched_short(probe));
    int steps_per_image = probe->num_steps;
    sd_sched_free(probe);

    /* ---- size */
    int f = 1;
    for (int i = 1; i < m->vae.num_levels; i++) f *= 2;
    const int C = m->vae.latent_channels;
    float *init = NULL;
    int64_t init_n = 0;
    int H = o.height, W = o.width;
    if (o.init_latents && load_init(o.init_latents, C, f, total, &H, &W, &init, &init_n)) sd_die_last();
    if (!H) H = ucfg->sample_size[0] * f;
    if (!W) W = ucfg->sample_size[1] * f;
    if (H <= 0 || W <= 0) sd_die("%s: the UNet config has no sample_size: give --height and --width", uwhere);
    if (H > SD_TXT2IMG_MAX_SIDE || W > SD_TXT2IMG_MAX_SIDE)
        sd_die("size %dx%d is too large (at most %d pixels a side)", W, H, SD_TXT2IMG_MAX_SIDE);
    if (H % f || W % f) sd_die("size %dx%d is not a multiple of the VAE's factor %d", W, H, f);
    const int h = H / f, w = W / f;
    const size_t per = (size_t)C * h * w;

    /* ---- output names: all planned before anything is computed */
    char **names = sd_xcalloc((size_t)total, sizeof(char *));
    for (int j = 0; j < total; j++) {
        name_fields nf = {j, j / o.images_per_prompt, j % o.images_per_prompt, o.steps, W, H, o.seed + (uint64_t)j,
                          sched_short_name, prompts[j / o.images_per_prompt]};
        char buf[4096];
        if (expand_pattern(o.pattern, &nf, buf, sizeof buf)) sd_die_last();
        names[j] = sd_path_join(o.output_dir, buf);
    }
    {
        /* duplicates: sort a copy of the indices by name */
        char **sorted = sd_xmalloc(sizeof(char *) * (size_t)total);
        memcpy(sorted, names, sizeof(char *) * (size_t)total);
        qsort(sorted, (size_t)total, sizeof(char *), cmp_str);
        int dup = -1;
        for (int j = 1; j < total && dup < 0; j++)
            if (!strcmp(sorted[j - 1], sorted[j])) dup = j;
        if (dup >= 0)
            sd_set_error("--name_pattern \"%s\" gives the same file name %s to two images (add {index})", o.pattern,
                         sorted[dup]);
        free(sorted);
        if (dup >= 0) sd_die_last();
    }
    if (!o.force)
        for (int j = 0; j < total; j++) {
            char *ln = o.save_latents ? latents_name(names[j]) : NULL;
            const char *hit = sd_is_file(names[j]) || sd_is_dir(names[j]) ? names[j]
                              : ln && (sd_is_file(ln) || sd_is_dir(ln)) ? ln : NULL;
            if (hit) sd_set_error("%s exists (use --force to replace it)", hit);
            free(ln); /* before dying: LeakSanitizer checks at exit */
            if (hit) sd_die_last();
        }
    if (sd_mkdir_p(o.output_dir)) sd_die_last();

    /* ---- weights */
    char hash[11] = "";
    if (!o.no_model_hash && weights_hash(um, hash)) sd_die_last();
    char *mname = model_name(o.unet ? o.unet : o.model);
    sd_backend *be = sd_backend_cpu_create(o.threads);
    if (!be) sd_die_last();
    sd_pipeline p = {0};
    sd_unet *unet;
    sd_vae *vae;
    sd_clip_text *te;
    if (sd_unet_load(um, be, &unet)) sd_die_last();
    if (sd_vae_load(m, be, &vae)) sd_die_last();
    if (sd_clip_text_load(m, be, &te)) sd_die_last();
    p.be = be, p.unet = unet, p.vae = vae, p.te = te, p.tok = tok, p.sched_cfg = &scfg;
    double t_load = sd_now();

    /* ---- render */
    sd_txt2img_opts to = {0};
    to.negative_prompt = neg;
    to.scheduler = o.scheduler;
    to.steps = o.steps;
    to.guidance_scale = (float)o.guidance_scale;
    to.guidance_rescale = (float)o.guidance_rescale;
    to.eta = (float)o.eta;
    to.height = H, to.width = W;
    to.clip_skip = o.clip_skip;
    run_state rs = {0};
    rs.images_total = total;
    rs.verbose = o.verbose && !o.quiet;
    to.on_step = on_step;
    to.user = &rs;
    const int nb = (total + o.batch_size - 1) / o.batch_size;
    sd_progress_begin(&rs.prog, "sdsample", "step", (int64_t)nb * steps_per_image);
    const char **bprompts = sd_xmalloc(sizeof(char *) * (size_t)o.batch_size);
    uint64_t *bseeds = sd_xmalloc(sizeof(uint64_t) * (size_t)o.batch_size);
    sd_image *imgs = sd_xcalloc((size_t)o.batch_size, sizeof(sd_image));
    float *lat = sd_xmalloc(sizeof(float) * per * (size_t)o.batch_size);
    float *binit = init ? sd_xmalloc(sizeof(float) * per * (size_t)o.batch_size) : NULL;
    double t_steps = 0, t_decode = 0;
    int64_t nsteps_done = 0;
    char cfgs[32], gr[32], etas[32];
    fmt_num(cfgs, sizeof cfgs, o.guidance_scale);
    fmt_num(gr, sizeof gr, o.guidance_rescale);
    fmt_num(etas, sizeof etas, o.eta);
    for (int j0 = 0; j0 < total; j0 += o.batch_size) {
        int n = total - j0 < o.batch_size ? total - j0 : o.batch_size;
        for (int k = 0; k < n; k++) {
            bprompts[k] = prompts[(j0 + k) / o.images_per_prompt];
            bseeds[k] = o.seed + (uint64_t)(j0 + k);
            if (binit) memcpy(binit + per * k, init + (init_n == 1 ? 0 : per * (size_t)(j0 + k)), sizeof(float) * per);
        }
        to.init_latents = binit;
        double tb = sd_now();
        rs.t_last_step = tb;
        rs.batch_n = n;
        if (sd_txt2img_batch(&p, &to, n, bprompts, NULL, bseeds, imgs, lat)) {
            sd_progress_end(&rs.prog);
            sd_die_last();
        }
        double te_ = sd_now();
        t_steps += rs.t_last_step - tb;
        t_decode += te_ - rs.t_last_step;
        nsteps_done += steps_per_image;
        rs.base += steps_per_image;
        for (int k = 0; k < n; k++) {
            int j = j0 + k;
            const char *pr = bprompts[k];
            /* A1111 "parameters" */
            size_t cap = strlen(pr) + strlen(neg) + 1024;
            char *par = sd_xmalloc(cap);
            int len = snprintf(par, cap, "%s\n", pr);
            if (*neg) len += snprintf(par + len, cap - (size_t)len, "Negative prompt: %s\n", neg);
            len += snprintf(par + len, cap - (size_t)len, "Steps: %d, Sampler: %s, CFG scale: %s, Seed: %" PRIu64 ", Size: %dx%d",
                            o.steps, sampler, cfgs, bseeds[k], W, H);
            if (*hash) len += snprintf(par + len, cap - (size_t)len, ", Model hash: %s", hash);
            len += snprintf(par + len, cap - (size_t)len, ", Model: %s", mname);
            if (o.clip_skip) len += snprintf(par + len, cap - (size_t)len, ", Clip skip: %d", o.clip_skip + 1);
            if (o.guidance_rescale > 0) len += snprintf(par + len, cap - (size_t)len, ", CFG Rescale phi: %s", gr);
            if (o.eta > 0 && !strcmp(sampler, "DDIM")) len += snprintf(par + len, cap - (size_t)len, ", Eta DDIM: %s", etas);
            snprintf(par + len, cap - (size_t)len, ", Version: sdtools %s", SD_VERSION);
            cJSON *js = settings_json(&o, pr, neg, bseeds[k], sched_short_name, W, H, *hash ? hash : NULL, j);
            char *jstr = cJSON_PrintUnformatted(js);
            float *start = NULL;
            if (o.save_latents) {
                start = sd_xmalloc(sizeof(float) * per);
                if (binit) memcpy(start, binit + per * k, sizeof(float) * per);
                else sd_txt2img_noise(bseeds[k], C, h, w, start);
            }
            int64_t shape[4] = {1, C, h, w};
            int wrc = write_outputs(names[j], &imgs[k], par, jstr, bseeds[k], o.save_latents ? lat + per * k : NULL,
                                    start, shape);
            free(start);
            cJSON_free(jstr);
            cJSON_Delete(js);
            free(par);
            if (wrc) sd_die_last();
            sd_image_free(&imgs[k]);
        }
        rs.images_done += n;
    }
    sd_progress_end(&rs.prog);
    if (!o.quiet) {
        double secs = sd_now() - t_load;
        fprintf(stderr,
                "sdsample: %d image%s (%d prompt%s, %dx%d, %s, %d steps, seeds %" PRIu64 "..%" PRIu64 ") in %.1f s "
                "(+%.1f s loading): %.3f s/step (UNet batch %d), %.2f s/image -> %s\n",
                total, total == 1 ? "" : "s", nprompts, nprompts == 1 ? "" : "s", W, H, sampler, o.steps, o.seed,
                o.seed + (uint64_t)total - 1, secs, t_load - t0, nsteps_done ? t_steps / (double)nsteps_done : 0.0,
                (o.batch_size < total ? o.batch_size : total) * (o.guidance_scale > 1 ? 2 : 1), secs / total,
                o.output_dir);
        (void)t_decode;
    }

    for (int j = 0; j < total; j++) free(names[j]);
    free(names);
    free(bprompts);
    free(bseeds);
    free(imgs);
    free(lat);
    free(binit);
    free(init);
    free(mname);
    sd_unet_free(unet);
    sd_vae_free(vae);
    sd_clip_text_free(te);
    sd_backend_destroy(be);
    sd_clip_tokenizer_free(tok);
    sd_sched_config_free(&scfg);
    if (mu) sd_model_close(mu);
    sd_model_close(m);
    for (int i = 0; i < nfile; i++) free(file_prompts[i]);
    free(file_prompts);
    free(prompts);
    free(o.prompts);
    return 0;
}
