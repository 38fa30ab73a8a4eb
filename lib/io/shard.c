/* shard.c — WebDataset tar shards: writer, streaming reader, names, member
 * conventions. Shard sets (expansion, manifest) are in shard_set.c. See
 * shard.h and formats/shards.md.
 */
#define _GNU_SOURCE
#include "io/shard.h"
#include "core/utf8.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "io/json.h"
#include "io/safetensors.h"

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- small helpers ------------------------------------------------------ */

/* A name made printable for messages: control bytes and non-ASCII as \xHH,
 * cut at 200 bytes. Returns buf. */
static const char *printable(const char *s, char *buf, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; s[i] && k + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= 200) { memcpy(buf + k, "...", 3); k += 3; break; }
        if (c < 0x20 || c >= 0x7f) k += (size_t)snprintf(buf + k, cap - k, "\\x%02x", c);
        else buf[k++] = (char)c;
    }
    buf[k] = 0;
    return buf;
}

void sd_shard_key(uint64_t index, char out[32]) {
    snprintf(out, 32, "%0*" PRIu64, SD_SHARD_KEY_DIGITS, index);
}

char *sd_shard_filename(const char *prefix, int shard_index, int zstd) {
    size_t n = strlen(prefix) + 32;
    char *s = sd_xmalloc(n);
    snprintf(s, n, "%s-%0*d.tar%s", prefix, SD_SHARD_INDEX_DIGITS, shard_index, zstd ? ".zst" : "");
    return s;
}

/* ---- names -------------------------------------------------------------- */

/* re.match(r"^((?:.*[/]|)[^.]+)[.]([^/]*)$", name), derived by hand:
 * the extension may contain no '/', so the dot that ends the key must be the
 * first dot after the last '/'. The key part after the chosen "dir/" prefix
 * must be non-empty and dot-free. The greedy `.*[/]` tries the longest prefix
 * first: normally "dir/" + "base" with base = basename up to its first dot.
 * When the basename starts with a dot (".x", "a/.x"), the only way to match
 * is a shorter prefix whose remainder up to and including the last '/' has no
 * dot: the key then ends with that '/' ("a/.x" -> key "a/", ext "x"). */
int sd_shard_split_name(const char *name, size_t *key_len, const char **ext) {
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strchr(base, '.');
    if (!dot) return 0;
    if (dot > base) {
        *key_len = (size_t)(dot - name);
        *ext = dot + 1;
        return 1;
    }
    /* basename starts with '.': the key must end at the last '/' */
    if (!slash) return 0;
    /* start of the last directory component */
    const char *p = slash;
    while (p > name && p[-1] != '/') p--;
    for (const char *q = p; q < slash; q++)
        if (*q == '.') return 0;
    *key_len = (size_t)(slash + 1 - name);
    *ext = base + 1;
    return 1;
}

int sd_shard_is_meta_name(const char *name) {
    /* webdataset skips two kinds: a top-level name (no '/') that starts and
     * ends with "__" (even "__" or "___"), and any name matching
     * re.match(r"__[^/]*__($|/)"), i.e. whose first component has at least
     * 4 characters and starts and ends with "__". */
    if (strncmp(name, "__", 2) != 0) return 0;
    const char *end = strchr(name, '/');
    size_t comp = end ? (size_t)(end - name) : strlen(name);
    if (!end) return name[comp - 1] == '_' && name[comp - 2] == '_';
    return comp >= 4 && name[comp - 1] == '_' && name[comp - 2] == '_';
}

/* ---- writer ------------------------------------------------------------- */

struct sd_shard_writer {
    struct archive *a;
    sd_atomic_file af;
    sd_sha256 sha;
    sd_shard_info info;
    int io_error; /* errno of a failed write, 0 if none */
    int failed;   /* a call failed: the shard can only be aborted */
};

