/* conv2d_dnnl.c - conv2d forward / backward-data / backward-weights through
 * oneDNN primitives, cached per shape (see conv2d_dnnl.h for the contract).
 *
 * Each cached primitive ("prim") knows, for each of its arguments, the plain
 * layout the caller uses (NCHW / OIHW / [c]) and the layout the primitive chose
 * (format_tag any). Where they differ, a reorder primitive moves the argument
 * into (inputs) or out of (outputs) a slice of the context's workspace; where
 * they agree the caller's buffer is used directly. Memory objects are created
 * without data and get their pointer per call, so a steady-state training loop
 * creates nothing and allocates nothing. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/nn/conv2d_dnnl.h"
#define KDC_DNNL_REDIRECT /* dnnl_* calls go through the dlopen'ed table */
#include "common/nn/dnnl_load.h"

#define ARG_MAX 5
/* a DOT step adds a 2n-batch and a 2*c_out shape per convolution (mobilenet_v1:
 * ~27 shapes x 3), so the cache must hold three sets without evicting */
#define CACHE_MAX 192

typedef struct prim_arg {
    int id;                   /* DNNL_ARG_SRC, ... */
    int out;                  /* written by the primitive */
    dnnl_memory_t user;       /* caller's plain layout, pointer set per call */
    dnnl_memory_t inner;      /* the primitive's layout; NULL when it is the plain one */
    dnnl_primitive_t reorder; /* user -> inner (inputs) or inner -> user (outputs) */
    size_t offset;            /* of inner in the workspace */
} prim_arg;

typedef struct prim {
    dnnl_primitive_desc_t pd; /* NULL: not created yet */
    dnnl_primitive_t p;
    int nargs;
    prim_arg a[ARG_MAX];
    size_t work_bytes;
} prim;

typedef struct entry {
    kdc_conv2d_desc d;
    prim fwd[2][2]; /* [bias][relu] */
    prim bwd_data;
    prim bwd_w[2]; /* [dbias] */
    unsigned long last_use;
} entry;

struct kdc_dnnl {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int threads;
    entry cache[CACHE_MAX];
    int n_entries;
    unsigned long tick;
    unsigned char *work;
    size_t work_bytes;
    float *dual; /* backward_dual: the 2*c_out-channel gradient and weight gradient */
    size_t dual_floats;
};

static kdc_status dfail(kdc_error *err, dnnl_status_t s, const char *what)
{
    return kdc_fail(err, s == dnnl_out_of_memory ? KDC_ENOMEM : KDC_EUNSUPPORTED,
                    "conv2d (oneDNN): %s failed: %s", what, dnnl_status2str(s));
}

#define DN(call, what)                                                                        \
    do {                                                                                      \
        dnnl_status_t s_ = (call);                                                            \
        if (s_ != dnnl_success)                                                               \
            return dfail(err, s_, what);                                                      \
    } while (0)

const char *kdc_dnnl_version(void)
{
    static char buf[64];
    if (kdc_dnnl_load(NULL))
        return "oneDNN (not loaded)";
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, sizeof buf, "oneDNN %d.%d.%d (%s)", v->major, v->minor, v->patch,
             v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP"
             : v->cpu_runtime == DNNL_RUNTIME_SEQ ? "sequential"
             : v->cpu_runtime == DNNL_RUNTIME_TBB ? "TBB"
                                                  : "other runtime");
    return buf;
}

/* ------------------------------------------------------------ prims */

static void prim_free(prim *p)
{
    for (int i = 0; i < p->nargs; i++) {
        if (p->a[i].reorder)
            dnnl_primitive_destroy(p->a[i].reorder);
        if (p->a[i].inner)
            dnnl_memory_destroy(p->a[i].inner);
        if (p->a[i].user)
            dnnl_memory_destroy(p->a[i].user);
    }
    if (p->p)
        dnnl_primitive_destroy(p->p);
    if (p->pd)
        dnnl_primitive_desc_destroy(p->pd);
    memset(p, 0, sizeof *p);
}

