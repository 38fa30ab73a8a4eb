/* utf8.h — UTF-8 validation shared by every parser that must trust nothing
 * (safetensors headers, shard metadata, dataset captions). Valid means: no
 * overlong forms, no surrogates, nothing above U+10FFFF, no truncated
 * sequence. */
#ifndef SD_CORE_UTF8_H
#define SD_CORE_UTF8_H

#include <stddef.h>

/* 1 if s[0..n) is valid UTF-8; else 0 and *bad_at (may be NULL) = the byte
 * offset of the first invalid sequence. */
int sd_utf8_check(const void *s, size_t n, size_t *bad_at);
static inline int sd_utf8_valid(const void *s, size_t n) { return sd_utf8_check(s, n, NULL); }

#endif
