/* dist_mpi.c - MPI loaded at run time.
 *
 * Why dlopen and not -lmpi: the tools must start as one process where MPI is
 * not installed (a laptop, the GPU bundle's minimal root), and linking libmpi
 * would pull Open MPI's run-time (libopen-rte, libopen-pal, hwloc, PMIx, ...)
 * into every program and every bundle. Only a process that mpirun or srun
 * started opens libmpi.
 *
 * The handles are Open MPI's: MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ... are the
 * addresses of its global objects (ompi_mpi_comm_world, ...), found with
 * dlsym, and every handle is a pointer, so no mpi.h is needed at build time.
 * MPICH-family libraries (integer handles) are refused with a clear line.
 * libmpi is opened RTLD_GLOBAL: its own plugins (mca_*.so) resolve symbols
 * from it. MPI's default error handler stays: a failed collective (a peer
 * that died) ends the process, which is what a data-parallel job wants. */
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/dist/dist_internal.h"

typedef void *mpi_handle;
typedef struct mpi_api {
    void *lib;
    int (*Init_thread)(int *, char ***, int, int *);
    int (*Initialized)(int *);
    int (*Finalized)(int *);
    int (*Finalize)(void);
    int (*Abort)(mpi_handle, int);
    int (*Comm_rank)(mpi_handle, int *);
    int (*Comm_size)(mpi_handle, int *);
    int (*Allreduce)(const void *, void *, int, mpi_handle, mpi_handle, mpi_handle);
    int (*Bcast)(void *, int, mpi_handle, int, mpi_handle);
    int (*Barrier)(mpi_handle);
    int (*Error_string)(int, char *, int *);
    mpi_handle comm_world, t_float, t_double, t_int64, t_byte, op_sum, op_max;
} mpi_api;

static mpi_api g_mpi; /* one MPI per process */

#define MPI_THREAD_FUNNELED_OMPI 1 /* only the main thread calls MPI */
#define MPI_IN_PLACE_OMPI ((void *)1)
/* Counts are int: larger buffers go in pieces. */
#define MPI_PIECE (1 << 28)

static kdc_status mpi_fail(kdc_error *err, const char *what, int rc)
{
    char msg[512] = "";
    int len = 0;
    if (g_mpi.Error_string)
        g_mpi.Error_string(rc, msg, &len);
    return kdc_fail(err, KDC_EIO, "MPI %s failed: %s (%d)", what, msg[0] ? msg : "error", rc);
}

static kdc_status mpi_load(kdc_error *err)
{
    if (g_mpi.lib)
        return KDC_OK;
    const char *names[] = {getenv("KDC_MPI_LIB"), "libmpi.so.40", "libmpi.so"};
    void *lib = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !lib; i++)
        if (names[i] && *names[i])
            lib = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
    if (!lib)
        return kdc_fail(err, KDC_EUNSUPPORTED,
                        "launched by mpirun/srun but libmpi.so.40 (Open MPI) cannot be loaded: "
                        "%s (apt-get install libopenmpi3, or set KDC_MPI_LIB)",
                        dlerror());
    mpi_api a = {.lib = lib};
    struct {
        const char *name;
        void **slot;
    } syms[] = {
        {"MPI_Init_thread", (void **)&a.Init_thread},
        {"MPI_Initialized", (void **)&a.Initialized},
        {"MPI_Finalized", (void **)&a.Finalized},
        {"MPI_Finalize", (void **)&a.Finalize},
        {"MPI_Abort", (void **)&a.Abort},
        {"MPI_Comm_rank", (void **)&a.Comm_rank},
        {"MPI_Comm_size", (void **)&a.Comm_size},
        {"MPI_Allreduce", (void **)&a.Allreduce},
        {"MPI_Bcast", (void **)&a.Bcast},
        {"MPI_Barrier", (void **)&a.Barrier},
        {"MPI_Error_string", (void **)&a.Error_string},
        {"ompi_mpi_comm_world", &a.comm_world},
        {"ompi_mpi_float", &a.t_float},
        {"ompi_mpi_double", &a.t_double},
        {"ompi_mpi_int64_t", &a.t_int64},
        {"ompi_mpi_byte", &a.t_byte},
        {"ompi_mpi_op_sum", &a.op_sum},
        {"ompi_mpi_op_max", &a.op_max},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(lib, syms[i].name);
        if (!*syms[i].slot) {
            dlclose(lib);
            return kdc_fail(err, KDC_EUNSUPPORTED,
                            "the MPI library has no %s (kdcache needs Open MPI's ABI)",
                            syms[i].name);
        }
    }
    g_mpi = a;
    return KDC_OK;
}

