/* fuzz_main.c - kd-fuzz: a seeded mutation fuzzer for the parsers that read
 * untrusted files: the cache reader (the paths of `kd-cache info` and `verify`
 * and of kd-train's cache open and epoch), the safetensors parser and the
 * list-file parser.
 *
 *   kd-fuzz --make-seeds DIR          writes real seed files: v2 caches in the
 *                                     six storage modes, a safetensors file,
 *                                     a list file (with its images)
 *   kd-fuzz --target cache|safetensors|list [--mutants N] [--seed S] [--jobs J]
 *           [--timeout SEC] [--crash-dir DIR] [--root DIR] [--replay] FILE...
 *
 * Each mutant is a seed file with 1-4 mutations (bit flips, interesting
 * bytes and words, truncation, block copies and zeroed blocks, half of them
 * near HDF5 structure signatures), decided only by (seed, file, index). Each
 * runs in a forked child under alarm(timeout): the child's result is
 * "accepted" (exit 0), "refused" (exit 1: an error of one line), a signal or a
 * sanitizer report (exit 86/87), a hang (SIGALRM), or "printed" (anything on
 * stderr: libraries must not print). With --replay the files are run as they
 * are (a corpus of earlier findings). Crashing and hanging inputs are copied
 * to --crash-dir. The last line sums up; the exit status is 1 when any mutant
 * crashed, hung or printed. Built under SANITIZE=1 it runs under ASan+UBSan. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/base/half.h"
#include "common/image/dataset.h"
#include "formats/cache_reader.h"
#include "formats/cache_stream.h"
#include "formats/cache_verify.h"
#include "formats/cache_writer.h"
#include "formats/safetensors.h"

/* Sanitizer reports get their own exit codes, and leaks of a refused file
 * are not crashes (the child exits right after). An impossible allocation
 * (libhdf5 sizing a buffer from a damaged length: 7e18 bytes) returns NULL, as
 * glibc's malloc does outside ASan, and libhdf5 then fails in one line; ASan
 * would otherwise abort there, on a file the normal build refuses cleanly. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "exitcode=86:detect_leaks=0:abort_on_error=0:allocator_may_return_null=1";
}
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
    return "exitcode=87:print_stacktrace=1";
}

enum { EXIT_ACCEPTED = 0, EXIT_REFUSED = 1, EXIT_BADMSG = 3, EXIT_ASAN = 86, EXIT_UBSAN = 87 };

typedef enum { T_CACHE, T_SAFETENSORS, T_LIST } target;

/* ---- targets (run in the child) ---- */

static int refused(const kdc_error *e)
{
    /* One line, saying something. */
    if (!e->msg[0] || strchr(e->msg, '\n'))
        return EXIT_BADMSG;
    return EXIT_REFUSED;
}

static int run_cache(const char *path)
{
    kdc_error e;
    kdc_error_clear(&e);
    int rc = EXIT_ACCEPTED;
    /* kd-cache info: open (partial files and shards too) and the summary. */
    cache_reader *r;
    if (cache_reader_open(path, CACHE_OPEN_ALLOW_INCOMPLETE, &r, &e) != KDC_OK)
        return refused(&e);
    uint64_t stored, raw;
    cache_reader_storage(r, &stored, &raw);
    /* One view of each written chunk (kd-train at ImageNet scale). */
    const cache_header *h = cache_reader_header(r);
    cache_chunk c;
    if (cache_chunk_alloc(&c, h, &e) == KDC_OK) {
        for (int64_t k = 0; k < cache_reader_num_chunks(r); k++) {
            if (!cache_reader_chunk_done(r, k))
                continue;
            if (cache_reader_read_view(r, k, k % h->views_per_image, &c, &e) != KDC_OK) {
                rc = refused(&e);
                break;
            }
        }
        cache_chunk_free(&c);
    }
    cache_reader_close(r);
    /* kd-cache verify: every chunk. */
    cache_verify_report rep;
    if (cache_verify(path, NULL, &rep, &e) != KDC_OK)
        return rc == EXIT_BADMSG ? rc : refused(&e);
    /* kd-train --cache: the streaming open and one epoch of every view. */
    cache_stream_options o = {.batch_size = 7, .buffer_chunks = 2, .shuffle = 1,
                              .all_views = 1, .seed = 1};
    cache_stream *s;
    if (cache_stream_open(path, &o, &s, &e) != KDC_OK)
        return refused(&e);
    cache_batch b;
    if (cache_batch_alloc(&b, cache_stream_header(s), 7, &e) == KDC_OK) {
        kdc_status st = cache_stream_start_epoch(s, 0, &e);
        while (st == KDC_OK && (st = cache_stream_next(s, &b, &e)) == KDC_OK && b.count)
            ;
        if (st != KDC_OK)
            rc = refused(&e);
        cache_batch_free(&b);
    }
    cache_stream_close(s);
    return rc;
}

