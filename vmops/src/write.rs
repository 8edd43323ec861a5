//! The patch writer: puts a planned site's bytes in place, through a
//! writable alias of the text page (the kernel passes its direct-map
//! address; text itself stays read-execute), with interrupts masked for
//! the moment, and serialises afterwards (SDM Vol. 3A 8.1.3, cross- and
//! self-modifying code).
//!
//! It uses the raw instructions on purpose: it patches the very ops that
//! would otherwise mask interrupts, and must not run a site that is not
//! patched yet (in lazy mode that would recurse into the patcher).

/// Copies `bytes` to `alias` with interrupts masked.
///
/// # Safety
/// `alias` must be a writable mapping of the `bytes.len()` bytes of kernel
/// text being patched, and no other CPU may execute them meanwhile (the
/// kernel patches before starting other CPUs, or patches the site the
/// current CPU is about to re-execute).
pub unsafe fn write_site(alias: *mut u8, bytes: &[u8]) {
    let flags: u64;
    // SAFETY: saving RFLAGS and masking interrupts on this CPU has no
    // memory effect; they are restored below.
    unsafe { core::arch::asm!("pushfq", "pop {}", "cli", out(reg) flags, options(nomem)) };
    for (i, &byte) in bytes.iter().enumerate() {
        // SAFETY: the caller guarantees `alias..alias + len` is writable.
        unsafe { alias.add(i).write_volatile(byte) };
    }
    if flags & (1 << 9) != 0 {
        // SAFETY: interrupts were enabled on entry; this restores that.
        unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
    }
}

/// Copies `bytes` to `alias` without touching the interrupt state: for a
/// platform where `cli` is not the way to mask interrupts (a Xen PV
/// kernel runs in ring 3 and masks events instead).
///
/// # Safety
/// As [`write_site`], and the caller has masked interrupts itself.
pub unsafe fn write_site_masked(alias: *mut u8, bytes: &[u8]) {
    for (i, &byte) in bytes.iter().enumerate() {
        // SAFETY: the caller guarantees `alias..alias + len` is writable.
        unsafe { alias.add(i).write_volatile(byte) };
    }
}

/// Serialises instruction fetch after code was modified: an `iretq` to the
/// next instruction (as Linux's `sync_core`), which unlike CPUID does not
/// exit to the hypervisor.
pub fn serialize() {
    // SAFETY: builds an interrupt frame for the current context (SS, RSP,
    // RFLAGS, CS, the label) and returns through it, ending where it
    // started with every register but RAX unchanged.
    unsafe {
        core::arch::asm!(
            "mov eax, ss",
            "push rax",
            "lea rax, [rsp + 8]",
            "push rax",
            "pushfq",
            "mov eax, cs",
            "push rax",
            "lea rax, [rip + 2f]",
            "push rax",
            "iretq",
            "2:",
            out("rax") _,
        );
    }
}
