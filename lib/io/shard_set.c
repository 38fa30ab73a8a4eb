/* shard_set.c — shard sets: spec expansion (braces, globs, directories),
 * manifest.json read/write/verify, and sd_shard_describe. See shard.h and
 * formats/shards.md §3.
 */
#define _GNU_SOURCE
#include "io/shard.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "io/json.h"

#include <ctype.h>
#include <glob.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PATHS 1000000

/* ---- string vector ------------------------------------------------------- */

typedef struct {
    char **v;
    int n, cap;
} strv;

static int strv_push(strv *s, char *str) { /* takes ownership */
    if (s->n >= MAX_PATHS) {
        free(str);
        return sd_set_error("shard spec expands to more than %d paths", MAX_PATHS);
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->v = sd_xrealloc(s->v, sizeof(char *) * (size_t)s->cap);
    }
    s->v[s->n++] = str;
    return 0;
}

static char *concat3(const char *a, size_t na, const char *b, size_t nb, const char *c) {
    size_t nc = strlen(c);
    char *r = sd_xmalloc(na + nb + nc + 1);
    memcpy(r, a, na);
    memcpy(r + na, b, nb);
    memcpy(r + na + nb, c, nc + 1);
    return r;
}

/* ---- brace expansion ------------------------------------------------------ */

/* "{N..M}" or "{N..M..S}" with optional '-' signs. Width: when either bound
 * has a leading zero (like braceexpand), numbers are zero-padded to the wider
 * bound. */
static int parse_range(const char *s, size_t n, long long *a, long long *b, long long *step, int *width) {
    char buf[96];
    if (n >= sizeof buf) return 0;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *p = buf, *end;
    const char *sa = p;
    if (!(isdigit((unsigned char)*p) || (*p == '-' && isdigit((unsigned char)p[1])))) return 0;
    *a = strtoll(p, &end, 10);
    size_t wa = (size_t)(end - sa);
    if (strncmp(end, "..", 2) != 0) return 0;
    p = end + 2;
    const char *sb = p;
    if (!(isdigit((unsigned char)*p) || (*p == '-' && isdigit((unsigned char)p[1])))) return 0;
    *b = strtoll(p, &end, 10);
    size_t wb = (size_t)(end - sb);
    *step = 1;
    if (!strncmp(end, "..", 2)) {
        p = end + 2;
        if (!(isdigit((unsigned char)*p) || (*p == '-' && isdigit((unsigned char)p[1])))) return 0;
        *step = llabs(strtoll(p, &end, 10));
        if (*step == 0) *step = 1;
    }
    if (*end) return 0;
    int lead0 = (sa[0] == '0' && wa > 1) || (sa[0] == '-' && sa[1] == '0' && wa > 2) || (sb[0] == '0' && wb > 1) ||
                (sb[0] == '-' && sb[1] == '0' && wb > 2);
    *width = lead0 ? (int)(wa > wb ? wa : wb) : 0;
    return 1;
}

