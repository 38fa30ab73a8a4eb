/* clip_tokenizer.c — CLIP byte-level BPE, id-exact with transformers 4.x's
 * slow CLIPTokenizer without ftfy (formats/tokens.md is the specification;
 * comments name the transformers/CPython functions each step reproduces).
 *
 * Pipeline for one caption (Python names in parentheses):
 *   1. strict UTF-8 decode to code points (Python str)
 *   2. split out added tokens, leftmost-longest (tokens_trie.split); those
 *      pieces become their ids, the text between them is a "chunk"
 *   3. per chunk, BasicTokenizer(strip_accents=False, do_split_on_punc=False):
 *      drop NUL/U+FFFD/controls, whitespace -> ' ' (_clean_text); spaces
 *      around CJK ideographs (_tokenize_chinese_chars); NFC; split on
 *      whitespace (str.split); str.lower() per word
 *   4. per word, the pre-tokenizer regex (IGNORECASE, `regex` module)
 *      <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 *      matched by hand
 *   5. per piece: UTF-8 bytes -> byte symbols, last one with "</w>", BPE
 *      (lowest-rank pair, all its occurrences left to right, repeat), symbols
 *      -> ids (added tokens first, then vocab, else unk).
 *
 * Unicode: categories, NFC and simple case mapping come from utf8proc (2.8 =
 * Unicode 15.0). The reference ran under Python 3.11 whose unicodedata is
 * Unicode 14.0, where the 4,489 code points new in 15.0 are unassigned (Cn),
 * hence "control" characters that _clean_text drops; py_unassigned[] lists
 * them (32 ranges, measured, and the property test re-checks every code point
 * against Python). Python's str.lower() differs from utf8proc's simple mapping
 * only for U+0130 and the context-dependent final sigma; the properties that
 * rule needs (Cased, Case_Ignorable) are not in utf8proc and are derived from
 * the category plus the short lists below, also checked code point by code
 * point. The `regex` module's \p{L}/\p{N} agree with Python's categories on
 * every code point that reaches the regex; its one oddity under IGNORECASE is
 * U+0345, which matches none of the classes (it folds to a letter, so the
 * negated class rejects it, but it is not a letter), so findall skips it.
 */
#include "text/clip_tokenizer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "io/json.h"

#define CLIP_MAX_MERGES (49152 - 256 - 2) /* HF reads lines[1 : 49152-256-2+1] of merges.txt */
#define CLIP_MAX_TEXT (16u << 20)         /* longest caption accepted, bytes */
#define CLIP_MAX_FILE (256u << 20)        /* vocab.json / merges.txt size limit */
#define CLIP_MAX_ID (1 << 24)             /* token ids are < 16M */
#define NO_RANK INT32_MAX
#define END (-1)

/* Make *p hold at least n elements of size el. */
static void *grow(void *p, size_t *cap, size_t n, size_t el) {
    if (n <= *cap) return p;
    size_t c = *cap ? *cap : 64;
    while (c < n) c *= 2;
    *cap = c;
    return sd_xrealloc(p, c * el);
}

/* ------------------------------------------------------------------------ */
/* UTF-8                                                                     */

/* Strict decoder (Python's "strict" UTF-8: no overlongs, no surrogates,
 * nothing above U+10FFFF, no truncated sequences). Stores the code points in
 * out unless it is NULL. Returns their number, or -1 with *bad = byte offset of the first invalid sequence. */
static long utf8_decode(const uint8_t *s, size_t n, int32_t *out, size_t *bad) {
    size_t i = 0, k = 0;
    while (i < n) {
        uint32_t c = s[i];
        if (c < 0x80) {
            if (out) out[k] = (int32_t)c;
            k++;
            i++;
            continue;
        }
        int len;
        uint32_t min;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; c &= 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; c &= 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; c &= 0x07; min = 0x10000; }
        else { *bad = i; return -1; }
        if (i + (size_t)len > n) { *bad = i; return -1; }
        for (int j = 1; j < len; j++) {
            uint8_t b = s[i + j];
            if ((b & 0xC0) != 0x80) { *bad = i; return -1; }
            c = (c << 6) | (b & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) { *bad = i; return -1; }
        if (out) out[k] = (int32_t)c;
        k++;
        i += (size_t)len;
    }
    return (long)k;
}

static int utf8_valid(const uint8_t *s, size_t n, size_t *bad) { return utf8_decode(s, n, NULL, bad) >= 0; }

