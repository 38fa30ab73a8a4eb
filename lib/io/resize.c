/* resize.c — PIL's resampling, bit-exact and vectorised. See resize.h.
 *
 * Exactness: the weights are computed with PIL's expressions in PIL's order,
 * in double, and with floating-point contraction off (PIL's x86-64 wheels
 * have no FMA; a fused a*b+c rounds differently and would move some weights
 * by an ulp, enough to flip a rounding of the 22-bit fixed-point value). The
 * sums themselves are integers, so any order and any vector width give the
 * same result as PIL's scalar loop.
 *
 * Speed: both passes are "one weight per input line" convolutions along a
 * contiguous axis, done 32 (AVX2) or 16 (SSE4.1) int32 lanes at a time:
 *   vertical pass   out_row[i] = sum_j in_row[ymin+j][i] * k[j], rows of w*c bytes
 *   horizontal pass the same on a transposed strip of 32 rows: T[x][s*c+ch],
 *                   so that the 32*c values of one input column are contiguous;
 *                   results are scattered back into rows.
 * Only the output pixels inside the requested crop are computed, and only the
 * source rows and columns they need are read.
 */
#include "io/resize.h"

#include "core/error.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* no a*b+c fusion in the weight computations (see the top of this file) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* ---- PIL's filters (Resample.c), same expressions ------------------------- */

static double box_filter(double x) {
    if (x > -0.5 && x <= 0.5) return 1.0;
    return 0.0;
}

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

static double hamming_filter(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    return sin(x) / x * (0.54f + 0.46f * cos(x)); /* float constants, as in PIL */
}

