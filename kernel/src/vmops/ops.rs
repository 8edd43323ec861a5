//! The call sites: one macro emits every vmops site, and one `#[inline]`
//! wrapper per op gives the rest of the kernel a typed function to call.
//!
//! A site is `call qword ptr [rip + VMOPS_TABLE + 8 * op]` (6 bytes)
//! padded with a 6-byte NOP to [`SITE_LEN`], and a record
//! `(address, length, op)` in the `.vmops_sites` linker section. Each
//! inlined copy of a wrapper is a site of its own, which is what lets the
//! patcher turn each one into the platform's inline instructions.
//!
//! Callee-saves ops declare only RAX as clobbered (their argument
//! registers are inputs the callee preserves); C-ABI ops clobber what the C
//! ABI lets a callee clobber. No site uses `nomem`: every op is a compiler
//! memory barrier, as `cli`/`sti` must be.

use super::VMOPS_TABLE;
use vmops::{Op, SITE_LEN};

const _: () = assert!(SITE_LEN == 12, "the site macro emits 6 + 6 bytes");

/// Emits one call site of `$op` with the given asm operands.
macro_rules! site {
    ($op:expr, $($operands:tt)*) => {
        core::arch::asm!(
            "2:",
            "call qword ptr [rip + {table} + {offset}]",
            ".byte 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00",
            ".pushsection .vmops_sites, \"aw\"",
            ".balign 8",
            ".quad 2b",
            ".short {len}, {op}",
            ".long 0",
            ".popsection",
            table = sym VMOPS_TABLE,
            offset = const ($op as usize * 8),
            len = const SITE_LEN,
            op = const ($op as u16),
            $($operands)*
        )
    };
}

/// Masks maskable interrupts.
#[inline(always)]
pub fn irq_disable() {
    // SAFETY: the site calls the backend's irq_disable, which preserves all
    // registers but RAX (declared).
    unsafe { site!(Op::IrqDisable, out("rax") _) }
}

/// Unmasks maskable interrupts.
#[inline(always)]
pub fn irq_enable() {
    // SAFETY: as `irq_disable`.
    unsafe { site!(Op::IrqEnable, out("rax") _) }
}

/// The interrupt state, as RFLAGS would hold it (bit 9 = enabled).
#[inline(always)]
pub fn save_flags() -> u64 {
    let flags: u64;
    // SAFETY: as `irq_disable`; the result comes back in RAX.
    unsafe { site!(Op::SaveFlags, out("rax") flags) };
    flags
}

/// Restores an interrupt state returned by [`save_flags`].
#[inline(always)]
pub fn restore_flags(flags: u64) {
    // SAFETY: as `irq_disable`; the argument goes in RDI, preserved.
    unsafe { site!(Op::RestoreFlags, in("rdi") flags, out("rax") _) }
}

/// Enables interrupts and waits for one, atomically.
#[inline(always)]
pub fn safe_halt() {
    // SAFETY: as `irq_disable`.
    unsafe { site!(Op::SafeHalt, out("rax") _) }
}

/// Waits for an interrupt, leaving the interrupt state as it is.
#[inline(always)]
pub fn halt() {
    // SAFETY: as `irq_disable`.
    unsafe { site!(Op::Halt, out("rax") _) }
}

/// The page-table base register.
#[inline(always)]
pub fn read_cr3() -> u64 {
    let value: u64;
    // SAFETY: as `irq_disable`; the result comes back in RAX.
    unsafe { site!(Op::ReadCr3, out("rax") value) };
    value
}

/// Loads the page-table base register.
///
/// # Safety
/// `value` must name a page table that maps everything the kernel uses.
#[inline(always)]
pub unsafe fn write_cr3(value: u64) {
    // SAFETY: the caller vouches for the tables; RDI is preserved.
    unsafe { site!(Op::WriteCr3, in("rdi") value, out("rax") _) }
}

/// Flushes the TLB entry of `address`.
#[inline(always)]
pub fn flush_tlb_page(address: u64) {
    // SAFETY: flushing a TLB entry only costs a later page walk.
    unsafe { site!(Op::FlushTlbPage, in("rdi") address, out("rax") _) }
}

/// Flushes the whole TLB, global entries included.
#[inline(always)]
pub fn flush_tlb_all() {
    // SAFETY: as `flush_tlb_page`.
    unsafe { site!(Op::FlushTlbAll, out("rax") _) }
}

/// Stores page-table entry `value` at `entry`.
///
/// # Safety
/// `entry` must be a page-table entry the caller owns, and `value` must keep
/// the address space sound.
#[inline(always)]
pub unsafe fn set_pte(entry: *mut u64, value: u64) {
    // SAFETY: the caller vouches for the entry and value.
    unsafe { site!(Op::SetPte, in("rdi") entry, in("rsi") value, out("rax") _) }
}

/// Sets the stack the CPU switches to on entry from a less privileged ring.
#[inline(always)]
pub fn load_kernel_stack(top: u64) {
    // SAFETY: a C-ABI call; the kernel stack is only used for entries from
    // user mode, which the kernel does not have yet.
    unsafe { site!(Op::LoadKernelStack, in("rdi") top, clobber_abi("C")) }
}

/// Signals end of interrupt.
#[inline(always)]
pub fn eoi() {
    // SAFETY: a C-ABI call.
    unsafe { site!(Op::Eoi, clobber_abi("C")) }
}

/// Nanoseconds since boot on the platform's clock.
#[inline(always)]
pub fn clock_ns() -> u64 {
    let ns: u64;
    // SAFETY: a C-ABI call returning in RAX.
    unsafe { site!(Op::ClockNs, out("rax") ns, clobber_abi("C")) };
    ns
}

/// Arms the one-shot timer for clock time `deadline_ns`.
#[inline(always)]
pub fn set_timer(deadline_ns: u64) {
    // SAFETY: a C-ABI call.
    unsafe { site!(Op::SetTimer, in("rdi") deadline_ns, clobber_abi("C")) }
}

/// Nanoseconds of stolen time (the vCPU was runnable, the hypervisor ran
/// something else); 0 where the platform does not say.
#[inline(always)]
pub fn steal_ns() -> u64 {
    let ns: u64;
    // SAFETY: a C-ABI call returning in RAX.
    unsafe { site!(Op::StealNs, out("rax") ns, clobber_abi("C")) };
    ns
}

/// Writes bytes to the platform console.
#[inline(always)]
pub fn console_write(bytes: &[u8]) {
    // SAFETY: a C-ABI call that reads `len` bytes at `ptr`, which the
    // slice guarantees.
    unsafe {
        site!(Op::ConsoleWrite, in("rdi") bytes.as_ptr(), in("rsi") bytes.len(), clobber_abi("C"))
    }
}

/// Leaves the kernel: see [`crate::backend::ShutdownReason`].
#[inline(always)]
pub fn shutdown(reason: u64) {
    // SAFETY: a C-ABI call.
    unsafe { site!(Op::Shutdown, in("rdi") reason, clobber_abi("C")) }
}
