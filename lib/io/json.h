/* json.h — JSON via cJSON (Debian libcjson), with checked accessors.
 *
 * Configs (config.json, model_index.json), manifests and metadata.jsonl lines
 * are parsed with cJSON; these helpers add the error messages and typed
 * lookups every caller needs. (The safetensors header has its own stricter
 * parser in safetensors.c.)
 */
#ifndef SD_IO_JSON_H
#define SD_IO_JSON_H

#include <cJSON.h>
#include <stdint.h>

/* Parse a whole file (<= 64 MiB). Errors name the file and the position. */
int sd_json_load(const char *path, cJSON **out);
/* Parse n bytes of text; name is used in messages. */
int sd_json_parse(const char *text, size_t n, const char *name, cJSON **out);
/* Write with 2-space indentation and a final newline, atomically. */
int sd_json_save(const char *path, const cJSON *j);
/* Serialize with 2-space indentation and a final newline (malloc'ed). */
char *sd_json_pretty(const cJSON *j);
/* Serialize compactly (malloc'ed). */
char *sd_json_compact(const cJSON *j);

/* Typed lookups: value of key if present and of the right type, else def.
 * A key that is present with the wrong type is an error when strict accessors
 * (sd_json_get_*) are used. */
double sd_json_num(const cJSON *obj, const char *key, double def);
int sd_json_int(const cJSON *obj, const char *key, int def);
int sd_json_bool(const cJSON *obj, const char *key, int def);
const char *sd_json_str(const cJSON *obj, const char *key, const char *def);
/* Integer array of at most max entries; returns the count, -1 if key missing
 * or not an int array. A scalar int is accepted as a 1-element array. */
int sd_json_int_array(const cJSON *obj, const char *key, int *out, int max);
/* String array; pointers into the cJSON tree. */
int sd_json_str_array(const cJSON *obj, const char *key, const char **out, int max);

#endif
