/* cache_setup.h - what kd-precompute's command line, dataset and teacher mean
 * for the cache: the root attributes (cache_header), the image table, and the
 * view and normalisation parameters that the loader and the trainer replay.
 *
 * Everything here is a pure function of its inputs, so an interrupted run and
 * its --resume compute the same header, and the writer can compare them.
 * Not the run itself (precompute_run.h). */
#ifndef KD_CACHE_SETUP_H
#define KD_CACHE_SETUP_H

#include "common/image/dataset.h"
#include "common/image/image_batch.h"
#include "common/image/views.h"
#include "formats/cache_schema.h"
#include "precompute/precompute_options.h"
#include "precompute/teacher.h"

#define KD_PRECOMPUTE_CREATED_BY "kd-precompute (kdcache) 1.0"
/* Default chunks are rounded down to a multiple of this many images, so that
 * the usual batch sizes (powers of two up to 64) divide a chunk's views: no
 * short batch at chunk ends. */
#define KD_CHUNK_ALIGN 64

kdc_status kd_precompute_view_params(const kd_precompute_options *o, img_view_params *vp,
                                     kdc_error *err);
void kd_precompute_norm(const kd_precompute_options *o, img_norm *n);

/* The cache's row order (--order): perm[r] = the dataset index of the image
 * in cache row r, for r < n. shuffled: a Fisher-Yates permutation driven by
 * Philox keyed by --seed and a stream no view uses (common/base/rng.h), the same on
 * every machine; dataset: the identity. Rows in a random order make every
 * chunk a random mix of classes, so kd-train's chunk-level shuffle gives
 * near-iid batches at any dataset size (the FFCV / WebDataset approach). */
void kd_precompute_row_order(const kd_precompute_options *o, size_t n, int64_t *perm);

/* The image table (path, label, size, crc32) of a checksummed dataset in row
 * order: row r describes ds image perm[r] (perm NULL: the identity). The
 * paths point into ds (do not free them: kd_precompute_image_table_free). */
kdc_status kd_precompute_image_table(const img_dataset *ds, const int64_t *perm,
                                     cache_image_table *t, kdc_error *err);
void kd_precompute_image_table_free(cache_image_table *t);

/* Every root attribute, including chunk_images, shard and the fingerprint of t,
 * exactly as the writer will store them. */
kdc_status kd_precompute_header(const kd_precompute_options *o, const char *arch,
                                const kd_teacher *teacher, const cache_image_table *t,
                                cache_header *h, kdc_error *err);

/* created_by records the batch size, the device type and the precision (the
 * teacher's results depend on all three: "... batch=32 device=cuda
 * precision=tf32") and the row order (order=shuffled|dataset); returns the
 * flag that differs between a file made by kd-precompute and this run, or
 * NULL. A file without precision= (made before the flag existed) counts as
 * fp32, one without order= as dataset order. */
const char *kd_precompute_run_diff(const cache_header *file, const cache_header *run);

/* A one-line reason for resuming refusals: the human name of a header
 * attribute that differs ("teacher weights (teacher_weights_sha256)"). */
const char *kd_precompute_attr_meaning(const char *attr);

#endif
