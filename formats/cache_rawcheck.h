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
 * elements whose data fits; and for v1's variable-length strings, the
 * global heap objects they refer to. A file laid out otherwise is left to
 * libhdf5. */
#ifndef KDC_CACHE_RAWCHECK_H
#define KDC_CACHE_RAWCHECK_H

#include <stdint.h>

#include "common/base/error.h"

/* KDC_OK when the structures are sound or not of the checked layout; then
 * *vlen_attrs is the number of variable-length root attributes and *version
 * the stored kdcache_version (both -1 when the layout was not checked). */
kdc_status cache_raw_check_root(const char *path, int *vlen_attrs, int64_t *version,
                                kdc_error *err);

/* v1 files: the count variable-length references (16 bytes each) stored at
 * offset must each name an object of their length in a well-formed global
 * heap collection (the path strings of a v1 /images/path, read with H5Dread
 * only after this). Attribute references are checked by cache_raw_check_root. */
kdc_status cache_raw_check_vlen_refs(const char *path, uint64_t offset, uint64_t count,
                                     kdc_error *err);

/* The object header of a dataset or group at addr (from its link, read before
 * the object is opened) and its continuation blocks: attribute messages as for
 * the root; a dataset's layout (chunk dimensions of at least 1, no compact
 * storage) and filter pipeline; a group's local heap. The root's local heap is
 * checked by cache_raw_check_root. */
kdc_status cache_raw_check_object(const char *path, uint64_t addr, kdc_error *err);

#endif
