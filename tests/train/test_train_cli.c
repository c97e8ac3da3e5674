/* test_train_cli.c - kd-train's command-line behaviour end to end (KDC_BIN):
 *   - --eval-only takes its settings from student.safetensors' metadata: the run's
 *     own --val, --eval-only with no flags and --eval-only with every flag repeated
 *     give one answer; flags that disagree are refused (naming flag and values)
 *     unless --force; files without metadata still work with flags; hostile
 *     metadata is refused; PyTorch still loads the file;
 *   - --cache turns KD on (weights and temperature of the recipe that fits the
 *     image size), --recipe and explicit flags in any order, --kd-weight 0 is CE;
 *   - --resume refusals name each flag that differs with both values;
 *   - progress lines off a terminal every --log-every seconds (kd-precompute too).
 * Inputs: the fixtures of scripts/ref/ref_train.py (a 4-class ImageFolder of
 * 32 px JPEGs and teacher logits), caches written here with the cache writer. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/helpers/make_inputs.h"
#include "tests/helpers/testutil.h"

#define NCLS 4
#define DT 16
#define NORM "--mean 0.3,0.3,0.3 --std 0.35,0.35,0.35"

static char *g_tmp;
static char g_data[1024], g_cache[1100];

static const char *python(void)
{
    return getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3";
}

static char *slurp(const char *path)
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
    return b;
}

/* A float32 cache of the fixture data (center views, 32 px) with ref_train.py's
 * teacher logits and features, made once. */
static void setup(void)
{
    snprintf(g_data, sizeof g_data, "%s/train/data", kdc_test_fixture_root());
    snprintf(g_cache, sizeof g_cache, "%s/cache.h5", g_tmp);
    FILE *f = fopen(g_cache, "rb");
    if (f) {
        fclose(f);
        return;
    }
    size_t n = NCLS * 5;
    float *logits = kdc_test_load_f32("train", "teacher_logits", n * NCLS, NULL);
    float *feats = kdc_test_load_f32("train", "teacher_features", n * DT, NULL);
    kdc_test_cache_spec spec = {.mode = "float32",
                                .num_classes = NCLS,
                                .feature_dim = DT,
                                .image_size = 32,
                                .chunk_images = 8,
                                .logits = logits,
                                .features = feats,
                                .created_by = "test_train_cli"};
    kdc_test_make_cache(g_cache, g_data, &spec);
    free(logits);
    free(feats);
}

/* kd-train ARGS with stdout to TMP/<tag>.out and stderr to TMP/<tag>.err. */
static int train(const char *tag, const char *args)
{
    return kdc_test_system("%s/kd-train %s >%s/%s.out 2>%s/%s.err", kdc_test_bin_dir(), args, g_tmp,
                           tag, g_tmp, tag);
}

static char *output(const char *tag, const char *ext)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/%s.%s", g_tmp, tag, ext);
    return slurp(p);
}

static void assert_one_line(const char *what, const char *s)
{
    size_t n = strlen(s);
    ck_assert_msg(n > 0 && strchr(s, '\n') == s + n - 1, "%s: not one line: %s", what, s);
}

typedef struct eval_line {
    long long images;
    double top1, top5, loss;
} eval_line;

/* --eval-only's stdout line. */
static eval_line eval_result(const char *tag)
{
    eval_line e;
    char *s = output(tag, "out");
    ck_assert_msg(sscanf(s, "images %lld top1 %lf top5 %lf loss %lf", &e.images, &e.top1, &e.top5,
                         &e.loss) == 4,
                  "%s: '%s'", tag, s);
    free(s);
    return e;
}

/* Row 1 of RUN/metrics.csv as numbers (13 columns, empty ones NAN). */
static void metrics_row(const char *run, double *col)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/metrics.csv", run);
    char *csv = slurp(p), *s = strchr(csv, '\n');
    ck_assert(s != NULL);
    s++;
    for (int i = 0; i < 13; i++) {
        char *end;
        col[i] = strtod(s, &end);
        if (end == s)
            col[i] = NAN;
        s = strchr(end, ',');
        if (!s)
            break;
        s++;
    }
    free(csv);
}

enum { M_EPOCH, M_LR, M_LOSS, M_CE, M_KD, M_PROJ, M_T1, M_T5, M_VLOSS, M_VTOP1 };

