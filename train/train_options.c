/* train_options.c - getopt_long parsing and validation of kd-train's flags. */
#include "train/train_options.h"

#include <getopt.h>
#include <string.h>

#include "common/base/cli.h"
#include "train/recipe.h"

static const char USAGE[] =
    "usage: kd-train --data DIR [--cache CACHE.h5] --student ARCH --out RUN_DIR [options]\n"
    "       kd-train --eval-only --weights RUN_DIR/student.safetensors --val DIR [options]\n"
    "\n"
    "Trains a student from an image folder and, with --cache, from a teacher cache made\n"
    "by kd-precompute (the teacher is never loaded). Writes RUN_DIR/metrics.csv and\n"
    "RUN_DIR/student.safetensors. Exit status: 0 done, 1 failed, 2 bad command line.\n"
    "\n"
    "data and model:\n"
    "  --data DIR            training images (ImageFolder: DIR/<class>/<image>)\n"
    "  --cache FILE.h5       teacher cache; views are replayed from it; turns KD on\n"
    "  --student ARCH        any architecture of docs/MODELS.md (torchvision: resnet18..152,\n"
    "                        mobilenet_v2, shufflenet_v2_x1_0, regnet_y_16gf, ...; mdistiller:\n"
    "                        mobilenet_v1, resnet8x4, resnet56, wrn_40_2, vgg13, ResNet50,\n"
    "                        MobileNetV2, ShuffleV2, ...); an unknown name lists them all\n"
    "  --out RUN_DIR         output folder\n"
    "  --val DIR             evaluate on this ImageFolder (center view) after every epoch\n"
    "  --init FILE           start from these weights (projector.weight/bias too, if present)\n"
    "  --eval-only --weights FILE   only evaluate saved student weights on --val\n"
    "  --skip-bad-images     --eval-only: leave unreadable images out (counted, named)\n"
    "                        instead of failing, as a torchvision ImageFolder would\n"
    "recipes (explicit flags override them, in any order):\n"
    "  --recipe cifar        mdistiller's CIFAR-100 KD/DOT: CE 0.1 + KD 0.9, T 4, lr 0.05,\n"
    "                        batch 64, wd 5e-4, 240 epochs, step x0.1 at 150,180,210,\n"
    "                        momentum 0.9, DOT delta 0.075\n"
    "  --recipe imagenet     CE 0.5 + KD 0.5, T 1, lr 0.2, batch 512, wd 1e-4, 100 epochs,\n"
    "                        step x0.1 at 30,60,90, momentum 0.9, DOT delta 0.09\n"
    "optimisation (defaults without a recipe):\n"
    "  --epochs E (10)  --batch B (64)  --lr LR (0.05)  --wd WD (5e-4)\n"
    "  --schedule cosine|step|constant (cosine)  --warmup-epochs W (0)\n"
    "  --lr-steps a,b,c (epochs; for step)  --lr-gamma G (0.1)\n"
    "  --optimizer sgd|dot (sgd)  --momentum M (0.9)  --dot-delta D (0.075)\n"
    "losses:\n"
    "  --ce-weight A  --kd-weight B  --temperature T   without them: with --cache the\n"
    "                        recipe's (--recipe, else cifar for images <= 64 px, imagenet\n"
    "                        above); without a cache CE 1 only; --kd-weight 0: CE 1 only\n"
    "  --proj-weight G (0)  --proj-alpha ALPHA (4)  --proj-task-side (DOT: projector\n"
    "                        term on the task momentum instead of the distillation one)\n"
    "views without a cache (ignored with --cache, which fixes them):\n"
    "  --view-policy rrc|pad-crop|center (rrc)  --scale a,b (0.08,1)  --ratio a,b (0.75,1.3333)\n"
    "  --pad P (4)  --image-size S (224)  --resize-size R (256)\n"
    "  --mean r,g,b  --std r,g,b (ImageNet defaults)\n"
    "evaluation only:\n"
    "  --eval-only --weights FILE   evaluate saved weights on --val; a kd-train student\n"
    "                        carries its architecture, classes, image and resize size,\n"
    "                        mean/std and view policy, so nothing else is needed; files\n"
    "                        without them (e.g. a torchvision export) need --student and\n"
    "                        the view flags\n"
    "  --force               use view/model flags that disagree with the weights' metadata\n"
    "run:\n"
    "  --device cpu|cuda[:i] (cpu)  --threads T (all cores)  --seed S (0)\n"
    "  --log-every SECONDS (30)  progress line interval when stderr is not a terminal\n"
    "                        (a log file, a Slurm job); 0: every step\n"
    "  --sync-bn             several ranks: batch statistics over the global batch\n"
    "                        (PyTorch's SyncBatchNorm; default: each rank's own)\n"
    "  --no-shuffle  --resume  --quiet  -h, --help  --version\n";

