/* evaluate.c - center-view evaluation through the loader. */
#include "train/evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/image/loader.h"
#include "train/metrics.h"
#include "train/losses.h"

struct kd_evaluator {
    const img_dataset *ds;
    img_loader *loader;
    img_request *plan;
    int batch, S, skip_bad;
    img_skip_log skipped;
    float *pixels; /* compacted batch, host */
    int32_t *labels;
    float *logits; /* host copy */
    size_t max_c;
};

void kd_evaluator_free(kd_evaluator *e)
{
    if (!e)
        return;
    img_loader_destroy(e->loader);
    free(e->plan);
    free(e->pixels);
    free(e->labels);
    free(e->logits);
    free(e);
}

kdc_status kd_evaluator_create(kd_evaluator **out, const img_dataset *ds, int image_size,
                               int resize_size, const img_norm *norm, int batch, int threads,
                               int skip_bad, kdc_error *err)
{
    *out = NULL;
    kd_evaluator *e = calloc(1, sizeof *e);
    if (!e)
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    e->ds = ds;
    e->batch = batch;
    e->S = image_size;
    e->skip_bad = skip_bad;
    img_loader_config c;
    img_loader_config_default(&c);
    c.threads = threads < 1 ? 1 : threads;
    c.batch_size = batch;
    c.prefetch = 4;
    c.view.policy = IMG_VIEW_CENTER;
    c.view.image_size = image_size;
    c.view.resize_size = resize_size;
    c.norm = *norm;
    size_t per = (size_t)3 * (size_t)image_size * (size_t)image_size;
    e->plan = calloc(ds->count ? ds->count : 1, sizeof *e->plan);
    e->pixels = malloc((size_t)batch * per * sizeof(float));
    e->labels = malloc((size_t)batch * sizeof(int32_t));
    kdc_status st;
    if (!e->plan || !e->pixels || !e->labels) {
        kd_evaluator_free(e);
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    }
    if ((st = img_loader_create(&e->loader, ds, &c, err))) {
        kd_evaluator_free(e);
        return st;
    }
    for (size_t i = 0; i < ds->count; i++)
        e->plan[i].index = (int64_t)i;
    *out = e;
    return KDC_OK;
}

const img_skip_log *kd_evaluator_skipped(const kd_evaluator *e)
{
    return &e->skipped;
}

kdc_status kd_evaluate(kd_evaluator *e, kdc_model *m, kd_eval_result *res, kdc_error *err)
{
    memset(res, 0, sizeof *res);
    img_skip_log_clear(&e->skipped);
    kdc_backend *be = kdc_model_backend(m);
    int on_cpu = be->device.type == KDC_DEVICE_CPU;
    size_t C = (size_t)kdc_model_num_classes(m);
    size_t per = (size_t)3 * (size_t)e->S * (size_t)e->S;
    kdc_status st = KDC_OK;
    if (C > e->max_c) {
        float *l = realloc(e->logits, (size_t)e->batch * C * sizeof(float));
        if (!l)
            return kdc_fail(err, KDC_ENOMEM, "out of memory");
        e->logits = l;
        e->max_c = C;
    }
    float *dev_x = NULL;
    if (!on_cpu && (st = be->alloc(be, (size_t)e->batch * per * sizeof(float), (void **)&dev_x,
                                   err)))
        return st;
    if ((st = img_loader_start(e->loader, e->plan, e->ds->count, err)))
        goto out;
    double loss_sum = 0;
    int64_t c1 = 0, c5 = 0, nonfinite = 0;
    for (;;) {
        img_batch *b = NULL;
        if ((st = img_loader_next(e->loader, &b, err)))
            goto out;
        if (!b)
            break;
        int n = 0;
        for (int i = 0; i < b->count; i++) {
            const img_sample *sm = &b->samples[i];
            if (sm->status != KDC_OK && !e->skip_bad) {
                st = kdc_fail(err, sm->status,
                              "%s (a validation image; --skip-bad-images leaves unreadable "
                              "images out and counts them)",
                              sm->msg);
                img_loader_release(e->loader, b);
                goto out;
            }
            if (sm->status != KDC_OK) {
                img_skip_log_add(&e->skipped, sm->msg);
                res->skipped++;
                continue;
            }
            memcpy(e->pixels + (size_t)n * per, img_batch_sample_pixels(b, i),
                   per * sizeof(float));
            e->labels[n++] = b->samples[i].label;
        }
        img_loader_release(e->loader, b);
        if (n == 0)
            continue;
        for (int i = 0; i < n; i++)
            if (e->labels[i] < 0 || (size_t)e->labels[i] >= C) {
                st = kdc_fail(err, KDC_EMISMATCH,
                              "validation label %d is outside the student's %zu classes",
                              (int)e->labels[i], C);
                goto out;
            }
        const float *x = e->pixels;
        if (!on_cpu) {
            if ((st = be->copy_h2d(be, dev_x, e->pixels, (size_t)n * per * sizeof(float), err)))
                goto out;
            x = dev_x;
        }
        const float *logits = NULL;
        if ((st = kdc_model_forward(m, x, n, e->S, e->S, 0, &logits, NULL, err)))
            goto out;
        if ((st = be->copy_d2h(be, e->logits, logits, (size_t)n * C * sizeof(float), err)))
            goto out;
        double l = 0;
        if ((st = kd_ce_forward(&l, e->logits, e->labels, (size_t)n, C, 1.0f, err)))
            goto out;
        loss_sum += l * n;
        kd_count_correct(e->logits, e->labels, (size_t)n, C, &c1, &c5);
        nonfinite += (int64_t)kd_count_nonfinite_rows(e->logits, (size_t)n, C);
        res->images += n;
    }
    if (res->images == 0 && res->skipped > 0) {
        st = kdc_fail(err, KDC_EIMAGE, "none of the %lld validation images could be read: %s",
                      (long long)res->skipped, e->skipped.msg[0]);
        goto out;
    }
    if (res->images > 0 && !isfinite(loss_sum)) {
        st = kdc_fail(err, KDC_EINVAL,
                      "validation loss is %g: %lld of %lld images have a non-finite logit "
                      "(the student's weights or inputs are broken)",
                      loss_sum, (long long)nonfinite, (long long)res->images);
        goto out;
    }
    if (res->images > 0) {
        res->loss = loss_sum / (double)res->images;
        res->top1 = 100.0 * (double)c1 / (double)res->images;
        res->top5 = 100.0 * (double)c5 / (double)res->images;
    }
out:
    if (dev_x)
        be->free(be, dev_x);
    return st;
}
