/* ckpt.c — checkpoint-N directories: atomic save, pruning, latest, load.
 * See ckpt.h and formats/checkpoint.md.
 */
#define _GNU_SOURCE /* renameat2 */
#include "train/ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "io/json.h"
#include "io/safetensors.h"

int sd_ckpt_parse_name(const char *name, int64_t *step) {
    static const char prefix[] = "checkpoint-";
    if (strncmp(name, prefix, sizeof prefix - 1)) return 0;
    const char *d = name + sizeof prefix - 1;
    if (!*d || strlen(d) > 18) return 0; /* fits in int64 */
    int64_t v = 0;
    for (const char *c = d; *c; c++) {
        if (*c < '0' || *c > '9') return 0;
        v = v * 10 + (*c - '0');
    }
    if (step) *step = v;
    return 1;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int sd_ckpt_list(const char *output_dir, int64_t **steps) {
    *steps = NULL;
    char **names;
    int n = sd_list_dir(output_dir, &names);
    if (n < 0) return -1;
    int64_t *v = sd_xmalloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    int k = 0;
    for (int i = 0; i < n; i++) {
        int64_t s;
        if (!sd_ckpt_parse_name(names[i], &s)) continue;
        char *p = sd_path_join(output_dir, names[i]);
        if (sd_is_dir(p)) v[k++] = s;
        free(p);
    }
    sd_free_strv(names, n);
    qsort(v, (size_t)k, sizeof *v, cmp_i64);
    *steps = v;
    return k;
}

static char *ckpt_path(const char *output_dir, int64_t step) {
    char name[64];
    snprintf(name, sizeof name, "checkpoint-%lld", (long long)step);
    return sd_path_join(output_dir, name);
}

/* OUTPUT_DIR/.checkpoint-N.KIND.PID */
static char *hidden_path(const char *output_dir, int64_t step, const char *kind) {
    char name[96];
    snprintf(name, sizeof name, ".checkpoint-%lld.%s.%ld", (long long)step, kind, (long)getpid());
    return sd_path_join(output_dir, name);
}

/* A file name inside the checkpoint: relative, no "..", no empty parts. */
static int check_relpath(const char *f) {
    if (!f || !*f || f[0] == '/') return sd_set_error("checkpoint: bad file name \"%s\"", f ? f : "");
    const char *p = f;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return sd_set_error("checkpoint: bad file name \"%s\"", f);
        p += n;
        if (*p == '/') p++;
    }
    if (!strcmp(f, SD_CKPT_STATE_FILE)) return sd_set_error("checkpoint: \"%s\" is reserved", f);
    return 0;
}

/* mkdir -p the directory part of root/rel. */
static int make_parent(const char *root, const char *rel) {
    char *full = sd_path_join(root, rel);
    char *dir = sd_path_dirname(full);
    int rc = sd_mkdir_p(dir);
    free(dir);
    free(full);
    return rc;
}

static int fsync_parent(const char *root, const char *rel) {
    char *full = sd_path_join(root, rel);
    char *dir = sd_path_dirname(full);
    int rc = sd_fsync_dir(dir);
    free(dir);
    free(full);
    return rc;
}

/* Check a buffer's tensors lie inside it, with sane shapes. */
static int check_buffer(const sd_ckpt_buffer *b) {
    if (check_relpath(b->file)) return -1;
    if (!b->tensors) {
        if (!b->name || !*b->name) return sd_set_error("checkpoint %s: buffer without tensors needs a name", b->file);
        return 0;
    }
    for (int i = 0; i < b->ntensors; i++) {
        const sd_ckpt_tensor *t = &b->tensors[i];
        if (!t->name || !*t->name) return sd_set_error("checkpoint %s: tensor %d has no name", b->file, i);
        if (t->ndim < 0 || t->ndim > SD_MAX_DIMS) return sd_set_error("checkpoint %s: %s: bad rank", b->file, t->name);
        int64_t n;
        if (sd_shape_numel(t->ndim, t->shape, &n)) return sd_error_prefix("checkpoint %s: %s", b->file, t->name);
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] < 0) return sd_set_error("checkpoint %s: %s: negative dimension", b->file, t->name);
        if (t->offset > b->numel || (uint64_t)n > b->numel - t->offset)
            return sd_set_error("checkpoint %s: tensor %s [offset %zu, %lld values] lies outside the buffer (%zu)",
                                b->file, t->name, t->offset, (long long)n, b->numel);
    }
    return 0;
}

static sd_dtype storage_dtype(const sd_ckpt_buffer *b) { return b->dtype == SD_DTYPE_INVALID ? SD_F32 : b->dtype; }

