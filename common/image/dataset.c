/* dataset.c - ImageFolder / list-file scanning, checksums and the fingerprint. */
#include "common/image/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "common/image/jpeg_decode.h"

#define PATH_BUF 4096

typedef struct entry_vec {
    img_entry *v;
    size_t n, cap;
} entry_vec;

static int vec_push(entry_vec *e, char *path, int32_t label, uint64_t size)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 256;
        img_entry *q = realloc(e->v, cap * sizeof *q);
        if (!q)
            return 0;
        e->v = q;
        e->cap = cap;
    }
    e->v[e->n++] = (img_entry){path, label, size, 0};
    return 1;
}

void img_dataset_free(img_dataset *ds)
{
    if (!ds)
        return;
    for (size_t i = 0; i < ds->count; i++)
        free(ds->items[i].path);
    free(ds->items);
    if (ds->classes)
        for (int c = 0; c < ds->num_classes; c++)
            free(ds->classes[c]);
    free(ds->classes);
    free(ds->root);
    free(ds);
}


typedef struct name_vec {
    char **v;
    uint64_t *size; /* files: their sizes; NULL for folders */
    size_t n, cap;
} name_vec;

static int names_push(name_vec *nv, const char *name, uint64_t size, int with_size)
{
    if (nv->n == nv->cap) {
        size_t cap = nv->cap ? 2 * nv->cap : 64;
        char **q = realloc(nv->v, cap * sizeof *q);
        if (!q)
            return 0;
        nv->v = q;
        if (with_size) {
            uint64_t *z = realloc(nv->size, cap * sizeof *z);
            if (!z)
                return 0;
            nv->size = z;
        }
        nv->cap = cap;
    }
    if (!(nv->v[nv->n] = strdup(name)))
        return 0;
    if (with_size)
        nv->size[nv->n] = size;
    nv->n++;
    return 1;
}

static void names_free(name_vec *nv)
{
    for (size_t i = 0; i < nv->n; i++)
        free(nv->v[i]);
    free(nv->v);
    free(nv->size);
    memset(nv, 0, sizeof *nv);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct named_size {
    char *name; /* first: cmp_str compares it */
    uint64_t size;
} named_size;

/* Sorts the names byte-wise, sizes along. */
static kdc_status names_sort(name_vec *nv, const char *dir, kdc_error *err)
{
    if (nv->n < 2)
        return KDC_OK;
    if (!nv->size) {
        qsort(nv->v, nv->n, sizeof *nv->v, cmp_str);
        return KDC_OK;
    }
    named_size *ns = malloc(nv->n * sizeof *ns);
    if (!ns)
        return kdc_fail(err, KDC_ENOMEM, "%s: out of memory", dir);
    for (size_t i = 0; i < nv->n; i++)
        ns[i] = (named_size){nv->v[i], nv->size[i]};
    qsort(ns, nv->n, sizeof *ns, cmp_str);
    for (size_t i = 0; i < nv->n; i++) {
        nv->v[i] = ns[i].name;
        nv->size[i] = ns[i].size;
    }
    free(ns);
    return KDC_OK;
}

/* One pass over a folder (without "." and ".."): its sub-folders and, when
 * files is not NULL, its JPEG-named regular files with their sizes, each
 * sorted byte-wise. The entry type comes from readdir (d_type) where the
 * file system gives it; links (followed, as os.walk(followlinks=True)) and
 * unknown types cost one fstatat, as does every image for its size: one
 * system call per image at ImageNet's 1.28M files, not three. */
static kdc_status list_dir(const char *dir, name_vec *dirs, name_vec *files, kdc_error *err)
{
    memset(dirs, 0, sizeof *dirs);
    if (files)
        memset(files, 0, sizeof *files);
    DIR *d = opendir(dir);
    if (!d)
        return kdc_fail(err, KDC_EIO, "%s: cannot open folder: %s", dir, strerror(errno));
    const int fd = dirfd(d);
    struct dirent *de;
    kdc_status st = KDC_OK;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (strlen(dir) + strlen(de->d_name) + 2 > PATH_BUF) {
            st = kdc_fail(err, KDC_EINVAL, "%s/%s: path too long", dir, de->d_name);
            break;
        }
        int is_dir = de->d_type == DT_DIR, is_reg = de->d_type == DT_REG;
        int want_file = files && img_is_jpeg_name(de->d_name);
        if (!is_dir && !is_reg && de->d_type != DT_LNK && de->d_type != DT_UNKNOWN)
            continue; /* sockets, pipes, devices */
        if (is_dir && !want_file) {
            if (!names_push(dirs, de->d_name, 0, 0))
                st = kdc_fail(err, KDC_ENOMEM, "%s: out of memory", dir);
        } else if (is_reg && !want_file) {
            continue;
        } else {
            struct stat sb;
            if (fstatat(fd, de->d_name, &sb, 0) != 0) /* follows links */
                continue; /* a dangling link is no image and no class */
            if (S_ISDIR(sb.st_mode)) {
                if (!names_push(dirs, de->d_name, 0, 0))
                    st = kdc_fail(err, KDC_ENOMEM, "%s: out of memory", dir);
            } else if (S_ISREG(sb.st_mode) && want_file) {
                if (!names_push(files, de->d_name, (uint64_t)sb.st_size, 1))
                    st = kdc_fail(err, KDC_ENOMEM, "%s: out of memory", dir);
            }
        }
        if (st)
            break;
    }
    closedir(d);
    if (!st)
        st = names_sort(dirs, dir, err);
    if (!st && files)
        st = names_sort(files, dir, err);
    if (st) {
        names_free(dirs);
        if (files)
            names_free(files);
    }
    return st;
}

