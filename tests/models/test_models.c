/* test_models.c - every architecture against PyTorch (scripts/ref/ref_models.py):
 * eval logits and pooled features, the BN-folded inference path, a train-mode
 * forward + backward (every parameter gradient, the input gradient, the BN
 * running statistics after the step), weights loaded through
 * formats/checkpoint (F32, F16 and BF16 files); plus parameter tables,
 * initialisation and checkpoint errors; DOT's fused two-stream backward
 * against two single passes. Runs on the CPU backend. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/models/model.h"
#include "common/nn/backend_cpu.h"
#include "formats/checkpoint.h"
#include "tests/helpers/testutil.h"

#define SUITE "models"

typedef struct arch_case {
    const char *arch;
    int classes, size, batch;
} arch_case;

/* must match ARCHS in scripts/ref/ref_models.py */
static const arch_case ARCHS[] = {
    {"resnet18", 16, 64, 2},      {"resnet34", 16, 64, 2},     {"resnet50", 16, 64, 2},
    {"resnet101", 16, 64, 2},     {"resnet152", 16, 64, 2},    {"wide_resnet50_2", 16, 64, 2},
    {"mobilenet_v1", 16, 64, 2},  {"resnet8x4", 10, 32, 2},    {"resnet32x4", 10, 32, 2},
    {"wrn_16_2", 10, 32, 2},      {"wrn_40_2", 10, 32, 2},
};
#define N_ARCHS ((int)(sizeof ARCHS / sizeof ARCHS[0]))

/* must match TRAIN in scripts/ref/ref_models.py */
static const arch_case TRAIN[] = {
    {"resnet18", 16, 64, 4}, {"resnet50", 16, 64, 4}, {"mobilenet_v1", 16, 96, 8},
    {"resnet8x4", 10, 32, 4},
};

static kdc_backend *be;

static void setup(void)
{
    kdc_error e;
    ck_assert_msg(kdc_backend_cpu_create(2, &be, &e) == KDC_OK, "%s", e.msg);
}

static void teardown(void)
{
    kdc_backend_destroy(be);
}

static kdc_model *load_model(const char *arch, int classes)
{
    kdc_error e;
    kdc_model *m;
    ck_assert_msg(kdc_model_create(arch, classes, be, 1, &m, &e) == KDC_OK, "%s", e.msg);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s.safetensors", kdc_test_fixture_root(), SUITE, arch);
    ck_assert_msg(kdc_checkpoint_load(path, kdc_model_params(m), be, &e) == KDC_OK, "%s", e.msg);
    return m;
}

static void assert_close_f64(const char *what, const float *got, const double *ref, size_t n,
                             double tol)
{
    double r = kdc_test_rel_err_f64(got, ref, n);
    ck_assert_msg(r <= tol, "%s: relative error %.3g > %.3g", what, r, tol);
}

START_TEST(test_eval_vs_pytorch)
{
    const arch_case *c = &ARCHS[_i];
    kdc_model *m = load_model(c->arch, c->classes);
    size_t nx = (size_t)c->batch * 3 * c->size * c->size;
    size_t nl = (size_t)c->batch * c->classes;
    size_t nf = (size_t)c->batch * kdc_model_feature_dim(m);
    char name[128];
    snprintf(name, sizeof name, "%s_x", c->arch);
    float *x = kdc_test_load_f32(SUITE, name, nx, NULL);
    snprintf(name, sizeof name, "%s_logits", c->arch);
    double *rl = kdc_test_load_f64(SUITE, name, nl, NULL);
    snprintf(name, sizeof name, "%s_features", c->arch);
    double *rf = kdc_test_load_f64(SUITE, name, nf, NULL);

    kdc_error e;
    const float *logits, *feats;
    ck_assert_msg(kdc_model_forward(m, x, c->batch, c->size, c->size, 0, &logits, &feats, &e) ==
                      KDC_OK,
                  "%s", e.msg);
    snprintf(name, sizeof name, "%s eval logits", c->arch);
    assert_close_f64(name, logits, rl, nl, 1e-4);
    snprintf(name, sizeof name, "%s eval features", c->arch);
    assert_close_f64(name, feats, rf, nf, 1e-4);
    float *eval_logits = malloc(nl * sizeof *eval_logits);
    memcpy(eval_logits, logits, nl * sizeof *eval_logits);

    /* the folded inference path: same numbers, twice (buffers reused) */
    for (int rep = 0; rep < 2; rep++) {
        ck_assert_msg(kdc_model_infer(m, x, c->batch, c->size, c->size, &logits, &feats, &e) ==
                          KDC_OK,
                      "%s", e.msg);
        snprintf(name, sizeof name, "%s folded inference logits", c->arch);
        assert_close_f64(name, logits, rl, nl, 1e-4);
        snprintf(name, sizeof name, "%s folded inference features", c->arch);
        assert_close_f64(name, feats, rf, nf, 1e-4);
        KDC_ASSERT_CLOSE_F32("inference vs eval forward", logits, eval_logits, nl, 1e-4);
    }
    free(eval_logits);
    free(x);
    free(rl);
    free(rf);
    kdc_model_free(m);
}
END_TEST