/* Expand the first brace group at or after `from`; recurse on the results. */
static int brace(const char *s, size_t from, strv *out, int depth) {
    if (depth > 64) return sd_set_error("shard spec: braces nested too deeply");
    const char *open = NULL;
    for (const char *p = s + from; *p; p++)
        if (*p == '{') { open = p; break; }
    if (!open) return strv_push(out, sd_xstrdup(s));
    /* matching close brace and top-level commas */
    int d = 0, ncomma = 0;
    const char *close = NULL;
    for (const char *p = open; *p; p++) {
        if (*p == '{') d++;
        else if (*p == '}') {
            if (--d == 0) { close = p; break; }
        } else if (*p == ',' && d == 1) ncomma++;
    }
    if (!close) return sd_set_error("shard spec \"%s\": unbalanced '{'", s);
    size_t pre = (size_t)(open - s);
    const char *inner = open + 1;
    size_t ni = (size_t)(close - inner);
    if (ncomma > 0) {
        const char *start = inner;
        d = 0;
        for (const char *p = inner;; p++) {
            if (p < close && *p == '{') d++;
            else if (p < close && *p == '}') d--;
            if (p == close || (*p == ',' && d == 0)) {
                char *alt = concat3(s, pre, start, (size_t)(p - start), close + 1);
                int rc = brace(alt, pre, out, depth + 1);
                free(alt);
                if (rc) return rc;
                if (p == close) break;
                start = p + 1;
            }
        }
        return 0;
    }
    long long a, b, step;
    int width;
    if (parse_range(inner, ni, &a, &b, &step, &width)) {
        long long count = (a <= b ? b - a : a - b) / step + 1;
        if (count > MAX_PATHS) return sd_set_error("shard spec \"%s\": range of %lld values", s, count);
        for (long long k = 0; k < count; k++) {
            long long v = a <= b ? a + k * step : a - k * step;
            char num[48];
            if (width && v < 0) snprintf(num, sizeof num, "-%0*lld", width - 1, -v);
            else snprintf(num, sizeof num, "%0*lld", width, v);
            char *alt = concat3(s, pre, num, strlen(num), close + 1);
            int rc = brace(alt, pre + strlen(num), out, depth + 1);
            free(alt);
            if (rc) return rc;
        }
        return 0;
    }
    /* "{x}" without comma or range stays literal (as in bash and braceexpand) */
    return brace(s, (size_t)(close + 1 - s), out, depth + 1);
}

/* ---- expansion ------------------------------------------------------------ */

static int has_glob(const char *s) { return strpbrk(s, "*?[") != NULL; }

static int expand_dir(const char *dir, strv *out) {
    char *mf = sd_path_join(dir, SD_SHARD_MANIFEST);
    if (!sd_is_file(mf)) {
        sd_set_error("%s: no %s in this directory (name the shards with a pattern instead)", dir, SD_SHARD_MANIFEST);
        free(mf);
        return -1;
    }
    free(mf);
    sd_shard_manifest m;
    if (sd_shard_manifest_read(dir, &m)) return -1;
    int rc = 0;
    if (!m.complete) rc = sd_set_error("%s: shard set is incomplete (its producer has not finished)", dir);
    for (int i = 0; !rc && i < m.n; i++) rc = strv_push(out, sd_path_join(dir, m.shards[i].name));
    sd_shard_manifest_free(&m);
    return rc;
}

static int expand_one(const char *part, strv *out) {
    if (sd_is_dir(part)) return expand_dir(part, out);
    strv b = {0};
    int rc = brace(part, 0, &b, 0);
    for (int i = 0; !rc && i < b.n; i++) {
        if (!has_glob(b.v[i])) {
            rc = sd_is_dir(b.v[i]) ? expand_dir(b.v[i], out) : strv_push(out, sd_xstrdup(b.v[i]));
            continue;
        }
        glob_t g;
        int grc = glob(b.v[i], 0, NULL, &g);
        if (grc == GLOB_NOMATCH) rc = sd_set_error("%s: no shard matches", b.v[i]);
        else if (grc != 0) rc = sd_set_error("%s: glob failed", b.v[i]);
        else
            for (size_t k = 0; !rc && k < g.gl_pathc; k++) rc = strv_push(out, sd_xstrdup(g.gl_pathv[k]));
        if (grc != GLOB_NOMATCH) globfree(&g);
    }
    sd_free_strv(b.v, b.n);
    return rc;
}

int sd_shard_expand(const char *spec, char ***paths, int *n) {
    *paths = NULL;
    *n = 0;
    if (!spec || !*spec) return sd_set_error("empty shard spec");
    strv out = {0};
    int rc = 0;
    const char *p = spec;
    for (;;) {
        const char *sep = strstr(p, "::");
        size_t len = sep ? (size_t)(sep - p) : strlen(p);
        if (len) {
            char *part = strndup(p, len);
            rc = expand_one(part, &out);
            free(part);
            if (rc) break;
        }
        if (!sep) break;
        p = sep + 2;
    }
    if (!rc && out.n == 0) rc = sd_set_error("%s: no shards", spec);
    if (rc) { sd_free_strv(out.v, out.n); return -1; }
    *paths = out.v;
    *n = out.n;
    return 0;
}

