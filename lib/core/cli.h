/* cli.h — helpers shared by the tools' option parsing (GNU getopt_long).
 *
 * Options are declared once with underscores ("train_batch_size");
 * sd_cli_normalize rewrites "--train-batch-size" to "--train_batch_size" in
 * argv first, so both spellings work (DESIGN.md §6). Numbers are parsed
 * strictly: trailing junk, overflow and out-of-range values are errors that
 * name the option.
 *
 * Exit codes (all tools): 0 ok, 1 error, 2 usage error.
 */
#ifndef SD_CORE_CLI_H
#define SD_CORE_CLI_H

#include <stdint.h>

#define SD_EXIT_OK 0
#define SD_EXIT_ERROR 1
#define SD_EXIT_USAGE 2

/* Rewrite hyphens in long option names to underscores (in place, before '=').
 * Stops at "--". */
void sd_cli_normalize(int argc, char **argv);

int sd_parse_i64(const char *s, const char *opt, int64_t lo, int64_t hi, int64_t *out);
int sd_parse_int(const char *s, const char *opt, int lo, int hi, int *out);
int sd_parse_double(const char *s, const char *opt, double lo, double hi, double *out);
int sd_parse_u64(const char *s, const char *opt, uint64_t *out);
/* "true/false/1/0/yes/no" */
int sd_parse_bool(const char *s, const char *opt, int *out);

/* Usage error: "TOOL: error: MESSAGE" + "Try 'TOOL --help'." and exit 2. */
void sd_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Print "TOOL (sdtools) VERSION" and exit 0. */
void sd_print_version(void) __attribute__((noreturn));

#endif
