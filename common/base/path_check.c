/* path_check.c - write probes and "is this path inside that folder". */
#include "common/base/path_check.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

kdc_status kdc_check_dir_writable(const char *dir, kdc_error *err)
{
    char probe[PATH_MAX];
    int n = snprintf(probe, sizeof probe, "%s/.kdc-write-probe-XXXXXX", dir);
    if (n < 0 || (size_t)n >= sizeof probe)
        return kdc_fail(err, KDC_EINVAL, "folder name too long: %s", dir);
    int fd = mkstemp(probe);
    if (fd < 0)
        return kdc_fail(err, KDC_EIO, "cannot write in %s: %s", dir, strerror(errno));
    int bad = write(fd, "k", 1) != 1;
    int e = errno;
    bad |= close(fd) != 0;
    unlink(probe);
    if (bad)
        return kdc_fail(err, KDC_EIO, "cannot write in %s: %s", dir, strerror(e ? e : EIO));
    return KDC_OK;
}

int kdc_path_is_inside(const char *path, const char *dir)
{
    char real_dir[PATH_MAX], real_parent[PATH_MAX], copy[PATH_MAX], full[PATH_MAX];
    if (!realpath(dir, real_dir))
        return -1;
    /* The file itself may not exist: resolve its folder, then add its name
     * (a link named like the file is resolved too when it exists). */
    if (realpath(path, full)) {
        snprintf(copy, sizeof copy, "%s", full);
    } else {
        if (snprintf(copy, sizeof copy, "%s", path) >= (int)sizeof copy)
            return -1;
        char base[PATH_MAX];
        snprintf(base, sizeof base, "%s", basename(copy));
        snprintf(copy, sizeof copy, "%s", path);
        if (!realpath(dirname(copy), real_parent))
            return -1;
        if (snprintf(copy, sizeof copy, "%s/%s", real_parent, base) >= (int)sizeof copy)
            return -1;
    }
    size_t n = strlen(real_dir);
    if (n == 1) /* dir is "/" */
        return 1;
    return !strncmp(copy, real_dir, n) && (copy[n] == '/' || copy[n] == '\0');
}