static int close_rel(double a, double b, double tol)
{
    return fabs(a - b) <= tol * (fabs(b) > 1 ? fabs(b) : 1);
}

static void run_dir(const char *tag, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", g_tmp, tag);
}

/* The run of the eval tests: resnet18 (torchvision loads it), online pad-crop
 * views of 32 px, a normalisation that is not ImageNet's, --val on the data. */
static void train_eval_run(char *run, size_t len)
{
    setup();
    run_dir("evalrun", run, len);
    char args[4096], p[1200];
    snprintf(p, sizeof p, "%s/student.safetensors", run);
    FILE *f = fopen(p, "rb");
    if (f) {
        fclose(f);
        return;
    }
    snprintf(args, sizeof args,
             "--data %s --val %s --student resnet18 --out %s --epochs 1 --batch 8 "
             "--view-policy pad-crop --image-size 32 " NORM " --threads 2 --quiet",
             g_data, g_data, run);
    ck_assert_int_eq(train("evalrun", args), 0);
}

START_TEST(test_eval_only_one_answer)
{
    char run[1100], args[4096];
    train_eval_run(run, sizeof run);
    double m[13];
    metrics_row(run, m);
    ck_assert_msg(isfinite(m[M_VLOSS]), "no val_loss in metrics.csv");
    /* 1: nothing but the weights and the folder */
    snprintf(args, sizeof args,
             "--eval-only --weights %s/student.safetensors --val %s "
             "--threads 2",
             run, g_data);
    ck_assert_int_eq(train("e1", args), 0);
    /* 2: every setting repeated, as the scripts do */
    snprintf(args, sizeof args,
             "--eval-only --weights %s/student.safetensors --val %s --student resnet18 "
             "--image-size 32 --resize-size 32 --view-policy pad-crop " NORM " --threads 2",
             run, g_data);
    ck_assert_int_eq(train("e2", args), 0);
    /* 3: under pad-crop every --resize-size evaluates the whole 32 px image */
    snprintf(args, sizeof args,
             "--eval-only --weights %s/student.safetensors --val %s --resize-size 256 "
             "--threads 2",
             run, g_data);
    ck_assert_int_eq(train("e3", args), 0);
    const char *tags[] = {"e1", "e2", "e3"};
    for (int i = 0; i < 3; i++) {
        eval_line e = eval_result(tags[i]);
        ck_assert_int_eq(e.images, NCLS * 5);
        /* metrics.csv prints 6 significant digits */
        ck_assert_msg(close_rel(e.loss, m[M_VLOSS], 2e-5), "%s: loss %.6f, the run's val %.6g",
                      tags[i], e.loss, m[M_VLOSS]);
        ck_assert_msg(fabs(e.top1 - m[M_VTOP1]) < 1e-3, "%s: top-1 %.4f, the run's %.4f", tags[i],
                      e.top1, m[M_VTOP1]);
    }
}
END_TEST

START_TEST(test_eval_only_refuses_disagreeing_flags)
{
    char run[1100], args[4096];
    train_eval_run(run, sizeof run);
    /* flag, what the message must also name (the stored value) */
    const char *cases[][3] = {
        {"--image-size 28", "--image-size 28", "image_size 32"},
        {"--student resnet34", "--student resnet34", "arch resnet18"},
        {"--mean 0.5,0.5,0.5", "--mean 0.5,0.5,0.5", "mean 0.3,0.3,0.3"},
        {"--std 0.2,0.2,0.2", "--std 0.2,0.2,0.2", "std 0.35,0.35,0.35"},
        {"--view-policy center", "--view-policy center", "view_policy pad-crop"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args,
                 "--eval-only --weights %s/student.safetensors --val %s %s --threads 2", run,
                 g_data, cases[i][0]);
        ck_assert_msg(train("conflict", args) == 1, "%s accepted", cases[i][0]);
        char *err = output("conflict", "err");
        ck_assert_msg(strstr(err, cases[i][1]) && strstr(err, cases[i][2]) &&
                          strstr(err, "--force"),
                      "%s: %s", cases[i][0], err);
        assert_one_line(cases[i][0], err);
        free(err);
    }
    /* --force: the flag wins (a 28 px evaluation gives another loss) */
    snprintf(args, sizeof args,
             "--eval-only --weights %s/student.safetensors --val %s "
             "--threads 2",
             run, g_data);
    ck_assert_int_eq(train("plain", args), 0);
    snprintf(args, sizeof args,
             "--eval-only --weights %s/student.safetensors --val %s --image-size 28 --force "
             "--threads 2",
             run, g_data);
    ck_assert_int_eq(train("forced", args), 0);
    eval_line a = eval_result("plain"), b = eval_result("forced");
    ck_assert_msg(!close_rel(a.loss, b.loss, 1e-4), "--force --image-size 28 changed nothing");
    /* a val folder with more classes than the student's: labels out of range */
    char v5[1200];
    snprintf(v5, sizeof v5, "%s/val5", g_tmp);
    ck_assert_int_eq(kdc_test_system("rm -rf %s && cp -r %s %s && cp -r %s/class3 %s/class4", v5,
                                     g_data, v5, v5, v5),
                     0);
    snprintf(args, sizeof args, "--eval-only --weights %s/student.safetensors --val %s", run, v5);
    ck_assert_int_eq(train("val5", args), 1);
    char *err = output("val5", "err");
    ck_assert_msg(strstr(err, "5 class folders") && strstr(err, "4 classes"), "%s", err);
    assert_one_line("val5", err);
    free(err);
}
END_TEST

