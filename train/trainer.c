/* trainer.c - the epoch loop: data -> model -> losses -> optimiser -> files.
 *
 * On the CPU the step below runs the losses (losses.h) and the optimiser
 * (optim.h) on the model's host buffers. On a GPU the step is trainer_gpu.h's:
 * batches are uploaded through pinned double buffers, losses and optimiser
 * run on the device, and only the step statistics come back (the weights and
 * momentum buffers only when an epoch is saved). */
#include "train/trainer.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/device/device.h"
#include "common/nn/backend.h"
#include "common/base/fileutil.h"
#include "common/base/path_check.h"
#include "common/base/half.h"
#include "common/models/model.h"
#include "common/base/progress.h"
#include "train/evaluate.h"
#include "formats/checkpoint.h"
#include "formats/weights_check.h"
#include "train/losses.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/projector.h"
#include "train/recipe.h"
#include "train/schedule.h"
#include "train/student_meta.h"
#include "train/train_checkpoint.h"
#include "train/train_data.h"
#include "train/trainer_gpu.h"
#include "train/train_ddp.h"

#define PATH_MAX_LEN 4096

typedef struct trainer {
    const kd_train_options *o; /* &opts */
    kd_train_options opts;     /* the command line with the loss weights settled */
    FILE *log;
    kdc_backend *be;
    int on_cpu;
    kd_data *data;
    const cache_header *h;
    kdc_model *model;
    int C, Ds, Dt, B, S;
    kd_projector proj;
    int has_proj;
    kd_proj_ws pws;
    kdc_grad_set *g_sum, *g_task, *g_kd; /* sgd: g_sum; dot: g_task + g_kd */
    kd_sgd sgd;
    kd_dot dot;
    int is_dot;
    kdc_pool *opt_pool; /* the CPU optimiser's update loops (sleeps between steps) */
    kd_schedule sched;
    img_dataset *val_ds;
    kd_evaluator *eval;

    /* CPU step: gradients at the logits and at the projector output */
    float *df_h, *dl_task; /* dl_task: 2 x B x C (DOT: task, then distillation) */
    float *flat_w;
    size_t n_w;
    /* GPU step (NULL on the CPU) and host copies of its momentum buffers for
     * checkpoints */
    kd_gpu *gpu;
    float *obuf[2];

    char run_dir[PATH_MAX_LEN];
    char signature[1024];
    kd_student_meta_text meta; /* student.safetensors' metadata (student_meta.h) */
    char *metrics_csv;

    /* data parallel (train_ddp.h): rank of world; one rank without a job */
    kdc_dist *dist;
    int rank, world;
    img_dataset val_shard; /* this rank's contiguous share of --val (a view of val_ds) */
    char device[64];       /* --device cuda with several ranks: cuda:<local rank> */
} trainer;

static void trainer_free(trainer *t)
{
    kd_evaluator_free(t->eval);
    img_dataset_free(t->val_ds);
    kd_gpu_free(t->gpu);
    if (t->is_dot)
        kd_dot_free(&t->dot);
    else
        kd_sgd_free(&t->sgd);
    kdc_pool_destroy(t->opt_pool);
    if (t->model) {
        kdc_model_grads_free(t->model, t->g_sum);
        kdc_model_grads_free(t->model, t->g_task);
        kdc_model_grads_free(t->model, t->g_kd);
    }
    if (t->has_proj) {
        kd_proj_ws_free(&t->pws);
        kd_projector_free(&t->proj);
    }
    float *host[] = {t->df_h, t->dl_task, t->obuf[0], t->obuf[1]};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        free(host[i]);
    kdc_model_free(t->model);
    kd_data_close(t->data);
    if (t->be)
        kdc_backend_destroy(t->be);
    free(t->metrics_csv);
}