static size_t utf8_put(uint8_t *d, int32_t cp) {
    uint32_t c = (uint32_t)cp;
    if (c < 0x80) { d[0] = (uint8_t)c; return 1; }
    if (c < 0x800) { d[0] = (uint8_t)(0xC0 | (c >> 6)); d[1] = (uint8_t)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        d[0] = (uint8_t)(0xE0 | (c >> 12)); d[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        d[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    d[0] = (uint8_t)(0xF0 | (c >> 18)); d[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    d[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F)); d[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* ------------------------------------------------------------------------ */
/* Unicode properties as the reference (Python 3.11, regex module) sees them */

/* Code points that utf8proc 2.8 (Unicode 15.0) assigns but Python 3.11's
 * unicodedata (Unicode 14.0) does not: for the reference they are Cn. */
static const int32_t py_unassigned[][2] = {
    {0x0CF3, 0x0CF3},   {0x0ECE, 0x0ECE},   {0x10EFD, 0x10EFF}, {0x1123F, 0x11241}, {0x11B00, 0x11B09},
    {0x11F00, 0x11F10}, {0x11F12, 0x11F3A}, {0x11F3E, 0x11F59}, {0x1342F, 0x1342F}, {0x13439, 0x13455},
    {0x1B132, 0x1B132}, {0x1B155, 0x1B155}, {0x1D2C0, 0x1D2D3}, {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D},
    {0x1E08F, 0x1E08F}, {0x1E4D0, 0x1E4F9}, {0x1F6DC, 0x1F6DC}, {0x1F774, 0x1F776}, {0x1F77B, 0x1F77F},
    {0x1F7D9, 0x1F7D9}, {0x1FA75, 0x1FA77}, {0x1FA87, 0x1FA88}, {0x1FAAD, 0x1FAAF}, {0x1FABB, 0x1FABD},
    {0x1FABF, 0x1FABF}, {0x1FACE, 0x1FACF}, {0x1FADA, 0x1FADB}, {0x1FAE8, 0x1FAE8}, {0x1FAF7, 0x1FAF8},
    {0x2B739, 0x2B739}, {0x31350, 0x323AF},
};

static int in_ranges(int32_t cp, const int32_t (*r)[2], int n) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid - 1;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

/* General category as Python 3.11 reports it (utf8proc_category_t values). */
static int py_category(int32_t cp) {
    if (cp >= 0x0CF3 && in_ranges(cp, py_unassigned, (int)(sizeof py_unassigned / sizeof py_unassigned[0])))
        return UTF8PROC_CATEGORY_CN;
    return (int)utf8proc_category(cp);
}

static int cat_is_c(int c) {
    return c == UTF8PROC_CATEGORY_CN || c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF ||
           c == UTF8PROC_CATEGORY_CS || c == UTF8PROC_CATEGORY_CO;
}
static int cat_is_l(int c) { return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO; }
static int cat_is_n(int c) { return c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO; }

/* transformers _is_chinese_char */
static int is_cjk(int32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* Python str.isspace / str.split(): bidi class WS, B or S, or category Zs. */
static int py_isspace(int32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
    const utf8proc_property_t *p = utf8proc_get_property(cp);
    return p->bidi_class == UTF8PROC_BIDI_CLASS_WS || p->bidi_class == UTF8PROC_BIDI_CLASS_B ||
           p->bidi_class == UTF8PROC_BIDI_CLASS_S || p->category == UTF8PROC_CATEGORY_ZS;
}

/* Case_Ignorable = Mn | Me | Cf | Lm | Sk | Word_Break in {MidLetter, MidNumLet, Single_Quote} */
static const int32_t mid_letter[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,  0x5F4,  0x2018, 0x2019,
                                     0x2024, 0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
static int case_ignorable(int32_t cp) {
    int c = py_category(cp);
    if (c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_ME || c == UTF8PROC_CATEGORY_CF ||
        c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_SK)
        return 1;
    for (size_t i = 0; i < sizeof mid_letter / sizeof mid_letter[0]; i++)
        if (mid_letter[i] == cp) return 1;
    return 0;
}

/* Cased = Lowercase | Uppercase | Lt. Beyond Lu/Ll/Lt and characters with a
 * case mapping, Other_Lowercase/Other_Uppercase add only these (among code
 * points that are not Case_Ignorable, the only ones the rule looks at). */
static int cased(int32_t cp) {
    int c = py_category(cp);
    if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT) return 1;
    if (c == UTF8PROC_CATEGORY_CN) return 0;
    if (utf8proc_tolower(cp) != cp || utf8proc_toupper(cp) != cp) return 1;
    return cp == 0xAA || cp == 0xBA || (cp >= 0x1F130 && cp <= 0x1F149) || (cp >= 0x1F150 && cp <= 0x1F169) ||
           (cp >= 0x1F170 && cp <= 0x1F189);
}

/* Python's handle_capital_sigma: U+03A3 at i in s[0..n) lowers to final
 * sigma U+03C2 after a cased letter (skipping case-ignorables) when no cased
 * letter follows (skipping case-ignorables). */
static int final_sigma(const int32_t *s, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && case_ignorable(s[j - 1])) j--;
    if (j == 0 || !cased(s[j - 1])) return 0;
    for (j = i + 1; j < n && case_ignorable(s[j]); j++) {}
    return j == n || !cased(s[j]);
}

/* regex-module class of a code point under IGNORECASE */
enum { RX_SPACE, RX_L, RX_N, RX_O, RX_NONE };
static uint8_t rx_ascii[128];
static uint8_t clean_ascii[128]; /* 0 drop, 1 space, 2 keep */
static pthread_once_t ascii_once = PTHREAD_ONCE_INIT;

static int rx_class_slow(int32_t cp) {
    if (cp == 0x345) return RX_NONE;
    int c = py_category(cp);
    if (cat_is_l(c)) return RX_L;
    if (cat_is_n(c)) return RX_N;
    /* \s = White_Space */
    if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
        (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
        cp == 0x3000)
        return RX_SPACE;
    return RX_O;
}

static int clean_class_slow(int32_t cp) {
    if (cp == 0 || cp == 0xFFFD) return 0;
    if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r') return 1;
    int c = py_category(cp);
    if (cat_is_c(c)) return 0;
    if (c == UTF8PROC_CATEGORY_ZS) return 1;
    return 2;
}

static void ascii_tables_init(void) {
    for (int c = 0; c < 128; c++) {
        rx_ascii[c] = (uint8_t)rx_class_slow(c);
        clean_ascii[c] = (uint8_t)clean_class_slow(c);
    }
}

static inline int rx_class(int32_t cp) { return cp < 128 ? rx_ascii[cp] : rx_class_slow(cp); }
static inline int clean_class(int32_t cp) { return cp < 128 ? clean_ascii[cp] : clean_class_slow(cp); }

/* ------------------------------------------------------------------------ */
/* The tokenizer                                                             */

/* The merge table maps a pair of symbols (a, b) to its rank (its line in
 * merges.txt). One 8-byte slot holds a (24 bits), b (24 bits) and the rank
 * (16 bits: HF reads at most 48,894 merges), so the table of a CLIP
 * vocabulary is 1 MiB; merged[rank] is the symbol the merge produces. */
#define EMPTY_SLOT UINT64_MAX
#define SYM_BITS 24

typedef struct {
    int32_t *cp; /* content as code points */
    int len;
    int32_t id;
} added_token;

struct sd_clip_tokenizer {
    int n_sym;          /* symbols: vocab tokens, byte symbols, merge results */
    int32_t *sym_tok;   /* symbol -> token id */
    int32_t sym_byte[256], sym_byte_end[256];
    uint64_t *pairs;    /* open addressing, linear probing, load <= 0.5 */
    uint64_t pair_mask;
    int32_t *merged;    /* rank -> merged symbol */
    int n_merges;
    int n_vocab;
    int32_t max_id;
    char **id_str; /* token id -> string (vocab and added), [max_id + 1] */
    added_token *added;
    int n_added;
    uint8_t added_first_ascii[128]; /* first code points of added tokens */
    int added_first_nonascii;
    int32_t special_word_tok[2]; /* ids of the regex matches "<|startoftext|>", "<|endoftext|>" */
    int32_t bos, eos, pad, unk;
    int max_len;
    uint64_t serial; /* identifies this instance in the thread caches */
    char fingerprint[65];
};

static _Atomic uint64_t next_serial = 1;

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)a << SYM_BITS | (uint64_t)b; }

static inline int32_t pair_rank(const sd_clip_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = pair_key(a, b);
    for (uint64_t i = mix64(key) & t->pair_mask;; i = (i + 1) & t->pair_mask) {
        uint64_t e = t->pairs[i];
        if (e >> 16 == key) return (int32_t)(e & 0xFFFF);
        if (e == EMPTY_SLOT) return NO_RANK;
    }
}

/* ---- load-time string -> symbol table */

typedef struct {
    char **str; /* symbol -> NUL-terminated string (owned) */
    int32_t *len;
    int32_t *tok; /* symbol -> token id, -1 if not in the vocabulary */
    int n, cap;
    int32_t *slot; /* open addressing: symbol index or -1 */
    uint64_t mask;
} symtab;

static uint64_t str_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
    return mix64(h);
}

static void symtab_init(symtab *st, size_t expect) {
    memset(st, 0, sizeof *st);
    uint64_t cap = 1024;
    while (cap < 2 * expect) cap <<= 1;
    st->slot = sd_xmalloc(cap * sizeof *st->slot);
    memset(st->slot, 0xff, cap * sizeof *st->slot);
    st->mask = cap - 1;
}

static void symtab_free(symtab *st) {
    for (int i = 0; i < st->n; i++) free(st->str[i]);
    free(st->str);
    free(st->len);
    free(st->tok);
    free(st->slot);
}

static int32_t symtab_get(const symtab *st, const char *s, size_t n) {
    for (uint64_t i = str_hash(s, n) & st->mask;; i = (i + 1) & st->mask) {
        int32_t k = st->slot[i];
        if (k < 0) return -1;
        if ((size_t)st->len[k] == n && memcmp(st->str[k], s, n) == 0) return k;
    }
}

/* Returns the symbol of s, adding it with token id `id` if new (*added = 1). */
static int32_t symtab_put(symtab *st, const char *s, size_t n, int32_t id, int *added) {
    uint64_t i = str_hash(s, n) & st->mask;
    for (;; i = (i + 1) & st->mask) {
        int32_t k = st->slot[i];
        if (k < 0) break;
        if ((size_t)st->len[k] == n && memcmp(st->str[k], s, n) == 0) { *added = 0; return k; }
    }
    if ((uint64_t)(st->n + 1) * 2 > st->mask + 1) { /* grow and rehash */
        uint64_t cap = (st->mask + 1) * 2;
        int32_t *slot = sd_xmalloc(cap * sizeof *slot);
        memset(slot, 0xff, cap * sizeof *slot);
        for (int k = 0; k < st->n; k++) {
            uint64_t j = str_hash(st->str[k], (size_t)st->len[k]) & (cap - 1);
            while (slot[j] >= 0) j = (j + 1) & (cap - 1);
            slot[j] = k;
        }
        free(st->slot);
        st->slot = slot;
        st->mask = cap - 1;
        i = str_hash(s, n) & st->mask;
        while (st->slot[i] >= 0) i = (i + 1) & st->mask;
    }
    if (st->n == st->cap) {
        st->cap = st->cap ? 2 * st->cap : 1024;
        st->str = sd_xrealloc(st->str, (size_t)st->cap * sizeof *st->str);
        st->len = sd_xrealloc(st->len, (size_t)st->cap * sizeof *st->len);
        st->tok = sd_xrealloc(st->tok, (size_t)st->cap * sizeof *st->tok);
    }
    char *c = sd_xmalloc(n + 1);
    memcpy(c, s, n);
    c[n] = 0;
    st->str[st->n] = c;
    st->len[st->n] = (int32_t)n;
    st->tok[st->n] = id;
    st->slot[i] = st->n;
    *added = 1;
    return st->n++;
}

/* GPT-2/CLIP bytes_to_unicode: byte -> code point, and the vocab order. */
static void byte_chars(int32_t cp_of_byte[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp_of_byte[b] = printable ? b : 256 + n++;
    }
}

/* ---- config helpers */

/* v is a JSON number holding an integer in [lo, hi]. */
static int json_int_in(const cJSON *v, double lo, double hi, int64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= lo && d <= hi) || d != (double)(int64_t)d) return 0;
    *out = (int64_t)d;
    return 1;
}

