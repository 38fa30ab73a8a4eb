/* progress.h — a progress line on stderr when it is a terminal.
 *
 * "LABEL  123/456 [=====>    ] 27%  12.3 it/s  ETA 0:00:21  EXTRA"
 * Redrawn at most 10 times a second; nothing is printed when stderr is not a
 * terminal (logs stay clean), except by sd_progress_done's caller.
 */
#ifndef SD_CORE_PROGRESS_H
#define SD_CORE_PROGRESS_H

#include <stdint.h>

typedef struct {
    const char *label;
    const char *unit;  /* "img", "step", ... */
    int64_t total;     /* 0 if unknown */
    int64_t done;
    double start, last_draw;
    int enabled;       /* stderr is a tty and not disabled */
} sd_progress;

void sd_progress_begin(sd_progress *p, const char *label, const char *unit, int64_t total);
/* Set the count; extra (may be NULL) is appended to the line. */
void sd_progress_update(sd_progress *p, int64_t done, const char *extra);
/* Erase the line (if drawn). Returns elapsed seconds. */
double sd_progress_end(sd_progress *p);
/* Force-disable for all progress bars (--quiet). */
void sd_progress_disable_all(void);

/* "1:02:03" style duration into buf. */
char *sd_format_duration(double seconds, char *buf, int bufsize);

#endif
