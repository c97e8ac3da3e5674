/* test_bad_data.c - kd-train (build/bin/kd-train, KDC_BIN) on data and
 * weights that used to lose images or give wrong numbers without a word:
 *   - a folder with one file of each bad kind (tests/helpers/bad_images.h):
 *     online training, --eval-only and --val lose exactly those files at any
 *     thread count, and say so on stderr, in metrics.csv and in the eval line;
 *     --eval-only refuses them unless --skip-bad-images;
 *   - a cache whose images kd-precompute skipped: announced, counted;
 *   - a student whose logits are NaN or infinite: the evaluation fails instead
 *     of scoring 100%;
 *   - weights with NaN, Inf or a negative running_var: refused at load;
 *   - --batch 1 and a last batch of one image;
 *   - a run folder that cannot take files: refused before the first step.
 * Expected numbers are counts of the files this suite makes, never what the
 * tool printed in another run. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/progress.h"
#include "tests/helpers/bad_images.h"
#include "tests/helpers/edit_weights.h"
#include "tests/helpers/make_inputs.h"
#include "tests/helpers/testutil.h"
#include "train/metrics.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

/* make_bad_folder: 2 classes x 8 good 32 x 32 JPEGs, a CMYK JPEG and NBAD bad
 * files in class1, where they sort before its good images. */
enum { NGOOD = 2 * 8 + 1, NBAD = KDC_BAD_KINDS, NALL = NGOOD + NBAD };

static char *g_tmp;

static void make_bad_folder(const char *root, int with_bad)
{
    kdc_test_make_image_folder(root, 2, 8, 32, 32, 0, 900);
    char cls[4096], good[4200], cmyk[4200];
    snprintf(cls, sizeof cls, "%s/class1", root);
    snprintf(good, sizeof good, "%s/class0/img00.jpg", root);
    if (with_bad)
        ck_assert_int_eq(kdc_test_add_bad_images(cls, good, 1), NBAD);
    else {
        snprintf(cmyk, sizeof cmyk, "%s/cmyk.JPEG", cls);
        kdc_test_write_cmyk_jpeg(cmyk, 40, 30, 77);
    }
}

/* The folder with the bad files (made once per test process). */
static const char *bad_folder(void)
{
    static char p[1024];
    snprintf(p, sizeof p, "%s/bad", g_tmp);
    if (access(p, F_OK) != 0)
        make_bad_folder(p, 1);
    return p;
}

/* The same good images without the bad files. */
static const char *clean_folder(void)
{
    static char p[1024];
    snprintf(p, sizeof p, "%s/clean", g_tmp);
    if (access(p, F_OK) != 0)
        make_bad_folder(p, 0);
    return p;
}

static const char *new_dir(const char *tag)
{
    static char p[1024];
    static int k;
    snprintf(p, sizeof p, "%s/%s%d", g_tmp, tag, k++);
    return p;
}

