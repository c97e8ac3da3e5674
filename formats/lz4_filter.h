/* lz4_filter.h - the HDF5 LZ4 filter (registered id 32004), byte-compatible
 * with the standard LZ4 plugin that hdf5plugin and the HDF5 filter-plugin
 * collections ship.
 *
 * Chunk format (all integers big-endian; see docs/CACHE_FORMAT.md):
 *   int64 orig_size, int32 block_size, then per block: int32 csize + csize bytes,
 *   a raw LZ4 block, or the block's bytes as is when csize equals its length.
 *
 * The codec functions work on plain memory and are what the tests exercise;
 * cache_lz4_register() installs the same codec as an HDF5 filter in this
 * process. This file is not the cache schema and knows nothing of datasets. */
#ifndef KDC_LZ4_FILTER_H
#define KDC_LZ4_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

#define CACHE_LZ4_FILTER_ID 32004
/* The plugin's default when cd_values[0] is 0 or absent. */
#define CACHE_LZ4_DEFAULT_BLOCK ((size_t)1 << 30)
/* The plugin refuses block sizes at or above this (LZ4_MAX_INPUT_SIZE). */
#define CACHE_LZ4_MAX_BLOCK ((size_t)0x7E000000)
#define CACHE_LZ4_HEADER_SIZE 12

/* Upper bound of the encoded size of n bytes cut into blocks of block_size
 * (0 = default). Returns 0 when the size overflows or n is too large. */
size_t cache_lz4_bound(size_t n, size_t block_size);

/* Encodes src[0..n) into dst (capacity cap >= cache_lz4_bound). block_size 0
 * means the default. Blocks that LZ4 does not shrink are stored raw, as the
 * standard plugin does. */
kdc_status cache_lz4_encode(const void *src, size_t n, size_t block_size, void *dst, size_t cap,
                            size_t *out_len, kdc_error *err);

/* Reads orig_size from an encoded chunk and checks it is plausible for len
 * encoded bytes (an LZ4 block expands at most 255x), so that callers can
 * allocate before decoding without trusting a hostile header. */
kdc_status cache_lz4_decoded_size(const void *src, size_t len, size_t *orig_size,
                                  kdc_error *err);

/* Decodes src[0..len) into dst (capacity cap >= orig_size). Every block is
 * decoded with LZ4_decompress_safe and its produced length checked; a short,
 * long or corrupt chunk is an error. */
kdc_status cache_lz4_decode(const void *src, size_t len, void *dst, size_t cap, size_t *out_len,
                            kdc_error *err);

/* Registers the filter with HDF5 in this process (idempotent, thread-safe).
 * Files written afterwards use our encoder; files read use our decoder rather
 * than a dynamically loaded plugin. */
kdc_status cache_lz4_register(kdc_error *err);

#endif
