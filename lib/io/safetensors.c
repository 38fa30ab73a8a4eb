/* safetensors.c — validated reader and atomic writer.
 *
 * The header parser is a strict, purpose-built JSON reader (not a general JSON
 * library): integers are parsed exactly as uint64 with overflow checks,
 * duplicate keys are detected at every level, strings are checked for UTF-8
 * and control characters, and nothing after the top-level object but
 * whitespace is allowed. Rules: formats/safetensors.md.
 */
#define _GNU_SOURCE
#include "io/safetensors.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- strict JSON header parser ------------------------------------------ */

typedef struct {
    const char *s;
    size_t n, i;
    const char *path;
} jp;

static int jerr(jp *p, const char *what) {
    return sd_set_error("%s: invalid safetensors header: %s at byte %zu of the header", p->path, what, p->i);
}

static void ws(jp *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int expect(jp *p, char c) {
    ws(p);
    if (p->i >= p->n || p->s[p->i] != c) {
        char msg[32];
        snprintf(msg, sizeof msg, "expected '%c'", c);
        return jerr(p, msg);
    }
    p->i++;
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void put_utf8(char *out, size_t *k, uint32_t cp) {
    if (cp < 0x80) out[(*k)++] = (char)cp;
    else if (cp < 0x800) { out[(*k)++] = (char)(0xc0 | (cp >> 6)); out[(*k)++] = (char)(0x80 | (cp & 0x3f)); }
    else if (cp < 0x10000) {
        out[(*k)++] = (char)(0xe0 | (cp >> 12)); out[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*k)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        out[(*k)++] = (char)(0xf0 | (cp >> 18)); out[(*k)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f)); out[(*k)++] = (char)(0x80 | (cp & 0x3f));
    }
}

/* Parse a JSON string; *out is malloc'ed (NUL-terminated; embedded NUL from
 * \u0000 is rejected since names are C strings). */
static int jstring(jp *p, char **out) {
    *out = NULL;
    ws(p);
    if (p->i >= p->n || p->s[p->i] != '"') return jerr(p, "expected a string");
    p->i++;
    size_t start = p->i, cap = 16;
    /* output is never longer than the input span */
    size_t end = start;
    while (end < p->n && p->s[end] != '"') end += (p->s[end] == '\\') ? 2 : 1;
    if (end >= p->n) return jerr(p, "unterminated string");
    cap = end - start + 1;
    char *buf = sd_xmalloc(cap);
    size_t k = 0;
    while (p->i < p->n && p->s[p->i] != '"') {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c < 0x20) { free(buf); return jerr(p, "control character in string"); }
        if (c != '\\') { buf[k++] = (char)c; p->i++; continue; }
        p->i++;
        if (p->i >= p->n) { free(buf); return jerr(p, "bad escape"); }
        char e = p->s[p->i++];
        switch (e) {
        case '"': buf[k++] = '"'; break;
        case '\\': buf[k++] = '\\'; break;
        case '/': buf[k++] = '/'; break;
        case 'b': buf[k++] = '\b'; break;
        case 'f': buf[k++] = '\f'; break;
        case 'n': buf[k++] = '\n'; break;
        case 'r': buf[k++] = '\r'; break;
        case 't': buf[k++] = '\t'; break;
        case 'u': {
            uint32_t cp = 0;
            for (int j = 0; j < 4; j++) {
                int h = p->i < p->n ? hexval(p->s[p->i]) : -1;
                if (h < 0) { free(buf); return jerr(p, "bad \\u escape"); }
                cp = cp * 16 + (uint32_t)h;
                p->i++;
            }
            if (cp >= 0xd800 && cp <= 0xdbff) { /* surrogate pair */
                uint32_t lo = 0;
                if (p->i + 6 > p->n || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') { free(buf); return jerr(p, "lone surrogate"); }
                p->i += 2;
                for (int j = 0; j < 4; j++) {
                    int h = hexval(p->s[p->i]);
                    if (h < 0) { free(buf); return jerr(p, "bad \\u escape"); }
                    lo = lo * 16 + (uint32_t)h;
                    p->i++;
                }
                if (lo < 0xdc00 || lo > 0xdfff) { free(buf); return jerr(p, "lone surrogate"); }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) { free(buf); return jerr(p, "lone surrogate"); }
            if (cp == 0) { free(buf); return jerr(p, "NUL character in string"); }
            /* an escape is 6+ input bytes, its UTF-8 at most 4: fits in cap */
            put_utf8(buf, &k, cp);
            break;
        }
        default: free(buf); return jerr(p, "bad escape");
        }
    }
    p->i++; /* closing quote */
    buf[k] = 0;
    *out = buf;
    return 0;
}

/* Non-negative integer: digits only, no leading zeros (except "0"), <= UINT64_MAX. */
static int juint(jp *p, uint64_t *out) {
    ws(p);
    size_t st = p->i;
    if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') {
        if (p->i < p->n && p->s[p->i] == '-') return jerr(p, "negative number");
        return jerr(p, "expected a non-negative integer");
    }
    uint64_t v = 0;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        unsigned d = (unsigned)(p->s[p->i] - '0');
        if (v > (UINT64_MAX - d) / 10) return jerr(p, "integer overflow");
        v = v * 10 + d;
        p->i++;
    }
    if (p->s[st] == '0' && p->i - st > 1) return jerr(p, "leading zero in integer");
    if (p->i < p->n && (p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E'))
        return jerr(p, "expected an integer, found a fraction or exponent");
    *out = v;
    return 0;
}

/* Skip any JSON value (for unknown fields), with a nesting limit. */
static int jskip(jp *p, int depth) {
    if (depth > 64) return jerr(p, "nesting too deep");
    ws(p);
    if (p->i >= p->n) return jerr(p, "unexpected end");
    char c = p->s[p->i];
    if (c == '"') { char *s; if (jstring(p, &s)) return -1; free(s); return 0; }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        p->i++;
        ws(p);
        if (p->i < p->n && p->s[p->i] == close) { p->i++; return 0; }
        for (;;) {
            if (c == '{') {
                char *k;
                if (jstring(p, &k)) return -1;
                free(k);
                if (expect(p, ':')) return -1;
            }
            if (jskip(p, depth + 1)) return -1;
            ws(p);
            if (p->i < p->n && p->s[p->i] == ',') { p->i++; continue; }
            if (p->i < p->n && p->s[p->i] == close) { p->i++; return 0; }
            return jerr(p, "expected ',' or end of container");
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        size_t st = p->i;
        if (p->s[p->i] == '-') p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return jerr(p, "bad number");
        while (p->i < p->n && strchr("0123456789.eE+-", p->s[p->i])) p->i++;
        (void)st;
        return 0;
    }
    static const char *lits[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(lits[k]);
        if (p->n - p->i >= l && memcmp(p->s + p->i, lits[k], l) == 0) { p->i += l; return 0; }
    }
    return jerr(p, "unexpected character");
}

/* ---- file model --------------------------------------------------------- */

static void free_contents(sd_st_file *f) {
    for (int i = 0; i < f->ntensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->by_name);
    for (int i = 0; i < f->nmeta; i++) { free(f->meta_keys[i]); free(f->meta_vals[i]); }
    free(f->meta_keys);
    free(f->meta_vals);
}

void sd_st_close(sd_st_file *f) {
    if (!f) return;
    free_contents(f);
    if (f->mapped && f->bytes) munmap((void *)f->bytes, f->size);
    free(f->path);
    free(f);
}

static int cmp_name_idx(const void *a, const void *b, void *ctx) {
    const sd_st_file *f = ctx;
    return strcmp(f->tensors[*(const int *)a].name, f->tensors[*(const int *)b].name);
}
static int cmp_offset_idx(const void *a, const void *b, void *ctx) {
    const sd_st_file *f = ctx;
    const sd_st_tensor *x = &f->tensors[*(const int *)a], *y = &f->tensors[*(const int *)b];
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int parse_metadata(jp *p, sd_st_file *f) {
    if (expect(p, '{')) return -1;
    ws(p);
    if (p->i < p->n && p->s[p->i] == '}') { p->i++; return 0; }
    int cap = 0;
    for (;;) {
        char *k, *v;
        if (jstring(p, &k)) return -1;
        if (expect(p, ':')) { free(k); return -1; }
        ws(p);
        if (p->i >= p->n || p->s[p->i] != '"') {
            sd_set_error("%s: invalid safetensors header: __metadata__ value of \"%s\" is not a string", p->path, k);
            free(k);
            return -1;
        }
        if (jstring(p, &v)) { free(k); return -1; }
        for (int i = 0; i < f->nmeta; i++)
            if (!strcmp(f->meta_keys[i], k)) {
                sd_set_error("%s: invalid safetensors header: duplicate __metadata__ key \"%s\"", p->path, k);
                free(k); free(v);
                return -1;
            }
        if (f->nmeta == cap) {
            cap = cap ? cap * 2 : 8;
            f->meta_keys = sd_xrealloc(f->meta_keys, sizeof(char *) * (size_t)cap);
            f->meta_vals = sd_xrealloc(f->meta_vals, sizeof(char *) * (size_t)cap);
        }
        f->meta_keys[f->nmeta] = k;
        f->meta_vals[f->nmeta] = v;
        f->nmeta++;
        ws(p);
        if (p->i < p->n && p->s[p->i] == ',') { p->i++; continue; }
        if (p->i < p->n && p->s[p->i] == '}') { p->i++; return 0; }
        return jerr(p, "expected ',' or '}' in __metadata__");
    }
}

static int parse_tensor_info(jp *p, sd_st_tensor *t) {
    int have_dtype = 0, have_shape = 0, have_off = 0;
    if (expect(p, '{')) return -1;
    ws(p);
    if (p->i < p->n && p->s[p->i] == '}') { p->i++; goto check; }
    for (;;) {
        char *k;
        if (jstring(p, &k)) return -1;
        if (expect(p, ':')) { free(k); return -1; }
        if (!strcmp(k, "dtype")) {
            if (have_dtype++) { free(k); return jerr(p, "duplicate key \"dtype\""); }
            char *d;
            if (jstring(p, &d)) { free(k); return -1; }
            t->dtype = sd_dtype_from_name(d, strlen(d));
            if (t->dtype == SD_DTYPE_INVALID) {
                sd_set_error("%s: tensor \"%s\": unknown dtype \"%s\"", p->path, t->name, d);
                free(d); free(k);
                return -1;
            }
            free(d);
        } else if (!strcmp(k, "shape")) {
            if (have_shape++) { free(k); return jerr(p, "duplicate key \"shape\""); }
            if (expect(p, '[')) { free(k); return -1; }
            ws(p);
            t->ndim = 0;
            if (p->i < p->n && p->s[p->i] == ']') p->i++;
            else for (;;) {
                uint64_t d;
                if (juint(p, &d)) { free(k); return -1; }
                if (t->ndim >= SD_MAX_DIMS) {
                    sd_set_error("%s: tensor \"%s\": more than %d dimensions", p->path, t->name, SD_MAX_DIMS);
                    free(k);
                    return -1;
                }
                if (d > (uint64_t)INT64_MAX) { free(k); return jerr(p, "dimension too large"); }
                t->shape[t->ndim++] = (int64_t)d;
                ws(p);
                if (p->i < p->n && p->s[p->i] == ',') { p->i++; continue; }
                if (p->i < p->n && p->s[p->i] == ']') { p->i++; break; }
                free(k);
                return jerr(p, "expected ',' or ']' in shape");
            }
        } else if (!strcmp(k, "data_offsets")) {
            if (have_off++) { free(k); return jerr(p, "duplicate key \"data_offsets\""); }
            if (expect(p, '[') || juint(p, &t->begin) || expect(p, ',') || juint(p, &t->end) || expect(p, ']')) {
                free(k);
                return -1;
            }
        } else {
            /* unknown fields are ignored, as the reference (serde) does */
            if (jskip(p, 0)) { free(k); return -1; }
        }
        free(k);
        ws(p);
        if (p->i < p->n && p->s[p->i] == ',') { p->i++; continue; }
        if (p->i < p->n && p->s[p->i] == '}') { p->i++; break; }
        return jerr(p, "expected ',' or '}' in tensor info");
    }
check:
    if (!have_dtype || !have_shape || !have_off)
        return sd_set_error("%s: tensor \"%s\": missing %s", p->path, t->name,
                            !have_dtype ? "\"dtype\"" : !have_shape ? "\"shape\"" : "\"data_offsets\"");
    return 0;
}

static int parse_header(sd_st_file *f, const char *hdr, size_t n) {
    jp p = {hdr, n, 0, f->path};
    size_t bad;
    if (!sd_utf8_check(hdr, n, &bad))
        return sd_set_error("%s: invalid safetensors header: not UTF-8 at byte %zu", f->path, bad);
    if (n == 0 || hdr[0] != '{') return sd_set_error("%s: invalid safetensors header: does not start with '{'", f->path);
    if (expect(&p, '{')) return -1;
    int cap = 0, have_meta = 0;
    ws(&p);
    if (p.i < p.n && p.s[p.i] == '}') p.i++;
    else for (;;) {
        char *k;
        if (jstring(&p, &k)) return -1;
        if (expect(&p, ':')) { free(k); return -1; }
        if (!strcmp(k, "__metadata__")) {
            free(k);
            if (have_meta++) return sd_set_error("%s: invalid safetensors header: duplicate \"__metadata__\"", f->path);
            if (parse_metadata(&p, f)) return -1;
        } else {
            if (f->ntensors == cap) {
                cap = cap ? cap * 2 : 64;
                f->tensors = sd_xrealloc(f->tensors, sizeof(sd_st_tensor) * (size_t)cap);
            }
            sd_st_tensor *t = &f->tensors[f->ntensors++];
            memset(t, 0, sizeof *t);
            t->name = k;
            if (parse_tensor_info(&p, t)) return -1;
        }
        ws(&p);
        if (p.i < p.n && p.s[p.i] == ',') { p.i++; continue; }
        if (p.i < p.n && p.s[p.i] == '}') { p.i++; break; }
        return jerr(&p, "expected ',' or '}'");
    }
    ws(&p);
    if (p.i != p.n) return jerr(&p, "trailing bytes after the header object");
    return 0;
}

static int validate(sd_st_file *f) {
    int n = f->ntensors;
    f->by_name = sd_xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    int *by_off = sd_xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) f->by_name[i] = by_off[i] = i;
    qsort_r(f->by_name, (size_t)n, sizeof(int), cmp_name_idx, f);
    for (int i = 1; i < n; i++)
        if (!strcmp(f->tensors[f->by_name[i]].name, f->tensors[f->by_name[i - 1]].name)) {
            free(by_off);
            return sd_set_error("%s: duplicate tensor name \"%s\"", f->path, f->tensors[f->by_name[i]].name);
        }
    for (int i = 0; i < n; i++) {
        sd_st_tensor *t = &f->tensors[i];
        uint64_t nbytes;
        char sh[256];
        if (t->end < t->begin) {
            free(by_off);
            return sd_set_error("%s: tensor \"%s\": data_offsets [%llu, %llu] end before begin", f->path, t->name,
                                (unsigned long long)t->begin, (unsigned long long)t->end);
        }
        if (sd_shape_numel(t->ndim, t->shape, &t->numel) || sd_dtype_nbytes(t->dtype, t->numel, &nbytes)) {
            free(by_off);
            return sd_error_prefix("%s: tensor \"%s\" shape %s", f->path, t->name, sd_shape_str(t->ndim, t->shape, sh, sizeof sh));
        }
        if (nbytes != t->end - t->begin) {
            free(by_off);
            return sd_set_error("%s: tensor \"%s\": %s %s needs %llu bytes but data_offsets [%llu, %llu] span %llu",
                                f->path, t->name, sd_dtype_name(t->dtype), sd_shape_str(t->ndim, t->shape, sh, sizeof sh),
                                (unsigned long long)nbytes, (unsigned long long)t->begin, (unsigned long long)t->end,
                                (unsigned long long)(t->end - t->begin));
        }
        if (t->end > f->data_len) {
            free(by_off);
            return sd_set_error("%s: tensor \"%s\": data_offsets end %llu is past the end of the data (%llu bytes)",
                                f->path, t->name, (unsigned long long)t->end, (unsigned long long)f->data_len);
        }
    }
    qsort_r(by_off, (size_t)n, sizeof(int), cmp_offset_idx, f);
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        sd_st_tensor *t = &f->tensors[by_off[i]];
        if (t->begin != pos) {
            int rc = sd_set_error("%s: tensor \"%s\": data begins at %llu, expected %llu (%s)", f->path, t->name,
                                  (unsigned long long)t->begin, (unsigned long long)pos,
                                  t->begin > pos ? "gap between tensors" : "overlaps the previous tensor");
            free(by_off);
            return rc;
        }
        pos = t->end;
    }
    free(by_off);
    if (pos != f->data_len)
        return sd_set_error("%s: tensors cover %llu bytes of data but the file has %llu after the header", f->path,
                            (unsigned long long)pos, (unsigned long long)f->data_len);
    return 0;
}

