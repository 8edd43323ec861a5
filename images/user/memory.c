/*
 * Memory: mmap, munmap, mprotect, mremap, madvise and brk, their edges,
 * private file mappings, and bad pointers handed to the kernel (EFAULT,
 * never a kernel fault). `memory` exits 0 when every check passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "check.h"


#define PAGE 4096

int main(void)
{
    char *p = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(p != MAP_FAILED && ((uintptr_t)p % PAGE) == 0, "mmap 8 pages");
    memset(p, 0x11, 8 * PAGE);
    check(munmap(p + 2 * PAGE, 2 * PAGE) == 0, "munmap the middle");
    check(p[PAGE] == 0x11 && p[4 * PAGE] == 0x11, "the rest stays mapped");
    char *again = mmap(p + 2 * PAGE, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    check(again == p + 2 * PAGE && again[0] == 0, "MAP_FIXED into the hole: fresh zeros");
    char *over = mmap(p, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    check(over == p && p[0] == 0 && p[PAGE] == 0x11, "MAP_FIXED over a page replaces just that page");
    errno = 0;
    check(mmap(p, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED &&
              errno == EEXIST,
          "MAP_FIXED_NOREPLACE over a mapping: EEXIST");
    errno = 0;
    check(mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED && errno == EINVAL,
          "mmap of 0 bytes: EINVAL");
    errno = 0;
    check(mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, 99, 0) == MAP_FAILED && errno == EBADF, "mmap of a bad fd: EBADF");

    /* A reservation made usable piece by piece (what allocators do). */
    char *r = mmap(NULL, 64 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    check(r != MAP_FAILED, "PROT_NONE reservation");
    check(mprotect(r + 4 * PAGE, 2 * PAGE, PROT_READ | PROT_WRITE) == 0, "mprotect part of it");
    r[4 * PAGE] = 1;
    r[6 * PAGE - 1] = 2;
    check(r[4 * PAGE] == 1 && r[6 * PAGE - 1] == 2, "the part is usable");
    errno = 0;
    check(write(1, r, 1) == -1 && errno == EFAULT, "a PROT_NONE page handed to write: EFAULT");
    errno = 0;
    check(mprotect(r + 100 * PAGE, PAGE, PROT_READ) == -1 && errno == ENOMEM, "mprotect past the mapping: ENOMEM");

    /* mremap: grow (moving if it must), shrink. */
    char *m = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(m, "remapped", 9);
    m[2 * PAGE - 1] = 'z';
    char *grown = mremap(m, 2 * PAGE, 16 * PAGE, MREMAP_MAYMOVE);
    check(grown != MAP_FAILED && strcmp(grown, "remapped") == 0 && grown[2 * PAGE - 1] == 'z' &&
              grown[15 * PAGE] == 0,
          "mremap grows and keeps the contents");
    check(mremap(grown, 16 * PAGE, PAGE, 0) == grown, "mremap shrinks in place");
    grown[0] = 'x';
    check(madvise(grown, PAGE, MADV_DONTNEED) == 0 && grown[0] == 0, "MADV_DONTNEED gives zeros back");

    /* A private file mapping. */
    int fd = open("/etc/motd", O_RDONLY);
    char *f = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    check(f != MAP_FAILED && strncmp(f, "sanos: the boot module", 22) == 0, "mmap of /etc/motd reads the file");
    if (f != MAP_FAILED) {
        f[0] = 'S';
        char buf[8] = {0};
        check(pread(fd, buf, 5, 0) == 5 && buf[0] == 's' && f[0] == 'S', "a private write stays private");
    }
    errno = 0;
    check(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED, "a writable shared mapping is refused");
    close(fd);

    /* The heap, by the system call (musl's sbrk only reads it). */
    char *b0 = (char *)syscall(SYS_brk, 0);
    char *b1 = (char *)syscall(SYS_brk, b0 + 3 * PAGE);
    check(b1 == b0 + 3 * PAGE && (b0[0] = 1, b0[3 * PAGE - 1] = 1) == 1, "brk grows");
    check((char *)syscall(SYS_brk, b0) == b0, "brk shrinks");
    check((char *)syscall(SYS_brk, (char *)0x1000) == b0, "brk below its start is refused (the break stays)");

    /* Kernel and unmapped addresses handed to the kernel. */
    errno = 0;
    check(write(1, (void *)0xffffffff80200000ul, 4) == -1 && errno == EFAULT, "a kernel address: EFAULT");
    int zero = open("/dev/zero", O_RDONLY);
    void *volatile unmapped = (void *)0x10;
    errno = 0;
    check(read(zero, unmapped, 4) == -1 && errno == EFAULT, "an unmapped address: EFAULT");
    close(zero);
    struct timespec ts;
    errno = 0;
    check(clock_gettime(CLOCK_MONOTONIC, (struct timespec *)0x7ffffffff000) == -1 && errno == EFAULT,
          "clock_gettime into the last page: EFAULT");
    check(clock_gettime(CLOCK_REALTIME, &ts) == 0 && ts.tv_sec > 1600000000, "CLOCK_REALTIME is a date");

    return verdict("memory");
}
