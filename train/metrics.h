/* metrics.h - what kd-train measures and writes: top-1/top-5 counting and the
 * rows of RUN_DIR/metrics.csv.
 *
 * metrics.csv has one header line and one row per epoch (1-based), columns:
 *   epoch,lr,loss,ce_loss,kd_loss,proj_loss,train_top1,train_top5,
 *   val_loss,val_top1,val_top5,images_per_s,seconds,
 *   images,skipped,val_images,val_skipped
 * loss is the weighted total that was optimised; ce_loss, kd_loss and
 * proj_loss are the bare terms (weight 1; KD includes its T^2), each averaged
 * over the epoch's batches; accuracies are percentages; lr is the rate of the
 * epoch's first step; val_* are empty without --val; images_per_s counts
 * training images over the epoch's training time (evaluation excluded).
 * images: the images trained on in the epoch; skipped: the dataset's images
 * left out of it because they could not be read (online) or the cache marks
 * them skipped; val_images / val_skipped: the same for the evaluation. The
 * new columns come last, so scripts that read columns by position still work.
 * The file is rewritten whole after each epoch via "<path>.partial" + rename.
 *
 * Not the evaluation loop (evaluate.h). */
#ifndef KD_METRICS_H
#define KD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

#define KD_METRICS_HEADER                                                                   \
    "epoch,lr,loss,ce_loss,kd_loss,proj_loss,train_top1,train_top5,val_loss,val_top1,"     \
    "val_top5,images_per_s,seconds,images,skipped,val_images,val_skipped\n"

/* Per-row counts of samples whose label is the top-1 / among the top-5 logits
 * (top-5 = top-1 when C < 5 ... up to min(5, C)). Ties count against the label:
 * a class ranks above the label when its logit is strictly larger, or equal with
 * a lower index (torch.topk's order on ties is unspecified; this is stable).
 * A row with any NaN or infinite logit is wrong in both (every comparison with
 * NaN is false, so it would otherwise rank the label first). */
void kd_count_correct(const float *logits, const int32_t *labels, size_t B, size_t C,
                      int64_t *top1, int64_t *top5);
/* Rows of B x C logits with at least one NaN or infinite value. */
size_t kd_count_nonfinite_rows(const float *logits, size_t B, size_t C);

typedef struct kd_epoch_metrics {
    int epoch; /* 1-based */
    double lr, loss, ce, kd, proj;
    double train_top1, train_top5;
    int have_val;
    double val_loss, val_top1, val_top5;
    double images_per_s, seconds;
    int64_t images, skipped, val_images, val_skipped;
    int64_t dropped; /* images in a batch of one, not trained on (not a column) */
} kd_epoch_metrics;

/* Appends one row to *csv (malloc'd, grown; *csv NULL starts with the header). */
kdc_status kd_metrics_append(char **csv, const kd_epoch_metrics *m, kdc_error *err);
/* Writes text to path atomically. */
kdc_status kd_write_text_file(const char *path, const char *text, kdc_error *err);

#endif
