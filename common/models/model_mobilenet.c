/* model_mobilenet.c - MobileNetV1 as the KD literature uses it for
 * ResNet50 -> MobileNetV1 on ImageNet: mdistiller's
 * mdistiller/models/imagenet/mobilenetv1.py, whose parameter names we keep
 * ("model.<i>.<j>" inside an nn.Sequential of conv_bn / conv_dw blocks, and
 * "fc"), so its state_dicts load.
 *
 * model.0 = conv3x3(3 -> 32, stride 2) + BN + ReLU; model.1..13 = depthwise
 * conv3x3 + BN + ReLU (".0", ".1") then pointwise conv1x1 + BN + ReLU (".3",
 * ".4"); then mdistiller's AvgPool2d(7), which at 224 px input is the global
 * average pool we use (any other input size works here too), and fc.
 * mdistiller leaves PyTorch's default conv init; we use the torchvision
 * convention (kaiming_normal fan_out) like every other model here. */
#include <stdio.h>

#include "common/models/model_build.h"

kdc_status kdc_build_mobilenet_v1(kdc_model *m, int num_classes, kdc_error *err)
{
    /* (out channels, stride) of the 13 depthwise-separable blocks */
    static const int cfg[13][2] = {{64, 1},  {128, 2}, {128, 1}, {256, 2}, {256, 1},
                                   {512, 2}, {512, 1}, {512, 1}, {512, 1}, {512, 1},
                                   {512, 1}, {1024, 2}, {1024, 1}};
    int x = kdc_mb_conv(m, "model.0.0", KDC_MB_INPUT, 3, 32, 3, 2, 1, 1);
    x = kdc_mb_relu(m, kdc_mb_bn(m, "model.0.1", x));
    for (int i = 0; i < 13; i++) {
        char a[32];
        int c_in = kdc_mb_channels(m, x);
        snprintf(a, sizeof a, "model.%d.0", i + 1);
        x = kdc_mb_conv(m, a, x, c_in, c_in, 3, cfg[i][1], 1, c_in);
        snprintf(a, sizeof a, "model.%d.1", i + 1);
        x = kdc_mb_relu(m, kdc_mb_bn(m, a, x));
        snprintf(a, sizeof a, "model.%d.3", i + 1);
        x = kdc_mb_conv(m, a, x, c_in, cfg[i][0], 1, 1, 0, 1);
        snprintf(a, sizeof a, "model.%d.4", i + 1);
        x = kdc_mb_relu(m, kdc_mb_bn(m, a, x));
    }
    x = kdc_mb_gap(m, x);
    kdc_mb_linear(m, "fc", x, num_classes, KDC_INIT_LINEAR_DEFAULT);
    return kdc_mb_status(m, err);
}
