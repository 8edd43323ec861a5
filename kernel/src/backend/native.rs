//! The native backend: bare hardware, unknown hypervisors (QEMU TCG), and
//! the base of the KVM backend. Interrupt, halt and page-table ops are the
//! instructions themselves (`hv::native`); EOI, clock, timer, console,
//! shutdown and the kernel stack come from the kernel's own drivers (local
//! APIC, TSC, 16550 UART, QEMU's exit devices, the TSS).

use super::{BackendId, Hooks, Paging, ShutdownReason};
use crate::arch::{apic, cpu, gdt, idt};
use core::sync::atomic::AtomicPtr;
use hv::native::*;
use pure::boot::bootinfo::BootInfo;
use vmops::{Backend, FnAddr, OpImpl, OP_COUNT};

extern "C" fn eoi() {
    apic::eoi();
}

extern "C" fn clock_ns() -> u64 {
    crate::time::tsc_clock_ns()
}

extern "C" fn set_timer(deadline_ns: u64) {
    apic::arm_oneshot(deadline_ns, crate::time::tsc_clock_ns());
}

extern "C" fn steal_ns() -> u64 {
    0
}

extern "C" fn console_write(bytes: *const u8, len: usize) {
    // SAFETY: the `console_write` wrapper passes a slice's pointer and
    // length.
    crate::console::uart_write(unsafe { core::slice::from_raw_parts(bytes, len) });
}

extern "C" fn shutdown(reason: u64) {
    cpu::native_shutdown(ShutdownReason::decode(reason));
}

extern "C" fn load_kernel_stack(top: u64) {
    gdt::set_kernel_stack(top);
}

const fn addr(function: unsafe extern "C" fn()) -> FnAddr {
    FnAddr(function as *const ())
}

pub(super) const fn kernel_services(ops: &mut [OpImpl; OP_COUNT]) {
    use vmops::Op::*;
    ops[Eoi as usize] = OpImpl::function(FnAddr(eoi as *const ()));
    ops[ClockNs as usize] = OpImpl::function(FnAddr(clock_ns as *const ()));
    ops[SetTimer as usize] = OpImpl::function(FnAddr(set_timer as *const ()));
    ops[StealNs as usize] = OpImpl::function(FnAddr(steal_ns as *const ()));
    ops[ConsoleWrite as usize] = OpImpl::function(FnAddr(console_write as *const ()));
    ops[Shutdown as usize] = OpImpl::function(FnAddr(shutdown as *const ()));
    ops[LoadKernelStack as usize] = OpImpl::function(FnAddr(load_kernel_stack as *const ()));
}

pub(super) const fn instruction_ops(ops: &mut [OpImpl; OP_COUNT]) {
    use vmops::Op::*;
    ops[IrqDisable as usize] = OpImpl::inline(IRQ_DISABLE, addr(hv_native_irq_disable));
    ops[IrqEnable as usize] = OpImpl::inline(IRQ_ENABLE, addr(hv_native_irq_enable));
    ops[SaveFlags as usize] = OpImpl::inline(SAVE_FLAGS, addr(hv_native_save_flags));
    ops[RestoreFlags as usize] = OpImpl::inline(RESTORE_FLAGS, addr(hv_native_restore_flags));
    ops[SafeHalt as usize] = OpImpl::inline(SAFE_HALT, addr(hv_native_safe_halt));
    ops[Halt as usize] = OpImpl::inline(HALT, addr(hv_native_halt));
    ops[ReadCr3 as usize] = OpImpl::inline(READ_CR3, addr(hv_native_read_cr3));
    ops[WriteCr3 as usize] = OpImpl::inline(WRITE_CR3, addr(hv_native_write_cr3));
    ops[FlushTlbPage as usize] = OpImpl::inline(FLUSH_TLB_PAGE, addr(hv_native_flush_tlb_page));
    ops[FlushTlbAll as usize] = OpImpl::function(addr(hv_native_flush_tlb_all));
    ops[SetPte as usize] = OpImpl::inline(SET_PTE, addr(hv_native_set_pte));
}