static int open_common(sd_st_file *f) {
    if (f->size < 8) return sd_set_error("%s: not a safetensors file: %llu bytes, shorter than the 8-byte header size",
                                         f->path, (unsigned long long)f->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->bytes[i];
    if (n > SD_ST_MAX_HEADER)
        return sd_set_error("%s: header size %llu exceeds the limit of %llu bytes", f->path, (unsigned long long)n,
                            SD_ST_MAX_HEADER);
    if (n > f->size - 8)
        return sd_set_error("%s: header size %llu is larger than the file (%llu bytes)", f->path, (unsigned long long)n,
                            (unsigned long long)f->size);
    f->header_len = n;
    f->data = f->bytes + 8 + n;
    f->data_len = f->size - 8 - n;
    if (parse_header(f, (const char *)f->bytes + 8, (size_t)n)) return -1;
    return validate(f);
}

int sd_st_open_memory(const void *buf, size_t len, const char *name, sd_st_file **out) {
    sd_st_file *f = sd_xcalloc(1, sizeof *f);
    f->path = sd_xstrdup(name ? name : "<memory>");
    f->bytes = buf;
    f->size = len;
    *out = NULL;
    if (open_common(f)) { sd_st_close(f); return -1; }
    *out = f;
    return 0;
}

int sd_st_open(const char *path, sd_st_file **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return sd_set_error("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return sd_set_error("%s: %s", path, strerror(errno)); }
    if (!S_ISREG(st.st_mode)) { close(fd); return sd_set_error("%s: not a regular file", path); }
    sd_st_file *f = sd_xcalloc(1, sizeof *f);
    f->path = sd_xstrdup(path);
    f->size = (uint64_t)st.st_size;
    if (f->size > 0) {
        void *m = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            sd_st_close(f);
            return sd_set_error("%s: mmap: %s", path, strerror(errno));
        }
        f->bytes = m;
        f->mapped = 1;
    } else {
        f->bytes = (const unsigned char *)"";
    }
    close(fd);
    if (open_common(f)) { sd_st_close(f); return -1; }
    *out = f;
    return 0;
}

const sd_st_tensor *sd_st_find(const sd_st_file *f, const char *name) {
    int lo = 0, hi = f->ntensors - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(f->tensors[f->by_name[mid]].name, name);
        if (c == 0) return &f->tensors[f->by_name[mid]];
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

int sd_st_read_f32(const sd_st_file *f, const sd_st_tensor *t, float *dst) {
    if (sd_convert_to_f32(t->dtype, sd_st_raw(f, t), dst, (size_t)t->numel))
        return sd_error_prefix("%s: tensor \"%s\"", f->path, t->name);
    return 0;
}

void sd_st_read_raw(const sd_st_file *f, const sd_st_tensor *t, void *dst) {
    memcpy(dst, sd_st_raw(f, t), (size_t)(t->end - t->begin));
}

const char *sd_st_meta(const sd_st_file *f, const char *key) {
    for (int i = 0; i < f->nmeta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_vals[i];
    return NULL;
}

int64_t sd_st_total_params(const sd_st_file *f) {
    int64_t s = 0;
    for (int i = 0; i < f->ntensors; i++) s += f->tensors[i].numel;
    return s;
}

/* ---- writer ------------------------------------------------------------- */

typedef struct {
    char *name;
    sd_dtype dtype;
    int ndim;
    int64_t shape[SD_MAX_DIMS];
    const void *data;   /* raw bytes in dtype, or floats when from_f32 */
    int from_f32;
    uint64_t nbytes;
} wt;

struct sd_st_writer {
    wt *t;
    int n, cap;
    char **mk, **mv;
    int nm, mcap;
};

sd_st_writer *sd_st_writer_new(void) { return sd_xcalloc(1, sizeof(sd_st_writer)); }

void sd_st_writer_free(sd_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    for (int i = 0; i < w->nm; i++) { free(w->mk[i]); free(w->mv[i]); }
    free(w->mk);
    free(w->mv);
    free(w);
}

static int add(sd_st_writer *w, const char *name, sd_dtype dtype, int ndim, const int64_t *shape, const void *data,
               int from_f32) {
    if (!name || !strcmp(name, "__metadata__")) return sd_set_error("invalid tensor name \"%s\"", name ? name : "");
    if (ndim < 0 || ndim > SD_MAX_DIMS) return sd_set_error("tensor \"%s\": bad rank %d", name, ndim);
    if (!sd_dtype_bits(dtype)) return sd_set_error("tensor \"%s\": invalid dtype", name);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name)) return sd_set_error("duplicate tensor name \"%s\"", name);
    int64_t numel;
    uint64_t nbytes;
    if (sd_shape_numel(ndim, shape, &numel) || sd_dtype_nbytes(dtype, numel, &nbytes))
        return sd_error_prefix("tensor \"%s\"", name);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->t = sd_xrealloc(w->t, sizeof(wt) * (size_t)w->cap);
    }
    wt *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = sd_xstrdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = data;
    t->from_f32 = from_f32;
    t->nbytes = nbytes;
    return 0;
}

