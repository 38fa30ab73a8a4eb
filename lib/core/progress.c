/* progress.c — see progress.h. */
#include "core/progress.h"
#include "core/fs.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int disabled_all = 0;

void sd_progress_disable_all(void) { disabled_all = 1; }

char *sd_format_duration(double s, char *buf, int bufsize) {
    if (s < 0 || s != s) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, (size_t)bufsize, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    return buf;
}

void sd_progress_begin(sd_progress *p, const char *label, const char *unit, int64_t total) {
    memset(p, 0, sizeof *p);
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->start = sd_now();
    p->enabled = !disabled_all && isatty(2);
}

static void draw(sd_progress *p, const char *extra) {
    double el = sd_now() - p->start;
    double rate = el > 0 ? (double)p->done / el : 0;
    char line[512], eta[32] = "";
    int k = snprintf(line, sizeof line, "\r%s %lld", p->label, (long long)p->done);
    if (p->total > 0) {
        int w = 24, fill = (int)(w * (double)p->done / (double)p->total);
        if (fill > w) fill = w;
        char bar[32];
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[w] = 0;
        if (rate > 0) sd_format_duration((double)(p->total - p->done) / rate, eta, sizeof eta);
        k += snprintf(line + k, sizeof line - (size_t)k, "/%lld [%s] %3d%%", (long long)p->total, bar,
                      (int)(100.0 * (double)p->done / (double)p->total));
    }
    k += snprintf(line + k, sizeof line - (size_t)k, "  %.2f %s/s", rate, p->unit ? p->unit : "it");
    if (eta[0]) k += snprintf(line + k, sizeof line - (size_t)k, "  ETA %s", eta);
    if (extra && k < (int)sizeof line) k += snprintf(line + k, sizeof line - (size_t)k, "  %s", extra);
    fprintf(stderr, "%s\033[K", line);
    fflush(stderr);
}

void sd_progress_update(sd_progress *p, int64_t done, const char *extra) {
    p->done = done;
    if (!p->enabled) return;
    double now = sd_now();
    if (now - p->last_draw < 0.1 && done != p->total) return;
    p->last_draw = now;
    draw(p, extra);
}

double sd_progress_end(sd_progress *p) {
    if (p->enabled && p->last_draw > 0) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    return sd_now() - p->start;
}
