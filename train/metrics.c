/* metrics.c - top-k counting and the metrics.csv text. */
#include "train/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/fileutil.h"

static int row_finite(const float *z, size_t C)
{
    for (size_t c = 0; c < C; c++)
        if (!isfinite(z[c]))
            return 0;
    return 1;
}

size_t kd_count_nonfinite_rows(const float *logits, size_t B, size_t C)
{
    size_t n = 0;
    for (size_t b = 0; b < B; b++)
        n += !row_finite(logits + b * C, C);
    return n;
}

void kd_count_correct(const float *logits, const int32_t *labels, size_t B, size_t C,
                      int64_t *top1, int64_t *top5)
{
    for (size_t b = 0; b < B; b++) {
        int32_t y = labels[b];
        if (y < 0 || (size_t)y >= C)
            continue;
        const float *z = logits + b * C;
        if (!row_finite(z, C))
            continue;
        size_t above = 0; /* classes ranked before the label */
        for (size_t c = 0; c < C; c++)
            if (z[c] > z[y] || (z[c] == z[y] && c < (size_t)y))
                above++;
        if (above < 1)
            (*top1)++;
        if (above < 5)
            (*top5)++;
    }
}

static size_t count_commas(const char *s, const char *end)
{
    size_t n = 0;
    for (; s < end; s++)
        n += *s == ',';
    return n;
}

/* A run resumed from a checkpoint written before the last columns existed:
 * the current header, and its old rows padded with empty fields. */
static kdc_status upgrade_csv(char **csv, kdc_error *err)
{
    const char *nl = strchr(*csv, '\n');
    const char *head = KD_METRICS_HEADER;
    const size_t want = count_commas(head, head + strlen(head));
    if (!nl || !strncmp(*csv, KD_METRICS_HEADER, strlen(KD_METRICS_HEADER)))
        return KDC_OK;
    size_t have = count_commas(*csv, nl);
    if (have >= want)
        return KDC_OK; /* not ours to rewrite */
    size_t pad = want - have, rows = 0;
    for (const char *p = nl + 1; *p; p++)
        rows += *p == '\n';
    size_t len = strlen(KD_METRICS_HEADER) + strlen(nl + 1) + rows * pad + 1;
    char *out = malloc(len), *w = out;
    if (!out)
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    w += sprintf(w, "%s", KD_METRICS_HEADER);
    for (const char *p = nl + 1; *p; p++) {
        if (*p == '\n')
            for (size_t k = 0; k < pad; k++)
                *w++ = ',';
        *w++ = *p;
    }
    *w = '\0';
    free(*csv);
    *csv = out;
    return KDC_OK;
}

kdc_status kd_metrics_append(char **csv, const kd_epoch_metrics *m, kdc_error *err)
{
    kdc_status st;
    if (*csv && (st = upgrade_csv(csv, err)))
        return st;
    char row[640], val[160] = ",,", val_n[64] = ",";
    if (m->have_val) {
        snprintf(val, sizeof val, "%.6g,%.4f,%.4f", m->val_loss, m->val_top1, m->val_top5);
        snprintf(val_n, sizeof val_n, "%lld,%lld", (long long)m->val_images,
                 (long long)m->val_skipped);
    }
    int n = snprintf(row, sizeof row,
                     "%d,%.8g,%.6g,%.6g,%.6g,%.6g,%.4f,%.4f,%s,%.2f,%.2f,%lld,%lld,%s\n",
                     m->epoch, m->lr, m->loss, m->ce, m->kd, m->proj, m->train_top1,
                     m->train_top5, val, m->images_per_s, m->seconds, (long long)m->images,
                     (long long)m->skipped, val_n);
    if (n < 0 || (size_t)n >= sizeof row)
        return kdc_fail(err, KDC_EINVAL, "metrics row too long");
    size_t old = *csv ? strlen(*csv) : 0;
    const char *head = *csv ? "" : KD_METRICS_HEADER;
    char *s = realloc(*csv, old + strlen(head) + (size_t)n + 1);
    if (!s)
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    if (old == 0)
        s[0] = 0;
    strcat(s, head);
    strcat(s, row);
    *csv = s;
    return KDC_OK;
}

kdc_status kd_write_text_file(const char *path, const char *text, kdc_error *err)
{
    char tmp[4096];
    kdc_status st;
    if ((st = kdc_partial_name(path, tmp, sizeof tmp, err)))
        return st;
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return kdc_fail(err, KDC_EIO, "cannot create %s: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    errno = 0;
    int bad = fwrite(text, 1, n, f) != n;
    bad |= fflush(f) != 0;
    int e = errno;
    bad |= fclose(f) != 0;
    if (bad) {
        e = e ? e : errno;
        remove(tmp);
        return kdc_fail(err, KDC_EIO, "%s: write failed: %s", tmp, e ? strerror(e) : "I/O error");
    }
    return kdc_commit_file(tmp, path, err);
}