static la_ssize_t writer_cb(struct archive *a, void *ud, const void *buf, size_t n) {
    sd_shard_writer *w = ud;
    if (n && fwrite(buf, 1, n, w->af.f) != n) {
        w->io_error = errno ? errno : EIO;
        archive_set_error(a, w->io_error, "write failed: %s", strerror(w->io_error));
        return -1;
    }
    sd_sha256_update(&w->sha, buf, n);
    w->info.bytes += n;
    return (la_ssize_t)n;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int sd_shard_writer_open(sd_shard_writer **out, const char *path, int zstd_level) {
    *out = NULL;
    int zstd;
    if (ends_with(path, ".tar.zst")) zstd = 1;
    else if (ends_with(path, ".tar")) zstd = 0;
    else return sd_set_error("%s: a shard name must end in .tar or .tar.zst", path);
    if (zstd_level == 0) zstd_level = 3;
    if (zstd_level < 1 || zstd_level > 19) return sd_set_error("%s: zstd level %d not in 1..19", path, zstd_level);
    if (strlen(sd_path_basename(path)) >= sizeof(((sd_shard_info *)0)->name))
        return sd_set_error("%s: file name too long", path);

    sd_shard_writer *w = sd_xcalloc(1, sizeof *w);
    if (sd_atomic_open(&w->af, path)) { free(w); return -1; }
    sd_sha256_init(&w->sha);
    snprintf(w->info.name, sizeof w->info.name, "%s", sd_path_basename(path));
    w->info.zstd = zstd;
    w->a = archive_write_new();
    char lvl[16];
    snprintf(lvl, sizeof lvl, "%d", zstd_level);
    int rc = archive_write_set_format_ustar(w->a);
    /* 10240-byte records like GNU tar and Python's tarfile; a compressed
     * stream is not padded (zero bytes after a zstd frame are garbage). */
    if (rc == ARCHIVE_OK) rc = archive_write_set_bytes_per_block(w->a, 10240);
    if (rc == ARCHIVE_OK) rc = archive_write_set_bytes_in_last_block(w->a, zstd ? 1 : 10240);
    if (rc == ARCHIVE_OK && zstd) rc = archive_write_add_filter_zstd(w->a);
    if (rc == ARCHIVE_OK && zstd) rc = archive_write_set_filter_option(w->a, "zstd", "compression-level", lvl);
    if (rc == ARCHIVE_OK) rc = archive_write_open2(w->a, w, NULL, writer_cb, NULL, NULL);
    if (rc != ARCHIVE_OK) {
        sd_set_error("%s: cannot start archive: %s", path, archive_error_string(w->a));
        sd_shard_writer_abort(w);
        return -1;
    }
    *out = w;
    return 0;
}

static int key_char_ok(char c) { return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '+'; }

/* extension: lower-case words of [a-z0-9_+-] joined by single dots */
static int ext_ok(const char *e) {
    if (!*e || *e == '.') return 0;
    for (const char *p = e; *p; p++) {
        char c = *p;
        if (c == '.') { if (p[1] == 0 || p[1] == '.') return 0; continue; }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '+')) return 0;
    }
    return 1;
}

static int cmp_member_ext(const void *a, const void *b) {
    const sd_shard_member *x = *(const sd_shard_member *const *)a, *y = *(const sd_shard_member *const *)b;
    return strcmp(x->ext, y->ext);
}

static int write_member(sd_shard_writer *w, const char *name, const void *data, size_t len) {
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, (la_int64_t)len);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0444);
    archive_entry_set_mtime(e, 0, 0);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    int rc = archive_write_header(w->a, e);
    archive_entry_free(e);
    if (rc != ARCHIVE_OK) return sd_set_error("%s: member %s: %s", w->af.path, name, archive_error_string(w->a));
    const unsigned char *p = data;
    size_t done = 0;
    while (done < len) {
        size_t chunk = len - done > (1u << 20) ? (1u << 20) : len - done;
        la_ssize_t n = archive_write_data(w->a, p + done, chunk);
        if (n <= 0) return sd_set_error("%s: member %s: %s", w->af.path, name, archive_error_string(w->a));
        done += (size_t)n;
    }
    w->info.members++;
    w->info.member_bytes += len;
    return 0;
}

