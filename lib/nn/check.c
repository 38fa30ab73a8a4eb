/* check.c — the abort path of NN_REQUIRE. */
#include "nn/check.h"

#include <stdio.h>
#include <stdlib.h>

void sd_nn_bad_call(const char *fn, const char *what) {
    fflush(stdout);
    fprintf(stderr, "%s: bad call: %s\n", fn, what);
    abort();
}
