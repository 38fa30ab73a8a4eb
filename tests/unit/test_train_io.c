/* test_train_io.c — checkpoint directories (atomic save, failure leaves the
 * previous checkpoint valid, diffusers' pruning rule, latest, round trip),
 * the JSONL step log and the TensorBoard writer's basics (the event-file
 * contents are checked by tests/py/test_tblog.py). */
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fs.h"
#include "io/json.h"
#include "train/ckpt.h"
#include "train/jsonl.h"
#include "train/tblog.h"

static char *dir_in(const char *name) {
    char *d = sd_path_join(test_tmpdir(), name);
    sd_rm_rf(d);
    return d;
}

/* A small "model": a flat buffer cut into three tensors, plus optimizer moments. */
#define NP 70
static float params[NP], moments[2 * NP];
static const sd_ckpt_tensor unet_tensors[3] = {
    {.name = "conv_in.weight", .ndim = 4, .shape = {4, 2, 2, 2}, .offset = 0},
    {.name = "conv_in.bias", .ndim = 1, .shape = {4}, .offset = 32},
    {.name = "time_embedding.linear_1.weight", .ndim = 2, .shape = {2, 17}, .offset = 36},
};

static void fill(int64_t step) {
    for (int i = 0; i < NP; i++) params[i] = (float)step + (float)i / 64.0f;
    for (int i = 0; i < 2 * NP; i++) moments[i] = -(float)step - (float)i / 128.0f;
}

/* Save what a trainer would at `step` (contents depend on step). */
static int save_step(const char *out, int64_t step, int limit) {
    fill(step);
    sd_ckpt_buffer bufs[2] = {
        {.file = "unet/diffusion_pytorch_model.safetensors", .data = params, .numel = NP, .tensors = unet_tensors,
         .ntensors = 3},
        {.file = "optimizer.safetensors", .data = moments, .numel = 2 * NP, .name = "exp_avg_and_exp_avg_sq"},
    };
    const char *cfg = "{\"_class_name\": \"UNet2DConditionModel\"}\n";
    sd_ckpt_blob blob = {.file = "unet/config.json", .data = cfg, .len = strlen(cfg)};
    cJSON *state = cJSON_CreateObject();
    cJSON_AddNumberToObject(state, "epoch", (double)(step / 3));
    cJSON_AddNumberToObject(state, "data_cursor", (double)(step * 16));
    cJSON_AddStringToObject(state, "rng", "philox:1234:5678");
    cJSON_AddNumberToObject(state, "step", -1); /* replaced by the library's own */
    sd_ckpt_contents c = {.buffers = bufs, .nbuffers = 2, .blobs = &blob, .nblobs = 1, .state = state};
    int rc = sd_ckpt_save(out, step, &c, limit, NULL);
    cJSON_Delete(state);
    return rc;
}

/* The set of checkpoint-N in out as a string "2,4,6". */
static const char *ckpt_set(const char *out) {
    static char buf[256];
    int64_t *steps;
    int n = sd_ckpt_list(out, &steps);
    buf[0] = 0;
    for (int i = 0; i < n; i++)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%lld", i ? "," : "", (long long)steps[i]);
    free(steps);
    return buf;
}

/* No dot-directories left over in out. */
static int leftovers(const char *out) {
    char **names;
    int n = sd_list_dir(out, &names), k = 0;
    for (int i = 0; i < n; i++) k += names[i][0] == '.';
    sd_free_strv(names, n);
    return k;
}

