/* precompute_options.c - getopt_long parsing and validation of kd-precompute's flags. */
#include "precompute/precompute_options.h"

#include <getopt.h>
#include <string.h>

#include "common/base/cli.h"

static const char USAGE[] =
    "usage: kd-precompute (--data DIR | --list FILE) --teacher ARCH --weights FILE.safetensors\n"
    "                     --out CACHE.h5 [options]\n"
    "\n"
    "Runs the teacher once over every image and view and writes its logits and pooled\n"
    "features to one HDF5 cache (LZ4-compressed) that kd-train reads.\n"
    "Exit status: 0 done, 1 failed, 2 bad command line.\n"
    "\n"
    "  --data DIR             ImageFolder root (DIR/<class>/<image>)\n"
    "  --list FILE            or a file of 'relative/path<TAB>label' lines (paths relative to\n"
    "                         the list's folder)\n"
    "  --teacher ARCH         any architecture of docs/MODELS.md (torchvision: resnet18..152,\n"
    "                         mobilenet_v2, shufflenet_v2_x1_0, regnet_y_16gf, ...; mdistiller:\n"
    "                         mobilenet_v1, resnet8x4, resnet56, wrn_40_2, vgg13, ResNet50,\n"
    "                         MobileNetV2, ShuffleV2, ...); an unknown name lists them all\n"
    "  --weights FILE         teacher weights (torchvision state_dict names, safetensors)\n"
    "  --out CACHE.h5         output (written as CACHE.h5.partial, renamed when complete)\n"
    "views:\n"
    "  --view-policy center|rrc|pad-crop (center)  --views V (1; rrc/pad-crop may use more)\n"
    "  --scale a,b (0.08,1)  --ratio a,b (0.75,1.3333)  --pad P (4)\n"
    "  --image-size S (224)  --resize-size R (256)  --mean r,g,b  --std r,g,b\n"
    "storage:\n"
    "  --logits float16|float32|topk:K (float16)   --no-features\n"
    "run:\n"
    "  --batch B (32)  --threads T (all cores)  --device cpu|cuda[:i] (cpu)\n"
    "  --precision fp32|tf32|fp16 (fp32)  the teacher's convolution/linear arithmetic;\n"
    "                 tf32 and fp16 need --device cuda (docs/GPU.md: logit differences)\n"
    "  --order shuffled|dataset (shuffled)  cache row order: a --seed permutation of\n"
    "                 the images, so every chunk mixes classes (kd-train's chunk shuffle\n"
    "                 then gives near-iid batches); dataset: the listing's (class-sorted) order\n"
    "  --shard i/n     process the i-th of n contiguous, chunk-aligned image ranges\n"
    "  --resume        complete an interrupted run (same arguments required)\n"
    "  --strict        stop at the first unreadable image (default: record and skip it)\n"
    "  --log-every SECONDS (30)  progress line interval when stderr is not a terminal\n"
    "                 (a log file, a Slurm job); 0: every batch\n"
    "  --seed S (0)  --quiet  -h, --help  --version\n"
    "tuning:\n"
    "  --chunk-images N  images per HDF5 chunk (default: ~1 MiB chunks, a multiple of 64)\n"
    "  --decode-threads T  JPEG decoding threads (default: --threads)\n"
    "\n"
    "  --plan-only     write the image table and every view, no teacher outputs, for a\n"
    "                  teacher run elsewhere (python/kdcache fill(); docs/PYTHON.md); no\n"
    "                  --teacher/--weights; --num-classes C (default: the class folders)\n"
    "                  --feature-dim D (0: no features)\n";

const char *kd_precompute_usage(void)
{
    return USAGE;
}

enum {
    O_DATA = 256, O_LIST, O_TEACHER, O_WEIGHTS, O_OUT, O_VIEWS, O_VIEW_POLICY, O_SCALE,
    O_RATIO, O_PAD, O_IMAGE_SIZE, O_RESIZE_SIZE, O_LOGITS, O_NO_FEATURES, O_BATCH, O_THREADS,
    O_DEVICE, O_SHARD, O_RESUME, O_SEED, O_QUIET, O_STRICT, O_MEAN, O_STD, O_HELP,
    O_CHUNK_IMAGES, O_DECODE_THREADS, O_PRECISION, O_ORDER, O_VERSION, O_LOG_EVERY,
    O_PLAN_ONLY, O_NUM_CLASSES, O_FEATURE_DIM
};

