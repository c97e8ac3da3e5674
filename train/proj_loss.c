/* proj_loss.c - the projector loss of Miles & Mikolajczyk (ALGORITHMS.md section 3):
 * L = w * log sum |BN(f) - BN(t)|^alpha with batch-statistics BN (biased variance, eps
 * 1e-4, no affine) on the projector output f and on the cached teacher features t.
 * Forward and backward w.r.t. f, through the student-side BN. Not the projector's
 * Linear layer (a model layer) and not the teacher side, which gets no gradient.
 *
 * Per-feature statistics and S are accumulated in double, two passes (mean, then
 * squared deviations) so that features with a large mean lose no digits. */
#include "train/losses.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

kdc_status kd_proj_ws_init(kd_proj_ws *ws, size_t max_B, size_t D, kdc_error *err)
{
    if (!ws)
        return kdc_fail(err, KDC_EINVAL, "projector loss: NULL workspace");
    memset(ws, 0, sizeof *ws);
    if (max_B < 2 || D == 0)
        return kdc_fail(err, KDC_EINVAL,
                        "projector loss: batch %zu x dim %zu (batch statistics need B >= 2)", max_B,
                        D);
    size_t n_bd, n_acc;
    if (!kdc_size_mul(max_B, D, &n_bd) || !kdc_size_mul(n_bd, sizeof(float), &n_bd) ||
        !kdc_size_mul(D, 2 * sizeof(double), &n_acc))
        return kdc_fail(err, KDC_ENOMEM, "projector loss: %zu x %zu overflows", max_B, D);
    ws->d = malloc(n_bd);
    ws->f_mean = malloc(n_acc / 2);
    ws->f_rstd = malloc(n_acc / 2);
    ws->acc = malloc(n_acc);
    if (!ws->d || !ws->f_mean || !ws->f_rstd || !ws->acc) {
        kd_proj_ws_free(ws);
        return kdc_fail(err, KDC_ENOMEM, "projector loss: out of memory for %zu x %zu", max_B, D);
    }
    ws->max_B = max_B;
    ws->D = D;
    return KDC_OK;
}

void kd_proj_ws_free(kd_proj_ws *ws)
{
    if (!ws)
        return;
    free(ws->d);
    free(ws->f_mean);
    free(ws->f_rstd);
    free(ws->acc);
    memset(ws, 0, sizeof *ws);
}

/* Batch mean and 1/sqrt(biased var + eps) per feature of x (B x D), in double. */
static void batch_stats(const float *x, size_t B, size_t D, double *mean, double *rstd)
{
    for (size_t j = 0; j < D; j++)
        mean[j] = 0.0;
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < D; j++)
            mean[j] += x[b * D + j];
    for (size_t j = 0; j < D; j++) {
        mean[j] /= (double)B;
        rstd[j] = 0.0;
    }
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < D; j++) {
            double c = x[b * D + j] - mean[j];
            rstd[j] += c * c;
        }
    for (size_t j = 0; j < D; j++)
        rstd[j] = 1.0 / sqrt(rstd[j] / (double)B + (double)KD_PROJ_BN_EPS);
}

/* |d|^alpha; the common alphas avoid pow(). */
static double abs_pow(double d, double alpha)
{
    double a = fabs(d);
    if (alpha == 4.0) {
        double a2 = a * a;
        return a2 * a2;
    }
    if (alpha == 2.0)
        return a * a;
    if (alpha == 1.0)
        return a;
    return pow(a, alpha);
}

/* d/dd |d|^alpha / alpha = sign(d) |d|^(alpha-1); 0 at d = 0 (as autograd's abs). */
static double signed_pow_m1(double d, double alpha)
{
    if (alpha == 4.0)
        return d * d * d;
    if (alpha == 2.0)
        return d;
    if (d == 0.0)
        return 0.0;
    return copysign(alpha == 1.0 ? 1.0 : pow(fabs(d), alpha - 1.0), d);
}

