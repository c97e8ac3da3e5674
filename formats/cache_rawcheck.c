/* cache_rawcheck.c - raw checks of the HDF5 structures that libhdf5 1.10.8
 * decodes without bounds checks, before any HDF5 call touches the file. */
#include "formats/cache_rawcheck.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_BLOCKS 64            /* object header chunks followed */
#define MAX_BLOCK_BYTES (1 << 20) /* a root object header is a few KiB */

enum { MSG_ATTRIBUTE = 0x000C, MSG_CONTINUATION = 0x0010 };
enum { DT_FIXED = 0, DT_FLOAT = 1, DT_STRING = 3, DT_VLEN = 9 };

typedef struct raw {
    int fd;
    uint64_t size;
    int vlen_attrs;
    int64_t version; /* kdcache_version as stored, -1 if not found */
} raw;

static uint64_t le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static kdc_status bad(kdc_error *err, const char *what, uint64_t at)
{
    return kdc_fail(err, KDC_EFORMAT,
                    "the root attributes are corrupt (%s at byte %llu): the file is corrupt", what,
                    (unsigned long long)at);
}

static kdc_status read_at(const raw *r, uint64_t off, size_t n, unsigned char *buf,
                          kdc_error *err)
{
    if (off > r->size || n > r->size - off)
        return bad(err, "block outside the file", off);
    ssize_t got = pread(r->fd, buf, n, (off_t)off);
    if (got != (ssize_t)n)
        return bad(err, "short read", off);
    return KDC_OK;
}

/* Datatype message at d (n bytes available): class, size and properties of
 * the kinds a cache's attributes use. Returns the element size, 0 if bad. */
static uint64_t check_dtype(const unsigned char *d, uint64_t n, int *cls, int depth)
{
    if (n < 8 || depth > 1)
        return 0;
    int c = d[0] & 0x0f, ver = d[0] >> 4;
    uint64_t size = le(d + 4, 4);
    if (ver < 1 || ver > 3)
        return 0;
    *cls = c;
    switch (c) {
    case DT_FIXED:
        return n >= 12 && size >= 1 && size <= 8 ? size : 0;
    case DT_FLOAT:
        return n >= 20 && size >= 2 && size <= 8 ? size : 0;
    case DT_STRING:
        return size >= 1 && size <= 4096 ? size : 0;
    case DT_VLEN: {
        /* v1 string attributes: a sequence/string of 1-byte characters. */
        int bc;
        uint64_t bs = check_dtype(d + 8, n - 8, &bc, depth + 1);
        return bs == 1 && size == 16 ? size : 0;
    }
    default:
        return 0;
    }
}

/* Dataspace message: scalar or 1-D with at most 16 elements. Returns the
 * element count, or -1 if bad. */
static int64_t check_space(const unsigned char *s, uint64_t n)
{
    if (n < 4)
        return -1;
    int ver = s[0], rank = s[1], flags = s[2];
    uint64_t hdr = ver == 1 ? 8 : ver == 2 ? 4 : 0;
    if (!hdr || rank > 1)
        return -1;
    uint64_t need = hdr + (uint64_t)rank * 8 * ((flags & 1) ? 2 : 1);
    if (n < need)
        return -1;
    if (ver == 2 && s[3] == 2) /* null dataspace */
        return 0;
    if (rank == 0)
        return 1;
    uint64_t dim = le(s + hdr, 8);
    return dim <= 16 ? (int64_t)dim : -1;
}

static uint64_t pad8(uint64_t x)
{
    return (x + 7) & ~(uint64_t)7;
}

/* One attribute message of msize bytes. */
static kdc_status check_attribute(raw *r, const unsigned char *m, uint64_t msize, uint64_t at,
                                  kdc_error *err)
{
    if (msize < 8)
        return bad(err, "attribute message too short", at);
    int ver = m[0];
    uint64_t nsz = le(m + 2, 2), dsz = le(m + 4, 2), ssz = le(m + 6, 2), p = 8;
    if (ver == 3)
        p = 9; /* name character set */
    else if (ver != 1 && ver != 2)
        return bad(err, "attribute message version", at);
    int padded = ver == 1;
    uint64_t np = padded ? pad8(nsz) : nsz, dp = padded ? pad8(dsz) : dsz;
    uint64_t sp = padded ? pad8(ssz) : ssz;
    if (nsz < 1 || nsz > 256 || dsz < 8 || ssz < 4 || p + np + dp + sp > msize)
        return bad(err, "attribute sizes", at);
    const unsigned char *name = m + p;
    if (name[nsz - 1] != 0 || memchr(name, 0, nsz) != name + nsz - 1)
        return bad(err, "attribute name", at);
    int cls = -1;
    uint64_t esz = check_dtype(m + p + np, dsz, &cls, 0);
    if (!esz)
        return bad(err, "attribute datatype", at);
    int64_t nel = check_space(m + p + np + dp, ssz);
    if (nel < 0)
        return bad(err, "attribute dataspace", at);
    uint64_t data = p + np + dp + sp;
    if ((uint64_t)nel * esz > msize - data)
        return bad(err, "attribute data size", at);
    if (cls == DT_VLEN)
        r->vlen_attrs++;
    if (!strcmp((const char *)name, "kdcache_version") && cls == DT_FIXED && esz == 8 &&
        nel == 1)
        r->version = (int64_t)le(m + data, 8);
    return KDC_OK;
}