static const struct option LONGOPTS[] = {
    {"data", required_argument, 0, O_DATA},
    {"list", required_argument, 0, O_LIST},
    {"teacher", required_argument, 0, O_TEACHER},
    {"weights", required_argument, 0, O_WEIGHTS},
    {"out", required_argument, 0, O_OUT},
    {"views", required_argument, 0, O_VIEWS},
    {"view-policy", required_argument, 0, O_VIEW_POLICY},
    {"scale", required_argument, 0, O_SCALE},
    {"ratio", required_argument, 0, O_RATIO},
    {"pad", required_argument, 0, O_PAD},
    {"image-size", required_argument, 0, O_IMAGE_SIZE},
    {"resize-size", required_argument, 0, O_RESIZE_SIZE},
    {"logits", required_argument, 0, O_LOGITS},
    {"no-features", no_argument, 0, O_NO_FEATURES},
    {"batch", required_argument, 0, O_BATCH},
    {"threads", required_argument, 0, O_THREADS},
    {"device", required_argument, 0, O_DEVICE},
    {"shard", required_argument, 0, O_SHARD},
    {"resume", no_argument, 0, O_RESUME},
    {"seed", required_argument, 0, O_SEED},
    {"quiet", no_argument, 0, O_QUIET},
    {"strict", no_argument, 0, O_STRICT},
    {"mean", required_argument, 0, O_MEAN},
    {"std", required_argument, 0, O_STD},
    {"help", no_argument, 0, O_HELP},
    {"chunk-images", required_argument, 0, O_CHUNK_IMAGES},
    {"decode-threads", required_argument, 0, O_DECODE_THREADS},
    {"precision", required_argument, 0, O_PRECISION},
    {"order", required_argument, 0, O_ORDER},
    {"version", no_argument, 0, O_VERSION},
    {"log-every", required_argument, 0, O_LOG_EVERY},
    {"plan-only", no_argument, 0, O_PLAN_ONLY},
    {"num-classes", required_argument, 0, O_NUM_CLASSES},
    {"feature-dim", required_argument, 0, O_FEATURE_DIM},
    {0, 0, 0, 0},
};

static const double IMAGENET_MEAN[3] = {0.485, 0.456, 0.406};
static const double IMAGENET_STD[3] = {0.229, 0.224, 0.225};

