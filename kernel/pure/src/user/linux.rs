//! The Linux x86-64 system-call ABI's numbers: system calls
//! (`arch/x86/entry/syscalls/syscall_64.tbl`) and error codes
//! (`include/uapi/asm-generic/errno-base.h`, `errno.h`).

use core::fmt;

/// System-call names, numbers 0 to 334.
const NAMES_LOW: [&str; 335] = [
    "read",
    "write",
    "open",
    "close",
    "stat",
    "fstat",
    "lstat",
    "poll",
    "lseek",
    "mmap",
    "mprotect",
    "munmap",
    "brk",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "ioctl",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "access",
    "pipe",
    "select",
    "sched_yield",
    "mremap",
    "msync",
    "mincore",
    "madvise",
    "shmget",
    "shmat",
    "shmctl",
    "dup",
    "dup2",
    "pause",
    "nanosleep",
    "getitimer",
    "alarm",
    "setitimer",
    "getpid",
    "sendfile",
    "socket",
    "connect",
    "accept",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "shutdown",
    "bind",
    "listen",
    "getsockname",
    "getpeername",
    "socketpair",
    "setsockopt",
    "getsockopt",
    "clone",
    "fork",
    "vfork",
    "execve",
    "exit",
    "wait4",
    "kill",
    "uname",
    "semget",
    "semop",
    "semctl",
    "shmdt",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "fcntl",
    "flock",
    "fsync",
    "fdatasync",
    "truncate",
    "ftruncate",
    "getdents",
    "getcwd",
    "chdir",
    "fchdir",
    "rename",
    "mkdir",
    "rmdir",
    "creat",
    "link",
    "unlink",
    "symlink",
    "readlink",
    "chmod",
    "fchmod",
    "chown",
    "fchown",
    "lchown",
    "umask",
    "gettimeofday",
    "getrlimit",
    "getrusage",
    "sysinfo",
    "times",
    "ptrace",
    "getuid",
    "syslog",
    "getgid",
    "setuid",
    "setgid",
    "geteuid",
    "getegid",
    "setpgid",
    "getppid",
    "getpgrp",
    "setsid",
    "setreuid",
    "setregid",
    "getgroups",
    "setgroups",
    "setresuid",
    "getresuid",
    "setresgid",
    "getresgid",
    "getpgid",
    "setfsuid",
    "setfsgid",
    "getsid",
    "capget",
    "capset",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "rt_sigsuspend",
    "sigaltstack",
    "utime",
    "mknod",
    "uselib",
    "personality",
    "ustat",
    "statfs",
    "fstatfs",
    "sysfs",
    "getpriority",
    "setpriority",
    "sched_setparam",
    "sched_getparam",
    "sched_setscheduler",
    "sched_getscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "mlock",
    "munlock",
    "mlockall",
    "munlockall",
    "vhangup",
    "modify_ldt",
    "pivot_root",
    "_sysctl",
    "prctl",
    "arch_prctl",
    "adjtimex",
    "setrlimit",
    "chroot",
    "sync",
    "acct",
    "settimeofday",
    "mount",
    "umount2",
    "swapon",
    "swapoff",
    "reboot",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "create_module",
    "init_module",
    "delete_module",
    "get_kernel_syms",
    "query_module",
    "quotactl",
    "nfsservctl",
    "getpmsg",
    "putpmsg",
    "afs_syscall",
    "tuxcall",
    "security",
    "gettid",
    "readahead",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "tkill",
    "time",
    "futex",
    "sched_setaffinity",
    "sched_getaffinity",
    "set_thread_area",
    "io_setup",
    "io_destroy",
    "io_getevents",
    "io_submit",
    "io_cancel",
    "get_thread_area",
    "lookup_dcookie",
    "epoll_create",
    "epoll_ctl_old",
    "epoll_wait_old",
    "remap_file_pages",
    "getdents64",
    "set_tid_address",
    "restart_syscall",
    "semtimedop",
    "fadvise64",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    "clock_settime",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "exit_group",
    "epoll_wait",
    "epoll_ctl",
    "tgkill",
    "utimes",
    "vserver",
    "mbind",
    "set_mempolicy",
    "get_mempolicy",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
    "kexec_load",
    "waitid",
    "add_key",
    "request_key",
    "keyctl",
    "ioprio_set",
    "ioprio_get",
    "inotify_init",
    "inotify_add_watch",
    "inotify_rm_watch",
    "migrate_pages",
    "openat",
    "mkdirat",
    "mknodat",
    "fchownat",
    "futimesat",
    "newfstatat",
    "unlinkat",
    "renameat",
    "linkat",
    "symlinkat",
    "readlinkat",
    "fchmodat",
    "faccessat",
    "pselect6",
    "ppoll",
    "unshare",
    "set_robust_list",
    "get_robust_list",
    "splice",
    "tee",
    "sync_file_range",
    "vmsplice",
    "move_pages",
    "utimensat",
    "epoll_pwait",
    "signalfd",
    "timerfd_create",
    "eventfd",
    "fallocate",
    "timerfd_settime",
    "timerfd_gettime",
    "accept4",
    "signalfd4",
    "eventfd2",
    "epoll_create1",
    "dup3",
    "pipe2",
    "inotify_init1",
    "preadv",
    "pwritev",
    "rt_tgsigqueueinfo",
    "perf_event_open",
    "recvmmsg",
    "fanotify_init",
    "fanotify_mark",
    "prlimit64",
    "name_to_handle_at",
    "open_by_handle_at",
    "clock_adjtime",
    "syncfs",
    "sendmmsg",
    "setns",
    "getcpu",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "finit_module",
    "sched_setattr",
    "sched_getattr",
    "renameat2",
    "seccomp",
    "getrandom",
    "memfd_create",
    "kexec_file_load",
    "bpf",
    "execveat",
    "userfaultfd",
    "membarrier",
    "mlock2",
    "copy_file_range",
    "preadv2",
    "pwritev2",
    "pkey_mprotect",
    "pkey_alloc",
    "pkey_free",
    "statx",
    "io_pgetevents",
    "rseq",
];

