/* loader.h - a pool of decoding threads that fills batches of views ahead of the
 * consumer.
 *
 * The caller gives a plan: one img_request per sample, in order; the plan is cut
 * into batches of batch_size. Threads take samples in plan order and write each
 * into its own place in a batch buffer, so the output is the same whatever the
 * thread count or timing. `prefetch` batch buffers rotate: while the consumer
 * holds one, the threads fill the next ones, so the consumer never waits when
 * decoding keeps up. Buffers are allocated once, at creation.
 *
 * A request either replays a stored view (kd-train, has_view = 1) or asks for view
 * `view_index` of the image under the loader's view policy, drawn once the header
 * gives the image size (kd-precompute); either way the sample reports the view it
 * rendered. A sample that fails (unreadable, corrupt, too large) carries its status
 * and message in the batch; the others are unaffected.
 *
 * Consecutive requests of the same image (kd-precompute's V views) are taken
 * by one thread together and cut from one decode (img_load_views).
 *
 * Not thread-safe for several consumers: one thread calls next/release. */
#ifndef KDC_LOADER_H
#define KDC_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "common/image/dataset.h"
#include "common/base/error.h"
#include "common/image/image_batch.h"
#include "common/image/views.h"

#define IMG_LOADER_MAX_THREADS 256

typedef struct img_request {
    int64_t index;       /* image index in the dataset */
    uint32_t view_index; /* which view to draw when has_view is 0 (and reported as is) */
    int has_view;        /* 1: render `view` (replay); 0: draw it from the policy */
    img_view view;
} img_request;

typedef struct img_loader_config {
    int threads;    /* decoding threads (>= 1) */
    int batch_size; /* samples per batch */
    int prefetch;   /* batch buffers (>= 2): how far the threads may run ahead */
    img_view_params view;
    img_norm norm;
    uint64_t max_pixels; /* 0: IMG_MAX_PIXELS */
} img_loader_config;

/* threads 1, batch 32, prefetch 4, default view params and ImageNet norm. */
void img_loader_config_default(img_loader_config *c);

typedef struct img_loader img_loader;

/* ds must outlive the loader. */
kdc_status img_loader_create(img_loader **out, const img_dataset *ds, const img_loader_config *cfg,
                             kdc_error *err);
/* Starts a plan of n requests (copied). A plan not fully consumed is abandoned. */
kdc_status img_loader_start(img_loader *l, const img_request *reqs, size_t n, kdc_error *err);
/* The next batch in plan order, waiting for it if needed; *out = NULL after the
 * last one. The batch stays valid until img_loader_release. */
kdc_status img_loader_next(img_loader *l, img_batch **out, kdc_error *err);
/* Gives a batch back so its buffer can take a later batch. Batches are released
 * in the order they were returned. */
void img_loader_release(img_loader *l, img_batch *b);
/* Seconds the consumer spent waiting inside img_loader_next since the plan started. */
double img_loader_wait_seconds(const img_loader *l);
void img_loader_destroy(img_loader *l);

/* Decodes and renders one sample on the calling thread (what each loader thread
 * does): fills info and, when it succeeds, the S*S*3 bytes at rgb_out. Decoder and
 * scratch are the caller's, reused across calls. */
typedef struct img_decoder img_decoder;
kdc_status img_load_view(const img_dataset *ds, const img_view_params *vp, const img_request *req,
                         img_decoder *dec, img_view_scratch *scratch, uint8_t *rgb_out,
                         img_sample *info);

/* Most requests one img_load_views call (and one loader claim) takes. */
#define IMG_LOAD_MAX_VIEWS 64

/* n (1..IMG_LOAD_MAX_VIEWS) requests of the same image: one read of the file
 * (its size and CRC-32 from the bytes that are decoded), one decode per DCT
 * scale the views need (one in all without --decode-scale), then each view
 * rendered into rgb_out[j] with its info[j]; rendering is the same function
 * as for a single view, so every view's bytes equal img_load_view's. A file
 * that fails fails every one of its n samples with the same message.
 * Returns the first failure. */
kdc_status img_load_views(const img_dataset *ds, const img_view_params *vp,
                          const img_request *reqs, int n, img_decoder *dec,
                          img_view_scratch *scratch, uint8_t *const *rgb_out,
                          img_sample *const *info);

#endif