/* A special-token value: string, {"content": ...} object, or null. */
static int token_value(const cJSON *v, const char *file, const char *key, const char **content) {
    *content = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v)) { *content = v->valuestring; return 0; }
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (!cJSON_IsString(c)) return sd_set_error("%s: \"%s\" has no string \"content\"", file, key);
        const cJSON *sw = cJSON_GetObjectItemCaseSensitive(v, "single_word");
        if (cJSON_IsTrue(sw))
            return sd_set_error("%s: \"%s\": single_word added tokens are not supported", file, key);
        *content = c->valuestring;
        return 0;
    }
    return sd_set_error("%s: \"%s\" must be a string, an AddedToken object or null", file, key);
}

typedef struct {
    char *content;
    int32_t id;
} added_def;

typedef struct {
    added_def *v;
    int n, cap;
} added_list;

static int32_t added_find(const added_list *al, const char *s) {
    for (int i = 0; i < al->n; i++)
        if (strcmp(al->v[i].content, s) == 0) return al->v[i].id;
    return -1;
}

static void added_push(added_list *al, const char *s, int32_t id) {
    if (al->n == al->cap) {
        al->cap = al->cap ? 2 * al->cap : 8;
        al->v = sd_xrealloc(al->v, (size_t)al->cap * sizeof *al->v);
    }
    al->v[al->n].content = sd_xstrdup(s);
    al->v[al->n].id = id;
    al->n++;
}

/* ---- merges.txt as HF reads it: open(encoding="utf-8") (universal
 * newlines), .read().strip().split("\n")[1 : 48895], tuple(line.split()) */

typedef struct {
    char *a, *b;
    int line;
} merge_def;

static int is_py_space_at(const char *s, size_t n, size_t i, size_t *clen) {
    int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
    *clen = k > 0 ? (size_t)k : 1;
    return k > 0 && py_isspace(cp);
}

static int parse_merges(const char *path, char *text, size_t n, merge_def **out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    /* universal newlines: \r\n and \r become \n */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '\r') {
            text[k++] = '\n';
            if (i + 1 < n && text[i + 1] == '\n') i++;
        } else {
            text[k++] = text[i];
        }
    }
    n = k;
    /* strip(): Python whitespace at both ends; count the lines it removes */
    size_t s = 0, e = n, clen;
    int line0 = 1;
    while (s < e && is_py_space_at(text, e, s, &clen)) {
        if (text[s] == '\n') line0++;
        s += clen;
    }
    while (e > s) {
        size_t b = e - 1;
        while (b > s && ((uint8_t)text[b] & 0xC0) == 0x80) b--;
        if (!is_py_space_at(text, e, b, &clen)) break;
        e = b;
    }
    merge_def *m = NULL;
    int nm = 0, cap = 0, line = line0;
    size_t i = s;
    /* skip the first line (the "#version: 0.2" header, whatever it says) */
    while (i < e && text[i] != '\n') i++;
    while (i < e && nm < CLIP_MAX_MERGES) {
        i++; /* past '\n' */
        line++;
        size_t ls = i;
        while (i < e && text[i] != '\n') i++;
        /* split() on whitespace */
        const char *f[3];
        size_t fl[3];
        int nf = 0;
        size_t j = ls;
        while (j < i) {
            while (j < i && is_py_space_at(text, i, j, &clen)) j += clen;
            if (j >= i) break;
            size_t fs = j;
            while (j < i && !is_py_space_at(text, i, j, &clen)) j += clen;
            if (nf < 3) { f[nf] = text + fs; fl[nf] = j - fs; }
            nf++;
        }
        if (nf != 2) {
            for (int q = 0; q < nm; q++) { free(m[q].a); free(m[q].b); }
            free(m);
            return sd_set_error("%s:%d: a merge must be two symbols separated by a space, found %d field%s", path,
                                line, nf, nf == 1 ? "" : "s");
        }
        if (nm == cap) {
            cap = cap ? 2 * cap : 4096;
            m = sd_xrealloc(m, (size_t)cap * sizeof *m);
        }
        m[nm].a = sd_xmalloc(fl[0] + 1);
        memcpy(m[nm].a, f[0], fl[0]);
        m[nm].a[fl[0]] = 0;
        m[nm].b = sd_xmalloc(fl[1] + 1);
        memcpy(m[nm].b, f[1], fl[1]);
        m[nm].b[fl[1]] = 0;
        m[nm].line = line;
        nm++;
    }
    *out = m;
    *n_out = nm;
    return 0;
}

static void free_merges(merge_def *m, int n) {
    for (int i = 0; i < n; i++) { free(m[i].a); free(m[i].b); }
    free(m);
}

void sd_clip_tokenizer_free(sd_clip_tokenizer *t) {
    if (!t) return;
    free(t->sym_tok);
    free(t->pairs);
    free(t->merged);
    if (t->id_str)
        for (int32_t i = 0; i <= t->max_id; i++) free(t->id_str[i]);
    free(t->id_str);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].cp);
    free(t->added);
    free(t);
}

static void fp_line(sd_sha256 *h, const char *fmt, long a, long b) {
    char buf[128];
    int n = snprintf(buf, sizeof buf, fmt, a, b);
    sd_sha256_update(h, buf, (size_t)n);
}

/* ---- loading, in steps that share this state */

enum { K_BOS, K_EOS, K_UNK, K_SEP, K_PAD, K_CLS, K_MASK, NK };
static const char *const special_keys[NK] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                             "pad_token", "cls_token", "mask_token"};

typedef struct {
    char *vocab_path, *merges_path, *cfg_path, *stm_path, *atj_path;
    char *vtext, *mtext;
    size_t vlen, mlen;
    cJSON *vocab, *cfg, *stm, *atj;
    symtab st;          /* every symbol; st.tok[s] = its token id, -1 while unknown */
    merge_def *merges;
    int n_merges;
    added_list al;      /* added tokens (content -> id), specials included */
    const char *special[NK];
    sd_sha256 fp;       /* fingerprint, fed as the files are read */
} loader;

