/* test_dataset.c — imagefolder (jsonl, csv torture cases, splits, columns),
 * sidecar captions, every skip reason, strict mode, max_samples selection.
 * All fixtures are generated here, under the test's temporary directory. */
#define _GNU_SOURCE
#include "test.h"

#include "core/fs.h"
#include "core/rng.h"
#include "io/dataset.h"
#include "io/json.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char *dpath(const char *name) { return sd_path_join(test_tmpdir(), name); }

/* write root/rel with the given bytes, creating directories */
static void put(const char *root, const char *rel, const char *data, size_t len) {
    char *p = sd_path_join(root, rel);
    char *dir = sd_path_dirname(p);
    sd_mkdir_p(dir);
    FILE *f = fopen(p, "wb");
    if (f) {
        fwrite(data, 1, len, f);
        fclose(f);
    }
    free(dir);
    free(p);
}
static void puts_(const char *root, const char *rel, const char *text) { put(root, rel, text, strlen(text)); }
static void img(const char *root, const char *rel) { put(root, rel, "\x89PNG\r\n\x1a\n", 8); }

static const sd_dataset_record *find_rel(const sd_dataset *d, const char *rel) {
    for (uint64_t i = 0; i < d->n; i++)
        if (!strcmp(d->rec[i].rel, rel)) return &d->rec[i];
    return NULL;
}

/* the skip whose `where` equals where (NULL if none) */
static const sd_dataset_skip *find_skip(const sd_dataset *d, const char *where) {
    for (uint64_t i = 0; i < d->nskips; i++)
        if (!strcmp(d->skips[i].where, where)) return &d->skips[i];
    return NULL;
}

#define CHECK_SKIP(d, where, why)                                                                          \
    do {                                                                                                     \
        const sd_dataset_skip *s_ = find_skip(d, where);                                                     \
        CHECK_MSG(s_ && s_->reason == (why), "%s: expected %s, got %s", where, sd_skip_reason_name(why), \
                  s_ ? sd_skip_reason_name(s_->reason) : "no skip");                                          \
    } while (0)

