/* plan_only.h - kd-precompute --plan-only: a cache with the image table and
 * every view (box, flip) of every image, but no teacher outputs, for a
 * teacher that runs elsewhere (python/kdcache fill()).
 *
 * The file has every dataset of a cache with its final shape, type, chunking
 * and filters, teacher_arch "external", an empty teacher_weights_sha256,
 * complete = 0 and no chunk marked done; /images/height, width, skipped and
 * /views/box, flip are written for every chunk (docs/CACHE_FORMAT.md, "Plans").
 * The classes and the feature width come from --num-classes and
 * --feature-dim, since there is no weights file to read them from.
 * Written as OUT.partial and renamed to OUT when every chunk's views are in. */
#ifndef KD_PLAN_ONLY_H
#define KD_PLAN_ONLY_H

#include "precompute/precompute_run.h"

#define KD_PLAN_TEACHER_ARCH "external"

kdc_status kd_precompute_plan(const kd_precompute_options *o, const kd_precompute_hooks *hooks,
                              kd_precompute_stats *stats, kdc_error *err);

#endif
