/* cache_upgrade.c - v1 -> v2 rewrite, chunk by chunk in stored form. */
#include "formats/cache_upgrade.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/cache_reader.h"
#include "formats/cache_writer.h"

static void remove_partial(const char *out)
{
    size_t n = strlen(out) + 9;
    char *p = malloc(n);
    if (p) {
        snprintf(p, n, "%s.partial", out);
        remove(p);
        free(p);
    }
}

kdc_status cache_upgrade(const char *in, const char *out, kdc_error *err)
{
    struct stat sb;
    if (lstat(out, &sb) == 0)
        return kdc_fail(err, KDC_EINVAL, "%s exists: refusing to overwrite it", out);
    cache_reader *r;
    kdc_status st = cache_reader_open(in, CACHE_OPEN_ALLOW_INCOMPLETE | CACHE_OPEN_NO_CHUNK_CACHE,
                                      &r, err);
    if (st != KDC_OK)
        return st;
    const cache_header *h = cache_reader_header(r);
    if (h->version != CACHE_VERSION_V1)
        st = kdc_fail(err, KDC_EINVAL, "%s is already format v%lld", in, (long long)h->version);
    else if (!h->complete)
        st = kdc_fail(err, KDC_EINVAL,
                      "%s is incomplete (complete = 0): finish it with the tool that wrote it",
                      in);
    cache_writer *w = NULL;
    cache_chunk c;
    memset(&c, 0, sizeof c);
    if (st == KDC_OK)
        st = cache_writer_create(out, h, cache_reader_images(r), NULL, &w, err);
    if (st == KDC_OK)
        st = cache_chunk_alloc(&c, h, err);
    int64_t first, end;
    if (st == KDC_OK)
        cache_writer_chunk_range(w, &first, &end);
    for (int64_t k = first; st == KDC_OK && k < end; k++) {
        st = cache_reader_read_chunk(r, k, &c, err);
        if (st == KDC_OK)
            st = cache_writer_write_stored(w, k, &c, err);
    }
    char v1_fp[CACHE_STR_MAX];
    snprintf(v1_fp, sizeof v1_fp, "%s", h->dataset_fingerprint);
    int sharded = h->shard_count != 1;
    cache_chunk_free(&c);
    if (w && st == KDC_OK) {
        /* Same rows, same definition: the v2 fingerprint must be the v1 one. */
        char fp_check[CACHE_STR_MAX] = "";
        st = cache_writer_finish(w, err);
        w = NULL;
        if (st == KDC_OK && !sharded) {
            cache_reader *o;
            st = cache_reader_open(out, CACHE_OPEN_NO_CHUNK_CACHE, &o, err);
            if (st == KDC_OK) {
                snprintf(fp_check, sizeof fp_check, "%s", cache_reader_header(o)->dataset_fingerprint);
                cache_reader_close(o);
                if (strcmp(fp_check, v1_fp))
                    st = kdc_fail(err, KDC_EFORMAT, "%s: the upgraded fingerprint differs", out);
            }
            if (st != KDC_OK)
                remove(out);
        }
    }
    if (w)
        cache_writer_abort(w);
    if (st != KDC_OK)
        remove_partial(out);
    cache_reader_close(r);
    return st;
}
