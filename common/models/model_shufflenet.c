/* model_shufflenet.c - ShuffleNet as torchvision and mdistiller define it,
 * with their parameter names:
 *
 *   shufflenet_v2_x0_5 / x1_0 / x1_5 / x2_0: torchvision 0.14
 *     models/shufflenetv2.py. conv1 (3x3/2 + BN + ReLU), max pool 3/2,
 *     stage2..4 of InvertedResidual blocks (stride 2: branch1 = dw3x3/2 + BN +
 *     1x1 + BN + ReLU on the whole input, branch2 = 1x1 + BN + ReLU + dw3x3/2 +
 *     BN + 1x1 + BN + ReLU; stride 1: x.chunk(2), branch2 on the second half),
 *     torch.cat, channel_shuffle(2); conv5 (1x1 + BN + ReLU), mean over H, W, fc.
 *   ShuffleV2: mdistiller models/cifar/ShuffleNetv2.py (net_size 1): conv1
 *     1x1 + bn1, layer<k>.0 a DownBlock (conv1..conv5 / bn1..bn5), then
 *     BasicBlocks (split in halves, conv1..3 on the second), shuffle(2);
 *     conv2 1x1 -> 1024 + bn2; avg_pool2d(4) of the 4x4 map; linear.
 *   ShuffleV1: mdistiller models/cifar/ShuffleNetv1.py (groups 3, widths
 *     240 / 480 / 960, blocks 4 / 8 / 4): Bottleneck = grouped 1x1 + BN + ReLU,
 *     shuffle, dw3x3 + BN + ReLU, grouped 1x1 + BN; stride 2 concatenates an
 *     AvgPool2d(3, 2, 1) shortcut, stride 1 adds the input; ReLU; linear.
 * torchvision's ShuffleNetV2 and mdistiller's ShuffleNets keep PyTorch's
 * default conv and Linear init (kaiming_uniform a = sqrt(5)); ours draws conv
 * weights kaiming_normal(fan_out) as for every model here, Linear as PyTorch. */
#include <stdio.h>
#include <string.h>

#include "common/models/model_build.h"

static int conv_bn(kdc_model *m, const char *p, int conv_i, int bn_i, int x, int c_out, int k,
                   int stride, int groups)
{
    char a[96], b[96];
    snprintf(a, sizeof a, "%s.%d", p, conv_i);
    snprintf(b, sizeof b, "%s.%d", p, bn_i);
    int c_in = kdc_mb_channels(m, x);
    return kdc_mb_bn(m, b, kdc_mb_conv(m, a, x, c_in, c_out, k, stride, k / 2, groups));
}

/* ---- torchvision ---- */

static int tv_branch2(kdc_model *m, const char *p, int x, int bf, int stride)
{
    char q[96];
    snprintf(q, sizeof q, "%s.branch2", p);
    x = kdc_mb_relu(m, conv_bn(m, q, 0, 1, x, bf, 1, 1, 1));
    x = conv_bn(m, q, 3, 4, x, bf, 3, stride, bf);
    return kdc_mb_relu(m, conv_bn(m, q, 5, 6, x, bf, 1, 1, 1));
}

static int tv_block(kdc_model *m, const char *p, int x, int oup, int stride)
{
    int inp = kdc_mb_channels(m, x), bf = oup / 2, out;
    if (stride > 1) {
        char q[96];
        snprintf(q, sizeof q, "%s.branch1", p);
        int b1 = conv_bn(m, q, 0, 1, x, inp, 3, stride, inp);
        b1 = kdc_mb_relu(m, conv_bn(m, q, 2, 3, b1, bf, 1, 1, 1));
        out = kdc_mb_concat(m, b1, tv_branch2(m, p, x, bf, stride));
    } else {
        int x1 = kdc_mb_slice(m, x, 0, inp / 2), x2 = kdc_mb_slice(m, x, inp / 2, inp - inp / 2);
        out = kdc_mb_concat(m, x1, tv_branch2(m, p, x2, bf, 1));
    }
    return kdc_mb_shuffle(m, out, 2);
}

static kdc_status build_tv_v2(kdc_model *m, const int *widths, int num_classes, kdc_error *err)
{
    static const int repeats[3] = {4, 8, 4};
    int x = kdc_mb_relu(m, conv_bn(m, "conv1", 0, 1, KDC_MB_INPUT, widths[0], 3, 2, 1));
    x = kdc_mb_maxpool(m, x, 3, 2, 1);
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < repeats[s]; i++) {
            char p[32];
            snprintf(p, sizeof p, "stage%d.%d", s + 2, i);
            x = tv_block(m, p, x, widths[s + 1], i == 0 ? 2 : 1);
        }
    x = kdc_mb_relu(m, conv_bn(m, "conv5", 0, 1, x, widths[4], 1, 1, 1));
    x = kdc_mb_gap(m, x);
    kdc_mb_linear(m, "fc", x, num_classes, KDC_INIT_LINEAR_DEFAULT);
    return kdc_mb_status(m, err);
}

/* ---- mdistiller ---- */

/* conv<i> + bn<i> of a module prefix p (mdistiller's flat names) */
static int md_conv_bn(kdc_model *m, const char *p, int i, int x, int c_out, int k, int stride,
                      int groups)
{
    char a[96], b[96];
    snprintf(a, sizeof a, "%s%sconv%d", p, *p ? "." : "", i);
    snprintf(b, sizeof b, "%s%sbn%d", p, *p ? "." : "", i);
    int c_in = kdc_mb_channels(m, x);
    return kdc_mb_bn(m, b, kdc_mb_conv(m, a, x, c_in, c_out, k, stride, k / 2, groups));
}