/* ---- manifest ------------------------------------------------------------- */

#define MANIFEST_FORMAT "sdtools-shards"
#define MANIFEST_VERSION 1

void sd_shard_manifest_init(sd_shard_manifest *m, const char *kind) {
    memset(m, 0, sizeof *m);
    m->kind = sd_xstrdup(kind ? kind : "");
    m->provenance = cJSON_CreateObject();
}

void sd_shard_manifest_free(sd_shard_manifest *m) {
    free(m->kind);
    free(m->shards);
    cJSON_Delete(m->provenance);
    memset(m, 0, sizeof *m);
}

void sd_shard_manifest_add(sd_shard_manifest *m, const sd_shard_info *info) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->shards[i].name, info->name)) { m->shards[i] = *info; return; }
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 16;
        m->shards = sd_xrealloc(m->shards, sizeof *m->shards * (size_t)m->cap);
    }
    m->shards[m->n++] = *info;
}

const sd_shard_info *sd_shard_manifest_find(const sd_shard_manifest *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->shards[i].name, name)) return &m->shards[i];
    return NULL;
}

void sd_shard_manifest_set_provenance(sd_shard_manifest *m, cJSON *prov) {
    cJSON_Delete(m->provenance);
    m->provenance = prov ? prov : cJSON_CreateObject();
}

uint64_t sd_shard_manifest_samples(const sd_shard_manifest *m) {
    uint64_t t = 0;
    for (int i = 0; i < m->n; i++) t += m->shards[i].samples;
    return t;
}

int sd_shard_manifest_write(const sd_shard_manifest *m, const char *dir) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", MANIFEST_FORMAT);
    cJSON_AddNumberToObject(j, "version", MANIFEST_VERSION);
    cJSON_AddStringToObject(j, "kind", m->kind);
    cJSON_AddBoolToObject(j, "complete", m->complete);
    cJSON_AddNumberToObject(j, "samples", (double)sd_shard_manifest_samples(m));
    cJSON *arr = cJSON_AddArrayToObject(j, "shards");
    for (int i = 0; i < m->n; i++) {
        const sd_shard_info *s = &m->shards[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", s->name);
        cJSON_AddNumberToObject(o, "samples", (double)s->samples);
        cJSON_AddNumberToObject(o, "members", (double)s->members);
        cJSON_AddNumberToObject(o, "bytes", (double)s->bytes);
        cJSON_AddNumberToObject(o, "member_bytes", (double)s->member_bytes);
        cJSON_AddStringToObject(o, "sha256", s->sha256);
        cJSON_AddStringToObject(o, "first_key", s->first_key);
        cJSON_AddStringToObject(o, "last_key", s->last_key);
        cJSON_AddStringToObject(o, "compression", s->zstd ? "zstd" : "none");
        cJSON_AddItemToArray(arr, o);
    }
    cJSON_AddItemToObject(j, "provenance", m->provenance ? cJSON_Duplicate(m->provenance, 1) : cJSON_CreateObject());
    char *path = sd_path_join(dir, SD_SHARD_MANIFEST);
    int rc = sd_json_save(path, j);
    free(path);
    cJSON_Delete(j);
    return rc;
}

/* non-negative integer below 2^53 */
static int get_count(const cJSON *o, const char *key, uint64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != (double)(uint64_t)v->valuedouble)
        return -1;
    *out = (uint64_t)v->valuedouble;
    return 0;
}

static int valid_shard_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(((sd_shard_info *)0)->name) || s[0] == '.' || strchr(s, '/') || strchr(s, '\\')) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20) return 0;
    return 1;
}

