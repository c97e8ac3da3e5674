/* cache_h5.h - the HDF5 plumbing shared by the cache writer and reader: library
 * setup (quiet error stack, LZ4 filter), root attributes <-> cache_header,
 * chunked datasets with the shuffle -> LZ4 -> fletcher32 pipeline, and row
 * range I/O along N.
 *
 * Internal to formats/cache_*.c; the public interfaces are cache_writer.h and
 * cache_reader.h. */
#ifndef KDC_CACHE_H5_H
#define KDC_CACHE_H5_H

#include <hdf5.h>

#include "formats/cache_schema.h"

/* Silences HDF5's own printing of errors (library code never prints) and
 * registers the LZ4 filter. Call before any other HDF5 use; idempotent. */
kdc_status cache_h5_init(kdc_error *err);

/* Fails with code and a message that ends with HDF5's innermost error, if any. */
kdc_status cache_h5_fail(kdc_error *err, kdc_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* File access list: metadata is written only when flushed (no evictions of
 * dirty entries between flushes), so that a killed writer leaves the file as
 * of its last flush. */
hid_t cache_h5_fapl_for_writing(void);

kdc_status cache_h5_write_header(hid_t file, const cache_header *h, kdc_error *err);
kdc_status cache_h5_read_header(hid_t file, cache_header *h, kdc_error *err);
kdc_status cache_h5_set_complete(hid_t file, int64_t complete, kdc_error *err);

/* Creates dataset path (and its groups) of `type`, rank <= 3, chunked along N
 * with chunk0 rows per chunk, filtered shuffle -> LZ4(block) -> fletcher32. */
kdc_status cache_h5_create_chunked(hid_t file, const char *path, hid_t type, int rank,
                                   const hsize_t *dims, hsize_t chunk0, unsigned lz4_block,
                                   kdc_error *err);

/* Opens a dataset and checks its type class/size, rank and dims (dims[i] == 0
 * means "any"). Returns a dataset id or < 0 with err filled. */
hid_t cache_h5_open_checked(hid_t file, const char *path, H5T_class_t cls, size_t type_size,
                            int rank, const hsize_t *dims, hid_t dapl, kdc_error *err);

/* Rows [first, first+count) along dimension 0 of an open dataset, in memory
 * type mtype. */
kdc_status cache_h5_write_rows(hid_t dset, hid_t mtype, hsize_t first, hsize_t count,
                               const void *buf, kdc_error *err);
kdc_status cache_h5_read_rows(hid_t dset, hid_t mtype, hsize_t first, hsize_t count, void *buf,
                              kdc_error *err);

/* IEEE binary16, little-endian (HDF5 1.10 has no predefined one; this is the
 * type h5py writes for numpy float16). Used as both file and memory type so
 * that half bits move without conversion. Owned here: do not close. */
hid_t cache_h5_f16(void);

/* Variable-length UTF-8 string type (caller closes it). */
hid_t cache_h5_vlen_str(void);

/* True when path names a link that exists (intermediate groups checked). */
int cache_h5_exists(hid_t file, const char *path);

#endif