int sd_shard_write_sample(sd_shard_writer *w, const char *key, int n, const sd_shard_member *m) {
    if (w->failed) return sd_set_error("%s: writer is in a failed state", w->af.path);
    char pk[96];
    size_t kl = strlen(key);
    if (kl == 0 || kl > 64 || key[0] == '_') return sd_set_error("%s: invalid sample key \"%s\"", w->af.path, printable(key, pk, sizeof pk));
    for (size_t i = 0; i < kl; i++)
        if (!key_char_ok(key[i])) return sd_set_error("%s: invalid sample key \"%s\"", w->af.path, printable(key, pk, sizeof pk));
    if (n < 1 || n > SD_SHARD_MAX_FILES) return sd_set_error("%s: sample %s: %d members (1..%d)", w->af.path, key, n, SD_SHARD_MAX_FILES);
    const sd_shard_member **order = sd_xmalloc(sizeof *order * (size_t)n);
    for (int i = 0; i < n; i++) {
        if (!m[i].ext || !ext_ok(m[i].ext) || kl + 1 + strlen(m[i].ext) > 100) {
            free(order);
            return sd_set_error("%s: sample %s: invalid member extension \"%s\"", w->af.path, key,
                                m[i].ext ? printable(m[i].ext, pk, sizeof pk) : "(null)");
        }
        if (m[i].len && !m[i].data) { free(order); return sd_set_error("%s: sample %s.%s: no data", w->af.path, key, m[i].ext); }
        order[i] = &m[i];
    }
    /* webdataset's TarWriter writes a sample's members in sorted key order */
    qsort(order, (size_t)n, sizeof *order, cmp_member_ext);
    for (int i = 1; i < n; i++)
        if (!strcmp(order[i]->ext, order[i - 1]->ext)) {
            int rc = sd_set_error("%s: sample %s: duplicate extension %s", w->af.path, key, order[i]->ext);
            free(order);
            return rc;
        }
    char name[128];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s.%s", key, order[i]->ext);
        if (write_member(w, name, order[i]->data, order[i]->len)) {
            w->failed = 1;
            free(order);
            return -1;
        }
    }
    free(order);
    if (w->info.samples == 0) snprintf(w->info.first_key, sizeof w->info.first_key, "%s", key);
    snprintf(w->info.last_key, sizeof w->info.last_key, "%s", key);
    w->info.samples++;
    return 0;
}

void sd_shard_writer_abort(sd_shard_writer *w) {
    if (!w) return;
    if (w->a) archive_write_free(w->a); /* may try to finish into the temp file: harmless */
    sd_atomic_abort(&w->af);
    free(w);
}

int sd_shard_writer_close(sd_shard_writer *w, sd_shard_info *info) {
    if (w->failed) {
        int rc = sd_set_error("%s: not finished: an earlier write failed", w->af.path);
        sd_shard_writer_abort(w);
        return rc;
    }
    /* archive_write_close writes the end-of-archive blocks and the padding */
    if (archive_write_close(w->a) != ARCHIVE_OK) {
        sd_set_error("%s: %s", w->af.path, archive_error_string(w->a));
        sd_shard_writer_abort(w);
        return -1;
    }
    archive_write_free(w->a);
    w->a = NULL;
    unsigned char d[32];
    sd_sha256_final(&w->sha, d);
    sd_sha256_hex(d, w->info.sha256);
    sd_shard_info done = w->info;
    int rc = sd_atomic_commit(&w->af);
    free(w);
    if (rc) return -1;
    if (info) *info = done;
    return 0;
}

/* ---- reader ------------------------------------------------------------- */

struct sd_shard_reader {
    struct archive *a;
    char *path;
    sd_shard_read_opts o;
    sd_shard_stats st;
    sd_shard_sample cur;
    sd_shard_file pending;
    char *pending_key;
    int has_pending;
    int done;          /* 1 after a clean end, -1 after an error */
    int64_t data_end;  /* uncompressed offset just past the last entry's data (512-padded) */
    char *last_name;   /* last entry read, for messages */
    int fd;            /* the raw file; we feed libarchive so that we can hash it */
    int own_fd;
    unsigned char *buf;
    sd_sha256 sha;
    uint64_t raw_bytes;
};

