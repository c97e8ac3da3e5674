/* edit_weights.c - see edit_weights.h. */
#include "tests/helpers/edit_weights.h"

#include <check.h>
#include <string.h>

#include "common/models/model.h"
#include "common/nn/backend_cpu.h"
#include "formats/checkpoint.h"

void kdc_test_edit_weights(const char *src, const char *dst, const char *arch, int num_classes,
                           const char *name, long first, long count, float value)
{
    kdc_error err = {0};
    kdc_backend *cpu = NULL;
    kdc_model *m = NULL;
    ck_assert_msg(kdc_backend_cpu_create(1, &cpu, &err) == KDC_OK, "%s", err.msg);
    ck_assert_msg(kdc_model_create(arch, num_classes, cpu, 0, &m, &err) == KDC_OK, "%s", err.msg);
    kdc_param_table *pt = kdc_model_params(m);
    ck_assert_msg(kdc_checkpoint_load(src, pt, cpu, &err) == KDC_OK, "%s", err.msg);
    int found = 0;
    for (int i = 0; i < pt->count; i++) {
        kdc_param *p = &pt->items[i];
        if (strcmp(p->name, name))
            continue;
        ck_assert(p->value.dtype == KDC_F32);
        long n = (long)kdc_tensor_numel(&p->value);
        long end = count < 0 || first + count > n ? n : first + count;
        ck_assert_msg(first >= 0 && first < n, "%s: element %ld of %ld", name, first, n);
        for (long k = first; k < end; k++)
            ((float *)p->value.data)[k] = value;
        found = 1;
    }
    ck_assert_msg(found, "%s has no tensor %s", arch, name);
    ck_assert_msg(kdc_checkpoint_save(dst, pt, cpu, arch, &err) == KDC_OK, "%s", err.msg);
    kdc_model_free(m);
    kdc_backend_destroy(cpu);
}
