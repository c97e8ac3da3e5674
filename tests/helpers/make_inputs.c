/* make_inputs.c - shared makers of test inputs (make_inputs.h). */
#include "tests/helpers/make_inputs.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#include "common/image/dataset.h"
#include "common/image/views.h"
#include "common/models/model.h"
#include "common/nn/backend_cpu.h"
#include "formats/cache_writer.h"
#include "formats/checkpoint.h"
#include "tests/helpers/testutil.h"

void kdc_test_write_jpeg(const char *path, int w, int h, int cls, uint64_t seed, int subsamp_420)
{
    size_t n = (size_t)w * (size_t)h * 3;
    unsigned char *px = malloc(n);
    float *noise = malloc(n * sizeof *noise);
    ck_assert(px && noise);
    kdc_test_fill_uniform(noise, n, seed, 0.0f, 1.0f);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                size_t i = ((size_t)y * (size_t)w + (size_t)x) * 3 + (size_t)c;
                double v = 60.0 * noise[i] + 45.0 * sin(0.2 * (x + 3 * c) + 0.3 * y + seed % 7) +
                           (c == cls % 3 ? 95.0 : 40.0) + 25.0;
                px[i] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    tjhandle tj = tjInitCompress();
    ck_assert_ptr_nonnull(tj);
    unsigned char *jpg = NULL;
    unsigned long len = 0;
    ck_assert_msg(tjCompress2(tj, px, w, 0, h, TJPF_RGB, &jpg, &len,
                              subsamp_420 ? TJSAMP_420 : TJSAMP_444, 90, 0) == 0,
                  "tjCompress2: %s", tjGetErrorStr2(tj));
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert(fwrite(jpg, 1, len, f) == len);
    ck_assert(fclose(f) == 0);
    tjFree(jpg);
    tjDestroy(tj);
    free(px);
    free(noise);
}

void kdc_test_make_image_folder(const char *root, int ncls, int per_class, int w, int h,
                                int subsamp_420, uint64_t seed_base)
{
    ck_assert_msg(mkdir(root, 0755) == 0, "cannot create %s", root);
    size_t len = strlen(root) + 64;
    char *dir = malloc(len), *path = malloc(len);
    for (int c = 0; c < ncls; c++) {
        snprintf(dir, len, "%s/class%d", root, c);
        ck_assert_msg(mkdir(dir, 0755) == 0, "cannot create %s", dir);
        for (int i = 0; i < per_class; i++) {
            snprintf(path, len, "%s/img%02d.jpg", dir, i);
            kdc_test_write_jpeg(path, w, h, c, seed_base + 100 * (uint64_t)c + (uint64_t)i,
                                subsamp_420);
        }
    }
    free(dir);
    free(path);
}

/* The image's decoded size, from its JPEG header. */
static void jpeg_size(const char *path, int *w, int *h)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    unsigned char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    tjhandle tj = tjInitDecompress();
    int sub, cs;
    ck_assert_msg(tjDecompressHeader3(tj, buf, (unsigned long)n, w, h, &sub, &cs) == 0,
                  "%s: %s", path, tjGetErrorStr2(tj));
    tjDestroy(tj);
}

