/* kd_train_main.c - entry point of kd-train: parses the command line
 * (train_options.h) and runs the trainer (trainer.h). Errors are one line on
 * stderr; exit 0 on success, 1 when the run fails, 2 for a bad command line. */
#include <stdio.h>

#include "common/base/cli.h"
#include "common/base/version.h"
#include "common/dist/dist.h"
#include "train/train_options.h"
#include "train/trainer.h"

int main(int argc, char **argv)
{
    kd_train_options o;
    kdc_error err = {0};
    int action = KDC_CLI_RUN;
    if (kd_train_parse_options(argc, argv, &o, &action, &err)) {
        fprintf(stderr, "kd-train: %s\n", err.msg);
        return KDC_EXIT_USAGE;
    }
    if (action == KDC_CLI_HELP) {
        fputs(kd_train_usage(), stdout);
        return KDC_EXIT_OK;
    }
    if (action == KDC_CLI_VERSION) {
        char v[512];
        kdc_version_text("kd-train", v, sizeof v);
        fputs(v, stdout);
        return KDC_EXIT_OK;
    }
    if (o.eval_only) {
        if (kd_eval_only(&o, stdout, stderr, &err)) {
            fprintf(stderr, "kd-train: %s\n", err.msg);
            return KDC_EXIT_FAILURE;
        }
        return KDC_EXIT_OK;
    }
    /* Under mpirun, srun or torchrun-style variables: one rank of a
     * data-parallel job (docs/DISTRIBUTED.md); else one process. */
    kdc_dist *dist = NULL;
    if (kdc_dist_init(&dist, &err)) {
        fprintf(stderr, "kd-train: %s\n", err.msg);
        return KDC_EXIT_FAILURE;
    }
    kdc_status st = kd_train_run_dist(&o, dist, stderr, &err);
    if (st) {
        if (kdc_dist_size(dist) > 1) {
            fprintf(stderr, "kd-train: rank %d of %d: %s\n", kdc_dist_rank(dist),
                    kdc_dist_size(dist), err.msg);
            kdc_dist_abort(dist, KDC_EXIT_FAILURE); /* the other ranks stop too */
        }
        fprintf(stderr, "kd-train: %s\n", err.msg);
        kdc_dist_finish(dist);
        return KDC_EXIT_FAILURE;
    }
    kdc_dist_finish(dist);
    return KDC_EXIT_OK;
}
