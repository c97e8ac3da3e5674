/* cache_schema.h - the data model of the teacher cache (format version 2
 * written; versions 2 and 1 read):
 * names of datasets and attributes, the header (root attributes), the image
 * table, one chunk of stored rows, and the checks every reader and writer
 * applies (path rules, shape limits, dataset fingerprint).
 *
 * docs/CACHE_FORMAT.md is the normative description; this header is its C
 * mirror. No HDF5 calls here: cache_h5.h does the file I/O. */
#ifndef KDC_CACHE_SCHEMA_H
#define KDC_CACHE_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

#define CACHE_VERSION 2    /* what the writers write */
#define CACHE_VERSION_V1 1 /* still read: variable-length strings, whole-image chunks */

/* Dataset paths. */
#define CACHE_DS_PATH "/images/path"
#define CACHE_DS_LABEL "/images/label"
#define CACHE_DS_SIZE "/images/size"
#define CACHE_DS_CRC32 "/images/crc32"
#define CACHE_DS_HEIGHT "/images/height"
#define CACHE_DS_WIDTH "/images/width"
#define CACHE_DS_SKIPPED "/images/skipped"
#define CACHE_DS_BOX "/views/box"
#define CACHE_DS_FLIP "/views/flip"
#define CACHE_DS_LOGITS "/logits"
#define CACHE_DS_TOPK_INDEX "/topk/index"
#define CACHE_DS_TOPK_VALUE "/topk/value"
#define CACHE_DS_FEATURES "/features"
#define CACHE_DS_DONE "/progress/done"

/* Limits on what a file may claim. They are far above any real dataset and
 * exist so that a hostile header is refused before anything is allocated. */
#define CACHE_MAX_IMAGES ((int64_t)1 << 31)   /* 2 G images */
#define CACHE_MAX_VIEWS 4096                  /* FKD used 500 */
#define CACHE_MAX_CLASSES ((int64_t)1 << 24)  /* 16 M classes */
#define CACHE_MAX_FEATURES ((int64_t)1 << 20) /* 1 M feature channels */
#define CACHE_MAX_PATH 4096                   /* PATH_MAX */
#define CACHE_MAX_CHUNK_BYTES ((size_t)1 << 30) /* one dataset chunk, uncompressed */
#define CACHE_STR_MAX 256                     /* string attributes */
#define CACHE_TABLE_CHUNK_IMAGES 65536        /* v2 /images/path and /images/label */
/* Past this many classes the top-k indices no longer fit uint16. */
#define CACHE_TOPK_U16_MAX_CLASSES 65536

typedef enum cache_logit_storage {
    CACHE_LOGITS_F32 = 0,
    CACHE_LOGITS_F16 = 1,
    CACHE_LOGITS_TOPK = 2
} cache_logit_storage;

/* Every root attribute. Strings are NUL-terminated and at most CACHE_STR_MAX-1
 * bytes. Fields marked "writer" are set by the writer, not by its caller. */
typedef struct cache_header {
    int64_t version; /* writer: CACHE_VERSION */
    char teacher_arch[CACHE_STR_MAX];
    char teacher_weights_sha256[CACHE_STR_MAX];
    int64_t num_images;      /* N */
    int64_t views_per_image; /* V */
    int64_t num_classes;     /* C */
    int64_t feature_dim;     /* D; 0 = no /features dataset */
    char view_policy[CACHE_STR_MAX]; /* center | rrc | pad-crop */
    int64_t image_size, resize_size;
    double mean[3], std[3];
    double scale_range[2], ratio_range[2];
    int64_t pad;
    uint64_t seed;
    cache_logit_storage logit_storage;
    int64_t topk;                          /* K; 0 unless topk storage */
    char dataset_fingerprint[CACHE_STR_MAX]; /* writer: cache_fingerprint() of the table */
    char created_by[CACHE_STR_MAX];
    int64_t chunk_images; /* images per chunk along N (0 = let the writer choose) */
    int64_t shard_index, shard_count; /* 0, 1 for an unsharded file */
    int64_t complete;     /* writer: 1 once every chunk of the file's range is written */
} cache_header;

