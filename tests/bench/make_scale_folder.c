/* make_scale_folder.c - ImageNet-shaped ImageFolders for the scale simulation
 * (scripts/scale_sim.sh, docs/SCALE.md).
 *
 * usage: make_scale_folder tiny   ROOT N CLASSES
 *        make_scale_folder photos ROOT N CLASSES [--quality Q] [--width A,B] SRC.jpg...
 *
 * tiny:   N 8x8 JPEGs (~330 bytes) in CLASSES folders named like ImageNet's
 *         (n%08d/n%08d_%d.JPEG), class sizes as even as N allows. Each file
 *         carries its index in a JPEG comment, so every file has its own bytes
 *         and CRC-32. This is the full ImageNet count at a few GB of disk: the
 *         costs that grow with the number of files (listing, checksums,
 *         start-up, memory) at their real size.
 * photos: N real-size JPEGs cut from the source photographs: per image a
 *         width uniform in 300..500 (--width), an aspect (h/w) of 3/4, 2/3, 1 or 4/3 (the
 *         common ImageNet shapes; mean about 400 x 350), a random crop of 30-100%
 *         of a source (sources pre-scaled to 1600 px on the long side), resized
 *         with PIL-exact bilinear and written at quality Q (default 95) 4:2:0.
 *
 * Deterministic (fixed seed): the same arguments give the same bytes. Prints
 * the image count, bytes written and seconds. ROOT must not exist. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "common/image/image_resize.h"
#include "common/image/jpeg_decode.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rng_state = 0x5ca1ab1e12345678ull;
static uint64_t rng_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_unit(void)
{
    return (double)(rng_u64() >> 11) * (1.0 / 9007199254740992.0);
}

static int write_file(const char *path, const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return -1;
    int ok = write(fd, a, na) == (ssize_t)na && (nb == 0 || write(fd, b, nb) == (ssize_t)nb);
    return close(fd) == 0 && ok ? 0 : -1;
}

/* Images of class c when N images are spread over C classes. */
static long class_count(long N, long C, long c)
{
    return N / C + (c < N % C ? 1 : 0);
}

