/* student_meta.c - a student's settings in its safetensors metadata, and
 * --eval-only's choice between them and the flags (see student_meta.h). */
#include "train/student_meta.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/version.h"
#include "formats/safetensors.h"

static void put(kd_student_meta_text *t, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void put(kd_student_meta_text *t, const char *key, const char *fmt, ...)
{
    if (t->n >= KD_META_MAX_PAIRS)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->buf[t->n], sizeof t->buf[t->n], fmt, ap);
    va_end(ap);
    t->pairs[t->n][0] = key;
    t->pairs[t->n][1] = t->buf[t->n];
    t->n++;
}

void kd_student_meta_format(const kd_student_meta *m, kd_student_meta_text *t)
{
    t->n = 0;
    const float *mu = m->norm.mean, *sd = m->norm.std;
    put(t, "arch", "%s", m->arch);
    put(t, "num_classes", "%d", m->num_classes);
    put(t, "image_size", "%d", m->image_size);
    put(t, "resize_size", "%d", m->resize_size);
    put(t, "view_policy", "%s", img_view_policy_name(m->policy));
    /* %.9g prints every float32 so that it reads back to the same value */
    put(t, "mean", "%.9g,%.9g,%.9g", (double)mu[0], (double)mu[1], (double)mu[2]);
    put(t, "std", "%.9g,%.9g,%.9g", (double)sd[0], (double)sd[1], (double)sd[2]);
    put(t, "created_by", "kd-train (kdcache) %s commit %s", kdc_version(), kdc_git_commit());
}

static kdc_status meta_int(st_file *f, const char *key, long lo, long hi, int *out, unsigned bit,
                           unsigned *have, kdc_error *err)
{
    const char *v = st_metadata(f, key);
    if (!v)
        return KDC_OK;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return kdc_fail(err, KDC_EFORMAT, "%s: metadata %s = '%.40s' is not an integer in %ld..%ld",
                        st_path(f), key, v, lo, hi);
    *out = (int)x;
    *have |= bit;
    return KDC_OK;
}

static kdc_status meta_floats3(st_file *f, const char *key, int positive, float *out, unsigned bit,
                               unsigned *have, kdc_error *err)
{
    const char *v = st_metadata(f, key), *p = v;
    if (!v)
        return KDC_OK;
    for (int i = 0; i < 3; i++) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (errno || end == p || !isfinite(x) || (positive && !(x > 0)) || fabs(x) > 1e6 ||
            *end != (i < 2 ? ',' : '\0'))
            return kdc_fail(err, KDC_EFORMAT, "%s: metadata %s = '%.60s' is not 3 %snumbers r,g,b",
                            st_path(f), key, v, positive ? "positive " : "");
        out[i] = (float)x;
        p = end + 1;
    }
    *have |= bit;
    return KDC_OK;
}

kdc_status kd_student_meta_read(const char *path, kd_student_meta *m, kdc_error *err)
{
    memset(m, 0, sizeof *m);
    img_norm_default(&m->norm);
    st_file *f = NULL;
    kdc_status st = st_open(path, &f, err);
    if (st)
        return st;
    const char *arch = st_metadata(f, "arch"), *pol = st_metadata(f, "view_policy");
    if (arch && *arch) {
        size_t n = strlen(arch);
        int ok = n < sizeof m->arch;
        for (size_t i = 0; ok && i < n; i++)
            ok = (arch[i] >= 'a' && arch[i] <= 'z') || (arch[i] >= '0' && arch[i] <= '9') ||
                 arch[i] == '_' || (arch[i] >= 'A' && arch[i] <= 'Z'); /* MobileNetV2 */
        if (!ok) {
            st = kdc_fail(err, KDC_EFORMAT,
                          "%s: metadata arch = '%.40s' is not an architecture "
                          "name",
                          path, arch);
            goto out;
        }
        memcpy(m->arch, arch, n + 1);
        m->have |= KD_META_ARCH;
    }
    if (pol) {
        kdc_error e2;
        if (img_view_policy_parse(pol, &m->policy, &e2)) {
            st = kdc_fail(err, KDC_EFORMAT,
                          "%s: metadata view_policy = '%.40s' is not center, rrc or pad-crop", path,
                          pol);
            goto out;
        }
        m->have |= KD_META_POLICY;
    }
    if ((st = meta_int(f, "num_classes", 1, 1000000, &m->num_classes, KD_META_CLASSES, &m->have,
                       err)) ||
        (st = meta_int(f, "image_size", 8, 4096, &m->image_size, KD_META_IMAGE_SIZE, &m->have,
                       err)) ||
        (st = meta_int(f, "resize_size", 8, 8192, &m->resize_size, KD_META_RESIZE_SIZE, &m->have,
                       err)) ||
        (st = meta_floats3(f, "mean", 0, m->norm.mean, KD_META_MEAN, &m->have, err)) ||
        (st = meta_floats3(f, "std", 1, m->norm.std, KD_META_STD, &m->have, err)))
        goto out;
out:
    st_close(f);
    return st;
}

int kd_eval_resize_size(img_view_policy policy, int image_size, int resize_size)
{
    return policy == IMG_VIEW_PAD_CROP ? image_size : resize_size;
}

