/* test_lz4.c - the LZ4 HDF5 filter: codec round trips, the exact byte layout
 * of the standard plugin, raw storage of incompressible blocks, multi-block
 * chunks, rejection of corrupt and hostile chunks, and files written by
 * h5py + hdf5plugin read through our filter. */
#include <check.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/cache_h5.h"
#include "formats/lz4_filter.h"
#include "tests/helpers/testutil.h"

static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static unsigned char *random_bytes(size_t n, uint64_t seed)
{
    unsigned char *p = malloc(n);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (unsigned char)(s >> 56);
    }
    return p;
}

/* Compressible: a short pattern with a little noise. */
static unsigned char *pattern_bytes(size_t n)
{
    unsigned char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i % 61) * 3 + (i % 1009 == 0));
    return p;
}

static void roundtrip(const unsigned char *src, size_t n, size_t block)
{
    size_t cap = cache_lz4_bound(n, block), len, out_len;
    ck_assert_uint_gt(cap, 0);
    unsigned char *enc = malloc(cap), *dec = malloc(n ? n : 1);
    kdc_error e;
    ck_assert_int_eq(cache_lz4_encode(src, n, block, enc, cap, &len, &e), KDC_OK);
    /* Header: orig_size (big-endian 64) and min(block, n) (big-endian 32). */
    ck_assert_uint_eq(be32(enc), 0);
    ck_assert_uint_eq(be32(enc + 4), n);
    size_t bs = block ? block : CACHE_LZ4_DEFAULT_BLOCK;
    ck_assert_uint_eq(be32(enc + 8), bs < n ? bs : n);
    /* Walk the blocks: their sizes add up to the encoded length. */
    size_t pos = 12, nblocks = 0;
    while (pos < len) {
        pos += 4 + be32(enc + pos);
        nblocks++;
    }
    ck_assert_uint_eq(pos, len);
    size_t eff = bs < n ? bs : n;
    ck_assert_uint_eq(nblocks, n ? (n + eff - 1) / eff : 0);
    ck_assert_int_eq(cache_lz4_decode(enc, len, dec, n, &out_len, &e), KDC_OK);
    ck_assert_uint_eq(out_len, n);
    ck_assert(memcmp(src, dec, n) == 0);
    free(enc);
    free(dec);
}

START_TEST(test_roundtrip_block_sizes)
{
    size_t sizes[] = {1, 100, 4096, 65537, 300000};
    size_t blocks[] = {0, 1024, 4096, 65536, 7};
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 5; j++) {
            unsigned char *p = pattern_bytes(sizes[i]);
            roundtrip(p, sizes[i], blocks[j]);
            free(p);
            p = random_bytes(sizes[i], i * 10 + j);
            roundtrip(p, sizes[i], blocks[j]);
            free(p);
        }
}
END_TEST

START_TEST(test_incompressible_stored_raw)
{
    size_t n = 10000, block = 4096, len, cap = cache_lz4_bound(n, block);
    unsigned char *src = random_bytes(n, 42), *enc = malloc(cap);
    kdc_error e;
    ck_assert_int_eq(cache_lz4_encode(src, n, block, enc, cap, &len, &e), KDC_OK);
    /* Every block is its own bytes, behind a csize equal to its length. */
    size_t pos = 12;
    for (size_t done = 0; done < n;) {
        size_t bl = n - done < block ? n - done : block;
        ck_assert_uint_eq(be32(enc + pos), bl);
        ck_assert(memcmp(enc + pos + 4, src + done, bl) == 0);
        pos += 4 + bl;
        done += bl;
    }
    ck_assert_uint_eq(pos, len);
    /* Compressible data does shrink, block by block. */
    unsigned char *pat = pattern_bytes(n);
    ck_assert_int_eq(cache_lz4_encode(pat, n, block, enc, cap, &len, &e), KDC_OK);
    ck_assert_uint_lt(len, n / 4);
    ck_assert_uint_lt(be32(enc + 12), block);
    free(pat);
    free(src);
    free(enc);
}
END_TEST

START_TEST(test_corrupt_rejected)
{
    size_t n = 50000, block = 8192, len, out_len, cap = cache_lz4_bound(n, block);
    unsigned char *src = pattern_bytes(n), *enc = malloc(cap), *dec = malloc(n);
    unsigned char *bad = malloc(cap);
    kdc_error e;
    ck_assert_int_eq(cache_lz4_encode(src, n, block, enc, cap, &len, &e), KDC_OK);
    /* Truncated. */
    ck_assert_int_eq(cache_lz4_decode(enc, len - 5, dec, n, &out_len, &e), KDC_EFORMAT);
    ck_assert_int_eq(cache_lz4_decode(enc, 8, dec, n, &out_len, &e), KDC_EFORMAT);
    /* A block size that overruns the chunk. */
    memcpy(bad, enc, len);
    bad[12] = 0x7f;
    ck_assert_int_eq(cache_lz4_decode(bad, len, dec, n, &out_len, &e), KDC_EFORMAT);
    /* orig_size one larger: the last block decodes short. */
    memcpy(bad, enc, len);
    bad[7]++;
    ck_assert_int_ne(cache_lz4_decode(bad, len, dec, n + 1, &out_len, &e), KDC_OK);
    /* Hostile orig_size: refused before any allocation. */
    memcpy(bad, enc, len);
    bad[0] = 0x7f;
    size_t claimed;
    ck_assert_int_eq(cache_lz4_decoded_size(bad, len, &claimed, &e), KDC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(e.msg, "claims"));
    /* Trailing garbage. */
    memcpy(bad, enc, len);
    ck_assert_int_eq(cache_lz4_decode(bad, len + 1, dec, n, &out_len, &e), KDC_EFORMAT);
    /* Random byte flips inside compressed payloads: an error or a wrong
     * result, never a crash or an overrun (LZ4_decompress_safe + length
     * check; run under ASan). At least some must be detected. */
    int detected = 0;
    for (int t = 0; t < 500; t++) {
        memcpy(bad, enc, len);
        size_t at = 16 + (size_t)(t * 7919) % (len - 16);
        bad[at] ^= (unsigned char)(1 + t % 255);
        if (cache_lz4_decode(bad, len, dec, n, &out_len, &e) != KDC_OK)
            detected++;
    }
    ck_assert_int_gt(detected, 50);
    free(src);
    free(enc);
    free(dec);
    free(bad);
}
END_TEST