static mpi_handle mpi_type(kdc_dist_type t, size_t *elem)
{
    switch (t) {
    case KDC_DIST_F32: *elem = 4; return g_mpi.t_float;
    case KDC_DIST_F64: *elem = 8; return g_mpi.t_double;
    default: *elem = 8; return g_mpi.t_int64;
    }
}

static kdc_status mpi_allreduce(kdc_dist *d, void *buf, size_t n, kdc_dist_type t, kdc_dist_op op,
                                kdc_error *err)
{
    (void)d;
    size_t elem;
    mpi_handle type = mpi_type(t, &elem);
    mpi_handle o = op == KDC_DIST_OP_SUM ? g_mpi.op_sum : g_mpi.op_max;
    for (size_t off = 0; off < n; off += MPI_PIECE) {
        size_t k = n - off < MPI_PIECE ? n - off : MPI_PIECE;
        int rc = g_mpi.Allreduce(MPI_IN_PLACE_OMPI, (char *)buf + off * elem, (int)k, type, o,
                                 g_mpi.comm_world);
        if (rc)
            return mpi_fail(err, "all-reduce", rc);
    }
    return KDC_OK;
}

static kdc_status mpi_bcast(kdc_dist *d, void *buf, size_t bytes, int root, kdc_error *err)
{
    (void)d;
    for (size_t off = 0; off < bytes; off += MPI_PIECE) {
        size_t k = bytes - off < MPI_PIECE ? bytes - off : MPI_PIECE;
        int rc = g_mpi.Bcast((char *)buf + off, (int)k, g_mpi.t_byte, root, g_mpi.comm_world);
        if (rc)
            return mpi_fail(err, "broadcast", rc);
    }
    return KDC_OK;
}

static kdc_status mpi_barrier(kdc_dist *d, kdc_error *err)
{
    (void)d;
    int rc = g_mpi.Barrier(g_mpi.comm_world);
    return rc ? mpi_fail(err, "barrier", rc) : KDC_OK;
}

static void mpi_abort(kdc_dist *d, int code)
{
    (void)d;
    g_mpi.Abort(g_mpi.comm_world, code ? code : 1);
}

static void mpi_finish(kdc_dist *d)
{
    (void)d;
    int done = 0;
    g_mpi.Finalized(&done);
    if (!done)
        g_mpi.Finalize();
}

static const kdc_dist_ops mpi_ops = {mpi_allreduce, mpi_bcast, mpi_barrier, mpi_abort, mpi_finish};

kdc_status kdc_dist_mpi_open(kdc_dist *d, kdc_error *err)
{
    kdc_status st;
    if ((st = mpi_load(err)))
        return st;
    int inited = 0, provided = 0, rc;
    g_mpi.Initialized(&inited);
    if (!inited && (rc = g_mpi.Init_thread(NULL, NULL, MPI_THREAD_FUNNELED_OMPI, &provided)))
        return mpi_fail(err, "init", rc);
    if ((rc = g_mpi.Comm_rank(g_mpi.comm_world, &d->rank)) ||
        (rc = g_mpi.Comm_size(g_mpi.comm_world, &d->size)))
        return mpi_fail(err, "rank/size", rc);
    d->ops = &mpi_ops;
    return KDC_OK;
}
