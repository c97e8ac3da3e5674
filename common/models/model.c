/* model.c - the model graph (nodes, parameters) and its executor: training
 * forward/backward and the BN-folded inference path.
 *
 * The graph is a list of nodes in execution order; a node reads one or two
 * earlier nodes (or the network input) and writes one activation. The
 * architecture files append nodes through model_build.h. All compute goes
 * through the kdc_backend table; the host only initialises and folds weights.
 *
 * Memory (allocated at first use, grown when an input shape needs more,
 * never per call):
 *   - training forward: one buffer per activation, except that a ReLU or an
 *     add whose input has no other reader and is not needed by backward
 *     writes in place over it; everything stays alive for backward;
 *   - backward: gradient buffers shared between activations whose gradients
 *     are never alive at the same time, plus one scratch buffer for the second
 *     and later contributions to a gradient that several nodes read;
 *   - inference: activation buffers shared the same way, in forward order.
 *
 * Not here: the architectures (model_resnet.c, model_mobilenet.c,
 * model_cifar.c), name lookup (model_zoo.c), losses and optimisers. */
#include "common/models/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/models/model_build.h"

#define BN_EPS 1e-5f      /* PyTorch BatchNorm2d default */
#define BN_MOMENTUM 0.1f  /* PyTorch BatchNorm2d default */
#define ARCH_NAME_MAX 32
#define NOT_USED (-2)     /* a value no node reads */

typedef enum op_kind {
    OP_CONV, OP_BN, OP_RELU, OP_MAXPOOL, OP_GAP, OP_LINEAR, OP_ADD,
    /* MobileNetV2, ShuffleNet, RegNetY, VGG */
    OP_RELU6, OP_SIGMOID,
    OP_SCALE,   /* in[0] * in[1] per channel (in[1]: n x C x 1 x 1, squeeze-excitation) */
    OP_CONCAT,  /* channels of in[0], then of in[1] */
    OP_SLICE,   /* channels [off, off + c) of in[0] */
    OP_SHUFFLE, /* channel shuffle in `groups` groups */
    OP_AVGPOOL  /* windowed average pool, zero padding counted */
} op_kind;

typedef struct node {
    op_kind op;
    int in[2];     /* node indices, KDC_MB_INPUT, or -3 when unused */
    int c;         /* output channels (or features for linear) */
    int c_in;
    char *name;    /* state_dict prefix for nodes with parameters, for messages */
    int k, stride, pad, groups;
    int off;       /* OP_SLICE: first channel */
    int bias_init; /* OP_CONV with bias: 0 zero, 1 PyTorch's default U(+-1/sqrt(fan_in)) */
    int p_w, p_b, p_rm, p_rv, p_nbt; /* parameter indices, -1 when absent */
    int bn_index;                    /* BN nodes: index into save stats and nbt */
    kdc_init_kind init;
    int n_readers;
    /* shape-dependent, refreshed by plan_dims for the shape being run */
    int h, w;
    size_t numel;
    kdc_conv2d_desc cd;
    kdc_pool2d_desc pd;
    /* structural memory plan, fixed after building */
    int train_buf;  /* index into train buffers */
    int grad_slot;  /* index into gradient slots; -1 for the logits node */
    int fold;       /* conv: folded with the BN that reads it (infer) */
    size_t folded_off; /* conv with fold: offset of w' then b' in the folded arena */
    int skip_infer; /* BN folded into its conv, or ReLU fused into it */
    int relu_infer; /* conv: its ReLU runs inside it (infer) */
    int infer_slot;
    int blk;        /* planned layout of the output (op_desc.h), 0: NCHW */
} node;

/* A set of device buffers whose capacity (in floats) grows on demand. */
typedef struct bufset {
    int count;
    float **ptr;
    size_t *cap;
    size_t *need; /* scratch for planning */
} bufset;

struct kdc_model {
    char arch[ARCH_NAME_MAX];
    int num_classes;
    kdc_backend *be;

    node *nodes;
    int n_nodes, cap_nodes;
    int n_bn;
    int logits_node, features_node;

    kdc_param_table params;
    int cap_params;
    size_t *param_off; /* offset in the arena of the param's kind (in elements) */
    float *weights;    /* trainable parameters, contiguous, table order */
    size_t weights_numel;
    float *buffers;    /* running_mean / running_var */
    size_t buffers_numel;
    int64_t *nbt;      /* num_batches_tracked of every BN, in BN order */
    int64_t *nbt_host;
    float *save_stats; /* per BN: save_mean then save_invstd */
    size_t *save_off;
    size_t save_numel;

    bufset train_bufs, grad_slots, infer_slots;
    float *scratch;
    size_t scratch_cap;

    int layout_on;     /* the pass being run uses the planned layouts (node.blk) */
    int trained_layout; /* layout_on of the last train forward, which backward reuses */
    int trained_n, trained_h, trained_w; /* shape of the last train forward, 0: none */
    const float *train_input;            /* its input, which conv backward reads */

    float *folded;  /* folded conv weights and biases (infer) */
    size_t folded_numel;
    int folded_valid;

    /* Synchronised batch statistics (kdc_model_set_bn_sum): NULL for local */
    kdc_model_sum_fn bn_sum;
    void *bn_sum_ctx;
    double *bn_sums;  /* host: 2 x 2 x (widest BN) + 1 */
    double *bn_count; /* per BN: the summed count of its last train forward */

    kdc_status build_status;
    kdc_error build_err;
};

/* ------------------------------------------------------------------ building */

static int build_fail(kdc_model *m, kdc_status st, const char *msg)
{
    if (m->build_status == KDC_OK) {
        m->build_status = st;
        kdc_fail(&m->build_err, st, "%s: %s", m->arch, msg);
    }
    return -1;
}

kdc_status kdc_mb_status(const kdc_model *m, kdc_error *err)
{
    if (m->build_status != KDC_OK && err)
        *err = m->build_err;
    return m->build_status;
}

static int add_param(kdc_model *m, const char *prefix, const char *suffix, kdc_param_kind kind,
                     kdc_dtype dt, int ndim, const int64_t *shape, int is_bn)
{
    if (m->params.count == m->cap_params) {
        int cap = m->cap_params ? 2 * m->cap_params : 64;
        kdc_param *items = realloc(m->params.items, (size_t)cap * sizeof *items);
        if (!items)
            return build_fail(m, KDC_ENOMEM, "out of memory for the parameter table");
        m->params.items = items;
        m->cap_params = cap;
    }
    size_t len = strlen(prefix) + 1 + strlen(suffix) + 1;
    char *name = malloc(len);
    if (!name)
        return build_fail(m, KDC_ENOMEM, "out of memory for parameter names");
    snprintf(name, len, "%s.%s", prefix, suffix);
    kdc_param *p = &m->params.items[m->params.count];
    memset(p, 0, sizeof *p);
    p->name = name;
    p->kind = kind;
    p->is_bn = is_bn;
    p->value.dtype = dt;
    p->value.device = m->be->device;
    p->value.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        p->value.shape[i] = shape[i];
    return m->params.count++;
}

static int valid_ref(const kdc_model *m, int in)
{
    return in == KDC_MB_INPUT || (in >= 0 && in < m->n_nodes);
}

