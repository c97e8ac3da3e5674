/* progress.h - a progress line for the command-line tools.
 *
 * On a terminal: one redrawn line with a bar, items done, items/s and ETA.
 * Otherwise (a log file, a Slurm job, CI): a plain line every log_every seconds
 * (kdc_progress_set_log_every; 30 by default, 0: at every update) with the step,
 * items done, items/s, ETA and the caller's text (losses). Quiet: nothing.
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
    uint64_t step, steps; /* shown when steps > 0 (kdc_progress_set_step) */
    double t_start, t_last_draw;
    double log_every; /* seconds between lines off a terminal */
    int is_tty, quiet, finished;
    char extra[192]; /* caller text appended to the line, e.g. "loss 0.412" */
} kdc_progress;

/* total == 0 means unknown (no bar or ETA). */
void kdc_progress_init(kdc_progress *p, FILE *out, const char *label, uint64_t total,
                       const char *unit, int quiet);
void kdc_progress_set_extra(kdc_progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Seconds between plain lines when out is not a terminal; 0: every update. */
void kdc_progress_set_log_every(kdc_progress *p, double seconds);
/* The step of steps the next line reports (e.g. batch 12 of 157). */
void kdc_progress_set_step(kdc_progress *p, uint64_t step, uint64_t steps);
void kdc_progress_update(kdc_progress *p, uint64_t done);
/* Draws the final line (with the newline) once. */
void kdc_progress_finish(kdc_progress *p);

double kdc_now_seconds(void);
/* "1h02m", "3m05s", "12s" */
void kdc_format_duration(double seconds, char *buf, size_t len);

#endif
