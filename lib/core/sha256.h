/* sha256.h — SHA-256 (FIPS 180-4), for fingerprints and model hashes. */
#ifndef SD_CORE_SHA256_H
#define SD_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;
    unsigned char buf[64];
    size_t nbuf;
} sd_sha256;

void sd_sha256_init(sd_sha256 *s);
void sd_sha256_update(sd_sha256 *s, const void *data, size_t n);
void sd_sha256_final(sd_sha256 *s, unsigned char out[32]);
/* Lower-case hex of the digest into hex[65]. */
void sd_sha256_hex(const unsigned char digest[32], char hex[65]);
/* Use (0) or bypass (1) the CPU's SHA extensions when present; returns 1 if
 * the accelerated path is now in use. For tests and benchmarks; the
 * environment variable SD_SHA256_SCALAR=1 also bypasses it. */
int sd_sha256_set_scalar(int scalar);
/* Digest of a whole file (streamed); -1 with an error if unreadable. */
int sd_sha256_file(const char *path, char hex[65]);

#endif
