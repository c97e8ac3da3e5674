/* test_train.c - kd-train end to end: build/bin/kd-train (KDC_BIN) against
 * PyTorch re-runs of the same steps (scripts/ref/ref_train.py, float64), on a small
 * ImageFolder of real JPEGs and teacher caches this suite writes with the
 * cache writer.
 *
 * Trajectory checks follow FINDINGS.md (float32 BN training is
 * ill-conditioned): lr 0.01, 3 steps, and each tensor is judged by the error
 * relative to its update, max|got - ref| / max|ref - init|. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/image/dataset.h"
#include "common/image/views.h"
#include "formats/cache_match.h"
#include "formats/cache_writer.h"
#include "formats/safetensors.h"
#include "tests/helpers/make_inputs.h"
#include "tests/helpers/testutil.h"
#include "train/train_data.h"

#define SUITE "train"
#define NCLS 4
#define DT 16

/* Tolerance on the error relative to a tensor's update after 3 steps:
 * max(UPDATE_TOL, TORCH32_FACTOR x the error PyTorch's own float32 run of the
 * same steps makes, per tensor; ref_train.py measures it). float32 through
 * BN's batch statistics of 8 images reaches 1e-3..2e-2 of the update
 * (FINDINGS.md), so a fixed 1e-3 would judge rounding, not the math. */
#define UPDATE_TOL 1e-3
#define TORCH32_FACTOR 2.0

static char *g_tmp;

static const char *fx(void)
{
    return kdc_test_fixture_root();
}

/* Writes a cache for fixtures' data/ in `mode` (float32, float16, topk:K)
 * with ref_train.py's teacher outputs; row r holds dataset image perm[r]
 * (NULL: dataset order), as kd-precompute --order shuffled writes it.
 * Several chunks, the last one short. */
static void make_cache(const char *path, const char *data_dir, const char *mode,
                       const int64_t *perm)
{
    size_t n = NCLS * 5;
    float *logits = kdc_test_load_f32(SUITE, "teacher_logits", n * NCLS, NULL);
    float *feats = kdc_test_load_f32(SUITE, "teacher_features", n * DT, NULL);
    kdc_test_cache_spec spec = {.mode = mode, .num_classes = NCLS, .feature_dim = DT,
                                .image_size = 32, .chunk_images = 8, .logits = logits,
                                .features = feats, .perm = perm, .created_by = "test_train"};
    kdc_test_make_cache(path, data_dir, &spec);
    free(logits);
    free(feats);
}

static const char *cache_path(const char *mode)
{
    static char p[3][1024];
    int k = !strcmp(mode, "float32") ? 0 : !strcmp(mode, "float16") ? 1 : 2;
    snprintf(p[k], sizeof p[k], "%s/cache_%d.h5", g_tmp, k);
    FILE *f = fopen(p[k], "rb");
    if (f) {
        fclose(f);
        return p[k];
    }
    char data[1024];
    snprintf(data, sizeof data, "%s/" SUITE "/data", fx());
    make_cache(p[k], data, mode, NULL);
    return p[k];
}

/* Runs kd-train with the common flags of the reference steps plus `extra`. */
static int run_train(const char *out, const char *cache, const char *extra)
{
    return kdc_test_system(
        "%s/kd-train --data %s/" SUITE "/data %s%s --student resnet8x4 --out %s --epochs 1 "
        "--batch 8 --lr 0.01 --wd 5e-4 --momentum 0.9 --schedule constant --ce-weight 0.1 "
        "--kd-weight 0.9 --temperature 4 --proj-weight 2 --proj-alpha 4 "
        "--init %s/" SUITE "/init.safetensors --no-shuffle --threads 2 --quiet %s",
        kdc_test_bin_dir(), fx(), cache ? "--cache " : "", cache ? cache : "", out, fx(),
        extra ? extra : "");
}

static void read_tensor(st_file *f, const char *name, float **out, size_t *n)
{
    kdc_error err = {0};
    const st_tensor *t = st_find(f, name);
    ck_assert_msg(t != NULL, "%s: no tensor %s", st_path(f), name);
    *n = st_tensor_numel(t);
    *out = malloc((*n ? *n : 1) * sizeof(float));
    if (t->dtype == ST_I64) {
        int64_t *v = malloc((*n ? *n : 1) * sizeof *v);
        ck_assert(st_read_i64(f, t, v, *n, &err) == KDC_OK);
        for (size_t i = 0; i < *n; i++)
            (*out)[i] = (float)v[i];
        free(v);
    } else {
        ck_assert_msg(st_read_f32(f, t, *out, *n, &err) == KDC_OK, "%s", err.msg);
    }
}

