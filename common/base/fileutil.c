/* fileutil.c - mkdir -p, temporary names and durable renames. */
#include "common/base/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int kdc_path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int kdc_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

kdc_status kdc_create_empty(const char *path, kdc_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return kdc_fail(err, KDC_EIO, "cannot create %s: %s", path, strerror(errno));
    close(fd);
    return KDC_OK;
}

kdc_status kdc_mkdirs(const char *path, kdc_error *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return kdc_fail(err, KDC_EINVAL, "bad folder name '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return kdc_fail(err, KDC_EIO, "cannot create folder %s: %s", buf,
                                strerror(errno));
            buf[i] = c;
        }
    }
    if (!kdc_is_dir(path))
        return kdc_fail(err, KDC_EIO, "%s exists and is not a folder", path);
    return KDC_OK;
}

kdc_status kdc_partial_name(const char *path, char *buf, size_t len, kdc_error *err)
{
    int n = snprintf(buf, len, "%s.partial", path);
    if (n < 0 || (size_t)n >= len)
        return kdc_fail(err, KDC_EINVAL, "path too long: %s", path);
    return KDC_OK;
}

static void fsync_path(const char *path, int dir)
{
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

kdc_status kdc_commit_file(const char *tmp, const char *final_path, kdc_error *err)
{
    fsync_path(tmp, 0);
    if (rename(tmp, final_path) != 0)
        return kdc_fail(err, KDC_EIO, "cannot rename %s to %s: %s", tmp, final_path,
                        strerror(errno));
    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", final_path);
    fsync_path(dirname(dirbuf), 1);
    return KDC_OK;
}
