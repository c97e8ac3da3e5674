/* fileutil.h - small file-system helpers the tools share: making folders,
 * "<path>.partial" temporary names and the final atomic rename. */
#ifndef KDC_FILEUTIL_H
#define KDC_FILEUTIL_H

#include <stddef.h>

#include "common/base/error.h"

/* mkdir -p; existing folders are fine, an existing non-folder is an error. */
kdc_status kdc_mkdirs(const char *path, kdc_error *err);

/* "<path>.partial" into buf. */
kdc_status kdc_partial_name(const char *path, char *buf, size_t len, kdc_error *err);

/* fsync(tmp), rename(tmp, final), fsync the folder: after this returns OK the
 * complete file is under its final name even across a crash. */
kdc_status kdc_commit_file(const char *tmp, const char *final_path, kdc_error *err);

/* Creates (or empties) path as a file and closes it: "cannot create PATH: <errno
 * text>" on failure. For files a library opens afterwards (libhdf5 does not say
 * why a create failed). */
kdc_status kdc_create_empty(const char *path, kdc_error *err);

int kdc_path_exists(const char *path);
int kdc_is_dir(const char *path);

#endif