/* Load a checkpoint back and check it holds what save_step(step) wrote. */
static int verify_step(const char *ckdir, int64_t step) {
    cJSON *st;
    if (sd_ckpt_load_state(ckdir, &st)) {
        printf("# %s: %s\n", ckdir, sd_last_error());
        return 0;
    }
    int ok = sd_json_int(st, "step", -1) == step && sd_json_int(st, "epoch", -1) == step / 3 &&
             sd_json_int(st, "data_cursor", -1) == step * 16 &&
             !strcmp(sd_json_str(st, "rng", ""), "philox:1234:5678");
    cJSON_Delete(st);
    float p[NP], m[2 * NP];
    memset(p, 0, sizeof p);
    sd_ckpt_buffer bufs[2] = {
        {.file = "unet/diffusion_pytorch_model.safetensors", .data = p, .numel = NP, .tensors = unet_tensors,
         .ntensors = 3},
        {.file = "optimizer.safetensors", .data = m, .numel = 2 * NP, .name = "exp_avg_and_exp_avg_sq"},
    };
    if (sd_ckpt_load_buffer(ckdir, &bufs[0]) || sd_ckpt_load_buffer(ckdir, &bufs[1])) {
        printf("# %s: %s\n", ckdir, sd_last_error());
        return 0;
    }
    fill(step);
    return ok && !memcmp(p, params, sizeof p) && !memcmp(m, moments, sizeof m);
}

TEST(ckpt_round_trip) {
    char *out = dir_in("rt");
    CHECK_OK(save_step(out, 2, 0));
    char *ck = sd_path_join(out, "checkpoint-2");
    CHECK(verify_step(ck, 2));
    char *cfg = sd_path_join(ck, "unet/config.json");
    char *data;
    size_t len;
    CHECK_OK(sd_read_file(cfg, 1 << 20, &data, &len));
    CHECK(strstr(data, "UNet2DConditionModel") != NULL);
    free(data);
    CHECK(leftovers(out) == 0);
    /* F16 storage: values come back rounded to half precision */
    float x[5] = {1.0f, 1.0f / 3.0f, -2.5f, 65504.0f, 1e-3f}, y[5];
    sd_ckpt_buffer hb = {.file = "ema/weights.safetensors", .data = x, .numel = 5, .name = "w", .dtype = SD_F16};
    sd_ckpt_contents c = {.buffers = &hb, .nbuffers = 1};
    CHECK_OK(sd_ckpt_save(out, 3, &c, 0, NULL));
    char *ck3 = sd_path_join(out, "checkpoint-3");
    sd_ckpt_buffer hl = hb;
    hl.data = y;
    CHECK_OK(sd_ckpt_load_buffer(ck3, &hl));
    for (int i = 0; i < 5; i++) CHECK(y[i] == sd_f16_to_f32(sd_f32_to_f16(x[i])));
    /* loading into a different layout is refused */
    sd_ckpt_tensor wrong[3];
    memcpy(wrong, unet_tensors, sizeof wrong);
    wrong[2].shape[1] = 16;
    wrong[2].shape[0] = 2;
    float p[NP];
    sd_ckpt_buffer wb = {.file = "unet/diffusion_pytorch_model.safetensors", .data = p, .numel = NP, .tensors = wrong,
                         .ntensors = 3};
    CHECK_FAILS(sd_ckpt_load_buffer(ck, &wb), "has shape");
    wb.ntensors = 2;
    CHECK_FAILS(sd_ckpt_load_buffer(ck, &wb), "3 tensors, expected 2");
    wrong[2].name = "nope";
    wrong[2].shape[1] = 17;
    wb.ntensors = 3;
    CHECK_FAILS(sd_ckpt_load_buffer(ck, &wb), "missing");
    /* a tensor outside its buffer, a bad file name: refused before anything is written */
    wrong[2].name = "x";
    wrong[2].offset = 60;
    CHECK_FAILS(sd_ckpt_load_buffer(ck, &wb), "outside the buffer");
    sd_ckpt_buffer bad = {.file = "../escape.safetensors", .data = p, .numel = NP, .name = "w"};
    sd_ckpt_contents cb = {.buffers = &bad, .nbuffers = 1};
    CHECK_FAILS(sd_ckpt_save(out, 5, &cb, 0, NULL), "bad file name");
    bad.file = SD_CKPT_STATE_FILE;
    CHECK_FAILS(sd_ckpt_save(out, 5, &cb, 0, NULL), "reserved");
    CHECK(!strcmp(ckpt_set(out), "2,3"));
    /* a truncated file is caught by the recorded sizes */
    char *opt = sd_path_join(ck, "optimizer.safetensors");
    CHECK(truncate(opt, 100) == 0);
    cJSON *st = NULL;
    CHECK_FAILS(sd_ckpt_load_state(ck, &st), "truncated");
    /* a state whose step disagrees with the directory name */
    char *ck9 = sd_path_join(out, "checkpoint-9");
    CHECK(rename(ck3, ck9) == 0);
    CHECK_FAILS(sd_ckpt_load_state(ck9, &st), "says step 3");
    free(opt); free(ck9); free(ck3); free(cfg); free(ck); free(out);
}

