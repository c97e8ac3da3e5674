/* chunk_writer.h - the write stage of kd-precompute: a thread that takes filled
 * chunks of teacher outputs and hands them to the cache writer, which
 * compresses and writes them. Two forms of chunk buffer:
 *   float32  (the CPU teacher): logits and features as the teacher computed
 *            them; the cache writer converts them (float16 / top-k);
 *   stored   (a GPU teacher, which converts on the device and downloads only
 *            the stored form): a cache_chunk in the file's storage, written
 *            with cache_writer_write_stored after this module applies the
 *            writer's rule for skipped images (zero rows, zero sizes).
 * Both give the same file for the same numbers.
 *
 * A fixed ring of chunk buffers, allocated at start: the forward stage fills one
 * while the thread writes the others, so compression and I/O overlap the teacher.
 * Chunks are written in the order they are submitted. The cache_writer is used
 * only by this thread between start and stop (HDF5 is not called concurrently).
 *
 * Not the file format (formats/cache_writer.h) and not the pipeline's order. */
#ifndef KD_CHUNK_WRITER_H
#define KD_CHUNK_WRITER_H

#include <stdint.h>

#include "formats/cache_writer.h"

typedef struct kd_chunk_buf {
    int64_t chunk, first_image, count; /* set by the filler */
    int32_t *height, *width;           /* [chunk_images] */
    uint8_t *skipped;                  /* [chunk_images] */
    int32_t *box;                      /* [chunk_images x V x 4] */
    uint8_t *flip;                     /* [chunk_images x V] */
    /* float32 form (NULL in stored form): */
    float *logits;                     /* [chunk_images x V x C] */
    float *features;                   /* [chunk_images x V x D]; NULL when D == 0 */
    /* stored form: the rows in the file's storage (stored.logits, .topk_*,
     * .features); height..flip above point into it. Unused in float32 form. */
    cache_chunk stored;
} kd_chunk_buf;

typedef enum { KD_CHUNK_F32 = 0, KD_CHUNK_STORED = 1 } kd_chunk_form;

typedef struct kd_chunk_writer kd_chunk_writer;

/* Whether rows [row, row + n) of b (image-major, views minor) hold only
 * values the cache can keep: finite, and inside float16's range where the
 * file stores float16 (logits in float16 and top-k modes, features always; a
 * larger value would be stored as infinity). A NaN teacher must not make a
 * cache that looks complete. On the first bad value: *bad_row and why
 * ("logit 3 is nan") are set and 0 is returned. */
int kd_chunk_rows_finite(const kd_chunk_buf *b, kd_chunk_form form, const cache_header *h,
                         int64_t row, int64_t n, int64_t *bad_row, char *why, size_t why_len);

/* nbufs >= 2 buffers of `form` sized from w's header. */
kdc_status kd_chunk_writer_start(cache_writer *w, int nbufs, kd_chunk_form form,
                                 kd_chunk_writer **out, kdc_error *err);
/* A free buffer, waiting while all are queued; fails (with the write error) once
 * the thread has failed. */
kdc_status kd_chunk_writer_acquire(kd_chunk_writer *cw, kd_chunk_buf **buf, kdc_error *err);
/* Queues a filled buffer. */
void kd_chunk_writer_submit(kd_chunk_writer *cw, kd_chunk_buf *buf);
/* Writes what is queued (or, with discard, drops it), stops the thread and
 * returns the first write error. The cache_writer is the caller's again. */
kdc_status kd_chunk_writer_stop(kd_chunk_writer *cw, int discard, kdc_error *err);
/* Seconds the thread spent writing, and the filler spent waiting for a buffer. */
double kd_chunk_writer_busy_seconds(const kd_chunk_writer *cw);
double kd_chunk_writer_wait_seconds(const kd_chunk_writer *cw);
int64_t kd_chunk_writer_images_written(const kd_chunk_writer *cw);
void kd_chunk_writer_free(kd_chunk_writer *cw);

#endif
