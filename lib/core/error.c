/* error.c — thread-local error messages and the tools' one-line printers. */
#include "core/error.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SD_ERR_MAX 1024

static _Thread_local char err_buf[SD_ERR_MAX];
static const char *progname = "sdtools";

int sd_set_errorv(const char *fmt, va_list ap) {
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    return -1;
}

int sd_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sd_set_errorv(fmt, ap);
    va_end(ap);
    return -1;
}

int sd_error_prefix(const char *fmt, ...) {
    char prefix[512], old[SD_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    size_t lp = strlen(prefix), lo = strlen(old);
    if (lp > SD_ERR_MAX - 3) lp = SD_ERR_MAX - 3;
    if (lo > SD_ERR_MAX - 3 - lp) lo = SD_ERR_MAX - 3 - lp;
    memcpy(err_buf, prefix, lp);
    memcpy(err_buf + lp, ": ", 2);
    memcpy(err_buf + lp + 2, old, lo);
    err_buf[lp + 2 + lo] = 0;
    return -1;
}

const char *sd_last_error(void) { return err_buf; }
void sd_clear_error(void) { err_buf[0] = 0; }

void sd_set_progname(const char *name) {
    const char *slash = strrchr(name, '/');
    progname = slash ? slash + 1 : name;
}
const char *sd_progname(void) { return progname; }

static void say(const char *kind, const char *fmt, va_list ap) {
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* one line, always: fold embedded newlines */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    fprintf(stderr, "%s: %s: %s\n", progname, kind, msg);
}

void sd_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say("error", fmt, ap);
    va_end(ap);
    exit(1);
}

void sd_die_last(void) { sd_die("%s", err_buf[0] ? err_buf : "unknown error"); }

void sd_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say("warning", fmt, ap);
    va_end(ap);
}

void sd_note(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say("note", fmt, ap);
    va_end(ap);
}

static void oom(size_t n) {
    fprintf(stderr, "%s: error: out of memory allocating %zu bytes\n", progname, n);
    abort();
}

void *sd_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *sd_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}

void *sd_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *sd_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = sd_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

int sd_mul_size(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a) return sd_set_error("size overflow (%zu x %zu)", a, b);
    *out = a * b;
    return 0;
}

int sd_add_size(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return sd_set_error("size overflow (%zu + %zu)", a, b);
    *out = a + b;
    return 0;
}
