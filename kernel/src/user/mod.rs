//! User programs: one static Linux x86-64 executable (and its threads) at
//! a time, run in ring 3 with the Linux system-call ABI.
//!
//! [`run`] loads the program from the boot module (a cpio archive) with the
//! `loader` crate, lays out its areas ([`vm`]) and its initial stack as
//! Linux does, and starts its first thread in user mode ([`entry`]). System
//! calls arrive in [`syscall`]; user memory is reached through
//! [`uaccess`]. A fault in user mode ends the program with a report (signal
//! name, address, RIP, the area it hit); the kernel goes on.

pub mod entry;
pub mod files;
pub mod futex;
pub mod net;
pub mod pipe;
pub mod poll;
pub mod signal;
pub mod syscall;
pub mod uaccess;
pub mod vm;

use crate::arch::traps::TrapFrame;
use crate::sched::sync::Event;
use crate::sched::{self, UserContext};
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use loader::elf::{self, LoadError, Program};
use vm::{AddressSpace, Backing, Kind, Prot};

static VM: spin::Mutex<AddressSpace> = spin::Mutex::new(AddressSpace::new());

/// Runs `f` on the program's address space (interrupts masked: the page
/// fault handler takes the same lock).
pub fn with_vm<R>(f: impl FnOnce(&mut AddressSpace) -> R) -> R {
    crate::arch::cpu::without_interrupts(|| f(&mut VM.lock()))
}

/// The top of the main thread's stack, and its size (demand paged).
const STACK_TOP: u64 = 0x7fff_ffff_e000;
const STACK_SIZE: u64 = 8 << 20;
/// Room the initial stack (arguments, environment, auxv) may take.
const MAX_ARGS_BYTES: usize = 128 << 10;
/// The program's process ID (one program: always the same).
pub const PID: u64 = 1;
/// The ceiling of a listening socket's backlog (`/proc/sys/net/core/somaxconn`).
pub const SOMAXCONN: u32 = 4096;

/// The running program.
pub struct Running {
    pub path: String,
    /// Signalled when the last thread ends.
    done: Event,
    status: AtomicI32,
    threads: AtomicUsize,
    /// The `AT_*` vector given to the program (`/proc/self/auxv`).
    pub auxv: alloc::vec::Vec<u8>,
    /// Every thread it started (for its CPU time), and the names threads
    /// gave themselves (`prctl(PR_SET_NAME)`).
    members: spin::Mutex<alloc::vec::Vec<sched::Thread>>,
    names: spin::Mutex<alloc::collections::BTreeMap<u64, [u8; 16]>>,
    /// Set when the program starts to end: sleeps end early on it.
    ending: Event,
}

static RUNNING: spin::Mutex<Option<Arc<Running>>> = spin::Mutex::new(None);
/// Set by `exit_group` or a fatal fault of the running program: every
/// thread ends at its next kernel entry or exit. A static (one program
/// runs at a time), so the check on every return to user mode is a load.
static EXITING: AtomicBool = AtomicBool::new(false);

/// The running program, if any.
pub fn running() -> Option<Arc<Running>> {
    crate::arch::cpu::without_interrupts(|| RUNNING.lock().clone())
}

/// Why a program could not start.
#[derive(Debug)]
pub enum RunError {
    NotFound,
    NotAFile,
    Load(LoadError),
    /// Under Xen PV the kernel itself runs in ring 3: not yet.
    Unsupported(&'static str),
    Stack(loader::stack::StackError),
    Thread,
}

impl core::fmt::Display for RunError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RunError::NotFound => write!(f, "no such file in the boot module"),
            RunError::NotAFile => write!(f, "not a regular file"),
            RunError::Load(error) => write!(f, "{error}"),
            RunError::Unsupported(why) => f.write_str(why),
            RunError::Stack(error) => write!(f, "initial stack: {error:?}"),
            RunError::Thread => write!(f, "cannot create its thread"),
        }
    }
}

/// How a program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    /// Killed by a signal (a fault in user mode).
    Signaled(u8),
}

impl Ended {
    /// The status a shell would report: the exit code, or 128 + signal.
    pub fn status(self) -> i32 {
        match self {
            Ended::Exited(code) => code,
            Ended::Signaled(signal) => 128 + i32::from(signal),
        }
    }
}

const SIGNALED: i32 = 0x1_0000;

