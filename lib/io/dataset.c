/* dataset.c — imagefolder (metadata.jsonl / metadata.csv) and sidecar-caption
 * datasets into records, with counted skips. See dataset.h and
 * formats/dataset.md.
 */
#define _GNU_SOURCE
#include "io/dataset.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "core/sha256.h"
#include "io/json.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define MAX_METADATA_BYTES (1ull << 30)
#define MAX_CAPTION_BYTES (1u << 20)
#define MAX_SKIP_DETAILS 100000 /* skips beyond this are counted, not listed */

/* ---- small helpers -------------------------------------------------------- */

static const char *ext_of(const char *path) {
    const char *base = sd_path_basename(path);
    const char *dot = strrchr(base, '.');
    return dot && dot != base ? dot + 1 : "";
}

static int ext_in(const char *path, const char *const *list) {
    const char *e = ext_of(path);
    for (int i = 0; list[i]; i++)
        if (!strcasecmp(e, list[i])) return 1;
    return 0;
}

static const char *const SUPPORTED[] = {"png", "jpg", "jpeg", "jpe", "jfif", "webp", NULL};
/* Image types Pillow opens (the imagefolder builder's list, abridged): found
 * in a folder they are counted as unsupported rather than ignored. */
static const char *const KNOWN_IMAGES[] = {
    "png", "jpg", "jpeg", "jpe", "jfif", "webp", "apng", "bmp", "dib", "gif", "tif", "tiff", "tga", "icb", "vda", "vst",
    "ppm", "pgm", "pbm", "pnm", "pfm", "ico", "icns", "psd", "jp2", "j2k", "jpc", "jpf", "jpx", "j2c", "dds", "sgi",
    "rgb", "rgba", "bw", "blp", "cur", "dcx", "eps", "ps", "fit", "fits", "fli", "flc", "gbr", "im", "mpo", "msp",
    "pcd", "pcx", "pxr", "ras", "xbm", "xpm", "qoi", "avif", "heic", "heif", NULL};

int sd_dataset_ext_supported(const char *path) { return ext_in(path, SUPPORTED); }
int sd_dataset_ext_is_image(const char *path) { return ext_in(path, KNOWN_IMAGES); }

const char *sd_skip_reason_name(sd_skip_reason r) {
    static const char *names[SD_SKIP_COUNT] = {"missing_image", "bad_row",   "no_file_name",    "no_caption", "bad_utf8",
                                               "duplicate",     "outside_root", "unsupported_ext", "unlisted"};
    return (unsigned)r < SD_SKIP_COUNT ? names[r] : "unknown";
}

/* ---- split directories ----------------------------------------------------- */

static const char *const SPLIT_TRAIN[] = {"train", "training", NULL};
static const char *const SPLIT_VAL[] = {"validation", "valid", "val", "dev", NULL};
static const char *const SPLIT_TEST[] = {"test", "testing", "eval", "evaluation", NULL};

/* `datasets` delimits split keywords with these characters ("-._ 0-9"). */
static int is_sep(char c) { return c == '-' || c == '.' || c == '_' || c == ' ' || (c >= '0' && c <= '9'); }

/* name = P + kw + S, P empty or ending in a separator, S only separators */
static int dir_matches(const char *name, const char *kw) {
    size_t n = strlen(name), k = strlen(kw);
    for (size_t at = 0; at + k <= n; at++) {
        if (at > 0 && !is_sep(name[at - 1])) continue;
        if (strncmp(name + at, kw, k) != 0) continue;
        size_t j = at + k;
        while (j < n && is_sep(name[j])) j++;
        if (j == n) return 1;
    }
    return 0;
}

static const char *split_group(const char *name) {
    struct { const char *canon; const char *const *kws; } g[] = {{"train", SPLIT_TRAIN}, {"validation", SPLIT_VAL}, {"test", SPLIT_TEST}};
    for (int i = 0; i < 3; i++)
        for (int k = 0; g[i].kws[k]; k++)
            if (!strcmp(name, g[i].kws[k])) return g[i].canon;
    return NULL;
}

const char *sd_dataset_split_of_dir(const char *name) {
    struct { const char *canon; const char *const *kws; } g[] = {{"train", SPLIT_TRAIN}, {"validation", SPLIT_VAL}, {"test", SPLIT_TEST}};
    for (int i = 0; i < 3; i++)
        for (int k = 0; g[i].kws[k]; k++)
            if (dir_matches(name, g[i].kws[k])) return g[i].canon;
    return NULL;
}

/* ---- string hash set (duplicates, listed files) ---------------------------- */

typedef struct {
    char **slot;
    size_t cap, n;
} strset;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* 1 if added, 0 if present */
static int set_add(strset *t, const char *s) {
    if (2 * (t->n + 1) > t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 1024;
        char **ns = sd_xcalloc(nc, sizeof(char *));
        for (size_t i = 0; i < t->cap; i++)
            if (t->slot[i]) {
                size_t j = fnv1a(t->slot[i]) & (nc - 1);
                while (ns[j]) j = (j + 1) & (nc - 1);
                ns[j] = t->slot[i];
            }
        free(t->slot);
        t->slot = ns;
        t->cap = nc;
    }
    size_t j = fnv1a(s) & (t->cap - 1);
    while (t->slot[j]) {
        if (!strcmp(t->slot[j], s)) return 0;
        j = (j + 1) & (t->cap - 1);
    }
    t->slot[j] = sd_xstrdup(s);
    t->n++;
    return 1;
}

