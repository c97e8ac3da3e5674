/* precompute_ranks.c - shards on the ranks, one merge on rank 0. */
#include "precompute/precompute_ranks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/fileutil.h"
#include "formats/cache_merge.h"

#define NAME_MAX_LEN 4096

static kdc_status shard_name(const char *out, int r, int R, char *buf, kdc_error *err)
{
    int n = snprintf(buf, NAME_MAX_LEN, "%s.shard-%d-of-%d", out, r, R);
    if (n < 0 || n >= NAME_MAX_LEN)
        return kdc_fail(err, KDC_EINVAL, "--out %s: path too long", out);
    return KDC_OK;
}

kdc_status kd_precompute_run_ranks(const kd_precompute_options *o, kdc_dist *d,
                                   const kd_precompute_hooks *hooks, kd_precompute_stats *stats,
                                   int *merged, kdc_error *err)
{
    *merged = 0;
    int R = kdc_dist_size(d), r = kdc_dist_rank(d);
    if (R == 1)
        return kd_precompute_run(o, hooks, stats, err);
    kdc_status st = KDC_OK;
    if (o->shard_count > 1)
        st = kdc_fail(err, KDC_EINVAL,
                      "--shard %d/%d with %d ranks: the ranks are the shards; use one or the "
                      "other",
                      o->shard_index, o->shard_count, R);
    /* A finished OUT: with --resume the job is done (rank 0 checks it is the
     * same run, as one process would); without, the one-process refusal. */
    int64_t out_exists = !st && r == 0 && kdc_path_exists(o->out);
    if (!st && out_exists && !o->resume)
        st = kdc_fail(err, KDC_EINVAL,
                      "%s exists: remove it first (or add --resume to check it is complete)",
                      o->out);
    if ((st = kdc_dist_agree(d, st, "checking --out", err)) ||
        (st = kdc_dist_bcast(d, &out_exists, sizeof out_exists, 0, err)))
        return st;
    if (out_exists) {
        st = r == 0 ? kd_precompute_run(o, hooks, stats, err) : KDC_OK;
        if (r != 0)
            memset(stats, 0, sizeof *stats), stats->already_complete = 1;
        return kdc_dist_agree(d, st, "checking the finished cache", err);
    }

    char mine[NAME_MAX_LEN];
    char device[64];
    kd_precompute_options os = *o;
    if ((st = shard_name(o->out, r, R, mine, err)))
        return kdc_dist_agree(d, st, "naming the shards", err);
    os.out = mine;
    os.shard_index = r;
    os.shard_count = R;
    if (o->device && !strcmp(o->device, "cuda")) { /* one GPU per rank */
        snprintf(device, sizeof device, "cuda:%d", kdc_dist_local_rank(d));
        os.device = device;
    }
    st = kd_precompute_run(&os, hooks, stats, err);
    if (st)
        kdc_error_prefix(err, "shard %d/%d: ", r, R);
    if ((st = kdc_dist_agree(d, st, "a shard", err)))
        return st;

    if (r == 0) {
        char **names = calloc((size_t)R, sizeof *names);
        if (!names)
            st = kdc_fail(err, KDC_ENOMEM, "out of memory");
        for (int i = 0; i < R && !st; i++)
            if (!(names[i] = malloc(NAME_MAX_LEN)))
                st = kdc_fail(err, KDC_ENOMEM, "out of memory");
            else
                st = shard_name(o->out, i, R, names[i], err);
        if (!st && !(st = cache_merge(o->out, (const char *const *)names, R, err))) {
            *merged = 1;
            for (int i = 0; i < R; i++)
                unlink(names[i]); /* OUT holds every chunk now */
        }
        if (st)
            kdc_error_prefix(err, "merging the %d shards into %s: ", R, o->out);
        for (int i = 0; names && i < R; i++)
            free(names[i]);
        free(names);
    }
    return kdc_dist_agree(d, st, "the merge", err);
}
