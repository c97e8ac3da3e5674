/* cache_schema.c - header checks, shard ranges, path rules and the dataset
 * fingerprint of the cache format (no file I/O here). */
#include "formats/cache_schema.h"

#include <math.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Chunk size target (v2): one view of the largest per-view dataset. v1 aimed
 * at 1 MiB over all views (tests/bench/bench_cache_read.c, docs/CACHE_FORMAT.md:
 * streaming is flat from there while random reads stay cheap); v2 chunks one
 * view at a time, so 256 KiB per view keeps a whole chunk near 1 MiB for the
 * usual V and lets a one-view-per-epoch trainer read 1/V of the bytes. */
#define CACHE_TARGET_VIEW_CHUNK_BYTES ((size_t)256 << 10)
#define CACHE_MAX_DEFAULT_CHUNK_IMAGES 4096

const char *cache_logit_storage_name(cache_logit_storage s)
{
    switch (s) {
    case CACHE_LOGITS_F32: return "float32";
    case CACHE_LOGITS_F16: return "float16";
    case CACHE_LOGITS_TOPK: return "topk";
    }
    return "?";
}

kdc_status cache_parse_logit_storage(const char *s, cache_logit_storage *out, int64_t *k,
                                     kdc_error *err)
{
    if (!strcmp(s, "float32")) {
        *out = CACHE_LOGITS_F32;
        *k = 0;
    } else if (!strcmp(s, "float16")) {
        *out = CACHE_LOGITS_F16;
        *k = 0;
    } else if (!strncmp(s, "topk:", 5)) {
        char *end;
        long long v = strtoll(s + 5, &end, 10);
        if (end == s + 5 || *end || v < 1)
            return kdc_fail(err, KDC_EINVAL, "logit storage '%s': K must be a positive integer",
                            s);
        *out = CACHE_LOGITS_TOPK;
        *k = v;
    } else if (!strcmp(s, "topk")) {
        *out = CACHE_LOGITS_TOPK;
    } else {
        return kdc_fail(err, KDC_EINVAL,
                        "logit storage '%s': expected float32, float16 or topk:K", s);
    }
    return KDC_OK;
}

static int str_ok(const char *s)
{
    return memchr(s, '\0', CACHE_STR_MAX) != NULL;
}

int64_t cache_num_chunks(const cache_header *h)
{
    if (h->chunk_images <= 0)
        return 0;
    return (h->num_images + h->chunk_images - 1) / h->chunk_images;
}

void cache_shard_chunks(const cache_header *h, int64_t shard_index, int64_t shard_count,
                        int64_t *first, int64_t *end)
{
    int64_t nch = cache_num_chunks(h);
    /* floor(i * nch / n): ranges differ by at most one chunk. Products fit:
     * nch <= 2^31 and shard_count <= nch. */
    *first = shard_index * nch / shard_count;
    *end = (shard_index + 1) * nch / shard_count;
}

size_t cache_topk_index_size(const cache_header *h)
{
    return h->num_classes <= CACHE_TOPK_U16_MAX_CLASSES ? 2 : 4;
}

/* Bytes per image of the largest per-view dataset and of all of them. */
static size_t row_bytes_max(const cache_header *h, size_t *total)
{
    size_t V = (size_t)h->views_per_image, C = (size_t)h->num_classes;
    size_t D = (size_t)h->feature_dim, K = (size_t)h->topk;
    size_t logits;
    if (h->logit_storage == CACHE_LOGITS_TOPK)
        logits = V * K * (cache_topk_index_size(h) > 2 ? 4 : 2);
    else
        logits = V * C * (h->logit_storage == CACHE_LOGITS_F32 ? 4 : 2);
    size_t feats = V * D * 2, box = V * 16;
    size_t m = logits > feats ? logits : feats;
    if (box > m)
        m = box;
    if (total)
        *total = logits + (h->logit_storage == CACHE_LOGITS_TOPK ? V * K * 2 : 0) + feats +
                 box + V + 4 + 4 + 1;
    return m;
}

size_t cache_bytes_per_image(const cache_header *h)
{
    size_t t;
    row_bytes_max(h, &t);
    return t;
}