static int set_has(const strset *t, const char *s) {
    if (!t->cap) return 0;
    size_t j = fnv1a(s) & (t->cap - 1);
    while (t->slot[j]) {
        if (!strcmp(t->slot[j], s)) return 1;
        j = (j + 1) & (t->cap - 1);
    }
    return 0;
}

static void set_free(strset *t) {
    for (size_t i = 0; i < t->cap; i++) free(t->slot[i]);
    free(t->slot);
    memset(t, 0, sizeof *t);
}

/* ---- builder state ----------------------------------------------------------- */

typedef struct {
    sd_dataset *d;
    char *root_real;      /* realpath(root) */
    strset listed;        /* every path a row names (inside the root) */
    strset accepted;      /* paths of records */
    uint64_t rec_cap, skip_cap;
} builder;

static void skip(builder *b, sd_skip_reason r, const char *where, const char *fmt, ...) SD_PRINTF(4, 5);
static void skip(builder *b, sd_skip_reason r, const char *where, const char *fmt, ...) {
    sd_dataset *d = b->d;
    d->skip_count[r]++;
    if (d->nskips >= MAX_SKIP_DETAILS) { d->nskips++; return; }
    if (d->nskips == b->skip_cap) {
        b->skip_cap = b->skip_cap ? 2 * b->skip_cap : 64;
        d->skips = sd_xrealloc(d->skips, sizeof *d->skips * b->skip_cap);
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sd_dataset_skip *s = &d->skips[d->nskips++];
    s->reason = r;
    s->where = sd_xstrdup(where);
    s->detail = sd_xstrdup(msg);
}

static void add_record(builder *b, const char *rel, char **caps, int ncap, const char *origin) {
    sd_dataset *d = b->d;
    if (d->n == b->rec_cap) {
        b->rec_cap = b->rec_cap ? 2 * b->rec_cap : 256;
        d->rec = sd_xrealloc(d->rec, sizeof *d->rec * b->rec_cap);
    }
    sd_dataset_record *r = &d->rec[d->n];
    r->index = d->n;
    r->rel = sd_xstrdup(rel);
    r->path = sd_path_join(d->root, rel);
    r->ncaptions = ncap;
    r->captions = caps;
    r->origin = sd_xstrdup(origin);
    d->n++;
}

static void free_caps(char **caps, int n) {
    for (int i = 0; i < n; i++) free(caps[i]);
    free(caps);
}

/* Normalise a path from a metadata row, relative to its metadata directory
 * `base` (already normal, "" = root), like `datasets`: '\\' -> '/', then
 * os.path.normpath. NULL (with *why) for a URL, an absolute path, or a path
 * that normalises to ".." or "../..." (it would leave the metadata
 * directory). Returns base/normalised, malloc'ed ("" if it names base). */
static char *normalize_rel(const char *base, const char *p, const char **why) {
    if (strstr(p, "://")) { *why = "a URL"; return NULL; }
    if (p[0] == '/' || p[0] == '\\' || (isalpha((unsigned char)p[0]) && p[1] == ':')) { *why = "an absolute path"; return NULL; }
    char *s = sd_xstrdup(p);
    for (char *q = s; *q; q++)
        if (*q == '\\') *q = '/';
    size_t nb = strlen(base);
    char *out = sd_xmalloc(nb + strlen(s) + 2);
    memcpy(out, base, nb);
    size_t o = nb, floor_ = nb; /* never pop below the base */
    char *save = NULL;
    for (char *tok = strtok_r(s, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
        if (!strcmp(tok, ".")) continue;
        if (!strcmp(tok, "..")) {
            if (o == floor_) {
                free(s);
                free(out);
                *why = "a path above its metadata directory";
                return NULL;
            }
            while (o > floor_ && out[o - 1] != '/') o--;
            if (o > floor_) o--; /* the separator */
            continue;
        }
        if (o) out[o++] = '/';
        size_t l = strlen(tok);
        memcpy(out + o, tok, l);
        o += l;
    }
    out[o] = 0;
    free(s);
    return out;
}

/* ---- files ------------------------------------------------------------------- */

typedef struct {
    char **v;
    size_t n, cap;
} pathlist;

static void pl_push(pathlist *l, char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->v = sd_xrealloc(l->v, sizeof(char *) * l->cap);
    }
    l->v[l->n++] = s;
}

static void pl_free(pathlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_strp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every file under root/rel (relative paths). Hidden names (".x") and
 * "__x" directories are skipped, as `datasets` does; symlinked directories
 * are not followed (no cycles); symlinked files are listed. */
static int walk(const char *root, const char *rel, pathlist *out, int depth) {
    if (depth > 64) return sd_set_error("%s/%s: directories nested too deeply", root, rel);
    char *dir = *rel ? sd_path_join(root, rel) : sd_xstrdup(root);
    char **names;
    int n = sd_list_dir(dir, &names);
    if (n < 0) { free(dir); return -1; }
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (names[i][0] == '.') continue;
        char *full = sd_path_join(dir, names[i]);
        char *sub = *rel ? sd_path_join(rel, names[i]) : sd_xstrdup(names[i]);
        struct stat st;
        if (lstat(full, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                if (strncmp(names[i], "__", 2) != 0) rc = walk(root, sub, out, depth + 1);
            } else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
                /* a link to a directory is not followed; a dangling link is
                 * listed (and reported as such where it matters) */
                struct stat tgt;
                int to_dir = S_ISLNK(st.st_mode) && stat(full, &tgt) == 0 && S_ISDIR(tgt.st_mode);
                if (!to_dir) {
                    pl_push(out, sub);
                    sub = NULL;
                }
            }
        }
        free(full);
        free(sub);
    }
    sd_free_strv(names, n);
    free(dir);
    return rc;
}

