/* weights_check.c - finite weights and non-negative running variances. */
#include "formats/weights_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

kdc_status kdc_weights_check(const kdc_param_table *params, kdc_backend *be, const char *path,
                             kdc_error *err)
{
    size_t cap = 0;
    for (int i = 0; i < params->count; i++)
        if (params->items[i].value.dtype == KDC_F32 &&
            kdc_tensor_numel(&params->items[i].value) > cap)
            cap = kdc_tensor_numel(&params->items[i].value);
    float *host = malloc((cap ? cap : 1) * sizeof *host);
    if (!host)
        return kdc_fail(err, KDC_ENOMEM, "%s: out of memory checking the weights", path);
    kdc_status st = KDC_OK;
    for (int i = 0; i < params->count && !st; i++) {
        const kdc_param *p = &params->items[i];
        if (p->value.dtype != KDC_F32)
            continue; /* num_batches_tracked */
        size_t n = kdc_tensor_numel(&p->value);
        if ((st = be->copy_d2h(be, host, p->value.data, n * sizeof *host, err)))
            break;
        int is_var = ends_with(p->name, "running_var");
        for (size_t k = 0; k < n; k++) {
            if (!isfinite(host[k])) {
                st = kdc_fail(err, KDC_EFORMAT,
                              "%s: tensor '%s' holds %g at element %zu: refusing weights "
                              "that are not finite",
                              path, p->name, (double)host[k], k);
                break;
            }
            if (is_var && host[k] < 0) {
                st = kdc_fail(err, KDC_EFORMAT,
                              "%s: tensor '%s' holds %g at element %zu: a BatchNorm variance "
                              "cannot be negative",
                              path, p->name, (double)host[k], k);
                break;
            }
        }
    }
    free(host);
    return st;
}
