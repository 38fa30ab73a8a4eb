/* test_model_config.c — configs and parameter tables, from config JSON alone
 * (no weights): counts of sd_spec §1.7/§2/§3/§9, derived block channels, the
 * SD1.5 key table (sd15_keys.tsv, incl. LDM names), tables vs. diffusers
 * (tests/ref/golden/models.json), JSON round trips, and every refusal. */
#include "core/fs.h"
#include "io/json.h"
#include "models/config.h"
#include "models/params.h"
#include "test.h"

/* sd_spec §1.1 (diffusers 0.6.0 file) */
static const char *SD15_UNET =
    "{\"_class_name\":\"UNet2DConditionModel\",\"_diffusers_version\":\"0.6.0\",\"act_fn\":\"silu\","
    "\"attention_head_dim\":8,\"block_out_channels\":[320,640,1280,1280],\"center_input_sample\":false,"
    "\"cross_attention_dim\":768,\"down_block_types\":[\"CrossAttnDownBlock2D\",\"CrossAttnDownBlock2D\","
    "\"CrossAttnDownBlock2D\",\"DownBlock2D\"],\"downsample_padding\":1,\"flip_sin_to_cos\":true,\"freq_shift\":0,"
    "\"in_channels\":4,\"layers_per_block\":2,\"mid_block_scale_factor\":1,\"norm_eps\":1e-05,\"norm_num_groups\":32,"
    "\"out_channels\":4,\"sample_size\":64,\"up_block_types\":[\"UpBlock2D\",\"CrossAttnUpBlock2D\","
    "\"CrossAttnUpBlock2D\",\"CrossAttnUpBlock2D\"]}";
/* SD2.x as stabilityai/stable-diffusion-2-1 writes it */
static const char *SD2_UNET =
    "{\"_class_name\":\"UNet2DConditionModel\",\"_diffusers_version\":\"0.8.0\",\"act_fn\":\"silu\","
    "\"attention_head_dim\":[5,10,20,20],\"block_out_channels\":[320,640,1280,1280],\"center_input_sample\":false,"
    "\"cross_attention_dim\":1024,\"down_block_types\":[\"CrossAttnDownBlock2D\",\"CrossAttnDownBlock2D\","
    "\"CrossAttnDownBlock2D\",\"DownBlock2D\"],\"downsample_padding\":1,\"dual_cross_attention\":false,"
    "\"flip_sin_to_cos\":true,\"freq_shift\":0,\"in_channels\":4,\"layers_per_block\":2,\"mid_block_scale_factor\":1,"
    "\"norm_eps\":1e-05,\"norm_num_groups\":32,\"num_class_embeds\":null,\"only_cross_attention\":false,"
    "\"out_channels\":4,\"sample_size\":96,\"up_block_types\":[\"UpBlock2D\",\"CrossAttnUpBlock2D\","
    "\"CrossAttnUpBlock2D\",\"CrossAttnUpBlock2D\"],\"upcast_attention\":true,\"use_linear_projection\":true}";
static const char *SD_VAE =
    "{\"_class_name\":\"AutoencoderKL\",\"act_fn\":\"silu\",\"block_out_channels\":[128,256,512,512],"
    "\"down_block_types\":[\"DownEncoderBlock2D\",\"DownEncoderBlock2D\",\"DownEncoderBlock2D\",\"DownEncoderBlock2D\"],"
    "\"in_channels\":3,\"latent_channels\":4,\"layers_per_block\":2,\"norm_num_groups\":32,\"out_channels\":3,"
    "\"sample_size\":512,\"up_block_types\":[\"UpDecoderBlock2D\",\"UpDecoderBlock2D\",\"UpDecoderBlock2D\","
    "\"UpDecoderBlock2D\"]}";
static const char *CLIP_L =
    "{\"architectures\":[\"CLIPTextModel\"],\"attention_dropout\":0.0,\"bos_token_id\":0,\"dropout\":0.0,"
    "\"eos_token_id\":2,\"hidden_act\":\"quick_gelu\",\"hidden_size\":768,\"initializer_factor\":1.0,"
    "\"initializer_range\":0.02,\"intermediate_size\":3072,\"layer_norm_eps\":1e-05,\"max_position_embeddings\":77,"
    "\"model_type\":\"clip_text_model\",\"num_attention_heads\":12,\"num_hidden_layers\":12,\"pad_token_id\":1,"
    "\"projection_dim\":768,\"torch_dtype\":\"float32\",\"vocab_size\":49408}";