static int run_safetensors(const char *path)
{
    kdc_error e;
    kdc_error_clear(&e);
    st_file *f;
    if (st_open(path, &f, &e) != KDC_OK)
        return refused(&e);
    int rc = EXIT_ACCEPTED;
    st_metadata(f, "arch");
    for (int i = 0; i < st_count(f) && rc == EXIT_ACCEPTED; i++) {
        const st_tensor *t = st_get(f, i);
        size_t n = st_tensor_numel(t);
        kdc_status st;
        if (t->dtype == ST_I64 || t->dtype == ST_I32) {
            int64_t *buf = malloc((n ? n : 1) * sizeof *buf);
            st = buf ? st_read_i64(f, t, buf, n, &e) : KDC_ENOMEM;
            free(buf);
        } else {
            float *buf = malloc((n ? n : 1) * sizeof *buf);
            st = buf ? st_read_f32(f, t, buf, n, &e) : KDC_ENOMEM;
            free(buf);
        }
        if (st != KDC_OK && st != KDC_EUNSUPPORTED)
            rc = refused(&e);
    }
    st_close(f);
    return rc;
}

static int run_list(const char *path, const char *root)
{
    kdc_error e;
    kdc_error_clear(&e);
    img_dataset *ds;
    if (img_dataset_open_list(&ds, root, path, &e) != KDC_OK)
        return refused(&e);
    int rc = img_dataset_checksum(ds, 1, &e) == KDC_OK ? EXIT_ACCEPTED : refused(&e);
    img_dataset_free(ds);
    return rc;
}

/* ---- seeds ---- */

enum { SN = 23, SV = 3, SC = 11, SD = 5, SCH = 4 };

