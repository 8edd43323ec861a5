//! The platform layer: which backend implements the vmops on this machine,
//! the table the call sites go through, and the patcher that rewrites the
//! sites (DESIGN.md, "vmops").
//!
//! At boot [`init`] detects the platform (`hv::platform`), chooses a
//! backend (`vmops.backend=` may override it; one the platform cannot
//! support is refused), fills [`VMOPS_TABLE`] with the backend's functions
//! and, in `vmops=eager` mode, patches every site. Until then the table
//! holds the native functions, so the sites that run first (console,
//! interrupts) work unpatched. The rest of the kernel calls the wrappers in
//! [`ops`] and never asks which platform it is on.

pub mod grant;
pub mod kvm;
pub mod native;
pub mod ops;
mod patch;
pub mod xen;
pub mod xenpv;
pub mod xenstore;

use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};
use hv::platform::Platform;
use sanos_kernel::bootinfo::{BootInfo, BootProtocol};
use sanos_kernel::cmdline::{BackendName, Options};
use spin::Once;
use vmops::{Backend, Mode, Op, OP_COUNT};

pub use patch::{describe_site, PatchReport};

/// Function addresses, one slot per op; sites call through it.
#[repr(C, align(64))]
pub struct Table([AtomicPtr<()>; OP_COUNT]);

/// The table every site calls through. Starts as the native backend.
pub static VMOPS_TABLE: Table = Table(native::TABLE_AT_BOOT);

impl Table {
    pub(crate) fn set(&self, op: Op, function: *const ()) {
        self.0[op as usize].store(function.cast_mut(), Ordering::Release);
    }

    pub(crate) fn slot_address(&self, op: Op) -> u64 {
        (&raw const self.0[op as usize]) as u64
    }
}

/// What [`ops::shutdown`] is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    PowerOff,
    Reboot,
    /// Stop after a fatal error.
    Crash,
    /// Leave with an exit status (the test mode's pass/fail/panic codes).
    Exit(u8),
}

impl ShutdownReason {
    const EXIT_TAG: u64 = 0x100;

    pub fn encode(self) -> u64 {
        match self {
            ShutdownReason::PowerOff => 0,
            ShutdownReason::Reboot => 1,
            ShutdownReason::Crash => 2,
            ShutdownReason::Exit(code) => Self::EXIT_TAG | u64::from(code),
        }
    }

    pub fn decode(value: u64) -> ShutdownReason {
        match value {
            0 => ShutdownReason::PowerOff,
            1 => ShutdownReason::Reboot,
            v if v & Self::EXIT_TAG != 0 => ShutdownReason::Exit(v as u8),
            _ => ShutdownReason::Crash,
        }
    }
}

/// What was chosen at boot, for the shell, tests and benchmarks.
pub struct Chosen {
    pub platform: Platform,
    pub backend: &'static Backend,
    pub mode: Mode,
    pub report: PatchReport,
}

static CHOSEN: Once<Chosen> = Once::new();
static BACKEND_ID: AtomicU8 = AtomicU8::new(0);

/// The platform, backend and patch results (after [`init`]).
pub fn chosen() -> Option<&'static Chosen> {
    CHOSEN.get()
}

/// Whether the chosen backend is one of Xen's (PVH or PV).
fn on_xen() -> bool {
    chosen().is_some_and(|c| {
        core::ptr::eq(c.backend, &xen::BACKEND) || c.backend.name == xenpv::backend().name
    })
}

/// A physical page the backend shares with the hypervisor outside RAM,
/// which the kernel's page tables must keep at its direct-map address.
/// (No heap yet when this is asked: an `Option`, not a list.)
pub fn shared_page() -> Option<u64> {
    match chosen() {
        Some(c) if core::ptr::eq(c.backend, &xen::BACKEND) => xen::shared_page(),
        _ => None,
    }
}

/// Lets the backend start what needs threads (Xen: event channels,
/// xenstore and the shutdown watch).
pub fn after_threads() {
    if on_xen() {
        xen::after_threads();
    }
}

/// Lets the backend start what needs memory but must run before the
/// scheduler (Xen PV: events and Xen time, its only timer).
pub fn after_memory() {
    if crate::mm::xlate::is_xen_pv() {
        xenpv::after_memory();
    }
}

/// Completes an empty memory map from the platform (Xen's PVH dom0 has
/// none in its start info and asks the hypervisor).
pub fn fill_memory_map(boot: &mut BootInfo<'_>) {
    if !boot.memory.is_empty() || !on_xen() {
        return;
    }
    let mut entries = [hv::xen::E820Entry::default(); 64];
    match xen::memory_map(&mut entries) {
        Ok(count) => {
            for entry in &entries[..count] {
                let (addr, size, kind) = (entry.addr, entry.size, entry.type_);
                if let Err(error) =
                    boot.memory
                        .add_firmware(addr, size, sanos_kernel::bootinfo::e820_kind(kind))
                {
                    log::error!("xen: memory map: {error}; entry dropped");
                }
            }
            log::info!("xen: memory map from XENMEM_memory_map, {count} entries");
        }
        Err(error) => log::error!("xen: XENMEM_memory_map failed: {error}"),
    }
}

