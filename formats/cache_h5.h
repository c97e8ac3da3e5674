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

/* Fails with code and one line: "disk full writing F (context)" (or another
 * errno's words) when a system call failed, else the context and HDF5's
 * innermost message. Clears HDF5's error stack, which is never printed. */
kdc_status cache_h5_fail(kdc_error *err, kdc_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Saves the cause of the HDF5 call that just failed, for the next
 * cache_h5_fail (clean-up calls in between clear HDF5's stack). */
void cache_h5_save_error(void);

/* File access list: metadata is written only when flushed (no evictions of
 * dirty entries between flushes), so that a killed writer leaves the file as
 * of its last flush. */
hid_t cache_h5_fapl_for_writing(void);

kdc_status cache_h5_write_header(hid_t file, const cache_header *h, kdc_error *err);
kdc_status cache_h5_read_header(hid_t file, cache_header *h, kdc_error *err);
kdc_status cache_h5_set_complete(hid_t file, int64_t complete, kdc_error *err);
/* Overwrites the 64-byte dataset_fingerprint attribute in place (v2). */
kdc_status cache_h5_set_fingerprint(hid_t file, const char *hex64, kdc_error *err);

/* File creation list with no object timestamps (deterministic bytes). */
hid_t cache_h5_fcpl(void);
/* Creates the groups (no timestamps) that do not exist yet. */
kdc_status cache_h5_create_groups(hid_t file, const char *const *names, int n, kdc_error *err);

/* Creates dataset path (and its groups) of `type`, rank <= 3, chunked along N
 * with chunk0 rows per chunk (and one view per chunk when one_view and rank
 * is 3), filtered shuffle -> LZ4(block) -> fletcher32, without timestamps. */
kdc_status cache_h5_create_chunked(hid_t file, const char *path, hid_t type, int rank,
                                   const hsize_t *dims, hsize_t chunk0, int one_view,
                                   unsigned lz4_block, kdc_error *err);

/* Opens a dataset and checks its type class/size, rank and dims (dims[i] == 0
 * means "any"). No variable-length type passes, except for class H5T_STRING
 * with type_size 0 (v1 paths); H5T_STRING with type_size > 0 wants a fixed
 * string of 1 .. type_size bytes. Returns a dataset id or < 0 with err filled. */
hid_t cache_h5_open_checked(hid_t file, const char *path, H5T_class_t cls, size_t type_size,
                            int rank, const hsize_t *dims, hid_t dapl, kdc_error *err);

/* Rows [first, first+count) along dimension 0 of an open dataset, in memory
 * type mtype. */
kdc_status cache_h5_write_rows(hid_t dset, hid_t mtype, hsize_t first, hsize_t count,
                               const void *buf, kdc_error *err);
kdc_status cache_h5_read_rows(hid_t dset, hid_t mtype, hsize_t first, hsize_t count, void *buf,
                              kdc_error *err);

/* Rows [first, first+count) of views [view0, view0+nviews) of a rank-2 or 3
 * per-view dataset, packed (count x nviews x ...). */
kdc_status cache_h5_read_views(hid_t dset, hid_t mtype, hsize_t first, hsize_t count,
                               hsize_t view0, hsize_t nviews, void *buf, kdc_error *err);

/* IEEE binary16, little-endian (HDF5 1.10 has no predefined one; this is the
 * type h5py writes for numpy float16). Used as both file and memory type so
 * that half bits move without conversion. Owned here: do not close. */
hid_t cache_h5_f16(void);

/* Fixed-length UTF-8 NUL-padded string type of n bytes (caller closes it). */
hid_t cache_h5_fixed_str(size_t n);
/* Variable-length UTF-8 string type (v1 files; caller closes it). */
hid_t cache_h5_vlen_str(void);

/* v2 /images/path: n fixed-length strings as wide as the longest path, NUL
 * padded, chunked by chunk_rows (written in bounded blocks). */
kdc_status cache_h5_write_paths(hid_t file, char *const *paths, int64_t n, hsize_t chunk_rows,
                                unsigned lz4_block, kdc_error *err);
/* Reads and checks (cache_check_path, NUL padding only) the n paths of a v2
 * file into out[n] (strdup'ed; the caller frees them, also on failure). */
kdc_status cache_h5_read_paths(hid_t file, int64_t n, char **out, kdc_error *err);

/* True when path names a link that exists (intermediate groups checked). */
int cache_h5_exists(hid_t file, const char *path);

#endif
