/* sdinfo — inspect sdtools' files: safetensors tensors, shard tars, model dirs.
 *
 *   sdinfo [OPTIONS] PATH...
 *
 * Like vipsheader: one summary per PATH, human-readable or --json. See
 * man/sdinfo.1. The work is in the library (sd_*_describe); this file only
 * parses options and dispatches on what PATH is.
 */
#include "core/cli.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "io/shard.h"
#include "models/modeldir.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("Usage: sdinfo [OPTIONS] PATH...\n"
           "Describe safetensors files, shard tars and model directories.\n"
           "\n"
           "  -j, --json          machine-readable JSON (one document per PATH)\n"
           "  -s, --summary       safetensors: totals only, no per-tensor list\n"
           "      --stats         safetensors: per-tensor min/max/mean/std and sha256 of the bytes\n"
           "      --dump NAME     safetensors: print the values of tensor NAME (as float), one per line\n"
           "  -h, --help          this help\n"
           "  -V, --version       version\n"
           "\n"
           "Exit status: 0 ok, 1 a PATH could not be read or is invalid, 2 usage error.\n");
}

typedef struct {
    int json, summary, stats;
    const char *dump;
} opts;

static void tensor_stats(const sd_st_file *f, const sd_st_tensor *t, double *mn, double *mx, double *mean,
                         double *sd, char hex[65]) {
    sd_sha256 s;
    unsigned char d[32];
    sd_sha256_init(&s);
    sd_sha256_update(&s, sd_st_raw(f, t), (size_t)(t->end - t->begin));
    sd_sha256_final(&s, d);
    sd_sha256_hex(d, hex);
    *mn = *mx = *mean = *sd = NAN;
    if (!sd_dtype_is_real(t->dtype) || t->numel == 0) return;
    float buf[4096];
    double lo = INFINITY, hi = -INFINITY, sum = 0, sum2 = 0;
    const unsigned char *raw = sd_st_raw(f, t);
    int bits = sd_dtype_bits(t->dtype);
    for (int64_t i = 0; i < t->numel; i += 4096) {
        int64_t n = t->numel - i < 4096 ? t->numel - i : 4096;
        if (bits >= 8) sd_convert_to_f32(t->dtype, raw + (size_t)i * (size_t)(bits / 8), buf, (size_t)n);
        else { /* sub-byte types: convert from the start (small tensors in practice) */
            float *all = sd_xmalloc(sizeof(float) * (size_t)t->numel);
            sd_convert_to_f32(t->dtype, raw, all, (size_t)t->numel);
            memcpy(buf, all + i, sizeof(float) * (size_t)n);
            free(all);
        }
        for (int64_t k = 0; k < n; k++) {
            double v = buf[k];
            if (v < lo) lo = v;
            if (v > hi) hi = v;
            sum += v;
            sum2 += v * v;
        }
    }
    *mn = lo;
    *mx = hi;
    *mean = sum / (double)t->numel;
    double var = sum2 / (double)t->numel - *mean * *mean;
    *sd = sqrt(var > 0 ? var : 0);
}