/* The image at root/rel exists, is a regular file (after links) and its real
 * path is inside the root. 0 = ok, else the skip is recorded. */
static int check_file(builder *b, const char *rel, const char *where, int is_caption) {
    char *full = sd_path_join(b->d->root, rel);
    char *real = realpath(full, NULL);
    int rc = 0;
    sd_skip_reason missing = is_caption ? SD_SKIP_NO_CAPTION : SD_SKIP_MISSING_IMAGE;
    if (!real) {
        struct stat st;
        if (lstat(full, &st) == 0 && S_ISLNK(st.st_mode)) skip(b, missing, where, "%s: dangling symlink", rel);
        else skip(b, missing, where, "%s: %s", rel, strerror(errno));
        rc = -1;
    } else {
        size_t rl = strlen(b->root_real);
        struct stat st;
        if (!(strncmp(real, b->root_real, rl) == 0 && (real[rl] == '/' || (rl == 1 && b->root_real[0] == '/')))) {
            skip(b, SD_SKIP_OUTSIDE_ROOT, where, "%s: symlink to %s, outside the dataset root", rel, real);
            rc = -1;
        } else if (stat(real, &st) != 0 || !S_ISREG(st.st_mode)) {
            skip(b, missing, where, "%s: not a regular file", rel);
            rc = -1;
        }
    }
    free(real);
    free(full);
    return rc;
}

/* ---- rows ------------------------------------------------------------------------ */

/* One metadata row that named fname (relative to base). caps (owned) or a
 * caption problem (cap_err >= 0 with cap_detail). */
static void handle_row(builder *b, const char *base, const char *where, const char *fname, char **caps, int ncap, int cap_err,
                       const char *cap_detail) {
    const char *why = NULL;
    char *rel = normalize_rel(base, fname, &why);
    if (!rel) {
        skip(b, SD_SKIP_OUTSIDE_ROOT, where, "file_name \"%.200s\" is %s", fname, why);
        free_caps(caps, ncap);
        return;
    }
    if (!*rel) {
        skip(b, SD_SKIP_NO_FILE_NAME, where, "file_name \"%.200s\" names the directory itself", fname);
        goto done;
    }
    set_add(&b->listed, rel);
    if (!sd_dataset_ext_supported(rel)) {
        skip(b, SD_SKIP_UNSUPPORTED_EXT, where, "%s: not png/jpg/jpeg/jpe/jfif/webp", rel);
        goto done;
    }
    if (cap_err >= 0) {
        skip(b, (sd_skip_reason)cap_err, where, "%s: %s", rel, cap_detail);
        goto done;
    }
    if (check_file(b, rel, where, 0)) goto done;
    if (!set_add(&b->accepted, rel)) {
        skip(b, SD_SKIP_DUPLICATE, where, "%s is listed again", rel);
        goto done;
    }
    add_record(b, rel, caps, ncap, where);
    caps = NULL;
    ncap = 0;
done:
    free_caps(caps, ncap);
    free(rel);
}

/* Captions from a JSON value: a string or a non-empty list of strings. */
static int json_captions(const cJSON *v, char ***caps, int *ncap, const char **detail) {
    *caps = NULL;
    *ncap = 0;
    if (!v) { *detail = "no caption field"; return SD_SKIP_NO_CAPTION; }
    if (cJSON_IsString(v)) {
        if (!sd_utf8_valid(v->valuestring, strlen(v->valuestring))) { *detail = "caption is not valid UTF-8"; return SD_SKIP_BAD_UTF8; }
        *caps = sd_xmalloc(sizeof(char *));
        (*caps)[0] = sd_xstrdup(v->valuestring);
        *ncap = 1;
        return -1;
    }
    if (cJSON_IsArray(v)) {
        int n = cJSON_GetArraySize(v);
        if (n == 0) { *detail = "caption list is empty"; return SD_SKIP_NO_CAPTION; }
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            if (!cJSON_IsString(e)) { *detail = "caption list holds a non-string"; return SD_SKIP_NO_CAPTION; }
            if (!sd_utf8_valid(e->valuestring, strlen(e->valuestring))) { *detail = "caption is not valid UTF-8"; return SD_SKIP_BAD_UTF8; }
        }
        *caps = sd_xmalloc(sizeof(char *) * (size_t)n);
        cJSON_ArrayForEach(e, v) (*caps)[(*ncap)++] = sd_xstrdup(e->valuestring);
        return -1;
    }
    *detail = cJSON_IsNull(v) ? "caption is null" : cJSON_IsNumber(v) ? "caption is a number" : cJSON_IsBool(v) ? "caption is a boolean"
                                                                                                    : "caption is an object";
    return SD_SKIP_NO_CAPTION;
}

