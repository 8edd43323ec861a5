//! The Linux x86-64 system calls: number in RAX, arguments in RDI, RSI,
//! RDX, R10, R8, R9, the result (or `-errno`) in RAX.
//!
//! Each call follows Linux's semantics and error codes for what sanos
//! offers; a call sanos does not have returns `ENOSYS` and is logged once
//! with its number and name.

use super::uaccess::{self, copy_to_user};
use super::vm::{self, Backing, Kind, Prot};
use super::{files, net, poll, signal};
use crate::arch::traps::TrapFrame;
use crate::mm::paging::USER_END;
use core::sync::atomic::{AtomicU64, Ordering};
use pure::user::linux::{syscall_name, Errno};

type Result<T> = core::result::Result<T, Errno>;

use files::AT_FDCWD;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_REMOVEDIR: u64 = 0x200;

/// Called from the trap path (vector `SYSCALL_VECTOR`) with interrupts
/// masked; runs the call with them enabled.
pub fn dispatch(frame: &mut TrapFrame) {
    crate::arch::cpu::irq_enable();
    super::on_return(frame);
    let number = frame.rax;
    let args = [
        frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
    ];
    let result = match number {
        CLONE => clone(frame, args),
        _ => call(number, args),
    };
    frame.rax = match result {
        Ok(value) => value,
        Err(errno) => errno.to_return(),
    };
    super::on_return(frame);
    crate::arch::cpu::irq_disable();
}

/// Numbers already reported as missing (bit per number below 512).
static REPORTED: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

fn not_implemented(number: u64) -> Result<u64> {
    let (word, bit) = ((number / 64) as usize, number % 64);
    let first = match REPORTED.get(word) {
        Some(word) => word.fetch_or(1 << bit, Ordering::Relaxed) & (1 << bit) == 0,
        None => true,
    };
    if first {
        log::warn!(
            "user: system call {number} ({}) is not implemented: ENOSYS",
            syscall_name(number).unwrap_or("unknown")
        );
    }
    Err(Errno::ENOSYS)
}

