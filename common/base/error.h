/* error.h - status codes and error messages shared by every kdcache library.
 *
 * Library functions never print and never exit: they return a kdc_status and,
 * when they fail, fill a kdc_error with one line that names the input that was
 * wrong. Only the command-line mains print it. */
#ifndef KDC_ERROR_H
#define KDC_ERROR_H

#include <stddef.h>

typedef enum kdc_status {
    KDC_OK = 0,
    KDC_EINVAL = 1,       /* bad argument or bad option value */
    KDC_ENOMEM = 2,       /* allocation failed or a size overflowed */
    KDC_EIO = 3,          /* open/read/write/rename failed */
    KDC_EFORMAT = 4,      /* a file is malformed, truncated or hostile */
    KDC_EMISMATCH = 5,    /* two things that must agree do not (shapes, fingerprints) */
    KDC_EUNSUPPORTED = 6, /* valid but not handled (e.g. an unknown version) */
    KDC_EDEVICE = 7,      /* GPU runtime or library failure, or no GPU */
    KDC_EIMAGE = 8        /* an image could not be decoded */
} kdc_status;

/* One line, sized so that a path plus a reason always fits. */
#define KDC_ERROR_MSG_MAX 1024

typedef struct kdc_error {
    kdc_status code;
    char msg[KDC_ERROR_MSG_MAX];
} kdc_error;

/* Fills err (may be NULL) with code and a printf-style message; returns code so
 * that callers can write `return kdc_fail(err, KDC_EINVAL, "...", ...);`. */
kdc_status kdc_fail(kdc_error *err, kdc_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in err with more context ("reading x.h5: ").
 * Keeps the code. Returns err->code. */
kdc_status kdc_error_prefix(kdc_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void kdc_error_clear(kdc_error *err);

const char *kdc_status_name(kdc_status code);

/* size_t arithmetic that reports overflow instead of wrapping: sizes that come
 * from files pass through these before any allocation. Return 0 on overflow. */
int kdc_size_mul(size_t a, size_t b, size_t *out);
int kdc_size_add(size_t a, size_t b, size_t *out);

#endif