static const char *SD2_TEXT =
    "{\"architectures\":[\"CLIPTextModel\"],\"hidden_act\":\"gelu\",\"hidden_size\":1024,\"intermediate_size\":4096,"
    "\"layer_norm_eps\":1e-05,\"max_position_embeddings\":77,\"model_type\":\"clip_text_model\","
    "\"num_attention_heads\":16,\"num_hidden_layers\":23,\"projection_dim\":512,\"vocab_size\":49408}";
/* §9 hub tiny (constructor defaults: 8 heads, 32 groups; VAE lpb 1) */
static const char *TINY_UNET =
    "{\"block_out_channels\":[32,64],\"layers_per_block\":2,\"sample_size\":32,\"in_channels\":4,\"out_channels\":4,"
    "\"down_block_types\":[\"DownBlock2D\",\"CrossAttnDownBlock2D\"],\"up_block_types\":[\"CrossAttnUpBlock2D\","
    "\"UpBlock2D\"],\"cross_attention_dim\":32}";
static const char *TINY_VAE =
    "{\"block_out_channels\":[32,64],\"in_channels\":3,\"out_channels\":3,\"down_block_types\":[\"DownEncoderBlock2D\","
    "\"DownEncoderBlock2D\"],\"up_block_types\":[\"UpDecoderBlock2D\",\"UpDecoderBlock2D\"],\"latent_channels\":4}";
static const char *TINY_CLIP =
    "{\"bos_token_id\":0,\"eos_token_id\":2,\"hidden_size\":32,\"intermediate_size\":37,\"layer_norm_eps\":1e-05,"
    "\"num_attention_heads\":4,\"num_hidden_layers\":5,\"pad_token_id\":1,\"vocab_size\":1000}";
static const char *SD15_SCHED =
    "{\"_class_name\":\"PNDMScheduler\",\"beta_end\":0.012,\"beta_schedule\":\"scaled_linear\",\"beta_start\":0.00085,"
    "\"num_train_timesteps\":1000,\"set_alpha_to_one\":false,\"skip_prk_steps\":true,\"steps_offset\":1,"
    "\"trained_betas\":null,\"clip_sample\":false}";

static cJSON *J(const char *s) {
    cJSON *j = NULL;
    if (sd_json_parse(s, strlen(s), "test", &j)) {
        printf("# bad test JSON: %s\n", sd_last_error());
        exit(2);
    }
    return j;
}

/* parse text as a UNet config (0 ok) */
static int unet_from(const char *s, sd_unet_config *c) {
    cJSON *j = J(s);
    int rc = sd_unet_config_parse(j, "unet/config.json", c);
    cJSON_Delete(j);
    return rc;
}

/* SD1.5 text with one key replaced/added: `"key":value` inserted first (cJSON keeps the first duplicate) */
static int unet_with(const char *kv, sd_unet_config *c) {
    char buf[4096];
    snprintf(buf, sizeof buf, "{%s,%s", kv, SD15_UNET + 1);
    return unet_from(buf, c);
}

static void count_unet(const char *s, size_t params, int tensors) {
    sd_unet_config c;
    sd_param_table t;
    CHECK_OK(unet_from(s, &c));
    CHECK_OK(sd_unet_param_table(&c, &t));
    CHECK_MSG(t.total == params && t.n == tensors, "unet: %zu params / %d tensors, expected %zu / %d", t.total, t.n,
              params, tensors);
    sd_param_table_free(&t);
    sd_unet_config_free(&c);
}

static void count_vae(const char *s, size_t params, int tensors) {
    sd_vae_config c;
    sd_param_table t;
    cJSON *j = J(s);
    CHECK_OK(sd_vae_config_parse(j, "vae", &c));
    CHECK_OK(sd_vae_param_table(&c, &t));
    CHECK_MSG(t.total == params && t.n == tensors, "vae: %zu / %d, expected %zu / %d", t.total, t.n, params, tensors);
    sd_param_table_free(&t);
    sd_vae_config_free(&c);
    cJSON_Delete(j);
}

static void count_clip(const char *s, size_t params, int tensors) {
    sd_clip_text_config c;
    sd_param_table t;
    cJSON *j = J(s);
    CHECK_OK(sd_clip_text_config_parse(j, "text", &c));
    CHECK_OK(sd_clip_text_param_table(&c, &t));
    CHECK_MSG(t.total == params && t.n == tensors, "clip: %zu / %d, expected %zu / %d", t.total, t.n, params, tensors);
    sd_param_table_free(&t);
    sd_clip_text_config_free(&c);
    cJSON_Delete(j);
}