fn call(number: u64, a: [u64; 6]) -> Result<u64> {
    match number {
        0 => files::read(a[0], a[1], a[2]),
        1 => files::write(a[0], a[1], a[2]),
        2 => files::openat(AT_FDCWD, a[0], a[1], a[2]),
        3 => files::close_fd(a[0]),
        4 => files::fstatat(AT_FDCWD, a[0], a[1], 0),
        5 => files::fstat(a[0], a[1]),
        6 => files::fstatat(AT_FDCWD, a[0], a[1], AT_SYMLINK_NOFOLLOW),
        7 => poll::poll(a[0], a[1], a[2]),
        8 => files::lseek(a[0], a[1], a[2]),
        9 => mmap(a[0], a[1], a[2], a[3], a[4], a[5]),
        10 => mprotect(a[0], a[1], a[2]),
        11 => munmap(a[0], a[1]),
        12 => brk(a[0]),
        13 => signal::rt_sigaction(a[0], a[1], a[2], a[3]),
        14 => signal::rt_sigprocmask(a[0], a[1], a[2], a[3]),
        16 => ioctl(a[0], a[1], a[2]),
        17 => files::pread(a[0], a[1], a[2], a[3]),
        18 => files::pwrite(a[0], a[1], a[2], a[3]),
        19 => files::readv(a[0], a[1], a[2]),
        20 => files::writev(a[0], a[1], a[2]),
        21 => files::faccessat(AT_FDCWD, a[0], a[1], 0),
        22 => files::pipe2(a[0], 0),
        23 => poll::select(a[0], a[1], a[2], a[3], a[4]),
        24 => {
            crate::sched::yield_now();
            Ok(0)
        }
        25 => mremap(a[0], a[1], a[2], a[3]),
        28 => madvise(a[0], a[1], a[2]),
        32 => files::dup(a[0]),
        33 => files::dup2(a[0], a[1]),
        35 => nanosleep(a[0], a[1]),
        39 => Ok(super::PID),
        40 => files::sendfile(a[0], a[1], a[2], a[3]),
        41 => net::socket(a[0], a[1], a[2]),
        42 => net::connect(a[0], a[1], a[2]),
        43 => net::accept(a[0], a[1], a[2], 0),
        44 => net::sendto(a[0], a[1], a[2], a[3], a[4], a[5]),
        45 => net::recvfrom(a[0], a[1], a[2], a[3], a[4], a[5]),
        46 => net::sendmsg(a[0], a[1], a[2]),
        47 => net::recvmsg(a[0], a[1], a[2]),
        48 => net::shutdown(a[0], a[1]),
        49 => net::bind(a[0], a[1], a[2]),
        50 => net::listen(a[0], a[1]),
        51 => net::getsockname(a[0], a[1], a[2]),
        52 => net::getpeername(a[0], a[1], a[2]),
        53 => Err(Errno::EOPNOTSUPP), // socketpair: AF_UNIX is not offered
        54 => net::setsockopt(a[0], a[1], a[2], a[3], a[4]),
        55 => net::getsockopt(a[0], a[1], a[2], a[3], a[4]),
        60 => super::exit_thread(a[0] as i32 & 0xff),
        63 => uname(a[0]),
        72 => files::fcntl(a[0], a[1], a[2]),
        74 | 75 => files::get(a[0]).map(|_| 0), // fsync, fdatasync: memory only
        76 => files::truncate(a[0], a[1]),
        77 => files::ftruncate(a[0], a[1]),
        79 => files::getcwd(a[0], a[1]),
        80 => files::chdir(a[0]),
        81 => files::fchdir(a[0]),
        82 => files::renameat(AT_FDCWD, a[0], AT_FDCWD, a[1], 0),
        83 => files::mkdirat(AT_FDCWD, a[0], a[1]),
        84 => files::unlinkat(AT_FDCWD, a[0], AT_REMOVEDIR),
        87 => files::unlinkat(AT_FDCWD, a[0], 0),
        88 => files::symlinkat(a[0], AT_FDCWD, a[1]),
        89 => files::readlinkat(AT_FDCWD, a[0], a[1], a[2]),
        95 => Ok(0o022), // umask: fixed at 022
        96 => gettimeofday(a[0]),
        97 | 302 => prlimit(number, a),
        102 | 104 | 107 | 108 => Ok(0), // getuid, getgid, geteuid, getegid: root
        98 => getrusage(a[0], a[1]),
        99 => sysinfo(a[0]),
        110 => Ok(0), // getppid: started by the kernel
        131 => signal::sigaltstack(a[0], a[1]),
        157 => prctl(a[0], a[1]),
        158 => arch_prctl(a[0], a[1]),
        186 => Ok(crate::sched::current().id()),
        201 => time(a[0]),
        202 => super::futex::futex(a[0], a[1], a[2], a[3], a[4], a[5]),
        204 => sched_getaffinity(a[0], a[1], a[2]),
        213 => match a[0] as i32 {
            size if size > 0 => poll::epoll_create1(0),
            _ => Err(Errno::EINVAL),
        },
        217 => files::getdents64(a[0], a[1], a[2]),
        218 => set_tid_address(a[0]),
        228 => clock_gettime(a[0], a[1]),
        // clone3 may answer ENOSYS: glibc then uses clone.
        435 => Err(Errno::ENOSYS),
        229 => clock_getres(a[0], a[1]),
        230 => clock_nanosleep(a[0], a[1], a[2], a[3]),
        231 => super::exit_program(a[0] as i32 & 0xff),
        232 | 281 => poll::epoll_wait(a[0], a[1], a[2], a[3]),
        233 => poll::epoll_ctl(a[0], a[1], a[2], a[3]),
        257 => files::openat(a[0], a[1], a[2], a[3]),
        258 => files::mkdirat(a[0], a[1], a[2]),
        262 => files::fstatat(a[0], a[1], a[2], a[3]),
        263 => files::unlinkat(a[0], a[1], a[2]),
        264 => files::renameat(a[0], a[1], a[2], a[3], 0),
        266 => files::symlinkat(a[0], a[1], a[2]),
        267 => files::readlinkat(a[0], a[1], a[2], a[3]),
        270 => poll::pselect6(a[0], a[1], a[2], a[3], a[4]),
        271 => poll::ppoll(a[0], a[1], a[2], a[3]),
        284 => poll::eventfd2(a[0], 0),
        288 => net::accept(a[0], a[1], a[2], a[3]),
        290 => poll::eventfd2(a[0], a[1]),
        291 => poll::epoll_create1(a[0]),
        269 | 439 => files::faccessat(a[0], a[1], a[2], if number == 439 { a[3] } else { 0 }),
        292 => files::dup3(a[0], a[1], a[2]),
        293 => files::pipe2(a[0], a[1]),
        316 => files::renameat(a[0], a[1], a[2], a[3], a[4]),
        273 => Ok(0), // set_robust_list: recorded nowhere yet
        318 => getrandom(a[0], a[1], a[2]),
        332 => files::statx(a[0], a[1], a[2], a[3], a[4]),
        _ => not_implemented(number),
    }
}

