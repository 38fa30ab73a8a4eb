/* model_internal.h — shared between modeldir.c, single_file.c, describe.c.
 * Not part of the public API. */
#ifndef SD_MODELS_MODEL_INTERNAL_H
#define SD_MODELS_MODEL_INTERNAL_H

#include "io/safetensors.h"
#include "models/modeldir.h"

#define SD_KEY_MAX 512

/* The safetensors files holding one component (one file, or the shards of
 * an index; for single-file checkpoints the one checkpoint). */
typedef struct {
    int n;
    char **paths;
    sd_st_file **f;
    unsigned char **used; /* per file, per tensor (header order): consumed by the last load */
} sd_wfiles;

struct sd_model_priv {
    char *variant, *config_dir;
    int use_ema, allow_extra;
    cJSON *model_index;        /* pipelines */
    int wf_open[SD_NCOMP];
    sd_wfiles wf[SD_NCOMP];    /* diffusers components, opened on first use */
    sd_wfiles single;          /* single-file checkpoint (n == 1) */
};

/* A source tensor for one parameter: file key, optionally rows [row0, row0+rows)
 * of dim 0 (OpenCLIP's fused q/k/v). */
typedef struct {
    char key[SD_KEY_MAX];
    int64_t row0, rows; /* rows < 0: the whole tensor */
} sd_src_key;

/* single_file.c */
int sd_sf_detect(const sd_st_file *f, sd_single_file_info *info);
int sd_sf_infer_unet(const sd_st_file *f, const sd_single_file_info *info, sd_unet_config *c);
int sd_sf_infer_vae(const sd_st_file *f, const sd_single_file_info *info, sd_vae_config *c);
int sd_sf_infer_text(const sd_st_file *f, const sd_single_file_info *info, sd_clip_text_config *c);
int sd_sf_scheduler(const sd_st_file *f, const sd_single_file_info *info, sd_scheduler_config *c);
int sd_sf_has_component(const sd_st_file *f, const sd_single_file_info *info, sd_component c);
/* candidate source keys of parameter p (returns count) */
int sd_sf_candidates(const sd_model *m, sd_component c, const sd_param *p, sd_src_key out[3]);
/* key belongs to component c's part of the checkpoint */
int sd_sf_in_namespace(const sd_model *m, sd_component c, const char *key);
/* key inside the namespace that the conversion drops on purpose */
int sd_sf_ignorable(const sd_model *m, sd_component c, const char *key);
/* top-level key that belongs to no component and is a known LDM buffer/EMA */
int sd_sf_known_extra(const char *key);

#endif