int sd_st_writer_add(sd_st_writer *w, const char *name, sd_dtype dtype, int ndim, const int64_t *shape,
                     const void *data) {
    return add(w, name, dtype, ndim, shape, data, 0);
}

int sd_st_writer_add_f32(sd_st_writer *w, const char *name, sd_dtype dtype, int ndim, const int64_t *shape,
                         const float *data) {
    if (dtype != SD_F32 && dtype != SD_F16 && dtype != SD_BF16 && dtype != SD_F64)
        return sd_set_error("tensor \"%s\": cannot store float data as %s", name, sd_dtype_name(dtype));
    return add(w, name, dtype, ndim, shape, data, dtype != SD_F32);
}

int sd_st_writer_meta(sd_st_writer *w, const char *key, const char *value) {
    for (int i = 0; i < w->nm; i++)
        if (!strcmp(w->mk[i], key)) {
            free(w->mv[i]);
            w->mv[i] = sd_xstrdup(value);
            return 0;
        }
    if (w->nm == w->mcap) {
        w->mcap = w->mcap ? 2 * w->mcap : 8;
        w->mk = sd_xrealloc(w->mk, sizeof(char *) * (size_t)w->mcap);
        w->mv = sd_xrealloc(w->mv, sizeof(char *) * (size_t)w->mcap);
    }
    w->mk[w->nm] = sd_xstrdup(key);
    w->mv[w->nm] = sd_xstrdup(value);
    w->nm++;
    return 0;
}