/* Mean cross-entropy gradient at the logits, (softmax - onehot) / B, in double. */
static void ce_grad(const float *logits, const int64_t *y, int b, int c, float *d)
{
    for (int i = 0; i < b; i++) {
        const float *z = logits + (size_t)i * c;
        double mx = z[0], s = 0;
        for (int j = 1; j < c; j++)
            mx = z[j] > mx ? z[j] : mx;
        for (int j = 0; j < c; j++)
            s += exp(z[j] - mx);
        for (int j = 0; j < c; j++)
            d[(size_t)i * c + j] = (float)((exp(z[j] - mx) / s - (j == y[i])) / b);
    }
}

/* The tolerance of the gradient checks of `arch`: 1e-3, or twice the worst
 * error of PyTorch's own float32 run of the same step against float64 (over
 * every parameter and the input) when that is larger. Randomly initialised
 * resnet50 and mobilenet_v1 in train mode are so ill-conditioned that float32
 * itself misses by percents on some tensors (docs/MODELS.md); resnet18 and
 * resnet8x4 are judged at 1e-3 (PyTorch's float32 error there is ~1e-6). */
static double grad_tolerance(kdc_model *m, const char *arch)
{
    kdc_param_table *pt = kdc_model_params(m);
    char name[256];
    snprintf(name, sizeof name, "%s_f32err_dx", arch);
    double *e = kdc_test_load_f64(SUITE, name, 1, NULL);
    double worst = e[0];
    free(e);
    for (int i = 0; i < pt->count; i++) {
        if (pt->items[i].kind != KDC_PARAM_WEIGHT)
            continue;
        snprintf(name, sizeof name, "%s_f32err_%s", arch, pt->items[i].name);
        e = kdc_test_load_f64(SUITE, name, 1, NULL);
        worst = e[0] > worst ? e[0] : worst;
        free(e);
    }
    double tol = 2 * worst > 1e-3 ? 2 * worst : 1e-3;
    if (tol > 1e-3)
        fprintf(stderr, "test_models: %s: PyTorch's float32 gradients miss float64 by up to %.2g; "
                        "gradients judged at %.2g\n", arch, worst, tol);
    return tol;
}

/* Compares every parameter gradient of g with <arch>_grad<tag>_<name>. */
static void check_grads(kdc_model *m, const char *arch, const char *tag, kdc_grad_set *g,
                        double tol)
{
    kdc_param_table *pt = kdc_model_params(m);
    for (int i = 0; i < pt->count; i++) {
        if (pt->items[i].kind != KDC_PARAM_WEIGHT)
            continue;
        char name[256];
        size_t n = kdc_tensor_numel(&g->grad[i]);
        snprintf(name, sizeof name, "%s_grad%s_%s", arch, tag, pt->items[i].name);
        double *ref = kdc_test_load_f64(SUITE, name, n, NULL);
        snprintf(name, sizeof name, "%s gradient%s of %s", arch, tag, pt->items[i].name);
        assert_close_f64(name, g->grad[i].data, ref, n, tol);
        free(ref);
    }
}