TEST(split_keywords) {
    struct { const char *name, *split; } c[] = {
        {"train", "train"},     {"training", "train"},  {"my_train", "train"}, {"train-01", "train"},  {"data.train", "train"},
        {"mytrain", NULL},      {"train_data", NULL},   {"val", "validation"}, {"dev", "validation"}, {"valid", "validation"},
        {"validation", "validation"}, {"eval", "test"}, {"testing", "test"},   {"images", NULL},      {"test 2", "test"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        const char *g = sd_dataset_split_of_dir(c[i].name);
        CHECK_MSG((g == NULL && c[i].split == NULL) || (g && c[i].split && !strcmp(g, c[i].split)), "%s -> %s", c[i].name,
                  g ? g : "none");
    }
    CHECK(sd_dataset_ext_supported("a/B.JPEG") && sd_dataset_ext_supported("x.webp") && !sd_dataset_ext_supported("x.gif"));
    CHECK(sd_dataset_ext_is_image("x.GIF") && !sd_dataset_ext_is_image("x.txt") && !sd_dataset_ext_is_image(".png"));
    CHECK(sd_utf8_valid("\xc3\xa9", 2) && !sd_utf8_valid("\xc3", 1) && !sd_utf8_valid("\xed\xa0\x80", 3) && !sd_utf8_valid("\xc0\xaf", 2));
}

TEST(jsonl_basic) {
    char *root = dpath("jsonl");
    img(root, "train/a.png");
    img(root, "train/sub/b.jpg");
    img(root, "train/sub/c.JPEG");
    img(root, "train/d.webp");
    img(root, "train/e.png");
    puts_(root, "train/metadata.jsonl",
          "\xef\xbb\xbf{\"file_name\": \"a.png\", \"text\": \"a red \\\"cat\\\" \\u00e9\"}\n"
          "\n"
          "   \r\n"
          "{\"file_name\": \"sub/b.jpg\", \"text\": [\"first\", \"second\"], \"extra\": 1}\r\n"
          "{\"text\": \"c\", \"file_name\": \"sub\\\\c.JPEG\"}\n"
          "{\"file_name\": \"./d.webp\", \"text\": \"\"}\n"
          "{\"file_name\": \"sub/../e.png\", \"text\": \"e\"}");
    sd_dataset *d;
    CHECK_OK(sd_dataset_open(root, NULL, &d));
    if (!d) { free(root); return; }
    CHECK(d->layout == SD_LAYOUT_IMAGEFOLDER && d->n == 5 && d->nskips == 0 && d->rows == 5);
    const char *order[] = {"train/a.png", "train/sub/b.jpg", "train/sub/c.JPEG", "train/d.webp", "train/e.png"};
    for (uint64_t i = 0; i < d->n && i < 5; i++) {
        CHECK_MSG(!strcmp(d->rec[i].rel, order[i]), "%d: %s", (int)i, d->rec[i].rel);
        CHECK(d->rec[i].index == i);
    }
    CHECK(!strcmp(d->rec[0].captions[0], "a red \"cat\" \xc3\xa9") && d->rec[0].ncaptions == 1);
    CHECK(d->rec[1].ncaptions == 2 && !strcmp(d->rec[1].captions[1], "second"));
    CHECK(!strcmp(d->rec[3].captions[0], "")); /* an empty JSON string is a caption */
    CHECK(!strcmp(d->rec[1].origin, "train/metadata.jsonl:4"));
    CHECK(!strcmp(d->rec[4].origin, "train/metadata.jsonl:7"));
    char *want = sd_path_join(root, "train/sub/b.jpg");
    CHECK(!strcmp(d->rec[1].path, want));
    free(want);
    CHECK_OK(sd_dataset_check_strict(d));
    cJSON *sum = sd_dataset_summary(d);
    CHECK(sd_json_int(sum, "records", -1) == 5 && !strcmp(sd_json_str(sum, "layout", ""), "imagefolder"));
    CHECK(!strcmp(sd_json_str(cJSON_GetArrayItem(cJSON_GetObjectItem(sum, "metadata_files"), 0), "path", ""), "train/metadata.jsonl"));
    CHECK(strlen(sd_json_str(cJSON_GetArrayItem(cJSON_GetObjectItem(sum, "metadata_files"), 0), "sha256", "")) == 64);
    cJSON_Delete(sum);
    sd_dataset_free(d);
    free(root);
}

TEST(jsonl_every_skip_reason) {
    char *root = dpath("skips");
    img(root, "ok.png");
    img(root, "dup.png");
    img(root, "anim.gif");
    img(root, "unlisted.png");
    img(root, "sub/deep_unlisted.jpg");
    img(root, "bad_caps.png");
    sd_mkdir_p(root);
    char *dirimg = sd_path_join(root, "dir.png");
    sd_mkdir_p(dirimg);
    free(dirimg);
    /* symlinks: one leaving the root, one dangling, one staying inside */
    char *outside = dpath("outside.png");
    img(test_tmpdir(), "outside.png");
    char *l1 = sd_path_join(root, "escape.png"), *l2 = sd_path_join(root, "dangling.png"), *l3 = sd_path_join(root, "inside.png");
    CHECK(symlink(outside, l1) == 0);
    CHECK(symlink("nowhere.png", l2) == 0);
    CHECK(symlink("ok.png", l3) == 0);
    const char *lines[] = {
        "{\"file_name\": \"ok.png\", \"text\": \"ok\"}",                 /* 1 accepted */
        "{\"file_name\": \"missing.png\", \"text\": \"x\"}",             /* 2 missing_image */
        "{\"file_name\": \"ok.png\", \"text\": \"x\"",                  /* 3 bad_row: malformed */
        "[1, 2]",                                                        /* 4 bad_row: not an object */
        "{\"text\": \"no file\"}",                                       /* 5 no_file_name */
        "{\"file_name\": 12, \"text\": \"x\"}",                          /* 6 no_file_name */
        "{\"file_name\": \"bad_caps.png\"}",                             /* 7 no_caption */
        "{\"file_name\": \"bad_caps.png\", \"text\": null}",             /* 8 no_caption */
        "{\"file_name\": \"bad_caps.png\", \"text\": 3}",                /* 9 no_caption */
        "{\"file_name\": \"bad_caps.png\", \"text\": []}",               /* 10 no_caption */
        "{\"file_name\": \"bad_caps.png\", \"text\": [\"a\", 1]}",       /* 11 no_caption */
        "{\"file_name\": \"bad_caps.png\", \"text\": \"\xff\xfe\"}",     /* 12 bad_utf8 */
        "{\"file_name\": \"dup.png\", \"text\": \"first\"}",             /* 13 accepted */
        "{\"file_name\": \"./dup.png\", \"text\": \"again\"}",           /* 14 duplicate */
        "{\"file_name\": \"/etc/passwd.png\", \"text\": \"x\"}",         /* 15 outside_root: absolute */
        "{\"file_name\": \"../outside.png\", \"text\": \"x\"}",          /* 16 outside_root: .. */
        "{\"file_name\": \"http://example.com/a.png\", \"text\": \"x\"}",/* 17 outside_root: URL */
        "{\"file_name\": \"escape.png\", \"text\": \"x\"}",              /* 18 outside_root: symlink */
        "{\"file_name\": \"dangling.png\", \"text\": \"x\"}",            /* 19 missing_image */
        "{\"file_name\": \"anim.gif\", \"text\": \"x\"}",                /* 20 unsupported_ext */
        "{\"file_name\": \"dir.png\", \"text\": \"x\"}",                 /* 21 missing_image: a directory */
        "{\"file_name\": \"inside.png\", \"text\": \"via link\"}",       /* 22 accepted */
        "{\"file_name\": \"C:\\\\x.png\", \"text\": \"x\"}",             /* 23 outside_root: drive */
        "{\"file_name\": \".\", \"text\": \"x\"}",                       /* 24 no_file_name */
        "{\"file_name\": \"notes.txt\", \"text\": \"x\"}",               /* 25 unsupported_ext */
    };
    char text[4096] = "";
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        strcat(text, lines[i]);
        strcat(text, "\n");
    }
    puts_(root, "metadata.jsonl", text);
    sd_dataset *d;
    CHECK_OK(sd_dataset_open(root, NULL, &d));
    if (!d) { free(root); return; }
    CHECK(d->n == 3 && d->rows == 25);
    CHECK(find_rel(d, "ok.png") && find_rel(d, "dup.png") && find_rel(d, "inside.png"));
    CHECK(!strcmp(find_rel(d, "dup.png")->captions[0], "first"));
    CHECK_SKIP(d, "metadata.jsonl:2", SD_SKIP_MISSING_IMAGE);
    CHECK_SKIP(d, "metadata.jsonl:3", SD_SKIP_BAD_ROW);
    CHECK_SKIP(d, "metadata.jsonl:4", SD_SKIP_BAD_ROW);
    CHECK_SKIP(d, "metadata.jsonl:5", SD_SKIP_NO_FILE_NAME);
    CHECK_SKIP(d, "metadata.jsonl:6", SD_SKIP_NO_FILE_NAME);
    for (int l = 7; l <= 11; l++) {
        char w[64];
        snprintf(w, sizeof w, "metadata.jsonl:%d", l);
        CHECK_SKIP(d, w, SD_SKIP_NO_CAPTION);
    }
    CHECK_SKIP(d, "metadata.jsonl:12", SD_SKIP_BAD_UTF8);
    CHECK_SKIP(d, "metadata.jsonl:14", SD_SKIP_DUPLICATE);
    for (int l = 15; l <= 18; l++) {
        char w[64];
        snprintf(w, sizeof w, "metadata.jsonl:%d", l);
        CHECK_SKIP(d, w, SD_SKIP_OUTSIDE_ROOT);
    }
    CHECK_SKIP(d, "metadata.jsonl:19", SD_SKIP_MISSING_IMAGE);
    CHECK_SKIP(d, "metadata.jsonl:20", SD_SKIP_UNSUPPORTED_EXT);
    CHECK_SKIP(d, "metadata.jsonl:21", SD_SKIP_MISSING_IMAGE);
    CHECK_SKIP(d, "metadata.jsonl:23", SD_SKIP_OUTSIDE_ROOT);
    CHECK_SKIP(d, "metadata.jsonl:24", SD_SKIP_NO_FILE_NAME);
    CHECK_SKIP(d, "metadata.jsonl:25", SD_SKIP_UNSUPPORTED_EXT);
    CHECK_SKIP(d, "unlisted.png", SD_SKIP_UNLISTED);
    CHECK_SKIP(d, "sub/deep_unlisted.jpg", SD_SKIP_UNLISTED);
    CHECK(find_skip(d, "escape.png") == NULL); /* listed (and refused), so not "unlisted" */
    CHECK(strstr(find_skip(d, "metadata.jsonl:18")->detail, "outside the dataset root") != NULL);
    CHECK(strstr(find_skip(d, "metadata.jsonl:19")->detail, "dangling symlink") != NULL);
    CHECK(strstr(find_skip(d, "metadata.jsonl:16")->detail, "above its metadata directory") != NULL);
    uint64_t want[SD_SKIP_COUNT] = {[SD_SKIP_MISSING_IMAGE] = 3, [SD_SKIP_BAD_ROW] = 2, [SD_SKIP_NO_FILE_NAME] = 3,
                                    [SD_SKIP_NO_CAPTION] = 5, [SD_SKIP_BAD_UTF8] = 1, [SD_SKIP_DUPLICATE] = 1,
                                    [SD_SKIP_OUTSIDE_ROOT] = 5, [SD_SKIP_UNSUPPORTED_EXT] = 2, [SD_SKIP_UNLISTED] = 2};
    for (int r = 0; r < SD_SKIP_COUNT; r++)
        CHECK_MSG(d->skip_count[r] == want[r], "%s: %d", sd_skip_reason_name((sd_skip_reason)r), (int)d->skip_count[r]);
    CHECK(d->nskips == 24);
    CHECK_FAILS(sd_dataset_check_strict(d), "24 entries skipped and strict mode is on; first: missing_image: metadata.jsonl:2");
    char *buf;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    sd_dataset_print_skips(d, f, 3);
    fclose(f);
    CHECK(strstr(buf, "skipped bad_row: metadata.jsonl:3:") && strstr(buf, "... and 21 more") &&
          strstr(buf, "skipped 24 of 25 entries: missing_image 3 bad_row 2"));
    free(buf);
    sd_dataset_free(d);
    free(l1); free(l2); free(l3);
    free(outside);
    free(root);
}

