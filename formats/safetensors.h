/* safetensors.h - reading and writing the safetensors file format.
 *
 * Format (huggingface/safetensors): an 8-byte little-endian header length N,
 * N bytes of JSON mapping tensor names to {"dtype", "shape", "data_offsets":
 * [begin, end]} (offsets relative to the data section that follows the
 * header) plus an optional "__metadata__" object of strings, then the raw
 * little-endian tensor bytes.
 *
 * The reader validates the whole header on open (sizes, offsets against the
 * file size and against dtype x shape, overlaps, JSON) and rejects a
 * malformed or hostile file with one line naming the problem; reading a
 * tensor converts F32 / F16 / BF16 / F64 to float32 and I64 / I32 to int64.
 * The writer writes F32 and I64 tensors to "<path>.partial" and renames it.
 * What it is not: it knows nothing of models; formats/checkpoint.c maps
 * files to parameter tables. */
#ifndef KDC_SAFETENSORS_H
#define KDC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/base/tensor.h"

/* The reference implementation refuses headers above 100 MB; so do we (a
 * state_dict of thousands of tensors needs well under 1 MB). */
#define ST_MAX_HEADER_BYTES ((uint64_t)100 << 20)
/* More dimensions than any real tensor; bounds the parse. */
#define ST_MAX_DIMS 8

typedef enum st_dtype {
    ST_BOOL, ST_U8, ST_I8, ST_F8_E4M3, ST_F8_E5M2, ST_I16, ST_U16, ST_F16, ST_BF16,
    ST_I32, ST_U32, ST_F32, ST_F64, ST_I64, ST_U64, ST_DTYPE_COUNT
} st_dtype;

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end; /* byte range within the data section */
} st_tensor;

typedef struct st_file st_file;

const char *st_dtype_name(st_dtype dt);
size_t st_dtype_size(st_dtype dt);
size_t st_tensor_numel(const st_tensor *t);

/* Opens and validates path. On failure *out is NULL and err says what is
 * wrong, e.g. "x.safetensors: tensor 'fc.bias': data_offsets [0, 12] hold 12
 * bytes but F32 [10] needs 40". */
kdc_status st_open(const char *path, st_file **out, kdc_error *err);
void st_close(st_file *f);

const char *st_path(const st_file *f);
int st_count(const st_file *f);
/* Tensors in the header's order; NULL when i is out of range. */
const st_tensor *st_get(const st_file *f, int i);
const st_tensor *st_find(const st_file *f, const char *name);
/* A "__metadata__" value, or NULL. */
const char *st_metadata(const st_file *f, const char *key);

/* Reads tensor t converted to float32 into dst, which holds n = numel floats
 * (F32, F16, BF16, F64 sources; other dtypes give KDC_EUNSUPPORTED). */
kdc_status st_read_f32(st_file *f, const st_tensor *t, float *dst, size_t n, kdc_error *err);
/* Reads an I64 or I32 tensor as int64. */
kdc_status st_read_i64(st_file *f, const st_tensor *t, int64_t *dst, size_t n, kdc_error *err);

/* One tensor to write: KDC_F32 or KDC_I64, host memory. */
typedef struct st_item {
    const char *name;
    kdc_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data; /* NULL: ask fetch (below) for the bytes */
} st_item;

/* Fills dst with the bytes of item i (e.g. copied from a device). */
typedef kdc_status (*st_fetch_fn)(void *ctx, int i, void *dst, size_t bytes, kdc_error *err);

/* Writes items in order to "<path>.partial", then renames it to path.
 * meta: n_meta key/value string pairs for "__metadata__" (may be 0).
 * fetch/ctx supply the bytes of items whose data is NULL. */
kdc_status st_write(const char *path, const st_item *items, int count,
                    const char *const (*meta)[2], int n_meta, st_fetch_fn fetch, void *ctx,
                    kdc_error *err);

#endif
