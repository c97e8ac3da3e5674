/* dist.c - which launcher started us, and the collectives' front door. */
#include "common/dist/dist.h"

#include <stdlib.h>
#include <string.h>

#include "common/dist/dist_internal.h"

static int env_int(const char *name, int def)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    char *end;
    long v = strtol(s, &end, 10);
    return *end || v < 0 || v > 1 << 30 ? def : (int)v;
}

static int launched_by_mpi(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE") ||
           getenv("PMI_RANK");
}

static int launched_by_env(void)
{
    return getenv("RANK") && getenv("WORLD_SIZE");
}

kdc_status kdc_dist_init(kdc_dist **out, kdc_error *err)
{
    *out = NULL;
    kdc_dist *d = calloc(1, sizeof *d);
    if (!d)
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    d->size = 1;
    const char *force = getenv("KDC_DIST");
    kdc_dist_kind kind = KDC_DIST_SINGLE;
    if (force && *force) {
        if (!strcmp(force, "mpi"))
            kind = KDC_DIST_MPI;
        else if (!strcmp(force, "env"))
            kind = KDC_DIST_ENV;
        else if (strcmp(force, "none")) {
            free(d);
            return kdc_fail(err, KDC_EINVAL, "KDC_DIST=%s: expected none, mpi or env", force);
        }
    } else if (launched_by_mpi()) {
        kind = KDC_DIST_MPI;
    } else if (launched_by_env()) {
        kind = KDC_DIST_ENV;
    }
    d->kind = kind;
    kdc_status st = KDC_OK;
    if (kind == KDC_DIST_MPI)
        st = kdc_dist_mpi_open(d, err);
    else if (kind == KDC_DIST_ENV)
        st = kdc_dist_tcp_open(d, err);
    if (st) {
        free(d);
        return st;
    }
    d->local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK",
                            env_int("SLURM_LOCALID", env_int("LOCAL_RANK", d->rank)));
    *out = d;
    return KDC_OK;
}

void kdc_dist_finish(kdc_dist *d)
{
    if (!d)
        return;
    if (d->ops)
        d->ops->finish(d);
    free(d);
}

void kdc_dist_abort(kdc_dist *d, int code)
{
    if (d && d->ops)
        d->ops->abort(d, code);
    exit(code);
}

kdc_dist_kind kdc_dist_get_kind(const kdc_dist *d)
{
    return d ? d->kind : KDC_DIST_SINGLE;
}

const char *kdc_dist_kind_name(const kdc_dist *d)
{
    switch (kdc_dist_get_kind(d)) {
    case KDC_DIST_MPI: return "mpi";
    case KDC_DIST_ENV: return "env";
    default: return "single";
    }
}

int kdc_dist_rank(const kdc_dist *d)
{
    return d ? d->rank : 0;
}

int kdc_dist_size(const kdc_dist *d)
{
    return d ? d->size : 1;
}

int kdc_dist_local_rank(const kdc_dist *d)
{
    return d ? d->local_rank : 0;
}

static kdc_status reduce(kdc_dist *d, void *buf, size_t n, kdc_dist_type t, kdc_dist_op op,
                         kdc_error *err)
{
    if (!d || !d->ops || d->size == 1 || n == 0)
        return KDC_OK;
    return d->ops->allreduce(d, buf, n, t, op, err);
}

kdc_status kdc_dist_sum_f32(kdc_dist *d, float *buf, size_t n, kdc_error *err)
{
    return reduce(d, buf, n, KDC_DIST_F32, KDC_DIST_OP_SUM, err);
}

kdc_status kdc_dist_sum_f64(kdc_dist *d, double *buf, size_t n, kdc_error *err)
{
    return reduce(d, buf, n, KDC_DIST_F64, KDC_DIST_OP_SUM, err);
}

kdc_status kdc_dist_max_i64(kdc_dist *d, int64_t *buf, size_t n, kdc_error *err)
{
    return reduce(d, buf, n, KDC_DIST_I64, KDC_DIST_OP_MAX, err);
}

kdc_status kdc_dist_bcast(kdc_dist *d, void *buf, size_t bytes, int root, kdc_error *err)
{
    if (!d || !d->ops || d->size == 1 || bytes == 0)
        return KDC_OK;
    if (root < 0 || root >= d->size)
        return kdc_fail(err, KDC_EINVAL, "broadcast from rank %d of %d", root, d->size);
    return d->ops->bcast(d, buf, bytes, root, err);
}

kdc_status kdc_dist_barrier(kdc_dist *d, kdc_error *err)
{
    if (!d || !d->ops || d->size == 1)
        return KDC_OK;
    return d->ops->barrier(d, err);
}

kdc_status kdc_dist_agree(kdc_dist *d, kdc_status st, const char *what, kdc_error *err)
{
    if (kdc_dist_size(d) == 1)
        return st;
    /* the lowest failed rank, as the maximum of size - rank */
    int64_t v = st ? kdc_dist_size(d) - kdc_dist_rank(d) : 0;
    kdc_error e2 = {0};
    kdc_status rs = kdc_dist_max_i64(d, &v, 1, &e2);
    if (st)
        return st; /* this rank's own error says more */
    if (rs) {
        *err = e2;
        return rs;
    }
    if (v)
        return kdc_fail(err, KDC_EIO, "%s failed on rank %d", what, (int)(kdc_dist_size(d) - v));
    return KDC_OK;
}
