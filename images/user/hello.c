/*
 * The first program sanos runs in its tests: its arguments, environment
 * and auxiliary vector as Linux lays them out, the heap (brk) and mmap,
 * TLS (errno is thread-local), clocks, and its exit status.
 * `hello [status]` exits with `status` (default 0) once every check passed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "check.h"


int main(int argc, char **argv, char **envp)
{
    printf("hello from %s, argc %d\n", argv[0], argc);
    for (int i = 1; i < argc; i++)
        printf("argv[%d] = %s\n", i, argv[i]);
    int envc = 0;
    while (envp[envc])
        envc++;
    printf("%d environment strings, HOME=%s\n", envc, getenv("HOME") ? getenv("HOME") : "(unset)");

    check(argv[argc] == NULL, "argv ends with NULL");
    check(getauxval(AT_PAGESZ) == 4096, "AT_PAGESZ is 4096");
    const char *execfn = (const char *)getauxval(AT_EXECFN);
    check(execfn && strcmp(execfn, argv[0]) == 0, "AT_EXECFN is argv[0]");
    const char *platform = (const char *)getauxval(AT_PLATFORM);
    check(platform && strcmp(platform, "x86_64") == 0, "AT_PLATFORM is x86_64");
    const unsigned char *random = (const unsigned char *)getauxval(AT_RANDOM);
    int nonzero = 0;
    for (int i = 0; random && i < 16; i++)
        nonzero |= random[i];
    check(random && nonzero, "AT_RANDOM gives 16 bytes");
    check(getauxval(AT_PHDR) != 0 && getauxval(AT_PHNUM) > 0, "AT_PHDR and AT_PHNUM");
    check(getauxval(AT_ENTRY) != 0, "AT_ENTRY");
    check(getauxval(AT_SECURE) == 0, "AT_SECURE is 0");

    /* Small allocations come from brk, large ones from mmap. */
    char *small = malloc(100);
    char *large = malloc(4 << 20);
    check(small && large, "malloc small and large");
    if (large) {
        memset(large, 0x5a, 4 << 20);
        check(large[(4 << 20) - 1] == 0x5a, "large block writable to its end");
    }
    free(large);
    free(small);
    char *map = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(map != MAP_FAILED && map[0] == 0 && map[3 * 4096 - 1] == 0, "mmap gives zeroed pages");
    check(map != MAP_FAILED && munmap(map, 3 * 4096) == 0, "munmap");

    /* errno lives in TLS: a failed call sets it for this thread. */
    errno = 0;
    check(write(99, "x", 1) == -1 && errno == EBADF, "write to a bad fd: EBADF in errno");

    struct utsname u;
    check(uname(&u) == 0 && strcmp(u.sysname, "Linux") == 0, "uname");
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    struct timespec nap = {0, 5 * 1000 * 1000};
    nanosleep(&nap, NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long slept = (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec);
    check(slept >= 5 * 1000 * 1000, "nanosleep 5 ms, CLOCK_MONOTONIC advanced by as much");
    check(getpid() > 0, "getpid");

    if (verdict("hello") != 0)
        return 1;
    return argc > 1 ? atoi(argv[1]) : 0;
}