static int make_cache_seed(const char *path, const char *mode, int feats)
{
    cache_header h;
    memset(&h, 0, sizeof h);
    strcpy(h.teacher_arch, "resnet18");
    strcpy(h.teacher_weights_sha256, "ab12");
    h.num_images = SN, h.views_per_image = SV, h.num_classes = SC;
    h.feature_dim = feats ? SD : 0;
    strcpy(h.view_policy, "rrc");
    h.image_size = 32, h.resize_size = 36;
    for (int i = 0; i < 3; i++)
        h.mean[i] = 0.5, h.std[i] = 0.25;
    h.scale_range[0] = 0.08, h.scale_range[1] = 1;
    h.ratio_range[0] = 0.75, h.ratio_range[1] = 4.0 / 3;
    h.seed = 99;
    kdc_error e;
    int64_t k;
    if (cache_parse_logit_storage(mode, &h.logit_storage, &k, &e) != KDC_OK)
        return 1;
    h.topk = k;
    strcpy(h.created_by, "kd-fuzz seed");
    h.chunk_images = SCH;
    cache_image_table t;
    if (cache_image_table_alloc(&t, SN, &e) != KDC_OK)
        return 1;
    static int32_t hh[SN], ww[SN], box[SN * SV * 4];
    static uint8_t skip[SN], flip[SN * SV];
    static float lg[SN * SV * SC], ft[SN * SV * SD];
    for (int i = 0; i < SN; i++) {
        char p[64];
        snprintf(p, sizeof p, "c%d/img_%02d.jpg", i % 4, i);
        t.path[i] = strdup(p);
        t.label[i] = i % 4 == 3 ? -1 : i % SC;
        t.size[i] = 1000 + (uint64_t)i;
        t.crc32[i] = 0xdead0000u + (uint32_t)i;
        hh[i] = 100 + i, ww[i] = 200 + i, skip[i] = i == 6;
        for (int v = 0; v < SV; v++) {
            int32_t *b = box + (i * SV + v) * 4;
            b[0] = v - 2, b[1] = i, b[2] = 10 + v, b[3] = 20 + i % 5;
            flip[i * SV + v] = (uint8_t)((i + v) % 2);
            for (int c = 0; c < SC; c++)
                lg[(i * SV + v) * SC + c] = (float)((i * 7 + v * 3 + c * 5) % 17) - 8.f;
            for (int d = 0; d < SD; d++)
                ft[(i * SV + v) * SD + d] = (float)((i + v + d) % 5) * 0.25f;
        }
    }
    cache_writer *w;
    kdc_status st = cache_writer_create(path, &h, &t, NULL, &w, &e);
    for (int64_t c = 0; st == KDC_OK && c < cache_writer_num_chunks(w); c++) {
        int64_t f, n;
        cache_writer_chunk_images(w, c, &f, &n);
        cache_chunk_input in = {f,        n,           hh + f, ww + f, skip + f, box + f * SV * 4,
                                flip + f * SV, lg + f * SV * SC, feats ? ft + f * SV * SD : NULL,
                                NULL,     NULL};
        st = cache_writer_write_chunk(w, c, &in, &e);
    }
    if (st == KDC_OK)
        st = cache_writer_finish(w, &e);
    cache_image_table_free(&t);
    if (st != KDC_OK)
        fprintf(stderr, "kd-fuzz: %s\n", e.msg);
    return st != KDC_OK;
}

static int make_seeds(const char *dir)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "kd-fuzz: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    const char *modes[] = {"float16", "float32", "topk:4"};
    const char *names[] = {"float16", "float32", "topk"};
    char p[4096];
    for (int m = 0; m < 3; m++)
        for (int f = 0; f < 2; f++) {
            snprintf(p, sizeof p, "%s/v2_%s%s.h5", dir, names[m], f ? "_feat" : "");
            remove(p);
            if (make_cache_seed(p, modes[m], f))
                return 1;
        }
    /* safetensors: an F32 weight, an F16 one, an I64 counter and metadata. */
    float w[12];
    int64_t cnt[1] = {42}, s2[2] = {3, 4}, s1[1] = {1};
    for (int i = 0; i < 12; i++)
        w[i] = (float)i * 0.5f - 2.f;
    st_item items[] = {{"fc.weight", KDC_F32, 2, s2, w}, {"bn.num_batches_tracked", KDC_I64, 1, s1, cnt}};
    const char *const meta[][2] = {{"arch", "resnet18"}, {"num_classes", "10"}};
    kdc_error e;
    snprintf(p, sizeof p, "%s/weights.safetensors", dir);
    if (st_write(p, items, 2, meta, 2, NULL, NULL, &e) != KDC_OK) {
        fprintf(stderr, "kd-fuzz: %s\n", e.msg);
        return 1;
    }
    /* list file and its images (any bytes: the list parser only reads them) */
    snprintf(p, sizeof p, "%s/list_root", dir);
    mkdir(p, 0777);
    snprintf(p, sizeof p, "%s/list_root/a", dir);
    mkdir(p, 0777);
    FILE *lf;
    snprintf(p, sizeof p, "%s/images.txt", dir);
    if (!(lf = fopen(p, "w")))
        return 1;
    for (int i = 0; i < 6; i++) {
        char ip[4096];
        snprintf(ip, sizeof ip, "%s/list_root/a/img%d.jpg", dir, i);
        FILE *im = fopen(ip, "w");
        if (!im)
            return 1;
        fprintf(im, "image %d\n", i);
        fclose(im);
        fprintf(lf, "a/img%d.jpg\t%d\n", i, i % 3 - (i == 5));
    }
    fclose(lf);
    printf("kd-fuzz: seeds in %s\n", dir);
    return 0;
}