kdc_status kd_proj_forward(double *loss, kd_proj_ws *ws, const float *f, const float *t, size_t B,
                           double alpha, float weight, kdc_error *err)
{
    if (!loss || !ws || !f || !t)
        return kdc_fail(err, KDC_EINVAL, "projector loss: NULL argument");
    if (!ws->d)
        return kdc_fail(err, KDC_EINVAL, "projector loss: workspace not initialised");
    ws->B = 0; /* no backward until this forward succeeds */
    if (B < 2 || B > ws->max_B)
        return kdc_fail(err, KDC_EINVAL,
                        "projector loss: batch %zu outside [2, %zu] (batch statistics need "
                        "two samples; the workspace was made for %zu)",
                        B, ws->max_B, ws->max_B);
    if (!(alpha >= 1.0) || !isfinite(alpha))
        return kdc_fail(err, KDC_EINVAL, "projector loss: alpha %g must be finite and >= 1", alpha);
    const size_t D = ws->D;
    double *fm = ws->f_mean, *fr = ws->f_rstd, *tm = ws->acc, *tr = ws->acc + D;
    batch_stats(f, B, D, fm, fr);
    batch_stats(t, B, D, tm, tr);
    double S = 0.0;
    for (size_t b = 0; b < B; b++) {
        const float *fb = f + b * D, *tb = t + b * D;
        float *db = ws->d + b * D;
        for (size_t j = 0; j < D; j++) {
            double d = (fb[j] - fm[j]) * fr[j] - (tb[j] - tm[j]) * tr[j];
            db[j] = (float)d;
            S += abs_pow(d, alpha);
        }
    }
    if (isnan(S))
        return kdc_fail(err, KDC_EINVAL,
                        "projector loss: NaN in the projector output or teacher features");
    if (S == 0.0)
        return kdc_fail(err, KDC_EINVAL,
                        "projector loss: sum |d|^alpha is 0, log undefined (student and teacher "
                        "features normalise to the same values)");
    ws->sum = S;
    ws->B = B;
    ws->alpha = alpha;
    *loss = (double)weight * log(S);
    return KDC_OK;
}

kdc_status kd_proj_backward(float *df, kd_proj_ws *ws, const float *f, float weight,
                            kd_grad_mode mode, kdc_error *err)
{
    if (!df || !ws || !f)
        return kdc_fail(err, KDC_EINVAL, "projector loss: NULL argument");
    if (ws->B == 0)
        return kdc_fail(err, KDC_EINVAL, "projector loss: backward without a successful forward");
    const size_t B = ws->B, D = ws->D;
    const double alpha = ws->alpha;
    /* g = dL/dBN(f) = w * alpha * sign(d)|d|^(alpha-1) / S */
    const double coef = (double)weight * alpha / ws->sum;
    double *sg = ws->acc, *sgx = ws->acc + D;
    for (size_t j = 0; j < 2 * D; j++)
        ws->acc[j] = 0.0;
    for (size_t b = 0; b < B; b++) {
        const float *fb = f + b * D, *db = ws->d + b * D;
        for (size_t j = 0; j < D; j++) {
            double g = coef * signed_pow_m1(db[j], alpha);
            double xhat = (fb[j] - ws->f_mean[j]) * ws->f_rstd[j];
            sg[j] += g;
            sgx[j] += g * xhat;
        }
    }
    /* Batch-statistics BN backward (no affine):
     *   df = rstd * (g - mean_b g - xhat * mean_b(g * xhat)) */
    const double invB = 1.0 / (double)B;
    for (size_t b = 0; b < B; b++) {
        const float *fb = f + b * D, *db = ws->d + b * D;
        float *out = df + b * D;
        for (size_t j = 0; j < D; j++) {
            double g = coef * signed_pow_m1(db[j], alpha);
            double xhat = (fb[j] - ws->f_mean[j]) * ws->f_rstd[j];
            double v = ws->f_rstd[j] * (g - sg[j] * invB - xhat * sgx[j] * invB);
            out[j] = mode == KD_GRAD_SET ? (float)v : out[j] + (float)v;
        }
    }
    return KDC_OK;
}
