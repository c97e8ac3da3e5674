/* kd_train_main.c - entry point of kd-train. Not built yet: see issue #6. This file
 * exists so that the build and the README's commands are honest about it. */
#include <stdio.h>

int main(void)
{
    fprintf(stderr, "kd-train: not implemented yet (issue #6)\n");
    return 2;
}
