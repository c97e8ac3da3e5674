/* safetensors.c - safetensors reader (validating) and writer.
 *
 * The header is parsed with jansson. Every number that comes from the file is
 * range-checked before it is used in arithmetic, and sizes go through
 * kdc_size_mul / kdc_size_add, so a hostile file fails with a message instead
 * of an overflow, a huge allocation or a read past the end. Tensor data is
 * read with pread on demand, never mapped, so a file that shrinks under us
 * gives an I/O error, not a crash. Assumes a little-endian host (x86-64,
 * aarch64), as the format's byte order does. */
#include "formats/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/fileutil.h"
#include "common/base/half.h"

struct st_file {
    char *path;
    int fd;
    uint64_t data_start; /* 8 + header length */
    uint64_t data_size;
    st_tensor *tensors;
    int count;
    json_t *metadata; /* the "__metadata__" object, or NULL */
};

static const struct {
    const char *name;
    size_t size;
} DTYPES[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 1},       [ST_U8] = {"U8", 1},   [ST_I8] = {"I8", 1},
    [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
    [ST_I16] = {"I16", 2},         [ST_U16] = {"U16", 2}, [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2},       [ST_I32] = {"I32", 4}, [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},         [ST_F64] = {"F64", 8}, [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},
};

/* Reads are done in pieces of this many bytes when converting. */
#define CONVERT_CHUNK ((size_t)1 << 20)

const char *st_dtype_name(st_dtype dt)
{
    return (unsigned)dt < ST_DTYPE_COUNT ? DTYPES[dt].name : "?";
}

size_t st_dtype_size(st_dtype dt)
{
    return (unsigned)dt < ST_DTYPE_COUNT ? DTYPES[dt].size : 0;
}

size_t st_tensor_numel(const st_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i]; /* validated not to overflow on open */
    return n;
}

const char *st_path(const st_file *f) { return f->path; }
int st_count(const st_file *f) { return f->count; }

