/* progress.c - terminal progress bar / periodic log lines. */
#include "common/base/progress.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Redraw at most this often: enough to look live, cheap in a tight loop. */
#define TTY_REDRAW_S 0.2
/* Lines off a terminal: often enough to see a job move in its log, rarely enough
 * that a days-long run does not fill it (timm logs every 50 steps, torchvision's
 * reference scripts every 10). */
#define LOG_EVERY_S 30.0

double kdc_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void kdc_format_duration(double s, char *buf, size_t len)
{
    if (s < 0 || s != s)
        s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, len, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60)
        snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, len, "%lds", t);
}

void kdc_progress_init(kdc_progress *p, FILE *out, const char *label, uint64_t total,
                       const char *unit, int quiet)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "it");
    p->total = total;
    p->quiet = quiet || !out;
    p->is_tty = out && isatty(fileno(out));
    p->t_start = kdc_now_seconds();
    p->t_last_draw = p->t_start;
    p->log_every = LOG_EVERY_S;
}

void kdc_progress_set_log_every(kdc_progress *p, double seconds)
{
    p->log_every = seconds >= 0 ? seconds : 0;
}

void kdc_progress_set_step(kdc_progress *p, uint64_t step, uint64_t steps)
{
    p->step = step;
    p->steps = steps;
}

void kdc_progress_set_extra(kdc_progress *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->extra, sizeof p->extra, fmt, ap);
    va_end(ap);
}

static void draw(kdc_progress *p, double now, int final)
{
    double el = now - p->t_start;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32] = "", elapsed[32];
    kdc_format_duration(el, elapsed, sizeof elapsed);
    if (p->total && rate > 0 && !final)
        kdc_format_duration((double)(p->total - (p->done < p->total ? p->done : p->total)) / rate,
                            eta, sizeof eta);
    if (p->is_tty) {
        char bar[32];
        int width = 24;
        int fill = p->total ? (int)((double)width * (double)p->done / (double)p->total) : 0;
        if (fill > width)
            fill = width;
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        if (p->total)
            fprintf(p->out, "\r\033[K%s [%s] %llu/%llu %s  %.1f %s/s  %s %s  %s", p->label, bar,
                    (unsigned long long)p->done, (unsigned long long)p->total, p->unit, rate,
                    p->unit, final ? "took" : "ETA", final ? elapsed : eta, p->extra);
        else
            fprintf(p->out, "\r\033[K%s %llu %s  %.1f %s/s  %s  %s", p->label,
                    (unsigned long long)p->done, p->unit, rate, p->unit, elapsed, p->extra);
        if (final)
            fputc('\n', p->out);
    } else {
        char step[64] = "";
        if (p->steps)
            snprintf(step, sizeof step, "step %llu/%llu, ", (unsigned long long)p->step,
                     (unsigned long long)p->steps);
        if (p->total)
            fprintf(p->out, "%s: %s%llu/%llu %s, %.1f %s/s, %s %s%s%s\n", p->label, step,
                    (unsigned long long)p->done, (unsigned long long)p->total, p->unit, rate,
                    p->unit, final ? "took" : "ETA", final ? elapsed : eta[0] ? eta : "?",
                    p->extra[0] ? ", " : "", p->extra);
        else
            fprintf(p->out, "%s: %s%llu %s, %.1f %s/s, %s%s%s\n", p->label, step,
                    (unsigned long long)p->done, p->unit, rate, p->unit, elapsed,
                    p->extra[0] ? ", " : "", p->extra);
    }
    fflush(p->out);
}

void kdc_progress_update(kdc_progress *p, uint64_t done)
{
    p->done = done;
    if (p->quiet || p->finished)
        return;
    double now = kdc_now_seconds();
    if (now - p->t_last_draw < (p->is_tty ? TTY_REDRAW_S : p->log_every))
        return;
    p->t_last_draw = now;
    draw(p, now, 0);
}

void kdc_progress_finish(kdc_progress *p)
{
    if (p->quiet || p->finished)
        return;
    p->finished = 1;
    draw(p, kdc_now_seconds(), 1);
}