int sd_shard_manifest_read(const char *path, sd_shard_manifest *m) {
    memset(m, 0, sizeof *m);
    char *file = sd_is_dir(path) ? sd_path_join(path, SD_SHARD_MANIFEST) : sd_xstrdup(path);
    cJSON *j;
    if (sd_json_load(file, &j)) { free(file); return -1; }
    int rc = -1;
    sd_shard_manifest_init(m, "");
    const char *fmt = sd_json_str(j, "format", NULL);
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(j, "version");
    const char *kind = sd_json_str(j, "kind", NULL);
    const cJSON *complete = cJSON_GetObjectItemCaseSensitive(j, "complete");
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "shards");
    const cJSON *prov = cJSON_GetObjectItemCaseSensitive(j, "provenance");
    uint64_t total;
    if (!cJSON_IsObject(j) || !fmt || strcmp(fmt, MANIFEST_FORMAT) != 0) {
        sd_set_error("%s: not a shard-set manifest (\"format\" is not \"%s\")", file, MANIFEST_FORMAT);
        goto out;
    }
    if (!cJSON_IsNumber(ver) || ver->valuedouble != MANIFEST_VERSION) {
        sd_set_error("%s: unsupported manifest version (this reader knows %d)", file, MANIFEST_VERSION);
        goto out;
    }
    if (!kind || !cJSON_IsBool(complete) || !cJSON_IsArray(arr) || (prov && !cJSON_IsObject(prov)) || get_count(j, "samples", &total)) {
        sd_set_error("%s: manifest needs \"kind\" (string), \"complete\" (bool), \"samples\" (count), \"shards\" (list) and an "
                     "object \"provenance\"", file);
        goto out;
    }
    free(m->kind);
    m->kind = sd_xstrdup(kind);
    m->complete = cJSON_IsTrue(complete);
    const cJSON *o;
    int idx = 0;
    cJSON_ArrayForEach(o, arr) {
        sd_shard_info s;
        memset(&s, 0, sizeof s);
        const char *name = sd_json_str(o, "name", NULL);
        const char *sha = sd_json_str(o, "sha256", NULL);
        const char *fk = sd_json_str(o, "first_key", ""), *lk = sd_json_str(o, "last_key", "");
        const char *comp = sd_json_str(o, "compression", "none");
        if (!cJSON_IsObject(o) || !name || !valid_shard_name(name)) {
            sd_set_error("%s: shards[%d]: \"name\" must be a plain file name", file, idx);
            goto out;
        }
        if (get_count(o, "samples", &s.samples) || get_count(o, "bytes", &s.bytes)) {
            sd_set_error("%s: shard %s: \"samples\" and \"bytes\" must be non-negative integers", file, name);
            goto out;
        }
        if (get_count(o, "members", &s.members)) s.members = 0;           /* optional */
        if (get_count(o, "member_bytes", &s.member_bytes)) s.member_bytes = 0;
        int hexok = sha && strlen(sha) == 64;
        for (int k = 0; hexok && k < 64; k++) hexok = (sha[k] >= '0' && sha[k] <= '9') || (sha[k] >= 'a' && sha[k] <= 'f');
        if (!hexok) { sd_set_error("%s: shard %s: \"sha256\" must be 64 lower-case hex digits", file, name); goto out; }
        if (sd_shard_manifest_find(m, name)) { sd_set_error("%s: shard %s listed twice", file, name); goto out; }
        snprintf(s.name, sizeof s.name, "%s", name);
        memcpy(s.sha256, sha, 65);
        snprintf(s.first_key, sizeof s.first_key, "%s", fk);
        snprintf(s.last_key, sizeof s.last_key, "%s", lk);
        s.zstd = !strcmp(comp, "zstd");
        sd_shard_manifest_add(m, &s);
        idx++;
    }
    if (total != sd_shard_manifest_samples(m)) {
        sd_set_error("%s: \"samples\" is %" PRIu64 " but the shards add up to %" PRIu64, file, total, sd_shard_manifest_samples(m));
        goto out;
    }
    if (prov) sd_shard_manifest_set_provenance(m, cJSON_Duplicate(prov, 1));
    rc = 0;
out:
    cJSON_Delete(j);
    free(file);
    if (rc) sd_shard_manifest_free(m);
    return rc;
}