/* Messages of one object header chunk [off, off + len); continuation blocks
 * are queued. */
static kdc_status walk_block(raw *r, const unsigned char *b, uint64_t len, uint64_t off,
                             uint64_t *q_off, uint64_t *q_len, int *nq, kdc_error *err)
{
    uint64_t p = 0;
    while (p + 8 <= len) {
        uint64_t type = le(b + p, 2), size = le(b + p + 2, 2);
        if (p + 8 + size > len)
            return bad(err, "message past its header block", off + p);
        const unsigned char *m = b + p + 8;
        kdc_status st;
        if (type == MSG_ATTRIBUTE && (st = check_attribute(r, m, size, off + p, err)) != KDC_OK)
            return st;
        if (type == MSG_CONTINUATION) {
            if (size < 16)
                return bad(err, "continuation message", off + p);
            uint64_t co = le(m, 8), cl = le(m + 8, 8);
            if (*nq >= MAX_BLOCKS || cl < 8 || cl > MAX_BLOCK_BYTES || co > r->size ||
                cl > r->size - co)
                return bad(err, "continuation block", off + p);
            for (int i = 0; i < *nq; i++)
                if (q_off[i] == co)
                    return bad(err, "continuation loop", off + p);
            q_off[*nq] = co;
            q_len[*nq] = cl;
            (*nq)++;
        }
        p += 8 + size;
    }
    return KDC_OK;
}

kdc_status cache_raw_check_root(const char *path, int *vlen_attrs, int64_t *version,
                                kdc_error *err)
{
    raw r = {-1, 0, 0, -1};
    r.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r.fd < 0)
        return kdc_fail(err, KDC_EIO, "cannot open %s", path);
    struct stat sb;
    kdc_status st = fstat(r.fd, &sb) == 0 ? KDC_OK : kdc_fail(err, KDC_EIO, "cannot stat");
    r.size = (uint64_t)sb.st_size;
    unsigned char sbk[96];
    if (st == KDC_OK)
        st = read_at(&r, 0, sizeof sbk, sbk, err);
    /* Only the layout our writers produce is checked: superblock version 0
     * at offset 0, 8-byte offsets and lengths, a version 1 root object
     * header. Other files (h5py's, a future library's) go to libhdf5 as is. */
    if (st != KDC_OK || memcmp(sbk, "\x89HDF\r\n\x1a\n", 8) || sbk[8] != 0 || sbk[13] != 8 ||
        sbk[14] != 8) {
        close(r.fd);
        *vlen_attrs = -1;
        *version = -1;
        return st == KDC_OK || st == KDC_EFORMAT ? KDC_OK : st;
    }
    uint64_t base = le(sbk + 24, 8), root = le(sbk + 64, 8);
    unsigned char *buf = NULL;
    uint64_t q_off[MAX_BLOCKS], q_len[MAX_BLOCKS];
    int nq = 0;
    unsigned char oh[16];
    if (base != 0)
        st = bad(err, "superblock base address", 24);
    if (st == KDC_OK)
        st = read_at(&r, root, sizeof oh, oh, err);
    if (st == KDC_OK) {
        uint64_t hsize = le(oh + 8, 4);
        if (oh[0] != 1 || hsize > MAX_BLOCK_BYTES || hsize < 8)
            st = bad(err, "root object header", root);
        else {
            q_off[0] = root + 16;
            q_len[0] = hsize;
            nq = 1;
        }
    }
    for (int i = 0; st == KDC_OK && i < nq; i++) {
        free(buf);
        buf = malloc(q_len[i]);
        if (!buf)
            st = kdc_fail(err, KDC_ENOMEM, "object header");
        else if ((st = read_at(&r, q_off[i], q_len[i], buf, err)) == KDC_OK)
            st = walk_block(&r, buf, q_len[i], q_off[i], q_off, q_len, &nq, err);
    }
    free(buf);
    close(r.fd);
    *vlen_attrs = r.vlen_attrs;
    *version = r.version;
    return st;
}