static int default_threads(int threads)
{
    if (threads > 0)
        return threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void norm_from_options(const kd_train_options *o, img_norm *n)
{
    img_norm_default(n);
    for (int c = 0; c < 3; c++) {
        if (o->have_mean)
            n->mean[c] = (float)o->mean[c];
        if (o->have_std)
            n->std[c] = (float)o->std[c];
    }
}

static kdc_status setup_schedule(trainer *t, kdc_error *err)
{
    const kd_train_options *o = t->o;
    kd_schedule_kind kind = o->schedule == KD_SCHED_STEP     ? KD_SCHEDULE_STEP
                            : o->schedule == KD_SCHED_COSINE ? KD_SCHEDULE_COSINE
                                                             : KD_SCHEDULE_CONSTANT;
    kd_schedule_defaults(&t->sched, kind, o->lr, o->epochs, (long)kd_data_epoch_batches(t->data));
    t->sched.gamma = o->lr_gamma;
    if (kind == KD_SCHEDULE_STEP) {
        t->sched.n_milestones = (size_t)o->n_lr_steps;
        for (int i = 0; i < o->n_lr_steps; i++)
            t->sched.milestones[i] = o->lr_steps[i];
    }
    if (o->warmup_epochs > 0) {
        if (kind != KD_SCHEDULE_COSINE)
            return kdc_fail(err, KDC_EINVAL, "--warmup-epochs needs --schedule cosine");
        if (o->warmup_epochs != floor(o->warmup_epochs))
            return kdc_fail(err, KDC_EINVAL, "--warmup-epochs must be a whole number of epochs");
        t->sched.warmup_epochs = (long)o->warmup_epochs;
    }
    return kd_schedule_validate(&t->sched, err);
}

/* The device-resident step (trainer_gpu.h) and host room for its momentum
 * buffers (checkpoints). */
static kdc_status setup_gpu(trainer *t, const kd_param_ref *refs, size_t nref, kdc_error *err)
{
    const kd_train_options *o = t->o;
    kd_gpu_config c = {
        .max_batch = (size_t)t->B,
        .classes = (size_t)t->C,
        .image_size = (size_t)t->S,
        .teacher = !((float)o->kd_weight > 0) ? KD_GPU_TEACHER_NONE
                   : t->h && t->h->logit_storage == CACHE_LOGITS_TOPK ? KD_GPU_TEACHER_TOPK
                                                                       : KD_GPU_TEACHER_FULL,
        .topk = t->h ? (size_t)t->h->topk : 0,
        .teacher_dim = t->has_proj ? (size_t)t->Dt : 0,
        .w_ce = (float)o->ce_weight,
        .w_kd = (float)o->kd_weight,
        .w_proj = (float)o->proj_weight,
        .temperature = (float)o->temperature,
        .proj_alpha = o->proj_alpha,
        .dot = t->is_dot,
        .proj_task_side = o->proj_on_task_side,
        .momentum = o->momentum,
        .dot_delta = o->dot_delta,
        .weight_decay = o->wd,
        .dist = t->dist,
    };
    if (c.teacher != KD_GPU_TEACHER_NONE && !t->h)
        return kdc_fail(err, KDC_EINVAL, "--kd-weight needs --cache");
    kdc_status st = kd_gpu_create(t->be, &c, t->model, t->has_proj ? &t->proj : NULL,
                                  t->is_dot ? t->g_task : t->g_sum, t->is_dot ? t->g_kd : NULL,
                                  refs, nref, &t->gpu, err);
    if (st)
        return st;
    size_t n0, n1;
    uint64_t steps;
    kd_gpu_opt_sizes(t->gpu, &n0, &n1, &steps);
    t->obuf[0] = calloc(n0 + 1, sizeof(float));
    t->obuf[1] = calloc(n1 + 1, sizeof(float));
    if (!t->obuf[0] || !t->obuf[1])
        return kdc_fail(err, KDC_ENOMEM, "out of memory for the optimiser's state");
    return KDC_OK;
}

static kdc_status setup_optimizer(trainer *t, kdc_error *err)
{
    const kd_train_options *o = t->o;
    kdc_status st;
    size_t n = 0;
    t->flat_w = kdc_model_flat_weights(t->model, &n);
    t->n_w = n;
    t->is_dot = o->optimizer == KD_OPT_DOT;
    if (t->is_dot) {
        if ((st = kdc_model_grads_alloc(t->model, &t->g_task, err)) ||
            (st = kdc_model_grads_alloc(t->model, &t->g_kd, err)))
            return st;
    } else if ((st = kdc_model_grads_alloc(t->model, &t->g_sum, err))) {
        return st;
    }
    /* One parameter list for both devices: the model's flat weights and the
     * projector, with pointers into the backend's memory. */
    float *w = t->flat_w, *gs = t->g_sum ? t->g_sum->flat : NULL;
    float *gt = t->g_task ? t->g_task->flat : NULL, *gk = t->g_kd ? t->g_kd->flat : NULL;
    float *pw = t->has_proj ? t->proj.flat : NULL, *pg = t->has_proj ? t->proj.grad : NULL;
    kd_param_ref refs[2];
    size_t nref = 0;
    if (t->is_dot) {
        refs[nref++] = (kd_param_ref){w, gt, gk, n};
        if (t->has_proj)
            refs[nref++] = o->proj_on_task_side ? (kd_param_ref){pw, pg, NULL, t->proj.numel}
                                                : (kd_param_ref){pw, NULL, pg, t->proj.numel};
    } else {
        refs[nref++] = (kd_param_ref){w, gs, NULL, n};
        if (t->has_proj)
            refs[nref++] = (kd_param_ref){pw, pg, NULL, t->proj.numel};
    }
    if (!t->on_cpu)
        return setup_gpu(t, refs, nref, err);
    /* The update reads and writes 3-5 floats per weight: memory-bound passes of
     * tens of MB (resnet18: 11.7M weights), worth both cores like the layers' */
    if ((st = kdc_pool_create(default_threads(o->threads), &t->opt_pool, err)))
        return st;
    if (t->is_dot) {
        st = kd_dot_init(&t->dot, refs, nref, o->momentum, o->dot_delta, o->wd, err);
        t->dot.pool = t->opt_pool;
        return st;
    }
    st = kd_sgd_init(&t->sgd, refs, nref, o->momentum, o->wd, err);
    t->sgd.pool = t->opt_pool;
    return st;
}

static void make_signature(trainer *t)
{
    const kd_train_options *o = t->o;
    char steps[256] = "";
    for (int i = 0; i < o->n_lr_steps; i++) {
        size_t l = strlen(steps);
        snprintf(steps + l, sizeof steps - l, "%s%ld", i ? "," : "", o->lr_steps[i]);
    }
    snprintf(t->signature, sizeof t->signature,
             "student=%s classes=%d batch=%d lr=%.17g wd=%.17g schedule=%d "
             "warmup=%.17g lr_steps=%s gamma=%.17g optimizer=%d momentum=%.17g delta=%.17g "
             "ce=%.17g kd=%.17g T=%.17g proj=%.17g alpha=%.17g proj_task=%d seed=%d "
             "shuffle=%d data=%s",
             o->student, t->C, o->batch, o->lr, o->wd, (int)o->schedule,
             o->warmup_epochs, steps, o->lr_gamma, (int)o->optimizer, o->momentum, o->dot_delta,
             o->ce_weight, o->kd_weight, o->temperature, o->proj_weight, o->proj_alpha,
             o->proj_on_task_side, o->seed, !o->no_shuffle,
             t->h ? t->h->dataset_fingerprint : "online");
}

/* Start-up notes on images that will not train (shown with --quiet too: a
 * run that loses images must say so): those the cache marks skipped, and a
 * last batch of one image, which is left out as drop_last would (BatchNorm
 * training needs more than one value per channel). */
static void note_left_out(const trainer *t, const img_dataset *ds)
{
    if (!t->log)
        return;
    const img_skip_log *cs = kd_data_cache_skipped(t->data);
    int64_t n = kd_data_epoch_samples(t->data);
    if (cs->count > 0) {
        char names[2048];
        img_skip_log_names(cs, names, sizeof names);
        fprintf(t->log,
                "kd-train: %s marks %lld of %zu images skipped (kd-precompute could not use "
                "them), so each epoch trains on %lld: %s\n",
                t->o->cache, (long long)cs->count, ds->count, (long long)n, names);
    }
    if (n % t->B == 1)
        fprintf(t->log,
                "kd-train: the last batch of each epoch holds 1 of %lld images; it is left out "
                "(BatchNorm training needs more than one value per channel, as with "
                "drop_last)\n",
                (long long)n);
}

static kdc_status trainer_setup(trainer *t, kdc_error *err)
{
    const kd_train_options *o = t->o;
    kdc_status st;
    int threads = default_threads(o->threads);
    if (o->batch % t->world)
        return kdc_fail(err, KDC_EINVAL,
                        "--batch %d is the global batch and must be a multiple of the %d ranks",
                        o->batch, t->world);
    const char *device = o->device;
    if (t->world > 1 && device && !strcmp(device, "cuda")) { /* one GPU per rank */
        snprintf(t->device, sizeof t->device, "cuda:%d", kdc_dist_local_rank(t->dist));
        device = t->device;
    }
    if ((st = kdc_backend_create(device, o->threads, &t->be, err)))
        return st;
    t->on_cpu = t->be->device.type == KDC_DEVICE_CPU;
    /* GPU ranks: the GPU step averages the gradients with NCCL (trainer_gpu.h) */

    kd_data_config dc = {.data = o->data, .cache = o->cache, .batch_size = o->batch,
                         .threads = threads, .shuffle = !o->no_shuffle,
                         .seed = (uint64_t)o->seed, .rank = t->rank, .ranks = t->world};
    if (!o->cache) {
        img_view_params_default(&dc.view);
        if ((st = img_view_policy_parse(o->view_policy, &dc.view.policy, err)))
            return st;
        dc.view.image_size = o->image_size;
        dc.view.resize_size = o->resize_size;
        memcpy(dc.view.scale, o->scale, sizeof dc.view.scale);
        memcpy(dc.view.ratio, o->ratio, sizeof dc.view.ratio);
        dc.view.pad = o->pad;
        dc.view.seed = (uint64_t)o->seed;
        norm_from_options(o, &dc.norm);
    }
    if ((st = kd_data_open(&dc, &t->data, err)))
        return st;
    t->h = kd_data_cache_header(t->data);
    t->C = kd_data_num_classes(t->data);
    t->B = o->batch;
    t->S = kd_data_view_params(t->data)->image_size;
    char source[256];
    kd_train_resolve_losses(&t->opts, t->S, source, sizeof source);
    if (t->h && o->kd_weight > 0 && t->h->num_classes < 2)
        return kdc_fail(err, KDC_EINVAL, "%s: KD needs at least 2 classes", o->cache);
    const img_dataset *ds = kd_data_dataset(t->data);
    note_left_out(t, ds);
    for (size_t i = 0; i < ds->count; i++)
        if (ds->items[i].label < 0 || ds->items[i].label >= t->C)
            return kdc_fail(err, KDC_EMISMATCH, "%s: label %d of '%s' is outside %d classes",
                            o->data, (int)ds->items[i].label, ds->items[i].path, t->C);

    if ((st = kdc_model_create(o->student, t->C, t->be, (uint64_t)o->seed, &t->model, err)))
        return st;
    /* --sync-bn: statistics over the global batch. One rank has them already,
     * so it runs the plain BN (a one-rank run stays the plain run's bits). */
    if (o->sync_bn && t->world > 1 &&
        (st = kdc_model_set_bn_sum(t->model, kd_ddp_sum_f64, t->dist, err)))
        return kdc_error_prefix(err, "--sync-bn: ");
    t->Ds = kdc_model_feature_dim(t->model);
    if (o->proj_weight > 0) {
        if (!t->h || t->h->feature_dim < 1)
            return kdc_fail(err, KDC_EINVAL,
                            "--proj-weight needs a cache with teacher features (%s has none)",
                            o->cache ? o->cache : "no cache");
        t->Dt = (int)t->h->feature_dim;
        if ((st = kd_projector_init(&t->proj, t->be, t->Ds, t->Dt, t->B, (uint64_t)o->seed, err)))
            return st;
        t->has_proj = 1;
        if (t->on_cpu && (st = kd_proj_ws_init(&t->pws, (size_t)t->B, (size_t)t->Dt, err)))
            return st;
    }
    if (o->init) {
        int loaded = 0;
        if ((st = kd_init_load(o->init, kdc_model_params(t->model), t->has_proj ? &t->proj : NULL,
                               t->be, &loaded, err)))
            return st;
    }

    if (t->on_cpu) { /* the CPU step's loss gradients (the GPU step has its own) */
        size_t B = (size_t)t->B, C = (size_t)t->C;
        /* 2 x: DOT writes the distillation gradient right after the task one
         * (dl_task + n * C), the stacked pair that kdc_model_backward_dual takes */
        t->dl_task = malloc(2 * B * C * sizeof(float));
        if (t->has_proj && !(t->df_h = malloc(B * (size_t)t->Dt * sizeof(float))))
            return kdc_fail(err, KDC_ENOMEM, "out of memory");
        if (!t->dl_task)
            return kdc_fail(err, KDC_ENOMEM, "out of memory");
    }

    if ((st = setup_optimizer(t, err)) || (st = setup_schedule(t, err)))
        return st;

    const img_view_params *vp = kd_data_view_params(t->data);
    kd_student_meta sm = {.num_classes = t->C, .image_size = vp->image_size,
                          .resize_size = kd_eval_resize_size(vp->policy, vp->image_size,
                                                             vp->resize_size),
                          .policy = vp->policy,
                          .norm = *kd_data_norm(t->data)};
    snprintf(sm.arch, sizeof sm.arch, "%s", o->student);
    kd_student_meta_format(&sm, &t->meta);
    if (o->val) {
        /* Square datasets under pad-crop (CIFAR-like): the val view is the whole
         * S x S image, as the CIFAR recipes evaluate. */
        int R = kd_eval_resize_size(vp->policy, vp->image_size, vp->resize_size);
        if ((st = img_dataset_open_folder(&t->val_ds, o->val, err)))
            return st;
        /* During training an unreadable validation image is left out and
         * reported every epoch (a failure here would lose the epoch just
         * trained); --eval-only refuses it unless --skip-bad-images. */
        /* Several ranks: rank r evaluates the r-th contiguous share of the images
         * (kd_train_run_dist sums the results). */
        t->val_shard = *t->val_ds;
        size_t lo = t->val_ds->count * (size_t)t->rank / (size_t)t->world;
        size_t hi = t->val_ds->count * (size_t)(t->rank + 1) / (size_t)t->world;
        t->val_shard.items += lo;
        t->val_shard.count = hi - lo;
        if ((st = kd_evaluator_create(&t->eval, &t->val_shard, vp->image_size, R,
                                      kd_data_norm(t->data), t->B, threads, 1, err)))
            return st;
    }
    /* Before the first step: a run folder that cannot take files would
     * otherwise fail only when the first epoch is saved. Rank 0 writes it. */
    st = t->rank == 0 && ((st = kdc_mkdirs(o->out, err)) ||
                          (st = kdc_check_dir_writable(o->out, err)))
             ? kdc_error_prefix(err, "--out: ")
             : KDC_OK;
    if ((st = kdc_dist_agree(t->dist, st, "--out", err)))
        return st;
    snprintf(t->run_dir, sizeof t->run_dir, "%s", o->out);
    make_signature(t);
    if (t->log && !o->quiet) {
        char lines[1024];
        kd_train_describe(o, source, lines, sizeof lines);
        for (char *l = lines, *nl; *l && (nl = strchr(l, '\n')); l = nl + 1)
            fprintf(t->log, "kd-train: %.*s\n", (int)(nl - l), l);
    }
    return KDC_OK;
}

static kdc_status path_in_run(const trainer *t, const char *name, char *buf, kdc_error *err)
{
    int n = snprintf(buf, PATH_MAX_LEN, "%s/%s", t->run_dir, name);
    if (n < 0 || n >= PATH_MAX_LEN)
        return kdc_fail(err, KDC_EINVAL, "--out: path too long");
    return KDC_OK;
}

/* The optimiser's state as two host buffers (SGD: one). On a GPU these are
 * host copies, filled by opt_download. */
static void opt_buffers(trainer *t, kd_resume_state *s)
{
    if (t->gpu) {
        kd_gpu_opt_sizes(t->gpu, &s->n_buffer[0], &s->n_buffer[1], &s->optimizer_steps);
        s->buffer[0] = t->obuf[0];
        s->buffer[1] = t->is_dot ? t->obuf[1] : NULL;
    } else if (t->is_dot) {
        s->buffer[0] = t->dot.buf_task;
        s->n_buffer[0] = t->dot.n_task;
        s->buffer[1] = t->dot.buf_distill;
        s->n_buffer[1] = t->dot.n_distill;
        s->optimizer_steps = t->dot.steps;
    } else {
        s->buffer[0] = t->sgd.buf;
        s->n_buffer[0] = t->sgd.n_buf;
        s->buffer[1] = NULL;
        s->n_buffer[1] = 0;
        s->optimizer_steps = t->sgd.steps;
    }
}

static kdc_status try_resume(trainer *t, int64_t *start_epoch, kdc_error *err)
{
    char path[PATH_MAX_LEN];
    kdc_status st;
    *start_epoch = 0;
    if ((st = path_in_run(t, "checkpoint.safetensors", path, err)))
        return st;
    if (!kdc_path_exists(path)) {
        if (t->o->resume && t->log && !t->o->quiet)
            fprintf(t->log, "kd-train: no checkpoint in %s, starting from epoch 1\n", t->run_dir);
        return KDC_OK;
    }
    if (!t->o->resume)
        return kdc_fail(err, KDC_EINVAL,
                        "%s already holds a run (checkpoint.safetensors): use --resume or "
                        "another --out",
                        t->run_dir);
    kd_resume_state s = {.signature = t->signature};
    opt_buffers(t, &s);
    float *b0 = calloc(s.n_buffer[0] + 1, sizeof(float)), *b1 = calloc(s.n_buffer[1] + 1,
                                                                         sizeof(float));
    if (!b0 || !b1) {
        free(b0);
        free(b1);
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    }
    s.buffer[0] = b0;
    s.buffer[1] = b1;
    st = kd_checkpoint_read(path, kdc_model_params(t->model), t->has_proj ? &t->proj : NULL,
                            t->be, &s, err);
    if (!st) {
        if (t->gpu)
            st = kd_gpu_opt_set(t->gpu, b0, s.n_buffer[0], b1, s.n_buffer[1], s.optimizer_steps,
                                err);
        else if (t->is_dot)
            st = kd_dot_set_state(&t->dot, b0, s.n_buffer[0], b1, s.n_buffer[1],
                                  s.optimizer_steps, err);
        else
            st = kd_sgd_set_state(&t->sgd, b0, s.n_buffer[0], s.optimizer_steps, err);
    }
    free(b0);
    free(b1);
    if (st) {
        free(s.metrics_csv);
        return st;
    }
    free(t->metrics_csv);
    t->metrics_csv = s.metrics_csv[0] ? s.metrics_csv : NULL;
    if (!t->metrics_csv)
        free(s.metrics_csv);
    *start_epoch = s.epochs_done;
    if (t->log && !t->o->quiet)
        fprintf(t->log, "kd-train: resuming %s after epoch %lld\n", t->run_dir,
                (long long)s.epochs_done);
    return KDC_OK;
}

/* The mean of every rank's gradients (train_ddp.h): SGD's one sum, DOT's task
 * and distillation gradients, and the projector's, each reduced apart. */
static kdc_status reduce_grads(trainer *t, kdc_error *err)
{
    kdc_status st;
    kdc_grad_set *gs[] = {t->g_sum, t->g_task, t->g_kd};
    for (int i = 0; i < 3; i++)
        if (gs[i] && (st = kd_ddp_mean_grads(t->dist, gs[i]->flat, gs[i]->flat_numel, err)))
            return st;
    if (t->has_proj && (st = kd_ddp_mean_grads(t->dist, t->proj.grad, t->proj.numel, err)))
        return st;
    return KDC_OK;
}

typedef struct step_losses {
    double ce, kd, proj, total;
} step_losses;

/* The weighted total of the bare terms, as optimised. */
static double total_loss(const kd_train_options *o, const step_losses *L)
{
    float wce = (float)o->ce_weight, wkd = (float)o->kd_weight, wp = (float)o->proj_weight;
    return wce * L->ce + wkd * L->kd + wp * L->proj;
}

/* One step on the CPU backend: model buffers are host memory. */
static kdc_status train_step(trainer *t, const kd_batch *b, double lr, step_losses *L,
                             int64_t *c1, int64_t *c5, kdc_error *err)
{
    const kd_train_options *o = t->o;
    kdc_status st = KDC_OK;
    size_t n = (size_t)b->count, C = (size_t)t->C;
    const float *z = NULL, *feat_d = NULL;
    if ((st = kdc_model_forward(t->model, b->pixels, (int)n, t->S, t->S, 1, &z,
                                t->has_proj ? &feat_d : NULL, err)))
        return st;
    float wce = (float)o->ce_weight, wkd = (float)o->kd_weight, wp = (float)o->proj_weight;
    float T = (float)o->temperature;

    /* loss terms, bare (weight 1), for the log */
    memset(L, 0, sizeof *L);
    if ((st = kd_ce_forward(&L->ce, z, b->label, n, C, 1.0f, err)))
        return st;
    int has_kd = wkd > 0;
    if (has_kd) {
        if (b->topk_index)
            st = kd_kd_topk_forward(&L->kd, z, b->topk_value, b->topk_index, n, C,
                                    (size_t)t->h->topk, T, 1.0f, err);
        else
            st = kd_kd_forward(&L->kd, z, b->logits, n, C, T, 1.0f, err);
        if (st)
            return st;
    }
    const float *dfeat = NULL;
    if (t->has_proj) {
        const float *f = t->proj.out;
        if ((st = kd_projector_forward(&t->proj, feat_d, (int)n, err)) ||
            (st = kd_proj_forward(&L->proj, &t->pws, f, b->features, n, o->proj_alpha, 1.0f,
                                  err)) ||
            (st = kd_proj_backward(t->df_h, &t->pws, f, wp, KD_GRAD_SET, err)) ||
            (st = kd_projector_backward(&t->proj, feat_d, t->df_h, (int)n, err)))
            return st;
        dfeat = t->proj.dinput;
    }
    L->total = total_loss(o, L);
    if (!isfinite(L->total))
        return kdc_fail(err, KDC_EINVAL, "loss is %g (ce %g, kd %g, proj %g)", L->total, L->ce,
                        L->kd, L->proj);
    kd_count_correct(z, b->label, n, C, c1, c5);

    /* upstream gradients at the logits */
    if ((st = kd_ce_backward(t->dl_task, z, b->label, n, C, wce, KD_GRAD_SET, err)))
        return st;
    float *dl_kd = t->is_dot ? t->dl_task + n * C : t->dl_task;
    kd_grad_mode mode = t->is_dot ? KD_GRAD_SET : KD_GRAD_ADD;
    if (has_kd) {
        if (b->topk_index)
            st = kd_kd_topk_backward(dl_kd, z, b->topk_value, b->topk_index, n, C,
                                     (size_t)t->h->topk, T, wkd, mode, err);
        else
            st = kd_kd_backward(dl_kd, z, b->logits, n, C, T, wkd, mode, err);
        if (st)
            return st;
    }
    const float *dtask = t->dl_task;
    if (!t->is_dot) {
        if ((st = kdc_model_backward(t->model, dtask, dfeat, t->g_sum, NULL, err)))
            return st;
    } else {
        /* DOT: one forward, one backward pass carrying both gradient streams
         * (kdc_model_backward_dual; equal to two passes to float rounding). The
         * projector term joins the distillation side unless --proj-task-side. */
        const float *df_task = o->proj_on_task_side ? dfeat : NULL;
        const float *df_kd = o->proj_on_task_side ? NULL : dfeat;
        if (has_kd || df_kd) {
            if (!has_kd)
                memset(dl_kd, 0, n * C * sizeof(float));
            if ((st = kdc_model_backward_dual(t->model, dtask, df_task, df_kd, t->g_task,
                                              t->g_kd, err)))
                return st;
        } else if ((st = kdc_model_backward(t->model, dtask, df_task, t->g_task, NULL, err)) ||
                   (st = t->be->fill_zero(t->be, t->g_kd->flat,
                                          t->g_kd->flat_numel * sizeof(float), err))) {
            return st; /* no distillation term: its gradient is zero */
        }
    }
    if ((st = reduce_grads(t, err)))
        return st;
    return t->is_dot ? kd_dot_step(&t->dot, lr, err) : kd_sgd_step(&t->sgd, lr, err);
}

/* A rank whose share of a global batch kept fewer than 2 images (online
 * images that could not be read): it contributes a zero gradient and still
 * takes the step, so that every rank stays in step and keeps the same
 * weights. */
static kdc_status idle_step(trainer *t, double lr, kdc_error *err)
{
    kdc_status st;
    kdc_grad_set *gs[] = {t->g_sum, t->g_task, t->g_kd};
    for (int i = 0; i < 3; i++)
        if (gs[i] && (st = t->be->fill_zero(t->be, gs[i]->flat,
                                            gs[i]->flat_numel * sizeof(float), err)))
            return st;
    if (t->has_proj &&
        (st = t->be->fill_zero(t->be, t->proj.grad, t->proj.numel * sizeof(float), err)))
        return st;
    if ((st = reduce_grads(t, err)))
        return st;
    return t->is_dot ? kd_dot_step(&t->dot, lr, err) : kd_sgd_step(&t->sgd, lr, err);
}

static kdc_status save_epoch(trainer *t, int64_t epochs_done, kdc_error *err)
{
    char path[PATH_MAX_LEN];
    kdc_status st;
    if ((st = path_in_run(t, "student.safetensors", path, err)) ||
        (st = kdc_checkpoint_save_meta(path, kdc_model_params(t->model), t->be, t->meta.pairs,
                                       t->meta.n, err)))
        return st;
    if (t->has_proj &&
        ((st = path_in_run(t, "projector.safetensors", path, err)) ||
         (st = kdc_checkpoint_save(path, &t->proj.table, t->be, "projector", err))))
        return st;
    if ((st = path_in_run(t, "metrics.csv", path, err)) ||
        (st = kd_write_text_file(path, t->metrics_csv ? t->metrics_csv : KD_METRICS_HEADER, err)))
        return st;
    kd_resume_state s = {.epochs_done = epochs_done, .signature = t->signature,
                         .metrics_csv = t->metrics_csv};
    opt_buffers(t, &s);
    if (t->gpu && (st = kd_gpu_opt_get(t->gpu, s.buffer[0], s.n_buffer[0], s.buffer[1],
                                       s.n_buffer[1], err)))
        return st;
    if ((st = path_in_run(t, "checkpoint.safetensors", path, err)))
        return st;
    return kd_checkpoint_write(path, kdc_model_params(t->model), t->has_proj ? &t->proj : NULL,
                               t->be, &s, err);
}

/* One GPU step on *gb (when it has >= 2 samples): enqueue it, load the next
 * batch into *gb while the GPU works, then wait for the step's statistics and
 * add them to the epoch's sums. Errors name the step they belong to. */
static kdc_status gpu_step(trainer *t, kd_gpu_batch *gb, int64_t epoch, long step,
                           int64_t *steps, int64_t *trained, int64_t *c1, int64_t *c5,
                           double *sum_total, double *sum_ce, double *sum_kd, double *sum_proj,
                           kdc_error *err)
{
    kdc_status st = KDC_OK;
    int count = gb->count, train = count >= 2;
    /* The CPU ranks' idle step (a zero gradient into the all-reduce) has no
     * GPU twin yet: end the job rather than leave the others waiting in NCCL. */
    if (!train && t->world > 1)
        return kdc_fail(err, KDC_EUNSUPPORTED,
                        "epoch %lld step %ld: this GPU rank kept %d image%s of its share (the "
                        "others unreadable); GPU ranks need 2 or more",
                        (long long)epoch + 1, step + 1, count, count == 1 ? "" : "s");
    if (train && (st = kd_gpu_step(t->gpu, gb, kd_schedule_lr(&t->sched, (long)epoch, step),
                                   err)))
        return kdc_error_prefix(err, "epoch %lld step %ld: ", (long long)epoch + 1, step + 1);
    kdc_error load_err = {0};
    kdc_status load_st = kd_gpu_load(t->gpu, t->data, gb, &load_err);
    if (train) {
        kd_gpu_losses g;
        step_losses L = {0};
        if (!(st = kd_gpu_step_result(t->gpu, &g, err))) {
            L.ce = g.ce;
            L.kd = g.kd;
            L.proj = g.proj;
            L.total = total_loss(t->o, &L);
            if (!isfinite(L.total))
                st = kdc_fail(err, KDC_EINVAL, "loss is %g (ce %g, kd %g, proj %g)", L.total,
                              L.ce, L.kd, L.proj);
        }
        if (st)
            return kdc_error_prefix(err, "epoch %lld step %ld: ", (long long)epoch + 1,
                                    step + 1);
        *c1 += g.top1;
        *c5 += g.top5;
        *sum_total += L.total;
        *sum_ce += L.ce;
        *sum_kd += L.kd;
        *sum_proj += L.proj;
        (*steps)++;
        *trained += count;
    }
    if (load_st) {
        *err = load_err;
        return kdc_error_prefix(err, "epoch %lld step %ld: ", (long long)epoch + 1, step + 2);
    }
    return KDC_OK;
}

static kdc_status run_epoch(trainer *t, int64_t epoch, kd_epoch_metrics *m, kdc_error *err)
{
    const kd_train_options *o = t->o;
    kdc_status st;
    int64_t total = kd_data_epoch_samples(t->data);
    char label[128];
    int64_t cache_skipped = kd_data_cache_skipped(t->data)->count;
    if (cache_skipped > 0) /* the count below is of the images left */
        snprintf(label, sizeof label, "epoch %lld/%d (%lld skipped)", (long long)epoch + 1,
                 o->epochs, (long long)cache_skipped);
    else
        snprintf(label, sizeof label, "epoch %lld/%d", (long long)epoch + 1, o->epochs);
    kdc_progress pr;
    kdc_progress_init(&pr, t->log ? t->log : stderr, label, (uint64_t)total, "img",
                      o->quiet || !t->log);
    kdc_progress_set_log_every(&pr, o->log_every);
    uint64_t epoch_steps = (uint64_t)kd_data_epoch_batches(t->data);
    double t0 = kdc_now_seconds();
    if ((st = kd_data_start_epoch(t->data, epoch, err)))
        return st;
    memset(m, 0, sizeof *m);
    m->epoch = (int)epoch + 1;
    m->lr = kd_schedule_lr(&t->sched, (long)epoch, 0);
    int64_t seen = 0, trained = 0, c1 = 0, c5 = 0, steps = 0, dropped = 0;
    const img_skip_log *skipped = kd_data_epoch_skipped(t->data);
    int64_t nskip = 0; /* unreadable images of the epoch, over every rank */
    double sum_total = 0, sum_ce = 0, sum_kd = 0, sum_proj = 0;
    /* GPU: the batch of the coming step, already on its way to the device */
    kd_gpu_batch gb = {0};
    if (t->gpu && (st = kd_gpu_load(t->gpu, t->data, &gb, err)))
        return kdc_error_prefix(err, "epoch %lld step 1: ", (long long)epoch + 1);
    for (long step = 0;; step++) {
        kd_batch b;
        int count;
        if (t->gpu) {
            if (gb.end)
                break;
            count = gb.count;
        } else {
            if ((st = kd_data_next(t->data, &b, err)))
                return st;
            if (b.count == 0 && !b.pixels)
                break;
            count = b.count;
        }
        seen += count;
        dropped += count == 1; /* a batch of one is not trained on (trainer.h) */
        if (t->gpu) {
            if ((st = gpu_step(t, &gb, epoch, step, &steps, &trained, &c1, &c5, &sum_total,
                               &sum_ce, &sum_kd, &sum_proj, err)))
                return st;
        } else if (b.count < 2 && t->world > 1) {
            if ((st = idle_step(t, kd_schedule_lr(&t->sched, (long)epoch, step), err)))
                return kdc_error_prefix(err, "epoch %lld step %ld: ", (long long)epoch + 1,
                                        step + 1);
        } else if (b.count >= 2) {
            double lr = kd_schedule_lr(&t->sched, (long)epoch, step);
            step_losses L;
            if ((st = train_step(t, &b, lr, &L, &c1, &c5, err)))
                return kdc_error_prefix(err, "epoch %lld step %ld: ", (long long)epoch + 1,
                                        step + 1);
            sum_total += L.total;
            sum_ce += L.ce;
            sum_kd += L.kd;
            sum_proj += L.proj;
            steps++;
            trained += b.count;
        }
        if (steps > 0) /* running epoch means of the weighted total and the bare terms */
            kdc_progress_set_extra(&pr, "loss %.4f (ce %.4f kd %.4f proj %.4f), top-1 %.1f%%",
                                   sum_total / (double)steps, sum_ce / (double)steps,
                                   sum_kd / (double)steps, sum_proj / (double)steps,
                                   100.0 * (double)c1 / (double)trained);
        kdc_progress_set_step(&pr, (uint64_t)step + 1, epoch_steps);
        /* Unreadable images count as done, so the line reaches its total (rank
         * 0 shows its own share times the ranks until the epoch's sums). */
        kdc_progress_update(&pr, (uint64_t)((seen + skipped->count) * t->world));
    }
    if (t->world > 1) { /* the epoch's numbers over every rank */
        int64_t left = kd_data_epoch_left_out(t->data); /* the same on every rank */
        double v[11] = {sum_total, sum_ce, sum_kd, sum_proj, (double)steps, (double)trained,
                        (double)c1, (double)c5, (double)(dropped + (t->rank ? 0 : left)),
                        (double)seen, (double)skipped->count};
        if ((st = kdc_dist_sum_f64(t->dist, v, 11, err)))
            return kdc_error_prefix(err, "epoch %lld: ", (long long)epoch + 1);
        sum_total = v[0], sum_ce = v[1], sum_kd = v[2], sum_proj = v[3];
        steps = (int64_t)v[4], trained = (int64_t)v[5], c1 = (int64_t)v[6];
        c5 = (int64_t)v[7], dropped = (int64_t)v[8], seen = (int64_t)v[9];
        nskip = (int64_t)v[10];
        kdc_progress_update(&pr, (uint64_t)(seen + nskip));
    } else {
        nskip = skipped->count;
    }
    kdc_progress_finish(&pr);
    double secs = kdc_now_seconds() - t0;
    if (steps > 0) {
        m->loss = sum_total / (double)steps;
        m->ce = sum_ce / (double)steps;
        m->kd = sum_kd / (double)steps;
        m->proj = sum_proj / (double)steps;
        m->train_top1 = 100.0 * (double)c1 / (double)trained;
        m->train_top5 = 100.0 * (double)c5 / (double)trained;
    }
    m->seconds = secs;
    m->images_per_s = secs > 0 ? (double)trained / secs : 0;
    m->images = trained;
    m->dropped = dropped;
    m->skipped = nskip + kd_data_cache_skipped(t->data)->count;
    return KDC_OK;
}

/* The images an epoch and its evaluation could not read, named (also with
 * --quiet: the numbers of a run that lost images must not look complete). */
static void report_skipped(const trainer *t, const kd_epoch_metrics *m)
{
    if (!t->log)
        return;
    char names[2048];
    const img_skip_log *ts = kd_data_epoch_skipped(t->data);
    if (ts->count > 0) {
        img_skip_log_names(ts, names, sizeof names);
        fprintf(t->log, "kd-train: epoch %d: skipped %lld of %zu images that could not be read: %s\n",
                m->epoch, (long long)ts->count, kd_data_dataset(t->data)->count, names);
    }
    if (t->eval && m->val_skipped > 0) {
        img_skip_log_names(kd_evaluator_skipped(t->eval), names, sizeof names);
        fprintf(t->log,
                "kd-train: epoch %d: validation skipped %lld of %zu images that could not be "
                "read: %s\n",
                m->epoch, (long long)m->val_skipped, t->val_ds->count, names);
    }
}

/* Every rank starts from rank 0's state (train_ddp.h): the weights and
 * buffers, the projector, the optimiser's buffers and step count, the epoch to
 * start from (rank 0 alone reads a checkpoint: the saved state depends on no
 * rank, so a run resumes with any number of ranks). */
static kdc_status sync_from_rank0(trainer *t, int64_t *start, kdc_error *err)
{
    if (t->world == 1)
        return KDC_OK;
    kdc_status st;
    if ((st = kdc_dist_bcast(t->dist, start, sizeof *start, 0, err)) ||
        (st = kd_ddp_bcast_table(t->dist, kdc_model_params(t->model), t->be, 0, err)) ||
        (t->has_proj && (st = kd_ddp_bcast_table(t->dist, &t->proj.table, t->be, 0, err))))
        return st;
    kd_resume_state s = {0};
    opt_buffers(t, &s);
    if (t->gpu && (st = kd_gpu_opt_get(t->gpu, s.buffer[0], s.n_buffer[0], s.buffer[1],
                                       s.n_buffer[1], err)))
        return st;
    uint64_t steps = s.optimizer_steps;
    if ((st = kdc_dist_bcast(t->dist, &steps, sizeof steps, 0, err)))
        return st;
    for (int i = 0; i < 2; i++)
        if (s.buffer[i] &&
            (st = kdc_dist_bcast(t->dist, s.buffer[i], s.n_buffer[i] * sizeof(float), 0, err)))
            return st;
    if (t->gpu)
        return kd_gpu_opt_set(t->gpu, s.buffer[0], s.n_buffer[0], s.buffer[1], s.n_buffer[1],
                              steps, err);
    if (t->is_dot)
        t->dot.steps = steps;
    else
        t->sgd.steps = steps;
    return KDC_OK;
}

/* Each rank evaluated its share of --val: the sums of every rank. */
static kdc_status reduce_eval(trainer *t, kd_eval_result *r, kdc_error *err)
{
    if (t->world == 1)
        return KDC_OK;
    double n = (double)r->images;
    double v[5] = {r->loss * n, r->top1 * n / 100.0, r->top5 * n / 100.0, n, (double)r->skipped};
    kdc_status st = kdc_dist_sum_f64(t->dist, v, 5, err);
    if (st)
        return st;
    r->images = (int64_t)v[3];
    r->skipped = (int64_t)v[4];
    double N = v[3] > 0 ? v[3] : 1;
    r->loss = v[0] / N;
    r->top1 = 100.0 * (double)(int64_t)(v[1] + 0.5) / N; /* counts are whole */
    r->top5 = 100.0 * (double)(int64_t)(v[2] + 0.5) / N;
    return KDC_OK;
}

kdc_status kd_train_run(const kd_train_options *o, FILE *log, kdc_error *err)
{
    return kd_train_run_dist(o, NULL, log, err);
}

kdc_status kd_train_run_dist(const kd_train_options *o, kdc_dist *dist, FILE *log,
                             kdc_error *err)
{
    trainer t;
    memset(&t, 0, sizeof t);
    t.opts = *o;
    t.o = &t.opts;
    o = t.o;
    t.dist = dist;
    t.rank = kdc_dist_rank(dist);
    t.world = kdc_dist_size(dist);
    t.log = t.rank == 0 ? log : NULL; /* rank 0 speaks for the job */
    log = t.log;
    kdc_status st;
    int64_t start = 0;
    if ((st = trainer_setup(&t, err)))
        goto out;
    st = t.rank == 0 ? try_resume(&t, &start, err) : KDC_OK;
    if ((st = kdc_dist_agree(t.dist, st, "resuming", err)) ||
        (st = sync_from_rank0(&t, &start, err)))
        goto out;
    for (int64_t e = start; e < o->epochs; e++) {
        kd_epoch_metrics m;
        if ((st = run_epoch(&t, e, &m, err)))
            goto out;
        /* rank 0's running statistics on every rank (broadcast_buffers) */
        if ((st = kd_ddp_bcast_table(t.dist, kdc_model_params(t.model), t.be, 1, err)))
            goto out;
        if (t.eval) {
            kd_eval_result r;
            if ((st = kd_evaluate(t.eval, t.model, &r, err)) ||
                (st = reduce_eval(&t, &r, err)))
                goto out;
            m.have_val = 1;
            m.val_loss = r.loss;
            m.val_top1 = r.top1;
            m.val_top5 = r.top5;
            m.val_images = r.images;
            m.val_skipped = r.skipped;
        }
        if ((st = kd_metrics_append(&t.metrics_csv, &m, err)))
            goto out;
        st = t.rank == 0 ? save_epoch(&t, e + 1, err) : KDC_OK;
        if ((st = kdc_dist_agree(t.dist, st, "saving the epoch", err)))
            goto out;
        report_skipped(&t, &m);
        if (log && !o->quiet) {
            fprintf(log, "epoch %d/%d: loss %.4f (ce %.4f kd %.4f proj %.4f) train top-1 %.2f%% "
                    "on %lld images",
                    m.epoch, o->epochs, m.loss, m.ce, m.kd, m.proj, m.train_top1,
                    (long long)m.images);
            if (m.skipped)
                fprintf(log, ", %lld skipped", (long long)m.skipped);
            if (m.dropped)
                fprintf(log, ", %lld left out in a batch of one", (long long)m.dropped);
            if (m.have_val)
                fprintf(log, ", val top-1 %.2f%% top-5 %.2f%% loss %.4f on %lld images",
                        m.val_top1, m.val_top5, m.val_loss, (long long)m.val_images);
            if (m.have_val && m.val_skipped)
                fprintf(log, ", %lld skipped", (long long)m.val_skipped);
            fprintf(log, ", %.1f img/s\n", m.images_per_s);
        }
    }
out:
    trainer_free(&t);
    return st;
}

kdc_status kd_eval_only(const kd_train_options *o, FILE *out, FILE *log, kdc_error *err)
{
    kdc_backend *be = NULL;
    img_dataset *ds = NULL;
    kdc_model *m = NULL;
    kd_evaluator *ev = NULL;
    kdc_status st;
    kd_eval_settings es; /* the weights' metadata, or the flags (student_meta.h) */
    if ((st = kd_eval_settings_resolve(o, &es, err)))
        return st;
    int threads = default_threads(o->threads);
    if ((st = kdc_backend_create(o->device, o->threads, &be, err)) ||
        (st = img_dataset_open_folder(&ds, o->val, err)))
        goto done;
    if (ds->num_classes < 1 || ds->count == 0) {
        st = kdc_fail(err, KDC_EINVAL, "%s: no classes or no images", o->val);
        goto done;
    }
    /* Labels are folder indices below the student's classes, as for the run's --val */
    if (es.num_classes && ds->num_classes > es.num_classes) {
        st = kdc_fail(err, KDC_EMISMATCH,
                      "%s has %d class folders but %s was trained on %d classes", o->val,
                      ds->num_classes, o->weights, es.num_classes);
        goto done;
    }
    if ((st = kdc_model_create(es.arch, es.num_classes ? es.num_classes : ds->num_classes, be,
                               0, &m, err)) ||
        (st = kdc_checkpoint_load(o->weights, kdc_model_params(m), be, err)) ||
        (st = kdc_weights_check(kdc_model_params(m), be, o->weights, err)) ||
        (st = kd_evaluator_create(&ev, ds, es.image_size, es.resize_size, &es.norm, o->batch,
                                  threads, o->skip_bad_images, err)))
        goto done;
    kd_eval_result r;
    if ((st = kd_evaluate(ev, m, &r, err)))
        goto done;
    if (r.skipped > 0 && log) {
        char names[2048];
        img_skip_log_names(kd_evaluator_skipped(ev), names, sizeof names);
        fprintf(log, "kd-train: skipped %lld of %zu validation images that could not be read "
                "(--skip-bad-images): %s\n", (long long)r.skipped, ds->count, names);
    }
    fprintf(out, "images %lld top1 %.4f top5 %.4f loss %.6f skipped %lld\n",
            (long long)r.images, r.top1, r.top5, r.loss, (long long)r.skipped);
done:
    kd_evaluator_free(ev);
    kdc_model_free(m);
    img_dataset_free(ds);
    if (be)
        kdc_backend_destroy(be);
    return st;
}
