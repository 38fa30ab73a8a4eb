/* fs.c — see fs.h. */
#define _GNU_SOURCE
#include "core/fs.h"
#include "core/error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int sd_read_file(const char *path, size_t max_bytes, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sd_set_error("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) { fclose(f); return sd_set_error("%s: %s", path, strerror(errno)); }
    if (S_ISDIR(st.st_mode)) { fclose(f); return sd_set_error("%s: is a directory", path); }
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 4096, n = 0;
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return sd_set_error("%s: file too large (%lld bytes, limit %zu)", path, (long long)st.st_size, max_bytes);
    }
    char *buf = sd_xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > max_bytes + 1) { free(buf); fclose(f); return sd_set_error("%s: file too large (limit %zu)", path, max_bytes); }
            cap *= 2;
            buf = sd_xrealloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) { free(buf); return sd_set_error("%s: read error", path); }
    if (n > max_bytes) { free(buf); return sd_set_error("%s: file too large (limit %zu)", path, max_bytes); }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

char *sd_path_join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    while (la > 1 && a[la - 1] == '/') la--;
    char *r = sd_xmalloc(la + lb + 2);
    memcpy(r, a, la);
    r[la] = '/';
    memcpy(r + la + 1, b, lb + 1);
    if (la == 0) memmove(r, r + 1, lb + 1);
    return r;
}

char *sd_path_dirname(const char *path) {
    const char *s = strrchr(path, '/');
    if (!s) return sd_xstrdup(".");
    if (s == path) return sd_xstrdup("/");
    size_t n = (size_t)(s - path);
    char *r = sd_xmalloc(n + 1);
    memcpy(r, path, n);
    r[n] = 0;
    return r;
}

const char *sd_path_basename(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

char *sd_tmp_sibling(const char *path) {
    char *dir = sd_path_dirname(path);
    const char *base = sd_path_basename(path);
    size_t n = strlen(base) + 64;
    char *name = sd_xmalloc(n);
    snprintf(name, n, ".%s.tmp.%ld", base, (long)getpid());
    char *r = strchr(path, '/') ? sd_path_join(dir, name) : sd_xstrdup(name);
    free(dir);
    free(name);
    return r;
}

int sd_fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return sd_set_error("%s: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0 && errno != EINVAL) return sd_set_error("%s: fsync: %s", path, strerror(errno));
    return 0;
}

int sd_atomic_open(sd_atomic_file *af, const char *path) {
    af->path = sd_xstrdup(path);
    af->tmp_path = sd_tmp_sibling(path);
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) {
        sd_set_error("%s: cannot create: %s", af->tmp_path, strerror(errno));
        free(af->path);
        free(af->tmp_path);
        af->path = af->tmp_path = NULL;
        return -1;
    }
    return 0;
}

void sd_atomic_abort(sd_atomic_file *af) {
    if (af->f) fclose(af->f);
    if (af->tmp_path) unlink(af->tmp_path);
    free(af->path);
    free(af->tmp_path);
    af->f = NULL;
    af->path = af->tmp_path = NULL;
}

int sd_atomic_commit(sd_atomic_file *af) {
    int rc = 0;
    if (fflush(af->f) != 0 || ferror(af->f)) rc = sd_set_error("%s: write error: %s", af->path, strerror(errno));
    else if (fsync(fileno(af->f)) != 0) rc = sd_set_error("%s: fsync: %s", af->path, strerror(errno));
    if (fclose(af->f) != 0 && rc == 0) rc = sd_set_error("%s: close: %s", af->path, strerror(errno));
    af->f = NULL;
    if (rc == 0 && rename(af->tmp_path, af->path) != 0)
        rc = sd_set_error("%s: rename: %s", af->path, strerror(errno));
    if (rc == 0) {
        char *dir = sd_path_dirname(af->path);
        rc = sd_fsync_dir(dir);
        free(dir);
    } else {
        unlink(af->tmp_path);
    }
    free(af->path);
    free(af->tmp_path);
    af->path = af->tmp_path = NULL;
    return rc;
}

int sd_fwrite_all(FILE *f, const void *data, size_t len, const char *what) {
    if (len && fwrite(data, 1, len, f) != len) return sd_set_error("%s: write error: %s", what, strerror(errno));
    return 0;
}

int sd_write_file_atomic(const char *path, const void *data, size_t len) {
    sd_atomic_file af;
    if (sd_atomic_open(&af, path)) return -1;
    if (sd_fwrite_all(af.f, data, len, path)) { sd_atomic_abort(&af); return -1; }
    return sd_atomic_commit(&af);
}

int sd_mkdir_p(const char *path) {
    char *p = sd_xstrdup(path);
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == 0) {
            char c = p[i];
            p[i] = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                sd_set_error("%s: cannot create directory: %s", p, strerror(errno));
                free(p);
                return -1;
            }
            p[i] = c;
        }
    }
    free(p);
    if (!sd_is_dir(path)) return sd_set_error("%s: not a directory", path);
    return 0;
}

int sd_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int sd_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int sd_file_size(const char *path, uint64_t *size) {
    struct stat st;
    if (stat(path, &st) != 0) return sd_set_error("%s: %s", path, strerror(errno));
    *size = (uint64_t)st.st_size;
    return 0;
}

int sd_rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : sd_set_error("%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return sd_set_error("%s: %s", path, strerror(errno));
        struct dirent *e;
        int rc = 0;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *sub = sd_path_join(path, e->d_name);
            if (sd_rm_rf(sub)) rc = -1;
            free(sub);
        }
        closedir(d);
        if (rc) return rc;
        if (rmdir(path) != 0) return sd_set_error("%s: %s", path, strerror(errno));
        return 0;
    }
    if (unlink(path) != 0) return sd_set_error("%s: %s", path, strerror(errno));
    return 0;
}

int sd_copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb");
    if (!in) return sd_set_error("%s: %s", src, strerror(errno));
    sd_atomic_file af;
    if (sd_atomic_open(&af, dst)) { fclose(in); return -1; }
    char *buf = sd_xmalloc(1 << 20);
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, 1 << 20, in)) > 0)
        if (sd_fwrite_all(af.f, buf, n, dst)) { rc = -1; break; }
    if (ferror(in)) rc = sd_set_error("%s: read error", src);
    fclose(in);
    free(buf);
    if (rc) { sd_atomic_abort(&af); return -1; }
    return sd_atomic_commit(&af);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int sd_list_dir(const char *path, char ***names) {
    DIR *d = opendir(path);
    *names = NULL;
    if (!d) return sd_set_error("%s: %s", path, strerror(errno));
    int n = 0, cap = 16;
    char **v = sd_xmalloc(sizeof(char *) * (size_t)cap);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) { cap *= 2; v = sd_xrealloc(v, sizeof(char *) * (size_t)cap); }
        v[n++] = sd_xstrdup(e->d_name);
    }
    closedir(d);
    qsort(v, (size_t)n, sizeof(char *), cmp_str);
    *names = v;
    return n;
}

void sd_free_strv(char **v, int n) {
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

double sd_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
