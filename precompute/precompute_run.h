/* precompute_run.h - kd-precompute's job: run the teacher once over every image
 * and view of a dataset and write the cache, resumably.
 *
 * Three stages run at once (docs/PRECOMPUTE.md):
 *   decode   a pool of threads (common/image/loader.h) reads, decodes, crops and
 *            normalises views, in plan order, several batches ahead;
 *   forward  the calling thread runs the teacher (kdc_model_infer, BN folded,
 *            running statistics) on each batch and scatters logits and pooled
 *            features into chunk buffers;
 *   write    a thread (chunk_writer.h) converts (float16 / top-k), compresses
 *            and writes whole chunks, marking each one done in the file.
 * Batches never straddle a chunk (each chunk's views are cut into batches from
 * its first image), so a chunk's numbers are the same in an uninterrupted run,
 * a resumed run or a shard: they depend only on the arguments.
 *
 * What it is not: no printing. Skipped images and progress are reported through
 * the hooks; the caller (kd_precompute_main.c) prints. */
#ifndef KD_PRECOMPUTE_RUN_H
#define KD_PRECOMPUTE_RUN_H

#include <stdint.h>

#include "common/base/progress.h"
#include "precompute/precompute_options.h"

typedef struct kd_precompute_hooks {
    void *ctx;
    /* An unreadable image (path relative to the dataset root) and why; it is
     * recorded as skipped in the cache. */
    void (*on_skip)(void *ctx, const char *path, const char *reason);
    /* One-line notes: what is being done before the images start flowing. */
    void (*on_note)(void *ctx, const char *msg);
    /* Images and images/s of the forward stage; NULL for none. */
    kdc_progress *progress;
} kd_precompute_hooks;

typedef struct kd_precompute_stats {
    int64_t num_images;     /* N in the dataset */
    int64_t range_images;   /* images of this file's range (a shard's share) */
    int64_t done_before;    /* images already in the file when a resume started */
    int64_t images_run;     /* images processed by this run */
    int64_t images_skipped; /* of those, unreadable ones */
    int views;
    int decode_threads, compute_threads;
    int already_complete;   /* --resume found the finished file: nothing done */
    double setup_s;         /* dataset listing + checksums + teacher load */
    double run_s;           /* from the first batch requested to the file renamed */
    double forward_s;       /* teacher busy (incl. copies into chunk buffers) */
    double decode_wait_s;   /* forward stage waiting for decoded batches */
    double write_s;         /* writer thread busy */
    double write_wait_s;    /* forward stage waiting for a free chunk buffer */
    double finish_s;        /* last chunks + completion + rename after the forward */
} kd_precompute_stats;

kdc_status kd_precompute_run(const kd_precompute_options *o, const kd_precompute_hooks *hooks,
                             kd_precompute_stats *stats, kdc_error *err);

#endif