TEST(parameter_counts) {
    count_unet(SD15_UNET, 859520964, 686);
    count_unet(SD2_UNET, 865910724, 686);
    count_unet(TINY_UNET, 1427012, 304);
    count_vae(SD_VAE, 83653863, 248);
    count_vae(TINY_VAE, 658375, 124);
    count_clip(CLIP_L, 123060480, 196);
    count_clip(SD2_TEXT, 340387840, 372);
    count_clip(TINY_CLIP, 68473, 84);
}

TEST(sd15_unet_config) {
    sd_unet_config c;
    CHECK_OK(unet_from(SD15_UNET, &c));
    CHECK(c.num_levels == 4 && c.block_out_channels[3] == 1280);
    CHECK(c.down_cross_attn[0] && c.down_cross_attn[2] && !c.down_cross_attn[3]);
    CHECK(!c.up_cross_attn[0] && c.up_cross_attn[3]);
    for (int i = 0; i < 4; i++) CHECK(c.num_heads[i] == 8 && c.cross_attention_dim[i] == 768);
    CHECK(c.down[0].head_dim == 40 && c.down[1].head_dim == 80 && c.down[2].head_dim == 160);
    CHECK(c.mid.heads == 8 && c.mid.head_dim == 160 && c.mid.resnet_in[0] == 1280);
    CHECK(!c.use_linear_projection && !c.upcast_attention && c.has_mid_block);
    CHECK(c.time_embed_dim == 1280 && c.norm_num_groups == 32 && c.norm_eps == 1e-5);
    CHECK(c.flip_sin_to_cos == 1 && c.freq_shift == 0 && c.downsample_padding == 1);
    CHECK(c.sample_size[0] == 64 && c.sample_size[1] == 64);
    /* sd_spec §1.6: resnet inputs incl. the concatenated skip */
    CHECK(c.down[1].resnet_in[0] == 320 && c.down[1].resnet_in[1] == 640);
    static const int up[4][3] = {{2560, 2560, 2560}, {2560, 2560, 1920}, {1920, 1280, 960}, {960, 640, 640}};
    for (int i = 0; i < 4; i++) {
        CHECK(c.up[i].num_resnets == 3);
        for (int j = 0; j < 3; j++) CHECK_MSG(c.up[i].resnet_in[j] == up[i][j], "up %d resnet %d in %d", i, j, c.up[i].resnet_in[j]);
        CHECK(c.up[i].sampler == (i < 3));
    }
    CHECK(c.up[0].prev_out_channels == 1280 && c.up[3].out_channels == 320 && c.up[3].in_channels == 320);
    CHECK(c.down[3].sampler == 0 && c.down[0].sampler == 1);
    sd_unet_config_free(&c);
}

TEST(sd2_unet_config) {
    sd_unet_config c;
    CHECK_OK(unet_from(SD2_UNET, &c));
    static const int heads[4] = {5, 10, 20, 20};
    for (int i = 0; i < 4; i++) {
        CHECK(c.num_heads[i] == heads[i] && c.cross_attention_dim[i] == 1024);
        if (c.down[i].cross_attn) CHECK(c.down[i].head_dim == 64);
    }
    CHECK(c.up[1].heads == 20 && c.up[3].heads == 5 && c.mid.heads == 20); /* reversed for up blocks */
    CHECK(c.use_linear_projection && c.upcast_attention && c.sample_size[0] == 96);
    sd_param_table t;
    CHECK_OK(sd_unet_param_table(&c, &t));
    const sd_param *p = sd_param_table_find(&t, "down_blocks.0.attentions.0.proj_in.weight");
    CHECK(p && p->ndim == 2 && p->shape[0] == 320 && p->shape[1] == 320);
    p = sd_param_table_find(&t, "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k.weight");
    CHECK(p && p->ndim == 2 && p->shape[0] == 320 && p->shape[1] == 1024);
    sd_param_table_free(&t);
    sd_unet_config_free(&c);
}