TEST(csv_torture) {
    char *root = dpath("csv");
    for (int i = 0; i < 12; i++) {
        char n[32];
        snprintf(n, sizeof n, "i%d.png", i);
        img(root, n);
    }
    const char csv[] =
        "\xef\xbb\xbf" "extra,text,file_name\r\n"                         /* 1: header, BOM, other order */
        "x,\"comma, inside\",i0.png\r\n"                                    /* 2 */
        "x,\"line one\nline two\r\nline three\",i1.png\n"                   /* 3-5: embedded newlines */
        "x,\"say \"\"hi\"\"\",i2.png\n"                                     /* 6: doubled quotes */
        "\n"                                                                /* 7: blank */
        "x,plain ab\"c,i3.png\n"                                            /* 8: quote inside unquoted: literal */
        "x,,i4.png\n"                                                       /* 9: empty caption -> no_caption */
        "x,cap,i5.png,surplus\n"                                            /* 10: too many fields -> bad_row */
        "x,only two\n"                                                      /* 11: too few: no file_name */
        "x,\"closed\"junk,i6.png\n"                                         /* 12: junk after quote -> bad_row */
        "x,\"\xff bad\",i7.png\n"                                           /* 13: bad utf-8 */
        "x,\"\",i8.png\n"                                                   /* 14: quoted empty -> no_caption */
        "\"x\",\xc3\xa9t\xc3\xa9,\"i9.png\"\r"                              /* 15: lone CR ends a record */
        "x,last,i10.png\n"                                                  /* 16 */
        "x,\"never closed,i11.png\n";                                       /* 17: unterminated -> bad_row */
    put(root, "metadata.csv", csv, sizeof csv - 1);
    sd_dataset *d;
    CHECK_OK(sd_dataset_open(root, NULL, &d));
    if (!d) { free(root); return; }
    const char *caps[][2] = {{"i0.png", "comma, inside"},       {"i1.png", "line one\nline two\r\nline three"},
                             {"i2.png", "say \"hi\""},         {"i3.png", "plain ab\"c"},
                             {"i9.png", "\xc3\xa9t\xc3\xa9"}, {"i10.png", "last"}};
    CHECK(d->n == 6);
    for (int i = 0; i < 6 && (uint64_t)i < d->n; i++) {
        CHECK_MSG(!strcmp(d->rec[i].rel, caps[i][0]), "%d: %s", i, d->rec[i].rel);
        CHECK_MSG(!strcmp(d->rec[i].captions[0], caps[i][1]), "%d: [%s]", i, d->rec[i].captions[0]);
    }
    CHECK(!strcmp(d->rec[2].origin, "metadata.csv:6"));
    CHECK(!strcmp(d->rec[4].origin, "metadata.csv:15") && !strcmp(d->rec[5].origin, "metadata.csv:16"));
    CHECK_SKIP(d, "metadata.csv:9", SD_SKIP_NO_CAPTION);
    CHECK_SKIP(d, "metadata.csv:10", SD_SKIP_BAD_ROW);
    CHECK_SKIP(d, "metadata.csv:11", SD_SKIP_NO_FILE_NAME);
    CHECK_SKIP(d, "metadata.csv:12", SD_SKIP_BAD_ROW);
    CHECK_SKIP(d, "metadata.csv:13", SD_SKIP_BAD_UTF8);
    CHECK_SKIP(d, "metadata.csv:14", SD_SKIP_NO_CAPTION);
    CHECK_SKIP(d, "metadata.csv:17", SD_SKIP_BAD_ROW);
    CHECK(strstr(find_skip(d, "metadata.csv:17")->detail, "unterminated") != NULL);
    CHECK(strstr(find_skip(d, "metadata.csv:10")->detail, "4 fields, the header has 3") != NULL);
    /* i5, i6, i11 were named but refused, others unlisted: none here */
    CHECK(d->skip_count[SD_SKIP_UNLISTED] == 3); /* i5 (bad row), i6 (bad row), i11 (bad row) are not "listed" */
    CHECK(d->rows == 13);
    sd_dataset_free(d);

    /* a header without the columns is a configuration error */
    put(root, "metadata.csv", "name,caption\na.png,x\n", 21);
    CHECK_FAILS(sd_dataset_open(root, NULL, &d), "no image link column \"file_name\" in the header (columns: name, caption)");
    sd_dataset_opts o = {.caption_column = "caption", .image_column = "name_file_name"};
    CHECK_FAILS(sd_dataset_open(root, &o, &d), "no image link column \"name_file_name\"");
    put(root, "metadata.csv", "file_name,caption\ni0.png,x\n", 26);
    CHECK_FAILS(sd_dataset_open(root, NULL, &d), "no caption column \"text\"");
    sd_dataset_opts o2 = {.caption_column = "caption"};
    CHECK_OK(sd_dataset_open(root, &o2, &d));
    if (d) {
        CHECK(d->n == 1 && !strcmp(d->rec[0].captions[0], "x"));
        sd_dataset_free(d);
    }
    put(root, "metadata.csv", "", 0);
    CHECK_FAILS(sd_dataset_open(root, NULL, &d), "empty CSV");
    free(root);
}