static int write_buffer(const char *dir, const sd_ckpt_buffer *b) {
    sd_dtype dt = storage_dtype(b);
    if (dt != SD_F32 && dt != SD_F16 && dt != SD_BF16)
        return sd_set_error("checkpoint %s: unsupported storage dtype", b->file);
    if (make_parent(dir, b->file)) return -1;
    sd_st_writer *w = sd_st_writer_new();
    int rc = sd_st_writer_meta(w, "format", "pt");
    if (!b->tensors) {
        int64_t shape[1] = {(int64_t)b->numel};
        if (!rc) rc = sd_st_writer_add_f32(w, b->name, dt, 1, shape, b->data);
    } else {
        for (int i = 0; i < b->ntensors && !rc; i++) {
            const sd_ckpt_tensor *t = &b->tensors[i];
            rc = sd_st_writer_add_f32(w, t->name, dt, t->ndim, t->shape, b->data + t->offset);
        }
    }
    char *path = sd_path_join(dir, b->file);
    if (!rc) rc = sd_st_writer_save(w, path);
    free(path);
    sd_st_writer_free(w);
    if (rc) sd_error_prefix("checkpoint");
    return rc;
}

/* trainer_state.json: the caller's state plus format/version/step/files. */
static int write_state(const char *dir, int64_t step, const sd_ckpt_contents *c) {
    cJSON *s = c->state ? cJSON_Duplicate(c->state, 1) : cJSON_CreateObject();
    if (!s || !cJSON_IsObject(s)) {
        cJSON_Delete(s);
        return sd_set_error("checkpoint: the state must be a JSON object");
    }
    const char *own[4] = {"format", "version", "step", "files"};
    for (int k = 0; k < 4; k++) cJSON_DeleteItemFromObjectCaseSensitive(s, own[k]);
    cJSON_AddStringToObject(s, "format", SD_CKPT_FORMAT);
    cJSON_AddNumberToObject(s, "version", SD_CKPT_VERSION);
    cJSON_AddNumberToObject(s, "step", (double)step);
    cJSON *files = cJSON_AddObjectToObject(s, "files");
    int rc = 0;
    for (int i = 0; i < c->nbuffers + c->nblobs && !rc; i++) {
        const char *f = i < c->nbuffers ? c->buffers[i].file : c->blobs[i - c->nbuffers].file;
        char *p = sd_path_join(dir, f);
        uint64_t size;
        rc = sd_file_size(p, &size);
        free(p);
        if (!rc) cJSON_AddNumberToObject(files, f, (double)size);
    }
    char *path = sd_path_join(dir, SD_CKPT_STATE_FILE);
    if (!rc) rc = sd_json_save(path, s);
    free(path);
    cJSON_Delete(s);
    return rc;
}

/* Replace or create dst with the directory src, atomically when possible. */
static int publish(const char *output_dir, int64_t step, const char *src, const char *dst) {
    if (!sd_is_dir(dst)) {
        if (rename(src, dst) != 0) return sd_set_error("%s: rename: %s", dst, strerror(errno));
        return 0;
    }
    /* checkpoint-N exists (a resumed run saving the same step): swap the two
     * directories in one step, then delete the old one under its hidden name. */
    if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_EXCHANGE) == 0) {
        if (sd_fsync_dir(output_dir)) return -1;
        return sd_rm_rf(src);
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return sd_set_error("%s: rename: %s", dst, strerror(errno));
    /* no RENAME_EXCHANGE on this file system: move the old one aside first */
    char *old = hidden_path(output_dir, step, "old");
    int rc = 0;
    if (rename(dst, old) != 0) rc = sd_set_error("%s: rename: %s", dst, strerror(errno));
    else if (rename(src, dst) != 0) {
        rc = sd_set_error("%s: rename: %s", dst, strerror(errno));
        if (rename(old, dst) != 0) sd_warn("%s: could not restore the previous checkpoint from %s", dst, old);
    } else if (sd_fsync_dir(output_dir) == 0)
        rc = sd_rm_rf(old);
    free(old);
    return rc;
}

/* Delete a checkpoint without ever leaving a half-deleted checkpoint-K:
 * rename it to a hidden name first. */
static int remove_checkpoint(const char *output_dir, int64_t step) {
    char *p = ckpt_path(output_dir, step), *del = hidden_path(output_dir, step, "del");
    int rc = 0;
    if (rename(p, del) != 0) rc = sd_set_error("%s: rename: %s", p, strerror(errno));
    else if (sd_fsync_dir(output_dir) == 0)
        rc = sd_rm_rf(del);
    free(p);
    free(del);
    return rc;
}

