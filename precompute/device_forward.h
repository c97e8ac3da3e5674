/* device_forward.h - kd-precompute's forward stage on a GPU: the teacher's input
 * goes up through the pinned double-buffered uploader (common/cuda/cuda_backend.h),
 * its outputs are converted to the cache's stored form on the device
 * (float16 by the backend's f32_to_f16, top-k by common/cuda/cuda_topk.h, float32
 * as is) and only that form comes back, straight into a chunk in stored form
 * (formats/cache_schema.h cache_chunk).
 *
 * One batch is in flight at a time, driven in this order per batch:
 *   host_slot -> fill the pinned pixels -> submit   (copy i+1 starts on the
 *                                                    copy stream while the
 *                                                    teacher still runs batch i)
 *   download                                        (waits for batch i, copies
 *                                                    its stored rows back)
 *   run                                             (enqueues the teacher and
 *                                                    the conversion of i+1)
 * so the upload and the host's decoding wait of batch i+1 overlap the forward
 * of batch i. The conversions are the CPU writer's bit for bit (docs/GPU.md),
 * so the file's format and rules are the CPU path's; the numbers are the GPU
 * teacher's.
 *
 * Not the pipeline (precompute_run.c) and not the writer (chunk_writer.h).
 * In builds without CUDA, create fails with KDC_EDEVICE (the backend cannot
 * have been made either). */
#ifndef KD_DEVICE_FORWARD_H
#define KD_DEVICE_FORWARD_H

#include <stdint.h>

#include "common/nn/backend.h"
#include "common/models/model.h"
#include "formats/cache_schema.h"

typedef struct kd_device_forward kd_device_forward;

/* For batches of up to `batch` images of 3 x size x size floats, outputs in
 * h's storage (logit_storage, topk, feature_dim; feature_dim 0 = none). be
 * must be a CUDA backend holding the teacher m; m outlives d. */
kdc_status kd_device_forward_create(kdc_backend *be, kdc_model *m, const cache_header *h, int batch,
                                    int size, kd_device_forward **out, kdc_error *err);

/* The pinned buffer for the next batch's pixels (batch x 3 x size x size). */
kdc_status kd_device_forward_host_slot(kd_device_forward *d, float **pixels, kdc_error *err);

/* Starts copying the first n images of the slot to the GPU. */
kdc_status kd_device_forward_submit(kd_device_forward *d, int n, kdc_error *err);

/* Enqueues the teacher and the stored-form conversion of the last submitted
 * batch. Returns at once; the results are fetched by download. */
kdc_status kd_device_forward_run(kd_device_forward *d, kdc_error *err);

/* 1 when a batch was run and not yet downloaded. */
int kd_device_forward_pending(const kd_device_forward *d);

/* Waits for the batch last run and copies its rows (n of them, see submit)
 * into c's stored arrays from row `row` ((image, view) rows of the chunk). */
kdc_status kd_device_forward_download(kd_device_forward *d, cache_chunk *c, int64_t row,
                                      kdc_error *err);

void kd_device_forward_free(kd_device_forward *d);

#endif