/* Replacing an existing checkpoint-N (a resumed run saving the same step). */
TEST(ckpt_replace_same_step) {
    char *out = dir_in("replace");
    CHECK_OK(save_step(out, 4, 0));
    /* same step, other contents: pretend the run diverged */
    fill(4);
    params[0] = 123.0f;
    sd_ckpt_buffer b = {.file = "unet/diffusion_pytorch_model.safetensors", .data = params, .numel = NP,
                        .tensors = unet_tensors, .ntensors = 3};
    sd_ckpt_contents c = {.buffers = &b, .nbuffers = 1};
    char *saved = NULL;
    CHECK_OK(sd_ckpt_save(out, 4, &c, 0, &saved));
    CHECK(saved && !strcmp(sd_path_basename(saved), "checkpoint-4"));
    float p[NP];
    sd_ckpt_buffer l = b;
    l.data = p;
    CHECK_OK(sd_ckpt_load_buffer(saved, &l));
    CHECK(p[0] == 123.0f);
    char *optf = sd_path_join(saved, "optimizer.safetensors");
    CHECK(!sd_is_file(optf)); /* the old directory is gone, not merged */
    CHECK(leftovers(out) == 0 && !strcmp(ckpt_set(out), "4"));
    free(optf); free(saved); free(out);
}

/* A failure in the middle of writing leaves the previous checkpoint valid and
 * no checkpoint-N. */
TEST(ckpt_failure_mid_write) {
    char *out = dir_in("fail");
    CHECK_OK(save_step(out, 2, 0));
    /* the second file cannot be created: its parent "a.safetensors" is a file */
    float x[4] = {1, 2, 3, 4};
    sd_ckpt_buffer b = {.file = "a.safetensors", .data = x, .numel = 4, .name = "x"};
    sd_ckpt_blob bl = {.file = "a.safetensors/config.json", .data = "{}", .len = 2};
    sd_ckpt_contents c = {.buffers = &b, .nbuffers = 1, .blobs = &bl, .nblobs = 1};
    CHECK(sd_ckpt_save(out, 4, &c, 1, NULL) != 0);
    printf("# failed save reports: %s\n", sd_last_error());
    CHECK(strstr(sd_last_error(), "checkpoint-4") != NULL);
    CHECK(!strcmp(ckpt_set(out), "2")); /* limit 1 did NOT remove checkpoint-2 */
    CHECK(leftovers(out) == 0);
    char *ck = sd_path_join(out, "checkpoint-2");
    CHECK(verify_step(ck, 2));
    char *latest;
    int64_t step = -1;
    CHECK(sd_ckpt_latest(out, &latest, &step) == 1 && step == 2);
    free(latest);
    free(ck);
    free(out);
}

