/* model_zoo.c - architecture names -> graph builders. The one place that
 * lists what kdc_model_create accepts. */
#include <string.h>

#include "common/models/model_build.h"

static const char *const NAMES[] = {
    "resnet18",  "resnet34",  "resnet50", "resnet101", "resnet152", "wide_resnet50_2",
    "mobilenet_v1", "resnet8x4", "resnet32x4", "wrn_16_2", "wrn_40_2", NULL,
};

const char *const *kdc_model_arch_names(void)
{
    return NAMES;
}

static int known(const char *arch)
{
    for (int i = 0; NAMES[i]; i++)
        if (strcmp(NAMES[i], arch) == 0)
            return 1;
    return 0;
}

kdc_status kdc_zoo_build(kdc_model *m, const char *arch, int num_classes, kdc_error *err)
{
    /* Unknown names get the full list, whatever family their prefix suggests. */
    if (!known(arch))
        goto unknown;
    if (strncmp(arch, "resnet", 6) == 0 && strstr(arch, "x4") == NULL)
        return kdc_build_resnet(m, arch, num_classes, err);
    if (strcmp(arch, "wide_resnet50_2") == 0)
        return kdc_build_resnet(m, arch, num_classes, err);
    if (strcmp(arch, "mobilenet_v1") == 0)
        return kdc_build_mobilenet_v1(m, num_classes, err);
    if (strcmp(arch, "resnet8x4") == 0 || strcmp(arch, "resnet32x4") == 0)
        return kdc_build_cifar_resnet(m, arch, num_classes, err);
    if (strcmp(arch, "wrn_16_2") == 0 || strcmp(arch, "wrn_40_2") == 0)
        return kdc_build_wrn(m, arch, num_classes, err);
unknown:;
    char list[512] = "";
    for (int i = 0; NAMES[i]; i++) {
        if (i)
            strncat(list, ", ", sizeof list - strlen(list) - 1);
        strncat(list, NAMES[i], sizeof list - strlen(list) - 1);
    }
    return kdc_fail(err, KDC_EINVAL, "unknown architecture '%s' (known: %s)", arch, list);
}
