/* shard.h — WebDataset-compatible tar shards, shard sets and their manifest.
 *
 * The normative description is formats/shards.md (and sdtools-shards(5));
 * this header is the C view of it.
 *
 *   - A shard is a ustar tar (`PREFIX-%06d.tar`), optionally zstd-compressed
 *     (`PREFIX-%06d.tar.zst`). A member is named KEY.EXT; a sample is the run
 *     of consecutive members with the same KEY (webdataset's rule: KEY is the
 *     name up to the first dot of its last path component, EXT the rest).
 *   - The writer is deterministic (same samples in, same bytes out): mtime 0,
 *     uid/gid 0, empty uname/gname, mode 0444, members of a sample sorted by
 *     extension, 10240-byte records, no pax headers. It writes to a temporary
 *     sibling and renames on close, so an interrupted writer never leaves a
 *     file with a shard's name.
 *   - The reader streams a shard (.tar or .tar.zst, detected from the bytes),
 *     groups members into samples, and trusts nothing: truncation, corrupt
 *     headers, oversized members and duplicate extensions are errors naming
 *     the shard and the member.
 *   - A shard set is a directory of shards plus manifest.json (sample counts,
 *     sizes, sha256, provenance).
 */
#ifndef SD_IO_SHARD_H
#define SD_IO_SHARD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cJSON.h>

/* ---- member conventions (formats/shards.md §4) ------------------------- */

/* Sample key: the global sample index in dataset order, zero-padded. */
#define SD_SHARD_KEY_DIGITS 9
/* Shard file names: PREFIX-%06d.tar / PREFIX-%06d.tar.zst */
#define SD_SHARD_INDEX_DIGITS 6
#define SD_SHARD_PREFIX_PREP "prep"
#define SD_SHARD_PREFIX_LATENT "latent"
#define SD_SHARD_MANIFEST "manifest.json"
#define SD_SHARD_KIND_PREP "prep"
#define SD_SHARD_KIND_LATENT "latent"

/* Member extensions (KEY.EXT). */
#define SD_EXT_IMAGE "png"                  /* prep: RGB 8-bit PNG, after resize+crop */
#define SD_EXT_CAPTION "txt"                /* first caption, UTF-8 */
#define SD_EXT_META "json"                  /* per-sample metadata (sd_prep_meta) */
#define SD_EXT_TOKENS "tokens.safetensors"  /* "input_ids" I32 [n_captions, 77] */
#define SD_EXT_LATENT "latent.safetensors"  /* "mean", "logvar" [4,h,w] (+ _flipped) */
#define SD_EXT_TEXT "text.safetensors"      /* "hidden_states" [n_captions, 77, D] */

/* Tensor names inside the safetensors members. */
#define SD_T_INPUT_IDS "input_ids"
#define SD_T_MEAN "mean"
#define SD_T_LOGVAR "logvar"
#define SD_T_MEAN_FLIPPED "mean_flipped"
#define SD_T_LOGVAR_FLIPPED "logvar_flipped"
#define SD_T_HIDDEN_STATES "hidden_states"
/* __metadata__ keys. */
#define SD_META_TOKENIZER "tokenizer_fingerprint"
#define SD_META_VAE "vae_fingerprint"
#define SD_META_TEXT_ENCODER "text_encoder_fingerprint"
#define SD_TOKENS_LEN 77 /* CLIP context length: ids are padded/truncated to it */

/* The key of global sample index i: "%09llu" (longer if i >= 10^9). */
void sd_shard_key(uint64_t index, char out[32]);
/* "PREFIX-%06d.tar" or ".tar.zst"; malloc'ed. */
char *sd_shard_filename(const char *prefix, int shard_index, int zstd);

/* Per-sample metadata of prep shards (KEY.json). Strings are owned. */
typedef struct {
    uint64_t index;              /* global sample index (= the key) */
    char *source;                /* image path relative to the dataset root */
    int original_width, original_height;
    int resized_width, resized_height; /* after the shorter-side resize */
    int crop_ltrb[4];            /* crop box in resized coordinates, right/bottom exclusive */
    int random_flip;             /* 1: sdfit flips with p=0.5 (latent shards carry *_flipped) */
    int ncaptions;
    char **captions;             /* all captions, UTF-8; captions[0] is KEY.txt */
} sd_prep_meta;