static int md_v2_down(kdc_model *m, const char *p, int x, int oup)
{
    int inp = kdc_mb_channels(m, x), mid = oup / 2;
    int l = md_conv_bn(m, p, 1, x, inp, 3, 2, inp);
    l = kdc_mb_relu(m, md_conv_bn(m, p, 2, l, mid, 1, 1, 1));
    int r = kdc_mb_relu(m, md_conv_bn(m, p, 3, x, mid, 1, 1, 1));
    r = md_conv_bn(m, p, 4, r, mid, 3, 2, mid);
    r = kdc_mb_relu(m, md_conv_bn(m, p, 5, r, mid, 1, 1, 1));
    return kdc_mb_shuffle(m, kdc_mb_concat(m, l, r), 2);
}

static int md_v2_basic(kdc_model *m, const char *p, int x)
{
    int c = kdc_mb_channels(m, x), half = c / 2; /* SplitBlock(0.5): int(c * 0.5) */
    int x1 = kdc_mb_slice(m, x, 0, half), x2 = kdc_mb_slice(m, x, half, c - half);
    int o = kdc_mb_relu(m, md_conv_bn(m, p, 1, x2, c - half, 1, 1, 1));
    o = md_conv_bn(m, p, 2, o, c - half, 3, 1, c - half);
    o = kdc_mb_relu(m, md_conv_bn(m, p, 3, o, c - half, 1, 1, 1));
    return kdc_mb_shuffle(m, kdc_mb_concat(m, x1, o), 2);
}

static kdc_status build_md_v2(kdc_model *m, int num_classes, kdc_error *err)
{
    static const int out[4] = {116, 232, 464, 1024}, blocks[3] = {3, 7, 3};
    int x = kdc_mb_relu(m, md_conv_bn(m, "", 1, KDC_MB_INPUT, 24, 1, 1, 1));
    for (int l = 0; l < 3; l++) {
        char p[32];
        snprintf(p, sizeof p, "layer%d.0", l + 1);
        x = md_v2_down(m, p, x, out[l]);
        for (int b = 0; b < blocks[l]; b++) {
            snprintf(p, sizeof p, "layer%d.%d", l + 1, b + 1);
            x = md_v2_basic(m, p, x);
        }
    }
    x = kdc_mb_relu(m, md_conv_bn(m, "", 2, x, out[3], 1, 1, 1));
    x = kdc_mb_gap(m, x);
    kdc_mb_linear(m, "linear", x, num_classes, KDC_INIT_LINEAR_DEFAULT);
    return kdc_mb_status(m, err);
}

static int md_v1_bottleneck(kdc_model *m, const char *p, int x, int oup, int stride, int groups)
{
    int inp = kdc_mb_channels(m, x), mid = oup / 4, g = inp == 24 ? 1 : groups;
    int o = kdc_mb_relu(m, md_conv_bn(m, p, 1, x, mid, 1, 1, g));
    if (g > 1) /* a shuffle of one group is the identity */
        o = kdc_mb_shuffle(m, o, g);
    o = kdc_mb_relu(m, md_conv_bn(m, p, 2, o, mid, 3, stride, mid));
    o = md_conv_bn(m, p, 3, o, oup, 1, 1, groups);
    if (stride == 2)
        return kdc_mb_relu(m, kdc_mb_concat(m, o, kdc_mb_avgpool(m, x, 3, 2, 1)));
    return kdc_mb_relu(m, kdc_mb_add(m, o, x));
}

static kdc_status build_md_v1(kdc_model *m, int num_classes, kdc_error *err)
{
    static const int out[3] = {240, 480, 960}, blocks[3] = {4, 8, 4};
    const int groups = 3;
    int x = kdc_mb_relu(m, md_conv_bn(m, "", 1, KDC_MB_INPUT, 24, 1, 1, 1));
    for (int l = 0; l < 3; l++)
        for (int b = 0; b < blocks[l]; b++) {
            char p[32];
            snprintf(p, sizeof p, "layer%d.%d", l + 1, b);
            int cat = b == 0 ? kdc_mb_channels(m, x) : 0;
            x = md_v1_bottleneck(m, p, x, out[l] - cat, b == 0 ? 2 : 1, groups);
        }
    x = kdc_mb_gap(m, x);
    kdc_mb_linear(m, "linear", x, num_classes, KDC_INIT_LINEAR_DEFAULT);
    return kdc_mb_status(m, err);
}

kdc_status kdc_build_shufflenet(kdc_model *m, const char *arch, int num_classes, kdc_error *err)
{
    static const struct {
        const char *name;
        int widths[5];
    } TV[] = {
        {"shufflenet_v2_x0_5", {24, 48, 96, 192, 1024}},
        {"shufflenet_v2_x1_0", {24, 116, 232, 464, 1024}},
        {"shufflenet_v2_x1_5", {24, 176, 352, 704, 1024}},
        {"shufflenet_v2_x2_0", {24, 244, 488, 976, 2048}},
    };
    for (size_t i = 0; i < sizeof TV / sizeof TV[0]; i++)
        if (strcmp(arch, TV[i].name) == 0)
            return build_tv_v2(m, TV[i].widths, num_classes, err);
    if (strcmp(arch, "ShuffleV2") == 0)
        return build_md_v2(m, num_classes, err);
    if (strcmp(arch, "ShuffleV1") == 0)
        return build_md_v1(m, num_classes, err);
    return kdc_fail(err, KDC_EINVAL, "not a ShuffleNet: '%s'", arch);
}
