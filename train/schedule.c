/* schedule.c - learning-rate schedules (constant, step, cosine with linear warm-up);
 * the semantics and their PyTorch equivalents are in schedule.h. */
#include "train/schedule.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void kd_schedule_defaults(kd_schedule *s, kd_schedule_kind kind, double lr, long epochs,
                          long steps_per_epoch)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->lr = lr;
    s->epochs = epochs;
    s->steps_per_epoch = steps_per_epoch;
    s->gamma = 0.1;
    s->lr_min = 0.0;
    s->warmup_epochs = 0;
    s->warmup_start_factor = 0.01;
}

kdc_status kd_schedule_parse_kind(const char *text, kd_schedule_kind *kind, kdc_error *err)
{
    if (text && strcmp(text, "step") == 0)
        *kind = KD_SCHEDULE_STEP;
    else if (text && strcmp(text, "cosine") == 0)
        *kind = KD_SCHEDULE_COSINE;
    else if (text && strcmp(text, "constant") == 0)
        *kind = KD_SCHEDULE_CONSTANT;
    else
        return kdc_fail(err, KDC_EINVAL, "--schedule '%s': expected step, cosine or constant",
                        text ? text : "(null)");
    return KDC_OK;
}

kdc_status kd_schedule_parse_milestones(kd_schedule *s, const char *text, kdc_error *err)
{
    if (!text || !*text)
        return kdc_fail(err, KDC_EINVAL, "--lr-steps: empty list");
    long ms[KD_SCHEDULE_MAX_MILESTONES]; /* s is left untouched on error */
    size_t n = 0;
    const char *p = text;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 1)
            return kdc_fail(err, KDC_EINVAL,
                            "--lr-steps '%s': expected positive epoch numbers separated by commas",
                            text);
        if (n == KD_SCHEDULE_MAX_MILESTONES)
            return kdc_fail(err, KDC_EINVAL, "--lr-steps '%s': more than %d milestones", text,
                            KD_SCHEDULE_MAX_MILESTONES);
        if (n > 0 && v <= ms[n - 1])
            return kdc_fail(err, KDC_EINVAL, "--lr-steps '%s': epochs must increase", text);
        ms[n++] = v;
        if (*end == '\0')
            break;
        if (*end != ',')
            return kdc_fail(err, KDC_EINVAL, "--lr-steps '%s': unexpected '%c'", text, *end);
        p = end + 1;
    }
    memcpy(s->milestones, ms, n * sizeof *ms);
    s->n_milestones = n;
    return KDC_OK;
}

kdc_status kd_schedule_validate(const kd_schedule *s, kdc_error *err)
{
    if (!s)
        return kdc_fail(err, KDC_EINVAL, "schedule: NULL");
    if (!(s->lr >= 0.0) || !isfinite(s->lr))
        return kdc_fail(err, KDC_EINVAL, "--lr %g must be finite and >= 0", s->lr);
    if (s->warmup_epochs != 0 && s->kind != KD_SCHEDULE_COSINE)
        return kdc_fail(err, KDC_EINVAL,
                        "--warmup-epochs is only supported with --schedule cosine");
    switch (s->kind) {
    case KD_SCHEDULE_CONSTANT: return KDC_OK;
    case KD_SCHEDULE_STEP:
        if (!(s->gamma > 0.0) || !isfinite(s->gamma))
            return kdc_fail(err, KDC_EINVAL, "--lr-gamma %g must be positive", s->gamma);
        if (s->n_milestones > KD_SCHEDULE_MAX_MILESTONES)
            return kdc_fail(err, KDC_EINVAL, "--lr-steps: more than %d milestones",
                            KD_SCHEDULE_MAX_MILESTONES);
        for (size_t i = 0; i < s->n_milestones; i++)
            if (s->milestones[i] < 1 || (i > 0 && s->milestones[i] <= s->milestones[i - 1]))
                return kdc_fail(err, KDC_EINVAL,
                                "--lr-steps: milestones must be increasing epochs >= 1");
        return KDC_OK;
    case KD_SCHEDULE_COSINE: {
        if (s->epochs < 1 || s->steps_per_epoch < 1 || s->epochs > LONG_MAX / s->steps_per_epoch)
            return kdc_fail(err, KDC_EINVAL,
                            "cosine schedule: %ld epochs x %ld steps per epoch is not a run",
                            s->epochs, s->steps_per_epoch);
        if (!(s->lr_min >= 0.0) || !(s->lr_min <= s->lr))
            return kdc_fail(err, KDC_EINVAL, "cosine schedule: lr_min %g outside [0, lr=%g]",
                            s->lr_min, s->lr);
        if (s->warmup_epochs < 0 || s->warmup_epochs >= s->epochs)
            return kdc_fail(err, KDC_EINVAL,
                            "--warmup-epochs %ld must be in [0, epochs=%ld) (cosine needs steps "
                            "after the warm-up)",
                            s->warmup_epochs, s->epochs);
        if (s->warmup_epochs > 0 &&
            !(s->warmup_start_factor > 0.0 && s->warmup_start_factor <= 1.0))
            return kdc_fail(err, KDC_EINVAL, "warm-up start factor %g outside (0, 1]",
                            s->warmup_start_factor);
        return KDC_OK;
    }
    }
    return kdc_fail(err, KDC_EINVAL, "schedule: unknown kind %d", (int)s->kind);
}

double kd_schedule_lr(const kd_schedule *s, long epoch, long step)
{
    switch (s->kind) {
    case KD_SCHEDULE_CONSTANT: return s->lr;
    case KD_SCHEDULE_STEP: {
        double lr = s->lr;
        for (size_t i = 0; i < s->n_milestones; i++)
            if (epoch >= s->milestones[i])
                lr *= s->gamma;
        return lr;
    }
    case KD_SCHEDULE_COSINE: {
        const long N = s->epochs * s->steps_per_epoch;
        const long W = s->warmup_epochs * s->steps_per_epoch;
        const long t = epoch * s->steps_per_epoch + step;
        if (t < W) {
            const double f0 = s->warmup_start_factor;
            return s->lr * (f0 + (1.0 - f0) * (double)t / (double)W);
        }
        if (t >= N)
            return s->lr_min;
        const double x = (double)(t - W) / (double)(N - W);
        return s->lr_min + (s->lr - s->lr_min) * (1.0 + cos(M_PI * x)) / 2.0;
    }
    }
    return s->lr;
}