/* The reference writer (safetensors' Rust `prepare`) orders tensors by dtype
 * descending in its enum order, then by name; we use the same order so files
 * with the same content are byte-identical. */
static int dtype_rank(sd_dtype t) {
    switch (t) {
    case SD_BOOL: return 0;      case SD_F4: return 1;        case SD_F6_E2M3: return 2;
    case SD_F6_E3M2: return 3;   case SD_U8: return 4;        case SD_I8: return 5;
    case SD_F8_E5M2: return 6;   case SD_F8_E4M3: return 7;   case SD_F8_E8M0: return 8;
    case SD_F8_E4M3FNUZ: return 9; case SD_F8_E5M2FNUZ: return 10;
    case SD_I16: return 11;      case SD_U16: return 12;      case SD_F16: return 13;
    case SD_BF16: return 14;     case SD_I32: return 15;      case SD_U32: return 16;
    case SD_F32: return 17;      case SD_C64: return 18;      case SD_F64: return 19;
    case SD_I64: return 20;      case SD_U64: return 21;      default: return -1;
    }
}

static int cmp_wt(const void *a, const void *b) {
    const wt *x = a, *y = b;
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry) return ry - rx;
    return strcmp(x->name, y->name);
}

/* growable byte buffer */
typedef struct { char *p; size_t n, cap; } sbuf;
static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
        b->p = sd_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': sb_str(b, "\\\""); break;
        case '\\': sb_str(b, "\\\\"); break;
        case '\n': sb_str(b, "\\n"); break;
        case '\r': sb_str(b, "\\r"); break;
        case '\t': sb_str(b, "\\t"); break;
        case '\b': sb_str(b, "\\b"); break;
        case '\f': sb_str(b, "\\f"); break;
        default:
            if (*p < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", *p); sb_str(b, esc); }
            else sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int build_header(sd_st_writer *w, sbuf *h) {
    qsort(w->t, (size_t)w->n, sizeof(wt), cmp_wt);
    sb_str(h, "{");
    int first = 1;
    if (w->nm) {
        sb_str(h, "\"__metadata__\":{");
        for (int i = 0; i < w->nm; i++) {
            if (i) sb_str(h, ",");
            sb_json_string(h, w->mk[i]);
            sb_str(h, ":");
            sb_json_string(h, w->mv[i]);
        }
        sb_str(h, "}");
        first = 0;
    }
    uint64_t off = 0;
    char num[64];
    for (int i = 0; i < w->n; i++) {
        wt *t = &w->t[i];
        if (!first) sb_str(h, ",");
        first = 0;
        sb_json_string(h, t->name);
        sb_str(h, ":{\"dtype\":\"");
        sb_str(h, sd_dtype_name(t->dtype));
        sb_str(h, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            sb_str(h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + t->nbytes));
        sb_str(h, num);
        off += t->nbytes;
    }
    sb_str(h, "}");
    while (h->n % 8) sb_put(h, " ", 1);
    if (h->n > SD_ST_MAX_HEADER) return sd_set_error("safetensors header would exceed %llu bytes", SD_ST_MAX_HEADER);
    return 0;
}

/* Emit tensor t's bytes through a sink (file or memory), converting floats in chunks. */
typedef int (*sink_fn)(void *ctx, const void *p, size_t n);

static int emit_tensor(const wt *t, sink_fn sink, void *ctx) {
    if (!t->from_f32) return t->nbytes ? sink(ctx, t->data, (size_t)t->nbytes) : 0;
    size_t numel = (size_t)(t->nbytes / (uint64_t)(sd_dtype_bits(t->dtype) / 8));
    const float *src = t->data;
    enum { CH = 1 << 16 };
    unsigned char *buf = sd_xmalloc(CH * 8);
    int rc = 0;
    for (size_t i = 0; i < numel && !rc; i += CH) {
        size_t m = numel - i < CH ? numel - i : CH;
        sd_convert_from_f32(t->dtype, src + i, buf, m);
        rc = sink(ctx, buf, m * (size_t)(sd_dtype_bits(t->dtype) / 8));
    }
    free(buf);
    return rc;
}

static int file_sink(void *ctx, const void *p, size_t n) {
    sd_atomic_file *af = ctx;
    return sd_fwrite_all(af->f, p, n, af->path);
}

static int mem_sink(void *ctx, const void *p, size_t n) {
    sb_put(ctx, p, n);
    return 0;
}

static int write_all(sd_st_writer *w, sink_fn sink, void *ctx) {
    sbuf h = {0};
    if (build_header(w, &h)) { free(h.p); return -1; }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    int rc = sink(ctx, len8, 8) || sink(ctx, h.p, h.n) ? -1 : 0;
    free(h.p);
    for (int i = 0; i < w->n && !rc; i++) rc = emit_tensor(&w->t[i], sink, ctx);
    return rc;
}

int sd_st_writer_save(sd_st_writer *w, const char *path) {
    sd_atomic_file af;
    if (sd_atomic_open(&af, path)) return -1;
    if (write_all(w, file_sink, &af)) { sd_atomic_abort(&af); return -1; }
    return sd_atomic_commit(&af);
}

int sd_st_writer_to_memory(sd_st_writer *w, unsigned char **buf, size_t *len) {
    sbuf b = {0};
    if (write_all(w, mem_sink, &b)) { free(b.p); return -1; }
    *buf = (unsigned char *)b.p;
    *len = b.n;
    return 0;
}