int64_t cache_default_chunk_images(const cache_header *h)
{
    size_t V = h->views_per_image > 0 ? (size_t)h->views_per_image : 1;
    size_t m = row_bytes_max(h, NULL) / V; /* one view of one image */
    int64_t n = (int64_t)(CACHE_TARGET_VIEW_CHUNK_BYTES / (m ? m : 1));
    if (n < 1)
        n = 1;
    if (n > CACHE_MAX_DEFAULT_CHUNK_IMAGES)
        n = CACHE_MAX_DEFAULT_CHUNK_IMAGES;
    if (n > h->num_images)
        n = h->num_images;
    return n;
}

kdc_status cache_header_validate(const cache_header *h, kdc_error *err)
{
    if (h->version != CACHE_VERSION && h->version != CACHE_VERSION_V1)
        return kdc_fail(err, KDC_EUNSUPPORTED,
                        "kdcache_version %lld is not supported (this build reads %d and %d)",
                        (long long)h->version, CACHE_VERSION_V1, CACHE_VERSION);
    if (!str_ok(h->teacher_arch) || !str_ok(h->teacher_weights_sha256) ||
        !str_ok(h->view_policy) || !str_ok(h->dataset_fingerprint) || !str_ok(h->created_by))
        return kdc_fail(err, KDC_EFORMAT, "a string attribute is not terminated");
    size_t fl = strlen(h->dataset_fingerprint);
    int fp_hex = fl == 64 && strspn(h->dataset_fingerprint, "0123456789abcdef") == 64;
    /* v1 files carry the fingerprint from creation; v2 files only once complete. */
    int fp_may_be_empty = h->version == CACHE_VERSION && (!h->complete || h->shard_count != 1);
    if (!fp_hex && !(fl == 0 && fp_may_be_empty))
        return kdc_fail(err, KDC_EFORMAT, "dataset_fingerprint '%.70s' is not 64 hex digits",
                        h->dataset_fingerprint);
    if (h->num_images < 1 || h->num_images > CACHE_MAX_IMAGES)
        return kdc_fail(err, KDC_EFORMAT, "num_images %lld out of range [1, %lld]",
                        (long long)h->num_images, (long long)CACHE_MAX_IMAGES);
    if (h->views_per_image < 1 || h->views_per_image > CACHE_MAX_VIEWS)
        return kdc_fail(err, KDC_EFORMAT, "views_per_image %lld out of range [1, %d]",
                        (long long)h->views_per_image, CACHE_MAX_VIEWS);
    if (h->num_classes < 1 || h->num_classes > CACHE_MAX_CLASSES)
        return kdc_fail(err, KDC_EFORMAT, "num_classes %lld out of range [1, %lld]",
                        (long long)h->num_classes, (long long)CACHE_MAX_CLASSES);
    if (h->feature_dim < 0 || h->feature_dim > CACHE_MAX_FEATURES)
        return kdc_fail(err, KDC_EFORMAT, "feature_dim %lld out of range [0, %lld]",
                        (long long)h->feature_dim, (long long)CACHE_MAX_FEATURES);
    if (strcmp(h->view_policy, "center") && strcmp(h->view_policy, "rrc") &&
        strcmp(h->view_policy, "pad-crop"))
        return kdc_fail(err, KDC_EFORMAT, "view_policy '%s': expected center, rrc or pad-crop",
                        h->view_policy);
    if (h->image_size < 1 || h->image_size > 65536 || h->resize_size < 0 ||
        h->resize_size > 65536 || h->pad < 0 || h->pad > 65536)
        return kdc_fail(err, KDC_EFORMAT, "image_size/resize_size/pad out of range");
    for (int i = 0; i < 3; i++)
        if (!isfinite(h->mean[i]) || !isfinite(h->std[i]) || !(h->std[i] > 0))
            return kdc_fail(err, KDC_EFORMAT, "mean/std must be finite with std > 0");
    for (int i = 0; i < 2; i++)
        if (!isfinite(h->scale_range[i]) || !isfinite(h->ratio_range[i]))
            return kdc_fail(err, KDC_EFORMAT, "scale_range/ratio_range must be finite");
    switch (h->logit_storage) {
    case CACHE_LOGITS_F32:
    case CACHE_LOGITS_F16:
        if (h->topk != 0)
            return kdc_fail(err, KDC_EFORMAT, "topk is %lld but logit_storage is %s",
                            (long long)h->topk, cache_logit_storage_name(h->logit_storage));
        break;
    case CACHE_LOGITS_TOPK:
        if (h->topk < 1 || h->topk > h->num_classes)
            return kdc_fail(err, KDC_EFORMAT, "topk %lld out of range [1, num_classes=%lld]",
                            (long long)h->topk, (long long)h->num_classes);
        break;
    default:
        return kdc_fail(err, KDC_EFORMAT, "unknown logit storage %d", (int)h->logit_storage);
    }
    if (h->chunk_images < 1 || h->chunk_images > h->num_images)
        return kdc_fail(err, KDC_EFORMAT, "chunk_images %lld out of range [1, num_images=%lld]",
                        (long long)h->chunk_images, (long long)h->num_images);
    size_t m = row_bytes_max(h, NULL), chunk_bytes;
    if (!kdc_size_mul(m, (size_t)h->chunk_images, &chunk_bytes) ||
        chunk_bytes > CACHE_MAX_CHUNK_BYTES)
        return kdc_fail(err, KDC_EFORMAT, "a chunk of %lld images exceeds %zu bytes",
                        (long long)h->chunk_images, CACHE_MAX_CHUNK_BYTES);
    if (h->shard_count < 1 || h->shard_count > cache_num_chunks(h) || h->shard_index < 0 ||
        h->shard_index >= h->shard_count)
        return kdc_fail(err, KDC_EFORMAT, "shard %lld/%lld invalid for %lld chunks",
                        (long long)h->shard_index, (long long)h->shard_count,
                        (long long)cache_num_chunks(h));
    if (h->complete != 0 && h->complete != 1)
        return kdc_fail(err, KDC_EFORMAT, "complete must be 0 or 1");
    return KDC_OK;
}

