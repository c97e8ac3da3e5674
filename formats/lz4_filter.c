/* lz4_filter.c - LZ4 chunk codec in the standard HDF5 LZ4 plugin's format, and
 * its registration as HDF5 filter 32004. */
#include "formats/lz4_filter.h"

#include <hdf5.h>
#include <lz4.h>
#include <pthread.h>
#include <string.h>

/* An LZ4 block expands at most ~255x (one token byte plus 255-valued length
 * bytes per 255 output bytes), so a chunk claiming more than 256 bytes out per
 * byte in is hostile; refusing it before allocating keeps a 30-byte file from
 * asking for gigabytes. HDF5 chunks are also limited to 4 GiB. */
#define LZ4_MAX_EXPANSION 256u
#define HDF5_MAX_CHUNK_BYTES ((uint64_t)0xffffffffu)

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void put_be64(unsigned char *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

static uint32_t get_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t get_be64(const unsigned char *p)
{
    return ((uint64_t)get_be32(p) << 32) | get_be32(p + 4);
}

static size_t effective_block(size_t n, size_t block_size)
{
    if (block_size == 0)
        block_size = CACHE_LZ4_DEFAULT_BLOCK;
    return block_size < n ? block_size : n;
}

size_t cache_lz4_bound(size_t n, size_t block_size)
{
    /* The plugin keeps sizes in int32 fields: same limit here. */
    if (n > (size_t)INT32_MAX || block_size >= CACHE_LZ4_MAX_BLOCK)
        return 0;
    size_t bs = effective_block(n, block_size);
    if (bs == 0)
        return CACHE_LZ4_HEADER_SIZE;
    size_t nblocks = (n + bs - 1) / bs, per, total;
    per = (size_t)LZ4_compressBound((int)bs) + 4;
    if (!kdc_size_mul(nblocks, per, &total) ||
        !kdc_size_add(total, CACHE_LZ4_HEADER_SIZE, &total))
        return 0;
    return total;
}

kdc_status cache_lz4_encode(const void *src, size_t n, size_t block_size, void *dst, size_t cap,
                            size_t *out_len, kdc_error *err)
{
    size_t need = cache_lz4_bound(n, block_size);
    if (need == 0)
        return kdc_fail(err, KDC_EINVAL, "lz4: cannot encode %zu bytes with block size %zu", n,
                        block_size);
    if (cap < need)
        return kdc_fail(err, KDC_EINVAL, "lz4: output capacity %zu < bound %zu", cap, need);
    const unsigned char *in = src;
    unsigned char *out = dst;
    size_t bs = effective_block(n, block_size);
    put_be64(out, (uint64_t)n);
    put_be32(out + 8, (uint32_t)bs);
    size_t pos = CACHE_LZ4_HEADER_SIZE;
    for (size_t done = 0; done < n;) {
        size_t len = n - done < bs ? n - done : bs;
        int bound = LZ4_compressBound((int)len);
        int c = LZ4_compress_default((const char *)in + done, (char *)out + pos + 4, (int)len,
                                     bound);
        if (c <= 0)
            return kdc_fail(err, KDC_EFORMAT, "lz4: compression of a %zu-byte block failed",
                            len);
        /* Like the plugin: a block that does not shrink is stored as is, and
         * the reader recognises it by csize == block length. */
        if ((size_t)c >= len) {
            memcpy(out + pos + 4, in + done, len);
            c = (int)len;
        }
        put_be32(out + pos, (uint32_t)c);
        pos += 4 + (size_t)c;
        done += len;
    }
    *out_len = pos;
    return KDC_OK;
}

kdc_status cache_lz4_decoded_size(const void *src, size_t len, size_t *orig_size,
                                  kdc_error *err)
{
    if (len < CACHE_LZ4_HEADER_SIZE)
        return kdc_fail(err, KDC_EFORMAT, "lz4: chunk of %zu bytes is shorter than its header",
                        len);
    uint64_t orig = get_be64(src);
    uint64_t limit = (uint64_t)len * LZ4_MAX_EXPANSION;
    if (orig > HDF5_MAX_CHUNK_BYTES || orig > limit || orig > SIZE_MAX)
        return kdc_fail(err, KDC_EFORMAT,
                        "lz4: chunk claims %llu decoded bytes from %zu encoded bytes",
                        (unsigned long long)orig, len);
    *orig_size = (size_t)orig;
    return KDC_OK;
}

kdc_status cache_lz4_decode(const void *src, size_t len, void *dst, size_t cap, size_t *out_len,
                            kdc_error *err)
{
    size_t orig;
    kdc_status st = cache_lz4_decoded_size(src, len, &orig, err);
    if (st != KDC_OK)
        return st;
    if (cap < orig)
        return kdc_fail(err, KDC_EINVAL, "lz4: output capacity %zu < decoded size %zu", cap,
                        orig);
    const unsigned char *in = src;
    unsigned char *out = dst;
    size_t bs = get_be32(in + 8);
    if (bs > orig) /* the plugin clamps the same way */
        bs = orig;
    if (orig > 0 && (bs == 0 || bs > (size_t)INT32_MAX))
        return kdc_fail(err, KDC_EFORMAT, "lz4: invalid block size %zu", bs);
    size_t pos = CACHE_LZ4_HEADER_SIZE, done = 0;
    while (done < orig) {
        size_t blen = orig - done < bs ? orig - done : bs;
        if (len - pos < 4)
            return kdc_fail(err, KDC_EFORMAT, "lz4: chunk truncated at block header (offset %zu)",
                            pos);
        size_t csize = get_be32(in + pos);
        pos += 4;
        if (csize > len - pos)
            return kdc_fail(err, KDC_EFORMAT,
                            "lz4: block of %zu bytes overruns the chunk (%zu bytes left)", csize,
                            len - pos);
        if (csize == blen) {
            memcpy(out + done, in + pos, blen);
        } else {
            int got = LZ4_decompress_safe((const char *)in + pos, (char *)out + done, (int)csize,
                                          (int)blen);
            if (got < 0 || (size_t)got != blen)
                return kdc_fail(err, KDC_EFORMAT,
                                "lz4: corrupt block at offset %zu (decoded %d of %zu bytes)",
                                pos - 4, got, blen);
        }
        pos += csize;
        done += blen;
    }
    if (pos != len)
        return kdc_fail(err, KDC_EFORMAT, "lz4: %zu trailing bytes after the last block",
                        len - pos);
    *out_len = orig;
    return KDC_OK;
}

/* HDF5 filter callback: returns the new data length, or 0 on failure (HDF5's
 * convention). Buffers are allocated with HDF5's allocator because HDF5 frees
 * them. */
static size_t lz4_h5_filter(unsigned int flags, size_t cd_nelmts, const unsigned int cd_values[],
                            size_t nbytes, size_t *buf_size, void **buf)
{
    void *out = NULL;
    size_t out_len = 0, cap;
    if (flags & H5Z_FLAG_REVERSE) {
        if (cache_lz4_decoded_size(*buf, nbytes, &cap, NULL) != KDC_OK || cap == 0)
            return 0;
        out = H5allocate_memory(cap, 0);
        if (!out)
            return 0;
        if (cache_lz4_decode(*buf, nbytes, out, cap, &out_len, NULL) != KDC_OK) {
            H5free_memory(out);
            return 0;
        }
    } else {
        size_t bs = (cd_nelmts > 0) ? cd_values[0] : 0;
        cap = cache_lz4_bound(nbytes, bs);
        if (cap == 0)
            return 0;
        out = H5allocate_memory(cap, 0);
        if (!out)
            return 0;
        if (cache_lz4_encode(*buf, nbytes, bs, out, cap, &out_len, NULL) != KDC_OK) {
            H5free_memory(out);
            return 0;
        }
    }
    H5free_memory(*buf);
    *buf = out;
    *buf_size = cap;
    return out_len;
}

static const H5Z_class2_t lz4_class = {
    H5Z_CLASS_T_VERS,
    (H5Z_filter_t)CACHE_LZ4_FILTER_ID,
    1, /* encoder present */
    1, /* decoder present */
    "lz4 (kdcache, standard plugin format)",
    NULL, /* can_apply */
    NULL, /* set_local */
    lz4_h5_filter,
};

static pthread_once_t register_once = PTHREAD_ONCE_INIT;
static herr_t register_result = -1;

static void do_register(void)
{
    register_result = H5Zregister(&lz4_class);
}

kdc_status cache_lz4_register(kdc_error *err)
{
    pthread_once(&register_once, do_register);
    if (register_result < 0)
        return kdc_fail(err, KDC_EIO, "lz4: H5Zregister of filter %d failed",
                        CACHE_LZ4_FILTER_ID);
    return KDC_OK;
}
