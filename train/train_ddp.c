/* train_ddp.c - gradients, weights and buffers between the ranks of kd-train. */
#include "train/train_ddp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

kdc_status kd_ddp_mean_grads(kdc_dist *d, float *grad, size_t n, kdc_error *err)
{
    int R = kdc_dist_size(d);
    if (R == 1 || n == 0)
        return KDC_OK;
    size_t bucket = KD_DDP_BUCKET_BYTES / sizeof(float);
    const float div = (float)R;
    /* Buckets from the end: backward produces the last layers' gradients first,
     * and DDP fills its buckets in that order. Elementwise, the order changes
     * no value; it is the order a GPU run overlaps with backward. */
    for (size_t end = n; end > 0;) {
        size_t start = end > bucket ? end - bucket : 0;
        for (size_t i = start; i < end; i++)
            grad[i] /= div; /* DDP divides before the sum */
        kdc_status st = kdc_dist_sum_f32(d, grad + start, end - start, err);
        if (st)
            return kdc_error_prefix(err, "gradient all-reduce: ");
        end = start;
    }
    return KDC_OK;
}

kdc_status kd_ddp_sum_f64(void *dist, double *buf, size_t n, kdc_error *err)
{
    return kdc_dist_sum_f64(dist, buf, n, err);
}

kdc_status kd_ddp_bcast_device(kdc_dist *d, float *buf, size_t n, kdc_backend *be, kdc_error *err)
{
    if (kdc_dist_size(d) == 1 || n == 0)
        return KDC_OK;
    if (be->device.type == KDC_DEVICE_CPU)
        return kdc_dist_bcast(d, buf, n * sizeof(float), 0, err);
    float *h = malloc(n * sizeof(float));
    if (!h)
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    kdc_status st = be->copy_d2h(be, h, buf, n * sizeof(float), err);
    if (!st)
        st = kdc_dist_bcast(d, h, n * sizeof(float), 0, err);
    if (!st)
        st = be->copy_h2d(be, buf, h, n * sizeof(float), err);
    free(h);
    return st;
}

kdc_status kd_ddp_bcast_table(kdc_dist *d, kdc_param_table *t, kdc_backend *be, int buffers_only,
                              kdc_error *err)
{
    if (kdc_dist_size(d) == 1)
        return KDC_OK;
    /* One message: every tensor's bytes packed in table order. */
    size_t total = 0;
    for (int i = 0; i < t->count; i++)
        if (!buffers_only || t->items[i].kind == KDC_PARAM_BUFFER)
            total += kdc_tensor_nbytes(&t->items[i].value);
    char *h = malloc(total + 1);
    if (!h)
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    kdc_status st = KDC_OK;
    int cpu = be->device.type == KDC_DEVICE_CPU;
    size_t off = 0;
    for (int i = 0; i < t->count && !st; i++) {
        kdc_param *p = &t->items[i];
        if (buffers_only && p->kind != KDC_PARAM_BUFFER)
            continue;
        size_t nb = kdc_tensor_nbytes(&p->value);
        if (cpu)
            memcpy(h + off, p->value.data, nb);
        else
            st = be->copy_d2h(be, h + off, p->value.data, nb, err);
        off += nb;
    }
    if (!st)
        st = kdc_dist_bcast(d, h, total, 0, err);
    off = 0;
    for (int i = 0; i < t->count && !st; i++) {
        kdc_param *p = &t->items[i];
        if (buffers_only && p->kind != KDC_PARAM_BUFFER)
            continue;
        size_t nb = kdc_tensor_nbytes(&p->value);
        if (cpu)
            memcpy(p->value.data, h + off, nb);
        else
            st = be->copy_h2d(be, p->value.data, h + off, nb, err);
        off += nb;
    }
    free(h);
    return st;
}