/* The per-image table. path/label/size/crc32 are known before any teacher
 * runs; height/width/skipped are filled chunk by chunk. */
typedef struct cache_image_table {
    int64_t count;
    char **path; /* relative, UTF-8 */
    int32_t *label;
    uint64_t *size;
    uint32_t *crc32;
    int32_t *height, *width; /* 0 until written (and for skipped images) */
    uint8_t *skipped;        /* 1 = the image could not be read; its rows are zeros */
} cache_image_table;

/* One chunk of rows in stored form (what the datasets hold), images
 * [first_image, first_image + count). Buffers are sized for chunk_images. */
typedef struct cache_chunk {
    int64_t first_image, count, capacity;
    int64_t view; /* -1: all V views; else rows hold this one view (cache_reader_read_view) */
    int files_known; /* size/crc32 below hold this chunk's values (else a writer
                      * uses the table it was created with) */
    uint64_t *size;  /* file size of each image (v2 writes it with the chunk) */
    uint32_t *crc32; /* zlib CRC-32 of each image file */
    int32_t *height, *width;
    uint8_t *skipped;
    int32_t *box;   /* count x V x 4: y0, x0, h, w (count x 4 when view >= 0; so below) */
    uint8_t *flip;  /* count x V */
    void *logits;   /* count x V x C: float (F32) or uint16 half bits (F16); NULL in topk */
    void *topk_index;     /* count x V x K: uint16 when C <= 65536, else int32 */
    uint16_t *topk_value; /* count x V x K half bits */
    uint16_t *features;   /* count x V x D half bits; NULL when D == 0 */
} cache_chunk;

const char *cache_logit_storage_name(cache_logit_storage s);
/* Parses "float32", "float16", "topk:K" (or "topk" with k given separately). */
kdc_status cache_parse_logit_storage(const char *s, cache_logit_storage *out, int64_t *k,
                                     kdc_error *err);

/* Checks version (1 or 2), shapes, limits, strings and mode consistency of a
 * header, and the fingerprint's form (64 hex digits; in v2 empty until a
 * complete unsharded file). */
kdc_status cache_header_validate(const cache_header *h, kdc_error *err);
/* Number of chunks along N. */
int64_t cache_num_chunks(const cache_header *h);
/* Chunks [*first, *end) that shard shard_index of shard_count owns: contiguous,
 * chunk-aligned ranges as equal as possible. */
void cache_shard_chunks(const cache_header *h, int64_t shard_index, int64_t shard_count,
                        int64_t *first, int64_t *end);
/* Index element size (2 or 4 bytes) in topk mode. */
size_t cache_topk_index_size(const cache_header *h);
/* Uncompressed bytes of one image's rows over all datasets (for chunk sizing). */
size_t cache_bytes_per_image(const cache_header *h);
/* Images per chunk (format v2): one view of the largest per-view dataset
 * about 256 KiB, at most 4096 images. */
int64_t cache_default_chunk_images(const cache_header *h);

/* Returns the name of the first attribute that differs, or NULL when a and b
 * describe the same cache (ignoring complete; dataset_fingerprint only when
 * one side has none, as a v2 file before completion or a v2 shard; and
 * shard_index when ignore_shard is set). Where a fingerprint is missing the
 * callers compare the image tables themselves. */
const char *cache_header_diff(const cache_header *a, const cache_header *b, int ignore_shard);

/* A path is relative, non-empty, at most CACHE_MAX_PATH bytes, has no ".."
 * component, no backslash and no control characters. */
kdc_status cache_check_path(const char *path, kdc_error *err);

/* SHA-256 (hex, 64 chars + NUL) over, for each image in order: the path bytes,
 * a NUL, size as 8 bytes little-endian, crc32 as 4 bytes little-endian. */
void cache_fingerprint(const cache_image_table *t, char out[65]);

/* Allocates table arrays for n images (paths NULL, others zero). */
kdc_status cache_image_table_alloc(cache_image_table *t, int64_t n, kdc_error *err);
void cache_image_table_free(cache_image_table *t);

kdc_status cache_chunk_alloc(cache_chunk *c, const cache_header *h, kdc_error *err);
void cache_chunk_free(cache_chunk *c);

#endif