static double bicubic_filter(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc_filter(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos_filter(double x) {
    if (-3.0 <= x && x < 3.0) return sinc_filter(x) * sinc_filter(x / 3);
    return 0.0;
}

typedef struct {
    double (*fn)(double);
    double support;
} filter_def;

static const filter_def *filter_of(sd_resize_filter f) {
    static const filter_def box = {box_filter, 0.5}, bilinear = {bilinear_filter, 1.0},
                            hamming = {hamming_filter, 1.0}, bicubic = {bicubic_filter, 2.0},
                            lanczos = {lanczos_filter, 3.0};
    switch (f) {
    case SD_FILTER_BOX: return &box;
    case SD_FILTER_BILINEAR: return &bilinear;
    case SD_FILTER_HAMMING: return &hamming;
    case SD_FILTER_BICUBIC: return &bicubic;
    case SD_FILTER_LANCZOS: return &lanczos;
    default: return NULL;
    }
}

int sd_resize_filter_from_name(const char *name) {
    static const struct {
        const char *name;
        sd_resize_filter f;
    } names[] = {
        {"nearest", SD_FILTER_NEAREST},   {"nearest_exact", SD_FILTER_NEAREST}, {"nearest-exact", SD_FILTER_NEAREST},
        {"bilinear", SD_FILTER_BILINEAR}, {"linear", SD_FILTER_BILINEAR},       {"bicubic", SD_FILTER_BICUBIC},
        {"cubic", SD_FILTER_BICUBIC},     {"box", SD_FILTER_BOX},               {"hamming", SD_FILTER_HAMMING},
        {"lanczos", SD_FILTER_LANCZOS},   {"antialias", SD_FILTER_LANCZOS},
    };
    if (name)
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcasecmp(name, names[i].name) == 0) return names[i].f;
    return sd_set_error("unknown interpolation mode \"%s\" (nearest, nearest_exact, bilinear, bicubic, box, "
                        "hamming, lanczos)", name ? name : "(null)");
}

const char *sd_resize_filter_name(sd_resize_filter f) {
    switch (f) {
    case SD_FILTER_NEAREST: return "nearest";
    case SD_FILTER_LANCZOS: return "lanczos";
    case SD_FILTER_BILINEAR: return "bilinear";
    case SD_FILTER_BICUBIC: return "bicubic";
    case SD_FILTER_BOX: return "box";
    case SD_FILTER_HAMMING: return "hamming";
    }
    return "?";
}

/* ---- weights (PIL's precompute_coeffs + normalize_coeffs_8bpc) ------------ */

#define PRECISION_BITS 22 /* 32 - 8 (result) - 2 (headroom for negative lobes) */
#define STRIP 32          /* rows per transposed strip (horizontal pass): 32*c bytes per column */

typedef struct {
    int n, ksize; /* outputs described, stride of k */
    int *start;   /* first input index per output */
    int *count;   /* taps per output */
    int32_t *k;   /* n * ksize fixed-point weights */
    int lo, hi;   /* input range [lo, hi) used by these outputs */
} coeffs;

static void coeffs_free(coeffs *c) {
    free(c->start);
    free(c->count);
    free(c->k);
    memset(c, 0, sizeof *c);
}

/* Weights for outputs [o0, o1) of an in_size -> out_size resampling. Every
 * output's weights depend only on its own index, so a subset is exact. */
static int coeffs_make(int in_size, int out_size, int o0, int o1, const filter_def *f, coeffs *c) {
    memset(c, 0, sizeof *c);
    /* PIL: box (0, 0, in, 0) as float; scale = (double)(in1 - in0) / outSize */
    float in0 = 0.0f, in1 = (float)in_size;
    double scale = (double)(in1 - in0) / out_size, filterscale = scale;
    if (filterscale < 1.0) filterscale = 1.0;
    double support = f->support * filterscale;
    double ks = ceil(support) * 2 + 1;
    if (ks > (double)(1 << 24)) return sd_set_error("resize: %d -> %d is too extreme a reduction", in_size, out_size);
    int ksize = (int)ks;
    c->n = o1 - o0;
    c->ksize = ksize;
    c->start = malloc(sizeof(int) * (size_t)c->n);
    c->count = malloc(sizeof(int) * (size_t)c->n);
    c->k = malloc(sizeof(int32_t) * (size_t)c->n * (size_t)ksize);
    double *w = malloc(sizeof(double) * (size_t)ksize);
    if (!c->start || !c->count || !c->k || !w) {
        free(w);
        coeffs_free(c);
        return sd_set_error("resize: out of memory");
    }
    double inv_filterscale = 1.0 / filterscale;
    c->lo = in_size;
    c->hi = 0;
    for (int xx = o0; xx < o1; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        if (xmax > ksize) xmax = ksize; /* cannot happen; keeps the buffer safe */
        if (xmax < 0) xmax = 0;
        for (int x = 0; x < xmax; x++) {
            double v = f->fn((x + xmin - center + 0.5) * inv_filterscale);
            w[x] = v;
            ww += v;
        }
        if (ww != 0.0)
            for (int x = 0; x < xmax; x++) w[x] /= ww;
        int32_t *k = c->k + (size_t)(xx - o0) * ksize;
        for (int x = 0; x < xmax; x++)
            k[x] = w[x] < 0 ? (int32_t)(-0.5 + w[x] * (1 << PRECISION_BITS))
                            : (int32_t)(0.5 + w[x] * (1 << PRECISION_BITS));
        c->start[xx - o0] = xmin;
        c->count[xx - o0] = xmax;
        if (xmax > 0) {
            if (xmin < c->lo) c->lo = xmin;
            if (xmin + xmax > c->hi) c->hi = xmin + xmax;
        }
    }
    if (c->hi < c->lo) c->lo = c->hi = 0;
    free(w);
    return 0;
}

/* ---- fixed-point convolution along lines ------------------------------------
 *
 * out[i] = clip8(2^21 + sum_j in[j*stride + i] * k[j]): uint8 x int32 products
 * summed in int32. With AVX2, 32 outputs per step: bytes widened to int32
 * (vpmovzxbd), vpmulld by the broadcast weight, vpaddd; the >> 22 and the
 * 0..255 clip are an arithmetic shift and two saturating packs. SSE4.1 does
 * 16 at a time the same way. The variant is chosen at run time from the CPU
 * (so a build for baseline x86-64 still gets AVX2); elsewhere, scalar. */

static inline uint8_t clip8(int32_t acc) {
    int32_t v = acc >> PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static void conv_lines_scalar(uint8_t *restrict out, const uint8_t *restrict in, size_t stride,
                              const int32_t *restrict k, int taps, int n) {
    for (int i = 0; i < n; i++) {
        int32_t acc = 1 << (PRECISION_BITS - 1);
        const uint8_t *p = in + i;
        for (int j = 0; j < taps; j++, p += stride) acc += p[0] * k[j];
        out[i] = clip8(acc);
    }
}

#if defined(__x86_64__) || defined(__i386__)
#define SD_RESIZE_X86 1
#include <immintrin.h>

__attribute__((target("avx2"))) static void conv_lines_avx2(uint8_t *restrict out, const uint8_t *restrict in,
                                                             size_t stride, const int32_t *restrict k, int taps,
                                                             int n) {
    const __m256i vhalf = _mm256_set1_epi32(1 << (PRECISION_BITS - 1)), perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
#define WIDEN8(p) _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p)))
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i a0 = vhalf, a1 = vhalf, a2 = vhalf, a3 = vhalf;
        const uint8_t *p = in + i;
        for (int j = 0; j < taps; j++, p += stride) {
            __m256i kj = _mm256_set1_epi32(k[j]);
            a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(WIDEN8(p), kj));
            a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(WIDEN8(p + 8), kj));
            a2 = _mm256_add_epi32(a2, _mm256_mullo_epi32(WIDEN8(p + 16), kj));
            a3 = _mm256_add_epi32(a3, _mm256_mullo_epi32(WIDEN8(p + 24), kj));
        }
        a0 = _mm256_srai_epi32(a0, PRECISION_BITS);
        a1 = _mm256_srai_epi32(a1, PRECISION_BITS);
        a2 = _mm256_srai_epi32(a2, PRECISION_BITS);
        a3 = _mm256_srai_epi32(a3, PRECISION_BITS);
        /* packs work per 128-bit half: 4-byte groups come out as
         * a0lo a1lo a2lo a3lo | a0hi a1hi a2hi a3hi; the permute restores order */
        __m256i b = _mm256_packus_epi16(_mm256_packs_epi32(a0, a1), _mm256_packs_epi32(a2, a3));
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_permutevar8x32_epi32(b, perm));
    }
    for (; i + 8 <= n; i += 8) {
        __m256i a0 = vhalf;
        const uint8_t *p = in + i;
        for (int j = 0; j < taps; j++, p += stride)
            a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(WIDEN8(p), _mm256_set1_epi32(k[j])));
        a0 = _mm256_srai_epi32(a0, PRECISION_BITS);
        __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1));
        _mm_storel_epi64((__m128i *)(out + i), _mm_packus_epi16(w, w));
    }
