/* checkpoint.c - parameter tables <-> safetensors files (see checkpoint.h). */
#include "formats/checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"

static int is_counter(const kdc_param *p)
{
    return p->value.dtype == KDC_I64;
}

static int is_float(st_dtype dt)
{
    return dt == ST_F32 || dt == ST_F16 || dt == ST_BF16 || dt == ST_F64;
}

/* Matches file and table; fills match[i] with the file tensor of param i
 * (NULL for a counter the file lacks). */
static kdc_status check_file(st_file *f, const kdc_param_table *params, const st_tensor **match,
                             kdc_error *err)
{
    const char *path = st_path(f);
    char want[160], got[160];
    for (int i = 0; i < params->count; i++) {
        const kdc_param *p = &params->items[i];
        const st_tensor *t = st_find(f, p->name);
        kdc_shape_str(p->value.ndim, p->value.shape, want, sizeof want);
        match[i] = t;
        if (!t) {
            if (is_counter(p))
                continue;
            return kdc_fail(err, KDC_EMISMATCH, "%s: missing tensor '%s' (expected shape %s)",
                            path, p->name, want);
        }
        kdc_shape_str(t->ndim, t->shape, got, sizeof got);
        int same = t->ndim == p->value.ndim;
        for (int d = 0; same && d < t->ndim; d++)
            same = t->shape[d] == p->value.shape[d];
        if (!same)
            return kdc_fail(err, KDC_EMISMATCH,
                            "%s: tensor '%s' has shape %s in the file, the model expects %s",
                            path, p->name, got, want);
        if (is_counter(p) ? (t->dtype != ST_I64 && t->dtype != ST_I32) : !is_float(t->dtype))
            return kdc_fail(err, KDC_EMISMATCH, "%s: tensor '%s' is %s, expected %s", path,
                            p->name, st_dtype_name(t->dtype),
                            is_counter(p) ? "I64" : "F32, F16, BF16 or F64");
    }
    for (int j = 0; j < st_count(f); j++) {
        const st_tensor *t = st_get(f, j);
        int known = 0;
        for (int i = 0; i < params->count && !known; i++)
            known = match[i] == t;
        if (!known) {
            kdc_shape_str(t->ndim, t->shape, got, sizeof got);
            return kdc_fail(err, KDC_EMISMATCH,
                            "%s: unexpected tensor '%s' %s %s (not a parameter of this model)",
                            path, t->name, st_dtype_name(t->dtype), got);
        }
    }
    return KDC_OK;
}

kdc_status kdc_checkpoint_load(const char *path, kdc_param_table *params, kdc_backend *be,
                               kdc_error *err)
{
    st_file *f;
    kdc_status st = st_open(path, &f, err);
    if (st)
        return st;
    const st_tensor **match = calloc((size_t)params->count + 1, sizeof *match);
    void *host = NULL;
    size_t cap = 0;
    if (!match) {
        st = kdc_fail(err, KDC_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((st = check_file(f, params, match, err)))
        goto done;
    for (int i = 0; i < params->count && !st; i++) {
        kdc_param *p = &params->items[i];
        size_t n = kdc_tensor_numel(&p->value), bytes = kdc_tensor_nbytes(&p->value);
        if (bytes > cap) {
            free(host);
            cap = 0;
            host = malloc(bytes);
            if (!host) {
                st = kdc_fail(err, KDC_ENOMEM, "%s: out of memory for '%s'", path, p->name);
                break;
            }
            cap = bytes;
        }
        if (is_counter(p)) {
            if (match[i])
                st = st_read_i64(f, match[i], host, n, err);
            else
                memset(host, 0, bytes);
        } else {
            st = st_read_f32(f, match[i], host, n, err);
        }
        if (!st)
            st = be->copy_h2d(be, p->value.data, host, bytes, err);
    }
    if (!st)
        st = be->synchronize(be, err);
done:
    free(host);
    free(match);
    st_close(f);
    return st;
}

typedef struct save_ctx {
    const kdc_param_table *params;
    kdc_backend *be;
} save_ctx;

static kdc_status fetch_param(void *ctx, int i, void *dst, size_t bytes, kdc_error *err)
{
    save_ctx *c = ctx;
    kdc_status st = c->be->copy_d2h(c->be, dst, c->params->items[i].value.data, bytes, err);
    return st ? st : c->be->synchronize(c->be, err);
}

kdc_status kdc_checkpoint_save_meta(const char *path, const kdc_param_table *params,
                                    kdc_backend *be, const char *const (*meta)[2], int n_meta,
                                    kdc_error *err)
{
    st_item *items = calloc((size_t)params->count + 1, sizeof *items);
    const char *(*all)[2] = calloc((size_t)(n_meta > 0 ? n_meta : 0) + 1, sizeof *all);
    if (!items || !all) {
        free(items);
        free(all);
        return kdc_fail(err, KDC_ENOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < params->count; i++) {
        const kdc_param *p = &params->items[i];
        items[i].name = p->name;
        items[i].dtype = p->value.dtype;
        items[i].ndim = p->value.ndim;
        items[i].shape = p->value.shape;
        items[i].data = NULL;
    }
    /* "format": "pt" lets safetensors.torch.load_file hand back torch tensors */
    int n = 0;
    all[n][0] = "format";
    all[n++][1] = "pt";
    for (int i = 0; i < n_meta; i++)
        if (strcmp(meta[i][0], "format")) {
            all[n][0] = meta[i][0];
            all[n++][1] = meta[i][1];
        }
    save_ctx ctx = {params, be};
    kdc_status st = st_write(path, items, params->count, (const char *const (*)[2])all, n,
                             fetch_param, &ctx, err);
    free(all);
    free(items);
    return st;
}

kdc_status kdc_checkpoint_save(const char *path, const kdc_param_table *params,
                               kdc_backend *be, const char *arch, kdc_error *err)
{
    const char *const meta[1][2] = {{"arch", arch ? arch : ""}};
    return kdc_checkpoint_save_meta(path, params, be, meta, arch ? 1 : 0, err);
}
