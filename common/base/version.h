/* version.h - what --version prints: the release, the git commit the tools were
 * built from and the build options (CUDA, sanitizers, optimisation, compiler).
 *
 * The values come from the Makefile (KDC_VERSION, KDC_GIT_COMMIT, KDC_BUILD_*),
 * which passes them to version.c alone, so that a new commit rebuilds one object.
 * Text only: the mains print it. */
#ifndef KDC_VERSION_H
#define KDC_VERSION_H

#include <stddef.h>

const char *kdc_version(void);    /* "1.0" */
const char *kdc_git_commit(void); /* "d6baa61", "d6baa61-dirty" or "unknown" */
int kdc_built_with_cuda(void);
int kdc_built_with_sanitizers(void);

/* Three lines for `tool --version`, each ending in '\n':
 *   kd-train (kdcache) 1.0
 *   commit d6baa61-dirty
 *   build: CUDA on, sanitizers off (address,undefined when on), -O2 -g, gcc 12.2.0 */
void kdc_version_text(const char *tool, char *buf, size_t len);

#endif
