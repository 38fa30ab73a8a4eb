/* clip_tokenizer.h — the CLIP byte-level BPE tokenizer of Stable Diffusion.
 *
 * Produces exactly the ids of transformers 4.x's slow (Python)
 * `CLIPTokenizer` on its path without ftfy (ftfy is not a transformers
 * dependency), as run by diffusers' train_text_to_image.py:
 *
 *     tokenizer(caption, max_length=77, padding="max_length", truncation=True).input_ids
 *
 * reference: transformers 4.57.6 under Python 3.11 (Unicode 14.0). The
 * semantics, every normalization step, the pad-token rule and the fingerprint
 * are specified in formats/tokens.md; the parity test (tests/py/
 * test_tokenizer_parity.py) holds it to 100% equality on a 1,727-caption
 * corpus for the SD1, SD2 and tiny byte-level tokenizers, and compares the
 * Unicode handling code point by code point.
 *
 * Input is a tokenizer directory in the diffusers/transformers layout:
 * vocab.json + merges.txt (required), tokenizer_config.json,
 * special_tokens_map.json, added_tokens.json (optional).
 *
 * Thread safety: a loaded tokenizer is immutable; any number of threads may
 * call the encode functions on it concurrently. Each calling thread owns a
 * private scratch area and a 4096-entry word cache (about 0.4 MiB, allocated
 * on first use, freed when the thread exits or on
 * sd_clip_tokenizer_thread_release()). Freeing a tokenizer while another
 * thread still encodes with it is the caller's error.
 */
#ifndef SD_TEXT_CLIP_TOKENIZER_H
#define SD_TEXT_CLIP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct sd_clip_tokenizer sd_clip_tokenizer;

/* Load DIR/vocab.json, DIR/merges.txt and the optional configs. Validates
 * everything (missing files, bad JSON, bad UTF-8, duplicate tokens or ids,
 * merges that are not two symbols or name unknown symbols, absent special
 * tokens, absurd model_max_length) and fails with a message naming the file. */
int sd_clip_tokenizer_load(const char *dir, sd_clip_tokenizer **out);
void sd_clip_tokenizer_free(sd_clip_tokenizer *tok);

/* SD encoding of a NUL-terminated UTF-8 caption into ids[max_len]:
 *   [bos] + text_ids[:max_len-2] + [eos], then pad ids up to max_len.
 * *n_tokens (may be NULL) = the unpadded length, 2..max_len.
 * Fails only on invalid UTF-8 or a caption over 16 MiB (ids untouched). */
int sd_clip_tokenizer_encode(const sd_clip_tokenizer *tok, const char *utf8, int32_t *ids, int *n_tokens);

/* The same for len bytes (which may contain NUL, dropped like any control
 * character). If n_text is not NULL it receives the number of text tokens
 * before truncation (the caption was truncated iff *n_text > max_len - 2);
 * this tokenizes the whole caption, otherwise encoding stops at max_len. */
int sd_clip_tokenizer_encode_n(const sd_clip_tokenizer *tok, const char *text, size_t len, int32_t *ids,
                               int *n_tokens, size_t *n_text);

/* The text token ids alone (no bos/eos, no truncation, no padding): writes
 * the first min(*n, cap) ids to ids (may be NULL when cap is 0), *n = total. */
int sd_clip_tokenizer_tokenize(const sd_clip_tokenizer *tok, const char *text, size_t len, int32_t *ids, size_t cap,
                               size_t *n);

int sd_clip_tokenizer_max_len(const sd_clip_tokenizer *tok); /* model_max_length: 77 */
int32_t sd_clip_tokenizer_bos_id(const sd_clip_tokenizer *tok);
int32_t sd_clip_tokenizer_eos_id(const sd_clip_tokenizer *tok);
int32_t sd_clip_tokenizer_pad_id(const sd_clip_tokenizer *tok); /* SD1 49407, SD2 0 */
int32_t sd_clip_tokenizer_unk_id(const sd_clip_tokenizer *tok);
/* Entries in vocab.json (49408 for CLIP); added tokens may use ids beyond. */
int sd_clip_tokenizer_vocab_size(const sd_clip_tokenizer *tok);
/* The token string of an id (vocab or added token), NULL if none. */
const char *sd_clip_tokenizer_token(const sd_clip_tokenizer *tok, int32_t id);

/* sha256 hex (64 chars) identifying the tokenizer's behaviour: the bytes of
 * vocab.json and merges.txt, model_max_length, the pad/bos/eos/unk ids and the
 * added tokens (exact definition in formats/tokens.md). Manifests record it;
 * consumers refuse data made with another tokenizer. */
const char *sd_clip_tokenizer_fingerprint(const sd_clip_tokenizer *tok);

/* ---- inspection (tests, diagnostics) */

/* The text BasicTokenizer hands to the regex: `" ".join(BasicTokenizer(
 * strip_accents=False, do_split_on_punc=False).tokenize(text))`, i.e. controls
 * dropped, CJK spaced, NFC, split on whitespace, lower-cased. No added-token
 * splitting (that needs a tokenizer). *out is malloc'ed, NUL-terminated. */
int sd_clip_normalize(const char *text, size_t len, char **out, size_t *out_len);

/* How the normalization and the pre-tokenizer treat one code point. */
typedef struct {
    uint8_t clean;          /* _clean_text: 0 dropped, 1 becomes ' ', 2 kept */
    uint8_t cjk;            /* _tokenize_chinese_chars spaces it out */
    uint8_t space;          /* Python str.isspace(): separates words */
    uint8_t regex;          /* regex class: 0 \s, 1 \p{L}, 2 \p{N}, 3 other, 4 matched by no alternative */
    uint8_t cased;          /* Unicode Cased (for final sigma) */
    uint8_t case_ignorable; /* Unicode Case_Ignorable (for final sigma) */
    int n_lower;            /* str.lower() of the lone code point: 1 or 2 code points */
    int32_t lower[2];
} sd_clip_char_info;
void sd_clip_char_info_get(int32_t cp, sd_clip_char_info *info);

/* Free the calling thread's scratch and word cache now (they are also freed
 * at thread exit). Harmless if the thread never encoded. */
void sd_clip_tokenizer_thread_release(void);

#endif
