/* teacher.c - loading and identifying the teacher (see teacher.h). */
#include "precompute/teacher.h"

#include <errno.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "formats/checkpoint.h"
#include "formats/safetensors.h"
#include "formats/weights_check.h"

kdc_status kd_sha256_file(const char *path, char hex[65], kdc_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return kdc_fail(err, KDC_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    uint8_t buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        sha256_update(&ctx, got, buf);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return kdc_fail(err, KDC_EIO, "%s: read error", path);
    uint8_t d[SHA256_DIGEST_SIZE];
    sha256_digest(&ctx, sizeof d, d);
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return KDC_OK;
}

kdc_status kd_teacher_weights_shape(const char *weights, int *num_classes, int *in_features,
                                    kdc_error *err)
{
    st_file *f;
    kdc_status st = st_open(weights, &f, err);
    if (st)
        return st;
    /* The classifier's name in the architectures of the zoo: torchvision's
     * ResNets, ShuffleNetV2 and RegNetY, mdistiller's CIFAR nets "fc";
     * torchvision's MobileNetV2 "classifier.1" (after a Dropout); mdistiller's
     * MobileNetV2 "classifier.0", VGG "classifier", ShuffleNets "linear". */
    static const char *const names[] = {"fc.weight", "classifier.1.weight",
                                        "classifier.0.weight", "classifier.weight",
                                        "linear.weight"};
    const st_tensor *t = NULL;
    const char *name = names[0];
    for (size_t i = 0; !t && i < sizeof names / sizeof names[0]; i++)
        if ((t = st_find(f, names[i])))
            name = names[i];
    if (!t)
        st = kdc_fail(err, KDC_EMISMATCH,
                      "%s: no tensor 'fc.weight' (nor another classifier name of the zoo): not "
                      "a state_dict of the architectures here",
                      weights);
    else if (t->ndim != 2 || t->shape[0] < 1 || t->shape[0] > (1 << 24) || t->shape[1] < 1 ||
             t->shape[1] > (1 << 20))
        st = kdc_fail(err, KDC_EMISMATCH, "%s: '%s' has %d dimensions / shape %lld x %lld, "
                      "not [classes, features]", weights, name, t->ndim, (long long)t->shape[0],
                      (long long)(t->ndim > 1 ? t->shape[1] : 0));
    else {
        *num_classes = (int)t->shape[0];
        *in_features = (int)t->shape[1];
    }
    st_close(f);
    return st;
}

/* The weights file is hashed on a second thread while the model is built and
 * loaded: for a 100 MB resnet50 file that hides ~0.3 s of setup. */
typedef struct hash_job {
    const char *path;
    char *hex;
    kdc_status st;
    kdc_error err;
} hash_job;

static void *hash_main(void *arg)
{
    hash_job *j = arg;
    j->st = kd_sha256_file(j->path, j->hex, &j->err);
    return NULL;
}

kdc_status kd_teacher_load(const char *arch, const char *weights, kdc_backend *be,
                           kd_teacher *t, kdc_error *err)
{
    memset(t, 0, sizeof *t);
    int C, Din;
    kdc_status st = kd_teacher_weights_shape(weights, &C, &Din, err);
    if (st)
        return st;
    hash_job job = {.path = weights, .hex = t->sha256};
    pthread_t tid;
    int threaded = pthread_create(&tid, NULL, hash_main, &job) == 0;
    if (!threaded)
        hash_main(&job);
    if ((st = kdc_model_create(arch, C, be, 0, &t->model, err)))
        goto out;
    /* The classifier's input width tells a wrong architecture apart before the
     * full name-by-name check, with a clearer message. */
    t->feature_dim = kdc_model_feature_dim(t->model);
    if (t->feature_dim != Din) {
        st = kdc_fail(err, KDC_EMISMATCH,
                      "%s: the classifier takes %d features but %s has %d: weights of another "
                      "architecture?", weights, Din, arch, t->feature_dim);
        goto out;
    }
    if ((st = kdc_checkpoint_load(weights, kdc_model_params(t->model), be, err)) ||
        (st = kdc_weights_check(kdc_model_params(t->model), be, weights, err)))
        goto out;
    st = kdc_model_refold(t->model, err);
out:
    if (threaded)
        pthread_join(tid, NULL);
    if (st == KDC_OK && job.st) {
        st = job.st;
        if (err)
            *err = job.err;
    }
    if (st) {
        kd_teacher_free(t);
        return st;
    }
    t->num_classes = C;
    return KDC_OK;
}

void kd_teacher_free(kd_teacher *t)
{
    kdc_model_free(t->model);
    memset(t, 0, sizeof *t);
}
