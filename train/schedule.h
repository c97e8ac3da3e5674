/* schedule.h - learning-rate schedules of kd-train (--schedule step|cosine|constant):
 * a pure function from (epoch, step within the epoch) to the learning rate, so a run
 * resumed at any step gets the same values. Epochs and steps count from 0.
 *
 * - constant: lr.
 * - step: lr * gamma^(number of milestones m with epoch >= m), set at the start of
 *   each epoch. This is torch MultiStepLR stepped once per epoch, and mdistiller's
 *   adjust_learning_rate (which counts epochs from 1 and tests epoch > m).
 * - cosine: per step s = epoch * steps_per_epoch + step, over N = epochs *
 *   steps_per_epoch steps, with an optional linear warm-up over the first W =
 *   warmup_epochs * steps_per_epoch steps, as torchvision's reference recipe chains
 *   SequentialLR([LinearLR(start_factor, total_iters=W), CosineAnnealingLR(T_max=N-W,
 *   eta_min=lr_min)], milestones=[W]):
 *     s <  W: lr * (f0 + (1 - f0) * s / W)
 *     s >= W: lr_min + (lr - lr_min) * (1 + cos(pi * (s - W) / (N - W))) / 2
 *   Past the last step the value stays at lr_min (torch would start a new period).
 * Not the optimiser (optim.h). */
#ifndef KD_SCHEDULE_H
#define KD_SCHEDULE_H

#include <stddef.h>

#include "common/base/error.h"

/* Enough for any published recipe (CIFAR uses 3, ImageNet 3). */
#define KD_SCHEDULE_MAX_MILESTONES 32

typedef enum kd_schedule_kind {
    KD_SCHEDULE_CONSTANT = 0,
    KD_SCHEDULE_STEP = 1,
    KD_SCHEDULE_COSINE = 2
} kd_schedule_kind;

typedef struct kd_schedule {
    kd_schedule_kind kind;
    double lr;            /* base learning rate */
    long epochs;          /* length of the run (cosine) */
    long steps_per_epoch; /* optimiser steps per epoch (cosine) */
    /* step */
    double gamma;
    size_t n_milestones;
    long milestones[KD_SCHEDULE_MAX_MILESTONES]; /* epochs, strictly increasing */
    /* cosine */
    double lr_min;              /* eta_min, 0 by default */
    long warmup_epochs;         /* 0: no warm-up */
    double warmup_start_factor; /* f0 in (0, 1], torchvision's --lr-warmup-decay */
} kd_schedule;

/* Defaults for the fields a kind does not set: gamma 0.1, lr_min 0, no warm-up,
 * warm-up start factor 0.01 (torchvision's reference default). */
void kd_schedule_defaults(kd_schedule *s, kd_schedule_kind kind, double lr, long epochs,
                          long steps_per_epoch);

/* "150,180,210" -> milestones (strictly increasing, >= 1). */
kdc_status kd_schedule_parse_milestones(kd_schedule *s, const char *text, kdc_error *err);

/* "step", "cosine", "constant" -> kind. */
kdc_status kd_schedule_parse_kind(const char *text, kd_schedule_kind *kind, kdc_error *err);

/* Checks every field for the kind (warm-up only with cosine, W < N, ...). */
kdc_status kd_schedule_validate(const kd_schedule *s, kdc_error *err);

/* The learning rate for step `step` (0-based) of epoch `epoch` (0-based). Assumes a
 * schedule that kd_schedule_validate accepted. */
double kd_schedule_lr(const kd_schedule *s, long epoch, long step);

#endif