START_TEST(test_train_step_vs_pytorch)
{
    const arch_case *c = &TRAIN[_i];
    const char *a = c->arch;
    kdc_model *m = load_model(a, c->classes);
    int b = c->batch, hw = c->size;
    size_t nx = (size_t)b * 3 * hw * hw, nl = (size_t)b * c->classes;
    char name[256];
    snprintf(name, sizeof name, "%s_tx", a);
    float *x = kdc_test_load_f32(SUITE, name, nx, NULL);
    snprintf(name, sizeof name, "%s_ty", a);
    int64_t *y = kdc_test_load_i64(SUITE, name, (size_t)b, NULL);
    snprintf(name, sizeof name, "%s_tlogits", a);
    double *rl = kdc_test_load_f64(SUITE, name, nl, NULL);

    kdc_error e;
    const float *logits, *feats;
    ck_assert_msg(kdc_model_forward(m, x, b, hw, hw, 1, &logits, &feats, &e) == KDC_OK, "%s",
                  e.msg);
    snprintf(name, sizeof name, "%s train-mode logits", a);
    assert_close_f64(name, logits, rl, nl, 1e-4);
    float *dl = malloc(nl * sizeof *dl);
    ce_grad(logits, y, b, c->classes, dl);

    kdc_grad_set *g;
    ck_assert_msg(kdc_model_grads_alloc(m, &g, &e) == KDC_OK, "%s", e.msg);
    float *dx = malloc(nx * sizeof *dx);
    ck_assert_msg(kdc_model_backward(m, dl, NULL, g, dx, &e) == KDC_OK, "%s", e.msg);
    double tol = grad_tolerance(m, a);
    check_grads(m, a, "", g, tol);
    snprintf(name, sizeof name, "%s_dx", a);
    double *rdx = kdc_test_load_f64(SUITE, name, nx, NULL);
    snprintf(name, sizeof name, "%s input gradient", a);
    assert_close_f64(name, dx, rdx, nx, tol);

    /* running statistics and counters after the step */
    kdc_param_table *pt = kdc_model_params(m);
    for (int i = 0; i < pt->count; i++) {
        kdc_param *p = &pt->items[i];
        if (p->kind != KDC_PARAM_BUFFER)
            continue;
        snprintf(name, sizeof name, "%s_after_%s", a, p->name);
        if (p->value.dtype == KDC_I64) {
            int64_t *r = kdc_test_load_i64(SUITE, name, 1, NULL);
            ck_assert_msg(*(int64_t *)p->value.data == r[0], "%s: %lld != %lld", name,
                          (long long)*(int64_t *)p->value.data, (long long)r[0]);
            free(r);
        } else {
            size_t n = kdc_tensor_numel(&p->value);
            double *r = kdc_test_load_f64(SUITE, name, n, NULL);
            assert_close_f64(name, p->value.data, r, n, 1e-4);
            free(r);
        }
    }

    if (strcmp(a, "resnet8x4") == 0) {
        /* a second backward after the same forward, with a gradient at the
         * pooled features (CE + sum(features * R)), into another set; then
         * the first one again, which must come back bit for bit */
        size_t nf = (size_t)b * kdc_model_feature_dim(m);
        float *r = kdc_test_load_f32(SUITE, "resnet8x4_dfeat", nf, NULL);
        kdc_grad_set *g2, *g3;
        ck_assert(kdc_model_grads_alloc(m, &g2, &e) == KDC_OK);
        ck_assert(kdc_model_grads_alloc(m, &g3, &e) == KDC_OK);
        ck_assert_msg(kdc_model_backward(m, dl, r, g2, dx, &e) == KDC_OK, "%s", e.msg);
        check_grads(m, a, "2", g2, tol);
        double *rdx2 = kdc_test_load_f64(SUITE, "resnet8x4_dx2", nx, NULL);
        assert_close_f64("resnet8x4 input gradient with dfeatures", dx, rdx2, nx, 1e-3);
        ck_assert_msg(kdc_model_backward(m, dl, NULL, g3, NULL, &e) == KDC_OK, "%s", e.msg);
        ck_assert(memcmp(g->flat, g3->flat, g->flat_numel * sizeof(float)) == 0);
        kdc_model_grads_free(m, g2);
        kdc_model_grads_free(m, g3);
        free(rdx2);
        free(r);
    }
    kdc_model_grads_free(m, g);
    free(x);
    free(y);
    free(rl);
    free(dl);
    free(dx);
    free(rdx);
    kdc_model_free(m);
}
END_TEST