TEST(vae_clip_scheduler_configs) {
    sd_vae_config v;
    cJSON *j = J(SD_VAE);
    CHECK_OK(sd_vae_config_parse(j, "vae", &v));
    cJSON_Delete(j);
    CHECK(v.scaling_factor == 0.18215 && v.use_quant_conv && v.use_post_quant_conv && v.mid_block_add_attention);
    CHECK(v.force_upcast && !v.has_shift_factor && v.layers_per_block == 2 && v.latent_channels == 4);
    sd_vae_config_free(&v);

    sd_clip_text_config c;
    j = J(SD2_TEXT);
    CHECK_OK(sd_clip_text_config_parse(j, "text", &c));
    cJSON_Delete(j);
    CHECK(c.hidden_act == SD_ACT_GELU && c.num_hidden_layers == 23 && c.hidden_size == 1024);
    sd_clip_text_config_free(&c);
    j = J("{\"model_type\":\"clip\",\"text_config\":{\"hidden_size\":64,\"num_attention_heads\":2,"
          "\"hidden_act\":\"gelu_pytorch_tanh\"},\"vision_config\":{}}");
    CHECK_OK(sd_clip_text_config_parse(j, "clip", &c));
    cJSON_Delete(j);
    CHECK(c.hidden_size == 64 && c.hidden_act == SD_ACT_GELU_TANH && c.num_hidden_layers == 12 && c.vocab_size == 49408);
    sd_clip_text_config_free(&c);

    sd_scheduler_config s;
    j = J(SD15_SCHED);
    CHECK_OK(sd_scheduler_config_parse(j, "sched", &s));
    cJSON_Delete(j);
    CHECK(!strcmp(s.class_name, "PNDMScheduler") && !strcmp(s.beta_schedule, "scaled_linear"));
    CHECK(s.beta_start == 0.00085 && s.beta_end == 0.012 && s.num_train_timesteps == 1000 && s.steps_offset == 1);
    CHECK(s.set_alpha_to_one == 0 && s.skip_prk_steps && s.clip_sample == 0 && !s.use_karras_sigmas && !s.n_trained_betas);
    CHECK(!strcmp(s.prediction_type, "epsilon") && s.timestep_spacing[0] == 0); /* absent: class defaults */
    sd_scheduler_config_free(&s);
    j = J("{\"_class_name\":\"DDIMScheduler\",\"prediction_type\":\"v_prediction\",\"timestep_spacing\":\"trailing\","
          "\"use_karras_sigmas\":true,\"solver_order\":2}");
    CHECK_OK(sd_scheduler_config_parse(j, "sched", &s));
    cJSON_Delete(j);
    CHECK(!strcmp(s.prediction_type, "v_prediction") && !strcmp(s.timestep_spacing, "trailing") && s.use_karras_sigmas);
    CHECK(s.beta_start == 0.0001 && s.clip_sample == -1 && s.set_alpha_to_one == -1 && sd_json_int(s.raw, "solver_order", 0) == 2);
    sd_scheduler_config_free(&s);
}

/* Every SD1.5 tensor: diffusers key, LDM key, shape (sd_spec's sd15_keys.tsv). */
TEST(sd15_key_table) {
    char *text;
    size_t n;
    CHECK_OK(sd_read_file("tests/fixtures/sd15_keys.tsv", 1 << 20, &text, &n));
    if (!text) return;
    sd_unet_config u;
    sd_vae_config v;
    sd_clip_text_config c;
    sd_param_table t[3];
    CHECK_OK(unet_from(SD15_UNET, &u));
    cJSON *j = J(SD_VAE);
    CHECK_OK(sd_vae_config_parse(j, "vae", &v));
    cJSON_Delete(j);
    j = J(CLIP_L);
    CHECK_OK(sd_clip_text_config_parse(j, "clip", &c));
    cJSON_Delete(j);
    CHECK_OK(sd_unet_param_table(&u, &t[0]));
    CHECK_OK(sd_vae_param_table(&v, &t[1]));
    CHECK_OK(sd_clip_text_param_table(&c, &t[2]));
    static const char *const comp[3] = {"unet", "vae", "text_encoder"};
    static const char *const pre[3] = {"model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."};
    int rows = 0, bad = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char cn[32], name[256], ldm[256], shape[64];
        if (sscanf(line, "%31s %255s %255s %63s", cn, name, ldm, shape) != 4) { bad++; continue; }
        int k = !strcmp(cn, "unet") ? 0 : !strcmp(cn, "vae") ? 1 : 2;
        CHECK(!strcmp(cn, comp[k]));
        rows++;
        const sd_param *p = sd_param_table_find(&t[k], name);
        if (!p) { if (bad++ < 5) printf("# %s %s not in our table\n", cn, name); continue; }
        char want_ldm[320], sh[64] = "";
        snprintf(want_ldm, sizeof want_ldm, "%s%s", pre[k], p->ldm);
        for (int d = 0; d < p->ndim; d++) {
            size_t l = strlen(sh);
            snprintf(sh + l, sizeof sh - l, "%s%lld", d ? "x" : "", (long long)p->shape[d]);
        }
        if (strcmp(want_ldm, ldm) || strcmp(sh, shape)) {
            if (bad++ < 5) printf("# %s: ours %s %s, tsv %s %s\n", name, want_ldm, sh, ldm, shape);
        }
    }
    CHECK_MSG(rows == 1130 && bad == 0, "%d rows, %d mismatches", rows, bad);
    CHECK(t[0].n + t[1].n + t[2].n == 1130);
    for (int k = 0; k < 3; k++) sd_param_table_free(&t[k]);
    sd_unet_config_free(&u);
    sd_vae_config_free(&v);
    sd_clip_text_config_free(&c);
    free(text);
}

