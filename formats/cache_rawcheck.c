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

enum {
    MSG_EFL = 0x0007,
    MSG_LAYOUT = 0x0008,
    MSG_PIPELINE = 0x000B,
    MSG_ATTRIBUTE = 0x000C,
    MSG_CONTINUATION = 0x0010,
    MSG_STAB = 0x0011
};
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

static uint64_t pad8(uint64_t x)
{
    return (x + 7) & ~(uint64_t)7;
}

static kdc_status bad(kdc_error *err, const char *what, uint64_t at)
{
    return kdc_fail(err, KDC_EFORMAT,
                    "HDF5 structure check failed (%s at byte %llu): the file is corrupt", what,
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

/* ---- v1: variable-length references into the global heap ---- */

#define GCOL_MIN 4096
#define GCOL_MAX ((uint64_t)64 << 20)

/* A reference (length 4, collection address 8, object index 4) must name an
 * object of that length inside a well-formed collection. libhdf5's own
 * collection decoder only asserts these bounds (compiled out in release
 * builds), which is where mutated v1 files crashed or hung it. The last
 * collection checked is kept in *cache / *cache_addr. */
static kdc_status check_vlen_ref(const raw *r, const unsigned char *ref, unsigned char **cache,
                                 uint64_t *cache_addr, uint64_t *cache_size, kdc_error *err)
{
    uint64_t len = le(ref, 4), addr = le(ref + 4, 8), idx = le(ref + 12, 4);
    if (len == 0 && addr == 0)
        return KDC_OK; /* an empty (NULL) string: no heap object */
    if (len > 4096 || idx == 0 || idx > 65535)
        return bad(err, "variable-length reference", addr);
    if (!*cache || *cache_addr != addr) {
        unsigned char hdr[16];
        kdc_status st = read_at(r, addr, sizeof hdr, hdr, err);
        if (st != KDC_OK)
            return st;
        uint64_t size = le(hdr + 8, 8);
        if (memcmp(hdr, "GCOL", 4) || hdr[4] != 1 || size < GCOL_MIN || size > GCOL_MAX)
            return bad(err, "global heap collection", addr);
        free(*cache);
        *cache = malloc(size);
        *cache_addr = 0;
        if (!*cache)
            return kdc_fail(err, KDC_ENOMEM, "global heap collection");
        if ((st = read_at(r, addr, size, *cache, err)) != KDC_OK)
            return st;
        /* Walk it once as libhdf5 will: every object inside, no index twice. */
        uint64_t p = 16;
        unsigned char seen[65536 / 8];
        memset(seen, 0, sizeof seen);
        while (p + 16 <= size) {
            uint64_t oi = le(*cache + p, 2), os = le(*cache + p + 8, 8);
            uint64_t need = oi ? 16 + pad8(os) : os;
            if (os > size || need < (oi ? 16 : 16) || need > size - p)
                return bad(err, "global heap object", addr + p);
            if (oi) {
                if (seen[oi / 8] & (1u << (oi % 8)))
                    return bad(err, "global heap object index repeated", addr + p);
                seen[oi / 8] |= (unsigned char)(1u << (oi % 8));
            }
            p += need;
        }
        *cache_addr = addr;
        *cache_size = size;
    }
    const unsigned char *c = *cache;
    for (uint64_t p = 16; p + 16 <= *cache_size;) {
        uint64_t oi = le(c + p, 2), os = le(c + p + 8, 8);
        if (oi == idx)
            return os == len ? KDC_OK : bad(err, "global heap object size", addr + p);
        p += oi ? 16 + pad8(os) : os;
    }
    return bad(err, "global heap object missing", addr);
}

kdc_status cache_raw_check_vlen_refs(const char *path, uint64_t offset, uint64_t count,
                                     kdc_error *err)
{
    raw r = {-1, 0, 0, -1};
    r.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r.fd < 0)
        return kdc_fail(err, KDC_EIO, "cannot open %s", path);
    struct stat sb;
    kdc_status st = fstat(r.fd, &sb) == 0 ? KDC_OK : kdc_fail(err, KDC_EIO, "cannot stat");
    r.size = (uint64_t)sb.st_size;
    if (st == KDC_OK && (count > r.size / 16 || offset > r.size || count * 16 > r.size - offset))
        st = bad(err, "variable-length references outside the file", offset);
    unsigned char *cache = NULL, buf[16 * 256];
    uint64_t caddr = 0, csize = 0;
    for (uint64_t i = 0; st == KDC_OK && i < count; i += 256) {
        uint64_t m = count - i < 256 ? count - i : 256;
        st = read_at(&r, offset + i * 16, (size_t)(m * 16), buf, err);
        for (uint64_t j = 0; st == KDC_OK && j < m; j++)
            st = check_vlen_ref(&r, buf + 16 * j, &cache, &caddr, &csize, err);
    }
    free(cache);
    close(r.fd);
    return st;
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
    if (cls == DT_VLEN) {
        r->vlen_attrs++;
        unsigned char *cache = NULL;
        uint64_t caddr = 0, csize = 0;
        kdc_status st = KDC_OK;
        for (int64_t i = 0; i < nel && st == KDC_OK; i++)
            st = check_vlen_ref(r, m + data + 16 * i, &cache, &caddr, &csize, err);
        free(cache);
        if (st != KDC_OK)
            return st;
    }
    if (!strcmp((const char *)name, "kdcache_version") && cls == DT_FIXED && esz == 8 &&
        nel == 1)
        r->version = (int64_t)le(m + data, 8);
    return KDC_OK;
}

/* A data layout message: for chunked storage every chunk dimension (and the
 * element size stored after them) at least 1, as libhdf5 1.10.8 divides by
 * them when it opens the dataset (H5D__chunk_set_info: SIGFPE on a zero). */
static kdc_status check_layout(const unsigned char *m, uint64_t msize, uint64_t at,
                               kdc_error *err)
{
    if (msize < 2)
        return bad(err, "layout message too short", at);
    int ver = m[0];
    uint64_t ndims, p;
    /* compact storage (data inside the header) is never written by kdcache, and
     * libhdf5 1.10.8 copies it by a size it does not check against the
     * dataspace */
    if ((ver >= 3 && m[1] == 0) || (ver <= 2 && msize >= 3 && m[2] == 0))
        return bad(err, "compact dataset storage", at);
    if (ver == 3 || ver == 4) {
        if (m[1] != 2) /* contiguous: no chunk sizes */
            return KDC_OK;
        if (msize < 3)
            return bad(err, "layout message too short", at);
        if (ver == 4) /* flags, then the chunk sizes' byte width: not our writer's */
            return bad(err, "layout message version", at);
        ndims = m[2];
        p = 3 + 8; /* address of the chunk index */
    } else if (ver == 1 || ver == 2) {
        if (msize < 8)
            return bad(err, "layout message too short", at);
        ndims = m[1];
        if (m[2] != 2)
            return KDC_OK;
        p = 8 + 8;
    } else {
        return bad(err, "layout message version", at);
    }
    if (ndims < 2 || ndims > 33 || p + 4 * ndims > msize)
        return bad(err, "chunk dimensions", at);
    for (uint64_t i = 0; i < ndims; i++)
        if (le(m + p + 4 * i, 4) == 0)
            return bad(err, "chunk dimension 0", at);
    return KDC_OK;
}

/* A filter pipeline message: every filter's name and client values inside the
 * message (libhdf5 1.10.8 decodes them by the counts it reads). */
static kdc_status check_pipeline(const unsigned char *m, uint64_t msize, uint64_t at,
                                 kdc_error *err)
{
    if (msize < 2)
        return bad(err, "filter pipeline message too short", at);
    int ver = m[0];
    uint64_t nf = m[1], p = ver == 1 ? 8 : 2;
    if ((ver != 1 && ver != 2) || nf > 32 || p > msize)
        return bad(err, "filter pipeline message", at);
    for (uint64_t f = 0; f < nf; f++) {
        if (p + 2 > msize)
            return bad(err, "filter pipeline message", at);
        uint64_t id = le(m + p, 2), name_len = 0;
        p += 2;
        if (ver == 1 || id >= 256) {
            if (p + 2 > msize)
                return bad(err, "filter pipeline message", at);
            name_len = le(m + p, 2);
            p += 2;
        }
        if (p + 4 > msize)
            return bad(err, "filter pipeline message", at);
        uint64_t ncd = le(m + p + 2, 2);
        p += 4;
        if (ver == 1)
            name_len = pad8(name_len);
        if (ncd > 64 || name_len > 256 || p + name_len > msize)
            return bad(err, "filter pipeline message", at);
        if (name_len && !memchr(m + p, 0, name_len))
            return bad(err, "filter name", at);
        p += name_len + 4 * ncd;
        if (ver == 1 && (ncd & 1))
            p += 4;
        if (p > msize)
            return bad(err, "filter pipeline message", at);
    }
    return KDC_OK;
}

/* A group's local heap (the link names of a symbol table): libhdf5 1.10.8
 * copies its data segment by sizes it does not check (a negative memcpy) and
 * follows its free list without a bound (a hang on a cycle). */
static kdc_status check_local_heap(const raw *r, uint64_t addr, kdc_error *err)
{
    unsigned char h[32];
    kdc_status st = read_at(r, addr, sizeof h, h, err);
    if (st != KDC_OK)
        return st;
    uint64_t size = le(h + 8, 8), head = le(h + 16, 8), data = le(h + 24, 8);
    if (memcmp(h, "HEAP", 4) || h[4] != 0 || size < 16 || size > MAX_BLOCK_BYTES ||
        data > r->size || size > r->size - data)
        return bad(err, "group local heap", addr);
    /* libhdf5 ends the list with offset 1 (H5HL_FREE_NULL); the format
     * specification says the undefined address */
    const uint64_t undef = ~(uint64_t)0;
    for (uint64_t steps = 0, off = head; off != undef && off != 1; steps++) {
        unsigned char b[16];
        if (steps > size / 16 || off % 8 || off > size - 16)
            return bad(err, "local heap free list", addr);
        if ((st = read_at(r, data + off, sizeof b, b, err)) != KDC_OK)
            return st;
        uint64_t next = le(b, 8), bsize = le(b + 8, 8);
        if (bsize < 16 || bsize > size - off || (next != undef && next != 1 && next <= off))
            return bad(err, "local heap free list", addr);
        off = next;
    }
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
        if (type == MSG_LAYOUT && (st = check_layout(m, size, off + p, err)) != KDC_OK)
            return st;
        if (type == MSG_PIPELINE && (st = check_pipeline(m, size, off + p, err)) != KDC_OK)
            return st;
        if (type == MSG_STAB) {
            if (size < 16)
                return bad(err, "symbol table message", off + p);
            if ((st = check_local_heap(r, le(m + 8, 8), err)) != KDC_OK)
                return st;
        }
        if (type == MSG_EFL) /* external files: never written by kdcache */
            return bad(err, "external file list", off + p);
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

/* Opens path and checks its superblock. *ours is 1 when it is of the layout
 * our writers produce (superblock version 0 at offset 0, 8-byte offsets and
 * lengths, base address 0; *root gets the root object header), 0 when it is
 * another layout, which is left to libhdf5. */
static kdc_status open_raw(const char *path, raw *r, int *ours, uint64_t *root, kdc_error *err)
{
    *ours = 0;
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0)
        return kdc_fail(err, KDC_EIO, "cannot open %s", path);
    struct stat sb;
    if (fstat(r->fd, &sb) != 0)
        return kdc_fail(err, KDC_EIO, "cannot stat %s", path);
    r->size = (uint64_t)sb.st_size;
    unsigned char sbk[96];
    kdc_error e2;
    if (read_at(r, 0, sizeof sbk, sbk, &e2) != KDC_OK ||
        memcmp(sbk, "\x89HDF\r\n\x1a\n", 8) || sbk[8] != 0 || sbk[13] != 8 || sbk[14] != 8)
        return KDC_OK;
    if (le(sbk + 24, 8) != 0)
        return bad(err, "superblock base address", 24);
    *root = le(sbk + 64, 8);
    *ours = 1;
    return KDC_OK;
}

/* Every message of the version 1 object header at addr and of its
 * continuation blocks. */
static kdc_status walk_object(raw *r, uint64_t addr, const char *what, kdc_error *err)
{
    unsigned char oh[16];
    kdc_status st = read_at(r, addr, sizeof oh, oh, err);
    if (st != KDC_OK)
        return st;
    uint64_t hsize = le(oh + 8, 4);
    if (oh[0] != 1 || hsize > MAX_BLOCK_BYTES || hsize < 8)
        return bad(err, what, addr);
    uint64_t q_off[MAX_BLOCKS], q_len[MAX_BLOCKS];
    q_off[0] = addr + 16;
    q_len[0] = hsize;
    int nq = 1;
    unsigned char *buf = NULL;
    for (int i = 0; st == KDC_OK && i < nq; i++) {
        free(buf);
        buf = malloc(q_len[i]);
        if (!buf)
            st = kdc_fail(err, KDC_ENOMEM, "object header");
        else if ((st = read_at(r, q_off[i], q_len[i], buf, err)) == KDC_OK)
            st = walk_block(r, buf, q_len[i], q_off[i], q_off, q_len, &nq, err);
    }
    free(buf);
    return st;
}

kdc_status cache_raw_check_root(const char *path, int *vlen_attrs, int64_t *version,
                                kdc_error *err)
{
    raw r = {-1, 0, 0, -1};
    uint64_t root = 0;
    int ours = 0;
    kdc_status st = open_raw(path, &r, &ours, &root, err);
    if (st == KDC_OK && ours)
        st = walk_object(&r, root, "root object header", err);
    if (r.fd >= 0)
        close(r.fd);
    *vlen_attrs = ours ? r.vlen_attrs : -1;
    *version = ours ? r.version : -1;
    return st;
}

kdc_status cache_raw_check_object(const char *path, uint64_t addr, kdc_error *err)
{
    raw r = {-1, 0, 0, -1};
    uint64_t root = 0;
    int ours = 0;
    kdc_status st = open_raw(path, &r, &ours, &root, err);
    if (st == KDC_OK && ours)
        st = walk_object(&r, addr, "object header", err);
    if (r.fd >= 0)
        close(r.fd);
    return st;
}
