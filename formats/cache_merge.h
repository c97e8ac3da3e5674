/* cache_merge.h - joins the shards written by `kd-precompute --shard i/n`
 * into one complete cache (`kd-cache merge`). Refuses shards of different
 * teachers or settings, incomplete, overlapping or missing shards. Chunks are
 * copied in stored form (no float conversion, so values are bit-identical). */
#ifndef KDC_CACHE_MERGE_H
#define KDC_CACHE_MERGE_H

#include "common/base/error.h"

/* Writes out (via out.partial, renamed when complete) from n shard files. */
kdc_status cache_merge(const char *out, const char *const *inputs, int n, kdc_error *err);

#endif