const MMAP_MIN_ADDR: u64 = 0x10000;
const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;

fn mmap(address: u64, len: u64, prot: u64, flags: u64, fd: u64, offset: u64) -> Result<u64> {
    let prot = Prot::from_linux(prot).ok_or(Errno::EINVAL)?;
    if len == 0 || !address.is_multiple_of(4096) || !offset.is_multiple_of(4096) {
        return Err(Errno::EINVAL);
    }
    let len = vm::page_up(len).ok_or(Errno::ENOMEM)?;
    if offset.checked_add(len).is_none() {
        return Err(Errno::EOVERFLOW);
    }
    if flags & (MAP_SHARED | MAP_PRIVATE) == 0 {
        return Err(Errno::EINVAL);
    }
    let backing = if flags & MAP_ANONYMOUS != 0 {
        Backing::Anon
    } else {
        let file = files::get(fd)?;
        file.mappable(prot.write && flags & MAP_SHARED != 0)?;
        Backing::Node {
            node: file.node.clone(),
            offset,
        }
    };
    let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
    super::with_vm(|vm| {
        let start = if fixed {
            let end = address.checked_add(len).ok_or(Errno::ENOMEM)?;
            if end > USER_END {
                return Err(Errno::ENOMEM);
            }
            // Linux's mmap_min_addr: the lowest 64 KiB stay unmapped, so a
            // kernel null dereference never reads what a program put there.
            if address < MMAP_MIN_ADDR {
                return Err(Errno::EPERM);
            }
            if flags & MAP_FIXED_NOREPLACE != 0
                && vm.areas().any(|(s, v)| s < end && v.end > address)
            {
                return Err(Errno::EEXIST);
            }
            address
        } else {
            vm.find_free(len).ok_or(Errno::ENOMEM)?
        };
        vm.insert(start, start + len, prot, backing, Kind::Anon);
        Ok(start)
    })
}

fn user_range(address: u64, len: u64) -> Result<(u64, u64)> {
    if !address.is_multiple_of(4096) {
        return Err(Errno::EINVAL);
    }
    let end = address
        .checked_add(len)
        .and_then(vm::page_up)
        .ok_or(Errno::EINVAL)?;
    Ok((address, end))
}

const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;

fn mremap(old: u64, old_len: u64, new_len: u64, flags: u64) -> Result<u64> {
    if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED) != 0 || !old.is_multiple_of(4096) {
        return Err(Errno::EINVAL);
    }
    if flags & MREMAP_FIXED != 0 {
        // A chosen new address: not offered.
        return Err(Errno::EINVAL);
    }
    let old_len = vm::page_up(old_len).ok_or(Errno::EINVAL)?;
    let new_len = vm::page_up(new_len).ok_or(Errno::EINVAL)?;
    if new_len == 0 || old_len == 0 {
        return Err(Errno::EINVAL);
    }
    super::with_vm(|vm| vm.remap(old, old_len, new_len, flags & MREMAP_MAYMOVE != 0))
}

const MADV_DONTNEED: u64 = 4;