START_TEST(test_params_and_init)
{
    kdc_error e;
    kdc_model *m, *m2, *m3;
    ck_assert(kdc_model_create("resnet18", 1000, be, 7, &m, &e) == KDC_OK);
    ck_assert(kdc_model_create("resnet18", 1000, be, 7, &m2, &e) == KDC_OK);
    ck_assert(kdc_model_create("resnet18", 1000, be, 8, &m3, &e) == KDC_OK);
    /* torchvision: sum(p.numel() for p in resnet18().parameters()) */
    ck_assert_uint_eq(kdc_model_param_count(m), 11689512);
    ck_assert_int_eq(kdc_model_feature_dim(m), 512);
    ck_assert_int_eq(kdc_model_num_classes(m), 1000);
    kdc_param_table *pt = kdc_model_params(m);
    ck_assert_int_eq(pt->count, 122); /* len(resnet18().state_dict()) */
    ck_assert_str_eq(pt->items[0].name, "conv1.weight");
    ck_assert_str_eq(pt->items[pt->count - 1].name, "fc.bias");
    int found = 0;
    for (int i = 0; i < pt->count; i++)
        if (strcmp(pt->items[i].name, "layer2.0.downsample.1.num_batches_tracked") == 0) {
            found = 1;
            ck_assert_int_eq(pt->items[i].value.dtype, KDC_I64);
            ck_assert_int_eq(pt->items[i].value.ndim, 0);
        }
    ck_assert(found);
    size_t n;
    float *w = kdc_model_flat_weights(m, &n), *w2 = kdc_model_flat_weights(m2, &n),
          *w3 = kdc_model_flat_weights(m3, &n);
    ck_assert(memcmp(w, w2, n * sizeof *w) == 0);
    ck_assert(memcmp(w, w3, n * sizeof *w) != 0);
    kdc_model_free(m3);
    /* conv1: kaiming_normal fan_out = 64 * 7 * 7 */
    const float *c1 = pt->items[0].value.data;
    double s2 = 0;
    for (int i = 0; i < 64 * 3 * 49; i++)
        s2 += (double)c1[i] * c1[i];
    double std = sqrt(s2 / (64 * 3 * 49)), want = sqrt(2.0 / (64 * 49));
    ck_assert_msg(fabs(std / want - 1) < 0.05, "conv1 std %g, want %g", std, want);
    /* BN: weight 1, bias 0, running var 1; fc within +-1/sqrt(512) */
    ck_assert(((float *)pt->items[1].value.data)[5] == 1.0f);
    ck_assert(((float *)pt->items[2].value.data)[5] == 0.0f);
    ck_assert(((float *)pt->items[4].value.data)[5] == 1.0f);
    const float *fc = pt->items[pt->count - 2].value.data;
    float mx = 0;
    for (int i = 0; i < 1000 * 512; i++)
        mx = fabsf(fc[i]) > mx ? fabsf(fc[i]) : mx;
    ck_assert(mx <= 1.0f / sqrtf(512.0f) && mx > 0.9f / sqrtf(512.0f));

    /* backward before a train forward is refused */
    kdc_grad_set *g;
    ck_assert(kdc_model_grads_alloc(m, &g, &e) == KDC_OK);
    float dl[1000] = {0};
    ck_assert_int_eq(kdc_model_backward(m, dl, NULL, g, NULL, &e), KDC_EINVAL);
    kdc_model_grads_free(m, g);

    ck_assert_int_eq(kdc_model_create("resnet19", 10, be, 1, &m3, &e), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(e.msg, "resnet19"));
    ck_assert_int_eq(kdc_model_create("resnet18", 0, be, 1, &m3, &e), KDC_EINVAL);
    kdc_model_free(m);
    kdc_model_free(m2);
    /* every architecture: trainable scalars, state_dict entries and feature
     * width as PyTorch counts them (torchvision / mdistiller definitions) */
    static const struct {
        const char *arch;
        int classes;
        size_t numel;
        int entries, dim;
    } counts[] = {
        {"resnet18", 1000, 11689512, 122, 512},     {"resnet34", 1000, 21797672, 218, 512},
        {"resnet50", 1000, 25557032, 320, 2048},    {"resnet101", 1000, 44549160, 626, 2048},
        {"resnet152", 1000, 60192808, 932, 2048},   {"wide_resnet50_2", 1000, 68883240, 320, 2048},
        {"mobilenet_v1", 1000, 4231976, 164, 1024}, {"resnet8x4", 100, 1233540, 62, 256},
        {"resnet32x4", 100, 7433860, 206, 256},     {"wrn_16_2", 100, 703284, 83, 128},
        {"wrn_40_2", 100, 2255156, 227, 128},
    };
    int n_names = 0;
    while (kdc_model_arch_names()[n_names])
        n_names++;
    /* the zoo's 26 are pinned against PyTorch's own counts in test_zoo.c (KEYS) */
    ck_assert_int_eq(n_names, (int)(sizeof counts / sizeof counts[0]) + 26);
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        ck_assert_msg(kdc_model_create(counts[i].arch, counts[i].classes, be, 1, &m, &e) ==
                          KDC_OK,
                      "%s", e.msg);
        ck_assert_msg(kdc_model_param_count(m) == counts[i].numel, "%s: %zu parameters",
                      counts[i].arch, kdc_model_param_count(m));
        ck_assert_int_eq(kdc_model_params(m)->count, counts[i].entries);
        ck_assert_int_eq(kdc_model_feature_dim(m), counts[i].dim);
        kdc_model_free(m);
    }
}
END_TEST