void kdc_test_make_cache(const char *path, const char *data_dir, const kdc_test_cache_spec *s)
{
    kdc_error err = {0};
    img_dataset *ds = NULL;
    ck_assert_msg(img_dataset_open_folder(&ds, data_dir, &err) == KDC_OK, "%s", err.msg);
    ck_assert_msg(img_dataset_checksum(ds, 1, &err) == KDC_OK, "%s", err.msg);
    int64_t n = (int64_t)ds->count;
    size_t C = (size_t)s->num_classes, D = (size_t)s->feature_dim;

    cache_header h;
    memset(&h, 0, sizeof h);
    snprintf(h.teacher_arch, sizeof h.teacher_arch, "synthetic");
    snprintf(h.teacher_weights_sha256, sizeof h.teacher_weights_sha256, "%064d", 0);
    snprintf(h.created_by, sizeof h.created_by, "%s", s->created_by ? s->created_by : "tests");
    h.num_images = n;
    h.views_per_image = 1;
    h.num_classes = s->num_classes;
    h.feature_dim = s->feature_dim;
    snprintf(h.view_policy, sizeof h.view_policy, "center");
    h.image_size = s->image_size;
    h.resize_size = s->image_size;
    double mean[3] = {0.485, 0.456, 0.406}, sd[3] = {0.229, 0.224, 0.225};
    memcpy(h.mean, mean, sizeof mean);
    memcpy(h.std, sd, sizeof sd);
    h.scale_range[0] = 0.08;
    h.scale_range[1] = 1;
    h.ratio_range[0] = 0.75;
    h.ratio_range[1] = 4.0 / 3.0;
    h.pad = 4;
    h.chunk_images = s->chunk_images;
    ck_assert_msg(cache_parse_logit_storage(s->mode, &h.logit_storage, &h.topk, &err) == KDC_OK,
                  "%s", err.msg);

    float *lg0 = malloc((size_t)n * C * sizeof *lg0);
    float *ft0 = malloc((size_t)n * (D ? D : 1) * sizeof *ft0);
    if (s->logits)
        memcpy(lg0, s->logits, (size_t)n * C * sizeof *lg0);
    else
        kdc_test_fill_uniform(lg0, (size_t)n * C, 11, -3.0f, 3.0f);
    if (D && s->features)
        memcpy(ft0, s->features, (size_t)n * D * sizeof *ft0);
    else if (D)
        kdc_test_fill_uniform(ft0, (size_t)n * D, 12, -1.0f, 2.0f);

    cache_image_table t;
    ck_assert(cache_image_table_alloc(&t, n, &err) == KDC_OK);
    float *logits = malloc((size_t)n * C * sizeof *logits);
    float *feats = malloc((size_t)n * (D ? D : 1) * sizeof *feats);
    int32_t *hh = malloc((size_t)n * sizeof *hh), *ww = malloc((size_t)n * sizeof *ww);
    int32_t *box = malloc((size_t)n * 4 * sizeof *box);
    uint8_t *flip = calloc((size_t)n, 1);
    img_view_params vp;
    img_view_params_default(&vp);
    vp.policy = IMG_VIEW_CENTER;
    vp.image_size = s->image_size;
    vp.resize_size = s->image_size;
    char full[4096];
    for (int64_t r = 0; r < n; r++) {
        int64_t i = s->perm ? s->perm[r] : r;
        t.path[r] = strdup(ds->items[i].path);
        t.label[r] = ds->items[i].label;
        t.size[r] = ds->items[i].size;
        t.crc32[r] = ds->items[i].crc32;
        memcpy(logits + (size_t)r * C, lg0 + (size_t)i * C, C * sizeof *logits);
        if (D)
            memcpy(feats + (size_t)r * D, ft0 + (size_t)i * D, D * sizeof *feats);
        ck_assert(img_dataset_full_path(ds, (size_t)i, full, sizeof full, &err) == KDC_OK);
        jpeg_size(full, &ww[r], &hh[r]);
        img_view v;
        ck_assert(img_view_draw(&vp, ww[r], hh[r], (uint64_t)r, 0, &v, &err) == KDC_OK);
        box[4 * r] = v.y0;
        box[4 * r + 1] = v.x0;
        box[4 * r + 2] = v.h;
        box[4 * r + 3] = v.w;
        flip[r] = v.flip;
    }
    cache_writer *w = NULL;
    ck_assert_msg(cache_writer_create(path, &h, &t, NULL, &w, &err) == KDC_OK, "%s", err.msg);
    cache_chunk_input in = {.first_image = 0, .count = n, .height = hh, .width = ww,
                            .box = box, .flip = flip, .logits = logits,
                            .features = D ? feats : NULL};
    ck_assert_msg(cache_writer_append(w, &in, &err) == KDC_OK, "%s", err.msg);
    ck_assert_msg(cache_writer_finish(w, &err) == KDC_OK, "%s", err.msg);
    cache_image_table_free(&t);
    img_dataset_free(ds);
    free(lg0);
    free(ft0);
    free(logits);
    free(feats);
    free(hh);
    free(ww);
    free(box);
    free(flip);
}

