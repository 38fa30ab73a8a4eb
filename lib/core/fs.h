/* fs.h — files and directories: whole-file reads, atomic writes, paths.
 *
 * Atomic write (DESIGN.md §1): data goes to a temporary name in the same
 * directory (".NAME.tmp.PID"), is fsync'ed, then renamed over NAME and the
 * directory fsync'ed. A killed writer leaves only a dot-file that never looks
 * like a finished output. Directories are published the same way: build
 * ".NAME.tmp.PID/", then rename to NAME.
 */
#ifndef SD_CORE_FS_H
#define SD_CORE_FS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Read a whole file (at most max_bytes; larger is an error). The buffer is
 * NUL-terminated (not counted in *len); free() it. */
int sd_read_file(const char *path, size_t max_bytes, char **data, size_t *len);

/* Atomic file writer. */
typedef struct {
    FILE *f;
    char *path;     /* final name */
    char *tmp_path; /* temporary name in the same directory */
} sd_atomic_file;

int sd_atomic_open(sd_atomic_file *af, const char *path);
/* Flush, fsync, rename, fsync the directory. Closes in every case. */
int sd_atomic_commit(sd_atomic_file *af);
/* Close and delete the temporary. */
void sd_atomic_abort(sd_atomic_file *af);
/* One-shot: write len bytes to path atomically. */
int sd_write_file_atomic(const char *path, const void *data, size_t len);

/* Write-everything helper for FILE* with an error naming what. */
int sd_fwrite_all(FILE *f, const void *data, size_t len, const char *what);

int sd_mkdir_p(const char *path);
int sd_is_dir(const char *path);
int sd_is_file(const char *path);
int sd_file_size(const char *path, uint64_t *size);
/* Recursively delete a file or directory tree (does not follow symlinks). */
int sd_rm_rf(const char *path);
/* fsync a directory (after renames inside it). */
int sd_fsync_dir(const char *path);
/* Copy a file (byte for byte) to dst, atomically. */
int sd_copy_file(const char *src, const char *dst);

/* Join a and b with one '/'; malloc'ed. */
char *sd_path_join(const char *a, const char *b);
/* Directory part of path ("." if none); malloc'ed. */
char *sd_path_dirname(const char *path);
/* Last component of path (pointer into path). */
const char *sd_path_basename(const char *path);

/* A temporary sibling name ".BASE.tmp.PID" for path; malloc'ed. */
char *sd_tmp_sibling(const char *path);

/* Sorted list of the names in a directory (no "." / ".."); free with
 * sd_free_strv. Returns count or -1. */
int sd_list_dir(const char *path, char ***names);
void sd_free_strv(char **v, int n);

/* Seconds from a monotonic clock. */
double sd_now(void);

#endif
