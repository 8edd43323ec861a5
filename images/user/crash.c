/* A program that faults: a write through a null pointer. sanos must end
 * it with a report (SIGSEGV, the address, RIP) and carry on. */
#include <stdio.h>

int main(void)
{
    printf("crash: writing through a null pointer\n");
    fflush(stdout);
    *(volatile int *)0 = 1;
    printf("crash: still running: FAIL\n");
    return 0;
}