TEST(splits) {
    char *root = dpath("splits");
    img(root, "train/a.png");
    img(root, "my_val/b.png");
    img(root, "test/c.png");
    img(root, "holdout/d.png");
    puts_(root, "train/metadata.jsonl", "{\"file_name\": \"a.png\", \"text\": \"train\"}\n");
    puts_(root, "my_val/metadata.jsonl", "{\"file_name\": \"b.png\", \"text\": \"val\"}\n");
    puts_(root, "test/metadata.jsonl", "{\"file_name\": \"c.png\", \"text\": \"test\"}\n");
    puts_(root, "holdout/metadata.jsonl", "{\"file_name\": \"d.png\", \"text\": \"custom\"}\n");
    img(root, "root_level.png"); /* ignored when split directories exist */
    const char *split[] = {NULL, "validation", "test", "holdout"}, *want[] = {"train", "val", "test", "custom"};
    for (int i = 0; i < 4; i++) {
        sd_dataset_opts o = {.split = split[i]};
        sd_dataset *d;
        CHECK_OK(sd_dataset_open(root, &o, &d));
        if (!d) continue;
        CHECK_MSG(d->n == 1 && !strcmp(d->rec[0].captions[0], want[i]) && d->nskips == 0, "split %s", want[i]);
        sd_dataset_free(d);
    }
    sd_dataset_opts bad = {.split = "nosuch"};
    sd_dataset *d;
    CHECK_FAILS(sd_dataset_open(root, &bad, &d), "no \"nosuch\" split directory (split directories found: my_val, test, train)");
    free(root);

    /* root-level metadata, no split directory: train only */
    root = dpath("rootlevel");
    img(root, "images/x.png");
    puts_(root, "metadata.jsonl", "{\"file_name\": \"images/x.png\", \"text\": \"x\"}\n");
    CHECK_OK(sd_dataset_open(root, NULL, &d));
    if (d) {
        CHECK(d->n == 1 && !strcmp(d->rec[0].rel, "images/x.png") && d->ndirs == 1 && !strcmp(d->dirs[0], ""));
        sd_dataset_free(d);
    }
    sd_dataset_opts val = {.split = "validation"};
    CHECK_FAILS(sd_dataset_open(root, &val, &d), "the only split is \"train\"");
    /* nested metadata files: rows relative to their own directory */
    img(root, "more/y.png");
    puts_(root, "more/metadata.jsonl", "{\"file_name\": \"y.png\", \"text\": \"y\"}\n{\"file_name\": \"../images/x.png\", \"text\": \"x\"}\n");
    CHECK_OK(sd_dataset_open(root, NULL, &d));
    if (d) {
        CHECK(d->n == 2 && d->nmeta == 2 && !strcmp(d->meta_files[0], "metadata.jsonl") && !strcmp(d->meta_files[1], "more/metadata.jsonl"));
        CHECK(d->n == 2 && !strcmp(d->rec[1].rel, "more/y.png"));
        CHECK_SKIP(d, "more/metadata.jsonl:2", SD_SKIP_OUTSIDE_ROOT); /* ".." leaves its metadata directory */
        sd_dataset_free(d);
    }
    /* mixed formats and parquet are refused */
    puts_(root, "more/metadata.csv", "file_name,text\n");
    CHECK_FAILS(sd_dataset_open(root, NULL, &d), "mixes metadata.jsonl and metadata.csv");
    char *p = sd_path_join(root, "more/metadata.csv");
    unlink(p);
    free(p);
    puts_(root, "more/metadata.parquet", "PAR1");
    CHECK_FAILS(sd_dataset_open(root, NULL, &d), "metadata.parquet is not supported");
    free(root);
    CHECK_FAILS(sd_dataset_open("/nonexistent/dataset", NULL, &d), "not a directory");
}

