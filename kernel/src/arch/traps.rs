//! Trap entry and dispatch: one assembly stub per vector saves the
//! general-purpose registers into a [`TrapFrame`] and calls
//! [`trap_dispatch`], which reports exceptions and routes interrupts to the
//! handlers registered with [`set_handler`].
//!
//! Intel SDM Vol. 3A 6.3.1 (exception classes and error codes) and 6.14
//! (64-bit interrupt stack frame). Vectors 8, 10-14, 17, 21, 29 and 30 push
//! an error code; the stubs of the others push 0 so every frame has one
//! shape.

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Vectors that the kernel uses.
pub const VECTOR_DOUBLE_FAULT: u8 = 8;
pub const VECTOR_PAGE_FAULT: u8 = 14;
pub const VECTOR_BREAKPOINT: u8 = 3;
pub const VECTOR_NMI: u8 = 2;
/// The legacy PICs are remapped to 0x20..0x2f and fully masked; a spurious
/// IRQ 7 or 15 can still arrive.
pub const VECTOR_PIC_SPURIOUS_MASTER: u8 = 0x27;
pub const VECTOR_PIC_SPURIOUS_SLAVE: u8 = 0x2f;
/// Local APIC timer and spurious-interrupt vectors.
pub const VECTOR_APIC_TIMER: u8 = 0x30;
pub const VECTOR_APIC_SPURIOUS: u8 = 0xff;
/// COM1's receive interrupt, through the I/O APIC.
pub const VECTOR_COM1: u8 = 0x34;

/// Each stub is padded to this many bytes so stub `n` sits at
/// `trap_stubs + n * TRAP_STUB_SIZE`.
const TRAP_STUB_SIZE: u64 = 16;

/// What the stubs leave on the stack: general-purpose registers (pushed by
/// the common stub), vector and error code, then the CPU's frame.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

core::arch::global_asm!(
    ".section .text.traps, \"ax\"",
    ".balign 16",
    ".global trap_stubs",
    "trap_stubs:",
    ".set trap_vec, 0",
    ".rept 256",
    ".balign 16",
    ".if (trap_vec == 8) || ((trap_vec >= 10) && (trap_vec <= 14)) || (trap_vec == 17) || (trap_vec == 21) || (trap_vec == 29) || (trap_vec == 30)",
    ".else",
    "push 0",
    ".endif",
    "push trap_vec",
    "jmp trap_common",
    ".set trap_vec, trap_vec + 1",
    ".endr",
    // Also the system-call entry's path (`user::entry`), with the vector
    // SYSCALL_VECTOR.
    ".global trap_common",
    "trap_common:",
    "push rax",
    "push rbx",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push rbp",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    // The frame is 22 words; the CPU aligns RSP to 16 before pushing its
    // part, Xen PV's bounce frame need not: align for the call, keep the
    // frame's address in RBX (saved in the frame, restored below).
    "mov rdi, rsp",
    "mov rbx, rsp",
    "and rsp, -16",
    "cld",
    "call {dispatch}",
    "mov rsp, rbx",
    // Restores the frame at RSP and leaves through it (also how user mode
    // is first entered: `user::entry::enter`).
    ".global trap_restore",
    "trap_restore:",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rbp",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rbx",
    "pop rax",
    "add rsp, 16",
    // `iretq` natively; Xen PV returns through HYPERVISOR_iret instead
    // (`set_trap_return`).
    "jmp qword ptr [rip + trap_return]",
    ".global trap_iretq",
    "trap_iretq:",
    "iretq",
    // ---- Xen PV entry points (xen/include/public/arch-x86/xen-x86_64.h):
    // Xen's bounce frame is the CPU's plus RCX and R11 on top; pop them
    // and continue as the native stub of the vector. Exceptions only:
    // interrupts arrive as events, through `xen_pv_event_entry`.
    ".balign 16",
    ".global xen_pv_trap_stubs",
    "xen_pv_trap_stubs:",
    ".set trap_vec, 0",
    ".rept 32",
    ".balign 16",
    "pop rcx",
    "pop r11",
    "jmp trap_stubs + trap_vec * 16",
    ".set trap_vec, trap_vec + 1",
    ".endr",
    // `syscall` from user mode, bounced by Xen (the callback given to
    // HYPERVISOR_set_callbacks): RCX and R11 on top of the CPU's frame,
    // then the system-call path.
    ".balign 16",
    ".global xen_pv_syscall_entry",
    "xen_pv_syscall_entry:",
    "pop rcx",
    "pop r11",
    "push 0",
    "push {syscall}",
    "jmp trap_common",
    ".global xen_pv_event_entry",
    "xen_pv_event_entry:",
    "pop rcx",
    "pop r11",
    "jmp trap_stubs + {upcall} * 16",
    ".section .data.trap_return, \"aw\"",
    ".balign 8",
    ".global trap_return",
    "trap_return:",
    ".quad trap_iretq",
    dispatch = sym trap_dispatch,
    upcall = const VECTOR_XEN_UPCALL,
    syscall = const crate::user::entry::SYSCALL_VECTOR,
);

