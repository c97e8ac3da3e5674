/* kd_cache_main.c - kd-cache: inspect, verify, merge and export teacher
 * caches. Thin command-line layer over formats/cache_*.h: parses arguments,
 * prints, and exits non-zero with one line on any problem (1: the command
 * failed, 2: a bad command line). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/cli.h"
#include "common/base/version.h"

#include "formats/cache_export.h"
#include "formats/cache_merge.h"
#include "formats/cache_reader.h"
#include "formats/cache_upgrade.h"
#include "formats/cache_verify.h"

static const char *usage_main =
    "usage: kd-cache COMMAND ...\n"
    "  info CACHE                         summary: teacher, shapes, storage, compression\n"
    "  verify CACHE [--data DIR]          read every chunk; with --data compare the images\n"
    "  merge OUT IN...                    join the shards of kd-precompute --shard i/n\n"
    "  export CACHE --format npy --out DIR  write every dataset as .npy\n"
    "  upgrade IN OUT                     rewrite a format v1 cache as format v2\n"
    "kd-cache COMMAND --help for details; kd-cache --version for the build.\n"
    "Exit status: 0 done, 1 failed (e.g. a corrupt cache), 2 bad command line.\n";

static const char *usage_info =
    "usage: kd-cache info CACHE\n"
    "Prints the teacher, shapes, logit storage, views, chunking, compression ratio,\n"
    "completeness and dataset fingerprint. Opens partial files and shards too.\n";
static const char *usage_verify =
    "usage: kd-cache verify CACHE [--data DIR]\n"
    "Reads every chunk (fletcher32 and LZ4 checks, values in range), checks that the\n"
    "file is complete and consistent; with --data DIR also checks that DIR/<path> of\n"
    "every image has the size and CRC-32 recorded in the cache. Exit 0 when all holds.\n";
static const char *usage_merge =
    "usage: kd-cache merge OUT IN...\n"
    "Joins the n shards written by kd-precompute --shard i/n into OUT (written to\n"
    "OUT.partial and renamed; OUT must not exist). Refuses shards of another teacher or other settings,\n"
    "incomplete shards, overlapping or missing ranges.\n";
static const char *usage_export =
    "usage: kd-cache export CACHE --format npy --out DIR\n"
    "Writes each dataset as DIR/<name>.npy in its stored dtype, paths.txt and\n"
    "attributes.json.\n";

static const char *usage_upgrade =
    "usage: kd-cache upgrade IN OUT\n"
    "Rewrites the complete format v1 cache IN as format v2 in OUT (no variable-length\n"
    "HDF5 types; one view per HDF5 chunk). Values are copied bit for bit and the\n"
    "fingerprint stays the same. OUT must not exist; it is written to OUT.partial and\n"
    "renamed, and nothing is left on failure.\n";

static int print_version(void)
{
    char v[512];
    kdc_version_text("kd-cache", v, sizeof v);
    fputs(v, stdout);
    return KDC_EXIT_OK;
}

/* -h/--help anywhere among a command's arguments: 1; --version: 2. */
static int wants_help_or_version(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
        if (!strcmp(argv[i], "--version"))
            return 2;
    }
    return 0;
}

static int wants_help(int argc, char **argv)
{
    int w = wants_help_or_version(argc, argv);
    if (w == 2)
        exit(print_version());
    return w;
}

static int fail(const kdc_error *e)
{
    fprintf(stderr, "kd-cache: %s\n", e->msg);
    return 1;
}

static int bad_usage(const char *msg, const char *usage)
{
    fprintf(stderr, "kd-cache: %s\n%s", msg, usage);
    return 2;
}

static int cmd_info(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(usage_info, stdout);
        return 0;
    }
    if (argc != 1)
        return bad_usage("info takes exactly one CACHE", usage_info);
    kdc_error e;
    kdc_error_clear(&e);
    cache_reader *r;
    if (cache_reader_open(argv[0], CACHE_OPEN_ALLOW_INCOMPLETE, &r, &e) != KDC_OK)
        return fail(&e);
    const cache_header *h = cache_reader_header(r);
    const cache_image_table *t = cache_reader_images(r);
    int64_t done = 0, done_images = 0, skipped = 0, nch = cache_reader_num_chunks(r);
    for (int64_t c = 0; c < nch; c++) {
        int64_t first, count;
        cache_reader_chunk_images(r, c, &first, &count);
        done += cache_reader_chunk_done(r, c);
        done_images += cache_reader_chunk_done(r, c) ? count : 0;
    }
    for (int64_t i = 0; i < t->count; i++)
        skipped += t->skipped[i];
    uint64_t stored, raw;
    cache_reader_storage(r, &stored, &raw);
    printf("file            %s\n", argv[0]);
    printf("format          kdcache v%lld, created by %s\n", (long long)h->version,
           h->created_by);
    printf("teacher         %s (weights sha256 %s)\n", h->teacher_arch,
           h->teacher_weights_sha256);
    printf("images          %lld (%lld skipped as unreadable)\n", (long long)h->num_images,
           (long long)skipped);
    printf("views           %lld per image, policy %s, image %lld, resize %lld, pad %lld, "
           "seed %llu\n",
           (long long)h->views_per_image, h->view_policy, (long long)h->image_size,
           (long long)h->resize_size, (long long)h->pad, (unsigned long long)h->seed);
    printf("                scale [%g, %g], ratio [%g, %g], mean (%g, %g, %g), std (%g, %g, %g)\n",
           h->scale_range[0], h->scale_range[1], h->ratio_range[0], h->ratio_range[1],
           h->mean[0], h->mean[1], h->mean[2], h->std[0], h->std[1], h->std[2]);
    printf("classes         %lld\n", (long long)h->num_classes);
    if (h->logit_storage == CACHE_LOGITS_TOPK)
        printf("logits          topk:%lld (float16 values, %s indices)\n", (long long)h->topk,
               cache_topk_index_size(h) == 2 ? "uint16" : "int32");
    else
        printf("logits          %s\n", cache_logit_storage_name(h->logit_storage));
    printf("features        %lld (float16)%s\n", (long long)h->feature_dim,
           h->feature_dim ? "" : " - none stored");
    printf("chunks          %lld of %lld written, %lld images per chunk\n", (long long)done,
           (long long)nch, (long long)h->chunk_images);
    if (h->shard_count > 1)
        printf("shard           %lld of %lld\n", (long long)h->shard_index,
               (long long)h->shard_count);
    printf("complete        %s\n", h->complete ? "yes" : "NO (partial file)");
    if (raw)
        printf("storage         %.3f MB stored, %.3f MB raw, ratio %.3fx, %.1f bytes per view\n",
               stored / 1e6, raw / 1e6, (double)raw / (double)(stored ? stored : 1),
               (double)stored / (double)(done_images ? done_images * h->views_per_image : 1));
    printf("fingerprint     %s\n", h->dataset_fingerprint);
    cache_reader_close(r);
    return 0;
}

