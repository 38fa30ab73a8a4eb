/* jsonl.c — append-only JSON-lines log. */
#include "train/jsonl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "io/json.h"

struct sd_jsonl {
    FILE *f;
    char *path;
};

int sd_jsonl_open(sd_jsonl **out, const char *path, int append) {
    *out = NULL;
    char *dir = sd_path_dirname(path);
    int rc = sd_mkdir_p(dir);
    free(dir);
    if (rc) return -1;
    FILE *f = fopen(path, append ? "ab" : "wb");
    if (!f) return sd_set_error("%s: cannot open: %s", path, strerror(errno));
    sd_jsonl *l = sd_xcalloc(1, sizeof *l);
    l->f = f;
    l->path = sd_xstrdup(path);
    *out = l;
    return 0;
}

int sd_jsonl_write(sd_jsonl *l, const cJSON *obj) {
    char *s = sd_json_compact(obj);
    if (!s) return sd_set_error("%s: cannot serialize a log record", l->path);
    size_t n = strlen(s);
    s[n] = '\n'; /* replaces the NUL: one fwrite for the whole line */
    int rc = 0;
    if (fwrite(s, 1, n + 1, l->f) != n + 1 || fflush(l->f) != 0)
        rc = sd_set_error("%s: write error: %s", l->path, strerror(errno));
    free(s);
    return rc;
}

int sd_jsonl_step(sd_jsonl *l, long long step, int n, const char *const *keys, const double *values) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)step);
    for (int i = 0; i < n; i++) {
        if (isfinite(values[i])) cJSON_AddNumberToObject(o, keys[i], values[i]);
        else cJSON_AddNullToObject(o, keys[i]);
    }
    int rc = sd_jsonl_write(l, o);
    cJSON_Delete(o);
    return rc;
}

int sd_jsonl_flush(sd_jsonl *l) {
    if (fflush(l->f) != 0 || (fsync(fileno(l->f)) != 0 && errno != EINVAL))
        return sd_set_error("%s: flush: %s", l->path, strerror(errno));
    return 0;
}

int sd_jsonl_close(sd_jsonl *l) {
    if (!l) return 0;
    int rc = sd_jsonl_flush(l);
    if (fclose(l->f) != 0 && rc == 0) rc = sd_set_error("%s: close: %s", l->path, strerror(errno));
    free(l->path);
    free(l);
    return rc;
}