/// The vector that Xen's event upcall arrives on (PVH: the HVM callback
/// vector; PV: the event callback's stub enters the common path with it).
pub const VECTOR_XEN_UPCALL: u8 = 0xf3;

unsafe extern "C" {
    static xen_pv_trap_stubs: u8;
    static xen_pv_event_entry: u8;
    static xen_pv_syscall_entry: u8;
    static mut trap_return: u64;
}

/// Address of the Xen PV entry stub of exception `vector` (< 32).
pub fn xen_pv_trap_stub(vector: u8) -> u64 {
    (&raw const xen_pv_trap_stubs) as u64 + u64::from(vector) * TRAP_STUB_SIZE
}

/// Address of the Xen PV entry for `syscall` from user mode.
pub fn xen_pv_syscall_entry_address() -> u64 {
    (&raw const xen_pv_syscall_entry) as u64
}

/// Address of the Xen PV event-callback entry.
pub fn xen_pv_event_entry_address() -> u64 {
    (&raw const xen_pv_event_entry) as u64
}

/// Makes every trap return through `target` (which finds the CPU's frame
/// on the stack) instead of `iretq`.
///
/// # Safety
/// `target` must return from an interrupt frame correctly on this
/// platform; call before interrupts or events can arrive.
pub unsafe fn set_trap_return(target: u64) {
    // SAFETY: a single aligned store to the pointer the common stub jumps
    // through; nothing is in a trap yet (the caller's promise).
    unsafe { (&raw mut trap_return).write_volatile(target) };
}

unsafe extern "C" {
    static trap_stubs: u8;
}

/// Address of the entry stub for `vector`.
pub fn trap_stub_address(vector: u8) -> u64 {
    (&raw const trap_stubs) as u64 + u64::from(vector) * TRAP_STUB_SIZE
}

/// An interrupt handler. Runs with interrupts disabled; must not allocate
/// or take locks that code with interrupts enabled may hold.
pub type Handler = fn(&mut TrapFrame);

/// Registered handlers, as function addresses (0 = none), so interrupt
/// context reads them without a lock.
static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

/// Routes interrupt `vector` (32..=255) to `handler`. The caller acknowledges
/// the interrupt (EOI) itself.
pub fn set_handler(vector: u8, handler: Handler) {
    assert!(vector >= 32, "vectors below 32 are exceptions");
    HANDLERS[vector as usize].store(handler as usize, Ordering::Release);
}

/// Set in RAX by a fault fixup, with the vector in the low byte. No value
/// an instruction with a fixup produces in RAX has this bit set (RDMSR
/// zero-extends EAX).
pub const FIXUP_FAULTED: u64 = 1 << 63;

/// An exception-table entry (like Linux's `_ASM_EXTABLE`): an exception at
/// `fault` resumes at `fixup` with `FIXUP_FAULTED | vector` in RAX, instead
/// of stopping the kernel. Emitted by inline asm into `.extable`.
#[repr(C)]
struct FixupEntry {
    fault: u64,
    fixup: u64,
}

