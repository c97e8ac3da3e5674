/* kd_train_main.c - entry point of kd-train: parses the command line
 * (train_options.h) and runs the trainer (trainer.h). Prints one line and
 * exits 1 on any error; 0 on success. */
#include <stdio.h>

#include "train/train_options.h"
#include "train/trainer.h"

int main(int argc, char **argv)
{
    kd_train_options o;
    kdc_error err = {0};
    int help = 0;
    if (kd_train_parse_options(argc, argv, &o, &help, &err)) {
        fprintf(stderr, "kd-train: %s\n", err.msg);
        return 1;
    }
    if (help) {
        fputs(kd_train_usage(), stdout);
        return 0;
    }
    kdc_status st = o.eval_only ? kd_eval_only(&o, stdout, stderr, &err) : kd_train_run(&o, stderr, &err);
    if (st) {
        fprintf(stderr, "kd-train: %s\n", err.msg);
        return 1;
    }
    return 0;
}