/* Our tables vs. diffusers/transformers models built from the same configs. */
TEST(tables_match_diffusers) {
    cJSON *g;
    CHECK_OK(sd_json_load("tests/ref/golden/models.json", &g));
    if (!g) return;
    const cJSON *tabs = cJSON_GetObjectItem(g, "tables"), *e;
    int ntab = 0;
    cJSON_ArrayForEach(e, tabs) {
        const char *kind = sd_json_str(e, "kind", "");
        const cJSON *cfg = cJSON_GetObjectItem(e, "config"), *keys = cJSON_GetObjectItem(e, "keys");
        sd_param_table t;
        int rc;
        if (!strcmp(kind, "unet")) {
            sd_unet_config c;
            rc = sd_unet_config_parse(cfg, e->string, &c);
            if (!rc) rc = sd_unet_param_table(&c, &t);
            sd_unet_config_free(&c);
        } else if (!strcmp(kind, "vae")) {
            sd_vae_config c;
            rc = sd_vae_config_parse(cfg, e->string, &c);
            if (!rc) rc = sd_vae_param_table(&c, &t);
            sd_vae_config_free(&c);
        } else {
            sd_clip_text_config c;
            rc = sd_clip_text_config_parse(cfg, e->string, &c);
            if (!rc) rc = sd_clip_text_param_table(&c, &t);
            sd_clip_text_config_free(&c);
        }
        CHECK_MSG(rc == 0, "%s: %s", e->string, sd_last_error());
        if (rc) continue;
        ntab++;
        CHECK_MSG(t.total == (size_t)sd_json_num(e, "params", -1), "%s: %zu params", e->string, t.total);
        CHECK_MSG(t.n == cJSON_GetArraySize(keys), "%s: %d tensors vs %d", e->string, t.n, cJSON_GetArraySize(keys));
        const cJSON *k;
        int bad = 0;
        cJSON_ArrayForEach(k, keys) {
            const char *name = cJSON_GetArrayItem(k, 0)->valuestring;
            const cJSON *shape = cJSON_GetArrayItem(k, 1);
            const sd_param *p = sd_param_table_find(&t, name);
            int ok = p && p->ndim == cJSON_GetArraySize(shape);
            for (int d = 0; ok && d < p->ndim; d++) ok = p->shape[d] == (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble;
            if (!ok && bad++ < 3) printf("# %s: %s missing or mis-shaped in our table\n", e->string, name);
        }
        CHECK(bad == 0);
        sd_param_table_free(&t);
    }
    CHECK(ntab >= 9);
    cJSON_Delete(g);
}

TEST(table_layout) {
    sd_unet_config c;
    sd_param_table t;
    CHECK_OK(unet_from(SD15_UNET, &c));
    CHECK_OK(sd_unet_param_table(&c, &t));
    /* packed, forward order */
    size_t off = 0;
    for (int i = 0; i < t.n; i++) {
        CHECK(t.p[i].offset == off);
        off += t.p[i].numel;
    }
    CHECK(off == t.total);
    CHECK(!strcmp(t.p[0].name, "conv_in.weight") && !strcmp(t.p[t.n - 1].name, "conv_out.bias"));
    size_t o1, n1, o2, n2, o3, n3, sum = 0;
    static const char *const blocks[] = {"conv_in.", "time_embedding.", "down_blocks.0.", "down_blocks.1.",
                                         "down_blocks.2.", "down_blocks.3.", "mid_block.", "up_blocks.0.",
                                         "up_blocks.1.", "up_blocks.2.", "up_blocks.3.", "conv_norm_out.", "conv_out."};
    size_t prev_end = 0;
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
        CHECK(sd_param_table_range(&t, blocks[b], &o1, &n1) > 0);
        CHECK_MSG(o1 == prev_end, "%s starts at %zu, previous block ended at %zu", blocks[b], o1, prev_end);
        prev_end = o1 + n1;
        sum += n1;
    }
    CHECK(sum == t.total);
    CHECK(sd_param_table_range(&t, "mid_block.attentions.0.", &o2, &n2) == 26);
    CHECK(sd_param_table_range(&t, "nope.", &o3, &n3) == 0 && n3 == 0);
    CHECK_FAILS(sd_param_table_range(&t, "down_blocks.0.resnets.", &o3, &n3), "not contiguous");
    const sd_param *p = sd_param_table_find(&t, "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight");
    CHECK(p && p->shape[0] == 10240 && p->shape[1] == 1280 && !strcmp(p->ldm, "middle_block.1.transformer_blocks.0.ff.net.0.proj.weight"));
    CHECK(sd_param_table_find(&t, "down_blocks.3.attentions.0.norm.weight") == NULL);
    CHECK(sd_param_table_index(&t, "conv_out.bias") == t.n - 1);
    sd_param_table_free(&t);
    sd_unet_config_free(&c);

    /* fingerprint: changes with one value */
    sd_clip_text_config cc;
    cJSON *j = J(TINY_CLIP);
    CHECK_OK(sd_clip_text_config_parse(j, "clip", &cc));
    cJSON_Delete(j);
    CHECK_OK(sd_clip_text_param_table(&cc, &t));
    float *buf = calloc(t.total, sizeof(float));
    char h1[65], h2[65], h3[65];
    sd_param_fingerprint(&t, buf, h1);
    sd_param_fingerprint(&t, buf, h2);
    sd_param_data(&t, buf, "text_model.final_layer_norm.bias")[31] = 1e-30f;
    sd_param_fingerprint(&t, buf, h3);
    CHECK(!strcmp(h1, h2) && strcmp(h1, h3));
    CHECK(sd_param_data(&t, buf, "nope") == NULL);
    CHECK(sd_param_dataf(&t, buf, "text_model.encoder.layers.%d.mlp.fc%d.bias", 4, 2) ==
          buf + sd_param_table_find(&t, "text_model.encoder.layers.4.mlp.fc2.bias")->offset);
    CHECK(sd_param_findf(&t, "text_model.encoder.layers.%d.mlp.fc1.weight", 4)->shape[0] == 37);
    CHECK(sd_param_findf(&t, "text_model.encoder.layers.%d.mlp.fc1.weight", 5) == NULL);
    free(buf);
    sd_param_table_free(&t);
    sd_clip_text_config_free(&cc);
}

