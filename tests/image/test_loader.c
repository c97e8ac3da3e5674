/* test_loader.c - the prefetching loader: the same batches (pixels, views,
 * statuses) with 1 and 4 threads, per-sample errors instead of aborts, replay of
 * the reported views, agreement with the single-image path, and no waiting by a
 * consumer slower than the decoders. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/image/jpeg_decode.h"
#include "common/image/loader.h"
#include "tests/helpers/bad_images.h"
#include "tests/helpers/make_inputs.h"
#include "tests/helpers/testutil.h"

static const char *files[] = {
    "photos/flower_500x375.jpg", "bad/truncated.jpg",   "photos/ladybird_375x500.jpg",
    "photos/storm_500x333_prog.jpg", "bad/empty.jpg",   "photos/wood_400x300_444.jpg",
    "photos/dune_640x480_422.jpg", "bad/huge.jpg",      "photos/meadow_257x181.jpg",
    "photos/flower_gray.jpg",  "bad/notimage.jpg",      "photos/ladybird_cmyk.jpg",
};
enum { NFILES = 12, NVIEWS = 3, NSAMPLES = NFILES * NVIEWS, BATCH = 5, S = 64 };

static img_dataset *open_ds(void)
{
    char *dir = kdc_test_tmpdir("loader");
    char list[4096], root[2048];
    snprintf(list, sizeof list, "%s/list.txt", dir);
    snprintf(root, sizeof root, "%s/images", kdc_test_fixture_root());
    FILE *f = fopen(list, "w");
    for (int i = 0; i < NFILES; i++)
        fprintf(f, "%s\t%d\n", files[i], i % 4);
    fclose(f);
    img_dataset *ds;
    kdc_error err = {0};
    ck_assert_msg(img_dataset_open_list(&ds, root, list, &err) == KDC_OK, "%s", err.msg);
    remove(list);
    remove(dir);
    free(dir);
    return ds;
}

typedef struct run_out {
    float *px;          /* NSAMPLES x 3 x S x S */
    img_sample info[NSAMPLES];
    int nbatches;
} run_out;

static void run(const img_dataset *ds, int threads, const img_request *plan, run_out *o)
{
    img_loader_config cfg;
    img_loader_config_default(&cfg);
    cfg.threads = threads;
    cfg.batch_size = BATCH;
    cfg.prefetch = 3;
    cfg.view.policy = IMG_VIEW_RRC;
    cfg.view.image_size = S;
    cfg.view.seed = 77;
    img_loader *l;
    kdc_error err = {0};
    ck_assert_msg(img_loader_create(&l, ds, &cfg, &err) == KDC_OK, "%s", err.msg);
    ck_assert_int_eq(img_loader_start(l, plan, NSAMPLES, &err), KDC_OK);
    const size_t per = (size_t)3 * S * S;
    o->px = calloc(NSAMPLES * per, sizeof(float));
    o->nbatches = 0;
    int k = 0;
    img_batch *b;
    while (img_loader_next(l, &b, &err) == KDC_OK && b) {
        ck_assert_uint_eq(b->seq, (size_t)o->nbatches);
        int failed = 0;
        for (int i = 0; i < b->count; i++, k++) {
            memcpy(o->px + (size_t)k * per, img_batch_sample_pixels(b, i), per * sizeof(float));
            o->info[k] = b->samples[i];
            failed += b->samples[i].status != KDC_OK;
        }
        ck_assert_int_eq(failed, b->failed);
        o->nbatches++;
        img_loader_release(l, b);
    }
    ck_assert_int_eq(k, NSAMPLES);
    img_loader_destroy(l);
}

static void make_plan(img_request *plan)
{
    for (int k = 0; k < NSAMPLES; k++)
        plan[k] = (img_request){.index = k % NFILES, .view_index = (uint32_t)(k / NFILES), .has_view = 0};
}