const st_tensor *st_get(const st_file *f, int i)
{
    return (i >= 0 && i < f->count) ? &f->tensors[i] : NULL;
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

const char *st_metadata(const st_file *f, const char *key)
{
    if (!f->metadata)
        return NULL;
    return json_string_value(json_object_get(f->metadata, key));
}

void st_close(st_file *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    for (int i = 0; i < f->count; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    json_decref(f->metadata);
    free(f->path);
    free(f);
}

/* Full pread of `len` bytes at `off` (pread may return less). */
static kdc_status read_at(const st_file *f, void *dst, size_t len, uint64_t off, kdc_error *err)
{
    char *p = dst;
    while (len) {
        ssize_t got = pread(f->fd, p, len, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return kdc_fail(err, KDC_EIO, "%s: read failed at byte %llu: %s", f->path,
                            (unsigned long long)off, strerror(errno));
        if (got == 0)
            return kdc_fail(err, KDC_EFORMAT, "%s: truncated at byte %llu", f->path,
                            (unsigned long long)off);
        p += got;
        len -= (size_t)got;
        off += (uint64_t)got;
    }
    return KDC_OK;
}

static int parse_dtype(const char *s, st_dtype *out)
{
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(s, DTYPES[i].name) == 0) {
            *out = (st_dtype)i;
            return 1;
        }
    return 0;
}

/* Validates one header entry into t. */
static kdc_status parse_entry(st_file *f, const char *name, json_t *v, st_tensor *t,
                              kdc_error *err)
{
    const char *p = f->path;
    if (!json_is_object(v))
        return kdc_fail(err, KDC_EFORMAT, "%s: tensor '%s': header entry is not an object", p,
                        name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo))
        return kdc_fail(err, KDC_EFORMAT,
                        "%s: tensor '%s': needs string \"dtype\", array \"shape\" and array "
                        "\"data_offsets\"",
                        p, name);
    if (!parse_dtype(json_string_value(jd), &t->dtype))
        return kdc_fail(err, KDC_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", p, name,
                        json_string_value(jd));
    size_t ndim = json_array_size(js);
    if (ndim > ST_MAX_DIMS)
        return kdc_fail(err, KDC_EFORMAT, "%s: tensor '%s': %zu dimensions (at most %d)", p,
                        name, ndim, ST_MAX_DIMS);
    t->ndim = (int)ndim;
    size_t bytes = st_dtype_size(t->dtype);
    for (size_t i = 0; i < ndim; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return kdc_fail(err, KDC_EFORMAT,
                            "%s: tensor '%s': shape entry %zu is not a non-negative integer", p,
                            name, i);
        t->shape[i] = (int64_t)json_integer_value(d);
        if (!kdc_size_mul(bytes, (size_t)t->shape[i], &bytes))
            return kdc_fail(err, KDC_EFORMAT, "%s: tensor '%s': absurd shape (size overflows)",
                            p, name);
    }
    json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
    if (json_array_size(jo) != 2 || !json_is_integer(jb) || !json_is_integer(je) ||
        json_integer_value(jb) < 0 || json_integer_value(je) < json_integer_value(jb))
        return kdc_fail(err, KDC_EFORMAT,
                        "%s: tensor '%s': data_offsets must be [begin, end] with 0 <= begin <= "
                        "end",
                        p, name);
    t->begin = (uint64_t)json_integer_value(jb);
    t->end = (uint64_t)json_integer_value(je);
    char shape[160];
    kdc_shape_str(t->ndim, t->shape, shape, sizeof shape);
    if (t->end - t->begin != (uint64_t)bytes)
        return kdc_fail(err, KDC_EFORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but %s %s "
                        "needs %zu",
                        p, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                        (unsigned long long)(t->end - t->begin), st_dtype_name(t->dtype), shape,
                        bytes);
    if (t->end > f->data_size)
        return kdc_fail(err, KDC_EFORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the "
                        "data (%llu bytes; file truncated?)",
                        p, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                        (unsigned long long)f->data_size);
    t->name = strdup(name);
    if (!t->name)
        return kdc_fail(err, KDC_ENOMEM, "%s: out of memory", p);
    return KDC_OK;
}

static int by_begin(const void *a, const void *b)
{
    const st_tensor *x = *(st_tensor *const *)a, *y = *(st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* No two tensors may share bytes (empty tensors share nothing). */
static kdc_status check_overlaps(st_file *f, kdc_error *err)
{
    if (f->count < 2)
        return KDC_OK;
    st_tensor **order = malloc((size_t)f->count * sizeof *order);
    if (!order)
        return kdc_fail(err, KDC_ENOMEM, "%s: out of memory", f->path);
    for (int i = 0; i < f->count; i++)
        order[i] = &f->tensors[i];
    qsort(order, (size_t)f->count, sizeof *order, by_begin);
    kdc_status st = KDC_OK;
    const st_tensor *prev = NULL;
    for (int i = 0; i < f->count; i++) {
        const st_tensor *t = order[i];
        if (t->begin == t->end)
            continue;
        if (prev && t->begin < prev->end) {
            st = kdc_fail(err, KDC_EFORMAT,
                          "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap", f->path,
                          prev->name, (unsigned long long)prev->begin,
                          (unsigned long long)prev->end, t->name, (unsigned long long)t->begin,
                          (unsigned long long)t->end);
            break;
        }
        prev = t;
    }
    free(order);
    return st;
}

static kdc_status parse_header(st_file *f, const char *text, size_t len, kdc_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return kdc_fail(err, KDC_EFORMAT, "%s: header is not valid JSON (line %d column %d: %s)",
                        f->path, jerr.line, jerr.column, jerr.text);
    kdc_status st = KDC_OK;
    if (!json_is_object(root)) {
        st = kdc_fail(err, KDC_EFORMAT, "%s: header is not a JSON object", f->path);
        goto done;
    }
    size_t n = json_object_size(root);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) {
        st = kdc_fail(err, KDC_ENOMEM, "%s: out of memory for %zu header entries", f->path, n);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "__metadata__") == 0) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(v)) {
                st = kdc_fail(err, KDC_EFORMAT, "%s: __metadata__ is not an object", f->path);
                goto done;
            }
            json_object_foreach(v, mk, mv) if (!json_is_string(mv))
            {
                st = kdc_fail(err, KDC_EFORMAT, "%s: __metadata__ value '%s' is not a string",
                              f->path, mk);
                goto done;
            }
            f->metadata = json_incref(v);
            continue;
        }
        if ((st = parse_entry(f, key, v, &f->tensors[f->count], err)))
            goto done;
        f->count++;
    }
    st = check_overlaps(f, err);
