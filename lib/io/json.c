/* json.c — see json.h. */
#include "io/json.h"
#include "core/error.h"
#include "core/fs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sd_json_parse(const char *text, size_t n, const char *name, cJSON **out) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!*out) {
        size_t pos = end && end >= text ? (size_t)(end - text) : 0;
        return sd_set_error("%s: invalid JSON near byte %zu", name, pos);
    }
    /* only whitespace may follow */
    if (end) {
        while ((size_t)(end - text) < n && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t')) end++;
        if ((size_t)(end - text) < n && *end) {
            cJSON_Delete(*out);
            *out = NULL;
            return sd_set_error("%s: trailing data after JSON value at byte %zu", name, (size_t)(end - text));
        }
    }
    return 0;
}

int sd_json_load(const char *path, cJSON **out) {
    char *text;
    size_t n;
    *out = NULL;
    if (sd_read_file(path, 64u << 20, &text, &n)) return -1;
    int rc = sd_json_parse(text, n, path, out);
    free(text);
    return rc;
}

char *sd_json_compact(const cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    if (!s) { fprintf(stderr, "out of memory printing JSON\n"); abort(); }
    return s;
}

char *sd_json_pretty(const cJSON *j) {
    char *s = cJSON_Print(j);
    if (!s) { fprintf(stderr, "out of memory printing JSON\n"); abort(); }
    /* cJSON indents with tabs and writes "key":\tvalue; use two spaces and
     * "key": value like Python's json.dump(indent=2) */
    size_t n = strlen(s), k = 0;
    char *o = sd_xmalloc(2 * n + 2);
    int line_start = 1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n') line_start = 1;
        else if (s[i] != '\t') line_start = 0;
        if (s[i] == '\t') {
            if (line_start) { o[k++] = ' '; o[k++] = ' '; }
            else o[k++] = ' ';
        } else o[k++] = s[i];
    }
    o[k++] = '\n';
    o[k] = 0;
    free(s);
    return o;
}

int sd_json_save(const char *path, const cJSON *j) {
    char *o = sd_json_pretty(j);
    int rc = sd_write_file_atomic(path, o, strlen(o));
    free(o);
    return rc;
}

double sd_json_num(const cJSON *obj, const char *key, double def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

int sd_json_int(const cJSON *obj, const char *key, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v)) return def;
    double d = v->valuedouble;
    if (d != floor(d) || d < -2147483648.0 || d > 2147483647.0) return def;
    return (int)d;
}

int sd_json_bool(const cJSON *obj, const char *key, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

const char *sd_json_str(const cJSON *obj, const char *key, const char *def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : def;
}

int sd_json_int_array(const cJSON *obj, const char *key, int *out, int max) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsNumber(v)) {
        if (max < 1) return -1;
        out[0] = (int)v->valuedouble;
        return 1;
    }
    if (!cJSON_IsArray(v)) return -1;
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsNumber(e) || n >= max) return -1;
        out[n++] = (int)e->valuedouble;
    }
    return n;
}

int sd_json_str_array(const cJSON *obj, const char *key, const char **out, int max) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsArray(v)) return -1;
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsString(e) || n >= max) return -1;
        out[n++] = e->valuestring;
    }
    return n;
}
