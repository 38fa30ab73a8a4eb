/* fuzz_safetensors.c — libFuzzer target for the safetensors reader.
 *
 * Any input must be either accepted (then every tensor is readable as f32 and
 * lies inside the buffer) or rejected with a message; never a crash, leak or
 * out-of-bounds access (built with ASan+UBSan). make fuzz runs it briefly,
 * seeded with the malformed corpus (tests/corpus/make_safetensors_corpus.py).
 */
#include "core/error.h"
#include "io/safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sd_st_file *f;
    if (sd_st_open_memory(data, size, "fuzz", &f) != 0) {
        if (!sd_last_error()[0]) abort(); /* a rejection must say why */
        return 0;
    }
    for (int i = 0; i < f->ntensors; i++) {
        const sd_st_tensor *t = &f->tensors[i];
        if (t->end > f->data_len || t->begin > t->end) abort();
        if (sd_st_find(f, t->name) != t) abort();
        if (sd_dtype_is_real(t->dtype) && t->numel < (1 << 20)) {
            float *v = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
            if (sd_st_read_f32(f, t, v) != 0) abort();
            free(v);
        }
    }
    for (int i = 0; i < f->nmeta; i++)
        if (!sd_st_meta(f, f->meta_keys[i])) abort();
    sd_st_close(f);
    return 0;
}