int sd_ckpt_save(const char *output_dir, int64_t step, const sd_ckpt_contents *c, int total_limit, char **saved) {
    if (saved) *saved = NULL;
    if (step < 0) return sd_set_error("checkpoint: negative step");
    for (int i = 0; i < c->nbuffers; i++)
        if (check_buffer(&c->buffers[i])) return -1;
    for (int i = 0; i < c->nblobs; i++)
        if (check_relpath(c->blobs[i].file)) return -1;
    for (int i = 0; i < c->nbuffers + c->nblobs; i++)
        for (int k = 0; k < i; k++) {
            const char *a = i < c->nbuffers ? c->buffers[i].file : c->blobs[i - c->nbuffers].file;
            const char *b = k < c->nbuffers ? c->buffers[k].file : c->blobs[k - c->nbuffers].file;
            if (!strcmp(a, b)) return sd_set_error("checkpoint: file \"%s\" given twice", a);
        }
    if (sd_mkdir_p(output_dir)) return -1;
    if (sd_ckpt_clean_stale(output_dir) < 0) return -1;

    /* diffusers' pruning rule, decided on the dirs present before the save */
    int64_t *existing = NULL;
    int nexist = sd_ckpt_list(output_dir, &existing);
    if (nexist < 0) return -1;
    int nremove = total_limit > 0 && nexist >= total_limit ? nexist - total_limit + 1 : 0;

    char *tmp = hidden_path(output_dir, step, "tmp");
    char *final = ckpt_path(output_dir, step);
    int rc = 0;
    if (sd_rm_rf(tmp) || mkdir(tmp, 0777) != 0) rc = sd_set_error("%s: cannot create: %s", tmp, strerror(errno));
    for (int i = 0; i < c->nbuffers && !rc; i++) rc = write_buffer(tmp, &c->buffers[i]);
    for (int i = 0; i < c->nblobs && !rc; i++) {
        const sd_ckpt_blob *bl = &c->blobs[i];
        char *p = sd_path_join(tmp, bl->file);
        rc = make_parent(tmp, bl->file);
        if (!rc) rc = sd_write_file_atomic(p, bl->data, bl->len);
        free(p);
    }
    /* directory entries of subdirectories, then the state file last */
    for (int i = 0; i < c->nbuffers + c->nblobs && !rc; i++)
        rc = fsync_parent(tmp, i < c->nbuffers ? c->buffers[i].file : c->blobs[i - c->nbuffers].file);
    if (!rc) rc = write_state(tmp, step, c);
    if (!rc) rc = sd_fsync_dir(tmp);
    if (!rc) rc = publish(output_dir, step, tmp, final);
    if (!rc) rc = sd_fsync_dir(output_dir);
    if (rc) {
        sd_error_prefix("saving %s", final);
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", sd_last_error());
        sd_rm_rf(tmp); /* best effort; a leftover dot-dir is removed by the next save */
        sd_set_error("%s", msg);
    } else {
        for (int i = 0; i < nremove && !rc; i++)
            if (existing[i] != step) rc = remove_checkpoint(output_dir, existing[i]);
        if (rc) sd_error_prefix("pruning old checkpoints");
    }
    if (!rc && saved) *saved = final;
    else free(final);
    free(tmp);
    free(existing);
    return rc;
}

int sd_ckpt_latest(const char *output_dir, char **path, int64_t *step) {
    *path = NULL;
    if (!sd_is_dir(output_dir)) return 0;
    int64_t *steps;
    int n = sd_ckpt_list(output_dir, &steps);
    if (n < 0) return -1;
    int found = 0;
    for (int i = n - 1; i >= 0 && !found; i--) {
        char *p = ckpt_path(output_dir, steps[i]);
        char *st = sd_path_join(p, SD_CKPT_STATE_FILE);
        if (sd_is_file(st)) {
            *path = p;
            if (step) *step = steps[i];
            found = 1;
        } else {
            free(p);
        }
        free(st);
    }
    free(steps);
    return found;
}

int sd_ckpt_resolve(const char *output_dir, const char *spec, char **path) {
    *path = NULL;
    if (!strcmp(spec, "latest")) return sd_ckpt_latest(output_dir, path, NULL);
    char *p = strchr(spec, '/') ? sd_xstrdup(spec) : sd_path_join(output_dir, spec);
    char *st = sd_path_join(p, SD_CKPT_STATE_FILE);
    int ok = sd_is_file(st);
    free(st);
    if (!ok) {
        int rc = sd_set_error("%s: not a checkpoint (no %s)", p, SD_CKPT_STATE_FILE);
        free(p);
        return rc;
    }
    *path = p;
    return 1;
}

