/* test_layout.c - the blocked activation layout (op_desc.h) changes no float:
 * a model whose activations stay blocked between
 * oneDNN convolutions gives bit for bit the logits, features, gradients (one
 * stream with the input gradient, and DOT's two streams), BN running
 * statistics and folded-inference outputs of the same model in NCHW, for one
 * architecture of each family of ops. Both
 * block sizes are run (16 is AVX-512's, 8 AVX2's), whatever this CPU uses.
 * Also the convolution with its ReLU fused (inference) against the two ops. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/models/model.h"
#include "common/nn/backend_cpu.h"
#include "tests/helpers/testutil.h"

static const int BLOCKS[] = {16, 8};

/* one architecture per family of ops: torchvision ResNets (max pool, 1x1 maps
 * at 64 px), bottlenecks, depthwise, CIFAR ResNets (16-channel stages), pre-
 * activation WRN, ReLU6, channel split / shuffle, squeeze-excitation, VGG's
 * biased convolutions */
static const char *const ARCHS[] = {"resnet18",       "resnet50",         "mobilenet_v1",
                                    "resnet8x4",      "resnet20",         "wrn_16_2",
                                    "mobilenet_v2",   "shufflenet_v2_x0_5", "regnet_y_400mf",
                                    "vgg8"};
#define N_ARCHS ((int)(sizeof ARCHS / sizeof ARCHS[0]))

typedef struct run {
    float *logits, *feats, *grads, *dinput, *dual0, *dual1, *params, *infer;
} run;

static float *dup(const float *p, size_t n)
{
    float *q = malloc(n * sizeof *q);
    ck_assert_ptr_nonnull(q);
    memcpy(q, p, n * sizeof *q);
    return q;
}

static void run_free(run *r)
{
    free(r->logits), free(r->feats), free(r->grads), free(r->dinput);
    free(r->dual0), free(r->dual1), free(r->params), free(r->infer);
}

/* Every float a model produces in one train step and one inference. */
static void run_model(kdc_backend *be, const char *arch, int b, int hw, run *r, int *blocked)
{
    kdc_error e;
    kdc_model *m;
    ck_assert_msg(kdc_model_create(arch, 10, be, 3, &m, &e) == KDC_OK, "%s", e.msg);
    *blocked = kdc_model_blocked_nodes(m);
    size_t nx = (size_t)b * 3 * hw * hw, nl = (size_t)b * 10;
    size_t nf = (size_t)b * kdc_model_feature_dim(m);
    float *x = malloc(nx * sizeof *x), *dl2 = malloc(2 * nl * sizeof *dl2);
    float *df = malloc(nf * sizeof *df), *dx = malloc(nx * sizeof *dx);
    kdc_test_fill_uniform(x, nx, 1, -2.0f, 2.0f);
    kdc_test_fill_uniform(dl2, 2 * nl, 2, -0.5f, 0.5f);
    kdc_test_fill_uniform(df, nf, 3, -0.1f, 0.1f);
    kdc_grad_set *g, *g0, *g1;
    ck_assert(kdc_model_grads_alloc(m, &g, &e) == KDC_OK &&
              kdc_model_grads_alloc(m, &g0, &e) == KDC_OK &&
              kdc_model_grads_alloc(m, &g1, &e) == KDC_OK);
    const float *z, *f;
    ck_assert_msg(kdc_model_forward(m, x, b, hw, hw, 1, &z, &f, &e) == KDC_OK, "%s", e.msg);
    r->logits = dup(z, nl);
    r->feats = dup(f, nf);
    ck_assert_msg(kdc_model_backward(m, dl2, df, g, dx, &e) == KDC_OK, "%s", e.msg);
    ck_assert_msg(kdc_model_backward_dual(m, dl2, NULL, df, g0, g1, &e) == KDC_OK, "%s", e.msg);
    r->grads = dup(g->flat, g->flat_numel);
    r->dinput = dup(dx, nx);
    r->dual0 = dup(g0->flat, g0->flat_numel);
    r->dual1 = dup(g1->flat, g1->flat_numel);
    /* every parameter and buffer, running statistics included */
    kdc_param_table *pt = kdc_model_params(m);
    size_t total = 0;
    for (int i = 0; i < pt->count; i++)
        total += kdc_tensor_nbytes(&pt->items[i].value);
    unsigned char *all = malloc(total ? total : 1), *p = all;
    for (int i = 0; i < pt->count; i++) {
        size_t nb = kdc_tensor_nbytes(&pt->items[i].value);
        memcpy(p, pt->items[i].value.data, nb);
        p += nb;
    }
    r->params = (float *)all;
    ck_assert_msg(kdc_model_infer(m, x, b, hw, hw, &z, NULL, &e) == KDC_OK, "%s", e.msg);
    r->infer = dup(z, nl);
    kdc_model_grads_free(m, g);
    kdc_model_grads_free(m, g0);
    kdc_model_grads_free(m, g1);
    free(x), free(dl2), free(df), free(dx);
    kdc_model_free(m);
}