/* The metadata is safetensors' string map: PyTorch-side readers see strings and
 * load the weights as before. */
START_TEST(test_metadata_for_pytorch)
{
    char run[1100];
    train_eval_run(run, sizeof run);
    int rc =
        kdc_test_system("cd %s/scripts/tools && %s -c \"\n"
                        "import json, struct, numpy as np, torchvision\n"
                        "from export_weights import load_file\n"
                        "p = '%s/student.safetensors'\n"
                        "b = open(p, 'rb').read()\n"
                        "h = json.loads(b[8:8 + struct.unpack('<Q', b[:8])[0]])\n"
                        "m = h['__metadata__']\n"
                        "assert all(isinstance(v, str) for v in m.values()), m\n"
                        "assert m['format'] == 'pt' and m['arch'] == 'resnet18', m\n"
                        "assert m['num_classes'] == '%d' and m['image_size'] == '32', m\n"
                        "assert m['resize_size'] == '32' and m['view_policy'] == 'pad-crop', m\n"
                        "f = np.float32\n"
                        "assert [f(x) for x in m['mean'].split(',')] == [f(0.3)] * 3, m\n"
                        "assert [f(x) for x in m['std'].split(',')] == [f(0.35)] * 3, m\n"
                        "net = torchvision.models.resnet18(num_classes=%d)\n"
                        "net.load_state_dict(load_file(p))\n"
                        "\"",
                        kdc_test_repo_root(), python(), run, NCLS, NCLS);
    ck_assert_int_eq(rc, 0);
}
END_TEST

/* Writes TMP/<name> with the tensors of src and the metadata given as a Python
 * dict literal (None: none). */
static void rewrite_weights(const char *src, const char *name, const char *meta)
{
    int rc = kdc_test_system("cd %s/scripts/tools && %s -c \"from export_weights import "
                             "load_file, save_file; save_file(load_file('%s'), '%s/%s', %s)\"",
                             kdc_test_repo_root(), python(), src, g_tmp, name, meta);
    ck_assert_int_eq(rc, 0);
}

