/* cache_export.h - `kd-cache export CACHE --format npy --out DIR`: every
 * dataset as a NumPy .npy file in its stored dtype (float16 stays float16),
 * image paths as paths.txt (one per line) and the root attributes as
 * attributes.json. Each file is written to NAME.tmp and renamed. Not an
 * importer: the cache stays the source of truth. */
#ifndef KDC_CACHE_EXPORT_H
#define KDC_CACHE_EXPORT_H

#include "common/base/error.h"

kdc_status cache_export_npy(const char *cache_path, const char *out_dir, kdc_error *err);

#endif
