/* test_gpu_nccl.c - `make check-gpu`: NCCL as kd-train's GPU ranks use it
 * (common/dist/dist_nccl.h).
 *
 *   1. A communicator of one rank (no launcher: the unique id goes through a
 *      job of one rank) on cuda:0; the sum and the mean over one rank of
 *      7.3 M floats (more than one 25 MiB bucket) on the backend's stream
 *      leave every value as it was, bit for bit (x + nothing, x * 1/1).
 *   2. Two ranks on one GPU (this program twice, as torchrun-style ranks 0 and
 *      1 of a TCP job, both on cuda:0): NCCL refuses the pair (one rank per
 *      GPU), and both processes end with an error instead of hanging.
 * Without libnccl, without a GPU, or in a build without CUDA it prints one
 * line saying why it did not run and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cuda/cuda_backend.h"
#include "common/dist/dist.h"
#include "common/dist/dist_nccl.h"

#define N ((size_t)7300000)

static int fail(const char *what, const kdc_error *err)
{
    fprintf(stderr, "check-gpu nccl: %s: %s\n", what, err->msg);
    return 1;
}

/* Rank RANK of 2 on cuda:0 (KDC_NCCL_CHILD set): 0 when NCCL joined the
 * pair, 3 when it refused, 1 otherwise. */
static int child(void)
{
    kdc_error err = {0};
    kdc_dist *d = NULL;
    kdc_backend *be = NULL;
    void *stream;
    kdc_nccl *c = NULL;
    if (kdc_dist_init(&d, &err))
        return fail("dist", &err);
    if (kdc_backend_cuda_create(0, &be, &err) || kdc_cuda_stream(be, &stream, &err))
        return fail("cuda:0", &err);
    kdc_status st = kdc_nccl_init(d, &c, &err);
    printf("rank %d: %s\n", kdc_dist_rank(d), st ? err.msg : "joined");
    kdc_nccl_free(c);
    kdc_backend_destroy(be);
    return st ? 3 : 0;
}

static int two_ranks_one_gpu(const char *self)
{
    char cmd[4096];
    int port = 21000 + (int)(getpid() % 20000);
    snprintf(cmd, sizeof cmd,
             "export KDC_NCCL_CHILD=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=%d "
             "KDC_DIST_TIMEOUT=60; RANK=1 LOCAL_RANK=1 timeout 120 %s & p=$!; "
             "RANK=0 LOCAL_RANK=0 timeout 120 %s; a=$?; wait $p; b=$?; "
             "[ $a -ne 0 ] && [ $b -ne 0 ] && [ $a -ne 124 ] && [ $b -ne 124 ]",
             port, self, self);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "check-gpu nccl: two ranks on one GPU were not refused by both "
                        "(or a rank hung)\n");
        return 1;
    }
    printf("check-gpu nccl: two ranks on one GPU refused\n");
    return 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    if (getenv("KDC_NCCL_CHILD"))
        return child();
    char why[512];
    int version = 0;
    if (!kdc_nccl_available(&version, why, sizeof why)) {
        printf("check-gpu nccl: not run, no NCCL: %s\n", why);
        return 0;
    }
    kdc_error err = {0};
    kdc_backend *be = NULL;
    if (kdc_backend_cuda_create(0, &be, &err) != KDC_OK) {
        printf("check-gpu nccl: not run, no usable GPU: %s\n", err.msg);
        return 0;
    }
    void *stream;
    kdc_nccl *c = NULL;
    if (kdc_cuda_stream(be, &stream, &err) || kdc_nccl_init(NULL, &c, &err))
        return fail("one-rank communicator", &err);
    float *h = malloc(N * sizeof *h), *back = malloc(N * sizeof *back), *dev = NULL;
    for (size_t i = 0; i < N; i++)
        h[i] = (float)((double)(i % 1000003) * 1.25e-3 - 600.0);
    int bad = !h || !back;
    if (!bad &&
        (be->alloc(be, N * sizeof *h, (void **)&dev, &err) ||
         be->copy_h2d(be, dev, h, N * sizeof *h, &err) ||
         kdc_nccl_sum_f32(c, dev, N, stream, &err) || kdc_nccl_mean_f32(c, dev, N, stream, &err) ||
         be->synchronize(be, &err) || be->copy_d2h(be, back, dev, N * sizeof *h, &err)))
        return fail("all-reduce", &err);
    size_t diff = 0;
    for (size_t i = 0; !bad && i < N; i++)
        diff += memcmp(&h[i], &back[i], sizeof *h) != 0;
    if (bad || diff) {
        fprintf(stderr, "check-gpu nccl: %zu of %zu values changed by a one-rank all-reduce\n",
                diff, N);
        return 1;
    }
    printf("check-gpu nccl %d: one-rank sum and mean of %zu floats: unchanged\n", version, N);
    be->free(be, dev);
    free(h);
    free(back);
    kdc_nccl_free(c);
    kdc_backend_destroy(be);
    return two_ranks_one_gpu(argv[0]);
}