/// System-call names, numbers 424 to 462.
const NAMES_HIGH: [&str; 39] = [
    "pidfd_send_signal",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "pidfd_open",
    "clone3",
    "close_range",
    "openat2",
    "pidfd_getfd",
    "faccessat2",
    "process_madvise",
    "epoll_pwait2",
    "mount_setattr",
    "quotactl_fd",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    "memfd_secret",
    "process_mrelease",
    "futex_waitv",
    "set_mempolicy_home_node",
    "cachestat",
    "fchmodat2",
    "map_shadow_stack",
    "futex_wake",
    "futex_wait",
    "futex_requeue",
    "statmount",
    "listmount",
    "lsm_get_self_attr",
    "lsm_set_self_attr",
    "lsm_list_modules",
    "mseal",
];

/// The name of system call `number`, if Linux x86-64 has one.
pub fn syscall_name(number: u64) -> Option<&'static str> {
    match number {
        0..=334 => Some(NAMES_LOW[number as usize]),
        424..=462 => Some(NAMES_HIGH[(number - 424) as usize]),
        _ => None,
    }
}

/// The number of the system call named `name`.
pub fn syscall_number(name: &str) -> Option<u64> {
    if let Some(i) = NAMES_LOW.iter().position(|&n| n == name) {
        return Some(i as u64);
    }
    NAMES_HIGH
        .iter()
        .position(|&n| n == name)
        .map(|i| i as u64 + 424)
}

/// An error a system call returns (as `-errno` in RAX).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub u16);