/* ---- mutation ---- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t *s, uint64_t n)
{
    return n ? splitmix(s) % n : 0;
}

/* Offsets just after HDF5 structure signatures: v1 B-tree nodes, local and
 * global heaps, symbol-table nodes, v2 headers; and the superblock. */
static size_t find_marks(const unsigned char *b, size_t n, size_t *marks, size_t max)
{
    static const char *sig[] = {"TREE", "HEAP", "GCOL", "SNOD", "OHDR", "OCHK", "BTHD",
                                "BTIN", "BTLF", "FRHP", "\x89HDF"};
    size_t k = 0;
    for (size_t i = 0; i + 4 <= n && k < max; i++)
        for (size_t j = 0; j < sizeof sig / sizeof *sig; j++)
            if (!memcmp(b + i, sig[j], 4)) {
                marks[k++] = i;
                break;
            }
    return k;
}

static size_t mutate(unsigned char *b, size_t n, size_t cap, const size_t *marks, size_t nmarks,
                     uint64_t *rs)
{
    int count = 1 + (int)below(rs, 4);
    for (int m = 0; m < count && n > 0; m++) {
        size_t off;
        if (nmarks && below(rs, 2)) /* near a structure: its fields */
            off = marks[below(rs, nmarks)] + below(rs, 96);
        else
            off = below(rs, n);
        if (off >= n)
            off = n - 1;
        static const uint64_t interesting[] = {0,          1,          0x7f,       0x80,
                                               0xff,       0x7fff,     0xffff,     0x7fffffff,
                                               0xffffffff, 0x100000000ull, ~0ull,  0x8000000000000000ull};
        switch (below(rs, 7)) {
        case 0: /* bit flips */
            for (int k = 1 + (int)below(rs, 8); k > 0; k--)
                b[(off + below(rs, 4)) % n] ^= (unsigned char)(1u << below(rs, 8));
            break;
        case 1: /* interesting bytes */
            for (int k = 1 + (int)below(rs, 4); k > 0; k--)
                b[(off + (size_t)k) % n] = (unsigned char)interesting[below(rs, 5)];
            break;
        case 2: { /* an interesting little-endian word of 2, 4 or 8 bytes */
            size_t w = (size_t)1 << (1 + below(rs, 3));
            uint64_t v = interesting[below(rs, sizeof interesting / sizeof *interesting)];
            if (below(rs, 3) == 0)
                v = splitmix(rs);
            for (size_t k = 0; k < w && off + k < n; k++)
                b[off + k] = (unsigned char)(v >> (8 * k));
            break;
        }
        case 3: /* truncation */
            n = off + 1 > n / 4 ? off + 1 : n / 4;
            break;
        case 4: { /* copy a block from elsewhere */
            size_t len = 1 + below(rs, 64), src = below(rs, n);
            for (size_t k = 0; k < len && off + k < n && src + k < n; k++)
                b[off + k] = b[src + k];
            break;
        }
        case 5: /* zero a block */
            for (size_t k = 0, len = 1 + below(rs, 32); k < len && off + k < n; k++)
                b[off + k] = 0;
            break;
        default: /* a random byte */
            b[off] = (unsigned char)splitmix(rs);
            break;
        }
    }
    (void)cap;
    return n;
}

/* ---- the driver ---- */

typedef struct tally {
    long accepted, refused, badmsg, signals, hangs, printed;
} tally;

typedef struct job {
    pid_t pid;
    char path[4200], errpath[4200];
    long index;
    const char *seed;
} job;

static int write_file(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(b, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)(sz > 0 ? sz : 1));
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static void copy_out(const char *crash_dir, const job *j, const char *what)
{
    if (!crash_dir)
        return;
    mkdir(crash_dir, 0777);
    const char *base = strrchr(j->seed, '/');
    base = base ? base + 1 : j->seed;
    char dst[4096];
    snprintf(dst, sizeof dst, "%s/%s-%s-%ld", crash_dir, what, base, j->index);
    size_t n;
    unsigned char *b = read_all(j->path, &n);
    if (b)
        write_file(dst, b, n);
    free(b);
}

