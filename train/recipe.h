/* recipe.h - kd-train --recipe cifar|imagenet: the papers' settings in one flag,
 * and the loss weights a cache gets without a recipe.
 *
 * Values from mdistiller's CIFAR-100 and ImageNet KD/DOT configs (ALGORITHMS.md
 * sections 1-2). A recipe fills every field whose flag was not given (whatever the
 * order on the line: explicit flags always win). It chooses no optimiser: the DOT
 * delta is the paper's, used when --optimizer dot asks for DOT.
 *
 * Loss weights (CE, KD, temperature) are settled once the image size is known
 * (kd_train_resolve_losses, after the data is opened):
 *   - with a cache: the recipe's, or without --recipe the recipe that fits the image
 *     size (<= KD_RECIPE_CIFAR_MAX_IMAGE px: cifar, above: imagenet), so that
 *     --cache alone distils;
 *   - without a cache: CE only (weight 1; the teacher is never loaded);
 *   - --kd-weight 0 (and no --proj-weight) without --ce-weight: CE with weight 1,
 *     the plain supervised baseline, cache or not. */
#ifndef KD_RECIPE_H
#define KD_RECIPE_H

#include <stddef.h>

#include "train/train_options.h"

/* CIFAR (32 px) and Tiny-ImageNet (64 px) use the CIFAR settings in mdistiller;
 * ImageNet-sized crops (224 px) the ImageNet ones. */
#define KD_RECIPE_CIFAR_MAX_IMAGE 64

typedef struct kd_recipe {
    const char *name;
    double temperature, ce_weight, kd_weight;
    double lr, wd, momentum, dot_delta, lr_gamma;
    int batch, epochs;
    long lr_steps[3];
    int n_lr_steps;
} kd_recipe;

/* NULL for an unknown name. */
const kd_recipe *kd_recipe_find(const char *name);
const kd_recipe *kd_recipe_for_image_size(int image_size);

/* The optimisation fields (lr, batch, wd, epochs, step schedule, momentum, delta)
 * whose flag was not given. */
void kd_recipe_apply_training(const kd_recipe *r, kd_train_options *o);

/* Settles ce_weight, kd_weight and temperature as described above; image_size is
 * the training view's. Writes one line saying where the weights came from into
 * source (e.g. "recipe cifar, chosen for 32 px images (<= 64 px: cifar)"). */
void kd_train_resolve_losses(kd_train_options *o, int image_size, char *source, size_t len);

/* The start-up lines: effective loss weights and temperature, optimiser, schedule.
 * Two lines, each ending in '\n'. */
void kd_train_describe(const kd_train_options *o, const char *source, char *buf, size_t len);

#endif