static void file_free(sd_shard_file *f) {
    free(f->name);
    free(f->ext);
    free(f->data);
    memset(f, 0, sizeof *f);
}

static void sample_clear(sd_shard_sample *s) {
    for (int i = 0; i < s->n; i++) file_free(&s->files[i]);
    free(s->files);
    free(s->key);
    memset(s, 0, sizeof *s);
}

static la_ssize_t reader_cb(struct archive *a, void *ud, const void **out) {
    sd_shard_reader *r = ud;
    ssize_t n;
    do n = read(r->fd, r->buf, 1 << 20);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        archive_set_error(a, errno, "read error: %s", strerror(errno));
        return -1;
    }
    if (r->o.hash) sd_sha256_update(&r->sha, r->buf, (size_t)n);
    r->raw_bytes += (uint64_t)n;
    *out = r->buf;
    return n;
}

int sd_shard_open(sd_shard_reader **out, const char *path, const sd_shard_read_opts *opts) {
    *out = NULL;
    sd_shard_reader *r = sd_xcalloc(1, sizeof *r);
    r->path = sd_xstrdup(path);
    r->fd = -1;
    if (opts) r->o = *opts;
    if (!r->o.max_member) r->o.max_member = SD_SHARD_MAX_MEMBER;
    if (!r->o.max_sample) r->o.max_sample = SD_SHARD_MAX_SAMPLE;
    sd_sha256_init(&r->sha);
    if (!strcmp(path, "-")) r->fd = 0;
    else {
        r->fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (r->fd < 0 || fstat(r->fd, &st) != 0) {
            sd_set_error("%s: %s", path, strerror(errno));
            sd_shard_close(r);
            return -1;
        }
        r->own_fd = 1;
        if (S_ISDIR(st.st_mode)) {
            sd_set_error("%s: is a directory, not a shard", path);
            sd_shard_close(r);
            return -1;
        }
    }
    r->buf = sd_xmalloc(1 << 20);
    r->a = archive_read_new();
    /* Only library-backed decompressors: support_filter_all would also
     * accept formats that libarchive decodes by running external programs,
     * and a libarchive built without a library falls back to its program
     * (returning ARCHIVE_WARN): such filters are left out. */
    int (*const filters[])(struct archive *) = {archive_read_support_filter_zstd, archive_read_support_filter_gzip,
                                                archive_read_support_filter_bzip2, archive_read_support_filter_xz};
    archive_read_support_filter_none(r->a);
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
        struct archive *probe = archive_read_new();
        int native = filters[i](probe) == ARCHIVE_OK;
        archive_read_free(probe);
        if (native) filters[i](r->a);
    }
    archive_read_support_format_tar(r->a);
    /* no skip callback: every byte passes through reader_cb and the hash */
    if (archive_read_open(r->a, r, NULL, reader_cb, NULL) != ARCHIVE_OK) {
        const char *m = archive_error_string(r->a);
        if (r->raw_bytes == 0) m = "empty file (not a tar)";
        sd_set_error("%s: %s", path, m ? m : "cannot open");
        sd_shard_close(r);
        return -1;
    }
    *out = r;
    return 0;
}

int sd_shard_sha256(sd_shard_reader *r, char hex[65], uint64_t *file_bytes) {
    if (r->done != 1 || !r->o.hash) return sd_set_error("%s: sha256 is only known after a clean end of a hashed read", r->path);
    /* libarchive stops after the end-of-archive blocks: hash the rest */
    for (;;) {
        ssize_t n = read(r->fd, r->buf, 1 << 20);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return sd_set_error("%s: read error: %s", r->path, strerror(errno));
        if (n == 0) break;
        sd_sha256_update(&r->sha, r->buf, (size_t)n);
        r->raw_bytes += (uint64_t)n;
    }
    sd_sha256 copy = r->sha;
    unsigned char d[32];
    sd_sha256_final(&copy, d);
    sd_sha256_hex(d, hex);
    if (file_bytes) *file_bytes = r->raw_bytes;
    return 0;
}

