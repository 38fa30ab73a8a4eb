/* test_nn.c — lib/nn layers on the CPU backend against torch goldens
 * (tests/ref/gen_nn_ops.py, float64 references stored as float32), plus
 * finite-difference checks of two composite blocks that do not depend on
 * torch, cross-checks between conv algorithms and thread counts, and the
 * accumulate / NULL-skip semantics.
 *
 * Error measure: max |got - ref| / rms(ref) per tensor, printed as a TAP
 * comment ("# parity OP TENSOR: ...") so the numbers are in the test log.
 *
 * Tolerances (justification): every op is fp32 arithmetic against a float64
 * reference, so the error is summation-order rounding: ~ sqrt(K) * 2^-24 for
 * a K-term dot product relative to the typical magnitude. With K <= a few
 * hundred here that is ~1e-6; we allow TOL = 1e-5 (10x margin) unless noted:
 *  - Winograd conv: the transforms add/subtract up to 16 products per
 *    output before the inverse transform (also +-, /2), a few more roundings
 *    than direct summation; measured max 1.1e-6 (same as im2col), allowed 2e-5.
 *  - gradients of normalization layers combine two reductions
 *    (dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat))): the
 *    difference of nearly equal terms loses a few bits: 2e-5.
 *  - the timestep embedding is computed exactly (double, rounded once) and
 *    checked to 2e-6 against sd_spec.md's float64 test vector; against
 *    diffusers' own fp32 result the allowance is 2e-4 absolute: torch rounds
 *    the argument t*f (up to 999 rad, ulp 6e-5) to fp32 before sin/cos.
 */
#include "test.h"

#include "backend/backend.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "nn/nn.h"

#include <stdint.h>

#define TOL 1e-5

static sd_backend *BE; /* the 2-thread CPU backend shared by most tests */

/* ---- small helpers ------------------------------------------------------------------------ */

#define POOL_MAX 512
static void *pool[POOL_MAX];
static int npool;

static void *keep(void *p) {
    if (npool == POOL_MAX) {
        fprintf(stderr, "test pool full\n");
        exit(2);
    }
    pool[npool++] = p;
    return p;
}
static void pool_free(void) {
    for (int i = 0; i < npool; i++) free(pool[i]);
    npool = 0;
}

