/* kd_loss.c - vanilla KD (Hinton) as mdistiller's kd_loss computes it, from full teacher
 * logits or from a top-k cache, forward and backward. Formulas: ALGORITHMS.md section 1;
 * the top-k rule (renormalise the teacher over its K classes) and why: TRAINING_MATH.md.
 *
 * Forwards work in double (the loss is a small difference of O(log C) terms, so float
 * would lose digits); backwards work in float32 with double sums, as the CUDA kernels
 * do. Softmax and log-softmax subtract the row max. Terms with p_t = 0 contribute 0. */
#include "train/losses.h"

#include <math.h>

#include "common/base/half.h"

static kdc_status check_kd_args(const char *what, const float *student, const void *teacher,
                                size_t B, size_t C, float T, kdc_error *err)
{
    if (!student || !teacher)
        return kdc_fail(err, KDC_EINVAL, "%s: NULL student or teacher logits", what);
    if (B == 0 || C == 0)
        return kdc_fail(err, KDC_EINVAL, "%s: empty batch (B=%zu, C=%zu)", what, B, C);
    if (!(T > 0.0f) || !isfinite(T))
        return kdc_fail(err, KDC_EINVAL, "%s: temperature %g must be positive and finite", what,
                        (double)T);
    return KDC_OK;
}

/* Row max of z/T and log sum exp(z/T - max), both in double. */
static void row_lse_f64(const float *z, size_t n, double invT, double *max_out, double *lse_out)
{
    double m = (double)z[0] * invT;
    for (size_t c = 1; c < n; c++) {
        double a = (double)z[c] * invT;
        m = a > m ? a : m;
    }
    double s = 0.0;
    for (size_t c = 0; c < n; c++)
        s += exp((double)z[c] * invT - m);
    *max_out = m;
    *lse_out = m + log(s);
}

/* Row max of z/T (float) and 1 / sum exp(z/T - max). */
static void row_softmax_norm(const float *z, size_t n, float invT, float *max_out, float *inv_out)
{
    float m = z[0] * invT;
    for (size_t c = 1; c < n; c++) {
        float a = z[c] * invT;
        m = a > m ? a : m;
    }
    double s = 0.0;
    for (size_t c = 0; c < n; c++)
        s += expf(z[c] * invT - m);
    *max_out = m;
    *inv_out = (float)(1.0 / s);
}

kdc_status kd_kd_forward(double *loss, const float *student, const float *teacher, size_t B,
                         size_t C, float temperature, float weight, kdc_error *err)
{
    kdc_status st = check_kd_args("KD loss", student, teacher, B, C, temperature, err);
    if (st != KDC_OK)
        return st;
    if (!loss)
        return kdc_fail(err, KDC_EINVAL, "KD loss: NULL loss");
    const double T = temperature, invT = 1.0 / T;
    double total = 0.0;
    for (size_t b = 0; b < B; b++) {
        const float *zs = student + b * C, *zt = teacher + b * C;
        double ms, lse_s, mt, lse_t;
        row_lse_f64(zs, C, invT, &ms, &lse_s);
        row_lse_f64(zt, C, invT, &mt, &lse_t);
        double row = 0.0;
        for (size_t c = 0; c < C; c++) {
            double log_pt = (double)zt[c] * invT - lse_t;
            double pt = exp(log_pt);
            if (pt == 0.0) /* 0 * log 0 = 0, also for a -inf teacher logit */
                continue;
            row += pt * (log_pt - ((double)zs[c] * invT - lse_s));
        }
        total += row;
    }
    *loss = (double)weight * T * T * total / (double)B;
    return KDC_OK;
}

kdc_status kd_kd_backward(float *dstudent, const float *student, const float *teacher, size_t B,
                          size_t C, float temperature, float weight, kd_grad_mode mode,
                          kdc_error *err)
{
    kdc_status st = check_kd_args("KD loss", student, teacher, B, C, temperature, err);
    if (st != KDC_OK)
        return st;
    if (!dstudent)
        return kdc_fail(err, KDC_EINVAL, "KD loss: NULL gradient buffer");
    const float invT = 1.0f / temperature;
    const float scale = weight * temperature / (float)B;
    for (size_t b = 0; b < B; b++) {
        const float *zs = student + b * C, *zt = teacher + b * C;
        float *g = dstudent + b * C;
        float ms, inv_s, mt, inv_t;
        row_softmax_norm(zs, C, invT, &ms, &inv_s);
        row_softmax_norm(zt, C, invT, &mt, &inv_t);
        for (size_t c = 0; c < C; c++) {
            float ps = expf(zs[c] * invT - ms) * inv_s;
            float pt = expf(zt[c] * invT - mt) * inv_t;
            float v = scale * (ps - pt);
            g[c] = mode == KD_GRAD_SET ? v : g[c] + v;
        }
    }
    return KDC_OK;
}

/* ---- top-k ------------------------------------------------------------------------ */

