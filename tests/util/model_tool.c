/* model_tool.c — test helper for model loading/saving (tests/py, tests/ref).
 *
 *   model_tool describe PATH [--json]      sd_model_describe (what sdinfo prints)
 *   model_tool hash PATH [OPTS]            load every component; per tensor print
 *                                          "COMP NAME SHAPE SHA256(f32 LE bytes)", then
 *                                          "fingerprint COMP HEX total N"
 *   model_tool table KIND CONFIG.json      parameter table: "NAME\tLDM\tSHAPE\tOFFSET", then
 *                                          "total PARAMS TENSORS"   (KIND unet|vae|text)
 *   model_tool save PATH OUT [OPTS]        load every component and write a pipeline dir
 *                                          (all components rewritten from the buffers;
 *                                          --keep-vae: hard-link the VAE from the base)
 *   OPTS: --config-dir D --variant V --ema --allow-extra --dtype f32|f16|bf16
 *         --overwrite --tokenizer D --keep-vae
 */
#include "core/error.h"
#include "core/sha256.h"
#include "io/json.h"
#include "models/modeldir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sd_model_opts mo;
static sd_save_opts so;
static int json_out, keep_vae;

static void parse_opts(int argc, char **argv, int first) {
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) json_out = 1;
        else if (!strcmp(a, "--ema")) mo.use_ema = 1;
        else if (!strcmp(a, "--allow-extra")) mo.allow_extra = 1;
        else if (!strcmp(a, "--overwrite")) so.overwrite = 1;
        else if (!strcmp(a, "--keep-vae")) keep_vae = 1;
        else if (!strcmp(a, "--config-dir") && v) { mo.config_dir = v; i++; }
        else if (!strcmp(a, "--variant") && v) { mo.variant = v; i++; }
        else if (!strcmp(a, "--tokenizer") && v) { so.tokenizer_dir = v; i++; }
        else if (!strcmp(a, "--dtype") && v) {
            so.dtype = !strcmp(v, "f16") ? SD_F16 : !strcmp(v, "bf16") ? SD_BF16 : SD_F32;
            i++;
        } else sd_die("unknown option %s", a);
    }
}

static int do_hash(const char *path) {
    sd_model *m;
    if (sd_model_open(path, &mo, &m)) return -1;
    for (int c = 0; c < SD_NCOMP; c++) {
        if (!m->has[c]) continue;
        sd_param_table t;
        float *buf;
        if (sd_model_load_alloc(m, (sd_component)c, &t, &buf)) { sd_model_close(m); return -1; }
        for (int i = 0; i < t.n; i++) {
            sd_sha256 s;
            unsigned char d[32];
            char hex[65], sh[128];
            sd_sha256_init(&s);
            sd_sha256_update(&s, buf + t.p[i].offset, t.p[i].numel * sizeof(float));
            sd_sha256_final(&s, d);
            sd_sha256_hex(d, hex);
            printf("%s %s %s %s\n", sd_component_name((sd_component)c), t.p[i].name,
                   sd_param_shape_str(&t.p[i], sh, sizeof sh), hex);
        }
        char fp[65];
        sd_param_fingerprint(&t, buf, fp);
        printf("fingerprint %s %s total %zu\n", sd_component_name((sd_component)c), fp, t.total);
        free(buf);
        sd_param_table_free(&t);
    }
    sd_model_close(m);
    return 0;
}

static int do_table(const char *kind, const char *cfgpath) {
    cJSON *j;
    if (sd_json_load(cfgpath, &j)) return -1;
    sd_param_table t;
    int rc;
    if (!strcmp(kind, "unet")) {
        sd_unet_config c;
        rc = sd_unet_config_parse(j, cfgpath, &c);
        if (!rc) rc = sd_unet_param_table(&c, &t);
        sd_unet_config_free(&c);
    } else if (!strcmp(kind, "vae")) {
        sd_vae_config c;
        rc = sd_vae_config_parse(j, cfgpath, &c);
        if (!rc) rc = sd_vae_param_table(&c, &t);
        sd_vae_config_free(&c);
    } else {
        sd_clip_text_config c;
        rc = sd_clip_text_config_parse(j, cfgpath, &c);
        if (!rc) rc = sd_clip_text_param_table(&c, &t);
        sd_clip_text_config_free(&c);
    }
    cJSON_Delete(j);
    if (rc) return -1;
    for (int i = 0; i < t.n; i++) {
        char sh[128];
        printf("%s\t%s\t%s\t%zu\n", t.p[i].name, t.p[i].ldm ? t.p[i].ldm : "-", sd_param_shape_str(&t.p[i], sh, sizeof sh),
               t.p[i].offset);
    }
    printf("total %zu %d\n", t.total, t.n);
    sd_param_table_free(&t);
    return 0;
}

static int do_save(const char *path, const char *out) {
    sd_model *m;
    if (sd_model_open(path, &mo, &m)) return -1;
    sd_component_data parts[SD_NCOMP];
    sd_param_table tabs[SD_NCOMP];
    float *bufs[SD_NCOMP] = {0};
    memset(parts, 0, sizeof parts);
    memset(tabs, 0, sizeof tabs);
    int rc = 0;
    for (int c = 0; c < SD_NCOMP && !rc; c++) {
        if (!m->has[c] || (c == SD_VAE && keep_vae)) continue;
        rc = sd_model_load_alloc(m, (sd_component)c, &tabs[c], &bufs[c]);
        parts[c].table = &tabs[c];
        parts[c].buf = bufs[c];
    }
    if (!rc) rc = sd_pipeline_save(out, m, parts, &so);
    for (int c = 0; c < SD_NCOMP; c++) {
        free(bufs[c]);
        sd_param_table_free(&tabs[c]);
    }
    sd_model_close(m);
    return rc;
}

int main(int argc, char **argv) {
    sd_set_progname("model_tool");
    if (argc < 3) sd_die("usage: model_tool describe|hash|table|save ...");
    int rc;
    if (!strcmp(argv[1], "describe")) {
        parse_opts(argc, argv, 3);
        rc = sd_model_describe(argv[2], json_out, stdout);
    } else if (!strcmp(argv[1], "hash")) {
        parse_opts(argc, argv, 3);
        rc = do_hash(argv[2]);
    } else if (!strcmp(argv[1], "table") && argc >= 4) {
        rc = do_table(argv[2], argv[3]);
    } else if (!strcmp(argv[1], "save") && argc >= 4) {
        parse_opts(argc, argv, 4);
        rc = do_save(argv[2], argv[3]);
    } else {
        sd_die("unknown command %s", argv[1]);
    }
    if (rc) sd_die_last();
    return 0;
}