static int add_node(kdc_model *m, op_kind op, int in0, int in1, const char *prefix)
{
    if (m->build_status != KDC_OK)
        return -1;
    if (!valid_ref(m, in0) || (in1 != -3 && !valid_ref(m, in1)))
        return build_fail(m, KDC_EINVAL, "node reads a node that does not exist");
    if (m->n_nodes == m->cap_nodes) {
        int cap = m->cap_nodes ? 2 * m->cap_nodes : 64;
        node *nodes = realloc(m->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes)
            return build_fail(m, KDC_ENOMEM, "out of memory for the graph");
        m->nodes = nodes;
        m->cap_nodes = cap;
    }
    node *nd = &m->nodes[m->n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->op = op;
    nd->in[0] = in0;
    nd->in[1] = in1;
    nd->p_w = nd->p_b = nd->p_rm = nd->p_rv = nd->p_nbt = -1;
    nd->bn_index = -1;
    nd->c_in = kdc_mb_channels(m, in0);
    nd->c = nd->c_in;
    if (prefix) {
        nd->name = strdup(prefix);
        if (!nd->name)
            return build_fail(m, KDC_ENOMEM, "out of memory for node names");
    }
    return m->n_nodes++;
}

int kdc_mb_channels(const kdc_model *m, int node_id)
{
    if (node_id == KDC_MB_INPUT)
        return 3;
    if (node_id < 0 || node_id >= m->n_nodes)
        return 0;
    return m->nodes[node_id].c;
}

int kdc_mb_conv(kdc_model *m, const char *prefix, int in, int c_in, int c_out, int k,
                int stride, int pad, int groups)
{
    int id = add_node(m, OP_CONV, in, -3, prefix);
    if (id < 0)
        return -1;
    node *nd = &m->nodes[id];
    if (nd->c_in != c_in)
        return build_fail(m, KDC_EINVAL, "conv input channels do not match the graph");
    if (c_out <= 0 || k <= 0 || stride <= 0 || pad < 0 || groups <= 0 || c_in % groups ||
        c_out % groups)
        return build_fail(m, KDC_EINVAL, "bad convolution geometry");
    nd->c = c_out;
    nd->k = k;
    nd->stride = stride;
    nd->pad = pad;
    nd->groups = groups;
    int64_t shape[4] = {c_out, c_in / groups, k, k};
    nd->p_w = add_param(m, prefix, "weight", KDC_PARAM_WEIGHT, KDC_F32, 4, shape, 0);
    return nd->p_w < 0 ? -1 : id;
}

int kdc_mb_conv_bias(kdc_model *m, const char *prefix, int in, int c_in, int c_out, int k,
                     int stride, int pad, int groups, int bias_init)
{
    int id = kdc_mb_conv(m, prefix, in, c_in, c_out, k, stride, pad, groups);
    if (id < 0)
        return -1;
    int64_t c = c_out;
    m->nodes[id].bias_init = bias_init;
    m->nodes[id].p_b = add_param(m, prefix, "bias", KDC_PARAM_WEIGHT, KDC_F32, 1, &c, 0);
    return m->nodes[id].p_b < 0 ? -1 : id;
}

int kdc_mb_bn(kdc_model *m, const char *prefix, int in)
{
    int id = add_node(m, OP_BN, in, -3, prefix);
    if (id < 0)
        return -1;
    node *nd = &m->nodes[id];
    int64_t c = nd->c;
    nd->bn_index = m->n_bn++;
    nd->p_w = add_param(m, prefix, "weight", KDC_PARAM_WEIGHT, KDC_F32, 1, &c, 1);
    nd->p_b = add_param(m, prefix, "bias", KDC_PARAM_WEIGHT, KDC_F32, 1, &c, 1);
    nd->p_rm = add_param(m, prefix, "running_mean", KDC_PARAM_BUFFER, KDC_F32, 1, &c, 0);
    nd->p_rv = add_param(m, prefix, "running_var", KDC_PARAM_BUFFER, KDC_F32, 1, &c, 0);
    nd->p_nbt = add_param(m, prefix, "num_batches_tracked", KDC_PARAM_BUFFER, KDC_I64, 0, NULL,
                          0);
    return m->build_status ? -1 : id;
}

int kdc_mb_relu(kdc_model *m, int in)
{
    return add_node(m, OP_RELU, in, -3, NULL);
}

int kdc_mb_relu6(kdc_model *m, int in)
{
    return add_node(m, OP_RELU6, in, -3, NULL);
}

int kdc_mb_sigmoid(kdc_model *m, int in)
{
    return add_node(m, OP_SIGMOID, in, -3, NULL);
}

int kdc_mb_scale(kdc_model *m, int x, int s)
{
    if (x < 0 || s < 0)
        return build_fail(m, KDC_EINVAL, "channel scale of the network input");
    int id = add_node(m, OP_SCALE, x, s, NULL);
    if (id < 0)
        return -1;
    if (kdc_mb_channels(m, x) != kdc_mb_channels(m, s))
        return build_fail(m, KDC_EINVAL, "channel scale with a different number of scales");
    return id;
}

int kdc_mb_concat(kdc_model *m, int a, int b)
{
    if (a < 0 || b < 0)
        return build_fail(m, KDC_EINVAL, "concatenation of the network input");
    int id = add_node(m, OP_CONCAT, a, b, NULL);
    if (id < 0)
        return -1;
    m->nodes[id].c = kdc_mb_channels(m, a) + kdc_mb_channels(m, b);
    return id;
}

int kdc_mb_slice(kdc_model *m, int in, int off, int count)
{
    int id = add_node(m, OP_SLICE, in, -3, NULL);
    if (id < 0)
        return -1;
    if (off < 0 || count <= 0 || off > kdc_mb_channels(m, in) - count)
        return build_fail(m, KDC_EINVAL, "channel slice outside its input");
    m->nodes[id].off = off;
    m->nodes[id].c = count;
    return id;
}

int kdc_mb_shuffle(kdc_model *m, int in, int groups)
{
    int id = add_node(m, OP_SHUFFLE, in, -3, NULL);
    if (id < 0)
        return -1;
    if (groups <= 0 || kdc_mb_channels(m, in) % groups)
        return build_fail(m, KDC_EINVAL, "channel shuffle groups do not divide the channels");
    m->nodes[id].groups = groups;
    return id;
}

int kdc_mb_avgpool(kdc_model *m, int in, int k, int stride, int pad)
{
    int id = add_node(m, OP_AVGPOOL, in, -3, NULL);
    if (id < 0)
        return -1;
    if (k <= 0 || stride <= 0 || pad < 0 || 2 * pad > k)
        return build_fail(m, KDC_EINVAL, "bad average-pool geometry");
    m->nodes[id].k = k;
    m->nodes[id].stride = stride;
    m->nodes[id].pad = pad;
    return id;
}

int kdc_mb_maxpool(kdc_model *m, int in, int k, int stride, int pad)
{
    int id = add_node(m, OP_MAXPOOL, in, -3, NULL);
    if (id < 0)
        return -1;
    if (k <= 0 || stride <= 0 || pad < 0 || 2 * pad > k)
        return build_fail(m, KDC_EINVAL, "bad max-pool geometry");
    m->nodes[id].k = k;
    m->nodes[id].stride = stride;
    m->nodes[id].pad = pad;
    return id;
}

int kdc_mb_gap(kdc_model *m, int in)
{
    return add_node(m, OP_GAP, in, -3, NULL);
}

/* as_conv: the weight is registered as [out, in, 1, 1] (a 1x1 conv on the
 * pooled map); the values and their layout are those of [out, in]. */
static int linear_node(kdc_model *m, const char *prefix, int in, int out_features,
                       kdc_init_kind init, int as_conv)
{
    int id = add_node(m, OP_LINEAR, in, -3, prefix);
    if (id < 0)
        return -1;
    node *nd = &m->nodes[id];
    if (in < 0 || m->nodes[in].op != OP_GAP)
        return build_fail(m, KDC_EINVAL, "linear must read a global average pool");
    if (out_features <= 0)
        return build_fail(m, KDC_EINVAL, "linear needs a positive number of outputs");
    nd->c = out_features;
    nd->init = init;
    int64_t wshape[4] = {out_features, nd->c_in, 1, 1}, bshape[1] = {out_features};
    nd->p_w = add_param(m, prefix, "weight", KDC_PARAM_WEIGHT, KDC_F32, as_conv ? 4 : 2, wshape,
                        0);
    nd->p_b = add_param(m, prefix, "bias", KDC_PARAM_WEIGHT, KDC_F32, 1, bshape, 0);
    return m->build_status ? -1 : id;
}

int kdc_mb_linear(kdc_model *m, const char *prefix, int in, int out_features,
                  kdc_init_kind init)
{
    return linear_node(m, prefix, in, out_features, init, 0);
}

int kdc_mb_linear_1x1(kdc_model *m, const char *prefix, int in, int out_features,
                      kdc_init_kind init)
{
    return linear_node(m, prefix, in, out_features, init, 1);
}

int kdc_mb_add(kdc_model *m, int a, int b)
{
    int id = add_node(m, OP_ADD, a, b, NULL);
    if (id < 0)
        return -1;
    if (kdc_mb_channels(m, a) != kdc_mb_channels(m, b))
        return build_fail(m, KDC_EINVAL, "residual add of tensors with different channels");
    return id;
}

/* ----------------------------------------------------------- memory helpers */

static void bufset_free(kdc_backend *be, bufset *s)
{
    for (int i = 0; i < s->count; i++)
        if (s->ptr[i])
            be->free(be, s->ptr[i]);
    free(s->ptr);
    free(s->cap);
    free(s->need);
    memset(s, 0, sizeof *s);
}

static kdc_status bufset_init(bufset *s, int count, kdc_error *err)
{
    s->count = count;
    s->ptr = calloc((size_t)(count ? count : 1), sizeof *s->ptr);
    s->cap = calloc((size_t)(count ? count : 1), sizeof *s->cap);
    s->need = calloc((size_t)(count ? count : 1), sizeof *s->need);
    if (!s->ptr || !s->cap || !s->need)
        return kdc_fail(err, KDC_ENOMEM, "out of memory for the memory plan");
    return KDC_OK;
}

/* Grows buffer i to at least s->need[i] floats (contents are not kept). */
static kdc_status bufset_grow(kdc_backend *be, bufset *s, kdc_error *err)
{
    for (int i = 0; i < s->count; i++) {
        if (s->need[i] <= s->cap[i])
            continue;
        if (s->ptr[i])
            be->free(be, s->ptr[i]);
        s->ptr[i] = NULL;
        s->cap[i] = 0;
        size_t bytes;
        if (!kdc_size_mul(s->need[i], sizeof(float), &bytes))
            return kdc_fail(err, KDC_ENOMEM, "activation size overflows");
        kdc_status st = be->alloc(be, bytes, (void **)&s->ptr[i], err);
        if (st)
            return kdc_error_prefix(err, "activations (%zu MiB): ", bytes >> 20);
        s->cap[i] = s->need[i];
    }
    return KDC_OK;
}

static kdc_status grow_scratch(kdc_model *m, size_t need, kdc_error *err)
{
    if (need <= m->scratch_cap)
        return KDC_OK;
    kdc_backend *be = m->be;
    if (m->scratch)
        be->free(be, m->scratch);
    m->scratch = NULL;
    m->scratch_cap = 0;
    kdc_status st = be->alloc(be, need * sizeof(float), (void **)&m->scratch, err);
    if (st)
        return st;
    m->scratch_cap = need;
    return KDC_OK;
}

/* ---------------------------------------------------------- structural plan */

/* Does backward need node i's own output? (ReLU, ReLU6, sigmoid and max pool
 * read it.) */
static int needs_own_output(op_kind op)
{
    return op == OP_RELU || op == OP_MAXPOOL || op == OP_RELU6 || op == OP_SIGMOID;
}

/* Train buffers: a ReLU or add may overwrite its first input when nothing else
 * reads that input and the input's producer does not need it for backward
 * (a BN's backward reads the BN input, not its output). */
static kdc_status plan_train_buffers(kdc_model *m, kdc_error *err)
{
    int nbuf = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        node *nd = &m->nodes[i];
        int a = nd->in[0];
        if ((nd->op == OP_RELU || nd->op == OP_ADD) && a >= 0 && m->nodes[a].n_readers == 1 &&
            !needs_own_output(m->nodes[a].op) && a != m->features_node)
            nd->train_buf = m->nodes[a].train_buf;
        else
            nd->train_buf = nbuf++;
    }
    return bufset_init(&m->train_bufs, nbuf, err);
}

