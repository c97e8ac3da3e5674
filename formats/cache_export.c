/* cache_export.c - streams a complete cache into .npy files, chunk by chunk. */
#include "formats/cache_export.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/cache_reader.h"

typedef struct npy_out {
    char name[64];
    char path[4096], tmp[4200];
    FILE *f;
} npy_out;

/* NPY format 1.0: magic, version, little-endian header length, then a
 * Python dict literal padded with spaces to a multiple of 64 bytes. */
static kdc_status npy_open(npy_out *o, const char *dir, const char *name, const char *descr,
                           int ndim, const int64_t *shape, kdc_error *err)
{
    snprintf(o->name, sizeof o->name, "%s", name);
    snprintf(o->path, sizeof o->path, "%s/%s", dir, name);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp", o->path);
    o->f = fopen(o->tmp, "wb");
    if (!o->f)
        return kdc_fail(err, KDC_EIO, "%s: %s", o->tmp, strerror(errno));
    if (!descr) /* a plain file (paths.txt, attributes.json) */
        return KDC_OK;
    char dict[256], shp[128] = "";
    size_t n = 0;
    for (int i = 0; i < ndim; i++)
        n += (size_t)snprintf(shp + n, sizeof shp - n, "%lld,%s", (long long)shape[i],
                              i + 1 < ndim ? " " : "");
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                       descr, shp);
    int total = 10 + len + 1;
    int padded = (total + 63) / 64 * 64;
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                              (unsigned char)((padded - 10) & 0xff),
                              (unsigned char)((padded - 10) >> 8)};
    fwrite(head, 1, 10, o->f);
    fwrite(dict, 1, (size_t)len, o->f);
    for (int i = total; i < padded; i++)
        fputc(' ', o->f);
    fputc('\n', o->f);
    return KDC_OK;
}

static kdc_status npy_close(npy_out *o, int ok, kdc_error *err)
{
    if (!o->f)
        return KDC_OK;
    int bad = ferror(o->f);
    bad |= fclose(o->f) != 0;
    o->f = NULL;
    if (!ok || bad) {
        remove(o->tmp);
        return ok ? kdc_fail(err, KDC_EIO, "%s: write failed", o->tmp) : KDC_OK;
    }
    if (rename(o->tmp, o->path) != 0)
        return kdc_fail(err, KDC_EIO, "renaming %s: %s", o->tmp, strerror(errno));
    return KDC_OK;
}

