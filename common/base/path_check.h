/* path_check.h - where a tool may write: checked before the slow work starts,
 * so that a bad output place costs a second, not an epoch or a teacher pass.
 *
 * Paths are compared as the file system resolves them (realpath: "..", "."
 * and symbolic links followed), so a relative --out or a link to the data
 * folder is seen for what it is. */
#ifndef KDC_PATH_CHECK_H
#define KDC_PATH_CHECK_H

#include "common/base/error.h"

/* Creates and removes a probe file in folder dir: KDC_OK when a file can be
 * written there (permissions, read-only mounts, quotas on creation), else
 * KDC_EIO naming dir and the system's reason. */
kdc_status kdc_check_dir_writable(const char *dir, kdc_error *err);

/* 1 when path (a file that may not exist yet: its folder must) lies inside
 * folder dir or is dir itself, 0 when not; -1 when either cannot be resolved
 * (errno tells why). */
int kdc_path_is_inside(const char *path, const char *dir);

#endif
