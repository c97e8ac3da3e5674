/* dist_internal.h - what a transport (MPI, the TCP star) gives dist.c. */
#ifndef KDC_DIST_INTERNAL_H
#define KDC_DIST_INTERNAL_H

#include "common/dist/dist.h"

typedef enum { KDC_DIST_F32, KDC_DIST_F64, KDC_DIST_I64 } kdc_dist_type;
typedef enum { KDC_DIST_OP_SUM, KDC_DIST_OP_MAX } kdc_dist_op;

typedef struct kdc_dist_ops {
    kdc_status (*allreduce)(kdc_dist *d, void *buf, size_t n, kdc_dist_type t, kdc_dist_op op,
                            kdc_error *err);
    kdc_status (*bcast)(kdc_dist *d, void *buf, size_t bytes, int root, kdc_error *err);
    kdc_status (*barrier)(kdc_dist *d, kdc_error *err);
    void (*abort)(kdc_dist *d, int code);
    void (*finish)(kdc_dist *d);
} kdc_dist_ops;

struct kdc_dist {
    kdc_dist_kind kind;
    int rank, size, local_rank;
    const kdc_dist_ops *ops; /* NULL for one rank */
    void *impl;              /* the transport's state */
};

/* Each fills d->rank, size, ops and impl, or fails with one line. */
kdc_status kdc_dist_mpi_open(kdc_dist *d, kdc_error *err);
kdc_status kdc_dist_tcp_open(kdc_dist *d, kdc_error *err);

#endif
