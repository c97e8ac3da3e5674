/* model_build.h - the graph-building interface the architecture files use
 * (model_resnet.c, model_mobilenet.c, model_cifar.c) and the zoo that runs them
 * (model_zoo.c). Not for other modules: they see models only through model.h.
 *
 * Each call appends one node that reads earlier nodes (or KDC_MB_INPUT, the
 * network input) and registers that node's parameters under `prefix`
 * ("layer1.0.conv1" gives "layer1.0.conv1.weight"), so the call order is the
 * state_dict order. Errors are sticky: after the first failure every call
 * returns -1 and kdc_mb_finish reports the first error. */
#ifndef KDC_MODEL_BUILD_H
#define KDC_MODEL_BUILD_H

#include "common/models/model.h"

#define KDC_MB_INPUT (-1)

/* Conv weight init variants of the PyTorch definitions. */
typedef enum kdc_init_kind {
    KDC_INIT_KAIMING_FAN_OUT = 0, /* kaiming_normal_(mode="fan_out", nonlinearity="relu") */
    KDC_INIT_LINEAR_DEFAULT = 1,  /* nn.Linear: U(+-1/sqrt(fan_in)) for weight and bias */
    KDC_INIT_LINEAR_ZERO_BIAS = 2, /* nn.Linear default weight, bias zero (mdistiller WRN) */
    KDC_INIT_LINEAR_NORMAL = 3     /* weight N(0, 0.01), bias zero (torchvision MobileNetV2,
                                      RegNet, VGG; mdistiller MobileNetV2, VGG) */
} kdc_init_kind;

/* Bias-free convolution with square kernel k, stride, symmetric padding, groups. */
int kdc_mb_conv(kdc_model *m, const char *prefix, int in, int c_in, int c_out, int k,
                int stride, int pad, int groups);
/* The same with a bias ("<prefix>.bias"), initialised to zero (bias_init 0)
 * or as nn.Conv2d does, U(+-1/sqrt(fan_in)) (bias_init 1). */
int kdc_mb_conv_bias(kdc_model *m, const char *prefix, int in, int c_in, int c_out, int k,
                     int stride, int pad, int groups, int bias_init);
/* BatchNorm2d(c), eps 1e-5, momentum 0.1, affine, tracking running stats. */
int kdc_mb_bn(kdc_model *m, const char *prefix, int in);
int kdc_mb_relu(kdc_model *m, int in);
int kdc_mb_maxpool(kdc_model *m, int in, int k, int stride, int pad);
/* Global average pool to n x C: the pooled penultimate features. */
int kdc_mb_gap(kdc_model *m, int in);
int kdc_mb_linear(kdc_model *m, const char *prefix, int in, int out_features,
                  kdc_init_kind init);
/* The same Linear with its weight named and shaped as a 1x1 convolution,
 * [out, in, 1, 1] (mdistiller's Tiny-ImageNet MobileNetV2 classifies with a
 * Conv2d(1280, classes, 1) on the pooled map). */
int kdc_mb_linear_1x1(kdc_model *m, const char *prefix, int in, int out_features,
                      kdc_init_kind init);
/* a + b, same shape (the residual add). */
int kdc_mb_add(kdc_model *m, int a, int b);
/* ReLU6 (MobileNetV2) and sigmoid (squeeze-excitation gate). */
int kdc_mb_relu6(kdc_model *m, int in);
int kdc_mb_sigmoid(kdc_model *m, int in);
/* x * s per channel, s the n x C x 1 x 1 output of a squeeze-excitation branch. */
int kdc_mb_scale(kdc_model *m, int x, int s);
/* torch.cat([a, b], 1) */
int kdc_mb_concat(kdc_model *m, int a, int b);
/* x[:, off : off + count] (ShuffleNetV2's channel split is two slices) */
int kdc_mb_slice(kdc_model *m, int in, int off, int count);
/* ShuffleNet's channel shuffle: view(n, g, c/g, h, w).transpose(1, 2) */
int kdc_mb_shuffle(kdc_model *m, int in, int groups);
/* AvgPool2d(k, stride, pad), count_include_pad=True */
int kdc_mb_avgpool(kdc_model *m, int in, int k, int stride, int pad);
/* Channels of node `node`'s output (3 for KDC_MB_INPUT). */
int kdc_mb_channels(const kdc_model *m, int node);

/* Builders: each appends its architecture to an empty model, ending in
 * gap -> linear(num_classes). Return the builder status. */
kdc_status kdc_build_resnet(kdc_model *m, const char *arch, int num_classes, kdc_error *err);
kdc_status kdc_build_mobilenet_v1(kdc_model *m, int num_classes, kdc_error *err);
kdc_status kdc_build_cifar_resnet(kdc_model *m, const char *arch, int num_classes,
                                  kdc_error *err);
kdc_status kdc_build_wrn(kdc_model *m, const char *arch, int num_classes, kdc_error *err);
kdc_status kdc_build_cifar_vgg(kdc_model *m, const char *arch, int num_classes,
                               kdc_error *err);
kdc_status kdc_build_mobilenet_v2(kdc_model *m, const char *arch, int num_classes,
                                  kdc_error *err);
kdc_status kdc_build_shufflenet(kdc_model *m, const char *arch, int num_classes,
                                kdc_error *err);
kdc_status kdc_build_regnet(kdc_model *m, const char *arch, int num_classes, kdc_error *err);
kdc_status kdc_build_resnetv2(kdc_model *m, const char *arch, int num_classes,
                              kdc_error *err);

/* model.c: an empty graph for `arch` on `be`, which the zoo fills with a
 * builder; then kdc_model_finish lays out, initialises (seeded) and plans the
 * buffers. On failure of either the caller frees the model. */
kdc_status kdc_model_begin(const char *arch, int num_classes, kdc_backend *be, kdc_model **out,
                           kdc_error *err);
kdc_status kdc_model_finish(kdc_model *m, uint64_t seed, kdc_error *err);

/* model_init.c: the seeded generator behind every random initialisation
 * (xoshiro256** seeded by splitmix64; normals by Box-Muller in double). */
typedef struct kdc_rng {
    uint64_t s[4];
} kdc_rng;
void kdc_rng_seed(kdc_rng *r, uint64_t seed);
double kdc_rng_uniform(kdc_rng *r); /* [0, 1) */
double kdc_rng_normal(kdc_rng *r);  /* N(0, 1) */
void kdc_init_normal(float *x, size_t n, double std, kdc_rng *r);
void kdc_init_uniform(float *x, size_t n, double bound, kdc_rng *r); /* U(-bound, bound) */

/* The sticky builder status (KDC_OK while no call has failed); copies the
 * first error into err. */
kdc_status kdc_mb_status(const kdc_model *m, kdc_error *err);

#endif
