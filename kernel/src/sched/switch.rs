//! The context switch and the FPU/SSE state.
//!
//! `switch_context` saves the callee-saved registers (System V: RBX, RBP,
//! R12-R15) on the old stack, stores the old stack pointer, loads the new
//! one and pops the new thread's registers: everything else is already
//! saved by the compiler around the call. A new thread's stack is built to
//! look like one that switched out, returning into `thread_trampoline`.
//!
//! FPU/SSE state is saved eagerly (FXSAVE/FXRSTOR, SDM Vol. 1 10.5), and
//! only for threads created as FPU users: the kernel itself is built
//! without SSE, so a switch between kernel threads saves nothing, and a
//! thread that uses the FPU gets its state back exactly. Eager rather than
//! lazy (CR0.TS and #NM) because lazy switching costs a trap per first use
//! and leaks state across threads on speculative CPUs; Linux made the same
//! choice.

/// The 512-byte FXSAVE area.
#[repr(C, align(16))]
pub struct FpuArea(pub [u8; 512]);

impl FpuArea {
    /// A clean state: what FNINIT and a default MXCSR (0x1f80, all
    /// exceptions masked) give, as an FXSAVE image.
    pub fn new() -> FpuArea {
        let mut area = [0u8; 512];
        area[0..2].copy_from_slice(&0x037fu16.to_le_bytes()); // FCW
        area[24..28].copy_from_slice(&0x1f80u32.to_le_bytes()); // MXCSR
        area[28..32].copy_from_slice(&0xffffu32.to_le_bytes()); // MXCSR_MASK
        FpuArea(area)
    }
}

core::arch::global_asm!(
    ".section .text.switch, \"ax\"",
    ".global sched_switch_context",
    "sched_switch_context:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov [rdi], rsp",
    "mov rsp, rsi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    // A new thread starts here with its start routine's argument in R12.
    ".global sched_thread_trampoline",
    "sched_thread_trampoline:",
    "mov rdi, r12",
    "xor ebp, ebp",
    "call {start}",
    "ud2",
    start = sym super::thread_start,
);

unsafe extern "C" {
    fn sched_switch_context(old_rsp: *mut u64, new_rsp: u64);
    fn sched_thread_trampoline();
}

/// Saves the current stack pointer at `old_rsp` and continues on
/// `new_rsp`; returns when something switches back to `old_rsp`.
///
/// # Safety
/// Interrupts are off; `new_rsp` was saved by this function or built by
/// [`initial_stack`]; `old_rsp` stays valid until the switch back.
pub unsafe fn switch_context(old_rsp: *mut u64, new_rsp: u64) {
    // SAFETY: the caller upholds the contract above.
    unsafe { sched_switch_context(old_rsp, new_rsp) }
}

/// Prepares a new thread's stack (top at `top`) so that switching to the
/// returned stack pointer enters the trampoline with `argument` in R12.
///
/// # Safety
/// `top` must be the 16-byte aligned top of a mapped, unused stack.
pub unsafe fn initial_stack(top: u64, argument: u64) -> u64 {
    // Layout, low to high: r15 r14 r13 r12 rbx rbp, return address. After
    // the six pops and the `ret`, RSP = top, 16-byte aligned, so the
    // trampoline's `call` enters its callee with the ABI's alignment.
    let frame: [u64; 7] = [
        0,
        0,
        0,
        argument,
        0,
        0,
        sched_thread_trampoline as unsafe extern "C" fn() as usize as u64,
    ];
    let rsp = top - 8 * frame.len() as u64;
    for (i, word) in frame.iter().enumerate() {
        // SAFETY: the caller guarantees the stack is mapped and unused.
        unsafe { ((rsp + 8 * i as u64) as *mut u64).write(*word) };
    }
    rsp
}

/// Saves the FPU/SSE state into `area`.
pub fn fpu_save(area: &mut FpuArea) {
    // SAFETY: FXSAVE writes 512 bytes at a 16-byte aligned address: the
    // area is exactly that.
    unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) area.0.as_mut_ptr(), options(nostack)) };
}

/// Loads the FPU/SSE state from `area`.
pub fn fpu_restore(area: &FpuArea) {
    // SAFETY: the area holds an FXSAVE image (from `fpu_save` or
    // `FpuArea::new`, whose reserved bits are zero).
    unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) area.0.as_ptr(), options(nostack)) };
}
