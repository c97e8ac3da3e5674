/* train_checkpoint.c - --init loading and the resume checkpoint (safetensors). */
#include "train/train_checkpoint.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "formats/weights_check.h"

#define CKPT_FORMAT "1"

/* Reads tensor `name` of f into the device tensor t (same shape). */
static kdc_status load_one(st_file *f, const st_tensor *st_t, kdc_tensor *t, kdc_backend *be,
                           const char *name, kdc_error *err)
{
    int same = st_t->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++)
        same = st_t->shape[d] == t->shape[d];
    if (!same) {
        char want[96], got[96];
        kdc_shape_str(t->ndim, t->shape, want, sizeof want);
        kdc_shape_str(st_t->ndim, st_t->shape, got, sizeof got);
        return kdc_fail(err, KDC_EMISMATCH, "%s: tensor '%s' has shape %s, expected %s",
                        st_path(f), name, got, want);
    }
    size_t n = kdc_tensor_numel(t), bytes = kdc_tensor_nbytes(t);
    void *host = malloc(bytes ? bytes : 1);
    if (!host)
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    kdc_status st = t->dtype == KDC_I64 ? st_read_i64(f, st_t, host, n, err)
                                        : st_read_f32(f, st_t, host, n, err);
    if (!st)
        st = be->copy_h2d(be, t->data, host, bytes, err);
    free(host);
    return st;
}

static kdc_status load_table(st_file *f, kdc_param_table *tab, kdc_backend *be, int *used,
                             kdc_error *err)
{
    for (int i = 0; i < tab->count; i++) {
        kdc_param *p = &tab->items[i];
        const st_tensor *t = st_find(f, p->name);
        if (!t)
            return kdc_fail(err, KDC_EMISMATCH, "%s: missing tensor '%s'", st_path(f), p->name);
        kdc_status st = load_one(f, t, &p->value, be, p->name, err);
        if (st)
            return st;
        (*used)++;
    }
    return KDC_OK;
}

static int has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* Names the first tensor of f that is neither in tab nor accepted by extra(). */
static kdc_status check_no_strays(st_file *f, const kdc_param_table *tab, const char *prefix,
                                  kdc_error *err)
{
    for (int i = 0; i < st_count(f); i++) {
        const char *n = st_get(f, i)->name;
        int known = prefix && has_prefix(n, prefix);
        for (int j = 0; !known && j < tab->count; j++)
            known = !strcmp(n, tab->items[j].name);
        if (!known)
            return kdc_fail(err, KDC_EMISMATCH, "%s: tensor '%s' is not part of this model",
                            st_path(f), n);
    }
    return KDC_OK;
}

kdc_status kd_init_load(const char *path, kdc_param_table *student, kd_projector *proj,
                        kdc_backend *be, int *proj_loaded, kdc_error *err)
{
    st_file *f = NULL;
    kdc_status st;
    *proj_loaded = 0;
    if ((st = st_open(path, &f, err)))
        return st;
    int used = 0;
    if ((st = load_table(f, student, be, &used, err)))
        goto out;
    int has_proj = st_find(f, "projector.weight") || st_find(f, "projector.bias");
    if (has_proj && !proj) {
        st = kdc_fail(err, KDC_EMISMATCH,
                      "%s holds a projector but this run has none (--proj-weight 0)", path);
        goto out;
    }
    if (has_proj) {
        if ((st = load_table(f, &proj->table, be, &used, err)))
            goto out;
        *proj_loaded = 1;
    }
    st = check_no_strays(f, student, has_proj ? "projector." : NULL, err);
    if (!st && used != st_count(f))
        st = kdc_fail(err, KDC_EMISMATCH, "%s: unexpected tensors", path);
    if (!st)
        st = kdc_weights_check(student, be, path, err);
    if (!st && has_proj)
        st = kdc_weights_check(&proj->table, be, path, err);
out:
    st_close(f);
    return st;
}

typedef struct fetch_ctx {
    kdc_backend *be;
    const void **src; /* device pointers of the items with data == NULL */
} fetch_ctx;

static kdc_status fetch(void *ctx, int i, void *dst, size_t bytes, kdc_error *err)
{
    fetch_ctx *c = ctx;
    return c->be->copy_d2h(c->be, dst, c->src[i], bytes, err);
}

