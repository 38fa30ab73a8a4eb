/* tar_index.c — header-only scan of uncompressed tars (see tar_index.h). */
#define _GNU_SOURCE
#include "io/tar_index.h"
#include "core/error.h"
#include "io/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_full(int fd, void *buf, size_t n, uint64_t off) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0) { if (errno == EINTR) continue; return -1; }
        if (r == 0) return 1; /* EOF */
        got += (size_t)r;
    }
    return 0;
}

/* Octal (or GNU base-256) numeric field. */
static int parse_num(const unsigned char *f, int len, uint64_t *out) {
    if (f[0] & 0x80) { /* base-256 */
        uint64_t v = f[0] & 0x7f;
        for (int i = 1; i < len; i++) {
            if (v >> 55) return -1;
            v = (v << 8) | f[i];
        }
        *out = v;
        return 0;
    }
    uint64_t v = 0;
    int i = 0, any = 0;
    while (i < len && (f[i] == ' ' || f[i] == 0)) { if (f[i] == 0 && any) break; i++; }
    for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
        if (v >> 60) return -1;
        v = v * 8 + (uint64_t)(f[i] - '0');
        any = 1;
    }
    for (; i < len; i++) if (f[i] != ' ' && f[i] != 0) return -1;
    *out = v;
    return 0;
}

static int checksum_ok(const unsigned char *h) {
    uint64_t want;
    if (parse_num(h + 148, 8, &want)) return 0;
    uint64_t s = 0;
    for (int i = 0; i < 512; i++) s += (i >= 148 && i < 156) ? ' ' : h[i];
    return s == want;
}

static int is_zero_block(const unsigned char *h) {
    for (int i = 0; i < 512; i++) if (h[i]) return 0;
    return 1;
}

/* pax "LEN path=VALUE\n" records: return the path if present (malloc'ed). */
static char *pax_path(const char *d, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t len = 0, j = i;
        while (j < n && d[j] >= '0' && d[j] <= '9') len = len * 10 + (size_t)(d[j++] - '0');
        if (j >= n || d[j] != ' ' || len == 0 || i + len > n) return NULL;
        const char *kv = d + j + 1;
        size_t kvlen = i + len - (j + 1);
        if (kvlen > 5 && !memcmp(kv, "path=", 5) && kv[kvlen - 1] == '\n') {
            char *p = sd_xmalloc(kvlen - 5);
            memcpy(p, kv + 5, kvlen - 6);
            p[kvlen - 6] = 0;
            return p;
        }
        i += len;
    }
    return NULL;
}

