/* test_safetensors.c - the safetensors reader and writer: round trips, F16 /
 * BF16 / F64 / I32 conversion, and malformed files (truncated, header length
 * past the end, absurd sizes, bad JSON, offsets overlapping / out of range /
 * not matching dtype x shape) rejected with a precise message; random
 * mutations of a valid file must never crash (run under ASan in CI). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/half.h"
#include "formats/safetensors.h"
#include "tests/helpers/testutil.h"

static char *dir;
static char path[4096];

static void setup(void)
{
    dir = kdc_test_tmpdir("safetensors");
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
}

static void teardown(void)
{
    kdc_test_system("rm -rf '%s'", dir);
    free(dir);
}

/* Writes 8-byte length + header + data bytes; hlen_override != 0 replaces the length. */
static void write_raw(const char *header, const void *data, size_t ndata, uint64_t hlen_override)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    uint64_t hlen = hlen_override ? hlen_override : strlen(header);
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(hlen >> (8 * i));
    fwrite(b, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (ndata)
        fwrite(data, 1, ndata, f);
    fclose(f);
}

static void expect_reject(const char *header, size_t ndata, uint64_t hlen, const char *needle)
{
    static unsigned char zeros[4096];
    write_raw(header, zeros, ndata, hlen);
    st_file *f = (st_file *)0x1;
    kdc_error e;
    kdc_status st = st_open(path, &f, &e);
    ck_assert_msg(st != KDC_OK, "accepted: %s", header);
    ck_assert_ptr_null(f);
    ck_assert_msg(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
}

START_TEST(test_roundtrip)
{
    float a[6] = {1, -2, 3.5f, 0, 1e-8f, 7};
    int64_t c = 12345;
    int64_t sa[2] = {2, 3};
    st_item items[2] = {{"layer.weight", KDC_F32, 2, sa, a},
                        {"bn.num_batches_tracked", KDC_I64, 0, NULL, &c}};
    const char *const meta[1][2] = {{"format", "pt"}};
    kdc_error e;
    ck_assert_msg(st_write(path, items, 2, meta, 1, NULL, NULL, &e) == KDC_OK, "%s", e.msg);
    st_file *f;
    ck_assert_msg(st_open(path, &f, &e) == KDC_OK, "%s", e.msg);
    ck_assert_int_eq(st_count(f), 2);
    ck_assert_str_eq(st_metadata(f, "format"), "pt");
    const st_tensor *t = st_find(f, "layer.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, ST_F32);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(t->shape[1], 3);
    float back[6];
    ck_assert(st_read_f32(f, t, back, 6, &e) == KDC_OK);
    ck_assert(memcmp(a, back, sizeof a) == 0);
    t = st_find(f, "bn.num_batches_tracked");
    ck_assert_int_eq(t->ndim, 0);
    int64_t cb = 0;
    ck_assert(st_read_i64(f, t, &cb, 1, &e) == KDC_OK);
    ck_assert_int_eq(cb, 12345);
    /* wrong element count from the caller, wrong kind of read */
    ck_assert_int_eq(st_read_f32(f, st_find(f, "layer.weight"), back, 5, &e), KDC_EINVAL);
    ck_assert_int_eq(st_read_f32(f, t, back, 1, &e), KDC_EUNSUPPORTED);
    st_close(f);
    /* no temporary left behind */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.partial", path);
    ck_assert(fopen(tmp, "rb") == NULL);
}
END_TEST

START_TEST(test_half_types)
{
    /* F16, BF16, F64 and I32 tensors, data section laid out by hand */
    const float v[4] = {1.5f, -0.333251953125f, 65504.0f, 1e-3f};
    unsigned char data[8 + 8 + 32 + 8];
    for (int i = 0; i < 4; i++) {
        uint16_t h = kdc_f32_to_f16(v[i]), b = kdc_f32_to_bf16(v[i]);
        memcpy(data + 2 * i, &h, 2);
        memcpy(data + 8 + 2 * i, &b, 2);
        double d = v[i];
        memcpy(data + 16 + 8 * i, &d, 8);
    }
    int32_t ints[2] = {-7, 1 << 30};
    memcpy(data + 48, ints, 8);
    write_raw("{\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[8,16]},"
              "\"d\":{\"dtype\":\"F64\",\"shape\":[4],\"data_offsets\":[16,48]},"
              "\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[48,56]}}",
              data, sizeof data, 0);
    st_file *f;
    kdc_error e;
    ck_assert_msg(st_open(path, &f, &e) == KDC_OK, "%s", e.msg);
    float got[4];
    ck_assert(st_read_f32(f, st_find(f, "h"), got, 4, &e) == KDC_OK);
    for (int i = 0; i < 4; i++)
        ck_assert(got[i] == kdc_f16_to_f32(kdc_f32_to_f16(v[i])));
    ck_assert(st_read_f32(f, st_find(f, "b"), got, 4, &e) == KDC_OK);
    for (int i = 0; i < 4; i++)
        ck_assert(got[i] == kdc_bf16_to_f32(kdc_f32_to_bf16(v[i])));
    ck_assert(st_read_f32(f, st_find(f, "d"), got, 4, &e) == KDC_OK);
    ck_assert(memcmp(got, v, sizeof v) == 0);
    int64_t gi[2];
    ck_assert(st_read_i64(f, st_find(f, "i"), gi, 2, &e) == KDC_OK);
    ck_assert(gi[0] == -7 && gi[1] == 1 << 30);
    st_close(f);
}
END_TEST

START_TEST(test_malformed)
{
    kdc_error e;
    st_file *f;
    /* shorter than the length field */
    FILE *fp = fopen(path, "wb");
    fwrite("abc", 1, 3, fp);
    fclose(fp);
    ck_assert_int_eq(st_open(path, &f, &e), KDC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(e.msg, "truncated"));
    ck_assert_int_eq(st_open("/nonexistent/x.safetensors", &f, &e), KDC_EIO);

    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_reject(ok, 8, 1000, "runs past the end of the file");
    expect_reject(ok, 8, (uint64_t)1 << 40, "absurd header length");
    expect_reject(ok, 4, 0, "run past the end of the data");
    expect_reject("{\"a\": {\"dtype\": ", 0, 0, "not valid JSON");
    expect_reject("[1, 2, 3]", 0, 0, "not a JSON object");
    expect_reject("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0,
                  "unknown dtype 'F33'");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0,
                  "hold 8 bytes but F32 [3] needs 12");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,8]}}", 8, 0,
                  "non-negative");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, 0,
                  "non-negative integer");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,8],"
                  "\"data_offsets\":[0,8]}}",
                  8, 0, "absurd shape");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, 0,
                  "begin <= end");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, 0,
                  "data_offsets");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, 0, "data_offsets");
    expect_reject("{\"a\":[1]}", 8, 0, "not an object");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  12, 0, "overlap");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                  8, 0, "duplicate");
    expect_reject("{\"__metadata__\":{\"k\":1}}", 0, 0, "not a string");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                  "\"data_offsets\":[0,4]}}",
                  4, 0, "dimensions");
    expect_reject("{ ", 0, 0, "not valid JSON");
    expect_reject(" ", 0, 0, "cannot hold a JSON object");
    /* empty tensors and gaps are fine */
    write_raw("{\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
              "\0\0\0\0", 4, 0);
    ck_assert_msg(st_open(path, &f, &e) == KDC_OK, "%s", e.msg);
    st_close(f);
}
END_TEST

