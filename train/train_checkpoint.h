/* train_checkpoint.h - kd-train's files of weights: --init loading (student,
 * optionally projector) and the resume checkpoint written after every epoch.
 *
 * The resume checkpoint RUN_DIR/checkpoint.safetensors is one safetensors file
 * (so it is written atomically, via "<path>.partial" + rename):
 *   - every student tensor under its torchvision name (parameters, BN running
 *     statistics, num_batches_tracked), the projector as projector.weight /
 *     projector.bias when there is one;
 *   - the optimiser's momentum buffers as optimizer.buffer0 / optimizer.buffer1
 *     (SGD: one; DOT: task then distillation), 1-D float32;
 *   - metadata: "kd_train_checkpoint" = "1", "epochs_done", "optimizer_steps",
 *     "signature" (the options that shape the trajectory; resuming with other
 *     ones is refused) and "metrics_csv" (metrics.csv up to that epoch).
 * Random draws are pure functions of (seed, epoch, ...), so nothing else is
 * needed for a resumed run to equal an uninterrupted one.
 *
 * Not the trainer's loop; no architecture knowledge (parameter tables only). */
#ifndef KD_TRAIN_CHECKPOINT_H
#define KD_TRAIN_CHECKPOINT_H

#include <stdint.h>

#include "common/nn/backend.h"
#include "common/base/params.h"
#include "train/projector.h"

/* --init FILE: every student tensor must be there with its shape; projector.*
 * are loaded into proj when both are present (*proj_loaded says so); a
 * projector in the file without one in the run, or any other tensor, is an
 * error naming it. proj may be NULL. */
kdc_status kd_init_load(const char *path, kdc_param_table *student, kd_projector *proj,
                        kdc_backend *be, int *proj_loaded, kdc_error *err);

typedef struct kd_resume_state {
    int64_t epochs_done;
    uint64_t optimizer_steps;
    float *buffer[2]; /* host; caller-owned, sized n_buffer[i] */
    size_t n_buffer[2];
    const char *signature;
    char *metrics_csv; /* read: malloc'd by kd_checkpoint_read; write: caller's */
} kd_resume_state;

kdc_status kd_checkpoint_write(const char *path, const kdc_param_table *student,
                               const kd_projector *proj, kdc_backend *be,
                               const kd_resume_state *s, kdc_error *err);

/* Loads weights into student/proj and the buffers into s->buffer (whose sizes
 * must match); checks the signature against s->signature (a difference fails,
 * naming each flag with its old and new value); fills epochs_done,
 * optimizer_steps and metrics_csv (free() it). */
kdc_status kd_checkpoint_read(const char *path, kdc_param_table *student, kd_projector *proj,
                              kdc_backend *be, kd_resume_state *s, kdc_error *err);

/* "--lr was 0.05, now 0.1; --batch was 64, now 32": the flags behind the keys in
 * which two trainer signatures differ. */
void kd_signature_diff(const char *old_sig, const char *new_sig, char *buf, size_t len);

#endif