int sd_shard_verify(const char *dir, const sd_shard_info *info) {
    char *path = sd_path_join(dir, info->name);
    uint64_t size;
    int rc = 0;
    if (!sd_is_file(path)) rc = sd_set_error("%s: missing", path);
    else if (sd_file_size(path, &size)) rc = -1;
    else if (size != info->bytes)
        rc = sd_set_error("%s: %" PRIu64 " bytes, the manifest says %" PRIu64, path, size, info->bytes);
    else {
        char hex[65];
        if (sd_sha256_file(path, hex)) rc = -1;
        else if (strcmp(hex, info->sha256) != 0) rc = sd_set_error("%s: sha256 differs from the manifest", path);
    }
    free(path);
    return rc;
}

int sd_shard_manifest_verify(const sd_shard_manifest *m, const char *dir) {
    for (int i = 0; i < m->n; i++)
        if (sd_shard_verify(dir, &m->shards[i])) return -1;
    return 0;
}

/* ---- describe ------------------------------------------------------------- */

typedef struct {
    char **ext;
    uint64_t *count;
    int n;
} ext_counts;

static void ec_add(ext_counts *e, const char *ext, uint64_t k) {
    for (int i = 0; i < e->n; i++)
        if (!strcmp(e->ext[i], ext)) { e->count[i] += k; return; }
    if (e->n >= 4096) return; /* hostile shards: stop listing, totals still count */
    e->ext = sd_xrealloc(e->ext, sizeof(char *) * (size_t)(e->n + 1));
    e->count = sd_xrealloc(e->count, sizeof(uint64_t) * (size_t)(e->n + 1));
    e->ext[e->n] = sd_xstrdup(ext);
    e->count[e->n++] = k;
}

static void ec_sort(ext_counts *e) { /* by name; n is small */
    for (int i = 1; i < e->n; i++)
        for (int j = i; j > 0 && strcmp(e->ext[j - 1], e->ext[j]) > 0; j--) {
            char *t = e->ext[j]; e->ext[j] = e->ext[j - 1]; e->ext[j - 1] = t;
            uint64_t c = e->count[j]; e->count[j] = e->count[j - 1]; e->count[j - 1] = c;
        }
}

static void ec_free(ext_counts *e) {
    for (int i = 0; i < e->n; i++) free(e->ext[i]);
    free(e->ext);
    free(e->count);
    memset(e, 0, sizeof *e);
}

static cJSON *ec_json(const ext_counts *e) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < e->n; i++) cJSON_AddNumberToObject(o, e->ext[i], (double)e->count[i]);
    return o;
}

static void ec_print(const ext_counts *e, FILE *out) {
    fprintf(out, "  extensions:");
    for (int i = 0; i < e->n; i++) fprintf(out, " %s %" PRIu64, e->ext[i], e->count[i]);
    fprintf(out, "%s\n", e->n ? "" : " (none)");
}