/* The link column's value in a row: the first candidate present. */
static const cJSON *json_link(const sd_dataset *d, const cJSON *row) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, d->link_column);
    if (!v && !strcmp(d->link_column, "file_name")) v = cJSON_GetObjectItemCaseSensitive(row, "image_file_name");
    return v;
}

static char *where_str(const char *meta_rel, int line) {
    char *w = sd_xmalloc(strlen(meta_rel) + 24);
    sprintf(w, "%s:%d", meta_rel, line);
    return w;
}

static int process_jsonl(builder *b, const char *meta_rel, const char *base, char *text, size_t n) {
    sd_dataset *d = b->d;
    size_t pos = 0;
    int line = 0, seen_link = 0, seen_cap = 0, parsed = 0;
    char *first_cols = NULL;
    if (n >= 3 && !memcmp(text, "\xef\xbb\xbf", 3)) pos = 3;
    while (pos < n) {
        char *s = text + pos;
        char *nl = memchr(s, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - s) : n - pos;
        pos += len + (nl ? 1 : 0);
        line++;
        if (len && s[len - 1] == '\r') len--;
        size_t k = 0;
        while (k < len && (s[k] == ' ' || s[k] == '\t')) k++;
        if (k == len) continue; /* blank line */
        d->rows++;
        char *where = where_str(meta_rel, line);
        cJSON *row;
        if (sd_json_parse(s, len, where, &row)) {
            const char *m = sd_last_error();
            const char *colon = strstr(m, ": ");
            skip(b, SD_SKIP_BAD_ROW, where, "%s", colon ? colon + 2 : m);
            free(where);
            continue;
        }
        if (!cJSON_IsObject(row)) {
            skip(b, SD_SKIP_BAD_ROW, where, "not a JSON object");
            cJSON_Delete(row);
            free(where);
            continue;
        }
        parsed++;
        if (!first_cols) {
            size_t cap = 256, o = 0;
            first_cols = sd_xcalloc(1, cap);
            const cJSON *c;
            cJSON_ArrayForEach(c, row) {
                size_t l = strlen(c->string);
                if (o + l + 3 >= cap) break;
                o += (size_t)snprintf(first_cols + o, cap - o, "%s%s", o ? ", " : "", c->string);
            }
        }
        const cJSON *link = json_link(d, row);
        const cJSON *capv = cJSON_GetObjectItemCaseSensitive(row, d->caption_column);
        seen_link |= link != NULL;
        seen_cap |= capv != NULL;
        if (!cJSON_IsString(link) || !link->valuestring[0]) {
            skip(b, SD_SKIP_NO_FILE_NAME, where, link ? "\"%s\" is not a non-empty string" : "no \"%s\" field", d->link_column);
        } else {
            char **caps;
            int ncap;
            const char *detail = NULL;
            int err = json_captions(capv, &caps, &ncap, &detail);
            handle_row(b, base, where, link->valuestring, caps, ncap, err, detail);
        }
        cJSON_Delete(row);
        free(where);
    }
    int rc = 0;
    if (parsed && !seen_link)
        rc = sd_set_error("%s/%s: no row has the image link column \"%s\" (columns: %s)", d->root, meta_rel, d->link_column, first_cols);
    else if (parsed && !seen_cap)
        rc = sd_set_error("%s/%s: no row has the caption column \"%s\" (columns: %s)", d->root, meta_rel, d->caption_column, first_cols);
    free(first_cols);
    return rc;
}

/* ---- CSV (RFC 4180, as pandas.read_csv reads it) ------------------------------- */

typedef struct {
    char **f;
    int n, cap;
    int quoted_any;
} csv_rec;

static void rec_clear(csv_rec *r) {
    for (int i = 0; i < r->n; i++) free(r->f[i]);
    r->n = 0;
    r->quoted_any = 0;
}

static void rec_push(csv_rec *r, const char *s, size_t len) {
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        r->f = sd_xrealloc(r->f, sizeof(char *) * (size_t)r->cap);
    }
    char *c = sd_xmalloc(len + 1);
    memcpy(c, s, len);
    c[len] = 0;
    r->f[r->n++] = c;
}

/* One record from s[*pos..n): 1 = record, 0 = end, -1 = malformed (*err set;
 * *pos is past the bad record). *line counts physical lines. Quoted fields
 * may hold commas, newlines and doubled quotes; a quote inside an unquoted
 * field is literal (pandas); text after a closing quote is malformed. */