/* Disk full: file writes fail (EFBIG from RLIMIT_FSIZE, as ENOSPC would). */
TEST(ckpt_disk_full) {
    char *out = dir_in("full");
    CHECK_OK(save_step(out, 2, 0));
    size_t n = 1 << 18; /* 1 MiB of floats */
    float *big = sd_xcalloc(n, sizeof(float));
    sd_ckpt_buffer b[2] = {
        {.file = "small.safetensors", .data = big, .numel = 16, .name = "s"},
        {.file = "big.safetensors", .data = big, .numel = n, .name = "b"},
    };
    sd_ckpt_contents c = {.buffers = b, .nbuffers = 2};
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 256 * 1024;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    int rc = sd_ckpt_save(out, 4, &c, 1, NULL);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    CHECK(rc != 0);
    printf("# disk-full save reports: %s\n", sd_last_error());
    CHECK_MSG(strstr(sd_last_error(), "large") || strstr(sd_last_error(), "space"), "error: %s", sd_last_error());
    CHECK(!strcmp(ckpt_set(out), "2"));
    CHECK(leftovers(out) == 0);
    char *ck = sd_path_join(out, "checkpoint-2");
    CHECK(verify_step(ck, 2));
    /* once there is room again the same save works and prunes */
    CHECK_OK(sd_ckpt_save(out, 4, &c, 1, NULL));
    CHECK(!strcmp(ckpt_set(out), "4"));
    free(ck);
    free(big);
    free(out);
}

/* checkpoints_total_limit as diffusers applies it (trainers.md §1.2). */
TEST(ckpt_pruning_matches_diffusers) {
    /* 4 steps, checkpoint every 2, no limit -> {2, 4} */
    char *out = dir_in("prune0");
    for (int s = 2; s <= 4; s += 2) CHECK_OK(save_step(out, s, 0));
    CHECK(!strcmp(ckpt_set(out), "2,4"));
    /* resume from checkpoint-4 with limit 2, checkpoint every step, up to 5 -> {4, 5} */
    CHECK_OK(save_step(out, 5, 2));
    CHECK(!strcmp(ckpt_set(out), "4,5"));
    free(out);
    /* 6 steps, every 2, limit 2 -> {4, 6} */
    out = dir_in("prune2");
    for (int s = 2; s <= 6; s += 2) CHECK_OK(save_step(out, s, 2));
    CHECK(!strcmp(ckpt_set(out), "4,6"));
    free(out);
    /* limits 1, 2, 3 over saves at 2..10 */
    const char *want[4] = {NULL, "10", "8,10", "6,8,10"};
    for (int L = 1; L <= 3; L++) {
        char name[32];
        snprintf(name, sizeof name, "prune_l%d", L);
        out = dir_in(name);
        for (int s = 2; s <= 10; s += 2) {
            CHECK_OK(save_step(out, s, L));
            int64_t *steps;
            int n = sd_ckpt_list(out, &steps);
            CHECK_MSG(n == (s / 2 < L ? s / 2 : L), "limit %d after step %d: %s", L, s, ckpt_set(out));
            CHECK(n > 0 && steps[n - 1] == s); /* the new one always stays */
            free(steps);
        }
        CHECK_MSG(!strcmp(ckpt_set(out), want[L]), "limit %d: %s", L, ckpt_set(out));
        char *ck = sd_path_join(out, "checkpoint-10");
        CHECK(verify_step(ck, 10));
        free(ck);
        CHECK(leftovers(out) == 0);
        free(out);
    }
    /* more than the limit already there (limit lowered on resume): 4 - 2 + 1 removed */
    out = dir_in("prune_lower");
    for (int s = 2; s <= 8; s += 2) CHECK_OK(save_step(out, s, 0));
    CHECK_OK(save_step(out, 10, 2));
    CHECK(!strcmp(ckpt_set(out), "8,10"));
    /* re-saving an existing step under the limit: {8,10} -> save 10 -> {10} as diffusers */
    CHECK_OK(save_step(out, 10, 2));
    CHECK(!strcmp(ckpt_set(out), "10"));
    free(out);
}

