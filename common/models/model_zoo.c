/* model_zoo.c - architecture names -> graph builders, and kdc_model_create.
 * The one place that lists what kdc_model_create accepts: the zoo sits above
 * the graph executor (model.c) and the builders, and neither calls back up
 * into it. */
#include <stdio.h>
#include <string.h>

#include "common/models/model_build.h"

typedef kdc_status (*zoo_builder)(kdc_model *m, const char *arch, int num_classes,
                                  kdc_error *err);

static kdc_status build_mobilenet_v1(kdc_model *m, const char *arch, int num_classes,
                                     kdc_error *err)
{
    (void)arch;
    return kdc_build_mobilenet_v1(m, num_classes, err);
}

static const struct zoo_entry {
    const char *name;
    zoo_builder build;
} ZOO[] = {
    {"resnet18", kdc_build_resnet},       {"resnet34", kdc_build_resnet},
    {"resnet50", kdc_build_resnet},       {"resnet101", kdc_build_resnet},
    {"resnet152", kdc_build_resnet},      {"wide_resnet50_2", kdc_build_resnet},
    {"mobilenet_v1", build_mobilenet_v1}, {"resnet8x4", kdc_build_cifar_resnet},
    {"resnet32x4", kdc_build_cifar_resnet}, {"wrn_16_2", kdc_build_wrn},
    {"wrn_40_2", kdc_build_wrn},
    /* torchvision, ImageNet size */
    {"mobilenet_v2", kdc_build_mobilenet_v2},
    {"shufflenet_v2_x0_5", kdc_build_shufflenet}, {"shufflenet_v2_x1_0", kdc_build_shufflenet},
    {"shufflenet_v2_x1_5", kdc_build_shufflenet}, {"shufflenet_v2_x2_0", kdc_build_shufflenet},
    {"regnet_y_400mf", kdc_build_regnet}, {"regnet_y_800mf", kdc_build_regnet},
    {"regnet_y_1_6gf", kdc_build_regnet}, {"regnet_y_3_2gf", kdc_build_regnet},
    {"regnet_y_8gf", kdc_build_regnet}, {"regnet_y_16gf", kdc_build_regnet},
    {"regnet_y_32gf", kdc_build_regnet},
    /* mdistiller, CIFAR size (its model-dict names) */
    {"resnet20", kdc_build_cifar_resnet}, {"resnet32", kdc_build_cifar_resnet},
    {"resnet56", kdc_build_cifar_resnet}, {"resnet110", kdc_build_cifar_resnet},
    {"wrn_16_1", kdc_build_wrn}, {"wrn_40_1", kdc_build_wrn},
    {"vgg8", kdc_build_cifar_vgg}, {"vgg13", kdc_build_cifar_vgg},
    {"MobileNetV2", kdc_build_mobilenet_v2}, {"ShuffleV1", kdc_build_shufflenet},
    {"ShuffleV2", kdc_build_shufflenet},
    /* mdistiller resnetv2.py: CRD's CIFAR ResNet50, DOT's Tiny-ImageNet ResNet18 */
    {"ResNet18", kdc_build_resnetv2}, {"ResNet50", kdc_build_resnetv2},
    /* mdistiller mv2_tinyimagenet.py: DOT's Tiny-ImageNet MobileNetV2 student */
    {"mobilenetv2_tinyimagenet", kdc_build_mobilenet_v2},
};
#define ZOO_SIZE (sizeof ZOO / sizeof ZOO[0])

const char *const *kdc_model_arch_names(void)
{
    static const char *names[ZOO_SIZE + 1];
    if (!names[0])
        for (size_t i = 0; i < ZOO_SIZE; i++)
            names[i] = ZOO[i].name;
    return names;
}

static kdc_status unknown_arch(const char *arch, kdc_error *err)
{
    /* Unknown names get the full list, whatever family their prefix suggests. */
    char list[1024] = "";
    for (size_t i = 0; i < ZOO_SIZE; i++) {
        if (i)
            strncat(list, ", ", sizeof list - strlen(list) - 1);
        strncat(list, ZOO[i].name, sizeof list - strlen(list) - 1);
    }
    return kdc_fail(err, KDC_EINVAL, "unknown architecture '%s' (known: %s)", arch, list);
}

kdc_status kdc_model_create(const char *arch, int num_classes, kdc_backend *be, uint64_t seed,
                            kdc_model **out, kdc_error *err)
{
    *out = NULL;
    const struct zoo_entry *e = NULL;
    for (size_t i = 0; arch && i < ZOO_SIZE; i++)
        if (strcmp(ZOO[i].name, arch) == 0)
            e = &ZOO[i];
    if (arch && !e)
        return unknown_arch(arch, err);
    kdc_model *m;
    kdc_status st = kdc_model_begin(arch, num_classes, be, &m, err);
    if (st)
        return st;
    if (!(st = e->build(m, arch, num_classes, err)))
        st = kdc_model_finish(m, seed, err);
    if (st) {
        kdc_model_free(m);
        return st;
    }
    *out = m;
    return KDC_OK;
}