static int make_dirs(const char *root, long C)
{
    if (mkdir(root, 0755) != 0) {
        fprintf(stderr, "make_scale_folder: %s: %s\n", root, strerror(errno));
        return -1;
    }
    char p[4096];
    for (long c = 0; c < C; c++) {
        snprintf(p, sizeof p, "%s/n%08ld", root, c);
        if (mkdir(p, 0755) != 0) {
            fprintf(stderr, "make_scale_folder: %s: %s\n", p, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int make_tiny(const char *root, long N, long C)
{
    tjhandle tj = tjInitCompress();
    uint8_t px[8 * 8 * 3];
    for (int i = 0; i < 8 * 8 * 3; i++)
        px[i] = (uint8_t)(i * 37);
    unsigned char *jpg = NULL;
    unsigned long jn = 0;
    if (!tj || tjCompress2(tj, px, 8, 24, 8, TJPF_RGB, &jpg, &jn, TJSAMP_420, 90, 0) != 0) {
        fprintf(stderr, "make_scale_folder: cannot encode: %s\n", tjGetErrorStr2(tj));
        return 1;
    }
    if (make_dirs(root, C))
        return 1;
    /* SOI, then a COM segment with the index, then the rest of the JPEG. */
    uint8_t head[64];
    char p[4096];
    long k = 0;
    uint64_t bytes = 0;
    for (long c = 0; c < C; c++)
        for (long i = 0; i < class_count(N, C, c); i++, k++) {
            int len = snprintf((char *)head + 6, sizeof head - 6, "scale-sim %ld", k);
            head[0] = 0xFF, head[1] = 0xD8, head[2] = 0xFF, head[3] = 0xFE;
            head[4] = (uint8_t)((len + 2) >> 8), head[5] = (uint8_t)(len + 2);
            snprintf(p, sizeof p, "%s/n%08ld/n%08ld_%ld.JPEG", root, c, c, i);
            if (write_file(p, head, (size_t)len + 6, jpg + 2, jn - 2)) {
                fprintf(stderr, "make_scale_folder: %s: %s\n", p, strerror(errno));
                return 1;
            }
            bytes += (uint64_t)len + 6 + jn - 2;
        }
    printf("tiny: %ld images in %ld classes, %llu bytes\n", k, C, (unsigned long long)bytes);
    tjFree(jpg);
    tjDestroy(tj);
    return 0;
}

typedef struct source {
    uint8_t *rgb;
    int w, h;
} source;

/* Loads a source photo, scaled to at most 1600 px on its long side. */
static int load_source(const char *path, source *s, img_resample_scratch *rs)
{
    img_decoder *d;
    kdc_error err = {0};
    const uint8_t *rgb;
    int w, h;
    if (img_decoder_create(&d, &err) || img_decoder_load_file(d, path, &err) ||
        img_decoder_decode(d, 8, &rgb, &w, &h, &err)) {
        fprintf(stderr, "make_scale_folder: %s\n", err.msg);
        return -1;
    }
    double f = (w > h ? w : h) > 1600 ? 1600.0 / (w > h ? w : h) : 1.0;
    s->w = (int)(w * f + 0.5);
    s->h = (int)(h * f + 0.5);
    s->rgb = malloc((size_t)s->w * s->h * 3);
    img_axis ax = img_axis_resize(w, s->w), ay = img_axis_resize(h, s->h);
    int st = !s->rgb ||
             img_resample_rgb8(rgb, (size_t)w * 3, &ax, &ay, s->rgb, (size_t)s->w * 3, rs, &err);
    img_decoder_free(d);
    if (st)
        fprintf(stderr, "make_scale_folder: %s: %s\n", path, err.msg);
    return st ? -1 : 0;
}

static int make_photos(const char *root, long N, long C, int quality, int wmin, int wmax,
                       char **srcs, int nsrc)
{
    img_resample_scratch rs = {0};
    source *src = calloc((size_t)nsrc, sizeof *src);
    for (int i = 0; i < nsrc; i++)
        if (load_source(srcs[i], &src[i], &rs))
            return 1;
    if (make_dirs(root, C))
        return 1;
    static const double aspects[4] = {0.75, 2.0 / 3.0, 1.0, 4.0 / 3.0};
    tjhandle tj = tjInitCompress();
    uint8_t *out = malloc((size_t)wmax * (size_t)(wmax * 4 / 3 + 1) * 3);
    unsigned char *jpg = NULL;
    unsigned long jn = 0;
    char p[4096];
    long k = 0;
    uint64_t bytes = 0, px = 0;
    kdc_error err = {0};
    for (long c = 0; c < C; c++)
        for (long i = 0; i < class_count(N, C, c); i++, k++) {
            const source *s = &src[k % nsrc];
            int w = wmin + (int)(rng_unit() * (wmax - wmin + 1));
            int h = (int)(w * aspects[rng_u64() % 4] + 0.5);
            /* Crop of the source with the output's aspect, 30-100% of the
             * largest such crop's side. */
            double cw = s->w, ch = cw * h / w;
            if (ch > s->h) {
                ch = s->h;
                cw = ch * w / h;
            }
            double f = 0.3 + 0.7 * rng_unit();
            cw *= f;
            ch *= f;
            double x0 = rng_unit() * (s->w - cw), y0 = rng_unit() * (s->h - ch);
            img_axis ax = {.in_size = s->w, .in0 = x0, .scale = cw / w, .out_size = w};
            img_axis ay = {.in_size = s->h, .in0 = y0, .scale = ch / h, .out_size = h};
            if (img_resample_rgb8(s->rgb, (size_t)s->w * 3, &ax, &ay, out, (size_t)w * 3, &rs,
                                  &err) ||
                tjCompress2(tj, out, w, w * 3, h, TJPF_RGB, &jpg, &jn, TJSAMP_420, quality, 0)) {
                fprintf(stderr, "make_scale_folder: image %ld: %s\n", k, err.msg);
                return 1;
            }
            snprintf(p, sizeof p, "%s/n%08ld/n%08ld_%ld.JPEG", root, c, c, i);
            if (write_file(p, jpg, jn, NULL, 0)) {
                fprintf(stderr, "make_scale_folder: %s: %s\n", p, strerror(errno));
                return 1;
            }
            bytes += jn;
            px += (uint64_t)w * h;
        }
    printf("photos: %ld images in %ld classes from %d sources, %llu bytes (mean %.1f KB, "
           "%.0f px), quality %d\n",
           k, C, nsrc, (unsigned long long)bytes, bytes / 1e3 / (k ? k : 1),
           (double)px / (k ? k : 1), quality);
    tjFree(jpg);
    tjDestroy(tj);
    free(out);
    for (int i = 0; i < nsrc; i++)
        free(src[i].rgb);
    free(src);
    img_resample_scratch_free(&rs);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr,
                "usage: make_scale_folder tiny ROOT N CLASSES\n"
                "       make_scale_folder photos ROOT N CLASSES [--quality Q] [--width A,B] "
                "SRC.jpg...\n");
        return 2;
    }
    long N = atol(argv[3]), C = atol(argv[4]);
    if (N < 1 || C < 1 || C > N) {
        fprintf(stderr, "make_scale_folder: need 1 <= CLASSES <= N\n");
        return 2;
    }
    double t0 = now_s();
    int rc;
    if (!strcmp(argv[1], "tiny")) {
        rc = make_tiny(argv[2], N, C);
    } else if (!strcmp(argv[1], "photos")) {
        int first = 5, q = 95, wmin = 300, wmax = 500;
        for (; first + 1 < argc && !strncmp(argv[first], "--", 2); first += 2) {
            if (!strcmp(argv[first], "--quality"))
                q = atoi(argv[first + 1]);
            else if (!strcmp(argv[first], "--width") &&
                     sscanf(argv[first + 1], "%d,%d", &wmin, &wmax) == 2)
                ;
            else
                q = 0; /* refused below */
        }
        if (first >= argc || q < 1 || q > 100 || wmin < 16 || wmax < wmin || wmax > 1600) {
            fprintf(stderr, "make_scale_folder photos: need source JPEGs (--quality 1..100, "
                            "--width A,B within 16..1600)\n");
            return 2;
        }
        rc = make_photos(argv[2], N, C, q, wmin, wmax, argv + first, argc - first);
    } else {
        fprintf(stderr, "make_scale_folder: mode '%s': expected tiny or photos\n", argv[1]);
        return 2;
    }
    printf("seconds %.1f\n", now_s() - t0);
    return rc;
}
