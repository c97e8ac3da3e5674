/* cuda_topk.h - the cache writer's top-k selection on the GPU: the K largest
 * logits of every row, sorted descending, with their class indices and the
 * values as float16 bits, computed where the teacher's logits already are so
 * that kd-precompute downloads K (index, value) pairs per view instead of C
 * floats. Same result, bit for bit, as cache_topk_rows (formats/
 * cache_writer.h): ties to the lower class index, NaN counts as the largest
 * (several NaNs by index), -0 and +0 tie, float16 by round-to-nearest-even
 * with NaN written as the CPU writes it (sign | 0x7e00).
 *
 * The other float16 packing of the cache (full logits in float16 mode, the
 * features) is the backend op f32_to_f16 (backend.h).
 *
 * Only in builds with CUDA (KDC_HAVE_CUDA). Not the writer: the rows still go
 * to formats/ through its API; nothing here knows the file format. */
#ifndef KDC_CUDA_TOPK_H
#define KDC_CUDA_TOPK_H

#include <stddef.h>
#include <stdint.h>

#include "common/nn/backend.h"

/* logits: rows x C float32; index: rows x K uint16 (index_size 2, needs
 * C <= 65536) or int32 (index_size 4); value_f16: rows x K. All device memory
 * of `be` (a CUDA backend); enqueued on its stream. 1 <= K <= C. */
kdc_status kdc_cuda_topk_rows(kdc_backend *be, const float *logits, size_t rows, size_t C, size_t K,
                              void *index, size_t index_size, uint16_t *value_f16, kdc_error *err);

#endif
