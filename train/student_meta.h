/* student_meta.h - what a kd-train student file says about itself, so that
 * `kd-train --eval-only --weights RUN/student.safetensors --val DIR` needs nothing
 * else and evaluates as the run's own --val did.
 *
 * kd-train writes these string pairs into student.safetensors' "__metadata__"
 * (safetensors' standard string -> string map; torch and safetensors readers
 * ignore it):
 *   arch          the --student architecture ("resnet8x4")
 *   num_classes   the classifier's outputs ("100")
 *   image_size    S of the training views ("32")
 *   resize_size   R' of the evaluation's center view Resize(R') + CenterCrop(S),
 *                 as the run's --val used it: the run's R, or S under pad-crop (the
 *                 whole image, as the CIFAR recipes evaluate; kd_eval_resize_size)
 *   view_policy   center | rrc | pad-crop: the training views
 *   mean, std     the normalisation, "r,g,b" (float32 values, %.9g: exact)
 *   created_by    "kd-train (kdcache) VERSION commit C"
 * An explicit --resize-size is compared by the R' it gives (any value under
 * pad-crop gives S).
 *
 * Files come from other people: every value is checked on reading (range, syntax)
 * and a bad one is an error naming the key. A file without these keys (e.g. a
 * torchvision export) is fine: the flags then say what it is. */
#ifndef KD_STUDENT_META_H
#define KD_STUDENT_META_H

#include "common/base/error.h"
#include "common/image/image_batch.h"
#include "common/image/views.h"
#include "train/train_options.h"

enum {
    KD_META_ARCH = 1 << 0,
    KD_META_CLASSES = 1 << 1,
    KD_META_IMAGE_SIZE = 1 << 2,
    KD_META_RESIZE_SIZE = 1 << 3,
    KD_META_POLICY = 1 << 4,
    KD_META_MEAN = 1 << 5,
    KD_META_STD = 1 << 6
};

typedef struct kd_student_meta {
    char arch[64];
    int num_classes, image_size, resize_size;
    img_view_policy policy;
    img_norm norm;
    unsigned have; /* KD_META_* bits: what the file holds */
} kd_student_meta;

#define KD_META_MAX_PAIRS 8

/* The pairs to write; pairs[i] point into buf. */
typedef struct kd_student_meta_text {
    char buf[KD_META_MAX_PAIRS][160];
    const char *pairs[KD_META_MAX_PAIRS][2];
    int n;
} kd_student_meta_text;

void kd_student_meta_format(const kd_student_meta *m, kd_student_meta_text *t);

/* Reads the keys path holds (m->have says which); a malformed value fails. */
kdc_status kd_student_meta_read(const char *path, kd_student_meta *m, kdc_error *err);

int kd_eval_resize_size(img_view_policy policy, int image_size, int resize_size);

/* --eval-only's settings: from the metadata; a flag that disagrees with it is
 * refused (naming the flag and both values) unless --force; flags or defaults
 * where the file has no value. num_classes 0: take it from --val. */
typedef struct kd_eval_settings {
    char arch[64];
    int num_classes, image_size, resize_size; /* resize_size: the evaluation's R' */
    img_norm norm;
} kd_eval_settings;

kdc_status kd_eval_settings_resolve(const kd_train_options *o, kd_eval_settings *s, kdc_error *err);

#endif
