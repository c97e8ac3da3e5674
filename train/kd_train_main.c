/* kd_train_main.c - entry point of kd-train: parses the command line
 * (train_options.h) and runs the trainer (trainer.h). Errors are one line on
 * stderr; exit 0 on success, 1 when the run fails, 2 for a bad command line. */
#include <stdio.h>

#include "common/base/cli.h"
#include "common/base/version.h"
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
    kdc_status st = o.eval_only ? kd_eval_only(&o, stdout, stderr, &err) : kd_train_run(&o, stderr, &err);
    if (st) {
        fprintf(stderr, "kd-train: %s\n", err.msg);
        return KDC_EXIT_FAILURE;
    }
    return KDC_EXIT_OK;
}