static int index_one(sd_tar_index *idx, int shard, int64_t *cap) {
    const char *path = idx->paths[shard];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return sd_set_error("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return sd_set_error("%s: %s", path, strerror(errno)); }
    uint64_t fsize = (uint64_t)st.st_size, off = 0;
    unsigned char h[512];
    char *long_name = NULL;
    int rc = 0, ended = 0;
    char cur_key[32] = "";
    int64_t cur = -1;
    for (;;) {
        int r = read_full(fd, h, 512, off);
        if (r < 0) { rc = sd_set_error("%s: read error at byte %llu: %s", path, (unsigned long long)off, strerror(errno)); break; }
        if (r > 0) { rc = sd_set_error("%s: truncated archive: no end-of-archive blocks", path); break; }
        if (off == 0 && ((h[0] == 0x28 && h[1] == 0xb5 && h[2] == 0x2f && h[3] == 0xfd) || (h[0] == 0x1f && h[1] == 0x8b) ||
                         (h[0] == 'B' && h[1] == 'Z' && h[2] == 'h') || (h[0] == 0xfd && h[1] == '7' && h[2] == 'z'))) {
            rc = sd_set_error("%s: compressed shard: random access needs an uncompressed .tar (decompress it, or have sdencode write plain .tar)", path);
            break;
        }
        if (is_zero_block(h)) { ended = 1; break; }
        if (!checksum_ok(h)) { rc = sd_set_error("%s: damaged tar header at byte %llu (checksum)", path, (unsigned long long)off); break; }
        uint64_t size;
        if (parse_num(h + 124, 12, &size)) { rc = sd_set_error("%s: damaged tar header at byte %llu (size)", path, (unsigned long long)off); break; }
        uint64_t data = off + 512, padded = (size + 511) & ~(uint64_t)511;
        if (data + size > fsize) { rc = sd_set_error("%s: truncated archive: member at byte %llu ends past the end of the file", path, (unsigned long long)off); break; }
        char type = (char)h[156];
        if (type == 'L' || type == 'x') { /* next entry's name */
            if (size > SD_SHARD_MAX_NAME + 512) { rc = sd_set_error("%s: oversized long-name record", path); break; }
            char *buf = sd_xmalloc((size_t)size + 1);
            if (read_full(fd, buf, (size_t)size, data)) { free(buf); rc = sd_set_error("%s: read error", path); break; }
            buf[size] = 0;
            free(long_name);
            long_name = type == 'L' ? buf : pax_path(buf, (size_t)size);
            if (type == 'x') free(buf);
            off = data + padded;
            continue;
        }
        char name[SD_SHARD_MAX_NAME + 256];
        if (long_name) {
            snprintf(name, sizeof name, "%s", long_name);
            free(long_name);
            long_name = NULL;
        } else {
            char n1[101], pre[156];
            memcpy(n1, h, 100); n1[100] = 0;
            memcpy(pre, h + 345, 155); pre[155] = 0;
            if (pre[0] && !memcmp(h + 257, "ustar", 5)) snprintf(name, sizeof name, "%s/%s", pre, n1);
            else snprintf(name, sizeof name, "%s", n1);
        }
        off = data + padded;
        if (type != '0' && type != '\0') continue; /* directories, links, 'g' ... */
        size_t klen;
        const char *ext;
        if (sd_shard_is_meta_name(name) || !sd_shard_split_name(name, &klen, &ext)) continue;
        if (klen >= sizeof cur_key) { rc = sd_set_error("%s: member %s: key too long for training shards", path, name); break; }
        if (cur < 0 || strlen(cur_key) != klen || memcmp(cur_key, name, klen)) {
            if (idx->n == *cap) {
                *cap = *cap ? 2 * *cap : 1024;
                idx->samples = sd_xrealloc(idx->samples, sizeof(sd_tar_sample) * (size_t)*cap);
            }
            cur = idx->n++;
            memset(&idx->samples[cur], 0, sizeof(sd_tar_sample));
            memcpy(cur_key, name, klen);
            cur_key[klen] = 0;
            memcpy(idx->samples[cur].key, cur_key, klen + 1);
            idx->samples[cur].shard = shard;
        }
        sd_tar_sample *s = &idx->samples[cur];
        if (strlen(ext) >= sizeof s->m[0].ext) continue; /* not a member training reads */
        for (int k = 0; k < s->nmembers; k++)
            if (!strcasecmp(s->m[k].ext, ext)) { rc = sd_set_error("%s: sample %s: duplicate member .%s", path, s->key, ext); goto done; }
        if (s->nmembers == SD_TAR_INDEX_MAX_MEMBERS) continue;
        sd_tar_member *m = &s->m[s->nmembers++];
        size_t el = strlen(ext);
        for (size_t k = 0; k <= el; k++) m->ext[k] = (char)((ext[k] >= 'A' && ext[k] <= 'Z') ? ext[k] + 32 : ext[k]);
        m->offset = data;
        m->size = size;
    }
done:
    free(long_name);
    close(fd);
    if (rc == 0 && !ended) rc = sd_set_error("%s: truncated archive", path);
    return rc;
}

int sd_tar_index_build(char *const *paths, int npaths, sd_tar_index *idx) {
    memset(idx, 0, sizeof *idx);
    idx->paths = sd_xmalloc(sizeof(char *) * (size_t)(npaths ? npaths : 1));
    for (int i = 0; i < npaths; i++) idx->paths[i] = sd_xstrdup(paths[i]);
    idx->npaths = npaths;
    int64_t cap = 0;
    for (int i = 0; i < npaths; i++)
        if (index_one(idx, i, &cap)) { sd_tar_index_free(idx); return -1; }
    return 0;
}

void sd_tar_index_free(sd_tar_index *idx) {
    for (int i = 0; i < idx->npaths; i++) free(idx->paths[i]);
    free(idx->paths);
    free(idx->samples);
    memset(idx, 0, sizeof *idx);
}

const sd_tar_member *sd_tar_index_member(const sd_tar_index *idx, int64_t i, const char *ext) {
    if (i < 0 || i >= idx->n) return NULL;
    const sd_tar_sample *s = &idx->samples[i];
    for (int k = 0; k < s->nmembers; k++)
        if (!strcmp(s->m[k].ext, ext)) return &s->m[k];
    return NULL;
}

int sd_tar_index_read(const sd_tar_index *idx, int64_t i, const char *ext, unsigned char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    const sd_tar_member *m = sd_tar_index_member(idx, i, ext);
    if (!m) return sd_set_error("sample %lld: no .%s member", (long long)i, ext);
    const char *path = idx->paths[idx->samples[i].shard];
    if (m->size > SD_SHARD_MAX_MEMBER) return sd_set_error("%s: sample %s: .%s member too large", path, idx->samples[i].key, ext);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return sd_set_error("%s: %s", path, strerror(errno));
    unsigned char *b = sd_xmalloc((size_t)m->size + 1);
    int r = read_full(fd, b, (size_t)m->size, m->offset);
    close(fd);
    if (r) {
        free(b);
        return sd_set_error("%s: sample %s: cannot read .%s (file changed or truncated since indexing)", path,
                            idx->samples[i].key, ext);
    }
    b[m->size] = 0;
    *buf = b;
    *len = (size_t)m->size;
    return 0;
}
