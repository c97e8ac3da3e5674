/* batch_dump.h - a test hook: with KDC_DUMP_BATCHES=DIR in the environment,
 * kd-train writes the first batch of every epoch it trains from a cache to
 * DIR/epoch<E>.{rows.i64,views.i32,labels.i32,pixels.f32} (raw little-endian;
 * rows are cache rows, pixels count x 3 x S x S normalised), so that other
 * readers of the cache (python/kdcache CacheDataset) can be checked against
 * the views and pixels kd-train really uses. Off (no cost) without the
 * variable; a failed write is reported once on stderr and never stops
 * training. */
#ifndef KD_BATCH_DUMP_H
#define KD_BATCH_DUMP_H

#include <stddef.h>
#include <stdint.h>

/* DIR or NULL. */
const char *kd_batch_dump_dir(void);
void kd_batch_dump(const char *dir, int64_t epoch, int n, const int64_t *rows, const int32_t *views,
                   const int32_t *labels, const float *pixels, size_t floats_per_sample);

#endif
