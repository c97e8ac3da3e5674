/* model_mobilenet_v2.c - MobileNetV2 in its three forms of the KD literature,
 * with the parameter names of their PyTorch definitions:
 *
 *   mobilenet_v2: torchvision's (ImageNet; 0.14 models/mobilenetv2.py).
 *     features.0 = conv3x3/2 + BN + ReLU6; features.1..17 inverted residuals
 *     ("conv.0.0" expand 1x1, "conv.1.0" depthwise 3x3, "conv.2" project 1x1,
 *     "conv.3" BN; without expansion (t = 1) the depthwise block is conv.0 and
 *     the projection conv.1 / conv.2); features.18 = conv1x1 -> 1280 + BN +
 *     ReLU6; global average pool; classifier.1 (classifier.0 is Dropout(0.2),
 *     no parameters; here an identity, also in training, see docs/MODELS.md).
 *   MobileNetV2: mdistiller's CIFAR mobile_half (models/cifar/mobilenetv2.py,
 *     T = 6, width 0.5): conv1 = conv3x3/2 + BN + ReLU, blocks.<s>.<i> with
 *     ReLU (not ReLU6) and the expansion conv in every block, even at t = 1
 *     (conv.0 / conv.1, conv.3 / conv.4, conv.6 / conv.7), conv2 = conv1x1 ->
 *     1280, its AvgPool2d(2) over the 2x2 map of a 32 px input (our global
 *     pool), classifier.0.
 *   mobilenetv2_tinyimagenet: mdistiller's Tiny-ImageNet student
 *     (models/cifar/mv2_tinyimagenet.py), see build_tinyimagenet.
 * The first two: residual add when stride 1 and width unchanged; conv init
 * kaiming_normal(fan_out), Linear N(0, 0.01) and bias 0, as both define. */
#include <stdio.h>
#include <string.h>

#include "common/models/model_build.h"

/* The (t, c, n, s) table both definitions share (mdistiller's second row
 * has stride 1 for 32 px inputs). */