START_TEST(test_checkpoint_errors_and_roundtrip)
{
    kdc_error e;
    char path[4096];
    kdc_model *m;
    /* wrong number of classes: fc shapes differ, both named */
    ck_assert(kdc_model_create("resnet8x4", 100, be, 1, &m, &e) == KDC_OK);
    snprintf(path, sizeof path, "%s/%s/resnet8x4.safetensors", kdc_test_fixture_root(), SUITE);
    ck_assert_int_eq(kdc_checkpoint_load(path, kdc_model_params(m), be, &e), KDC_EMISMATCH);
    ck_assert_msg(strstr(e.msg, "'fc.weight'") && strstr(e.msg, "[10, 256]") &&
                      strstr(e.msg, "[100, 256]"),
                  "%s", e.msg);
    kdc_model_free(m);
    /* resnet34 reading resnet18's file: missing tensors */
    ck_assert(kdc_model_create("resnet34", 16, be, 1, &m, &e) == KDC_OK);
    snprintf(path, sizeof path, "%s/%s/resnet18.safetensors", kdc_test_fixture_root(), SUITE);
    ck_assert_int_eq(kdc_checkpoint_load(path, kdc_model_params(m), be, &e), KDC_EMISMATCH);
    ck_assert_msg(strstr(e.msg, "missing tensor 'layer1.2.conv1.weight'"), "%s", e.msg);
    kdc_model_free(m);
    /* resnet18 reading resnet34's file: extra tensors */
    ck_assert(kdc_model_create("resnet18", 16, be, 1, &m, &e) == KDC_OK);
    snprintf(path, sizeof path, "%s/%s/resnet34.safetensors", kdc_test_fixture_root(), SUITE);
    ck_assert_int_eq(kdc_checkpoint_load(path, kdc_model_params(m), be, &e), KDC_EMISMATCH);
    ck_assert_msg(strstr(e.msg, "unexpected tensor 'layer"), "%s", e.msg);
    kdc_model_free(m);

    /* save, load into a fresh model, every tensor equal */
    kdc_model *a = load_model("wrn_16_2", 10), *b;
    ck_assert(kdc_model_create("wrn_16_2", 10, be, 99, &b, &e) == KDC_OK);
    char *dir = kdc_test_tmpdir("models");
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    ck_assert_msg(kdc_checkpoint_save(path, kdc_model_params(a), be, "wrn_16_2", &e) == KDC_OK,
                  "%s", e.msg);
    ck_assert_msg(kdc_checkpoint_load(path, kdc_model_params(b), be, &e) == KDC_OK, "%s", e.msg);
    kdc_param_table *pa = kdc_model_params(a), *pb = kdc_model_params(b);
    for (int i = 0; i < pa->count; i++)
        ck_assert_msg(memcmp(pa->items[i].value.data, pb->items[i].value.data,
                             kdc_tensor_nbytes(&pa->items[i].value)) == 0,
                      "%s differs after a round trip", pa->items[i].name);
    kdc_test_system("rm -rf '%s'", dir);
    free(dir);
    kdc_model_free(a);
    kdc_model_free(b);
}
END_TEST