const char *kd_train_usage(void)
{
    return USAGE;
}

enum {
    O_DATA = 256, O_CACHE, O_STUDENT, O_OUT, O_VAL, O_EPOCHS, O_BATCH, O_LR, O_WD, O_SCHEDULE,
    O_WARMUP, O_LR_STEPS, O_LR_GAMMA, O_OPTIMIZER, O_MOMENTUM, O_DOT_DELTA, O_CE_W, O_KD_W,
    O_TEMP, O_PROJ_W, O_PROJ_ALPHA, O_DEVICE, O_INIT, O_NO_SHUFFLE, O_THREADS, O_RESUME, O_SEED,
    O_QUIET, O_EVAL_ONLY, O_WEIGHTS, O_VIEW_POLICY, O_SCALE, O_RATIO, O_PAD, O_IMAGE_SIZE,
    O_RESIZE_SIZE, O_MEAN, O_STD, O_PROJ_TASK, O_HELP, O_VERSION, O_RECIPE, O_LOG_EVERY,
    O_FORCE, O_SKIP_BAD, O_SYNC_BN
};

static const struct option LONGOPTS[] = {
    {"data", required_argument, 0, O_DATA},
    {"cache", required_argument, 0, O_CACHE},
    {"student", required_argument, 0, O_STUDENT},
    {"out", required_argument, 0, O_OUT},
    {"val", required_argument, 0, O_VAL},
    {"epochs", required_argument, 0, O_EPOCHS},
    {"batch", required_argument, 0, O_BATCH},
    {"lr", required_argument, 0, O_LR},
    {"wd", required_argument, 0, O_WD},
    {"schedule", required_argument, 0, O_SCHEDULE},
    {"warmup-epochs", required_argument, 0, O_WARMUP},
    {"lr-steps", required_argument, 0, O_LR_STEPS},
    {"lr-gamma", required_argument, 0, O_LR_GAMMA},
    {"optimizer", required_argument, 0, O_OPTIMIZER},
    {"momentum", required_argument, 0, O_MOMENTUM},
    {"dot-delta", required_argument, 0, O_DOT_DELTA},
    {"ce-weight", required_argument, 0, O_CE_W},
    {"kd-weight", required_argument, 0, O_KD_W},
    {"temperature", required_argument, 0, O_TEMP},
    {"proj-weight", required_argument, 0, O_PROJ_W},
    {"proj-alpha", required_argument, 0, O_PROJ_ALPHA},
    {"proj-task-side", no_argument, 0, O_PROJ_TASK},
    {"device", required_argument, 0, O_DEVICE},
    {"init", required_argument, 0, O_INIT},
    {"no-shuffle", no_argument, 0, O_NO_SHUFFLE},
    {"threads", required_argument, 0, O_THREADS},
    {"resume", no_argument, 0, O_RESUME},
    {"seed", required_argument, 0, O_SEED},
    {"quiet", no_argument, 0, O_QUIET},
    {"eval-only", no_argument, 0, O_EVAL_ONLY},
    {"weights", required_argument, 0, O_WEIGHTS},
    {"view-policy", required_argument, 0, O_VIEW_POLICY},
    {"scale", required_argument, 0, O_SCALE},
    {"ratio", required_argument, 0, O_RATIO},
    {"pad", required_argument, 0, O_PAD},
    {"image-size", required_argument, 0, O_IMAGE_SIZE},
    {"resize-size", required_argument, 0, O_RESIZE_SIZE},
    {"mean", required_argument, 0, O_MEAN},
    {"std", required_argument, 0, O_STD},
    {"help", no_argument, 0, O_HELP},
    {"version", no_argument, 0, O_VERSION},
    {"recipe", required_argument, 0, O_RECIPE},
    {"log-every", required_argument, 0, O_LOG_EVERY},
    {"force", no_argument, 0, O_FORCE},
    {"sync-bn", no_argument, 0, O_SYNC_BN},
    {"skip-bad-images", no_argument, 0, O_SKIP_BAD},
    {0, 0, 0, 0},
};