/* vocab.json: {token: id}, ids unique integers in [0, 2^24) */
static int load_vocab(loader *L, sd_clip_tokenizer *t) {
    size_t bad;
    if (sd_read_file(L->vocab_path, CLIP_MAX_FILE, &L->vtext, &L->vlen)) return -1;
    if (!utf8_valid((const uint8_t *)L->vtext, L->vlen, &bad))
        return sd_set_error("%s: invalid UTF-8 at byte %zu", L->vocab_path, bad);
    if (sd_json_parse(L->vtext, L->vlen, L->vocab_path, &L->vocab)) return -1;
    if (!cJSON_IsObject(L->vocab)) return sd_set_error("%s: expected a JSON object {token: id}", L->vocab_path);
    int64_t max_id = -1, id;
    int n = 0;
    for (const cJSON *it = L->vocab->child; it; it = it->next, n++) {
        if (!json_int_in(it, 0, CLIP_MAX_ID - 1, &id))
            return sd_set_error("%s: token \"%s\": id must be an integer in [0, %d)", L->vocab_path, it->string,
                                CLIP_MAX_ID);
        if (id > max_id) max_id = id;
    }
    if (n == 0) return sd_set_error("%s: empty vocabulary", L->vocab_path);
    uint8_t *used = sd_xcalloc((size_t)max_id / 8 + 1, 1);
    int rc = 0;
    for (const cJSON *it = L->vocab->child; it && rc == 0; it = it->next) {
        json_int_in(it, 0, CLIP_MAX_ID - 1, &id);
        if (used[id / 8] & (1u << (id % 8))) {
            rc = sd_set_error("%s: id %d is used by two tokens (\"%s\" and another)", L->vocab_path, (int)id,
                              it->string);
            break;
        }
        used[id / 8] |= (uint8_t)(1u << (id % 8));
        int added;
        symtab_put(&L->st, it->string, strlen(it->string), (int32_t)id, &added);
        if (!added) rc = sd_set_error("%s: duplicate token \"%s\"", L->vocab_path, it->string);
    }
    free(used);
    t->n_vocab = n;
    t->max_id = (int32_t)max_id;
    return rc;
}

/* The 512 initial symbols (bytes_to_unicode, with and without "</w>"); a
 * vocabulary that lacks some maps them to unk, as HF does. */
static void add_byte_symbols(loader *L, sd_clip_tokenizer *t) {
    int32_t bc[256];
    byte_chars(bc);
    for (int b = 0; b < 256; b++) {
        uint8_t u[8];
        size_t k = utf8_put(u, bc[b]);
        memcpy(u + k, "</w>", 4);
        int added;
        t->sym_byte[b] = symtab_put(&L->st, (const char *)u, k, -1, &added);
        t->sym_byte_end[b] = symtab_put(&L->st, (const char *)u, k + 4, -1, &added);
    }
}

/* merges.txt -> the pair table. A merge's symbols must exist (in the
 * vocabulary or as the result of some merge); a result missing from the
 * vocabulary is kept as a symbol that maps to unk (HF keeps the string). */
static int load_merges(loader *L, sd_clip_tokenizer *t) {
    size_t bad;
    if (sd_read_file(L->merges_path, CLIP_MAX_FILE, &L->mtext, &L->mlen)) return -1;
    if (!utf8_valid((const uint8_t *)L->mtext, L->mlen, &bad))
        return sd_set_error("%s: invalid UTF-8 at byte %zu", L->merges_path, bad);
    /* the fingerprint covers the bytes as read; parse_merges edits them */
    sd_sha256_update(&L->fp, "sdtools clip tokenizer v1\n", 26);
    fp_line(&L->fp, "vocab.json %ld\n", (long)L->vlen, 0);
    sd_sha256_update(&L->fp, L->vtext, L->vlen);
    fp_line(&L->fp, "merges.txt %ld\n", (long)L->mlen, 0);
    sd_sha256_update(&L->fp, L->mtext, L->mlen);
    if (parse_merges(L->merges_path, L->mtext, L->mlen, &L->merges, &L->n_merges)) return -1;
    const merge_def *m = L->merges;
    int nm = L->n_merges;
    char *ab = NULL;
    size_t ab_cap = 0;
    int32_t *result = sd_xmalloc(((size_t)nm + 1) * sizeof *result);
    for (int i = 0; i < nm; i++) {
        size_t la = strlen(m[i].a), lb = strlen(m[i].b);
        ab = grow(ab, &ab_cap, la + lb + 1, 1);
        memcpy(ab, m[i].a, la);
        memcpy(ab + la, m[i].b, lb);
        int added;
        result[i] = symtab_put(&L->st, ab, la + lb, -1, &added);
    }
    free(ab);
    if (L->st.n >= (1 << SYM_BITS) - 1) {
        free(result);
        return sd_set_error("%s: too many symbols (%d)", L->vocab_path, L->st.n);
    }
    uint64_t cap = 1024;
    while (cap < 2 * (uint64_t)nm + 2) cap <<= 1;
    t->pairs = sd_xmalloc(cap * sizeof *t->pairs);
    for (uint64_t i = 0; i < cap; i++) t->pairs[i] = EMPTY_SLOT;
    t->pair_mask = cap - 1;
    t->merged = result;
    t->n_merges = nm;
    for (int i = 0; i < nm; i++) {
        int32_t a = symtab_get(&L->st, m[i].a, strlen(m[i].a));
        int32_t b = symtab_get(&L->st, m[i].b, strlen(m[i].b));
        if (a < 0 || b < 0)
            return sd_set_error("%s:%d: symbol \"%s\" is not in vocab.json and no merge produces it", L->merges_path,
                                m[i].line, a < 0 ? m[i].a : m[i].b);
        uint64_t key = pair_key(a, b), j = mix64(key) & t->pair_mask;
        while (t->pairs[j] != EMPTY_SLOT && t->pairs[j] >> 16 != key) j = (j + 1) & t->pair_mask;
        if (t->pairs[j] != EMPTY_SLOT)
            return sd_set_error("%s:%d: duplicate merge \"%s %s\" (first on line %d)", L->merges_path, m[i].line,
                                m[i].a, m[i].b, m[t->pairs[j] & 0xFFFF].line);
        t->pairs[j] = key << 16 | (uint64_t)i;
    }
    return 0;
}

/* tokenizer_config.json, special_tokens_map.json, added_tokens.json, as
 * from_pretrained combines them: the config's special tokens, overridden by
 * special_tokens_map.json unless the config has added_tokens_decoder (then
 * that one is the list of added tokens, else added_tokens.json is); every
 * special token not added yet gets its vocab id or the next free id. */
