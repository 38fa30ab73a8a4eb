/* test_train_data.c — tar_index (random access into shards) and train/data
 * (latent sets, epoch order): written with the shard writer, read back by
 * index, checked value by value; compressed/truncated/incomplete sets refused. */
#include "test.h"

#include "core/fs.h"
#include "core/tensor.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "io/shard.h"
#include "io/tar_index.h"
#include "train/data.h"

#include <unistd.h>

#define C_ 4
#define H_ 3
#define W_ 5

static float mval(int i, int k) { return (float)((i * 31 + k * 7) % 97) / 97.0f - 0.5f; }

/* Write a latent set of n samples into dir (per shards of `per`), F16 moments
 * when f16, with flipped moments when flip, hidden states when text. */
static void write_set(const char *dir, int n, int per, int f16, int flip, int text, int zstd, int complete) {
    sd_mkdir_p(dir);
    sd_shard_manifest man;
    sd_shard_manifest_init(&man, SD_SHARD_KIND_LATENT);
    int shard = 0;
    for (int s0 = 0; s0 < n; s0 += per, shard++) {
        char *name = sd_shard_filename(SD_SHARD_PREFIX_LATENT, shard, zstd);
        char *path = sd_path_join(dir, name);
        sd_shard_writer *w;
        CHECK_OK(sd_shard_writer_open(&w, path, zstd ? 3 : 0));
        for (int i = s0; i < n && i < s0 + per; i++) {
            float m[C_ * H_ * W_], lv[C_ * H_ * W_], mf[C_ * H_ * W_], lf[C_ * H_ * W_];
            for (int k = 0; k < C_ * H_ * W_; k++) { m[k] = mval(i, k); lv[k] = -2 * m[k]; mf[k] = m[k] + 1; lf[k] = lv[k] - 1; }
            int64_t shape[3] = {C_, H_, W_};
            sd_st_writer *sw = sd_st_writer_new();
            sd_dtype dt = f16 ? SD_F16 : SD_F32;
            sd_st_writer_add_f32(sw, SD_T_MEAN, dt, 3, shape, m);
            sd_st_writer_add_f32(sw, SD_T_LOGVAR, dt, 3, shape, lv);
            if (flip) { sd_st_writer_add_f32(sw, SD_T_MEAN_FLIPPED, dt, 3, shape, mf); sd_st_writer_add_f32(sw, SD_T_LOGVAR_FLIPPED, dt, 3, shape, lf); }
            unsigned char *lat, *tok, *txt = NULL;
            size_t llen, tlen, xlen = 0;
            CHECK_OK(sd_st_writer_to_memory(sw, &lat, &llen));
            sd_st_writer_free(sw);
            int ncap = 1 + i % 2;
            int32_t ids[2 * 77];
            for (int k = 0; k < ncap * 77; k++) ids[k] = i * 1000 + k;
            CHECK_OK(sd_tokens_pack(ids, ncap, "fp", &tok, &tlen));
            float hid[2 * 77 * 3];
            if (text) {
                for (int k = 0; k < ncap * 77 * 3; k++) hid[k] = (float)(i + k) / 64.0f;
                int64_t hs[3] = {ncap, 77, 3};
                sd_st_writer *hw = sd_st_writer_new();
                sd_st_writer_add_f32(hw, SD_T_HIDDEN_STATES, SD_F32, 3, hs, hid);
                CHECK_OK(sd_st_writer_to_memory(hw, &txt, &xlen));
                sd_st_writer_free(hw);
            }
            sd_shard_member mem[3] = {{SD_EXT_LATENT, lat, llen}, {SD_EXT_TOKENS, tok, tlen}, {SD_EXT_TEXT, txt, xlen}};
            char key[32];
            sd_shard_key((uint64_t)i, key);
            CHECK_OK(sd_shard_write_sample(w, key, text ? 3 : 2, mem));
            free(lat); free(tok); free(txt);
        }
        sd_shard_info info;
        CHECK_OK(sd_shard_writer_close(w, &info));
        sd_shard_manifest_add(&man, &info);
        free(name); free(path);
    }
    man.complete = complete;
    CHECK_OK(sd_shard_manifest_write(&man, dir));
    sd_shard_manifest_free(&man);
}

