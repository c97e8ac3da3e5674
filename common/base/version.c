/* version.c - the build's identity for --version (see version.h). */
#include "common/base/version.h"

#include <stdio.h>

/* Defaults for a compiler run outside the Makefile (e.g. an IDE's indexer). */
#ifndef KDC_VERSION
#define KDC_VERSION "unknown"
#endif
#ifndef KDC_GIT_COMMIT
#define KDC_GIT_COMMIT "unknown"
#endif
#ifndef KDC_BUILD_CUDA
#define KDC_BUILD_CUDA 0
#endif
#ifndef KDC_BUILD_SANITIZE
#define KDC_BUILD_SANITIZE 0
#endif
#ifndef KDC_BUILD_OPT
#define KDC_BUILD_OPT "?"
#endif

#if defined(__clang__)
#define COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define COMPILER "gcc " __VERSION__
#else
#define COMPILER "unknown compiler"
#endif

const char *kdc_version(void)
{
    return KDC_VERSION;
}

const char *kdc_git_commit(void)
{
    return KDC_GIT_COMMIT[0] ? KDC_GIT_COMMIT : "unknown";
}

int kdc_built_with_cuda(void)
{
    return KDC_BUILD_CUDA;
}

int kdc_built_with_sanitizers(void)
{
    return KDC_BUILD_SANITIZE;
}

void kdc_version_text(const char *tool, char *buf, size_t len)
{
    snprintf(buf, len,
             "%s (kdcache) %s\n"
             "commit %s\n"
             "build: CUDA %s, sanitizers %s, %s, %s\n",
             tool, kdc_version(), kdc_git_commit(), KDC_BUILD_CUDA ? "on" : "off",
             KDC_BUILD_SANITIZE ? "on (address,undefined)" : "off", KDC_BUILD_OPT, COMPILER);
}