static int csv_next(const char *s, size_t n, size_t *pos, int *line, csv_rec *r, const char **err) {
    rec_clear(r);
    if (*pos >= n) return 0;
    size_t p = *pos;
    char *buf = NULL;
    size_t blen = 0, bcap = 0;
    for (;;) {
        blen = 0;
        if (p < n && s[p] == '"') {
            r->quoted_any = 1;
            p++;
            for (;;) {
                if (p >= n) {
                    *err = "unterminated quoted field";
                    *pos = n;
                    free(buf);
                    return -1;
                }
                char c = s[p];
                if (c == '"') {
                    if (p + 1 < n && s[p + 1] == '"') { c = '"'; p += 2; }
                    else { p++; break; }
                } else {
                    if (c == '\n') (*line)++;
                    p++;
                }
                if (blen + 1 >= bcap) { bcap = bcap ? 2 * bcap : 256; buf = sd_xrealloc(buf, bcap); }
                buf[blen++] = c;
            }
            if (p < n && s[p] != ',' && s[p] != '\n' && s[p] != '\r') {
                *err = "text after a closing quote";
                while (p < n && s[p] != '\n') p++;
                if (p < n) { p++; (*line)++; }
                *pos = p;
                free(buf);
                return -1;
            }
            rec_push(r, buf ? buf : "", blen);
        } else {
            size_t st = p;
            while (p < n && s[p] != ',' && s[p] != '\n' && s[p] != '\r') p++;
            rec_push(r, s + st, p - st);
        }
        if (p >= n) break;
        if (s[p] == ',') { p++; continue; }
        if (s[p] == '\r') { p++; if (p < n && s[p] == '\n') p++; }
        else p++; /* '\n' */
        (*line)++;
        break;
    }
    free(buf);
    *pos = p;
    return 1;
}

static int process_csv(builder *b, const char *meta_rel, const char *base, char *text, size_t n) {
    sd_dataset *d = b->d;
    size_t pos = 0;
    if (n >= 3 && !memcmp(text, "\xef\xbb\xbf", 3)) pos = 3;
    int line = 1, rc = 0;
    csv_rec hdr = {0}, r = {0};
    const char *err = NULL;
    /* header: the first non-blank record */
    for (;;) {
        int start = line;
        int k = csv_next(text, n, &pos, &line, &hdr, &err);
        if (k == 0) { rc = sd_set_error("%s/%s: empty CSV (no header row)", d->root, meta_rel); goto out; }
        if (k < 0) { rc = sd_set_error("%s/%s:%d: header row: %s", d->root, meta_rel, start, err); goto out; }
        if (hdr.n == 1 && !hdr.quoted_any && !hdr.f[0][0]) continue;
        break;
    }
    int link_col = -1, cap_col = -1;
    for (int i = 0; i < hdr.n; i++) {
        if (!strcmp(hdr.f[i], d->caption_column) && cap_col < 0) cap_col = i;
        if (!strcmp(hdr.f[i], d->link_column) && link_col < 0) link_col = i;
    }
    if (link_col < 0 && !strcmp(d->link_column, "file_name"))
        for (int i = 0; i < hdr.n; i++)
            if (!strcmp(hdr.f[i], "image_file_name")) { link_col = i; break; }
    if (link_col < 0 || cap_col < 0) {
        char cols[512];
        size_t o = 0;
        cols[0] = 0;
        for (int i = 0; i < hdr.n && o + 8 < sizeof cols; i++) o += (size_t)snprintf(cols + o, sizeof cols - o, "%s%.100s", i ? ", " : "", hdr.f[i]);
        rc = sd_set_error("%s/%s: no %s column \"%s\" in the header (columns: %s)", d->root, meta_rel,
                          link_col < 0 ? "image link" : "caption", link_col < 0 ? d->link_column : d->caption_column, cols);
        goto out;
    }
    for (;;) {
        int start = line;
        int k = csv_next(text, n, &pos, &line, &r, &err);
        if (k == 0) break;
        char *where = where_str(meta_rel, start);
        if (k < 0) {
            d->rows++;
            skip(b, SD_SKIP_BAD_ROW, where, "%s", err);
            free(where);
            continue;
        }
        if (r.n == 1 && !r.quoted_any && !r.f[0][0]) { free(where); continue; } /* blank line */
        d->rows++;
        if (r.n > hdr.n) {
            skip(b, SD_SKIP_BAD_ROW, where, "%d fields, the header has %d", r.n, hdr.n);
        } else if (link_col >= r.n || !r.f[link_col][0]) {
            skip(b, SD_SKIP_NO_FILE_NAME, where, "empty \"%s\" field", d->link_column);
        } else {
            /* pandas reads an empty field as NaN: not a caption */
            const char *cap = cap_col < r.n ? r.f[cap_col] : "";
            char **caps = NULL;
            int ncap = 0, cerr = -1;
            const char *detail = NULL;
            if (!cap[0]) { cerr = SD_SKIP_NO_CAPTION; detail = "empty caption field (NaN to pandas)"; }
            else if (!sd_utf8_valid(cap, strlen(cap))) { cerr = SD_SKIP_BAD_UTF8; detail = "caption is not valid UTF-8"; }
            else {
                caps = sd_xmalloc(sizeof(char *));
                caps[0] = sd_xstrdup(cap);
                ncap = 1;
            }
            handle_row(b, base, where, r.f[link_col], caps, ncap, cerr, detail);
        }
        free(where);
    }
out:
    rec_clear(&hdr);
    rec_clear(&r);
    free(hdr.f);
    free(r.f);
    return rc;
}

/* ---- sidecar captions --------------------------------------------------------- */