fn madvise(address: u64, len: u64, advice: u64) -> Result<u64> {
    let (start, end) = user_range(address, len)?;
    if advice == MADV_DONTNEED {
        // Private pages read back as they started: drop the present ones.
        super::with_vm(|vm| vm.discard(start, end));
    }
    // Everything else is advice sanos has no use for.
    Ok(0)
}

fn munmap(address: u64, len: u64) -> Result<u64> {
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let (start, end) = user_range(address, len)?;
    super::with_vm(|vm| vm.remove(start, end));
    Ok(0)
}

fn mprotect(address: u64, len: u64, prot: u64) -> Result<u64> {
    let prot = Prot::from_linux(prot).ok_or(Errno::EINVAL)?;
    let (start, end) = user_range(address, len)?;
    if start == end {
        return Ok(0);
    }
    super::with_vm(|vm| vm.protect(start, end, prot))?;
    Ok(0)
}

/// The heap may grow to this far above its start.
const BRK_MAX: u64 = 1 << 30;

fn brk(requested: u64) -> Result<u64> {
    Ok(super::with_vm(|vm| {
        let old_end = vm::page_up(vm.brk).unwrap_or(vm.brk);
        if requested < vm.brk_start || requested > vm.brk_start + BRK_MAX {
            return vm.brk;
        }
        let Some(new_end) = vm::page_up(requested) else {
            return vm.brk;
        };
        if new_end > old_end {
            // Refuse to grow over another area.
            if vm.areas().any(|(s, v)| s < new_end && v.end > old_end) {
                return vm.brk;
            }
            vm.insert(old_end, new_end, Prot::RW, Backing::Anon, Kind::Heap);
        } else if new_end < old_end {
            vm.remove(new_end, old_end);
        }
        vm.brk = requested;
        requested
    }))
}

const TCGETS: u64 = 0x5401;
const TIOCGWINSZ: u64 = 0x5413;

fn ioctl(fd: u64, request: u64, argument: u64) -> Result<u64> {
    if !files::is_terminal(fd)? {
        return Err(Errno::ENOTTY);
    }
    match request {
        TCGETS => {
            // struct termios (kernel's): iflag ICRNL, oflag OPOST|ONLCR,
            // cflag B38400|CS8|CREAD, lflag ISIG|ICANON|ECHO..., line 0,
            // the usual control characters.
            let mut termios = [0u8; 36];
            termios[0..4].copy_from_slice(&0o400u32.to_le_bytes());
            termios[4..8].copy_from_slice(&0o5u32.to_le_bytes());
            termios[8..12].copy_from_slice(&0o277u32.to_le_bytes());
            termios[12..16].copy_from_slice(&0o105073u32.to_le_bytes());
            let cc = [3u8, 28, 127, 21, 4, 0, 1, 0, 17, 19, 26, 0, 18, 15, 23, 22];
            termios[17..17 + cc.len()].copy_from_slice(&cc);
            copy_to_user(argument, &termios)?;
            Ok(0)
        }
        TIOCGWINSZ => {
            let winsize: [u16; 4] = [24, 80, 0, 0];
            uaccess::write(argument, &winsize)?;
            Ok(0)
        }
        _ => Err(Errno::ENOTTY),
    }
}

/// `struct timespec`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

impl Timespec {
    fn from_ns(ns: u64) -> Timespec {
        Timespec {
            sec: (ns / 1_000_000_000) as i64,
            nsec: (ns % 1_000_000_000) as i64,
        }
    }

