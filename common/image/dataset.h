/* dataset.h - the list of images: an ImageFolder tree or a list file, in a
 * stable order, with labels, sizes, CRC-32s and the dataset fingerprint.
 *
 * ImageFolder (torchvision's convention, SPEC.md section 3): ROOT/<class>/...;
 * the class folders sorted byte-wise (strcmp, never the locale) give labels
 * 0..C-1; within a class, files are found recursively and ordered as torchvision's
 * sorted(os.walk()) does: by folder path, then by file name, both byte-wise.
 * Only .jpg/.jpeg files (any case) are images: PNG is not decoded (docs/IMAGES.md).
 * A list file has one `relative/path<TAB>label` line per image, in its order
 * (label -1 = unknown). So the same tree gives the same indices on any machine.
 *
 * The fingerprint is SHA-256 over, for every image in order, the UTF-8 path, one
 * NUL byte, the file size as 8 bytes little-endian and the zlib CRC-32 as 4 bytes
 * little-endian; written as 64 lowercase hex digits (docs/IMAGES.md gives the
 * Python one-liner).
 *
 * Not the decoder: files are only listed, stat'ed and (img_dataset_checksum) read. */
#ifndef KDC_DATASET_H
#define KDC_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

/* Deepest folder nesting followed inside a class (guards against symlink loops). */
#define IMG_DATASET_MAX_DEPTH 32

typedef struct img_entry {
    char *path;     /* relative to the root, '/'-separated, no "..", never absolute */
    int32_t label;  /* class index, -1 when unknown */
    uint64_t size;  /* bytes, from stat at open */
    uint32_t crc32; /* zlib crc32 of the bytes, after img_dataset_checksum */
} img_entry;

typedef struct img_dataset {
    char *root;
    img_entry *items;
    size_t count;
    char **classes; /* ImageFolder: class names by label; NULL for a list */
    int num_classes;
    int checksummed;     /* crc32 and fingerprint are valid */
    char fingerprint[65];
} img_dataset;

kdc_status img_dataset_open_folder(img_dataset **out, const char *root, kdc_error *err);
kdc_status img_dataset_open_list(img_dataset **out, const char *root, const char *list_path,
                                 kdc_error *err);
void img_dataset_free(img_dataset *ds);

/* Reads every file with `threads` threads: sizes, CRC-32s, then the fingerprint.
 * Fails naming the first file (in order) that cannot be read or changed size. */
kdc_status img_dataset_checksum(img_dataset *ds, int threads, kdc_error *err);

/* The fingerprint of entries[0..n) (their path, size and crc32). */
void img_dataset_fingerprint_of(const img_entry *entries, size_t n, char hex[65]);

/* root + "/" + path of image i. */
/* Size and zlib CRC-32 of a whole file, read through buf (bufsz bytes). The one
 * implementation of the per-image checksum: datasets and `kd-cache verify` use it. */
kdc_status img_file_crc32(const char *path, uint64_t *size, uint32_t *crc, uint8_t *buf,
                          size_t bufsz, kdc_error *err);

kdc_status img_dataset_full_path(const img_dataset *ds, size_t i, char *buf, size_t len,
                                 kdc_error *err);

#endif