/* Gradient slots, walking the graph backwards: the gradient of node j's
 * output is born when its last reader is processed and dies when j is. */
static kdc_status plan_grad_slots(kdc_model *m, kdc_error *err)
{
    int n = m->n_nodes;
    size_t cnt = n > 0 ? (size_t)n : 1;
    int *last_reader = malloc(cnt * sizeof *last_reader);
    int *free_list = malloc(cnt * sizeof *free_list);
    if (!last_reader || !free_list) {
        free(last_reader);
        free(free_list);
        return kdc_fail(err, KDC_ENOMEM, "out of memory for the memory plan");
    }
    for (int i = 0; i < n; i++) {
        last_reader[i] = -1;
        m->nodes[i].grad_slot = -1;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 2; k++)
            if (m->nodes[i].in[k] >= 0)
                last_reader[m->nodes[i].in[k]] = i;
    int nfree = 0, nslots = 0;
    for (int j = n - 1; j >= 0; j--) {
        node *nd = &m->nodes[j];
        for (int k = 0; k < 2; k++) {
            int a = nd->in[k];
            if (a >= 0 && last_reader[a] == j && m->nodes[a].grad_slot < 0)
                m->nodes[a].grad_slot = nfree ? free_list[--nfree] : nslots++;
        }
        if (nd->grad_slot >= 0)
            free_list[nfree++] = nd->grad_slot;
    }
    free(last_reader);
    free(free_list);
    return bufset_init(&m->grad_slots, nslots, err);
}

/* The node whose buffer holds node i's value at inference (a folded BN's
 * value is its convolution's output). */
static int infer_source(const kdc_model *m, int i)
{
    while (i >= 0 && m->nodes[i].skip_infer)
        i = m->nodes[i].in[0];
    return i;
}

/* Inference: fold each BN that is the only reader of a convolution, then
 * share buffers between values whose lifetimes do not overlap. */
static kdc_status plan_infer(kdc_model *m, kdc_error *err)
{
    int n = m->n_nodes;
    size_t folded = 0;
    for (int i = 0; i < n; i++) {
        node *nd = &m->nodes[i];
        int a = nd->in[0];
        if (nd->op == OP_BN && a >= 0 && m->nodes[a].op == OP_CONV && m->nodes[a].n_readers == 1) {
            node *cv = &m->nodes[a];
            cv->fold = 1;
            cv->folded_off = folded;
            folded += kdc_tensor_numel(&m->params.items[cv->p_w].value) + (size_t)cv->c;
            nd->skip_infer = 1;
        }
    }
    m->folded_numel = folded;
    /* a ReLU that alone reads a convolution (or its folded BN) runs inside it */
    for (int i = 0; i < n && m->be->conv_relu; i++) {
        node *nd = &m->nodes[i];
        int a = nd->in[0], cv = infer_source(m, a);
        if (nd->op == OP_RELU && cv >= 0 && m->nodes[cv].op == OP_CONV &&
            m->nodes[a].n_readers == 1 && m->nodes[cv].n_readers == 1 &&
            a != m->features_node && cv != m->features_node) {
            m->nodes[cv].relu_infer = 1;
            nd->skip_infer = 1;
        }
    }

    size_t cnt = n > 0 ? (size_t)n : 1;
    int *readers = calloc(cnt, sizeof *readers);
    int *last_use = malloc(cnt * sizeof *last_use);
    int *free_list = malloc(cnt * sizeof *free_list);
    if (!readers || !last_use || !free_list) {
        free(readers);
        free(last_use);
        free(free_list);
        return kdc_fail(err, KDC_ENOMEM, "out of memory for the memory plan");
    }
    for (int i = 0; i < n; i++)
        last_use[i] = -1;
    for (int i = 0; i < n; i++) {
        if (m->nodes[i].skip_infer)
            continue;
        for (int k = 0; k < 2; k++) {
            int a = infer_source(m, m->nodes[i].in[k]);
            if (a >= 0) {
                readers[a]++;
                last_use[a] = i;
            }
        }
    }
    last_use[m->logits_node] = n; /* outputs stay alive */
    last_use[m->features_node] = n;
    int nfree = 0, nslots = 0;
    for (int i = 0; i < n; i++) {
        node *nd = &m->nodes[i];
        if (nd->skip_infer)
            continue;
        int a = infer_source(m, nd->in[0]);
        if ((nd->op == OP_RELU || nd->op == OP_ADD) && a >= 0 && readers[a] == 1 &&
            a != m->features_node)
            nd->infer_slot = m->nodes[a].infer_slot;
        else
            nd->infer_slot = nfree ? free_list[--nfree] : nslots++;
        for (int k = 0; k < 2; k++) {
            int b = infer_source(m, nd->in[k]);
            if (b >= 0 && last_use[b] == i && m->nodes[b].infer_slot != nd->infer_slot) {
                /* an add may read the same value twice; free it once */
                int dup = 0;
                for (int q = 0; q < nfree; q++)
                    dup |= free_list[q] == m->nodes[b].infer_slot;
                if (!dup)
                    free_list[nfree++] = m->nodes[b].infer_slot;
            }
        }
    }
    free(readers);
    free(last_use);
    free(free_list);
    return bufset_init(&m->infer_slots, nslots, err);
}

/* Activation layouts: which outputs stay in the backend's blocked layout
 * (op_desc.h), so that no reorder runs around a convolution. Convolutions take
 * either layout in and give either out; the global pool takes either in;
 * BN, ReLU, ReLU6, sigmoid, add and max pool keep their input's layout; every
 * other op (linear, channel scale / concatenation / slice / shuffle, windowed
 * average pool) reads and writes NCHW. A node is blocked when its op may be,
 * its channels divide into blocks, and no constraint above says otherwise:
 * start from every candidate blocked and turn nodes to NCHW until the
 * constraints hold (each turn is final, so this ends). */
static int keeps_layout(op_kind op)
{
    return op == OP_BN || op == OP_RELU || op == OP_RELU6 || op == OP_SIGMOID || op == OP_ADD ||
           op == OP_MAXPOOL;
}

static void plan_layouts(kdc_model *m)
{
    int B = m->be->act_blk;
    for (int i = 0; i < m->n_nodes; i++) {
        node *nd = &m->nodes[i];
        nd->blk = B && (nd->op == OP_CONV || keeps_layout(nd->op)) && nd->c % B == 0 ? B : 0;
    }
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < m->n_nodes; i++) {
            node *nd = &m->nodes[i];
            for (int k = 0; k < 2; k++) {
                int a = nd->in[k];
                if (a == -3)
                    continue;
                int in_blk = a >= 0 ? m->nodes[a].blk : 0;
                if (keeps_layout(nd->op) && nd->blk != in_blk) {
                    if (nd->blk)
                        nd->blk = 0;
                    else
                        m->nodes[a].blk = 0;
                    changed = 1;
                } else if (!keeps_layout(nd->op) && nd->op != OP_CONV && nd->op != OP_GAP &&
                           in_blk) {
                    m->nodes[a].blk = 0;
                    changed = 1;
                }
            }
        }
    }
}

/* The layout of node i's output in the pass being run (the input is NCHW). */
static int act_blk(const kdc_model *m, int i)
{
    return i >= 0 && m->layout_on ? m->nodes[i].blk : 0;
}

/* -------------------------------------------------------- shape-dependent dims */