static float *fbuf(size_t n) { return keep(sd_xcalloc(n ? n : 1, sizeof(float))); }
static float *fcopy(const float *x, size_t n) {
    float *p = fbuf(n);
    memcpy(p, x, n * sizeof(float));
    return p;
}
/* deterministic pseudo-random fill in [-a, a] */
static uint32_t lcg = 12345;
static float frand(void) {
    lcg = lcg * 1664525u + 1013904223u;
    return (float)((lcg >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static float *frandn(size_t n, float a) {
    float *p = fbuf(n);
    for (size_t i = 0; i < n; i++) p[i] = a * frand();
    return p;
}

typedef struct {
    sd_st_file *f;
    cJSON *params;
    char name[64];
} golden;

static int golden_open(golden *g, const char *name) {
    char path[1024];
    const char *root = getenv("SD_ROOT");
    snprintf(path, sizeof path, "%s/tests/ref/golden/nn/%s.safetensors", root && *root ? root : ".", name);
    snprintf(g->name, sizeof g->name, "%s", name);
    g->f = NULL;
    g->params = NULL;
    if (sd_st_open(path, &g->f)) {
        printf("# cannot open golden %s: %s\n", path, sd_last_error());
        return -1;
    }
    const char *pj = sd_st_meta(g->f, "params");
    if (!pj || sd_json_parse(pj, strlen(pj), name, &g->params)) {
        printf("# %s: no params metadata\n", name);
        sd_st_close(g->f);
        return -1;
    }
    return 0;
}
static void golden_close(golden *g) {
    cJSON_Delete(g->params);
    sd_st_close(g->f);
}
static int gi(golden *g, const char *k) { return sd_json_int(g->params, k, -1); }
static double gd(golden *g, const char *k) { return sd_json_num(g->params, k, 0.0); }

/* A golden tensor as a fresh float buffer; *n gets its element count. */
static float *gt(golden *g, const char *key, size_t *n) {
    const sd_st_tensor *t = sd_st_find(g->f, key);
    if (!t) {
        printf("# %s: missing tensor %s\n", g->name, key);
        test_cur_failed++;
        return fbuf(1);
    }
    float *p = fbuf((size_t)t->numel);
    CHECK_OK(sd_st_read_f32(g->f, t, p));
    if (n) *n = (size_t)t->numel;
    return p;
}

/* Compare got[n] to golden tensor `key`; returns the relative error. */
static double cmp_rel(golden *g, const char *what, const float *got, const char *key, size_t n, double tol) {
    size_t rn = 0;
    float *ref = gt(g, key, &rn);
    if (rn != n) {
        printf("# %s %s: size %zu, golden %zu\n", g->name, what, n, rn);
        test_cur_failed++;
        return 1e30;
    }
    double mab, rel;
    test_compare(got, ref, n, &mab, &rel);
    printf("# parity %-22s %-12s max|err|/rms = %.2e (max abs %.2e, tol %.0e)\n", g->name, what, rel, mab, tol);
    if (!(rel <= tol)) {
        printf("# %s %s: relative error %.3e > %.1e\n", g->name, what, rel, tol);
        test_cur_failed++;
    }
    return rel;
}

/* got - base, elementwise (to check += semantics) */
static float *minus(const float *got, const float *base, size_t n) {
    float *p = fbuf(n);
    for (size_t i = 0; i < n; i++) p[i] = got[i] - base[i];
    return p;
}

/* ---- linear / matmul ------------------------------------------------------------------------- */

static void linear_case(const char *name, int nt) {
    golden g;
    if (golden_open(&g, name)) { test_cur_failed++; return; }
    sd_backend *be = sd_backend_cpu_create(nt);
    int BT = gi(&g, "BT"), C = gi(&g, "C"), OC = gi(&g, "OC");
    int has_b = sd_st_find(g.f, "in.b") != NULL;
    float *x = gt(&g, "in.x", NULL), *w = gt(&g, "in.w", NULL), *b = has_b ? gt(&g, "in.b", NULL) : NULL;
    float *gy = gt(&g, "in.gy", NULL);
    float *y = fbuf((size_t)BT * OC);
    sd_linear_forward(be, y, x, w, b, BT, C, OC);
    cmp_rel(&g, "y", y, "out.y", (size_t)BT * OC, TOL);
    /* gradients accumulate onto pre-existing values */
    float *gx0 = frandn((size_t)BT * C, 1), *gw0 = frandn((size_t)OC * C, 1), *gb0 = frandn(OC, 1);
    float *gx = fcopy(gx0, (size_t)BT * C), *gw = fcopy(gw0, (size_t)OC * C), *gb = fcopy(gb0, OC);
    sd_linear_backward(be, gx, gw, has_b ? gb : NULL, gy, x, w, BT, C, OC);
    cmp_rel(&g, "dx", minus(gx, gx0, (size_t)BT * C), "grad.x", (size_t)BT * C, TOL);
    cmp_rel(&g, "dw", minus(gw, gw0, (size_t)OC * C), "grad.w", (size_t)OC * C, TOL);
    if (has_b) cmp_rel(&g, "db", minus(gb, gb0, OC), "grad.b", OC, TOL);
    /* NULL skips: only dw requested, dx untouched */
    float *gx2 = fcopy(gx0, (size_t)BT * C), *gw2 = fbuf((size_t)OC * C);
    sd_linear_backward(be, NULL, gw2, NULL, gy, x, NULL, BT, C, OC);
    cmp_rel(&g, "dw(only)", gw2, "grad.w", (size_t)OC * C, TOL);
    CHECK(memcmp(gx2, gx0, (size_t)BT * C * sizeof(float)) == 0);
    sd_backend_destroy(be);
    golden_close(&g);
}

TEST(linear_parity) {
    for (int nt = 1; nt <= 3; nt++) {
        linear_case("linear", nt);
        linear_case("linear_nobias", nt);
    }
    pool_free();
}

TEST(linear_large_threaded) {
    /* big enough for the threaded GEMM split and the partial column sums */
    int BT = 300, C = 70, OC = 130;
    float *x = frandn((size_t)BT * C, 1), *w = frandn((size_t)OC * C, 0.2f), *b = frandn(OC, 1);
    float *gy = frandn((size_t)BT * OC, 1);
    float *y1 = fbuf((size_t)BT * OC), *y2 = fbuf((size_t)BT * OC);
    float *gx1 = fbuf((size_t)BT * C), *gx2 = fbuf((size_t)BT * C), *gw1 = fbuf((size_t)OC * C),
          *gw2 = fbuf((size_t)OC * C), *gb1 = fbuf(OC), *gb2 = fbuf(OC);
    sd_backend *b1 = sd_backend_cpu_create(1), *b3 = sd_backend_cpu_create(3);
    sd_linear_forward(b1, y1, x, w, b, BT, C, OC);
    sd_linear_forward(b3, y2, x, w, b, BT, C, OC);
    sd_linear_backward(b1, gx1, gw1, gb1, gy, x, w, BT, C, OC);
    sd_linear_backward(b3, gx2, gw2, gb2, gy, x, w, BT, C, OC);
    double mab, rel;
    test_compare(y2, y1, (size_t)BT * OC, &mab, &rel);
    CHECK(rel < 1e-5); /* rounding-level: a wrong split would be O(1) */
    test_compare(gx2, gx1, (size_t)BT * C, &mab, &rel);
    CHECK(rel < 1e-5);
    test_compare(gw2, gw1, (size_t)OC * C, &mab, &rel);
    CHECK(rel < 1e-5);
    test_compare(gb2, gb1, OC, &mab, &rel);
    CHECK(rel < 1e-5);
    /* an explicit check of one output and one bias-gradient element */
    double s = b[3];
    for (int c = 0; c < C; c++) s += (double)x[5 * C + c] * w[3 * C + c];
    CHECK_NEAR(y1[5 * OC + 3], s, 1e-4);
    double sb = 0;
    for (int r = 0; r < BT; r++) sb += gy[(size_t)r * OC + 7];
    CHECK_NEAR(gb2[7], sb, 1e-3);
    sd_backend_destroy(b1);
    sd_backend_destroy(b3);
    pool_free();
}

TEST(matmul_parity) {
    const char *names[] = {"matmul_t00", "matmul_t01", "matmul_t10", "matmul_t11"};
    for (int i = 0; i < 4; i++) {
        golden g;
        if (golden_open(&g, names[i])) { test_cur_failed++; continue; }
        int M = gi(&g, "M"), N = gi(&g, "N"), K = gi(&g, "K"), batch = gi(&g, "batch");
        int ta = gi(&g, "ta"), tb = gi(&g, "tb");
        float alpha = (float)gd(&g, "alpha"), beta = (float)gd(&g, "beta");
        float *A = gt(&g, "in.A", NULL), *B = gt(&g, "in.B", NULL), *C = gt(&g, "in.C", NULL);
        sd_matmul(BE, ta, tb, M, N, K, alpha, A, ta ? M : K, (long long)M * K, B, tb ? K : N, (long long)K * N, beta,
                  C, N, (long long)M * N, batch);
        cmp_rel(&g, "y", C, "out.y", (size_t)batch * M * N, TOL);
        golden_close(&g);
    }
    pool_free();
}

/* ---- conv2d ------------------------------------------------------------------------------------ */

static const char *algo_name(int a) { return a == SD_CONV_IM2COL ? "im2col" : a == SD_CONV_WINOGRAD ? "winograd" : "auto"; }

static void conv_case(const char *name) {
    golden g;
    if (golden_open(&g, name)) { test_cur_failed++; return; }
    int B = gi(&g, "B"), C = gi(&g, "C"), H = gi(&g, "H"), W = gi(&g, "W"), OC = gi(&g, "OC"), k = gi(&g, "k");
    sd_conv2d_desc d = sd_conv2d_init_pad(B, C, H, W, OC, k, k, gi(&g, "stride"), gi(&g, "pad_t"), gi(&g, "pad_b"),
                                          gi(&g, "pad_l"), gi(&g, "pad_r"));
    size_t nx = (size_t)B * C * H * W, nw = (size_t)OC * C * k * k, ny = (size_t)B * OC * d.OH * d.OW;
    float *x = gt(&g, "in.x", NULL), *w = gt(&g, "in.w", NULL), *b = gt(&g, "in.b", NULL), *gy = gt(&g, "in.gy", NULL);
    int wino_able = k == 3 && d.stride == 1;
    /* runs 1-3: 1-3 threads; 4: 2 threads with the Winograd GEMMs on OpenBLAS
     * (SD_WINO_BLAS); 5, 6: 2 threads with 32-tile Winograd chunks (SD_WINO_TC),
     * so the per-thread-chunk mode runs too, with our kernel and with OpenBLAS */
    for (int nt = 1; nt <= 6; nt++) {
        if (nt == 4 || nt == 6) setenv("SD_WINO_BLAS", "1", 1);
        if (nt >= 5) setenv("SD_WINO_TC", "32", 1);
        sd_backend *be = sd_backend_cpu_create(nt >= 4 ? 2 : nt);
        unsetenv("SD_WINO_BLAS");
        unsetenv("SD_WINO_TC");
        for (int algo = SD_CONV_AUTO; algo <= SD_CONV_WINOGRAD; algo++) {
            if (algo == SD_CONV_WINOGRAD && !wino_able) continue;
            if (nt != 2 && algo == SD_CONV_AUTO) continue;
            if (nt >= 4 && algo != SD_CONV_WINOGRAD) continue;
            sd_backend_cpu_set_conv_algo(be, algo);
            double tol = algo == SD_CONV_WINOGRAD ? 2e-5 : TOL;
            char what[64];
            float *y = fbuf(ny);
            sd_conv2d_forward(be, &d, y, x, w, b);
            snprintf(what, sizeof what, "y/%s/%d", algo_name(algo), nt);
            cmp_rel(&g, what, y, "out.y", ny, tol);
            float *gx0 = frandn(nx, 1), *gw0 = frandn(nw, 1), *gb0 = frandn(OC, 1);
            float *gx = fcopy(gx0, nx), *gw = fcopy(gw0, nw), *gb = fcopy(gb0, OC);
            sd_conv2d_backward(be, &d, gx, gw, gb, gy, x, w);
            snprintf(what, sizeof what, "dx/%s/%d", algo_name(algo), nt);
            cmp_rel(&g, what, minus(gx, gx0, nx), "grad.x", nx, tol);
            snprintf(what, sizeof what, "dw/%s/%d", algo_name(algo), nt);
            cmp_rel(&g, what, minus(gw, gw0, nw), "grad.w", nw, tol);
            snprintf(what, sizeof what, "db/%s/%d", algo_name(algo), nt);
            cmp_rel(&g, what, minus(gb, gb0, OC), "grad.b", OC, TOL);
        }
        /* weight gradient only (LoRA-style frozen input path) */
        float *gw = fbuf(nw);
        sd_conv2d_backward(be, &d, NULL, gw, NULL, gy, x, NULL);
        cmp_rel(&g, "dw(only)", gw, "grad.w", nw, 2e-5);
        sd_backend_destroy(be);
    }
    golden_close(&g);
    pool_free();
}

TEST(conv_k3s1p1) { conv_case("conv_k3s1p1"); }
TEST(conv_k3s1p1_multi) { conv_case("conv_k3s1p1_multi"); }
TEST(conv_k3s1p0) { conv_case("conv_k3s1p0"); }
TEST(conv_k3s1_big) { conv_case("conv_k3s1_big"); }
TEST(conv_k3s1p2) { conv_case("conv_k3s1p2"); }
TEST(conv_k3s2p1) { conv_case("conv_k3s2p1"); }
TEST(conv_vae_down) { conv_case("conv_vae_down"); }
TEST(conv_k1) { conv_case("conv_k1"); }

TEST(conv_algorithms_agree) {
    /* a mid-size case where AUTO picks Winograd; im2col and Winograd agree */
    sd_conv2d_desc d = sd_conv2d_init(2, 32, 17, 19, 24, 3, 1, 1);
    size_t nx = (size_t)2 * 32 * 17 * 19, nw = (size_t)24 * 32 * 9, ny = (size_t)2 * 24 * 17 * 19;
    float *x = frandn(nx, 1), *w = frandn(nw, 0.1f), *b = frandn(24, 1), *gy = frandn(ny, 1);
    float *y[2], *gx[2], *gw[2], *gb[2];
    for (int a = 0; a < 2; a++) {
        sd_backend_cpu_set_conv_algo(BE, a == 0 ? SD_CONV_IM2COL : SD_CONV_WINOGRAD);
        y[a] = fbuf(ny), gx[a] = fbuf(nx), gw[a] = fbuf(nw), gb[a] = fbuf(24);
        sd_conv2d_forward(BE, &d, y[a], x, w, b);
        sd_conv2d_backward(BE, &d, gx[a], gw[a], gb[a], gy, x, w);
    }
    sd_backend_cpu_set_conv_algo(BE, SD_CONV_AUTO);
    double mab, rel;
    test_compare(y[1], y[0], ny, &mab, &rel);
    printf("# winograd vs im2col: y %.2e", rel);
    CHECK(rel < 2e-5);
    test_compare(gx[1], gx[0], nx, &mab, &rel);
    printf(" dx %.2e", rel);
    CHECK(rel < 2e-5);
    test_compare(gw[1], gw[0], nw, &mab, &rel);
    printf(" dw %.2e\n", rel);
    CHECK(rel < 2e-5);
    pool_free();
}

/* ---- norms ----------------------------------------------------------------------------------------- */

static void groupnorm_case(const char *name) {
    golden g;
    if (golden_open(&g, name)) { test_cur_failed++; return; }
    int B = gi(&g, "B"), C = gi(&g, "C"), HW = gi(&g, "HW"), G = gi(&g, "G"), silu = gi(&g, "silu");
    float eps = (float)gd(&g, "eps");
    size_t n = (size_t)B * C * HW;
    float *x = gt(&g, "in.x", NULL), *ga = gt(&g, "in.gamma", NULL), *bt = gt(&g, "in.beta", NULL);
    float *gy = gt(&g, "in.gy", NULL);
    for (int nt = 1; nt <= 2; nt++) {
        sd_backend *be = sd_backend_cpu_create(nt);
        float *y = fbuf(n), *mean = fbuf((size_t)B * G), *rstd = fbuf((size_t)B * G);
        sd_groupnorm_forward(be, y, mean, rstd, x, ga, bt, B, C, HW, G, eps, silu);
        cmp_rel(&g, "y", y, "out.y", n, TOL);
        cmp_rel(&g, "mean", mean, "out.mean", (size_t)B * G, TOL);
        cmp_rel(&g, "rstd", rstd, "out.rstd", (size_t)B * G, TOL);
        float *gx0 = frandn(n, 1), *gg0 = frandn(C, 1), *gb0 = frandn(C, 1);
        float *gx = fcopy(gx0, n), *gg = fcopy(gg0, C), *gb = fcopy(gb0, C);
        sd_groupnorm_backward(be, gx, gg, gb, gy, x, mean, rstd, ga, bt, B, C, HW, G, silu);
        cmp_rel(&g, "dx", minus(gx, gx0, n), "grad.x", n, 2e-5);
        cmp_rel(&g, "dgamma", minus(gg, gg0, C), "grad.gamma", C, 2e-5);
        cmp_rel(&g, "dbeta", minus(gb, gb0, C), "grad.beta", C, 2e-5);
        /* in place forward gives the same output */
        float *xi = fcopy(x, n);
        sd_groupnorm_forward(be, xi, mean, rstd, xi, ga, bt, B, C, HW, G, eps, silu);
        CHECK(memcmp(xi, y, n * sizeof(float)) == 0);
        sd_backend_destroy(be);
    }
    golden_close(&g);
    pool_free();
}

TEST(groupnorm) { groupnorm_case("groupnorm"); }
TEST(groupnorm_silu) { groupnorm_case("groupnorm_silu"); }
TEST(groupnorm_g1) { groupnorm_case("groupnorm_g1"); }

TEST(layernorm) {
    golden g;
    if (golden_open(&g, "layernorm")) { test_cur_failed++; return; }
    int N = gi(&g, "N"), C = gi(&g, "C");
    float eps = (float)gd(&g, "eps");
    float *x = gt(&g, "in.x", NULL), *w = gt(&g, "in.w", NULL), *b = gt(&g, "in.b", NULL), *gy = gt(&g, "in.gy", NULL);
    float *y = fbuf((size_t)N * C), *mean = fbuf(N), *rstd = fbuf(N);
    sd_layernorm_forward(BE, y, mean, rstd, x, w, b, N, C, eps);
    cmp_rel(&g, "y", y, "out.y", (size_t)N * C, TOL);
    cmp_rel(&g, "mean", mean, "out.mean", N, TOL);
    cmp_rel(&g, "rstd", rstd, "out.rstd", N, TOL);
    float *gx0 = frandn((size_t)N * C, 1), *gw0 = frandn(C, 1), *gb0 = frandn(C, 1);
    float *gx = fcopy(gx0, (size_t)N * C), *gw = fcopy(gw0, C), *gb = fcopy(gb0, C);
    sd_layernorm_backward(BE, gx, gw, gb, gy, x, mean, rstd, w, N, C);
    cmp_rel(&g, "dx", minus(gx, gx0, (size_t)N * C), "grad.x", (size_t)N * C, 2e-5);
    cmp_rel(&g, "dw", minus(gw, gw0, C), "grad.w", C, 2e-5);
    cmp_rel(&g, "db", minus(gb, gb0, C), "grad.b", C, 2e-5);
    golden_close(&g);
    pool_free();
}

TEST(layernorm_threaded) {
    /* large enough to take the per-thread partial-sum path; 1 vs 3 threads */
    int N = 700, C = 40;
    float *x = frandn((size_t)N * C, 2), *w = frandn(C, 1), *b = frandn(C, 1), *gy = frandn((size_t)N * C, 1);
    float *m = fbuf(N), *r = fbuf(N), *y = fbuf((size_t)N * C);
    float *g1[3] = {fbuf((size_t)N * C), fbuf(C), fbuf(C)}, *g3[3] = {fbuf((size_t)N * C), fbuf(C), fbuf(C)};
    sd_backend *b1 = sd_backend_cpu_create(1), *b3 = sd_backend_cpu_create(3);
    sd_layernorm_forward(b1, y, m, r, x, w, b, N, C, 1e-5f);
    sd_layernorm_backward(b1, g1[0], g1[1], g1[2], gy, x, m, r, w, N, C);
    sd_layernorm_backward(b3, g3[0], g3[1], g3[2], gy, x, m, r, w, N, C);
    double mab, rel;
    test_compare(g3[0], g1[0], (size_t)N * C, &mab, &rel);
    CHECK(rel < 1e-6);
    test_compare(g3[1], g1[1], C, &mab, &rel);
    CHECK(rel < 1e-5);
    test_compare(g3[2], g1[2], C, &mab, &rel);
    CHECK(rel < 1e-5);
    double s = 0;
    for (int i = 0; i < N; i++) s += gy[(size_t)i * C + 5];
    CHECK_NEAR(g3[2][5], s, 1e-3);
    sd_backend_destroy(b1);
    sd_backend_destroy(b3);
    pool_free();
}

/* ---- activations -------------------------------------------------------------------------------------- */

TEST(activations) {
    const char *names[] = {"silu", "gelu", "quick_gelu"};
    for (int i = 0; i < 3; i++) {
        golden g;
        if (golden_open(&g, names[i])) { test_cur_failed++; continue; }
        size_t n;
        float *x = gt(&g, "in.x", &n), *gy = gt(&g, "in.gy", NULL), *y = fbuf(n);
        void (*fw)(sd_backend *, float *, const float *, size_t) =
            i == 0 ? sd_silu_forward : i == 1 ? sd_gelu_forward : sd_quick_gelu_forward;
        void (*bw)(sd_backend *, float *, const float *, const float *, size_t) =
            i == 0 ? sd_silu_backward : i == 1 ? sd_gelu_backward : sd_quick_gelu_backward;
        fw(BE, y, x, n);
        cmp_rel(&g, "y", y, "out.y", n, TOL);
        float *gx0 = frandn(n, 1), *gx = fcopy(gx0, n);
        bw(BE, gx, gy, x, n);
        cmp_rel(&g, "dx", minus(gx, gx0, n), "grad.x", n, TOL);
        /* in place */
        float *xi = fcopy(x, n);
        fw(BE, xi, xi, n);
        CHECK(memcmp(xi, y, n * sizeof(float)) == 0);
        golden_close(&g);
    }
    /* a long vector: the threaded path equals the serial one */
    size_t n = 100000;
    float *x = frandn(n, 8), *y1 = fbuf(n), *y2 = fbuf(n);
    sd_backend *b1 = sd_backend_cpu_create(1);
    sd_gelu_forward(b1, y1, x, n);
    sd_gelu_forward(BE, y2, x, n);
    CHECK(memcmp(y1, y2, n * sizeof(float)) == 0);
    CHECK_NEAR(y1[0], 0.5 * x[0] * (1 + erf(x[0] / sqrt(2.0))), 1e-6 * (1 + fabs(x[0])));
    sd_backend_destroy(b1);
    pool_free();
}

TEST(geglu) {
    golden g;
    if (golden_open(&g, "geglu")) { test_cur_failed++; return; }
    int N = gi(&g, "N"), D = gi(&g, "D");
    float *x = gt(&g, "in.x", NULL), *gy = gt(&g, "in.gy", NULL), *y = fbuf((size_t)N * D);
    sd_geglu_forward(BE, y, x, N, D);
    cmp_rel(&g, "y", y, "out.y", (size_t)N * D, TOL);
    float *gx0 = frandn((size_t)N * 2 * D, 1), *gx = fcopy(gx0, (size_t)N * 2 * D);
    sd_geglu_backward(BE, gx, gy, x, N, D);
    cmp_rel(&g, "dx", minus(gx, gx0, (size_t)N * 2 * D), "grad.x", (size_t)N * 2 * D, TOL);
    golden_close(&g);
    pool_free();
}

TEST(softmax) {
    golden g;
    if (golden_open(&g, "softmax")) { test_cur_failed++; return; }
    int N = gi(&g, "N"), C = gi(&g, "C");
    float *x = gt(&g, "in.x", NULL), *gy = gt(&g, "in.gy", NULL), *y = fbuf((size_t)N * C);
    sd_softmax_forward(BE, y, x, N, C);
    cmp_rel(&g, "y", y, "out.y", (size_t)N * C, TOL);
    float *gx0 = frandn((size_t)N * C, 1), *gx = fcopy(gx0, (size_t)N * C);
    sd_softmax_backward(BE, gx, gy, y, N, C);
    cmp_rel(&g, "dx", minus(gx, gx0, (size_t)N * C), "grad.x", (size_t)N * C, TOL);
    golden_close(&g);
    pool_free();
}

/* ---- attention ------------------------------------------------------------------------------------------- */

static void attn_case(const char *name) {
    golden g;
    if (golden_open(&g, name)) { test_cur_failed++; return; }
    int B = gi(&g, "B"), H = gi(&g, "H"), Nq = gi(&g, "Nq"), Nk = gi(&g, "Nk"), D = gi(&g, "D");
    int causal = gi(&g, "causal"), C = H * D;
    size_t nq = (size_t)B * Nq * C, nk = (size_t)B * Nk * C;
    float *q = gt(&g, "in.q", NULL), *k = gt(&g, "in.k", NULL), *v = gt(&g, "in.v", NULL), *gy = gt(&g, "in.gy", NULL);
    sd_attn_desc d = sd_attn_init(B, H, Nq, Nk, D, causal);
    /* automatic query blocks (one block for these small cases) and forced
     * 32-query blocks (several blocks; private dK/dV sums when heads < threads) */
    for (int run = 0; run < 6; run++) {
        int nt = 1 + run % 3, forced = run >= 3;
        setenv("SD_ATTN_QB", forced ? "32" : "0", 1);
        sd_backend *be = sd_backend_cpu_create(nt);
        unsetenv("SD_ATTN_QB");
        float *y = fbuf(nq), *lse = fbuf((size_t)B * H * Nq);
        char what[32];
        sd_attention_forward(be, &d, y, lse, q, k, v);
        snprintf(what, sizeof what, "y/%s/%d", forced ? "qb32" : "auto", nt);
        cmp_rel(&g, what, y, "out.y", nq, TOL);
        cmp_rel(&g, "lse", lse, "out.lse", (size_t)B * H * Nq, TOL);
        float *gq0 = frandn(nq, 1), *gk0 = frandn(nk, 1), *gv0 = frandn(nk, 1);
        float *gq = fcopy(gq0, nq), *gk = fcopy(gk0, nk), *gv = fcopy(gv0, nk);
        sd_attention_backward(be, &d, gq, gk, gv, gy, q, k, v, y, lse);
        snprintf(what, sizeof what, "dq/%s/%d", forced ? "qb32" : "auto", nt);
        cmp_rel(&g, what, minus(gq, gq0, nq), "grad.q", nq, TOL);
        snprintf(what, sizeof what, "dk/%s/%d", forced ? "qb32" : "auto", nt);
        cmp_rel(&g, what, minus(gk, gk0, nk), "grad.k", nk, TOL);
        snprintf(what, sizeof what, "dv/%s/%d", forced ? "qb32" : "auto", nt);
        cmp_rel(&g, what, minus(gv, gv0, nk), "grad.v", nk, TOL);
        /* only dk requested: dq, dv untouched */
        float *gk2 = fbuf(nk);
        sd_attention_backward(be, &d, NULL, gk2, NULL, gy, q, k, v, y, lse);
        cmp_rel(&g, "dk(only)", gk2, "grad.k", nk, TOL);
        sd_backend_destroy(be);
    }
    /* Fused-projection layout: q, k, v as column views of one [B, N, 3C]
     * buffer (self-attention only), output into a wider [B, N, C+3] buffer. */
    if (Nq == Nk) {
        int ld = 3 * C, ldo = C + 3;
        float *qkv = fbuf((size_t)B * Nq * ld), *o = frandn((size_t)B * Nq * ldo, 1), *lse = fbuf((size_t)B * H * Nq);
        float *go = fbuf((size_t)B * Nq * ldo), *gqkv = fbuf((size_t)B * Nq * ld);
        for (int r = 0; r < B * Nq; r++) {
            memcpy(qkv + (size_t)r * ld, q + (size_t)r * C, C * sizeof(float));
            memcpy(qkv + (size_t)r * ld + C, k + (size_t)r * C, C * sizeof(float));
            memcpy(qkv + (size_t)r * ld + 2 * C, v + (size_t)r * C, C * sizeof(float));
            memcpy(go + (size_t)r * ldo, gy + (size_t)r * C, C * sizeof(float));
        }
        sd_attn_desc f = d;
        f.ldq = f.ldk = f.ldv = ld;
        f.ldo = ldo;
        sd_attention_forward(BE, &f, o, lse, qkv, qkv + C, qkv + 2 * C);
        sd_attention_backward(BE, &f, gqkv, gqkv + C, gqkv + 2 * C, go, qkv, qkv + C, qkv + 2 * C, o, lse);
        float *y = fbuf(nq), *gq = fbuf(nq), *gk = fbuf(nq), *gv = fbuf(nq);
        for (int r = 0; r < B * Nq; r++) {
            memcpy(y + (size_t)r * C, o + (size_t)r * ldo, C * sizeof(float));
            memcpy(gq + (size_t)r * C, gqkv + (size_t)r * ld, C * sizeof(float));
            memcpy(gk + (size_t)r * C, gqkv + (size_t)r * ld + C, C * sizeof(float));
            memcpy(gv + (size_t)r * C, gqkv + (size_t)r * ld + 2 * C, C * sizeof(float));
        }
        cmp_rel(&g, "y/strided", y, "out.y", nq, TOL);
        cmp_rel(&g, "dq/strided", gq, "grad.q", nq, TOL);
        cmp_rel(&g, "dk/strided", gk, "grad.k", nq, TOL);
        cmp_rel(&g, "dv/strided", gv, "grad.v", nq, TOL);
    }
    golden_close(&g);
    pool_free();
}

TEST(attn_self) { attn_case("attn_self"); }
TEST(attn_causal) { attn_case("attn_causal"); }
TEST(attn_cross) { attn_case("attn_cross"); }
TEST(attn_onehead) { attn_case("attn_onehead"); }

/* ---- small ops ------------------------------------------------------------------------------------------- */

TEST(add_channel) {
    golden g;
    if (golden_open(&g, "add_channel")) { test_cur_failed++; return; }
    int B = gi(&g, "B"), C = gi(&g, "C"), HW = gi(&g, "HW");
    size_t n = (size_t)B * C * HW;
    float *x = gt(&g, "in.x", NULL), *v = gt(&g, "in.v", NULL), *gy = gt(&g, "in.gy", NULL), *y = fbuf(n);
    sd_add_channel_forward(BE, y, x, v, B, C, HW);
    cmp_rel(&g, "y", y, "out.y", n, TOL);
    float *gx = fbuf(n), *gv = fbuf((size_t)B * C);
    sd_add_channel_backward(BE, gx, gv, gy, B, C, HW);
    cmp_rel(&g, "dx", gx, "grad.x", n, TOL);
    cmp_rel(&g, "dv", gv, "grad.v", (size_t)B * C, TOL);
    golden_close(&g);
    pool_free();
}

TEST(upsample) {
    const char *names[] = {"upsample2x", "upsample_size", "upsample_size2"};
    for (int i = 0; i < 3; i++) {
        golden g;
        if (golden_open(&g, names[i])) { test_cur_failed++; continue; }
        int B = gi(&g, "B"), C = gi(&g, "C"), H = gi(&g, "H"), W = gi(&g, "W"), OH = gi(&g, "OH"), OW = gi(&g, "OW");
        size_t nx = (size_t)B * C * H * W, ny = (size_t)B * C * OH * OW;
        float *x = gt(&g, "in.x", NULL), *gy = gt(&g, "in.gy", NULL), *y = fbuf(ny), *gx = fbuf(nx);
        sd_upsample_nearest_forward(BE, y, x, B, C, H, W, OH, OW);
        cmp_rel(&g, "y", y, "out.y", ny, 0); /* a copy: exact */
        sd_upsample_nearest_backward(BE, gx, gy, B, C, H, W, OH, OW);
        cmp_rel(&g, "dx", gx, "grad.x", nx, TOL);
        golden_close(&g);
    }
    pool_free();
}

TEST(embedding) {
    golden g;
    if (golden_open(&g, "embedding")) { test_cur_failed++; return; }
    int B = gi(&g, "B"), L = gi(&g, "L"), C = gi(&g, "C"), V = gi(&g, "V");
    float *idsf = gt(&g, "in.ids", NULL), *tok = gt(&g, "in.tok", NULL), *pos = gt(&g, "in.pos", NULL);
    float *gy = gt(&g, "in.gy", NULL);
    int32_t ids[64];
    for (int i = 0; i < B * L; i++) ids[i] = (int32_t)idsf[i];
    float *y = fbuf((size_t)B * L * C), *gt_ = fbuf((size_t)V * C), *gp = fbuf((size_t)L * C);
    sd_embedding_forward(BE, y, ids, tok, pos, B, L, C, V);
    cmp_rel(&g, "y", y, "out.y", (size_t)B * L * C, TOL);
    sd_embedding_backward(BE, gt_, gp, gy, ids, B, L, C, V);
    cmp_rel(&g, "dtok", gt_, "grad.tok", (size_t)V * C, TOL);
    cmp_rel(&g, "dpos", gp, "grad.pos", (size_t)L * C, TOL);
    golden_close(&g);
    pool_free();
}

TEST(mse) {
    const char *names[] = {"mse", "mse_weighted"};
    for (int i = 0; i < 2; i++) {
        golden g;
        if (golden_open(&g, names[i])) { test_cur_failed++; continue; }
        int B = gi(&g, "B"), n = gi(&g, "n");
        float dloss = (float)gd(&g, "dloss");
        float *p = gt(&g, "in.pred", NULL), *t = gt(&g, "in.target", NULL);
        float *w = i ? gt(&g, "in.w", NULL) : NULL;
        float loss, per[8], *gp = fbuf((size_t)B * n);
        sd_mse_forward(BE, &loss, per, p, t, w, B, (size_t)n);
        cmp_rel(&g, "loss", &loss, "out.loss", 1, TOL);
        cmp_rel(&g, "per_sample", per, "out.per_sample", B, TOL);
        sd_mse_backward(BE, gp, p, t, w, B, (size_t)n, dloss);
        cmp_rel(&g, "dpred", gp, "grad.pred", (size_t)B * n, TOL);
        golden_close(&g);
    }
    pool_free();
}

TEST(timestep_embedding) {
    const char *names[] = {"timestep", "timestep_odd"};
    for (int i = 0; i < 2; i++) {
        golden g;
        if (golden_open(&g, names[i])) { test_cur_failed++; continue; }
        int B = gi(&g, "B"), dim = gi(&g, "dim");
        float *t = gt(&g, "in.t", NULL), *y = fbuf((size_t)B * dim);
        sd_timestep_embedding(BE, y, t, B, dim, gi(&g, "flip"), (float)gd(&g, "shift"), 10000.0f);
        size_t n;
        float *ref = gt(&g, "out.y", &n);
        double mab, rel;
        test_compare(y, ref, n, &mab, &rel);
        printf("# parity %-22s y            max abs err = %.2e (tol 2e-4)\n", g.name, mab);
        CHECK(n == (size_t)B * dim && mab <= 2e-4);
        golden_close(&g);
    }
    /* sd_spec.md §1.2 test vector: t = 981, dim 320, flip_sin_to_cos, shift 0 */
    float t = 981.0f, e[320];
    sd_timestep_embedding(BE, e, &t, 1, 320, 1, 0.0f, 10000.0f);
    CHECK_NEAR(e[0], 0.679957, 2e-6);
    CHECK_NEAR(e[1], -0.798430, 2e-6);
    CHECK_NEAR(e[2], 0.578088, 2e-6);
    CHECK_NEAR(e[160], 0.733252, 2e-6);
    CHECK_NEAR(e[161], 0.602088, 2e-6);
    CHECK_NEAR(e[162], 0.815974, 2e-6);
    CHECK_NEAR(e[319], 0.103726, 2e-6);
    pool_free();
}

TEST(concat_permute_blas1) {
    int B = 2, C1 = 3, C2 = 5, HW = 7;
    float *a = frandn((size_t)B * C1 * HW, 1), *b = frandn((size_t)B * C2 * HW, 1);
    float *o = fbuf((size_t)B * (C1 + C2) * HW);
    sd_concat_channels_forward(BE, o, a, b, B, C1, C2, HW);
    int ok = 1;
    for (int bi = 0; bi < B; bi++)
        for (int c = 0; c < C1 + C2; c++)
            for (int i = 0; i < HW; i++) {
                float want = c < C1 ? a[((size_t)bi * C1 + c) * HW + i] : b[((size_t)bi * C2 + c - C1) * HW + i];
                ok &= o[((size_t)bi * (C1 + C2) + c) * HW + i] == want;
            }
    CHECK(ok);
    float *da = frandn((size_t)B * C1 * HW, 1), *da0 = fcopy(da, (size_t)B * C1 * HW), *db = fbuf((size_t)B * C2 * HW);
    sd_concat_channels_backward(BE, da, db, o, B, C1, C2, HW);
    ok = 1;
    for (size_t i = 0; i < (size_t)B * C1 * HW; i++) ok &= da[i] == da0[i] + a[i];
    for (size_t i = 0; i < (size_t)B * C2 * HW; i++) ok &= db[i] == b[i];
    CHECK(ok);

    /* NCHW -> NHWC -> NCHW round trip, odd sizes spanning several 32x32 tiles */
    int C = 37, P = 45;
    float *x = frandn((size_t)B * C * P, 1), *t = fbuf((size_t)B * C * P), *back = fbuf((size_t)B * C * P);
    sd_nchw_to_nhwc_forward(BE, t, x, B, C, P);
    CHECK(t[((size_t)1 * P + 40) * C + 33] == x[((size_t)1 * C + 33) * P + 40]);
    sd_nhwc_to_nchw_forward(BE, back, t, B, C, P);
    CHECK(memcmp(back, x, (size_t)B * C * P * sizeof(float)) == 0);
    float *g = frandn((size_t)B * C * P, 1), *g0 = fcopy(g, (size_t)B * C * P);
    sd_nchw_to_nhwc_backward(BE, g, t, B, C, P); /* g += permute back of t = x */
    ok = 1;
    for (size_t i = 0; i < (size_t)B * C * P; i++) ok &= g[i] == g0[i] + x[i];
    CHECK(ok);
    float *g2 = fbuf((size_t)B * C * P);
    sd_nhwc_to_nchw_backward(BE, g2, x, B, C, P);
    CHECK(memcmp(g2, t, (size_t)B * C * P * sizeof(float)) == 0);

    /* BLAS-1 and reductions (also over the threaded size) */
    size_t n = 100003;
    float *y = frandn(n, 1), *z = frandn(n, 1), *y0 = fcopy(y, n);
    sd_axpy(BE, y, -0.5f, z, n);
    CHECK(y[777] == y0[777] + -0.5f * z[777]);
    sd_scale(BE, y, 2.0f, n);
    CHECK(y[n - 1] == 2.0f * (y0[n - 1] + -0.5f * z[n - 1]));
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)z[i] * z[i];
    float got;
    sd_sumsq(BE, &got, z, n);
    CHECK_NEAR(got, ss, 1e-6 * ss);
    float *s = fbuf(n);
    sd_add_forward(BE, s, y0, z, n);
    CHECK(s[12345] == y0[12345] + z[12345]);
    float *ga = fbuf(n);
    sd_add_backward(BE, ga, ga, z, n); /* da == db: gets the gradient twice */
    CHECK(ga[99] == 2 * z[99]);
    pool_free();
}

/* ---- finite differences on composite blocks -------------------------------------------------------------
 * L(theta) = sum(out * R). The analytic directional derivative <grad, v>
 * must match (L(theta + e v) - L(theta - e v)) / 2e for random directions v.
 * Central differences have O(e^2) truncation (~1e-4 relative at e = 1e-2 on
 * unit-scale inputs) and rounding noise ~ eps_f32 * sum|out R| / 2e ~ 5e-5
 * absolute here. We require |numeric - analytic| <= 2e-3 |analytic| + 1e-4;
 * a missing or wrong gradient term is off by O(|analytic|), far above that. */
static int fd_ok(double an, double fd) { return fabs(fd - an) <= 2e-3 * fabs(an) + 1e-4; }

typedef struct {
    int B, C, H, W, OC, G;
    float *x, *gn1_g, *gn1_b, *w1, *b1, *temb, *gn2_g, *gn2_b, *w2, *b2, *ws, *bs, *R;
} resblock;

static double resblock_fwd(const resblock *r, float *out, float *save[8]) {
    int B = r->B, C = r->C, OC = r->OC, HW = r->H * r->W, G = r->G;
    sd_conv2d_desc c1 = sd_conv2d_init(B, C, r->H, r->W, OC, 3, 1, 1), c2 = sd_conv2d_init(B, OC, r->H, r->W, OC, 3, 1, 1);
    sd_conv2d_desc cs = sd_conv2d_init(B, C, r->H, r->W, OC, 1, 1, 0);
    float *h1 = save[0], *m1 = save[1], *r1 = save[2], *h2 = save[3], *h3 = save[4], *m2 = save[5], *r2 = save[6],
          *h4 = save[7];
    sd_groupnorm_forward(BE, h1, m1, r1, r->x, r->gn1_g, r->gn1_b, B, C, HW, G, 1e-5f, 1);
    sd_conv2d_forward(BE, &c1, h2, h1, r->w1, r->b1);
    sd_add_channel_forward(BE, h2, h2, r->temb, B, OC, HW);
    sd_groupnorm_forward(BE, h3, m2, r2, h2, r->gn2_g, r->gn2_b, B, OC, HW, G, 1e-5f, 1);
    sd_conv2d_forward(BE, &c2, h4, h3, r->w2, r->b2);
    sd_conv2d_forward(BE, &cs, out, r->x, r->ws, r->bs);
    sd_add_forward(BE, out, out, h4, (size_t)B * OC * HW);
    double L = 0;
    for (size_t i = 0; i < (size_t)B * OC * HW; i++) L += (double)out[i] * r->R[i];
    return L;
}

TEST(fd_resnet_block) {
    resblock r = {.B = 2, .C = 4, .H = 6, .W = 5, .OC = 6, .G = 2};
    int B = r.B, C = r.C, OC = r.OC, HW = r.H * r.W, G = r.G;
    size_t nx = (size_t)B * C * HW, ny = (size_t)B * OC * HW;
    r.x = frandn(nx, 1), r.gn1_g = frandn(C, 0.5f), r.gn1_b = frandn(C, 0.5f), r.w1 = frandn((size_t)OC * C * 9, 0.3f);
    r.b1 = frandn(OC, 0.3f), r.temb = frandn((size_t)B * OC, 1), r.gn2_g = frandn(OC, 0.5f), r.gn2_b = frandn(OC, 0.5f);
    r.w2 = frandn((size_t)OC * OC * 9, 0.3f), r.b2 = frandn(OC, 0.3f), r.ws = frandn((size_t)OC * C, 0.5f);
    r.bs = frandn(OC, 0.3f), r.R = frandn(ny, 1);
    for (int c = 0; c < C; c++) r.gn1_g[c] += 1;
    for (int c = 0; c < OC; c++) r.gn2_g[c] += 1;
    float *save[8] = {fbuf(nx), fbuf((size_t)B * G), fbuf((size_t)B * G), fbuf(ny), fbuf(ny), fbuf((size_t)B * G),
                      fbuf((size_t)B * G), fbuf(ny)};
    float *out = fbuf(ny);
    sd_backend_cpu_set_conv_algo(BE, SD_CONV_WINOGRAD); /* the new algorithm, checked independently of torch */
    resblock_fwd(&r, out, save);
    /* backward: dout = R */
    sd_conv2d_desc c1 = sd_conv2d_init(B, C, r.H, r.W, OC, 3, 1, 1), c2 = sd_conv2d_init(B, OC, r.H, r.W, OC, 3, 1, 1);
    sd_conv2d_desc cs = sd_conv2d_init(B, C, r.H, r.W, OC, 1, 1, 0);
    float *dx = fbuf(nx), *dg1 = fbuf(C), *dw1 = fbuf((size_t)OC * C * 9), *dtemb = fbuf((size_t)B * OC);
    float *dws = fbuf((size_t)OC * C), *dh3 = fbuf(ny), *dh2 = fbuf(ny), *dh1 = fbuf(nx);
    sd_conv2d_backward(BE, &cs, dx, dws, NULL, r.R, r.x, r.ws);
    sd_conv2d_backward(BE, &c2, dh3, NULL, NULL, r.R, save[3], r.w2);
    sd_groupnorm_backward(BE, dh2, NULL, NULL, dh3, save[3], save[5], save[6], r.gn2_g, r.gn2_b, B, OC, HW, G, 1);
    sd_add_channel_backward(BE, NULL, dtemb, dh2, B, OC, HW);
    sd_conv2d_backward(BE, &c1, dh1, dw1, NULL, dh2, save[0], r.w1);
    sd_groupnorm_backward(BE, dx, dg1, NULL, dh1, r.x, save[1], save[2], r.gn1_g, r.gn1_b, B, C, HW, G, 1);

    struct { float *p, *g; size_t n; const char *name; } par[] = {
        {r.x, dx, nx, "x"}, {r.gn1_g, dg1, (size_t)C, "gn1.gamma"}, {r.w1, dw1, (size_t)OC * C * 9, "conv1.w"},
        {r.temb, dtemb, (size_t)B * OC, "temb"}, {r.ws, dws, (size_t)OC * C, "shortcut.w"}};
    for (size_t i = 0; i < sizeof par / sizeof par[0]; i++) {
        float *v = frandn(par[i].n, 1), *orig = fcopy(par[i].p, par[i].n);
        double an = 0;
        for (size_t j = 0; j < par[i].n; j++) an += (double)par[i].g[j] * v[j];
        const float e = 1e-2f;
        for (size_t j = 0; j < par[i].n; j++) par[i].p[j] = orig[j] + e * v[j];
        double Lp = resblock_fwd(&r, out, save);
        for (size_t j = 0; j < par[i].n; j++) par[i].p[j] = orig[j] - e * v[j];
        double Lm = resblock_fwd(&r, out, save);
        memcpy(par[i].p, orig, par[i].n * sizeof(float));
        double fd = (Lp - Lm) / (2 * e);
        printf("# fd resnet %-10s analytic %.6f numeric %.6f diff %.1e\n", par[i].name, an, fd, fabs(fd - an));
        CHECK(fd_ok(an, fd));
    }
    sd_backend_cpu_set_conv_algo(BE, SD_CONV_AUTO);
    pool_free();
}

typedef struct {
    int B, N, C, H, F;
    float *x, *ln_w, *ln_b, *wq, *wk, *wv, *wo, *bo, *ln2_w, *ln2_b, *w1, *b1, *w2, *b2, *R;
} xblock;

/* x1 = x + Wo attn(LN(x)) + bo ; out = x1 + W2 geglu(W1 LN2(x1) + b1) + b2 ; causal attention */
static double xblock_fwd(const xblock *t, float *out, float **s) {
    int BN = t->B * t->N, C = t->C, F = t->F;
    sd_attn_desc d = sd_attn_init(t->B, t->H, t->N, t->N, C / t->H, 1);
    float *h = s[0], *m = s[1], *r = s[2], *q = s[3], *k = s[4], *v = s[5], *a = s[6], *lse = s[7], *x1 = s[8];
    float *h2 = s[9], *m2 = s[10], *r2 = s[11], *p = s[12], *gg = s[13];
    sd_layernorm_forward(BE, h, m, r, t->x, t->ln_w, t->ln_b, BN, C, 1e-5f);
    sd_linear_forward(BE, q, h, t->wq, NULL, BN, C, C);
    sd_linear_forward(BE, k, h, t->wk, NULL, BN, C, C);
    sd_linear_forward(BE, v, h, t->wv, NULL, BN, C, C);
    sd_attention_forward(BE, &d, a, lse, q, k, v);
    sd_linear_forward(BE, x1, a, t->wo, t->bo, BN, C, C);
    sd_add_forward(BE, x1, x1, t->x, (size_t)BN * C);
    sd_layernorm_forward(BE, h2, m2, r2, x1, t->ln2_w, t->ln2_b, BN, C, 1e-5f);
    sd_linear_forward(BE, p, h2, t->w1, t->b1, BN, C, 2 * F);
    sd_geglu_forward(BE, gg, p, BN, F);
    sd_linear_forward(BE, out, gg, t->w2, t->b2, BN, F, C);
    sd_add_forward(BE, out, out, x1, (size_t)BN * C);
    double L = 0;
    for (size_t i = 0; i < (size_t)BN * C; i++) L += (double)out[i] * t->R[i];
    return L;
}

TEST(fd_transformer_block) {
    xblock t = {.B = 2, .N = 9, .C = 8, .H = 2, .F = 12};
    int BN = t.B * t.N, C = t.C, F = t.F;
    size_t nx = (size_t)BN * C;
    t.x = frandn(nx, 1), t.ln_w = frandn(C, 0.3f), t.ln_b = frandn(C, 0.3f), t.wq = frandn((size_t)C * C, 0.5f);
    t.wk = frandn((size_t)C * C, 0.5f), t.wv = frandn((size_t)C * C, 0.5f), t.wo = frandn((size_t)C * C, 0.5f);
    t.bo = frandn(C, 0.3f), t.ln2_w = frandn(C, 0.3f), t.ln2_b = frandn(C, 0.3f), t.w1 = frandn((size_t)2 * F * C, 0.4f);
    t.b1 = frandn(2 * F, 0.3f), t.w2 = frandn((size_t)C * F, 0.4f), t.b2 = frandn(C, 0.3f), t.R = frandn(nx, 1);
    for (int c = 0; c < C; c++) t.ln_w[c] += 1, t.ln2_w[c] += 1;
    float *s[14] = {fbuf(nx), fbuf(BN), fbuf(BN), fbuf(nx), fbuf(nx), fbuf(nx), fbuf(nx), fbuf((size_t)t.B * t.H * t.N),
                    fbuf(nx), fbuf(nx), fbuf(BN), fbuf(BN), fbuf((size_t)BN * 2 * F), fbuf((size_t)BN * F)};
    float *out = fbuf(nx);
    xblock_fwd(&t, out, s);
    sd_attn_desc d = sd_attn_init(t.B, t.H, t.N, t.N, C / t.H, 1);
    /* backward with dout = R */
    float *dx1 = fcopy(t.R, nx); /* residual: x1 receives dout directly */
    float *dgg = fbuf((size_t)BN * F), *dp = fbuf((size_t)BN * 2 * F), *dh2 = fbuf(nx), *dw1 = fbuf((size_t)2 * F * C);
    sd_linear_backward(BE, dgg, NULL, NULL, t.R, s[13], t.w2, BN, F, C);
    sd_geglu_backward(BE, dp, dgg, s[12], BN, F);
    sd_linear_backward(BE, dh2, dw1, NULL, dp, s[9], t.w1, BN, C, 2 * F);
    sd_layernorm_backward(BE, dx1, NULL, NULL, dh2, s[8], s[10], s[11], t.ln2_w, BN, C);
    float *dx = fcopy(dx1, nx), *da = fbuf(nx), *dq = fbuf(nx), *dk = fbuf(nx), *dv = fbuf(nx), *dh = fbuf(nx);
    float *dwq = fbuf((size_t)C * C), *dwk = fbuf((size_t)C * C), *dlnw = fbuf(C);
    sd_linear_backward(BE, da, NULL, NULL, dx1, s[6], t.wo, BN, C, C);
    sd_attention_backward(BE, &d, dq, dk, dv, da, s[3], s[4], s[5], s[6], s[7]);
    sd_linear_backward(BE, dh, dwq, NULL, dq, s[0], t.wq, BN, C, C);
    sd_linear_backward(BE, dh, dwk, NULL, dk, s[0], t.wk, BN, C, C);
    sd_linear_backward(BE, dh, NULL, NULL, dv, s[0], t.wv, BN, C, C);
    sd_layernorm_backward(BE, dx, dlnw, NULL, dh, t.x, s[1], s[2], t.ln_w, BN, C);

    struct { float *p, *g; size_t n; const char *name; } par[] = {
        {t.x, dx, nx, "x"}, {t.wq, dwq, (size_t)C * C, "wq"}, {t.wk, dwk, (size_t)C * C, "wk"},
        {t.ln_w, dlnw, (size_t)C, "ln1.w"}, {t.w1, dw1, (size_t)2 * F * C, "ff.w1"}};
    for (size_t i = 0; i < sizeof par / sizeof par[0]; i++) {
        float *v = frandn(par[i].n, 1), *orig = fcopy(par[i].p, par[i].n);
        double an = 0;
        for (size_t j = 0; j < par[i].n; j++) an += (double)par[i].g[j] * v[j];
        const float e = 1e-2f;
        for (size_t j = 0; j < par[i].n; j++) par[i].p[j] = orig[j] + e * v[j];
        double Lp = xblock_fwd(&t, out, s);
        for (size_t j = 0; j < par[i].n; j++) par[i].p[j] = orig[j] - e * v[j];
        double Lm = xblock_fwd(&t, out, s);
        memcpy(par[i].p, orig, par[i].n * sizeof(float));
        double fd = (Lp - Lm) / (2 * e);
        printf("# fd xformer %-8s analytic %.6f numeric %.6f diff %.1e\n", par[i].name, an, fd, fabs(fd - an));
        CHECK(fd_ok(an, fd));
    }
    pool_free();
}

TEST(backend_memory) {
    float *p = sd_backend_alloc_f32(BE, 1000);
    CHECK(p != NULL && ((uintptr_t)p % 64) == 0);
    CHECK(p[999] == 0.0f);
    float h[1000], back[1000];
    for (int i = 0; i < 1000; i++) h[i] = (float)i;
    CHECK_OK(sd_backend_upload(BE, p, h, sizeof h));
    CHECK_OK(sd_backend_download(BE, back, p, sizeof back));
    CHECK(memcmp(h, back, sizeof h) == 0);
    float *q = sd_backend_alloc_f32(BE, 1000);
    sd_backend_copy(BE, q, p, 1000 * sizeof(float));
    CHECK(q[500] == 500.0f);
    sd_backend_zero(BE, q, 1000 * sizeof(float));
    CHECK(q[500] == 0.0f);
    /* large enough for the threaded zero/copy path */
    size_t n = 1 << 20;
    float *big = sd_backend_alloc_f32(BE, n), *big2 = sd_backend_alloc_f32(BE, n);
    for (size_t i = 0; i < n; i++) big[i] = (float)(i % 1000);
    sd_backend_copy(BE, big2, big, n * sizeof(float));
    CHECK(big2[n - 1] == (float)((n - 1) % 1000));
    sd_backend_zero(BE, big2, n * sizeof(float));
    CHECK(big2[n / 2] == 0.0f && big2[n - 1] == 0.0f);
    CHECK_OK(sd_backend_sync(BE));
    CHECK(sd_backend_cpu_threads(BE) == 2);
    sd_backend_free(BE, p);
    sd_backend_free(BE, q);
    sd_backend_free(BE, big);
    sd_backend_free(BE, big2);
}

int main(void) {
    BE = sd_backend_cpu_create(2);
    if (!BE) {
        printf("# %s\n", sd_last_error());
        return 1;
    }
    RUN(linear_parity);
    RUN(linear_large_threaded);
    RUN(matmul_parity);
    RUN(conv_k3s1p1);
    RUN(conv_k3s1p1_multi);
    RUN(conv_k3s1p0);
    RUN(conv_k3s1_big);
    RUN(conv_k3s1p2);
    RUN(conv_k3s2p1);
    RUN(conv_vae_down);
    RUN(conv_k1);
    RUN(conv_algorithms_agree);
    RUN(groupnorm);
    RUN(groupnorm_silu);
    RUN(groupnorm_g1);
    RUN(layernorm);
    RUN(layernorm_threaded);
    RUN(activations);
    RUN(geglu);
    RUN(softmax);
    RUN(attn_self);
    RUN(attn_causal);
    RUN(attn_cross);
    RUN(attn_onehead);
    RUN(add_channel);
    RUN(upsample);
    RUN(embedding);
    RUN(mse);
    RUN(timestep_embedding);
    RUN(concat_permute_blas1);
    RUN(fd_resnet_block);
    RUN(fd_transformer_block);
    RUN(backend_memory);
    sd_backend_destroy(BE);
    return test_summary();
}