/* Collects the images below one folder of a class (depth first, any order); the
 * caller sorts them (cmp_walk_order). */
static kdc_status walk_class(const char *root, const char *rel, int label, int depth,
                             entry_vec *out, kdc_error *err)
{
    if (depth > IMG_DATASET_MAX_DEPTH)
        return kdc_fail(err, KDC_EINVAL, "%s/%s: folders nested deeper than %d (a link loop?)",
                        root, rel, IMG_DATASET_MAX_DEPTH);
    char dir[PATH_BUF], p[PATH_BUF];
    snprintf(dir, sizeof dir, "%s/%s", root, rel);
    name_vec files, dirs;
    kdc_status st = list_dir(dir, &dirs, &files, err);
    if (st)
        return st;
    for (size_t i = 0; i < files.n && !st; i++) {
        if (snprintf(p, sizeof p, "%s/%s", rel, files.v[i]) >= (int)sizeof p) {
            st = kdc_fail(err, KDC_EINVAL, "%s/%s/%s: path too long", root, rel, files.v[i]);
            break;
        }
        char *s = strdup(p);
        if (!s || !vec_push(out, s, label, files.size[i])) {
            free(s);
            st = kdc_fail(err, KDC_ENOMEM, "%s/%s: out of memory", root, p);
        }
    }
    names_free(&files);
    for (size_t i = 0; i < dirs.n && !st; i++) {
        if (snprintf(p, sizeof p, "%s/%s", rel, dirs.v[i]) >= (int)sizeof p)
            st = kdc_fail(err, KDC_EINVAL, "%s/%s/%s: path too long", root, rel, dirs.v[i]);
        else
            st = walk_class(root, p, label, depth + 1, out, err);
    }
    names_free(&dirs);
    return st;
}

/* torchvision's order: `for root, _, fnames in sorted(os.walk(dir)): for f in
 * sorted(fnames)`, i.e. by folder path (byte-wise, as whole strings), then by
 * file name. Note "a/sub-x" < "a/sub/deep" since '-' < '/'. */
static int cmp_walk_order(const void *pa, const void *pb)
{
    const char *a = ((const img_entry *)pa)->path, *b = ((const img_entry *)pb)->path;
    const char *sa = strrchr(a, '/'), *sb = strrchr(b, '/');
    size_t da = (size_t)(sa - a), db = (size_t)(sb - b);
    int c = memcmp(a, b, da < db ? da : db);
    if (c)
        return c;
    if (da != db)
        return da < db ? -1 : 1;
    return strcmp(sa + 1, sb + 1);
}

static kdc_status new_dataset(img_dataset **out, const char *root, kdc_error *err)
{
    img_dataset *ds = calloc(1, sizeof *ds);
    if (!ds || !(ds->root = strdup(root))) {
        free(ds);
        return kdc_fail(err, KDC_ENOMEM, "%s: out of memory", root);
    }
    size_t n = strlen(ds->root);
    while (n > 1 && ds->root[n - 1] == '/')
        ds->root[--n] = '\0';
    *out = ds;
    return KDC_OK;
}

