/* tb_tool.c — test helper for the TensorBoard writer (tests/py/test_tblog.py,
 * tests/ref/check_tblog.py).
 *
 *   tb_tool write LOGDIR PNG H W C   a text event "config", scalars "train/loss"
 *                                    = 1/(s+1) and "train/lr" = 1e-4*s for
 *                                    s = 0..9, "train/big_step" at step 2^40,
 *                                    the PNG file as image "samples/0" (H x W,
 *                                    C channels) at step 5; prints the path
 *   tb_tool crash LOGDIR             writes scalars "x" = s for s = 0..2, then
 *                                    _exit(3) without closing the writer
 */
#include "core/error.h"
#include "core/fs.h"
#include "train/tblog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    sd_set_progname("tb_tool");
    if (argc == 7 && !strcmp(argv[1], "write")) {
        char *png;
        size_t len;
        if (sd_read_file(argv[3], 1 << 24, &png, &len)) sd_die_last();
        sd_tb *tb;
        if (sd_tb_open(&tb, argv[2])) sd_die_last();
        if (sd_tb_text(tb, "config", 0, "lr: 1e-4\nbatch: **16**")) sd_die_last();
        for (int s = 0; s < 10; s++) {
            if (sd_tb_scalar(tb, "train/loss", s, 1.0 / (s + 1))) sd_die_last();
            if (sd_tb_scalar(tb, "train/lr", s, 1e-4 * s)) sd_die_last();
        }
        if (sd_tb_scalar(tb, "train/big_step", (int64_t)1 << 40, -2.5)) sd_die_last();
        if (sd_tb_image(tb, "samples/0", 5, png, len, atoi(argv[4]), atoi(argv[5]), atoi(argv[6]))) sd_die_last();
        printf("%s\n", sd_tb_path(tb));
        if (sd_tb_close(tb)) sd_die_last();
        free(png);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "crash")) {
        sd_tb *tb;
        if (sd_tb_open(&tb, argv[2])) sd_die_last();
        for (int s = 0; s < 3; s++)
            if (sd_tb_scalar(tb, "x", s, s)) sd_die_last();
        printf("%s\n", sd_tb_path(tb));
        fflush(stdout);
        _exit(3); /* as if killed: no close, no flush at exit */
    }
    fprintf(stderr, "usage: tb_tool write LOGDIR PNG H W C | tb_tool crash LOGDIR\n");
    return 2;
}
