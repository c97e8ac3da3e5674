/* cache_setup.c - cache header, image table and view parameters from the options. */
#include "precompute/cache_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/rng.h"

/* The row-order stream: (seed, ROW_ORDER_TAG, ROW_ORDER_VIEW). Views use
 * (seed, image index, view index < 4096), so view index UINT32_MAX keeps the
 * two apart for every image. */
#define ROW_ORDER_TAG 0x524f574f52444552ull /* "ROWORDER" */
#define ROW_ORDER_VIEW 0xffffffffu

kdc_status kd_precompute_view_params(const kd_precompute_options *o, img_view_params *vp,
                                     kdc_error *err)
{
    img_view_params_default(vp);
    kdc_status st = img_view_policy_parse(o->view_policy, &vp->policy, err);
    if (st)
        return st;
    vp->image_size = o->image_size;
    vp->resize_size = o->resize_size;
    memcpy(vp->scale, o->scale, sizeof vp->scale);
    memcpy(vp->ratio, o->ratio, sizeof vp->ratio);
    vp->pad = o->pad;
    vp->seed = (uint64_t)o->seed;
    return img_view_params_check(vp, err);
}

void kd_precompute_norm(const kd_precompute_options *o, img_norm *n)
{
    for (int c = 0; c < 3; c++) {
        n->mean[c] = (float)o->mean[c];
        n->std[c] = (float)o->std[c];
    }
}

/* Uniform in [0, bound] without modulo bias: 64-bit draws, rejection of the
 * incomplete top interval (integers only, so the same on every machine). */
static uint64_t uniform_upto(kdc_philox_stream *r, uint64_t bound)
{
    uint64_t span = bound + 1;
    uint64_t limit = UINT64_MAX - UINT64_MAX % span; /* draws >= limit are rejected */
    for (;;) {
        uint64_t x = (uint64_t)kdc_philox_u32(r) << 32;
        x |= kdc_philox_u32(r);
        if (x < limit)
            return x % span;
    }
}

void kd_precompute_row_order(const kd_precompute_options *o, size_t n, int64_t *perm)
{
    for (size_t i = 0; i < n; i++)
        perm[i] = (int64_t)i;
    if (o->order_dataset || n < 2)
        return;
    kdc_philox_stream r;
    kdc_philox_init(&r, (uint64_t)o->seed, ROW_ORDER_TAG, ROW_ORDER_VIEW);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)uniform_upto(&r, i);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

kdc_status kd_precompute_image_table(const img_dataset *ds, const int64_t *perm,
                                     cache_image_table *t, kdc_error *err)
{
    if (!ds->checksummed)
        return kdc_fail(err, KDC_EINVAL, "dataset not checksummed");
    if (ds->count == 0)
        return kdc_fail(err, KDC_EINVAL, "%s: no images (.jpg/.jpeg) found", ds->root);
    kdc_status st = cache_image_table_alloc(t, (int64_t)ds->count, err);
    if (st)
        return st;
    for (size_t i = 0; i < ds->count; i++) {
        const img_entry *e = &ds->items[perm ? (size_t)perm[i] : i];
        t->path[i] = e->path;
        t->label[i] = e->label;
        t->size[i] = e->size;
        t->crc32[i] = e->crc32;
    }
    return KDC_OK;
}

void kd_precompute_image_table_free(cache_image_table *t)
{
    /* The paths belong to the dataset. */
    if (t->path)
        memset(t->path, 0, (size_t)t->count * sizeof *t->path);
    cache_image_table_free(t);
}