static void entry_free(entry *e)
{
    for (int b = 0; b < 2; b++) {
        prim_free(&e->fwd[b][0]);
        prim_free(&e->fwd[b][1]);
        prim_free(&e->bwd_w[b]);
    }
    prim_free(&e->bwd_data);
}

/* Adds argument `id` of the already created p->pd, whose caller layout is
 * user_md; creates the reorder when the primitive chose another layout. */
static kdc_status prim_add_arg(kdc_dnnl *ctx, prim *p, int id, int out,
                               const dnnl_memory_desc_t *user_md, kdc_error *err)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(p->pd, dnnl_query_exec_arg_md, id);
    if (!md)
        return kdc_fail(err, KDC_EUNSUPPORTED, "conv2d (oneDNN): no memory for argument %d", id);
    prim_arg *a = &p->a[p->nargs++];
    a->id = id;
    a->out = out;
    DN(dnnl_memory_create(&a->user, user_md, ctx->engine, DNNL_MEMORY_NONE), "memory_create");
    if (dnnl_memory_desc_equal(md, user_md))
        return KDC_OK;
    DN(dnnl_memory_create(&a->inner, md, ctx->engine, DNNL_MEMORY_NONE), "memory_create");
    dnnl_primitive_desc_t rpd;
    if (out)
        DN(dnnl_reorder_primitive_desc_create(&rpd, md, ctx->engine, user_md, ctx->engine, NULL),
           "reorder (out)");
    else
        DN(dnnl_reorder_primitive_desc_create(&rpd, user_md, ctx->engine, md, ctx->engine, NULL),
           "reorder (in)");
    dnnl_status_t s = dnnl_primitive_create(&a->reorder, rpd);
    dnnl_primitive_desc_destroy(rpd);
    DN(s, "reorder primitive_create");
    a->offset = p->work_bytes;
    p->work_bytes += (dnnl_memory_desc_get_size(md) + 63) & ~(size_t)63;
    return KDC_OK;
}

static kdc_status ensure_work(kdc_dnnl *ctx, size_t bytes, kdc_error *err)
{
    if (bytes <= ctx->work_bytes)
        return KDC_OK;
    unsigned char *w = aligned_alloc(64, bytes);
    if (!w)
        return kdc_fail(err, KDC_ENOMEM, "conv2d (oneDNN): cannot allocate %zu bytes", bytes);
    free(ctx->work);
    ctx->work = w;
    ctx->work_bytes = bytes;
    return KDC_OK;
}

/* Runs p with the caller's pointers ptr[i] for p->a[i]: reorders inputs in,
 * executes, reorders outputs back. */
static kdc_status prim_run(kdc_dnnl *ctx, prim *p, void *const *ptr, kdc_error *err)
{
    kdc_status st = ensure_work(ctx, p->work_bytes, err);
    if (st)
        return st;
    dnnl_exec_arg_t args[ARG_MAX];
    for (int i = 0; i < p->nargs; i++) {
        prim_arg *a = &p->a[i];
        DN(dnnl_memory_set_data_handle(a->user, ptr[i]), "set_data_handle");
        args[i].arg = a->id;
        args[i].memory = a->user;
        if (!a->inner)
            continue;
        DN(dnnl_memory_set_data_handle(a->inner, ctx->work + a->offset), "set_data_handle");
        args[i].memory = a->inner;
        if (!a->out) {
            dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, a->user}, {DNNL_ARG_TO, a->inner}};
            DN(dnnl_primitive_execute(a->reorder, ctx->stream, 2, r), "reorder");
        }
    }
    DN(dnnl_primitive_execute(p->p, ctx->stream, p->nargs, args), "convolution");
    for (int i = 0; i < p->nargs; i++) {
        prim_arg *a = &p->a[i];
        if (a->inner && a->out) {
            dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, a->inner}, {DNNL_ARG_TO, a->user}};
            DN(dnnl_primitive_execute(a->reorder, ctx->stream, 2, r), "reorder");
        }
    }
    DN(dnnl_stream_wait(ctx->stream), "stream_wait");
    return KDC_OK;
}