START_TEST(same_batches_with_1_and_4_threads)
{
    img_dataset *ds = open_ds();
    img_request plan[NSAMPLES];
    make_plan(plan);
    static run_out a, b;
    run(ds, 1, plan, &a);
    run(ds, 4, plan, &b);
    ck_assert_int_eq(a.nbatches, (NSAMPLES + BATCH - 1) / BATCH);
    ck_assert(memcmp(a.px, b.px, sizeof(float) * NSAMPLES * 3 * S * S) == 0);
    for (int k = 0; k < NSAMPLES; k++) {
        ck_assert_int_eq(a.info[k].status, b.info[k].status);
        ck_assert(memcmp(&a.info[k].view, &b.info[k].view, sizeof(img_view)) == 0);
        ck_assert_str_eq(a.info[k].msg, b.info[k].msg);
        const char *f = files[k % NFILES];
        int bad = strncmp(f, "bad/", 4) == 0;
        ck_assert_msg(bad == (a.info[k].status != KDC_OK), "%s: status %d (%s)", f, a.info[k].status, a.info[k].msg);
        ck_assert_int_eq(a.info[k].label, (k % NFILES) % 4);
        ck_assert_int_eq(a.info[k].index, k % NFILES);
        if (bad)
            ck_assert_msg(strstr(a.info[k].msg, f) != NULL, "message does not name %s: %s", f, a.info[k].msg);
        else
            ck_assert(a.info[k].width > 0 && a.info[k].file_size > 0);
    }
    free(a.px);
    free(b.px);
    img_dataset_free(ds);
}
END_TEST

START_TEST(replay_of_reported_views_and_single_image_path)
{
    img_dataset *ds = open_ds();
    img_request plan[NSAMPLES];
    make_plan(plan);
    static run_out a, r;
    run(ds, 2, plan, &a);
    /* kd-train: the boxes the loader reported, replayed. */
    for (int k = 0; k < NSAMPLES; k++) {
        plan[k].has_view = 1;
        plan[k].view = a.info[k].view;
        plan[k].view_index = 1000; /* ignored when replaying */
    }
    run(ds, 3, plan, &r);
    ck_assert(memcmp(a.px, r.px, sizeof(float) * NSAMPLES * 3 * S * S) == 0);
    /* The loader's sample = the single-image path + normalisation. */
    img_view_params vp;
    img_view_params_default(&vp);
    vp.policy = IMG_VIEW_RRC;
    vp.image_size = S;
    vp.seed = 77;
    img_norm n;
    img_norm_default(&n);
    img_decoder *d;
    ck_assert_int_eq(img_decoder_create(&d, NULL), KDC_OK);
    img_view_scratch sc = {0};
    uint8_t rgb[S * S * 3];
    float chw[3 * S * S];
    img_request req = {.index = 6, .view_index = 2};
    img_sample info;
    ck_assert_int_eq(img_load_view(ds, &vp, &req, d, &sc, rgb, &info), KDC_OK);
    img_normalize_chw(rgb, S, &n, chw);
    ck_assert(memcmp(chw, a.px + (size_t)(2 * NFILES + 6) * 3 * S * S, sizeof chw) == 0);
    img_view_scratch_free(&sc);
    img_decoder_free(d);
    free(a.px);
    free(r.px);
    img_dataset_free(ds);
}
END_TEST

START_TEST(consumer_does_not_wait_when_decoding_keeps_up)
{
    img_dataset *ds = open_ds();
    img_request plan[NSAMPLES];
    make_plan(plan);
    img_loader_config cfg;
    img_loader_config_default(&cfg);
    cfg.threads = 2;
    cfg.batch_size = BATCH;
    cfg.prefetch = 4;
    cfg.view.image_size = S;
    img_loader *l;
    kdc_error err = {0};
    ck_assert_int_eq(img_loader_create(&l, ds, &cfg, &err), KDC_OK);
    ck_assert_int_eq(img_loader_start(l, plan, NSAMPLES, &err), KDC_OK);
    /* A consumer slower than decoding: after each batch it "trains" for 0.3 s. */
    img_batch *b;
    int n = 0;
    struct timespec nap = {0, 300000000};
    nanosleep(&nap, NULL);
    while (img_loader_next(l, &b, &err) == KDC_OK && b) {
        img_loader_release(l, b);
        if (++n < 4)
            nanosleep(&nap, NULL);
        else
            break;
    }
    double waited = img_loader_wait_seconds(l);
    printf("consumer waited %.4f s over %d batches\n", waited, n);
    ck_assert_msg(waited < 0.05, "consumer waited %.3f s", waited);
    /* Abandoning a plan midway and starting again works. */
    ck_assert_int_eq(img_loader_start(l, plan, NSAMPLES, &err), KDC_OK);
    n = 0;
    while (img_loader_next(l, &b, &err) == KDC_OK && b) {
        ck_assert_uint_eq(b->seq, (size_t)n++);
        img_loader_release(l, b);
    }
    ck_assert_int_eq(n, (NSAMPLES + BATCH - 1) / BATCH);
    img_loader_destroy(l);
    img_dataset_free(ds);
}
END_TEST

