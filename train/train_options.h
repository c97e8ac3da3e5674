/* train_options.h - kd-train's command line (SPEC.md section 5) as a struct.
 *
 * Parsing validates every value and the combinations that make no sense
 * (distillation weights without a cache, --eval-only without --weights), so
 * the trainer itself never sees a bad option. */
#ifndef KD_TRAIN_OPTIONS_H
#define KD_TRAIN_OPTIONS_H

#include "common/base/error.h"

#define KD_MAX_LR_STEPS 16

typedef enum { KD_SCHED_COSINE = 0, KD_SCHED_STEP = 1, KD_SCHED_CONSTANT = 2 } kd_train_schedule;
typedef enum { KD_OPT_SGD = 0, KD_OPT_DOT = 1 } kd_optimizer_kind;

/* Flags whose presence matters after parsing (bits of kd_train_options.given): a
 * recipe and a cache's loss weights fill only the fields whose flag was not given
 * (recipe.h), and --eval-only checks the given ones against the weights' metadata. */
typedef enum kd_train_given {
    KD_GIVEN_EPOCHS, KD_GIVEN_BATCH, KD_GIVEN_LR, KD_GIVEN_WD, KD_GIVEN_SCHEDULE,
    KD_GIVEN_LR_STEPS, KD_GIVEN_LR_GAMMA, KD_GIVEN_MOMENTUM, KD_GIVEN_DOT_DELTA,
    KD_GIVEN_CE_W, KD_GIVEN_KD_W, KD_GIVEN_TEMP, KD_GIVEN_STUDENT, KD_GIVEN_IMAGE_SIZE,
    KD_GIVEN_RESIZE_SIZE, KD_GIVEN_MEAN, KD_GIVEN_STD, KD_GIVEN_VIEW_POLICY
} kd_train_given;
#define KD_WAS_GIVEN(o, f) ((((o)->given) >> (f)) & 1u)

typedef struct kd_train_options {
    const char *data, *cache, *student, *out, *val, *device, *init, *weights;
    int epochs, batch, threads, seed;
    double lr, wd, momentum, dot_delta;
    kd_train_schedule schedule; /* named apart from schedule.h's kd_schedule_kind */
    double warmup_epochs;
    long lr_steps[KD_MAX_LR_STEPS];
    int n_lr_steps;
    double lr_gamma;
    kd_optimizer_kind optimizer;
    double ce_weight, kd_weight, temperature, proj_weight, proj_alpha;
    int no_shuffle, resume, quiet, eval_only;
    int skip_bad_images; /* --eval-only: leave unreadable images out (else an error) */
    /* Online views (no cache): the same view flags as kd-precompute. */
    const char *view_policy;
    double scale[2], ratio[2];
    int pad, image_size, resize_size;
    double mean[3], std[3];
    int have_mean, have_std;
    /* DOT: which side the projector term belongs to (ALGORITHMS.md 3). */
    int proj_on_task_side;
    const char *recipe; /* --recipe cifar|imagenet, NULL: none (recipe.h) */
    double log_every;   /* --log-every SECONDS: progress lines off a terminal */
    int force;          /* --force: --eval-only flags win over the weights' metadata */
    int sync_bn;        /* --sync-bn: BatchNorm statistics over every rank (SyncBatchNorm) */
    unsigned given;     /* KD_GIVEN_* bits */
} kd_train_options;

/* Returns KDC_OK, or KDC_EINVAL with a one-line message (a usage error: exit 2).
 * *action is KDC_CLI_HELP for -h/--help (the caller prints kd_train_usage and
 * exits 0), KDC_CLI_VERSION for --version, else KDC_CLI_RUN. A --recipe is applied
 * here; the loss weights of a run with a cache are settled by the trainer once it
 * knows the image size (kd_train_resolve_losses, recipe.h). */
kdc_status kd_train_parse_options(int argc, char **argv, kd_train_options *o, int *action,
                                  kdc_error *err);
const char *kd_train_usage(void);

#endif