/* Empty but for ASan's own note that it refused an impossible allocation
 * (allocator_may_return_null above): the sanitizer's line, not the library's. */
static int stderr_empty(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    char line[512];
    int empty = 1;
    while (empty && fgets(line, sizeof line, f))
        if (!strstr(line, "WARNING: AddressSanitizer failed to allocate"))
            empty = 0;
    fclose(f);
    return empty;
}

static void reap(job *j, int status, tally *t, const char *crash_dir, int verbose)
{
    const char *what = NULL;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
        t->hangs++;
        what = "hang";
    } else if (WIFSIGNALED(status)) {
        t->signals++;
        what = "signal";
    } else if (WIFEXITED(status) && (WEXITSTATUS(status) == EXIT_ASAN ||
                                     WEXITSTATUS(status) == EXIT_UBSAN)) {
        t->signals++;
        what = WEXITSTATUS(status) == EXIT_ASAN ? "asan" : "ubsan";
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_ACCEPTED) {
        t->accepted++;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_REFUSED) {
        t->refused++;
    } else {
        t->badmsg++;
        what = "badmsg";
    }
    if (!what && !stderr_empty(j->errpath)) { /* counted as accepted/refused too */
        t->printed++;
        what = "printed";
    }
    if (what) {
        if (verbose)
            fprintf(stderr, "kd-fuzz: %s: %s mutant %ld (status %d)\n", what, j->seed, j->index,
                    status);
        copy_out(crash_dir, j, what);
    }
    unlink(j->path);
    unlink(j->errpath);
    j->pid = 0;
}

static int child_run(target tg, const char *path, const char *root, const char *errpath,
                     int timeout)
{
    int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        dup2(fd, 2);
        close(fd);
    }
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
        dup2(devnull, 1);
        close(devnull);
    }
    alarm((unsigned)timeout);
    switch (tg) {
    case T_CACHE: return run_cache(path);
    case T_SAFETENSORS: return run_safetensors(path);
    case T_LIST: return run_list(path, root);
    }
    return 2;
}

static int usage(void)
{
    fputs("usage: kd-fuzz --make-seeds DIR\n"
          "       kd-fuzz --target cache|safetensors|list [--mutants N] [--seed S] [--jobs J]\n"
          "               [--timeout SEC] [--crash-dir DIR] [--root DIR] [--replay] FILE...\n",
          stderr);
    return 2;
}