unsafe extern "C" {
    static __extable_start: u8;
    static __extable_end: u8;
}

fn fixups() -> &'static [FixupEntry] {
    let start = (&raw const __extable_start).cast::<FixupEntry>();
    let count =
        ((&raw const __extable_end) as usize - start as usize) / core::mem::size_of::<FixupEntry>();
    // SAFETY: the linker script brackets `.extable` with these symbols; it
    // holds only 16-byte (fault, fixup) pairs, 8-byte aligned, read-only.
    unsafe { core::slice::from_raw_parts(start, count) }
}

/// Whether an instruction at `rip` has an exception-table entry (it may
/// fault by design: an MSR probe, a copy of user memory).
pub fn has_fixup(rip: u64) -> bool {
    fixups().iter().any(|entry| entry.fault == rip)
}

/// Applies the fixup for an exception at `frame.rip`, if there is one.
fn apply_fixup(frame: &mut TrapFrame) -> bool {
    match fixups().iter().find(|entry| entry.fault == frame.rip) {
        Some(entry) => {
            frame.rip = entry.fixup;
            frame.rax = FIXUP_FAULTED | frame.vector;
            true
        }
        None => false,
    }
}

extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    // (SYSCALL clears RFLAGS.AC itself: FMASK.)
    if frame.vector == crate::user::entry::SYSCALL_VECTOR {
        crate::user::syscall::dispatch(frame);
        return;
    }
    // A copy of user memory may have been interrupted with SMAP lifted
    // (RFLAGS.AC): not in here, nor in a thread this trap switches to. The
    // interrupted code gets its AC back from the frame.
    crate::user::entry::close_user_access();
    let vector = frame.vector as u8;
    // User memory first: demand paging (for the program, and for the
    // kernel copying to or from it), and the program's own faults.
    if vector == VECTOR_PAGE_FAULT && crate::user::page_fault(frame) {
        return;
    }
    if vector < 32 && apply_fixup(frame) {
        return;
    }
    if vector < 32 && vector != VECTOR_NMI && crate::user::exception(frame) {
        return;
    }
    dispatch_vector(frame, vector);
    // An interrupt taken in user mode returns there: unless the program is
    // ending.
    crate::user::on_return(frame);
}

fn dispatch_vector(frame: &mut TrapFrame, vector: u8) {
    match vector {
        VECTOR_BREAKPOINT => log::warn!("breakpoint (#BP) at rip={:#x}", frame.rip),
        VECTOR_NMI => log::warn!("non-maskable interrupt at rip={:#x}", frame.rip),
        0..=31 => crate::panic::fatal_exception(frame),
        VECTOR_PIC_SPURIOUS_MASTER | VECTOR_PIC_SPURIOUS_SLAVE | VECTOR_APIC_SPURIOUS => {}
        _ => {
            let handler = HANDLERS[vector as usize].load(Ordering::Acquire);
            if handler == 0 {
                log::warn!("unexpected interrupt, vector {vector:#x}; ignored");
                crate::vmops::ops::eoi();
            } else {
                // SAFETY: only `set_handler` stores non-zero values, and it
                // stores the address of a `Handler`.
                let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(handler) };
                handler(frame);
                // A wake-up or the end of a slice may call for another
                // thread: switch now, on the way out of the interrupt.
                crate::sched::on_interrupt_exit();
            }
        }
    }
}

/// Names of the architectural exceptions (SDM Vol. 3A, Table 6-1).
pub fn exception_name(vector: u8) -> &'static str {
    match vector {
        0 => "divide error (#DE)",
        1 => "debug (#DB)",
        2 => "non-maskable interrupt",
        3 => "breakpoint (#BP)",
        4 => "overflow (#OF)",
        5 => "BOUND range exceeded (#BR)",
        6 => "invalid opcode (#UD)",
        7 => "device not available (#NM)",
        8 => "double fault (#DF)",
        9 => "coprocessor segment overrun",
        10 => "invalid TSS (#TS)",
        11 => "segment not present (#NP)",
        12 => "stack-segment fault (#SS)",
        13 => "general protection (#GP)",
        14 => "page fault (#PF)",
        16 => "x87 floating-point error (#MF)",
        17 => "alignment check (#AC)",
        18 => "machine check (#MC)",
        19 => "SIMD floating-point (#XM)",
        20 => "virtualization (#VE)",
        21 => "control protection (#CP)",
        28 => "hypervisor injection (#HV)",
        29 => "VMM communication (#VC)",
        30 => "security (#SX)",
        _ => "reserved exception",
    }
}