static void *read_all(hid_t f, const char *name, hid_t mtype, size_t n, size_t elem)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    void *buf = malloc(n * elem);
    ck_assert_int_ge(H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), 0);
    H5Dclose(d);
    return buf;
}

/* h5py + hdf5plugin wrote LZ4 datasets: our filter decodes them. */
START_TEST(test_reads_hdf5plugin_file)
{
    kdc_error e;
    ck_assert_int_eq(cache_h5_init(&e), KDC_OK);
    ck_assert(H5Zfilter_avail(CACHE_LZ4_FILTER_ID) > 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/cache/lz4_h5py.h5", kdc_test_fixture_root());
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_msg(f >= 0, "cannot open %s (make build/fixtures/cache/.stamp)", path);
    size_t na, nb, nr, nz;
    float *ra = kdc_test_load_f32("cache", "lz4_a", 0, &na);
    int64_t *rb = kdc_test_load_i64("cache", "lz4_b", 0, &nb);
    int64_t *rr = kdc_test_load_i64("cache", "lz4_r", 0, &nr);
    int64_t *rz = kdc_test_load_i64("cache", "lz4_z", 0, &nz);
    float *a = read_all(f, "a", H5T_NATIVE_FLOAT, na, 4);
    int32_t *b = read_all(f, "b", H5T_NATIVE_INT32, nb, 4);
    uint8_t *r = read_all(f, "r", H5T_NATIVE_UINT8, nr, 1);
    uint8_t *z = read_all(f, "z", H5T_NATIVE_UINT8, nz, 1);
    ck_assert(memcmp(a, ra, na * 4) == 0);
    for (size_t i = 0; i < nb; i++)
        ck_assert_int_eq(b[i], rb[i]);
    for (size_t i = 0; i < nr; i++)
        ck_assert_int_eq(r[i], rr[i]);
    for (size_t i = 0; i < nz; i++)
        ck_assert_int_eq(z[i], rz[i]);
    H5Fclose(f);
    free(a), free(b), free(r), free(z), free(ra), free(rb), free(rr), free(rz);
}
END_TEST

/* Our encoder's chunks are byte-identical to the plugin's: read the raw
 * stored chunks of the h5py file and re-encode the decoded bytes. */
START_TEST(test_same_bytes_as_plugin)
{
    kdc_error e;
    ck_assert_int_eq(cache_h5_init(&e), KDC_OK);
    char path[4096];
    snprintf(path, sizeof path, "%s/cache/lz4_h5py.h5", kdc_test_fixture_root());
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    const char *names[] = {"b", "r", "z"};
    unsigned blocks[] = {1024, 4096, 0};
    for (int k = 0; k < 3; k++) {
        hid_t d = H5Dopen2(f, names[k], H5P_DEFAULT);
        hsize_t off[1] = {0}, sz;
        ck_assert_int_ge(H5Dget_chunk_storage_size(d, off, &sz), 0);
        unsigned char *raw = malloc(sz);
        uint32_t mask = 0;
        ck_assert_int_ge(H5Dread_chunk(d, H5P_DEFAULT, off, &mask, raw), 0);
        ck_assert_uint_eq(mask, 0);
        size_t n, len, out;
        ck_assert_int_eq(cache_lz4_decoded_size(raw, sz, &n, &e), KDC_OK);
        unsigned char *dec = malloc(n), *enc = malloc(cache_lz4_bound(n, blocks[k]));
        ck_assert_int_eq(cache_lz4_decode(raw, sz, dec, n, &out, &e), KDC_OK);
        ck_assert_int_eq(cache_lz4_encode(dec, n, blocks[k], enc, cache_lz4_bound(n, blocks[k]),
                                          &len, &e),
                         KDC_OK);
        ck_assert_uint_eq(len, sz);
        ck_assert_msg(memcmp(enc, raw, len) == 0, "dataset %s: bytes differ", names[k]);
        free(raw), free(dec), free(enc);
        H5Dclose(d);
    }
    H5Fclose(f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lz4");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_roundtrip_block_sizes);
    tcase_add_test(tc, test_incompressible_stored_raw);
    tcase_add_test(tc, test_corrupt_rejected);
    tcase_add_test(tc, test_reads_hdf5plugin_file);
    tcase_add_test(tc, test_same_bytes_as_plugin);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