/* One bad file costs one image at any thread count: a folder whose bad files
 * (each kind of bad_images.h) sit between good ones, decoded with 1, 2 and 4
 * threads; exactly the bad files' samples fail, and the good ones (a CMYK
 * JPEG among them) have the same pixels whatever the thread count. */
START_TEST(one_bad_file_costs_one_image_at_any_thread_count)
{
    char *dir = kdc_test_tmpdir("loader-bad"), cls[1100], p[1200];
    snprintf(cls, sizeof cls, "%s/c", dir);
    ck_assert_int_eq(kdc_test_system("mkdir -p %s", cls), 0);
    for (int i = 0; i < 6; i++) {
        /* a*.jpg sort before the bad files, z*.jpg after them */
        snprintf(p, sizeof p, "%s/%c%02d.jpg", cls, i < 2 ? 'a' : 'z', i);
        kdc_test_write_jpeg(p, 48, 40, i, 500 + (uint64_t)i, i % 2);
    }
    snprintf(p, sizeof p, "%s/a00.jpg", cls);
    int nbad = kdc_test_add_bad_images(cls, p, 1);
    img_dataset *ds;
    kdc_error err = {0};
    ck_assert_msg(img_dataset_open_folder(&ds, dir, &err) == KDC_OK, "%s", err.msg);
    const int n = (int)ds->count, V = 2, B = 3;
    ck_assert_int_eq(n, 6 + nbad + 1);
    img_request *plan = calloc((size_t)n * V, sizeof *plan);
    for (int k = 0; k < n * V; k++)
        plan[k] = (img_request){.index = k / V, .view_index = (uint32_t)(k % V)};
    const size_t per = (size_t)3 * 32 * 32;
    float *ref = calloc((size_t)n * V * per, sizeof(float));
    const int threads[] = {1, 2, 4};
    for (int t = 0; t < 3; t++) {
        img_loader_config cfg;
        img_loader_config_default(&cfg);
        cfg.threads = threads[t];
        cfg.batch_size = B;
        cfg.view.policy = IMG_VIEW_RRC;
        cfg.view.image_size = 32;
        img_loader *l;
        ck_assert_msg(img_loader_create(&l, ds, &cfg, &err) == KDC_OK, "%s", err.msg);
        ck_assert_int_eq(img_loader_start(l, plan, (size_t)n * V, &err), KDC_OK);
        img_batch *b;
        int k = 0, failed = 0;
        while (img_loader_next(l, &b, &err) == KDC_OK && b) {
            for (int i = 0; i < b->count; i++, k++) {
                const img_sample *sm = &b->samples[i];
                const char *path = ds->items[sm->index].path;
                int bad = strstr(path, "/bad_") != NULL;
                failed += sm->status != KDC_OK;
                ck_assert_msg(bad == (sm->status != KDC_OK), "%d threads: %s: %s", threads[t],
                              path, sm->status ? sm->msg : "decoded");
                float *px = img_batch_sample_pixels(b, i);
                if (t == 0)
                    memcpy(ref + (size_t)k * per, px, per * sizeof(float));
                else
                    ck_assert_msg(!memcmp(ref + (size_t)k * per, px, per * sizeof(float)),
                                  "%d threads: %s differs", threads[t], path);
            }
            img_loader_release(l, b);
        }
        printf("%d decode threads: %d of %d samples failed (%d bad files x %d views)\n",
               threads[t], failed, k, nbad, V);
        ck_assert_int_eq(k, n * V);
        ck_assert_int_eq(failed, nbad * V);
        img_loader_destroy(l);
    }
    free(ref);
    free(plan);
    img_dataset_free(ds);
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}
END_TEST

