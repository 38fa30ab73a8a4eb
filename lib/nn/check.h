/* check.h — argument checks of the lib/nn wrappers (internal to lib/nn).
 *
 * A malformed op call (non-positive size, NULL required buffer, shapes that do
 * not fit together) is a bug in the caller, not a runtime condition: it aborts
 * with "FUNCTION: bad call: CONDITION" so the mistake is found at once. */
#ifndef SD_NN_CHECK_H
#define SD_NN_CHECK_H

void sd_nn_bad_call(const char *fn, const char *what) __attribute__((noreturn));

#define NN_REQUIRE(cond)                                        \
    do {                                                        \
        if (!(cond)) sd_nn_bad_call(__func__, #cond);           \
    } while (0)

#endif
