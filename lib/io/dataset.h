/* dataset.h — enumerate a training image dataset into (image, captions)
 * records: the input side of sdprep.
 *
 * Two layouts (formats/dataset.md has the rules in full):
 *
 *   imagefolder (HuggingFace `datasets`):  ROOT[/SPLIT]/metadata.jsonl|csv
 *       rows with `file_name` (relative to the metadata file's directory) and
 *       a caption column (`text`; a string or a list of strings).
 *   sidecar (kohya / DreamBooth):  ROOT/.../img.png + img.txt (recursive)
 *       every supported image with a caption file beside it.
 *
 * The order is deterministic: metadata files sorted by path, rows in file
 * order; sidecar images sorted by relative path (bytewise). Bad entries are
 * never fatal by themselves: each becomes a counted skip with a reason code,
 * the place (file:line or path) and a message; sd_dataset_check_strict turns
 * any skip into an error. Configuration mistakes (no such split, a caption
 * column that no row has, mixed metadata formats) are errors.
 */
#ifndef SD_IO_DATASET_H
#define SD_IO_DATASET_H

#include <stdint.h>
#include <stdio.h>

#include <cJSON.h>

#include "core/utf8.h" /* sd_utf8_valid */

typedef enum {
    SD_LAYOUT_AUTO = 0,    /* imagefolder if a metadata file exists, else sidecar */
    SD_LAYOUT_IMAGEFOLDER,
    SD_LAYOUT_SIDECAR,
} sd_dataset_layout;

typedef enum {
    SD_SKIP_MISSING_IMAGE = 0, /* listed file absent, dangling link, or not a regular file */
    SD_SKIP_BAD_ROW,           /* malformed JSON line / CSV record, row not an object, too many fields */
    SD_SKIP_NO_FILE_NAME,      /* row without the link column (file_name), or not a non-empty string */
    SD_SKIP_NO_CAPTION,        /* caption absent, null, empty CSV field, empty list, a non-string;
                                  sidecar: no caption file, or it is empty */
    SD_SKIP_BAD_UTF8,          /* caption is not valid UTF-8 */
    SD_SKIP_DUPLICATE,         /* the same image (after path normalisation) accepted already */
    SD_SKIP_OUTSIDE_ROOT,      /* absolute path, URL, ".." above the metadata directory, or a
                                  symlink whose target is outside the dataset root */
    SD_SKIP_UNSUPPORTED_EXT,   /* not png/jpg/jpeg/jpe/jfif/webp */
    SD_SKIP_UNLISTED,          /* imagefolder: an image file no metadata row names */
    SD_SKIP_COUNT
} sd_skip_reason;

typedef struct {
    uint64_t index;   /* position in the dataset (after selection): the sample key */
    char *path;       /* ROOT/rel: the file to open */
    char *rel;        /* normalised path relative to ROOT, '/'-separated */
    int ncaptions;    /* >= 1 */
    char **captions;  /* UTF-8, in source order */
    char *origin;     /* "train/metadata.jsonl:12" or the caption file's relative path */
} sd_dataset_record;

typedef struct {
    sd_skip_reason reason;
    char *where;      /* "train/metadata.csv:14" or a relative path */
    char *detail;
} sd_dataset_skip;

typedef struct {
    const char *split;          /* NULL = "train" */
    const char *caption_column; /* NULL = "text" */
    const char *image_column;   /* NULL = "image": the link column is file_name (or image_file_name);
                                   X: X_file_name; a name ending in "file_name" is used as is */
    const char *caption_ext;    /* sidecar caption extension, NULL = ".txt" (kohya: ".caption") */
    sd_dataset_layout layout;
    int sidecar_all_lines;      /* 0: the first line is the caption (kohya); 1: each non-empty line is one */
} sd_dataset_opts;

typedef struct {
    char *root;
    sd_dataset_layout layout;   /* the one used */
    char *split;
    int ndirs;
    char **dirs;                /* data directories, relative to root ("" = root) */
    int nmeta;
    char **meta_files;          /* relative to root */
    char **meta_sha256;
    uint64_t rows;              /* metadata rows / candidate images seen */
    uint64_t n;                 /* records */
    sd_dataset_record *rec;
    uint64_t nskips;
    sd_dataset_skip *skips;
    uint64_t skip_count[SD_SKIP_COUNT];
    int selected;               /* sd_dataset_select was applied */
    uint64_t select_n, select_seed, n_before_select;
    char *caption_column, *image_column, *link_column, *caption_ext;
    int sidecar_all_lines;
} sd_dataset;

int sd_dataset_open(const char *root, const sd_dataset_opts *opts, sd_dataset **out);
void sd_dataset_free(sd_dataset *d);

/* "missing_image", "bad_row", ... (the codes used in messages and manifests) */
const char *sd_skip_reason_name(sd_skip_reason r);

/* --strict: 0 when nothing was skipped, else -1 with a message giving the
 * count and the first skip. */
int sd_dataset_check_strict(const sd_dataset *d);

/* Print up to max skip lines ("skipped REASON: WHERE: DETAIL") and a count
 * per reason. */
void sd_dataset_print_skips(const sd_dataset *d, FILE *f, int max);

/* diffusers' --max_train_samples: dataset.shuffle(seed).select(range(n)).
 * Here the shuffle is a Fisher-Yates permutation from sd_rng (Philox,
 * stream SD_DATASET_SELECT_STREAM), NOT numpy's/datasets' permutation: the
 * same seed selects different images than diffusers does. The kept records
 * are in shuffled order and renumbered 0..n-1. n >= the record count keeps
 * everything (still shuffled, as diffusers does). */
#define SD_DATASET_SELECT_STREAM 0x73656c6563740000ull /* "select" */
int sd_dataset_select(sd_dataset *d, uint64_t n, uint64_t seed);

/* Provenance for a manifest: root, layout, split, metadata files and their
 * sha256, columns, counts, skips per reason, selection. */
cJSON *sd_dataset_summary(const sd_dataset *d);

/* Helpers, exposed for tests and tools. */
int sd_dataset_ext_supported(const char *path);  /* png jpg jpeg jpe jfif webp (any case) */
int sd_dataset_ext_is_image(const char *path);   /* any image type Pillow knows (subset) */
/* Which split a directory name belongs to ("train", "validation", "test") by
 * the keyword rule of `datasets`, or NULL. */
const char *sd_dataset_split_of_dir(const char *name);

#endif