/* ------------------------------------------------------- descriptors */

typedef struct mds {
    dnnl_memory_desc_t x, w, b, y;         /* plain: what the caller passes */
    dnnl_memory_desc_t xa, wa, ba, ya;     /* format any: what the primitive may choose */
    dnnl_dims_t strides, pad_l, pad_r;
} mds;

/* The caller's activation layout (op_desc.h). A 1x1 map is the same bytes in
 * either, and NCHW then lets oneDNN pick its own layout without a reorder. */
static dnnl_format_tag_t act_tag(int blk, int hw)
{
    if (hw == 1 || blk == 0)
        return dnnl_nchw;
    return blk == 16 ? dnnl_aBcd16b : dnnl_aBcd8b;
}

static kdc_status make_mds(const kdc_conv2d_desc *d, mds *m, kdc_error *err)
{
    dnnl_dims_t xd = {d->n, d->c_in, d->h_in, d->w_in};
    dnnl_dims_t yd = {d->n, d->c_out, d->h_out, d->w_out};
    dnnl_dims_t bd = {d->c_out};
    int g = d->groups;
    DN(dnnl_memory_desc_init_by_tag(&m->x, 4, xd, dnnl_f32, act_tag(d->x_blk, d->h_in * d->w_in)),
       "md");
    DN(dnnl_memory_desc_init_by_tag(&m->xa, 4, xd, dnnl_f32, dnnl_format_tag_any), "md");
    DN(dnnl_memory_desc_init_by_tag(&m->y, 4, yd, dnnl_f32,
                                    act_tag(d->y_blk, d->h_out * d->w_out)),
       "md");
    DN(dnnl_memory_desc_init_by_tag(&m->ya, 4, yd, dnnl_f32, dnnl_format_tag_any), "md");
    DN(dnnl_memory_desc_init_by_tag(&m->b, 1, bd, dnnl_f32, dnnl_a), "md");
    DN(dnnl_memory_desc_init_by_tag(&m->ba, 1, bd, dnnl_f32, dnnl_format_tag_any), "md");
    if (g == 1) {
        dnnl_dims_t wd = {d->c_out, d->c_in, d->kh, d->kw};
        DN(dnnl_memory_desc_init_by_tag(&m->w, 4, wd, dnnl_f32, dnnl_oihw), "md");
        DN(dnnl_memory_desc_init_by_tag(&m->wa, 4, wd, dnnl_f32, dnnl_format_tag_any), "md");
    } else { /* OIHW with O = g * (c_out / g) is goihw in memory */
        dnnl_dims_t wd = {g, d->c_out / g, d->c_in / g, d->kh, d->kw};
        DN(dnnl_memory_desc_init_by_tag(&m->w, 5, wd, dnnl_f32, dnnl_goihw), "md");
        DN(dnnl_memory_desc_init_by_tag(&m->wa, 5, wd, dnnl_f32, dnnl_format_tag_any), "md");
    }
    m->strides[0] = m->strides[1] = d->stride;
    m->pad_l[0] = m->pad_l[1] = d->pad;
    /* right padding so that the output size is exactly h_out (floor mode) */
    m->pad_r[0] = (dnnl_dim_t)(d->h_out - 1) * d->stride + d->kh - d->h_in - d->pad;
    m->pad_r[1] = (dnnl_dim_t)(d->w_out - 1) * d->stride + d->kw - d->w_in - d->pad;
    return KDC_OK;
}

