/* checkpoint.h - a model's parameter table to and from a safetensors file.
 *
 * Loading checks the file against the table before touching any parameter:
 * every parameter must be in the file with the same shape, and every tensor
 * in the file must be a parameter; the first mismatch fails with its name and
 * both shapes. Float parameters load from F32, F16, BF16 or F64 tensors;
 * num_batches_tracked from I64 (or I32). A file without num_batches_tracked
 * entries (state_dicts from before PyTorch 0.4.1, e.g. torchvision's first
 * pretrained ResNets) loads with the counters set to 0, as PyTorch does.
 * Saving writes F32 (and I64 counters) under the same names, so
 * torch's load_state_dict accepts the file.
 *
 * What it is not: no architecture knowledge (the table is the contract), no
 * optimiser state. */
#ifndef KDC_CHECKPOINT_H
#define KDC_CHECKPOINT_H

#include "common/nn/backend.h"
#include "common/base/params.h"

/* Loads path into params, whose tensors live on be's device. */
kdc_status kdc_checkpoint_load(const char *path, kdc_param_table *params, kdc_backend *be,
                               kdc_error *err);

/* Saves params (on be's device) to path via "<path>.partial" + rename.
 * arch (nullable) is recorded in the metadata as "arch". */
kdc_status kdc_checkpoint_save(const char *path, const kdc_param_table *params,
                               kdc_backend *be, const char *arch, kdc_error *err);

/* The same with n_meta more "__metadata__" string pairs (keys other than
 * "format", which is always "pt"), e.g. the settings kd-train's --eval-only reads
 * back (train/student_meta.h). */
kdc_status kdc_checkpoint_save_meta(const char *path, const kdc_param_table *params,
                                    kdc_backend *be, const char *const (*meta)[2], int n_meta,
                                    kdc_error *err);

#endif