/* Inference after training uses the new running statistics (it refolds),
 * and kdc_model_refold picks up weights loaded in between. */
START_TEST(test_infer_refolds)
{
    kdc_model *m = load_model("resnet8x4", 10);
    size_t nx = 2 * 3 * 32 * 32, nl = 2 * 10;
    float *x = kdc_test_load_f32(SUITE, "resnet8x4_x", nx, NULL);
    kdc_error e;
    const float *l;
    float before[20], eval[20];
    ck_assert(kdc_model_infer(m, x, 2, 32, 32, &l, NULL, &e) == KDC_OK);
    memcpy(before, l, sizeof before);
    ck_assert(kdc_model_forward(m, x, 2, 32, 32, 1, &l, NULL, &e) == KDC_OK);
    ck_assert(kdc_model_forward(m, x, 2, 32, 32, 0, &l, NULL, &e) == KDC_OK);
    memcpy(eval, l, sizeof eval);
    ck_assert(kdc_model_infer(m, x, 2, 32, 32, &l, NULL, &e) == KDC_OK);
    KDC_ASSERT_CLOSE_F32("inference after a train step", l, eval, nl, 1e-4);
    ck_assert(kdc_test_rel_err_f32(before, eval, nl) > 1e-3); /* the step did change them */
    /* loading weights back, then refolding, restores the first outputs */
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/resnet8x4.safetensors", kdc_test_fixture_root(), SUITE);
    ck_assert(kdc_checkpoint_load(path, kdc_model_params(m), be, &e) == KDC_OK);
    ck_assert(kdc_model_refold(m, &e) == KDC_OK);
    ck_assert(kdc_model_infer(m, x, 2, 32, 32, &l, NULL, &e) == KDC_OK);
    KDC_ASSERT_CLOSE_F32("inference after reloading", l, before, nl, 1e-6);
    free(x);
    kdc_model_free(m);
}
END_TEST

/* Unknown names are refused with the list of known ones, even when their
 * prefix looks like a known family ("resnet99", "wrn_28_10"). */
START_TEST(test_unknown_arch)
{
    static const char *bad[] = {"resnet99", "resnet", "wrn_28_10", "mobilenet_v3", "regnet_y_2gf", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kdc_error e;
        kdc_model *m = NULL;
        ck_assert_int_eq(kdc_model_create(bad[i], 10, be, 1, &m, &e), KDC_EINVAL);
        ck_assert_ptr_null(m);
        ck_assert_msg(strstr(e.msg, "known:") && strstr(e.msg, "wrn_40_2"), "%s", e.msg);
    }
}
END_TEST

/* DOT's fused backward (kdc_model_backward_dual) against two single passes:
 * both gradient streams through every layer kind (3x3 / 1x1 / strided / grouped
 * convolutions, 1x1-map convolutions at 32 px, BN, ReLU, max pool, residual
 * adds, global pooling, linear), with a features gradient on one stream, on the
 * oneDNN and the reference convolution paths. */