TEST(ckpt_latest_and_resolve) {
    char *out = dir_in("latest");
    char *p = NULL;
    int64_t step = -1;
    CHECK(sd_ckpt_latest(out, &p, &step) == 0 && p == NULL); /* no output dir yet */
    CHECK(sd_ckpt_resolve(out, "latest", &p) == 0 && p == NULL);
    CHECK_OK(save_step(out, 9, 0));
    CHECK_OK(save_step(out, 10, 0));
    /* things that are not complete checkpoints */
    char *d;
    d = sd_path_join(out, "checkpoint-100"); /* no trainer_state.json: partial or foreign */
    CHECK_OK(sd_mkdir_p(d));
    free(d);
    d = sd_path_join(out, ".checkpoint-200.tmp.1"); /* a temp dir (pid 1 is alive: never cleaned) */
    CHECK_OK(sd_mkdir_p(d));
    free(d);
    d = sd_path_join(out, "checkpoint-x");
    CHECK_OK(sd_mkdir_p(d));
    free(d);
    d = sd_path_join(out, "checkpoint-300"); /* a file */
    CHECK_OK(sd_write_file_atomic(d, "x", 1));
    free(d);
    CHECK(sd_ckpt_latest(out, &p, &step) == 1 && step == 10 && !strcmp(sd_path_basename(p), "checkpoint-10"));
    free(p);
    CHECK(!strcmp(ckpt_set(out), "9,10,100"));
    CHECK(sd_ckpt_resolve(out, "checkpoint-9", &p) == 1 && verify_step(p, 9));
    free(p);
    char *full = sd_path_join(out, "checkpoint-10");
    CHECK(sd_ckpt_resolve("/nonexistent", full, &p) == 1 && !strcmp(p, full));
    free(p);
    free(full);
    CHECK_FAILS(sd_ckpt_resolve(out, "checkpoint-7", &p), "not a checkpoint");
    CHECK_FAILS(sd_ckpt_resolve(out, "checkpoint-100", &p), "not a checkpoint");
    int64_t s;
    CHECK(sd_ckpt_parse_name("checkpoint-0", &s) == 1 && s == 0);
    CHECK(sd_ckpt_parse_name("checkpoint-", &s) == 0);
    CHECK(sd_ckpt_parse_name("checkpoint--1", &s) == 0);
    CHECK(sd_ckpt_parse_name("checkpoint-1x", &s) == 0);
    CHECK(sd_ckpt_parse_name("checkpoint-99999999999999999999", &s) == 0);
    free(out);
}

/* Leftovers of a writer that died are removed by the next save; those of a
 * live process are not. */
TEST(ckpt_stale_temp_dirs) {
    char *out = dir_in("stale");
    CHECK_OK(sd_mkdir_p(out));
    pid_t child = fork();
    if (child == 0) _exit(0);
    int status;
    waitpid(child, &status, 0); /* child's pid is now dead */
    char name[64], *d;
    snprintf(name, sizeof name, ".checkpoint-3.tmp.%ld", (long)child);
    d = sd_path_join(out, name);
    CHECK_OK(sd_mkdir_p(d));
    char *junk = sd_path_join(d, "junk.safetensors");
    CHECK_OK(sd_write_file_atomic(junk, "xx", 2));
    free(junk);
    free(d);
    d = sd_path_join(out, ".checkpoint-5.tmp.1");
    CHECK_OK(sd_mkdir_p(d));
    CHECK_OK(save_step(out, 6, 0));
    snprintf(name, sizeof name, ".checkpoint-3.tmp.%ld", (long)child);
    char *dead = sd_path_join(out, name);
    CHECK(!sd_is_dir(dead));
    CHECK(sd_is_dir(d));
    CHECK(sd_ckpt_clean_stale(out) == 0);
    free(dead);
    free(d);
    free(out);
}

/* ------------------------------------------------------------------ JSONL */

