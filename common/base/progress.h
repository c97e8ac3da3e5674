/* progress.h - a progress line for the command-line tools.
 *
 * On a terminal: one redrawn line with a bar, items done, items/s and ETA.
 * Otherwise (logs, CI): a plain line every few seconds. Quiet: nothing.
 * This is the one module in common/ that writes to a stream, and only to the
 * FILE the caller hands it. */
#ifndef KDC_PROGRESS_H
#define KDC_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef struct kdc_progress {
    FILE *out;
    char label[64];
    char unit[16];
    uint64_t total, done;
    double t_start, t_last_draw;
    int is_tty, quiet, finished;
    char extra[128]; /* caller text appended to the line, e.g. "loss 0.412" */
} kdc_progress;

/* total == 0 means unknown (no bar or ETA). */
void kdc_progress_init(kdc_progress *p, FILE *out, const char *label, uint64_t total,
                       const char *unit, int quiet);
void kdc_progress_set_extra(kdc_progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void kdc_progress_update(kdc_progress *p, uint64_t done);
/* Draws the final line (with the newline) once. */
void kdc_progress_finish(kdc_progress *p);

double kdc_now_seconds(void);
/* "1h02m", "3m05s", "12s" */
void kdc_format_duration(double seconds, char *buf, size_t len);

#endif
