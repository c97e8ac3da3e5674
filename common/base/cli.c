/* cli.c - strict number parsing for command-line flags (strtol/strtod with
 * full-string, range and overflow checks). */
#include "common/base/cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

kdc_status kdc_cli_int(const char *flag, const char *s, long lo, long hi, long *out,
                       kdc_error *err)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || *end)
        return kdc_fail(err, KDC_EINVAL, "%s: '%s' is not an integer", flag, s ? s : "");
    if (v < lo || v > hi)
        return kdc_fail(err, KDC_EINVAL, "%s: %ld is outside %ld..%ld", flag, v, lo, hi);
    *out = v;
    return KDC_OK;
}

static kdc_status parse_double(const char *flag, const char *s, const char **endp, double *out,
                               kdc_error *err)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v))
        return kdc_fail(err, KDC_EINVAL, "%s: '%s' is not a finite number", flag, s);
    *endp = end;
    *out = v;
    return KDC_OK;
}

kdc_status kdc_cli_double(const char *flag, const char *s, double lo, double hi, double *out,
                          kdc_error *err)
{
    const char *end;
    double v;
    if (!s)
        return kdc_fail(err, KDC_EINVAL, "%s: missing value", flag);
    kdc_status st = parse_double(flag, s, &end, &v, err);
    if (st)
        return st;
    if (*end)
        return kdc_fail(err, KDC_EINVAL, "%s: '%s' is not a number", flag, s);
    if (v < lo || v > hi)
        return kdc_fail(err, KDC_EINVAL, "%s: %g is outside %g..%g", flag, v, lo, hi);
    *out = v;
    return KDC_OK;
}

kdc_status kdc_cli_doubles(const char *flag, const char *s, int n, double *out, kdc_error *err)
{
    const char *p = s;
    if (!s)
        return kdc_fail(err, KDC_EINVAL, "%s: missing value", flag);
    for (int i = 0; i < n; i++) {
        const char *end;
        kdc_status st = parse_double(flag, p, &end, &out[i], err);
        if (st)
            return kdc_fail(err, KDC_EINVAL, "%s: expected %d comma-separated numbers, got '%s'",
                            flag, n, s);
        if (i + 1 < n) {
            if (*end != ',')
                return kdc_fail(err, KDC_EINVAL,
                                "%s: expected %d comma-separated numbers, got '%s'", flag, n, s);
            p = end + 1;
        } else if (*end) {
            return kdc_fail(err, KDC_EINVAL, "%s: expected %d comma-separated numbers, got '%s'",
                            flag, n, s);
        }
    }
    return KDC_OK;
}

kdc_status kdc_cli_pair(const char *flag, const char *s, double lo, double hi, double out[2],
                        kdc_error *err)
{
    kdc_status st = kdc_cli_doubles(flag, s, 2, out, err);
    if (st)
        return st;
    if (out[0] < lo || out[1] > hi || out[0] > out[1])
        return kdc_fail(err, KDC_EINVAL, "%s: need %g <= a <= b <= %g, got '%s'", flag, lo, hi,
                        s);
    return KDC_OK;
}

kdc_status kdc_cli_int_list(const char *flag, const char *s, long lo, long hi, int max,
                            long *out, int *count, kdc_error *err)
{
    *count = 0;
    if (!s || !*s)
        return kdc_fail(err, KDC_EINVAL, "%s: empty list", flag);
    const char *p = s;
    while (1) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || (*end && *end != ','))
            return kdc_fail(err, KDC_EINVAL, "%s: '%s' is not a list of integers", flag, s);
        if (v < lo || v > hi)
            return kdc_fail(err, KDC_EINVAL, "%s: %ld is outside %ld..%ld", flag, v, lo, hi);
        if (*count >= max)
            return kdc_fail(err, KDC_EINVAL, "%s: more than %d values", flag, max);
        if (*count > 0 && v <= out[*count - 1])
            return kdc_fail(err, KDC_EINVAL, "%s: values must increase ('%s')", flag, s);
        out[(*count)++] = v;
        if (!*end)
            break;
        p = end + 1;
    }
    return KDC_OK;
}

kdc_status kdc_cli_shard(const char *flag, const char *s, int *index, int *count,
                         kdc_error *err)
{
    char *end;
    errno = 0;
    long i = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || *end != '/')
        return kdc_fail(err, KDC_EINVAL, "%s: expected i/n, got '%s'", flag, s ? s : "");
    const char *q = end + 1;
    long n = strtol(q, &end, 10);
    if (errno || end == q || *end || n < 1 || n > 65536 || i < 0 || i >= n)
        return kdc_fail(err, KDC_EINVAL, "%s: expected i/n with 0 <= i < n, got '%s'", flag, s);
    *index = (int)i;
    *count = (int)n;
    return KDC_OK;
}

kdc_status kdc_cli_view_flag(const char *flag, const char *arg, const kdc_cli_view_fields *f,
                             kdc_error *err)
{
    long v;
    kdc_status st;
    if (!strcmp(flag, "pad") || !strcmp(flag, "image-size") || !strcmp(flag, "resize-size")) {
        int is_pad = !strcmp(flag, "pad"), is_image = !strcmp(flag, "image-size");
        const char *name = is_pad ? "--pad" : is_image ? "--image-size" : "--resize-size";
        if ((st = kdc_cli_int(name, arg, is_pad ? 0 : 8, is_pad ? 4096 : is_image ? 4096 : 8192,
                              &v, err)))
            return st;
        *(is_pad ? f->pad : is_image ? f->image_size : f->resize_size) = (int)v;
        return KDC_OK;
    }
    if (!strcmp(flag, "scale"))
        return kdc_cli_pair("--scale", arg, 1e-6, 1, f->scale, err);
    if (!strcmp(flag, "ratio"))
        return kdc_cli_pair("--ratio", arg, 1e-3, 1e3, f->ratio, err);
    if (!strcmp(flag, "mean"))
        return kdc_cli_doubles("--mean", arg, 3, f->mean, err);
    if (!strcmp(flag, "std")) {
        if ((st = kdc_cli_doubles("--std", arg, 3, f->std, err)))
            return st;
        for (int i = 0; i < 3; i++)
            if (!(f->std[i] > 0))
                return kdc_fail(err, KDC_EINVAL, "--std: values must be positive");
        return KDC_OK;
    }
    return kdc_fail(err, KDC_EINVAL, "--%s is not a view flag", flag);
}
