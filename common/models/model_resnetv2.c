/* model_resnetv2.c - mdistiller's small-image ResNet18 and ResNet50
 * (mdistiller/models/cifar/resnetv2.py; the names of its model dict): the
 * CRD benchmark's CIFAR-100 ResNet50 teacher (-> MobileNetV2, -> vgg8) and
 * DOT's Tiny-ImageNet ResNet18 teacher (-> MobileNetV2, -> ShuffleV2).
 *
 * Unlike torchvision's (model_resnet.c): the stem is one 3x3 stride-1 conv
 * (conv1, bn1, ReLU) without max pool, the shortcut that changes shape is
 * "shortcut.0" (1x1 conv) / "shortcut.1" (BN), and the classifier is
 * "linear". The bottleneck keeps its stride on the 3x3 conv (as torchvision
 * v1.5). AdaptiveAvgPool2d((1, 1)) is our global average pool. Init as the
 * file: conv kaiming_normal_(fan_out, relu), BN 1 / 0, nn.Linear's default. */
#include <stdio.h>
#include <string.h>

#include "common/models/model_build.h"

static int conv_bn(kdc_model *m, const char *prefix, int idx, int in, int c_out, int k, int stride,
                   int relu)
{
    char a[96], b[96];
    snprintf(a, sizeof a, "%s.conv%d", prefix, idx);
    snprintf(b, sizeof b, "%s.bn%d", prefix, idx);
    int x = kdc_mb_conv(m, a, in, kdc_mb_channels(m, in), c_out, k, stride, k / 2, 1);
    x = kdc_mb_bn(m, b, x);
    return relu ? kdc_mb_relu(m, x) : x;
}

/* resnetv2.py BasicBlock / Bottleneck: branch + shortcut, then ReLU */
static int block(kdc_model *m, const char *prefix, int in, int planes, int stride, int bottleneck)
{
    int c_in = kdc_mb_channels(m, in);
    int c_out = bottleneck ? 4 * planes : planes;
    int x;
    if (bottleneck) {
        x = conv_bn(m, prefix, 1, in, planes, 1, 1, 1);
        x = conv_bn(m, prefix, 2, x, planes, 3, stride, 1);
        x = conv_bn(m, prefix, 3, x, c_out, 1, 1, 0);
    } else {
        x = conv_bn(m, prefix, 1, in, planes, 3, stride, 1);
        x = conv_bn(m, prefix, 2, x, planes, 3, 1, 0);
    }
    int shortcut = in;
    if (stride != 1 || c_in != c_out) {
        char a[96];
        snprintf(a, sizeof a, "%s.shortcut.0", prefix);
        shortcut = kdc_mb_conv(m, a, in, c_in, c_out, 1, stride, 0, 1);
        snprintf(a, sizeof a, "%s.shortcut.1", prefix);
        shortcut = kdc_mb_bn(m, a, shortcut);
    }
    return kdc_mb_relu(m, kdc_mb_add(m, x, shortcut));
}

kdc_status kdc_build_resnetv2(kdc_model *m, const char *arch, int num_classes, kdc_error *err)
{
    static const int basic[4] = {2, 2, 2, 2}, bottle[4] = {3, 4, 6, 3};
    int bottleneck;
    if (strcmp(arch, "ResNet18") == 0)
        bottleneck = 0;
    else if (strcmp(arch, "ResNet50") == 0)
        bottleneck = 1;
    else
        return kdc_fail(err, KDC_EINVAL, "not an mdistiller resnetv2: '%s'", arch);
    const int *blocks = bottleneck ? bottle : basic;
    int x = kdc_mb_conv(m, "conv1", KDC_MB_INPUT, 3, 64, 3, 1, 1, 1);
    x = kdc_mb_relu(m, kdc_mb_bn(m, "bn1", x));
    static const int planes[4] = {64, 128, 256, 512};
    for (int layer = 0; layer < 4; layer++)
        for (int b = 0; b < blocks[layer]; b++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "layer%d.%d", layer + 1, b);
            x = block(m, prefix, x, planes[layer], (b == 0 && layer > 0) ? 2 : 1, bottleneck);
        }
    x = kdc_mb_gap(m, x);
    kdc_mb_linear(m, "linear", x, num_classes, KDC_INIT_LINEAR_DEFAULT);
    return kdc_mb_status(m, err);
}