kdc_status img_dataset_open_folder(img_dataset **out, const char *root, kdc_error *err)
{
    *out = NULL;
    img_dataset *ds;
    kdc_status st = new_dataset(&ds, root, err);
    if (st)
        return st;
    name_vec cls;
    if ((st = list_dir(ds->root, &cls, NULL, err))) {
        img_dataset_free(ds);
        return st;
    }
    char **classes = cls.v;
    size_t nc = cls.n;
    if (nc == 0 || nc > INT32_MAX) {
        names_free(&cls);
        img_dataset_free(ds);
        return kdc_fail(err, KDC_EINVAL, "%s: no class folders (expected ROOT/<class>/<image>.jpg)", root);
    }
    ds->classes = classes;
    ds->num_classes = (int)nc;
    entry_vec e = {0};
    for (size_t c = 0; c < nc && !st; c++) {
        size_t before = e.n;
        st = walk_class(ds->root, classes[c], (int)c, 0, &e, err);
        if (!st && e.n > before)
            qsort(e.v + before, e.n - before, sizeof *e.v, cmp_walk_order);
        if (!st && e.n == before) /* torchvision refuses empty classes too */
            st = kdc_fail(err, KDC_EINVAL, "%s/%s: class folder has no .jpg/.jpeg images", ds->root,
                          classes[c]);
    }
    ds->items = e.v;
    ds->count = e.n;
    if (st) {
        img_dataset_free(ds);
        return st;
    }
    *out = ds;
    return KDC_OK;
}

/* A relative path that stays inside the root: not absolute, no "." / ".." / empty
 * component. */
static int safe_rel_path(const char *p)
{
    if (!*p || *p == '/')
        return 0;
    for (const char *s = p; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        s += n;
        if (*s == '/')
            s++;
        else
            break;
    }
    return p[strlen(p) - 1] != '/';
}

kdc_status img_dataset_open_list(img_dataset **out, const char *root, const char *list_path,
                                 kdc_error *err)
{
    *out = NULL;
    FILE *f = fopen(list_path, "r");
    if (!f)
        return kdc_fail(err, KDC_EIO, "%s: cannot open: %s", list_path, strerror(errno));
    img_dataset *ds;
    kdc_status st = new_dataset(&ds, root, err);
    if (st) {
        fclose(f);
        return st;
    }
    entry_vec e = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int32_t max_label = -1;
    while (!st && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if ((size_t)len != strlen(line)) {
            st = kdc_fail(err, KDC_EFORMAT, "%s:%ld: NUL byte in line", list_path, lineno);
            break;
        }
        char *tab = strrchr(line, '\t');
        if (!tab) {
            st = kdc_fail(err, KDC_EFORMAT, "%s:%ld: expected 'path<TAB>label'", list_path, lineno);
            break;
        }
        *tab = '\0';
        char *end;
        errno = 0;
        long label = strtol(tab + 1, &end, 10);
        if (errno || end == tab + 1 || *end || label < -1 || label > INT32_MAX - 1) {
            st = kdc_fail(err, KDC_EFORMAT, "%s:%ld: label '%s' is not an integer >= -1", list_path,
                          lineno, tab + 1);
            break;
        }
        if (!safe_rel_path(line)) {
            st = kdc_fail(err, KDC_EFORMAT,
                          "%s:%ld: path '%s' must be relative, without '.', '..' or empty parts",
                          list_path, lineno, line);
            break;
        }
        char full[PATH_BUF];
        struct stat sb;
        if (snprintf(full, sizeof full, "%s/%s", ds->root, line) >= (int)sizeof full) {
            st = kdc_fail(err, KDC_EINVAL, "%s:%ld: path too long", list_path, lineno);
            break;
        }
        if (stat(full, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            st = kdc_fail(err, KDC_EIO, "%s:%ld: %s: %s", list_path, lineno, full,
                          errno ? strerror(errno) : "not a regular file");
            break;
        }
        char *s = strdup(line);
        if (!s || !vec_push(&e, s, (int32_t)label, (uint64_t)sb.st_size)) {
            free(s);
            st = kdc_fail(err, KDC_ENOMEM, "%s: out of memory", list_path);
        }
        if (label > max_label)
            max_label = (int32_t)label;
    }
    free(line);
    fclose(f);
    ds->items = e.v;
    ds->count = e.n;
    if (!st && e.n == 0)
        st = kdc_fail(err, KDC_EINVAL, "%s: no images listed", list_path);
    if (st) {
        img_dataset_free(ds);
        return st;
    }
    ds->num_classes = max_label + 1;
    *out = ds;
    return KDC_OK;
}

kdc_status img_dataset_full_path(const img_dataset *ds, size_t i, char *buf, size_t len,
                                 kdc_error *err)
{
    if (i >= ds->count)
        return kdc_fail(err, KDC_EINVAL, "image index %zu out of range (%zu images)", i, ds->count);
    if (snprintf(buf, len, "%s/%s", ds->root, ds->items[i].path) >= (int)len)
        return kdc_fail(err, KDC_EINVAL, "%s/%s: path too long", ds->root, ds->items[i].path);
    return KDC_OK;
}

void img_dataset_fingerprint_of(const img_entry *entries, size_t n, char hex[65])
{
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    for (size_t i = 0; i < n; i++) {
        uint8_t tail[13];
        tail[0] = 0;
        for (int b = 0; b < 8; b++)
            tail[1 + b] = (uint8_t)(entries[i].size >> (8 * b));
        for (int b = 0; b < 4; b++)
            tail[9 + b] = (uint8_t)(entries[i].crc32 >> (8 * b));
        sha256_update(&ctx, strlen(entries[i].path), (const uint8_t *)entries[i].path);
        sha256_update(&ctx, sizeof tail, tail);
    }
    uint8_t dig[SHA256_DIGEST_SIZE];
    sha256_digest(&ctx, sizeof dig, dig);
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++)
        snprintf(hex + 2 * i, 3, "%02x", dig[i]);
}

