/* arena.c — bump allocator over one mmap reservation. */
#include "core/arena.h"
#include "core/error.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

int sd_arena_init(sd_arena *a, size_t cap) {
    memset(a, 0, sizeof *a);
    if (cap == 0) cap = SD_ARENA_ALIGN;
    cap = (cap + 4095) & ~(size_t)4095;
    void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return sd_set_error("cannot reserve %zu bytes: %s", cap, strerror(errno));
    a->base = p;
    a->cap = cap;
    return 0;
}

void sd_arena_free(sd_arena *a) {
    if (a->base) munmap(a->base, a->cap);
    memset(a, 0, sizeof *a);
}

void *sd_arena_alloc(sd_arena *a, size_t n) {
    size_t start = (a->used + SD_ARENA_ALIGN - 1) & ~(size_t)(SD_ARENA_ALIGN - 1);
    if (start > a->cap || n > a->cap - start) {
        sd_set_error("arena full: %zu bytes requested, %zu of %zu used", n, a->used, a->cap);
        return NULL;
    }
    a->used = start + n;
    if (a->used > a->peak) a->peak = a->used;
    return a->base + start;
}

void *sd_arena_calloc(sd_arena *a, size_t n) {
    void *p = sd_arena_alloc(a, n);
    if (p) memset(p, 0, n);
    return p;
}

float *sd_arena_floats(sd_arena *a, size_t n) {
    size_t bytes;
    if (sd_mul_size(n, sizeof(float), &bytes)) return NULL;
    return sd_arena_alloc(a, bytes);
}

void sd_arena_reset(sd_arena *a, size_t mark) {
    if (mark < a->used) a->used = mark;
}