kdc_status kd_checkpoint_write(const char *path, const kdc_param_table *student,
                               const kd_projector *proj, kdc_backend *be,
                               const kd_resume_state *s, kdc_error *err)
{
    int n = student->count + (proj ? 2 : 0) + 2;
    st_item *items = calloc((size_t)n, sizeof *items);
    const void **src = calloc((size_t)n, sizeof *src);
    int64_t bshape[2] = {(int64_t)s->n_buffer[0], (int64_t)s->n_buffer[1]};
    if (!items || !src) {
        free(items);
        free(src);
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    }
    int k = 0;
    const kdc_param_table *tabs[2] = {student, proj ? &proj->table : NULL};
    for (int t = 0; t < 2; t++)
        for (int i = 0; tabs[t] && i < tabs[t]->count; i++) {
            const kdc_param *p = &tabs[t]->items[i];
            items[k] = (st_item){.name = p->name, .dtype = p->value.dtype,
                                 .ndim = p->value.ndim, .shape = p->value.shape, .data = NULL};
            src[k++] = p->value.data;
        }
    static const char *const bnames[2] = {"optimizer.buffer0", "optimizer.buffer1"};
    for (int b = 0; b < 2; b++)
        items[k++] = (st_item){.name = bnames[b], .dtype = KDC_F32, .ndim = 1,
                               .shape = &bshape[b],
                               .data = s->buffer[b] ? (const void *)s->buffer[b] : (const void *)""};
    char epochs[32], steps[32];
    snprintf(epochs, sizeof epochs, "%" PRId64, s->epochs_done);
    snprintf(steps, sizeof steps, "%" PRIu64, s->optimizer_steps);
    const char *const meta[5][2] = {{"kd_train_checkpoint", CKPT_FORMAT},
                                    {"epochs_done", epochs},
                                    {"optimizer_steps", steps},
                                    {"signature", s->signature ? s->signature : ""},
                                    {"metrics_csv", s->metrics_csv ? s->metrics_csv : ""}};
    fetch_ctx ctx = {be, src};
    kdc_status st = st_write(path, items, k, meta, 5, fetch, &ctx, err);
    free(items);
    free(src);
    return st;
}

/* The trainer's signature (trainer.c: "student=resnet8x4 batch=64 lr=0.05 ...",
 * unchanged since the first checkpoints, so old ones still resume) key by key, each
 * key with the flag it comes from and how to show its values. */
static const struct {
    const char *key, *flag;
    const char *names; /* integer codes: "0name|1name|..." in order; NULL: as is */
} SIG_KEYS[] = {
    {"student", "--student", NULL},
    {"classes", "classes (of --data)", NULL},
    {"batch", "--batch", NULL},
    {"lr", "--lr", NULL},
    {"wd", "--wd", NULL},
    {"schedule", "--schedule", "cosine|step|constant"},
    {"warmup", "--warmup-epochs", NULL},
    {"lr_steps", "--lr-steps", NULL},
    {"gamma", "--lr-gamma", NULL},
    {"optimizer", "--optimizer", "sgd|dot"},
    {"momentum", "--momentum", NULL},
    {"delta", "--dot-delta", NULL},
    {"ce", "--ce-weight", NULL},
    {"kd", "--kd-weight", NULL},
    {"T", "--temperature", NULL},
    {"proj", "--proj-weight", NULL},
    {"alpha", "--proj-alpha", NULL},
    {"proj_task", "--proj-task-side", "off|on"},
    {"seed", "--seed", NULL},
    {"shuffle", "--no-shuffle", "given|not given"},
    {"data", "the data (cache fingerprint, or online)", NULL},
};

/* The value of `key` in a signature, into buf ("" when absent); 1 if present. */
static int sig_value(const char *sig, const char *key, char *buf, size_t len)
{
    size_t kl = strlen(key);
    buf[0] = '\0';
    for (const char *p = sig; p && *p;) {
        while (*p == ' ')
            p++;
        const char *end = strchr(p, ' ');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > kl && !strncmp(p, key, kl) && p[kl] == '=') {
            size_t vl = n - kl - 1 < len - 1 ? n - kl - 1 : len - 1;
            memcpy(buf, p + kl + 1, vl);
            buf[vl] = '\0';
            return 1;
        }
        p = end;
    }
    return 0;
}

/* A value for people: codes by name, numbers in %g unless that hides the difference. */
static void show_value(int k, const char *v, const char *other, char *out, size_t len)
{
    const char *names = SIG_KEYS[k].names;
    char *end;
    long code = strtol(v, &end, 10);
    if (names && *v && !*end && code >= 0) {
        const char *p = names;
        for (long i = 0; i < code && p; i++)
            p = strchr(p, '|') ? strchr(p, '|') + 1 : NULL;
        if (p) {
            size_t n = strchr(p, '|') ? (size_t)(strchr(p, '|') - p) : strlen(p);
            snprintf(out, len, "%.*s", (int)n, p);
            return;
        }
    }
    /* %.17g in the signature; %g when it still tells the two values apart */
    char *oend;
    double x = strtod(v, &end), y = strtod(other, &oend);
    if (*v && !*end && *other && !*oend) {
        char a[64], b[64];
        snprintf(a, sizeof a, "%g", x);
        snprintf(b, sizeof b, "%g", y);
        if (strcmp(a, b)) {
            snprintf(out, len, "%s", a);
            return;
        }
    }
    snprintf(out, len, "%s", *v ? v : "(none)");
}