typedef struct dual_case {
    const char *arch;
    int classes, size, batch;
    const char *conv; /* KDC_CONV */
} dual_case;

static const dual_case DUAL[] = {
    {"resnet18", 16, 32, 4, "dnnl"},     {"resnet18", 16, 64, 3, "dnnl"},
    {"resnet50", 16, 64, 2, "dnnl"},     {"mobilenet_v1", 16, 64, 3, "dnnl"},
    {"resnet8x4", 10, 32, 5, "dnnl"},    {"resnet18", 16, 32, 4, "ref"},
    {"mobilenet_v1", 16, 64, 2, "ref"},  {"resnet8x4", 10, 32, 3, "ref"},
    /* the zoo's ops run a single-stream op per stream inside the fused pass:
     * ReLU6 and depthwise (MobileNetV2), split, concatenation and shuffle
     * (ShuffleNets), squeeze-excitation (RegNetY), biased convolutions (VGG) */
    {"MobileNetV2", 10, 32, 3, "dnnl"},  {"ShuffleV1", 10, 32, 3, "dnnl"},
    {"ShuffleV2", 10, 32, 3, "dnnl"},    {"regnet_y_400mf", 16, 64, 2, "dnnl"},
    {"vgg8", 10, 32, 3, "dnnl"},         {"shufflenet_v2_x0_5", 16, 64, 2, "ref"},
    /* a 1x1 conv with padding 1, biased convs before BN, the 1x1-conv classifier */
    {"mobilenetv2_tinyimagenet", 10, 32, 2, "dnnl"},
};

static void fill_uniform(float *p, size_t n, uint64_t seed, float lo, float hi)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p[i] = lo + (hi - lo) * (float)((s >> 11) * (1.0 / 9007199254740992.0));
    }
}