kdc_status kd_precompute_header(const kd_precompute_options *o, const char *arch,
                                const kd_teacher *teacher, const cache_image_table *t,
                                cache_header *h, kdc_error *err)
{
    memset(h, 0, sizeof *h);
    h->version = CACHE_VERSION;
    snprintf(h->teacher_arch, sizeof h->teacher_arch, "%s", arch);
    snprintf(h->teacher_weights_sha256, sizeof h->teacher_weights_sha256, "%s", teacher->sha256);
    h->num_images = t->count;
    h->views_per_image = o->views;
    h->num_classes = teacher->num_classes;
    h->feature_dim = o->no_features ? 0 : teacher->feature_dim;
    snprintf(h->view_policy, sizeof h->view_policy, "%s", o->view_policy);
    h->image_size = o->image_size;
    h->resize_size = o->resize_size;
    memcpy(h->mean, o->mean, sizeof h->mean);
    memcpy(h->std, o->std, sizeof h->std);
    memcpy(h->scale_range, o->scale, sizeof h->scale_range);
    memcpy(h->ratio_range, o->ratio, sizeof h->ratio_range);
    h->pad = o->pad;
    h->seed = (uint64_t)o->seed;
    switch (o->logits) {
    case KD_LOGITS_F32: h->logit_storage = CACHE_LOGITS_F32; break;
    case KD_LOGITS_F16: h->logit_storage = CACHE_LOGITS_F16; break;
    case KD_LOGITS_TOPK:
        h->logit_storage = CACHE_LOGITS_TOPK;
        h->topk = o->topk;
        if (o->topk > teacher->num_classes)
            return kdc_fail(err, KDC_EINVAL, "--logits topk:%d: the teacher has only %d classes",
                            o->topk, teacher->num_classes);
        break;
    }
    /* The float32 sums of a convolution depend on the GEMM widths, hence on the
     * batch size and the device, and on the arithmetic (--precision): all are
     * recorded so that a resume can insist on them (bit-identical results on
     * the CPU; on a GPU, no mixing of tf32 or fp16 chunks into an fp32 file). */
    snprintf(h->created_by, sizeof h->created_by, "%s batch=%d device=%s precision=%s order=%s",
             KD_PRECOMPUTE_CREATED_BY, o->batch, strncmp(o->device, "cuda", 4) ? "cpu" : "cuda",
             kdc_precision_name(o->precision), o->order_dataset ? "dataset" : "shuffled");
    h->shard_index = o->shard_index;
    h->shard_count = o->shard_count;
    if (o->chunk_images > 0) {
        h->chunk_images = o->chunk_images < t->count ? o->chunk_images : t->count;
    } else {
        int64_t c = cache_default_chunk_images(h);
        if (c >= KD_CHUNK_ALIGN)
            c -= c % KD_CHUNK_ALIGN;
        h->chunk_images = c;
    }
    if ((int64_t)o->shard_count > cache_num_chunks(h))
        return kdc_fail(err, KDC_EINVAL,
                        "--shard %d/%d: only %lld chunks of %lld images to share (use fewer "
                        "shards or a smaller --chunk-images)",
                        o->shard_index, o->shard_count, (long long)cache_num_chunks(h),
                        (long long)h->chunk_images);
    for (int64_t i = 0; i < t->count; i++)
        if ((int64_t)t->label[i] >= h->num_classes)
            return kdc_fail(err, KDC_EMISMATCH,
                            "%s has label %d but the teacher has %lld classes (a dataset with "
                            "more classes than the teacher?)",
                            t->path[i], t->label[i], (long long)h->num_classes);
    cache_fingerprint(t, h->dataset_fingerprint);
    kdc_status st = cache_header_validate(h, err);
    if (st)
        kdc_error_prefix(err, "cache settings: ");
    return st;
}

static int created_by_field(const char *s, const char *key, char *out, size_t len)
{
    const char *p = strstr(s, key);
    if (!p)
        return 0;
    p += strlen(key);
    size_t n = strcspn(p, " ");
    if (n >= len)
        n = len - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 1;
}

const char *kd_precompute_run_diff(const cache_header *file, const cache_header *run)
{
    /* {key, flag, value when the key is absent}: files written before
     * --precision existed were all fp32, before --order in dataset order. */
    static const char *const KEYS[][3] = {{" order=", "--order", "dataset"},
                                          {" batch=", "--batch", NULL},
                                          {" device=", "--device", NULL},
                                          {" precision=", "--precision", "fp32"}};
    for (size_t i = 0; i < sizeof KEYS / sizeof *KEYS; i++) {
        char a[64], b[64];
        int ha = created_by_field(file->created_by, KEYS[i][0], a, sizeof a);
        int hb = created_by_field(run->created_by, KEYS[i][0], b, sizeof b);
        if (!ha && KEYS[i][2] && !strncmp(file->created_by, KD_PRECOMPUTE_CREATED_BY,
                                          strlen(KD_PRECOMPUTE_CREATED_BY))) {
            snprintf(a, sizeof a, "%s", KEYS[i][2]);
            ha = 1;
        }
        if (ha && hb && strcmp(a, b))
            return KEYS[i][1];
    }
    return NULL;
}

const char *kd_precompute_attr_meaning(const char *attr)
{
    static const struct {
        const char *attr, *meaning;
    } M[] = {
        {"teacher_arch", "teacher architecture (--teacher)"},
        {"teacher_weights_sha256", "teacher weights (--weights file contents)"},
        {"num_images", "dataset (number of images)"},
        {"dataset_fingerprint", "dataset (paths, sizes or contents of the images)"},
        {"views_per_image", "--views"},
        {"num_classes", "teacher classes (--weights)"},
        {"feature_dim", "features (--no-features)"},
        {"view_policy", "--view-policy"},
        {"image_size", "--image-size"},
        {"resize_size", "--resize-size"},
        {"mean", "--mean"},
        {"std", "--std"},
        {"scale_range", "--scale"},
        {"ratio_range", "--ratio"},
        {"pad", "--pad"},
        {"seed", "--seed"},
        {"logit_storage", "--logits"},
        {"topk", "--logits topk:K"},
        {"chunk_images", "--chunk-images"},
        {"shard_count", "--shard"},
        {"shard_index", "--shard"},
    };
    for (size_t i = 0; i < sizeof M / sizeof *M; i++)
        if (!strcmp(M[i].attr, attr))
            return M[i].meaning;
    return attr;
}
