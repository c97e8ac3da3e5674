/* test_gpu_zoo.c - `make check-gpu`: the CUDA twins of the ops that
 * MobileNetV2, ShuffleNet V1/V2 and RegNetY add (common/cuda/cuda_zoo_ops.cu)
 * against the CPU backend, then those architectures as whole models (eval
 * forward, BN-folded inference, train forward + backward). Without a GPU (or
 * in a build without CUDA) it prints one line and exits 0.
 *
 * Bounds (max |gpu - cpu| / max |cpu| per tensor):
 *   relu6 forward / backward, channel copy, shuffle, scale forward   exact
 *   sigmoid (expf may differ in the last bit), avg pool, scale dx    1e-6
 *   scale ds (a block reduction against the CPU's double sum)        1e-5
 *   grouped conv with bias (cuDNN)                                   2e-4
 *   whole models: logits 2e-3, gradients 1e-2 (as test_gpu_ops.c) */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/nn/backend_cpu.h"
#include "common/cuda/cuda_backend.h"
#include "common/models/model.h"
#include "tests/helpers/testutil.h"

#define TOL_SMALL 1e-6
#define TOL_SUM 1e-5
#define TOL_CONV 2e-4
#define TOL_MODEL 2e-3
#define TOL_MODEL_GRAD 1e-2

static kdc_backend *g_cpu, *g_gpu;
static kdc_error g_err;