/* Fills every node's output size and op descriptors for input n x 3 x h x w. */
static kdc_status plan_dims(kdc_model *m, int n, int h, int w, kdc_error *err)
{
    if (n <= 0 || h <= 0 || w <= 0)
        return kdc_fail(err, KDC_EINVAL, "%s: bad input shape %d x 3 x %d x %d", m->arch, n, h, w);
    for (int i = 0; i < m->n_nodes; i++) {
        node *nd = &m->nodes[i];
        int ih = h, iw = w;
        if (nd->in[0] >= 0) {
            ih = m->nodes[nd->in[0]].h;
            iw = m->nodes[nd->in[0]].w;
        }
        switch (nd->op) {
        case OP_CONV: {
            kdc_conv2d_desc d = {.n = n, .c_in = nd->c_in, .h_in = ih, .w_in = iw,
                                 .c_out = nd->c, .kh = nd->k, .kw = nd->k,
                                 .stride = nd->stride, .pad = nd->pad, .groups = nd->groups,
                                 .x_blk = act_blk(m, nd->in[0]), .y_blk = act_blk(m, i)};
            if (kdc_conv2d_desc_init(&d, err))
                return kdc_error_prefix(err, "%s: input %dx%d is too small at %s: ", m->arch, h,
                                        w, nd->name);
            nd->cd = d;
            nd->h = d.h_out;
            nd->w = d.w_out;
            break;
        }
        case OP_MAXPOOL:
        case OP_AVGPOOL: {
            kdc_pool2d_desc d = {.n = n, .c = nd->c, .h_in = ih, .w_in = iw, .k = nd->k,
                                 .stride = nd->stride, .pad = nd->pad, .blk = act_blk(m, i)};
            if (kdc_pool2d_desc_init(&d, err))
                return kdc_error_prefix(err, "%s: input %dx%d is too small at a pool: ",
                                        m->arch, h, w);
            nd->pd = d;
            nd->h = d.h_out;
            nd->w = d.w_out;
            break;
        }
        case OP_GAP:
        case OP_LINEAR:
            nd->h = nd->w = 1;
            break;
        case OP_ADD: {
            const node *b = &m->nodes[nd->in[1]];
            if (b->h != ih || b->w != iw)
                return kdc_fail(err, KDC_EINVAL,
                                "%s: input %dx%d gives residual branches of %dx%d and %dx%d",
                                m->arch, h, w, ih, iw, b->h, b->w);
            nd->h = ih;
            nd->w = iw;
            break;
        }
        case OP_CONCAT: {
            const node *b = &m->nodes[nd->in[1]];
            if (b->h != ih || b->w != iw)
                return kdc_fail(err, KDC_EINVAL,
                                "%s: input %dx%d gives concatenated maps of %dx%d and %dx%d",
                                m->arch, h, w, ih, iw, b->h, b->w);
            nd->h = ih;
            nd->w = iw;
            break;
        }
        case OP_SCALE: {
            const node *b = &m->nodes[nd->in[1]];
            if (b->h != 1 || b->w != 1)
                return kdc_fail(err, KDC_EINVAL, "%s: channel scales of %dx%d, not 1x1",
                                m->arch, b->h, b->w);
            nd->h = ih;
            nd->w = iw;
            break;
        }
        default:
            nd->h = ih;
            nd->w = iw;
            break;
        }
        size_t numel;
        if (!kdc_size_mul((size_t)n * (size_t)nd->c, (size_t)nd->h * (size_t)nd->w, &numel))
            return kdc_fail(err, KDC_ENOMEM, "%s: activation size overflows", m->arch);
        nd->numel = numel;
    }
    return KDC_OK;
}

/* ----------------------------------------------------------------- creation */

static kdc_status alloc_arena(kdc_backend *be, size_t numel, size_t elem, void **out,
                              kdc_error *err)
{
    size_t bytes;
    if (!kdc_size_mul(numel ? numel : 1, elem, &bytes))
        return kdc_fail(err, KDC_ENOMEM, "parameter arena size overflows");
    kdc_status st = be->alloc(be, bytes, out, err);
    if (st)
        return st;
    return be->fill_zero(be, *out, bytes, err);
}

/* Lays the parameters out in three arenas (trainable, float buffers, int64
 * counters) and points the table's tensors into them. */
static kdc_status layout_params(kdc_model *m, kdc_error *err)
{
    kdc_backend *be = m->be;
    m->param_off = calloc((size_t)m->params.count + 1, sizeof *m->param_off);
    m->save_off = calloc((size_t)m->n_bn + 1, sizeof *m->save_off);
    m->nbt_host = calloc((size_t)m->n_bn + 1, sizeof *m->nbt_host);
    if (!m->param_off || !m->save_off || !m->nbt_host)
        return kdc_fail(err, KDC_ENOMEM, "out of memory for the parameter table");
    size_t nw = 0, nb = 0, ni = 0;
    for (int i = 0; i < m->params.count; i++) {
        kdc_tensor *t = &m->params.items[i].value;
        size_t numel = kdc_tensor_numel(t);
        if (t->dtype == KDC_I64) {
            m->param_off[i] = ni++;
        } else if (m->params.items[i].kind == KDC_PARAM_WEIGHT) {
            m->param_off[i] = nw;
            nw += numel;
        } else {
            m->param_off[i] = nb;
            nb += numel;
        }
    }
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].op == OP_BN) {
            m->save_off[m->nodes[i].bn_index] = m->save_numel;
            m->save_numel += 2 * (size_t)m->nodes[i].c;
        }
    m->weights_numel = nw;
    m->buffers_numel = nb;
    kdc_status st;
    if ((st = alloc_arena(be, nw, sizeof(float), (void **)&m->weights, err)) ||
        (st = alloc_arena(be, nb, sizeof(float), (void **)&m->buffers, err)) ||
        (st = alloc_arena(be, ni, sizeof(int64_t), (void **)&m->nbt, err)) ||
        (st = alloc_arena(be, m->save_numel, sizeof(float), (void **)&m->save_stats, err)))
        return st;
    for (int i = 0; i < m->params.count; i++) {
        kdc_tensor *t = &m->params.items[i].value;
        if (t->dtype == KDC_I64)
            t->data = m->nbt + m->param_off[i];
        else if (m->params.items[i].kind == KDC_PARAM_WEIGHT)
            t->data = m->weights + m->param_off[i];
        else
            t->data = m->buffers + m->param_off[i];
    }
    return KDC_OK;
}

/* Random initialisation on the host, node by node in graph order, then one
 * copy per arena to the device. */
static kdc_status init_params(kdc_model *m, uint64_t seed, kdc_error *err)
{
    float *hw = malloc((m->weights_numel ? m->weights_numel : 1) * sizeof *hw);
    float *hb = malloc((m->buffers_numel ? m->buffers_numel : 1) * sizeof *hb);
    if (!hw || !hb) {
        free(hw);
        free(hb);
        return kdc_fail(err, KDC_ENOMEM, "out of memory initialising %s", m->arch);
    }
    kdc_rng rng;
    kdc_rng_seed(&rng, seed);
    for (int i = 0; i < m->n_nodes; i++) {
        node *nd = &m->nodes[i];
        if (nd->op == OP_CONV) {
            /* kaiming_normal_(mode="fan_out"): fan_out = out_channels * k * k */
            double std = sqrt(2.0 / ((double)nd->c * nd->k * nd->k));
            kdc_init_normal(hw + m->param_off[nd->p_w],
                            kdc_tensor_numel(&m->params.items[nd->p_w].value), std, &rng);
            if (nd->p_b >= 0 && nd->bias_init) {
                /* nn.Conv2d.reset_parameters: bias U(+-1/sqrt(fan_in)) */
                double fan_in = (double)(nd->c_in / nd->groups) * nd->k * nd->k;
                kdc_init_uniform(hw + m->param_off[nd->p_b], (size_t)nd->c, 1.0 / sqrt(fan_in),
                                 &rng);
            } else if (nd->p_b >= 0) {
                memset(hw + m->param_off[nd->p_b], 0, (size_t)nd->c * sizeof(float));
            }
        } else if (nd->op == OP_BN) {
            for (int c = 0; c < nd->c; c++) {
                hw[m->param_off[nd->p_w] + (size_t)c] = 1.0f;
                hw[m->param_off[nd->p_b] + (size_t)c] = 0.0f;
                hb[m->param_off[nd->p_rm] + (size_t)c] = 0.0f;
                hb[m->param_off[nd->p_rv] + (size_t)c] = 1.0f;
            }
        } else if (nd->op == OP_LINEAR) {
            /* nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) gives
             * U(+-1/sqrt(fan_in)) for the weight, and the bias uses the same bound */
            double bound = 1.0 / sqrt((double)nd->c_in);
            if (nd->init == KDC_INIT_LINEAR_NORMAL)
                kdc_init_normal(hw + m->param_off[nd->p_w], (size_t)nd->c * (size_t)nd->c_in,
                                0.01, &rng);
            else
                kdc_init_uniform(hw + m->param_off[nd->p_w], (size_t)nd->c * (size_t)nd->c_in,
                                 bound, &rng);
            if (nd->init == KDC_INIT_LINEAR_ZERO_BIAS || nd->init == KDC_INIT_LINEAR_NORMAL)
                memset(hw + m->param_off[nd->p_b], 0, (size_t)nd->c * sizeof(float));
            else
                kdc_init_uniform(hw + m->param_off[nd->p_b], (size_t)nd->c, bound, &rng);
        }
    }
    kdc_backend *be = m->be;
    kdc_status st = be->copy_h2d(be, m->weights, hw, m->weights_numel * sizeof(float), err);
    if (!st)
        st = be->copy_h2d(be, m->buffers, hb, m->buffers_numel * sizeof(float), err);
    free(hw);
    free(hb);
    return st;
}

kdc_status kdc_model_begin(const char *arch, int num_classes, kdc_backend *be, kdc_model **out,
                           kdc_error *err)
{
    *out = NULL;
    if (!arch || !be)
        return kdc_fail(err, KDC_EINVAL, "model: no architecture or backend given");
    if (num_classes <= 0)
        return kdc_fail(err, KDC_EINVAL, "%s: num_classes must be positive, got %d", arch,
                        num_classes);
    kdc_model *m = calloc(1, sizeof *m);
    if (!m)
        return kdc_fail(err, KDC_ENOMEM, "out of memory creating %s", arch);
    snprintf(m->arch, sizeof m->arch, "%s", arch);
    m->num_classes = num_classes;
    m->be = be;
    *out = m;
    return KDC_OK;
}