static kdc_status create_pd(kdc_dnnl *ctx, prim *p, const dnnl_convolution_desc_t *cd,
                            const_dnnl_primitive_desc_t hint, const_dnnl_primitive_attr_t attr,
                            const char *what, kdc_error *err)
{
    omp_set_num_threads(ctx->threads); /* kernels partition work for this count */
    DN(dnnl_primitive_desc_create(&p->pd, cd, attr, ctx->engine, hint), what);
    DN(dnnl_primitive_create(&p->p, p->pd), what);
    return KDC_OK;
}

/* The attribute of a forward with the ReLU as a post-op (the kernel applies
 * it to each output block while it is still in registers: no second pass). */
static kdc_status relu_attr(dnnl_primitive_attr_t *attr, kdc_error *err)
{
    dnnl_post_ops_t po;
    DN(dnnl_post_ops_create(&po), "post_ops_create");
    dnnl_status_t s = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
    if (s == dnnl_success)
        s = dnnl_primitive_attr_create(attr);
    if (s == dnnl_success && (s = dnnl_primitive_attr_set_post_ops(*attr, po)) != dnnl_success)
        dnnl_primitive_attr_destroy(*attr);
    dnnl_post_ops_destroy(po);
    DN(s, "ReLU post-op");
    return KDC_OK;
}

static kdc_status make_fwd(kdc_dnnl *ctx, entry *e, int bias, int relu, kdc_error *err)
{
    prim *p = &e->fwd[bias][relu];
    if (p->pd)
        return KDC_OK;
    mds m;
    kdc_status st = make_mds(&e->d, &m, err);
    if (st)
        return st;
    dnnl_convolution_desc_t cd;
    DN(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct,
                                          &m.xa, &m.wa, bias ? &m.ba : NULL, &m.ya, m.strides,
                                          m.pad_l, m.pad_r),
       "forward descriptor");
    dnnl_primitive_attr_t attr = NULL;
    if (relu && (st = relu_attr(&attr, err)))
        return st;
    st = create_pd(ctx, p, &cd, NULL, attr, "forward primitive", err);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (st ||
        (st = prim_add_arg(ctx, p, DNNL_ARG_SRC, 0, &m.x, err)) ||
        (st = prim_add_arg(ctx, p, DNNL_ARG_WEIGHTS, 0, &m.w, err)) ||
        (bias && (st = prim_add_arg(ctx, p, DNNL_ARG_BIAS, 0, &m.b, err))) ||
        (st = prim_add_arg(ctx, p, DNNL_ARG_DST, 1, &m.y, err))) {
        prim_free(p);
        return st;
    }
    return KDC_OK;
}

/* Backward primitives need a forward one as a hint (it fixes the algorithm). */
static const_dnnl_primitive_desc_t hint_of(kdc_dnnl *ctx, entry *e, kdc_error *err)
{
    if (!e->fwd[0][0].pd && !e->fwd[1][0].pd && make_fwd(ctx, e, 0, 0, err))
        return NULL;
    return e->fwd[0][0].pd ? e->fwd[0][0].pd : e->fwd[1][0].pd;
}

static kdc_status make_bwd_data(kdc_dnnl *ctx, entry *e, kdc_error *err)
{
    prim *p = &e->bwd_data;
    if (p->pd)
        return KDC_OK;
    const_dnnl_primitive_desc_t hint = hint_of(ctx, e, err);
    if (!hint)
        return err->code;
    mds m;
    kdc_status st = make_mds(&e->d, &m, err);
    if (st)
        return st;
    dnnl_convolution_desc_t cd;
    DN(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &m.xa, &m.wa, &m.ya,
                                                m.strides, m.pad_l, m.pad_r),
       "backward-data descriptor");
    if ((st = create_pd(ctx, p, &cd, hint, NULL, "backward-data primitive", err)) ||
        (st = prim_add_arg(ctx, p, DNNL_ARG_DIFF_DST, 0, &m.y, err)) ||
        (st = prim_add_arg(ctx, p, DNNL_ARG_WEIGHTS, 0, &m.w, err)) ||
        (st = prim_add_arg(ctx, p, DNNL_ARG_DIFF_SRC, 1, &m.x, err))) {
        prim_free(p);
        return st;
    }
    return KDC_OK;
}

