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

pub mod kvm;
pub mod native;
pub mod ops;
mod patch;

use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};
use hv::platform::Platform;
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

/// Detects the platform, selects and installs the backend, and patches
/// the sites as `options` says. Call once, early, with interrupts off.
pub fn init(options: &Options<'_>) -> &'static Chosen {
    let platform = hv::platform::detect(|leaf| {
        let r = crate::arch::cpu::cpuid(leaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    });
    let detected = match platform {
        Platform::Kvm { features, .. } if kvm::usable(features) => BackendName::Kvm,
        _ => BackendName::Native,
    };
    let wanted = match options.vmops_backend {
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