START_TEST(test_eval_only_without_or_with_bad_metadata)
{
    char run[1100], src[1200], args[4096];
    train_eval_run(run, sizeof run);
    snprintf(src, sizeof src, "%s/student.safetensors", run);
    snprintf(args, sizeof args, "--eval-only --weights %s --val %s --threads 2", src, g_data);
    ck_assert_int_eq(train("ref", args), 0);
    eval_line ref = eval_result("ref");

    /* no metadata (a torchvision export): --student is needed, and the flags decide */
    rewrite_weights(src, "bare.safetensors", "None");
    snprintf(args, sizeof args, "--eval-only --weights %s/bare.safetensors --val %s", g_tmp,
             g_data);
    ck_assert_int_eq(train("bare", args), 1);
    char *err = output("bare", "err");
    ck_assert_msg(strstr(err, "--student"), "%s", err);
    assert_one_line("bare", err);
    free(err);
    snprintf(args, sizeof args,
             "--eval-only --weights %s/bare.safetensors --val %s --student resnet18 "
             "--image-size 32 --resize-size 32 " NORM " --threads 2",
             g_tmp, g_data);
    ck_assert_int_eq(train("bare_flags", args), 0);
    eval_line b = eval_result("bare_flags");
    ck_assert_msg(close_rel(b.loss, ref.loss, 1e-6), "bare + flags: %.6f vs %.6f", b.loss,
                  ref.loss);
    /* what went wrong before: some flags left out (ImageNet norm, Resize(256)) */
    snprintf(args, sizeof args,
             "--eval-only --weights %s/bare.safetensors --val %s --student resnet18 "
             "--image-size 32 --threads 2",
             g_tmp, g_data);
    ck_assert_int_eq(train("bare_some", args), 0);
    b = eval_result("bare_some");
    ck_assert_msg(!close_rel(b.loss, ref.loss, 1e-3), "missing flags did not matter?");

    /* hostile values: refused with the key's name */
    const char *bad[][2] = {
        {"{'arch': 'resnet18', 'image_size': 'abc'}", "image_size"},
        {"{'arch': 'resnet18', 'num_classes': '0'}", "num_classes"},
        {"{'arch': 'resnet18', 'mean': '1,2'}", "mean"},
        {"{'arch': 'resnet18', 'std': '0.2,0,0.2'}", "std"},
        {"{'arch': '../../x'}", "arch"},
        {"{'arch': 'resnet18', 'view_policy': 'zoom'}", "view_policy"},
        {"{'arch': 'resnet18', 'resize_size': '99999999999999999999'}", "resize_size"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rewrite_weights(src, "bad.safetensors", bad[i][0]);
        snprintf(args, sizeof args, "--eval-only --weights %s/bad.safetensors --val %s", g_tmp,
                 g_data);
        ck_assert_msg(train("bad", args) == 1, "%s accepted", bad[i][0]);
        err = output("bad", "err");
        ck_assert_msg(strstr(err, bad[i][1]) && strstr(err, "metadata"), "%s: %s", bad[i][0], err);
        assert_one_line(bad[i][0], err);
        free(err);
    }
}
END_TEST

/* --cache alone distils: CE 0.1 + KD 0.9 at T 4 for 32 px images, the same run as
 * with those flags spelled out. */
START_TEST(test_cache_turns_kd_on)
{
    setup();
    char r1[1100], r2[1100], args[4096];
    run_dir("kd_auto", r1, sizeof r1);
    run_dir("kd_explicit", r2, sizeof r2);
    const char *common = "--student resnet8x4 --epochs 1 --batch 8 --lr 0.01 --no-shuffle "
                         "--threads 2";
    snprintf(args, sizeof args, "--data %s --cache %s --out %s %s", g_data, g_cache, r1, common);
    ck_assert_int_eq(train("kd_auto", args), 0);
    snprintf(args, sizeof args,
             "--data %s --cache %s --out %s %s --ce-weight 0.1 --kd-weight 0.9 --temperature 4",
             g_data, g_cache, r2, common);
    ck_assert_int_eq(train("kd_explicit", args), 0);
    char *err = output("kd_auto", "err");
    ck_assert_msg(strstr(err, "kd-train: losses: CE 0.1 + KD 0.9 (T 4)") &&
                      strstr(err, "recipe cifar, chosen for 32 px images") &&
                      strstr(err, "kd-train: optimiser: sgd (momentum 0.9), lr 0.01") &&
                      strstr(err, "schedule cosine"),
                  "start-up lines: %s", err);
    free(err);
    double m[13];
    metrics_row(r1, m);
    ck_assert_msg(m[M_KD] > 0, "kd_loss %g: KD is off", m[M_KD]);
    ck_assert_msg(close_rel(m[M_LOSS], 0.1 * m[M_CE] + 0.9 * m[M_KD], 1e-4),
                  "loss %g != 0.1 ce %g + 0.9 kd %g", m[M_LOSS], m[M_CE], m[M_KD]);
    char a[1200], b[1200];
    snprintf(a, sizeof a, "%s/student.safetensors", r1);
    snprintf(b, sizeof b, "%s/student.safetensors", r2);
    ck_assert_msg(kdc_test_system("cmp -s %s %s", a, b) == 0, "%s and %s differ", a, b);

    /* --kd-weight 0 with a cache: plain CE, weight 1 */
    char r3[1100];
    run_dir("kd_off", r3, sizeof r3);
    snprintf(args, sizeof args, "--data %s --cache %s --out %s %s --kd-weight 0", g_data, g_cache,
             r3, common);
    ck_assert_int_eq(train("kd_off", args), 0);
    err = output("kd_off", "err");
    ck_assert_msg(strstr(err, "losses: CE 1 + KD 0 "), "%s", err);
    free(err);
    metrics_row(r3, m);
    ck_assert_msg(m[M_KD] == 0 && close_rel(m[M_LOSS], m[M_CE], 1e-6), "loss %g ce %g kd %g",
                  m[M_LOSS], m[M_CE], m[M_KD]);
}
END_TEST

START_TEST(test_recipes)
{
    setup();
    char r[1100], args[4096];
    /* explicit flags win before and after --recipe */
    run_dir("recipe_cifar", r, sizeof r);
    snprintf(args, sizeof args,
             "--data %s --cache %s --out %s --student resnet8x4 --lr 0.01 --recipe cifar "
             "--epochs 1 --batch 8 --threads 2",
             g_data, g_cache, r);
    ck_assert_int_eq(train("recipe_cifar", args), 0);
    char *err = output("recipe_cifar", "err");
    ck_assert_msg(strstr(err, "losses: CE 0.1 + KD 0.9 (T 4) [recipe cifar (--recipe)]") &&
                      strstr(err, "optimiser: sgd (momentum 0.9), lr 0.01, weight decay "
                                  "0.0005, batch 8, 1 epoch, schedule step x0.1 at epochs "
                                  "150,180,210"),
                  "%s", err);
    free(err);
    /* ImageNet's weights and temperature, also on small images; DOT with its delta */
    run_dir("recipe_imagenet", r, sizeof r);
    snprintf(args, sizeof args,
             "--data %s --cache %s --out %s --student resnet8x4 --recipe imagenet --epochs 1 "
             "--batch 8 --lr 0.01 --optimizer dot --threads 2",
             g_data, g_cache, r);
    ck_assert_int_eq(train("recipe_imagenet", args), 0);
    err = output("recipe_imagenet", "err");
    ck_assert_msg(strstr(err, "losses: CE 0.5 + KD 0.5 (T 1)") &&
                      strstr(err, "optimiser: dot (momentum 0.9, delta 0.09: 0.81 task, 0.99 "
                                  "distillation), lr 0.01, weight decay 0.0001, batch 8") &&
                      strstr(err, "step x0.1 at epochs 30,60,90"),
                  "%s", err);
    free(err);
    double m[13];
    metrics_row(r, m);
    ck_assert_msg(close_rel(m[M_LOSS], 0.5 * m[M_CE] + 0.5 * m[M_KD], 1e-4),
                  "loss %g != 0.5 ce %g + 0.5 kd %g", m[M_LOSS], m[M_CE], m[M_KD]);
}
END_TEST

START_TEST(test_resume_names_flags)
{
    setup();
    char r[1100], args[4096];
    run_dir("resume", r, sizeof r);
    const char *base = "--student resnet8x4 --batch 8 --lr 0.05 --threads 2 --quiet";
    snprintf(args, sizeof args, "--data %s --cache %s --out %s %s --epochs 1", g_data, g_cache, r,
             base);
    ck_assert_int_eq(train("res1", args), 0);
    const char *cases[][4] = {
        {"--epochs 2 --batch 4 --lr 0.1 --optimizer dot", "--batch was 8, now 4",
         "--lr was 0.05, now 0.1", "--optimizer was sgd, now dot"},
        {"--epochs 2 --batch 8 --lr 0.05 --seed 3 --no-shuffle --temperature 2",
         "--seed was 0, now 3", "--no-shuffle was not given, now given",
         "--temperature was 4, now 2"},
    };
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args,
                 "--data %s --cache %s --out %s --student resnet8x4 --threads 2 --quiet "
                 "--resume %s",
                 g_data, g_cache, r, cases[i][0]);
        ck_assert_msg(train("res2", args) == 1, "resumed with %s", cases[i][0]);
        char *err = output("res2", "err");
        for (int k = 1; k < 4; k++)
            ck_assert_msg(strstr(err, cases[i][k]), "no '%s' in: %s", cases[i][k], err);
        ck_assert_msg(!strstr(err, "--wd") && !strstr(err, "--student"),
                      "names an unchanged flag: %s", err);
        assert_one_line(cases[i][0], err);
        free(err);
    }
    /* the same flags with more epochs resume */
    snprintf(args, sizeof args, "--data %s --cache %s --out %s %s --epochs 2 --resume", g_data,
             g_cache, r, base);
    ck_assert_int_eq(train("res3", args), 0);
}
END_TEST