START_TEST(test_dual_backward_equals_two_passes)
{
    const dual_case *c = &DUAL[_i];
    kdc_error e;
    kdc_backend *b2;
    setenv("KDC_CONV", c->conv, 1);
    ck_assert_msg(kdc_backend_cpu_create(2, &b2, &e) == KDC_OK, "%s", e.msg);
    unsetenv("KDC_CONV");
    /* the same backend without its dual ops: the executor's two-pass fallback */
    kdc_backend plain = *b2;
    plain.conv2d_backward_dual = NULL;
    kdc_model *m, *mp;
    ck_assert_msg(kdc_model_create(c->arch, c->classes, b2, 7, &m, &e) == KDC_OK, "%s", e.msg);
    ck_assert_msg(kdc_model_create(c->arch, c->classes, &plain, 7, &mp, &e) == KDC_OK, "%s",
                  e.msg);
    int b = c->batch, hw = c->size;
    size_t nx = (size_t)b * 3 * hw * hw, nl = (size_t)b * c->classes;
    size_t nf = (size_t)b * kdc_model_feature_dim(m);
    float *x = malloc(nx * sizeof *x), *dl2 = malloc(2 * nl * sizeof *dl2);
    float *df = malloc(nf * sizeof *df);
    fill_uniform(x, nx, 1, -2.0f, 2.0f);
    fill_uniform(dl2, nl, 2, -0.5f, 0.5f);
    fill_uniform(dl2 + nl, nl, 3, -0.2f, 0.2f);
    fill_uniform(df, nf, 4, -0.1f, 0.1f);
    kdc_grad_set *gs[2], *gd[2], *gp[2];
    for (int s = 0; s < 2; s++)
        ck_assert(kdc_model_grads_alloc(m, &gs[s], &e) == KDC_OK &&
                  kdc_model_grads_alloc(m, &gd[s], &e) == KDC_OK &&
                  kdc_model_grads_alloc(mp, &gp[s], &e) == KDC_OK);
    const float *z;
    ck_assert_msg(kdc_model_forward(m, x, b, hw, hw, 1, &z, NULL, &e) == KDC_OK, "%s", e.msg);
    /* stream 0: the task side (no features term); stream 1: distillation + features */
    ck_assert_msg(kdc_model_backward(m, dl2, NULL, gs[0], NULL, &e) == KDC_OK, "%s", e.msg);
    ck_assert_msg(kdc_model_backward(m, dl2 + nl, df, gs[1], NULL, &e) == KDC_OK, "%s", e.msg);
    ck_assert_msg(kdc_model_backward_dual(m, dl2, NULL, df, gd[0], gd[1], &e) == KDC_OK, "%s",
                  e.msg);
    ck_assert_msg(kdc_model_forward(mp, x, b, hw, hw, 1, &z, NULL, &e) == KDC_OK, "%s", e.msg);
    ck_assert_msg(kdc_model_backward_dual(mp, dl2, NULL, df, gp[0], gp[1], &e) == KDC_OK, "%s",
                  e.msg);
    kdc_param_table *pt = kdc_model_params(m);
    for (int s = 0; s < 2; s++) {
        /* the fallback is the two single passes, bit for bit */
        ck_assert_msg(memcmp(gp[s]->flat, gs[s]->flat, gs[s]->flat_numel * sizeof(float)) == 0,
                      "%s %s stream %d: fallback differs from single passes", c->arch, c->conv,
                      s);
        /* Summation order differs between the fused and the single passes, so
         * each difference is judged against its tensor's largest gradient and,
         * for gradients that are zero but for rounding (a bias in front of a BN:
         * VGG's convolutions, ShuffleNet's branch BNs), against the stream's
         * largest gradient. Measured: at most 2e-6 of the stream's largest. */
        double gmax = 0;
        for (int i = 0; i < pt->count; i++) {
            if (pt->items[i].kind != KDC_PARAM_WEIGHT)
                continue;
            const float *ref = gs[s]->grad[i].data;
            for (size_t k = 0; k < kdc_tensor_numel(&pt->items[i].value); k++)
                gmax = fmax(gmax, fabs(ref[k]));
        }
        for (int i = 0; i < pt->count; i++) {
            if (pt->items[i].kind != KDC_PARAM_WEIGHT)
                continue;
            size_t n = kdc_tensor_numel(&pt->items[i].value);
            const float *ref = gs[s]->grad[i].data, *got = gd[s]->grad[i].data;
            double mx = 0, d = 0;
            for (size_t k = 0; k < n; k++) {
                mx = fmax(mx, fabs(ref[k]));
                d = fmax(d, fabs((double)got[k] - ref[k]));
            }
            ck_assert_msg(mx > 0, "%s stream %d %s: zero gradient", c->arch, s,
                          pt->items[i].name);
            ck_assert_msg(d <= 2e-5 * mx + 1e-5 * gmax,
                          "%s %s stream %d %s: fused differs by %.3g (tensor max %.3g, "
                          "stream max %.3g)",
                          c->arch, c->conv, s, pt->items[i].name, d, mx, gmax);
        }
    }
    /* the streams differ, so a mix-up of the two would show */
    ck_assert(memcmp(gd[0]->flat, gd[1]->flat, gd[0]->flat_numel * sizeof(float)) != 0);
    for (int s = 0; s < 2; s++) {
        kdc_model_grads_free(m, gs[s]);
        kdc_model_grads_free(m, gd[s]);
        kdc_model_grads_free(mp, gp[s]);
    }
    kdc_model_free(m);
    kdc_model_free(mp);
    kdc_backend_destroy(b2);
    free(x);
    free(dl2);
    free(df);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("models");
    TCase *tc = tcase_create("models");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_params_and_init);
    tcase_add_test(tc, test_checkpoint_errors_and_roundtrip);
    tcase_add_test(tc, test_infer_refolds);
    tcase_add_test(tc, test_unknown_arch);
    tcase_add_loop_test(tc, test_eval_vs_pytorch, 0, N_ARCHS);
    tcase_add_loop_test(tc, test_train_step_vs_pytorch, 0,
                        (int)(sizeof TRAIN / sizeof TRAIN[0]));
    tcase_add_loop_test(tc, test_dual_backward_equals_two_passes, 0,
                        (int)(sizeof DUAL / sizeof DUAL[0]));
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
