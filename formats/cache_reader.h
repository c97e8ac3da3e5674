/* cache_reader.h - opens and validates a teacher cache (format v2, and v1) and
 * reads its rows: one chunk in stored form, one view of one chunk, or one
 * image's views as float32 samples.
 *
 * Opening checks the version, every attribute, every dataset's type and
 * shape, the image paths (relative, no ".."), labels, the fingerprint and the
 * progress marks, and bounds every size that comes from the file before
 * allocating: a corrupt or hostile file gives an error, not a crash. Chunk
 * data are verified by HDF5's fletcher32 when read.
 *
 * Shuffled streaming over a whole cache is cache_stream.h; this is random
 * access. A reader is not for concurrent use from several threads. */
#ifndef KDC_CACHE_READER_H
#define KDC_CACHE_READER_H

#include "formats/cache_schema.h"

/* Open flags. By default only complete, unsharded files open. */
#define CACHE_OPEN_ALLOW_INCOMPLETE 1u /* partial files and shards (info, verify, merge) */
#define CACHE_OPEN_NO_CHUNK_CACHE 2u   /* whole-chunk readers: skip HDF5's chunk cache */

typedef struct cache_reader cache_reader;

/* Samples as the trainer consumes them: count rows of (image, view), with the
 * teacher outputs converted to float32. In topk mode topk_index/topk_value
 * are filled and logits is NULL; otherwise logits (count x C). */
typedef struct cache_batch {
    int count, capacity;
    int64_t num_classes, topk, feature_dim;
    int64_t *image;
    int32_t *view, *label;
    int32_t *box;  /* count x 4: y0, x0, h, w */
    uint8_t *flip;
    float *logits;        /* count x C, or NULL in topk mode */
    int32_t *topk_index;  /* count x K, or NULL */
    float *topk_value;    /* count x K, or NULL */
    float *features;      /* count x D, or NULL when D == 0 */
} cache_batch;

kdc_status cache_batch_alloc(cache_batch *b, const cache_header *h, int capacity,
                             kdc_error *err);
void cache_batch_free(cache_batch *b);
/* Copies row src_row of src into row dst_row of dst (same header). */
void cache_batch_copy_row(cache_batch *dst, int dst_row, const cache_batch *src, int src_row);

kdc_status cache_reader_open(const char *path, unsigned flags, cache_reader **out,
                             kdc_error *err);
void cache_reader_close(cache_reader *r);

const cache_header *cache_reader_header(const cache_reader *r);
/* The whole image table, including height/width/skipped. */
const cache_image_table *cache_reader_images(const cache_reader *r);
const char *cache_reader_path(const cache_reader *r);
int64_t cache_reader_num_chunks(const cache_reader *r);
int cache_reader_chunk_done(const cache_reader *r, int64_t chunk);
void cache_reader_chunk_images(const cache_reader *r, int64_t chunk, int64_t *first,
                               int64_t *count);

/* Reads chunk (which must be done) in stored form into c (cache_chunk_alloc'd
 * for this header). Fails on a checksum error, a top-k index >= C, a flip
 * other than 0/1 or a box with h or w < 1 for an image that is not skipped. */
kdc_status cache_reader_read_chunk(cache_reader *r, int64_t chunk, cache_chunk *c,
                                   kdc_error *err);

/* One view of chunk (which must be done) in stored form into c
 * (cache_chunk_alloc'd for this header): c->view = view, and c->box, flip,
 * logits / topk, features hold count rows of that view alone (count x 4,
 * count, count x C, ...). Checked like a whole chunk. In a v2 file this reads
 * and decompresses only that view's HDF5 chunks (1/V of the outputs); a v1
 * file decompresses the whole chunk. */
kdc_status cache_reader_read_view(cache_reader *r, int64_t chunk, int64_t view, cache_chunk *c,
                                  kdc_error *err);

/* Converts every (image, view) row of a stored chunk to float32 samples in b
 * (capacity >= c->count * V, or c->count for a one-view chunk): rows
 * image-major, views minor. */
void cache_chunk_to_batch(const cache_header *h, const cache_chunk *c,
                          const int32_t *labels, cache_batch *b);

/* All V views of one image into b rows [0, V) (b->count = V). */
kdc_status cache_reader_read_image(cache_reader *r, int64_t image, cache_batch *b,
                                   kdc_error *err);

/* Bytes the large datasets occupy in the file and their uncompressed size. */
void cache_reader_storage(const cache_reader *r, uint64_t *stored, uint64_t *raw);

#endif