/// Loads `path` from `archive` and runs it with `argv` and `envp` until its
/// last thread ends. The program sees `archive` at `/`, with a tmpfs at
/// `/tmp` and at each of `tmpfs` (`crate::fs::namespace`).
pub fn run(
    archive: &'static pure::fs::cpio::Archive<'static>,
    tmpfs: &[&str],
    path: &str,
    argv: &[&[u8]],
    envp: &[&[u8]],
) -> Result<Ended, RunError> {
    let namespace = crate::fs::namespace(archive, tmpfs);
    let (_, node) = namespace
        .resolve("/", path, true)
        .map_err(|_| RunError::NotFound)?;
    if node.metadata().kind != pure::fs::vfs::FileType::Regular {
        return Err(RunError::NotAFile);
    }
    // The executable's bytes, in place in the boot module (pages are
    // filled from them on demand).
    let entry = archive.lookup(path).filter(|e| e.is_file());
    let Some(entry) = entry else {
        return Err(RunError::Unsupported(
            "the executable must be a file of the boot module",
        ));
    };
    let file: &'static [u8] = entry.data;
    let program = elf::parse(file).map_err(RunError::Load)?;
    let protection = (crate::backend::hooks().user.init)().map_err(RunError::Unsupported)?;
    entry::set_ready();
    let base = elf::load_base(&program, elf::PIE_BASE);
    with_vm(|vm| load(vm, &program, base, file));

    let mut random = [0u8; 16];
    crate::arch::cpu::random_bytes(&mut random);
    let auxv = auxv(&program, base);
    let spec = loader::stack::StackSpec {
        argv,
        envp,
        execfn: path.as_bytes(),
        platform: b"x86_64",
        random,
        auxv,
    };
    let stack = loader::stack::build(STACK_TOP, &spec, MAX_ARGS_BYTES).map_err(RunError::Stack)?;
    uaccess::copy_to_user(stack.rsp, &stack.bytes).map_err(|_| RunError::Thread)?;

    let running = Arc::new(Running {
        path: String::from(path),
        done: Event::new(true, false),
        status: AtomicI32::new(0),
        threads: AtomicUsize::new(0),
        auxv: loader::stack::auxv_bytes(&stack),
        members: spin::Mutex::new(alloc::vec::Vec::new()),
        names: spin::Mutex::new(alloc::collections::BTreeMap::new()),
        ending: Event::new(true, false),
    });
    EXITING.store(false, Ordering::Release);
    crate::arch::cpu::without_interrupts(|| *RUNNING.lock() = Some(running.clone()));
    files::start(namespace);
    signal::reset();
    log::info!(
        "user: {path}: {}entry {:#x}, {} segments, {protection}",
        match program.kind {
            elf::Kind::Exec => alloc::string::String::from("static executable, "),
            elf::Kind::StaticPie => alloc::format!("static PIE at base {base:#x}, "),
        },
        base + program.entry,
        program.segments.len(),
    );
    let frame = TrapFrame {
        rip: base + program.entry,
        rsp: stack.rsp,
        ..initial_frame()
    };
    if let Err(error) = spawn_thread(&running, frame, UserContext::default(), None) {
        finish(&running);
        return Err(error);
    }
    running.done.wait(None);
    let status = running.status.load(Ordering::Acquire);
    finish(&running);
    Ok(if status & SIGNALED != 0 {
        Ended::Signaled(status as u8)
    } else {
        Ended::Exited(status)
    })
}

/// Frees what the program left: its files, its pages, its record.
fn finish(_running: &Arc<Running>) {
    files::finish();
    with_vm(|vm| vm.clear());
    crate::arch::cpu::without_interrupts(|| *RUNNING.lock() = None);
    EXITING.store(false, Ordering::Release);
}

/// A user frame with every register zero (RDX = 0 is the ABI's "no
/// function for atexit") and interrupts enabled.
pub fn initial_frame() -> TrapFrame {
    TrapFrame {
        r15: 0,
        r14: 0,
        r13: 0,
        r12: 0,
        r11: 0,
        r10: 0,
        r9: 0,
        r8: 0,
        rbp: 0,
        rdi: 0,
        rsi: 0,
        rdx: 0,
        rcx: 0,
        rbx: 0,
        rax: 0,
        vector: 0,
        error_code: 0,
        rip: 0,
        cs: u64::from(crate::backend::hooks().user.code_segment),
        rflags: 0x202,
        rsp: 0,
        ss: u64::from(crate::backend::hooks().user.data_segment),
    }
}

/// Starts a thread of the program in user mode at `frame`, once `go` is
/// set (so that the creator can publish the thread's ID first).
pub fn spawn_thread(
    running: &Arc<Running>,
    frame: TrapFrame,
    context: UserContext,
    go: Option<Event>,
) -> Result<sched::Thread, RunError> {
    running.threads.fetch_add(1, Ordering::AcqRel);
    let name = alloc::format!("user:{}", running.path.rsplit('/').next().unwrap_or("?"));
    let thread = sched::spawn_with(
        sched::SpawnOptions {
            name: &name,
            priority: sched::PRIORITY_NORMAL,
            fpu: true,
        },
        move || {
            if let Some(go) = go {
                go.wait(None);
            }
            sched::set_user_context(context);
            entry::enter(&frame)
        },
    );
    match thread {
        Ok(thread) => {
            running.members.lock().push(thread.clone());
            Ok(thread)
        }
        Err(_) => {
            running.threads.fetch_sub(1, Ordering::AcqRel);
            Err(RunError::Thread)
        }
    }
}