int sd_ckpt_load_state(const char *ckpt_dir, cJSON **out) {
    *out = NULL;
    char *path = sd_path_join(ckpt_dir, SD_CKPT_STATE_FILE);
    cJSON *s;
    int rc = sd_json_load(path, &s);
    free(path);
    if (rc) return -1;
    const char *fmt = sd_json_str(s, "format", NULL);
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(s, "version");
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(s, "step");
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(s, "files");
    int64_t dir_step;
    if (!fmt || strcmp(fmt, SD_CKPT_FORMAT))
        rc = sd_set_error("%s: not an sdtools checkpoint (format \"%s\")", ckpt_dir, fmt ? fmt : "");
    else if (!cJSON_IsNumber(ver) || ver->valuedouble != SD_CKPT_VERSION)
        rc = sd_set_error("%s: unsupported checkpoint version", ckpt_dir);
    else if (!cJSON_IsNumber(step) || step->valuedouble < 0 || step->valuedouble != (double)(int64_t)step->valuedouble)
        rc = sd_set_error("%s: bad \"step\" in %s", ckpt_dir, SD_CKPT_STATE_FILE);
    else if (sd_ckpt_parse_name(sd_path_basename(ckpt_dir), &dir_step) && dir_step != (int64_t)step->valuedouble)
        rc = sd_set_error("%s: %s says step %lld", ckpt_dir, SD_CKPT_STATE_FILE, (long long)step->valuedouble);
    else if (!cJSON_IsObject(files))
        rc = sd_set_error("%s: \"files\" missing from %s", ckpt_dir, SD_CKPT_STATE_FILE);
    const cJSON *f;
    if (!rc) cJSON_ArrayForEach(f, files) {
        uint64_t size;
        char *p;
        if (check_relpath(f->string) || !cJSON_IsNumber(f)) {
            rc = sd_set_error("%s: bad entry in \"files\"", ckpt_dir);
            break;
        }
        p = sd_path_join(ckpt_dir, f->string);
        if (sd_file_size(p, &size)) rc = sd_set_error("%s: missing (listed in %s)", p, SD_CKPT_STATE_FILE);
        else if ((double)size != f->valuedouble)
            rc = sd_set_error("%s: %llu bytes, %s says %.0f (truncated or replaced?)", p, (unsigned long long)size,
                              SD_CKPT_STATE_FILE, f->valuedouble);
        free(p);
        if (rc) break;
    }
    if (rc) {
        cJSON_Delete(s);
        return -1;
    }
    *out = s;
    return 0;
}

int sd_ckpt_load_buffer(const char *ckpt_dir, const sd_ckpt_buffer *b) {
    if (check_buffer(b)) return -1;
    char *path = sd_path_join(ckpt_dir, b->file);
    sd_st_file *f;
    int rc = sd_st_open(path, &f);
    if (rc) {
        free(path);
        return -1;
    }
    int want = b->tensors ? b->ntensors : 1;
    if (f->ntensors != want)
        rc = sd_set_error("%s: %d tensors, expected %d (a checkpoint of another model?)", path, f->ntensors, want);
    for (int i = 0; i < want && !rc; i++) {
        sd_ckpt_tensor whole = {.name = b->name, .ndim = 1, .shape = {(int64_t)b->numel}, .offset = 0};
        const sd_ckpt_tensor *t = b->tensors ? &b->tensors[i] : &whole;
        const sd_st_tensor *st = sd_st_find(f, t->name);
        if (!st) {
            rc = sd_set_error("%s: tensor %s missing", path, t->name);
            break;
        }
        int same = st->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = st->shape[d] == t->shape[d];
        if (!same) {
            char a[128], c[128];
            rc = sd_set_error("%s: tensor %s has shape %s, expected %s", path, t->name,
                              sd_shape_str(st->ndim, st->shape, a, sizeof a), sd_shape_str(t->ndim, t->shape, c, sizeof c));
            break;
        }
        if (sd_st_read_f32(f, st, b->data + t->offset)) rc = sd_error_prefix("%s", path);
    }
    sd_st_close(f);
    free(path);
    return rc;
}

/* ".checkpoint-N.KIND.PID" with KIND tmp/old/del: the PID, else 0. */
static long leftover_pid(const char *name) {
    if (strncmp(name, ".checkpoint-", 12)) return 0;
    const char *kinds[3] = {".tmp.", ".old.", ".del."};
    for (int k = 0; k < 3; k++) {
        const char *p = strstr(name + 12, kinds[k]);
        if (!p) continue;
        p += 5;
        char *end;
        long pid = strtol(p, &end, 10);
        if (*p && !*end && pid > 0) return pid;
    }
    return 0;
}

int sd_ckpt_clean_stale(const char *output_dir) {
    char **names;
    int n = sd_list_dir(output_dir, &names);
    if (n < 0) return -1;
    int removed = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        long pid = leftover_pid(names[i]);
        if (!pid) continue;
        /* ours (not mid-save when we get here) or a writer that has died */
        if (pid != (long)getpid() && !(kill((pid_t)pid, 0) != 0 && errno == ESRCH)) continue;
        char *p = sd_path_join(output_dir, names[i]);
        if (sd_rm_rf(p)) rc = -1;
        else removed++;
        free(p);
    }
    sd_free_strv(names, n);
    return rc ? -1 : removed;
}
