/* model_resnet.c - torchvision's ImageNet ResNets as model graphs: resnet18,
 * resnet34, resnet50, resnet101, resnet152 and wide_resnet50_2.
 *
 * Follows torchvision.models.resnet (v1.5: the stride of a bottleneck sits on
 * its 3x3 convolution; a shortcut that changes shape is conv1x1 + BN named
 * "downsample.0" / "downsample.1"), so its state_dict keys and shapes are
 * ours. The final AdaptiveAvgPool2d((1, 1)) is our global average pool.
 * Not here: the CIFAR-style ResNets of the KD literature (model_cifar.c). */
#include <stdio.h>
#include <string.h>

#include "common/models/model_build.h"

typedef struct resnet_spec {
    const char *name;
    int bottleneck;
    int blocks[4];
    int width_per_group; /* 64; 128 for wide_resnet50_2 */
} resnet_spec;

static const resnet_spec SPECS[] = {
    {"resnet18", 0, {2, 2, 2, 2}, 64},        {"resnet34", 0, {3, 4, 6, 3}, 64},
    {"resnet50", 1, {3, 4, 6, 3}, 64},        {"resnet101", 1, {3, 4, 23, 3}, 64},
    {"resnet152", 1, {3, 8, 36, 3}, 64},      {"wide_resnet50_2", 1, {3, 4, 6, 3}, 128},
};

/* name = prefix + "." + leaf */
static const char *nm(char *buf, size_t len, const char *prefix, const char *leaf)
{
    snprintf(buf, len, "%s.%s", prefix, leaf);
    return buf;
}

/* conv -> bn (-> relu) under prefix.convX / prefix.bnX */
static int conv_bn(kdc_model *m, const char *prefix, int idx, int in, int c_out, int k,
                   int stride, int relu)
{
    char a[96], b[96];
    snprintf(a, sizeof a, "%s.conv%d", prefix, idx);
    snprintf(b, sizeof b, "%s.bn%d", prefix, idx);
    int x = kdc_mb_conv(m, a, in, kdc_mb_channels(m, in), c_out, k, stride, k / 2, 1);
    x = kdc_mb_bn(m, b, x);
    return relu ? kdc_mb_relu(m, x) : x;
}

/* One residual block; returns the block's output node. */
static int block(kdc_model *m, const resnet_spec *s, const char *prefix, int in, int planes,
                 int stride)
{
    int c_in = kdc_mb_channels(m, in);
    int expansion = s->bottleneck ? 4 : 1;
    int c_out = planes * expansion;
    int x;
    if (s->bottleneck) {
        int width = planes * s->width_per_group / 64;
        x = conv_bn(m, prefix, 1, in, width, 1, 1, 1);
        x = conv_bn(m, prefix, 2, x, width, 3, stride, 1);
        x = conv_bn(m, prefix, 3, x, c_out, 1, 1, 0);
    } else {
        x = conv_bn(m, prefix, 1, in, planes, 3, stride, 1);
        x = conv_bn(m, prefix, 2, x, planes, 3, 1, 0);
    }
    int shortcut = in;
    if (stride != 1 || c_in != c_out) {
        char a[96];
        shortcut = kdc_mb_conv(m, nm(a, sizeof a, prefix, "downsample.0"), in, c_in, c_out, 1,
                               stride, 0, 1);
        shortcut = kdc_mb_bn(m, nm(a, sizeof a, prefix, "downsample.1"), shortcut);
    }
    return kdc_mb_relu(m, kdc_mb_add(m, x, shortcut));
}

kdc_status kdc_build_resnet(kdc_model *m, const char *arch, int num_classes, kdc_error *err)
{
    const resnet_spec *s = NULL;
    for (size_t i = 0; i < sizeof SPECS / sizeof SPECS[0]; i++)
        if (strcmp(SPECS[i].name, arch) == 0)
            s = &SPECS[i];
    if (!s)
        return kdc_fail(err, KDC_EINVAL, "not a torchvision resnet: '%s'", arch);
    int x = kdc_mb_conv(m, "conv1", KDC_MB_INPUT, 3, 64, 7, 2, 3, 1);
    x = kdc_mb_relu(m, kdc_mb_bn(m, "bn1", x));
    x = kdc_mb_maxpool(m, x, 3, 2, 1);
    static const int planes[4] = {64, 128, 256, 512};
    for (int layer = 0; layer < 4; layer++) {
        for (int b = 0; b < s->blocks[layer]; b++) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "layer%d.%d", layer + 1, b);
            int stride = (b == 0 && layer > 0) ? 2 : 1;
            x = block(m, s, prefix, x, planes[layer], stride);
        }
    }
    x = kdc_mb_gap(m, x);
    kdc_mb_linear(m, "fc", x, num_classes, KDC_INIT_LINEAR_DEFAULT);
    return kdc_mb_status(m, err);
}
