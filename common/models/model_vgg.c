/* model_vgg.c - mdistiller's CIFAR VGGs with BN (models/cifar/vgg.py; its
 * model dict maps "vgg8" to vgg8_bn and "vgg13" to vgg13_bn), names kept:
 * block0..block4, each conv3x3 (with bias) + BN + ReLU per entry of the
 * configuration ("block<b>.<3j>" conv, "block<b>.<3j+1>" BN), max pool 2/2
 * after blocks 0, 1, 2 (pool3 only runs for 64 px inputs in mdistiller, and
 * not here), AdaptiveAvgPool2d(1), classifier (Linear 512 -> classes).
 * Init as mdistiller: conv N(0, sqrt(2 / (k * k * out))) and bias 0, BN 1 / 0,
 * Linear N(0, 0.01) and bias 0. */
#include <stdio.h>
#include <string.h>

#include "common/models/model_build.h"

kdc_status kdc_build_cifar_vgg(kdc_model *m, const char *arch, int num_classes, kdc_error *err)
{
    int per_block;
    if (strcmp(arch, "vgg8") == 0)
        per_block = 1; /* cfg "S": [64], [128], [256], [512], [512] */
    else if (strcmp(arch, "vgg13") == 0)
        per_block = 2; /* cfg "B": two convs per block */
    else
        return kdc_fail(err, KDC_EINVAL, "not a CIFAR VGG: '%s'", arch);
    static const int widths[5] = {64, 128, 256, 512, 512};
    int x = KDC_MB_INPUT;
    for (int b = 0; b < 5; b++) {
        for (int j = 0; j < per_block; j++) {
            char a[32], n[32];
            snprintf(a, sizeof a, "block%d.%d", b, 3 * j);
            snprintf(n, sizeof n, "block%d.%d", b, 3 * j + 1);
            int c_in = kdc_mb_channels(m, x);
            x = kdc_mb_conv_bias(m, a, x, c_in, widths[b], 3, 1, 1, 1, 0);
            x = kdc_mb_relu(m, kdc_mb_bn(m, n, x));
        }
        if (b < 3)
            x = kdc_mb_maxpool(m, x, 2, 2, 0);
    }
    x = kdc_mb_gap(m, x);
    kdc_mb_linear(m, "classifier", x, num_classes, KDC_INIT_LINEAR_NORMAL);
    return kdc_mb_status(m, err);
}
