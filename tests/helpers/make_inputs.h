/* make_inputs.h - the tiny inputs that end-to-end suites share: synthetic JPEG
 * image folders, teacher and student weight files, and teacher caches written
 * with the cache writer. One maker for each, so that test_train and the GPU
 * suites build their inputs the same way. Every maker fails the current test
 * (ck_assert) when it cannot do its job. */
#ifndef KDC_TEST_DATA_H
#define KDC_TEST_DATA_H

#include <stddef.h>
#include <stdint.h>

/* A w x h JPEG of a smooth random image with a class-dependent colour bias
 * (channel cls % 3 is brighter), quality 90; subsamp_420: 4:2:0 chroma
 * subsampling, else 4:4:4. Same (w, h, cls, seed) -> same bytes. */
void kdc_test_write_jpeg(const char *path, int w, int h, int cls, uint64_t seed,
                         int subsamp_420);

/* ROOT/class<c>/img<ii>.jpg for ncls classes x per_class images of w x h
 * (seed_base + 100 * c + i); ROOT is created and must not exist. */
void kdc_test_make_image_folder(const char *root, int ncls, int per_class, int w, int h,
                                int subsamp_420, uint64_t seed_base);

/* A teacher cache of the ImageFolder at data_dir, center views. */
typedef struct kdc_test_cache_spec {
    const char *mode;  /* "float32", "float16", "topk:K" */
    int num_classes;   /* C */
    int feature_dim;   /* D (0: no features) */
    int image_size;    /* center view size (resize_size equals it) */
    int chunk_images;  /* images per chunk */
    /* Per dataset image (dataset order), N x C and N x D; NULL: uniform random
     * in [-3, 3) (seed 11) and [-1, 2) (seed 12). */
    const float *logits, *features;
    const int64_t *perm;    /* row r holds dataset image perm[r]; NULL: dataset order */
    const char *created_by; /* the created_by attribute */
} kdc_test_cache_spec;
void kdc_test_make_cache(const char *path, const char *data_dir, const kdc_test_cache_spec *s);

/* Weights of `arch` (num_classes outputs) from a fixed seed, as
 * kdc_checkpoint_save writes them. proj_dim > 0 adds projector.weight
 * (proj_dim x feature dim) and projector.bias, U(-1/16, 1/16) from seeds 21 and
 * 22, so a projector's update is known too. random_bn: BN affine parameters
 * and running statistics drawn at random (a teacher whose BNs are not the
 * identity). */
void kdc_test_make_weights(const char *path, const char *arch, int num_classes, uint64_t seed,
                           int proj_dim, int random_bn);

#endif
