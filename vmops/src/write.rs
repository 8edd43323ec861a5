//! The patch writer: puts a planned site's bytes in place, through a
//! writable alias of the text page (the kernel passes its direct-map
//! address; text itself stays read-execute), with interrupts masked for
//! the moment, and serialises afterwards (SDM Vol. 3A 8.1.3, cross- and
//! self-modifying code).
//!
//! It uses the raw instructions on purpose: it patches the very ops that
//! would otherwise mask interrupts, and must not run a site that is not
//! patched yet (in lazy mode that would recurse into the patcher).

/// Masks interrupts the native way (`pushfq; pop; cli`), for a backend
/// whose patcher masks with the instructions; returns the old RFLAGS for
/// [`unmask_native`].
pub fn mask_native() -> u64 {
    let flags: u64;
    // SAFETY: saving RFLAGS and masking interrupts on this CPU has no
    // memory effect; `unmask_native` restores them.
    unsafe { core::arch::asm!("pushfq", "pop {}", "cli", out(reg) flags, options(nomem)) };
    flags
}

/// Undoes [`mask_native`]: unmasks if interrupts were enabled before.
pub fn unmask_native(flags: u64) {
    if flags & (1 << 9) != 0 {
        // SAFETY: interrupts were enabled before `mask_native`; this
        // restores that.
        unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
    }
}

/// Copies `bytes` to `alias`; the caller has masked interrupts the
/// platform's way (the backend's `mask_raw` hook: `cli` natively, the
/// event mask under Xen PV, where `cli` faults in ring 3).
///
/// # Safety
/// `alias` must be a writable mapping of the `bytes.len()` bytes of kernel
/// text being patched, and no other CPU may execute them meanwhile (the
/// kernel patches before starting other CPUs, or patches the site the
/// current CPU is about to re-execute).
pub unsafe fn write_site(alias: *mut u8, bytes: &[u8]) {
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