void sd_shard_close(sd_shard_reader *r) {
    if (!r) return;
    if (r->a) archive_read_free(r->a);
    if (r->own_fd && r->fd >= 0) close(r->fd);
    free(r->buf);
    sample_clear(&r->cur);
    file_free(&r->pending);
    free(r->pending_key);
    free(r->last_name);
    free(r->path);
    free(r);
}

void sd_shard_get_stats(const sd_shard_reader *r, sd_shard_stats *st) { *st = r->st; }

static int reader_fail(sd_shard_reader *r, const char *fmt, ...) SD_PRINTF(2, 3);
static int reader_fail(sd_shard_reader *r, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->done = -1;
    return sd_set_error("%s: %s", r->path, msg);
}

static const char *after_what(sd_shard_reader *r, char *buf, size_t cap) {
    if (!r->last_name) return "at the first entry";
    char pb[256];
    snprintf(buf, cap, "after member %s", printable(r->last_name, pb, sizeof pb));
    return buf;
}

/* Next regular member with a key: 1 = *f and *key filled, 0 = clean end, -1 = error. */
static int read_member(sd_shard_reader *r, sd_shard_file *f, char **key) {
    char where[320], pn[256];
    for (;;) {
        struct archive_entry *e;
        int rc = archive_read_next_header(r->a, &e);
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN && r->raw_bytes == 0) return reader_fail(r, "empty file (not a tar)");
        if (rc == ARCHIVE_EOF) {
            /* A tar ends with two zero blocks. A file cut exactly at a member
             * boundary reads like a shorter archive to libarchive (and to
             * Python's tarfile), so the end marker is required here: without
             * it, missing samples would go unnoticed. */
            if (archive_filter_bytes(r->a, 0) <= r->data_end)
                return reader_fail(r, "truncated archive: no end-of-archive marker %s", after_what(r, where, sizeof where));
            return 0;
        }
        if (rc < ARCHIVE_WARN) {
            const char *m = archive_error_string(r->a);
            return reader_fail(r, "truncated or corrupt archive %s: %s", after_what(r, where, sizeof where), m ? m : "read error");
        }
        r->st.entries++;
        if (r->st.entries == 1) {
            int nf = archive_filter_count(r->a);
            r->st.compressed = nf > 1;
            for (int i = 0; i < nf; i++) {
                int code = archive_filter_code(r->a, i);
                if (code == ARCHIVE_FILTER_ZSTD) r->st.zstd = 1;
                if (code != ARCHIVE_FILTER_NONE) r->st.compression = archive_filter_name(r->a, i);
            }
        }
        const char *name = archive_entry_pathname(e);
        if (!name) name = archive_entry_pathname_utf8(e);
        if (!name) return reader_fail(r, "entry %" PRIu64 " %s: unreadable member name", r->st.entries, after_what(r, where, sizeof where));
        size_t nl = strlen(name);
        if (nl == 0 || nl > SD_SHARD_MAX_NAME)
            return reader_fail(r, "entry %" PRIu64 " %s: member name of %zu bytes", r->st.entries, after_what(r, where, sizeof where), nl);
        free(r->last_name);
        r->last_name = sd_xstrdup(name);
        int64_t pos = archive_filter_bytes(r->a, 0);
        int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
        if (size < 0) return reader_fail(r, "member %s: negative size", printable(name, pn, sizeof pn));
        int regular = archive_entry_filetype(e) == AE_IFREG && !archive_entry_hardlink(e) && !archive_entry_symlink(e);
        if (!regular) {
            /* links have no data; other types' data (if any) is skipped by libarchive */
            r->data_end = pos;
            if (r->o.strict) return reader_fail(r, "member %s: not a regular file", printable(name, pn, sizeof pn));
            r->st.skipped_nonregular++;
            continue;
        }
        r->data_end = pos + ((size + 511) & ~(int64_t)511);
        size_t kl;
        const char *ext;
        int meta = sd_shard_is_meta_name(name);
        int haskey = !meta && sd_shard_split_name(name, &kl, &ext);
        if (meta || !haskey) {
            if (r->o.strict)
                return reader_fail(r, "member %s: %s", printable(name, pn, sizeof pn),
                                   meta ? "metadata name (__...__)" : "no KEY.EXT name (no dot in its last component)");
            if (meta) r->st.skipped_meta++;
            else r->st.skipped_nokey++;
            continue; /* libarchive skips the unread data */
        }
        if ((uint64_t)size > r->o.max_member)
            return reader_fail(r, "member %s: %" PRId64 " bytes exceeds the limit of %" PRIu64, printable(name, pn, sizeof pn), size,
                               r->o.max_member);
        unsigned char *buf = malloc((size_t)size + 1);
        if (!buf) return reader_fail(r, "member %s: cannot allocate %" PRId64 " bytes", printable(name, pn, sizeof pn), size);
        size_t got = 0;
        while (got < (size_t)size) {
            la_ssize_t n = archive_read_data(r->a, buf + got, (size_t)size - got);
            if (n < 0) {
                const char *m = archive_error_string(r->a);
                free(buf);
                return reader_fail(r, "member %s: truncated or corrupt data: %s", printable(name, pn, sizeof pn), m ? m : "read error");
            }
            if (n == 0) break;
            got += (size_t)n;
        }
        if (got != (size_t)size) {
            free(buf);
            return reader_fail(r, "member %s: truncated data (%zu of %" PRId64 " bytes)", printable(name, pn, sizeof pn), got, size);
        }
        buf[size] = 0;
        f->name = sd_xstrdup(name);
        f->ext = sd_xstrdup(ext);
        for (char *p = f->ext; *p; p++) *p = (char)tolower((unsigned char)*p);
        f->data = buf;
        f->len = (size_t)size;
        *key = strndup(name, kl);
        if (!*key) { file_free(f); return reader_fail(r, "out of memory"); }
        return 1;
    }
}