static void sidecar_one(builder *b, const char *rel) {
    sd_dataset *d = b->d;
    d->rows++;
    if (!sd_dataset_ext_supported(rel)) {
        skip(b, SD_SKIP_UNSUPPORTED_EXT, rel, "not png/jpg/jpeg/jpe/jfif/webp");
        return;
    }
    const char *dot = strrchr(rel, '.');
    size_t stem = (size_t)(dot - rel);
    char *cap_rel = sd_xmalloc(stem + strlen(d->caption_ext) + 1);
    memcpy(cap_rel, rel, stem);
    strcpy(cap_rel + stem, d->caption_ext);
    char *cap_path = sd_path_join(d->root, cap_rel);
    char *text = NULL;
    size_t n = 0;
    char **caps = NULL;
    int ncap = 0;
    if (!sd_is_file(cap_path)) {
        skip(b, SD_SKIP_NO_CAPTION, rel, "no caption file %s", cap_rel);
        goto done;
    }
    if (check_file(b, cap_rel, rel, 1)) goto done;
    if (sd_read_file(cap_path, MAX_CAPTION_BYTES, &text, &n)) {
        skip(b, SD_SKIP_NO_CAPTION, rel, "%s", sd_last_error());
        goto done;
    }
    size_t p = n >= 3 && !memcmp(text, "\xef\xbb\xbf", 3) ? 3 : 0;
    if (!sd_utf8_valid(text + p, n - p) || memchr(text + p, 0, n - p)) {
        skip(b, SD_SKIP_BAD_UTF8, rel, "%s is not UTF-8 text", cap_rel);
        goto done;
    }
    caps = sd_xmalloc(sizeof(char *) * (n / 2 + 2));
    while (p < n) {
        char *s = text + p;
        char *nl = memchr(s, '\n', n - p);
        size_t len = nl ? (size_t)(nl - s) : n - p;
        p += len + (nl ? 1 : 0);
        /* Python's str.strip() on ASCII whitespace */
        while (len && isspace((unsigned char)s[len - 1])) len--;
        while (len && isspace((unsigned char)*s)) { s++; len--; }
        if (len) caps[ncap++] = strndup(s, len);
        if (!d->sidecar_all_lines) break; /* kohya: lines[0].strip() */
    }
    if (ncap == 0) {
        skip(b, SD_SKIP_NO_CAPTION, rel, "%s: %s", cap_rel, d->sidecar_all_lines ? "caption file is empty" : "first line is empty");
        goto done;
    }
    if (check_file(b, rel, rel, 0)) goto done;
    set_add(&b->accepted, rel);
    add_record(b, rel, caps, ncap, cap_rel);
    caps = NULL;
    ncap = 0;
done:
    free_caps(caps, ncap);
    free(text);
    free(cap_path);
    free(cap_rel);
}

/* ---- open ------------------------------------------------------------------------- */

static int find_data_dirs(sd_dataset *d) {
    char **names;
    int n = sd_list_dir(d->root, &names);
    if (n < 0) return -1;
    const char *want = split_group(d->split); /* NULL: a custom split name */
    int any_split = 0, rc = 0;
    char found[512] = "";
    for (int i = 0; i < n; i++) {
        if (names[i][0] == '.') continue;
        char *full = sd_path_join(d->root, names[i]);
        int isdir = sd_is_dir(full);
        free(full);
        if (!isdir) continue;
        const char *g = sd_dataset_split_of_dir(names[i]);
        if (!g && !(want == NULL && !strcmp(names[i], d->split))) continue;
        any_split = 1;
        size_t fl = strlen(found);
        if (fl + strlen(names[i]) + 3 < sizeof found) snprintf(found + fl, sizeof found - fl, "%s%s", fl ? ", " : "", names[i]);
        if ((want && g && !strcmp(g, want)) || (!want && !strcmp(names[i], d->split))) {
            d->dirs = sd_xrealloc(d->dirs, sizeof(char *) * (size_t)(d->ndirs + 1));
            d->dirs[d->ndirs++] = sd_xstrdup(names[i]);
        }
    }
    sd_free_strv(names, n);
    if (d->ndirs) return 0;
    if (!any_split && want && !strcmp(want, "train")) {
        /* no split directories: everything is the train split */
        d->dirs = sd_xmalloc(sizeof(char *));
        d->dirs[d->ndirs++] = sd_xstrdup("");
        return 0;
    }
    if (any_split) rc = sd_set_error("%s: no \"%s\" split directory (split directories found: %s)", d->root, d->split, found);
    else rc = sd_set_error("%s: no split directories, so the only split is \"train\" (asked for \"%s\")", d->root, d->split);
    return rc;
}