const fn build() -> Backend {
    let mut ops = [OpImpl::MISSING; OP_COUNT];
    instruction_ops(&mut ops);
    kernel_services(&mut ops);
    Backend {
        id: BackendId::Native,
        ops,
    }
}

pub static BACKEND: Backend = build();

/// The CPU's own tables: GDT and TSS, IDT, SSE.
pub(super) fn init_cpu() {
    gdt::init();
    idt::init();
    cpu::enable_sse();
}

/// The firmware's tables (ACPI: the I/O APIC, soft-off), the legacy PICs
/// masked, the local APIC and its one-shot timer.
pub(super) fn start_interrupts(boot: &BootInfo<'_>) {
    start_interrupts_with(boot, |_| {});
}

/// As [`start_interrupts`], calling `before_timer` with the xAPIC register
/// page (virtual, physical; `None` in x2APIC mode) once the local APIC is
/// enabled and before its timer is first armed.
pub(super) fn start_interrupts_with(boot: &BootInfo<'_>, before_timer: fn(Option<(u64, u64)>)) {
    crate::arch::acpi::init(boot.rsdp);
    apic::disable_legacy_pic();
    match apic::enable() {
        Ok(page) => {
            before_timer(page);
            apic::start_timer();
        }
        Err(error) => log::error!("apic: {error:?}; no timer interrupts"),
    }
}

/// Console input by the UART's interrupt.
pub(super) fn after_threads() {
    crate::console::enable_input_interrupt();
}

/// The CMOS clock, read once (its ports are slow) and carried on by the
/// platform clock.
pub(super) fn rtc_wallclock() -> Option<u64> {
    static AT_BOOT: spin::Once<Option<u64>> = spin::Once::new();
    let at_boot = AT_BOOT.call_once(|| {
        let seconds = crate::arch::rtc::unix_seconds();
        match seconds {
            Some(seconds) => {
                log::info!("time: CMOS clock {}", pure::time::civil::from_unix(seconds))
            }
            None => log::warn!("time: no CMOS clock, or it holds no date"),
        }
        seconds
            .map(|seconds| (seconds * 1_000_000_000).saturating_sub(crate::time::since_boot_ns()))
    });
    at_boot.map(|at_boot| at_boot + crate::time::since_boot_ns())
}

pub(super) fn nothing_to_fill(_boot: &mut BootInfo<'_>) {}

pub(super) fn no_shared_page() -> Option<x86_64::PhysAddr> {
    None
}

pub(super) const HOOKS_BASE: Hooks = Hooks {
    id: BackendId::Native,
    deprivileged: false,
    paging: Paging::Own,
    cpuid: cpu::cpuid_native,
    init_cpu,
    fill_memory_map: nothing_to_fill,
    shared_page: no_shared_page,
    start_interrupts,
    after_threads,
    wallclock: rtc_wallclock,
    mask_raw: vmops::write::mask_native,
    unmask_raw: vmops::write::unmask_native,
    user: &NATIVE_USER,
};

/// Programs natively (and under KVM, VMI and Xen PVH, where the kernel is
/// in ring 0 too): SYSCALL, the GDT's user segments, FS by its MSR.
static NATIVE_USER: super::UserPlatform = super::UserPlatform {
    init: crate::user::entry::init_native,
    code_segment: gdt::USER_CODE,
    data_segment: gdt::USER_DATA,
    set_fs_base: crate::user::entry::set_fs_base_native,
    keeps_inaccessible_pages: true,
    mirror_top_entry: |_, _| {},
};

pub static HOOKS: Hooks = HOOKS_BASE;

/// The table before any backend is chosen: the native functions. (A
/// `const` on purpose: it initialises the one static table.)
#[allow(clippy::declare_interior_mutable_const)]
pub(crate) const TABLE_AT_BOOT: [AtomicPtr<()>; OP_COUNT] = {
    let backend = build();
    let mut table = [const { AtomicPtr::new(core::ptr::null_mut()) }; OP_COUNT];
    let mut i = 0;
    while i < OP_COUNT {
        if let Some(function) = backend.ops[i].function {
            table[i] = AtomicPtr::new(function.0.cast_mut());
        }
        i += 1;
    }
    table
};