static int cmd_verify(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(usage_verify, stdout);
        return 0;
    }
    const char *cache = NULL, *data = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--data")) {
            if (i + 1 >= argc)
                return bad_usage("--data needs a directory", usage_verify);
            data = argv[++i];
        } else if (argv[i][0] == '-') {
            return bad_usage("unknown option for verify", usage_verify);
        } else if (!cache) {
            cache = argv[i];
        } else {
            return bad_usage("verify takes one CACHE", usage_verify);
        }
    }
    if (!cache)
        return bad_usage("verify needs a CACHE", usage_verify);
    kdc_error e;
    kdc_error_clear(&e);
    cache_verify_report rep;
    if (cache_verify(cache, data, &rep, &e) != KDC_OK)
        return fail(&e);
    printf("%s: ok: %lld chunks read back", cache, (long long)rep.chunks_checked);
    if (rep.shard_count > 1)
        printf(" (shard %lld of %lld)", (long long)rep.shard_index, (long long)rep.shard_count);
    if (data)
        printf(", %lld images match %s", (long long)rep.images_checked, data);
    printf("\n");
    return 0;
}

static int cmd_merge(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(usage_merge, stdout);
        return 0;
    }
    if (argc < 2)
        return bad_usage("merge needs OUT and at least one IN", usage_merge);
    kdc_error e;
    kdc_error_clear(&e);
    if (cache_merge(argv[0], (const char *const *)argv + 1, argc - 1, &e) != KDC_OK)
        return fail(&e);
    printf("%s: merged %d shards\n", argv[0], argc - 1);
    return 0;
}

static int cmd_upgrade(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(usage_upgrade, stdout);
        return 0;
    }
    if (argc != 2)
        return bad_usage("upgrade takes IN and OUT", usage_upgrade);
    kdc_error e;
    kdc_error_clear(&e);
    if (cache_upgrade(argv[0], argv[1], &e) != KDC_OK)
        return fail(&e);
    printf("%s: upgraded to format v%d in %s\n", argv[0], CACHE_VERSION, argv[1]);
    return 0;
}

static int cmd_export(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(usage_export, stdout);
        return 0;
    }
    const char *cache = NULL, *fmt = "npy", *out = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--format") && i + 1 < argc)
            fmt = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else if (argv[i][0] == '-')
            return bad_usage("unknown or incomplete option for export", usage_export);
        else if (!cache)
            cache = argv[i];
        else
            return bad_usage("export takes one CACHE", usage_export);
    }
    if (!cache || !out)
        return bad_usage("export needs CACHE and --out DIR", usage_export);
    if (strcmp(fmt, "npy"))
        return bad_usage("only --format npy is supported", usage_export);
    kdc_error e;
    kdc_error_clear(&e);
    if (cache_export_npy(cache, out, &e) != KDC_OK)
        return fail(&e);
    printf("%s: exported to %s\n", cache, out);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return KDC_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage_main, stdout);
        return KDC_EXIT_OK;
    }
    if (!strcmp(cmd, "--version"))
        return print_version();
    if (!strcmp(cmd, "info"))
        return cmd_info(argc - 2, argv + 2);
    if (!strcmp(cmd, "verify"))
        return cmd_verify(argc - 2, argv + 2);
    if (!strcmp(cmd, "merge"))
        return cmd_merge(argc - 2, argv + 2);
    if (!strcmp(cmd, "export"))
        return cmd_export(argc - 2, argv + 2);
    if (!strcmp(cmd, "upgrade"))
        return cmd_upgrade(argc - 2, argv + 2);
    fprintf(stderr, "kd-cache: unknown command '%s' (try kd-cache --help)\n", cmd);
    return KDC_EXIT_USAGE;
}
