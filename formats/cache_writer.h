/* cache_writer.h - writes a teacher cache (format v2, docs/CACHE_FORMAT.md)
 * chunk by chunk, safe to kill at any moment.
 *
 * The file is written as PATH.partial. Every chunk is written, flushed, then
 * marked in /progress/done and flushed again, so a reopened partial file
 * (cache_writer_resume) knows which chunks are complete. cache_writer_finish
 * checks that every chunk of the file's range is done, sets the root
 * attribute complete = 1, closes and renames PATH.partial to PATH.
 *
 * Sharding (kd-precompute --shard i/n): the header's shard_index/shard_count
 * give the file a contiguous chunk-aligned range (cache_shard_chunks); the
 * file still has all N rows' shape, only its range is written, and
 * `kd-cache merge` joins the shards. Not a reader: see cache_reader.h. */
#ifndef KDC_CACHE_WRITER_H
#define KDC_CACHE_WRITER_H

#include "formats/cache_schema.h"

typedef struct cache_writer cache_writer;

typedef struct cache_writer_options {
    /* LZ4 block size in bytes (cd_values[0]); 0 = the plugin default (1 GiB,
     * i.e. one block per chunk). */
    unsigned lz4_block;
} cache_writer_options;

/* Rows of images [first_image, first_image + count) as the teacher produced
 * them. Logits and features are float32; the writer converts them to the
 * storage mode (float16 equal to torch's .half(), or top-k). */
typedef struct cache_chunk_input {
    int64_t first_image, count;
    const int32_t *height, *width; /* [count] decoded size of the original image */
    const uint8_t *skipped;        /* [count] 1 = unreadable, rows stored as zeros; NULL = none */
    const int32_t *box;            /* [count x V x 4] y0, x0, h, w */
    const uint8_t *flip;           /* [count x V] */
    const float *logits;           /* [count x V x C] */
    const float *features;         /* [count x V x D]; NULL when D == 0 */
    /* [count] file size and zlib CRC-32 of each image, learnt while reading it;
     * NULL = the values of the image table given to create/resume. */
    const uint64_t *size;
    const uint32_t *crc32;
} cache_chunk_input;

/* Starts a new cache. h: every root attribute; version, complete and
 * dataset_fingerprint are set by the writer (the fingerprint at finish, from
 * the sizes and CRCs as written); chunk_images 0 lets it choose; shard_count 0
 * means 1. images: path/label of all N images, and size/crc32 where known
 * (zeros allowed when every chunk brings its own); height/width/skipped are
 * ignored: they come with the chunks. The table is copied.
 * opt may be NULL. An existing PATH.partial is overwritten. */
kdc_status cache_writer_create(const char *path, const cache_header *h,
                               const cache_image_table *images, const cache_writer_options *opt,
                               cache_writer **out, kdc_error *err);

/* Reopens PATH.partial (v2) after an interruption. The header, paths and
 * labels must be identical to the file's (the error names the first attribute
 * that differs), and so must the sizes/CRCs of written chunks where the table
 * gives them (non-zero). Then cache_writer_chunk_done() tells what is left. */
kdc_status cache_writer_resume(const char *path, const cache_header *h,
                               const cache_image_table *images, const cache_writer_options *opt,
                               cache_writer **out, kdc_error *err);

/* The header as written (chunk_images, fingerprint, version filled in). */
const cache_header *cache_writer_header(const cache_writer *w);
int64_t cache_writer_num_chunks(const cache_writer *w);
/* This file's chunks [first, end): all of them unless sharded. */
void cache_writer_chunk_range(const cache_writer *w, int64_t *first, int64_t *end);
int cache_writer_chunk_done(const cache_writer *w, int64_t chunk);
/* Images [*first, *first + *count) of chunk. */
void cache_writer_chunk_images(const cache_writer *w, int64_t chunk, int64_t *first,
                               int64_t *count);

/* Writes one whole chunk (in->first_image must be the chunk's first image and
 * in->count its image count), flushes and marks it done. */
kdc_status cache_writer_write_chunk(cache_writer *w, int64_t chunk, const cache_chunk_input *in,
                                    kdc_error *err);

/* Appends rows in image order (any count, may span chunks); a chunk is
 * written when its last image arrives. The first append after create/resume
 * must start at a chunk boundary (cache_writer_chunk_images). */
kdc_status cache_writer_append(cache_writer *w, const cache_chunk_input *rows, kdc_error *err);

/* Writes a chunk already in stored form (merge, upgrade, re-packing). Its
 * size/crc32 are used when c->files_known, else the creation table's. */
kdc_status cache_writer_write_stored(cache_writer *w, int64_t chunk, const cache_chunk *c,
                                     kdc_error *err);

/* Checks completeness, sets complete = 1, closes, renames PATH.partial to
 * PATH and frees w (also on failure; the partial file is then kept). */
kdc_status cache_writer_finish(cache_writer *w, kdc_error *err);

/* Closes without completing: PATH.partial stays for a later resume. */
void cache_writer_abort(cache_writer *w);

/* Converts rows of float32 logits to the stored top-k form: the K largest per
 * row, sorted descending, ties to the lower class index (NaN counts as the
 * largest, as torch.topk does). index_size is 2 (uint16) or 4 (int32). */
void cache_topk_rows(const float *logits, size_t rows, size_t C, size_t K, void *index,
                     size_t index_size, uint16_t *value_f16);

#endif