static void same(const char *arch, int blk, const char *what, const float *a, const float *b,
                 size_t n)
{
    size_t k = 0;
    while (k < n && !memcmp(&a[k], &b[k], sizeof *a))
        k++;
    ck_assert_msg(k == n, "%s, blocks of %d: %s differ at %zu of %zu (%.9g vs NCHW %.9g)", arch,
                  blk, what, k, n, k < n ? a[k] : 0.0, k < n ? b[k] : 0.0);
}

START_TEST(test_blocked_equals_nchw)
{
    const char *arch = ARCHS[_i];
    kdc_error e;
    kdc_backend *be;
    ck_assert_msg(kdc_backend_cpu_create(2, &be, &e) == KDC_OK, "%s", e.msg);
    if (!be->act_blk) {
        kdc_backend_destroy(be);
        return; /* KDC_CONV=ref or KDC_LAYOUT=nchw: nothing blocked to compare */
    }
    /* ImageNet models at 64 px (down to 2x2 maps), CIFAR ones at 32 */
    int hw = strstr(arch, "x4") || strstr(arch, "wrn") || strstr(arch, "vgg8") ? 32 : 64;
    kdc_backend nchw = *be;
    nchw.act_blk = 0;
    run ref, got;
    int blocked;
    run_model(&nchw, arch, 2, hw, &ref, &blocked);
    ck_assert_int_eq(blocked, 0);
    kdc_model *m;
    ck_assert(kdc_model_create(arch, 10, be, 3, &m, &e) == KDC_OK);
    size_t nl = 20, nf = 2 * (size_t)kdc_model_feature_dim(m), nx = 2 * 3 * (size_t)hw * hw;
    size_t ng, np = 0;
    kdc_model_flat_weights(m, &ng);
    kdc_param_table *pt = kdc_model_params(m);
    for (int i = 0; i < pt->count; i++)
        np += kdc_tensor_nbytes(&pt->items[i].value);
    kdc_model_free(m);
    for (size_t k = 0; k < sizeof BLOCKS / sizeof BLOCKS[0]; k++) {
        kdc_backend blk = *be;
        blk.act_blk = BLOCKS[k];
        run_model(&blk, arch, 2, hw, &got, &blocked);
        ck_assert_msg(blocked > 0, "%s: no activation kept in blocks of %d", arch, BLOCKS[k]);
        same(arch, BLOCKS[k], "train logits", got.logits, ref.logits, nl);
        same(arch, BLOCKS[k], "features", got.feats, ref.feats, nf);
        same(arch, BLOCKS[k], "gradients", got.grads, ref.grads, ng);
        same(arch, BLOCKS[k], "input gradient", got.dinput, ref.dinput, nx);
        same(arch, BLOCKS[k], "DOT stream 0 gradients", got.dual0, ref.dual0, ng);
        same(arch, BLOCKS[k], "DOT stream 1 gradients", got.dual1, ref.dual1, ng);
        ck_assert_msg(!memcmp(got.params, ref.params, np), "%s, blocks of %d: parameters or "
                      "running statistics differ", arch, BLOCKS[k]);
        same(arch, BLOCKS[k], "folded inference logits", got.infer, ref.infer, nl);
        run_free(&got);
    }
    run_free(&ref);
    kdc_backend_destroy(be);
}
END_TEST

/* desc.relu (the inference fusion) equals the convolution, then a ReLU, on the
 * oneDNN path (post-op), the 1x1-map GEMM path and the reference path. */
