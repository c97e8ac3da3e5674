/* cache_upgrade.h - `kd-cache upgrade IN OUT`: rewrites a complete format v1
 * cache as format v2 (docs/CACHE_FORMAT.md). Chunks are copied in stored form,
 * so values are bit-identical and the fingerprint is the same; the chunking
 * along N is kept. OUT must not exist; it is written as OUT.partial and
 * renamed, and nothing is left behind on failure. */
#ifndef KDC_CACHE_UPGRADE_H
#define KDC_CACHE_UPGRADE_H

#include "common/base/error.h"

kdc_status cache_upgrade(const char *in, const char *out, kdc_error *err);

#endif