/// CPU time of all the program's threads, ended ones included.
pub fn cpu_ns() -> u64 {
    running().map_or(0, |r| r.members.lock().iter().map(|t| t.cpu_ns()).sum())
}

/// The calling thread's name (`prctl(PR_GET_NAME)`): what it set, else
/// the program's file name, at most 15 bytes and a NUL.
pub fn thread_name() -> [u8; 16] {
    let id = sched::current().id();
    let Some(running) = running() else {
        return [0; 16];
    };
    if let Some(name) = running.names.lock().get(&id) {
        return *name;
    }
    let mut name = [0u8; 16];
    let base = running.path.rsplit('/').next().unwrap_or("").as_bytes();
    let n = base.len().min(15);
    name[..n].copy_from_slice(&base[..n]);
    name
}

/// Sets the calling thread's name (`prctl(PR_SET_NAME)`).
pub fn set_thread_name(name: [u8; 16]) {
    if let Some(running) = running() {
        running.names.lock().insert(sched::current().id(), name);
    }
}

/// Lays out the program's areas: one per PT_LOAD segment, the heap's
/// start, the stack.
fn load(vm: &mut AddressSpace, program: &Program, base: u64, file: &'static [u8]) {
    vm.clear();
    for segment in &program.segments {
        let start = base + segment.vaddr;
        let page = start & !0xfff;
        let end = vm::page_up(start + segment.memsz).unwrap_or(crate::mm::paging::USER_END);
        let prot = Prot {
            read: segment.prot.read,
            write: segment.prot.write,
            exec: segment.prot.execute,
        };
        let backing = Backing::File {
            data: file,
            offset: segment.file_offset - (start - page),
            end: start + segment.filesz,
        };
        vm.insert(page, end, prot, backing, Kind::Image);
    }
    let brk = elf::brk_start(program, base);
    vm.brk_start = brk;
    vm.brk = brk;
    // PT_GNU_STACK: executable only when the program asks (without the
    // header too: Linux x86-64 makes the stack executable only on CPUs
    // without NX, which sanos does not serve).
    let stack = Prot {
        exec: program.stack_executable(),
        ..Prot::RW
    };
    vm.insert(
        STACK_TOP - STACK_SIZE,
        STACK_TOP,
        stack,
        Backing::Anon,
        Kind::Stack,
    );
}

fn auxv(program: &Program, base: u64) -> loader::stack::Auxv {
    // AT_HWCAP on x86-64 is CPUID.1:EDX.
    let hwcap = u64::from(crate::arch::cpu::cpuid(1).edx);
    loader::stack::Auxv {
        phdr: program.phdr.map_or(0, |phdr| base + phdr),
        phent: u64::from(program.phentsize),
        phnum: u64::from(program.phnum),
        pagesz: 4096,
        base: 0,
        flags: 0,
        entry: base + program.entry,
        uid: 0,
        euid: 0,
        gid: 0,
        egid: 0,
        secure: false,
        hwcap,
        hwcap2: 0,
        clktck: 100,
        minsigstksz: 2048,
        sysinfo_ehdr: None,
    }
}

/// Whether the program is ending (the caller's thread must end too).
pub fn exiting() -> bool {
    EXITING.load(Ordering::Acquire)
}

/// Ends the calling user thread; the last one ends the program. The
/// thread's `clear_child_tid` word is zeroed and woken first, as Linux does
/// (`pthread_join` waits on it).
pub fn exit_thread(code: i32) -> ! {
    if let Some(context) = sched::user_context() {
        let word = context.clear_child_tid;
        if word != 0 && uaccess::write(word, &0u32).is_ok() {
            futex::wake(word, 1, u32::MAX);
        }
    }
    if let Some(running) = running() {
        if running.threads.fetch_sub(1, Ordering::AcqRel) == 1 {
            if !EXITING.swap(true, Ordering::AcqRel) {
                running.status.store(code, Ordering::Release);
            }
            running.done.set();
        }
    }
    sched::exit(0)
}

/// Ends the program with `status` (`exit_group`, or a fatal signal):
/// every thread ends.
pub fn exit_program(status: i32) -> ! {
    if let Some(running) = running() {
        if !EXITING.swap(true, Ordering::AcqRel) {
            running.status.store(status, Ordering::Release);
        }
        running.ending.set();
    }
    // Threads blocked in the kernel come out and end.
    futex::wake_all();
    exit_thread(status)
}