int sd_dataset_open(const char *root, const sd_dataset_opts *opts, sd_dataset **out) {
    *out = NULL;
    sd_dataset_opts o = opts ? *opts : (sd_dataset_opts){0};
    if (!sd_is_dir(root)) return sd_set_error("%s: not a directory", root);
    sd_dataset *d = sd_xcalloc(1, sizeof *d);
    builder b = {.d = d};
    pathlist files = {0};
    int rc = -1;
    d->root = sd_xstrdup(root);
    size_t rl = strlen(d->root);
    while (rl > 1 && d->root[rl - 1] == '/') d->root[--rl] = 0;
    d->split = sd_xstrdup(o.split && *o.split ? o.split : "train");
    d->caption_column = sd_xstrdup(o.caption_column && *o.caption_column ? o.caption_column : "text");
    d->image_column = sd_xstrdup(o.image_column && *o.image_column ? o.image_column : "image");
    size_t il = strlen(d->image_column);
    if (!strcmp(d->image_column, "image")) d->link_column = sd_xstrdup("file_name");
    else if (il >= 9 && !strcmp(d->image_column + il - 9, "file_name")) d->link_column = sd_xstrdup(d->image_column);
    else {
        d->link_column = sd_xmalloc(il + 11);
        sprintf(d->link_column, "%s_file_name", d->image_column);
    }
    const char *ce = o.caption_ext && *o.caption_ext ? o.caption_ext : ".txt";
    d->caption_ext = sd_xmalloc(strlen(ce) + 2);
    sprintf(d->caption_ext, "%s%s", ce[0] == '.' ? "" : ".", ce);
    d->sidecar_all_lines = o.sidecar_all_lines;
    b.root_real = realpath(d->root, NULL);
    if (!b.root_real) { sd_set_error("%s: %s", d->root, strerror(errno)); goto out; }
    if (find_data_dirs(d)) goto out;

    /* all files of the split, sorted by relative path */
    for (int i = 0; i < d->ndirs; i++)
        if (walk(d->root, d->dirs[i], &files, 0)) goto out;
    if (files.n) qsort(files.v, files.n, sizeof(char *), cmp_strp);
    int njsonl = 0, ncsv = 0;
    for (size_t i = 0; i < files.n; i++) {
        const char *base = sd_path_basename(files.v[i]);
        if (!strcmp(base, "metadata.parquet") && o.layout != SD_LAYOUT_SIDECAR) {
            sd_set_error("%s/%s: metadata.parquet is not supported: convert it to metadata.jsonl", d->root, files.v[i]);
            goto out;
        }
        int j = !strcmp(base, "metadata.jsonl"), c = !strcmp(base, "metadata.csv");
        if (!j && !c) continue;
        njsonl += j;
        ncsv += c;
        d->meta_files = sd_xrealloc(d->meta_files, sizeof(char *) * (size_t)(d->nmeta + 1));
        d->meta_files[d->nmeta++] = sd_xstrdup(files.v[i]);
    }
    if (o.layout == SD_LAYOUT_AUTO) o.layout = d->nmeta ? SD_LAYOUT_IMAGEFOLDER : SD_LAYOUT_SIDECAR;
    d->layout = o.layout;

    if (d->layout == SD_LAYOUT_IMAGEFOLDER) {
        if (!d->nmeta) {
            sd_set_error("%s: no metadata.jsonl or metadata.csv in the \"%s\" split", d->root, d->split);
            goto out;
        }
        if (njsonl && ncsv) {
            sd_set_error("%s: mixes metadata.jsonl and metadata.csv (one format per dataset, as in `datasets`)", d->root);
            goto out;
        }
        d->meta_sha256 = sd_xcalloc((size_t)d->nmeta, sizeof(char *));
        for (int i = 0; i < d->nmeta; i++) {
            char *path = sd_path_join(d->root, d->meta_files[i]);
            char *text;
            size_t n;
            if (sd_read_file(path, MAX_METADATA_BYTES, &text, &n)) { free(path); goto out; }
            free(path);
            sd_sha256 h;
            unsigned char dg[32];
            sd_sha256_init(&h);
            sd_sha256_update(&h, text, n);
            sd_sha256_final(&h, dg);
            d->meta_sha256[i] = sd_xmalloc(65);
            sd_sha256_hex(dg, d->meta_sha256[i]);
            char *base = sd_path_dirname(d->meta_files[i]);
            if (!strcmp(base, ".")) base[0] = 0;
            int r = ncsv ? process_csv(&b, d->meta_files[i], base, text, n) : process_jsonl(&b, d->meta_files[i], base, text, n);
            free(base);
            free(text);
            if (r) goto out;
        }
        /* images present but not named by any row */
        for (size_t i = 0; i < files.n; i++)
            if (sd_dataset_ext_is_image(files.v[i]) && !set_has(&b.listed, files.v[i]))
                skip(&b, SD_SKIP_UNLISTED, files.v[i], "image not named in any metadata file");
    } else {
        for (size_t i = 0; i < files.n; i++)
            if (sd_dataset_ext_is_image(files.v[i])) sidecar_one(&b, files.v[i]);
    }
    rc = 0;
out:
    pl_free(&files);
    set_free(&b.listed);
    set_free(&b.accepted);
    free(b.root_real);
    if (rc) { sd_dataset_free(d); return -1; }
    *out = d;
    return 0;
}

void sd_dataset_free(sd_dataset *d) {
    if (!d) return;
    for (uint64_t i = 0; i < d->n; i++) {
        sd_dataset_record *r = &d->rec[i];
        free(r->path);
        free(r->rel);
        free(r->origin);
        free_caps(r->captions, r->ncaptions);
    }
    free(d->rec);
    uint64_t listed = d->nskips < MAX_SKIP_DETAILS ? d->nskips : MAX_SKIP_DETAILS;
    for (uint64_t i = 0; i < listed; i++) {
        free(d->skips[i].where);
        free(d->skips[i].detail);
    }
    free(d->skips);
    sd_free_strv(d->dirs, d->ndirs);
    sd_free_strv(d->meta_files, d->nmeta);
    if (d->meta_sha256) sd_free_strv(d->meta_sha256, d->nmeta);
    free(d->root);
    free(d->split);
    free(d->caption_column);
    free(d->image_column);
    free(d->link_column);
    free(d->caption_ext);
    free(d);
}

