//! The platform backends, one file each: [`native`] (bare hardware and
//! hypervisors without a paravirtual interface), [`kvm`], [`xen_pvh`],
//! [`xen_pv`] and [`vmi`]. A backend is two things:
//!
//! - its vmops table ([`vmops::Backend`]): how each op is done on the
//!   platform, which the patcher writes into the call sites;
//! - its [`Hooks`]: what the platform does at the points of start-up
//!   where platforms differ (descriptor tables, the interrupt controller or
//!   event channels, the page-table model, what comes up once threads run).
//!
//! Detection runs once ([`select`]); from then on the rest of the kernel
//! calls ops and hooks and never asks which platform it is on. The one
//! identity, [`BackendId`], serves the boot log, the command line and the
//! tests that say why they do not apply.

pub mod kvm;
pub mod native;
pub mod vmi;
pub mod xen_pv;
pub mod xen_pvh;

use crate::vmops::PatchReport;
use core::sync::atomic::{AtomicU8, Ordering};
use hv::platform::Platform;
use pure::boot::bootinfo::{BootInfo, BootProtocol};
use pure::boot::cmdline::Options;
use spin::Once;
pub use vmops::BackendId;
use vmops::{Backend, Mode};
use x86_64::structures::paging::frame::PhysFrameRange;
use x86_64::{PhysAddr, VirtAddr};