/// Sleeps `ns` nanoseconds, or less if the program is ending.
pub fn sleep_ns(ns: u64) {
    match running() {
        Some(running) => {
            running.ending.wait(Some(ns));
        }
        None => sched::sleep_ns(ns),
    }
}

/// Linux's signal numbers for the faults a program can take.
const SIGILL: u8 = 4;
const SIGTRAP: u8 = 5;
const SIGBUS: u8 = 7;
const SIGFPE: u8 = 8;
const SIGSEGV: u8 = 11;

fn signal_name(signal: u8) -> &'static str {
    match signal {
        SIGILL => "SIGILL",
        SIGTRAP => "SIGTRAP",
        SIGBUS => "SIGBUS",
        SIGFPE => "SIGFPE",
        SIGSEGV => "SIGSEGV",
        _ => "signal",
    }
}

/// A page fault: resolved by demand paging when the program's areas allow
/// the access (from user mode, or from the kernel copying user memory);
/// from user mode otherwise the program ends. Returns whether the trap is
/// dealt with (`false`: a kernel fault, for the exception table or the
/// panic report).
pub fn page_fault(frame: &mut TrapFrame) -> bool {
    let address = x86_64::registers::control::Cr2::read_raw();
    let from_user = frame.cs & 3 == 3;
    if address >= crate::mm::paging::USER_END {
        if from_user {
            fatal(frame, SIGSEGV, address);
        }
        return false;
    }
    // Error code bits: 0 present, 1 write, 2 user, 4 instruction fetch.
    // A fault on a present page is a protection fault: nothing to page in
    // (from the kernel: an access SMAP forbids, a kernel bug).
    if frame.error_code & 1 != 0 {
        if from_user {
            fatal(frame, SIGSEGV, address);
        }
        return false;
    }
    // From the kernel, only the copies of `uaccess` (which have an
    // exception-table entry) may touch user memory: anything else is a
    // kernel bug, not a page to bring in.
    if !from_user && !crate::arch::traps::has_fixup(frame.rip) {
        return false;
    }
    let access = vm::Access {
        write: frame.error_code & 2 != 0,
        exec: frame.error_code & 16 != 0,
    };
    let resolved = match with_vm(|vm| vm.plan_fault(address, access)) {
        Ok(None) => Ok(()),
        Ok(Some(plan)) => {
            // Filling may read a file and wait for its lock: with
            // interrupts on when the faulting code had them on (as Linux
            // does), so a preempted holder can run.
            let interruptible = frame.rflags & (1 << 9) != 0;
            if interruptible {
                crate::arch::cpu::irq_enable();
            }
            let filled = vm::fill_fault(&plan);
            if interruptible {
                crate::arch::cpu::irq_disable();
            }
            filled.and_then(|page| with_vm(|vm| vm.complete_fault(&plan, page)))
        }
        Err(error) => Err(error),
    };
    match resolved {
        Ok(()) => true,
        Err(_) if from_user => fatal(frame, SIGSEGV, address),
        Err(_) => false,
    }
}

/// Any other exception from user mode: the program ends with the signal
/// Linux would send.
pub fn exception(frame: &mut TrapFrame) -> bool {
    if frame.cs & 3 != 3 {
        return false;
    }
    let signal = match frame.vector {
        0 | 16 | 19 => SIGFPE,
        1 | 3 => SIGTRAP,
        6 => SIGILL,
        17 => SIGBUS,
        _ => SIGSEGV,
    };
    fatal(frame, signal, 0)
}

/// Reports a fatal fault of the program and ends it.
fn fatal(frame: &TrapFrame, signal: u8, address: u64) -> ! {
    crate::arch::cpu::irq_enable();
    let path = running().map(|r| r.path.clone()).unwrap_or_default();
    let area = with_vm(|vm| {
        vm.find(address).map(|(start, vma)| {
            alloc::format!(
                "in {} {start:#x}-{:#x} {:?}",
                vma.kind.name(),
                vma.end,
                vma.prot
            )
        })
    });
    log::error!(
        "user: {path}: {} ({}) at address {address:#x}, rip {:#x}, rsp {:#x}, error code {:#x}; {}",
        signal_name(signal),
        crate::arch::traps::exception_name(frame.vector as u8),
        frame.rip,
        frame.rsp,
        frame.error_code,
        area.as_deref().unwrap_or("no area there")
    );
    exit_program(SIGNALED | i32::from(signal))
}

/// On every return to user mode: a thread of a program that is ending
/// ends here instead.
pub fn on_return(frame: &TrapFrame) {
    if frame.cs & 3 == 3 && exiting() {
        crate::arch::cpu::irq_enable();
        exit_thread(0);
    }
}
