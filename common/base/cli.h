/* cli.h - parsing helpers shared by the command-line tools: numbers, pairs
 * "a,b", lists "a,b,c" and "i/n", each with a one-line error naming the flag. */
#ifndef KDC_CLI_H
#define KDC_CLI_H

#include "common/base/error.h"

/* Exit statuses of every tool (SPEC.md section 5): a bad command line is 2, a
 * failure while running (a file, the data, the disk) is 1. */
enum { KDC_EXIT_OK = 0, KDC_EXIT_FAILURE = 1, KDC_EXIT_USAGE = 2 };

/* What a command line asks for besides a run: -h/--help or --version. */
enum { KDC_CLI_RUN = 0, KDC_CLI_HELP = 1, KDC_CLI_VERSION = 2 };

/* --log-every SECONDS: how often progress is logged when stderr is not a terminal. */
#define KDC_LOG_EVERY_DEFAULT_S 30.0

kdc_status kdc_cli_int(const char *flag, const char *s, long lo, long hi, long *out,
                       kdc_error *err);
kdc_status kdc_cli_double(const char *flag, const char *s, double lo, double hi, double *out,
                          kdc_error *err);
/* "a,b" -> two doubles in [lo, hi] with a <= b. */
kdc_status kdc_cli_pair(const char *flag, const char *s, double lo, double hi, double out[2],
                        kdc_error *err);
/* "a,b,c" -> up to max ints, strictly increasing, each in [lo, hi]. */
kdc_status kdc_cli_int_list(const char *flag, const char *s, long lo, long hi, int max,
                            long *out, int *count, kdc_error *err);
/* "a,b,c" -> exactly n doubles. */
kdc_status kdc_cli_doubles(const char *flag, const char *s, int n, double *out, kdc_error *err);
/* "i/n" with 0 <= i < n. */
kdc_status kdc_cli_shard(const char *flag, const char *s, int *index, int *count,
                         kdc_error *err);

/* The view flags that kd-precompute and kd-train share (--pad, --image-size,
 * --resize-size, --scale, --ratio, --mean, --std), parsed into the caller's fields
 * with the same ranges in both tools. `flag` is the long name without dashes. */
typedef struct kdc_cli_view_fields {
    int *pad, *image_size, *resize_size;
    double *scale, *ratio, *mean, *std; /* [2], [2], [3], [3] */
} kdc_cli_view_fields;

kdc_status kdc_cli_view_flag(const char *flag, const char *arg, const kdc_cli_view_fields *f,
                             kdc_error *err);

#endif