/* Flips, overwrites and truncates bytes of a valid file at random: every
 * outcome must be a clean error or a file whose tensors all read. */
START_TEST(test_mutations)
{
    float a[16];
    int64_t c = 3;
    int64_t sa[2] = {4, 4};
    kdc_test_fill_uniform(a, 16, 1, -1, 1);
    st_item items[2] = {{"w", KDC_F32, 2, sa, a}, {"n", KDC_I64, 0, NULL, &c}};
    kdc_error e;
    ck_assert(st_write(path, items, 2, NULL, 0, NULL, NULL, &e) == KDC_OK);
    FILE *fp = fopen(path, "rb");
    unsigned char orig[1024];
    size_t n = fread(orig, 1, sizeof orig, fp);
    fclose(fp);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    int accepted = 0;
    for (int it = 0; it < 600; it++) {
        unsigned char buf[1024];
        memcpy(buf, orig, n);
        size_t len = n;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int kind = (int)((s >> 33) % 4);
        size_t pos = (size_t)((s >> 13) % n);
        if (kind == 0)
            buf[pos] ^= (unsigned char)(1u << ((s >> 40) % 8));
        else if (kind == 1)
            buf[pos] = "{}[]\",:0123456789-e "[(s >> 45) % 21];
        else if (kind == 2)
            len = pos;
        else
            buf[(s >> 50) % 8] = (unsigned char)(s >> 20);
        fp = fopen(path, "wb");
        fwrite(buf, 1, len, fp);
        fclose(fp);
        st_file *f;
        if (st_open(path, &f, &e) != KDC_OK) {
            ck_assert(e.msg[0] != '\0');
            continue;
        }
        accepted++;
        for (int i = 0; i < st_count(f); i++) {
            const st_tensor *t = st_get(f, i);
            size_t numel = st_tensor_numel(t);
            if (numel > 4096)
                continue;
            static union {
                float fl[4096];
                int64_t il[4096];
            } out;
            if (st_read_f32(f, t, out.fl, numel, &e) != KDC_OK)
                st_read_i64(f, t, out.il, numel, &e);
        }
        st_close(f);
    }
    ck_assert(accepted > 0); /* some mutations (data bytes) leave a valid file */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120); /* the mutation test writes hundreds of small files */
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_half_types);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_mutations);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
