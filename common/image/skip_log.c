/* skip_log.c - counting and naming skipped images (skip_log.h). */
#include "common/image/skip_log.h"

#include <stdio.h>
#include <string.h>

void img_skip_log_clear(img_skip_log *l)
{
    l->count = 0;
    l->named = 0;
}

void img_skip_log_add(img_skip_log *l, const char *msg)
{
    if (l->named < IMG_SKIP_NAMED)
        snprintf(l->msg[l->named++], KDC_ERROR_MSG_MAX, "%s", msg ? msg : "(no reason)");
    l->count++;
}

void img_skip_log_names(const img_skip_log *l, char *buf, size_t n)
{
    if (!n)
        return;
    buf[0] = '\0';
    size_t len = 0;
    for (int i = 0; i < l->named && len + 1 < n; i++) {
        int w = snprintf(buf + len, n - len, "%s%s", i ? "; " : "", l->msg[i]);
        if (w < 0)
            return;
        len += (size_t)w < n - len ? (size_t)w : n - len - 1;
    }
    if (l->count > l->named && len + 1 < n)
        snprintf(buf + len, n - len, " (and %lld more)", (long long)(l->count - l->named));
}
