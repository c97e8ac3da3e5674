/* model_regnet.c - torchvision's RegNetY (0.14 models/regnet.py), the
 * projector paper's teacher for DeiT students (regnet_y_16gf), with its
 * parameter names:
 *
 *   stem.0 / stem.1: conv3x3/2 (3 -> 32) + BN + ReLU;
 *   trunk_output.block<s>.block<s>-<i>: ResBottleneckBlock = optional proj
 *     (1x1 conv, stride, + BN) on the shortcut when width or stride changes,
 *     f.a (1x1 + BN + ReLU), f.b (3x3, stride, groups = width / group width,
 *     + BN + ReLU), f.se (squeeze-excitation: global pool, fc1 1x1 conv with
 *     bias -> round(0.25 * block input width), ReLU, fc2 1x1 conv with bias,
 *     sigmoid, times f.b's output), f.c (1x1 + BN); add, ReLU;
 *   global average pool, fc.
 * The stage widths, depths and group widths are torchvision's
 * BlockParams.from_init_params results for each model (bottleneck multiplier
 * 1, se_ratio 0.25), tabled here rather than recomputed in float: the test
 * compares every name and shape with torchvision's state_dict. Init as
 * torchvision: conv N(0, sqrt(2 / (k * k * out))), BN 1 / 0, fc N(0, 0.01)
 * with bias 0; the SE convs' biases keep nn.Conv2d's default U(+-1/sqrt(fan_in)). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/models/model_build.h"

typedef struct regnet_cfg {
    const char *name;
    int depth[4], width[4], group_width;
} regnet_cfg;

static const regnet_cfg CFG[] = {
    {"regnet_y_400mf", {1, 3, 6, 6}, {48, 104, 208, 440}, 8},
    {"regnet_y_800mf", {1, 3, 8, 2}, {64, 144, 320, 784}, 16},
    {"regnet_y_1_6gf", {2, 6, 17, 2}, {48, 120, 336, 888}, 24},
    {"regnet_y_3_2gf", {2, 5, 13, 1}, {72, 216, 576, 1512}, 24},
    {"regnet_y_8gf", {2, 4, 10, 1}, {224, 448, 896, 2016}, 56},
    {"regnet_y_16gf", {2, 4, 11, 1}, {224, 448, 1232, 3024}, 112},
    {"regnet_y_32gf", {2, 5, 12, 1}, {232, 696, 1392, 3712}, 232},
};

static int conv_bn(kdc_model *m, const char *p, int x, int c_out, int k, int stride, int groups)
{
    char a[128], b[128];
    snprintf(a, sizeof a, "%s.0", p);
    snprintf(b, sizeof b, "%s.1", p);
    int c_in = kdc_mb_channels(m, x);
    return kdc_mb_bn(m, b, kdc_mb_conv(m, a, x, c_in, c_out, k, stride, k / 2, groups));
}

static int se(kdc_model *m, const char *p, int x, int squeeze)
{
    char a[192];
    int c = kdc_mb_channels(m, x);
    int s = kdc_mb_gap(m, x);
    snprintf(a, sizeof a, "%s.fc1", p);
    s = kdc_mb_relu(m, kdc_mb_conv_bias(m, a, s, c, squeeze, 1, 1, 0, 1, 1));
    snprintf(a, sizeof a, "%s.fc2", p);
    s = kdc_mb_sigmoid(m, kdc_mb_conv_bias(m, a, s, squeeze, c, 1, 1, 0, 1, 1));
    return kdc_mb_scale(m, x, s);
}

static int block(kdc_model *m, const char *p, int x, int w_out, int stride, int group_width)
{
    char q[160];
    int w_in = kdc_mb_channels(m, x);
    int gw = group_width < w_out ? group_width : w_out;
    int shortcut = x;
    if (w_in != w_out || stride != 1) { /* proj comes first in the state_dict */
        snprintf(q, sizeof q, "%s.proj", p);
        shortcut = conv_bn(m, q, x, w_out, 1, stride, 1);
    }
    snprintf(q, sizeof q, "%s.f.a", p);
    int f = kdc_mb_relu(m, conv_bn(m, q, x, w_out, 1, 1, 1));
    snprintf(q, sizeof q, "%s.f.b", p);
    f = kdc_mb_relu(m, conv_bn(m, q, f, w_out, 3, stride, w_out / gw));
    /* int(round(se_ratio * width_in)): Python rounds halves to even, as rint */
    snprintf(q, sizeof q, "%s.f.se", p);
    f = se(m, q, f, (int)rint(0.25 * w_in));
    snprintf(q, sizeof q, "%s.f.c", p);
    f = conv_bn(m, q, f, w_out, 1, 1, 1);
    return kdc_mb_relu(m, kdc_mb_add(m, shortcut, f));
}

kdc_status kdc_build_regnet(kdc_model *m, const char *arch, int num_classes, kdc_error *err)
{
    const regnet_cfg *c = NULL;
    for (size_t i = 0; i < sizeof CFG / sizeof CFG[0]; i++)
        if (strcmp(arch, CFG[i].name) == 0)
            c = &CFG[i];
    if (!c)
        return kdc_fail(err, KDC_EINVAL, "not a RegNetY: '%s'", arch);
    int x = kdc_mb_relu(m, conv_bn(m, "stem", KDC_MB_INPUT, 32, 3, 2, 1));
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < c->depth[s]; i++) {
            char p[96];
            snprintf(p, sizeof p, "trunk_output.block%d.block%d-%d", s + 1, s + 1, i);
            x = block(m, p, x, c->width[s], i == 0 ? 2 : 1, c->group_width);
        }
    x = kdc_mb_gap(m, x);
    kdc_mb_linear(m, "fc", x, num_classes, KDC_INIT_LINEAR_NORMAL);
    return kdc_mb_status(m, err);
}