static int add_to_sample(sd_shard_reader *r, sd_shard_file *f, uint64_t *bytes) {
    sd_shard_sample *s = &r->cur;
    char pn[256];
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->files[i].ext, f->ext))
            return reader_fail(r, "member %s: duplicate extension \"%s\" in sample %s", printable(f->name, pn, sizeof pn), f->ext,
                               printable(s->key, pn + 128, 128));
    if (s->n >= SD_SHARD_MAX_FILES)
        return reader_fail(r, "member %s: sample has more than %d members", printable(f->name, pn, sizeof pn), SD_SHARD_MAX_FILES);
    *bytes += f->len;
    if (*bytes > r->o.max_sample)
        return reader_fail(r, "member %s: sample exceeds %" PRIu64 " bytes", printable(f->name, pn, sizeof pn), r->o.max_sample);
    if ((s->n & (s->n - 1)) == 0) s->files = sd_xrealloc(s->files, sizeof *s->files * (size_t)(s->n ? 2 * s->n : 1));
    s->files[s->n++] = *f;
    memset(f, 0, sizeof *f);
    return 0;
}

int sd_shard_next(sd_shard_reader *r, sd_shard_sample **out) {
    *out = NULL;
    sample_clear(&r->cur);
    if (r->done < 0) return sd_set_error("%s: reader already failed", r->path);
    if (r->done) return 0;
    if (!r->has_pending) {
        int rc = read_member(r, &r->pending, &r->pending_key);
        if (rc <= 0) {
            if (rc == 0) r->done = 1;
            return rc;
        }
        r->has_pending = 1;
    }
    r->cur.key = r->pending_key;
    r->pending_key = NULL;
    r->has_pending = 0;
    uint64_t bytes = 0;
    if (add_to_sample(r, &r->pending, &bytes)) { file_free(&r->pending); return -1; }
    for (;;) {
        sd_shard_file f = {0};
        char *key = NULL;
        int rc = read_member(r, &f, &key);
        if (rc < 0) return -1;
        if (rc == 0) { r->done = 1; break; }
        if (strcmp(key, r->cur.key) != 0) {
            r->pending = f;
            r->pending_key = key;
            r->has_pending = 1;
            break;
        }
        free(key);
        if (add_to_sample(r, &f, &bytes)) { file_free(&f); return -1; }
    }
    r->st.samples++;
    r->st.members += (uint64_t)r->cur.n;
    r->st.member_bytes += bytes;
    *out = &r->cur;
    return 1;
}

