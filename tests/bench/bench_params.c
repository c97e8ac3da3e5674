/* bench_params.c - the trainable parameter count of each architecture named
 * on the command line, as kd-train's student has it (kdc_model_param_count,
 * PyTorch's sum of p.numel()), one "arch classes count" line each. Read by
 * scripts/bench/allreduce_model.py (docs/DISTRIBUTED.md, the 8-GPU model).
 *
 *   build/bench/bench_params CLASSES ARCH...   */
#include <stdio.h>
#include <stdlib.h>

#include "common/device/device.h"
#include "common/models/model.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_params CLASSES ARCH...\n");
        return 2;
    }
    int classes = atoi(argv[1]);
    kdc_error err = {0};
    kdc_backend *be = NULL;
    if (kdc_backend_create("cpu", 1, &be, &err)) {
        fprintf(stderr, "bench_params: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    for (int i = 2; i < argc; i++) {
        kdc_model *m = NULL;
        if (kdc_model_create(argv[i], classes, be, 0, &m, &err)) {
            fprintf(stderr, "bench_params: %s\n", err.msg);
            rc = 1;
            continue;
        }
        printf("%s %d %zu\n", argv[i], classes, kdc_model_param_count(m));
        kdc_model_free(m);
    }
    be->destroy(be);
    return rc;
}