static void defaults(kd_train_options *o)
{
    memset(o, 0, sizeof *o);
    o->device = "cpu";
    o->epochs = 10;
    o->batch = 64;
    o->lr = 0.05;
    o->wd = 5e-4;
    o->momentum = 0.9;
    o->dot_delta = 0.075;
    o->schedule = KD_SCHED_COSINE;
    o->lr_gamma = 0.1;
    o->optimizer = KD_OPT_SGD;
    o->ce_weight = 1.0;
    o->temperature = 4.0;
    o->proj_alpha = 4.0;
    o->view_policy = "rrc";
    o->scale[0] = 0.08;
    o->scale[1] = 1.0;
    o->ratio[0] = 3.0 / 4.0;
    o->ratio[1] = 4.0 / 3.0;
    o->pad = 4;
    o->image_size = 224;
    o->resize_size = 256;
    o->threads = 0;
    o->log_every = KDC_LOG_EVERY_DEFAULT_S;
}

/* The KD_GIVEN_* bit of an option, or -1. */
static int given_bit(int c)
{
    switch (c) {
    case O_EPOCHS: return KD_GIVEN_EPOCHS;
    case O_BATCH: return KD_GIVEN_BATCH;
    case O_LR: return KD_GIVEN_LR;
    case O_WD: return KD_GIVEN_WD;
    case O_SCHEDULE: return KD_GIVEN_SCHEDULE;
    case O_LR_STEPS: return KD_GIVEN_LR_STEPS;
    case O_LR_GAMMA: return KD_GIVEN_LR_GAMMA;
    case O_MOMENTUM: return KD_GIVEN_MOMENTUM;
    case O_DOT_DELTA: return KD_GIVEN_DOT_DELTA;
    case O_CE_W: return KD_GIVEN_CE_W;
    case O_KD_W: return KD_GIVEN_KD_W;
    case O_TEMP: return KD_GIVEN_TEMP;
    case O_STUDENT: return KD_GIVEN_STUDENT;
    case O_IMAGE_SIZE: return KD_GIVEN_IMAGE_SIZE;
    case O_RESIZE_SIZE: return KD_GIVEN_RESIZE_SIZE;
    case O_MEAN: return KD_GIVEN_MEAN;
    case O_STD: return KD_GIVEN_STD;
    case O_VIEW_POLICY: return KD_GIVEN_VIEW_POLICY;
    default: return -1;
    }
}