const sd_shard_file *sd_shard_find(const sd_shard_sample *s, const char *ext) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->files[i].ext, ext)) return &s->files[i];
    return NULL;
}

int sd_shard_scan(const char *path, sd_shard_info *info) {
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", sd_path_basename(path));
    sd_shard_reader *r;
    sd_shard_read_opts o = {.hash = 1};
    if (sd_shard_open(&r, path, &o)) return -1;
    sd_shard_sample *s;
    int rc;
    while ((rc = sd_shard_next(r, &s)) == 1) {
        if (info->samples == 0) snprintf(info->first_key, sizeof info->first_key, "%s", s->key);
        snprintf(info->last_key, sizeof info->last_key, "%s", s->key);
        info->samples++;
    }
    if (rc == 0) rc = sd_shard_sha256(r, info->sha256, &info->bytes);
    info->members = r->st.members;
    info->member_bytes = r->st.member_bytes;
    info->zstd = r->st.zstd;
    sd_shard_close(r);
    return rc;
}

/* ---- member conventions -------------------------------------------------- */

char *sd_prep_meta_to_json(const sd_prep_meta *m) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "index", (double)m->index);
    cJSON_AddStringToObject(j, "source", m->source ? m->source : "");
    cJSON_AddNumberToObject(j, "original_width", m->original_width);
    cJSON_AddNumberToObject(j, "original_height", m->original_height);
    cJSON_AddNumberToObject(j, "resized_width", m->resized_width);
    cJSON_AddNumberToObject(j, "resized_height", m->resized_height);
    cJSON_AddItemToObject(j, "crop_ltrb", cJSON_CreateIntArray(m->crop_ltrb, 4));
    cJSON_AddBoolToObject(j, "random_flip", m->random_flip);
    cJSON *caps = cJSON_AddArrayToObject(j, "captions");
    for (int i = 0; i < m->ncaptions; i++) cJSON_AddItemToArray(caps, cJSON_CreateString(m->captions[i]));
    char *s = sd_json_compact(j);
    cJSON_Delete(j);
    return s;
}

void sd_prep_meta_free(sd_prep_meta *m) {
    free(m->source);
    for (int i = 0; i < m->ncaptions; i++) free(m->captions[i]);
    free(m->captions);
    memset(m, 0, sizeof *m);
}

static int get_uint(const cJSON *j, const char *key, double max, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > max || v->valuedouble != (double)(int64_t)v->valuedouble)
        return -1;
    *out = v->valuedouble;
    return 0;
}