/// Detects the platform, selects and installs the backend, and patches
/// the sites as `options` says. Call once, early, with interrupts off.
pub fn init(options: &Options<'_>, boot: &BootInfo<'_>) -> &'static Chosen {
    let platform = hv::platform::detect(|leaf| {
        let r = crate::arch::cpu::cpuid(leaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    });
    let detected = match platform {
        Platform::Kvm { features, .. } if kvm::usable(features) => BackendName::Kvm,
        // Entered by PVH on Xen: no emulated devices, Xen provides them.
        Platform::Xen { .. } if boot.protocol == BootProtocol::Pvh => BackendName::XenPvh,
        // Entered as a PV guest: deprivileged, nothing else can work.
        _ if boot.protocol == BootProtocol::XenPv => BackendName::XenPv,
        _ => BackendName::Native,
    };
    let wanted = match options.vmops_backend {
        Some(name) if detected == BackendName::XenPv && name != BackendName::XenPv => {
            log::error!(
                "vmops: backend {} refused: the kernel runs deprivileged as a Xen PV guest; using xen-pv",
                name.name()
            );
            detected
        }
        Some(BackendName::XenPv) if detected != BackendName::XenPv => {
            log::error!(
                "vmops: backend xen-pv refused: the kernel was not entered as a Xen PV guest; using {}",
                detected.name()
            );
            detected
        }
        Some(BackendName::Kvm) if !matches!(platform, Platform::Kvm { .. }) => {
            log::error!(
                "vmops: backend kvm refused: the platform is {}, not KVM; using {}",
                platform.name(),
                detected.name()
            );
            detected
        }
        Some(BackendName::Kvm) if detected != BackendName::Kvm => {
            log::error!("vmops: backend kvm refused: this KVM offers no kvmclock; using native");
            detected
        }
        Some(BackendName::XenPvh) if detected != BackendName::XenPvh => {
            log::error!(
                "vmops: backend xen-pvh refused: the platform is {}, not Xen entered by PVH; using {}",
                platform.name(),
                detected.name()
            );
            detected
        }
        Some(name) => name,
        None => detected,
    };
    let backend: &'static Backend = match wanted {
        BackendName::Kvm => match kvm::init(platform) {
            Ok(()) => &kvm::BACKEND,
            Err(error) => {
                log::error!("vmops: kvm backend failed ({error}); using native");
                &native::BACKEND
            }
        },
        BackendName::XenPvh => match xen::init(platform, boot.start_flags) {
            Ok(()) => &xen::BACKEND,
            Err(error) => {
                log::error!("vmops: xen-pvh backend failed ({error}); using native");
                &native::BACKEND
            }
        },
        BackendName::XenPv => xenpv::backend(),
        BackendName::Native => &native::BACKEND,
    };
    BACKEND_ID.store(
        if core::ptr::eq(backend, &kvm::BACKEND) {
            1
        } else {
            0
        },
        Ordering::Relaxed,
    );
    let report = patch::install(backend, options.vmops_mode);
    let chosen = CHOSEN.call_once(|| Chosen {
        platform,
        backend,
        mode: options.vmops_mode,
        report,
    });
    log::info!(
        "vmops: platform={} backend={} mode={} sites={} ({})",
        platform.name(),
        backend.name,
        options.vmops_mode.name(),
        chosen.report.sites,
        chosen.report
    );
    if chosen.report.refused > 0 {
        log::error!(
            "vmops: {} site records refused (left as indirect calls)",
            chosen.report.refused
        );
    }
    chosen
}

mod tests {
    use super::patch::{lazy_counts, site_bytes, site_matches, sites};
    use super::*;
    use crate::ktest::{ktest, TestResult};
    use crate::{kassert, kassert_eq};

