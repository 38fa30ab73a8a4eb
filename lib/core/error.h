/* error.h — error reporting for libsd.
 *
 * Functions that can fail return an int status (0 = ok, non-zero = error) and
 * leave a one-line message that sd_last_error() returns until the next error on
 * the same thread. Tools print it as "TOOL: error: MESSAGE" (DESIGN.md §1). A
 * message names where (file, tensor, sample) and what went wrong.
 */
#ifndef SD_CORE_ERROR_H
#define SD_CORE_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#if defined(__GNUC__)
#define SD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SD_PRINTF(a, b)
#endif

/* Set the thread's error message (printf-style). Always returns -1, so that
 * `return sd_set_error(...)` reads naturally. */
int sd_set_error(const char *fmt, ...) SD_PRINTF(1, 2);
int sd_set_errorv(const char *fmt, va_list ap);

/* Prefix the current message with "PREFIX: " (e.g. a file name added by a
 * caller that knows it). Returns -1. */
int sd_error_prefix(const char *fmt, ...) SD_PRINTF(1, 2);

/* The last message set on this thread ("" if none). */
const char *sd_last_error(void);

void sd_clear_error(void);

/* Tool helpers: the program name used in messages, and the one-line
 * "NAME: error: MESSAGE" / "NAME: warning: ..." / "NAME: note: ..." printers. */
void sd_set_progname(const char *name);
const char *sd_progname(void);
void sd_die(const char *fmt, ...) SD_PRINTF(1, 2) __attribute__((noreturn));
void sd_die_last(void) __attribute__((noreturn)); /* error: sd_last_error(), exit 1 */
void sd_warn(const char *fmt, ...) SD_PRINTF(1, 2);
void sd_note(const char *fmt, ...) SD_PRINTF(1, 2);

/* Out-of-memory is a bug or an absurd input, never silent: these abort with a
 * message naming the size. Use them for allocations that are not sized by
 * untrusted input; size untrusted allocations with checked arithmetic first. */
void *sd_xmalloc(size_t n);
void *sd_xcalloc(size_t n, size_t size);
void *sd_xrealloc(void *p, size_t n);
char *sd_xstrdup(const char *s);

/* Checked size arithmetic: return 0 on success, -1 (with an error) on overflow. */
int sd_mul_size(size_t a, size_t b, size_t *out);
int sd_add_size(size_t a, size_t b, size_t *out);

#endif