TEST(columns) {
    char *root = dpath("columns");
    img(root, "a.png");
    img(root, "b.png");
    puts_(root, "metadata.jsonl",
          "{\"input_file_name\": \"a.png\", \"caption\": \"A\", \"text\": \"ignored\"}\n"
          "{\"input_file_name\": \"b.png\", \"caption\": [\"B1\", \"B2\"]}\n");
    sd_dataset_opts o = {.image_column = "input", .caption_column = "caption"};
    sd_dataset *d;
    CHECK_OK(sd_dataset_open(root, &o, &d));
    if (d) {
        CHECK(d->n == 2 && !strcmp(d->rec[0].captions[0], "A") && d->rec[1].ncaptions == 2);
        CHECK(!strcmp(d->link_column, "input_file_name"));
        sd_dataset_free(d);
    }
    CHECK_FAILS(sd_dataset_open(root, NULL, &d), "no row has the image link column \"file_name\" (columns: input_file_name, caption, text)");
    sd_dataset_opts o2 = {.image_column = "input", .caption_column = "prompt"};
    CHECK_FAILS(sd_dataset_open(root, &o2, &d), "no row has the caption column \"prompt\"");
    /* image_file_name is the same column as file_name for --image_column image */
    puts_(root, "metadata.jsonl", "{\"image_file_name\": \"a.png\", \"text\": \"via image_file_name\"}\n");
    CHECK_OK(sd_dataset_open(root, NULL, &d));
    if (d) {
        CHECK(d->n == 1 && !strcmp(d->rec[0].captions[0], "via image_file_name"));
        sd_dataset_free(d);
    }
    sd_dataset_opts forced = {.layout = SD_LAYOUT_IMAGEFOLDER};
    char *empty = dpath("columns_empty");
    sd_mkdir_p(empty);
    CHECK_FAILS(sd_dataset_open(empty, &forced, &d), "no metadata.jsonl or metadata.csv");
    free(empty);
    free(root);
}