static char *slurp(const char *path)
{
    static char buf[1 << 16];
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static const char *err_path(void)
{
    static char p[1024];
    snprintf(p, sizeof p, "%s/err", g_tmp);
    return p;
}

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Column `col` of row `epoch` (1-based) of RUN/metrics.csv, as a number;
 * NAN when the field is empty. */
static double metric(const char *run, int epoch, const char *col)
{
    char p[1100];
    snprintf(p, sizeof p, "%s/metrics.csv", run);
    FILE *fp = fopen(p, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s", p);
    char *csv = calloc(1, 1 << 16);
    ck_assert(fread(csv, 1, (1 << 16) - 1, fp) > 0);
    fclose(fp);
    char *save = NULL, *line = strtok_r(csv, "\n", &save);
    ck_assert_ptr_nonnull(line);
    int idx = -1, k = 0;
    for (char *h = line; h; k++) {
        char *comma = strchr(h, ',');
        size_t n = comma ? (size_t)(comma - h) : strlen(h);
        if (strlen(col) == n && !strncmp(h, col, n))
            idx = k;
        h = comma ? comma + 1 : NULL;
    }
    ck_assert_msg(idx >= 0, "%s: no column %s", p, col);
    for (int e = 0; e < epoch; e++)
        ck_assert_msg((line = strtok_r(NULL, "\n", &save)) != NULL, "%s: no epoch %d", p, epoch);
    const char *f = line;
    for (int i = 0; i < idx; i++) {
        f = strchr(f, ',');
        ck_assert_ptr_nonnull(f);
        f++;
    }
    double v = (*f == ',' || *f == 0) ? NAN : atof(f);
    free(csv);
    return v;
}

/* ---- unreadable images ---- */

/* Online training over the bad folder, dataset order (--no-shuffle: batches
 * of 4 never hold a single good image), 1, 2 and 4 threads, 2 epochs: each
 * epoch trains on the NGOOD good images and skips the NBAD bad ones, counted
 * per epoch (not summed), the first three named. */
START_TEST(test_online_skips_exactly_the_bad_files)
{
    const int threads[] = {1, 2, 4};
    for (int t = 0; t < 3; t++) {
        const char *run = new_dir("online");
        int rc = kdc_test_system("%s/kd-train --data %s --student resnet8x4 --out %s --epochs 2 "
                                 "--batch 4 --view-policy pad-crop --image-size 32 --threads %d "
                                 "--no-shuffle --quiet 2>%s",
                                 kdc_test_bin_dir(), bad_folder(), run, threads[t], err_path());
        const char *msg = slurp(err_path());
        ck_assert_msg(rc == 0, "%d threads: %s", threads[t], msg);
        printf("kd-train online, %d threads: %s", threads[t], msg);
        for (int e = 1; e <= 2; e++) {
            ck_assert_msg(metric(run, e, "images") == NGOOD, "%d threads, epoch %d: %g images",
                          threads[t], e, metric(run, e, "images"));
            ck_assert_msg(metric(run, e, "skipped") == NBAD, "%d threads, epoch %d: %g skipped",
                          threads[t], e, metric(run, e, "skipped"));
            char want[128];
            snprintf(want, sizeof want, "epoch %d: skipped %d of %d images that could not be read",
                     e, NBAD, NALL);
            ck_assert_msg(strstr(msg, want), "no '%s' in %s", want, msg);
        }
        /* dataset order: the first three bad files by name, then the rest counted */
        ck_assert(strstr(msg, "bad_empty.JPEG: empty file; "));
        ck_assert(strstr(msg, "bad_huge_dims.JPEG: bad JPEG header"));
        ck_assert(strstr(msg, "bad_marker.JPEG: bad JPEG header"));
        ck_assert(strstr(msg, "(and 3 more)"));
    }
    /* shuffled (the default): the same skipped count; a batch that the bad
     * files leave with one good image is left out, and the epoch line says so */
    const char *run = new_dir("shuffled");
    int rc = kdc_test_system("%s/kd-train --data %s --student resnet8x4 --out %s --epochs 3 "
                             "--batch 4 --view-policy pad-crop --image-size 32 --threads 2 "
                             "2>%s",
                             kdc_test_bin_dir(), bad_folder(), run, err_path());
    const char *msg = slurp(err_path());
    ck_assert_msg(rc == 0, "%s", msg);
    for (int e = 1; e <= 3; e++) {
        char line[64];
        snprintf(line, sizeof line, "\nepoch %d/3: loss", e);
        const char *l = strstr(msg, line);
        ck_assert_msg(l, "no epoch %d line in %s", e, msg);
        const char *end = strchr(l + 1, '\n'), *left = strstr(l, " left out in a batch of one");
        int dropped = 0;
        if (left && (!end || left < end)) {
            const char *p = left;
            while (p > l && p[-1] >= '0' && p[-1] <= '9')
                p--;
            dropped = atoi(p);
        }
        printf("shuffled, epoch %d: %g trained, %d left out in a batch of one, %g skipped\n", e,
               metric(run, e, "images"), dropped, metric(run, e, "skipped"));
        ck_assert(metric(run, e, "skipped") == NBAD);
        ck_assert_msg(metric(run, e, "images") + dropped == NGOOD, "epoch %d: %g + %d", e,
                      metric(run, e, "images"), dropped);
    }
}
END_TEST

/* "images N top1 P top5 P loss L skipped K" */
static void parse_eval(const char *line, long long *images, double *top1, double *loss,
                       long long *skipped)
{
    double top5;
    ck_assert_msg(sscanf(line, "images %lld top1 %lf top5 %lf loss %lf skipped %lld", images, top1,
                         &top5, loss, skipped) == 5,
                  "not an eval line: %s", line);
}

static const char *student_weights(void)
{
    static char p[1024];
    snprintf(p, sizeof p, "%s/student.safetensors", g_tmp);
    if (access(p, F_OK) != 0)
        kdc_test_make_weights(p, "resnet8x4", 2, 7, 0, 1);
    return p;
}

static int eval_only(const char *weights, const char *val, int threads, const char *extra,
                     const char *out)
{
    return kdc_test_system("%s/kd-train --eval-only --weights %s --val %s --student resnet8x4 "
                           "--image-size 32 --resize-size 32 --batch 4 --threads %d %s >%s 2>%s",
                           kdc_test_bin_dir(), weights, val, threads, extra, out, err_path());
}

/* --eval-only on a val folder with unreadable files fails, naming one and the
 * flag, as torchvision's ImageFolder raises; with --skip-bad-images it scores
 * the good images alone (the same numbers as the folder without the bad
 * files) at 1, 2 and 4 threads and reports the skipped count. */
START_TEST(test_eval_only_unreadable_images)
{
    char out[1100];
    snprintf(out, sizeof out, "%s/eval.txt", g_tmp);
    int rc = eval_only(student_weights(), bad_folder(), 2, "", out);
    const char *msg = slurp(err_path());
    ck_assert_msg(rc == 1 && lines(msg) == 1 && strstr(msg, "/bad_") &&
                      strstr(msg, "--skip-bad-images"),
                  "exit %d: %s", rc, msg);
    long long n_ref, k_ref, n, k;
    double top1_ref, loss_ref, top1, loss;
    ck_assert_msg(eval_only(student_weights(), clean_folder(), 2, "", out) == 0, "%s",
                  slurp(err_path()));
    parse_eval(slurp(out), &n_ref, &top1_ref, &loss_ref, &k_ref);
    ck_assert_int_eq(n_ref, NGOOD);
    ck_assert_int_eq(k_ref, 0);
    const int threads[] = {1, 2, 4};
    for (int t = 0; t < 3; t++) {
        rc = eval_only(student_weights(), bad_folder(), threads[t], "--skip-bad-images", out);
        ck_assert_msg(rc == 0, "%s", slurp(err_path()));
        const char *line = slurp(out);
        printf("--eval-only --skip-bad-images, %d threads: %s", threads[t], line);
        parse_eval(line, &n, &top1, &loss, &k);
        ck_assert_int_eq(n, NGOOD);
        ck_assert_int_eq(k, NBAD);
        ck_assert_msg(top1 == top1_ref && fabs(loss - loss_ref) <= 1e-5 * fabs(loss_ref),
                      "top1 %g loss %g, without the bad files %g %g", top1, loss, top1_ref,
                      loss_ref);
        msg = slurp(err_path());
        char want[128];
        snprintf(want, sizeof want, "skipped %d of %d validation images", NBAD, NALL);
        ck_assert_msg(strstr(msg, want) && strstr(msg, "bad_empty.JPEG"), "%s", msg);
    }
    /* nothing readable at all: an error, not "images 0 top1 0" */
    char only[1100], good[1100];
    snprintf(only, sizeof only, "%s/only_bad", g_tmp);
    snprintf(good, sizeof good, "%s/class0/img00.jpg", clean_folder());
    for (int c = 0; c < 2; c++) { /* two classes, as the student has */
        char cls[1200];
        snprintf(cls, sizeof cls, "%s/c%d", only, c);
        ck_assert_int_eq(kdc_test_system("mkdir -p %s", cls), 0);
        kdc_test_add_bad_images(cls, good, 0);
    }
    rc = eval_only(student_weights(), only, 2, "--skip-bad-images", out);
    msg = slurp(err_path());
    ck_assert_msg(rc == 1 && lines(msg) == 1 && strstr(msg, "none of the 12 validation images"),
                  "exit %d: %s", rc, msg);
}
END_TEST

/* --val during training leaves unreadable images out and counts them in
 * metrics.csv (val_images, val_skipped) and on stderr, every epoch. */
START_TEST(test_val_skipped_during_training)
{
    const char *run = new_dir("val");
    int rc = kdc_test_system("%s/kd-train --data %s --val %s --student resnet8x4 --out %s "
                             "--epochs 1 --batch 5 --view-policy pad-crop --image-size 32 "
                             "--threads 2 --quiet 2>%s",
                             kdc_test_bin_dir(), clean_folder(), bad_folder(), run, err_path());
    const char *msg = slurp(err_path());
    ck_assert_msg(rc == 0, "%s", msg);
    ck_assert_msg(metric(run, 1, "val_images") == NGOOD && metric(run, 1, "val_skipped") == NBAD,
                  "val_images %g val_skipped %g", metric(run, 1, "val_images"),
                  metric(run, 1, "val_skipped"));
    ck_assert(metric(run, 1, "images") == NGOOD && metric(run, 1, "skipped") == 0);
    char want[128];
    snprintf(want, sizeof want, "validation skipped %d of %d images", NBAD, NALL);
    ck_assert_msg(strstr(msg, want), "%s", msg);
}
END_TEST

/* A cache made by kd-precompute from the bad folder marks the bad files
 * skipped: kd-train announces them at start and counts them each epoch. */
START_TEST(test_cache_skipped_images_announced)
{
    char cache[1100], weights[1100];
    snprintf(cache, sizeof cache, "%s/bad.h5", g_tmp);
    snprintf(weights, sizeof weights, "%s/precompute/resnet18_c10.safetensors",
             kdc_test_fixture_root());
    int rc = kdc_test_system("%s/kd-precompute --data %s --teacher resnet18 --weights %s --out %s "
                             "--view-policy center --image-size 32 --resize-size 32 --threads 2 "
                             "--quiet 2>%s",
                             kdc_test_bin_dir(), bad_folder(), weights, cache, err_path());
    ck_assert_msg(rc == 0, "%s", slurp(err_path()));
    const char *run = new_dir("cache");
    rc = kdc_test_system("%s/kd-train --data %s --cache %s --student resnet8x4 --out %s "
                         "--epochs 1 --batch 5 --kd-weight 1 --threads 2 --quiet 2>%s",
                         kdc_test_bin_dir(), bad_folder(), cache, run, err_path());
    const char *msg = slurp(err_path());
    ck_assert_msg(rc == 0, "%s", msg);
    printf("kd-train on a cache with skipped images: %s", msg);
    char want[256];
    snprintf(want, sizeof want, "marks %d of %d images skipped", NBAD, NALL);
    ck_assert_msg(strstr(msg, want) && strstr(msg, "class1/bad_"), "%s", msg);
    ck_assert(metric(run, 1, "images") == NGOOD && metric(run, 1, "skipped") == NBAD);
}
END_TEST

/* ---- numbers that are not finite ---- */

/* A student whose logits are NaN (conv1 weights 1e38: +inf and -inf meet in
 * the next convolution) or +inf for one class (fc row 0 at 1e38): finite
 * weights, so they load; the evaluation must fail, not report an accuracy
 * (NaN compared false with everything, so such a row counted as correct). */
START_TEST(test_nan_student_fails_evaluation)
{
    struct {
        const char *tensor;
        long first, count;
        float value;
    } cases[] = {
        {"conv1.weight", 0, -1, 1e38f},
        {"fc.weight", 0, 256, 1e38f},
    };
    char w[1100], out[1100];
    snprintf(w, sizeof w, "%s/nan_student.safetensors", g_tmp);
    snprintf(out, sizeof out, "%s/eval.txt", g_tmp);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kdc_test_edit_weights(student_weights(), w, "resnet8x4", 2, cases[i].tensor, cases[i].first,
                              cases[i].count, cases[i].value);
        int rc = eval_only(w, clean_folder(), 2, "", out);
        char *msg = strdup(slurp(err_path()));
        printf("%s = %g: exit %d: %s", cases[i].tensor, (double)cases[i].value, rc, msg);
        ck_assert_msg(rc == 1 && lines(msg) == 1 && strstr(msg, "validation loss is") &&
                          strstr(msg, "non-finite logit"),
                      "%s: exit %d: %s", cases[i].tensor, rc, msg);
        ck_assert_msg(slurp(out)[0] == 0, "an eval line was printed: %s", slurp(out));
        free(msg);
    }
}
END_TEST

/* Weights with a NaN or infinite value or a negative running_var are refused
 * when they load, naming the file and the tensor: --eval-only --weights and
 * --init. */
START_TEST(test_nan_weights_refused)
{
    struct {
        const char *tensor;
        long first;
        float value;
        int init; /* 1: --init, 0: --eval-only --weights */
    } cases[] = {
        {"layer1.0.conv1.weight", 5, NAN, 0},
        {"bn1.running_var", 2, -0.25f, 0},
        {"layer2.0.bn2.running_var", 0, -1e-3f, 1},
        {"fc.bias", 1, INFINITY, 1},
    };
    char w[1100], out[1100];
    snprintf(w, sizeof w, "%s/bad_w.safetensors", g_tmp);
    snprintf(out, sizeof out, "%s/eval.txt", g_tmp);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kdc_test_edit_weights(student_weights(), w, "resnet8x4", 2, cases[i].tensor, cases[i].first,
                              1, cases[i].value);
        int rc;
        if (cases[i].init)
            rc =
                kdc_test_system("%s/kd-train --data %s --student resnet8x4 --out %s "
                                "--epochs 1 --batch 5 --view-policy pad-crop --image-size 32 "
                                "--init %s --quiet 2>%s",
                                kdc_test_bin_dir(), clean_folder(), new_dir("init"), w, err_path());
        else
            rc = eval_only(w, clean_folder(), 2, "", out);
        const char *msg = slurp(err_path());
        ck_assert_msg(rc == 1 && lines(msg) == 1 && strstr(msg, cases[i].tensor) &&
                          strstr(msg, "bad_w.safetensors"),
                      "%s: exit %d: %s", cases[i].tensor, rc, msg);
    }
}
END_TEST

