/* arena.h — bump-pointer memory arenas.
 *
 * Parameters, gradients, optimizer state and activations each live in one
 * arena (DESIGN.md §4), so the optimizer, clipping, EMA, all-reduce and
 * checkpointing are loops over flat memory. Allocations are 64-byte aligned
 * (cache line / AVX-512). mark/reset frees everything allocated after a mark,
 * which is how activation memory is reused between passes.
 */
#ifndef SD_CORE_ARENA_H
#define SD_CORE_ARENA_H

#include <stddef.h>

#define SD_ARENA_ALIGN 64

typedef struct {
    char *base;  /* reserved with mmap: pages are only committed when touched */
    size_t cap;  /* reserved bytes */
    size_t used; /* bytes handed out */
    size_t peak; /* high-water mark of used */
} sd_arena;

/* Reserve cap bytes of address space. Returns 0 or -1 with an error. */
int sd_arena_init(sd_arena *a, size_t cap);
void sd_arena_free(sd_arena *a);
/* n bytes, 64-byte aligned, contents undefined (zero on first touch).
 * NULL with an error when the arena is full. */
void *sd_arena_alloc(sd_arena *a, size_t n);
/* Same, zero-filled. */
void *sd_arena_calloc(sd_arena *a, size_t n);
/* Floats convenience: n floats. */
float *sd_arena_floats(sd_arena *a, size_t n);
static inline size_t sd_arena_mark(const sd_arena *a) { return a->used; }
void sd_arena_reset(sd_arena *a, size_t mark);

#endif