#undef WIDEN8
    if (i < n) conv_lines_scalar(out + i, in + i, stride, k, taps, n - i);
}

__attribute__((target("sse4.1"))) static void conv_lines_sse41(uint8_t *restrict out, const uint8_t *restrict in,
                                                                size_t stride, const int32_t *restrict k, int taps,
                                                                int n) {
    const __m128i vhalf = _mm_set1_epi32(1 << (PRECISION_BITS - 1));
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i a0 = vhalf, a1 = vhalf, a2 = vhalf, a3 = vhalf;
        const uint8_t *p = in + i;
        for (int j = 0; j < taps; j++, p += stride) {
            __m128i kj = _mm_set1_epi32(k[j]);
            __m128i b = _mm_loadu_si128((const __m128i *)p);
            a0 = _mm_add_epi32(a0, _mm_mullo_epi32(_mm_cvtepu8_epi32(b), kj));
            a1 = _mm_add_epi32(a1, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_srli_si128(b, 4)), kj));
            a2 = _mm_add_epi32(a2, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_srli_si128(b, 8)), kj));
            a3 = _mm_add_epi32(a3, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_srli_si128(b, 12)), kj));
        }
        __m128i lo = _mm_packs_epi32(_mm_srai_epi32(a0, PRECISION_BITS), _mm_srai_epi32(a1, PRECISION_BITS));
        __m128i hi = _mm_packs_epi32(_mm_srai_epi32(a2, PRECISION_BITS), _mm_srai_epi32(a3, PRECISION_BITS));
        _mm_storeu_si128((__m128i *)(out + i), _mm_packus_epi16(lo, hi));
    }
    if (i < n) conv_lines_scalar(out + i, in + i, stride, k, taps, n - i);
}
#endif