static kdc_status make_bwd_w(kdc_dnnl *ctx, entry *e, int bias, kdc_error *err)
{
    prim *p = &e->bwd_w[bias];
    if (p->pd)
        return KDC_OK;
    const_dnnl_primitive_desc_t hint = hint_of(ctx, e, err);
    if (!hint)
        return err->code;
    mds m;
    kdc_status st = make_mds(&e->d, &m, err);
    if (st)
        return st;
    dnnl_convolution_desc_t cd;
    DN(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &m.xa, &m.wa,
                                                   bias ? &m.ba : NULL, &m.ya, m.strides, m.pad_l,
                                                   m.pad_r),
       "backward-weights descriptor");
    if ((st = create_pd(ctx, p, &cd, hint, NULL, "backward-weights primitive", err)) ||
        (st = prim_add_arg(ctx, p, DNNL_ARG_SRC, 0, &m.x, err)) ||
        (st = prim_add_arg(ctx, p, DNNL_ARG_DIFF_DST, 0, &m.y, err)) ||
        (st = prim_add_arg(ctx, p, DNNL_ARG_DIFF_WEIGHTS, 1, &m.w, err)) ||
        (bias && (st = prim_add_arg(ctx, p, DNNL_ARG_DIFF_BIAS, 1, &m.b, err)))) {
        prim_free(p);
        return st;
    }
    return KDC_OK;
}

/* ------------------------------------------------------------ cache */

static int same_desc(const kdc_conv2d_desc *a, const kdc_conv2d_desc *b)
{
    return a->n == b->n && a->c_in == b->c_in && a->h_in == b->h_in && a->w_in == b->w_in &&
           a->c_out == b->c_out && a->kh == b->kh && a->kw == b->kw && a->stride == b->stride &&
           a->pad == b->pad && a->groups == b->groups && a->h_out == b->h_out &&
           a->w_out == b->w_out && a->x_blk == b->x_blk && a->y_blk == b->y_blk;
}

static kdc_status check_desc(const kdc_conv2d_desc *d, kdc_error *err)
{
    kdc_conv2d_desc c = *d;
    kdc_error e2;
    if (d->h_out <= 0 || d->w_out <= 0 || kdc_conv2d_desc_init(&c, &e2) != KDC_OK ||
        c.h_out != d->h_out || c.w_out != d->w_out)
        return kdc_fail(err, KDC_EINVAL, "conv2d: descriptor not initialised "
                                         "(call kdc_conv2d_desc_init)");
    return KDC_OK;
}

/* The entry for d: found, or made in a free slot or the least recently used one. */
static entry *lookup(kdc_dnnl *ctx, const kdc_conv2d_desc *d)
{
    entry *e = NULL;
    for (int i = 0; i < ctx->n_entries && !e; i++)
        if (same_desc(&ctx->cache[i].d, d))
            e = &ctx->cache[i];
    if (!e) {
        if (ctx->n_entries < CACHE_MAX) {
            e = &ctx->cache[ctx->n_entries++];
        } else {
            e = &ctx->cache[0];
            for (int i = 1; i < CACHE_MAX; i++)
                if (ctx->cache[i].last_use < e->last_use)
                    e = &ctx->cache[i];
            entry_free(e);
        }
        memset(e, 0, sizeof *e);
        e->d = *d;
    }
    e->last_use = ++ctx->tick;
    return e;
}

/* ------------------------------------------------------------- API */

