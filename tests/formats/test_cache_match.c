/* test_cache_match.c - formats/cache_match.h: `kd-cache verify --data` and
 * kd-train refuse the same cache/dataset pairs. Each variant of a bad pair is
 * a real ImageFolder of JPEGs and a cache written with the cache writer, then
 * one thing made wrong: an extra image in the folder, a duplicated path row, a
 * changed label, a view box outside its image (two ways), a stored image size
 * that is not the file's, a file changed in place. Before cache_match.c,
 * verify passed the first four and the box cases; kd-train refused them all.
 * Each is checked through the library (cache_verify), the kd-cache tool and
 * the kd-train tool, and the messages must name the image. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/image/dataset.h"
#include "common/image/views.h"
#include "formats/cache_match.h"
#include "formats/cache_verify.h"
#include "formats/cache_writer.h"
#include "tests/helpers/make_inputs.h"
#include "tests/helpers/testutil.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

enum { NCLS = 2, PER = 4, N = NCLS * PER, V = 2, C = 3, S = 32 };

typedef enum {
    T_NONE,
    T_DUP_ROW,   /* row 5 names row 4's image */
    T_LABEL,     /* row 2's label + 1 */
    T_BOX_RIGHT, /* row 3's views reach one pixel past the right edge */
    T_BOX_ABOVE, /* row 6's views start above the image */
    T_DIMS,      /* row 1's stored width is the file's + 9 (its boxes still fit) */
} tamper;

static char *g_tmp;

/* A cache of data_dir's images: rrc views drawn like kd-precompute, rows in
 * reverse dataset order (as a shuffled cache: matched by path), then `what`
 * made wrong. */
static void write_cache(const char *path, const char *data_dir, tamper what)
{
    kdc_error err = {0};
    img_dataset *ds;
    ck_assert_msg(img_dataset_open_folder(&ds, data_dir, &err) == KDC_OK, "%s", err.msg);
    ck_assert(img_dataset_checksum(ds, 1, &err) == KDC_OK);
    ck_assert_int_eq((int)ds->count, N);
    cache_header h;
    memset(&h, 0, sizeof h);
    snprintf(h.teacher_arch, sizeof h.teacher_arch, "synthetic");
    snprintf(h.teacher_weights_sha256, sizeof h.teacher_weights_sha256, "%064d", 0);
    snprintf(h.created_by, sizeof h.created_by, "test_cache_match");
    snprintf(h.view_policy, sizeof h.view_policy, "rrc");
    h.num_images = N;
    h.views_per_image = V;
    h.num_classes = C;
    h.image_size = S;
    h.resize_size = S;
    double mean[3] = {0.485, 0.456, 0.406}, sd[3] = {0.229, 0.224, 0.225};
    memcpy(h.mean, mean, sizeof mean);
    memcpy(h.std, sd, sizeof sd);
    h.scale_range[0] = 0.08;
    h.scale_range[1] = 1;
    h.ratio_range[0] = 0.75;
    h.ratio_range[1] = 4.0 / 3.0;
    h.seed = 5;
    h.chunk_images = 3;
    h.logit_storage = CACHE_LOGITS_F32;
    img_view_params vp;
    img_view_params_default(&vp);
    vp.policy = IMG_VIEW_RRC;
    vp.image_size = S;
    vp.resize_size = S;
    vp.seed = h.seed;

    cache_image_table t;
    ck_assert(cache_image_table_alloc(&t, N, &err) == KDC_OK);
    int32_t hh[N], ww[N], box[N * V * 4];
    uint8_t flip[N * V];
    float logits[N * V * C];
    kdc_test_fill_uniform(logits, N * V * C, 3, -2.0f, 2.0f);
    for (int r = 0; r < N; r++) {
        int i = N - 1 - r;
        t.path[r] = strdup(ds->items[i].path);
        t.label[r] = ds->items[i].label;
        t.size[r] = ds->items[i].size;
        t.crc32[r] = ds->items[i].crc32;
        ww[r] = 48 + 8 * (i % 3); /* kdc_test_make_image_folder below: one size per class */
        hh[r] = 40;
        for (int v = 0; v < V; v++) {
            img_view view;
            ck_assert(img_view_draw(&vp, ww[r], hh[r], (uint64_t)i, (uint32_t)v, &view, &err) ==
                      KDC_OK);
            int32_t *b = box + (r * V + v) * 4;
            b[0] = view.y0, b[1] = view.x0, b[2] = view.h, b[3] = view.w;
            flip[r * V + v] = view.flip;
        }
    }
    switch (what) {
    case T_NONE: break;
    case T_DUP_ROW:
        free(t.path[5]);
        t.path[5] = strdup(t.path[4]);
        t.label[5] = t.label[4];
        t.size[5] = t.size[4];
        t.crc32[5] = t.crc32[4];
        break;
    case T_LABEL: t.label[2] = (t.label[2] + 1) % NCLS; break;
    /* every view of the row: kd-train's epoch 1 uses one of them */
    case T_BOX_RIGHT:
        for (int v = 0; v < V; v++) {
            int32_t *b = box + (3 * V + v) * 4;
            b[1] = ww[3] - b[3] + 1;
        }
        break;
    case T_BOX_ABOVE:
        for (int v = 0; v < V; v++)
            box[(6 * V + v) * 4] = -1 - v;
        break;
    case T_DIMS: ww[1] += 9; break;
    }
    cache_writer *w;
    ck_assert_msg(cache_writer_create(path, &h, &t, NULL, &w, &err) == KDC_OK, "%s", err.msg);
    cache_chunk_input in = {.first_image = 0,
                            .count = N,
                            .height = hh,
                            .width = ww,
                            .box = box,
                            .flip = flip,
                            .logits = logits};
    ck_assert_msg(cache_writer_append(w, &in, &err) == KDC_OK, "%s", err.msg);
    ck_assert_msg(cache_writer_finish(w, &err) == KDC_OK, "%s", err.msg);
    cache_image_table_free(&t);
    img_dataset_free(ds);
}