kdc_status kd_precompute_parse_options(int argc, char **argv, kd_precompute_options *o,
                                       int *help, kdc_error *err)
{
    memset(o, 0, sizeof *o);
    o->device = "cpu";
    o->view_policy = "center";
    o->views = 1;
    o->pad = 4;
    o->image_size = 224;
    o->resize_size = 256;
    o->scale[0] = 0.08;
    o->scale[1] = 1.0;
    o->ratio[0] = 3.0 / 4.0;
    o->ratio[1] = 4.0 / 3.0;
    memcpy(o->mean, IMAGENET_MEAN, sizeof o->mean);
    memcpy(o->std, IMAGENET_STD, sizeof o->std);
    o->logits = KD_LOGITS_F16;
    o->batch = 32;
    o->shard_count = 1;
    o->log_every = KDC_LOG_EVERY_DEFAULT_S;
    *help = KDC_CLI_RUN;

    long v;
    kdc_status st;
    optind = 1;
    opterr = 0;
    int c, li = 0, views_given = 0;
    const kdc_cli_view_fields vf = {&o->pad, &o->image_size, &o->resize_size, o->scale,
                                    o->ratio, o->mean, o->std};
    while ((c = getopt_long(argc, argv, "h", LONGOPTS, &li)) != -1) {
        const char *a = optarg;
        switch (c) {
        case O_DATA: o->data = a; break;
        case O_LIST: o->list = a; break;
        case O_TEACHER: o->teacher = a; break;
        case O_WEIGHTS: o->weights = a; break;
        case O_OUT: o->out = a; break;
        case O_DEVICE: o->device = a; break;
        case O_VIEW_POLICY: o->view_policy = a; break;
        case O_VIEWS:
            if ((st = kdc_cli_int("--views", a, 1, 4096, &v, err)))
                return st;
            o->views = (int)v;
            views_given = 1;
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
        case O_SHARD:
            if ((st = kdc_cli_shard("--shard", a, &o->shard_index, &o->shard_count, err)))
                return st;
            break;
        case O_LOGITS:
            if (!strcmp(a, "float16"))
                o->logits = KD_LOGITS_F16;
            else if (!strcmp(a, "float32"))
                o->logits = KD_LOGITS_F32;
            else if (!strncmp(a, "topk:", 5)) {
                if ((st = kdc_cli_int("--logits topk:K", a + 5, 1, 65536, &v, err)))
                    return st;
                o->logits = KD_LOGITS_TOPK;
                o->topk = (int)v;
            } else
                return kdc_fail(err, KDC_EINVAL,
                                "--logits: '%s' is not float16, float32 or topk:K", a);
            break;
        case O_NO_FEATURES: o->no_features = 1; break;
        case O_RESUME: o->resume = 1; break;
        case O_QUIET: o->quiet = 1; break;
        case O_STRICT: o->strict = 1; break;
        case O_CHUNK_IMAGES:
            if ((st = kdc_cli_int("--chunk-images", a, 1, 1 << 24, &v, err)))
                return st;
            o->chunk_images = (int)v;
            break;
        case O_DECODE_THREADS:
            if ((st = kdc_cli_int("--decode-threads", a, 1, 256, &v, err)))
                return st;
            o->decode_threads = (int)v;
            break;
        case O_PRECISION:
            if (kdc_precision_parse(a, &o->precision, err))
                return kdc_fail(err, KDC_EINVAL, "--precision: '%s' is not fp32, tf32 or fp16",
                                a);
            break;
        case O_ORDER:
            if (!strcmp(a, "shuffled"))
                o->order_dataset = 0;
            else if (!strcmp(a, "dataset"))
                o->order_dataset = 1;
            else
                return kdc_fail(err, KDC_EINVAL, "--order: '%s' is not shuffled or dataset", a);
            break;
        case O_LOG_EVERY:
            if ((st = kdc_cli_double("--log-every", a, 0, 86400, &o->log_every, err)))
                return st;
            break;
        case O_PLAN_ONLY: o->plan_only = 1; break;
        case O_NUM_CLASSES:
            if ((st = kdc_cli_int("--num-classes", a, 1, 1 << 24, &v, err)))
                return st;
            o->num_classes = (int)v;
            break;
        case O_FEATURE_DIM:
            if ((st = kdc_cli_int("--feature-dim", a, 0, 1 << 20, &v, err)))
                return st;
            o->feature_dim = (int)v;
            break;
        case 'h':
        case O_HELP: *help = KDC_CLI_HELP; return KDC_OK;
        case O_VERSION: *help = KDC_CLI_VERSION; return KDC_OK;
        default:
            return kdc_fail(err, KDC_EINVAL, "unknown option or missing value: %s (see --help)",
                            argv[optind - 1]);
        }
    }
    if (optind < argc)
        return kdc_fail(err, KDC_EINVAL, "unexpected argument '%s' (see --help)", argv[optind]);
    if (!o->data == !o->list)
        return kdc_fail(err, KDC_EINVAL, "give exactly one of --data DIR or --list FILE");
    if (o->plan_only && (o->teacher || o->weights || o->resume || o->shard_count != 1))
        return kdc_fail(err, KDC_EINVAL,
                        "--plan-only takes no --teacher, --weights, --resume or --shard");
    if (!o->plan_only && (o->num_classes || o->feature_dim))
        return kdc_fail(err, KDC_EINVAL, "--num-classes and --feature-dim go with --plan-only");
    if (!o->teacher && !o->plan_only)
        return kdc_fail(err, KDC_EINVAL, "--teacher ARCH is required (see --help)");
    if (!o->weights && !o->plan_only)
        return kdc_fail(err, KDC_EINVAL, "--weights FILE.safetensors is required");
    if (!o->out)
        return kdc_fail(err, KDC_EINVAL, "--out CACHE.h5 is required");
    /* Checked here as well as by the backend: a CPU run is refused in a
     * millisecond, before the dataset is listed. */
    if (o->precision != KDC_PREC_FP32 && strncmp(o->device, "cuda", 4))
        return kdc_fail(err, KDC_EINVAL,
                        "--precision %s needs --device cuda (the CPU computes in fp32 only)",
                        kdc_precision_name(o->precision));
    if (!strcmp(o->view_policy, "center")) {
        if (views_given && o->views != 1)
            return kdc_fail(err, KDC_EINVAL, "--view-policy center has exactly 1 view");
    } else if (strcmp(o->view_policy, "rrc") && strcmp(o->view_policy, "pad-crop")) {
        return kdc_fail(err, KDC_EINVAL, "--view-policy: '%s' is not center, rrc or pad-crop",
                        o->view_policy);
    }
    if (o->resize_size < o->image_size && !strcmp(o->view_policy, "center"))
        return kdc_fail(err, KDC_EINVAL, "--resize-size %d is smaller than --image-size %d",
                        o->resize_size, o->image_size);
    return KDC_OK;
}