static void randomise_bn(kdc_param_table *pt)
{
    for (int i = 0; i < pt->count; i++) {
        kdc_param *p = &pt->items[i];
        if (p->value.dtype != KDC_F32)
            continue;
        size_t n = 1;
        for (int d = 0; d < p->value.ndim; d++)
            n *= (size_t)p->value.shape[d];
        float *x = p->value.data;
        uint64_t seed = 1000 + (uint64_t)i;
        if (strstr(p->name, "running_mean"))
            kdc_test_fill_uniform(x, n, seed, -0.2f, 0.2f);
        else if (strstr(p->name, "running_var"))
            kdc_test_fill_uniform(x, n, seed, 0.5f, 1.5f);
        else if (p->is_bn && strstr(p->name, ".weight"))
            kdc_test_fill_uniform(x, n, seed, 0.6f, 1.4f);
        else if (p->is_bn && strstr(p->name, ".bias"))
            kdc_test_fill_uniform(x, n, seed, -0.2f, 0.2f);
    }
}

void kdc_test_make_weights(const char *path, const char *arch, int num_classes, uint64_t seed,
                           int proj_dim, int random_bn)
{
    kdc_error err = {0};
    kdc_backend *cpu = NULL;
    kdc_model *m = NULL;
    ck_assert_msg(kdc_backend_cpu_create(1, &cpu, &err) == KDC_OK, "%s", err.msg);
    ck_assert_msg(kdc_model_create(arch, num_classes, cpu, seed, &m, &err) == KDC_OK, "%s",
                  err.msg);
    kdc_param_table *pt = kdc_model_params(m);
    if (random_bn)
        randomise_bn(pt);
    if (proj_dim <= 0) {
        ck_assert_msg(kdc_checkpoint_save(path, pt, cpu, arch, &err) == KDC_OK, "%s", err.msg);
    } else {
        int fd = kdc_model_feature_dim(m);
        size_t nw = (size_t)proj_dim * (size_t)fd;
        float *w = malloc(nw * sizeof *w), *b = malloc((size_t)proj_dim * sizeof *b);
        kdc_test_fill_uniform(w, nw, 21, -1.0f / 16, 1.0f / 16);
        kdc_test_fill_uniform(b, (size_t)proj_dim, 22, -1.0f / 16, 1.0f / 16);
        kdc_param *items = calloc((size_t)pt->count + 2, sizeof *items);
        memcpy(items, pt->items, (size_t)pt->count * sizeof *items);
        items[pt->count] = (kdc_param){.name = "projector.weight", .kind = KDC_PARAM_WEIGHT,
                                       .value = {.data = w, .dtype = KDC_F32,
                                                 .device = cpu->device, .ndim = 2,
                                                 .shape = {proj_dim, fd}}};
        items[pt->count + 1] = (kdc_param){.name = "projector.bias", .kind = KDC_PARAM_WEIGHT,
                                           .value = {.data = b, .dtype = KDC_F32,
                                                     .device = cpu->device, .ndim = 1,
                                                     .shape = {proj_dim}}};
        kdc_param_table all = {.items = items, .count = pt->count + 2};
        ck_assert_msg(kdc_checkpoint_save(path, &all, cpu, arch, &err) == KDC_OK, "%s", err.msg);
        free(items);
        free(w);
        free(b);
    }
    kdc_model_free(m);
    kdc_backend_destroy(cpu);
}
