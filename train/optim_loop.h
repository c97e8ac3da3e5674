/* optim_loop.h - what sgd.c and dot.c share to run their elementwise update loops
 * fast: GCC 12 at -O2 vectorises no loop that needs a scalar epilogue ("very cheap"
 * cost model) and cannot see that the buffers do not overlap, so the update loops
 * carry the "cheap" cost model and ivdep (as common/nn/activation.c's loops); and
 * they are split over the optimiser's pool in chunks of KD_OPTIM_GRAIN floats. The
 * loops are elementwise with -std=c11's no-contraction rule, so neither the split
 * nor vectorisation changes a single float. Private to train/'s optimisers. */
#ifndef KD_OPTIM_LOOP_H
#define KD_OPTIM_LOOP_H

#if defined(__GNUC__) && !defined(__clang__)
#define KD_OPTIM_VECTORISE __attribute__((optimize("vect-cost-model=cheap")))
#define KD_OPTIM_IVDEP _Pragma("GCC ivdep")
#else
#define KD_OPTIM_VECTORISE
#define KD_OPTIM_IVDEP
#endif

/* floats per chunk: large enough that waking a worker (~10 us) pays off */
#define KD_OPTIM_GRAIN 65536

#endif