int sd_prep_meta_from_json(const char *text, size_t len, const char *where, sd_prep_meta *m) {
    memset(m, 0, sizeof *m);
    cJSON *j;
    if (sd_json_parse(text, len, where, &j)) return -1;
    int rc = -1;
    double v[5];
    if (!cJSON_IsObject(j)) { sd_set_error("%s: not a JSON object", where); goto out; }
    static const char *ints[] = {"original_width", "original_height", "resized_width", "resized_height"};
    if (get_uint(j, "index", 9007199254740992.0, &v[4])) { sd_set_error("%s: \"index\" missing or not a non-negative integer", where); goto out; }
    for (int i = 0; i < 4; i++)
        if (get_uint(j, ints[i], 1 << 30, &v[i])) { sd_set_error("%s: \"%s\" missing or not a non-negative integer", where, ints[i]); goto out; }
    m->index = (uint64_t)v[4];
    m->original_width = (int)v[0];
    m->original_height = (int)v[1];
    m->resized_width = (int)v[2];
    m->resized_height = (int)v[3];
    const char *src = sd_json_str(j, "source", NULL);
    if (!src) { sd_set_error("%s: \"source\" missing or not a string", where); goto out; }
    m->source = sd_xstrdup(src);
    if (sd_json_int_array(j, "crop_ltrb", m->crop_ltrb, 4) != 4 || m->crop_ltrb[0] < 0 || m->crop_ltrb[1] < 0 ||
        m->crop_ltrb[2] <= m->crop_ltrb[0] || m->crop_ltrb[3] <= m->crop_ltrb[1] || m->crop_ltrb[2] > m->resized_width ||
        m->crop_ltrb[3] > m->resized_height) {
        sd_set_error("%s: \"crop_ltrb\" must be 4 integers [left, top, right, bottom] inside the resized image", where);
        goto out;
    }
    const cJSON *flip = cJSON_GetObjectItemCaseSensitive(j, "random_flip");
    if (!cJSON_IsBool(flip)) { sd_set_error("%s: \"random_flip\" missing or not a boolean", where); goto out; }
    m->random_flip = cJSON_IsTrue(flip);
    const cJSON *caps = cJSON_GetObjectItemCaseSensitive(j, "captions");
    int nc = cJSON_IsArray(caps) ? cJSON_GetArraySize(caps) : -1;
    if (nc < 1) { sd_set_error("%s: \"captions\" must be a non-empty list of strings", where); goto out; }
    m->captions = sd_xcalloc((size_t)nc, sizeof(char *));
    const cJSON *c;
    cJSON_ArrayForEach(c, caps) {
        if (!cJSON_IsString(c) || !sd_utf8_valid(c->valuestring, strlen(c->valuestring))) {
            sd_set_error("%s: caption %d is not a UTF-8 string", where, m->ncaptions);
            goto out;
        }
        m->captions[m->ncaptions++] = sd_xstrdup(c->valuestring);
    }
    rc = 0;
out:
    cJSON_Delete(j);
    if (rc) sd_prep_meta_free(m);
    return rc;
}

int sd_tokens_pack(const int32_t *ids, int ncap, const char *tokenizer_fp, unsigned char **buf, size_t *len) {
    if (ncap < 1) return sd_set_error("tokens: need at least one caption");
    sd_st_writer *w = sd_st_writer_new();
    int64_t shape[2] = {ncap, SD_TOKENS_LEN};
    int rc = sd_st_writer_add(w, SD_T_INPUT_IDS, SD_I32, 2, shape, ids);
    if (!rc && tokenizer_fp) rc = sd_st_writer_meta(w, SD_META_TOKENIZER, tokenizer_fp);
    if (!rc) rc = sd_st_writer_to_memory(w, buf, len);
    sd_st_writer_free(w);
    return rc;
}

int sd_tokens_unpack(const void *buf, size_t len, const char *where, int32_t **ids, int *ncap, char **fp) {
    *ids = NULL;
    *ncap = 0;
    if (fp) *fp = NULL;
    sd_st_file *f;
    if (sd_st_open_memory(buf, len, where, &f)) return -1;
    const sd_st_tensor *t = sd_st_find(f, SD_T_INPUT_IDS);
    int rc = 0;
    if (!t) rc = sd_set_error("%s: no tensor \"%s\"", where, SD_T_INPUT_IDS);
    else if (t->dtype != SD_I32 || t->ndim != 2 || t->shape[1] != SD_TOKENS_LEN || t->shape[0] < 1 || t->shape[0] > 100000)
        rc = sd_set_error("%s: \"%s\" must be I32 [n_captions, %d]", where, SD_T_INPUT_IDS, SD_TOKENS_LEN);
    if (!rc) {
        *ncap = (int)t->shape[0];
        *ids = sd_xmalloc((size_t)t->numel * sizeof(int32_t));
        sd_st_read_raw(f, t, *ids);
        const char *m = sd_st_meta(f, SD_META_TOKENIZER);
        if (fp && m) *fp = sd_xstrdup(m);
    }
    sd_st_close(f);
    return rc;
}