#ifdef SD_RESIZE_X86
/* RGB strip transpose with AVX2: T[x*Lp + s*3 + ch] = srow[s][3*x + ch] for
 * s in [0, 32) and x in [0, xv), where xv is returned (columns whose 32-byte
 * loads stay inside the 3*ncols bytes of every row; the caller does the rest).
 * Per 8 rows x 8 pixels: expand to RGBX dwords, 8x8 dword transpose, compact
 * to 24 bytes, 32-byte store (the 8 extra bytes land on rows written later,
 * or in the column's slack). */
__attribute__((target("avx2"))) static int transpose_rgb_avx2(const uint8_t *const *srow, int ncols, uint8_t *T,
                                                               int Lp) {
    const __m256i spread = _mm256_setr_epi32(0, 1, 2, 2, 3, 4, 5, 5);
    const __m256i to_rgbx = _mm256_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1, 0, 1, 2, -1, 3, 4, 5,
                                             -1, 6, 7, 8, -1, 9, 10, 11, -1);
    const __m256i to_rgb = _mm256_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1, 0, 1, 2, 4, 5, 6, 8,
                                            9, 10, 12, 13, 14, -1, -1, -1, -1);
    const __m256i join = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7);
    int xv = 0;
    while (xv + 8 + 3 <= ncols) xv += 8; /* 3*x + 32 <= 3*ncols for every load */
    for (int s0 = 0; s0 < STRIP; s0 += 8) {
        for (int x = 0; x < xv; x += 8) {
            __m256i r[8], t[8], u[8];
            for (int i = 0; i < 8; i++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(srow[s0 + i] + 3 * x));
                r[i] = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(v, spread), to_rgbx);
            }
            for (int i = 0; i < 8; i += 2) {
                t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
                t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
            }
            for (int i = 0; i < 8; i += 4) {
                u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
                u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
                u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
                u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
            }
            /* u[0..3]: pixels (0,4) (1,5) (2,6) (3,7) of rows 0-3; u[4..7]: rows 4-7 */
            for (int i = 0; i < 4; i++) {
                __m256i lo = _mm256_permute2x128_si256(u[i], u[i + 4], 0x20); /* pixel i */
                __m256i hi = _mm256_permute2x128_si256(u[i], u[i + 4], 0x31); /* pixel i + 4 */
                lo = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(lo, to_rgb), join);
                hi = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(hi, to_rgb), join);
                _mm256_storeu_si256((__m256i *)(T + (size_t)(x + i) * Lp + 3 * s0), lo);
                _mm256_storeu_si256((__m256i *)(T + (size_t)(x + i + 4) * Lp + 3 * s0), hi);
            }
        }
    }
    return xv;
}
#endif

/* SD_RESIZE_KERNEL=scalar|sse41|avx2 forces a variant (tests compare them) */
static int kernel_choice(void) {
    const char *e = getenv("SD_RESIZE_KERNEL");
    int best = 0;
#ifdef SD_RESIZE_X86
    if (__builtin_cpu_supports("avx2")) best = 2;
    else if (__builtin_cpu_supports("sse4.1")) best = 1;
#endif
    if (e && !strcmp(e, "scalar")) return 0;
    if (e && !strcmp(e, "sse41") && best >= 1) return 1;
    return best;
}

static void conv_lines(uint8_t *restrict out, const uint8_t *restrict in, size_t stride, const int32_t *restrict k,
                       int taps, int n, int kernel) {
#ifdef SD_RESIZE_X86
    if (kernel == 2) return conv_lines_avx2(out, in, stride, k, taps, n);
    if (kernel == 1) return conv_lines_sse41(out, in, stride, k, taps, n);
#endif
    (void)kernel;
    conv_lines_scalar(out, in, stride, k, taps, n);
}

/* Vertical pass: output rows [0, cv->n) from `in` (row r of the input is at
 * in + (r - row0) * in_stride, columns already offset), n bytes per row. */