/* Serialize to compact JSON (malloc'ed, no trailing newline). */
char *sd_prep_meta_to_json(const sd_prep_meta *m);
/* Parse and validate; `where` names the member in messages. */
int sd_prep_meta_from_json(const char *text, size_t len, const char *where, sd_prep_meta *m);
void sd_prep_meta_free(sd_prep_meta *m);

/* KEY.tokens.safetensors: ids is [ncap][SD_TOKENS_LEN] int32. *buf malloc'ed. */
int sd_tokens_pack(const int32_t *ids, int ncap, const char *tokenizer_fp, unsigned char **buf, size_t *len);
/* Validate and unpack (ids malloc'ed [ncap*77]; *fp malloc'ed or NULL when absent). */
int sd_tokens_unpack(const void *buf, size_t len, const char *where, int32_t **ids, int *ncap, char **fp);

/* ---- names -------------------------------------------------------------- */

/* webdataset's split, re.match(r"^((?:.*[/]|)[^.]+)[.]([^/]*)$", name): on a
 * match returns 1 with *key_len = length of the key prefix and *ext pointing
 * at the extension inside name (not lower-cased); 0 when the name has no key
 * (webdataset drops such members). */
int sd_shard_split_name(const char *name, size_t *key_len, const char **ext);
/* webdataset skips these before grouping: regular files whose name matches
 * `__[^/]*__($|/)` at the start (e.g. "__meta__", "__x__/y.txt"). */
int sd_shard_is_meta_name(const char *name);

/* ---- writer ------------------------------------------------------------- */

/* One member of a sample: ext without the leading dot ("png",
 * "latent.safetensors"); data is borrowed for the call. */
typedef struct {
    const char *ext;
    const void *data;
    size_t len;
} sd_shard_member;

/* What a finished (or scanned) shard holds; what the manifest records. */
typedef struct {
    char name[256];       /* file name (no directory) */
    uint64_t samples;
    uint64_t members;
    uint64_t bytes;       /* file size */
    uint64_t member_bytes;/* sum of member payload sizes */
    char sha256[65];      /* of the file's bytes */
    char first_key[128], last_key[128]; /* "" if no samples; truncated if longer */
    int zstd;
} sd_shard_info;

typedef struct sd_shard_writer sd_shard_writer;

/* Open PATH (must end in ".tar" or ".tar.zst"; the suffix selects zstd).
 * zstd_level 0 means 3. Nothing named PATH exists until close succeeds. */
int sd_shard_writer_open(sd_shard_writer **w, const char *path, int zstd_level);
/* Write one sample: members KEY.EXT in extension order. The key must be
 * 1..64 chars of [A-Za-z0-9_+-] not starting with '_'; extensions lower-case
 * [a-z0-9_+-] words joined by single dots; KEY.EXT at most 100 bytes; no
 * duplicate extension. Keys should be unique within a set (not checked). */
int sd_shard_write_sample(sd_shard_writer *w, const char *key, int n, const sd_shard_member *m);
/* Finish the archive, fsync, rename into place; fills *info (may be NULL).
 * Frees w in every case; on failure nothing is left at PATH. */
int sd_shard_writer_close(sd_shard_writer *w, sd_shard_info *info);
/* Give up: delete the temporary and free w. */
void sd_shard_writer_abort(sd_shard_writer *w);

/* ---- reader ------------------------------------------------------------- */

typedef struct {
    char *name;          /* as stored in the archive */
    char *ext;           /* lower-cased extension (webdataset lcase=True) */
    unsigned char *data; /* NUL-terminated for convenience (not counted in len) */
    size_t len;
} sd_shard_file;

typedef struct {
    char *key;
    int n;
    sd_shard_file *files; /* in archive order */
} sd_shard_sample;

typedef struct {
    uint64_t max_member;  /* bytes; 0 = SD_SHARD_MAX_MEMBER */
    uint64_t max_sample;  /* bytes; 0 = SD_SHARD_MAX_SAMPLE */
    int strict;           /* 1: a name with no key, a non-regular entry or a
                             __meta__ name is an error instead of a counted skip */
    int hash;             /* 1: hash the file while reading (sd_shard_sha256);
                             costs ~8 ms per MB with core/sha256 */
} sd_shard_read_opts;

