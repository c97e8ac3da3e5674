/* batch_dump.c - the KDC_DUMP_BATCHES test hook (batch_dump.h). */
#include "train/batch_dump.h"

#include <stdio.h>
#include <stdlib.h>

const char *kd_batch_dump_dir(void)
{
    const char *d = getenv("KDC_DUMP_BATCHES");
    return d && *d ? d : NULL;
}

static int dump(const char *dir, int64_t epoch, const char *ext, const void *p, size_t size,
                size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/epoch%lld.%s", dir, (long long)epoch, ext);
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    int ok = fwrite(p, size, n, f) == n;
    return fclose(f) == 0 && ok;
}

void kd_batch_dump(const char *dir, int64_t epoch, int n, const int64_t *rows, const int32_t *views,
                   const int32_t *labels, const float *pixels, size_t floats_per_sample)
{
    size_t m = (size_t)n;
    int ok = dump(dir, epoch, "rows.i64", rows, sizeof *rows, m) &&
             dump(dir, epoch, "views.i32", views, sizeof *views, m) &&
             dump(dir, epoch, "labels.i32", labels, sizeof *labels, m) &&
             dump(dir, epoch, "pixels.f32", pixels, sizeof *pixels, m * floats_per_sample);
    static int warned;
    if (!ok && !warned) {
        warned = 1;
        fprintf(stderr, "kd-train: KDC_DUMP_BATCHES: cannot write to %s\n", dir);
    }
}