TEST(read_back_every_sample) {
    char *dir = sd_path_join(test_tmpdir(), "set1");
    write_set(dir, 11, 4, 1, 1, 1, 0, 1);
    sd_latent_set set;
    CHECK_OK(sd_latent_set_open(dir, &set));
    CHECK(set.n == 11 && set.idx.npaths == 3);
    for (int64_t i = 0; i < set.n; i++) {
        sd_latent_sample s;
        CHECK_OK(sd_latent_set_read(&set, i, 1, &s));
        CHECK(s.c == C_ && s.h == H_ && s.w == W_ && s.ncap == 1 + (int)i % 2 && s.hidden_dim == 3);
        int bad = 0;
        for (int k = 0; k < C_ * H_ * W_; k++) {
            float m = sd_f16_to_f32(sd_f32_to_f16(mval((int)i, k)));
            bad += s.mean[k] != m || s.logvar[k] != sd_f16_to_f32(sd_f32_to_f16(-2 * mval((int)i, k)));
            bad += s.mean_flipped[k] != sd_f16_to_f32(sd_f32_to_f16(mval((int)i, k) + 1));
        }
        for (int k = 0; k < s.ncap * 77; k++) bad += s.ids[k] != (int32_t)(i * 1000 + k);
        for (int k = 0; k < s.ncap * 77 * 3; k++) bad += s.hidden[k] != (float)(i + k) / 64.0f;
        CHECK_MSG(bad == 0, "sample %lld: %d values differ", (long long)i, bad);
        sd_latent_sample_free(&s);
    }
    /* a set without text embeddings refuses need_text */
    char *dir2 = sd_path_join(test_tmpdir(), "set2");
    write_set(dir2, 3, 8, 0, 0, 0, 0, 1);
    sd_latent_set set2;
    CHECK_OK(sd_latent_set_open(dir2, &set2));
    sd_latent_sample s;
    CHECK_OK(sd_latent_set_read(&set2, 2, 0, &s));
    CHECK(s.mean_flipped == NULL && s.hidden == NULL && s.mean[5] == mval(2, 5));
    sd_latent_sample_free(&s);
    CHECK_FAILS(sd_latent_set_read(&set2, 0, 1, &s), "no .text.safetensors member");
    /* a brace spec works too */
    sd_latent_set set3;
    char spec[600];
    snprintf(spec, sizeof spec, "%s/latent-{000000..000002}.tar", dir);
    CHECK_OK(sd_latent_set_open(spec, &set3));
    CHECK(set3.n == 11 && set3.manifest != NULL);
    sd_latent_set_close(&set3);
    sd_latent_set_close(&set2);
    sd_latent_set_close(&set);
    free(dir); free(dir2);
}

TEST(bad_sets_are_refused) {
    char *z = sd_path_join(test_tmpdir(), "zst");
    write_set(z, 3, 8, 0, 0, 0, 1, 1);
    sd_latent_set set;
    CHECK_FAILS(sd_latent_set_open(z, &set), "compressed shard");
    char *inc = sd_path_join(test_tmpdir(), "incomplete");
    write_set(inc, 3, 8, 0, 0, 0, 0, 0);
    CHECK_FAILS(sd_latent_set_open(inc, &set), "incomplete");
    /* truncate a shard: indexing names it */
    char *tr = sd_path_join(test_tmpdir(), "trunc");
    write_set(tr, 5, 8, 0, 0, 0, 0, 1);
    char *shard = sd_path_join(tr, "latent-000000.tar");
    uint64_t size;
    sd_file_size(shard, &size);
    int trunc_errors = 0, cuts = 0;
    char *data;
    size_t len;
    sd_read_file(shard, 1 << 24, &data, &len);
    for (uint64_t cut = 0; cut < size; cut += 509) {
        sd_write_file_atomic(shard, data, (size_t)cut);
        cuts++;
        if (sd_latent_set_open(tr, &set) != 0) { trunc_errors++; if (!strstr(sd_last_error(), "latent-000000.tar")) trunc_errors -= 1000; }
        else sd_latent_set_close(&set);
    }
    CHECK_MSG(trunc_errors == cuts, "%d of %d truncations refused with the shard named", trunc_errors, cuts);
    /* without a manifest, the header scan itself catches a cut inside a member */
    char *mf = sd_path_join(tr, "manifest.json");
    unlink(mf);
    free(mf);
    sd_write_file_atomic(shard, data, (size_t)size / 2 + 100);
    char spec[600];
    snprintf(spec, sizeof spec, "%s/latent-000000.tar", tr);
    CHECK_FAILS(sd_latent_set_open(spec, &set), "truncated archive");
    free(data);
    /* a prep set is not a latent set */
    char *prep = sd_path_join(test_tmpdir(), "prep");
    sd_mkdir_p(prep);
    sd_shard_manifest man;
    sd_shard_manifest_init(&man, SD_SHARD_KIND_PREP);
    man.complete = 1;
    sd_shard_manifest_write(&man, prep);
    sd_shard_manifest_free(&man);
    CHECK_FAILS(sd_latent_set_open(prep, &set), "not \"latent\"");
    free(z); free(inc); free(tr); free(shard); free(prep);
}

TEST(epoch_order) {
    enum { N = 1000 };
    uint32_t a[N], b[N], c[N];
    sd_epoch_order(42, 0, N, a);
    sd_epoch_order(42, 0, N, b);
    sd_epoch_order(42, 1, N, c);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    int seen[N] = {0};
    for (int i = 0; i < N; i++) seen[a[i]]++;
    int ok = 1;
    for (int i = 0; i < N; i++) ok &= seen[i] == 1;
    CHECK(ok);
    CHECK(sd_batches_per_epoch(10, 4) == 3 && sd_batches_per_epoch(8, 4) == 2 && sd_batches_per_epoch(1, 16) == 1);
}

int main(void) {
    RUN(read_back_every_sample);
    RUN(bad_sets_are_refused);
    RUN(epoch_order);
    return test_summary();
}
