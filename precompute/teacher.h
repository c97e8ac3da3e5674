/* teacher.h - the teacher network of kd-precompute: an architecture by name with
 * torchvision-named safetensors weights, ready for eval-mode inference.
 *
 * The number of classes comes from the weights (the shape of fc.weight, the
 * classifier name every architecture here uses), so a 1000-class ImageNet
 * teacher and a 10-class teacher load with the same command. The SHA-256 of
 * the weights file identifies the teacher in the cache (teacher_weights_sha256),
 * so --resume can refuse different weights.
 *
 * Not the model (common/models/model.h) and not the file format (formats/checkpoint.h):
 * this only wires them together and names what is wrong with a weights file. */
#ifndef KD_TEACHER_H
#define KD_TEACHER_H

#include "common/nn/backend.h"
#include "common/models/model.h"

typedef struct kd_teacher {
    kdc_model *model;
    int num_classes; /* C, from the weights */
    int feature_dim; /* D, the width of the pooled penultimate features */
    char sha256[65]; /* of the weights file, lowercase hex */
} kd_teacher;

/* SHA-256 of a whole file (nettle), as 64 lowercase hex digits. */
kdc_status kd_sha256_file(const char *path, char hex[65], kdc_error *err);

/* Reads the classifier shape from a safetensors file: fc.weight must be a
 * 2-D tensor [C, D]. */
kdc_status kd_teacher_weights_shape(const char *weights, int *num_classes, int *in_features,
                                    kdc_error *err);

/* Builds arch on be, loads weights (every name and shape checked), folds the
 * batch norms for inference and hashes the file. On failure t is zeroed and
 * nothing is left allocated. */
kdc_status kd_teacher_load(const char *arch, const char *weights, kdc_backend *be,
                           kd_teacher *t, kdc_error *err);
void kd_teacher_free(kd_teacher *t);

#endif