#define SD_SHARD_MAX_MEMBER (256ull << 20)
#define SD_SHARD_MAX_SAMPLE (1024ull << 20)
#define SD_SHARD_MAX_FILES 1024   /* members per sample */
#define SD_SHARD_MAX_NAME 4096    /* bytes in a member name */

typedef struct sd_shard_reader sd_shard_reader;

/* Open a shard for streaming ("-" = stdin). opts may be NULL. */
int sd_shard_open(sd_shard_reader **r, const char *path, const sd_shard_read_opts *opts);
/* Next sample: 1 and *s (owned by the reader, valid until the next call),
 * 0 at a clean end (end-of-archive blocks present), -1 on error. */
int sd_shard_next(sd_shard_reader *r, sd_shard_sample **s);
void sd_shard_close(sd_shard_reader *r);

/* Counters, valid at any time. */
typedef struct {
    uint64_t entries;        /* archive entries seen */
    uint64_t members;        /* regular members returned in samples */
    uint64_t member_bytes;
    uint64_t samples;
    uint64_t skipped_nonregular, skipped_meta, skipped_nokey;
    int zstd;                /* the stream was zstd-compressed */
    int compressed;          /* some compression filter was used (zstd, gzip, ...) */
    const char *compression; /* libarchive's filter name ("zstd", "gzip"), NULL if none */
} sd_shard_stats;
void sd_shard_get_stats(const sd_shard_reader *r, sd_shard_stats *st);

/* After sd_shard_next returned 0, with opts.hash set: the sha256 and size of
 * the whole file (the reader hashes every byte it reads, then the rest). */
int sd_shard_sha256(sd_shard_reader *r, char hex[65], uint64_t *file_bytes);

/* The member with extension ext (lower-case) or NULL. */
const sd_shard_file *sd_shard_find(const sd_shard_sample *s, const char *ext);

/* Read a whole shard: count samples/members and hash the file. */
int sd_shard_scan(const char *path, sd_shard_info *info);

/* Print a description of a shard, a shard set directory, or a brace/glob
 * pattern: samples, members per extension, bytes, compression. json=1 prints
 * one JSON object. Returns 0, or -1 (with an error) if any shard is bad;
 * what was learned is still printed. */
int sd_shard_describe(const char *path, int json, FILE *out);

/* ---- shard sets --------------------------------------------------------- */

/* Expand a shard specification into paths, in order:
 *   DIR             the shards listed in DIR/manifest.json
 *   A::B            each part in turn (webdataset's list joiner)
 *   x-{000..009}.tar  brace ranges (zero padding kept) and {a,b} lists
 *   *.tar, x-0?.tar   glob(3), sorted; no match is an error
 *   FILE            itself
 * At most 10^6 paths. *paths is freed with sd_free_strv(paths, n). */
int sd_shard_expand(const char *spec, char ***paths, int *n);

typedef struct {
    char *kind;           /* "prep", "latent", or another producer's word */
    int complete;         /* 0 while the producer is still adding shards */
    int n, cap;
    sd_shard_info *shards;
    cJSON *provenance;    /* owned object (tool, version, options, fingerprints, counts, skips) */
} sd_shard_manifest;

void sd_shard_manifest_init(sd_shard_manifest *m, const char *kind);
void sd_shard_manifest_free(sd_shard_manifest *m);
/* Append (or replace the entry with the same name). */
void sd_shard_manifest_add(sd_shard_manifest *m, const sd_shard_info *info);
/* Entry by file name, or NULL. */
const sd_shard_info *sd_shard_manifest_find(const sd_shard_manifest *m, const char *name);
/* Take ownership of a provenance object (replacing any previous one). */
void sd_shard_manifest_set_provenance(sd_shard_manifest *m, cJSON *prov);
uint64_t sd_shard_manifest_samples(const sd_shard_manifest *m);
/* DIR/manifest.json, atomically. */
int sd_shard_manifest_write(const sd_shard_manifest *m, const char *dir);
/* From DIR (its manifest.json) or a manifest file path; validated. */
int sd_shard_manifest_read(const char *path, sd_shard_manifest *m);
/* Does DIR/info->name exist with the recorded size and sha256? 0 = yes;
 * -1 with a message saying what differs. This is how a restarted producer
 * decides to keep a shard. */
int sd_shard_verify(const char *dir, const sd_shard_info *info);
/* Every entry of the manifest; the first failure is reported. */
int sd_shard_manifest_verify(const sd_shard_manifest *m, const char *dir);

#endif