#define CK(call)                                                                                   \
    do {                                                                                           \
        kdc_status ck_st_ = (call);                                                                \
        ck_assert_msg(ck_st_ == KDC_OK, "%s: %s", #call, g_err.msg);                               \
    } while (0)

typedef struct pair {
    float *c, *g;
    size_t n;
} pair;

static float *up(kdc_backend *be, const float *h, size_t n)
{
    void *p = NULL;
    CK(be->alloc(be, n * sizeof(float), &p, &g_err));
    CK(be->copy_h2d(be, p, h, n * sizeof(float), &g_err));
    return p;
}

static pair both_rnd(size_t n, uint64_t seed, float lo, float hi)
{
    float *h = malloc(n * sizeof(float));
    ck_assert_ptr_nonnull(h);
    kdc_test_fill_uniform(h, n, seed, lo, hi);
    pair p = {up(g_cpu, h, n), up(g_gpu, h, n), n};
    free(h);
    return p;
}

/* Outputs start as NaN so that an op that forgets to write shows. */
static pair both_out(size_t n)
{
    float *h = malloc(n * sizeof(float));
    ck_assert_ptr_nonnull(h);
    for (size_t i = 0; i < n; i++)
        h[i] = NAN;
    pair p = {up(g_cpu, h, n), up(g_gpu, h, n), n};
    free(h);
    return p;
}

static void pfree(pair *p)
{
    g_cpu->free(g_cpu, p->c);
    g_gpu->free(g_gpu, p->g);
}

static float *down(kdc_backend *be, const float *d, size_t n)
{
    float *h = malloc(n * sizeof(float));
    ck_assert_ptr_nonnull(h);
    CK(be->copy_d2h(be, h, d, n * sizeof(float), &g_err));
    return h;
}

static void cmp(const char *what, const float *dc, const float *dg, size_t n, double tol)
{
    float *c = down(g_cpu, dc, n), *g = down(g_gpu, dg, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(isfinite(g[i]) || !isfinite(c[i]), "%s: gpu[%zu] = %g, cpu %g", what, i,
                      (double)g[i], (double)c[i]);
    double r = kdc_test_rel_err_f32(g, c, n);
    ck_assert_msg(r <= tol, "%s: relative error %.3g > %.3g", what, r, tol);
    free(c);
    free(g);
}

START_TEST(test_gates)
{
    const size_t n = 100003; /* not a multiple of any block size */
    pair x = both_rnd(n, 1, -3, 9), y = both_out(n), dy = both_rnd(n, 2, -1, 1), dx = both_out(n);
    CK(g_cpu->relu6_forward(g_cpu, n, x.c, y.c, &g_err));
    CK(g_gpu->relu6_forward(g_gpu, n, x.g, y.g, &g_err));
    cmp("relu6", y.c, y.g, n, 0);
    CK(g_cpu->relu6_backward(g_cpu, n, y.c, dy.c, dx.c, &g_err));
    CK(g_gpu->relu6_backward(g_gpu, n, y.g, dy.g, dx.g, &g_err));
    cmp("relu6 backward", dx.c, dx.g, n, 0);
    CK(g_cpu->sigmoid_forward(g_cpu, n, x.c, y.c, &g_err));
    CK(g_gpu->sigmoid_forward(g_gpu, n, x.g, y.g, &g_err));
    cmp("sigmoid", y.c, y.g, n, TOL_SMALL);
    CK(g_cpu->sigmoid_backward(g_cpu, n, y.c, dy.c, dx.c, &g_err));
    CK(g_gpu->sigmoid_backward(g_gpu, n, y.g, dy.g, dx.g, &g_err));
    cmp("sigmoid backward", dx.c, dx.g, n, TOL_SMALL);
    pfree(&x), pfree(&y), pfree(&dy), pfree(&dx);
}
END_TEST

START_TEST(test_channel_ops)
{
    const int n = 3, c = 24, hw = 7 * 7;
    const size_t nx = (size_t)n * c * hw, ns = (size_t)n * c;
    pair x = both_rnd(nx, 3, -1, 1), s = both_rnd(ns, 4, 0, 1), dy = both_rnd(nx, 5, -1, 1);
    pair y = both_out(nx), dx = both_out(nx), ds = both_out(ns);
    CK(g_cpu->channel_scale_forward(g_cpu, n, c, hw, x.c, s.c, y.c, &g_err));
    CK(g_gpu->channel_scale_forward(g_gpu, n, c, hw, x.g, s.g, y.g, &g_err));
    cmp("channel scale", y.c, y.g, nx, 0);
    CK(g_cpu->channel_scale_backward(g_cpu, n, c, hw, x.c, s.c, dy.c, dx.c, ds.c, &g_err));
    CK(g_gpu->channel_scale_backward(g_gpu, n, c, hw, x.g, s.g, dy.g, dx.g, ds.g, &g_err));
    cmp("channel scale dx", dx.c, dx.g, nx, TOL_SMALL);
    cmp("channel scale ds", ds.c, ds.g, ns, TOL_SUM);
    for (int g = 2; g <= 3; g++) {
        CK(g_cpu->channel_shuffle(g_cpu, n, c, g, hw, x.c, y.c, &g_err));
        CK(g_gpu->channel_shuffle(g_gpu, n, c, g, hw, x.g, y.g, &g_err));
        cmp("channel shuffle", y.c, y.g, nx, 0);
    }
    /* concatenation of a 10- and a 14-channel tensor into y, then a split of y */
    pair a = both_rnd((size_t)n * 10 * hw, 6, -1, 1), b = both_rnd((size_t)n * 14 * hw, 7, -1, 1);
    kdc_chan_copy_desc d1 = {
        .n = n, .hw = hw, .c = 10, .x_c = 10, .x_off = 0, .y_c = c, .y_off = 0};
    kdc_chan_copy_desc d2 = {
        .n = n, .hw = hw, .c = 14, .x_c = 14, .x_off = 0, .y_c = c, .y_off = 10};
    CK(g_cpu->channel_copy(g_cpu, &d1, a.c, y.c, &g_err));
    CK(g_cpu->channel_copy(g_cpu, &d2, b.c, y.c, &g_err));
    CK(g_gpu->channel_copy(g_gpu, &d1, a.g, y.g, &g_err));
    CK(g_gpu->channel_copy(g_gpu, &d2, b.g, y.g, &g_err));
    cmp("concat", y.c, y.g, nx, 0);
    pair part = both_out((size_t)n * 5 * hw);
    kdc_chan_copy_desc sp = {.n = n, .hw = hw, .c = 5, .x_c = c, .x_off = 7, .y_c = 5, .y_off = 0};
    CK(g_cpu->channel_copy(g_cpu, &sp, x.c, part.c, &g_err));
    CK(g_gpu->channel_copy(g_gpu, &sp, x.g, part.g, &g_err));
    cmp("split", part.c, part.g, part.n, 0);
    pfree(&x), pfree(&s), pfree(&dy), pfree(&y), pfree(&dx), pfree(&ds), pfree(&a), pfree(&b);
    pfree(&part);
}
END_TEST

START_TEST(test_avgpool_window)
{
    const int cases[][5] = {{15, 15, 3, 2, 1}, {8, 8, 2, 2, 0}, {9, 7, 3, 1, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kdc_pool2d_desc d = {.n = 2,
                             .c = 5,
                             .h_in = cases[i][0],
                             .w_in = cases[i][1],
                             .k = cases[i][2],
                             .stride = cases[i][3],
                             .pad = cases[i][4]};
        CK(kdc_pool2d_desc_init(&d, &g_err));
        size_t nx = (size_t)d.n * d.c * d.h_in * d.w_in, ny = (size_t)d.n * d.c * d.h_out * d.w_out;
        pair x = both_rnd(nx, 8 + i, -1, 1), y = both_out(ny), dy = both_rnd(ny, 20 + i, -1, 1),
             dx = both_out(nx);
        CK(g_cpu->avgpool2d_forward(g_cpu, &d, x.c, y.c, &g_err));
        CK(g_gpu->avgpool2d_forward(g_gpu, &d, x.g, y.g, &g_err));
        cmp("avgpool", y.c, y.g, ny, TOL_SMALL);
        CK(g_cpu->avgpool2d_backward(g_cpu, &d, dy.c, dx.c, &g_err));
        CK(g_gpu->avgpool2d_backward(g_gpu, &d, dy.g, dx.g, &g_err));
        cmp("avgpool backward", dx.c, dx.g, nx, TOL_SMALL);
        pfree(&x), pfree(&y), pfree(&dy), pfree(&dx);
    }
}
END_TEST

START_TEST(test_grouped_conv_bias)
{
    /* RegNetY's group-width convolution (groups = c / 8) and an SE 1x1 with bias */
    const int shapes[][9] = {{2, 48, 9, 9, 48, 3, 2, 1, 6}, {2, 48, 1, 1, 12, 1, 1, 0, 1}};
    for (size_t i = 0; i < 2; i++) {
        const int *s = shapes[i];
        kdc_conv2d_desc d = {.n = s[0],
                             .c_in = s[1],
                             .h_in = s[2],
                             .w_in = s[3],
                             .c_out = s[4],
                             .kh = s[5],
                             .kw = s[5],
                             .stride = s[6],
                             .pad = s[7],
                             .groups = s[8]};
        CK(kdc_conv2d_desc_init(&d, &g_err));
        size_t nx = (size_t)d.n * d.c_in * d.h_in * d.w_in;
        size_t nw = (size_t)d.c_out * (d.c_in / d.groups) * d.kh * d.kw;
        size_t ny = (size_t)d.n * d.c_out * d.h_out * d.w_out;
        pair x = both_rnd(nx, 30, -1, 1), w = both_rnd(nw, 31, -0.3f, 0.3f),
             b = both_rnd((size_t)d.c_out, 32, -1, 1), y = both_out(ny),
             dy = both_rnd(ny, 33, -1, 1), dx = both_out(nx), dw = both_out(nw),
             db = both_out((size_t)d.c_out);
        CK(g_cpu->conv2d_forward(g_cpu, &d, x.c, w.c, b.c, y.c, &g_err));
        CK(g_gpu->conv2d_forward(g_gpu, &d, x.g, w.g, b.g, y.g, &g_err));
        cmp("grouped conv", y.c, y.g, ny, TOL_CONV);
        CK(g_cpu->conv2d_backward(g_cpu, &d, x.c, w.c, dy.c, dx.c, dw.c, db.c, &g_err));
        CK(g_gpu->conv2d_backward(g_gpu, &d, x.g, w.g, dy.g, dx.g, dw.g, db.g, &g_err));
        cmp("grouped conv dx", dx.c, dx.g, nx, TOL_CONV);
        cmp("grouped conv dw", dw.c, dw.g, nw, TOL_CONV);
        cmp("grouped conv dbias", db.c, db.g, (size_t)d.c_out, TOL_CONV);
        pfree(&x), pfree(&w), pfree(&b), pfree(&y), pfree(&dy), pfree(&dx), pfree(&dw);
        pfree(&db);
    }
}
END_TEST

/* ---- whole models: the new architectures on both backends ---- */

static void model_case(const char *arch, int size)
{
    const int n = 2, classes = 10;
    kdc_model *mc = NULL, *mg = NULL;
    CK(kdc_model_create(arch, classes, g_cpu, 7, &mc, &g_err));
    CK(kdc_model_create(arch, classes, g_gpu, 7, &mg, &g_err));
    size_t nx = (size_t)n * 3 * size * size, nl = (size_t)n * classes;
    pair x = both_rnd(nx, 61, -2, 2);
    const float *lc, *lg, *fc, *fg;
    char what[128];
    CK(kdc_model_forward(mc, x.c, n, size, size, 0, &lc, NULL, &g_err));
    CK(kdc_model_forward(mg, x.g, n, size, size, 0, &lg, NULL, &g_err));
    snprintf(what, sizeof what, "%s eval logits", arch);
    cmp(what, lc, lg, nl, TOL_MODEL);
    CK(kdc_model_infer(mc, x.c, n, size, size, &lc, NULL, &g_err));
    CK(kdc_model_infer(mg, x.g, n, size, size, &lg, NULL, &g_err));
    snprintf(what, sizeof what, "%s infer logits", arch);
    cmp(what, lc, lg, nl, TOL_MODEL);
    CK(kdc_model_forward(mc, x.c, n, size, size, 1, &lc, &fc, &g_err));
    CK(kdc_model_forward(mg, x.g, n, size, size, 1, &lg, &fg, &g_err));
    snprintf(what, sizeof what, "%s train logits", arch);
    cmp(what, lc, lg, nl, TOL_MODEL);
    pair dl = both_rnd(nl, 62, -0.1f, 0.1f);
    kdc_grad_set *gc = NULL, *gg = NULL;
    CK(kdc_model_grads_alloc(mc, &gc, &g_err));
    CK(kdc_model_grads_alloc(mg, &gg, &g_err));
    CK(kdc_model_backward(mc, dl.c, NULL, gc, NULL, &g_err));
    CK(kdc_model_backward(mg, dl.g, NULL, gg, NULL, &g_err));
    snprintf(what, sizeof what, "%s all gradients", arch);
    cmp(what, gc->flat, gg->flat, gc->flat_numel, TOL_MODEL_GRAD);
    kdc_model_grads_free(mc, gc);
    kdc_model_grads_free(mg, gg);
    pfree(&x), pfree(&dl);
    kdc_model_free(mc);
    kdc_model_free(mg);
}

/* One small input per family; the list grows with the zoo. */
static const struct {
    const char *arch;
    int size;
} MODELS[] = {
    {"mobilenet_v2", 64}, {"shufflenet_v2_x0_5", 64}, {"regnet_y_400mf", 64}, {"resnet20", 32},
    {"vgg8", 32},         {"MobileNetV2", 32},        {"ShuffleV1", 32},      {"ShuffleV2", 32},
    /* a 1x1 conv with padding 1 and a 1x1-conv-named classifier */
    {"mobilenetv2_tinyimagenet", 64},
};

START_TEST(test_models)
{
    const char *const *known = kdc_model_arch_names();
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) {
        int found = 0;
        for (size_t k = 0; known[k]; k++)
            found |= strcmp(known[k], MODELS[i].arch) == 0;
        ck_assert_msg(found, "%s is not in the zoo", MODELS[i].arch);
        model_case(MODELS[i].arch, MODELS[i].size);
    }
}
END_TEST

int main(void)
{
    kdc_error err = {0};
    if (kdc_backend_cuda_create(0, &g_gpu, &err) != KDC_OK) {
        printf("check-gpu (zoo): not run, no usable GPU: %s\n", err.msg);
        return 0;
    }
    if (kdc_backend_cpu_create(0, &g_cpu, &err) != KDC_OK) {
        fprintf(stderr, "check-gpu (zoo): %s\n", err.msg);
        kdc_backend_destroy(g_gpu);
        return 1;
    }
    Suite *s = suite_create("gpu_zoo");
    TCase *ops = tcase_create("ops");
    tcase_set_timeout(ops, 300);
    tcase_add_test(ops, test_gates);
    tcase_add_test(ops, test_channel_ops);
    tcase_add_test(ops, test_avgpool_window);
    tcase_add_test(ops, test_grouped_conv_bias);
    suite_add_tcase(s, ops);
    TCase *models = tcase_create("models");
    tcase_set_timeout(models, 600);
    tcase_add_test(models, test_models);
    suite_add_tcase(s, models);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* a CUDA context does not survive fork() */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    kdc_backend_destroy(g_cpu);
    kdc_backend_destroy(g_gpu);
    return failed ? 1 : 0;
}