impl Errno {
    pub const EPERM: Errno = Errno(1);
    pub const ENOENT: Errno = Errno(2);
    pub const ESRCH: Errno = Errno(3);
    pub const EINTR: Errno = Errno(4);
    pub const EIO: Errno = Errno(5);
    pub const E2BIG: Errno = Errno(7);
    pub const ENOEXEC: Errno = Errno(8);
    pub const EBADF: Errno = Errno(9);
    pub const ECHILD: Errno = Errno(10);
    pub const EAGAIN: Errno = Errno(11);
    pub const ENOMEM: Errno = Errno(12);
    pub const EACCES: Errno = Errno(13);
    pub const EFAULT: Errno = Errno(14);
    pub const EBUSY: Errno = Errno(16);
    pub const EEXIST: Errno = Errno(17);
    pub const EXDEV: Errno = Errno(18);
    pub const ENODEV: Errno = Errno(19);
    pub const ENOTDIR: Errno = Errno(20);
    pub const EISDIR: Errno = Errno(21);
    pub const EINVAL: Errno = Errno(22);
    pub const ENFILE: Errno = Errno(23);
    pub const EMFILE: Errno = Errno(24);
    pub const ENOTTY: Errno = Errno(25);
    pub const EFBIG: Errno = Errno(27);
    pub const ENOSPC: Errno = Errno(28);
    pub const ESPIPE: Errno = Errno(29);
    pub const EROFS: Errno = Errno(30);
    pub const EPIPE: Errno = Errno(32);
    pub const EDOM: Errno = Errno(33);
    pub const ERANGE: Errno = Errno(34);
    pub const ENAMETOOLONG: Errno = Errno(36);
    pub const ENOSYS: Errno = Errno(38);
    pub const ENOTEMPTY: Errno = Errno(39);
    pub const ELOOP: Errno = Errno(40);
    pub const EOVERFLOW: Errno = Errno(75);
    pub const ENOTSOCK: Errno = Errno(88);
    pub const EDESTADDRREQ: Errno = Errno(89);
    pub const EMSGSIZE: Errno = Errno(90);
    pub const ENOPROTOOPT: Errno = Errno(92);
    pub const EPROTONOSUPPORT: Errno = Errno(93);
    pub const EOPNOTSUPP: Errno = Errno(95);
    pub const ENOBUFS: Errno = Errno(105);
    pub const EAFNOSUPPORT: Errno = Errno(97);
    pub const EADDRINUSE: Errno = Errno(98);
    pub const EADDRNOTAVAIL: Errno = Errno(99);
    pub const ENETUNREACH: Errno = Errno(101);
    pub const ECONNABORTED: Errno = Errno(103);
    pub const ECONNRESET: Errno = Errno(104);
    pub const EISCONN: Errno = Errno(106);
    pub const ENOTCONN: Errno = Errno(107);
    pub const ETIMEDOUT: Errno = Errno(110);
    pub const ECONNREFUSED: Errno = Errno(111);
    pub const EHOSTUNREACH: Errno = Errno(113);
    pub const EALREADY: Errno = Errno(114);
    pub const EINPROGRESS: Errno = Errno(115);

    /// What RAX holds: the negated code.
    pub fn to_return(self) -> u64 {
        (-i64::from(self.0)) as u64
    }