impl fmt::Display for TrapFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  rip={:#018x} cs={:#06x} rflags={:#010x} rsp={:#018x} ss={:#06x}",
            self.rip, self.cs, self.rflags, self.rsp, self.ss
        )?;
        writeln!(
            f,
            "  rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}",
            self.rax, self.rbx, self.rcx, self.rdx
        )?;
        writeln!(
            f,
            "  rsi={:#018x} rdi={:#018x} rbp={:#018x} r8 ={:#018x}",
            self.rsi, self.rdi, self.rbp, self.r8
        )?;
        writeln!(
            f,
            "  r9 ={:#018x} r10={:#018x} r11={:#018x} r12={:#018x}",
            self.r9, self.r10, self.r11, self.r12
        )?;
        write!(
            f,
            "  r13={:#018x} r14={:#018x} r15={:#018x}",
            self.r13, self.r14, self.r15
        )
    }
}

mod tests {
    use crate::ktest::{ktest, TestResult};
    use crate::{kassert, kassert_eq};

    #[ktest]
    fn fault_fixup_resumes_with_registers_intact() -> TestResult {
        let (rax_after, rbx_after, r12_after): (u64, u64, u64);
        // SAFETY: `ud2` raises #UD; its fixup entry sends the trap back to
        // label 3 with the fault in RAX (declared as an output). RBX is
        // saved and restored around the sequence.
        unsafe {
            core::arch::asm!(
                "push rbx",
                "mov rbx, 0x1122334455667788",
                "mov r12, 0x0badc0de",
                "xor eax, eax",
                "2: ud2",
                "3:",
                ".pushsection .extable, \"a\"",
                ".balign 8",
                ".quad 2b, 3b",
                ".popsection",
                "mov {rbx_out}, rbx",
                "pop rbx",
                rbx_out = out(reg) rbx_after,
                out("rax") rax_after,
                out("r12") r12_after,
            );
        }
        kassert_eq!(rax_after, super::FIXUP_FAULTED | 6);
        kassert_eq!(rbx_after, 0x1122_3344_5566_7788);
        kassert_eq!(r12_after, 0x0bad_c0de);
        Ok(())
    }

    #[ktest]
    fn general_protection_is_fixed_up() -> TestResult {
        let rax_after: u64;
        // SAFETY: the load from a non-canonical address raises #GP on every
        // x86_64 CPU and emulator; the fixup resumes at label 3 with the
        // fault in RAX, which is the asm's only output.
        unsafe {
            core::arch::asm!(
                "mov rax, 0x8000000000000000",
                "2: mov rax, qword ptr [rax]",
                "3:",
                ".pushsection .extable, \"a\"",
                ".balign 8",
                ".quad 2b, 3b",
                ".popsection",
                out("rax") rax_after,
                options(nostack),
            );
        }
        kassert_eq!(rax_after, super::FIXUP_FAULTED | 13);
        Ok(())
    }

    #[ktest]
    fn msr_reads_through_the_fixup_path() -> TestResult {
        // IA32_APIC_BASE exists wherever there is a local APIC. (Absent MSRs
        // are no test: QEMU's TCG reads them as 0 instead of raising #GP.)
        let safe = crate::arch::cpu::read_msr_safe(0x1b);
        kassert!(safe.is_ok(), "IA32_APIC_BASE read faulted: {safe:?}");
        // SAFETY: the MSR exists (just read without a fault).
        let direct = unsafe { crate::arch::cpu::read_msr(0x1b) };
        kassert_eq!(safe, Ok(direct));
        Ok(())
    }
}