static void vpass(uint8_t *out, size_t out_stride, const uint8_t *in, size_t in_stride, int row0, const coeffs *cv,
                  int n, int kernel) {
    for (int o = 0; o < cv->n; o++)
        conv_lines(out + (size_t)o * out_stride, in + (size_t)(cv->start[o] - row0) * in_stride, in_stride,
                   cv->k + (size_t)o * cv->ksize, cv->count[o], n, kernel);
}

/* Horizontal pass over nrows rows of `in` (row stride in_stride, its first
 * column is input column col0): output columns described by ch (input
 * columns [ch->lo, ch->hi)), row r written to out + r * out_stride. */
#define XBLK 4096 /* source columns per scalar transpose block: whole rows, read sequentially */
#define OBLK 16  /* output columns per scatter block */
static int hpass(const uint8_t *in, size_t in_stride, int c, int nrows, int col0, const coeffs *ch, uint8_t *out,
                 size_t out_stride, int kernel) {
    /* Lp: column stride, with slack so that 4-byte moves of 3-byte pixels
     * may spill one byte past a column's last slot */
    const int L = STRIP * c, Lp = L + 32, cx0 = ch->lo, ncols = ch->hi - ch->lo;
    uint8_t *T = malloc((size_t)ncols * Lp + 64), *U = malloc((size_t)OBLK * Lp + 64);
    if (!T || !U) {
        free(T);
        free(U);
        return sd_set_error("resize: out of memory");
    }
    const uint8_t *srow[STRIP];
    for (int rs = 0; rs < nrows; rs += STRIP) {
        int ns = nrows - rs < STRIP ? nrows - rs : STRIP;
        /* lanes past the last row repeat it (computed, never stored) */
        for (int s = 0; s < STRIP; s++)
            srow[s] = in + (size_t)(rs + (s < ns ? s : ns - 1)) * in_stride + (size_t)(cx0 - col0) * c;
        /* transpose in, by blocks of columns, row by row (sequential reads):
         * T[x][s*c + ch] = in[rs + s][(cx0 + x)*c + ch]. For RGB, 4-byte moves:
         * the 4th byte lands on slot s+1 (written later: s ascends) or in the
         * slack; the very last column moves 3 bytes, as its 4th source byte
         * may lie past the caller's buffer. */
        int xdone = 0;
#ifdef SD_RESIZE_X86
        if (c == 3 && kernel == 2) xdone = transpose_rgb_avx2(srow, ncols, T, Lp);
#endif
        for (int xb = xdone; xb < ncols; xb += XBLK) {
            int xe = xb + XBLK < ncols ? xb + XBLK : ncols;
            for (int s = 0; s < STRIP; s++) {
                const uint8_t *sr = srow[s];
                uint8_t *t = T + (size_t)xb * Lp + (size_t)s * c;
                if (c == 3) {
                    int x4 = xe == ncols ? xe - 1 : xe;
                    for (int x = xb; x < x4; x++, t += Lp) memcpy(t, sr + 3 * x, 4);
                    if (x4 < xe) memcpy(t, sr + 3 * x4, 3);
                } else {
                    for (int x = xb; x < xe; x++, t += Lp) memcpy(t, sr + (size_t)c * x, (size_t)c);
                }
            }
        }
        /* a block of output columns: each convolves all STRIP rows x c
         * channels at once into U, then U is written out row by row (4-byte
         * moves for RGB, the 4th byte overwritten by the next pixel; the
         * last pixel of a row moves 3) */
        for (int ob = 0; ob < ch->n; ob += OBLK) {
            int oe = ob + OBLK < ch->n ? ob + OBLK : ch->n;
            for (int o = ob; o < oe; o++)
                conv_lines(U + (size_t)(o - ob) * Lp, T + (size_t)(ch->start[o] - cx0) * Lp, (size_t)Lp,
                           ch->k + (size_t)o * ch->ksize, ch->count[o], L, kernel);
            for (int s = 0; s < ns; s++) {
                uint8_t *d = out + (size_t)(rs + s) * out_stride + (size_t)ob * c;
                const uint8_t *u = U + (size_t)s * c;
                if (c == 3) {
                    int o4 = oe == ch->n ? oe - 1 : oe;
                    for (int o = ob; o < o4; o++, d += 3, u += Lp) memcpy(d, u, 4);
                    if (o4 < oe) memcpy(d, u, 3);
                } else {
                    for (int o = ob; o < oe; o++, d += c, u += Lp) memcpy(d, u, (size_t)c);
                }
            }
        }
    }
    free(T);
    free(U);
    return 0;
}