    /// The symbolic name and what it means (`strerror`'s wording).
    pub fn describe(self) -> Option<(&'static str, &'static str)> {
        let found = match self.0 {
            1 => ("EPERM", "operation not permitted"),
            2 => ("ENOENT", "no such file or directory"),
            3 => ("ESRCH", "no such process"),
            4 => ("EINTR", "interrupted system call"),
            5 => ("EIO", "input/output error"),
            7 => ("E2BIG", "argument list too long"),
            8 => ("ENOEXEC", "exec format error"),
            9 => ("EBADF", "bad file descriptor"),
            10 => ("ECHILD", "no child processes"),
            11 => ("EAGAIN", "resource temporarily unavailable"),
            12 => ("ENOMEM", "cannot allocate memory"),
            13 => ("EACCES", "permission denied"),
            14 => ("EFAULT", "bad address"),
            16 => ("EBUSY", "device or resource busy"),
            17 => ("EEXIST", "file exists"),
            18 => ("EXDEV", "invalid cross-device link"),
            19 => ("ENODEV", "no such device"),
            20 => ("ENOTDIR", "not a directory"),
            21 => ("EISDIR", "is a directory"),
            22 => ("EINVAL", "invalid argument"),
            23 => ("ENFILE", "too many open files in system"),
            24 => ("EMFILE", "too many open files"),
            25 => ("ENOTTY", "inappropriate ioctl for device"),
            27 => ("EFBIG", "file too large"),
            28 => ("ENOSPC", "no space left on device"),
            29 => ("ESPIPE", "illegal seek"),
            30 => ("EROFS", "read-only file system"),
            32 => ("EPIPE", "broken pipe"),
            33 => ("EDOM", "numerical argument out of domain"),
            34 => ("ERANGE", "numerical result out of range"),
            36 => ("ENAMETOOLONG", "file name too long"),
            38 => ("ENOSYS", "function not implemented"),
            39 => ("ENOTEMPTY", "directory not empty"),
            40 => ("ELOOP", "too many levels of symbolic links"),
            75 => ("EOVERFLOW", "value too large for defined data type"),
            88 => ("ENOTSOCK", "socket operation on non-socket"),
            89 => ("EDESTADDRREQ", "destination address required"),
            90 => ("EMSGSIZE", "message too long"),
            92 => ("ENOPROTOOPT", "protocol not available"),
            93 => ("EPROTONOSUPPORT", "protocol not supported"),
            95 => ("EOPNOTSUPP", "operation not supported"),
            105 => ("ENOBUFS", "no buffer space available"),
            97 => ("EAFNOSUPPORT", "address family not supported by protocol"),
            98 => ("EADDRINUSE", "address already in use"),
            99 => ("EADDRNOTAVAIL", "cannot assign requested address"),
            101 => ("ENETUNREACH", "network is unreachable"),
            103 => ("ECONNABORTED", "software caused connection abort"),
            104 => ("ECONNRESET", "connection reset by peer"),
            106 => ("EISCONN", "transport endpoint is already connected"),
            107 => ("ENOTCONN", "transport endpoint is not connected"),
            110 => ("ETIMEDOUT", "connection timed out"),
            111 => ("ECONNREFUSED", "connection refused"),
            113 => ("EHOSTUNREACH", "no route to host"),
            114 => ("EALREADY", "operation already in progress"),
            115 => ("EINPROGRESS", "operation now in progress"),
            _ => return None,
        };
        Some(found)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.describe() {
            Some((name, what)) => write!(f, "{name} ({what})"),
            None => write!(f, "errno {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn numbers_match_the_table() {
        for (number, name) in [
            (0, "read"),
            (1, "write"),
            (9, "mmap"),
            (39, "getpid"),
            (56, "clone"),
            (60, "exit"),
            (158, "arch_prctl"),
            (202, "futex"),
            (218, "set_tid_address"),
            (231, "exit_group"),
            (257, "openat"),
            (262, "newfstatat"),
            (273, "set_robust_list"),
            (302, "prlimit64"),
            (318, "getrandom"),
            (332, "statx"),
            (334, "rseq"),
            (435, "clone3"),
            (462, "mseal"),
        ] {
            assert_eq!(syscall_name(number), Some(name), "{number}");
            assert_eq!(syscall_number(name), Some(number), "{name}");
        }
        assert_eq!(syscall_name(335), None);
        assert_eq!(syscall_name(423), None);
        assert_eq!(syscall_name(463), None);
        assert_eq!(syscall_name(u64::MAX), None);
    }

    #[test]
    fn errors_return_negated_and_name_themselves() {
        assert_eq!(Errno::ENOSYS.to_return(), (-38i64) as u64);
        assert_eq!(Errno::EFAULT.to_string(), "EFAULT (bad address)");
        assert_eq!(Errno(200).to_string(), "errno 200");
        assert_eq!(Errno::EAGAIN.0, 11);
        assert_eq!(Errno::EINPROGRESS.0, 115);
    }
}