static const int SETTING[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                  {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};

static int conv_bn_act(kdc_model *m, const char *conv, const char *bn, int x, int c_out, int k,
                       int stride, int groups, int relu6)
{
    int c_in = kdc_mb_channels(m, x);
    x = kdc_mb_bn(m, bn, kdc_mb_conv(m, conv, x, c_in, c_out, k, stride, k / 2, groups));
    return relu6 ? kdc_mb_relu6(m, x) : kdc_mb_relu(m, x);
}

/* torchvision InvertedResidual */
static int tv_block(kdc_model *m, const char *p, int x, int oup, int stride, int t)
{
    char a[96], b[96];
    int inp = kdc_mb_channels(m, x), hidden = inp * t, in = x, j = 0;
    if (t != 1) {
        snprintf(a, sizeof a, "%s.conv.0.0", p);
        snprintf(b, sizeof b, "%s.conv.0.1", p);
        x = conv_bn_act(m, a, b, x, hidden, 1, 1, 1, 1);
        j = 1;
    }
    snprintf(a, sizeof a, "%s.conv.%d.0", p, j);
    snprintf(b, sizeof b, "%s.conv.%d.1", p, j);
    x = conv_bn_act(m, a, b, x, hidden, 3, stride, hidden, 1);
    snprintf(a, sizeof a, "%s.conv.%d", p, j + 1);
    x = kdc_mb_conv(m, a, x, hidden, oup, 1, 1, 0, 1);
    snprintf(a, sizeof a, "%s.conv.%d", p, j + 2);
    x = kdc_mb_bn(m, a, x);
    return stride == 1 && inp == oup ? kdc_mb_add(m, in, x) : x;
}

static kdc_status build_torchvision(kdc_model *m, int num_classes, kdc_error *err)
{
    int x = conv_bn_act(m, "features.0.0", "features.0.1", KDC_MB_INPUT, 32, 3, 2, 1, 1);
    int f = 1;
    for (int s = 0; s < 7; s++)
        for (int i = 0; i < SETTING[s][2]; i++) {
            char p[32];
            snprintf(p, sizeof p, "features.%d", f++);
            x = tv_block(m, p, x, SETTING[s][1], i == 0 ? SETTING[s][3] : 1, SETTING[s][0]);
        }
    char a[32], b[32];
    snprintf(a, sizeof a, "features.%d.0", f);
    snprintf(b, sizeof b, "features.%d.1", f);
    x = conv_bn_act(m, a, b, x, 1280, 1, 1, 1, 1);
    x = kdc_mb_gap(m, x);
    kdc_mb_linear(m, "classifier.1", x, num_classes, KDC_INIT_LINEAR_NORMAL);
    return kdc_mb_status(m, err);
}

/* mdistiller InvertedResidual: always the expansion conv, ReLU */
static int md_block(kdc_model *m, const char *p, int x, int oup, int stride, int t)
{
    char a[96], b[96];
    int inp = kdc_mb_channels(m, x), hidden = inp * t, in = x;
    snprintf(a, sizeof a, "%s.conv.0", p);
    snprintf(b, sizeof b, "%s.conv.1", p);
    x = conv_bn_act(m, a, b, x, hidden, 1, 1, 1, 0);
    snprintf(a, sizeof a, "%s.conv.3", p);
    snprintf(b, sizeof b, "%s.conv.4", p);
    x = conv_bn_act(m, a, b, x, hidden, 3, stride, hidden, 0);
    snprintf(a, sizeof a, "%s.conv.6", p);
    x = kdc_mb_conv(m, a, x, hidden, oup, 1, 1, 0, 1);
    snprintf(a, sizeof a, "%s.conv.7", p);
    x = kdc_mb_bn(m, a, x);
    return stride == 1 && inp == oup ? kdc_mb_add(m, in, x) : x;
}

static kdc_status build_mdistiller_half(kdc_model *m, int num_classes, kdc_error *err)
{
    const double width = 0.5;
    int x = conv_bn_act(m, "conv1.0", "conv1.1", KDC_MB_INPUT, (int)(32 * width), 3, 2, 1, 0);
    for (int s = 0; s < 7; s++) {
        int stride = s == 1 ? 1 : SETTING[s][3];
        for (int i = 0; i < SETTING[s][2]; i++) {
            char p[32];
            snprintf(p, sizeof p, "blocks.%d.%d", s, i);
            x = md_block(m, p, x, (int)(SETTING[s][1] * width), i == 0 ? stride : 1,
                         s == 0 ? 1 : 6);
        }
    }
    x = conv_bn_act(m, "conv2.0", "conv2.1", x, 1280, 1, 1, 1, 0);
    x = kdc_mb_gap(m, x);
    kdc_mb_linear(m, "classifier.0", x, num_classes, KDC_INIT_LINEAR_NORMAL);
    return kdc_mb_status(m, err);
}

/* mdistiller mv2_tinyimagenet.py LinearBottleNeck: biased convs, ReLU6, the
 * expansion conv even at t = 1; residual.0/1 expand, 3/4 depthwise, 6/7
 * project. */
static int ti_block(kdc_model *m, const char *p, int x, int oup, int stride, int t)
{
    char a[96], b[96];
    int inp = kdc_mb_channels(m, x), hidden = inp * t, in = x;
    snprintf(a, sizeof a, "%s.residual.0", p);
    snprintf(b, sizeof b, "%s.residual.1", p);
    x = kdc_mb_relu6(m, kdc_mb_bn(m, b, kdc_mb_conv_bias(m, a, x, inp, hidden, 1, 1, 0, 1, 1)));
    snprintf(a, sizeof a, "%s.residual.3", p);
    snprintf(b, sizeof b, "%s.residual.4", p);
    x = kdc_mb_relu6(
        m, kdc_mb_bn(m, b, kdc_mb_conv_bias(m, a, x, hidden, hidden, 3, stride, 1, hidden, 1)));
    snprintf(a, sizeof a, "%s.residual.6", p);
    snprintf(b, sizeof b, "%s.residual.7", p);
    x = kdc_mb_bn(m, b, kdc_mb_conv_bias(m, a, x, hidden, oup, 1, 1, 0, 1, 1));
    return stride == 1 && inp == oup ? kdc_mb_add(m, in, x) : x;
}

/* mdistiller mv2_tinyimagenet.py MobileNetV2 (DOT's Tiny-ImageNet student):
 * width 1; pre = Conv2d(3, 32, 1, padding=1) (a 1x1 conv with padding 1:
 * the map grows by 2, its border is the bias) + BN + ReLU6; stage1 (32 -> 16,
 * t 1), stage2..6 of 2, 3, 4, 3, 3 blocks to 24, 32, 64, 96, 160 with strides
 * 2, 2, 2, 1, 1, stage7 (160 -> 320, one block, not a Sequential); conv1 =
 * Conv2d(320, 1280, 1) + BN + ReLU6; AdaptiveAvgPool2d(1); conv2 =
 * Conv2d(1280, classes, 1), the classifier. Every conv has a bias. The file
 * keeps PyTorch's default init: biases and the classifier as nn.Conv2d's
 * U(+-1/sqrt(fan_in)), conv weights kaiming_normal(fan_out) here as elsewhere. */
static kdc_status build_tinyimagenet(kdc_model *m, int num_classes, kdc_error *err)
{
    int x = kdc_mb_conv_bias(m, "pre.0", KDC_MB_INPUT, 3, 32, 1, 1, 1, 1, 1);
    x = kdc_mb_relu6(m, kdc_mb_bn(m, "pre.1", x));
    x = ti_block(m, "stage1", x, 16, 1, 1);
    static const int stages[5][3] = {{2, 24, 2}, {3, 32, 2}, {4, 64, 2}, {3, 96, 1}, {3, 160, 1}};
    for (int s = 0; s < 5; s++)
        for (int i = 0; i < stages[s][0]; i++) {
            char p[32];
            snprintf(p, sizeof p, "stage%d.%d", s + 2, i);
            x = ti_block(m, p, x, stages[s][1], i == 0 ? stages[s][2] : 1, 6);
        }
    x = ti_block(m, "stage7", x, 320, 1, 6);
    x = kdc_mb_conv_bias(m, "conv1.0", x, 320, 1280, 1, 1, 0, 1, 1);
    x = kdc_mb_relu6(m, kdc_mb_bn(m, "conv1.1", x));
    x = kdc_mb_gap(m, x);
    kdc_mb_linear_1x1(m, "conv2", x, num_classes, KDC_INIT_LINEAR_DEFAULT);
    return kdc_mb_status(m, err);
}

kdc_status kdc_build_mobilenet_v2(kdc_model *m, const char *arch, int num_classes, kdc_error *err)
{
    if (strcmp(arch, "mobilenetv2_tinyimagenet") == 0)
        return build_tinyimagenet(m, num_classes, err);
    if (strcmp(arch, "mobilenet_v2") == 0)
        return build_torchvision(m, num_classes, err);
    if (strcmp(arch, "MobileNetV2") == 0)
        return build_mdistiller_half(m, num_classes, err);
    return kdc_fail(err, KDC_EINVAL, "not a MobileNetV2: '%s'", arch);
}
