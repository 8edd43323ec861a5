//! The Xen PVH backend. A PVH guest runs in hardware-virtualised ring 0,
//! so the interrupt, halt and page-table ops are the native instructions,
//! and Xen emulates a local APIC for the timer. What a PVH machine lacks
//! comes from Xen: the console (`HYPERVISOR_console_io` for dom0, the PV
//! console ring for a domU, whose page and event channel are HVM params)
//! and shutdown (`SCHEDOP_shutdown`). The TSC rate comes from Xen's CPUID
//! time leaf (a PVH guest has no PIT to measure it against).
//!
//! Once threads run, events come through the HVM callback vector and time
//! moves to Xen's own (`crate::xen::clock`); until then the TSC and the
//! emulated LAPIC serve. A domU then starts the Xen bus (xenstore, grant
//! tables), whose pages PVH maps into its physical space.

use super::{native, BackendId, Hooks};
use crate::arch::cpu;
use crate::arch::layout::KERNEL_VMA;
use crate::mm::{xlate, PAGE_SIZE};
use crate::xen::{self, clock, events, grant, xencons};
use hv::platform::Platform;
use hv::xen::bindings::*;
use hv::xen::calls;
use hv::xen::hypercall::{self, XenError};
use vmops::{Backend, FnAddr, Op, OpImpl, OP_COUNT};
use x86_64::PhysAddr;

/// Why the backend could not start.
#[derive(Debug)]
pub enum XenInitError {
    NotXen,
    NoHypercallPage,
    Param(u32, XenError),
}

impl core::fmt::Display for XenInitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            XenInitError::NotXen => write!(f, "not running on Xen"),
            XenInitError::NoHypercallPage => write!(f, "Xen offers no hypercall page"),
            XenInitError::Param(index, error) => write!(f, "HVM param {index}: {error}"),
        }
    }
}

/// Installs the hypercall page and finds the console. `start_flags` are
/// the PVH start info's `SIF_*` flags.
pub fn init(platform: Platform, start_flags: u32) -> Result<(), XenInitError> {
    let Platform::Xen { base, .. } = platform else {
        return Err(XenInitError::NotXen);
    };
    let leaf = cpu::cpuid(base + 2);
    if leaf.eax == 0 {
        return Err(XenInitError::NoHypercallPage);
    }
    // SAFETY: the MSR is the one Xen's CPUID leaf names, and the page's
    // physical address is its link address less KERNEL_VMA.
    unsafe { hypercall::install(leaf.ebx, hypercall::page_address() - KERNEL_VMA) };

    // Xen's time leaf (base + 3, subleaf 0): ECX = TSC frequency in kHz.
    let tsc_khz = core::arch::x86_64::__cpuid_count(base + 3, 0).ecx;
    if tsc_khz != 0 {
        crate::time::set_tsc_hz(u64::from(tsc_khz) * 1000, crate::time::TscSource::XenCpuid);
    }
    // dom0 says so in the start info; a domU has a console ring. Where
    // neither holds (no ring offered), console_io is the only way out.
    let dom0 = start_flags & SIF_INITDOMAIN != 0;
    let ring = if dom0 {
        None
    } else {
        let param = |index| calls::hvm_get_param(index).map_err(|e| XenInitError::Param(index, e));
        let pfn = param(HVM_PARAM_CONSOLE_PFN)?;
        let port = param(HVM_PARAM_CONSOLE_EVTCHN)?;
        (pfn != 0).then_some((pfn, port as u32))
    };
    match ring {
        Some((pfn, port)) => {
            // The boot page tables map the first 4 GiB at PHYS_MAP_BASE;
            // the kernel's own tables keep the page (`shared_page`).
            let phys = pfn * PAGE_SIZE;
            let virt = if phys < crate::arch::layout::BOOT_PHYS_MAP_LIMIT {
                xlate::phys_to_virt(PhysAddr::new(phys)).as_u64()
            } else {
                0
            };
            xencons::set(false, virt, phys, port);
        }
        None => xencons::set(true, 0, 0, 0),
    }
    // (No heap yet: plain formatting only.)
    log::info!(
        "xen: hypercall page at {:#x}, {}",
        hypercall::page_address() - KERNEL_VMA,
        if dom0 { "dom0" } else { "domU" }
    );
    match ring {
        Some((pfn, port)) => log::info!("xen: console ring at pfn {pfn:#x}, event channel {port}"),
        None => log::info!("xen: console through console_io"),
    }
    Ok(())
}

/// The timer op: the emulated LAPIC until Xen time runs, then Xen's
/// single-shot timer.
extern "C" fn set_timer(deadline_ns: u64) {
    if clock::running() {
        clock::set_timer(deadline_ns);
    } else {
        crate::arch::apic::arm_oneshot(deadline_ns, crate::time::tsc_clock_ns());
    }
}

/// The LAPIC timer retires once Xen's takes over.
fn retire_lapic_timer() {
    crate::arch::apic::arm_oneshot(u64::MAX, 0);
}