START_TEST(test_conv_relu_fused)
{
    static const kdc_conv2d_desc SHAPES[] = {
        {.n = 2, .c_in = 16, .h_in = 9, .w_in = 9, .c_out = 32, .kh = 3, .kw = 3, .stride = 1,
         .pad = 1, .groups = 1, .x_blk = 16, .y_blk = 16},
        {.n = 2, .c_in = 3, .h_in = 12, .w_in = 12, .c_out = 16, .kh = 7, .kw = 7, .stride = 2,
         .pad = 3, .groups = 1},
        {.n = 3, .c_in = 32, .h_in = 6, .w_in = 6, .c_out = 32, .kh = 3, .kw = 3, .stride = 1,
         .pad = 1, .groups = 32, .x_blk = 8, .y_blk = 8},
        {.n = 2, .c_in = 32, .h_in = 1, .w_in = 1, .c_out = 16, .kh = 3, .kw = 3, .stride = 1,
         .pad = 1, .groups = 1},
    };
    const char *conv = _i ? "ref" : "dnnl";
    kdc_error e;
    kdc_backend *be;
    setenv("KDC_CONV", conv, 1);
    ck_assert_msg(kdc_backend_cpu_create(2, &be, &e) == KDC_OK, "%s", e.msg);
    unsetenv("KDC_CONV");
    ck_assert(be->conv_relu);
    for (size_t k = 0; k < sizeof SHAPES / sizeof SHAPES[0]; k++) {
        kdc_conv2d_desc d = SHAPES[k];
        if (!be->act_blk)
            d.x_blk = d.y_blk = 0;
        ck_assert_msg(kdc_conv2d_desc_init(&d, &e) == KDC_OK, "%s", e.msg);
        size_t nx = (size_t)d.n * d.c_in * d.h_in * d.w_in;
        size_t nw = (size_t)d.c_out * (d.c_in / d.groups) * d.kh * d.kw;
        size_t ny = (size_t)d.n * d.c_out * d.h_out * d.w_out;
        float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *b = malloc(64 * 4);
        float *y = malloc(ny * sizeof *y), *yr = malloc(ny * sizeof *yr);
        kdc_test_fill_uniform(x, nx, 10 + k, -1.0f, 1.0f);
        kdc_test_fill_uniform(w, nw, 20 + k, -0.5f, 0.5f);
        kdc_test_fill_uniform(b, 64, 30 + k, -0.3f, 0.3f);
        ck_assert_msg(be->conv2d_forward(be, &d, x, w, b, y, &e) == KDC_OK, "%s", e.msg);
        size_t neg = 0;
        for (size_t i = 0; i < ny; i++) {
            neg += y[i] < 0;
            y[i] = y[i] > 0 ? y[i] : 0.0f;
        }
        d.relu = 1;
        ck_assert_msg(be->conv2d_forward(be, &d, x, w, b, yr, &e) == KDC_OK, "%s", e.msg);
        ck_assert_msg(neg > 0, "shape %zu: no negative output to clip", k);
        same(conv, (int)k, "conv + fused ReLU", yr, y, ny);
        free(x), free(w), free(b), free(y), free(yr);
    }
    kdc_backend_destroy(be);
}
END_TEST

/* KDC_LAYOUT: nchw turns the blocks off, blocked keeps this CPU's, anything
 * else is refused at backend creation with the accepted values named. */
START_TEST(test_layout_env)
{
    kdc_error e;
    kdc_backend *be = NULL;
    setenv("KDC_LAYOUT", "nchw", 1);
    ck_assert_msg(kdc_backend_cpu_create(1, &be, &e) == KDC_OK, "%s", e.msg);
    ck_assert_int_eq(be->act_blk, 0);
    kdc_backend_destroy(be);
    setenv("KDC_LAYOUT", "blocked", 1);
    ck_assert_msg(kdc_backend_cpu_create(1, &be, &e) == KDC_OK, "%s", e.msg);
    int blocked = be->act_blk;
    kdc_backend_destroy(be);
    unsetenv("KDC_LAYOUT");
    ck_assert_msg(kdc_backend_cpu_create(1, &be, &e) == KDC_OK, "%s", e.msg);
    ck_assert_int_eq(be->act_blk, blocked); /* blocked is the default */
    kdc_backend_destroy(be);
    be = NULL;
    setenv("KDC_LAYOUT", "nhwc", 1);
    ck_assert_int_eq(kdc_backend_cpu_create(1, &be, &e), KDC_EINVAL);
    unsetenv("KDC_LAYOUT");
    ck_assert_ptr_null(be);
    ck_assert_msg(strstr(e.msg, "KDC_LAYOUT=nhwc") && strstr(e.msg, "nchw or blocked"), "%s",
                  e.msg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("layout");
    TCase *tc = tcase_create("blocked");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_blocked_equals_nchw, 0, N_ARCHS);
    tcase_add_loop_test(tc, test_conv_relu_fused, 0, 2);
    tcase_add_test(tc, test_layout_env);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
