/* cache_verify.h - full check of a cache file: every written chunk read back
 * (fletcher32 and LZ4 integrity, contents in range, views that fit their
 * images), completeness, and optionally the dataset: cache_match.h, the same
 * check kd-train runs (the image set, labels, sizes, CRC-32s, image sizes).
 * Used by `kd-cache verify`; not a repair tool. */
#ifndef KDC_CACHE_VERIFY_H
#define KDC_CACHE_VERIFY_H

#include "formats/cache_schema.h"

typedef struct cache_verify_report {
    int64_t chunks_checked, chunks_total;
    int64_t images_checked; /* dataset files compared (with a data dir) */
    int64_t shard_index, shard_count;
} cache_verify_report;

/* Returns KDC_OK only when everything holds; otherwise the first problem, with
 * the chunk, image or file it concerns. data_dir may be NULL. */
kdc_status cache_verify(const char *path, const char *data_dir, cache_verify_report *rep,
                        kdc_error *err);

/* zlib CRC-32 and size of a file. */
kdc_status cache_file_crc32(const char *path, uint64_t *size, uint32_t *crc, kdc_error *err);

#endif