/* ---- checksums: threads take files by an atomic-free shared counter under a mutex */
typedef struct sum_job {
    img_dataset *ds;
    pthread_mutex_t mu;
    size_t next;
    size_t first_bad; /* lowest failing index, ds->count if none */
    kdc_error bad_err;
} sum_job;

kdc_status img_file_crc32(const char *path, uint64_t *size, uint32_t *crc, uint8_t *buf,
                          size_t bufsz, kdc_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return kdc_fail(err, KDC_EIO, "%s: cannot open: %s", path, strerror(errno));
    uLong c = crc32(0L, Z_NULL, 0);
    uint64_t n = 0;
    size_t got;
    while ((got = fread(buf, 1, bufsz, f)) > 0) {
        c = crc32(c, buf, (uInt)got);
        n += got;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return kdc_fail(err, KDC_EIO, "%s: read error", path);
    *size = n;
    *crc = (uint32_t)c;
    return KDC_OK;
}

static void *sum_worker(void *arg)
{
    sum_job *j = arg;
    enum { BUF = 1 << 20 };
    uint8_t *buf = malloc(BUF);
    for (;;) {
        pthread_mutex_lock(&j->mu);
        size_t i = j->next++;
        pthread_mutex_unlock(&j->mu);
        if (i >= j->ds->count)
            break;
        kdc_error e = {0};
        char path[PATH_BUF];
        uint64_t size = 0;
        uint32_t crc = 0;
        kdc_status st = buf ? img_dataset_full_path(j->ds, i, path, sizeof path, &e)
                            : kdc_fail(&e, KDC_ENOMEM, "checksum: out of memory");
        if (!st)
            st = img_file_crc32(path, &size, &crc, buf, BUF, &e);
        if (!st && size != j->ds->items[i].size)
            st = kdc_fail(&e, KDC_EMISMATCH, "%s: size changed from %llu to %llu bytes while listing",
                          path, (unsigned long long)j->ds->items[i].size, (unsigned long long)size);
        if (st) {
            pthread_mutex_lock(&j->mu);
            if (i < j->first_bad) {
                j->first_bad = i;
                j->bad_err = e;
            }
            pthread_mutex_unlock(&j->mu);
            continue;
        }
        j->ds->items[i].crc32 = crc;
    }
    free(buf);
    return NULL;
}

kdc_status img_dataset_checksum(img_dataset *ds, int threads, kdc_error *err)
{
    if (threads < 1)
        threads = 1;
    if (threads > 64)
        threads = 64;
    sum_job j = {.ds = ds, .next = 0, .first_bad = ds->count};
    pthread_mutex_init(&j.mu, NULL);
    pthread_t tid[64];
    int started = 0;
    for (; started < threads - 1; started++)
        if (pthread_create(&tid[started], NULL, sum_worker, &j) != 0)
            break;
    sum_worker(&j);
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&j.mu);
    if (j.first_bad < ds->count) {
        if (err)
            *err = j.bad_err;
        return j.bad_err.code;
    }
    img_dataset_fingerprint_of(ds->items, ds->count, ds->fingerprint);
    ds->checksummed = 1;
    return KDC_OK;
}
