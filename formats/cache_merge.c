/* cache_merge.c - shard checks and chunk-by-chunk copy into one file. */
#include "formats/cache_merge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/cache_reader.h"
#include "formats/cache_writer.h"

static kdc_status check_shards(cache_reader **r, const char *const *in, int n, int **owner_out,
                               kdc_error *err)
{
    const cache_header *h0 = cache_reader_header(r[0]);
    if (h0->shard_count != n)
        return kdc_fail(err, KDC_EINVAL, "%s is shard %lld of %lld but %d files were given",
                        in[0], (long long)h0->shard_index, (long long)h0->shard_count, n);
    for (int i = 0; i < n; i++) {
        const cache_header *h = cache_reader_header(r[i]);
        const char *d = cache_header_diff(h0, h, 1);
        if (d)
            return kdc_fail(err, KDC_EMISMATCH, "%s: attribute %s differs from %s", in[i], d,
                            in[0]);
        /* v2 shards have no fingerprint: the tables themselves must agree. */
        const cache_image_table *t0 = cache_reader_images(r[0]), *t = cache_reader_images(r[i]);
        for (int64_t k = 0; k < t->count; k++)
            if (strcmp(t0->path[k], t->path[k]) || t0->label[k] != t->label[k])
                return kdc_fail(err, KDC_EMISMATCH,
                                "%s: image %lld (%s) differs from %s (another dataset?)", in[i],
                                (long long)k, t->path[k], in[0]);
        if (!h->complete)
            return kdc_fail(err, KDC_EINVAL, "%s: shard %lld/%lld is incomplete", in[i],
                            (long long)h->shard_index, (long long)h->shard_count);
        for (int j = 0; j < i; j++)
            if (cache_reader_header(r[j])->shard_index == h->shard_index)
                return kdc_fail(err, KDC_EINVAL, "%s and %s are both shard %lld", in[j], in[i],
                                (long long)h->shard_index);
    }
    int64_t nch = cache_reader_num_chunks(r[0]);
    int *owner = malloc((size_t)nch * sizeof *owner);
    if (!owner)
        return kdc_fail(err, KDC_ENOMEM, "merge");
    for (int64_t c = 0; c < nch; c++) {
        owner[c] = -1;
        for (int i = 0; i < n; i++) {
            if (!cache_reader_chunk_done(r[i], c))
                continue;
            if (owner[c] >= 0) {
                kdc_status st = kdc_fail(err, KDC_EINVAL,
                                         "chunk %lld is in both %s and %s (overlap)",
                                         (long long)c, in[owner[c]], in[i]);
                free(owner);
                return st;
            }
            owner[c] = i;
        }
        if (owner[c] < 0) {
            free(owner);
            return kdc_fail(err, KDC_EINVAL, "chunk %lld is in none of the shards",
                            (long long)c);
        }
    }
    *owner_out = owner;
    return KDC_OK;
}

kdc_status cache_merge(const char *out, const char *const *inputs, int n, kdc_error *err)
{
    if (n < 1)
        return kdc_fail(err, KDC_EINVAL, "merge: no input files");
    /* Never overwrite: OUT may be one of the inputs, or another cache. */
    struct stat sb;
    if (lstat(out, &sb) == 0)
        return kdc_fail(err, KDC_EINVAL, "%s exists: refusing to overwrite it", out);
    cache_reader **r = calloc((size_t)n, sizeof *r);
    if (!r)
        return kdc_fail(err, KDC_ENOMEM, "merge");
    kdc_status st = KDC_OK;
    for (int i = 0; i < n && st == KDC_OK; i++)
        st = cache_reader_open(inputs[i], CACHE_OPEN_ALLOW_INCOMPLETE, &r[i], err);
    int *owner = NULL;
    if (st == KDC_OK)
        st = check_shards(r, inputs, n, &owner, err);
    cache_writer *w = NULL;
    cache_chunk c;
    memset(&c, 0, sizeof c);
    if (st == KDC_OK) {
        cache_header h = *cache_reader_header(r[0]);
        h.shard_index = 0;
        h.shard_count = 1;
        st = cache_writer_create(out, &h, cache_reader_images(r[0]), NULL, &w, err);
    }
    if (st == KDC_OK)
        st = cache_chunk_alloc(&c, cache_reader_header(r[0]), err);
    for (int64_t k = 0; st == KDC_OK && k < cache_reader_num_chunks(r[0]); k++) {
        st = cache_reader_read_chunk(r[owner[k]], k, &c, err);
        if (st == KDC_OK)
            st = cache_writer_write_stored(w, k, &c, err);
    }
    if (w) {
        if (st == KDC_OK)
            st = cache_writer_finish(w, err);
        else {
            /* Nothing to resume in a merge: leave no partial file behind. */
            cache_writer_abort(w);
            char *partial = malloc(strlen(out) + 9);
            if (partial) {
                sprintf(partial, "%s.partial", out);
                remove(partial);
                free(partial);
            }
        }
    }
    cache_chunk_free(&c);
    free(owner);
    for (int i = 0; i < n; i++)
        cache_reader_close(r[i]);
    free(r);
    return st;
}