kdc_status kdc_model_finish(kdc_model *m, uint64_t seed, kdc_error *err)
{
    kdc_status st = kdc_mb_status(m, err);
    if (!st && m->n_nodes >= 2) {
        m->logits_node = m->n_nodes - 1;
        m->features_node = m->nodes[m->logits_node].in[0];
        if (m->nodes[m->logits_node].op != OP_LINEAR)
            st = kdc_fail(err, KDC_EINVAL, "%s: graph does not end in a linear layer", m->arch);
    } else if (!st) {
        st = kdc_fail(err, KDC_EINVAL, "%s: empty graph", m->arch);
    }
    if (st)
        return st;
    for (int i = 0; i < m->n_nodes; i++)
        for (int k = 0; k < 2; k++)
            if (m->nodes[i].in[k] >= 0)
                m->nodes[m->nodes[i].in[k]].n_readers++;
    if (!(st = layout_params(m, err)) && !(st = init_params(m, seed, err)) &&
        !(st = plan_train_buffers(m, err)) && !(st = plan_grad_slots(m, err)))
        st = plan_infer(m, err);
    plan_layouts(m);
    return st;
}

void kdc_model_free(kdc_model *m)
{
    if (!m)
        return;
    kdc_backend *be = m->be;
    bufset_free(be, &m->train_bufs);
    bufset_free(be, &m->grad_slots);
    bufset_free(be, &m->infer_slots);
    void *arenas[] = {m->weights, m->buffers, m->nbt, m->save_stats, m->scratch, m->folded};
    for (size_t i = 0; i < sizeof arenas / sizeof arenas[0]; i++)
        if (arenas[i])
            be->free(be, arenas[i]);
    for (int i = 0; i < m->params.count; i++)
        free((char *)m->params.items[i].name);
    free(m->params.items);
    for (int i = 0; i < m->n_nodes; i++)
        free(m->nodes[i].name);
    free(m->nodes);
    free(m->param_off);
    free(m->save_off);
    free(m->nbt_host);
    free(m->bn_sums);
    free(m->bn_count);
    free(m);
}

/* ---------------------------------------------------------------- accessors */

const char *kdc_model_arch(const kdc_model *m) { return m->arch; }
int kdc_model_num_classes(const kdc_model *m) { return m->num_classes; }
int kdc_model_feature_dim(const kdc_model *m) { return m->nodes[m->features_node].c; }
size_t kdc_model_param_count(const kdc_model *m) { return m->weights_numel; }
kdc_backend *kdc_model_backend(const kdc_model *m) { return m->be; }

int kdc_model_blocked_nodes(const kdc_model *m)
{
    int k = 0;
    for (int i = 0; i < m->n_nodes; i++)
        k += m->nodes[i].blk != 0;
    return k;
}
kdc_param_table *kdc_model_params(kdc_model *m) { return &m->params; }

float *kdc_model_flat_weights(kdc_model *m, size_t *numel)
{
    if (numel)
        *numel = m->weights_numel;
    return m->weights;
}

static float *pw(kdc_model *m, int p)
{
    return p < 0 ? NULL : (float *)m->params.items[p].value.data;
}

/* ------------------------------------------------------------ training path */

/* Forward of the ops that need no state (the same in training and
 * inference): ReLU6, sigmoid, channel scale / concatenation / slice /
 * shuffle, average pool. in1 is the second input (scale, concatenation). */
static kdc_status forward_plain(kdc_model *m, const node *nd, int n, const float *in,
                                const float *in1, float *y, kdc_error *err)
{
    kdc_backend *be = m->be;
    int hw = nd->h * nd->w;
    switch (nd->op) {
    case OP_RELU6:
        return be->relu6_forward(be, nd->numel, in, y, err);
    case OP_SIGMOID:
        return be->sigmoid_forward(be, nd->numel, in, y, err);
    case OP_SCALE:
        return be->channel_scale_forward(be, n, nd->c, hw, in, in1, y, err);
    case OP_CONCAT: {
        int c0 = m->nodes[nd->in[0]].c;
        kdc_chan_copy_desc a = {.n = n, .hw = hw, .c = c0, .x_c = c0, .x_off = 0, .y_c = nd->c,
                                .y_off = 0};
        kdc_chan_copy_desc b = {.n = n, .hw = hw, .c = nd->c - c0, .x_c = nd->c - c0,
                                .x_off = 0, .y_c = nd->c, .y_off = c0};
        kdc_status st = be->channel_copy(be, &a, in, y, err);
        return st ? st : be->channel_copy(be, &b, in1, y, err);
    }
    case OP_SLICE: {
        kdc_chan_copy_desc d = {.n = n, .hw = hw, .c = nd->c, .x_c = nd->c_in, .x_off = nd->off,
                                .y_c = nd->c, .y_off = 0};
        return be->channel_copy(be, &d, in, y, err);
    }
    case OP_SHUFFLE:
        return be->channel_shuffle(be, n, nd->c, nd->groups, hw, in, y, err);
    case OP_AVGPOOL:
        return be->avgpool2d_forward(be, &nd->pd, in, y, err);
    default:
        return kdc_fail(err, KDC_EINVAL, "node kind %d has no plain forward", (int)nd->op);
    }
}

/* The global average pool, from its input's layout. */
static kdc_status gap_forward(kdc_model *m, const node *nd, int n, const float *in, float *y,
                              kdc_error *err)
{
    kdc_backend *be = m->be;
    int hw = m->nodes[nd->in[0]].h * m->nodes[nd->in[0]].w, blk = act_blk(m, nd->in[0]);
    return blk ? be->avgpool_global_forward_blk(be, n, nd->c, hw, blk, in, y, err)
               : be->avgpool_global_forward(be, n, nd->c, hw, in, y, err);
}

static kdc_status gap_backward(kdc_model *m, const node *nd, int n, const float *dy, float *dx,
                               kdc_error *err)
{
    kdc_backend *be = m->be;
    int hw = m->nodes[nd->in[0]].h * m->nodes[nd->in[0]].w, blk = act_blk(m, nd->in[0]);
    return blk ? be->avgpool_global_backward_blk(be, n, nd->c, hw, blk, dy, dx, err)
               : be->avgpool_global_backward(be, n, nd->c, hw, dy, dx, err);
}

static const float *train_act(const kdc_model *m, const float *x, int i)
{
    return i == KDC_MB_INPUT ? x : m->train_bufs.ptr[m->nodes[i].train_buf];
}

/* ---- synchronised batch statistics (SyncBatchNorm) ---- */

kdc_status kdc_model_set_bn_sum(kdc_model *m, kdc_model_sum_fn sum, void *ctx, kdc_error *err)
{
    kdc_backend *be = m->be;
    if (sum && !(be->batchnorm_stats && be->batchnorm_apply && be->batchnorm_backward_sums &&
                 be->batchnorm_backward_apply))
        return kdc_fail(err, KDC_EUNSUPPORTED,
                        "%s: synchronised batch statistics are not available on the %s backend",
                        m->arch, be->name);
    int widest = 0;
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].op == OP_BN && m->nodes[i].c > widest)
            widest = m->nodes[i].c;
    if (sum && !m->bn_sums) {
        m->bn_sums = malloc((4 * (size_t)widest + 1) * sizeof *m->bn_sums);
        m->bn_count = calloc((size_t)m->n_bn + 1, sizeof *m->bn_count);
        if (!m->bn_sums || !m->bn_count)
            return kdc_fail(err, KDC_ENOMEM, "out of memory");
    }
    m->bn_sum = sum;
    m->bn_sum_ctx = ctx;
    return KDC_OK;
}

/* Train-mode BN with the statistics summed through m->bn_sum: this
 * process's [sum x, sum x^2, count] -> everyone's -> normalise. */
static kdc_status bn_forward_summed(kdc_model *m, const node *nd, const kdc_bn_desc *d,
                                    const float *in, float *y, kdc_error *err)
{
    kdc_backend *be = m->be;
    size_t c = (size_t)nd->c;
    double *sums = m->bn_sums;
    float *sm = m->save_stats + m->save_off[nd->bn_index];
    kdc_status st = be->batchnorm_stats(be, d, in, sums, err);
    sums[2 * c] = (double)d->n * d->hw;
    if (!st && (st = m->bn_sum(m->bn_sum_ctx, sums, 2 * c + 1, err)))
        kdc_error_prefix(err, "batch statistics: ");
    if (st)
        return st;
    m->bn_count[nd->bn_index] = sums[2 * c];
    return be->batchnorm_apply(be, d, in, pw(m, nd->p_w), pw(m, nd->p_b), sums, sums[2 * c],
                               pw(m, nd->p_rm), pw(m, nd->p_rv), sm, sm + c, y, err);
}

/* Backward of bn_forward_summed for S streams (dy and dx: S blocks of
 * nd->numel): each stream's [sum dy, sum dy * xhat] summed through m->bn_sum
 * in one call; the parameter gradients stay this process's (the gradient
 * mean reduces them, as SyncBatchNorm under DDP). */
