/* A program that faults: `crash` writes through a null pointer; `crash
 * kernel` reads the kernel's first page of text. sanos must end it with a
 * report (SIGSEGV, the address, RIP) and carry on. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "kernel") == 0) {
        printf("crash: reading kernel memory\n");
        fflush(stdout);
        volatile unsigned long *kernel = (volatile unsigned long *)0xffffffff80200000ul;
        printf("crash: read %#lx: FAIL\n", *kernel);
        return 0;
    }
    printf("crash: writing through a null pointer\n");
    fflush(stdout);
    *(volatile int *)0 = 1;
    printf("crash: still running: FAIL\n");
    return 0;
}