/* Today's per-view path, spelled out (one read and one full-size decode per
 * view): the reference that cutting all views from one decode must equal. */
static kdc_status per_view_reference(const img_dataset *ds, const img_view_params *vp,
                                     const img_request *q, img_decoder *d, img_view_scratch *sc,
                                     uint8_t *out, img_view *view)
{
    char path[4096];
    kdc_error e = {0};
    kdc_status st = img_dataset_full_path(ds, (size_t)q->index, path, sizeof path, &e);
    if (!st)
        st = img_decoder_load_file(d, path, &e);
    int W = img_decoder_width(d), H = img_decoder_height(d);
    if (!st && !q->has_view)
        st = img_view_draw(vp, W, H, (uint64_t)q->index, q->view_index, view, &e);
    if (!st && q->has_view)
        *view = q->view;
    const uint8_t *rgb;
    int w, h;
    if (!st)
        st = img_decoder_decode(d, 8, &rgb, &w, &h, &e);
    if (!st)
        st = img_view_render(vp, rgb, w, h, (size_t)w * 3, view, out, sc, &e);
    return st;
}

/* kd-precompute's plan: the V views of an image one after another, so one
 * thread takes them together (runs cross batch boundaries: V = 4, B = 5). */
START_TEST(views_cut_from_one_decode_equal_the_per_view_path)
{
    img_dataset *ds = open_ds();
    enum { V = 4, N = NFILES * V };
    img_request plan[N];
    for (int k = 0; k < N; k++)
        plan[k] = (img_request){.index = k / V, .view_index = (uint32_t)(k % V)};
    img_view_params vp;
    img_view_params_default(&vp);
    vp.policy = IMG_VIEW_RRC;
    vp.image_size = S;
    vp.seed = 77;
    img_norm nm;
    img_norm_default(&nm);
    img_decoder *d;
    ck_assert_int_eq(img_decoder_create(&d, NULL), KDC_OK);
    img_view_scratch sc = {0};
    static uint8_t rgb[S * S * 3];
    static float ref[N][3 * S * S];
    img_view rv[N];
    kdc_status rst[N];
    for (int k = 0; k < N; k++) {
        rst[k] = per_view_reference(ds, &vp, &plan[k], d, &sc, rgb, &rv[k]);
        if (!rst[k])
            img_normalize_chw(rgb, S, &nm, ref[k]);
    }
    const int threads[] = {1, 3};
    for (int t = 0; t < 2; t++) {
        img_loader_config cfg;
        img_loader_config_default(&cfg);
        cfg.threads = threads[t];
        cfg.batch_size = BATCH;
        cfg.prefetch = 2;
        cfg.view = vp;
        img_loader *l;
        kdc_error err = {0};
        ck_assert_msg(img_loader_create(&l, ds, &cfg, &err) == KDC_OK, "%s", err.msg);
        ck_assert_int_eq(img_loader_start(l, plan, N, &err), KDC_OK);
        img_batch *b;
        int k = 0, good = 0;
        while (img_loader_next(l, &b, &err) == KDC_OK && b) {
            for (int i = 0; i < b->count; i++, k++) {
                const img_sample *sm = &b->samples[i];
                ck_assert_int_eq(sm->index, k / V);
                ck_assert_int_eq(sm->view_index, k % V);
                ck_assert_msg((sm->status == KDC_OK) == (rst[k] == KDC_OK), "%s view %d: %s",
                              files[k / V], k % V, sm->msg);
                if (sm->status)
                    continue;
                good++;
                ck_assert(memcmp(&sm->view, &rv[k], sizeof rv[k]) == 0);
                ck_assert_msg(!memcmp(img_batch_sample_pixels(b, i), ref[k], sizeof ref[k]),
                              "%d threads: %s view %d differs from the per-view path",
                              threads[t], files[k / V], k % V);
            }
            img_loader_release(l, b);
        }
        ck_assert_int_eq(k, N);
        ck_assert_int_eq(good, 8 * V); /* 8 of the 12 files decode */
        img_loader_destroy(l);
    }
    img_view_scratch_free(&sc);
    img_decoder_free(d);
    img_dataset_free(ds);
}
END_TEST