static kdc_status bn_backward_summed(kdc_model *m, const node *nd, const kdc_bn_desc *d, int S,
                                     const float *in, const float *dy, float *dx, float *const *gw,
                                     float *const *gb, kdc_error *err)
{
    kdc_backend *be = m->be;
    size_t c = (size_t)nd->c;
    double *sums = m->bn_sums;
    const float *sm = m->save_stats + m->save_off[nd->bn_index];
    kdc_status st = KDC_OK;
    for (int s = 0; s < S && !st; s++)
        st = be->batchnorm_backward_sums(be, d, in, dy + (size_t)s * nd->numel, sm, sm + c,
                                         sums + 2 * c * (size_t)s, gw[s], gb[s], err);
    if (!st && (st = m->bn_sum(m->bn_sum_ctx, sums, 2 * c * (size_t)S, err)))
        kdc_error_prefix(err, "batch-norm gradient sums: ");
    for (int s = 0; s < S && !st; s++)
        st = be->batchnorm_backward_apply(be, d, in, dy + (size_t)s * nd->numel, pw(m, nd->p_w),
                                          sm, sm + c, sums + 2 * c * (size_t)s,
                                          m->bn_count[nd->bn_index], dx + (size_t)s * nd->numel,
                                          err);
    return st;
}

kdc_status kdc_model_forward(kdc_model *m, const float *x, int n, int h, int w, int train,
                             const float **logits, const float **features, kdc_error *err)
{
    kdc_backend *be = m->be;
    /* synchronised statistics run in NCHW (batchnorm.h's phases) */
    m->layout_on = !(train && m->bn_sum);
    kdc_status st = plan_dims(m, n, h, w, err);
    if (st)
        return st;
    bufset *bs = &m->train_bufs;
    memset(bs->need, 0, (size_t)bs->count * sizeof *bs->need);
    for (int i = 0; i < m->n_nodes; i++) {
        size_t *need = &bs->need[m->nodes[i].train_buf];
        if (m->nodes[i].numel > *need)
            *need = m->nodes[i].numel;
    }
    if ((st = bufset_grow(be, bs, err)))
        return st;
    /* a failed or eval forward leaves nothing for backward */
    m->trained_n = m->trained_h = m->trained_w = 0;

    for (int i = 0; i < m->n_nodes && !st; i++) {
        node *nd = &m->nodes[i];
        const float *in = train_act(m, x, nd->in[0]);
        float *y = bs->ptr[nd->train_buf];
        switch (nd->op) {
        case OP_CONV:
            st = be->conv2d_forward(be, &nd->cd, in, pw(m, nd->p_w), pw(m, nd->p_b), y, err);
            break;
        case OP_BN: {
            kdc_bn_desc d = {.n = n, .c = nd->c, .hw = nd->h * nd->w, .eps = BN_EPS,
                             .momentum = BN_MOMENTUM, .blk = act_blk(m, i)};
            if (train && m->bn_sum) {
                st = bn_forward_summed(m, nd, &d, in, y, err);
            } else if (train) {
                float *sm = m->save_stats + m->save_off[nd->bn_index];
                st = be->batchnorm_forward_train(be, &d, in, pw(m, nd->p_w), pw(m, nd->p_b),
                                                 pw(m, nd->p_rm), pw(m, nd->p_rv), sm, sm + nd->c,
                                                 y, err);
            } else {
                st = be->batchnorm_forward_eval(be, &d, in, pw(m, nd->p_w), pw(m, nd->p_b),
                                                pw(m, nd->p_rm), pw(m, nd->p_rv), y, err);
            }
            break;
        }
        case OP_RELU:
            st = be->relu_forward(be, nd->numel, in, y, err);
            break;
        case OP_MAXPOOL:
            st = be->maxpool2d_forward(be, &nd->pd, in, y, err);
            break;
        case OP_GAP:
            st = gap_forward(m, nd, n, in, y, err);
            break;
        case OP_LINEAR:
            st = be->linear_forward(be, n, nd->c_in, nd->c, in, pw(m, nd->p_w), pw(m, nd->p_b), y,
                                    err);
            break;
        case OP_ADD:
            st = be->add(be, nd->numel, in, train_act(m, x, nd->in[1]), y, err);
            break;
        default:
            st = forward_plain(m, nd, n, in, nd->in[1] != -3 ? train_act(m, x, nd->in[1]) : NULL,
                               y, err);
            break;
        }
        if (st)
            kdc_error_prefix(err, "%s forward, node %d%s%s: ", m->arch, i, nd->name ? " " : "",
                             nd->name ? nd->name : "");
    }
    if (st)
        return st;
    if (train && m->n_bn > 0) {
        /* num_batches_tracked += 1 for every BN, as PyTorch does in train mode */
        size_t bytes = (size_t)m->n_bn * sizeof(int64_t);
        if ((st = be->copy_d2h(be, m->nbt_host, m->nbt, bytes, err)))
            return st;
        for (int b = 0; b < m->n_bn; b++)
            m->nbt_host[b]++;
        if ((st = be->copy_h2d(be, m->nbt, m->nbt_host, bytes, err)))
            return st;
    }
    if (train) {
        /* training changes the running statistics (and an optimiser step on the
         * weights usually follows): the next inference call refolds */
        m->folded_valid = 0;
        m->trained_layout = m->layout_on;
        m->train_input = x;
        m->trained_n = n;
        m->trained_h = h;
        m->trained_w = w;
    }
    *logits = bs->ptr[m->nodes[m->logits_node].train_buf];
    if (features)
        *features = bs->ptr[m->nodes[m->features_node].train_buf];
    return KDC_OK;
}

kdc_status kdc_model_grads_alloc(kdc_model *m, kdc_grad_set **out, kdc_error *err)
{
    *out = NULL;
    kdc_grad_set *g = calloc(1, sizeof *g);
    if (!g)
        return kdc_fail(err, KDC_ENOMEM, "out of memory for a gradient set");
    g->count = m->params.count;
    g->grad = calloc((size_t)g->count + 1, sizeof *g->grad);
    if (!g->grad) {
        free(g);
        return kdc_fail(err, KDC_ENOMEM, "out of memory for a gradient set");
    }
    kdc_status st = alloc_arena(m->be, m->weights_numel, sizeof(float), (void **)&g->flat, err);
    if (st) {
        free(g->grad);
        free(g);
        return kdc_error_prefix(err, "gradient set of %s: ", m->arch);
    }
    g->flat_numel = m->weights_numel;
    for (int i = 0; i < g->count; i++) {
        const kdc_param *p = &m->params.items[i];
        g->grad[i] = p->value;
        g->grad[i].data = p->kind == KDC_PARAM_WEIGHT ? g->flat + m->param_off[i] : NULL;
    }
    *out = g;
    return KDC_OK;
}

void kdc_model_grads_free(kdc_model *m, kdc_grad_set *g)
{
    if (!g)
        return;
    if (g->flat)
        m->be->free(m->be, g->flat);
    free(g->grad);
    free(g);
}

/* Where the gradient flowing into value `a` is written: straight into its
 * buffer for the first contribution, into scratch (then added) for later ones. */
typedef struct grad_target {
    float *dst;   /* where the op writes; NULL: nobody needs it */
    float *accum; /* non-NULL: add dst into accum afterwards */
} grad_target;

static grad_target grad_target_for(kdc_model *m, int a, unsigned char *ready, float *dinput,
                                   int *dinput_ready)
{
    grad_target t = {NULL, NULL};
    float *home = a == KDC_MB_INPUT ? dinput : m->grad_slots.ptr[m->nodes[a].grad_slot];
    int *flag = a == KDC_MB_INPUT ? dinput_ready : NULL;
    if (!home)
        return t; /* the caller did not ask for the input gradient */
    int is_ready = flag ? *flag : ready[a];
    if (!is_ready) {
        t.dst = home;
        if (flag)
            *flag = 1;
        else
            ready[a] = 1;
    } else {
        t.dst = m->scratch;
        t.accum = home;
    }
    return t;
}

static kdc_status finish_target(kdc_model *m, const grad_target *t, size_t n, kdc_error *err)
{
    if (!t->accum)
        return KDC_OK;
    return m->be->add(m->be, n, t->accum, t->dst, t->accum, err);
}

/* Backward of the one-input plain ops into dst (in_numel floats), one stream. */
static kdc_status backward_plain_one(kdc_model *m, const node *nd, int n, const float *dy,
                                     float *dst, size_t in_numel, kdc_error *err)
{
    kdc_backend *be = m->be;
    const float *own = m->train_bufs.ptr[nd->train_buf];
    int hw = nd->h * nd->w;
    switch (nd->op) {
    case OP_RELU6:
        return be->relu6_backward(be, nd->numel, own, dy, dst, err);
    case OP_SIGMOID:
        return be->sigmoid_backward(be, nd->numel, own, dy, dst, err);
    case OP_SLICE: {
        /* the channels outside the slice get no gradient from it */
        kdc_status st = be->fill_zero(be, dst, in_numel * sizeof(float), err);
        kdc_chan_copy_desc d = {.n = n, .hw = hw, .c = nd->c, .x_c = nd->c, .x_off = 0,
                                .y_c = nd->c_in, .y_off = nd->off};
        return st ? st : be->channel_copy(be, &d, dy, dst, err);
    }
    case OP_SHUFFLE: /* the inverse permutation is the shuffle with c / groups groups */
        return be->channel_shuffle(be, n, nd->c, nd->c / nd->groups, hw, dy, dst, err);
    case OP_AVGPOOL:
        return be->avgpool2d_backward(be, &nd->pd, dy, dst, err);
    default:
        return kdc_fail(err, KDC_EINVAL, "node kind %d has no plain backward", (int)nd->op);
    }
}