TEST(sidecar) {
    char *root = dpath("sidecar");
    img(root, "b.png");
    puts_(root, "b.txt", "\xef\xbb\xbf  a photo of sks dog  \nsecond line\n");
    img(root, "a/z.jpg");
    puts_(root, "a/z.txt", "nested");
    img(root, "a.png"); /* sorts before "a/z.jpg" ('.' < '/') */
    puts_(root, "a.txt", "top");
    img(root, "nocap.png");
    img(root, "empty.png");
    puts_(root, "empty.txt", "\n\nlater");
    img(root, "badutf.png");
    puts_(root, "badutf.txt", "caf\xe9");
    img(root, "anim.gif");
    puts_(root, "anim.txt", "gif");
    img(root, ".hidden.png");
    puts_(root, ".hidden.txt", "hidden");
    puts_(root, "notes.md", "not an image");
    img(root, "c.PNG");
    puts_(root, "c.caption", "kohya style");
    puts_(root, "c.txt", "txt style");
    sd_dataset *d;
    CHECK_OK(sd_dataset_open(root, NULL, &d));
    if (!d) { free(root); return; }
    CHECK(d->layout == SD_LAYOUT_SIDECAR);
    const char *order[][2] = {{"a.png", "top"}, {"a/z.jpg", "nested"}, {"b.png", "a photo of sks dog"}, {"c.PNG", "txt style"}};
    CHECK(d->n == 4);
    for (int i = 0; i < 4 && (uint64_t)i < d->n; i++) {
        CHECK_MSG(!strcmp(d->rec[i].rel, order[i][0]) && !strcmp(d->rec[i].captions[0], order[i][1]), "%d: %s [%s]", i,
                  d->rec[i].rel, d->rec[i].captions[0]);
        CHECK(d->rec[i].ncaptions == 1);
    }
    CHECK(!strcmp(d->rec[2].origin, "b.txt"));
    CHECK_SKIP(d, "nocap.png", SD_SKIP_NO_CAPTION);
    CHECK_SKIP(d, "empty.png", SD_SKIP_NO_CAPTION);
    CHECK_SKIP(d, "badutf.png", SD_SKIP_BAD_UTF8);
    CHECK_SKIP(d, "anim.gif", SD_SKIP_UNSUPPORTED_EXT);
    CHECK(d->nskips == 4 && d->rows == 8);
    sd_dataset_free(d);
    sd_dataset_opts o = {.caption_ext = "caption", .sidecar_all_lines = 1};
    CHECK_OK(sd_dataset_open(root, &o, &d));
    if (d) {
        const sd_dataset_record *c = find_rel(d, "c.PNG");
        CHECK(d->n == 1 && c && !strcmp(c->captions[0], "kohya style"));
        sd_dataset_free(d);
    }
    sd_dataset_opts all = {.sidecar_all_lines = 1};
    CHECK_OK(sd_dataset_open(root, &all, &d));
    if (d) {
        const sd_dataset_record *b = find_rel(d, "b.png"), *e = find_rel(d, "empty.png");
        CHECK(b && b->ncaptions == 2 && !strcmp(b->captions[1], "second line"));
        CHECK(e && e->ncaptions == 1 && !strcmp(e->captions[0], "later"));
        sd_dataset_free(d);
    }
    free(root);
}