    fn to_ns(self) -> Result<u64> {
        if self.sec < 0 || !(0..1_000_000_000).contains(&self.nsec) {
            return Err(Errno::EINVAL);
        }
        Ok((self.sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(self.nsec as u64))
    }
}

const CLOCK_REALTIME: u64 = 0;
const CLOCK_MONOTONIC: u64 = 1;
const CLOCK_PROCESS_CPUTIME_ID: u64 = 2;
const CLOCK_THREAD_CPUTIME_ID: u64 = 3;
const CLOCK_MONOTONIC_RAW: u64 = 4;
const CLOCK_REALTIME_COARSE: u64 = 5;
const CLOCK_MONOTONIC_COARSE: u64 = 6;
const CLOCK_BOOTTIME: u64 = 7;

fn clock_ns(clock: u64) -> Result<u64> {
    match clock {
        CLOCK_REALTIME | CLOCK_REALTIME_COARSE => Ok(crate::time::wall_clock_ns().unwrap_or(0)),
        CLOCK_MONOTONIC | CLOCK_MONOTONIC_RAW | CLOCK_MONOTONIC_COARSE | CLOCK_BOOTTIME => {
            Ok(crate::time::since_boot_ns())
        }
        CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID => Ok(crate::sched::current().cpu_ns()),
        _ => Err(Errno::EINVAL),
    }
}

fn clock_gettime(clock: u64, out: u64) -> Result<u64> {
    let ns = clock_ns(clock)?;
    uaccess::write(out, &Timespec::from_ns(ns))?;
    Ok(0)
}

fn clock_getres(clock: u64, out: u64) -> Result<u64> {
    clock_ns(clock)?;
    if out != 0 {
        uaccess::write(out, &Timespec { sec: 0, nsec: 1 })?;
    }
    Ok(0)
}

fn gettimeofday(out: u64) -> Result<u64> {
    if out != 0 {
        let ns = crate::time::wall_clock_ns().unwrap_or(0);
        let timeval = [
            (ns / 1_000_000_000) as i64,
            (ns % 1_000_000_000 / 1000) as i64,
        ];
        uaccess::write(out, &timeval)?;
    }
    Ok(0)
}

fn time(out: u64) -> Result<u64> {
    let seconds = crate::time::wall_clock_ns().unwrap_or(0) / 1_000_000_000;
    if out != 0 {
        uaccess::write(out, &seconds)?;
    }
    Ok(seconds)
}

/// Reads a `struct timespec` as nanoseconds (`EINVAL` if malformed).
pub(super) fn read_timespec(address: u64) -> Result<u64> {
    uaccess::read::<Timespec>(address)?.to_ns()
}

fn sleep(ns: u64, remaining: u64) -> Result<u64> {
    super::sleep_ns(ns);
    if remaining != 0 {
        uaccess::write(remaining, &Timespec::default())?;
    }
    Ok(0)
}

fn nanosleep(request: u64, remaining: u64) -> Result<u64> {
    let request: Timespec = uaccess::read(request)?;
    sleep(request.to_ns()?, remaining)
}

const TIMER_ABSTIME: u64 = 1;

fn clock_nanosleep(clock: u64, flags: u64, request: u64, remaining: u64) -> Result<u64> {
    let request: Timespec = uaccess::read(request)?;
    let ns = request.to_ns()?;
    let now = clock_ns(clock)?;
    if matches!(clock, CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID) {
        return Err(Errno::EINVAL);
    }
    if flags & TIMER_ABSTIME != 0 {
        return sleep(ns.saturating_sub(now), 0);
    }
    sleep(ns, remaining)
}

fn uname(out: u64) -> Result<u64> {
    // struct utsname: six fields of 65 bytes.
    let mut utsname = [0u8; 6 * 65];
    let fields: [&[u8]; 6] = [
        b"Linux",
        b"sanos",
        // Programs compare the release against what they need; name a
        // kernel whose system calls sanos follows.
        b"6.1.0-sanos",
        concat!("sanos ", env!("CARGO_PKG_VERSION")).as_bytes(),
        b"x86_64",
        b"(none)",
    ];
    for (i, field) in fields.iter().enumerate() {
        utsname[i * 65..i * 65 + field.len()].copy_from_slice(field);
    }
    copy_to_user(out, &utsname)?;
    Ok(0)
}

const RLIMIT_STACK: u64 = 3;
const RLIMIT_NOFILE: u64 = 7;
const RLIM_INFINITY: u64 = u64::MAX;

fn prlimit(number: u64, a: [u64; 6]) -> Result<u64> {
    // getrlimit(resource, old) or prlimit64(pid, resource, new, old).
    let (pid, resource, new, old) = if number == 97 {
        (0, a[0], 0, a[1])
    } else {
        (a[0], a[1], a[2], a[3])
    };
    if pid != 0 && pid != super::PID {
        return Err(Errno::ESRCH);
    }
    if resource > 15 {
        return Err(Errno::EINVAL);
    }
    if new != 0 {
        return Err(Errno::EPERM);
    }
    let limit = match resource {
        RLIMIT_STACK => [8 << 20, RLIM_INFINITY],
        RLIMIT_NOFILE => [1024, 4096],
        _ => [RLIM_INFINITY, RLIM_INFINITY],
    };
    if old != 0 {
        uaccess::write(old, &limit)?;
    }
    Ok(0)
}

const CLONE: u64 = 56;
const CLONE_VM: u64 = 0x100;
const CLONE_FS: u64 = 0x200;
const CLONE_FILES: u64 = 0x400;
const CLONE_SIGHAND: u64 = 0x800;
const CLONE_THREAD: u64 = 0x1_0000;
const CLONE_SYSVSEM: u64 = 0x4_0000;
const CLONE_SETTLS: u64 = 0x8_0000;
const CLONE_PARENT_SETTID: u64 = 0x10_0000;
const CLONE_CHILD_CLEARTID: u64 = 0x20_0000;
const CLONE_DETACHED: u64 = 0x40_0000;
const CLONE_CHILD_SETTID: u64 = 0x100_0000;
/// What a new thread of the same program may ask for.
const CLONE_THREAD_FLAGS: u64 = CLONE_VM
    | CLONE_FS
    | CLONE_FILES
    | CLONE_SIGHAND
    | CLONE_THREAD
    | CLONE_SYSVSEM
    | CLONE_SETTLS
    | CLONE_PARENT_SETTID
    | CLONE_CHILD_CLEARTID
    | CLONE_DETACHED
    | CLONE_CHILD_SETTID;

/// `clone(flags, stack, parent_tid, child_tid, tls)` for threads; a new
/// process (no `CLONE_VM | CLONE_THREAD`) is not possible: one program,
/// one address space.
fn clone(frame: &TrapFrame, a: [u64; 6]) -> Result<u64> {
    let (flags, stack, parent_tid, child_tid, tls) = (a[0], a[1], a[2], a[3], a[4]);
    let required = CLONE_VM | CLONE_THREAD | CLONE_SIGHAND;
    if flags & required != required {
        log::warn!(
            "user: clone of a new process (flags {flags:#x}): sanos runs one program; ENOSYS"
        );
        return Err(Errno::ENOSYS);
    }
    if flags & !CLONE_THREAD_FLAGS != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & CLONE_SETTLS != 0 && tls >= USER_END {
        return Err(Errno::EPERM);
    }
    let running = super::running().ok_or(Errno::ESRCH)?;
    let parent = crate::sched::user_context().unwrap_or_default();
    let context = crate::sched::UserContext {
        fs_base: if flags & CLONE_SETTLS != 0 {
            tls
        } else {
            parent.fs_base
        },
        clear_child_tid: if flags & CLONE_CHILD_CLEARTID != 0 {
            child_tid
        } else {
            0
        },
    };
    let mut child = *frame;
    child.rax = 0;
    if stack != 0 {
        child.rsp = stack;
    }
    let go = crate::sched::sync::Event::new(true, false);
    let thread = super::spawn_thread(&running, child, context, Some(go.clone()))
        .map_err(|_| Errno::EAGAIN)?;
    let tid = thread.id();
    // Published before the thread runs, as Linux does.
    let mut published = Ok(());
    if flags & CLONE_PARENT_SETTID != 0 {
        published = published.and(uaccess::write(parent_tid, &(tid as u32)));
    }
    if flags & CLONE_CHILD_SETTID != 0 {
        published = published.and(uaccess::write(child_tid, &(tid as u32)));
    }
    go.set();
    published.map(|()| tid)
}

fn set_tid_address(address: u64) -> Result<u64> {
    let mut context = crate::sched::user_context().unwrap_or_default();
    context.clear_child_tid = address;
    crate::sched::set_user_context(context);
    Ok(crate::sched::current().id())
}

fn sched_getaffinity(pid: u64, size: u64, mask: u64) -> Result<u64> {
    if pid != 0 && pid != super::PID && crate::sched::current().id() != pid {
        return Err(Errno::ESRCH);
    }
    if size < 8 || !size.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    // One CPU, CPU 0; Linux returns the size of its cpumask it wrote.
    uaccess::write(mask, &1u64)?;
    Ok(8)
}

fn sysinfo(out: u64) -> Result<u64> {
    let (free, total) = crate::mm::frames::counts();
    let threads = crate::sched::threads().len() as u16;
    // struct sysinfo: uptime, loads[3], totalram, freeram, sharedram,
    // bufferram, totalswap, freeswap (longs), procs (u16), pad, totalhigh,
    // freehigh, mem_unit (u32), padding: 112 bytes.
    let mut raw = [0u8; 112];
    let uptime = crate::time::since_boot_ns() / 1_000_000_000;
    raw[0..8].copy_from_slice(&uptime.to_le_bytes());
    raw[32..40].copy_from_slice(&(total as u64 * 4096).to_le_bytes());
    raw[40..48].copy_from_slice(&(free as u64 * 4096).to_le_bytes());
    raw[80..82].copy_from_slice(&threads.to_le_bytes());
    raw[104..108].copy_from_slice(&1u32.to_le_bytes());
    copy_to_user(out, &raw)?;
    Ok(0)
}

const RUSAGE_SELF: i64 = 0;
const RUSAGE_CHILDREN: i64 = -1;
const RUSAGE_THREAD: i64 = 1;

fn getrusage(who: u64, out: u64) -> Result<u64> {
    let ns = match who as i64 {
        RUSAGE_SELF => super::cpu_ns(),
        RUSAGE_THREAD => crate::sched::current().cpu_ns(),
        RUSAGE_CHILDREN => 0,
        _ => return Err(Errno::EINVAL),
    };
    // struct rusage: ru_utime, ru_stime (timevals), then 14 longs.
    let mut raw = [0u8; 144];
    raw[0..8].copy_from_slice(&((ns / 1_000_000_000) as i64).to_le_bytes());
    raw[8..16].copy_from_slice(&((ns % 1_000_000_000 / 1000) as i64).to_le_bytes());
    copy_to_user(out, &raw)?;
    Ok(0)
}

const PR_SET_NAME: u64 = 15;
const PR_GET_NAME: u64 = 16;

fn prctl(option: u64, argument: u64) -> Result<u64> {
    match option {
        PR_SET_NAME => {
            let mut name = [0u8; 16];
            // Up to 15 bytes and a NUL; a shorter string ends earlier.
            for (i, slot) in name.iter_mut().take(15).enumerate() {
                let byte: u8 = uaccess::read(argument + i as u64)?;
                if byte == 0 {
                    break;
                }
                *slot = byte;
            }
            super::set_thread_name(name);
            Ok(0)
        }
        PR_GET_NAME => {
            copy_to_user(argument, &super::thread_name())?;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;

fn arch_prctl(code: u64, address: u64) -> Result<u64> {
    match code {
        ARCH_SET_FS => {
            if address >= USER_END {
                return Err(Errno::EPERM);
            }
            let mut context = crate::sched::user_context().unwrap_or_default();
            context.fs_base = address;
            crate::sched::set_user_context(context);
            Ok(0)
        }
        ARCH_GET_FS => {
            let fs = crate::sched::user_context().unwrap_or_default().fs_base;
            uaccess::write(address, &fs)?;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

const GRND_NONBLOCK: u64 = 1;
const GRND_RANDOM: u64 = 2;
const GRND_INSECURE: u64 = 4;

fn getrandom(buffer: u64, count: u64, flags: u64) -> Result<u64> {
    if flags & !(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) != 0 {
        return Err(Errno::EINVAL);
    }
    let count = count.min(1 << 25);
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < count {
        let n = (count - done).min(chunk.len() as u64) as usize;
        crate::arch::cpu::random_bytes(&mut chunk[..n]);
        copy_to_user(buffer + done, &chunk[..n])?;
        done += n as u64;
    }
    Ok(done)
}
