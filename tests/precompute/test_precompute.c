/* test_precompute.c - kd-precompute end to end, running the built tool
 * (KDC_BIN/kd-precompute) on fixtures made by scripts/ref/ref_precompute.py:
 *   - resnet18 / resnet50 logits and features equal torchvision's float64 eval
 *     forward on real 224x224 JPEG photos (no resampling involved), in float32,
 *     float16 and top-k storage;
 *   - kill -9 at several moments + --resume gives the same datasets and
 *     attributes as an uninterrupted run; shards merged by kd-cache likewise;
 *   - --resume refuses other arguments, weights, dataset or batch size;
 *   - bad weights / flags / dataset: one-line error, non-zero exit, no output;
 *   - unreadable JPEGs are skipped and recorded, or abort with --strict; one bad
 *     file costs one image at any decode thread count, in either row order;
 *   - weights that can only give NaN are refused at load, naming the tensor;
 *     non-finite teacher outputs are skipped like unreadable images, or abort
 *     with --strict;
 *   - --out inside --data (however spelled) and an unwritable output folder are
 *     refused before any work. */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/base/progress.h"
#include "formats/cache_reader.h"
#include "tests/helpers/bad_images.h"
#include "tests/helpers/edit_weights.h"
#include "tests/helpers/make_inputs.h"
#include "tests/helpers/testutil.h"

/* Paths here are short temporary names; snprintf truncation cannot happen in
 * practice and would only make a command fail, never overflow. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#define SUITE "precompute"

static char fx[4096];  /* fixture folder */
static char tool[4096];

static void init_paths(void)
{
    snprintf(fx, sizeof fx, "%s/%s", kdc_test_fixture_root(), SUITE);
    snprintf(tool, sizeof tool, "%s/kd-precompute", kdc_test_bin_dir());
}

static int exists(const char *fmt, const char *a)
{
    char p[4096];
    snprintf(p, sizeof p, fmt, a);
    return access(p, F_OK) == 0;
}