/* to_json: raw kept (unknown keys); built from fields parses back equal. */
TEST(config_json_roundtrip) {
    sd_unet_config a, b;
    CHECK_OK(unet_with("\"sdtools_unknown_key\":[1,2]", &a));
    cJSON *j = sd_unet_config_to_json(&a);
    CHECK(cJSON_GetObjectItem(j, "sdtools_unknown_key") != NULL);
    cJSON_Delete(j);
    cJSON_Delete(a.raw);
    a.raw = NULL;
    const char *variants[] = {SD15_UNET, SD2_UNET, TINY_UNET};
    for (int v = 0; v < 3; v++) {
        sd_unet_config_free(&a);
        CHECK_OK(unet_from(variants[v], &a));
        cJSON_Delete(a.raw);
        a.raw = NULL;
        j = sd_unet_config_to_json(&a);
        CHECK_OK(sd_unet_config_parse(j, "rebuilt", &b));
        cJSON_Delete(j);
        /* derived blocks included: the whole struct apart from raw must match */
        cJSON *braw = b.raw;
        b.raw = NULL;
        CHECK_MSG(memcmp(&a, &b, sizeof a) == 0, "variant %d differs after to_json/parse", v);
        cJSON_Delete(braw);
    }
    sd_unet_config_free(&a);

    sd_vae_config va, vb;
    cJSON *vj = J(SD_VAE);
    CHECK_OK(sd_vae_config_parse(vj, "vae", &va));
    cJSON_Delete(vj);
    sd_vae_config_free(&va);
    j = sd_vae_config_to_json(&va);
    CHECK_OK(sd_vae_config_parse(j, "vae2", &vb));
    cJSON_Delete(j);
    cJSON *keep = vb.raw;
    vb.raw = NULL;
    CHECK(memcmp(&va, &vb, sizeof va) == 0);
    cJSON_Delete(keep);

    sd_clip_text_config ca, cb;
    vj = J(SD2_TEXT);
    CHECK_OK(sd_clip_text_config_parse(vj, "t", &ca));
    cJSON_Delete(vj);
    sd_clip_text_config_free(&ca);
    j = sd_clip_text_config_to_json(&ca);
    CHECK_OK(sd_clip_text_config_parse(j, "t2", &cb));
    cJSON_Delete(j);
    keep = cb.raw;
    cb.raw = NULL;
    CHECK(memcmp(&ca, &cb, sizeof ca) == 0);
    cJSON_Delete(keep);
}