void kd_signature_diff(const char *old_sig, const char *new_sig, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t k = 0; k < sizeof SIG_KEYS / sizeof SIG_KEYS[0]; k++) {
        char a[256], b[256], sa[256], sb[256];
        int ha = sig_value(old_sig, SIG_KEYS[k].key, a, sizeof a);
        int hb = sig_value(new_sig, SIG_KEYS[k].key, b, sizeof b);
        if (ha == hb && !strcmp(a, b))
            continue;
        show_value((int)k, ha ? a : "", b, sa, sizeof sa);
        show_value((int)k, hb ? b : "", a, sb, sizeof sb);
        int w = snprintf(buf + n, len - n, "%s%s was %s, now %s", n ? "; " : "",
                         SIG_KEYS[k].flag, ha ? sa : "(not recorded)", hb ? sb : "(none)");
        if (w < 0 || (size_t)w >= len - n)
            break;
        n += (size_t)w;
    }
    if (!n)
        snprintf(buf, len, "the options differ (checkpoint: '%.200s')", old_sig);
}

static kdc_status meta_i64(st_file *f, const char *key, int64_t *out, kdc_error *err)
{
    const char *v = st_metadata(f, key);
    char *end = NULL;
    if (!v || !*v)
        return kdc_fail(err, KDC_EFORMAT, "%s: no '%s' in the metadata", st_path(f), key);
    long long x = strtoll(v, &end, 10);
    if (*end || x < 0)
        return kdc_fail(err, KDC_EFORMAT, "%s: bad '%s' = '%s'", st_path(f), key, v);
    *out = (int64_t)x;
    return KDC_OK;
}

kdc_status kd_checkpoint_read(const char *path, kdc_param_table *student, kd_projector *proj,
                              kdc_backend *be, kd_resume_state *s, kdc_error *err)
{
    st_file *f = NULL;
    kdc_status st;
    s->metrics_csv = NULL;
    if ((st = st_open(path, &f, err)))
        return st;
    const char *fmt = st_metadata(f, "kd_train_checkpoint");
    if (!fmt || strcmp(fmt, CKPT_FORMAT)) {
        st = kdc_fail(err, KDC_EFORMAT, "%s is not a kd-train checkpoint (version %s)", path,
                      CKPT_FORMAT);
        goto out;
    }
    const char *sig = st_metadata(f, "signature");
    if (!sig || strcmp(sig, s->signature ? s->signature : "")) {
        char diff[768];
        kd_signature_diff(sig ? sig : "", s->signature ? s->signature : "", diff, sizeof diff);
        st = kdc_fail(err, KDC_EMISMATCH,
                      "cannot resume: %s was written with other options: %s; resume with the "
                      "same flags, or use another --out",
                      path, diff);
        goto out;
    }
    int64_t e, steps;
    if ((st = meta_i64(f, "epochs_done", &e, err)) ||
        (st = meta_i64(f, "optimizer_steps", &steps, err)))
        goto out;
    int used = 0;
    if ((st = load_table(f, student, be, &used, err)))
        goto out;
    if (proj && (st = load_table(f, &proj->table, be, &used, err)))
        goto out;
    static const char *const bnames[2] = {"optimizer.buffer0", "optimizer.buffer1"};
    for (int b = 0; b < 2; b++) {
        const st_tensor *t = st_find(f, bnames[b]);
        if (!t || t->ndim != 1 || (size_t)t->shape[0] != s->n_buffer[b]) {
            st = kdc_fail(err, KDC_EMISMATCH, "%s: '%s' missing or not %zu floats", path,
                          bnames[b], s->n_buffer[b]);
            goto out;
        }
        if (s->n_buffer[b] && (st = st_read_f32(f, t, s->buffer[b], s->n_buffer[b], err)))
            goto out;
    }
    const char *csv = st_metadata(f, "metrics_csv");
    s->metrics_csv = strdup(csv ? csv : "");
    if (!s->metrics_csv) {
        st = kdc_fail(err, KDC_ENOMEM, "out of memory");
        goto out;
    }
    s->epochs_done = e;
    s->optimizer_steps = (uint64_t)steps;
out:
    st_close(f);
    return st;
}
