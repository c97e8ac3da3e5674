/* precompute_options.h - kd-precompute's command line (SPEC.md section 5). */
#ifndef KD_PRECOMPUTE_OPTIONS_H
#define KD_PRECOMPUTE_OPTIONS_H

#include "common/cuda/cuda_backend.h"
#include "common/base/error.h"

typedef enum { KD_LOGITS_F32 = 0, KD_LOGITS_F16 = 1, KD_LOGITS_TOPK = 2 } kd_logit_mode;

typedef struct kd_precompute_options {
    const char *data, *list, *teacher, *weights, *out, *device;
    const char *view_policy; /* center | rrc | pad-crop */
    int views, pad, image_size, resize_size;
    double scale[2], ratio[2];
    double mean[3], std[3];
    kd_logit_mode logits;
    int topk;
    int no_features, batch, threads, shard_index, shard_count, resume, seed, quiet, strict;
    int num_classes; /* 0: take it from the weights file */
    int chunk_images;   /* --chunk-images: images per HDF5 chunk; 0 = chosen by size */
    int decode_threads; /* --decode-threads: JPEG decoding threads; 0 = --threads */
    kdc_precision precision; /* --precision: the teacher's conv/linear arithmetic (cuda) */
    int order_dataset; /* --order dataset: cache rows in dataset order (default: shuffled) */
    double log_every;  /* --log-every SECONDS: progress lines off a terminal */
    int plan_only;     /* --plan-only: views only, for an external teacher (plan_only.h) */
    int feature_dim;   /* --feature-dim D with --plan-only (0: no features) */
} kd_precompute_options;

/* *action: KDC_CLI_RUN, KDC_CLI_HELP (-h/--help) or KDC_CLI_VERSION (cli.h). */

kdc_status kd_precompute_parse_options(int argc, char **argv, kd_precompute_options *o,
                                       int *action, kdc_error *err);
const char *kd_precompute_usage(void);

#endif
