/* dnnl_load.h - oneDNN (libdnnl.so.2) loaded at run time, with OpenMP made to
 * sleep instead of spin.
 *
 * Why dlopen and not -ldnnl: Debian's libdnnl2 runs on OpenMP (libgomp), whose
 * idle threads spin-wait after each parallel region unless OMP_WAIT_POLICY is
 * PASSIVE, and libgomp reads that variable once, in its constructor. Spinning
 * threads take the cores from the layer pool's workers (BN, ReLU, pooling run
 * between convolutions) and, on a loaded machine, from each other: a resnet18
 * train step went from 1547 to 284 ms (docs/PERFORMANCE.md, "CPU layers").
 * So kdc_dnnl_load sets OMP_WAIT_POLICY=PASSIVE unless the user has set it,
 * and only then loads the library (the same pattern as gemm.h for OpenBLAS).
 * If something else loaded libgomp earlier, its policy stays what it was.
 *
 * Only the functions conv2d_dnnl.c calls are resolved, into kdc_dnnl_api.
 * conv2d_dnnl.c defines KDC_DNNL_REDIRECT before including this header, so
 * that its dnnl_* calls go through the table. Not here: any convolution logic. */
#ifndef KDC_DNNL_LOAD_H
#define KDC_DNNL_LOAD_H

#include <dnnl.h>
#include <dnnl_debug.h>
#include <omp.h>

#include "common/base/error.h"

#define KDC_DNNL_FUNCS(X)                                                                     \
    X(dnnl_version)                                                                           \
    X(dnnl_status2str)                                                                        \
    X(dnnl_engine_create)                                                                     \
    X(dnnl_engine_destroy)                                                                    \
    X(dnnl_stream_create)                                                                     \
    X(dnnl_stream_destroy)                                                                    \
    X(dnnl_stream_wait)                                                                       \
    X(dnnl_memory_desc_init_by_tag)                                                           \
    X(dnnl_memory_desc_equal)                                                                 \
    X(dnnl_memory_desc_get_size)                                                              \
    X(dnnl_memory_create)                                                                     \
    X(dnnl_memory_destroy)                                                                    \
    X(dnnl_memory_set_data_handle)                                                            \
    X(dnnl_primitive_desc_create)                                                             \
    X(dnnl_primitive_desc_destroy)                                                            \
    X(dnnl_primitive_desc_query_md)                                                           \
    X(dnnl_primitive_create)                                                                  \
    X(dnnl_primitive_destroy)                                                                 \
    X(dnnl_primitive_execute)                                                                 \
    X(dnnl_reorder_primitive_desc_create)                                                     \
    X(dnnl_convolution_forward_desc_init)                                                     \
    X(dnnl_convolution_backward_data_desc_init)                                               \
    X(dnnl_convolution_backward_weights_desc_init)                                            \
    X(dnnl_primitive_attr_create)                                                             \
    X(dnnl_primitive_attr_destroy)                                                            \
    X(dnnl_primitive_attr_set_post_ops)                                                       \
    X(dnnl_post_ops_create)                                                                   \
    X(dnnl_post_ops_destroy)                                                                  \
    X(dnnl_post_ops_append_eltwise)                                                           \
    X(omp_set_num_threads)

#define KDC_DNNL_MEMBER(f) __typeof__(&f) f;
typedef struct kdc_dnnl_api_t {
    KDC_DNNL_FUNCS(KDC_DNNL_MEMBER)
} kdc_dnnl_api_t;
#undef KDC_DNNL_MEMBER

extern kdc_dnnl_api_t kdc_dnnl_api;

/* Loads libdnnl.so.2 (or the file named by KDC_DNNL_LIB) once (pthread_once)
 * and resolves kdc_dnnl_api; later calls return the first result. Fails with
 * KDC_EUNSUPPORTED and a one-line reason naming the library or symbol. */
kdc_status kdc_dnnl_load(kdc_error *err);

#ifdef KDC_DNNL_REDIRECT
#define dnnl_version kdc_dnnl_api.dnnl_version
#define dnnl_status2str kdc_dnnl_api.dnnl_status2str
#define dnnl_engine_create kdc_dnnl_api.dnnl_engine_create
#define dnnl_engine_destroy kdc_dnnl_api.dnnl_engine_destroy
#define dnnl_stream_create kdc_dnnl_api.dnnl_stream_create
#define dnnl_stream_destroy kdc_dnnl_api.dnnl_stream_destroy
#define dnnl_stream_wait kdc_dnnl_api.dnnl_stream_wait
#define dnnl_memory_desc_init_by_tag kdc_dnnl_api.dnnl_memory_desc_init_by_tag
#define dnnl_memory_desc_equal kdc_dnnl_api.dnnl_memory_desc_equal
#define dnnl_memory_desc_get_size kdc_dnnl_api.dnnl_memory_desc_get_size
#define dnnl_memory_create kdc_dnnl_api.dnnl_memory_create
#define dnnl_memory_destroy kdc_dnnl_api.dnnl_memory_destroy
#define dnnl_memory_set_data_handle kdc_dnnl_api.dnnl_memory_set_data_handle
#define dnnl_primitive_desc_create kdc_dnnl_api.dnnl_primitive_desc_create
#define dnnl_primitive_desc_destroy kdc_dnnl_api.dnnl_primitive_desc_destroy
#define dnnl_primitive_desc_query_md kdc_dnnl_api.dnnl_primitive_desc_query_md
#define dnnl_primitive_create kdc_dnnl_api.dnnl_primitive_create
#define dnnl_primitive_destroy kdc_dnnl_api.dnnl_primitive_destroy
#define dnnl_primitive_execute kdc_dnnl_api.dnnl_primitive_execute
#define dnnl_reorder_primitive_desc_create kdc_dnnl_api.dnnl_reorder_primitive_desc_create
#define dnnl_convolution_forward_desc_init kdc_dnnl_api.dnnl_convolution_forward_desc_init
#define dnnl_convolution_backward_data_desc_init                                              \
    kdc_dnnl_api.dnnl_convolution_backward_data_desc_init
#define dnnl_convolution_backward_weights_desc_init                                           \
    kdc_dnnl_api.dnnl_convolution_backward_weights_desc_init
#define dnnl_primitive_attr_create kdc_dnnl_api.dnnl_primitive_attr_create
#define dnnl_primitive_attr_destroy kdc_dnnl_api.dnnl_primitive_attr_destroy
#define dnnl_primitive_attr_set_post_ops kdc_dnnl_api.dnnl_primitive_attr_set_post_ops
#define dnnl_post_ops_create kdc_dnnl_api.dnnl_post_ops_create
#define dnnl_post_ops_destroy kdc_dnnl_api.dnnl_post_ops_destroy
#define dnnl_post_ops_append_eltwise kdc_dnnl_api.dnnl_post_ops_append_eltwise
#define omp_set_num_threads kdc_dnnl_api.omp_set_num_threads
#endif

#endif