/* ---- batches of one ---- */

/* --batch 1 is refused (PyTorch: "Expected more than 1 value per channel
 * when training"), online and with a cache; a last batch of one image is left
 * out and said so: 20 images in batches of 19 train 19 per epoch. */
START_TEST(test_batch_of_one)
{
    char data[1100], cache[1100];
    snprintf(data, sizeof data, "%s/train/data", kdc_test_fixture_root());
    snprintf(cache, sizeof cache, "%s/c20.h5", g_tmp);
    kdc_test_cache_spec spec = {
        .mode = "float32", .num_classes = 4, .feature_dim = 0, .image_size = 32, .chunk_images = 8};
    kdc_test_make_cache(cache, data, &spec);
    const char *variants[] = {"--view-policy pad-crop --image-size 32", "--kd-weight 1 --cache"};
    for (int v = 0; v < 2; v++) {
        const char *run = new_dir("b1");
        int rc =
            kdc_test_system("%s/kd-train --data %s --student resnet8x4 --out %s --epochs 1 "
                            "--batch 1 --quiet %s %s 2>%s",
                            kdc_test_bin_dir(), data, run, variants[v], v ? cache : "", err_path());
        const char *msg = slurp(err_path());
        ck_assert_msg(rc != 0 && lines(msg) == 1 && strstr(msg, "more than one value per channel"),
                      "%s: exit %d: %s", variants[v], rc, msg);
        ck_assert_msg(access(run, F_OK) != 0, "%s: made a run folder", variants[v]);
        run = new_dir("b19");
        rc =
            kdc_test_system("%s/kd-train --data %s --student resnet8x4 --out %s --epochs 2 "
                            "--batch 19 --threads 2 --quiet %s %s 2>%s",
                            kdc_test_bin_dir(), data, run, variants[v], v ? cache : "", err_path());
        msg = slurp(err_path());
        ck_assert_msg(rc == 0, "%s: %s", variants[v], msg);
        ck_assert_msg(strstr(msg, "last batch of each epoch holds 1 of 20 images; it is left out"),
                      "%s: %s", variants[v], msg);
        for (int e = 1; e <= 2; e++)
            ck_assert_msg(metric(run, e, "images") == 19, "%s: epoch %d trained %g images",
                          variants[v], e, metric(run, e, "images"));
    }
}
END_TEST