/* PyTorch float32's error for tensor `name` of case `ref_case`. */
static double torch32_err(const char *ref_case, const char *name)
{
    char path[1024], n[256];
    double e;
    snprintf(path, sizeof path, "%s/" SUITE "/%s_torch32_err.txt", fx(), ref_case);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s", path);
    while (fscanf(f, "%255s %lf", n, &e) == 2)
        if (!strcmp(n, name)) {
            fclose(f);
            return e;
        }
    fclose(f);
    ck_abort_msg("%s: no %s", path, name);
    return 0;
}

/* Compares every tensor of RUN/student.safetensors and RUN/projector.safetensors
 * with <case>_<name> of the fixtures. Returns the worst ratio of a tensor's
 * update-relative error to its allowed error; asserts it is <= 1 when check. */
static double compare_run(const char *run, const char *ref_case, int check)
{
    char path[1024], name[256];
    snprintf(path, sizeof path, "%s/" SUITE "/tensors.txt", fx());
    FILE *list = fopen(path, "r");
    ck_assert_msg(list != NULL, "%s", path);
    kdc_error err = {0};
    st_file *stu = NULL, *prj = NULL;
    snprintf(path, sizeof path, "%s/student.safetensors", run);
    ck_assert_msg(st_open(path, &stu, &err) == KDC_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/projector.safetensors", run);
    ck_assert_msg(st_open(path, &prj, &err) == KDC_OK, "%s", err.msg);
    double worst = 0;
    while (fscanf(list, "%255s", name) == 1) {
        int is_proj = !strncmp(name, "projector.", 10);
        float *got;
        size_t n;
        read_tensor(is_proj ? prj : stu, name, &got, &n);
        char key[300];
        if (strstr(name, "num_batches_tracked")) {
            snprintf(key, sizeof key, "%s_%s", ref_case, name);
            int64_t *ref = kdc_test_load_i64(SUITE, key, 1, NULL);
            ck_assert_msg((int64_t)got[0] == ref[0], "%s: %g != %lld", name, got[0],
                          (long long)ref[0]);
            free(ref);
            free(got);
            continue;
        }
        snprintf(key, sizeof key, "%s_%s", ref_case, name);
        double *ref = kdc_test_load_f64(SUITE, key, n, NULL);
        snprintf(key, sizeof key, "init_%s", name);
        double *init = kdc_test_load_f64(SUITE, key, n, NULL);
        double upd = 0, diff = 0;
        for (size_t i = 0; i < n; i++) {
            double u = ref[i] - init[i], d = (double)got[i] - ref[i];
            upd = u > upd ? u : -u > upd ? -u : upd;
            diff = d > diff ? d : -d > diff ? -d : diff;
        }
        ck_assert_msg(upd > 0, "%s: the reference did not move", name);
        double rel = diff / upd;
        if (getenv("KDC_TRAIN_VERBOSE"))
            fprintf(stderr, "  %s %s: %.3g of the update %.3g\n", ref_case, name, rel, upd);
        double t32 = torch32_err(ref_case, name);
        double tol = TORCH32_FACTOR * t32 > UPDATE_TOL ? TORCH32_FACTOR * t32 : UPDATE_TOL;
        if (check)
            ck_assert_msg(rel <= tol,
                          "%s (%s): error %.3g of the update (%.3g); torch float32 makes %.3g",
                          name, ref_case, rel, upd, t32);
        if (rel / tol > worst)
            worst = rel / tol;
        free(ref);
        free(init);
        free(got);
    }
    fclose(list);
    st_close(stu);
    st_close(prj);
    return worst;
}

static char *run_dir(const char *tag)
{
    char *p = malloc(1024);
    snprintf(p, 1024, "%s/%s", g_tmp, tag);
    return p;
}

START_TEST(test_sgd_matches_torch)
{
    char *r = run_dir("sgd");
    ck_assert_int_eq(run_train(r, cache_path("float32"), ""), 0);
    double worst = compare_run(r, "sgd", 1);
    if (getenv("KDC_TRAIN_VERBOSE"))
        fprintf(stderr, "sgd vs torch: worst error / allowed %.3g\n", worst);
    free(r);
}
END_TEST

START_TEST(test_dot_matches_torch)
{
    char *r = run_dir("dot");
    ck_assert_int_eq(run_train(r, cache_path("float32"), "--optimizer dot --dot-delta 0.075"), 0);
    double worst = compare_run(r, "dot", 1);
    if (getenv("KDC_TRAIN_VERBOSE"))
        fprintf(stderr, "dot vs torch: worst error / allowed %.3g\n", worst);
    /* the check discriminates: DOT's weights are far from SGD's reference */
    double other = compare_run(r, "sgd", 0);
    ck_assert_msg(other > 10, "DOT run within %.3g of the allowed error of SGD's result", other);
    free(r);
}
END_TEST

/* The reference's teacher outputs are exact in float16, and top-k with K = C
 * keeps every logit: all three storage modes train to the same reference. */
START_TEST(test_storage_modes)
{
    char *r = run_dir("f16");
    ck_assert_int_eq(run_train(r, cache_path("float16"), ""), 0);
    compare_run(r, "sgd", 1);
    free(r);
    r = run_dir("topk");
    ck_assert_int_eq(run_train(r, cache_path("topk:4"), ""), 0);
    compare_run(r, "sgd", 1);
    free(r);
}
END_TEST

/* SRD issue #1: the projector must be trained. Its update equals the
 * reference's (compare_run), and it is not the initial one. */
START_TEST(test_projector_moves)
{
    char *r = run_dir("projmove");
    ck_assert_int_eq(run_train(r, cache_path("float32"), "--optimizer dot"), 0);
    char path[1024];
    snprintf(path, sizeof path, "%s/projector.safetensors", r);
    kdc_error err = {0};
    st_file *f = NULL;
    ck_assert_msg(st_open(path, &f, &err) == KDC_OK, "%s", err.msg);
    float *w;
    size_t n;
    read_tensor(f, "projector.weight", &w, &n);
    ck_assert_int_eq(n, DT * 256);
    double *init = kdc_test_load_f64(SUITE, "init_projector.weight", n, NULL);
    size_t moved = 0;
    for (size_t i = 0; i < n; i++)
        moved += (double)w[i] != init[i];
    ck_assert_msg(moved > n / 2, "only %zu of %zu projector weights moved", moved, n);
    st_close(f);
    free(w);
    free(init);
    free(r);
}
END_TEST

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    ck_assert(fread(b, 1, (size_t)n, f) == (size_t)n);
    b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void assert_same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    ck_assert_msg(na == nb && memcmp(x, y, na) == 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

/* Same flags, shuffled order, two epochs: identical weights. (The thread count
 * is one of the flags: GEMM splits its sums by thread.) */
START_TEST(test_determinism)
{
    char *a = run_dir("det_a"), *b = run_dir("det_b");
    const char *extra = "--epochs 2 --seed 5 --optimizer dot";
    /* run_train passes --no-shuffle; these runs shuffle, so spell the flags out */
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(kdc_test_system("%s/kd-train --data %s/" SUITE "/data --cache %s "
                                         "--student resnet8x4 --out %s --batch 8 --lr 0.05 "
                                         "--ce-weight 0.1 --kd-weight 0.9 --proj-weight 2 "
                                         "--threads 2 --quiet %s",
                                         kdc_test_bin_dir(), fx(), cache_path("float16"),
                                         k ? b : a, extra),
                         0);
    char pa[1100], pb[1100];
    snprintf(pa, sizeof pa, "%s/student.safetensors", a);
    snprintf(pb, sizeof pb, "%s/student.safetensors", b);
    assert_same_file(pa, pb);
    free(a);
    free(b);
}
END_TEST

/* 2 epochs in one go == 1 epoch, then --resume to 2 (DOT buffers, BN
 * statistics, shuffled order, step schedule crossing a milestone). */
START_TEST(test_resume_equality)
{
    char *a = run_dir("res_full"), *b = run_dir("res_part");
    const char *fmt = "%s/kd-train --data %s/" SUITE "/data --cache %s --student resnet8x4 "
                      "--out %s --batch 8 --lr 0.05 --ce-weight 0.1 --kd-weight 0.9 "
                      "--proj-weight 2 --optimizer dot --schedule step --lr-steps 2 "
                      "--seed 3 --threads 2 --quiet --epochs %d %s";
    const char *c = cache_path("float32");
    ck_assert_int_eq(kdc_test_system(fmt, kdc_test_bin_dir(), fx(), c, a, 2, ""), 0);
    ck_assert_int_eq(kdc_test_system(fmt, kdc_test_bin_dir(), fx(), c, b, 1, ""), 0);
    /* a second run into the same folder without --resume is refused */
    ck_assert_int_ne(kdc_test_system(fmt, kdc_test_bin_dir(), fx(), c, b, 2, "2>/dev/null"), 0);
    ck_assert_int_eq(kdc_test_system(fmt, kdc_test_bin_dir(), fx(), c, b, 2, "--resume"), 0);
    const char *files[] = {"student.safetensors", "projector.safetensors"};
    for (int i = 0; i < 2; i++) {
        char pa[1100], pb[1100];
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        assert_same_file(pa, pb);
    }
    /* metrics.csv: the header and one row per epoch in both */
    char pb[1100];
    snprintf(pb, sizeof pb, "%s/metrics.csv", b);
    size_t n;
    char *csv = slurp(pb, &n);
    int lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += csv[i] == '\n';
    ck_assert_int_eq(lines, 3);
    free(csv);
    free(a);
    free(b);
}
END_TEST

START_TEST(test_metrics_columns)
{
    char *r = run_dir("metrics");
    ck_assert_int_eq(run_train(r, cache_path("float32"), ""), 0);
    char p[1100];
    snprintf(p, sizeof p, "%s/metrics.csv", r);
    size_t n;
    char *csv = slurp(p, &n);
    const char *head = "epoch,lr,loss,ce_loss,kd_loss,proj_loss,train_top1,train_top5,"
                       "val_loss,val_top1,val_top5,images_per_s,seconds,images,skipped,"
                       "val_images,val_skipped\n";
    ck_assert_msg(!strncmp(csv, head, strlen(head)), "header: %s", csv);
    /* row 1: epoch 1, lr 0.01, and the first terms of the epoch average near the
     * reference's first-step terms (3 steps averaged, so only the order). */
    int epoch;
    double lr, loss, ce, kd, pl;
    ck_assert_int_eq(sscanf(csv + strlen(head), "%d,%lf,%lf,%lf,%lf,%lf", &epoch, &lr, &loss,
                            &ce, &kd, &pl),
                     6);
    ck_assert_int_eq(epoch, 1);
    ck_assert(lr == 0.01);
    ck_assert_msg(loss > 0 && ce > 0 && kd > 0, "loss %g ce %g kd %g", loss, ce, kd);
    double want = 0.1 * ce + 0.9 * kd + 2 * pl;
    ck_assert_msg(loss - want < 1e-3 * (1 + loss) && want - loss < 1e-3 * (1 + loss),
                  "total %g != weighted terms %g", loss, want);
    int commas = 0;
    for (const char *s = csv + strlen(head); *s && *s != '\n'; s++)
        commas += *s == ',';
    ck_assert_int_eq(commas, 16);
    free(csv);
    free(r);
}
END_TEST

START_TEST(test_mismatch_refused)
{
    /* a copy of the dataset with one file changed */
    char *d = run_dir("data_changed");
    ck_assert_int_eq(kdc_test_system("cp -r %s/" SUITE "/data %s", fx(), d), 0);
    ck_assert_int_eq(kdc_test_system("printf 'xx' >> %s/class1/02.jpg", d), 0);
    char *r = run_dir("mismatch");
    ck_assert_int_ne(kdc_test_system("%s/kd-train --data %s --cache %s --student resnet8x4 "
                                     "--out %s --kd-weight 1 --quiet 2>%s.err",
                                     kdc_test_bin_dir(), d, cache_path("float32"), r, r),
                     0);
    char p[1100];
    snprintf(p, sizeof p, "%s.err", r);
    size_t n;
    char *msg = slurp(p, &n);
    ck_assert_msg(strstr(msg, "class1/02.jpg") && strstr(msg, "cache"), "message: %s", msg);
    ck_assert_msg(strchr(msg, '\n') == msg + n - 1, "not one line: %s", msg);
    free(msg);
    /* same size, other bytes: caught by the CRC-32 of the decoded file */
    ck_assert_int_eq(kdc_test_system("cp %s/" SUITE "/data/class1/02.jpg %s/class1/02.jpg && "
                                     "printf 'Q' | dd of=%s/class1/02.jpg bs=1 seek=300 "
                                     "conv=notrunc 2>/dev/null",
                                     fx(), d, d),
                     0);
    ck_assert_int_ne(kdc_test_system("%s/kd-train --data %s --cache %s --student resnet8x4 "
                                     "--out %s2 --kd-weight 1 --quiet 2>%s.err",
                                     kdc_test_bin_dir(), d, cache_path("float32"), r, r),
                     0);
    msg = slurp(p, &n);
    ck_assert_msg(strstr(msg, "02.jpg"), "message: %s", msg);
    free(msg);
    /* unknown architecture */
    ck_assert_int_ne(kdc_test_system("%s/kd-train --data %s/" SUITE "/data --student nosuchnet "
                                     "--out %s3 --quiet 2>/dev/null",
                                     kdc_test_bin_dir(), fx(), r),
                     0);
    free(d);
    free(r);
}
END_TEST

/* A cache whose rows are a permutation of the dataset (kd-precompute's
 * default --order shuffled) matches by path: cache_match_dataset maps every
 * row to its image, and kd_data serves each image with its own label and
 * teacher logits. A path outside the dataset, a repeated path or another
 * label is refused, naming the image. */
START_TEST(test_shuffled_cache_rows)
{
    char data[1024], path[1100];
    snprintf(data, sizeof data, "%s/" SUITE "/data", fx());
    snprintf(path, sizeof path, "%s/cache_perm.h5", g_tmp);
    kdc_error err = {0};
    img_dataset *ds = NULL;
    ck_assert_msg(img_dataset_open_folder(&ds, data, &err) == KDC_OK, "%s", err.msg);
    const int64_t n = (int64_t)ds->count;
    int64_t *perm = malloc((size_t)n * sizeof *perm), *map = malloc((size_t)n * sizeof *map);
    for (int64_t r = 0; r < n; r++)
        perm[r] = (7 * r + 3) % n; /* n = 20: 7 is coprime, so a permutation */
    ck_assert_int_eq(n % 7 != 0, 1);

    cache_image_table t;
    ck_assert(cache_image_table_alloc(&t, n, &err) == KDC_OK);
    for (int64_t r = 0; r < n; r++) {
        const img_entry *e = &ds->items[perm[r]];
        t.path[r] = strdup(e->path);
        t.label[r] = e->label;
        t.size[r] = e->size;
    }
    ck_assert_msg(cache_match_dataset(ds, &t, "perm.h5", map, &err) == KDC_OK, "%s", err.msg);
    for (int64_t r = 0; r < n; r++)
        ck_assert_int_eq(map[r], perm[r]);
    /* another label */
    t.label[5] = (t.label[5] + 1) % NCLS;
    ck_assert_int_eq(cache_match_dataset(ds, &t, "perm.h5", map, &err), KDC_EMISMATCH);
    ck_assert_msg(strstr(err.msg, t.path[5]) && strstr(err.msg, "label"), "%s", err.msg);
    t.label[5] = ds->items[perm[5]].label;
    /* a path that is not in the dataset */
    free(t.path[9]);
    t.path[9] = strdup("class0/nosuch.jpg");
    ck_assert_int_eq(cache_match_dataset(ds, &t, "perm.h5", map, &err), KDC_EMISMATCH);
    ck_assert_msg(strstr(err.msg, "class0/nosuch.jpg") && strstr(err.msg, "not in the dataset"),
                  "%s", err.msg);
    /* the same image twice (and another one missing) */
    free(t.path[9]);
    t.path[9] = strdup(t.path[10]);
    t.label[9] = t.label[10];
    t.size[9] = t.size[10];
    ck_assert_int_eq(cache_match_dataset(ds, &t, "perm.h5", map, &err), KDC_EMISMATCH);
    ck_assert_msg(strstr(err.msg, t.path[10]) && strstr(err.msg, "twice"), "%s", err.msg);
    cache_image_table_free(&t);

    /* end to end: kd_data on a permuted cache file */
    make_cache(path, data, "float32", perm);
    float *ref = kdc_test_load_f32(SUITE, "teacher_logits", (size_t)n * NCLS, NULL);
    kd_data_config cfg = {.data = data, .cache = path, .batch_size = 4, .threads = 1,
                          .shuffle = 1, .seed = 5};
    kd_data *d = NULL;
    ck_assert_msg(kd_data_open(&cfg, &d, &err) == KDC_OK, "%s", err.msg);
    ck_assert_msg(kd_data_start_epoch(d, 0, &err) == KDC_OK, "%s", err.msg);
    char *seen = calloc((size_t)n, 1);
    int64_t total = 0;
    for (;;) {
        kd_batch b;
        ck_assert_msg(kd_data_next(d, &b, &err) == KDC_OK, "%s", err.msg);
        if (b.count == 0)
            break;
        for (int j = 0; j < b.count; j++) {
            int64_t i = b.image[j];
            ck_assert(i >= 0 && i < n && !seen[i]);
            seen[i] = 1;
            ck_assert_int_eq(b.label[j], ds->items[i].label);
            ck_assert(!memcmp(b.logits + (size_t)j * NCLS, ref + i * NCLS,
                              NCLS * sizeof(float)));
        }
        total += b.count;
    }
    ck_assert_int_eq(total, n);
    kd_data_close(d);
    free(seen);
    free(ref);
    free(perm);
    free(map);
    img_dataset_free(ds);
}
END_TEST

/* No cache: online pad-crop views, CE only (how a teacher or baseline is
 * trained), --val after the epoch; then --eval-only on the saved student, and
 * torchvision's resnet18 loads a saved student with load_state_dict. */
START_TEST(test_online_and_eval)
{
    char *r = run_dir("online");
    ck_assert_int_eq(kdc_test_system("%s/kd-train --data %s/" SUITE "/data --val %s/" SUITE
                                     "/data --student resnet18 --out %s --epochs 1 --batch 8 "
                                     "--view-policy pad-crop --image-size 32 --threads 2 --quiet",
                                     kdc_test_bin_dir(), fx(), fx(), r),
                     0);
    char p[1100];
    snprintf(p, sizeof p, "%s/metrics.csv", r);
    size_t n;
    char *csv = slurp(p, &n);
    char *row = strchr(csv, '\n') + 1;
    int commas = 0;
    char *val = row;
    while (commas < 8)
        commas += *val++ == ',';
    ck_assert_msg(*val != ',', "no val_loss in %s", row);
    free(csv);
    ck_assert_int_eq(kdc_test_system("%s/kd-train --eval-only --weights %s/student.safetensors "
                                     "--val %s/" SUITE "/data --student resnet18 --image-size 32 "
                                     "--resize-size 32 --threads 2 > %s/eval.txt",
                                     kdc_test_bin_dir(), r, fx(), r),
                     0);
    snprintf(p, sizeof p, "%s/eval.txt", r);
    char *line = slurp(p, &n);
    long long images;
    double top1, top5, loss;
    ck_assert_int_eq(sscanf(line, "images %lld top1 %lf top5 %lf loss %lf", &images, &top1,
                            &top5, &loss),
                     4);
    ck_assert_int_eq(images, NCLS * 5);
    ck_assert(top5 == 100.0); /* 4 classes: the label is always among the top 5 */
    free(line);
    ck_assert_int_eq(
        kdc_test_system("cd %s/scripts/tools && %s -c \"import torch, torchvision; "
                        "from export_weights import load_file; "
                        "m = torchvision.models.resnet18(num_classes=%d); "
                        "m.load_state_dict(load_file('%s/student.safetensors'))\"",
                        kdc_test_repo_root(), getenv("PYTHON") ? getenv("PYTHON")
                                                               : "/usr/bin/python3",
                        NCLS, r),
        0);
    free(r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("kd-train");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_sgd_matches_torch);
    tcase_add_test(tc, test_dot_matches_torch);
    tcase_add_test(tc, test_storage_modes);
    tcase_add_test(tc, test_projector_moves);
    tcase_add_test(tc, test_determinism);
    tcase_add_test(tc, test_resume_equality);
    tcase_add_test(tc, test_metrics_columns);
    tcase_add_test(tc, test_mismatch_refused);
    tcase_add_test(tc, test_shuffled_cache_rows);
    tcase_add_test(tc, test_online_and_eval);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* kdc_test_tmpdir asserts, which Check allows only inside a test */
    char tmpl[1024];
    const char *tmpdir = getenv("TMPDIR");
    snprintf(tmpl, sizeof tmpl, "%s/kdc-train-XXXXXX", tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        return 1;
    }
    g_tmp = strdup(tmpl);
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (!getenv("KDC_KEEP_TMP"))
        kdc_test_system("rm -rf %s", g_tmp);
    else
        fprintf(stderr, "kept %s\n", g_tmp);
    free(g_tmp);
    return failed ? 1 : 0;
}