static kdc_status conflict(const kd_train_options *o, const char *flag, const char *given,
                           const char *key, const char *stored, kdc_error *err)
{
    return kdc_fail(err, KDC_EMISMATCH,
                    "%s %s disagrees with %s, whose metadata says %s %s: leave the flag out, "
                    "or add --force to use it",
                    flag, given, o->weights, key, stored);
}

static void fmt3(const float *v, char *buf, size_t len)
{
    snprintf(buf, len, "%g,%g,%g", (double)v[0], (double)v[1], (double)v[2]);
}

kdc_status kd_eval_settings_resolve(const kd_train_options *o, kd_eval_settings *s, kdc_error *err)
{
    kd_student_meta m;
    kdc_status st = kd_student_meta_read(o->weights, &m, err);
    if (st)
        return st;
    memset(s, 0, sizeof *s);
    int force = o->force;
    char a[96], b[96];

    int given = KD_WAS_GIVEN(o, KD_GIVEN_STUDENT);
    if (m.have & KD_META_ARCH) {
        if (given && strcmp(o->student, m.arch) && !force)
            return conflict(o, "--student", o->student, "arch", m.arch, err);
        snprintf(s->arch, sizeof s->arch, "%s", given ? o->student : m.arch);
    } else if (given) {
        snprintf(s->arch, sizeof s->arch, "%s", o->student);
    } else {
        return kdc_fail(err, KDC_EINVAL,
                        "--eval-only: %s does not name its architecture (no kd-train metadata, "
                        "e.g. a torchvision export): give --student ARCH and the view flags",
                        o->weights);
    }
    s->num_classes = (m.have & KD_META_CLASSES) ? m.num_classes : 0;

    /* S: the metadata's; a different --image-size is refused unless --force */
    int gS = (int)KD_WAS_GIVEN(o, KD_GIVEN_IMAGE_SIZE);
    s->image_size = o->image_size;
    if (m.have & KD_META_IMAGE_SIZE) {
        if (gS && o->image_size != m.image_size && !force) {
            snprintf(a, sizeof a, "%d", o->image_size);
            snprintf(b, sizeof b, "%d", m.image_size);
            return conflict(o, "--image-size", a, "image_size", b, err);
        }
        if (!(gS && force))
            s->image_size = m.image_size;
    }

    img_view_policy policy = IMG_VIEW_CENTER, flag_policy = IMG_VIEW_CENTER;
    int gp = (int)KD_WAS_GIVEN(o, KD_GIVEN_VIEW_POLICY);
    if (gp && (st = img_view_policy_parse(o->view_policy, &flag_policy, err)))
        return kdc_error_prefix(err, "--view-policy: ");
    if (m.have & KD_META_POLICY) {
        if (gp && flag_policy != m.policy && !force)
            return conflict(o, "--view-policy", o->view_policy, "view_policy",
                            img_view_policy_name(m.policy), err);
        policy = gp && force ? flag_policy : m.policy;
    } else if (gp) {
        policy = flag_policy;
    }

    /* R': the metadata holds the evaluation's resize; --resize-size is compared by
     * the R' it gives (under pad-crop any --resize-size gives S) */
    int gR = (int)KD_WAS_GIVEN(o, KD_GIVEN_RESIZE_SIZE);
    int flag_r = kd_eval_resize_size(policy, s->image_size, o->resize_size);
    s->resize_size = flag_r;
    if (m.have & KD_META_RESIZE_SIZE) {
        if (gR && flag_r != m.resize_size && !force) {
            snprintf(a, sizeof a, "%d", o->resize_size);
            snprintf(b, sizeof b, "%d", m.resize_size);
            return conflict(o, "--resize-size", a, "resize_size", b, err);
        }
        if (!(gR && force))
            s->resize_size = m.resize_size;
    }

    img_norm_default(&s->norm);
    const struct {
        const char *flag, *key;
        unsigned bit;
        int given;
        const double *flag_value;
        const float *meta_value;
        float *out;
    } norms[2] = {
        {"--mean", "mean", KD_META_MEAN, o->have_mean, o->mean, m.norm.mean, s->norm.mean},
        {"--std", "std", KD_META_STD, o->have_std, o->std, m.norm.std, s->norm.std},
    };
    for (int i = 0; i < 2; i++) {
        float fv[3];
        for (int c = 0; c < 3; c++)
            fv[c] = (float)norms[i].flag_value[c];
        int g = norms[i].given;
        if (m.have & norms[i].bit) {
            int same = 1;
            for (int c = 0; c < 3; c++)
                same &= fv[c] == norms[i].meta_value[c];
            if (g && !same && !force) {
                fmt3(fv, a, sizeof a);
                fmt3(norms[i].meta_value, b, sizeof b);
                return conflict(o, norms[i].flag, a, norms[i].key, b, err);
            }
            memcpy(norms[i].out, g && force ? fv : norms[i].meta_value, sizeof fv);
        } else if (g) {
            memcpy(norms[i].out, fv, sizeof fv);
        }
    }
    if (s->resize_size < s->image_size)
        return kdc_fail(err, KDC_EINVAL, "--eval-only: resize size %d is below image size %d",
                        s->resize_size, s->image_size);
    return KDC_OK;
}
