/* skip_log.h - the images a tool left out, counted, with the first few named.
 *
 * Every tool that skips an unreadable image (or, in kd-precompute, one whose
 * teacher outputs are not finite) says how many it skipped and names the first
 * IMG_SKIP_NAMED with their reasons, so a dataset that loses images is never
 * silent. A log is plain memory, filled by one thread; no allocation. */
#ifndef KDC_SKIP_LOG_H
#define KDC_SKIP_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

/* Named in full: enough to see a pattern (one folder, one kind of error)
 * without flooding a log when a whole disk is bad. */
#define IMG_SKIP_NAMED 3

typedef struct img_skip_log {
    int64_t count;
    int named;
    char msg[IMG_SKIP_NAMED][KDC_ERROR_MSG_MAX]; /* "path: reason" */
} img_skip_log;

void img_skip_log_clear(img_skip_log *l);
/* Counts one skipped image; msg ("path: reason") is kept while fewer than
 * IMG_SKIP_NAMED are named. */
void img_skip_log_add(img_skip_log *l, const char *msg);
/* The names joined for one line: "MSG1; MSG2; MSG3 (and 12 more)"; "" when
 * nothing was skipped. Truncated to fit n. */
void img_skip_log_names(const img_skip_log *l, char *buf, size_t n);

#endif
