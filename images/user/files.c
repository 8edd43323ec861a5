/*
 * Files: the boot module as a read-only root, a tmpfs at /tmp, /proc,
 * /sys and /dev, descriptors (dup2, pipes, fcntl), directories and the
 * working directory. `files` exits 0 when every check passed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"


static int read_all(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return (int)n;
}

static int listed(const char *dir, const char *name)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        found |= strcmp(e->d_name, name) == 0;
    closedir(d);
    return found;
}

int main(int argc, char **argv)
{
    (void)argc;
    char buf[4096];
    const char *motd = "sanos: the boot module is the root file system\n";

    /* The root: the boot module, read-only. */
    check(read_all("/etc/motd", buf, sizeof buf) == (int)strlen(motd) && strcmp(buf, motd) == 0,
          "read /etc/motd from the boot module");
    struct stat st;
    check(stat("/etc/motd", &st) == 0 && S_ISREG(st.st_mode) && st.st_size == (off_t)strlen(motd),
          "stat /etc/motd: a regular file of its size");
    int fd = open("/etc/motd", O_RDONLY);
    check(fd >= 3 && pread(fd, buf, 5, 7) == 5 && memcmp(buf, "the b", 5) == 0, "pread at an offset");
    check(lseek(fd, -5, SEEK_END) == (off_t)strlen(motd) - 5 && read(fd, buf, 100) == 5, "lseek from the end");
    close(fd);
    errno = 0;
    check(open("/etc/motd", O_WRONLY) == -1 && errno == EROFS, "the root is read-only: EROFS");
    errno = 0;
    check(open("/no/such/file", O_RDONLY) == -1 && errno == ENOENT, "a missing file: ENOENT");
    errno = 0;
    check(open("/etc/motd/x", O_RDONLY) == -1 && errno == ENOTDIR, "a file used as a directory: ENOTDIR");
    check(listed("/", "bin") && listed("/", "etc") && listed("/", "tmp") && listed("/", "proc") &&
              listed("/", "dev"),
          "/ lists bin, etc, tmp, proc, dev");
    check(listed("/bin", "files"), "/bin lists this program");

    /* /tmp: a writable tmpfs. */
    check(mkdir("/tmp/d", 0755) == 0, "mkdir /tmp/d");
    errno = 0;
    check(mkdir("/tmp/d", 0755) == -1 && errno == EEXIST, "mkdir again: EEXIST");
    FILE *f = fopen("/tmp/d/f", "w");
    check(f != NULL, "create /tmp/d/f");
    if (f) {
        fprintf(f, "written by %s\n", argv[0]);
        fclose(f);
    }
    check(read_all("/tmp/d/f", buf, sizeof buf) > 0 && strstr(buf, "written by") == buf, "read it back");
    fd = open("/tmp/d/f", O_WRONLY | O_APPEND);
    check(fd >= 0 && write(fd, "more\n", 5) == 5, "append");
    close(fd);
    check(stat("/tmp/d/f", &st) == 0 && st.st_size == (off_t)(strlen("written by \n") + strlen(argv[0]) + 5),
          "its size grew");
    check(truncate("/tmp/d/f", 3) == 0 && stat("/tmp/d/f", &st) == 0 && st.st_size == 3, "truncate");
    check(rename("/tmp/d/f", "/tmp/d/g") == 0 && access("/tmp/d/g", R_OK) == 0 && access("/tmp/d/f", F_OK) == -1,
          "rename");
    errno = 0;
    check(rmdir("/tmp/d") == -1 && errno == ENOTEMPTY, "rmdir of a full directory: ENOTEMPTY");
    check(unlink("/tmp/d/g") == 0 && rmdir("/tmp/d") == 0, "unlink and rmdir");
    errno = 0;
    check(rename("/etc/motd", "/tmp/motd") == -1 && errno == EXDEV, "rename across file systems: EXDEV");

    /* The working directory. */
    check(chdir("/tmp") == 0 && getcwd(buf, sizeof buf) && strcmp(buf, "/tmp") == 0, "chdir /tmp");
    fd = open("rel", O_CREAT | O_RDWR, 0644);
    check(fd >= 0 && access("/tmp/rel", F_OK) == 0, "a relative path is under the working directory");
    close(fd);
    check(chdir("..") == 0 && getcwd(buf, sizeof buf) && strcmp(buf, "/") == 0, "chdir .. back to /");

    /* /proc, /sys, /dev. */
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    check(n > 0 && (buf[n] = 0, strcmp(buf, argv[0]) == 0), "/proc/self/exe is this program");
    check(read_all("/proc/meminfo", buf, sizeof buf) > 0 && strstr(buf, "MemTotal:"), "/proc/meminfo");
    check(read_all("/proc/uptime", buf, sizeof buf) > 0 && atof(buf) > 0, "/proc/uptime");
    check(read_all("/proc/self/maps", buf, sizeof buf) > 0 && strstr(buf, "[stack]"), "/proc/self/maps");
    check(read_all("/proc/cpuinfo", buf, sizeof buf) > 0 && strstr(buf, "processor"), "/proc/cpuinfo");
    check(read_all("/sys/devices/system/cpu/online", buf, sizeof buf) == 2 && strcmp(buf, "0\n") == 0,
          "/sys/devices/system/cpu/online");
    check(read_all("/proc/sys/net/core/somaxconn", buf, sizeof buf) > 0 && atoi(buf) > 0,
          "/proc/sys/net/core/somaxconn");
    fd = open("/dev/zero", O_RDONLY);
    memset(buf, 1, 64);
    check(fd >= 0 && read(fd, buf, 64) == 64 && buf[0] == 0 && buf[63] == 0, "/dev/zero");
    close(fd);
    fd = open("/dev/null", O_RDWR);
    check(fd >= 0 && write(fd, buf, 64) == 64 && read(fd, buf, 64) == 0, "/dev/null");
    close(fd);
    unsigned char r1[16] = {0}, r2[16] = {0};
    fd = open("/dev/urandom", O_RDONLY);
    check(fd >= 0 && read(fd, r1, 16) == 16 && read(fd, r2, 16) == 16 && memcmp(r1, r2, 16) != 0, "/dev/urandom");
    close(fd);

    /* Descriptors: pipes, dup2, fcntl. */
    int p[2];
    check(pipe(p) == 0 && write(p[1], "abc", 3) == 3 && read(p[0], buf, 10) == 3 && memcmp(buf, "abc", 3) == 0,
          "a pipe carries bytes");
    close(p[1]);
    check(read(p[0], buf, 10) == 0, "a pipe without a writer reads end of file");
    close(p[0]);
    check(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
    errno = 0;
    check(read(p[0], buf, 10) == -1 && errno == EAGAIN, "an empty non-blocking pipe: EAGAIN");
    check(fcntl(p[0], F_GETFD) == FD_CLOEXEC, "O_CLOEXEC is FD_CLOEXEC");
    close(p[0]);
    errno = 0;
    check(write(p[1], "x", 1) == -1 && errno == EPIPE, "a pipe without a reader: EPIPE");
    close(p[1]);
    fflush(stdout);
    int saved = dup(1);
    fd = open("/tmp/out", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    int moved = dup2(fd, 1);
    printf("into the file\n");
    fflush(stdout);
    dup2(saved, 1);
    close(fd);
    close(saved);
    check(saved >= 0 && fd >= 0 && moved == 1, "dup2 over stdout");
    check(read_all("/tmp/out", buf, sizeof buf) > 0 && strcmp(buf, "into the file\n") == 0,
          "stdout went to the file, and is back");
    errno = 0;
    check(close(1000) == -1 && errno == EBADF, "close of a bad descriptor: EBADF");

    return verdict("files");
}