/* These ops have no dual form: with S streams each stream runs the
 * single-stream op on its own part of dy and dst (stream s starts at s * numel),
 * since their forward tensors exist only once. */
static kdc_status backward_plain(kdc_model *m, const node *nd, int n, int S, const float *dy,
                                 float *dst, size_t in_numel, kdc_error *err)
{
    kdc_status st = KDC_OK;
    for (int s = 0; s < S && !st; s++)
        st = backward_plain_one(m, nd, n, dy + (size_t)s * nd->numel, dst + (size_t)s * in_numel,
                                in_numel, err);
    return st;
}

/* Concatenation and channel scale: each input gets its own gradient, written
 * (or accumulated) one input at a time so that one scratch buffer suffices. */
static kdc_status backward_two_inputs(kdc_model *m, const node *nd, int n, int S,
                                      const float *dy, unsigned char *ready, float *dinput,
                                      int *dinput_ready, kdc_error *err)
{
    kdc_backend *be = m->be;
    int hw = nd->h * nd->w;
    kdc_status st = KDC_OK;
    for (int k = 0; k < 2 && !st; k++) {
        int a = nd->in[k];
        grad_target tk = grad_target_for(m, a, ready, dinput, dinput_ready);
        if (!tk.dst)
            continue;
        size_t numel = m->nodes[a].numel;
        for (int s = 0; s < S && !st; s++) {
            const float *dys = dy + (size_t)s * nd->numel;
            float *dst = tk.dst + (size_t)s * numel;
            if (nd->op == OP_CONCAT) {
                int c0 = m->nodes[nd->in[0]].c, ck = m->nodes[a].c;
                kdc_chan_copy_desc d = {.n = n, .hw = hw, .c = ck, .x_c = nd->c,
                                        .x_off = k ? c0 : 0, .y_c = ck, .y_off = 0};
                st = be->channel_copy(be, &d, dys, dst, err);
            } else {
                const float *x = m->train_bufs.ptr[m->nodes[nd->in[0]].train_buf];
                const float *sc = m->train_bufs.ptr[m->nodes[nd->in[1]].train_buf];
                st = be->channel_scale_backward(be, n, nd->c, hw, x, sc, dys, k ? NULL : dst,
                                                k ? dst : NULL, err);
            }
        }
        if (!st)
            st = finish_target(m, &tk, numel * S, err);
    }
    return st;
}

/* Both backends' dual ops present? (backend.h: they may be NULL.) */
static int has_dual_ops(const kdc_backend *be)
{
    return be->conv2d_backward_dual && be->batchnorm_backward_dual && be->relu_backward_dual &&
           be->maxpool2d_backward_dual && be->linear_backward_dual;
}

/* The backward pass for S = 1 or 2 gradient streams. With S = 2 every gradient
 * buffer holds stream 0 then stream 1 (a batch of 2n), the data-gradient ops are
 * the backend's dual ops, and parameter gradients go to g[0] and g[1]. */
static kdc_status backward_streams(kdc_model *m, int S, const float *dlogits,
                                   const float *const *dfeatures, kdc_grad_set *const *g,
                                   float *dinput, kdc_error *err)
{
    kdc_backend *be = m->be;
    int n = m->trained_n;
    m->layout_on = m->trained_layout;
    kdc_status st = plan_dims(m, n, m->trained_h, m->trained_w, err);
    if (st)
        return st;
    bufset *gs = &m->grad_slots;
    memset(gs->need, 0, (size_t)gs->count * sizeof *gs->need);
    size_t scratch_need = (size_t)n * 3 * (size_t)m->trained_h * (size_t)m->trained_w;
    for (int i = 0; i < m->n_nodes; i++) {
        node *nd = &m->nodes[i];
        if (nd->grad_slot >= 0 && nd->numel > gs->need[nd->grad_slot])
            gs->need[nd->grad_slot] = nd->numel;
        if (nd->numel > scratch_need)
            scratch_need = nd->numel;
    }
    for (int i = 0; i < gs->count; i++)
        gs->need[i] *= (size_t)S;
    if ((st = bufset_grow(be, gs, err)) || (st = grow_scratch(m, scratch_need * S, err)))
        return st;

    unsigned char *ready = calloc((size_t)m->n_nodes, 1);
    if (!ready)
        return kdc_fail(err, KDC_ENOMEM, "out of memory in backward");
    int dinput_ready = 0;
    for (int i = m->n_nodes - 1; i >= 0 && !st; i--) {
        node *nd = &m->nodes[i];
        const float *dy;
        if (i == m->logits_node) {
            dy = dlogits;
        } else {
            if (!ready[i]) {
                st = kdc_fail(err, KDC_EINVAL, "%s backward: node %d gets no gradient", m->arch,
                              i);
                break;
            }
            dy = gs->ptr[nd->grad_slot];
            for (int s = 0; s < S && !st && i == m->features_node; s++)
                if (dfeatures[s])
                    st = be->axpy(be, nd->numel, 1.0f, dfeatures[s],
                                  gs->ptr[nd->grad_slot] + (size_t)s * nd->numel, err);
        }
        if (st)
            break;
        size_t in_numel = nd->in[0] >= 0 ? m->nodes[nd->in[0]].numel
                                         : (size_t)n * 3 * (size_t)m->trained_h * m->trained_w;
        const float *in = nd->in[0] >= 0 ? train_act(m, NULL, nd->in[0]) : m->train_input;
        grad_target t = {NULL, NULL};
        if (nd->op != OP_ADD && nd->op != OP_CONCAT && nd->op != OP_SCALE)
            t = grad_target_for(m, nd->in[0], ready, dinput, &dinput_ready);
        float *dx_or_scratch = t.dst ? t.dst : m->scratch;
        float *gw0 = nd->p_w >= 0 ? (float *)g[0]->grad[nd->p_w].data : NULL;
        float *gb0 = nd->p_b >= 0 ? (float *)g[0]->grad[nd->p_b].data : NULL;
        float *gw1 = S == 2 && nd->p_w >= 0 ? (float *)g[1]->grad[nd->p_w].data : NULL;
        float *gb1 = S == 2 && nd->p_b >= 0 ? (float *)g[1]->grad[nd->p_b].data : NULL;
        switch (nd->op) {
        case OP_CONV:
            if (S == 2 && nd->p_b < 0) {
                st = be->conv2d_backward_dual(be, &nd->cd, in, pw(m, nd->p_w), dy, t.dst, gw0,
                                              gw1, err);
                break;
            }
            /* one stream, or a biased convolution (VGG), whose dual op has no bias
             * gradient: a pass per stream */
            for (int s = 0; s < S && !st; s++)
                st = be->conv2d_backward(be, &nd->cd, in, pw(m, nd->p_w), dy + s * nd->numel,
                                         t.dst ? t.dst + s * in_numel : NULL, s ? gw1 : gw0,
                                         s ? gb1 : gb0, err);
            break;
        case OP_BN: {
            kdc_bn_desc d = {.n = n, .c = nd->c, .hw = nd->h * nd->w, .eps = BN_EPS,
                             .momentum = BN_MOMENTUM, .blk = act_blk(m, i)};
            const float *sm = m->save_stats + m->save_off[nd->bn_index];
            float *gws[2] = {gw0, gw1}, *gbs[2] = {gb0, gb1};
            if (m->bn_sum) {
                st = bn_backward_summed(m, nd, &d, S, in, dy, dx_or_scratch, gws, gbs, err);
                break;
            }
            st = S == 1 ? be->batchnorm_backward(be, &d, in, dy, pw(m, nd->p_w), sm, sm + nd->c,
                                                 dx_or_scratch, gw0, gb0, err)
                        : be->batchnorm_backward_dual(be, &d, in, dy, pw(m, nd->p_w), sm,
                                                      sm + nd->c, dx_or_scratch, gw0, gb0, gw1,
                                                      gb1, err);
            break;
        }
        case OP_RELU: {
            const float *y = m->train_bufs.ptr[nd->train_buf];
            st = S == 1 ? be->relu_backward(be, nd->numel, y, dy, dx_or_scratch, err)
                        : be->relu_backward_dual(be, nd->numel, y, dy, dx_or_scratch, err);
            break;
        }
        case OP_MAXPOOL: {
            const float *y = m->train_bufs.ptr[nd->train_buf];
            st = S == 1 ? be->maxpool2d_backward(be, &nd->pd, in, y, dy, dx_or_scratch, err)
                        : be->maxpool2d_backward_dual(be, &nd->pd, in, y, dy, dx_or_scratch, err);
            break;
        }
        case OP_GAP: /* the same op on a batch of S * n */
            st = gap_backward(m, nd, S * n, dy, dx_or_scratch, err);
            break;
        case OP_LINEAR:
            st = S == 1 ? be->linear_backward(be, n, nd->c_in, nd->c, in, pw(m, nd->p_w), dy,
                                              t.dst, gw0, gb0, err)
                        : be->linear_backward_dual(be, n, nd->c_in, nd->c, in, pw(m, nd->p_w),
                                                   dy, t.dst, gw0, gb0, gw1, gb1, err);
            break;
        case OP_ADD:
            for (int k = 0; k < 2 && !st; k++) {
                grad_target tk = grad_target_for(m, nd->in[k], ready, dinput, &dinput_ready);
                if (!tk.dst)
                    continue;
                if (tk.accum)
                    st = be->add(be, nd->numel * S, tk.accum, dy, tk.accum, err);
                else
                    st = be->copy_d2d(be, tk.dst, dy, nd->numel * S * sizeof(float), err);
            }
            break;
        case OP_CONCAT:
        case OP_SCALE:
            st = backward_two_inputs(m, nd, n, S, dy, ready, dinput, &dinput_ready, err);
            break;
        default:
            st = t.dst ? backward_plain(m, nd, n, S, dy, t.dst, in_numel, err) : KDC_OK;
            break;
        }
        if (!st && t.dst)
            st = finish_target(m, &t, in_numel * S, err);
        if (st)
            kdc_error_prefix(err, "%s backward, node %d%s%s: ", m->arch, i, nd->name ? " " : "",
                             nd->name ? nd->name : "");
    }
    free(ready);
    return st;
}

