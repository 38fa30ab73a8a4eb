/* cli.c — see cli.h. */
#include "core/cli.h"
#include "core/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef SD_VERSION
#define SD_VERSION "0"
#endif

void sd_cli_normalize(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (!strcmp(a, "--")) break;
        if (a[0] != '-' || a[1] != '-') continue;
        for (char *p = a + 2; *p && *p != '='; p++)
            if (*p == '-') *p = '_';
    }
}

int sd_parse_i64(const char *s, const char *opt, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno) return sd_set_error("--%s: '%s' is not an integer", opt, s);
    if (v < lo || v > hi) return sd_set_error("--%s: %lld is out of range [%lld, %lld]", opt, v, (long long)lo, (long long)hi);
    *out = v;
    return 0;
}

int sd_parse_int(const char *s, const char *opt, int lo, int hi, int *out) {
    int64_t v;
    if (sd_parse_i64(s, opt, lo, hi, &v)) return -1;
    *out = (int)v;
    return 0;
}

int sd_parse_u64(const char *s, const char *opt, uint64_t *out) {
    char *end;
    errno = 0;
    if (s[0] == '-') return sd_set_error("--%s: '%s' must be non-negative", opt, s);
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno) return sd_set_error("--%s: '%s' is not a non-negative integer", opt, s);
    *out = v;
    return 0;
}

int sd_parse_double(const char *s, const char *opt, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || v != v) return sd_set_error("--%s: '%s' is not a number", opt, s);
    if (v < lo || v > hi) return sd_set_error("--%s: %g is out of range [%g, %g]", opt, v, lo, hi);
    *out = v;
    return 0;
}

int sd_parse_bool(const char *s, const char *opt, int *out) {
    if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes")) { *out = 1; return 0; }
    if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no")) { *out = 0; return 0; }
    return sd_set_error("--%s: '%s' is not a boolean (true/false)", opt, s);
}

void sd_usage_error(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: error: %s\nTry '%s --help'.\n", sd_progname(), msg, sd_progname());
    exit(SD_EXIT_USAGE);
}

void sd_print_version(void) {
    printf("%s (sdtools) %s\n", sd_progname(), SD_VERSION);
    exit(0);
}