static int load_config(loader *L, sd_clip_tokenizer *t) {
    cJSON **dst[3] = {&L->cfg, &L->stm, &L->atj};
    char *paths[3] = {L->cfg_path, L->stm_path, L->atj_path};
    for (int k = 0; k < 3; k++) {
        if (!sd_is_file(paths[k])) continue;
        if (sd_json_load(paths[k], dst[k])) return -1;
        if (!cJSON_IsObject(*dst[k])) return sd_set_error("%s: expected a JSON object", paths[k]);
    }
    const cJSON *cfg = L->cfg, *stm = L->stm;
    const cJSON *atd = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder") : NULL;
    /* CLIPTokenizer's defaults */
    const char *defaults[NK] = {"<|startoftext|>", "<|endoftext|>", "<|endoftext|>", NULL, "<|endoftext|>", NULL, NULL};
    for (int k = 0; k < NK; k++) {
        L->special[k] = defaults[k];
        const cJSON *v = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, special_keys[k]) : NULL;
        const char *file = L->cfg_path;
        if (!atd && stm && cJSON_GetObjectItemCaseSensitive(stm, special_keys[k])) {
            v = cJSON_GetObjectItemCaseSensitive(stm, special_keys[k]);
            file = L->stm_path;
        }
        if (v && token_value(v, file, special_keys[k], &L->special[k])) return -1;
    }
    const cJSON *extra = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "additional_special_tokens") : NULL;
    const char *extra_file = L->cfg_path;
    if (!atd && stm && cJSON_GetObjectItemCaseSensitive(stm, "additional_special_tokens")) {
        extra = cJSON_GetObjectItemCaseSensitive(stm, "additional_special_tokens");
        extra_file = L->stm_path;
    }
    if (extra && !cJSON_IsNull(extra) && !cJSON_IsArray(extra))
        return sd_set_error("%s: additional_special_tokens must be a list", extra_file);

    t->max_len = 77; /* HF: unbounded without a config; every SD pipeline uses 77 */
    const cJSON *mml = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "model_max_length") : NULL;
    if (mml) {
        int64_t v;
        if (!json_int_in(mml, 2, 65536, &v))
            return sd_set_error("%s: model_max_length must be an integer in [2, 65536] (SD uses 77)", L->cfg_path);
        t->max_len = (int)v;
    }

    added_list *al = &L->al;
    if (atd) {
        if (!cJSON_IsObject(atd)) return sd_set_error("%s: added_tokens_decoder must be an object", L->cfg_path);
        for (const cJSON *it = atd->child; it; it = it->next) {
            char *end;
            long id = strtol(it->string, &end, 10);
            const char *content = NULL;
            if (*it->string == 0 || *end || id < 0 || id >= CLIP_MAX_ID)
                return sd_set_error("%s: added_tokens_decoder key \"%s\" is not a token id", L->cfg_path, it->string);
            if (token_value(it, L->cfg_path, it->string, &content)) return -1;
            if (!content) return sd_set_error("%s: added_tokens_decoder[%s] is null", L->cfg_path, it->string);
            if (*content && added_find(al, content) < 0) added_push(al, content, (int32_t)id);
        }
    } else if (L->atj) {
        for (const cJSON *it = L->atj->child; it; it = it->next) {
            int64_t id;
            if (!json_int_in(it, 0, CLIP_MAX_ID - 1, &id))
                return sd_set_error("%s: \"%s\": id must be an integer in [0, %d)", L->atj_path, it->string,
                                    CLIP_MAX_ID);
            if (*it->string && added_find(al, it->string) < 0) added_push(al, it->string, (int32_t)id);
        }
    }
    /* _add_tokens(all_special_tokens_extended) */
    int n_extra = extra && cJSON_IsArray(extra) ? cJSON_GetArraySize(extra) : 0;
    const char **order = sd_xmalloc((size_t)(NK + n_extra) * sizeof *order);
    int no = 0, rc = 0;
    for (int k = 0; k < NK; k++)
        if (L->special[k]) order[no++] = L->special[k];
    for (const cJSON *it = n_extra ? extra->child : NULL; it && rc == 0; it = it->next) {
        const char *c = NULL;
        rc = token_value(it, extra_file, "additional_special_tokens", &c);
        if (rc == 0 && c) order[no++] = c;
    }
    for (int k = 0; k < no && rc == 0; k++) {
        if (!*order[k] || added_find(al, order[k]) >= 0) continue;
        int32_t s = symtab_get(&L->st, order[k], strlen(order[k]));
        int32_t id = s >= 0 ? L->st.tok[s] : -1;
        if (id < 0) { /* new id = len(vocab | added), as HF counts it */
            id = t->n_vocab;
            for (int q = 0; q < al->n; q++) {
                int32_t qs = symtab_get(&L->st, al->v[q].content, strlen(al->v[q].content));
                if (qs < 0 || L->st.tok[qs] < 0) id++;
            }
        }
        added_push(al, order[k], id);
    }
    free(order);
    if (rc) return rc;
    static const int need[] = {K_BOS, K_EOS, K_UNK, K_PAD};
    for (int k = 0; k < 4; k++)
        if (!L->special[need[k]])
            return sd_set_error("%s: %s is null; SD tokenization needs it", L->cfg_path, special_keys[need[k]]);
    int32_t s = symtab_get(&L->st, L->special[K_UNK], strlen(L->special[K_UNK]));
    if (s < 0 || L->st.tok[s] < 0) /* HF: unk = encoder[unk_token], the vocabulary only */
        return sd_set_error("%s: unk_token \"%s\" is not in vocab.json", L->vocab_path, L->special[K_UNK]);
    t->unk = L->st.tok[s];
    t->bos = added_find(al, L->special[K_BOS]);
    t->eos = added_find(al, L->special[K_EOS]);
    t->pad = added_find(al, L->special[K_PAD]);
    /* an empty special token is never added (HF skips empty added tokens), so
     * it has no id: SD encoding cannot use it (found by fuzz_clip_load) */
    for (int k = 0; k < 4; k++)
        if (!*L->special[need[k]])
            return sd_set_error("%s: %s is an empty string; SD tokenization needs a token", L->cfg_path,
                                special_keys[need[k]]);
    if (t->bos < 0 || t->eos < 0 || t->pad < 0)
        return sd_set_error("%s: a special token has no id", L->cfg_path);
    return 0;
}

/* Symbol -> id map, added-token tables, id -> string, fingerprint. */
static int finish(loader *L, sd_clip_tokenizer *t) {
    symtab *st = &L->st;
    added_list *al = &L->al;
    /* symbols outside the vocabulary are unk; added tokens come first (HF
     * _convert_token_to_id_with_added_voc) */
    t->n_sym = st->n;
    t->sym_tok = st->tok;
    st->tok = NULL;
    for (int s = 0; s < st->n; s++)
        if (t->sym_tok[s] < 0) t->sym_tok[s] = t->unk;
    for (int i = 0; i < al->n; i++) {
        int32_t s = symtab_get(st, al->v[i].content, strlen(al->v[i].content));
        if (s >= 0) t->sym_tok[s] = al->v[i].id;
    }
    /* the regex's special alternatives hit HF's pre-filled bpe cache: the word
     * stays whole and becomes an id like any token */
    static const char *const sw[2] = {"<|startoftext|>", "<|endoftext|>"};
    for (int k = 0; k < 2; k++) {
        int32_t s = symtab_get(st, sw[k], strlen(sw[k]));
        t->special_word_tok[k] = s >= 0 ? t->sym_tok[s] : t->unk;
    }
    /* added tokens as code points, for the split */
    t->n_added = al->n;
    t->added = sd_xcalloc((size_t)(al->n ? al->n : 1), sizeof *t->added);
    for (int i = 0; i < al->n; i++) {
        size_t n = strlen(al->v[i].content), bad;
        added_token *a = &t->added[i];
        a->cp = sd_xmalloc((n + 1) * sizeof(int32_t));
        long k = utf8_decode((const uint8_t *)al->v[i].content, n, a->cp, &bad);
        if (k <= 0) return sd_set_error("added token \"%s\" is not valid UTF-8", al->v[i].content);
        a->len = (int)k;
        a->id = al->v[i].id;
        if (a->cp[0] < 128) t->added_first_ascii[a->cp[0]] = 1;
        else t->added_first_nonascii = 1;
        if (a->id > t->max_id) t->max_id = a->id;
    }
    /* id -> string */
    t->id_str = sd_xcalloc((size_t)t->max_id + 1, sizeof *t->id_str);
    for (const cJSON *it = L->vocab->child; it; it = it->next) t->id_str[(int32_t)it->valuedouble] = sd_xstrdup(it->string);
    for (int i = 0; i < al->n; i++)
        if (!t->id_str[al->v[i].id]) t->id_str[al->v[i].id] = sd_xstrdup(al->v[i].content);
    /* fingerprint: the file bytes (load_merges), then what decides the ids */
    fp_line(&L->fp, "model_max_length %ld\n", t->max_len, 0);
    fp_line(&L->fp, "pad %ld\n", t->pad, 0);
    fp_line(&L->fp, "bos %ld\n", t->bos, 0);
    fp_line(&L->fp, "eos %ld\n", t->eos, 0);
    fp_line(&L->fp, "unk %ld\n", t->unk, 0);
    int *ord = sd_xmalloc((size_t)(al->n ? al->n : 1) * sizeof *ord); /* added tokens by (id, content) */
    for (int i = 0; i < al->n; i++) ord[i] = i;
    for (int i = 1; i < al->n; i++)
        for (int j = i; j > 0; j--) {
            const added_def *x = &al->v[ord[j - 1]], *y = &al->v[ord[j]];
            if (x->id < y->id || (x->id == y->id && strcmp(x->content, y->content) <= 0)) break;
            int tmp = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = tmp;
        }
    for (int i = 0; i < al->n; i++) {
        const added_def *a = &al->v[ord[i]];
        fp_line(&L->fp, "added %ld %ld\n", a->id, (long)strlen(a->content));
        sd_sha256_update(&L->fp, a->content, strlen(a->content));
        sd_sha256_update(&L->fp, "\n", 1);
    }
    free(ord);
    unsigned char dig[32];
    sd_sha256_final(&L->fp, dig);
    sd_sha256_hex(dig, t->fingerprint);
    t->serial = atomic_fetch_add(&next_serial, 1);
    return 0;
}

