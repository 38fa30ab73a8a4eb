/* data.c — latent shard sets for training (see data.h). */
#include "train/data.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "io/shard.h"

#include <stdlib.h>
#include <string.h>

#define EPOCH_STREAM 0x65706f6368000000ull /* "epoch" */

void sd_epoch_order(uint64_t seed, int64_t epoch, int64_t n, uint32_t *perm) {
    sd_rng r;
    sd_rng_init(&r, seed, EPOCH_STREAM + (uint64_t)epoch);
    sd_rng_permutation(&r, perm, (size_t)n);
}

static int load_manifest(sd_latent_set *set, const char *dir, int required) {
    char *mp = sd_path_join(dir, SD_SHARD_MANIFEST);
    if (!sd_is_file(mp)) {
        free(mp);
        if (required) return sd_set_error("%s: no %s", dir, SD_SHARD_MANIFEST);
        return 0;
    }
    int rc = sd_json_load(mp, &set->manifest);
    if (rc == 0) {
        const char *kind = sd_json_str(set->manifest, "kind", "");
        if (strcmp(kind, SD_SHARD_KIND_LATENT))
            rc = sd_set_error("%s: kind is \"%s\", not \"latent\" (sdfit trains on sdencode's output)", mp, kind);
        else if (!sd_json_bool(set->manifest, "complete", 0))
            rc = sd_set_error("%s: the shard set is incomplete (sdencode did not finish); re-run sdencode", mp);
        set->prov = cJSON_GetObjectItemCaseSensitive(set->manifest, "provenance");
        set->dir = sd_xstrdup(dir);
    }
    free(mp);
    return rc;
}

void sd_latent_set_close(sd_latent_set *set);
static int fail_paths(char **paths, int npaths, sd_latent_set *set) {
    sd_free_strv(paths, npaths);
    sd_latent_set_close(set);
    return -1;
}

int sd_latent_set_open(const char *spec, sd_latent_set *set) {
    memset(set, 0, sizeof *set);
    char **paths = NULL;
    int npaths = 0;
    if (sd_is_dir(spec) && load_manifest(set, spec, 1)) { sd_latent_set_close(set); return -1; }
    if (sd_shard_expand(spec, &paths, &npaths)) { sd_latent_set_close(set); return -1; }
    if (npaths == 0) { sd_latent_set_close(set); return sd_set_error("%s: no shards", spec); }
    if (!set->manifest) {
        char *d = sd_path_dirname(paths[0]);
        int rc = load_manifest(set, d, 0);
        free(d);
        if (rc) { sd_free_strv(paths, npaths); sd_latent_set_close(set); return -1; }
    }
    /* a cheap integrity check against the manifest: every shard listed, with
     * its recorded size (sha256 is left to sdinfo / sd_shard_manifest_verify) */
    const cJSON *shards = set->manifest ? cJSON_GetObjectItemCaseSensitive(set->manifest, "shards") : NULL;
    for (int i = 0; shards && i < npaths; i++) {
        const char *base = sd_path_basename(paths[i]);
        const cJSON *e, *hit = NULL;
        cJSON_ArrayForEach(e, shards) if (!strcmp(sd_json_str(e, "name", ""), base)) hit = e;
        uint64_t size;
        if (!hit) { sd_set_error("%s: not listed in the set's manifest.json", paths[i]); return fail_paths(paths, npaths, set); }
        if (sd_file_size(paths[i], &size)) return fail_paths(paths, npaths, set);
        if (size != (uint64_t)sd_json_num(hit, "bytes", -1)) {
            sd_set_error("%s: %llu bytes, but manifest.json records %.0f (truncated or modified)", paths[i],
                         (unsigned long long)size, sd_json_num(hit, "bytes", -1));
            return fail_paths(paths, npaths, set);
        }
    }
    int rc = sd_tar_index_build(paths, npaths, &set->idx);
    if (rc) return fail_paths(paths, npaths, set);
    sd_free_strv(paths, npaths);
    set->n = set->idx.n;
    if (shards && set->n != (int64_t)sd_json_num(set->manifest, "samples", -1)) {
        sd_latent_set_close(set);
        return sd_set_error("%s: the shards hold a different number of samples than manifest.json records", spec);
    }
    if (set->n == 0) { sd_latent_set_close(set); return sd_set_error("%s: the shard set has no samples", spec); }
    return 0;
}

void sd_latent_set_close(sd_latent_set *set) {
    sd_tar_index_free(&set->idx);
    cJSON_Delete(set->manifest);
    free(set->dir);
    memset(set, 0, sizeof *set);
}

void sd_latent_sample_free(sd_latent_sample *s) {
    free(s->mean); free(s->logvar); free(s->mean_flipped); free(s->logvar_flipped);
    free(s->ids); free(s->hidden);
    memset(s, 0, sizeof *s);
}