TEST(select_max_samples) {
    char *root = dpath("select");
    char text[8192] = "";
    for (int i = 0; i < 50; i++) {
        char n[32], line[96];
        snprintf(n, sizeof n, "%02d.png", i);
        img(root, n);
        snprintf(line, sizeof line, "{\"file_name\": \"%s\", \"text\": \"c%d\"}\n", n, i);
        strcat(text, line);
    }
    puts_(root, "metadata.jsonl", text);
    sd_dataset *a, *b, *c, *full;
    CHECK_OK(sd_dataset_open(root, NULL, &a));
    CHECK_OK(sd_dataset_open(root, NULL, &b));
    CHECK_OK(sd_dataset_open(root, NULL, &c));
    CHECK_OK(sd_dataset_open(root, NULL, &full));
    if (!a || !b || !c || !full) return;
    CHECK_OK(sd_dataset_select(a, 10, 42));
    CHECK_OK(sd_dataset_select(b, 10, 42));
    CHECK_OK(sd_dataset_select(c, 10, 43));
    CHECK(a->n == 10 && b->n == 10 && c->n == 10);
    /* the same as a Philox Fisher-Yates permutation's first 10 */
    uint32_t perm[50];
    sd_rng r;
    sd_rng_init(&r, 42, SD_DATASET_SELECT_STREAM);
    sd_rng_permutation(&r, perm, 50);
    int same_ab = 1, same_ac = 1, match = 1;
    for (int i = 0; i < 10; i++) {
        char want[32];
        snprintf(want, sizeof want, "%02u.png", perm[i]);
        match &= !strcmp(a->rec[i].rel, want) && a->rec[i].index == (uint64_t)i;
        same_ab &= !strcmp(a->rec[i].rel, b->rec[i].rel);
        same_ac &= !strcmp(a->rec[i].rel, c->rec[i].rel);
    }
    CHECK(match && same_ab && !same_ac);
    CHECK_OK(sd_dataset_select(full, 1000, 7));
    CHECK(full->n == 50);
    int in_order = 1, seen[50] = {0};
    for (int i = 0; i < 50; i++) {
        in_order &= atoi(full->rec[i].rel) == i;
        seen[atoi(full->rec[i].rel)]++;
    }
    int all_once = 1;
    for (int i = 0; i < 50; i++) all_once &= seen[i] == 1;
    CHECK(!in_order && all_once); /* shuffled, like shuffle(seed).select(range(n)) */
    cJSON *s = sd_dataset_summary(a);
    cJSON *sel = cJSON_GetObjectItem(s, "selection");
    CHECK(sd_json_int(sel, "max_samples", -1) == 10 && sd_json_int(sel, "from", -1) == 50 && sd_json_int(s, "records", -1) == 10);
    cJSON_Delete(s);
    sd_dataset_free(a);
    sd_dataset_free(b);
    sd_dataset_free(c);
    sd_dataset_free(full);
    free(root);
}

int main(void) {
    RUN(split_keywords);
    RUN(jsonl_basic);
    RUN(jsonl_every_skip_reason);
    RUN(csv_torture);
    RUN(splits);
    RUN(columns);
    RUN(sidecar);
    RUN(select_max_samples);
    sd_rm_rf(test_tmpdir());
    return test_summary();
}
