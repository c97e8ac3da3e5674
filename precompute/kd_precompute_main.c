/* kd_precompute_main.c - entry point of kd-precompute: parses the command line,
 * runs the job (precompute_run.h) and prints progress, skipped images and the
 * per-stage throughput. Errors: one line on stderr, exit 1 (2 for bad flags). */
#include <stdio.h>
#include <string.h>

#include "common/base/cli.h"
#include "common/base/progress.h"
#include "common/base/version.h"
#include "common/dist/dist.h"
#include "precompute/precompute_options.h"
#include "precompute/plan_only.h"
#include "precompute/precompute_ranks.h"
#include "precompute/precompute_run.h"

/* Skipped images named one per line; past this many they are only counted
 * (a bad disk must not flood the log). */
#define SKIP_LINES 10

typedef struct ui {
    int quiet;
    kdc_progress *progress;
    long long skipped;
} ui;

static void on_skip(void *ctx, const char *path, const char *reason)
{
    ui *u = ctx;
    /* Always shown (also with --quiet): the cache will lack these images. */
    if (++u->skipped <= SKIP_LINES)
        fprintf(stderr, "kd-precompute: skipped %s: %s\n", path, reason);
    if (u->skipped == SKIP_LINES + 1)
        fprintf(stderr, "kd-precompute: more images skipped; they are counted, not named\n");
}

static void on_note(void *ctx, const char *msg)
{
    ui *u = ctx;
    if (!u->quiet)
        fprintf(stderr, "kd-precompute: %s\n", msg);
}

static double rate(double n, double s)
{
    return s > 0 ? n / s : 0;
}

/* ranks > 1: the figures are rank 0's shard, not the merged file. */
static void report(const kd_precompute_options *o, const kd_precompute_stats *s, int ranks)
{
    if (s->already_complete) {
        fprintf(stderr, "kd-precompute: %s%s is already complete (same arguments); nothing to do\n",
                ranks > 1 ? "rank 0's shard of " : "", o->out);
        return;
    }
    double imgs = (double)s->images_run;
    fprintf(stderr,
            "kd-precompute: wrote %s%s: %lld of %lld images x %d view%s (%lld done before, %lld "
            "skipped) in %.1f s: %.1f img/s end to end (setup %.1f s)\n",
            ranks > 1 ? "rank 0's shard of " : "", o->out, (long long)s->range_images, (long long)s->num_images, s->views,
            s->views == 1 ? "" : "s", (long long)s->done_before, (long long)s->images_skipped,
            s->run_s, rate(imgs, s->run_s), s->setup_s);
    fprintf(stderr,
            "kd-precompute: stages: decode %d thread%s, teacher waited %.1f s for images; "
            "forward %.1f img/s (%.1f s busy, %d thread%s); write %.1f img/s (%.1f s busy), "
            "teacher waited %.1f s for buffers\n",
            s->decode_threads, s->decode_threads == 1 ? "" : "s", s->decode_wait_s,
            rate(imgs, s->forward_s), s->forward_s, s->compute_threads,
            s->compute_threads == 1 ? "" : "s", rate(imgs, s->write_s), s->write_s,
            s->write_wait_s);
}

int main(int argc, char **argv)
{
    kd_precompute_options o;
    kdc_error err = {0};
    int action = KDC_CLI_RUN;
    if (kd_precompute_parse_options(argc, argv, &o, &action, &err) != KDC_OK) {
        fprintf(stderr, "kd-precompute: %s\n", err.msg);
        return KDC_EXIT_USAGE;
    }
    if (action == KDC_CLI_HELP) {
        fputs(kd_precompute_usage(), stdout);
        return KDC_EXIT_OK;
    }
    if (action == KDC_CLI_VERSION) {
        char v[512];
        kdc_version_text("kd-precompute", v, sizeof v);
        fputs(v, stdout);
        return KDC_EXIT_OK;
    }
    /* Under mpirun, srun or torchrun-style variables: rank r of R computes
     * shard r/R and rank 0 merges them into --out (precompute_ranks.h). */
    kdc_dist *dist = NULL;
    if (kdc_dist_init(&dist, &err)) {
        fprintf(stderr, "kd-precompute: %s\n", err.msg);
        return KDC_EXIT_FAILURE;
    }
    int rank = kdc_dist_rank(dist), ranks = kdc_dist_size(dist);
    kdc_progress progress;
    kdc_progress_init(&progress, stderr, "kd-precompute", 0, "img", o.quiet || rank > 0);
    kdc_progress_set_log_every(&progress, o.log_every);
    ui u = {.quiet = o.quiet, .progress = &progress};
    kd_precompute_hooks hooks = {
        .ctx = &u, .on_skip = on_skip, .on_note = on_note, .progress = &progress};
    kd_precompute_stats stats;
    int merged = 0;
    if (o.plan_only && ranks > 1) { /* a plan is seconds of work: one writer, no shards */
        if (rank == 0)
            fprintf(stderr, "kd-precompute: --plan-only runs as one process, not %d ranks\n",
                    ranks);
        kdc_dist_finish(dist);
        return KDC_EXIT_USAGE;
    }
    kdc_status st = o.plan_only ? kd_precompute_plan(&o, &hooks, &stats, &err)
                                : kd_precompute_run_ranks(&o, dist, &hooks, &stats, &merged, &err);
    if (st != KDC_OK) {
        if (progress.done && progress.is_tty && !o.quiet)
            fputc('\n', stderr);
        if (ranks > 1) {
            /* Every failure of kd_precompute_run_ranks is agreed (every rank
             * returns one), so each rank can print and leave: no MPI_Abort,
             * which may kill the rank that failed before its message is out. */
            fprintf(stderr, "kd-precompute: rank %d of %d: %s\n", rank, ranks, err.msg);
            kdc_dist_finish(dist);
            return KDC_EXIT_FAILURE;
        }
        fprintf(stderr, "kd-precompute: %s\n", err.msg);
        kdc_dist_finish(dist);
        return KDC_EXIT_FAILURE;
    }
    kdc_dist_finish(dist);
    if (rank > 0)
        return KDC_EXIT_OK; /* rank 0 reports for the job */
    if (!stats.already_complete)
        kdc_progress_finish(&progress);
    if (stats.images_skipped > 0)
        fprintf(stderr,
                "kd-precompute: skipped %lld of %lld images (unreadable, or the teacher's "
                "output not finite): the cache marks them skipped and kd-train leaves them "
                "out\n",
                (long long)stats.images_skipped, (long long)stats.images_run);
    if (o.plan_only && !o.quiet)
        fprintf(stderr, "kd-precompute: wrote the plan %s: %lld images x %d view%s in %.1f s\n",
                o.out, (long long)stats.num_images, stats.views, stats.views == 1 ? "" : "s",
                stats.run_s);
    else if (!o.quiet)
        report(&o, &stats, ranks);
    if (merged && !o.quiet)
        fprintf(stderr, "kd-precompute: %d ranks: merged their shards into %s\n", ranks, o.out);
    return KDC_EXIT_OK;
}