/* ---- the run folder ---- */

/* Without the power to override file permissions, so that a read-only
 * folder is read-only for root too (tests run as root in CI). */
static const char *unprivileged(void)
{
    return geteuid() == 0 ? "setpriv --bounding-set -dac_override,-dac_read_search " : "";
}

/* An existing run folder that cannot take files is refused before the first
 * step (it used to train a whole epoch, then fail to save it): a fresh run,
 * a --resume without a checkpoint, and a run folder to be made inside it. */
START_TEST(test_readonly_run_folder)
{
    char ro[1100];
    snprintf(ro, sizeof ro, "%s/ro", g_tmp);
    ck_assert_int_eq(kdc_test_system("mkdir -p %s && chmod 555 %s", ro, ro), 0);
    const char *variants[][2] = {{"%s", ""}, {"%s", "--resume"}, {"%s/sub", ""}};
    for (int v = 0; v < 3; v++) {
        char out[1200];
        snprintf(out, sizeof out, variants[v][0], ro);
        double t0 = kdc_now_seconds();
        int rc = kdc_test_system("%s%s/kd-train --data %s --student resnet8x4 --out %s "
                                 "--epochs 1 --batch 5 --view-policy pad-crop --image-size 32 "
                                 "%s 2>%s",
                                 unprivileged(), kdc_test_bin_dir(), clean_folder(), out,
                                 variants[v][1], err_path());
        const char *msg = slurp(err_path());
        printf("read-only run folder %s %s: exit %d after %.2f s: %s", out, variants[v][1], rc,
               kdc_now_seconds() - t0, msg);
        ck_assert_msg(rc == 1 && lines(msg) == 1 && strstr(msg, "--out") &&
                          (strstr(msg, "cannot write in") || strstr(msg, "cannot create folder")) &&
                          strstr(msg, "Permission denied"),
                      "exit %d: %s", rc, msg);
        ck_assert_msg(!strstr(msg, "epoch"), "trained before failing: %s", msg);
    }
    kdc_test_system("chmod 755 %s", ro);
}
END_TEST