/* ---- after open --------------------------------------------------------------- */

int sd_dataset_check_strict(const sd_dataset *d) {
    if (d->nskips == 0) return 0;
    const sd_dataset_skip *s = &d->skips[0];
    return sd_set_error("%s: %" PRIu64 " entr%s skipped and strict mode is on; first: %s: %s: %s", d->root, d->nskips,
                        d->nskips == 1 ? "y" : "ies", sd_skip_reason_name(s->reason), s->where, s->detail);
}

void sd_dataset_print_skips(const sd_dataset *d, FILE *f, int max) {
    uint64_t listed = d->nskips < MAX_SKIP_DETAILS ? d->nskips : MAX_SKIP_DETAILS;
    for (uint64_t i = 0; i < listed && (int64_t)i < max; i++)
        fprintf(f, "skipped %s: %s: %s\n", sd_skip_reason_name(d->skips[i].reason), d->skips[i].where, d->skips[i].detail);
    if (d->nskips > (uint64_t)max) fprintf(f, "... and %" PRIu64 " more\n", d->nskips - (uint64_t)max);
    if (d->nskips) {
        fprintf(f, "skipped %" PRIu64 " of %" PRIu64 " entries:", d->nskips, d->rows);
        for (int r = 0; r < SD_SKIP_COUNT; r++)
            if (d->skip_count[r]) fprintf(f, " %s %" PRIu64, sd_skip_reason_name((sd_skip_reason)r), d->skip_count[r]);
        fprintf(f, "\n");
    }
}

int sd_dataset_select(sd_dataset *d, uint64_t n, uint64_t seed) {
    if (d->n > UINT32_MAX) return sd_set_error("%s: too many records to select from", d->root);
    uint32_t *perm = sd_xmalloc(sizeof(uint32_t) * (d->n ? d->n : 1));
    sd_rng r;
    sd_rng_init(&r, seed, SD_DATASET_SELECT_STREAM);
    sd_rng_permutation(&r, perm, d->n);
    uint64_t keep = n < d->n ? n : d->n;
    sd_dataset_record *nr = sd_xmalloc(sizeof *nr * (keep ? keep : 1));
    char *taken = sd_xcalloc(d->n ? d->n : 1, 1);
    for (uint64_t i = 0; i < keep; i++) {
        nr[i] = d->rec[perm[i]];
        nr[i].index = i;
        taken[perm[i]] = 1;
    }
    for (uint64_t i = 0; i < d->n; i++)
        if (!taken[i]) {
            free(d->rec[i].path);
            free(d->rec[i].rel);
            free(d->rec[i].origin);
            free_caps(d->rec[i].captions, d->rec[i].ncaptions);
        }
    free(taken);
    free(perm);
    free(d->rec);
    d->rec = nr;
    d->n_before_select = d->n;
    d->n = keep;
    d->selected = 1;
    d->select_n = n;
    d->select_seed = seed;
    return 0;
}

cJSON *sd_dataset_summary(const sd_dataset *d) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "root", d->root);
    cJSON_AddStringToObject(j, "layout", d->layout == SD_LAYOUT_SIDECAR ? "sidecar" : "imagefolder");
    cJSON_AddStringToObject(j, "split", d->split);
    cJSON *dirs = cJSON_AddArrayToObject(j, "data_dirs");
    for (int i = 0; i < d->ndirs; i++) cJSON_AddItemToArray(dirs, cJSON_CreateString(d->dirs[i]));
    if (d->layout == SD_LAYOUT_IMAGEFOLDER) {
        cJSON *mf = cJSON_AddArrayToObject(j, "metadata_files");
        for (int i = 0; i < d->nmeta; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "path", d->meta_files[i]);
            cJSON_AddStringToObject(o, "sha256", d->meta_sha256 ? d->meta_sha256[i] : "");
            cJSON_AddItemToArray(mf, o);
        }
        cJSON_AddStringToObject(j, "image_column", d->image_column);
        cJSON_AddStringToObject(j, "link_column", d->link_column);
        cJSON_AddStringToObject(j, "caption_column", d->caption_column);
    } else {
        cJSON_AddStringToObject(j, "caption_ext", d->caption_ext);
        cJSON_AddBoolToObject(j, "caption_all_lines", d->sidecar_all_lines);
    }
    cJSON_AddNumberToObject(j, "rows", (double)d->rows);
    cJSON_AddNumberToObject(j, "records", (double)d->n);
    cJSON *sk = cJSON_AddObjectToObject(j, "skipped");
    for (int r = 0; r < SD_SKIP_COUNT; r++) cJSON_AddNumberToObject(sk, sd_skip_reason_name((sd_skip_reason)r), (double)d->skip_count[r]);
    if (d->selected) {
        cJSON *s = cJSON_AddObjectToObject(j, "selection");
        cJSON_AddNumberToObject(s, "max_samples", (double)d->select_n);
        cJSON_AddNumberToObject(s, "seed", (double)d->select_seed);
        cJSON_AddNumberToObject(s, "from", (double)d->n_before_select);
        cJSON_AddStringToObject(s, "method", "philox-fisher-yates (sd_rng stream \"select\")");
    } else {
        cJSON_AddNullToObject(j, "selection");
    }
    return j;
}