/* ---- NEAREST: PIL's ImagingScaleAffine --------------------------------------
 * a0 = in/out; position x -> source (int)(a0*0.5 + x*a0), the sum
 * accumulated in double by repeated addition exactly as PIL does it (the
 * accumulated rounding decides ties). Out-of-range sources stay 0. */
static int nearest_table(int in_size, int out_size, int o0, int o1, int *tab) {
    float in1 = (float)in_size; /* box as float */
    double a = (double)(in1 - 0.0f) / out_size;
    double pos = 0.0 + a * 0.5;
    for (int x = 0; x < o1; x++) {
        int v = pos < 0.0 ? -1 : (int)pos;
        if (x >= o0) tab[x - o0] = (v >= 0 && v < in_size) ? v : -1;
        pos += a;
    }
    return 0;
}

static int resize_nearest(const sd_image *src, int w, int h, int x0, int x1, int y0, int y1, uint8_t *out,
                          size_t out_stride) {
    int c = src->c;
    int *xt = malloc(sizeof(int) * (size_t)(x1 - x0)), *yt = malloc(sizeof(int) * (size_t)(y1 - y0));
    if (!xt || !yt) {
        free(xt);
        free(yt);
        return sd_set_error("resize: out of memory");
    }
    nearest_table(src->w, w, x0, x1, xt);
    nearest_table(src->h, h, y0, y1, yt);
    for (int y = y0; y < y1; y++) {
        uint8_t *o = out + (size_t)(y - y0) * out_stride;
        int sy = yt[y - y0];
        if (sy < 0) {
            memset(o, 0, (size_t)(x1 - x0) * c);
            continue;
        }
        const uint8_t *row = src->data + (size_t)sy * src->w * c;
        if (c == 3) {
            for (int x = 0; x < x1 - x0; x++, o += 3) {
                int sx = xt[x];
                if (sx < 0) {
                    o[0] = o[1] = o[2] = 0;
                } else {
                    o[0] = row[3 * sx];
                    o[1] = row[3 * sx + 1];
                    o[2] = row[3 * sx + 2];
                }
            }
        } else {
            for (int x = 0; x < x1 - x0; x++, o += c) {
                if (xt[x] < 0) memset(o, 0, (size_t)c);
                else memcpy(o, row + (size_t)xt[x] * c, (size_t)c);
            }
        }
    }
    free(xt);
    free(yt);
    (void)h;
    return 0;
}

/* ---- entry points ------------------------------------------------------------ */