/* Counts lines of s that contain every one of the needles. */
static int count_lines_with(const char *s, const char *const *needles, int n)
{
    int count = 0;
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)len, s);
        int all = 1;
        for (int i = 0; i < n && all; i++)
            all = strstr(line, needles[i]) != NULL;
        count += all;
        s += len + (nl ? 1 : 0);
    }
    return count;
}

START_TEST(test_progress_off_a_terminal)
{
    setup();
    char r[1100], args[4096];
    const char *step_line[] = {
        "epoch 1/1: step ", " img, ", " img/s, ETA ", "loss ", "(ce ", "top-1 "};
    /* --log-every 0: a line at every step (3 steps of 8, 8, 4 images) */
    run_dir("progress0", r, sizeof r);
    snprintf(args, sizeof args,
             "--data %s --cache %s --out %s --student resnet8x4 --epochs 1 --batch 8 "
             "--threads 2 --log-every 0",
             g_data, g_cache, r);
    ck_assert_int_eq(train("progress0", args), 0);
    char *err = output("progress0", "err");
    ck_assert_msg(count_lines_with(err, step_line, 6) == 3, "expected 3 step lines: %s", err);
    const char *s3[] = {"step 3/3, 20/20 img"};
    ck_assert_msg(count_lines_with(err, s3, 1) >= 1, "%s", err);
    free(err);
    /* the default, 30 s: a 1-second epoch logs only its end */
    run_dir("progress30", r, sizeof r);
    snprintf(args, sizeof args,
             "--data %s --cache %s --out %s --student resnet8x4 --epochs 1 --batch 8 "
             "--threads 2",
             g_data, g_cache, r);
    ck_assert_int_eq(train("progress30", args), 0);
    err = output("progress30", "err");
    const char *eta[] = {"ETA"}, *took[] = {"epoch 1/1: step 3/3", "took"};
    ck_assert_msg(count_lines_with(err, eta, 1) == 0, "progress before 30 s: %s", err);
    ck_assert_msg(count_lines_with(err, took, 2) == 1, "%s", err);
    free(err);

    /* kd-precompute: the same flag */
    const char *fx = kdc_test_fixture_root();
    for (int k = 0; k < 2; k++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/pc%d.h5", g_tmp, k);
        int rc = kdc_test_system(
            "%s/kd-precompute --data %s --teacher resnet18 --weights "
            "%s/precompute/resnet18_c10.safetensors --out %s --image-size 32 --resize-size 32 "
            "--batch 4 --threads 2 %s 2>%s/pc.err",
            kdc_test_bin_dir(), g_data, fx, p, k ? "" : "--log-every 0", g_tmp);
        ck_assert_int_eq(rc, 0);
        err = output("pc", "err");
        const char *pc[] = {"kd-precompute: ", "/20 img, ", " img/s, ETA "};
        int lines = count_lines_with(err, pc, 3);
        if (k == 0)
            ck_assert_msg(lines >= 1, "no progress line with --log-every 0: %s", err);
        else
            ck_assert_msg(lines == 0, "progress before 30 s: %s", err);
        free(err);
    }
}
END_TEST

int main(void)
{
    char tmpl[1024];
    const char *tmpdir = getenv("TMPDIR");
    snprintf(tmpl, sizeof tmpl, "%s/kdc-train-cli-XXXXXX", tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        return 1;
    }
    g_tmp = strdup(tmpl);
    Suite *s = suite_create("train_cli");
    TCase *tc = tcase_create("train_cli");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_eval_only_one_answer);
    tcase_add_test(tc, test_eval_only_refuses_disagreeing_flags);
    tcase_add_test(tc, test_metadata_for_pytorch);
    tcase_add_test(tc, test_eval_only_without_or_with_bad_metadata);
    tcase_add_test(tc, test_cache_turns_kd_on);
    tcase_add_test(tc, test_recipes);
    tcase_add_test(tc, test_resume_names_flags);
    tcase_add_test(tc, test_progress_off_a_terminal);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (!getenv("KDC_KEEP_TMP"))
        kdc_test_system("rm -rf %s", g_tmp);
    free(g_tmp);
    return failed ? 1 : 0;
}
