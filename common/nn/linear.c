/* linear.c - nn.Linear forward/backward as three GEMMs and a column sum. */
#include "common/nn/linear.h"

#include "common/nn/gemm.h"

static kdc_status check(int n, int in, int out, kdc_error *err)
{
    if (n <= 0 || in <= 0 || out <= 0)
        return kdc_fail(err, KDC_EINVAL, "linear: non-positive size n=%d in=%d out=%d", n, in,
                        out);
    return KDC_OK;
}

/* db[j] = sum over rows of dy[:, j], in double, in row order. */
static void column_sums(int n, int out, const float *dy, float *db)
{
    for (int j = 0; j < out; j++) {
        double s = 0;
        for (int i = 0; i < n; i++)
            s += dy[(size_t)i * out + j];
        db[j] = (float)s;
    }
}

kdc_status kdc_linear_forward(int n, int in, int out, const float *x, const float *w,
                              const float *b, float *y, kdc_error *err)
{
    kdc_status st = check(n, in, out, err);
    if (st)
        return st;
    if (b) /* y = b broadcast, then y += x . w^T */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++)
                y[(size_t)i * out + j] = b[j];
    kdc_sgemm(0, 1, n, out, in, 1.0f, x, in, w, in, b ? 1.0f : 0.0f, y, out);
    return KDC_OK;
}

kdc_status kdc_linear_backward(int n, int in, int out, const float *x, const float *w,
                               const float *dy, float *dx, float *dw, float *db,
                               kdc_error *err)
{
    kdc_status st = check(n, in, out, err);
    if (st)
        return st;
    if (!dw)
        return kdc_fail(err, KDC_EINVAL, "linear backward: dw is required");
    if (dx)
        kdc_sgemm(0, 0, n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
    kdc_sgemm(1, 0, out, in, n, 1.0f, dy, out, x, in, 0.0f, dw, in);
    if (db)
        column_sums(n, out, dy, db);
    return KDC_OK;
}

kdc_status kdc_linear_backward_dual(int n, int in, int out, const float *x, const float *w,
                                    const float *dy2, float *dx2, float *dw0, float *db0,
                                    float *dw1, float *db1, kdc_error *err)
{
    kdc_status st = check(n, in, out, err);
    if (st)
        return st;
    if (!dw0 || !dw1)
        return kdc_fail(err, KDC_EINVAL, "linear backward: dw is required");
    if (dx2) /* both streams as one batch of 2n rows */
        kdc_sgemm(0, 0, 2 * n, in, out, 1.0f, dy2, out, w, in, 0.0f, dx2, in);
    float *dw[2] = {dw0, dw1}, *db[2] = {db0, db1};
    for (int s = 0; s < 2; s++) {
        const float *dy = dy2 + (size_t)s * n * out;
        kdc_sgemm(1, 0, out, in, n, 1.0f, dy, out, x, in, 0.0f, dw[s], in);
        if (db[s])
            column_sums(n, out, dy, db[s]);
    }
    return KDC_OK;
}