kdc_status kdc_dnnl_create(int threads, kdc_dnnl **out, kdc_error *err)
{
    *out = NULL;
    if (threads <= 0)
        return kdc_fail(err, KDC_EINVAL, "conv2d (oneDNN): threads must be positive");
    kdc_status st = kdc_dnnl_load(err);
    if (st)
        return st;
    kdc_dnnl *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return kdc_fail(err, KDC_ENOMEM, "conv2d (oneDNN): out of memory");
    ctx->threads = threads;
    dnnl_status_t s = dnnl_engine_create(&ctx->engine, dnnl_cpu, 0);
    if (s == dnnl_success)
        s = dnnl_stream_create(&ctx->stream, ctx->engine, dnnl_stream_default_flags);
    if (s != dnnl_success) {
        kdc_dnnl_destroy(ctx);
        return dfail(err, s, "engine/stream creation");
    }
    *out = ctx;
    return KDC_OK;
}

void kdc_dnnl_destroy(kdc_dnnl *ctx)
{
    if (!ctx)
        return;
    for (int i = 0; i < ctx->n_entries; i++)
        entry_free(&ctx->cache[i]);
    if (ctx->stream)
        dnnl_stream_destroy(ctx->stream);
    if (ctx->engine)
        dnnl_engine_destroy(ctx->engine);
    free(ctx->work);
    free(ctx->dual);
    free(ctx);
}

kdc_status kdc_dnnl_conv2d_forward(kdc_dnnl *ctx, const kdc_conv2d_desc *d, const float *x,
                                   const float *w, const float *bias, float *y, kdc_error *err)
{
    kdc_status st = check_desc(d, err);
    if (st)
        return st;
    entry *e = lookup(ctx, d);
    int b = bias != NULL;
    int r = d->relu != 0;
    if ((st = make_fwd(ctx, e, b, r, err)))
        return st;
    void *ptr[4] = {(void *)x, (void *)w, b ? (void *)bias : y, y};
    omp_set_num_threads(ctx->threads);
    return prim_run(ctx, &e->fwd[b][r], ptr, err);
}

kdc_status kdc_dnnl_conv2d_backward(kdc_dnnl *ctx, const kdc_conv2d_desc *d, const float *x,
                                    const float *w, const float *dy, float *dx, float *dw,
                                    float *dbias, kdc_error *err)
{
    kdc_status st = check_desc(d, err);
    if (st)
        return st;
    if (!dw)
        return kdc_fail(err, KDC_EINVAL, "conv2d backward: dw is required");
    entry *e = lookup(ctx, d);
    int b = dbias != NULL;
    if ((dx && (st = make_bwd_data(ctx, e, err))) || (st = make_bwd_w(ctx, e, b, err)))
        return st;
    omp_set_num_threads(ctx->threads);
    if (dx) {
        void *ptr[3] = {(void *)dy, (void *)w, dx};
        if ((st = prim_run(ctx, &e->bwd_data, ptr, err)))
            return st;
    }
    void *ptr[4] = {(void *)x, (void *)dy, dw, dbias};
    return prim_run(ctx, &e->bwd_w[b], ptr, err);
}