    fn chosen_or_fail() -> Result<&'static Chosen, crate::ktest::TestFailure> {
        chosen().ok_or(crate::ktest::TestFailure {
            message: alloc::string::String::from("vmops not initialised"),
            file: file!(),
            line: line!(),
        })
    }

    #[ktest]
    fn sites_hold_what_the_mode_promises() -> TestResult {
        let chosen = chosen_or_fail()?;
        kassert!(
            sites().len() >= OP_COUNT,
            "only {} sites recorded",
            sites().len()
        );
        kassert_eq!(chosen.report.refused, 0);
        kassert_eq!(chosen.report.mismatched, 0);
        for site in sites() {
            kassert!(
                site_matches(site, chosen.backend, chosen.mode),
                "site at {:#x} ({:?}) holds {:02x?}, not the {} form",
                site.address,
                Op::from_id(site.op),
                site_bytes(site),
                chosen.mode.name()
            );
        }
        if chosen.mode == Mode::Lazy {
            let (patched, failed) = lazy_counts();
            kassert!(patched > 0, "lazy mode patched no site");
            kassert_eq!(failed, 0);
        }
        Ok(())
    }

    #[ktest]
    fn every_op_is_recorded_and_implemented() -> TestResult {
        let chosen = chosen_or_fail()?;
        for op in Op::ALL {
            kassert!(
                sites().iter().any(|site| site.op == op as u16),
                "no call site of {op}: the wrapper is never used"
            );
            let imp = chosen.backend.get(op);
            kassert!(
                imp.function.is_some(),
                "{} backend has no function for {op}",
                chosen.backend.name
            );
        }
        Ok(())
    }

    #[ktest]
    fn native_thunks_are_their_inline_forms() -> TestResult {
        for op in Op::ALL {
            let imp = native::BACKEND.get(op);
            let (Some(inline), Some(function)) = (imp.inline, imp.function) else {
                continue;
            };
            let code = function.addr() as *const u8;
            // SAFETY: the function is kernel text, mapped readable; its
            // first `inline.len() + 1` bytes are the thunk.
            let bytes = unsafe { core::slice::from_raw_parts(code, inline.len() + 1) };
            kassert_eq!(&bytes[..inline.len()], inline);
            kassert_eq!(bytes[inline.len()], 0xc3);
        }
        Ok(())
    }

    #[ktest]
    fn interrupt_ops_round_trip() -> TestResult {
        let before = ops::save_flags();
        ops::irq_disable();
        kassert_eq!(ops::save_flags() & (1 << 9), 0);
        ops::irq_enable();
        kassert!(ops::save_flags() & (1 << 9) != 0);
        ops::irq_disable();
        ops::restore_flags(before);
        kassert_eq!(ops::save_flags() & (1 << 9), before & (1 << 9));
        // With interrupts on and a timer armed, halt returns at its tick.
        let tick = crate::time::timer_interrupts();
        ops::set_timer(ops::clock_ns() + 1_000_000);
        while crate::time::timer_interrupts() == tick {
            ops::safe_halt();
        }
        Ok(())
    }

    #[ktest]
    fn page_table_ops_round_trip() -> TestResult {
        let cr3 = ops::read_cr3();
        kassert!(cr3 != 0);
        // SAFETY: reloading the current page-table base changes nothing
        // but the (non-global) TLB contents.
        unsafe { ops::write_cr3(cr3) };
        kassert_eq!(ops::read_cr3(), cr3);
        ops::flush_tlb_page(cr3 as usize as u64 | crate::arch::layout::PHYS_MAP_BASE);
        ops::flush_tlb_all();
        // set_pte on a live entry: a fresh stack page made read-only and
        // back (under Xen PV the store is Xen's to validate).
        use crate::mm::paging::{flags_of, leaf_entry, Flags};
        let stack = crate::mm::KernelStack::new(1);
        kassert!(stack.is_some(), "no kernel stack");
        let Some(stack) = stack else { return Ok(()) };
        let page = stack.bottom();
        let entry = leaf_entry(page);
        kassert!(entry.is_some(), "stack page not mapped");
        let Some(entry) = entry else { return Ok(()) };
        // SAFETY: the entry maps the stack page just allocated, which
        // nothing else uses; only its writable bit changes.
        let before = unsafe { entry.read_volatile() };
        // SAFETY: as above.
        unsafe { ops::set_pte(entry, before & !Flags::WRITABLE.bits()) };
        ops::flush_tlb_page(page);
        let flags = flags_of(page).unwrap_or(Flags::WRITABLE);
        kassert!(!flags.contains(Flags::WRITABLE), "set_pte left {flags:?}");
        // SAFETY: as above.
        unsafe { ops::set_pte(entry, before) };
        ops::flush_tlb_page(page);
        kassert!(flags_of(page).is_some_and(|f| f.contains(Flags::WRITABLE)));
        Ok(())
    }

    #[ktest]
    fn clock_op_is_monotonic() -> TestResult {
        let mut last = ops::clock_ns();
        for _ in 0..1000 {
            let now = ops::clock_ns();
            kassert!(now >= last, "clock went back from {last} to {now}");
            last = now;
        }
        Ok(())
    }

    #[ktest]
    fn shutdown_reasons_round_trip() -> TestResult {
        for reason in [
            ShutdownReason::PowerOff,
            ShutdownReason::Reboot,
            ShutdownReason::Crash,
            ShutdownReason::Exit(0),
            ShutdownReason::Exit(0x11),
            ShutdownReason::Exit(0xff),
        ] {
            kassert_eq!(ShutdownReason::decode(reason.encode()), reason);
        }
        Ok(())
    }
}