/* Runs kd-precompute ARGS with stderr to errfile; returns the exit status. */
static int run_tool(const char *errfile, const char *args)
{
    return kdc_test_system("%s %s --quiet 2>%s >/dev/null", tool, args, errfile);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ---- reading a cache ---- */

typedef struct loaded {
    cache_header h;
    int64_t n;
    float *logits;   /* n x V x C (float32 / float16 modes) */
    int32_t *topk_i; /* n x V x K */
    float *topk_v;
    float *features; /* n x V x D */
    int32_t *box;    /* n x V x 4 */
    uint8_t *flip, *skipped;
    int32_t *height;
    char **path;
} loaded;

static void load_cache(const char *path, loaded *L)
{
    cache_reader *r;
    kdc_error e;
    ck_assert_msg(cache_reader_open(path, 0, &r, &e) == KDC_OK, "%s", e.msg);
    memset(L, 0, sizeof *L);
    L->h = *cache_reader_header(r);
    const cache_header *h = &L->h;
    int64_t n = L->n = h->num_images, V = h->views_per_image, C = h->num_classes;
    int64_t D = h->feature_dim, K = h->topk;
    const cache_image_table *t = cache_reader_images(r);
    L->path = calloc((size_t)n, sizeof *L->path);
    L->skipped = malloc((size_t)n);
    L->height = malloc((size_t)n * 4);
    L->box = malloc((size_t)(n * V * 4) * 4);
    L->flip = malloc((size_t)(n * V));
    if (h->logit_storage == CACHE_LOGITS_TOPK) {
        L->topk_i = malloc((size_t)(n * V * K) * 4);
        L->topk_v = malloc((size_t)(n * V * K) * 4);
    } else {
        L->logits = malloc((size_t)(n * V * C) * 4);
    }
    if (D)
        L->features = malloc((size_t)(n * V * D) * 4);
    cache_batch b;
    ck_assert_int_eq(cache_batch_alloc(&b, h, (int)V, &e), KDC_OK);
    for (int64_t i = 0; i < n; i++) {
        L->path[i] = strdup(t->path[i]);
        L->skipped[i] = t->skipped[i];
        L->height[i] = t->height[i];
        ck_assert_msg(cache_reader_read_image(r, i, &b, &e) == KDC_OK, "%s", e.msg);
        memcpy(L->box + i * V * 4, b.box, (size_t)V * 16);
        memcpy(L->flip + i * V, b.flip, (size_t)V);
        if (L->logits)
            memcpy(L->logits + i * V * C, b.logits, (size_t)(V * C) * 4);
        else {
            memcpy(L->topk_i + i * V * K, b.topk_index, (size_t)(V * K) * 4);
            memcpy(L->topk_v + i * V * K, b.topk_value, (size_t)(V * K) * 4);
        }
        if (D)
            memcpy(L->features + i * V * D, b.features, (size_t)(V * D) * 4);
    }
    cache_batch_free(&b);
    cache_reader_close(r);
}

static void free_loaded(loaded *L)
{
    for (int64_t i = 0; L->path && i < L->n; i++)
        free(L->path[i]);
    free(L->path);
    free(L->logits);
    free(L->topk_i);
    free(L->topk_v);
    free(L->features);
    free(L->box);
    free(L->flip);
    free(L->skipped);
    free(L->height);
}

/* Every dataset in stored form, chunk by chunk, and every attribute: equal
 * bytes (a float16 or float32 value that differs in one bit fails). */
static void assert_same_cache(const char *a, const char *b)
{
    cache_reader *ra, *rb;
    kdc_error e;
    ck_assert_msg(cache_reader_open(a, 0, &ra, &e) == KDC_OK, "%s", e.msg);
    ck_assert_msg(cache_reader_open(b, 0, &rb, &e) == KDC_OK, "%s", e.msg);
    const cache_header *ha = cache_reader_header(ra), *hb = cache_reader_header(rb);
    const char *d = cache_header_diff(ha, hb, 0);
    ck_assert_msg(d == NULL, "%s vs %s: attribute %s differs", a, b, d);
    ck_assert_str_eq(ha->created_by, hb->created_by);
    ck_assert_int_eq(ha->complete, 1);
    ck_assert_int_eq(hb->complete, 1);
    const cache_image_table *ta = cache_reader_images(ra), *tb = cache_reader_images(rb);
    for (int64_t i = 0; i < ha->num_images; i++) {
        ck_assert_str_eq(ta->path[i], tb->path[i]);
        ck_assert(ta->label[i] == tb->label[i] && ta->size[i] == tb->size[i] &&
                  ta->crc32[i] == tb->crc32[i] && ta->height[i] == tb->height[i] &&
                  ta->width[i] == tb->width[i] && ta->skipped[i] == tb->skipped[i]);
    }
    cache_chunk ca, cb;
    ck_assert_int_eq(cache_chunk_alloc(&ca, ha, &e), KDC_OK);
    ck_assert_int_eq(cache_chunk_alloc(&cb, hb, &e), KDC_OK);
    size_t V = (size_t)ha->views_per_image, C = (size_t)ha->num_classes;
    size_t D = (size_t)ha->feature_dim, K = (size_t)ha->topk;
    for (int64_t c = 0; c < cache_reader_num_chunks(ra); c++) {
        ck_assert_msg(cache_reader_read_chunk(ra, c, &ca, &e) == KDC_OK, "%s", e.msg);
        ck_assert_msg(cache_reader_read_chunk(rb, c, &cb, &e) == KDC_OK, "%s", e.msg);
        size_t n = (size_t)ca.count;
        ck_assert_int_eq(ca.count, cb.count);
        ck_assert(!memcmp(ca.box, cb.box, n * V * 16) && !memcmp(ca.flip, cb.flip, n * V));
        if (ha->logit_storage == CACHE_LOGITS_TOPK) {
            ck_assert(!memcmp(ca.topk_index, cb.topk_index, n * V * K * cache_topk_index_size(ha)));
            ck_assert(!memcmp(ca.topk_value, cb.topk_value, n * V * K * 2));
        } else {
            size_t es = ha->logit_storage == CACHE_LOGITS_F32 ? 4 : 2;
            ck_assert_msg(!memcmp(ca.logits, cb.logits, n * V * C * es),
                          "%s vs %s: logits of chunk %lld differ", a, b, (long long)c);
        }
        if (D)
            ck_assert_msg(!memcmp(ca.features, cb.features, n * V * D * 2),
                          "%s vs %s: features of chunk %lld differ", a, b, (long long)c);
    }
    cache_chunk_free(&ca);
    cache_chunk_free(&cb);
    cache_reader_close(ra);
    cache_reader_close(rb);
}

/* ---- agreement with torchvision ---- */

static const char *photo_args(char *buf, size_t len, const char *arch, const char *weights,
                              const char *logits, const char *out)
{
    snprintf(buf, len,
             "--data %s/photos --teacher %s --weights %s/%s --out %s --view-policy center "
             "--resize-size 224 --image-size 224 --logits %s --threads 2 --batch 4 --order dataset",
             fx, arch, fx, weights, out, logits);
    return buf;
}

static void check_photos(const char *arch, int D)
{
    char *dir = kdc_test_tmpdir("pc-ref"), out[4096], err[4096], args[8192];
    snprintf(out, sizeof out, "%s/c.h5", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    char wname[64];
    snprintf(wname, sizeof wname, "%s.safetensors", arch);
    int rc = run_tool(err, photo_args(args, sizeof args, arch, wname, "float32", out));
    ck_assert_msg(rc == 0, "kd-precompute failed: %s", slurp(err));
    loaded L;
    load_cache(out, &L);
    const int N = 6, C = 1000;
    ck_assert_int_eq(L.n, N);
    ck_assert_int_eq(L.h.views_per_image, 1);
    ck_assert_int_eq(L.h.num_classes, C);
    ck_assert_int_eq(L.h.feature_dim, D);
    ck_assert_str_eq(L.h.teacher_arch, arch);
    ck_assert_str_eq(L.h.view_policy, "center");
    ck_assert_int_eq(strlen(L.h.teacher_weights_sha256), 64);

    /* ImageFolder order, and the center box of a 224 image is the whole image. */
    char pf[4096];
    snprintf(pf, sizeof pf, "%s/photos_paths.txt", fx);
    char *lines = slurp(pf), *save = NULL;
    int i = 0;
    for (char *ln = strtok_r(lines, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save), i++) {
        ck_assert_int_lt(i, N);
        ck_assert_str_eq(L.path[i], ln);
        ck_assert(L.box[i * 4] == 0 && L.box[i * 4 + 1] == 0 && L.box[i * 4 + 2] == 224 &&
                  L.box[i * 4 + 3] == 224 && L.flip[i] == 0 && L.height[i] == 224);
        ck_assert_int_eq(L.skipped[i], 0);
    }
    ck_assert_int_eq(i, N);

    char name[64];
    snprintf(name, sizeof name, "logits_%s", arch);
    double *rl = kdc_test_load_f64(SUITE, name, (size_t)N * C, NULL);
    snprintf(name, sizeof name, "features_%s", arch);
    double *rf = kdc_test_load_f64(SUITE, name, (size_t)N * D, NULL);
    double el = kdc_test_rel_err_f64(L.logits, rl, (size_t)N * C);
    double ef = kdc_test_rel_err_f64(L.features, rf, (size_t)N * D);
    ck_assert_msg(el < 1e-4, "%s float32 logits: relative error %.3g", arch, el);
    /* features are stored as float16: half an ulp is 2^-11 of the value */
    ck_assert_msg(ef < 1e-3, "%s float16 features: relative error %.3g", arch, ef);
    free(rl);
    free(rf);
    free_loaded(&L);
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}

START_TEST(test_resnet18_matches_torchvision)
{
    check_photos("resnet18", 512);
}
END_TEST

START_TEST(test_resnet50_matches_torchvision)
{
    check_photos("resnet50", 2048);
}
END_TEST

START_TEST(test_float16_and_topk)
{
    char *dir = kdc_test_tmpdir("pc-modes"), out[4096], err[4096], args[8192];
    const int N = 6, C = 1000, K = 5;
    double *ref = kdc_test_load_f64(SUITE, "logits_resnet18", (size_t)N * C, NULL);
    double scale = 0;
    for (int i = 0; i < N * C; i++)
        scale = fabs(ref[i]) > scale ? fabs(ref[i]) : scale;

    snprintf(err, sizeof err, "%s/err", dir);
    snprintf(out, sizeof out, "%s/f16.h5", dir);
    int rc = run_tool(err, photo_args(args, sizeof args, "resnet18", "resnet18.safetensors",
                                      "float16", out));
    ck_assert_msg(rc == 0, "%s", slurp(err));
    loaded L;
    load_cache(out, &L);
    ck_assert_int_eq(L.h.logit_storage, CACHE_LOGITS_F16);
    double e16 = kdc_test_rel_err_f64(L.logits, ref, (size_t)N * C);
    ck_assert_msg(e16 < 1e-3, "float16 logits: relative error %.3g", e16);
    free_loaded(&L);

    snprintf(out, sizeof out, "%s/topk.h5", dir);
    photo_args(args, sizeof args, "resnet18", "resnet18.safetensors", "topk:5", out);
    strcat(args, " --no-features");
    rc = run_tool(err, args);
    ck_assert_msg(rc == 0, "%s", slurp(err));
    load_cache(out, &L);
    ck_assert_int_eq(L.h.logit_storage, CACHE_LOGITS_TOPK);
    ck_assert_int_eq(L.h.topk, K);
    ck_assert_int_eq(L.h.feature_dim, 0);
    ck_assert_ptr_null(L.features);
    for (int i = 0; i < N; i++) {
        const double *row = ref + (size_t)i * C;
        /* the reference's K largest, by selection */
        double top[5];
        int used[1000] = {0};
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int c = 0; c < C; c++)
                if (!used[c] && (best < 0 || row[c] > row[best]))
                    best = c;
            used[best] = 1;
            top[k] = row[best];
        }
        for (int k = 0; k < K; k++) {
            int idx = L.topk_i[i * K + k];
            float v = L.topk_v[i * K + k];
            ck_assert(idx >= 0 && idx < C);
            /* the k-th stored class is the k-th largest (up to float noise) */
            ck_assert_msg(fabs(row[idx] - top[k]) <= 1e-4 * scale,
                          "image %d rank %d: class %d has %g, the reference's is %g", i, k, idx,
                          row[idx], top[k]);
            ck_assert_msg(fabs(v - row[idx]) <= 1e-3 * scale, "image %d rank %d: value %g vs %g",
                          i, k, v, row[idx]);
            if (k)
                ck_assert(v <= L.topk_v[i * K + k - 1]);
        }
    }
    free_loaded(&L);
    free(ref);
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}
END_TEST