static kdc_status check_topk_args(const float *student, const uint16_t *value, const int32_t *index,
                                  size_t B, size_t C, size_t K, float T, kdc_error *err)
{
    kdc_status st = check_kd_args("top-k KD loss", student, value, B, C, T, err);
    if (st != KDC_OK)
        return st;
    if (!index)
        return kdc_fail(err, KDC_EINVAL, "top-k KD loss: NULL class indices");
    if (K == 0 || K > C)
        return kdc_fail(err, KDC_EINVAL, "top-k KD loss: K=%zu must be in [1, C=%zu]", K, C);
    for (size_t b = 0; b < B; b++) {
        int any_finite = 0;
        for (size_t k = 0; k < K; k++) {
            int32_t i = index[b * K + k];
            if (i < 0 || (size_t)i >= C)
                return kdc_fail(err, KDC_EINVAL,
                                "top-k KD loss: class index %d (sample %zu, rank %zu) is "
                                "outside [0, %zu)",
                                (int)i, b, k, C);
            /* a row needs one stored logit above -inf, or q is 0/0 (NaN counts as none) */
            if (kdc_f16_to_f32(value[b * K + k]) > -INFINITY)
                any_finite = 1;
        }
        if (!any_finite)
            return kdc_fail(err, KDC_EINVAL,
                            "top-k KD loss: sample %zu has no teacher logit above -inf", b);
    }
    return KDC_OK;
}

/* Max of v/T over the K stored logits and log sum exp over them (double). The teacher
 * distribution is q_k = exp(v_k/T - lse): renormalised over the K stored classes. */
static void topk_lse_f64(const uint16_t *v, size_t K, double invT, double *lse_out)
{
    double m = -INFINITY;
    for (size_t k = 0; k < K; k++) {
        double a = (double)kdc_f16_to_f32(v[k]) * invT;
        m = a > m ? a : m;
    }
    double s = 0.0;
    for (size_t k = 0; k < K; k++)
        s += exp((double)kdc_f16_to_f32(v[k]) * invT - m);
    *lse_out = m + log(s);
}

kdc_status kd_kd_topk_forward(double *loss, const float *student, const uint16_t *topk_value,
                              const int32_t *topk_index, size_t B, size_t C, size_t K,
                              float temperature, float weight, kdc_error *err)
{
    kdc_status st = check_topk_args(student, topk_value, topk_index, B, C, K, temperature, err);
    if (st != KDC_OK)
        return st;
    if (!loss)
        return kdc_fail(err, KDC_EINVAL, "top-k KD loss: NULL loss");
    const double T = temperature, invT = 1.0 / T;
    double total = 0.0;
    for (size_t b = 0; b < B; b++) {
        const float *zs = student + b * C;
        const uint16_t *v = topk_value + b * K;
        const int32_t *idx = topk_index + b * K;
        double ms, lse_s, lse_q;
        row_lse_f64(zs, C, invT, &ms, &lse_s);
        topk_lse_f64(v, K, invT, &lse_q);
        double row = 0.0;
        for (size_t k = 0; k < K; k++) {
            double log_q = (double)kdc_f16_to_f32(v[k]) * invT - lse_q;
            double q = exp(log_q);
            if (q == 0.0)
                continue;
            row += q * (log_q - ((double)zs[idx[k]] * invT - lse_s));
        }
        total += row;
    }
    *loss = (double)weight * T * T * total / (double)B;
    return KDC_OK;
}

kdc_status kd_kd_topk_backward(float *dstudent, const float *student, const uint16_t *topk_value,
                               const int32_t *topk_index, size_t B, size_t C, size_t K,
                               float temperature, float weight, kd_grad_mode mode, kdc_error *err)
{
    kdc_status st = check_topk_args(student, topk_value, topk_index, B, C, K, temperature, err);
    if (st != KDC_OK)
        return st;
    if (!dstudent)
        return kdc_fail(err, KDC_EINVAL, "top-k KD loss: NULL gradient buffer");
    const float invT = 1.0f / temperature;
    const float scale = weight * temperature / (float)B;
    for (size_t b = 0; b < B; b++) {
        const float *zs = student + b * C;
        const uint16_t *v = topk_value + b * K;
        const int32_t *idx = topk_index + b * K;
        float *g = dstudent + b * C;
        float ms, inv_s;
        row_softmax_norm(zs, C, invT, &ms, &inv_s);
        /* the student part over all C classes ... */
        for (size_t c = 0; c < C; c++) {
            float ps = expf(zs[c] * invT - ms) * inv_s;
            g[c] = mode == KD_GRAD_SET ? scale * ps : g[c] + scale * ps;
        }
        /* ... minus the renormalised teacher on its K classes (the rest is 0). */
        float mt = -INFINITY;
        for (size_t k = 0; k < K; k++) {
            float a = kdc_f16_to_f32(v[k]) * invT;
            mt = a > mt ? a : mt;
        }
        double s = 0.0;
        for (size_t k = 0; k < K; k++)
            s += expf(kdc_f16_to_f32(v[k]) * invT - mt);
        const float inv_t = (float)(1.0 / s);
        for (size_t k = 0; k < K; k++)
            g[idx[k]] -= scale * (expf(kdc_f16_to_f32(v[k]) * invT - mt) * inv_t);
    }
    return KDC_OK;
}