/* A real tensor of the expected rank from a safetensors member, as f32. */
static int get_f32(const sd_st_file *f, const char *name, int ndim, float **out, int64_t *shape, const char *where) {
    const sd_st_tensor *t = sd_st_find(f, name);
    *out = NULL;
    if (!t) return sd_set_error("%s: no tensor \"%s\"", where, name);
    if (t->ndim != ndim) return sd_set_error("%s: tensor \"%s\" has %d dimensions, expected %d", where, name, t->ndim, ndim);
    if (t->dtype != SD_F32 && t->dtype != SD_F16 && t->dtype != SD_BF16)
        return sd_set_error("%s: tensor \"%s\" is %s, expected F16/BF16/F32", where, name, sd_dtype_name(t->dtype));
    for (int i = 0; i < ndim; i++) shape[i] = t->shape[i];
    *out = sd_xmalloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    if (sd_st_read_f32(f, t, *out)) { free(*out); *out = NULL; return -1; }
    return 0;
}

int sd_latent_set_read(const sd_latent_set *set, int64_t i, int need_text, sd_latent_sample *s) {
    memset(s, 0, sizeof *s);
    if (i < 0 || i >= set->n) return sd_set_error("sample %lld out of range", (long long)i);
    const sd_tar_sample *ts = &set->idx.samples[i];
    const char *shard = set->idx.paths[ts->shard];
    char where[512];
    s->index = i;
    snprintf(s->key, sizeof s->key, "%s", ts->key);
    unsigned char *buf = NULL;
    size_t len;
    sd_st_file *f = NULL;
    int64_t sh[3], sh2[3];

    /* latent moments */
    snprintf(where, sizeof where, "%s: %s.%s", shard, ts->key, SD_EXT_LATENT);
    if (sd_tar_index_read(&set->idx, i, SD_EXT_LATENT, &buf, &len)) goto fail;
    if (sd_st_open_memory(buf, len, where, &f)) goto fail;
    if (get_f32(f, SD_T_MEAN, 3, &s->mean, sh, where) || get_f32(f, SD_T_LOGVAR, 3, &s->logvar, sh2, where)) goto fail;
    if (memcmp(sh, sh2, sizeof sh)) { sd_set_error("%s: mean and logvar shapes differ", where); goto fail; }
    s->c = (int)sh[0]; s->h = (int)sh[1]; s->w = (int)sh[2];
    if (sd_st_find(f, SD_T_MEAN_FLIPPED)) {
        if (get_f32(f, SD_T_MEAN_FLIPPED, 3, &s->mean_flipped, sh2, where) || memcmp(sh, sh2, sizeof sh) ||
            get_f32(f, SD_T_LOGVAR_FLIPPED, 3, &s->logvar_flipped, sh2, where) || memcmp(sh, sh2, sizeof sh)) {
            if (!sd_last_error()[0] || s->logvar_flipped) sd_set_error("%s: flipped moments missing or mis-shaped", where);
            goto fail;
        }
    }
    sd_st_close(f); f = NULL;
    free(buf); buf = NULL;

    /* token ids */
    snprintf(where, sizeof where, "%s: %s.%s", shard, ts->key, SD_EXT_TOKENS);
    if (sd_tar_index_read(&set->idx, i, SD_EXT_TOKENS, &buf, &len)) goto fail;
    char *fp = NULL;
    if (sd_tokens_unpack(buf, len, where, &s->ids, &s->ncap, &fp)) goto fail;
    free(fp);
    free(buf); buf = NULL;

    /* cached text-encoder outputs */
    if (need_text) {
        snprintf(where, sizeof where, "%s: %s.%s", shard, ts->key, SD_EXT_TEXT);
        if (sd_tar_index_read(&set->idx, i, SD_EXT_TEXT, &buf, &len)) goto fail;
        if (sd_st_open_memory(buf, len, where, &f)) goto fail;
        if (get_f32(f, SD_T_HIDDEN_STATES, 3, &s->hidden, sh, where)) goto fail;
        if (sh[0] != s->ncap || sh[1] != SD_TOKENS_LEN) {
            sd_set_error("%s: hidden_states shape [%lld, %lld, %lld] does not match %d captions x %d tokens", where,
                         (long long)sh[0], (long long)sh[1], (long long)sh[2], s->ncap, SD_TOKENS_LEN);
            goto fail;
        }
        s->hidden_dim = (int)sh[2];
        sd_st_close(f); f = NULL;
        free(buf); buf = NULL;
    }
    return 0;
fail:
    sd_st_close(f);
    free(buf);
    sd_latent_sample_free(s);
    return -1;
}