done:
    json_decref(root);
    return st;
}

kdc_status st_open(const char *path, st_file **out, kdc_error *err)
{
    *out = NULL;
    st_file *f = calloc(1, sizeof *f);
    if (!f)
        return kdc_fail(err, KDC_ENOMEM, "%s: out of memory", path);
    f->fd = -1;
    f->path = strdup(path);
    char *text = NULL;
    kdc_status st = KDC_OK;
    if (!f->path) {
        st = kdc_fail(err, KDC_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (f->fd < 0 || fstat(f->fd, &sb) != 0) {
        st = kdc_fail(err, KDC_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = kdc_fail(err, KDC_EIO, "%s: not a regular file", path);
        goto fail;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        st = kdc_fail(err, KDC_EFORMAT,
                      "%s: truncated: %llu bytes, shorter than the 8-byte header length", path,
                      (unsigned long long)size);
        goto fail;
    }
    unsigned char lenbuf[8];
    if ((st = read_at(f, lenbuf, 8, 0, err)))
        goto fail;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | lenbuf[i];
    if (hlen > ST_MAX_HEADER_BYTES) {
        st = kdc_fail(err, KDC_EFORMAT, "%s: absurd header length %llu (limit %llu bytes)", path,
                      (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER_BYTES);
        goto fail;
    }
    if (hlen > size - 8) {
        st = kdc_fail(err, KDC_EFORMAT,
                      "%s: header length %llu runs past the end of the file (%llu bytes)", path,
                      (unsigned long long)hlen, (unsigned long long)size);
        goto fail;
    }
    if (hlen < 2) {
        st = kdc_fail(err, KDC_EFORMAT, "%s: header of %llu bytes cannot hold a JSON object",
                      path, (unsigned long long)hlen);
        goto fail;
    }
    f->data_start = 8 + hlen;
    f->data_size = size - f->data_start;
    text = malloc((size_t)hlen);
    if (!text) {
        st = kdc_fail(err, KDC_ENOMEM, "%s: out of memory for a %llu-byte header", path,
                      (unsigned long long)hlen);
        goto fail;
    }
    if ((st = read_at(f, text, (size_t)hlen, 8, err)) ||
        (st = parse_header(f, text, (size_t)hlen, err)))
        goto fail;
    free(text);
    *out = f;
    return KDC_OK;
fail:
    free(text);
    st_close(f);
    return st;
}

static kdc_status check_read(const st_file *f, const st_tensor *t, size_t n, kdc_error *err)
{
    if (n != st_tensor_numel(t))
        return kdc_fail(err, KDC_EINVAL, "%s: tensor '%s' has %zu elements, caller expects %zu",
                        f->path, t->name, st_tensor_numel(t), n);
    return KDC_OK;
}

kdc_status st_read_f32(st_file *f, const st_tensor *t, float *dst, size_t n, kdc_error *err)
{
    kdc_status st = check_read(f, t, n, err);
    if (st)
        return st;
    uint64_t off = f->data_start + t->begin;
    if (t->dtype == ST_F32)
        return read_at(f, dst, n * 4, off, err);
    if (t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64)
        return kdc_fail(err, KDC_EUNSUPPORTED,
                        "%s: tensor '%s' is %s; floating-point tensors must be F32, F16, BF16 or "
                        "F64",
                        f->path, t->name, st_dtype_name(t->dtype));
    size_t es = st_dtype_size(t->dtype);
    unsigned char *buf = malloc(CONVERT_CHUNK);
    if (!buf)
        return kdc_fail(err, KDC_ENOMEM, "%s: out of memory", f->path);
    size_t per = CONVERT_CHUNK / es;
    for (size_t i = 0; i < n && !st; i += per) {
        size_t m = n - i < per ? n - i : per;
        if ((st = read_at(f, buf, m * es, off + (uint64_t)(i * es), err)))
            break;
        for (size_t j = 0; j < m; j++) {
            if (t->dtype == ST_F64) {
                double d;
                memcpy(&d, buf + 8 * j, 8);
                dst[i + j] = (float)d;
            } else {
                uint16_t h;
                memcpy(&h, buf + 2 * j, 2);
                dst[i + j] = t->dtype == ST_F16 ? kdc_f16_to_f32(h) : kdc_bf16_to_f32(h);
            }
        }
    }
    free(buf);
    return st;
}

kdc_status st_read_i64(st_file *f, const st_tensor *t, int64_t *dst, size_t n, kdc_error *err)
{
    kdc_status st = check_read(f, t, n, err);
    if (st)
        return st;
    uint64_t off = f->data_start + t->begin;
    if (t->dtype == ST_I64)
        return read_at(f, dst, n * 8, off, err);
    if (t->dtype != ST_I32)
        return kdc_fail(err, KDC_EUNSUPPORTED, "%s: tensor '%s' is %s; expected I64 or I32",
                        f->path, t->name, st_dtype_name(t->dtype));
    for (size_t i = 0; i < n && !st; i++) {
        int32_t v;
        st = read_at(f, &v, 4, off + 4 * (uint64_t)i, err);
        dst[i] = v;
    }
    return st;
}

/* ------------------------------------------------------------------ writer */

static kdc_status write_all(int fd, const void *p, size_t len, const char *path, kdc_error *err)
{
    const char *c = p;
    while (len) {
        ssize_t w = write(fd, c, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return kdc_fail(err, KDC_EIO, "%s: write failed: %s", path, strerror(errno));
        c += w;
        len -= (size_t)w;
    }
    return KDC_OK;
}

/* Builds the JSON header; sizes[i] receives item i's byte count. */
static kdc_status build_header(const char *path, const st_item *items, int count,
                               const char *const (*meta)[2], int n_meta, size_t *sizes,
                               char **out, kdc_error *err)
{
    *out = NULL;
    json_t *root = json_object();
    if (!root)
        return kdc_fail(err, KDC_ENOMEM, "%s: out of memory", path);
    kdc_status st = KDC_OK;
    if (n_meta > 0) {
        /* safetensors' __metadata__ is a map of strings to strings (readers such as
         * safetensors.safe_open refuse anything else): json_string refuses text
         * that is not UTF-8, and each pair is checked. */
        json_t *m = json_object();
        for (int i = 0; m && i < n_meta; i++)
            if (!meta[i][0] || !meta[i][1] ||
                json_object_set_new(m, meta[i][0], json_string(meta[i][1]))) {
                json_decref(m);
                st = kdc_fail(err, KDC_EINVAL, "%s: metadata '%s' is not a UTF-8 string pair",
                              path, meta[i][0] ? meta[i][0] : "(null)");
                goto done;
            }
        if (!m || json_object_set_new(root, "__metadata__", m)) {
            st = kdc_fail(err, KDC_ENOMEM, "%s: cannot build metadata", path);
            goto done;
        }
    }
    uint64_t off = 0;
    for (int i = 0; i < count; i++) {
        const st_item *it = &items[i];
        if (it->dtype != KDC_F32 && it->dtype != KDC_I64) {
            st = kdc_fail(err, KDC_EINVAL, "%s: tensor '%s': only float32 and int64 are written",
                          path, it->name);
            goto done;
        }
        if (it->ndim < 0 || it->ndim > ST_MAX_DIMS || json_object_get(root, it->name)) {
            st = kdc_fail(err, KDC_EINVAL, "%s: tensor '%s': bad rank or duplicate name", path,
                          it->name);
            goto done;
        }
        size_t bytes = kdc_dtype_size(it->dtype);
        json_t *shape = json_array();
        for (int d = 0; shape && d < it->ndim; d++) {
            json_array_append_new(shape, json_integer(it->shape[d]));
            if (it->shape[d] < 0 || !kdc_size_mul(bytes, (size_t)it->shape[d], &bytes)) {
                json_decref(shape);
                st = kdc_fail(err, KDC_EINVAL, "%s: tensor '%s': bad shape", path, it->name);
                goto done;
            }
        }
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype",
                              it->dtype == KDC_F32 ? "F32" : "I64", "shape", shape,
                              "data_offsets", (json_int_t)off, (json_int_t)(off + bytes));
        if (!e || json_object_set_new(root, it->name, e)) {
            st = kdc_fail(err, KDC_ENOMEM, "%s: cannot build the header", path);
            goto done;
        }
        sizes[i] = bytes;
        off += bytes;
    }
    *out = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (!*out)
        st = kdc_fail(err, KDC_ENOMEM, "%s: cannot serialise the header", path);
done:
    json_decref(root);
    return st;
}

kdc_status st_write(const char *path, const st_item *items, int count,
                    const char *const (*meta)[2], int n_meta, st_fetch_fn fetch, void *ctx,
                    kdc_error *err)
{
    char tmp[4096];
    kdc_status st = kdc_partial_name(path, tmp, sizeof tmp, err);
    if (st)
        return st;
    size_t *sizes = calloc((size_t)count + 1, sizeof *sizes);
    char *header = NULL;
    void *buf = NULL;
    size_t buf_cap = 0;
    int fd = -1;
    if (!sizes) {
        st = kdc_fail(err, KDC_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((st = build_header(path, items, count, meta, n_meta, sizes, &header, err)))
        goto done;
    /* pad the header with spaces so the data starts 8-byte aligned, as the
     * reference writer does */
    size_t hlen = strlen(header), padded = (hlen + 7) & ~(size_t)7;
    char *h2 = realloc(header, padded + 1);
    if (!h2) {
        st = kdc_fail(err, KDC_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    header = h2;
    memset(header + hlen, ' ', padded - hlen);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = kdc_fail(err, KDC_EIO, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++)
        lenbuf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    if ((st = write_all(fd, lenbuf, 8, tmp, err)) || (st = write_all(fd, header, padded, tmp, err)))
        goto done;
    for (int i = 0; i < count; i++) {
        const void *src = items[i].data;
        if (!src) {
            if (!fetch) {
                st = kdc_fail(err, KDC_EINVAL, "%s: tensor '%s' has no data", path,
                              items[i].name);
                goto done;
            }
            if (sizes[i] > buf_cap) {
                free(buf);
                buf_cap = 0;
                buf = malloc(sizes[i]);
                if (!buf) {
                    st = kdc_fail(err, KDC_ENOMEM, "%s: out of memory", path);
                    goto done;
                }
                buf_cap = sizes[i];
            }
            if ((st = fetch(ctx, i, buf, sizes[i], err)))
                goto done;
            src = buf;
        }
        if ((st = write_all(fd, src, sizes[i], tmp, err)))
            goto done;
    }
    if (close(fd) != 0) {
        fd = -1;
        st = kdc_fail(err, KDC_EIO, "%s: close failed: %s", tmp, strerror(errno));
        goto done;
    }
    fd = -1;
    st = kdc_commit_file(tmp, path, err);
done:
    if (fd >= 0)
        close(fd);
    if (st)
        unlink(tmp);
    free(buf);
    free(header);
    free(sizes);
    return st;
}