/* A run resumed from a checkpoint written before the count columns existed:
 * the next row comes with the current header, and the old rows get the new
 * fields empty, so every row has as many fields as the header. */
START_TEST(test_metrics_of_an_older_run_get_the_new_columns)
{
    char *csv = strdup("epoch,lr,loss,ce_loss,kd_loss,proj_loss,train_top1,train_top5,val_loss,"
                       "val_top1,val_top5,images_per_s,seconds\n"
                       "1,0.05,1,1,0,0,50,100,,,,10.00,1.00\n");
    kd_epoch_metrics m = {.epoch = 2, .lr = 0.05, .images = 17, .skipped = 6};
    kdc_error err = {0};
    ck_assert_msg(kd_metrics_append(&csv, &m, &err) == KDC_OK, "%s", err.msg);
    ck_assert_msg(!strncmp(csv, KD_METRICS_HEADER, strlen(KD_METRICS_HEADER)), "%s", csv);
    int fields_header = 0;
    for (const char *p = KD_METRICS_HEADER; *p; p++)
        fields_header += *p == ',';
    int row = 0, commas = 0;
    for (const char *p = csv; *p; p++) {
        commas += *p == ',';
        if (*p == '\n') {
            ck_assert_msg(commas == fields_header, "row %d has %d commas: %s", row, commas, csv);
            commas = 0;
            row++;
        }
    }
    ck_assert_int_eq(row, 3);
    ck_assert_msg(strstr(csv, "\n1,0.05,1,1,0,0,50,100,,,,10.00,1.00,,,,\n2,"), "%s", csv);
    ck_assert_msg(strstr(csv, ",17,6,,\n"), "%s", csv);
    free(csv);
}
END_TEST

int main(void)
{
    char tmpl[1024];
    const char *tmpdir = getenv("TMPDIR");
    snprintf(tmpl, sizeof tmpl, "%s/kdc-baddata-XXXXXX", tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        return 1;
    }
    g_tmp = tmpl;
    Suite *s = suite_create("bad_data");
    TCase *tc = tcase_create("kd-train");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_online_skips_exactly_the_bad_files);
    tcase_add_test(tc, test_eval_only_unreadable_images);
    tcase_add_test(tc, test_val_skipped_during_training);
    tcase_add_test(tc, test_cache_skipped_images_announced);
    tcase_add_test(tc, test_nan_student_fails_evaluation);
    tcase_add_test(tc, test_nan_weights_refused);
    tcase_add_test(tc, test_batch_of_one);
    tcase_add_test(tc, test_readonly_run_folder);
    tcase_add_test(tc, test_metrics_of_an_older_run_get_the_new_columns);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (getenv("KDC_KEEP_TMP"))
        fprintf(stderr, "kept %s\n", g_tmp);
    else
        kdc_test_system("chmod -R u+w %s; rm -rf %s", g_tmp, g_tmp);
    return failed ? 1 : 0;
}
