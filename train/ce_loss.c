/* ce_loss.c - cross-entropy over logits with integer labels (the task loss of
 * ALGORITHMS.md section 1), forward and backward, as torch.nn.functional.cross_entropy
 * with reduction="mean" computes it. Not the KD loss (kd_loss.c). */
#include "train/losses.h"

#include <math.h>

static kdc_status check_ce_args(const float *logits, const int32_t *labels, size_t B, size_t C,
                                kdc_error *err)
{
    if (!logits || !labels)
        return kdc_fail(err, KDC_EINVAL, "cross-entropy: NULL logits or labels");
    if (B == 0 || C == 0)
        return kdc_fail(err, KDC_EINVAL, "cross-entropy: empty batch (B=%zu, C=%zu)", B, C);
    for (size_t b = 0; b < B; b++)
        if (labels[b] < 0 || (size_t)labels[b] >= C)
            return kdc_fail(err, KDC_EINVAL,
                            "cross-entropy: label %d of sample %zu is outside [0, %zu)",
                            (int)labels[b], b, C);
    return KDC_OK;
}

kdc_status kd_ce_forward(double *loss, const float *logits, const int32_t *labels, size_t B,
                         size_t C, float weight, kdc_error *err)
{
    kdc_status st = check_ce_args(logits, labels, B, C, err);
    if (st != KDC_OK)
        return st;
    if (!loss)
        return kdc_fail(err, KDC_EINVAL, "cross-entropy: NULL loss");
    double total = 0.0;
    for (size_t b = 0; b < B; b++) {
        const float *z = logits + b * C;
        float m = z[0];
        for (size_t c = 1; c < C; c++)
            m = z[c] > m ? z[c] : m;
        /* -log softmax(z)[y] = m + log sum exp(z - m) - z[y]; the max keeps exp <= 1. */
        double s = 0.0;
        for (size_t c = 0; c < C; c++)
            s += exp((double)z[c] - m);
        total += (double)m + log(s) - (double)z[labels[b]];
    }
    *loss = (double)weight * total / (double)B;
    return KDC_OK;
}

kdc_status kd_ce_backward(float *dlogits, const float *logits, const int32_t *labels, size_t B,
                          size_t C, float weight, kd_grad_mode mode, kdc_error *err)
{
    kdc_status st = check_ce_args(logits, labels, B, C, err);
    if (st != KDC_OK)
        return st;
    if (!dlogits)
        return kdc_fail(err, KDC_EINVAL, "cross-entropy: NULL gradient buffer");
    const float scale = weight / (float)B;
    for (size_t b = 0; b < B; b++) {
        const float *z = logits + b * C;
        float *g = dlogits + b * C;
        float m = z[0];
        for (size_t c = 1; c < C; c++)
            m = z[c] > m ? z[c] : m;
        double s = 0.0;
        for (size_t c = 0; c < C; c++)
            s += expf(z[c] - m);
        const float inv = (float)(1.0 / s);
        if (mode == KD_GRAD_SET) {
            for (size_t c = 0; c < C; c++)
                g[c] = scale * (expf(z[c] - m) * inv);
        } else {
            for (size_t c = 0; c < C; c++)
                g[c] += scale * (expf(z[c] - m) * inv);
        }
        g[labels[b]] -= scale;
    }
    return KDC_OK;
}