int main(int argc, char **argv)
{
    target tg = T_CACHE;
    long mutants = 100;
    uint64_t seed = 1;
    int jobs = 1, timeout = 10, replay = 0, verbose = 1;
    const char *crash_dir = NULL, *root = ".", *tmpdir = getenv("TMPDIR");
    int first_file = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--make-seeds") && i + 1 < argc)
            return make_seeds(argv[i + 1]);
        if (!strcmp(a, "--target") && i + 1 < argc) {
            a = argv[++i];
            if (!strcmp(a, "cache"))
                tg = T_CACHE;
            else if (!strcmp(a, "safetensors"))
                tg = T_SAFETENSORS;
            else if (!strcmp(a, "list"))
                tg = T_LIST;
            else
                return usage();
        } else if (!strcmp(a, "--mutants") && i + 1 < argc) {
            mutants = atol(argv[++i]);
        } else if (!strcmp(a, "--seed") && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--jobs") && i + 1 < argc) {
            jobs = atoi(argv[++i]);
        } else if (!strcmp(a, "--timeout") && i + 1 < argc) {
            timeout = atoi(argv[++i]);
        } else if (!strcmp(a, "--crash-dir") && i + 1 < argc) {
            crash_dir = argv[++i];
        } else if (!strcmp(a, "--root") && i + 1 < argc) {
            root = argv[++i];
        } else if (!strcmp(a, "--replay")) {
            replay = 1;
        } else if (!strcmp(a, "--quiet")) {
            verbose = 0;
        } else if (a[0] == '-') {
            return usage();
        } else {
            first_file = i;
            break;
        }
    }
    if (first_file >= argc || jobs < 1 || jobs > 64 || timeout < 1 || mutants < 0)
        return usage();
    job *js = calloc((size_t)jobs, sizeof *js);
    tally total = {0};
    char work[2048];
    snprintf(work, sizeof work, "%s/kd-fuzz-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!js || !mkdtemp(work)) {
        fprintf(stderr, "kd-fuzz: cannot create a work folder\n");
        return 1;
    }
    for (int fi = first_file; fi < argc; fi++) {
        const char *seed_path = argv[fi];
        size_t n0;
        unsigned char *orig = read_all(seed_path, &n0);
        if (!orig) {
            fprintf(stderr, "kd-fuzz: cannot read %s\n", seed_path);
            return 1;
        }
        size_t cap = n0 + 1;
        unsigned char *buf = malloc(cap);
        size_t *marks = malloc(4096 * sizeof *marks);
        size_t nmarks = marks ? find_marks(orig, n0, marks, 4096) : 0;
        tally t = {0};
        long count = replay ? 1 : mutants;
        /* The file's name (not its folder) keys the mutants: same seed, same file name,
         * same mutants wherever the file lies. */
        const char *base = strrchr(seed_path, '/');
        base = base ? base + 1 : seed_path;
        uint64_t fkey = seed;
        for (const char *c = base; *c; c++)
            fkey = fkey * 1000003u ^ (unsigned char)*c;
        long launched = 0, running = 0;
        while (launched < count || running > 0) {
            int slot = -1;
            for (int j = 0; j < jobs && launched < count; j++)
                if (!js[j].pid) {
                    slot = j;
                    break;
                }
            if (slot < 0) { /* all busy, or all launched: wait for one */
                int status;
                pid_t p = wait(&status);
                if (p < 0)
                    break;
                for (int j = 0; j < jobs; j++)
                    if (js[j].pid == p) {
                        reap(&js[j], status, &t, crash_dir, verbose);
                        running--;
                    }
                continue;
            }
            long m = launched++;
            job *j = &js[slot];
            memcpy(buf, orig, n0);
            size_t n = n0;
            if (!replay) {
                uint64_t rs = fkey ^ (0x5851f42d4c957f2dull * (uint64_t)(m + 1));
                n = mutate(buf, n0, cap, marks, nmarks, &rs);
            }
            snprintf(j->path, sizeof j->path, "%s/m%d%s", work, slot,
                     tg == T_CACHE ? ".h5" : tg == T_SAFETENSORS ? ".safetensors" : ".txt");
            snprintf(j->errpath, sizeof j->errpath, "%s/e%d", work, slot);
            if (write_file(j->path, buf, n) != 0) {
                fprintf(stderr, "kd-fuzz: cannot write %s\n", j->path);
                return 1;
            }
            j->index = m;
            j->seed = seed_path;
            fflush(NULL);
            pid_t pid = fork();
            if (pid < 0) {
                fprintf(stderr, "kd-fuzz: fork: %s\n", strerror(errno));
                return 1;
            }
            if (pid == 0)
                _exit(child_run(tg, j->path, root, j->errpath, timeout));
            j->pid = pid;
            running++;
        }
        printf("%s: %ld %s: accepted %ld, refused %ld, signals %ld, hangs %ld, printed %ld, "
               "bad messages %ld\n",
               seed_path, count, replay ? "file" : "mutants", t.accepted, t.refused, t.signals,
               t.hangs, t.printed, t.badmsg);
        fflush(stdout);
        total.accepted += t.accepted, total.refused += t.refused, total.signals += t.signals;
        total.hangs += t.hangs, total.printed += t.printed, total.badmsg += t.badmsg;
        free(orig);
        free(buf);
        free(marks);
    }
    rmdir(work);
    long runs = total.accepted + total.refused + total.signals + total.hangs + total.badmsg;
    printf("total: %ld runs: accepted %ld, refused %ld, signals %ld, hangs %ld, printed %ld, "
           "bad messages %ld\n",
           runs, total.accepted, total.refused, total.signals, total.hangs, total.printed,
           total.badmsg);
    free(js);
    return total.signals || total.hangs || total.printed || total.badmsg ? 1 : 0;
}
