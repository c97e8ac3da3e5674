/* params.h - a named table of a model's tensors (parameters and buffers).
 *
 * This is the narrow interface between models and files: a model exposes its
 * tensors under torchvision's state_dict names, and formats/checkpoint.c reads
 * or writes safetensors through this table without knowing any architecture. */
#ifndef KDC_PARAMS_H
#define KDC_PARAMS_H

#include "common/base/tensor.h"

typedef enum kdc_param_kind {
    KDC_PARAM_WEIGHT = 0, /* trained: has a gradient */
    KDC_PARAM_BUFFER = 1  /* running_mean / running_var / num_batches_tracked */
} kdc_param_kind;

typedef struct kdc_param {
    const char *name;  /* torchvision state_dict key, e.g. "layer1.0.conv1.weight" */
    kdc_param_kind kind;
    kdc_tensor value;  /* lives on the model's device; num_batches_tracked is I64 */
    int is_bn;         /* a batch-norm weight/bias (some recipes skip wd on these) */
} kdc_param;

typedef struct kdc_param_table {
    kdc_param *items;
    int count;
} kdc_param_table;

#endif
