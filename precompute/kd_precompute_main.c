/* kd_precompute_main.c - entry point of kd-precompute. Not built yet: see issue #5. This file
 * exists so that the build and the README's commands are honest about it. */
#include <stdio.h>

int main(void)
{
    fprintf(stderr, "kd-precompute: not implemented yet (issue #5)\n");
    return 2;
}