/* The stored boxes and flips of rrc and pad-crop views equal the independent
 * Python Philox + torchvision get_params reference of scripts/ref/ref_images.py
 * (build/fixtures/images/views.txt: "policy name index view y0 x0 h w flip"). */
static void check_views_policy(const char *key, const char *policy, const char *extra)
{
    char vt[4096];
    snprintf(vt, sizeof vt, "%s/images/views.txt", kdc_test_fixture_root());
    char *text = strdup(slurp(vt)), *save = NULL;
    char *dir = kdc_test_tmpdir("pc-views"), list[4096], out[4096], err[4096], args[8192];
    snprintf(list, sizeof list, "%s/list.txt", dir);
    snprintf(out, sizeof out, "%s/c.h5", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    enum { MAXV = 64 };
    struct { char name[128]; int idx, v, box[4], flip; } ref[MAXV];
    int n = 0, nimg = 0, V = 0;
    char names[16][128];
    for (char *ln = strtok_r(text, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        char pol[16];
        ck_assert_int_lt(n, MAXV);
        ck_assert_int_eq(sscanf(ln, "%15s %127s %d %d %d %d %d %d %d", pol, ref[n].name,
                                &ref[n].idx, &ref[n].v, &ref[n].box[0], &ref[n].box[1],
                                &ref[n].box[2], &ref[n].box[3], &ref[n].flip), 9);
        if (strcmp(pol, key))
            continue;
        ck_assert_int_lt(ref[n].idx, 16);
        snprintf(names[ref[n].idx], sizeof names[0], "%s", ref[n].name);
        nimg = ref[n].idx + 1 > nimg ? ref[n].idx + 1 : nimg;
        V = ref[n].v + 1 > V ? ref[n].v + 1 : V;
        n++;
    }
    ck_assert_int_gt(n, 0);
    FILE *f = fopen(list, "w");
    for (int i = 0; i < nimg; i++) {
        fprintf(f, "%s.jpg\t-1\n", names[i]);
        ck_assert_int_eq(kdc_test_system("cp %s/images/photos/%s.jpg %s/%s.jpg",
                                         kdc_test_fixture_root(), names[i], dir, names[i]), 0);
    }
    fclose(f);
    snprintf(args, sizeof args,
             "--list %s --teacher resnet18 --weights %s/resnet18_c10.safetensors --out %s "
             "--view-policy %s --views %d --seed 1234 --threads 2 --batch 4 --order dataset %s",
             list, fx, out, policy, V, extra);
    ck_assert_msg(run_tool(err, args) == 0, "%s", slurp(err));
    loaded L;
    load_cache(out, &L);
    ck_assert_int_eq(L.n, nimg);
    for (int k = 0; k < n; k++) {
        const int32_t *b = L.box + ((size_t)ref[k].idx * V + ref[k].v) * 4;
        ck_assert_msg(b[0] == ref[k].box[0] && b[1] == ref[k].box[1] && b[2] == ref[k].box[2] &&
                          b[3] == ref[k].box[3],
                      "%s %s view %d: box (%d,%d,%d,%d), reference (%d,%d,%d,%d)", policy,
                      ref[k].name, ref[k].v, b[0], b[1], b[2], b[3], ref[k].box[0],
                      ref[k].box[1], ref[k].box[2], ref[k].box[3]);
        ck_assert_int_eq(L.flip[(size_t)ref[k].idx * V + ref[k].v], ref[k].flip);
        ck_assert_int_eq(L.skipped[ref[k].idx], 0);
    }
    free_loaded(&L);
    free(text);
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}

START_TEST(test_views_match_reference)
{
    check_views_policy("rrc", "rrc", "--image-size 224");
    check_views_policy("pad", "pad-crop", "--image-size 32 --pad 4");
}
END_TEST

/* ---- kill -9 and --resume ---- */

static void small_args(char *buf, size_t len, const char *data, const char *weights,
                       const char *out, const char *extra)
{
    snprintf(buf, len,
             "--data %s --teacher resnet18 --weights %s --out %s --view-policy pad-crop "
             "--views 2 --image-size 32 --threads 2 --batch 8 --chunk-images 8 --logits float32 "
             "--seed 3 %s",
             data, weights, out, extra);
}

static pid_t start_tool(const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "exec %s %s --quiet >/dev/null 2>&1", tool, args);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Starts the tool; when wait_partial is set, waits until OUT.partial appears
 * (the pipeline has started) before the delay; then kills it with SIGKILL.
 * Returns the exit status of a run that ended on its own, -1 if it was killed.
 * *t_partial / *t_end (may be NULL) receive when the partial appeared and when
 * the process ended, relative to its start. */
static int run_and_kill(const char *args, const char *out, int wait_partial, double delay,
                        double *t_partial, double *t_end)
{
    char partial[4096];
    snprintf(partial, sizeof partial, "%s.partial", out);
    double t0 = kdc_now_seconds();
    pid_t pid = start_tool(args);
    int status, done = 0;
    if (t_partial)
        *t_partial = 0;
    while (wait_partial && access(partial, F_OK) != 0) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            done = 1;
            break;
        }
        sleep_s(0.002);
    }
    if (t_partial)
        *t_partial = kdc_now_seconds() - t0;
    if (!done) {
        if (delay >= 0) {
            sleep_s(delay);
            kill(pid, SIGKILL);
        }
        waitpid(pid, &status, 0);
    }
    if (t_end)
        *t_end = kdc_now_seconds() - t0;
    if (WIFSIGNALED(status))
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

START_TEST(test_kill_and_resume)
{
    char *dir = kdc_test_tmpdir("pc-kill"), ref[4096], out[4096], err[4096], args[8192];
    char data[4096], weights[4096];
    snprintf(data, sizeof data, "%s/small", fx);
    snprintf(weights, sizeof weights, "%s/resnet18_c10.safetensors", fx);
    snprintf(ref, sizeof ref, "%s/ref.h5", dir);
    snprintf(out, sizeof out, "%s/k.h5", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    /* The uninterrupted run, timed: setup until OUT.partial appears, then the
     * pipeline (Tp). Kill points are placed relative to the partial's
     * appearance, so they land in the pipeline however loaded the machine is. */
    small_args(args, sizeof args, data, weights, ref, "");
    double tp0, tend;
    ck_assert_int_eq(run_and_kill(args, ref, 1, -1, &tp0, &tend), 0);
    double Tp = tend - tp0;

    /* {wait for the partial?, delay as a fraction of Tp}: one kill during the
     * setup, the others from the file's creation to the last chunks; odd ones
     * are killed a second time during their resume. */
    const struct {
        int wait_partial;
        double frac;
    } at[] = {{0, 0.0}, {1, 0.0}, {1, 0.1}, {1, 0.3}, {1, 0.5}, {1, 0.7}, {1, 0.9}};
    int killed_with_partial = 0;
    for (size_t k = 0; k < sizeof at / sizeof *at; k++) {
        kdc_test_system("rm -f %s %s.partial", out, out);
        small_args(args, sizeof args, data, weights, out, "");
        double delay = at[k].wait_partial ? at[k].frac * Tp : 0.05;
        int rc = run_and_kill(args, out, at[k].wait_partial, delay, NULL, NULL);
        /* On a loaded machine the pipeline's pace varies from run to run, so a
         * late kill can miss a run that finished early: retry it sooner. */
        for (int retry = 0; at[k].wait_partial && retry < 3 && !(rc == -1 && exists("%s.partial", out));
             retry++) {
            kdc_test_system("rm -f %s %s.partial", out, out);
            delay *= 0.5;
            rc = run_and_kill(args, out, 1, delay, NULL, NULL);
        }
        killed_with_partial += rc == -1 && exists("%s.partial", out);
        small_args(args, sizeof args, data, weights, out, "--resume");
        if (k % 2 == 1)
            run_and_kill(args, out, 0, 0.5 * tend, NULL, NULL);
        rc = run_tool(err, args);
        ck_assert_msg(rc == 0, "resume after kill %zu: %s", k, slurp(err));
        ck_assert(!exists("%s.partial", out));
        assert_same_cache(ref, out);
    }
    /* most kills must have hit the pipeline, not only the setup */
    ck_assert_msg(killed_with_partial >= 4, "only %d kills left a partial file (pipeline %.2f s)",
                  killed_with_partial, Tp);

    /* --resume on the finished file does nothing and succeeds */
    ck_assert_int_eq(run_tool(err, args), 0);
    assert_same_cache(ref, out);
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}
END_TEST

/* A partial file made deterministically: --strict stops at the last image,
 * a zero-byte JPEG, after every earlier chunk is written. */
START_TEST(test_resume_refuses_other_settings)
{
    char *dir = kdc_test_tmpdir("pc-refuse"), out[4096], err[4096], args[8192];
    char data[4096], data2[4096], data3[4096], weights[4096], weights2[4096];
    snprintf(data, sizeof data, "%s/small", dir);
    snprintf(data2, sizeof data2, "%s/small_changed", dir);
    snprintf(data3, sizeof data3, "%s/small_more", dir);
    snprintf(weights, sizeof weights, "%s/resnet18_c10.safetensors", fx);
    snprintf(weights2, sizeof weights2, "%s/w2.safetensors", dir);
    snprintf(out, sizeof out, "%s/c.h5", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    ck_assert_int_eq(kdc_test_system("cp -r %s/small %s && : > %s/c2/zzz.jpg && cp -r %s %s && "
                                     "cp -r %s %s && printf x >> %s/c0/img000.jpg && "
                                     "cp %s/c1/img001.jpg %s/c1/img999.jpg",
                                     fx, data, data, data, data2, data, data3, data2, data3, data3),
                     0);
    /* the same weights with one byte of data changed (still a valid file) */
    ck_assert_int_eq(kdc_test_system("cp %s %s && printf '\\001' | dd of=%s bs=1 seek=$(($(stat "
                                     "-c %%s %s) - 3)) conv=notrunc status=none",
                                     weights, weights2, weights2, weights2),
                     0);

    /* --order dataset: the zero-byte c2/zzz.jpg is the last row */
    small_args(args, sizeof args, data, weights, out, "--order dataset --strict");
    ck_assert_int_ne(run_tool(err, args), 0);
    ck_assert_ptr_nonnull(strstr(slurp(err), "zzz.jpg"));
    ck_assert(exists("%s.partial", out) && !exists("%s", out));

    /* without --resume: refused, the partial is kept */
    small_args(args, sizeof args, data, weights, out, "--order dataset");
    ck_assert_int_ne(run_tool(err, args), 0);
    ck_assert_ptr_nonnull(strstr(slurp(err), "--resume"));

    struct {
        const char *data, *weights, *extra, *expect;
    } cases[] = {
        {data, weights, "--resume --seed 4", "--seed"},
        {data, weights, "--resume --views 3", "--views"},
        {data, weights, "--resume --logits float16", "--logits"},
        {data, weights2, "--resume", "teacher weights"},
        {data2, weights, "--resume", "dataset"},
        {data3, weights, "--resume", "dataset"},
        {data, weights, "--resume --batch 4", "--batch"},
        {data, weights, "--resume --chunk-images 16", "--chunk-images"},
        {data, weights, "--resume --order shuffled", "--order"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char extra[256];
        snprintf(extra, sizeof extra, "--order dataset %s", cases[i].extra);
        small_args(args, sizeof args, cases[i].data, cases[i].weights, out, extra);
        ck_assert_int_ne(run_tool(err, args), 0);
        const char *msg = slurp(err);
        ck_assert_msg(strstr(msg, cases[i].expect) != NULL, "case %zu: '%s' does not name %s",
                      i, msg, cases[i].expect);
        ck_assert_int_eq(count_lines(msg), 1);
        ck_assert(exists("%s.partial", out) && !exists("%s", out));
    }

    /* the right settings complete it; the zero-byte image is recorded as skipped */
    small_args(args, sizeof args, data, weights, out, "--order dataset --resume");
    ck_assert_msg(run_tool(err, args) == 0, "%s", slurp(err));
    loaded L;
    load_cache(out, &L);
    ck_assert_int_eq(L.n, 193);
    ck_assert_str_eq(L.path[192], "c2/zzz.jpg");
    ck_assert_int_eq(L.skipped[192], 1);
    for (int i = 0; i < 192; i++)
        ck_assert_int_eq(L.skipped[i], 0);
    free_loaded(&L);
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}
END_TEST

START_TEST(test_shards_merge_to_the_same_cache)
{
    char *dir = kdc_test_tmpdir("pc-shard"), ref[4096], err[4096], args[8192], data[4096];
    char weights[4096], shard[3][4096], merged[4096];
    snprintf(data, sizeof data, "%s/small", fx);
    snprintf(weights, sizeof weights, "%s/resnet18_c10.safetensors", fx);
    snprintf(ref, sizeof ref, "%s/ref.h5", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    snprintf(merged, sizeof merged, "%s/merged.h5", dir);
    small_args(args, sizeof args, data, weights, ref, "--decode-threads 3");
    ck_assert_msg(run_tool(err, args) == 0, "%s", slurp(err));
    for (int i = 0; i < 3; i++) {
        char extra[64];
        snprintf(shard[i], sizeof shard[i], "%s/s%d.h5", dir, i);
        snprintf(extra, sizeof extra, "--shard %d/3", i);
        small_args(args, sizeof args, data, weights, shard[i], extra);
        ck_assert_msg(run_tool(err, args) == 0, "%s", slurp(err));
    }
    int rc = kdc_test_system("%s/kd-cache merge %s %s %s %s >/dev/null 2>%s", kdc_test_bin_dir(),
                             merged, shard[0], shard[1], shard[2], err);
    ck_assert_msg(rc == 0, "kd-cache merge: %s", slurp(err));
    /* also shows that --decode-threads does not change a bit. --threads may: the
     * GEMM and oneDNN partition their sums by thread count on some CPUs (an
     * AVX-512 EPYC here; docs/PERFORMANCE.md, "Determinism"). */
    assert_same_cache(ref, merged);
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}
END_TEST

/* ---- row order ---- */

/* The row of `path` in L, or -1. */
static int64_t row_of_path(const loaded *L, const char *path)
{
    for (int64_t i = 0; i < L->n; i++)
        if (!strcmp(L->path[i], path))
            return i;
    return -1;
}

/* --order shuffled (the default) stores the same per-image values as --order
 * dataset, only in other rows: a permutation that depends on --seed, mixes
 * classes within every chunk, and is the same in every run. */
START_TEST(test_shuffled_order_is_a_permutation_of_dataset_order)
{
    char *dir = kdc_test_tmpdir("pc-order"), err[4096], args[8192], data[4096], weights[4096];
    char ds[4096], sh[4096], sh2[4096], sh4[4096];
    snprintf(data, sizeof data, "%s/small", fx);
    snprintf(weights, sizeof weights, "%s/resnet18_c10.safetensors", fx);
    snprintf(err, sizeof err, "%s/err", dir);
    snprintf(ds, sizeof ds, "%s/dataset.h5", dir);
    snprintf(sh, sizeof sh, "%s/shuffled.h5", dir);
    snprintf(sh2, sizeof sh2, "%s/shuffled2.h5", dir);
    snprintf(sh4, sizeof sh4, "%s/shuffled4.h5", dir);
    small_args(args, sizeof args, data, weights, ds, "--order dataset");
    ck_assert_msg(run_tool(err, args) == 0, "%s", slurp(err));
    small_args(args, sizeof args, data, weights, sh, ""); /* default: shuffled */
    ck_assert_msg(run_tool(err, args) == 0, "%s", slurp(err));
    small_args(args, sizeof args, data, weights, sh2, "--order shuffled --decode-threads 1");
    ck_assert_msg(run_tool(err, args) == 0, "%s", slurp(err));
    small_args(args, sizeof args, data, weights, sh4, "--seed 4");
    ck_assert_msg(run_tool(err, args) == 0, "%s", slurp(err));
    /* deterministic: the same file again, bit for bit */
    assert_same_cache(sh, sh2);

    loaded A, B, S4;
    load_cache(ds, &A);
    load_cache(sh, &B);
    load_cache(sh4, &S4);
    ck_assert_ptr_nonnull(strstr(A.h.created_by, "order=dataset"));
    ck_assert_ptr_nonnull(strstr(B.h.created_by, "order=shuffled"));
    const int64_t n = A.n, V = A.h.views_per_image, C = A.h.num_classes, D = A.h.feature_dim;
    ck_assert_int_eq(n, 192);
    ck_assert_int_eq(B.n, n);
    ck_assert(cache_header_diff(&A.h, &B.h, 0) != NULL); /* the fingerprint: row order */
    int64_t moved = 0, moved4 = 0, differ4 = 0;
    char *seen = calloc((size_t)n, 1);
    for (int64_t r = 0; r < n; r++) {
        int64_t i = row_of_path(&A, B.path[r]);
        ck_assert_msg(i >= 0, "shuffled row %lld: '%s' not in the dataset-order cache",
                      (long long)r, B.path[r]);
        ck_assert_int_eq(seen[i], 0);
        seen[i] = 1;
        moved += i != r;
        int64_t i4 = row_of_path(&A, S4.path[r]);
        ck_assert_int_ge(i4, 0);
        moved4 += i4 != r;
        differ4 += i4 != i;
        ck_assert_int_eq(B.skipped[r], A.skipped[i]);
        ck_assert_int_eq(B.height[r], A.height[i]);
        /* views are drawn by image, not by row: the same boxes and flips */
        ck_assert(!memcmp(B.box + r * V * 4, A.box + i * V * 4, (size_t)(V * 4) * 4));
        ck_assert(!memcmp(B.flip + r * V, A.flip + i * V, (size_t)V));
        /* the teacher's outputs for the same pixels, in a batch of other images */
        double el = kdc_test_rel_err_f32(B.logits + r * V * C, A.logits + i * V * C,
                                         (size_t)(V * C));
        ck_assert_msg(el < 1e-5, "%s: logits differ by %.3g between the orders", B.path[r], el);
        if (D) {
            double ef = kdc_test_rel_err_f32(B.features + r * V * D, A.features + i * V * D,
                                             (size_t)(V * D));
            ck_assert_msg(ef < 1e-3, "%s: features differ by %.3g", B.path[r], ef);
        }
    }
    free(seen);
    /* not the identity, and another --seed gives another order */
    ck_assert_int_gt(moved, n / 2);
    ck_assert_int_gt(moved4, n / 2);
    ck_assert_int_gt(differ4, n / 2);
    /* every chunk (8 images) mixes the classes c0/c1/c2 (sorted: one class
     * per chunk) */
    const int64_t ch = A.h.chunk_images;
    for (int64_t c = 0; c * ch < n; c++) {
        int classes = 0;
        for (int k = 0; k < 3; k++) {
            char pre[8];
            snprintf(pre, sizeof pre, "c%d/", k);
            for (int64_t r = c * ch; r < (c + 1) * ch && r < n; r++)
                if (!strncmp(B.path[r], pre, 3)) {
                    classes++;
                    break;
                }
        }
        ck_assert_msg(classes >= 2, "chunk %lld holds one class", (long long)c);
    }
    free_loaded(&A);
    free_loaded(&B);
    free_loaded(&S4);
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}
END_TEST

/* ---- bad input ---- */

static const char *dir_err(const char *dir)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/err", dir);
    return p;
}

static void expect_refused(const char *dir, const char *args, int code, const char *what)
{
    char err[4096];
    snprintf(err, sizeof err, "%s/err", dir);
    int rc = run_tool(err, args);
    const char *msg = slurp(err);
    ck_assert_msg(rc == code, "%s: exit %d (expected %d): %s", what, rc, code, msg);
    ck_assert_msg(count_lines(msg) == 1, "%s: not one line: '%s'", what, msg);
    ck_assert_msg(strncmp(msg, "kd-precompute: ", 15) == 0, "%s: '%s'", what, msg);
    ck_assert_msg(!exists("%s/c.h5", dir) && !exists("%s/c.h5.partial", dir),
                  "%s: left an output file", what);
}

START_TEST(test_bad_weights_flags_and_dataset)
{
    char *dir = kdc_test_tmpdir("pc-bad"), args[8192];
    ck_assert_int_eq(kdc_test_system("head -c 100000 %s/resnet18_c10.safetensors > %s/trunc.st && "
                                     ": > %s/empty.st && head -c 8 %s/resnet18_c10.safetensors > "
                                     "%s/hdr.st",
                                     fx, dir, dir, fx, dir),
                     0);
    const char *base = "--view-policy center --image-size 32 --resize-size 32 --threads 2";
    struct {
        const char *teacher, *weights_fmt, *data_fmt;
        int code;
        const char *what;
    } cases[] = {
        {"resnet18", "%s/trunc.st", "%s/small", 1, "truncated weights"},
        {"resnet18", "%s/empty.st", "%s/small", 1, "zero-byte weights"},
        {"resnet18", "%s/hdr.st", "%s/small", 1, "header-only weights"},
        {"resnet18", "%s/missing.st", "%s/small", 1, "missing weights"},
        {"resnet50", "%s/resnet18_c10.safetensors", "%s/small", 1, "wrong architecture"},
        {"resnet34", "%s/resnet18_c10.safetensors", "%s/small", 1, "wrong depth"},
        {"vgg16", "%s/resnet18_c10.safetensors", "%s/small", 1, "unknown architecture"},
        {"resnet18", "%s/resnet18_c10.safetensors", "%s/no_such_folder", 1, "missing dataset"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char w[4096], d[4096];
        snprintf(w, sizeof w, cases[i].weights_fmt, strstr(cases[i].weights_fmt, "c10") ? fx : dir);
        snprintf(d, sizeof d, cases[i].data_fmt, fx);
        snprintf(args, sizeof args, "--data %s --teacher %s --weights %s --out %s/c.h5 %s", d,
                 cases[i].teacher, w, dir, base);
        expect_refused(dir, args, cases[i].code, cases[i].what);
    }
    const char *flags[] = {"--logits float8", "--views 0", "--view-policy zoom", "--batch x",
                           "--shard 3/3", "--device tpu", "--bogus"};
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
        snprintf(args, sizeof args,
                 "--data %s/small --teacher resnet18 --weights %s/resnet18_c10.safetensors "
                 "--out %s/c.h5 %s %s",
                 fx, fx, dir, base, flags[i]);
        /* --device tpu passes the parser and fails when the backend is made */
        expect_refused(dir, args, strstr(flags[i], "tpu") ? 1 : 2, flags[i]);
    }
    /* more classes in the dataset than the teacher has: a clear refusal */
    snprintf(args, sizeof args, "--data %s/photos --teacher resnet18 --weights %s/resnet18_c10.safetensors "
             "--out %s/c.h5 --logits topk:11 %s", fx, fx, dir, base);
    expect_refused(dir, args, 1, "topk larger than the classes");

    /* a list file whose label is past the teacher's classes; then a valid one */
    ck_assert_int_eq(kdc_test_system("cp %s/small/c0/img000.jpg %s/a.jpg && printf 'a.jpg\\t10\\n' "
                                     "> %s/bad.txt && printf 'a.jpg\\t9\\n' > %s/ok.txt",
                                     fx, dir, dir, dir),
                     0);
    snprintf(args, sizeof args, "--list %s/bad.txt --teacher resnet18 --weights "
             "%s/resnet18_c10.safetensors --out %s/c.h5 %s", dir, fx, dir, base);
    expect_refused(dir, args, 1, "label past the teacher's classes");
    ck_assert_ptr_nonnull(strstr(slurp(dir_err(dir)), "label 10"));
    snprintf(args, sizeof args, "--list %s/ok.txt --teacher resnet18 --weights "
             "%s/resnet18_c10.safetensors --out %s/c.h5 %s", dir, fx, dir, base);
    ck_assert_msg(run_tool(dir_err(dir), args) == 0, "%s", slurp(dir_err(dir)));
    char out[4096];
    snprintf(out, sizeof out, "%s/c.h5", dir);
    loaded L;
    load_cache(out, &L);
    ck_assert_int_eq(L.n, 1);
    ck_assert_str_eq(L.path[0], "a.jpg");
    free_loaded(&L);
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}
END_TEST

START_TEST(test_unreadable_images_skipped_or_strict)
{
    char *dir = kdc_test_tmpdir("pc-skip"), out[4096], err[4096], args[8192];
    snprintf(out, sizeof out, "%s/c.h5", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    snprintf(args, sizeof args,
             "--data %s/bad --teacher resnet18 --weights %s/resnet18_c10.safetensors --out %s "
             "--resize-size 224 --image-size 224 --threads 2 --batch 4 --logits float32",
             fx, fx, out);
    ck_assert_msg(run_tool(err, args) == 0, "%s", slurp(err));
    const char *msg = slurp(err);
    ck_assert_ptr_nonnull(strstr(msg, "skipped c/empty.jpg"));
    ck_assert_ptr_nonnull(strstr(msg, "skipped c/truncated.jpg"));
    loaded L;
    load_cache(out, &L);
    ck_assert_int_eq(L.n, 6);
    for (int i = 0; i < 6; i++) {
        int bad = strncmp(L.path[i], "c/", 2) == 0;
        ck_assert_int_eq(L.skipped[i], bad);
        ck_assert_int_eq(L.height[i], bad ? 0 : 224);
        float mx = 0;
        for (int c = 0; c < 10; c++)
            mx = fabsf(L.logits[i * 10 + c]) > mx ? fabsf(L.logits[i * 10 + c]) : mx;
        ck_assert(bad ? mx == 0 : mx > 0);
    }
    free_loaded(&L);

    kdc_test_system("rm -f %s", out);
    strcat(args, " --strict");
    int rc = run_tool(err, args);
    ck_assert_int_eq(rc, 1);
    msg = slurp(err);
    /* the first unreadable one in row order (shuffled): either */
    ck_assert_msg(strstr(msg, "empty.jpg") || strstr(msg, "truncated.jpg"), "%s", msg);
    ck_assert_int_eq(count_lines(msg), 1);
    ck_assert(!exists("%s", out));
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}
END_TEST

/* ---- one bad file costs one image ---- */

/* A folder of 2 x 8 good 32 x 32 JPEGs, a CMYK JPEG and one file of each bad
 * kind (bad_images.h) in class c1, where they sort before its good images.
 * Returns the number of bad files. */
static int make_bad_folder(const char *root)
{
    kdc_test_make_image_folder(root, 2, 8, 32, 32, 0, 900);
    char cls[4096], good[4200];
    snprintf(cls, sizeof cls, "%s/class1", root);
    snprintf(good, sizeof good, "%s/class0/img00.jpg", root);
    return kdc_test_add_bad_images(cls, good, 1);
}

static void center32_args(char *buf, size_t len, const char *data, const char *weights,
                          const char *out, const char *extra)
{
    snprintf(buf, len,
             "--data %s --teacher resnet18 --weights %s --out %s --view-policy center "
             "--image-size 32 --resize-size 32 --threads 2 --batch 4 --chunk-images 5 "
             "--logits float32 %s",
             data, weights, out, extra);
}

/* The bad files of make_bad_folder are skipped, nothing else, whatever the
 * decode thread count and row order; every good image's logits equal those of
 * a run on a folder without the bad files. Before the decoder reset, one bad
 * header failed every later image on its decoding thread. */
START_TEST(test_one_bad_file_costs_one_image)
{
    char *dir = kdc_test_tmpdir("pc-bad1"), data[4096], clean[4096], weights[4096];
    char out[4200], ref[4200], err[4200], args[16384];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(clean, sizeof clean, "%s/clean", dir);
    snprintf(weights, sizeof weights, "%s/resnet18_c10.safetensors", fx);
    snprintf(err, sizeof err, "%s/err", dir);
    int nbad = make_bad_folder(data);
    kdc_test_make_image_folder(clean, 2, 8, 32, 32, 0, 900);
    char cmyk[4200];
    snprintf(cmyk, sizeof cmyk, "%s/class1/cmyk.JPEG", clean);
    kdc_test_write_cmyk_jpeg(cmyk, 40, 30, 77);
    snprintf(ref, sizeof ref, "%s/ref.h5", dir);
    center32_args(args, sizeof args, clean, weights, ref, "--order dataset");
    ck_assert_msg(run_tool(err, args) == 0, "%s", slurp(err));
    loaded R;
    load_cache(ref, &R);
    const char *orders[] = {"--order dataset", "--order shuffled"};
    const int threads[] = {1, 2, 4};
    for (int o = 0; o < 2; o++)
        for (int t = 0; t < 3; t++) {
            char extra[128];
            snprintf(extra, sizeof extra, "%s --decode-threads %d", orders[o], threads[t]);
            snprintf(out, sizeof out, "%s/c_%d_%d.h5", dir, o, threads[t]);
            center32_args(args, sizeof args, data, weights, out, extra);
            ck_assert_msg(run_tool(err, args) == 0, "%s: %s", extra, slurp(err));
            const char *msg = slurp(err);
            char want[128];
            snprintf(want, sizeof want, "skipped %d of %d images", nbad, 16 + 1 + nbad);
            ck_assert_msg(strstr(msg, want), "%s: no '%s' in: %s", extra, want, msg);
            for (int k = 0; k < nbad; k++) {
                char name[64];
                snprintf(name, sizeof name, "skipped class1/bad_%s.JPEG: ",
                         kdc_test_bad_name((kdc_test_bad_kind)k));
                ck_assert_msg(strstr(msg, name), "%s: '%s' not named in: %s", extra, name, msg);
            }
            loaded L;
            load_cache(out, &L);
            int skipped = 0;
            for (int64_t i = 0; i < L.n; i++) {
                int bad = strstr(L.path[i], "/bad_") != NULL;
                skipped += L.skipped[i];
                ck_assert_msg(L.skipped[i] == bad, "%s: %s skipped %d", extra, L.path[i],
                              L.skipped[i]);
                if (bad)
                    continue;
                int64_t r = row_of_path(&R, L.path[i]);
                ck_assert_msg(r >= 0, "%s", L.path[i]);
                /* equal up to the GEMM's rounding in another batch position */
                double e = kdc_test_rel_err_f32(L.logits + i * 10, R.logits + r * 10, 10);
                ck_assert_msg(e < 1e-5, "%s: %s has other logits than without the bad files "
                              "(relative error %g)", extra, L.path[i], e);
            }
            printf("kd-precompute %s: %d of %lld images skipped (%d bad files)\n", extra,
                   skipped, (long long)L.n, nbad);
            ck_assert_int_eq(skipped, nbad);
            free_loaded(&L);
        }
    free_loaded(&R);
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}
END_TEST

/* ---- weights and outputs that are not finite ---- */

/* Weights that can only give NaN are refused when the teacher loads, naming
 * the tensor, before any output exists. Before weights_check, each of these
 * made a cache that was 100% NaN and marked complete. */
START_TEST(test_nan_teacher_weights_refused)
{
    char *dir = kdc_test_tmpdir("pc-nanw"), src[4096], w[4200], out[4200], args[16384];
    snprintf(src, sizeof src, "%s/resnet18_c10.safetensors", fx);
    snprintf(w, sizeof w, "%s/w.safetensors", dir);
    snprintf(out, sizeof out, "%s/c.h5", dir);
    struct {
        const char *tensor;
        long first, count;
        float value;
    } cases[] = {
        {"conv1.weight", 17, 1, NAN},
        {"fc.bias", 3, 1, INFINITY},
        {"layer2.0.bn1.running_var", 5, 2, -0.5f},
        {"layer4.1.bn2.running_mean", 0, 1, -INFINITY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kdc_test_edit_weights(src, w, "resnet18", 10, cases[i].tensor, cases[i].first,
                              cases[i].count, cases[i].value);
        char data[4096];
        snprintf(data, sizeof data, "%s/small", fx);
        center32_args(args, sizeof args, data, w, out, "");
        expect_refused(dir, args, 1, cases[i].tensor);
        const char *msg = slurp(dir_err(dir));
        ck_assert_msg(strstr(msg, cases[i].tensor) && strstr(msg, "w.safetensors"), "%s", msg);
    }
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}
END_TEST

/* Finite weights whose outputs are not storable: a logit overflowing float32
 * (fc.weight 1e38), a logit beyond float16 in a float16 cache (fc.bias 1e5),
 * a feature beyond float16 (the last BN's weight 1e30; features are always
 * float16). Without --strict every image is skipped like an unreadable one,
 * named with the reason; with --strict the run fails naming the first image. */
START_TEST(test_nonfinite_outputs_skipped_or_strict)
{
    char *dir = kdc_test_tmpdir("pc-nano"), src[4096], w[4200], out[4200], err[4200];
    char args[16384], data[4096];
    snprintf(src, sizeof src, "%s/resnet18_c10.safetensors", fx);
    snprintf(w, sizeof w, "%s/w.safetensors", dir);
    snprintf(out, sizeof out, "%s/c.h5", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    kdc_test_make_image_folder(data, 2, 3, 32, 32, 0, 40);
    struct {
        const char *tensor;
        long first, count;
        float value;
        const char *logits, *why;
    } cases[] = {
        {"fc.weight", 3 * 512, 512, 1e38f, "float32", "logit 3 is inf"},
        {"fc.bias", 2, 1, 1e5f, "float16", "logit 2 is 100000, beyond float16"},
        {"layer4.1.bn2.weight", 0, -1, 1e30f, "float32", "beyond float16"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kdc_test_edit_weights(src, w, "resnet18", 10, cases[i].tensor, cases[i].first,
                              cases[i].count, cases[i].value);
        char extra[64];
        snprintf(extra, sizeof extra, "--logits %s", cases[i].logits);
        center32_args(args, sizeof args, data, w, out, extra);
        kdc_test_system("rm -f %s", out);
        ck_assert_msg(run_tool(err, args) == 0, "%s: %s", cases[i].tensor, slurp(err));
        const char *msg = slurp(err);
        printf("%s = %g: %s", cases[i].tensor, (double)cases[i].value, msg);
        ck_assert_msg(strstr(msg, "skipped 6 of 6 images") && strstr(msg, cases[i].why) &&
                          strstr(msg, "not finite"),
                      "%s: %s", cases[i].tensor, msg);
        loaded L;
        load_cache(out, &L);
        for (int64_t k = 0; k < L.n; k++)
            ck_assert_msg(L.skipped[k] == 1, "%s: %s not skipped", cases[i].tensor, L.path[k]);
        free_loaded(&L);
        kdc_test_system("rm -f %s", out);
        char strict[16400];
        snprintf(strict, sizeof strict, "%s --strict", args);
        int rc = run_tool(err, strict);
        msg = slurp(err);
        ck_assert_msg(rc == 1 && count_lines(msg) == 1 && strstr(msg, "not finite") &&
                          strstr(msg, "--strict") && strstr(msg, ".jpg"),
                      "%s --strict: exit %d: %s", cases[i].tensor, rc, msg);
        ck_assert(!exists("%s", out)); /* OUT.partial stays, as after any failure */
        kdc_test_system("rm -f %s %s.partial", out, out);
    }
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}
END_TEST

/* ---- where the cache goes ---- */

/* --out inside --data is refused however it is spelled: a file at the root
 * or in a class folder (named .jpg, it would be listed as an image), a path
 * through "..", a relative --out from inside the folder, --out through a link
 * to the folder, --data through a link. A sibling folder whose name starts
 * like the data folder's is fine. */
START_TEST(test_out_inside_data_refused)
{
    char *dir = kdc_test_tmpdir("pc-inside"), data[4096], w[4096], args[16384], out[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(w, sizeof w, "%s/resnet18_c10.safetensors", fx);
    kdc_test_make_image_folder(data, 2, 2, 32, 32, 0, 70);
    ck_assert_int_eq(kdc_test_system("ln -s data %s/link && mkdir %s/data2", dir, dir), 0);
    const char *outs[][2] = {
        {"%s/data/c.h5", "%s/data"},
        {"%s/data/class0/c.jpg", "%s/data"},
        {"%s/data/class1/../class0/c.h5", "%s/data"},
        {"%s/link/class1/c.h5", "%s/data"},
        {"%s/data/c.h5", "%s/link"},
    };
    for (size_t i = 0; i < sizeof outs / sizeof *outs; i++) {
        char d[4200];
        snprintf(out, sizeof out, outs[i][0], dir);
        snprintf(d, sizeof d, outs[i][1], dir);
        center32_args(args, sizeof args, d, w, out, "");
        int rc = run_tool(dir_err(dir), args);
        const char *msg = slurp(dir_err(dir));
        ck_assert_msg(rc == 1 && strstr(msg, "is inside --data") && count_lines(msg) == 1,
                      "--out %s --data %s: exit %d: %s", out, d, rc, msg);
        ck_assert_msg(access(out, F_OK) != 0, "%s was written", out);
    }
    /* relative, from inside the class folder */
    char abs_tool[4096], abs_w[4096];
    ck_assert(realpath(tool, abs_tool) && realpath(w, abs_w));
    int rc = kdc_test_system("cd %s/data/class0 && %s --data %s/data --teacher resnet18 "
                             "--weights %s --out c.h5 --view-policy center --image-size 32 "
                             "--resize-size 32 --quiet 2>%s",
                             dir, abs_tool, dir, abs_w, dir_err(dir));
    ck_assert_msg(rc == 1 && strstr(slurp(dir_err(dir)), "is inside --data"), "%s",
                  slurp(dir_err(dir)));
    /* the sibling data2/ is not inside data/ */
    snprintf(out, sizeof out, "%s/data2/c.h5", dir);
    center32_args(args, sizeof args, data, w, out, "");
    ck_assert_msg(run_tool(dir_err(dir), args) == 0, "%s", slurp(dir_err(dir)));
    ck_assert(access(out, F_OK) == 0);
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}
END_TEST

/* Runs the tool without the power to override file permissions, so that a
 * read-only folder is read-only for root too (tests run as root in CI). */
static const char *unprivileged(void)
{
    return geteuid() == 0 ? "setpriv --bounding-set -dac_override,-dac_read_search " : "";
}

/* An existing output folder that cannot take files fails at once, naming it,
 * before the checksum pass and the teacher; with the cache already complete
 * there, --resume still says so (nothing to write). */
START_TEST(test_unwritable_out_folder)
{
    char *dir = kdc_test_tmpdir("pc-ro"), data[4096], w[4096], out[4200], args[16384];
    snprintf(data, sizeof data, "%s/small", fx);
    snprintf(w, sizeof w, "%s/resnet18_c10.safetensors", fx);
    snprintf(out, sizeof out, "%s/ro/c.h5", dir);
    ck_assert_int_eq(kdc_test_system("mkdir %s/ro", dir), 0);
    center32_args(args, sizeof args, data, w, out, "");
    ck_assert_msg(run_tool(dir_err(dir), args) == 0, "%s", slurp(dir_err(dir)));
    ck_assert_int_eq(kdc_test_system("chmod 555 %s/ro", dir), 0);
    int rc = kdc_test_system("%s%s %s --resume --quiet 2>%s", unprivileged(), tool, args,
                             dir_err(dir));
    ck_assert_msg(rc == 0, "complete cache in a read-only folder: %s", slurp(dir_err(dir)));
    snprintf(out, sizeof out, "%s/ro/d.h5", dir);
    center32_args(args, sizeof args, data, w, out, "");
    double t0 = kdc_now_seconds();
    rc = kdc_test_system("%s%s %s --quiet 2>%s", unprivileged(), tool, args, dir_err(dir));
    const char *msg = slurp(dir_err(dir));
    printf("read-only --out folder: exit %d after %.2f s: %s", rc, kdc_now_seconds() - t0, msg);
    ck_assert_msg(rc == 1 && strstr(msg, "cannot write in") && strstr(msg, "/ro") &&
                      count_lines(msg) == 1,
                  "%s", msg);
    ck_assert(access(out, F_OK) != 0);
    kdc_test_system("chmod 755 %s/ro; rm -rf %s", dir, dir);
    free(dir);
}
END_TEST

int main(void)
{
    init_paths();
    Suite *s = suite_create(SUITE);
    TCase *tc = tcase_create(SUITE);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_resnet18_matches_torchvision);
    tcase_add_test(tc, test_resnet50_matches_torchvision);
    tcase_add_test(tc, test_float16_and_topk);
    tcase_add_test(tc, test_views_match_reference);
    tcase_add_test(tc, test_unreadable_images_skipped_or_strict);
    tcase_add_test(tc, test_bad_weights_flags_and_dataset);
    tcase_add_test(tc, test_resume_refuses_other_settings);
    tcase_add_test(tc, test_kill_and_resume);
    tcase_add_test(tc, test_shards_merge_to_the_same_cache);
    tcase_add_test(tc, test_shuffled_order_is_a_permutation_of_dataset_order);
    tcase_add_test(tc, test_one_bad_file_costs_one_image);
    tcase_add_test(tc, test_nan_teacher_weights_refused);
    tcase_add_test(tc, test_nonfinite_outputs_skipped_or_strict);
    tcase_add_test(tc, test_out_inside_data_refused);
    tcase_add_test(tc, test_unwritable_out_folder);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