/* data_dir: two classes of 4 JPEGs, 48/56/64 x 40 pixels. */
static void make_data(const char *dir)
{
    char p[4096];
    ck_assert_int_eq(kdc_test_system("mkdir -p %s/class0 %s/class1", dir, dir), 0);
    for (int i = 0; i < N; i++) {
        int cls = i / PER;
        snprintf(p, sizeof p, "%s/class%d/img%02d.jpg", dir, cls, i % PER);
        kdc_test_write_jpeg(p, 48 + 8 * (i % 3), 40, cls, 300 + (uint64_t)i, 0);
    }
}

static char *slurp(const char *path)
{
    static char buf[8192];
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s", path);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* verify (library and tool) and kd-train on (cache, data): all accept, or all
 * refuse with a message holding `needle` (the image's name). */
static void expect(const char *cache, const char *data, const char *needle, const char *what)
{
    kdc_error e = {0};
    cache_verify_report rep;
    kdc_status st = cache_verify(cache, data, &rep, &e);
    char err[4096], run[4096];
    snprintf(err, sizeof err, "%s/err", g_tmp);
    int vrc = kdc_test_system("%s/kd-cache verify %s --data %s >/dev/null 2>%s", kdc_test_bin_dir(),
                              cache, data, err);
    char vmsg[8192];
    snprintf(vmsg, sizeof vmsg, "%s", slurp(err));
    static int k;
    snprintf(run, sizeof run, "%s/run%d", g_tmp, k++);
    int trc = kdc_test_system("%s/kd-train --data %s --cache %s --student resnet8x4 --out %s "
                              "--epochs 1 --batch 4 --kd-weight 1 --threads 1 --quiet 2>%s",
                              kdc_test_bin_dir(), data, cache, run, err);
    const char *tmsg = slurp(err);
    printf("%-22s verify: %s | kd-train: %s", what, st ? e.msg : "ok", trc ? tmsg : "ok\n");
    fflush(stdout);
    if (!needle) {
        ck_assert_msg(st == KDC_OK, "%s: verify: %s", what, e.msg);
        ck_assert_int_eq(rep.images_checked, N);
        ck_assert_msg(vrc == 0, "%s: kd-cache verify: %s", what, vmsg);
        ck_assert_msg(trc == 0, "%s: kd-train: %s", what, tmsg);
        return;
    }
    ck_assert_msg(st != KDC_OK, "%s: verify passed a cache kd-train refuses (%s)", what, tmsg);
    ck_assert_msg(strstr(e.msg, needle), "%s: verify's message lacks '%s': %s", what, needle,
                  e.msg);
    ck_assert_msg(vrc != 0 && strstr(vmsg, needle), "%s: kd-cache verify: %d %s", what, vrc, vmsg);
    ck_assert_msg(trc != 0, "%s: kd-train accepted it", what);
    ck_assert_msg(strstr(tmsg, needle), "%s: kd-train's message lacks '%s': %s", what, needle,
                  tmsg);
}

START_TEST(verify_refuses_what_kd_train_refuses)
{
    char data[4096], cache[4096];
    snprintf(data, sizeof data, "%s/data", g_tmp);
    make_data(data);
    snprintf(cache, sizeof cache, "%s/ok.h5", g_tmp);
    write_cache(cache, data, T_NONE);
    expect(cache, data, NULL, "matching pair");

    struct {
        tamper t;
        const char *needle, *what;
    } cases[] = {
        /* rows are in reverse order: row r is image N-1-r */
        {T_DUP_ROW, "class0/img03.jpg", "duplicated path row"},
        {T_LABEL, "class1/img01.jpg", "changed label"},
        {T_BOX_RIGHT, "class1/img00.jpg", "box past the right edge"},
        {T_BOX_ABOVE, "class0/img01.jpg", "box above the image"},
        {T_DIMS, "class1/img02.jpg", "stored width wrong"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(cache, sizeof cache, "%s/bad%zu.h5", g_tmp, i);
        write_cache(cache, data, cases[i].t);
        expect(cache, data, cases[i].needle, cases[i].what);
    }

    /* the folder changes under a good cache: an extra image, then a file
     * changed in place (same size) */
    snprintf(cache, sizeof cache, "%s/ok.h5", g_tmp);
    ck_assert_int_eq(kdc_test_system("cp %s/class1/img00.jpg %s/class1/img99.jpg", data, data), 0);
    expect(cache, data, "class1/img99.jpg", "extra image in DIR");
    ck_assert_int_eq(kdc_test_system("rm %s/class1/img99.jpg && printf 'Q' | dd "
                                     "of=%s/class0/img02.jpg bs=1 seek=200 conv=notrunc "
                                     "2>/dev/null",
                                     data, data),
                     0);
    expect(cache, data, "class0/img02.jpg", "byte changed in place");
}
END_TEST

/* The table-against-folder part alone, with rows in any order. */
START_TEST(match_dataset_names_what_differs)
{
    char data[4096];
    snprintf(data, sizeof data, "%s/data2", g_tmp);
    make_data(data);
    kdc_error e = {0};
    img_dataset *ds;
    ck_assert(img_dataset_open_folder(&ds, data, &e) == KDC_OK);
    cache_image_table t;
    ck_assert(cache_image_table_alloc(&t, N - 1, &e) == KDC_OK);
    /* a cache that lacks the folder's last image */
    for (int r = 0; r < N - 1; r++) {
        t.path[r] = strdup(ds->items[r].path);
        t.label[r] = ds->items[r].label;
        t.size[r] = ds->items[r].size;
    }
    int64_t map[N];
    ck_assert_int_eq(cache_match_dataset(ds, &t, "c.h5", map, &e), KDC_EMISMATCH);
    ck_assert_msg(strstr(e.msg, ds->items[N - 1].path) && strstr(e.msg, "not in the cache"), "%s",
                  e.msg);
    /* a cache row the folder lacks */
    t.count = N - 1;
    ds->count = N - 2;
    ck_assert_int_eq(cache_match_dataset(ds, &t, "c.h5", map, &e), KDC_EMISMATCH);
    ck_assert_msg(strstr(e.msg, ds->items[N - 2].path) && strstr(e.msg, "not in the dataset"), "%s",
                  e.msg);
    ds->count = N;
    cache_image_table_free(&t);
    img_dataset_free(ds);
}
END_TEST

int main(void)
{
    char tmpl[1024];
    const char *tmpdir = getenv("TMPDIR");
    snprintf(tmpl, sizeof tmpl, "%s/kdc-match-XXXXXX", tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        return 1;
    }
    g_tmp = tmpl;
    Suite *s = suite_create("cache_match");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, verify_refuses_what_kd_train_refuses);
    tcase_add_test(tc, match_dataset_names_what_differs);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (getenv("KDC_KEEP_TMP"))
        fprintf(stderr, "kept %s\n", g_tmp);
    else
        kdc_test_system("rm -rf %s", g_tmp);
    return failed ? 1 : 0;
}
