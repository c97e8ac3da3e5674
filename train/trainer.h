/* trainer.h - kd-train's run: the epoch loop from options to RUN_DIR.
 *
 * One step, after ONE forward pass of the student in train mode:
 *   task loss       w_ce * CE(z_s, y)
 *   distillation    w_kd * KD_T(z_s, cached teacher logits: full, float16 or top-k)
 *                 + w_proj * log sum |BN(P(f_s)) - BN(f_t)|^alpha  (P: the projector)
 *   sgd: one backward of the sum; dot: two backward passes from the same
 *   activations, the task one into the task gradient and the distillation one
 *   into the distillation gradient (the projector term on the task side with
 *   --proj-task-side), then kd_dot_step. Learning rate from schedule.h per step.
 * After every epoch: --val evaluation, RUN_DIR/metrics.csv, student.safetensors
 * (torchvision names), projector.safetensors (when trained) and
 * checkpoint.safetensors (train_checkpoint.h), each written atomically.
 * Batches of fewer than 2 samples (a last batch of 1) are not trained on, as
 * with drop_last: BatchNorm training needs more than one value per channel
 * (PyTorch refuses it), and --batch 1 is refused. The epoch line and
 * metrics.csv count the images trained on and those skipped.
 *
 * The library functions return a status and never exit; progress and the
 * per-epoch summary go to the FILE given (NULL: silent). */
#ifndef KD_TRAINER_H
#define KD_TRAINER_H

#include <stdio.h>

#include "common/base/error.h"
#include "common/dist/dist.h"
#include "train/train_options.h"

kdc_status kd_train_run(const kd_train_options *o, FILE *log, kdc_error *err);
/* The same run as one rank of a data-parallel job (train_ddp.h; NULL: alone).
 * Only rank 0 logs and writes RUN_DIR; every rank must get the same options. */
kdc_status kd_train_run_dist(const kd_train_options *o, kdc_dist *dist, FILE *log,
                             kdc_error *err);

/* --eval-only: evaluates --weights on --val and prints one line to out:
 * "images N top1 P top5 P loss L skipped K" (K: unreadable images left out,
 * only with --skip-bad-images; without it they fail the evaluation). The
 * skipped images are named on log (NULL: not named). */
kdc_status kd_eval_only(const kd_train_options *o, FILE *out, FILE *log, kdc_error *err);

#endif