const char *cache_header_diff(const cache_header *a, const cache_header *b, int ignore_shard)
{
#define DIFF_INT(f)                                                                           \
    if (a->f != b->f)                                                                         \
        return #f;
#define DIFF_STR(f)                                                                           \
    if (strncmp(a->f, b->f, CACHE_STR_MAX))                                                   \
        return #f;
#define DIFF_ARR(f, n)                                                                        \
    for (int i_ = 0; i_ < (n); i_++)                                                          \
        if (memcmp(&a->f[i_], &b->f[i_], sizeof a->f[i_]))                                    \
            return #f;
    DIFF_INT(version)
    DIFF_STR(teacher_arch)
    DIFF_STR(teacher_weights_sha256)
    DIFF_INT(num_images)
    DIFF_INT(views_per_image)
    DIFF_INT(num_classes)
    DIFF_INT(feature_dim)
    DIFF_STR(view_policy)
    DIFF_INT(image_size)
    DIFF_INT(resize_size)
    DIFF_ARR(mean, 3)
    DIFF_ARR(std, 3)
    DIFF_ARR(scale_range, 2)
    DIFF_ARR(ratio_range, 2)
    DIFF_INT(pad)
    DIFF_INT(seed)
    if (a->logit_storage != b->logit_storage)
        return "logit_storage";
    DIFF_INT(topk)
    /* v2 writes the fingerprint only with complete = 1: compare it when both
     * sides have one (the tables themselves are compared by the callers). */
    if (a->dataset_fingerprint[0] && b->dataset_fingerprint[0])
        DIFF_STR(dataset_fingerprint)
    DIFF_INT(chunk_images)
    DIFF_INT(shard_count)
    if (!ignore_shard)
        DIFF_INT(shard_index)
    return NULL;
#undef DIFF_INT
#undef DIFF_STR
#undef DIFF_ARR
}

kdc_status cache_check_path(const char *path, kdc_error *err)
{
    size_t n = strnlen(path, CACHE_MAX_PATH + 1);
    if (n == 0)
        return kdc_fail(err, KDC_EFORMAT, "empty image path");
    if (n > CACHE_MAX_PATH)
        return kdc_fail(err, KDC_EFORMAT, "image path longer than %d bytes", CACHE_MAX_PATH);
    if (path[0] == '/')
        return kdc_fail(err, KDC_EFORMAT, "image path '%s' is absolute", path);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c < 0x20 || c == 0x7f || c == '\\')
            return kdc_fail(err, KDC_EFORMAT, "image path '%.200s' has a control character or backslash",
                            path);
    }
    /* Components separated by '/': none may be "..". */
    const char *p = path;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return kdc_fail(err, KDC_EFORMAT, "image path '%.200s' contains '..'", path);
        if (!slash)
            break;
        p = slash + 1;
    }
    return KDC_OK;
}

