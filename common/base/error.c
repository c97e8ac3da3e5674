/* error.c - filling and prefixing kdc_error messages. */
#include "common/base/error.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

kdc_status kdc_fail(kdc_error *err, kdc_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

kdc_status kdc_error_prefix(kdc_error *err, const char *fmt, ...)
{
    if (!err)
        return KDC_OK;
    char old[KDC_ERROR_MSG_MAX];
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof err->msg)
        memcpy(err->msg + n, old, strnlen(old, sizeof err->msg - (size_t)n - 1) + 1);
    err->msg[sizeof err->msg - 1] = '\0';
    return err->code;
}

void kdc_error_clear(kdc_error *err)
{
    if (err) {
        err->code = KDC_OK;
        err->msg[0] = '\0';
    }
}

const char *kdc_status_name(kdc_status code)
{
    switch (code) {
    case KDC_OK: return "ok";
    case KDC_EINVAL: return "invalid argument";
    case KDC_ENOMEM: return "out of memory";
    case KDC_EIO: return "i/o error";
    case KDC_EFORMAT: return "malformed file";
    case KDC_EMISMATCH: return "mismatch";
    case KDC_EUNSUPPORTED: return "unsupported";
    case KDC_EDEVICE: return "device error";
    case KDC_EIMAGE: return "image error";
    }
    return "unknown error";
}

int kdc_size_mul(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

int kdc_size_add(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return 0;
    *out = a + b;
    return 1;
}