int sd_clip_tokenizer_load(const char *dir, sd_clip_tokenizer **out) {
    *out = NULL;
    pthread_once(&ascii_once, ascii_tables_init);
    loader L;
    memset(&L, 0, sizeof L);
    L.vocab_path = sd_path_join(dir, "vocab.json");
    L.merges_path = sd_path_join(dir, "merges.txt");
    L.cfg_path = sd_path_join(dir, "tokenizer_config.json");
    L.stm_path = sd_path_join(dir, "special_tokens_map.json");
    L.atj_path = sd_path_join(dir, "added_tokens.json");
    symtab_init(&L.st, 65536);
    sd_sha256_init(&L.fp);
    sd_clip_tokenizer *t = sd_xcalloc(1, sizeof *t);

    int rc = load_vocab(&L, t);
    if (rc == 0) {
        add_byte_symbols(&L, t);
        rc = load_merges(&L, t);
    }
    if (rc == 0) rc = load_config(&L, t);
    if (rc == 0) rc = finish(&L, t);

    for (int i = 0; i < L.al.n; i++) free(L.al.v[i].content);
    free(L.al.v);
    free_merges(L.merges, L.n_merges);
    symtab_free(&L.st);
    cJSON_Delete(L.vocab);
    cJSON_Delete(L.cfg);
    cJSON_Delete(L.stm);
    cJSON_Delete(L.atj);
    free(L.vtext);
    free(L.mtext);
    free(L.vocab_path);
    free(L.merges_path);
    free(L.cfg_path);
    free(L.stm_path);
    free(L.atj_path);
    if (rc) {
        sd_clip_tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int sd_clip_tokenizer_max_len(const sd_clip_tokenizer *t) { return t->max_len; }
int32_t sd_clip_tokenizer_bos_id(const sd_clip_tokenizer *t) { return t->bos; }
int32_t sd_clip_tokenizer_eos_id(const sd_clip_tokenizer *t) { return t->eos; }
int32_t sd_clip_tokenizer_pad_id(const sd_clip_tokenizer *t) { return t->pad; }
int32_t sd_clip_tokenizer_unk_id(const sd_clip_tokenizer *t) { return t->unk; }
int sd_clip_tokenizer_vocab_size(const sd_clip_tokenizer *t) { return t->n_vocab; }
const char *sd_clip_tokenizer_fingerprint(const sd_clip_tokenizer *t) { return t->fingerprint; }
const char *sd_clip_tokenizer_token(const sd_clip_tokenizer *t, int32_t id) {
    return id >= 0 && id <= t->max_id ? t->id_str[id] : NULL;
}

/* ------------------------------------------------------------------------ */
/* Per-thread scratch and word cache                                         */

#define CACHE_SLOTS 4096
#define CACHE_KEY_MAX 30
#define CACHE_IDS_MAX 14

typedef struct {
    uint64_t serial; /* tokenizer instance; 0 = empty */
    uint8_t len, n_ids;
    uint8_t key[CACHE_KEY_MAX];
    int32_t ids[CACHE_IDS_MAX];
} cache_entry;

typedef struct {
    int32_t *cp, *cl, *nf, *lw, *sym, *rk, *nx, *pv;
    uint8_t *u8, *wb;
    uint64_t *heap, *pend;
    size_t cp_cap, cl_cap, nf_cap, lw_cap, bpe_cap, u8_cap, wb_cap, heap_cap;
    cache_entry *cache;
} clip_tls;

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_free(void *p) {
    clip_tls *s = p;
    if (!s) return;
    free(s->cp); free(s->cl); free(s->nf); free(s->lw);
    free(s->sym); free(s->rk); free(s->nx); free(s->pv);
    free(s->u8); free(s->wb); free(s->heap); free(s->pend);
    free(s->cache);
    free(s);
}

static void tls_init(void) {
    if (pthread_key_create(&tls_key, tls_free) != 0) {
        fprintf(stderr, "clip_tokenizer: pthread_key_create failed\n");
        abort();
    }
}

static clip_tls *get_tls(void) {
    pthread_once(&tls_once, tls_init);
    clip_tls *s = pthread_getspecific(tls_key);
    if (!s) {
        s = sd_xcalloc(1, sizeof *s);
        s->cache = sd_xcalloc(CACHE_SLOTS, sizeof *s->cache);
        pthread_setspecific(tls_key, s);
    }
    return s;
}

void sd_clip_tokenizer_thread_release(void) {
    pthread_once(&tls_once, tls_init);
    clip_tls *s = pthread_getspecific(tls_key);
    if (s) {
        tls_free(s);
        pthread_setspecific(tls_key, NULL);
    }
}


/* ------------------------------------------------------------------------ */
/* BPE                                                                       */

typedef struct {
    int32_t *ids;
    size_t cap, n;
    int stop;      /* stop once n reaches cap */
    uint8_t *norm; /* sd_clip_normalize: collect the normalized words here instead */
    size_t norm_len, norm_cap;
} emitter;

static inline void emit(emitter *e, int32_t id) {
    if (e->n < e->cap) e->ids[e->n] = id;
    e->n++;
}

/* Short words: a linked list with the rank of each node's pair; a pass finds
 * the lowest rank and merges all its occurrences left to right (the Python
 * loop), updating only the ranks next to each merge. */
static int bpe_scan(const sd_clip_tokenizer *t, int32_t *s, int32_t *rk, int32_t *nx, int n) {
    for (int i = 0; i < n; i++) {
        nx[i] = i + 1 < n ? i + 1 : END;
        rk[i] = i + 1 < n ? pair_rank(t, s[i], s[i + 1]) : NO_RANK;
    }
    int count = n;
    while (count > 1) {
        int32_t best = NO_RANK;
        int first = END;
        for (int i = 0; i != END; i = nx[i])
            if (rk[i] < best) { best = rk[i]; first = i; }
        if (best == NO_RANK) break;
        int32_t m = t->merged[best];
        int prev = END;
        for (int i = 0; i != first; i = nx[i]) prev = i;
        for (int i = first; i != END;) {
            if (rk[i] == best) { /* ranks are unique per pair: this is (a, b) */
                int j = nx[i];
                s[i] = m;
                nx[i] = nx[j];
                count--;
                rk[i] = nx[i] != END ? pair_rank(t, m, s[nx[i]]) : NO_RANK;
                if (prev != END) rk[prev] = pair_rank(t, s[prev], m);
            }
            prev = i;
            i = nx[i];
        }
    }
    return count;
}

/* Long words: the same merges in O(n log n). A min-heap of (rank, position)
 * holds every ranked adjacent pair (stale entries are skipped); all entries
 * of the lowest rank are popped in position order and merged left to right,
 * and only then are the pairs they created pushed, so one batch is exactly
 * one pass of the Python loop even with merge lists where a new pair outranks
 * the current one. */
static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = v;
    return top;
}

static int bpe_heap(const sd_clip_tokenizer *t, clip_tls *ts, int32_t *s, int32_t *rk, int32_t *nx, int32_t *pv,
                    int n) {
    if (4 * (size_t)n > ts->heap_cap) {
        ts->heap = grow(ts->heap, &ts->heap_cap, 4 * (size_t)n, sizeof *ts->heap);
        ts->pend = sd_xrealloc(ts->pend, ts->heap_cap * sizeof *ts->pend);
    }
    uint64_t *h = ts->heap, *pend = ts->pend;
    size_t nh = 0;
    for (int i = 0; i < n; i++) {
        nx[i] = i + 1 < n ? i + 1 : END;
        pv[i] = i - 1;
        rk[i] = i + 1 < n ? pair_rank(t, s[i], s[i + 1]) : NO_RANK;
        if (rk[i] != NO_RANK) heap_push(h, &nh, (uint64_t)rk[i] << 32 | (uint32_t)i);
    }
    /* rk[i] == NO_RANK also marks removed nodes (they are never revisited) */
    int count = n;
    while (nh > 0 && count > 1) {
        uint64_t top = heap_pop(h, &nh);
        int32_t r = (int32_t)(top >> 32);
        int p = (int)(uint32_t)top;
        if (rk[p] != r) continue; /* stale */
        int32_t m = t->merged[r];
        size_t npend = 0;
        for (;;) {
            if (rk[p] == r) {
                int j = nx[p];
                s[p] = m;
                nx[p] = nx[j];
                if (nx[j] != END) pv[nx[j]] = p;
                rk[j] = NO_RANK;
                count--;
                rk[p] = nx[p] != END ? pair_rank(t, m, s[nx[p]]) : NO_RANK;
                if (rk[p] != NO_RANK) pend[npend++] = (uint64_t)rk[p] << 32 | (uint32_t)p;
                if (pv[p] != END) {
                    int q = pv[p];
                    rk[q] = pair_rank(t, s[q], m);
                    if (rk[q] != NO_RANK) pend[npend++] = (uint64_t)rk[q] << 32 | (uint32_t)q;
                }
            }
            if (nh == 0 || (int32_t)(h[0] >> 32) != r) break;
            p = (int)(uint32_t)heap_pop(h, &nh);
        }
        for (size_t k = 0; k < npend; k++) heap_push(h, &nh, pend[k]);
    }
    return count;
}

#ifndef BPE_SCAN_MAX /* words of more bytes use the heap (overridable to test both paths) */
#define BPE_SCAN_MAX 64
#endif

/* One regex piece (UTF-8 bytes w[0..n)) -> ids. */
static void bpe_word(const sd_clip_tokenizer *t, clip_tls *ts, const uint8_t *w, size_t n, emitter *e) {
    uint32_t h = 2166136261u;
    cache_entry *ce = NULL;
    if (n <= CACHE_KEY_MAX) {
        for (size_t i = 0; i < n; i++) h = (h ^ w[i]) * 16777619u;
        ce = &ts->cache[(h ^ (h >> 16)) & (CACHE_SLOTS - 1)];
        if (ce->serial == t->serial && ce->len == n && memcmp(ce->key, w, n) == 0) {
            for (int i = 0; i < ce->n_ids; i++) emit(e, ce->ids[i]);
            return;
        }
    }
    if (n == 1) { /* no pairs: token + "</w>" */
        int32_t id = t->sym_tok[t->sym_byte_end[w[0]]];
        emit(e, id);
        if (ce) {
            ce->serial = t->serial; ce->len = 1; ce->key[0] = w[0]; ce->n_ids = 1; ce->ids[0] = id;
        }
        return;
    }
    if (n > ts->bpe_cap) {
        ts->sym = grow(ts->sym, &ts->bpe_cap, n, sizeof(int32_t));
        ts->rk = sd_xrealloc(ts->rk, ts->bpe_cap * sizeof(int32_t));
        ts->nx = sd_xrealloc(ts->nx, ts->bpe_cap * sizeof(int32_t));
        ts->pv = sd_xrealloc(ts->pv, ts->bpe_cap * sizeof(int32_t));
    }
    int32_t *s = ts->sym;
    for (size_t i = 0; i + 1 < n; i++) s[i] = t->sym_byte[w[i]];
    s[n - 1] = t->sym_byte_end[w[n - 1]];
    int count = n <= BPE_SCAN_MAX ? bpe_scan(t, s, ts->rk, ts->nx, (int)n)
                                  : bpe_heap(t, ts, s, ts->rk, ts->nx, ts->pv, (int)n);
    size_t first_out = e->n;
    for (int i = 0; i != END; i = ts->nx[i]) emit(e, t->sym_tok[s[i]]);
    if (ce && count <= CACHE_IDS_MAX && e->n - first_out == (size_t)count && e->n <= e->cap) {
        ce->serial = t->serial;
        ce->len = (uint8_t)n;
        memcpy(ce->key, w, n);
        ce->n_ids = (uint8_t)count;
        memcpy(ce->ids, e->ids + first_out, (size_t)count * sizeof(int32_t));
    }
}

/* ------------------------------------------------------------------------ */
/* Text -> pieces                                                            */

/* Case-insensitive match of an ASCII literal at t[0..n) the way the regex
 * module's IGNORECASE matches it ('s' also matches U+017F LONG S, 'k' U+212A). */
static size_t match_ci(const int32_t *t, size_t n, const char *lit) {
    size_t k = 0;
    for (; lit[k]; k++) {
        if (k >= n) return 0;
        int32_t c = t[k], l = (uint8_t)lit[k];
        if (c == l) continue;
        if (l >= 'a' && l <= 'z') {
            if (c == l - 32 || (l == 's' && c == 0x17F) || (l == 'k' && c == 0x212A)) continue;
        }
        return 0;
    }
    return k;
}

static void emit_piece(const sd_clip_tokenizer *t, clip_tls *ts, const int32_t *p, size_t n, int special,
                       emitter *e) {
    ts->wb = grow(ts->wb, &ts->wb_cap, 4 * n, 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += utf8_put(ts->wb + k, p[i]);
    if (special >= 0) {
        /* exact "<|startoftext|>" / "<|endoftext|>": HF's pre-filled cache */
        static const char *const sw[2] = {"<|startoftext|>", "<|endoftext|>"};
        if (k == strlen(sw[special]) && memcmp(ts->wb, sw[special], k) == 0) {
            emit(e, t->special_word_tok[special]);
            return;
        }
    }
    bpe_word(t, ts, ts->wb, k, e);
}

/* The pre-tokenizer regex over one lower-cased word (no whitespace inside). */
static int regex_word(const sd_clip_tokenizer *t, clip_tls *ts, const int32_t *w, size_t n, emitter *e) {
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    size_t i = 0;
    while (i < n) {
        if (e->stop && e->n >= e->cap) return 1;
        int32_t c = w[i];
        size_t m = 0;
        if (c == '<') {
            if ((m = match_ci(w + i, n - i, "<|startoftext|>"))) { emit_piece(t, ts, w + i, m, 0, e); i += m; continue; }
            if ((m = match_ci(w + i, n - i, "<|endoftext|>"))) { emit_piece(t, ts, w + i, m, 1, e); i += m; continue; }
        } else if (c == '\'') {
            for (size_t k = 0; k < sizeof contractions / sizeof contractions[0] && !m; k++)
                m = match_ci(w + i, n - i, contractions[k]);
            if (m) { emit_piece(t, ts, w + i, m, -1, e); i += m; continue; }
        }
        int cls = rx_class(c);
        size_t j = i + 1;
        switch (cls) {
        case RX_L:
            while (j < n && rx_class(w[j]) == RX_L) j++;
            break;
        case RX_N:
            break;
        case RX_O:
            while (j < n && rx_class(w[j]) == RX_O) j++;
            break;
        default: /* whitespace, or U+0345 which no alternative matches: findall skips it */
            i = j;
            continue;
        }
        emit_piece(t, ts, w + i, j - i, -1, e);
        i = j;
    }
    return e->stop && e->n >= e->cap;
}

/* One chunk of text between added tokens: BasicTokenizer, then the regex.
 * Returns 0, 1 when the emitter is full and stops, -1 on error. */
static int do_chunk(const sd_clip_tokenizer *t, clip_tls *ts, const int32_t *cp, size_t n, emitter *e) {
    if (n == 0) return 0;
    /* _clean_text + _tokenize_chinese_chars */
    ts->cl = grow(ts->cl, &ts->cl_cap, 3 * n, sizeof(int32_t));
    int32_t *cl = ts->cl, maxcp = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = cp[i];
        int cc = clean_class(c);
        if (cc == 0) continue;
        if (cc == 1) { cl[k++] = ' '; continue; }
        if (c > maxcp) maxcp = c;
        if (c >= 0x3400 && is_cjk(c)) {
            cl[k++] = ' ';
            cl[k++] = c;
            cl[k++] = ' ';
        } else {
            cl[k++] = c;
        }
    }
    /* NFC. Below U+0300 there are no combining marks and no decompositions
     * that change under NFC, so such text is already NFC. */
    const int32_t *nf = cl;
    size_t nn = k;
    if (maxcp >= 0x300) {
        ts->u8 = grow(ts->u8, &ts->u8_cap, 4 * k + 1, 1);
        size_t nb = 0;
        for (size_t i = 0; i < k; i++) nb += utf8_put(ts->u8 + nb, cl[i]);
        utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
        for (;;) {
            ts->nf = grow(ts->nf, &ts->nf_cap, k + 16, sizeof(int32_t));
            utf8proc_ssize_t r = utf8proc_decompose(ts->u8, (utf8proc_ssize_t)nb, ts->nf, (utf8proc_ssize_t)ts->nf_cap, opt);
            if (r < 0) return sd_set_error("clip tokenizer: NFC failed: %s", utf8proc_errmsg(r));
            if ((size_t)r > ts->nf_cap) { ts->nf = grow(ts->nf, &ts->nf_cap, (size_t)r, sizeof(int32_t)); continue; }
            r = utf8proc_normalize_utf32(ts->nf, r, opt);
            if (r < 0) return sd_set_error("clip tokenizer: NFC failed: %s", utf8proc_errmsg(r));
            nn = (size_t)r;
            break;
        }
        nf = ts->nf;
    }
    /* split on whitespace, lower() each word, regex */
    ts->lw = grow(ts->lw, &ts->lw_cap, 2 * nn + 1, sizeof(int32_t));
    size_t i = 0;
    while (i < nn) {
        while (i < nn && py_isspace(nf[i])) i++;
        if (i >= nn) break;
        size_t s = i;
        while (i < nn && !py_isspace(nf[i])) i++;
        int32_t *lw = ts->lw;
        size_t m = 0;
        for (size_t j = s; j < i; j++) {
            int32_t c = nf[j];
            if (c < 0x80) lw[m++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
            else if (c == 0x130) { lw[m++] = 'i'; lw[m++] = 0x307; } /* SpecialCasing: İ -> i̇ */
            else if (c == 0x3A3) lw[m++] = final_sigma(nf + s, i - s, j - s) ? 0x3C2 : 0x3C3;
            else lw[m++] = utf8proc_tolower(c);
        }
        if (e->norm) { /* " ".join(words) */
            e->norm = grow(e->norm, &e->norm_cap, e->norm_len + 4 * m + 2, 1);
            if (e->norm_len) e->norm[e->norm_len++] = ' ';
            for (size_t j = 0; j < m; j++) e->norm_len += utf8_put(e->norm + e->norm_len, lw[j]);
            continue;
        }
        if (regex_word(t, ts, lw, m, e)) return 1;
    }
    return 0;
}

static int tokenize_impl(const sd_clip_tokenizer *t, const char *text, size_t len, emitter *e) {
    if (len > CLIP_MAX_TEXT) return sd_set_error("caption too long (%zu bytes, limit %u)", len, CLIP_MAX_TEXT);
    clip_tls *ts = get_tls();
    ts->cp = grow(ts->cp, &ts->cp_cap, len + 1, sizeof(int32_t));
    size_t bad;
    long ncp = utf8_decode((const uint8_t *)text, len, ts->cp, &bad);
    if (ncp < 0) return sd_set_error("invalid UTF-8 at byte %zu", bad);
    const int32_t *cp = ts->cp;
    size_t n = (size_t)ncp, chunk = 0, i = 0;
    /* added tokens (tokens_trie.split): leftmost, then longest */
    while (i < n) {
        int32_t c = cp[i];
        if (t->n_added && (c < 128 ? t->added_first_ascii[c] : t->added_first_nonascii)) {
            int best = -1, best_len = 0;
            for (int a = 0; a < t->n_added; a++) {
                const added_token *at = &t->added[a];
                if (at->len > best_len && (size_t)at->len <= n - i && memcmp(at->cp, cp + i, (size_t)at->len * 4) == 0) {
                    best = a;
                    best_len = at->len;
                }
            }
            if (best >= 0) {
                int r = do_chunk(t, ts, cp + chunk, i - chunk, e);
                if (r) return r < 0 ? -1 : 0;
                if (e->stop && e->n >= e->cap) return 0;
                emit(e, t->added[best].id);
                i += (size_t)best_len;
                chunk = i;
                continue;
            }
        }
        i++;
    }
    return do_chunk(t, ts, cp + chunk, n - chunk, e) < 0 ? -1 : 0;
}

int sd_clip_normalize(const char *text, size_t len, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (len > CLIP_MAX_TEXT) return sd_set_error("caption too long (%zu bytes, limit %u)", len, CLIP_MAX_TEXT);
    pthread_once(&ascii_once, ascii_tables_init);
    clip_tls *ts = get_tls();
    ts->cp = grow(ts->cp, &ts->cp_cap, len + 1, sizeof(int32_t));
    size_t bad;
    long ncp = utf8_decode((const uint8_t *)text, len, ts->cp, &bad);
    if (ncp < 0) return sd_set_error("invalid UTF-8 at byte %zu", bad);
    emitter e = {0};
    e.norm = sd_xmalloc(16);
    e.norm_cap = 16;
    if (do_chunk(NULL, ts, ts->cp, (size_t)ncp, &e) < 0) { free(e.norm); return -1; }
    e.norm[e.norm_len] = 0;
    *out = (char *)e.norm;
    if (out_len) *out_len = e.norm_len;
    return 0;
}

void sd_clip_char_info_get(int32_t cp, sd_clip_char_info *ci) {
    pthread_once(&ascii_once, ascii_tables_init);
    memset(ci, 0, sizeof *ci);
    if (cp < 0 || cp > 0x10FFFF) return;
    ci->clean = (uint8_t)clean_class(cp);
    ci->cjk = (uint8_t)is_cjk(cp);
    ci->space = (uint8_t)py_isspace(cp);
    ci->regex = (uint8_t)rx_class(cp);
    ci->cased = (uint8_t)cased(cp);
    ci->case_ignorable = (uint8_t)case_ignorable(cp);
    if (cp == 0x130) {
        ci->lower[0] = 'i';
        ci->lower[1] = 0x307;
        ci->n_lower = 2;
    } else {
        ci->lower[0] = cp < 0x80 ? ((cp >= 'A' && cp <= 'Z') ? cp + 32 : cp) : utf8proc_tolower(cp);
        ci->n_lower = 1;
    }
}

int sd_clip_tokenizer_tokenize(const sd_clip_tokenizer *t, const char *text, size_t len, int32_t *ids, size_t cap,
                               size_t *n) {
    emitter e = {.ids = ids, .cap = ids ? cap : 0};
    *n = 0;
    if (tokenize_impl(t, text, len, &e)) return -1;
    *n = e.n;
    return 0;
}

int sd_clip_tokenizer_encode_n(const sd_clip_tokenizer *t, const char *text, size_t len, int32_t *ids, int *n_tokens,
                               size_t *n_text) {
    size_t body = (size_t)t->max_len - 2;
    /* the text ids go straight to ids[1..]; on error nothing is written
     * (tokenize_impl fails only before its first id) */
    emitter e = {.ids = ids + 1, .cap = body, .stop = n_text == NULL};
    if (tokenize_impl(t, text, len, &e)) return -1;
    size_t k = e.n < body ? e.n : body;
    ids[0] = t->bos;
    ids[1 + k] = t->eos;
    for (size_t i = k + 2; i < (size_t)t->max_len; i++) ids[i] = t->pad;
    if (n_tokens) *n_tokens = (int)k + 2;
    if (n_text) *n_text = e.n;
    return 0;
}

int sd_clip_tokenizer_encode(const sd_clip_tokenizer *t, const char *utf8, int32_t *ids, int *n_tokens) {
    return sd_clip_tokenizer_encode_n(t, utf8, strlen(utf8), ids, n_tokens, NULL);
}
