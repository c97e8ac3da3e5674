/* cache_stream.h - shuffled streaming over a complete teacher cache, for the
 * trainer.
 *
 * A worker thread reads whole chunks (one HDF5 read per dataset per chunk, so
 * LZ4 and fletcher32 run once per chunk) and converts them to float32 into a
 * ring of 2 x buffer_chunks slots. The consumer shuffles the samples of a
 * window of buffer_chunks chunks (the chunks themselves are visited in a
 * shuffled order) and serves batches from it while the worker fills the next
 * window. Random order therefore costs one decompression per chunk, not one
 * per image.
 *
 * An epoch yields every image that is not skipped exactly once, or every
 * (image, view) with all_views. One view per chunk and epoch, (h(seed, chunk)
 * + epoch) mod V: all images of a chunk use the same view in an epoch, so
 * only that view's part of the chunk is needed, and V consecutive epochs use
 * every view of every image once. The order depends only on (seed,
 * epoch, buffer_chunks), never on thread timing. */
#ifndef KDC_CACHE_STREAM_H
#define KDC_CACHE_STREAM_H

#include "formats/cache_reader.h"

typedef struct cache_stream cache_stream;

typedef struct cache_stream_options {
    int batch_size;    /* samples per batch (> 0) */
    int buffer_chunks; /* chunks per shuffle window; 0 = 8 */
    int shuffle;       /* 0 = file order, one view chosen as above */
    int all_views;     /* 1 = every view of every image per epoch */
    uint64_t seed;
} cache_stream_options;

kdc_status cache_stream_open(const char *path, const cache_stream_options *opt,
                             cache_stream **out, kdc_error *err);
void cache_stream_close(cache_stream *s);

const cache_header *cache_stream_header(const cache_stream *s);
const cache_image_table *cache_stream_images(const cache_stream *s);
/* Samples one epoch yields. */
int64_t cache_stream_epoch_samples(const cache_stream *s);

/* Starts (or restarts) epoch `epoch`; stops a running one first. */
kdc_status cache_stream_start_epoch(cache_stream *s, int64_t epoch, kdc_error *err);

/* Fills b (allocated with cache_batch_alloc, capacity >= batch_size) with the
 * next batch; b->count is 0 at the end of the epoch, and the last batch may
 * be short. Errors of the worker (a corrupt chunk) come back here. */
kdc_status cache_stream_next(cache_stream *s, cache_batch *b, kdc_error *err);

#endif