TEST(num_attention_heads_and_lists) {
    sd_unet_config c;
    /* num_attention_heads wins over attention_head_dim */
    CHECK_OK(unet_with("\"num_attention_heads\":[5,10,20,20]", &c));
    CHECK(c.num_heads[0] == 5 && c.down[0].head_dim == 64);
    sd_unet_config_free(&c);
    CHECK_OK(unet_with("\"layers_per_block\":[2,2,2,2],\"transformer_layers_per_block\":[1,2,3,1]", &c));
    CHECK(c.down[2].transformer_layers == 3 && c.up[1].transformer_layers == 3 && c.mid.transformer_layers == 1);
    sd_unet_config_free(&c);
    CHECK_OK(unet_with("\"mid_block_type\":null,\"sample_size\":[64,96]", &c));
    CHECK(!c.has_mid_block && c.sample_size[0] == 64 && c.sample_size[1] == 96);
    sd_unet_config_free(&c);
    CHECK_OK(unet_with("\"only_cross_attention\":true", &c));
    CHECK(c.only_cross_attention[1] && c.mid_only_cross_attention && c.down[0].only_cross_attention);
    sd_unet_config_free(&c);
}

TEST(config_refusals) {
    sd_unet_config c;
    CHECK_FAILS(unet_with("\"resnet_time_scale_shift\":\"scale_shift\"", &c), "resnet_time_scale_shift = \"scale_shift\"");
    CHECK_FAILS(unet_with("\"class_embed_type\":\"timestep\"", &c), "class_embed_type = \"timestep\": unsupported");
    CHECK_FAILS(unet_with("\"num_class_embeds\":10", &c), "num_class_embeds = 10");
    CHECK_FAILS(unet_with("\"addition_embed_type\":\"text_time\"", &c), "addition_embed_type");
    CHECK_FAILS(unet_with("\"time_embedding_type\":\"fourier\"", &c), "time_embedding_type = \"fourier\"");
    CHECK_FAILS(unet_with("\"act_fn\":\"mish\"", &c), "act_fn = \"mish\"");
    CHECK_FAILS(unet_with("\"act_fn\":\"gelu\"", &c), "only silu");
    CHECK_FAILS(unet_with("\"mid_block_type\":\"UNetMidBlock2DSimpleCrossAttn\"", &c), "mid_block_type");
    CHECK_FAILS(unet_with("\"dual_cross_attention\":true", &c), "dual_cross_attention");
    CHECK_FAILS(unet_with("\"norm_num_groups\":null", &c), "norm_num_groups = null");
    CHECK_FAILS(unet_with("\"layers_per_block\":\"2\"", &c), "layers_per_block: expected an integer");
    CHECK_FAILS(unet_with("\"layers_per_block\":[2,2]", &c), "layers_per_block has 2 entries");
    CHECK_FAILS(unet_with("\"transformer_layers_per_block\":[[1,2],[1],[1],[1]]", &c), "nested list");
    CHECK_FAILS(unet_with("\"attention_head_dim\":7", &c), "not divisible by 7 attention heads");
    CHECK_FAILS(unet_with("\"norm_num_groups\":30", &c), "not divisible by norm_num_groups");
    CHECK_FAILS(unet_with("\"down_block_types\":[\"AttnDownBlock2D\",\"DownBlock2D\",\"DownBlock2D\",\"DownBlock2D\"]", &c),
                "down_block_types[0] = \"AttnDownBlock2D\"");
    CHECK_FAILS(unet_with("\"up_block_types\":[\"UpBlock2D\"]", &c), "1 up_block_types");
    CHECK_FAILS(unet_with("\"use_linear_projection\":1", &c), "use_linear_projection: expected true or false");
    CHECK_FAILS(unet_with("\"_class_name\":\"UNet2DModel\"", &c), "_class_name = \"UNet2DModel\"");
    CHECK_FAILS(unet_with("\"reverse_transformer_layers_per_block\":[[1]]", &c), "reverse_transformer_layers_per_block");

    sd_vae_config v;
    cJSON *j = J("{\"_class_name\":\"AutoencoderKL\",\"layers_per_block\":[1,1]}");
    CHECK_FAILS(sd_vae_config_parse(j, "vae/config.json", &v), "layers_per_block: a list is unsupported");
    cJSON_Delete(j);
    j = J("{\"down_block_types\":[\"DownEncoderBlock2D\",\"DownEncoderBlock2D\"],\"block_out_channels\":[64]}");
    CHECK_FAILS(sd_vae_config_parse(j, "vae/config.json", &v), "must be equal");
    cJSON_Delete(j);
    j = J("{\"_class_name\":\"AutoencoderTiny\"}");
    CHECK_FAILS(sd_vae_config_parse(j, "vae/config.json", &v), "expected \"AutoencoderKL\"");
    cJSON_Delete(j);

    sd_clip_text_config t;
    j = J("{\"architectures\":[\"CLIPTextModelWithProjection\"]}");
    CHECK_FAILS(sd_clip_text_config_parse(j, "te", &t), "CLIPTextModelWithProjection");
    cJSON_Delete(j);
    j = J("{\"hidden_act\":\"relu\"}");
    CHECK_FAILS(sd_clip_text_config_parse(j, "te", &t), "hidden_act = \"relu\"");
    cJSON_Delete(j);
    j = J("{\"hidden_size\":100,\"num_attention_heads\":3}");
    CHECK_FAILS(sd_clip_text_config_parse(j, "te", &t), "not divisible");
    cJSON_Delete(j);

    /* the scheduler config is descriptive: only wrong JSON types are errors */
    sd_scheduler_config s;
    j = J("{\"_class_name\":\"DDIMScheduler\",\"trained_betas\":[0.1,0.2],\"prediction_type\":\"flow\"}");
    CHECK_OK(sd_scheduler_config_parse(j, "sched", &s));
    CHECK(s.n_trained_betas == 2 && !strcmp(s.prediction_type, "flow"));
    sd_scheduler_config_free(&s);
    cJSON_Delete(j);
    j = J("{\"trained_betas\":[0.1,\"x\"]}");
    CHECK_FAILS(sd_scheduler_config_parse(j, "sched", &s), "trained_betas[1]: expected a number");
    cJSON_Delete(j);
    j = J("{\"num_train_timesteps\":\"1000\"}");
    CHECK_FAILS(sd_scheduler_config_parse(j, "sched", &s), "num_train_timesteps: expected an integer");
    cJSON_Delete(j);

    /* corrupt JSON files */
    char *p = sd_path_join(test_tmpdir(), "bad.json");
    CHECK_OK(sd_write_file_atomic(p, "{\"block_out_channels\": [32, 64,", 31));
    CHECK_FAILS(sd_unet_config_load(p, &c), "invalid JSON");
    CHECK_OK(sd_write_file_atomic(p, "[1,2]", 5));
    CHECK_FAILS(sd_vae_config_load(p, &v), "expected a JSON object");
    free(p);
    p = sd_path_join(test_tmpdir(), "missing.json");
    CHECK_FAILS(sd_scheduler_config_load(p, &s), "missing.json");
    free(p);
}

int main(void) {
    RUN(parameter_counts);
    RUN(sd15_unet_config);
    RUN(sd2_unet_config);
    RUN(vae_clip_scheduler_configs);
    RUN(sd15_key_table);
    RUN(tables_match_diffusers);
    RUN(table_layout);
    RUN(config_json_roundtrip);
    RUN(num_attention_heads_and_lists);
    RUN(config_refusals);
    sd_rm_rf(test_tmpdir());
    return test_summary();
}
