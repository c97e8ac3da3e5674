/* device.c - kdc_backend_create: "cpu" | "cuda" | "cuda:N" to a backend. */
#include "common/device/device.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cuda/cuda_backend.h"
#include "common/nn/backend_cpu.h"

kdc_status kdc_backend_create(const char *device, int threads, kdc_backend **out,
                              kdc_error *err)
{
    *out = NULL;
    if (!device || strcmp(device, "cpu") == 0)
        return kdc_backend_cpu_create(threads, out, err);
    if (strncmp(device, "cuda", 4) == 0) {
        int index = 0;
        if (device[4] == ':') {
            char *end;
            errno = 0;
            long v = strtol(device + 5, &end, 10);
            if (errno || *end || end == device + 5 || v < 0 || v > 1024)
                return kdc_fail(err, KDC_EINVAL, "bad device '%s' (expected cuda or cuda:N)",
                                device);
            index = (int)v;
        } else if (device[4] != '\0') {
            return kdc_fail(err, KDC_EINVAL, "bad device '%s' (expected cpu, cuda or cuda:N)",
                            device);
        }
        return kdc_backend_cuda_create(index, out, err);
    }
    return kdc_fail(err, KDC_EINVAL, "unknown device '%s' (expected cpu, cuda or cuda:N)",
                    device);
}

