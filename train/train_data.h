/* train_data.h - the training samples of kd-train, one epoch at a time: which
 * (image, view) pairs, in which order, their pixels and, with a cache, the
 * teacher's outputs for exactly those pixels.
 *
 * With a cache, the order and the view of each image come from the cache's
 * shuffled stream (formats/cache_stream.h): chunks visited in a shuffled
 * order, samples shuffled within a window of chunks, one view per chunk and
 * epoch, view = (h(seed, chunk) + epoch) mod V, so an epoch reads 1/V of the
 * teacher outputs and V consecutive epochs use every cached view once; images the cache marks skipped never appear. The
 * images are decoded from the dataset folder and the stored view (box + flip)
 * is replayed, so the student sees the pixels the teacher saw. The dataset
 * must be the one the cache was made from: formats/cache_match.h, the check
 * `kd-cache verify --data` runs too (the image set, labels and sizes at open;
 * each batch's stored views against their images; each decoded file's size,
 * CRC-32 and pixel size against its row).
 *
 * Without a cache, every image once per epoch in a shuffled order (a
 * permutation drawn from (seed, epoch)), view number `epoch` drawn online by
 * the policy (rrc, pad-crop or center). Unreadable images are dropped from
 * their batch, counted and named (kd_data_epoch_skipped).
 *
 * --no-shuffle: consecutive batches in dataset order (cache mode: the
 * cache's row order).
 * Everything is a function of (seed, epoch), never of thread timing, so a run
 * resumed at an epoch boundary sees the same samples.
 *
 * Decoding runs on the loader's threads (common/image/loader.h) ahead of the
 * consumer: the requests of several batches form one loader plan, and the
 * next plan starts as soon as the last batch of the current one arrives.
 *
 * Not the model, not the losses: batches are host memory (kd_data_next_into
 * lets the caller choose the pixels' memory). */
#ifndef KD_TRAIN_DATA_H
#define KD_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "common/image/dataset.h"
#include "common/base/error.h"
#include "common/image/image_batch.h"
#include "common/image/skip_log.h"
#include "common/image/views.h"
#include "formats/cache_schema.h"

typedef struct kd_data_config {
    const char *data;  /* dataset folder (ImageFolder) */
    const char *cache; /* teacher cache, or NULL for online views */
    int batch_size;
    int threads;       /* decoding threads */
    int shuffle;
    uint64_t seed;
    /* Data parallel (train_ddp.h): this process serves rank `rank` of `ranks`
     * (0 means 1): the rank-th contiguous slice of every global batch of
     * batch_size, in the single-process order; a short last batch of n is split
     * as evenly as contiguous slices allow (floor(r n / R) .. floor((r+1) n / R)),
     * and with ranks > 1 a last batch that would leave a rank fewer than 2
     * images is left out on every rank (kd_data_epoch_left_out). */
    int rank, ranks;
    /* online views only (a cache fixes its own) */
    img_view_params view;
    img_norm norm;
} kd_data_config;

/* One batch, host memory owned by the kd_data, valid until the next call. */
typedef struct kd_batch {
    int count;
    const float *pixels;       /* count x 3 x S x S, normalised */
    const int32_t *label;      /* count */
    const int64_t *image;      /* count: dataset indices */
    /* teacher outputs (cache mode; NULL otherwise) */
    const float *logits;       /* count x C, float32/float16 caches */
    const int32_t *topk_index; /* count x K, top-k caches */
    const uint16_t *topk_value; /* count x K float16 bits, top-k caches */
    const float *features;     /* count x D, when the cache has features */
} kd_batch;

typedef struct kd_data kd_data;

kdc_status kd_data_open(const kd_data_config *cfg, kd_data **out, kdc_error *err);
void kd_data_close(kd_data *d);

const img_dataset *kd_data_dataset(const kd_data *d);
/* The cache's header, or NULL without a cache. */
const cache_header *kd_data_cache_header(const kd_data *d);
/* Classes: the cache's C, else the dataset's class count. */
int kd_data_num_classes(const kd_data *d);
/* The view parameters and normalisation in use (the cache's when there is one). */
const img_view_params *kd_data_view_params(const kd_data *d);
const img_norm *kd_data_norm(const kd_data *d);
/* Samples and batches of every epoch. */
int64_t kd_data_epoch_samples(const kd_data *d);
int64_t kd_data_epoch_batches(const kd_data *d);
/* Images of the current epoch dropped because they could not be decoded
 * (online mode; with a cache an unreadable image is an error), with the first
 * few named. Cleared by kd_data_start_epoch. */
const img_skip_log *kd_data_epoch_skipped(const kd_data *d);
/* Images the cache marks skipped (kd-precompute could not use them): they are
 * never served. Count 0 without a cache. */
const img_skip_log *kd_data_cache_skipped(const kd_data *d);

/* Images of the current epoch's last global batch left out because it could
 * not give every rank 2 (ranks > 1 only; the same on every rank). */
int64_t kd_data_epoch_left_out(const kd_data *d);

kdc_status kd_data_start_epoch(kd_data *d, int64_t epoch, kdc_error *err);
/* The next batch of the epoch; b->count == 0 after the last one. */
kdc_status kd_data_next(kd_data *d, kd_batch *b, kdc_error *err);
/* The same, with the pixels written to `pixels` (room for batch_size x 3 x
 * S x S floats, e.g. a pinned upload buffer: kd-train on a GPU decodes
 * straight into it) instead of the kd_data's own buffer; b->pixels points
 * there. The end of the epoch leaves b->pixels NULL, as kd_data_next. */
kdc_status kd_data_next_into(kd_data *d, kd_batch *b, float *pixels, kdc_error *err);

#endif
