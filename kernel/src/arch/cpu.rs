//! Thin wrappers over CPU instructions: interrupt flag and halt (through
//! the vmops table, `crate::vmops::ops`), time-stamp counter,
//! model-specific registers, port I/O, CPUID, and the native shutdown.

use crate::backend::ShutdownReason;
use crate::vmops::ops;
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

/// Disables maskable interrupts and returns whether they were enabled.
#[inline(always)]
pub fn irq_save() -> bool {
    let flags = ops::save_flags();
    ops::irq_disable();
    flags & RFLAGS_IF != 0
}

/// Restores the interrupt state saved by [`irq_save`].
#[inline(always)]
pub fn irq_restore(was_enabled: bool) {
    if was_enabled {
        ops::irq_enable();
    }
}

/// Enables maskable interrupts.
#[inline(always)]
pub fn irq_enable() {
    ops::irq_enable();
}

/// Disables maskable interrupts.
#[inline(always)]
pub fn irq_disable() {
    ops::irq_disable();
}

/// Runs `f` with maskable interrupts disabled, restoring the state after.
#[inline(always)]
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let saved = irq_save();
    let result = f();
    irq_restore(saved);
    result
}

/// Enables interrupts and halts until the next one, atomically, so a
/// wake-up cannot slip in between.
#[inline(always)]
pub fn safe_halt() {
    ops::safe_halt();
}

/// Stops this CPU for good: interrupts off, halt forever.
pub fn halt_forever() -> ! {
    ops::irq_disable();
    loop {
        ops::halt();
    }
}

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter; it has no side effects and is available
    // on every x86_64 CPU (CR4.TSD is clear: the kernel never sets it).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Reads a model-specific register.
///
/// # Safety
/// `msr` must exist on this CPU (reading an absent MSR raises #GP).
#[inline]
pub unsafe fn read_msr(msr: u32) -> u64 {
    // SAFETY: the caller guarantees the MSR exists.
    unsafe { Msr::new(msr).read() }
}

/// Reads a model-specific register that may not exist: `Err(vector)` (13,
/// #GP) when the CPU or hypervisor refuses it, instead of a fatal fault.
pub fn read_msr_safe(msr: u32) -> Result<u64, u8> {
    let (rax, rdx): (u64, u64);
    // SAFETY: RDMSR only reads; if it faults, the exception-table entry
    // resumes at label 3 with FIXUP_FAULTED set in RAX.
    unsafe {
        core::arch::asm!(
            "2: rdmsr",
            "3:",
            ".pushsection .extable, \"a\"",
            ".balign 8",
            ".quad 2b, 3b",
            ".popsection",
            in("ecx") msr,
            inout("rax") 0u64 => rax,
            inout("rdx") 0u64 => rdx,
            options(nostack),
        );
    }
    if rax & crate::arch::traps::FIXUP_FAULTED != 0 {
        Err(rax as u8)
    } else {
        Ok((rdx << 32) | (rax & 0xffff_ffff))
    }
}

/// Writes a model-specific register.
///
/// # Safety
/// `msr` must exist and `value` must be valid for it; the write must not
/// break memory safety (e.g. EFER, PAT).
#[inline]
pub unsafe fn write_msr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the write is valid and sound.
    unsafe { Msr::new(msr).write(value) }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// Reading `port` must have no effect that breaks memory safety.
#[inline]
pub unsafe fn inb(port: u16) -> u8 {
    // SAFETY: the caller vouches for the port.
    unsafe { Port::<u8>::new(port).read() }
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// Writing `value` to `port` must not break memory safety.
#[inline]
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the port and value.
    unsafe { Port::<u8>::new(port).write(value) }
}

/// Reads a doubleword from an I/O port.
///
/// # Safety
/// Reading `port` must have no side effect that breaks memory safety.
#[inline]
pub unsafe fn inl(port: u16) -> u32 {
    // SAFETY: the caller vouches for the port.
    unsafe { Port::<u32>::new(port).read() }
}

/// Writes a doubleword to an I/O port.
///
/// # Safety
/// Writing `value` to `port` must not break memory safety.
#[inline]
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller vouches for the port and value.
    unsafe { Port::<u32>::new(port).write(value) }
}

/// The I/O port of QEMU's `isa-debug-exit` device (`iobase=0xf4`): a byte
/// `v` written there ends QEMU with status `(v << 1) | 1`.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Leaves with exit status `code` through the platform's shutdown op;
/// where nothing can take an exit status, says so and halts.
pub fn debug_exit(code: u8) -> ! {
    ops::shutdown(ShutdownReason::Exit(code).encode());
    crate::console::emergency_write("sanos: no exit device answered; halting\n");
    halt_forever()
}

/// The native shutdown: QEMU's `isa-debug-exit` for an exit status; for
/// power-off the FADT's PM1a control port with `\_S5`'s sleep type
/// (`arch::acpi`), else the ports QEMU's firmware sets up (0x604 on q35,
/// 0xb004 on the i440fx "pc" machine; SLP_TYP 0 | SLP_EN); the keyboard
/// controller's reset line for reboot.
/// Returns if the machine did not go away (real hardware without those
/// devices): the caller halts.
pub fn native_shutdown(reason: ShutdownReason) {
    match reason {
        // SAFETY: port 0xf4 is unassigned on PCs; QEMU's isa-debug-exit
        // there ends the machine, elsewhere the write is ignored.
        ShutdownReason::Exit(code) => unsafe { outb(DEBUG_EXIT_PORT, code) },
        ShutdownReason::PowerOff => {
            if let Some((port, sleep_type)) = crate::arch::acpi::soft_off() {
                // SAFETY: the FADT names this PM1a control port; SLP_TYP
                // of \_S5 with SLP_EN (bit 13) enters soft-off.
                unsafe { Port::<u16>::new(port).write((sleep_type & 7) << 10 | 1 << 13) };
            }
            // SAFETY: 0x604 and 0xb004 are the PM1a control ports QEMU's
            // firmware sets up, for when there was no FADT to ask.
            unsafe {
                Port::<u16>::new(0x604).write(0x2000);
                Port::<u16>::new(0xb004).write(0x2000);
            }
        }
        // SAFETY: command 0xfe to the 8042 keyboard controller pulses the
        // CPU reset line, which is what a reboot asks for.
        ShutdownReason::Reboot => unsafe { outb(0x64, 0xfe) },
        ShutdownReason::Crash => {}
    }
}