int sd_shard_describe(const char *path, int json, FILE *out) {
    sd_shard_manifest m;
    int have_manifest = 0;
    char **paths = NULL;
    int n = 0, bad = 0;
    char *err_first = NULL;
    if (sd_is_dir(path)) {
        char *mf = sd_path_join(path, SD_SHARD_MANIFEST);
        int has = sd_is_file(mf);
        free(mf);
        if (!has) return sd_set_error("%s: no %s in this directory (name the shards with a pattern instead)", path, SD_SHARD_MANIFEST);
        if (sd_shard_manifest_read(path, &m)) return -1;
        have_manifest = 1;
        n = m.n;
        paths = sd_xcalloc((size_t)(n ? n : 1), sizeof(char *));
        for (int i = 0; i < n; i++) paths[i] = sd_path_join(path, m.shards[i].name);
    } else if (sd_shard_expand(path, &paths, &n)) {
        return -1;
    }

    cJSON *jroot = json ? cJSON_CreateObject() : NULL, *jshards = NULL;
    if (json) {
        cJSON_AddStringToObject(jroot, "path", path);
        cJSON_AddStringToObject(jroot, "kind", "shards");
        if (have_manifest) {
            cJSON *jm = cJSON_AddObjectToObject(jroot, "manifest");
            cJSON_AddStringToObject(jm, "kind", m.kind);
            cJSON_AddBoolToObject(jm, "complete", m.complete);
            cJSON_AddNumberToObject(jm, "shards", m.n);
            cJSON_AddNumberToObject(jm, "samples", (double)sd_shard_manifest_samples(&m));
            cJSON_AddItemToObject(jm, "provenance", cJSON_Duplicate(m.provenance, 1));
        } else {
            cJSON_AddNullToObject(jroot, "manifest");
        }
        jshards = cJSON_AddArrayToObject(jroot, "shards");
    } else if (have_manifest) {
        char *prov = sd_json_compact(m.provenance);
        fprintf(out, "shard set %s: kind %s, %s, %d shards, %" PRIu64 " samples (manifest)\n", path, m.kind,
                m.complete ? "complete" : "INCOMPLETE", m.n, sd_shard_manifest_samples(&m));
        fprintf(out, "  provenance: %.300s%s\n", prov, strlen(prov) > 300 ? "..." : "");
        free(prov);
    }

    ext_counts total_ext = {0};
    uint64_t t_samples = 0, t_members = 0, t_bytes = 0, t_mbytes = 0;
    for (int i = 0; i < n; i++) {
        ext_counts ec = {0};
        sd_shard_info info;
        memset(&info, 0, sizeof info);
        snprintf(info.name, sizeof info.name, "%s", sd_path_basename(paths[i]));
        sd_shard_stats st;
        memset(&st, 0, sizeof st);
        char *err = NULL;
        sd_shard_reader *r;
        sd_shard_read_opts ro = {.hash = 1};
        int opened = 0;
        if (sd_shard_open(&r, paths[i], &ro)) err = sd_xstrdup(sd_last_error());
        else {
            opened = 1;
            sd_shard_sample *s;
            int rc;
            while ((rc = sd_shard_next(r, &s)) == 1) {
                if (info.samples == 0) snprintf(info.first_key, sizeof info.first_key, "%s", s->key);
                snprintf(info.last_key, sizeof info.last_key, "%s", s->key);
                info.samples++;
                for (int k = 0; k < s->n; k++) ec_add(&ec, s->files[k].ext, 1);
            }
            if (rc == 0) rc = sd_shard_sha256(r, info.sha256, &info.bytes);
            if (rc) err = sd_xstrdup(sd_last_error());
            sd_shard_get_stats(r, &st);
            sd_shard_close(r);
        }
        ec_sort(&ec);
        info.members = st.members;
        info.member_bytes = st.member_bytes;
        if (err) sd_file_size(paths[i], &info.bytes);
        const char *comp = st.compression ? st.compression : "none";
        /* compare with the manifest */
        char *mismatch = NULL;
        if (have_manifest && !err) {
            const sd_shard_info *e = &m.shards[i];
            char buf[512];
            if (e->samples != info.samples)
                snprintf(buf, sizeof buf, "manifest says %" PRIu64 " samples, found %" PRIu64, e->samples, info.samples);
            else if (e->bytes != info.bytes)
                snprintf(buf, sizeof buf, "manifest says %" PRIu64 " bytes, found %" PRIu64, e->bytes, info.bytes);
            else if (strcmp(e->sha256, info.sha256) != 0)
                snprintf(buf, sizeof buf, "sha256 differs from the manifest");
            else buf[0] = 0;
            if (buf[0]) mismatch = sd_xstrdup(buf);
        }
        if (err || mismatch) {
            bad++;
            if (!err_first) {
                size_t len = strlen(paths[i]) + strlen(err ? err : mismatch) + 4;
                err_first = sd_xmalloc(len);
                if (err) snprintf(err_first, len, "%s", err);
                else snprintf(err_first, len, "%s: %s", paths[i], mismatch);
            }
        }
        t_samples += info.samples;
        t_members += info.members;
        t_bytes += info.bytes;
        t_mbytes += info.member_bytes;
        for (int k = 0; k < ec.n; k++) ec_add(&total_ext, ec.ext[k], ec.count[k]);

        if (n == 1 && !opened) {
            /* a single path that cannot be opened: just the error */
        } else if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "path", paths[i]);
            cJSON_AddStringToObject(o, "compression", comp);
            cJSON_AddNumberToObject(o, "bytes", (double)info.bytes);
            cJSON_AddNumberToObject(o, "samples", (double)info.samples);
            cJSON_AddNumberToObject(o, "members", (double)info.members);
            cJSON_AddNumberToObject(o, "member_bytes", (double)info.member_bytes);
            cJSON_AddStringToObject(o, "first_key", info.first_key);
            cJSON_AddStringToObject(o, "last_key", info.last_key);
            cJSON_AddItemToObject(o, "extensions", ec_json(&ec));
            cJSON *sk = cJSON_AddObjectToObject(o, "skipped");
            cJSON_AddNumberToObject(sk, "nonregular", (double)st.skipped_nonregular);
            cJSON_AddNumberToObject(sk, "meta", (double)st.skipped_meta);
            cJSON_AddNumberToObject(sk, "nokey", (double)st.skipped_nokey);
            if (err) cJSON_AddNullToObject(o, "sha256");
            else cJSON_AddStringToObject(o, "sha256", info.sha256);
            if (have_manifest && !err) cJSON_AddBoolToObject(o, "manifest_ok", mismatch == NULL);
            if (err || mismatch) cJSON_AddStringToObject(o, "error", err ? err : mismatch);
            else cJSON_AddNullToObject(o, "error");
            cJSON_AddItemToArray(jshards, o);
        } else {
            fprintf(out, "%s: %s%s, %" PRIu64 " bytes, %" PRIu64 " samples, %" PRIu64 " members (%" PRIu64 " bytes)", paths[i],
                    st.compressed ? "tar+" : "tar", st.compressed ? comp : "", info.bytes, info.samples, info.members,
                    info.member_bytes);
            if (info.samples) fprintf(out, ", keys %s..%s", info.first_key, info.last_key);
            fprintf(out, "\n");
            ec_print(&ec, out);
            if (st.skipped_nonregular || st.skipped_meta || st.skipped_nokey)
                fprintf(out, "  skipped: %" PRIu64 " non-regular, %" PRIu64 " __meta__, %" PRIu64 " without KEY.EXT\n",
                        st.skipped_nonregular, st.skipped_meta, st.skipped_nokey);
            if (err) fprintf(out, "  ERROR: %s\n", err);
            if (mismatch) fprintf(out, "  MISMATCH: %s\n", mismatch);
        }
        free(err);
        free(mismatch);
        ec_free(&ec);
    }
    ec_sort(&total_ext);
    if (n == 1 && bad && cJSON_GetArraySize(jshards) == 0 && !have_manifest) {
        cJSON_Delete(jroot); /* nothing was read: no document, only the error */
        jroot = NULL;
        json = 0;
    } else if (json) {
        cJSON *t = cJSON_AddObjectToObject(jroot, "total");
        cJSON_AddNumberToObject(t, "shards", n);
        cJSON_AddNumberToObject(t, "samples", (double)t_samples);
        cJSON_AddNumberToObject(t, "members", (double)t_members);
        cJSON_AddNumberToObject(t, "bytes", (double)t_bytes);
        cJSON_AddNumberToObject(t, "member_bytes", (double)t_mbytes);
        cJSON_AddItemToObject(t, "extensions", ec_json(&total_ext));
        cJSON_AddBoolToObject(jroot, "ok", bad == 0);
        char *s = sd_json_pretty(jroot);
        fputs(s, out);
        free(s);
        cJSON_Delete(jroot);
    } else if (n > 1 || have_manifest) {
        fprintf(out, "total: %d shards, %" PRIu64 " samples, %" PRIu64 " members, %" PRIu64 " bytes (%" PRIu64 " in members)\n", n,
                t_samples, t_members, t_bytes, t_mbytes);
        ec_print(&total_ext, out);
    }
    ec_free(&total_ext);
    sd_free_strv(paths, n);
    if (have_manifest) sd_shard_manifest_free(&m);
    int rc = 0;
    if (bad && n == 1) rc = sd_set_error("%s", err_first);
    else if (bad) rc = sd_set_error("%d of %d shards bad; first: %s", bad, n, err_first);
    free(err_first);
    return rc;
}