void cache_fingerprint(const cache_image_table *t, char out[65])
{
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    for (int64_t i = 0; i < t->count; i++) {
        uint8_t rec[12];
        for (int b = 0; b < 8; b++)
            rec[b] = (uint8_t)(t->size[i] >> (8 * b));
        for (int b = 0; b < 4; b++)
            rec[8 + b] = (uint8_t)(t->crc32[i] >> (8 * b));
        const char *p = t->path[i] ? t->path[i] : "";
        sha256_update(&ctx, strlen(p) + 1, (const uint8_t *)p); /* with its NUL */
        sha256_update(&ctx, sizeof rec, rec);
    }
    uint8_t d[SHA256_DIGEST_SIZE];
    sha256_digest(&ctx, sizeof d, d);
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

kdc_status cache_image_table_alloc(cache_image_table *t, int64_t n, kdc_error *err)
{
    memset(t, 0, sizeof *t);
    if (n < 0 || n > CACHE_MAX_IMAGES)
        return kdc_fail(err, KDC_EINVAL, "image table of %lld entries", (long long)n);
    size_t m = n ? (size_t)n : 1;
    t->count = n;
    t->path = calloc(m, sizeof *t->path);
    t->label = calloc(m, sizeof *t->label);
    t->size = calloc(m, sizeof *t->size);
    t->crc32 = calloc(m, sizeof *t->crc32);
    t->height = calloc(m, sizeof *t->height);
    t->width = calloc(m, sizeof *t->width);
    t->skipped = calloc(m, 1);
    if (!t->path || !t->label || !t->size || !t->crc32 || !t->height || !t->width ||
        !t->skipped) {
        cache_image_table_free(t);
        return kdc_fail(err, KDC_ENOMEM, "image table of %lld entries", (long long)n);
    }
    return KDC_OK;
}

void cache_image_table_free(cache_image_table *t)
{
    if (t->path)
        for (int64_t i = 0; i < t->count; i++)
            free(t->path[i]);
    free(t->path);
    free(t->label);
    free(t->size);
    free(t->crc32);
    free(t->height);
    free(t->width);
    free(t->skipped);
    memset(t, 0, sizeof *t);
}

kdc_status cache_chunk_alloc(cache_chunk *c, const cache_header *h, kdc_error *err)
{
    memset(c, 0, sizeof *c);
    c->view = -1;
    size_t n = (size_t)h->chunk_images, V = (size_t)h->views_per_image;
    size_t C = (size_t)h->num_classes, D = (size_t)h->feature_dim, K = (size_t)h->topk;
    size_t nv, nvc, nvk, nvd;
    /* The header was validated: a chunk of the largest dataset is <= 1 GiB, so
     * these products cannot overflow; checked anyway because they size memory. */
    if (!kdc_size_mul(n, V, &nv) || !kdc_size_mul(nv, C, &nvc) || !kdc_size_mul(nv, K, &nvk) ||
        !kdc_size_mul(nv, D, &nvd))
        return kdc_fail(err, KDC_ENOMEM, "chunk buffers overflow");
    c->capacity = (int64_t)n;
    c->size = calloc(n, sizeof *c->size);
    c->crc32 = calloc(n, sizeof *c->crc32);
    c->height = calloc(n, sizeof *c->height);
    c->width = calloc(n, sizeof *c->width);
    c->skipped = calloc(n, 1);
    c->box = calloc(nv * 4, sizeof *c->box);
    c->flip = calloc(nv, 1);
    int ok = c->size && c->crc32 && c->height && c->width && c->skipped && c->box && c->flip;
    if (h->logit_storage == CACHE_LOGITS_TOPK) {
        c->topk_index = calloc(nvk, cache_topk_index_size(h));
        c->topk_value = calloc(nvk, 2);
        ok = ok && c->topk_index && c->topk_value;
    } else {
        c->logits = calloc(nvc, h->logit_storage == CACHE_LOGITS_F32 ? 4 : 2);
        ok = ok && c->logits;
    }
    if (D) {
        c->features = calloc(nvd, 2);
        ok = ok && c->features;
    }
    if (!ok) {
        cache_chunk_free(c);
        return kdc_fail(err, KDC_ENOMEM, "chunk buffers for %zu images", n);
    }
    return KDC_OK;
}

void cache_chunk_free(cache_chunk *c)
{
    free(c->size);
    free(c->crc32);
    free(c->height);
    free(c->width);
    free(c->skipped);
    free(c->box);
    free(c->flip);
    free(c->logits);
    free(c->topk_index);
    free(c->topk_value);
    free(c->features);
    memset(c, 0, sizeof *c);
}
