//! Ring 3: entering user mode, the `syscall` entry, and the CPU features
//! that keep user code away from the kernel (SMEP, SMAP).
//!
//! Intel SDM Vol. 3A 5.8.8 (SYSCALL and SYSRET), 4.6 (SMEP, SMAP). A
//! `syscall` arrives on the user's stack with interrupts masked (`FMASK`
//! clears IF, DF, TF, AC): the entry switches to the thread's kernel stack
//! (one CPU: a static holds it, set on every switch to a user thread),
//! pushes what an interrupt from ring 3 would, and joins the trap path
//! (`arch::traps`) with the vector [`SYSCALL_VECTOR`], which routes it to
//! `syscall::dispatch`: system calls, faults and interrupts from user
//! mode share one frame and one way back (`iretq`), which restores
//! RFLAGS, the stack and the segments exactly.

use crate::arch::cpu::{read_msr, write_msr};
use crate::arch::gdt::{KERNEL_CODE, USER_CODE, USER_DATA};
use crate::arch::traps::TrapFrame;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const IA32_EFER: u32 = 0xc000_0080;
const EFER_SCE: u64 = 1 << 0;
const IA32_STAR: u32 = 0xc000_0081;
const IA32_LSTAR: u32 = 0xc000_0082;
const IA32_FMASK: u32 = 0xc000_0084;
const IA32_FS_BASE: u32 = 0xc000_0100;
/// RFLAGS bits `syscall` clears: TF, IF, DF, AC, NT.
const FMASK: u64 = (1 << 8) | (1 << 9) | (1 << 10) | (1 << 18) | (1 << 14);
/// The frame's `vector` for a system call (no CPU vector is this large).
pub const SYSCALL_VECTOR: u64 = 0x100;

/// The kernel stack a `syscall` switches to (the running user thread's).
#[unsafe(no_mangle)]
static SANOS_USER_KERNEL_STACK: AtomicU64 = AtomicU64::new(0);
/// Where the entry keeps the user's RSP while it switches stacks.
#[unsafe(no_mangle)]
static SANOS_USER_SCRATCH_RSP: AtomicU64 = AtomicU64::new(0);
static SMAP: AtomicBool = AtomicBool::new(false);
static READY: AtomicBool = AtomicBool::new(false);

core::arch::global_asm!(
    ".pushsection .text.user_entry, \"ax\"",
    ".global sanos_syscall_entry",
    "sanos_syscall_entry:",
    "mov [rip + SANOS_USER_SCRATCH_RSP], rsp",
    "mov rsp, [rip + SANOS_USER_KERNEL_STACK]",
    // The CPU's part of a trap frame, as an interrupt from ring 3 leaves
    // it, then the trap path's own: it saves the registers, dispatches on
    // the vector, and returns through the frame.
    "push {user_data}",
    "push qword ptr [rip + SANOS_USER_SCRATCH_RSP]",
    "push r11",
    "push {user_code}",
    "push rcx",
    "push 0",
    "push {vector}",
    "jmp trap_common",
    // user_enter(frame): continue at a frame built elsewhere.
    ".global sanos_user_enter",
    "sanos_user_enter:",
    "mov rsp, rdi",
    "jmp trap_restore",
    ".popsection",
    user_data = const USER_DATA,
    user_code = const USER_CODE,
    vector = const SYSCALL_VECTOR,
);

unsafe extern "C" {
    fn sanos_syscall_entry();
    fn sanos_user_enter(frame: *const TrapFrame) -> !;
}

/// What [`init`] found and turned on.
#[derive(Clone, Copy, Debug)]
pub struct Protection {
    pub smep: bool,
    pub smap: bool,
}

/// The native `UserPlatform::init`: SYSCALL and SMEP/SMAP.
pub fn init_native() -> Result<&'static str, &'static str> {
    let protection = init();
    Ok(match (protection.smep, protection.smap) {
        (true, true) => "SMEP on, SMAP on",
        (true, false) => "SMEP on, SMAP off (the CPU has none)",
        (false, true) => "SMEP off (the CPU has none), SMAP on",
        (false, false) => "SMEP and SMAP off (the CPU has neither)",
    })
}