int sd_image_resize_crop(const sd_image *src, int w, int h, sd_resize_filter f, int left, int top, int cw, int ch,
                         sd_image *dst) {
    memset(dst, 0, sizeof *dst);
    if (!src || !src->data || src->w <= 0 || src->h <= 0) return sd_set_error("resize: empty source image");
    if (src->c < 1 || src->c > 4) return sd_set_error("resize: %d channels (1..4 supported)", src->c);
    if (w <= 0 || h <= 0) return sd_set_error("resize: height and width must be > 0 (got %d x %d)", w, h);
    if (cw <= 0 || ch <= 0) return sd_set_error("resize: empty crop box (%d x %d)", cw, ch);
    const filter_def *fd = NULL;
    if (f != SD_FILTER_NEAREST && !(fd = filter_of(f))) return sd_set_error("resize: unknown filter %d", (int)f);
    /* PIL returns a copy when the size does not change */
    if (w == src->w && h == src->h) return sd_image_crop(src, left, top, cw, ch, dst);

    const int c = src->c;
    /* the part of the box inside the resized image */
    long lx0 = left > 0 ? left : 0, lx1 = (long)left + cw < w ? (long)left + cw : w;
    long ly0 = top > 0 ? top : 0, ly1 = (long)top + ch < h ? (long)top + ch : h;
    int inside = lx0 < lx1 && ly0 < ly1;
    int full = inside && lx0 == left && ly0 == top && lx1 == (long)left + cw && ly1 == (long)top + ch;
    size_t n = (size_t)cw * (size_t)ch * (size_t)c;
    dst->data = full ? malloc(n + 1) : calloc(n + 1, 1);
    if (!dst->data) return sd_set_error("resize: out of memory for %d x %d", cw, ch);
    dst->w = cw;
    dst->h = ch;
    dst->c = c;
    if (!inside) return 0;
    int x0 = (int)lx0, x1 = (int)lx1, y0 = (int)ly0, y1 = (int)ly1;
    size_t ostride = (size_t)cw * c;
    uint8_t *obase = dst->data + (size_t)(y0 - top) * ostride + (size_t)(x0 - left) * c;
    int rc = 0;

    if (f == SD_FILTER_NEAREST) {
        rc = resize_nearest(src, w, h, x0, x1, y0, y1, obase, ostride);
        if (rc) sd_image_free(dst);
        return rc;
    }

    /* Pass order (Pillow 13, PR #9549): horizontal first, except when the
     * height shrinks by more than twice as many pixels as the width does —
     * then vertical first. The intermediate is rounded to 8 bits, so the
     * order changes results and must be PIL's. */
    int need_h = w != src->w, need_v = h != src->h;
    int vfirst = need_h && need_v && h < src->h && (long)src->h - h > 2L * ((long)src->w - w);
    const size_t sstride = (size_t)src->w * c;
    const int kernel = kernel_choice();
    coeffs cv = {0}, chh = {0};
    uint8_t *tmp = NULL;
    if (need_v && (rc = coeffs_make(src->h, h, y0, y1, fd, &cv))) goto done;
    if (need_h && (rc = coeffs_make(src->w, w, x0, x1, fd, &chh))) goto done;
    if (need_h && !need_v) { /* horizontal only: output row y is source row y */
        rc = hpass(src->data + (size_t)y0 * sstride, sstride, c, y1 - y0, 0, &chh, obase, ostride, kernel);
    } else if (need_v && !need_h) { /* vertical only: read the source in place */
        vpass(obase, ostride, src->data + (size_t)cv.lo * sstride + (size_t)x0 * c, sstride, cv.lo, &cv,
              (x1 - x0) * c, kernel);
    } else if (!vfirst) { /* source rows [cv.lo, cv.hi) -> tmp (x1-x0 wide) -> output */
        size_t tstride = (size_t)(x1 - x0) * c;
        int nrows = cv.hi - cv.lo;
        if (!(tmp = malloc(tstride * (size_t)nrows + 64))) {
            rc = sd_set_error("resize: out of memory");
            goto done;
        }
        rc = hpass(src->data + (size_t)cv.lo * sstride, sstride, c, nrows, 0, &chh, tmp, tstride, kernel);
        if (rc) goto done;
        vpass(obase, ostride, tmp, tstride, cv.lo, &cv, (int)tstride, kernel);
    } else { /* source columns [chh.lo, chh.hi) -> tmp (y1-y0 tall) -> output */
        size_t tstride = (size_t)(chh.hi - chh.lo) * c;
        if (!(tmp = malloc(tstride * (size_t)(y1 - y0) + 64))) {
            rc = sd_set_error("resize: out of memory");
            goto done;
        }
        vpass(tmp, tstride, src->data + (size_t)cv.lo * sstride + (size_t)chh.lo * c, sstride, cv.lo, &cv,
              (int)tstride, kernel);
        rc = hpass(tmp, tstride, c, y1 - y0, chh.lo, &chh, obase, ostride, kernel);
    }
done:
    coeffs_free(&cv);
    coeffs_free(&chh);
    free(tmp);
    if (rc) sd_image_free(dst);
    return rc;
}

int sd_image_resize(const sd_image *src, int w, int h, sd_resize_filter f, sd_image *dst) {
    return sd_image_resize_crop(src, w, h, f, 0, 0, w, h, dst);
}