TEST(jsonl_log) {
    char *dir = dir_in("jsonl");
    char *path = sd_path_join(dir, "logs/train_log.jsonl");
    sd_jsonl *l;
    CHECK_OK(sd_jsonl_open(&l, path, 0));
    const char *keys[4] = {"loss", "lr", "grad_norm", "images_per_s"};
    double v1[4] = {0.125, 1e-4, 0.75, 12.5}, v2[4] = {NAN, 1e-4 / 3, INFINITY, 13.0};
    CHECK_OK(sd_jsonl_step(l, 1, 4, keys, v1));
    CHECK_OK(sd_jsonl_step(l, 2, 4, keys, v2));
    CHECK_OK(sd_jsonl_close(l));
    CHECK_OK(sd_jsonl_open(&l, path, 1)); /* a resumed run appends */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", 3);
    cJSON_AddStringToObject(o, "event", "checkpoint");
    CHECK_OK(sd_jsonl_write(l, o));
    cJSON_Delete(o);
    CHECK_OK(sd_jsonl_close(l));
    char *data;
    size_t len;
    CHECK_OK(sd_read_file(path, 1 << 20, &data, &len));
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += data[i] == '\n';
    CHECK(lines == 3 && data[len - 1] == '\n');
    char *line2 = strchr(data, '\n') + 1;
    cJSON *a, *b;
    CHECK_OK(sd_json_parse(data, (size_t)(line2 - data), "line 1", &a));
    CHECK_OK(sd_json_parse(line2, (size_t)(strchr(line2, '\n') - line2), "line 2", &b));
    if (a && b) {
        CHECK(sd_json_int(a, "step", 0) == 1 && sd_json_num(a, "loss", 0) == 0.125 && sd_json_num(a, "lr", 0) == 1e-4);
        CHECK(sd_json_num(b, "lr", 0) == 1e-4 / 3); /* doubles round-trip exactly */
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(b, "loss")) && cJSON_IsNull(cJSON_GetObjectItem(b, "grad_norm")));
    }
    CHECK(strstr(data, "\"event\":\"checkpoint\"") != NULL);
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(data);
    free(path);
    free(dir);
}

/* ------------------------------------------------------------------ TensorBoard */

TEST(tblog_basics) {
    CHECK(sd_crc32c("123456789", 9) == 0xE3069283u);
    CHECK(sd_crc32c("", 0) == 0);
    char *dir = dir_in("tb");
    sd_tb *tb;
    CHECK_OK(sd_tb_open(&tb, dir));
    const char *base = sd_path_basename(sd_tb_path(tb));
    CHECK(!strncmp(base, "events.out.tfevents.", 20));
    CHECK_OK(sd_tb_scalar(tb, "loss", 1, 0.5));
    CHECK_FAILS(sd_tb_image(tb, "img", 1, "x", 1, 0, 4, 3), "bad size");
    /* every event reaches the file as it is written */
    uint64_t s1, s2;
    CHECK_OK(sd_file_size(sd_tb_path(tb), &s1));
    CHECK_OK(sd_tb_scalar(tb, "loss", 2, 0.25));
    CHECK_OK(sd_file_size(sd_tb_path(tb), &s2));
    CHECK(s2 > s1 && s1 > 40);
    /* two writers in one process get distinct files */
    sd_tb *tb2;
    CHECK_OK(sd_tb_open(&tb2, dir));
    CHECK(strcmp(sd_tb_path(tb), sd_tb_path(tb2)) != 0);
    CHECK_OK(sd_tb_flush(tb));
    CHECK_OK(sd_tb_close(tb2));
    CHECK_OK(sd_tb_close(tb));
    CHECK_OK(sd_tb_close(NULL));
    free(dir);
}

int main(void) {
    RUN(ckpt_round_trip);
    RUN(ckpt_replace_same_step);
    RUN(ckpt_failure_mid_write);
    RUN(ckpt_disk_full);
    RUN(ckpt_pruning_matches_diffusers);
    RUN(ckpt_latest_and_resolve);
    RUN(ckpt_stale_temp_dirs);
    RUN(jsonl_log);
    RUN(tblog_basics);
    int rc = test_summary();
    sd_rm_rf(test_tmpdir());
    return rc;
}
