/* cache_rawcheck.h - raw checks of a cache file's HDF5 structures that
 * libhdf5 1.10.8 decodes without bounds checks, run before libhdf5 opens the
 * file (tests/fuzz found mutated files that crash it there; docs/FUZZ.md).
 *
 * Checked: the superblock (version 0, 8-byte offsets: what our writers and
 * the HDF5 defaults produce), the root group's object header, its
 * continuation blocks (inside the file, no loops, at most 64) and every
 * attribute message in them: sizes consistent with the message, a NUL-
 * terminated name, a datatype of the kinds a cache uses (integer, float,
 * fixed string, v1's variable-length string) and a dataspace of at most 16
 * elements whose data fits. A file laid out otherwise is left to libhdf5. */
#ifndef KDC_CACHE_RAWCHECK_H
#define KDC_CACHE_RAWCHECK_H

#include <stdint.h>

#include "common/base/error.h"

/* KDC_OK when the structures are sound or not of the checked layout; then
 * *vlen_attrs is the number of variable-length root attributes and *version
 * the stored kdcache_version (both -1 when the layout was not checked). */
kdc_status cache_raw_check_root(const char *path, int *vlen_attrs, int64_t *version,
                                kdc_error *err);

#endif