/// Reads CPUID leaf `leaf`, subleaf 0, as the backend in force asks it
/// (a Xen PV guest through Xen's forced-emulation prefix, so it sees Xen's
/// leaves and the guest's policy instead of the raw CPU).
#[inline]
pub fn cpuid(leaf: u32) -> core::arch::x86_64::CpuidResult {
    (crate::backend::hooks().cpuid)(leaf, 0)
}

/// The CPUID instruction itself.
pub fn cpuid_native(leaf: u32, subleaf: u32) -> core::arch::x86_64::CpuidResult {
    // CPUID is safe to execute in any mode and for any leaf.
    core::arch::x86_64::__cpuid_count(leaf, subleaf)
}

/// A reader for `raw_cpuid` that asks the way [`cpuid`] does.
#[derive(Clone, Copy)]
pub struct BackendCpuid;

impl raw_cpuid::CpuIdReader for BackendCpuid {
    fn cpuid2(&self, leaf: u32, subleaf: u32) -> raw_cpuid::CpuIdResult {
        let r = (crate::backend::hooks().cpuid)(leaf, subleaf);
        raw_cpuid::CpuIdResult {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        }
    }
}

/// The CPU's feature leaves, decoded by `raw_cpuid`.
pub fn features() -> raw_cpuid::CpuId<BackendCpuid> {
    raw_cpuid::CpuId::with_cpuid_reader(BackendCpuid)
}

/// Whether the CPU has no-execute page protection (CPUID.80000001h:EDX[20]).
pub fn has_nx() -> bool {
    features()
        .get_extended_processor_and_feature_identifiers()
        .is_some_and(|leaf| leaf.has_execute_disable())
}

/// EFER and its no-execute enable bit (Intel SDM Vol. 3A 2.2.1).
const IA32_EFER: u32 = 0xC000_0080;
const EFER_NXE: u64 = 1 << 11;

/// Turns on no-execute page protection if the CPU has it
/// (CPUID.80000001h:EDX[20]) and says whether it did.
pub fn enable_nx() -> bool {
    if !has_nx() {
        return false;
    }
    // SAFETY: EFER exists on every long-mode CPU, and setting NXE only makes
    // the NX bit in page-table entries meaningful instead of reserved.
    unsafe { write_msr(IA32_EFER, read_msr(IA32_EFER) | EFER_NXE) };
    true
}

/// Turns on global pages (CR4.PGE) so kernel mappings survive CR3 loads.
pub fn enable_global_pages() {
    use x86_64::registers::control::{Cr4, Cr4Flags};
    // SAFETY: PGE only changes which TLB entries survive a CR3 write; the
    // kernel marks as global only mappings that are the same in every
    // address space.
    unsafe { Cr4::update(|flags| flags.insert(Cr4Flags::PAGE_GLOBAL)) };
}

/// Lets threads use the FPU and SSE registers: CR0.EM clear, CR0.MP set,
/// CR4.OSFXSR (FXSAVE/FXRSTOR and SSE) and CR4.OSXMMEXCPT (SIMD exceptions
/// as #XM) set (SDM Vol. 3A 13.1.3). The kernel itself is built without
/// SSE; only threads created as FPU users touch these registers.
pub fn enable_sse() {
    use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
    // SAFETY: these bits only allow x87/SSE instructions to run instead of
    // trapping; no memory mapping or privilege changes.
    unsafe {
        Cr0::update(|flags| {
            flags.remove(Cr0Flags::EMULATE_COPROCESSOR);
            flags.insert(Cr0Flags::MONITOR_COPROCESSOR);
        });
        Cr4::update(|flags| flags.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE));
    }
}

/// A random 64-bit value: RDRAND where the CPU has it (retried, as Intel
/// advises, up to 10 times), otherwise a SplitMix64 stream seeded from the
/// TSC, which is unpredictable enough for stack canaries and hash seeds
/// but no cryptographic source (the log says so once).
pub fn random_u64() -> u64 {
    use core::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let has_rdrand = features()
        .get_feature_info()
        .is_some_and(|f| f.has_rdrand());
    if has_rdrand {
        for _ in 0..10 {
            let (value, ok): (u64, u8);
            // SAFETY: RDRAND exists (CPUID.1:ECX[30]); it only writes its
            // register and CF.
            unsafe {
                core::arch::asm!("rdrand {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok, options(nomem, nostack));
            }
            if ok != 0 {
                return value;
            }
        }
    }
    let mut state = STATE.load(Ordering::Relaxed);
    if state == 0 {
        log::warn!("random: no RDRAND; using a TSC-seeded generator (not cryptographic)");
        state = rdtsc() | 1;
    }
    state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    STATE.store(state, Ordering::Relaxed);
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buffer` with [`random_u64`] values.
pub fn random_bytes(buffer: &mut [u8]) {
    for chunk in buffer.chunks_mut(8) {
        let value = random_u64().to_le_bytes();
        chunk.copy_from_slice(&value[..chunk.len()]);
    }
}