/// The native FS base: its MSR.
pub fn set_fs_base_native(base: u64) {
    // SAFETY: FS_BASE exists on every x86-64 CPU; the kernel does not use
    // FS, so any canonical value (checked by arch_prctl) is safe.
    unsafe { write_msr(IA32_FS_BASE, base) };
}

/// Turns on `syscall` (EFER.SCE, STAR, LSTAR, FMASK) and SMEP/SMAP where
/// the CPU has them (ring-0 kernels: natively, KVM, VMI, Xen PVH).
pub fn init() -> Protection {
    use x86_64::registers::control::{Cr4, Cr4Flags};
    let leaf7 = crate::arch::cpu::features().get_extended_feature_info();
    let smep = leaf7.as_ref().is_some_and(|f| f.has_smep());
    let smap = leaf7.as_ref().is_some_and(|f| f.has_smap());
    // STAR: SYSCALL loads CS from bits 47:32 (SS = CS + 8); SYSRET loads
    // CS from bits 63:48 + 16 and SS from bits 63:48 + 8, hence the GDT's
    // order (kernel code, kernel data, user data, user code).
    let star = (u64::from(USER_DATA & !3) - 8) << 48 | u64::from(KERNEL_CODE) << 32;
    // SAFETY: these MSRs exist on every x86-64 CPU; LSTAR points at the
    // entry above, which expects exactly this STAR and FMASK; SCE only
    // makes SYSCALL legal. SMEP/SMAP (when the CPU has them) only forbid
    // the kernel to run or touch user pages, which it does only through
    // `uaccess`, which lifts SMAP for the copy.
    unsafe {
        write_msr(IA32_STAR, star);
        write_msr(IA32_LSTAR, sanos_syscall_entry as *const () as u64);
        write_msr(IA32_FMASK, FMASK);
        write_msr(IA32_EFER, read_msr(IA32_EFER) | EFER_SCE);
        Cr4::update(|flags| {
            if smep {
                flags.insert(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION);
            }
            if smap {
                flags.insert(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION);
            }
        });
    }
    SMAP.store(smap, Ordering::Relaxed);
    Protection { smep, smap }
}

/// Marks entries from user mode as set up (`switch_in` then installs FS).
pub fn set_ready() {
    READY.store(true, Ordering::Release);
}

/// Clears RFLAGS.AC where SMAP is on (entering a trap).
#[inline]
pub fn close_user_access() {
    if SMAP.load(Ordering::Relaxed) {
        // SAFETY: CLAC exists where SMAP does; it only clears AC.
        unsafe { core::arch::asm!("clac", options(nomem, nostack)) };
    }
}

/// Whether SMAP is on (user accesses need STAC/CLAC).
pub fn smap() -> bool {
    SMAP.load(Ordering::Relaxed)
}

/// Installs a user thread's state as the scheduler switches to it: the
/// kernel stack entries from ring 3 use, and its FS base.
pub fn switch_in(kernel_stack_top: u64, fs_base: u64) {
    SANOS_USER_KERNEL_STACK.store(kernel_stack_top, Ordering::Relaxed);
    crate::vmops::ops::load_kernel_stack(kernel_stack_top);
    if READY.load(Ordering::Relaxed) {
        (crate::backend::hooks().user.set_fs_base)(fs_base);
    }
}

/// Enters user mode at `frame` (RIP, RSP, RFLAGS and every register as it
/// holds them). What the calling thread had on its kernel stack is
/// abandoned: the next entry from ring 3 starts at the stack's top.
pub fn enter(frame: &TrapFrame) -> ! {
    // SAFETY: the frame is a user frame built by `user` (CS and SS the
    // user selectors, RFLAGS with IF set and IOPL 0, RIP and RSP user
    // addresses); popping it and `iretq` leave the kernel for good.
    unsafe { sanos_user_enter(frame) }
}
