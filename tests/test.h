/* test.h — a minimal TAP-producing unit test harness.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_NEAR(a, b, 1e-6); CHECK_OK(sd_fn(...)); }
 *   int main(void) { RUN(name); return test_summary(); }
 *
 * Each RUN prints "ok N - name" or "not ok N - name" with "# file:line: what"
 * diagnostics; tests/run.sh sums the lines of every test program.
 */
#ifndef SD_TEST_H
#define SD_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static int test_n = 0, test_failed_total = 0, test_cur_failed = 0;

#define TEST(name) static void name(void)

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            printf("# %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);           \
            test_cur_failed++;                                                          \
        }                                                                               \
    } while (0)

#define CHECK_MSG(cond, ...)                                                            \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            printf("# %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);           \
            printf(__VA_ARGS__);                                                        \
            printf("\n");                                                               \
            test_cur_failed++;                                                          \
        }                                                                               \
    } while (0)

/* expr returns 0 on success; on failure the library's message is shown */
#define CHECK_OK(expr)                                                                  \
    do {                                                                                \
        if ((expr) != 0) {                                                              \
            printf("# %s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, sd_last_error()); \
            test_cur_failed++;                                                          \
        }                                                                               \
    } while (0)

/* expr must fail, and its message must contain substr */
#define CHECK_FAILS(expr, substr)                                                       \
    do {                                                                                \
        sd_clear_error();                                                               \
        if ((expr) == 0) {                                                              \
            printf("# %s:%d: %s unexpectedly succeeded\n", __FILE__, __LINE__, #expr);  \
            test_cur_failed++;                                                          \
        } else if (!strstr(sd_last_error(), (substr))) {                                \
            printf("# %s:%d: %s: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, #expr, \
                   sd_last_error(), (substr));                                          \
            test_cur_failed++;                                                          \
        }                                                                               \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                           \
    do {                                                                                \
        double a_ = (double)(a), b_ = (double)(b);                                      \
        if (!(fabs(a_ - b_) <= (tol))) {                                                \
            printf("# %s:%d: |%s - %s| = |%.9g - %.9g| > %g\n", __FILE__, __LINE__, #a, #b, \
                   a_, b_, (double)(tol));                                              \
            test_cur_failed++;                                                          \
        }                                                                               \
    } while (0)

#define RUN(name)                                                                       \
    do {                                                                                \
        test_cur_failed = 0;                                                            \
        fflush(stdout);                                                                 \
        name();                                                                         \
        test_n++;                                                                       \
        if (test_cur_failed) test_failed_total++;                                       \
        printf("%sok %d - %s\n", test_cur_failed ? "not " : "", test_n, #name);         \
        fflush(stdout);                                                                 \
    } while (0)

static inline int test_summary(void) {
    printf("1..%d\n", test_n);
    return test_failed_total ? 1 : 0;
}

/* A scratch directory unique to this test program (under $TMPDIR or /tmp). */
static inline const char *test_tmpdir(void) {
    static char dir[512];
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/sdtest.XXXXXX", t && *t ? t : "/tmp");
        extern char *mkdtemp(char *);
        if (!mkdtemp(dir)) { perror("mkdtemp"); exit(2); }
    }
    return dir;
}

/* Max abs and max relative-to-RMS difference of two float arrays. */
static inline void test_compare(const float *a, const float *ref, size_t n, double *max_abs, double *rel_rms) {
    double m = 0, ss = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (d > m || d != d) m = d;
        ss += (double)ref[i] * ref[i];
    }
    double rms = sqrt(ss / (double)(n ? n : 1));
    *max_abs = m;
    *rel_rms = rms > 0 ? m / rms : m;
}

#endif