/// How the kernel's page tables relate to the platform's.
#[derive(Clone, Copy)]
pub enum Paging {
    /// The kernel builds its own tables and loads them (2 MiB pages for the
    /// direct map, global pages, MMIO anywhere).
    Own,
    /// The hypervisor built and pinned the tables and validates every entry
    /// (Xen PV): the kernel extends them in 4 KiB pages, keeps table pages
    /// read-only, and has no device memory.
    Validated(&'static ValidatedPaging),
}

/// Page-table entries to store: (entry address, raw entry value).
pub type EntryBatch<'a> = &'a [(VirtAddr, u64)];

/// What `mm` needs from a platform that validates page tables.
pub struct ValidatedPaging {
    /// The frames of the tables the hypervisor built.
    pub bootstrap_tables: fn() -> PhysFrameRange,
    /// Stores many entries (entry address, value) at once; on a refusal,
    /// the address of the first entry not stored.
    pub set_ptes: fn(EntryBatch<'_>) -> Result<(), VirtAddr>,
    /// Whether a page of the kernel image maps a hypervisor page (left as
    /// it is when the image's protections are applied).
    pub is_hypervisor_page: fn(VirtAddr) -> bool,
}

/// What a platform does at the points of start-up where platforms differ.
pub struct Hooks {
    pub id: BackendId,
    /// The kernel runs outside ring 0 (Xen PV): no I/O ports, no
    /// descriptor tables of its own, no privileged instructions.
    pub deprivileged: bool,
    pub paging: Paging,
    /// CPUID as the platform wants it asked (Xen PV: through Xen's
    /// forced-emulation prefix).
    pub cpuid: fn(u32, u32) -> core::arch::x86_64::CpuidResult,
    /// The CPU's own tables at entry (GDT, TSS, IDT, SSE), or nothing
    /// where the hypervisor owns them.
    pub init_cpu: fn(),
    /// Completes an empty memory map (a Xen PVH dom0 asks Xen).
    pub fill_memory_map: fn(&mut BootInfo<'_>),
    /// A physical page outside RAM that the platform shares and the
    /// kernel's page tables must keep at its direct-map address.
    pub shared_page: fn() -> Option<PhysAddr>,
    /// Once memory is up, before the scheduler: the interrupt controllers
    /// and timer (firmware tables, PIC, local APIC), or event channels and
    /// Xen time.
    pub start_interrupts: fn(&BootInfo<'_>),
    /// Once threads run: console input, and on Xen the bus (xenstore, the
    /// shutdown watch, grant tables) and Xen time for PVH.
    pub after_threads: fn(),
    /// The wall clock the platform keeps, as nanoseconds since the Unix
    /// epoch: Xen's shared_info, or the CMOS clock read at boot; `None`
    /// where it has none (`time::wall_clock_ns` prefers NTP's).
    pub wallclock: fn() -> Option<u64>,
    /// Masks interrupts without running a vmops site (the patcher must
    /// not); returns what [`Hooks::unmask_raw`] restores.
    pub mask_raw: fn() -> u64,
    pub unmask_raw: fn(u64),
    /// How programs enter and leave user mode (`crate::user`).
    pub user: &'static UserPlatform,
}

/// What a platform does for programs in user mode.
pub struct UserPlatform {
    /// Prepares entries from user mode (natively the SYSCALL MSRs and
    /// SMEP/SMAP; under Xen PV the user page table and the syscall
    /// callback); says what keeps user code out of the kernel.
    pub init: fn() -> Result<&'static str, &'static str>,
    /// The code and stack segment selectors of user mode.
    pub code_segment: u16,
    pub data_segment: u16,
    pub set_fs_base: fn(u64),
    /// Whether a page the program may not touch (`PROT_NONE`) can stay
    /// present without the USER bit and keep its contents. Xen PV sets
    /// USER on every guest entry itself: such pages are dropped there.
    pub keeps_inaccessible_pages: bool,
    /// A new top-level page-table entry of the user half (index, value):
    /// where the platform keeps a user-mode table of its own (Xen PV), it
    /// must have the entry too.
    pub mirror_top_entry: fn(usize, u64),
}

/// What [`crate::vmops::ops::shutdown`] is asked to do.
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
/// The backend in force ([`BackendId`] as a number): native until
/// [`enter_xen_pv`] or [`select`] says otherwise.
static ID: AtomicU8 = AtomicU8::new(0);

/// The platform, backend and patch results (after [`select`]).
pub fn chosen() -> Option<&'static Chosen> {
    CHOSEN.get()
}

/// The backend in force.
pub fn id() -> BackendId {
    BackendId::ALL[usize::from(ID.load(Ordering::Acquire))]
}

fn set_id(id: BackendId) {
    let index = BackendId::ALL.iter().position(|&b| b == id).unwrap_or(0);
    ID.store(index as u8, Ordering::Release);
}

/// The hooks of the backend in force.
pub fn hooks() -> &'static Hooks {
    match id() {
        BackendId::Native => &native::HOOKS,
        BackendId::Kvm => &kvm::HOOKS,
        BackendId::XenPvh => &xen_pvh::HOOKS,
        BackendId::XenPv => &xen_pv::HOOKS,
        BackendId::Vmi => &vmi::HOOKS,
    }
}

/// The Xen PV entry's first call, before any vmops site runs: installs the
/// PV backend (whose `cli` replacement is all that works in ring 3).
pub fn enter_xen_pv(info: u64, stack: u64) -> pure::boot::bootinfo::XenPvStart {
    let layout = xen_pv::early(info, stack);
    set_id(BackendId::XenPv);
    layout
}

/// Detects the platform, selects and installs the backend, and patches
/// the sites as `options` says. Call once, early, with interrupts off.
pub fn select(options: &Options<'_>, boot: &BootInfo<'_>) -> &'static Chosen {
    let platform = hv::platform::detect(|leaf| {
        let r = crate::arch::cpu::cpuid(leaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    });
    // A VMI ROM is looked for except under Xen (a PV guest cannot read the
    // BIOS area; a PVH one has none). One that binds is the platform.
    let vmi_rom = match platform {
        _ if boot.protocol == BootProtocol::XenPv => None,
        Platform::Xen { .. } => None,
        _ => vmi::probe(),
    };
    let platform = match vmi_rom {
        Some(rom) => Platform::Vmi {
            major: rom.header.major,
            minor: rom.header.minor,
        },
        None => platform,
    };
    let detected = match platform {
        // Entered as a PV guest: deprivileged, nothing else can work.
        _ if boot.protocol == BootProtocol::XenPv => BackendId::XenPv,
        // Entered by PVH on Xen: no emulated devices, Xen provides them.
        Platform::Xen { .. } if boot.protocol == BootProtocol::Pvh => BackendId::XenPvh,
        Platform::Vmi { .. } => BackendId::Vmi,
        Platform::Kvm { features, .. } if kvm::usable(features) => BackendId::Kvm,
        _ => BackendId::Native,
    };
    let wanted = match options.vmops_backend {
        Some(wanted) => match refusal(wanted, detected, platform) {
            Some(why) => {
                log::error!("vmops: backend {wanted} refused: {why}; using {detected}");
                detected
            }
            None => wanted,
        },
        None => detected,
    };
    let backend: &'static Backend = match wanted {
        BackendId::Kvm => match kvm::init(platform) {
            Ok(()) => &kvm::BACKEND,
            Err(error) => {
                log::error!("vmops: kvm backend failed ({error}); using native");
                &native::BACKEND
            }
        },
        BackendId::XenPvh => match xen_pvh::init(platform, boot.start_flags) {
            Ok(()) => &xen_pvh::BACKEND,
            Err(error) => {
                log::error!("vmops: xen-pvh backend failed ({error}); using native");
                &native::BACKEND
            }
        },
        BackendId::XenPv => xen_pv::backend(),
        BackendId::Vmi => match vmi_rom {
            Some(rom) => vmi::backend(rom),
            None => &native::BACKEND,
        },
        BackendId::Native => &native::BACKEND,
    };
    set_id(backend.id);
    let report = crate::vmops::install(backend, options.vmops_mode);
    let chosen = CHOSEN.call_once(|| Chosen {
        platform,
        backend,
        mode: options.vmops_mode,
        report,
    });
    log::info!(
        "vmops: platform={} backend={} mode={} sites={} ({})",
        platform.name(),
        backend.name(),
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

/// What the backend in force has to say about itself beyond the vmops
/// line (the shell's `vmops`): for VMI, the ROM and the calls it served.
pub fn describe(out: &mut dyn core::fmt::Write) -> core::fmt::Result {
    match id() {
        BackendId::Vmi => vmi::describe(out),
        _ => Ok(()),
    }
}

/// Why `vmops.backend=` cannot have the backend it names.
enum Refusal {
    Deprivileged,
    NotXenPvEntry,
    NotKvm(Platform),
    NoKvmClock,
    NotXenPvh(Platform),
    NoVmiRom,
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refusal::Deprivileged => write!(f, "the kernel runs deprivileged as a Xen PV guest"),
            Refusal::NotXenPvEntry => write!(f, "the kernel was not entered as a Xen PV guest"),
            Refusal::NotKvm(platform) => write!(f, "the platform is {}, not KVM", platform.name()),
            Refusal::NoKvmClock => write!(f, "this KVM offers no kvmclock"),
            Refusal::NotXenPvh(platform) => {
                write!(
                    f,
                    "the platform is {}, not Xen entered by PVH",
                    platform.name()
                )
            }
            Refusal::NoVmiRom => write!(f, "no usable VMI ROM was found"),
        }
    }
}

/// Why `wanted` cannot run where `detected` was found, if it cannot.
fn refusal(wanted: BackendId, detected: BackendId, platform: Platform) -> Option<Refusal> {
    match wanted {
        _ if wanted == detected => None,
        _ if detected == BackendId::XenPv => Some(Refusal::Deprivileged),
        BackendId::XenPv => Some(Refusal::NotXenPvEntry),
        BackendId::Kvm if !matches!(platform, Platform::Kvm { .. }) => {
            Some(Refusal::NotKvm(platform))
        }
        BackendId::Kvm => Some(Refusal::NoKvmClock),
        BackendId::XenPvh => Some(Refusal::NotXenPvh(platform)),
        BackendId::Vmi => Some(Refusal::NoVmiRom),
        BackendId::Native => None,
    }
}

mod tests {
    use super::*;
    use crate::kassert_eq;
    use crate::ktest::{ktest, TestResult};

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

    #[ktest]
    fn the_backend_in_force_is_the_one_chosen() -> TestResult {
        let chosen = chosen().map(|c| c.backend.id);
        kassert_eq!(chosen, Some(id()));
        kassert_eq!(hooks().id, id());
        Ok(())
    }
}
