/*
 * System-call and program costs, the same static binary on sanos and as
 * init of the Linux reference guest (images/linux-ref): prints
 * `sysbench: <name> <value>` lines, then `sysbench: done`.
 *
 *   start_ns               CLOCK_BOOTTIME at the top of main: from the
 *                          kernel's start to the program running
 *   getpid_cycles          TSC cycles of one getpid round trip (best of 5
 *                          rounds of 100000)
 *   thread_create_join_ns  one pthread_create + pthread_join (best of 5
 *                          rounds of 200)
 *
 * As Linux's PID 1 it powers the machine off at the end (init must not
 * exit there); on sanos it exits and the kernel powers off.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void *nothing(void *arg)
{
    return arg;
}

int main(void)
{
    struct timespec boot;
    clock_gettime(CLOCK_BOOTTIME, &boot);
    printf("sysbench: start_ns %llu\n",
           (unsigned long long)boot.tv_sec * 1000000000ull + (unsigned long long)boot.tv_nsec);

    double best = 1e30;
    for (int round = 0; round < 5; round++) {
        const int n = 100000;
        uint64_t t0 = rdtsc();
        for (int i = 0; i < n; i++)
            syscall(SYS_getpid);
        double per = (double)(rdtsc() - t0) / n;
        if (per < best)
            best = per;
    }
    printf("sysbench: getpid_cycles %.1f\n", best);

    best = 1e30;
    for (int round = 0; round < 5; round++) {
        const int n = 200;
        uint64_t t0 = now_ns();
        for (int i = 0; i < n; i++) {
            pthread_t t;
            if (pthread_create(&t, NULL, nothing, NULL) != 0 || pthread_join(t, NULL) != 0) {
                printf("sysbench: thread create failed\n");
                return 1;
            }
        }
        double per = (double)(now_ns() - t0) / n;
        if (per < best)
            best = per;
    }
    printf("sysbench: thread_create_join_ns %.0f\n", best);
    printf("sysbench: done\n");
    fflush(stdout);

    struct utsname u;
    if (getpid() == 1 && uname(&u) == 0 && !strstr(u.release, "sanos")) {
        sync();
        reboot(RB_POWER_OFF);
    }
    return 0;
}
