/* kd_cache_main.c - entry point of kd-cache. Not built yet: see issue #3. This file
 * exists so that the build and the README's commands are honest about it. */
#include <stdio.h>

int main(void)
{
    fprintf(stderr, "kd-cache: not implemented yet (issue #3)\n");
    return 2;
}