/* --decode-scale auto: a crop at least twice the output decodes smaller, the
 * pixels stay close to the full decode (a blur-level difference, not another
 * image), smaller crops are untouched, and off never scales. */
START_TEST(decode_scale_auto_only_for_large_crops)
{
    img_dataset *ds = open_ds();
    img_view_params vp;
    img_view_params_default(&vp);
    vp.policy = IMG_VIEW_RRC;
    vp.image_size = S;
    img_view big = {.y0 = 10, .x0 = 20, .h = 300, .w = 400, .flip = 1};
    img_view small = {.y0 = 10, .x0 = 20, .h = 2 * S - 1, .w = 400};
    ck_assert_int_eq(img_view_decode_eighths(&vp, 500, 375, &big), 8);
    vp.decode_scale = IMG_DECODE_SCALE_AUTO;
    ck_assert_int_eq(img_view_decode_eighths(&vp, 500, 375, &big), 2); /* 300/4 >= 64 > 300/8 */
    ck_assert_int_eq(img_view_decode_eighths(&vp, 500, 375, &small), 8);
    vp.policy = IMG_VIEW_PAD_CROP;
    ck_assert_int_eq(img_view_decode_eighths(&vp, 500, 375, &big), 8);
    vp.policy = IMG_VIEW_CENTER;
    vp.resize_size = 80; /* shorter side 375 >= 4 * 80 */
    ck_assert_int_eq(img_view_decode_eighths(&vp, 500, 375, &big), 2);
    vp.policy = IMG_VIEW_RRC;

    img_decoder *d;
    ck_assert_int_eq(img_decoder_create(&d, NULL), KDC_OK);
    img_view_scratch sc = {0};
    static uint8_t full[S * S * 3], scaled[S * S * 3];
    img_request q = {.index = 0, .has_view = 1, .view = big}; /* flower_500x375 */
    img_sample info, *ip = &info;
    uint8_t *op = scaled;
    ck_assert_int_eq(img_load_views(ds, &vp, &q, 1, d, &sc, &op, &ip), KDC_OK);
    vp.decode_scale = IMG_DECODE_SCALE_OFF;
    op = full;
    ck_assert_int_eq(img_load_views(ds, &vp, &q, 1, d, &sc, &op, &ip), KDC_OK);
    double mad = 0;
    int maxd = 0;
    for (int i = 0; i < S * S * 3; i++) {
        int dlt = abs((int)full[i] - (int)scaled[i]);
        mad += dlt;
        maxd = dlt > maxd ? dlt : maxd;
    }
    mad /= S * S * 3;
    printf("decode-scale auto vs off, 400x300 crop -> %d px: mean |diff| %.2f, max %d\n", S, mad,
           maxd);
    ck_assert_msg(mad > 0 && mad < 4, "mean |diff| %.2f", mad);
    img_view_scratch_free(&sc);
    img_decoder_free(d);
    img_dataset_free(ds);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loader");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, same_batches_with_1_and_4_threads);
    tcase_add_test(tc, replay_of_reported_views_and_single_image_path);
    tcase_add_test(tc, consumer_does_not_wait_when_decoding_keeps_up);
    tcase_add_test(tc, one_bad_file_costs_one_image_at_any_thread_count);
    tcase_add_test(tc, views_cut_from_one_decode_equal_the_per_view_path);
    tcase_add_test(tc, decode_scale_auto_only_for_large_crops);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
