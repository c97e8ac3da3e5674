/* recipe.c - the CIFAR and ImageNet recipes, and the loss weights a run gets
 * (see recipe.h). */
#include "train/recipe.h"

#include <stdio.h>
#include <string.h>

/* mdistiller configs/cifar100/dot/ and configs/imagenet/r34_r18/dot.yaml
 * (ALGORITHMS.md): CE 0.1 + KD 0.9 at T 4 on CIFAR, 0.5 + 0.5 at T 1 on ImageNet. */
static const kd_recipe RECIPES[] = {
    {.name = "cifar",
     .temperature = 4,
     .ce_weight = 0.1,
     .kd_weight = 0.9,
     .lr = 0.05,
     .wd = 5e-4,
     .momentum = 0.9,
     .dot_delta = 0.075,
     .lr_gamma = 0.1,
     .batch = 64,
     .epochs = 240,
     .lr_steps = {150, 180, 210},
     .n_lr_steps = 3},
    {.name = "imagenet",
     .temperature = 1,
     .ce_weight = 0.5,
     .kd_weight = 0.5,
     .lr = 0.2,
     .wd = 1e-4,
     .momentum = 0.9,
     .dot_delta = 0.09,
     .lr_gamma = 0.1,
     .batch = 512,
     .epochs = 100,
     .lr_steps = {30, 60, 90},
     .n_lr_steps = 3},
};

const kd_recipe *kd_recipe_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof RECIPES / sizeof RECIPES[0]; i++)
        if (!strcmp(RECIPES[i].name, name))
            return &RECIPES[i];
    return NULL;
}

const kd_recipe *kd_recipe_for_image_size(int image_size)
{
    return kd_recipe_find(image_size <= KD_RECIPE_CIFAR_MAX_IMAGE ? "cifar" : "imagenet");
}

void kd_recipe_apply_training(const kd_recipe *r, kd_train_options *o)
{
    if (!KD_WAS_GIVEN(o, KD_GIVEN_LR))
        o->lr = r->lr;
    if (!KD_WAS_GIVEN(o, KD_GIVEN_BATCH))
        o->batch = r->batch;
    if (!KD_WAS_GIVEN(o, KD_GIVEN_WD))
        o->wd = r->wd;
    if (!KD_WAS_GIVEN(o, KD_GIVEN_EPOCHS))
        o->epochs = r->epochs;
    if (!KD_WAS_GIVEN(o, KD_GIVEN_SCHEDULE))
        o->schedule = KD_SCHED_STEP;
    if (!KD_WAS_GIVEN(o, KD_GIVEN_LR_STEPS)) {
        o->n_lr_steps = r->n_lr_steps;
        memcpy(o->lr_steps, r->lr_steps, sizeof r->lr_steps);
    }
    if (!KD_WAS_GIVEN(o, KD_GIVEN_LR_GAMMA))
        o->lr_gamma = r->lr_gamma;
    if (!KD_WAS_GIVEN(o, KD_GIVEN_MOMENTUM))
        o->momentum = r->momentum;
    if (!KD_WAS_GIVEN(o, KD_GIVEN_DOT_DELTA))
        o->dot_delta = r->dot_delta;
}

void kd_train_resolve_losses(kd_train_options *o, int image_size, char *source, size_t len)
{
    const kd_recipe *named = kd_recipe_find(o->recipe);
    const kd_recipe *r = named ? named : kd_recipe_for_image_size(image_size);
    int ce = KD_WAS_GIVEN(o, KD_GIVEN_CE_W), kd = KD_WAS_GIVEN(o, KD_GIVEN_KD_W),
        T = KD_WAS_GIVEN(o, KD_GIVEN_TEMP);
    if (!o->cache) { /* the parser refused --kd-weight > 0 without a cache */
        if (!ce)
            o->ce_weight = 1.0;
        snprintf(source, len, "no --cache: CE only");
        return;
    }
    if (!kd)
        o->kd_weight = r->kd_weight;
    if (!T)
        o->temperature = r->temperature;
    int distils = o->kd_weight > 0 || o->proj_weight > 0;
    if (!ce)
        o->ce_weight = distils ? r->ce_weight : 1.0;
    if (ce && kd && T)
        snprintf(source, len, "as given");
    else if (!distils)
        snprintf(source, len, "--kd-weight 0: CE only");
    else if (named)
        snprintf(source, len, "recipe %s (--recipe)", r->name);
    else
        snprintf(source, len,
                 "recipe %s, chosen for %d px images (<= %d px: cifar, above: imagenet)", r->name,
                 image_size, KD_RECIPE_CIFAR_MAX_IMAGE);
}

static const char *schedule_name(kd_train_schedule s)
{
    return s == KD_SCHED_STEP ? "step" : s == KD_SCHED_COSINE ? "cosine" : "constant";
}

void kd_train_describe(const kd_train_options *o, const char *source, char *buf, size_t len)
{
    char proj[96] = "", opt[160], sched[256];
    if (o->proj_weight > 0)
        snprintf(proj, sizeof proj, " + projector %g (alpha %g%s)", o->proj_weight, o->proj_alpha,
                 o->optimizer == KD_OPT_DOT && o->proj_on_task_side ? ", task side" : "");
    if (o->optimizer == KD_OPT_DOT)
        snprintf(opt, sizeof opt, "dot (momentum %g, delta %g: %g task, %g distillation)",
                 o->momentum, o->dot_delta, o->momentum - o->dot_delta, o->momentum + o->dot_delta);
    else
        snprintf(opt, sizeof opt, "sgd (momentum %g)", o->momentum);
    int n = snprintf(sched, sizeof sched, "%s", schedule_name(o->schedule));
    if (o->schedule == KD_SCHED_STEP) {
        n += snprintf(sched + n, sizeof sched - (size_t)n, " x%g at epochs", o->lr_gamma);
        for (int i = 0; i < o->n_lr_steps && n < (int)sizeof sched; i++)
            n += snprintf(sched + n, sizeof sched - (size_t)n, "%s%ld", i ? "," : " ",
                          o->lr_steps[i]);
    } else if (o->schedule == KD_SCHED_COSINE && o->warmup_epochs > 0) {
        snprintf(sched + n, sizeof sched - (size_t)n, ", %g warm-up epochs", o->warmup_epochs);
    }
    snprintf(buf, len,
             "losses: CE %g + KD %g (T %g)%s [%s]\n"
             "optimiser: %s, lr %g, weight decay %g, batch %d, %d epoch%s, schedule %s\n",
             o->ce_weight, o->kd_weight, o->temperature, proj, source, opt, o->lr, o->wd, o->batch,
             o->epochs, o->epochs == 1 ? "" : "s", sched);
}
