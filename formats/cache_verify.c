/* cache_verify.c - reads back every chunk and compares the dataset's files. */
#include "formats/cache_verify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/cache_match.h"
#include "formats/cache_reader.h"
#include "common/image/dataset.h"

kdc_status cache_file_crc32(const char *path, uint64_t *size, uint32_t *crc, kdc_error *err)
{
    static __thread unsigned char buf[1 << 16];
    return img_file_crc32(path, size, crc, buf, sizeof buf, err);
}

kdc_status cache_verify(const char *path, const char *data_dir, cache_verify_report *rep,
                        kdc_error *err)
{
    memset(rep, 0, sizeof *rep);
    cache_reader *r;
    kdc_status st = cache_reader_open(path, CACHE_OPEN_ALLOW_INCOMPLETE, &r, err);
    if (st != KDC_OK)
        return st;
    const cache_header *h = cache_reader_header(r);
    rep->chunks_total = cache_reader_num_chunks(r);
    rep->shard_index = h->shard_index;
    rep->shard_count = h->shard_count;
    cache_chunk c;
    if ((st = cache_chunk_alloc(&c, h, err)) != KDC_OK) {
        cache_reader_close(r);
        return st;
    }
    for (int64_t k = 0; k < rep->chunks_total && st == KDC_OK; k++) {
        if (!cache_reader_chunk_done(r, k))
            continue;
        st = cache_reader_read_chunk(r, k, &c, err);
        if (st == KDC_OK && data_dir)
            st = cache_match_chunk_views(h, cache_reader_images(r), &c, path, err);
        rep->chunks_checked++;
    }
    int64_t first, end;
    cache_shard_chunks(h, h->shard_index, h->shard_count, &first, &end);
    if (st == KDC_OK && !h->complete) {
        int64_t n = 0;
        for (int64_t k = first; k < end; k++)
            n += cache_reader_chunk_done(r, k);
        st = kdc_fail(err, KDC_EFORMAT, "%s: incomplete: %lld of %lld chunks written", path,
                      (long long)n, (long long)(end - first));
    }
    if (st == KDC_OK && data_dir)
        st = cache_match_data_dir(cache_reader_images(r), data_dir, path, &rep->images_checked,
                                  err);
    cache_chunk_free(&c);
    cache_reader_close(r);
    return st;
}
