/* bench_decode.c - decode + view + resize (+ normalise) images/s on one core.
 *
 * usage: bench_decode [--policy center|rrc] [--size S] [--repeat R]
 *                     [--isa auto|portable|avx2] FILE.jpg...
 * Prints one line per measurement: full pipeline for the policy, decode only at
 * full size, and decode only with libjpeg-turbo's 1/2 DCT scaling (what a
 * DCT-domain downscale could save); each as images per wall-clock second and per
 * CPU second of this process (the latter is steadier on a shared machine).
 * --isa picks the resampling kernels (image_resize.h). scripts/bench/bench_decode.sh
 * runs it next to PIL + torchvision on the same files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/image/image_batch.h"
#include "common/image/jpeg_decode.h"
#include "common/image/views.h"

static double now_s(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    img_view_params vp;
    img_view_params_default(&vp);
    vp.policy = IMG_VIEW_RRC;
    int repeat = 3, first = 1;
    img_resample_isa isa = IMG_RESAMPLE_AUTO;
    kdc_error err = {0};
    for (; first < argc && strncmp(argv[first], "--", 2) == 0; first += 2) {
        if (first + 1 >= argc) {
            fprintf(stderr, "bench_decode: %s needs a value\n", argv[first]);
            return 2;
        }
        if (strcmp(argv[first], "--policy") == 0) {
            if (img_view_policy_parse(argv[first + 1], &vp.policy, &err)) {
                fprintf(stderr, "bench_decode: %s\n", err.msg);
                return 2;
            }
        } else if (strcmp(argv[first], "--size") == 0) {
            vp.image_size = atoi(argv[first + 1]);
        } else if (strcmp(argv[first], "--isa") == 0) {
            const char *v = argv[first + 1];
            if (strcmp(v, "auto") == 0)
                isa = IMG_RESAMPLE_AUTO;
            else if (strcmp(v, "portable") == 0)
                isa = IMG_RESAMPLE_PORTABLE;
            else if (strcmp(v, "avx2") == 0)
                isa = IMG_RESAMPLE_AVX2;
            else {
                fprintf(stderr, "bench_decode: --isa %s: expected auto, portable or avx2\n", v);
                return 2;
            }
        } else if (strcmp(argv[first], "--repeat") == 0) {
            repeat = atoi(argv[first + 1]);
        } else {
            fprintf(stderr, "bench_decode: unknown option %s\n", argv[first]);
            return 2;
        }
    }
    int nfiles = argc - first;
    if (nfiles < 1 || repeat < 1 || img_view_params_check(&vp, &err)) {
        fprintf(stderr,
                "usage: bench_decode [--policy center|rrc] [--size S] [--repeat R] "
                "[--isa auto|portable|avx2] FILE.jpg... %s\n",
                err.msg);
        return 2;
    }
    img_decoder *d;
    if (img_decoder_create(&d, &err)) {
        fprintf(stderr, "bench_decode: %s\n", err.msg);
        return 1;
    }
    const int S = vp.image_size;
    img_view_scratch sc = {0};
    sc.rs.isa = isa;
    img_norm norm;
    img_norm_default(&norm);
    uint8_t *out = malloc((size_t)S * S * 3);
    float *chw = malloc(sizeof(float) * 3 * (size_t)S * S);
    const char *modes[3] = {"pipeline", "decode", "decode-dct1/2"};
    for (int mode = 0; mode < 3; mode++) {
        long n = 0, px = 0;
        double t0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
        for (int r = 0; r < repeat; r++)
            for (int i = 0; i < nfiles; i++) {
                const uint8_t *rgb;
                int w, h;
                img_view v;
                if (img_decoder_load_file(d, argv[first + i], &err) ||
                    img_decoder_decode(d, mode == 2 ? 4 : 8, &rgb, &w, &h, &err)) {
                    fprintf(stderr, "bench_decode: %s\n", err.msg);
                    return 1;
                }
                px += (long)w * h;
                if (mode == 0) {
                    if (img_view_draw(&vp, w, h, (uint64_t)i, (uint32_t)r, &v, &err) ||
                        img_view_render(&vp, rgb, w, h, (size_t)w * 3, &v, out, &sc, &err)) {
                        fprintf(stderr, "bench_decode: %s\n", err.msg);
                        return 1;
                    }
                    img_normalize_chw(out, S, &norm, chw);
                }
                n++;
            }
        double dt = now_s(CLOCK_MONOTONIC) - t0, dc = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        printf("kdcache %-14s %-8s %5ld images %7.1f images/s %7.1f images/cpu-s (mean %.0f px "
               "decoded)\n",
               modes[mode], img_view_policy_name(vp.policy), n, n / dt, n / dc, (double)px / n);
    }
    free(out);
    free(chw);
    img_view_scratch_free(&sc);
    img_decoder_free(d);
    return 0;
}
