/* model_cifar.c - the small-image networks of the KD literature, as
 * mdistiller defines them (names and shapes match its state_dicts):
 *   resnet8x4, resnet32x4, resnet20, resnet32, resnet56, resnet110:
 *     mdistiller/models/cifar/resnet.py, BasicBlock ResNet of depth 6n+2 with
 *     widths [32, 64, 128, 256] (x4) or [16, 16, 32, 64];
 *   wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2: mdistiller/models/cifar/wrn.py,
 *     pre-activation wide ResNet, depth 6n+4, widths [16, 16k, 32k, 64k],
 *     shortcut conv "convShortcut" where the width changes, dropout 0.
 * Their AvgPool2d(8) over the 8x8 map of a 32x32 input is the global average
 * pool used here, which also takes other input sizes.
 * Not here: torchvision's ImageNet ResNets (model_resnet.c). */
#include <stdio.h>
#include <string.h>

#include "common/models/model_build.h"

/* mdistiller resnet.py BasicBlock: conv-bn-relu-conv-bn, + shortcut, relu */
static int basic_block(kdc_model *m, const char *prefix, int in, int planes, int stride)
{
    char a[96];
    int c_in = kdc_mb_channels(m, in);
    snprintf(a, sizeof a, "%s.conv1", prefix);
    int x = kdc_mb_conv(m, a, in, c_in, planes, 3, stride, 1, 1);
    snprintf(a, sizeof a, "%s.bn1", prefix);
    x = kdc_mb_relu(m, kdc_mb_bn(m, a, x));
    snprintf(a, sizeof a, "%s.conv2", prefix);
    x = kdc_mb_conv(m, a, x, planes, planes, 3, 1, 1, 1);
    snprintf(a, sizeof a, "%s.bn2", prefix);
    x = kdc_mb_bn(m, a, x);
    int shortcut = in;
    if (stride != 1 || c_in != planes) {
        snprintf(a, sizeof a, "%s.downsample.0", prefix);
        shortcut = kdc_mb_conv(m, a, in, c_in, planes, 1, stride, 0, 1);
        snprintf(a, sizeof a, "%s.downsample.1", prefix);
        shortcut = kdc_mb_bn(m, a, shortcut);
    }
    return kdc_mb_relu(m, kdc_mb_add(m, x, shortcut));
}

kdc_status kdc_build_cifar_resnet(kdc_model *m, const char *arch, int num_classes,
                                  kdc_error *err)
{
    static const struct {
        const char *name;
        int depth, x4;
    } CFG[] = {{"resnet8x4", 8, 1}, {"resnet32x4", 32, 1}, {"resnet20", 20, 0},
               {"resnet32", 32, 0}, {"resnet56", 56, 0},  {"resnet110", 110, 0}};
    int depth = 0, x4 = 0;
    for (size_t i = 0; i < sizeof CFG / sizeof CFG[0]; i++)
        if (strcmp(arch, CFG[i].name) == 0)
            depth = CFG[i].depth, x4 = CFG[i].x4;
    if (!depth)
        return kdc_fail(err, KDC_EINVAL, "not a CIFAR resnet: '%s'", arch);
    /* resnet.py: [32, 64, 128, 256] for the x4 nets, [16, 16, 32, 64] otherwise */
    static const int wide[4] = {32, 64, 128, 256}, narrow[4] = {16, 16, 32, 64};
    const int *filters = x4 ? wide : narrow;
    int n = (depth - 2) / 6;
    int x = kdc_mb_conv(m, "conv1", KDC_MB_INPUT, 3, filters[0], 3, 1, 1, 1);
    x = kdc_mb_relu(m, kdc_mb_bn(m, "bn1", x));
    for (int layer = 0; layer < 3; layer++)
        for (int b = 0; b < n; b++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "layer%d.%d", layer + 1, b);
            x = basic_block(m, prefix, x, filters[layer + 1], (b == 0 && layer > 0) ? 2 : 1);
        }
    x = kdc_mb_gap(m, x);
    kdc_mb_linear(m, "fc", x, num_classes, KDC_INIT_LINEAR_DEFAULT);
    return kdc_mb_status(m, err);
}

/* mdistiller wrn.py BasicBlock (pre-activation). When the width changes the
 * activated input feeds both branches; otherwise the raw input is the
 * shortcut. */
static int wrn_block(kdc_model *m, const char *prefix, int in, int c_out, int stride)
{
    char a[96];
    int c_in = kdc_mb_channels(m, in);
    int equal = c_in == c_out;
    snprintf(a, sizeof a, "%s.bn1", prefix);
    int act = kdc_mb_relu(m, kdc_mb_bn(m, a, in));
    snprintf(a, sizeof a, "%s.conv1", prefix);
    int x = kdc_mb_conv(m, a, act, c_in, c_out, 3, stride, 1, 1);
    snprintf(a, sizeof a, "%s.bn2", prefix);
    x = kdc_mb_relu(m, kdc_mb_bn(m, a, x));
    snprintf(a, sizeof a, "%s.conv2", prefix);
    x = kdc_mb_conv(m, a, x, c_out, c_out, 3, 1, 1, 1);
    int shortcut = in;
    if (!equal) {
        snprintf(a, sizeof a, "%s.convShortcut", prefix);
        shortcut = kdc_mb_conv(m, a, act, c_in, c_out, 1, stride, 0, 1);
    }
    return kdc_mb_add(m, x, shortcut);
}

kdc_status kdc_build_wrn(kdc_model *m, const char *arch, int num_classes, kdc_error *err)
{
    int depth, widen;
    if (strcmp(arch, "wrn_16_2") == 0)
        depth = 16, widen = 2;
    else if (strcmp(arch, "wrn_40_2") == 0)
        depth = 40, widen = 2;
    else if (strcmp(arch, "wrn_40_1") == 0)
        depth = 40, widen = 1;
    else if (strcmp(arch, "wrn_16_1") == 0)
        depth = 16, widen = 1;
    else
        return kdc_fail(err, KDC_EINVAL, "not a wide resnet: '%s'", arch);
    int n = (depth - 4) / 6;
    int channels[4] = {16, 16 * widen, 32 * widen, 64 * widen};
    int x = kdc_mb_conv(m, "conv1", KDC_MB_INPUT, 3, channels[0], 3, 1, 1, 1);
    for (int g = 0; g < 3; g++)
        for (int b = 0; b < n; b++) {
            char prefix[48];
            snprintf(prefix, sizeof prefix, "block%d.layer.%d", g + 1, b);
            x = wrn_block(m, prefix, x, channels[g + 1], (b == 0 && g > 0) ? 2 : 1);
        }
    x = kdc_mb_relu(m, kdc_mb_bn(m, "bn1", x));
    x = kdc_mb_gap(m, x);
    /* wrn.py zeroes the fc bias and keeps nn.Linear's default weight */
    kdc_mb_linear(m, "fc", x, num_classes, KDC_INIT_LINEAR_ZERO_BIAS);
    return kdc_mb_status(m, err);
}