static kdc_status check_backward(const kdc_model *m, const float *dlogits, const kdc_grad_set *g,
                                 kdc_error *err)
{
    if (!m->trained_n)
        return kdc_fail(err, KDC_EINVAL,
                        "%s backward: the last forward was not a successful train-mode forward",
                        m->arch);
    if (!dlogits || !g || g->count != m->params.count || g->flat_numel != m->weights_numel)
        return kdc_fail(err, KDC_EINVAL, "%s backward: missing dlogits or foreign gradient set",
                        m->arch);
    return KDC_OK;
}

kdc_status kdc_model_backward(kdc_model *m, const float *dlogits, const float *dfeatures,
                              kdc_grad_set *g, float *dinput, kdc_error *err)
{
    kdc_status st = check_backward(m, dlogits, g, err);
    if (st)
        return st;
    const float *df[1] = {dfeatures};
    kdc_grad_set *gg[1] = {g};
    return backward_streams(m, 1, dlogits, df, gg, dinput, err);
}

kdc_status kdc_model_backward_dual(kdc_model *m, const float *dlogits2, const float *dfeatures0,
                                   const float *dfeatures1, kdc_grad_set *g0, kdc_grad_set *g1,
                                   kdc_error *err)
{
    kdc_status st;
    if ((st = check_backward(m, dlogits2, g0, err)) || (st = check_backward(m, dlogits2, g1, err)))
        return st;
    if (g0 == g1)
        return kdc_fail(err, KDC_EINVAL, "%s backward: the two streams need two gradient sets",
                        m->arch);
    if (!has_dual_ops(m->be)) { /* two single passes: the same gradients */
        size_t nl = (size_t)m->trained_n * (size_t)m->num_classes;
        if ((st = kdc_model_backward(m, dlogits2, dfeatures0, g0, NULL, err)))
            return st;
        return kdc_model_backward(m, dlogits2 + nl, dfeatures1, g1, NULL, err);
    }
    const float *df[2] = {dfeatures0, dfeatures1};
    kdc_grad_set *gg[2] = {g0, g1};
    return backward_streams(m, 2, dlogits2, df, gg, NULL, err);
}

/* ----------------------------------------------------------- inference path */

kdc_status kdc_model_refold(kdc_model *m, kdc_error *err)
{
    kdc_backend *be = m->be;
    kdc_status st = KDC_OK;
    m->folded_valid = 0;
    if (!m->folded && m->folded_numel &&
        (st = alloc_arena(be, m->folded_numel, sizeof(float), (void **)&m->folded, err)))
        return st;
    float *host = malloc((m->folded_numel ? m->folded_numel : 1) * sizeof *host);
    float *hw = malloc((m->weights_numel ? m->weights_numel : 1) * sizeof *hw);
    float *hb = malloc((m->buffers_numel ? m->buffers_numel : 1) * sizeof *hb);
    if (!host || !hw || !hb) {
        st = kdc_fail(err, KDC_ENOMEM, "out of memory folding %s", m->arch);
        goto done;
    }
    if ((st = be->copy_d2h(be, hw, m->weights, m->weights_numel * sizeof(float), err)) ||
        (st = be->copy_d2h(be, hb, m->buffers, m->buffers_numel * sizeof(float), err)))
        goto done;
    for (int i = 0; i < m->n_nodes; i++) {
        node *bn = &m->nodes[i];
        if (!bn->skip_infer || bn->op != OP_BN)
            continue;
        node *cv = &m->nodes[bn->in[0]];
        size_t per_out = (size_t)(cv->c_in / cv->groups) * (size_t)cv->k * (size_t)cv->k;
        const float *w = hw + m->param_off[cv->p_w];
        const float *gamma = hw + m->param_off[bn->p_w], *beta = hw + m->param_off[bn->p_b];
        const float *mean = hb + m->param_off[bn->p_rm], *var = hb + m->param_off[bn->p_rv];
        float *fw = host + cv->folded_off, *fb = fw + per_out * (size_t)cv->c;
        const float *cb = cv->p_b >= 0 ? hw + m->param_off[cv->p_b] : NULL;
        for (int o = 0; o < cv->c; o++) {
            /* eval BN: y = (x - mean) * gamma / sqrt(var + eps) + beta, with
             * x = w * in (+ the conv's own bias, VGG) */
            double s = (double)gamma[o] / sqrt((double)var[o] + (double)BN_EPS);
            for (size_t j = 0; j < per_out; j++)
                fw[(size_t)o * per_out + j] = (float)(w[(size_t)o * per_out + j] * s);
            double b0 = cb ? (double)cb[o] : 0.0;
            fb[o] = (float)((double)beta[o] + (b0 - (double)mean[o]) * s);
        }
    }
    if (m->folded_numel &&
        (st = be->copy_h2d(be, m->folded, host, m->folded_numel * sizeof(float), err)))
        goto done;
    m->folded_valid = 1;
done:
    free(host);
    free(hw);
    free(hb);
    return st;
}

static const float *infer_act(const kdc_model *m, const float *x, int i)
{
    i = infer_source(m, i);
    return i == KDC_MB_INPUT ? x : m->infer_slots.ptr[m->nodes[i].infer_slot];
}

kdc_status kdc_model_infer(kdc_model *m, const float *x, int n, int h, int w,
                           const float **logits, const float **features, kdc_error *err)
{
    kdc_backend *be = m->be;
    kdc_status st;
    if (!m->folded_valid && (st = kdc_model_refold(m, err)))
        return st;
    m->layout_on = 1;
    if ((st = plan_dims(m, n, h, w, err)))
        return st;
    /* plan_dims overwrote the dims backward would use; backward replans */
    bufset *bs = &m->infer_slots;
    memset(bs->need, 0, (size_t)bs->count * sizeof *bs->need);
    for (int i = 0; i < m->n_nodes; i++) {
        const node *nd = &m->nodes[i];
        if (!nd->skip_infer && nd->numel > bs->need[nd->infer_slot])
            bs->need[nd->infer_slot] = nd->numel;
    }
    if ((st = bufset_grow(be, bs, err)))
        return st;
    for (int i = 0; i < m->n_nodes && !st; i++) {
        node *nd = &m->nodes[i];
        if (nd->skip_infer)
            continue;
        const float *in = infer_act(m, x, nd->in[0]);
        float *y = bs->ptr[nd->infer_slot];
        switch (nd->op) {
        case OP_CONV: {
            kdc_conv2d_desc d = nd->cd;
            d.relu = nd->relu_infer;
            if (nd->fold) {
                const float *fw = m->folded + nd->folded_off;
                size_t wn = kdc_tensor_numel(&m->params.items[nd->p_w].value);
                st = be->conv2d_forward(be, &d, in, fw, fw + wn, y, err);
            } else {
                st = be->conv2d_forward(be, &d, in, pw(m, nd->p_w), pw(m, nd->p_b), y, err);
            }
            break;
        }
        case OP_BN: {
            kdc_bn_desc d = {.n = n, .c = nd->c, .hw = nd->h * nd->w, .eps = BN_EPS,
                             .momentum = BN_MOMENTUM, .blk = act_blk(m, i)};
            st = be->batchnorm_forward_eval(be, &d, in, pw(m, nd->p_w), pw(m, nd->p_b),
                                            pw(m, nd->p_rm), pw(m, nd->p_rv), y, err);
            break;
        }
        case OP_RELU:
            st = be->relu_forward(be, nd->numel, in, y, err);
            break;
        case OP_MAXPOOL:
            st = be->maxpool2d_forward(be, &nd->pd, in, y, err);
            break;
        case OP_GAP:
            st = gap_forward(m, nd, n, in, y, err);
            break;
        case OP_LINEAR:
            st = be->linear_forward(be, n, nd->c_in, nd->c, in, pw(m, nd->p_w), pw(m, nd->p_b), y,
                                    err);
            break;
        case OP_ADD:
            st = be->add(be, nd->numel, in, infer_act(m, x, nd->in[1]), y, err);
            break;
        default:
            st = forward_plain(m, nd, n, in, nd->in[1] != -3 ? infer_act(m, x, nd->in[1]) : NULL,
                               y, err);
            break;
        }
        if (st)
            kdc_error_prefix(err, "%s inference, node %d%s%s: ", m->arch, i,
                             nd->name ? " " : "", nd->name ? nd->name : "");
    }
    if (st)
        return st;
    *logits = bs->ptr[m->nodes[m->logits_node].infer_slot];
    if (features)
        *features = bs->ptr[m->nodes[m->features_node].infer_slot];
    return KDC_OK;
}
