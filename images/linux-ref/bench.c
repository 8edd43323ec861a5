/*
 * bench.c — the Linux reference guest's measurements, run as PID 1 (/init)
 * of an initramfs under Debian's kernel. See README.md next to it.
 *
 * Prints to the console (ttyS0), one measurement a line:
 *   linuxbench: ctxswitch_ns <ns per switch>
 *   linuxbench: sleep_<us>us_late_median_ns <ns>
 *   linuxbench: sleep_<us>us_late_p99_ns <ns>
 *   linuxbench: done
 * plus "linuxbench-info: ..." lines describing the setup (not measurements),
 * then powers the machine off.
 *
 * Kernel command line options (read from /proc/cmdline):
 *   linuxbench.scale=N   divide every iteration/sample count by N (slow KVM)
 *   linuxbench.slack=NS  timer slack for the sleeps (default 1 ns; Linux's
 *                        own default for normal threads is 50000 ns)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* Default counts, before linuxbench.scale. */
#define CTX_ROUND_TRIPS 20000
#define CTX_RUNS 3
static const struct {
    long us;     /* requested sleep */
    int samples; /* how many sleeps */
} sleeps[] = {{100, 200}, {1000, 100}, {10000, 30}};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* --- setup ------------------------------------------------------------- */

/* PID 1 starts with whatever fds the kernel could open on /dev/console;
 * make sure 0/1/2 are the console (devtmpfs if the initramfs has no node). */
static void console_setup(void)
{
    if (fcntl(1, F_GETFD) == -1) {
        mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
        int fd = open("/dev/console", O_RDWR | O_NOCTTY);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
            if (fd > 2)
                close(fd);
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
}

/* Value of "key=" on the kernel command line, or def. */
static long cmdline_long(const char *cmdline, const char *key, long def)
{
    size_t n = strlen(key);
    for (const char *p = cmdline; (p = strstr(p, key)) != NULL; p += n) {
        if ((p == cmdline || p[-1] == ' ') && p[n] == '=')
            return strtol(p + n + 1, NULL, 10);
    }
    return def;
}

static void read_file(const char *path, char *buf, size_t size)
{
    buf[0] = '\0';
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
}

/* --- context switch: futex ping-pong between two threads on CPU 0 ------ */

/* Each side waits on its own word: wait consumes a 1, post sets it and
 * always issues FUTEX_WAKE (like signalling a kernel event). */
static atomic_int ping_word, pong_word;
static long round_trips;

static void wait_on(atomic_int *w)
{
    while (atomic_exchange(w, 0) == 0)
        syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

static void post(atomic_int *w)
{
    atomic_store(w, 1);
    syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *ponger(void *arg)
{
    (void)arg;
    for (long i = 0; i < round_trips; i++) {
        wait_on(&ping_word);
        post(&pong_word);
    }
    return NULL;
}

/* One run: ns per switch (a round trip is two switches). */
static double ctxswitch_run(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, ponger, NULL) != 0) {
        printf("linuxbench-info: pthread_create failed\n");
        return -1;
    }
    int64_t t0 = now_ns();
    for (long i = 0; i < round_trips; i++) {
        post(&ping_word);
        wait_on(&pong_word);
    }
    int64_t t1 = now_ns();
    pthread_join(t, NULL);
    return (double)(t1 - t0) / (2.0 * (double)round_trips);
}

/* --- timer wake-up lateness -------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void sleep_bench(long us, int samples)
{
    int64_t *late = calloc((size_t)samples, sizeof *late);
    const int64_t req_ns = (int64_t)us * 1000;
    const struct timespec req = {.tv_sec = req_ns / 1000000000, .tv_nsec = req_ns % 1000000000};
    for (int i = 0; i < samples; i++) {
        int64_t t0 = now_ns();
        while (clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL) == EINTR)
            ;
        late[i] = now_ns() - t0 - req_ns;
    }
    qsort(late, (size_t)samples, sizeof *late, cmp_i64);
    int p99 = (samples * 99 + 99) / 100 - 1; /* nearest rank: ceil(0.99 n) */
    printf("linuxbench: sleep_%ldus_late_median_ns %lld\n", us, (long long)late[samples / 2]);
    printf("linuxbench: sleep_%ldus_late_p99_ns %lld\n", us, (long long)late[p99]);
    free(late);
}

/* --- main -------------------------------------------------------------- */

static void power_off(void)
{
    sync();
    reboot(RB_POWER_OFF);
    /* Fallback: QEMU's isa-debug-exit (exit status (1 << 1) | 1 = 3). */
    if (ioperm(0xf4, 4, 1) == 0)
        outl(1, 0xf4);
    for (;;)
        pause();
}

int main(void)
{
    console_setup();
    mount("proc", "/proc", "proc", 0, NULL);
    mount("sysfs", "/sys", "sysfs", 0, NULL);

    char cmdline[4096], clocksource[64];
    read_file("/proc/cmdline", cmdline, sizeof cmdline);
    /* The kernel starts on "tsc-early" and switches to the refined "tsc"
     * from a delayed work item about a second after boot, which can land
     * in the middle of the measurements: wait (at most 5 s) for it. */
    const char *cs_path = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
    int64_t deadline = now_ns() + 5000000000LL;
    for (;;) {
        read_file(cs_path, clocksource, sizeof clocksource);
        if (strcmp(clocksource, "tsc-early") != 0 || now_ns() > deadline)
            break;
        usleep(10000);
    }
    long scale = cmdline_long(cmdline, "linuxbench.scale", 1);
    long slack = cmdline_long(cmdline, "linuxbench.slack", 1);
    if (scale < 1)
        scale = 1;
    if (slack < 1)
        slack = 1; /* PR_SET_TIMERSLACK 0 would mean "back to default" */

    /* Everything on CPU 0; the helper thread inherits the mask. */
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(0, &cpus);
    sched_setaffinity(0, sizeof cpus, &cpus);
    prctl(PR_SET_TIMERSLACK, (unsigned long)slack, 0, 0, 0);

    struct utsname u;
    uname(&u);
    printf("linuxbench-info: kernel=%s clocksource=%s scale=%ld slack_ns=%ld\n", u.release,
           clocksource, scale, slack);

    round_trips = CTX_ROUND_TRIPS / scale;
    if (round_trips < 100)
        round_trips = 100;
    double best = -1;
    for (int run = 0; run < CTX_RUNS; run++) {
        double ns = ctxswitch_run();
        if (ns >= 0 && (best < 0 || ns < best))
            best = ns;
    }
    printf("linuxbench: ctxswitch_ns %.1f\n", best);

    for (size_t i = 0; i < sizeof sleeps / sizeof sleeps[0]; i++) {
        int n = (int)(sleeps[i].samples / scale);
        sleep_bench(sleeps[i].us, n < 5 ? 5 : n);
    }

    printf("linuxbench: done\n");
    fflush(stdout);
    power_off();
    return 0;
}