/// The xenstore ring from the HVM params, mapped (it need not be RAM).
fn store() -> Result<(u64, u32), XenError> {
    let pfn = calls::hvm_get_param(HVM_PARAM_STORE_PFN)?;
    let port = calls::hvm_get_param(HVM_PARAM_STORE_EVTCHN)? as u32;
    if pfn == 0 {
        return Ok((0, port));
    }
    let ring = crate::mm::map_phys(PhysAddr::new(pfn * PAGE_SIZE), PAGE_SIZE, true);
    Ok((ring.as_u64(), port))
}

/// The grant-table frames go into our physical space, reached by the
/// direct map.
fn map_grant_frames(frames: u32) -> Result<*mut grant_entry_v1, grant::GrantError> {
    let first =
        crate::mm::frames::alloc_contiguous(frames as usize).ok_or(grant::GrantError::Full)?;
    let entries = xlate::phys_to_virt(first.start_address()).as_mut_ptr();
    remap_grant_frames(entries, frames)?;
    Ok(entries)
}

/// Puts the `frames` grant-table frames over our frames at `entries`
/// (at boot, and again after a resume: Linux's `gnttab_resume` does the
/// same on HVM).
fn remap_grant_frames(entries: *mut grant_entry_v1, frames: u32) -> Result<(), grant::GrantError> {
    let phys = xlate::virt_to_phys(x86_64::VirtAddr::from_ptr(entries))
        .ok_or(grant::GrantError::Unavailable)?;
    for i in 0..frames {
        let gpfn = phys.as_u64() / PAGE_SIZE + u64::from(i);
        // SAFETY: the frames were taken from the allocator for the grant
        // table: nothing else refers to what Xen puts there.
        unsafe { calls::add_to_physmap(XENMAPSPACE_grant_table, u64::from(i), gpfn) }
            .map_err(grant::GrantError::Xen)?;
    }
    Ok(())
}

/// PVH needs nothing before a suspend: the save is by guest frame, and
/// what Xen maps into the physical space is mapped again after it.
fn prepare_suspend() -> Result<u64, &'static str> {
    Ok(0)
}

/// After a resume, in a new domain or not (as Linux's
/// `xen_hvm_post_suspend`): shared_info and the callback vector again.
fn restore_after_suspend(_resumed: calls::Resumed) -> Result<(), &'static str> {
    events::remap_shared_info_hvm().map_err(|_| "shared_info not mapped again")?;
    events::start_upcalls_hvm().map_err(|_| "no event upcalls after the resume")
}

/// The grant frames stay where they are until the resume maps them again.
fn keep_grant_frames(_entries: *mut grant_entry_v1, _frames: u32) {}

/// The store's and the console's event channels, from the HVM params.
fn ports() -> Result<(u32, u32), XenError> {
    Ok((
        calls::hvm_get_param(HVM_PARAM_STORE_EVTCHN)? as u32,
        calls::hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN)? as u32,
    ))
}

static PARTS: xen::GuestParts = xen::GuestParts {
    store,
    map_grant_frames,
    suspend: xen::SuspendParts {
        prepare: prepare_suspend,
        restore: restore_after_suspend,
        release_grant_frames: keep_grant_frames,
        remap_grant_frames,
        ports,
    },
};

/// Once threads run: shared_info, events through the callback vector,
/// Xen time, then the bus; the UART's input stays (QEMU may give one).
fn after_threads() {
    if let Err(error) = events::map_shared_info_hvm() {
        log::error!("xen: event channels unavailable: {error}");
        return;
    }
    events::mask_all_ports();
    if let Err(error) = events::start_upcalls_hvm() {
        log::error!("xen: no event upcalls ({error}); xenstore polls");
    } else {
        events::set_running();
        if let Err(error) = clock::start(retire_lapic_timer) {
            log::error!("xen: keeping the TSC and LAPIC for time: {error}");
        }
    }
    xen::start_bus(&PARTS);
    native::after_threads();
}

const fn build() -> Backend {
    let mut ops = [OpImpl::MISSING; OP_COUNT];
    native::instruction_ops(&mut ops);
    native::kernel_services(&mut ops);
    ops[Op::ConsoleWrite as usize] = OpImpl::function(FnAddr(xencons::write as *const ()));
    ops[Op::ClockNs as usize] = OpImpl::function(FnAddr(clock::clock_ns as *const ()));
    ops[Op::SetTimer as usize] = OpImpl::function(FnAddr(set_timer as *const ()));
    ops[Op::StealNs as usize] = OpImpl::function(FnAddr(clock::steal_ns as *const ()));
    ops[Op::Shutdown as usize] = OpImpl::function(FnAddr(xen::shutdown as *const ()));
    Backend {
        id: BackendId::XenPvh,
        ops,
    }
}

pub static BACKEND: Backend = build();

/// As native (Xen emulates the local APIC; the firmware tables it gives
/// have no PIC or UART behind them, which the native code copes with),
/// plus Xen's memory map, console ring and bus.
pub static HOOKS: Hooks = Hooks {
    id: BackendId::XenPvh,
    fill_memory_map: xen::fill_memory_map,
    shared_page: xencons::ring_page,
    after_threads,
    wallclock: crate::xen::clock::wallclock_ns,
    ..native::HOOKS_BASE
};