kdc_status kdc_dnnl_conv2d_backward_dual(kdc_dnnl *ctx, const kdc_conv2d_desc *d, const float *x,
                                         const float *w, const float *dy2, float *dx2,
                                         float *dw0, float *dw1, kdc_error *err)
{
    kdc_status st = check_desc(d, err);
    if (st)
        return st;
    if (!dw0 || !dw1)
        return kdc_fail(err, KDC_EINVAL, "conv2d backward: dw is required");
    if (d->n > INT_MAX / 2 || d->c_out > INT_MAX / 2)
        return kdc_fail(err, KDC_EINVAL, "conv2d backward: batch or channels too large");
    omp_set_num_threads(ctx->threads);
    const size_t xsz = (size_t)d->n * d->c_in * d->h_in * d->w_in;
    if (dx2 && d->groups != 1) {
        /* depthwise: its backward-data is memory-bound and the 2n primitive was
         * slower than two of n (32 channels at 16x16: 3.3 vs 2.4 ms CPU) */
        entry *e = lookup(ctx, d);
        if ((st = make_bwd_data(ctx, e, err)))
            return st;
        for (int s = 0; s < 2; s++) {
            void *ptr[3] = {(void *)(dy2 + (size_t)s * d->n * d->c_out * d->h_out * d->w_out),
                            (void *)w, dx2 + (size_t)s * xsz};
            if ((st = prim_run(ctx, &e->bwd_data, ptr, err)))
                return st;
        }
    } else if (dx2) { /* both streams as one batch of 2n against the same weights */
        kdc_conv2d_desc d2 = *d;
        d2.n *= 2;
        entry *e2 = lookup(ctx, &d2);
        if ((st = make_bwd_data(ctx, e2, err)))
            return st;
        void *ptr[3] = {(void *)dy2, (void *)w, dx2};
        if ((st = prim_run(ctx, &e2->bwd_data, ptr, err)))
            return st;
    }
    const size_t hw = (size_t)d->h_out * d->w_out, plane = (size_t)d->c_out * hw,
                 ysz = (size_t)d->n * plane,
                 wsz = (size_t)d->c_out * (size_t)(d->c_in / d->groups) * d->kh * d->kw;
    if (d->groups != 1 || hw <= 16) {
        /* grouped / depthwise: 2*c_out filters would make each group twice as wide
         * (no longer the depthwise kernel); maps of 4x4 or less: oneDNN's
         * backward-weights of 2*c_out filters was slower than two of c_out (resnet18
         * at 32 px, 256 channels on 2x2: 13.2 vs 10.1 ms CPU for both streams), while
         * on 8x8 maps it was faster (64 channels: 7.9 vs 11.5 ms). So one
         * backward-weights per stream there. */
        entry *e = lookup(ctx, d);
        if ((st = make_bwd_w(ctx, e, 0, err)))
            return st;
        void *p0[3] = {(void *)x, (void *)dy2, dw0};
        void *p1[3] = {(void *)x, (void *)(dy2 + ysz), dw1};
        if ((st = prim_run(ctx, &e->bwd_w[0], p0, err)))
            return st;
        return prim_run(ctx, &e->bwd_w[0], p1, err);
    }
    /* groups 1: the two output gradients side by side as 2*c_out channels of one
     * image (n x 2c_out x h x w) against the same input: one backward-weights,
     * whose 2c_out x c_in x kh x kw result is dw0 then dw1 */
    kdc_conv2d_desc dc = *d;
    dc.c_out *= 2;
    entry *ec = lookup(ctx, &dc);
    if ((st = make_bwd_w(ctx, ec, 0, err)))
        return st;
    size_t need = 2 * ysz + 2 * wsz;
    if (need > ctx->dual_floats) {
        float *p = aligned_alloc(64, ((need * sizeof(float)) + 63) & ~(size_t)63);
        if (!p)
            return kdc_fail(err, KDC_ENOMEM, "conv2d (oneDNN): cannot allocate %zu floats",
                            need);
        free(ctx->dual);
        ctx->dual = p;
        ctx->dual_floats = need;
    }
    float *cat = ctx->dual, *dwcat = ctx->dual + 2 * ysz;
    for (int n = 0; n < d->n; n++) {
        memcpy(cat + (size_t)n * 2 * plane, dy2 + (size_t)n * plane, plane * sizeof(float));
        memcpy(cat + (size_t)n * 2 * plane + plane, dy2 + ysz + (size_t)n * plane,
               plane * sizeof(float));
    }
    void *ptr[3] = {(void *)x, cat, dwcat};
    if ((st = prim_run(ctx, &ec->bwd_w[0], ptr, err)))
        return st;
    memcpy(dw0, dwcat, wsz * sizeof(float));
    memcpy(dw1, dwcat + wsz, wsz * sizeof(float));
    return KDC_OK;
}