kdc_status kd_train_parse_options(int argc, char **argv, kd_train_options *o, int *help,
                                  kdc_error *err)
{
    defaults(o);
    *help = KDC_CLI_RUN;
    long v;
    kdc_status st = KDC_OK;
    optind = 1;
    opterr = 0;
    int c, li = 0;
    const kdc_cli_view_fields vf = {&o->pad, &o->image_size, &o->resize_size, o->scale,
                                    o->ratio, o->mean, o->std};
    while ((c = getopt_long(argc, argv, "h", LONGOPTS, &li)) != -1) {
        const char *a = optarg;
        if (given_bit(c) >= 0)
            o->given |= 1u << given_bit(c);
        switch (c) {
        case O_DATA: o->data = a; break;
        case O_CACHE: o->cache = a; break;
        case O_STUDENT: o->student = a; break;
        case O_OUT: o->out = a; break;
        case O_VAL: o->val = a; break;
        case O_DEVICE: o->device = a; break;
        case O_INIT: o->init = a; break;
        case O_WEIGHTS: o->weights = a; break;
        case O_VIEW_POLICY: o->view_policy = a; break;
        case O_EPOCHS:
            if ((st = kdc_cli_int("--epochs", a, 1, 100000, &v, err)))
                return st;
            o->epochs = (int)v;
            break;
        case O_BATCH:
            if ((st = kdc_cli_int("--batch", a, 1, 65536, &v, err)))
                return st;
            o->batch = (int)v;
            break;
        case O_THREADS:
            if ((st = kdc_cli_int("--threads", a, 0, 1024, &v, err)))
                return st;
            o->threads = (int)v;
            break;
        case O_SEED:
            if ((st = kdc_cli_int("--seed", a, 0, 2147483647L, &v, err)))
                return st;
            o->seed = (int)v;
            break;
        case O_PAD:
        case O_IMAGE_SIZE:
        case O_RESIZE_SIZE:
        case O_SCALE:
        case O_RATIO:
        case O_MEAN:
        case O_STD:
            if ((st = kdc_cli_view_flag(LONGOPTS[li].name, a, &vf, err)))
                return st;
            o->have_mean |= c == O_MEAN;
            o->have_std |= c == O_STD;
            break;
        case O_LR:
            if ((st = kdc_cli_double("--lr", a, 0, 100, &o->lr, err)))
                return st;
            break;
        case O_WD:
            if ((st = kdc_cli_double("--wd", a, 0, 1, &o->wd, err)))
                return st;
            break;
        case O_WARMUP:
            if ((st = kdc_cli_double("--warmup-epochs", a, 0, 100000, &o->warmup_epochs, err)))
                return st;
            break;
        case O_LR_GAMMA:
            if ((st = kdc_cli_double("--lr-gamma", a, 0, 1, &o->lr_gamma, err)))
                return st;
            break;
        case O_MOMENTUM:
            if ((st = kdc_cli_double("--momentum", a, 0, 0.9999, &o->momentum, err)))
                return st;
            break;
        case O_DOT_DELTA:
            if ((st = kdc_cli_double("--dot-delta", a, 0, 0.5, &o->dot_delta, err)))
                return st;
            break;
        case O_CE_W:
            if ((st = kdc_cli_double("--ce-weight", a, 0, 1000, &o->ce_weight, err)))
                return st;
            break;
        case O_KD_W:
            if ((st = kdc_cli_double("--kd-weight", a, 0, 1000, &o->kd_weight, err)))
                return st;
            break;
        case O_TEMP:
            if ((st = kdc_cli_double("--temperature", a, 0.01, 1000, &o->temperature, err)))
                return st;
            break;
        case O_PROJ_W:
            if ((st = kdc_cli_double("--proj-weight", a, 0, 1000, &o->proj_weight, err)))
                return st;
            break;
        case O_PROJ_ALPHA:
            if ((st = kdc_cli_double("--proj-alpha", a, 1, 16, &o->proj_alpha, err)))
                return st;
            break;
        case O_LR_STEPS:
            if ((st = kdc_cli_int_list("--lr-steps", a, 1, 100000, KD_MAX_LR_STEPS, o->lr_steps,
                                       &o->n_lr_steps, err)))
                return st;
            break;
        case O_SCHEDULE:
            if (!strcmp(a, "cosine"))
                o->schedule = KD_SCHED_COSINE;
            else if (!strcmp(a, "step"))
                o->schedule = KD_SCHED_STEP;
            else if (!strcmp(a, "constant"))
                o->schedule = KD_SCHED_CONSTANT;
            else
                return kdc_fail(err, KDC_EINVAL,
                                "--schedule: '%s' is not cosine, step or constant", a);
            break;
        case O_OPTIMIZER:
            if (!strcmp(a, "sgd"))
                o->optimizer = KD_OPT_SGD;
            else if (!strcmp(a, "dot"))
                o->optimizer = KD_OPT_DOT;
            else
                return kdc_fail(err, KDC_EINVAL, "--optimizer: '%s' is not sgd or dot", a);
            break;
        case O_NO_SHUFFLE: o->no_shuffle = 1; break;
        case O_RESUME: o->resume = 1; break;
        case O_QUIET: o->quiet = 1; break;
        case O_EVAL_ONLY: o->eval_only = 1; break;
        case O_SKIP_BAD: o->skip_bad_images = 1; break;
        case O_PROJ_TASK: o->proj_on_task_side = 1; break;
        case O_RECIPE:
            if (!kd_recipe_find(a))
                return kdc_fail(err, KDC_EINVAL, "--recipe: '%s' is not cifar or imagenet", a);
            o->recipe = a;
            break;
        case O_LOG_EVERY:
            if ((st = kdc_cli_double("--log-every", a, 0, 86400, &o->log_every, err)))
                return st;
            break;
        case O_FORCE: o->force = 1; break;
        case O_SYNC_BN: o->sync_bn = 1; break;
        case 'h':
        case O_HELP: *help = KDC_CLI_HELP; return KDC_OK;
        case O_VERSION: *help = KDC_CLI_VERSION; return KDC_OK;
        case '?':
        default:
            if (optopt)
                return kdc_fail(err, KDC_EINVAL, "option needs a value or is unknown: %s",
                                argv[optind - 1]);
            return kdc_fail(err, KDC_EINVAL, "unknown option %s (see --help)",
                            argv[optind - 1]);
        }
    }
    if (optind < argc)
        return kdc_fail(err, KDC_EINVAL, "unexpected argument '%s' (see --help)", argv[optind]);

    if (o->eval_only) {
        if (!o->weights || !o->val)
            return kdc_fail(err, KDC_EINVAL, "--eval-only needs --weights FILE and --val DIR");
        return KDC_OK;
    }
    if (o->force)
        return kdc_fail(err, KDC_EINVAL,
                        "--force only applies to --eval-only (flags over the weights' metadata)");
    if (o->recipe)
        kd_recipe_apply_training(kd_recipe_find(o->recipe), o);
    if (!o->data)
        return kdc_fail(err, KDC_EINVAL, "--data DIR is required (see --help)");
    /* PyTorch: "Expected more than 1 value per channel when training". A
     * batch of one would train nothing and still exit 0. */
    if (o->batch < 2)
        return kdc_fail(err, KDC_EINVAL,
                        "--batch %d: BatchNorm training needs more than one value per channel "
                        "(PyTorch refuses it too); use --batch 2 or more",
                        o->batch);
    if (!o->student)
        return kdc_fail(err, KDC_EINVAL, "--student ARCH is required (see --help)");
    if (!o->out)
        return kdc_fail(err, KDC_EINVAL, "--out RUN_DIR is required (see --help)");
    if (!o->cache && (o->kd_weight > 0 || o->proj_weight > 0))
        return kdc_fail(err, KDC_EINVAL,
                        "--kd-weight/--proj-weight need --cache (the teacher is never loaded)");
    /* Weights not given are settled later (recipe.h); zero only when CE is given as 0
     * and nothing can distil. */
    if (KD_WAS_GIVEN(o, KD_GIVEN_CE_W) && o->ce_weight == 0 && o->proj_weight == 0 &&
        (!o->cache || (KD_WAS_GIVEN(o, KD_GIVEN_KD_W) && o->kd_weight == 0)))
        return kdc_fail(err, KDC_EINVAL, "all loss weights are zero: nothing to train");
    if (o->schedule == KD_SCHED_STEP && o->n_lr_steps == 0)
        return kdc_fail(err, KDC_EINVAL, "--schedule step needs --lr-steps a,b,c");
    if (o->optimizer == KD_OPT_DOT && o->momentum + o->dot_delta >= 1.0)
        return kdc_fail(err, KDC_EINVAL, "--momentum + --dot-delta must stay below 1");
    if (o->optimizer == KD_OPT_DOT && o->momentum - o->dot_delta < 0)
        return kdc_fail(err, KDC_EINVAL, "--momentum - --dot-delta must not be negative");
    if (o->warmup_epochs >= o->epochs && o->warmup_epochs > 0)
        return kdc_fail(err, KDC_EINVAL, "--warmup-epochs must be below --epochs");
    if (o->warmup_epochs > 0 && o->schedule != KD_SCHED_COSINE)
        return kdc_fail(err, KDC_EINVAL, "--warmup-epochs needs --schedule cosine");
    if (o->warmup_epochs != (double)(long)o->warmup_epochs)
        return kdc_fail(err, KDC_EINVAL, "--warmup-epochs must be a whole number of epochs");
    if (strcmp(o->view_policy, "rrc") && strcmp(o->view_policy, "pad-crop") &&
        strcmp(o->view_policy, "center"))
        return kdc_fail(err, KDC_EINVAL, "--view-policy: '%s' is not rrc, pad-crop or center",
                        o->view_policy);
    return KDC_OK;
}
