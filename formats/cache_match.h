/* cache_match.h - "does this cache describe this dataset": the one check that
 * kd-train runs on the cache it trains from and `kd-cache verify --data` runs,
 * so that verify passes exactly the caches that kd-train accepts.
 *
 * A cache describes an ImageFolder when
 *   - as sets, the cache's image table and the folder's images are the same
 *     images: every row's path is in the folder exactly once (no duplicated
 *     rows) and every image of the folder has a row (no extra image), with the
 *     same label and file size (cache_match_dataset). Rows are matched by path,
 *     not position: kd-precompute writes them shuffled by default (--order);
 *   - every stored view fits its image under the cache's view policy: inside
 *     the image for rrc, within the padding for pad-crop, the center box for
 *     center, flip 0 or 1 (cache_match_view, cache_match_chunk_views);
 *   - every file is the one the teacher saw: size, CRC-32 and, for images not
 *     marked skipped, its decoded width and height (cache_match_file). kd-train
 *     checks this for each image as it decodes it (the loader reports all
 *     four); verify reads every file.
 * Every error names the cache, the image and what differs, in the same words
 * from both tools. Not the file's own integrity (cache_reader.h, verify). */
#ifndef KDC_CACHE_MATCH_H
#define KDC_CACHE_MATCH_H

#include <stdint.h>

#include "common/image/dataset.h"
#include "common/image/image_batch.h"
#include "common/image/views.h"
#include "formats/cache_schema.h"

/* Table t against the images of ds, as sets (see above). On success
 * ds_of_row[r] (t->count entries, caller's memory; NULL: not wanted) is the
 * dataset index of row r. The error names the first image that differs.
 * O(N log N). */
kdc_status cache_match_dataset(const img_dataset *ds, const cache_image_table *t,
                               const char *cache_path, int64_t *ds_of_row, kdc_error *err);

/* The view parameters and normalisation a cache's header fixes, checked. */
kdc_status cache_match_view_params(const cache_header *h, img_view_params *p, img_norm *n,
                                   kdc_error *err);

/* View `view` of row `row` (box y0, x0, h, w and flip) against the row's stored
 * image size, under p. A row marked skipped has no views to check. */
kdc_status cache_match_view(const img_view_params *p, const cache_image_table *t, int64_t row,
                            int64_t view, const int32_t box[4], uint8_t flip,
                            const char *cache_path, kdc_error *err);
/* Every view of the images of chunk c (image-major, V views each). */
kdc_status cache_match_chunk_views(const cache_header *h, const cache_image_table *t,
                                   const cache_chunk *c, const char *cache_path, kdc_error *err);

/* A file as read (size, zlib CRC-32, decoded width and height; 0 x 0 when it
 * could not be decoded) against row `row`. root/path name it in messages. */
kdc_status cache_match_file(const cache_image_table *t, int64_t row, const char *root,
                            uint64_t size, uint32_t crc32, int width, int height,
                            const char *cache_path, kdc_error *err);

/* verify --data: opens data_dir as an ImageFolder, matches it with t
 * (cache_match_dataset), then reads every file and matches it
 * (cache_match_file). *checked counts the files compared. */
kdc_status cache_match_data_dir(const cache_image_table *t, const char *data_dir,
                                const char *cache_path, int64_t *checked, kdc_error *err);

#endif
