/* evaluate.h - evaluation of a student on an ImageFolder with the center view
 * (torchvision's Resize(R) + CenterCrop(S)): mean cross-entropy, top-1 and
 * top-5 accuracy, eval-mode batch norm (running statistics).
 *
 * An image that cannot be decoded fails the evaluation (as torchvision's
 * ImageFolder raises), unless the evaluator was made with skip_bad: then it is
 * left out, counted and named (kd_evaluator_skipped). A loss that is not
 * finite fails it too: a NaN student must not report an accuracy. Not
 * training. */
#ifndef KD_EVALUATE_H
#define KD_EVALUATE_H

#include <stdint.h>

#include "common/image/dataset.h"
#include "common/image/image_batch.h"
#include "common/image/skip_log.h"
#include "common/models/model.h"

typedef struct kd_eval_result {
    int64_t images, skipped; /* evaluated; left out (unreadable, with skip_bad) */
    double loss, top1, top5; /* mean CE; percentages */
} kd_eval_result;

typedef struct kd_evaluator kd_evaluator;

/* ds must outlive the evaluator. image_size / resize_size give the center view.
 * skip_bad: leave unreadable images out instead of failing. */
kdc_status kd_evaluator_create(kd_evaluator **out, const img_dataset *ds, int image_size,
                               int resize_size, const img_norm *norm, int batch, int threads,
                               int skip_bad, kdc_error *err);
void kd_evaluator_free(kd_evaluator *e);

kdc_status kd_evaluate(kd_evaluator *e, kdc_model *m, kd_eval_result *res, kdc_error *err);
/* The images the last kd_evaluate left out, the first few named. */
const img_skip_log *kd_evaluator_skipped(const kd_evaluator *e);

#endif