static int describe_safetensors(const char *path, const opts *o) {
    sd_st_file *f;
    if (sd_st_open(path, &f)) return -1;
    if (o->dump) {
        const sd_st_tensor *t = sd_st_find(f, o->dump);
        if (!t) { sd_set_error("%s: no tensor named \"%s\"", path, o->dump); sd_st_close(f); return -1; }
        float *v = sd_xmalloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
        int rc = sd_st_read_f32(f, t, v);
        if (!rc) for (int64_t i = 0; i < t->numel; i++) printf("%.9g\n", (double)v[i]);
        free(v);
        sd_st_close(f);
        return rc;
    }
    int64_t counts[SD_DTYPE_COUNT] = {0};
    for (int i = 0; i < f->ntensors; i++) counts[f->tensors[i].dtype]++;
    char sh[256], hex[65];
    double mn, mx, mean, sd;
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "path", path);
        cJSON_AddStringToObject(j, "kind", "safetensors");
        cJSON_AddNumberToObject(j, "file_bytes", (double)f->size);
        cJSON_AddNumberToObject(j, "header_bytes", (double)f->header_len);
        cJSON_AddNumberToObject(j, "tensors", f->ntensors);
        cJSON_AddNumberToObject(j, "parameters", (double)sd_st_total_params(f));
        cJSON *dt = cJSON_AddObjectToObject(j, "dtypes");
        for (int t = 1; t < SD_DTYPE_COUNT; t++)
            if (counts[t]) cJSON_AddNumberToObject(dt, sd_dtype_name((sd_dtype)t), (double)counts[t]);
        cJSON *meta = cJSON_AddObjectToObject(j, "metadata");
        for (int i = 0; i < f->nmeta; i++) cJSON_AddStringToObject(meta, f->meta_keys[i], f->meta_vals[i]);
        if (!o->summary) {
            cJSON *arr = cJSON_AddArrayToObject(j, "tensor_list");
            for (int i = 0; i < f->ntensors; i++) {
                const sd_st_tensor *t = &f->tensors[f->by_name[i]];
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "name", t->name);
                cJSON_AddStringToObject(e, "dtype", sd_dtype_name(t->dtype));
                cJSON *s = cJSON_AddArrayToObject(e, "shape");
                for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(s, cJSON_CreateNumber((double)t->shape[d]));
                if (o->stats) {
                    tensor_stats(f, t, &mn, &mx, &mean, &sd, hex);
                    cJSON_AddStringToObject(e, "sha256", hex);
                    if (mn == mn) {
                        cJSON_AddNumberToObject(e, "min", mn);
                        cJSON_AddNumberToObject(e, "max", mx);
                        cJSON_AddNumberToObject(e, "mean", mean);
                        cJSON_AddNumberToObject(e, "std", sd);
                    }
                }
                cJSON_AddItemToArray(arr, e);
            }
        }
        char *s = sd_json_pretty(j);
        fputs(s, stdout);
        free(s);
        cJSON_Delete(j);
    } else {
        printf("%s: safetensors, %d tensors, %lld parameters, %llu bytes (header %llu)\n", path, f->ntensors,
               (long long)sd_st_total_params(f), (unsigned long long)f->size, (unsigned long long)f->header_len);
        printf("  dtypes:");
        for (int t = 1; t < SD_DTYPE_COUNT; t++)
            if (counts[t]) printf(" %s=%lld", sd_dtype_name((sd_dtype)t), (long long)counts[t]);
        printf("\n");
        for (int i = 0; i < f->nmeta; i++) printf("  metadata %s: %s\n", f->meta_keys[i], f->meta_vals[i]);
        if (!o->summary)
            for (int i = 0; i < f->ntensors; i++) {
                const sd_st_tensor *t = &f->tensors[f->by_name[i]];
                printf("  %-60s %-5s %s", t->name, sd_dtype_name(t->dtype), sd_shape_str(t->ndim, t->shape, sh, sizeof sh));
                if (o->stats) {
                    tensor_stats(f, t, &mn, &mx, &mean, &sd, hex);
                    if (mn == mn) printf("  min %.6g max %.6g mean %.6g std %.6g", mn, mx, mean, sd);
                    printf("  sha256 %.16s", hex);
                }
                printf("\n");
            }
    }
    sd_st_close(f);
    return 0;
}

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int describe(const char *path, const opts *o) {
    /* shard tars and shard sets (a directory with a manifest, brace lists, A::B) */
    char *mf = sd_path_join(path, "manifest.json");
    int shard_set = sd_is_dir(path) && sd_is_file(mf);
    free(mf);
    if (shard_set || has_suffix(path, ".tar") || has_suffix(path, ".tar.zst") || has_suffix(path, ".tar.gz") ||
        strstr(path, "::") || (strchr(path, '{') && strstr(path, "..")))
        return sd_shard_describe(path, o->json, stdout);
    /* model directories, component directories and single-file checkpoints */
    int mk = sd_model_probe(path); /* 0 = not a model: LoRA, latents, plain tensors */
    if (mk && !(mk == SD_MODEL_SINGLE_FILE && (o->stats || o->dump))) return sd_model_describe(path, o->json, stdout);
    if (sd_is_dir(path)) return sd_set_error("%s: not a model directory (no model_index.json or config.json) nor a shard set", path);
    if (!sd_is_file(path)) return sd_set_error("%s: no such file", path);
    return describe_safetensors(path, o);
}

int main(int argc, char **argv) {
    sd_set_progname(argv[0]);
    sd_cli_normalize(argc, argv);
    opts o = {0};
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},    {"summary", no_argument, NULL, 's'},
        {"stats", no_argument, NULL, 'S'},   {"dump", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},    {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "jshV", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': o.json = 1; break;
        case 's': o.summary = 1; break;
        case 'S': o.stats = 1; break;
        case 'D': o.dump = optarg; break;
        case 'h': usage(); return 0;
        case 'V': sd_print_version();
        default: sd_usage_error("invalid option");
        }
    }
    if (optind >= argc) sd_usage_error("no PATH given");
    int rc = 0;
    for (int i = optind; i < argc; i++) {
        if (describe(argv[i], &o)) {
            fprintf(stderr, "%s: error: %s\n", sd_progname(), sd_last_error());
            rc = 1;
        }
    }
    return rc;
}
