/* make_seeds_v1.c - wrote the committed v1 fuzz seeds (tests/fuzz/seeds_v1/).
 *
 * Not built by the Makefile: the writers of this tree write v2. It was built
 * once against main at dc8ba58 (the last v1 writer):
 *   cc -std=c11 -D_GNU_SOURCE -I/work/main $(pkg-config --cflags hdf5) \
 *      tests/fuzz/make_seeds_v1.c /work/main/build/lib/libkdformats.a \
 *      /work/main/build/lib/libkdcommon.a $(pkg-config --libs hdf5 jansson) \
 *      -llz4 -lnettle -lz -lm -o /tmp/make_seeds_v1
 *   /tmp/make_seeds_v1 tests/fuzz/seeds_v1
 * Same shapes as the v2 seeds that tests/fuzz/fuzz_cache.c writes itself. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/cache_writer.h"

enum { N = 23, V = 3, C = 11, DMAX = 5, CH = 4 };

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    static int32_t hh[N], ww[N], box[N * V * 4];
    static uint8_t skip[N], flip[N * V];
    static float logits[N * V * C], feats[N * V * DMAX];
    for (int i = 0; i < N; i++) {
        hh[i] = 100 + i, ww[i] = 200 + i, skip[i] = i == 6;
        for (int v = 0; v < V; v++) {
            int32_t *b = box + (i * V + v) * 4;
            b[0] = v - 2, b[1] = i, b[2] = 10 + v, b[3] = 20 + i % 5;
            flip[i * V + v] = (uint8_t)((i + v) % 2);
            for (int c = 0; c < C; c++)
                logits[(i * V + v) * C + c] = 6.0f * sinf(0.7f * (float)i + 1.3f * (float)v + 0.37f * (float)c * (float)(c % 3 + 1));
            for (int d = 0; d < DMAX; d++)
                feats[(i * V + v) * DMAX + d] = fmaxf(0.f, cosf((float)(i * 5 + v * 2 + d)));
        }
    }
    const char *modes[] = {"float16", "float32", "topk:4"};
    for (int m = 0; m < 3; m++)
        for (int withf = 0; withf < 2; withf++) {
            cache_header h;
            memset(&h, 0, sizeof h);
            strcpy(h.teacher_arch, "resnet18");
            strcpy(h.teacher_weights_sha256, "ab12");
            h.num_images = N, h.views_per_image = V, h.num_classes = C;
            h.feature_dim = withf ? DMAX : 0;
            strcpy(h.view_policy, "rrc");
            h.image_size = 32, h.resize_size = 36;
            for (int i = 0; i < 3; i++)
                h.mean[i] = 0.5, h.std[i] = 0.25;
            h.scale_range[0] = 0.08, h.scale_range[1] = 1;
            h.ratio_range[0] = 0.75, h.ratio_range[1] = 4.0 / 3;
            h.seed = 99;
            kdc_error e;
            int64_t k;
            cache_parse_logit_storage(modes[m], &h.logit_storage, &k, &e);
            h.topk = k;
            strcpy(h.created_by, "make_seeds_v1");
            h.chunk_images = CH;
            cache_image_table t;
            cache_image_table_alloc(&t, N, &e);
            for (int i = 0; i < N; i++) {
                char p[64];
                snprintf(p, sizeof p, "c%d/img_%02d.jpg", i % 4, i);
                t.path[i] = strdup(p);
                t.label[i] = i % 4 == 3 ? -1 : i % C;
                t.size[i] = 1000 + (uint64_t)i;
                t.crc32[i] = 0xdead0000u + (uint32_t)i;
            }
            char path[4096];
            snprintf(path, sizeof path, "%s/v1_%s%s.h5", argv[1], m == 2 ? "topk" : modes[m],
                     withf ? "_feat" : "");
            cache_writer *w;
            if (cache_writer_create(path, &h, &t, NULL, &w, &e) != KDC_OK) {
                fprintf(stderr, "%s\n", e.msg);
                return 1;
            }
            for (int64_t c = 0; c < cache_writer_num_chunks(w); c++) {
                int64_t f, n;
                cache_writer_chunk_images(w, c, &f, &n);
                cache_chunk_input in = {f, n, hh + f, ww + f, skip + f, box + f * V * 4,
                                        flip + f * V, logits + f * V * C,
                                        withf ? feats + f * V * DMAX : NULL};
                static float fbuf[N * V * DMAX];
                if (withf) { /* features of this D, contiguous */
                    for (int64_t j = 0; j < n * V * DMAX; j++)
                        fbuf[j] = feats[f * V * DMAX + j];
                    in.features = fbuf;
                }
                if (cache_writer_write_chunk(w, c, &in, &e) != KDC_OK) {
                    fprintf(stderr, "%s\n", e.msg);
                    return 1;
                }
            }
            if (cache_writer_finish(w, &e) != KDC_OK) {
                fprintf(stderr, "%s\n", e.msg);
                return 1;
            }
            cache_image_table_free(&t);
        }
    return 0;
}