static kdc_status write_attributes(const cache_header *h, npy_out *o, kdc_error *err)
{
    json_t *j = json_object();
    json_object_set_new(j, "kdcache_version", json_integer(h->version));
    json_object_set_new(j, "teacher_arch", json_string(h->teacher_arch));
    json_object_set_new(j, "teacher_weights_sha256", json_string(h->teacher_weights_sha256));
    json_object_set_new(j, "num_images", json_integer(h->num_images));
    json_object_set_new(j, "views_per_image", json_integer(h->views_per_image));
    json_object_set_new(j, "num_classes", json_integer(h->num_classes));
    json_object_set_new(j, "feature_dim", json_integer(h->feature_dim));
    json_object_set_new(j, "view_policy", json_string(h->view_policy));
    json_object_set_new(j, "image_size", json_integer(h->image_size));
    json_object_set_new(j, "resize_size", json_integer(h->resize_size));
    json_object_set_new(j, "mean", json_pack("[f,f,f]", h->mean[0], h->mean[1], h->mean[2]));
    json_object_set_new(j, "std", json_pack("[f,f,f]", h->std[0], h->std[1], h->std[2]));
    json_object_set_new(j, "scale_range", json_pack("[f,f]", h->scale_range[0], h->scale_range[1]));
    json_object_set_new(j, "ratio_range", json_pack("[f,f]", h->ratio_range[0], h->ratio_range[1]));
    json_object_set_new(j, "pad", json_integer(h->pad));
    json_object_set_new(j, "seed", json_integer((json_int_t)h->seed));
    json_object_set_new(j, "logit_storage", json_string(cache_logit_storage_name(h->logit_storage)));
    json_object_set_new(j, "topk", json_integer(h->topk));
    json_object_set_new(j, "dataset_fingerprint", json_string(h->dataset_fingerprint));
    json_object_set_new(j, "created_by", json_string(h->created_by));
    json_object_set_new(j, "chunk_images", json_integer(h->chunk_images));
    int rc = json_dumpf(j, o->f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    fputc('\n', o->f);
    return rc == 0 ? KDC_OK : kdc_fail(err, KDC_EIO, "%s: write failed", o->tmp);
}

enum { O_PATHS, O_ATTR, O_LABEL, O_SIZE, O_CRC, O_HEIGHT, O_WIDTH, O_SKIPPED, O_BOX, O_FLIP,
       O_LOGITS, O_TOPK_INDEX, O_TOPK_VALUE, O_FEATURES, O_COUNT };

kdc_status cache_export_npy(const char *cache_path, const char *out_dir, kdc_error *err)
{
    /* The cache first: a file that does not open leaves no folder behind. */
    cache_reader *r;
    kdc_status st = cache_reader_open(cache_path, CACHE_OPEN_NO_CHUNK_CACHE, &r, err);
    if (st != KDC_OK)
        return st;
    int created = mkdir(out_dir, 0777) == 0;
    if (!created && errno != EEXIST) {
        st = kdc_fail(err, KDC_EIO, "%s: %s", out_dir, strerror(errno));
        cache_reader_close(r);
        return st;
    }
    const cache_header *h = cache_reader_header(r);
    const cache_image_table *t = cache_reader_images(r);
    int64_t N = h->num_images, V = h->views_per_image;
    int64_t s1[1] = {N}, s2[2] = {N, V}, s3[3] = {N, V, 4};
    npy_out o[O_COUNT];
    memset(o, 0, sizeof o);
    int topk = h->logit_storage == CACHE_LOGITS_TOPK;
    const char *idx_descr = cache_topk_index_size(h) == 2 ? "<u2" : "<i4";
#define OPEN(i, name, descr, nd, shape)                                                       \
    if (st == KDC_OK)                                                                         \
        st = npy_open(&o[i], out_dir, name, descr, nd, shape, err);
    OPEN(O_PATHS, "paths.txt", NULL, 0, NULL);
    OPEN(O_ATTR, "attributes.json", NULL, 0, NULL);
    OPEN(O_LABEL, "label.npy", "<i4", 1, s1);
    OPEN(O_SIZE, "size.npy", "<u8", 1, s1);
    OPEN(O_CRC, "crc32.npy", "<u4", 1, s1);
    OPEN(O_HEIGHT, "height.npy", "<i4", 1, s1);
    OPEN(O_WIDTH, "width.npy", "<i4", 1, s1);
    OPEN(O_SKIPPED, "skipped.npy", "|u1", 1, s1);
    OPEN(O_BOX, "box.npy", "<i4", 3, s3);
    OPEN(O_FLIP, "flip.npy", "|u1", 2, s2);
    if (topk) {
        s3[2] = h->topk;
        OPEN(O_TOPK_INDEX, "topk_index.npy", idx_descr, 3, s3);
        OPEN(O_TOPK_VALUE, "topk_value.npy", "<f2", 3, s3);
    } else {
        s3[2] = h->num_classes;
        OPEN(O_LOGITS, "logits.npy", h->logit_storage == CACHE_LOGITS_F32 ? "<f4" : "<f2", 3,
             s3);
    }
    if (h->feature_dim) {
        s3[2] = h->feature_dim;
        OPEN(O_FEATURES, "features.npy", "<f2", 3, s3);
    }
#undef OPEN
    if (st == KDC_OK) {
        for (int64_t i = 0; i < N; i++)
            fprintf(o[O_PATHS].f, "%s\n", t->path[i]);
        st = write_attributes(h, &o[O_ATTR], err);
        fwrite(t->label, 4, (size_t)N, o[O_LABEL].f);
        fwrite(t->size, 8, (size_t)N, o[O_SIZE].f);
        fwrite(t->crc32, 4, (size_t)N, o[O_CRC].f);
        fwrite(t->height, 4, (size_t)N, o[O_HEIGHT].f);
        fwrite(t->width, 4, (size_t)N, o[O_WIDTH].f);
        fwrite(t->skipped, 1, (size_t)N, o[O_SKIPPED].f);
    }
    /* This host is little-endian (x86-64, aarch64), as the npy descrs say. */
    cache_chunk c;
    memset(&c, 0, sizeof c);
    if (st == KDC_OK)
        st = cache_chunk_alloc(&c, h, err);
    size_t C = (size_t)h->num_classes, K = (size_t)h->topk, D = (size_t)h->feature_dim;
    for (int64_t k = 0; st == KDC_OK && k < cache_reader_num_chunks(r); k++) {
        if ((st = cache_reader_read_chunk(r, k, &c, err)) != KDC_OK)
            break;
        size_t rows = (size_t)c.count * (size_t)V;
        fwrite(c.box, 4 * sizeof(int32_t), rows, o[O_BOX].f);
        fwrite(c.flip, 1, rows, o[O_FLIP].f);
        if (topk) {
            fwrite(c.topk_index, cache_topk_index_size(h) * K, rows, o[O_TOPK_INDEX].f);
            fwrite(c.topk_value, 2 * K, rows, o[O_TOPK_VALUE].f);
        } else {
            fwrite(c.logits, (h->logit_storage == CACHE_LOGITS_F32 ? 4 : 2) * C, rows,
                   o[O_LOGITS].f);
        }
        if (D)
            fwrite(c.features, 2 * D, rows, o[O_FEATURES].f);
    }
    cache_chunk_free(&c);
    for (int i = 0; i < O_COUNT; i++) {
        kdc_status s2st = npy_close(&o[i], st == KDC_OK, err);
        if (st == KDC_OK)
            st = s2st;
    }
    /* All or nothing: a failure (a corrupt chunk half-way, a full disk)
     * removes what was written, and the folder if this call made it. */
    if (st != KDC_OK) {
        for (int i = 0; i < O_COUNT; i++)
            if (o[i].path[0]) {
                remove(o[i].path);
                remove(o[i].tmp);
            }
        if (created)
            rmdir(out_dir);
    }
    cache_reader_close(r);
    return st;
}
