/* weights_check.h - refusing weights that can only give NaN: a parameter or
 * buffer with a NaN or infinite value, or a BatchNorm running_var below 0
 * (sqrt(var + eps) is then NaN for var < -eps, and a variance cannot be
 * negative). Such a teacher makes a cache that is 100% NaN and looks
 * complete; such a student scores garbage. Called right after a load, so the
 * error names the file and the tensor, not a NaN found hours later.
 *
 * Not the file's structure (safetensors.h, checkpoint.h check that). */
#ifndef KDC_WEIGHTS_CHECK_H
#define KDC_WEIGHTS_CHECK_H

#include "common/base/params.h"
#include "common/nn/backend.h"

/* Checks every float tensor of params (on be's device; copied to the host one
 * at a time). path names the file in the message. */
kdc_status kdc_weights_check(const kdc_param_table *params, kdc_backend *be, const char *path,
                             kdc_error *err);

#endif
